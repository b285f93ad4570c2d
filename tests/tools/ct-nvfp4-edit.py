#!/usr/bin/env python3
"""ct-nvfp4-edit.py SRC DST OP... - copy the NVFP4 compressed-tensors model
directory SRC (testdata/ct-nvfp4) to DST, then edit its config.json and
model.safetensors for tests/cli/t0831-ctensors-nvfp4.sh.  Pure Python.

OPs, applied in order:
  cfg:A.B.C=JSON     set config.json key path A.B.C to the JSON value
  cfgdel:A.B.C       delete it
  w4a4               the W4A4 checkpoint compressed-tensors' scheme "NVFP4"
                     makes of the same weights: quantization_config := the one
                     SRC/reference/ref.json records for it (version kept), and
                     P.input_global_scale F32 [1] for every quantized linear P
                     from SRC/reference/ref.safetensors
  setf32:T=v         every element of F32 tensor T := v ("nan", "inf", "-1", ...)
  setbyte:T=i,b      byte i of tensor T's data := b
  retype:T=D[,a,b..] relabel T's bytes as dtype D, with the given shape (else
                     the old one; the byte count must match)
  drop:T             remove tensor T
  trunc:T=N          keep the first N columns of 2-D tensor T
  add:T=D,a[,b]      add a zero-filled tensor T of dtype D, shape [a(, b)]
"""
import json, shutil, struct, sys

SIZES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I8": 1, "U8": 1, "I16": 2, "U16": 2, "I32": 4, "U32": 4,
         "I64": 8, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1}


def read_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__", None)
    t = {}
    for k, v in h.items():
        s, e = v["data_offsets"]
        t[k] = [v["dtype"], list(v["shape"]), bytearray(b[8 + n + s:8 + n + e])]
    return meta, t


def write_st(path, meta, t):
    h, off, blobs = {}, 0, []
    if meta is not None:
        h["__metadata__"] = meta
    for k in sorted(t):
        dt, shape, d = t[k]
        h[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(d)]}
        off += len(d)
        blobs.append(bytes(d))
    hb = json.dumps(h, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))


def nelem(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def cfg_path(cfg, path, create):
    keys = path.split(".")
    o = cfg
    for k in keys[:-1]:
        if k not in o and create:
            o[k] = {}
        o = o[k]
    return o, keys[-1]


def main():
    src, dst, ops = sys.argv[1], sys.argv[2], sys.argv[3:]
    shutil.copytree(src, dst)
    cfg = json.load(open(dst + "/config.json"))
    meta, t = read_st(dst + "/model.safetensors")
    for op in ops:
        kind, _, arg = op.partition(":")
        if kind == "cfg":
            k, _, v = arg.partition("=")
            o, last = cfg_path(cfg, k, True)
            o[last] = json.loads(v)
        elif kind == "cfgdel":
            o, last = cfg_path(cfg, arg, False)
            del o[last]
        elif op == "w4a4":
            ref = json.load(open(src + "/reference/ref.json"))
            qc = dict(ref["nvfp4_w4a4_quantization_config"])
            qc["version"] = cfg["quantization_config"].get("version", qc.get("version"))
            cfg["quantization_config"] = qc
            _, rt = read_st(src + "/reference/ref.safetensors")
            dt, shape, d = rt["input_global_scale"]
            prefixes = sorted(k[:-len(".weight_packed")] for k in t if k.endswith(".weight_packed"))
            assert dt == "F32" and shape == [len(prefixes)] and prefixes == ref["linears"]
            for i, p in enumerate(prefixes):
                t[p + ".input_global_scale"] = ["F32", [1], bytearray(d[4 * i:4 * i + 4])]
        elif kind == "setf32":
            name, _, v = arg.partition("=")
            dt, shape, d = t[name]
            assert dt == "F32"
            t[name][2] = bytearray(struct.pack("<f", float(v)) * nelem(shape))
        elif kind == "setbyte":
            name, _, v = arg.partition("=")
            i, b = (int(x, 0) for x in v.split(","))
            t[name][2][i] = b
        elif kind == "retype":
            name, _, v = arg.partition("=")
            parts = v.split(",")
            dt, shape, d = t[name]
            shape = [int(x) for x in parts[1:]] if len(parts) > 1 else shape
            assert nelem(shape) * SIZES[parts[0]] == len(d), op
            t[name] = [parts[0], shape, d]
        elif kind == "drop":
            del t[arg]
        elif kind == "trunc":
            name, _, v = arg.partition("=")
            dt, (r, c), d = t[name]
            n, es = int(v), SIZES[dt]
            t[name] = [dt, [r, n], bytearray(b"".join(bytes(d[i * c * es:(i * c + n) * es]) for i in range(r)))]
        elif kind == "add":
            name, _, v = arg.partition("=")
            parts = v.split(",")
            shape = [int(x) for x in parts[1:]]
            t[name] = [parts[0], shape, bytearray(nelem(shape) * SIZES[parts[0]])]
        else:
            sys.exit("ct-nvfp4-edit.py: unknown op '%s'" % op)
    with open(dst + "/config.json", "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    write_st(dst + "/model.safetensors", meta, t)


main()
