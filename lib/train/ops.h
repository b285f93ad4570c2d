/*
 * ops.h - forward and backward passes of the decoder's ops, for training.
 *
 * Every tensor is fp32, row-major, one sequence of T tokens at a time
 * (rows = tokens).  Backward functions ACCUMULATE into parameter gradients
 * (dW, db, dw) and, where a flag says so, into input gradients, so that one
 * activation that feeds several ops (the normed input of q/k/v) sums its
 * gradients.  Matmuls are OpenBLAS sgemm.  Each backward is checked against
 * finite differences in tests/unit/t-grad.c.
 */
#ifndef LLMQ_TRAIN_OPS_H
#define LLMQ_TRAIN_OPS_H

#include "../base/llmq-int.h"
#include "../../formats/config.h"

/* ---- embedding ---- */
/* x[t] = E[tok[t]] for t < T; E (vocab, H).  Ids must be in range. */
void llmq_op_embed_fwd(const float *E, int H, const int32_t *tok, int T, float *x);
/* dE[tok[t]] += dx[t]. */
void llmq_op_embed_bwd(float *dE, int H, const int32_t *tok, int T, const float *dx);

/* ---- RMSNorm: y = w * x / sqrt(mean(x^2) + eps) ---- */
/* x, y (T, H); rinv (T, or NULL) gets 1/sqrt(mean(x^2)+eps) for the backward. */
void llmq_op_rmsnorm_fwd(const float *x, const float *w, int T, int H, float eps, float *y, float *rinv);
/* dx += d/dx, dw += d/dw (dw may be NULL). */
void llmq_op_rmsnorm_bwd(const float *x, const float *w, const float *rinv, const float *dy,
                         int T, int H, float *dx, float *dw);

/* ---- linear: Y = X W^T + b, W (out, in) as nn.Linear ---- */
void llmq_op_linear_fwd(const float *X, const float *W, const float *b, int T, int in, int out, float *Y);
/* dX (T, in): NULL to skip; accumulate when dx_acc, else overwrite.
 * dW (out, in) += dY^T X and db (out) += sum_t dY[t]: NULL to skip. */
void llmq_op_linear_bwd(const float *X, const float *W, const float *dY, int T, int in, int out,
                        float *dX, int dx_acc, float *dW, float *db);

/* ---- RoPE (Hugging Face rotate-half) over T rows of n_heads heads ---- */
/* cs, sn: (T, hd/2) cos and sin of position * inv_freq; x (T, n_heads*hd) in place. */
void llmq_op_rope_fwd(float *x, int T, int n_heads, int hd, const float *cs, const float *sn);
/* The rotation's transpose applied to the gradient, in place. */
void llmq_op_rope_bwd(float *dx, int T, int n_heads, int hd, const float *cs, const float *sn);
/* Tables for positions 0..T-1 of head size hd as transformers computes them
 * (fp32 angles) for c's rope_theta and rope type (default, linear, llama3). */
void llmq_op_rope_tables(int T, int hd, const llmq_config *c, float *cs, float *sn);

/* ---- causal attention with grouped-query heads ---- */
typedef struct {
    int T;              /* tokens */
    int n_heads, n_kv_heads, hd;
    int window;         /* sliding window (0 = none) */
} llmq_attn_shape;
/* Q (T, n_heads*hd), K and V (T, n_kv_heads*hd), after RoPE.  P gets the
 * probabilities (n_heads, T, T), zero where masked; O (T, n_heads*hd).
 * Query head h reads KV head h / (n_heads / n_kv_heads). */
void llmq_op_attn_fwd(const llmq_attn_shape *s, const float *Q, const float *K, const float *V,
                      float *P, float *O);
/* One query head h of the above, its probabilities into S (T, T). */
void llmq_op_attn_head_fwd(const llmq_attn_shape *s, int h, const float *Q, const float *K, const float *V,
                           float *S, float *O);
/* dQ (overwritten) and dK, dV (overwritten) from dO; scratch (T*T floats).
 * dQ may be NULL when only K and V need gradients. */
void llmq_op_attn_bwd(const llmq_attn_shape *s, const float *Q, const float *K, const float *V,
                      const float *P, const float *dO, float *dQ, float *dK, float *dV, float *scratch);

/* ---- SwiGLU: h = silu(g) * u ---- */
void llmq_op_swiglu_fwd(const float *g, const float *u, size_t n, float *h);
/* dg, du overwritten. */
void llmq_op_swiglu_bwd(const float *g, const float *u, const float *dh, size_t n, float *dg, float *du);

/* ---- loss on logits ---- */
/* For rows t < T with target[t] >= 0: loss_t = (1-a) * CE(softmax(z_t), target[t])
 * + a * KL(q_t || softmax(z_t)), q_t = softmax(teacher[t]) (teacher may be
 * NULL only when a == 0).  Rows with target < 0 are skipped.  dz (T, V)
 * gets scale * d loss / d z (zero on skipped rows).  Returns
 * sum of loss_t; *ce and *kl (may be NULL) get the sums of each part. */
double llmq_op_xent_kl(const float *z, const float *teacher, const int32_t *target, int T, int V,
                       float a, float scale, float *dz, double *ce, double *kl);

/* ---- AdamW (decoupled weight decay, bias-corrected moments) ---- */
typedef struct { float lr, beta1, beta2, eps, wd; } llmq_adamw;
/* One step numbered step >= 1 over n parameters. */
void llmq_adamw_step(const llmq_adamw *o, int64_t step, float *w, const float *g, float *m, float *v, size_t n);

#endif
