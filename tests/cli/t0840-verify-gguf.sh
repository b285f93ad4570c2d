#!/bin/sh
# llmq verify FILE.gguf: llmq's runner on GGUF files.  Exports of llmq's own
# models must score what their sources score (within 0.01%), every verify
# mode must work on them, and hostile or contradictory files (made by
# tests/tools/gguf-mutate.py from a good one) must be refused with one line
# naming the file and a documented status, never a crash.
. "$(dirname "$0")/../lib.sh"
M=testdata/tiny-qwen2-gqa
L="$SHARED/models/tiny-llama-mha"
EVAL="$SHARED/data/eval/dorian_gray.txt"
CALIB="$SHARED/data/train/emma.txt"
MUT="python3 tests/tools/gguf-mutate.py"
WIN="--protocol llamacpp --ctx 256 --max-windows 3"
FAST="--samples 2 --seqlen 64 --search-tokens 96 --n-grid 4 --loss-windows 1"

G="$TMP/q.gguf"
expect_code 0 llmq export $M -o "$G" --type auto
expect_out 'gguf BF16' llmq verify "$G"
expect_out 'tokenizer DIR' llmq verify --help

# ---- what verify must refuse ----
SIZE=$(wc -c <"$G")
bad() {  # STATUS PATTERN MUTATION ARGS...: the mutated file is refused
    st=$1; pat=$2; shift 2
    $MUT "$G" "$TMP/bad.gguf" "$@" || { not_ok "gguf-mutate $*"; return; }
    expect_err "$st" "bad.gguf.*$pat" llmq verify "$TMP/bad.gguf"
}
bad 4 'more than the rest of the file can hold' truncate 1000
bad 4 'run past the data area' truncate $((SIZE - 1000))
bad 4 'key-value pairs: more than' n-kv 1099511627776
bad 4 'tensors: more than' n-tensors 1099511627776
bad 4 'tokenizer.ggml.tokens' arr-count tokenizer.ggml.tokens 1152921504606846976
bad 4 'token_embd.weight' t-offset token_embd.weight 1099511627776
bad 4 'n_dims' t-ndims blk.0.attn_q.weight 5
bad 4 "qwen2.block_count' is a string" kv-set qwen2.block_count str 6
bad 4 "embedding_length' is missing" kv-del qwen2.embedding_length
bad 4 "general.architecture' is missing" kv-del general.architecture
bad 5 "architecture 'gpt2' is not supported" kv-set general.architecture str gpt2
bad 4 "token_embd.weight' has ne \\[256, 4096\\], the metadata implies \\[384, 4096\\]" kv-set qwen2.embedding_length u32 384
NL=$(sed -n 's/.*"num_hidden_layers": *\([0-9]*\).*/\1/p' $M/config.json)
bad 4 "missing tensor 'blk.$NL.attn_q.weight'" kv-set qwen2.block_count u32 $((NL + 1))
bad 4 "'blk.$((NL - 1))\.[a-z_]*.weight' is not part of a $((NL - 1))-layer" kv-set qwen2.block_count u32 $((NL - 1))
bad 4 'head_count_kv' kv-set qwen2.attention.head_count_kv u32 3
bad 5 'partial rotary' kv-set qwen2.rope.dimension_count u32 16
bad 5 "rope scaling 'yarn'" kv-set qwen2.rope.scaling.type str yarn
bad 4 "missing tensor 'blk.0.ffn_up.weight'" t-rename blk.0.ffn_up.weight blk.0.ffn_upx.weight
bad 4 "'blk.0.ffn_upx.weight' is not part" t-add blk.0.ffn_up.weight blk.0.ffn_upx.weight
bad 4 "'blk.00.ffn_up.weight' is not part" t-add blk.0.ffn_up.weight blk.00.ffn_up.weight
bad 5 'IQ2_XXS is not supported' t-type blk.0.ffn_up.weight 16
bad 4 'type' t-type blk.0.ffn_up.weight 99
bad 7 "attn_q.weight': element 0 is NaN" poke blk.0.attn_q.weight 0 c07f
bad 7 "output_norm.weight': element 1 is NaN" poke output_norm.weight 4 0000c07f
# a GGUF where a command needs a Hugging Face checkpoint: 5, one line
expect_err 5 'a GGUF file' llmq awq "$G" -o "$TMP/x" --text "$CALIB"
expect_err 5 'a GGUF file' llmq pack "$G" -o "$TMP/x"

# ---- exports score what their sources score ----
# same: DESC GGUF SOURCE [verify options]: perplexity within 0.01%
same() {
    d=$1; g=$2; s=$3; shift 3
    a=$(llmq verify "$s" --text "$EVAL" $WIN --json "$@" | sed -n 's/.*"perplexity":\([0-9.e+-]*\).*/\1/p')
    b=$(llmq verify "$g" --text "$EVAL" $WIN --json "$@" 2>"$TMP/v.err" | sed -n 's/.*"perplexity":\([0-9.e+-]*\).*/\1/p')
    echo "$d: source $a, gguf $b"
    if [ -n "$a" ] && [ -n "$b" ] && awk -v a="$a" -v b="$b" 'BEGIN { r = b / a - 1; exit !(r < 1e-4 && r > -1e-4) }'; then ok; else
        not_ok "$d: perplexity of the GGUF '$b' is not within 0.01% of the source's '$a'"; head -3 "$TMP/v.err"; fi
}
same "qwen2 bf16 (tokenizer from the GGUF)" "$G" $M
same "qwen2 bf16 (--tokenizer)" "$G" $M --tokenizer $M
expect_code 0 llmq export $M -o "$TMP/q16.gguf" --type f16
same "qwen2 f16" "$TMP/q16.gguf" $M
expect_code 0 llmq export "$L" -o "$TMP/l.gguf" --type f32
same "llama mha f32 (q/k rows back in HF order)" "$TMP/l.gguf" "$L"

# Llama 3.1 rope scaling travels as rope_freqs.weight divisors
cp -r "$L" "$TMP/l3"
python3 -c 'import json, sys
c = json.load(open(sys.argv[1]))
c["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
                        "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
json.dump(c, open(sys.argv[1], "w"))' "$TMP/l3/config.json"
expect_code 0 llmq export "$TMP/l3" -o "$TMP/l3.gguf" --type f32
check "the llama3 export carries rope_freqs" grep -q rope_freqs.weight "$TMP/l3.gguf"
same "llama3 rope (rope_freqs)" "$TMP/l3.gguf" "$TMP/l3"

# packed sources: int8 -> Q8_0, mxint8 -> Q8_0, int4 sym -> Q4_0, AWQ asym -> Q4_1
expect_code 0 llmq pack $M -o "$TMP/q8" --format int8
expect_code 0 llmq pack $M -o "$TMP/mx" --format mxint8
expect_code 0 llmq awq $M -o "$TMP/s32" --text "$CALIB" --group 32 --sym $FAST
expect_code 0 llmq awq $M -o "$TMP/a32" --text "$CALIB" --group 32 $FAST
expect_code 0 llmq awq "$L" -o "$TMP/la" --text "$CALIB" --group 32 $FAST
expect_code 0 llmq awq $M -o "$TMP/gs32" --text "$CALIB" --group 32 --sym --gptq $FAST
for p in "q8 q8_0" "mx auto" "s32 auto" "a32 auto" "la auto" "gs32 auto"; do
    set -- $p
    expect_code 0 llmq export "$TMP/$1" -o "$TMP/$1.gguf" --type "$2"
    same "$1 -> $2" "$TMP/$1.gguf" "$TMP/$1"
done
# a NaN block scale of a quantized tensor (Q4_1's d) is refused like a NaN weight
$MUT "$TMP/a32.gguf" "$TMP/bad.gguf" poke blk.0.ffn_down.weight 20 007e
expect_err 7 "ffn_down.weight': the scale of block 1 is NaN" llmq verify "$TMP/bad.gguf"

# ---- every mode ----
expect_code 0 llmq verify $M --text "$EVAL" $WIN --kld-save "$TMP/base.kld"
expect_out '"kld_mean":0[,.]' llmq verify "$G" --text "$EVAL" $WIN --kld "$TMP/base.kld" --json
expect_out '"kld_mean":0\.0' llmq verify "$TMP/a32.gguf" --text "$EVAL" $WIN --kld "$TMP/base.kld" --json
a=$(llmq verify $M --gen "The old house" --n 12 --json | sed -n 's/.*"gen_ids":\(\[[^]]*\]\).*/\1/p')
b=$(llmq verify "$G" --gen "The old house" --n 12 --json | sed -n 's/.*"gen_ids":\(\[[^]]*\]\).*/\1/p')
check "greedy ids of the GGUF ($b) are the source's ($a)" test -n "$a" -a "$a" = "$b"
expect_out '"decode_tok_s":[0-9]' llmq verify "$TMP/s32.gguf" --bench --json
finish
