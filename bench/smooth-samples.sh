#!/bin/sh
# bench/smooth-samples.sh - what fewer calibration windows cost SmoothQuant
# W8A8: the planted-outlier twin (--seed 1) of tiny-llama-mha, calibrate
# --act bf16 on N x 512 tokens of data/train, smooth (defaults, with
# --stats-out), pack int8, then KLD against the twin on dorian_gray.txt
# with dynamic and static int8 activations.
#   SAMPLES="..."  window counts (default "32 64 128")
. "$(dirname "$0")/lib.sh"
SAMPLES=${SAMPLES:-32 64 128}
bench_tmp smoothsamples
"$SHARED/tools/plant-outliers" "$SHARED/models/tiny-llama-mha" "$T/planted" --seed 1 >/dev/null || exit 1
M="$T/planted"
$LLMQ verify "$M" --text "$EVAL" --ctx 512 $win --kld-save "$T/base.kld" >/dev/null || exit 1
echo "### calibrate windows and smooth's W8A8 (planted twin of tiny-llama-mha, seed 1; dorian_gray.txt ctx 512, ${WINDOWS:-all} windows)"
echo
echo "| calibration | W8A8 dynamic KLD | perplexity | W8A8 static KLD | perplexity |"
echo "|---|---|---|---|---|"
for n in $SAMPLES; do
    $LLMQ calibrate "$M" --text "$TRAIN" --samples "$n" --seqlen 512 --act bf16 -o "$T/s$n.st" || exit 1
    $LLMQ smooth "$M" --stats "$T/s$n.st" -o "$T/sm$n" --stats-out "$T/sm$n.st" || exit 1
    $LLMQ pack "$T/sm$n" -o "$T/sm$n.q8" --format int8 || exit 1
    $LLMQ verify "$T/sm$n.q8" --text "$EVAL" --ctx 512 $win --act int8 --kld "$T/base.kld" --json >"$T/d.json" || exit 1
    $LLMQ verify "$T/sm$n.q8" --text "$EVAL" --ctx 512 $win --act int8-static --stats "$T/sm$n.st" --kld "$T/base.kld" \
        --json >"$T/s.json" || exit 1
    echo "| $n x 512 | $(f6 "$(j "$T/d.json" kld_mean)") +- $(f7 "$(j "$T/d.json" kld_se)") | $(f4 "$(j "$T/d.json" perplexity)") | $(f6 "$(j "$T/s.json" kld_mean)") +- $(f7 "$(j "$T/s.json" kld_se)") | $(f4 "$(j "$T/s.json" perplexity)") |"
    rm -rf "$T/sm$n" "$T/sm$n.q8"
done
echo
