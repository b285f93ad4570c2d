#!/bin/sh
# Outputs of every subcommand: none may replace a file the command reads;
# a device, FIFO or dangling link is refused, a link is written through;
# the files of a model must be regular files, text and ids may be streams.
. "$(dirname "$0")/../lib.sh"
M=testdata/tiny-qwen2-gqa
TXT=README.md
# a cap on commands that hung before the fix (a FIFO as a model file)
TO=""
command -v timeout >/dev/null 2>&1 && TO="timeout 60"

# a private copy of the model, read-only, inside a parent directory
mkdir "$TMP/p"
cp -r $M "$TMP/p/m"
W="$TMP/p/m"
rm -rf "$W/reference"
chmod a-w "$W"/*
sums() { (cd "$W" && cksum config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json); }
sums >"$TMP/sums.before"
head -c 20000 "$SHARED/data/tinyshakespeare.txt" >"$TMP/cal.txt"
llmq tokenize $W "$TMP/cal.txt" --ids-out "$TMP/ids.bin"
llmq tokenize $W $TXT --ids-out "$TMP/ids.ref"
llmq calibrate $W --text "$TMP/cal.txt" --samples 2 --seqlen 16 -o "$TMP/s.st"
V="--ctx 8 --max-windows 1"
REF='refusing to overwrite an input'

# 1. an output that names an input: usage error, before any work
for f in model.safetensors config.json tokenizer.json tokenizer_config.json generation_config.json; do
    expect_err 2 "$W/$f: $REF" llmq verify $W --text $TXT $V --logits-out "$W/$f"
    expect_err 2 "$REF" llmq verify $W --text $TXT $V --kld-save "$W/$f"
    expect_err 2 "$REF" llmq tokenize $W $TXT --ids-out "$W/$f"
    expect_err 2 "$REF" llmq calibrate $W --text "$TMP/cal.txt" --samples 1 --seqlen 8 -o "$W/$f"
done
# a model file name the model would read, not there yet
expect_err 2 "$REF" llmq verify $W --text $TXT $V --logits-out "$W/special_tokens_map.json"
expect_err 2 "$REF" llmq verify $W --text $TXT $V --kld-save "$W/model.safetensors.index.json"
# through another spelling of the path, or a link
expect_err 2 "$REF" llmq verify $W --text $TXT $V --logits-out "$TMP/p/./m/../m/config.json"
ln -s "$W/tokenizer.json" "$TMP/toklink"
expect_err 2 "$REF" llmq verify $W --text $TXT $V --kld-save "$TMP/toklink"
ln -s m "$TMP/p/mlink"
expect_err 2 "$REF" llmq tokenize "$TMP/p/mlink" $TXT --ids-out "$TMP/p/mlink/tokenizer_config.json"
# the model named by its file, or by its tokenizer.json
expect_err 2 "$REF" llmq verify "$W/model.safetensors" --text $TXT $V --logits-out "$W/config.json"
expect_err 2 "$REF" llmq tokenize "$W/tokenizer.json" $TXT --ids-out "$W/tokenizer_config.json"
# the other inputs: --text, --ids, --kld, --stats
expect_err 2 "$REF" llmq verify $W --ids "$TMP/ids.bin" $V --logits-out "$TMP/ids.bin"
expect_err 2 "$REF" llmq verify $W --text "$TMP/cal.txt" $V --kld-save "$TMP/cal.txt"
llmq verify $W --ids "$TMP/ids.bin" $V --kld-save "$TMP/base.kld" >/dev/null
expect_err 2 "$REF" llmq verify $W --ids "$TMP/ids.bin" $V --kld "$TMP/base.kld" --logits-out "$TMP/base.kld"
expect_err 2 "$REF" llmq verify $W --ids "$TMP/ids.bin" $V --act int8-static --stats "$TMP/s.st" --logits-out "$TMP/s.st"
# a text directory: its files are inputs
mkdir "$TMP/books"
cp "$TMP/cal.txt" "$TMP/books/a.txt"
expect_err 2 "$REF" llmq calibrate $W --text "$TMP/books" --samples 1 --seqlen 8 -o "$TMP/books/a.txt"
# smooth --stats-out: not the source's files, not the stats, not the new DIR's files
expect_err 2 "$REF" llmq smooth $W --stats "$TMP/s.st" --alpha 0.5 -o "$TMP/sm" --stats-out "$W/model.safetensors"
expect_err 2 "sm/model.safetensors: is the output directory" llmq smooth $W --stats "$TMP/s.st" --alpha 0.5 -o "$TMP/sm" --stats-out "$TMP/sm/model.safetensors"
expect_err 2 "$REF" llmq uptrain-gqa $W --kv-heads 1 --pool mean --steps 0 -o "$TMP/up" --state "$W/model.safetensors"
check "refused runs leave no output" test ! -e "$TMP/sm" -a ! -e "$TMP/up"
# an output directory may not be, or hold, an input: it is replaced whole
for d in "$W" "$W/" "$TMP/p" "$TMP/p/mlink"; do
    expect_err 2 "$REF" llmq pack $W -o "$d"
    expect_err 2 "$REF" llmq smooth $W --stats "$TMP/s.st" --alpha 0.5 -o "$d"
    expect_err 2 "$REF" llmq uptrain-gqa $W --kv-heads 1 --pool mean --steps 0 -o "$d"
done
expect_err 2 "$REF" llmq awq $W -o "$TMP/p" --text $TXT --samples 1 --seqlen 8
expect_err 2 "$REF" llmq awq $W -o "$TMP/books" --text "$TMP/books/a.txt" --samples 1 --seqlen 8
cp "$TMP/s.st" "$TMP/books/s.st"
expect_err 2 "$REF" llmq smooth $W --stats "$TMP/books/s.st" --alpha 0.5 -o "$TMP/books"
sums >"$TMP/sums.after"
check "the model's files are untouched" cmp -s "$TMP/sums.before" "$TMP/sums.after"
check "the text directory is untouched" cmp -s "$TMP/cal.txt" "$TMP/books/a.txt"
expect_out '^ok ' llmq verify $W
# what is not an input may be written beside the model
chmod u+w "$W"
expect_code 0 llmq verify $W --ids "$TMP/ids.bin" $V --logits-out "$W/logits.safetensors"
check "logits beside the model" test -s "$W/logits.safetensors"
rm -f "$W/logits.safetensors"

# 2. output paths that exist and are not regular files
mkfifo "$TMP/fifo"
expect_err 2 "$TMP/fifo: is a FIFO, not a regular file; llmq writes outputs atomically" \
    llmq tokenize $W $TXT --ids-out "$TMP/fifo"
check "the FIFO is still a FIFO" test -p "$TMP/fifo"
expect_err 2 'not a regular file' llmq verify $W --ids "$TMP/ids.bin" $V --logits-out "$TMP/fifo"
expect_err 2 'not a regular file' llmq calibrate $W --text "$TMP/cal.txt" --samples 1 --seqlen 8 -o "$TMP/fifo"
check "the FIFO is still a FIFO" test -p "$TMP/fifo"
expect_err 2 'exists and is not a directory' llmq pack $W -o "$TMP/fifo"
check "the FIFO is still a FIFO" test -p "$TMP/fifo"
mkdir "$TMP/adir"
# an existing directory that no llmq run wrote is not replaced
echo notes >"$TMP/adir/notes.txt"
expect_err 2 'adir: exists and is not a model directory' llmq pack $W -o "$TMP/adir"
expect_err 2 'not a model directory' llmq smooth $W --stats "$TMP/s.st" --alpha 0.5 -o "$TMP/adir"
expect_err 2 'not a model directory' llmq uptrain-gqa $W --kv-heads 1 --pool mean --steps 0 -o "$TMP/adir"
check "its files are kept" test -f "$TMP/adir/notes.txt"
rm "$TMP/adir/notes.txt"
expect_err 2 'is a directory, not a regular file' llmq tokenize $W $TXT --ids-out "$TMP/adir"
# a character device: as root one made here (a build without the check
# would replace /dev/null), otherwise /dev/null, which only root could replace
if [ "$(id -u)" = 0 ]; then
    if mknod "$TMP/null" c 1 3 2>/dev/null; then
        expect_err 2 'null: is a character device' llmq tokenize $W $TXT --ids-out "$TMP/null"
        check "the device node is still a device" test -c "$TMP/null"
    fi
else
    expect_err 2 '/dev/null: is a character device' llmq tokenize $W $TXT --ids-out /dev/null
fi
# "-" is stdout
check "--ids-out - writes stdout" sh -c "$LLMQ tokenize $W $TXT --ids-out - | cmp -s - '$TMP/ids.ref'"
# a link is written through: the file it names is replaced, the link stays
echo old >"$TMP/target.bin"
ln -s target.bin "$TMP/link.bin"
expect_code 0 llmq tokenize $W $TXT --ids-out "$TMP/link.bin"
check "the link is still a link" test -L "$TMP/link.bin"
check "its target holds the ids" cmp -s "$TMP/target.bin" "$TMP/ids.ref"
# a dangling link is refused, and nothing is created where it points
ln -s nowhere.bin "$TMP/dangle.bin"
expect_err 2 'dangling symbolic link' llmq tokenize $W $TXT --ids-out "$TMP/dangle.bin"
check "nothing created" test ! -e "$TMP/nowhere.bin"
# an output directory through a link: the directory it names is replaced
mkdir "$TMP/realout"
ln -s realout "$TMP/outlink"
expect_code 0 llmq pack $W -o "$TMP/outlink" --format int8
check "the directory link is still a link" test -L "$TMP/outlink"
check "the packed model is in its target" test -f "$TMP/realout/model.safetensors"
expect_out '^ok ' llmq verify "$TMP/outlink"
check "no temp files left" sh -c "! ls -a '$TMP' | grep -q tmp"

# 3. the files of a model must be regular files
mk() { rm -rf "$TMP/bad"; cp -r "$W" "$TMP/bad"; chmod -R u+w "$TMP/bad"; }
mk; ln -sf /dev/zero "$TMP/bad/config.json"
expect_err 3 'config.json: is a character device, not a regular file' \
    sh -c "ulimit -v 4000000; exec $TO $LLMQ verify '$TMP/bad'"
mk; rm "$TMP/bad/config.json"; mkfifo "$TMP/bad/config.json"
expect_err 3 'config.json: is a FIFO, not a regular file' $TO "$LLMQ" verify "$TMP/bad"
mk; rm "$TMP/bad/model.safetensors"; mkfifo "$TMP/bad/model.safetensors"
expect_err 3 'model.safetensors: is a FIFO' $TO "$LLMQ" verify "$TMP/bad"
mk; ln -sf /dev/zero "$TMP/bad/tokenizer.json"
expect_err 3 'tokenizer.json: is a character device' \
    sh -c "ulimit -v 4000000; exec $TO $LLMQ tokenize '$TMP/bad' $TXT"
mk; ln -sf /dev/zero "$TMP/bad/tokenizer_config.json"
expect_err 3 'tokenizer_config.json: is a character device' \
    sh -c "ulimit -v 4000000; exec $TO $LLMQ tokenize '$TMP/bad' $TXT"
expect_err 3 'fifo: is a FIFO' $TO "$LLMQ" verify $W --ids "$TMP/ids.bin" $V --act int8-static --stats "$TMP/fifo"
# a symbolic link to a regular file is fine
mk; rm "$TMP/bad/config.json"; ln -s "$W/config.json" "$TMP/bad/config.json"
expect_out '^ok ' llmq verify "$TMP/bad"
# text and ids may be streams: stdin, a pipe, a FIFO
check "text from a FIFO" sh -c "$TO cat $TXT >'$TMP/fifo' & $TO $LLMQ tokenize $W '$TMP/fifo' --ids-out '$TMP/ids.fifo'; wait; cmp -s '$TMP/ids.fifo' '$TMP/ids.ref'"
check "text from stdin" sh -c "cat $TXT | $LLMQ tokenize $W - --ids-out '$TMP/ids.stdin' && cmp -s '$TMP/ids.stdin' '$TMP/ids.ref'"
expect_out 'perplexity' sh -c "cat '$TMP/ids.bin' | $LLMQ verify $W --ids - $V"
if command -v bash >/dev/null 2>&1; then
    expect_out 'perplexity' bash -c "$LLMQ verify $W --text <(cat $TXT) $V"
fi
# an endless stream is cut off at 4 GiB, with one line (slow: reads 4 GiB)
if [ "${LLMQ_QUICK:-0}" != 1 ]; then
    expect_err 3 '/dev/zero: more than 4294967296 bytes' \
        sh -c "ulimit -v 8000000; exec $TO $LLMQ tokenize $W /dev/zero"
fi
finish
