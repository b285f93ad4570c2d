/*
 * quant.h - scalar reference quantizers and dequantizers for the packed
 * weight types (LLMQ_W_Q8, LLMQ_W_Q4, LLMQ_W_MX8).  Storage is described
 * byte for byte in blocks.h; a quantized matrix goes straight into an
 * llmq_wmat for the kernels (lib/kernels/kernels.h).
 *
 * Matrix functions check their input and return an llmq_status: a NaN or
 * Inf gives LLMQ_ENONFINITE naming the tensor, row and column; a shape the
 * format cannot hold gives LLMQ_EUNSUPPORTED.  Every check runs before the
 * first output byte is written, so on error the outputs are untouched.
 * Row functions trust their input (finite, shape already checked); given a
 * NaN anyway they write some code, never invoke undefined behaviour.
 *
 * Every quantizer here bounds the error of a finite input: |w - deq(q(w))|
 * <= scale / 2 for every element that does not clip, and says when
 * clipping can happen.
 */
#ifndef LLMQ_QUANT_H
#define LLMQ_QUANT_H

#include "../base/blocks.h"
#include "../base/wmat.h"

/* LLMQ_ENONFINITE naming tensor 'name' and the first NaN/Inf's row and
 * column, or LLMQ_OK.  w: [rows][cols]. */
int llmq_quant_check_finite(const float *w, int64_t rows, int64_t cols, const char *name, llmq_err *err);

/* ---- INT8, per output channel, symmetric ---- */

/* codes[rows][cols], scales[rows]: s_r = max|w_r| / 127, rounded up to the
 * next float so no code exceeds 127; codes = round(w / s_r) (ties to even).
 * An all-zero row gets s = 0 and codes 0.  Never clips, except by less than
 * one ulp of s for |w| within ulps of FLT_MAX, where rounding s up would
 * make 127 * s overflow. */
int llmq_q8_quantize(const float *w, int64_t rows, int64_t cols, int8_t *codes, float *scales,
                     const char *name, llmq_err *err);
void llmq_q8_quantize_row(const float *w, int64_t cols, int8_t *codes, float *scale);
/* out[cols] = codes * scale (the kernels' values exactly). */
void llmq_q8_dequantize_row(const int8_t *codes, float scale, int64_t cols, float *out);

/* ---- INT4, group-wise along cols ---- */

/* Asymmetric (sym = 0; GPTQ's convention, Frantar et al. 2022, quant.py):
 * the group's range is widened to include 0, [mn, mx] = [min(0, min w),
 * max(0, max w)], so the zero point needs no clamping; s = (mx - mn) / 15
 * rounded UP to an f16, z = round(-mn / s) in [0, 15],
 * q = clamp(round(w / s) + z, 0, 15), value (q - z) * s.
 * Symmetric (sym = 1, zeros NULL): s = max|w| / 7 rounded up to an f16,
 * q = round(w / s) + 8 in [1, 15] (code 0, i.e. -8, is never written, so the
 * grid is symmetric), value (q - 8) * s.
 * Rounding s up keeps every code in range: error <= s / 2 for all elements.
 * f16 limits: s below the smallest f16 subnormal (2^-24) rounds up to it
 * (tiny groups keep their sign and rough size rather than becoming 0);
 * s above 65504 is clamped to 65504: the asymmetric zero point is then
 * placed at 0's proportional position in [mn, mx] (15 * -mn / (mx - mn))
 * and elements outside what 16 codes of 65504 cover clip at both ends.  An all-zero group gets s = 0, z = 0, codes 0.
 *
 * clip (NULL = none): clip[r * (cols / group) + k] >= 0 is a max |w| for
 * group k of row r (the range AWQ's clipping search picks:
 * Lin et al. 2023, llm-awq auto_clip):
 * elements are clamped to [-clip, clip] before quantization; +Inf allows all.
 *
 * codes[rows][cols / 2], scales[rows][cols / group] (f16 bits),
 * zeros[rows][cols / group] (asymmetric only; NULL when sym).
 * group must be 32, 64 or 128 and divide cols. */
int llmq_q4_quantize(const float *w, int64_t rows, int64_t cols, int group, int sym, const float *clip,
                     uint8_t *codes, uint16_t *scales, uint8_t *zeros, const char *name, llmq_err *err);
/* One row: codes[cols / 2], scales / zeros / clip [cols / group]. */
/* Clamp each group g of a row into [-clip[2g + 1], clip[2g]]: a clip pair
 * per group (awq's upper end and negated lower end; +Inf = none). */
void llmq_q4_clip_row(float *row, int64_t cols, int group, const float *clip);
void llmq_q4_quantize_row(const float *w, int64_t cols, int group, int sym, const float *clip,
                          uint8_t *codes, uint16_t *scales, uint8_t *zeros);
/* zeros NULL = symmetric. */
void llmq_q4_dequantize_row(const uint8_t *codes, const uint16_t *scales, const uint8_t *zeros,
                            int64_t cols, int group, float *out);
/* quantize then dequantize one row (for clip / scale searches): out[cols]. */
void llmq_q4_fake_row(const float *w, int64_t cols, int group, int sym, const float *clip, float *out);

/* ---- MXINT8 (OCP Microscaling Formats v1.0), blocks of 32 ---- */

/* codes[rows][cols], scales[rows][cols / 32] (E8M0), value
 * 2^(e - 127) * code * 2^-6.  cols must be a multiple of 32.  Exponents
 * outside E8M0 are clamped: a block with amax < 2^-127 gets e = 0 (coarser,
 * never clips); under CEIL a block with amax > 127 * 2^121 gets e = 254 and
 * clips.  An all-zero block gets e = 0 and codes 0. */
int llmq_mx8_quantize(const float *w, int64_t rows, int64_t cols, llmq_mx_rule rule,
                      int8_t *codes, uint8_t *scales, const char *name, llmq_err *err);
void llmq_mx8_quantize_row(const float *w, int64_t cols, llmq_mx_rule rule, int8_t *codes, uint8_t *scales);
void llmq_mx8_dequantize_row(const int8_t *codes, const uint8_t *scales, int64_t cols, float *out);

/* ---- MX / NV block formats (LLMQ_W_MXFP4 .. LLMQ_W_MXFP8), microscale.c ----
 *
 * Storage and element values: blocks.h.  Elements are rounded to nearest,
 * ties to even, saturating at the element type's largest magnitude (6 for
 * E2M1, 7 / 4 for MXINT4, 7 for NVINT4, 448 for E4M3).
 *
 * Block scales, rule LLMQ_MX_SCALE_OCP:
 *   MX: X = 2^(floor(log2 amax) - emax_elem) (OCP MX v1.0 section 6.3;
 *       emax_elem = 2 for E2M1, 8 for E4M3, 0 for MXINT4 as for MXINT8),
 *       the exponent clamped to E8M0's [-127, 127].  Elements of a block
 *       whose amax is near the next power of two clip (up to 2^emax_elem *
 *       1.33 for E2M1: 7.99 stored as 6).
 *   NV: tscale = amax(tensor) / (448 * elem_max) (float), and each block's
 *       E4M3 scale = amax(block) / (elem_max * tscale) rounded to nearest,
 *       as NVIDIA's NVFP4 recipe and llm-compressor compute it.
 * Rule LLMQ_MX_SCALE_CEIL: the smallest scale of the scale type at which
 * nothing in the block clips (MX: 2^ceil(log2(amax / elem_max)); NV: the
 * E4M3 value rounded up).
 * A block of zeros gets scale byte 0 and codes 0.
 *
 * codes: [rows][cols / 2] (4-bit types) or [rows][cols] (MXFP8);
 * scales [rows][cols / B], B = llmq_block_size(t); *tscale is set (1 for
 * MX types).  cols must be a multiple of B. */
int llmq_block_quantize(llmq_wtype t, const float *w, int64_t rows, int64_t cols, llmq_mx_rule rule,
                        uint8_t *codes, uint8_t *scales, float *tscale, const char *name, llmq_err *err);
void llmq_block_quantize_row(llmq_wtype t, const float *w, int64_t cols, llmq_mx_rule rule, float tscale,
                             uint8_t *codes, uint8_t *scales);
/* out[cols]: the values the kernels use (blocks.h). */
void llmq_block_dequantize_row(llmq_wtype t, const uint8_t *codes, const uint8_t *scales, float tscale,
                               int64_t cols, float *out);
/* NV tensor scale for a tensor with max |w| = amax: amax / (448 *
 * elem_max), 1 for amax 0, never 0. */
float llmq_block_tscale(llmq_wtype t, float amax);
/* Quantize then dequantize one row as its own tensor (activations: the NV
 * tensor scale from this row's amax): out[cols]; codes, scales: scratch of
 * the row's sizes. */
void llmq_block_fake_row(llmq_wtype t, const float *w, int64_t cols, llmq_mx_rule rule, uint8_t *codes,
                         uint8_t *scales, float *out);
/* The code of block type t nearest v, an element already divided by its
 * block factor: the packer's element rounding (gptq.c rounds with it too). */
uint8_t llmq_block_code(llmq_wtype t, double v);
/* Element encoders: nearest, ties to even, saturating (6, 448); NaN -> 0. */
uint8_t llmq_e2m1_encode(float v);
uint8_t llmq_e4m3_encode(float v);

/* The smallest f16 >= s, for 0 < s (65504 for s >= 65504): the group scale
 * rule of int4.c, which AWQ's search imitates. */
uint16_t llmq_f16_ceil(float s);

/* ---- INT3 (int4.c) ----
 * The quantizers write 3-bit codes one per nibble exactly as LLMQ_W_Q4
 * stores its codes (the layout AWQ / GPTQ search in and hand to pack);
 * llmq_q3_pack turns them into LLMQ_W_Q3 (three bits per code, blocks.h),
 * what pack writes and the Q3 kernels run.  Asymmetric: [mn, mx] holds 0,
 * s = (mx - mn) / 7 rounded up to an f16, z = round(-mn / s) in [0, 7],
 * q = clamp(round(w / s) + z, 0, 7), value (q - z) * s.  Symmetric:
 * s = max|w| / 3 rounded up, q = round(w / s) + 8 in [5, 11], value
 * (q - 8) * s; LLMQ_W_Q3 stores q - 4 (1..7, value (q' - 4) * s, the same
 * number).  f16 limits, clip and errors as llmq_q4_quantize. */
int llmq_q3_quantize(const float *w, int64_t rows, int64_t cols, int group, int sym, const float *clip,
                     uint8_t *codes, uint16_t *scales, uint8_t *zeros, const char *name, llmq_err *err);
void llmq_q3_quantize_row(const float *w, int64_t cols, int group, int sym, const float *clip,
                          uint8_t *codes, uint16_t *scales, uint8_t *zeros);
void llmq_q3_fake_row(const float *w, int64_t cols, int group, int sym, const float *clip, float *out);

/* Nibble-layout int3 codes nib[rows][cols / 2] (as llmq_q3_quantize writes
 * them) to LLMQ_W_Q3 bytes out[rows][cols * 3 / 8]; out may be nib (the
 * conversion runs front to back and never overtakes its input).
 * Symmetric codes move from around 8 to around 4.  cols must be a multiple
 * of 32.  A code outside 0..7 (asymmetric) or 4..11 (symmetric) is
 * LLMQ_EINTERNAL naming tensor `name`: the quantizers never write one. */
int llmq_q3_pack(const uint8_t *nib, int64_t rows, int64_t cols, int sym, uint8_t *out, const char *name,
                 llmq_err *err);
/* The inverse: LLMQ_W_Q3 bytes to nibble-layout codes nib[rows][cols / 2]
 * (symmetric ones around 8 again).  Distinct buffers. */
void llmq_q3_unpack(const uint8_t *q3, int64_t rows, int64_t cols, int sym, uint8_t *nib);

#endif
