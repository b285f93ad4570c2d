/*
 * gguf_export.h - llmq export: a model as a GGUF file (the writer is
 * formats/gguf.h).
 */
#ifndef LLMQ_GGUF_EXPORT_H
#define LLMQ_GGUF_EXPORT_H

#include "../model.h"
#include "../linears.h"
#include "../../formats/gguf.h"

typedef enum {
    LLMQ_GGUF_TYPE_AUTO = 0,   /* float source: its own dtype; packed source: the exact mapping */
    LLMQ_GGUF_TYPE_F32, LLMQ_GGUF_TYPE_F16, LLMQ_GGUF_TYPE_BF16,
    LLMQ_GGUF_TYPE_Q8_0, LLMQ_GGUF_TYPE_Q4_0, LLMQ_GGUF_TYPE_Q4_1
} llmq_gguf_outtype;

typedef struct {
    llmq_gguf_outtype type;
    const char *command;       /* the command line, recorded as llmq.command */
    const char *name;          /* general.name, or NULL: the model directory's name */
} llmq_gguf_export_opts;

typedef struct {
    int tensors;
    int exact;                 /* 1: every weight is the source's value, bit for bit */
    double m_max_err;          /* Q4_1 from asymmetric int4: largest |m - (-s*z)| over all blocks */
    double q8_scale_rel_err;   /* int8 -> Q8_0 (asked for): largest |f16(s) - s| / s over row scales */
    double bits_per_weight;    /* bits of the decoder linears' storage per weight */
    uint64_t bytes;            /* file size */
    char file_type[16];        /* "Q4_1", "F16", ... (general.file_type's meaning) */
} llmq_gguf_export_stats;

/* Write model m as a GGUF file that llama.cpp runs: architecture "llama"
 * (Llama, Mistral; q/k rows permuted to llama.cpp's rotary layout) or
 * "qwen2", the tokenizer of m's directory (tokenizer.json,
 * tokenizer_config.json) as tokenizer.ggml.* metadata, provenance under
 * llmq.*.  A float source is rounded to the type as llama-quantize's
 * reference quantizers round; a packed source maps exactly or is refused.
 * Errors: LLMQ_EUNSUPPORTED (a type that cannot hold a packed model's
 * values exactly, a tokenizer or rope scaling GGUF cannot describe: one
 * line saying why), LLMQ_EFORMAT, LLMQ_EIO, LLMQ_ENOMEM, LLMQ_ENONFINITE. */
int llmq_gguf_export(const llmq_model *m, const llmq_gguf_export_opts *o, const char *path,
                     llmq_gguf_export_stats *st, llmq_err *err);

#endif
