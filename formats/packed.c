/* packed.c - llmq packed files (man/llmq-packed.5): scheme names, the
 * side files that travel with a model, and reading; lib/algo/pack.c writes them. */
#include <math.h>
#include <stdio.h>
#include <zlib.h>
#include "packed.h"
#include "json.h"
#include "../lib/base/fileio.h"
#include "../lib/base/blocks.h"

/* ---- schemes ---- */

void llmq_qscheme_name(const llmq_qscheme *s, char *buf, size_t n)
{
    switch (s->format) {
    case LLMQ_PACK_INT8: snprintf(buf, n, "int8"); break;
    case LLMQ_PACK_INT4: snprintf(buf, n, "int4-g%d-%s", s->group, s->sym ? "sym" : "asym"); break;
    case LLMQ_PACK_MXINT8: snprintf(buf, n, "%s", s->mx_rule == LLMQ_MX_SCALE_CEIL ? "mxint8-ceil" : "mxint8"); break;
    case LLMQ_PACK_INT3: snprintf(buf, n, "int3-g%d-%s", s->group, s->sym ? "sym" : "asym"); break;
    case LLMQ_PACK_BLOCK:
        snprintf(buf, n, "%s%s", llmq_wtype_is_block(s->btype) ? llmq_block_name(s->btype) : "?",
                 s->mx_rule == LLMQ_MX_SCALE_CEIL ? "-ceil" : s->mx_rule == LLMQ_MX_SCALE_MSE ? "-mse" : "");
        break;
    }
}

int llmq_qscheme_parse(const char *name, llmq_qscheme *s)
{
    memset(s, 0, sizeof *s);
    if (!strcmp(name, "int8")) { s->format = LLMQ_PACK_INT8; return 0; }
    if (!strcmp(name, "mxint8")) { s->format = LLMQ_PACK_MXINT8; s->group = 32; return 0; }
    if (!strcmp(name, "mxint8-ceil")) { s->format = LLMQ_PACK_MXINT8; s->group = 32; s->mx_rule = LLMQ_MX_SCALE_CEIL; return 0; }
    for (int t = LLMQ_W_MXFP4; t <= LLMQ_W_MXFP8; t++)
        for (int rule = 0; rule < 3; rule++) {
            static const char *suffix[] = { "", "-ceil", "-mse" };
            char canon[32];
            snprintf(canon, sizeof canon, "%s%s", llmq_block_name((llmq_wtype)t), suffix[rule]);
            if (strcmp(canon, name)) continue;
            s->format = LLMQ_PACK_BLOCK;
            s->btype = (llmq_wtype)t;
            s->group = llmq_block_size(t);
            s->mx_rule = (llmq_mx_rule)rule;
            return 0;
        }
    /* the few valid names, spelled out: no leading zeros, signs or
     * out-of-range numbers to guard against */
    static const int bits[] = { 3, 4 }, groups[] = { 32, 64, 128 };
    for (size_t b = 0; b < LLMQ_ARRAY_LEN(bits); b++)
        for (size_t g = 0; g < LLMQ_ARRAY_LEN(groups); g++)
            for (int sym = 0; sym < 2; sym++) {
                char canon[32];
                snprintf(canon, sizeof canon, "int%d-g%d-%s", bits[b], groups[g], sym ? "sym" : "asym");
                if (strcmp(canon, name)) continue;
                s->format = bits[b] == 3 ? LLMQ_PACK_INT3 : LLMQ_PACK_INT4;
                s->group = groups[g];
                s->sym = sym;
                return 0;
            }
    return -1;
}

/* ---- reading ---- */

static uint32_t tensor_crc(const llmq_st_tensor *t)
{
    return (uint32_t)crc32_z(crc32_z(0L, Z_NULL, 0), t->data, (z_size_t)t->nbytes);
}

int llmq_packed_meta(const llmq_st_file *f, cJSON **meta, llmq_err *err)
{
    *meta = NULL;
    const char *ver = llmq_st_meta(f, "llmq.format_version");
    if (!ver) return LLMQ_OK;
    char q[LLMQ_QUOTE_SIZE];
    if (strcmp(ver, LLMQ_PACKED_VERSION) != 0)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: llmq packed format version '%s' is not supported (this llmq reads %s)",
                           f->path, llmq_quote(q, ver), LLMQ_PACKED_VERSION);
    const char *keys[] = { "llmq.linears", "llmq.crc32" }, *names[] = { "linears", "crc32" };
    cJSON *m = cJSON_CreateObject();
    if (!m) return llmq_errorf(err, LLMQ_ENOMEM, "out of memory");
    for (int i = 0; i < 2; i++) {
        const char *s = llmq_st_meta(f, keys[i]);
        if (!s) {
            cJSON_Delete(m);
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: metadata '%s' is missing", f->path, keys[i]);
        }
        /* the value is a JSON text inside a JSON string: as strict as any file */
        char what[600];
        snprintf(what, sizeof what, "%s: metadata '%s'", f->path, keys[i]);
        cJSON *o = NULL;
        int rc = llmq_json_parse(s, strlen(s), what, &o, err);
        if (!rc && !cJSON_IsObject(o)) rc = llmq_errorf(err, LLMQ_EFORMAT, "%s is not a JSON object", what);
        if (rc) {
            cJSON_Delete(o);
            cJSON_Delete(m);
            return rc;
        }
        cJSON_AddItemToObject(m, names[i], o);
    }
    *meta = m;
    return LLMQ_OK;
}

int llmq_packed_check_crc(const llmq_ckpt *c, const cJSON *meta, llmq_err *err)
{
    const cJSON *crcs = cJSON_GetObjectItemCaseSensitive(meta, "crc32");
    size_t n_tensors = 0;
    for (size_t s = 0; s < c->n_shards; s++) {
        const llmq_st_file *f = &c->shards[s];
        for (size_t i = 0; i < f->n_tensors; i++) {
            const llmq_st_tensor *t = &f->tensors[i];
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(crcs, t->name);
            char q[LLMQ_QUOTE_SIZE], q2[LLMQ_QUOTE_SIZE];
            if (!cJSON_IsString(e))
                return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s' has no crc32 in the metadata", f->path,
                                   llmq_quote(q, t->name));
            char hex[16];
            snprintf(hex, sizeof hex, "%08x", tensor_crc(t));
            if (strcmp(hex, e->valuestring) != 0)
                return llmq_errorf(err, LLMQ_EVERIFY, "%s: tensor '%s': crc32 %s does not match the recorded '%s': the file is corrupt",
                                   f->path, llmq_quote(q, t->name), hex, llmq_quote(q2, e->valuestring));
            n_tensors++;
        }
    }
    if ((size_t)cJSON_GetArraySize(crcs) != n_tensors) {
        const cJSON *e;
        cJSON_ArrayForEach(e, crcs)
            if (!llmq_ckpt_find(c, e->string, NULL)) {
                char q[LLMQ_QUOTE_SIZE];
                return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s' is recorded in the metadata but missing",
                                   c->shards[0].path, llmq_quote(q, e->string));
            }
    }
    return LLMQ_OK;
}

static int want_tensor(const llmq_ckpt *c, const char *prefix, const char *suffix, llmq_dtype dt,
                       int64_t d0, int64_t d1, const llmq_st_tensor **out, llmq_err *err)
{
    char name[300];
    const llmq_st_file *f = NULL;
    snprintf(name, sizeof name, "%s.%s", prefix, suffix);
    const llmq_st_tensor *t = llmq_ckpt_find(c, name, &f);
    const char *path = f ? f->path : c->shards[0].path;
    if (!t) return llmq_errorf(err, LLMQ_EFORMAT, "%s: missing tensor '%s'", path, name);
    int ndim = d1 < 0 ? 1 : 2;
    if (t->dtype != dt || t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
        if (ndim == 2)
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s' must be %s [%" PRId64 ", %" PRId64 "]",
                               path, name, llmq_dtype_name(dt), d0, d1);
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s' must be %s [%" PRId64 "]", path, name, llmq_dtype_name(dt), d0);
    }
    *out = t;
    return LLMQ_OK;
}

int llmq_packed_linear(const llmq_ckpt *c, const cJSON *meta, const char *prefix, int64_t rows, int64_t cols,
                       llmq_wmat *w, int *found, llmq_err *err)
{
    *found = 0;
    const cJSON *lin = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(meta, "linears"), prefix);
    if (!lin) return LLMQ_OK;
    const cJSON *sn = cJSON_GetObjectItemCaseSensitive(lin, "scheme");
    llmq_qscheme s;
    char qs[LLMQ_QUOTE_SIZE];
    if (!cJSON_IsString(sn) || llmq_qscheme_parse(sn->valuestring, &s))
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: linear '%s': unknown scheme '%s'", c->shards[0].path, prefix,
                           cJSON_IsString(sn) ? llmq_quote(qs, sn->valuestring) : "?");
    const llmq_st_tensor *q, *sc, *z = NULL;
    int rc;
    memset(w, 0, sizeof *w);
    w->rows = rows;
    w->cols = cols;
    switch (s.format) {
    case LLMQ_PACK_INT8:
        if ((rc = want_tensor(c, prefix, "qweight", LLMQ_DT_I8, rows, cols, &q, err)) ||
            (rc = want_tensor(c, prefix, "scales", LLMQ_DT_F32, rows, -1, &sc, err))) return rc;
        w->type = LLMQ_W_Q8;
        break;
    case LLMQ_PACK_INT4:
    case LLMQ_PACK_INT3: {
        if (cols % s.group)
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: linear '%s': %" PRId64 " columns are not a multiple of group %d",
                               c->shards[0].path, prefix, cols, s.group);
        /* int3 is three bits per code (LLMQ_W_Q3, cols * 3 / 8 bytes a row);
         * files from before that hold its codes in the int4 layout (cols / 2
         * bytes a row, symmetric ones around 8), which the Q4 kernels run */
        int q3 = s.format == LLMQ_PACK_INT3;
        if (q3) {
            char name[300];
            snprintf(name, sizeof name, "%s.qweight", prefix);
            const llmq_st_tensor *t = llmq_ckpt_find(c, name, NULL);
            q3 = !(t && t->dtype == LLMQ_DT_U8 && t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols / 2);
        }
        if ((rc = want_tensor(c, prefix, "qweight", LLMQ_DT_U8, rows, q3 ? llmq_q3_row_bytes(cols) : cols / 2, &q, err)) ||
            (rc = want_tensor(c, prefix, "scales", LLMQ_DT_F16, rows, cols / s.group, &sc, err))) return rc;
        if (!s.sym && (rc = want_tensor(c, prefix, "zeros", LLMQ_DT_U8, rows, cols / s.group, &z, err))) return rc;
        w->type = q3 ? LLMQ_W_Q3 : LLMQ_W_Q4;
        w->group = s.group;
        break;
    }
    case LLMQ_PACK_BLOCK: {
        const int B = s.group, four = llmq_wtype_is_block4(s.btype);
        if (cols % 32)      /* the kernels walk rows 32 columns at a time, NV blocks too */
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: linear '%s': %" PRId64 " columns are not a multiple of 32",
                               c->shards[0].path, prefix, cols);
        if ((rc = want_tensor(c, prefix, "qweight", LLMQ_DT_U8, rows, four ? cols / 2 : cols, &q, err)) ||
            (rc = want_tensor(c, prefix, "scales", LLMQ_DT_U8, rows, cols / B, &sc, err))) return rc;
        if (llmq_wtype_is_nv(s.btype)) {
            const llmq_st_tensor *ts;
            if ((rc = want_tensor(c, prefix, "tensor_scale", LLMQ_DT_F32, 1, -1, &ts, err))) return rc;
            memcpy(&w->tscale, ts->data, sizeof w->tscale);
            if (!isfinite(w->tscale) || !(w->tscale > 0.0f))
                return llmq_errorf(err, isfinite(w->tscale) ? LLMQ_EFORMAT : LLMQ_ENONFINITE,
                                   "%s: tensor '%s.tensor_scale' is %g, not a positive number",
                                   c->shards[0].path, prefix, (double)w->tscale);
        }
        w->type = s.btype;
        w->group = B;
        break;
    }
    default:
        if (cols % LLMQ_MX8_BLOCK)
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: linear '%s': %" PRId64 " columns are not a multiple of 32",
                               c->shards[0].path, prefix, cols);
        if ((rc = want_tensor(c, prefix, "qweight", LLMQ_DT_I8, rows, cols, &q, err)) ||
            (rc = want_tensor(c, prefix, "scales", LLMQ_DT_U8, rows, cols / LLMQ_MX8_BLOCK, &sc, err))) return rc;
        w->type = LLMQ_W_MX8;
        w->group = LLMQ_MX8_BLOCK;
        break;
    }
    w->data = q->data;
    w->scales = sc->data;
    w->zeros = z ? z->data : NULL;
    *found = 1;
    return LLMQ_OK;
}
