#!/usr/bin/env python3
"""ct-check.py CT_DIR LOGITS [--tol T] - an independent check of llmq's
compressed-tensors files against the format as compressed-tensors defines it.

Dequantizes CT_DIR's quantized linears with this script's own unpacker,
written from compressed-tensors' description of its formats
(pack_quantized: 32/num_bits values per int32, lowest bits first, each
stored as q + 2^(num_bits-1); zero points packed the same way along the
output dimension; value = (q - zero_point) * scale, scale and zero point
per group of group_size input columns, or per row for strategy channel;
int_quantized: int8 q, value = q * scale), builds the dense model with
transformers (PyTorch, float32, eager attention) and runs it on the
input_ids of LOGITS (a safetensors file from `llmq verify --logits-out`),
comparing its logits with llmq's.  If the compressed_tensors package is
importable, its own unpack_from_int32 is checked against this one too.
Prints one JSON line; exits 1 if the largest difference exceeds --tol.
Needs torch, transformers, safetensors (not llmq's build machine: the
device machine has them).
"""
import json, os, sys

import torch
from safetensors.torch import load_file


def unpack_int32(packed, num_bits, rows, cols, dim):
    """int32 -> signed ints; dim 1: packed along columns, 0: along rows."""
    per = 32 // num_bits
    mask = (1 << num_bits) - 1
    p = packed.to(torch.int64) & 0xFFFFFFFF          # the word's bits, unsigned
    parts = [(p >> (num_bits * i)) & mask for i in range(per)]
    if dim == 1:
        u = torch.stack(parts, dim=2).reshape(p.shape[0], p.shape[1] * per)[:, :cols]
    else:
        u = torch.stack(parts, dim=1).reshape(p.shape[0] * per, p.shape[1])[:rows, :]
    return u - (1 << (num_bits - 1))


def dequant(st, prefix, w, fmt):
    sc = st[prefix + ".weight_scale"].to(torch.float64)
    if fmt == "int-quantized":
        q = st[prefix + ".weight"].to(torch.float64)
        return (q * sc).to(torch.float32)
    rows, cols = (int(x) for x in st[prefix + ".weight_shape"].tolist())
    bits = w["num_bits"]
    q = unpack_int32(st[prefix + ".weight_packed"], bits, rows, cols, 1).to(torch.float64)
    ng = sc.shape[1]
    gs = cols // ng
    zp = st.get(prefix + ".weight_zero_point")
    if zp is not None:
        z = unpack_int32(zp, bits, rows, ng, 0).to(torch.float64)
    else:
        z = torch.zeros_like(sc)
    v = (q - z.repeat_interleave(gs, dim=1)) * sc.repeat_interleave(gs, dim=1)
    return v.to(torch.float32), q


def main():
    ct_dir, logits_path = sys.argv[1], sys.argv[2]
    tol = float(sys.argv[sys.argv.index("--tol") + 1]) if "--tol" in sys.argv else 2e-3
    cfg = json.load(open(os.path.join(ct_dir, "config.json")))
    qc = cfg.pop("quantization_config")
    assert qc["quant_method"] == "compressed-tensors"
    (grp,) = qc["config_groups"].values()
    st = load_file(os.path.join(ct_dir, "model.safetensors"))
    dense = {}
    prefixes = sorted({k.rsplit(".", 1)[0] for k in st if k.endswith(".weight_scale")})
    extra = {}
    for p in prefixes:
        r = dequant(st, p, grp["weights"], qc["format"])
        if isinstance(r, tuple):
            dense[p + ".weight"], extra[p] = r
        else:
            dense[p + ".weight"] = r
    qsuffix = ("weight", "weight_packed", "weight_scale", "weight_zero_point", "weight_shape")
    for k, v in st.items():
        p, _, s = k.rpartition(".")
        if p not in prefixes or s not in qsuffix:
            dense[k] = v.to(torch.float32)
    ct_lib = "not installed"
    try:
        from compressed_tensors.compressors.quantized_compressors.pack_quantized import unpack_from_int32
        ok = True
        for p in prefixes:
            if p in extra:
                rows, cols = (int(x) for x in st[p + ".weight_shape"].tolist())
                ref = unpack_from_int32(st[p + ".weight_packed"], grp["weights"]["num_bits"], torch.Size([rows, cols]))
                ok &= torch.equal(ref.to(torch.float64), extra[p])
        ct_lib = "unpack_from_int32 agrees" if ok else "unpack_from_int32 DISAGREES"
    except ImportError:
        pass

    from transformers import AutoConfig, AutoModelForCausalLM
    config = AutoConfig.for_model(**cfg)
    config._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    missing, unexpected = model.load_state_dict(dense, strict=False)
    missing = [m for m in missing if not (m == "lm_head.weight" and getattr(config, "tie_word_embeddings", False))]
    assert not missing and not unexpected, (missing, unexpected)
    model.tie_weights()
    model.eval()
    lg = load_file(logits_path)
    ids = lg["input_ids"].to(torch.int64)[None, :]
    with torch.no_grad():
        ref = model(input_ids=ids).logits[0].to(torch.float32)
    got = lg["logits"]
    diff = (ref - got).abs()
    rel = (diff.max() / ref.abs().max()).item()
    agree = (ref.argmax(-1) == got.argmax(-1)).float().mean().item()
    res = {"dir": ct_dir, "format": qc["format"], "linears": len(prefixes), "tokens": int(ids.shape[1]),
           "max_abs_diff": diff.max().item(), "max_rel_diff": rel, "mean_abs_diff": diff.mean().item(),
           "argmax_agree": agree, "compressed_tensors": ct_lib, "tol": tol}
    print(json.dumps(res))
    sys.exit(0 if rel <= tol and "DISAGREES" not in ct_lib else 1)


main()
