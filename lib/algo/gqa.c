/*
 * gqa.c - MHA -> GQA conversion: mean pooling and activation-aware pooling.
 *
 * Activation pooling (derivation in full in doc/gqa-pooling.md).  In one
 * layer, with calibration inputs X (T, H) of the q/k/v projections and
 * X' = [X 1] when the projections carry biases, query head h of the original
 * model outputs O_h = P_h X' W'_h^T where P_h (T, T) are its causal attention
 * probabilities and W'_h = [Wv_h bv_h] (d, H+1) its value projection.  After
 * pooling, the heads h of group g share one W'_g.  Keeping P_h fixed, the
 * attention-output error
 *       E(W'_g) = sum_{s, h in g} || P_h X' W'_g^T - O_h ||_F^2
 * is quadratic in W'_g: with A_h = P_h X' (rows of P sum to one, so the bias
 * column of A_h stays all ones) the normal equations are
 *       (sum_h A_h^T A_h) W'_g^T = sum_h A_h^T O_h,
 * a weighted least squares whose weights are the attention probabilities:
 * tokens a query attends to strongly count more.  Against overfitting a
 * few windows the solution is shrunk toward mean pooling (ridge lam toward
 * W'_mean), lam picked by the error on held-out windows (every fourth),
 * lam = inf (mean pooling itself) included; Cholesky in double (LAPACK).
 *
 * K enters through the softmax, so there is no closed form: starting from
 * the mean-pooled K we take k_steps Adam steps on
 *       E_K(Wk_g) = sum || softmax(Q_h K_g^T / sqrt d) V_g - O_h ||^2 / sum ||O_h||^2
 * with V_g the least-squares values, backpropagating through the causal
 * softmax and RoPE (lib/train/ops.c), on the fitting windows; the iterate
 * with the lowest held-out error is kept.  Then V is solved again with the
 * new probabilities P_h(K_g) (same normal equations, O_h the original
 * outputs as targets) and kept if the held-out error drops.  A layer that
 * does not beat mean pooling on held-out windows keeps mean pooling.
 * Full derivation: doc/gqa-pooling.md.
 */
#include <math.h>
#include <cblas.h>
#include "gqa.h"

int llmq_gqa_check(const llmq_config *c, int G, llmq_err *err)
{
    if (G < 1 || c->n_heads % G)
        return llmq_errorf(err, LLMQ_EUSAGE, "--kv-heads %d must divide the model's %d query heads", G, c->n_heads);
    if (G > c->n_kv_heads || c->n_kv_heads % G)
        return llmq_errorf(err, LLMQ_EUSAGE, "--kv-heads %d must divide the model's %d key-value heads", G, c->n_kv_heads);
    return LLMQ_OK;
}

/* Average groups of `per` consecutive heads of rows hd each: W (src*hd, cols) -> (G*hd, cols). */
static float *pool_rows(const float *W, int src, int G, int hd, int64_t cols, llmq_err *err)
{
    int per = src / G;
    float *out = llmq_alloc_aligned((size_t)G * hd * cols * sizeof(float) + 64, err);
    if (!out) return NULL;
    for (int g = 0; g < G; g++)
        for (int r = 0; r < hd; r++) {
            float *o = out + ((size_t)g * hd + r) * cols;
            for (int64_t i = 0; i < cols; i++) {
                float s = 0.0f;
                for (int k = 0; k < per; k++) s += W[(((size_t)g * per + k) * hd + r) * cols + i];
                o[i] = s / (float)per;
            }
        }
    return out;
}

int llmq_gqa_pool_mean(llmq_tmodel *tm, int G, llmq_err *err)
{
    llmq_config *c = &tm->cfg;
    int rc = llmq_gqa_check(c, G, err);
    if (rc) return rc;
    if (G == c->n_kv_heads) return LLMQ_OK;
    for (int l = 0; l < c->n_layers; l++) {
        const llmq_tlayer *L = &tm->L[l];
        int ids[4] = { L->w[LLMQ_LIN_K], L->w[LLMQ_LIN_V], L->b[LLMQ_LIN_K], L->b[LLMQ_LIN_V] };
        for (int k = 0; k < 4; k++) {
            if (ids[k] < 0) continue;
            llmq_tparam *p = &tm->p[ids[k]];
            int64_t cols = p->ndim == 2 ? p->shape[1] : 1;
            float *nw = pool_rows(p->w, c->n_kv_heads, G, c->head_dim, cols, err);
            if (!nw) return err->code;
            int train = p->train;
            llmq_tmodel_replace(tm, ids[k], nw, p->ndim, (int64_t)G * c->head_dim, cols);
            tm->p[ids[k]].train = train;
        }
    }
    c->n_kv_heads = G;
    /* restore gradient buffers of trainable parameters that were replaced */
    for (int i = 0; i < tm->n_params; i++) {
        llmq_tparam *p = &tm->p[i];
        if (p->train && !p->g &&
            (!(p->g = llmq_calloc(p->n, sizeof(float), err)) || !(p->m = llmq_calloc(p->n, sizeof(float), err)) ||
             !(p->v = llmq_calloc(p->n, sizeof(float), err))))
            return err->code;
    }
    return LLMQ_OK;
}

/* ---- calibration inputs ---- */

typedef struct {
    llmq_gqa_calib *c;
    int64_t row;         /* first row of the current sequence */
} collect_ctx;

static void collect_obs(void *ctx, int layer, llmq_site site, const float *x, int64_t n, int64_t dim)
{
    collect_ctx *cc = ctx;
    if (site != LLMQ_SITE_QKV || dim != cc->c->hidden) return;
    memcpy(cc->c->X[layer] + (size_t)cc->row * dim, x, (size_t)n * dim * sizeof(float));
}

void llmq_gqa_calib_release(llmq_gqa_calib *c)
{
    if (c->X)
        for (int l = 0; l < c->n_layers; l++) free(c->X[l]);
    free(c->X);
    memset(c, 0, sizeof *c);
}

int llmq_gqa_collect(const llmq_model *m, llmq_pool *pool, const int32_t *tokens, int n_seq, int T,
                     llmq_gqa_calib *out, llmq_err *err)
{
    memset(out, 0, sizeof *out);
    const llmq_config *c = &m->cfg;
    out->n_layers = c->n_layers;
    out->n_seq = n_seq;
    out->T = T;
    out->hidden = c->hidden;
    if (!(out->X = llmq_calloc((size_t)c->n_layers, sizeof(float *), err))) return err->code;
    size_t n;
    if (llmq_mul_ovf_size((size_t)n_seq * (size_t)T, (size_t)c->hidden * sizeof(float), &n)) {
        llmq_gqa_calib_release(out);
        return llmq_errorf(err, LLMQ_ENOMEM, "calibration activations overflow");
    }
    for (int l = 0; l < c->n_layers; l++)
        if (!(out->X[l] = llmq_alloc_aligned(n + 64, err))) { llmq_gqa_calib_release(out); return err->code; }
    llmq_runner *r = NULL;
    int rc = llmq_runner_new(&r, m, T, pool, err);
    collect_ctx cc = { out, 0 };
    if (!rc) llmq_runner_observe(r, collect_obs, &cc);
    for (int s = 0; !rc && s < n_seq; s++) {
        cc.row = (int64_t)s * T;
        rc = llmq_runner_forward(r, tokens + (size_t)s * T, T, 0, NULL, 0, err);
    }
    llmq_runner_free(r);
    if (rc) llmq_gqa_calib_release(out);
    return rc;
}

void llmq_gqa_opts_default(llmq_gqa_opts *o)
{
    memset(o, 0, sizeof *o);
    o->k_steps = LLMQ_GQA_K_STEPS_DEFAULT;
    o->k_lr = 0.02f;
    o->ridge = 1e-4f;
}

void llmq_gqa_report_release(llmq_gqa_report *r)
{
    free(r->err_mean);
    free(r->err_act);
    memset(r, 0, sizeof *r);
}

/* ---- one layer ---- */

typedef struct {
    int T, H, hd, nh, G;
    int H1;              /* H + 1 with biases, else H */
    const float *cs, *sn;
    float *A, *P, *O, *K, *V, *dO, *dK, *dV, *scr;   /* scratch */
} layer_ws;

/* K (T, G*hd) = rope(X Wk^T + bk), V (T, G*hd) = X Wv^T + bv. */
static void kv_project(layer_ws *w, const float *X, const float *Wk, const float *bk, const float *Wv, const float *bv,
                       float *K, float *V)
{
    llmq_op_linear_fwd(X, Wk, bk, w->T, w->H, w->G * w->hd, K);
    llmq_op_rope_fwd(K, w->T, w->G, w->hd, w->cs, w->sn);
    if (V) llmq_op_linear_fwd(X, Wv, bv, w->T, w->H, w->G * w->hd, V);
}

/* sum_h ||P_h X' W'^T - Oref_h||^2 for one sequence given P (nh, T, T) and
 * accumulation of the normal equations C (G, H1, H1), B (G, H1, hd). */
static void accumulate_ls(layer_ws *w, const float *X, const float *P, const float *Oref, float *C, float *B)
{
    int T = w->T, H = w->H, H1 = w->H1, hd = w->hd, qd = w->nh * hd, per = w->nh / w->G;
    for (int h = 0; h < w->nh; h++) {
        int g = h / per;
        const float *Ph = P + (size_t)h * T * T;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, H, T, 1.0f, Ph, T, X, H, 0.0f, w->A, H1);
        if (H1 > H)
            for (int t = 0; t < T; t++) {
                float s = 0.0f;
                for (int u = 0; u <= t; u++) s += Ph[(size_t)t * T + u];
                w->A[(size_t)t * H1 + H] = s;
            }
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, H1, T, 1.0f, w->A, H1, 1.0f, C + (size_t)g * H1 * H1, H1);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, H1, hd, T, 1.0f, w->A, H1, Oref + (size_t)h * hd, qd,
                    1.0f, B + (size_t)g * H1 * hd, hd);
    }
}


/* LAPACK (in OpenBLAS): Cholesky factor and solve. */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
extern void dpotrs_(const char *uplo, const int *n, const int *nrhs, const double *a, const int *lda,
                    double *b, const int *ldb, int *info);

/* X (n, m) = (C + lam I)^-1 (B + lam X0), C (n, n) symmetric with its upper
 * triangle filled (row-major), B and X0 (n, m) row-major, all in double.
 * Returns 0, or -1 when the system is not positive definite. */
static int ridge_solve(const double *C, const double *B, const double *X0, double lam, int n, int m, double *X,
                       double *work)
{
    double *A = work, *R = work + (size_t)n * n;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            A[(size_t)i * n + j] = (j >= i ? C[(size_t)i * n + j] : C[(size_t)j * n + i]) + (i == j ? lam : 0.0);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < m; c++) R[(size_t)c * n + i] = B[(size_t)i * m + c] + lam * X0[(size_t)i * m + c];
    int info = 0;
    dpotrf_("U", &n, A, &n, &info);
    if (info) return -1;
    dpotrs_("U", &n, &m, A, &n, R, &n, &info);
    if (info) return -1;
    for (int i = 0; i < n; i++)
        for (int c = 0; c < m; c++) X[(size_t)i * m + c] = R[(size_t)c * n + i];
    return 0;
}

/* sum_c x_c^T C x_c - 2 x_c^T b_c: the least-squares error up to a constant. */
static double quad_err(const double *C, const double *B, const double *X, int n, int m)
{
    double e = 0.0;
    for (int c = 0; c < m; c++)
        for (int i = 0; i < n; i++) {
            double xi = X[(size_t)i * m + c], s = 0.0;
            for (int j = 0; j < n; j++) s += (j >= i ? C[(size_t)i * n + j] : C[(size_t)j * n + i]) * X[(size_t)j * m + c];
            e += xi * s - 2.0 * xi * B[(size_t)i * m + c];
        }
    return e;
}

/* Windows are split for model selection: every fourth (or the last of
 * two or three) is held out; with one window it serves both. */
enum { SET_FIT = 0, SET_HELD = 1, SET_ALL = 2 };
static int in_set(int s, int n, int set)
{
    if (set == SET_ALL || n < 2) return 1;
    int held = (s % 4 == 3) || (n < 4 && s == n - 1);
    return set == SET_HELD ? held : !held;
}

typedef struct {
    const llmq_gqa_calib *cal;
    int l, src;                 /* layer, KV heads of the original */
    const float *wk0, *bk0;     /* the original K projection */
    const float *Q, *Oref;      /* (n_seq, T, qd) */
    double onorm[3];            /* sum ||Oref||^2 per set */
} layer_data;

/* Relative output error of (Wk, bk, Wv, bv) on one set of windows; with
 * dWk non-NULL also its gradient with respect to Wk and bk (overwritten). */
static double layer_error(layer_ws *w, const layer_data *d, int set, const float *Wk, const float *bk,
                          const float *Wv, const float *bv, float *dWk, float *dbk)
{
    int T = w->T, H = w->H, qd = w->nh * w->hd, kvd = w->G * w->hd, n = d->cal->n_seq;
    llmq_attn_shape as = { T, w->nh, w->G, w->hd, 0 };
    double e = 0.0, on = d->onorm[set] > 0 ? d->onorm[set] : 1.0;
    if (dWk) memset(dWk, 0, (size_t)kvd * H * sizeof(float));
    if (dbk) memset(dbk, 0, (size_t)kvd * sizeof(float));
    for (int s = 0; s < n; s++) {
        if (!in_set(s, n, set)) continue;
        const float *X = d->cal->X[d->l] + (size_t)s * T * H;
        const float *Q = d->Q + (size_t)s * T * qd, *Oref = d->Oref + (size_t)s * T * qd;
        kv_project(w, X, Wk, bk, Wv, bv, w->K, w->V);
        llmq_op_attn_fwd(&as, Q, w->K, w->V, w->P, w->O);
        for (size_t i = 0; i < (size_t)T * qd; i++) {
            double diff = (double)w->O[i] - Oref[i];
            e += diff * diff;
            w->dO[i] = (float)(2.0 * diff / on);
        }
        if (!dWk) continue;
        llmq_op_attn_bwd(&as, Q, w->K, w->V, w->P, w->dO, NULL, w->dK, w->dV, w->scr);
        llmq_op_rope_bwd(w->dK, T, w->G, w->hd, w->cs, w->sn);
        llmq_op_linear_bwd(X, Wk, w->dK, T, H, kvd, NULL, 0, dWk, dbk);
    }
    return e / on;
}

/* Least-squares V for the attention probabilities of the pooled K (Wk, bk),
 * or of the original model when Wk is NULL.  The normal equations are
 * accumulated separately on the fitting and the held-out windows; the
 * solution is shrunk towards the mean-pooled V (Wm, bm) with the ridge
 * lam * mean(diag C) picked from a grid by held-out error, mean pooling
 * itself (lam = inf) included; the pick is then refit on all windows. */
typedef struct { float *C[2], *B[2]; double *Cd, *Bd, *X0, *X, *work; } ls_bufs;

static int solve_v(layer_ws *w, const layer_data *d, const float *Wk, const float *bk, const float *Wm, const float *bm,
                   float *Wv, float *bv, ls_bufs *lb)
{
    int T = w->T, H = w->H, H1 = w->H1, hd = w->hd, G = w->G, nh = w->nh, n = d->cal->n_seq;
    int qd = nh * hd, kvs = d->src * hd;
    size_t CC = (size_t)H1 * H1, BB = (size_t)H1 * hd;
    for (int k = 0; k < 2; k++) {
        memset(lb->C[k], 0, (size_t)G * CC * sizeof(float));
        memset(lb->B[k], 0, (size_t)G * BB * sizeof(float));
    }
    llmq_attn_shape as = { T, nh, Wk ? G : d->src, hd, 0 };
    for (int s = 0; s < n; s++) {
        const float *X = d->cal->X[d->l] + (size_t)s * T * H;
        const float *Q = d->Q + (size_t)s * T * qd;
        if (Wk) kv_project(w, X, Wk, bk, NULL, NULL, w->K, NULL);
        else {
            llmq_op_linear_fwd(X, d->wk0, d->bk0, T, H, kvs, w->K);
            llmq_op_rope_fwd(w->K, T, d->src, hd, w->cs, w->sn);
        }
        memset(w->V, 0, (size_t)T * (Wk ? G * hd : kvs) * sizeof(float));
        llmq_op_attn_fwd(&as, Q, w->K, w->V, w->P, w->O);      /* probabilities only */
        int held = in_set(s, n, SET_HELD), fit = in_set(s, n, SET_FIT);
        const float *Os = d->Oref + (size_t)s * T * qd;
        if (fit) accumulate_ls(w, X, w->P, Os, lb->C[0], lb->B[0]);
        if (held && !fit) accumulate_ls(w, X, w->P, Os, lb->C[1], lb->B[1]);
        else if (held) {   /* one window: it is both */
            memcpy(lb->C[1], lb->C[0], (size_t)G * CC * sizeof(float));
            memcpy(lb->B[1], lb->B[0], (size_t)G * BB * sizeof(float));
        }
    }
    static const double grid[] = { 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0 };
    double *Cf = lb->Cd, *Ch = lb->Cd + CC, *Bf = lb->Bd, *Bh = lb->Bd + BB;
    for (int g = 0; g < G; g++) {
        for (size_t i = 0; i < CC; i++) { Cf[i] = lb->C[0][g * CC + i]; Ch[i] = lb->C[1][g * CC + i]; }
        for (size_t i = 0; i < BB; i++) { Bf[i] = lb->B[0][g * BB + i]; Bh[i] = lb->B[1][g * BB + i]; }
        for (int j = 0; j < hd; j++) {
            for (int i = 0; i < H; i++) lb->X0[(size_t)i * hd + j] = Wm[((size_t)g * hd + j) * H + i];
            if (H1 > H) lb->X0[(size_t)H * hd + j] = bm ? bm[(size_t)g * hd + j] : 0.0;
        }
        double md = 0.0;
        for (int i = 0; i < H1; i++) md += Cf[(size_t)i * H1 + i];
        md = md / H1 + 1e-30;
        double best = quad_err(Ch, Bh, lb->X0, H1, hd), pick = -1.0;
        for (size_t k = 0; k < LLMQ_ARRAY_LEN(grid); k++) {
            if (ridge_solve(Cf, Bf, lb->X0, grid[k] * md, H1, hd, lb->X, lb->work)) continue;
            double e = quad_err(Ch, Bh, lb->X, H1, hd);
            if (e < best) { best = e; pick = grid[k]; }
        }
        if (pick > 0) {
            /* refit on all windows with the picked shrinkage */
            int one = n < 2;
            for (size_t i = 0; i < CC; i++) Cf[i] += one ? 0.0 : Ch[i];
            for (size_t i = 0; i < BB; i++) Bf[i] += one ? 0.0 : Bh[i];
            double mda = 0.0;
            for (int i = 0; i < H1; i++) mda += Cf[(size_t)i * H1 + i];
            mda = mda / H1 + 1e-30;
            if (ridge_solve(Cf, Bf, lb->X0, pick * mda, H1, hd, lb->X, lb->work)) return -1;
        } else {
            memcpy(lb->X, lb->X0, BB * sizeof(double));
        }
        for (int j = 0; j < hd; j++) {
            for (int i = 0; i < H; i++) Wv[((size_t)g * hd + j) * H + i] = (float)lb->X[(size_t)i * hd + j];
            if (bv) bv[(size_t)g * hd + j] = H1 > H ? (float)lb->X[(size_t)H * hd + j] : 0.0f;
        }
    }
    return 0;
}

int llmq_gqa_pool_activation(llmq_tmodel *tm, int G, const llmq_gqa_calib *cal, const llmq_gqa_opts *o,
                             llmq_gqa_report *rep, llmq_err *err)
{
    llmq_config *c = &tm->cfg;
    int rc = llmq_gqa_check(c, G, err);
    if (rc) return rc;
    if (cal->n_layers != c->n_layers || cal->hidden != c->hidden || cal->n_seq < 1 || cal->T < 1)
        return LLMQ_BUG(err, "calibration set does not fit the model");
    if (rep) {
        memset(rep, 0, sizeof *rep);
        rep->n_layers = c->n_layers;
        if (!(rep->err_mean = llmq_calloc((size_t)c->n_layers, sizeof(double), err)) ||
            !(rep->err_act = llmq_calloc((size_t)c->n_layers, sizeof(double), err)))
            return llmq_gqa_report_release(rep), err->code;
    }
    int T = cal->T, H = c->hidden, hd = c->head_dim, nh = c->n_heads, src = c->n_kv_heads, n = cal->n_seq;
    int qd = nh * hd, kvs = src * hd, kvd = G * hd;
    int has_b = tm->L[0].b[LLMQ_LIN_V] >= 0;
    int H1 = H + has_b;
    size_t NT = (size_t)n * T;
    layer_ws w;
    memset(&w, 0, sizeof w);
    w.T = T; w.H = H; w.hd = hd; w.nh = nh; w.G = G; w.H1 = H1;
    void *bufs[40] = { 0 };
    int nb = 0;
    float *Wk = NULL, *Wv = NULL, *bk = NULL, *bv = NULL, *Wm = NULL, *bm = NULL, *Km = NULL, *kbm = NULL;
#define ALLOC(p, bytes) do { if (!((p) = bufs[nb++] = llmq_alloc_aligned((size_t)(bytes) + 64, err))) goto fail; } while (0)
#define FL(k) ((size_t)(k) * sizeof(float))
#define DB(k) ((size_t)(k) * sizeof(double))
    float *cs, *sn, *Q, *Oref, *Korig, *Vorig, *gW, *gb, *mW, *vW, *mb, *vb, *bestW, *bestb, *Wv2, *bv2;
    ls_bufs lb;
    ALLOC(cs, FL((size_t)T * hd / 2)); ALLOC(sn, FL((size_t)T * hd / 2));
    ALLOC(Q, FL(NT * qd)); ALLOC(Oref, FL(NT * qd));
    ALLOC(Korig, FL((size_t)T * kvs)); ALLOC(Vorig, FL((size_t)T * kvs));
    for (int k = 0; k < 2; k++) { ALLOC(lb.C[k], FL((size_t)G * H1 * H1)); ALLOC(lb.B[k], FL((size_t)G * H1 * hd)); }
    ALLOC(lb.Cd, DB(2 * (size_t)H1 * H1)); ALLOC(lb.Bd, DB(2 * (size_t)H1 * hd));
    ALLOC(lb.X0, DB((size_t)H1 * hd)); ALLOC(lb.X, DB((size_t)H1 * hd)); ALLOC(lb.work, DB((size_t)H1 * H1 + (size_t)H1 * hd));
    ALLOC(w.A, FL((size_t)T * H1)); ALLOC(w.P, FL((size_t)nh * T * T)); ALLOC(w.O, FL((size_t)T * qd));
    ALLOC(w.K, FL((size_t)T * LLMQ_MAX(kvs, kvd))); ALLOC(w.V, FL((size_t)T * LLMQ_MAX(kvs, kvd)));
    ALLOC(w.dO, FL((size_t)T * qd)); ALLOC(w.dK, FL((size_t)T * kvd)); ALLOC(w.dV, FL((size_t)T * kvd)); ALLOC(w.scr, FL((size_t)T * T));
    ALLOC(gW, FL((size_t)kvd * H)); ALLOC(mW, FL((size_t)kvd * H)); ALLOC(vW, FL((size_t)kvd * H)); ALLOC(bestW, FL((size_t)kvd * H));
    ALLOC(Wv2, FL((size_t)kvd * H));
    ALLOC(gb, FL(kvd)); ALLOC(mb, FL(kvd)); ALLOC(vb, FL(kvd)); ALLOC(bestb, FL(kvd)); ALLOC(bv2, FL(kvd));
#undef ALLOC
    llmq_op_rope_tables(T, hd, c, cs, sn);
    w.cs = cs;
    w.sn = sn;
    for (int l = 0; l < c->n_layers; l++) {
        llmq_tlayer *L = &tm->L[l];
        const float *wq = tm->p[L->w[LLMQ_LIN_Q]].w, *bq = L->b[LLMQ_LIN_Q] >= 0 ? tm->p[L->b[LLMQ_LIN_Q]].w : NULL;
        const float *wk0 = tm->p[L->w[LLMQ_LIN_K]].w, *bk0 = L->b[LLMQ_LIN_K] >= 0 ? tm->p[L->b[LLMQ_LIN_K]].w : NULL;
        const float *wv0 = tm->p[L->w[LLMQ_LIN_V]].w, *bv0 = L->b[LLMQ_LIN_V] >= 0 ? tm->p[L->b[LLMQ_LIN_V]].w : NULL;
        /* the original layer's queries and attention outputs */
        llmq_attn_shape as0 = { T, nh, src, hd, 0 };
        layer_data d = { cal, l, src, wk0, bk0, Q, Oref, { 0, 0, 0 } };
        for (int s = 0; s < n; s++) {
            const float *X = cal->X[l] + (size_t)s * T * H;
            float *Qs = Q + (size_t)s * T * qd, *Os = Oref + (size_t)s * T * qd;
            llmq_op_linear_fwd(X, wq, bq, T, H, qd, Qs);
            llmq_op_rope_fwd(Qs, T, nh, hd, cs, sn);
            llmq_op_linear_fwd(X, wk0, bk0, T, H, kvs, Korig);
            llmq_op_rope_fwd(Korig, T, src, hd, cs, sn);
            llmq_op_linear_fwd(X, wv0, bv0, T, H, kvs, Vorig);
            llmq_op_attn_fwd(&as0, Qs, Korig, Vorig, w.P, Os);
            double on = 0.0;
            for (size_t i = 0; i < (size_t)T * qd; i++) on += (double)Os[i] * Os[i];
            for (int set = 0; set < 3; set++)
                if (in_set(s, n, set)) d.onorm[set] += on;
        }
        /* mean pooling: the starting point, the shrinkage target and the baseline */
        Wk = pool_rows(wk0, src, G, hd, H, err);
        Wv = Wk ? pool_rows(wv0, src, G, hd, H, err) : NULL;
        Wm = Wv ? pool_rows(wv0, src, G, hd, H, err) : NULL;
        Km = Wm ? pool_rows(wk0, src, G, hd, H, err) : NULL;
        if (!Km) goto fail_l;
        if (bk0 && (!(bk = pool_rows(bk0, src, G, hd, 1, err)) || !(kbm = pool_rows(bk0, src, G, hd, 1, err)))) goto fail_l;
        if (bv0 && (!(bv = pool_rows(bv0, src, G, hd, 1, err)) || !(bm = pool_rows(bv0, src, G, hd, 1, err)))) goto fail_l;
        double e_mean = layer_error(&w, &d, SET_HELD, Wk, bk, Wv, bv, NULL, NULL);
        /* V from the original attention probabilities */
        if (solve_v(&w, &d, NULL, NULL, Wm, bm, Wv, bv, &lb)) goto singular;
        /* K: Adam on the fitting windows, the best iterate on the held-out ones */
        double best = layer_error(&w, &d, SET_HELD, Wk, bk, Wv, bv, NULL, NULL);
        memcpy(bestW, Wk, FL((size_t)kvd * H));
        if (bk) memcpy(bestb, bk, FL(kvd));
        if (o->k_steps > 0) {
            double rms = 0.0;
            for (size_t i = 0; i < (size_t)kvd * H; i++) rms += (double)Wk[i] * Wk[i];
            rms = sqrt(rms / ((double)kvd * H));
            llmq_adamw ad = { (float)(o->k_lr * rms), 0.9f, 0.99f, 1e-12f, 0.0f };
            memset(mW, 0, FL((size_t)kvd * H)); memset(vW, 0, FL((size_t)kvd * H));
            memset(mb, 0, FL(kvd)); memset(vb, 0, FL(kvd));
            for (int it = 1; it <= o->k_steps; it++) {
                layer_error(&w, &d, SET_FIT, Wk, bk, Wv, bv, gW, bk ? gb : NULL);
                llmq_adamw_step(&ad, it, Wk, gW, mW, vW, (size_t)kvd * H);
                if (bk) llmq_adamw_step(&ad, it, bk, gb, mb, vb, (size_t)kvd);
                double e = layer_error(&w, &d, SET_HELD, Wk, bk, Wv, bv, NULL, NULL);
                if (e < best) {
                    best = e;
                    memcpy(bestW, Wk, FL((size_t)kvd * H));
                    if (bk) memcpy(bestb, bk, FL(kvd));
                }
            }
            memcpy(Wk, bestW, FL((size_t)kvd * H));
            if (bk) memcpy(bk, bestb, FL(kvd));
            /* V again for the probabilities of the new K; kept if better */
            if (solve_v(&w, &d, Wk, bk, Wm, bm, Wv2, bv ? bv2 : NULL, &lb) == 0) {
                double e2 = layer_error(&w, &d, SET_HELD, Wk, bk, Wv2, bv ? bv2 : NULL, NULL, NULL);
                if (e2 < best) {
                    best = e2;
                    memcpy(Wv, Wv2, FL((size_t)kvd * H));
                    if (bv) memcpy(bv, bv2, FL(kvd));
                }
            }
        }
        if (best > e_mean) {   /* never worse than the paper's pooling on held-out windows */
            memcpy(Wk, Km, FL((size_t)kvd * H));
            memcpy(Wv, Wm, FL((size_t)kvd * H));
            if (bk) memcpy(bk, kbm, FL(kvd));
            if (bv) memcpy(bv, bm, FL(kvd));
            best = e_mean;
        }
        if (rep) { rep->err_mean[l] = e_mean; rep->err_act[l] = best; }
        int keep[4] = { L->w[LLMQ_LIN_K], L->w[LLMQ_LIN_V], L->b[LLMQ_LIN_K], L->b[LLMQ_LIN_V] };
        float *nw[4] = { Wk, Wv, bk, bv };
        for (int k = 0; k < 4; k++) {
            if (keep[k] < 0) continue;
            int train = tm->p[keep[k]].train;
            llmq_tmodel_replace(tm, keep[k], nw[k], k < 2 ? 2 : 1, kvd, k < 2 ? H : 1);
            tm->p[keep[k]].train = train;
        }
        Wk = Wv = bk = bv = NULL;
        free(Wm); free(bm); free(Km); free(kbm);
        Wm = bm = Km = kbm = NULL;
        if (o->progress) o->progress(o->progress_ctx, l + 1, c->n_layers);
        continue;
singular:
        llmq_errorf(err, LLMQ_ENONFINITE, "layer %d: the value least-squares system is singular", l);
        goto fail_l;
    }
    c->n_kv_heads = G;
    for (int i = 0; i < tm->n_params; i++) {
        llmq_tparam *p = &tm->p[i];
        if (p->train && !p->g &&
            (!(p->g = llmq_calloc(p->n, sizeof(float), err)) || !(p->m = llmq_calloc(p->n, sizeof(float), err)) ||
             !(p->v = llmq_calloc(p->n, sizeof(float), err)))) {
            rc = err->code;
            goto out;
        }
    }
    rc = LLMQ_OK;
    goto out;
fail_l:
fail:
    rc = err->code ? err->code : LLMQ_ENOMEM;
    if (rep) llmq_gqa_report_release(rep);
out:
    free(Wk); free(Wv); free(bk); free(bv); free(Wm); free(bm); free(Km); free(kbm);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    return rc;
#undef FL
#undef DB
}
