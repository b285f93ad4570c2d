#!/bin/sh
# llmq pack: every format round-trips through verify; corrupt files are refused.
. "$(dirname "$0")/../lib.sh"
M=testdata/tiny-qwen2-gqa
TC=build/tools/tcheck

for f in int8 int4 mxint8; do
    expect_code 0 llmq pack $M -o "$TMP/$f" --format $f
    check "pack $f is quiet on success" test ! -s "$TMP/out"
    for x in config.json tokenizer.json model.safetensors; do check "$f has $x" test -f "$TMP/$f/$x"; done
    expect_out '"weights_dtype":"(int8|int4-g128-asym|mxint8)"' llmq verify "$TMP/$f" --json
    expect_out 'perplexity' llmq verify "$TMP/$f" --ids $M/reference/wikitext2_test_ids.bin --max-windows 1
done
expect_out '"scheme":"int4-g64-sym"' llmq pack $M -o "$TMP/s64" --group 64 --sym --json
expect_out '"weights_dtype":"int4-g64-sym"' llmq verify "$TMP/s64" --json
expect_out '"scheme":"mxint8-ceil"' llmq pack $M -o "$TMP/mxc" --format mxint8 --mx-scale ceil --json
expect_out '"linears_float":4' llmq pack $M -o "$TMP/skip" --skip 'mlp\.down_proj' --json
expect_out 'perplexity' llmq verify "$TMP/skip" --ids $M/reference/wikitext2_test_ids.bin --max-windows 1
expect_out '"bits_per_weight":8\.' llmq pack $M -o "$TMP/q8b" --format int8 --json
# --quantize-head packs an untied LM head too (tied models have none)
expect_out '"linears_packed":28' llmq pack $M -o "$TMP/tied-head" --quantize-head --json
L="$SHARED/models/tiny-llama-mha"
if [ -d "$L" ]; then
    expect_out '"linears_packed":43' llmq pack "$L" -o "$TMP/head" --format int8 --quantize-head --json
    expect_out 'perplexity' llmq verify "$TMP/head" --act int8 --ids "$L/reference/wikitext2_test_ids.bin" --max-windows 1
fi
# verify runs int4 rows in tiles of four (llmq_model_interleave); the
# file's own row order (LLMQ_INTERLEAVE=0) gives the same logits bit for
# bit, here with a tied int4 LM head and embeddings, both activation modes.
# With --act int8 on an AVX-512 VNNI host int4 takes the W4A8 tiles of
# sixteen rows instead, whose sums run in another order: logits as close
# as another ISA's (tests/tools/logits-close.py); LLMQ_INTERLEAVE=4 keeps
# the tiles of four, bit for bit again
expect_code 0 llmq pack $M -o "$TMP/i4h" --format int4 --group 64 --quantize-head
for a in fp int8; do
    expect_code 0 llmq verify "$TMP/i4h" --act $a --ids $M/reference/wikitext2_test_ids.bin --max-windows 1 \
        --logits-out "$TMP/il.$a"
    expect_code 0 env LLMQ_INTERLEAVE=0 "$LLMQ" verify "$TMP/i4h" --act $a \
        --ids $M/reference/wikitext2_test_ids.bin --max-windows 1 --logits-out "$TMP/pl.$a"
    expect_code 0 env LLMQ_INTERLEAVE=4 "$LLMQ" verify "$TMP/i4h" --act $a \
        --ids $M/reference/wikitext2_test_ids.bin --max-windows 1 --logits-out "$TMP/fl.$a"
    check "int4 rows in tiles of four, --act $a: the same logits" cmp -s "$TMP/fl.$a" "$TMP/pl.$a"
    check "interleaved int4 rows, --act $a: logits as close as another ISA's" \
        python3 tests/tools/logits-close.py "$TMP/pl.$a" "$TMP/il.$a" 0.05
    [ $a = fp ] && check "interleaved int4 rows, --act fp: the same logits" cmp -s "$TMP/il.$a" "$TMP/pl.$a"
done
# a second pack replaces the output whole
expect_code 0 llmq pack $M -o "$TMP/int4" --format int4
check "no temp files left" sh -c "! ls -a $TMP | grep -q tmp"
# W8A8 needs int8 weights
expect_out 'perplexity' llmq verify "$TMP/int8" --act int8 --ids $M/reference/wikitext2_test_ids.bin --max-windows 1
expect_out 'perplexity' llmq verify "$TMP/int4" --act int8 --ids $M/reference/wikitext2_test_ids.bin --max-windows 1
expect_err 2 'int8 activations need' llmq verify $M --act int8 --ids $M/reference/wikitext2_test_ids.bin --max-windows 1
expect_err 2 'int8 activations need' llmq verify "$TMP/mxint8" --act int8 --ids $M/reference/wikitext2_test_ids.bin --max-windows 1
# packing a packed model
expect_err 5 'already a packed model' llmq pack "$TMP/int4" -o "$TMP/again"

# usage errors
expect_err 2 'missing -o' llmq pack $M
expect_code 2 llmq pack $M -o "$TMP/x" --format int2
expect_code 2 llmq pack $M -o "$TMP/x" --group 48
expect_code 2 llmq pack $M -o "$TMP/x" --group 256
expect_err 2 'refusing to overwrite an input' llmq pack $M -o $M
expect_err 2 'skip' llmq pack $M -o "$TMP/x" --skip '('
expect_err 3 'nope' llmq pack "$TMP/nope" -o "$TMP/x"
check "failed packs leave no output" test ! -e "$TMP/x"

# corrupt packed files: one flipped byte is refused with status 8
cp -r "$TMP/int4" "$TMP/bad"
$TC poke "$TMP/bad/model.safetensors" model.layers.2.mlp.up_proj.qweight 100 5a
expect_err 8 "model.layers.2.mlp.up_proj.qweight.*crc32" llmq verify "$TMP/bad"
cp -r "$TMP/int8" "$TMP/bad8"
$TC poke "$TMP/bad8/model.safetensors" model.layers.0.self_attn.q_proj.scales 3 3f800000
expect_err 8 "model.layers.0.self_attn.q_proj.scales.*corrupt" llmq verify "$TMP/bad8"
cp -r "$TMP/mxint8" "$TMP/badn"
$TC poke "$TMP/badn/model.safetensors" model.norm.weight 0 3f80
expect_err 8 "model.norm.weight" llmq verify "$TMP/badn"
# values no kernel can use, in files whose checksums match: NaN / Inf
# scales (status 7), a zero point above 15 (status 4)
for c in "int8 q_proj.scales 7fc00000 7 NaN" "int4 o_proj.scales 7c00 7 NaN" "mxint8 q_proj.scales ff 7 E8M0" \
         "int4 o_proj.zeros ff 4 zero.point"; do
    set -- $c
    rm -rf "$TMP/val"; cp -r "$TMP/$1" "$TMP/val"
    $TC poke-crc "$TMP/val/model.safetensors" "model.layers.1.self_attn.$2" 5 "$3"
    expect_err "$4" "model.layers.1.self_attn.$2': element 5 .*$5" llmq verify "$TMP/val"
done
# KLD base checks
expect_code 0 llmq verify $M --ids $M/reference/wikitext2_test_ids.bin --max-windows 2 --kld-save "$TMP/b.kld"
expect_out '"kld_mean":' llmq verify "$TMP/int8" --ids $M/reference/wikitext2_test_ids.bin --max-windows 2 --kld "$TMP/b.kld" --json
# the log ratio is ln(ppl / ppl_base); the standard errors are positive with two windows
cp "$TMP/out" "$TMP/k.json"
lr=$($TC json "$TMP/k.json" ln_ppl_ratio)
lr_want=$(awk -v p="$($TC json "$TMP/k.json" perplexity)" -v b="$($TC json "$TMP/k.json" ppl_base)" 'BEGIN { printf "%.9g", log(p / b) }')
check "ln_ppl_ratio $lr = ln(ppl / ppl_base) $lr_want" $TC relerr "$lr" "$lr_want" 1e-4
check "kld_se positive with 2 windows" $TC lt 0 "$($TC json "$TMP/k.json" kld_se)"
check "ln_ppl_ratio_se positive with 2 windows" $TC lt 0 "$($TC json "$TMP/k.json" ln_ppl_ratio_se)"
check "kld_se below the mean" $TC lt "$($TC json "$TMP/k.json" kld_se)" "$($TC json "$TMP/k.json" kld_mean)"
# the base against itself: no divergence, no error to estimate
expect_out 'ln ratio \+0\.000000 \+- 0\.000000' llmq verify $M --ids $M/reference/wikitext2_test_ids.bin --max-windows 2 --kld "$TMP/b.kld"
expect_out 'kld +mean 0\.000000 \+- 0\.000000' llmq verify $M --ids $M/reference/wikitext2_test_ids.bin --max-windows 2 --kld "$TMP/b.kld"
# one window: the standard errors are 0 (not estimable)
expect_out '"ln_ppl_ratio_se":0[,}]' llmq verify "$TMP/int8" --ids $M/reference/wikitext2_test_ids.bin --max-windows 1 --kld "$TMP/b.kld" --json
expect_err 2 'made for context' llmq verify "$TMP/int8" --ids $M/reference/wikitext2_test_ids.bin --max-windows 2 --ctx 256 --kld "$TMP/b.kld"
expect_err 2 'holds 2 windows' llmq verify "$TMP/int8" --ids $M/reference/wikitext2_test_ids.bin --max-windows 3 --kld "$TMP/b.kld"
expect_err 2 'made for protocol' llmq verify "$TMP/int8" --ids $M/reference/wikitext2_test_ids.bin --max-windows 2 --protocol llamacpp --kld "$TMP/b.kld"
expect_err 2 'other tokens' llmq verify "$TMP/int8" --text README.md --ctx 512 --max-windows 1 --kld "$TMP/b.kld"
expect_err 4 'not an llmq KLD base' llmq verify "$TMP/int8" --ids $M/reference/wikitext2_test_ids.bin --max-windows 1 --kld "$TMP/int8/model.safetensors"
cp "$TMP/b.kld" "$TMP/nan.kld"
$TC poke "$TMP/nan.kld" nll 3 7fc00000
expect_err 4 'nan.kld: token 3: nll nan is not a finite' llmq verify "$TMP/int8" --ids $M/reference/wikitext2_test_ids.bin --max-windows 2 --kld "$TMP/nan.kld"
cp "$TMP/b.kld" "$TMP/v9.kld"
off=$(grep -abo '"llmq.kld_version":"1"' "$TMP/v9.kld" | cut -d: -f1)
printf 9 | dd of="$TMP/v9.kld" bs=1 seek=$((off + 20)) conv=notrunc 2>/dev/null
expect_err 5 'v9.kld: KLD base version 9; this llmq reads version 1' llmq verify "$TMP/int8" --ids $M/reference/wikitext2_test_ids.bin --max-windows 2 --kld "$TMP/v9.kld"
# metadata counts that contradict the tensors (2 windows, metadata 3)
cp "$TMP/b.kld" "$TMP/w3.kld"
off=$(grep -abo '"windows":"2"' "$TMP/w3.kld" | cut -d: -f1)
printf 3 | dd of="$TMP/w3.kld" bs=1 seek=$((off + 11)) conv=notrunc 2>/dev/null
expect_err 4 "w3.kld: metadata windows '3' / topk '64' contradict the tensors \\(2 windows" llmq verify "$TMP/int8" --ids $M/reference/wikitext2_test_ids.bin --max-windows 2 --kld "$TMP/w3.kld"
# a packed model whose config.json lost a layer: its linears are listed but
# not loaded (this used to run a shallower model with exit 0)
rm -rf "$TMP/short"; cp -r "$TMP/int8" "$TMP/short"
nl=$($TC json "$TMP/short/config.json" num_hidden_layers)
sed -i "s/\"num_hidden_layers\": *$nl/\"num_hidden_layers\": $((nl - 1))/" "$TMP/short/config.json"
expect_err 4 "short/model.safetensors: metadata 'llmq.linears' lists 'model.layers.$((nl - 1))\\..*which this model \\($((nl - 1)) layers" llmq verify "$TMP/short" --ids $M/reference/wikitext2_test_ids.bin --max-windows 1
finish
