/*
 * fuzz-tokenizer.c - loading a hostile tokenizer.json: llmq_tok_load_mem
 * (vocab, merges, added tokens, normalizer, pre-tokenizer, decoder,
 * post-processor).  With FUZZ_SEP (fuzz.h) in the input, the part after it
 * is a tokenizer_config.json: both are written to files and loaded with
 * llmq_tok_load, which reads that file too (bos_token, eos_token,
 * add_bos_token).
 *
 * A tokenizer that loads is used the way commands use it: every id's piece,
 * the special-token lookups, encoding a short mixed text and decoding the
 * ids back, and decoding every id.
 */
#include "fuzz.h"   /* first: it defines _GNU_SOURCE */
#include "lib/base/llmq-int.h"
#include "formats/tokenizer.h"

static const char sample[] = "Hello world! It's 2024: caf\xc3\xa9, \xe4\xb8\xad\xe6\x96\x87, \xf0\x9f\x98\x80 "
                             "<s> </s><|endoftext|>  \t\n\r\n x\xff\xfe y \xe2\x96\x81z 12345";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *tj, *tc = NULL;
    size_t tjl, tcl = 0, pos = 0;
    fuzz_next_part(data, size, &pos, &tj, &tjl);
    int with_config = fuzz_next_part(data, size, &pos, &tc, &tcl);
    llmq_tok *t = NULL;
    llmq_err err = { 0 };
    int rc;
    if (with_config) {
        fuzz_clear();
        fuzz_write("tokenizer_config.json", tc, tcl);
        const char *path = fuzz_write("tokenizer.json", tj, tjl);
        rc = llmq_tok_load(&t, path, &err);
    } else {
        char *buf = malloc(size ? size : 1);   /* exactly size bytes, not NUL-terminated */
        if (!buf) return 0;
        memcpy(buf, data, size);
        rc = llmq_tok_load_mem(&t, buf, size, "fuzz/tokenizer.json", &err);
        free(buf);
    }
    if (rc != LLMQ_OK) {
        if (t || err.code == LLMQ_OK || !err.msg[0] || strchr(err.msg, '\n')) abort();
        return 0;
    }
    int32_t V = llmq_tok_vocab_size(t);
    if (V < 1) abort();
    for (int32_t id = 0; id < V && id < 1 << 16; id++) {
        const char *p = llmq_tok_piece(t, id);
        if (p && llmq_tok_find(t, p) < 0) abort();   /* a piece names some id */
        (void)llmq_tok_is_special(t, id);
    }
    int32_t bos = llmq_tok_bos(t), eos = llmq_tok_eos(t);
    if (bos < -1 || bos >= V || eos < -1 || eos >= V) abort();
    (void)llmq_tok_add_bos(t);
    int32_t *ids = NULL;
    size_t n = 0;
    if (llmq_tok_encode(t, sample, sizeof sample - 1, &ids, &n, &err) == LLMQ_OK) {
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= V) abort();
        char *out = NULL;
        size_t ol = 0;
        for (int skip = 0; skip < 2; skip++)
            if (llmq_tok_decode(t, ids, n, skip, &out, &ol, &err) == LLMQ_OK) {
                if (out[ol]) abort();
                free(out);
            }
        free(ids);
    }
    /* every id once, at most 4096 of them */
    size_t m = V < 4096 ? (size_t)V : 4096;
    ids = malloc(m * sizeof *ids);
    if (ids) {
        for (size_t i = 0; i < m; i++) ids[i] = (int32_t)i;
        char *out = NULL;
        if (llmq_tok_decode(t, ids, m, 0, &out, NULL, &err) == LLMQ_OK) free(out);
        free(ids);
    }
    llmq_tok_free(t);
    return 0;
}
