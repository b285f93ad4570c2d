/* int4.c - INT4 group-wise quantization (LLMQ_W_Q4), asymmetric with a zero
 * point or symmetric, and INT3 (8 levels instead of 16) quantized into the
 * same nibbles, then repacked to three bits per code (LLMQ_W_Q3).
 * Conventions and error bounds: quant.h. */
#include <math.h>
#include "quant.h"

#define F16_MAX 65504.0f

uint16_t llmq_f16_ceil(float s)
{
    if (s >= F16_MAX) return llmq_f32_to_f16(F16_MAX);
    uint16_t h = llmq_f32_to_f16(s);
    if (llmq_f16_to_f32(h) < s) h++;        /* positive f16: next bit pattern is next value */
    return h;
}

static inline double clampd(double v, double lo, double hi) { return fmin(fmax(v, lo), hi); }

/* One row of `bits`-bit codes (4, or 3 in the same nibbles): maxq levels
 * above the lowest, asymmetric codes 0..maxq with a zero point, symmetric
 * ones LLMQ_Q4_ZERO_SYM -+ maxq/2 (1..15 at 4 bits, 5..11 at 3). */
static void quantize_row_bits(int bits, const float *w, int64_t cols, int group, int sym, const float *clip,
                              uint8_t *codes, uint16_t *scales, uint8_t *zeros)
{
    double maxq = sym ? (double)((1 << (bits - 1)) - 1) : (double)((1 << bits) - 1);
    int lo = sym ? LLMQ_Q4_ZERO_SYM - (int)maxq : 0, hi = sym ? LLMQ_Q4_ZERO_SYM + (int)maxq : (int)maxq;
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
        float sf = 0.0f;
        if (range > 0.0) {
            scales[g] = llmq_f16_ceil((float)fmin(range / maxq, F16_MAX));
            sf = llmq_f16_to_f32(scales[g]);
        } else {
            scales[g] = 0;                  /* all-zero group: codes 0 (sym: 8) */
        }
        int z = sym ? LLMQ_Q4_ZERO_SYM : 0;
        if (!sym && sf > 0.0f) {
            /* a saturated scale cannot cover the range: keep 0 where it sits
             * proportionally, so both ends clip rather than one */
            double zf = range / maxq > F16_MAX ? maxq * -mn / range : -mn / sf;
            z = (int)clampd(nearbyint(zf), 0, maxq);
        }
        if (!sym) zeros[g] = (uint8_t)z;
        for (int j = 0; j < group; j++) {
            double x = clampd(v[j], -c, c);
            double q = sf > 0.0f ? nearbyint(x / sf) + z : z;
            /* a NaN becomes 0, not undefined behaviour */
            llmq_q4_put_code(codes, g * group + j, (int)clampd(q, lo, hi));
        }
    }
}

static int quantize_bits(int bits, const float *w, int64_t rows, int64_t cols, int group, int sym, const float *clip,
                         uint8_t *codes, uint16_t *scales, uint8_t *zeros, const char *name, llmq_err *err)
{
    const char *fmt = bits == 3 ? "q3" : "q4";
    if (!name) name = "?";
    if (!llmq_q4_group_ok(group))
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "tensor '%s': %s group size %d is not 32, 64 or 128", name, fmt, group);
    if (rows < 0 || cols < 1 || cols % group)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "tensor '%s': %s with group %d needs a row length that is a "
                           "multiple of %d, got %" PRId64, name, fmt, group, group, cols);
    if (!sym && !zeros)
        return llmq_errorf(err, LLMQ_EINTERNAL, "tensor '%s': asymmetric %s without a zero-point array", name, fmt);
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
        quantize_row_bits(bits, w + r * cols, cols, group, sym, clip ? clip + r * ng : NULL,
                          codes + r * (cols / 2), scales + r * ng, sym ? NULL : zeros + r * ng);
    return LLMQ_OK;
}

void llmq_q4_clip_row(float *row, int64_t cols, int group, const float *clip)
{
    for (int64_t k = 0; k < cols / group; k++)
        for (int64_t j = k * group; j < (k + 1) * group; j++) row[j] = fminf(fmaxf(row[j], -clip[2 * k + 1]), clip[2 * k]);
}

void llmq_q4_quantize_row(const float *w, int64_t cols, int group, int sym, const float *clip,
                          uint8_t *codes, uint16_t *scales, uint8_t *zeros)
{
    quantize_row_bits(4, w, cols, group, sym, clip, codes, scales, zeros);
}

void llmq_q3_quantize_row(const float *w, int64_t cols, int group, int sym, const float *clip,
                          uint8_t *codes, uint16_t *scales, uint8_t *zeros)
{
    quantize_row_bits(3, w, cols, group, sym, clip, codes, scales, zeros);
}

int llmq_q4_quantize(const float *w, int64_t rows, int64_t cols, int group, int sym, const float *clip,
                     uint8_t *codes, uint16_t *scales, uint8_t *zeros, const char *name, llmq_err *err)
{
    return quantize_bits(4, w, rows, cols, group, sym, clip, codes, scales, zeros, name, err);
}

int llmq_q3_quantize(const float *w, int64_t rows, int64_t cols, int group, int sym, const float *clip,
                     uint8_t *codes, uint16_t *scales, uint8_t *zeros, const char *name, llmq_err *err)
{
    return quantize_bits(3, w, rows, cols, group, sym, clip, codes, scales, zeros, name, err);
}

void llmq_q4_dequantize_row(const uint8_t *codes, const uint16_t *scales, const uint8_t *zeros,
                            int64_t cols, int group, float *out)
{
    for (int64_t j = 0; j < cols; j++) {
        int q = (j & 1) ? codes[j / 2] >> 4 : codes[j / 2] & 15;
        int64_t g = j / group;
        int z = zeros ? zeros[g] : LLMQ_Q4_ZERO_SYM;
        out[j] = (float)(q - z) * llmq_f16_to_f32(scales[g]);
    }
}

static void fake_row_bits(int bits, const float *w, int64_t cols, int group, int sym, const float *clip, float *out)
{
    /* one group at a time: no allocation */
    for (int64_t g = 0; g < cols / group; g++) {
        uint8_t codes[128 / 2], zero;
        uint16_t scale;
        quantize_row_bits(bits, w + g * group, group, group, sym, clip ? clip + g : NULL, codes, &scale,
                          sym ? NULL : &zero);
        llmq_q4_dequantize_row(codes, &scale, sym ? NULL : &zero, group, group, out + g * group);
    }
}

void llmq_q4_fake_row(const float *w, int64_t cols, int group, int sym, const float *clip, float *out)
{
    fake_row_bits(4, w, cols, group, sym, clip, out);
}

void llmq_q3_fake_row(const float *w, int64_t cols, int group, int sym, const float *clip, float *out)
{
    fake_row_bits(3, w, cols, group, sym, clip, out);
}

/* ---- INT3 codes: the nibble layout <-> LLMQ_W_Q3 ---- */

int llmq_q3_pack(const uint8_t *nib, int64_t rows, int64_t cols, int sym, uint8_t *out, const char *name,
                 llmq_err *err)
{
    if (!name) name = "?";
    if (rows < 0 || cols < LLMQ_Q3_CHUNK || cols % LLMQ_Q3_CHUNK)
        return llmq_errorf(err, LLMQ_EINTERNAL, "tensor '%s': q3 rows of %" PRId64 " codes are not whole chunks of %d",
                           name, cols, LLMQ_Q3_CHUNK);
    const int off = sym ? LLMQ_Q4_ZERO_SYM - LLMQ_Q3_ZERO_SYM : 0;
    const int64_t ob = llmq_q3_row_bytes(cols);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < cols / LLMQ_Q3_CHUNK; k++) {
            /* out may be nib: chunk k's 12 bytes end before chunk k + 1's 16
             * start, so a chunk is read whole before its bytes are written */
            uint8_t in[LLMQ_Q3_CHUNK / 2], *o = out + r * ob + k * (int64_t)sizeof(llmq_q3_chunk);
            memcpy(in, nib + r * (cols / 2) + k * (LLMQ_Q3_CHUNK / 2), sizeof in);
            memset(o, 0, sizeof(llmq_q3_chunk));
            for (int j = 0; j < LLMQ_Q3_CHUNK; j++) {
                int q = ((j & 1) ? in[j / 2] >> 4 : in[j / 2] & 15) - off;
                if (q < 0 || q > 7)
                    return llmq_errorf(err, LLMQ_EINTERNAL, "tensor '%s': row %" PRId64 " column %" PRId64
                                       ": %s int3 code %d is outside %d..%d", name, r, k * LLMQ_Q3_CHUNK + j,
                                       sym ? "symmetric" : "asymmetric", q + off, off, off + 7);
                llmq_q3_put_code(o, j, q);
            }
        }
    return LLMQ_OK;
}

void llmq_q3_unpack(const uint8_t *q3, int64_t rows, int64_t cols, int sym, uint8_t *nib)
{
    const int off = sym ? LLMQ_Q4_ZERO_SYM - LLMQ_Q3_ZERO_SYM : 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++)
            llmq_q4_put_code(nib + r * (cols / 2), j, llmq_q3_get_code(q3 + r * llmq_q3_row_bytes(cols), j) + off);
}
