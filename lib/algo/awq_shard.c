/* awq_shard.c - save a range of AWQ layers, join the ranges (awq_shard.h). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "awq_shard.h"
#include "../../formats/safetensors.h"
#include "../../formats/json.h"
#include "../base/blocks.h"

#define META_KEY "llmq.awq_shard"

/* The scalar record of a layer as LLMQ_AWQ_RECORD_LEN doubles, in a fixed
 * order; save != 0 writes v from A, else A from v. */
static void record_io(llmq_awq_layer *A, double *v, int save)
{
    int n = 0;
#define IO(x) do { if (save) v[n] = (double)(x); else (x) = v[n]; n++; } while (0)
#define IOI(x) do { if (save) v[n] = (double)(x); else (x) = v[n] != 0.0; n++; } while (0)
    for (int g = 0; g < LLMQ_AWQ_NGROUP; g++) IO(A->ratio[g]);
    for (int g = 0; g < LLMQ_AWQ_NGROUP; g++) IOI(A->duo[g]);
    for (int g = 0; g < LLMQ_AWQ_NGROUP; g++) IOI(A->fallback[g]);
    for (int g = 0; g < LLMQ_AWQ_NGROUP; g++) IOI(A->exact[g]);
    for (int g = 0; g < LLMQ_AWQ_NGROUP; g++) IO(A->loss_s1[g]);
    for (int g = 0; g < LLMQ_AWQ_NGROUP; g++) IO(A->loss_best[g]);
    for (int k = 0; k < LLMQ_AWQ_NLIN; k++) IO(A->clip_before[k]);
    for (int k = 0; k < LLMQ_AWQ_NLIN; k++) IO(A->clip_after[k]);
    for (int k = 0; k < LLMQ_AWQ_NLIN; k++) IO(A->clip_mean[k]);
    for (int k = 0; k < LLMQ_AWQ_NLIN; k++) IO(A->clip_frac[k]);
    for (int k = 0; k < LLMQ_AWQ_NLIN; k++) { IO(A->gptq_loss[k][0]); IO(A->gptq_loss[k][1]); }
    IO(A->out_rtn); IO(A->out_awq);
    IO(A->sec_stats); IO(A->sec_scale); IO(A->sec_clip); IO(A->sec_fwd);
#undef IO
#undef IOI
    _Static_assert(4 * 6 + 7 * 4 + 14 + 6 == LLMQ_AWQ_RECORD_LEN, "record length");
}

static cJSON *opts_json(const llmq_awq_result *res)
{
    const llmq_awq_opts *o = &res->o;
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    const llmq_json_num f[] = {
        { "w_bit", o->q.bits }, { "group", o->q.group }, { "sym", o->q.sym }, { "n_grid", o->n_grid },
        { "duo", o->duo }, { "clip", o->clip }, { "clip_qk", o->clip_qk }, { "clip_steps", o->clip_steps },
        { "max_shrink", o->max_shrink }, { "search_tokens", o->search_tokens }, { "gptq", o->gptq },
        { "gptq_damp", o->gptq_damp }, { "stat_windows", o->stat_windows }, { "loss_windows", o->loss_windows },
        { "propagate_fp", o->propagate_fp }, { "act_bf16", o->act_bf16 }, { "calib_tokens", res->tokens },
    };
    llmq_json_add_numbers(j, f, LLMQ_ARRAY_LEN(f));
    char seed[24];
    snprintf(seed, sizeof seed, "%" PRIu64, o->seed);
    cJSON_AddStringToObject(j, "seed", seed);
    if (llmq_awq_is_block(&o->q)) {   /* int shards stay as they were */
        cJSON_AddStringToObject(j, "format", llmq_block_name(o->q.btype));
        cJSON_AddNumberToObject(j, "mx_rule", (double)o->q.rule);
    }
    return j;
}

int llmq_awq_shard_save(const llmq_awq_result *res, const char *model_digest, const cJSON *info, const char *path,
                        llmq_err *err)
{
    const llmq_config *c = &res->m->cfg;
    int lo = res->o.layer_lo, hi = res->o.layer_hi ? res->o.layer_hi : res->n_layers;
    int G = res->o.q.group;
    const int block = llmq_awq_is_block(&res->o.q);
    const int64_t cdiv = block && !llmq_wtype_is_block4(res->o.q.btype) ? 1 : 2;   /* columns per code byte */
    llmq_st_writer *w = llmq_st_writer_new(err);
    if (!w) return err->code;
    double *rec = llmq_calloc((size_t)(hi - lo) * LLMQ_AWQ_RECORD_LEN, sizeof(double), err);
    cJSON *meta = rec ? cJSON_CreateObject() : NULL;
    char *text = NULL;
    int rc = !rec ? (int)err->code : !meta ? (int)llmq_errorf(err, LLMQ_ENOMEM, "out of memory") : LLMQ_OK;
    char name[96];
    for (int l = lo; l < hi && !rc; l++) {
        llmq_awq_layer *A = &res->layers[l];
        for (int g = 0; g < LLMQ_AWQ_NGROUP && !rc; g++) {
            int64_t d[1] = { llmq_awq_scale_dim(c, g) };
            snprintf(name, sizeof name, "layers.%d.s.%s", l, llmq_awq_group_name(g));
            rc = llmq_st_writer_add(w, name, LLMQ_DT_F32, 1, d, A->s[g], err);
        }
        for (int k = 0; k < LLMQ_AWQ_NLIN && !rc; k++) {
            int64_t rows = llmq_linear_rows(c, k), cols = llmq_linear_cols(c, k);
            int64_t cs[3] = { rows, cols / G, 2 }, cc[2] = { rows, cols / cdiv }, gs[2] = { rows, cols / G }, one[1] = { 1 };
            if (A->clip[k]) {
                snprintf(name, sizeof name, "layers.%d.clip.%s", l, llmq_awq_lin_name(k));
                rc = llmq_st_writer_add(w, name, LLMQ_DT_F32, 3, cs, A->clip[k], err);
            }
            if (!rc && A->codes[k]) {
                snprintf(name, sizeof name, "layers.%d.codes.%s", l, llmq_awq_lin_name(k));
                rc = llmq_st_writer_add(w, name, LLMQ_DT_U8, 2, cc, A->codes[k], err);
            }
            if (!rc && A->codes[k] && block) {
                snprintf(name, sizeof name, "layers.%d.bscales.%s", l, llmq_awq_lin_name(k));
                rc = llmq_st_writer_add(w, name, LLMQ_DT_U8, 2, gs, A->bscales[k], err);
                snprintf(name, sizeof name, "layers.%d.tscale.%s", l, llmq_awq_lin_name(k));
                if (!rc) rc = llmq_st_writer_add(w, name, LLMQ_DT_F32, 1, one, &A->tscale[k], err);
            } else if (!rc && A->codes[k]) {
                snprintf(name, sizeof name, "layers.%d.scales.%s", l, llmq_awq_lin_name(k));
                if (!rc) rc = llmq_st_writer_add(w, name, LLMQ_DT_F16, 2, gs, A->scales[k], err);
                snprintf(name, sizeof name, "layers.%d.zeros.%s", l, llmq_awq_lin_name(k));
                if (!rc && A->zeros[k]) rc = llmq_st_writer_add(w, name, LLMQ_DT_U8, 2, gs, A->zeros[k], err);
            }
        }
        double *v = rec + (size_t)(l - lo) * LLMQ_AWQ_RECORD_LEN;
        record_io(A, v, 1);
        int64_t rl[1] = { LLMQ_AWQ_RECORD_LEN };
        snprintf(name, sizeof name, "layers.%d.record", l);
        if (!rc) rc = llmq_st_writer_add(w, name, LLMQ_DT_F64, 1, rl, v, err);
    }
    if (!rc) {
        cJSON_AddNumberToObject(meta, "version", LLMQ_AWQ_SHARD_VERSION);
        cJSON *r = cJSON_AddArrayToObject(meta, "layers");
        cJSON_AddItemToArray(r, cJSON_CreateNumber(lo));
        cJSON_AddItemToArray(r, cJSON_CreateNumber(hi));
        cJSON_AddNumberToObject(meta, "n_layers", res->n_layers);
        cJSON_AddStringToObject(meta, "model_digest", model_digest);
        cJSON *oj = opts_json(res);
        if (oj) cJSON_AddItemToObject(meta, "options", oj);
        cJSON *ij = info ? cJSON_Duplicate(info, 1) : NULL;
        if (ij) cJSON_AddItemToObject(meta, "info", ij);
        if (!oj || (info && !ij) || !(text = cJSON_PrintUnformatted(meta))) rc = llmq_errorf(err, LLMQ_ENOMEM, "out of memory");
    }
    if (!rc) rc = llmq_st_writer_meta(w, "format", "llmq-awq-shard", err);
    if (!rc) rc = llmq_st_writer_meta(w, META_KEY, text, err);
    if (!rc) rc = llmq_st_writer_finish(w, path, err);
    llmq_st_writer_free(w);
    free(text);
    cJSON_Delete(meta);
    free(rec);
    return rc;
}

/* ---- joining ---- */

/* A copy of tensor name of file f, dtype dt, shape (d0[, d1[, d2]]) (d < 0:
 * no such dimension); *out NULL when absent and optional. */
static int take(const llmq_st_file *f, const char *name, llmq_dtype dt, int64_t d0, int64_t d1, int64_t d2, int optional,
                void **out, llmq_err *err)
{
    *out = NULL;
    const llmq_st_tensor *t = llmq_st_find(f, name);
    if (!t) return optional ? LLMQ_OK : llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s' is missing", f->path, name);
    int nd = d2 >= 0 ? 3 : d1 >= 0 ? 2 : 1;
    int64_t want[3] = { d0, d1, d2 };
    int ok = t->dtype == dt && t->ndim == nd;
    for (int i = 0; ok && i < nd; i++) ok = t->shape[i] == want[i];
    if (!ok) return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s' has dtype %s and %d dims, expected %s with %d", f->path,
                                name, llmq_dtype_name(t->dtype), t->ndim, llmq_dtype_name(dt), nd);
    if (!(*out = llmq_malloc(t->nbytes ? t->nbytes : 1, err))) return err->code;
    memcpy(*out, t->data, t->nbytes);
    return LLMQ_OK;
}

/* The block-format gptq arrays of linear k (rows, cols) of layer l into
 * A, refusing scale bytes and codes that are NaN in their type and NV
 * tensor scales that are not finite and positive. */
static int load_block(const llmq_st_file *f, const llmq_awq_qcfg *q, int l, int k, int64_t rows, int64_t cols,
                      llmq_awq_layer *A, llmq_err *err)
{
    char name[96];
    const int four = llmq_wtype_is_block4(q->btype), nv = llmq_wtype_is_nv(q->btype);
    const int64_t cb = four ? cols / 2 : cols, ng = cols / q->group;
    float *ts = NULL;
    int rc;
    snprintf(name, sizeof name, "layers.%d.codes.%s", l, llmq_awq_lin_name(k));
    if ((rc = take(f, name, LLMQ_DT_U8, rows, cb, -1, 0, (void **)&A->codes[k], err))) return rc;
    for (int64_t i = 0; !four && i < rows * cb; i++)
        if (llmq_e4m3_is_nan(A->codes[k][i]))
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': code %" PRId64 " is an E4M3 NaN", f->path, name, i);
    snprintf(name, sizeof name, "layers.%d.bscales.%s", l, llmq_awq_lin_name(k));
    if ((rc = take(f, name, LLMQ_DT_U8, rows, ng, -1, 0, (void **)&A->bscales[k], err))) return rc;
    for (int64_t i = 0; i < rows * ng; i++)
        if (nv ? llmq_e4m3_is_nan(A->bscales[k][i]) || A->bscales[k][i] > 0x7e : A->bscales[k][i] == LLMQ_E8M0_NAN)
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': scale %" PRId64 " is not a %s scale", f->path, name, i,
                               nv ? "non-negative E4M3" : "finite E8M0");
    snprintf(name, sizeof name, "layers.%d.tscale.%s", l, llmq_awq_lin_name(k));
    if ((rc = take(f, name, LLMQ_DT_F32, 1, -1, -1, 0, (void **)&ts, err))) return rc;
    A->tscale[k] = *ts;
    free(ts);
    if (!(A->tscale[k] > 0.0f) || !isfinite(A->tscale[k]) || (!nv && A->tscale[k] != 1.0f))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': tensor scale %g is not %s", f->path, name,
                           (double)A->tscale[k], nv ? "finite and positive" : "1");
    return LLMQ_OK;
}

/* Layer l of shard f into A. */
static int load_layer(const llmq_st_file *f, const llmq_config *c, const llmq_awq_qcfg *q, int gptq, int l,
                      llmq_awq_layer *A, llmq_err *err)
{
    const int G = q->group, sym = q->sym;
    char name[96];
    int rc = LLMQ_OK;
    for (int g = 0; g < LLMQ_AWQ_NGROUP && !rc; g++) {
        int64_t d = llmq_awq_scale_dim(c, g);
        snprintf(name, sizeof name, "layers.%d.s.%s", l, llmq_awq_group_name(g));
        if ((rc = take(f, name, LLMQ_DT_F32, d, -1, -1, 0, (void **)&A->s[g], err))) break;
        for (int64_t i = 0; i < d; i++)
            if (!(A->s[g][i] > 0.0f) || !isfinite(A->s[g][i]))
                return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': scale %" PRId64 " is not finite and positive",
                                   f->path, name, i);
    }
    for (int k = 0; k < LLMQ_AWQ_NLIN && !rc; k++) {
        int64_t rows = llmq_linear_rows(c, k), cols = llmq_linear_cols(c, k);
        snprintf(name, sizeof name, "layers.%d.clip.%s", l, llmq_awq_lin_name(k));
        if ((rc = take(f, name, LLMQ_DT_F32, rows, cols / G, 2, 1, (void **)&A->clip[k], err))) break;
        for (int64_t i = 0; A->clip[k] && i < rows * (cols / G) * 2; i++)
            if (!(A->clip[k][i] >= 0.0f))   /* +Inf: no clip; NaN or negative: not a clip */
                return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': value %" PRId64 " is not a clip", f->path, name, i);
        if (!gptq) continue;
        if (llmq_awq_is_block(q)) {
            if ((rc = load_block(f, q, l, k, rows, cols, A, err))) break;
            continue;
        }
        snprintf(name, sizeof name, "layers.%d.codes.%s", l, llmq_awq_lin_name(k));
        if ((rc = take(f, name, LLMQ_DT_U8, rows, cols / 2, -1, 0, (void **)&A->codes[k], err))) break;
        snprintf(name, sizeof name, "layers.%d.scales.%s", l, llmq_awq_lin_name(k));
        if ((rc = take(f, name, LLMQ_DT_F16, rows, cols / G, -1, 0, (void **)&A->scales[k], err))) break;
        if (sym) continue;
        snprintf(name, sizeof name, "layers.%d.zeros.%s", l, llmq_awq_lin_name(k));
        if ((rc = take(f, name, LLMQ_DT_U8, rows, cols / G, -1, 0, (void **)&A->zeros[k], err))) break;
        for (int64_t i = 0; i < rows * (cols / G); i++)
            if (A->zeros[k][i] > 15)
                return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': zero point %" PRId64 " is above 15", f->path, name, i);
    }
    if (rc) return rc;
    double *v;
    snprintf(name, sizeof name, "layers.%d.record", l);
    if ((rc = take(f, name, LLMQ_DT_F64, LLMQ_AWQ_RECORD_LEN, -1, -1, 0, (void **)&v, err))) return rc;
    record_io(A, v, 0);
    free(v);
    return LLMQ_OK;
}

static int num(const cJSON *o, const char *key, double *v)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble)) return -1;
    *v = x->valuedouble;
    return 0;
}

/* The options of a shard's metadata into res->o (checked as the search checks them). */
static int opts_from_json(const cJSON *j, const char *path, llmq_awq_result *res, llmq_err *err)
{
    llmq_awq_opts *o = &res->o;
    llmq_awq_opts_default(o);
    struct { const char *k; double lo, hi; int *i; double *d; } f[] = {
        { "w_bit", 3, 8, &o->q.bits, NULL }, { "group", 16, 128, &o->q.group, NULL }, { "sym", 0, 1, &o->q.sym, NULL },
        { "n_grid", 1, 1000, &o->n_grid, NULL }, { "duo", 0, 1, &o->duo, NULL }, { "clip", 0, 1, &o->clip, NULL },
        { "clip_qk", 0, 1, &o->clip_qk, NULL }, { "clip_steps", 1, 1000, &o->clip_steps, NULL },
        { "max_shrink", 0, 1, NULL, &o->max_shrink }, { "search_tokens", 1, 1 << 24, &o->search_tokens, NULL },
        { "gptq", 0, 1, &o->gptq, NULL }, { "gptq_damp", 0, 10, NULL, &o->gptq_damp },
        { "stat_windows", 0, 1e9, &o->stat_windows, NULL }, { "loss_windows", 0, 1e9, &o->loss_windows, NULL },
        { "propagate_fp", 0, 1, &o->propagate_fp, NULL }, { "act_bf16", 0, 1, &o->act_bf16, NULL },
        { "calib_tokens", 1, 2147483647.0, &res->tokens, NULL },
    };
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(f); i++) {
        double v;
        if (num(j, f[i].k, &v) || v < f[i].lo || v > f[i].hi || (f[i].i && v != floor(v)))
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: option '%s' of the shard is missing or out of range", path, f[i].k);
        if (f[i].i) *f[i].i = (int)v;
        else *f[i].d = v;
    }
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "seed");
    char *end = NULL;
    if (!cJSON_IsString(s) || !*s->valuestring || (o->seed = strtoull(s->valuestring, &end, 10), *end))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: option 'seed' of the shard is missing or not a number", path);
    /* a block format (optional: int shards have none) */
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(j, "format");
    if (fmt) {
        double r;
        for (int t = LLMQ_W_MXFP4; t <= LLMQ_W_MXFP8 && cJSON_IsString(fmt); t++)
            if (!strcmp(fmt->valuestring, llmq_block_name((llmq_wtype)t))) o->q.btype = (llmq_wtype)t;
        if (!llmq_wtype_is_block(o->q.btype) || num(j, "mx_rule", &r) || (r != 0 && r != 1 && r != 2))
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: the shard's block format or its scale rule is unknown", path);
        o->q.rule = (llmq_mx_rule)r;
        if (o->q.group != llmq_block_size(o->q.btype) || o->q.bits != (o->q.btype == LLMQ_W_MXFP8 ? 8 : 4) || !o->q.sym)
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: group %d, %d bits or asymmetric scales do not fit %s", path,
                               o->q.group, o->q.bits, fmt->valuestring);
        return LLMQ_OK;
    }
    if (o->q.bits > 4)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: %d-bit weights are not an int format (3 or 4)", path, o->q.bits);
    if (!llmq_q4_group_ok(o->q.group))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: group %d is not 32, 64 or 128", path, o->q.group);
    return LLMQ_OK;
}

/* The metadata of shard f, its range, and the rest of it as one string to
 * compare across shards. */
static int shard_meta(const llmq_st_file *f, const llmq_model *m, const char *model_digest, cJSON **meta, int *lo,
                      int *hi, char **rest, llmq_err *err)
{
    const char *fmt = llmq_st_meta(f, "format"), *text = llmq_st_meta(f, META_KEY);
    if (!fmt || strcmp(fmt, "llmq-awq-shard") || !text)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: not an llmq awq shard (written by llmq awq --layers)", f->path);
    int rc = llmq_json_parse(text, strlen(text), f->path, meta, err);
    if (rc) return rc;
    double v, a, b, n;
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(*meta, "layers"), *d = cJSON_GetObjectItemCaseSensitive(*meta, "model_digest");
    if (num(*meta, "version", &v) || v != LLMQ_AWQ_SHARD_VERSION)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: awq shard version is not %d", f->path, LLMQ_AWQ_SHARD_VERSION);
    if (!cJSON_IsArray(r) || cJSON_GetArraySize(r) != 2 || !cJSON_IsNumber(r->child) || !cJSON_IsNumber(r->child->next) ||
        num(*meta, "n_layers", &n))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: the shard's layer range is missing", f->path);
    a = r->child->valuedouble;
    b = r->child->next->valuedouble;
    if (n != m->cfg.n_layers || a != floor(a) || b != floor(b) || a < 0 || b > n || a >= b)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: layers %g:%g of %g do not fit %s (%d layers)", f->path, a, b, n, m->path,
                           m->cfg.n_layers);
    if (!cJSON_IsString(d) || strcmp(d->valuestring, model_digest))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: was searched on another model than %s (model digest differs)", f->path,
                           m->path);
    *lo = (int)a;
    *hi = (int)b;
    cJSON *c = cJSON_Duplicate(*meta, 1);
    if (!c) return llmq_errorf(err, LLMQ_ENOMEM, "out of memory");
    cJSON_DeleteItemFromObjectCaseSensitive(c, "layers");
    *rest = cJSON_PrintUnformatted(c);
    cJSON_Delete(c);
    return *rest ? LLMQ_OK : llmq_errorf(err, LLMQ_ENOMEM, "out of memory");
}

int llmq_awq_shard_join(const llmq_model *m, const char *model_digest, const char *const *paths, int n,
                        llmq_awq_result *res, cJSON **info, llmq_err *err)
{
    const llmq_config *c = &m->cfg;
    memset(res, 0, sizeof *res);
    *info = NULL;
    int L = c->n_layers, rc = LLMQ_OK;
    const char **owner = llmq_calloc((size_t)L, sizeof *owner, err);
    if (!owner || !(res->layers = llmq_calloc((size_t)L, sizeof *res->layers, err))) { free(owner); return err->code; }
    res->m = m;
    res->n_layers = L;
    char *first = NULL;
    const char *first_path = NULL;
    for (int i = 0; i < n && !rc; i++) {
        llmq_st_file f;
        cJSON *meta = NULL;
        char *rest = NULL;
        int lo = 0, hi = 0;
        if ((rc = llmq_st_open(&f, paths[i], err))) break;
        rc = shard_meta(&f, m, model_digest, &meta, &lo, &hi, &rest, err);
        if (!rc && !first) {
            first = rest;
            first_path = paths[i];
            rest = NULL;
            rc = opts_from_json(cJSON_GetObjectItemCaseSensitive(meta, "options"), paths[i], res, err);
            cJSON *in = cJSON_DetachItemFromObjectCaseSensitive(meta, "info");
            *info = in ? in : cJSON_CreateObject();
        } else if (!rc && strcmp(rest, first)) {
            rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: comes from another awq run than %s (options, model or calibration "
                             "differ)", paths[i], first_path);
        }
        for (int l = lo; l < hi && !rc; l++) {
            if (owner[l]) {
                rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: layer %d is also in %s", paths[i], l, owner[l]);
                break;
            }
            owner[l] = paths[i];
            rc = load_layer(&f, c, &res->o.q, res->o.gptq, l, &res->layers[l], err);
        }
        free(rest);
        cJSON_Delete(meta);
        llmq_st_close(&f);
    }
    for (int l = 0; l < L && !rc; l++)
        if (!owner[l]) rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: no shard holds layer %d", m->path, l);
    free(first);
    free(owner);
    if (rc) {
        llmq_awq_release(res);
        cJSON_Delete(*info);
        *info = NULL;
    }
    return rc;
}
