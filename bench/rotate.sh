#!/bin/sh
# bench/rotate.sh - what a Hadamard rotation of the residual stream (llmq
# rotate) does to quantization, and what it costs by itself (issue 22).
# For tiny-llama-mha, tiny-qwen2-gqa and planted-outlier twins of
# tiny-llama-mha (plant-outliers --seed 1, 2): perplexity on dorian_gray.txt
# (ctx 512, full protocol) and KL divergence against the bf16 model, for
# the rotated checkpoint itself (f32: exact; bf16: one more rounding),
# int4 weights (pack --format int4, RTN, groups of 128) and W8A8 (pack
# --format int8, --act int8 per-token dynamic), each without and with the
# rotation.
#   WINDOWS=N     score N windows (default: all 264)
#   SEEDS="1 2"   plant-outliers seeds
#   BLOCK=B       --hadamard-block (default: the whole width)
#   MODELS="..."  default "tiny-llama-mha tiny-qwen2-gqa planted-s1 planted-s2"
#   AWQ=1         also AWQ W4 g128 (llmq awq, calibration SAMPLES x 512
#                 tokens of data/train, default 128) without and with rotation
#   ONLY=awq      only the AWQ rows (with the bf16 reference)
. "$(dirname "$0")/lib.sh"
SEEDS=${SEEDS:-1 2}
MODELS=${MODELS:-"tiny-llama-mha tiny-qwen2-gqa $(for s in $SEEDS; do printf 'planted-s%s ' "$s"; done)"}
blk=""
[ -n "${BLOCK:-}" ] && blk="--hadamard-block $BLOCK"
bench_tmp rotate

echo "### Hadamard rotation (llmq rotate $blk), eval dorian_gray.txt, ctx 512, ${WINDOWS:-all} windows; $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "| model | weights | rotated | activations | perplexity | KLD mean +- SE | KLD p99 | top-1 agree |"
echo "|---|---|---|---|---|---|---|---|"
for name in $MODELS; do
    bench_model "$name"
    "$LLMQ" verify "$M" --text "$EVAL" --ctx 512 $win --kld-save "$T/base.kld" --json >"$T/base.json" || exit 1
    printf '| %s | bf16 | no | fp | %.3f | | | |\n' "$name" "$(j "$T/base.json" perplexity)"
    "$LLMQ" rotate "$M" -o "$T/rot32" --dtype f32 $blk || exit 1
    "$LLMQ" rotate "$M" -o "$T/rot16" --dtype bf16 $blk || exit 1
    row() {  # weights rotated act dir
        "$LLMQ" verify "$4" --text "$EVAL" --ctx 512 $win --act "$3" --kld "$T/base.kld" --json >"$T/r.json" ||
            { echo "| $name | $1 | $2 | $3 | failed | | | |"; return; }
        printf '| %s | %s | %s | %s | %.3f | %s | %.4f | %.4f |\n' "$name" "$1" "$2" "$3" "$(j "$T/r.json" perplexity)" \
            "$(klse "$T/r.json" 6)" "$(j "$T/r.json" kld_p99)" "$(j "$T/r.json" top1_agree)"
    }
    if [ "${AWQ:-0}" = 1 ] || [ "${ONLY:-}" = awq ]; then
        for src in plain rot32; do
            if [ $src = plain ]; then D=$M; r=no; else D="$T/rot32"; r=yes; fi
            "$LLMQ" awq "$D" -o "$T/$src.awq" --text "$TRAIN" --samples "${SAMPLES:-128}" --seqlen 512 || exit 1
            row "AWQ W4 g128" $r fp "$T/$src.awq"
            rm -rf "$T/$src.awq"
        done
    fi
    if [ "${ONLY:-}" = awq ]; then rm -rf "$T/rot32" "$T/rot16" "$T/planted-s"*; continue; fi
    row f32 yes fp "$T/rot32"
    row bf16 yes fp "$T/rot16"
    for src in plain rot32; do
        if [ $src = plain ]; then D=$M; r=no; else D="$T/rot32"; r=yes; fi
        "$LLMQ" pack "$D" -o "$T/$src.q4" --format int4 || exit 1
        row "int4 g128 RTN" $r fp "$T/$src.q4"
        "$LLMQ" pack "$D" -o "$T/$src.q8" --format int8 || exit 1
        row "int8 RTN" $r int8 "$T/$src.q8"
        rm -rf "$T/$src.q4" "$T/$src.q8"
    done
    rm -rf "$T/rot32" "$T/rot16" "$T/planted-s"*
done
