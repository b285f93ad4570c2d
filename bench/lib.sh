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
# bench_model NAME: M = the model NAME names: a model of $SHARED/models, or
# planted-sN, the plant-outliers --seed N twin of tiny-llama-mha, written
# into $T (bench_tmp first).
bench_model() {
    case $1 in
        planted-s*) M="$T/$1"
           "$SHARED/tools/plant-outliers" "$SHARED/models/tiny-llama-mha" "$M" --seed "${1#planted-s}" >/dev/null || exit 1 ;;
        *) M="$SHARED/models/$1" ;;
    esac
}
j() { $TC json "$1" "$2"; }
# klse FILE [DIGITS]: "KLD mean +- its standard error" of a verify --json file
klse() { awk -v a="$(j "$1" kld_mean)" -v e="$(j "$1" kld_se)" -v d="${2:-5}" 'BEGIN { f = "%." d "f +- %." d "f"; printf f, a, e }'; }
f2() { awk -v x="$1" 'BEGIN { printf "%.2f", x }'; }
f4() { awk -v x="$1" 'BEGIN { printf "%.4f", x }'; }
f6() { awk -v x="$1" 'BEGIN { printf "%.6f", x }'; }
f7() { awk -v x="$1" 'BEGIN { printf "%.7f", x }'; }
mib() { echo $(($1 / 1024)); }

# layer_quarters MODEL: "0 q 2q 3q L" for the L layers of MODEL's config.json.
layer_quarters() {
    L=$(awk -F'[:,]' '/"num_hidden_layers"/ { gsub(/[^0-9]/, "", $2); print $2 }' "$1/config.json")
    q=$((L / 4))
    echo 0 $q $((2 * q)) $((3 * q)) "$L"
}

# run_shards B0 B1 B2 B3 B4: the caller's `run NAME OUT --layers A:B` (which
# leaves "wall peak-KiB" in $T/NAME.time) for the four ranges Bi:Bi+1, two
# processes at a time, into $T/p0..p3; prints a table row per shard and one
# for the four together.
run_shards() {
    t0=$(date +%s.%N)
    (run s0 "$T/p0" --layers "$1:$2" && run s1 "$T/p1" --layers "$2:$3") &
    (run s2 "$T/p2" --layers "$3:$4" && run s3 "$T/p3" --layers "$4:$5") &
    wait
    t1=$(date +%s.%N)
    for i in 0 1 2 3; do
        [ -f "$T/p$i" ] || { echo "$0: shard $i failed" >&2; exit 1; }
        read -r w r <"$T/s$i.time"
        echo "| shard $i (layers $(eval echo \$$((i + 1))):$(eval echo \$$((i + 2)))) | $w | $(mib "$r") |"
    done
    echo "| 4 shards, 2 at a time | $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') | - |"
}

# lcpp_kld LOG CMD...: run CMD, a llama-perplexity with --kl-divergence-base B
# --kl-divergence, its output in LOG; prints "ppl kld kld_se" from its summary
# (Mean PPL(Q), Mean KLD +- its SE), or "- - -" if it fails.  llama.cpp's log
# is written by a thread: a run whose summary did not reach the file is run
# again, once.
lcpp_kld() {
    lcpp_kld1 "$@" && return
    lcpp_kld1 "$@" || echo "- - -"
}
lcpp_kld1() {
    lk_log=$1; shift
    "$@" >"$lk_log" 2>&1 || { tail -5 "$lk_log" >&2; return 1; }
    lk_r=$(awk '/^Mean PPL\(Q\) +:/ { p = $4 } /Mean +KLD:/ { k = $3; s = $5 } END { if (p != "" && k != "") print p, k, s }' "$lk_log")
    [ -n "$lk_r" ] && echo "$lk_r"
}

# lcpp_ppl LOG: the base perplexity of a llama-perplexity log (Mean PPL(base)
# of a --kl-divergence run, else its Final estimate); empty if it has neither.
lcpp_ppl() {
    lp=$(awk '/Mean PPL\(base\)/ { print $4 }' "$1")
    [ -z "$lp" ] && lp=$(grep -o 'Final estimate: PPL = [0-9.]*' "$1" | awk '{ print $5 }')
    echo "$lp"
}
