/*
 * microscale.c - the block formats of OCP Microscaling (MX) v1.0 and
 * NVIDIA's NVFP4, and their integer twins from the INT-vs-FP study (Chen
 * et al., arXiv 2510.25602): MXFP4, MXINT4, NVFP4, NVINT4, MXFP8.  Storage
 * and element values: lib/base/blocks.h; rules: quant.h.
 *
 * Every element is rounded to the nearest value of its element type, ties
 * to even, and saturates at the type's largest magnitude (OCP section 6.3:
 * conversion to the element type with saturation).
 */
#include <float.h>
#include <math.h>
#include "quant.h"

#define E8M0_BIAS 127
#define E8M0_MIN  (-127)
#define E8M0_MAX  127

uint8_t llmq_e2m1_encode(float v)
{
    /* the midpoints between 0, 0.5, 1, 1.5, 2, 3, 4, 6; a tie goes to the
     * even mantissa (0, 1, 2, 4: codes 0, 2, 4, 6) */
    float a = fabsf(v);
    int m;
    if (!(a > 0.25f)) m = 0;            /* NaN too */
    else if (a < 0.75f) m = 1;
    else if (a <= 1.25f) m = 2;
    else if (a < 1.75f) m = 3;
    else if (a <= 2.5f) m = 4;
    else if (a < 3.5f) m = 5;
    else if (a <= 5.0f) m = 6;
    else m = 7;
    return (uint8_t)(m && signbit(v) ? m | 8 : m);
}

uint8_t llmq_e4m3_encode(float v)
{
    double a = fabs((double)v);
    uint8_t s = signbit(v) ? 0x80 : 0;
    if (!(a > 0.0)) return 0;           /* zero, NaN */
    if (a >= LLMQ_E4M3_MAX) return s | 0x7e;
    int e = ilogb(a);
    if (e < -6) e = -6;                 /* subnormals: step 2^-9 */
    double q = nearbyint(ldexp(a, 3 - e));   /* [8, 16] for normals, [0, 8] below */
    if (q == 16.0) { e++; q = 8.0; }
    if (q < 8.0) return q == 0.0 ? 0 : (uint8_t)(s | (int)q);
    return (uint8_t)(s | ((e + 7) << 3) | ((int)q - 8));
}

/* The largest element magnitude of type t. */
static double elem_max(llmq_wtype t)
{
    switch (t) {
    case LLMQ_W_MXINT4: return 1.75;
    case LLMQ_W_NVINT4: return 7.0;
    case LLMQ_W_MXFP8: return LLMQ_E4M3_MAX;
    default: return 6.0;                /* E2M1 */
    }
}

/* emax_elem of OCP section 6.3: the exponent of the element type's largest
 * normal number (E2M1 2, E4M3 8; 0 for the int4 of MXINT4 as for MXINT8). */
static int elem_emax(llmq_wtype t) { return t == LLMQ_W_MXFP8 ? 8 : t == LLMQ_W_MXINT4 ? 0 : 2; }

uint8_t llmq_block_code(llmq_wtype t, double v)
{
    switch (t) {
    case LLMQ_W_MXINT4:
    case LLMQ_W_NVINT4: {
        double c = nearbyint(t == LLMQ_W_MXINT4 ? v * 4.0 : v);
        c = c > 7.0 ? 7.0 : c < -7.0 ? -7.0 : c == c ? c : 0.0;
        return (uint8_t)((int)c & 15);
    }
    case LLMQ_W_MXFP8: return llmq_e4m3_encode((float)v);
    default: return llmq_e2m1_encode((float)v);
    }
}

/* The E8M0 exponent E (2^E) of an MX block with max |w| = amax > 0. */
static int mx_exponent(llmq_wtype t, double amax, llmq_mx_rule rule)
{
    int e;
    if (rule == LLMQ_MX_SCALE_CEIL) {
        /* the smallest 2^e with elem_max * 2^e >= amax: nothing clips */
        double emax = elem_max(t);
        e = ilogb(amax) - ilogb(emax) - 1;
        while (ldexp(emax, e) < amax) e++;
    } else {
        e = ilogb(amax) - elem_emax(t);
    }
    return e < E8M0_MIN ? E8M0_MIN : e > E8M0_MAX ? E8M0_MAX : e;
}

/* The E4M3 block scale of an NV block: s rounded to nearest (ocp) or up
 * (ceil), at most 448. */
static uint8_t nv_scale(double s, llmq_mx_rule rule)
{
    uint8_t c = llmq_e4m3_encode((float)s);
    if (rule == LLMQ_MX_SCALE_CEIL && (double)llmq_e4m3_to_f32(c) < s && c < 0x7e) c++;
    return c;
}

float llmq_block_tscale(llmq_wtype t, float amax)
{
    if (!(amax > 0.0f) || !isfinite(amax)) return 1.0f;
    float s = (float)((double)amax / (LLMQ_E4M3_MAX * elem_max(t)));
    return s > 0.0f ? s : FLT_TRUE_MIN;
}

/* Squared error of block v[B] under scale byte sc (codes not kept). */
static double block_sse(llmq_wtype t, const float *v, int B, uint8_t sc, float tscale)
{
    double d = (double)llmq_block_factor(t, sc, tscale), e = 0.0;
    for (int j = 0; j < B; j++) {
        double q = d > 0.0 ? (double)llmq_block_value(t, llmq_block_code(t, (double)v[j] / d)) * d : 0.0;
        e += (q - v[j]) * (q - v[j]);
    }
    return e;
}

/* The scale byte of a block with max |v| = amax > 0 under rule. */
static uint8_t block_scale(llmq_wtype t, const float *v, int B, double amax, llmq_mx_rule rule, float tscale)
{
    const int nv = llmq_wtype_is_nv(t);
    if (rule != LLMQ_MX_SCALE_MSE)
        return nv ? nv_scale(amax / (elem_max(t) * (double)tscale), rule)
                  : (uint8_t)(mx_exponent(t, amax, rule) + E8M0_BIAS);
    int c0 = nv ? nv_scale(amax / (elem_max(t) * (double)tscale), LLMQ_MX_SCALE_OCP)
                : mx_exponent(t, amax, LLMQ_MX_SCALE_OCP) + E8M0_BIAS;
    int lo = nv ? c0 - 2 : c0, hi = nv ? c0 + 2 : c0 + 1, best = c0;
    double best_e = block_sse(t, v, B, (uint8_t)c0, tscale);
    for (int c = lo; c <= hi; c++) {
        if (c == c0 || c < 1 || c > (nv ? 0x7e : 254)) continue;
        double e = block_sse(t, v, B, (uint8_t)c, tscale);
        if (e < best_e) { best_e = e; best = c; }
    }
    return (uint8_t)best;
}

void llmq_block_quantize_row(llmq_wtype t, const float *w, int64_t cols, llmq_mx_rule rule, float tscale,
                             uint8_t *codes, uint8_t *scales)
{
    const int B = llmq_block_size(t), four = llmq_wtype_is_block4(t);
    if (four) memset(codes, 0, (size_t)cols / 2);
    for (int64_t b = 0; b < cols / B; b++) {
        const float *v = w + b * B;
        double amax = 0.0;
        for (int j = 0; j < B; j++) amax = fmax(amax, fabs((double)v[j]));
        uint8_t sc = amax > 0.0 ? block_scale(t, v, B, amax, rule, tscale) : 0;
        scales[b] = sc;
        double d = (double)llmq_block_factor(t, sc, tscale);
        for (int j = 0; j < B; j++) {
            uint8_t c = amax > 0.0 && d > 0.0 ? llmq_block_code(t, (double)v[j] / d) : 0;
            int64_t k = b * B + j;
            if (four) llmq_q4_put_code(codes, k, c);
            else codes[k] = c;
        }
    }
}

void llmq_block_dequantize_row(llmq_wtype t, const uint8_t *codes, const uint8_t *scales, float tscale,
                               int64_t cols, float *out)
{
    const int B = llmq_block_size(t);
    for (int64_t j = 0; j < cols; j++) {
        uint8_t c = llmq_wtype_is_block4(t) ? (uint8_t)((j & 1) ? codes[j / 2] >> 4 : codes[j / 2] & 15) : codes[j];
        out[j] = llmq_block_value(t, c) * llmq_block_factor(t, scales[j / B], tscale);
    }
}

void llmq_block_fake_row(llmq_wtype t, const float *w, int64_t cols, llmq_mx_rule rule, uint8_t *codes,
                         uint8_t *scales, float *out)
{
    float tscale = 1.0f;
    if (llmq_wtype_is_nv(t)) {
        float amax = 0.0f;
        for (int64_t j = 0; j < cols; j++) amax = fmaxf(amax, fabsf(w[j]));
        tscale = llmq_block_tscale(t, amax);
    }
    llmq_block_quantize_row(t, w, cols, rule, tscale, codes, scales);
    llmq_block_dequantize_row(t, codes, scales, tscale, cols, out);
}

int llmq_block_quantize(llmq_wtype t, const float *w, int64_t rows, int64_t cols, llmq_mx_rule rule,
                        uint8_t *codes, uint8_t *scales, float *tscale, const char *name, llmq_err *err)
{
    if (!name) name = "?";
    if (!llmq_wtype_is_block(t))
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "tensor '%s': weight type %d is not a block format", name, (int)t);
    if (rule != LLMQ_MX_SCALE_OCP && rule != LLMQ_MX_SCALE_CEIL && rule != LLMQ_MX_SCALE_MSE)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "tensor '%s': unknown block scale rule %d", name, (int)rule);
    const int B = llmq_block_size(t);
    if (rows < 0 || cols < 1 || cols % 32)      /* NV too: the kernels take 32 columns at a time */
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "tensor '%s': %s needs a row length that is a "
                           "multiple of 32, got %" PRId64, name, llmq_block_name(t), cols);
    int rc = llmq_quant_check_finite(w, rows, cols, name, err);
    if (rc) return rc;
    float amax = 0.0f;
    if (llmq_wtype_is_nv(t))
        for (int64_t i = 0; i < rows * cols; i++) amax = fmaxf(amax, fabsf(w[i]));
    *tscale = llmq_wtype_is_nv(t) ? llmq_block_tscale(t, amax) : 1.0f;
    const int64_t rb = llmq_wtype_is_block4(t) ? cols / 2 : cols;
    for (int64_t r = 0; r < rows; r++)
        llmq_block_quantize_row(t, w + r * cols, cols, rule, *tscale, codes + r * rb, scales + r * (cols / B));
    return LLMQ_OK;
}
