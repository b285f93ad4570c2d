#!/bin/sh
# bench/awq-gain.sh - AWQ's gain over round-to-nearest on every shared model
# (issue 22): KLD against the bf16 model of RTN int4 g128 (llmq pack),
# AWQ with its defaults, AWQ --n-grid 40, GPTQ alone on min-max groups
# (--n-grid 1 --no-duo --no-clip --gptq) and AWQ + GPTQ (--gptq); the ratio
# is each KLD over RTN's.  Calibration 128 x 512 tokens of data/train.
#   WINDOWS=N   windows of dorian_gray.txt scored (the doc's table: 64)
#   MODELS="..."  models of $SHARED/models (default: all three)
#   VARIANTS="awq grid40 gptq-only awq-gptq"
. "$(dirname "$0")/lib.sh"
bench_tmp awq-gain
MODELS=${MODELS:-"tiny-llama-mha tiny-qwen2-gqa tiny-llama-long"}
VARIANTS=${VARIANTS:-"awq grid40 gptq-only awq-gptq"}
opts() {
    case $1 in
        awq) echo "" ;;
        grid40) echo "--n-grid 40" ;;
        gptq-only) echo "--n-grid 1 --no-duo --no-clip --gptq" ;;
        awq-gptq) echo "--gptq" ;;
    esac
}
f3() { awk -v x="$1" 'BEGIN { printf "%.3f", x }'; }
echo "### AWQ against round-to-nearest, int4 g128 (eval dorian_gray.txt, ctx 512, ${WINDOWS:-all} windows; KLD +- SE (ratio to RTN))"
echo
printf "| model | RTN |"; for v in $VARIANTS; do printf " %s |" "$v"; done; echo
printf "|---|---|"; for v in $VARIANTS; do printf -- "---|"; done; echo
for name in $MODELS; do
    bench_model "$name"
    $LLMQ verify "$M" --text "$EVAL" --ctx 512 $win --kld-save "$T/base.kld" --json >/dev/null || exit 1
    $LLMQ pack "$M" -o "$T/rtn" --format int4 >/dev/null || exit 1
    $LLMQ verify "$T/rtn" --text "$EVAL" --ctx 512 $win --kld "$T/base.kld" --json >"$T/rtn.json" || exit 1
    r=$(j "$T/rtn.json" kld_mean)
    row="| $name | $(klse "$T/rtn.json") |"
    for v in $VARIANTS; do
        # shellcheck disable=SC2046
        $LLMQ awq "$M" -o "$T/q" --text "$TRAIN" $(opts "$v") >/dev/null || exit 1
        $LLMQ verify "$T/q" --text "$EVAL" --ctx 512 $win --kld "$T/base.kld" --json >"$T/q.json" || exit 1
        k=$(j "$T/q.json" kld_mean)
        row="$row $(klse "$T/q.json") ($(f3 "$(awk -v a="$k" -v b="$r" 'BEGIN { print a / b }')")) |"
        rm -rf "$T/q"
    done
    rm -rf "$T/rtn"
    echo "$row"
done
