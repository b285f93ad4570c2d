#!/bin/sh
# llmq smooth: outputs load and compute the same function; W8A8 with static
# scales from --stats-out; error paths with their exit codes.
. "$(dirname "$0")/../lib.sh"
M=testdata/tiny-qwen2-gqa
L="$SHARED/models/tiny-llama-mha"
TC=build/tools/tcheck
head -c 60000 "$SHARED/data/tinyshakespeare.txt" >"$TMP/cal.txt"
tail -c 30000 "$SHARED/data/tinyshakespeare.txt" >"$TMP/eval.txt"
llmq calibrate $M --text "$TMP/cal.txt" --samples 8 --seqlen 64 -o "$TMP/q.st"
llmq calibrate $M --text "$TMP/cal.txt" --samples 8 --seqlen 64 --keep 0 -o "$TMP/q0.st"
llmq calibrate "$L" --text "$TMP/cal.txt" --samples 8 --seqlen 64 -o "$TMP/l.st"

# smoothquant, fixed alpha: a normal bf16 checkpoint
expect_code 0 llmq smooth $M --stats "$TMP/q.st" --alpha 0.5 -o "$TMP/sq"
check "smooth is quiet on success" test ! -s "$TMP/out"
for x in config.json tokenizer.json model.safetensors; do check "output has $x" test -f "$TMP/sq/$x"; done
expect_out '"weights_dtype":"bf16"' llmq verify "$TMP/sq" --json
# auto alpha (the default) records its choices
llmq smooth $M --stats "$TMP/q.st" --dtype f32 -o "$TMP/sqa" --json >"$TMP/sqa.json"
check "auto alpha per layer in --json" grep -Eq '"layers":\[\{"qkv":\{"alpha":[0-9.]+,"err_before"' "$TMP/sqa.json"
check "auto alpha recorded in the output" grep -q 'auto-alpha' "$TMP/sqa/model.safetensors"
# f32 output computes the same logits (Qwen2: q/k/v biases)
llmq verify $M --text "$TMP/eval.txt" --ctx 64 --max-windows 1 --logits-out "$TMP/base.lg" >/dev/null
llmq verify "$TMP/sqa" --text "$TMP/eval.txt" --ctx 64 --max-windows 1 --logits-out "$TMP/sqa.lg" >/dev/null
check "qwen2 smoothquant f32: same logits" $TC logits "$TMP/base.lg" "$TMP/sqa.lg" 1e-3
# osplus on Qwen2: no o_proj bias possible, scale only
expect_out '"attention_bias_added":false' llmq smooth $M --stats "$TMP/q.st" --method osplus -o "$TMP/osq" --stats-out "$TMP/osq.st" --json
# osplus on Llama: the VO shift adds attention biases and stays exact
llmq smooth "$L" --stats "$TMP/l.st" --method osplus --dtype f32 -o "$TMP/osl" --stats-out "$TMP/osl.st" --json >"$TMP/osl.json"
check "osplus on llama adds attention biases" grep -q '"attention_bias_added":true' "$TMP/osl.json"
check "config.json says attention_bias" grep -Eq '"attention_bias":[[:space:]]*true' "$TMP/osl/config.json"
check "o_proj bias written" grep -q 'model.layers.0.self_attn.o_proj.bias' "$TMP/osl/model.safetensors"
llmq verify "$L" --text "$TMP/eval.txt" --ctx 64 --max-windows 1 --logits-out "$TMP/lbase.lg" >/dev/null
llmq verify "$TMP/osl" --text "$TMP/eval.txt" --ctx 64 --max-windows 1 --logits-out "$TMP/osl.lg" >/dev/null
check "llama osplus f32: same logits" $TC logits "$TMP/lbase.lg" "$TMP/osl.lg" 1e-3
expect_out '"pairs":"qkv,gateup"' llmq smooth "$L" --stats "$TMP/l.st" --method osplus --no-shift --pairs qkv,gateup -o "$TMP/osn" --json
expect_out 'derived by llmq smooth' llmq calibrate --inspect "$TMP/osl.st"
expect_out '"mode":"shift\+scale"' llmq smooth "$L" --stats "$TMP/l.st" --method osplus --full-search -o "$TMP/osf" --json

# W8A8: dynamic and static on the packed smoothed model
expect_code 0 llmq pack "$TMP/osl" -o "$TMP/osl.q8" --format int8
expect_out 'perplexity' llmq verify "$TMP/osl.q8" --text "$TMP/eval.txt" --ctx 64 --max-windows 2 --act int8
expect_out '"act":"int8-static"' llmq verify "$TMP/osl.q8" --text "$TMP/eval.txt" --ctx 64 --max-windows 2 --act int8-static --stats "$TMP/osl.st" --json
expect_err 2 'another model' llmq verify "$TMP/osl.q8" --text "$TMP/eval.txt" --ctx 64 --max-windows 2 --act int8-static --stats "$TMP/l.st"
expect_err 2 'int8-static needs --stats' llmq verify "$TMP/osl.q8" --text "$TMP/eval.txt" --ctx 64 --act int8-static
expect_err 2 'serves --act int8-static or a quantized --kv-cache' llmq verify "$TMP/osl.q8" --text "$TMP/eval.txt" --ctx 64 --stats "$TMP/osl.st"
expect_err 2 'int8 activations need int8 weights' llmq verify "$L" --text "$TMP/eval.txt" --ctx 64 --max-windows 1 --act int8-static --stats "$TMP/l.st"
expect_err 2 'statistics are for' llmq verify $M --text "$TMP/eval.txt" --ctx 64 --act int8-static --stats "$TMP/l.st"
expect_err 4 'not an llmq statistics file' llmq verify $M --text "$TMP/eval.txt" --ctx 64 --act int8-static --stats $M/model.safetensors

# usage errors
expect_err 2 'missing --stats' llmq smooth $M -o "$TMP/x"
expect_err 2 'missing -o' llmq smooth $M --stats "$TMP/q.st"
expect_code 2 llmq smooth $M --stats "$TMP/q.st" -o "$TMP/x" --alpha 1.5
expect_err 2 'exclude each other' llmq smooth $M --stats "$TMP/q.st" -o "$TMP/x" --alpha 0.5 --auto-alpha
expect_err 2 'for --method smoothquant' llmq smooth $M --stats "$TMP/q.st" -o "$TMP/x" --method osplus --alpha 0.5
expect_err 2 'for --method osplus' llmq smooth $M --stats "$TMP/q.st" -o "$TMP/x" --no-shift
expect_err 2 'for --method osplus' llmq smooth $M --stats "$TMP/q.st" -o "$TMP/x" --full-search
expect_err 2 'pairs' llmq smooth $M --stats "$TMP/q.st" -o "$TMP/x" --pairs qkv,foo
expect_code 2 llmq smooth $M --stats "$TMP/q.st" -o "$TMP/x" --dtype int8
expect_err 2 'another model' llmq smooth $M --stats "$TMP/osq.st" -o "$TMP/x"
# strings from the file go into messages escaped: a digest that holds ESC
cp "$TMP/osq.st" "$TMP/esc.st"
off=$(grep -abo '"model_digest":"' "$TMP/esc.st" | head -1 | cut -d: -f1)
printf '\\u001b' | dd of="$TMP/esc.st" bs=1 seek=$((off + 16)) conv=notrunc 2>/dev/null
expect_err 2 'another model \(digest \\x1b' llmq smooth $M --stats "$TMP/esc.st" -o "$TMP/x"
check "the ESC byte is not in the message" sh -c "! grep -q \"\$(printf '\\033')\" $TMP/err"
expect_err 2 'statistics are for' llmq smooth $M --stats "$TMP/l.st" -o "$TMP/x"
expect_err 2 'q0.st: the statistics hold no token rows' llmq smooth $M --stats "$TMP/q0.st" -o "$TMP/x"
expect_code 0 llmq smooth $M --stats "$TMP/q0.st" --alpha 0.8 -o "$TMP/fixed0"
expect_err 2 'refusing to overwrite an input' llmq smooth $M --stats "$TMP/q.st" -o $M
expect_err 2 'refusing to overwrite an input' llmq smooth $M --stats "$TMP/q.st" -o "$TMP/y" --stats-out "$TMP/q.st"
expect_err 2 'y: is the output directory' llmq smooth $M --stats "$TMP/q.st" --alpha 0.5 -o "$TMP/y" --stats-out "$TMP/y"
check "nothing written when --stats-out names the output directory" test ! -e "$TMP/y"
expect_err 2 'y/config.json: is the output directory' llmq smooth $M --stats "$TMP/q.st" --alpha 0.5 -o "$TMP/y" --stats-out "$TMP/y/config.json"
expect_err 3 'nope.st' llmq smooth $M --stats "$TMP/nope.st" -o "$TMP/x"
expect_err 4 'not an llmq statistics file' llmq smooth $M --stats $M/model.safetensors -o "$TMP/x"
expect_err 5 'packed model' llmq smooth "$TMP/osl.q8" --stats "$TMP/osl.st" -o "$TMP/x"
expect_code 3 llmq smooth "$TMP/nope" --stats "$TMP/q.st" -o "$TMP/x"
check "failed runs leave no output" test ! -e "$TMP/x"
check "no temp files left" sh -c "! ls -a $TMP | grep -q tmp"
expect_code 0 llmq smooth --help
finish
