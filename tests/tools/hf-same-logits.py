#!/usr/bin/env python3
# hf-same-logits.py SRC ROT - load two checkpoints in transformers (fp32) and
# compare their logits on 2 x 256 random token ids (seed 0): whether a
# checkpoint llmq rewrote (rotate, smooth) computes the same function in
# transformers. Runs on the device machine (PyTorch, transformers); prints
# one JSON line.
import sys, json, torch
from transformers import AutoModelForCausalLM
src, rot = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
ids = torch.randint(0, 4000, (2, 256))
out = {}
with torch.no_grad():
    a = AutoModelForCausalLM.from_pretrained(src, torch_dtype=torch.float32).eval()(ids).logits
    mr = AutoModelForCausalLM.from_pretrained(rot, torch_dtype=torch.float32).eval()
    b = mr(ids).logits
out["tie_word_embeddings_rot"] = bool(mr.config.tie_word_embeddings)
out["max_abs_logit_diff"] = float((a - b).abs().max())
out["max_abs_logit"] = float(a.abs().max())
out["argmax_agree"] = float((a.argmax(-1) == b.argmax(-1)).float().mean())
import transformers; out["transformers"] = transformers.__version__; out["torch"] = torch.__version__
print(json.dumps(out))
