/*
 * model.h - a checked Llama-family model assembled from config.json and the
 * checkpoint's tensors.  Weights stay in the mmap (borrowed views); only the
 * small vectors (norms, biases) are converted to fp32 copies.
 */
#ifndef LLMQ_MODEL_H
#define LLMQ_MODEL_H

#include "base/llmq-int.h"
#include "kernels/kernels.h"
#include "../formats/config.h"
#include "../formats/safetensors.h"

typedef struct {
    llmq_wmat wq;        /* (n_heads * head_dim, hidden) */
    llmq_wmat wk;        /* (n_kv_heads * head_dim, hidden) */
    llmq_wmat wv;        /* (n_kv_heads * head_dim, hidden) */
    llmq_wmat wo;        /* (hidden, n_heads * head_dim) */
    llmq_wmat w_gate;    /* (intermediate, hidden) */
    llmq_wmat w_up;      /* (intermediate, hidden) */
    llmq_wmat w_down;    /* (hidden, intermediate) */
    float *bq, *bk, *bv, *bo;           /* biases or NULL: (q_dim), (kv_dim), (kv_dim), (hidden) */
    float *b_gate, *b_up, *b_down;      /* (intermediate), (intermediate), (hidden) or NULL */
    float *attn_norm;    /* (hidden) input_layernorm */
    float *mlp_norm;     /* (hidden) post_attention_layernorm */
} llmq_layer;

typedef struct {
    llmq_config cfg;
    llmq_ckpt ckpt;        /* a GGUF model: no shards, dir = the file's directory */
    struct llmq_gguf_file *gguf;   /* the GGUF file a model was read from, or NULL */
    char *path;            /* as given by the user */
    llmq_wmat embed;       /* (vocab, hidden) */
    llmq_wmat lm_head;     /* (vocab, hidden); same view as embed when tied */
    float *final_norm;     /* (hidden) */
    llmq_layer *layers;    /* (n_layers) */
    char weights_dtype[32];/* "bf16", "f32", "int4-g128-asym", ... for reports */
    cJSON *packed_meta;    /* parsed llmq metadata of a packed file, or NULL */
    struct llmq_ct *ct;    /* a compressed-tensors checkpoint's quantization_config, or NULL */
    void **owned;          /* buffers the loader allocated, freed on close */
    int n_owned, cap_owned;
} llmq_model;

/* Open a model: path is a directory, a .safetensors file or an index .json
 * with config.json beside it.  Shapes are checked against config.json, every
 * weight is checked finite (LLMQ_ENONFINITE names the tensor).
 * Errors name the file: LLMQ_EIO, LLMQ_EFORMAT, LLMQ_EUNSUPPORTED. */
int llmq_model_open(llmq_model *m, const char *path, llmq_err *err);
void llmq_model_close(llmq_model *m);

/* Open a GGUF file (llama.cpp's format; lib/model_gguf.c): architectures
 * llama and qwen2, weights in any ggml type lib/kernels runs, config from
 * the metadata, q/k rows back in Hugging Face's order.  Every byte is
 * hostile: the reader's checks (formats/gguf.h), then metadata that
 * contradicts the tensors, a missing, extra or misshapen tensor, a type
 * llmq cannot run, a NaN or Inf weight or block scale: one line naming the
 * file.  The model has no safetensors shards (ckpt.n_shards == 0). */
int llmq_model_open_gguf(llmq_model *m, const char *path, llmq_err *err);
/* llmq_model_open, or llmq_model_open_gguf when path is a GGUF file (its
 * first four bytes "GGUF").  llmq_model_open itself refuses GGUF files
 * (LLMQ_EUNSUPPORTED): commands that transform a model need its
 * Hugging Face form. */
int llmq_model_open_any(llmq_model *m, const char *path, llmq_err *err);
/* 1 if path is a regular file starting with the GGUF magic. */
int llmq_is_gguf(const char *path);

/* Loader internals shared by model.c and model_gguf.c. */
int llmq_model_own(llmq_model *m, void *p, llmq_err *err);
/* 1 if a float tensor (F32, F16, BF16) holds a NaN or Inf; *where is the first. */
int llmq_tensor_nonfinite(const llmq_st_tensor *t, uint64_t *where);

/* Drop the mapped pages of layer l's linears from this process (they are
 * read back from the file, or the page cache, when next touched): a pass
 * that goes layer by layer over a model larger than memory keeps one
 * layer resident.  No-op for weights not mapped from a safetensors file. */
void llmq_model_release_layer(const llmq_model *m, int l);

/* Copy every linear and the LM head where they allow it
 * (llmq_wmat_interleavable: bf16, f16, int8, int4, MXINT8 and the block
 * formats; the embeddings only as the tied head) into the runner's layout of four-row tiles
 * (wmat.h), in memory the model owns, and drop the mapped pages of the
 * originals (a loader's own copies, such as a compressed-tensors model's
 * converted codes, stay allocated): a decode step then reads one address stream per thread
 * instead of four.  For runners only: the views no longer hold the file's
 * bytes (export and the quantizers read a model opened without this).
 * With q4_lanes (a runner whose int4 linears all run W4A8 on a kernel
 * table with matvec_q4a8l: AVX2, AVX-512) int4 matrices take the sixteen-row tiles of
 * LLMQ_ILV_LANES instead, whose other products are the oracle's.
 * LLMQ_INTERLEAVE=0 in the environment skips it, LLMQ_INTERLEAVE=4 keeps to
 * the tiles of four.  LLMQ_ENOMEM if the copy
 * does not fit; the model is unchanged then. */
int llmq_model_interleave(llmq_model *m, int q4_lanes, llmq_err *err);

/* Bytes of weights one decode step streams (all linears + lm_head). */
uint64_t llmq_model_decode_bytes(const llmq_model *m);
/* Total bytes of tensor data in the checkpoint. */
/* Turn every LLMQ_W_Q3 linear (3-bit codes) into LLMQ_W_Q4 with the same
 * codes, scales and zero points in the nibble layout (memory m owns): the
 * exports write int4 types, which hold int3 codes exactly.  LLMQ_ENOMEM. */
int llmq_model_widen_q3(llmq_model *m, llmq_err *err);

/* Bits of storage per weight of the decoder linears (codes, scales, zero
 * points; 16 for bf16), and of the LM head when it is quantized: what
 * verify --json reports as bits_per_weight. */
double llmq_model_bits_per_weight(const llmq_model *m);
uint64_t llmq_model_file_bytes(const llmq_model *m);
/* Number of parameters (elements of float tensors, or logical weights). */
uint64_t llmq_model_params(const llmq_model *m);

/* Locate a tensor by name: borrowed, NULL if absent. */
const llmq_st_tensor *llmq_model_tensor(const llmq_model *m, const char *name);

/* Layer l of a tensor or linear name "model.layers.<l>.<rest>" with l a
 * plain decimal (no sign, no leading zero) below n_layers: returns l and
 * sets *rest, or -1.  (sscanf's %d is undefined on overflow and reads
 * "+3" and "03" as 3: names come from hostile files.) */
int llmq_layer_of(const char *name, int n_layers, const char **rest);

#endif
