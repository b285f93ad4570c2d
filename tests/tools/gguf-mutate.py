#!/usr/bin/env python3
"""gguf-mutate.py - make a hostile or contradictory copy of a GGUF file for
the CLI tests of `llmq verify FILE.gguf`:

    gguf-mutate.py IN.gguf OUT.gguf MUTATION [ARG...]

The file is parsed (trusting it: llmq wrote it), changed, and written again
with its data area as it was.  Mutations:
    truncate N            keep the first N bytes of IN as they are
    n-kv N / n-tensors N  the header's counts set to N, nothing else changed
    kv-set KEY TYPE VALUE a pair's value replaced (TYPE u32, f32, str), or added
    kv-del KEY            a pair removed
    arr-count KEY N       an array's count field set to N (its elements kept)
    t-rename OLD NEW      a tensor renamed
    t-add NAME NEW        a tensor NEW added: a copy of NAME's info and data
    t-offset NAME OFF     a tensor's offset set to OFF
    t-ndims NAME N        a tensor's n_dims set to N (ne padded with 1s)
    t-ne NAME I V         a tensor's ne[I] set to V
    t-type NAME T         a tensor's ggml type number set to T
    poke NAME BYTE HEX    bytes at BYTE of a tensor's data set to HEX
"""
import struct
import sys

FIXED = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B", 10: "<Q", 11: "<q", 12: "<d"}


def read(b):
    pos = [0]

    def take(fmt):
        v = struct.unpack_from(fmt, b, pos[0])
        pos[0] += struct.calcsize(fmt)
        return v[0]

    def string():
        n = take("<Q")
        s = b[pos[0]:pos[0] + n]
        pos[0] += n
        return s

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("<I"), take("<Q")
            return (et, [value(et) for _ in range(n)])
        return take(FIXED[t])

    assert b[:4] == b"GGUF"
    pos[0] = 4
    ver, nt, nkv = take("<I"), take("<Q"), take("<Q")
    kvs = []
    for _ in range(nkv):
        k = string()
        t = take("<I")
        kvs.append([k, t, value(t)])
    tis = []
    for _ in range(nt):
        name = string()
        nd = take("<I")
        ne = [take("<Q") for _ in range(nd)]
        tis.append([name, nd, ne, take("<I"), take("<Q")])
    align = 32
    start = (pos[0] + align - 1) // align * align
    return ver, kvs, tis, bytearray(b[start:])


def write(ver, kvs, tis, data, n_kv=None, n_t=None, arr_count=None):
    out = bytearray(b"GGUF")
    out += struct.pack("<IQQ", ver, len(tis) if n_t is None else n_t, len(kvs) if n_kv is None else n_kv)

    def string(s):
        return struct.pack("<Q", len(s)) + s

    def value(t, v, count=None):
        if t == 8:
            return string(v)
        if t == 9:
            et, items = v
            return struct.pack("<IQ", et, len(items) if count is None else count) + b"".join(value(et, x) for x in items)
        return struct.pack(FIXED[t], v)

    for k, t, v in kvs:
        out += string(k) + struct.pack("<I", t) + value(t, v, arr_count[1] if arr_count and arr_count[0] == k else None)
    for name, nd, ne, ty, off in tis:
        out += string(name) + struct.pack("<I", nd) + b"".join(struct.pack("<Q", x) for x in ne) + struct.pack("<IQ", ty, off)
    out += b"\0" * ((32 - len(out) % 32) % 32)
    return bytes(out + data)


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    src, dst, mut, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    b = open(src, "rb").read()
    if mut == "truncate":
        open(dst, "wb").write(b[:int(args[0])])
        return
    ver, kvs, tis, data = read(b)
    extra = {}
    tensor = {t[0].decode(): t for t in tis}
    if mut in ("n-kv", "n-tensors"):
        extra["n_kv" if mut == "n-kv" else "n_t"] = int(args[0])
    elif mut == "kv-set":
        key, ty, val = args[0].encode(), args[1], args[2]
        t, v = {"u32": (4, lambda s: int(s)), "f32": (6, float), "str": (8, lambda s: s.encode())}[ty]
        for kv in kvs:
            if kv[0] == key:
                kv[1], kv[2] = t, v(val)
                break
        else:
            kvs.append([key, t, v(val)])
    elif mut == "kv-del":
        kvs = [kv for kv in kvs if kv[0] != args[0].encode()]
    elif mut == "arr-count":
        extra["arr_count"] = (args[0].encode(), int(args[1]))
    elif mut == "t-rename":
        tensor[args[0]][0] = args[1].encode()
    elif mut == "t-add":
        t = list(tensor[args[0]])
        nxt = max(x[4] for x in tis)
        nxt = (len(data) + 31) // 32 * 32
        size = sorted(x[4] for x in tis if x[4] > t[4])
        end = size[0] if size else len(data)
        chunk = bytes(data[t[4]:end])
        data += b"\0" * (nxt - len(data)) + chunk
        tis.append([args[1].encode(), t[1], list(t[2]), t[3], nxt])
    elif mut == "t-offset":
        tensor[args[0]][4] = int(args[1])
    elif mut == "t-ndims":
        t = tensor[args[0]]
        t[1] = int(args[1])
        t[2] = (t[2] + [1] * 8)[:t[1]]
    elif mut == "t-ne":
        tensor[args[0]][2][int(args[1])] = int(args[2])
    elif mut == "t-type":
        tensor[args[0]][3] = int(args[1])
    elif mut == "poke":
        at = tensor[args[0]][4] + int(args[1])
        v = bytes.fromhex(args[2])
        data[at:at + len(v)] = v
    else:
        sys.exit("unknown mutation " + mut)
    open(dst, "wb").write(write(ver, kvs, tis, data, **extra))


if __name__ == "__main__":
    main()
