/* config.h - Hugging Face config.json for the Llama family. */
#ifndef LLMQ_CONFIG_H
#define LLMQ_CONFIG_H

#include "../lib/base/llmq-int.h"

typedef enum { LLMQ_ARCH_LLAMA = 0, LLMQ_ARCH_MISTRAL, LLMQ_ARCH_QWEN2 } llmq_arch;

typedef struct {
    llmq_arch arch;
    char arch_name[64];        /* "LlamaForCausalLM" */
    int hidden;                /* hidden_size */
    int intermediate;          /* intermediate_size */
    int n_layers;              /* num_hidden_layers */
    int n_heads;               /* num_attention_heads */
    int n_kv_heads;            /* num_key_value_heads (defaults to n_heads) */
    int head_dim;              /* head_dim (defaults to hidden / n_heads) */
    int vocab;                 /* vocab_size */
    int max_pos;               /* max_position_embeddings (0 if absent) */
    int sliding_window;        /* 0 = none */
    double rms_eps;            /* rms_norm_eps */
    double rope_theta;         /* top-level rope_theta or rope_parameters.rope_theta */
    int rope_type;             /* LLMQ_ROPE_*: rope_scaling / rope_parameters.rope_type */
    double rope_factor;        /* linear, llama3: "factor" */
    double rope_low_freq, rope_high_freq;   /* llama3: "low_freq_factor", "high_freq_factor" */
    double rope_orig_max;      /* llama3: "original_max_position_embeddings" */
    const float *rope_divisors;/* [head_dim / 2] or NULL: inv_freq[i] is divided by it (a GGUF file's
                                * rope_freqs.weight, llama.cpp's form of Llama 3 scaling); borrowed */
    int qkv_bias;              /* q/k/v projections carry biases */
    int o_bias;                /* o_proj carries a bias */
    int mlp_bias;              /* gate/up/down carry biases */
    int tie_embeddings;        /* lm_head shares embed_tokens */
    char dtype[16];            /* "bfloat16", "float16", "float32" or "" */
    int bos_id, eos_id;        /* -1 if absent */
    /* "llmq_online_hadamard" (llmq rotate --online-hadamard; 0: absent) */
    int had_ff_block;          /* "ff_block": down_proj's input is rotated online by H / sqrt(B) on each block
                                * of this many channels (a power of two dividing intermediate) */
    int had_head_dim;          /* "head_dim": v_proj / o_proj rotated per head offline (== head_dim, a
                                * power of two) */
    int had_keys;              /* "keys" (absent: 1, as files written before it meant): the KV cache's
                                * keys rotated per head online (llmq rotate --online-hadamard-keys) */
} llmq_config;

/* RoPE frequency schemes of transformers' modeling_rope_utils that llmq
 * runs: default, linear (inv_freq / factor) and llama3 (Llama 3.1: low
 * frequencies / factor, high ones kept, a smooth blend between). */
enum { LLMQ_ROPE_DEFAULT = 0, LLMQ_ROPE_LINEAR, LLMQ_ROPE_LLAMA3 };

/* Parse config.json text (json, len bytes); path only for messages.  The
 * JSON is read strictly (llmq_json_parse: no trailing bytes, duplicate keys,
 * invalid UTF-8 or raw control characters), and strings from it reach
 * messages quoted (llmq_quote).
 * Unsupported architectures, activations or rope scaling are
 * LLMQ_EUNSUPPORTED naming what was found; missing or ill-typed fields are
 * LLMQ_EFORMAT naming the field.  "llmq_online_hadamard" must be
 * {"ff_block": B, "head_dim": D} with B a power of two dividing
 * intermediate_size and D the model's head_dim, a power of two, and an
 * optional "keys": true or false (absent: true) (LLMQ_EFORMAT otherwise);
 * another member in it is LLMQ_EUNSUPPORTED (a transform this llmq would
 * not apply). */
int llmq_config_parse(llmq_config *c, const char *json, size_t len, const char *path, llmq_err *err);
/* LLMQ_OK for a model without online Hadamard transforms; for one with
 * them (c->had_ff_block), LLMQ_EUNSUPPORTED "PATH: has online Hadamard
 * transforms (config.json \"llmq_online_hadamard\"): WHY": what a
 * command that cannot apply them (exporters, smooth, training) returns. */
int llmq_config_refuse_online(const llmq_config *c, const char *path, const char *why, llmq_err *err);
/* Read and parse dir/config.json. */
int llmq_config_load(llmq_config *c, const char *dir, llmq_err *err);
const char *llmq_arch_supported(void);   /* "LlamaForCausalLM, ..." */

#endif
