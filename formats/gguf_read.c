/*
 * gguf_read.c - a reader of GGUF v2/v3 files (layout in gguf.h), for
 * hostile bytes: every length is checked against what remains before it is
 * used, every size is computed with checked arithmetic.  What is checked is
 * listed above llmq_gguf_open in gguf.h.
 */
#include <stddef.h>
#include <stdio.h>
#include "gguf.h"

/* ggml's types by number: block size in weights and bytes per block, from
 * ggml's ggml-common.h block structs (ggml.c's type traits).  Numbers ggml
 * has removed (Q4_2, Q4_3, the Q4_0_x_x and IQ4_NL_x_x repacks) keep a name
 * and blck 0: refused as unsupported. */
static const struct { const char *name; uint32_t blck, size; } ggml_types[LLMQ_GGML_TYPE_COUNT] = {
    [0] = { "F32", 1, 4 },        [1] = { "F16", 1, 2 },        [2] = { "Q4_0", 32, 18 },
    [3] = { "Q4_1", 32, 20 },     [4] = { "Q4_2", 0, 0 },       [5] = { "Q4_3", 0, 0 },
    [6] = { "Q5_0", 32, 22 },     [7] = { "Q5_1", 32, 24 },     [8] = { "Q8_0", 32, 34 },
    [9] = { "Q8_1", 32, 36 },     [10] = { "Q2_K", 256, 84 },   [11] = { "Q3_K", 256, 110 },
    [12] = { "Q4_K", 256, 144 },  [13] = { "Q5_K", 256, 176 },  [14] = { "Q6_K", 256, 210 },
    [15] = { "Q8_K", 256, 292 },  [16] = { "IQ2_XXS", 256, 66 }, [17] = { "IQ2_XS", 256, 74 },
    [18] = { "IQ3_XXS", 256, 98 }, [19] = { "IQ1_S", 256, 50 }, [20] = { "IQ4_NL", 32, 18 },
    [21] = { "IQ3_S", 256, 110 }, [22] = { "IQ2_S", 256, 82 },  [23] = { "IQ4_XS", 256, 136 },
    [24] = { "I8", 1, 1 },        [25] = { "I16", 1, 2 },       [26] = { "I32", 1, 4 },
    [27] = { "I64", 1, 8 },       [28] = { "F64", 1, 8 },       [29] = { "IQ1_M", 256, 56 },
    [30] = { "BF16", 1, 2 },      [31] = { "Q4_0_4_4", 0, 0 },  [32] = { "Q4_0_4_8", 0, 0 },
    [33] = { "Q4_0_8_8", 0, 0 },  [34] = { "TQ1_0", 256, 54 },  [35] = { "TQ2_0", 256, 66 },
    [36] = { "IQ4_NL_4_4", 0, 0 }, [37] = { "IQ4_NL_4_8", 0, 0 }, [38] = { "IQ4_NL_8_8", 0, 0 },
    [39] = { "MXFP4", 32, 17 },
};

const char *llmq_ggml_type_name_any(uint32_t t)
{
    return t < LLMQ_GGML_TYPE_COUNT ? ggml_types[t].name : "?";
}

static const char *const vtype_names[] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"
};

const char *llmq_gguf_vtype_name(uint32_t t)
{
    return t < LLMQ_ARRAY_LEN(vtype_names) ? vtype_names[t] : "?";
}

size_t llmq_gguf_vtype_size(llmq_gguf_vtype t)
{
    switch (t) {
    case LLMQ_GGUF_U8: case LLMQ_GGUF_I8: case LLMQ_GGUF_BOOL: return 1;
    case LLMQ_GGUF_U16: case LLMQ_GGUF_I16: return 2;
    case LLMQ_GGUF_U32: case LLMQ_GGUF_I32: case LLMQ_GGUF_F32: return 4;
    case LLMQ_GGUF_U64: case LLMQ_GGUF_I64: case LLMQ_GGUF_F64: return 8;
    case LLMQ_GGUF_STRING: case LLMQ_GGUF_ARRAY: return 0;
    }
    return 0;
}

void llmq_gguf_close(llmq_gguf_file *f)
{
    if (!f) return;
    if (f->kv)
        for (uint64_t i = 0; i < f->n_kv; i++) free(f->kv[i].key);
    if (f->tensors)
        for (uint64_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->kv);
    free(f->tensors);
    llmq_map_close(&f->map);
    free(f->path);
    memset(f, 0, sizeof *f);
}

/* A cursor over buf[0..size): pos only moves forward, never past size. */
typedef struct {
    const uint8_t *buf;
    uint64_t size, pos;
    const char *path;
    llmq_err *err;
} cur;

static uint64_t left(const cur *c) { return c->size - c->pos; }

/* Take n bytes; what names the field for the message. */
static int take(cur *c, uint64_t n, const uint8_t **p, const char *what)
{
    if (n > left(c))
        return llmq_errorf(c->err, LLMQ_EFORMAT, "%s: %s at byte %" PRIu64 " needs %" PRIu64
                           " bytes, %" PRIu64 " left", c->path, what, c->pos, n, left(c));
    *p = c->buf + c->pos;
    c->pos += n;
    return LLMQ_OK;
}

static int get_u32(cur *c, uint32_t *v, const char *what)
{
    const uint8_t *p = NULL;
    int rc = take(c, 4, &p, what);
    if (!rc) *v = llmq_get_le32(p);
    return rc;
}

static int get_u64(cur *c, uint64_t *v, const char *what)
{
    const uint8_t *p = NULL;
    int rc = take(c, 8, &p, what);
    if (!rc) *v = llmq_get_le64(p);
    return rc;
}

/* A string: u64 length, then its bytes. */
static int get_str(cur *c, const uint8_t **s, uint64_t *len, const char *what)
{
    int rc = get_u64(c, len, what);
    return rc ? rc : take(c, *len, s, what);
}

/* A key or tensor name: 1..max bytes, no NUL; copied NUL-terminated. */
static int get_name(cur *c, char **out, uint64_t max, const char *what)
{
    const uint8_t *s = NULL;
    uint64_t n;
    char q[LLMQ_QUOTE_SIZE];
    int rc = get_u64(c, &n, what);
    if (rc) return rc;
    if (n == 0) return llmq_errorf(c->err, LLMQ_EFORMAT, "%s: %s at byte %" PRIu64 " is empty", c->path, what, c->pos - 8);
    if (n > max)
        return llmq_errorf(c->err, LLMQ_EFORMAT, "%s: %s at byte %" PRIu64 " is %" PRIu64 " bytes, at most %" PRIu64,
                           c->path, what, c->pos - 8, n, max);
    if ((rc = take(c, n, &s, what))) return rc;
    if (memchr(s, 0, (size_t)n))
        return llmq_errorf(c->err, LLMQ_EFORMAT, "%s: %s '%s' holds a NUL byte", c->path, what,
                           llmq_quote_n(q, (const char *)s, (size_t)n));
    char *k = llmq_malloc((size_t)n + 1, c->err);
    if (!k) return c->err ? c->err->code : LLMQ_ENOMEM;
    memcpy(k, s, (size_t)n);
    k[n] = 0;
    *out = k;
    return LLMQ_OK;
}

static int parse_kv(cur *c, llmq_gguf_kv *kv)
{
    char q[LLMQ_QUOTE_SIZE];
    uint32_t t;
    int rc = get_name(c, &kv->key, LLMQ_GGUF_MAX_KEY, "key");
    if (rc) return rc;
    const char *k = llmq_quote(q, kv->key);
    if ((rc = get_u32(c, &t, "value type"))) return rc;
    if (t > LLMQ_GGUF_F64)
        return llmq_errorf(c->err, LLMQ_EFORMAT, "%s: key '%s': unknown value type %" PRIu32, c->path, k, t);
    kv->type = (llmq_gguf_vtype)t;
    kv->n = 1;
    uint64_t start;
    if (t == LLMQ_GGUF_STRING) {
        if ((rc = get_str(c, &kv->val, &kv->len, "string value"))) return rc;
        return LLMQ_OK;
    }
    if (t != LLMQ_GGUF_ARRAY) {
        if ((rc = take(c, llmq_gguf_vtype_size(kv->type), &kv->val, "value"))) return rc;
        kv->len = llmq_gguf_vtype_size(kv->type);
        if (t == LLMQ_GGUF_BOOL && kv->val[0] > 1)
            return llmq_errorf(c->err, LLMQ_EFORMAT, "%s: key '%s': bool value %u is not 0 or 1", c->path, k, kv->val[0]);
        return LLMQ_OK;
    }
    uint32_t at;
    uint64_t n;
    if ((rc = get_u32(c, &at, "array element type")) || (rc = get_u64(c, &n, "array count"))) return rc;
    if (at == LLMQ_GGUF_ARRAY)
        return llmq_errorf(c->err, LLMQ_EUNSUPPORTED, "%s: key '%s': an array of arrays is not supported", c->path, k);
    if (at > LLMQ_GGUF_F64)
        return llmq_errorf(c->err, LLMQ_EFORMAT, "%s: key '%s': unknown array element type %" PRIu32, c->path, k, at);
    kv->arr_type = (llmq_gguf_vtype)at;
    kv->n = n;
    start = c->pos;
    /* a string element takes at least its 8-byte length */
    uint64_t esz = at == LLMQ_GGUF_STRING ? 8 : llmq_gguf_vtype_size(kv->arr_type), need;
    if (llmq_mul_ovf_u64(n, esz, &need) || need > left(c))
        return llmq_errorf(c->err, LLMQ_EFORMAT, "%s: key '%s': array of %" PRIu64 " %s needs more than the %" PRIu64
                           " bytes left", c->path, k, n, llmq_gguf_vtype_name(at), left(c));
    if (at == LLMQ_GGUF_STRING) {
        for (uint64_t i = 0; i < n; i++) {
            const uint8_t *s;
            uint64_t len;
            if (get_str(c, &s, &len, "array string"))
                return llmq_errorf(c->err, LLMQ_EFORMAT, "%s: key '%s': string %" PRIu64 " of the array runs past the end"
                                   " of the file", c->path, k, i);
        }
    } else {
        const uint8_t *p;
        if ((rc = take(c, need, &p, "array"))) return rc;
        if (at == LLMQ_GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (p[i] > 1)
                    return llmq_errorf(c->err, LLMQ_EFORMAT, "%s: key '%s': bool element %" PRIu64 " is %u, not 0 or 1",
                                       c->path, k, i, p[i]);
    }
    kv->val = c->buf + start;
    kv->len = c->pos - start;
    return LLMQ_OK;
}

static int parse_tinfo(cur *c, llmq_gguf_tensor *t)
{
    char q[LLMQ_QUOTE_SIZE];
    uint32_t nd, type;
    int rc = get_name(c, &t->name, LLMQ_GGUF_MAX_NAME, "tensor name");
    if (rc) return rc;
    const char *nm = llmq_quote(q, t->name);
    if ((rc = get_u32(c, &nd, "tensor n_dims"))) return rc;
    if (nd < 1 || nd > LLMQ_GGUF_MAX_DIMS)
        return llmq_errorf(c->err, LLMQ_EFORMAT, "%s: tensor '%s': n_dims %" PRIu32 ", expected 1..%d", c->path, nm, nd,
                           LLMQ_GGUF_MAX_DIMS);
    t->n_dims = (int)nd;
    uint64_t nelem = 1;
    int ovf = 0;
    for (int i = 0; i < LLMQ_GGUF_MAX_DIMS; i++) t->ne[i] = 1;
    for (int i = 0; i < (int)nd; i++) {
        uint64_t v;
        if ((rc = get_u64(c, &v, "tensor dimension"))) return rc;
        if (v == 0 || v > (uint64_t)INT64_MAX)
            return llmq_errorf(c->err, LLMQ_EFORMAT, "%s: tensor '%s': ne[%d] = %" PRIu64 ", expected 1..2^63-1",
                               c->path, nm, i, v);
        t->ne[i] = (int64_t)v;
        if (llmq_mul_ovf_u64(nelem, v, &nelem)) ovf = 1;
    }
    if (ovf || nelem > (uint64_t)INT64_MAX)
        return llmq_errorf(c->err, LLMQ_EFORMAT, "%s: tensor '%s': element count overflows 63 bits", c->path, nm);
    t->nelem = nelem;
    if ((rc = get_u32(c, &type, "tensor type"))) return rc;
    if (type >= LLMQ_GGML_TYPE_COUNT)
        return llmq_errorf(c->err, LLMQ_EFORMAT, "%s: tensor '%s': unknown ggml type %" PRIu32, c->path, nm, type);
    if (!ggml_types[type].blck)
        return llmq_errorf(c->err, LLMQ_EUNSUPPORTED, "%s: tensor '%s': ggml type %s (%" PRIu32 ") was removed from ggml "
                           "and is not supported", c->path, nm, ggml_types[type].name, type);
    t->type = type;
    uint64_t blck = ggml_types[type].blck;
    if ((uint64_t)t->ne[0] % blck)
        return llmq_errorf(c->err, LLMQ_EFORMAT, "%s: tensor '%s': ne[0] = %" PRId64 " is not a multiple of %s's block of %"
                           PRIu64, c->path, nm, t->ne[0], ggml_types[type].name, blck);
    /* nelem / blck blocks: ne[0] is whole blocks, so nelem is too */
    if (llmq_mul_ovf_u64(nelem / blck, ggml_types[type].size, &t->nbytes))
        return llmq_errorf(c->err, LLMQ_EFORMAT, "%s: tensor '%s': byte size overflows 64 bits", c->path, nm);
    if ((rc = get_u64(c, &t->offset, "tensor offset"))) return rc;
    return LLMQ_OK;
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(**(char *const *const *)a, **(char *const *const *)b);
}

static int cmp_off(const void *a, const void *b)
{
    const llmq_gguf_tensor *x = *(const llmq_gguf_tensor *const *)a, *y = *(const llmq_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* The first name that appears twice among n strings, each at
 * (char *const *)((const char *)base + i * stride), or NULL.  Sorting, not
 * pairwise comparison: a hostile file may hold a million names.  *oom set
 * if the scratch could not be allocated. */
_Static_assert(offsetof(llmq_gguf_kv, key) == 0 && offsetof(llmq_gguf_tensor, name) == 0,
               "dup_name reads the name at the start of each element");
static const char *dup_name(const void *base, uint64_t n, size_t stride, int *oom, llmq_err *err)
{
    *oom = 0;
    if (n < 2) return NULL;
    char *const **v = llmq_calloc((size_t)n, sizeof *v, err);
    if (!v) { *oom = 1; return NULL; }
    for (uint64_t i = 0; i < n; i++) v[i] = (char *const *)((const char *)base + i * stride);
    qsort(v, (size_t)n, sizeof *v, cmp_key);
    const char *d = NULL;
    for (uint64_t i = 1; i < n && !d; i++)
        if (strcmp(*v[i - 1], *v[i]) == 0) d = *v[i];
    free(v);
    return d;
}

static int gguf_parse(llmq_gguf_file *f, const uint8_t *buf, uint64_t size, llmq_err *err)
{
    char q[LLMQ_QUOTE_SIZE], q2[LLMQ_QUOTE_SIZE];
    cur c = { buf, size, 0, f->path, err };
    const uint8_t *magic;
    uint64_t nt, nkv;
    int rc, oom;
    if (size < 4 || memcmp(buf, "GGUF", 4) != 0) {
        if (size < 4) return llmq_errorf(err, LLMQ_EFORMAT, "%s: %" PRIu64 " bytes, too short for a GGUF file", f->path, size);
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: not a GGUF file (magic '%s')", f->path,
                           llmq_quote_n(q, (const char *)buf, 4));
    }
    if ((rc = take(&c, 4, &magic, "magic")) || (rc = get_u32(&c, &f->version, "version"))) return rc;
    if (f->version == 1)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: GGUF version 1 is not supported (only 2 and 3)", f->path);
    if (f->version != 2 && f->version != 3)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: GGUF version %" PRIu32 " is not 2 or 3%s", f->path, f->version,
                           (f->version & 0xffff) == 0 ? " (a big-endian file?)" : "");
    if ((rc = get_u64(&c, &nt, "tensor count")) || (rc = get_u64(&c, &nkv, "key-value count"))) return rc;
    if (nkv > LLMQ_GGUF_MAX_KV || nkv > left(&c) / LLMQ_GGUF_MIN_KV)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: %" PRIu64 " key-value pairs: more than %s", f->path, nkv,
                           nkv > LLMQ_GGUF_MAX_KV ? "llmq's limit of 2^20" : "the rest of the file can hold");
    if (nt > LLMQ_GGUF_MAX_TENSORS || nt > left(&c) / LLMQ_GGUF_MIN_TINFO)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: %" PRIu64 " tensors: more than %s", f->path, nt,
                           nt > LLMQ_GGUF_MAX_TENSORS ? "llmq's limit of 2^20" : "the rest of the file can hold");

    f->kv = llmq_calloc((size_t)nkv, sizeof *f->kv, err);
    if (!f->kv) return err ? err->code : LLMQ_ENOMEM;
    for (uint64_t i = 0; i < nkv; i++) {
        rc = parse_kv(&c, &f->kv[i]);
        if (f->kv[i].key) f->n_kv = i + 1;
        if (rc) return rc;
    }
    const char *d = dup_name(f->kv, f->n_kv, sizeof *f->kv, &oom, err);
    if (oom) return err ? err->code : LLMQ_ENOMEM;
    if (d) return llmq_errorf(err, LLMQ_EFORMAT, "%s: key '%s' appears twice", f->path, llmq_quote(q, d));

    f->alignment = LLMQ_GGUF_ALIGN;
    const llmq_gguf_kv *al = llmq_gguf_find_kv(f, "general.alignment");
    if (al) {
        if (al->type != LLMQ_GGUF_U32)
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: key 'general.alignment' is a %s, expected a u32", f->path,
                               llmq_gguf_vtype_name(al->type));
        uint32_t a = llmq_get_le32(al->val);
        if (!llmq_is_pow2(a))
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: general.alignment %" PRIu32 " is not a power of two", f->path, a);
        f->alignment = a;
    }

    f->tensors = llmq_calloc((size_t)nt, sizeof *f->tensors, err);
    if (!f->tensors) return err ? err->code : LLMQ_ENOMEM;
    for (uint64_t i = 0; i < nt; i++) {
        rc = parse_tinfo(&c, &f->tensors[i]);
        if (f->tensors[i].name) f->n_tensors = i + 1;
        if (rc) return rc;
    }
    d = dup_name(f->tensors, f->n_tensors, sizeof *f->tensors, &oom, err);
    if (oom) return err ? err->code : LLMQ_ENOMEM;
    if (d) return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s' appears twice", f->path, llmq_quote(q, d));

    /* the data area: the first multiple of the alignment at or after the
     * infos (c.pos <= size < 2^64, so the sum cannot wrap past 2^64 - a) */
    uint64_t a = f->alignment, doff = c.pos % a ? c.pos + (a - c.pos % a) : c.pos;
    if (c.pos % a && doff < c.pos) return llmq_errorf(err, LLMQ_EFORMAT, "%s: data area offset overflows", f->path);
    f->data_offset = doff;
    if (nt == 0) return LLMQ_OK;   /* nothing is read from the data area */
    if (doff > size)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: data area starts at %" PRIu64 ", past the end of the file (%" PRIu64
                           " bytes)", f->path, doff, size);
    uint64_t dsize = size - doff;
    for (uint64_t i = 0; i < nt; i++) {
        llmq_gguf_tensor *t = &f->tensors[i];
        const char *nm = llmq_quote(q, t->name);
        if (t->offset % a)
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': offset %" PRIu64 " is not a multiple of the alignment %"
                               PRIu64, f->path, nm, t->offset, a);
        uint64_t end;
        if (llmq_add_ovf_u64(t->offset, t->nbytes, &end) || end > dsize)
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': %" PRIu64 " bytes at offset %" PRIu64
                               " run past the data area's %" PRIu64 " bytes", f->path, nm, t->nbytes, t->offset, dsize);
        t->data = buf + doff + t->offset;
    }
    llmq_gguf_tensor **byoff = llmq_calloc((size_t)nt, sizeof *byoff, err);
    if (!byoff) return err ? err->code : LLMQ_ENOMEM;
    for (uint64_t i = 0; i < nt; i++) byoff[i] = &f->tensors[i];
    qsort(byoff, (size_t)nt, sizeof *byoff, cmp_off);
    for (uint64_t i = 1; i < nt; i++) {
        const llmq_gguf_tensor *p = byoff[i - 1], *t = byoff[i];
        /* every tensor has at least one byte: dims >= 1 */
        if (t->offset < p->offset + p->nbytes) {
            rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s' at [%" PRIu64 ", %" PRIu64 ") overlaps tensor '%s' at [%"
                             PRIu64 ", %" PRIu64 ")", f->path, llmq_quote(q, t->name), t->offset, t->offset + t->nbytes,
                             llmq_quote(q2, p->name), p->offset, p->offset + p->nbytes);
            break;
        }
    }
    free(byoff);
    return rc;
}

int llmq_gguf_parse(llmq_gguf_file *f, const uint8_t *buf, uint64_t len, const char *path, llmq_err *err)
{
    memset(f, 0, sizeof *f);
    if (!(f->path = llmq_strdup(path ? path : "(gguf)", err))) return err ? err->code : LLMQ_ENOMEM;
    int rc = gguf_parse(f, buf, len, err);
    if (rc) llmq_gguf_close(f);
    return rc;
}

int llmq_gguf_open(llmq_gguf_file *f, const char *path, llmq_err *err)
{
    llmq_map m;
    memset(f, 0, sizeof *f);
    int rc = llmq_map_open(&m, path, err);
    if (rc) return rc;
    rc = llmq_gguf_parse(f, m.data, m.size, path, err);
    if (rc) { llmq_map_close(&m); return rc; }
    f->map = m;
    return LLMQ_OK;
}

const llmq_gguf_kv *llmq_gguf_find_kv(const llmq_gguf_file *f, const char *key)
{
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (strcmp(f->kv[i].key, key) == 0) return &f->kv[i];
    return NULL;
}

const llmq_gguf_kv *llmq_gguf_get(const llmq_gguf_file *f, const char *key, llmq_gguf_vtype t, int arr_type,
                                  llmq_err *err)
{
    char q[LLMQ_QUOTE_SIZE];
    const llmq_gguf_kv *kv = llmq_gguf_find_kv(f, key);
    if (!kv) {
        llmq_errorf(err, LLMQ_EFORMAT, "%s: key '%s' is missing", f->path, llmq_quote(q, key));
        return NULL;
    }
    if (kv->type != t || (t == LLMQ_GGUF_ARRAY && arr_type >= 0 && (int)kv->arr_type != arr_type)) {
        if (t == LLMQ_GGUF_ARRAY && kv->type == LLMQ_GGUF_ARRAY)
            llmq_errorf(err, LLMQ_EFORMAT, "%s: key '%s' is an array of %s, expected an array of %s", f->path,
                        llmq_quote(q, key), llmq_gguf_vtype_name(kv->arr_type), llmq_gguf_vtype_name((uint32_t)arr_type));
        else
            llmq_errorf(err, LLMQ_EFORMAT, "%s: key '%s' is a %s, expected a %s", f->path, llmq_quote(q, key),
                        llmq_gguf_vtype_name(kv->type), llmq_gguf_vtype_name(t));
        return NULL;
    }
    return kv;
}

int llmq_gguf_get_u32(const llmq_gguf_file *f, const char *key, uint32_t *out, llmq_err *err)
{
    const llmq_gguf_kv *kv = llmq_gguf_get(f, key, LLMQ_GGUF_U32, -1, err);
    if (!kv) return err ? err->code : LLMQ_EFORMAT;
    *out = llmq_get_le32(kv->val);
    return LLMQ_OK;
}

int llmq_gguf_get_f32(const llmq_gguf_file *f, const char *key, float *out, llmq_err *err)
{
    const llmq_gguf_kv *kv = llmq_gguf_get(f, key, LLMQ_GGUF_F32, -1, err);
    if (!kv) return err ? err->code : LLMQ_EFORMAT;
    *out = llmq_bits_f32(llmq_get_le32(kv->val));
    return LLMQ_OK;
}

int llmq_gguf_get_str(const llmq_gguf_file *f, const char *key, const char **s, uint64_t *len, llmq_err *err)
{
    const llmq_gguf_kv *kv = llmq_gguf_get(f, key, LLMQ_GGUF_STRING, -1, err);
    if (!kv) return err ? err->code : LLMQ_EFORMAT;
    *s = (const char *)kv->val;
    *len = kv->len;
    return LLMQ_OK;
}

int llmq_gguf_arr_next_str(const llmq_gguf_kv *kv, uint64_t *pos, const char **s, uint64_t *len)
{
    /* the parser walked these bytes: each length fits what follows it */
    if (kv->type != LLMQ_GGUF_ARRAY || kv->arr_type != LLMQ_GGUF_STRING || *pos + 8 > kv->len) return 0;
    uint64_t n = llmq_get_le64(kv->val + *pos);
    if (n > kv->len - *pos - 8) return 0;
    *s = (const char *)kv->val + *pos + 8;
    *len = n;
    *pos += 8 + n;
    return 1;
}

const llmq_gguf_tensor *llmq_gguf_find_tensor(const llmq_gguf_file *f, const char *name)
{
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

int llmq_gguf_tensor_readable(const llmq_gguf_file *f, const llmq_gguf_tensor *t, llmq_err *err)
{
    char q[LLMQ_QUOTE_SIZE];
    switch (t->type) {
    case LLMQ_GGML_F32: case LLMQ_GGML_F16: case LLMQ_GGML_BF16: case LLMQ_GGML_Q4_0: return LLMQ_OK;
    default: break;
    }
    return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: tensor '%s': ggml type %s is not supported (llmq reads F32, F16, "
                       "BF16, Q4_0)", f->path, llmq_quote(q, t->name), llmq_ggml_type_name_any(t->type));
}
