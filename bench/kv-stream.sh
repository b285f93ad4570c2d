#!/bin/sh
# bench/kv-stream.sh - streaming (StreamingLLM) on tiny-llama-long: the two
# eval books concatenated (dorian_gray.txt then little_women.txt, over 100k
# tokens) scored as one window whose cache keeps 4 sinks and the last 1020
# positions, against the same text scored in independent 1024-token
# windows, and without sinks; peak RSS at three lengths.
#   llmq verify M --text CAT --ctx N --kv-window 1020 --kv-sinks 4 --json
#   llmq verify M --text CAT --ctx 1024 --json          (independent windows)
#   llmq verify M --text CAT --ctx N --kv-window 1024 --kv-sinks 0 --json
#   llmq verify M --text CAT --protocol sliding --ctx 1024 --stride S --json
#                    (sliding-window recomputation, the exact baseline: a
#                    sample of SAMPLE tokens spread over the text)
# and last, the same 511 tokens scored by a streaming cache of 512 and by
# recomputing their window of 512 (like for like).
# N = every token of the text (the full protocol then scores tokens 2..N);
# LENGTHS gives the shorter runs of the RSS column (default "25000 50000").
#   MAXTOK  score the first MAXTOK tokens only (default: all)
#   SAMPLE  tokens of the sliding-window sample (default 400)
#   MODEL   default tiny-llama-long;  THREADS default 1 (a 21M-parameter
#           model decodes faster on one thread than two on a shared host)
. "$(dirname "$0")/lib.sh"
bench_tmp kvstream
M="$SHARED/models/${MODEL:-tiny-llama-long}"
TH=${THREADS:-1}
cat "$SHARED/data/eval/dorian_gray.txt" "$SHARED/data/eval/little_women.txt" >"$T/cat.txt"
"$LLMQ" tokenize "$M" "$T/cat.txt" --ids-out "$T/cat.ids" || exit 1
N=$(($(wc -c <"$T/cat.ids") / 4))
if [ -n "${MAXTOK:-}" ] && [ "$MAXTOK" -lt "$N" ]; then
    head -c $((MAXTOK * 4)) "$T/cat.ids" >"$T/cut.ids" && mv "$T/cut.ids" "$T/cat.ids"
    N=$MAXTOK
fi
row() {  # LABEL CTX FLAGS...
    label=$1 ctx=$2; shift 2
    t0=$(date +%s.%N)
    "$LLMQ" verify "$M" --ids "$T/cat.ids" --ctx "$ctx" --threads "$TH" --json "$@" >"$T/r.json" || exit 1
    t1=$(date +%s.%N)
    echo "| $label | \`--ctx $ctx $*\` | $(j "$T/r.json" scored_tokens) | $(f4 "$(j "$T/r.json" perplexity)") |" \
         "$(mib $(($(j "$T/r.json" peak_rss_bytes) / 1024))) | $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", b - a }') |"
}
echo "#### $(basename "$M"): dorian_gray.txt + little_women.txt, ${MAXTOK:+first }$N tokens, $TH thread(s); $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -m), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
echo
echo "| run | llmq verify flags | scored | ppl | peak RSS MiB | s |"
echo "|---|---|---:|---:|---:|---:|"
row "independent 1024-token windows" 1024
S=$(((N - 1024) / ${SAMPLE:-400} + 1))
row "sliding-window recomputation, sample" 1024 --protocol sliding --stride "$S"
row "streaming, 4 sinks + 1020" "$N" --kv-window 1020 --kv-sinks 4
row "streaming, no sinks, 1024" "$N" --kv-window 1024 --kv-sinks 0
for n in ${LENGTHS:-25000 50000}; do
    row "streaming, 4 sinks + 1020, first $n tokens" "$n" --kv-window 1020 --kv-sinks 4 --max-windows 1
done
# like for like: tokens 513..1023 scored by a streaming cache of 512 (the
# second half of one window of 1024) and by recomputing a window of 512 for
# each (the ids shifted by two: window w predicts token w + 2 + 511)
tail -c +9 "$T/cat.ids" >"$T/shift2.ids"
row "tokens 513..1023: streaming, 4 sinks + 508" 1024 --protocol llamacpp --max-windows 1 --kv-window 508 --kv-sinks 4
row "tokens 513..1023: streaming, no sinks, 512" 1024 --protocol llamacpp --max-windows 1 --kv-window 512 --kv-sinks 0
row "tokens 513..1023: every earlier token" 1024 --protocol llamacpp --max-windows 1
mv "$T/shift2.ids" "$T/cat.ids"
row "tokens 513..1023: sliding-window recomputation of 512" 512 --protocol sliding --stride 1 --max-windows 511
