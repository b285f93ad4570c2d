#!/bin/sh
# bench/online-hadamard.sh - rotate against rotate --online-hadamard (issue
# 22): KLD +- SE against the bf16 model on dorian_gray.txt (ctx 512) of
# int4 g128 RTN (weights only, and --act same: W4A4), W8A8 (pack int8,
# verify --act int8), nvfp4 --act same, and the int4 KV cache (plain, and
# with calibrated key ranges from calibrate --samples 32 of the same
# checkpoint), for no rotation, rotate and rotate --online-hadamard-keys
# (the down_proj input, the values and the keys; --online-hadamard leaves
# the keys alone: its rows differ only in the two KV-cache columns; all
# --dtype f32), on tiny-llama-mha and its planted-outlier twin.
#   WINDOWS=N  windows scored (default 32)
#   MODELS="tiny-llama-mha planted-s1"
. "$(dirname "$0")/lib.sh"
bench_tmp online-hadamard
W="--ctx 512 --max-windows ${WINDOWS:-32}"
MODELS=${MODELS:-"tiny-llama-mha planted-s1"}
cell() {  # dir verify-args...: one KLD cell
    d=$1; shift
    if $LLMQ verify "$d" --text "$EVAL" $W --kld "$T/base.kld" --json "$@" >"$T/r.json" 2>"$T/r.err"; then klse "$T/r.json"
    else echo "failed: $(head -1 "$T/r.err")"; fi
}
echo "### Online Hadamard (dorian_gray.txt, ctx 512, ${WINDOWS:-32} windows; KLD +- SE vs bf16)"
echo
echo "| model | rotation | int4 g128 | int4 g128 W4A4 (--act same) | W8A8 | nvfp4 --act same | KV int4 | KV int4 calibrated |"
echo "|---|---|---|---|---|---|---|---|"
for n in $MODELS; do
    bench_model "$n"
    $LLMQ verify "$M" --text "$EVAL" $W --kld-save "$T/base.kld" >/dev/null || exit 1
    $LLMQ rotate "$M" -o "$T/rot" --dtype f32 || exit 1
    $LLMQ rotate "$M" -o "$T/onl" --dtype f32 --online-hadamard-keys || exit 1
    for v in none rot onl; do
        case $v in none) D=$M; vn="none" ;; rot) D=$T/rot; vn="rotate" ;; onl) D=$T/onl; vn="rotate --online-hadamard-keys" ;; esac
        $LLMQ pack "$D" -o "$T/q4" --format int4 >/dev/null || exit 1
        $LLMQ pack "$D" -o "$T/q8" --format int8 >/dev/null || exit 1
        $LLMQ pack "$D" -o "$T/nv" --format nvfp4 >/dev/null || exit 1
        $LLMQ calibrate "$D" --text "$TRAIN" --samples 32 --seqlen 512 -o "$T/st.st" >/dev/null || exit 1
        echo "| $n | $vn | $(cell "$T/q4") | $(cell "$T/q4" --act same) | $(cell "$T/q8" --act int8) | $(cell "$T/nv" --act same) | $(cell "$D" --kv-cache int4) | $(cell "$D" --kv-cache int4 --stats "$T/st.st") |"
        rm -rf "$T/q4" "$T/q8" "$T/nv" "$T/st.st"
    done
    rm -rf "$T/rot" "$T/onl"
done
