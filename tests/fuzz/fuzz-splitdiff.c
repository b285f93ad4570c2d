/*
 * fuzz-splitdiff.c - the hand-written scanners of the GPT-2, Llama 3 and
 * Qwen2 Split patterns against Oniguruma running the same patterns:
 * llmq_tok_pretokenize with llmq_tok_set_scanners on and off must give the
 * same pieces for any bytes (invalid UTF-8 included: the scanners class an
 * invalid byte as "other", Oniguruma sees it as U+FFFD, also "other").
 * Each pattern runs Isolated (the scanners' own path) and under the other
 * behaviours and inverted (the scanners' matches through split_spans).
 */
#include "fuzz.h"   /* first: it defines _GNU_SOURCE */
#include "lib/base/llmq-int.h"
#include "formats/tokenizer.h"

#define GPT2_RE "'s|'t|'re|'ve|'m|'ll|'d| ?\\\\p{L}+| ?\\\\p{N}+| ?[^\\\\s\\\\p{L}\\\\p{N}]+|\\\\s+(?!\\\\S)|\\\\s+"
#define LLAMA3_RE "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+"
#define QWEN2_RE "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+"
#define MODEL ",\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}"
#define SPLIT(re, beh, inv) "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"" re "\"}," \
                            "\"behavior\":\"" beh "\",\"invert\":" inv "}" MODEL

static const char *const specs[] = {
    "{\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"use_regex\":true}" MODEL,
    SPLIT(GPT2_RE, "Isolated", "false"),
    SPLIT(LLAMA3_RE, "Isolated", "false"),
    SPLIT(QWEN2_RE, "Isolated", "false"),
    SPLIT(LLAMA3_RE, "Removed", "true"),
    SPLIT(QWEN2_RE, "MergedWithNext", "false"),
};
/* Oniguruma costs about a microsecond a match, ten times the scanners: the
 * first 1 KiB of an input is compared, to keep the rate up. */
#define MAX_TEXT 1024
#define N_SPEC (sizeof specs / sizeof specs[0])
static llmq_tok *toks[N_SPEC];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    for (size_t k = 0; k < N_SPEC; k++) {
        llmq_err err = { 0 };
        if (llmq_tok_load_mem(&toks[k], specs[k], strlen(specs[k]), "splitdiff", &err)) {
            fprintf(stderr, "fuzz-splitdiff: spec %zu: %s\n", k, err.msg);
            exit(1);
        }
    }
    return 0;
}

typedef struct { char *b; size_t n, cap; } pieces;

/* Pieces as length-prefixed bytes, so that any split shows. */
static int add_piece(void *ctx, const char *p, size_t n, int32_t id)
{
    (void)id;
    pieces *s = ctx;
    if (s->cap - s->n < n + sizeof n) {
        s->cap = 2 * s->cap + n + sizeof n;
        if (!(s->b = realloc(s->b, s->cap))) abort();
    }
    memcpy(s->b + s->n, &n, sizeof n);
    memcpy(s->b + s->n + sizeof n, p, n);
    s->n += n + sizeof n;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_TEXT) size = MAX_TEXT;
    for (size_t k = 0; k < N_SPEC; k++) {
        pieces got[2] = { { 0 }, { 0 } };
        for (int sc = 0; sc < 2; sc++) {
            llmq_err err = { 0 };
            llmq_tok_set_scanners(toks[k], sc);
            if (llmq_tok_pretokenize(toks[k], (const char *)data, size, add_piece, &got[sc], &err)) {
                fprintf(stderr, "spec %zu (%s): %s\n", k, sc ? "scanners" : "Oniguruma", err.msg);
                abort();
            }
        }
        if (got[0].n != got[1].n || (got[0].n && memcmp(got[0].b, got[1].b, got[0].n))) {
            fprintf(stderr, "spec %zu: scanners and Oniguruma split differently\n", k);
            abort();
        }
        free(got[0].b);
        free(got[1].b);
    }
    return 0;
}
