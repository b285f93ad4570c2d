/* t-gguf-tokenizer: the tokenizer of GGUF metadata (formats/gguf_tokenizer.c).
 * Small GGUF images built here in memory, key by key, and parsed with
 * llmq_gguf_parse: byte-level BPE with merges and special tokens;
 * SentencePiece BPE whose merge order comes from the scores (highest
 * first, ties leftmost, as llama.cpp's llm_tokenizer_spm); then each
 * hostile value refused with its status and one line naming the file and
 * the key.  Also built with ASan+UBSan (make san-units). */
#include "../test.h"
#include "../../formats/gguf_tokenizer.h"
#include "lib/base/llmq-int.h"

/* ---- an image built key by key ---- */

typedef struct { uint8_t *b; size_t n, cap; uint64_t nkv; const char *omit; } img;

static void put(img *m, const void *p, size_t n)
{
    if (m->n + n > m->cap) {
        m->cap = (m->n + n) * 2 + 256;
        m->b = realloc(m->b, m->cap);
    }
    memcpy(m->b + m->n, p, n);
    m->n += n;
}
static void u32(img *m, uint32_t v) { uint8_t b[4]; llmq_put_le32(b, v); put(m, b, 4); }
static void u64(img *m, uint64_t v) { uint8_t b[8]; llmq_put_le64(b, v); put(m, b, 8); }
static void strn(img *m, const char *s, size_t n) { u64(m, n); put(m, s, n); }
static void str(img *m, const char *s) { strn(m, s, strlen(s)); }

/* A key with its type, unless it is the one omitted; 0 when omitted. */
static int key(img *m, const char *k, uint32_t type)
{
    if (m->omit && !strcmp(m->omit, k)) return 0;
    str(m, k);
    u32(m, type);
    m->nkv++;
    return 1;
}
static void kv_str(img *m, const char *k, const char *v) { if (key(m, k, LLMQ_GGUF_STRING)) str(m, v); }
static void kv_u32(img *m, const char *k, uint32_t v) { if (key(m, k, LLMQ_GGUF_U32)) u32(m, v); }
static void kv_bool(img *m, const char *k, int v) { uint8_t b = (uint8_t)v; if (key(m, k, LLMQ_GGUF_BOOL)) put(m, &b, 1); }
static void kv_strs(img *m, const char *k, const char *const *v, size_t n)
{
    if (!key(m, k, LLMQ_GGUF_ARRAY)) return;
    u32(m, LLMQ_GGUF_STRING); u64(m, n);
    for (size_t i = 0; i < n; i++) str(m, v[i]);
}
static void kv_i32s(img *m, const char *k, const int32_t *v, size_t n)
{
    if (!key(m, k, LLMQ_GGUF_ARRAY)) return;
    u32(m, LLMQ_GGUF_I32); u64(m, n);
    for (size_t i = 0; i < n; i++) u32(m, (uint32_t)v[i]);
}
static void kv_f32s(img *m, const char *k, const float *v, size_t n)
{
    if (!key(m, k, LLMQ_GGUF_ARRAY)) return;
    u32(m, LLMQ_GGUF_F32); u64(m, n);
    for (size_t i = 0; i < n; i++) { uint32_t b; memcpy(&b, &v[i], 4); u32(m, b); }
}

static void begin(img *m, const char *omit)
{
    memset(m, 0, sizeof *m);
    m->omit = omit;
    put(m, "GGUF", 4);
    u32(m, 3);
    u64(m, 0);              /* tensors */
    u64(m, 0);              /* kv count, set by end */
}

/* Parse, then build the tokenizer: its status; *t set on success. */
static int end(img *m, llmq_tok **t, llmq_err *err)
{
    llmq_put_le64(m->b + 16, m->nkv);
    while (m->n % 32) { uint8_t z = 0; put(m, &z, 1); }
    /* an exact-size heap copy: ASan sees any read past the end */
    uint8_t *c = malloc(m->n);
    memcpy(c, m->b, m->n);
    free(m->b);
    llmq_gguf_file f;
    int rc = llmq_gguf_parse(&f, c, m->n, "mem.gguf", err);
    CHECK_MSG(rc == 0, "%s", err->msg);
    *t = NULL;
    if (!rc) {
        rc = llmq_tok_from_gguf(t, &f, err);
        if (rc) {
            CHECK(*t == NULL);
            CHECK_MSG(strncmp(err->msg, "mem.gguf: ", 10) == 0 && !strchr(err->msg, '\n'), "message: %s", err->msg);
        }
    }
    llmq_gguf_close(&f);
    free(c);
    return rc;
}

/* ---- byte-level BPE ---- */

/* "a" "b" "c" ... byte-level tokens; "Ġ" is the space */
static const char *const g_tokens[] = { "a", "b", "c", "ab", "abc", "<|eos|>", "\xc4\xa0", "\xc4\xa0" "a", "<user>", "d" };
static const int32_t g_types[] = { 1, 1, 1, 1, 1, 3, 1, 1, 4, 1 };
static const char *const g_merges[] = { "a b", "ab c", "\xc4\xa0 a" };
#define NG 10

/* A gpt2 tokenizer image without key omit; the caller may add keys. */
static void gpt2(img *m, const char *omit)
{
    begin(m, omit);
    kv_str(m, "general.architecture", "llama");
    kv_str(m, "tokenizer.ggml.model", "gpt2");
    kv_str(m, "tokenizer.ggml.pre", "gpt-2");
    kv_strs(m, "tokenizer.ggml.tokens", g_tokens, NG);
    kv_i32s(m, "tokenizer.ggml.token_type", g_types, NG);
    kv_strs(m, "tokenizer.ggml.merges", g_merges, 3);
    kv_u32(m, "tokenizer.ggml.bos_token_id", 5);
    kv_u32(m, "tokenizer.ggml.eos_token_id", 5);
    m->omit = NULL;         /* the caller may add it back */
}

static void ids_are(const llmq_tok *t, const char *text, const int32_t *want, size_t nw)
{
    llmq_err err = { 0 };
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = llmq_tok_encode(t, text, strlen(text), &ids, &n, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    int same = n == nw && (!n || !memcmp(ids, want, n * sizeof *ids));
    CHECK_MSG(same, "'%s': %zu ids, first %d, expected %zu, first %d", text, n, n ? ids[0] : -1, nw, nw ? want[0] : -1);
    free(ids);
}

TEST(gpt2_encodes)
{
    img m;
    llmq_err err = { 0 };
    llmq_tok *t;
    gpt2(&m, NULL);
    if (end(&m, &t, &err)) return;
    CHECK_EQ_INT(llmq_tok_vocab_size(t), NG);
    CHECK_EQ_INT(llmq_tok_bos(t), 5);
    CHECK_EQ_INT(llmq_tok_eos(t), 5);
    CHECK_EQ_INT(llmq_tok_add_bos(t), 0);
    CHECK(llmq_tok_is_special(t, 5));
    CHECK(!llmq_tok_is_special(t, 8));
    ids_are(t, "abc", (const int32_t[]){ 4 }, 1);
    ids_are(t, "ab a", (const int32_t[]){ 3, 7 }, 2);
    /* control and user-defined tokens are found in the text; "x" spells
     * no token and is dropped, as llama.cpp does */
    ids_are(t, "abc<|eos|>d<user>x", (const int32_t[]){ 4, 5, 9, 8 }, 4);
    ids_are(t, "", NULL, 0);
    char *s = NULL;
    size_t len;
    CHECK_EQ_INT(llmq_tok_decode(t, (const int32_t[]){ 4, 7, 5 }, 3, 1, &s, &len, &err), 0);
    CHECK(s && !strcmp(s, "abc a"));
    free(s);
    llmq_tok_free(t);
}

TEST(gpt2_pre_and_flags)
{
    img m;
    llmq_err err = { 0 };
    llmq_tok *t;
    /* the Llama 3 family adds BOS by default; add_bos_token overrides */
    gpt2(&m, "tokenizer.ggml.pre");
    kv_str(&m, "tokenizer.ggml.pre", "llama-bpe");
    if (!end(&m, &t, &err)) { CHECK_EQ_INT(llmq_tok_add_bos(t), 1); llmq_tok_free(t); }
    gpt2(&m, "tokenizer.ggml.pre");
    kv_str(&m, "tokenizer.ggml.pre", "llama-bpe");
    kv_bool(&m, "tokenizer.ggml.add_bos_token", 0);
    kv_bool(&m, "tokenizer.ggml.add_eos_token", 1);
    if (!end(&m, &t, &err)) {
        CHECK_EQ_INT(llmq_tok_add_bos(t), 0);
        CHECK_EQ_INT(llmq_tok_add_eos(t), 1);
        llmq_tok_free(t);
    }
    /* no pre: llama.cpp's "default" */
    gpt2(&m, "tokenizer.ggml.pre");
    if (!end(&m, &t, &err)) { ids_are(t, "abc", (const int32_t[]){ 4 }, 1); llmq_tok_free(t); }
    const char *names[] = { "qwen2", "starcoder", "falcon", "smaug-bpe", "default" };
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(names); i++) {
        gpt2(&m, "tokenizer.ggml.pre");
        kv_str(&m, "tokenizer.ggml.pre", names[i]);
        if (!end(&m, &t, &err)) { ids_are(t, "abc", (const int32_t[]){ 4 }, 1); llmq_tok_free(t); }
    }
    /* the exporter's names */
    CHECK(!strcmp(llmq_gguf_pre_name("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"),
                  "gpt-2"));
    CHECK(llmq_gguf_pre_name("\\p{N}") == NULL);
    CHECK(llmq_gguf_pre_name(NULL) == NULL);
    /* an empty token is named as llama.cpp names it */
    begin(&m, NULL);
    kv_str(&m, "tokenizer.ggml.model", "gpt2");
    kv_strs(&m, "tokenizer.ggml.tokens", (const char *const[]){ "a", "" }, 2);
    kv_strs(&m, "tokenizer.ggml.merges", NULL, 0);
    if (!end(&m, &t, &err)) { CHECK(!strcmp(llmq_tok_piece(t, 1), "[EMPTY_1]")); llmq_tok_free(t); }
}

/* ---- SentencePiece BPE ---- */

#define U "\xe2\x96\x81"      /* U+2581, SentencePiece's space */
static const char *const s_tokens[] = { "<unk>", "<s>", "</s>", U, "a", "b", U "a", "ab", "<0x5A>", "c", "bc", "<0x0A>" };
static const int32_t s_types[] = { 2, 3, 3, 1, 1, 1, 1, 1, 6, 1, 1, 6 };
#define NS 12

static void spm(img *m, const char *omit, float s_ua, float s_ab)
{
    float scores[NS] = { 0, 0, 0, -10, -11, -12, s_ua, s_ab, 0, -13, -5, 0 };
    begin(m, omit);
    kv_str(m, "tokenizer.ggml.model", "llama");
    kv_strs(m, "tokenizer.ggml.tokens", s_tokens, NS);
    kv_f32s(m, "tokenizer.ggml.scores", scores, NS);
    kv_i32s(m, "tokenizer.ggml.token_type", s_types, NS);
    m->omit = NULL;
}

TEST(spm_merges_by_score)
{
    img m;
    llmq_err err = { 0 };
    llmq_tok *t;
    /* "ab" -> "▁ab": "▁a" and "ab" compete; the higher score merges first */
    spm(&m, NULL, -1, -2);
    if (!end(&m, &t, &err)) {
        CHECK_EQ_INT(llmq_tok_bos(t), 1);
        CHECK_EQ_INT(llmq_tok_eos(t), 2);
        CHECK_EQ_INT(llmq_tok_add_bos(t), 1);
        ids_are(t, "ab", (const int32_t[]){ 6, 5 }, 2);
        /* byte fallback; "\n" has no token but <0x0A> */
        ids_are(t, "aZ\n", (const int32_t[]){ 6, 8, 11 }, 3);
        /* no space prefix after a special token... except llama.cpp's: it
         * prefixes text that follows one */
        ids_are(t, "a</s>a", (const int32_t[]){ 6, 2, 6 }, 3);
        char *s = NULL;
        CHECK_EQ_INT(llmq_tok_decode(t, (const int32_t[]){ 6, 5, 8, 3, 4 }, 5, 0, &s, NULL, &err), 0);
        CHECK(s && !strcmp(s, "abZ a"));
        free(s);
        llmq_tok_free(t);
    }
    spm(&m, NULL, -2, -1);
    if (!end(&m, &t, &err)) { ids_are(t, "ab", (const int32_t[]){ 3, 7 }, 2); llmq_tok_free(t); }
    /* a tie merges leftmost */
    spm(&m, NULL, -1, -1);
    if (!end(&m, &t, &err)) { ids_are(t, "ab", (const int32_t[]){ 6, 5 }, 2); llmq_tok_free(t); }
    /* "abc": "ab" (-1) before "bc" (-5), though "bc" scores above "▁a" (-6):
     * ▁ a b c -> ▁ ab c; then nothing joins */
    spm(&m, NULL, -6, -1);
    if (!end(&m, &t, &err)) { ids_are(t, "abc", (const int32_t[]){ 3, 7, 9 }, 3); llmq_tok_free(t); }
    /* add_space_prefix off; no scores: all tie */
    spm(&m, "tokenizer.ggml.scores", 0, 0);
    kv_bool(&m, "tokenizer.ggml.add_space_prefix", 0);
    if (!end(&m, &t, &err)) { ids_are(t, "ab", (const int32_t[]){ 7 }, 1); llmq_tok_free(t); }
}

/* ---- hostile values ---- */

static void refused(img *m, int want, const char *msg)
{
    llmq_err err = { 0 };
    llmq_tok *t = NULL;
    int rc = end(m, &t, &err);
    CHECK_MSG(rc == want, "status %d, expected %d (%s): %s", rc, want, msg, err.msg);
    CHECK_MSG(strstr(err.msg, msg) != NULL, "message '%s' lacks '%s'", err.msg, msg);
    llmq_tok_free(t);
}

TEST(hostile_model_and_pre)
{
    img m;
    gpt2(&m, "tokenizer.ggml.model");
    refused(&m, LLMQ_EFORMAT, "key 'tokenizer.ggml.model' is missing");
    gpt2(&m, "tokenizer.ggml.model");
    kv_u32(&m, "tokenizer.ggml.model", 2);
    refused(&m, LLMQ_EFORMAT, "'tokenizer.ggml.model' is a u32, expected a string");
    gpt2(&m, "tokenizer.ggml.model");
    kv_str(&m, "tokenizer.ggml.model", "bert");
    refused(&m, LLMQ_EUNSUPPORTED, "'tokenizer.ggml.model' is 'bert'");
    gpt2(&m, "tokenizer.ggml.pre");
    kv_str(&m, "tokenizer.ggml.pre", "tekken");
    refused(&m, LLMQ_EUNSUPPORTED, "'tokenizer.ggml.pre' is 'tekken', a pre-tokenizer llmq does not implement");
    gpt2(&m, "tokenizer.ggml.pre");
    kv_u32(&m, "tokenizer.ggml.pre", 1);
    refused(&m, LLMQ_EFORMAT, "'tokenizer.ggml.pre' is a u32");
}

TEST(hostile_tokens)
{
    img m;
    gpt2(&m, "tokenizer.ggml.tokens");
    refused(&m, LLMQ_EFORMAT, "key 'tokenizer.ggml.tokens' is missing");
    gpt2(&m, "tokenizer.ggml.tokens");
    kv_i32s(&m, "tokenizer.ggml.tokens", g_types, NG);
    refused(&m, LLMQ_EFORMAT, "'tokenizer.ggml.tokens' is an array of i32, expected an array of string");
    gpt2(&m, "tokenizer.ggml.tokens");
    kv_strs(&m, "tokenizer.ggml.tokens", NULL, 0);
    refused(&m, LLMQ_EFORMAT, "'tokenizer.ggml.tokens' is empty");
    const char *dup[NG];
    memcpy(dup, g_tokens, sizeof dup);
    dup[9] = "ab";
    gpt2(&m, "tokenizer.ggml.tokens");
    kv_strs(&m, "tokenizer.ggml.tokens", dup, NG);
    refused(&m, LLMQ_EFORMAT, "'tokenizer.ggml.tokens'[9] 'ab' is also token 3");
    /* a NUL inside a token */
    gpt2(&m, "tokenizer.ggml.tokens");
    key(&m, "tokenizer.ggml.tokens", LLMQ_GGUF_ARRAY);
    u32(&m, LLMQ_GGUF_STRING); u64(&m, NG);
    for (int i = 0; i < NG; i++) strn(&m, i == 2 ? "c\0d" : g_tokens[i], i == 2 ? 3 : strlen(g_tokens[i]));
    refused(&m, LLMQ_EFORMAT, "'tokenizer.ggml.tokens'[2] 'c\\x00d' holds a NUL byte");
}

TEST(hostile_types_scores_ids)
{
    img m;
    gpt2(&m, "tokenizer.ggml.token_type");
    kv_i32s(&m, "tokenizer.ggml.token_type", g_types, NG - 1);
    refused(&m, LLMQ_EFORMAT, "'tokenizer.ggml.token_type' has 9 entries, 'tokenizer.ggml.tokens' 10");
    gpt2(&m, "tokenizer.ggml.token_type");
    kv_f32s(&m, "tokenizer.ggml.token_type", (const float[NG]){ 0 }, NG);
    refused(&m, LLMQ_EFORMAT, "'tokenizer.ggml.token_type' is an array of f32, expected an array of i32");
    int32_t ty[NG];
    memcpy(ty, g_types, sizeof ty);
    ty[4] = 9;
    gpt2(&m, "tokenizer.ggml.token_type");
    kv_i32s(&m, "tokenizer.ggml.token_type", ty, NG);
    refused(&m, LLMQ_EFORMAT, "'tokenizer.ggml.token_type'[4] is 9, not a token type");
    ty[4] = -1;
    gpt2(&m, "tokenizer.ggml.token_type");
    kv_i32s(&m, "tokenizer.ggml.token_type", ty, NG);
    refused(&m, LLMQ_EFORMAT, "'tokenizer.ggml.token_type'[4] is -1");

    float sc[NS] = { 0 };
    sc[5] = NAN;
    spm(&m, "tokenizer.ggml.scores", 0, 0);
    kv_f32s(&m, "tokenizer.ggml.scores", sc, NS);
    refused(&m, LLMQ_EFORMAT, "'tokenizer.ggml.scores'[5] is not finite");
    sc[5] = INFINITY;
    spm(&m, "tokenizer.ggml.scores", 0, 0);
    kv_f32s(&m, "tokenizer.ggml.scores", sc, NS);
    refused(&m, LLMQ_EFORMAT, "'tokenizer.ggml.scores'[5] is not finite");
    spm(&m, "tokenizer.ggml.scores", 0, 0);
    kv_f32s(&m, "tokenizer.ggml.scores", sc, 3);
    refused(&m, LLMQ_EFORMAT, "'tokenizer.ggml.scores' has 3 entries");
    spm(&m, "tokenizer.ggml.scores", 0, 0);
    kv_strs(&m, "tokenizer.ggml.scores", s_tokens, NS);
    refused(&m, LLMQ_EFORMAT, "'tokenizer.ggml.scores' is an array of string, expected an array of f32 or i32");

    gpt2(&m, "tokenizer.ggml.bos_token_id");
    kv_u32(&m, "tokenizer.ggml.bos_token_id", NG);
    refused(&m, LLMQ_EFORMAT, "'tokenizer.ggml.bos_token_id' is 10, beyond the 10 tokens");
    gpt2(&m, "tokenizer.ggml.eos_token_id");
    kv_u32(&m, "tokenizer.ggml.eos_token_id", UINT32_MAX);
    refused(&m, LLMQ_EFORMAT, "'tokenizer.ggml.eos_token_id' is 4294967295");
    gpt2(&m, "tokenizer.ggml.bos_token_id");
    kv_str(&m, "tokenizer.ggml.bos_token_id", "5");
    refused(&m, LLMQ_EFORMAT, "'tokenizer.ggml.bos_token_id' is a string, expected a u32");
    spm(&m, NULL, 0, 0);
    kv_u32(&m, "tokenizer.ggml.unknown_token_id", 1u << 31);
    refused(&m, LLMQ_EFORMAT, "'tokenizer.ggml.unknown_token_id' is 2147483648");
    gpt2(&m, "tokenizer.ggml.bos_token_id");
    kv_bool(&m, "tokenizer.ggml.add_bos_token", 1);
    refused(&m, LLMQ_EFORMAT, "'tokenizer.ggml.add_bos_token' is true, but 'tokenizer.ggml.bos_token_id' is not set");
    gpt2(&m, NULL);
    kv_u32(&m, "tokenizer.ggml.add_bos_token", 1);
    refused(&m, LLMQ_EFORMAT, "'tokenizer.ggml.add_bos_token' is a u32, expected a bool");
    /* SentencePiece's default bos (1) lies beyond a 1-token vocab: none */
    begin(&m, NULL);
    kv_str(&m, "tokenizer.ggml.model", "llama");
    kv_strs(&m, "tokenizer.ggml.tokens", s_tokens, 1);
    refused(&m, LLMQ_EFORMAT, "'tokenizer.ggml.add_bos_token' is true, but 'tokenizer.ggml.bos_token_id' is not set");
}

TEST(hostile_merges)
{
    img m;
    gpt2(&m, "tokenizer.ggml.merges");
    refused(&m, LLMQ_EFORMAT, "key 'tokenizer.ggml.merges' is missing");
    gpt2(&m, "tokenizer.ggml.merges");
    kv_i32s(&m, "tokenizer.ggml.merges", g_types, 3);
    refused(&m, LLMQ_EFORMAT, "'tokenizer.ggml.merges' is an array of i32, expected an array of string");
    static const struct { const char *merge, *msg; } bad[] = {
        { "ab", "'tokenizer.ggml.merges'[1] 'ab' is not \"left right\"" },
        { "a ", "'tokenizer.ggml.merges'[1] 'a ' is not \"left right\"" },
        { "", "'tokenizer.ggml.merges'[1] '' is not \"left right\"" },
        { "a z", "'tokenizer.ggml.merges'[1] 'a z': 'z' is not a token" },
        { "z a", "'tokenizer.ggml.merges'[1] 'z a': 'z' is not a token" },
        { "b c", "'tokenizer.ggml.merges'[1] 'b c': 'bc' is not a token" },
        { "a b c", "'tokenizer.ggml.merges'[1] 'a b c': 'b c' is not a token" },
    };
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(bad); i++) {
        gpt2(&m, "tokenizer.ggml.merges");
        kv_strs(&m, "tokenizer.ggml.merges", (const char *const[]){ "a b", bad[i].merge }, 2);
        refused(&m, LLMQ_EFORMAT, bad[i].msg);
    }
    /* " a": split at the first space after the first byte, as llama.cpp:
     * no space there */
    gpt2(&m, "tokenizer.ggml.merges");
    kv_strs(&m, "tokenizer.ggml.merges", (const char *const[]){ " a" }, 1);
    refused(&m, LLMQ_EFORMAT, "'tokenizer.ggml.merges'[0] ' a' is not \"left right\"");
}

/* ---- mutations: every truncation and random byte changes of the two
 * images; whatever parses must build a tokenizer or fail with one line,
 * and a built one must encode and decode (ASan in make san-units) */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_rand(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (uint32_t)rng; }

static int n_built, n_refused;     /* by llmq_tok_from_gguf, of those that parsed */

static void try_image(const uint8_t *b, size_t n)
{
    uint8_t *c = malloc(n ? n : 1);
    memcpy(c, b, n);
    llmq_gguf_file f;
    llmq_err err = { 0 };
    if (llmq_gguf_parse(&f, c, n, "mut.gguf", &err) == LLMQ_OK) {
        llmq_tok *t = NULL;
        int rc = llmq_tok_from_gguf(&t, &f, &err);
        if (rc) n_refused++; else n_built++;
        if (rc) {
            CHECK_MSG(t == NULL && err.code != LLMQ_OK && !strncmp(err.msg, "mut.gguf: ", 10) && !strchr(err.msg, '\n'),
                      "status %d, message '%s'", rc, err.msg);
        } else {
            static const char text[] = "ab a<|eos|>abc \xff\xc3 Z\n</s>a";
            int32_t *ids = NULL;
            size_t k = 0;
            char *d = NULL;
            rc = llmq_tok_encode(t, text, sizeof text - 1, &ids, &k, &err);
            CHECK_MSG(rc == 0 || rc == LLMQ_EFORMAT, "encode: %s", err.msg);
            if (!rc) CHECK_EQ_INT(llmq_tok_decode(t, ids, k, 0, &d, NULL, &err), 0);
            free(ids);
            free(d);
            llmq_tok_free(t);
        }
        llmq_gguf_close(&f);
    }
    free(c);
}

static void mutate(img *m)
{
    llmq_put_le64(m->b + 16, m->nkv);
    while (m->n % 32) { uint8_t z = 0; put(m, &z, 1); }
    for (size_t len = 0; len <= m->n; len++) try_image(m->b, len);
    uint8_t *c = malloc(m->n);
    for (int r = 0; r < 3000; r++) {
        memcpy(c, m->b, m->n);
        int k = 1 + (int)(next_rand() % 3);
        for (int j = 0; j < k; j++) {
            size_t at = 24 + next_rand() % (m->n - 24);      /* past the header */
            uint32_t v = next_rand();
            c[at] = (v & 0x300) ? (uint8_t)v : (uint8_t)(c[at] ^ (1u << (v % 8)));
        }
        try_image(c, m->n);
    }
    free(c);
    free(m->b);
}

TEST(mutations)
{
    img m;
    gpt2(&m, NULL);
    mutate(&m);
    spm(&m, NULL, -1, -2);
    mutate(&m);
    /* the mutations reach both outcomes */
    CHECK_MSG(n_built > 100 && n_refused > 100, "built %d, refused %d", n_built, n_refused);
}

TEST_MAIN()
