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

# --online-hadamard: the same logits (f32), with the dense attention and
# with an f32 KV cache; --online-hadamard-keys too (the cache stores k H
# and multiplies by H again); the key in config.json ("keys" false, true;
# absent: true), kept by pack, awq and merge; what cannot apply it refuses
# with status 5
keys_are() {  # true|false|absent config.json
    python3 -c 'import json, sys; h = json.load(open(sys.argv[2]))["llmq_online_hadamard"]
sys.exit(json.dumps(h.get("keys", "absent")).strip("\"") != sys.argv[1])' "$1" "$2"
}
expect_code 0 llmq rotate "$L" -o "$TMP/lo" --dtype f32 --online-hadamard --json
check "--json names the online transforms" grep -q '"online_hadamard":{"ff_block":128,"head_dim":64,"keys":false}' "$TMP/out"
check "config.json records them" grep -Eq '"llmq_online_hadamard":[[:space:]]*\{' "$TMP/lo/config.json"
check "config.json: keys false" keys_are false "$TMP/lo/config.json"
check "params: keys false" grep -aq 'online_hadamard.":true,..online_hadamard_keys.":false' "$TMP/lo/model.safetensors"
llmq verify "$TMP/lo" $V --logits-out "$TMP/lo.lg" >/dev/null
check "llama online f32: same logits" $TC logits "$TMP/la.lg" "$TMP/lo.lg" 1e-4
llmq verify "$L" $V --kv-cache f32 --logits-out "$TMP/lak.lg" >/dev/null
llmq verify "$TMP/lo" $V --kv-cache f32 --logits-out "$TMP/lok.lg" >/dev/null
check "llama online f32, f32 KV cache: same logits" $TC logits "$TMP/lak.lg" "$TMP/lok.lg" 1e-4
expect_code 0 llmq rotate "$L" -o "$TMP/lk" --dtype f32 --online-hadamard-keys --json
check "--json: keys true" grep -q '"online_hadamard":{"ff_block":128,"head_dim":64,"keys":true}' "$TMP/out"
check "config.json: keys true" keys_are true "$TMP/lk/config.json"
check "params: keys true" grep -aq 'online_hadamard.":true,..online_hadamard_keys.":true' "$TMP/lk/model.safetensors"
llmq verify "$TMP/lk" $V --logits-out "$TMP/lk.lg" >/dev/null
check "llama online with keys f32: same logits" $TC logits "$TMP/la.lg" "$TMP/lk.lg" 1e-4
llmq verify "$TMP/lk" $V --kv-cache f32 --logits-out "$TMP/lkk.lg" >/dev/null
check "llama online with keys f32, f32 KV cache: same logits" $TC logits "$TMP/lak.lg" "$TMP/lkk.lg" 1e-4
# an int4 cache quantizes k or k H: other logits; a config.json from before
# "keys" (none) rotates them
llmq verify "$TMP/lo" $V --kv-cache int4 --logits-out "$TMP/lo4.lg" >/dev/null
llmq verify "$TMP/lk" $V --kv-cache int4 --logits-out "$TMP/lk4.lg" >/dev/null
check "int4 KV cache: rotated keys, other logits" sh -c "! cmp -s $TMP/lo4.lg $TMP/lk4.lg"
mkdir "$TMP/lold"
ln -s "$TMP/lk/model.safetensors" "$TMP/lold/model.safetensors"
cp "$TMP/lk/tokenizer.json" "$TMP/lk/tokenizer_config.json" "$TMP/lold/"
python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); del c["llmq_online_hadamard"]["keys"]; print(json.dumps(c))' \
    "$TMP/lk/config.json" >"$TMP/lold/config.json"
check "old config.json: no keys" keys_are absent "$TMP/lold/config.json"
llmq verify "$TMP/lold" $V --kv-cache int4 --logits-out "$TMP/lold4.lg" >/dev/null
check "keys absent: rotated, the same logits" cmp -s "$TMP/lk4.lg" "$TMP/lold4.lg"
# without the key the same weights are another function: the forward applies it
mkdir "$TMP/lnokey"
ln -s "$TMP/lo/model.safetensors" "$TMP/lnokey/model.safetensors"
cp "$TMP/lo/tokenizer.json" "$TMP/lo/tokenizer_config.json" "$TMP/lnokey/"
python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); del c["llmq_online_hadamard"]; print(json.dumps(c))' \
    "$TMP/lo/config.json" >"$TMP/lnokey/config.json"
expect_code 0 llmq verify "$TMP/lnokey" $V --logits-out "$TMP/lnokey.lg"
check "the key matters" sh -c "! $TC logits $TMP/la.lg $TMP/lnokey.lg 1e-2 >/dev/null"
expect_out 'perplexity' llmq verify "$TMP/lo" $V --kv-cache int4
# calibrated key ranges: statistics of the rotated checkpoint itself (with
# the keys its K_PRE is k H, what the cache stores)
llmq calibrate "$TMP/lk" --text "$TMP/eval.txt" --samples 4 --seqlen 64 -o "$TMP/lk.st"
expect_out 'perplexity' llmq verify "$TMP/lk" $V --kv-cache int4 --stats "$TMP/lk.st"
expect_code 0 llmq pack "$TMP/lo" -o "$TMP/lo.q4" --format int4
check "pack keeps the key" grep -q llmq_online_hadamard "$TMP/lo.q4/config.json"
expect_out 'perplexity' llmq verify "$TMP/lo.q4" $V
expect_out 'perplexity' llmq verify "$TMP/lo.q4" $V --act int8
expect_err 5 'has online Hadamard transforms .*llama.cpp would not apply them' llmq export "$TMP/lo" -o "$TMP/x.gguf"
expect_err 5 'has online Hadamard transforms .*llama.cpp' llmq export "$TMP/lo.q4" -o "$TMP/x.gguf"
expect_err 5 'has online Hadamard transforms .*vLLM would not apply them' llmq export "$TMP/lo.q4" --to compressed-tensors -o "$TMP/x"
expect_err 5 'has online Hadamard transforms .*cannot fold into up_proj' llmq smooth "$TMP/lo" --stats "$TMP/none.st" -o "$TMP/x"
expect_err 5 'has online Hadamard transforms .*backward' llmq uptrain-gqa "$TMP/lo" --kv-heads 2 --pool mean --steps 0 -o "$TMP/x"
expect_err 5 'already has online Hadamard transforms' llmq rotate "$TMP/lo" -o "$TMP/x" --online-hadamard
expect_err 5 'already has online Hadamard transforms' llmq rotate "$TMP/lo" -o "$TMP/x" --online-hadamard-keys
expect_err 5 'already has online Hadamard transforms' llmq rotate "$TMP/lk" -o "$TMP/x" --online-hadamard
check "refused runs leave no output" sh -c "test ! -e $TMP/x && test ! -e $TMP/x.gguf"
# Qwen2 (GQA, q/k/v biases): awq keeps the key (down_proj's scales stay 1)
# and its shards merge into the same bytes
FAST="--text $TMP/eval.txt --samples 2 --seqlen 64 --search-tokens 96 --n-grid 4 --loss-windows 1 --propagate fp"
expect_code 0 llmq rotate $M -o "$TMP/qo" --dtype f32 --online-hadamard
llmq verify "$TMP/qo" $V --logits-out "$TMP/qo.lg" >/dev/null
check "qwen2 online f32: same logits" $TC logits "$TMP/qa.lg" "$TMP/qo.lg" 1e-4
expect_code 0 llmq awq "$TMP/qo" -o "$TMP/qw" $FAST
mv "$TMP/qw" "$TMP/qo.awq"   # merge's output gets its name: the command recorded is the same
check "awq keeps the key" grep -q llmq_online_hadamard "$TMP/qo.awq/config.json"
check "awq: down_proj's scales not searched in any layer" \
    sh -c "test \$(grep -ao 'down..:.null,null.' $TMP/qo.awq/model.safetensors | wc -l) -eq 4"
expect_out 'perplexity' llmq verify "$TMP/qo.awq" $V
llmq awq "$TMP/qo" -o "$TMP/qs0" $FAST --layers 0:2
llmq awq "$TMP/qo" -o "$TMP/qs1" $FAST --layers 2:4
expect_code 0 llmq merge "$TMP/qo" "$TMP/qs0" "$TMP/qs1" -o "$TMP/qw"
check "merge keeps the key" grep -q llmq_online_hadamard "$TMP/qw/config.json"
check "merged = single run, byte for byte" cmp -s "$TMP/qo.awq/model.safetensors" "$TMP/qw/model.safetensors"
# head_dim 24: no Hadamard of that order
build/tools/mksynth "$TMP/hd24" --hidden 48 --layers 1 --heads 2 --kv-heads 2 --intermediate 64 --vocab 64 --shards 1 >/dev/null
expect_err 5 'head_dim 24 is not a power of two' llmq rotate "$TMP/hd24" -o "$TMP/x" --online-hadamard
expect_err 5 'head_dim 24 is not a power of two' llmq rotate "$TMP/hd24" -o "$TMP/x" --online-hadamard-keys
# hostile values of the key: one line naming the file
mkdir "$TMP/hk"
ln -s "$PWD/$M/model.safetensors" "$TMP/hk/model.safetensors"
cp $M/tokenizer.json $M/tokenizer_config.json "$TMP/hk/"
hostile() {  # status pattern json-value
    sed "s/^{/{\"llmq_online_hadamard\": $3,/" $M/config.json >"$TMP/hk/config.json"
    expect_err "$1" "hk/config.json: $2" llmq verify "$TMP/hk" $V
}
hostile 4 '"llmq_online_hadamard" is not an object' '[256, 32]'
hostile 4 '"llmq_online_hadamard.ff_block" is not an integer' '{"ff_block": "256", "head_dim": 32}'
hostile 4 '"llmq_online_hadamard.ff_block" 96 is not a power of two dividing intermediate_size 768' '{"ff_block": 96, "head_dim": 32}'
hostile 4 '"llmq_online_hadamard.ff_block" 512 is not a power of two dividing' '{"ff_block": 512, "head_dim": 32}'
hostile 4 "\"llmq_online_hadamard.head_dim\" 64: expected the model's head_dim 32" '{"ff_block": 256, "head_dim": 64}'
hostile 4 '"llmq_online_hadamard" has no "head_dim"' '{"ff_block": 256}'
hostile 4 '"llmq_online_hadamard.keys" is not true or false' '{"ff_block": 256, "head_dim": 32, "keys": 1}'
hostile 4 '"llmq_online_hadamard.keys" is not true or false' '{"ff_block": 256, "head_dim": 32, "keys": "yes"}'
hostile 5 '"llmq_online_hadamard.values" is a transform this llmq does not know' '{"ff_block": 256, "head_dim": 32, "values": 1}'
sed 's/^{/{"llmq_online_hadamard": {"ff_block": 256, "head_dim": 32},/' $M/config.json >"$TMP/hk/config.json"
expect_out 'perplexity' llmq verify "$TMP/hk" $V

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
expect_out 'online-hadamard-keys' llmq rotate --help
finish
