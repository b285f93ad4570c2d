/*
 * ggml_blocks.h - ggml's quantized block types as GGUF stores them, and
 * their scalar dequantization (the oracle the kernels are tested against).
 *
 * A ggml tensor of one of these types is a matrix of rows (out features),
 * one after another; each row of n values is n / QK blocks, no padding,
 * little-endian.  QK = 32 for Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and 256 (a
 * "super-block") for the K types.  "f16" below is an IEEE binary16 scale.
 * The structs only document the bytes (sizes asserted): a file's blocks may
 * sit at any address, so code reads them through memcpy or unaligned
 * loads, never through a struct pointer.
 *
 * Every value below is a product of an f16 scale, small integers and an
 * integer code, and every such product is exact in f32 (at most 11 + 8 + 6
 * significant bits, far from the f32 range limits), so the one rounding is
 * the final multiply or the added minimum: any evaluation order, with or
 * without FMA, gives the same float, which is also what ggml's own
 * dequantize_row_* gives (tests/tools/ggml-dqcheck.c checks bit for bit).
 *
 * Q8_0 (34 bytes, 32 values)  { f16 d; int8 qs[32]; }
 *     value[i] = d * qs[i]
 * Q4_0 (18 bytes)  { f16 d; uint8 qs[16]; }
 *     4-bit codes q: value i (i < 16) in the low nibble of qs[i], value
 *     i + 16 in the high nibble of qs[i]; value = d * (q - 8)
 * Q4_1 (20 bytes)  { f16 d; f16 m; uint8 qs[16]; }
 *     nibbles as Q4_0; value = d * q + m
 * Q5_0 (22 bytes)  { f16 d; uint8 qh[4]; uint8 qs[16]; }
 *     5-bit codes: low 4 bits as Q4_0's nibbles, bit 4 of value i is bit i
 *     of the little-endian uint32 qh; value = d * (q - 16)
 * Q5_1 (24 bytes)  { f16 d; f16 m; uint8 qh[4]; uint8 qs[16]; }
 *     codes as Q5_0; value = d * q + m
 *
 * The K types split a 256-value super-block into 16 sub-blocks of 16
 * (Q2_K, Q3_K, Q6_K) or 8 of 32 (Q4_K, Q5_K), each with a small integer
 * scale (and for Q2_K, Q4_K, Q5_K a small integer minimum) that multiplies
 * the super-block's f16 d (dmin).  Codes are packed so that one byte
 * position l serves values l, l + 32, l + 64, ... of a 128-value half.
 *
 * Q2_K (84 bytes)  { uint8 scales[16]; uint8 qs[64]; f16 d; f16 dmin; }
 *     sub-block s (values 16s .. 16s + 15) has scale scales[s] & 15 and
 *     minimum scales[s] >> 4.  Value v: half h = v / 128, within it
 *     w = v % 128, j = w / 32, l = w % 32; the 2-bit code is
 *     (qs[32h + l] >> 2j) & 3.
 *     value = (d * sc) * q - dmin * mn
 * Q3_K (110 bytes)  { uint8 hmask[32]; uint8 qs[64]; uint8 scales[12]; f16 d; }
 *     low 2 bits of the code as Q2_K's qs; the third bit is bit (4h + j)
 *     of hmask[l]; the code is low2 - 4 when that bit is clear, low2 when
 *     set (so -4 .. 3).  The 16 scales are 6-bit, stored as 4 low bits
 *     (scale s < 8: scales[s] & 15; s >= 8: scales[s - 8] >> 4) and 2 high
 *     bits ((scales[8 + s % 4] >> 2 (s / 4)) & 3), minus 32.
 *     value = (d * (scale - 32)) * code
 * Q4_K (144 bytes)  { f16 d; f16 dmin; uint8 scales[12]; uint8 qs[128]; }
 *     sub-block s (values 32s .. 32s + 31) takes nibble s % 2 (low first)
 *     of qs[32 (s / 2) + l], l = v % 32.  Eight 6-bit scales sc[s] and
 *     minimums mn[s] in 12 bytes: for s < 4, sc = scales[s] & 63 and
 *     mn = scales[s + 4] & 63; for s >= 4, sc = (scales[s + 4] & 15) |
 *     (scales[s - 4] >> 6) << 4 and mn = (scales[s + 4] >> 4) |
 *     (scales[s] >> 6) << 4.
 *     value = (d * sc) * q - dmin * mn
 * Q5_K (176 bytes)  { f16 d; f16 dmin; uint8 scales[12]; uint8 qh[32]; uint8 qs[128]; }
 *     low 4 bits as Q4_K's; bit 4 of value 32s + l is bit s of qh[l];
 *     scales and value as Q4_K
 * Q6_K (210 bytes)  { uint8 ql[128]; uint8 qh[64]; int8 scales[16]; f16 d; }
 *     value v: half h = v / 128, j = (v % 128) / 32, l = v % 32; low 4
 *     bits: nibble j / 2 (low first) of ql[64h + 32 (j % 2) + l]; high 2
 *     bits: (qh[32h + l] >> 2j) & 3; code = q - 32 (-32 .. 31); the
 *     signed scale of sub-block v / 16 is scales[v / 16].
 *     value = (d * scale) * code
 */
#ifndef LLMQ_QUANT_GGML_BLOCKS_H
#define LLMQ_QUANT_GGML_BLOCKS_H

#include <stdint.h>
#include "../base/llmq-int.h"

#define LLMQ_GQK   32    /* values per block of Q8_0 .. Q5_1 */
#define LLMQ_GQK_K 256   /* values per super-block of the K types */

typedef struct { uint16_t d; int8_t qs[32]; } llmq_gblock_q8_0;
typedef struct { uint16_t d; uint8_t qs[16]; } llmq_gblock_q4_0;
typedef struct { uint16_t d, m; uint8_t qs[16]; } llmq_gblock_q4_1;
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; } llmq_gblock_q5_0;
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; } llmq_gblock_q5_1;
typedef struct { uint8_t scales[16]; uint8_t qs[64]; uint16_t d, dmin; } llmq_gblock_q2_k;
typedef struct { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; } llmq_gblock_q3_k;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; } llmq_gblock_q4_k;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; } llmq_gblock_q5_k;
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; } llmq_gblock_q6_k;
_Static_assert(sizeof(llmq_gblock_q8_0) == 34, "block_q8_0 is 34 bytes");
_Static_assert(sizeof(llmq_gblock_q4_0) == 18, "block_q4_0 is 18 bytes");
_Static_assert(sizeof(llmq_gblock_q4_1) == 20, "block_q4_1 is 20 bytes");
_Static_assert(sizeof(llmq_gblock_q5_0) == 22, "block_q5_0 is 22 bytes");
_Static_assert(sizeof(llmq_gblock_q5_1) == 24, "block_q5_1 is 24 bytes");
_Static_assert(sizeof(llmq_gblock_q2_k) == 84, "block_q2_K is 84 bytes");
_Static_assert(sizeof(llmq_gblock_q3_k) == 110, "block_q3_K is 110 bytes");
_Static_assert(sizeof(llmq_gblock_q4_k) == 144, "block_q4_K is 144 bytes");
_Static_assert(sizeof(llmq_gblock_q5_k) == 176, "block_q5_K is 176 bytes");
_Static_assert(sizeof(llmq_gblock_q6_k) == 210, "block_q6_K is 210 bytes");

/* The 6-bit scale sc and minimum mn of sub-block s (0..7) of a Q4_K / Q5_K
 * block's 12 packed scale bytes. */
static inline void llmq_gq_k4_scale_min(const uint8_t *sc12, int s, int *sc, int *mn)
{
    if (s < 4) {
        *sc = sc12[s] & 63;
        *mn = sc12[s + 4] & 63;
    } else {
        *sc = (sc12[s + 4] & 15) | (sc12[s - 4] >> 6) << 4;
        *mn = (sc12[s + 4] >> 4) | (sc12[s] >> 6) << 4;
    }
}

/* The 6-bit scale of sub-block s (0..15) of a Q3_K block's 12 packed
 * scale bytes, minus 32 (-32 .. 31). */
static inline int llmq_gq_k3_scale(const uint8_t *sc12, int s)
{
    int lo = s < 8 ? sc12[s] & 15 : sc12[s - 8] >> 4;
    int hi = (sc12[8 + s % 4] >> (2 * (s / 4))) & 3;
    return (lo | hi << 4) - 32;
}

/* Dequantize n values (n a multiple of the type's QK) from the blocks at
 * x (any alignment) into y[n]: one function per type, the formulas above.
 * Trusts n and the length of x; f16 scales that are Inf or NaN give Inf /
 * NaN values, never undefined behaviour. */
typedef void (*llmq_gq_dequant_fn)(const void *x, float *y, int64_t n);
void llmq_gq_dequant_q8_0(const void *x, float *y, int64_t n);
void llmq_gq_dequant_q4_0(const void *x, float *y, int64_t n);
void llmq_gq_dequant_q4_1(const void *x, float *y, int64_t n);
void llmq_gq_dequant_q5_0(const void *x, float *y, int64_t n);
void llmq_gq_dequant_q5_1(const void *x, float *y, int64_t n);
void llmq_gq_dequant_q2_k(const void *x, float *y, int64_t n);
void llmq_gq_dequant_q3_k(const void *x, float *y, int64_t n);
void llmq_gq_dequant_q4_k(const void *x, float *y, int64_t n);
void llmq_gq_dequant_q5_k(const void *x, float *y, int64_t n);
void llmq_gq_dequant_q6_k(const void *x, float *y, int64_t n);

/* The ten types in llmq_wtype's order (LLMQ_W_GQ8_0 first). */
#define LLMQ_GQ_COUNT 10
typedef struct {
    const char *name;          /* "q4_k" */
    uint32_t ggml_type;        /* ggml's type number (Q4_K = 12) */
    int qk;                    /* values per block */
    int block_bytes;
    llmq_gq_dequant_fn dequant;
    int n_f16;                 /* f16 fields of a block (d; d and m or dmin) */
    int f16_off[2];            /* their byte offsets in the block */
} llmq_gq_traits;
extern const llmq_gq_traits llmq_gq_types[LLMQ_GQ_COUNT];

/* The first of nblocks blocks of type t (its llmq_gq_types entry) whose
 * f16 scale or minimum is NaN or Inf, in *at; 0 if none. */
int llmq_gq_nonfinite(const llmq_gq_traits *t, const void *data, uint64_t nblocks, uint64_t *at);

#endif
