/*
 * packed.h - llmq's packed model files: a safetensors container whose
 * __metadata__ records the scheme of every quantized linear, the source
 * model's digest, the command that made it and a crc32 of every tensor.
 * The layout is documented byte for byte in man/llmq-packed.5.
 */
#ifndef LLMQ_PACKED_H
#define LLMQ_PACKED_H

#include <cjson/cJSON.h>
#include "safetensors.h"
#include "../lib/base/fileio.h"
#include "../lib/base/wmat.h"

#define LLMQ_PACKED_VERSION "1"

typedef enum { LLMQ_PACK_INT8 = 0, LLMQ_PACK_INT4, LLMQ_PACK_MXINT8,
               LLMQ_PACK_INT3,   /* 3-bit codes, three bits each (LLMQ_W_Q3; older files: in the INT4 layout) */
               LLMQ_PACK_BLOCK   /* an MX / NV block format (btype; quant.h, llmq_block_quantize) */
} llmq_pack_format;

typedef struct {
    llmq_pack_format format;
    int group;                 /* INT4 / INT3 group along the input dimension */
    int sym;                   /* INT4 / INT3 symmetric (no zero points) */
    llmq_mx_rule mx_rule;      /* MXINT8 and block formats: shared-scale rule */
    llmq_wtype btype;          /* LLMQ_PACK_BLOCK: LLMQ_W_MXFP4 .. LLMQ_W_MXFP8 */
} llmq_qscheme;

/* "int8", "int4-g128-asym", "int4-g64-sym", "int3-g128-asym", "mxint8", "mxint8-ceil",
 * "mxfp4", "mxint4", "nvfp4", "nvint4", "mxfp8", each also with "-ceil". */
void llmq_qscheme_name(const llmq_qscheme *s, char *buf, size_t n);
/* Inverse of llmq_qscheme_name; -1 if s is not a scheme name. */
int llmq_qscheme_parse(const char *name, llmq_qscheme *s);

/* For model.c: if f is a packed file, parse its metadata into *meta
 * (owned, cJSON object with "linears" and "crc32"); NULL if f is a plain
 * checkpoint.  Malformed llmq metadata (read strictly, as llmq_json_parse
 * reads a file) is LLMQ_EFORMAT. */
int llmq_packed_meta(const llmq_st_file *f, cJSON **meta, llmq_err *err);

/* Check every tensor's crc32 against the metadata: a mismatch is
 * LLMQ_EVERIFY naming the tensor; a tensor without a recorded crc32, or a
 * recorded tensor that is missing, is LLMQ_EFORMAT. */
int llmq_packed_check_crc(const llmq_ckpt *c, const cJSON *meta, llmq_err *err);

/* The quantized view of linear `prefix` (e.g. "model.layers.0.self_attn.q_proj")
 * of shape [rows, cols] from the packed tensors prefix.qweight/.scales/.zeros;
 * *found = 0 when the metadata does not list it (it is stored as float). */
int llmq_packed_linear(const llmq_ckpt *c, const cJSON *meta, const char *prefix, int64_t rows, int64_t cols,
                       llmq_wmat *w, int *found, llmq_err *err);

#endif
