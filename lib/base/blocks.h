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
 */
#ifndef LLMQ_QUANT_BLOCKS_H
#define LLMQ_QUANT_BLOCKS_H

#include <stdint.h>
#include "llmq-int.h"

#define LLMQ_Q8_MAXQ   127
#define LLMQ_Q4_ZERO_SYM 8          /* symmetric Q4: stored code = q + 8 */

/* The group sizes of Q4 / Q3 (LLMQ_W_Q4): 32, 64 or 128 - the one place
 * that rule is written. */
static inline int llmq_q4_group_ok(int64_t g) { return g == 32 || g == 64 || g == 128; }

/* Set code j (0..15) of a row of LLMQ_W_Q4 codes: byte j / 2, low nibble for even j. */
static inline void llmq_q4_put_code(uint8_t *codes, int64_t j, int q)
{
    if (j & 1) codes[j / 2] = (uint8_t)((codes[j / 2] & 0x0f) | (q << 4));
    else codes[j / 2] = (uint8_t)((codes[j / 2] & 0xf0) | q);
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

#endif
