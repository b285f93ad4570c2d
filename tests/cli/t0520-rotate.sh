#!/bin/sh
# llmq rotate: the rotated checkpoint computes the same logits (f32) on
# Llama and on Qwen2 (tied embeddings, q/k/v biases), with any block and
# seed; it quantizes like any checkpoint; error paths with their exit codes.
. "$(dirname "$0")/../lib.sh"
M=testdata/tiny-qwen2-gqa
L="$SHARED/models/tiny-llama-mha"
TC=build/tools/tcheck
tail -c 30000 "$SHARED/data/tinyshakespeare.txt" >"$TMP/eval.txt"
V="--text $TMP/eval.txt --ctx 64 --max-windows 2"

# Qwen2, f32, the whole width (256): quiet, same logits, head untied
expect_code 0 llmq rotate $M -o "$TMP/q" --dtype f32
check "rotate is quiet on success" test ! -s "$TMP/out"
for x in config.json tokenizer.json model.safetensors; do check "output has $x" test -f "$TMP/q/$x"; done
check "config.json unties the embeddings" grep -Eq '"tie_word_embeddings":[[:space:]]*false' "$TMP/q/config.json"
check "the head is its own tensor" grep -q '"lm_head.weight"' "$TMP/q/model.safetensors"
llmq verify $M $V --logits-out "$TMP/qa.lg" >/dev/null
llmq verify "$TMP/q" $V --logits-out "$TMP/qb.lg" >/dev/null
check "qwen2 rotated f32: same logits" $TC logits "$TMP/qa.lg" "$TMP/qb.lg" 1e-4
# blocks of 64, another seed: other weights, the same function
llmq rotate $M -o "$TMP/q64" --dtype f32 --hadamard-block 64 --seed 7 --json >"$TMP/q64.json"
check "--json names the block" grep -q '"hadamard_block":64,"seed":7,"untied_head":true' "$TMP/q64.json"
check "another block and seed, other weights" sh -c "! cmp -s $TMP/q/model.safetensors $TMP/q64/model.safetensors"
llmq verify "$TMP/q64" $V --logits-out "$TMP/q64.lg" >/dev/null
check "qwen2 rotated in blocks of 64: same logits" $TC logits "$TMP/qa.lg" "$TMP/q64.lg" 1e-4
# the same command twice (from two directories): the same bytes
mkdir -p "$TMP/d1" "$TMP/d2"
(cd "$TMP/d1" && "$LLMQ" rotate "$OLDPWD/$M" -o out --dtype f32)
(cd "$TMP/d2" && "$LLMQ" rotate "$OLDPWD/$M" -o out --dtype f32)
check "deterministic" cmp -s "$TMP/d1/out/model.safetensors" "$TMP/d2/out/model.safetensors"
# signs matter: a rotation without them would also be orthogonal, so check the seed reaches the weights
llmq rotate $M -o "$TMP/q3" --dtype f32 --seed 1
check "the seed changes the weights" sh -c "! cmp -s $TMP/q/model.safetensors $TMP/q3/model.safetensors"

# Llama (untied), rotated twice: still the same function
llmq rotate "$L" -o "$TMP/l" --dtype f32 --json >"$TMP/l.json"
check "untied llama: head stays" grep -q '"untied_head":false' "$TMP/l.json"
llmq rotate "$TMP/l" -o "$TMP/ll" --dtype f32 --seed 3 --hadamard-block 128
llmq verify "$L" $V --logits-out "$TMP/la.lg" >/dev/null
llmq verify "$TMP/ll" $V --logits-out "$TMP/lb.lg" >/dev/null
check "llama rotated twice f32: same logits" $TC logits "$TMP/la.lg" "$TMP/lb.lg" 1e-4

# the default dtype is the source's (bf16): close, then it packs and runs
expect_code 0 llmq rotate $M -o "$TMP/qbf"
expect_out '"weights_dtype":"bf16"' llmq verify "$TMP/qbf" --json
p0=$(llmq verify $M $V --json | sed 's/.*"perplexity":\([0-9.e+-]*\).*/\1/')
p1=$(llmq verify "$TMP/qbf" $V --json | sed 's/.*"perplexity":\([0-9.e+-]*\).*/\1/')
check "bf16 rotated: perplexity within 2%" $TC relerr "$p1" "$p0" 0.02
expect_code 0 llmq pack "$TMP/qbf" -o "$TMP/qbf.q4" --format int4
expect_out 'perplexity' llmq verify "$TMP/qbf.q4" $V

# errors
expect_err 2 'missing -o' llmq rotate $M
expect_err 2 'power of two dividing hidden_size 256' llmq rotate $M -o "$TMP/x" --hadamard-block 48
expect_err 2 'power of two dividing hidden_size 256' llmq rotate $M -o "$TMP/x" --hadamard-block 512
expect_code 2 llmq rotate $M -o "$TMP/x" --hadamard-block 0
expect_code 2 llmq rotate $M -o "$TMP/x" --seed -1
expect_code 2 llmq rotate $M -o "$TMP/x" --dtype int8
expect_err 2 'refusing to overwrite an input' llmq rotate $M -o $M
expect_err 5 'packed model' llmq rotate "$TMP/qbf.q4" -o "$TMP/x"
expect_code 3 llmq rotate "$TMP/nope" -o "$TMP/x"
check "failed runs leave no output" test ! -e "$TMP/x"
check "no temp files left" sh -c "! ls -a $TMP | grep -q tmp"
expect_code 0 llmq rotate --help
finish
