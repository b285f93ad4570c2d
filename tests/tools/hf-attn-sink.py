#!/usr/bin/env python3
# hf-attn-sink.py IDS MODEL:CTX ... - how much attention the first tokens
# draw (StreamingLLM's attention sinks), in transformers (fp32, eager
# attention).  IDS: int32 little-endian token ids (llmq tokenize --ids-out).
# For each model, on its first CTX ids, per layer: the mean over heads and
# over query positions q >= 128 of the softmax weight on key 0, the largest
# head's mean, and the weight on keys 0..3; beside them the mean of
# 1 / (q + 1), what key 0 draws under uniform attention.  A model with sinks
# puts far more than uniform on key 0 in most layers.  Runs on the device
# machine (PyTorch, transformers); prints JSON.
import sys, json, struct, torch
from transformers import AutoModelForCausalLM

raw = open(sys.argv[1], "rb").read()
ids = list(struct.unpack("<%di" % (len(raw) // 4), raw))
res = {}
for arg in sys.argv[2:]:
    path, n = arg.rsplit(":", 1)
    n = int(n)
    m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        att = m(torch.tensor([ids[:n]]), output_attentions=True).attentions
    q = torch.arange(128, n)
    rows = []
    for a in att:
        a = a[0]                      # (heads, n, n)
        k0 = a[:, 128:, 0]
        rows.append({"key0": float(k0.mean()), "key0_max_head": float(k0.mean(1).max()),
                     "keys0_3": float(a[:, 128:, :4].sum(-1).mean())})
    res[path] = {"ctx": n, "uniform_key0": float((1.0 / (q + 1).float()).mean()), "layers": rows}
print(json.dumps(res, indent=1))
