#!/bin/sh
# NVFP4 compressed-tensors checkpoints ("nvfp4-pack-quantized", what
# llm-compressor's schemes NVFP4A16 and NVFP4 write for vLLM): llmq verify
# runs them as LLMQ_W_NVFP4.  testdata/ct-nvfp4 is tiny-qwen2-gqa quantized
# and packed by compressed-tensors' own functions (tests/tools/ct-nvfp4-write.py
# says how; its reference/ holds the logits of compressed-tensors'
# dequantization of it, in float32): llmq's logits, per-token NLL and top
# tokens agree with them; a W4A4 checkpoint of the same weights runs weight
# only, the same logits byte for byte, and says so; every contradiction in a
# hostile file is one line with llmq's status.
. "$(dirname "$0")/../lib.sh"
M=testdata/ct-nvfp4
EDIT="python3 tests/tools/ct-nvfp4-edit.py"
V="--text testdata/sample.txt --max-windows 2 --json"

# the writer's checkpoint, as the issue runs it
expect_out '"weights_dtype":"ct-nvfp4a16"' llmq verify $M $V
check "bits_per_weight 4.5 (4-bit codes, an E4M3 scale per 16)" grep -Eq '"bits_per_weight":4\.500[0-9]*,' "$TMP/out"
check "activations fp" grep -q '"act":"fp"' "$TMP/out"
check "both windows scored" grep -q '"scored_tokens":1022,' "$TMP/out"
expect_code 0 llmq verify $M $V --logits-out "$TMP/nv.logits"
cp "$TMP/out" "$TMP/nv.json"
python3 tests/tools/ct-nvfp4-check.py $M/reference/ref.safetensors "$TMP/nv.logits" "$TMP/nv.json" >"$TMP/cmp" 2>&1
check "logits, token NLL and top tokens = compressed-tensors' dequantization ($(tail -1 "$TMP/cmp"))" \
    grep -q '"ok": true' "$TMP/cmp"
# the check can fail: a logits file of the float model is not the NVFP4 one
expect_code 0 llmq verify testdata/tiny-qwen2-gqa $V --logits-out "$TMP/bf16.logits"
cp "$TMP/out" "$TMP/bf16.json"
expect_code 1 python3 tests/tools/ct-nvfp4-check.py $M/reference/ref.safetensors "$TMP/bf16.logits" "$TMP/bf16.json"

# W4A4 (scheme NVFP4): the same weights, run weight-only, and said so
$EDIT $M "$TMP/w4a4" w4a4
expect_out '"weights_dtype":"ct-nvfp4-w4a4-weight-only"' llmq verify "$TMP/w4a4" $V --logits-out "$TMP/w4a4.logits"
check "W4A4: activations fp by default" grep -q '"act":"fp"' "$TMP/out"
check "W4A4 checkpoint, weight-only: logits equal the W4A16 checkpoint's" cmp -s "$TMP/nv.logits" "$TMP/w4a4.logits"
# llmq's own NVFP4 activations on request (per-token tensor scale, not the file's input_global_scale)
expect_out '"act":"same"' llmq verify "$TMP/w4a4" $V --act same
expect_err 2 'int8 activations need int8 weights' llmq verify $M $V --act int8

# hostile checkpoints: one line naming the file and tensor, llmq's status
P=model.layers.1.mlp.up_proj
Q=quantization_config
G=$Q.config_groups.group_0
W=$G.weights
bad() {  # STATUS PATTERN SRC OPS...
    st=$1; pat=$2; src=$3; shift 3
    rm -rf "$TMP/bad"
    $EDIT "$src" "$TMP/bad" "$@"
    expect_err "$st" "$pat" llmq verify "$TMP/bad" --text testdata/sample.txt --ctx 64 --max-windows 1 --json
}
# the global scale
bad 4 "model.safetensors: tensor '$P.weight_global_scale' is 0, not a positive number" $M setf32:$P.weight_global_scale=0
bad 4 "tensor '$P.weight_global_scale' is -1, not a positive number" $M setf32:$P.weight_global_scale=-1
bad 7 "tensor '$P.weight_global_scale' is nan, not a finite number" $M setf32:$P.weight_global_scale=nan
bad 7 "tensor '$P.weight_global_scale' is inf, not a finite number" $M setf32:$P.weight_global_scale=inf
bad 4 "tensor '$P.weight_global_scale' is 1.4013e-45, too small for its reciprocal" $M setf32:$P.weight_global_scale=1e-45
bad 4 "missing tensor '$P.weight_global_scale'" $M drop:$P.weight_global_scale
bad 4 "tensor '$P.weight_global_scale' is F16 \[2\], must be F32 \[1\]" $M retype:$P.weight_global_scale=F16,2
bad 4 "tensor '$P.weight_global_scale' is I32 \[1\], must be F32 \[1\]" $M retype:$P.weight_global_scale=I32
# the block scales: NaN bytes of E4M3 (0x7f, 0xff), dtype, shape
bad 7 "tensor '$P.weight_scale': element 5 is NaN \(E4M3 0x7f\)" $M setbyte:$P.weight_scale=5,0x7f
bad 7 "tensor '$P.weight_scale': element 12287 is NaN \(E4M3 0xff\)" $M setbyte:$P.weight_scale=12287,0xff
bad 4 "tensor '$P.weight_scale' is U8 \[768, 16\], must be F8_E4M3 \[768, 16\]" $M retype:$P.weight_scale=U8
bad 4 "tensor '$P.weight_scale' is F8_E5M2 \[768, 16\], must be F8_E4M3 \[768, 16\]" $M retype:$P.weight_scale=F8_E5M2
bad 4 "tensor '$P.weight_scale' is F8_E4M3 \[768, 15\], must be F8_E4M3 \[768, 16\]" $M trunc:$P.weight_scale=15
bad 4 "missing tensor '$P.weight_scale'" $M drop:$P.weight_scale
# the codes
bad 4 "tensor '$P.weight_packed' is I8 \[768, 128\], must be U8 \[768, 128\]" $M retype:$P.weight_packed=I8
bad 4 "tensor '$P.weight_packed' is U8 \[768, 127\], must be U8 \[768, 128\]" $M trunc:$P.weight_packed=127
bad 4 "tensor '$P.weight_packed' is I32 \[768, 32\], must be U8 \[768, 128\]" $M retype:$P.weight_packed=I32,768,32
bad 4 "missing tensor '$P.weight_packed'" $M drop:$P.weight_packed
# what symmetric NVFP4 weights never have
bad 4 "tensor '$P.weight_zero_point' contradicts symmetric NVFP4 weights" $M add:$P.weight_zero_point=F8_E4M3,768,16
bad 4 "tensor '$P.weight_shape' says \[0, 0\], config.json implies \[768, 256\]" $M add:$P.weight_shape=I64,2
# input global scales: only with NVFP4 activations, then checked
bad 4 "tensor '$P.input_global_scale' is present but .*config.json quantizes no input activations" $M add:$P.input_global_scale=F32,1
bad 4 "missing tensor '$P.input_global_scale'" $M w4a4 drop:$P.input_global_scale
bad 7 "tensor '$P.input_global_scale' is nan, not a finite number" $M w4a4 setf32:$P.input_global_scale=nan
# a float dtype llmq knows but does not compute in, where a float weight is read
bad 5 "tensor 'model.embed_tokens.weight': dtype F8_E5M2 is not supported for weights" $M \
    retype:model.embed_tokens.weight=F8_E5M2,4096,512
bad 5 "tensor 'model.embed_tokens.weight': dtype F8_E4M3 is not supported for weights" $M \
    retype:model.embed_tokens.weight=F8_E4M3,4096,512
# quantization_config
bad 5 "compressed-tensors format 'mxfp4-pack-quantized' is not supported" $M cfg:$Q.format='"mxfp4-pack-quantized"'
bad 5 "group 'group_0': format 'pack-quantized' differs from quantization_config's 'nvfp4-pack-quantized'" $M \
    cfg:$G.format='"pack-quantized"'
bad 5 "4-bit int weights with nvfp4-pack-quantized are not supported \(4-bit float\)" $M cfg:$W.type='"int"'
bad 5 "8-bit float weights with nvfp4-pack-quantized" $M cfg:$W.num_bits=8
bad 5 "strategy 'group' with nvfp4-pack-quantized is not supported \(tensor_group\)" $M cfg:$W.strategy='"group"'
bad 5 "group_size 32 with nvfp4-pack-quantized is not supported \(16\)" $M cfg:$W.group_size=32
bad 4 "'group_size' is missing" $M cfg:$W.group_size=null
bad 5 "asymmetric FP4 weights are not supported" $M cfg:$W.symmetric=false
bad 5 "dynamic weight quantization is not supported" $M cfg:$W.dynamic=true
bad 5 "scale_dtype 'float16' is not supported \(float8_e4m3fn\)" $M cfg:$W.scale_dtype='"float16"'
bad 5 "only NVFP4 activations .* are supported with NVFP4 weights" $M \
    cfg:$G.input_activations='{"num_bits": 8, "type": "int", "strategy": "token", "dynamic": true}'
bad 5 "only NVFP4 activations .* are supported with NVFP4 weights" $M w4a4 cfg:$G.input_activations.dynamic=true
bad 5 "quantized output activations are not supported" $M cfg:$G.output_activations='{"num_bits": 4, "type": "float"}'
bad 4 "tensor '$P.weight_packed' is present but .*config.json leaves '$P' unquantized" $M \
    cfg:$Q.ignore='["lm_head", "re:.*\\.1\\.mlp\\.up_proj"]'
# scale_dtype as newer writers name it is fine
rm -rf "$TMP/sd"
$EDIT $M "$TMP/sd" cfg:$W.scale_dtype='"torch.float8_e4m3fn"'
expect_code 0 llmq verify "$TMP/sd" $V --logits-out "$TMP/sd.logits"
check "scale_dtype float8_e4m3fn: the same logits" cmp -s "$TMP/nv.logits" "$TMP/sd.logits"
finish
