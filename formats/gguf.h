/*
 * gguf.h - a writer of GGUF version 3, the file format llama.cpp loads
 * (ggml's docs/gguf.md), and llmq's export of a model into it.
 *
 * A GGUF file is, all little-endian:
 *   "GGUF" u32 version(3) u64 n_tensors u64 n_kv
 *   n_kv times:      string key, u32 value type, value
 *   n_tensors times: string name, u32 n_dims, u64 ne[n_dims], u32 ggml type,
 *                    u64 offset (from the start of the data area)
 *   zero padding up to a multiple of the alignment (32), the data area:
 *   each tensor at its offset, each offset a multiple of 32, no gaps but
 *   the padding that alignment needs.
 * A string is a u64 byte length and the bytes (no NUL); an array is a u32
 * element type, a u64 count and the elements.  ne[0] is the innermost
 * (contiguous) dimension: a Hugging Face weight [rows, cols] is ne = {cols,
 * rows}.
 */
#ifndef LLMQ_GGUF_H
#define LLMQ_GGUF_H

#include "../lib/model.h"

#define LLMQ_GGUF_VERSION   3u
#define LLMQ_GGUF_ALIGN     32u     /* general.alignment's default; we never write another */
#define LLMQ_GGUF_MAX_DIMS  4       /* GGML_MAX_DIMS */
#define LLMQ_GGUF_MAX_NAME  63      /* GGML_MAX_NAME is 64 bytes with the NUL */

/* Metadata value types (gguf_type); values reach disk: never renumber. */
typedef enum {
    LLMQ_GGUF_U8 = 0, LLMQ_GGUF_I8 = 1, LLMQ_GGUF_U16 = 2, LLMQ_GGUF_I16 = 3,
    LLMQ_GGUF_U32 = 4, LLMQ_GGUF_I32 = 5, LLMQ_GGUF_F32 = 6, LLMQ_GGUF_BOOL = 7,
    LLMQ_GGUF_STRING = 8, LLMQ_GGUF_ARRAY = 9, LLMQ_GGUF_U64 = 10, LLMQ_GGUF_I64 = 11,
    LLMQ_GGUF_F64 = 12
} llmq_gguf_vtype;

/* Tensor types (ggml_type) llmq writes; values reach disk: never renumber. */
typedef enum {
    LLMQ_GGML_F32 = 0, LLMQ_GGML_F16 = 1, LLMQ_GGML_Q4_0 = 2, LLMQ_GGML_Q4_1 = 3,
    LLMQ_GGML_Q8_0 = 8, LLMQ_GGML_BF16 = 30
} llmq_ggml_type;

/* The blocks of ggml-common.h, 32 weights each, fp16 scales ("d", "m").
 * Q4_0: value = (q - 8) * d; Q4_1: value = q * d + m; Q8_0: value = q * d.
 * Q4 nibbles: weight j (0..15) of the block in the low nibble of qs[j],
 * weight j + 16 in its high nibble. */
#define LLMQ_GGML_QK 32
typedef struct { uint16_t d; uint8_t qs[LLMQ_GGML_QK / 2]; } llmq_ggml_q4_0;
typedef struct { uint16_t d, m; uint8_t qs[LLMQ_GGML_QK / 2]; } llmq_ggml_q4_1;
typedef struct { uint16_t d; int8_t qs[LLMQ_GGML_QK]; } llmq_ggml_q8_0;
_Static_assert(sizeof(llmq_ggml_q4_0) == 18, "block_q4_0 is 18 bytes");
_Static_assert(sizeof(llmq_ggml_q4_1) == 20, "block_q4_1 is 20 bytes");
_Static_assert(sizeof(llmq_ggml_q8_0) == 34, "block_q8_0 is 34 bytes");

/* "F32", "Q4_1", ... */
const char *llmq_ggml_type_name(llmq_ggml_type t);
/* Bytes of one row of ne0 elements of type t; 0 if ne0 is not a multiple
 * of the type's block. */
uint64_t llmq_ggml_row_bytes(llmq_ggml_type t, int64_t ne0);

/* ---- writer ----
 * Collect metadata and tensors, then write the file atomically (temp file,
 * fsync, rename: lib/fileio.h).  Keys are kept in the order given.  _kv_*
 * and _add_tensor refuse (LLMQ_EUSAGE for a caller's mistake, naming the
 * key or tensor): a duplicate key or tensor name, an empty one, a tensor
 * name over 63 bytes, more than 4 dims, a dim < 1, a row that is not whole
 * blocks, sizes that overflow. */
typedef struct llmq_gguf_writer llmq_gguf_writer;

llmq_gguf_writer *llmq_gguf_writer_new(llmq_err *err);
void llmq_gguf_writer_free(llmq_gguf_writer *w);   /* accepts NULL */

int llmq_gguf_kv_u32(llmq_gguf_writer *w, const char *key, uint32_t v, llmq_err *err);
int llmq_gguf_kv_i32(llmq_gguf_writer *w, const char *key, int32_t v, llmq_err *err);
int llmq_gguf_kv_f32(llmq_gguf_writer *w, const char *key, float v, llmq_err *err);
int llmq_gguf_kv_bool(llmq_gguf_writer *w, const char *key, int v, llmq_err *err);
int llmq_gguf_kv_str(llmq_gguf_writer *w, const char *key, const char *v, llmq_err *err);
/* Arrays: n strings (each NUL-terminated), n int32, n float32. */
int llmq_gguf_kv_arr_str(llmq_gguf_writer *w, const char *key, const char *const *v, uint64_t n, llmq_err *err);
int llmq_gguf_kv_arr_i32(llmq_gguf_writer *w, const char *key, const int32_t *v, uint64_t n, llmq_err *err);
int llmq_gguf_kv_arr_f32(llmq_gguf_writer *w, const char *key, const float *v, uint64_t n, llmq_err *err);

/* A tensor whose bytes are produced during finish: fill(ctx, name, buf,
 * nbytes, err) writes exactly nbytes (llmq_ggml_row_bytes(type, ne[0]) times
 * the other dims) into buf, or returns a status with err filled, which
 * aborts the file.  Tensors are written in the order added.  name is
 * copied; ctx is borrowed until finish. */
typedef int (*llmq_gguf_fill_fn)(void *ctx, const char *name, void *buf, uint64_t nbytes, llmq_err *err);
int llmq_gguf_add_tensor(llmq_gguf_writer *w, const char *name, llmq_ggml_type type, int n_dims,
                         const int64_t *ne, llmq_gguf_fill_fn fill, void *ctx, llmq_err *err);

/* Write the file to path atomically; on failure nothing replaces path.
 * Only one buffer, the largest tensor, is held at a time.  *bytes (may be
 * NULL) gets the file's size.  Call once. */
int llmq_gguf_writer_finish(llmq_gguf_writer *w, const char *path, uint64_t *bytes, llmq_err *err);

/* ---- export ---- */

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
