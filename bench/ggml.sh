#!/bin/sh
# bench/ggml.sh - decode (matvec) speed of ggml's block types as llama.cpp's
# GGUF files hold them, next to llmq's own int4 path (q4: g128 asymmetric
# with f32 activations; q4a8: the same weights times int8 activations).
# One matrix shape, the best ISA of this CPU, 2 threads (build/tools/kbench).
# "cold" streams copies spread over 1 GiB (weights from DRAM, as in a decode
# step), "hot" repeats one matrix; us/matvec and G weights/s compare types
# of different sizes.  On 2 shared cores the numbers are noisy: compare
# within one run.
cd "$(dirname "$0")/.." || exit 2
ROWS=${BENCH_GGML_ROWS:-2048}
COLS=${BENCH_GGML_COLS:-5632}
TYPES=q4,q4a8,q8_0,q4_0,q4_1,q5_0,q5_1,q2_k,q3_k,q4_k,q5_k,q6_k
OUT=build/bench
mkdir -p "$OUT"
build/tools/kbench --isa best --rows "$ROWS" --cols "$COLS" --types "$TYPES" --deciseconds "${BENCH_GGML_DS:-5}" >"$OUT/ggml.txt" || {
    echo "(kbench failed)"; exit 0; }
isa=$(awk 'NR > 2 && NF >= 9 { print $2; exit }' "$OUT/ggml.txt")
echo "### ggml block types: decode matvec, ${ROWS}x${COLS}, $isa, 2 threads (\`build/tools/kbench --types ...\`)"
echo
echo "| type | bits/weight | cold GB/s | hot GB/s | cold us/matvec | cold G weights/s | vs q4 (time) | prefill GF/s (64 tok) |"
echo "|---|---|---|---|---|---|---|---|"
awk -v rows="$ROWS" -v cols="$COLS" '
    BEGIN {   # storage bits per weight: llmq q4 g128 (codes, f16 scale, zero byte); ggml blocks
        bpw["q4"] = bpw["q4a8"] = 4 + 24 / 128; bpw["q8_0"] = 8.5; bpw["q4_0"] = 4.5; bpw["q4_1"] = 5
        bpw["q5_0"] = 5.5; bpw["q5_1"] = 6; bpw["q2_k"] = 2.625; bpw["q3_k"] = 3.4375; bpw["q4_k"] = 4.5
        bpw["q5_k"] = 5.5; bpw["q6_k"] = 6.5625
    }
    NR > 2 && NF >= 9 && $3 ~ /^[0-9.]+$/ {
        t = $1; gbs = $3; hot = $4; us = $6; gf = $9
        bits = bpw[t]
        if (t == "q4") q4us = us
        line[++n] = t; B[n] = bits; C[n] = gbs; H[n] = hot; U[n] = us; G[n] = gf
    }
    END {
        for (i = 1; i <= n; i++)
            printf "| %s | %.4g | %.1f | %.1f | %.0f | %.1f | %.2fx | %s |\n", line[i], B[i], C[i], H[i], U[i],
                   rows * cols / U[i] / 1e3, q4us ? U[i] / q4us : 0, G[i]
    }' "$OUT/ggml.txt"
echo
grep '^memory read' "$OUT/ggml.txt" | sed 's/^/    /'
echo
