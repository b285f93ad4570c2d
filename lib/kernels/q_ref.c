/*
 * q_ref.c - the scalar reference kernels: plain C, obviously right, the
 * oracle that the AVX2 / AVX-512 kernels are tested against.  Sums are in
 * double, so the oracle is at least as accurate as any SIMD order.
 * Storage layouts: lib/kernels/kernels.h and lib/base/blocks.h.
 */
#include <string.h>
#include <math.h>
#include "kern-int.h"
#include "../base/blocks.h"
#include "../quant/ggml_blocks.h"
#include "../quant/kvq.h"

/* W[r][j] as float.  Quantized values are the float product code * scale,
 * which is exact for Q4 and Q3 (11-bit f16 scale times a 5-bit integer) and MX8
 * (a power of two), and correctly rounded for Q8. */
static inline float ref_elem(const llmq_wmat *W, int64_t r, int64_t j)
{
    int64_t cols = W->cols, i = r * cols + j;
    uint16_t h;
    switch (W->type) {
    case LLMQ_W_F32:  return ((const float *)W->data)[i];
    case LLMQ_W_BF16:
    case LLMQ_W_F16:  /* either row layout (wmat.h) */
        memcpy(&h, llmq_wmat_row_byte(W, r, 2 * cols, 2 * j), 2);
        return W->type == LLMQ_W_BF16 ? llmq_bf16_to_f32(h) : llmq_f16_to_f32(h);
    case LLMQ_W_Q8:
        return (float)*(const int8_t *)llmq_wmat_row_byte(W, r, cols, j) * ((const float *)W->scales)[r];
    case LLMQ_W_Q4: {
        uint8_t b = *llmq_wmat_row_byte(W, r, cols / 2, j / 2);
        int q = (j & 1) ? b >> 4 : b & 15;
        int64_t g = r * (cols / W->group) + j / W->group;
        int z = W->zeros ? W->zeros[g] : LLMQ_Q4_ZERO_SYM;
        return (float)(q - z) * llmq_f16_to_f32(((const uint16_t *)W->scales)[g]);
    }
    case LLMQ_W_Q3: {
        int q = llmq_q3_get_code((const uint8_t *)W->data + r * llmq_q3_row_bytes(cols), j);
        int64_t g = r * (cols / W->group) + j / W->group;
        int z = W->zeros ? W->zeros[g] : LLMQ_Q3_ZERO_SYM;
        return (float)(q - z) * llmq_f16_to_f32(((const uint16_t *)W->scales)[g]);
    }
    case LLMQ_W_MX8: {
        int64_t b = r * (cols / LLMQ_MX8_BLOCK) + j / LLMQ_MX8_BLOCK;
        return (float)*(const int8_t *)llmq_wmat_row_byte(W, r, cols, j) *
               llmq_mx8_code_scale(((const uint8_t *)W->scales)[b]);
    }
    case LLMQ_W_MXFP4:
    case LLMQ_W_MXINT4:
    case LLMQ_W_NVFP4:
    case LLMQ_W_NVINT4:
    case LLMQ_W_MXFP8: {
        const int B = llmq_block_size(W->type);
        uint8_t sb = ((const uint8_t *)W->scales)[r * (cols / B) + j / B];
        float d = llmq_block_factor(W->type, sb, W->tscale);
        if (W->type == LLMQ_W_MXFP8) return llmq_block_value(W->type, *llmq_wmat_row_byte(W, r, cols, j)) * d;
        uint8_t c = *llmq_wmat_row_byte(W, r, cols / 2, j / 2);
        return llmq_block_value(W->type, (uint8_t)((j & 1) ? c >> 4 : c & 15)) * d;
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

/* ggml block types: each block dequantized by lib/quant/ggml_blocks.c into
 * a buffer, then summed in order in double, as ref_matvec does.  A block at
 * a time is the same as a whole row at a time (the same values, the same
 * order) and needs no allocation. */
static void ref_gq_matvec(const llmq_wmat *W, int64_t r0, int64_t r1, const float *x, float *y)
{
    const llmq_gq_traits *g = &llmq_gq_types[W->type - LLMQ_W_GQ8_0];
    const int64_t nb = W->cols / g->qk;
    float buf[LLMQ_GQK_K];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)W->data + r * nb * g->block_bytes;
        double s = 0.0;
        for (int64_t b = 0; b < nb; b++) {
            g->dequant(row + b * g->block_bytes, buf, g->qk);
            for (int k = 0; k < g->qk; k++) s += (double)buf[k] * x[b * g->qk + k];
        }
        y[r - r0] = (float)s;
    }
}

static void ref_gq_dequant(const llmq_wmat *W, int64_t r0, int64_t r1, float *out)
{
    const llmq_gq_traits *g = &llmq_gq_types[W->type - LLMQ_W_GQ8_0];
    const int64_t rb = W->cols / g->qk * g->block_bytes;
    for (int64_t r = r0; r < r1; r++)
        g->dequant((const uint8_t *)W->data + r * rb, out + (r - r0) * W->cols, W->cols);
}

static void ref_matvec_a8(const llmq_wmat *W, int64_t r0, int64_t r1,
                          const int8_t *xq, float xscale, int32_t xsum, float *y)
{
    (void)xsum;
    const float *ws = W->scales;
    for (int64_t r = r0; r < r1; r++) {
        int64_t acc = 0;
        for (int64_t j = 0; j < W->cols; j++)
            acc += (int32_t)*(const int8_t *)llmq_wmat_row_byte(W, r, W->cols, j) * xq[j];
        y[r - r0] = (float)acc * (ws[r] * xscale);
    }
}

/* The single-token oracle once per token. */
static void ref_matmul_a8(const llmq_wmat *W, int64_t r0, int64_t r1, const int8_t *xq, const float *xs,
                          const int32_t *xsum, int64_t n, float *y, int64_t ldy)
{
    for (int64_t t = 0; t < n; t++) ref_matvec_a8(W, r0, r1, xq + t * W->cols, xs[t], xsum[t], y + t * ldy);
}

/* Exact products summed in double: the oracle the fp32 sums are held to. */
static void ref_matmul_bf16(const llmq_wmat *W, int64_t r0, int64_t r1, const uint16_t *xb, int64_t n,
                            float *y, int64_t ldy)
{
    for (int64_t t = 0; t < n; t++)
        for (int64_t r = r0; r < r1; r++) {
            double s = 0.0;
            for (int64_t j = 0; j < W->cols; j++)
                s += (double)ref_elem(W, r, j) * (double)llmq_bf16_to_f32(xb[t * W->cols + j]);
            y[t * ldy + r - r0] = (float)s;
        }
}

/* Pair-layout products: exact products summed in double. */
static void ref_gemm_bf16p(const uint16_t *A, int64_t n, const uint16_t *Bp, int64_t m, int64_t k, float *C, int64_t ldc)
{
    const int64_t kp = k / 2;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < m; j++) {
            const uint16_t *b = Bp + (j / 16) * kp * 32 + 2 * (j % 16);
            double s = 0.0;
            for (int64_t p = 0; p < kp; p++)
                for (int e = 0; e < 2; e++)
                    s += (double)llmq_bf16_to_f32(A[i * k + 2 * p + e]) * (double)llmq_bf16_to_f32(b[p * 32 + e]);
            C[i * ldc + j] = (float)s;
        }
}

/* Block sums in int64 (exact), each scaled by the float product of the two
 * scales (what the SIMD kernels multiply by), summed in double. */
static void ref_matvec_q4a8(const llmq_wmat *W, int64_t r0, int64_t r1, const llmq_q4a8_x *x, float *y)
{
    const int64_t cols = W->cols, ng = cols / W->group;
    const uint16_t *sc = W->scales;
    for (int64_t r = r0; r < r1; r++) {
        double s = 0.0;
        for (int64_t b = 0; b < cols / LLMQ_A8_BLOCK; b++) {
            int64_t g = r * ng + b * LLMQ_A8_BLOCK / W->group, isum = 0;
            int z = W->zeros ? W->zeros[g] : LLMQ_Q4_ZERO_SYM;
            for (int64_t j = b * LLMQ_A8_BLOCK; j < (b + 1) * LLMQ_A8_BLOCK; j++) {
                uint8_t c = *llmq_wmat_row_byte(W, r, cols / 2, j / 2);
                int q = (j & 1) ? c >> 4 : c & 15;
                isum += (int64_t)(q - z) * x->xq[j];
            }
            float f = llmq_f16_to_f32(sc[g]) * x->xs[b];
            s += (double)isum * (double)f;
        }
        y[r - r0] = (float)s;
    }
}

/* The single-token oracle once per token. */
static void ref_matmul_q4a8(const llmq_wmat *W, int64_t r0, int64_t r1, const llmq_q4a8_x *x,
                            int64_t n, float *y, int64_t ldy)
{
    for (int64_t t = 0; t < n; t++) ref_matvec_q4a8(W, r0, r1, x + t, y + t * ldy);
}

/* fmaxf / fminf drop a NaN, so no float-to-int conversion is undefined. */
static void ref_quant_blocks(const float *x, int64_t n, int8_t *q, float *scales)
{
    for (int64_t b = 0; b < n / LLMQ_A8_BLOCK; b++) {
        const float *xb = x + b * LLMQ_A8_BLOCK;
        float amax = 0.0f;
        for (int i = 0; i < LLMQ_A8_BLOCK; i++) amax = fmaxf(amax, fabsf(xb[i]));
        if (!(amax >= LLMQ_A8_TINY)) amax = 0.0f;     /* 127 / amax stays finite */
        scales[b] = amax / 127.0f;
        float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        for (int i = 0; i < LLMQ_A8_BLOCK; i++) {
            float v = fminf(fmaxf(xb[i] * inv, -127.0f), 127.0f);
            q[b * LLMQ_A8_BLOCK + i] = (int8_t)lrintf(v);
        }
    }
}

/* The chunk layout of kern-int.h, element by element. */
static void ref_q4a8_prep(const int8_t *xq, const float *xs, int64_t cols, llmq_q4a8_chunk *ch)
{
    for (int64_t base = 0; base < cols; base += 128, ch++) {
        int64_t nv = LLMQ_MIN(128, cols - base);   /* a multiple of 32 */
        memset(ch, 0, sizeof *ch);
        for (int64_t i = 0; i < nv / 2; i++) {
            ch->xe[i] = xq[base + 2 * i];
            ch->xo[i] = xq[base + 2 * i + 1];
        }
        for (int64_t l = 0; l < nv / 8; l++) {
            int s = 0;
            for (int t = 0; t < 8; t++) s += xq[base + 8 * l + t];
            ch->nsum[2 * l] = (int16_t)-s;
            ch->xs[l] = xs[(base + 8 * l) / LLMQ_A8_BLOCK];
        }
    }
}

static float bf16r(float x) { return llmq_bf16_to_f32(llmq_f32_to_bf16(x)); }

/* Decode attention on a tile: each key rotated (RoPE), then one dot
 * product per query head, channels in order; bf: the rotated key and the
 * query rounded to bf16 first (llmq_attn_scores_bf16). */
static void attn_scores_ref(const float *K, int m, int hd, int p0, const float *cs, const float *sn, const float *Q,
                            int group, float scale, float *S, size_t ldS, int bf)
{
    int half = hd / 2;
    for (int r = 0; r < m; r++) {
        const float *k = K + (size_t)r * hd;
        const float *c = cs + (size_t)(p0 + r) * half, *s = sn + (size_t)(p0 + r) * half;
        for (int h = 0; h < group; h++) {
            const float *q = Q + (size_t)h * hd;
            float acc = 0.0f;
            if (bf) {
                for (int i = 0; i < half; i++)
                    acc += bf16r(q[i]) * bf16r(k[i] * c[i] - k[i + half] * s[i]) +
                           bf16r(q[i + half]) * bf16r(k[i + half] * c[i] + k[i] * s[i]);
            } else {
                for (int i = 0; i < half; i++) acc += q[i] * (k[i] * c[i] - k[i + half] * s[i]);
                for (int i = 0; i < half; i++) acc += q[i + half] * (k[i + half] * c[i] + k[i] * s[i]);
            }
            S[(size_t)h * ldS + r] = acc * scale;
        }
    }
}

static void ref_attn_scores(const float *K, int m, int hd, int p0, const float *cs, const float *sn,
                            const float *Q, int group, float scale, float *S, size_t ldS)
{
    attn_scores_ref(K, m, hd, p0, cs, sn, Q, group, scale, S, ldS, 0);
}

static void ref_attn_scores_bf16(const float *K, int m, int hd, int p0, const float *cs, const float *sn,
                                 const float *Q, int group, float scale, float *S, size_t ldS)
{
    attn_scores_ref(K, m, hd, p0, cs, sn, Q, group, scale, S, ldS, 1);
}

static void ref_attn_values(const float *P, size_t ldP, int m, const float *V, int hd, int group, float *O)
{
    for (int h = 0; h < group; h++) {
        float *o = O + (size_t)h * hd;
        for (int r = 0; r < m; r++) {
            float p = P[(size_t)h * ldP + r];
            const float *v = V + (size_t)r * hd;
            for (int c = 0; c < hd; c++) o[c] += p * v[c];
        }
    }
}

static void ref_kv_deq_channels(const uint8_t *src, size_t rowb, int m, int hd, int bits, const float *lo,
                                const float *step, float *out)
{
    for (int r = 0; r < m; r++) llmq_kvq_deq_row(src + (size_t)r * rowb, hd, bits, lo, step, out + (size_t)r * hd);
}

static void ref_kv_deq_groups(const uint8_t *src, size_t rowb, const uint16_t *par, int ng, int m, int hd, int bits,
                              float *out)
{
    int vg = hd / ng;
    size_t gb = llmq_kvq_row_bytes(vg, bits);
    for (int r = 0; r < m; r++)
        for (int k = 0; k < ng; k++) {
            const uint16_t *pk = par + ((size_t)r * ng + k) * 2;
            llmq_kvq_deq_row1(src + (size_t)r * rowb + k * gb, vg, bits, llmq_kvq_f16(pk[1]), llmq_kvq_f16(pk[0]),
                              out + (size_t)r * hd + (size_t)k * vg);
        }
}

/* The bf16 scores of keys read from their codes as llmq_kv_deq_channels
 * reads them (m <= 32 rows a call). */
static int ref_attn_scores_codes(const uint8_t *src, size_t rowb, int m, int hd, int bits, const float *lo,
                                 const float *step, int p0, const float *cs, const float *sn, const float *Q, int group,
                                 float scale, float *S, size_t ldS)
{
    if (bits != 4 || hd % 2 || hd > 1024 || m > 32) return 0;
    float *K = malloc((size_t)m * hd * sizeof *K);
    if (!K) return 0;
    ref_kv_deq_channels(src, rowb, m, hd, bits, lo, step, K);
    attn_scores_ref(K, m, hd, p0, cs, sn, Q, group, scale, S, ldS, 1);
    free(K);
    return 1;
}

/* The values' sum straight from their codes: each weight times the code's
 * step rounded to bf16 (as the SIMD kernels multiply it), plus the weight
 * times the range's lo; sums in double. */
static int ref_attn_values_codes(const float *P, size_t ldP, int m, const uint8_t *src, size_t rowb,
                                 const uint16_t *par, int ng, int hd, int bits, int group, float *O)
{
    if ((bits != 4 && bits != 2) || ng <= 0 || hd > 1024 || hd % ng || !llmq_kvq_whole_bytes(hd / ng, bits))
        return 0;
    int vg = hd / ng;
    size_t gb = llmq_kvq_row_bytes(vg, bits);
    float code[1024];
    double acc[1024];
    for (int h = 0; h < group; h++) {
        for (int c = 0; c < hd; c++) acc[c] = 0.0;
        for (int r = 0; r < m; r++) {
            float p = P[(size_t)h * ldP + r];
            for (int k = 0; k < ng; k++) {
                const uint16_t *pk = par + ((size_t)r * ng + k) * 2;
                float pp = bf16r(p * llmq_kvq_f16(pk[0]));
                double plo = (double)p * llmq_kvq_f16(pk[1]);
                /* the codes themselves: lo 0, step 1 */
                llmq_kvq_deq_row1(src + (size_t)r * rowb + k * gb, vg, bits, 0.0f, 1.0f, code);
                for (int c = 0; c < vg; c++) acc[k * vg + c] += (double)pp * code[c] + plo;
            }
        }
        for (int c = 0; c < hd; c++) O[(size_t)h * hd + c] += (float)acc[c];
    }
    return 1;
}

const llmq_ktable llmq_ktable_ref = {
    .matvec = { ref_matvec, ref_matvec, ref_matvec, ref_matvec, ref_matvec, ref_matvec,
                ref_gq_matvec, ref_gq_matvec, ref_gq_matvec, ref_gq_matvec, ref_gq_matvec,
                ref_gq_matvec, ref_gq_matvec, ref_gq_matvec, ref_gq_matvec, ref_gq_matvec,
                LLMQ_KTABLE_BLOCK(ref_matvec, ref_matvec), [LLMQ_W_Q3] = ref_matvec },
    .dequant = { ref_dequant, ref_dequant, ref_dequant, ref_dequant, ref_dequant, ref_dequant,
                 ref_gq_dequant, ref_gq_dequant, ref_gq_dequant, ref_gq_dequant, ref_gq_dequant,
                 ref_gq_dequant, ref_gq_dequant, ref_gq_dequant, ref_gq_dequant, ref_gq_dequant,
                 LLMQ_KTABLE_BLOCK(ref_dequant, ref_dequant), [LLMQ_W_Q3] = ref_dequant },
    .matvec_a8 = ref_matvec_a8,
    .matmul_a8 = ref_matmul_a8,
    .matmul_bf16 = ref_matmul_bf16,
    .gemm_bf16p = ref_gemm_bf16p,
    .matvec_q4a8 = ref_matvec_q4a8,
    .matmul_q4a8 = ref_matmul_q4a8,
    .quant_blocks = ref_quant_blocks,
    .q4a8_prep = ref_q4a8_prep,
    .attn_scores = ref_attn_scores,
    .attn_scores_bf16 = ref_attn_scores_bf16,
    .attn_values = ref_attn_values,
    .kv_deq_channels = ref_kv_deq_channels,
    .kv_deq_groups = ref_kv_deq_groups,
    .attn_values_codes = ref_attn_values_codes,
    .attn_scores_codes = ref_attn_scores_codes,
};
_Static_assert(LLMQ_W_COUNT == 22, "add the new type to every kernel table");
