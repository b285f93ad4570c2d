#!/bin/sh
# llmq awq end to end on tiny-qwen2-gqa (GQA: v->o searched per KV channel)
# with fast settings: calibration on the training books, KLD against bf16 on
# held-out text.  AWQ must beat round-to-nearest at W4 and W3; awq with
# --n-grid 1 --no-duo --no-clip (s = 1, no clip) must be round-to-nearest exactly.
# --gptq (GPTQ's rounding on AWQ's grid) must beat AWQ alone, W4 asym and sym
# and W3.
. "$(dirname "$0")/../lib.sh"
TC=build/tools/tcheck
M="$SHARED/models/tiny-qwen2-gqa"
EVAL="$SHARED/data/eval/dorian_gray.txt"
TRAIN="$SHARED/data/train"
if [ ! -d "$M" ] || [ ! -f "$EVAL" ]; then echo "no $M or $EVAL: set LLMQ_SHARED"; echo "0 passed, 1 failed"; exit 1; fi
FAST="--text $TRAIN --samples 16 --seqlen 256 --search-tokens 1024"
V="--text $EVAL --ctx 512 --max-windows 24"

expect_code 0 llmq verify "$M" $V --kld-save "$TMP/base.kld"
kld() { llmq verify "$1" $V --kld "$TMP/base.kld" --json >"$TMP/v.json" && $TC json "$TMP/v.json" kld_mean; }

expect_code 0 llmq pack "$M" -o "$TMP/rtn4" --format int4
expect_code 0 llmq awq "$M" -o "$TMP/awq4" $FAST
expect_code 0 llmq awq "$M" -o "$TMP/s1-4" $FAST --n-grid 1 --no-duo --no-clip
expect_code 0 llmq awq "$M" -o "$TMP/rtn3" $FAST --w-bit 3 --n-grid 1 --no-duo --no-clip
expect_code 0 llmq awq "$M" -o "$TMP/awq3" $FAST --w-bit 3
r4=$(kld "$TMP/rtn4"); a4=$(kld "$TMP/awq4"); s4=$(kld "$TMP/s1-4"); r3=$(kld "$TMP/rtn3"); a3=$(kld "$TMP/awq3")
echo "KLD vs bf16: RTN W4 $r4, AWQ W4 $a4, awq s=1 W4 $s4, RTN W3 $r3, AWQ W3 $a3"
check "AWQ W4 KLD ($a4) below RTN W4 ($r4)" $TC lt "$a4" "$r4"
check "AWQ W3 KLD ($a3) below RTN W3 ($r3)" $TC lt "$a3" "$r3"
check "AWQ W4 KLD at most 0.95x RTN's" awk "BEGIN { exit !($a4 <= 0.95 * $r4) }"
check "awq --n-grid 1 --no-duo --no-clip is RTN exactly ($s4 vs $r4)" $TC relerr "$s4" "$r4" 1e-6
expect_code 0 llmq awq "$M" -o "$TMP/g4" $FAST --gptq
expect_code 0 llmq awq "$M" -o "$TMP/s4" $FAST --sym
expect_code 0 llmq awq "$M" -o "$TMP/gs4" $FAST --sym --gptq
expect_code 0 llmq awq "$M" -o "$TMP/g3" $FAST --w-bit 3 --gptq
g4=$(kld "$TMP/g4"); as4=$(kld "$TMP/s4"); gs4=$(kld "$TMP/gs4"); g3=$(kld "$TMP/g3")
echo "KLD vs bf16: AWQ+GPTQ W4 $g4, AWQ W4 sym $as4, AWQ+GPTQ W4 sym $gs4, AWQ+GPTQ W3 $g3"
check "AWQ+GPTQ W4 KLD ($g4) at most 0.95x AWQ's ($a4)" awk "BEGIN { exit !($g4 <= 0.95 * $a4) }"
check "AWQ+GPTQ W4 sym KLD ($gs4) at most 0.9x AWQ's ($as4)" awk "BEGIN { exit !($gs4 <= 0.9 * $as4) }"
check "AWQ+GPTQ W3 KLD ($g3) at most 0.9x AWQ's ($a3)" awk "BEGIN { exit !($g3 <= 0.9 * $a3) }"
finish
