#!/bin/sh
# llmq tokenize: text and binary output, stdin, error paths.
. "$(dirname "$0")/../lib.sh"
M=testdata/tiny-qwen2-gqa

printf 'The history of the city' >"$TMP/p.txt"
expect_out '^506$' llmq tokenize $M "$TMP/p.txt"
check "ids of the greedy prompt" sh -c "$LLMQ tokenize $M $TMP/p.txt | tr '\n' ' ' | grep -qx '506 2630 283 264 3039 '"
check "stdin works" sh -c "printf 'The history of the city' | $LLMQ tokenize $M - | wc -l | grep -qx 5"
check "tokenizer.json given directly" sh -c "$LLMQ tokenize $M/tokenizer.json $TMP/p.txt | wc -l | grep -qx 5"
expect_code 0 llmq tokenize $M "$TMP/p.txt" --ids-out "$TMP/p.bin"
check "ids-out is int32 LE" sh -c "test \$(wc -c <$TMP/p.bin) -eq 20"
check "ids-out bytes" sh -c "od -An -tx1 -N4 $TMP/p.bin | grep -q 'fa 01 00 00'"
expect_code 0 llmq tokenize $M /dev/null
expect_err 2 'refusing to overwrite an input' llmq tokenize $M "$TMP/p.txt" --ids-out "$TMP/p.txt"
expect_err 3 'nope' llmq tokenize "$TMP/nope" "$TMP/p.txt"
expect_err 3 'missing.txt' llmq tokenize $M "$TMP/missing.txt"
mkdir "$TMP/bad"
echo '{"model": {"type": "BPE", "vocab": 5}}' >"$TMP/bad/tokenizer.json"
expect_err 4 'tokenizer.json' llmq tokenize "$TMP/bad" "$TMP/p.txt"
echo '{"model": {"type": "Unigram", "vocab": []}}' >"$TMP/bad/tokenizer.json"
expect_err 5 'Unigram' llmq tokenize "$TMP/bad" "$TMP/p.txt"
echo 'not json' >"$TMP/bad/tokenizer.json"
expect_err 4 'tokenizer.json' llmq tokenize "$TMP/bad" "$TMP/p.txt"

# Released tokenizers (tests/npm, installed by the README's first command):
# the whole book through the command line, against HF tokenizers' ids.  The
# Llama 3 one aborted with a heap overflow before d95ac58 (issue 17);
# DeepSeek V3's and Gemma 3's Split patterns were refused before fea53b3.
NPM=${LLMQ_NPM:-tests/npm/node_modules}
BOOK=$SHARED/data/eval/dorian_gray.txt
for n in llama3 deepseek_v3 gemma3; do
    tj=$NPM/@lenml/tokenizer-$n/models/tokenizer.json
    expect_code 0 llmq tokenize "$tj" "$BOOK" --ids-out "$TMP/$n.bin"
    check "$n: dorian_gray ids equal HF tokenizers'" sh -c "gzip -dc testdata/tok/ref/$n.dorian_gray.ids.gz | cmp -s - $TMP/$n.bin"
done
# a Split regex Oniguruma refuses, and one that backtracks without end
printf '{"pre_tokenizer":{"type":"Split","pattern":{"Regex":"(a"},"behavior":"Isolated"},"model":{"vocab":{"a":0},"merges":[]}}' \
    >"$TMP/bad/tokenizer.json"
expect_err 5 "regex '.a' is not valid for Oniguruma" llmq tokenize "$TMP/bad" "$TMP/p.txt"
printf '{"pre_tokenizer":{"type":"Split","pattern":{"Regex":"^(a+)+$"},"behavior":"Isolated"},"model":{"vocab":{"a":0},"merges":[]}}' \
    >"$TMP/bad/tokenizer.json"
{ head -c 30 /dev/zero | tr '\0' a; printf x; } >"$TMP/a.txt"
expect_err 5 'backtracking steps' llmq tokenize "$TMP/bad" "$TMP/a.txt"
finish
