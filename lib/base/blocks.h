/*
 * blocks.h - storage of the quantized weight types, byte for byte.
 *
 * Every type is planar: a matrix W[rows][cols] (rows = out_features) is
 * stored as up to three arrays, all row-major, no padding, little-endian.
 * This is also what llmq_wmat's data / scales / zeros point at.
 *
 * LLMQ_W_Q8   per-output-channel symmetric int8
 *     data    int8    [rows][cols]        codes in [-127, 127] (-128 never written)
 *     scales  float32 [rows]              s_r = max_j |W[r][j]| / 127 (rounded up)
 *     value   W[r][j] = codes[r][j] * s_r
 *
 * LLMQ_W_Q4   group-wise int4 along cols, group g in {32, 64, 128}, g | cols
 *     data    uint8   [rows][cols / 2]    element j in byte j/2 of its row,
 *                                          low nibble = even j, high nibble = odd j
 *     scales  f16     [rows][cols / g]    IEEE binary16 bits (uint16)
 *     zeros   uint8   [rows][cols / g]    zero point 0..15, one byte each;
 *                                          NULL when symmetric
 *     value   asymmetric: (q - zeros[r][k]) * scales[r][k],  k = j / g
 *             symmetric:  (q - 8) * scales[r][k]
 *
 * LLMQ_W_Q3   group-wise int3 along cols, three bits per code; groups as
 *             LLMQ_W_Q4 (g in {32, 64, 128}, g | cols, so 32 | cols)
 *     data    uint8   [rows][cols * 3 / 8]  chunks of 32 columns, 12 bytes each:
 *                                          chunk c of a row (codes q_0 .. q_31
 *                                          of columns 32c .. 32c + 31) at byte
 *                                          12c of the row
 *       chunk bytes 0..7  "lo": byte i = (q_i & 3) | (q_{i+8} & 3) << 2
 *                                        | (q_{i+16} & 3) << 4 | (q_{i+24} & 3) << 6
 *       chunk bytes 8..11 "hi": a little-endian uint32 whose bit j is
 *                         bit 2 of q_j (q_j >> 2), j = 0..31
 *     scales  f16     [rows][cols / g]    IEEE binary16 bits (uint16)
 *     zeros   uint8   [rows][cols / g]    zero point 0..7, one byte each;
 *                                          NULL when symmetric
 *     value   asymmetric: (q - zeros[r][k]) * scales[r][k],  k = j / g
 *             symmetric:  (q - 4) * scales[r][k]   (llmq writes codes 1..7)
 *   Why this order: 16 dword lanes holding lo bytes 0..7 twice, shifted by
 *   0 (lanes 0-7) and 2 (lanes 8-15), hold the low bits of codes 0..15 in
 *   column order, by 4 and 6 those of codes 16..31; the hi word's halves
 *   are the same lanes' masks as they lie (and, broadcast and rotated right
 *   by j - 2 in lane j, put bit 2 of code j at bit 2).  Files written
 *   before LLMQ_W_Q3 existed hold int3 codes in the LLMQ_W_Q4 layout
 *   (symmetric ones around 8); they load as LLMQ_W_Q4.
 *
 * LLMQ_W_MX8  MXINT8 of the OCP Microscaling Formats (MX) v1.0 spec, blocks
 *             of 32 along cols, 32 | cols
 *     data    int8    [rows][cols]        MXINT8 elements: two's complement
 *                                          with an implicit scale of 2^-6
 *                                          (spec section 5), in [-127, 127]
 *     scales  uint8   [rows][cols / 32]   E8M0 shared scale X = 2^(e - 127)
 *                                          (section 5, scale data
 *                                          type); e = 255 (NaN) is
 *                                          never written
 *     value   W[r][j] = 2^(e - 127) * code * 2^-6  (section 5: X * P_i)
 *
 * Block formats (llmq_wtype_is_block): codes along cols, a block of B = 32
 * (MX) or 16 (NV) elements shares one scale byte; B | cols.
 *     data    uint8   [rows][cols / 2]    4-bit codes as LLMQ_W_Q4 stores them
 *                                          (low nibble = even j), or for
 *                                          MXFP8 [rows][cols], one per byte
 *     scales  uint8   [rows][cols / B]    E8M0 (MX) or FP8 E4M3 (NV) bits
 *     tscale  float32                     NV only: one per tensor
 *     value   MX: 2^(e - 127) * P(code)           (OCP MX v1.0 section 5)
 *             NV: (E4M3(s) * tscale) * P(code)    (the float product first)
 *   Elements P(code):
 *     MXFP4, NVFP4  FP4 E2M1 (OCP section 5.3.3): bit 3 sign, bits 2..1
 *                   exponent (bias 1), bit 0 mantissa: 0, 0.5, 1, 1.5, 2,
 *                   3, 4, 6 and their negatives
 *     MXINT4        two's complement int4 with an implicit scale of 2^-2,
 *                   as MXINT8 has 2^-6: code / 4, codes -7..7 (-8 never written)
 *     NVINT4        two's complement int4, codes -7..7 (-8 never written)
 *     MXFP8         FP8 E4M3 (OCP OFP8): bit 7 sign, 4 exponent bits (bias
 *                   7), 3 mantissa bits; max 448; 0x7f / 0xff (NaN) never
 *                   written
 */
#ifndef LLMQ_QUANT_BLOCKS_H
#define LLMQ_QUANT_BLOCKS_H

#include <stdint.h>
#include "llmq-int.h"
#include "wmat.h"

#define LLMQ_Q8_MAXQ   127
#define LLMQ_Q4_ZERO_SYM 8          /* symmetric Q4: stored code = q + 8 */

/* The group sizes of Q4 / Q3 (LLMQ_W_Q4, LLMQ_W_Q3): 32, 64 or 128 - the one place
 * that rule is written. */
static inline int llmq_q4_group_ok(int64_t g) { return g == 32 || g == 64 || g == 128; }

/* Set code j (0..15) of a row of LLMQ_W_Q4 codes: byte j / 2, low nibble for even j. */
static inline void llmq_q4_put_code(uint8_t *codes, int64_t j, int q)
{
    if (j & 1) codes[j / 2] = (uint8_t)((codes[j / 2] & 0x0f) | (q << 4));
    else codes[j / 2] = (uint8_t)((codes[j / 2] & 0xf0) | q);
}

#define LLMQ_Q3_ZERO_SYM 4          /* symmetric Q3: stored code = q + 4 */
#define LLMQ_Q3_CHUNK 32            /* columns per LLMQ_W_Q3 chunk */

/* One LLMQ_W_Q3 chunk of 32 codes as it lies in a row (layout above). */
typedef struct {
    uint8_t lo[8];                  /* low 2 bits of codes i, i+8, i+16, i+24 in byte i */
    uint8_t hi[4];                  /* LE uint32: bit j = bit 2 of code j */
} llmq_q3_chunk;
_Static_assert(sizeof(llmq_q3_chunk) == 12, "q3 chunk has padding");

/* Bytes of a row of cols LLMQ_W_Q3 codes (cols a multiple of 32). */
static inline int64_t llmq_q3_row_bytes(int64_t cols) { return cols / LLMQ_Q3_CHUNK * (int64_t)sizeof(llmq_q3_chunk); }

/* Code j (0..7) of a row of LLMQ_W_Q3 codes. */
static inline int llmq_q3_get_code(const uint8_t *row, int64_t j)
{
    const uint8_t *c = row + j / LLMQ_Q3_CHUNK * (int64_t)sizeof(llmq_q3_chunk);
    int i = (int)(j % LLMQ_Q3_CHUNK);
    return (c[i & 7] >> (2 * (i >> 3)) & 3) | (c[8 + (i >> 3)] >> (i & 7) & 1) << 2;
}

/* Set code j (q in 0..7) of a row of LLMQ_W_Q3 codes. */
static inline void llmq_q3_put_code(uint8_t *row, int64_t j, int q)
{
    uint8_t *c = row + j / LLMQ_Q3_CHUNK * (int64_t)sizeof(llmq_q3_chunk);
    int i = (int)(j % LLMQ_Q3_CHUNK), sh = 2 * (i >> 3), hb = 8 + (i >> 3), hs = i & 7;
    c[i & 7] = (uint8_t)((c[i & 7] & ~(3 << sh)) | (q & 3) << sh);
    c[hb] = (uint8_t)((c[hb] & ~(1 << hs)) | (q >> 2 & 1) << hs);
}

#define LLMQ_MX8_BLOCK 32           /* OCP MX v1.0: k = 32 elements per scale */
#define LLMQ_MX8_ELEM_SHIFT 6       /* MXINT8 element = code * 2^-6 */
#define LLMQ_E8M0_NAN  255

/* The element types of the arrays above; asserted so a port to an odd ABI
 * fails to compile rather than silently changing the on-disk bytes. */
typedef int8_t   llmq_q8_code;      /* LLMQ_W_Q8 data element */
typedef float    llmq_q8_scale;     /* LLMQ_W_Q8 per-row scale */
typedef uint8_t  llmq_q4_byte;      /* two LLMQ_W_Q4 codes */
typedef uint16_t llmq_q4_scale;     /* f16 bits */
typedef uint8_t  llmq_q4_zero;
typedef int8_t   llmq_mx8_code;
typedef uint8_t  llmq_mx8_scale;    /* E8M0 */
_Static_assert(sizeof(llmq_q8_scale) == 4, "q8 scale is float32");
_Static_assert(sizeof(llmq_q4_scale) == 2, "q4 scale is f16");
_Static_assert(sizeof(llmq_q4_byte) == 1 && sizeof(llmq_q4_zero) == 1, "q4 bytes");
_Static_assert(sizeof(llmq_mx8_code) == 1 && sizeof(llmq_mx8_scale) == 1, "mx8 bytes");

/* One Q4 group of 32 as it lies in a row (the smallest group): 16 code
 * bytes.  The scale and zero live in their own arrays, not next to it. */
typedef struct { uint8_t qs[32 / 2]; } llmq_q4_group32;
_Static_assert(sizeof(llmq_q4_group32) == 16, "q4 group has padding");
/* One MX8 block of one row: 32 int8 codes (its E8M0 scale is in scales). */
typedef struct { int8_t qs[LLMQ_MX8_BLOCK]; } llmq_mx8_block;
_Static_assert(sizeof(llmq_mx8_block) == 32, "mx8 block has padding");

/* 2^(e - 127) * 2^-6: the factor that turns an MX8 integer code into its
 * value.  Exact for every e < 255 (the smallest, 2^-133, is a float
 * subnormal); e = 255 gives NaN. */
static inline float llmq_mx8_code_scale(uint8_t e)
{
    if (e == LLMQ_E8M0_NAN) return llmq_bits_f32(0x7fc00000u);
    if (e > LLMQ_MX8_ELEM_SHIFT) return llmq_bits_f32((uint32_t)(e - LLMQ_MX8_ELEM_SHIFT) << 23);
    return llmq_bits_f32(1u << (e + 16));        /* 2^(e-133) = 2^(e+16) * 2^-149 */
}

/* The elements of the 4-bit block formats by code (blocks.h's table above). */
static const float llmq_e2m1_values[16] = { 0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                            -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f };
static const float llmq_int4_values[16] = { 0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1 };
static const float llmq_mxint4_values[16] = { 0.0f, 0.25f, 0.5f, 0.75f, 1.0f, 1.25f, 1.5f, 1.75f,
                                              -2.0f, -1.75f, -1.5f, -1.25f, -1.0f, -0.75f, -0.5f, -0.25f };

/* The element table of a 4-bit block type (llmq_wtype_is_block4). */
static inline const float *llmq_block4_values(int t)
{
    return t == LLMQ_W_MXINT4 ? llmq_mxint4_values : t == LLMQ_W_NVINT4 ? llmq_int4_values : llmq_e2m1_values;
}

/* "mxfp4", "mxint4", "nvfp4", "nvint4", "mxfp8": a block type's name in
 * scheme names, --format and messages. */
static inline const char *llmq_block_name(llmq_wtype t)
{
    static const char *n[] = { "mxfp4", "mxint4", "nvfp4", "nvint4", "mxfp8" };
    _Static_assert(sizeof n / sizeof n[0] == LLMQ_W_MXFP8 + 1 - LLMQ_W_MXFP4, "a name for every block type");
    return llmq_wtype_is_block(t) ? n[t - LLMQ_W_MXFP4] : "?";
}

/* Elements per scale of a block type: 16 for NV, else 32. */
static inline int llmq_block_size(int t) { return llmq_wtype_is_nv((llmq_wtype)t) ? 16 : 32; }

/* E8M0, the OCP MX v1.0 scale type (section 5): 2^(e - 127); e = 255 is NaN. */
static inline float llmq_e8m0_to_f32(uint8_t e)
{
    if (e == 0) return llmq_bits_f32(0x00400000u);   /* 2^-127, a float subnormal */
    if (e == LLMQ_E8M0_NAN) return llmq_bits_f32(0x7fc00000u);
    return llmq_bits_f32((uint32_t)e << 23);
}

#define LLMQ_E4M3_MAX 448.0f
/* Whether an E4M3 byte is NaN (0x7f, 0xff; E4M3 has no infinities). */
static inline int llmq_e4m3_is_nan(uint8_t b) { return (b & 0x7f) == 0x7f; }
/* FP8 E4M3 to float, exact: normals 2^(e - 7) (1 + m / 8), subnormals
 * m * 2^-9. */
static inline float llmq_e4m3_to_f32(uint8_t b)
{
    if (llmq_e4m3_is_nan(b)) return llmq_bits_f32(0x7fc00000u);
    uint32_t e = (b >> 3) & 15u, m = b & 7u, s = (uint32_t)(b >> 7) << 31;
    if (e == 0) {
        float v = (float)m * 0x1p-9f;
        return s ? -v : v;
    }
    return llmq_bits_f32(s | ((e + 120u) << 23) | (m << 20));
}

/* The factor block scale byte sc of block type t stands for: E4M3(sc) *
 * tscale (NV, the float product) or 2^(sc - 127) (MX). */
static inline float llmq_block_factor(llmq_wtype t, uint8_t sc, float tscale)
{
    return llmq_wtype_is_nv(t) ? llmq_e4m3_to_f32(sc) * tscale : llmq_e8m0_to_f32(sc);
}

/* The element value of code c of block type t, before the block factor. */
static inline float llmq_block_value(llmq_wtype t, uint8_t c)
{
    return t == LLMQ_W_MXFP8 ? llmq_e4m3_to_f32(c) : llmq_block4_values(t)[c & 15];
}

#endif
