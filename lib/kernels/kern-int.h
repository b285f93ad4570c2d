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

#include "kernels.h"

/* y[r - r0] = dot(W row r, x) for r in [r0, r1).  y points at y[r0]. */
typedef void (*llmq_kmv_fn)(const llmq_wmat *W, int64_t r0, int64_t r1,
                            const float *x, float *y);
/* out[(r - r0) * cols + j] = W[r][j] as float, for r in [r0, r1). */
typedef void (*llmq_kdeq_fn)(const llmq_wmat *W, int64_t r0, int64_t r1, float *out);
/* W8A8 (W is LLMQ_W_Q8): y[r - r0] = wscale[r] * xscale * sum_j W[r][j] * xq[j],
 * the sum exact in integers.  xsum = sum_j xq[j] (the VNNI bias correction). */
typedef void (*llmq_kmva8_fn)(const llmq_wmat *W, int64_t r0, int64_t r1,
                              const int8_t *xq, float xscale, int32_t xsum, float *y);

typedef struct {
    llmq_kmv_fn matvec[LLMQ_W_COUNT];
    llmq_kdeq_fn dequant[LLMQ_W_COUNT];
    llmq_kmva8_fn matvec_a8;
} llmq_ktable;

extern const llmq_ktable llmq_ktable_ref;     /* q_ref.c, the oracle */
extern const llmq_ktable llmq_ktable_avx2;    /* q_avx2.c */
extern const llmq_ktable llmq_ktable_avx512;  /* q_avx512.c */

/* The table of the current ISA, every slot filled.  cpu.c. */
const llmq_ktable *llmq_ktable_cur(void);

/* int32 lane sums in the a8 kernels stay exact up to this many columns
 * (each product |w * x| <= 255 * 127 with the VNNI bias); wider rows use
 * the reference kernel, which sums in int64. */
#define LLMQ_A8_MAX_COLS (1 << 19)

/* E8M0 (OCP MX v1.0 section 5.4.1): 2^(e - 127); e = 255 is NaN. */
static inline float llmq_e8m0_to_f32(uint8_t e)
{
    if (e == 0) return llmq_bits_f32(0x00400000u);   /* 2^-127, a float subnormal */
    if (e == 255) return llmq_bits_f32(0x7fc00000u);
    return llmq_bits_f32((uint32_t)e << 23);
}

#endif
