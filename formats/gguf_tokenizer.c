/*
 * gguf_tokenizer.c - the tokenizer of a GGUF file's metadata, as llama.cpp
 * reads it (llama-vocab.cpp), built as the equivalent tokenizer.json tree and
 * loaded by formats/tokenizer.c, so that normalization, pre-tokenization,
 * added-token matching, BPE and decoding are the code tokenizer.json uses.
 *
 * What a tokenizer.json cannot say is set through the tokenizer's own
 * calls: the merges (llmq_tok_set_merges: SentencePiece ranks tie) and the
 * special ids (llmq_tok_set_special).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "gguf_tokenizer.h"
#include "../lib/base/llmq-int.h"

#define TOK_MAX (1u << 24)      /* formats/tokenizer.c's TOK_MAX_ID */

/* llama.cpp's token types (tokenizer.ggml.token_type) */
enum { TT_UNDEFINED = 0, TT_NORMAL, TT_UNKNOWN, TT_CONTROL, TT_USER, TT_UNUSED, TT_BYTE };

/* ---- pre-tokenizers ----
 * The Split regexes are Hugging Face's (Oniguruma) spellings of the ones
 * llama.cpp runs for each pre type (llm_tokenizer_bpe), applied in order;
 * each match and each stretch between matches becomes a piece, as both
 * llama.cpp's unicode_regex_split and HF's Split "Isolated" do.  llama.cpp
 * writes GPT-2's without the final "|\s+": the whitespace that alternative
 * takes is left between matches and becomes the same piece. */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define RE_LLAMA3 "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2 "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static const char *const sp_gpt2[] = { RE_GPT2, NULL };
static const char *const sp_llama3[] = { RE_LLAMA3, NULL };
static const char *const sp_qwen2[] = { RE_QWEN2, NULL };
static const char *const sp_default[] = { "[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]", NULL };
static const char *const sp_starcoder[] = { "\\p{N}", RE_GPT2, NULL };
static const char *const sp_falcon[] = { "[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]", NULL };

typedef struct {
    const char *name;
    const char *const *splits;
    uint8_t ignore_merges, add_bos, canonical;
} pre_family;

/* Only names whose llama.cpp pre type differs from another in nothing that
 * tokenizing reads (clean_spaces is decoding's) and that set no per-token
 * attributes. */
static const pre_family pre_table[] = {
    { "gpt-2", sp_gpt2, 0, 0, 1 },
    { "llama-bpe", sp_llama3, 1, 1, 1 },
    { "qwen2", sp_qwen2, 0, 0, 1 },
    { "default", sp_default, 0, 0, 0 },
    { "phi-2", sp_gpt2, 0, 0, 0 }, { "mpt", sp_gpt2, 0, 0, 0 }, { "olmo", sp_gpt2, 0, 0, 0 },
    { "jais", sp_gpt2, 0, 0, 0 }, { "trillion", sp_gpt2, 0, 0, 0 }, { "exaone4", sp_gpt2, 0, 0, 0 },
    { "gigachat", sp_gpt2, 0, 0, 0 }, { "a.x-4.0", sp_gpt2, 0, 0, 0 }, { "mellum", sp_gpt2, 0, 0, 0 },
    { "granite-docling", sp_gpt2, 0, 0, 0 },
    { "llama3", sp_llama3, 1, 1, 0 }, { "llama-v3", sp_llama3, 1, 1, 0 }, { "falcon3", sp_llama3, 1, 1, 0 },
    { "falcon-h1", sp_llama3, 1, 1, 0 }, { "pixtral", sp_llama3, 1, 1, 0 }, { "midm-2.0", sp_llama3, 1, 1, 0 },
    { "lfm2", sp_llama3, 1, 1, 0 },
    { "dbrx", sp_llama3, 0, 0, 0 }, { "smaug-bpe", sp_llama3, 0, 0, 0 },
    { "deepseek-r1-qwen", sp_qwen2, 0, 0, 0 }, { "stablelm2", sp_qwen2, 0, 0, 0 }, { "megrez", sp_qwen2, 0, 0, 0 },
    { "hunyuan", sp_qwen2, 0, 0, 0 }, { "solar-open", sp_qwen2, 0, 0, 0 }, { "kormo", sp_qwen2, 0, 0, 0 },
    { "starcoder", sp_starcoder, 0, 0, 0 }, { "refact", sp_starcoder, 0, 0, 0 }, { "command-r", sp_starcoder, 0, 0, 0 },
    { "smollm", sp_starcoder, 0, 0, 0 }, { "codeshell", sp_starcoder, 0, 0, 0 }, { "exaone", sp_starcoder, 0, 0, 0 },
    { "minerva-7b", sp_starcoder, 0, 0, 0 }, { "mellum2", sp_starcoder, 0, 0, 0 },
    { "falcon", sp_falcon, 0, 0, 0 },
};

const char *llmq_gguf_pre_name(const char *pattern)
{
    for (size_t i = 0; pattern && i < LLMQ_ARRAY_LEN(pre_table); i++)
        if (pre_table[i].canonical && !strcmp(pre_table[i].splits[0], pattern)) return pre_table[i].name;
    return NULL;
}

static const pre_family *pre_find(const char *s, uint64_t n)
{
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(pre_table); i++)
        if (strlen(pre_table[i].name) == n && !memcmp(pre_table[i].name, s, n)) return &pre_table[i];
    return NULL;
}

/* ---- token text -> id */

typedef struct {
    char **text;        /* [n] NUL-terminated, into arena (or the [EMPTY_i] names) */
    uint32_t *len;      /* [n] */
    int32_t *slot;      /* open addressing, -1 empty */
    size_t mask;
    uint32_t n;
} vocab_t;

static uint64_t hash_n(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) { h ^= (uint8_t)s[i]; h *= 0x100000001b3ull; }
    return h;
}

static int32_t vocab_find(const vocab_t *v, const char *s, size_t n)
{
    for (size_t h = (size_t)hash_n(s, n) & v->mask;; h = (h + 1) & v->mask) {
        int32_t id = v->slot[h];
        if (id < 0) return -1;
        if (v->len[id] == n && !memcmp(v->text[id], s, n)) return id;
    }
}

/* Insert id; the id already holding its text, or -1. */
static int32_t vocab_insert(vocab_t *v, int32_t id)
{
    for (size_t h = (size_t)hash_n(v->text[id], v->len[id]) & v->mask;; h = (h + 1) & v->mask) {
        int32_t o = v->slot[h];
        if (o < 0) { v->slot[h] = id; return -1; }
        if (v->len[o] == v->len[id] && !memcmp(v->text[o], v->text[id], v->len[id])) return o;
    }
}

/* ---- reading */

typedef struct {
    const llmq_gguf_file *f;
    llmq_err *err;
    int spm;
    const pre_family *pre;
    vocab_t v;
    char *arena;
    uint8_t *type;      /* [n] */
    float *score;       /* [n], spm */
    int32_t bos, eos, unk;
    int add_bos, add_eos, add_space_prefix;
    llmq_tok_merge *merges;
    size_t n_merges;
} gctx;

#define K(x) "tokenizer.ggml." x

/* The pair named key with type t (arrays: element type at), or NULL
 * without an error when absent; an error when present with another type. */
static int opt_kv(gctx *g, const char *key, llmq_gguf_vtype t, int at, const llmq_gguf_kv **kv)
{
    *kv = NULL;
    if (!llmq_gguf_find_kv(g->f, key)) return LLMQ_OK;
    *kv = llmq_gguf_get(g->f, key, t, at, g->err);
    return *kv ? LLMQ_OK : g->err->code;
}

static int opt_bool(gctx *g, const char *key, int *out)
{
    const llmq_gguf_kv *kv;
    int rc = opt_kv(g, key, LLMQ_GGUF_BOOL, -1, &kv);
    if (!rc && kv) *out = kv->val[0] != 0;
    return rc;
}

static int opt_id(gctx *g, const char *key, int32_t *out)
{
    const llmq_gguf_kv *kv;
    int rc = opt_kv(g, key, LLMQ_GGUF_U32, -1, &kv);
    if (rc || !kv) return rc;
    uint32_t id = llmq_get_le32(kv->val);
    if (id >= g->v.n)
        return llmq_errorf(g->err, LLMQ_EFORMAT, "%s: '%s' is %" PRIu32 ", beyond the %" PRIu32 " tokens",
                           g->f->path, key, id, g->v.n);
    *out = (int32_t)id;
    return LLMQ_OK;
}

/* An array of the tokens' length, elements of type at (or either of two). */
static int opt_arr(gctx *g, const char *key, int at, int at2, const llmq_gguf_kv **kv)
{
    int rc = opt_kv(g, key, LLMQ_GGUF_ARRAY, -1, kv);
    if (rc || !*kv) return rc;
    if ((int)(*kv)->arr_type != at && (int)(*kv)->arr_type != at2) {
        int r = llmq_errorf(g->err, LLMQ_EFORMAT, "%s: key '%s' is an array of %s, expected an array of %s%s%s",
                            g->f->path, key, llmq_gguf_vtype_name((*kv)->arr_type), llmq_gguf_vtype_name((uint32_t)at),
                            at2 >= 0 ? " or " : "", at2 >= 0 ? llmq_gguf_vtype_name((uint32_t)at2) : "");
        *kv = NULL;
        return r;
    }
    if ((*kv)->n != g->v.n || (*kv)->len < (*kv)->n * 4) {
        int r = llmq_errorf(g->err, LLMQ_EFORMAT, "%s: '%s' has %" PRIu64 " entries, '" K("tokens") "' %" PRIu32,
                            g->f->path, key, (*kv)->n, g->v.n);
        *kv = NULL;
        return r;
    }
    return LLMQ_OK;
}

static int read_tokens(gctx *g)
{
    char q[LLMQ_QUOTE_SIZE];
    const llmq_gguf_kv *kv = llmq_gguf_get(g->f, K("tokens"), LLMQ_GGUF_ARRAY, LLMQ_GGUF_STRING, g->err);
    if (!kv) return g->err->code;
    if (kv->n == 0) return llmq_errorf(g->err, LLMQ_EFORMAT, "%s: '" K("tokens") "' is empty", g->f->path);
    if (kv->n > TOK_MAX)
        return llmq_errorf(g->err, LLMQ_EUNSUPPORTED, "%s: '" K("tokens") "' has %" PRIu64 " tokens, more than "
                           "llmq's limit %u", g->f->path, kv->n, TOK_MAX);
    uint32_t n = g->v.n = (uint32_t)kv->n;
    /* the strings' bytes plus a NUL each, and "[EMPTY_16777215]" for empty ones */
    uint64_t bytes = kv->len + (uint64_t)n * 24;
    size_t cap = 16;
    while (cap < 2 * (size_t)n + 16) cap *= 2;
    g->v.mask = cap - 1;
    g->v.text = llmq_calloc(n, sizeof *g->v.text, g->err);
    g->v.len = llmq_calloc(n, sizeof *g->v.len, g->err);
    g->v.slot = llmq_malloc(cap * sizeof *g->v.slot, g->err);
    g->arena = llmq_malloc((size_t)bytes, g->err);
    g->type = llmq_calloc(n, 1, g->err);
    if (!g->v.text || !g->v.len || !g->v.slot || !g->arena || !g->type) return LLMQ_ENOMEM;
    memset(g->v.slot, 0xff, cap * sizeof *g->v.slot);
    char *ap = g->arena;
    uint64_t pos = 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *s;
        uint64_t l;
        if (!llmq_gguf_arr_next_str(kv, &pos, &s, &l))
            return llmq_errorf(g->err, LLMQ_EFORMAT, "%s: '" K("tokens") "'[%" PRIu32 "] lies past the array", g->f->path, i);
        if (memchr(s, 0, l))
            return llmq_errorf(g->err, LLMQ_EFORMAT, "%s: '" K("tokens") "'[%" PRIu32 "] '%s' holds a NUL byte",
                               g->f->path, i, llmq_quote_n(q, s, l));
        if (l == 0) {
            /* llama.cpp names an empty token so */
            l = (uint64_t)snprintf(ap, 24, "[EMPTY_%" PRIu32 "]", i);
        } else {
            memcpy(ap, s, l);
            ap[l] = 0;
        }
        g->v.text[i] = ap;
        g->v.len[i] = (uint32_t)l;
        ap += l + 1;
        int32_t o = vocab_insert(&g->v, (int32_t)i);
        if (o >= 0)
            return llmq_errorf(g->err, LLMQ_EFORMAT, "%s: '" K("tokens") "'[%" PRIu32 "] '%s' is also token %" PRId32,
                               g->f->path, i, llmq_quote(q, g->v.text[i]), o);
    }
    return LLMQ_OK;
}

static int read_types_scores(gctx *g)
{
    const llmq_gguf_kv *kv;
    int rc = opt_arr(g, K("token_type"), LLMQ_GGUF_I32, -1, &kv);
    if (rc) return rc;
    for (uint32_t i = 0; i < g->v.n; i++) {
        int32_t t = kv ? (int32_t)llmq_get_le32(kv->val + 4 * (size_t)i) : TT_NORMAL;
        if (t < 0 || t > TT_BYTE)
            return llmq_errorf(g->err, LLMQ_EFORMAT, "%s: '" K("token_type") "'[%" PRIu32 "] is %" PRId32
                               ", not a token type (0..6)", g->f->path, i, t);
        g->type[i] = (uint8_t)t;
    }
    /* llama.cpp reads scores as f32 or i32 for every model; only SPM uses them */
    if ((rc = opt_arr(g, K("scores"), LLMQ_GGUF_F32, LLMQ_GGUF_I32, &kv))) return rc;
    if (!g->spm) return LLMQ_OK;
    g->score = llmq_calloc(g->v.n, sizeof *g->score, g->err);
    if (!g->score) return LLMQ_ENOMEM;
    for (uint32_t i = 0; kv && i < g->v.n; i++) {
        uint32_t b = llmq_get_le32(kv->val + 4 * (size_t)i);
        float s = kv->arr_type == LLMQ_GGUF_I32 ? (float)(int32_t)b : llmq_bits_f32(b);
        if (!isfinite(s))
            return llmq_errorf(g->err, LLMQ_EFORMAT, "%s: '" K("scores") "'[%" PRIu32 "] is not finite", g->f->path, i);
        g->score[i] = s == 0.0f ? 0.0f : s;    /* -0 ties with 0 */
    }
    return LLMQ_OK;
}

/* llama.cpp (llama_vocab::impl::load) retypes tokens by their text: ones
 * it takes for end of generation (and, when their id key is absent, fill-
 * in-the-middle markers) become control tokens, a few gpt-oss ones
 * user-defined, and "</s>" beside gemma4's "<|tool_response>" normal.
 * Control and user-defined tokens are matched in the text before BPE, so
 * this changes ids: Qwen3's vocab has "</s>" as a normal token. */
static const char *const eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
    "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
    "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", "[e~[", NULL,
};
static const char *const fim_pre[] = { "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
    "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>", "<PRE>", "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>", NULL };
static const char *const fim_suf[] = { "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
    "<\xef\xbd\x9c" "fim\xe2\x96\x81hole\xef\xbd\x9c>", "<SUF>", "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>", NULL };
static const char *const fim_mid[] = { "<|fim_middle|>", "<fim-middle>", "<fim_middle>",
    "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>", "<MID>", "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>", NULL };
static const char *const fim_pad[] = { "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL };
static const char *const fim_rep[] = { "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", NULL };
static const char *const fim_sep[] = { "<|file_sep|>", NULL };
static const char *const gptoss_user[] = { "<|channel|>", "<|message|>", "<|start|>", "<|constrain|>", NULL };

static int32_t find_text(const gctx *g, const char *s) { return vocab_find(&g->v, s, strlen(s)); }

static void retype(gctx *g, const char *const *texts, int type)
{
    for (; *texts; texts++) {
        int32_t id = find_text(g, *texts);
        if (id >= 0) g->type[id] = (uint8_t)type;
    }
}

static void retype_by_text(gctx *g)
{
    static const struct { const char *const *texts; const char *key, *old_key; } fim[] = {
        { fim_pre, K("fim_pre_token_id"), K("prefix_token_id") }, { fim_suf, K("fim_suf_token_id"), K("suffix_token_id") },
        { fim_mid, K("fim_mid_token_id"), K("middle_token_id") }, { fim_pad, K("fim_pad_token_id"), NULL },
        { fim_rep, K("fim_rep_token_id"), NULL }, { fim_sep, K("fim_sep_token_id"), NULL },
    };
    for (size_t k = 0; k < LLMQ_ARRAY_LEN(fim); k++)
        if (!llmq_gguf_find_kv(g->f, fim[k].key) && !(fim[k].old_key && llmq_gguf_find_kv(g->f, fim[k].old_key)))
            retype(g, fim[k].texts, TT_CONTROL);
    retype(g, eog_texts, TT_CONTROL);
    retype(g, gptoss_user, TT_USER);
    int32_t ret = find_text(g, "<|return|>"), call = find_text(g, "<|call|>"), calls = find_text(g, "<|calls|>");
    int32_t flush = find_text(g, "<|flush|>"), end = find_text(g, "<|end|>");
    if (end >= 0 && ((ret >= 0 && call >= 0) || (calls >= 0 && flush >= 0))) g->type[end] = TT_USER;
    int32_t tr = find_text(g, "<|tool_response>"), s = find_text(g, "</s>");
    if (tr >= 0 && s >= 0) g->type[s] = TT_NORMAL;
}

static int read_special(gctx *g)
{
    int rc;
    g->bos = g->eos = g->unk = -1;
    if (g->spm) {
        /* llama.cpp's defaults for "llama", kept when in range */
        if (g->v.n > 1) g->bos = 1;
        if (g->v.n > 2) g->eos = 2;
        g->unk = 0;
    }
    g->add_bos = g->spm || g->pre->add_bos;
    g->add_eos = 0;
    g->add_space_prefix = g->spm;
    if ((rc = opt_id(g, K("bos_token_id"), &g->bos)) || (rc = opt_id(g, K("eos_token_id"), &g->eos)) ||
        (rc = opt_id(g, K("unknown_token_id"), &g->unk)) || (rc = opt_bool(g, K("add_bos_token"), &g->add_bos)) ||
        (rc = opt_bool(g, K("add_eos_token"), &g->add_eos)) ||
        (rc = opt_bool(g, K("add_space_prefix"), &g->add_space_prefix)))
        return rc;
    if (g->add_bos && g->bos < 0)
        return llmq_errorf(g->err, LLMQ_EFORMAT, "%s: '" K("add_bos_token") "' is true, but '" K("bos_token_id")
                           "' is not set", g->f->path);
    if (g->add_eos && g->eos < 0)
        return llmq_errorf(g->err, LLMQ_EFORMAT, "%s: '" K("add_eos_token") "' is true, but '" K("eos_token_id")
                           "' is not set", g->f->path);
    return LLMQ_OK;
}

static int push_merge(gctx *g, size_t *cap, int32_t a, int32_t b, int32_t id, uint32_t rank)
{
    if (g->n_merges == *cap) {
        size_t nc = *cap ? *cap * 2 : 1024;
        llmq_tok_merge *m = realloc(g->merges, nc * sizeof *m);
        if (!m) return llmq_errorf(g->err, LLMQ_ENOMEM, "out of memory");
        g->merges = m;
        *cap = nc;
    }
    g->merges[g->n_merges++] = (llmq_tok_merge){ a, b, id, rank };
    return LLMQ_OK;
}

/* "left right", split at the first space after the first byte (llama.cpp);
 * both parts and their join must be tokens.  Rank: the position. */
static int read_merges(gctx *g)
{
    char q[LLMQ_QUOTE_SIZE], q2[LLMQ_QUOTE_SIZE];
    const llmq_gguf_kv *kv = llmq_gguf_get(g->f, K("merges"), LLMQ_GGUF_ARRAY, LLMQ_GGUF_STRING, g->err);
    if (!kv) return g->err->code;
    if (kv->n > UINT32_MAX)
        return llmq_errorf(g->err, LLMQ_EFORMAT, "%s: '" K("merges") "' has %" PRIu64 " entries", g->f->path, kv->n);
    size_t cap = 0;
    uint64_t pos = 0;
    char *join = NULL;
    size_t jcap = 0;
    int rc = LLMQ_OK;
    for (uint64_t i = 0; i < kv->n && !rc; i++) {
        const char *s, *sp;
        uint64_t l;
        if (!llmq_gguf_arr_next_str(kv, &pos, &s, &l)) {
            rc = llmq_errorf(g->err, LLMQ_EFORMAT, "%s: '" K("merges") "'[%" PRIu64 "] lies past the array", g->f->path, i);
            break;
        }
        if (l < 3 || !(sp = memchr(s + 1, ' ', l - 1)) || sp == s + l - 1) {
            rc = llmq_errorf(g->err, LLMQ_EFORMAT, "%s: '" K("merges") "'[%" PRIu64 "] '%s' is not \"left right\"",
                             g->f->path, i, llmq_quote_n(q, s, l));
            break;
        }
        size_t la = (size_t)(sp - s), lb = (size_t)(l - la - 1);
        int32_t a = vocab_find(&g->v, s, la), b = vocab_find(&g->v, sp + 1, lb), c = -1;
        if (a >= 0 && b >= 0) {
            if (la + lb > jcap) {
                char *nj = realloc(join, la + lb);
                if (!nj) { rc = llmq_errorf(g->err, LLMQ_ENOMEM, "out of memory"); break; }
                join = nj;
                jcap = la + lb;
            }
            memcpy(join, s, la);
            memcpy(join + la, sp + 1, lb);
            c = vocab_find(&g->v, join, la + lb);
        }
        if (c < 0) {
            const char *w = a < 0 ? s : b < 0 ? sp + 1 : NULL;
            size_t wl = a < 0 ? la : lb;
            rc = llmq_errorf(g->err, LLMQ_EFORMAT, "%s: '" K("merges") "'[%" PRIu64 "] '%s': '%s' is not a token",
                             g->f->path, i, llmq_quote_n(q, s, l),
                             w ? llmq_quote_n(q2, w, wl) : llmq_quote_n(q2, join, la + lb));
            break;
        }
        rc = push_merge(g, &cap, a, b, c, (uint32_t)i);
    }
    free(join);
    return rc;
}

static int cmp_float_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x > y ? -1 : x < y;
}

/* llama.cpp's SentencePiece tokenizer merges, among adjacent symbols whose
 * joined text is a token, the one whose token scores highest, leftmost on a
 * tie.  As BPE merges: every split of a token into two tokens, ranked by the
 * token's score (equal scores, equal rank; the BPE breaks ties leftmost). */
static int derive_merges(gctx *g)
{
    uint32_t n = g->v.n;
    float *sorted = llmq_malloc((size_t)n * sizeof *sorted, g->err);
    if (!sorted) return LLMQ_ENOMEM;
    memcpy(sorted, g->score, (size_t)n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_float_desc);
    size_t nu = 0;
    for (uint32_t i = 0; i < n; i++)
        if (!nu || sorted[nu - 1] != sorted[i]) sorted[nu++] = sorted[i];
    size_t cap = 0;
    int rc = LLMQ_OK;
    for (uint32_t id = 0; id < n && !rc; id++) {
        const char *s = g->v.text[id];
        uint32_t l = g->v.len[id];
        /* the rank: the score's place among the distinct scores, descending */
        size_t lo = 0, hi = nu;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (sorted[mid] > g->score[id]) lo = mid + 1; else hi = mid;
        }
        for (uint32_t k = 1; k < l && !rc; k++) {
            if (((uint8_t)s[k] & 0xC0) == 0x80) continue;    /* inside a UTF-8 character */
            int32_t a = vocab_find(&g->v, s, k), b = a >= 0 ? vocab_find(&g->v, s + k, l - k) : -1;
            if (b >= 0) rc = push_merge(g, &cap, a, b, (int32_t)id, (uint32_t)lo);
        }
    }
    free(sorted);
    return rc;
}

/* ---- the tokenizer.json tree */

static cJSON *obj_type(const char *type)
{
    cJSON *o = cJSON_CreateObject();
    if (o && !cJSON_AddStringToObject(o, "type", type)) { cJSON_Delete(o); return NULL; }
    return o;
}

static cJSON *replace_step(const char *from, const char *to)
{
    cJSON *o = obj_type("Replace"), *p = cJSON_CreateObject();
    if (!o || !p || !cJSON_AddStringToObject(p, "String", from) || !cJSON_AddItemToObject(o, "pattern", p)) {
        cJSON_Delete(o); cJSON_Delete(p); return NULL;
    }
    if (!cJSON_AddStringToObject(o, "content", to)) { cJSON_Delete(o); return NULL; }
    return o;
}

/* Add item to array or object (key non-NULL); item is consumed; 0 on failure. */
static int put(cJSON *to, const char *key, cJSON *item)
{
    if (!item) return 0;
    if (key ? !cJSON_AddItemToObject(to, key, item) : !cJSON_AddItemToArray(to, item)) { cJSON_Delete(item); return 0; }
    return 1;
}

static cJSON *build_tree(const gctx *g)
{
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON *model = obj_type("BPE"), *vocab = NULL, *added = NULL;
    int ok = put(root, "model", model) && put(model, "vocab", vocab = cJSON_CreateObject()) &&
             put(root, "added_tokens", added = cJSON_CreateArray()) &&
             put(model, "merges", cJSON_CreateArray()) && put(model, "byte_fallback", cJSON_CreateBool(g->spm)) &&
             put(model, "ignore_merges", cJSON_CreateBool(!g->spm && g->pre->ignore_merges));
    /* llama.cpp's BPE drops a character no token spells; HF does that only
     * without an unk token */
    if (g->spm && g->unk >= 0 && !put(model, "unk_token", cJSON_CreateString(g->v.text[g->unk]))) ok = 0;
    for (uint32_t i = 0; ok && i < g->v.n; i++) {
        ok = put(vocab, g->v.text[i], cJSON_CreateNumber(i));
        if (ok && (g->type[i] == TT_CONTROL || g->type[i] == TT_UNKNOWN || g->type[i] == TT_USER)) {
            cJSON *a = cJSON_CreateObject();
            ok = put(added, NULL, a) && put(a, "id", cJSON_CreateNumber(i)) &&
                 put(a, "content", cJSON_CreateString(g->v.text[i])) && put(a, "single_word", cJSON_CreateFalse()) &&
                 put(a, "lstrip", cJSON_CreateFalse()) && put(a, "rstrip", cJSON_CreateFalse()) &&
                 put(a, "normalized", cJSON_CreateFalse()) &&
                 put(a, "special", cJSON_CreateBool(g->type[i] != TT_USER));
        }
    }
    if (ok && g->spm) {
        /* llama.cpp: a space before each run of text that starts the text or
         * follows a special token (add_space_prefix), then ' ' -> U+2581 */
        cJSON *norm = obj_type("Sequence"), *nl = cJSON_CreateArray();
        ok = put(root, "normalizer", norm) && put(norm, "normalizers", nl);
        if (ok && g->add_space_prefix) {
            cJSON *p = obj_type("Prepend");
            ok = put(nl, NULL, p) && put(p, "prepend", cJSON_CreateString("\xe2\x96\x81"));
        }
        ok = ok && put(nl, NULL, replace_step(" ", "\xe2\x96\x81"));
        cJSON *dec = obj_type("Sequence"), *dl = cJSON_CreateArray();
        ok = ok && put(root, "decoder", dec) && put(dec, "decoders", dl) &&
             put(dl, NULL, replace_step("\xe2\x96\x81", " ")) && put(dl, NULL, obj_type("ByteFallback")) &&
             put(dl, NULL, obj_type("Fuse"));
        if (ok && g->add_space_prefix) {
            cJSON *st = obj_type("Strip");
            ok = put(dl, NULL, st) && put(st, "content", cJSON_CreateString(" ")) &&
                 put(st, "start", cJSON_CreateNumber(1)) && put(st, "stop", cJSON_CreateNumber(0));
        }
    } else if (ok) {
        cJSON *pre = obj_type("Sequence"), *pl = cJSON_CreateArray();
        ok = put(root, "pre_tokenizer", pre) && put(pre, "pretokenizers", pl);
        for (const char *const *re = g->pre->splits; ok && *re; re++) {
            cJSON *sp = obj_type("Split"), *pat = cJSON_CreateObject();
            ok = put(pl, NULL, sp) && put(sp, "pattern", pat) && put(pat, "Regex", cJSON_CreateString(*re)) &&
                 put(sp, "behavior", cJSON_CreateString("Isolated")) && put(sp, "invert", cJSON_CreateFalse());
        }
        cJSON *bl = obj_type("ByteLevel");
        ok = ok && put(pl, NULL, bl) && put(bl, "add_prefix_space", cJSON_CreateFalse()) &&
             put(bl, "use_regex", cJSON_CreateFalse());
        cJSON *dec = obj_type("ByteLevel");
        ok = ok && put(root, "decoder", dec);
    }
    if (!ok) { cJSON_Delete(root); return NULL; }
    return root;
}

int llmq_tok_from_gguf(llmq_tok **out, const llmq_gguf_file *f, llmq_err *err)
{
    char q[LLMQ_QUOTE_SIZE];
    *out = NULL;
    gctx g = { .f = f, .err = err };
    const char *s;
    uint64_t l;
    int rc = llmq_gguf_get_str(f, K("model"), &s, &l, err);
    if (rc) return rc;
    if (l == 5 && !memcmp(s, "llama", 5)) {
        g.spm = 1;
    } else if (!(l == 4 && !memcmp(s, "gpt2", 4))) {
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: '" K("model") "' is '%s': llmq reads the tokenizers 'gpt2' "
                           "(byte-level BPE) and 'llama' (SentencePiece BPE)", f->path, llmq_quote_n(q, s, l));
    } else {
        g.pre = pre_find("default", 7);
        if (llmq_gguf_find_kv(f, K("pre"))) {
            if ((rc = llmq_gguf_get_str(f, K("pre"), &s, &l, err))) return rc;
            if (!(g.pre = pre_find(s, l)))
                return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: '" K("pre") "' is '%s', a pre-tokenizer llmq does not "
                                   "implement", f->path, llmq_quote_n(q, s, l));
        }
    }
    static const pre_family none = { "", NULL, 0, 0, 0 };
    if (g.spm) g.pre = &none;
    llmq_tok *t = NULL;
    cJSON *root = NULL;
    if ((rc = read_tokens(&g)) || (rc = read_types_scores(&g)) || (retype_by_text(&g), 0) || (rc = read_special(&g)) ||
        (rc = g.spm ? derive_merges(&g) : read_merges(&g)))
        goto done;
    if (!(root = build_tree(&g))) { rc = llmq_errorf(err, LLMQ_ENOMEM, "out of memory"); goto done; }
    if ((rc = llmq_tok_load_tree(&t, root, f->path, err))) goto done;
    if ((rc = llmq_tok_set_merges(t, g.merges, g.n_merges, err))) {
        /* every id was checked above: a failure here is llmq's */
        if (rc == LLMQ_EUSAGE) rc = err->code = LLMQ_EINTERNAL;
        goto done;
    }
    llmq_tok_set_special(t, g.bos, g.eos, g.add_bos, g.add_eos);
    *out = t;
    t = NULL;
done:
    llmq_tok_free(t);
    cJSON_Delete(root);
    free(g.v.text); free(g.v.len); free(g.v.slot); free(g.arena);
    free(g.type); free(g.score); free(g.merges);
    return rc;
}
