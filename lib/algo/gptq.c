/* gptq.c - error-compensating rounding onto a fixed int4/int3 grid (gptq.h). */
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

static inline void put_nibble(uint8_t *codes, int64_t j, int q)
{
    if (j & 1) codes[j / 2] = (uint8_t)((codes[j / 2] & 0x0f) | (q << 4));
    else codes[j / 2] = (uint8_t)((codes[j / 2] & 0xf0) | q);
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
    /* the grid: round to nearest of the clipped row, as the packer would */
    for (int64_t r = lo_r; r < hi_r; r++) {
        const float *w = j->w + r * cols;
        for (int64_t c = 0; c < cols; c++) row[c] = w[c];
        if (j->clip)
            for (int64_t g = 0; g < ng; g++) {
                float ch = j->clip[2 * (r * ng + g)], cl = j->clip[2 * (r * ng + g) + 1];
                for (int64_t c = g * G; c < (g + 1) * G; c++) row[c] = fminf(fmaxf(row[c], -cl), ch);
            }
        uint8_t *cd = j->codes + r * (cols / 2), *zr = q->sym ? NULL : j->zeros + r * ng;
        uint16_t *sc = j->scales + r * ng;
        (q->bits == 3 ? llmq_q3_quantize_row : llmq_q4_quantize_row)(row, cols, (int)G, q->sym, NULL, cd, sc, zr);
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
            uint8_t *cd = j->codes + r * (cols / 2);
            for (int64_t i = b0; i < b1; i++) {
                int64_t oc = j->perm ? j->perm[i] : i, g = oc / G;
                float sf = llmq_f16_to_f32(j->scales[r * ng + g]);
                int z = q->sym ? LLMQ_Q4_ZERO_SYM : j->zeros[r * ng + g];
                int c = code_of(w[i], sf, z, lo, hi);
                put_nibble(cd, oc, c);
                float dq = (float)(c - z) * sf;
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

int llmq_gptq_quantize(llmq_pool *pool, const llmq_gptq_cfg *q, float *w, int64_t rows, int64_t cols,
                       const double *gram, double count, const float *col_div, const float *clip,
                       uint8_t *codes, uint16_t *scales, uint8_t *zeros, float *deq, llmq_gptq_stats *st,
                       llmq_err *err)
{
    if ((q->bits != 3 && q->bits != 4) || !llmq_q4_group_ok(q->group) || rows < 1 ||
        cols < 2 || cols % q->group || cols > INT32_MAX / 2 || rows > INT32_MAX || !(count > 0) || !(q->damp > 0) ||
        (!q->sym && !zeros))
        return llmq_errorf(err, LLMQ_EUSAGE, "gptq: needs 3 or 4 bits, group 32/64/128 dividing %" PRId64
                           " columns, tokens and a positive damping", cols);
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
    int nt = llmq_pool_size(pool);
    double *a = llmq_calloc((size_t)cols * (size_t)cols, sizeof(double), err);
    float *U = a ? llmq_alloc_aligned((size_t)cols * (size_t)cols * sizeof(float), err) : NULL;
    size_t per = (size_t)BLOCK * (size_t)((rows + nt - 1) / nt) + (size_t)cols;
    float *scratch = U ? llmq_alloc_aligned((size_t)nt * per * sizeof(float), err) : NULL;
    double *loss = scratch ? llmq_calloc((size_t)nt, sizeof(double), err) : NULL;
    if (!loss) { free(a); free(U); free(scratch); return err->code; }
    double damp = q->damp;
    /* the columns with the largest inputs first (GPTQ's act order): the
     * grid is fixed beforehand, so the order is free */
    int32_t *perm = llmq_calloc((size_t)cols, sizeof *perm, err);
    keyed *d = perm ? llmq_calloc((size_t)cols, sizeof *d, err) : NULL;
    if (!d) { free(perm); free(a); free(U); free(scratch); free(loss); return err->code; }
    for (int64_t i = 0; i < cols; i++) d[i] = (keyed){ h_at(gram, cols, count, col_div, NULL, i, i), (int32_t)i };
    qsort(d, (size_t)cols, sizeof *d, cmp_desc);
    for (int64_t i = 0; i < cols; i++) perm[i] = d[i].col;
    free(d);
    int bad = inverse_factor(gram, cols, count, col_div, perm, q->damp, a, U, &damp);
    free(a);
    if (bad) {
        free(U); free(scratch); free(loss); free(perm);
        return llmq_errorf(err, LLMQ_ENONFINITE, "gptq: the inputs' Gram matrix cannot be factored (non-finite activations?)");
    }
    struct job j = { q, w, rows, cols, U, clip, perm, codes, scales, zeros, deq, scratch, per, loss };
    llmq_pool_run(pool, worker, &j);
    double lq = 0.0;
    for (int i = 0; i < nt; i++) lq += loss[i];
    if (st) {
        st->loss = lq / (double)rows;
        st->damp = damp;
    }
    free(U); free(scratch); free(loss); free(perm);
    return LLMQ_OK;
}

double llmq_gptq_loss(const float *w, const float *q, int64_t rows, int64_t cols, const double *gram, double count,
                      const float *col_div)
{
    size_t n = (size_t)cols;
    float *H = malloc(n * n * sizeof(float)), *E = malloc(n * BLOCK * sizeof(float) * 2);
    if (!H || !E) { free(H); free(E); return -1.0; }
    for (int64_t i = 0; i < cols; i++)
        for (int64_t j = i; j < cols; j++) {
            double v = gram[i * cols + j] / count;
            if (col_div) v /= (double)col_div[i] * col_div[j];
            H[i * cols + j] = H[j * cols + i] = (float)v;
        }
    float *T = E + n * BLOCK;
    double sum = 0.0;
    for (int64_t r0 = 0; r0 < rows; r0 += BLOCK) {
        int64_t nr = LLMQ_MIN(BLOCK, rows - r0);
        for (int64_t i = 0; i < nr * cols; i++) E[i] = w[r0 * cols + i] - q[r0 * cols + i];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)cols, (int)cols, 1.0f, E, (int)cols, H,
                    (int)cols, 0.0f, T, (int)cols);
        for (int64_t i = 0; i < nr * cols; i++) sum += (double)E[i] * T[i];
    }
    free(H);
    free(E);
    return sum / (double)rows;
}
