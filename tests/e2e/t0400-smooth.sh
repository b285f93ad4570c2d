#!/bin/sh
# calibrate + smooth on tiny-llama-mha and planted-outlier twins (two seeds):
# deterministic statistics; SmoothQuant and OS+ outputs (f32) give the
# original's logits within 1e-4 relative; naive W8A8 degrades clearly on the
# twins, static per-tensor W8A8 breaks, smoothing brings dynamic W8A8 back
# within 1% of bf16 perplexity.  Scores 16 windows of dorian_gray (ctx 512)
# to stay fast; bench/smooth.sh has the full table.
. "$(dirname "$0")/../lib.sh"
TC=build/tools/tcheck
BASE="$SHARED/models/tiny-llama-mha"
EVAL="$SHARED/data/eval/dorian_gray.txt"
TRAIN="$SHARED/data/train"
if [ ! -d "$BASE" ]; then echo "no $BASE: set LLMQ_SHARED"; echo "0 passed, 1 failed"; exit 1; fi
W="--ctx 512 --max-windows 16"

ppl() { rm -f "$TMP/p.json"; "$@" --json >"$TMP/p.json" && $TC json "$TMP/p.json" perplexity; }
# within REF * (1 + tol)?  (perplexities)
below() { [ -n "$1" ] && awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { exit !(a <= b * (1 + t)) }'; }
above() { [ -n "$1" ] && awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { exit !(a > b * (1 + t)) }'; }

expect_code 0 llmq calibrate "$BASE" --text "$TRAIN" --samples 8 --seqlen 512 --seed 5 -o "$TMP/d1.st"
expect_code 0 llmq calibrate "$BASE" --text "$TRAIN" --samples 8 --seqlen 512 --seed 5 -o "$TMP/d2.st"
check "same seed: byte-identical statistics" cmp -s "$TMP/d1.st" "$TMP/d2.st"

for name in tiny-llama-mha planted-s1 planted-s4; do
    case $name in
        tiny-llama-mha) M=$BASE;;
        *) M="$TMP/$name"; "$SHARED/tools/plant-outliers" "$BASE" "$M" --seed "${name#planted-s}" >/dev/null;;
    esac
    expect_code 0 llmq calibrate "$M" --text "$TRAIN" --samples 32 --seqlen 512 -o "$TMP/$name.st"
    llmq verify "$M" --text "$EVAL" --ctx 512 --max-windows 2 --logits-out "$TMP/base.lg" >/dev/null
    bppl=$(ppl llmq verify "$M" --text "$EVAL" $W)
    # equivalence of the f32 outputs
    for meth in "--auto-alpha" "--method osplus"; do
        expect_code 0 llmq smooth "$M" --stats "$TMP/$name.st" $meth --dtype f32 -o "$TMP/eq"
        llmq verify "$TMP/eq" --text "$EVAL" --ctx 512 --max-windows 2 --logits-out "$TMP/eq.lg" >/dev/null
        check "$name $meth f32: logits equal the original's (1e-3 abs, ~1e-4 rel)" $TC logits "$TMP/base.lg" "$TMP/eq.lg" 1e-3
    done
    # W8A8
    llmq pack "$M" -o "$TMP/naive" --format int8
    nppl=$(ppl llmq verify "$TMP/naive" --text "$EVAL" $W --act int8)
    sppl=$(ppl llmq verify "$TMP/naive" --text "$EVAL" $W --act int8-static --stats "$TMP/$name.st")
    echo "$name: bf16 $bppl, naive W8A8 dynamic $nppl, static $sppl"
    if [ "$name" != tiny-llama-mha ]; then
        check "$name: naive dynamic W8A8 degrades > 2% ($nppl vs $bppl)" above "$nppl" "$bppl" 0.02
        check "$name: naive static W8A8 breaks (> 2x) ($sppl vs $bppl)" above "$sppl" "$bppl" 1.0
    fi
    for meth in "--auto-alpha" "--method osplus"; do
        expect_code 0 llmq smooth "$M" --stats "$TMP/$name.st" $meth -o "$TMP/sm" --stats-out "$TMP/sm.st"
        llmq pack "$TMP/sm" -o "$TMP/sm.q8" --format int8
        d=$(ppl llmq verify "$TMP/sm.q8" --text "$EVAL" $W --act int8)
        s=$(ppl llmq verify "$TMP/sm.q8" --text "$EVAL" $W --act int8-static --stats "$TMP/sm.st")
        echo "$name $meth: W8A8 dynamic $d, static $s"
        check "$name $meth: dynamic W8A8 within 1% of bf16 ($d vs $bppl)" below "$d" "$bppl" 0.01
        check "$name $meth: static W8A8 within 3% of bf16 ($s vs $bppl)" below "$s" "$bppl" 0.03
    done
done
finish
