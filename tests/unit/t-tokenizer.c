/*
 * t-tokenizer.c - formats/tokenizer.c against the reference ids of the
 * bundled models (HF tokenizers output), round trips, hand-computed
 * SentencePiece-style BPE, known pre-tokenizer regexes, and hostile
 * tokenizer.json files.  Run from the repository root; the shared data lies
 * in $LLMQ_SHARED (default ../shared).
 */
#include <stdio.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "lib/base/fileio.h"
#include "formats/tokenizer.h"
#include "tests/test.h"

static const char *shared(void)
{
    const char *s = getenv("LLMQ_SHARED");
    return s && *s ? s : "../shared";
}

static char *spath(const char *rel)
{
    static char buf[4][1024];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", shared(), rel);
    return b;
}

static llmq_tok *load_model_tok(const char *model)
{
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s/tokenizer.json", model);
    llmq_tok *t = NULL;
    llmq_err err = { 0 };
    int rc = llmq_tok_load(&t, spath(rel), &err);
    CHECK_MSG(rc == LLMQ_OK, "%s", err.msg);
    return t;
}

/* The reference ids were made by Python reading the file in text mode,
 * which turns CRLF into LF (the file has CRLF line ends). */
static char *read_text_mode(const char *path, size_t *len)
{
    char *s = NULL;
    llmq_err err = { 0 };
    if (llmq_read_file(path, &s, len, &err)) { CHECK_MSG(0, "%s", err.msg); return NULL; }
    size_t w = 0;
    for (size_t i = 0; i < *len; i++) {
        if (s[i] == '\r' && i + 1 < *len && s[i + 1] == '\n') continue;
        s[w++] = s[i];
    }
    s[w] = 0;
    *len = w;
    return s;
}

static int roundtrip(const llmq_tok *t, const char *s, size_t n)
{
    int32_t *ids = NULL;
    size_t m = 0, ol = 0;
    char *out = NULL;
    llmq_err err = { 0 };
    if (llmq_tok_encode(t, s, n, &ids, &m, &err)) { fprintf(stderr, "  encode: %s\n", err.msg); return 0; }
    if (llmq_tok_decode(t, ids, m, 0, &out, &ol, &err)) { free(ids); fprintf(stderr, "  decode: %s\n", err.msg); return 0; }
    int ok = ol == n && !memcmp(out, s, n) && out[ol] == 0;
    free(ids);
    free(out);
    return ok;
}

static int encode_is(const llmq_tok *t, const char *s, size_t n, const int32_t *want, size_t wn)
{
    int32_t *ids = NULL;
    size_t m = 0;
    llmq_err err = { 0 };
    if (llmq_tok_encode(t, s, n, &ids, &m, &err)) { fprintf(stderr, "  encode: %s\n", err.msg); return 0; }
    int ok = m == wn && (wn == 0 || !memcmp(ids, want, wn * sizeof *ids));
    if (!ok) {
        fprintf(stderr, "  encode(\"%.*s\") = [", (int)LLMQ_MIN(n, 60), s);
        for (size_t i = 0; i < m && i < 40; i++) fprintf(stderr, "%s%d", i ? ", " : "", ids[i]);
        fprintf(stderr, "], expected [");
        for (size_t i = 0; i < wn; i++) fprintf(stderr, "%s%d", i ? ", " : "", want[i]);
        fprintf(stderr, "]\n");
    }
    free(ids);
    return ok;
}

static int decode_is(const llmq_tok *t, const int32_t *ids, size_t n, int skip, const char *want)
{
    char *out = NULL;
    size_t ol = 0;
    llmq_err err = { 0 };
    if (llmq_tok_decode(t, ids, n, skip, &out, &ol, &err)) { fprintf(stderr, "  decode: %s\n", err.msg); return 0; }
    int ok = ol == strlen(want) && !strcmp(out, want);
    if (!ok) fprintf(stderr, "  decode = \"%s\", expected \"%s\"\n", out, want);
    free(out);
    return ok;
}

#define ENC(t, s, ...) do { static const int32_t w_[] = { __VA_ARGS__ };               \
        CHECK(encode_is((t), (s), sizeof(s) - 1, w_, LLMQ_ARRAY_LEN(w_))); } while (0)

/* ------------------------------------------------------------ bundled models */

static void whole_file(const char *model)
{
    llmq_tok *t = load_model_tok(model);
    if (!t) return;
    size_t len = 0, rl = 0;
    char *text = read_text_mode(spath("data/wikitext2-raw-test.txt"), &len), *ref = NULL;
    char rel[256];
    llmq_err err = { 0 };
    snprintf(rel, sizeof rel, "models/%s/reference/wikitext2_test_ids.bin", model);
    CHECK_MSG(!llmq_read_file(spath(rel), &ref, &rl, &err), "%s", err.msg);
    if (text && ref) {
        int32_t *ids = NULL;
        size_t n = 0;
        double t0 = llmq_now();
        CHECK_MSG(!llmq_tok_encode(t, text, len, &ids, &n, &err), "%s", err.msg);
        double dt = llmq_now() - t0;
        printf("  %s: wikitext-2 test, %zu bytes -> %zu ids in %.3f s (%.1f MB/s)\n", model, len, n, dt,
               len / 1e6 / (dt > 0 ? dt : 1e-9));
        CHECK_EQ_INT(n, 462061);
        CHECK_EQ_INT(n, rl / 4);
        size_t bad = SIZE_MAX;
        for (size_t i = 0; i < n && i < rl / 4; i++)
            if (ids[i] != (int32_t)llmq_get_le32(ref + 4 * i)) { bad = i; break; }
        CHECK_MSG(bad == SIZE_MAX, "first mismatch at id %zu", bad);
        char *out = NULL;
        size_t ol = 0;
        CHECK(!llmq_tok_decode(t, ids, n, 0, &out, &ol, &err));
        CHECK(out && ol == len && !memcmp(out, text, len));
        free(out);
        free(ids);
    }
    free(text);
    free(ref);
    llmq_tok_free(t);
}

TEST(wikitext_ids_llama) { whole_file("tiny-llama-mha"); }
TEST(wikitext_ids_qwen2) { whole_file("tiny-qwen2-gqa"); }

TEST(load_time)
{
    double t0 = llmq_now();
    llmq_tok *t = load_model_tok("tiny-llama-mha");
    printf("  load tokenizer.json (4096 tokens, 3839 merges): %.4f s\n", llmq_now() - t0);
    llmq_tok_free(t);
}

TEST(ref_json_prompt_and_greedy_text)
{
    static const char *const models[] = { "tiny-llama-mha", "tiny-qwen2-gqa" };
    for (size_t m = 0; m < 2; m++) {
        llmq_tok *t = load_model_tok(models[m]);
        char rel[256], *js = NULL;
        size_t jl;
        llmq_err err = { 0 };
        snprintf(rel, sizeof rel, "models/%s/reference/ref.json", models[m]);
        if (!t || llmq_read_file(spath(rel), &js, &jl, &err)) { CHECK_MSG(0, "%s", err.msg); llmq_tok_free(t); continue; }
        cJSON *r = cJSON_ParseWithLength(js, jl);
        const cJSON *prompt = cJSON_GetObjectItem(r, "greedy_prompt");
        const cJSON *pids = cJSON_GetObjectItem(r, "greedy_prompt_ids");
        const cJSON *gids = cJSON_GetObjectItem(r, "greedy_32_ids");
        const cJSON *gtext = cJSON_GetObjectItem(r, "greedy_32_text");
        CHECK(cJSON_IsString(prompt) && cJSON_IsArray(pids) && cJSON_IsArray(gids) && cJSON_IsString(gtext));
        if (cJSON_IsString(prompt) && cJSON_IsArray(pids) && cJSON_IsArray(gids) && cJSON_IsString(gtext)) {
            int32_t want[64], g[256];
            size_t wn = 0, gn = 0;
            for (const cJSON *e = pids->child; e && wn < 64; e = e->next) want[wn++] = (int32_t)e->valuedouble;
            for (const cJSON *e = gids->child; e && gn < 256; e = e->next) g[gn++] = (int32_t)e->valuedouble;
            CHECK(encode_is(t, prompt->valuestring, strlen(prompt->valuestring), want, wn));
            CHECK(decode_is(t, g, gn, 0, gtext->valuestring));
            CHECK(decode_is(t, g, gn, 1, gtext->valuestring));
        }
        CHECK_EQ_INT(llmq_tok_vocab_size(t), 4096);
        CHECK_EQ_INT(llmq_tok_bos(t), 0);
        CHECK_EQ_INT(llmq_tok_eos(t), 0);
        CHECK_EQ_INT(llmq_tok_add_bos(t), 0);
        CHECK(llmq_tok_is_special(t, 0));
        CHECK(llmq_tok_piece(t, 0) && !strcmp(llmq_tok_piece(t, 0), "<|endoftext|>"));
        CHECK(llmq_tok_piece(t, 4096) == NULL && llmq_tok_piece(t, -1) == NULL);
        cJSON_Delete(r);
        free(js);
        llmq_tok_free(t);
    }
}

TEST(roundtrip_books)
{
    static const char *const books[] = { "data/eval/dorian_gray.txt", "data/eval/little_women.txt",
                                         "data/tinyshakespeare.txt", "data/train/war_and_peace.txt" };
    llmq_tok *t = load_model_tok("tiny-llama-mha");
    if (!t) return;
    for (size_t b = 0; b < LLMQ_ARRAY_LEN(books); b++) {
        char *s = NULL;
        size_t n = 0;
        llmq_err err = { 0 };
        if (llmq_read_file(spath(books[b]), &s, &n, &err)) { CHECK_MSG(0, "%s", err.msg); continue; }
        double t0 = llmq_now();
        CHECK_MSG(roundtrip(t, s, n), "%s", books[b]);
        printf("  round trip %s: %zu bytes, %.3f s\n", books[b], n, llmq_now() - t0);
        free(s);
    }
    llmq_tok_free(t);
}

TEST(roundtrip_adversarial)
{
    llmq_tok *t = load_model_tok("tiny-llama-mha");
    if (!t) return;
    static const struct { const char *s; size_t n; } cases[] = {
#define S(x) { x, sizeof(x) - 1 }
        S(""), S(" "), S("   "), S("\t\n \r\n\v\f"), S("\r\n\r\n"), S("a\r\nb\r\n"), S("\n"),
        S("\xff"), S("\xc3"), S("\xc3("), S("a\x80" "b"), S("\xed\xa0\x80"), S("\xf4\x90\x80\x80"),
        S("\xc0\xaf"), S("\xe2\x82"), S("\0\0\0"), S("x\0y"),
        S("\xf0\x9f\x98\x80 emoji \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7"),
        S("<|endoftext|>"), S("a<|endoftext|>b"), S("<|endoftext|><|endoftext|>"), S("<|endoftext|"),
        S("<|endoftext|>\n<|endoftext|> x"), S("'s 're 'LL 'Ve ' s"), S("\xe4\xb8\xad\xe6\x96\x87 \xd0\x96\xd0\xb6 \xd9\xa3\xe2\x85\xab"),
        S("\xc2\xa0\xe2\x80\x83\xe3\x80\x80 nbsp"), S("e\xcc\x81"), S("1234567890 3.14159"),
#undef S
    };
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(cases); i++)
        CHECK_MSG(roundtrip(t, cases[i].s, cases[i].n), "case %zu", i);
    ENC(t, "<|endoftext|>", 0);
    {
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK(!llmq_tok_encode(t, "a<|endoftext|>b", 15, &ids, &n, NULL));
        CHECK(n == 3 && ids[1] == 0);
        free(ids);
        CHECK(!llmq_tok_encode(t, "", 0, &ids, &n, NULL));
        CHECK(n == 0 && ids != NULL);
        free(ids);
        CHECK(decode_is(t, (const int32_t[]){ 0 }, 1, 1, ""));
    }
    /* long words: a 200k-char run, random bytes, a 100k run of one CJK char */
    size_t n = 200000;
    char *s = malloc(3 * n + 1);
    memset(s, 'a', n);
    double t0 = llmq_now();
    CHECK(roundtrip(t, s, n));
    printf("  200000 x 'a' round trip: %.3f s\n", llmq_now() - t0);
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) { x = x * 1103515245u + 12345u; s[i] = (char)(x >> 16); }
    t0 = llmq_now();
    CHECK(roundtrip(t, s, n));
    printf("  200000 random bytes round trip: %.3f s\n", llmq_now() - t0);
    for (size_t i = 0; i < n / 2; i++) memcpy(s + 3 * i, "\xe4\xb8\xad", 3);
    CHECK(roundtrip(t, s, 3 * (n / 2)));
    for (size_t i = 0; i < n; i++) s[i] = "ab cd\n\t'.1"[i % 10];
    CHECK(roundtrip(t, s, n));
    free(s);
    /* 300k distinct words: more than the per-call word cache keeps */
    size_t cap = 300000 * 6, w = 0;
    s = malloc(cap);
    for (size_t i = 0; i < 300000; i++) {
        s[w++] = ' ';
        for (size_t v = i + 1; v; v /= 26) s[w++] = (char)('a' + v % 26);
    }
    t0 = llmq_now();
    CHECK(roundtrip(t, s, w));
    printf("  300000 distinct words (%zu bytes) round trip: %.3f s\n", w, llmq_now() - t0);
    free(s);
    {
        llmq_err err = { 0 };
        char *out = NULL;
        CHECK_EQ_INT(llmq_tok_decode(t, (const int32_t[]){ 5, 4096 }, 2, 0, &out, NULL, &err), LLMQ_EFORMAT);
        CHECK(out == NULL && strstr(err.msg, "4096"));
        CHECK_EQ_INT(llmq_tok_decode(t, (const int32_t[]){ -1 }, 1, 0, &out, NULL, &err), LLMQ_EFORMAT);
        CHECK(!llmq_tok_decode(t, NULL, 0, 0, &out, NULL, &err) && out && !*out);
        free(out);
    }
    llmq_tok_free(t);
}

/* ------------------------------------------------------------ synthetic tokenizers */

static llmq_tok *load_json(const char *js, llmq_err *err, int *rc)
{
    llmq_tok *t = NULL;
    *rc = llmq_tok_load_mem(&t, js, strlen(js), "test.json", err);
    return t;
}

/* A Llama-2-style tokenizer.json (SentencePiece BPE exported by HF):
 *   0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>, 259 ▁, 260 h, 261 e,
 *   262 l, 263 o, 264 w, 265 r, 266 d, 267 ▁h, 268 ll, 269 ▁he, 270 ▁hell,
 *   271 ▁hello, 272 or, 273 wor, 274 ▁w, 275 ▁wor, 276 ▁worl, 277 ▁world.
 * The merges mix "a b" strings and [a, b] pairs.  pre: pre_tokenizer JSON
 * ("null" for the Llama-2 normalizer route), norm: normalizer JSON. */
static char *sp_json(const char *norm, const char *pre, const char *dec, int byte_fallback, int fuse_unk,
                     int n_bytes)
{
    static const char *const pieces[] = { "▁", "h", "e", "l", "o", "w", "r", "d", "▁h", "ll", "▁he",
                                          "▁hell", "▁hello", "or", "wor", "▁w", "▁wor", "▁worl", "▁world" };
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    n += (size_t)snprintf(b + n, cap - n,
        "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":["
        "{\"id\":0,\"content\":\"<unk>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
        "{\"id\":1,\"content\":\"<s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
        "{\"id\":2,\"content\":\"</s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}],"
        "\"normalizer\":%s,\"pre_tokenizer\":%s,"
        "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
        "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],\"tokens\":[\"<s>\"]}}},"
        "\"decoder\":%s,"
        "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\",\"continuing_subword_prefix\":null,"
        "\"end_of_word_suffix\":null,\"fuse_unk\":%s,\"byte_fallback\":%s,\"ignore_merges\":false,\"vocab\":{"
        "\"<unk>\":0,\"<s>\":1,\"</s>\":2",
        norm, pre, dec, fuse_unk ? "true" : "false", byte_fallback ? "true" : "false");
    for (int i = 0; i < n_bytes; i++) n += (size_t)snprintf(b + n, cap - n, ",\"<0x%02X>\":%d", i, 3 + i);
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(pieces); i++)
        n += (size_t)snprintf(b + n, cap - n, ",\"%s\":%zu", pieces[i], 259 + i);
    snprintf(b + n, cap - n, "},\"merges\":[\"▁ h\",[\"l\",\"l\"],\"▁h e\",\"▁he ll\",[\"▁hell\",\"o\"],\"o r\","
             "\"▁ w\",\"w or\",\"▁w or\",\"▁wor l\",\"▁worl d\"]}}");
    return b;
}

#define LLAMA2_NORM "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"▁\"}," \
                    "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"▁\"}]}"
#define LLAMA2_DEC "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"▁\"},\"content\":\" \"}," \
                   "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]}"

TEST(sentencepiece_llama2_style)
{
    llmq_err err = { 0 };
    int rc;
    char *js = sp_json(LLAMA2_NORM, "null", LLAMA2_DEC, 1, 1, 256);
    llmq_tok *t = load_json(js, &err, &rc);
    free(js);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (!t) return;
    CHECK_EQ_INT(llmq_tok_vocab_size(t), 278);
    CHECK_EQ_INT(llmq_tok_bos(t), 1);
    CHECK_EQ_INT(llmq_tok_eos(t), 2);
    CHECK_EQ_INT(llmq_tok_add_bos(t), 1);
    /* "▁hello▁world": ranks make "o r" (5) fire before "▁ w" (6), which
     * then wins over "w or" (7): the heap order of HF's merge_all. */
    ENC(t, "hello world", 271, 277);
    ENC(t, "hello", 271);
    ENC(t, "", );
    /* spaces: "▁▁hello" -> ▁ then ▁hello */
    ENC(t, " hello", 259, 271);
    /* é is not in the vocab: byte fallback <0xC3><0xA9>; '!' -> <0x21> */
    ENC(t, "h\xc3\xa9!", 267, 3 + 0xC3, 3 + 0xA9, 3 + 0x21);
    /* invalid UTF-8 byte -> its byte token */
    ENC(t, "h\xff", 267, 3 + 0xFF);
    /* special tokens split first and are not normalized; each text piece
     * gets its own Prepend (HF's legacy Llama-2 behaviour) */
    ENC(t, "<s>hello</s>", 1, 271, 2);
    ENC(t, "hello<s>", 271, 1);
    ENC(t, "<s>", 1);
    CHECK(decode_is(t, (const int32_t[]){ 271, 277 }, 2, 0, "hello world"));
    CHECK(decode_is(t, (const int32_t[]){ 259, 271 }, 2, 0, " hello"));
    CHECK(decode_is(t, (const int32_t[]){ 267, 3 + 0xC3, 3 + 0xA9, 3 + 0x21 }, 4, 0, "h\xc3\xa9!"));
    CHECK(decode_is(t, (const int32_t[]){ 1, 271, 2 }, 3, 0, "<s> hello</s>"));
    CHECK(decode_is(t, (const int32_t[]){ 1, 271, 2 }, 3, 1, "hello"));
    CHECK(decode_is(t, (const int32_t[]){ 267, 3 + 0xFF }, 2, 0, "h\xff"));
    static const char *const rt[] = { "hello world", "  two  spaces ", "\xe4\xb8\xad\xe6\x96\x87", "a\xffz",
                                      "tab\there", "\xf0\x9f\x98\x80" };
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(rt); i++) {
        /* decode strips the one space Prepend added, so text round-trips */
        CHECK_MSG(roundtrip(t, rt[i], strlen(rt[i])), "%s", rt[i]);
    }
    llmq_tok_free(t);
}

TEST(sentencepiece_unk)
{
    llmq_err err = { 0 };
    int rc;
    /* no byte fallback: é (2 bytes) is unknown -> <unk>; fuse_unk merges
     * consecutive unknowns into one */
    char *js = sp_json(LLAMA2_NORM, "null", LLAMA2_DEC, 0, 1, 0);
    llmq_tok *t = load_json(js, &err, &rc);
    free(js);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (t) {
        ENC(t, "h\xc3\xa9\xc3\xa9", 267, 0);
        ENC(t, "h\xc3\xa9" "e\xc3\xa9", 267, 0, 261, 0);
        llmq_tok_free(t);
    }
    js = sp_json(LLAMA2_NORM, "null", LLAMA2_DEC, 0, 0, 0);
    t = load_json(js, &err, &rc);
    free(js);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (t) {
        ENC(t, "h\xc3\xa9\xc3\xa9", 267, 0, 0);
        llmq_tok_free(t);
    }
    /* byte fallback on but the byte tokens missing: falls back to unk */
    js = sp_json(LLAMA2_NORM, "null", LLAMA2_DEC, 1, 1, 0);
    t = load_json(js, &err, &rc);
    free(js);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (t) {
        ENC(t, "h!", 267, 0);
        llmq_tok_free(t);
    }
}

TEST(sentencepiece_metaspace)
{
    llmq_err err = { 0 };
    int rc;
    const char *dec = "{\"type\":\"Metaspace\",\"replacement\":\"▁\",\"prepend_scheme\":\"always\",\"split\":true}";
    char *js = sp_json("null", "{\"type\":\"Metaspace\",\"replacement\":\"▁\",\"prepend_scheme\":\"first\",\"split\":true}",
                       dec, 1, 1, 256);
    llmq_tok *t = load_json(js, &err, &rc);
    free(js);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (t) {
        ENC(t, "hello world", 271, 277);
        /* "first": no ▁ for a piece that does not start the text */
        ENC(t, "<s>hello", 1, 260, 261, 268, 263);
        /* " hello" -> "▁hello": it already starts with ▁, nothing prepended */
        ENC(t, " hello", 271);
        CHECK(decode_is(t, (const int32_t[]){ 271, 277 }, 2, 0, "hello world"));
        llmq_tok_free(t);
    }
    js = sp_json("null", "{\"type\":\"Metaspace\",\"replacement\":\"▁\",\"prepend_scheme\":\"always\",\"split\":false}",
                 dec, 1, 1, 256);
    t = load_json(js, &err, &rc);
    free(js);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (t) {
        ENC(t, "<s>hello", 1, 271);
        ENC(t, "hello world", 271, 277);
        llmq_tok_free(t);
    }
    /* legacy form: add_prefix_space, no prepend_scheme */
    js = sp_json("null", "{\"type\":\"Metaspace\",\"replacement\":\"▁\",\"add_prefix_space\":false}", dec, 1, 1, 256);
    t = load_json(js, &err, &rc);
    free(js);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (t) {
        ENC(t, "hello", 260, 261, 268, 263);
        llmq_tok_free(t);
    }
}

/* Regression (issue 17): bpe_word kept the merge heap of an earlier word
 * when that heap held at least ns entries, but a word of ns symbols can need
 * up to 2 * ns - 2.  "ccccccccc" (9 symbols) leaves a heap of 18;
 * "▁" + "ab" x 8 (17 symbols) starts with 15 pairs, and each of the 8
 * "a b" merges pushes "ab a" and "ab ab" entries that stay until their
 * rank: 15 - 8 + 14 = 21 entries, past the 18 (an ASan heap overflow
 * before the fix).  The ids follow HF's merge_all: all "a b" first, then
 * "ab ab" left to right. */
TEST(bpe_heap_grows_per_word)
{
    const char *js =
        "{\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"▁\",\"prepend_scheme\":\"never\",\"split\":true},"
        "\"model\":{\"type\":\"BPE\",\"vocab\":{\"c\":0,\"a\":1,\"b\":2,\"▁\":3,\"ab\":4,\"ba\":5,\"aba\":6,\"abab\":7},"
        "\"merges\":[\"a b\",\"b a\",\"ab a\",\"ab ab\"]}}";
    llmq_err err = { 0 };
    int rc;
    llmq_tok *t = load_json(js, &err, &rc);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (!t) return;
    ENC(t, "ccccccccc abababababababab", 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 7, 7, 7, 7);
    /* the same word alone, and longer words after shorter ones */
    ENC(t, "abababababababab", 7, 7, 7, 7);
    char s[4096];
    for (int k = 1; k < 200; k += 7) {
        size_t n = 0;
        for (int i = 0; i < k; i++) s[n++] = 'c';
        s[n++] = ' ';
        for (int i = 0; i < 2 * k; i++) { s[n++] = 'a'; s[n++] = 'b'; }
        int32_t *ids = NULL;
        size_t m = 0;
        CHECK_MSG(!llmq_tok_encode(t, s, n, &ids, &m, &err), "%s", err.msg);
        CHECK_EQ_INT((int)m, k + 1 + k);
        free(ids);
    }
    llmq_tok_free(t);
}

/* LLMQ_RE_MAX_PATTERN: a Split pattern of 4096 bytes loads, 4097 is
 * refused with status 5 and the bound in the message. */
TEST(regex_pattern_bound)
{
    for (int len = 4096; len <= 4097; len++) {
        char *js = malloc((size_t)len + 256);
        int n = sprintf(js, "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"");
        memset(js + n, 'a', (size_t)len);
        sprintf(js + n + len, "\"},\"behavior\":\"Isolated\"},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}");
        llmq_err err = { 0 };
        int rc;
        llmq_tok *t = load_json(js, &err, &rc);
        if (len == 4096) CHECK_MSG(rc == 0 && t, "%s", err.msg);
        else CHECK_MSG(rc == LLMQ_EUNSUPPORTED && !t && strstr(err.msg, "4096"), "rc %d: %s", rc, err.msg);
        llmq_tok_free(t);
        free(js);
    }
}

/* Collect pre-tokens joined with '|'. */
static int collect(void *ctx, const char *p, size_t n, int32_t id)
{
    (void)id;
    char *b = ctx;
    size_t l = strlen(b);
    if (l + n + 2 > 1024) return 1;
    if (l) b[l++] = '|';
    memcpy(b + l, p, n);
    b[l + n] = 0;
    return 0;
}

static char *pretok_json(const char *pre, const char *norm)
{
    char *b = malloc(4096);
    snprintf(b, 4096, "{\"normalizer\":%s,\"pre_tokenizer\":%s,\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", norm, pre);
    return b;
}

static void pretok_is(const char *pre, const char *norm, const char *text, const char *want)
{
    llmq_err err = { 0 };
    int rc;
    char *js = pretok_json(pre, norm);
    llmq_tok *t = load_json(js, &err, &rc);
    free(js);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (!t) return;
    char got[1024] = "";
    CHECK(!llmq_tok_pretokenize(t, text, strlen(text), collect, got, &err));
    CHECK_MSG(!strcmp(got, want), "pre-tokens of \"%s\": \"%s\", expected \"%s\"", text, got, want);
    llmq_tok_free(t);
}

#define BL_FALSE "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}"
#define LLAMA3_RE "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+"
#define QWEN2_RE "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+"
#define SPLIT(re) "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"" re "\"}," \
                  "\"behavior\":\"Isolated\",\"invert\":false}," BL_FALSE "]}"

TEST(pretokenizer_patterns)
{
    const char *text = "Hello world's 12345\n\n  x(y)  it'S";
    /* GPT-2 regex inside ByteLevel; Ġ = space, Ċ = \n, č = \r (expected
     * lists computed with Python's regex module) */
    pretok_is("{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}", "null", text,
              "Hello|Ġworld|'s|Ġ12345|ĊĊĠ|Ġx|(|y|)|Ġ|Ġit|'|S");
    pretok_is("{\"type\":\"ByteLevel\",\"add_prefix_space\":true}", "null", "hi", "Ġhi");
    /* Llama-3: digits by three, [^\r\n L N]?L+, \s*[\r\n]+, (?i) contractions */
    pretok_is(SPLIT(LLAMA3_RE), "null", text, "Hello|Ġworld|'s|Ġ|123|45|ĊĊ|Ġ|Ġx|(y|)|Ġ|Ġit|'S");
    pretok_is(SPLIT(QWEN2_RE), "null", text, "Hello|Ġworld|'s|Ġ|1|2|3|4|5|ĊĊ|Ġ|Ġx|(y|)|Ġ|Ġit|'S");
    pretok_is(SPLIT(LLAMA3_RE), "null", "a \r\n\r\n b!!\n\nc", "a|ĠčĊčĊ|Ġb|!!ĊĊ|c");
    /* NFC: e + U+0301 -> é; Hangul jamo -> syllable */
    pretok_is("null", "{\"type\":\"NFC\"}", "e\xcc\x81 \xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8", "\xc3\xa9 \xea\xb0\x81");
}

/* Pieces as a JSON array, for comparison with HF's. */
static int collect_json(void *ctx, const char *p, size_t n, int32_t id)
{
    (void)id;
    char *b = malloc(n + 1);
    if (!b) return 1;
    memcpy(b, p, n);
    b[n] = 0;
    cJSON *s = cJSON_CreateString(b);
    free(b);
    return !s || !cJSON_AddItemToArray(ctx, s);
}

/* testdata/tok/ref/pretok.json: normalizers and pre-tokenizers (Split with
 * every behaviour, inverted, on strings, empty matches, look-behind; Digits,
 * Whitespace, WhitespaceSplit, Punctuation, CharDelimiterSplit,
 * BertPreTokenizer; Strip, Replace with regexes) on tricky texts, with the
 * pieces HF tokenizers 0.23.2 gives (tests/tools/pretok-ref.py, run on the
 * device machine).  Each case runs with the scanners and on Oniguruma. */
TEST(pretok_reference)
{
    char *js = NULL;
    size_t len = 0;
    llmq_err err = { 0 };
    CHECK_MSG(!llmq_read_file("testdata/tok/ref/pretok.json", &js, &len, &err), "%s", err.msg);
    cJSON *root = js ? cJSON_ParseWithLength(js, len) : NULL;
    free(js);
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "cases");
    CHECK(cJSON_GetArraySize(cases) > 300);
    int i = 0, bad = 0;
    for (const cJSON *c = cases ? cases->child : NULL; c; c = c->next, i++) {
        cJSON *tj = cJSON_CreateObject();
        cJSON_AddItemToObject(tj, "normalizer", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(c, "normalizer"), 1));
        cJSON_AddItemToObject(tj, "pre_tokenizer",
                              cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(c, "pre_tokenizer"), 1));
        cJSON_AddItemToObject(tj, "model", cJSON_Parse("{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}"));
        char *tjs = cJSON_PrintUnformatted(tj);
        cJSON_Delete(tj);
        const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "text"));
        char *want = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(c, "pieces"));
        int rc;
        llmq_tok *t = load_json(tjs, &err, &rc);
        CHECK_MSG(rc == 0, "case %d: %s", i, err.msg);
        for (int sc = 1; t && sc >= 0; sc--) {
            llmq_tok_set_scanners(t, sc);
            cJSON *got = cJSON_CreateArray();
            CHECK_MSG(!llmq_tok_pretokenize(t, text, strlen(text), collect_json, got, &err), "%s", err.msg);
            char *gs = cJSON_PrintUnformatted(got);
            if (strcmp(gs, want) && bad++ < 10)
                CHECK_MSG(0, "case %d (%s): %s\n    on %s\n    gives %s\n    HF    %s", i, sc ? "scanners" : "Oniguruma",
                          tjs, cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(c, "text")), gs, want);
            free(gs);
            cJSON_Delete(got);
        }
        if (bad) test_failed_now = 1;
        llmq_tok_free(t);
        free(tjs);
        free(want);
    }
    printf("  %d normalizer / pre-tokenizer cases against HF, %d differ\n", i, bad);
    cJSON_Delete(root);
}

TEST(added_token_flags)
{
    /* lstrip / rstrip swallow neighbouring whitespace; single_word needs
     * non-word neighbours; a normalized token is matched after the
     * normalizer. */
    const char *js =
        "{\"added_tokens\":["
        "{\"id\":3,\"content\":\"<L>\",\"lstrip\":true,\"rstrip\":false,\"single_word\":false,\"normalized\":false,\"special\":true},"
        "{\"id\":4,\"content\":\"<R>\",\"lstrip\":false,\"rstrip\":true,\"single_word\":false,\"normalized\":false,\"special\":true},"
        "{\"id\":5,\"content\":\"cat\",\"lstrip\":false,\"rstrip\":false,\"single_word\":true,\"normalized\":true,\"special\":false},"
        "{\"id\":6,\"content\":\"<LONG>\",\"normalized\":false,\"special\":true},"
        "{\"id\":7,\"content\":\"<LO\",\"normalized\":false,\"special\":true}],"
        "\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false},"
        "\"decoder\":{\"type\":\"ByteLevel\"},"
        "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"Ġ\":1,\"b\":2},\"merges\":[]}}";
    llmq_err err = { 0 };
    int rc;
    llmq_tok *t = load_json(js, &err, &rc);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (!t) return;
    ENC(t, "a  <L>b", 0, 3, 2);
    ENC(t, "a<R>  b", 0, 4, 2);
    ENC(t, "a cat b", 0, 1, 5, 1, 2);
    ENC(t, "acat", 0, 0);         /* 'c','t' not in vocab and no unk: dropped, as HF */
    ENC(t, "<LONG><LO", 6, 7);    /* longest match first */
    CHECK(decode_is(t, (const int32_t[]){ 0, 3, 2 }, 3, 0, "a<L>b"));
    CHECK(decode_is(t, (const int32_t[]){ 0, 3, 2 }, 3, 1, "ab"));
    CHECK(decode_is(t, (const int32_t[]){ 0, 5, 2 }, 3, 1, "acatb"));
    CHECK_EQ_INT(llmq_tok_find(t, "cat"), 5);
    CHECK_EQ_INT(llmq_tok_find(t, "zzz"), -1);
    llmq_tok_free(t);
}

/* ------------------------------------------------------------ hostile files */

static void hostile(const char *js, int want_rc, const char *want_in_msg)
{
    llmq_err err = { 0 };
    int rc;
    llmq_tok *t = load_json(js, &err, &rc);
    CHECK_MSG(rc == want_rc && t == NULL, "rc %d (%s), expected %d for %.80s", rc, err.msg, want_rc, js);
    if (want_in_msg) CHECK_MSG(strstr(err.msg, want_in_msg) != NULL, "message \"%s\" lacks \"%s\"", err.msg, want_in_msg);
    if (rc) CHECK_MSG(strstr(err.msg, "test.json") != NULL, "message \"%s\" does not name the file", err.msg);
    llmq_tok_free(t);
}

#define MODEL(v, m) "{\"model\":{\"type\":\"BPE\",\"vocab\":" v ",\"merges\":" m "}}"

TEST(hostile_tokenizer_json)
{
    hostile("", LLMQ_EFORMAT, "JSON");
    hostile("{", LLMQ_EFORMAT, "JSON");
    hostile("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []", LLMQ_EFORMAT, "JSON");
    hostile("[]", LLMQ_EFORMAT, "object");
    hostile("{}", LLMQ_EFORMAT, "'model'");
    hostile("{\"model\":3}", LLMQ_EFORMAT, "'model'");
    hostile("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}}}", LLMQ_EUNSUPPORTED, "WordPiece");
    hostile("{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", LLMQ_EUNSUPPORTED, "Unigram");
    hostile("{\"model\":{\"type\":\"BPE\"}}", LLMQ_EFORMAT, "model.vocab");
    hostile(MODEL("[]", "[]"), LLMQ_EFORMAT, "model.vocab");
    hostile(MODEL("{}", "[]"), LLMQ_EFORMAT, "model.vocab");
    hostile(MODEL("{\"a\":\"0\"}", "[]"), LLMQ_EFORMAT, "model.vocab");
    hostile(MODEL("{\"a\":-1}", "[]"), LLMQ_EFORMAT, "out of range");
    hostile(MODEL("{\"a\":1.5}", "[]"), LLMQ_EFORMAT, "integer");
    hostile(MODEL("{\"a\":1e300}", "[]"), LLMQ_EFORMAT, "out of range");
    hostile(MODEL("{\"a\":2000000000}", "[]"), LLMQ_EFORMAT, "out of range");
    hostile(MODEL("{\"a\":0,\"b\":0}", "[]"), LLMQ_EFORMAT, "id 0");
    hostile(MODEL("{\"a\":0,\"a\":1}", "[]"), LLMQ_EFORMAT, "duplicate key 'a' in 'model.vocab'");
    hostile(MODEL("{\"a\":0}", "{}"), LLMQ_EFORMAT, "model.merges");
    hostile(MODEL("{\"a\":0}", "[3]"), LLMQ_EFORMAT, "model.merges[0]");
    hostile(MODEL("{\"a\":0}", "[\"a\"]"), LLMQ_EFORMAT, "model.merges[0]");
    hostile(MODEL("{\"a\":0}", "[\"a a a\"]"), LLMQ_EFORMAT, "model.merges[0]");
    hostile(MODEL("{\"a\":0}", "[[\"a\"]]"), LLMQ_EFORMAT, "model.merges[0]");
    hostile(MODEL("{\"a\":0,\"b\":1}", "[\"a b\"]"), LLMQ_EFORMAT, "'ab' is not in the vocab");
    hostile(MODEL("{\"a\":0,\"ab\":1}", "[\"a a\",\"a x\"]"), LLMQ_EFORMAT, "model.merges[0]");
    hostile(MODEL("{\"a\":0,\"aa\":1}", "[\"a a\",[\"a\",\"x\"]]"), LLMQ_EFORMAT, "'x' is not in the vocab");
    hostile("{\"added_tokens\":{},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", LLMQ_EFORMAT, "added_tokens");
    hostile("{\"added_tokens\":[{\"id\":0}],\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", LLMQ_EFORMAT, "added_tokens[0].content");
    hostile("{\"added_tokens\":[{\"content\":\"x\"}],\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", LLMQ_EFORMAT, "added_tokens[0].id");
    hostile("{\"added_tokens\":[{\"id\":0,\"content\":\"x\"}],\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", LLMQ_EFORMAT, "already names");
    hostile("{\"added_tokens\":[{\"id\":1,\"content\":\"x\",\"special\":\"yes\"}],\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", LLMQ_EFORMAT, "special");
    hostile("{\"pre_tokenizer\":{\"type\":\"UnicodeScripts\"},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", LLMQ_EUNSUPPORTED, "UnicodeScripts");
    /* a pattern Oniguruma refuses; a behaviour HF does not have; both or
     * neither of Regex and String */
    hostile("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\\\\w+\"},\"behavior\":\"Isolated\"},"
            "\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", LLMQ_EUNSUPPORTED, "regex '(\\\\w+' is not valid for Oniguruma");
    hostile("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"" LLAMA3_RE "\"},\"behavior\":\"Sideways\"},"
            "\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", LLMQ_EUNSUPPORTED, "'Sideways' is not one of");
    hostile("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\",\"String\":\"b\"},\"behavior\":\"Isolated\"},"
            "\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", LLMQ_EFORMAT, "pre_tokenizer.pattern");
    hostile("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"}},"
            "\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", LLMQ_EFORMAT, "pre_tokenizer.behavior");
    hostile("{\"pre_tokenizer\":{\"foo\":1},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", LLMQ_EFORMAT, "pre_tokenizer.type");
    hostile("{\"normalizer\":{\"type\":\"Lowercase\"},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", LLMQ_EUNSUPPORTED, "Lowercase");
    hostile("{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFKC\"}]},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}",
            LLMQ_EUNSUPPORTED, "normalizer.normalizers[0]");
    hostile("{\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"[\"},\"content\":\"x\"},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}",
            LLMQ_EUNSUPPORTED, "'normalizer.pattern': regex '['");
    hostile("{\"decoder\":{\"type\":\"Replace\",\"pattern\":{\"Regex\":\" +\"},\"content\":\"x\"},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}",
            LLMQ_EUNSUPPORTED, "Regex patterns in a decoder's Replace");
    hostile("{\"decoder\":{\"type\":\"WordPiece\"},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", LLMQ_EUNSUPPORTED, "WordPiece");
    hostile("{\"decoder\":{\"type\":\"Strip\",\"content\":\" \",\"start\":-1,\"stop\":0},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}",
            LLMQ_EFORMAT, "decoder.start");
    hostile("{\"model\":{\"vocab\":{\"a\":0},\"merges\":[],\"dropout\":0.1}}", LLMQ_EUNSUPPORTED, "dropout");
    hostile("{\"model\":{\"vocab\":{\"a\":0},\"merges\":[],\"byte_fallback\":1}}", LLMQ_EFORMAT, "byte_fallback");
    hostile("{\"model\":{\"vocab\":{\"a\":0},\"merges\":[],\"continuing_subword_prefix\":\"##\"}}", LLMQ_EUNSUPPORTED, "continuing");

    /* a missing file */
    llmq_tok *t = NULL;
    llmq_err err = { 0 };
    CHECK_EQ_INT(llmq_tok_load(&t, "/nonexistent/tokenizer.json", &err), LLMQ_EIO);
    CHECK(t == NULL);
    llmq_tok_free(NULL);

    /* unk_token named but absent: loads, fails only when needed */
    int rc;
    t = load_json("{\"model\":{\"vocab\":{\"a\":0},\"merges\":[],\"unk_token\":\"<unk>\"}}", &err, &rc);
    CHECK(rc == 0 && t);
    if (t) {
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK(!llmq_tok_encode(t, "aa", 2, &ids, &n, &err) && n == 2);
        free(ids);
        CHECK_EQ_INT(llmq_tok_encode(t, "ab", 2, &ids, &n, &err), LLMQ_EFORMAT);
        CHECK(ids == NULL && strstr(err.msg, "<unk>"));
        /* the message names the file and the field, like load errors */
        CHECK_MSG(!strncmp(err.msg, "test.json: 'model.unk_token': '<unk>' is not in the vocab", 56), "%s", err.msg);
        llmq_tok_free(t);
    }
}

/* JSON that Python's json (and HF tokenizers) would refuse or read
 * differently: refused at load, naming the file and the byte. */
TEST(hostile_strict_json)
{
    hostile(MODEL("{\"a\":0}", "[]") " garbage {\"model\": 1}", LLMQ_EFORMAT, "trailing bytes after the JSON value at byte 53");
    hostile(MODEL("{\"a\":0}", "[]") "\n\n{}", LLMQ_EFORMAT, "trailing bytes");
    hostile(MODEL("{\"a\":0,\"b\n\":1}", "[]"), LLMQ_EFORMAT, "raw control character 0x0a in a string at byte 40");
    hostile(MODEL("{\"a\":0,\"b\r\n\":1}", "[]"), LLMQ_EFORMAT, "raw control character 0x0d");
    hostile(MODEL("{\"a\":0,\"b\xff\":1}", "[]"), LLMQ_EFORMAT, "invalid UTF-8 at byte 40");
    hostile(MODEL("{\"a\":0,\"\xe4\xb8\":1}", "[]"), LLMQ_EFORMAT, "invalid UTF-8 at byte 39");
    hostile(MODEL("{\"a\":0,\"b\\u0000c\":1}", "[]"), LLMQ_EFORMAT, "\\u0000 in a string at byte 40");
    hostile("{\"added_tokens\":[{\"id\":1,\"content\":\"x\",\"id\":2}],\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}",
            LLMQ_EFORMAT, "duplicate key 'id' in 'added_tokens[0]'");
    hostile("{\"model\":{\"vocab\":{\"a\":0},\"merges\":[]},\"model\":{\"vocab\":{\"b\":0},\"merges\":[]}}",
            LLMQ_EFORMAT, "duplicate key 'model' in the top-level object");

    /* a vocab as large as real ones, with its duplicate at the end: named,
     * and found without a quadratic scan.  Not a timed bound (the machine
     * may be loaded): the best of three loads of 150k tokens must take less
     * than 40 times the best of three of 15k (linear: about 10; a scan of
     * all earlier keys: about 100). */
    size_t cap = 4 << 20, n = 0;
    char *b = malloc(cap);
    n += (size_t)snprintf(b + n, cap - n, "{\"model\":{\"type\":\"BPE\",\"merges\":[],\"vocab\":{");
    size_t small = 0;
    for (int i = 0; i < 150000; i++) {
        if (i == 15000) small = n;
        n += (size_t)snprintf(b + n, cap - n, "%s\"t%d\":%d", i ? "," : "", i, i);
    }
    size_t body = n;
    llmq_err err = { 0 };
    llmq_tok *t = NULL;
    double best[2] = { 1e9, 1e9 };
    for (int k = 0; k < 2; k++) {
        size_t end = k ? body : small;
        char save[8];
        memcpy(save, b + end, sizeof save);
        memcpy(b + end, "}}}", 4);
        for (int rep = 0; rep < 5; rep++) {
            double t0 = llmq_now();
            int rc = llmq_tok_load_mem(&t, b, end + 3, "big.json", &err);
            double dt = llmq_now() - t0;
            CHECK_MSG(rc == 0, "%s", err.msg);
            llmq_tok_free(t);
            t = NULL;
            if (dt < best[k]) best[k] = dt;
        }
        memcpy(b + end, save, sizeof save);
    }
    snprintf(b + body, cap - body, ",\"t77777\":150000}}}");
    int rc = llmq_tok_load_mem(&t, b, strlen(b), "big.json", &err);
    CHECK_MSG(rc == LLMQ_EFORMAT && !t && strstr(err.msg, "big.json: duplicate key 't77777' in 'model.vocab'"),
              "rc %d: %s", rc, err.msg);
    /* 10x the tokens: about 13x the time for n log n, 100x for quadratic;
     * 60x leaves room for a loaded machine (best of 5 each) */
    CHECK_MSG(best[1] < 60 * best[0], "a 150k vocab loads in %.4f s, 15k in %.4f s: not linear", best[1], best[0]);
    printf("  vocab load, best of 5: 15k tokens %.4f s, 150k tokens %.4f s\n", best[0], best[1]);
    free(b);
}

/* Tokens from the file are escaped in messages: one line, no raw control
 * bytes, printable UTF-8 kept. */
TEST(hostile_tokens_quoted)
{
    struct { const char *js; const char *want; } cases[] = {
        { MODEL("{\"\xc4\xa0\\r\":0,\"friend\":1}", "[\"\xc4\xa0\\r friend\"]"),
          "'model.merges[0]': token '\xc4\xa0\\rfriend' is not in the vocab" },
        { MODEL("{\"a\":0,\"b\\u001b[2J\":1}", "[\"a b\\u001b[2J\"]"), "token 'ab\\x1b[2J' is not in the vocab" },
        { MODEL("{\"a\":0,\"\\u2028\":1}", "[\"a \\u2028\"]"), "token 'a\\u2028' is not in the vocab" },
        { MODEL("{\"a\":0,\"b\":0}", "[]"), "id 0 is given to both 'a' and 'b'" },
        { MODEL("{\"a\\n\":0,\"b\":0}", "[]"), "id 0 is given to both 'a\\n' and 'b'" },
        { MODEL("{\"a\\n\":-1}", "[]"), "'model.vocab[\"a\\n\"]'" },
        { "{\"added_tokens\":[{\"id\":0,\"content\":\"x\\n\"}],\"model\":{\"vocab\":{\"a\\t\":0},\"merges\":[]}}",
          "id 0 of 'x\\n' already names 'a\\t'" },
        { "{\"model\":{\"type\":\"Word\\nPiece\",\"vocab\":{\"a\":0}}}", "'Word\\nPiece' is not supported" },
        { "{\"normalizer\":{\"type\":\"Lower\\ncase\"},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", "'Lower\\ncase'" },
        { "{\"pre_tokenizer\":{\"type\":\"White\\nspace\"},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", "'White\\nspace'" },
        { "{\"decoder\":{\"type\":\"Word\\nPiece\"},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", "'Word\\nPiece'" },
        { "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(a\\nb\"},\"behavior\":\"Isolated\"},"
          "\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", "regex '(a\\nb' is not valid" },
    };
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(cases); i++) {
        llmq_err err = { 0 };
        int rc;
        llmq_tok *t = load_json(cases[i].js, &err, &rc);
        int oneline = 1;
        for (const unsigned char *p = (const unsigned char *)err.msg; *p; p++)
            if (*p < 0x20 || *p == 0x7f) oneline = 0;
        CHECK_MSG(rc && !t && oneline && strstr(err.msg, cases[i].want), "case %zu: rc %d: %s", i, rc, err.msg);
        llmq_tok_free(t);
    }
}

static char *chained_replace(const char *kind, int steps, int wide)
{
    static char b[8192];
    size_t n = 0;
    n += (size_t)snprintf(b + n, sizeof b - n, "{\"%s\":{\"type\":\"Sequence\",\"%s\":[", kind,
                          strcmp(kind, "normalizer") ? "decoders" : "normalizers");
    for (int k = 0; k < steps; k++) {
        n += (size_t)snprintf(b + n, sizeof b - n, "%s{\"type\":\"Replace\",\"pattern\":{\"String\":\"e\"},\"content\":\"",
                              k ? "," : "");
        for (int j = 0; j < wide; j++) b[n++] = 'e';
        n += (size_t)snprintf(b + n, sizeof b - n, "\"}");
    }
    snprintf(b + n, sizeof b - n, "]},\"added_tokens\":[{\"id\":1,\"content\":\"<x>\",\"normalized\":true}],"
             "\"model\":{\"vocab\":{\"e\":0,\"x\":2},\"merges\":[]}}");
    return b;
}

/* Chained Replace normalizers / decoders grow text exponentially (64^6 bytes
 * from one "e"): refused past 64x + 4 KiB, naming the file; real chains
 * (' ' -> U+2581, 3x) stay far below. */
TEST(normalizer_growth_bounded)
{
    llmq_err err = { 0 };
    int rc;
    int32_t *ids = NULL;
    size_t n = 0;
    llmq_tok *t = load_json(chained_replace("normalizer", 6, 64), &err, &rc);
    CHECK_MSG(rc == 0 && t, "%s", err.msg);
    if (t) {
        CHECK_EQ_INT(llmq_tok_encode(t, "xx", 2, &ids, &n, &err), 0);
        free(ids);
        double t0 = llmq_now();
        CHECK_EQ_INT(llmq_tok_encode(t, "e", 1, &ids, &n, &err), LLMQ_EUNSUPPORTED);
        CHECK(llmq_now() - t0 < 1.0);
        CHECK_MSG(ids == NULL && strstr(err.msg, "test.json: 'normalizer': a 1-byte piece of text grows past 4160 bytes"),
                  "%s", err.msg);
        llmq_tok_free(t);
    }
    /* a normalized added token is normalized at load */
    t = load_json(chained_replace("normalizer", 6, 64), &err, &rc);
    llmq_tok_free(t);
    char *js = chained_replace("normalizer", 6, 64);
    char *x = strstr(js, "<x>");
    x[1] = 'e';
    t = load_json(js, &err, &rc);
    CHECK_MSG(rc == LLMQ_EUNSUPPORTED && !t && strstr(err.msg, "test.json: 'normalizer'"), "rc %d: %s", rc, err.msg);
    /* two doublings stay under the bound */
    t = load_json(chained_replace("normalizer", 2, 2), &err, &rc);
    CHECK_MSG(rc == 0 && t, "%s", err.msg);
    if (t) {
        CHECK(!llmq_tok_encode(t, "e", 1, &ids, &n, &err) && n == 4);
        free(ids);
        llmq_tok_free(t);
    }
    /* the decoder chain too */
    t = load_json(chained_replace("decoder", 6, 64), &err, &rc);
    CHECK_MSG(rc == 0 && t, "%s", err.msg);
    if (t) {
        char *out = NULL;
        CHECK_EQ_INT(llmq_tok_decode(t, (const int32_t[]){ 0 }, 1, 0, &out, NULL, &err), LLMQ_EUNSUPPORTED);
        CHECK_MSG(out == NULL && strstr(err.msg, "test.json: 'decoder'"), "%s", err.msg);
        free(out);
        llmq_tok_free(t);
    }
    /* Llama-2's normalizer on a long run of spaces: 3x, well inside */
    char *sp = sp_json(LLAMA2_NORM, "null", LLAMA2_DEC, 1, 0, 256);
    t = load_json(sp, &err, &rc);
    free(sp);
    CHECK_MSG(rc == 0 && t, "%s", err.msg);
    if (t) {
        char text[20000];
        memset(text, ' ', sizeof text);
        CHECK_MSG(!llmq_tok_encode(t, text, sizeof text, &ids, &n, &err), "%s", err.msg);
        free(ids);
        llmq_tok_free(t);
    }
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* tokenizer_config.json beside tokenizer.json is read as strictly. */
TEST(hostile_tokenizer_config)
{
    char dir[] = "/tmp/t-tokenizer-XXXXXX", tj[64], tc[64];
    if (!mkdtemp(dir)) { CHECK(0); return; }
    snprintf(tj, sizeof tj, "%s/tokenizer.json", dir);
    snprintf(tc, sizeof tc, "%s/tokenizer_config.json", dir);
    write_file(tj, "{\"model\":{\"vocab\":{\"a\":0,\"<s>\":1,\"</s>\":2},\"merges\":[]}}");
    struct { const char *cfg; int rc; const char *want; } cases[] = {
        { "{\"bos_token\": \"<s>\", \"add_bos_token\": true}\n", 0, NULL },
        { "{\"bos_token\": \"<s>\"} garbage {\"bos_token\": \"</s>\"}", LLMQ_EFORMAT, "trailing bytes after the JSON value at byte 21" },
        { "{\"bos_token\": \"<s>\", \"bos_token\": \"</s>\"}", LLMQ_EFORMAT, "duplicate key 'bos_token'" },
        { "{\"bos_token\": \"<s\x01>\"}", LLMQ_EFORMAT, "raw control character 0x01" },
        { "[1]", LLMQ_EFORMAT, "not a JSON object" },
    };
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(cases); i++) {
        write_file(tc, cases[i].cfg);
        llmq_tok *t = NULL;
        llmq_err err = { 0 };
        int rc = llmq_tok_load(&t, tj, &err);
        CHECK_MSG(rc == cases[i].rc && (rc ? !t && !strncmp(err.msg, tc, strlen(tc)) && strstr(err.msg, cases[i].want)
                                           : t && llmq_tok_bos(t) == 1 && llmq_tok_add_bos(t)),
                  "case %zu: rc %d: %s", i, rc, rc ? err.msg : "");
        llmq_tok_free(t);
    }
    remove(tc);
    remove(tj);
    rmdir(dir);
}

/* Truncations and byte flips of a real tokenizer.json must fail cleanly or
 * load; never crash (the sanitizer build checks the "never"). */
TEST(hostile_mutations)
{
    char *js = NULL;
    size_t n = 0;
    llmq_err err = { 0 };
    if (llmq_read_file(spath("models/tiny-llama-mha/tokenizer.json"), &js, &n, &err)) { CHECK_MSG(0, "%s", err.msg); return; }
    size_t cuts[] = { 0, 1, 10, 100, 1000, n / 3, n / 2, n - 2, n - 1 };
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(cuts); i++) {
        llmq_tok *t = NULL;
        int rc = llmq_tok_load_mem(&t, js, cuts[i], "test.json", &err);
        CHECK_MSG(rc == LLMQ_EFORMAT && !t, "cut %zu: rc %d", cuts[i], rc);
    }
    char *m = malloc(n);
    uint32_t x = 7;
    int loaded = 0;
    for (int it = 0; it < 60; it++) {
        memcpy(m, js, n);
        for (int k = 0; k < 1 + it % 4; k++) {
            x = x * 1103515245u + 12345u;
            size_t at = (x >> 8) % n;
            x = x * 1103515245u + 12345u;
            m[at] = "{}[]\",:0-9ae\\ \x80"[(x >> 16) % 16];
        }
        llmq_tok *t = NULL;
        int rc = llmq_tok_load_mem(&t, m, n, "test.json", &err);
        CHECK(rc == LLMQ_OK || rc == LLMQ_EFORMAT || rc == LLMQ_EUNSUPPORTED);
        if (t) {
            int32_t *ids = NULL;
            size_t k = 0;
            loaded++;
            if (!llmq_tok_encode(t, "The history of the city <|endoftext|>", 38, &ids, &k, &err)) {
                char *out = NULL;
                if (!llmq_tok_decode(t, ids, k, 0, &out, NULL, &err)) free(out);
                free(ids);
            }
            llmq_tok_free(t);
        }
    }
    printf("  mutations: %d of 60 still loaded\n", loaded);
    free(m);
    free(js);
}

TEST_MAIN()
