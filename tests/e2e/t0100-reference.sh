#!/bin/sh
# The runner against transformers' fp32 reference on both shared models:
# tokenizer ids on the whole WikiText-2 test file, first-window logits,
# greedy ids, and full-protocol perplexity over the whole file.
# LLMQ_E2E_WINDOWS=N scores only N windows (then perplexity is not compared).
. "$(dirname "$0")/../lib.sh"
TC=build/tools/tcheck
WT="$SHARED/data/wikitext2-raw-test.txt"
if [ ! -f "$WT" ]; then echo "no $WT: set LLMQ_SHARED"; echo "0 passed, 1 failed"; exit 1; fi

for name in tiny-qwen2-gqa tiny-llama-mha; do
    M="$SHARED/models/$name"
    R="$M/reference"
    expect_code 0 llmq tokenize "$M" "$WT" --ids-out "$TMP/$name.ids"
    check "$name: tokenizer ids equal reference/wikitext2_test_ids.bin" cmp -s "$TMP/$name.ids" "$R/wikitext2_test_ids.bin"

    prompt=$($TC json "$R/ref.json" greedy_prompt)
    llmq verify "$M" --gen "$prompt" --n 32 --json >"$TMP/gen.json"
    want=$($TC json "$R/ref.json" greedy_32_ids)
    got=$($TC json "$TMP/gen.json" gen_ids)
    check "$name: greedy ids equal greedy_32_ids (got: $got)" test "$got" = "$want"

    win=""
    [ -n "${LLMQ_E2E_WINDOWS:-}" ] && win="--max-windows $LLMQ_E2E_WINDOWS"
    llmq verify "$M" --text "$WT" --ctx 512 --protocol full $win --logits-out "$TMP/logits.st" --json >"$TMP/ppl.json"
    check "$name: verify ran" test -s "$TMP/ppl.json"
    check "$name: first-window logits within 1e-3 of ref_logits" $TC logits "$TMP/logits.st" "$R/ref_logits.safetensors" 1e-3
    if [ -z "$win" ]; then
        ppl=$($TC json "$TMP/ppl.json" perplexity)
        ref=$($TC json "$R/ref.json" wikitext2_test_ppl_fp32)
        echo "$name: perplexity $ppl, reference $ref"
        check "$name: perplexity within 0.05% of reference" $TC relerr "$ppl" "$ref" 0.0005
        check "$name: scored_tokens equal" test "$($TC json "$TMP/ppl.json" scored_tokens)" = "$($TC json "$R/ref.json" scored_tokens)"
    fi
done
finish
