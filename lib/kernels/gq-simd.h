/*
 * gq-simd.h - decoding ggml's block types (lib/quant/ggml_blocks.h) in
 * SSE registers, shared by q_avx2.c and q_avx512.c (each compiles it with
 * its own flags; nothing here is exported).
 *
 * Every type is read as units of 16 consecutive values: unit u of a block
 * holds values 16u .. 16u + 15 and all of them share one scale d[u] and one
 * offset m[u], value = d[u] * code + m[u], with the code a signed byte.
 * (A 32-block's two units share d and m; Q4_K / Q5_K sub-blocks of 32 are
 * two units each; m is 0 for the symmetric types.)  GQ_PREP_T(b, d, m)
 * fills d[] and m[] for a block at b; GQ_UNIT_T(b, u) returns unit u's 16
 * codes.  Blocks may sit at any address: every load is unaligned.
 *
 * d[u] * code is exact in f32 (see ggml_blocks.h), so the kernels'
 * fma(code, d, m) and mul(code, d) give the oracle's values bit for bit.
 */
#ifndef LLMQ_GQ_SIMD_H
#define LLMQ_GQ_SIMD_H

#include <immintrin.h>
#include "kern-int.h"
#include "../quant/ggml_blocks.h"

#define GQ_INLINE static inline __attribute__((always_inline))

GQ_INLINE float gq_h2f(const uint8_t *p) { uint16_t h; memcpy(&h, p, 2); return _cvtsh_ss(h); }
GQ_INLINE uint32_t gq_le32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
GQ_INLINE __m128i gq_ld(const uint8_t *p) { return _mm_loadu_si128((const __m128i *)p); }
GQ_INLINE __m128i gq_and(__m128i v, int m) { return _mm_and_si128(v, _mm_set1_epi8((char)m)); }
/* each byte of v shifted right by n (0..7), bits from the next byte masked off by the caller */
GQ_INLINE __m128i gq_srl(__m128i v, int n) { return _mm_srl_epi16(v, _mm_cvtsi32_si128(n)); }
/* byte i = 0x10 where bit i of the low 16 bits of bits is set, else 0 */
GQ_INLINE __m128i gq_bit4(uint32_t bits)
{
    const __m128i sel = _mm_set1_epi64x((long long)0x8040201008040201ull);
    __m128i v = _mm_shuffle_epi8(_mm_cvtsi32_si128((int)bits), _mm_set_epi8(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0));
    return gq_and(_mm_cmpeq_epi8(_mm_and_si128(v, sel), sel), 0x10);
}

/* ---- 32-value blocks: units 0 and 1 ---- */

GQ_INLINE void gq_prep_q8_0(const uint8_t *b, float *d, float *m) { d[0] = d[1] = gq_h2f(b); m[0] = m[1] = 0.0f; }
GQ_INLINE __m128i gq_unit_q8_0(const uint8_t *b, int u) { return gq_ld(b + 2 + 16 * u); }

GQ_INLINE void gq_prep_q4_0(const uint8_t *b, float *d, float *m) { d[0] = d[1] = gq_h2f(b); m[0] = m[1] = 0.0f; }
GQ_INLINE __m128i gq_unit_q4_0(const uint8_t *b, int u)
{
    return _mm_sub_epi8(gq_and(gq_srl(gq_ld(b + 2), 4 * u), 15), _mm_set1_epi8(8));
}

GQ_INLINE void gq_prep_q4_1(const uint8_t *b, float *d, float *m) { d[0] = d[1] = gq_h2f(b); m[0] = m[1] = gq_h2f(b + 2); }
GQ_INLINE __m128i gq_unit_q4_1(const uint8_t *b, int u) { return gq_and(gq_srl(gq_ld(b + 4), 4 * u), 15); }

GQ_INLINE void gq_prep_q5_0(const uint8_t *b, float *d, float *m) { d[0] = d[1] = gq_h2f(b); m[0] = m[1] = 0.0f; }
GQ_INLINE __m128i gq_unit_q5_0(const uint8_t *b, int u)
{
    __m128i q = _mm_or_si128(gq_and(gq_srl(gq_ld(b + 6), 4 * u), 15), gq_bit4(gq_le32(b + 2) >> (16 * u)));
    return _mm_sub_epi8(q, _mm_set1_epi8(16));
}

GQ_INLINE void gq_prep_q5_1(const uint8_t *b, float *d, float *m) { d[0] = d[1] = gq_h2f(b); m[0] = m[1] = gq_h2f(b + 2); }
GQ_INLINE __m128i gq_unit_q5_1(const uint8_t *b, int u)
{
    return _mm_or_si128(gq_and(gq_srl(gq_ld(b + 8), 4 * u), 15), gq_bit4(gq_le32(b + 4) >> (16 * u)));
}

/* ---- 256-value super-blocks: units 0 .. 15 ---- */

/* The K types' per-sub-block scales are unpacked 8 at a time in ymm
 * registers: done value by value they cost more than decoding the codes.
 * Every d[u] and m[u] is the exact product of an f16 and a small integer. */

GQ_INLINE void gq_prep_q2_k(const uint8_t *b, float *d, float *m)
{
    __m256 dd = _mm256_set1_ps(gq_h2f(b + 80)), nm = _mm256_set1_ps(-gq_h2f(b + 82));
    for (int h = 0; h < 2; h++) {
        __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(b + 8 * h)));
        _mm256_storeu_ps(d + 8 * h, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_set1_epi32(15))), dd));
        _mm256_storeu_ps(m + 8 * h, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v, 4)), nm));
    }
}
/* unit u = 8h + 2j + p: bytes qs[32h + 16p ..], bit pair j */
GQ_INLINE __m128i gq_unit_q2_k(const uint8_t *b, int u)
{
    int h = u / 8, j = u % 8 / 2, p = u % 2;
    return gq_and(gq_srl(gq_ld(b + 16 + 32 * h + 16 * p), 2 * j), 3);
}

/* Q3_K: 4 low bits from nibbles of bytes 0-7 (low for s < 8), 2 high bits
 * from byte 8 + s % 4 at bit 2 (s / 4) */
GQ_INLINE void gq_prep_q3_k(const uint8_t *b, float *d, float *m)
{
    const uint8_t *sc12 = b + 96;
    __m256 dd = _mm256_set1_ps(gq_h2f(b + 108));
    __m256i lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)sc12));
    __m256i hi = _mm256_cvtepu8_epi32(_mm_set1_epi32((int)gq_le32(sc12 + 8)));   /* lane s: byte 8 + s % 4 */
    for (int h = 0; h < 2; h++) {
        __m256i l = _mm256_and_si256(_mm256_srli_epi32(lo, 4 * h), _mm256_set1_epi32(15));
        __m256i sh = h ? _mm256_setr_epi32(4, 4, 4, 4, 6, 6, 6, 6) : _mm256_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2);
        __m256i u = _mm256_and_si256(_mm256_srlv_epi32(hi, sh), _mm256_set1_epi32(3));
        __m256i sc = _mm256_sub_epi32(_mm256_or_si256(l, _mm256_slli_epi32(u, 4)), _mm256_set1_epi32(32));
        _mm256_storeu_ps(d + 8 * h, _mm256_mul_ps(_mm256_cvtepi32_ps(sc), dd));
        _mm256_storeu_ps(m + 8 * h, _mm256_setzero_ps());
    }
}
/* low 2 bits as Q2_K's, the third from bit 4h + j of hmask[16p ..] */
GQ_INLINE __m128i gq_unit_q3_k(const uint8_t *b, int u)
{
    int h = u / 8, j = u % 8 / 2, p = u % 2;
    __m128i lo = gq_and(gq_srl(gq_ld(b + 32 + 32 * h + 16 * p), 2 * j), 3);
    __m128i hb = gq_and(gq_srl(gq_ld(b + 16 * p), 4 * h + j), 1);
    return _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hb, 2)), _mm_set1_epi8(4));
}

/* Q4_K / Q5_K: the 12 bytes as three words: sc 0-3, mn 0-3, then 4-7 from
 * the low / high nibbles of bytes 8-11 with their 2 high bits from the top
 * of bytes 0-3 (sc) and 4-7 (mn); each sub-block's d and m go to both of
 * its units */
GQ_INLINE void gq_prep_k4(const uint8_t *b, float *d, float *m)
{
    uint32_t a0 = gq_le32(b + 4), a1 = gq_le32(b + 8), a2 = gq_le32(b + 12);
    uint32_t sc_hi = (a2 & 0x0f0f0f0fu) | ((a0 >> 6) & 0x03030303u) << 4;
    uint32_t mn_hi = ((a2 >> 4) & 0x0f0f0f0fu) | ((a1 >> 6) & 0x03030303u) << 4;
    __m256 sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_setr_epi32((int)(a0 & 0x3f3f3f3fu), (int)sc_hi, 0, 0)));
    __m256 mn = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_setr_epi32((int)(a1 & 0x3f3f3f3fu), (int)mn_hi, 0, 0)));
    __m256 vd = _mm256_mul_ps(sc, _mm256_set1_ps(gq_h2f(b))), vm = _mm256_mul_ps(mn, _mm256_set1_ps(-gq_h2f(b + 2)));
    /* [v0 v0 v1 v1 .. v7 v7] */
    __m256 dl = _mm256_unpacklo_ps(vd, vd), dh = _mm256_unpackhi_ps(vd, vd);
    __m256 ml = _mm256_unpacklo_ps(vm, vm), mh = _mm256_unpackhi_ps(vm, vm);
    _mm256_storeu_ps(d, _mm256_permute2f128_ps(dl, dh, 0x20));
    _mm256_storeu_ps(d + 8, _mm256_permute2f128_ps(dl, dh, 0x31));
    _mm256_storeu_ps(m, _mm256_permute2f128_ps(ml, mh, 0x20));
    _mm256_storeu_ps(m + 8, _mm256_permute2f128_ps(ml, mh, 0x31));
}
GQ_INLINE void gq_prep_q4_k(const uint8_t *b, float *d, float *m) { gq_prep_k4(b, d, m); }
GQ_INLINE void gq_prep_q5_k(const uint8_t *b, float *d, float *m) { gq_prep_k4(b, d, m); }
/* unit u: sub-block s = u / 2, half p = u % 2: nibble s % 2 of qs[32 (s / 2) + 16p ..] */
GQ_INLINE __m128i gq_unit_q4_k(const uint8_t *b, int u)
{
    int s = u / 2, p = u % 2;
    return gq_and(gq_srl(gq_ld(b + 16 + 32 * (s / 2) + 16 * p), 4 * (s % 2)), 15);
}
/* Q4_K's nibbles at qs = b + 48, bit s of qh[16p ..] as bit 4 */
GQ_INLINE __m128i gq_unit_q5_k(const uint8_t *b, int u)
{
    int s = u / 2, p = u % 2;
    __m128i lo = gq_and(gq_srl(gq_ld(b + 48 + 32 * (s / 2) + 16 * p), 4 * (s % 2)), 15);
    __m128i hb = gq_and(gq_srl(gq_ld(b + 16 + 16 * p), s), 1);
    return _mm_or_si128(lo, _mm_slli_epi16(hb, 4));
}

GQ_INLINE void gq_prep_q6_k(const uint8_t *b, float *d, float *m)
{
    __m256 dd = _mm256_set1_ps(gq_h2f(b + 208));
    for (int h = 0; h < 2; h++) {
        __m256i sc = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b + 192 + 8 * h)));
        _mm256_storeu_ps(d + 8 * h, _mm256_mul_ps(_mm256_cvtepi32_ps(sc), dd));
        _mm256_storeu_ps(m + 8 * h, _mm256_setzero_ps());
    }
}

/* unit u = 8h + 2j + p: nibble j / 2 of ql[64h + 32 (j % 2) + 16p ..], bit pair j of qh[32h + 16p ..] */
GQ_INLINE __m128i gq_unit_q6_k(const uint8_t *b, int u)
{
    int h = u / 8, j = u % 8 / 2, p = u % 2;
    __m128i lo = gq_and(gq_srl(gq_ld(b + 64 * h + 32 * (j % 2) + 16 * p), 4 * (j / 2)), 15);
    __m128i hi = gq_and(gq_srl(gq_ld(b + 128 + 32 * h + 16 * p), 2 * j), 3);
    return _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi8(32));
}

/* X(name, QK, block bytes, has a minimum) for every type, in llmq_wtype order */
#define GQ_TYPES(X)                 \
    X(q8_0, 32, 34, 0)              \
    X(q4_0, 32, 18, 0)              \
    X(q4_1, 32, 20, 1)              \
    X(q5_0, 32, 22, 0)              \
    X(q5_1, 32, 24, 1)              \
    X(q2_k, 256, 84, 1)             \
    X(q3_k, 256, 110, 0)            \
    X(q4_k, 256, 144, 1)            \
    X(q5_k, 256, 176, 1)            \
    X(q6_k, 256, 210, 0)

#endif
