/* gptq.c - error-compensating rounding onto a fixed int4/int3 or block-format grid (gptq.h). */
#include <math.h>
#include <cblas.h>
#include "gptq.h"
#include "../quant/quant.h"

/* LAPACK (in OpenBLAS): Cholesky factor and inverse from it. */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
extern void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info);

#define BLOCK 128      /* columns rounded before their errors reach the rest at once */

/* H (i, j) of the permuted order, i <= j or not: the upper triangle of gram */
static inline double h_at(const double *gram, int64_t n, double count, const float *col_div, const int32_t *perm,
                          int64_t i, int64_t j)
{
    int64_t a = perm ? perm[i] : i, b = perm ? perm[j] : j;
    if (a > b) { int64_t t = a; a = b; b = t; }
    double v = gram[a * n + b] / count;
    if (col_div) v /= (double)col_div[a] * col_div[b];
    return v;
}

/* U (n, n) row-major upper triangular with U^T U = H^-1, H = gram / count
 * scaled by col_div, dead inputs (zero diagonal) set to 1 and damp * mean
 * diagonal added.  A failed factorization raises the damping tenfold, up to
 * three times.  Returns 0 with the damping used, or -1. */
static int inverse_factor(const double *gram, int64_t n, double count, const float *col_div, const int32_t *perm,
                          double damp, double *a, float *U, double *damp_used)
{
    int ni = (int)n, info = 0;
    double mean = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = h_at(gram, n, count, col_div, NULL, i, i);
        mean += d > 0.0 ? d : 1.0;
    }
    mean /= (double)n;
    if (!isfinite(mean)) return -1;
    for (int tries = 0; tries < 4; tries++, damp *= 10.0) {
        /* row-major upper = column-major lower; the matrix is symmetric so
         * fill both and let LAPACK read "U" */
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = i; j < n; j++) {
                double v = h_at(gram, n, count, col_div, perm, i, j);
                if (i == j) v = (v > 0.0 ? v : 1.0) + damp * mean;
                a[i * n + j] = a[j * n + i] = v;
            }
        dpotrf_("U", &ni, a, &ni, &info);
        if (info) continue;
        dpotri_("U", &ni, a, &ni, &info);          /* upper triangle of H^-1 */
        if (info) continue;
        for (int64_t j = 0; j < n; j++)            /* column-major: (i, j) at a[j * n + i] */
            for (int64_t i = j + 1; i < n; i++) a[j * n + i] = a[i * n + j];
        dpotrf_("U", &ni, a, &ni, &info);          /* H^-1 = U^T U */
        if (info) continue;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) U[i * n + j] = j >= i ? (float)a[j * n + i] : 0.0f;
        *damp_used = damp;
        return 0;
    }
    return -1;
}

typedef struct { double key; int32_t col; } keyed;

static int cmp_desc(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    return x->key > y->key ? -1 : x->key < y->key ? 1 : (x->col > y->col) - (x->col < y->col);   /* ties: column order */
}

struct job {
    const llmq_gptq_cfg *q;
    float *w;
    int64_t rows, cols;
    const float *U, *clip;
    const int32_t *perm;      /* column i of U is the weights' column perm[i]; NULL = identity */
    uint8_t *codes;
    uint16_t *scales;
    uint8_t *zeros;
    uint8_t *bscales;         /* block formats: scale bytes (rows, cols / group); else NULL */
    llmq_wtype btype;         /* block formats: the format, its scale rule and NV tensor scale */
    llmq_mx_rule rule;
    float tscale;
    float *deq;
    float *scratch;           /* per thread: BLOCK * rows_per + cols */
    size_t per;
    double *loss;             /* per thread */
};

static inline int code_of(double x, float sf, int z, int lo, int hi)
{
    double q = sf > 0.0f ? nearbyint(x / sf) + z : z;
    return !(q >= lo) ? lo : q > hi ? hi : (int)q;     /* a NaN becomes lo, never undefined behaviour */
}

static void worker(void *ctx, int ti, int nt)
{
    struct job *j = ctx;
    const llmq_gptq_cfg *q = j->q;
    int64_t cols = j->cols, G = q->group, ng = cols / G, lo_r, hi_r;
    llmq_split(j->rows, ti, nt, 1, &lo_r, &hi_r);
    int64_t nr = hi_r - lo_r;
    if (nr <= 0) return;
    float *E = j->scratch + (size_t)ti * j->per;        /* (nr, BLOCK) scaled errors */
    float *row = E + (size_t)nr * BLOCK;                /* (cols) */
    int maxq = q->sym ? (1 << (q->bits - 1)) - 1 : (1 << q->bits) - 1;
    /* symmetric 4-bit: code 0 (-8) is on the grid too, as in ggml's Q4_0
     * (round to nearest leaves it unused; every reader takes it) */
    int lo = q->sym ? LLMQ_Q4_ZERO_SYM - maxq - (q->bits == 4) : 0, hi = q->sym ? LLMQ_Q4_ZERO_SYM + maxq : maxq;
    const llmq_wtype bt = j->btype;
    const int four = !j->bscales || llmq_wtype_is_block4(bt);
    const int64_t rb = four ? cols / 2 : cols;     /* code bytes per row */
    /* the grid: round to nearest of the clipped row, as the packer would */
    for (int64_t r = lo_r; r < hi_r; r++) {
        const float *w = j->w + r * cols;
        for (int64_t c = 0; c < cols; c++) row[c] = w[c];
        if (j->clip) llmq_q4_clip_row(row, cols, (int)G, j->clip + 2 * r * ng);
        uint8_t *cd = j->codes + r * rb, *zr = q->sym || j->bscales ? NULL : j->zeros + r * ng;
        if (j->bscales) {
            llmq_block_quantize_row(bt, row, cols, j->rule, j->tscale, cd, j->bscales + r * ng);
        } else {
            uint16_t *sc = j->scales + r * ng;
            (q->bits == 3 ? llmq_q3_quantize_row : llmq_q4_quantize_row)(row, cols, (int)G, q->sym, NULL, cd, sc, zr);
        }
        if (j->perm) {      /* the working row in the order columns are rounded */
            float *wr = j->w + r * cols;
            for (int64_t c = 0; c < cols; c++) row[c] = wr[j->perm[c]];
            memcpy(wr, row, (size_t)cols * sizeof(float));
        }
    }
    /* the scaled errors e_i = (w_i - q_i) / U_ii, squared and summed,
     * are (W - Q) H (W - Q)^T of the damped H (the OBS identity) */
    double l_q = 0.0;
    for (int64_t b0 = 0; b0 < cols; b0 += BLOCK) {
        int64_t b1 = LLMQ_MIN(cols, b0 + BLOCK), nb = b1 - b0;
        for (int64_t r = lo_r; r < hi_r; r++) {
            float *w = j->w + r * cols, *e = E + (size_t)(r - lo_r) * BLOCK;
            uint8_t *cd = j->codes + r * rb;
            for (int64_t i = b0; i < b1; i++) {
                int64_t oc = j->perm ? j->perm[i] : i, g = oc / G;
                float dq;
                if (j->bscales) {
                    float d = llmq_block_factor(bt, j->bscales[r * ng + g], j->tscale);
                    uint8_t c = d > 0.0f ? llmq_block_code(bt, (double)w[i] / (double)d) : 0;
                    if (four) llmq_q4_put_code(cd, oc, c);
                    else cd[oc] = c;
                    dq = llmq_block_value(bt, c) * d;
                } else {
                    float sf = llmq_f16_to_f32(j->scales[r * ng + g]);
                    int z = q->sym ? LLMQ_Q4_ZERO_SYM : j->zeros[r * ng + g];
                    int c = code_of(w[i], sf, z, lo, hi);
                    llmq_q4_put_code(cd, oc, c);
                    dq = (float)(c - z) * sf;
                }
                if (j->deq) j->deq[r * cols + oc] = dq;
                const float *u = j->U + i * cols;
                float ei = (w[i] - dq) / u[i];
                l_q += (double)ei * ei;
                e[i - b0] = ei;
                for (int64_t k = i + 1; k < b1; k++) w[k] -= ei * u[k];
            }
        }
        if (b1 < cols)      /* W[:, b1:] -= E (nr, nb) U[b0:b1, b1:] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)(cols - b1), (int)nb, -1.0f, E, BLOCK,
                        j->U + b0 * cols + b1, (int)cols, 1.0f, j->w + lo_r * cols + b1, (int)cols);
    }
    j->loss[ti] = l_q;
}

struct llmq_gptq_h {
    int64_t cols;
    float *U;         /* (cols, cols): U^T U = the damped H^-1 in the order perm */
    int32_t *perm;    /* the order columns are rounded in */
    float *H;         /* (cols, cols): H undamped, for llmq_gptq_loss */
    double damp;
};

void llmq_gptq_h_free(llmq_gptq_h *h)
{
    if (!h) return;
    free(h->U); free(h->perm); free(h->H);
    free(h);
}

double llmq_gptq_h_damp(const llmq_gptq_h *h) { return h->damp; }

int llmq_gptq_h_new(llmq_gptq_h **out, const double *gram, int64_t cols, double count, const float *col_div,
                    double damp, llmq_err *err)
{
    *out = NULL;
    if (cols < 2 || cols > INT32_MAX / 2 || !(count > 0) || !(damp > 0))
        return llmq_errorf(err, LLMQ_EUSAGE, "gptq: needs 2 or more columns (got %" PRId64 "), tokens and a positive damping",
                           cols);
    for (int64_t i = 0; i < cols; i++)
        for (int64_t k = i; k < cols; k++)
            if (!isfinite(gram[i * cols + k]))
                return llmq_errorf(err, LLMQ_ENONFINITE, "gptq: the inputs' Gram matrix has a non-finite entry (%" PRId64
                                   ", %" PRId64 ")", i, k);
    if (col_div)
        for (int64_t i = 0; i < cols; i++)
            if (!(col_div[i] > 0.0f) || !isfinite(col_div[i]))
                return llmq_errorf(err, LLMQ_EUSAGE, "gptq: input scale %g of column %" PRId64 " is not positive and finite",
                                   (double)col_div[i], i);
    size_t n = (size_t)cols;
    llmq_gptq_h *h = llmq_calloc(1, sizeof *h, err);
    double *a = h ? llmq_calloc(n * n, sizeof(double), err) : NULL;
    keyed *d = a ? llmq_calloc(n, sizeof *d, err) : NULL;
    if (!d || !(h->U = llmq_alloc_aligned(n * n * sizeof(float), err)) ||
        !(h->H = llmq_alloc_aligned(n * n * sizeof(float), err)) || !(h->perm = llmq_calloc(n, sizeof *h->perm, err))) {
        free(a); free(d); llmq_gptq_h_free(h);
        return err->code;
    }
    h->cols = cols;
    for (int64_t i = 0; i < cols; i++)
        for (int64_t j = i; j < cols; j++) h->H[i * cols + j] = h->H[j * cols + i] = (float)h_at(gram, cols, count, col_div, NULL, i, j);
    /* the columns with the largest inputs first (GPTQ's act order): the
     * grid is fixed beforehand, so the order is free */
    for (int64_t i = 0; i < cols; i++) d[i] = (keyed){ h_at(gram, cols, count, col_div, NULL, i, i), (int32_t)i };
    qsort(d, n, sizeof *d, cmp_desc);
    for (int64_t i = 0; i < cols; i++) h->perm[i] = d[i].col;
    free(d);
    h->damp = damp;
    int bad = inverse_factor(gram, cols, count, col_div, h->perm, damp, a, h->U, &h->damp);
    free(a);
    if (bad) {
        llmq_gptq_h_free(h);
        return llmq_errorf(err, LLMQ_ENONFINITE, "gptq: the inputs' Gram matrix cannot be factored (non-finite activations?)");
    }
    *out = h;
    return LLMQ_OK;
}

/* The rounding of llmq_gptq_quantize(_block): bscales NULL for an int grid. */
static int run(llmq_pool *pool, const llmq_gptq_cfg *q, const llmq_gptq_h *h, float *w, int64_t rows, const float *clip,
               uint8_t *codes, uint16_t *scales, uint8_t *zeros, uint8_t *bscales, llmq_wtype btype, llmq_mx_rule rule,
               float tscale, float *deq, llmq_gptq_stats *st, llmq_err *err)
{
    int64_t cols = h->cols;
    int nt = llmq_pool_size(pool);
    size_t per = (size_t)BLOCK * (size_t)((rows + nt - 1) / nt) + (size_t)cols;
    float *scratch = llmq_alloc_aligned((size_t)nt * per * sizeof(float), err);
    double *loss = scratch ? llmq_calloc((size_t)nt, sizeof(double), err) : NULL;
    if (!loss) { free(scratch); return err->code; }
    struct job j = { q, w, rows, cols, h->U, clip, h->perm, codes, scales, zeros, bscales, btype, rule, tscale, deq, scratch,
                     per, loss };
    llmq_pool_run(pool, worker, &j);
    double lq = 0.0;
    for (int i = 0; i < nt; i++) lq += loss[i];
    if (st) {
        st->loss = lq / (double)rows;
        st->damp = h->damp;
    }
    free(scratch); free(loss);
    return LLMQ_OK;
}

int llmq_gptq_quantize(llmq_pool *pool, const llmq_gptq_cfg *q, const llmq_gptq_h *h, float *w, int64_t rows,
                       const float *clip, uint8_t *codes, uint16_t *scales, uint8_t *zeros, float *deq,
                       llmq_gptq_stats *st, llmq_err *err)
{
    int64_t cols = h->cols;
    if ((q->bits != 3 && q->bits != 4) || !llmq_q4_group_ok(q->group) || rows < 1 || cols % q->group ||
        rows > INT32_MAX || (!q->sym && !zeros))
        return llmq_errorf(err, LLMQ_EUSAGE, "gptq: needs 3 or 4 bits, group 32/64/128 dividing %" PRId64
                           " columns, rows and zero points when asymmetric", cols);
    return run(pool, q, h, w, rows, clip, codes, scales, zeros, NULL, LLMQ_W_F32, LLMQ_MX_SCALE_OCP, 1.0f, deq, st, err);
}

int llmq_gptq_quantize_block(llmq_pool *pool, llmq_wtype t, llmq_mx_rule rule, const llmq_gptq_h *h, float *w,
                             int64_t rows, const float *clip, uint8_t *codes, uint8_t *scales, float *tscale, float *deq,
                             llmq_gptq_stats *st, llmq_err *err)
{
    int64_t cols = h->cols;
    if (!llmq_wtype_is_block(t) || cols % llmq_block_size(t) || rows < 1 || rows > INT32_MAX ||
        (rule != LLMQ_MX_SCALE_OCP && rule != LLMQ_MX_SCALE_CEIL && rule != LLMQ_MX_SCALE_MSE))
        return llmq_errorf(err, LLMQ_EUSAGE, "gptq: needs a block format whose block divides %" PRId64 " columns, "
                           "a scale rule and rows", cols);
    const int B = llmq_block_size(t);
    const llmq_gptq_cfg q = { t == LLMQ_W_MXFP8 ? 8 : 4, B, 1 };
    /* the packer's tensor scale: the max of the clipped matrix */
    float amax = 0.0f;
    int64_t ng = cols / B;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            float v = w[r * cols + c];
            if (clip) v = fminf(fmaxf(v, -clip[2 * (r * ng + c / B) + 1]), clip[2 * (r * ng + c / B)]);
            amax = fmaxf(amax, fabsf(v));
        }
    *tscale = llmq_wtype_is_nv(t) ? llmq_block_tscale(t, amax) : 1.0f;
    return run(pool, &q, h, w, rows, clip, codes, NULL, NULL, scales, t, rule, *tscale, deq, st, err);
}

double llmq_gptq_loss(const llmq_gptq_h *h, const float *w, const float *q, int64_t rows)
{
    int64_t cols = h->cols;
    size_t n = (size_t)cols;
    float *E = malloc(n * BLOCK * sizeof(float) * 2);
    if (!E) return -1.0;
    float *T = E + n * BLOCK;
    double sum = 0.0;
    for (int64_t r0 = 0; r0 < rows; r0 += BLOCK) {
        int64_t nr = LLMQ_MIN(BLOCK, rows - r0);
        for (int64_t i = 0; i < nr * cols; i++) E[i] = w[r0 * cols + i] - q[r0 * cols + i];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)cols, (int)cols, 1.0f, E, (int)cols, h->H,
                    (int)cols, 0.0f, T, (int)cols);
        for (int64_t i = 0; i < nr * cols; i++) sum += (double)E[i] * T[i];
    }
    free(E);
    return sum / (double)rows;
}
