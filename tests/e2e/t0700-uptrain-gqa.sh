#!/bin/sh
# uptrain-gqa on tiny-llama-mha (8 heads): mean pooling to G = 8 is the
# model itself, pooling to G = 2 hurts, activation pooling hurts less than
# mean pooling, a short uptraining lowers perplexity further, and the result
# goes through pack and verify.  Scores a few windows of dorian_gray.txt.
. "$(dirname "$0")/../lib.sh"
TC=build/tools/tcheck
M="$SHARED/models/tiny-llama-mha"
EVAL="$SHARED/data/eval/dorian_gray.txt"
TRAIN="$SHARED/data/train"
if [ ! -f "$M/config.json" ]; then echo "no $M: set LLMQ_SHARED"; echo "0 passed, 1 failed"; exit 1; fi
W="--max-windows ${LLMQ_E2E_WINDOWS:-4}"
ppl() { llmq verify "$1" --text "$EVAL" $W --json >"$TMP/v.json" && $TC json "$TMP/v.json" perplexity; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

base=$(ppl "$M")
expect_code 0 llmq uptrain-gqa "$M" --kv-heads 8 --pool mean --steps 0 -o "$TMP/g8"
check "G = 8 keeps the perplexity ($base)" test "$(ppl "$TMP/g8")" = "$base"

expect_code 0 llmq uptrain-gqa "$M" --kv-heads 2 --pool mean --steps 0 -o "$TMP/mean2"
pm=$(ppl "$TMP/mean2")
check "mean pooling to 2 heads hurts ($pm vs $base)" lt "$(awk -v b="$base" 'BEGIN { print 3 * b }')" "$pm"

expect_out '"pool_err_activation"' llmq uptrain-gqa "$M" --kv-heads 2 --text "$TRAIN" --calib-samples 4 --k-steps 6 --steps 0 -o "$TMP/act2" --json
cp "$TMP/out" "$TMP/act2.json"
pa=$(ppl "$TMP/act2")
check "activation pooling beats mean pooling ($pa < $pm)" lt "$pa" "$pm"

expect_code 0 llmq uptrain-gqa "$M" --kv-heads 2 --text "$TRAIN" --calib-samples 4 --k-steps 6 --steps 8 --samples 2 --seqlen 256 -o "$TMP/up2"
pu=$(ppl "$TMP/up2")
check "a short uptraining lowers perplexity ($pu < $pa)" lt "$pu" "$pa"
check "uptrained config has 2 KV heads" grep -Eq '"num_key_value_heads":[[:space:]]*2,' "$TMP/up2/config.json"

expect_code 0 llmq pack "$TMP/up2" -o "$TMP/up2.q4" --format int4
expect_out '"weights_dtype":"int4' llmq verify "$TMP/up2.q4" --text "$EVAL" $W --json
finish
