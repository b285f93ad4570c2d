#!/usr/bin/env python3
# st-layers.py SRC DST L - a copy of Hugging Face checkpoint SRC with only its
# first L decoder layers (config num_hidden_layers = L), one safetensors file:
# a real-weight model small enough to carry to the device machine (rotate's
# transformers check of a Llama checkpoint, doc/benchmarks.md).  Standard library only.
import json, struct, sys, os, glob, shutil
src, dst, L = sys.argv[1], sys.argv[2], int(sys.argv[3])
ts = {}
for f in sorted(glob.glob(src + "/*.safetensors")):
    b = open(f, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    for k, v in h.items():
        if k == "__metadata__": continue
        if k.startswith("model.layers."):
            if int(k.split(".")[2]) >= L: continue
        s, e = v["data_offsets"]
        ts[k] = (v["dtype"], v["shape"], b[8 + n + s: 8 + n + e])
hdr, off, blobs = {}, 0, []
for k in sorted(ts):
    dt, sh, d = ts[k]
    hdr[k] = {"dtype": dt, "shape": sh, "data_offsets": [off, off + len(d)]}
    off += len(d); blobs.append(d)
hj = json.dumps(hdr).encode(); hj += b" " * ((8 - len(hj) % 8) % 8)
os.makedirs(dst, exist_ok=True)
with open(dst + "/model.safetensors", "wb") as o:
    o.write(struct.pack("<Q", len(hj))); o.write(hj)
    for d in blobs: o.write(d)
c = json.load(open(src + "/config.json")); c["num_hidden_layers"] = L
json.dump(c, open(dst + "/config.json", "w"), indent=2)
for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]:
    if os.path.exists(src + "/" + f): shutil.copy(src + "/" + f, dst)
