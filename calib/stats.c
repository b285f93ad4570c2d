/* stats.c - per-channel activation statistics: collection, file I/O. */
#include <math.h>
#include <stdio.h>
#include <errno.h>
#include "stats.h"
#include "../lib/quant/kvq.h"
#include "../formats/safetensors.h"
#include "data.h"

static const char *site_names[LLMQ_SITE_COUNT] = { "qkv", "o", "gateup", "down", "k_pre", "k_post", "v" };

const char *llmq_site_name(llmq_site s) { return (unsigned)s < LLMQ_SITE_COUNT ? site_names[s] : "?"; }
int llmq_site_is_linear(llmq_site s) { return s <= LLMQ_SITE_DOWN; }

int llmq_site_dim(const llmq_config *c, llmq_site s)
{
    switch (s) {
    case LLMQ_SITE_QKV: case LLMQ_SITE_GATEUP: return c->hidden;
    case LLMQ_SITE_O: return c->n_heads * c->head_dim;
    case LLMQ_SITE_DOWN: return c->intermediate;
    default: return c->n_kv_heads * c->head_dim;
    }
}

static void site_free(llmq_site_stats *q)
{
    free(q->absmax); free(q->min); free(q->max); free(q->mean_abs);
    free(q->sum); free(q->sumsq); free(q->abs_sum); free(q->head_absmax); free(q->keep);
    free(q->kv_min); free(q->kv_max); free(q->kv_keep);
    memset(q, 0, sizeof *q);
}

void llmq_stats_release(llmq_stats *s)
{
    if (!s) return;
    if (s->site)
        for (int i = 0; i < s->n_layers * LLMQ_SITE_COUNT; i++) site_free(&s->site[i]);
    free(s->site);
    free(s->keep_win);
    free(s->keep_pos);
    free(s->kvk_win);
    free(s->kvk_pos);
    memset(s, 0, sizeof *s);
}

/* Allocate the arrays of one site (zeroed; min/max set to +-inf). */
static int site_alloc(llmq_site_stats *q, int dim, int heads, int n_keep, int linear, int kv, llmq_err *err)
{
    q->dim = dim;
    if (!(q->absmax = llmq_calloc((size_t)dim, sizeof(float), err)) ||
        !(q->min = llmq_calloc((size_t)dim, sizeof(float), err)) ||
        !(q->max = llmq_calloc((size_t)dim, sizeof(float), err)) ||
        !(q->mean_abs = llmq_calloc((size_t)dim, sizeof(float), err)) ||
        !(q->sum = llmq_calloc((size_t)dim, sizeof(double), err)) ||
        !(q->sumsq = llmq_calloc((size_t)dim, sizeof(double), err)) ||
        !(q->abs_sum = llmq_calloc((size_t)dim, sizeof(double), err)))
        return err->code;
    if (!linear && !(q->head_absmax = llmq_calloc((size_t)heads, sizeof(float), err))) return err->code;
    if (linear && n_keep > 0 && !(q->keep = llmq_calloc((size_t)n_keep * (size_t)dim, sizeof(float), err)))
        return err->code;
    if (kv && (!(q->kv_min = llmq_calloc((size_t)dim, sizeof(float), err)) ||
               !(q->kv_max = llmq_calloc((size_t)dim, sizeof(float), err))))
        return err->code;
    for (int j = 0; j < dim; j++) { q->min[j] = INFINITY; q->max[j] = -INFINITY; }
    for (int j = 0; kv && j < dim; j++) { q->kv_min[j] = INFINITY; q->kv_max[j] = -INFINITY; }
    return LLMQ_OK;
}

int llmq_stats_init(llmq_stats *s, const llmq_config *c, int n_keep, int samples, int seqlen,
                    uint64_t seed, llmq_err *err)
{
    memset(s, 0, sizeof *s);
    if (n_keep < 0 || samples < 1 || seqlen < 2)
        return llmq_errorf(err, LLMQ_EUSAGE, "statistics need samples >= 1, seqlen >= 2, keep >= 0");
    s->n_layers = c->n_layers;
    s->n_kv_heads = c->n_kv_heads;
    s->head_dim = c->head_dim;
    s->n_keep = n_keep;
    s->samples = samples;
    s->seqlen = seqlen;
    s->seed = seed;
    s->lo = 0;
    s->hi = c->n_layers;
    s->cur_window = -1;
    if (!(s->site = llmq_calloc((size_t)c->n_layers * LLMQ_SITE_COUNT, sizeof *s->site, err))) return err->code;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < LLMQ_SITE_COUNT; k++)
            if (site_alloc(&s->site[l * LLMQ_SITE_COUNT + k], llmq_site_dim(c, (llmq_site)k), c->n_kv_heads, n_keep,
                           llmq_site_is_linear((llmq_site)k), k == LLMQ_SITE_K_PRE || k == LLMQ_SITE_V, err)) {
                llmq_stats_release(s);
                return err->code;
            }
    if (n_keep > 0) {
        if (!(s->keep_win = llmq_calloc((size_t)n_keep, sizeof(int), err)) ||
            !(s->keep_pos = llmq_calloc((size_t)n_keep, sizeof(int), err))) {
            llmq_stats_release(s);
            return err->code;
        }
        uint64_t st = seed ^ 0x5157415453ull;  /* a stream apart from the window sampler's */
        for (int k = 0; k < n_keep; k++) {
            s->keep_win[k] = (int)((int64_t)k * samples / n_keep);
            s->keep_pos[k] = 1 + (int)llmq_rand_below(&st, (uint64_t)(seqlen - 1));
        }
    }
    return LLMQ_OK;
}

int llmq_stats_keep_kv(llmq_stats *s, int n, llmq_err *err)
{
    if (n < 0 || n > LLMQ_STATS_MAX_KEEP) return llmq_errorf(err, LLMQ_EUSAGE, "KV rows kept: 0..%d, not %d", LLMQ_STATS_MAX_KEEP, n);
    s->n_kv_keep = n;
    if (!n) return LLMQ_OK;
    if (!(s->kvk_win = llmq_calloc((size_t)n, sizeof(int), err)) || !(s->kvk_pos = llmq_calloc((size_t)n, sizeof(int), err)))
        return err->code;
    int from = s->seqlen > LLMQ_STATS_KV_SINKS ? LLMQ_STATS_KV_SINKS : 1;
    uint64_t st = s->seed ^ 0x4b565f524f5753ull;   /* "KV_ROWS": apart from the other streams */
    for (int k = 0; k < n; k++) {
        s->kvk_win[k] = (int)((int64_t)k * s->samples / n);
        s->kvk_pos[k] = from + (int)llmq_rand_below(&st, (uint64_t)(s->seqlen - from));
    }
    for (int i = 0; i < s->n_layers * LLMQ_SITE_COUNT; i++) {
        llmq_site_stats *q = &s->site[i];
        if (q->kv_min && !(q->kv_keep = llmq_calloc((size_t)n * (size_t)q->dim, sizeof(float), err))) return err->code;
    }
    return LLMQ_OK;
}

int llmq_stats_set_layers(llmq_stats *s, int lo, int hi, llmq_err *err)
{
    if (lo < 0 || hi > s->n_layers || lo >= hi)
        return llmq_errorf(err, LLMQ_EUSAGE, "layers %d:%d are not a range inside 0:%d", lo, hi, s->n_layers);
    for (int l = 0; l < s->n_layers; l++)
        if (l < lo || l >= hi)
            for (int k = 0; k < LLMQ_SITE_COUNT; k++) site_free(&s->site[l * LLMQ_SITE_COUNT + k]);
    s->lo = lo;
    s->hi = hi;
    return LLMQ_OK;
}

void llmq_stats_begin_window(llmq_stats *s, int window) { s->cur_window = window; }

void llmq_stats_observe(void *ctx, int layer, llmq_site site, const float *x, int64_t n, int64_t dim)
{
    llmq_stats *s = ctx;
    if (layer < s->lo || layer >= s->hi || (unsigned)site >= LLMQ_SITE_COUNT) return;
    llmq_site_stats *q = &s->site[layer * LLMQ_SITE_COUNT + site];
    if (dim != q->dim) return;
    for (int64_t t = 0; t < n; t++) {
        const float *row = x + t * dim;
        float *amax = q->absmax, *mn = q->min, *mx = q->max;
        double *sm = q->sum, *sq = q->sumsq, *as = q->abs_sum;
        for (int64_t j = 0; j < dim; j++) {
            float v = row[j], a = fabsf(v);
            if (a > amax[j]) amax[j] = a;
            if (v < mn[j]) mn[j] = v;
            if (v > mx[j]) mx[j] = v;
            sm[j] += v;
            sq[j] += (double)v * v;
            as[j] += a;
        }
    }
    if (q->kv_min)   /* rows are positions: calibrate runs each window from position 0 */
        for (int64_t t = LLMQ_STATS_KV_SINKS; t < n; t++)
            for (int64_t j = 0; j < dim; j++) {
                float v = x[t * dim + j];
                if (v < q->kv_min[j]) q->kv_min[j] = v;
                if (v > q->kv_max[j]) q->kv_max[j] = v;
            }
    if (q->kv_keep)
        for (int k = 0; k < s->n_kv_keep; k++)
            if (s->kvk_win[k] == s->cur_window && s->kvk_pos[k] < n)
                memcpy(q->kv_keep + (size_t)k * dim, x + (size_t)s->kvk_pos[k] * dim, (size_t)dim * sizeof(float));
    q->count += n;
    if (q->keep)
        for (int k = 0; k < s->n_keep; k++)
            if (s->keep_win[k] == s->cur_window && s->keep_pos[k] < n)
                memcpy(q->keep + (size_t)k * dim, x + (size_t)s->keep_pos[k] * dim, (size_t)dim * sizeof(float));
    if (layer == s->lo && site == LLMQ_SITE_QKV) s->tokens += n;
}

void llmq_stats_finish(llmq_stats *s)
{
    for (int i = 0; i < s->n_layers * LLMQ_SITE_COUNT; i++) {
        llmq_site_stats *q = &s->site[i];
        for (int j = 0; j < q->dim; j++) {
            q->mean_abs[j] = q->count ? (float)(q->abs_sum[j] / (double)q->count) : 0.0f;
            if (!q->count) q->min[j] = q->max[j] = 0.0f;
            if (q->kv_min && !(q->kv_min[j] <= q->kv_max[j])) q->kv_min[j] = q->kv_max[j] = 0.0f;
        }
        if (q->head_absmax)
            for (int h = 0; h < s->n_kv_heads; h++) {
                float m = 0.0f;
                for (int j = h * s->head_dim; j < (h + 1) * s->head_dim && j < q->dim; j++) m = LLMQ_MAX(m, q->absmax[j]);
                q->head_absmax[h] = m;
            }
    }
}

int llmq_stats_kv_ranges(const llmq_stats *s, const char *path, float **k_min, float **k_max, llmq_err *err)
{
    size_t kvd = (size_t)s->n_kv_heads * s->head_dim;
    *k_min = *k_max = NULL;
    for (int l = 0; l < s->n_layers; l++) {
        const llmq_site_stats *q = &s->site[l * LLMQ_SITE_COUNT + LLMQ_SITE_K_PRE];
        if (!q->kv_min || (size_t)q->dim != kvd)
            return llmq_errorf(err, LLMQ_EUSAGE, "%s: statistics have no KV ranges (layer %d): written by an "
                               "llmq before they were recorded; run llmq calibrate again", path, l);
    }
    if (!(*k_min = llmq_malloc((size_t)s->n_layers * kvd * sizeof(float), err)) ||
        !(*k_max = llmq_malloc((size_t)s->n_layers * kvd * sizeof(float), err))) {
        free(*k_min);
        *k_min = NULL;
        return err->code;
    }
    for (int l = 0; l < s->n_layers; l++) {
        const llmq_site_stats *q = &s->site[l * LLMQ_SITE_COUNT + LLMQ_SITE_K_PRE];
        memcpy(*k_min + l * kvd, q->kv_min, kvd * sizeof(float));
        memcpy(*k_max + l * kvd, q->kv_max, kvd * sizeof(float));
    }
    return LLMQ_OK;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int llmq_stats_kv_quantile_ranges(const llmq_stats *s, const char *path, double outliers, float **k_min,
                                  float **k_max, llmq_err *err)
{
    int n = s->n_kv_keep;
    size_t kvd = (size_t)s->n_kv_heads * s->head_dim;
    *k_min = *k_max = NULL;
    if (n < 1 || !s->site[LLMQ_SITE_K_PRE].kv_keep)
        return llmq_errorf(err, LLMQ_EUSAGE, "%s: statistics kept no K rows for outlier ranges (llmq calibrate --kv-keep)", path);
    float *col = llmq_malloc((size_t)n * sizeof(float), err);
    if (!col || !(*k_min = llmq_malloc((size_t)s->n_layers * kvd * sizeof(float), err)) ||
        !(*k_max = llmq_malloc((size_t)s->n_layers * kvd * sizeof(float), err))) {
        free(col);
        free(*k_min);
        *k_min = NULL;
        return err->code;
    }
    int cut = (int)(outliers / 2 * n);
    if (cut > (n - 1) / 2) cut = (n - 1) / 2;
    for (int l = 0; l < s->n_layers; l++) {
        const llmq_site_stats *q = &s->site[l * LLMQ_SITE_COUNT + LLMQ_SITE_K_PRE];
        for (size_t c = 0; c < kvd; c++) {
            for (int k = 0; k < n; k++) col[k] = q->kv_keep[(size_t)k * kvd + c];
            qsort(col, (size_t)n, sizeof(float), cmp_float);
            (*k_min)[l * kvd + c] = col[cut];
            (*k_max)[l * kvd + c] = col[n - 1 - cut];
        }
    }
    free(col);
    return LLMQ_OK;
}

int llmq_stats_kv_codebooks(const llmq_stats *s, const char *path, int bits, int value_group, const float *k_min,
                            const float *k_max, float **k_book, float **v_book, llmq_err *err)
{
    int n = s->n_kv_keep, L = 1 << bits;
    size_t kvd = (size_t)s->n_kv_heads * s->head_dim;
    *k_book = *v_book = NULL;
    if (n < 1 || !s->site[LLMQ_SITE_K_PRE].kv_keep)
        return llmq_errorf(err, LLMQ_EUSAGE, "%s: statistics kept no K/V rows for codebooks (llmq calibrate --kv-keep)", path);
    float *u = llmq_malloc((size_t)n * kvd * sizeof(float), err);
    if (!u || !(*k_book = llmq_malloc((size_t)s->n_layers * L * sizeof(float), err)) ||
        !(*v_book = llmq_malloc((size_t)s->n_layers * L * sizeof(float), err))) {
        free(u);
        free(*k_book);
        *k_book = NULL;
        return err->code;
    }
    for (int l = 0; l < s->n_layers; l++) {
        const llmq_site_stats *K = &s->site[l * LLMQ_SITE_COUNT + LLMQ_SITE_K_PRE], *V = &s->site[l * LLMQ_SITE_COUNT + LLMQ_SITE_V];
        int64_t m = 0;
        for (int k = 0; k < n; k++)
            for (size_t c = 0; c < kvd; c++) {
                float lo = k_min[l * kvd + c], span = k_max[l * kvd + c] - lo;
                if (!(span > 0)) continue;
                float x = (K->kv_keep[(size_t)k * kvd + c] - lo) / span;
                u[m++] = x < 0 ? 0 : x > 1 ? 1 : x;
            }
        llmq_kvq_fit_codebook(u, m, bits, *k_book + (size_t)l * L);
        m = 0;
        for (int k = 0; k < n; k++)
            for (int h = 0; h < s->n_kv_heads; h++)
                for (int g0 = 0; g0 < s->head_dim; g0 += value_group) {
                    const float *x = V->kv_keep + (size_t)k * kvd + (size_t)h * s->head_dim + g0;
                    int w = LLMQ_MIN(value_group, s->head_dim - g0);
                    float mn = x[0], mx = x[0];
                    for (int i = 1; i < w; i++) { mn = LLMQ_MIN(mn, x[i]); mx = LLMQ_MAX(mx, x[i]); }
                    if (!(mx > mn)) continue;
                    for (int i = 0; i < w; i++) u[m++] = (x[i] - mn) / (mx - mn);
                }
        llmq_kvq_fit_codebook(u, m, bits, *v_book + (size_t)l * L);
    }
    free(u);
    return LLMQ_OK;
}

float llmq_stats_static_scale(const llmq_stats *s, int layer, llmq_site site)
{
    const llmq_site_stats *q = &s->site[layer * LLMQ_SITE_COUNT + site];
    float m = 0.0f;
    for (int j = 0; j < q->dim; j++) m = LLMQ_MAX(m, q->absmax[j]);
    return m / 127.0f;
}

int llmq_stats_check_config(const llmq_stats *s, const llmq_config *c, const char *path, llmq_err *err)
{
    if (s->n_layers != c->n_layers || s->n_kv_heads != c->n_kv_heads || s->head_dim != c->head_dim)
        return llmq_errorf(err, LLMQ_EUSAGE, "%s: statistics are for %d layers, %d KV heads of %d; the model has %d, %d of %d",
                           path, s->n_layers, s->n_kv_heads, s->head_dim, c->n_layers, c->n_kv_heads, c->head_dim);
    for (int i = 0; i < s->n_layers * LLMQ_SITE_COUNT; i++) {
        int k = i % LLMQ_SITE_COUNT;
        if (s->site[i].dim != llmq_site_dim(c, (llmq_site)k))
            return llmq_errorf(err, LLMQ_EUSAGE, "%s: layer %d site '%s' has %d channels, the model %d", path,
                               i / LLMQ_SITE_COUNT, site_names[k], s->site[i].dim, llmq_site_dim(c, (llmq_site)k));
    }
    return LLMQ_OK;
}

/* ---- file I/O ---- */

int llmq_stats_save(const llmq_stats *s, const char *path, llmq_err *err)
{
    llmq_st_writer *w = llmq_st_writer_new(err);
    if (!w) return err->code;
    int rc = LLMQ_OK;
    char name[96];
    for (int l = s->lo; l < s->hi && !rc; l++)
        for (int k = 0; k < LLMQ_SITE_COUNT && !rc; k++) {
            const llmq_site_stats *q = &s->site[l * LLMQ_SITE_COUNT + k];
            int64_t d1[1] = { q->dim }, one[1] = { 1 }, hs[1] = { s->n_kv_heads }, ks[2] = { s->n_keep, q->dim };
            int64_t kk[2] = { s->n_kv_keep, q->dim };
            struct { const char *f; llmq_dtype dt; int nd; const int64_t *sh; const void *p; } t[] = {
                { "absmax", LLMQ_DT_F32, 1, d1, q->absmax }, { "min", LLMQ_DT_F32, 1, d1, q->min },
                { "max", LLMQ_DT_F32, 1, d1, q->max }, { "mean_abs", LLMQ_DT_F32, 1, d1, q->mean_abs },
                { "sum", LLMQ_DT_F64, 1, d1, q->sum }, { "sumsq", LLMQ_DT_F64, 1, d1, q->sumsq },
                { "count", LLMQ_DT_I64, 1, one, &q->count },
                { "head_absmax", LLMQ_DT_F32, 1, hs, q->head_absmax }, { "tokens", LLMQ_DT_F32, 2, ks, q->keep },
                { "kv_min", LLMQ_DT_F32, 1, d1, q->kv_min }, { "kv_max", LLMQ_DT_F32, 1, d1, q->kv_max },
                { "kv_tokens", LLMQ_DT_F32, 2, kk, q->kv_keep },
            };
            for (size_t i = 0; i < LLMQ_ARRAY_LEN(t) && !rc; i++) {
                if (!t[i].p) continue;
                snprintf(name, sizeof name, "layers.%d.%s.%s", l, site_names[k], t[i].f);
                rc = llmq_st_writer_add(w, name, t[i].dt, t[i].nd, t[i].sh, t[i].p, err);
            }
        }
    struct { const char *k; char v[80]; } meta[12];
    int nm = 0;
#define META(key, ...) do { meta[nm].k = key; snprintf(meta[nm].v, sizeof meta[nm].v, __VA_ARGS__); nm++; } while (0)
    META("format", "llmq-stats");
    META("llmq.stats_version", "%s", LLMQ_STATS_VERSION);
    META("model_digest", "%s", s->model_digest);
    META("text_digest", "%s", s->text_digest);
    META("samples", "%d", s->samples);
    META("seqlen", "%d", s->seqlen);
    META("seed", "%" PRIu64, s->seed);
    META("tokens", "%" PRId64, s->tokens);
    META("keep", "%d", s->n_keep);
    META("n_layers", "%d", s->n_layers);
    if (s->lo > 0 || s->hi < s->n_layers) META("layers", "%d:%d", s->lo, s->hi);
    if (s->n_kv_keep > 0) META("kv_keep", "%d", s->n_kv_keep);
#undef META
    for (int i = 0; i < nm && !rc; i++) rc = llmq_st_writer_meta(w, meta[i].k, meta[i].v, err);
    if (!rc && s->derived_by[0]) rc = llmq_st_writer_meta(w, "derived_by", s->derived_by, err);
    if (!rc && s->act[0]) rc = llmq_st_writer_meta(w, "act", s->act, err);
    if (!rc) rc = llmq_st_writer_finish(w, path, err);
    llmq_st_writer_free(w);
    return rc;
}

static int meta_int(const llmq_st_file *f, const char *key, int64_t lo, int64_t hi, int64_t *out, llmq_err *err)
{
    const char *v = llmq_st_meta(f, key);
    char q[LLMQ_QUOTE_SIZE];
    if (!v) return llmq_errorf(err, LLMQ_EFORMAT, "%s: statistics metadata '%s' is missing", f->path, key);
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: statistics metadata '%s' = '%s' is not an integer in %" PRId64 "..%" PRId64,
                           f->path, key, llmq_quote(q, v), lo, hi);
    *out = x;
    return LLMQ_OK;
}

/* Copy tensor `name` (dtype dt, shape [d0] or [d0, d1]) into a new buffer. */
static int load_tensor(const llmq_st_file *f, const char *name, llmq_dtype dt, int64_t d0, int64_t d1, void **out, llmq_err *err)
{
    const llmq_st_tensor *t = llmq_st_find(f, name);
    if (!t) return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s' is missing", f->path, name);
    int nd = d1 >= 0 ? 2 : 1;
    if (t->dtype != dt || t->ndim != nd || t->shape[0] != d0 || (nd == 2 && t->shape[1] != d1))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s' has dtype %s and %d dims, expected %s [%" PRId64 "%s]",
                           f->path, name, llmq_dtype_name(t->dtype), t->ndim, llmq_dtype_name(dt), d0, nd == 2 ? ", ..." : "");
    void *p = llmq_malloc(t->nbytes ? t->nbytes : 1, err);
    if (!p) return err->code;
    memcpy(p, t->data, t->nbytes);
    if (dt == LLMQ_DT_F32 || dt == LLMQ_DT_F64)
        for (uint64_t i = 0; i < t->nelem; i++) {
            double v = dt == LLMQ_DT_F32 ? (double)((float *)p)[i] : ((double *)p)[i];
            if (!isfinite(v)) {
                free(p);
                return llmq_errorf(err, LLMQ_ENONFINITE, "%s: tensor '%s' holds a non-finite value at %" PRIu64, f->path, name, i);
            }
        }
    *out = p;
    return LLMQ_OK;
}

static int load(llmq_stats *s, const char *path, int shard_ok, llmq_err *err)
{
    memset(s, 0, sizeof *s);
    llmq_st_file f;
    int rc = llmq_st_open(&f, path, err);
    if (rc) return rc;
    const char *fmt = llmq_st_meta(&f, "format"), *ver = llmq_st_meta(&f, "llmq.stats_version");
    int64_t v;
    char name[96];
    if (!fmt || strcmp(fmt, "llmq-stats") != 0) {
        rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: not an llmq statistics file (llmq calibrate writes them)", path);
        goto out;
    }
    if (!ver || strcmp(ver, LLMQ_STATS_VERSION) != 0) {
        char q[LLMQ_QUOTE_SIZE];
        rc = llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: statistics version '%s' is not supported (this llmq reads %s)",
                         path, llmq_quote(q, ver), LLMQ_STATS_VERSION);
        goto out;
    }
    if ((rc = meta_int(&f, "n_layers", 1, LLMQ_STATS_MAX_LAYERS, &v, err))) goto out;
    s->n_layers = (int)v;
    s->lo = 0;
    s->hi = s->n_layers;
    const char *range = llmq_st_meta(&f, "layers");
    if (range) {
        char q[LLMQ_QUOTE_SIZE];
        int a, b;
        if (llmq_parse_range(range, &a, &b) || b > s->n_layers || (a == 0 && b == s->n_layers)) {
            rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: statistics metadata 'layers' = '%s' is not a shard's range A:B inside 0:%d",
                             path, llmq_quote(q, range), s->n_layers);
            goto out;
        }
        if (!shard_ok) {
            rc = llmq_errorf(err, LLMQ_EUSAGE, "%s: holds layers %d:%d only (calibrate --layers); join the shards with llmq merge",
                             path, a, b);
            goto out;
        }
        s->lo = a;
        s->hi = b;
    }
    if ((rc = meta_int(&f, "samples", 1, INT32_MAX, &v, err))) goto out;
    s->samples = (int)v;
    if ((rc = meta_int(&f, "seqlen", 2, INT32_MAX, &v, err))) goto out;
    s->seqlen = (int)v;
    if ((rc = meta_int(&f, "keep", 0, LLMQ_STATS_MAX_KEEP, &v, err))) goto out;
    s->n_keep = (int)v;
    if (llmq_st_meta(&f, "kv_keep")) {
        if ((rc = meta_int(&f, "kv_keep", 0, LLMQ_STATS_MAX_KEEP, &v, err))) goto out;
        s->n_kv_keep = (int)v;
    }
    if ((rc = meta_int(&f, "tokens", 0, INT64_MAX, &v, err))) goto out;
    s->tokens = v;
    if ((rc = meta_int(&f, "seed", 0, INT64_MAX, &v, err))) goto out;
    s->seed = (uint64_t)v;
    const char *md = llmq_st_meta(&f, "model_digest"), *td = llmq_st_meta(&f, "text_digest");
    const char *db = llmq_st_meta(&f, "derived_by");
    snprintf(s->model_digest, sizeof s->model_digest, "%s", md ? md : "");
    snprintf(s->text_digest, sizeof s->text_digest, "%s", td ? td : "");
    snprintf(s->derived_by, sizeof s->derived_by, "%s", db ? db : "");
    const char *act = llmq_st_meta(&f, "act");
    snprintf(s->act, sizeof s->act, "%s", act ? act : "");
    /* shapes: channels from the tensors themselves, heads from head_absmax */
    char kpn[64], kdn[64];
    snprintf(kpn, sizeof kpn, "layers.%d.k_pre.head_absmax", s->lo);
    snprintf(kdn, sizeof kdn, "layers.%d.k_pre.absmax", s->lo);
    const llmq_st_tensor *kp = llmq_st_find(&f, kpn), *kd = llmq_st_find(&f, kdn);
    if (!kp || !kd || kp->ndim != 1 || kd->ndim != 1 || kp->shape[0] < 1 || kd->shape[0] % kp->shape[0] != 0) {
        rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s' is missing or does not divide the K channels", path, kpn);
        goto out;
    }
    s->n_kv_heads = (int)kp->shape[0];
    s->head_dim = (int)(kd->shape[0] / kp->shape[0]);
    if (!(s->site = llmq_calloc((size_t)s->n_layers * LLMQ_SITE_COUNT, sizeof *s->site, err))) { rc = err->code; goto out; }
    for (int l = s->lo; l < s->hi; l++)
        for (int k = 0; k < LLMQ_SITE_COUNT; k++) {
            llmq_site_stats *q = &s->site[l * LLMQ_SITE_COUNT + k];
            snprintf(name, sizeof name, "layers.%d.%s.absmax", l, site_names[k]);
            const llmq_st_tensor *t = llmq_st_find(&f, name);
            if (!t || t->ndim != 1 || t->shape[0] < 1 || t->shape[0] > LLMQ_STATS_MAX_DIM) {
                rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s' is missing or not a vector", path, name);
                goto out;
            }
            int64_t dim = t->shape[0];
            q->dim = (int)dim;
            struct { const char *fld; llmq_dtype dt; int64_t d0, d1; void **p; int want; } want[] = {
                { "absmax", LLMQ_DT_F32, dim, -1, (void **)&q->absmax, 1 }, { "min", LLMQ_DT_F32, dim, -1, (void **)&q->min, 1 },
                { "max", LLMQ_DT_F32, dim, -1, (void **)&q->max, 1 }, { "mean_abs", LLMQ_DT_F32, dim, -1, (void **)&q->mean_abs, 1 },
                { "sum", LLMQ_DT_F64, dim, -1, (void **)&q->sum, 1 }, { "sumsq", LLMQ_DT_F64, dim, -1, (void **)&q->sumsq, 1 },
                { "head_absmax", LLMQ_DT_F32, s->n_kv_heads, -1, (void **)&q->head_absmax, !llmq_site_is_linear((llmq_site)k) },
                { "tokens", LLMQ_DT_F32, s->n_keep, dim, (void **)&q->keep, llmq_site_is_linear((llmq_site)k) && s->n_keep > 0 },
            };
            for (size_t i = 0; i < LLMQ_ARRAY_LEN(want); i++) {
                if (!want[i].want) continue;
                snprintf(name, sizeof name, "layers.%d.%s.%s", l, site_names[k], want[i].fld);
                if ((rc = load_tensor(&f, name, want[i].dt, want[i].d0, want[i].d1, want[i].p, err))) goto out;
            }
            int kvs = k == LLMQ_SITE_K_PRE || k == LLMQ_SITE_V;
            snprintf(name, sizeof name, "layers.%d.%s.kv_min", l, site_names[k]);
            if (kvs && llmq_st_find(&f, name)) {   /* optional: older files lack them */
                if ((rc = load_tensor(&f, name, LLMQ_DT_F32, dim, -1, (void **)&q->kv_min, err))) goto out;
                snprintf(name, sizeof name, "layers.%d.%s.kv_max", l, site_names[k]);
                if ((rc = load_tensor(&f, name, LLMQ_DT_F32, dim, -1, (void **)&q->kv_max, err))) goto out;
                snprintf(name, sizeof name, "layers.%d.%s.kv_tokens", l, site_names[k]);
                if (s->n_kv_keep > 0 &&
                    (rc = load_tensor(&f, name, LLMQ_DT_F32, s->n_kv_keep, dim, (void **)&q->kv_keep, err)))
                    goto out;
                for (int j = 0; j < q->dim; j++)
                    if (!(q->kv_min[j] <= q->kv_max[j])) {
                        rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: layer %d site '%s' channel %d: kv_min %g > kv_max %g",
                                         path, l, site_names[k], j, (double)q->kv_min[j], (double)q->kv_max[j]);
                        goto out;
                    }
            }
            snprintf(name, sizeof name, "layers.%d.%s.count", l, site_names[k]);
            int64_t *cnt = NULL;
            if ((rc = load_tensor(&f, name, LLMQ_DT_I64, 1, -1, (void **)&cnt, err))) goto out;
            q->count = (int64_t)llmq_get_le64(cnt);
            free(cnt);
            for (int j = 0; j < q->dim; j++)
                if (!(q->min[j] <= q->max[j]) || q->absmax[j] < 0.0f) {
                    rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: layer %d site '%s' channel %d: min %g > max %g or negative absmax",
                                     path, l, site_names[k], j, (double)q->min[j], (double)q->max[j]);
                    goto out;
                }
        }
out:
    llmq_st_close(&f);
    if (rc) llmq_stats_release(s);
    return rc;
}

int llmq_stats_load(llmq_stats *s, const char *path, llmq_err *err) { return load(s, path, 0, err); }
int llmq_stats_load_shard(llmq_stats *s, const char *path, llmq_err *err) { return load(s, path, 1, err); }

/* The fields a single run writes once: equal in every shard of it
 * (derived statistics never get this far: llmq_stats_join refuses them). */
static int same_run(const llmq_stats *a, const llmq_stats *b)
{
    return a->n_layers == b->n_layers && a->n_kv_heads == b->n_kv_heads && a->head_dim == b->head_dim &&
           a->n_keep == b->n_keep && a->n_kv_keep == b->n_kv_keep && a->samples == b->samples && a->seqlen == b->seqlen && a->seed == b->seed &&
           a->tokens == b->tokens && !strcmp(a->model_digest, b->model_digest) &&
           !strcmp(a->text_digest, b->text_digest) && !strcmp(a->act, b->act);
}

int llmq_stats_join(llmq_stats *out, const char *const *paths, int n, llmq_err *err)
{
    memset(out, 0, sizeof *out);
    llmq_stats sh;
    int *from = NULL, rc = LLMQ_OK;
    for (int i = 0; i < n && !rc; i++) {
        if ((rc = load(&sh, paths[i], 1, err))) break;
        if (sh.lo == 0 && sh.hi == sh.n_layers) {
            rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: holds every layer already; merge takes the shards of calibrate --layers", paths[i]);
        } else if (sh.derived_by[0]) {
            rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: statistics derived by another command, not a calibrate shard", paths[i]);
        } else if (i == 0) {
            *out = sh;   /* takes the shard's arrays over */
            memset(&sh, 0, sizeof sh);
            if (!(from = llmq_calloc((size_t)out->n_layers, sizeof *from, err))) { rc = err->code; break; }
            for (int l = out->lo; l < out->hi; l++) from[l] = 1;
            continue;
        } else if (!same_run(out, &sh)) {
            rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: from another calibrate run than %s (model, text, windows, seed, keep or --act differ)",
                             paths[i], paths[0]);
        } else {
            for (int l = sh.lo; l < sh.hi && !rc; l++) {
                if (from[l]) {
                    rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: layer %d is also in %s", paths[i], l, paths[from[l] - 1]);
                    break;
                }
                from[l] = i + 1;
                for (int k = 0; k < LLMQ_SITE_COUNT; k++) {
                    out->site[l * LLMQ_SITE_COUNT + k] = sh.site[l * LLMQ_SITE_COUNT + k];
                    memset(&sh.site[l * LLMQ_SITE_COUNT + k], 0, sizeof sh.site[0]);
                }
            }
        }
        llmq_stats_release(&sh);
    }
    for (int l = 0; !rc && from && l < out->n_layers; l++)
        if (!from[l]) rc = llmq_errorf(err, LLMQ_EFORMAT, "layer %d is in none of the %d shards", l, n);
    if (!rc && !from) rc = llmq_errorf(err, LLMQ_EFORMAT, "no shards to join");
    free(from);
    if (rc) { llmq_stats_release(out); return rc; }
    out->lo = 0;
    out->hi = out->n_layers;
    return LLMQ_OK;
}
