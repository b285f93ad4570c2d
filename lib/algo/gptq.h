/*
 * gptq.h - error-compensating rounding onto a fixed group-wise int4/int3 grid
 * (GPTQ, Frantar et al. 2022, "OPTQ"), used by awq after its scale and clip
 * searches.
 *
 * The grid of each (row, group) - f16 scale and zero point - is exactly what
 * round-to-nearest of the clipped weights would choose (llmq_q4_quantize_row
 * of the values clamped to the group's clip), so the packed layout and every
 * reader stay as they are: only the codes differ.  Columns are then rounded
 * one at a time, those with the largest inputs (diagonal of H) first, and
 * each rounding error is spread over the columns not yet rounded, weighted
 * by the inverse of the input's Gram matrix H = X^T X:
 * this minimises |(W - Q) X^T|^2 over the calibration tokens column by
 * column instead of |W - Q|^2 element by element.  4-bit symmetric codes
 * may use -8 (code 0) as well as -7..7.
 *
 * The grid may also be an MX / NV block format (llmq_gptq_quantize_block):
 * the NV tensor scale is computed over the whole clipped matrix, then each
 * row's scale bytes are round to nearest's of the clipped row
 * (llmq_block_quantize_row), and each element is rounded to the nearest
 * value of the element type (saturating, as the packer) at its block's
 * factor, the errors spread as above.
 */
#ifndef LLMQ_ALGO_GPTQ_H
#define LLMQ_ALGO_GPTQ_H

#include "../base/llmq-int.h"
#include "../base/pool.h"
#include "../base/wmat.h"

#define LLMQ_GPTQ_DAMP_DEFAULT 0.01   /* fraction of the mean diagonal added to H */

typedef struct {
    int bits;        /* 4 or 3 (3-bit codes in the int4 nibble layout) */
    int group;       /* 32, 64 or 128 */
    int sym;
} llmq_gptq_cfg;

typedef struct {
    double loss;        /* mean over rows of (W - Q) H (W - Q)^T, H = the damped Gram / count */
    double damp;        /* the damping that made H factorable (raised from the one asked if needed) */
} llmq_gptq_stats;

/* What one input's Gram matrix gives every linear reading that input (awq's
 * q, k and v share one; gate and up share one): the column order, the
 * factor of the damped inverse, H itself for llmq_gptq_loss. */
typedef struct llmq_gptq_h llmq_gptq_h;

/* gram (cols, cols) double, upper triangle (row-major) holds sum_t x_t x_t^T
 * over `count` tokens of the input as the source sees it; col_div (cols) or
 * NULL: the weights' input is x / col_div (awq's folded scales), so H =
 * gram / count is scaled by them.  damp > 0: that fraction of the mean
 * diagonal is added before inverting, raised tenfold (up to three times)
 * while H is not positive definite.  Errors: LLMQ_EUSAGE, LLMQ_ENOMEM,
 * LLMQ_ENONFINITE (a non-finite entry, or no damping makes it factorable). */
int llmq_gptq_h_new(llmq_gptq_h **out, const double *gram, int64_t cols, double count, const float *col_div,
                    double damp, llmq_err *err);
void llmq_gptq_h_free(llmq_gptq_h *h);        /* accepts NULL */
double llmq_gptq_h_damp(const llmq_gptq_h *h);  /* the damping used */

/* w (rows, h's cols) fp32: the weights, overwritten (scratch).  clip (rows,
 * cols / group, 2) or NULL: per group the upper and lower clip of the grid
 * (awq.h).  Writes codes (rows, cols / 2; two per byte, low nibble first),
 * scales (rows, cols / group) f16, zeros (rows, cols / group; NULL when
 * sym) - the packer's int4 layout - and, if deq is not NULL, the
 * dequantized weights (rows, cols).  Errors: LLMQ_EUSAGE, LLMQ_ENOMEM. */
int llmq_gptq_quantize(llmq_pool *pool, const llmq_gptq_cfg *q, const llmq_gptq_h *h, float *w, int64_t rows,
                       const float *clip, uint8_t *codes, uint16_t *scales, uint8_t *zeros, float *deq,
                       llmq_gptq_stats *st, llmq_err *err);

/* The same onto the grid of block format t (LLMQ_W_MXFP4 .. LLMQ_W_MXFP8)
 * with scale rule rule; clip per block (rows, cols / B, 2), B =
 * llmq_block_size(t).  Writes codes (rows, cols / 2) for the 4-bit types,
 * (rows, cols) for MXFP8, scales (rows, cols / B) scale bytes and *tscale
 * (NV: llmq_block_tscale of the clipped matrix's max |w|; MX: 1): what
 * llmq_block_quantize of the clipped weights writes, but the codes.  w
 * must be finite.  Errors: LLMQ_EUSAGE, LLMQ_ENOMEM. */
int llmq_gptq_quantize_block(llmq_pool *pool, llmq_wtype t, llmq_mx_rule rule, const llmq_gptq_h *h, float *w,
                             int64_t rows, const float *clip, uint8_t *codes, uint8_t *scales, float *tscale, float *deq,
                             llmq_gptq_stats *st, llmq_err *err);

/* Mean over rows of (w - q) H (w - q)^T with h's H, no damping: the output
 * error |(W - Q) x|^2 per row, averaged over the calibration tokens.  -1 on
 * allocation failure. */
double llmq_gptq_loss(const llmq_gptq_h *h, const float *w, const float *q, int64_t rows);

#endif
