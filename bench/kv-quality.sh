#!/bin/sh
# bench/kv-quality.sh - llmq's quantized KV caches (llmq verify --kv-cache)
# against its fp32 cache: KL divergence, perplexity and bits per value
# (issue 21's table; bench/kv-llamacpp.sh gives llama.cpp's rows).
#
# Per model: calibrate (32 windows of 512 of bleak_house.txt: the key
# ranges of --stats), the base with the fp32 cache
#   llmq verify M --text EVAL --ctx CTX --protocol llamacpp --kld-save B --kld-topk VOCAB
# then one row per cache
#   llmq verify M --text EVAL --ctx CTX --protocol llamacpp --kld B FLAGS --json
#   MODELS     default "tiny-llama-long:4096 tiny-qwen2-gqa:512" (MODEL:CTX)
#   WINDOWS=N  score the first N windows (default: all)
#   ROWS       a file of "LABEL;FLAGS" lines instead of the default rows
#              (@STATS in FLAGS is the calibrated statistics file)
. "$(dirname "$0")/lib.sh"
bench_tmp kvq
MODELS=${MODELS:-"tiny-llama-long:4096 tiny-qwen2-gqa:512"}
TH=${THREADS:-2}
rows() {
    if [ -n "${ROWS:-}" ]; then cat "$ROWS"; return; fi
    cat <<'EOF'
f32 (base);--kv-cache f32
bf16;--kv-cache bf16
int8 KIVI, groups of 64;--kv-cache int8 --kv-key-group 64 --kv-value-group 64
int8 calibrated;--kv-cache int8 --stats @STATS
int4 KIVI;--kv-cache int4
int4 KIVI, groups of 64;--kv-cache int4 --kv-key-group 64 --kv-value-group 64
int4 KIVI, groups of 64, no sinks;--kv-cache int4 --kv-key-group 64 --kv-value-group 64 --kv-sinks 0
int4 KIVI, groups of 64, 4 sinks;--kv-cache int4 --kv-key-group 64 --kv-value-group 64 --kv-sinks 4
int4 calibrated;--kv-cache int4 --stats @STATS
int4 calibrated, 1% outliers;--kv-cache int4 --stats @STATS --kv-outliers 1%
nuq4 calibrated, 1% outliers;--kv-cache nuq4 --stats @STATS --kv-outliers 1%
int3 KIVI, groups of 64;--kv-cache int3 --kv-key-group 64 --kv-value-group 64
int3 calibrated;--kv-cache int3 --stats @STATS
nuq3 calibrated, 1% outliers;--kv-cache nuq3 --stats @STATS --kv-outliers 1%
int2 KIVI, groups of 64, residual 128, 4 sinks;--kv-cache int2 --kv-key-group 64 --kv-value-group 64 --kv-residual 128 --kv-sinks 4
int2 calibrated, 1% outliers, residual 128, 4 sinks;--kv-cache int2 --stats @STATS --kv-outliers 1% --kv-residual 128 --kv-sinks 4
nuq2 calibrated, 1% outliers, residual 128, 4 sinks;--kv-cache nuq2 --stats @STATS --kv-outliers 1% --kv-residual 128 --kv-sinks 4
EOF
}
host="$(uname -m), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
for mc in $MODELS; do
    m=${mc%%:*} ctx=${mc##*:}
    M="$SHARED/models/$m"
    vocab=$(awk -F'[:,]' '/"vocab_size"/ { gsub(/[^0-9]/, "", $2); print $2 }' "$M/config.json")
    "$LLMQ" calibrate "$M" --text "$TRAIN/bleak_house.txt" --samples 32 --seqlen 512 -o "$T/$m.stats" --threads "$TH" ||
        exit 1
    "$LLMQ" verify "$M" --text "$EVAL" --ctx "$ctx" --protocol llamacpp $win --kld-save "$T/$m.kld" \
        --kld-topk "$vocab" --threads "$TH" >/dev/null || exit 1
    echo "#### $m: $(basename "$EVAL"), ctx $ctx, llamacpp protocol${WINDOWS:+, first $WINDOWS windows}; KLD vs llmq's fp32 cache; $(date -u '+%Y-%m-%d %H:%M UTC'), $host"
    echo
    echo "| KV cache | llmq verify flags | bits/value | ppl | KLD | +- SE |"
    echo "|---|---|---:|---:|---:|---:|"
    rows | while IFS=';' read -r label flags; do
        [ -n "$label" ] || continue
        fl=$(echo "$flags" | sed "s#@STATS#$T/$m.stats#")
        # shellcheck disable=SC2086
        "$LLMQ" verify "$M" --text "$EVAL" --ctx "$ctx" --protocol llamacpp $win --kld "$T/$m.kld" $fl \
            --threads "$TH" --json >"$T/r.json" || { echo "| $label | $flags | failed | | | |"; continue; }
        echo "| $label | \`$(echo "$flags" | sed 's#@STATS#S#')\` | $(f2 "$(j "$T/r.json" kv_bits_per_value)") |" \
             "$(f4 "$(j "$T/r.json" perplexity)") | $(f6 "$(j "$T/r.json" kld_mean)") | $(f6 "$(j "$T/r.json" kld_se)") |"
    done
    echo
done
