/*
 * ct_export.h - write a model as a compressed-tensors checkpoint, the
 * format described in formats/ctensors.h.
 */
#ifndef LLMQ_CT_EXPORT_H
#define LLMQ_CT_EXPORT_H

#include "../model.h"
#include "../../formats/ctensors.h"

typedef struct {
    int linears_packed, linears_float;
    uint64_t bytes;            /* tensor bytes written */
    char scheme[48];           /* "W4A16 group 128 asymmetric", "W8A8" */
} llmq_ct_export_stats;

/* Write m (int4 group-wise or int8 per-channel linears; others float) as a
 * compressed-tensors checkpoint in out_dir, atomically: model.safetensors,
 * config.json with the quantization_config llm-compressor writes, and the
 * tokenizer files.  The quantized tensors carry the codes, scales and zero
 * points of m bit for bit.  A model with no quantized linear, an MX8 one,
 * or one mixing schemes is LLMQ_EUNSUPPORTED; out_dir naming an input is
 * LLMQ_EUSAGE; LLMQ_EIO, LLMQ_ENOMEM. */
int llmq_ct_export(const llmq_model *m, const char *out_dir, const char *command,
                   llmq_ct_export_stats *st, llmq_err *err);

#endif
