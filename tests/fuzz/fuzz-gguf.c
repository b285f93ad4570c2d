/*
 * fuzz-gguf.c - one GGUF file from hostile bytes: magic, version, counts,
 * every key-value pair (strings, arrays), tensor infos (dims, types,
 * offsets, alignment), the data area.  Through the in-memory reader
 * llmq_gguf_parse (llmq_gguf_open maps the file and runs the same parse),
 * then every accessor a caller uses.  Checked: an accepted file's tensors
 * and values lie inside the buffer (every byte is read, so a view outside
 * it is an ASan report), tensors are found by name, their bytes are
 * aligned, in order, not overlapping; string arrays walk to their count;
 * an error has a one-line message naming the file.
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
            (void)llmq_ggml_type_name_any(t->type);
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
