#!/bin/sh
# bench/gqa-speed.sh - decode speed of tiny-llama-mha converted to G KV heads
# (the shape is what matters: mean-pooled models, no uptraining), median of
# three `llmq verify --bench` runs each.  GS="8 4 2 1" (8 = the MHA model).
. "$(dirname "$0")/lib.sh"
M=${MODEL:-$SHARED/models/tiny-llama-mha}
bench_tmp gqa-speed
echo "### Decode speed by KV heads (tiny-llama-mha converted, llmq verify --bench, 2 threads)"
echo
echo "| KV heads | decode tok/s (median of 3) | prefill tok/s |"
echo "|---|---|---|"
for G in ${GS:-8 4 2 1}; do
    D=$M
    if [ "$G" != "$($TC json "$M/config.json" num_key_value_heads 2>/dev/null || $TC json "$M/config.json" num_attention_heads)" ]; then
        D=$T/g$G
        "$LLMQ" uptrain-gqa "$M" --kv-heads "$G" --pool mean --steps 0 -o "$D" >/dev/null || exit 1
    fi
    for i in 1 2 3; do
        "$LLMQ" verify "$D" --bench --json >"$T/b$i.json" || exit 1
    done
    d=$(for i in 1 2 3; do $TC json "$T/b$i.json" decode_tok_s; done | sort -n | sed -n 2p)
    p=$(for i in 1 2 3; do $TC json "$T/b$i.json" prefill_tok_s; done | sort -n | sed -n 2p)
    echo "| $G | $(awk -v x="$d" 'BEGIN { printf "%.1f", x }') | $(awk -v x="$p" 'BEGIN { printf "%.1f", x }') |"
done
