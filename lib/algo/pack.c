/* pack.c - quantize a model's linears and write an llmq packed file
 * (man/llmq-packed.5); formats/packed.c reads it. */
#include <math.h>
#include <stdio.h>
#include <zlib.h>
#include "pack.h"
#include "../linears.h"
#include "../quant/quant.h"
#include "../base/fileio.h"
#include "../base/sha256.h"
#include "../../formats/regex.h"
#include "../../formats/json.h"
#include "../../formats/modeldir.h"

/* ---- digest ---- */

static int cmp_tensor_ptr(const void *a, const void *b)
{
    const llmq_st_tensor *x = *(const llmq_st_tensor *const *)a, *y = *(const llmq_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

/* Every tensor of every shard, sorted by name (malloc'ed array of borrowed pointers). */
static const llmq_st_tensor **all_tensors(const llmq_ckpt *c, size_t *n, llmq_err *err)
{
    size_t tot = 0;
    for (size_t s = 0; s < c->n_shards; s++) tot += c->shards[s].n_tensors;
    const llmq_st_tensor **v = llmq_calloc(tot ? tot : 1, sizeof *v, err);
    if (!v) return NULL;
    size_t k = 0;
    for (size_t s = 0; s < c->n_shards; s++)
        for (size_t i = 0; i < c->shards[s].n_tensors; i++) v[k++] = &c->shards[s].tensors[i];
    qsort(v, tot, sizeof *v, cmp_tensor_ptr);
    *n = tot;
    return v;
}

static uint32_t tensor_crc(const llmq_st_tensor *t)
{
    return (uint32_t)crc32_z(crc32_z(0L, Z_NULL, 0), t->data, (z_size_t)t->nbytes);
}

int llmq_model_digest(const llmq_model *m, char hex[65], llmq_err *err)
{
    llmq_sha256 s;
    llmq_sha256_init(&s);
    char *cp = llmq_path_join(m->ckpt.dir, "config.json", err), *cfg;
    size_t len;
    if (!cp) return err->code;
    int rc = llmq_read_file(cp, &cfg, &len, err);
    free(cp);
    if (rc) return rc;
    llmq_sha256_update(&s, cfg, len);
    free(cfg);
    size_t n;
    const llmq_st_tensor **v = all_tensors(&m->ckpt, &n, err);
    if (!v) return err->code;
    for (size_t i = 0; i < n; i++) {
        char line[512];
        int k = snprintf(line, sizeof line, "\n%s %s", v[i]->name, llmq_dtype_name(v[i]->dtype));
        for (int d = 0; d < v[i]->ndim && k < (int)sizeof line - 24; d++)
            k += snprintf(line + k, sizeof line - (size_t)k, " %" PRId64, v[i]->shape[d]);
        if (k < (int)sizeof line - 12) k += snprintf(line + k, sizeof line - (size_t)k, " %08x", tensor_crc(v[i]));
        llmq_sha256_update(&s, line, (size_t)LLMQ_MIN(k, (int)sizeof line - 1));
        llmq_ckpt_release(&m->ckpt, v[i]);   /* a tensor at a time resident */
    }
    free(v);
    uint8_t d[32];
    llmq_sha256_final(&s, d);
    llmq_sha256_hex(d, hex);
    return LLMQ_OK;
}

/* ---- writing ---- */

/* Output buffers live until the writer has finished. */
typedef struct {
    void **p;
    size_t n, cap;
} bufs;

static void *buf_new(bufs *b, size_t bytes, llmq_err *err)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        void **np = realloc(b->p, cap * sizeof *np);
        if (!np) { llmq_errorf(err, LLMQ_ENOMEM, "out of memory"); return NULL; }
        b->p = np;
        b->cap = cap;
    }
    void *p = llmq_alloc_aligned(bytes ? bytes : 1, err);
    if (p) b->p[b->n++] = p;
    return p;
}

static void bufs_free(bufs *b)
{
    for (size_t i = 0; i < b->n; i++) free(b->p[i]);
    free(b->p);
}

typedef struct {
    llmq_st_writer *w;
    cJSON *crcs;
    uint64_t bytes;
} out_file;

static int add_out(out_file *of, const char *name, llmq_dtype dt, int ndim, const int64_t *shape,
                   const void *data, uint64_t nbytes, llmq_err *err)
{
    char hex[16];
    uint32_t crc = (uint32_t)crc32_z(crc32_z(0L, Z_NULL, 0), data, (z_size_t)nbytes);
    snprintf(hex, sizeof hex, "%08x", crc);
    if (!cJSON_AddStringToObject(of->crcs, name, hex)) return llmq_errorf(err, LLMQ_ENOMEM, "out of memory");
    of->bytes += nbytes;
    return llmq_st_writer_add(of->w, name, dt, ndim, shape, data, err);
}

static int is_linear_name(const llmq_model *m, const char *name, char *prefix, size_t n)
{
    size_t len = strlen(name);
    if (len < 8 || strcmp(name + len - 7, ".weight") != 0 || len - 7 >= n) return 0;
    memcpy(prefix, name, len - 7);
    prefix[len - 7] = 0;
    const char *rest;
    if (llmq_layer_of(prefix, m->cfg.n_layers, &rest) < 0) return 0;
    return llmq_linear_find(rest) >= 0;
}

/* int3: the codes quantized (or provided) in the int4 nibble layout,
 * repacked in place to three bits per code (LLMQ_W_Q3); *qcols becomes
 * qweight's row length in bytes.  Other schemes keep cols / 2. */
static int int3_repack(const llmq_qscheme *s, const char *prefix, int64_t rows, int64_t cols, uint8_t *codes,
                       int64_t *qcols, llmq_err *err)
{
    *qcols = cols / 2;
    if (s->format != LLMQ_PACK_INT3) return LLMQ_OK;
    *qcols = llmq_q3_row_bytes(cols);
    return llmq_q3_pack(codes, rows, cols, s->sym, codes, prefix, err);
}

static int quantize_linear(out_file *of, bufs *b, const llmq_pack_opts *o, const char *prefix,
                           const float *w, int64_t rows, int64_t cols, llmq_err *err)
{
    const llmq_qscheme *s = &o->scheme;
    char name[300];
    int rc;
    size_t R = (size_t)rows, C = (size_t)cols;
    if (s->format == LLMQ_PACK_INT8) {
        int8_t *codes = buf_new(b, R * C, err);
        float *sc = codes ? buf_new(b, R * sizeof(float), err) : NULL;
        if (!sc) return err->code;
        if ((rc = llmq_q8_quantize(w, rows, cols, codes, sc, prefix, err))) return rc;
        int64_t sh[2] = { rows, cols }, ss[1] = { rows };
        snprintf(name, sizeof name, "%s.qweight", prefix);
        if ((rc = add_out(of, name, LLMQ_DT_I8, 2, sh, codes, R * C, err))) return rc;
        snprintf(name, sizeof name, "%s.scales", prefix);
        return add_out(of, name, LLMQ_DT_F32, 1, ss, sc, R * sizeof(float), err);
    }
    if (s->format == LLMQ_PACK_INT4 || s->format == LLMQ_PACK_INT3) {
        if (cols % s->group)
            return llmq_errorf(err, LLMQ_EUNSUPPORTED, "tensor '%s.weight': row length %" PRId64 " is not a multiple of group %d",
                               prefix, cols, s->group);
        size_t G = C / (size_t)s->group;
        uint8_t *codes = buf_new(b, R * C / 2, err);
        uint16_t *sc = codes ? buf_new(b, R * G * 2, err) : NULL;
        uint8_t *z = sc && !s->sym ? buf_new(b, R * G, err) : NULL;
        if (!sc || (!s->sym && !z)) return err->code;
        int given = 0;
        if (o->qprovider && (rc = o->qprovider(o->provider_ctx, prefix, rows, cols, codes, sc, z, &given, err))) return rc;
        if (!given && (rc = (s->format == LLMQ_PACK_INT3 ? llmq_q3_quantize : llmq_q4_quantize)(w, rows, cols, s->group,
                                                                                          s->sym, NULL, codes, sc, z,
                                                                                          prefix, err))) return rc;
        int64_t qc;
        if ((rc = int3_repack(s, prefix, rows, cols, codes, &qc, err))) return rc;
        int64_t sh[2] = { rows, qc }, sg[2] = { rows, (int64_t)G };
        snprintf(name, sizeof name, "%s.qweight", prefix);
        if ((rc = add_out(of, name, LLMQ_DT_U8, 2, sh, codes, R * (size_t)qc, err))) return rc;
        snprintf(name, sizeof name, "%s.scales", prefix);
        if ((rc = add_out(of, name, LLMQ_DT_F16, 2, sg, sc, R * G * 2, err))) return rc;
        if (s->sym) return LLMQ_OK;
        snprintf(name, sizeof name, "%s.zeros", prefix);
        return add_out(of, name, LLMQ_DT_U8, 2, sg, z, R * G, err);
    }
    if (s->format == LLMQ_PACK_BLOCK) {
        const int B = llmq_block_size(s->btype);
        if (cols % 32)
            return llmq_errorf(err, LLMQ_EUNSUPPORTED, "tensor '%s.weight': row length %" PRId64 " is not a multiple of 32 "
                               "(%s)", prefix, cols, llmq_block_name(s->btype));
        const size_t G = C / (size_t)B, CB = llmq_wtype_is_block4(s->btype) ? C / 2 : C;
        uint8_t *codes = buf_new(b, R * CB, err);
        uint8_t *sc = codes ? buf_new(b, R * G, err) : NULL;
        float *ts = sc ? buf_new(b, sizeof(float), err) : NULL;
        if (!ts) return err->code;
        int given = 0;
        if (o->bprovider && (rc = o->bprovider(o->provider_ctx, prefix, rows, cols, codes, sc, ts, &given, err))) return rc;
        if (given && !llmq_wtype_is_nv(s->btype)) *ts = 1.0f;
        if (given && !(*ts > 0.0f && isfinite(*ts)))
            return llmq_errorf(err, LLMQ_EINTERNAL, "tensor '%s.weight': provided tensor scale %g is not finite and positive",
                               prefix, (double)*ts);
        if (!given && (rc = llmq_block_quantize(s->btype, w, rows, cols, s->mx_rule, codes, sc, ts, prefix, err))) return rc;
        int64_t sh[2] = { rows, (int64_t)CB }, sg[2] = { rows, (int64_t)G }, s1[1] = { 1 };
        snprintf(name, sizeof name, "%s.qweight", prefix);
        if ((rc = add_out(of, name, LLMQ_DT_U8, 2, sh, codes, R * CB, err))) return rc;
        snprintf(name, sizeof name, "%s.scales", prefix);
        if ((rc = add_out(of, name, LLMQ_DT_U8, 2, sg, sc, R * G, err))) return rc;
        if (!llmq_wtype_is_nv(s->btype)) return LLMQ_OK;
        snprintf(name, sizeof name, "%s.tensor_scale", prefix);
        return add_out(of, name, LLMQ_DT_F32, 1, s1, ts, sizeof(float), err);
    }
    if (cols % LLMQ_MX8_BLOCK)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "tensor '%s.weight': row length %" PRId64 " is not a multiple of the MX block %d",
                           prefix, cols, LLMQ_MX8_BLOCK);
    size_t G = C / LLMQ_MX8_BLOCK;
    int8_t *codes = buf_new(b, R * C, err);
    uint8_t *sc = codes ? buf_new(b, R * G, err) : NULL;
    if (!sc) return err->code;
    if ((rc = llmq_mx8_quantize(w, rows, cols, s->mx_rule, codes, sc, prefix, err))) return rc;
    int64_t sh[2] = { rows, cols }, sg[2] = { rows, (int64_t)G };
    snprintf(name, sizeof name, "%s.qweight", prefix);
    if ((rc = add_out(of, name, LLMQ_DT_I8, 2, sh, codes, R * C, err))) return rc;
    snprintf(name, sizeof name, "%s.scales", prefix);
    return add_out(of, name, LLMQ_DT_U8, 2, sg, sc, R * G, err);
}

int llmq_pack_model(const llmq_model *m, const llmq_pack_opts *o, const char *out_dir,
                    llmq_pack_stats *st, llmq_err *err)
{
    memset(st, 0, sizeof *st);
    if (m->packed_meta || m->ct)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: is already a %s model; pack its float source instead", m->path,
                           m->ct ? "compressed-tensors" : "packed");
    int rc = llmq_modeldir_check(out_dir, m->ckpt.dir, m->path, err);
    if (rc) return rc;
    /* POSIX ERE on Oniguruma: libonig also exports regcomp/regexec of its
     * own, which take the place of glibc's in a program linked with it. */
    llmq_re *re = NULL;
    if (o->skip && *o->skip) {
        int e = llmq_re_new(&re, o->skip, strlen(o->skip), LLMQ_RE_ERE, "--skip", err);
        if (e == LLMQ_EUNSUPPORTED) {          /* a bad pattern is a usage error */
            if (err) err->code = LLMQ_EUSAGE;
            return LLMQ_EUSAGE;
        }
        if (e) return e;
    }
    char digest[65];
    rc = llmq_model_digest(m, digest, err);
    if (rc) { llmq_re_free(re); return rc; }

    bufs b = { 0 };
    out_file of = { 0 };
    size_t n = 0;
    const llmq_st_tensor **v = NULL;
    cJSON *linears = cJSON_CreateObject(), *params = NULL;
    of.crcs = cJSON_CreateObject();
    char *s1 = NULL, *s2 = NULL, *s3 = NULL;
    float *tmp = NULL;
    uint64_t qbits = 0, qweights = 0;
    if (!linears || !of.crcs || !(of.w = llmq_st_writer_new(err))) { rc = err->code ? err->code : LLMQ_ENOMEM; goto out; }
    if (!(v = all_tensors(&m->ckpt, &n, err))) { rc = err->code; goto out; }
    char scheme[32];
    llmq_qscheme_name(&o->scheme, scheme, sizeof scheme);

    for (size_t i = 0; i < n; i++) {
        const llmq_st_tensor *t = v[i];
        char prefix[256];
        int lin = is_linear_name(m, t->name, prefix, sizeof prefix);
        if (!lin && o->quantize_head && !strcmp(t->name, "lm_head.weight") && t->ndim == 2) {
            snprintf(prefix, sizeof prefix, "lm_head");
            lin = 1;
        }
        int keep = !lin || (re && llmq_re_search(re, prefix, strlen(prefix)) == 1);
        int is_float = t->dtype == LLMQ_DT_F32 || t->dtype == LLMQ_DT_BF16 || t->dtype == LLMQ_DT_F16;
        int provided = 0;
        free(tmp);
        tmp = NULL;
        if (is_float) {
            if (!(tmp = llmq_alloc_aligned((size_t)t->nelem * sizeof(float), err))) { rc = err->code; goto out; }
            if (o->provider && (rc = o->provider(o->provider_ctx, t->name, tmp, (int64_t)t->nelem, &provided, err))) goto out;
        }
        st->params += lin || is_float ? t->nelem : 0;
        if (keep) {
            if (lin) st->linears_float++;
            if (provided) {
                /* transformed values: keep them exactly as fp32 */
                float *copy = buf_new(&b, (size_t)t->nelem * sizeof(float), err);
                if (!copy) { rc = err->code; goto out; }
                memcpy(copy, tmp, (size_t)t->nelem * sizeof(float));
                rc = add_out(&of, t->name, LLMQ_DT_F32, t->ndim, t->shape, copy, t->nelem * sizeof(float), err);
            } else {
                rc = add_out(&of, t->name, t->dtype, t->ndim, t->shape, t->data, t->nbytes, err);
            }
            if (rc) goto out;
            continue;
        }
        if (!provided) llmq_st_tensor_f32(t, tmp);
        llmq_ckpt_release(&m->ckpt, t);   /* read: its pages may go (peak RSS of large models) */
        uint64_t before = of.bytes;
        if ((rc = quantize_linear(&of, &b, o, prefix, tmp, t->shape[0], t->shape[1], err))) goto out;
        qbits += (of.bytes - before) * 8;
        qweights += t->nelem;
        cJSON *e = cJSON_CreateObject();
        if (!e || !cJSON_AddStringToObject(e, "scheme", scheme) || !cJSON_AddNumberToObject(e, "rows", (double)t->shape[0]) ||
            !cJSON_AddNumberToObject(e, "cols", (double)t->shape[1])) {
            cJSON_Delete(e);
            rc = llmq_errorf(err, LLMQ_ENOMEM, "out of memory");
            goto out;
        }
        cJSON_AddItemToObject(linears, prefix, e);
        st->linears_packed++;
    }
    st->bits_per_weight = qweights ? (double)qbits / (double)qweights : 0;
    st->bytes = of.bytes;

    params = o->extra ? cJSON_Duplicate(o->extra, 1) : cJSON_CreateObject();
    if (!params) { rc = llmq_errorf(err, LLMQ_ENOMEM, "out of memory"); goto out; }
    cJSON_AddStringToObject(params, "scheme", scheme);
    if (o->skip) cJSON_AddStringToObject(params, "skip", o->skip);
    if (o->quantize_head) cJSON_AddBoolToObject(params, "quantize_head", 1);
    if (!(s1 = cJSON_PrintUnformatted(linears)) || !(s2 = cJSON_PrintUnformatted(of.crcs)) ||
        !(s3 = cJSON_PrintUnformatted(params))) {
        rc = llmq_errorf(err, LLMQ_ENOMEM, "out of memory");
        goto out;
    }
    struct { const char *k, *v; } meta[] = {
        { "format", "llmq-packed" }, { "llmq.format_version", LLMQ_PACKED_VERSION },
        { "llmq.source", m->path }, { "llmq.source_digest", digest },
        { "llmq.command", o->command ? o->command : "" }, { "llmq.params", s3 },
        { "llmq.linears", s1 }, { "llmq.crc32", s2 },
    };
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(meta); i++)
        if ((rc = llmq_st_writer_meta(of.w, meta[i].k, meta[i].v, err))) goto out;

    rc = llmq_modeldir_write(out_dir, m->ckpt.dir, m->path, of.w, NULL, NULL, err);
out:
    free(tmp);
    free(v);
    free(s1); free(s2); free(s3);
    cJSON_Delete(linears);
    cJSON_Delete(of.crcs);
    cJSON_Delete(params);
    llmq_st_writer_free(of.w);
    bufs_free(&b);
    llmq_re_free(re);
    return rc;
}
