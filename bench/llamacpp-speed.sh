#!/bin/sh
# bench/llamacpp-speed.sh - llama.cpp and llmq side by side on this host
# (issue 20's table): the synthetic 1.1B-shape checkpoint (bench/run.sh's,
# build/tools/mksynth), 2 threads, prefill of 512 tokens and decode of 128.
#   llama.cpp:  llama-bench -m FILE -p 512 -n 128 -t 2 -r 1 -o json
#               F16 = llmq export --type f16 of the checkpoint; Q8_0, Q4_0 =
#               llama-quantize of that F16 file
#   llmq:       llmq verify MODEL --bench --json --threads 2
#               bf16 = the checkpoint, with fp32 activations (the default)
#               and with --act bf16; int8, int4 (g128) = llmq pack of it,
#               both with --act int8 (W8A8, W4A8); int4 also with its LM
#               head in int4 (--quantize-head: llama-quantize's Q4_0 file
#               holds its head in Q6_K)
# Each round runs every llama.cpp / llmq pair back to back; the table gives
# each round's tok/s and the ratio llmq / llama.cpp of the medians.  On 2
# shared cores single numbers are noisy: read the ratios.
#   LLAMA_CPP   llama.cpp's binaries (llama-bench, llama-quantize); unset:
#               this table is skipped.  bench/llamacpp-build.sh builds them
#               from source outside the repository.
#   ROUNDS      rounds (default 2);  THREADS  threads (default 2)
#   LLMQ_ISA=avx2 (with a llama.cpp built by ISA=avx2 bench/llamacpp-build.sh):
#               the AVX2 table on an AVX-512 host
. "$(dirname "$0")/lib.sh"
if [ -z "${LLAMA_CPP:-}" ]; then
    echo "(llama.cpp side by side: skipped, set LLAMA_CPP=path/to/llama.cpp/bin)"
    exit 0
fi
B=$LLAMA_CPP
for x in llama-bench llama-quantize; do
    [ -x "$B/$x" ] || { echo "bench/llamacpp-speed.sh: no $B/$x (bench/llamacpp-build.sh builds it)" >&2; exit 2; }
done
ROUNDS=${ROUNDS:-2}
TH=${THREADS:-2}
OUT=build/bench
SYN=$OUT/synth-1b
mkdir -p "$OUT"
if [ ! -f "$SYN/config.json" ]; then
    echo "(writing the synthetic 1.1B-shape checkpoint to $SYN)" >&2
    build/tools/mksynth "$SYN" --tokenizer "$SHARED/models/tiny-llama-mha/tokenizer.json" >&2 || exit 2
fi
bench_tmp lspeed
# the files, once
$LLMQ export "$SYN" --type f16 -o "$T/f16.gguf" || exit 2
for q in Q8_0 Q4_0; do
    "$B/llama-quantize" "$T/f16.gguf" "$T/$q.gguf" "$q" "$TH" >"$T/quantize.log" 2>&1 ||
        { echo "llama-quantize $q failed:" >&2; tail -5 "$T/quantize.log" >&2; exit 2; }
done
for f in int8 int4; do
    [ -f "$OUT/synth-$f/model.safetensors" ] || $LLMQ pack "$SYN" -o "$OUT/synth-$f" --format "$f" || exit 2
done
# llama-quantize stores the LM head of a Q4_0 file as Q6_K: the row with
# llmq's LM head in int4 too reads about what llama.cpp's file does
[ -f "$OUT/synth-int4h/model.safetensors" ] || $LLMQ pack "$SYN" -o "$OUT/synth-int4h" --format int4 --quantize-head || exit 2

# one pair: KEY GGUF LLMQ_MODEL [verify options]; appends "KEY r lpp ltg mpp mtg"
pair() {
    key=$1 g=$2 m=$3 r=$4; shift 4
    "$B/llama-bench" -m "$g" -p 512 -n 128 -t "$TH" -r 1 -o json >"$T/lb.json" 2>"$T/lb.err" ||
        { echo "llama-bench $g failed:" >&2; tail -5 "$T/lb.err" >&2; exit 2; }
    $LLMQ verify "$m" --bench --json --threads "$TH" "$@" >"$T/lv.json" || exit 2
    python3 - "$T/lb.json" "$T/lv.json" "$key" "$r" >>"$T/rows" <<'EOF'
import json, sys
lb, lv = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
pp = [t["avg_ts"] for t in lb if t["n_prompt"] > 0 and t["n_gen"] == 0]
tg = [t["avg_ts"] for t in lb if t["n_gen"] > 0 and t["n_prompt"] == 0]
print(sys.argv[3], sys.argv[4], pp[0], tg[0], lv["prefill_tok_s"], lv["decode_tok_s"], lb[0].get("build_commit", "?"))
EOF
}

: >"$T/rows"
r=1
while [ $r -le "$ROUNDS" ]; do
    pair 4bit "$T/Q4_0.gguf" "$OUT/synth-int4" $r --act int8
    pair 4bith "$T/Q4_0.gguf" "$OUT/synth-int4h" $r --act int8
    pair 8bit "$T/Q8_0.gguf" "$OUT/synth-int8" $r --act int8
    pair 16bit "$T/f16.gguf" "$SYN" $r
    pair 16bitb "$T/f16.gguf" "$SYN" $r --act bf16
    r=$((r + 1))
done
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
isa=$(grep -qw avx512_vnni /proc/cpuinfo && echo "AVX-512 VNNI" || echo "AVX2")
# the AVX2 table on an AVX-512 host: llmq's AVX2 kernels, llama.cpp built with ISA=avx2
[ "${LLMQ_ISA:-}" = avx2 ] && isa="AVX2 code paths on an AVX-512 host: LLMQ_ISA=avx2, llama.cpp built without AVX-512"
[ -n "${LLMQ_ISA:-}" ] && [ "${LLMQ_ISA:-}" != avx2 ] && isa="$isa, LLMQ_ISA=$LLMQ_ISA"
lc=$(awk 'NR == 1 { print $7 }' "$T/rows")
echo "### llama.cpp and llmq side by side: synthetic 1.1B shape, $TH threads, $ROUNDS rounds ($cpu, $isa)"
echo
echo "llama.cpp: \`llama-bench -p 512 -n 128 -t $TH -r 1\` (build $lc); llmq: \`llmq verify --bench --threads $TH\`. tok/s of each round; ratio = llmq / llama.cpp of the medians."
echo
echo "| | llama.cpp | llmq | ratio |"
echo "|---|---|---|---|"
python3 - "$T/rows" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
names = {"4bit": ("4-bit", "Q4_0", "int4 g128 --act int8"), "4bith": ("4-bit", "Q4_0", "int4 g128 --quantize-head --act int8"), "8bit": ("8-bit", "Q8_0", "int8 --act int8"),
         "16bit": ("16-bit", "F16", "bf16"), "16bitb": ("16-bit", "F16", "bf16 --act bf16")}
for key in ("4bit", "4bith", "8bit", "16bit", "16bitb"):
    rs = [r for r in rows if r[0] == key]
    for what, li, mi in (("decode", 3, 5), ("prefill", 2, 4)):
        l = [float(r[li]) for r in rs]; m = [float(r[mi]) for r in rs]
        n, lt, mt = names[key]
        print("| %s %s (%s vs %s) | %s | %s | %.2f |" % (n, what, lt, mt, " / ".join("%.1f" % x for x in l),
              " / ".join("%.1f" % x for x in m), statistics.median(m) / statistics.median(l)))
EOF
echo
