/*
 * mxint8.c - MXINT8 of the OCP Microscaling Formats (MX) Specification v1.0
 * (LLMQ_W_MX8): blocks of k = 32 elements share one E8M0 scale X; each
 * element P_i is an INT8 two's complement number with an implicit scale of
 * 2^-6 (so P_i = code / 64, at most 127/64), and the value is X * P_i
 * (spec section 5).  Quantization follows section 6.3, with emax_elem = 0
 * for MXINT8.  Rules and their clipping: quant.h.
 */
#include <math.h>
#include "quant.h"

#define E8M0_BIAS 127
#define E8M0_MIN  (-127)     /* e = 0 */
#define E8M0_MAX  127        /* e = 254; 255 is NaN */

/* The E8M0 exponent E of X for a block with max |w| = amax > 0. */
static int mx_exponent(double amax, llmq_mx_rule rule)
{
    int e;
    if (rule == LLMQ_MX_SCALE_CEIL) {
        /* integer step 2^y with y = ceil(log2(amax / 127)): the smallest y
         * with 127 * 2^y >= amax; X = 2^(y + 6) as element values are code/64 */
        int y = ilogb(amax) - 7;
        while (ldexp(LLMQ_Q8_MAXQ, y) < amax) y++;
        e = y + LLMQ_MX8_ELEM_SHIFT;
    } else {
        e = ilogb(amax);     /* floor(log2 amax), exact, subnormals included */
    }
    return e < E8M0_MIN ? E8M0_MIN : e > E8M0_MAX ? E8M0_MAX : e;
}

void llmq_mx8_quantize_row(const float *w, int64_t cols, llmq_mx_rule rule, int8_t *codes, uint8_t *scales)
{
    for (int64_t b = 0; b < cols / LLMQ_MX8_BLOCK; b++) {
        const float *v = w + b * LLMQ_MX8_BLOCK;
        int8_t *q = codes + b * LLMQ_MX8_BLOCK;
        double amax = 0.0;
        for (int j = 0; j < LLMQ_MX8_BLOCK; j++) amax = fmax(amax, fabs((double)v[j]));
        if (!(amax > 0.0)) {                 /* all zero (or NaN): any X works */
            scales[b] = 0;
            memset(q, 0, LLMQ_MX8_BLOCK);
            continue;
        }
        int e = mx_exponent(amax, rule);
        scales[b] = (uint8_t)(e + E8M0_BIAS);
        /* P_i * 64 = w / X * 64 = w * 2^(6 - e); exact in double */
        for (int j = 0; j < LLMQ_MX8_BLOCK; j++) {
            double c = nearbyint(ldexp((double)v[j], LLMQ_MX8_ELEM_SHIFT - e));
            q[j] = (int8_t)fmin(fmax(c, -LLMQ_Q8_MAXQ), LLMQ_Q8_MAXQ);
        }
    }
}

int llmq_mx8_quantize(const float *w, int64_t rows, int64_t cols, llmq_mx_rule rule,
                      int8_t *codes, uint8_t *scales, const char *name, llmq_err *err)
{
    if (!name) name = "?";
    if (rule != LLMQ_MX_SCALE_OCP && rule != LLMQ_MX_SCALE_CEIL)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "tensor '%s': unknown mx8 scale rule %d", name, (int)rule);
    if (rows < 0 || cols < 1 || cols % LLMQ_MX8_BLOCK)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "tensor '%s': mx8 needs a row length that is a multiple of %d, "
                           "got %" PRId64, name, LLMQ_MX8_BLOCK, cols);
    int rc = llmq_quant_check_finite(w, rows, cols, name, err);
    if (rc) return rc;
    for (int64_t r = 0; r < rows; r++)
        llmq_mx8_quantize_row(w + r * cols, cols, rule, codes + r * cols, scales + r * (cols / LLMQ_MX8_BLOCK));
    return LLMQ_OK;
}

void llmq_mx8_dequantize_row(const int8_t *codes, const uint8_t *scales, int64_t cols, float *out)
{
    for (int64_t j = 0; j < cols; j++)
        out[j] = (float)codes[j] * llmq_mx8_code_scale(scales[j / LLMQ_MX8_BLOCK]);
}
