/*
 * fuzz-tokenize.c - encoding arbitrary text with loaded tokenizers, and
 * decoding arbitrary ids: llmq_tok_encode, llmq_tok_decode.
 *
 * Three tokenizers are loaded once: the real byte-level BPE of
 * testdata/tiny-qwen2-gqa (Qwen2 regex, ByteLevel decoder), and two
 * SentencePiece-style BPEs made here with a small vocabulary, all 256
 * <0xXX> byte tokens and byte fallback: Llama 2's (Prepend + Replace
 * normalizer, Replace / ByteFallback / Fuse / Strip decoder) and the
 * Metaspace form newer conversions use.
 *
 * Every input is encoded by each; the ids must lie in the vocabulary, and
 * decoding them must give the text back where the tokenizer guarantees it:
 * always for byte-level BPE (no normalizer); for the SentencePiece ones when
 * the text holds no U+2581 (the normalizer turns spaces into it) and no
 * added token's text (the decoder writes those back with a space), and for
 * the Metaspace one when it does not start with a space.  Then
 * the input, read as little-endian 16-bit words, is decoded as ids (taken
 * modulo the vocabulary), with and without skip_special.
 */
#include "fuzz.h"   /* first: it defines _GNU_SOURCE */
#include "lib/base/llmq-int.h"
#include "formats/tokenizer.h"
#include <stdarg.h>

#ifndef LLMQ_SRCDIR
#define LLMQ_SRCDIR "."
#endif

enum { TOK_QWEN2, TOK_LLAMA2, TOK_METASPACE, N_TOK };
static llmq_tok *toks[N_TOK];

typedef struct { char *b; size_t n, cap; } sbuf;

static void sb_add(sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *s, const char *fmt, ...)
{
    if (!s->b && !(s->b = malloc(s->cap = 4096))) abort();
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(s->b + s->n, s->cap - s->n, fmt, ap);
        va_end(ap);
        if (k >= 0 && (size_t)k < s->cap - s->n) { s->n += (size_t)k; return; }
        s->cap = 2 * s->cap + (size_t)k;
        if (!(s->b = realloc(s->b, s->cap))) abort();
    }
}

#define SP "\xe2\x96\x81"   /* U+2581, SentencePiece's space */

/* A SentencePiece-style tokenizer.json: <unk> <s> </s>, the byte tokens,
 * the single characters below, and the merges of mp[] (each adds its
 * result to the vocabulary, in order, so ranks follow ids). */
static char *sp_tokenizer(const char *normalizer, const char *pre, const char *decoder)
{
    static const char *const chars[] = { SP, "a", "b", "c", "d", "e", "f", "g", "h", "i", "k", "l", "m", "n", "o",
                                         "p", "r", "s", "t", "u", "w", "y", "T", "I", ".", ",", "\xc3\xa9" };
    static const char *const mp[][2] = {
        { SP, "t" }, { "h", "e" }, { SP "t", "he" }, { "i", "n" }, { "e", "r" }, { "a", "n" }, { SP, "a" },
        { "o", "n" }, { "r", "e" }, { SP, "s" }, { "a", "t" }, { "e", "n" }, { SP, "w" }, { "o", "r" },
        { SP, "o" }, { "e", "s" }, { "l", "l" }, { SP "t", "h" }, { "i", "s" }, { SP, "c" }, { SP, "b" },
        { "in", "g" }, { SP "w", "or" }, { SP "wor", "l" }, { SP "worl", "d" }, { SP, "h" }, { SP "h", "e" },
        { SP "he", "ll" }, { SP "hell", "o" }, { SP, "T" }, { SP "T", "he" }, { SP, SP }, { SP SP, SP SP },
    };
    sbuf s = { 0 };
    sb_add(&s, "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[");
    static const char *const added[] = { "<unk>", "<s>", "</s>" };
    for (int i = 0; i < 3; i++)
        sb_add(&s, "%s{\"id\":%d,\"content\":\"%s\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
                   "\"normalized\":false,\"special\":true}", i ? "," : "", i, added[i]);
    sb_add(&s, "],\"normalizer\":%s,\"pre_tokenizer\":%s,\"post_processor\":null,\"decoder\":%s,"
               "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\",\"continuing_subword_prefix\":null,"
               "\"end_of_word_suffix\":null,\"fuse_unk\":true,\"byte_fallback\":true,\"ignore_merges\":false,"
               "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2", normalizer, pre, decoder);
    int id = 3;
    for (int i = 0; i < 256; i++) sb_add(&s, ",\"<0x%02X>\":%d", i, id++);
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(chars); i++) sb_add(&s, ",\"%s\":%d", chars[i], id++);
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(mp); i++) sb_add(&s, ",\"%s%s\":%d", mp[i][0], mp[i][1], id++);
    sb_add(&s, "},\"merges\":[");
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(mp); i++) sb_add(&s, "%s[\"%s\",\"%s\"]", i ? "," : "", mp[i][0], mp[i][1]);
    sb_add(&s, "]}}");
    return s.b;
}

static llmq_tok *load_or_die(const char *what, const char *json, const char *path)
{
    llmq_tok *t = NULL;
    llmq_err err = { 0 };
    int rc = json ? llmq_tok_load_mem(&t, json, strlen(json), what, &err) : llmq_tok_load(&t, path, &err);
    if (rc) { fprintf(stderr, "fuzz-tokenize: %s: %s\n", what, err.msg); exit(1); }
    return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    toks[TOK_QWEN2] = load_or_die("qwen2", NULL, LLMQ_SRCDIR "/testdata/tiny-qwen2-gqa/tokenizer.json");
    char *js = sp_tokenizer(
        "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"" SP "\"},"
        "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"" SP "\"}]}",
        "null",
        "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"" SP "\"},\"content\":\" \"},"
        "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]}");
    toks[TOK_LLAMA2] = load_or_die("llama2-sp", js, NULL);
    free(js);
    js = sp_tokenizer("null",
                      "{\"type\":\"Metaspace\",\"replacement\":\"" SP "\",\"prepend_scheme\":\"first\",\"split\":false}",
                      "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"ByteFallback\"},"
                      "{\"type\":\"Metaspace\",\"replacement\":\"" SP "\",\"prepend_scheme\":\"first\",\"split\":false}]}");
    toks[TOK_METASPACE] = load_or_die("metaspace-sp", js, NULL);
    free(js);
    return 0;
}

/* The decode(encode(x)) == x guarantee of tokenizer k for x. */
static int roundtrips(int k, const uint8_t *x, size_t n)
{
    if (k == TOK_QWEN2) return 1;
    /* Metaspace prepends U+2581 only to a text not already starting with
     * it, so a leading space is not given back (HF does the same) */
    if (k == TOK_METASPACE && n && x[0] == ' ') return 0;
    static const char *const no[] = { SP, "<unk>", "<s>", "</s>" };
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(no); i++)
        if (memmem(x, n, no[i], strlen(no[i]))) return 0;
    return 1;
}

static void report(const char *what, int k, const uint8_t *x, size_t n, const char *got, size_t gl)
{
    fprintf(stderr, "tokenizer %d: %s\n  text (%zu bytes): ", k, what, n);
    for (size_t i = 0; i < n && i < 200; i++) fprintf(stderr, "%02x", x[i]);
    fprintf(stderr, "\n  decoded (%zu bytes): ", gl);
    for (size_t i = 0; got && i < gl && i < 200; i++) fprintf(stderr, "%02x", (uint8_t)got[i]);
    fputc('\n', stderr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int k = 0; k < N_TOK; k++) {
        const llmq_tok *t = toks[k];
        int32_t V = llmq_tok_vocab_size(t);
        int32_t *ids = NULL;
        size_t n = 0;
        llmq_err err = { 0 };
        if (llmq_tok_encode(t, (const char *)data, size, &ids, &n, &err) != LLMQ_OK) {
            /* these tokenizers need no unk and do not grow text past the bound */
            fprintf(stderr, "tokenizer %d: encode failed: %s\n", k, err.msg);
            abort();
        }
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= V) abort();
        char *out = NULL;
        size_t ol = 0;
        if (llmq_tok_decode(t, ids, n, 0, &out, &ol, &err) != LLMQ_OK) {
            fprintf(stderr, "tokenizer %d: decode of its own ids failed: %s\n", k, err.msg);
            abort();
        }
        if (out[ol] != 0) abort();
        if (roundtrips(k, data, size) && (ol != size || memcmp(out, data, size))) {
            report("decode(encode(x)) != x", k, data, size, out, ol);
            abort();
        }
        free(out);
        free(ids);

        /* the bytes as ids */
        size_t m = size / 2;
        ids = malloc((m ? m : 1) * sizeof *ids);
        if (!ids) return 0;
        for (size_t i = 0; i < m; i++) ids[i] = (int32_t)(llmq_get_le16(data + 2 * i) % (uint32_t)V);
        for (int skip = 0; skip < 2; skip++) {
            if (llmq_tok_decode(t, ids, m, skip, &out, &ol, &err) != LLMQ_OK) {
                if (err.code == LLMQ_EUNSUPPORTED) continue;   /* the growth bound: allowed */
                fprintf(stderr, "tokenizer %d: decode failed: %s\n", k, err.msg);
                abort();
            }
            if (out[ol] != 0) abort();
            free(out);
        }
        free(ids);
    }
    return 0;
}
