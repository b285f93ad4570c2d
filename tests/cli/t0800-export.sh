#!/bin/sh
# llmq export: GGUF files that stock llama.cpp (node-llama-cpp's prebuilt CPU
# build, tests/npm) loads and runs.  Perplexity over the same token windows
# (llama-perplexity's protocol, ctx 256, 2 windows of dorian_gray.txt) from
# llama.cpp on the export and from llmq verify on the source must agree
# within 0.3%, per-token log-probs of the f16 exports within 0.05 nats;
# llama.cpp's tokenizer must give llmq's ids; what no GGUF type
# holds exactly is refused with status 5.
. "$(dirname "$0")/../lib.sh"
M=testdata/tiny-qwen2-gqa
L="$SHARED/models/tiny-llama-mha"
NPM=${LLMQ_NPM:-tests/npm/node_modules}
SCORE="node tests/tools/llamacpp-score.mjs"
EVAL="$SHARED/data/eval/dorian_gray.txt"
CALIB="$SHARED/data/train/emma.txt"
FAST="--samples 2 --seqlen 64 --search-tokens 96 --n-grid 4 --loss-windows 1"
WIN="--ctx 256 --max-windows 2"

expect_out 'usage: llmq export' llmq export --help
expect_out 'export' llmq --help

# usage errors: 2
expect_err 2 'missing -o' llmq export $M
expect_code 2 llmq export $M -o "$TMP/x.gguf" --type q5_0
expect_err 2 'refusing to overwrite an input' llmq export $M -o $M/model.safetensors
expect_err 2 'refusing to overwrite an input' llmq export $M -o $M/tokenizer.json
# bad models: 3 missing, 4 malformed
expect_err 3 'nope' llmq export "$TMP/nope" -o "$TMP/x.gguf"
mkdir "$TMP/trunc"; cp $M/config.json $M/tokenizer.json $M/tokenizer_config.json "$TMP/trunc/"
head -c 100000 $M/model.safetensors >"$TMP/trunc/model.safetensors"
expect_err 4 'model.safetensors' llmq export "$TMP/trunc" -o "$TMP/x.gguf"
cp -r $M "$TMP/badcfg"; printf '{"architectures": ["Qwen2ForCausalLM"], ' >"$TMP/badcfg/config.json"
expect_err 4 'config.json' llmq export "$TMP/badcfg" -o "$TMP/x.gguf"
# a byte-level tokenizer whose split pattern llama.cpp has no name for: 5
cp -r $M "$TMP/tokpat"
python3 - "$M/tokenizer.json" "$TMP/tokpat/tokenizer.json" <<'EOF'
import json, sys
t = json.load(open(sys.argv[1]))
t["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": "\\s+|\\S+"}, "behavior": "Isolated", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
json.dump(t, open(sys.argv[2], "w"))
EOF
expect_err 5 'split pattern is none of' llmq export "$TMP/tokpat" -o "$TMP/x.gguf"
cp -r $M "$TMP/tokpfx"
python3 -c 'import json, sys
t = json.load(open(sys.argv[1])); t["pre_tokenizer"]["add_prefix_space"] = True
json.dump(t, open(sys.argv[2], "w"))' "$M/tokenizer.json" "$TMP/tokpfx/tokenizer.json"
expect_err 5 'adds a prefix space' llmq export "$TMP/tokpfx" -o "$TMP/x.gguf"
check "failed exports leave no output" test ! -e "$TMP/x.gguf"

# the source models the exports come from
expect_code 0 llmq pack $M -o "$TMP/q8" --format int8
expect_code 0 llmq pack $M -o "$TMP/mx" --format mxint8
expect_code 0 llmq pack $M -o "$TMP/s64" --format int4 --sym --group 64
expect_code 0 llmq awq $M -o "$TMP/a32" --text "$CALIB" --group 32 $FAST
expect_code 0 llmq awq $M -o "$TMP/as32" --text "$CALIB" --group 32 --sym $FAST
# GPTQ's symmetric codes use -8 (code 0), which round to nearest never does
expect_code 0 llmq awq $M -o "$TMP/gs32" --text "$CALIB" --group 32 --sym --gptq $FAST

# what no type holds exactly: 5, one line saying why, no output
expect_err 5 'int8 scale .* is no f16 value' llmq export "$TMP/q8" -o "$TMP/x.gguf"
expect_err 5 'asymmetric int4 .* Q4_0 .* cannot hold exactly' llmq export "$TMP/a32" -o "$TMP/x.gguf" --type q4_0
expect_err 5 'int8, which a 4-bit type cannot hold' llmq export "$TMP/q8" -o "$TMP/x.gguf" --type q4_1
expect_err 5 'not to a float type' llmq export "$TMP/s64" -o "$TMP/x.gguf" --type f16
# a scale of 65504 with zero point 15: m = -s*z overflows f16 (Q8_0 holds it)
cp -r "$TMP/a32" "$TMP/huge"
build/tools/tcheck poke-crc "$TMP/huge/model.safetensors" model.layers.0.self_attn.q_proj.scales 0 7bff
build/tools/tcheck poke-crc "$TMP/huge/model.safetensors" model.layers.0.self_attn.q_proj.zeros 0 0f
expect_err 5 "q_proj' row 0: -scale \* zero overflows f16" llmq export "$TMP/huge" -o "$TMP/x.gguf"
check "refused exports leave no output" test ! -e "$TMP/x.gguf"
expect_out '"file_type":"Q8_0","exact":true' llmq export "$TMP/huge" -o "$TMP/huge.gguf" --type q8_0 --json

# exports: NAME SOURCE TYPE FILE_TYPE EXACT
while read -r name src type ft exact; do
    expect_out "\"file_type\":\"$ft\",\"exact\":$exact" llmq export "$src" -o "$TMP/$name.gguf" --type "$type" --json
    check "$name.gguf starts GGUF v3" sh -c "head -c 8 '$TMP/$name.gguf' | od -An -tx1 | grep -q '47 47 55 46 03 00 00 00'"
    check "$name.gguf records its source" grep -q 'llmq.source_digest' "$TMP/$name.gguf"
done <<EOF
qwen-f16 $M f16 F16 false
qwen-bf16 $M auto BF16 true
qwen-q8 $TMP/q8 q8_0 Q8_0 false
qwen-mx $TMP/mx auto Q8_0 true
qwen-s64 $TMP/s64 auto Q4_0 true
qwen-a32 $TMP/a32 auto Q4_1 false
qwen-a32q8 $TMP/a32 q8_0 Q8_0 true
qwen-as32 $TMP/as32 auto Q4_0 true
qwen-gs32 $TMP/gs32 auto Q4_0 true
EOF
expect_out '"q8_0_scale_max_rel_err":0\.000[0-4]' llmq export "$TMP/q8" -o "$TMP/qwen-q8.gguf" --type q8_0 --json
expect_out '"q4_1_m_max_abs_err":[0-9.e-]+' llmq export "$TMP/a32" -o "$TMP/qwen-a32.gguf" --json
check "the AWQ export names its method and calibration text" sh -c \
    "grep -q 'llmq.method' '$TMP/qwen-a32.gguf' && grep -q 'awq' '$TMP/qwen-a32.gguf' && grep -q 'llmq.calib_text_sha256' '$TMP/qwen-a32.gguf'"

if [ ! -d "$NPM/node-llama-cpp" ] || [ ! -f "$EVAL" ]; then
    not_ok "llama.cpp runs need $NPM/node-llama-cpp (the README's first command) and $EVAL"
    finish; exit
fi
llmq tokenize $M "$EVAL" --ids-out "$TMP/ids.bin"

# ppl_close DESC GGUF SOURCE [verify options]: llama.cpp on GGUF and llmq
# verify on SOURCE, same windows, within 0.3%
ppl_close() {
    d=$1; g=$2; s=$3; shift 3
    a=$(llmq verify "$s" --ids "$TMP/ids.bin" --protocol llamacpp $WIN --json "$@" | sed -n 's/.*"perplexity":\([0-9.e+-]*\).*/\1/p')
    b=$($SCORE "$g" "$TMP/ids.bin" $WIN 2>"$TMP/score.err" | sed -n 's/.*"ppl":\([0-9.e+-]*\).*/\1/p')
    echo "$d: llmq $a, llama.cpp $b"
    if [ -n "$a" ] && [ -n "$b" ] && awk -v a="$a" -v b="$b" 'BEGIN { r = b / a - 1; exit !(r < 0.003 && r > -0.003) }'; then ok; else
        not_ok "$d: llama.cpp perplexity '$b' is not within 0.3% of llmq's '$a'"; head -5 "$TMP/score.err"
    fi
}
# per-token log-probabilities: llmq verify --kld-save keeps each scored
# token's nll, node-llama-cpp writes llama.cpp's log-probs of the same tokens
logprobs_close() {  # DESC GGUF SOURCE MAX MEAN
    llmq verify "$3" --ids "$TMP/ids.bin" --protocol llamacpp $WIN --kld-save "$TMP/lp.st" >/dev/null 2>&1
    $SCORE "$2" "$TMP/ids.bin" $WIN --logprobs-out "$TMP/lp.txt" >/dev/null 2>&1
    r=$(python3 - "$TMP/lp.st" "$TMP/lp.txt" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
t = json.loads(b[8:8 + n])["nll"]
s, e = t["data_offsets"]
nll = struct.unpack("<%df" % ((e - s) // 4), b[8 + n + s:8 + n + e])
lp = [float(x) for x in open(sys.argv[2])]
assert len(lp) == len(nll) > 0, (len(lp), len(nll))
d = [abs(a + c) for a, c in zip(nll, lp)]
print("%d %.6f %.6f" % (len(d), max(d), sum(d) / len(d)))
PY
)
    echo "$1: tokens, max and mean |log p difference|: $r"
    if [ -n "$r" ] && echo "$r" | awk -v mx="$4" -v mn="$5" '{ exit !($2 <= mx && $3 <= mn) }'; then ok; else
        not_ok "$1: per-token log-probs differ more than $4 (max) / $5 (mean): '$r'"; fi
}
ppl_close "qwen2 f16" "$TMP/qwen-f16.gguf" $M
logprobs_close "qwen2 f16" "$TMP/qwen-f16.gguf" $M 0.05 0.003
ppl_close "qwen2 bf16" "$TMP/qwen-bf16.gguf" $M
ppl_close "qwen2 int8 -> q8_0" "$TMP/qwen-q8.gguf" "$TMP/q8"
ppl_close "qwen2 mxint8 -> q8_0" "$TMP/qwen-mx.gguf" "$TMP/mx"
ppl_close "qwen2 int4 sym g64 -> q4_0" "$TMP/qwen-s64.gguf" "$TMP/s64"
ppl_close "qwen2 awq int4 asym g32 -> q4_1" "$TMP/qwen-a32.gguf" "$TMP/a32"
ppl_close "qwen2 awq int4 sym g32 -> q4_0" "$TMP/qwen-as32.gguf" "$TMP/as32"
ppl_close "qwen2 awq+gptq int4 sym g32 -> q4_0" "$TMP/qwen-gs32.gguf" "$TMP/gs32"

# checkpoints rounded to Q8_0 / Q4_0 / Q4_1: byte for byte the blocks of
# ggml's own reference quantizers (node-llama-cpp's libggml-base), and run
GGML=$(ls "$NPM"/@node-llama-cpp/linux-x64/bins/*/libggml-base.so 2>/dev/null | head -n 1)
for t in q8_0 q4_0 q4_1; do
    expect_code 0 llmq export $M -o "$TMP/qwen-rtn-$t.gguf" --type $t
    if [ -n "$GGML" ]; then
        check "qwen2 $t: ggml's quantize_row_${t}_ref blocks" build/tools/ggml-qcheck "$GGML" $M "$TMP/qwen-rtn-$t.gguf"
    else
        not_ok "no libggml-base.so under $NPM/@node-llama-cpp/linux-x64"
    fi
done
b=$($SCORE "$TMP/qwen-rtn-q4_0.gguf" "$TMP/ids.bin" $WIN | sed -n 's/.*"ppl":\([0-9.e+-]*\).*/\1/p')
check "llama.cpp runs the rtn q4_0 export (ppl $b)" awk -v b="$b" 'BEGIN { exit !(b > 30 && b < 60) }'

# llama.cpp's tokenizer from the GGUF metadata gives llmq's ids (prose,
# code and text in several scripts from testdata/tok)
{ head -c 4000 "$EVAL" | tr -d '\r'; cat testdata/tok/code.txt testdata/tok/multilingual.txt; } >"$TMP/sample.txt"
printf "It's 1234 dollars,  don't\n\n  you think?\tHello!! \303\251\303\240 \346\274\242\345\255\227 <|endoftext|> x" >>"$TMP/sample.txt"
tok_same() {  # DESC MODEL GGUF
    llmq tokenize "$2" "$TMP/sample.txt" | tr '\n' ',' | sed 's/,$//' >"$TMP/tok-a"
    $SCORE "$3" --tokenize-file "$TMP/sample.txt" | tr -d '[] \n' >"$TMP/tok-b"
    check "$1: llama.cpp tokenizes as llmq" cmp -s "$TMP/tok-a" "$TMP/tok-b"
}
tok_same "gpt2 (gpt-2 pre)" $M "$TMP/qwen-f16.gguf"

if [ -d "$L" ]; then
    # llama: q/k rows permuted to llama.cpp's rotary layout, untied head
    expect_code 0 llmq export "$L" -o "$TMP/mha-f16.gguf" --type f16
    ppl_close "llama mha f16" "$TMP/mha-f16.gguf" "$L"
    logprobs_close "llama mha f16" "$TMP/mha-f16.gguf" "$L" 0.05 0.003
    expect_code 0 llmq export "$L" -o "$TMP/mha-q4_1.gguf" --type q4_1
    [ -n "$GGML" ] && check "llama q4_1 (q/k rows reordered): ggml's blocks" build/tools/ggml-qcheck "$GGML" "$L" "$TMP/mha-q4_1.gguf"
    expect_code 0 llmq awq "$L" -o "$TMP/ma32" --text "$CALIB" --group 32 $FAST
    expect_code 0 llmq export "$TMP/ma32" -o "$TMP/mha-a32.gguf"
    ppl_close "llama mha awq int4 g32 -> q4_1" "$TMP/mha-a32.gguf" "$TMP/ma32"
    # Llama 3 rope scaling: the rope_freqs tensor (the default rope scores
    # this text far apart, so a wrong table cannot pass)
    mkdir "$TMP/l3"
    for f in "$L"/*; do ln -s "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$TMP/l3/"; done
    rm "$TMP/l3/config.json"
    sed 's/"rope_type": "default"/"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64/' \
        "$L/config.json" >"$TMP/l3/config.json"
    # Mistral as llama: its sliding window becomes the declared context,
    # within which llama.cpp's full attention is the same attention
    mkdir "$TMP/mis"
    for f in "$L"/*; do ln -s "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$TMP/mis/"; done
    rm "$TMP/mis/config.json"
    sed 's/LlamaForCausalLM/MistralForCausalLM/; s/"max_position_embeddings": 1024,/"max_position_embeddings": 1024, "sliding_window": 128,/' \
        "$L/config.json" >"$TMP/mis/config.json"
    expect_code 0 llmq export "$TMP/mis" -o "$TMP/mis.gguf" --type f16
    check "mis.gguf records the window" grep -q 'llmq.sliding_window' "$TMP/mis.gguf"
    WIN="--ctx 128 --max-windows 2"
    ppl_close "mistral (window 128) f16, ctx 128" "$TMP/mis.gguf" "$TMP/mis"
    WIN="--ctx 256 --max-windows 2"
    expect_code 0 llmq export "$TMP/l3" -o "$TMP/l3.gguf" --type f16
    check "l3.gguf has rope_freqs" grep -q 'rope_freqs.weight' "$TMP/l3.gguf"
    ppl_close "llama3 rope f16" "$TMP/l3.gguf" "$TMP/l3"
fi

# SentencePiece-style BPE ("llama" tokenizer model with scores, byte tokens;
# Llama 2's Prepend/Replace normalizer and Mistral 7B's Metaspace) and the
# Llama 3 split: synthetic models carrying released tokenizers
zcat testdata/tok/mistral-7b-v0.1/tokenizer.json.gz >"$TMP/mistral-tokenizer.json"
for t in llama2:32000 llama3:128256 mistral:32000; do
    n=${t%%:*}; v=${t##*:}
    tj="$NPM/@lenml/tokenizer-$n/models/tokenizer.json"
    [ $n = mistral ] && tj="$TMP/mistral-tokenizer.json"   # Metaspace pre-tokenizer
    [ -f "$tj" ] || { not_ok "missing $tj"; continue; }
    build/tools/mksynth "$TMP/syn-$n" --hidden 64 --layers 1 --heads 2 --kv-heads 2 --intermediate 128 \
        --vocab $v --shards 1 --tokenizer "$tj" >/dev/null
    expect_code 0 llmq export "$TMP/syn-$n" -o "$TMP/syn-$n.gguf"
    tok_same "$n" "$TMP/syn-$n" "$TMP/syn-$n.gguf"
done
finish
