/*
 * fuzz-gguf.c - one GGUF file from hostile bytes: magic, version, counts,
 * every key-value pair (strings, arrays), tensor infos (dims, types,
 * offsets, alignment), the data area.  Through the in-memory reader
 * llmq_gguf_parse (llmq_gguf_open maps the file and runs the same parse),
 * then every accessor a caller uses.  Checked: an accepted file's tensors
 * and values lie inside the buffer (every byte is read, so a view outside
 * it is an ASan report), tensors are found by name, their bytes are
 * aligned, inside the data area, no two overlapping (checked pairwise up to
 * 2048 tensors), readable or refused by type; string arrays walk to their
 * count; an error has a one-line message naming the file.
 */
#include "fuzz.h"   /* first: it defines _GNU_SOURCE */
#include "formats/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a copy of exactly size bytes: ASan sees any read past the end */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    llmq_gguf_file f;
    llmq_err err = { 0 };
    if (llmq_gguf_parse(&f, buf, size, "fuzz.gguf", &err) == LLMQ_OK) {
        unsigned sum = 0;
        if (f.version != 2 && f.version != 3) abort();
        if (!f.alignment || (f.alignment & (f.alignment - 1))) abort();
        for (uint64_t i = 0; i < f.n_kv; i++) {
            const llmq_gguf_kv *kv = &f.kv[i];
            if (llmq_gguf_find_kv(&f, kv->key) != kv) abort();   /* keys unique */
            if (!llmq_gguf_get(&f, kv->key, kv->type, kv->type == LLMQ_GGUF_ARRAY ? (int)kv->arr_type : -1, &err))
                abort();
            for (uint64_t j = 0; j < kv->len; j++) sum += kv->val[j];
            if (kv->type == LLMQ_GGUF_ARRAY && kv->arr_type == LLMQ_GGUF_STRING) {
                uint64_t pos = 0, n = 0, len;
                const char *s;
                while (llmq_gguf_arr_next_str(kv, &pos, &s, &len)) {
                    for (uint64_t j = 0; j < len; j++) sum += (uint8_t)s[j];
                    n++;
                }
                if (n != kv->n || pos != kv->len) abort();
            } else if (kv->type == LLMQ_GGUF_ARRAY) {
                if (kv->len != kv->n * llmq_gguf_vtype_size(kv->arr_type)) abort();
            }
        }
        uint32_t u;
        float x;
        const char *s;
        uint64_t len;
        (void)llmq_gguf_get_u32(&f, "general.alignment", &u, &err);
        (void)llmq_gguf_get_f32(&f, "llama.rope.freq_base", &x, &err);
        (void)llmq_gguf_get_str(&f, "general.architecture", &s, &len, &err);
        for (uint64_t i = 0; i < f.n_tensors; i++) {
            const llmq_gguf_tensor *t = &f.tensors[i];
            if (llmq_gguf_find_tensor(&f, t->name) != t) abort();   /* names unique */
            if (t->n_dims < 1 || t->n_dims > LLMQ_GGUF_MAX_DIMS || !t->nbytes) abort();
            if ((uint64_t)(t->data - buf) != f.data_offset + t->offset) abort();
            if (f.data_offset % f.alignment || t->offset % f.alignment) abort();
            for (uint64_t j = 0; j < t->nbytes; j++) sum += t->data[j];
            llmq_err e2 = { 0 };
            int r = llmq_gguf_tensor_readable(&f, t, &e2);
            if (r != LLMQ_OK && (r != LLMQ_EUNSUPPORTED || strncmp(e2.msg, "fuzz.gguf: ", 11))) abort();
        }
        for (uint64_t i = 0; f.n_tensors <= 2048 && i < f.n_tensors; i++)
            for (uint64_t j = i + 1; j < f.n_tensors; j++) {
                const llmq_gguf_tensor *a = &f.tensors[i], *b = &f.tensors[j];
                if (a->offset < b->offset + b->nbytes && b->offset < a->offset + a->nbytes) abort();
            }
        if (sum == 0xdeadbeef) fputc(' ', stderr);  /* keep the reads */
        llmq_gguf_close(&f);
        llmq_gguf_close(&f);   /* closing twice is allowed */
    } else {
        if (err.code == LLMQ_OK || strncmp(err.msg, "fuzz.gguf: ", 11) || strchr(err.msg, '\n')) abort();
        llmq_gguf_close(&f);   /* on error f is left closed */
    }
    free(buf);
    return 0;
}
