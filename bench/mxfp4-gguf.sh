#!/bin/sh
# bench/mxfp4-gguf.sh - llmq's MXFP4 in llama.cpp beside llama.cpp's own
# MXFP4 (issue 22).  The base is `llmq export --type f16`; llama.cpp's MXFP4
# is llama-quantize of it with every decoder linear forced to mxfp4
# (--tensor-type attn_q=mxfp4 ... ffn_down=mxfp4; file type MXFP4_MOE,
# which alone knows the type; token_embd and output stay BF16 as in llmq's
# files, whose head is not quantized).  llmq's rows are `llmq pack --format
# mxfp4` (RTN; --mx-scale ocp, the rule llama.cpp's quantizer uses, and
# mse) and, where `llmq awq --format mxfp4` exists, AWQ (and AWQ + GPTQ),
# each written by `llmq export` (MXFP4 copied exactly).  Every file is
# scored by llama-perplexity on dorian_gray.txt, ctx 512, KL divergence
# against the f16 file:
#   llama-perplexity -m F16 -f TEXT -c 512 --chunks N --kl-divergence-base B
#   llama-perplexity -m X -f TEXT -c 512 --chunks N --kl-divergence-base B --kl-divergence
#   LLAMA_CPP_BIN  llama.cpp's binaries (default /work/llama.cpp-build/bin)
#   MODELS         default "tiny-llama-mha tiny-qwen2-gqa"
#   CHUNKS=N       windows of 512 scored (default 64)
#   AWQ=0          leave out the AWQ rows
. "$(dirname "$0")/lib.sh"
B=${LLAMA_CPP_BIN:-/work/llama.cpp-build/bin}
MODELS=${MODELS:-"tiny-llama-mha tiny-qwen2-gqa"}
for x in llama-quantize llama-perplexity; do
    [ -x "$B/$x" ] || { echo "bench/mxfp4-gguf.sh: no $B/$x (set LLAMA_CPP_BIN; bench/llamacpp-build.sh builds it)" >&2; exit 2; }
done
bench_tmp mxfp4
TH=${THREADS:-2}
CH=${CHUNKS:-64}
lcpp() {  # NAME FILE BASE: prints "ppl kld kld_se"
    lcpp_kld "$T/$1.lcpp.log" "$B/llama-perplexity" -m "$2" -f "$EVAL" -c 512 --chunks "$CH" -t "$TH" \
        --kl-divergence-base "$3" --kl-divergence
}
echo "### MXFP4 GGUF in llama.cpp (80fb11a): llmq export vs llama-quantize; dorian_gray.txt, first $CH windows of 512, KLD vs the f16 export; $(date -u '+%Y-%m-%d %H:%M UTC')"
for m in $MODELS; do
    S="$SHARED/models/$m"
    $LLMQ export "$S" -o "$T/f16.gguf" --type f16 || exit 1
    "$B/llama-perplexity" -m "$T/f16.gguf" -f "$EVAL" -c 512 --chunks "$CH" -t "$TH" --kl-divergence-base "$T/lbase" \
        >"$T/base.log" 2>&1 || { tail "$T/base.log" >&2; exit 1; }
    tt=""
    for t in attn_q attn_k attn_v attn_output ffn_gate ffn_up ffn_down; do tt="$tt --tensor-type $t=mxfp4"; done
    "$B/llama-quantize" $tt --token-embedding-type bf16 --output-tensor-type bf16 "$T/f16.gguf" "$T/lc.gguf" MXFP4_MOE "$TH" \
        >"$T/q.log" 2>&1 || { tail "$T/q.log" >&2; exit 1; }
    rows="llama.cpp~llama-quantize~MXFP4:lc"
    for r in ocp mse; do
        $LLMQ pack "$S" -o "$T/p-$r" --format mxfp4 --mx-scale $r || exit 1
        $LLMQ export "$T/p-$r" -o "$T/p-$r.gguf" || exit 1
        rows="$rows llmq~pack~mxfp4~--mx-scale~$r:p-$r"
    done
    if [ "${AWQ:-1}" != 0 ] && $LLMQ awq --help 2>&1 | grep -q mxfp4; then
        for g in ${AWQ_RUNS:-"" --gptq}; do
            $LLMQ awq "$S" -o "$T/a$g" --text "$TRAIN" --format mxfp4 $g >/dev/null || exit 1
            $LLMQ export "$T/a$g" -o "$T/a$g.gguf" || exit 1
            rows="$rows llmq~awq~--format~mxfp4~$g:a$g"
        done
    fi
    echo
    echo "#### $m"
    echo
    echo "| file | llama.cpp ppl | KLD +- SE | KLD / llama.cpp's |"
    echo "|---|---|---|---|"
    echo "| f16 (llmq export) | $(lcpp_ppl "$T/base.log") | 0 | |"
    ref=""
    for r in $rows; do
        name=$(echo "${r%%:*}" | tr '~' ' '); f="$T/${r#*:}.gguf"
        set -- $(lcpp "${r#*:}" "$f" "$T/lbase")
        [ -z "$ref" ] && ref=$2
        echo "| $name | $1 | $2 +- $3 | $(awk -v a="$2" -v b="$ref" 'BEGIN { if (b > 0) printf "%.3f", a / b }') |"
    done
    rm -rf "$T"/p-* "$T"/a* "$T"/*.gguf
done
