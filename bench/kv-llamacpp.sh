#!/bin/sh
# bench/kv-llamacpp.sh - llama.cpp's own quantized KV cache on the models llmq
# scores (issue 21 table): what q8_0 / q4_0 / q4_1 / iq4_nl K and V cost in
# perplexity and KL divergence, beside llmq's --kv-cache rows.
#
# For each model: `llmq export MODEL --type f16` is the GGUF llama.cpp runs;
# the base is that file with an f16 KV cache, each row the same file with K
# and V stored in the row's type.  Scored on dorian_gray.txt with
# llama-perplexity's protocol (windows of CTX tokens, the second half of each
# scored), KL divergence against the base:
#   llama.cpp:  llama-perplexity -m F16 -f TEXT -c CTX -fa on -ctk f16 -ctv f16 --kl-divergence-base B
#               llama-perplexity -m F16 -f TEXT -c CTX -fa on -ctk X -ctv X --kl-divergence-base B --kl-divergence
#   llmq:       llmq verify MODEL --text TEXT --ctx CTX --protocol llamacpp --kld-save B2 --kld-topk VOCAB
#               llmq verify MODEL --text TEXT --ctx CTX --protocol llamacpp --kld B2 --kv-cache S --json
# (-fa on: llama.cpp refuses a quantized V cache without flash attention; the
# base uses it too, so that rows differ from it in the cache only.)
#   LLAMA_CPP_BIN  llama.cpp's binaries (default /work/llama.cpp-build/bin;
#                  bench/llamacpp-build.sh builds them outside the repo)
#   MODELS         model names under LLMQ_SHARED/models or paths, each
#                  optionally NAME:CTX (default "tiny-llama-long tiny-qwen2-gqa")
#   CTX=N          window length for models without :CTX (default 4096 for
#                  tiny-llama-long, trained on 4096 positions; 512 for others)
#   EVAL           text to score (default LLMQ_SHARED/data/eval/dorian_gray.txt)
#   KV_TYPES       llama.cpp cache types (default "q8_0 q4_0 q4_1 iq4_nl");
#                  K/V gives K and V different types (q8_0/q4_0)
#   LLMQ_SPECS     llmq verify --kv-cache specs, one row each (default none;
#                  skipped with a note if this llmq has no --kv-cache)
#   CHUNKS=N       score the first N windows (llama-perplexity --chunks N,
#                  llmq --max-windows N; default: all)
#   THREADS=N      threads for both (default 2)
here=$PWD ev=${EVAL:-}
. "$(dirname "$0")/lib.sh"
abs() { case $1 in /*) echo "$1" ;; *) echo "$here/$1" ;; esac; }  # paths as the caller meant them
[ -n "$ev" ] && EVAL=$(abs "$ev")
B=${LLAMA_CPP_BIN:-/work/llama.cpp-build/bin}
MODELS=${MODELS:-"tiny-llama-long tiny-qwen2-gqa"}
KV_TYPES=${KV_TYPES:-"q8_0 q4_0 q4_1 iq4_nl"}
TH=${THREADS:-2}
[ -x "$B/llama-perplexity" ] ||
    { echo "bench/kv-llamacpp.sh: no $B/llama-perplexity (set LLAMA_CPP_BIN; bench/llamacpp-build.sh builds it)" >&2; exit 2; }
ch="" mw="" wins="all windows"
[ -n "${CHUNKS:-}" ] && { ch="--chunks $CHUNKS"; mw="--max-windows $CHUNKS"; wins="first $CHUNKS windows"; }
specs=${LLMQ_SPECS:-}
if [ -n "$specs" ] && ! $LLMQ verify --help 2>/dev/null | grep -q -- --kv-cache; then
    echo "bench/kv-llamacpp.sh: $LLMQ verify has no --kv-cache: no llmq rows" >&2
    specs=""
fi
bench_tmp kv-llamacpp

# Bits per value of a cache type: ggml's block bytes * 8 / values a block
# (ggml-common.h: block_q8_0 = fp16 d + 32 int8 = 34 bytes; block_q4_0 and
# block_iq4_nl = d + 16 bytes of nibbles = 18; block_q4_1 = d, m + 16 = 20;
# block_q5_0 = d + 4 bytes of fifth bits + 16 = 22; block_q5_1 = d, m + 4 + 16
# = 24; 32 values a block).  A K/V row is the mean of the two: K and V rows
# hold as many values when head_dim_k = head_dim_v, as in every model here.
KVTAB="f32:4:1 f16:2:1 bf16:2:1 q8_0:34:32 q4_0:18:32 q4_1:20:32 iq4_nl:18:32 q5_0:22:32 q5_1:24:32"
kvbits1() {
    for e in $KVTAB; do
        case $e in "$1":*) echo "$e" | awk -F: '{ printf "%.1f", $2 * 8 / $3 }'; return ;; esac
    done
    echo -
}
kvbits() {  # K[/V]
    a=$(kvbits1 "${1%/*}"); b=$(kvbits1 "${1#*/}")
    case "$a$b" in *-*) echo - ;; *) awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f", (a + b) / 2 }' ;; esac
}
cpu=$(sed -n 's/^model name[^:]*: *//p' /proc/cpuinfo | head -1)
lver=$("$B/llama-perplexity" --version 2>&1 | sed -n 's/^version: //p')

for e in $MODELS; do
    mp=${e%%:*}
    case $e in *:*) ctx=${e##*:} ;; *) case ${mp##*/} in tiny-llama-long) ctx=${CTX:-4096} ;; *) ctx=${CTX:-512} ;; esac ;; esac
    case $mp in */*) S=$(abs "$mp") ;; *) S="$SHARED/models/$mp" ;; esac
    m=${mp##*/}
    V=$(sed -n 's/.*"vocab_size": *\([0-9]*\).*/\1/p' "$S/config.json")
    F="$T/$m-f16.gguf"
    $LLMQ export "$S" --type f16 -o "$F" >/dev/null || exit 1
    lpp() { "$B/llama-perplexity" -m "$F" -f "$EVAL" -c "$ctx" $ch -t "$TH" -fa on "$@"; }
    # the base's log, like every llama.cpp log, may lose its summary: once more
    for _ in 1 2; do
        lpp -ctk f16 -ctv f16 --kl-divergence-base "$T/$m.lbase" >"$T/$m.base.log" 2>&1 ||
            { tail "$T/$m.base.log" >&2; exit 1; }
        bp=$(lcpp_ppl "$T/$m.base.log")
        [ -n "$bp" ] && break
    done
    [ -n "$bp" ] && bp=$(f4 "$bp") || bp=-
    nch=$(sed -n 's/.*perplexity over \([0-9]*\) chunks.*/\1/p' "$T/$m.base.log")

    echo
    echo "#### $m: ${EVAL##*/}, ctx $ctx, $wins ($nch x $((ctx - 1 - ctx / 2)) scored tokens), llama-perplexity protocol" \
        "(-fa on; K and V in the row's type, K/V: K's/V's), KLD vs the f16 KV cache (llama.cpp) / f32 KV cache (llmq);" \
        "$(date -u '+%Y-%m-%d %H:%M') UTC, $(uname -m) $cpu, $TH threads, llama.cpp $lver"
    echo
    echo "| KV cache | bits/value | ppl | KLD vs f16/f32 KV +- SE |"
    echo "|---|---|---|---|"
    echo "| llama.cpp f16 (base) | $(kvbits f16) | $bp | 0 |"
    for x in $KV_TYPES; do
        set -- $(lcpp_kld "$T/$m.$(echo "$x" | tr / -).log" lpp -ctk "${x%/*}" -ctv "${x#*/}" \
            --kl-divergence-base "$T/$m.lbase" --kl-divergence)
        [ "$1" = - ] && r="- | -" || r="$(f4 "$1") | $(f6 "$2") +- $(f6 "$3")"
        echo "| llama.cpp $x | $(kvbits "$x") | $r |"
    done
    [ -n "$specs" ] || continue
    $LLMQ verify "$S" --text "$EVAL" --ctx "$ctx" --protocol llamacpp $mw --threads "$TH" \
        --kld-save "$T/$m.qbase" --kld-topk "$V" --json >"$T/$m.qbase.json" || exit 1
    qb=$(j "$T/$m.qbase.json" kv_bits_per_value 2>/dev/null || echo -)
    echo "| llmq f32 (base) | $qb | $(f4 "$(j "$T/$m.qbase.json" perplexity)") | 0 |"
    i=0
    for s in $specs; do
        i=$((i + 1)); o="$T/$m.kv$i.json"
        if $LLMQ verify "$S" --text "$EVAL" --ctx "$ctx" --protocol llamacpp $mw --threads "$TH" \
            --kld "$T/$m.qbase" --kv-cache "$s" --json >"$o"; then
            r="$(f4 "$(j "$o" perplexity)") | $(f6 "$(j "$o" kld_mean)") +- $(f6 "$(j "$o" kld_se)")"
            b=$(j "$o" kv_bits_per_value 2>/dev/null || echo -)
        else
            r="- | -"; b=-
        fi
        echo "| llmq $s | $b | $r |"
    done
done
