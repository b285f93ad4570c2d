#!/bin/sh
# bench/gguf.sh - llmq's GGUF exports beside llama.cpp's own quantizations
# (issue 18 table), scored by llama.cpp itself and by llmq verify.
#
# For each model: `llmq export --type f16` is the base.  llama.cpp's rows are
# llama-quantize of that file (Q8_0, Q4_0, Q4_1, Q4_K_M, Q3_K_M, no
# imatrix; with IMATRIX=1 also Q4_K_M with llmq's --imatrix-out).  llmq's rows
# are `llmq export MODEL --type q8_0|q4_0|q4_1` (round to nearest) and AWQ at
# group 32 exported exactly: asymmetric -> Q4_1, symmetric -> Q4_0, without
# and with --gptq (GPTQ's rounding on AWQ's grid).  Every
# file is scored on dorian_gray.txt, ctx 512, llama-perplexity's protocol,
# KL divergence against the f16 file:
#   llama.cpp:  llama-perplexity -m F16 -f TEXT -c 512 --kl-divergence-base B
#               llama-perplexity -m X -f TEXT -c 512 --kl-divergence-base B --kl-divergence
#   llmq:       llmq verify F16 --text TEXT --protocol llamacpp --kld-save B2 --kld-topk VOCAB
#               llmq verify X --text TEXT --protocol llamacpp --kld B2 --json
# bits/weight = 8 * bytes / elements over every tensor of the file.
#   LLAMA_CPP_BIN  llama.cpp's binaries (default /work/llama.cpp-build/bin;
#                  bench/llamacpp-build.sh builds them outside the repo)
#   MODELS         default "tiny-llama-mha tiny-qwen2-gqa"
#   AWQ_OPTS       extra llmq awq options
#   GPTQ=0         leave out the AWQ + GPTQ rows (`llmq awq --gptq`)
#   TYPES          llama-quantize types (default "Q8_0 Q4_0 Q4_1 Q4_K_M Q3_K_M"); TYPE:f16head
#                  keeps token_embd and output in F16 (--token-embedding-type f16
#                  --output-tensor-type f16), as llmq's AWQ exports do
#   LLMQ_ROWS=0    leave out llmq's RTN and AWQ rows
#   CHUNKS=N       score the first N windows of 512 (default 64: 16,320
#                  scored tokens; llama-perplexity --chunks N, llmq
#                  --max-windows N)
. "$(dirname "$0")/lib.sh"
B=${LLAMA_CPP_BIN:-/work/llama.cpp-build/bin}
MODELS=${MODELS:-"tiny-llama-mha tiny-qwen2-gqa"}
for x in llama-quantize llama-perplexity; do
    [ -x "$B/$x" ] || { echo "bench/gguf.sh: no $B/$x (set LLAMA_CPP_BIN; bench/llamacpp-build.sh builds it)" >&2; exit 2; }
done
bench_tmp gguf
TH=${THREADS:-2}
CH=${CHUNKS:-64}
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
bpw() {  # FILE: bits per weight over all tensors
    python3 - "$1" <<'EOF'
import importlib.util, sys
s = importlib.util.spec_from_file_location("m", "tests/tools/gguf-mutate.py"); m = importlib.util.module_from_spec(s)
s.loader.exec_module(m)
b = open(sys.argv[1], "rb").read()
ver, kvs, tis, data = m.read(b)
offs = sorted(t[4] for t in tis) + [len(data)]
nb = ne = 0
for t in tis:
    n = 1
    for x in t[2]: n *= x
    ne += n
    nb += min(o for o in offs if o > t[4]) - t[4]
print("%.3f" % (8 * nb / ne))
EOF
}
lcpp() {  # NAME FILE BASE: llama-perplexity's KLD; prints "ppl kld kld_se"
    lcpp_kld "$T/$1.lcpp.log" "$B/llama-perplexity" -m "$2" -f "$EVAL" -c 512 --chunks "$CH" -t "$TH" \
        --kl-divergence-base "$3" --kl-divergence
}
lq() {  # NAME FILE BASE: llmq verify's KLD; prints "ppl kld kld_se"
    $LLMQ verify "$2" --text "$EVAL" --protocol llamacpp --ctx 512 --max-windows "$CH" --threads "$TH" --kld "$3" --json >"$T/$1.lq.json" ||
        { echo "- - -"; return; }
    echo "$(j "$T/$1.lq.json" perplexity) $(j "$T/$1.lq.json" kld_mean) $(j "$T/$1.lq.json" kld_se)"
}
for m in $MODELS; do
    S="$SHARED/models/$m"
    V=$(sed -n 's/.*"vocab_size": *\([0-9]*\).*/\1/p' "$S/config.json")
    $LLMQ export "$S" -o "$T/$m-f16.gguf" --type f16 || exit 1
    "$B/llama-perplexity" -m "$T/$m-f16.gguf" -f "$EVAL" -c 512 --chunks "$CH" -t "$TH" --kl-divergence-base "$T/$m.lbase" \
        >"$T/$m.base.log" 2>&1 || { tail "$T/$m.base.log" >&2; exit 1; }
    $LLMQ verify "$T/$m-f16.gguf" --text "$EVAL" --protocol llamacpp --ctx 512 --max-windows "$CH" --threads "$TH" \
        --kld-save "$T/$m.qbase" --kld-topk "$V" --json >"$T/$m.base.json" || exit 1
    rows=""
    for q in ${TYPES:-Q8_0 Q4_0 Q4_1 Q4_K_M Q3_K_M}; do
        t=${q%%:*}; extra=""; tag=""
        case $q in *:f16head) extra="--token-embedding-type f16 --output-tensor-type f16"; tag="-f16head" ;; esac
        "$B/llama-quantize" $extra "$T/$m-f16.gguf" "$T/$m-lc-$t$tag.gguf" "$t" "$TH" >"$T/q.log" 2>&1 ||
            { tail "$T/q.log" >&2; exit 1; }
        rows="$rows llama.cpp~$t${tag:+~(F16~embd/output)}:$m-lc-$t$tag"
    done
    if [ "${IMATRIX:-0}" = 1 ]; then
        $LLMQ calibrate "$S" --text "$TRAIN" -o "$T/$m.stats" --imatrix-out "$T/$m.imatrix" >/dev/null || exit 1
        "$B/llama-quantize" --imatrix "$T/$m.imatrix" "$T/$m-f16.gguf" "$T/$m-lci-Q4_K_M.gguf" Q4_K_M "$TH" \
            >"$T/q.log" 2>&1 || { tail "$T/q.log" >&2; exit 1; }
        rows="$rows llama.cpp~Q4_K_M~+~llmq~imatrix:$m-lci-Q4_K_M"
    fi
    [ "${LLMQ_ROWS:-1}" = 0 ] && QL="" || QL="q8_0 q4_0 q4_1"
    for q in $QL; do
        $LLMQ export "$S" -o "$T/$m-rtn-$q.gguf" --type $q || exit 1
        rows="$rows llmq~RTN~$q:$m-rtn-$q"
    done
    if [ "${LLMQ_ROWS:-1}" != 0 ]; then
        $LLMQ awq "$S" -o "$T/$m.awq32" --text "$TRAIN" --group 32 ${AWQ_OPTS:-} >/dev/null || exit 1
        $LLMQ awq "$S" -o "$T/$m.awq32s" --text "$TRAIN" --group 32 --sym ${AWQ_OPTS:-} >/dev/null || exit 1
        $LLMQ export "$T/$m.awq32" -o "$T/$m-awq-q4_1.gguf" || exit 1
        $LLMQ export "$T/$m.awq32s" -o "$T/$m-awq-q4_0.gguf" || exit 1
        rows="$rows llmq~AWQ~g32~asym~->~Q4_1:$m-awq-q4_1 llmq~AWQ~g32~sym~->~Q4_0:$m-awq-q4_0"
    fi
    if [ "${LLMQ_ROWS:-1}" != 0 ] && [ "${GPTQ:-1}" != 0 ]; then
        $LLMQ awq "$S" -o "$T/$m.awq32g" --text "$TRAIN" --group 32 --gptq ${AWQ_OPTS:-} >/dev/null || exit 1
        $LLMQ awq "$S" -o "$T/$m.awq32sg" --text "$TRAIN" --group 32 --sym --gptq ${AWQ_OPTS:-} >/dev/null || exit 1
        $LLMQ export "$T/$m.awq32g" -o "$T/$m-awqg-q4_1.gguf" || exit 1
        $LLMQ export "$T/$m.awq32sg" -o "$T/$m-awqg-q4_0.gguf" || exit 1
        rows="$rows llmq~AWQ+GPTQ~g32~asym~->~Q4_1:$m-awqg-q4_1 llmq~AWQ+GPTQ~g32~sym~->~Q4_0:$m-awqg-q4_0"
    fi

    echo
    echo "#### $m: dorian_gray.txt, first $CH windows of 512, llama-perplexity protocol, KLD vs the f16 export"
    echo
    echo "| file | bits/weight | MiB | llama.cpp ppl | llama.cpp KLD +- SE | llmq ppl | llmq KLD +- SE |"
    echo "|---|---|---|---|---|---|---|"
    bp=$(lcpp_ppl "$T/$m.base.log")
    echo "| f16 (llmq export) | $(bpw "$T/$m-f16.gguf") | $(mb "$(wc -c <"$T/$m-f16.gguf")") | $bp | 0 | $(f4 "$(j "$T/$m.base.json" perplexity)") | 0 |"
    for r in $rows; do
        name=$(echo "${r%%:*}" | tr '~' ' '); f="$T/${r#*:}.gguf"
        set -- $(lcpp "${r#*:}" "$f" "$T/$m.lbase"); a1=$1 a2=$2 a3=$3
        set -- $(lq "${r#*:}" "$f" "$T/$m.qbase"); b1=$1 b2=$2 b3=$3
        echo "| $name | $(bpw "$f") | $(mb "$(wc -c <"$f")") | $a1 | $a2 +- $a3 | $(f4 "$b1") | $(awk -v x="$b2" -v s="$b3" 'BEGIN { printf "%.6f +- %.6f", x, s }') |"
    done
done
