#!/bin/sh
# llmq verify on llama.cpp's own quantizations: every type llama-quantize's
# mixes use (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K), made by llama.cpp's
# llama_model_quantize (node-llama-cpp's prebuilt libllama, through
# tests/tools/llamacpp-quantize) from llmq's f16 exports, scored by llama.cpp
# itself and by llmq verify on the same token windows (llama-perplexity's
# protocol, ctx 256, 3 windows of dorian_gray.txt: 381 tokens).  llama.cpp
# multiplies quantized weights with activations rounded to 8 bits (Q8_0 /
# Q8_K blocks), llmq with fp32 activations, so on 381 tokens the two agree
# to a tolerance, not exactly: 0.5% (measured: up to 0.35%, Q4_K_S), 1% for
# Q2_K.  The f16 file, where both multiply in float, must agree within 0.1%.
# (bench/gguf.sh compares Q4_K_M on the whole text, ctx 512.)
. "$(dirname "$0")/../lib.sh"
M=testdata/tiny-qwen2-gqa
L="$SHARED/models/tiny-llama-mha"
NPM=${LLMQ_NPM:-tests/npm/node_modules}
EVAL="$SHARED/data/eval/dorian_gray.txt"
SCORE="node tests/tools/llamacpp-score.mjs"
WIN="--ctx 256 --max-windows 3"
BINS=$(ls -d "$NPM"/@node-llama-cpp/linux-x64/bins/*/ 2>/dev/null | head -n 1)
LIB=$(ls "$BINS"libllama*.so 2>/dev/null | head -n 1)
if [ -z "$LIB" ] || [ ! -f "$EVAL" ]; then
    not_ok "needs node-llama-cpp's libllama under $NPM (the README's first command) and $EVAL"
    finish; exit
fi
quantize() { LD_LIBRARY_PATH="$BINS" build/tools/llamacpp-quantize "$LIB" "$@" >"$TMP/q.log" 2>&1; }

# close DESC GGUF TOL: llmq verify and llama.cpp on the same ids, within TOL (a fraction)
close() {
    a=$(llmq verify "$2" --ids "$TMP/ids.bin" --protocol llamacpp $WIN --json 2>"$TMP/v.err" | sed -n 's/.*"perplexity":\([0-9.e+-]*\).*/\1/p')
    b=$($SCORE "$2" "$TMP/ids.bin" $WIN 2>"$TMP/score.err" | sed -n 's/.*"ppl":\([0-9.e+-]*\).*/\1/p')
    echo "$1: llmq $a, llama.cpp $b"
    if [ -n "$a" ] && [ -n "$b" ] && awk -v a="$a" -v b="$b" -v t="$3" 'BEGIN { r = b / a - 1; exit !(r < t && r > -t) }'; then ok; else
        not_ok "$1: llmq verify's perplexity '$a' is not within $3 of llama.cpp's '$b'"; head -3 "$TMP/v.err" "$TMP/score.err"; fi
}

for src in "$M" "$L"; do
    n=$(basename "$src")
    types="Q8_0:0.005 Q4_0:0.005 Q4_1:0.005 Q5_0:0.005 Q5_1:0.005 Q6_K:0.005 Q5_K_M:0.005 Q4_K_M:0.005 Q4_K_S:0.005 Q3_K_M:0.005 Q2_K:0.01"
    # the llama model (ffn_down's 1408 columns are no multiple of 256, so
    # llama.cpp falls back to legacy types there): a few of the mixes
    [ "$src" = "$L" ] && types="Q5_0:0.005 Q6_K:0.005 Q4_K_M:0.005 Q2_K:0.01"
    expect_code 0 llmq export "$src" -o "$TMP/$n-f16.gguf" --type f16
    llmq tokenize "$src" "$EVAL" --ids-out "$TMP/ids.bin"
    close "$n f16" "$TMP/$n-f16.gguf" 0.001
    for tt in $types; do
        t=${tt%%:*}
        if quantize "$TMP/$n-f16.gguf" "$TMP/$n-$t.gguf" "$t"; then ok; else not_ok "llama.cpp quantizes $n to $t"; tail -3 "$TMP/q.log"; continue; fi
        close "$n $t" "$TMP/$n-$t.gguf" "${tt#*:}"
    done
done
# verify names the type of the first layer's q_proj: Q4_K in a Q4_K_M mix
expect_out 'gguf Q4_K' llmq verify "$TMP/tiny-qwen2-gqa-Q4_K_M.gguf"
finish
