/*
 * ctensors.h - compressed-tensors checkpoints, the format llm-compressor
 * writes for vLLM: a Hugging Face checkpoint whose config.json holds
 * "quantization_config": {"quant_method": "compressed-tensors", ...}.
 *
 * llmq reads (here) three of its formats and writes (lib/export/ct_export.h)
 * the first two (man/llmq-verify.1, man/llmq-export.1 give the table):
 *
 *   pack-quantized, 4-bit int weights (W4A16), strategy group or channel,
 *   symmetric or not, per linear P (W [rows = out, cols = in]):
 *     P.weight_packed      I32 [rows, cols / 8]  element j of a row in bits
 *                          4 (j % 8).. of word j / 8, stored as q + 8
 *                          (q in [-8, 7]): the little-endian bytes are
 *                          LLMQ_W_Q4's code bytes exactly
 *     P.weight_scale       F16/BF16/F32 [rows, cols / group] (channel: [rows, 1])
 *     P.weight_zero_point  I32 [ceil(rows / 8), cols / group], asymmetric
 *                          only: zero point zp in [-8, 7] of row 8i + k in
 *                          bits 4k.. of word [i][g], stored as zp + 8
 *     P.weight_shape       I64 [2] = {rows, cols}
 *     value = (q - zp) * scale = (code - (zp + 8)) * scale
 *
 *   pack-quantized, 8-bit int weights, strategy channel, symmetric (W8A16):
 *     P.weight_packed      I32 [rows, cols / 4]  4 bytes q + 128 per word,
 *                          low byte first (read into LLMQ_W_Q8 codes)
 *     P.weight_scale, P.weight_shape as above ([rows, 1])
 *
 *   int-quantized, 8-bit int weights, strategy channel, symmetric (W8A8,
 *   activations dynamic per token, or W8A16):
 *     P.weight             I8 [rows, cols]
 *     P.weight_scale       F16/BF16/F32 [rows, 1]
 *     value = q * scale
 *
 *   nvfp4-pack-quantized, FP4 E2M1 weights in blocks of 16 with an E4M3
 *   scale each and an f32 global scale (strategy tensor_group, group_size
 *   16, symmetric: compressed-tensors' presets NVFP4A16 and NVFP4):
 *     P.weight_packed        U8 [rows, cols / 2]  two E2M1 codes per byte, the
 *                            even column in the low nibble, sign in bit 3,
 *                            bits 0-2 index {0, 0.5, 1, 1.5, 2, 3, 4, 6}:
 *                            LLMQ_W_NVFP4's codes (lib/base/blocks.h)
 *     P.weight_scale         F8_E4M3 [rows, cols / 16]  (0x7f, 0xff: NaN)
 *     P.weight_global_scale  F32 [1] = 448 * 6 / amax, finite, > 0
 *     P.input_global_scale   F32 [1], W4A4 (scheme NVFP4: input activations
 *                            4-bit float, dynamic "local") only
 *     value = fp4 * (E4M3(weight_scale) / weight_global_scale)
 *   read as LLMQ_W_NVFP4 with tscale = 1 / weight_global_scale (rounded
 *   once: a block's factor may differ from compressed-tensors' by a float32
 *   rounding or two).  W4A4 checkpoints run weight-only (activations in fp32), as
 *   vLLM runs them on GPUs without FP4 arithmetic; llmq_ct_name says so.
 */
#ifndef LLMQ_CTENSORS_H
#define LLMQ_CTENSORS_H

#include "safetensors.h"
#include "../lib/base/wmat.h"

/* What config.json's quantization_config says, checked.  Opaque. */
typedef struct llmq_ct llmq_ct;

/* If dir/config.json has a quantization_config with quant_method
 * "compressed-tensors", parse and check it into *ct (owned: llmq_ct_free);
 * else *ct = NULL.  A quantization_config llmq cannot run exactly (another
 * format, num_bits, type, strategy, actorder, a kv_cache_scheme, static or
 * asymmetric activations...) is LLMQ_EUNSUPPORTED; one that contradicts
 * itself or is malformed, LLMQ_EFORMAT; one line naming config.json. */
int llmq_ct_open(llmq_ct **ct, const char *dir, llmq_err *err);
void llmq_ct_free(llmq_ct *ct);

/* The quantized view of linear `prefix` ("model.layers.0.mlp.up_proj",
 * "lm_head") of shape [rows, cols] in compressed-tensors checkpoint c:
 * *found = 0 when the quantization_config leaves it float (ignored or not
 * targeted; then it must have no quantized tensors).  Views borrow c's
 * maps, except zero points (unpacked), scales not stored as aligned f16 /
 * f32, and scales of groups wider than 128 (repeated per 128, 64 or 32
 * columns: exact), which ct owns until llmq_ct_free.  Errors (one line
 * naming the file and tensor): LLMQ_EFORMAT for a missing tensor, a dtype
 * or shape that contradicts the config or weight_shape, a zero point out of
 * range, a global scale that is not positive; LLMQ_EUNSUPPORTED for a scale
 * f16 cannot hold exactly or a group that is not a multiple of 32 (NVFP4:
 * columns not a multiple of 32); LLMQ_ENONFINITE for a NaN/Inf scale (an
 * E4M3 NaN byte, a NaN/Inf global scale).  NVFP4 views borrow all. */
int llmq_ct_linear(llmq_ct *ct, const llmq_ckpt *c, const char *prefix, int64_t rows, int64_t cols,
                   llmq_wmat *w, int *found, llmq_err *err);

/* "ct-w4a16-g128-asym", "ct-w8a8", "ct-nvfp4a16", ... for reports (buf of
 * n bytes); a W4A4 NVFP4 checkpoint is "ct-nvfp4-w4a4-weight-only". */
void llmq_ct_name(const llmq_ct *ct, char *buf, size_t n);
/* 1 if the checkpoint asks for int8 activations, dynamic per token (W8A8). */
int llmq_ct_act_int8(const llmq_ct *ct);
/* 1 if it asks for NVFP4 activations too (W4A4), which llmq leaves float. */
int llmq_ct_act_fp4(const llmq_ct *ct);

#endif
