#!/bin/sh
# Hostile JSON inputs (config.json, tokenizer.json, tokenizer_config.json):
# read as strictly as Python's json, refused with the right exit status and
# one clean stderr line that names the file.
. "$(dirname "$0")/../lib.sh"
M=testdata/tiny-qwen2-gqa

# expect_line N PATTERN cmd...: status N, stderr exactly one line matching
# PATTERN, with no control bytes but its newline
expect_line() {
    want=$1; pat=$2; shift 2
    "$@" >"$TMP/out" 2>"$TMP/err"
    got=$?
    if [ "$got" -eq "$want" ] && grep -Eq -- "$pat" "$TMP/err" && [ "$(wc -l <"$TMP/err")" -eq 1 ] &&
       [ "$(tr -d '\n' <"$TMP/err" | tr -d '\040-\176\200-\377' | wc -c)" -eq 0 ]; then ok; else
        not_ok "'$*' exited $got (expected $want), stderr is not one clean line matching /$pat/"
        head -5 "$TMP/err" | od -c | head -8 | sed 's/^/    stderr: /'
    fi
}

# a model directory with its own config.json and tokenizer files
mkmodel() {
    rm -rf "$TMP/$1"
    mkdir "$TMP/$1"
    ln -s "$PWD/$M/model.safetensors" "$TMP/$1/model.safetensors"
    cp $M/config.json $M/tokenizer.json $M/tokenizer_config.json "$TMP/$1/"
}

printf 'The history' >"$TMP/p.txt"

# config.json
mkmodel trail
printf ' garbage {"hidden_size": 1}' >>"$TMP/trail/config.json"
expect_line 4 'trail/config.json: trailing bytes after the JSON value at byte 829$' llmq verify "$TMP/trail"
mkmodel dup
sed 's/"hidden_size": 256,/"hidden_size": 256, "hidden_size": 128,/' $M/config.json >"$TMP/dup/config.json"
expect_line 4 "dup/config.json: duplicate key 'hidden_size' in the top-level object" llmq verify "$TMP/dup"
mkmodel raw
sed 's/"silu"/"si\
lu"/' $M/config.json >"$TMP/raw/config.json"
expect_line 4 'raw/config.json: raw control character 0x0a in a string at byte' llmq verify "$TMP/raw"
mkmodel utf8
sed 's/"silu"/"si\o377lu"/' $M/config.json >"$TMP/utf8/config.json"
expect_line 4 'utf8/config.json: invalid UTF-8 at byte' llmq verify "$TMP/utf8"
mkmodel esc
sed 's/"Qwen2ForCausalLM"/"Qwen2\\u001b[2J\\nForCausalLM"/' $M/config.json >"$TMP/esc/config.json"
expect_line 5 'architecture "Qwen2\\x1b\[2J\\nForCausalLM" is not supported' llmq verify "$TMP/esc"
mkmodel act
sed 's/"silu"/"s\\rlu"/' $M/config.json >"$TMP/act/config.json"
expect_line 5 'hidden_act "s\\rlu" is not supported' llmq verify "$TMP/act"
mkmodel big
sed 's/"hidden_size": 256/"hidden_size": 1e300/' $M/config.json >"$TMP/big/config.json"
expect_line 4 '"hidden_size" = 1e\+300 is out of range' llmq verify "$TMP/big"

# tokenizer.json and tokenizer_config.json
mkmodel tok
printf ' garbage {"model": 1}' >>"$TMP/tok/tokenizer.json"
expect_line 4 'tok/tokenizer.json: trailing bytes after the JSON value at byte' llmq tokenize "$TMP/tok" "$TMP/p.txt"
mkmodel tokcfg
printf '{"bos_token": "<|endoftext|>"} {"bos_token": "x"}' >"$TMP/tokcfg/tokenizer_config.json"
expect_line 4 'tokcfg/tokenizer_config.json: trailing bytes after the JSON value at byte 31$' \
    llmq tokenize "$TMP/tokcfg" "$TMP/p.txt"
mkdir "$TMP/t"
printf '{"model":{"vocab":{"a":0,"b\\r\\n":1},"merges":["a b\\r\\n"]}}' >"$TMP/t/tokenizer.json"
expect_line 4 "t/tokenizer.json: 'model.merges\[0\]': token 'ab\\\\r\\\\n' is not in the vocab" \
    llmq tokenize "$TMP/t" "$TMP/p.txt"
printf '{"model":{"vocab":{"a":0,"a":1},"merges":[]}}' >"$TMP/t/tokenizer.json"
expect_line 4 "t/tokenizer.json: duplicate key 'a' in 'model.vocab'" llmq tokenize "$TMP/t" "$TMP/p.txt"
printf '{"model":{"vocab":{"a":0},"merges":[],"unk_token":"<unk>"}}' >"$TMP/t/tokenizer.json"
printf 'ab' >"$TMP/ab.txt"
expect_line 4 "t/tokenizer.json: 'model.unk_token': '<unk>' is not in the vocab" llmq tokenize "$TMP/t" "$TMP/ab.txt"
# six chained Replace e -> e x 64 would make 64^6 bytes of one "e"
e64=eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee
r='{"type":"Replace","pattern":{"String":"e"},"content":"'$e64'"}'
printf '{"normalizer":{"type":"Sequence","normalizers":[%s,%s,%s,%s,%s,%s]},"model":{"vocab":{"e":0},"merges":[]}}' \
    "$r" "$r" "$r" "$r" "$r" "$r" >"$TMP/t/tokenizer.json"
printf 'e' >"$TMP/e.txt"
expect_line 5 "t/tokenizer.json: 'normalizer': a 1-byte piece of text grows past 4160 bytes" \
    llmq tokenize "$TMP/t" "$TMP/e.txt"
finish
