#!/usr/bin/env python3
"""imatrix-check.py IMATRIX [STATS] - read a GGUF importance matrix the way
llama.cpp's loader does (common/imatrix-loader.cpp: pair NAME.in_sum2 with
NAME.counts, both F32; metadata imatrix.datasets, imatrix.chunk_count,
imatrix.chunk_size required by llama-quantize), independently of llmq's C
code, and print one line per entry: NAME nval count mean(in_sum2/count).

With STATS (an llmq statistics file, safetensors), also check every entry
against layers.L.SITE.sumsq / count within float rounding and that every
decoder linear of every layer is present.  Exit 1 with a message on any
mismatch.  --ref OTHER compares two imatrix files (GGUF or legacy .dat)
and prints the largest relative difference of the per-channel means."""
import json, struct, sys

def fail(msg):
    print("imatrix-check: " + msg, file=sys.stderr)
    sys.exit(1)

class R:
    def __init__(self, b): self.b, self.p = b, 0
    def take(self, n):
        if n < 0 or self.p + n > len(self.b): fail("truncated at byte %d" % self.p)
        v = self.b[self.p:self.p + n]; self.p += n; return v
    def u(self, fmt): return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]
    def s(self): return self.take(self.u("Q")).decode("utf-8")

SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

def val(r, t):
    if t == 8: return r.s()
    if t == 9:
        et, n = r.u("I"), r.u("Q")
        return [val(r, et) for _ in range(n)], et
    if t not in SCALAR: fail("value type %d" % t)
    return (r.u(SCALAR[t]), t)

def read_gguf(b):
    r = R(b)
    if r.take(4) != b"GGUF": return None
    ver = r.u("I")
    if ver not in (2, 3): fail("GGUF version %d" % ver)
    nt, nkv = r.u("Q"), r.u("Q")
    kv = {}
    for _ in range(nkv):
        k = r.s(); t = r.u("I"); kv[k] = (t, val(r, t))
    align = kv.get("general.alignment", (4, (32, 4)))[1][0]
    infos = []
    for _ in range(nt):
        name = r.s(); nd = r.u("I"); ne = [r.u("Q") for _ in range(nd)]
        typ = r.u("I"); off = r.u("Q"); infos.append((name, ne, typ, off))
    base = (r.p + align - 1) // align * align
    tensors = {}
    for name, ne, typ, off in infos:
        n = 1
        for d in ne: n *= d
        if typ != 0: fail("%s: type %d, llama.cpp's loader wants F32 (0)" % (name, typ))
        if off % align: fail("%s: offset %d not aligned" % (name, off))
        a = base + off
        if a + 4 * n > len(b): fail("%s: data past the end" % name)
        tensors[name] = (ne, struct.unpack_from("<%df" % n, b, a))
    return kv, tensors

def entries_gguf(kv, tensors):
    """name -> (list of per-channel means, count), as llama-quantize normalises."""
    pairs = {}
    for name, t in tensors.items():
        for suf, i in ((".in_sum2", 0), (".counts", 1)):
            if name.endswith(suf): pairs.setdefault(name[:-len(suf)], [None, None])[i] = t
    out = {}
    for name, (s, c) in pairs.items():
        if s is None or c is None: fail("%s: mismatched sums and counts" % name)
        nmat = len(c[1])
        ne0 = len(s[1]) // nmat
        if ne0 * nmat != len(s[1]): fail("%s: %d sums for %d counts" % (name, len(s[1]), nmat))
        if nmat != 1: fail("%s: %d matrices (only dense layers expected)" % (name, nmat))
        cnt = round(c[1][0])
        out[name] = ([v / cnt if cnt > 0 else 1.0 for v in s[1]], cnt, s[1])
    return out

def entries_legacy(b):
    r = R(b); out = {}
    n = r.u("i")
    if n < 1: fail("legacy: no entries")
    for _ in range(n):
        name = r.take(r.u("i")).decode(); ncall = r.u("i"); nval = r.u("i")
        v = struct.unpack("<%df" % nval, r.take(4 * nval))
        out[name] = ([x / ncall if ncall > 0 else x for x in v], ncall, v)
    return out

def load(path):
    b = open(path, "rb").read()
    g = read_gguf(b)
    if g is None: return None, entries_legacy(b)
    return g[0], entries_gguf(*g)

def stats(path):
    b = open(path, "rb").read()
    n = struct.unpack_from("<Q", b)[0]
    h = json.loads(b[8:8 + n])
    def get(name):
        t = h[name]; s, e = t["data_offsets"]; raw = b[8 + n + s:8 + n + e]
        f = {"F64": "d", "F32": "f", "I64": "q"}[t["dtype"]]
        return struct.unpack("<%d%s" % (len(raw) // struct.calcsize(f), f), raw)
    return h, get

SITE = {"attn_q": "qkv", "attn_k": "qkv", "attn_v": "qkv", "attn_output": "o",
        "ffn_gate": "gateup", "ffn_up": "gateup", "ffn_down": "down"}

def main(a):
    if len(a) >= 3 and a[1] == "--ref":
        _, mine = load(a[0]); _, ref = load(a[2])
        worst = (0.0, "")
        common = sorted(set(mine) & set(ref))
        if not common: fail("no entries in common")
        for name in common:
            x, y = mine[name][0], ref[name][0]
            if len(x) != len(y): fail("%s: %d vs %d values" % (name, len(x), len(y)))
            # relative to the entry's mean value: tiny channels would blow a per-channel ratio up
            scale = sum(y) / len(y)
            d = max(abs(p - q) for p, q in zip(x, y)) / scale
            meanrel = sum(abs(p - q) for p, q in zip(x, y)) / len(x) / scale
            # and channel by channel, |a - b| / b (b > 0: a mean of squares)
            rel = max(abs(p - q) / q if q > 0 else (0.0 if p == q else float("inf")) for p, q in zip(x, y))
            print("%-28s max rel %.4f  maxdiff/mean %.4f  meandiff/mean %.4f" % (name, rel, d, meanrel))
            if rel > worst[0]: worst = (rel, name)
        print("entries: %d common, %d only here, %d only in ref; largest per-channel relative difference %.4f (%s)" %
              (len(common), len(set(mine) - set(ref)), len(set(ref) - set(mine)), worst[0], worst[1]))
        return
    kv, ent = load(a[0])
    if kv is None: fail("not a GGUF imatrix")
    for k in ("imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"):
        if k not in kv: fail("metadata %s missing (llama-quantize refuses the file)" % k)
    if kv["general.type"][1] != "imatrix": fail("general.type is not 'imatrix'")
    ds, et = kv["imatrix.datasets"][1]
    if et != 8: fail("imatrix.datasets is not an array of strings")
    print("datasets %s chunks %d x %d" % (ds, kv["imatrix.chunk_count"][1][0], kv["imatrix.chunk_size"][1][0]))
    for name in sorted(ent):
        m, c, _ = ent[name]
        print("%s %d %d %.6g" % (name, len(m), c, sum(m) / len(m)))
    if len(a) < 2: return
    h, get = stats(a[1])
    nl = int(h["__metadata__"]["n_layers"])
    want = {"blk.%d.%s.weight" % (l, w) for l in range(nl) for w in SITE}
    if set(ent) != want: fail("entries differ from the model's linears: %s" % sorted(set(ent) ^ want)[:4])
    for name, (m, c, sums) in ent.items():
        l, w = name.split(".")[1], name.split(".")[2]
        pre = "layers.%s.%s." % (l, SITE[w])
        sq, cnt = get(pre + "sumsq"), get(pre + "count")[0]
        if c != cnt: fail("%s: count %d, stats say %d" % (name, c, cnt))
        if len(sq) != len(sums): fail("%s: %d values, stats have %d" % (name, len(sums), len(sq)))
        for j, (x, y) in enumerate(zip(sums, sq)):
            if abs(x - y) > 1e-6 * abs(y) + 1e-30: fail("%s[%d]: %r, stats %r" % (name, j, x, y))
    print("ok: %d entries match %s" % (len(ent), a[1]))

main(sys.argv[1:])
