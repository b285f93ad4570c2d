#!/usr/bin/env python3
"""ct-edit.py SRC DST OP... - copy the model directory SRC to DST, then edit
its config.json and model.safetensors (one file) for tests/cli/t0830-ctensors.sh.
Pure Python (no numpy): builds hostile and variant compressed-tensors files.

OPs, applied in order:
  cfg:A.B.C=JSON        set config.json key path A.B.C to the JSON value
  cfgdel:A.B.C          delete it
  drop:T                remove tensor T
  trunc:T=N             keep the first N columns of 2-D tensor T
  i64:T=a,b,...         replace T by an I64 vector
  dtype:T=D             reinterpret T's bytes as dtype D (shape kept when sizes allow)
  f32:T                 F16 tensor T as F32 (exact)
  setf32:T=i,v          element i of F32 tensor T := v
  round7:T              F16 tensor T with its mantissas cut to 7 bits (bf16 values)
  bf16:T                F16 tensor T as BF16 (truncating: exact after round7)
  setbf16:T=i,v         element i of BF16 tensor T := v (truncated)
  unpackzp:T            int32 zero points packed along rows -> int32 [rows8*8, ng]
  add:T=D,a,b           add a zero-filled tensor T of dtype D, shape [a, b]
  channel               every weight_scale [R, ng] -> [R, 1] (group 0), zero points
                        likewise, strategy channel: the per-row model
  flatten               every weight_scale / zero point group := group 0's (the
                        same weights as 'channel', still group-wise)
  regroup:F             groups F times wider: wide group k takes group F k's scale
                        and zero point, group_size *= F
  repeat:F              group k := group k - k % F (the same weights as regroup:F)
  pack8                 int-quantized int8 -> pack-quantized int8 (W8A16): 4 bytes
                        q + 128 per int32, input_activations null
"""
import json, os, shutil, struct, sys

SIZES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I8": 1, "U8": 1, "I16": 2, "U16": 2,
         "I32": 4, "U32": 4, "I64": 8, "U64": 8, "BOOL": 1}


def read_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__", None)
    data = b[8 + n:]
    t = {}
    for k, v in h.items():
        s, e = v["data_offsets"]
        t[k] = [v["dtype"], list(v["shape"]), bytearray(data[s:e])]
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


def linears(t):
    return sorted(k[:-len(".weight_scale")] for k in t if k.endswith(".weight_scale"))


def zp_get(d, ng, r, g):
    w = struct.unpack_from("<I", d, 4 * ((r // 8) * ng + g))[0]
    return (w >> (4 * (r % 8))) & 15


def main():
    src, dst, ops = sys.argv[1], sys.argv[2], sys.argv[3:]
    shutil.copytree(src, dst)
    cfg = json.load(open(os.path.join(dst, "config.json")))
    meta, t = read_st(os.path.join(dst, "model.safetensors"))
    for op in ops:
        name, _, arg = op.partition(":")
        key, _, val = arg.partition("=")
        if name == "cfg" or name == "cfgdel":
            o, parts = cfg, key.split(".")
            for p in parts[:-1]:
                o = o[p]
            if name == "cfg":
                o[parts[-1]] = json.loads(val)
            else:
                del o[parts[-1]]
        elif name == "drop":
            del t[key]
        elif name == "trunc":
            dt, (r, c), d = t[key]
            n, es = int(val), SIZES[dt]
            t[key] = [dt, [r, n], bytearray(b"".join(d[i * c * es:(i * c + n) * es] for i in range(r)))]
        elif name == "i64":
            v = [int(x) for x in val.split(",")]
            t[key] = ["I64", [len(v)], bytearray(struct.pack("<%dq" % len(v), *v))]
        elif name == "dtype":
            dt, shape, d = t[key]
            t[key] = [val, shape if SIZES[val] == SIZES[dt] else [len(d) // SIZES[val]], d]
        elif name == "f32":
            dt, shape, d = t[key]
            assert dt == "F16"
            v = struct.unpack("<%de" % (len(d) // 2), d)
            t[key] = ["F32", shape, bytearray(struct.pack("<%df" % len(v), *v))]
        elif name == "round7":
            # F16 tensor T rounded (toward zero) to 7 mantissa bits: values bf16 holds exactly
            dt, shape, d = t[key]
            assert dt == "F16"
            h = struct.unpack("<%dH" % (len(d) // 2), d)
            t[key] = [dt, shape, bytearray(struct.pack("<%dH" % len(h), *[x & 0xFFF8 for x in h]))]
        elif name == "bf16":
            # F16 tensor T as BF16, truncating (exact after round7 for normal f16 values)
            dt, shape, d = t[key]
            assert dt == "F16"
            v = struct.unpack("<%de" % (len(d) // 2), d)
            b = [struct.unpack("<I", struct.pack("<f", x))[0] >> 16 for x in v]
            t[key] = ["BF16", shape, bytearray(struct.pack("<%dH" % len(b), *b))]
        elif name == "setbf16":
            i, v = val.split(",")
            struct.pack_into("<H", t[key][2], 2 * int(i), struct.unpack("<I", struct.pack("<f", float(v)))[0] >> 16)
        elif name == "setf32":
            i, v = val.split(",")
            struct.pack_into("<f", t[key][2], 4 * int(i), float(v))
        elif name == "unpackzp":
            dt, (r8, ng), d = t[key]
            out = bytearray()
            for r in range(r8 * 8):
                for g in range(ng):
                    out += struct.pack("<i", zp_get(d, ng, r, g))
            t[key] = ["I32", [r8 * 8, ng], out]
        elif name == "add":
            dt, a, b = val.split(",")
            t[key] = [dt, [int(a), int(b)], bytearray(SIZES[dt] * int(a) * int(b))]
        elif name in ("channel", "flatten", "regroup", "repeat"):
            for p in linears(t):
                dt, (r, ng), d = t[p + ".weight_scale"]
                es = SIZES[dt]
                f = ng if name in ("channel", "flatten") else int(key)
                keep = list(range(0, ng, f))                  # the group each wide group takes
                src = keep if name in ("channel", "regroup") else [k - k % f for k in range(ng)]
                t[p + ".weight_scale"] = [dt, [r, len(src)], bytearray(b"".join(
                    bytes(d[(i * ng + k) * es:(i * ng + k + 1) * es]) for i in range(r) for k in src))]
                z = t.get(p + ".weight_zero_point")
                if z:
                    r8 = z[1][0]
                    words = []
                    for i in range(r8):
                        for k in src:
                            w = 0
                            for j in range(8):
                                if 8 * i + j < r:
                                    w |= zp_get(z[2], ng, 8 * i + j, k) << (4 * j)
                            words.append(w)
                    z[1] = [r8, len(src)]
                    z[2] = bytearray(struct.pack("<%dI" % len(words), *words))
            for g in cfg["quantization_config"]["config_groups"].values():
                if name == "channel":
                    g["weights"]["strategy"] = "channel"
                    g["weights"]["group_size"] = None
                elif name == "regroup":
                    g["weights"]["group_size"] *= int(key)
        elif name == "pack8":
            for p in sorted(k[:-len(".weight_scale")] for k in t if k.endswith(".weight_scale")):
                dt, (r, c), d = t.pop(p + ".weight")
                t[p + ".weight_packed"] = ["I32", [r, c // 4], bytearray(b ^ 0x80 for b in d)]
                t[p + ".weight_shape"] = ["I64", [2], bytearray(struct.pack("<2q", r, c))]
            qc = cfg["quantization_config"]
            qc["format"] = "pack-quantized"
            for g in qc["config_groups"].values():
                g["input_activations"] = None
        else:
            sys.exit("ct-edit.py: unknown op " + op)
    json.dump(cfg, open(os.path.join(dst, "config.json"), "w"), indent=2)
    write_st(os.path.join(dst, "model.safetensors"), meta, t)


main()
