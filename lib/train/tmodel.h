/*
 * tmodel.h - a Llama-family decoder held as fp32 parameters for training:
 * a forward pass that keeps every activation of one sequence, the backward
 * pass through all of it (ops.h), AdamW over the trainable parameters, and
 * writing the result back out as a Hugging Face checkpoint.
 */
#ifndef LLMQ_TRAIN_TMODEL_H
#define LLMQ_TRAIN_TMODEL_H

#include "../model.h"
#include "../linears.h"
#include "../base/fileio.h"
#include "ops.h"

typedef struct {
    char name[128];      /* checkpoint tensor name, "model.layers.0.self_attn.k_proj.weight" */
    int ndim;            /* 1 or 2 */
    int64_t shape[2];    /* (rows, cols) or (n) */
    size_t n;            /* elements */
    float *w;            /* (n) values, owned */
    float *g, *m, *v;    /* (n) gradient and AdamW moments, NULL unless trainable */
    int train;
} llmq_tparam;

/* Indices into llmq_tmodel.p, -1 where the model has no such tensor. */
typedef struct {
    int w[LLMQ_LIN_COUNT], b[LLMQ_LIN_COUNT];   /* by linear (linears.h) */
    int attn_norm, mlp_norm;
} llmq_tlayer;

typedef struct {
    llmq_config cfg;     /* n_kv_heads is the model's current one (changes when pooled) */
    llmq_tparam *p;
    int n_params;
    int embed, lm_head, final_norm;   /* lm_head == embed when tied */
    llmq_tlayer *L;      /* (n_layers) */
} llmq_tmodel;

/* fp32 copies of every tensor of m (a float checkpoint: a packed model is
 * LLMQ_EUNSUPPORTED).  Errors: LLMQ_ENOMEM, LLMQ_EUNSUPPORTED. */
int llmq_tmodel_from_model(llmq_tmodel *tm, const llmq_model *m, llmq_err *err);
void llmq_tmodel_release(llmq_tmodel *tm);

/* Replace parameter i's values by a new (rows, cols) or (n) buffer (taken
 * over, freed with the model).  Gradient state is dropped. */
void llmq_tmodel_replace(llmq_tmodel *tm, int i, float *w, int ndim, int64_t rows, int64_t cols);

typedef enum { LLMQ_TRAIN_KV = 0, LLMQ_TRAIN_ALL } llmq_train_set;
/* Mark the trainable parameters (K/V projections and their biases, or all)
 * and allocate their gradients and moments (zeroed).  Errors: LLMQ_ENOMEM. */
int llmq_tmodel_set_train(llmq_tmodel *tm, llmq_train_set set, llmq_err *err);
void llmq_tmodel_zero_grad(llmq_tmodel *tm);
/* AdamW step over trainable parameters; grads are scaled by gscale first
 * (clipping).  Returns the gradient's global L2 norm before scaling when
 * clip > 0 (then gscale = min(1, clip / norm)), else 0. */
double llmq_tmodel_adamw(llmq_tmodel *tm, const llmq_adamw *o, int64_t step, double clip);

/* Activations of one sequence of up to max_T tokens. */
typedef struct llmq_tws llmq_tws;
int llmq_tws_new(llmq_tws **out, const llmq_tmodel *tm, int max_T, llmq_err *err);
void llmq_tws_free(llmq_tws *ws);
/* The logits (T, vocab) of the last forward, and room for their gradient. */
float *llmq_tws_logits(llmq_tws *ws);
float *llmq_tws_dlogits(llmq_tws *ws);

/* Forward tokens[0..T) (positions 0..T-1), keeping activations; logits
 * land in llmq_tws_logits.  Ids must be in range, T <= max_T. */
void llmq_tmodel_forward(const llmq_tmodel *tm, llmq_tws *ws, const int32_t *tokens, int T);
/* Backward from llmq_tws_dlogits (filled by the caller) into the
 * gradients of the trainable parameters (accumulated). */
void llmq_tmodel_backward(const llmq_tmodel *tm, llmq_tws *ws);

/* Write tm as a checkpoint directory out_dir (atomic): every tensor of the
 * source checkpoint src in name order, tm's values where tm holds the
 * tensor (converted to dtype, or to the source tensor's own float dtype
 * when dtype is LLMQ_DT_COUNT), others byte for byte; config.json from the
 * source with num_key_value_heads = tm's and the dtype key updated; the
 * tokenizer files copied.  meta: extra __metadata__ pairs (key, value,
 * ..., NULL) or NULL.  Errors: LLMQ_EIO, LLMQ_EUSAGE (out_dir is the
 * source's directory), LLMQ_ENOMEM. */
int llmq_tmodel_write(const llmq_tmodel *tm, const llmq_model *src, llmq_dtype dtype,
                      const char *const *meta, const char *out_dir, llmq_err *err);

/* Index of the parameter named name, or -1. */
int llmq_tmodel_find(const llmq_tmodel *tm, const char *name);

#endif
