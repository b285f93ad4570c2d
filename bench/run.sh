#!/bin/sh
# bench/run.sh - what `make bench` runs: markdown tables on stdout.
#   LLMQ_SHARED     shared models and data (default ../shared)
#   BENCH_ONLY      run one part: speed, formats, synth, or a bench/<name>.sh
#   BENCH_WINDOWS   score only N windows of the eval text (default: all)
# Speed numbers on 2 shared cores are noisy: compare ratios within one run.
cd "$(dirname "$0")/.." || exit 2
SH=${LLMQ_SHARED:-../shared}
export LLMQ_SHARED=$SH
L=./llmq
TC=build/tools/tcheck
OUT=build/bench
EVAL=$SH/data/eval/dorian_gray.txt
SYN=$OUT/synth-1b
mkdir -p "$OUT"
WIN=""
[ -n "${BENCH_WINDOWS:-}" ] && WIN="--max-windows $BENCH_WINDOWS"
only() { [ -z "${BENCH_ONLY:-}" ] || [ "$BENCH_ONLY" = "$1" ]; }
j() { $TC json "$1" "$2"; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
f2() { awk -v x="$1" 'BEGIN { printf "%.2f", x }'; }
f4() { awk -v x="$1" 'BEGIN { printf "%.4f", x }'; }
f6() { awk -v x="$1" 'BEGIN { printf "%.6f", x }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f%%", 100 * a / b }'; }

synth() {
    if [ ! -f "$SYN/config.json" ]; then
        echo "(writing the synthetic 1.1B-shape checkpoint to $SYN)" >&2
        build/tools/mksynth "$SYN" --tokenizer "$SH/models/tiny-llama-mha/tokenizer.json" >&2 || exit 1
    fi
}

speed_row() {  # label model [verify options]
    label=$1; m=$2; shift 2
    $L verify "$m" --bench --json "$@" >"$OUT/speed.json" || { echo "| $label | failed |"; return; }
    echo "| $label | $(j "$OUT/speed.json" weights_dtype) $(j "$OUT/speed.json" act) | $(mb "$(j "$OUT/speed.json" decode_bytes_per_token)") | $(f2 "$(j "$OUT/speed.json" prefill_tok_s)") | $(f2 "$(j "$OUT/speed.json" decode_tok_s)") | $(f2 "$(j "$OUT/speed.json" decode_gb_s)") | $(f2 "$(j "$OUT/speed.json" read_bw_gb_s)") | $(pct "$(j "$OUT/speed.json" decode_gb_s)" "$(j "$OUT/speed.json" read_bw_gb_s)") |"
}

speed_header() {
    echo "| model | weights | MiB read per token | prefill tok/s (512) | decode tok/s (128 after 128) | decode GB/s | probe GB/s | of probe |"
    echo "|---|---|---|---|---|---|---|---|"
}

if only speed; then
    synth
    echo "### Speed, bf16 (\`llmq verify MODEL --bench\`, 2 threads)"
    echo
    speed_header
    speed_row tiny-llama-mha "$SH/models/tiny-llama-mha"
    speed_row tiny-qwen2-gqa "$SH/models/tiny-qwen2-gqa"
    speed_row "synthetic 1.1B" "$SYN"
    echo
fi

if only formats; then
    for name in tiny-llama-mha tiny-qwen2-gqa; do
        M=$SH/models/$name
        echo "### $name: formats on dorian_gray.txt, ctx 512 (\`llmq pack\` RTN, \`llmq verify --text ... --kld base.kld\`)"
        echo
        echo "| weights | file MiB | bits/weight (linears) | ppl full | ppl llamacpp | KLD mean | KLD p99 | top-1 agree | ppl ratio | prefill tok/s | decode tok/s | decode GB/s | probe GB/s |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        $L verify "$M" --text "$EVAL" $WIN --kld-save "$OUT/$name.kld" --json >"$OUT/b.json"
        $L verify "$M" --text "$EVAL" $WIN --protocol llamacpp --json >"$OUT/bl.json"
        $L verify "$M" --bench --json >"$OUT/bs.json"
        bytes=$(j "$OUT/b.json" file_bytes)
        echo "| bf16 | $(mb "$bytes") | 16 | $(f4 "$(j "$OUT/b.json" perplexity)") | $(f4 "$(j "$OUT/bl.json" perplexity)") | 0 | 0 | 1 | 1 | $(f2 "$(j "$OUT/bs.json" prefill_tok_s)") | $(f2 "$(j "$OUT/bs.json" decode_tok_s)") | $(f2 "$(j "$OUT/bs.json" decode_gb_s)") | $(f2 "$(j "$OUT/bs.json" read_bw_gb_s)") |"
        for spec in "int8 fp" "int8 int8" "int4 fp" "int4 int8" "mxint8 fp"; do
            set -- $spec
            f=$1; act=$2
            $L pack "$M" -o "$OUT/$name-$f" --format "$f" --json >"$OUT/p.json"
            $L verify "$OUT/$name-$f" --act "$act" --text "$EVAL" $WIN --kld "$OUT/$name.kld" --json >"$OUT/q.json"
            $L verify "$OUT/$name-$f" --act "$act" --text "$EVAL" $WIN --protocol llamacpp --json >"$OUT/ql.json"
            $L verify "$OUT/$name-$f" --act "$act" --bench --json >"$OUT/qs.json"
            label=$(j "$OUT/p.json" scheme)
            if [ "$act" = int8 ]; then [ "$f" = int8 ] && label="$label W8A8" || label="$label W4A8"
            elif [ "$f" = int8 ]; then label="$label W8A16"; fi
            echo "| $label | $(mb "$(j "$OUT/q.json" file_bytes)") | $(f2 "$(j "$OUT/p.json" bits_per_weight)") | $(f4 "$(j "$OUT/q.json" perplexity)") | $(f4 "$(j "$OUT/ql.json" perplexity)") | $(f6 "$(j "$OUT/q.json" kld_mean)") | $(f6 "$(j "$OUT/q.json" kld_p99)") | $(f4 "$(j "$OUT/q.json" top1_agree)") | $(f4 "$(j "$OUT/q.json" ppl_ratio)") | $(f2 "$(j "$OUT/qs.json" prefill_tok_s)") | $(f2 "$(j "$OUT/qs.json" decode_tok_s)") | $(f2 "$(j "$OUT/qs.json" decode_gb_s)") | $(f2 "$(j "$OUT/qs.json" read_bw_gb_s)") |"
        done
        echo
    done
fi

if only synth; then
    synth
    echo "### Synthetic 1.1B-shape model (hidden 2048, 22 layers, 32/4 heads, intermediate 5632, vocab 32000): decode speed by format"
    echo
    speed_header
    speed_row "1.1B bf16" "$SYN"
    for f in int8 int4 mxint8 mxfp8 mxfp4 mxint4 nvfp4 nvint4; do
        [ -f "$OUT/synth-$f/model.safetensors" ] || $L pack "$SYN" -o "$OUT/synth-$f" --format "$f" || continue
        speed_row "1.1B $f" "$OUT/synth-$f"
        case $f in int8|int4) speed_row "1.1B $f" "$OUT/synth-$f" --act int8 ;; esac
    done
    [ -f "$OUT/synth-int4h/model.safetensors" ] || $L pack "$SYN" -o "$OUT/synth-int4h" --format int4 --quantize-head
    speed_row "1.1B int4 --quantize-head" "$OUT/synth-int4h"
    speed_row "1.1B int4 --quantize-head" "$OUT/synth-int4h" --act int8
    echo
fi

for b in bench/*.sh; do
    name=$(basename "$b" .sh)
    case $name in run|demo|lib|llamacpp-build) continue ;; esac
    only "$name" && sh "$b"
done
exit 0
