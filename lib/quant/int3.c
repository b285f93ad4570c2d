/* int3.c - INT3 group-wise quantization stored in the LLMQ_W_Q4 layout
 * (3-bit codes in 4-bit nibbles), so the Q4 kernels run it unchanged.
 * Conventions mirror int4.c with 8 levels instead of 16: quant.h. */
#include <math.h>
#include "quant.h"

#define F16_MAX 65504.0f

/* The smallest f16 >= s, for 0 < s (<= 65504 after clamping). */
static uint16_t f16_ceil(float s)
{
    if (s >= F16_MAX) return llmq_f32_to_f16(F16_MAX);
    uint16_t h = llmq_f32_to_f16(s);
    if (llmq_f16_to_f32(h) < s) h++;
    return h;
}

static inline void put_nibble(uint8_t *codes, int64_t j, int q)
{
    if (j & 1) codes[j / 2] = (uint8_t)((codes[j / 2] & 0x0f) | (q << 4));
    else codes[j / 2] = (uint8_t)((codes[j / 2] & 0xf0) | q);
}

static inline double clampd(double v, double lo, double hi) { return fmin(fmax(v, lo), hi); }

void llmq_q3_quantize_row(const float *w, int64_t cols, int group, int sym, const float *clip,
                          uint8_t *codes, uint16_t *scales, uint8_t *zeros)
{
    for (int64_t g = 0; g < cols / group; g++) {
        const float *v = w + g * group;
        double c = clip ? (double)clip[g] : INFINITY;
        double mn = 0.0, mx = 0.0;          /* the range always holds 0 */
        for (int j = 0; j < group; j++) {
            double x = clampd(v[j], -c, c);
            mn = fmin(mn, x);
            mx = fmax(mx, x);
        }
        double range = sym ? fmax(mx, -mn) : mx - mn;
        double maxq = sym ? 3.0 : 7.0;
        float sf = 0.0f;
        if (range > 0.0) {
            scales[g] = f16_ceil((float)fmin(range / maxq, F16_MAX));
            sf = llmq_f16_to_f32(scales[g]);
        } else {
            scales[g] = 0;
        }
        int z = sym ? LLMQ_Q4_ZERO_SYM : 0;
        if (!sym && sf > 0.0f) {
            double zf = range / maxq > F16_MAX ? 7.0 * -mn / range : -mn / sf;
            z = (int)clampd(nearbyint(zf), 0, 7);
        }
        if (!sym) zeros[g] = (uint8_t)z;
        int lo = sym ? LLMQ_Q4_ZERO_SYM - 3 : 0, hi = sym ? LLMQ_Q4_ZERO_SYM + 3 : 7;
        for (int j = 0; j < group; j++) {
            double x = clampd(v[j], -c, c);
            double q = sf > 0.0f ? nearbyint(x / sf) + z : z;
            put_nibble(codes, g * group + j, (int)clampd(q, lo, hi));
        }
    }
}

int llmq_q3_quantize(const float *w, int64_t rows, int64_t cols, int group, int sym, const float *clip,
                     uint8_t *codes, uint16_t *scales, uint8_t *zeros, const char *name, llmq_err *err)
{
    if (!name) name = "?";
    if (group != 32 && group != 64 && group != 128)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "tensor '%s': q3 group size %d is not 32, 64 or 128", name, group);
    if (rows < 0 || cols < 1 || cols % group)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "tensor '%s': q3 with group %d needs a row length that is a "
                           "multiple of %d, got %" PRId64, name, group, group, cols);
    if (!sym && !zeros)
        return llmq_errorf(err, LLMQ_EINTERNAL, "tensor '%s': asymmetric q3 without a zero-point array", name);
    int rc = llmq_quant_check_finite(w, rows, cols, name, err);
    if (rc) return rc;
    int64_t ng = cols / group;
    if (clip)
        for (int64_t i = 0; i < rows * ng; i++)
            if (!(clip[i] >= 0.0f))
                return llmq_errorf(err, isnan(clip[i]) ? LLMQ_ENONFINITE : LLMQ_EUNSUPPORTED,
                                   "tensor '%s': clip %g for row %" PRId64 ", group %" PRId64 " is not >= 0",
                                   name, (double)clip[i], i / ng, i % ng);
    for (int64_t r = 0; r < rows; r++)
        llmq_q3_quantize_row(w + r * cols, cols, group, sym, clip ? clip + r * ng : NULL,
                             codes + r * (cols / 2), scales + r * ng, sym ? NULL : zeros + r * ng);
    return LLMQ_OK;
}

void llmq_q3_fake_row(const float *w, int64_t cols, int group, int sym, const float *clip, float *out)
{
    for (int64_t g = 0; g < cols / group; g++) {
        uint8_t codes[128 / 2], zero;
        uint16_t scale;
        llmq_q3_quantize_row(w + g * group, group, group, sym, clip ? clip + g : NULL, codes, &scale,
                             sym ? NULL : &zero);
        llmq_q4_dequantize_row(codes, &scale, sym ? NULL : &zero, group, group, out + g * group);
    }
}
