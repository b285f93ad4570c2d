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
