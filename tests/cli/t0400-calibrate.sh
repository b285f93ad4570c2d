#!/bin/sh
# llmq calibrate: statistics files, determinism, --inspect, error paths.
. "$(dirname "$0")/../lib.sh"
M=testdata/tiny-qwen2-gqa
TC=build/tools/tcheck
head -c 40000 "$SHARED/data/tinyshakespeare.txt" >"$TMP/cal.txt"
mkdir "$TMP/books"
head -c 20000 "$SHARED/data/tinyshakespeare.txt" >"$TMP/books/a.txt"
tail -c 20000 "$SHARED/data/tinyshakespeare.txt" >"$TMP/books/b.txt"

expect_code 0 llmq calibrate $M --text "$TMP/cal.txt" --samples 6 --seqlen 64 -o "$TMP/a.st"
check "calibrate is quiet on success" test ! -s "$TMP/out"
check "stats file written" test -s "$TMP/a.st"
expect_code 0 llmq calibrate $M --text "$TMP/cal.txt" --samples 6 --seqlen 64 -o "$TMP/b.st"
check "same seed: byte-identical stats" cmp -s "$TMP/a.st" "$TMP/b.st"
expect_code 0 llmq calibrate $M --text "$TMP/cal.txt" --samples 6 --seqlen 64 --seed 9 -o "$TMP/c.st"
check "other seed: other windows" sh -c "! cmp -s $TMP/a.st $TMP/c.st"
expect_code 0 llmq calibrate $M --text "$TMP/cal.txt" --samples 6 --seqlen 64 --threads 1 -o "$TMP/t1.st"
check "one thread gives the same bytes" cmp -s "$TMP/a.st" "$TMP/t1.st"
llmq calibrate $M --text "$TMP/books" --samples 5 --seqlen 32 --keep 16 -o "$TMP/d.st" --json >"$TMP/d.json"
check "directory of texts: 2 files" test "$($TC json "$TMP/d.json" text_files)" = 2
check "tokens = samples x seqlen" test "$($TC json "$TMP/d.json" tokens)" = 160
# a FIFO in the directory is not a text file: skipped, not read (it would block)
mkfifo "$TMP/books/zz.fifo"
TO=""; command -v timeout >/dev/null 2>&1 && TO="timeout 60"
expect_code 0 $TO "$LLMQ" calibrate $M --text "$TMP/books" --samples 5 --seqlen 32 --keep 16 -o "$TMP/f.st" --json
check "a FIFO in a directory of texts is skipped" test "$($TC json "$TMP/out" text_files)" = 2
rm "$TMP/books/zz.fifo"
check "--json reports peak_rss_bytes" grep -q '"peak_rss_bytes":[1-9]' "$TMP/d.json"
check "--json reports the model digest" grep -Eq '"model_digest":"[0-9a-f]{64}"' "$TMP/d.json"

# --inspect
expect_out '^layer +site +median' llmq calibrate --inspect "$TMP/a.st"
expect_out '^3 +down ' llmq calibrate --inspect "$TMP/a.st" --top 2
expect_out '"sites":\[\{"layer":0,"site":"qkv"' llmq calibrate --inspect "$TMP/a.st" --json
# metadata is read as strictly as the tensors: a seed that is not a number
cp "$TMP/a.st" "$TMP/seed.st"
off=$(grep -abo '"seed":"' "$TMP/seed.st" | head -1 | cut -d: -f1)
printf x | dd of="$TMP/seed.st" bs=1 seek=$((off + 8)) conv=notrunc 2>/dev/null
expect_err 4 "seed.st: statistics metadata 'seed' = 'x' is not an integer" llmq calibrate --inspect "$TMP/seed.st"
expect_out '"samples":6' llmq calibrate --inspect "$TMP/a.st" --json

# errors
expect_err 2 'missing --text' llmq calibrate $M -o "$TMP/x.st"
expect_err 2 'missing -o' llmq calibrate $M --text "$TMP/cal.txt"
expect_err 2 'missing MODEL' llmq calibrate --text "$TMP/cal.txt" -o "$TMP/x.st"
expect_err 2 'refusing to overwrite an input' llmq calibrate $M --text "$TMP/cal.txt" -o "$TMP/cal.txt"
expect_err 2 'refusing to overwrite an input' llmq calibrate $M --text "$TMP/cal.txt" -o $M/model.safetensors
expect_code 2 llmq calibrate $M --text "$TMP/cal.txt" -o "$TMP/x.st" --samples 0
expect_code 2 llmq calibrate $M --text "$TMP/cal.txt" -o "$TMP/x.st" --seqlen 1
expect_err 2 'integer' llmq calibrate $M --text "$TMP/cal.txt" -o "$TMP/x.st" --seed 1.5
expect_code 2 llmq calibrate $M --text "$TMP/cal.txt" -o "$TMP/x.st" --seed -1
expect_code 2 llmq calibrate $M --text "$TMP/cal.txt" --seqlen 100000 -o "$TMP/x.st"
expect_code 3 llmq calibrate "$TMP/nope" --text "$TMP/cal.txt" -o "$TMP/x.st"
expect_err 3 'nope.txt' llmq calibrate $M --text "$TMP/nope.txt" -o "$TMP/x.st"
expect_err 2 'takes no MODEL' llmq calibrate $M --inspect "$TMP/a.st"
expect_err 4 'not an llmq statistics file' llmq calibrate --inspect $M/model.safetensors
expect_code 3 llmq calibrate --inspect "$TMP/nope.st"
head -c 1000 "$TMP/a.st" >"$TMP/trunc.st"
expect_code 4 llmq calibrate --inspect "$TMP/trunc.st"
check "failed runs leave no output" test ! -e "$TMP/x.st"
expect_code 0 llmq calibrate --help

# --imatrix-out: llama.cpp's GGUF importance matrix, read back by an
# independent reader that follows llama.cpp's loader (tests/tools/imatrix-check.py)
IC="python3 tests/tools/imatrix-check.py"
expect_code 0 llmq calibrate $M --text "$TMP/cal.txt" --samples 6 --seqlen 64 -o "$TMP/i.st" --imatrix-out "$TMP/i.imatrix"
check "stats of a run with --imatrix-out are unchanged" cmp -s "$TMP/a.st" "$TMP/i.st"
expect_out '^ok: 28 entries match' $IC "$TMP/i.imatrix" "$TMP/i.st"
expect_out '^datasets \[.*cal.txt.\] chunks 6 x 64$' $IC "$TMP/i.imatrix"
# q/k/v share their input, gate/up theirs: the same values under each name
$IC "$TMP/i.imatrix" >"$TMP/i.lst"
check "attn_q and attn_v carry the same values" test "$(grep '^blk.2.attn_q' "$TMP/i.lst" | cut -d' ' -f2-)" = \
    "$(grep '^blk.2.attn_v' "$TMP/i.lst" | cut -d' ' -f2-)"
check "ffn_down has intermediate (768) channels, 384 tokens" grep -q '^blk.0.ffn_down.weight 768 384 ' "$TMP/i.lst"
# the checker is not blind: stats of other windows do not match
check "the checker refuses another run's statistics" sh -c "! $IC $TMP/i.imatrix $TMP/c.st >/dev/null 2>&1"
expect_code 0 llmq calibrate $M --text "$TMP/cal.txt" --samples 6 --seqlen 64 --imatrix-out "$TMP/only.imatrix"
check "--imatrix-out alone: no -o needed, same bytes" cmp -s "$TMP/i.imatrix" "$TMP/only.imatrix"
llmq calibrate $M --text "$TMP/cal.txt" --samples 6 --seqlen 64 --imatrix-out - >"$TMP/stdout.imatrix" 2>"$TMP/err"
check "--imatrix-out - writes the same bytes to stdout" cmp -s "$TMP/i.imatrix" "$TMP/stdout.imatrix"
expect_out '"imatrix":"' llmq calibrate $M --text "$TMP/cal.txt" --samples 2 --seqlen 16 --imatrix-out "$TMP/j.imatrix" --json
expect_err 2 'missing -o FILE or --imatrix-out FILE' llmq calibrate $M --text "$TMP/cal.txt"
expect_err 2 'both write stdout' llmq calibrate $M --text "$TMP/cal.txt" --imatrix-out - --json
expect_err 2 'both write stdout' llmq calibrate $M --text "$TMP/cal.txt" --imatrix-out - -o -
expect_err 2 'given as both -o and --imatrix-out' llmq calibrate $M --text "$TMP/cal.txt" -o "$TMP/y.st" --imatrix-out "$TMP/y.st"
expect_err 2 'refusing to overwrite an input' llmq calibrate $M --text "$TMP/cal.txt" --imatrix-out "$TMP/cal.txt"
expect_err 2 'refusing to overwrite an input' llmq calibrate $M --text "$TMP/cal.txt" --imatrix-out $M/model.safetensors
expect_err 2 "option '--imatrix-out' needs" llmq calibrate $M --text "$TMP/cal.txt" --imatrix-out ''
expect_err 3 'nodir/x.imatrix: cannot create' llmq calibrate $M --text "$TMP/cal.txt" --samples 2 --seqlen 16 --imatrix-out "$TMP/nodir/x.imatrix"
expect_err 3 'cal.txt/x.imatrix: ' llmq calibrate $M --text "$TMP/cal.txt" --samples 2 --seqlen 16 --imatrix-out "$TMP/cal.txt/x.imatrix"
check "failed --imatrix-out runs leave no file" test ! -e "$TMP/y.st" -a ! -e "$TMP/nodir"
finish
