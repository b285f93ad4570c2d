/*
 * linears.h - the one description of a decoder layer's linears: their
 * names in Hugging Face checkpoints and in GGUF, where llmq_layer keeps
 * their weights and biases, their shapes, and the observer site (forward.h)
 * whose activations are each one's input.
 */
#ifndef LLMQ_LINEARS_H
#define LLMQ_LINEARS_H

#include <stddef.h>
#include "forward.h"

/* The seven decoder linears of a layer, in llmq_layer's order (the order
 * llmq export writes them and awq stores them): q, k and v share one input,
 * gate and up share one. */
typedef enum {
    LLMQ_LIN_Q, LLMQ_LIN_K, LLMQ_LIN_V, LLMQ_LIN_O, LLMQ_LIN_GATE, LLMQ_LIN_UP, LLMQ_LIN_DOWN, LLMQ_LIN_COUNT
} llmq_lin;

typedef struct {
    const char *hf;          /* module after "model.layers.L.": "self_attn.q_proj" */
    const char *gguf;        /* tensor after "blk.L.": "attn_q.weight" */
    const char *gguf_bias;   /* its bias there: "attn_q.bias" */
    const char *bias_key;    /* the config.json flag that gives it a bias */
    llmq_site input;         /* the observer site (forward.h) feeding it */
    size_t w_off, b_off;     /* offsetof(llmq_layer, weight / bias) */
} llmq_linear;

extern const llmq_linear llmq_linears[LLMQ_LIN_COUNT];

static inline const llmq_wmat *llmq_layer_w(const llmq_layer *L, int k)
{
    return (const llmq_wmat *)((const char *)L + llmq_linears[k].w_off);
}

/* NULL where the model has no such bias */
static inline const float *llmq_layer_b(const llmq_layer *L, int k)
{
    return *(float *const *)((const char *)L + llmq_linears[k].b_off);
}

/* Where L keeps linear k's weight and its bias pointer, to fill them (the
 * loaders). */
static inline llmq_wmat *llmq_layer_wp(llmq_layer *L, int k)
{
    return (llmq_wmat *)((char *)L + llmq_linears[k].w_off);
}

static inline float **llmq_layer_bp(llmq_layer *L, int k)
{
    return (float **)((char *)L + llmq_linears[k].b_off);
}

/* Output rows and input columns of linear k under config c. */
int64_t llmq_linear_rows(const llmq_config *c, int k);
int64_t llmq_linear_cols(const llmq_config *c, int k);

/* 1 if linear k has a bias under config c (config.json's bias_key). */
int llmq_linear_has_bias(const llmq_config *c, int k);

/* The linear named by a module path under a layer ("self_attn.q_proj"),
 * or -1. */
int llmq_linear_find(const char *hf);

#endif
