#!/bin/sh
# bench/imatrix.sh - llmq calibrate --imatrix-out against llama.cpp's own
# llama-imatrix, and what the importance matrix buys llama-quantize.
# Not part of `make bench`: it needs a llama.cpp build (bench/llamacpp-build.sh).
#   LLAMACPP=DIR   llama.cpp build directory with bin/llama-quantize,
#                  bin/llama-imatrix, bin/llama-perplexity (default /work/llama.cpp-build)
#   MODEL=DIR      default ../shared/models/tiny-qwen2-gqa
#   CALIB=FILE     calibration text, one file for both tools (default: frankenstein.txt from ../shared/data/train)
#   SAMPLES=N      llmq windows (default 128; 512 tokens each, as llama-imatrix -c 512)
#   CHUNKS=N       llama-imatrix chunks (default 128)
#   TYPES="Q4_K_M" llama-quantize types to score
#   PPL_CHUNKS=N   llama-perplexity chunks of dorian_gray.txt (default: all)
#   OUT=DIR        keep the files there (default: a temp dir)
# Steps: export f16 GGUF; llmq calibrate --imatrix-out; llama-imatrix on the
# same text; compare per tensor (tests/tools/imatrix-check.py --ref); then per
# type: quantize without imatrix, with llmq's, with llama-imatrix's, and
# score each with llama-perplexity (ppl and KLD against the f16 GGUF).
. "$(dirname "$0")/lib.sh"
LC=${LLAMACPP:-/work/llama.cpp-build}/bin
M=${MODEL:-$SHARED/models/tiny-qwen2-gqa}
CALIB=${CALIB:-$TRAIN/frankenstein.txt}
SAMPLES=${SAMPLES:-128}
CHUNKS=${CHUNKS:-128}
TYPES=${TYPES:-Q4_K_M}
pc=""
[ -n "${PPL_CHUNKS:-}" ] && pc="--chunks $PPL_CHUNKS"
for b in llama-quantize llama-imatrix llama-perplexity; do
    [ -x "$LC/$b" ] || { echo "imatrix.sh: $LC/$b missing: run bench/llamacpp-build.sh" >&2; exit 2; }
done
if [ -n "${OUT:-}" ]; then T=$OUT; mkdir -p "$T" || exit 2; else bench_tmp imatrix; fi
NT=$(nproc 2>/dev/null || echo 2)

"$LLMQ" export "$M" -o "$T/f16.gguf" --type f16 >/dev/null || exit 1
"$LLMQ" calibrate "$M" --text "$CALIB" --samples "$SAMPLES" --seqlen 512 --keep 0 \
    --imatrix-out "$T/llmq.imatrix" --json >"$T/cal.json" || exit 1
"$LC/llama-imatrix" -m "$T/f16.gguf" -f "$CALIB" -o "$T/ref.imatrix" -c 512 --chunks "$CHUNKS" \
    -t "$NT" >"$T/ref.log" 2>&1 || { tail -5 "$T/ref.log"; exit 1; }
echo "## llmq ($SAMPLES random windows) vs llama-imatrix (consecutive chunks), per tensor (mean of x^2 per input channel)"
echo
python3 tests/tools/imatrix-check.py "$T/llmq.imatrix" --ref "$T/ref.imatrix" || exit 1
echo
# The same window in both: llmq draws a window from a file of exactly 513
# tokens at start 0, llama-imatrix --chunks 1 runs the first 512 tokens of
# the whole file; what differs then is the runners (f16 GGUF vs bf16->fp32).
ntok() { head -c "$1" "$CALIB" | "$LLMQ" tokenize "$M" - | wc -l; }
lo=1; hi=20000
while [ $((hi - lo)) -gt 1 ]; do mid=$(((lo + hi) / 2)); if [ "$(ntok $mid)" -le 513 ]; then lo=$mid; else hi=$mid; fi; done
head -c "$lo" "$CALIB" >"$T/w513.txt"
[ "$(ntok "$lo")" -eq 513 ] || { echo "imatrix.sh: no prefix of exactly 513 tokens" >&2; exit 1; }
"$LLMQ" calibrate "$M" --text "$T/w513.txt" --samples 1 --seqlen 512 --keep 0 --imatrix-out "$T/w.imatrix" || exit 1
"$LC/llama-imatrix" -m "$T/f16.gguf" -f "$CALIB" -o "$T/wref.imatrix" -c 512 -b 512 --chunks 1 -t "$NT" \
    >"$T/wref.log" 2>&1 || { tail -5 "$T/wref.log"; exit 1; }
echo "## the same 512-token window in both"
echo
python3 tests/tools/imatrix-check.py "$T/w.imatrix" --ref "$T/wref.imatrix" >"$T/w.cmp" || exit 1
tail -1 "$T/w.cmp"
echo

"$LC/llama-perplexity" -m "$T/f16.gguf" -f "$EVAL" -c 512 $pc -t "$NT" \
    --kl-divergence-base "$T/f16.kld" >"$T/base.log" 2>&1 || { tail -5 "$T/base.log"; exit 1; }
base_ppl=$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$T/base.log")
echo "## llama-quantize, llama-perplexity on dorian_gray.txt (-c 512), KLD vs the f16 GGUF (ppl $base_ppl)"
echo
echo "| type | imatrix | loaded entries | ppl | mean KLD | same top p |"
echo "|---|---|---|---|---|---|"
for ty in $TYPES; do
    for im in none llmq ref; do
        arg=""
        [ "$im" != none ] && arg="--imatrix $T/$im.imatrix"
        "$LC/llama-quantize" $arg "$T/f16.gguf" "$T/q-$im.gguf" "$ty" "$NT" >"$T/q-$im.log" 2>&1 ||
            { tail -5 "$T/q-$im.log"; exit 1; }
        n=$(sed -n 's/.*loaded \([0-9]*\) importance matrix entries.*/\1/p' "$T/q-$im.log")
        "$LC/llama-perplexity" -m "$T/q-$im.gguf" -f "$EVAL" -c 512 $pc -t "$NT" --kl-divergence \
            --kl-divergence-base "$T/f16.kld" >"$T/p-$im.log" 2>&1 || { tail -5 "$T/p-$im.log"; exit 1; }
        ppl=$(sed -n 's/^Mean PPL(Q) *: *\([0-9.]*\).*/\1/p' "$T/p-$im.log")
        kld=$(sed -n 's/^Mean    KLD:[^0-9]*\([0-9.]*\).*/\1/p' "$T/p-$im.log")
        top=$(sed -n 's/^Same top p:[^0-9]*\([0-9.]*\).*/\1/p' "$T/p-$im.log")
        echo "| $ty | $im | ${n:--} | $ppl | $kld | $top% |"
    done
done
