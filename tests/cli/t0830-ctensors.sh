#!/bin/sh
# compressed-tensors checkpoints (what llm-compressor writes for vLLM):
# llmq export --to compressed-tensors writes llmq's int4 / int8 models bit
# for bit, and every command that opens a model reads them back: the
# verify logits (--logits-out, compared byte for byte) and perplexity of
# the export equal those of the packed model.  Channel-wise scales, f32
# scales and the older int8 zero points read as the same weights; every
# contradiction in a hostile file is one line with llmq's status.
. "$(dirname "$0")/../lib.sh"
M=testdata/tiny-qwen2-gqa
EDIT="python3 tests/tools/ct-edit.py"
CALIB="$SHARED/data/train/emma.txt"
FAST="--samples 2 --seqlen 64 --search-tokens 96 --n-grid 4 --loss-windows 1"
V="--text testdata/sample.txt --ctx 64 --max-windows 4 --json"

expect_out 'compressed-tensors' llmq export --help

# usage: 2
expect_err 2 'missing -o DIR' llmq export $M --to compressed-tensors
expect_code 2 llmq export $M --to safetensors -o "$TMP/x"
expect_err 2 '--type and --name are options of --to gguf' llmq export $M --to compressed-tensors --type q8_0 -o "$TMP/x"

# the models exported
expect_code 0 llmq pack $M -o "$TMP/a64" --format int4 --group 64
expect_code 0 llmq pack $M -o "$TMP/s128" --format int4 --sym --group 128
expect_code 0 llmq pack $M -o "$TMP/q8" --format int8
expect_code 0 llmq pack $M -o "$TMP/mx" --format mxint8
expect_code 0 llmq awq $M -o "$TMP/a32" --text "$CALIB" --group 32 $FAST

# what compressed-tensors has no format for: 5, one line, no output
expect_err 5 'no int4 or int8 linear' llmq export $M --to compressed-tensors -o "$TMP/x"
expect_err 5 'is mxint8, which llmq does not export to compressed-tensors' llmq export "$TMP/mx" --to compressed-tensors -o "$TMP/x"
expect_err 2 'refusing to overwrite an input|is an input' llmq export "$TMP/a64" --to compressed-tensors -o "$TMP/a64"
check "refused exports leave no output" test ! -e "$TMP/x"

# round trips: identical logits (bytes) and perplexity
roundtrip() {   # NAME SRC [verify options]
    n=$1; src=$2; shift 2
    expect_code 0 llmq export "$src" --to compressed-tensors -o "$TMP/ct-$n" --json
    expect_code 0 llmq verify "$src" $V --logits-out "$TMP/$n-src.logits" "$@"
    grep -o '"perplexity":[^,]*' "$TMP/out" >"$TMP/$n-src.ppl"
    expect_code 0 llmq verify "$TMP/ct-$n" $V --logits-out "$TMP/$n-ct.logits" "$@"
    grep -o '"perplexity":[^,]*' "$TMP/out" >"$TMP/$n-ct.ppl"
    check "$n: logits of the compressed-tensors export equal the source's" cmp -s "$TMP/$n-src.logits" "$TMP/$n-ct.logits"
    check "$n: perplexity equal ($(cat "$TMP/$n-ct.ppl"))" cmp -s "$TMP/$n-src.ppl" "$TMP/$n-ct.ppl"
    check "$n: perplexity present" test -s "$TMP/$n-ct.ppl"
}
roundtrip a64 "$TMP/a64"
roundtrip s128 "$TMP/s128"
roundtrip a32 "$TMP/a32"
roundtrip a32-w4a8 "$TMP/a32" --act int8
roundtrip q8 "$TMP/q8" --act int8
roundtrip q8-fp "$TMP/q8" --act fp
# linears pack left float go to the ignore list; a packed untied head is exported
expect_code 0 llmq pack $M -o "$TMP/skip" --format int4 --group 32 --skip 'layers\.[02]\.mlp\.down_proj'
roundtrip skip "$TMP/skip"
check "skipped linears listed in ignore" grep -q '"model.layers.2.mlp.down_proj"' "$TMP/ct-skip/config.json"
L="$SHARED/models/tiny-llama-mha"
if [ -d "$L" ]; then
    expect_code 0 llmq pack "$L" -o "$TMP/head" --format int8 --quantize-head
    roundtrip head "$TMP/head" --act int8
    check "a packed head is not ignored" python3 -c 'import json, sys
assert json.load(open(sys.argv[1]))["quantization_config"]["ignore"] == []' "$TMP/ct-head/config.json"
    expect_code 0 llmq pack "$L" -o "$TMP/nohead" --format int4 --sym --group 64
    roundtrip nohead "$TMP/nohead"
    check "a float untied head is ignored" grep -q '"lm_head"' "$TMP/ct-nohead/config.json"
fi

# the config llm-compressor writes
python3 - "$TMP/ct-a64/config.json" "$TMP/ct-q8/config.json" "$TMP/ct-s128/config.json" >"$TMP/cfgcheck" 2>&1 <<'EOF'
import json, sys
a, q, s = (json.load(open(p))["quantization_config"] for p in sys.argv[1:])
for c in (a, q, s):
    assert c["quant_method"] == "compressed-tensors" and c["quantization_status"] == "compressed"
    assert c["kv_cache_scheme"] is None and c["ignore"] == ["lm_head"] and "version" in c
    assert list(c["config_groups"]) == ["group_0"] and c["config_groups"]["group_0"]["targets"] == ["Linear"]
w = a["config_groups"]["group_0"]["weights"]
assert a["format"] == "pack-quantized" and w["num_bits"] == 4 and w["strategy"] == "group"
assert w["group_size"] == 64 and w["symmetric"] is False and w["type"] == "int"
assert a["config_groups"]["group_0"]["input_activations"] is None
assert s["config_groups"]["group_0"]["weights"]["symmetric"] is True
g = q["config_groups"]["group_0"]
assert q["format"] == "int-quantized" and g["weights"]["num_bits"] == 8 and g["weights"]["strategy"] == "channel"
ia = g["input_activations"]
assert ia["dynamic"] is True and ia["strategy"] == "token" and ia["num_bits"] == 8 and ia["symmetric"] is True
EOF
check "quantization_config as llm-compressor writes it ($(tail -1 "$TMP/cfgcheck"))" test ! -s "$TMP/cfgcheck"
# a W8A8 checkpoint runs with int8 activations unless told otherwise
expect_out '"act":"int8"' llmq verify "$TMP/ct-q8" $V
expect_out '"act":"fp"' llmq verify "$TMP/ct-q8" $V --act fp
expect_out '"weights_dtype":"ct-w4a16-g64-asym"' llmq verify "$TMP/ct-a64" $V
# an export of an export is the same checkpoint
expect_code 0 llmq export "$TMP/ct-a64" --to compressed-tensors -o "$TMP/ct2-a64"
check "re-export: the same config.json" cmp -s "$TMP/ct-a64/config.json" "$TMP/ct2-a64/config.json"
expect_err 5 'already a compressed-tensors model' llmq pack "$TMP/ct-a64" -o "$TMP/x"

# variants that hold the same weights: identical logits
same_logits() {  # DESC A B [verify options]
    d=$1; a=$2; b=$3; shift 3
    expect_code 0 llmq verify "$a" $V --logits-out "$TMP/sa.logits" "$@"
    expect_code 0 llmq verify "$b" $V --logits-out "$TMP/sb.logits" "$@"
    check "$d" cmp -s "$TMP/sa.logits" "$TMP/sb.logits"
}
expect_code 0 llmq pack $M -o "$TMP/a128" --format int4 --group 128
expect_code 0 llmq export "$TMP/a128" --to compressed-tensors -o "$TMP/ct-a128"
# channel-wise (one scale per row) reads as group 128 repeating it
$EDIT "$TMP/ct-a128" "$TMP/chan" channel
$EDIT "$TMP/ct-a128" "$TMP/flat" flatten
same_logits "channel-wise scales and zero points = group 128 repeating them" "$TMP/chan" "$TMP/flat"
same_logits "channel-wise, W4A8" "$TMP/chan" "$TMP/flat" --act int8
expect_out '"weights_dtype":"ct-w4a16-channel-asym"' llmq verify "$TMP/chan" $V
# group 256 (wider than llmq's) reads as 128 repeating each scale
$EDIT "$TMP/ct-a128" "$TMP/g256" regroup:2
$EDIT "$TMP/ct-a128" "$TMP/g128r" repeat:2
same_logits "group 256 = group 128 repeating its scales" "$TMP/g256" "$TMP/g128r"
$EDIT "$TMP/ct-s128" "$TMP/s-chan" channel
$EDIT "$TMP/ct-s128" "$TMP/s-flat" flatten
same_logits "symmetric channel-wise = group 128 repeating" "$TMP/s-chan" "$TMP/s-flat"
# f32 scales (exact in f16) and int8 zero points of older writers
$EDIT "$TMP/ct-a64" "$TMP/f32s" f32:model.layers.0.self_attn.q_proj.weight_scale f32:model.layers.3.mlp.down_proj.weight_scale
same_logits "f32 scales read as the same f16" "$TMP/ct-a64" "$TMP/f32s"
S0=model.layers.0.self_attn.q_proj.weight_scale
S3=model.layers.3.mlp.down_proj.weight_scale
$EDIT "$TMP/ct-a64" "$TMP/r7" round7:$S0 round7:$S3
$EDIT "$TMP/r7" "$TMP/r7bf" bf16:$S0 bf16:$S3
same_logits "bf16 scales (f16 values) read as the same f16" "$TMP/r7" "$TMP/r7bf"
python3 - "$TMP/ct-a64" "$TMP/zp8" <<'EOF'
import json, shutil, struct, sys
sys.argv = ["ct-edit.py", sys.argv[1], sys.argv[2]]
exec(open("tests/tools/ct-edit.py").read().replace("\nmain()\n", "\n"))
shutil.copytree(sys.argv[1], sys.argv[2])
meta, t = read_st(sys.argv[2] + "/model.safetensors")
for p in linears(t):
    dt, (r8, ng), d = t[p + ".weight_zero_point"]
    r = t[p + ".weight_shape"]
    rows = struct.unpack_from("<q", r[2], 0)[0]
    t[p + ".weight_zero_point"] = ["I8", [rows, ng], bytearray(struct.pack("<%db" % (rows * ng),
        *[zp_get(d, ng, i, g) - 8 for i in range(rows) for g in range(ng)]))]
write_st(sys.argv[2] + "/model.safetensors", meta, t)
EOF
same_logits "int8 zero points [rows, groups] of older writers" "$TMP/ct-a64" "$TMP/zp8"

# hostile checkpoints: one line naming the file and tensor, llmq's status
P=model.layers.1.mlp.up_proj
Q=quantization_config
W=$Q.config_groups.group_0.weights
bad() {  # STATUS PATTERN SRC OPS...
    st=$1; pat=$2; src=$3; shift 3
    rm -rf "$TMP/bad"
    $EDIT "$src" "$TMP/bad" "$@"
    expect_err "$st" "$pat" llmq verify "$TMP/bad" $V
}
# pack-quantized int8 (llm-compressor's W8A16): the same weights as int-quantized
$EDIT "$TMP/ct-q8" "$TMP/w8a16" pack8
same_logits "pack-quantized int8 = int-quantized int8, fp activations" "$TMP/ct-q8" "$TMP/w8a16" --act fp
same_logits "pack-quantized int8 = int-quantized int8, W8A8" "$TMP/ct-q8" "$TMP/w8a16" --act int8
expect_out '"act":"fp".*"weights_dtype":"ct-w8a16-packed"|"weights_dtype":"ct-w8a16-packed".*"act":"fp"' llmq verify "$TMP/w8a16" $V
bad 4 "tensor '$P.weight_packed' is I32 \[768, 63\], must be I32 \[768, 64\]" "$TMP/w8a16" trunc:$P.weight_packed=63
bad 5 "int8 weights must be symmetric per channel" "$TMP/w8a16" cfg:$W.strategy='"group"' cfg:$W.group_size=64

A="$TMP/ct-a64"
bad 4 "model.safetensors: tensor '$P.weight_shape' says \[768, 512\]" $A i64:$P.weight_shape=768,512
bad 4 "'$P.weight_shape' is I64 \[3\]" $A i64:$P.weight_shape=768,256,1
bad 4 "missing tensor '$P.weight_shape'" $A drop:$P.weight_shape
bad 4 "tensor '$P.weight_packed' is I32 \[768, 31\], must be I32 \[768, 32\]" $A trunc:$P.weight_packed=31
bad 4 "tensor '$P.weight_packed' is U32" $A dtype:$P.weight_packed=U32
bad 4 "tensor '$P.weight_packed' is U8" $A dtype:$P.weight_packed=U8
bad 4 "tensor '$P.weight_zero_point' is I32 \[768, 4\], must be I32/I8 \[96, 4\]" $A unpackzp:$P.weight_zero_point
bad 4 "tensor '$P.weight_zero_point' is I32 \[96, 3\]" $A trunc:$P.weight_zero_point=3
bad 4 "missing tensor '$P.weight_zero_point'" $A drop:$P.weight_zero_point
bad 4 "tensor '$P.weight_scale' is F16 \[768, 2\], must be F16/BF16/F32 \[768, 4\]" $A trunc:$P.weight_scale=2
bad 4 "missing tensor '$P.weight_scale'" $A drop:$P.weight_scale
bad 4 "tensor '$P.weight_scale' is I16" $A dtype:$P.weight_scale=I16
bad 5 "'$P.weight_scale': element 5 = 0.100000001 is no f16 value" $A f32:$P.weight_scale setf32:$P.weight_scale=5,0.1
bad 7 "'$P.weight_scale': element 3 is NaN or Inf" $A f32:$P.weight_scale setf32:$P.weight_scale=3,inf
bad 5 "'$P.weight_scale': element 2 = [0-9.]+e\+29 is no f16 value" $A bf16:$P.weight_scale setbf16:$P.weight_scale=2,1e30
bad 5 "'$P.weight_scale': element 9 = [0-9.]+e-31 is no f16 value" $A bf16:$P.weight_scale setbf16:$P.weight_scale=9,1e-30
bad 7 "'$P.weight_scale': element 1 is NaN or Inf" $A bf16:$P.weight_scale setbf16:$P.weight_scale=1,nan
bad 4 "model.safetensors: tensor 'model.layers.0.self_attn.q_proj.weight_zero_point': row 0 group 0 is -?[0-9]+, but the weights are symmetric" $A cfg:$W.symmetric=true
bad 5 "actorder" $A add:$P.weight_g_idx=I32,1,256
bad 5 "compressed-tensors format 'marlin-24' is not supported" $A cfg:$Q.format='"marlin-24"'
bad 5 "compressed-tensors format 'naive-quantized' is not supported" $A cfg:$Q.format='"naive-quantized"'
bad 5 "num_bits 3 with pack-quantized is not supported \(4, 8\)" $A cfg:$W.num_bits=3
bad 4 "'num_bits' must be an integer" $A cfg:$W.num_bits='"4"'
bad 4 "'num_bits' must be an integer" $A cfg:$W.num_bits=4.5
bad 5 "group_size 48 is not a multiple of 32" $A cfg:$W.group_size=48
bad 4 "'group_size' must be an integer in \[1," $A cfg:$W.group_size=0
bad 4 "'group_size' is missing" $A cfg:$W.group_size=null
bad 5 "columns are not a multiple of group_size 96" $A cfg:$W.group_size=96
bad 4 "tensor 'model.layers.0.self_attn.q_proj.weight_scale' is F16 \[256, 4\], must be F16/BF16/F32 \[256, 2\]" $A cfg:$W.group_size=128
bad 5 "type 'float' is not supported" $A cfg:$W.type='"float"'
bad 5 "strategy 'tensor' is not supported" $A cfg:$W.strategy='"tensor"'
bad 5 "actorder 'group'" $A cfg:$W.actorder='"group"'
bad 5 "dynamic weight quantization" $A cfg:$W.dynamic=true
bad 5 "kv_cache_scheme is not supported" $A cfg:$Q.kv_cache_scheme='{"num_bits": 8, "type": "float"}'
bad 5 "quantization_status 'frozen'" $A cfg:$Q.quantization_status='"frozen"'
bad 4 "'config_groups' must be a non-empty object" $A cfg:$Q.config_groups='{}'
bad 4 "'targets' must be a non-empty list" $A cfg:$Q.config_groups.group_0.targets='"Linear"'
bad 5 "only dynamic symmetric per-token int8 activations" $A cfg:$Q.config_groups.group_0.input_activations='{"num_bits": 8, "type": "int", "strategy": "token", "dynamic": true}'
bad 4 "targeted by config groups 'group_0' and 'g1'" $A cfg:$Q.config_groups.g1='{"targets": ["re:.*up_proj$"], "weights": {"num_bits": 4, "type": "int", "strategy": "group", "group_size": 64}}'
bad 4 "tensor '$P.weight_packed' is present but .*config.json leaves '$P' unquantized" $A cfg:$Q.ignore='["lm_head", "re:.*\\.1\\.mlp\\.up_proj"]'
bad 5 "unsupported|Oniguruma|pattern" $A cfg:$Q.ignore='["re:(unclosed"]'
bad 4 "'ignore' must be a list of strings" $A cfg:$Q.ignore='[1]'
# the float path of an ignored linear still checks its tensor
bad 4 "missing tensor '$P.weight'" $A cfg:$Q.ignore='["lm_head", "'$P'"]' drop:$P.weight_packed drop:$P.weight_scale drop:$P.weight_zero_point drop:$P.weight_shape
B="$TMP/ct-q8"
bad 4 "tensor '$P.weight' is U8 \[768, 256\], must be I8" $B dtype:$P.weight=U8
bad 4 "tensor '$P.weight_scale' is F32 \[768, 2\]" $B add:$P.weight_scale=F32,768,2
bad 4 "'$P.weight_zero_point' contradicts symmetric int8" $B add:$P.weight_zero_point=I8,768,1
bad 5 "num_bits 4 with int-quantized is not supported" $B cfg:$W.num_bits=4
bad 5 "int8 weights must be symmetric per channel" $B cfg:$W.symmetric=false
bad 5 "only dynamic symmetric per-token int8 activations" $B cfg:$Q.config_groups.group_0.input_activations.dynamic=false
bad 7 "'$P.weight_scale': element 7 is NaN or Inf" $B setf32:$P.weight_scale=7,nan
finish
