#!/usr/bin/env python3
"""ct-nvfp4-write.py MODEL IDS OUT --ct-src DIR - write testdata/ct-nvfp4:
MODEL (a bf16 Hugging Face checkpoint) with NVFP4 weights (compressed-tensors
scheme "NVFP4A16") in compressed-tensors' "nvfp4-pack-quantized" format, and
reference outputs of it for tests/cli/t0831-ctensors-nvfp4.sh.

Neither compressed-tensors nor llm-compressor is installable where this ran
(the device machine has torch and transformers but no pydantic, which
compressed-tensors' config classes need, and reaches no package index).  So:
  - the numerics are compressed-tensors' own functions, taken verbatim from
    its source tree DIR (its src/compressed_tensors) with ast and executed
    here without the pydantic-based modules around them: generate_gparam,
    calculate_qparams, calculate_range, is_fp4 (quantization/utils/helpers.py),
    quantize, dequantize and their helpers (quantization/lifecycle/forward.py),
    round_to_quantized_type, FP4_E2M1_DATA, FP8_E4M3_DATA (quant_args.py),
    pack_fp4_to_uint8, unpack_fp4_from_uint8 (compressors/quantized_compressors/
    fp4_quantized.py).  QuantizationArgs is a plain namespace holding what
    preset "NVFP4A16" holds (its enum fields as their string values, as
    pydantic's use_enum_values stores them);
  - the calibration is llm-compressor's, restated: per weight, the min / max
    of each group of 16 columns in the weight's dtype (its min-max observer),
    one absmax over the linears vLLM fuses (q/k/v, gate/up), global scale =
    generate_gparam(absmax), block scales = calculate_qparams(group min /
    max, global scale), zero points fp8 zeros;
  - the compression is NVFP4PackedCompressor.compress_weight's two calls
    (quantize with scale, zero point, global scale; pack_fp4_to_uint8); the
    zero point is not saved (symmetric), as BaseQuantizationCompressor.compress;
  - config.json's quantization_config is written here as ModelCompressor.
    update_config writes QuantizationConfig.model_dump() (sorted keys).

IDS: int32 LE token ids (llmq tokenize --ids-out); the first 2 x 512 are
the two windows `llmq verify --max-windows 2` scores (protocol full, ctx 512).
OUT/reference/ref.safetensors:
  input_ids   I32 [2, 512]    the windows
  argmax      I32 [2, 512]    the reference model's top token per position
  token_nll   F32 [2, 511]    -log p(next token), positions 0..510
  rows        I32 [R]         positions of window 0 whose logits are kept
  logits_rows F32 [R, vocab]  those logits
  input_global_scale F32 [L]  per quantized linear (names sorted):
                              generate_gparam of the absmax of its input over
                              both windows (what llm-compressor's static
                              min-max observer gives scheme "NVFP4", W4A4),
                              for the W4A4 variant the test builds
OUT/reference/ref.json: nll_sum over the scored tokens, how it was made, and
the quantization_config of scheme "NVFP4" (W4A4).
The reference model: compressed-tensors' dequantize (value = fp4 *
(weight_scale / weight_global_scale) in float32) of what was written, run
by transformers in float32 (eager attention) on the CPU.
"""
import ast, json, math, os, shutil, sys, types
from enum import Enum
from typing import Any, Dict, Generator, List, Optional, Tuple, Union

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")   # the torch.compile'd helpers run eagerly: same ops, no compiler

import torch

CT_NAMES = {
    "quantization/quant_args.py": ["FloatArgs", "FP4_E2M1_DATA", "FP8_E4M3_DATA", "QuantizationType",
                                   "QuantizationStrategy", "DynamicType", "round_to_quantized_type"],
    "quantization/utils/helpers.py": ["is_fp4", "calculate_range", "calculate_qparams", "generate_gparam"],
    "quantization/lifecycle/forward.py": ["quantize", "dequantize", "_process_quantization", "_quantize", "_dequantize"],
    "compressors/quantized_compressors/fp4_quantized.py": ["FLOAT_TO_E2M1", "pack_fp4_to_uint8", "kE2M1ToFloat",
                                                            "unpack_fp4_from_uint8"],
}


def load_ct(src):
    """compressed-tensors' definitions named in CT_NAMES, executed verbatim."""
    ns = {"torch": torch, "math": math, "ceil": math.ceil, "Enum": Enum, "Optional": Optional, "Tuple": Tuple,
          "Dict": Dict, "List": List, "Union": Union, "Any": Any, "Generator": Generator, "Tensor": torch.Tensor,
          "FloatTensor": torch.FloatTensor, "IntTensor": torch.IntTensor, "Module": torch.nn.Module,
          "QuantizationArgs": object, "__name__": "compressed_tensors_extract"}
    for rel, names in CT_NAMES.items():
        tree = ast.parse(open(os.path.join(src, rel)).read(), rel)
        keep, seen = [], set()
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                n = node.name
            elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                n = node.targets[0].id
            else:
                continue
            if n in names:
                keep.append(node)
                seen.add(n)
        assert seen == set(names), (rel, set(names) - seen)
        exec(compile(ast.Module(body=keep, type_ignores=[]), os.path.join(src, rel), "exec"), ns)
    return types.SimpleNamespace(**ns)


def args_dict(dynamic=False, observer="minmax"):
    """QuantizationArgs(num_bits=4, type=FLOAT, strategy=TENSOR_GROUP, symmetric,
    group_size=16, ...).model_dump(), field order as quant_args.py declares them."""
    return {"num_bits": 4, "type": "float", "symmetric": True, "group_size": 16, "strategy": "tensor_group",
            "block_structure": None, "dynamic": dynamic, "actorder": None, "observer": observer,
            "observer_kwargs": {}}


def quant_config(version, ignore, w4a4):
    """What ModelCompressor.update_config puts under "quantization_config"."""
    grp = {"targets": ["Linear"],
           "weights": args_dict(observer="static_minmax" if w4a4 else "minmax"),
           "input_activations": args_dict("local", "static_minmax") if w4a4 else None,
           "output_activations": None, "format": "nvfp4-pack-quantized"}
    return {"version": version, "quant_method": "compressed-tensors", "sparsity_config": {}, "transform_config": {},
            "config_groups": {"group_0": grp}, "kv_cache_scheme": None, "format": "nvfp4-pack-quantized",
            "quantization_status": "compressed", "global_compression_ratio": None, "ignore": ignore}


def main():
    a = sys.argv[1:]
    i = a.index("--ct-src")
    src = a[i + 1]
    del a[i:i + 2]
    model_dir, ids_path, out = a
    ct = load_ct(src)
    import transformers
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    ver = {}
    vf = os.path.join(src, "version.py")
    if os.path.exists(vf):
        exec(open(vf).read(), ver)
    version = ver.get("__version__", "unknown")
    args = types.SimpleNamespace(**args_dict())

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16)
    lin = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"}
    fuse = {"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv", "gate_proj": "gu", "up_proj": "gu"}

    def fkey(n):
        p, s = n.rsplit(".", 1)
        return p + "." + fuse.get(s, s)

    stats, absmax = {}, {}
    for n, m in lin.items():
        w = m.weight.data
        g = w.unflatten(-1, (w.shape[-1] // 16, 16))
        stats[n] = (torch.amin(g, dim=-1), torch.amax(g, dim=-1))
        am = torch.max(stats[n][1].max(), -stats[n][0].min())
        absmax[fkey(n)] = torch.max(absmax[fkey(n)], am) if fkey(n) in absmax else am
    sd = {}
    for n, m in lin.items():
        am = absmax[fkey(n)]
        gs = ct.generate_gparam(-am.reshape(1), am.reshape(1))
        scale, zp = ct.calculate_qparams(stats[n][0], stats[n][1], args, global_scale=gs)
        q = ct.quantize(x=m.weight.data, scale=scale, global_scale=gs, zero_point=zp, args=args)
        sd[n + ".weight_packed"] = ct.pack_fp4_to_uint8(q)
        sd[n + ".weight_scale"] = scale
        sd[n + ".weight_global_scale"] = gs
    for k, v in model.state_dict().items():
        if k.rsplit(".", 1)[0] in lin and k.endswith(".weight"):
            continue
        if k == "lm_head.weight" and model.config.tie_word_embeddings:
            continue
        sd[k] = v
    sd = {k: v.detach().cpu().contiguous() for k, v in sd.items()}
    os.makedirs(os.path.join(out, "reference"), exist_ok=True)
    save_file(sd, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    for f in ("generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        if os.path.exists(os.path.join(model_dir, f)):
            shutil.copy(os.path.join(model_dir, f), os.path.join(out, f))
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    cfg["quantization_config"] = quant_config(version, ["lm_head"], False)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)

    # the reference: compressed-tensors' dequantization of what was written, float32
    st = load_file(os.path.join(out, "model.safetensors"))
    cfg.pop("quantization_config")
    prefixes = sorted(k[:-len(".weight_packed")] for k in st if k.endswith(".weight_packed"))
    dense, bf16_ok = {}, True
    for p in prefixes:
        q, sc, gs = st[p + ".weight_packed"], st[p + ".weight_scale"], st[p + ".weight_global_scale"]
        m, n2 = q.shape
        x = ct.unpack_fp4_from_uint8(q, m, n2 * 2, dtype=torch.float32)
        dense[p + ".weight"] = ct.dequantize(x_q=x, scale=sc, global_scale=gs, args=args, dtype=torch.float32)
        # NVFP4PackedCompressor.decompress_weight: the same through bf16
        xb = ct.unpack_fp4_from_uint8(q, m, n2 * 2)
        own = ct.dequantize(x_q=xb, scale=sc, global_scale=gs, args=args, dtype=xb.dtype)
        bf16_ok &= bool(torch.equal(own, dense[p + ".weight"].to(own.dtype)))
    for k, v in st.items():
        pre, _, suf = k.rpartition(".")
        if pre not in prefixes or suf not in ("weight_packed", "weight_scale", "weight_global_scale"):
            dense[k] = v.to(torch.float32)
    config = transformers.AutoConfig.for_model(**cfg)
    config._attn_implementation = "eager"
    ref = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = ref.load_state_dict(dense, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    assert not missing and not unexpected, (missing, unexpected)
    ref.tie_weights()
    ref.eval()

    raw = open(ids_path, "rb").read()
    ids = torch.frombuffer(bytearray(raw[:2 * 512 * 4]), dtype=torch.int32).reshape(2, 512)
    rows = torch.tensor([0, 1, 7, 63, 128, 255, 400, 511], dtype=torch.int32)
    acts = {}

    def hook(mod, inp, outp, name):
        v = inp[0].detach().abs().max()
        acts[name] = torch.max(acts[name], v) if name in acts else v

    hooks = [mod.register_forward_hook(lambda mod, inp, outp, name=name: hook(mod, inp, outp, name))
             for name, mod in ref.named_modules() if name in prefixes]
    with torch.no_grad():
        logits = ref(input_ids=ids.to(torch.int64)).logits.to(torch.float32)   # [2, 512, vocab]
    for h in hooks:
        h.remove()
    logp = torch.log_softmax(logits.to(torch.float64), dim=-1)
    nll = -logp[:, :-1, :].gather(-1, ids[:, 1:].to(torch.int64)[..., None])[..., 0]
    igs = torch.cat([ct.generate_gparam(-acts[p].reshape(1), acts[p].reshape(1)) for p in prefixes])
    save_file({"input_ids": ids.contiguous(), "argmax": logits.argmax(-1).to(torch.int32).contiguous(),
               "token_nll": nll.to(torch.float32).contiguous(), "rows": rows,
               "logits_rows": logits[0, rows.to(torch.int64)].contiguous(),
               "input_global_scale": igs.to(torch.float32).contiguous()},
              os.path.join(out, "reference", "ref.safetensors"), metadata={"format": "pt"})
    info = {
        "writer": "tests/tools/ct-nvfp4-write.py: compressed-tensors %s functions (extracted verbatim from its "
                  "source), torch %s, transformers %s" % (version, torch.__version__, transformers.__version__),
        "command": "python3 tests/tools/ct-nvfp4-write.py " + " ".join(sys.argv[1:]),
        "scheme": "NVFP4A16", "linears": prefixes,
        "nll_sum": float(nll.sum()), "scored_tokens": int(nll.numel()),
        "perplexity": float(torch.exp(nll.sum() / nll.numel())),
        "reference_dequant": "dequantize(unpack_fp4_from_uint8(weight_packed, dtype=float32), weight_scale, "
                             "global_scale=weight_global_scale, dtype=float32)",
        "decompress_weight_bf16_equals_f32_rounded": bf16_ok,
        "nvfp4_w4a4_quantization_config": quant_config(version, ["lm_head"], True),
    }
    with open(os.path.join(out, "reference", "ref.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(json.dumps({k: info[k] for k in ("writer", "nll_sum", "perplexity", "decompress_weight_bf16_equals_f32_rounded")}))


main()
