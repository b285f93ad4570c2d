#!/bin/sh
# bench/calibrate-shards.sh - calibrate of the 1.1B shape (build/bench/synth-1b)
# as one run and as 4 shards (`--layers`, 4 independent processes, 2 at a
# time), joined by llmq merge: wall time and peak RSS of each, and whether
# the merged statistics equal the single run's byte for byte.
#   MODEL=DIR     the model (default build/bench/synth-1b)
#   SAMPLES=N     calibration windows of 512 tokens (default 32)
#   CAL_OPTS=".."  more calibrate options (default "--act bf16")
. "$(dirname "$0")/lib.sh"
MODEL=${MODEL:-build/bench/synth-1b}
SAMPLES=${SAMPLES:-32}
CAL_OPTS=${CAL_OPTS:---act bf16}
[ -f "$MODEL/config.json" ] || { echo "bench/calibrate-shards.sh: $MODEL: no model (BENCH_ONLY=synth make bench writes it)" >&2; exit 2; }
bench_tmp calshards
# shellcheck disable=SC2046
set -- $(layer_quarters "$MODEL")
run() {  # NAME OUT [--layers A:B]
    n=$1; out=$2; shift 2
    # shellcheck disable=SC2086
    /usr/bin/time -f "%e %M" -o "$T/$n.time" $LLMQ calibrate "$MODEL" --text "$TRAIN" --samples "$SAMPLES" --seqlen 512 \
        $CAL_OPTS -o "$out" "$@" 2>"$T/$n.err" || { cat "$T/$n.err" >&2; exit 1; }
}
echo "### calibrate of $(basename "$MODEL") ($5 layers), $SAMPLES x 512 tokens, $CAL_OPTS, 2 threads: single run and 4 shards"
echo
echo "| run | wall s | peak RSS MiB |"
echo "|---|---|---|"
run single "$T/single.st"
read -r w r <"$T/single.time"
echo "| single run | $w | $(mib "$r") |"
run_shards "$@"
/usr/bin/time -f "%e %M" -o "$T/merge.time" $LLMQ merge "$MODEL" "$T/p0" "$T/p1" "$T/p2" "$T/p3" -o "$T/merged.st" || exit 1
read -r w r <"$T/merge.time"
echo "| llmq merge | $w | $(mib "$r") |"
echo
if cmp -s "$T/single.st" "$T/merged.st"; then
    echo "Merged statistics: byte-identical to the single run ($(sha256sum <"$T/merged.st" | cut -c1-16))."
else
    echo "Merged statistics: DIFFER from the single run."
fi
echo
