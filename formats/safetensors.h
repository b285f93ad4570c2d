/*
 * safetensors.h - in-tree reader and writer of the safetensors format
 * (8-byte LE header length, JSON header, raw little-endian tensor data),
 * and checkpoints made of one or more safetensors shards.
 *
 * Every byte of an input file is hostile: the reader validates the header
 * length, JSON, dtypes, shapes (overflow-checked), that every span lies
 * inside the data area, and that no two spans overlap.
 *
 * Holes: the format's reference reader also demands that the spans tile the
 * data area exactly.  We accept gaps between spans and unused bytes after the
 * last one (they are harmless: no byte is read twice and none lies outside
 * the file) but reject any overlap of non-empty spans.  Our writer never
 * leaves holes, so what we write passes the reference reader.
 */
#ifndef LLMQ_SAFETENSORS_H
#define LLMQ_SAFETENSORS_H

#include <cjson/cJSON.h>
#include "../lib/base/llmq-int.h"
#include "../lib/base/fileio.h"

/* Values that reach disk as strings; order here is not on disk. */
typedef enum {
    LLMQ_DT_F32 = 0, LLMQ_DT_F16, LLMQ_DT_BF16, LLMQ_DT_F64,
    LLMQ_DT_I8, LLMQ_DT_U8, LLMQ_DT_I16, LLMQ_DT_U16,
    LLMQ_DT_I32, LLMQ_DT_U32, LLMQ_DT_I64, LLMQ_DT_U64, LLMQ_DT_BOOL,
    /* OCP OFP8, one byte each: read as raw bytes (E4M3: the block scales of
     * compressed-tensors' NVFP4, formats/ctensors.h); no float path takes
     * them (llmq_st_tensor_f32 gives zeros, weights refuse them) */
    LLMQ_DT_F8_E4M3, LLMQ_DT_F8_E5M2,
    LLMQ_DT_COUNT
} llmq_dtype;

#define LLMQ_ST_MAX_DIMS 8
#define LLMQ_ST_MAX_HEADER (100u * 1024 * 1024)  /* as the reference parser */
/* Tensors in one file: a 100 MiB header could name 2M, and cJSON's tree of
 * it take gigabytes; the header is also held to LLMQ_JSON_MAX_VALUES values
 * and LLMQ_JSON_MAX_DEPTH levels before it is parsed.  The largest single
 * files of released models hold some thousands of tensors. */
#define LLMQ_ST_MAX_TENSORS ((size_t)1 << 18)

const char *llmq_dtype_name(llmq_dtype dt);           /* "BF16" */
int llmq_dtype_from_name(const char *s, llmq_dtype *dt); /* 0 ok, -1 unknown */
size_t llmq_dtype_size(llmq_dtype dt);                  /* bytes per element */

typedef struct {
    char *name;                      /* owned, valid UTF-8 */
    llmq_dtype dtype;
    int ndim;
    int64_t shape[LLMQ_ST_MAX_DIMS];
    uint64_t nelem;
    uint64_t nbytes;
    uint64_t offset;                 /* from the start of the data area */
    const uint8_t *data;             /* borrowed view into the file map */
} llmq_st_tensor;

typedef struct {
    char *path;                      /* owned copy, used in error messages */
    llmq_map map;                    /* whole file */
    uint64_t header_len;
    llmq_st_tensor *tensors;         /* sorted by name */
    size_t n_tensors;
    cJSON *metadata;                 /* "__metadata__" object or NULL (owned) */
} llmq_st_file;

/* Open and validate a safetensors file; tensors' data point into an mmap
 * that lives until llmq_st_close.  Errors: LLMQ_EIO, LLMQ_EFORMAT,
 * LLMQ_EUNSUPPORTED (a dtype of the format llmq does not read: F8_E8M0,
 * F6_*, F4, C64), LLMQ_ENOMEM. */
int llmq_st_open(llmq_st_file *f, const char *path, llmq_err *err);
/* Validate an in-memory image (used by tests with byte arrays); buf must
 * outlive f and is not freed by llmq_st_close (f->map stays empty).  path is
 * used only in messages.  On error f is left closed (safe to close again). */
int llmq_st_parse(llmq_st_file *f, const uint8_t *buf, uint64_t len, const char *path, llmq_err *err);
void llmq_st_close(llmq_st_file *f);
/* Borrowed pointer, or NULL if absent. */
const llmq_st_tensor *llmq_st_find(const llmq_st_file *f, const char *name);
/* "__metadata__" string value for key, or NULL. */
const char *llmq_st_meta(const llmq_st_file *f, const char *key);

/* A checkpoint: one file, or the shards listed by model.safetensors.index.json. */
typedef struct {
    char *dir;                       /* directory holding config.json etc. */
    llmq_st_file *shards;
    size_t n_shards;
} llmq_ckpt;

/* path may be a directory (model.safetensors or model.safetensors.index.json
 * inside), a .safetensors file, or an index .json file.  A tensor present in
 * two shards, or an index naming a missing tensor, is LLMQ_EFORMAT; the index
 * is read strictly (llmq_json_parse: a \u0000 or duplicate key is refused). */
int llmq_ckpt_open(llmq_ckpt *c, const char *path, llmq_err *err);
void llmq_ckpt_close(llmq_ckpt *c);
/* Borrowed; NULL if absent.  shard (may be NULL) gets the file it lives in. */
const llmq_st_tensor *llmq_ckpt_find(const llmq_ckpt *c, const char *name, const llmq_st_file **shard);
/* llmq_map_release of tensor t's bytes in the shard that holds it (t from
 * this checkpoint; anything else is ignored). */
void llmq_ckpt_release(const llmq_ckpt *c, const llmq_st_tensor *t);
/* The same for the n bytes at p, in whichever shard maps them (none: no-op). */
void llmq_ckpt_release_bytes(const llmq_ckpt *c, const void *p, uint64_t n);
/* Total tensor bytes over all shards. */
uint64_t llmq_ckpt_bytes(const llmq_ckpt *c);

/* Writer: collect tensors (data borrowed until finish), then write one file
 * atomically (temp, fsync, rename).  Data offsets are aligned to 64 bytes by
 * padding the header with spaces, as the reference writer aligns to 8.
 * Tensors are laid out in name order, contiguous (no holes), "__metadata__"
 * first in the header.  _add/_meta reject (LLMQ_EFORMAT, naming the tensor)
 * an empty or non-UTF-8 name, "__metadata__", a duplicate, ndim outside
 * 0..8, a negative or > 2^53 dimension, a size that overflows, NULL data
 * for a non-empty tensor.  finish may be called once; free the writer after. */
typedef struct llmq_st_writer llmq_st_writer;
llmq_st_writer *llmq_st_writer_new(llmq_err *err);
int llmq_st_writer_add(llmq_st_writer *w, const char *name, llmq_dtype dt,
                       int ndim, const int64_t *shape, const void *data, llmq_err *err);
int llmq_st_writer_meta(llmq_st_writer *w, const char *key, const char *value, llmq_err *err);
/* Streaming variant of _add: no data now; during finish, fill(ctx, name,
 * buf, nbytes, err) is called once, in name order, to produce the tensor's
 * bytes into a writer-owned buffer.  Only one such buffer (the largest
 * filled tensor) is held at a time, so a writer can emit tensors far larger
 * in total than memory.  fill returns LLMQ_OK or a status with err filled;
 * a failure aborts the output file. */
typedef int (*llmq_st_fill_fn)(void *ctx, const char *name, void *buf, uint64_t nbytes, llmq_err *err);
int llmq_st_writer_add_fill(llmq_st_writer *w, const char *name, llmq_dtype dt, int ndim,
                            const int64_t *shape, llmq_st_fill_fn fill, void *ctx, llmq_err *err);
int llmq_st_writer_finish(llmq_st_writer *w, const char *path, llmq_err *err);

/* A float tensor (F32, BF16, F16) as fp32 into out (nelem floats); zeros
 * for any other dtype. */
void llmq_st_tensor_f32(const llmq_st_tensor *t, float *out);
/* What a fill callback writes for n fp32 values v in dtype dt (F32, BF16,
 * F16; rounded to nearest even): LLMQ_ENONFINITE naming tensor `name` and
 * the index if a value is NaN or Inf (buf then untouched past it);
 * LLMQ_EINTERNAL for any other dt. */
int llmq_st_put_f32(void *buf, llmq_dtype dt, const float *v, uint64_t n, const char *name, llmq_err *err);
void llmq_st_writer_free(llmq_st_writer *w);

#endif
