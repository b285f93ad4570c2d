#!/bin/sh
# bench/formats-online.sh - every format after `llmq rotate --online-hadamard`
# (issue 22), weights only (W) and with activations in the same format (WA,
# verify --act same): KLD (perplexity) against the bf16 model on
# dorian_gray.txt, ctx 512.  The column to set beside bench/formats.sh's
# "rotated" one (residual stream only).
#   WINDOWS=N  windows scored (default 32)
#   MODELS="tiny-llama-mha tiny-qwen2-gqa planted-s1 planted-s2"
. "$(dirname "$0")/lib.sh"
bench_tmp formats-online
W="--ctx 512 --max-windows ${WINDOWS:-32}"
MODELS=${MODELS:-"tiny-llama-mha tiny-qwen2-gqa planted-s1 planted-s2"}
FORMATS="int8 mxint8 mxfp8 int4 mxint4 mxfp4 nvint4 nvfp4"
kl() { awk -v k="$(j "$1" kld_mean)" -v p="$(j "$1" perplexity)" 'BEGIN { printf "%.5f (%.2f)", k, p }'; }
echo "### Formats after rotate --online-hadamard (dorian_gray.txt, ctx 512, ${WINDOWS:-32} windows; KLD (perplexity) vs bf16)"
echo
printf "| model |"; for f in $FORMATS; do printf " %s W | %s WA |" "$f" "$f"; done; echo
printf "|---|"; for f in $FORMATS; do printf -- "---|---|"; done; echo
for n in $MODELS; do
    bench_model "$n"
    $LLMQ verify "$M" --text "$EVAL" $W --kld-save "$T/base.kld" >/dev/null || exit 1
    $LLMQ rotate "$M" -o "$T/onl" --dtype f32 --online-hadamard || exit 1
    row="| $n |"
    for f in $FORMATS; do
        $LLMQ pack "$T/onl" -o "$T/q" --format "$f" >/dev/null || exit 1
        $LLMQ verify "$T/q" --text "$EVAL" $W --kld "$T/base.kld" --json >"$T/w.json" || exit 1
        $LLMQ verify "$T/q" --text "$EVAL" $W --kld "$T/base.kld" --act same --json >"$T/a.json" || exit 1
        row="$row $(kl "$T/w.json") | $(kl "$T/a.json") |"
        rm -rf "$T/q"
    done
    echo "$row"
    rm -rf "$T/onl"
done
