#!/bin/sh
# llmq awq: options, error paths with their exit codes, the packed output
# (int4 and int3), the recorded choices, determinism.  Fast settings.
. "$(dirname "$0")/../lib.sh"
M=testdata/tiny-qwen2-gqa
TC=build/tools/tcheck
TXT=README.md
FAST="--samples 2 --seqlen 64 --search-tokens 96 --n-grid 4 --loss-windows 1"

expect_out 'Usage|usage' llmq awq --help
# usage errors
expect_err 2 'missing -o' llmq awq $M --text $TXT
expect_err 2 'missing --text' llmq awq $M -o "$TMP/x"
expect_code 2 llmq awq $M -o "$TMP/x" --text $TXT --w-bit 5
expect_code 2 llmq awq $M -o "$TMP/x" --text $TXT --w-bit 2
expect_err 2 'group' llmq awq $M -o "$TMP/x" --text $TXT --group 48
expect_code 2 llmq awq $M -o "$TMP/x" --text $TXT --n-grid 0
expect_code 2 llmq awq $M -o "$TMP/x" --text $TXT --samples abc
expect_err 2 'refusing to overwrite an input' llmq awq $M -o $M --text $TXT $FAST
expect_err 2 'refusing to overwrite an input' llmq awq $M -o $TXT --text $TXT $FAST
expect_err 2 'long enough|tokens' llmq awq $M -o "$TMP/x" --text $TXT --seqlen 60000 --samples 1
expect_err 3 'nope' llmq awq "$TMP/nope" -o "$TMP/x" --text $TXT
expect_err 3 'nope.txt' llmq awq $M -o "$TMP/x" --text "$TMP/nope.txt"
check "failed runs leave no output" test ! -e "$TMP/x"

# int4: quiet, a packed directory verify runs, the choices recorded
expect_code 0 llmq awq $M -o "$TMP/a4" --text $TXT $FAST
check "awq is quiet on success" test ! -s "$TMP/out"
for x in config.json tokenizer.json model.safetensors; do check "a4 has $x" test -f "$TMP/a4/$x"; done
expect_out '"weights_dtype":"int4-g128-asym"' llmq verify "$TMP/a4" --json
expect_out 'perplexity' llmq verify "$TMP/a4" --ids $M/reference/wikitext2_test_ids.bin --max-windows 1
check "metadata records the method" grep -aq '\\"method\\":\\"awq\\"' "$TMP/a4/model.safetensors"
check "metadata records per-layer ratios" grep -aq '\\"ratio\\":{\\"qkv\\"' "$TMP/a4/model.safetensors"
check "metadata records the calibration text digest" grep -aq 'calib_text_sha256' "$TMP/a4/model.safetensors"

# --json: one object with the per-layer losses
llmq awq $M -o "$TMP/j4" --text $TXT $FAST --json >"$TMP/j.json" 2>"$TMP/j.err"
check "--json is one line" test "$(wc -l <"$TMP/j.json")" -eq 1
check "--json has the scheme" grep -q '"scheme":"int4-g128-asym"' "$TMP/j.json"
check "--json has per-layer loss before/after" grep -q '"out_mse_rtn_awq":\[' "$TMP/j.json"
check "--json has time and peak RSS" grep -q '"peak_rss_bytes":' "$TMP/j.json"
check "--json reports no fallback" grep -q '"fallbacks":0' "$TMP/j.json"

# int3, symmetric, group 64, no clip
expect_out '"scheme":"int3-g128-asym"' llmq awq $M -o "$TMP/a3" --text $TXT $FAST --w-bit 3 --json
expect_out '"weights_dtype":"int3-g128-asym"' llmq verify "$TMP/a3" --json
expect_out 'perplexity' llmq verify "$TMP/a3" --ids $M/reference/wikitext2_test_ids.bin --max-windows 1
expect_out '"scheme":"int4-g64-sym"' llmq awq $M -o "$TMP/s64" --text $TXT $FAST --group 64 --sym --no-clip --json
expect_out '"clip":false' llmq awq $M -o "$TMP/nc" --text $TXT $FAST --no-clip --json
expect_out '"clip_qk":false' llmq awq $M -o "$TMP/cqk" --text $TXT $FAST --no-clip-qk --json

# --gptq: GPTQ's rounding on AWQ's grid, the same layout; the JSON records
# each linear's output loss on the grid by round to nearest and by GPTQ
expect_code 2 llmq awq $M -o "$TMP/x" --text $TXT $FAST --gptq --gptq-damp 0
expect_code 2 llmq awq $M -o "$TMP/x" --text $TXT $FAST --gptq --gptq-damp nan
expect_code 2 llmq awq $M -o "$TMP/x" --text $TXT $FAST --gptq --gptq-damp 11
llmq awq $M -o "$TMP/g4" --text $TXT $FAST --group 32 --gptq --json >"$TMP/g.json"
check "--gptq is recorded" grep -q '"gptq":true,"gptq_damp":0.01' "$TMP/g.json"
check "gptq lowers every linear's loss on the grid" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))["awq"]
bad = [(l["layer"], k, v) for l in d["layers"] for k, v in l["gptq_mse"].items() if not (0 < v[1] < v[0])]
sys.exit(1 if bad or len(d["layers"]) == 0 else 0)' "$TMP/g.json"
expect_out '"weights_dtype":"int4-g32-asym"' llmq verify "$TMP/g4" --json
# the grid is round to nearest's: in layer 0 (the same inputs either way;
# later layers see gptq's outputs) the scales and zero points are the plain
# run's, only codes differ
llmq awq $M -o "$TMP/g0" --text $TXT $FAST --group 32 >/dev/null
crc() {  # FILE TENSOR: its crc32 as the packed metadata records it
    python3 -c 'import json, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]
print(json.loads(json.loads(b[8:8 + n])["__metadata__"]["llmq.crc32"])[sys.argv[2]])' "$1" "$2"
}
for t in scales zeros; do
    a=$(crc "$TMP/g4/model.safetensors" model.layers.0.mlp.down_proj.$t); b=$(crc "$TMP/g0/model.safetensors" model.layers.0.mlp.down_proj.$t)
    check "gptq keeps the $t of awq's grid ($a, $b)" test -n "$a" -a "$a" = "$b"
done
a=$(crc "$TMP/g4/model.safetensors" model.layers.0.mlp.down_proj.qweight); b=$(crc "$TMP/g0/model.safetensors" model.layers.0.mlp.down_proj.qweight)
check "gptq changes the codes ($a, $b)" test -n "$a" -a "$a" != "$b"
expect_out '"scheme":"int3-g128-sym"' llmq awq $M -o "$TMP/g3" --text $TXT $FAST --w-bit 3 --sym --gptq --json
expect_out 'perplexity' llmq verify "$TMP/g3" --ids $M/reference/wikitext2_test_ids.bin --max-windows 1

# folding is exact: every linear kept float with the scales folded computes
# the source model's function (GQA v->o and q/k/v biases included)
expect_out '"linears_packed":0' llmq awq $M -o "$TMP/fold" --text $TXT $FAST --no-clip --skip '.*' --json
llmq verify $M --ids $M/reference/wikitext2_test_ids.bin --max-windows 2 --json >"$TMP/p0.json"
llmq verify "$TMP/fold" --ids $M/reference/wikitext2_test_ids.bin --max-windows 2 --json >"$TMP/p1.json"
check "folded float model has the source's perplexity" $TC relerr "$($TC json "$TMP/p1.json" perplexity)" "$($TC json "$TMP/p0.json" perplexity)" 1e-5
expect_err 2 'skip' llmq awq $M -o "$TMP/x" --text $TXT $FAST --skip '('

# deterministic for a seed; another seed gives other windows
llmq awq $M -o "$TMP/d" --text $TXT $FAST --seed 7 && mv "$TMP/d" "$TMP/d1"
llmq awq $M -o "$TMP/d" --text $TXT $FAST --seed 7
check "same seed, same bytes" cmp -s "$TMP/d/model.safetensors" "$TMP/d1/model.safetensors"
llmq awq $M -o "$TMP/d" --text $TXT $FAST --seed 8
check "another seed, other bytes" sh -c "! cmp -s $TMP/d/model.safetensors $TMP/d1/model.safetensors"

# a packed model is not a source; a non-finite weight is named
expect_err 5 'already a packed model' llmq awq "$TMP/a4" -o "$TMP/x" --text $TXT $FAST
cp -r $M "$TMP/nan"
$TC poke "$TMP/nan/model.safetensors" model.layers.1.mlp.up_proj.weight 77 7fc0
expect_err 7 "model.layers.1.mlp.up_proj.weight" llmq awq "$TMP/nan" -o "$TMP/x" --text $TXT $FAST
check "no temp files left" sh -c "! ls -a $TMP | grep -q tmp"
finish
