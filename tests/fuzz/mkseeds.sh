#!/bin/sh
# tests/fuzz/mkseeds.sh - (re)make the seed corpora tests/fuzz/corpus/NAME/
# from real files: the shared models' config, index, tokenizer and
# safetensors headers (trimmed: tensors shrunk to a few elements, the
# vocabulary to its first 400 tokens, so no seed is over 64 KB), and files
# llmq itself writes (packed models, statistics, KLD bases) for a synthetic
# model of the fuzz targets' tiny shape; a few hand-written ones.  Deterministic: running it
# again gives the same files.
#   sh tests/fuzz/mkseeds.sh      (needs `make llmq tools` and python3)
# LLMQ_SHARED: where the shared models are (default ../shared).
set -eu
cd "$(dirname "$0")/../.."
: "${LLMQ_SHARED:=../shared}"
M=$LLMQ_SHARED/models
C=tests/fuzz/corpus
[ -x ./llmq ] && [ -x build/tools/mksynth ] || { echo "mkseeds: run 'make llmq tools' first" >&2; exit 2; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/llmq-seeds-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
rm -rf "$C"
for n in safetensors ckpt json config tokenizer tokenize packed stats kld gguf; do mkdir -p "$C/$n"; done

# ---- trimmed real files (python: safetensors and JSON surgery only)
python3 - "$M" "$C" <<'PY'
import json, struct, sys, os
M, C = sys.argv[1], sys.argv[2]
SIZE = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I8": 1, "U8": 1, "I16": 2, "U16": 2,
        "I32": 4, "U32": 4, "I64": 8, "U64": 8, "BOOL": 1}

def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))

def shrink(h):
    """The same tensors (names, dtypes, ranks, metadata), each shrunk to at
    most 2 elements per dimension, laid out contiguously; data bytes are a
    fixed pattern."""
    out, data, meta = {}, b"", h.get("__metadata__")
    for name in sorted(k for k in h if k != "__metadata__"):
        t = h[name]
        shape = [min(d, 2) for d in t["shape"]]
        n = 1
        for d in shape: n *= d
        nb = n * SIZE[t["dtype"]]
        out[name] = {"dtype": t["dtype"], "shape": shape, "data_offsets": [len(data), len(data) + nb]}
        data += bytes((len(data) + i) * 37 % 251 for i in range(nb))
    if meta is not None: out = {"__metadata__": meta, **out}
    hj = json.dumps(out, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    return struct.pack("<Q", len(hj)) + hj + data

def write(path, b):
    with open(path, "wb") as f: f.write(b)

# safetensors: the shared single-file model, and the first shard of each sharded one
write(f"{C}/safetensors/qwen2-gqa-trimmed.safetensors", shrink(header(f"{M}/tiny-qwen2-gqa/model.safetensors")))
for m in ("tiny-llama-mha", "tiny-llama-long"):
    first = sorted(x for x in os.listdir(f"{M}/{m}") if x.startswith("model-0"))[0]
    write(f"{C}/safetensors/{m}-shard1-trimmed.safetensors", shrink(header(f"{M}/{m}/{first}")))

# ckpt: the real index with every shard trimmed, in the target's one-input form
SEP = b"\n--llmq-fuzz-file--\n"
for m in ("tiny-llama-mha", "tiny-llama-long"):
    ix = open(f"{M}/{m}/model.safetensors.index.json", "rb").read()
    shards = sorted(set(json.loads(ix)["weight_map"].values()))
    parts = [ix] + [shrink(header(f"{M}/{m}/{s}")) for s in shards]
    write(f"{C}/ckpt/{m}-trimmed", SEP.join(parts))

# json and config: the real config.json, index and tokenizer_config.json files
for m in ("tiny-qwen2-gqa", "tiny-llama-mha", "tiny-llama-long"):
    for f in ("config.json", "tokenizer_config.json", "generation_config.json", "model.safetensors.index.json"):
        if os.path.exists(f"{M}/{m}/{f}"):
            b = open(f"{M}/{m}/{f}", "rb").read()
            write(f"{C}/json/{m}-{f}", b)
            if f == "config.json": write(f"{C}/config/{m}-{f}", b)

# tokenizer: the real byte-level BPE tokenizer.json, vocabulary cut to the
# first 400 ids and the merges among them; and variants of its pipeline
tok = json.load(open(f"{M}/tiny-qwen2-gqa/tokenizer.json", encoding="utf-8"))
vocab = {k: v for k, v in tok["model"]["vocab"].items() if v < 400}
merges = []
for mg in tok["model"]["merges"]:
    a, b = mg.split(" ") if isinstance(mg, str) else mg
    if a in vocab and b in vocab and a + b in vocab: merges.append(mg)
tok["model"]["vocab"], tok["model"]["merges"] = vocab, merges
def dump(t): return json.dumps(t, ensure_ascii=False, separators=(",", ":")).encode()
write(f"{C}/tokenizer/qwen2-trimmed.json", dump(tok))
write(f"{C}/json/qwen2-tokenizer-trimmed.json", dump(tok))
GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
LLAMA3 = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
          "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
for name, pre in (("split-llama3", LLAMA3), ("split-gpt2", GPT2)):
    t = json.loads(dump(tok))
    t["normalizer"] = {"type": "NFC"}
    t["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": pre}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    t["post_processor"] = {"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [], "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [t["added_tokens"][0]["id"]],
        "tokens": ["<|endoftext|>"]}}}
    write(f"{C}/tokenizer/qwen2-{name}.json", dump(t))
# with a tokenizer_config.json (the target loads both from files)
cfg = open(f"{M}/tiny-qwen2-gqa/tokenizer_config.json", "rb").read()
write(f"{C}/tokenizer/qwen2-trimmed+config", dump(tok) + SEP + cfg)

# tokenize: real text
def text(path, start, n):
    b = open(path, "rb").read()
    return b[start:start + n]
D = os.path.join(os.path.dirname(M.rstrip("/")), "data")
write(f"{C}/tokenize/dorian-gray-2k.txt", text(f"{D}/eval/dorian_gray.txt", 20000, 2048))
write(f"{C}/tokenize/wikitext2-1k.txt", text(f"{D}/wikitext2-raw-test.txt", 5000, 1024))
write(f"{C}/tokenize/shakespeare-1k.txt", text(f"{D}/tinyshakespeare.txt", 0, 1024))

# ---- hand-written
T = {
    "multilingual": "Grüße aus Köln — 東京は晴れ、明日は雨。 Привет, мир! ¿Qué tal? العربية 한국어 😀👍🏽 e\u0301",
    "code": "def f(x):\n\treturn x**2  # square\r\n\nint main(void) { return 0; }\n    if (a != b && c) {}\n",
    "specials": "<|endoftext|>Hello<|endoftext|> <s>hi</s> <unk> \u2581word  \u2581\u2581x",
    "numbers-spaces": "1234567890 3.14159 1,000,000   \n\n\n   \t\t x'S THEY'LL we'Re I'm",
    "long-word": "a" * 600 + "b" * 600,
}
for k, v in T.items(): write(f"{C}/tokenize/{k}.txt", v.encode())
write(f"{C}/tokenize/invalid-utf8.bin", b"ab\xff\xfe\xc3(\xe2\x82\xf0\x9f\x98 \xed\xa0\x80 \xc0\xaf end")
J = {
    "nested": '{"a":[1,-2.5e-3,true,false,null,{"b":"\\u00e9\\ud83d\\ude00\\n"}],"c":{}}',
    "numbers": '[0,-0,1e308,1E-308,123456789012345678901234567890,0.1,-1.5e+10]',
    "strings": '["", "\\"\\\\\\/\\b\\f\\n\\r\\t", "caf\u00e9", "\\u20ac"]',
    "deep": "[" * 200 + "]" * 200,
    "dup-key": '{"a":1,"a":2}',
    "nul-escape": '{"a":"x\\u0000y"}',
}
for k, v in J.items(): write(f"{C}/json/{k}.json", v.encode())
base = json.load(open(f"{M}/tiny-llama-mha/config.json"))
def cfgv(name, **kw):
    c = dict(base); c.update(kw)
    write(f"{C}/config/{name}.json", json.dumps(c, indent=2).encode())
cfgv("llama3-rope", rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}, rope_theta=500000.0)
cfgv("linear-rope", rope_scaling={"type": "linear", "factor": 2.0})
cfgv("mistral", architectures=["MistralForCausalLM"], model_type="mistral", sliding_window=4096)
cfgv("qwen2-bias", architectures=["Qwen2ForCausalLM"], model_type="qwen2", use_sliding_window=False,
     tie_word_embeddings=True)
cfgv("transformers5", rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, dtype="bfloat16")
# SentencePiece-style tokenizers: Llama 2's pipeline, and Metaspace
SP = "\u2581"
def sp_tok(norm, pre, dec):
    v = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for i in range(256): v["<0x%02X>" % i] = len(v)
    for ch in [SP] + list("abcdefghiklmnoprstuwy.,") : v.setdefault(ch, len(v))
    mg = [(SP, "t"), ("h", "e"), (SP + "t", "he"), ("i", "n"), ("e", "r"), (SP, "a"), ("o", "r"),
          (SP, "w"), (SP + "w", "or"), ("l", "l"), (SP, "h"), (SP + "h", "e"), (SP + "he", "ll"),
          (SP + "hell", "o"), (SP + "wor", "l"), (SP + "worl", "d")]
    for a, b in mg: v.setdefault(a + b, len(v))
    added = [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, c in enumerate(["<unk>", "<s>", "</s>"])]
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": norm, "pre_tokenizer": pre,
            "post_processor": {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
            "decoder": dec,
            "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                      "vocab": v, "merges": [a + " " + b for a, b in mg]}}
L2N = {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": SP},
       {"type": "Replace", "pattern": {"String": " "}, "content": SP}]}
L2D = {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": SP}, "content": " "},
       {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
MS = {"type": "Metaspace", "replacement": SP, "prepend_scheme": "first", "split": False}
write(f"{C}/tokenizer/llama2-sp.json", dump(sp_tok(L2N, None, L2D)))
write(f"{C}/tokenizer/metaspace-sp.json", dump(sp_tok(None, MS, {"type": "Sequence", "decoders": [
      {"type": "ByteFallback"}, {"type": "Fuse"}, MS]})))
write(f"{C}/tokenizer/llama2-sp+config", dump(sp_tok(L2N, None, L2D)) + SEP +
      b'{"add_bos_token":true,"add_eos_token":false,"bos_token":{"content":"<s>","lstrip":false},"eos_token":"</s>"}')
PY

# ---- files llmq writes, for the fuzz targets' tiny model shape
./build/tools/mksynth "$tmp/syn" --hidden 32 --layers 1 --heads 2 --kv-heads 1 --intermediate 64 --vocab 16 >/dev/null
cp "$tmp/syn/model.safetensors" "$C/packed/bf16.safetensors"
cp "$tmp/syn/model.safetensors" "$C/safetensors/mksynth.safetensors"
cp "$tmp/syn/config.json" "$C/config/mksynth-config.json"
for f in "int4 --group 32" "int4 --group 32 --sym" "int8 --quantize-head" "mxint8" "mxint8 --mx-scale ceil" \
         "int3 --group 32" "int3 --group 32 --sym"; do
    name=$(echo "$f" | tr -d ' -')
    ./llmq pack "$tmp/syn" -o "$tmp/p-$name" --format $f >/dev/null
    cp "$tmp/p-$name/model.safetensors" "$C/packed/$name.safetensors"
done
# int3 in the int4 nibble layout of files from before LLMQ_W_Q3
./build/tools/tcheck q3-nibbles "$tmp/p-int3group32/model.safetensors" "$C/packed/int3group32nibbles.safetensors"
cp "$tmp/p-int4group32/model.safetensors" "$C/safetensors/packed-int4.safetensors"
./build/tools/mksynth "$tmp/syn2" --hidden 32 --layers 2 --heads 2 --kv-heads 1 --intermediate 64 --vocab 16 --shards 2 >/dev/null
python3 - "$tmp/syn2" "$C/ckpt/mksynth-2-shards" <<'PY'
import sys, os
d, out = sys.argv[1], sys.argv[2]
parts = [open(f"{d}/model.safetensors.index.json", "rb").read()]
parts += [open(f"{d}/{s}", "rb").read() for s in sorted(os.listdir(d)) if s.endswith(".safetensors")]
open(out, "wb").write(b"\n--llmq-fuzz-file--\n".join(parts))
PY

# statistics: calibrate the same shape (the stats do not depend on vocab;
# calibrate needs a tokenizer, so this model has the shared one's 4096)
./build/tools/mksynth "$tmp/cal" --hidden 32 --layers 1 --heads 2 --kv-heads 1 --intermediate 64 --vocab 4096 \
    --tokenizer "$M/tiny-qwen2-gqa/tokenizer.json" >/dev/null
head -c 4000 "$LLMQ_SHARED/data/tinyshakespeare.txt" >"$tmp/cal.txt"
./llmq calibrate "$tmp/cal" --text "$tmp/cal.txt" --samples 4 --seqlen 16 --keep 4 -o "$C/stats/keep4.safetensors" >/dev/null
./llmq calibrate "$tmp/cal" --text "$tmp/cal.txt" --samples 2 --seqlen 8 --keep 0 -o "$C/stats/keep0.safetensors" >/dev/null
./llmq smooth "$tmp/cal" --stats "$C/stats/keep4.safetensors" -o "$tmp/sm" --stats-out "$C/stats/smoothed.safetensors" >/dev/null 2>&1 ||
    echo "mkseeds: smooth --stats-out failed; no smoothed-stats seed" >&2

# KLD bases: the fuzz target's run (vocab 16, ctx 8, ids (5 i + 3) mod 16)
python3 -c "
import struct, sys
sys.stdout.buffer.write(b''.join(struct.pack('<i', (5 * i + 3) % 16) for i in range(24)))" >"$tmp/ids.bin"
for p in full llamacpp; do
    for k in 1 4; do
        ./llmq verify "$tmp/syn" --ids "$tmp/ids.bin" --ctx 8 --protocol $p --kld-save "$C/kld/$p-top$k.kld" \
            --kld-topk $k >/dev/null
    done
done
cp "$C/kld/full-top4.kld" "$C/safetensors/kld-base.safetensors"

# GGUF: llmq export of a synthetic llama with the small SentencePiece
# tokenizer above (run inside $tmp: llmq.command records the paths given),
# and one hand-written file with every value type
./build/tools/mksynth "$tmp/sp" --hidden 32 --layers 1 --heads 2 --kv-heads 1 --intermediate 64 --vocab 299 \
    --tokenizer "$C/tokenizer/llama2-sp.json" >/dev/null
for ty in q4_0 q8_0 q4_1; do
    (cd "$tmp" && "$OLDPWD/llmq" export sp -o "sp-$ty.gguf" --type $ty >/dev/null)
    cp "$tmp/sp-$ty.gguf" "$C/gguf/export-$ty.gguf"
done
python3 - "$C/gguf/every-type.gguf" <<'PY'
import struct, sys
def s(b): return struct.pack("<Q", len(b)) + b
kv = [(b"general.architecture", 8, s(b"llama")), (b"general.alignment", 4, struct.pack("<I", 64)),
      (b"a.u8", 0, b"\x07"), (b"a.i8", 1, b"\xf9"), (b"a.u16", 2, struct.pack("<H", 700)),
      (b"a.i16", 3, struct.pack("<h", -700)), (b"a.i32", 5, struct.pack("<i", -70000)),
      (b"a.f32", 6, struct.pack("<f", 0.5)), (b"a.bool", 7, b"\x01"), (b"a.u64", 10, struct.pack("<Q", 1 << 40)),
      (b"a.i64", 11, struct.pack("<q", -(1 << 40))), (b"a.f64", 12, struct.pack("<d", 0.25)),
      (b"a.strs", 9, struct.pack("<IQ", 8, 3) + s(b"a") + s(b"") + s(b"\xe2\x96\x81b")),
      (b"a.bools", 9, struct.pack("<IQ", 7, 2) + b"\x00\x01"),
      (b"a.f32s", 9, struct.pack("<IQ", 6, 2) + struct.pack("<ff", 1.0, -1.0))]
ts = [(b"w.f32", [4, 2], 0, 32), (b"w.f16", [8], 1, 16), (b"w.q4_0", [32, 2], 2, 36), (b"w.bf16", [3], 30, 6),
      (b"w.q4_k", [256], 12, 144)]
out = b"GGUF" + struct.pack("<IQQ", 3, len(ts), len(kv))
for k, t, v in kv: out += s(k) + struct.pack("<I", t) + v
off, infos = 0, b""
for n, ne, ty, nb in ts:
    infos += s(n) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne) + struct.pack("<IQ", ty, off)
    off += (nb + 63) // 64 * 64
out += infos
out += b"\0" * (-len(out) % 64)
data = b""
for n, ne, ty, nb in ts: data += bytes((i * 37) & 255 for i in range(nb)) + b"\0" * (-nb % 64)
open(sys.argv[1], "wb").write(out + data)
PY

find "$C" -type f -size +64k -exec echo "mkseeds: {} is over 64 KB" \; >&2
du -sh "$C"
