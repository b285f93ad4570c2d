/*
 * modeldir.h - the one writer of model directories: a Hugging Face
 * checkpoint (smooth, uptrain-gqa, compressed-tensors export) or an llmq
 * packed model (pack, awq) is written the same way, atomically.
 */
#ifndef LLMQ_FORMATS_MODELDIR_H
#define LLMQ_FORMATS_MODELDIR_H

#include <cjson/cJSON.h>
#include "safetensors.h"

/* Changes the source's config.json on its way out (ctx: the caller's). */
typedef int (*llmq_config_edit)(void *ctx, cJSON *config, llmq_err *err);

/* config["torch_dtype"] (and config["dtype"] where present) = dt's
 * Hugging Face name: "float32", "float16" or "bfloat16". */
void llmq_config_set_dtype(cJSON *config, llmq_dtype dt);

/* LLMQ_EUSAGE "OUT: refusing to overwrite an input" when out_dir is the
 * source directory or the source file itself (src_file may be NULL). */
int llmq_modeldir_check(const char *out_dir, const char *src_dir, const char *src_file, llmq_err *err);

/* Write out_dir atomically (a temp directory renamed into place; on any
 * failure nothing is left): model.safetensors from w (finished here, still
 * the caller's to free), config.json - the source's copied byte for byte,
 * or parsed, passed through edit and printed - and the tokenizer and
 * generation files of src_dir that exist.  Checks out_dir as
 * llmq_modeldir_check does first. */
int llmq_modeldir_write(const char *out_dir, const char *src_dir, const char *src_file, llmq_st_writer *w,
                        llmq_config_edit edit, void *ctx, llmq_err *err);

#endif
