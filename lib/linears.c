/* linears.c - the table of linears.h. */
#include <string.h>
#include "linears.h"

#define LIN(hf, gguf, key, site, w, b) \
    { hf, gguf ".weight", gguf ".bias", key, site, offsetof(llmq_layer, w), offsetof(llmq_layer, b) }
const llmq_linear llmq_linears[LLMQ_LIN_COUNT] = {
    [LLMQ_LIN_Q]    = LIN("self_attn.q_proj", "attn_q", "attention_bias", LLMQ_SITE_QKV, wq, bq),
    [LLMQ_LIN_K]    = LIN("self_attn.k_proj", "attn_k", "attention_bias", LLMQ_SITE_QKV, wk, bk),
    [LLMQ_LIN_V]    = LIN("self_attn.v_proj", "attn_v", "attention_bias", LLMQ_SITE_QKV, wv, bv),
    [LLMQ_LIN_O]    = LIN("self_attn.o_proj", "attn_output", "attention_bias", LLMQ_SITE_O, wo, bo),
    [LLMQ_LIN_GATE] = LIN("mlp.gate_proj", "ffn_gate", "mlp_bias", LLMQ_SITE_GATEUP, w_gate, b_gate),
    [LLMQ_LIN_UP]   = LIN("mlp.up_proj", "ffn_up", "mlp_bias", LLMQ_SITE_GATEUP, w_up, b_up),
    [LLMQ_LIN_DOWN] = LIN("mlp.down_proj", "ffn_down", "mlp_bias", LLMQ_SITE_DOWN, w_down, b_down),
};

/* Qwen2's q/k/v carry biases and its o_proj none: config.c reads
 * attention_bias (or the architecture) into the two flags. */
int llmq_linear_has_bias(const llmq_config *c, int k)
{
    return k <= LLMQ_LIN_V ? c->qkv_bias : k == LLMQ_LIN_O ? c->o_bias : k < LLMQ_LIN_COUNT ? c->mlp_bias : 0;
}

int64_t llmq_linear_rows(const llmq_config *c, int k)
{
    int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    const int64_t r[LLMQ_LIN_COUNT] = { qd, kvd, kvd, c->hidden, c->intermediate, c->intermediate, c->hidden };
    return k >= 0 && k < LLMQ_LIN_COUNT ? r[k] : 0;
}

int64_t llmq_linear_cols(const llmq_config *c, int k)
{
    return k == LLMQ_LIN_O ? (int64_t)c->n_heads * c->head_dim : k == LLMQ_LIN_DOWN ? c->intermediate
         : k >= 0 && k < LLMQ_LIN_COUNT ? c->hidden : 0;
}

int llmq_linear_find(const char *hf)
{
    for (int k = 0; k < LLMQ_LIN_COUNT; k++)
        if (!strcmp(hf, llmq_linears[k].hf)) return k;
    return -1;
}
