#!/bin/sh
# llmq verify on the bundled model, and its error paths with exact exit codes.
. "$(dirname "$0")/../lib.sh"
M=testdata/tiny-qwen2-gqa
TC=build/tools/tcheck

expect_out '^ok ' llmq verify $M
expect_out '^ok ' llmq verify $M/model.safetensors
expect_out '"arch":"Qwen2ForCausalLM"' llmq verify $M --json
expect_out 'perplexity [0-9.]+' llmq verify $M --ids $M/reference/wikitext2_test_ids.bin --max-windows 1
expect_out 'protocol   llamacpp' llmq verify $M --ids $M/reference/wikitext2_test_ids.bin --max-windows 1 --protocol llamacpp
expect_out '"scored_tokens":255' llmq verify $M --ids $M/reference/wikitext2_test_ids.bin --max-windows 1 --protocol llamacpp --json
expect_out '"scored_tokens":1022' llmq verify $M --ids $M/reference/wikitext2_test_ids.bin --max-windows 2 --json
expect_out '"perplexity"' llmq verify $M --text README.md --ctx 64 --max-windows 2 --json
expect_out '"decode_tok_s"' llmq verify $M --bench --json
# --act bf16: bf16 activations in prefill, a KLD of the order of bf16's
# rounding against fp activations; refused for weights that are not bf16
ID=$M/reference/wikitext2_test_ids.bin
expect_out 'perplexity' llmq verify $M --ids $ID --max-windows 2 --kld-save "$TMP/fp.kld"
llmq verify $M --ids $ID --max-windows 2 --act bf16 --kld "$TMP/fp.kld" --json >"$TMP/bf.json" 2>&1
check "verify --act bf16 reports act bf16" grep -q '"act":"bf16"' "$TMP/bf.json"
check "verify --act bf16: KLD against fp activations below 1e-4" \
    awk -v k="$($TC json "$TMP/bf.json" kld_mean)" 'BEGIN { exit !(k > 0 && k < 1e-4) }'
llmq export $M --type f16 -o "$TMP/f16.gguf" >/dev/null 2>&1
expect_err 2 'bf16 activations need bf16 weights' llmq verify "$TMP/f16.gguf" --ids $ID --max-windows 1 --act bf16
# stdin text
expect_out 'perplexity' sh -c "cat README.md | $LLMQ verify $M --text - --ctx 32 --max-windows 1"

# usage errors: 2
expect_code 2 llmq verify
expect_code 2 llmq verify $M --ctx 1
expect_code 2 llmq verify $M --ctx abc
expect_code 2 llmq verify $M --ctx 12x
expect_code 2 llmq verify $M --protocol half
expect_code 2 llmq verify $M --text a --ids b
expect_err 2 'fewer than one window' llmq verify $M --text README.md --ctx 100000
expect_code 2 llmq verify $M $M
expect_err 2 'refusing to overwrite an input' llmq verify $M/model.safetensors --ids $M/reference/wikitext2_test_ids.bin --max-windows 1 --logits-out $M/model.safetensors
expect_err 2 'x.st: --logits-out and --kld-save name the same file' llmq verify $M --ids $M/reference/wikitext2_test_ids.bin --max-windows 1 --logits-out "$TMP/x.st" --kld-save "$TMP/x.st"
expect_err 2 'y.st: --logits-out and --kld-save name the same file' llmq verify $M --ids $M/reference/wikitext2_test_ids.bin --max-windows 1 --logits-out "$TMP/y.st" --kld-save "$TMP/./y.st"

# missing files: 3
expect_err 3 "$TMP/nope" llmq verify "$TMP/nope"
mkdir "$TMP/empty"
expect_err 3 'empty' llmq verify "$TMP/empty"
expect_err 3 'missing.txt' llmq verify $M --text "$TMP/missing.txt"

# unsupported architecture: 5
cp -r $M "$TMP/gpt2"
sed 's/Qwen2ForCausalLM/GPT2LMHeadModel/' $M/config.json >"$TMP/gpt2/config.json"
expect_err 5 'GPT2LMHeadModel.*not supported.*LlamaForCausalLM' llmq verify "$TMP/gpt2"
cp -r $M "$TMP/rope"
sed 's/"rope_type": "default"/"rope_type": "yarn"/' $M/config.json >"$TMP/rope/config.json"
expect_err 5 'rope type "yarn" is not supported' llmq verify "$TMP/rope"
# linear and llama3 RoPE scaling: first-window logits within 1e-3 of
# transformers 5.17 in fp32 (tests/tools/rope-ref.py wrote testdata/rope/;
# the default rope gives logits 8-10 apart from both)
head -c 64 $M/reference/wikitext2_test_ids.bin >"$TMP/ids16.bin"
for v in linear llama3; do
    cp -r $M "$TMP/rope-$v"; cp testdata/rope/$v.config.json "$TMP/rope-$v/config.json"
    expect_code 0 llmq verify "$TMP/rope-$v" --ids "$TMP/ids16.bin" --ctx 16 --logits-out "$TMP/rope-$v.st"
    check "rope $v: logits of transformers" $TC logits "$TMP/rope-$v.st" testdata/rope/$v.logits.safetensors 1e-3
done
expect_code 0 llmq verify $M --ids "$TMP/ids16.bin" --ctx 16 --logits-out "$TMP/rope-default.st"
check "the default rope is not within 1e-3 of llama3's" sh -c "! $TC logits $TMP/rope-default.st testdata/rope/llama3.logits.safetensors 1e-3"

# shapes that contradict config.json: 4
cp -r $M "$TMP/shape"
sed 's/"intermediate_size": 768/"intermediate_size": 512/' $M/config.json >"$TMP/shape/config.json"
expect_err 4 "tensor 'model.layers.0.mlp.gate_proj.weight' has shape \[768, 256\], config.json implies \[512, 256\]" llmq verify "$TMP/shape"
# a tokenizer whose ids go past config.json's vocab_size: 4, naming the model
cp -r $M "$TMP/tokv"
sed 's/"Ġcat": 3682/"Ġcat": 5000/' $M/tokenizer.json >"$TMP/tokv/tokenizer.json"
expect_err 4 "tokv: token id 5000 is outside the model's vocabulary \(0..4095\)" llmq verify "$TMP/tokv" --gen "the cat" --n 2

# truncated and corrupt safetensors: 4
cp -r $M "$TMP/trunc"
head -c 1000000 $M/model.safetensors >"$TMP/trunc/model.safetensors"
expect_err 4 'model.safetensors' llmq verify "$TMP/trunc"
cp -r $M "$TMP/hdr"
printf '\377\377\377\377\377\377\377\177' | dd of="$TMP/hdr/model.safetensors" bs=1 conv=notrunc 2>/dev/null
expect_err 4 'header' llmq verify "$TMP/hdr"
cp -r $M "$TMP/json"
printf '{{{{' | dd of="$TMP/json/model.safetensors" bs=1 seek=8 conv=notrunc 2>/dev/null
expect_err 4 'model.safetensors' llmq verify "$TMP/json"
cp -r $M "$TMP/badcfg"
echo '{"architectures": ["LlamaForCausalLM"], "hidden_size": "big"}' >"$TMP/badcfg/config.json"
expect_err 4 'hidden_size' llmq verify "$TMP/badcfg"

# NaN weight: 7
cp -r $M "$TMP/nan"
$TC poke "$TMP/nan/model.safetensors" model.layers.1.mlp.up_proj.weight 5 7fc0
expect_err 7 "model.layers.1.mlp.up_proj.weight.*NaN" llmq verify "$TMP/nan"
# finite bf16 weights whose products overflow fp32 (attention scores of
# 1e76): status 7, not a perplexity of nan or a greedy token 0
cp -r $M "$TMP/ovf"
for t in q_proj k_proj; do $TC poke "$TMP/ovf/model.safetensors" model.layers.0.self_attn.$t.weight 0 7f7f; done
expect_err 7 "ovf: the forward pass gave a NaN or Inf hidden state" llmq verify "$TMP/ovf" --gen "The history of" --n 3
expect_err 7 "ovf: the forward pass gave a NaN or Inf" llmq verify "$TMP/ovf" --ids $M/reference/wikitext2_test_ids.bin --max-windows 1
# a rope_theta that fp32 rounds to 0: refused at load (4)
cp -r $M "$TMP/theta"
sed 's/"rope_theta": [0-9.e+]*/"rope_theta": 5e-324/' $M/config.json >"$TMP/theta/config.json"
expect_err 4 "theta/config.json: rope_theta 4.94065645841247e-324 is not a positive fp32 number" llmq verify "$TMP/theta"

# f32 and f16 weights give the bf16 model's perplexity (bf16 -> f32 is exact)
build/tools/convert $M "$TMP/f32" f32 && build/tools/convert $M "$TMP/f16" f16
IDS=$M/reference/wikitext2_test_ids.bin
llmq verify $M --ids $IDS --max-windows 2 --json >"$TMP/bf.json"
llmq verify "$TMP/f32" --ids $IDS --max-windows 2 --json >"$TMP/f32.json"
llmq verify "$TMP/f16" --ids $IDS --max-windows 2 --json >"$TMP/f16.json"
check "f32 weights: weights_dtype" grep -q '"weights_dtype":"f32"' "$TMP/f32.json"
check "f16 weights: weights_dtype" grep -q '"weights_dtype":"f16"' "$TMP/f16.json"
check "f32 perplexity equals bf16's" $TC relerr "$($TC json "$TMP/f32.json" perplexity)" "$($TC json "$TMP/bf.json" perplexity)" 1e-6
check "f16 perplexity within 1e-5 of bf16's" $TC relerr "$($TC json "$TMP/f16.json" perplexity)" "$($TC json "$TMP/bf.json" perplexity)" 1e-5

# sharded checkpoints (the shared Llama model has 5 shards)
L="$SHARED/models/tiny-llama-mha"
if [ -f "$L/model.safetensors.index.json" ]; then
    expect_out '^ok ' llmq verify "$L"
    expect_out '^ok ' llmq verify "$L/model.safetensors.index.json"
    cp -r "$L" "$TMP/shards"
    chmod -R u+w "$TMP/shards"
    head -c 5000 "$L/model-00003-of-00005.safetensors" >"$TMP/shards/model-00003-of-00005.safetensors"
    expect_err 4 'model-00003-of-00005.safetensors' llmq verify "$TMP/shards"
    rm "$TMP/shards/model-00003-of-00005.safetensors"
    expect_err 3 'model-00003-of-00005.safetensors' llmq verify "$TMP/shards"
    cp -r "$L" "$TMP/badidx"
    chmod -R u+w "$TMP/badidx"
    sed 's/model-00002-of-00005/..\/model-00002-of-00005/' "$L/model.safetensors.index.json" >"$TMP/badidx/model.safetensors.index.json"
    expect_err 4 'index' llmq verify "$TMP/badidx"
fi
finish
