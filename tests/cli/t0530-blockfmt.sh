#!/bin/sh
# llmq pack --format mxfp4|mxint4|nvfp4|nvint4|mxfp8: each packs, names its
# scheme, stores the bits its layout says, runs through verify close to the
# float model (the same logits under the scalar oracle and the SIMD
# kernels); --mx-scale ocp and ceil, and the default rule; packed files
# with values no kernel can use
# (NaN / 0 / negative tensor scales, E4M3 NaN scales and codes, E8M0 255)
# are refused in one line naming file and tensor.
. "$(dirname "$0")/../lib.sh"
M=testdata/tiny-qwen2-gqa
TC=build/tools/tcheck
head -c 40000 "$SHARED/data/eval/dorian_gray.txt" >"$TMP/eval.txt"
V="--text $TMP/eval.txt --ctx 256 --max-windows 4"

# one line on stderr (expect_err allows two)
one_line() { check "$1: one line on stderr" test "$(wc -l <"$TMP/err")" -eq 1; }

# bits per weight from the config: every decoder linear quantized (the
# embeddings are tied), codes + one scale byte per block (+ a 4-byte f32
# tensor scale per NV linear)
j() { $TC json $M/config.json "$1"; }
H=$(j hidden_size); I=$(j intermediate_size); NL=$(j num_hidden_layers)
KVD=$((H / $(j num_attention_heads) * $(j num_key_value_heads)))
NW=$((NL * (2 * H * H + 2 * KVD * H + 3 * H * I)))
NLIN=$((NL * 7))
bpw() {  # bpw ELEMENT_BITS BLOCK TENSOR_SCALE_BYTES
    awk -v e="$1" -v b="$2" -v t="$3" -v n="$NW" -v l="$NLIN" 'BEGIN { printf "%.12g", e + 8 / b + 8 * t * l / n }'
}

llmq verify $M $V --json >"$TMP/p0.json"
p0=$($TC json "$TMP/p0.json" perplexity)
check "float perplexity $p0 is in domain (below 100)" $TC lt "$p0" 100
for c in "mxfp4 4 32 0 1.15" "mxint4 4 32 0 1.15" "nvfp4 4 16 4 1.15" "nvint4 4 16 4 1.15" "mxfp8 8 32 0 1.03"; do
    set -- $c
    f=$1; bits=$(bpw "$2" "$3" "$4")   # not "want": lib.sh's expect_code sets it
    worst=$(awk -v p="$p0" -v k="$5" 'BEGIN { printf "%.9g", p * k }')
    expect_code 0 llmq pack $M -o "$TMP/$f" --format $f --mx-scale ocp --json
    check "pack $f: nothing on stderr" test ! -s "$TMP/err"
    cp "$TMP/out" "$TMP/$f.pack.json"
    check "pack $f: scheme" test "$($TC json "$TMP/$f.pack.json" scheme)" = "$f"
    check "pack $f: all $NLIN linears packed" test "$($TC json "$TMP/$f.pack.json" linears_packed)" = "$NLIN"
    check "pack $f: none float" test "$($TC json "$TMP/$f.pack.json" linears_float)" = 0
    got=$($TC json "$TMP/$f.pack.json" bits_per_weight)
    check "pack $f: bits_per_weight $got = $bits" $TC relerr "$got" "$bits" 1e-9
    if [ "$4" = 4 ]; then
        check "$f stores tensor scales" grep -aq '"model.layers.0.self_attn.q_proj.tensor_scale"' "$TMP/$f/model.safetensors"
    else
        check "$f stores no tensor scale" sh -c "! grep -aq tensor_scale $TMP/$f/model.safetensors"
    fi
    llmq verify "$TMP/$f" $V --json >"$TMP/$f.json"
    check "verify $f: weights_dtype" test "$($TC json "$TMP/$f.json" weights_dtype)" = "$f"
    got=$($TC json "$TMP/$f.json" bits_per_weight)
    check "verify $f: bits_per_weight $got = $bits" $TC relerr "$got" "$bits" 1e-9
    p=$($TC json "$TMP/$f.json" perplexity)
    check "verify $f: perplexity $p below $worst (float $p0)" $TC lt "$p" "$worst"
    check "verify $f: perplexity $p is not the float model's" sh -c "! $TC relerr $p $p0 1e-6"
    # --mx-scale ceil: its own scheme, other bytes, as good a model
    expect_out "\"scheme\":\"$f-ceil\"" llmq pack $M -o "$TMP/$f-ceil" --format $f --mx-scale ceil --json
    check "$f-ceil: other bytes" sh -c "! cmp -s $TMP/$f/model.safetensors $TMP/$f-ceil/model.safetensors"
    llmq verify "$TMP/$f-ceil" $V --json >"$TMP/$f-ceil.json"
    check "verify $f-ceil: weights_dtype" test "$($TC json "$TMP/$f-ceil.json" weights_dtype)" = "$f-ceil"
    p=$($TC json "$TMP/$f-ceil.json" perplexity)
    check "verify $f-ceil: perplexity $p below $worst" $TC lt "$p" "$worst"
    # the default rule: a scheme of this format, which verify reports
    expect_code 0 llmq pack $M -o "$TMP/$f-def" --format $f --json
    cp "$TMP/out" "$TMP/$f-def.pack.json"
    sch=$($TC json "$TMP/$f-def.pack.json" scheme)
    check "pack $f by default: scheme $sch" sh -c "echo '$sch' | grep -Eq '^$f(-ceil|-mse)?\$'"
    llmq verify "$TMP/$f-def" $V --json >"$TMP/$f-def.json"
    check "verify $f by default: weights_dtype" test "$($TC json "$TMP/$f-def.json" weights_dtype)" = "$sch"
    p=$($TC json "$TMP/$f-def.json" perplexity)
    check "verify $f by default: perplexity $p below $worst" $TC lt "$p" "$worst"
    # the scalar oracle and the SIMD kernels: the same model
    LLMQ_ISA=scalar "$LLMQ" verify "$TMP/$f" --text "$TMP/eval.txt" --ctx 64 --max-windows 2 --logits-out "$TMP/$f.s.lg" >/dev/null
    llmq verify "$TMP/$f" --text "$TMP/eval.txt" --ctx 64 --max-windows 2 --logits-out "$TMP/$f.v.lg" >/dev/null
    check "$f: scalar and SIMD logits agree" $TC logits "$TMP/$f.s.lg" "$TMP/$f.v.lg" 1e-3
done
# the same command twice (from two directories: the command line is recorded): the same bytes
mkdir -p "$TMP/d1" "$TMP/d2"
(cd "$TMP/d1" && "$LLMQ" pack "$OLDPWD/$M" -o out --format nvfp4 --mx-scale ocp)
(cd "$TMP/d2" && "$LLMQ" pack "$OLDPWD/$M" -o out --format nvfp4 --mx-scale ocp)
check "pack nvfp4 twice: the same bytes" cmp -s "$TMP/d1/out/model.safetensors" "$TMP/d2/out/model.safetensors"
# an untied head packed too: its tensor scale counts
L="$SHARED/models/tiny-llama-mha"
if [ -d "$L" ]; then
    llmq pack "$L" -o "$TMP/lh" --format nvint4 --mx-scale ocp --quantize-head --json >"$TMP/lh.json"
    lH=$($TC json "$L/config.json" hidden_size); lI=$($TC json "$L/config.json" intermediate_size)
    lN=$($TC json "$L/config.json" num_hidden_layers); lV=$($TC json "$L/config.json" vocab_size)
    lKV=$((lH / $($TC json "$L/config.json" num_attention_heads) * $($TC json "$L/config.json" num_key_value_heads)))
    lW=$((lN * (2 * lH * lH + 2 * lKV * lH + 3 * lH * lI) + lV * lH))
    bits=$(awk -v n="$lW" -v l=$((lN * 7 + 1)) 'BEGIN { printf "%.12g", 4.5 + 32 * l / n }')
    check "llama nvint4 with its head: $((lN * 7 + 1)) linears" test "$($TC json "$TMP/lh.json" linears_packed)" = $((lN * 7 + 1))
    check "llama nvint4 with its head: bits_per_weight = $bits" $TC relerr "$($TC json "$TMP/lh.json" bits_per_weight)" "$bits" 1e-9
    check "the head has a tensor scale" grep -aq '"lm_head.tensor_scale"' "$TMP/lh/model.safetensors"
    expect_out 'perplexity' llmq verify "$TMP/lh" --text "$TMP/eval.txt" --ctx 128 --max-windows 1
fi

# values no kernel can use, in files whose checksums match
bad() {  # bad FORMAT TENSOR INDEX HEX STATUS PATTERN
    rm -rf "$TMP/val"; cp -r "$TMP/$1" "$TMP/val"
    $TC poke-crc "$TMP/val/model.safetensors" "$2" "$3" "$4"
    expect_err "$5" "val/model.safetensors.*'$2'?.*$6" llmq verify "$TMP/val"
    one_line "$1 $2[$3] = $4"
}
T=model.layers.1.self_attn.q_proj
for f in nvfp4 nvint4; do
    # NaN / Inf: status 7 as for every NaN scale (man/llmq.1 EXIT STATUS); zero or negative: 4
    bad $f $T.tensor_scale 0 7fc00000 7 'nan'
    bad $f $T.tensor_scale 0 7f800000 7 'inf'
    bad $f $T.tensor_scale 0 00000000 4 'is 0, not a positive'
    bad $f $T.tensor_scale 0 80000000 4 'not a positive'
    bad $f $T.tensor_scale 0 bf800000 4 'is -1, not a positive'
    # a subnormal one is still a positive number
    rm -rf "$TMP/val"; cp -r "$TMP/$f" "$TMP/val"
    $TC poke-crc "$TMP/val/model.safetensors" $T.tensor_scale 0 00000001
    expect_out 'perplexity' llmq verify "$TMP/val" --text "$TMP/eval.txt" --ctx 64 --max-windows 1
    bad $f model.layers.3.mlp.down_proj.scales 5 7f 7 'element 5 is NaN \(E4M3 0x7f\)'
    bad $f model.layers.3.mlp.down_proj.scales 0 ff 7 'element 0 is NaN \(E4M3 0xff\)'
done
bad mxfp8 model.layers.2.mlp.up_proj.qweight 9 7f 7 'element 9 is NaN \(E4M3 0x7f\)'
bad mxfp8 model.layers.2.mlp.up_proj.qweight 100 ff 7 'element 100 is NaN \(E4M3 0xff\)'
for f in mxfp4 mxint4 mxfp8; do
    bad $f $T.scales 3 ff 7 'element 3 is NaN \(E8M0 255\)'
done
# a checksum that does not match: status 8, as for every packed format
rm -rf "$TMP/val"; cp -r "$TMP/nvfp4" "$TMP/val"
$TC poke "$TMP/val/model.safetensors" $T.tensor_scale 0 3f800000
expect_err 8 "$T.tensor_scale.*crc32" llmq verify "$TMP/val"
# a tensor scale that is missing (renamed in the header and in the checksums)
rm -rf "$TMP/val"; cp -r "$TMP/nvfp4" "$TMP/val"
for off in $(grep -abo "$T.tensor_scale" "$TMP/val/model.safetensors" | cut -d: -f1); do
    printf X | dd of="$TMP/val/model.safetensors" bs=1 seek=$((off + ${#T} + 12)) conv=notrunc 2>/dev/null
done
check "renamed twice" test "$(grep -abo "$T.tensor_scalX" "$TMP/val/model.safetensors" | wc -l)" -eq 2
expect_err 4 "val/model.safetensors.*$T.tensor_scale" llmq verify "$TMP/val"
one_line "missing tensor_scale"

# usage errors
expect_code 2 llmq pack $M -o "$TMP/x" --format mxfp6
expect_code 2 llmq pack $M -o "$TMP/x" --format nvfp4 --mx-scale floor
expect_code 2 llmq pack $M -o "$TMP/x" --format MXFP4
check "failed packs leave no output" test ! -e "$TMP/x"
expect_err 5 'already a packed model' llmq pack "$TMP/mxfp4" -o "$TMP/again" --format nvfp4
finish
