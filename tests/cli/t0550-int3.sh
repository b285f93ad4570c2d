#!/bin/sh
# int3 at three bits per weight (LLMQ_W_Q3): llmq pack --format int3 and
# llmq awq --w-bit 3 write it; the bits it stores; verify runs it as a
# model close to the float one and equal to the same codes in the int4
# nibble layout of older files (which still load); export refuses it in one
# line; hostile files (a zero point above 7, a qweight of another shape)
# are refused in one line naming file and tensor.
. "$(dirname "$0")/../lib.sh"
M=testdata/tiny-qwen2-gqa
TC=build/tools/tcheck
ID=$M/reference/wikitext2_test_ids.bin
FAST="--samples 2 --seqlen 64 --search-tokens 96 --n-grid 4 --loss-windows 1"

one_line() { check "$1: one line on stderr" test "$(wc -l <"$TMP/err")" -eq 1; }

# bits per weight: every decoder linear quantized (the embeddings are
# tied), 3 bits a code, an f16 scale (and a zero byte) per group
j() { $TC json $M/config.json "$1"; }
NLIN=$(($(j num_hidden_layers) * 7))
# down_proj's qweight: [hidden, intermediate * 3 / 8] bytes
QW="\"model.layers.0.mlp.down_proj.qweight\":{\"dtype\":\"U8\",\"shape\":\\[$(j hidden_size),$(($(j intermediate_size) * 3 / 8))\\]"
bpw() { awk -v g="$1" -v z="$2" 'BEGIN { printf "%.12g", 3 + (16 + 8 * z) / g }'; }

llmq verify $M --ids $ID --max-windows 2 --json >"$TMP/p0.json"
p0=$($TC json "$TMP/p0.json" perplexity)
for c in "128 asym" "64 sym" "32 asym" "128 sym"; do
    set -- $c
    g=$1; s=$2; z=1; opt=""
    [ "$s" = sym ] && z=0 && opt=--sym
    D="$TMP/i3-g$g-$s"; bits=$(bpw "$g" "$z")
    expect_code 0 llmq pack $M -o "$D" --format int3 --group "$g" $opt --json
    check "pack int3 g$g $s: nothing on stderr" test ! -s "$TMP/err"
    cp "$TMP/out" "$D.pack.json"
    check "pack int3 g$g $s: scheme" test "$($TC json "$D.pack.json" scheme)" = "int3-g$g-$s"
    check "pack int3 g$g $s: all $NLIN linears" test "$($TC json "$D.pack.json" linears_packed)" = "$NLIN"
    val=$($TC json "$D.pack.json" bits_per_weight)
    check "pack int3 g$g $s: bits_per_weight $val = $bits" $TC relerr "$val" "$bits" 1e-9
    check "pack int3 g$g $s: qweight of 3 bits a code" grep -aq "$QW" "$D/model.safetensors"
    llmq verify "$D" --ids $ID --max-windows 2 --json >"$D.json"
    check "verify int3 g$g $s: weights_dtype" test "$($TC json "$D.json" weights_dtype)" = "int3-g$g-$s"
    val=$($TC json "$D.json" bits_per_weight)
    check "verify int3 g$g $s: bits_per_weight $val = $bits" $TC relerr "$val" "$bits" 1e-9
    p=$($TC json "$D.json" perplexity)
    check "verify int3 g$g $s: perplexity $p within 10% of float $p0" $TC relerr "$p" "$p0" 0.1
    check "verify int3 g$g $s: perplexity $p is not the float model's" sh -c "! $TC relerr $p $p0 1e-6"
    # the same codes in the int4 nibble layout (files from before): they
    # load as before, at 4 bits, and give the same model
    rm -rf "$D-old"; cp -r "$D" "$D-old"
    $TC q3-nibbles "$D/model.safetensors" "$D-old/model.safetensors"
    llmq verify "$D-old" --ids $ID --max-windows 2 --json >"$D-old.json"
    check "nibble int3 g$g $s: weights_dtype" test "$($TC json "$D-old.json" weights_dtype)" = "int3-g$g-$s"
    val=$($TC json "$D-old.json" bits_per_weight)
    check "nibble int3 g$g $s: bits_per_weight $val = 1 more" $TC relerr "$val" "$(awk -v b="$bits" 'BEGIN { print b + 1 }')" 1e-9
    po=$($TC json "$D-old.json" perplexity)
    check "nibble int3 g$g $s: perplexity $po = $p" $TC relerr "$po" "$p" 1e-6
done
D="$TMP/i3-g128-asym"
# decode (matvec): greedy generation from both layouts under the oracle is
# the same text; the SIMD kernels generate too
LLMQ_ISA=scalar "$LLMQ" verify "$D" --gen "The house" --n 12 2>&1 | grep gen_ids >"$TMP/gen3"
LLMQ_ISA=scalar "$LLMQ" verify "$D-old" --gen "The house" --n 12 2>&1 | grep gen_ids >"$TMP/gen4"
check "greedy generation: token ids" grep -Eq '^gen_ids +[0-9]+( [0-9]+){13}$' "$TMP/gen3"
check "greedy generation: the same from both layouts" cmp -s "$TMP/gen3" "$TMP/gen4"
expect_code 0 llmq verify "$D" --gen "The house" --n 12
expect_out '"decode_tok_s"' llmq verify "$D" --bench --json
# the scalar oracle and the SIMD kernels: the same model
LLMQ_ISA=scalar "$LLMQ" verify "$D" --ids $ID --max-windows 1 --ctx 64 --logits-out "$TMP/s.lg" >/dev/null
llmq verify "$D" --ids $ID --max-windows 1 --ctx 64 --logits-out "$TMP/v.lg" >/dev/null
check "int3: scalar and SIMD logits agree" $TC logits "$TMP/s.lg" "$TMP/v.lg" 1e-3

# awq --w-bit 3 writes the same layout (codes come through pack's provider)
expect_code 0 llmq awq $M -o "$TMP/a3" --text README.md $FAST --w-bit 3 --json
cp "$TMP/out" "$TMP/a3.json"
check "awq int3: scheme" test "$($TC json "$TMP/a3.json" scheme)" = int3-g128-asym
val=$($TC json "$TMP/a3.json" bits_per_weight)
check "awq int3: bits_per_weight $val = $(bpw 128 1)" $TC relerr "$val" "$(bpw 128 1)" 1e-9
llmq verify "$TMP/a3" --ids $ID --max-windows 2 --json >"$TMP/a3v.json"
p=$($TC json "$TMP/a3v.json" perplexity)
check "awq int3: perplexity $p within 10% of float $p0" $TC relerr "$p" "$p0" 0.1
check "awq int3: qweight of 3 bits a code" grep -aq "$QW" "$TMP/a3/model.safetensors"
# s = 1 and no clip is round to nearest: pack --format int3's model exactly
expect_code 0 llmq awq $M -o "$TMP/r3" --text README.md $FAST --w-bit 3 --n-grid 1 --no-duo --no-clip
llmq verify "$TMP/r3" --ids $ID --max-windows 2 --json >"$TMP/r3v.json"
p=$($TC json "$TMP/r3v.json" perplexity); pr=$($TC json "$TMP/i3-g128-asym.json" perplexity)
check "awq int3 with s = 1, no clip: perplexity $p = pack int3's $pr" $TC relerr "$p" "$pr" 1e-9

# export: the int4 types of GGUF and compressed-tensors hold int3 codes
# exactly (the codes widened back to nibbles): the same perplexity
expect_code 0 llmq export "$D" -o "$TMP/x.gguf"
expect_code 0 llmq export "$D" --to compressed-tensors -o "$TMP/xct"
llmq verify "$D" --ids $ID --max-windows 2 --json >"$TMP/xd.json"
llmq verify "$TMP/x.gguf" --ids $ID --max-windows 2 --json >"$TMP/xg.json"
llmq verify "$TMP/xct" --ids $ID --max-windows 2 --json >"$TMP/xc.json"
pd=$($TC json "$TMP/xd.json" perplexity); pg=$($TC json "$TMP/xg.json" perplexity); pc=$($TC json "$TMP/xc.json" perplexity)
check "int3 -> GGUF (Q4_1, m rounded to f16): perplexity $pg = $pd" $TC relerr "$pg" "$pd" 1e-3
check "int3 -> compressed-tensors: perplexity $pc = $pd" $TC relerr "$pc" "$pd" 1e-9
# int8 activations are for int8 and int4 weights
expect_err 2 'int8 activations need' llmq verify "$D" --act int8 --ids $ID --max-windows 1

# hostile files (checksums that match): a zero point above 7; a qweight
# that is neither 3 bits nor the nibble layout a code
rm -rf "$TMP/z"; cp -r "$D" "$TMP/z"
$TC poke-crc "$TMP/z/model.safetensors" model.layers.1.self_attn.o_proj.zeros 5 08
expect_err 4 "z/model.safetensors: tensor 'model.layers.1.self_attn.o_proj.zeros': element 5 = 8 is not a 3-bit zero point" llmq verify "$TMP/z"
one_line "zero point 8"
rm -rf "$TMP/c"; cp -r "$D" "$TMP/c"
$TC cut "$D/model.safetensors" "$TMP/c/model.safetensors" model.layers.1.mlp.up_proj.qweight
expect_err 4 "c/model.safetensors: tensor 'model.layers.1.mlp.up_proj.qweight' must be U8 \[" llmq verify "$TMP/c"
one_line "qweight shape"
# the nibble layout keeps the int4 rule (zero points up to 15)
rm -rf "$TMP/z4"; cp -r "$D-old" "$TMP/z4"
$TC poke-crc "$TMP/z4/model.safetensors" model.layers.1.self_attn.o_proj.zeros 5 0f
expect_out perplexity llmq verify "$TMP/z4" --ids $ID --max-windows 1
$TC poke-crc "$TMP/z4/model.safetensors" model.layers.1.self_attn.o_proj.zeros 5 10
expect_err 4 "element 5 = 16 is not a 4-bit zero point" llmq verify "$TMP/z4"
finish
