#!/bin/sh
# llmq uptrain-gqa: conversion, pooling, uptraining, resume, errors.
. "$(dirname "$0")/../lib.sh"
M=testdata/tiny-qwen2-gqa          # 8 query heads, 2 KV heads, q/k/v biases
TXT=$SHARED/data/eval/dorian_gray.txt
IDS=$M/reference/wikitext2_test_ids.bin
SMALL="--calib-samples 2 --k-steps 2 --seqlen 64 --samples 1"

expect_code 0 llmq uptrain-gqa --help
expect_out 'kv-heads' llmq uptrain-gqa --help

# mean pooling without training: a loadable checkpoint with one KV head
expect_code 0 llmq uptrain-gqa $M --kv-heads 1 --pool mean --steps 0 -o "$TMP/m1"
check "quiet on success" test ! -s "$TMP/out"
for f in config.json tokenizer.json model.safetensors; do check "m1 has $f" test -f "$TMP/m1/$f"; done
check "config says one KV head" grep -Eq '"num_key_value_heads":[[:space:]]*1,' "$TMP/m1/config.json"
expect_out 'perplexity' llmq verify "$TMP/m1" --ids $IDS --max-windows 1
# G = the model's KV heads gives the same model: same logits, same perplexity
expect_code 0 llmq uptrain-gqa $M --kv-heads 2 --pool mean --steps 0 -o "$TMP/m2"
llmq verify $M --ids $IDS --max-windows 2 --json | sed 's/.*"perplexity":\([0-9.e+-]*\).*/\1/' >"$TMP/p0"
llmq verify "$TMP/m2" --ids $IDS --max-windows 2 --json | sed 's/.*"perplexity":\([0-9.e+-]*\).*/\1/' >"$TMP/p2"
check "G = KV heads keeps the perplexity" cmp -s "$TMP/p0" "$TMP/p2"
expect_code 0 llmq uptrain-gqa $M --kv-heads 1 --pool mean --steps 0 --dtype f32 -o "$TMP/f32"
expect_out '"dtype":[[:space:]]*"float32"' cat "$TMP/f32/config.json"

# activation pooling and a short uptraining, with a JSON summary
expect_out '"pool_err_activation":\[' llmq uptrain-gqa $M --kv-heads 1 --text "$TXT" $SMALL --steps 2 -o "$TMP/a1" --json
cp "$TMP/out" "$TMP/a1.json"
expect_out '"last_loss":' cat "$TMP/a1.json"
check "no state left after a finished run" test ! -e "$TMP/a1.uptrain-state"
expect_out 'perplexity' llmq verify "$TMP/a1" --ids $IDS --max-windows 1
# training every tensor, cross-entropy only
expect_out '"train":"all"' llmq uptrain-gqa $M --kv-heads 1 --pool mean --text "$TXT" $SMALL --steps 2 --train all --distill 0 -o "$TMP/all" --json
expect_out 'perplexity' llmq verify "$TMP/all" --ids $IDS --max-windows 1
# the output goes through pack like any model
expect_code 0 llmq pack "$TMP/a1" -o "$TMP/a1q" --format int4
expect_out '"weights_dtype":"int4' llmq verify "$TMP/a1q" --json
expect_code 0 llmq pack "$TMP/a1" -o "$TMP/a1q8" --format int8
expect_out 'perplexity' llmq verify "$TMP/a1q8" --act int8 --ids $IDS --max-windows 1

# an interrupted run resumes to the same model as a straight run
expect_code 0 llmq uptrain-gqa $M --kv-heads 1 --pool mean --text "$TXT" $SMALL --steps 4 -o "$TMP/s"
expect_out '"stopped_after_step":2' llmq uptrain-gqa $M --kv-heads 1 --pool mean --text "$TXT" $SMALL --steps 4 -o "$TMP/r" --stop-after 2 --json
check "stopped run wrote no model" test ! -e "$TMP/r"
check "stopped run left its state" test -f "$TMP/r.uptrain-state"
expect_err 2 'state of another run' llmq uptrain-gqa $M --kv-heads 1 --pool mean --text "$TXT" $SMALL --steps 4 --lr 0.01 -o "$TMP/r" --resume
expect_out '"resumed_from_step":2' llmq uptrain-gqa $M --kv-heads 1 --pool mean --text "$TXT" $SMALL --steps 4 -o "$TMP/r" --resume --json
llmq verify "$TMP/s" --ids $IDS --max-windows 2 --json | sed 's/.*"perplexity":\([0-9.e+-]*\).*/\1/' >"$TMP/ps"
llmq verify "$TMP/r" --ids $IDS --max-windows 2 --json | sed 's/.*"perplexity":\([0-9.e+-]*\).*/\1/' >"$TMP/pr"
check "resumed run equals the straight run" cmp -s "$TMP/ps" "$TMP/pr"
check "resumed run removed its state" test ! -e "$TMP/r.uptrain-state"
# a look at an unfinished run: the copied state written out as a model
expect_out '"stopped_after_step":2' llmq uptrain-gqa $M --kv-heads 1 --pool mean --text "$TXT" $SMALL --steps 4 -o "$TMP/q" --stop-after 2 --json
cp "$TMP/q.uptrain-state" "$TMP/q2.state"
expect_out '"steps_done":2' llmq uptrain-gqa $M --kv-heads 1 --pool mean --text "$TXT" $SMALL --steps 4 -o "$TMP/snap" --resume --stop-after 2 --snapshot --state "$TMP/q2.state" --json
check "snapshot keeps its state" test -f "$TMP/q2.state"
expect_out 'perplexity' llmq verify "$TMP/snap" --ids $IDS --max-windows 1
# a damaged state is refused
printf 'garbage' >"$TMP/bad.state"
expect_code 4 llmq uptrain-gqa $M --kv-heads 1 --pool mean --text "$TXT" $SMALL --steps 2 -o "$TMP/b" --resume --state "$TMP/bad.state"

# usage errors
expect_err 2 'missing -o' llmq uptrain-gqa $M --kv-heads 1
expect_err 2 'missing --kv-heads' llmq uptrain-gqa $M -o "$TMP/x"
expect_err 2 'must divide the model.s 8 query heads' llmq uptrain-gqa $M --kv-heads 3 --pool mean --steps 0 -o "$TMP/x"
expect_err 2 'must divide the model.s 2 key-value heads' llmq uptrain-gqa $M --kv-heads 4 --pool mean --steps 0 -o "$TMP/x"
expect_err 2 'needs? --text|--text PATH is needed' llmq uptrain-gqa $M --kv-heads 1 -o "$TMP/x"
expect_err 2 'text PATH is needed' llmq uptrain-gqa $M --kv-heads 1 --pool mean -o "$TMP/x"
expect_code 2 llmq uptrain-gqa $M --kv-heads 1 --pool median -o "$TMP/x"
expect_code 2 llmq uptrain-gqa $M --kv-heads 1 --train some -o "$TMP/x"
expect_code 2 llmq uptrain-gqa $M --kv-heads 1 --steps -1 -o "$TMP/x"
expect_code 2 llmq uptrain-gqa $M --kv-heads 1 --distill 2 -o "$TMP/x"
expect_err 2 'refusing to overwrite an input' llmq uptrain-gqa $M --kv-heads 1 --pool mean --steps 0 -o $M
expect_err 3 'nope' llmq uptrain-gqa "$TMP/nope" --kv-heads 1 --pool mean --steps 0 -o "$TMP/x"
expect_err 3 'nothere' llmq uptrain-gqa $M --kv-heads 1 --text "$TMP/nothere" -o "$TMP/x"
expect_err 5 'packed model' llmq uptrain-gqa "$TMP/a1q" --kv-heads 1 --pool mean --steps 0 -o "$TMP/x"
check "failed runs leave no output" test ! -e "$TMP/x"
# --seed is a 64-bit value: 2^32 + 1 is not read as 1 (it was, stored
# through an int); activation pooling draws its windows from the seed
for sd in 1 4294967297; do
    expect_code 0 llmq uptrain-gqa $M --kv-heads 1 --steps 0 --text "$TXT" $SMALL --seed $sd -o "$TMP/sd$sd"
    llmq verify "$TMP/sd$sd" --ids $IDS --max-windows 1 --ctx 64 --json | sed 's/.*"perplexity":\([0-9.e+-]*\).*/\1/' >"$TMP/psd$sd"
done
check "--seed 4294967297 draws other windows than --seed 1" sh -c "test -s '$TMP/psd1' && ! cmp -s '$TMP/psd1' '$TMP/psd4294967297'"
expect_err 2 "invalid value '9007199254740992' for '--seed'" llmq uptrain-gqa $M --kv-heads 1 -o "$TMP/x" --seed 9007199254740992

finish
