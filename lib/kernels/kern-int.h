/*
 * kern-int.h - internals of lib/kernels: the per-ISA kernel tables that
 * cpu.c dispatches through.  Only lib/kernels/ and the kernel tests use it.
 *
 * A row kernel computes rows [r0, r1) of one operation; the threaded
 * wrappers in matmul.c split rows over the pool and call it.  A NULL slot in
 * an ISA's table means "use the scalar reference" (cpu.c fills it in).
 */
#ifndef LLMQ_KERN_INT_H
#define LLMQ_KERN_INT_H

#include <string.h>
#include "kernels.h"
#include "../base/blocks.h"

/* y[r - r0] = dot(W row r, x) for r in [r0, r1).  y points at y[r0]. */
typedef void (*llmq_kmv_fn)(const llmq_wmat *W, int64_t r0, int64_t r1,
                            const float *x, float *y);
/* out[(r - r0) * cols + j] = W[r][j] as float, for r in [r0, r1). */
typedef void (*llmq_kdeq_fn)(const llmq_wmat *W, int64_t r0, int64_t r1, float *out);
/* W8A8 (W is LLMQ_W_Q8): y[r - r0] = wscale[r] * xscale * sum_j W[r][j] * xq[j],
 * the sum exact in integers.  xsum = sum_j xq[j] (the VNNI bias correction). */
typedef void (*llmq_kmva8_fn)(const llmq_wmat *W, int64_t r0, int64_t r1,
                              const int8_t *xq, float xscale, int32_t xsum, float *y);
/* W8A8 prefill: llmq_kmva8_fn for n tokens at once, token t's codes
 * xq + t * cols, scale xs[t] and code sum xsum[t], outputs y[t * ldy + r - r0].
 * The sums are exact integers, so any order of them gives the n matvecs'
 * values bit for bit. */
typedef void (*llmq_kmma8_fn)(const llmq_wmat *W, int64_t r0, int64_t r1, const int8_t *xq, const float *xs,
                              const int32_t *xsum, int64_t n, float *y, int64_t ldy);

/* W4A8 activations of one token, 128 columns per chunk as the SIMD kernels
 * read them (matmul.c fills them once per product, shared by all rows).
 * Code byte i of a row's 64-byte run at offset 64c holds column 128c + 2i
 * in its low nibble and 128c + 2i + 1 in its high one, so the low nibbles
 * meet xe and the high nibbles xo with one AND and one shift per 64 bytes.
 * A dword lane l of those 64 bytes covers the 8 columns 128c + 8l .. +7,
 * all in 32-block 4c + l / 4: nsum and xs are per lane.  Columns past the
 * row are zero everywhere (they add nothing). */
typedef struct {
    int8_t xe[64];        /* xq[128c + 2i] */
    int8_t xo[64];        /* xq[128c + 2i + 1] */
    int16_t nsum[32];     /* [2l] = -(sum of xq over lane l's 8 columns), [2l + 1] = 0:
                           * vpdpwssd / vpmaddwd with (z, 0) adds -z * sum */
    float xs[16];         /* activation scale of lane l's 32-block */
} llmq_q4a8_chunk;
_Static_assert(sizeof(llmq_q4a8_chunk) == 256, "q4a8 chunk has padding");

typedef struct {
    const int8_t *xq;             /* [cols], llmq_quantize_act_blocks codes (the oracle reads these) */
    const float *xs;              /* [cols / 32] block scales */
    const llmq_q4a8_chunk *ch;    /* [ceil(cols / 128)] the same, rearranged (SIMD kernels) */
    const int32_t *bneg;          /* [cols / 32] -(sum of xq over the 32-block) in the low 16 bits,
                                   * 0 in the high ones: LLMQ_ILV_LANES kernels only */
} llmq_q4a8_x;

/* The LLMQ_ILV_LANES kernels' view of a token's chunks: of the 8 columns
 * 8j .. 8j + 7, the 4 even codes (*e) and the 4 odd ones (*o) as one dword
 * each, to broadcast against a 64-byte line of 16 rows. */
static inline void llmq_q4a8_line_codes(const llmq_q4a8_chunk *ch, int64_t j, int32_t *e, int32_t *o)
{
    const llmq_q4a8_chunk *c = ch + (j >> 4);
    memcpy(e, c->xe + 4 * (j & 15), 4);
    memcpy(o, c->xo + 4 * (j & 15), 4);
}

/* A 32-block of activations whose max |x| is below this quantizes to zero
 * (scale 0): 127 / max|x| must stay finite. */
#define LLMQ_A8_TINY 0x1p-100f

/* W4A8 (W is LLMQ_W_Q4): y[r - r0] = sum over 32-blocks b of
 * float(scale_g * xs[b]) * sum_{j in b} (q_j - z_g) * xq[j], block sums exact. */
typedef void (*llmq_kq4a8_fn)(const llmq_wmat *W, int64_t r0, int64_t r1,
                              const llmq_q4a8_x *x, float *y);
/* W4A8 prefill: llmq_kq4a8_fn for n tokens at once, token t's activations
 * x[t] and outputs y[t * ldy + r - r0].  Each (row, token) must come out as
 * the same ISA's llmq_kq4a8_fn gives it, bit for bit (llmq_matmul_q4a8
 * promises n matvecs), so a kernel may share loads across rows and tokens
 * but not reorder any one row's float sums. */
typedef void (*llmq_kq4a8n_fn)(const llmq_wmat *W, int64_t r0, int64_t r1,
                               const llmq_q4a8_x *x, int64_t n, float *y, int64_t ldy);
/* llmq_quantize_act_blocks on n % 32 == 0 values; every ISA gives the same bytes. */
typedef void (*llmq_kqblk_fn)(const float *x, int64_t n, int8_t *q, float *scales);
/* One token's chunks ch[ceil(cols / 128)] from its codes xq[cols] and block
 * scales xs[cols / 32], cols % 32 == 0; every ISA gives the same bytes. */
typedef void (*llmq_kq4a8_prep_fn)(const int8_t *xq, const float *xs, int64_t cols, llmq_q4a8_chunk *ch);

/* bf16 prefill: y[t * ldy + r - r0] = sum_j W[r][j] * xb[t * cols + j], W
 * of type LLMQ_W_BF16, sums in fp32 (llmq_matmul_bf16). */
typedef void (*llmq_kmmbf16_fn)(const llmq_wmat *W, int64_t r0, int64_t r1, const uint16_t *xb, int64_t n,
                                float *y, int64_t ldy);

/* Small bf16 products (llmq_gemm_bf16_pairs): C[i * ldc + j] = sum_k
 * A[i][k] B[j][k], i < n, j < m, sums in fp32; A (n, k) bf16 row-major, B
 * in the pair layout of llmq_bf16_pack_pairs, k even. */
typedef void (*llmq_kgemm_bf16p_fn)(const uint16_t *A, int64_t n, const uint16_t *Bp, int64_t m, int64_t k,
                                    float *C, int64_t ldc);

/* llmq_attn_scores and llmq_attn_values (kernels.h) on one tile. */
typedef void (*llmq_kattn_scores_fn)(const float *K, int m, int hd, int p0, const float *cs, const float *sn,
                                     const float *Q, int group, float scale, float *S, size_t ldS);
typedef void (*llmq_kattn_values_fn)(const float *P, size_t ldP, int m, const float *V, int hd, int group, float *O);
/* llmq_kv_deq_channels and llmq_kv_deq_groups (kernels.h). */
typedef void (*llmq_kkv_deqc_fn)(const uint8_t *src, size_t rowb, int m, int hd, int bits, const float *lo,
                                 const float *step, float *out);
typedef void (*llmq_kkv_deqg_fn)(const uint8_t *src, size_t rowb, const uint16_t *par, int ng, int m, int hd,
                                 int bits, float *out);
/* llmq_attn_scores_codes and llmq_attn_values_codes (kernels.h). */
typedef int (*llmq_kattn_scodes_fn)(const uint8_t *src, size_t rowb, int m, int hd, int bits, const float *lo,
                                    const float *step, int p0, const float *cs, const float *sn, const float *Q,
                                    int group, float scale, float *S, size_t ldS);
typedef int (*llmq_kattn_vcodes_fn)(const float *P, size_t ldP, int m, const uint8_t *src, size_t rowb,
                                    const uint16_t *par, int ng, int hd, int bits, int group, float *O);

typedef struct {
    llmq_kmv_fn matvec[LLMQ_W_COUNT];
    llmq_kdeq_fn dequant[LLMQ_W_COUNT];
    llmq_kmva8_fn matvec_a8;
    llmq_kmma8_fn matmul_a8;
    llmq_kmmbf16_fn matmul_bf16;   /* NULL where the ISA has no bf16 dot product */
    llmq_kgemm_bf16p_fn gemm_bf16p;
    llmq_kq4a8_fn matvec_q4a8;
    llmq_kq4a8n_fn matmul_q4a8;
    llmq_kqblk_fn quant_blocks;
    llmq_kq4a8_prep_fn q4a8_prep;
    llmq_kq4a8_fn matvec_q4a8l;    /* the same on LLMQ_ILV_LANES tiles; NULL: the oracle's */
    llmq_kq4a8n_fn matmul_q4a8l;
    llmq_kattn_scores_fn attn_scores;
    llmq_kattn_scores_fn attn_scores_bf16;   /* NULL without a bf16 dot product: attn_scores */
    llmq_kattn_values_fn attn_values;
    llmq_kkv_deqc_fn kv_deq_channels;
    llmq_kkv_deqg_fn kv_deq_groups;
    llmq_kattn_scodes_fn attn_scores_codes;   /* NULL without a bf16 dot product */
    llmq_kattn_vcodes_fn attn_values_codes;   /* NULL without a bf16 dot product */
} llmq_ktable;

/* A kernel table's slots of the ten ggml block types, from one name
 * prefix: LLMQ_KTABLE_GQ(dq_gq_) is [LLMQ_W_GQ8_0] = dq_gq_q8_0, ... */
#define LLMQ_KTABLE_GQ(p)                                                                              \
    [LLMQ_W_GQ8_0] = p##q8_0, [LLMQ_W_GQ4_0] = p##q4_0, [LLMQ_W_GQ4_1] = p##q4_1,                       \
    [LLMQ_W_GQ5_0] = p##q5_0, [LLMQ_W_GQ5_1] = p##q5_1, [LLMQ_W_GQ2_K] = p##q2_k,                       \
    [LLMQ_W_GQ3_K] = p##q3_k, [LLMQ_W_GQ4_K] = p##q4_k, [LLMQ_W_GQ5_K] = p##q5_k, [LLMQ_W_GQ6_K] = p##q6_k

/* The slots of the block formats: one function for the four 4-bit types,
 * one for MXFP8. */
#define LLMQ_KTABLE_BLOCK(f4, f8)                                                                      \
    [LLMQ_W_MXFP4] = f4, [LLMQ_W_MXINT4] = f4, [LLMQ_W_NVFP4] = f4, [LLMQ_W_NVINT4] = f4, [LLMQ_W_MXFP8] = f8

extern const llmq_ktable llmq_ktable_ref;     /* q_ref.c, the oracle */
extern const llmq_ktable llmq_ktable_avx2;    /* q_avx2.c */
extern const llmq_ktable llmq_ktable_avx512;  /* q_avx512.c */

/* The matvec_q4a8 of a SIMD kernel file, defined from the file's
 * q4a8_rows(W, r, NR, G, chunks, y): rows four at a time, then one by one,
 * with the group size a constant (llmq_wmat_check allows only 32, 64 and
 * 128) so that each size compiles to its own code. */
#define LLMQ_KERN_Q4A8_G(G)                                                        \
    do {                                                                           \
        int64_t r = r0;                                                            \
        for (; r + 4 <= r1; r += 4) q4a8_rows(W, r, 4, G, x->ch, y + (r - r0));     \
        for (; r < r1; r++) q4a8_rows(W, r, 1, G, x->ch, y + (r - r0));             \
    } while (0)
#define LLMQ_KERN_MV_Q4A8                                                          \
static void mv_q4a8(const llmq_wmat *W, int64_t r0, int64_t r1, const llmq_q4a8_x *x, float *y) \
{                                                                                  \
    switch (W->group) {                                                            \
    case 32: LLMQ_KERN_Q4A8_G(32); break;                                          \
    case 64: LLMQ_KERN_Q4A8_G(64); break;                                          \
    default: LLMQ_KERN_Q4A8_G(128); break;                                         \
    }                                                                              \
}

/* Rows in either layout (wmat.h): p = llmq_wmat_row_byte(W, r, rb, 0),
 * ls = llmq_wmat_line_stride(W); byte o of the row, for loads that do not
 * cross a 64-byte line (at most 64 bytes at a multiple of their size). */
static inline const uint8_t *llmq_line_at(const uint8_t *p, int64_t ls, int64_t o)
{
    return p + (o / LLMQ_ILV_LINE) * ls + o % LLMQ_ILV_LINE;
}
/* Row r of W as a char pointer, rb bytes a row. */
#define LLMQ_ROWP(W, r, rb) ((const char *)llmq_wmat_row_byte((W), (r), (rb), 0))

/* The table of the current ISA, every slot filled.  cpu.c. */
const llmq_ktable *llmq_ktable_cur(void);

/* int32 lane sums in the a8 kernels stay exact up to this many columns
 * (each product |w * x| <= 255 * 127 with the VNNI bias); wider rows use
 * the reference kernel, which sums in int64. */
#define LLMQ_A8_MAX_COLS (1 << 19)

#endif
