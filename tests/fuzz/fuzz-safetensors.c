/*
 * fuzz-safetensors.c - one safetensors file from hostile bytes: the 8-byte
 * header length, the JSON header (dtypes, shapes, data_offsets,
 * __metadata__) and that every span lies in the data area.  Through the
 * in-memory reader llmq_st_parse (llmq_st_open maps the file and calls the
 * same validation), then every accessor a caller uses; every byte of every
 * accepted tensor is read so that a span the reader let through outside the
 * buffer is an ASan report.
 */
#include "fuzz.h"   /* first: it defines _GNU_SOURCE */
#include "formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a copy of exactly size bytes: ASan sees any read past the end */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    llmq_st_file f;
    llmq_err err = { 0 };
    if (llmq_st_parse(&f, buf, size, "fuzz.safetensors", &err) == LLMQ_OK) {
        unsigned sum = 0;
        for (size_t i = 0; i < f.n_tensors; i++) {
            const llmq_st_tensor *t = &f.tensors[i];
            if (llmq_st_find(&f, t->name) != t) abort();   /* sorted by name, names unique */
            uint64_t nb = t->nelem * llmq_dtype_size(t->dtype);
            if (nb != t->nbytes) abort();
            for (uint64_t j = 0; j < t->nbytes; j++) sum += t->data[j];
        }
        (void)llmq_st_meta(&f, "format");
        (void)llmq_st_meta(&f, "llmq.version");
        if (sum == 0xdeadbeef) fputc(' ', stderr);  /* keep the reads */
        llmq_st_close(&f);
        llmq_st_close(&f);   /* closing twice is allowed */
    } else {
        if (err.code == LLMQ_OK || !err.msg[0] || strchr(err.msg, '\n')) abort();  /* one line, always */
        llmq_st_close(&f);   /* "on error f is left closed (safe to close again)" */
    }
    free(buf);
    return 0;
}
