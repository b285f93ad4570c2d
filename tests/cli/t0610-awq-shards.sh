#!/bin/sh
# llmq awq --propagate fp --layers A:B and llmq merge: shards searched as
# separate processes join into the bytes of a single run; every way a set
# of shards can fail to add up is refused with one line naming the file.
. "$(dirname "$0")/../lib.sh"
M=testdata/tiny-qwen2-gqa
TXT=README.md
FAST="--text $TXT --samples 2 --seqlen 64 --search-tokens 96 --n-grid 4 --loss-windows 1 --propagate fp"
S="$TMP/shards"
mkdir -p "$S"

expect_out 'merge' llmq merge --help
expect_out 'layers' llmq awq --help
# usage errors
expect_err 2 'needs --propagate fp' llmq awq $M -o "$S/x" --text $TXT --layers 0:2
expect_err 2 'A:B' llmq awq $M -o "$S/x" $FAST --layers 2
expect_err 2 'A:B' llmq awq $M -o "$S/x" $FAST --layers 2:2
expect_err 2 'A:B' llmq awq $M -o "$S/x" $FAST --layers -1:2
expect_err 2 'not a range' llmq awq $M -o "$S/x" $FAST --layers 2:9
expect_err 2 'stdout' llmq awq $M -o - $FAST --layers 0:1
expect_err 2 'missing -o' llmq merge $M "$S/x"
expect_code 2 llmq merge $M -o "$TMP/m"
check "failed shards leave no file" test ! -e "$S/x"

# the single run and four shards (one with the option spelt --layers=)
expect_code 0 llmq awq $M -o "$TMP/o" $FAST
check "single run, float propagation, quiet" test ! -s "$TMP/out"
check "metadata records the propagation" grep -aq '\\"propagate\\":\\"fp\\"' "$TMP/o/model.safetensors"
mv "$TMP/o" "$TMP/single"
expect_code 0 llmq awq $M -o "$S/p0" $FAST --layers 0:1
expect_code 0 llmq awq $M --layers=1:2 -o "$S/p1" $FAST
expect_out '"layers":"2:3"' llmq awq $M -o "$S/p2" $FAST --layers 2:3 --json
expect_code 0 llmq awq $M -o "$S/p3" $FAST --layers 3:4
# shards in any order give the single run's bytes, llmq.command included
expect_code 0 llmq merge $M "$S/p3" "$S/p1" "$S/p0" "$S/p2" -o "$TMP/o"
check "merge is quiet on success" test ! -s "$TMP/out"
check "merged = single run, byte for byte" cmp -s "$TMP/single/model.safetensors" "$TMP/o/model.safetensors"
check "merged config.json" cmp -s "$TMP/single/config.json" "$TMP/o/config.json"
expect_out '"weights_dtype":"int4-g128-asym"' llmq verify "$TMP/o" --json
mv "$TMP/o" "$TMP/merged4"
expect_out '"linears_packed":' llmq merge $M "$S/p0" "$S/p1" "$S/p2" "$S/p3" -o "$TMP/mj" --json

# the loss windows are only measured, never propagated: without them the
# tensors are the same (float propagation keeps the float outputs)
expect_code 0 llmq awq $M -o "$TMP/nl" $(echo "$FAST" | sed 's/--loss-windows 1/--loss-windows 0/')
check "--loss-windows 0: same tensors" python3 - "$TMP/single/model.safetensors" "$TMP/nl/model.safetensors" <<'PY'
import json, struct, sys
def tensors(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n]); h.pop('__metadata__', None)
    return {k: b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]] for k, v in h.items()}
sys.exit(0 if tensors(sys.argv[1]) == tensors(sys.argv[2]) else 1)
PY

# GPTQ codes travel in the shards too
# (the single run with --json: not recorded, the bytes are the same)
expect_out '"awq":' llmq awq $M -o "$TMP/o" $FAST --gptq --sym --group 32 --json
mv "$TMP/o" "$TMP/gsingle"
expect_code 0 llmq awq $M -o "$S/g0" $FAST --gptq --sym --group 32 --layers 0:3
expect_code 0 llmq awq $M -o "$S/g1" $FAST --gptq --sym --group 32 --layers 3:4
expect_code 0 llmq merge $M "$S/g0" "$S/g1" -o "$TMP/o"
check "gptq: merged = single run" cmp -s "$TMP/gsingle/model.safetensors" "$TMP/o/model.safetensors"

# shards that do not add up
expect_err 4 'no shard holds layer 3' llmq merge $M "$S/p0" "$S/p1" "$S/p2" -o "$TMP/bad"
expect_err 4 'layer 0 is also in' llmq merge $M "$S/p0" "$S/p0" "$S/p1" "$S/p2" "$S/p3" -o "$TMP/bad"
expect_err 4 'another awq run' llmq merge $M "$S/g0" "$S/p3" -o "$TMP/bad"
expect_err 4 'not an llmq awq shard' llmq merge $M $M/model.safetensors -o "$TMP/bad"
expect_err 4 'calib.txt' llmq merge $M testdata/calib.txt -o "$TMP/bad"
expect_err 3 'nope' llmq merge $M "$TMP/nope" -o "$TMP/bad"
expect_err 2 'refusing to overwrite an input' llmq merge $M "$S/p0" "$S/p1" "$S/p2" "$S/p3" -o "$S/p0"
expect_err 2 'refusing to overwrite an input' llmq merge $M "$S/p0" "$S/p1" "$S/p2" "$S/p3" -o $M
# another model (same shapes, one weight changed): refused by the digest
cp -r $M "$TMP/m2"
python3 - "$TMP/m2/model.safetensors" <<'PY'
import sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); b[-1] ^= 1; open(p, 'wb').write(b)
PY
expect_err 4 'another model' llmq merge "$TMP/m2" "$S/p0" "$S/p1" "$S/p2" "$S/p3" -o "$TMP/bad"
# a shard whose scale was tampered with to zero
python3 - "$S/p1" "$TMP/p1bad" <<'PY'
import json, struct, sys
b = bytearray(open(sys.argv[1], 'rb').read()); n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n]); t = h['layers.1.s.qkv']; o = 8 + n + t['data_offsets'][0]
b[o:o + 4] = struct.pack('<f', 0.0); open(sys.argv[2], 'wb').write(b)
PY
expect_err 4 'not finite and positive' llmq merge $M "$S/p0" "$TMP/p1bad" "$S/p2" "$S/p3" -o "$TMP/bad"
check "failed merges leave no output" test ! -e "$TMP/bad"
# a packed model is not a merge source
expect_err 5 'packed' llmq merge "$TMP/single" "$S/p0" -o "$TMP/bad"
finish
