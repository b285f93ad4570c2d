#!/bin/sh
# tests/tools/same-output.sh OLD NEW: run two llmq binaries on the shared
# models and compare every output directory byte for byte (issue 19's
# "behaviour unchanged" check of a refactoring).  Each run writes to the
# same relative path, since the command line is recorded in the output.
# Prints "identical: NAME" or "DIFFER: NAME"; exits 1 if any differs.
#   LLMQ_SHARED  shared models and data (default ../shared)
[ $# -eq 2 ] || { echo "usage: $0 OLD NEW" >&2; exit 2; }
OLD=$(realpath "$1") NEW=$(realpath "$2")
S=$(realpath "${LLMQ_SHARED:-../shared}")
M=$S/models T=$S/data/train
W=$(mktemp -d "${TMPDIR:-/tmp}/llmq-same.XXXXXX") || exit 2
trap 'rm -rf "$W"' EXIT
mkdir "$W/o" "$W/n"
bad=0
run2() {  # NAME llmq-args...
    n=$1; shift
    (cd "$W/o" && "$OLD" "$@" -o "$n" >/dev/null 2>"$n.err") || { echo "old failed: $n"; bad=1; }
    (cd "$W/n" && "$NEW" "$@" -o "$n" >/dev/null 2>"$n.err") || { echo "new failed: $n"; bad=1; }
    if diff -r "$W/o/$n" "$W/n/$n" >/dev/null; then echo "identical: $n"; return; fi
    bad=1
    # where only model.safetensors differs: its tensors, or only metadata?
    if diff -r -x model.safetensors "$W/o/$n" "$W/n/$n" >/dev/null; then
        python3 - "$W/o/$n/model.safetensors" "$W/n/$n/model.safetensors" "$n" <<'PY'
import json, struct, sys
def rd(p):
    b = open(p, "rb").read(); k = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + k])
    return h.pop("__metadata__", {}), h, b[8 + k:]
(m1, h1, d1), (m2, h2, d2) = rd(sys.argv[1]), rd(sys.argv[2])
if h1 == h2 and d1 == d2:
    diff = []
    for k in sorted(set(m1) | set(m2)):
        if m1.get(k) == m2.get(k): continue
        try:
            a, b = json.loads(m1.get(k, "{}")), json.loads(m2.get(k, "{}"))
            diff.append("%s: %s" % (k, ", ".join("%s %s -> %s" % (x, a.get(x), b.get(x)) for x in sorted(set(a) | set(b)) if a.get(x) != b.get(x))))
        except (ValueError, AttributeError):
            diff.append(k)
    print("DIFFER: %s: tensors identical; metadata: %s" % (sys.argv[3], "; ".join(diff)))
else:
    print("DIFFER: %s: tensors differ" % sys.argv[3])
PY
    else
        echo "DIFFER: $n"
    fi
}
for m in tiny-qwen2-gqa tiny-llama-mha tiny-llama-long; do
    run2 $m.int4 pack "$M/$m" --format int4
    run2 $m.int8 pack "$M/$m" --format int8
    run2 $m.mx pack "$M/$m" --format mxint8
    run2 $m.s64 pack "$M/$m" --format int4 --sym --group 64
    "$NEW" calibrate "$M/$m" --text "$T" --samples 8 --seqlen 256 -o "$W/$m.stats" >/dev/null || exit 2
    run2 $m.sq smooth "$M/$m" --stats "$W/$m.stats"
    run2 $m.os smooth "$M/$m" --stats "$W/$m.stats" --method osplus
    run2 $m.ct export "$W/n/$m.int4" --to compressed-tensors
    run2 $m.awq awq "$M/$m" --text "$T" --samples 4 --seqlen 128
done
run2 mha.gqa uptrain-gqa "$M/tiny-llama-mha" --kv-heads 2 --text "$T" --steps 2 --samples 2 --seqlen 64 \
    --calib-samples 2 --k-steps 2
exit $bad
