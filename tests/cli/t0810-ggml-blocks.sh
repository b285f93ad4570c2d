#!/bin/sh
# t0810-ggml-blocks: llmq's kernels on ggml's block types (Q8_0 .. Q6_K, the
# ones llama.cpp's GGUF files hold) against ggml's own code: node-llama-cpp's
# prebuilt libggml-base.so quantizes random rows (and random block bytes
# stand in for what its quantizers never write); llmq's dequantization must
# equal ggml's bit for bit and every ISA's matvec its row . x to tolerance
# (build/tools/ggml-dqcheck).
. "$(dirname "$0")/../lib.sh"
NPM=${LLMQ_NPM:-tests/npm/node_modules}
GGML=$(ls "$NPM"/@node-llama-cpp/linux-x64/bins/*/libggml-base.so 2>/dev/null | head -n 1)
if [ -z "$GGML" ]; then
    not_ok "no libggml-base.so under $NPM/@node-llama-cpp/linux-x64 (the README's first command installs it)"
else
    expect_out '^q4_K .*dequant bit-identical; matvec .* within 2e-6' build/tools/ggml-dqcheck "$GGML"
    cat "$TMP/out"
    for t in q8_0 q4_0 q4_1 q5_0 q5_1 q2_K q3_K q4_K q5_K q6_K; do
        check "$t: ggml's dequantize_row_$t bit for bit, matvec within tolerance" \
            grep -Eq "^$t .*dequant bit-identical; matvec on .* within 2e-6" "$TMP/out"
    done
fi
finish
