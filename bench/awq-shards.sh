#!/bin/sh
# bench/awq-shards.sh - AWQ of the 1.1B shape (build/bench/synth-1b, made by
# `make bench` or `BENCH_ONLY=synth`) as one run and as 4 shards
# (`--layers`, 4 independent processes, 2 at a time), joined by llmq merge:
# wall time and peak RSS of each, the phases of the single run, and whether
# the merged file equals the single run's byte for byte.
#   MODEL=DIR     the model (default build/bench/synth-1b)
#   SAMPLES=N     calibration windows of 512 tokens (default 128)
#   AWQ_OPTS=".."  more awq options (default "--act bf16"); --propagate fp is always given
#   SHARDS=0      the single run only
. "$(dirname "$0")/lib.sh"
MODEL=${MODEL:-build/bench/synth-1b}
SAMPLES=${SAMPLES:-128}
AWQ_OPTS=${AWQ_OPTS:---act bf16}
[ -f "$MODEL/config.json" ] || { echo "bench/awq-shards.sh: $MODEL: no model (BENCH_ONLY=synth make bench writes it)" >&2; exit 2; }
bench_tmp awqshards
# shellcheck disable=SC2046
set -- $(layer_quarters "$MODEL")
run() {  # NAME OUT [--layers A:B]
    n=$1; out=$2; shift 2
    # shellcheck disable=SC2086
    /usr/bin/time -f "%e %M" -o "$T/$n.time" $LLMQ awq "$MODEL" --text "$TRAIN" --samples "$SAMPLES" --seqlen 512 \
        --propagate fp $AWQ_OPTS -o "$out" "$@" --json >"$T/$n.json" 2>"$T/$n.err" || { cat "$T/$n.err" >&2; exit 1; }
}
echo "### AWQ of $(basename "$MODEL") ($5 layers), W4 g128, $SAMPLES x 512 calibration tokens, --propagate fp $AWQ_OPTS, 2 threads"
echo
echo "| run | wall s | peak RSS MiB |"
echo "|---|---|---|"
run single "$T/model.awq"
read -r w r <"$T/single.time"
echo "| single run | $w | $(mib "$r") |"
if [ "${SHARDS:-1}" != 0 ]; then
    mv "$T/model.awq" "$T/single.awq"
    run_shards "$@"
    /usr/bin/time -f "%e %M" -o "$T/merge.time" $LLMQ merge "$MODEL" "$T/p0" "$T/p1" "$T/p2" "$T/p3" -o "$T/model.awq" || exit 1
    read -r w r <"$T/merge.time"
    echo "| llmq merge | $w | $(mib "$r") |"
    echo
    if cmp -s "$T/single.awq/model.safetensors" "$T/model.awq/model.safetensors" &&
       cmp -s "$T/single.awq/config.json" "$T/model.awq/config.json"; then
        echo "Merged model: byte-identical to the single run ($(sha256sum <"$T/model.awq/model.safetensors" | cut -c1-16))."
    else
        echo "Merged model: DIFFERS from the single run."
    fi
fi
echo
echo "Single run, seconds per phase summed over the layers: $(python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))["awq"]["layers"]
s = {k: sum(l["seconds"][k] for l in j) for k in ("stats", "scale", "clip", "forward")}
print(", ".join("%s %.0f" % kv for kv in s.items()))' "$T/single.json")."
echo
