#!/bin/sh
# bench/gqa.sh - MHA -> GQA on tiny-llama-mha (issue 6 table).
# For G in GS: mean pooling, activation pooling (both without training), and
# uptraining with the command's default budget starting from each pooling,
# on ../shared/data/train books.  Each model: perplexity on dorian_gray.txt
# (ctx 512, full protocol) and KL divergence against the MHA model, KV-cache
# bytes per token, decode tok/s (llmq verify --bench); uptraining budget
# (steps x windows x tokens) and wall time.
#   WINDOWS=N     score N windows (default: all 264)
#   GS="4 2 1"    KV-head counts
#   STEPS=N       uptraining steps (default: the command's default)
#   UPTRAIN=none|activation|both   which uptraining runs (default activation:
#                 uptrain from activation pooling at every G, and
#                 from mean pooling at G=2)
#   OUT=DIR       keep the converted models there (default: a temp dir)
#   MODEL=DIR     another model (default ../shared/models/tiny-llama-mha)
# Timings on 2 shared cores are noisy: compare ratios within one run.
. "$(dirname "$0")/lib.sh"
M=${MODEL:-$SHARED/models/tiny-llama-mha}
GS=${GS:-4 2 1}
UPTRAIN=${UPTRAIN:-activation}
steps=""
[ -n "${STEPS:-}" ] && steps="--steps $STEPS"
if [ -n "${OUT:-}" ]; then T=$OUT; mkdir -p "$T" || exit 2; else bench_tmp gqa; fi
avg() { awk -v s="$1" 'BEGIN { gsub(/[][]/, "", s); n = split(s, a, ","); t = 0; for (i = 1; i <= n; i++) t += a[i]; printf "%.3f", t / n }'; }

"$LLMQ" verify "$M" --text "$EVAL" $win --kld-save "$T/base.kld" --json >"$T/base.json" || exit 1
"$LLMQ" verify "$M" --bench --json >"$T/base.bench" || exit 1
L=$(j "$M/config.json" num_hidden_layers)
NH=$(j "$M/config.json" num_attention_heads)
KVH=$(j "$M/config.json" num_key_value_heads 2>/dev/null || echo "$NH")
HD=$(( $(j "$M/config.json" hidden_size) / NH ))

echo "### MHA -> GQA on tiny-llama-mha (eval dorian_gray.txt, ctx 512, ${WINDOWS:-all} windows; uptraining on data/train)"
echo
echo "| model | KV heads | KV cache bytes/token (bf16) | perplexity | vs MHA | KLD mean | top-1 agree | decode tok/s | layer attn-output error (mean over layers) | uptraining budget | wall |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
row() {  # name G dir uptrain.json budget
    "$LLMQ" verify "$3" --text "$EVAL" $win --kld "$T/base.kld" --json >"$T/v.json" || { echo "| $1 | verify failed |"; return; }
    "$LLMQ" verify "$3" --bench --json >"$T/b.json" || return
    ppl=$(j "$T/v.json" perplexity)
    perr="-"
    e=$(sed -n 's/.*"pool_err_activation":\(\[[^]]*\]\).*/\1/p' "$4")
    em=$(sed -n 's/.*"pool_err_mean":\(\[[^]]*\]\).*/\1/p' "$4")
    case "$1" in
        *activation*) [ -n "$e" ] && perr="$(avg "$e") (mean pooling $(avg "$em"))" ;;
    esac
    wall=$(j "$4" seconds 2>/dev/null)
    echo "| $1 | $2 | $((2 * 2 * L * $2 * HD)) | $(f2 "$ppl") | $(f2 "$(j "$T/v.json" ppl_ratio)")x | $(f4 "$(j "$T/v.json" kld_mean)") | $(f4 "$(j "$T/v.json" top1_agree)") | $(f2 "$(j "$T/b.json" decode_tok_s)") | $perr | $5 | ${wall:+$(f2 "$wall") s} |"
}
echo "| source model (bf16) | $KVH | $((2 * 2 * L * KVH * HD)) | $(f2 "$(j "$T/base.json" perplexity)") | 1.00x | 0 | 1 | $(f2 "$(j "$T/base.bench" decode_tok_s)") | 0 | - | - |"
for G in $GS; do
    "$LLMQ" uptrain-gqa "$M" --kv-heads "$G" --pool mean --steps 0 -o "$T/mean-g$G" --json >"$T/mean-g$G.json" || exit 1
    row "mean pooling" "$G" "$T/mean-g$G" "$T/mean-g$G.json" "-"
    "$LLMQ" uptrain-gqa "$M" --kv-heads "$G" --pool activation --text "$TRAIN" --steps 0 -o "$T/act-g$G" --json >"$T/act-g$G.json" || exit 1
    row "activation pooling" "$G" "$T/act-g$G" "$T/act-g$G.json" "16 x 512 calibration tokens"
    [ "$UPTRAIN" = none ] && continue
    for p in activation mean; do
        [ "$p" = mean ] && [ "$UPTRAIN" = activation ] && [ "$G" != 2 ] && continue
        "$LLMQ" uptrain-gqa "$M" --kv-heads "$G" --pool $p --text "$TRAIN" $steps -o "$T/up-$p-g$G" --json >"$T/up-$p-g$G.json" || exit 1
        s=$(j "$T/up-$p-g$G.json" steps); b=$(j "$T/up-$p-g$G.json" samples); q=$(j "$T/up-$p-g$G.json" seqlen)
        row "$p pooling + uptraining (K/V)" "$G" "$T/up-$p-g$G" "$T/up-$p-g$G.json" "$s x $b x $q tokens, $(f2 "$(j "$T/up-$p-g$G.json" train_tok_s)") tok/s"
    done
done
echo
echo "KV cache bytes per token: 2 (K and V) x layers x KV heads x head_dim x 2 bytes (bf16); llmq's runner keeps"
echo "its cache in fp32 (twice that).  Layer error: sum ||O_pooled - O_MHA||^2 / sum ||O_MHA||^2 of each layer's"
echo "attention output on the calibration windows.  Wall: the whole uptrain-gqa run (pooling + training)."
