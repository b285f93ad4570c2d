#!/bin/sh
# bench/demo.sh - what `make demo` runs: the main job on the bundled model
# (awq -> verify, next to round-to-nearest), then a table proving that
# quality and speed held.  Calibration and evaluation texts differ.
cd "$(dirname "$0")/.." || exit 2
set -e
M=testdata/tiny-qwen2-gqa
OUT=build/demo
EVAL=testdata/sample.txt
CALIB=testdata/calib.txt
TC=build/tools/tcheck
mkdir -p "$OUT"
j() { $TC json "$1" "$2"; }
echo "== llmq verify $M --gen ... (bf16)"
./llmq verify "$M" --gen "The history of the city" --n 24
echo "== llmq awq $M -o $OUT/model.awq4 --text $CALIB"
./llmq awq "$M" -o "$OUT/model.awq4" --text "$CALIB" --samples 32 --seqlen 256 --json >"$OUT/awq.json"
./llmq pack "$M" -o "$OUT/model.rtn4" --format int4
./llmq verify "$OUT/model.awq4" --gen "The history of the city" --n 24
./llmq verify "$M" --text "$EVAL" --ctx 256 --kld-save "$OUT/base.kld" --bench --json >"$OUT/bf16.json"
./llmq verify "$OUT/model.rtn4" --text "$EVAL" --ctx 256 --kld "$OUT/base.kld" --bench --json >"$OUT/rtn4.json"
./llmq verify "$OUT/model.awq4" --text "$EVAL" --ctx 256 --kld "$OUT/base.kld" --bench --json >"$OUT/awq4.json"
./llmq verify "$OUT/model.awq4" --act int8 --bench --json >"$OUT/awq4a8.json"
echo
echo "eval: $EVAL (ctx 256, $(j "$OUT/bf16.json" scored_tokens) tokens scored); calibration: $CALIB"
printf '%-22s %10s %10s %10s %10s %12s %12s\n' model perplexity KLD top-1 "size MiB" "prefill t/s" "decode t/s"
for f in bf16 rtn4 awq4; do
    case $f in bf16) name="bf16" ;; rtn4) name="int4-g128 RTN" ;; awq4) name="int4-g128 AWQ" ;; esac
    kld=0; top=1
    [ $f != bf16 ] && kld=$(j "$OUT/$f.json" kld_mean) && top=$(j "$OUT/$f.json" top1_agree)
    printf '%-22s %10.4f %10.6f %10.4f %10.2f %12.1f %12.1f\n' "$name" "$(j "$OUT/$f.json" perplexity)" "$kld" "$top" \
        "$(awk -v b="$(j "$OUT/$f.json" file_bytes)" 'BEGIN { print b / 1048576 }')" \
        "$(j "$OUT/$f.json" prefill_tok_s)" "$(j "$OUT/$f.json" decode_tok_s)"
done
printf '%-22s %10s %10s %10s %10s %12.1f %12.1f\n' "int4-g128 AWQ, W4A8" - - - - \
    "$(j "$OUT/awq4a8.json" prefill_tok_s)" "$(j "$OUT/awq4a8.json" decode_tok_s)"
