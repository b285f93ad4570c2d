#!/usr/bin/env python3
"""rope-ref.py - transformers fp32 logits of testdata/tiny-qwen2-gqa with its
RoPE scaled ("linear" and "llama3" rope types), for tests/e2e/t0100-reference.sh.
Run where torch and transformers are installed (not in CI):
    python3 tests/tools/rope-ref.py OUTDIR
writes OUTDIR/rope-<type>/config.json and OUTDIR/rope-<type>.logits.safetensors
(fp32 logits of the first 16 ids of reference/wikitext2_test_ids.bin)."""
import json, os, shutil, struct, sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

SRC = "testdata/tiny-qwen2-gqa"
# original_max_position_embeddings 16 puts this model's head_dim-32 wavelengths
# (6.3, 14.9, 35, ...) in all three llama3 bands: high (kept), medium
# (smoothed), low (divided by factor)
VARIANTS = {
    "linear": {"rope_type": "linear", "factor": 4.0},
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 16},
}


def main():
    out = sys.argv[1]
    ids = open(os.path.join(SRC, "reference", "wikitext2_test_ids.bin"), "rb").read()
    ids = list(struct.unpack("<16i", ids[:64]))
    for name, rope in VARIANTS.items():
        d = os.path.join(out, "rope-" + name)
        os.makedirs(d, exist_ok=True)
        cfg = json.load(open(os.path.join(SRC, "config.json")))
        cfg["rope_parameters"] = dict(rope, rope_theta=cfg["rope_parameters"]["rope_theta"])
        json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=2)
        work = os.path.join("/tmp", "rope-" + name)
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(SRC, work, ignore=shutil.ignore_patterns("reference"))
        shutil.copy(os.path.join(d, "config.json"), os.path.join(work, "config.json"))
        m = AutoModelForCausalLM.from_pretrained(work, dtype=torch.float32).eval()
        with torch.no_grad():
            logits = m(torch.tensor([ids])).logits[0].float().contiguous()
        save_file({"logits": logits}, os.path.join(out, "rope-%s.logits.safetensors" % name))
        print(name, m.config.rope_parameters, tuple(logits.shape))


if __name__ == "__main__":
    main()
