/* smooth.c - SmoothQuant and Outlier Suppression+ scales, folded into a checkpoint. */
#include <math.h>
#include <stdio.h>
#include <cblas.h>
#include "smooth.h"
#include "../quant/quant.h"
#include "../base/fileio.h"
#include "../linears.h"
#include "../../formats/json.h"
#include "../../formats/packed.h"
#include "../../formats/modeldir.h"

static const char *pair_names[LLMQ_PAIR_COUNT] = { "qkv", "vo", "gateup", "updown" };
const char *llmq_pair_name(llmq_pair p) { return (unsigned)p < LLMQ_PAIR_COUNT ? pair_names[p] : "?"; }

static const llmq_site pair_site[LLMQ_PAIR_COUNT] = { LLMQ_SITE_QKV, LLMQ_SITE_O, LLMQ_SITE_GATEUP, LLMQ_SITE_DOWN };

void llmq_smooth_plan_release(llmq_smooth_plan *plan)
{
    if (!plan) return;
    if (plan->p)
        for (int i = 0; i < plan->n_layers * LLMQ_PAIR_COUNT; i++) { free(plan->p[i].scale); free(plan->p[i].shift); }
    free(plan->p);
    memset(plan, 0, sizeof *plan);
}

/* Channel c of the o_proj input (head h = c / hd, dim i) reads KV channel
 * (h / group) * hd + i: the VO scale is per KV channel. */
static int vo_map(const llmq_config *c, int ch)
{
    int hd = c->head_dim, group = c->n_heads / c->n_kv_heads;
    return (ch / hd / group) * hd + ch % hd;
}

/* The consumers of a pair, stacked: (rows, cols) fp32. */
static int consumers(const llmq_layer *L, llmq_pair p, const llmq_wmat **w, int *nw)
{
    switch (p) {
    case LLMQ_PAIR_QKV: w[0] = &L->wq; w[1] = &L->wk; w[2] = &L->wv; *nw = 3; break;
    case LLMQ_PAIR_VO: w[0] = &L->wo; *nw = 1; break;
    case LLMQ_PAIR_GATEUP: w[0] = &L->w_gate; w[1] = &L->w_up; *nw = 2; break;
    default: w[0] = &L->w_down; *nw = 1; break;
    }
    return 0;
}

/* ---- the W8A8 output error, threaded over tiles of output rows ---- */

#define TILE 64

struct err_job {
    const float *W, *Xd, *s, *ref, *wz;
    const int8_t *Xq;     /* quantize: the activations' int8 codes (n, cols) */
    const float *xs;      /* quantize: their per-token scales (n) */
    int64_t rows, cols, n;
    float *wbuf, *ybuf;   /* per thread: (TILE, cols), (n, TILE) */
    int8_t *codes;        /* per thread: (TILE, cols) weight codes */
    double *tile_err;     /* (tiles) */
    int quantize;         /* 0: plain fp32 product (computing ref) */
    float *out;           /* when !quantize: (n, rows) */
};

static void err_worker(void *ctx, int ti, int nt)
{
    struct err_job *j = ctx;
    int64_t tiles = (j->rows + TILE - 1) / TILE, t0, t1;
    llmq_split(tiles, ti, nt, 1, &t0, &t1);
    float *wb = j->wbuf + (size_t)ti * TILE * j->cols, *yb = j->ybuf + (size_t)ti * TILE * j->n;
    int8_t *cd = j->codes + (size_t)ti * TILE * j->cols;
    float wsc[TILE];
    for (int64_t tile = t0; tile < t1; tile++) {
        int64_t r0 = tile * TILE, tr = LLMQ_MIN(TILE, j->rows - r0);
        for (int64_t r = 0; r < tr; r++) {
            const float *w = j->W + (size_t)(r0 + r) * j->cols;
            float *o = wb + (size_t)r * j->cols;
            if (!j->quantize) { memcpy(o, w, (size_t)j->cols * sizeof(float)); continue; }
            for (int64_t c = 0; c < j->cols; c++) o[c] = w[c] * (j->s ? j->s[c] : 1.0f);
            llmq_q8_quantize_row(o, j->cols, cd + (size_t)r * j->cols, &wsc[r]);
        }
        if (j->quantize) {
            /* W8A8 as the runner multiplies it: exact int32 sums of codes */
            llmq_wmat Wt = { .type = LLMQ_W_Q8, .rows = tr, .cols = j->cols, .data = cd, .scales = wsc, 0 };
            llmq_matmul_a8(NULL, &Wt, j->Xq, j->xs, j->n, yb);
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)j->n, (int)tr, (int)j->cols, 1.0f, j->Xd,
                        (int)j->cols, wb, (int)j->cols, 0.0f, yb, (int)tr);
        }
        if (!j->quantize) {
            for (int64_t t = 0; t < j->n; t++)
                memcpy(j->out + (size_t)t * j->rows + r0, yb + (size_t)t * tr, (size_t)tr * sizeof(float));
            continue;
        }
        double e = 0.0;
        for (int64_t t = 0; t < j->n; t++)
            for (int64_t r = 0; r < tr; r++) {
                double want = (double)j->ref[(size_t)t * j->rows + r0 + r] - (j->wz ? (double)j->wz[r0 + r] : 0.0);
                double d = (double)yb[(size_t)t * tr + r] - want;
                e += d * d;
            }
        j->tile_err[tile] = e;
    }
}

/* Run the tiles; Xd is the (already transformed) activation matrix. */
static int run_tiles(llmq_pool *pool, struct err_job *j, llmq_err *err)
{
    int nt = llmq_pool_size(pool);
    int64_t tiles = (j->rows + TILE - 1) / TILE;
    j->wbuf = llmq_alloc_aligned((size_t)nt * TILE * (size_t)j->cols * sizeof(float), err);
    j->ybuf = j->wbuf ? llmq_alloc_aligned((size_t)nt * TILE * (size_t)j->n * sizeof(float), err) : NULL;
    j->codes = j->ybuf ? llmq_malloc((size_t)nt * TILE * (size_t)j->cols, err) : NULL;
    j->tile_err = j->codes ? llmq_calloc((size_t)tiles, sizeof(double), err) : NULL;
    if (j->tile_err) llmq_pool_run(pool, err_worker, j);
    int rc = j->tile_err ? LLMQ_OK : err->code;
    free(j->wbuf); free(j->ybuf); free(j->codes);
    return rc;
}

/* out (n, rows) = X W^T in fp32. */
static int plain_product(llmq_pool *pool, const float *W, int64_t rows, int64_t cols, const float *X, int64_t n,
                         float *out, llmq_err *err)
{
    struct err_job j = { .W = W, .Xd = X, .rows = rows, .cols = cols, .n = n, .quantize = 0, .out = out };
    int rc = run_tiles(pool, &j, err);
    free(j.tile_err);
    return rc;
}

double llmq_smooth_error(llmq_pool *pool, const float *W, int64_t rows, int64_t cols, const float *X, int64_t n,
                         const float *s, const float *z, const float *ref, const float *wz, llmq_err *err)
{
    float *row = llmq_malloc((size_t)cols * sizeof(float), err), *xs = row ? llmq_malloc((size_t)n * sizeof(float), err) : NULL;
    int8_t *Xq = xs ? llmq_malloc((size_t)n * (size_t)cols, err) : NULL;
    if (!Xq) { free(row); free(xs); return -1.0; }
    for (int64_t t = 0; t < n; t++) {
        for (int64_t c = 0; c < cols; c++)
            row[c] = (X[(size_t)t * cols + c] - (z ? z[c] : 0.0f)) / (s ? s[c] : 1.0f);
        llmq_quantize_act_i8(row, cols, Xq + (size_t)t * cols, &xs[t]);
    }
    free(row);
    struct err_job j = { .W = W, .s = s, .ref = ref, .wz = z ? wz : NULL, .Xq = Xq, .xs = xs, .rows = rows,
                         .cols = cols, .n = n, .quantize = 1 };
    int rc = run_tiles(pool, &j, err);
    free(Xq);
    free(xs);
    if (rc) { free(j.tile_err); return -1.0; }
    double e = 0.0;
    for (int64_t i = 0; i < (rows + TILE - 1) / TILE; i++) e += j.tile_err[i];
    free(j.tile_err);
    return e / ((double)n * (double)rows);
}

/* Score grid point k; keep it when its loss is below *best (or equal, at a
 * lower k). -1 when the loss reports an error. */
static int grid_score(llmq_grid_loss loss, void *ctx, int k, int *kbest, double *best)
{
    double e = loss(ctx, k);
    if (e < 0) return -1;
    if (e < *best || (e == *best && k < *kbest)) { *best = e; *kbest = k; }
    return 0;
}

int llmq_grid_search(int K, int step, llmq_grid_loss loss, void *ctx, double *best)
{
    int kbest = -1;
    if (step < 1) step = 1;
    *best = INFINITY;
    if (K < 0) return -1;
    for (int k = 0; k <= K; k += step)                       /* coarse: every step-th point */
        if (grid_score(loss, ctx, k, &kbest, best)) return -1;
    if (K % step && grid_score(loss, ctx, K, &kbest, best)) return -1;   /* ...and K */
    int c = kbest;                                           /* fine: the others around the coarse best */
    for (int k = LLMQ_MAX(0, c - (step - 1)); k <= LLMQ_MIN(K, c + (step - 1)); k++)
        if (k % step && k != K && grid_score(loss, ctx, k, &kbest, best)) return -1;
    return kbest;
}

/* ---- the plan ---- */

/* SmoothQuant eq. 4: s_j = max|X_j|^alpha / max|W_j|^(1 - alpha); a dead
 * channel (no activation or no weight) keeps s = 1. */
static float sq_scale(float xa, float wa, double alpha)
{
    if (!(xa > 0.0f) || !(wa > 0.0f)) return 1.0f;
    double s = pow((double)xa, alpha) / pow((double)wa, 1.0 - alpha);
    if (!(s > 1e-6)) s = 1e-6;
    if (s > 1e6) s = 1e6;
    return (float)s;
}

struct pair_work {
    const llmq_config *c;
    llmq_pair p;
    int in_dim, sdim;
    float *W;                  /* (rows, in_dim) stacked consumers */
    int64_t rows;
    float *xabs, *xmin, *xmax, *wabs;   /* (sdim) aggregated */
    float *s_exp, *z_exp;      /* (in_dim) */
    float *ref, *wz;           /* (n_keep, rows), (rows) */
};

static void expand(const struct pair_work *w, const float *v, float *out)
{
    for (int ch = 0; ch < w->in_dim; ch++) out[ch] = v[w->p == LLMQ_PAIR_VO ? vo_map(w->c, ch) : ch];
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* OS+'s threshold search: grid point k is t = rmax (rlo / rmax)^(k / 80) */
#define OSP_GRID 80

struct osp_ctx {
    struct pair_work *w;
    const llmq_site_stats *q;
    const llmq_smooth_opts *o;
    int64_t n;
    const float *r;            /* (sdim) shifted channel ranges */
    float *cand;               /* (sdim) scratch */
    double rmax, rlo;
    const float *z;            /* (in_dim) expanded shift or NULL */
    llmq_err *err;
};

static double osp_threshold(const struct osp_ctx *x, int k)
{
    return x->rmax * pow(x->rlo / x->rmax, (double)k / OSP_GRID);
}

static void osp_scales(const struct osp_ctx *x, double t, float *s)
{
    for (int j = 0; j < x->w->sdim; j++) s[j] = (float)LLMQ_MAX(1.0, x->r[j] / t);
}

static double osp_loss(void *ctx, int k)
{
    struct osp_ctx *x = ctx;
    struct pair_work *w = x->w;
    osp_scales(x, osp_threshold(x, k), x->cand);
    expand(w, x->cand, w->s_exp);
    return llmq_smooth_error(x->o->pool, w->W, w->rows, w->in_dim, x->q->keep, x->n, w->s_exp, x->z, w->ref, w->wz,
                             x->err);
}

static int plan_pair(const llmq_model *m, const llmq_stats *st, const llmq_smooth_opts *o, int l, llmq_pair p,
                     llmq_smooth_pair *out, llmq_err *err)
{
    const llmq_config *c = &m->cfg;
    const llmq_site_stats *q = &st->site[l * LLMQ_SITE_COUNT + pair_site[p]];
    struct pair_work w = { .c = c, .p = p, .in_dim = q->dim };
    w.sdim = p == LLMQ_PAIR_VO ? c->n_kv_heads * c->head_dim : q->dim;
    int rc = LLMQ_OK;
    out->dim = w.sdim;
    out->err_before = out->err_after = -1.0;
    if (!(out->scale = llmq_malloc((size_t)w.sdim * sizeof(float), err))) return err->code;
    for (int j = 0; j < w.sdim; j++) out->scale[j] = 1.0f;
    if (!(o->pairs & (1u << p))) return LLMQ_OK;
    int search = o->auto_alpha || o->method == LLMQ_SMOOTH_OSPLUS;
    int measure = st->n_keep > 0 && q->keep;
    if (search && !measure)
        return llmq_errorf(err, LLMQ_EUSAGE, "%s: the statistics hold no token rows (calibrate --keep 0): %s needs them",
                           o->stats_path ? o->stats_path : "statistics", o->method == LLMQ_SMOOTH_OSPLUS ? "osplus" : "--auto-alpha");
    const llmq_wmat *cw[3];
    int nw;
    consumers(&m->layers[l], p, cw, &nw);
    for (int i = 0; i < nw; i++) w.rows += cw[i]->rows;
    if (!(w.W = llmq_alloc_aligned((size_t)w.rows * (size_t)w.in_dim * sizeof(float), err)) ||
        !(w.xabs = llmq_calloc((size_t)w.sdim, sizeof(float), err)) ||
        !(w.xmin = llmq_calloc((size_t)w.sdim, sizeof(float), err)) ||
        !(w.xmax = llmq_calloc((size_t)w.sdim, sizeof(float), err)) ||
        !(w.wabs = llmq_calloc((size_t)w.sdim, sizeof(float), err)) ||
        !(w.s_exp = llmq_malloc((size_t)w.in_dim * sizeof(float), err)) ||
        !(w.z_exp = llmq_calloc((size_t)w.in_dim, sizeof(float), err)))
        goto nomem;
    {
        int64_t r = 0;
        for (int i = 0; i < nw; i++)
            for (int64_t k = 0; k < cw[i]->rows; k++, r++) llmq_get_row(cw[i], k, w.W + (size_t)r * w.in_dim);
    }
    for (int j = 0; j < w.sdim; j++) { w.xmin[j] = INFINITY; w.xmax[j] = -INFINITY; }
    for (int ch = 0; ch < w.in_dim; ch++) {
        int j = p == LLMQ_PAIR_VO ? vo_map(c, ch) : ch;
        w.xabs[j] = LLMQ_MAX(w.xabs[j], q->absmax[ch]);
        w.xmin[j] = LLMQ_MIN(w.xmin[j], q->min[ch]);
        w.xmax[j] = LLMQ_MAX(w.xmax[j], q->max[ch]);
    }
    for (int64_t r = 0; r < w.rows; r++)
        for (int ch = 0; ch < w.in_dim; ch++) {
            int j = p == LLMQ_PAIR_VO ? vo_map(c, ch) : ch;
            float a = fabsf(w.W[(size_t)r * w.in_dim + ch]);
            if (a > w.wabs[j]) w.wabs[j] = a;
        }
    /* OS+ eq. 3: z_j = (max_j + min_j) / 2, where the producer can take it */
    int shift = o->method == LLMQ_SMOOTH_OSPLUS && o->shift && p == LLMQ_PAIR_VO && c->arch == LLMQ_ARCH_LLAMA;
    if (shift) {
        if (!(out->shift = llmq_malloc((size_t)w.sdim * sizeof(float), err))) goto nomem;
        for (int j = 0; j < w.sdim; j++) out->shift[j] = 0.5f * (w.xmax[j] + w.xmin[j]);
        expand(&w, out->shift, w.z_exp);
    }
    int64_t n = st->n_keep;
    if (measure) {
        if (!(w.ref = llmq_alloc_aligned((size_t)n * (size_t)w.rows * sizeof(float), err)) ||
            !(w.wz = llmq_calloc((size_t)w.rows, sizeof(float), err)))
            goto nomem;
        if ((rc = plain_product(o->pool, w.W, w.rows, w.in_dim, q->keep, n, w.ref, err))) goto out;
        for (int64_t r = 0; r < w.rows; r++) {
            double a = 0.0;
            for (int ch = 0; ch < w.in_dim; ch++) a += (double)w.W[(size_t)r * w.in_dim + ch] * w.z_exp[ch];
            w.wz[r] = (float)a;
        }
        out->err_before = llmq_smooth_error(o->pool, w.W, w.rows, w.in_dim, q->keep, n, NULL, NULL, w.ref, NULL, err);
        if (out->err_before < 0) { rc = err->code; goto out; }
    }
    float *cand = llmq_malloc((size_t)w.sdim * sizeof(float), err);
    if (!cand) goto nomem;
    double best = INFINITY;
    if (o->method == LLMQ_SMOOTH_SQ) {
        int steps = o->auto_alpha ? 21 : 1;
        for (int k = 0; k < steps; k++) {
            double alpha = o->auto_alpha ? k * 0.05 : o->alpha;
            for (int j = 0; j < w.sdim; j++) cand[j] = sq_scale(w.xabs[j], w.wabs[j], alpha);
            double e = 0.0;
            if (o->auto_alpha) {
                expand(&w, cand, w.s_exp);
                e = llmq_smooth_error(o->pool, w.W, w.rows, w.in_dim, q->keep, n, w.s_exp, NULL, w.ref, NULL, err);
                if (e < 0) { rc = err->code; free(cand); goto out; }
            }
            if (e < best) {
                best = e;
                out->param = alpha;
                memcpy(out->scale, cand, (size_t)w.sdim * sizeof(float));
            }
        }
    } else {
        /* OS+ eq. 6: s_j = max(1, r_j / t) with r_j the shifted range
         * max(|max_j - z_j|, |min_j - z_j|); t minimises the quantized output
         * error of eq. 5 over a geometric grid of 81 points from max r (s = 1)
         * down to the 5th percentile of the channel ranges.  A grid that
         * stopped at the median cut the search short: the down_proj input of
         * layer 0 of tiny-llama-mha chose the median itself, the grid's last
         * point.  The grid is searched coarse to fine (llmq_grid_search,
         * step 4: 27 evaluations instead of 81).  The error is not smooth
         * in t (each t rounds the weights anew): on tiny-llama-mha the full
         * grid has 8-29 local minima per pair, and the coarse search lands on
         * its best point in 18 of 24 pairs, within 0.2-1.6% of its error in
         * the others (--full-search scores all 81). */
        float *r = llmq_malloc((size_t)w.sdim * sizeof(float), err), *sorted = r ? llmq_malloc((size_t)w.sdim * sizeof(float), err) : NULL;
        if (!sorted) { free(r); free(cand); goto nomem; }
        for (int j = 0; j < w.sdim; j++) {
            float z = out->shift ? out->shift[j] : 0.0f;
            r[j] = shift ? LLMQ_MAX(fabsf(w.xmax[j] - z), fabsf(w.xmin[j] - z)) : w.xabs[j];
        }
        memcpy(sorted, r, (size_t)w.sdim * sizeof(float));
        qsort(sorted, (size_t)w.sdim, sizeof(float), cmp_float);
        int lo = w.sdim / 20;
        while (lo < w.sdim - 1 && !(sorted[lo] > 0)) lo++;   /* dead channels have no range */
        double rmax = sorted[w.sdim - 1], rlo = sorted[lo];
        if (!(rlo > 0)) rlo = rmax;
        struct osp_ctx x = { .w = &w, .q = q, .o = o, .n = n, .r = r, .cand = cand, .rmax = rmax, .rlo = rlo,
                             .z = shift ? w.z_exp : NULL, .err = err };
        if (rmax > 0) {
            int k = llmq_grid_search(OSP_GRID, o->full_grid ? 1 : 4, osp_loss, &x, &best);
            if (k < 0) rc = err->code;
            else {
                out->param = osp_threshold(&x, k);
                osp_scales(&x, out->param, out->scale);
            }
        }
        free(r);
        free(sorted);
        if (rc) { free(cand); goto out; }
    }
    free(cand);
    if (measure) {
        if (o->method == LLMQ_SMOOTH_SQ && !o->auto_alpha) {
            expand(&w, out->scale, w.s_exp);
            best = llmq_smooth_error(o->pool, w.W, w.rows, w.in_dim, q->keep, n, w.s_exp, NULL, w.ref, NULL, err);
            if (best < 0) { rc = err->code; goto out; }
        }
        out->err_after = isfinite(best) ? best : out->err_before;  /* a dead site: nothing searched */
    }
    goto out;
nomem:
    rc = err->code ? err->code : LLMQ_ENOMEM;
out:
    free(w.W); free(w.xabs); free(w.xmin); free(w.xmax); free(w.wabs); free(w.s_exp); free(w.z_exp);
    free(w.ref); free(w.wz);
    return rc;
}

int llmq_smooth_refuse_online(const llmq_model *m, llmq_err *err)
{
    return llmq_config_refuse_online(&m->cfg, m->path, "down_proj's input is rotated at run time, so its smoothing "
                                     "scales cannot fold into up_proj; smooth before llmq rotate --online-hadamard", err);
}

int llmq_smooth_plan_compute(const llmq_model *m, const llmq_stats *st, const llmq_smooth_opts *o,
                             llmq_smooth_plan *plan, llmq_err *err)
{
    memset(plan, 0, sizeof *plan);
    int rc0 = llmq_smooth_refuse_online(m, err);
    if (rc0) return rc0;
    if (m->packed_meta)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: is a packed model; smooth the float checkpoint it came from", m->path);
    for (int l = 0; l < m->cfg.n_layers; l++)
        if (m->layers[l].wq.type > LLMQ_W_F16)
            return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: layer %d holds quantized weights", m->path, l);
    if (o->method == LLMQ_SMOOTH_SQ && !o->auto_alpha && !(o->alpha >= 0.0 && o->alpha <= 1.0))
        return llmq_errorf(err, LLMQ_EUSAGE, "alpha %g is outside [0, 1]", o->alpha);
    plan->n_layers = m->cfg.n_layers;
    if (!(plan->p = llmq_calloc((size_t)plan->n_layers * LLMQ_PAIR_COUNT, sizeof *plan->p, err))) return err->code;
    for (int l = 0; l < plan->n_layers; l++)
        for (int p = 0; p < LLMQ_PAIR_COUNT; p++) {
            int rc = plan_pair(m, st, o, l, (llmq_pair)p, &plan->p[l * LLMQ_PAIR_COUNT + p], err);
            if (rc) { llmq_smooth_plan_release(plan); return rc; }
            const llmq_smooth_pair *q = &plan->p[l * LLMQ_PAIR_COUNT + p];
            if (q->shift)
                for (int j = 0; j < q->dim; j++) plan->shifted |= q->shift[j] != 0.0f;
        }
    return LLMQ_OK;
}

/* ---- writing the checkpoint ---- */

struct wctx {
    const llmq_model *m;
    const llmq_smooth_plan *plan;
    llmq_dtype dt;
    int add_attn_bias;      /* the source had no attention biases, the output has */
};

static const llmq_st_tensor *find(const llmq_model *m, const char *name) { return llmq_ckpt_find(&m->ckpt, name, NULL); }

/* Fold the plan into the weight (bias 0) or bias (bias 1) of linear k of layer l. */
static int transform_linear(const struct wctx *x, int l, int k, int bias, float *v, uint64_t nelem, llmq_err *err)
{
    const llmq_config *c = &x->m->cfg;
    const llmq_smooth_pair *P = &x->plan->p[l * LLMQ_PAIR_COUNT];
    const float *sq = P[LLMQ_PAIR_QKV].scale, *svo = P[LLMQ_PAIR_VO].scale, *zvo = P[LLMQ_PAIR_VO].shift;
    const float *sgu = P[LLMQ_PAIR_GATEUP].scale, *sud = P[LLMQ_PAIR_UPDOWN].scale;
    int H = c->hidden, qd = c->n_heads * c->head_dim, FF = c->intermediate;
    uint64_t rows;
    if (!bias) {
        switch (k) {
        case LLMQ_LIN_Q: case LLMQ_LIN_K: case LLMQ_LIN_V:
            rows = nelem / (uint64_t)H;
            for (uint64_t r = 0; r < rows; r++) {
                float d = k == LLMQ_LIN_V ? svo[r] : 1.0f;
                for (int j = 0; j < H; j++) v[r * H + j] = v[r * H + j] * sq[j] / d;
            }
            break;
        case LLMQ_LIN_O:
            rows = nelem / (uint64_t)qd;
            for (uint64_t r = 0; r < rows; r++)
                for (int ch = 0; ch < qd; ch++) v[r * qd + ch] *= svo[vo_map(c, ch)];
            break;
        case LLMQ_LIN_GATE: case LLMQ_LIN_UP:
            for (int r = 0; r < FF; r++)
                for (int j = 0; j < H; j++)
                    v[(size_t)r * H + j] = v[(size_t)r * H + j] * sgu[j] / (k == LLMQ_LIN_UP ? sud[r] : 1.0f);
            break;
        case LLMQ_LIN_DOWN:
            for (int r = 0; r < H; r++)
                for (int j = 0; j < FF; j++) v[(size_t)r * FF + j] *= sud[j];
            break;
        }
    } else if (k == LLMQ_LIN_V) {
        for (uint64_t r = 0; r < nelem; r++) v[r] = (v[r] - (zvo ? zvo[r] : 0.0f)) / svo[r];
    } else if (k == LLMQ_LIN_O && zvo) {
        /* the consumer bias absorbs W z of the original o_proj */
        float *row = llmq_malloc((size_t)qd * sizeof(float), err);
        if (!row) return err->code;
        for (uint64_t r = 0; r < nelem; r++) {
            llmq_get_row(&x->m->layers[l].wo, (int64_t)r, row);
            double a = 0.0;
            for (int ch = 0; ch < qd; ch++) a += (double)row[ch] * zvo[vo_map(c, ch)];
            v[r] = (float)((double)v[r] + a);
        }
        free(row);
    } else if (k == LLMQ_LIN_UP) {
        for (int r = 0; r < FF; r++) v[r] /= sud[r];
    }
    return LLMQ_OK;
}

/* Fold the plan into tensor `name` (values v, nelem of them): a layer's two
 * norms, and its linears as linears.h names them. */
static int transform(const struct wctx *x, const char *name, float *v, uint64_t nelem, llmq_err *err)
{
    const llmq_config *c = &x->m->cfg;
    const char *r;
    char rest[128];
    int l = llmq_layer_of(name, c->n_layers, &r);
    if (l < 0) return LLMQ_OK;
    snprintf(rest, sizeof rest, "%s", r);
    const llmq_smooth_pair *P = &x->plan->p[l * LLMQ_PAIR_COUNT];
    if (!strcmp(rest, "input_layernorm.weight")) {
        for (int j = 0; j < c->hidden; j++) v[j] /= P[LLMQ_PAIR_QKV].scale[j];
        return LLMQ_OK;
    }
    if (!strcmp(rest, "post_attention_layernorm.weight")) {
        for (int j = 0; j < c->hidden; j++) v[j] /= P[LLMQ_PAIR_GATEUP].scale[j];
        return LLMQ_OK;
    }
    /* "self_attn.q_proj.weight" -> linear "self_attn.q_proj", its weight */
    char *dot = strrchr(rest, '.');
    if (!dot || (strcmp(dot, ".weight") && strcmp(dot, ".bias"))) return LLMQ_OK;
    int bias = dot[1] == 'b';
    *dot = 0;
    int k = llmq_linear_find(rest);
    return k < 0 ? LLMQ_OK : transform_linear(x, l, k, bias, v, nelem, err);
}

static int fill(void *ctx, const char *name, void *buf, uint64_t nbytes, llmq_err *err)
{
    const struct wctx *x = ctx;
    uint64_t n = nbytes / llmq_dtype_size(x->dt);
    const llmq_st_tensor *t = find(x->m, name);
    float *v = llmq_malloc((size_t)n * sizeof(float) + 1, err);
    if (!v) return err->code;
    if (t && t->nelem == n) llmq_st_tensor_f32(t, v);
    else memset(v, 0, (size_t)n * sizeof(float));
    int rc = transform(x, name, v, n, err);
    if (!rc) rc = llmq_st_put_f32(buf, x->dt, v, n, name, err);
    free(v);
    return rc;
}

struct config_edit { llmq_dtype dt; int attn_bias; };

/* config.json: the output dtype, and attention_bias once o_proj has one */
static int edit_config(void *ctx, cJSON *j, llmq_err *err)
{
    const struct config_edit *e = ctx;
    (void)err;
    llmq_config_set_dtype(j, e->dt);
    if (e->attn_bias) {
        if (cJSON_GetObjectItemCaseSensitive(j, "attention_bias"))
            cJSON_ReplaceItemInObjectCaseSensitive(j, "attention_bias", cJSON_CreateTrue());
        else cJSON_AddTrueToObject(j, "attention_bias");
    }
    return LLMQ_OK;
}

int llmq_smooth_write(const llmq_model *m, const llmq_smooth_plan *plan, llmq_dtype dt, const char *out_dir,
                      const char *const *keys, const char *const *vals, int n, llmq_err *err)
{
    if (dt != LLMQ_DT_F32 && dt != LLMQ_DT_BF16 && dt != LLMQ_DT_F16)
        return llmq_errorf(err, LLMQ_EUSAGE, "output dtype must be f32, bf16 or f16");
    int rc = llmq_modeldir_check(out_dir, m->ckpt.dir, m->path, err);
    if (rc) return rc;
    const llmq_config *c = &m->cfg;
    struct wctx x = { m, plan, dt, plan->shifted && !c->o_bias };
    llmq_st_writer *w = llmq_st_writer_new(err);
    if (!w) return err->code;
    for (size_t s = 0; s < m->ckpt.n_shards && !rc; s++) {
        const llmq_st_file *f = &m->ckpt.shards[s];
        for (size_t i = 0; i < f->n_tensors && !rc; i++) {
            const llmq_st_tensor *t = &f->tensors[i];
            if (t->dtype == LLMQ_DT_F32 || t->dtype == LLMQ_DT_BF16 || t->dtype == LLMQ_DT_F16)
                rc = llmq_st_writer_add_fill(w, t->name, dt, t->ndim, t->shape, fill, &x, err);
            else
                rc = llmq_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, err);
        }
    }
    if (x.add_attn_bias) {
        /* every attention linear gets a bias (q, k, v, o: LLMQ_LIN_Q..O) */
        char name[128];
        for (int l = 0; l < c->n_layers && !rc; l++)
            for (int k = LLMQ_LIN_Q; k <= LLMQ_LIN_O && !rc; k++) {
                snprintf(name, sizeof name, "model.layers.%d.%s.bias", l, llmq_linears[k].hf);
                if (find(m, name)) continue;
                int64_t n = llmq_linear_rows(c, k);
                rc = llmq_st_writer_add_fill(w, name, dt, 1, &n, fill, &x, err);
            }
    }
    for (int i = 0; i < n && !rc; i++) rc = llmq_st_writer_meta(w, keys[i], vals[i], err);
    if (!rc) rc = llmq_st_writer_meta(w, "format", "pt", err);
    struct config_edit ce = { dt, x.add_attn_bias };
    if (!rc) rc = llmq_modeldir_write(out_dir, m->ckpt.dir, m->path, w, edit_config, &ce, err);
    llmq_st_writer_free(w);
    return rc;
}

/* ---- statistics of the smoothed model ---- */

static int copy_site(llmq_site_stats *d, const llmq_site_stats *s, int heads, int n_keep, int n_kv_keep, llmq_err *err)
{
    size_t D = (size_t)s->dim;
    d->dim = s->dim;
    d->count = s->count;
#define DUP(f, T, n) do { if (s->f) { if (!(d->f = llmq_malloc((n) * sizeof(T), err))) return err->code; \
                                      memcpy(d->f, s->f, (n) * sizeof(T)); } } while (0)
    DUP(absmax, float, D); DUP(min, float, D); DUP(max, float, D); DUP(mean_abs, float, D);
    DUP(sum, double, D); DUP(sumsq, double, D); DUP(head_absmax, float, (size_t)heads);
    DUP(keep, float, (size_t)n_keep * D); DUP(kv_min, float, D); DUP(kv_max, float, D);
    DUP(kv_keep, float, (size_t)n_kv_keep * D);
#undef DUP
    return LLMQ_OK;
}

/* x -> (x - z) / s on every statistic of one site; s, z expanded to the
 * site's channels (z may be NULL). */
static void affine_site(llmq_site_stats *q, const float *s, const float *z, int n_keep, int n_kv_keep)
{
    double n = (double)q->count;
    for (int j = 0; j < q->dim; j++) {
        double sj = s[j], zj = z ? z[j] : 0.0;
        double mn = (q->min[j] - zj) / sj, mx = (q->max[j] - zj) / sj;
        q->min[j] = (float)mn;
        q->max[j] = (float)mx;
        q->absmax[j] = (float)LLMQ_MAX(fabs(mn), fabs(mx));
        double sum = q->sum[j], sumsq = q->sumsq[j];
        q->sum[j] = (sum - n * zj) / sj;
        q->sumsq[j] = (sumsq - 2.0 * zj * sum + n * zj * zj) / (sj * sj);
        if (q->sumsq[j] < 0) q->sumsq[j] = 0;
        if (zj == 0.0) q->mean_abs[j] = (float)(q->mean_abs[j] / sj);
    }
    for (int j = 0; q->kv_min && j < q->dim; j++) {
        q->kv_min[j] = (q->kv_min[j] - (z ? z[j] : 0.0f)) / s[j];
        q->kv_max[j] = (q->kv_max[j] - (z ? z[j] : 0.0f)) / s[j];
    }
    if (q->kv_keep)
        for (int k = 0; k < n_kv_keep; k++)
            for (int j = 0; j < q->dim; j++) {
                float *v = &q->kv_keep[(size_t)k * q->dim + j];
                *v = (*v - (z ? z[j] : 0.0f)) / s[j];
            }
    if (q->keep)
        for (int k = 0; k < n_keep; k++)
            for (int j = 0; j < q->dim; j++) {
                float *v = &q->keep[(size_t)k * q->dim + j];
                *v = (*v - (z ? z[j] : 0.0f)) / s[j];
            }
    if (z) {
        /* mean |x - z| is not a function of the statistics: estimate it from
         * the token rows, or bound it by the RMS when there are none */
        for (int j = 0; j < q->dim; j++) {
            if (z[j] == 0.0f) continue;
            double a = 0.0;
            if (q->keep && n_keep > 0) {
                for (int k = 0; k < n_keep; k++) a += fabs(q->keep[(size_t)k * q->dim + j]);
                a /= n_keep;
            } else if (n > 0) {
                a = sqrt(q->sumsq[j] / n);
            }
            q->mean_abs[j] = (float)a;
        }
    }
}

int llmq_smooth_stats(const llmq_model *m, const llmq_stats *in, const llmq_smooth_plan *plan, llmq_stats *out,
                      llmq_err *err)
{
    const llmq_config *c = &m->cfg;
    memset(out, 0, sizeof *out);
    int rc = llmq_stats_check_config(in, c, "statistics", err);
    if (rc) return rc;
    out->n_layers = in->n_layers;
    out->lo = 0;
    out->hi = in->n_layers;
    out->n_kv_heads = in->n_kv_heads;
    out->head_dim = in->head_dim;
    out->n_keep = in->n_keep;
    out->n_kv_keep = in->n_kv_keep;
    out->samples = in->samples;
    out->seqlen = in->seqlen;
    out->seed = in->seed;
    out->tokens = in->tokens;
    memcpy(out->text_digest, in->text_digest, sizeof out->text_digest);
    if (!(out->site = llmq_calloc((size_t)in->n_layers * LLMQ_SITE_COUNT, sizeof *out->site, err))) return err->code;
    int maxd = LLMQ_MAX(LLMQ_MAX(c->hidden, c->intermediate), c->n_heads * c->head_dim);
    float *s = llmq_malloc((size_t)maxd * sizeof(float), err), *z = s ? llmq_malloc((size_t)maxd * sizeof(float), err) : NULL;
    if (!z) { free(s); llmq_stats_release(out); return err->code; }
    for (int l = 0; l < in->n_layers && !rc; l++) {
        for (int k = 0; k < LLMQ_SITE_COUNT && !rc; k++)
            rc = copy_site(&out->site[l * LLMQ_SITE_COUNT + k], &in->site[l * LLMQ_SITE_COUNT + k], in->n_kv_heads,
                           in->n_keep, in->n_kv_keep, err);
        if (rc) break;
        const llmq_smooth_pair *P = &plan->p[l * LLMQ_PAIR_COUNT];
        llmq_site_stats *S = &out->site[l * LLMQ_SITE_COUNT];
        affine_site(&S[LLMQ_SITE_QKV], P[LLMQ_PAIR_QKV].scale, NULL, in->n_keep, in->n_kv_keep);
        affine_site(&S[LLMQ_SITE_GATEUP], P[LLMQ_PAIR_GATEUP].scale, NULL, in->n_keep, in->n_kv_keep);
        affine_site(&S[LLMQ_SITE_DOWN], P[LLMQ_PAIR_UPDOWN].scale, NULL, in->n_keep, in->n_kv_keep);
        const llmq_smooth_pair *vo = &P[LLMQ_PAIR_VO];
        affine_site(&S[LLMQ_SITE_V], vo->scale, vo->shift, in->n_keep, in->n_kv_keep);
        for (int ch = 0; ch < S[LLMQ_SITE_O].dim; ch++) {
            s[ch] = vo->scale[vo_map(c, ch)];
            z[ch] = vo->shift ? vo->shift[vo_map(c, ch)] : 0.0f;
        }
        affine_site(&S[LLMQ_SITE_O], s, vo->shift ? z : NULL, in->n_keep, in->n_kv_keep);
        llmq_site_stats *V = &S[LLMQ_SITE_V];
        for (int h = 0; h < in->n_kv_heads; h++) {
            float a = 0.0f;
            for (int j = h * in->head_dim; j < (h + 1) * in->head_dim; j++) a = LLMQ_MAX(a, V->absmax[j]);
            V->head_absmax[h] = a;
        }
    }
    free(s);
    free(z);
    if (rc) llmq_stats_release(out);
    return rc;
}
