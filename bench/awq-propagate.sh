#!/bin/sh
# bench/awq-propagate.sh - AWQ W4 g128 with each layer's calibration inputs
# from the quantized layers below it (--propagate quant, the default) or
# from the float model (--propagate fp, as llm-awq; what --layers shards
# need).  Calibration 128 x 512 tokens of data/train, seed 0; KLD against
# the bf16 model on dorian_gray.txt, ctx 512, with its standard error; the
# AWQ wall time (2 threads, noisy: compare within the run).
#   MODELS="..."  shared models (default: all three)
#   SAMPLES=N     calibration windows (default 128)
#   VARIANTS="..." PROPAGATE[-bf16][-swN] each (default "quant fp fp-bf16"):
#                 -bf16 adds --act bf16, -swN --stat-windows N
. "$(dirname "$0")/lib.sh"
SAMPLES=${SAMPLES:-128}
MODELS=${MODELS:-tiny-llama-mha tiny-qwen2-gqa tiny-llama-long}
VARIANTS=${VARIANTS:-quant fp fp-bf16}
bench_tmp awqprop
echo "### AWQ: float or quantized propagation (W4 g128 asym, calibration $SAMPLES x 512 tokens of data/train; dorian_gray.txt ctx 512, ${WINDOWS:-all} windows)"
echo
echo "| model | propagate, act | KLD mean | KLD SE | perplexity | awq wall s | awq peak RSS MiB |"
echo "|---|---|---|---|---|---|---|"
for name in $MODELS; do
    M="$SHARED/models/$name"
    $LLMQ verify "$M" --text "$EVAL" --ctx 512 $win --kld-save "$T/$name.kld" --json >"$T/$name.bf16.json" || exit 1
    echo "| $name | bf16 | 0 | - | $(f4 "$(j "$T/$name.bf16.json" perplexity)") | - | - |"
    for p in $VARIANTS; do
        act=f32 sw=0
        case $p in *-bf16*) act=bf16 ;; esac
        case $p in *-sw*) sw=${p##*-sw} ;; esac
        /usr/bin/time -f "%e %M" -o "$T/time" $LLMQ awq "$M" -o "$T/$name.$p" --text "$TRAIN" --samples "$SAMPLES" \
            --seqlen 512 --propagate "${p%%-*}" --act $act --stat-windows "$sw" >/dev/null || exit 1
        $LLMQ verify "$T/$name.$p" --text "$EVAL" --ctx 512 $win --kld "$T/$name.kld" --json >"$T/v.json" || exit 1
        read -r wall rss <"$T/time"
        echo "| $name | ${p%%-*}, $act$([ "$sw" = 0 ] || echo ", $sw stat windows") | $(f6 "$(j "$T/v.json" kld_mean)") | $(f6 "$(j "$T/v.json" kld_se)") | $(f4 "$(j "$T/v.json" perplexity)") | $wall | $((rss / 1024)) |"
        rm -rf "$T/$name.$p"
    done
done
echo
