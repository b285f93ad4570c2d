/* int8.c - INT8 per-output-channel symmetric quantization (LLMQ_W_Q8),
 * and the input checks shared by every quantizer. */
#include <math.h>
#include <string.h>
#include "quant.h"

int llmq_quant_check_finite(const float *w, int64_t rows, int64_t cols, const char *name, llmq_err *err)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) {
            float v = w[r * cols + j];
            if (!isfinite(v))
                return llmq_errorf(err, LLMQ_ENONFINITE, "tensor '%s': %s at row %" PRId64 ", col %" PRId64,
                                   name ? name : "?", isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf", r, j);
        }
    return LLMQ_OK;
}

void llmq_q8_quantize_row(const float *w, int64_t cols, int8_t *codes, float *scale)
{
    /* A hot loop of smooth's searches (and of pack): no libm calls per element.
     * The comparisons drop a NaN as fmaxf would, and tests/unit/t-quant.c
     * holds these loops to the plain fmaxf / nearbyint / fmin form. */
    float amax = 0.0f;
    for (int64_t j = 0; j < cols; j++) {
        float a = fabsf(w[j]);
        amax = a > amax ? a : amax;
    }
    float s = (float)((double)amax / LLMQ_Q8_MAXQ);
    /* round s up so round(w / s) never exceeds 127; this also lifts a scale
     * that underflowed to 0 for a subnormal row to the smallest subnormal */
    if ((double)s * LLMQ_Q8_MAXQ < (double)amax) s = nextafterf(s, INFINITY);
    /* ...unless 127 * s would then overflow (|w| within ulps of FLT_MAX):
     * keep the lower s, and 127 clips by less than one ulp of s */
    if (isinf((float)LLMQ_Q8_MAXQ * s)) s = nextafterf(s, 0.0f);
    *scale = s;
    if (!(s > 0.0f)) {
        memset(codes, 0, (size_t)cols);
        return;
    }
    for (int64_t j = 0; j < cols; j++) {
        double q = (double)w[j] / s;
        /* clamp first (a NaN becomes -127, as before), then round half to
         * even: adding and taking away 1.5 * 2^52 rounds any |q| < 2^51 in
         * the default rounding mode, and clamping before rounding gives what
         * rounding before clamping gives */
        q = q > -LLMQ_Q8_MAXQ ? q : -LLMQ_Q8_MAXQ;
        q = q < LLMQ_Q8_MAXQ ? q : LLMQ_Q8_MAXQ;
        q = (q + 0x1.8p52) - 0x1.8p52;
        codes[j] = (int8_t)q;
    }
}

int llmq_q8_quantize(const float *w, int64_t rows, int64_t cols, int8_t *codes, float *scales,
                     const char *name, llmq_err *err)
{
    if (rows < 0 || cols < 1)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "tensor '%s': q8 cannot hold shape [%" PRId64 ", %" PRId64 "]",
                           name ? name : "?", rows, cols);
    int rc = llmq_quant_check_finite(w, rows, cols, name, err);
    if (rc) return rc;
    for (int64_t r = 0; r < rows; r++) llmq_q8_quantize_row(w + r * cols, cols, codes + r * cols, &scales[r]);
    return LLMQ_OK;
}

void llmq_q8_dequantize_row(const int8_t *codes, float scale, int64_t cols, float *out)
{
    for (int64_t j = 0; j < cols; j++) out[j] = (float)codes[j] * scale;
}
