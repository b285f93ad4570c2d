/*
 * gguf.h - a writer of GGUF version 3, the file format llama.cpp loads
 * (ggml's docs/gguf.md), and a reader of it.  llmq's export of a model
 * into it is lib/export/gguf_export.h.
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

#include "../lib/base/fileio.h"

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
    LLMQ_GGML_Q8_0 = 8, LLMQ_GGML_BF16 = 30, LLMQ_GGML_MXFP4 = 39
} llmq_ggml_type;

/* The blocks of ggml-common.h, 32 weights each, fp16 scales ("d", "m").
 * Q4_0: value = (q - 8) * d; Q4_1: value = q * d + m; Q8_0: value = q * d.
 * Q4 nibbles: weight j (0..15) of the block in the low nibble of qs[j],
 * weight j + 16 in its high nibble. */
#define LLMQ_GGML_QK 32
typedef struct { uint16_t d; uint8_t qs[LLMQ_GGML_QK / 2]; } llmq_ggml_q4_0;
typedef struct { uint16_t d, m; uint8_t qs[LLMQ_GGML_QK / 2]; } llmq_ggml_q4_1;
typedef struct { uint16_t d; int8_t qs[LLMQ_GGML_QK]; } llmq_ggml_q8_0;
/* MXFP4 (OCP MX, gpt-oss): e is the E8M0 exponent, the nibbles index
 * kvalues_mxfp4 = 2 x the E2M1 values (the same 16 codes in the same
 * order as FP4 E2M1 bits) and the block factor is 2^(e - 128), half the
 * E8M0 value: value = E2M1(q) * 2^(e - 127) exactly as OCP defines it.
 * Nibbles as Q4_0: weight j in the low nibble of qs[j], j + 16 in its high one. */
typedef struct { uint8_t e; uint8_t qs[LLMQ_GGML_QK / 2]; } llmq_ggml_mxfp4;
_Static_assert(sizeof(llmq_ggml_mxfp4) == 17, "block_mxfp4 is 17 bytes");
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
 * fsync, rename: lib/base/fileio.h).  Keys are kept in the order given.  _kv_*
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

/* ---- reader ----
 * A GGUF file of version 2 or 3 (same layout; version 1 had 32-bit counts
 * and is refused, LLMQ_EUNSUPPORTED), parsed from a read-only map.  Every
 * byte is hostile; the reader checks, with one line "FILE: what is wrong"
 * (LLMQ_EFORMAT unless said otherwise):
 *   - the magic, the version;
 *   - n_tensors <= LLMQ_GGUF_MAX_TENSORS and n_kv <= LLMQ_GGUF_MAX_KV, and
 *     each no more than the bytes left can hold (a pair takes at least
 *     LLMQ_GGUF_MIN_KV bytes, a tensor info LLMQ_GGUF_MIN_TINFO);
 *   - keys: 1..LLMQ_GGUF_MAX_KEY bytes, no NUL, no key twice; a value type
 *     0..12; a bool 0 or 1; every string's length within the file; an
 *     array's count times its element's least size within the bytes left;
 *     an array of arrays refused (LLMQ_EUNSUPPORTED: llama.cpp reads none);
 *   - general.alignment, if present, a u32 power of two (default 32);
 *   - tensor infos: name 1..63 bytes without NUL, no name twice, n_dims
 *     1..4, each ne in 1..2^63-1, their product and byte size without
 *     overflow, a known ggml type (one ggml removed, Q4_2 or Q4_0_4_4,
 *     is LLMQ_EUNSUPPORTED; an unknown number LLMQ_EFORMAT), ne[0] whole
 *     blocks, offset a multiple of the alignment;
 *   - the data area starts at the first aligned offset after the infos, and
 *     every tensor's bytes lie inside the file, no two overlapping.
 * Gaps between tensors are allowed (alignment makes them). */
#define LLMQ_GGUF_MAX_KV       ((uint64_t)1 << 20)
#define LLMQ_GGUF_MAX_TENSORS  ((uint64_t)1 << 20)
#define LLMQ_GGUF_MAX_KEY      65535
#define LLMQ_GGUF_MIN_KV       14   /* key length 8, a 1-byte key, type 4, a 1-byte value */
#define LLMQ_GGUF_MIN_TINFO    33   /* name length 8, a 1-byte name, n_dims 4, ne 8, type 4, offset 8 */
#define LLMQ_GGML_TYPE_COUNT   40   /* ggml types known, 0..39 (MXFP4) */

typedef struct {
    char *key;                 /* owned, NUL-terminated */
    llmq_gguf_vtype type;
    llmq_gguf_vtype arr_type;  /* element type when type is LLMQ_GGUF_ARRAY */
    uint64_t n;                /* elements of an array; 1 for a scalar */
    const uint8_t *val;        /* borrowed view into the file: the value (an array: its first element;
                                * a string: its bytes, after the length) */
    uint64_t len;              /* bytes at val */
} llmq_gguf_kv;

typedef struct {
    char *name;                /* owned, NUL-terminated */
    uint32_t type;             /* a ggml type number (llmq_ggml_type for the ones llmq writes) */
    int n_dims;
    int64_t ne[LLMQ_GGUF_MAX_DIMS];   /* ne[0] innermost; unused dims are 1 */
    uint64_t nelem, nbytes;
    uint64_t offset;           /* from the start of the data area */
    const uint8_t *data;       /* borrowed view into the file map */
} llmq_gguf_tensor;

typedef struct llmq_gguf_file {
    char *path;                /* owned copy, for messages */
    llmq_map map;              /* whole file (empty when parsed from memory) */
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;      /* start of the data area in the file */
    llmq_gguf_kv *kv;          /* in file order */
    uint64_t n_kv;
    llmq_gguf_tensor *tensors; /* in file order */
    uint64_t n_tensors;
} llmq_gguf_file;

/* Name of any ggml type number ("Q4_K", "IQ2_XS"); "?" if unknown. */
const char *llmq_ggml_type_name_any(uint32_t t);

/* Open and validate path; views point into an mmap that lives until
 * llmq_gguf_close.  Errors: LLMQ_EIO, LLMQ_EFORMAT, LLMQ_EUNSUPPORTED,
 * LLMQ_ENOMEM.  On error f is left closed (closing again is safe). */
int llmq_gguf_open(llmq_gguf_file *f, const char *path, llmq_err *err);
/* The same on an in-memory image buf[0..len), which must outlive f and is
 * not freed by close; path is used only in messages. */
int llmq_gguf_parse(llmq_gguf_file *f, const uint8_t *buf, uint64_t len, const char *path, llmq_err *err);
void llmq_gguf_close(llmq_gguf_file *f);   /* accepts a closed or zeroed f */

/* The pair with key, or NULL. */
const llmq_gguf_kv *llmq_gguf_find_kv(const llmq_gguf_file *f, const char *key);
/* The pair with key, which must have value type t (for an array, t is
 * LLMQ_GGUF_ARRAY and arr_type its element type; pass -1 for any element
 * type).  NULL with err filled: LLMQ_EFORMAT "FILE: key 'K' is missing" or
 * "... is a TYPE, expected a TYPE". */
const llmq_gguf_kv *llmq_gguf_get(const llmq_gguf_file *f, const char *key, llmq_gguf_vtype t,
                                  int arr_type, llmq_err *err);
/* Typed getters over llmq_gguf_get: status, the value in *out.  A string
 * is a borrowed view of *len bytes, not NUL-terminated (may hold NULs). */
int llmq_gguf_get_u32(const llmq_gguf_file *f, const char *key, uint32_t *out, llmq_err *err);
int llmq_gguf_get_f32(const llmq_gguf_file *f, const char *key, float *out, llmq_err *err);
int llmq_gguf_get_str(const llmq_gguf_file *f, const char *key, const char **s, uint64_t *len, llmq_err *err);
/* Walk a validated array of strings: *pos starts at 0; each call gives the
 * next string's view and returns 1, or 0 at the end. */
int llmq_gguf_arr_next_str(const llmq_gguf_kv *kv, uint64_t *pos, const char **s, uint64_t *len);
/* LLMQ_OK if llmq can read tensor t's type into its own weights (F32,
 * F16, BF16, Q4_0), else LLMQ_EUNSUPPORTED: "FILE: tensor 'NAME': ggml
 * type Q4_K is not supported (llmq reads F32, F16, BF16, Q4_0)".  The
 * parser itself accepts every ggml type it can size, so that a file's
 * other tensors can still be listed. */
int llmq_gguf_tensor_readable(const llmq_gguf_file *f, const llmq_gguf_tensor *t, llmq_err *err);
/* The tensor named name, or NULL. */
const llmq_gguf_tensor *llmq_gguf_find_tensor(const llmq_gguf_file *f, const char *name);
/* Bytes of one value of vtype t (0 for a string or an array). */
size_t llmq_gguf_vtype_size(llmq_gguf_vtype t);
const char *llmq_gguf_vtype_name(uint32_t t);

#endif
