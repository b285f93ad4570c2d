#!/bin/sh
# bench/awq.sh - AWQ against round-to-nearest (issue 5 table).
# For tiny-llama-mha and its planted-outlier twin(s) (plant-outliers --seed 1):
# calibrate on ../shared/data/train (never the eval text), then perplexity on
# dorian_gray.txt (ctx 512, full protocol) and KL divergence against the bf16
# model for: bf16; RTN W4 g128 (llmq pack --format int4); AWQ W4 g128;
# RTN W3 g128 (llmq awq --w-bit 3 --n-grid 1 --no-duo --no-clip: s = 1, no clip, i.e.
# round-to-nearest; the same as llmq pack --format int3); AWQ W3 g128.  "ratio" is AWQ's
# perplexity increase over bf16 divided by RTN's (targets: <= 0.6 at W4,
# <= 0.7 at W3).  Then the --search-tokens quality/time trade-off.
# Wall time and peak RSS are the quantizing command's (/usr/bin/time), on 2
# shared cores: noisy, compare within one run.
#   WINDOWS=N   score N windows (default: all 264)
#   SAMPLES=N   calibration windows of 512 tokens (default 128)
#   SEEDS="1"   plant-outliers seeds
#   TRADEOFF=0  skip the --search-tokens table; TABLE=0 skip the main table
#   TOKENS="..." --search-tokens values of the trade-off table
#   SKIP_BASE=1 leave tiny-llama-mha itself out of the main table
. "$(dirname "$0")/lib.sh"
BASE="$SHARED/models/tiny-llama-mha"
SAMPLES=${SAMPLES:-128}
SEEDS=${SEEDS:-1}
bench_tmp awq

models="tiny-llama-mha"
[ "${SKIP_BASE:-0}" = 1 ] && models=""
for s in $SEEDS; do
    "$SHARED/tools/plant-outliers" "$BASE" "$T/planted-s$s" --seed "$s" >/dev/null || exit 1
    models="$models planted-s$s"
done
src() { if [ "$1" = tiny-llama-mha ]; then echo "$BASE"; else echo "$T/$1"; fi; }
f3() { awk -v x="$1" 'BEGIN { printf "%.3f", x }'; }
f5() { awk -v x="$1" 'BEGIN { printf "%.5f", x }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
# timed NAME cmd...: run, keep wall seconds and peak RSS (KiB) in $T/NAME.time
timed() { n=$1; shift; /usr/bin/time -f "%e %M" -o "$T/$n.time" "$@" >"$T/$n.out" 2>"$T/$n.err" || { cat "$T/$n.err" >&2; exit 1; }; }
verify() {  # NAME DIR: perplexity + KLD json into $T/NAME.v.json
    $LLMQ verify "$2" --text "$EVAL" --ctx 512 $win --kld "$T/$3.kld" --json >"$T/$1.v.json" || exit 1
}
calib="--text $TRAIN --samples $SAMPLES --seqlen 512"

if [ "${TABLE:-1}" != 0 ]; then
echo "### AWQ vs round-to-nearest, g128 asymmetric (eval dorian_gray.txt, ctx 512, ${WINDOWS:-all} windows; calibration $SAMPLES x 512 tokens of data/train, seed 0)"
echo
echo "| model | method | perplexity | ppl increase | ratio AWQ/RTN | KLD mean | top-1 agree | bits/weight (stored / effective) | file MB | quantize wall s | quantize peak RSS MB |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for name in $models; do
    M=$(src "$name")
    $LLMQ verify "$M" --text "$EVAL" --ctx 512 $win --kld-save "$T/$name.kld" --json >"$T/$name.bf16.json" || exit 1
    b=$($TC json "$T/$name.bf16.json" perplexity)
    echo "| $name | bf16 | $(f3 "$b") | - | - | 0 | 1 | 16 | $(mb "$(stat -c %s "$M"/*.safetensors | awk '{s += $1} END {print s}')") | - | - |"
    timed "$name.rtn4" $LLMQ pack "$M" -o "$T/$name.rtn4" --format int4 --json
    timed "$name.awq4" $LLMQ awq "$M" -o "$T/$name.awq4" $calib --json
    timed "$name.rtn3" $LLMQ awq "$M" -o "$T/$name.rtn3" $calib --w-bit 3 --n-grid 1 --no-duo --no-clip --json
    timed "$name.awq3" $LLMQ awq "$M" -o "$T/$name.awq3" $calib --w-bit 3 --json
    for v in rtn4 awq4 rtn3 awq3; do verify "$name.$v" "$T/$name.$v" "$name"; done
    for bits in 4 3; do
        r=$($TC json "$T/$name.rtn$bits.v.json" perplexity)
        for v in rtn awq; do
            k="$name.$v$bits"
            p=$($TC json "$T/$k.v.json" perplexity)
            ratio=$(awk -v p="$p" -v r="$r" -v b="$b" 'BEGIN { printf "%.3f", (p - b) / (r - b) }')
            [ "$v" = rtn ] && ratio="(1)"
            bpw=$($TC json "$T/$k.out" bits_per_weight)
            eff=$(awk -v b="$bits" 'BEGIN { printf "%.4f", b + 24 / 128 }')
            read -r wall rss <"$T/$k.time"
            label="RTN W$bits"; [ "$v" = awq ] && label="AWQ W$bits"
            echo "| $name | $label | $(f3 "$p") | $(f3 "$(awk -v p="$p" -v b="$b" 'BEGIN { print p - b }')") | $ratio | $(f5 "$($TC json "$T/$k.v.json" kld_mean)") | $(f3 "$($TC json "$T/$k.v.json" top1_agree)") | $(f2 "$bpw") / $eff | $(mb "$(stat -c %s "$T/$k/model.safetensors")") | $wall | $(awk -v k="$rss" 'BEGIN { printf "%.0f", k / 1024 }') |"
        done
    done
    rm -rf "$T/$name".rtn* "$T/$name".awq*/
done
echo
echo "W3 is stored as 3-bit codes in the int4 nibble layout: the file costs the int4 bits; effective = 3 bits + f16 scale + u8 zero per 128."
fi

if [ "${TRADEOFF:-1}" != 0 ]; then
    echo
    [ -f "$T/tiny-llama-mha.kld" ] || $LLMQ verify "$BASE" --text "$EVAL" --ctx 512 $win --kld-save "$T/tiny-llama-mha.kld" --json >/dev/null || exit 1
    echo "### --search-tokens: quality vs time (tiny-llama-mha, AWQ W3 g128, calibration $SAMPLES x 512, ${WINDOWS:-all} windows)"
    echo
    echo "| search tokens | perplexity | KLD mean | awq wall s | of which scale search s |"
    echo "|---|---|---|---|---|"
    for st in ${TOKENS:-512 1024 2048 4096}; do
        timed "st$st" $LLMQ awq "$BASE" -o "$T/st$st" $calib --w-bit 3 --search-tokens $st --json
        verify "st$st" "$T/st$st" tiny-llama-mha
        read -r wall rss <"$T/st$st.time"
        ss=$(python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print('%.1f' % sum(l['seconds']['scale'] for l in j['awq']['layers']))" "$T/st$st.out")
        echo "| $st | $(f3 "$($TC json "$T/st$st.v.json" perplexity)") | $(f5 "$($TC json "$T/st$st.v.json" kld_mean)") | $wall | $ss |"
        rm -rf "$T/st$st"
    done
fi
