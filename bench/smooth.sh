#!/bin/sh
# bench/smooth.sh - W8A8 quality with and without smoothing (issue 4 table).
# For tiny-llama-mha and its planted-outlier twins (plant-outliers --seed 1, 2):
# calibrate on ../shared/data/train (never the eval text), then perplexity on
# dorian_gray.txt (ctx 512, full protocol) and KL divergence against the bf16
# model, for: bf16; W8A8 naive (RTN int8 weights); SmoothQuant alpha 0.5 and
# auto alpha; Outlier Suppression+; each with per-token dynamic (--act int8)
# and per-tensor static (--act int8-static) activations; and the smoothed
# bf16 checkpoints unquantized (what folding into bf16 costs by itself).
#   WINDOWS=N   score N windows (default: all 264)
#   SAMPLES=N   calibration windows of 512 tokens (default 128)
#   SEEDS="1 2" plant-outliers seeds
#   ORIG=0      skip tiny-llama-mha itself (only the planted twins)
#   EVAL2=FILE  a second held-out text for the dynamic rows of the methods
#               with a search (auto alpha, OS+), all windows (default
#               data/eval/little_women.txt; EVAL2= skips it)
#   METHODS="sq05 sqauto osplus"  the smoothing rows to run (default all
#               three); NAIVE=0 skips the two naive rows (re-running one
#               method's rows after a change to it)
. "$(dirname "$0")/lib.sh"
BASE="$SHARED/models/tiny-llama-mha"
SAMPLES=${SAMPLES:-128}
SEEDS=${SEEDS:-1 2}
EVAL2=${EVAL2-$SHARED/data/eval/little_women.txt}
bench_tmp smooth

models=""
[ "${ORIG:-1}" = 0 ] || models="tiny-llama-mha"
for s in $SEEDS; do
    "$SHARED/tools/plant-outliers" "$BASE" "$T/planted-s$s" --seed "$s" >/dev/null || exit 1
    models="$models planted-s$s"
done

echo "### W8A8 with SmoothQuant / OS+ (eval dorian_gray.txt, ctx 512, ${WINDOWS:-all} windows; calibration $SAMPLES x 512 tokens of data/train, seed 0)"
echo
echo "| model | weights | activations | perplexity | vs bf16 | ln ratio % +- SE | KLD mean +- SE | KLD p99 | top-1 agree |"
echo "|---|---|---|---|---|---|---|---|---|"
times=""
second=""
# ln(ppl / ppl_base) x 100 and mean KLD, each +- its standard error (windows as blocks)
lnr() { awk -v a="$(j "$1" ln_ppl_ratio)" -v e="$(j "$1" ln_ppl_ratio_se)" 'BEGIN { printf "%+.3f +- %.3f", 100 * a, 100 * e }'; }
for name in $models; do
    if [ "$name" = tiny-llama-mha ]; then M=$BASE; else M="$T/$name"; fi
    t0=$(date +%s.%N)
    "$LLMQ" calibrate "$M" --text "$TRAIN" --samples "$SAMPLES" --seqlen 512 -o "$T/$name.st" || exit 1
    t1=$(date +%s.%N)
    "$LLMQ" verify "$M" --text "$EVAL" --ctx 512 $win --kld-save "$T/$name.kld" --json >"$T/base.json" || exit 1
    bppl=$($TC json "$T/base.json" perplexity)
    printf '| %s | bf16 | - | %.3f | | | | | |\n' "$name" "$bppl"
    row() {  # label act dir [stats]
        if [ -n "${4:-}" ]; then extra="--stats $4"; else extra=""; fi
        "$LLMQ" verify "$3" --text "$EVAL" --ctx 512 $win --act "$2" $extra --kld "$T/$name.kld" --json >"$T/r.json" || { echo "| $name | $1 | $2 | failed | | | | | |"; return; }
        p=$($TC json "$T/r.json" perplexity)
        printf '| %s | %s | %s | %.3f | %+.2f%% | %s | %s | %.4f | %.4f |\n' "$name" "$1" "$2" "$p" \
            "$(echo "$p $bppl" | awk '{print ($1 / $2 - 1) * 100}')" "$(lnr "$T/r.json")" "$(klse "$T/r.json" 6)" \
            "$($TC json "$T/r.json" kld_p99)" "$($TC json "$T/r.json" top1_agree)"
    }
    if [ "${NAIVE:-1}" != 0 ]; then
        "$LLMQ" pack "$M" -o "$T/naive.q8" --format int8 || exit 1
        row "int8 RTN (naive)" int8 "$T/naive.q8"
        row "int8 RTN (naive)" int8-static "$T/naive.q8" "$T/$name.st"
    fi
    for v in ${METHODS:-sq05 sqauto osplus}; do
        case $v in
            sq05) args="--alpha 0.5"; label="SmoothQuant a=0.5";;
            sqauto) args="--auto-alpha"; label="SmoothQuant auto a";;
            osplus) args="--method osplus"; label="OS+";;
        esac
        s0=$(date +%s.%N)
        "$LLMQ" smooth "$M" --stats "$T/$name.st" $args -o "$T/$v" --stats-out "$T/$v.st" || exit 1
        s1=$(date +%s.%N)
        times="$times| $name | $label | $(echo "$t1 $t0" | awk '{printf "%.1f", $1 - $2}') | $(echo "$s1 $s0" | awk '{printf "%.1f", $1 - $2}') |
"
        "$LLMQ" pack "$T/$v" -o "$T/$v.q8" --format int8 || exit 1
        row "$label, int8" int8 "$T/$v.q8"
        row "$label, int8" int8-static "$T/$v.q8" "$T/$v.st"
        [ "$v" != sq05 ] && row "$label, bf16 (no quant)" fp "$T/$v"
        if [ -n "$EVAL2" ] && [ "$v" != sq05 ]; then
            [ -f "$T/$name.kld2" ] || "$LLMQ" verify "$M" --text "$EVAL2" --ctx 512 --kld-save "$T/$name.kld2" --json >"$T/base2.json" || exit 1
            "$LLMQ" verify "$T/$v.q8" --text "$EVAL2" --ctx 512 --act int8 --kld "$T/$name.kld2" --json >"$T/r2.json" || exit 1
            p2=$(j "$T/r2.json" perplexity); b2=$(j "$T/base2.json" perplexity)
            second="$second$(printf '| %s | %s, int8 | int8 | %.3f | %.3f | %s | %s | %.4f |' "$name" "$label" "$b2" "$p2" \
                "$(lnr "$T/r2.json")" "$(klse "$T/r2.json" 6)" "$(j "$T/r2.json" top1_agree)")
"
        fi
    done
done
if [ -n "$EVAL2" ]; then
    echo
    echo "### Dynamic W8A8 on a second held-out text: $(basename "$EVAL2") (ctx 512, all windows; same calibration)"
    echo
    echo "| model | weights | activations | bf16 perplexity | perplexity | ln ratio % +- SE | KLD mean +- SE | top-1 agree |"
    echo "|---|---|---|---|---|---|---|---|"
    printf '%s' "$second"
fi
echo
echo "| model | method | calibrate s | smooth s |"
echo "|---|---|---|---|"
printf '%s' "$times"
