/*
 * llmq-int.h - internal base shared by lib/, formats/, calib/:
 * checked arithmetic, little-endian loads and stores, float conversions,
 * allocation helpers.  Not part of the public API.
 */
#ifndef LLMQ_INT_H
#define LLMQ_INT_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <stdlib.h>
#include <inttypes.h>
#include "llmq.h"

#define LLMQ_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define LLMQ_MIN(a, b) ((a) < (b) ? (a) : (b))
#define LLMQ_MAX(a, b) ((a) > (b) ? (a) : (b))

/* An impossible state: report as an internal error, never abort. */
#define LLMQ_BUG(err, what) \
    llmq_errorf((err), LLMQ_EINTERNAL, "internal error at %s:%d: %s", __FILE__, __LINE__, (what))

/* ---- checked arithmetic: return 1 on overflow ---- */
/* 1 if v is a power of two (1, 2, 4, ...). */
static inline int llmq_is_pow2(int64_t v) { return v > 0 && !(v & (v - 1)); }

static inline int llmq_mul_ovf_u64(uint64_t a, uint64_t b, uint64_t *out) { return __builtin_mul_overflow(a, b, out); }
static inline int llmq_add_ovf_u64(uint64_t a, uint64_t b, uint64_t *out) { return __builtin_add_overflow(a, b, out); }
static inline int llmq_mul_ovf_size(size_t a, size_t b, size_t *out) { return __builtin_mul_overflow(a, b, out); }

/* ---- little-endian loads and stores (any alignment) ---- */
static inline uint16_t llmq_get_le16(const void *p) { const uint8_t *b = p; return (uint16_t)(b[0] | b[1] << 8); }
static inline uint32_t llmq_get_le32(const void *p) {
    const uint8_t *b = p; return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}
static inline uint64_t llmq_get_le64(const void *p) {
    const uint8_t *b = p; return (uint64_t)llmq_get_le32(b) | (uint64_t)llmq_get_le32(b + 4) << 32;
}
static inline void llmq_put_le16(void *p, uint16_t v) { uint8_t *b = p; b[0] = (uint8_t)v; b[1] = (uint8_t)(v >> 8); }
static inline void llmq_put_le32(void *p, uint32_t v) { uint8_t *b = p; for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i)); }
static inline void llmq_put_le64(void *p, uint64_t v) { uint8_t *b = p; for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i)); }

/* ---- float formats ---- */
static inline uint32_t llmq_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float llmq_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* bf16 -> f32 is exact. */
static inline float llmq_bf16_to_f32(uint16_t h) { return llmq_bits_f32((uint32_t)h << 16); }
/* f32 -> bf16, round to nearest even; NaN stays NaN. */
/* "A:B", a range of layers A..B-1 with 0 <= A < B <= 10^6, into *lo, *hi;
 * -1 (nothing written) for anything else.  awq and calibrate --layers,
 * and the range a statistics shard records. */
static inline int llmq_parse_range(const char *s, int *lo, int *hi)
{
    char *end;
    long a = strtol(s, &end, 10);
    if (end == s || *end != ':' || a < 0 || a > 1000000) return -1;
    const char *t = end + 1;
    long b = strtol(t, &end, 10);
    if (end == t || *end || b <= a || b > 1000000) return -1;
    *lo = (int)a;
    *hi = (int)b;
    return 0;
}

/* A loop function built per ISA (GCC target_clones, picked at load time)
 * and vectorized: for plain C loops that must keep up with the kernels. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define LLMQ_VECTORIZE __attribute__((target_clones("default", "avx2", "avx512f"), optimize("tree-vectorize", "vect-cost-model=dynamic")))
/* The same with FMA in the AVX2 and AVX-512 builds (x86-64-v3, -v4): for
 * loops whose rounding may differ between ISAs. */
#define LLMQ_VECTORIZE_FMA __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4"), optimize("tree-vectorize", "vect-cost-model=dynamic")))
#else
#define LLMQ_VECTORIZE
#define LLMQ_VECTORIZE_FMA
#endif

static inline uint16_t llmq_f32_to_bf16(float f) {
    uint32_t u = llmq_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}
float llmq_f16_to_f32(uint16_t h);
uint16_t llmq_f32_to_f16(float f);   /* round to nearest even, overflow -> Inf */

/* ---- allocation: failures are errors, never aborts ---- */
void *llmq_malloc(size_t n, llmq_err *err);              /* n == 0 allowed */
void *llmq_calloc(size_t n, size_t size, llmq_err *err); /* overflow-checked */
void *llmq_alloc_aligned(size_t n, llmq_err *err);       /* 64-byte aligned, free() it */
char *llmq_strdup(const char *s, llmq_err *err);

/* ---- text from files in messages ----
 * llmq_quote: s (NUL-terminated; NULL reads as "") made safe to put inside
 * quotes in a one-line message, into out, which it returns.  Printable
 * UTF-8 stays as it is ('\xc4\xa0the' shows as 'Ġthe', CJK stays CJK);
 * backslash, control bytes (\n, \r, \t, \xNN), DEL, C1 controls, line and
 * paragraph separators and bidi controls (\u202e) and bytes that are not
 * well-formed UTF-8 (\xNN) are escaped; past about 80 bytes the text is cut
 * with "...".  llmq_quote_n: the same for s[0..n), which may hold NULs. */
#define LLMQ_QUOTE_SIZE 128
const char *llmq_quote(char out[LLMQ_QUOTE_SIZE], const char *s);
const char *llmq_quote_n(char out[LLMQ_QUOTE_SIZE], const char *s, size_t n);
/* The well-formed UTF-8 sequence at s[0..n): its length (1..4) with its code
 * point in *cp, or 0 (overlong, surrogate, above U+10FFFF, cut short). */
size_t llmq_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);

/* Monotonic seconds, for timing. */
double llmq_now(void);

#endif
