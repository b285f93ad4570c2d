/*
 * forward.h - the one forward pass of a decoder layer, shared by the runner
 * (inference with a KV cache), training (which keeps every activation for
 * the backward pass) and AWQ (a layer at a time over calibration windows,
 * with candidate weights).  The three differ only in what they keep, how a
 * linear is computed (quantized kernels, fp32 parameters, weights under
 * search) and how attention reads its keys (a cache or the window): those
 * are the pass's callbacks; the order of operations is written once, here.
 *
 *   xn1 = rmsnorm(x) * attn_norm                      observe QKV
 *   q, k, v = xn1 Wq^T (+bq), ...                     observe K_PRE, V
 *   q, k = rope(q), rope(k)                           observe K_POST
 *   att = attend(q, k, v)                             observe O
 *   xmid = x + att Wo^T (+bo)
 *   xn2 = rmsnorm(xmid) * mlp_norm                    observe GATEUP
 *   hact = silu(xn2 Wg^T) * (xn2 Wu^T)                observe DOWN
 *   out = xmid + hact Wd^T (+bd)
 *
 * With online Hadamard transforms (config had_ff_block; llmq rotate
 * --online-hadamard): hact <- hact Q blockwise before DOWN is observed (Wd
 * holds Wd Q); with rotated keys too (had_keys; --online-hadamard-keys)
 * the pre-RoPE keys that K_PRE sees and kpre keeps are k H per head (what
 * the KV cache stores; attend() reads k).
 */
#ifndef LLMQ_FORWARD_H
#define LLMQ_FORWARD_H

#include "model.h"

/* Where an observer sees activations (calibration, AWQ). */
typedef enum {
    LLMQ_SITE_QKV = 0,   /* input of q/k/v_proj: input_layernorm output, (n, hidden) */
    LLMQ_SITE_O,         /* input of o_proj: attention output, (n, n_heads*head_dim) */
    LLMQ_SITE_GATEUP,    /* input of gate/up_proj: post_attention_layernorm output, (n, hidden) */
    LLMQ_SITE_DOWN,      /* input of down_proj: silu(gate)*up (times Q online), (n, intermediate) */
    LLMQ_SITE_K_PRE,     /* k_proj output before RoPE (times H with had_keys), (n, n_kv_heads*head_dim) */
    LLMQ_SITE_K_POST,    /* k after RoPE, (n, n_kv_heads*head_dim) */
    LLMQ_SITE_V,         /* v_proj output, (n, n_kv_heads*head_dim) */
    LLMQ_SITE_COUNT
} llmq_site;

typedef void (*llmq_observer)(void *ctx, int layer, llmq_site site, const float *x, int64_t n, int64_t dim);

/* The activations of one layer over T tokens.  Buffers may alias where
 * one is dead before the other is written (the runner and AWQ reuse a few
 * scratch buffers; training keeps them all): xn1, xn2 and tmp; gate and
 * hact; up and tmp.  x and out may be xmid. */
typedef struct {
    float *xn1, *r1;     /* (T, hidden) normed input; (T) its 1/rms, or NULL */
    float *q;            /* (T, n_heads*head_dim), after RoPE */
    float *k, *v;        /* (T, n_kv_heads*head_dim), k after RoPE */
    float *kpre;         /* (T, n_kv_heads*head_dim) k before RoPE (had_keys: times H per head),
                          * or NULL: not kept */
    float *att;          /* (T, n_heads*head_dim) attention output */
    float *xmid;         /* (T, hidden) residual stream after attention */
    float *xn2, *r2;     /* (T, hidden) normed xmid; (T) its 1/rms, or NULL */
    float *gate, *up;    /* (T, intermediate) */
    float *hact;         /* (T, intermediate) silu(gate) * up */
    float *tmp;          /* (T, hidden) output of o_proj and down_proj */
} llmq_layer_acts;

typedef struct {
    const llmq_config *c;
    int layer, T;
    const float *attn_norm, *mlp_norm;   /* (hidden) */
    const float *cs, *sn;                /* RoPE tables at the T positions, (T, head_dim/2) */
    /* Y (T, rows) = X (T, cols) W^T + b for linear k (linears.h) of the layer */
    void (*linear)(void *ctx, int k, const float *X, int T, float *Y);
    /* a->att from a->q, a->k, a->v (after RoPE), causal */
    void (*attend)(void *ctx, llmq_layer_acts *a);
    void *ctx;
    llmq_observer observe;               /* NULL: none */
    void *obs_ctx;
} llmq_layer_pass;

/* Run the layer over x (T, hidden) into out (T, hidden), filling a.  out
 * NULL stops once the down_proj input has been observed (AWQ's statistics
 * pass needs no more). */
void llmq_layer_forward(const llmq_layer_pass *p, const float *x, llmq_layer_acts *a, float *out);

#endif
