/*
 * imatrix.h - calibration statistics as llama.cpp's importance matrix, the
 * file `llama-quantize --imatrix FILE` reads (`llmq calibrate
 * --imatrix-out`).
 *
 * The file is GGUF (gguf.h), the format llama-imatrix writes by default and
 * the one llama-quantize tries first:
 *   general.type        string  "imatrix"
 *   imatrix.datasets    array of string: the calibration text's path
 *   imatrix.chunk_count u32     windows run (--samples)
 *   imatrix.chunk_size  u32     tokens per window (--seqlen)
 *   llmq.model_digest, llmq.text_digest   strings, provenance
 * and, for every layer L and every decoder linear W of gguf.h's table
 * (blk.L.attn_q.weight ... blk.L.ffn_down.weight), two F32 tensors:
 *   blk.L.W.in_sum2  (in_features)  sum over tokens of x_j^2, x the linear's input
 *   blk.L.W.counts   (1)            the number of tokens summed
 * llama-quantize weights input channel j by in_sum2[j] / counts.  q, k and
 * v (and gate and up) get the same values: they read the same input.
 */
#ifndef LLMQ_CALIB_IMATRIX_H
#define LLMQ_CALIB_IMATRIX_H

#include "stats.h"

/* Write the importance matrix of s to path ("-": stdout) atomically.
 * dataset (may be NULL: none recorded) names the calibration text.
 * Errors: LLMQ_EUSAGE (statistics with no tokens), LLMQ_ENONFINITE (a sum
 * of squares beyond float's range, naming layer and site), LLMQ_EIO,
 * LLMQ_ENOMEM. */
int llmq_imatrix_save(const llmq_stats *s, const char *dataset, const char *path, llmq_err *err);

#endif
