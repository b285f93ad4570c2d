#!/bin/sh
# bench/kv-speed.sh - decode speed at long contexts with llmq's KV caches
# and llama.cpp's quantized caches on the same CPU (issue 21's table).
#
# Model: the synthetic 1.1B shape (build/tools/mksynth) with 16512
# positions (16K of context and the 128 decoded), int4 weights:
#   llmq:       llmq pack --format int4, then per context D and cache X
#               llmq verify M --bench --bench-ctx D --act int8 --kv-cache X --json
#               (128 decode steps after D positions of a zeroed cache: a step
#               reads every position whatever it holds; X in bf16 int8 int4 int2)
#   llama.cpp:  llama-quantize Q4_0 of llmq export --type f16, then
#               llama-bench -m Q4_0 -p 0 -n 32 -d D -ctk X -ctv X -fa on -t 2 -r 1 -o json
#               (llama-bench prefills the D tokens before timing; X in f16 q8_0 q4_0)
# Rounds interleave the two; the table gives each round's tok/s.
#   LLAMA_CPP  llama.cpp's binaries (unset: llmq only)
#   DEPTHS     default "1024 4096 16384";  ROUNDS default 1;  THREADS default 2
#   LLMQ_KV    default "bf16 int8 int4 int2";  LCPP_KV  default "f16 q8_0 q4_0"
#   LCPP_SKIP  "KV:DEPTH ..." pairs llama.cpp does not run (a '-' in the
#              table): its prefill into a quantized cache is slow at 16K
#              (about an hour for q4_0 on a 2-core host)
. "$(dirname "$0")/lib.sh"
DEPTHS=${DEPTHS:-"1024 4096 16384"}
ROUNDS=${ROUNDS:-1}
TH=${THREADS:-2}
LLMQ_KV=${LLMQ_KV:-"bf16 int8 int4 int2"}
LCPP_KV=${LCPP_KV:-"f16 q8_0 q4_0"}
OUT=build/bench
SYN=$OUT/synth-16k
mkdir -p "$OUT"
if [ ! -f "$SYN/config.json" ]; then
    echo "(writing the synthetic 1.1B-shape checkpoint with 16512 positions to $SYN)" >&2
    build/tools/mksynth "$SYN" --max-pos 16512 --tokenizer "$SHARED/models/tiny-llama-mha/tokenizer.json" >&2 || exit 2
fi
[ -f "$SYN-int4/model.safetensors" ] || $LLMQ pack "$SYN" -o "$SYN-int4" --format int4 || exit 2
bench_tmp kvspeed
if [ -n "${LLAMA_CPP:-}" ]; then
    $LLMQ export "$SYN" --type f16 -o "$T/f16.gguf" || exit 2
    "$LLAMA_CPP/llama-quantize" "$T/f16.gguf" "$T/q4_0.gguf" Q4_0 "$TH" >"$T/q.log" 2>&1 ||
        { tail -5 "$T/q.log" >&2; exit 2; }
    rm -f "$T/f16.gguf"
fi
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
echo "#### decode tok/s, 1.1B shape, int4 weights, $TH threads; $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -m), $cpu"
echo
printf '| round | engine | KV cache |'
for d in $DEPTHS; do printf ' %s |' "$d"; done
echo
printf '|---|---|---|'
for d in $DEPTHS; do printf -- '---:|'; done
echo
r=1
while [ $r -le "$ROUNDS" ]; do
    for x in $LLMQ_KV; do
        printf '| %s | llmq | %s |' "$r" "$x"
        for d in $DEPTHS; do
            $LLMQ verify "$SYN-int4" --bench --bench-ctx "$d" --act int8 --kv-cache "$x" --threads "$TH" --json \
                >"$T/v.json" || exit 1
            printf ' %s |' "$(f2 "$(j "$T/v.json" decode_tok_s)")"
        done
        echo
    done
    if [ -n "${LLAMA_CPP:-}" ]; then
        for x in $LCPP_KV; do
            printf '| %s | llama.cpp | %s |' "$r" "$x"
            for d in $DEPTHS; do
                case " ${LCPP_SKIP:-} " in *" $x:$d "*) printf ' - |'; continue ;; esac
                "$LLAMA_CPP/llama-bench" -m "$T/q4_0.gguf" -p 0 -n 32 -d "$d" -ctk "$x" -ctv "$x" -fa on -t "$TH" -r 1 \
                    -o json >"$T/b.json" 2>"$T/b.err" || { tail -3 "$T/b.err" >&2; exit 1; }
                printf ' %s |' "$(python3 -c 'import json,sys; print("%.2f" % json.load(open(sys.argv[1]))[0]["avg_ts"])' "$T/b.json")"
            done
            echo
        done
    fi
    r=$((r + 1))
done
