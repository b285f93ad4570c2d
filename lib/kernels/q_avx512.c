/*
 * q_avx512.c - AVX-512 kernels (F, BW, VL, DQ, VNNI; cpu.c checks all).
 * Tested against q_ref.c by tests/unit/t-kernels.c.
 *
 * Decode (matvec) is memory-bound: each kernel walks 4 rows at once so x is
 * loaded once per 4 rows, with two accumulators per row to hide FMA latency.
 */
#include <immintrin.h>
#include "kern-int.h"
#include "../base/blocks.h"
#include "gq-simd.h"

#define INLINE static inline __attribute__((always_inline))
/* Software prefetch of the next 4-row block, as far ahead as one block:
 * the rows are short streams (a few KB) that the hardware prefetcher picks
 * up too late; with this, decode overlaps compute with DRAM reads. */
#define PF(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)

INLINE float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }
INLINE __mmask16 tail_mask(int64_t n) { return (__mmask16)((1u << n) - 1); }

/* 16 weights as f32, full and masked (m: valid lanes) */
INLINE __m512 ld_f32(const void *p, int64_t j) { return _mm512_loadu_ps((const float *)p + j); }
INLINE __m512 ldm_f32(const void *p, int64_t j, __mmask16 m) { return _mm512_maskz_loadu_ps(m, (const float *)p + j); }
/* bf16 -> f32 is exact: the bf16 bits are the top half of the f32 */
INLINE __m512 ld_bf16(const void *p, int64_t j) {
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)p + j));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
INLINE __m512 ldm_bf16(const void *p, int64_t j, __mmask16 m) {
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)p + j);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
INLINE __m512 ld_f16(const void *p, int64_t j) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)p + j)));
}
INLINE __m512 ldm_f16(const void *p, int64_t j, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)p + j));
}
INLINE __m512 ld_i8(const void *p, int64_t j) {
    __m128i b = _mm_loadu_si128((const __m128i *)((const int8_t *)p + j));
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b));
}
INLINE __m512 ldm_i8(const void *p, int64_t j, __mmask16 m) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, (const int8_t *)p + j)));
}

/* Element j of a row starting at w, in either row layout (wmat.h); needs
 * ls = llmq_wmat_line_stride(W) in scope; ESZ bytes an element.  Loads
 * of 16 elements of at most 2 bytes never cross a line. */
#define DAT(w, j, ESZ) ((const char *)llmq_line_at((const uint8_t *)(w), ls, (j) * (ESZ)))

/* Rows [r0, r1) of a matrix of ESZ-byte elements read by LD / LDM; each row
 * sum is multiplied by SCALE(r) (1 for float types).  f32 rows are never
 * interleaved (ls = 64: DAT is the plain offset). */
#define MV_DENSE(NAME, ESZ, LD, LDM, SCALE)                                        \
static void NAME(const llmq_wmat *W, int64_t r0, int64_t r1, const float *x, float *y) \
{                                                                                  \
    const int64_t cols = W->cols, stride = cols * (ESZ), ls = llmq_wmat_line_stride(W); \
    const int64_t c32 = cols & ~(int64_t)31, c16 = cols & ~(int64_t)15;            \
    const __mmask16 tm = tail_mask(cols - c16);                                    \
    int64_t r = r0;                                                                \
    for (; r + 4 <= r1; r += 4) {                                                  \
        const char *w0 = LLMQ_ROWP(W, r, stride), *w1 = LLMQ_ROWP(W, r + 1, stride); \
        const char *w2 = LLMQ_ROWP(W, r + 2, stride), *w3 = LLMQ_ROWP(W, r + 3, stride); \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                \
        __m512 b0 = a0, b1 = a0, b2 = a0, b3 = a0;                                 \
        int64_t j = 0;                                                             \
        for (; j < c32; j += 32) {                                                 \
            __m512 xa = _mm512_loadu_ps(x + j), xb = _mm512_loadu_ps(x + j + 16);  \
            if (!W->ilv) {                                                         \
            PF(w0 + 4 * stride + j * (ESZ)); PF(w1 + 4 * stride + j * (ESZ));     \
            PF(w2 + 4 * stride + j * (ESZ)); PF(w3 + 4 * stride + j * (ESZ));     \
            }                                                                      \
            if ((ESZ) == 4) {                                                      \
                PF(w0 + 4 * stride + j * 4 + 64); PF(w1 + 4 * stride + j * 4 + 64); \
                PF(w2 + 4 * stride + j * 4 + 64); PF(w3 + 4 * stride + j * 4 + 64); \
            }                                                                      \
            a0 = _mm512_fmadd_ps(LD(DAT(w0, j, ESZ), 0), xa, a0);                               \
            a1 = _mm512_fmadd_ps(LD(DAT(w1, j, ESZ), 0), xa, a1);                               \
            a2 = _mm512_fmadd_ps(LD(DAT(w2, j, ESZ), 0), xa, a2);                               \
            a3 = _mm512_fmadd_ps(LD(DAT(w3, j, ESZ), 0), xa, a3);                               \
            b0 = _mm512_fmadd_ps(LD(DAT(w0, j + 16, ESZ), 0), xb, b0);                          \
            b1 = _mm512_fmadd_ps(LD(DAT(w1, j + 16, ESZ), 0), xb, b1);                          \
            b2 = _mm512_fmadd_ps(LD(DAT(w2, j + 16, ESZ), 0), xb, b2);                          \
            b3 = _mm512_fmadd_ps(LD(DAT(w3, j + 16, ESZ), 0), xb, b3);                          \
        }                                                                          \
        if (j < c16) {                                                             \
            __m512 xa = _mm512_loadu_ps(x + j);                                    \
            a0 = _mm512_fmadd_ps(LD(DAT(w0, j, ESZ), 0), xa, a0);                               \
            a1 = _mm512_fmadd_ps(LD(DAT(w1, j, ESZ), 0), xa, a1);                               \
            a2 = _mm512_fmadd_ps(LD(DAT(w2, j, ESZ), 0), xa, a2);                               \
            a3 = _mm512_fmadd_ps(LD(DAT(w3, j, ESZ), 0), xa, a3);                               \
            j += 16;                                                               \
        }                                                                          \
        if (j < cols) {                                                            \
            __m512 xa = _mm512_maskz_loadu_ps(tm, x + j);                          \
            b0 = _mm512_fmadd_ps(LDM(DAT(w0, j, ESZ), 0, tm), xa, b0);                          \
            b1 = _mm512_fmadd_ps(LDM(DAT(w1, j, ESZ), 0, tm), xa, b1);                          \
            b2 = _mm512_fmadd_ps(LDM(DAT(w2, j, ESZ), 0, tm), xa, b2);                          \
            b3 = _mm512_fmadd_ps(LDM(DAT(w3, j, ESZ), 0, tm), xa, b3);                          \
        }                                                                          \
        y[r - r0 + 0] = hsum(_mm512_add_ps(a0, b0)) * SCALE(r + 0);                \
        y[r - r0 + 1] = hsum(_mm512_add_ps(a1, b1)) * SCALE(r + 1);                \
        y[r - r0 + 2] = hsum(_mm512_add_ps(a2, b2)) * SCALE(r + 2);                \
        y[r - r0 + 3] = hsum(_mm512_add_ps(a3, b3)) * SCALE(r + 3);                \
    }                                                                              \
    for (; r < r1; r++) {                                                          \
        const char *w0 = LLMQ_ROWP(W, r, stride);                                  \
        __m512 a0 = _mm512_setzero_ps(), b0 = a0;                                  \
        int64_t j = 0;                                                             \
        for (; j < c32; j += 32) {                                                 \
            a0 = _mm512_fmadd_ps(LD(DAT(w0, j, ESZ), 0), _mm512_loadu_ps(x + j), a0);           \
            b0 = _mm512_fmadd_ps(LD(DAT(w0, j + 16, ESZ), 0), _mm512_loadu_ps(x + j + 16), b0); \
        }                                                                          \
        if (j < c16) { a0 = _mm512_fmadd_ps(LD(DAT(w0, j, ESZ), 0), _mm512_loadu_ps(x + j), a0); j += 16; } \
        if (j < cols)                                                              \
            b0 = _mm512_fmadd_ps(LDM(DAT(w0, j, ESZ), 0, tm), _mm512_maskz_loadu_ps(tm, x + j), b0); \
        y[r - r0] = hsum(_mm512_add_ps(a0, b0)) * SCALE(r);                        \
    }                                                                              \
}

#define ONE(r) 1.0f
#define Q8SCALE(r) (((const float *)W->scales)[r])
MV_DENSE(mv_f32, 4, ld_f32, ldm_f32, ONE)
MV_DENSE(mv_bf16, 2, ld_bf16, ldm_bf16, ONE)
MV_DENSE(mv_f16, 2, ld_f16, ldm_f16, ONE)
MV_DENSE(mv_q8, 1, ld_i8, ldm_i8, Q8SCALE)

/* Dense types to f32 rows, for the prefill tiles. */
#define DQ_DENSE(NAME, ESZ, LD, LDM, SCALE)                                        \
static void NAME(const llmq_wmat *W, int64_t r0, int64_t r1, float *out)           \
{                                                                                  \
    const int64_t cols = W->cols, c16 = cols & ~(int64_t)15, ls = llmq_wmat_line_stride(W); \
    const __mmask16 tm = tail_mask(cols - c16);                                    \
    for (int64_t r = r0; r < r1; r++) {                                            \
        const char *w = LLMQ_ROWP(W, r, cols * (ESZ));                             \
        float *o = out + (r - r0) * cols;                                          \
        __m512 s = _mm512_set1_ps(SCALE(r));                                       \
        int64_t j = 0;                                                             \
        for (; j < c16; j += 16) _mm512_storeu_ps(o + j, _mm512_mul_ps(LD(DAT(w, j, ESZ), 0), s)); \
        if (j < cols) _mm512_mask_storeu_ps(o + j, tm, _mm512_mul_ps(LDM(DAT(w, j, ESZ), 0, tm), s)); \
    }                                                                              \
}
DQ_DENSE(dq_bf16, 2, ld_bf16, ldm_bf16, ONE)
DQ_DENSE(dq_f16, 2, ld_f16, ldm_f16, ONE)
DQ_DENSE(dq_q8, 1, ld_i8, ldm_i8, Q8SCALE)

/* ---- Q4: a 16-entry table per (row, group) ----
 *
 * vpermps reads only the low 4 bits of each index, so a dword holding one
 * code byte indexes table[q] = (q - z) * s directly with its low nibble, and
 * with its high nibble after a shift.  Each table entry is exact (fmsub of
 * exact products), so the weights are the oracle's bit for bit.  Bytes give
 * the even elements (low nibbles) and odd elements (high nibbles) of 32
 * columns: x is split the same way, once per 32 columns for 4 rows.
 *
 * This is port-bound (p0/p5: per 16 elements one widen or shift, one
 * vpermps, one FMA).  Group 128 takes q4g128_rows below, which drops the
 * widen and the x split: build/tools/kbench --type 4 (5632 x 2048, 2
 * threads) reads 34-37 GB/s from cache against 26-28 before; decoding the
 * 1.1B-shape model it streams 72% of the probe against 65% (README), where
 * Q8 / MX8 reach 78-84% and W4A8 (int8 activations, vpdpbusd) ~80%. */

/* Scales and zero terms of 16 groups of one row as floats: s[k], z[k] * s[k]
 * (z = zsym where zp is NULL: Q4 and Q3). */
INLINE void group_terms(const uint16_t *sc, const uint8_t *zp, int64_t n, int zsym, float *s, float *zs)
{
    __mmask16 m = tail_mask(LLMQ_MIN(n, 16));
    __m512 sv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, sc));
    __m512 zv = zp ? _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, zp)))
                   : _mm512_set1_ps((float)zsym);
    _mm512_storeu_ps(s, sv);
    _mm512_storeu_ps(zs, _mm512_mul_ps(zv, sv));
}

INLINE __m512 q4_table(float s, float zs)
{
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return _mm512_fmsub_ps(iota, _mm512_set1_ps(s), _mm512_set1_ps(zs));
}

/* The tables of group g for NR rows (row stride ng in sc, zp): terms of
 * 16 groups are loaded when g is a multiple of 16, kept in s, zs. */
INLINE void q4_tables(const uint16_t *sc, const uint8_t *zp, int64_t ng, int64_t g, int NR,
                      float s[4][16], float zs[4][16], __m512 *t)
{
    if ((g & 15) == 0) {
#pragma GCC unroll 4
        for (int k = 0; k < NR; k++)
            group_terms(sc + k * ng + g, zp ? zp + k * ng + g : NULL, ng - g, LLMQ_Q4_ZERO_SYM, s[k], zs[k]);
    }
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) t[k] = q4_table(s[k][g & 15], zs[k][g & 15]);
}

/* NR rows (1 or 4) from row r: y[k] = W[r + k] . x.  One loop over
 * 32-column chunks; a group's tables are rebuilt where it starts. */
INLINE void q4_rows(const llmq_wmat *W, int64_t r, int NR, const float *x, float *y)
{
    const int64_t cols = W->cols, ng = cols / W->group, rb = cols / 2;
    const int64_t cpg = W->group / 32;                  /* 32-column chunks per group */
    const int64_t ls = llmq_wmat_line_stride(W);
    const uint8_t *rp[4];
    const uint16_t *sc = (const uint16_t *)W->scales + r * ng;
    const uint8_t *zp = W->zeros ? W->zeros + r * ng : NULL;
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    __m512 a[4], b[4], t[4];
    float s[4][16], zs[4][16];
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) {
        a[k] = b[k] = t[k] = _mm512_setzero_ps();
        rp[k] = llmq_wmat_row_byte(W, r + k, rb, 0);
    }
    int64_t g = 0, left = 0;
    for (int64_t c = 0; c < cols; c += 32) {
        if (left == 0) {                                /* a new group */
            q4_tables(sc, zp, ng, g, NR, s, zs, t);
            g++;
            left = cpg;
        }
        left--;
        __m512 xa = _mm512_loadu_ps(x + c), xb = _mm512_loadu_ps(x + c + 16);
        __m512 xe = _mm512_permutex2var_ps(xa, ie, xb), xo = _mm512_permutex2var_ps(xa, io, xb);
#pragma GCC unroll 4
        for (int k = 0; k < NR; k++) {
            const uint8_t *d = llmq_line_at(rp[k], ls, c >> 1);
            if (NR == 4 && !W->ilv) PF(d + 4 * rb);
            __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)d));
            a[k] = _mm512_fmadd_ps(_mm512_permutexvar_ps(v, t[k]), xe, a[k]);
            b[k] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), t[k]), xo, b[k]);
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) y[k] = hsum(_mm512_add_ps(a[k], b[k]));
}

/* Group 128 (the default): a row's group is 64 bytes, 16 dwords of 8
 * codes each (column 8j + k of the group in bits 4k..4k+3 of dword j).
 * Shifting the dwords right by 4k brings column 8j + k to the low nibble,
 * and vpermps ignores the rest, so one load and one shift per 16 columns
 * replace the widen-and-shift of q4_rows, and no x permute runs in the
 * loop: x is regrouped once per call, xp[128 g + 16 k + j] = x[128 g + 8 j + k]. */
#define Q4_XP_MAX 16384

/* xp[128 g + 16 k + j] = x[128 g + 8 j + k]: x in the order the 128-column
 * kernels' lanes read it (cols a multiple of 128, at most Q4_XP_MAX). */
INLINE void regroup_x128(const float *x, int64_t cols, float *xp)
{
    for (int64_t c = 0; c < cols; c += 128)
        for (int k = 0; k < 8; k++)
            for (int j = 0; j < 16; j++) xp[c + 16 * k + j] = x[c + 8 * j + k];
}

INLINE void q4g128_rows(const llmq_wmat *W, int64_t r, int NR, const float *xp, float *y)
{
    const int64_t cols = W->cols, ng = cols / 128, rb = cols / 2, ls = llmq_wmat_line_stride(W);
    const uint16_t *sc = (const uint16_t *)W->scales + r * ng;
    const uint8_t *zp = W->zeros ? W->zeros + r * ng : NULL;
    const uint8_t *rp[4];
    __m512 a[4], b[4], t[4];
    float s[4][16], zs[4][16];
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) {
        a[k] = b[k] = _mm512_setzero_ps();
        rp[k] = llmq_wmat_row_byte(W, r + k, rb, 0);
    }
    for (int64_t g = 0; g < ng; g++) {
        q4_tables(sc, zp, ng, g, NR, s, zs, t);
        const float *xg = xp + g * 128;
#pragma GCC unroll 4
        for (int k = 0; k < NR; k++) {
            const uint8_t *d = rp[k] + g * ls;
            if (NR == 4 && !W->ilv) PF(d + 4 * rb);
            __m512i v = _mm512_loadu_si512((const void *)d);
#pragma GCC unroll 8
            for (int sh = 0; sh < 8; sh += 2) {
                __m512 w0 = _mm512_permutexvar_ps(v, t[k]);
                __m512 w1 = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), t[k]);
                a[k] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xg + sh * 16), a[k]);
                b[k] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xg + sh * 16 + 16), b[k]);
                v = _mm512_srli_epi32(v, 8);
            }
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) y[k] = hsum(_mm512_add_ps(a[k], b[k]));
}

static void mv_q4(const llmq_wmat *W, int64_t r0, int64_t r1, const float *x, float *y)
{
    if (W->group == 128 && W->cols <= Q4_XP_MAX) {
        float xp[Q4_XP_MAX] __attribute__((aligned(64)));
        regroup_x128(x, W->cols, xp);
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) q4g128_rows(W, r, 4, xp, y + (r - r0));
        for (; r < r1; r++) q4g128_rows(W, r, 1, xp, y + (r - r0));
        return;
    }
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) q4_rows(W, r, 4, x, y + (r - r0));
    for (; r < r1; r++) q4_rows(W, r, 1, x, y + (r - r0));
}

static void dq_q4(const llmq_wmat *W, int64_t r0, int64_t r1, float *out)
{
    const int64_t cols = W->cols, G = W->group, ng = cols / G, rb = cols / 2;
    const __m512i il = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i ih = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    float s[16], zs[16];
    const int64_t ls = llmq_wmat_line_stride(W);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *data = llmq_wmat_row_byte(W, r, rb, 0);
        const uint16_t *sc = (const uint16_t *)W->scales + r * ng;
        const uint8_t *zp = W->zeros ? W->zeros + r * ng : NULL;
        float *o = out + (r - r0) * cols;
        for (int64_t g0 = 0; g0 < ng; g0 += 16) {
            group_terms(sc + g0, zp ? zp + g0 : NULL, ng - g0, LLMQ_Q4_ZERO_SYM, s, zs);
            for (int64_t g = g0; g < LLMQ_MIN(ng, g0 + 16); g++) {
                __m512 t = q4_table(s[g - g0], zs[g - g0]);
                for (int64_t c = g * G; c < (g + 1) * G; c += 32) {
                    __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)llmq_line_at(data, ls, c / 2)));
                    __m512 lo = _mm512_permutexvar_ps(v, t), hi = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), t);
                    _mm512_storeu_ps(o + c, _mm512_permutex2var_ps(lo, il, hi));
                    _mm512_storeu_ps(o + c + 16, _mm512_permutex2var_ps(lo, ih, hi));
                }
            }
        }
    }
}

/* ---- Q3: three bits per code, 12 bytes per 32 columns (blocks.h) ----
 *
 * The 8 lo bytes of a chunk, loaded twice side by side, widen to 16 dwords
 * (lanes 0-7 and 8-15 both bytes 0..7).  Shifted right by 0 (lanes 0-7)
 * and 2 (8-15) they hold the low two bits of codes 0..15 at bits 0-1, by
 * 4 and 6 those of codes 16..31.  The hi word broadcast and rotated right
 * by j - 2 in lane j has bit 2 of code j at bit 2 (and of code j + 16 at
 * bit 18); one vpternlogd takes bits 0-1 from the one and the rest from the
 * other.  vpermps reads index bits 0-3, so the table repeats (q - z) * s
 * for q = 0..7 twice and bit 3 (the next code's) does not matter.  Each
 * table entry is exact (fmsub of exact products), so the weights are the
 * oracle's bit for bit.
 *
 * Per 16 weights that is a shift, a rotate and a vpternlogd beside Q4's
 * shift, vpermps and FMA, for 3 / 4 of Q4's code bytes: where the kernels
 * rather than DRAM set the pace Q3 is slower per weight, not only per byte
 * (build/tools/kbench --types q4,q3 --threads 1 on a Zen 4: 1.4x Q4's
 * us/matvec; 1.65x against q4g128_rows in cache).  Lane masks from the hi
 * word (_mm512_mask_add_ps of 4 s, or a masked vpermps of a second table)
 * measured slower still there. */

/* (q - z) * s for q = index & 7 */
INLINE __m512 q3_table(float s, float zs)
{
    const __m512 q8 = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7);
    return _mm512_fmsub_ps(q8, _mm512_set1_ps(s), _mm512_set1_ps(zs));
}

/* The table indices of codes 0..15 (*i0) and 16..31 (*i1) of the chunk at c. */
INLINE void q3_idx(const uint8_t *c, __m512i *i0, __m512i *i1)
{
    const __m512i sh0 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
    const __m512i sh1 = _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6);
    const __m512i hr0 = _mm512_setr_epi32(30, 31, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13);
    const __m512i hr1 = _mm512_setr_epi32(14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29);
    const __m512i m3 = _mm512_set1_epi32(3);
    uint64_t lo;
    uint32_t hi;
    memcpy(&lo, c, 8);
    memcpy(&hi, c + 8, 4);
    __m512i v = _mm512_cvtepu8_epi32(_mm_set1_epi64x((long long)lo)), h = _mm512_set1_epi32((int)hi);
    /* 0xe4: bits of the first operand where m3 has ones, of the second elsewhere */
    *i0 = _mm512_ternarylogic_epi32(_mm512_srlv_epi32(v, sh0), _mm512_rorv_epi32(h, hr0), m3, 0xe4);
    *i1 = _mm512_ternarylogic_epi32(_mm512_srlv_epi32(v, sh1), _mm512_rorv_epi32(h, hr1), m3, 0xe4);
}

/* NR rows (1 or 4) from row r: y[k] = W[r + k] . x, one 32-column chunk
 * per step; a group's tables are built where it starts. */
INLINE void q3_rows(const llmq_wmat *W, int64_t r, int NR, const float *x, float *y)
{
    const int64_t cols = W->cols, ng = cols / W->group, rb = llmq_q3_row_bytes(cols);
    const int64_t cpg = W->group / LLMQ_Q3_CHUNK;
    const uint8_t *data = (const uint8_t *)W->data + r * rb;
    const uint16_t *sc = (const uint16_t *)W->scales + r * ng;
    const uint8_t *zp = W->zeros ? W->zeros + r * ng : NULL;
    __m512 a[4], b[4], t[4];
    float s[4][16], zs[4][16];
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) a[k] = b[k] = t[k] = _mm512_setzero_ps();
    int64_t g = 0, left = 0;
    for (int64_t c = 0; c < cols; c += LLMQ_Q3_CHUNK) {
        if (left == 0) {                                /* a new group */
            if ((g & 15) == 0) {
#pragma GCC unroll 4
                for (int k = 0; k < NR; k++)
                    group_terms(sc + k * ng + g, zp ? zp + k * ng + g : NULL, ng - g, LLMQ_Q3_ZERO_SYM, s[k], zs[k]);
            }
#pragma GCC unroll 4
            for (int k = 0; k < NR; k++) t[k] = q3_table(s[k][g & 15], zs[k][g & 15]);
            g++;
            left = cpg;
        }
        left--;
        __m512 xa = _mm512_loadu_ps(x + c), xb = _mm512_loadu_ps(x + c + 16);
        const uint8_t *d = data + c / LLMQ_Q3_CHUNK * (int64_t)sizeof(llmq_q3_chunk);
#pragma GCC unroll 4
        for (int k = 0; k < NR; k++) {
            if (NR == 4) PF(d + (k + 4) * rb);
            __m512i i0, i1;
            q3_idx(d + k * rb, &i0, &i1);
            a[k] = _mm512_fmadd_ps(_mm512_permutexvar_ps(i0, t[k]), xa, a[k]);
            b[k] = _mm512_fmadd_ps(_mm512_permutexvar_ps(i1, t[k]), xb, b[k]);
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) y[k] = hsum(_mm512_add_ps(a[k], b[k]));
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
    float s[16], zs[16];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *data = (const uint8_t *)W->data + r * rb;
        const uint16_t *sc = (const uint16_t *)W->scales + r * ng;
        const uint8_t *zp = W->zeros ? W->zeros + r * ng : NULL;
        float *o = out + (r - r0) * cols;
        for (int64_t g0 = 0; g0 < ng; g0 += 16) {
            group_terms(sc + g0, zp ? zp + g0 : NULL, ng - g0, LLMQ_Q3_ZERO_SYM, s, zs);
            for (int64_t g = g0; g < LLMQ_MIN(ng, g0 + 16); g++) {
                __m512 t = q3_table(s[g - g0], zs[g - g0]);
                for (int64_t c = g * G; c < (g + 1) * G; c += LLMQ_Q3_CHUNK) {
                    __m512i i0, i1;
                    q3_idx(data + c / LLMQ_Q3_CHUNK * (int64_t)sizeof(llmq_q3_chunk), &i0, &i1);
                    _mm512_storeu_ps(o + c, _mm512_permutexvar_ps(i0, t));
                    _mm512_storeu_ps(o + c + 16, _mm512_permutexvar_ps(i1, t));
                }
            }
        }
    }
}

/* ---- MX8: int8 codes, one power-of-two factor per 32 ---- */

/* llmq_mx8_code_scale of 16 E8M0 bytes (n valid): 2^(e - 133), exact. */
INLINE void mx8_block_scales(const uint8_t *e8, int64_t n, float *s)
{
    __mmask16 m = tail_mask(LLMQ_MIN(n, 16));
    __m512i e = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, e8));
    __m512i norm = _mm512_slli_epi32(_mm512_sub_epi32(e, _mm512_set1_epi32(6)), 23);
    __m512i sub = _mm512_sllv_epi32(_mm512_set1_epi32(1), _mm512_add_epi32(e, _mm512_set1_epi32(16)));
    __m512i bits = _mm512_mask_blend_epi32(_mm512_cmpgt_epi32_mask(e, _mm512_set1_epi32(6)), sub, norm);
    bits = _mm512_mask_blend_epi32(_mm512_cmpeq_epi32_mask(e, _mm512_set1_epi32(255)), bits,
                                   _mm512_set1_epi32(0x7fc00000));
    _mm512_storeu_ps(s, _mm512_castsi512_ps(bits));
}

INLINE void mx8_rows(const llmq_wmat *W, int64_t r, int NR, const float *x, float *y)
{
    const int64_t cols = W->cols, nb = cols / LLMQ_MX8_BLOCK, ls = llmq_wmat_line_stride(W);
    const uint8_t *e8 = (const uint8_t *)W->scales + r * nb;
    const char *rp[4];
    __m512 acc[4];
    float s[4][16];
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) {
        acc[k] = _mm512_setzero_ps();
        rp[k] = LLMQ_ROWP(W, r + k, cols);
    }
    for (int64_t b0 = 0; b0 < nb; b0 += 16) {
#pragma GCC unroll 4
        for (int k = 0; k < NR; k++) mx8_block_scales(e8 + k * nb + b0, nb - b0, s[k]);
        for (int64_t b = b0; b < LLMQ_MIN(nb, b0 + 16); b++) {
            const int64_t c = b * LLMQ_MX8_BLOCK;
            __m512 xa = _mm512_loadu_ps(x + c), xb = _mm512_loadu_ps(x + c + 16);
#pragma GCC unroll 4
            for (int k = 0; k < NR; k++) {
                if (NR == 4 && !W->ilv) PF(rp[k] + 4 * cols + c);
                __m512 p = _mm512_mul_ps(ld_i8(DAT(rp[k], c, 1), 0), xa);
                p = _mm512_fmadd_ps(ld_i8(DAT(rp[k], c + 16, 1), 0), xb, p);
                acc[k] = _mm512_fmadd_ps(p, _mm512_set1_ps(s[k][b - b0]), acc[k]);
            }
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
    float s[16];
    for (int64_t r = r0; r < r1; r++) {
        const char *data = LLMQ_ROWP(W, r, cols);
        float *o = out + (r - r0) * cols;
        for (int64_t b0 = 0; b0 < nb; b0 += 16) {
            mx8_block_scales((const uint8_t *)W->scales + r * nb + b0, nb - b0, s);
            for (int64_t b = b0; b < LLMQ_MIN(nb, b0 + 16); b++) {
                const int64_t c = b * LLMQ_MX8_BLOCK;
                __m512 sv = _mm512_set1_ps(s[b - b0]);
                _mm512_storeu_ps(o + c, _mm512_mul_ps(ld_i8(DAT(data, c, 1), 0), sv));
                _mm512_storeu_ps(o + c + 16, _mm512_mul_ps(ld_i8(DAT(data, c + 16, 1), 0), sv));
            }
        }
    }
}

/* ---- block formats (MXFP4, MXINT4, NVFP4, NVINT4, MXFP8) ----
 *
 * 4-bit types: a code indexes the type's 16 element values (vpermps on
 * the low nibble, as Q4 does), the even and odd columns of 32 meet x split
 * the same way, and the block factors multiply the partial sums: one
 * factor per 32 columns (MX), or two (NV blocks of 16: lanes 0-7 and 8-15
 * of both halves lie in the first and second block).  MXFP8: an E4M3 byte
 * becomes an f16 with the same exponent and mantissa bits (E4M3's bias 7
 * is f16's 15 less 8, so the f16 is the value times 2^-8, subnormals
 * included) and vcvtph2ps widens it; the 2^8 is applied to the row sum. */

/* Block factors of 16 blocks (n valid) of one row as floats (blocks.h):
 * E8M0 2^(e - 127), or E4M3 times tscale (the same float product as the
 * oracle: the E4M3 value is exact as f16 times 256). */
INLINE __m512 e4m3_f16x256(__m128i b)
{
    /* sign-extended, bits 0-6 move to 7-13 and the sign to 15 (and 14, masked) */
    __m256i w = _mm256_cvtepi8_epi16(b);
    return _mm512_cvtph_ps(_mm256_and_si256(_mm256_slli_epi16(w, 7), _mm256_set1_epi16((short)0xbf80)));
}

INLINE void blk_factors(const llmq_wmat *W, const uint8_t *sc, int64_t n, float *d)
{
    __mmask16 m = tail_mask(LLMQ_MIN(n, 16));
    __m128i b = _mm_maskz_loadu_epi8(m, sc);
    if (llmq_wtype_is_nv(W->type)) {
        __m512 v = _mm512_mul_ps(e4m3_f16x256(b), _mm512_set1_ps(256.0f));
        _mm512_storeu_ps(d, _mm512_mul_ps(v, _mm512_set1_ps(W->tscale)));
        return;
    }
    __m512i e = _mm512_cvtepu8_epi32(b);
    __m512i bits = _mm512_slli_epi32(e, 23);
    bits = _mm512_mask_blend_epi32(_mm512_cmpeq_epi32_mask(e, _mm512_setzero_si512()), bits,
                                   _mm512_set1_epi32(0x00400000));
    bits = _mm512_mask_blend_epi32(_mm512_cmpeq_epi32_mask(e, _mm512_set1_epi32(255)), bits,
                                   _mm512_set1_epi32(0x7fc00000));
    _mm512_storeu_ps(d, _mm512_castsi512_ps(bits));
}

/* NR rows (1 or 4) of a 4-bit block type from row r.  The 16 block factors
 * of a row are held in a register; chunk c's factor vector (MX: block c
 * in every lane; NV: blocks 2c and 2c + 1 in lanes 0-7 and 8-15) is one
 * vpermps of it. */
INLINE void b4_rows(const llmq_wmat *W, int64_t r, int NR, int nv, const float *x, float *y)
{
    const int64_t cols = W->cols, rb = cols / 2, B = nv ? 16 : 32, nb = cols / B;
    const int64_t cpf = nv ? 8 : 16;           /* 32-column chunks per 16 block factors */
    const int64_t ls = llmq_wmat_line_stride(W);
    const uint8_t *sc = (const uint8_t *)W->scales + r * nb;
    const __m512 t = _mm512_loadu_ps(llmq_block4_values(W->type));
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const __m512i sel0 = nv ? _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1) : _mm512_setzero_si512();
    const uint8_t *rp[4];
    __m512 acc[4], dv[4];
    float d[16];
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) {
        acc[k] = dv[k] = _mm512_setzero_ps();
        rp[k] = llmq_wmat_row_byte(W, r + k, rb, 0);
    }
    for (int64_t c = 0; c < cols / 32; c++) {
        if (c % cpf == 0) {
            int64_t b0 = c * 32 / B;
#pragma GCC unroll 4
            for (int k = 0; k < NR; k++) {
                blk_factors(W, sc + k * nb + b0, nb - b0, d);
                dv[k] = _mm512_loadu_ps(d);
            }
        }
        const __m512i sel = _mm512_add_epi32(sel0, _mm512_set1_epi32((int)((c % cpf) << nv)));
        __m512 xa = _mm512_loadu_ps(x + 32 * c), xb = _mm512_loadu_ps(x + 32 * c + 16);
        __m512 xe = _mm512_permutex2var_ps(xa, ie, xb), xo = _mm512_permutex2var_ps(xa, io, xb);
#pragma GCC unroll 4
        for (int k = 0; k < NR; k++) {
            const uint8_t *p = llmq_line_at(rp[k], ls, 16 * c);
            if (NR == 4 && !W->ilv) PF(p + 4 * rb);
            __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
            __m512 s = _mm512_mul_ps(_mm512_permutexvar_ps(v, t), xe);
            s = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), t), xo, s);
            acc[k] = _mm512_fmadd_ps(s, _mm512_permutexvar_ps(sel, dv[k]), acc[k]);
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) y[k] = hsum(acc[k]);
}

/* 128 columns at a time, as q4g128_rows reads int4: 64 bytes are 16
 * dwords of 8 codes (column 8j + k in bits 4k..4k+3 of dword j), so one
 * load and a shift per 16 columns feed vpermps, and x is regrouped once
 * per call (xp as mv_q4's).  Lane j holds columns 8j..8j+7 all the chunk
 * long, so its block is fixed: j / 4 (MX, 32 columns) or j / 2 (NV, 16):
 * the lanes' sums over the chunk take their block factors once, one
 * vpermps and one FMA per 128 columns where b4_rows pays per 32. */
INLINE void b4x128_rows(const llmq_wmat *W, int64_t r, int NR, int nv, const float *xp, float *y)
{
    const int64_t cols = W->cols, rb = cols / 2, B = nv ? 16 : 32, nb = cols / B;
    const int64_t cpf = nv ? 2 : 4;            /* 128-column chunks per 16 block factors */
    const int64_t ls = llmq_wmat_line_stride(W);
    const uint8_t *sc = (const uint8_t *)W->scales + r * nb;
    const __m512 t = _mm512_loadu_ps(llmq_block4_values(W->type));
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i sel0 = _mm512_srli_epi32(lane, nv ? 1 : 2);
    const uint8_t *rp[4];
    __m512 acc[4], dv[4];
    float d[16];
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) {
        acc[k] = dv[k] = _mm512_setzero_ps();
        rp[k] = llmq_wmat_row_byte(W, r + k, rb, 0);
    }
    for (int64_t c = 0; c < cols / 128; c++) {
        if (c % cpf == 0) {
            int64_t b0 = c * 128 / B;
            __mmask16 m = tail_mask(LLMQ_MIN(nb - b0, 16));
#pragma GCC unroll 4
            for (int k = 0; k < NR; k++) {
                __m128i b = _mm_maskz_loadu_epi8(m, sc + k * nb + b0);
                if (nv) {   /* E4M3 / 256: the 256 * tscale goes on the row sum */
                    dv[k] = e4m3_f16x256(b);
                } else {
                    blk_factors(W, sc + k * nb + b0, nb - b0, d);
                    dv[k] = _mm512_loadu_ps(d);
                }
            }
        }
        const __m512i sel = _mm512_add_epi32(sel0, _mm512_set1_epi32((int)((c % cpf) * (128 / B))));
        const float *xg = xp + c * 128;
#pragma GCC unroll 4
        for (int k = 0; k < NR; k++) {
            const uint8_t *p = rp[k] + c * ls;
            if (NR == 4 && !W->ilv) PF(p + 4 * rb);
            __m512i v = _mm512_loadu_si512((const void *)p);
            __m512 s0 = _mm512_mul_ps(_mm512_permutexvar_ps(v, t), _mm512_loadu_ps(xg));
            __m512 s1 = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), t), _mm512_loadu_ps(xg + 16));
#pragma GCC unroll 8
            for (int sh = 2; sh < 8; sh += 2) {
                v = _mm512_srli_epi32(v, 8);
                s0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(v, t), _mm512_loadu_ps(xg + sh * 16), s0);
                s1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), t),
                                     _mm512_loadu_ps(xg + sh * 16 + 16), s1);
            }
            acc[k] = _mm512_fmadd_ps(_mm512_add_ps(s0, s1), _mm512_permutexvar_ps(sel, dv[k]), acc[k]);
        }
    }
    const float post = nv ? 256.0f * W->tscale : 1.0f;
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) y[k] = hsum(acc[k]) * post;
}

static void mv_b4(const llmq_wmat *W, int64_t r0, int64_t r1, const float *x, float *y)
{
    int64_t r = r0;
    if (W->cols % 128 == 0 && W->cols <= Q4_XP_MAX) {
        float xp[Q4_XP_MAX] __attribute__((aligned(64)));
        int nv = llmq_wtype_is_nv(W->type);
        regroup_x128(x, W->cols, xp);
        for (; r + 4 <= r1; r += 4) b4x128_rows(W, r, 4, nv, xp, y + (r - r0));
        for (; r < r1; r++) b4x128_rows(W, r, 1, nv, xp, y + (r - r0));
        return;
    }
    if (llmq_wtype_is_nv(W->type)) {
        for (; r + 4 <= r1; r += 4) b4_rows(W, r, 4, 1, x, y + (r - r0));
        for (; r < r1; r++) b4_rows(W, r, 1, 1, x, y + (r - r0));
    } else {
        for (; r + 4 <= r1; r += 4) b4_rows(W, r, 4, 0, x, y + (r - r0));
        for (; r < r1; r++) b4_rows(W, r, 1, 0, x, y + (r - r0));
    }
}

static void dq_b4(const llmq_wmat *W, int64_t r0, int64_t r1, float *out)
{
    const int64_t cols = W->cols, rb = cols / 2;
    const int nv = llmq_wtype_is_nv(W->type);
    const int64_t B = nv ? 16 : 32, nb = cols / B, cpf = nv ? 8 : 16;
    const __m512 t = _mm512_loadu_ps(llmq_block4_values(W->type));
    const __m512i il = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i ih = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const int64_t ls = llmq_wmat_line_stride(W);
    float d[16];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *data = llmq_wmat_row_byte(W, r, rb, 0);
        const uint8_t *sc = (const uint8_t *)W->scales + r * nb;
        float *o = out + (r - r0) * cols;
        for (int64_t c = 0; c < cols / 32; c++) {
            if (c % cpf == 0) blk_factors(W, sc + c * 32 / B, nb - c * 32 / B, d);
            __m512 dv = nv ? _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(d[2 * (c % cpf)]), _mm512_set1_ps(d[2 * (c % cpf) + 1]))
                           : _mm512_set1_ps(d[c % cpf]);
            __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)llmq_line_at(data, ls, 16 * c)));
            __m512 lo = _mm512_mul_ps(_mm512_permutexvar_ps(v, t), dv);
            __m512 hi = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), t), dv);
            _mm512_storeu_ps(o + 32 * c, _mm512_permutex2var_ps(lo, il, hi));
            _mm512_storeu_ps(o + 32 * c + 16, _mm512_permutex2var_ps(lo, ih, hi));
        }
    }
}

INLINE void fp8_rows(const llmq_wmat *W, int64_t r, int NR, const float *x, float *y)
{
    const int64_t cols = W->cols, nb = cols / 32, ls = llmq_wmat_line_stride(W);
    const uint8_t *sc = (const uint8_t *)W->scales + r * nb;
    const uint8_t *rp[4];
    __m512 acc[4];
    float d[4][16];
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) {
        acc[k] = _mm512_setzero_ps();
        rp[k] = llmq_wmat_row_byte(W, r + k, cols, 0);
    }
    for (int64_t b = 0; b < nb; b++) {
        if (b % 16 == 0) {
#pragma GCC unroll 4
            for (int k = 0; k < NR; k++) blk_factors(W, sc + k * nb + b, nb - b, d[k]);
        }
        __m512 xa = _mm512_loadu_ps(x + 32 * b), xb = _mm512_loadu_ps(x + 32 * b + 16);
#pragma GCC unroll 4
        for (int k = 0; k < NR; k++) {
            const uint8_t *p = llmq_line_at(rp[k], ls, 32 * b);   /* 32 bytes, one line */
            if (NR == 4 && !W->ilv) PF(p + 4 * cols);
            __m512 s = _mm512_mul_ps(e4m3_f16x256(_mm_loadu_si128((const __m128i *)p)), xa);
            s = _mm512_fmadd_ps(e4m3_f16x256(_mm_loadu_si128((const __m128i *)(p + 16))), xb, s);
            acc[k] = _mm512_fmadd_ps(s, _mm512_set1_ps(d[k][b % 16]), acc[k]);
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
    const __m512 k256 = _mm512_set1_ps(256.0f);
    const int64_t ls = llmq_wmat_line_stride(W);
    float d[16];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *data = llmq_wmat_row_byte(W, r, cols, 0);
        float *o = out + (r - r0) * cols;
        for (int64_t b = 0; b < nb; b++) {
            if (b % 16 == 0) blk_factors(W, (const uint8_t *)W->scales + r * nb + b, nb - b, d);
            __m512 dv = _mm512_set1_ps(d[b % 16]);
            for (int h = 0; h < 32; h += 16) {
                __m512 v = _mm512_mul_ps(e4m3_f16x256(_mm_loadu_si128((const __m128i *)llmq_line_at(data, ls, 32 * b + h))), k256);
                _mm512_storeu_ps(o + 32 * b + h, _mm512_mul_ps(v, dv));
            }
        }
    }
}

/* ---- ggml block types (gq-simd.h) ----
 *
 * Dequant for all ten types: each block is decoded in
 * registers unit by unit (16 values, one zmm), the codes become the
 * oracle's f32 weights d * code + m (the same floats, see gq-simd.h) and
 * are stored.  The matvecs (below) are all fused, no row buffer: two rows
 * at a time share the x loads, each row keeps two accumulators; rows
 * follow each other in memory, so the hardware prefetcher streams the
 * matrix without software prefetch. */

/* unit c (16 codes) as f32 weights */
INLINE __m512 gq_w16(__m128i c, float d, float m, int has_m)
{
    __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(c));
    return has_m ? _mm512_fmadd_ps(f, _mm512_set1_ps(d), _mm512_set1_ps(m)) : _mm512_mul_ps(f, _mm512_set1_ps(d));
}

#define GQ_DQ(T, QK, BB, HM)                                                       \
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
            for (int u = 0; u < (QK) / 16; u++)                                    \
                _mm512_storeu_ps(o + 16 * u, gq_w16(gq_unit_##T(b, u), d[u], m[u], HM)); \
        }                                                                          \
    }                                                                              \
}
GQ_TYPES(GQ_DQ)

/* ---- ggml block types, matvec by table lookup ----
 *
 * For codes of at most 5 bits the weights of a sub-block take at most 32
 * values, so each sub-block's table T[c] = d * c + m (the oracle's floats:
 * the product is exact, see gq-simd.h) is built once with one FMA on
 * 0..15, and a weight is one vpermps / vpermt2ps of its code.  The codes
 * are widened straight from memory to one per dword (vpmovzxbd); vpermps
 * reads only the low 4 index bits, so a byte's low nibble needs no mask
 * and its high nibble one shift, and Q2_K's 2-bit fields use tables that
 * repeat every 4 entries.  Fifth bits come in as lane masks (vptestmd,
 * or Q5_0 / Q5_1's qh word itself).  This takes about half the
 * instructions of the generic convert-and-scale path above.  Q8_0 converts
 * and scales once per block after the sum; Q6_K (64 weights per sub-block,
 * too many for one table) builds its codes in dwords and converts them. */

#define ZU8(p) _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p)))
#define IOTA _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
#define PERM(idx, t) _mm512_permutexvar_ps(idx, t)

INLINE void tb_q4_0(const uint8_t *b, const float *x, __m512 *a0, __m512 *a1)
{
    __m512 t = _mm512_mul_ps(_mm512_sub_ps(IOTA, _mm512_set1_ps(8.0f)), _mm512_set1_ps(gq_h2f(b)));
    __m512i v = ZU8(b + 2);
    *a0 = _mm512_fmadd_ps(PERM(v, t), _mm512_loadu_ps(x), *a0);
    *a1 = _mm512_fmadd_ps(PERM(_mm512_srli_epi32(v, 4), t), _mm512_loadu_ps(x + 16), *a1);
}

INLINE void tb_q4_1(const uint8_t *b, const float *x, __m512 *a0, __m512 *a1)
{
    __m512 t = _mm512_fmadd_ps(IOTA, _mm512_set1_ps(gq_h2f(b)), _mm512_set1_ps(gq_h2f(b + 2)));
    __m512i v = ZU8(b + 4);
    *a0 = _mm512_fmadd_ps(PERM(v, t), _mm512_loadu_ps(x), *a0);
    *a1 = _mm512_fmadd_ps(PERM(_mm512_srli_epi32(v, 4), t), _mm512_loadu_ps(x + 16), *a1);
}

/* Q5_0 / Q5_1: tables of codes 0..15 and 16..31; bit i of qh selects the second for value i */
INLINE void tb_q5(const uint8_t *qs, uint32_t qh, __m512 t0, __m512 t1, const float *x, __m512 *a0, __m512 *a1)
{
    const __m512i c15 = _mm512_set1_epi32(15), c16 = _mm512_set1_epi32(16);
    __m512i v = ZU8(qs), lo = _mm512_and_si512(v, c15), hi = _mm512_srli_epi32(v, 4);
    lo = _mm512_mask_or_epi32(lo, (__mmask16)qh, lo, c16);
    hi = _mm512_mask_or_epi32(hi, (__mmask16)(qh >> 16), hi, c16);
    *a0 = _mm512_fmadd_ps(_mm512_permutex2var_ps(t0, lo, t1), _mm512_loadu_ps(x), *a0);
    *a1 = _mm512_fmadd_ps(_mm512_permutex2var_ps(t0, hi, t1), _mm512_loadu_ps(x + 16), *a1);
}

INLINE void tb_q5_0(const uint8_t *b, const float *x, __m512 *a0, __m512 *a1)
{
    __m512 d = _mm512_set1_ps(gq_h2f(b));
    __m512 t0 = _mm512_mul_ps(_mm512_sub_ps(IOTA, _mm512_set1_ps(16.0f)), d), t1 = _mm512_mul_ps(IOTA, d);
    tb_q5(b + 6, gq_le32(b + 2), t0, t1, x, a0, a1);
}

INLINE void tb_q5_1(const uint8_t *b, const float *x, __m512 *a0, __m512 *a1)
{
    __m512 d = _mm512_set1_ps(gq_h2f(b)), m = _mm512_set1_ps(gq_h2f(b + 2));
    __m512 t0 = _mm512_fmadd_ps(IOTA, d, m), t1 = _mm512_fmadd_ps(_mm512_add_ps(IOTA, _mm512_set1_ps(16.0f)), d, m);
    tb_q5(b + 8, gq_le32(b + 4), t0, t1, x, a0, a1);
}

/* Q2_K: unit u = 8h + 2j + p reads bit pair j of qs[32h + 16p ..] */
INLINE void tb_q2_k(const uint8_t *b, const float *x, __m512 *a0, __m512 *a1)
{
    const __m512 rep4 = _mm512_setr_ps(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);
    float d[16], m[16];
    gq_prep_q2_k(b, d, m);
#pragma GCC unroll 4
    for (int hp = 0; hp < 4; hp++) {
        const int h = hp / 2, p = hp % 2;
        __m512i v = ZU8(b + 16 + 32 * h + 16 * p);
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const int u = 8 * h + 2 * j + p;
            __m512 t = _mm512_fmadd_ps(rep4, _mm512_set1_ps(d[u]), _mm512_set1_ps(m[u]));
            __m512 w = PERM(_mm512_srli_epi32(v, 2 * j), t);
            if (j & 1) *a1 = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + 16 * u), *a1);
            else *a0 = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + 16 * u), *a0);
        }
    }
}

/* Q3_K: index low2 | hbit << 2 into d_u * (c - 4), c = 0..7 */
INLINE void tb_q3_k(const uint8_t *b, const float *x, __m512 *a0, __m512 *a1)
{
    const __m512 rep8 = _mm512_setr_ps(-4, -3, -2, -1, 0, 1, 2, 3, -4, -3, -2, -1, 0, 1, 2, 3);
    const __m512i c3 = _mm512_set1_epi32(3), c4 = _mm512_set1_epi32(4);
    float d[16], m[16];
    gq_prep_q3_k(b, d, m);
    __m512i hm[2] = { ZU8(b), ZU8(b + 16) };
#pragma GCC unroll 4
    for (int hp = 0; hp < 4; hp++) {
        const int h = hp / 2, p = hp % 2;
        __m512i v = ZU8(b + 32 + 32 * h + 16 * p);
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const int u = 8 * h + 2 * j + p;
            __mmask16 k = _mm512_test_epi32_mask(hm[p], _mm512_set1_epi32(1 << (4 * h + j)));
            __m512i idx = _mm512_and_si512(_mm512_srli_epi32(v, 2 * j), c3);
            idx = _mm512_mask_or_epi32(idx, k, idx, c4);
            __m512 w = PERM(idx, _mm512_mul_ps(rep8, _mm512_set1_ps(d[u])));
            if (j & 1) *a1 = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + 16 * u), *a1);
            else *a0 = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + 16 * u), *a0);
        }
    }
}

/* Q4_K: chunk c of 64 values: low nibbles of qs[32c ..] are sub-block 2c, high ones 2c + 1 */
INLINE void tb_q4_k(const uint8_t *b, const float *x, __m512 *a0, __m512 *a1)
{
    float d[16], m[16];
    gq_prep_k4(b, d, m);
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        __m512 tl = _mm512_fmadd_ps(IOTA, _mm512_set1_ps(d[4 * c]), _mm512_set1_ps(m[4 * c]));
        __m512 th = _mm512_fmadd_ps(IOTA, _mm512_set1_ps(d[4 * c + 2]), _mm512_set1_ps(m[4 * c + 2]));
        __m512i v0 = ZU8(b + 16 + 32 * c), v1 = ZU8(b + 16 + 32 * c + 16);
        const float *xc = x + 64 * c;
        *a0 = _mm512_fmadd_ps(PERM(v0, tl), _mm512_loadu_ps(xc), *a0);
        *a1 = _mm512_fmadd_ps(PERM(v1, tl), _mm512_loadu_ps(xc + 16), *a1);
        *a0 = _mm512_fmadd_ps(PERM(_mm512_srli_epi32(v0, 4), th), _mm512_loadu_ps(xc + 32), *a0);
        *a1 = _mm512_fmadd_ps(PERM(_mm512_srli_epi32(v1, 4), th), _mm512_loadu_ps(xc + 48), *a1);
    }
}

/* Q5_K: Q4_K's nibbles at qs = b + 48, bit s of qh[l] picks the table's upper half */
INLINE void tb_q5_k(const uint8_t *b, const float *x, __m512 *a0, __m512 *a1)
{
    const __m512i c15 = _mm512_set1_epi32(15), c16 = _mm512_set1_epi32(16);
    const __m512 iota16 = _mm512_add_ps(IOTA, _mm512_set1_ps(16.0f));
    float d[16], m[16];
    gq_prep_k4(b, d, m);
    __m512i h0 = ZU8(b + 16), h1 = ZU8(b + 32);
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
#pragma GCC unroll 4
        for (int n = 0; n < 2; n++) {            /* sub-block s = 2c + n: low (n = 0) or high nibbles */
            const int s = 2 * c + n;
            __m512 dv = _mm512_set1_ps(d[2 * s]), mv = _mm512_set1_ps(m[2 * s]);
            __m512 t0 = _mm512_fmadd_ps(IOTA, dv, mv), t1 = _mm512_fmadd_ps(iota16, dv, mv);
            __m512i v0 = ZU8(b + 48 + 32 * c), v1 = ZU8(b + 48 + 32 * c + 16);
            if (n) { v0 = _mm512_srli_epi32(v0, 4); v1 = _mm512_srli_epi32(v1, 4); }
            else { v0 = _mm512_and_si512(v0, c15); v1 = _mm512_and_si512(v1, c15); }
            __m512i bit = _mm512_set1_epi32(1 << s);
            v0 = _mm512_mask_or_epi32(v0, _mm512_test_epi32_mask(h0, bit), v0, c16);
            v1 = _mm512_mask_or_epi32(v1, _mm512_test_epi32_mask(h1, bit), v1, c16);
            const float *xs = x + 32 * s;
            *a0 = _mm512_fmadd_ps(_mm512_permutex2var_ps(t0, v0, t1), _mm512_loadu_ps(xs), *a0);
            *a1 = _mm512_fmadd_ps(_mm512_permutex2var_ps(t0, v1, t1), _mm512_loadu_ps(xs + 16), *a1);
        }
    }
}

/* Q6_K: codes widened to dwords three loads per 64 values (ql low and
 * high halves, qh); code = low 4 bits | 2 high bits << 4 by one vpternlogd
 * (bits 0-3 from the nibble, the rest from the shifted qh) and a mask; the
 * weight (d * sc) * (code - 32) is fma(code, d * sc, -32 * d * sc): the
 * exact value rounded once, as the oracle's. */
INLINE void tb_q6_k(const uint8_t *b, const float *x, __m512 *a0, __m512 *a1)
{
    const __m512i nib = _mm512_set1_epi32(15), six = _mm512_set1_epi32(63);
    float d[16], m[16];
    gq_prep_q6_k(b, d, m);
#pragma GCC unroll 4
    for (int hp = 0; hp < 4; hp++) {
        const int h = hp / 2, p = hp % 2;
        __m512i l0 = ZU8(b + 64 * h + 16 * p), l1 = ZU8(b + 64 * h + 32 + 16 * p), hq = ZU8(b + 128 + 32 * h + 16 * p);
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const int u = 8 * h + 2 * j + p;
            __m512i lo = j == 0 ? l0 : j == 1 ? l1 : j == 2 ? _mm512_srli_epi32(l0, 4) : _mm512_srli_epi32(l1, 4);
            __m512i hi = j == 0 ? _mm512_slli_epi32(hq, 4) : j == 1 ? _mm512_slli_epi32(hq, 2)
                       : j == 2 ? hq : _mm512_srli_epi32(hq, 2);
            /* 0xca: a ? b : c bit by bit, a = nib: bits 0-3 from lo, the others from hi */
            __m512i code = _mm512_and_si512(_mm512_ternarylogic_epi32(nib, lo, hi, 0xca), six);
            __m512 dv = _mm512_set1_ps(d[u]);
            __m512 w = _mm512_fmadd_ps(_mm512_cvtepi32_ps(code), dv, _mm512_mul_ps(dv, _mm512_set1_ps(-32.0f)));
            if (j & 1) *a1 = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + 16 * u), *a1);
            else *a0 = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + 16 * u), *a0);
        }
    }
}

/* Q8_0: the block's sum of code * x, then one multiply by d (no minimum:
 * the error stays relative to sum |w x|) */
INLINE void tb_q8_0(const uint8_t *b, const float *x, __m512 *a0, __m512 *a1)
{
    __m512 s = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 2)))),
                             _mm512_loadu_ps(x));
    s = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 18)))),
                        _mm512_loadu_ps(x + 16), s);
    (void)a1;
    *a0 = _mm512_fmadd_ps(s, _mm512_set1_ps(gq_h2f(b)), *a0);
}

#define GQ_TABLE_MV(T, QK, BB)                                                     \
INLINE void tb_rows_##T(const llmq_wmat *W, int64_t r, int NR, const float *x, float *y) \
{                                                                                  \
    const int64_t nb = W->cols / (QK), rb = nb * (BB);                             \
    const uint8_t *row = (const uint8_t *)W->data + r * rb;                        \
    __m512 a[2][2];                                                                \
    _Pragma("GCC unroll 2")                                                        \
    for (int k = 0; k < NR; k++) a[k][0] = a[k][1] = _mm512_setzero_ps();          \
    for (int64_t i = 0; i < nb; i++) {                                             \
        _Pragma("GCC unroll 2")                                                    \
        for (int k = 0; k < NR; k++) tb_##T(row + k * rb + i * (BB), x + i * (QK), &a[k][0], &a[k][1]); \
    }                                                                              \
    _Pragma("GCC unroll 2")                                                        \
    for (int k = 0; k < NR; k++) y[k] = hsum(_mm512_add_ps(a[k][0], a[k][1]));     \
}                                                                                  \
static void mvt_gq_##T(const llmq_wmat *W, int64_t r0, int64_t r1, const float *x, float *y) \
{                                                                                  \
    int64_t r = r0;                                                                \
    for (; r + 2 <= r1; r += 2) tb_rows_##T(W, r, 2, x, y + (r - r0));            \
    if (r < r1) tb_rows_##T(W, r, 1, x, y + (r - r0));                             \
}
GQ_TABLE_MV(q8_0, 32, 34)
GQ_TABLE_MV(q4_0, 32, 18)
GQ_TABLE_MV(q4_1, 32, 20)
GQ_TABLE_MV(q5_0, 32, 22)
GQ_TABLE_MV(q5_1, 32, 24)
GQ_TABLE_MV(q2_k, 256, 84)
GQ_TABLE_MV(q3_k, 256, 110)
GQ_TABLE_MV(q4_k, 256, 144)
GQ_TABLE_MV(q5_k, 256, 176)
GQ_TABLE_MV(q6_k, 256, 210)


/* ---- W8A8 with VNNI ----
 *
 * vpdpbusd multiplies unsigned by signed bytes.  The weights are made
 * unsigned, w + 128 = w ^ 0x80, so each row sums w.x + 128 * sum(x): the
 * caller's xsum removes the second term.  Exact in int32 for cols up to
 * LLMQ_A8_MAX_COLS; padding lanes have x = 0 and add nothing. */
INLINE void a8_rows(const llmq_wmat *W, int64_t r, int NR, const int8_t *xq, float xscale, int32_t xsum, float *y)
{
    const int64_t cols = W->cols, ls = llmq_wmat_line_stride(W);
    const float *ws = (const float *)W->scales + r;
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    const uint8_t *rp[4];
    __m512i acc[4];
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) {
        acc[k] = _mm512_setzero_si512();
        rp[k] = llmq_wmat_row_byte(W, r + k, cols, 0);
    }
    int64_t j = 0;
    for (; j + 64 <= cols; j += 64) {
        __m512i xv = _mm512_loadu_si512(xq + j);
#pragma GCC unroll 4
        for (int k = 0; k < NR; k++) {
            const uint8_t *d = llmq_line_at(rp[k], ls, j);
            if (NR == 4 && !W->ilv) PF(d + 4 * cols);
            __m512i wv = _mm512_xor_si512(_mm512_loadu_si512(d), bias);
            acc[k] = _mm512_dpbusd_epi32(acc[k], wv, xv);
        }
    }
    if (j < cols) {   /* plain rows only: interleaved ones are whole lines */
        __mmask64 m = (__mmask64)-1 >> (64 - (cols - j));
        __m512i xv = _mm512_maskz_loadu_epi8(m, xq + j);
#pragma GCC unroll 4
        for (int k = 0; k < NR; k++) {
            __m512i wv = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, rp[k] + j), bias);
            acc[k] = _mm512_dpbusd_epi32(acc[k], wv, xv);
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) {
        int32_t dot = _mm512_reduce_add_epi32(acc[k]) - 128 * xsum;
        y[k] = (float)dot * (ws[k] * xscale);
    }
}

static void mv_a8(const llmq_wmat *W, int64_t r0, int64_t r1, const int8_t *xq, float xscale, int32_t xsum, float *y)
{
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) a8_rows(W, r, 4, xq, xscale, xsum, y + (r - r0));
    for (; r < r1; r++) a8_rows(W, r, 1, xq, xscale, xsum, y + (r - r0));
}

/* Prefill: NR rows times NT tokens at once, each weight vector loaded once
 * for the NT tokens and each activation vector once for the NR rows (16
 * accumulators).  Integer sums: the same values as a8_rows. */
INLINE void a8_tile(const llmq_wmat *W, int64_t r, int NR, const int8_t *xq, int NT, const float *xs,
                    const int32_t *xsum, float *y, int64_t ldy)
{
    const int64_t cols = W->cols, ls = llmq_wmat_line_stride(W);
    const float *ws = (const float *)W->scales + r;
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    const uint8_t *rp[4];
    __m512i acc[4][4], wv[4];
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) {
        rp[k] = llmq_wmat_row_byte(W, r + k, cols, 0);
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) acc[k][t] = _mm512_setzero_si512();
    }
    for (int64_t j = 0; j < cols; j += 64) {
        __mmask64 m = cols - j >= 64 ? (__mmask64)-1 : (__mmask64)-1 >> (64 - (cols - j));
#pragma GCC unroll 4
        for (int k = 0; k < NR; k++)
            wv[k] = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, llmq_line_at(rp[k], ls, j)), bias);
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            __m512i xv = _mm512_maskz_loadu_epi8(m, xq + t * cols + j);
#pragma GCC unroll 4
            for (int k = 0; k < NR; k++) acc[k][t] = _mm512_dpbusd_epi32(acc[k][t], wv[k], xv);
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++)
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            int32_t dot = _mm512_reduce_add_epi32(acc[k][t]) - 128 * xsum[t];
            y[t * ldy + k] = (float)dot * (ws[k] * xs[t]);
        }
}

/* Tokens in blocks of four over the tile's rows in blocks of four: the
 * four tokens' activations stay in L1 while the tile's rows (in L2, see
 * matmul.c) pass under them. */
static void mm_a8(const llmq_wmat *W, int64_t r0, int64_t r1, const int8_t *xq, const float *xs,
                  const int32_t *xsum, int64_t n, float *y, int64_t ldy)
{
    const int64_t cols = W->cols;
    int64_t t = 0;
    for (; t + 4 <= n; t += 4) {
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) a8_tile(W, r, 4, xq + t * cols, 4, xs + t, xsum + t, y + t * ldy + (r - r0), ldy);
        for (; r < r1; r++) a8_tile(W, r, 1, xq + t * cols, 4, xs + t, xsum + t, y + t * ldy + (r - r0), ldy);
    }
    for (; t < n; t++) mv_a8(W, r0, r1, xq + t * cols, xs[t], xsum[t], y + t * ldy);
}

/* ---- bf16 x bf16 with AVX512-BF16 ----
 *
 * vdpbf16ps adds two exact bf16 products to each fp32 lane.  NR rows by NT
 * tokens (16 accumulators) over 32 columns a step: each weight vector
 * loaded once for the NT tokens, each activation vector once for the NR
 * rows.  Only reached where the CPU has AVX512-BF16 (cpu.c). */
INLINE void bf16_tile(const llmq_wmat *W, int64_t r, int NR, const uint16_t *xb, int NT, float *y, int64_t ldy)
{
    const int64_t cols = W->cols, ls = llmq_wmat_line_stride(W);
    const uint8_t *rp[4];
    __m512 acc[4][4];
    __m512i wv[4];
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) {
        rp[k] = llmq_wmat_row_byte(W, r + k, 2 * cols, 0);
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) acc[k][t] = _mm512_setzero_ps();
    }
    for (int64_t j = 0; j < cols; j += 32) {
        __mmask32 m = cols - j >= 32 ? (__mmask32)-1 : (__mmask32)((1u << (cols - j)) - 1);
#pragma GCC unroll 4
        for (int k = 0; k < NR; k++) wv[k] = _mm512_maskz_loadu_epi16(m, llmq_line_at(rp[k], ls, 2 * j));
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            __m512i xv = _mm512_maskz_loadu_epi16(m, xb + t * cols + j);
#pragma GCC unroll 4
            for (int k = 0; k < NR; k++) acc[k][t] = _mm512_dpbf16_ps(acc[k][t], (__m512bh)wv[k], (__m512bh)xv);
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++)
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) y[t * ldy + k] = hsum(acc[k][t]);
}

/* Tokens in blocks of four over the tile's rows four at a time: the
 * tokens' activations stay in L1 while the tile (in L2, see matmul.c)
 * passes under them. */
static void mm_bf16(const llmq_wmat *W, int64_t r0, int64_t r1, const uint16_t *xb, int64_t n,
                    float *y, int64_t ldy)
{
    const int64_t cols = W->cols;
    int64_t t = 0;
    for (; t + 4 <= n; t += 4) {
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) bf16_tile(W, r, 4, xb + t * cols, 4, y + t * ldy + (r - r0), ldy);
        for (; r < r1; r++) bf16_tile(W, r, 1, xb + t * cols, 4, y + t * ldy + (r - r0), ldy);
    }
    for (; t < n; t++) {
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) bf16_tile(W, r, 4, xb + t * cols, 1, y + t * ldy + (r - r0), ldy);
        for (; r < r1; r++) bf16_tile(W, r, 1, xb + t * cols, 1, y + t * ldy + (r - r0), ldy);
    }
}

/* Pair-layout products (llmq_gemm_bf16_pairs): NR rows of A by NB blocks
 * of 16 columns of C (16 accumulators), one k-pair a step: each row's pair
 * broadcast to every lane, each block's 16 pairs one load.  No horizontal
 * sums, so short k (the clip search's 128) costs no more per product than
 * long. */
INLINE void gp_tile(const uint16_t *A, int64_t k, int NR, const uint16_t *Bp, int64_t kp, int NB, int64_t mleft,
                    float *C, int64_t ldc)
{
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int b = 0; b < NB; b++) acc[r][b] = _mm512_setzero_ps();
    for (int64_t p = 0; p < kp; p++) {
        __m512i bv[4];
#pragma GCC unroll 4
        for (int b = 0; b < NB; b++) bv[b] = _mm512_loadu_si512(Bp + (b * kp + p) * 32);
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            int32_t pair;
            memcpy(&pair, A + r * k + 2 * p, sizeof pair);
            const __m512i a = _mm512_set1_epi32(pair);
#pragma GCC unroll 4
            for (int b = 0; b < NB; b++) acc[r][b] = _mm512_dpbf16_ps(acc[r][b], (__m512bh)bv[b], (__m512bh)a);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int b = 0; b < NB; b++) {
            int64_t left = mleft - 16 * b;
            if (left >= 16) _mm512_storeu_ps(C + r * ldc + 16 * b, acc[r][b]);
            else _mm512_mask_storeu_ps(C + r * ldc + 16 * b, tail_mask((int)left), acc[r][b]);
        }
}

#define GP_ROWS(NR)                                                                                       \
    do {                                                                                                  \
        int64_t b = 0;                                                                                    \
        for (; b + 4 <= nb; b += 4) gp_tile(A + i * k, k, NR, Bp + b * kp * 32, kp, 4, m - 16 * b, C + i * ldc + 16 * b, ldc); \
        for (; b < nb; b++) gp_tile(A + i * k, k, NR, Bp + b * kp * 32, kp, 1, m - 16 * b, C + i * ldc + 16 * b, ldc);          \
    } while (0)

static void gemm_bf16p(const uint16_t *A, int64_t n, const uint16_t *Bp, int64_t m, int64_t k, float *C, int64_t ldc)
{
    const int64_t kp = k / 2, nb = (m + 15) / 16;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) GP_ROWS(4);
    for (; i < n; i++) GP_ROWS(1);
}

/* ---- W4A8: int4 codes times int8 activations with VNNI ----
 *
 * Per 128 columns and row: one 64-byte load, AND / shift+AND split the
 * nibbles (low = even columns, high = odd ones: the activations were split
 * the same way once per product, see llmq_q4a8_chunk), two vpdpbusd (codes
 * 0..15 are the unsigned operand, activations the signed one) and one
 * vpdpwssd that adds -z * sum(x) per lane: each lane's int32 is the exact
 * sum_j (q_j - z) x_j over its 8 columns (|.| <= 8 * 15 * 127, exact in
 * float too).  Then one FMA with (group scale * block scale).  Scales and
 * zero points of 16 groups sit in one register each; vpermd / vpermps hand
 * every lane its group's. */
INLINE void q4a8_tile(const llmq_wmat *W, int64_t r, int NR, int G, const llmq_q4a8_x *x, int NT, float *y, int64_t ldy)
{
    const int64_t cols = W->cols, ng = cols / G, rb = cols / 2;
    const int64_t nfull = cols / 128, nck = (cols + 127) / 128;
    const int64_t cps = G / 8;                          /* chunks per 16 groups */
    const int64_t ls = llmq_wmat_line_stride(W);
    const uint16_t *sc = (const uint16_t *)W->scales + r * ng;
    const uint8_t *zp = W->zeros ? W->zeros + r * ng : NULL;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    /* lane l (columns 8l..8l+7 of a chunk) is in group 32 * (l / 4) / G of the chunk's first */
    const __m512i lane_g = G == 32 ? _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3)
                         : G == 64 ? _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)
                         : _mm512_setzero_si512();
    const __m512i step = _mm512_set1_epi32(128 / G);
    const __mmask64 tail = (__mmask64)-1 >> (64 - LLMQ_MAX((cols - nfull * 128) / 2, 1));
    __m512 acc[4][4], S[4];
    __m512i Z[4];
    const uint8_t *rp[4];
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++) rp[k] = llmq_wmat_row_byte(W, r + k, rb, 0);
    /* G = 128: one group per chunk, its scale and zero broadcast from memory
     * (a load, no shuffle) */
    float s16[4][16] __attribute__((aligned(64)));
    int32_t z16[4][16] __attribute__((aligned(64)));
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++)
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) acc[k][t] = _mm512_setzero_ps();
    for (int64_t c = 0; c < nck;) {
        const int64_t g0 = c * 128 / G, c0 = c;
        const __mmask16 gm = tail_mask(LLMQ_MIN(ng - g0, 16));
#pragma GCC unroll 4
        for (int k = 0; k < NR; k++) {
            S[k] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(gm, sc + k * ng + g0));
            Z[k] = zp ? _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(gm, zp + k * ng + g0))
                      : _mm512_set1_epi32(LLMQ_Q4_ZERO_SYM);
            if (G == 128) {
                _mm512_store_ps(s16[k], S[k]);
                _mm512_store_si512(z16[k], Z[k]);
            }
        }
        const int64_t cend = LLMQ_MIN(nck, c + cps);
        for (__m512i gi = lane_g; c < cend; c++, gi = _mm512_add_epi32(gi, step)) {
            __m512i lo[4], hi[4], zb[4];
            __m512 sb[4];
#pragma GCC unroll 4
            for (int k = 0; k < NR; k++) {
                const uint8_t *d = rp[k] + c * ls;   /* a partial last chunk: plain rows only */
                __m512i v;
                if (c < nfull) {
                    if (NR == 4 && !W->ilv) PF(d + 4 * rb);
                    v = _mm512_loadu_si512(d);
                } else {
                    v = _mm512_maskz_loadu_epi8(tail, d);
                }
                lo[k] = _mm512_and_si512(v, m4);
                hi[k] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                zb[k] = G == 128 ? _mm512_set1_epi32(z16[k][c - c0]) : _mm512_permutexvar_epi32(gi, Z[k]);
                sb[k] = G == 128 ? _mm512_set1_ps(s16[k][c - c0]) : _mm512_permutexvar_ps(gi, S[k]);
            }
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++) {
                const llmq_q4a8_chunk *xc = x[t].ch + c;
                const __m512i xe = _mm512_load_si512(xc->xe), xo = _mm512_load_si512(xc->xo);
                const __m512i ns = _mm512_load_si512(xc->nsum);
                const __m512 xs = _mm512_load_ps(xc->xs);
#pragma GCC unroll 4
                for (int k = 0; k < NR; k++) {
                    __m512i p = _mm512_dpwssd_epi32(_mm512_setzero_si512(), zb[k], ns);
                    p = _mm512_dpbusd_epi32(p, lo[k], xe);
                    p = _mm512_dpbusd_epi32(p, hi[k], xo);
                    __m512 f = _mm512_mul_ps(xs, sb[k]);
                    acc[k][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), f, acc[k][t]);
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < NR; k++)
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) y[t * ldy + k] = hsum(acc[k][t]);
}

/* One token (decode): the tile of one token. */
INLINE void q4a8_rows(const llmq_wmat *W, int64_t r, int NR, int G, const llmq_q4a8_chunk *xc, float *y)
{
    const llmq_q4a8_x one = { .ch = xc };
    q4a8_tile(W, r, NR, G, &one, 1, y, 0);
}

LLMQ_KERN_MV_Q4A8

/* Prefill: pairs of tokens over the tile's rows four at a time, each
 * row's nibble split, zero points and scales shared by the two tokens and
 * each token's chunk by the four rows.  Every (row, token) takes the
 * decode kernel's operations in its order, so prefill equals decode bit
 * for bit. */
#define Q4A8_MM_G(G)                                                                                    \
    do {                                                                                                \
        int64_t t = 0;                                                                                  \
        for (; t + 4 <= n; t += 4) {                                                                    \
            int64_t r = r0;                                                                             \
            for (; r + 2 <= r1; r += 2) q4a8_tile(W, r, 2, G, x + t, 4, y + t * ldy + (r - r0), ldy);    \
            for (; r < r1; r++) q4a8_tile(W, r, 1, G, x + t, 4, y + t * ldy + (r - r0), ldy);            \
        }                                                                                               \
        for (; t < n; t++) mv_q4a8(W, r0, r1, x + t, y + t * ldy);                                              \
    } while (0)

static void mm_q4a8(const llmq_wmat *W, int64_t r0, int64_t r1, const llmq_q4a8_x *x,
                    int64_t n, float *y, int64_t ldy)
{
    switch (W->group) {
    case 32: Q4A8_MM_G(32); break;
    case 64: Q4A8_MM_G(64); break;
    default: Q4A8_MM_G(128); break;
    }
}

/* ---- W4A8 on rows in tiles of sixteen (wmat.h's LLMQ_ILV_LANES) ----
 *
 * A 64-byte line holds columns 8j .. 8j + 7 of 16 rows, row k's four file
 * bytes in dword lane k: the low nibbles are the even columns, the high
 * ones the odd.  Two vpdpbusd with the token's four even and four odd codes
 * broadcast (the chunk's xe / xo) add the 8 columns to 16 rows' int32 sums
 * at once: no nibble shuffles, no horizontal sums, and the activations cost
 * a broadcast load.  Per 32-block the sums start at -z * sum(x) (one
 * vpdpwssd of the zero points with bneg), take the block's 4 lines, and one
 * FMA adds them times scale * xs to the 16 rows' float sums, each lane
 * exact in int32 before it (|.| <= 32 * 15 * 127).  Every (row, token)
 * takes those operations in that order whatever the tile, so prefill equals
 * decode bit for bit. */
INLINE void q4l_tile(const llmq_wmat *W, int64_t r, int NRB, int G, const llmq_q4a8_x *x, int NT, float *y,
                     int64_t ldy)
{
    const int64_t cols = W->cols, ng = cols / G, rb = cols / 2, BPG = G / LLMQ_A8_BLOCK;
    const uint8_t *d = (const uint8_t *)W->data + r * rb;
    const uint16_t *ls = W->lscales + r * ng;
    const uint8_t *lz = W->lzeros ? W->lzeros + r * ng : NULL;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512 acc[2][6];
#pragma GCC unroll 2
    for (int a = 0; a < NRB; a++)
#pragma GCC unroll 6
        for (int t = 0; t < NT; t++) acc[a][t] = _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        __m512 sb[2];
        __m512i zw[2];
#pragma GCC unroll 2
        for (int a = 0; a < NRB; a++) {
            const int64_t o = (a * ng + g) * LLMQ_ILV_LANES;
            sb[a] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(ls + o)));
            zw[a] = lz ? _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(lz + o)))
                       : _mm512_set1_epi32(LLMQ_Q4_ZERO_SYM);
        }
        for (int64_t b = g * BPG; b < (g + 1) * BPG; b++) {
            if (NT == 1 && NRB == 1) {
                /* decode: the block's four lines in four sums, so that no
                 * long chain of vpdpbusd holds the loads behind it (decode
                 * is as fast as the loads in flight); integers, so the same
                 * sum as below */
                __m512i q[4];
#pragma GCC unroll 4
                for (int s4 = 0; s4 < 4; s4++) {
                    const int64_t j = 4 * b + s4;
                    const __m512i v = _mm512_loadu_si512(d + j * 64);
                    int32_t e, o;
                    llmq_q4a8_line_codes(x[0].ch, j, &e, &o);
                    q[s4] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(v, m4), _mm512_set1_epi32(e));
                    q[s4] = _mm512_dpbusd_epi32(q[s4], _mm512_and_si512(_mm512_srli_epi16(v, 4), m4), _mm512_set1_epi32(o));
                }
                const __m512i z = _mm512_dpwssd_epi32(_mm512_setzero_si512(), zw[0], _mm512_set1_epi32(x[0].bneg[b]));
                const __m512i pt = _mm512_add_epi32(_mm512_add_epi32(z, _mm512_add_epi32(q[0], q[1])),
                                                    _mm512_add_epi32(q[2], q[3]));
                acc[0][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pt), _mm512_mul_ps(sb[0], _mm512_set1_ps(x[0].xs[b])),
                                            acc[0][0]);
                continue;
            }
            __m512i p[2][6];
#pragma GCC unroll 6
            for (int t = 0; t < NT; t++) {
                const __m512i bn = _mm512_set1_epi32(x[t].bneg[b]);
#pragma GCC unroll 2
                for (int a = 0; a < NRB; a++) p[a][t] = _mm512_dpwssd_epi32(_mm512_setzero_si512(), zw[a], bn);
            }
#pragma GCC unroll 4
            for (int s = 0; s < 4; s++) {
                const int64_t j = 4 * b + s;
                __m512i lo[2], hi[2];
#pragma GCC unroll 2
                for (int a = 0; a < NRB; a++) {
                    const __m512i v = _mm512_loadu_si512(d + a * LLMQ_ILV_LANES * rb + j * 64);
                    lo[a] = _mm512_and_si512(v, m4);
                    hi[a] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                }
#pragma GCC unroll 6
                for (int t = 0; t < NT; t++) {
                    int32_t e, o;
                    llmq_q4a8_line_codes(x[t].ch, j, &e, &o);
                    const __m512i xe = _mm512_set1_epi32(e), xo = _mm512_set1_epi32(o);
#pragma GCC unroll 2
                    for (int a = 0; a < NRB; a++) {
                        p[a][t] = _mm512_dpbusd_epi32(p[a][t], lo[a], xe);
                        p[a][t] = _mm512_dpbusd_epi32(p[a][t], hi[a], xo);
                    }
                }
            }
#pragma GCC unroll 6
            for (int t = 0; t < NT; t++) {
                const __m512 xs = _mm512_set1_ps(x[t].xs[b]);
#pragma GCC unroll 2
                for (int a = 0; a < NRB; a++)
                    acc[a][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p[a][t]), _mm512_mul_ps(sb[a], xs), acc[a][t]);
            }
        }
    }
#pragma GCC unroll 2
    for (int a = 0; a < NRB; a++)
#pragma GCC unroll 6
        for (int t = 0; t < NT; t++) _mm512_storeu_ps(y + t * ldy + a * LLMQ_ILV_LANES, acc[a][t]);
}

/* Decode: one tile of 16 rows after another, one address stream. */
static void mv_q4a8l(const llmq_wmat *W, int64_t r0, int64_t r1, const llmq_q4a8_x *x, float *y)
{
    for (int64_t r = r0; r < r1; r += LLMQ_ILV_LANES) {
        switch (W->group) {
        case 32: q4l_tile(W, r, 1, 32, x, 1, y + (r - r0), 0); break;
        case 64: q4l_tile(W, r, 1, 64, x, 1, y + (r - r0), 0); break;
        default: q4l_tile(W, r, 1, 128, x, 1, y + (r - r0), 0); break;
        }
    }
}

/* Prefill: two tiles of rows by up to six tokens (24 of the 32 registers
 * hold sums), the tiles' codes in L2 while the tokens pass. */
#define Q4L_NT(G, NRB, NT) q4l_tile(W, r, NRB, G, x + t, NT, y + t * ldy + (r - r0), ldy)
#define Q4L_MM_G(G)                                                                                     \
    for (int64_t t = 0; t < n; t += 6) {                                                                \
        const int64_t nt = LLMQ_MIN(6, n - t);                                                          \
        for (int64_t r = r0; r < r1; r += 2 * LLMQ_ILV_LANES) {                                         \
            const int nrb = r + 2 * LLMQ_ILV_LANES <= r1 ? 2 : 1;                                       \
            switch (nt * 2 + nrb - 1) {                                                                  \
            case 2: Q4L_NT(G, 1, 1); break;  case 3: Q4L_NT(G, 2, 1); break;                            \
            case 4: Q4L_NT(G, 1, 2); break;  case 5: Q4L_NT(G, 2, 2); break;                            \
            case 6: Q4L_NT(G, 1, 3); break;  case 7: Q4L_NT(G, 2, 3); break;                            \
            case 8: Q4L_NT(G, 1, 4); break;  case 9: Q4L_NT(G, 2, 4); break;                            \
            case 10: Q4L_NT(G, 1, 5); break; case 11: Q4L_NT(G, 2, 5); break;                           \
            case 12: Q4L_NT(G, 1, 6); break; default: Q4L_NT(G, 2, 6); break;                           \
            }                                                                                           \
        }                                                                                               \
    }

static void mm_q4a8l(const llmq_wmat *W, int64_t r0, int64_t r1, const llmq_q4a8_x *x,
                     int64_t n, float *y, int64_t ldy)
{
    switch (W->group) {
    case 32: Q4L_MM_G(32); break;
    case 64: Q4L_MM_G(64); break;
    default: Q4L_MM_G(128); break;
    }
}

/* The chunk layout of kern-int.h: even and odd bytes by sign-extending
 * shifts and a saturating pack (exact: codes are in [-127, 127]), lane sums
 * by vpsadbw on x + 128 (8 bytes sum to s + 1024).  A partial last chunk
 * loads zeros past the row, which give zero everywhere. */
static void q4a8_prep(const int8_t *xq, const float *xs, int64_t cols, llmq_q4a8_chunk *ch)
{
    const __m512i order = _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7);
    const __m512i bias = _mm512_set1_epi8((char)0x80), k1024 = _mm512_set1_epi64(1024);
    const __m512i lane_b = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    for (int64_t base = 0; base < cols; base += 128, ch++) {
        int64_t nv = LLMQ_MIN(128, cols - base);
        __mmask64 ma = nv >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << nv) - 1;
        __mmask64 mb = nv >= 128 ? ~(__mmask64)0 : nv <= 64 ? 0 : ((__mmask64)1 << (nv - 64)) - 1;
        __m512i a = _mm512_maskz_loadu_epi8(ma, xq + base), b = _mm512_maskz_loadu_epi8(mb, xq + base + 64);
        __m512i ea = _mm512_srai_epi16(_mm512_slli_epi16(a, 8), 8), eb = _mm512_srai_epi16(_mm512_slli_epi16(b, 8), 8);
        __m512i oa = _mm512_srai_epi16(a, 8), ob = _mm512_srai_epi16(b, 8);
        _mm512_store_si512(ch->xe, _mm512_permutexvar_epi64(order, _mm512_packs_epi16(ea, eb)));
        _mm512_store_si512(ch->xo, _mm512_permutexvar_epi64(order, _mm512_packs_epi16(oa, ob)));
        __m512i sa = _mm512_sub_epi64(k1024, _mm512_sad_epu8(_mm512_xor_si512(a, bias), _mm512_setzero_si512()));
        __m512i sb = _mm512_sub_epi64(k1024, _mm512_sad_epu8(_mm512_xor_si512(b, bias), _mm512_setzero_si512()));
        __m512i ns = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(sa)), _mm512_cvtepi64_epi32(sb), 1);
        _mm512_store_si512(ch->nsum, _mm512_and_si512(ns, _mm512_set1_epi32(0xffff)));
        __m128 s4 = _mm_maskz_loadu_ps((__mmask8)((1u << (nv / 32)) - 1), xs + base / LLMQ_A8_BLOCK);
        _mm512_store_ps(ch->xs, _mm512_permutexvar_ps(lane_b, _mm512_castps128_ps512(s4)));
    }
}

/* llmq_quantize_act_blocks, the oracle's operations in its order: NaNs
 * drop out of the max (max_ps returns its second operand on a NaN) and the
 * clamp; cvtps rounds to nearest even as lrintf does. */
static void quant_blocks(const float *x, int64_t n, int8_t *q, float *scales)
{
    const __m512 zero = _mm512_setzero_ps(), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    for (int64_t b = 0; b < n / LLMQ_A8_BLOCK; b++) {
        const float *xb = x + b * LLMQ_A8_BLOCK;
        __m512 a = _mm512_loadu_ps(xb), c = _mm512_loadu_ps(xb + 16);
        __m512 m = _mm512_max_ps(_mm512_max_ps(_mm512_abs_ps(a), zero), _mm512_max_ps(_mm512_abs_ps(c), zero));
        float amax = _mm512_reduce_max_ps(m);
        if (!(amax >= LLMQ_A8_TINY)) amax = 0.0f;
        scales[b] = amax / 127.0f;
        __m512 inv = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
        __m512 va = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(a, inv), lo), hi);
        __m512 vc = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(c, inv), lo), hi);
        _mm_storeu_si128((__m128i *)(q + b * LLMQ_A8_BLOCK), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(va)));
        _mm_storeu_si128((__m128i *)(q + b * LLMQ_A8_BLOCK + 16), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(vc)));
    }
}

/* ---- decode attention on a KV-cache tile (llmq_attn_scores/values) ----
 * hd a multiple of 32 up to 256 (else the oracle): keys are rotated 16
 * channels at a time in rows, then transposed 16 x 16 in registers so
 * that a key is a lane and a query channel one broadcast. */

/* r[i] lane j <-> r[j] lane i. */
INLINE void tr16(__m512 r[16])
{
    __m512 t[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xee);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
}

/* The rows of keys r0 .. r0 + 15 of a tile and of their positions' cos and
 * sin; past m, key m - 1's again. */
INLINE void key_rows16(const float *K, int m, int hd, int p0, const float *cs, const float *sn, int r0,
                       const float *k[16], const float *c[16], const float *s[16])
{
    int half = hd / 2;
    for (int r = 0; r < 16; r++) {
        int t = LLMQ_MIN(r0 + r, m - 1);
        k[r] = K + (size_t)t * hd;
        c[r] = cs + (size_t)(p0 + t) * half;
        s[r] = sn + (size_t)(p0 + t) * half;
    }
}

/* Channels i .. i + 15 (hi: of the second half) of key row k, rotated
 * with its position's cos and sin rows c, s. */
INLINE __m512 rope16(const float *k, const float *c, const float *s, int half, int i, int hi)
{
    __m512 a = _mm512_loadu_ps(k + i), b = _mm512_loadu_ps(k + half + i);
    __m512 cv = _mm512_loadu_ps(c + i), sv = _mm512_loadu_ps(s + i);
    return hi ? _mm512_fmadd_ps(b, cv, _mm512_mul_ps(a, sv)) : _mm512_fmsub_ps(a, cv, _mm512_mul_ps(b, sv));
}

/* The 16 keys of key_rows16, channels i .. i + 15 of a half (hi: the
 * second) rotated and transposed: channel i + hi * half + j in Kt's row of
 * that number, key r in lane r (the caller offsets Kt to the key block).
 * BF: channels i .. i + 31 as bf16 pairs, pair j in row (i + hi * half) / 2
 * + j. */
INLINE void rope_tr16(const float *const k[16], const float *const cs[16], const float *const sn[16], int half,
                      int i, int hi, int BF, float *Kt)
{
    __m512 x[16];
#pragma GCC unroll 16
    for (int r = 0; r < 16; r++) {
        __m512 y = rope16(k[r], cs[r], sn[r], half, i, hi);
        x[r] = BF ? (__m512)_mm512_cvtne2ps_pbh(rope16(k[r], cs[r], sn[r], half, i + 16, hi), y) : y;
    }
    tr16(x);
    float *o = Kt + (size_t)(hi * half + i) / (BF ? 2 : 1) * 32;
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) _mm512_store_ps(o + (size_t)j * 32, x[j]);
}

/* One step of a score sum: a + q[i] k, q[i] an f32 broadcast, or (BF) a
 * bf16 pair broadcast times k's bf16 pairs, both products added. */
INLINE __m512 score_step(__m512 a, const void *q, size_t i, __m512 k, int BF)
{
    if (BF) return _mm512_dpbf16_ps(a, (__m512bh)_mm512_set1_epi32((int)((const uint32_t *)q)[i]), (__m512bh)k);
    return _mm512_fmadd_ps(_mm512_set1_ps(((const float *)q)[i]), k, a);
}

/* S rows of NH query heads over the tile's NB x 16 keys in Kt, n rows of
 * 32 floats (channels, or BF: bf16 channel pairs), Q n elements a head:
 * NH x 2 independent sums (two key blocks, or even and odd rows of one). */
INLINE void scores_heads(const float *Kt, int n, int NB, const void *Q, int NH, int BF, float scale, int m, float *S,
                         size_t ldS)
{
    __m512 a[4][2];
#pragma GCC unroll 16
    for (int e = 0; e < NH; e++) a[e][0] = a[e][1] = _mm512_setzero_ps();
    if (NB == 2) {
        for (int c = 0; c < n; c++) {
            __m512 k0 = _mm512_load_ps(Kt + (size_t)c * 32), k1 = _mm512_load_ps(Kt + (size_t)c * 32 + 16);
#pragma GCC unroll 16
            for (int e = 0; e < NH; e++) {
                a[e][0] = score_step(a[e][0], Q, (size_t)e * n + c, k0, BF);
                a[e][1] = score_step(a[e][1], Q, (size_t)e * n + c, k1, BF);
            }
        }
    } else {
        for (int c = 0; c < n; c += 2) {
            __m512 k0 = _mm512_load_ps(Kt + (size_t)c * 32), k1 = _mm512_load_ps(Kt + (size_t)(c + 1) * 32);
#pragma GCC unroll 16
            for (int e = 0; e < NH; e++) {
                a[e][0] = score_step(a[e][0], Q, (size_t)e * n + c, k0, BF);
                a[e][1] = score_step(a[e][1], Q, (size_t)e * n + c + 1, k1, BF);
            }
        }
#pragma GCC unroll 16
        for (int e = 0; e < NH; e++) a[e][0] = _mm512_add_ps(a[e][0], a[e][1]);
    }
    __m512 sc = _mm512_set1_ps(scale);
    __mmask16 m0 = m >= 16 ? 0xffff : tail_mask(m), m1 = m > 16 ? tail_mask(m - 16) : 0;
#pragma GCC unroll 16
    for (int e = 0; e < NH; e++) {
        _mm512_mask_storeu_ps(S + (size_t)e * ldS, m0, _mm512_mul_ps(a[e][0], sc));
        if (NB == 2) _mm512_mask_storeu_ps(S + (size_t)e * ldS + 16, m1, _mm512_mul_ps(a[e][1], sc));
    }
}

/* scores_heads of nh <= 4 heads over nb key blocks, each case its own code. */
INLINE void scores_block(const float *Kt, int n, int nb, const void *Q, int nh, int BF, float scale, int m, float *S,
                         size_t ldS)
{
    switch (nh * 2 + nb - 1) {
    case 2: scores_heads(Kt, n, 1, Q, 1, BF, scale, m, S, ldS); break;
    case 3: scores_heads(Kt, n, 2, Q, 1, BF, scale, m, S, ldS); break;
    case 4: scores_heads(Kt, n, 1, Q, 2, BF, scale, m, S, ldS); break;
    case 5: scores_heads(Kt, n, 2, Q, 2, BF, scale, m, S, ldS); break;
    case 6: scores_heads(Kt, n, 1, Q, 3, BF, scale, m, S, ldS); break;
    case 7: scores_heads(Kt, n, 2, Q, 3, BF, scale, m, S, ldS); break;
    case 8: scores_heads(Kt, n, 1, Q, 4, BF, scale, m, S, ldS); break;
    default: scores_heads(Kt, n, 2, Q, 4, BF, scale, m, S, ldS); break;
    }
}

static void attn_scores(const float *K, int m, int hd, int p0, const float *cs, const float *sn, const float *Q,
                        int group, float scale, float *S, size_t ldS)
{
    if (hd % 32 || hd > 256 || m > 32) {
        llmq_ktable_ref.attn_scores(K, m, hd, p0, cs, sn, Q, group, scale, S, ldS);
        return;
    }
    float Kt[256 * 32] __attribute__((aligned(64)));   /* (hd, 32): key r is lane r */
    int nb = (m + 15) / 16, half = hd / 2;
    for (int b = 0; b < nb; b++) {
        const float *k[16], *c[16], *s[16];
        key_rows16(K, m, hd, p0, cs, sn, 16 * b, k, c, s);
        for (int i = 0; i < half; i += 16) {
            rope_tr16(k, c, s, half, i, 0, 0, Kt + 16 * b);
            rope_tr16(k, c, s, half, i, 1, 0, Kt + 16 * b);
        }
    }
    for (int h = 0; h < group; h += 4)
        scores_block(Kt, hd, nb, Q + (size_t)h * hd, LLMQ_MIN(4, group - h), 0, scale, m, S + (size_t)h * ldS, ldS);
}

/* bf16 products (AVX512-BF16): a lane of Kt2 holds a key's channels 2j
 * and 2j + 1 as a bf16 pair, a query's pair is one broadcast, and
 * vdpbf16ps adds both products: half the instructions of fp32 and half the
 * transposes.  hd a multiple of 64 up to 256 (32 channels of a half a
 * vector), else the fp32 kernel. */
static void attn_scores_bf16(const float *K, int m, int hd, int p0, const float *cs, const float *sn,
                             const float *Q, int group, float scale, float *S, size_t ldS)
{
    if (hd % 64 || hd > 256 || m > 32) {
        attn_scores(K, m, hd, p0, cs, sn, Q, group, scale, S, ldS);
        return;
    }
    float Kt2[128 * 32] __attribute__((aligned(64)));   /* (hd / 2, 32): key r's pair j in lane r of row j */
    uint32_t Q2[4 * 128];                                 /* 4 heads' pairs at a time */
    int nb = (m + 15) / 16, half = hd / 2, np = hd / 2;
    for (int b = 0; b < nb; b++) {
        const float *k[16], *c[16], *s[16];
        key_rows16(K, m, hd, p0, cs, sn, 16 * b, k, c, s);
        for (int i = 0; i < half; i += 32) {
            rope_tr16(k, c, s, half, i, 0, 1, Kt2 + 16 * b);
            rope_tr16(k, c, s, half, i, 1, 1, Kt2 + 16 * b);
        }
    }
    for (int h = 0; h < group; h += 4) {
        int nh = LLMQ_MIN(4, group - h);
        for (int e = 0; e < nh; e++)
            for (int c = 0; c < hd; c += 32) {
                const float *q = Q + (size_t)(h + e) * hd + c;
                __m512i v = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(q + 16), _mm512_loadu_ps(q));
                _mm512_storeu_si512(Q2 + (size_t)e * np + c / 2, v);
            }
        float *o = S + (size_t)h * ldS;
        scores_block(Kt2, np, nb, Q2, nh, 1, scale, m, o, ldS);
    }
}

/* O rows of NH heads, channels c0..c0+31: 2 NH sums in registers over the
 * tile's rows. */
INLINE void values_heads(const float *P, size_t ldP, int m, const float *V, int hd, int NH, float *O)
{
    __m512 a[8][2];
#pragma GCC unroll 16
    for (int e = 0; e < NH; e++) {
        a[e][0] = _mm512_loadu_ps(O + (size_t)e * hd);
        a[e][1] = _mm512_loadu_ps(O + (size_t)e * hd + 16);
    }
    for (int r = 0; r < m; r++) {
        __m512 v0 = _mm512_loadu_ps(V + (size_t)r * hd), v1 = _mm512_loadu_ps(V + (size_t)r * hd + 16);
#pragma GCC unroll 16
        for (int e = 0; e < NH; e++) {
            __m512 p = _mm512_set1_ps(P[(size_t)e * ldP + r]);
            a[e][0] = _mm512_fmadd_ps(p, v0, a[e][0]);
            a[e][1] = _mm512_fmadd_ps(p, v1, a[e][1]);
        }
    }
#pragma GCC unroll 16
    for (int e = 0; e < NH; e++) {
        _mm512_storeu_ps(O + (size_t)e * hd, a[e][0]);
        _mm512_storeu_ps(O + (size_t)e * hd + 16, a[e][1]);
    }
}

static void attn_values(const float *P, size_t ldP, int m, const float *V, int hd, int group, float *O)
{
    if (hd % 32) {
        llmq_ktable_ref.attn_values(P, ldP, m, V, hd, group, O);
        return;
    }
    for (int c = 0; c < hd; c += 32)
        for (int h = 0; h < group; h += 8) {
            const float *p = P + (size_t)h * ldP;
            float *o = O + (size_t)h * hd + c;
            switch (LLMQ_MIN(8, group - h)) {
            case 1: values_heads(p, ldP, m, V + c, hd, 1, o); break;
            case 2: values_heads(p, ldP, m, V + c, hd, 2, o); break;
            case 3: values_heads(p, ldP, m, V + c, hd, 3, o); break;
            case 4: values_heads(p, ldP, m, V + c, hd, 4, o); break;
            case 5: values_heads(p, ldP, m, V + c, hd, 5, o); break;
            case 6: values_heads(p, ldP, m, V + c, hd, 6, o); break;
            case 7: values_heads(p, ldP, m, V + c, hd, 7, o); break;
            default: values_heads(p, ldP, m, V + c, hd, 8, o); break;
            }
        }
}

/* ---- KV-cache codes to f32 (llmq_kv_deq_channels / _groups) ----
 * 16 codes of B bits (8, 4, 2) a vector: their 2B bytes loaded exactly,
 * each lane's dword picked and shifted to its code.  lo + step * code
 * with the product rounded first, as the oracle: deq_fma keeps GCC from
 * contracting the two into an FMA. */
INLINE __m512 deq_fma(__m512 lo, __m512 step, __m512 q)
{
    __m512 p = _mm512_mul_ps(step, q);
    __asm__("" : "+v"(p));
    return _mm512_add_ps(lo, p);
}

INLINE __m512 kv_codes16(const uint8_t *p, int B)
{
    if (B == 8) return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p)));
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512i bit = _mm512_slli_epi32(lane, B == 4 ? 2 : 1);
    __m128i x = _mm_maskz_loadu_epi8((__mmask16)((1u << (2 * B)) - 1), p);
    __m512i w = _mm512_permutexvar_epi32(_mm512_srli_epi32(bit, 5), _mm512_castsi128_si512(x));
    w = _mm512_srlv_epi32(w, _mm512_and_si512(bit, _mm512_set1_epi32(31)));
    return _mm512_cvtepi32_ps(_mm512_and_si512(w, _mm512_set1_epi32((1 << B) - 1)));
}

INLINE void kv_deqc_rows(const uint8_t *src, size_t rowb, int m, int hd, int B, const float *lo, const float *step,
                         float *out)
{
    for (int r = 0; r < m; r++) {
        const uint8_t *row = src + (size_t)r * rowb;
        float *o = out + (size_t)r * hd;
#pragma GCC unroll 8
        for (int c = 0; c < hd; c += 16) {
            __m512 q = kv_codes16(row + (size_t)c * B / 8, B);
            _mm512_storeu_ps(o + c, deq_fma(_mm512_loadu_ps(lo + c), _mm512_loadu_ps(step + c), q));
        }
    }
}

static void kv_deq_channels(const uint8_t *src, size_t rowb, int m, int hd, int bits, const float *lo,
                            const float *step, float *out)
{
    /* the common head sizes as constants: their loops unroll */
#define DEQC(HD)                                                                 \
    switch (bits) {                                                              \
    case 8: kv_deqc_rows(src, rowb, m, HD, 8, lo, step, out); return;            \
    case 4: kv_deqc_rows(src, rowb, m, HD, 4, lo, step, out); return;            \
    case 2: kv_deqc_rows(src, rowb, m, HD, 2, lo, step, out); return;            \
    }
    if (hd == 64) DEQC(64)
    else if (hd == 128) DEQC(128)
    else if (hd % 16 == 0) DEQC(hd)
#undef DEQC
    llmq_ktable_ref.kv_deq_channels(src, rowb, m, hd, bits, lo, step, out);
}

INLINE void kv_deqg_rows(const uint8_t *src, size_t rowb, const uint16_t *par, int ng, int m, int hd, int B,
                         float *out)
{
    int vg = hd / ng;
    size_t gb = (size_t)vg * B / 8;
    for (int r = 0; r < m; r++)
        for (int k = 0; k < ng; k++) {
            const uint16_t *pk = par + ((size_t)r * ng + k) * 2;
            const uint8_t *g = src + (size_t)r * rowb + k * gb;
            __m512 step = _mm512_set1_ps(_cvtsh_ss(pk[0])), lo = _mm512_set1_ps(_cvtsh_ss(pk[1]));
            float *o = out + (size_t)r * hd + (size_t)k * vg;
#pragma GCC unroll 8
            for (int c = 0; c < vg; c += 16)
                _mm512_storeu_ps(o + c, deq_fma(lo, step, kv_codes16(g + (size_t)c * B / 8, B)));
        }
}

static void kv_deq_groups(const uint8_t *src, size_t rowb, const uint16_t *par, int ng, int m, int hd, int bits,
                          float *out)
{
#define DEQG(HD, NG)                                                             \
    switch (bits) {                                                              \
    case 8: kv_deqg_rows(src, rowb, par, NG, m, HD, 8, out); return;             \
    case 4: kv_deqg_rows(src, rowb, par, NG, m, HD, 4, out); return;             \
    case 2: kv_deqg_rows(src, rowb, par, NG, m, HD, 2, out); return;             \
    }
    if (hd == 64 && ng == 2) DEQG(64, 2)
    else if (hd == 128 && ng == 4) DEQG(128, 4)
    else if (ng > 0 && hd % ng == 0 && hd / ng % 16 == 0) DEQG(hd, ng)
#undef DEQG
    llmq_ktable_ref.kv_deq_groups(src, rowb, par, ng, m, hd, bits, out);
}

/* ---- decode attention's scores from 4-bit key codes (llmq_attn_scores_codes) ----
 * 16 bytes of a key row widen to dwords: low nibbles are channels 2 j,
 * high nibbles 2 j + 1 of its 32 channels.  The keys are dequantized,
 * rotated and rounded to bf16 in that order, with the ranges, cos and sin
 * put in it (and the queries, once a call); a dot product is the same sum
 * in any channel order. */

/* x[0..15] even then odd channels of 32 floats. */
INLINE void evod(const float *x, __m512 *e, __m512 *o)
{
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
    *e = _mm512_permutex2var_ps(a, ie, b);
    *o = _mm512_permutex2var_ps(a, _mm512_add_epi32(ie, _mm512_set1_epi32(1)), b);
}

/* Keys of rows k[0..15] (code rows), channels i .. i + 31 of each half,
 * dequantized with the even/odd ranges L, T ([0..1] first half, [2..3]
 * second), rotated, as bf16 pairs: into Kt2's rows i / 2 .. i / 2 + 15
 * (first half) and (half + i) / 2 .. (second), key r in lane r. */
INLINE void codes_rope_tr16(const uint8_t *const k[16], const float *const cs[16], const float *const sn[16],
                            int half, int i, const __m512 L[4], const __m512 T[4], float *Kt2)
{
    __m512 x[16], y[16];
    const __m512i nib = _mm512_set1_epi32(15);
#pragma GCC unroll 16
    for (int r = 0; r < 16; r++) {
        __m512i a = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(k[r] + i / 2)));
        __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(k[r] + (half + i) / 2)));
        __m512 ae = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_si512(a, nib)), T[0], L[0]);
        __m512 ao = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(a, 4)), T[1], L[1]);
        __m512 be = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_si512(b, nib)), T[2], L[2]);
        __m512 bo = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(b, 4)), T[3], L[3]);
        __m512 ce, co, se, so;
        evod(cs[r] + i, &ce, &co);
        evod(sn[r] + i, &se, &so);
        x[r] = (__m512)_mm512_cvtne2ps_pbh(_mm512_fmsub_ps(ao, co, _mm512_mul_ps(bo, so)),
                                           _mm512_fmsub_ps(ae, ce, _mm512_mul_ps(be, se)));
        y[r] = (__m512)_mm512_cvtne2ps_pbh(_mm512_fmadd_ps(bo, co, _mm512_mul_ps(ao, so)),
                                           _mm512_fmadd_ps(be, ce, _mm512_mul_ps(ae, se)));
    }
    tr16(x);
    tr16(y);
    float *ox = Kt2 + (size_t)i / 2 * 32, *oy = Kt2 + (size_t)(half + i) / 2 * 32;
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) {
        _mm512_store_ps(ox + (size_t)j * 32, x[j]);
        _mm512_store_ps(oy + (size_t)j * 32, y[j]);
    }
}

static int attn_scores_codes(const uint8_t *src, size_t rowb, int m, int hd, int bits, const float *lo,
                             const float *step, int p0, const float *cs, const float *sn, const float *Q, int group,
                             float scale, float *S, size_t ldS)
{
    if (bits != 4 || hd % 64 || hd > 256 || m > 32) return 0;
    float Kt2[128 * 32] __attribute__((aligned(64)));   /* (hd / 2, 32): as attn_scores_bf16 */
    uint32_t Q2[4 * 128];
    int nb = (m + 15) / 16, half = hd / 2, np = hd / 2;
    for (int i = 0; i < half; i += 32) {
        __m512 L[4], T[4];
        evod(lo + i, &L[0], &L[1]);
        evod(lo + half + i, &L[2], &L[3]);
        evod(step + i, &T[0], &T[1]);
        evod(step + half + i, &T[2], &T[3]);
        for (int b = 0; b < nb; b++) {
            const uint8_t *k[16];
            const float *c[16], *s[16];
            for (int r = 0; r < 16; r++) {
                int t = LLMQ_MIN(16 * b + r, m - 1);
                k[r] = src + (size_t)t * rowb;
                c[r] = cs + (size_t)(p0 + t) * half;
                s[r] = sn + (size_t)(p0 + t) * half;
            }
            codes_rope_tr16(k, c, s, half, i, L, T, Kt2 + 16 * b);
        }
    }
    for (int h = 0; h < group; h += 4) {
        int nh = LLMQ_MIN(4, group - h);
        for (int e = 0; e < nh; e++)
            for (int c = 0; c < hd; c += 32) {
                __m512 qe, qo;
                evod(Q + (size_t)(h + e) * hd + c, &qe, &qo);
                _mm512_storeu_si512(Q2 + (size_t)e * np + c / 2, (__m512i)_mm512_cvtne2ps_pbh(qo, qe));
            }
        scores_block(Kt2, np, nb, Q2, nh, 1, scale, m, S + (size_t)h * ldS, ldS);
    }
    return 1;
}

/* ---- decode attention's values from their codes (llmq_attn_values_codes) ----
 * Rows r and r + 1 go together: 16 bytes of each widen to dwords, row
 * r + 1's in the high word, and vpermw looks each word's code up as its
 * bf16 (exact).  The two rows' weights P * step are one bf16 pair, so one
 * vdpbf16ps adds both rows' products for 16 channels.  Lane j of shift s
 * holds channel 8 j / B + s of the 16 bytes: the sums go back into
 * channel order once per call, and the ranges' lo come back as one sum
 * a head and group: O += sum P'' code + sum P lo. */

/* Heads h0 .. h0 + NH - 1 (PP, bias offset to h0) on 16-byte chunk c16
 * of every row: the chunk's 128 / B channels of O. */
INLINE void vcodes_heads(const uint8_t *src, size_t rowb, int m, int c16, int B, int NH, int gb,
                         const uint32_t *PP, const float *bias, int ng, int vg, float *O, int hd)
{
    static const uint8_t zero[16];
    enum { V = 4 };
    int nv = 8 / B, k0 = c16 * 16 / gb;
    /* bf16 of the code in a word's low B bits (vpermw reads its low 5) */
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i cm = _mm512_set1_epi32((1 << B) - 1);
    const __m512i T = (__m512i)_mm512_cvtne2ps_pbh(
        _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_add_epi32(lane, _mm512_set1_epi32(16)), cm)),
        _mm512_cvtepi32_ps(_mm512_and_si512(lane, cm)));
    __m512 a[8][V];
#pragma GCC unroll 32
    for (int e = 0; e < NH; e++)
        for (int s = 0; s < nv; s++) a[e][s] = _mm512_setzero_ps();
    for (int j = 0; 2 * j < m; j++) {
        const uint8_t *r0 = src + (size_t)(2 * j) * rowb + (size_t)c16 * 16;
        const uint8_t *r1 = 2 * j + 1 < m ? r0 + rowb : zero;
        __m512i d = _mm512_or_si512(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)r0)),
                                    _mm512_slli_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)r1)), 16));
        __m512i w[V];
#pragma GCC unroll 4
        for (int s = 0; s < nv; s++) w[s] = _mm512_permutexvar_epi16(_mm512_srli_epi32(d, s * B), T);
#pragma GCC unroll 8
        for (int e = 0; e < NH; e++) {
            const uint32_t *pe = PP + (size_t)e * ng * 16 + j;
            /* 16 bytes are one group, or two of 8 bytes (lanes 8-15 the second) */
            __m512i pv = _mm512_set1_epi32((int)pe[(size_t)k0 * 16]);
            if (gb < 16) pv = _mm512_mask_set1_epi32(pv, 0xff00, (int)pe[(size_t)(k0 + 1) * 16]);
#pragma GCC unroll 4
            for (int s = 0; s < nv; s++) a[e][s] = _mm512_dpbf16_ps(a[e][s], (__m512bh)pv, (__m512bh)w[s]);
        }
    }
    /* channel order: B 4, lane j of shift s is channel 2 j + s; B 2, 4 j + s */
    int c0 = c16 * 128 / B;
#pragma GCC unroll 8
    for (int e = 0; e < NH; e++) {
        float *o = O + (size_t)e * hd + c0;
        const float *be = bias + (size_t)e * ng;
        __m512 n[4];
        if (B == 4) {
            n[0] = _mm512_permutex2var_ps(a[e][0], _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), a[e][1]);
            n[1] = _mm512_permutex2var_ps(a[e][0], _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), a[e][1]);
        } else {
            const __m512i i1 = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 0, 16, 1, 17, 2, 18, 3, 19);
            const __m512i i2 = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++) {
                __m512i iq = _mm512_add_epi32(i1, _mm512_set1_epi32(4 * q));
                n[q] = _mm512_permutex2var_ps(_mm512_permutex2var_ps(a[e][0], iq, a[e][1]), i2,
                                              _mm512_permutex2var_ps(a[e][2], iq, a[e][3]));
            }
        }
#pragma GCC unroll 4
        for (int q = 0; q < nv; q++) {
            __m512 b = _mm512_set1_ps(be[(c0 + 16 * q) / vg]);
            _mm512_storeu_ps(o + 16 * q, _mm512_add_ps(_mm512_loadu_ps(o + 16 * q), _mm512_add_ps(n[q], b)));
        }
    }
}

/* bf16 pairs of the weights times the steps, PP[(e * ng + k) * 16 + j] =
 * rows 2 j and 2 j + 1 of head h0 + e, group k, and bias[e * ng + k] =
 * sum P lo, for nh heads; st, lo (ng, 32) by group. */
static void vcodes_weights(const float *P, size_t ldP, int m, int h0, int nh, const float *st, const float *lo, int ng,
                           uint32_t *PP, float *bias)
{
    __mmask16 m0 = m >= 16 ? 0xffff : tail_mask(m), m1 = m > 16 ? tail_mask(m - 16) : 0;
    for (int e = 0; e < nh; e++) {
        const float *p = P + (size_t)(h0 + e) * ldP;
        __m512 p0 = _mm512_maskz_loadu_ps(m0, p), p1 = _mm512_maskz_loadu_ps(m1, p + 16);
        for (int k = 0; k < ng; k++) {
            const float *sk = st + (size_t)k * 32, *lk = lo + (size_t)k * 32;
            __m512i pb = (__m512i)_mm512_cvtne2ps_pbh(_mm512_mul_ps(p1, _mm512_load_ps(sk + 16)),
                                                      _mm512_mul_ps(p0, _mm512_load_ps(sk)));
            _mm512_storeu_si512(PP + ((size_t)e * ng + k) * 16, pb);
            __m512 b = _mm512_fmadd_ps(p1, _mm512_load_ps(lk + 16), _mm512_mul_ps(p0, _mm512_load_ps(lk)));
            bias[e * ng + k] = _mm512_reduce_add_ps(b);
        }
    }
}

static int attn_values_codes(const float *P, size_t ldP, int m, const uint8_t *src, size_t rowb,
                             const uint16_t *par, int ng, int hd, int bits, int group, float *O)
{
    int B = bits, vg = ng > 0 ? hd / ng : 0;
    int gb = vg * B / 8;
    /* chunks of 16 bytes in one group or two of 8; output vectors in one group */
    if ((B != 4 && B != 2) || m > 32 || ng <= 0 || ng > 16 || hd % ng || vg % 16 || (size_t)hd * B % 128 ||
        (gb % 16 && gb != 8))
        return 0;
    float st[16 * 32] __attribute__((aligned(64))), lo[16 * 32] __attribute__((aligned(64)));
    uint32_t PP[8 * 16 * 16];
    float bias[8 * 16];
    /* the ranges by group: f16 pairs (row, group) to (group, row) floats */
    for (int k = 0; k < ng; k++)
        for (int r0 = 0; r0 < 32; r0 += 16) {
            __mmask16 mk = r0 >= m ? 0 : m - r0 >= 16 ? 0xffff : tail_mask(m - r0);
            __m512i idx = _mm512_mullo_epi32(_mm512_add_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(r0)), _mm512_set1_epi32(2 * ng));
            idx = _mm512_add_epi32(idx, _mm512_set1_epi32(2 * k));
            /* 32-bit gathers of the (step, lo) pairs: low half step, high half lo */
            __m512i pr = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), mk, idx, par, 2);
            _mm512_store_ps(st + k * 32 + r0, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(pr)));
            _mm512_store_ps(lo + k * 32 + r0, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(pr, 16))));
        }
    int chunks = hd * B / 128;
    for (int h = 0; h < group; h += 8) {
        int nh = LLMQ_MIN(8, group - h);
        vcodes_weights(P, ldP, m, h, nh, st, lo, ng, PP, bias);
        for (int c = 0; c < chunks; c++)
            for (int e = 0; e < nh;) {
                float *o = O + (size_t)(h + e) * hd;
                const uint32_t *pp = PP + (size_t)e * ng * 16;
                const float *bi = bias + (size_t)e * ng;
                /* 16 sums in registers: 8 heads of 4-bit codes, 4 of 2-bit */
                int n = LLMQ_MIN(nh - e, B == 4 ? 8 : 4);
#define VC4(NH) vcodes_heads(src, rowb, m, c, 4, NH, gb, pp, bi, ng, vg, o, hd)
#define VC2(NH) vcodes_heads(src, rowb, m, c, 2, NH, gb, pp, bi, ng, vg, o, hd)
                if (B == 4) switch (n) {
                    case 1: VC4(1); break; case 2: VC4(2); break; case 3: VC4(3); break; case 4: VC4(4); break;
                    case 5: VC4(5); break; case 6: VC4(6); break; case 7: VC4(7); break; default: VC4(8); break;
                    }
                else switch (n) {
                    case 1: VC2(1); break; case 2: VC2(2); break; case 3: VC2(3); break; default: VC2(4); break;
                    }
#undef VC4
#undef VC2
                e += n;
            }
    }
    return 1;
}

const llmq_ktable llmq_ktable_avx512 = {
    .matvec = { [LLMQ_W_F32] = mv_f32, [LLMQ_W_BF16] = mv_bf16, [LLMQ_W_F16] = mv_f16,
                [LLMQ_W_Q8] = mv_q8, [LLMQ_W_Q4] = mv_q4, [LLMQ_W_MX8] = mv_mx8,
                LLMQ_KTABLE_GQ(mvt_gq_), LLMQ_KTABLE_BLOCK(mv_b4, mv_fp8), [LLMQ_W_Q3] = mv_q3 },
    .dequant = { [LLMQ_W_BF16] = dq_bf16, [LLMQ_W_F16] = dq_f16, [LLMQ_W_Q8] = dq_q8,
                 [LLMQ_W_Q4] = dq_q4, [LLMQ_W_MX8] = dq_mx8,
                 LLMQ_KTABLE_GQ(dq_gq_), LLMQ_KTABLE_BLOCK(dq_b4, dq_fp8), [LLMQ_W_Q3] = dq_q3 },
    .matvec_a8 = mv_a8,
    .matmul_a8 = mm_a8,
    .matmul_bf16 = mm_bf16,
    .gemm_bf16p = gemm_bf16p,
    .matvec_q4a8 = mv_q4a8,
    .matmul_q4a8 = mm_q4a8,
    .matvec_q4a8l = mv_q4a8l,
    .matmul_q4a8l = mm_q4a8l,
    .quant_blocks = quant_blocks,
    .q4a8_prep = q4a8_prep,
    .attn_scores = attn_scores,
    .attn_scores_bf16 = attn_scores_bf16,
    .attn_values = attn_values,
    .kv_deq_channels = kv_deq_channels,
    .kv_deq_groups = kv_deq_groups,
    .attn_scores_codes = attn_scores_codes,
    .attn_values_codes = attn_values_codes,
};
