/*
 * runner.h - the fp32 forward pass of a Llama-family decoder with a KV cache.
 *
 * Prefill runs a window of tokens through OpenBLAS GEMMs; decode (one token)
 * uses the threaded GEMV kernels.  Activations are fp32; weights stay in
 * whatever storage the model has (see kernels.h).
 */
#ifndef LLMQ_RUNNER_H
#define LLMQ_RUNNER_H

#include "model.h"
#include "forward.h"
#include "base/pool.h"
#include "kvcache.h"

typedef struct llmq_runner llmq_runner;

/* A runner for m with room for max_ctx positions.  The pool (may be NULL)
 * is borrowed.  Errors: LLMQ_ENOMEM. */
int llmq_runner_new(llmq_runner **out, const llmq_model *m, int max_ctx, llmq_pool *pool, llmq_err *err);
void llmq_runner_free(llmq_runner *r);   /* accepts NULL */

/* Run tokens[0..n) at positions pos..pos+n-1; the cache must hold the pos
 * tokens before them (pos = 0 starts afresh).  logits: NULL, or room for
 * (n, vocab) floats when all_logits, else (vocab) for the last token.
 * Errors: LLMQ_EUSAGE (past max_ctx, token id out of range). */
int llmq_runner_forward(llmq_runner *r, const int32_t *tokens, int n, int pos,
                        float *logits, int all_logits, llmq_err *err);

/* Install an observer called with every linear input (NULL to remove). */
void llmq_runner_observe(llmq_runner *r, llmq_observer fn, void *ctx);

/* With on, each forward drops a layer's mapped weight pages once it has
 * run (llmq_model_release_layer): resident memory of one layer, not the
 * model, at the cost of reading them back on the next forward (from the
 * page cache when it holds them).  For passes over models near the size
 * of memory (calibrate); decode wants its weights resident. */
void llmq_runner_release_layers(llmq_runner *r, int on);

/* Forwards run layers 0..n_layers-1 only and leave the residual stream
 * after them (for statistics of a range of layers: calibrate --layers);
 * such a forward gives no logits.  Errors: LLMQ_EUSAGE (n_layers outside
 * 1..the model's). */
int llmq_runner_stop_after(llmq_runner *r, int n_layers, llmq_err *err);

/* How linear inputs are fed to the weights. */
typedef enum {
    LLMQ_ACT_FP = 0,      /* fp32 activations: weight-only quantization (W8A16) */
    LLMQ_ACT_INT8,        /* per-token dynamic symmetric int8, int8 x int8 -> int32 (W8A8) */
    LLMQ_ACT_INT8_STATIC, /* per-tensor static symmetric int8 (SmoothQuant's O3): one scale per
                             linear-input site and layer, set by llmq_runner_set_act_scales */
    LLMQ_ACT_BF16,        /* bf16 weights, prefill only: activations rounded to bf16, products
                             with AVX512-BF16's vdpbf16ps (kernels.h); decode stays fp32 */
    LLMQ_ACT_SAME         /* activations in the format of each quantized linear's weights
                             (W and A in one format, simulated: each token's input is
                             quantized and dequantized, then multiplied in fp32): int8 per
                             token (W8A8, as LLMQ_ACT_INT8), int4 in the weights' groups
                             (with zero points when the weights have them), MXINT8 and the
                             block formats in their blocks, an NV tensor scale per token;
                             float linears (an unquantized LM head) take fp32 */
} llmq_act_mode;

/* Set the activation mode.  Errors: LLMQ_EUSAGE when a mode needs int8
 * (or, for LLMQ_ACT_BF16, bf16) weights the model lacks. */
int llmq_runner_set_act(llmq_runner *r, llmq_act_mode mode, llmq_err *err);

/* The block scale rule LLMQ_ACT_SAME quantizes MXINT8 and MX / NV
 * activations with (default LLMQ_MX_SCALE_OCP): the weights' own, say. */
void llmq_runner_set_act_rule(llmq_runner *r, llmq_mx_rule rule);

/* Static activation scales for LLMQ_ACT_INT8_STATIC: scales[l * 4 + site]
 * for site LLMQ_SITE_QKV, _O, _GATEUP, _DOWN of layer l (n_layers * 4
 * floats, copied); codes are round(x / scale) clamped to [-127, 127].  A
 * scale <= 0 or non-finite falls back to per-token dynamic for that site.
 * Call before llmq_runner_set_act(LLMQ_ACT_INT8_STATIC), which refuses
 * (LLMQ_EUSAGE) without them; may be called again later.  Errors: LLMQ_ENOMEM. */
int llmq_runner_set_act_scales(llmq_runner *r, const float *scales, llmq_err *err);

/* Replace the fp32 KV cache by a quantized, sink-keeping or streaming one
 * (kvcache.h) for the forwards from position 0 on; cal may be NULL.  With
 * a window, positions run past max_ctx (the cache then holds max_ctx or
 * sinks + window of them), one token at a time once it evicts.
 * Errors: llmq_kv_new's. */
int llmq_runner_set_kv(llmq_runner *r, const llmq_kv_spec *spec, const llmq_kv_calib *cal, llmq_err *err);
/* The cache llmq_runner_set_kv made, or NULL. */
const llmq_kvcache *llmq_runner_kv(const llmq_runner *r);

int llmq_runner_max_ctx(const llmq_runner *r);
const llmq_model *llmq_runner_model(const llmq_runner *r);

#endif
