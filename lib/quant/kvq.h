/*
 * kvq.h - row quantizers of the KV cache (lib/kvcache.c): b-bit codes,
 * 2 <= b <= 8, packed little-endian into a bit stream, uniform or on a
 * non-uniform codebook, with a per-element range (keys: one range per
 * channel, calibrated before RoPE as KVQuant does, or shared by a group
 * of tokens as KIVI does) or a per-group range (values: per token, groups
 * of channels, as both papers do).
 *
 * A range is (lo, step) for uniform codes: value = lo + step * code; for
 * a codebook of 2^b levels in [0, 1]: value = lo + step * level[code],
 * step being the range's width.  Codes are the nearest representable
 * value; a value outside the range clamps to its end.  These are the
 * scalar oracles and what the cache runs; they trust their input
 * (finite), and given a NaN anyway write some code.
 */
#ifndef LLMQ_QUANT_KVQ_H
#define LLMQ_QUANT_KVQ_H

#include "../base/llmq-int.h"

#define LLMQ_KVQ_MAX_BITS 8

/* Bytes of n codes of b bits. */
static inline size_t llmq_kvq_row_bytes(int n, int bits) { return ((size_t)n * (size_t)bits + 7) / 8; }

/* f16 to f32, exact as llmq_f16_to_f32, without branches: for the
 * cache's loops that vectorize.  The 15 bits shifted into an f32 are the
 * value times 2^-112 (subnormals included), scaled back exactly; an all
 * ones exponent is Inf or NaN. */
static inline float llmq_kvq_f16(uint16_t h)
{
    float f = llmq_bits_f32((uint32_t)(h & 0x7fff) << 13) * 0x1p112f;
    uint32_t u = llmq_f32_bits(f) | ((h & 0x7c00) == 0x7c00 ? 0x7f800000u : 0u);
    return llmq_bits_f32(u | (uint32_t)(h & 0x8000) << 16);
}

/* Uniform codes of 8, 4 or 2 bits, n a multiple of 8 / bits (whole
 * bytes), to y = lo + step * code: per-element ranges (lo[i], step[i]),
 * or one range (_1).  Inline, so a caller's loop over rows vectorizes
 * with them. */
static inline __attribute__((always_inline)) void llmq_kvq_deq_row(const uint8_t *in, int n, int bits, const float *lo,
                                                                   const float *step, float *y)
{
    if (bits == 8) {
        for (int i = 0; i < n; i++) y[i] = lo[i] + step[i] * (float)in[i];
    } else if (bits == 4) {
        for (int i = 0; i < n / 2; i++) {
            y[2 * i] = lo[2 * i] + step[2 * i] * (float)(in[i] & 15);
            y[2 * i + 1] = lo[2 * i + 1] + step[2 * i + 1] * (float)(in[i] >> 4);
        }
    } else {
        for (int i = 0; i < n / 4; i++)
            for (int e = 0; e < 4; e++) y[4 * i + e] = lo[4 * i + e] + step[4 * i + e] * (float)((in[i] >> (2 * e)) & 3);
    }
}

static inline __attribute__((always_inline)) void llmq_kvq_deq_row1(const uint8_t *in, int n, int bits, float lo,
                                                                    float step, float *y)
{
    if (bits == 8) {
        for (int i = 0; i < n; i++) y[i] = lo + step * (float)in[i];
    } else if (bits == 4) {
        for (int i = 0; i < n / 2; i++) {
            y[2 * i] = lo + step * (float)(in[i] & 15);
            y[2 * i + 1] = lo + step * (float)(in[i] >> 4);
        }
    } else {
        for (int i = 0; i < n / 4; i++)
            for (int e = 0; e < 4; e++) y[4 * i + e] = lo + step * (float)((in[i] >> (2 * e)) & 3);
    }
}

/* Whether n codes of b bits take whole bytes at widths the two above read. */
static inline int llmq_kvq_whole_bytes(int n, int bits)
{
    return (bits == 8 || bits == 4 || bits == 2) && n % (8 / bits) == 0;
}

/* codes[0..n) (each < 2^bits) into a bit stream of llmq_kvq_row_bytes. */
void llmq_kvq_pack(const uint8_t *codes, int n, int bits, uint8_t *out);
void llmq_kvq_unpack(const uint8_t *in, int n, int bits, uint8_t *codes);

/* Element-wise ranges (lo[i], step[i]).  book: NULL for uniform codes, or
 * 2^bits ascending levels in [0, 1].  out: llmq_kvq_row_bytes(n, bits). */
void llmq_kvq_quantize(const float *x, int n, const float *lo, const float *step, const float *book,
                       int bits, uint8_t *out);
void llmq_kvq_dequantize(const uint8_t *in, int n, const float *lo, const float *step, const float *book,
                         int bits, float *y);

/* A group's range from its values: lo = min, step = (max - min) / (2^bits
 * - 1) for uniform codes or max - min for a codebook, both rounded to f16
 * (what is stored: par[0] = f16 step, par[1] = f16 lo) with the step
 * rounded up so the range still covers max.  x: n values. */
void llmq_kvq_group_range(const float *x, int n, int stride, int bits, int book, uint16_t par[2]);

/* Groups of `group` consecutive elements (the last may be shorter), each
 * with its own range from llmq_kvq_group_range: par gets 2 f16 per group. */
void llmq_kvq_quantize_groups(const float *x, int n, int group, const float *book, int bits,
                              uint8_t *out, uint16_t *par);
void llmq_kvq_dequantize_groups(const uint8_t *in, int n, int group, const uint16_t *par,
                                const float *book, int bits, float *y);

/* A codebook of 2^bits ascending levels in [0, 1] for n samples u in
 * [0, 1]: 1-D k-means (Lloyd's iterations from the uniform levels, a
 * level without samples left where it was), unweighted: the squared error
 * of a value is what each sample costs.  Errors: none (n may be 0: the
 * uniform levels). */
void llmq_kvq_fit_codebook(const float *u, int64_t n, int bits, float *book);

#endif
