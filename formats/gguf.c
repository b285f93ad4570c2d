/* gguf.c - GGUF v3 writer (layout in gguf.h). */
#include <stdio.h>
#include "gguf.h"
#include "../lib/base/fileio.h"

const char *llmq_ggml_type_name(llmq_ggml_type t)
{
    switch (t) {
    case LLMQ_GGML_F32: return "F32";
    case LLMQ_GGML_F16: return "F16";
    case LLMQ_GGML_BF16: return "BF16";
    case LLMQ_GGML_Q8_0: return "Q8_0";
    case LLMQ_GGML_Q4_0: return "Q4_0";
    case LLMQ_GGML_Q4_1: return "Q4_1";
    case LLMQ_GGML_MXFP4: return "MXFP4";
    }
    return "?";
}

uint64_t llmq_ggml_row_bytes(llmq_ggml_type t, int64_t ne0)
{
    if (ne0 < 1) return 0;
    uint64_t n = (uint64_t)ne0;
    switch (t) {
    case LLMQ_GGML_F32: return 4 * n;
    case LLMQ_GGML_F16: case LLMQ_GGML_BF16: return 2 * n;
    case LLMQ_GGML_Q8_0: return n % LLMQ_GGML_QK ? 0 : n / LLMQ_GGML_QK * sizeof(llmq_ggml_q8_0);
    case LLMQ_GGML_Q4_0: return n % LLMQ_GGML_QK ? 0 : n / LLMQ_GGML_QK * sizeof(llmq_ggml_q4_0);
    case LLMQ_GGML_Q4_1: return n % LLMQ_GGML_QK ? 0 : n / LLMQ_GGML_QK * sizeof(llmq_ggml_q4_1);
    case LLMQ_GGML_MXFP4: return n % LLMQ_GGML_QK ? 0 : n / LLMQ_GGML_QK * sizeof(llmq_ggml_mxfp4);
    }
    return 0;
}

typedef struct {
    char *name;
    llmq_ggml_type type;
    int n_dims;
    int64_t ne[LLMQ_GGUF_MAX_DIMS];
    uint64_t nbytes, offset;
    llmq_gguf_fill_fn fill;
    void *ctx;
} gguf_tensor;

struct llmq_gguf_writer {
    uint8_t *kv; size_t kv_len, kv_cap;   /* the serialized key-value pairs */
    uint64_t n_kv;
    char **keys; size_t keys_cap;         /* [n_kv] for the duplicate check */
    gguf_tensor *t; size_t n_t, t_cap;
    int finished;
};

llmq_gguf_writer *llmq_gguf_writer_new(llmq_err *err)
{
    return llmq_calloc(1, sizeof(llmq_gguf_writer), err);
}

void llmq_gguf_writer_free(llmq_gguf_writer *w)
{
    if (!w) return;
    for (uint64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->keys);
    free(w->t);
    free(w->kv);
    free(w);
}

static int grow(void **p, size_t *cap, size_t need, size_t esz, llmq_err *err)
{
    if (need <= *cap) return LLMQ_OK;
    size_t c = *cap ? *cap : 16, bytes;
    while (c < need) {
        if (c > SIZE_MAX / 2) return llmq_errorf(err, LLMQ_ENOMEM, "out of memory");
        c *= 2;
    }
    if (llmq_mul_ovf_size(c, esz, &bytes)) return llmq_errorf(err, LLMQ_ENOMEM, "out of memory");
    void *n = realloc(*p, bytes);
    if (!n) return llmq_errorf(err, LLMQ_ENOMEM, "out of memory");
    *p = n;
    *cap = c;
    return LLMQ_OK;
}

static int put(llmq_gguf_writer *w, const void *b, size_t n, llmq_err *err)
{
    if (w->kv_len > SIZE_MAX - n) return llmq_errorf(err, LLMQ_ENOMEM, "out of memory");
    int rc = grow((void **)&w->kv, &w->kv_cap, w->kv_len + n, 1, err);
    if (rc) return rc;
    if (n) memcpy(w->kv + w->kv_len, b, n);
    w->kv_len += n;
    return LLMQ_OK;
}

static int put_u32(llmq_gguf_writer *w, uint32_t v, llmq_err *err)
{
    uint8_t b[4];
    llmq_put_le32(b, v);
    return put(w, b, 4, err);
}

static int put_u64(llmq_gguf_writer *w, uint64_t v, llmq_err *err)
{
    uint8_t b[8];
    llmq_put_le64(b, v);
    return put(w, b, 8, err);
}

static int put_str(llmq_gguf_writer *w, const char *s, llmq_err *err)
{
    size_t n = strlen(s);
    int rc = put_u64(w, n, err);
    return rc ? rc : put(w, s, n, err);
}

/* Start a pair: check and remember the key, write it and the value type.
 * On a later failure the buffer may hold a partial pair; the writer is
 * then unusable, which every caller treats as fatal anyway. */
static int kv_begin(llmq_gguf_writer *w, const char *key, llmq_gguf_vtype t, llmq_err *err)
{
    char q[LLMQ_QUOTE_SIZE];
    if (w->finished) return LLMQ_BUG(err, "gguf writer used after finish");
    if (!key || !*key) return llmq_errorf(err, LLMQ_EUSAGE, "gguf: an empty metadata key");
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], key))
            return llmq_errorf(err, LLMQ_EUSAGE, "gguf: metadata key '%s' twice", llmq_quote(q, key));
    int rc = grow((void **)&w->keys, &w->keys_cap, w->n_kv + 1, sizeof *w->keys, err);
    if (rc) return rc;
    char *k = llmq_strdup(key, err);
    if (!k) return err->code;
    w->keys[w->n_kv++] = k;
    if ((rc = put_str(w, key, err))) return rc;
    return put_u32(w, (uint32_t)t, err);
}

int llmq_gguf_kv_u32(llmq_gguf_writer *w, const char *key, uint32_t v, llmq_err *err)
{
    int rc = kv_begin(w, key, LLMQ_GGUF_U32, err);
    return rc ? rc : put_u32(w, v, err);
}

int llmq_gguf_kv_i32(llmq_gguf_writer *w, const char *key, int32_t v, llmq_err *err)
{
    int rc = kv_begin(w, key, LLMQ_GGUF_I32, err);
    return rc ? rc : put_u32(w, (uint32_t)v, err);
}

int llmq_gguf_kv_f32(llmq_gguf_writer *w, const char *key, float v, llmq_err *err)
{
    int rc = kv_begin(w, key, LLMQ_GGUF_F32, err);
    return rc ? rc : put_u32(w, llmq_f32_bits(v), err);
}

int llmq_gguf_kv_bool(llmq_gguf_writer *w, const char *key, int v, llmq_err *err)
{
    uint8_t b = v ? 1 : 0;
    int rc = kv_begin(w, key, LLMQ_GGUF_BOOL, err);
    return rc ? rc : put(w, &b, 1, err);
}

int llmq_gguf_kv_str(llmq_gguf_writer *w, const char *key, const char *v, llmq_err *err)
{
    int rc = kv_begin(w, key, LLMQ_GGUF_STRING, err);
    return rc ? rc : put_str(w, v, err);
}

static int arr_begin(llmq_gguf_writer *w, const char *key, llmq_gguf_vtype et, uint64_t n, llmq_err *err)
{
    int rc = kv_begin(w, key, LLMQ_GGUF_ARRAY, err);
    if (!rc) rc = put_u32(w, (uint32_t)et, err);
    if (!rc) rc = put_u64(w, n, err);
    return rc;
}

int llmq_gguf_kv_arr_str(llmq_gguf_writer *w, const char *key, const char *const *v, uint64_t n, llmq_err *err)
{
    int rc = arr_begin(w, key, LLMQ_GGUF_STRING, n, err);
    for (uint64_t i = 0; !rc && i < n; i++) rc = put_str(w, v[i], err);
    return rc;
}

int llmq_gguf_kv_arr_i32(llmq_gguf_writer *w, const char *key, const int32_t *v, uint64_t n, llmq_err *err)
{
    int rc = arr_begin(w, key, LLMQ_GGUF_I32, n, err);
    for (uint64_t i = 0; !rc && i < n; i++) rc = put_u32(w, (uint32_t)v[i], err);
    return rc;
}

int llmq_gguf_kv_arr_f32(llmq_gguf_writer *w, const char *key, const float *v, uint64_t n, llmq_err *err)
{
    int rc = arr_begin(w, key, LLMQ_GGUF_F32, n, err);
    for (uint64_t i = 0; !rc && i < n; i++) rc = put_u32(w, llmq_f32_bits(v[i]), err);
    return rc;
}

int llmq_gguf_add_tensor(llmq_gguf_writer *w, const char *name, llmq_ggml_type type, int n_dims,
                         const int64_t *ne, llmq_gguf_fill_fn fill, void *ctx, llmq_err *err)
{
    char q[LLMQ_QUOTE_SIZE];
    if (w->finished) return LLMQ_BUG(err, "gguf writer used after finish");
    if (!name || !*name || strlen(name) > LLMQ_GGUF_MAX_NAME)
        return llmq_errorf(err, LLMQ_EUSAGE, "gguf: tensor name '%s' is empty or longer than %d bytes",
                           llmq_quote(q, name), LLMQ_GGUF_MAX_NAME);
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name))
            return llmq_errorf(err, LLMQ_EUSAGE, "gguf: tensor '%s' twice", llmq_quote(q, name));
    if (n_dims < 1 || n_dims > LLMQ_GGUF_MAX_DIMS)
        return llmq_errorf(err, LLMQ_EUSAGE, "gguf: tensor '%s' has %d dims (1 to %d)", llmq_quote(q, name),
                           n_dims, LLMQ_GGUF_MAX_DIMS);
    uint64_t nb = llmq_ggml_row_bytes(type, ne[0]);
    if (!nb)
        return llmq_errorf(err, LLMQ_EUSAGE, "gguf: tensor '%s': a row of %" PRId64 " is not whole %s blocks",
                           llmq_quote(q, name), ne[0], llmq_ggml_type_name(type));
    for (int i = 1; i < n_dims; i++)
        if (ne[i] < 1 || llmq_mul_ovf_u64(nb, (uint64_t)ne[i], &nb))
            return llmq_errorf(err, LLMQ_EUSAGE, "gguf: tensor '%s': dimension %d is %" PRId64 " or too large",
                               llmq_quote(q, name), i, ne[i]);
    if (nb > ((uint64_t)1 << 62)) return llmq_errorf(err, LLMQ_EUSAGE, "gguf: tensor '%s' is too large", llmq_quote(q, name));
    int rc = grow((void **)&w->t, &w->t_cap, w->n_t + 1, sizeof *w->t, err);
    if (rc) return rc;
    gguf_tensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = llmq_strdup(name, err))) return err->code;
    t->type = type;
    t->n_dims = n_dims;
    for (int i = 0; i < n_dims; i++) t->ne[i] = ne[i];
    t->nbytes = nb;
    t->fill = fill;
    t->ctx = ctx;
    w->n_t++;
    return LLMQ_OK;
}

static uint64_t align_up(uint64_t x) { return (x + LLMQ_GGUF_ALIGN - 1) / LLMQ_GGUF_ALIGN * LLMQ_GGUF_ALIGN; }

static int write_zeros(llmq_out *o, uint64_t n, llmq_err *err)
{
    static const uint8_t z[LLMQ_GGUF_ALIGN];
    return n ? llmq_out_write(o, z, (size_t)n, err) : LLMQ_OK;
}

int llmq_gguf_writer_finish(llmq_gguf_writer *w, const char *path, uint64_t *bytes, llmq_err *err)
{
    if (w->finished) return LLMQ_BUG(err, "gguf writer finished twice");
    w->finished = 1;
    /* the header: fixed part, the pairs, the tensor infos */
    uint8_t *hdr = NULL;
    size_t hlen = 0, hcap = 0;
    uint64_t off = 0, maxb = 0;
    int rc = LLMQ_OK;
#define HPUT(src, n) do { if (!rc && !(rc = grow((void **)&hdr, &hcap, hlen + (n), 1, err))) { \
        memcpy(hdr + hlen, (src), (n)); hlen += (n); } } while (0)
    uint8_t b[8];
    HPUT("GGUF", 4);
    llmq_put_le32(b, LLMQ_GGUF_VERSION); HPUT(b, 4);
    llmq_put_le64(b, w->n_t); HPUT(b, 8);
    llmq_put_le64(b, w->n_kv); HPUT(b, 8);
    HPUT(w->kv, w->kv_len);
    for (size_t i = 0; i < w->n_t; i++) {
        gguf_tensor *t = &w->t[i];
        size_t nl = strlen(t->name);
        llmq_put_le64(b, nl); HPUT(b, 8);
        HPUT(t->name, nl);
        llmq_put_le32(b, (uint32_t)t->n_dims); HPUT(b, 4);
        for (int d = 0; d < t->n_dims; d++) { llmq_put_le64(b, (uint64_t)t->ne[d]); HPUT(b, 8); }
        llmq_put_le32(b, (uint32_t)t->type); HPUT(b, 4);
        t->offset = off;
        llmq_put_le64(b, off); HPUT(b, 8);
        off = align_up(off + t->nbytes);
        maxb = LLMQ_MAX(maxb, t->nbytes);
    }
#undef HPUT
    if (rc) { free(hdr); return rc; }
    if (maxb > SIZE_MAX) { free(hdr); return llmq_errorf(err, LLMQ_ENOMEM, "%s: a tensor larger than memory", path); }
    uint8_t *buf = llmq_alloc_aligned((size_t)LLMQ_MAX(maxb, 1), err);
    if (!buf) { free(hdr); return err->code; }
    llmq_out o;
    if ((rc = llmq_out_open(&o, path, err))) { free(hdr); free(buf); return rc; }
    rc = llmq_out_write(&o, hdr, hlen, err);
    if (!rc) rc = write_zeros(&o, align_up(hlen) - hlen, err);
    uint64_t pos = 0;
    for (size_t i = 0; !rc && i < w->n_t; i++) {
        gguf_tensor *t = &w->t[i];
        if (pos != t->offset) { rc = LLMQ_BUG(err, "gguf tensor offsets"); break; }
        memset(buf, 0, (size_t)t->nbytes);
        if ((rc = t->fill(t->ctx, t->name, buf, t->nbytes, err))) break;
        if ((rc = llmq_out_write(&o, buf, (size_t)t->nbytes, err))) break;
        uint64_t end = align_up(pos + t->nbytes);
        /* llama.cpp's writer pads after every tensor but the last; padding
         * the last as well keeps the file a whole number of blocks, which
         * readers accept (the data area only has to hold each span). */
        rc = write_zeros(&o, end - pos - t->nbytes, err);
        pos = end;
    }
    free(hdr);
    free(buf);
    if (rc) { llmq_out_abort(&o); return rc; }
    if ((rc = llmq_out_commit(&o, err))) return rc;
    if (bytes) *bytes = align_up(hlen) + pos;
    return LLMQ_OK;
}
