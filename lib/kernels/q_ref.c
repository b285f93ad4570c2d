/*
 * q_ref.c - the scalar reference kernels: plain C, obviously right, the
 * oracle that the AVX2 / AVX-512 kernels are tested against.  Sums are in
 * double, so the oracle is at least as accurate as any SIMD order.
 * Storage layouts: lib/kernels/kernels.h and lib/quant/blocks.h.
 */
#include "kern-int.h"
#include "../quant/blocks.h"

/* W[r][j] as float.  Quantized values are the float product code * scale,
 * which is exact for Q4 (11-bit f16 scale times a 5-bit integer) and MX8
 * (a power of two), and correctly rounded for Q8. */
static inline float ref_elem(const llmq_wmat *W, int64_t r, int64_t j)
{
    int64_t cols = W->cols, i = r * cols + j;
    switch (W->type) {
    case LLMQ_W_F32:  return ((const float *)W->data)[i];
    case LLMQ_W_BF16: return llmq_bf16_to_f32(((const uint16_t *)W->data)[i]);
    case LLMQ_W_F16:  return llmq_f16_to_f32(((const uint16_t *)W->data)[i]);
    case LLMQ_W_Q8:
        return (float)((const int8_t *)W->data)[i] * ((const float *)W->scales)[r];
    case LLMQ_W_Q4: {
        const uint8_t *row = (const uint8_t *)W->data + r * (cols / 2);
        int q = (j & 1) ? row[j / 2] >> 4 : row[j / 2] & 15;
        int64_t g = r * (cols / W->group) + j / W->group;
        int z = W->zeros ? W->zeros[g] : LLMQ_Q4_ZERO_SYM;
        return (float)(q - z) * llmq_f16_to_f32(((const uint16_t *)W->scales)[g]);
    }
    case LLMQ_W_MX8: {
        int64_t b = r * (cols / LLMQ_MX8_BLOCK) + j / LLMQ_MX8_BLOCK;
        return (float)((const int8_t *)W->data)[i] * llmq_mx8_code_scale(((const uint8_t *)W->scales)[b]);
    }
    default: return 0.0f;   /* llmq_wmat_check rejects other types */
    }
}

static void ref_matvec(const llmq_wmat *W, int64_t r0, int64_t r1, const float *x, float *y)
{
    for (int64_t r = r0; r < r1; r++) {
        double s = 0.0;
        for (int64_t j = 0; j < W->cols; j++) s += (double)ref_elem(W, r, j) * x[j];
        y[r - r0] = (float)s;
    }
}

static void ref_dequant(const llmq_wmat *W, int64_t r0, int64_t r1, float *out)
{
    for (int64_t r = r0; r < r1; r++)
        for (int64_t j = 0; j < W->cols; j++) out[(r - r0) * W->cols + j] = ref_elem(W, r, j);
}

static void ref_matvec_a8(const llmq_wmat *W, int64_t r0, int64_t r1,
                          const int8_t *xq, float xscale, int32_t xsum, float *y)
{
    (void)xsum;
    const int8_t *w = W->data;
    const float *ws = W->scales;
    for (int64_t r = r0; r < r1; r++) {
        int64_t acc = 0;
        for (int64_t j = 0; j < W->cols; j++) acc += (int32_t)w[r * W->cols + j] * xq[j];
        y[r - r0] = (float)acc * (ws[r] * xscale);
    }
}

const llmq_ktable llmq_ktable_ref = {
    .matvec = { ref_matvec, ref_matvec, ref_matvec, ref_matvec, ref_matvec, ref_matvec },
    .dequant = { ref_dequant, ref_dequant, ref_dequant, ref_dequant, ref_dequant, ref_dequant },
    .matvec_a8 = ref_matvec_a8,
};
_Static_assert(LLMQ_W_COUNT == 6, "add the new type to every kernel table");
