/*
 * pack.h - quantize every linear of a model (round to nearest) and write an
 * llmq packed file (formats/packed.h, man/llmq-packed.5).
 */
#ifndef LLMQ_ALGO_PACK_H
#define LLMQ_ALGO_PACK_H

#include "../model.h"
#include "../../formats/packed.h"

/* A hook that supplies transformed fp32 values for a tensor of the source
 * model (smooth and awq fold scales into weights, clip them): fill out
 * (nelem floats) and set *provided = 1, or leave *provided = 0 to use the
 * model's own tensor. */
typedef int (*llmq_pack_provider)(void *ctx, const char *name, float *out, int64_t nelem,
                                  int *provided, llmq_err *err);

/* A hook that supplies a linear already quantized in an int4/int3 scheme
 * (awq's gptq codes): fill codes (rows, cols / 2), scales (rows, cols /
 * group) f16 and, when asymmetric, zeros (rows, cols / group) in the
 * packed layout and set *provided = 1, or leave it 0 to round to nearest. */
typedef int (*llmq_pack_qprovider)(void *ctx, const char *prefix, int64_t rows, int64_t cols, uint8_t *codes,
                                   uint16_t *scales, uint8_t *zeros, int *provided, llmq_err *err);

/* The same for a linear in a block format (LLMQ_PACK_BLOCK; awq's gptq
 * codes): fill codes (rows, cols / 2; MXFP8 (rows, cols)), scales (rows,
 * cols / B) scale bytes and *tscale (NV: the tensor scale, finite and
 * positive; MX: ignored) in the packed layout (lib/base/blocks.h) and set
 * *provided = 1, or leave it 0 to round to nearest. */
typedef int (*llmq_pack_bprovider)(void *ctx, const char *prefix, int64_t rows, int64_t cols, uint8_t *codes,
                                   uint8_t *scales, float *tscale, int *provided, llmq_err *err);

typedef struct {
    llmq_qscheme scheme;
    int quantize_head;         /* also quantize an untied lm_head (default: it stays float) */
    const char *skip;          /* POSIX extended regex over linear names
                                  ("model.layers.0.mlp.down_proj"): these stay float */
    const char *command;       /* the command line, recorded */
    const cJSON *extra;        /* more to record under llmq.params (borrowed), or NULL */
    llmq_pack_provider provider;
    void *provider_ctx;
    llmq_pack_qprovider qprovider;   /* int4 / int3 schemes only; ctx: provider_ctx */
    llmq_pack_bprovider bprovider;   /* block schemes only; ctx: provider_ctx */
} llmq_pack_opts;

typedef struct {
    int linears_packed, linears_float;
    uint64_t bytes;            /* tensor bytes written */
    uint64_t params;           /* parameters of the model */
    double bits_per_weight;    /* bits of quantized linears per weight (codes+scales+zeros) */
} llmq_pack_stats;

/* Quantize every linear of m (round to nearest; values from the provider
 * where it gives them) and write out_dir/ atomically: model.safetensors,
 * config.json and the tokenizer files.  Refuses an out_dir that is the
 * model's own directory.  Errors: LLMQ_EUSAGE, LLMQ_EIO, LLMQ_ENONFINITE,
 * LLMQ_EUNSUPPORTED (a row length the group does not divide). */
int llmq_pack_model(const llmq_model *m, const llmq_pack_opts *o, const char *out_dir,
                    llmq_pack_stats *st, llmq_err *err);

/* SHA-256 over config.json and every tensor's name, dtype, shape and crc32:
 * identifies a source model without hashing gigabytes twice.  hex: 65 bytes. */
int llmq_model_digest(const llmq_model *m, char hex[65], llmq_err *err);

#endif
