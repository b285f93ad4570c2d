/*
 * q_avx2.c - AVX2 + FMA + F16C kernels, the fallback for CPUs without
 * AVX-512.  Tested against q_ref.c by tests/unit/t-kernels.c.
 *
 * Decode (matvec) is memory-bound: each kernel walks 4 rows at once so x is
 * loaded once per 4 rows, with two accumulators per row to hide FMA latency.
 */
#include <immintrin.h>
#include "kern-int.h"
#include "../base/blocks.h"
#include "gq-simd.h"
#include "../quant/kvq.h"

#define INLINE static inline __attribute__((always_inline))
/* Software prefetch of the next 4-row block, as far ahead as one block:
 * the rows are short streams (a few KB) that the hardware prefetcher picks
 * up too late; with this, decode overlaps compute with DRAM reads. */
#define PF(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)

INLINE float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 8 weights as f32, and one weight as f32 (row tails) */
INLINE __m256 ld_f32(const void *p, int64_t j) { return _mm256_loadu_ps((const float *)p + j); }
INLINE float el_f32(const void *p, int64_t j) { return ((const float *)p)[j]; }
/* bf16 -> f32 is exact: the bf16 bits are the top half of the f32 */
INLINE __m256 ld_bf16(const void *p, int64_t j) {
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + j));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
INLINE float el_bf16(const void *p, int64_t j) { return llmq_bf16_to_f32(((const uint16_t *)p)[j]); }
INLINE __m256 ld_f16(const void *p, int64_t j) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + j)));
}
INLINE float el_f16(const void *p, int64_t j) { return _cvtsh_ss(((const uint16_t *)p)[j]); }
INLINE __m256 ld_i8(const void *p, int64_t j) {
    __m128i b = _mm_loadl_epi64((const __m128i *)((const int8_t *)p + j));
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
}
INLINE float el_i8(const void *p, int64_t j) { return (float)((const int8_t *)p)[j]; }

/* Element j of a row starting at w, in either row layout (wmat.h); needs
 * ls = llmq_wmat_line_stride(W) in scope; ESZ bytes an element.  Loads of
 * 8 elements of at most 4 bytes never cross a line. */
#define DAT(w, j, ESZ) ((const char *)llmq_line_at((const uint8_t *)(w), ls, (j) * (ESZ)))

/* Rows [r0, r1) of a matrix of ESZ-byte elements read by LD / EL; each row
 * sum is multiplied by SCALE(r) (1 for float types). */
#define MV_DENSE(NAME, ESZ, LD, EL, SCALE)                                         \
static void NAME(const llmq_wmat *W, int64_t r0, int64_t r1, const float *x, float *y) \
{                                                                                  \
    const int64_t cols = W->cols, stride = cols * (ESZ), ls = llmq_wmat_line_stride(W); \
    const int64_t c16 = cols & ~(int64_t)15, c8 = cols & ~(int64_t)7;              \
    int64_t r = r0;                                                                \
    for (; r + 4 <= r1; r += 4) {                                                  \
        const char *w0 = LLMQ_ROWP(W, r, stride), *w1 = LLMQ_ROWP(W, r + 1, stride); \
        const char *w2 = LLMQ_ROWP(W, r + 2, stride), *w3 = LLMQ_ROWP(W, r + 3, stride); \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                \
        __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;                                 \
        int64_t j = 0;                                                             \
        for (; j < c16; j += 16) {                                                 \
            __m256 xa = _mm256_loadu_ps(x + j), xb = _mm256_loadu_ps(x + j + 8);   \
            if (!W->ilv) {                                                         \
            PF(w0 + 4 * stride + j * (ESZ)); PF(w1 + 4 * stride + j * (ESZ));     \
            PF(w2 + 4 * stride + j * (ESZ)); PF(w3 + 4 * stride + j * (ESZ));     \
            }                                                                      \
            a0 = _mm256_fmadd_ps(LD(DAT(w0, j, ESZ), 0), xa, a0);                               \
            a1 = _mm256_fmadd_ps(LD(DAT(w1, j, ESZ), 0), xa, a1);                               \
            a2 = _mm256_fmadd_ps(LD(DAT(w2, j, ESZ), 0), xa, a2);                               \
            a3 = _mm256_fmadd_ps(LD(DAT(w3, j, ESZ), 0), xa, a3);                               \
            b0 = _mm256_fmadd_ps(LD(DAT(w0, j + 8, ESZ), 0), xb, b0);                           \
            b1 = _mm256_fmadd_ps(LD(DAT(w1, j + 8, ESZ), 0), xb, b1);                           \
            b2 = _mm256_fmadd_ps(LD(DAT(w2, j + 8, ESZ), 0), xb, b2);                           \
            b3 = _mm256_fmadd_ps(LD(DAT(w3, j + 8, ESZ), 0), xb, b3);                           \
        }                                                                          \
        if (j < c8) {                                                              \
            __m256 xa = _mm256_loadu_ps(x + j);                                    \
            a0 = _mm256_fmadd_ps(LD(DAT(w0, j, ESZ), 0), xa, a0);                               \
            a1 = _mm256_fmadd_ps(LD(DAT(w1, j, ESZ), 0), xa, a1);                               \
            a2 = _mm256_fmadd_ps(LD(DAT(w2, j, ESZ), 0), xa, a2);                               \
            a3 = _mm256_fmadd_ps(LD(DAT(w3, j, ESZ), 0), xa, a3);                               \
            j += 8;                                                                \
        }                                                                          \
        float t0 = 0, t1 = 0, t2 = 0, t3 = 0;                                      \
        for (; j < cols; j++) {                                                    \
            t0 += EL(DAT(w0, j, ESZ), 0) * x[j]; t1 += EL(DAT(w1, j, ESZ), 0) * x[j];                        \
            t2 += EL(DAT(w2, j, ESZ), 0) * x[j]; t3 += EL(DAT(w3, j, ESZ), 0) * x[j];                        \
        }                                                                          \
        y[r - r0 + 0] = (hsum(_mm256_add_ps(a0, b0)) + t0) * SCALE(r + 0);         \
        y[r - r0 + 1] = (hsum(_mm256_add_ps(a1, b1)) + t1) * SCALE(r + 1);         \
        y[r - r0 + 2] = (hsum(_mm256_add_ps(a2, b2)) + t2) * SCALE(r + 2);         \
        y[r - r0 + 3] = (hsum(_mm256_add_ps(a3, b3)) + t3) * SCALE(r + 3);         \
    }                                                                              \
    for (; r < r1; r++) {                                                          \
        const char *w0 = LLMQ_ROWP(W, r, stride);                                  \
        __m256 a0 = _mm256_setzero_ps(), b0 = a0;                                  \
        int64_t j = 0;                                                             \
        for (; j < c16; j += 16) {                                                 \
            a0 = _mm256_fmadd_ps(LD(DAT(w0, j, ESZ), 0), _mm256_loadu_ps(x + j), a0);           \
            b0 = _mm256_fmadd_ps(LD(DAT(w0, j + 8, ESZ), 0), _mm256_loadu_ps(x + j + 8), b0);   \
        }                                                                          \
        if (j < c8) { a0 = _mm256_fmadd_ps(LD(DAT(w0, j, ESZ), 0), _mm256_loadu_ps(x + j), a0); j += 8; } \
        float t0 = 0;                                                              \
        for (; j < cols; j++) t0 += EL(DAT(w0, j, ESZ), 0) * x[j];                              \
        y[r - r0] = (hsum(_mm256_add_ps(a0, b0)) + t0) * SCALE(r);                 \
    }                                                                              \
}

#define ONE(r) 1.0f
#define Q8SCALE(r) (((const float *)W->scales)[r])
MV_DENSE(mv_f32, 4, ld_f32, el_f32, ONE)
MV_DENSE(mv_bf16, 2, ld_bf16, el_bf16, ONE)
MV_DENSE(mv_f16, 2, ld_f16, el_f16, ONE)
MV_DENSE(mv_q8, 1, ld_i8, el_i8, Q8SCALE)

/* Dense types to f32 rows, for the prefill tiles. */
#define DQ_DENSE(NAME, ESZ, LD, EL, SCALE)                                         \
static void NAME(const llmq_wmat *W, int64_t r0, int64_t r1, float *out)           \
{                                                                                  \
    const int64_t cols = W->cols, c8 = cols & ~(int64_t)7, ls = llmq_wmat_line_stride(W); \
    for (int64_t r = r0; r < r1; r++) {                                            \
        const char *w = LLMQ_ROWP(W, r, cols * (ESZ));                             \
        float *o = out + (r - r0) * cols;                                          \
        const float sc = SCALE(r);                                                 \
        __m256 s = _mm256_set1_ps(sc);                                             \
        int64_t j = 0;                                                             \
        for (; j < c8; j += 8) _mm256_storeu_ps(o + j, _mm256_mul_ps(LD(DAT(w, j, ESZ), 0), s)); \
        for (; j < cols; j++) o[j] = EL(DAT(w, j, ESZ), 0) * sc;                   \
    }                                                                              \
}
DQ_DENSE(dq_bf16, 2, ld_bf16, el_bf16, ONE)
DQ_DENSE(dq_f16, 2, ld_f16, el_f16, ONE)
DQ_DENSE(dq_q8, 1, ld_i8, el_i8, Q8SCALE)

/* ---- Q4 ----
 *
 * 8 code bytes widen to 8 dwords; the low nibbles are the even elements of
 * 16 columns and the high nibbles the odd ones, so x is split the same way
 * once per 16 columns for 4 rows.  q - z is taken in integers (exact), so
 * a group whose codes sit at the zero point sums to exactly 0 rather than
 * to the rounding noise of s * (sum q x - z * sum x). */

/* evens and odds of x[0..15] */
INLINE void split_x16(const float *x, __m256 *xe, __m256 *xo)
{
    __m256 xa = _mm256_loadu_ps(x), xb = _mm256_loadu_ps(x + 8);
    *xe = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(xa, xb, 0x88)), 0xd8));
    *xo = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(xa, xb, 0xdd)), 0xd8));
}

INLINE void q4_rows(const llmq_wmat *W, int64_t r, int NR, const float *x, float *y)
{
    const int64_t cols = W->cols, G = W->group, ng = cols / G, rb = cols / 2, ls = llmq_wmat_line_stride(W);
    const uint16_t *sc = (const uint16_t *)W->scales + r * ng;
    const uint8_t *zp = W->zeros ? W->zeros + r * ng : NULL;
    const __m256i lo4 = _mm256_set1_epi32(15);
    const uint8_t *rp[4];
    __m256 acc[4];
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) {
        acc[k] = _mm256_setzero_ps();
        rp[k] = llmq_wmat_row_byte(W, r + k, rb, 0);
    }
    for (int64_t g = 0; g < ng; g++) {
        __m256 ga[4], gb[4];
        __m256i z[4];
#pragma GCC unroll 4
        for (int k = 0; k < NR; k++) {
            ga[k] = gb[k] = _mm256_setzero_ps();
            z[k] = _mm256_set1_epi32(zp ? zp[k * ng + g] : LLMQ_Q4_ZERO_SYM);
        }
        for (int64_t c = g * G; c < (g + 1) * G; c += 16) {
            __m256 xe, xo;
            split_x16(x + c, &xe, &xo);
#pragma GCC unroll 4
            for (int k = 0; k < NR; k++) {
                const uint8_t *d = llmq_line_at(rp[k], ls, c / 2);
                if (NR == 4 && !W->ilv) PF(d + 4 * rb);
                __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)d));
                __m256i lo = _mm256_sub_epi32(_mm256_and_si256(v, lo4), z[k]);
                __m256i hi = _mm256_sub_epi32(_mm256_srli_epi32(v, 4), z[k]);
                ga[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo), xe, ga[k]);
                gb[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi), xo, gb[k]);
            }
        }
#pragma GCC unroll 4
        for (int k = 0; k < NR; k++)
            acc[k] = _mm256_fmadd_ps(_mm256_add_ps(ga[k], gb[k]), _mm256_set1_ps(_cvtsh_ss(sc[k * ng + g])), acc[k]);
    }
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) y[k] = hsum(acc[k]);
}

static void mv_q4(const llmq_wmat *W, int64_t r0, int64_t r1, const float *x, float *y)
{
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) q4_rows(W, r, 4, x, y + (r - r0));
    for (; r < r1; r++) q4_rows(W, r, 1, x, y + (r - r0));
}

/* (q - z) * s is exact in f32, as in the oracle */
static void dq_q4(const llmq_wmat *W, int64_t r0, int64_t r1, float *out)
{
    const int64_t cols = W->cols, G = W->group, ng = cols / G, rb = cols / 2;
    const __m256i lo4 = _mm256_set1_epi32(15);
    const int64_t ls = llmq_wmat_line_stride(W);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *data = llmq_wmat_row_byte(W, r, rb, 0);
        float *o = out + (r - r0) * cols;
        for (int64_t g = 0; g < ng; g++) {
            __m256 s = _mm256_set1_ps(_cvtsh_ss(((const uint16_t *)W->scales)[r * ng + g]));
            __m256i z = _mm256_set1_epi32(W->zeros ? W->zeros[r * ng + g] : LLMQ_Q4_ZERO_SYM);
            for (int64_t c = g * G; c < (g + 1) * G; c += 16) {
                __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)llmq_line_at(data, ls, c / 2)));
                __m256 lo = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(v, lo4), z)), s);
                __m256 hi = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(v, 4), z)), s);
                __m256 u0 = _mm256_unpacklo_ps(lo, hi), u1 = _mm256_unpackhi_ps(lo, hi);
                _mm256_storeu_ps(o + c, _mm256_permute2f128_ps(u0, u1, 0x20));
                _mm256_storeu_ps(o + c + 8, _mm256_permute2f128_ps(u0, u1, 0x31));
            }
        }
    }
}

/* ---- Q3: three bits per code, 12 bytes per 32 columns (blocks.h) ----
 *
 * Eight lanes hold lo bytes 0..7, so step p of a chunk (codes 8p .. 8p + 7)
 * is one uniform shift of two vectors built once per chunk: the lo pairs
 * spread to bits 8p + 1, 8p + 2 (copies of the byte shifted by 1, 7, 13,
 * 19 bits) and the hi word shifted right by i in lane i, so that bit 8p of
 * lane i is bit 2 of code 8p + i.  vpermps reads index bits 0-2: the table
 * holds (q - z) * s at index (q & 3) << 1 | q >> 2.  Each entry is exact,
 * so the weights are the oracle's bit for bit. */

INLINE __m256 q3_table(float s, float z)
{
    const __m256 q = _mm256_setr_ps(0, 4, 1, 5, 2, 6, 3, 7);
    return _mm256_fmsub_ps(q, _mm256_set1_ps(s), _mm256_set1_ps(z * s));
}

/* The chunk at c as 8 lanes whose byte p is the table index of code 8p + i. */
INLINE __m256i q3_idx(const uint8_t *c)
{
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mlo = _mm256_set1_epi32(0x06060606), mhi = _mm256_set1_epi32(0x01010101);
    uint32_t hi;
    memcpy(&hi, c + 8, 4);
    __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)c));
    v = _mm256_or_si256(v, _mm256_slli_epi32(v, 6));
    v = _mm256_or_si256(v, _mm256_slli_epi32(v, 12));
    __m256i h = _mm256_srlv_epi32(_mm256_set1_epi32((int)hi), iota);
    return _mm256_or_si256(_mm256_and_si256(_mm256_slli_epi32(v, 1), mlo), _mm256_and_si256(h, mhi));
}

INLINE void q3_rows(const llmq_wmat *W, int64_t r, int NR, const float *x, float *y)
{
    const int64_t cols = W->cols, G = W->group, ng = cols / G, rb = llmq_q3_row_bytes(cols);
    const uint8_t *data = (const uint8_t *)W->data + r * rb;
    const uint16_t *sc = (const uint16_t *)W->scales + r * ng;
    const uint8_t *zp = W->zeros ? W->zeros + r * ng : NULL;
    __m256 a[4], b[4];
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) a[k] = b[k] = _mm256_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        __m256 t[4];
#pragma GCC unroll 4
        for (int k = 0; k < NR; k++)
            t[k] = q3_table(_cvtsh_ss(sc[k * ng + g]), zp ? (float)zp[k * ng + g] : (float)LLMQ_Q3_ZERO_SYM);
        for (int64_t c = g * G; c < (g + 1) * G; c += LLMQ_Q3_CHUNK) {
            const uint8_t *d = data + c / LLMQ_Q3_CHUNK * (int64_t)sizeof(llmq_q3_chunk);
            __m256 x0 = _mm256_loadu_ps(x + c), x1 = _mm256_loadu_ps(x + c + 8);
            __m256 x2 = _mm256_loadu_ps(x + c + 16), x3 = _mm256_loadu_ps(x + c + 24);
#pragma GCC unroll 4
            for (int k = 0; k < NR; k++) {
                if (NR == 4) PF(d + (k + 4) * rb);
                __m256i v = q3_idx(d + k * rb);
                a[k] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(t[k], v), x0, a[k]);
                b[k] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(t[k], _mm256_srli_epi32(v, 8)), x1, b[k]);
                a[k] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(t[k], _mm256_srli_epi32(v, 16)), x2, a[k]);
                b[k] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(t[k], _mm256_srli_epi32(v, 24)), x3, b[k]);
            }
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) y[k] = hsum(_mm256_add_ps(a[k], b[k]));
}

static void mv_q3(const llmq_wmat *W, int64_t r0, int64_t r1, const float *x, float *y)
{
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) q3_rows(W, r, 4, x, y + (r - r0));
    for (; r < r1; r++) q3_rows(W, r, 1, x, y + (r - r0));
}

static void dq_q3(const llmq_wmat *W, int64_t r0, int64_t r1, float *out)
{
    const int64_t cols = W->cols, G = W->group, ng = cols / G, rb = llmq_q3_row_bytes(cols);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *data = (const uint8_t *)W->data + r * rb;
        float *o = out + (r - r0) * cols;
        for (int64_t g = 0; g < ng; g++) {
            __m256 t = q3_table(_cvtsh_ss(((const uint16_t *)W->scales)[r * ng + g]),
                                W->zeros ? (float)W->zeros[r * ng + g] : (float)LLMQ_Q3_ZERO_SYM);
            for (int64_t c = g * G; c < (g + 1) * G; c += LLMQ_Q3_CHUNK) {
                __m256i v = q3_idx(data + c / LLMQ_Q3_CHUNK * (int64_t)sizeof(llmq_q3_chunk));
                for (int p = 0; p < 4; p++, v = _mm256_srli_epi32(v, 8))
                    _mm256_storeu_ps(o + c + 8 * p, _mm256_permutevar8x32_ps(t, v));
            }
        }
    }
}

/* ---- MX8 ---- */

INLINE void mx8_rows(const llmq_wmat *W, int64_t r, int NR, const float *x, float *y)
{
    const int64_t cols = W->cols, nb = cols / LLMQ_MX8_BLOCK, ls = llmq_wmat_line_stride(W);
    const uint8_t *e8 = (const uint8_t *)W->scales + r * nb;
    const char *rp[4];
    __m256 acc[4];
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) {
        acc[k] = _mm256_setzero_ps();
        rp[k] = LLMQ_ROWP(W, r + k, cols);
    }
    for (int64_t b = 0; b < nb; b++) {
        const int64_t c = b * LLMQ_MX8_BLOCK;
        __m256 x0 = _mm256_loadu_ps(x + c), x1 = _mm256_loadu_ps(x + c + 8);
        __m256 x2 = _mm256_loadu_ps(x + c + 16), x3 = _mm256_loadu_ps(x + c + 24);
#pragma GCC unroll 4
        for (int k = 0; k < NR; k++) {
            const char *w = DAT(rp[k], c, 1);          /* the block's 32 bytes, one line */
            if (NR == 4 && !W->ilv) PF(w + 4 * cols);
            __m256 p = _mm256_mul_ps(ld_i8(w, 0), x0);
            __m256 q = _mm256_mul_ps(ld_i8(w, 8), x1);
            p = _mm256_fmadd_ps(ld_i8(w, 16), x2, p);
            q = _mm256_fmadd_ps(ld_i8(w, 24), x3, q);
            acc[k] = _mm256_fmadd_ps(_mm256_add_ps(p, q), _mm256_set1_ps(llmq_mx8_code_scale(e8[k * nb + b])), acc[k]);
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) y[k] = hsum(acc[k]);
}

static void mv_mx8(const llmq_wmat *W, int64_t r0, int64_t r1, const float *x, float *y)
{
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) mx8_rows(W, r, 4, x, y + (r - r0));
    for (; r < r1; r++) mx8_rows(W, r, 1, x, y + (r - r0));
}

static void dq_mx8(const llmq_wmat *W, int64_t r0, int64_t r1, float *out)
{
    const int64_t cols = W->cols, nb = cols / LLMQ_MX8_BLOCK, ls = llmq_wmat_line_stride(W);
    for (int64_t r = r0; r < r1; r++) {
        const char *data = LLMQ_ROWP(W, r, cols);
        float *o = out + (r - r0) * cols;
        for (int64_t b = 0; b < nb; b++) {
            __m256 s = _mm256_set1_ps(llmq_mx8_code_scale(((const uint8_t *)W->scales)[r * nb + b]));
            for (int64_t c = b * LLMQ_MX8_BLOCK; c < (b + 1) * LLMQ_MX8_BLOCK; c += 8)
                _mm256_storeu_ps(o + c, _mm256_mul_ps(ld_i8(DAT(data, c, 1), 0), s));
        }
    }
}

/* ---- block formats (MXFP4, MXINT4, NVFP4, NVINT4, MXFP8) ----
 *
 * 4-bit types: 16 code bytes (32 columns) become two vectors of int8: the
 * low nibbles (the even columns) and the high ones (the odd columns), so x
 * is split into evens and odds once per 32 columns for four rows, as Q4's
 * is.  E2M1 codes go through vpshufb to their values times 2; int4 codes
 * are masked in place at the top of their byte, which is 16 times their
 * value.  Each int8 widens to f32; the element factor (1/2 for E2M1, 1/64
 * and 1/16 for MXINT4 and NVINT4), a power of two, multiplies the row sum.
 * MXFP8: an E4M3 byte, sign-extended to 16 bits and shifted, is the f16
 * with its exponent and mantissa bits (the value times 2^-8, see
 * q_avx512.c) for vcvtph2ps. */

INLINE float blk_factor(const llmq_wmat *W, uint8_t sb) { return llmq_block_factor(W->type, sb, W->tscale); }

/* The element decoding of a 4-bit type: *fp whether it is E2M1 (the table
 * is then its values times 2), and the factor that makes the decoded int8
 * the element values. */
INLINE __m128i b4_table(llmq_wtype t, int *fp, float *f)
{
    *fp = t == LLMQ_W_MXFP4 || t == LLMQ_W_NVFP4;
    *f = *fp ? 0.5f : t == LLMQ_W_MXINT4 ? 0.25f / 16 : 1.0f / 16;
    return _mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);
}

/* 32 codes at p as int8: lo the even columns, hi the odd ones */
INLINE void b4_codes(const uint8_t *p, int fp, __m128i tab, __m128i *lo, __m128i *hi)
{
    __m128i b = _mm_loadu_si128((const __m128i *)p);
    if (fp) {
        const __m128i m = _mm_set1_epi8(15);
        *lo = _mm_shuffle_epi8(tab, _mm_and_si128(b, m));
        *hi = _mm_shuffle_epi8(tab, _mm_and_si128(_mm_srli_epi16(b, 4), m));
    } else {
        const __m128i m = _mm_set1_epi8((char)0xf0);
        *lo = _mm_and_si128(_mm_slli_epi16(b, 4), m);
        *hi = _mm_and_si128(b, m);
    }
}

INLINE __m256 i8x8_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }
INLINE __m256 i8x8hi_ps(__m128i v) { return i8x8_ps(_mm_unpackhi_epi64(v, v)); }

/* 16 E4M3 bytes as f16 bits (the values times 2^-8): sign-extended, bits
 * 0-6 move to 7-13 and the sign to 15 (the copy shifted into 14 is masked) */
INLINE __m256i e4m3x16_h(const uint8_t *p)
{
    __m256i w = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)p));
    return _mm256_and_si256(_mm256_slli_epi16(w, 7), _mm256_set1_epi16((short)0xbf80));
}

/* 8 E4M3 bytes as f32 times 2^-8 */
INLINE __m256 e4m3x8(const uint8_t *p)
{
    __m128i w = _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)p));
    return _mm256_cvtph_ps(_mm_and_si128(_mm_slli_epi16(w, 7), _mm_set1_epi16((short)0xbf80)));
}

/* 8 block factors from sc (n of them valid) into f: E8M0 2^(e - 127), or
 * E4M3 / 256 (NV: the 256 * tscale goes on the row sum); vectorized, as a
 * scalar conversion per block of 16 cost more than its 16 products. */
INLINE void b4_factors8(const uint8_t *sc, int64_t n, int nv, float *f)
{
    uint8_t t[8] = { 0 };
    const uint8_t *p = sc;
    if (n < 8) { memcpy(t, sc, (size_t)n); p = t; }
    if (nv) { _mm256_storeu_ps(f, e4m3x8(p)); return; }
    __m256i e = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
    __m256i bits = _mm256_slli_epi32(e, 23);
    __m256i z = _mm256_cmpeq_epi32(e, _mm256_setzero_si256());
    bits = _mm256_blendv_epi8(bits, _mm256_set1_epi32(0x00400000), z);
    _mm256_storeu_ps(f, _mm256_castsi256_ps(bits));
}

/* NR rows (1 or 4) from row r: x is split once per 32 columns for the NR
 * rows, and each row's block sums (one per 32 columns MX, two NV) meet
 * their factors, converted eight blocks at a time, in its own accumulator. */
INLINE void b4_rows(const llmq_wmat *W, int64_t r, int NR, int nv, int fp, __m128i tab, float f, const float *x,
                    float *y)
{
    const int64_t cols = W->cols, rb = cols / 2, B = nv ? 16 : 32, nb = cols / B, ls = llmq_wmat_line_stride(W);
    const uint8_t *sc = (const uint8_t *)W->scales + r * nb;
    const uint8_t *rp[4];
    __m256 acc[4];
    float fac[4][8];
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) {
        acc[k] = _mm256_setzero_ps();
        rp[k] = llmq_wmat_row_byte(W, r + k, rb, 0);
    }
    for (int64_t c = 0; c < cols; c += 32) {
        const int64_t bi = c / B;
        if (bi % 8 == 0)
#pragma GCC unroll 4
            for (int k = 0; k < NR; k++) b4_factors8(sc + k * nb + bi, nb - bi, nv, fac[k]);
        __m256 xe0, xo0, xe1, xo1;
        split_x16(x + c, &xe0, &xo0);
        split_x16(x + c + 16, &xe1, &xo1);
#pragma GCC unroll 4
        for (int k = 0; k < NR; k++) {
            const uint8_t *p = llmq_line_at(rp[k], ls, c / 2);
            if (NR == 4 && !W->ilv) PF(p + 4 * rb);
            __m128i lo, hi;
            b4_codes(p, fp, tab, &lo, &hi);
            if (nv) {
                __m256 s0 = _mm256_mul_ps(i8x8_ps(lo), xe0), s1 = _mm256_mul_ps(i8x8hi_ps(lo), xe1);
                s0 = _mm256_fmadd_ps(i8x8_ps(hi), xo0, s0);
                s1 = _mm256_fmadd_ps(i8x8hi_ps(hi), xo1, s1);
                acc[k] = _mm256_fmadd_ps(s0, _mm256_broadcast_ss(&fac[k][bi % 8]), acc[k]);
                acc[k] = _mm256_fmadd_ps(s1, _mm256_broadcast_ss(&fac[k][bi % 8 + 1]), acc[k]);
            } else {
                __m256 s = _mm256_mul_ps(i8x8_ps(lo), xe0);
                s = _mm256_fmadd_ps(i8x8_ps(hi), xo0, s);
                s = _mm256_fmadd_ps(i8x8hi_ps(lo), xe1, s);
                s = _mm256_fmadd_ps(i8x8hi_ps(hi), xo1, s);
                acc[k] = _mm256_fmadd_ps(s, _mm256_broadcast_ss(&fac[k][bi % 8]), acc[k]);
            }
        }
    }
    /* the element factor first: a power of two, exact before the NV post factor */
    const float post = nv ? 256.0f * W->tscale : 1.0f;
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) y[k] = hsum(acc[k]) * f * post;
}

static void mv_b4(const llmq_wmat *W, int64_t r0, int64_t r1, const float *x, float *y)
{
    int fp;
    float f;
    const __m128i tab = b4_table(W->type, &fp, &f);
    int64_t r = r0;
#define B4_ROWS(NV, FP)                                                                      do {                                                                                         for (; r + 4 <= r1; r += 4) b4_rows(W, r, 4, NV, FP, tab, f, x, y + (r - r0));           for (; r < r1; r++) b4_rows(W, r, 1, NV, FP, tab, f, x, y + (r - r0));               } while (0)
    if (llmq_wtype_is_nv(W->type)) {
        if (fp) B4_ROWS(1, 1); else B4_ROWS(1, 0);
    } else {
        if (fp) B4_ROWS(0, 1); else B4_ROWS(0, 0);
    }
#undef B4_ROWS
}

static void dq_b4(const llmq_wmat *W, int64_t r0, int64_t r1, float *out)
{
    const int64_t cols = W->cols, rb = cols / 2, B = llmq_block_size(W->type), nb = cols / B;
    int fp;
    float f;
    const __m128i tab = b4_table(W->type, &fp, &f);
    const __m256 fv = _mm256_set1_ps(f);
    const int64_t ls = llmq_wmat_line_stride(W);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *data = llmq_wmat_row_byte(W, r, rb, 0);
        const uint8_t *sc = (const uint8_t *)W->scales + r * nb;
        float *o = out + (r - r0) * cols;
        for (int64_t c = 0; c < cols; c += 32) {
            __m128i lo, hi;
            b4_codes(llmq_line_at(data, ls, c / 2), fp, tab, &lo, &hi);
            __m128i u[2] = { _mm_unpacklo_epi8(lo, hi), _mm_unpackhi_epi8(lo, hi) };   /* column order */
            for (int h = 0; h < 2; h++) {
                /* (value * f) * d: f * d first would differ from the oracle only by under/overflow */
                __m256 d = _mm256_set1_ps(blk_factor(W, sc[(c + 16 * h) / B]));
                _mm256_storeu_ps(o + c + 16 * h, _mm256_mul_ps(_mm256_mul_ps(i8x8_ps(u[h]), fv), d));
                _mm256_storeu_ps(o + c + 16 * h + 8, _mm256_mul_ps(_mm256_mul_ps(i8x8hi_ps(u[h]), fv), d));
            }
        }
    }
}


/* NR rows (1 or 4) from row r, x loaded once per 32 columns for the NR rows */
INLINE void fp8_rows(const llmq_wmat *W, int64_t r, int NR, const float *x, float *y)
{
    const int64_t cols = W->cols, nb = cols / 32, ls = llmq_wmat_line_stride(W);
    const uint8_t *sc = (const uint8_t *)W->scales + r * nb;
    const uint8_t *rp[4];
    __m256 acc[4];
    float fac[4][8];
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) {
        acc[k] = _mm256_setzero_ps();
        rp[k] = llmq_wmat_row_byte(W, r + k, cols, 0);
    }
    for (int64_t b = 0; b < nb; b++) {
        if (b % 8 == 0)
#pragma GCC unroll 4
            for (int k = 0; k < NR; k++) b4_factors8(sc + k * nb + b, nb - b, 0, fac[k]);
        const float *xb = x + 32 * b;
        __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8);
        __m256 x2 = _mm256_loadu_ps(xb + 16), x3 = _mm256_loadu_ps(xb + 24);
#pragma GCC unroll 4
        for (int k = 0; k < NR; k++) {
            const uint8_t *p = llmq_line_at(rp[k], ls, 32 * b);   /* 32 bytes, one line */
            if (NR == 4 && !W->ilv) PF(p + 4 * cols);
            __m256i h0 = e4m3x16_h(p), h1 = e4m3x16_h(p + 16);
            __m256 s = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h0)), x0);
            __m256 t = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h1)), x2);
            s = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(h0, 1)), x1, s);
            t = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(h1, 1)), x3, t);
            acc[k] = _mm256_fmadd_ps(_mm256_add_ps(s, t), _mm256_broadcast_ss(&fac[k][b % 8]), acc[k]);
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) y[k] = hsum(acc[k]) * 256.0f;
}

static void mv_fp8(const llmq_wmat *W, int64_t r0, int64_t r1, const float *x, float *y)
{
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) fp8_rows(W, r, 4, x, y + (r - r0));
    for (; r < r1; r++) fp8_rows(W, r, 1, x, y + (r - r0));
}

static void dq_fp8(const llmq_wmat *W, int64_t r0, int64_t r1, float *out)
{
    const int64_t cols = W->cols, nb = cols / 32;
    const __m256 k256 = _mm256_set1_ps(256.0f);
    const int64_t ls = llmq_wmat_line_stride(W);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *data = llmq_wmat_row_byte(W, r, cols, 0);
        float *o = out + (r - r0) * cols;
        for (int64_t b = 0; b < nb; b++) {
            __m256 d = _mm256_set1_ps(blk_factor(W, ((const uint8_t *)W->scales)[r * nb + b]));
            for (int h = 0; h < 32; h += 8)
                _mm256_storeu_ps(o + 32 * b + h, _mm256_mul_ps(_mm256_mul_ps(e4m3x8(llmq_line_at(data, ls, 32 * b + h)), k256), d));
        }
    }
}

/* ---- ggml block types (gq-simd.h) ----
 *
 * All ten types are fused: each block is decoded in registers unit by unit
 * (16 values), the codes become the oracle's f32 weights d * code + m (the
 * same floats, see gq-simd.h) and are FMAed with x; no row buffer.  Two
 * rows at a time share the x loads; each row keeps two accumulators.
 * Rows follow each other in memory, so the hardware prefetcher streams the
 * whole matrix without software prefetch. */

/* unit c (16 codes) as f32 weights w0 (values 0..7), w1 (8..15) */
INLINE void gq_w16(__m128i c, float d, float m, int has_m, __m256 *w0, __m256 *w1)
{
    __m256 lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c));
    __m256 hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(c, c)));
    __m256 dv = _mm256_set1_ps(d);
    if (has_m) {
        __m256 mv = _mm256_set1_ps(m);
        *w0 = _mm256_fmadd_ps(lo, dv, mv);
        *w1 = _mm256_fmadd_ps(hi, dv, mv);
    } else {
        *w0 = _mm256_mul_ps(lo, dv);
        *w1 = _mm256_mul_ps(hi, dv);
    }
}

#define GQ_KERNELS(T, QK, BB, HM)                                                  \
INLINE void gq_rows_##T(const llmq_wmat *W, int64_t r, int NR, const float *x, float *y) \
{                                                                                  \
    const int64_t nb = W->cols / (QK), rb = nb * (BB);                             \
    const uint8_t *row = (const uint8_t *)W->data + r * rb;                        \
    __m256 a0[2], a1[2];                                                           \
    _Pragma("GCC unroll 2")                                                        \
    for (int k = 0; k < NR; k++) a0[k] = a1[k] = _mm256_setzero_ps();              \
    for (int64_t i = 0; i < nb; i++) {                                             \
        const float *xb = x + i * (QK);                                            \
        float d[2][(QK) / 16], m[2][(QK) / 16];                                    \
        _Pragma("GCC unroll 2")                                                    \
        for (int k = 0; k < NR; k++) gq_prep_##T(row + k * rb + i * (BB), d[k], m[k]); \
        _Pragma("GCC unroll 16")                                                   \
        for (int u = 0; u < (QK) / 16; u++) {                                      \
            __m256 x0 = _mm256_loadu_ps(xb + 16 * u), x1 = _mm256_loadu_ps(xb + 16 * u + 8); \
            _Pragma("GCC unroll 2")                                                \
            for (int k = 0; k < NR; k++) {                                         \
                __m256 w0, w1;                                                     \
                gq_w16(gq_unit_##T(row + k * rb + i * (BB), u), d[k][u], m[k][u], HM, &w0, &w1); \
                a0[k] = _mm256_fmadd_ps(w0, x0, a0[k]);                            \
                a1[k] = _mm256_fmadd_ps(w1, x1, a1[k]);                            \
            }                                                                      \
        }                                                                          \
    }                                                                              \
    _Pragma("GCC unroll 2")                                                        \
    for (int k = 0; k < NR; k++) y[k] = hsum(_mm256_add_ps(a0[k], a1[k]));         \
}                                                                                  \
static void mv_gq_##T(const llmq_wmat *W, int64_t r0, int64_t r1, const float *x, float *y) \
{                                                                                  \
    int64_t r = r0;                                                                \
    for (; r + 2 <= r1; r += 2) gq_rows_##T(W, r, 2, x, y + (r - r0));            \
    if (r < r1) gq_rows_##T(W, r, 1, x, y + (r - r0));                             \
}                                                                                  \
static void dq_gq_##T(const llmq_wmat *W, int64_t r0, int64_t r1, float *out)      \
{                                                                                  \
    const int64_t nb = W->cols / (QK), rb = nb * (BB);                             \
    for (int64_t r = r0; r < r1; r++) {                                            \
        const uint8_t *row = (const uint8_t *)W->data + r * rb;                    \
        float *o = out + (r - r0) * W->cols;                                       \
        for (int64_t i = 0; i < nb; i++, o += (QK)) {                              \
            const uint8_t *b = row + i * (BB);                                     \
            float d[(QK) / 16], m[(QK) / 16];                                      \
            gq_prep_##T(b, d, m);                                                  \
            _Pragma("GCC unroll 16")                                               \
            for (int u = 0; u < (QK) / 16; u++) {                                  \
                __m256 w0, w1;                                                     \
                gq_w16(gq_unit_##T(b, u), d[u], m[u], HM, &w0, &w1);               \
                _mm256_storeu_ps(o + 16 * u, w0);                                  \
                _mm256_storeu_ps(o + 16 * u + 8, w1);                              \
            }                                                                      \
        }                                                                          \
    }                                                                              \
}
GQ_TYPES(GQ_KERNELS)

/* ---- W8A8 ----
 *
 * vpmaddubsw multiplies unsigned by signed bytes into saturating int16 pair
 * sums.  With a = |w| (<= 128) and b = sign(w) * x (|x| <= 127) each pair
 * is at most 2 * 128 * 127 = 32512 < 32767: no saturation.  vpmaddwd with
 * ones then widens to int32. */
/* The int32 lane sums acc of columns [0, j) plus the columns [j, cols) that
 * no 32-byte step covered (plain rows only: tiled rows have whole lines). */
INLINE int32_t a8_dot(__m256i acc, const int8_t *w, const int8_t *xq, int64_t j, int64_t cols)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    int32_t dot = _mm_cvtsi128_si32(s);
    for (int64_t c = j; c < cols; c++) dot += (int32_t)w[c] * xq[c];
    return dot;
}

INLINE void a8_rows(const llmq_wmat *W, int64_t r, int NR, const int8_t *xq, float xscale, float *y)
{
    const int64_t cols = W->cols, ls = llmq_wmat_line_stride(W);
    const float *ws = (const float *)W->scales + r;
    const __m256i ones = _mm256_set1_epi16(1);
    const int8_t *rp[4];
    __m256i acc[4];
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) {
        acc[k] = _mm256_setzero_si256();
        rp[k] = (const int8_t *)llmq_wmat_row_byte(W, r + k, cols, 0);
    }
    int64_t j = 0;
    for (; j + 32 <= cols; j += 32) {
        __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + j));
#pragma GCC unroll 4
        for (int k = 0; k < NR; k++) {
            const uint8_t *d = llmq_line_at((const uint8_t *)rp[k], ls, j);
            if (NR == 4 && !W->ilv) PF(d + 4 * cols);
            __m256i wv = _mm256_loadu_si256((const __m256i *)d);
            __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
            acc[k] = _mm256_add_epi32(acc[k], _mm256_madd_epi16(p, ones));
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) y[k] = (float)a8_dot(acc[k], rp[k], xq, j, cols) * (ws[k] * xscale);
}

static void mv_a8(const llmq_wmat *W, int64_t r0, int64_t r1, const int8_t *xq, float xscale, int32_t xsum, float *y)
{
    (void)xsum;
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) a8_rows(W, r, 4, xq, xscale, y + (r - r0));
    for (; r < r1; r++) a8_rows(W, r, 1, xq, xscale, y + (r - r0));
}

/* Prefill: NR rows (<= 2) by NT tokens (<= 4) in registers, so each row's
 * |w| is taken once per 32 columns for NT tokens and each token's codes
 * are loaded once for NR rows; the sign transfer, vpmaddubsw and vpmaddwd
 * stay per (row, token).  Integer sums: the matvec's values bit for bit. */
INLINE void a8_tile(const llmq_wmat *W, int64_t r, int NR, const int8_t *xq, const float *xs, int NT, float *y,
                    int64_t ldy)
{
    const int64_t cols = W->cols, ls = llmq_wmat_line_stride(W);
    const float *ws = (const float *)W->scales + r;
    const __m256i ones = _mm256_set1_epi16(1);
    const int8_t *rp[2];
    __m256i acc[2][4];
#pragma GCC unroll 2
    for (int k = 0; k < NR; k++) {
        rp[k] = (const int8_t *)llmq_wmat_row_byte(W, r + k, cols, 0);
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) acc[k][t] = _mm256_setzero_si256();
    }
    int64_t j = 0;
    for (; j + 32 <= cols; j += 32) {
        __m256i wv[2], wa[2];
#pragma GCC unroll 2
        for (int k = 0; k < NR; k++) {
            wv[k] = _mm256_loadu_si256((const __m256i *)llmq_line_at((const uint8_t *)rp[k], ls, j));
            wa[k] = _mm256_sign_epi8(wv[k], wv[k]);
        }
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + t * cols + j));
#pragma GCC unroll 2
            for (int k = 0; k < NR; k++) {
                __m256i p = _mm256_maddubs_epi16(wa[k], _mm256_sign_epi8(xv, wv[k]));
                acc[k][t] = _mm256_add_epi32(acc[k][t], _mm256_madd_epi16(p, ones));
            }
        }
    }
#pragma GCC unroll 2
    for (int k = 0; k < NR; k++)
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++)
            y[t * ldy + k] = (float)a8_dot(acc[k][t], rp[k], xq + t * cols, j, cols) * (ws[k] * xs[t]);
}

static void mm_a8(const llmq_wmat *W, int64_t r0, int64_t r1, const int8_t *xq, const float *xs,
                  const int32_t *xsum, int64_t n, float *y, int64_t ldy)
{
    (void)xsum;
    const int64_t cols = W->cols;
    int64_t t = 0;
    for (; t + 4 <= n; t += 4) {
        int64_t r = r0;
        for (; r + 2 <= r1; r += 2) a8_tile(W, r, 2, xq + t * cols, xs + t, 4, y + t * ldy + (r - r0), ldy);
        if (r < r1) a8_tile(W, r, 1, xq + t * cols, xs + t, 4, y + t * ldy + (r - r0), ldy);
    }
    for (; t < n; t++) mv_a8(W, r0, r1, xq + t * cols, xs[t], 0, y + t * ldy);
}

/* ---- W4A8 ----
 *
 * Per 64 columns and row (half of an llmq_q4a8_chunk): one 32-byte load,
 * AND / shift+AND split the nibbles, two vpmaddubsw (codes 0..15 unsigned
 * times int8 activations: a pair is at most 2 * 15 * 127, and the sum of
 * both at most 4 * 15 * 127 < 32767, so nothing saturates), vpmaddwd with
 * ones to int32 per 8 columns, and vpmaddwd of (z, 0) with the chunk's
 * (-sum x, 0) for the zero point: each lane holds the exact
 * sum_j (q_j - z) x_j of its 8 columns.  One FMA scales it.  Scales and
 * zero points of 8 groups wait in memory; vpermd / vpermps hand each lane
 * its group's. */
INLINE void q4a8_rows(const llmq_wmat *W, int64_t r, int NR, int G, const llmq_q4a8_chunk *xc, float *y)
{
    const int64_t cols = W->cols, ng = cols / G, rb = cols / 2;
    const int64_t nfull = cols / 64, nh = (cols + 63) / 64;   /* 64-column halves of chunks */
    const int64_t hpw = G / 8;                                 /* halves per 8 groups */
    const int64_t ls = llmq_wmat_line_stride(W);
    const uint16_t *sc = (const uint16_t *)W->scales + r * ng;
    const uint8_t *zp = W->zeros ? W->zeros + r * ng : NULL;
    const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    /* lane l (columns 8l..8l+7 of a half) is in group 32 * (l / 4) / G of the half's first
     * (for G = 128, halves 2i and 2i + 1 share group i) */
    const __m256i lane_g = G == 32 ? _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1) : _mm256_setzero_si256();
    __m256 acc[4];
    float s8[4][8] __attribute__((aligned(32)));
    int32_t z8[4][8] __attribute__((aligned(32)));
    const uint8_t *rp[4];
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) {
        acc[k] = _mm256_setzero_ps();
        rp[k] = llmq_wmat_row_byte(W, r + k, rb, 0);
    }
    for (int64_t h = 0; h < nh;) {
        const int64_t g0 = h * 64 / G, ngw = LLMQ_MIN(ng - g0, 8);
#pragma GCC unroll 4
        for (int k = 0; k < NR; k++) {
            const uint16_t *sk = sc + k * ng + g0;
            if (ngw == 8) {
                _mm256_store_ps(s8[k], _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)sk)));
                _mm256_store_si256((__m256i *)z8[k], zp ? _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(zp + k * ng + g0)))
                                                        : _mm256_set1_epi32(LLMQ_Q4_ZERO_SYM));
            } else {
                for (int i = 0; i < 8; i++) {
                    s8[k][i] = i < ngw ? _cvtsh_ss(sk[i]) : 0.0f;
                    z8[k][i] = i >= ngw ? 0 : zp ? zp[k * ng + g0 + i] : LLMQ_Q4_ZERO_SYM;
                }
            }
        }
        const int64_t hend = LLMQ_MIN(nh, h + hpw), h0 = h;
        for (; h < hend; h++) {
            const llmq_q4a8_chunk *x = xc + h / 2;
            const int o = (int)(h & 1);
            const __m256i xe = _mm256_load_si256((const __m256i *)(x->xe + 32 * o));
            const __m256i xo = _mm256_load_si256((const __m256i *)(x->xo + 32 * o));
            const __m256i ns = _mm256_load_si256((const __m256i *)(x->nsum + 16 * o));
            const __m256 xs = _mm256_load_ps(x->xs + 8 * o);
            const __m256i gi = _mm256_add_epi32(lane_g, _mm256_set1_epi32((int)((h - h0) * 64 / G)));
#pragma GCC unroll 4
            for (int k = 0; k < NR; k++) {
                const uint8_t *d = llmq_line_at(rp[k], ls, h * 32);
                __m256i v;
                if (h < nfull) {
                    if (NR == 4 && !W->ilv) PF(d + 4 * rb);
                    v = _mm256_loadu_si256((const __m256i *)d);
                } else {
                    v = _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)d));
                }
                __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                __m256i p16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xe), _mm256_maddubs_epi16(hi, xo));
                /* G >= 64: one group per half, broadcast from memory (no shuffle) */
                const int64_t gh = (h - h0) * 64 / G;
                __m256i zv = G >= 64 ? _mm256_set1_epi32(z8[k][gh])
                                     : _mm256_permutevar8x32_epi32(_mm256_load_si256((const __m256i *)z8[k]), gi);
                __m256 sv = G >= 64 ? _mm256_set1_ps(s8[k][gh]) : _mm256_permutevar8x32_ps(_mm256_load_ps(s8[k]), gi);
                __m256i p = _mm256_add_epi32(_mm256_madd_epi16(p16, ones), _mm256_madd_epi16(zv, ns));
                __m256 f = _mm256_mul_ps(sv, xs);
                acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), f, acc[k]);
            }
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) y[k] = hsum(acc[k]);
}

LLMQ_KERN_MV_Q4A8

/* Prefill: row r times tokens x[0 .. NT - 1], y[t * ldy] for token t.
 * The code load, the nibble split and the group's scale and zero point are
 * taken once per half and used for NT tokens; each token then runs
 * q4a8_rows's operations on the same values in the same order (the same
 * exact int32 lanes, f = scale * xs per lane, one FMA per half into its own
 * accumulator, the same hsum), so prefill equals decode bit for bit.
 *
 * One row by 8 tokens, by measurement (tiny-llama's shapes, 512 tokens):
 * 8 accumulators and the row's split codes, scale and zero point take 12
 * of the 16 ymm registers, and the activations are memory operands from L1.
 * Tiles of 2-4 rows by 2-4 tokens ran 10-70% slower (4 x 4 kept its 16
 * accumulators on the stack); 1 row by 12 or 16 tokens spilled too and was
 * no faster.
 *
 * Scales and zero points are read per half, without q4a8_rows's 8-group
 * windows, whose setup would be paid per token.  A last half of 32 columns
 * (G = 32 only: cols % G == 0) reads one group; its upper lanes get scale
 * and zero 0, as in q4a8_rows (the chunk's activations are zero there). */
INLINE void q4a8_tile(const llmq_wmat *W, int64_t r, int NT, int G, const llmq_q4a8_x *x, float *y, int64_t ldy)
{
    const int64_t cols = W->cols, ng = cols / G, nfull = cols / 64, nh = (cols + 63) / 64;
    const int64_t ls = llmq_wmat_line_stride(W);
    const uint8_t *data = llmq_wmat_row_byte(W, r, cols / 2, 0);
    const uint16_t *sc = (const uint16_t *)W->scales + r * ng;
    const uint8_t *zp = W->zeros ? W->zeros + r * ng : NULL;
    const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    const __m256i lane_g = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    const llmq_q4a8_chunk *xc[8];
    __m256 acc[8];
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) {
        xc[t] = x[t].ch;
        acc[t] = _mm256_setzero_ps();
    }
    for (int64_t h = 0; h < nh; h++) {
        const int64_t g = h * 64 / G, o = h & 1;
        __m256i v, zv;
        __m256 sv;
        if (h < nfull) v = _mm256_loadu_si256((const __m256i *)llmq_line_at(data, ls, h * 32));
        else v = _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)llmq_line_at(data, ls, h * 32)));
        const __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        if (G >= 64) {
            sv = _mm256_set1_ps(_cvtsh_ss(sc[g]));
            zv = _mm256_set1_epi32(zp ? zp[g] : LLMQ_Q4_ZERO_SYM);
        } else if (h < nfull) {   /* groups g and g + 1: lanes 0-3 and 4-7 */
            uint32_t s2, z2 = zp ? (uint32_t)zp[g] | (uint32_t)zp[g + 1] << 8 : LLMQ_Q4_ZERO_SYM * 0x101u;
            memcpy(&s2, sc + g, 4);
            sv = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_cvtph_ps(_mm_cvtsi32_si128((int)s2))), lane_g);
            zv = _mm256_permutevar8x32_epi32(_mm256_cvtepu8_epi32(_mm_cvtsi32_si128((int)z2)), lane_g);
        } else {
            sv = _mm256_setr_m128(_mm_set1_ps(_cvtsh_ss(sc[g])), _mm_setzero_ps());
            zv = _mm256_setr_m128i(_mm_set1_epi32(zp ? zp[g] : LLMQ_Q4_ZERO_SYM), _mm_setzero_si128());
        }
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const llmq_q4a8_chunk *c = xc[t] + h / 2;
            const __m256i xe = _mm256_load_si256((const __m256i *)(c->xe + 32 * o));
            const __m256i xo = _mm256_load_si256((const __m256i *)(c->xo + 32 * o));
            const __m256i ns = _mm256_load_si256((const __m256i *)(c->nsum + 16 * o));
            const __m256 xs = _mm256_load_ps(c->xs + 8 * o);
            __m256i p16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xe), _mm256_maddubs_epi16(hi, xo));
            __m256i p = _mm256_add_epi32(_mm256_madd_epi16(p16, ones), _mm256_madd_epi16(zv, ns));
            __m256 f = _mm256_mul_ps(sv, xs);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), f, acc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) y[t * ldy] = hsum(acc[t]);
}

/* Rows [r0, r1) for NT tokens from x + t. */
#define Q4A8_ROWS(G, NT)                                                           \
    do {                                                                           \
        for (int64_t r = r0; r < r1; r++)                                          \
            q4a8_tile(W, r, NT, G, x + t, y + t * ldy + (r - r0), ldy);            \
        t += NT;                                                                   \
    } while (0)

/* Tokens 8 at a time, the rest 4, 2, 1: a tile's 8 tokens of activations
 * (16 bytes per column) stay in L1 while the rows stream from L2. */
#define Q4A8_TILES(G)                                                              \
    do {                                                                           \
        int64_t t = 0;                                                             \
        while (n - t >= 8) Q4A8_ROWS(G, 8);                                        \
        if (n - t >= 4) Q4A8_ROWS(G, 4);                                           \
        if (n - t >= 2) Q4A8_ROWS(G, 2);                                           \
        if (n - t >= 1) Q4A8_ROWS(G, 1);                                           \
    } while (0)

static void mm_q4a8(const llmq_wmat *W, int64_t r0, int64_t r1, const llmq_q4a8_x *x,
                    int64_t n, float *y, int64_t ldy)
{
    switch (W->group) {
    case 32: Q4A8_TILES(32); break;
    case 64: Q4A8_TILES(64); break;
    default: Q4A8_TILES(128); break;     /* llmq_wmat_check allows only 32, 64, 128 */
    }
}

/* ---- W4A8 on rows in tiles of sixteen (wmat.h's LLMQ_ILV_LANES) ----
 *
 * q_avx512.c's layout, half a 64-byte line at a time: 8 columns of 8 rows,
 * row k of the half in dword lane k.  vpmaddubsw of the low and high
 * nibbles with the token's 4 even and 4 odd codes broadcast gives each
 * row two int16 sums of two products (|.| <= 2 * 15 * 127); the block's 4
 * lines add up to |.| <= 16 * 15 * 127 = 30480 in int16, exact, and one
 * vpmaddwd with ones makes them int32.  Per 32-block: -z * sum(x) by
 * vpmaddwd of the zero points with bneg, then one FMA by scale * xs, in
 * the AVX-512 kernel's order: the same floats. */
INLINE void q4l_half(const llmq_wmat *W, int64_t r, int h0, int NH, int G, const llmq_q4a8_x *x, int NT, float *y,
                     int64_t ldy)
{
    const int64_t cols = W->cols, ng = cols / G, rb = cols / 2, BPG = G / LLMQ_A8_BLOCK;
    const uint8_t *d = (const uint8_t *)W->data + r * rb + 32 * h0;
    const uint16_t *ls = W->lscales + r * ng + 8 * h0;
    const uint8_t *lz = W->lzeros ? W->lzeros + r * ng + 8 * h0 : NULL;
    const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    __m256 acc[2][4];
#pragma GCC unroll 2
    for (int k = 0; k < NH; k++)
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) acc[k][t] = _mm256_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        __m256 sb[2];
        __m256i zw[2];
#pragma GCC unroll 2
        for (int k = 0; k < NH; k++) {
            sb[k] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(ls + g * LLMQ_ILV_LANES + 8 * k)));
            zw[k] = lz ? _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(lz + g * LLMQ_ILV_LANES + 8 * k)))
                       : _mm256_set1_epi32(LLMQ_Q4_ZERO_SYM);
        }
        for (int64_t b = g * BPG; b < (g + 1) * BPG; b++) {
            __m256i p[2][4];
#pragma GCC unroll 2
            for (int k = 0; k < NH; k++)
#pragma GCC unroll 4
                for (int t = 0; t < NT; t++) p[k][t] = _mm256_setzero_si256();
#pragma GCC unroll 4
            for (int s4 = 0; s4 < 4; s4++) {
                const int64_t j = 4 * b + s4;
                __m256i lo[2], hi[2];
#pragma GCC unroll 2
                for (int k = 0; k < NH; k++) {
                    const __m256i v = _mm256_loadu_si256((const __m256i *)(d + j * 64 + 32 * k));
                    lo[k] = _mm256_and_si256(v, m4);
                    hi[k] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                }
#pragma GCC unroll 4
                for (int t = 0; t < NT; t++) {
                    int32_t e, o;
                    llmq_q4a8_line_codes(x[t].ch, j, &e, &o);
                    const __m256i xe = _mm256_set1_epi32(e), xo = _mm256_set1_epi32(o);
#pragma GCC unroll 2
                    for (int k = 0; k < NH; k++)
                        p[k][t] = _mm256_add_epi16(p[k][t], _mm256_add_epi16(_mm256_maddubs_epi16(lo[k], xe),
                                                                             _mm256_maddubs_epi16(hi[k], xo)));
                }
            }
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++) {
                const __m256i bn = _mm256_set1_epi32(x[t].bneg[b]);
                const __m256 xs = _mm256_set1_ps(x[t].xs[b]);
#pragma GCC unroll 2
                for (int k = 0; k < NH; k++) {
                    const __m256i pt = _mm256_add_epi32(_mm256_madd_epi16(zw[k], bn), _mm256_madd_epi16(p[k][t], ones));
                    acc[k][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pt), _mm256_mul_ps(sb[k], xs), acc[k][t]);
                }
            }
        }
    }
#pragma GCC unroll 2
    for (int k = 0; k < NH; k++)
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) _mm256_storeu_ps(y + t * ldy + 8 * (h0 + k), acc[k][t]);
}

/* Decode: both halves of a tile in one pass over its lines. */
#define Q4L_MV(G) \
    for (int64_t r = r0; r < r1; r += LLMQ_ILV_LANES) q4l_half(W, r, 0, 2, G, x, 1, y + (r - r0), 0)

static void mv_q4a8l(const llmq_wmat *W, int64_t r0, int64_t r1, const llmq_q4a8_x *x, float *y)
{
    switch (W->group) {
    case 32: Q4L_MV(32); break;
    case 64: Q4L_MV(64); break;
    default: Q4L_MV(128); break;
    }
}

/* Prefill: half a tile by up to four tokens (16 registers: 4 sums, 4
 * int16 sums, the half's codes, constants). */
#define Q4L_G(G, NT) \
    for (int64_t r = r0; r < r1; r += LLMQ_ILV_LANES) \
        for (int h = 0; h < 2; h++) q4l_half(W, r, h, 1, G, x + t, NT, y + t * ldy + (r - r0), ldy)

#define Q4L_MM(G)                                                                                       \
    do {                                                                                                \
        int64_t t = 0;                                                                                  \
        for (; t + 4 <= n; t += 4) Q4L_G(G, 4);                                                         \
        for (; t + 2 <= n; t += 2) Q4L_G(G, 2);                                                         \
        for (; t < n; t++) Q4L_G(G, 1);                                                                 \
    } while (0)

static void mm_q4a8l(const llmq_wmat *W, int64_t r0, int64_t r1, const llmq_q4a8_x *x,
                     int64_t n, float *y, int64_t ldy)
{
    switch (W->group) {
    case 32: Q4L_MM(32); break;
    case 64: Q4L_MM(64); break;
    default: Q4L_MM(128); break;
    }
}

/* The chunk layout of kern-int.h, 64 columns at a time (see q_avx512.c):
 * even and odd bytes by sign-extending shifts and a saturating pack, lane
 * sums by vpsadbw on x + 128.  Columns past the row are zero. */
static void q4a8_prep(const int8_t *xq, const float *xs, int64_t cols, llmq_q4a8_chunk *ch)
{
    const __m256i bias = _mm256_set1_epi8((char)0x80), k1024 = _mm256_set1_epi64x(1024);
    const __m256i lo_dw = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7), lane_b = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    for (int64_t base = 0; base < cols; base += 128, ch++) {
        for (int h = 0; h < 2; h++) {
            int64_t c0 = base + 64 * h, nv = LLMQ_MAX(0, LLMQ_MIN(64, cols - c0));   /* 0, 32 or 64 */
            __m256i a = nv ? _mm256_loadu_si256((const __m256i *)(xq + c0)) : _mm256_setzero_si256();
            __m256i b = nv == 64 ? _mm256_loadu_si256((const __m256i *)(xq + c0 + 32)) : _mm256_setzero_si256();
            __m256i ea = _mm256_srai_epi16(_mm256_slli_epi16(a, 8), 8), eb = _mm256_srai_epi16(_mm256_slli_epi16(b, 8), 8);
            __m256i oa = _mm256_srai_epi16(a, 8), ob = _mm256_srai_epi16(b, 8);
            _mm256_store_si256((__m256i *)(ch->xe + 32 * h), _mm256_permute4x64_epi64(_mm256_packs_epi16(ea, eb), 0xd8));
            _mm256_store_si256((__m256i *)(ch->xo + 32 * h), _mm256_permute4x64_epi64(_mm256_packs_epi16(oa, ob), 0xd8));
            __m256i sa = _mm256_sub_epi64(k1024, _mm256_sad_epu8(_mm256_xor_si256(a, bias), _mm256_setzero_si256()));
            __m256i sb = _mm256_sub_epi64(k1024, _mm256_sad_epu8(_mm256_xor_si256(b, bias), _mm256_setzero_si256()));
            __m256i ns = _mm256_permutevar8x32_epi32(_mm256_blend_epi32(sa, _mm256_slli_epi64(sb, 32), 0xaa), lo_dw);
            _mm256_store_si256((__m256i *)(ch->nsum + 16 * h), _mm256_and_si256(ns, _mm256_set1_epi32(0xffff)));
            float s2[2] = { nv ? xs[c0 / LLMQ_A8_BLOCK] : 0.0f, nv == 64 ? xs[c0 / LLMQ_A8_BLOCK + 1] : 0.0f };
            __m256 sv = _mm256_castps128_ps256(_mm_castpd_ps(_mm_load_sd((const double *)s2)));
            _mm256_store_ps(ch->xs + 8 * h, _mm256_permutevar8x32_ps(sv, lane_b));
        }
    }
}

/* llmq_quantize_act_blocks, the oracle's operations in its order (see
 * q_avx512.c): NaNs drop out of the max and the clamp; cvtps rounds to
 * nearest even as lrintf does. */
static void quant_blocks(const float *x, int64_t n, int8_t *q, float *scales)
{
    const __m256 zero = _mm256_setzero_ps(), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < n / LLMQ_A8_BLOCK; b++) {
        const float *xb = x + b * LLMQ_A8_BLOCK;
        __m256 v[4], m = zero;
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(xb + 8 * i);
            m = _mm256_max_ps(m, _mm256_max_ps(_mm256_and_ps(v[i], absm), zero));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        if (!(amax >= LLMQ_A8_TINY)) amax = 0.0f;
        scales[b] = amax / 127.0f;
        __m256 inv = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
        __m256i iv[4];
        for (int i = 0; i < 4; i++)
            iv[i] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v[i], inv), lo), hi));
        /* packs work within 128-bit lanes: dwords end up in order 0 4 1 5 2 6 3 7 (of 4-dword units) */
        __m256i w = _mm256_packs_epi16(_mm256_packs_epi32(iv[0], iv[1]), _mm256_packs_epi32(iv[2], iv[3]));
        _mm256_storeu_si256((__m256i *)(q + b * LLMQ_A8_BLOCK), _mm256_permutevar8x32_epi32(w, order));
    }
}

/* ---- decode attention on a tile (llmq_attn_scores / llmq_attn_values) ----
 *
 * Scores: each block of 8 keys is rotated and transposed in registers
 * (attn_rot8) so that a vector holds one channel of the 8 keys; the tile
 * Kt[c][r] (stride 8 * NB) is then a row of NB vectors per channel, and
 * each query head is FMAs of a broadcast q[h][c] into NB accumulators.
 * Heads go H at a time and channels SP at a time (split sums) so that
 * H * NB * SP (6 to 8 chains, but for one head of fewer than 3 blocks)
 * hides the FMA latency while the accumulators, the NB tile vectors and a
 * broadcast fit the 16 registers.
 *
 * Values: 8C channels of H heads in H * C accumulators over the tile's
 * rows, each row's C vectors of V shared by the H broadcast weights. */

#define ATTN_MAX_HD 256

/* Four channels of key rows a and b: [a[0..3] | b[0..3]] */
INLINE __m256 ld_4x2(const float *a, const float *b)
{
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(a)), _mm_loadu_ps(b), 1);
}

/* In place, within each 128-bit half: v[t] element j <- v[j] element t */
INLINE void tr_4x4(__m256 v[4])
{
    __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
    __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
    v[0] = _mm256_shuffle_ps(t0, t2, 0x44);
    v[1] = _mm256_shuffle_ps(t0, t2, 0xee);
    v[2] = _mm256_shuffle_ps(t1, t3, 0x44);
    v[3] = _mm256_shuffle_ps(t1, t3, 0xee);
}

/* 8 keys rotated into Kt[ch * nk + 0 .. 7]: key j's row k[j] (hd
 * channels) with the cos and sin rows c[j], s[j] of its position.  Four
 * channels at a time, key j paired with key j + 4 in one vector (128-bit
 * loads), so that the transpose is 4x4 within each half, with no
 * lane-crossing shuffle. */
INLINE void attn_rot8(const float *const k[8], const float *const c[8], const float *const s[8], int hd,
                      float *Kt, int nk)
{
    const int half = hd / 2;
    for (int i = 0; i < half; i += 4) {
        __m256 lo[4], hi[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            __m256 a = ld_4x2(k[j] + i, k[j + 4] + i), b = ld_4x2(k[j] + half + i, k[j + 4] + half + i);
            __m256 cv = ld_4x2(c[j] + i, c[j + 4] + i), sv = ld_4x2(s[j] + i, s[j + 4] + i);
            lo[j] = _mm256_fmsub_ps(a, cv, _mm256_mul_ps(b, sv));
            hi[j] = _mm256_fmadd_ps(b, cv, _mm256_mul_ps(a, sv));
        }
        tr_4x4(lo);
        tr_4x4(hi);
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            _mm256_store_ps(Kt + (size_t)(i + t) * nk, lo[t]);
            _mm256_store_ps(Kt + (size_t)(half + i + t) * nk, hi[t]);
        }
    }
}

/* Keys r0 .. r0 + 7 into Kt; keys past m (the last block's padding) are
 * key m - 1 again: its lanes of S are never stored, and no row past m,
 * nor its position's cos and sin, is read. */
INLINE void attn_rot_block(const float *K, int hd, int r0, int m, int p0, const float *cs, const float *sn,
                           float *Kt, int nk)
{
    const float *k[8], *c[8], *s[8];
    const size_t half = (size_t)hd / 2;
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        int r = LLMQ_MIN(r0 + j, m - 1);
        k[j] = K + (size_t)r * hd;
        c[j] = cs + (size_t)(p0 + r) * half;
        s[j] = sn + (size_t)(p0 + r) * half;
    }
    attn_rot8(k, c, s, hd, Kt + r0, nk);
}

/* S rows h0 .. h0 + H - 1 from the tile of NB key blocks: channels SP at
 * a time into separate sums (hd % 8 == 0: SP, 1, 2 or 4, divides it). */
INLINE void attn_sc_heads(const float *Kt, int hd, const float *Q, int h0, int H, int NB, int SP, int m,
                          float scale, float *S, size_t ldS)
{
    __m256 acc[4][8][4];
    const int nk = 8 * NB;
#pragma GCC unroll 8
    for (int s = 0; s < SP; s++)
#pragma GCC unroll 8
        for (int h = 0; h < H; h++)
#pragma GCC unroll 8
            for (int b = 0; b < NB; b++) acc[s][h][b] = _mm256_setzero_ps();
    for (int c = 0; c < hd; c += SP) {
#pragma GCC unroll 4
        for (int s = 0; s < SP; s++) {
            __m256 kt[4];
#pragma GCC unroll 8
            for (int b = 0; b < NB; b++) kt[b] = _mm256_load_ps(Kt + (size_t)(c + s) * nk + 8 * b);
#pragma GCC unroll 8
            for (int h = 0; h < H; h++) {
                __m256 q = _mm256_broadcast_ss(Q + (size_t)(h0 + h) * hd + c + s);
#pragma GCC unroll 8
                for (int b = 0; b < NB; b++) acc[s][h][b] = _mm256_fmadd_ps(q, kt[b], acc[s][h][b]);
            }
        }
    }
    const __m256 sc = _mm256_set1_ps(scale);
#pragma GCC unroll 8
    for (int h = 0; h < H; h++) {
        float *o = S + (size_t)(h0 + h) * ldS;
#pragma GCC unroll 8
        for (int b = 0; b < NB; b++) {
            __m256 a = acc[0][h][b];
#pragma GCC unroll 8
            for (int s = 1; s < SP; s++) a = _mm256_add_ps(a, acc[s][h][b]);
            a = _mm256_mul_ps(a, sc);
            if (8 * b + 8 <= m) {
                _mm256_storeu_ps(o + 8 * b, a);
            } else {
                /* the last block's padding keys are not S's to write */
                float t[8];
                _mm256_storeu_ps(t, a);
                for (int r = 8 * b; r < m; r++) o[r] = t[r - 8 * b];
            }
        }
    }
}

/* Heads HM at a time, then the rest 4, 2, 1 at a time; chains split over
 * channels while heads times blocks are under 8. */
#define ATTN_SC_SP(H, NB) ((H) * (NB) >= 6 ? 1 : (H) * (NB) >= 3 ? 2 : 4)
#define ATTN_SC_NB(NB, HM)                                                                         \
    do {                                                                                           \
        int h = 0;                                                                                 \
        for (; h + (HM) <= group; h += (HM))                                                       \
            attn_sc_heads(Kt, hd, Q, h, HM, NB, ATTN_SC_SP(HM, NB), m, scale, S, ldS);            \
        if ((HM) > 4 && h + 4 <= group)                                                            \
            attn_sc_heads(Kt, hd, Q, h, 4, NB, ATTN_SC_SP(4, NB), m, scale, S, ldS), h += 4;       \
        if ((HM) > 2 && h + 2 <= group)                                                            \
            attn_sc_heads(Kt, hd, Q, h, 2, NB, ATTN_SC_SP(2, NB), m, scale, S, ldS), h += 2;       \
        if ((HM) > 1 && h < group) attn_sc_heads(Kt, hd, Q, h, 1, NB, ATTN_SC_SP(1, NB), m, scale, S, ldS); \
    } while (0)

static void attn_scores(const float *K, int m, int hd, int p0, const float *cs, const float *sn, const float *Q,
                        int group, float scale, float *S, size_t ldS)
{
    if (hd % 8 || hd > ATTN_MAX_HD || m > LLMQ_ATTN_TILE) {
        llmq_ktable_ref.attn_scores(K, m, hd, p0, cs, sn, Q, group, scale, S, ldS);   /* hd not a multiple of 8, or past ATTN_MAX_HD */
        return;
    }
    _Alignas(32) float Kt[ATTN_MAX_HD * LLMQ_ATTN_TILE];   /* (hd, 8 * nb) rotated keys, transposed */
    const int nb = (m + 7) / 8, nk = 8 * nb;
    int r0 = 0;
    for (; r0 + 8 <= m; r0 += 8) attn_rot_block(K, hd, r0, LLMQ_ATTN_TILE, p0, cs, sn, Kt, nk);
    if (r0 < m) attn_rot_block(K, hd, r0, m, p0, cs, sn, Kt, nk);
    switch (nb) {
    case 1: ATTN_SC_NB(1, 8); break;
    case 2: ATTN_SC_NB(2, 4); break;
    case 3: ATTN_SC_NB(3, 2); break;
    default: ATTN_SC_NB(4, 2); break;
    }
}

/* O rows h0 .. h0 + H - 1, channels c0 .. c0 + 8C - 1: H x C accumulators
 * in registers over the m rows, from O's values (the oracle's order). */
INLINE void attn_val_heads(const float *P, size_t ldP, int m, const float *V, int hd, int h0, int H, int c0, int C,
                           float *O)
{
    __m256 acc[4][8];
#pragma GCC unroll 8
    for (int h = 0; h < H; h++)
#pragma GCC unroll 8
        for (int u = 0; u < C; u++) acc[h][u] = _mm256_loadu_ps(O + (size_t)(h0 + h) * hd + c0 + 8 * u);
    for (int r = 0; r < m; r++) {
        const float *v = V + (size_t)r * hd + c0;
        __m256 vv[8];
#pragma GCC unroll 8
        for (int u = 0; u < C; u++) vv[u] = _mm256_loadu_ps(v + 8 * u);
#pragma GCC unroll 8
        for (int h = 0; h < H; h++) {
            __m256 p = _mm256_broadcast_ss(P + (size_t)(h0 + h) * ldP + r);
#pragma GCC unroll 8
            for (int u = 0; u < C; u++) acc[h][u] = _mm256_fmadd_ps(p, vv[u], acc[h][u]);
        }
    }
#pragma GCC unroll 8
    for (int h = 0; h < H; h++)
#pragma GCC unroll 8
        for (int u = 0; u < C; u++) _mm256_storeu_ps(O + (size_t)(h0 + h) * hd + c0 + 8 * u, acc[h][u]);
}

/* Heads h0 .. h0 + H - 1 over all channels: 8C at a time, then 8, then
 * one by one. */
INLINE void attn_val_rows(const float *P, size_t ldP, int m, const float *V, int hd, int h0, int H, int C, float *O)
{
    int c0 = 0;
    for (; c0 + 8 * C <= hd; c0 += 8 * C) attn_val_heads(P, ldP, m, V, hd, h0, H, c0, C, O);
    for (; c0 + 8 <= hd; c0 += 8) attn_val_heads(P, ldP, m, V, hd, h0, H, c0, 1, O);
    for (int h = h0; h < h0 + H; h++)
        for (int c = c0; c < hd; c++) {
            float o = O[(size_t)h * hd + c];
            for (int r = 0; r < m; r++) o += P[(size_t)h * ldP + r] * V[(size_t)r * hd + c];
            O[(size_t)h * hd + c] = o;
        }
}

static void attn_values(const float *P, size_t ldP, int m, const float *V, int hd, int group, float *O)
{
    int h = 0;
    for (; h + 4 <= group; h += 4) attn_val_rows(P, ldP, m, V, hd, h, 4, 2, O);
    if (h + 2 <= group) attn_val_rows(P, ldP, m, V, hd, h, 2, 4, O), h += 2;
    if (h < group) attn_val_rows(P, ldP, m, V, hd, h, 1, 8, O);
}

/* ---- KV-cache codes to f32 (llmq_kv_deq_channels / _groups) ----
 *
 * 8 codes of B bits (8, 4, 2) a vector, from exactly their bytes (a row
 * ends where its last code does): bytes widened, or 4 bytes broadcast and
 * each lane shifted right to its code (2-bit codes 16 at a time).  Widths
 * of the hot shapes are constants (hd 64 and 128, groups of 32), so that
 * their loops unroll.  Every ISA must give the oracle's floats, so
 * lo + step * code rounds the product, then the sum: GCC contracts
 * intrinsics' vector arithmetic into an FMA under -ffp-contract=fast
 * (gnu11's default) unless the product goes through an empty asm it
 * cannot see into. */
INLINE __m256 kv_lin(__m256 lo, __m256 step, __m256i code)
{
    __m256 p = _mm256_mul_ps(step, _mm256_cvtepi32_ps(code));
    __asm__("" : "+x"(p));   /* not fused with the add: see above */
    return _mm256_add_ps(lo, p);
}

/* o[0 .. n) from the n codes of B bits at p, n % 8 == 0: ranges per
 * channel (lo[c], step[c]) where CH, else one range (lo1, step1). */
INLINE void kv_deq_run(const uint8_t *p, int n, int B, int CH, const float *lo, const float *step, __m256 lo1,
                       __m256 step1, float *o)
{
#define KV_LO(c) (CH ? _mm256_loadu_ps(lo + (c)) : lo1)
#define KV_STEP(c) (CH ? _mm256_loadu_ps(step + (c)) : step1)
    int c = 0;
    if (B == 2) {
        const __m256i sh0 = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14), three = _mm256_set1_epi32(3);
        const __m256i sh1 = _mm256_add_epi32(sh0, _mm256_set1_epi32(16));
#pragma GCC unroll 8
        for (; c + 16 <= n; c += 16) {
            uint32_t w;
            memcpy(&w, p + c / 4, 4);
            __m256i v = _mm256_set1_epi32((int)w);
            _mm256_storeu_ps(o + c, kv_lin(KV_LO(c), KV_STEP(c), _mm256_and_si256(_mm256_srlv_epi32(v, sh0), three)));
            _mm256_storeu_ps(o + c + 8, kv_lin(KV_LO(c + 8), KV_STEP(c + 8),
                                               _mm256_and_si256(_mm256_srlv_epi32(v, sh1), three)));
        }
        if (c < n) {
            uint16_t w;
            memcpy(&w, p + c / 4, 2);
            __m256i q = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(w), sh0), three);
            _mm256_storeu_ps(o + c, kv_lin(KV_LO(c), KV_STEP(c), q));
        }
        return;
    }
    const __m256i sh4 = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28), fifteen = _mm256_set1_epi32(15);
#pragma GCC unroll 16
    for (; c < n; c += 8) {
        __m256i q;
        if (B == 8) {
            uint64_t w;
            memcpy(&w, p + c, 8);
            q = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)w));
        } else {
            uint32_t w;
            memcpy(&w, p + c / 2, 4);
            q = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)w), sh4), fifteen);
        }
        _mm256_storeu_ps(o + c, kv_lin(KV_LO(c), KV_STEP(c), q));
    }
#undef KV_LO
#undef KV_STEP
}

INLINE void kv_deqc_rows(const uint8_t *src, size_t rowb, int m, int hd, int B, const float *lo, const float *step,
                         float *out)
{
    const __m256 z = _mm256_setzero_ps();
    for (int r = 0; r < m; r++) kv_deq_run(src + (size_t)r * rowb, hd, B, 1, lo, step, z, z, out + (size_t)r * hd);
}

/* Group k of row r: its range broadcast (F16C converts the f16 pair
 * exactly, as llmq_kvq_f16), then its vg codes. */
INLINE void kv_deqg_rows(const uint8_t *src, size_t rowb, const uint16_t *par, int ng, int m, int vg, int B,
                         float *out)
{
    const size_t gb = llmq_kvq_row_bytes(vg, B), hd = (size_t)ng * vg;
    for (int r = 0; r < m; r++)
        for (int k = 0; k < ng; k++) {
            uint32_t pw;   /* step, lo */
            memcpy(&pw, par + ((size_t)r * ng + k) * 2, 4);
            __m128 sl = _mm_cvtph_ps(_mm_cvtsi32_si128((int)pw));
            __m256 lo = _mm256_broadcastss_ps(_mm_movehdup_ps(sl)), step = _mm256_broadcastss_ps(sl);
            kv_deq_run(src + (size_t)r * rowb + k * gb, vg, B, 0, NULL, NULL, lo, step, out + r * hd + (size_t)k * vg);
        }
}

/* The two above with B a constant, and W where the caller's is: 0 where
 * bits is not 8, 4 or 2. */
INLINE int kv_deqc_w(const uint8_t *src, size_t rowb, int m, int W, int bits, const float *lo, const float *step,
                     float *out)
{
    switch (bits) {
    case 8: kv_deqc_rows(src, rowb, m, W, 8, lo, step, out); return 1;
    case 4: kv_deqc_rows(src, rowb, m, W, 4, lo, step, out); return 1;
    case 2: kv_deqc_rows(src, rowb, m, W, 2, lo, step, out); return 1;
    }
    return 0;
}

INLINE int kv_deqg_w(const uint8_t *src, size_t rowb, const uint16_t *par, int ng, int m, int W, int bits, float *out)
{
    switch (bits) {
    case 8: kv_deqg_rows(src, rowb, par, ng, m, W, 8, out); return 1;
    case 4: kv_deqg_rows(src, rowb, par, ng, m, W, 4, out); return 1;
    case 2: kv_deqg_rows(src, rowb, par, ng, m, W, 2, out); return 1;
    }
    return 0;
}

static void kv_deq_channels(const uint8_t *src, size_t rowb, int m, int hd, int bits, const float *lo,
                            const float *step, float *out)
{
    int done = hd == 64 ? kv_deqc_w(src, rowb, m, 64, bits, lo, step, out)
             : hd == 128 ? kv_deqc_w(src, rowb, m, 128, bits, lo, step, out)
             : hd % 8 == 0 ? kv_deqc_w(src, rowb, m, hd, bits, lo, step, out) : 0;
    if (!done) llmq_ktable_ref.kv_deq_channels(src, rowb, m, hd, bits, lo, step, out);
}

static void kv_deq_groups(const uint8_t *src, size_t rowb, const uint16_t *par, int ng, int m, int hd, int bits,
                          float *out)
{
    const int vg = ng > 0 && hd % ng == 0 ? hd / ng : 0;
    int done = vg == 32 ? kv_deqg_w(src, rowb, par, ng, m, 32, bits, out)
             : vg > 0 && vg % 8 == 0 ? kv_deqg_w(src, rowb, par, ng, m, vg, bits, out) : 0;
    if (!done) llmq_ktable_ref.kv_deq_groups(src, rowb, par, ng, m, hd, bits, out);
}

const llmq_ktable llmq_ktable_avx2 = {
    .matvec = { [LLMQ_W_F32] = mv_f32, [LLMQ_W_BF16] = mv_bf16, [LLMQ_W_F16] = mv_f16,
                [LLMQ_W_Q8] = mv_q8, [LLMQ_W_Q4] = mv_q4, [LLMQ_W_MX8] = mv_mx8,
                LLMQ_KTABLE_GQ(mv_gq_), LLMQ_KTABLE_BLOCK(mv_b4, mv_fp8), [LLMQ_W_Q3] = mv_q3 },
    .dequant = { [LLMQ_W_BF16] = dq_bf16, [LLMQ_W_F16] = dq_f16, [LLMQ_W_Q8] = dq_q8,
                 [LLMQ_W_Q4] = dq_q4, [LLMQ_W_MX8] = dq_mx8,
                 LLMQ_KTABLE_GQ(dq_gq_), LLMQ_KTABLE_BLOCK(dq_b4, dq_fp8), [LLMQ_W_Q3] = dq_q3 },
    .matvec_a8 = mv_a8,
    .matmul_a8 = mm_a8,
    .matvec_q4a8 = mv_q4a8,
    .matmul_q4a8 = mm_q4a8,
    .matvec_q4a8l = mv_q4a8l,
    .matmul_q4a8l = mm_q4a8l,
    .quant_blocks = quant_blocks,
    .q4a8_prep = q4a8_prep,
    .attn_scores = attn_scores,
    .attn_values = attn_values,
    .kv_deq_channels = kv_deq_channels,
    .kv_deq_groups = kv_deq_groups,
};
