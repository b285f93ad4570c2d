#!/bin/sh
# llmq awq --format nvint4|nvfp4|mxfp4|mxint4|mxfp8 [--mx-scale R]: the
# scale and clip searches for a block format, packed as llmq pack packs it
# (scheme, bits, the tensors themselves when the search is switched off),
# recorded; --gptq on the block grid; shards; junk and int-only options
# refused.  Fast settings.
. "$(dirname "$0")/../lib.sh"
M=testdata/tiny-qwen2-gqa
TC=build/tools/tcheck
TXT=README.md
FAST="--samples 2 --seqlen 64 --search-tokens 96 --n-grid 4 --loss-windows 1"
IDS="--ids $M/reference/wikitext2_test_ids.bin --max-windows 2"

expect_out 'nvint4\|nvfp4\|mxfp4\|mxint4\|mxfp8' llmq awq --help
expect_out 'mx-scale' llmq awq --help
# usage errors, one line naming the option
expect_err 2 'format' llmq awq $M -o "$TMP/x" --text $TXT --format int5
expect_err 2 'format' llmq awq $M -o "$TMP/x" --text $TXT --format NVINT4
expect_err 2 'format' llmq awq $M -o "$TMP/x" --text $TXT --format ''
expect_err 2 'format' llmq awq $M -o "$TMP/x" --text $TXT --format
expect_err 2 'mx-scale' llmq awq $M -o "$TMP/x" --text $TXT --format nvint4 --mx-scale max
expect_err 2 'for --format int4' llmq awq $M -o "$TMP/x" --text $TXT --format nvint4 --w-bit 3
expect_err 2 'for --format int4' llmq awq $M -o "$TMP/x" --text $TXT --format mxfp4 --group 32
expect_err 2 'for --format int4' llmq awq $M -o "$TMP/x" --text $TXT --format nvfp4 --sym
expect_err 2 'block formats, not int4' llmq awq $M -o "$TMP/x" --text $TXT --mx-scale mse
check "failed runs leave no output" test ! -e "$TMP/x"

# bits per weight of every decoder linear (tied embeddings): codes + one
# scale byte per block (+ an f32 tensor scale per NV linear)
j() { $TC json $M/config.json "$1"; }
H=$(j hidden_size); I=$(j intermediate_size); NL=$(j num_hidden_layers)
KVD=$((H / $(j num_attention_heads) * $(j num_key_value_heads)))
NW=$((NL * (2 * H * H + 2 * KVD * H + 3 * H * I)))
bpw() { awk -v e="$1" -v b="$2" -v t="$3" -v n="$NW" -v l=$((NL * 7)) 'BEGIN { printf "%.12g", e + 8 / b + 8 * t * l / n }'; }
p0=$($TC json "$(llmq verify $M $IDS --json >"$TMP/p0.json" && echo "$TMP/p0.json")" perplexity)

# nvint4: quiet, a packed model verify names nvint4 with the default rule
# (mse, as llmq pack), the format recorded
expect_code 0 llmq awq $M -o "$TMP/nv" --text $TXT $FAST --format nvint4
check "awq nvint4 is quiet" test ! -s "$TMP/out" -a ! -s "$TMP/err"
llmq verify "$TMP/nv" $IDS --json >"$TMP/nv.v.json"
check "verify: weights_dtype nvint4-mse" test "$($TC json "$TMP/nv.v.json" weights_dtype)" = nvint4-mse
check "verify: bits_per_weight" $TC relerr "$($TC json "$TMP/nv.v.json" bits_per_weight)" "$(bpw 4 16 4)" 1e-9
p=$($TC json "$TMP/nv.v.json" perplexity)
check "nvint4 perplexity $p within 15% of the float $p0" $TC lt "$p" "$(awk -v p="$p0" 'BEGIN { print p * 1.15 }')"
check "metadata records the format" grep -aq '\\"format\\":\\"nvint4\\",\\"mx_scale\\":\\"mse\\"' "$TMP/nv/model.safetensors"
check "metadata records the block as the group" grep -aq '\\"w_bit\\":4,\\"group\\":16,\\"sym\\":true' "$TMP/nv/model.safetensors"
check "the linears carry a tensor scale" grep -aq '"model.layers.0.mlp.down_proj.tensor_scale"' "$TMP/nv/model.safetensors"

# --json: the scheme with its rule, the format, the clips per block of 32
llmq awq $M -o "$TMP/mx" --text $TXT $FAST --format mxfp4 --json >"$TMP/mx.json" 2>"$TMP/mx.err"
check "--json is one line" test "$(wc -l <"$TMP/mx.json")" -eq 1
check "--json scheme mxfp4-mse" test "$($TC json "$TMP/mx.json" scheme)" = mxfp4-mse
check "--json records format, rule and the block as the group" python3 -c '
import json, sys
a = json.load(open(sys.argv[1]))["awq"]
sys.exit(0 if (a["format"], a["mx_scale"], a["group"], a["w_bit"], a["sym"]) == ("mxfp4", "mse", 32, 4, True) else 1)' "$TMP/mx.json"
check "--json bits_per_weight" $TC relerr "$($TC json "$TMP/mx.json" bits_per_weight)" "$(bpw 4 32 0)" 1e-9
check "--json effective_bits_per_weight" $TC relerr "$($TC json "$TMP/mx.json" effective_bits_per_weight)" 4.25 1e-12
# the searches ran on the format: finite losses, the chosen scales and
# clips no worse than s = 1 and no clip on their objectives (whether that
# lowers the layer's output error is the model's business: for mxfp4 on
# these models it hardly does)
check "scale and clip searches: finite, no worse than s = 1 / no clip" python3 -c '
import json, math, sys
d = json.load(open(sys.argv[1]))["awq"]
ok = d["fallbacks"] == 0 and len(d["layers"]) > 0
for l in d["layers"]:
    for s1, best in l["search_mse"].values(): ok &= math.isfinite(best) and 0 < best <= s1
    for c in l["clip"].values(): ok &= 0 < c["mse"][1] <= c["mse"][0]
    ok &= all(math.isfinite(x) and x > 0 for x in l["out_mse_rtn_awq"])
sys.exit(0 if ok else 1)' "$TMP/mx.json"
expect_out '"weights_dtype":"mxfp4-mse"' llmq verify "$TMP/mx" --json
# int4 records no format: its bytes are those of before the option
llmq awq $M -o "$TMP/i4" --text $TXT $FAST --json >"$TMP/i4.json"
check "int4: scheme" test "$($TC json "$TMP/i4.json" scheme)" = int4-g128-asym
check "int4: no format in the record" sh -c "! grep -aq 'mx_scale' $TMP/i4/model.safetensors"

# with the searches off (s = 1, no clip) awq writes the tensors llmq pack
# writes: the same quantizer (awq writes the norms and biases it provides
# as f32, pack keeps the source's bf16: the same values)
same_tensors() {
    python3 - "$1" "$2" <<'PY'
import json, struct, sys
def tensors(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n]); h.pop('__metadata__', None)
    return {k: (v['dtype'], b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]]) for k, v in h.items()}
def f32(t):
    dt, raw = t
    if dt == 'BF16': raw = b''.join(b'\0\0' + raw[i:i + 2] for i in range(0, len(raw), 2))
    return raw if dt in ('BF16', 'F32') else None
a, b = tensors(sys.argv[1] + "/model.safetensors"), tensors(sys.argv[2] + "/model.safetensors")
ok = len(a) > 0 and a.keys() == b.keys() and all(a[k] == b[k] or (f32(a[k]) is not None and f32(a[k]) == f32(b[k])) for k in a)
sys.exit(0 if ok else 1)
PY
}
for c in "nvint4 mse" "nvfp4 ocp" "mxint4 ceil" "mxfp8 ocp"; do
    set -- $c
    llmq awq $M -o "$TMP/off-$1" --text $TXT $FAST --n-grid 1 --no-duo --no-clip --format $1 --mx-scale $2 >/dev/null
    llmq pack $M -o "$TMP/pk-$1" --format $1 --mx-scale $2 >/dev/null
    check "$1-$2: awq without search = llmq pack, tensor for tensor" same_tensors "$TMP/off-$1" "$TMP/pk-$1"
done

# --gptq on the block grid: in layer 0 (the same inputs either way) the
# scale bytes and tensor scale are the plain run's, the codes differ, and
# every linear's loss on the grid drops
crc() {  # FILE TENSOR: its crc32 as the packed metadata records it
    python3 -c 'import json, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]
print(json.loads(json.loads(b[8:8 + n])["__metadata__"]["llmq.crc32"])[sys.argv[2]])' "$1" "$2"
}
llmq awq $M -o "$TMP/g" --text $TXT $FAST --format nvint4 --gptq --json >"$TMP/g.json"
check "--gptq is recorded" grep -q '"gptq":true' "$TMP/g.json"
check "gptq lowers every linear's loss on the grid" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))["awq"]
bad = [(l["layer"], k, v) for l in d["layers"] for k, v in l["gptq_mse"].items() if not (0 < v[1] < v[0])]
sys.exit(1 if bad or len(d["layers"]) == 0 else 0)' "$TMP/g.json"
for t in scales tensor_scale; do
    a=$(crc "$TMP/g/model.safetensors" model.layers.0.mlp.down_proj.$t); b=$(crc "$TMP/nv/model.safetensors" model.layers.0.mlp.down_proj.$t)
    check "gptq keeps the $t of awq's grid ($a, $b)" test -n "$a" -a "$a" = "$b"
done
a=$(crc "$TMP/g/model.safetensors" model.layers.0.mlp.down_proj.qweight); b=$(crc "$TMP/nv/model.safetensors" model.layers.0.mlp.down_proj.qweight)
check "gptq changes the codes ($a, $b)" test -n "$a" -a "$a" != "$b"
llmq verify "$TMP/g" $IDS --json >"$TMP/g.v.json"
check "gptq nvint4: weights_dtype" test "$($TC json "$TMP/g.v.json" weights_dtype)" = nvint4-mse
p=$($TC json "$TMP/g.v.json" perplexity)
check "gptq nvint4 perplexity $p within 15% of the float $p0" $TC lt "$p" "$(awk -v p="$p0" 'BEGIN { print p * 1.15 }')"
expect_out '"weights_dtype":"mxfp8-ceil"' sh -c "\"$LLMQ\" awq $M -o \"$TMP/g8\" --text $TXT $FAST --format mxfp8 --mx-scale ceil --gptq >/dev/null && \"$LLMQ\" verify \"$TMP/g8\" --json"

# shards of a block-format gptq run (codes, scale bytes, tensor scales) join
# into the single run's bytes
P="$FAST --propagate fp --format nvfp4 --mx-scale mse --gptq --no-clip"
llmq awq $M -o "$TMP/o" --text $TXT $P >/dev/null && mv "$TMP/o" "$TMP/single"
expect_code 0 llmq awq $M -o "$TMP/s0" --text $TXT $P --layers 0:1
expect_code 0 llmq awq $M -o "$TMP/s1" --text $TXT $P --layers 1:$NL
expect_code 0 llmq merge $M "$TMP/s1" "$TMP/s0" -o "$TMP/o"
check "nvfp4 gptq shards merged = single run, byte for byte" cmp -s "$TMP/single/model.safetensors" "$TMP/o/model.safetensors"
# a shard of another format is another run
expect_code 0 llmq awq $M -o "$TMP/s1x" --text $TXT $FAST --propagate fp --format nvint4 --mx-scale mse --gptq --no-clip --layers 1:$NL
expect_err 4 'another awq run' llmq merge $M "$TMP/s0" "$TMP/s1x" -o "$TMP/o2"

finish
