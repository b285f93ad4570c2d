#!/bin/sh
# llmq calibrate --layers A:B and llmq merge: statistics of layer ranges
# computed as separate processes join into the bytes of a single run; a
# shard is refused wherever whole statistics are needed, and every way a
# set of shards can fail to add up is refused with one line naming the file.
. "$(dirname "$0")/../lib.sh"
M=testdata/tiny-qwen2-gqa
TXT=README.md
FAST="--text $TXT --samples 3 --seqlen 64 --keep 16"
S="$TMP/cshards"
mkdir -p "$S"

expect_out 'layers A:B' llmq calibrate --help
expect_out 'calibrate --layers' llmq merge --help
# usage errors
expect_err 2 'A:B' llmq calibrate $M $FAST -o "$S/x" --layers 2
expect_err 2 'A:B' llmq calibrate $M $FAST -o "$S/x" --layers 3:3
expect_err 2 'A:B' llmq calibrate $M $FAST -o "$S/x" --layers 2:1
expect_err 2 'A:B' llmq calibrate $M $FAST -o "$S/x" --layers a:b
expect_err 2 'has 4 layers' llmq calibrate $M $FAST -o "$S/x" --layers 2:9
expect_err 2 'needs every layer' llmq calibrate $M $FAST --imatrix-out "$S/x" --layers 0:2
check "failed shards leave no file" test ! -e "$S/x"

# the single run and three shards
expect_code 0 llmq calibrate $M $FAST -o "$TMP/single.st"
expect_code 0 llmq calibrate $M $FAST -o "$S/c0" --layers 0:1
check "a shard is written quietly" test ! -s "$TMP/out"
expect_out '"layers":"1:3"' llmq calibrate $M $FAST -o "$S/c1" --layers=1:3 --json
expect_code 0 llmq calibrate $M $FAST -o "$S/c2" --layers 3:4
check "a shard holds its layers only" sh -c "! grep -aq 'layers.0.qkv' '$S/c1' && grep -aq 'layers.1.qkv' '$S/c1'"
check "a shard names its range" grep -aq '"layers":"1:3"' "$S/c1"
# shards in any order give the single run's bytes
expect_code 0 llmq merge $M "$S/c2" "$S/c0" "$S/c1" -o "$TMP/merged.st"
check "merge is quiet on success" test ! -s "$TMP/out"
check "merged = single run, byte for byte" cmp -s "$TMP/single.st" "$TMP/merged.st"
expect_out '"shards":3' llmq merge $M "$S/c0" "$S/c1" "$S/c2" -o "$TMP/merged2.st" --json
check "merged again, same bytes" cmp -s "$TMP/single.st" "$TMP/merged2.st"
# merged statistics work where the single run's do
expect_code 0 llmq smooth $M --stats "$TMP/merged.st" --alpha 0.5 -o "$TMP/sm"

# a shard is not whole statistics
expect_err 2 'holds layers 1:3 only' llmq smooth $M --stats "$S/c1" -o "$TMP/sm2"
expect_err 2 'join the shards with llmq merge' llmq verify $M --text $TXT --max-windows 1 --act int8-static --stats "$S/c0"
expect_err 2 'holds layers 0:1 only' llmq calibrate --inspect "$S/c0"
# sets that do not add up
expect_err 4 'layer 3 is in none' llmq merge $M "$S/c0" "$S/c1" -o "$TMP/bad.st"
expect_err 4 "layer 1 is also in $S/c1" llmq merge $M "$S/c0" "$S/c1" "$S/c1" "$S/c2" -o "$TMP/bad.st"
expect_err 4 'holds every layer already' llmq merge $M "$TMP/single.st" -o "$TMP/bad.st"
expect_code 0 llmq calibrate $M --text $TXT --samples 2 --seqlen 64 --keep 16 -o "$S/o2" --layers 0:1
expect_err 4 "$S/c1: from another calibrate run" llmq merge $M "$S/o2" "$S/c1" "$S/c2" -o "$TMP/bad.st"
expect_code 0 llmq calibrate $M $FAST --seed 7 -o "$S/o3" --layers 3:4
expect_err 4 "$S/o3: from another calibrate run" llmq merge $M "$S/c0" "$S/c1" "$S/o3" -o "$TMP/bad.st"
expect_err 4 'computed on another model' llmq merge "$TMP/sm" "$S/c0" "$S/c1" "$S/c2" -o "$TMP/bad.st"
check "refused merges leave no file" test ! -e "$TMP/bad.st"
cp "$S/c1" "$TMP/c1.copy"
expect_err 2 'input' llmq merge $M "$S/c0" "$S/c1" "$S/c2" -o "$S/c1"
check "merge never overwrites a shard" cmp -s "$S/c1" "$TMP/c1.copy"
# a corrupted range in a shard's metadata
sed 's/"layers":"1:3"/"layers":"3:1"/' "$S/c1" > "$S/bad"
expect_err 4 "is not a shard's range" llmq merge $M "$S/c0" "$S/bad" "$S/c2" -o "$TMP/bad.st"
finish
