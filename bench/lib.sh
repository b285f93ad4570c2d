# bench/lib.sh - sourced by every bench script (as tests/lib.sh is by the
# tests): repository root, paths, the binary and helpers.
#   LLMQ_SHARED   shared models and data (default ../shared)
#   LLMQ          the binary (default ./llmq, built if missing)
#   WINDOWS=N     score N windows of the eval text (default: all)
cd "$(dirname "$0")/.." || exit 2
SHARED=${LLMQ_SHARED:-../shared}
LLMQ=${LLMQ:-./llmq}
TC=build/tools/tcheck
[ -x "$LLMQ" ] || make -s llmq || exit 2
[ -x "$TC" ] || make -s tools >/dev/null || exit 2
EVAL="$SHARED/data/eval/dorian_gray.txt"
TRAIN="$SHARED/data/train"
win=""
[ -n "${WINDOWS:-}" ] && win="--max-windows $WINDOWS"

# bench_tmp NAME: T = a scratch directory, removed when the script exits.
bench_tmp() {
    T=$(mktemp -d "${TMPDIR:-/tmp}/llmq-bench-$1.XXXXXX") || exit 2
    trap 'rm -rf "$T"' EXIT
}
j() { $TC json "$1" "$2"; }
f2() { awk -v x="$1" 'BEGIN { printf "%.2f", x }'; }
f4() { awk -v x="$1" 'BEGIN { printf "%.4f", x }'; }
