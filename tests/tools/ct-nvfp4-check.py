#!/usr/bin/env python3
"""ct-nvfp4-check.py REF LOGITS JSON [--tol-logit T] [--tol-nll T] [--tol-sum T] - compare
`llmq verify CT --text testdata/sample.txt --max-windows 2 --json
--logits-out LOGITS` (its stdout in JSON) with the reference outputs of
testdata/ct-nvfp4 (REF = its reference/ref.safetensors, written by
tests/tools/ct-nvfp4-write.py from compressed-tensors' own dequantization).

Checks: the first window's token ids are the reference's; its logits at
the reference's rows agree within --tol-logit (absolute, default 2e-4) and
its top token at every position (ties within that tolerance aside); the
next-token NLL at every position of the first window within --tol-nll
(default 1e-4), and the NLL summed over both windows (llmq's nll_sum)
within --tol-sum (default 0.01).  Seen on an AVX-512 machine: 1.5e-5,
9e-6 and 2e-4: float32 sums in another order, and the NVFP4 block factor
rounded once more (formats/ctensors.h).  Pure Python (no numpy): runs where llmq builds.
Prints one JSON line; exits 1 on a failed check.
"""
import array, json, math, struct, sys


def read_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    out = {}
    for k, v in h.items():
        s, e = v["data_offsets"]
        code = {"F32": "f", "I32": "i"}[v["dtype"]]
        a = array.array(code)
        a.frombytes(b[8 + n + s:8 + n + e])
        if sys.byteorder != "little":
            a.byteswap()
        out[k] = (v["shape"], a)
    return out


def log_softmax_at(row, tok):
    m = max(row)
    return row[tok] - m - math.log(math.fsum(math.exp(x - m) for x in row))


def main():
    a = sys.argv[1:]
    tol_logit = float(a[a.index("--tol-logit") + 1]) if "--tol-logit" in a else 2e-4
    tol_nll = float(a[a.index("--tol-nll") + 1]) if "--tol-nll" in a else 1e-4
    tol_sum = float(a[a.index("--tol-sum") + 1]) if "--tol-sum" in a else 1e-2
    ref, got = read_st(a[0]), read_st(a[1])
    rep = json.loads(open(a[2]).read())
    (W, T), rids = ref["input_ids"]
    _, ids = got["input_ids"]
    (T2, V), lg = got["logits"]
    res = {"tokens": T2, "vocab": V}
    ok = T2 == T and list(ids) == list(rids[:T])
    res["ids_equal"] = ok
    rows = list(ref["rows"][1])
    rl = ref["logits_rows"][1]
    d = max(abs(lg[r * V + j] - rl[i * V + j]) for i, r in enumerate(rows) for j in range(V))
    res["max_logit_diff"] = d
    ok &= d <= tol_logit
    am = ref["argmax"][1]
    agree = ties = 0
    nll_d = 0.0
    nll = ref["token_nll"][1]
    for t in range(T):
        row = lg[t * V:(t + 1) * V]
        top = max(range(V), key=row.__getitem__)
        if top == am[t]:
            agree += 1
        elif row[top] - row[am[t]] <= tol_logit:
            ties += 1
        if t < T - 1:
            nll_d = max(nll_d, abs(-log_softmax_at(row, ids[t + 1]) - nll[t]))
    res.update({"argmax_agree": agree, "argmax_near_ties": ties, "max_token_nll_diff": nll_d})
    ok &= agree + ties == T and nll_d <= tol_nll
    ref_sum = math.fsum(nll)
    res["nll_sum"] = rep.get("nll_sum")
    res["ref_nll_sum"] = ref_sum
    ok &= rep.get("scored_tokens") == len(nll) and abs(rep["nll_sum"] - ref_sum) <= tol_sum
    res["ok"] = bool(ok)
    print(json.dumps(res))
    sys.exit(0 if ok else 1)


main()
