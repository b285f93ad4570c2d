#!/bin/sh
# bench/formats.sh - the block formats against each other (issue 22; the
# INT-vs-FP study, Chen et al., arXiv 2510.25602): for each model, each
# weight format of llmq pack (round to nearest), weight-only (--act fp) and
# with activations in the same format (--act same), without and with a
# Hadamard rotation of the residual stream (llmq rotate --dtype f32):
# perplexity on dorian_gray.txt (ctx 512, full protocol) and KL divergence
# against the bf16 model, and bits per weight of the quantized linears.
#   WINDOWS=N     score N windows (default: all 264)
#   SEEDS="1 2"   plant-outliers seeds (twins of tiny-llama-mha)
#   MODELS="..."  default "tiny-llama-mha tiny-qwen2-gqa planted-s1 planted-s2"
#   FORMATS="..." default "int8 mxint8 mxfp8 int4 mxint4 mxfp4 nvint4 nvfp4"
#   ROT="no yes"  without and / or with the rotation
#   ACTS="fp same"
#   SCALE=ocp|ceil|mse  the block scale rule of the mx / nv formats (default
#                 pack's: mse); mxint8 always takes ocp
. "$(dirname "$0")/lib.sh"
SEEDS=${SEEDS:-1 2}
MODELS=${MODELS:-"tiny-llama-mha tiny-qwen2-gqa $(for s in $SEEDS; do printf 'planted-s%s ' "$s"; done)"}
FORMATS=${FORMATS:-"int8 mxint8 mxfp8 int4 mxint4 mxfp4 nvint4 nvfp4"}
ROT=${ROT:-no yes}
ACTS=${ACTS:-fp same}
SCALE=${SCALE:-mse}
bench_tmp formats

echo "### Block formats (llmq pack, RTN, mx / nv block scales --mx-scale $SCALE), eval dorian_gray.txt, ctx 512, ${WINDOWS:-all} windows; $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "| model | format | bits/weight | rotated | activations | perplexity | KLD mean +- SE | top-1 agree |"
echo "|---|---|---:|---|---|---:|---|---:|"
for name in $MODELS; do
    bench_model "$name"
    "$LLMQ" verify "$M" --text "$EVAL" --ctx 512 $win --kld-save "$T/base.kld" --json >"$T/base.json" || exit 1
    printf '| %s | bf16 | 16 | no | fp | %.3f | | |\n' "$name" "$(j "$T/base.json" perplexity)"
    for r in $ROT; do
        D=$M
        if [ "$r" = yes ]; then "$LLMQ" rotate "$M" -o "$T/rot" --dtype f32 || exit 1; D="$T/rot"; fi
        for f in $FORMATS; do
            sc=""
            case $f in mxint8) ;; mx*|nv*) sc="--mx-scale $SCALE" ;; esac
            "$LLMQ" pack "$D" -o "$T/q" --format "$f" $sc || exit 1
            for a in $ACTS; do
                if "$LLMQ" verify "$T/q" --text "$EVAL" --ctx 512 $win --act "$a" --kld "$T/base.kld" --json >"$T/r.json"; then
                    printf '| %s | %s | %.3f | %s | %s | %.3f | %s | %.4f |\n' "$name" "$f" "$(j "$T/r.json" bits_per_weight)" \
                        "$r" "$a" "$(j "$T/r.json" perplexity)" "$(klse "$T/r.json")" "$(j "$T/r.json" top1_agree)"
                else
                    echo "| $name | $f | | $r | $a | failed | | |"
                fi
            done
            rm -rf "$T/q"
        done
        rm -rf "$T/rot"
    done
    rm -rf "$T/planted-s"*
done
