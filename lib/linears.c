/* linears.c - the table of linears.h. */
#include "linears.h"

const llmq_gguf_linear llmq_gguf_linears[LLMQ_GGUF_LIN_COUNT] = {
    [LLMQ_GGUF_LIN_Q]    = { "attn_q.weight", "self_attn.q_proj", LLMQ_SITE_QKV },
    [LLMQ_GGUF_LIN_K]    = { "attn_k.weight", "self_attn.k_proj", LLMQ_SITE_QKV },
    [LLMQ_GGUF_LIN_V]    = { "attn_v.weight", "self_attn.v_proj", LLMQ_SITE_QKV },
    [LLMQ_GGUF_LIN_O]    = { "attn_output.weight", "self_attn.o_proj", LLMQ_SITE_O },
    [LLMQ_GGUF_LIN_GATE] = { "ffn_gate.weight", "mlp.gate_proj", LLMQ_SITE_GATEUP },
    [LLMQ_GGUF_LIN_UP]   = { "ffn_up.weight", "mlp.up_proj", LLMQ_SITE_GATEUP },
    [LLMQ_GGUF_LIN_DOWN] = { "ffn_down.weight", "mlp.down_proj", LLMQ_SITE_DOWN },
};
