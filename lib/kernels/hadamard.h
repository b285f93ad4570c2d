/*
 * hadamard.h - the fast Walsh-Hadamard transform (FWHT) on float rows: the
 * online rotations of `llmq rotate --online-hadamard` (QuaRot, Ashkboos et
 * al. 2024, sec. 4: down_proj's input, the keys of the KV cache).
 *
 * Each block of B consecutive values (B a power of two) of a row x becomes
 * x_blk H_B / sqrt(B), H_B the Sylvester Hadamard matrix,
 * H_B[i][j] = (-1)^popcount(i & j): log2(B) stages of butterflies
 * (u, v) -> (u + v, u - v) of growing span, then one scaling.  H_B / sqrt(B)
 * is orthogonal and symmetric, so the transform is its own inverse.
 *
 * llmq_fwht_ref is the oracle (plain loops, stage after stage);
 * llmq_fwht is built per ISA (GCC target_clones) and does the same
 * additions in the same order: the two agree bit for bit.
 */
#ifndef LLMQ_HADAMARD_H
#define LLMQ_HADAMARD_H

#include "../base/llmq-int.h"

/* x (n, cols) <- each block of B values of each row times H_B / sqrt(B),
 * in place.  B a power of two dividing cols (the caller's contract: not
 * checked here); n = 0 does nothing. */
void llmq_fwht_ref(float *x, int64_t n, int64_t cols, int B);
void llmq_fwht(float *x, int64_t n, int64_t cols, int B);

#endif
