/*
 * awq_shard.h - AWQ run in pieces: a range of layers searched alone
 * (llmq_awq_opts.layer_lo/hi with propagate_fp) is saved as a shard file,
 * and the shards of every layer are joined into one llmq_awq_result that
 * packs to the same bytes as a single run.
 *
 * A shard is a safetensors file (llmq-awq-shard(5) in llmq-packed(5)):
 *   layers.L.s.{qkv,o,gate_up,down}       F32 (dim)      input-channel scales
 *   layers.L.clip.<linear>                F32 (rows, cols / group, 2)   when clipped
 *   layers.L.{codes,scales,zeros}.<linear> U8 / F16 / U8  with gptq
 *   layers.L.{codes,bscales,tscale}.<linear> U8 (rows, cols / 2, MXFP8 cols) /
 *                                         U8 (rows, cols / block) / F32 (1)
 *                                         with gptq and a block format
 *   layers.L.record                       F64 (LLMQ_AWQ_RECORD_LEN)  the per-layer record
 * and one metadata key, "llmq.awq_shard", a JSON object: version, layers
 * [lo, hi], n_layers, model_digest, the search options (a block format
 * adds "format" and "mx_rule"), and "info" (what
 * the caller adds: calibration text digest, command).  Shards join only
 * when everything but "layers" is equal and the ranges tile 0..n_layers.
 */
#ifndef LLMQ_ALGO_AWQ_SHARD_H
#define LLMQ_ALGO_AWQ_SHARD_H

#include <cjson/cJSON.h>
#include "awq.h"

#define LLMQ_AWQ_SHARD_VERSION 1
#define LLMQ_AWQ_RECORD_LEN 72

/* Write layers [o.layer_lo, o.layer_hi) of res to path (atomically).
 * model_digest: llmq_model_digest of the searched model; info: borrowed,
 * copied into the metadata. */
int llmq_awq_shard_save(const llmq_awq_result *res, const char *model_digest, const cJSON *info, const char *path,
                        llmq_err *err);

/* Join the n shard files into res (for m, whose llmq_model_digest is
 * model_digest): LLMQ_EFORMAT naming the file for a shard that is not one,
 * of another model, run or version, ranges that overlap or leave a layer
 * out, a tensor of the wrong shape or a scale that is not finite and
 * positive.  *info: the shards' "info" (owned by the caller).  On
 * success res owns its arrays: llmq_awq_release. */
int llmq_awq_shard_join(const llmq_model *m, const char *model_digest, const char *const *paths, int n,
                        llmq_awq_result *res, cJSON **info, llmq_err *err);

#endif
