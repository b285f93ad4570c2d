/*
 * linears.h - the names of a decoder layer's linears in GGUF and in Hugging
 * Face checkpoints, and the runner's observer site feeding each.
 */
#ifndef LLMQ_LINEARS_H
#define LLMQ_LINEARS_H

#include "runner.h"

/* The seven decoder linears of a layer, in the order llmq export writes
 * them: the GGUF name after "blk.L." ("attn_q.weight"), the Hugging Face
 * module after "model.layers.L." ("self_attn.q_proj"), and the observer
 * site (runner.h) whose activations are the linear's input (q, k and v
 * share one, gate and up share one).  The one name table of export and of
 * calibrate's importance matrix. */
typedef enum {
    LLMQ_GGUF_LIN_Q, LLMQ_GGUF_LIN_K, LLMQ_GGUF_LIN_V, LLMQ_GGUF_LIN_O,
    LLMQ_GGUF_LIN_GATE, LLMQ_GGUF_LIN_UP, LLMQ_GGUF_LIN_DOWN, LLMQ_GGUF_LIN_COUNT
} llmq_gguf_lin;
typedef struct { const char *gguf, *hf; llmq_site input; } llmq_gguf_linear;
extern const llmq_gguf_linear llmq_gguf_linears[LLMQ_GGUF_LIN_COUNT];

#endif
