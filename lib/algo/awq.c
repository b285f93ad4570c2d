/* awq.c - Activation-aware Weight Quantization (awq.h). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <cblas.h>
#include "awq.h"
#include "gptq.h"
#include "../quant/quant.h"
#include "../kernels/hadamard.h"
#include "../../calib/data.h"
#include "../train/ops.h"

#define S_MIN 1e-4f            /* llm-awq clamps x^r at 1e-4: no zero scale */

#define lin_name(k) (llmq_linears[k].hf)
static const char *group_names[LLMQ_AWQ_NGROUP] = { "qkv", "o", "gate_up", "down" };

const char *llmq_awq_group_name(int g) { return (unsigned)g < LLMQ_AWQ_NGROUP ? group_names[g] : "?"; }
const char *llmq_awq_lin_name(int k) { return strchr(lin_name(k), '.') + 1; }

int64_t llmq_awq_scale_dim(const llmq_config *c, int g)
{
    switch (g) {
    case LLMQ_AWQ_G_QKV: case LLMQ_AWQ_G_GATEUP: return c->hidden;
    case LLMQ_AWQ_G_O: return (int64_t)c->n_kv_heads * c->head_dim;
    default: return c->intermediate;
    }
}

void llmq_awq_opts_default(llmq_awq_opts *o)
{
    memset(o, 0, sizeof *o);
    o->q.bits = LLMQ_AWQ_BITS_DEFAULT;
    o->q.group = LLMQ_AWQ_GROUP_DEFAULT;
    o->n_grid = LLMQ_AWQ_N_GRID_DEFAULT;
    o->duo = 1;
    o->clip = 1;
    o->clip_qk = 1;
    o->clip_steps = 20;
    o->max_shrink = 0.5;
    o->search_tokens = LLMQ_AWQ_SEARCH_TOKENS_DEFAULT;
    o->stat_windows = LLMQ_AWQ_STAT_WINDOWS_DEFAULT;
    o->loss_windows = LLMQ_AWQ_LOSS_WINDOWS_DEFAULT;
    o->gptq_damp = LLMQ_GPTQ_DAMP_DEFAULT;
}

/* ---- small blocks ---- */

/* Round half to even without a libm call (the current rounding mode is
 * round-to-nearest): exact for |v| < 2^51. */
static inline double rne(double v)
{
    if (!(v < 0x1p50 && v > -0x1p50)) return nearbyint(v);
    return (v + 0x1.8p52) - 0x1.8p52;
}

/* llmq_q4_quantize_row / llmq_q3_quantize_row then dequantize, one group,
 * the same operations in the same order (t-awq checks it bit for bit) but
 * inlined: the scale search runs it billions of times. */
/* Built per ISA (GCC target_clones, chosen at load time) with the
 * vectorizer on: the two loops are branch-free. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("default", "avx2", "avx512f"), optimize("tree-vectorize", "vect-cost-model=dynamic", "no-trapping-math")))
#endif
static void fq_group(int bits, int sym, const float *v, int G, float clip, float cliplo, float *out)
{
    double c = clip, cl = cliplo;
    /* eight running minima and maxima (G is a multiple of 32): a NaN fails
     * both comparisons and is skipped, as in the packer */
    float m8[8] = { 0 }, M8[8] = { 0 };
    for (int j = 0; j < G; j += 8)
        for (int l = 0; l < 8; l++) {
            float x = v[j + l];
            m8[l] = x < m8[l] ? x : m8[l];
            M8[l] = x > M8[l] ? x : M8[l];
        }
    float vmin = 0.0f, vmax = 0.0f;
    for (int l = 0; l < 8; l++) {
        vmin = m8[l] < vmin ? m8[l] : vmin;
        vmax = M8[l] > vmax ? M8[l] : vmax;
    }
    /* clamping to [-c, c] commutes with min and max (vmin <= 0 <= vmax) */
    double mn = vmin < -cliplo ? -cliplo : vmin, mx = vmax > clip ? clip : vmax;
    double maxq = sym ? (bits == 4 ? 7.0 : 3.0) : (bits == 4 ? 15.0 : 7.0);
    double range = sym ? (mx > -mn ? mx : -mn) : mx - mn;
    if (!(range > 0.0)) {
        for (int j = 0; j < G; j++) out[j] = 0.0f;
        return;
    }
    double rq = range / maxq;
    float sf = llmq_f16_to_f32(llmq_f16_ceil((float)(rq < 65504.0 ? rq : 65504.0)));
    int z = 8, lo = sym ? 8 - (int)maxq : 0, hi = sym ? 8 + (int)maxq : (int)maxq;
    if (!sym) {
        double zf = rq > 65504.0 ? maxq * -mn / range : -mn / sf;
        zf = rne(zf);
        z = (int)(zf < 0 ? 0 : zf > maxq ? maxq : zf);
    }
    if (rq <= 65504.0) {
        /* sf >= range / maxq, so |x / sf| <= maxq: the 1.5 * 2^52 rounding
         * is exact, and the loop has no branch (it vectorizes) */
        double dz = z, dlo = lo, dhi = hi, dc = c, sd = sf;
        for (int j = 0; j < G; j++) {
            double x = v[j];
            x = x > dc ? dc : x < -cl ? -cl : x;
            double q = ((x / sd + 0x1.8p52) - 0x1.8p52) + dz;
            q = q < dlo ? dlo : q > dhi ? dhi : q;
            out[j] = (float)(q - dz) * sf;
        }
        return;
    }
    for (int j = 0; j < G; j++) {
        double x = v[j];
        x = x > c ? c : x < -cl ? -cl : x;
        double q = rne(x / sf) + z;
        q = q < lo ? lo : q > hi ? hi : q;
        out[j] = (float)((int)q - z) * sf;
    }
}

/* ---- the block formats' fake quantization ----
 *
 * llmq_block_quantize_row then llmq_block_dequantize_row (microscale.c) of
 * one clamped block, the same operations on the same values in the same
 * order (t-awq-block checks it bit for bit), restated for the searches:
 * elements are rounded by comparisons (E2M1) or the 1.5 * 2^52 trick
 * (int4) instead of libm calls, an MX division by the power-of-two block
 * factor is the (exact) multiplication by its inverse, and the squared
 * errors of the MSE rule's candidate scales are summed element by element
 * in the reference order, the candidates' sums side by side.  Contraction
 * into FMAs is off: the reference has none, and an FMA would round the
 * squared errors differently and could flip the MSE rule's choice. */

#define BLK_MAX 32          /* largest block */
#define BLK_CAND 5          /* the MSE rule's candidate scales (NV: c0 and two either side) */
/* the helpers of fq_block4 inline into each of its clones (GCC does not
 * inline across differing optimize attributes otherwise) */
#if defined(__GNUC__)
#define BLK_INLINE static inline __attribute__((always_inline))
#else
#define BLK_INLINE static inline
#endif

typedef struct {
    llmq_wtype t;
    llmq_mx_rule rule;
    float tscale;           /* NV: the tensor scale */
    int nv, fp;             /* E4M3 block scale times tscale; E2M1 elements (else int4) */
    double k;               /* int4: code = round(x k): 4 for MXINT4 (value code / 4), 1 for NVINT4 */
    float unit;             /* 1 / k */
    double emax;            /* the largest element: 6, 1.75, 7 */
    int lemax;              /* ilogb(emax) */
    int ocp_shift;          /* emax_elem of OCP section 6.3: 2 for E2M1, 0 for MXINT4 */
} blk_fmt;

static void blk_fmt_init(blk_fmt *f, const llmq_awq_qcfg *q, float tscale)
{
    f->t = q->btype;
    f->rule = q->rule;
    f->tscale = tscale;
    f->nv = llmq_wtype_is_nv(q->btype);
    f->fp = q->btype == LLMQ_W_MXFP4 || q->btype == LLMQ_W_NVFP4;
    f->k = q->btype == LLMQ_W_MXINT4 ? 4.0 : 1.0;
    f->unit = q->btype == LLMQ_W_MXINT4 ? 0.25f : 1.0f;
    f->emax = f->fp ? 6.0 : q->btype == LLMQ_W_MXINT4 ? 1.75 : 7.0;
    f->lemax = f->fp ? 2 : q->btype == LLMQ_W_MXINT4 ? 0 : 2;
    f->ocp_shift = f->fp ? 2 : 0;
}

/* 2^e, e in [-1022, 1023] */
static inline double pow2d(int e)
{
    uint64_t u = (uint64_t)(e + 1023) << 52;
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

/* ilogb(a) for a float a > 0 (the same as ilogb of a as a double) */
static inline int ilogb_f(float a)
{
    int e = (int)((llmq_f32_bits(a) >> 23) & 0xff);
    return e ? e - 127 : ilogbf(a);
}

/* The scale byte rule OCP or CEIL gives a block with max |x| = amax > 0
 * (microscale.c mx_exponent, nv_scale); MSE starts from OCP's. */
static int blk_scale0(const blk_fmt *f, float amax, llmq_mx_rule rule)
{
    if (f->nv) {
        double s = (double)amax / (f->emax * (double)f->tscale);
        uint8_t c = llmq_e4m3_encode((float)s);
        if (rule == LLMQ_MX_SCALE_CEIL && (double)llmq_e4m3_to_f32(c) < s && c < 0x7e) c++;
        return c;
    }
    int e;
    if (rule == LLMQ_MX_SCALE_CEIL) {
        e = ilogb_f(amax) - f->lemax - 1;
        while (f->emax * pow2d(e) < (double)amax) e++;
    } else {
        e = ilogb_f(amax) - f->ocp_shift;
    }
    e = e < -127 ? -127 : e > 127 ? 127 : e;
    return e + 127;
}

/* The factor of scale byte c (blocks.h: E8M0, or E4M3 times tscale, a float product). */
BLK_INLINE float blk_factor(const blk_fmt *f, int c)
{
    return f->nv ? llmq_e4m3_to_f32((uint8_t)c) * f->tscale : llmq_e8m0_to_f32((uint8_t)c);
}

/* E2M1 value nearest x (llmq_e2m1_encode of (float)x, then the table):
 * the midpoints compared as floats, ties to the even mantissa, the
 * magnitude a sum of the steps passed; +0 for every x that rounds to 0. */
BLK_INLINE float e2m1_value(double x)
{
    float f = (float)x, a = fabsf(f);
    float v = (a > 0.25f ? 0.5f : 0.0f) + (a >= 0.75f ? 0.5f : 0.0f) + (a > 1.25f ? 0.5f : 0.0f) +
              (a >= 1.75f ? 0.5f : 0.0f) + (a > 2.5f ? 1.0f : 0.0f) + (a >= 3.5f ? 1.0f : 0.0f) + (a > 5.0f ? 2.0f : 0.0f);
    return f < 0.0f ? 0.0f - v : v;
}

/* int4 value of y = x k: nearbyint(y) clamped to [-7, 7], times unit
 * (y is clamped to [-8, 8] first so the rounding trick is exact; a NaN
 * becomes 0, as microscale.c's elem_code makes it).  One select per
 * statement: GCC 12 vectorizes those, not the nested ones. */
BLK_INLINE float int4_value(double y, float unit)
{
    y = y < -8.0 ? -8.0 : y;
    y = y > 8.0 ? 8.0 : y;
    y = y == y ? y : 0.0;
    double c = (y + 0x1.8p52) - 0x1.8p52;
    c = c < -7.0 ? -7.0 : c;
    c = c > 7.0 ? 7.0 : c;
    return (float)c * unit;
}

/* p[j] = the element value of x[j] / d (d > 0; MX: x[j] * r, r = 1 / d exactly) */
BLK_INLINE void blk_values(const blk_fmt *f, const float *x, int B, double d, float *p)
{
    if (f->nv) {
        if (f->fp) for (int j = 0; j < B; j++) p[j] = e2m1_value((double)x[j] / d);
        else for (int j = 0; j < B; j++) p[j] = int4_value((double)x[j] / d, 1.0f);
    } else {
        double r = 1.0 / d, k = f->k;
        if (f->fp) for (int j = 0; j < B; j++) p[j] = e2m1_value((double)x[j] * r);
        else for (int j = 0; j < B; j++) p[j] = int4_value((double)x[j] * r * k, f->unit);
    }
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("default", "avx2", "avx512f"),
               optimize("tree-vectorize", "vect-cost-model=dynamic", "no-trapping-math", "fp-contract=off")))
#elif defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=off")))
#endif
static void fq_block4(const blk_fmt *f, const float *v, int B, float clip, float cliplo, float *out)
{
    float x[BLK_MAX], P[BLK_CAND][BLK_MAX];
    double E[BLK_CAND][BLK_MAX];
    /* eight running maxima (B is 16 or 32), as fq_group */
    float m8[8] = { 0 }, amax = 0.0f;
    for (int j = 0; j < B; j += 8)
        for (int l = 0; l < 8; l++) {
            float a = v[j + l];
            a = a > clip ? clip : a;
            a = a < -cliplo ? -cliplo : a;
            x[j + l] = a;
            a = fabsf(a);
            m8[l] = a > m8[l] ? a : m8[l];
        }
    for (int l = 0; l < 8; l++) amax = m8[l] > amax ? m8[l] : amax;
    if (!(amax > 0.0f)) {
        for (int j = 0; j < B; j++) out[j] = 0.0f;
        return;
    }
    int c0 = blk_scale0(f, amax, f->rule == LLMQ_MX_SCALE_CEIL ? LLMQ_MX_SCALE_CEIL : LLMQ_MX_SCALE_OCP);
    int cand[BLK_CAND], n = 0;
    cand[n++] = c0;
    if (f->rule == LLMQ_MX_SCALE_MSE)
        for (int c = f->nv ? c0 - 2 : c0; c <= c0 + (f->nv ? 2 : 1); c++)
            if (c != c0 && c >= 1 && c <= (f->nv ? 0x7e : 254)) cand[n++] = c;
    float df[BLK_CAND];
    for (int i = 0; i < n; i++) {
        df[i] = blk_factor(f, cand[i]);
        double d = (double)df[i];
        if (d > 0.0) blk_values(f, x, B, d, P[i]);
        else for (int j = 0; j < B; j++) P[i][j] = 0.0f;
    }
    int best = 0;
    if (n > 1) {
        /* microscale.c block_sse: sum over j of (q - x)^2, q = value * d in double */
        for (int i = 0; i < n; i++) {
            double d = (double)df[i];
            if (d > 0.0)
                for (int j = 0; j < B; j++) {
                    double e = (double)P[i][j] * d - (double)x[j];
                    E[i][j] = e * e;
                }
            else
                for (int j = 0; j < B; j++) {
                    double e = 0.0 - (double)x[j];
                    E[i][j] = e * e;
                }
        }
        /* in order over j, a chain per candidate; fixed counts so the
         * chains stay in registers side by side */
        double sum[BLK_CAND] = { 0 };
        if (n == 2) {
            for (int j = 0; j < B; j++) { sum[0] += E[0][j]; sum[1] += E[1][j]; }
        } else {
            for (int i = n; i < BLK_CAND; i++)
                for (int j = 0; j < B; j++) E[i][j] = 0.0;
            for (int j = 0; j < B; j++)
                for (int i = 0; i < BLK_CAND; i++) sum[i] += E[i][j];
        }
        for (int i = 1; i < n; i++)
            if (sum[i] < sum[best]) best = i;
    }
    float d = df[best];
    for (int j = 0; j < B; j++) out[j] = P[best][j] * d;
}

/* One block of a block format, clamped to [-cliplo, clip], fake-quantized. */
static void fq_block(const blk_fmt *f, const float *v, int B, float clip, float cliplo, float *out)
{
    if (f->t != LLMQ_W_MXFP8) { fq_block4(f, v, B, clip, cliplo, out); return; }
    float x[BLK_MAX];
    uint8_t codes[BLK_MAX], sc;
    for (int j = 0; j < B; j++) x[j] = fminf(fmaxf(v[j], -cliplo), clip);
    llmq_block_quantize_row(f->t, x, B, f->rule, f->tscale, codes, &sc);
    llmq_block_dequantize_row(f->t, codes, &sc, f->tscale, B, out);
}

void llmq_awq_fake_row_t(const llmq_awq_qcfg *q, float tscale, const float *w, int64_t cols, const float *clip,
                         float *out)
{
    if (!llmq_awq_is_block(q)) {
        for (int64_t g = 0; g < cols / q->group; g++)
            fq_group(q->bits, q->sym, w + g * q->group, q->group, clip ? clip[2 * g] : INFINITY,
                     clip ? clip[2 * g + 1] : INFINITY, out + g * q->group);
        return;
    }
    blk_fmt f;
    blk_fmt_init(&f, q, tscale);
    const int B = q->group;
    for (int64_t g = 0; g < cols / B; g++)
        fq_block(&f, w + g * B, B, clip ? clip[2 * g] : INFINITY, clip ? clip[2 * g + 1] : INFINITY, out + g * B);
}

/* max |w| of a row clamped per group to [-clip[2g + 1], clip[2g]] (clip NULL: none) */
static float row_amax(const float *w, int64_t cols, int group, const float *clip)
{
    float amax = 0.0f;
    for (int64_t j = 0; j < cols; j++) {
        float a = w[j];
        if (clip) a = fminf(fmaxf(a, -clip[2 * (j / group) + 1]), clip[2 * (j / group)]);
        amax = fmaxf(amax, fabsf(a));
    }
    return amax;
}

void llmq_awq_fake_row(const llmq_awq_qcfg *q, const float *w, int64_t cols, const float *clip, float *out)
{
    float ts = llmq_wtype_is_nv(q->btype) ? llmq_block_tscale(q->btype, row_amax(w, cols, q->group, clip)) : 1.0f;
    llmq_awq_fake_row_t(q, ts, w, cols, clip, out);
}

void llmq_awq_transform(float *w, int64_t rows, int64_t cols, const float *col_mul, const float *row_div,
                        const float *clip, int group)
{
    int64_t ng = group > 0 ? cols / group : 0;
    for (int64_t i = 0; i < rows; i++) {
        float *r = w + i * cols;
        if (col_mul) for (int64_t j = 0; j < cols; j++) r[j] *= col_mul[j];
        if (row_div) for (int64_t j = 0; j < cols; j++) r[j] /= row_div[i];
        if (clip && group > 0) llmq_q4_clip_row(r, cols, group, clip + 2 * i * ng);
    }
}

void llmq_awq_expand_kv(const float *s_kv, int n_heads, int n_kv, int head_dim, float *s_q)
{
    int rep = n_heads / n_kv;
    for (int h = 0; h < n_heads; h++)
        memcpy(s_q + (size_t)h * head_dim, s_kv + (size_t)(h / rep) * head_dim, (size_t)head_dim * sizeof(float));
}

static float *falloc(int64_t a, int64_t b, llmq_err *err)
{
    size_t n;
    if (a < 0 || b < 0 || llmq_mul_ovf_size((size_t)a, (size_t)b, &n) || llmq_mul_ovf_size(n, sizeof(float), &n)) {
        llmq_errorf(err, LLMQ_ENOMEM, "awq: buffer size overflows");
        return NULL;
    }
    return llmq_alloc_aligned(n ? n : 1, err);
}

/* Y (n, rows) = X (n, cols) W^T, W fp32 (rows, cols), threaded. */
static void mm(llmq_pool *pool, const float *W, int64_t rows, int64_t cols, const float *X, int64_t n, float *Y)
{
    llmq_wmat w = { .type = LLMQ_W_F32, .rows = rows, .cols = cols, .data = W };
    llmq_matmul(pool, &w, X, n, Y);
}

/* out = a * b elementwise (vectorized per ISA like fq_group) */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("default", "avx2", "avx512f"), optimize("tree-vectorize", "vect-cost-model=dynamic")))
#endif
static void scale_row(float *out, const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++) out[i] = a[i] * b[i];
}

struct fq_job {
    const llmq_awq_qcfg *q;
    float tscale;   /* NV block formats: the tensor's */
    const float *w, *s, *inv_s, *clip;
    int64_t rows, cols;
    float *out;
    float *tmp;     /* (threads, cols) */
    float *amax;    /* (threads): amax_worker's */
};

/* NV block formats: max |w * s| per thread, clamped to the clips, as fq_worker sees it. */
static void amax_worker(void *ctx, int ti, int nt)
{
    struct fq_job *j = ctx;
    int64_t lo, hi, ng = j->cols / j->q->group;
    llmq_split(j->rows, ti, nt, 1, &lo, &hi);
    float *t = j->tmp + (size_t)ti * (size_t)j->cols, m = 0.0f;
    for (int64_t r = lo; r < hi; r++) {
        const float *w = j->w + r * j->cols;
        if (j->s) {
            scale_row(t, w, j->s, j->cols);
            w = t;
        }
        m = fmaxf(m, row_amax(w, j->cols, j->q->group, j->clip ? j->clip + 2 * r * ng : NULL));
    }
    j->amax[ti] = m;
}

static void fq_worker(void *ctx, int ti, int nt)
{
    struct fq_job *j = ctx;
    int64_t lo, hi, ng = j->cols / j->q->group;
    llmq_split(j->rows, ti, nt, 1, &lo, &hi);
    float *t = j->tmp + (size_t)ti * (size_t)j->cols;
    for (int64_t r = lo; r < hi; r++) {
        const float *w = j->w + r * j->cols;
        float *o = j->out + r * j->cols;
        if (j->s) {
            scale_row(t, w, j->s, j->cols);
            llmq_awq_fake_row_t(j->q, j->tscale, t, j->cols, j->clip ? j->clip + 2 * r * ng : NULL, o);
            scale_row(o, o, j->inv_s, j->cols);
        } else {
            llmq_awq_fake_row_t(j->q, j->tscale, w, j->cols, j->clip ? j->clip + 2 * r * ng : NULL, o);
        }
    }
}

/* out (rows, cols) = fq(w * s) * (1 / s) per column (s NULL = 1), w * s
 * clamped to clip (NULL = none) first; w is one tensor (NV formats: the
 * tensor scale from its max), threaded over rows. */
static int fake_quant(llmq_pool *pool, const llmq_awq_qcfg *q, const float *w, int64_t rows, int64_t cols,
                      const float *s, const float *clip, float *out, llmq_err *err)
{
    int nt = llmq_pool_size(pool);
    float *tmp = falloc((nt + (s ? 1 : 0)) * cols + nt, 1, err);
    if (!tmp) return err->code;
    float *inv = tmp + (size_t)nt * (size_t)cols, *amax = inv + (s ? (size_t)cols : 0);
    if (s) for (int64_t c = 0; c < cols; c++) inv[c] = 1.0f / s[c];
    struct fq_job j = { q, 1.0f, w, s, s ? inv : NULL, clip, rows, cols, out, tmp, amax };
    if (llmq_wtype_is_nv(q->btype)) {
        llmq_pool_run(pool, amax_worker, &j);
        float m = 0.0f;
        for (int i = 0; i < nt; i++) m = fmaxf(m, amax[i]);
        j.tscale = llmq_block_tscale(q->btype, m);
    }
    llmq_pool_run(pool, fq_worker, &j);
    free(tmp);
    return LLMQ_OK;
}

static double mse(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        s += d * d;
    }
    return n ? s / (double)n : 0.0;
}

/* ---- scale search (paper section 3.2) ---- */

/* With act_bf16: the group's inputs, down_proj and a weight or hidden
 * buffer rounded to bf16 for llmq_matmul_bf16. */
typedef struct {
    uint16_t *x;      /* (n, in) the inputs (or the coarse tokens') */
    uint16_t *w;      /* (max rows, in) a candidate's weights */
    uint16_t *h;      /* (n, ff) the MLP's hidden activations */
    uint16_t *down;   /* (down_rows, ff) */
} bf16_tmp;

/* mm, or with b the bf16 product of W and b->x rounded W in b->w. */
static void mm_b(llmq_pool *pool, const float *W, int64_t rows, int64_t cols, const float *X, int64_t n, float *Y,
                 const bf16_tmp *b)
{
    if (!b) { mm(pool, W, rows, cols, X, n, Y); return; }
    llmq_round_bf16(W, rows * cols, b->w);
    llmq_wmat w = { .type = LLMQ_W_BF16, .rows = rows, .cols = cols, .data = b->w };
    llmq_matmul_bf16(pool, &w, b->x, n, Y);
}

/* Output of group g with weights w[i] (already effective fp32) into out:
 * (n, sum rows) concatenated, or the MLP output (n, down_rows); b (NULL:
 * fp32) as mm_b. */
static void group_out(llmq_pool *pool, const llmq_awq_group *g, const float *const *w, float *out,
                      float *hg, float *hu, const bf16_tmp *b)
{
    int64_t n = g->n;
    if (g->down) {
        int64_t ff = g->rows[0];
        mm_b(pool, w[0], ff, g->in, g->x, n, hg, b);
        mm_b(pool, w[1], ff, g->in, g->x, n, hu, b);
        llmq_op_swiglu_fwd(hg, hu, (size_t)(n * ff), hg);
        if (g->ff_block) llmq_fwht(hg, n, ff, g->ff_block);   /* the forward's online Hadamard */
        if (!b) { mm(pool, g->down, g->down_rows, ff, hg, n, out); return; }
        llmq_round_bf16(hg, n * ff, b->h);
        llmq_wmat d = { .type = LLMQ_W_BF16, .rows = g->down_rows, .cols = ff, .data = b->down };
        llmq_matmul_bf16(pool, &d, b->h, n, out);
        return;
    }
    int64_t tot = 0;
    for (int i = 0; i < g->n_w; i++) tot += g->rows[i];
    /* per linear into hg, then interleave into out (n, tot) */
    int64_t off = 0;
    for (int i = 0; i < g->n_w; i++) {
        mm_b(pool, w[i], g->rows[i], g->in, g->x, n, hg, b);
        for (int64_t t = 0; t < n; t++)
            memcpy(out + t * tot + off, hg + t * g->rows[i], (size_t)g->rows[i] * sizeof(float));
        off += g->rows[i];
    }
}

/* Per input channel (n_s): mean over the group's rows of |w| / (the max |w|
 * of its row's group), averaged over the query heads sharing a KV channel. */
static void weight_mean(const llmq_awq_group *g, int group, double *wm_in, float *wm)
{
    int64_t n_s = g->heads > 0 ? (int64_t)g->kv_heads * g->head_dim : g->in, rows = 0;
    for (int64_t c = 0; c < g->in; c++) wm_in[c] = 0.0;
    for (int i = 0; i < g->n_w; i++) {
        rows += g->rows[i];
        for (int64_t r = 0; r < g->rows[i]; r++) {
            const float *w = g->w[i] + r * g->in;
            for (int64_t k = 0; k < g->in / group; k++) {
                float amax = 0.0f;
                for (int e = 0; e < group; e++) amax = fmaxf(amax, fabsf(w[k * group + e]));
                if (amax > 0.0f)
                    for (int e = 0; e < group; e++) wm_in[k * group + e] += fabsf(w[k * group + e]) / amax;
            }
        }
    }
    if (g->heads > 0) {
        int rep = g->heads / g->kv_heads;
        for (int64_t j = 0; j < n_s; j++) {
            double a = 0;
            for (int r = 0; r < rep; r++) a += wm_in[((j / g->head_dim) * rep + r) * g->head_dim + j % g->head_dim];
            wm[j] = (float)(a / rep / (double)rows);
        }
    } else {
        for (int64_t j = 0; j < n_s; j++) wm[j] = (float)(wm_in[j] / (double)rows);
    }
}

/* Candidate i of the grid: r = (i mod n_grid) / n_grid, duo for i >= n_grid;
 * sc (n_s) normalised, sx (in) expanded over the query heads.  Returns
 * whether every scale is finite and positive. */
static int candidate(const llmq_awq_group *g, int n_grid, int i, const float *wm, float *sc, float *sx)
{
    int64_t n_s = g->heads > 0 ? (int64_t)g->kv_heads * g->head_dim : g->in;
    int d = i >= n_grid;
    double r = (double)(i % n_grid) / n_grid;
    float mx = 0.0f, mn = INFINITY;
    for (int64_t c = 0; c < n_s; c++) {
        float v = powf(g->xmean[c], (float)r);    /* r = 0: 1 even for 0, NaN, Inf */
        if (d) v /= powf(wm[c], (float)(1.0 - r)) + 1e-4f;
        v = isnan(v) ? NAN : fmaxf(v, S_MIN);
        sc[c] = v;
        mx = fmaxf(mx, v);
        mn = fminf(mn, v);
    }
    float norm = sqrtf(mx * mn);
    for (int64_t c = 0; c < n_s; c++) sc[c] /= norm;
    if (g->heads > 0) llmq_awq_expand_kv(sc, g->heads, g->kv_heads, g->head_dim, sx);
    else memcpy(sx, sc, (size_t)n_s * sizeof(float));
    int finite = 1;
    for (int64_t c = 0; c < g->in; c++) finite &= isfinite(sx[c]) && sx[c] > 0.0f;
    return finite;
}

/* The coarse stage sees 1 / SEARCH_COARSE of the search tokens; this many
 * of its best candidates (and s = 1) go on to the stage on all of them. */
#define SEARCH_KEEP 4
#define SEARCH_COARSE 8

int llmq_awq_search_scale(llmq_pool *pool, const llmq_awq_group *g, const llmq_awq_qcfg *q, int n_grid, int duo,
                          float *s, double *ratio, int *picked_duo, double *loss_s1, double *loss_best, int *fallback,
                          llmq_err *err)
{
    int64_t n_s = g->heads > 0 ? (int64_t)g->kv_heads * g->head_dim : g->in;
    int64_t out_cols = 0, maxrows = 0;
    for (int i = 0; i < g->n_w; i++) { out_cols += g->rows[i]; maxrows = LLMQ_MAX(maxrows, g->rows[i]); }
    if (g->down) out_cols = g->down_rows;
    int n_cand = (duo ? 2 : 1) * n_grid;
    /* two stages when asked: every candidate on n_coarse evenly spaced
     * tokens, then the SEARCH_KEEP best and s = 1 on all n */
    int64_t nc = g->n_coarse > 0 && g->n_coarse < g->n && n_cand > SEARCH_KEEP + 1 ? g->n_coarse : 0;
    float *ref = falloc(g->n, out_cols, err), *cur = ref ? falloc(g->n, out_cols, err) : NULL;
    float *hg = cur ? falloc(g->n, maxrows, err) : NULL, *hu = hg ? falloc(g->n, maxrows, err) : NULL;
    float *sc = hu ? falloc(n_s, 1, err) : NULL, *sx = sc ? falloc(g->in, 1, err) : NULL;
    float *wm = sx ? falloc(n_s, 1, err) : NULL;
    double *wm_in = wm ? llmq_calloc((size_t)g->in, sizeof(double), err) : NULL;
    double *loss1 = wm_in ? llmq_calloc((size_t)n_cand, sizeof(double), err) : NULL;
    float *xc = loss1 && nc ? falloc(nc, g->in, err) : NULL;
    float *wq[3] = { 0 };
    int rc = loss1 && (!nc || xc) ? LLMQ_OK : err->code;
    for (int i = 0; i < g->n_w && !rc; i++)
        if (!(wq[i] = falloc(g->rows[i], g->in, err))) rc = err->code;
    bf16_tmp bt = { 0 }, bc = { 0 }, *b = NULL, *b1 = NULL;
    if (!rc && g->act_bf16) {
        int64_t ff = g->down ? g->rows[0] : 0;
        if (!(bt.x = llmq_calloc((size_t)(g->n * g->in), 2, err)) || !(bt.w = llmq_calloc((size_t)(maxrows * g->in), 2, err)) ||
            (ff && !(bt.h = llmq_calloc((size_t)(g->n * ff), 2, err))) ||
            (ff && !(bt.down = llmq_calloc((size_t)(g->down_rows * ff), 2, err))) ||
            (nc && !(bc.x = llmq_calloc((size_t)(nc * g->in), 2, err))))
            rc = err->code;
        else {
            llmq_round_bf16(g->x, g->n * g->in, bt.x);
            if (ff) llmq_round_bf16(g->down, g->down_rows * ff, bt.down);
            bc.w = bt.w; bc.h = bt.h; bc.down = bt.down;
            b = &bt;
            b1 = &bc;
        }
    }
    if (rc) goto out;
    if (duo) weight_mean(g, q->group, wm_in, wm);
    int *pick = NULL, n_pick = n_cand;
    int picked[SEARCH_KEEP + 1];
    if (nc) {
        /* stage 1 on the coarse tokens: rows 0, n/nc, 2n/nc, ... */
        for (int64_t t = 0; t < nc; t++)
            memcpy(xc + t * g->in, g->x + (t * g->n / nc) * g->in, (size_t)g->in * sizeof(float));
        if (b1) llmq_round_bf16(xc, nc * g->in, b1->x);
        llmq_awq_group g1 = *g;
        g1.x = xc;
        g1.n = nc;
        group_out(pool, &g1, g->w, ref, hg, hu, b1);
        for (int i = 0; i < n_cand; i++) {
            loss1[i] = INFINITY;
            if (!candidate(g, n_grid, i, wm, sc, sx)) continue;
            for (int k = 0; k < g->n_w; k++)
                if ((rc = fake_quant(pool, q, g->w[k], g->rows[k], g->in, sx, NULL, wq[k], err))) goto out;
            group_out(pool, &g1, (const float *const *)wq, cur, hg, hu, b1);
            loss1[i] = mse(cur, ref, (size_t)nc * (size_t)out_cols);
            if (!isfinite(loss1[i])) loss1[i] = INFINITY;
        }
        /* s = 1, then the best SEARCH_KEEP others (ties: the lower index) */
        n_pick = 0;
        picked[n_pick++] = 0;
        for (int k = 0; k < SEARCH_KEEP; k++) {
            int b = -1;
            for (int i = 1; i < n_cand; i++) {
                int used = 0;
                for (int u = 0; u < n_pick; u++) used |= picked[u] == i;
                if (!used && isfinite(loss1[i]) && (b < 0 || loss1[i] < loss1[b])) b = i;
            }
            if (b >= 0) picked[n_pick++] = b;
        }
        pick = picked;
    }
    group_out(pool, g, g->w, ref, hg, hu, b);
    size_t nout = (size_t)g->n * (size_t)out_cols;
    double best = INFINITY;
    int best_i = -1;
    *loss_s1 = NAN;
    for (int k = 0; k < n_pick; k++) {
        int i = pick ? pick[k] : k;
        double loss = INFINITY;
        if (candidate(g, n_grid, i, wm, sc, sx)) {
            for (int w = 0; w < g->n_w; w++)
                if ((rc = fake_quant(pool, q, g->w[w], g->rows[w], g->in, sx, NULL, wq[w], err))) goto out;
            group_out(pool, g, (const float *const *)wq, cur, hg, hu, b);
            loss = mse(cur, ref, nout);
        }
        if (i == 0) *loss_s1 = loss;
        if (isfinite(loss) && (loss < best || (loss == best && i < best_i))) {
            best = loss;
            best_i = i;
            memcpy(s, sc, (size_t)n_s * sizeof(float));
        }
    }
    *fallback = best_i < 0;
    *picked_duo = best_i >= n_grid;
    if (best_i < 0) {
        for (int64_t c = 0; c < n_s; c++) s[c] = 1.0f;
        *ratio = 0.0;
        *loss_best = NAN;
    } else {
        *ratio = (double)(best_i % n_grid) / n_grid;
        *loss_best = best;
    }
out:
    for (int i = 0; i < 3; i++) free(wq[i]);
    free(bt.x); free(bt.w); free(bt.h); free(bt.down); free(bc.x);
    free(ref); free(cur); free(hg); free(hu); free(sc); free(sx); free(wm); free(wm_in); free(loss1); free(xc);
    return rc;
}

/* ---- clipping search (llm-awq auto_clip) ---- */

struct gram_job {
    const float *x;
    int64_t n, cols;
    int G;
    float *tmp;
    double *gram;
};

static void gram_worker(void *ctx, int ti, int nt)
{
    struct gram_job *j = ctx;
    int G = j->G;
    int64_t lo, hi;
    llmq_split(j->cols / G, ti, nt, 1, &lo, &hi);
    for (int64_t k = lo; k < hi; k++) {
        float *t = j->tmp + (size_t)k * G * G;
        double *g = j->gram + (size_t)k * G * G;
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, G, (int)j->n, 1.0f, j->x + k * G, (int)j->cols, 0.0f, t, G);
        for (int a = 0; a < G; a++)
            for (int b = a; b < G; b++) g[(size_t)a * G + b] += t[(size_t)a * G + b];
    }
}

void llmq_awq_gram_add(llmq_pool *pool, const float *x, int64_t n, int64_t cols, int group, float *tmp, double *gram)
{
    if (n < 1) return;
    for (int64_t i = 0; i < n; i += INT32_MAX / 2) {   /* ssyrk takes int sizes */
        struct gram_job j = { x + i * cols, LLMQ_MIN(n - i, INT32_MAX / 2), cols, group, tmp, gram };
        llmq_pool_run(pool, gram_worker, &j);
    }
}

/* LAPACK (in OpenBLAS): symmetric eigendecomposition, Cholesky. */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
extern void dsyev_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
                   double *work, const int *lwork, int *info);

struct factor_job {
    const double *gram;
    int64_t nb;
    int G;
    const float *s;
    double count;
    float *r;
    double *work;     /* per thread: G*G + G + lwork */
    int lwork;
    int *failed;      /* per thread */
};

static void factor_worker(void *ctx, int ti, int nt)
{
    struct factor_job *j = ctx;
    int G = j->G, info = 0;
    int64_t lo, hi;
    llmq_split(j->nb, ti, nt, 1, &lo, &hi);
    double *A = j->work + (size_t)ti * ((size_t)G * G + G + j->lwork), *ev = A + (size_t)G * G, *wk = ev + G;
    for (int64_t k = lo; k < hi; k++) {
        const double *g = j->gram + (size_t)k * G * G;
        const float *s = j->s ? j->s + k * G : NULL;
        /* the upper triangle (row-major) is the lower one column-major: either
         * way the symmetric matrix */
        for (int a = 0; a < G; a++)
            for (int b = a; b < G; b++) {
                double v = g[(size_t)a * G + b] / j->count;
                if (s) v /= (double)s[a] * (double)s[b];
                A[(size_t)a * G + b] = A[(size_t)b * G + a] = v;
            }
        dsyev_("V", "U", &G, A, &G, ev, wk, &j->lwork, &info);
        float *r = j->r + (size_t)k * G * G;
        if (info) { j->failed[ti] = 1; memset(r, 0, (size_t)G * G * sizeof(float)); continue; }
        /* column-major eigenvector i is A[i * G .. i * G + G): R's row i is
         * sqrt(lambda_i) v_i, so R^T R = sum_i lambda_i v_i v_i^T */
        for (int i = 0; i < G; i++) {
            double l = ev[i] > 0.0 && isfinite(ev[i]) ? sqrt(ev[i]) : 0.0;
            for (int c = 0; c < G; c++) r[(size_t)i * G + c] = (float)(l * A[(size_t)i * G + c]);
        }
    }
}

int llmq_awq_gram_factor(llmq_pool *pool, const double *gram, int64_t cols, int group, const float *s, double count,
                         float *r, llmq_err *err)
{
    if (group < 1 || cols % group || !(count > 0))
        return llmq_errorf(err, LLMQ_EUSAGE, "awq: Gram factor needs columns a multiple of the group and tokens");
    int nt = llmq_pool_size(pool), lwork = 66 * group;
    double *work = llmq_calloc((size_t)nt, ((size_t)group * group + group + lwork) * sizeof(double), err);
    int *failed = work ? llmq_calloc((size_t)nt, sizeof(int), err) : NULL;
    if (!failed) { free(work); return err->code; }
    struct factor_job j = { gram, cols / group, group, s, count, r, work, lwork, failed };
    llmq_pool_run(pool, factor_worker, &j);
    int bad = 0;
    for (int i = 0; i < nt; i++) bad |= failed[i];
    free(work);
    free(failed);
    if (bad) return llmq_errorf(err, LLMQ_ENONFINITE, "awq: activation Gram matrix has no eigendecomposition (non-finite activations?)");
    return LLMQ_OK;
}

struct clip_job {
    const float *w, *r;
    int64_t rows, cols;
    const llmq_awq_qcfg *q;
    int steps;
    double max_shrink;
    int bf16;                                        /* products on llmq_gemm_bf16_pairs */
    float tscale;                                    /* NV: the tensor scale of w */
    int64_t keep;                                    /* NV: the (row * groups + group) never clipped, or -1 */
    float *clip;
    double *err_before, *err_after, *shrink_sum;   /* (threads) */
    int64_t *n_clipped;                              /* (threads) */
    float *buf;                                      /* per thread scratch */
    size_t buf_per;
};

#define CLIP_ROWS 64

static void clip_worker(void *ctx, int ti, int nt)
{
    struct clip_job *j = ctx;
    int G = j->q->group;
    int64_t ng = j->cols / G, lo, hi;
    llmq_split(j->rows, ti, nt, 1, &lo, &hi);
    float *D = j->buf + (size_t)ti * j->buf_per;          /* (CLIP_ROWS, G) */
    float *E = D + CLIP_ROWS * G;                           /* (G, CLIP_ROWS) */
    float *c = E + (size_t)G * CLIP_ROWS;                   /* (CLIP_ROWS) */
    float *amax = c + CLIP_ROWS;                            /* (CLIP_ROWS) */
    double *best = (double *)(amax + CLIP_ROWS);            /* (CLIP_ROWS) */
    float *fq = (float *)(best + CLIP_ROWS);                /* (G) */
    uint16_t *Rb = (uint16_t *)(fq + G);                    /* bf16: (G, G) R_k rounded */
    uint16_t *Rp = Rb + (size_t)G * G;                      /* bf16: (G, G) the same in pairs */
    uint16_t *Db = Rp + (size_t)G * G;                      /* bf16: (CLIP_ROWS, G) */
    double eb = 0, ea = 0, ss = 0;
    int64_t nc = 0;
    float bh[CLIP_ROWS], bl[CLIP_ROWS], ch[CLIP_ROWS], cl2[CLIP_ROWS], mhi[CLIP_ROWS], mlo[CLIP_ROWS], base[CLIP_ROWS];
    for (int64_t k = 0; k < ng; k++) {
        const float *rk = j->r + (size_t)k * G * G;
        /* leading zero rows of R_k add nothing to any error: skipped */
        int z0 = 0;
        while (z0 < G - 1) {
            int nz = 0;
            for (int e = 0; e < G && !nz; e++) nz = rk[(size_t)z0 * G + e] != 0.0f;
            if (nz) break;
            z0++;
        }
        const int M = G - z0;
        rk += (size_t)z0 * G;
        /* bf16: R_k packed once per group, E (nr, M) = D R_k^T row-major */
        if (j->bf16) {
            llmq_round_bf16(rk, (int64_t)M * G, Rb);
            llmq_bf16_pack_pairs(Rb, M, G, Rp);
        }
        for (int64_t r0 = lo; r0 < hi; r0 += CLIP_ROWS) {
            int nr = (int)LLMQ_MIN(CLIP_ROWS, hi - r0);
            for (int i = 0; i < nr; i++) {
                const float *w = j->w + (r0 + i) * j->cols + k * G;
                float mx = 0, mn = 0;
                for (int e = 0; e < G; e++) { mx = fmaxf(mx, w[e]); mn = fminf(mn, w[e]); }
                mhi[i] = mx; mlo[i] = -mn;
                amax[i] = fmaxf(mx, -mn);
            }
            /* phase 0: [-c, c] with c = max|w| (1 - i max_shrink / steps), as
             * llm-awq; then, from the best, the lower end alone (phase 1) and
             * the upper end alone (phase 2) on the same grid below their own
             * extremes: an asymmetric group's two ends need not shrink alike.
             * Phases 3 and 4 refine the lower and the upper end again, on a
             * grid ten times finer spanning one coarse step either side of
             * the best: with an integer zero point a small move of one end
             * realigns the whole code grid, so the error is rough in it. */
            for (int phase = 0; phase < 5; phase++) {
                /* a phase's grid hangs from where the phase started, not
                 * from a best that moves during it */
                if (phase > 0)
                    for (int i = 0; i < nr; i++) base[i] = phase & 1 ? fminf(mlo[i], bl[i]) : fminf(mhi[i], bh[i]);
                for (int step = 0; step < j->steps; step++) {
                    /* after phase 0, step 0 and the fine grid's middle (f = 1)
                     * would score the best again: skipped */
                    if (phase > 0 && (step == 0 || (phase >= 3 && step == j->steps / 2))) continue;
                    double shrink = 1.0 - step * j->max_shrink / j->steps;
                    double f = phase < 3 ? shrink : 1.0 + (step - j->steps / 2) * j->max_shrink / j->steps / (j->steps / 2);
                    for (int i = 0; i < nr; i++) {
                        const float *w = j->w + (r0 + i) * j->cols + k * G;
                        if (phase == 0) {
                            ch[i] = cl2[i] = step == 0 ? INFINITY : (float)(amax[i] * shrink);
                        } else if (phase & 1) {
                            ch[i] = bh[i];
                            cl2[i] = (float)(base[i] * f);
                        } else {
                            cl2[i] = bl[i];
                            ch[i] = (float)(base[i] * f);
                        }
                        float pr[2] = { ch[i], cl2[i] };
                        llmq_awq_fake_row_t(j->q, j->tscale, w, G, pr, fq);
                        for (int e = 0; e < G; e++) D[i * G + e] = w[e] - fq[e];
                    }
                    if (j->bf16) {
                        llmq_round_bf16(D, (int64_t)nr * G, Db);
                        llmq_gemm_bf16_pairs(Db, nr, Rp, M, G, E, M);
                    } else {
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, nr, G, 1.0f, rk, G, D, G, 0.0f, E, CLIP_ROWS);
                    }
                    for (int i = 0; i < nr; i++) {
                        double e2 = 0.0;
                        if (j->bf16)
                            for (int t = 0; t < M; t++) e2 += (double)E[i * M + t] * E[i * M + t];
                        else
                            for (int t = 0; t < M; t++) e2 += (double)E[t * CLIP_ROWS + i] * E[t * CLIP_ROWS + i];
                        if (phase == 0 && step == 0) { best[i] = e2; eb += isfinite(e2) ? e2 : 0; bh[i] = bl[i] = INFINITY; }
                        else if (e2 < best[i] && (r0 + i) * ng + k != j->keep) { best[i] = e2; bh[i] = ch[i]; bl[i] = cl2[i]; }
                    }
                }
            }
            for (int i = 0; i < nr; i++) {
                j->clip[2 * ((r0 + i) * ng + k)] = bh[i];
                j->clip[2 * ((r0 + i) * ng + k) + 1] = bl[i];
                c[i] = fminf(bh[i], bl[i]);
                ea += isfinite(best[i]) ? best[i] : 0;
                if (isfinite(c[i])) {
                    nc++;
                    ss += amax[i] > 0.0f ? c[i] / amax[i] : 1.0;
                } else {
                    ss += 1.0;
                }
            }
        }
    }
    j->err_before[ti] = eb;
    j->err_after[ti] = ea;
    j->shrink_sum[ti] = ss;
    j->n_clipped[ti] = nc;
}

int llmq_awq_search_clip(llmq_pool *pool, const float *w, int64_t rows, int64_t cols, const float *r,
                         const llmq_awq_qcfg *q, int steps, double max_shrink, int bf16, float *clip,
                         double *before, double *after, double *mean_shrink, double *frac, llmq_err *err)
{
    if (rows < 1 || cols > INT32_MAX || cols % q->group)
        return llmq_errorf(err, LLMQ_EUSAGE, "awq: clip search needs rows and columns a multiple of the group");
    int nt = llmq_pool_size(pool);
    /* D, E, c, amax, best (doubles: 2 floats each), fq, then Rb, Rp and Db (bf16: half a float each) */
    size_t per = (size_t)CLIP_ROWS * q->group + (size_t)q->group * CLIP_ROWS + 4 * CLIP_ROWS + (size_t)q->group +
                 ((size_t)2 * q->group * q->group + (size_t)CLIP_ROWS * q->group) / 2 + 16;
    float *buf = falloc(nt, (int64_t)per, err);
    double *d = buf ? llmq_calloc((size_t)nt * 3, sizeof(double), err) : NULL;
    int64_t *nc = d ? llmq_calloc((size_t)nt, sizeof(int64_t), err) : NULL;
    if (!nc) { free(buf); free(d); return err->code; }
    /* NV: the tensor scale of w, kept by never clipping the group of its
     * (first) max */
    float tscale = 1.0f, amax = 0.0f;
    int64_t keep = -1;
    if (llmq_wtype_is_nv(q->btype)) {
        for (int64_t i = 0; i < rows * cols; i++)
            if (fabsf(w[i]) > amax) { amax = fabsf(w[i]); keep = (i / cols) * (cols / q->group) + (i % cols) / q->group; }
        tscale = llmq_block_tscale(q->btype, amax);
    }
    struct clip_job j = { w, r, rows, cols, q, steps < 1 ? 1 : steps, max_shrink, bf16 && llmq_has_bf16_dot(), tscale, keep,
                          clip, d, d + nt, d + 2 * nt, nc, buf, per };
    llmq_pool_run(pool, clip_worker, &j);
    double eb = 0, ea = 0, ss = 0;
    int64_t c = 0;
    for (int i = 0; i < nt; i++) { eb += d[i]; ea += d[nt + i]; ss += d[2 * nt + i]; c += nc[i]; }
    double cells = (double)rows * (double)(cols / q->group);
    *before = eb / (double)rows;
    *after = ea / (double)rows;
    *mean_shrink = cells > 0 ? ss / cells : 1.0;
    *frac = cells > 0 ? (double)c / cells : 0.0;
    free(buf); free(d); free(nc);
    return LLMQ_OK;
}

/* ---- one decoder layer over a window (fp32) ---- */

typedef struct {
    llmq_wmat w[LLMQ_AWQ_NLIN];
    const float *b[LLMQ_AWQ_NLIN];
    const float *attn_norm, *mlp_norm;
} fwd_w;

typedef struct {
    const llmq_config *c;
    llmq_pool *pool;
    int T;
    float *xn, *q, *k, *v, *att, *xmid, *hb, *hb2, *scores, *cs, *sn;
    uint16_t *xb;   /* act_bf16: (T, widest input) a linear's input rounded to bf16, else NULL */
} fwd_ctx;

static void fwd_free(fwd_ctx *f)
{
    float *b[] = { f->xn, f->q, f->k, f->v, f->att, f->xmid, f->hb, f->hb2, f->scores, f->cs, f->sn };
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(b); i++) free(b[i]);
    free(f->xb);
    memset(f, 0, sizeof *f);
}

static int fwd_init(fwd_ctx *f, const llmq_config *c, llmq_pool *pool, int T, int act_bf16, llmq_err *err)
{
    memset(f, 0, sizeof *f);
    f->c = c;
    f->pool = pool;
    f->T = T;
    int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    if (!(f->xn = falloc(T, c->hidden, err)) || !(f->q = falloc(T, qd, err)) || !(f->k = falloc(T, kvd, err)) ||
        !(f->v = falloc(T, kvd, err)) || !(f->att = falloc(T, qd, err)) || !(f->xmid = falloc(T, c->hidden, err)) ||
        !(f->hb = falloc(T, c->intermediate, err)) || !(f->hb2 = falloc(T, LLMQ_MAX(c->intermediate, c->hidden), err)) ||
        !(f->scores = falloc((int64_t)llmq_pool_size(pool) * T, T, err)) ||
        !(f->cs = falloc(T, c->head_dim / 2, err)) || !(f->sn = falloc(T, c->head_dim / 2, err)) ||
        (act_bf16 && !(f->xb = llmq_calloc((size_t)T * (size_t)LLMQ_MAX(LLMQ_MAX(c->hidden, c->intermediate), qd),
                                           sizeof(uint16_t), err)))) {
        fwd_free(f);
        return err->code;
    }
    llmq_op_rope_tables(T, c->head_dim, c, f->cs, f->sn);   /* the runner's */
    return LLMQ_OK;
}

/* AWQ's side of the layer pass (forward.h): fp32 GEMMs of the weights
 * under search, attention within the window. */
struct fwd_step {
    fwd_ctx *f;
    const fwd_w *L;
};

static void fwd_linear(void *ctx, int k, const float *X, int T, float *Y)
{
    struct fwd_step *s = ctx;
    const llmq_wmat *W = &s->L->w[k];
    const float *bias = s->L->b[k];
    if (s->f->xb && W->type == LLMQ_W_BF16) {   /* the source's bf16 weights: a bf16 dot product */
        llmq_round_bf16(X, (int64_t)T * W->cols, s->f->xb);
        llmq_matmul_bf16(s->f->pool, W, s->f->xb, T, Y);
    } else {
        llmq_matmul(s->f->pool, W, X, T, Y);
    }
    if (bias)
        for (int t = 0; t < T; t++)
            for (int64_t i = 0; i < W->rows; i++) Y[(size_t)t * W->rows + i] += bias[i];
}

/* Causal attention, threaded over query heads: the training ops' head
 * function, each thread with its own (T, T) probabilities. */
static void attn_worker(void *ctx, int ti, int nt)
{
    fwd_ctx *f = ctx;
    const llmq_config *c = f->c;
    llmq_attn_shape sh = { f->T, c->n_heads, c->n_kv_heads, c->head_dim, c->sliding_window };
    int64_t h0, h1;
    llmq_split(c->n_heads, ti, nt, 1, &h0, &h1);
    for (int h = (int)h0; h < (int)h1; h++)
        llmq_op_attn_head_fwd(&sh, h, f->q, f->k, f->v, f->scores + (size_t)ti * f->T * f->T, f->att);
}

static void fwd_attend(void *ctx, llmq_layer_acts *a)
{
    struct fwd_step *s = ctx;
    (void)a;   /* a's q, k, v and att are f's */
    llmq_pool_run(s->f->pool, attn_worker, s->f);
}

/* x (T, hidden): the layer's input, replaced by its output when full; with
 * full = 0 the pass stops once the down_proj input has been observed. */
static void fwd(fwd_ctx *f, const fwd_w *L, float *x, int full, llmq_observer obs, void *octx)
{
    struct fwd_step s = { f, L };
    llmq_layer_pass p = { .c = f->c, .T = f->T, .attn_norm = L->attn_norm, .mlp_norm = L->mlp_norm,
                          .cs = f->cs, .sn = f->sn, .linear = fwd_linear, .attend = fwd_attend, .ctx = &s,
                          .observe = obs, .obs_ctx = octx };
    llmq_layer_acts a = { .xn1 = f->xn, .q = f->q, .k = f->k, .v = f->v, .att = f->att, .xmid = f->xmid,
                          .xn2 = f->xn, .gate = f->hb, .up = f->hb2, .hact = f->hb, .tmp = f->hb2 };
    llmq_layer_forward(&p, x, &a, full ? x : NULL);
}

/* ---- exact losses for q/k/v and o_proj ---- */

/* The loss of a linear group is mean_t |dW x_t|^2 = |R dW^T|^2 / ... with
 * R^T R = the Gram matrix of the inputs over the tokens: the `dim` rows of R
 * serve as pseudo-tokens that stand for every calibration token at once.
 * Where dim is no more than the token subsample this is exact and no
 * dearer, so the q/k/v and o_proj searches use it then. */

struct full_job {
    const float *x;
    int64_t n, dim;
    float *tmp;
    double *g;
};

#define FULL_CHUNK 64

static void full_worker(void *ctx, int ti, int nt)
{
    struct full_job *j = ctx;
    int64_t d = j->dim;
    for (int64_t r0 = (int64_t)ti * FULL_CHUNK; r0 < d; r0 += (int64_t)nt * FULL_CHUNK) {
        int64_t nr = LLMQ_MIN(FULL_CHUNK, d - r0);
        /* rows [r0, r0 + nr) of the upper triangle: X[:, r0:r0+nr]^T X[:, r0:] */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nr, (int)(d - r0), (int)j->n, 1.0f, j->x + r0, (int)d,
                    j->x + r0, (int)d, 0.0f, j->tmp + r0 * d + r0, (int)d);
        for (int64_t a = r0; a < r0 + nr; a++)
            for (int64_t b = a; b < d; b++) j->g[a * d + b] += j->tmp[a * d + b];
    }
}

static void full_gram_add(llmq_pool *pool, const float *x, int64_t n, int64_t dim, float *tmp, double *g)
{
    struct full_job j = { x, n, dim, tmp, g };
    if (n > 0 && n <= INT32_MAX) llmq_pool_run(pool, full_worker, &j);
}

/* R (dim, dim) upper triangular with R^T R = g / count + jitter (Cholesky,
 * LAPACK); the jitter (1e-9 of the largest diagonal, raised while the
 * factorization fails) keeps a singular Gram matrix factorable.  Returns
 * 0, or -1 when no jitter helps (non-finite activations). */
static int full_factor(const double *g, int64_t dim, double count, float *R, double *work)
{
    int n = (int)dim, info = 0;
    double dmax = 0.0;
    for (int64_t i = 0; i < dim; i++) dmax = fmax(dmax, g[i * dim + i] / count);
    if (!isfinite(dmax)) return -1;
    if (!(dmax > 0.0)) dmax = 1.0;
    for (double jit = 1e-9; jit < 1.0; jit *= 100.0) {
        for (int64_t a = 0; a < dim; a++)
            for (int64_t b = a; b < dim; b++) {
                double v = g[a * dim + b] / count + (a == b ? jit * dmax : 0.0);
                work[a * dim + b] = work[b * dim + a] = v;
            }
        dpotrf_("U", &n, work, &n, &info);
        if (info) continue;
        /* column-major U(i, j), i <= j, sits at work[j * n + i] */
        for (int64_t i = 0; i < dim; i++)
            for (int64_t c = 0; c < dim; c++) R[i * dim + c] = c >= i ? (float)work[c * dim + i] : 0.0f;
        return 0;
    }
    return -1;
}

/* ---- the run ---- */

/* Statistics of the fp pass: sum |x| per channel and the subsampled rows. */
typedef struct {
    int64_t dim[LLMQ_AWQ_NGROUP];
    double *abs_sum[LLMQ_AWQ_NGROUP];
    float *rows[LLMQ_AWQ_NGROUP];       /* (S, dim) */
    double *gram[LLMQ_AWQ_NGROUP];      /* (dim / group, group, group): block Grams, NULL = none */
    float *gtmp;                         /* (max dim, group) */
    double *full[LLMQ_AWQ_NGROUP];       /* the whole Gram (dim, dim) of q/k/v and o (their search) and,
                                            with gptq, of every site; NULL = none */
    float *ftmp;                         /* (max dim, max dim) */
    float *rfull[2];                     /* their factors R (dim, dim), pseudo-tokens of the search */
    int rfull_ok[2];                     /* this layer's factor is there */
    int group;
    llmq_pool *pool;
    const int32_t *pick;                 /* positions in the current window, sorted */
    int n_pick, base;                    /* how many, index of the first in rows */
} stats;

static void stats_obs(void *ctx, int layer, llmq_site site, const float *x, int64_t T, int64_t dim)
{
    stats *s = ctx;
    (void)layer;
    if ((int)site >= LLMQ_AWQ_NGROUP) return;   /* k and v around RoPE */
    double *a = s->abs_sum[site];
    for (int t = 0; t < T; t++)
        for (int64_t c = 0; c < dim; c++) a[c] += fabsf(x[(size_t)t * dim + c]);
    for (int i = 0; i < s->n_pick; i++)
        memcpy(s->rows[site] + (size_t)(s->base + i) * dim, x + (size_t)s->pick[i] * dim, (size_t)dim * sizeof(float));
    if (s->gram[site]) llmq_awq_gram_add(s->pool, x, T, dim, s->group, s->gtmp, s->gram[site]);
    if (s->full[site]) full_gram_add(s->pool, x, T, dim, s->ftmp, s->full[site]);
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Source weights of linear k of layer l as fp32 (rows, cols), checked finite. */
static int load_lin(const llmq_model *m, int l, int k, float **out, llmq_err *err)
{
    const llmq_layer *L = &m->layers[l];
    const llmq_wmat *w = llmq_layer_w(L, k);
    float *p = falloc(w->rows, w->cols, err);
    if (!p) return err->code;
    for (int64_t r = 0; r < w->rows; r++) llmq_get_row(w, r, p + r * w->cols);
    for (int64_t i = 0; i < w->rows * w->cols; i++)
        if (!isfinite(p[i])) {
            free(p);
            return llmq_errorf(err, LLMQ_ENONFINITE, "%s: tensor 'model.layers.%d.%s.weight' has a non-finite value at row %" PRId64
                               ", column %" PRId64, m->path, l, lin_name(k), i / w->cols, i % w->cols);
        }
    *out = p;
    return LLMQ_OK;
}

static void model_fwd_w(const llmq_model *m, int l, fwd_w *fw)
{
    const llmq_layer *L = &m->layers[l];
    for (int k = 0; k < LLMQ_AWQ_NLIN; k++) { fw->w[k] = *llmq_layer_w(L, k); fw->b[k] = llmq_layer_b(L, k); }
    fw->attn_norm = L->attn_norm;
    fw->mlp_norm = L->mlp_norm;
}

/* Transformed (not yet clipped) values of linear k: scales folded. */
static void fold_lin(const llmq_model *m, const llmq_awq_layer *A, int k, float *w)
{
    const llmq_config *c = &m->cfg;
    int64_t rows = llmq_linear_rows(c, k), cols = llmq_linear_cols(c, k);
    const float *cm = NULL, *rd = NULL;
    float *tmp = NULL;
    switch (k) {
    case LLMQ_AWQ_Q: case LLMQ_AWQ_K: cm = A->s[LLMQ_AWQ_G_QKV]; break;
    case LLMQ_AWQ_V: cm = A->s[LLMQ_AWQ_G_QKV]; rd = A->s[LLMQ_AWQ_G_O]; break;
    case LLMQ_AWQ_O:
        tmp = malloc((size_t)cols * sizeof(float));
        if (tmp) llmq_awq_expand_kv(A->s[LLMQ_AWQ_G_O], c->n_heads, c->n_kv_heads, c->head_dim, tmp);
        cm = tmp;
        break;
    case LLMQ_AWQ_GATE: cm = A->s[LLMQ_AWQ_G_GATEUP]; break;
    case LLMQ_AWQ_UP: cm = A->s[LLMQ_AWQ_G_GATEUP]; rd = A->s[LLMQ_AWQ_G_DOWN]; break;
    default: cm = A->s[LLMQ_AWQ_G_DOWN]; break;
    }
    llmq_awq_transform(w, rows, cols, cm, rd, NULL, 0);
    free(tmp);
}

static float *vec_div(const float *v, const float *s, int64_t n, llmq_err *err)
{
    float *o = falloc(n, 1, err);
    if (o) for (int64_t i = 0; i < n; i++) o[i] = v[i] / s[i];
    return o;
}

void llmq_awq_release(llmq_awq_result *res)
{
    if (!res) return;
    for (int l = 0; res->layers && l < res->n_layers; l++) {
        for (int g = 0; g < LLMQ_AWQ_NGROUP; g++) free(res->layers[l].s[g]);
        for (int k = 0; k < LLMQ_AWQ_NLIN; k++) {
            free(res->layers[l].clip[k]);
            free(res->layers[l].codes[k]);
            free(res->layers[l].scales[k]);
            free(res->layers[l].zeros[k]);
            free(res->layers[l].bscales[k]);
        }
    }
    free(res->layers);
    memset(res, 0, sizeof *res);
}

/* Search and record layer l; W[k] are its fp32 source linears, replaced by
 * the folded ones; X* the subsampled inputs. */
static int search_layer(const llmq_model *m, const llmq_awq_opts *o, llmq_awq_layer *A, float **W, stats *st,
                        const double *xmean_all[LLMQ_AWQ_NGROUP], int S, double count, llmq_err *err)
{
    const llmq_config *c = &m->cfg;
    int rc;
    int64_t H = c->hidden, FF = c->intermediate, hd = c->head_dim, qd = (int64_t)c->n_heads * hd,
            kvd = (int64_t)c->n_kv_heads * hd;
    int64_t rows[LLMQ_AWQ_NLIN];
    for (int k = 0; k < LLMQ_AWQ_NLIN; k++) rows[k] = llmq_linear_rows(c, k);
    double ts = llmq_now();
    float *xm = falloc(LLMQ_MAX(LLMQ_MAX(H, FF), qd), 1, err);
    if (!xm) return err->code;
    for (int g = 0; g < LLMQ_AWQ_NGROUP; g++)
        if (!(A->s[g] = falloc(llmq_awq_scale_dim(c, g), 1, err))) { free(xm); return err->code; }
    for (int g = 0; g < LLMQ_AWQ_NGROUP; g++) {
        if (g == LLMQ_AWQ_G_DOWN && c->had_ff_block) {
            /* online Hadamard: down_proj reads h Q, and a scale of h Q would
             * have to fold into up_proj through Q: s = 1 (the clip search
             * below still runs) */
            for (int64_t j = 0; j < FF; j++) A->s[g][j] = 1.0f;
            A->ratio[g] = 0.0;
            A->duo[g] = A->fallback[g] = A->exact[g] = 0;
            A->loss_s1[g] = A->loss_best[g] = NAN;
            continue;
        }
        llmq_awq_group gr;
        memset(&gr, 0, sizeof gr);
        int exact = g < 2 && st->rfull_ok[g];
        gr.x = exact ? st->rfull[g] : st->rows[g];
        gr.n = exact ? st->dim[g] : S;
        gr.n_coarse = exact ? 0 : S / SEARCH_COARSE;
        gr.act_bf16 = o->act_bf16;
        gr.in = st->dim[g];
        if (g == LLMQ_AWQ_G_O) {
            /* one scale per KV channel: the mean |x| of the query heads sharing it */
            int rep = c->n_heads / c->n_kv_heads;
            for (int64_t j = 0; j < kvd; j++) {
                double a = 0;
                int64_t kh = j / hd, i = j % hd;
                for (int r = 0; r < rep; r++) a += xmean_all[g][(kh * rep + r) * hd + i];
                xm[j] = (float)(a / rep);
            }
            gr.heads = c->n_heads;
            gr.kv_heads = c->n_kv_heads;
            gr.head_dim = (int)hd;
        } else {
            for (int64_t j = 0; j < st->dim[g]; j++) xm[j] = (float)xmean_all[g][j];
        }
        gr.xmean = xm;
        switch (g) {
        case LLMQ_AWQ_G_QKV:
            gr.n_w = 3;
            for (int i = 0; i < 3; i++) { gr.w[i] = W[i]; gr.rows[i] = rows[i]; }
            break;
        case LLMQ_AWQ_G_O: gr.n_w = 1; gr.w[0] = W[LLMQ_AWQ_O]; gr.rows[0] = H; break;
        case LLMQ_AWQ_G_GATEUP:
            gr.n_w = 2;
            gr.w[0] = W[LLMQ_AWQ_GATE]; gr.rows[0] = FF;
            gr.w[1] = W[LLMQ_AWQ_UP]; gr.rows[1] = FF;
            gr.down = W[LLMQ_AWQ_DOWN]; gr.down_rows = H;
            gr.ff_block = c->had_ff_block;
            break;
        default: gr.n_w = 1; gr.w[0] = W[LLMQ_AWQ_DOWN]; gr.rows[0] = H; break;
        }
        if ((rc = llmq_awq_search_scale(o->pool, &gr, &o->q, o->n_grid, o->duo, A->s[g], &A->ratio[g], &A->duo[g],
                                        &A->loss_s1[g], &A->loss_best[g], &A->fallback[g], err))) { free(xm); return rc; }
        if (exact) {   /* |R dW^T|^2 / (dim rows) -> the MSE per output over the tokens */
            A->loss_s1[g] *= (double)st->dim[g];
            A->loss_best[g] *= (double)st->dim[g];
        }
        A->exact[g] = exact;
    }
    free(xm);
    /* fold into the fp32 copies and the recorded inputs (paper eq. 5: Q(W s) (s^-1 X)) */
    for (int k = 0; k < LLMQ_AWQ_NLIN; k++) fold_lin(m, A, k, W[k]);
    float *so = falloc(qd, 1, err);
    if (!so) return err->code;
    llmq_awq_expand_kv(A->s[LLMQ_AWQ_G_O], c->n_heads, c->n_kv_heads, (int)hd, so);
    double tc = llmq_now();
    A->sec_scale = tc - ts;
    /* clip search on every token: the Gram factors of each site's inputs as
     * the folded weights see them (x / s) */
    const float *site_s[LLMQ_AWQ_NGROUP] = { A->s[LLMQ_AWQ_G_QKV], so, A->s[LLMQ_AWQ_G_GATEUP], A->s[LLMQ_AWQ_G_DOWN] };
    float *rf[LLMQ_AWQ_NGROUP] = { 0 };
    rc = LLMQ_OK;
    for (int k = 0; k < LLMQ_AWQ_NLIN && !rc; k++) {
        A->clip_mean[k] = 1.0;
        if (!o->clip || (!o->clip_qk && (k == LLMQ_AWQ_Q || k == LLMQ_AWQ_K))) continue;
        int site = (int)llmq_linears[k].input;
        int64_t in = st->dim[site];
        if (!rf[site]) {
            if (!(rf[site] = falloc(in, o->q.group, err))) { rc = err->code; break; }
            if ((rc = llmq_awq_gram_factor(o->pool, st->gram[site], in, o->q.group, site_s[site], count, rf[site], err)))
                break;
        }
        if (!(A->clip[k] = falloc(rows[k], 2 * (in / o->q.group), err))) { rc = err->code; break; }
        rc = llmq_awq_search_clip(o->pool, W[k], rows[k], in, rf[site], &o->q, o->clip_steps, o->max_shrink, o->act_bf16,
                                  A->clip[k],
                                  &A->clip_before[k], &A->clip_after[k], &A->clip_mean[k], &A->clip_frac[k], err);
    }
    for (int g = 0; g < LLMQ_AWQ_NGROUP; g++) free(rf[g]);
    free(so);
    if (rc) return rc;
    A->sec_clip = llmq_now() - tc;
    return LLMQ_OK;
}

/* Step 4 for linear k: its codes by gptq on the grid of the clipped folded
 * weights w (overwritten).  hs[site] is the factor of the site's Gram matrix
 * divided by the folded scales, made by the first linear of the site that
 * needs it and shared by the others (q, k, v; gate, up).  q holds round to
 * nearest on that grid on entry (for the loss it is compared by) and the
 * gptq weights on return. */
static int gptq_lin(const llmq_config *c, const llmq_awq_opts *o, llmq_awq_layer *A, int k, float *w, int64_t rows,
                    int64_t cols, const stats *st, double count, llmq_gptq_h **hs, float *q, llmq_err *err)
{
    int site = (int)llmq_linears[k].input;
    float *w0 = NULL;
    int rc = LLMQ_OK;
    if (!hs[site]) {
        const float *div = A->s[site];
        float *so = NULL;
        if (site == LLMQ_AWQ_G_O) {
            if (!(so = falloc(cols, 1, err))) return err->code;
            llmq_awq_expand_kv(A->s[site], c->n_heads, c->n_kv_heads, c->head_dim, so);
            div = so;
        }
        rc = llmq_gptq_h_new(&hs[site], st->full[site], cols, count, div, o->gptq_damp, err);
        free(so);
        if (rc) return rc;
    }
    int64_t ng = cols / o->q.group;
    const int block = llmq_awq_is_block(&o->q);
    const int64_t cb = block && !llmq_wtype_is_block4(o->q.btype) ? cols : cols / 2;   /* code bytes per row */
    if (!(w0 = falloc(rows, cols, err)) || !(A->codes[k] = llmq_calloc((size_t)(rows * cb), 1, err)) ||
        (!block && !(A->scales[k] = llmq_calloc((size_t)(rows * ng), sizeof(uint16_t), err))) ||
        (block && !(A->bscales[k] = llmq_calloc((size_t)(rows * ng), 1, err))) ||
        (!block && !o->q.sym && !(A->zeros[k] = llmq_calloc((size_t)(rows * ng), 1, err)))) { rc = err->code; goto out; }
    memcpy(w0, w, (size_t)(rows * cols) * sizeof(float));
    A->gptq_loss[k][0] = llmq_gptq_loss(hs[site], w0, q, rows);
    if (block) {
        rc = llmq_gptq_quantize_block(o->pool, o->q.btype, o->q.rule, hs[site], w, rows, A->clip[k], A->codes[k],
                                      A->bscales[k], &A->tscale[k], q, NULL, err);
    } else {
        llmq_gptq_cfg g = { o->q.bits, o->q.group, o->q.sym };
        rc = llmq_gptq_quantize(o->pool, &g, hs[site], w, rows, A->clip[k], A->codes[k], A->scales[k], A->zeros[k], q,
                                NULL, err);
    }
    if (rc) goto out;
    A->gptq_loss[k][1] = llmq_gptq_loss(hs[site], w0, q, rows);
out:
    free(w0);
    return rc;
}

/* What a run holds across layers. */
typedef struct {
    const llmq_model *m;
    const llmq_awq_opts *o;
    int samples, T;          /* calibration windows of T tokens that are read (max(SW, LW)) */
    int SW, LW, S;           /* statistics windows, loss windows, subsampled tokens */
    int64_t pool_tokens;     /* SW * T */
    float *X;                /* (samples, T, hidden) the current layer's inputs */
    float *ref;              /* (max(LW, 1), T, hidden) its fp outputs on the loss windows */
    float *xin;              /* propagate_fp: (LW, T, hidden) the loss windows' inputs, or NULL */
    int32_t *perm;           /* (pool_tokens): the first S, sorted, are the token subsample */
    int32_t *pick;           /* (T) subsampled positions of one window */
    double *fwork;           /* Cholesky work of the exact q/k/v and o losses */
    stats st;
    fwd_ctx f;
    float *W[LLMQ_AWQ_NLIN]; /* the layer's source weights, fp32 */
    float *Q[LLMQ_AWQ_NLIN]; /* their quantized values */
    float *nrm[4];           /* norms and v/up biases with the scales folded */
    llmq_gptq_h *gh[LLMQ_AWQ_NGROUP];   /* gptq: one factor per site, for the layer being quantized */
} run;

static void run_release(run *r)
{
    stats *st = &r->st;
    for (int k = 0; k < LLMQ_AWQ_NLIN; k++) { free(r->W[k]); free(r->Q[k]); }
    for (int i = 0; i < 4; i++) free(r->nrm[i]);
    for (int g = 0; g < LLMQ_AWQ_NGROUP; g++) { free(st->abs_sum[g]); free(st->rows[g]); free(st->gram[g]); }
    for (int g = 0; g < LLMQ_AWQ_NGROUP; g++) { free(st->full[g]); llmq_gptq_h_free(r->gh[g]); }
    for (int g = 0; g < 2; g++) free(st->rfull[g]);
    free(st->gtmp);
    free(st->ftmp);
    free(r->fwork);
    free(r->perm);
    free(r->pick);
    free(r->X);
    free(r->ref);
    free(r->xin);
    fwd_free(&r->f);
}

/* Buffers, the embedded windows and the token subsample. */
static int run_init(run *r, const llmq_model *m, const int32_t *tokens, int samples, int T, const llmq_awq_opts *o,
                    llmq_err *err)
{
    const llmq_config *c = &m->cfg;
    int64_t H = c->hidden, FF = c->intermediate, qd = (int64_t)c->n_heads * c->head_dim;
    stats *st = &r->st;
    memset(r, 0, sizeof *r);
    r->m = m;
    r->o = o;
    r->T = T;
    r->SW = o->stat_windows > 0 && o->stat_windows < samples ? o->stat_windows : samples;
    r->LW = LLMQ_MIN(o->loss_windows, samples);
    /* a window past both is never read: it is neither embedded nor run */
    r->samples = samples = LLMQ_MAX(r->SW, r->LW);
    r->pool_tokens = (int64_t)r->SW * T;
    r->S = (int)LLMQ_MIN((int64_t)o->search_tokens, r->pool_tokens);
    if (fwd_init(&r->f, c, o->pool, T, o->act_bf16, err)) return err->code;
    if (!(r->X = falloc((int64_t)samples * T, H, err)) || !(r->ref = falloc((int64_t)LLMQ_MAX(r->LW, 1) * T, H, err)) ||
        !(r->perm = llmq_calloc((size_t)r->pool_tokens, sizeof *r->perm, err)) ||
        !(r->pick = llmq_calloc((size_t)T, sizeof *r->pick, err)) ||
        (o->propagate_fp && r->LW > 0 && !(r->xin = falloc((int64_t)r->LW * T, H, err))))
        return err->code;
    for (int64_t i = 0; i < (int64_t)samples * T; i++) llmq_get_row(&m->embed, tokens[i], r->X + i * H);
    /* the token subsample: S distinct positions of the statistics windows */
    uint64_t rs = o->seed;
    for (int64_t i = 0; i < r->pool_tokens; i++) r->perm[i] = (int32_t)i;
    for (int i = 0; i < r->S; i++) {
        int64_t j = i + (int64_t)llmq_rand_below(&rs, (uint64_t)(r->pool_tokens - i));
        int32_t t = r->perm[i]; r->perm[i] = r->perm[j]; r->perm[j] = t;
    }
    qsort(r->perm, (size_t)r->S, sizeof *r->perm, cmp_i32);
    st->dim[0] = H; st->dim[1] = qd; st->dim[2] = H; st->dim[3] = FF;
    for (int g = 0; g < LLMQ_AWQ_NGROUP; g++)
        if (!(st->abs_sum[g] = llmq_calloc((size_t)st->dim[g], sizeof(double), err)) ||
            !(st->rows[g] = falloc(r->S, st->dim[g], err)) ||
            (o->clip && !(st->gram[g] = llmq_calloc((size_t)st->dim[g], (size_t)o->q.group * sizeof(double), err))))
            return err->code;
    st->group = o->q.group;
    st->pool = o->pool;
    int64_t fmax_dim = 0, rmax_dim = 0;
    for (int g = 0; g < LLMQ_AWQ_NGROUP; g++) {
        int factor = g < 2 && st->dim[g] <= r->S;
        if (!factor && !o->gptq) continue;
        if (!(st->full[g] = llmq_calloc((size_t)(st->dim[g] * st->dim[g]), sizeof(double), err)) ||
            (factor && !(st->rfull[g] = falloc(st->dim[g], st->dim[g], err))))
            return err->code;
        fmax_dim = LLMQ_MAX(fmax_dim, st->dim[g]);
        if (factor) rmax_dim = LLMQ_MAX(rmax_dim, st->dim[g]);
    }
    if ((fmax_dim && !(st->ftmp = falloc(fmax_dim, fmax_dim, err))) ||
        (rmax_dim && !(r->fwork = llmq_calloc((size_t)(rmax_dim * rmax_dim), sizeof(double), err))) ||
        (o->clip && !(st->gtmp = falloc(LLMQ_MAX(LLMQ_MAX(H, FF), qd), o->q.group, err))))
        return err->code;
    return LLMQ_OK;
}

/* 1. fp statistics of the layer's inputs: mean |x| per channel into
 * xmean, the subsampled rows, the Grams.  With propagate_fp the pass runs
 * the whole float layer, in place, on every window: X becomes the next
 * layer's inputs (the loss windows' inputs kept in xin first). */
static void layer_stats(run *r, const fwd_w *fw, const double **xmean)
{
    int full = r->o->propagate_fp;
    stats *st = &r->st;
    int T = r->T;
    int64_t H = r->m->cfg.hidden;
    for (int g = 0; g < LLMQ_AWQ_NGROUP; g++) {
        memset(st->abs_sum[g], 0, (size_t)st->dim[g] * sizeof(double));
        if (st->gram[g]) memset(st->gram[g], 0, (size_t)st->dim[g] * (size_t)r->o->q.group * sizeof(double));
        if (st->full[g]) memset(st->full[g], 0, (size_t)(st->dim[g] * st->dim[g]) * sizeof(double));
    }
    int pi = 0;
    for (int w = 0; w < r->SW; w++) {
        st->base = pi;
        st->n_pick = 0;
        while (pi < r->S && r->perm[pi] < (int64_t)(w + 1) * T) r->pick[st->n_pick++] = r->perm[pi++] - w * T;
        st->pick = r->pick;
        if (full && w < r->LW) memcpy(r->xin + (size_t)w * T * H, r->X + (size_t)w * T * H, (size_t)T * H * sizeof(float));
        fwd(&r->f, fw, r->X + (size_t)w * T * H, full, stats_obs, st);
    }
    for (int w = r->SW; full && w < r->samples; w++) {
        if (w < r->LW) memcpy(r->xin + (size_t)w * T * H, r->X + (size_t)w * T * H, (size_t)T * H * sizeof(float));
        fwd(&r->f, fw, r->X + (size_t)w * T * H, 1, NULL, NULL);
    }
    for (int g = 0; g < LLMQ_AWQ_NGROUP; g++) {
        for (int64_t j = 0; j < st->dim[g]; j++) st->abs_sum[g][j] /= (double)r->pool_tokens;
        xmean[g] = st->abs_sum[g];
    }
    for (int g = 0; g < 2; g++)
        st->rfull_ok[g] = st->rfull[g] && !full_factor(st->full[g], st->dim[g], (double)r->pool_tokens, st->rfull[g], r->fwork);
}

/* The layer's inputs on loss window w: X before the layer ran, xin after. */
static const float *loss_input(const run *r, int w)
{
    return (r->xin ? r->xin : r->X) + (size_t)w * r->T * r->m->cfg.hidden;
}

/* The fp outputs of the loss windows into ref, and the output error of
 * round to nearest of the source weights (A->out_rtn). */
static int layer_rtn_loss(run *r, int l, const fwd_w *fw, llmq_awq_layer *A, llmq_err *err)
{
    const llmq_config *c = &r->m->cfg;
    int T = r->T, LW = r->LW;
    int64_t H = c->hidden;
    A->out_rtn = NAN;
    for (int w = 0; w < LW; w++) {
        float *ref = r->ref + (size_t)w * T * H;
        memcpy(ref, r->X + (size_t)w * T * H, (size_t)T * H * sizeof(float));
        if (!r->xin) fwd(&r->f, fw, ref, 1, NULL, NULL);   /* with xin the stats pass ran the float layer */
    }
    if (LW == 0) return LLMQ_OK;
    fwd_w rw = *fw;
    for (int k = 0; k < LLMQ_AWQ_NLIN; k++) {
        float *src = NULL;
        int64_t rows = llmq_linear_rows(c, k), cols = llmq_linear_cols(c, k);
        if (load_lin(r->m, l, k, &src, err)) return err->code;
        if (!(r->Q[k] = falloc(rows, cols, err))) { free(src); return err->code; }
        int rc = fake_quant(r->o->pool, &r->o->q, src, rows, cols, NULL, NULL, r->Q[k], err);
        free(src);
        if (rc) return rc;
        rw.w[k] = (llmq_wmat){ .type = LLMQ_W_F32, .rows = rows, .cols = cols, .data = r->Q[k] };
    }
    double sum = 0;
    float *tmp = falloc(T, H, err);
    if (!tmp) return err->code;
    for (int w = 0; w < LW; w++) {
        memcpy(tmp, loss_input(r, w), (size_t)T * H * sizeof(float));
        fwd(&r->f, &rw, tmp, 1, NULL, NULL);
        sum += mse(tmp, r->ref + (size_t)w * T * H, (size_t)T * H);
    }
    free(tmp);
    A->out_rtn = sum / LW;
    for (int k = 0; k < LLMQ_AWQ_NLIN; k++) { free(r->Q[k]); r->Q[k] = NULL; }
    return LLMQ_OK;
}

/* 4. the searched grid's codes (round to nearest, or gptq); 5. the
 * quantized layer, scales folded, on every window: its outputs are the
 * next layer's inputs, and A->out_awq their error on the loss windows
 * (with propagate_fp, on the loss windows only, into scratch). */
static int layer_quantize(run *r, int l, const fwd_w *fw, llmq_awq_layer *A, llmq_err *err)
{
    const llmq_config *c = &r->m->cfg;
    const llmq_awq_opts *o = r->o;
    int T = r->T;
    int64_t H = c->hidden, FF = c->intermediate, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    fwd_w qw = *fw;
    for (int k = 0; k < LLMQ_AWQ_NLIN; k++) {
        int64_t rows = llmq_linear_rows(c, k), cols = llmq_linear_cols(c, k);
        if (!(r->Q[k] = falloc(rows, cols, err))) return err->code;
        if (fake_quant(o->pool, &o->q, r->W[k], rows, cols, NULL, A->clip[k], r->Q[k], err)) return err->code;
        if (o->gptq && gptq_lin(c, o, A, k, r->W[k], rows, cols, &r->st, (double)r->pool_tokens, r->gh, r->Q[k], err))
            return err->code;
        free(r->W[k]);
        r->W[k] = NULL;
        qw.w[k] = (llmq_wmat){ .type = LLMQ_W_F32, .rows = rows, .cols = cols, .data = r->Q[k] };
    }
    for (int g = 0; g < LLMQ_AWQ_NGROUP; g++) { llmq_gptq_h_free(r->gh[g]); r->gh[g] = NULL; }
    float **nrm = r->nrm;
    if (!(nrm[0] = vec_div(r->m->layers[l].attn_norm, A->s[LLMQ_AWQ_G_QKV], H, err)) ||
        !(nrm[1] = vec_div(r->m->layers[l].mlp_norm, A->s[LLMQ_AWQ_G_GATEUP], H, err)) ||
        (fw->b[LLMQ_AWQ_V] && !(nrm[2] = vec_div(fw->b[LLMQ_AWQ_V], A->s[LLMQ_AWQ_G_O], kvd, err))) ||
        (fw->b[LLMQ_AWQ_UP] && !(nrm[3] = vec_div(fw->b[LLMQ_AWQ_UP], A->s[LLMQ_AWQ_G_DOWN], FF, err))))
        return err->code;
    qw.attn_norm = nrm[0];
    qw.mlp_norm = nrm[1];
    if (nrm[2]) qw.b[LLMQ_AWQ_V] = nrm[2];
    if (nrm[3]) qw.b[LLMQ_AWQ_UP] = nrm[3];
    /* with propagate_fp, X already holds the next layer's inputs: only the
     * loss windows run, from their saved inputs, into scratch */
    const int fp = o->propagate_fp;
    double sum = 0;
    float *tmp = fp && r->LW > 0 ? falloc(T, H, err) : NULL;
    if (fp && r->LW > 0 && !tmp) return err->code;
    for (int w = 0; w < (fp ? r->LW : r->samples); w++) {
        float *x = r->X + (size_t)w * T * H;
        if (tmp) x = memcpy(tmp, loss_input(r, w), (size_t)T * H * sizeof(float));
        fwd(&r->f, &qw, x, 1, NULL, NULL);
        if (w < r->LW) sum += mse(x, r->ref + (size_t)w * T * H, (size_t)T * H);
    }
    free(tmp);
    A->out_awq = r->LW > 0 ? sum / r->LW : NAN;
    for (int k = 0; k < LLMQ_AWQ_NLIN; k++) { free(r->Q[k]); r->Q[k] = NULL; }
    for (int i = 0; i < 4; i++) { free(nrm[i]); nrm[i] = NULL; }
    return LLMQ_OK;
}

int llmq_awq_run(const llmq_model *m, const int32_t *tokens, int samples, int seqlen,
                 const llmq_awq_opts *o, llmq_awq_result *res, llmq_err *err)
{
    const llmq_config *c = &m->cfg;
    memset(res, 0, sizeof *res);
    double t0 = llmq_now();
    (void)llmq_cpu_isa();   /* OpenBLAS single-threaded: we thread ourselves */
    if (llmq_awq_is_block(&o->q)) {
        if (o->q.group != llmq_block_size(o->q.btype))
            return llmq_errorf(err, LLMQ_EUSAGE, "awq: %s needs group %d (its block), not %d", llmq_block_name(o->q.btype),
                               llmq_block_size(o->q.btype), o->q.group);
        if (o->q.rule != LLMQ_MX_SCALE_OCP && o->q.rule != LLMQ_MX_SCALE_CEIL && o->q.rule != LLMQ_MX_SCALE_MSE)
            return llmq_errorf(err, LLMQ_EUSAGE, "awq: unknown block scale rule %d", (int)o->q.rule);
    } else if (o->q.btype != LLMQ_W_F32) {
        return llmq_errorf(err, LLMQ_EUSAGE, "awq: weight type %d is neither int nor a block format", (int)o->q.btype);
    } else {
        if (o->q.bits != 3 && o->q.bits != 4)
            return llmq_errorf(err, LLMQ_EUSAGE, "awq: %d-bit weights are not supported (3 or 4)", o->q.bits);
        if (!llmq_q4_group_ok(o->q.group))
            return llmq_errorf(err, LLMQ_EUSAGE, "awq: group %d is not 32, 64 or 128", o->q.group);
    }
    if (samples < 1 || seqlen < 2 || o->n_grid < 1 || o->search_tokens < 1)
        return llmq_errorf(err, LLMQ_EUSAGE, "awq: needs samples, seqlen >= 2, a grid and search tokens");
    int64_t H = c->hidden, FF = c->intermediate, qd = (int64_t)c->n_heads * c->head_dim;
    if (H % o->q.group || FF % o->q.group || qd % o->q.group)
        return llmq_errorf(err, LLMQ_EUSAGE, "%s: hidden %" PRId64 ", intermediate %" PRId64 " and q_dim %" PRId64
                           " must be multiples of group %d", m->path, H, FF, qd, o->q.group);
    for (int i = 0; i < samples * seqlen; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab)
            return llmq_errorf(err, LLMQ_EUSAGE, "awq: token id %d is outside the vocabulary", tokens[i]);
    int lo = o->layer_lo, hi = o->layer_hi ? o->layer_hi : c->n_layers;
    if (lo < 0 || hi > c->n_layers || lo >= hi)
        return llmq_errorf(err, LLMQ_EUSAGE, "%s: layers %d:%d are not a range within the model's %d layers", m->path,
                           lo, hi, c->n_layers);
    if (lo > 0 && !o->propagate_fp)
        return llmq_errorf(err, LLMQ_EUSAGE, "awq: starting at layer %d needs float propagation (propagate_fp)", lo);
    res->m = m;
    res->o = *o;
    res->n_layers = c->n_layers;
    res->tokens = samples * seqlen;
    if (!(res->layers = llmq_calloc((size_t)c->n_layers, sizeof *res->layers, err))) return err->code;

    run r;
    int rc = run_init(&r, m, tokens, samples, seqlen, o, err);
    /* the float layers below the range: their outputs are its inputs */
    for (int l = 0; l < lo && !rc; l++) {
        fwd_w fw;
        model_fwd_w(m, l, &fw);
        for (int w = 0; w < r.samples; w++) fwd(&r.f, &fw, r.X + (size_t)w * seqlen * c->hidden, 1, NULL, NULL);
        llmq_model_release_layer(m, l);
        if (o->progress) o->progress(o->progress_ctx, l + 1, hi);
    }
    for (int l = lo; l < hi && !rc; l++) {
        llmq_awq_layer *A = &res->layers[l];
        fwd_w fw;
        model_fwd_w(m, l, &fw);
        for (int k = 0; k < LLMQ_AWQ_NLIN && !rc; k++) rc = load_lin(m, l, k, &r.W[k], err);
        if (rc) break;
        double tl = llmq_now();
        const double *xmean[LLMQ_AWQ_NGROUP];
        layer_stats(&r, &fw, xmean);
        double t1 = llmq_now();
        A->sec_stats = t1 - tl;
        /* 2-3. scale and clip searches */
        if ((rc = search_layer(m, o, A, r.W, &r.st, xmean, r.S, (double)r.pool_tokens, err))) break;
        double t2 = llmq_now();
        if ((rc = layer_rtn_loss(&r, l, &fw, A, err)) || (rc = layer_quantize(&r, l, &fw, A, err))) break;
        A->sec_fwd = llmq_now() - t2;
        llmq_model_release_layer(m, l);   /* resident: one layer of the model at a time */
        if (o->progress) o->progress(o->progress_ctx, l + 1, hi);
    }
    res->seconds = llmq_now() - t0;
    run_release(&r);
    if (rc) llmq_awq_release(res);
    return rc;
}

/* ---- the packer's provider ---- */

int llmq_awq_provider(void *ctx, const char *name, float *out, int64_t nelem, int *provided, llmq_err *err)
{
    const llmq_awq_result *res = ctx;
    const llmq_model *m = res->m;
    const llmq_config *c = &m->cfg;
    *provided = 0;
    const char *rest;
    int l = llmq_layer_of(name, res->n_layers, &rest);
    if (l < 0) return LLMQ_OK;
    const llmq_awq_layer *A = &res->layers[l];
    const llmq_layer *L = &m->layers[l];
    int64_t H = c->hidden;
    if (!strcmp(rest, "input_layernorm.weight") || !strcmp(rest, "post_attention_layernorm.weight")) {
        int attn = rest[0] == 'i';
        if (nelem != H) return llmq_errorf(err, LLMQ_EINTERNAL, "awq: tensor '%s' has %" PRId64 " values", name, nelem);
        const float *v = attn ? L->attn_norm : L->mlp_norm, *s = A->s[attn ? LLMQ_AWQ_G_QKV : LLMQ_AWQ_G_GATEUP];
        for (int64_t i = 0; i < H; i++) out[i] = v[i] / s[i];
        *provided = 1;
        return LLMQ_OK;
    }
    if (!strcmp(rest, "self_attn.v_proj.bias") && L->bv) {
        int64_t n = (int64_t)c->n_kv_heads * c->head_dim;
        if (nelem != n) return llmq_errorf(err, LLMQ_EINTERNAL, "awq: tensor '%s' has %" PRId64 " values", name, nelem);
        for (int64_t i = 0; i < n; i++) out[i] = L->bv[i] / A->s[LLMQ_AWQ_G_O][i];
        *provided = 1;
        return LLMQ_OK;
    }
    if (!strcmp(rest, "mlp.up_proj.bias") && L->b_up) {
        if (nelem != c->intermediate) return llmq_errorf(err, LLMQ_EINTERNAL, "awq: tensor '%s' has %" PRId64 " values", name, nelem);
        for (int64_t i = 0; i < c->intermediate; i++) out[i] = L->b_up[i] / A->s[LLMQ_AWQ_G_DOWN][i];
        *provided = 1;
        return LLMQ_OK;
    }
    for (int j = 0; j < LLMQ_AWQ_NLIN; j++) {
        size_t n = strlen(lin_name(j));
        if (strncmp(rest, lin_name(j), n) || strcmp(rest + n, ".weight")) continue;
        const llmq_wmat *w = llmq_layer_w(L, j);
        if (nelem != w->rows * w->cols) return llmq_errorf(err, LLMQ_EINTERNAL, "awq: tensor '%s' has %" PRId64 " values", name, nelem);
        for (int64_t r = 0; r < w->rows; r++) llmq_get_row(w, r, out + r * w->cols);
        fold_lin(m, A, j, out);
        if (A->clip[j]) llmq_awq_transform(out, w->rows, w->cols, NULL, NULL, A->clip[j], res->o.q.group);
        *provided = 1;
        return LLMQ_OK;
    }
    return LLMQ_OK;
}

/* The layer record of the searched linear a packer's prefix names
 * ("model.layers.L.self_attn.q_proj"), with *l, *k its layer and linear;
 * NULL for a prefix outside the layers, another tensor, or a linear with
 * no codes of this run. */
static const llmq_awq_layer *searched_lin(const llmq_awq_result *res, const char *prefix, int *l, int *k)
{
    const char *rest;
    if ((*l = llmq_layer_of(prefix, res->n_layers, &rest)) < 0) return NULL;
    *k = llmq_linear_find(rest);
    const llmq_awq_layer *A = &res->layers[*l];
    return *k >= 0 && *k < LLMQ_AWQ_NLIN && A->codes[*k] ? A : NULL;
}

int llmq_awq_qprovider(void *ctx, const char *prefix, int64_t rows, int64_t cols, uint8_t *codes, uint16_t *scales,
                       uint8_t *zeros, int *provided, llmq_err *err)
{
    const llmq_awq_result *res = ctx;
    int l, k;
    *provided = 0;
    const llmq_awq_layer *A = searched_lin(res, prefix, &l, &k);
    if (!A) return LLMQ_OK;
    const llmq_wmat *w = llmq_layer_w(&res->m->layers[l], k);
    if (w->rows != rows || w->cols != cols || (!res->o.q.sym && !zeros) || !A->scales[k])
        return llmq_errorf(err, LLMQ_EINTERNAL, "awq: linear '%s' packed as %" PRId64 " x %" PRId64 " or another scheme",
                           prefix, rows, cols);
    size_t ng = (size_t)(rows * (cols / res->o.q.group));
    memcpy(codes, A->codes[k], (size_t)(rows * cols / 2));
    memcpy(scales, A->scales[k], ng * sizeof(uint16_t));
    if (!res->o.q.sym) memcpy(zeros, A->zeros[k], ng);
    *provided = 1;
    return LLMQ_OK;
}

int llmq_awq_bprovider(void *ctx, const char *prefix, int64_t rows, int64_t cols, uint8_t *codes, uint8_t *scales,
                       float *tscale, int *provided, llmq_err *err)
{
    const llmq_awq_result *res = ctx;
    const llmq_awq_qcfg *q = &res->o.q;
    int l, k;
    *provided = 0;
    const llmq_awq_layer *A = searched_lin(res, prefix, &l, &k);
    if (!A) return LLMQ_OK;
    const llmq_wmat *w = llmq_layer_w(&res->m->layers[l], k);
    if (w->rows != rows || w->cols != cols || !A->bscales[k] || !llmq_awq_is_block(q))
        return llmq_errorf(err, LLMQ_EINTERNAL, "awq: linear '%s' packed as %" PRId64 " x %" PRId64 " or another scheme",
                           prefix, rows, cols);
    size_t cb = llmq_wtype_is_block4(q->btype) ? (size_t)cols / 2 : (size_t)cols;
    memcpy(codes, A->codes[k], (size_t)rows * cb);
    memcpy(scales, A->bscales[k], (size_t)rows * (size_t)(cols / q->group));
    *tscale = A->tscale[k];
    *provided = 1;
    return LLMQ_OK;
}

/* ---- the record ---- */

static cJSON *pair(double a, double b)
{
    cJSON *p = cJSON_CreateArray();
    cJSON_AddItemToArray(p, cJSON_CreateNumber(a));
    cJSON_AddItemToArray(p, cJSON_CreateNumber(b));
    return p;
}

cJSON *llmq_awq_json(const llmq_awq_result *res)
{
    const llmq_awq_opts *o = &res->o;
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddStringToObject(j, "method", "awq");
    if (llmq_awq_is_block(&o->q)) {   /* int runs record no format: their bytes stay as they were */
        static const char *rules[] = { "ocp", "ceil", "mse" };
        cJSON_AddStringToObject(j, "format", llmq_block_name(o->q.btype));
        cJSON_AddStringToObject(j, "mx_scale", (unsigned)o->q.rule < 3 ? rules[o->q.rule] : "?");
    }
    cJSON_AddNumberToObject(j, "w_bit", o->q.bits);
    cJSON_AddNumberToObject(j, "group", o->q.group);
    cJSON_AddBoolToObject(j, "sym", o->q.sym);
    cJSON_AddNumberToObject(j, "n_grid", o->n_grid);
    cJSON_AddBoolToObject(j, "duo", o->duo);
    cJSON_AddBoolToObject(j, "clip", o->clip);
    cJSON_AddBoolToObject(j, "clip_qk", o->clip_qk);
    cJSON_AddNumberToObject(j, "clip_steps", o->clip_steps);
    cJSON_AddNumberToObject(j, "max_shrink", o->max_shrink);
    cJSON_AddNumberToObject(j, "search_tokens", o->search_tokens);
    cJSON_AddBoolToObject(j, "gptq", o->gptq);
    if (o->gptq) cJSON_AddNumberToObject(j, "gptq_damp", o->gptq_damp);
    cJSON_AddNumberToObject(j, "stat_windows", o->stat_windows);
    cJSON_AddStringToObject(j, "propagate", o->propagate_fp ? "fp" : "quant");
    cJSON_AddStringToObject(j, "act", o->act_bf16 ? "bf16" : "f32");
    cJSON_AddNumberToObject(j, "calib_tokens", res->tokens);
    char seed[24];
    snprintf(seed, sizeof seed, "%" PRIu64, o->seed);
    cJSON_AddStringToObject(j, "seed", seed);
    cJSON *layers = cJSON_AddArrayToObject(j, "layers");
    int fallbacks = 0;
    for (int l = 0; l < res->n_layers; l++) {
        const llmq_awq_layer *A = &res->layers[l];
        cJSON *e = cJSON_CreateObject(), *ratio = cJSON_AddObjectToObject(e, "ratio"),
              *sl = cJSON_AddObjectToObject(e, "search_mse"), *fb = cJSON_AddArrayToObject(e, "fallback_s1"),
              *cl = cJSON_AddObjectToObject(e, "clip"), *duo = cJSON_AddArrayToObject(e, "duo"),
              *ex = cJSON_AddArrayToObject(e, "search_all_tokens");
        cJSON_AddNumberToObject(e, "layer", l);
        for (int g = 0; g < LLMQ_AWQ_NGROUP; g++) {
            cJSON_AddNumberToObject(ratio, group_names[g], A->ratio[g]);
            if (A->duo[g]) cJSON_AddItemToArray(duo, cJSON_CreateString(group_names[g]));
            cJSON_AddItemToObject(sl, group_names[g], pair(A->loss_s1[g], A->loss_best[g]));
            if (A->fallback[g]) { cJSON_AddItemToArray(fb, cJSON_CreateString(group_names[g])); fallbacks++; }
            if (A->exact[g]) cJSON_AddItemToArray(ex, cJSON_CreateString(group_names[g]));
        }
        for (int k = 0; k < LLMQ_AWQ_NLIN; k++) {
            if (!A->clip[k]) continue;
            cJSON *c = cJSON_AddObjectToObject(cl, llmq_awq_lin_name(k));
            cJSON_AddItemToObject(c, "mse", pair(A->clip_before[k], A->clip_after[k]));
            cJSON_AddNumberToObject(c, "mean_shrink", A->clip_mean[k]);
            cJSON_AddNumberToObject(c, "clipped", A->clip_frac[k]);
        }
        if (o->gptq) {
            cJSON *gl = cJSON_AddObjectToObject(e, "gptq_mse");
            for (int k = 0; k < LLMQ_AWQ_NLIN; k++)
                cJSON_AddItemToObject(gl, llmq_awq_lin_name(k), pair(A->gptq_loss[k][0], A->gptq_loss[k][1]));
        }
        cJSON_AddItemToObject(e, "out_mse_rtn_awq", pair(A->out_rtn, A->out_awq));
        cJSON_AddItemToArray(layers, e);
    }
    cJSON_AddNumberToObject(j, "fallbacks", fallbacks);
    return j;
}

void llmq_awq_json_add_seconds(cJSON *j, const llmq_awq_result *res)
{
    cJSON *layers = cJSON_GetObjectItemCaseSensitive(j, "layers");
    for (int l = 0; l < res->n_layers && layers; l++) {
        cJSON *e = cJSON_GetArrayItem(layers, l);
        const llmq_awq_layer *A = &res->layers[l];
        cJSON *sec = e ? cJSON_AddObjectToObject(e, "seconds") : NULL;
        if (!sec) return;
        cJSON_AddNumberToObject(sec, "stats", A->sec_stats);
        cJSON_AddNumberToObject(sec, "scale", A->sec_scale);
        cJSON_AddNumberToObject(sec, "clip", A->sec_clip);
        cJSON_AddNumberToObject(sec, "forward", A->sec_fwd);
    }
}
