/*
 * rotate.h - an orthogonal rotation of the residual stream folded into
 * the weights (QuaRot, Ashkboos et al. 2024, arXiv:2404.00456; the
 * randomized Hadamard of QuIP#): the rotated checkpoint computes the same
 * function, while the linears' inputs and weights lose their outlier
 * channels, which block formats and 4-bit weights quantize better.
 *
 * The residual stream h becomes h Q with Q = D H / sqrt(B) per block of B
 * channels: D a diagonal of random signs (from a seed), H the Sylvester
 * Hadamard matrix of order B (a power of two dividing hidden_size; the
 * whole width when it is one).  RMSNorm commutes with Q (rms(h Q) =
 * rms(h)), so once each norm's weight gamma is folded into the linears it
 * feeds (and set to ones):
 *   embed_tokens             E  -> E Q
 *   q/k/v, gate/up, lm_head  W  -> W diag(gamma) Q     (they read h)
 *   o_proj, down_proj        W  -> Q^T W, bias b -> b Q (they write h)
 * Tied embeddings are untied: the head becomes its own tensor.
 *
 * With online (QuaRot's online Hadamard, sec. 4), two more rotations, by
 * the normalized Sylvester Hadamard matrix (no signs: H / sqrt(n), its own
 * inverse):
 *   down_proj            W -> W Q_ff, Q_ff = H_F / sqrt(F) per block of F
 *                        columns, F the largest power of two dividing
 *                        intermediate_size; the forward applies Q_ff to
 *                        down_proj's input online (forward.c), so
 *                        down(h Q_ff) = down(h)
 *   v_proj (and bias)    rows per head -> H_d / sqrt(d), d = head_dim
 *   o_proj               columns per head -> the same: exact offline, no
 *                        run-time cost (attention mixes values per head)
 * With online_keys too, the KV cache keeps its keys rotated per head
 * online (kvcache.h).  That one is opt-in: on llmq's per-channel key
 * ranges it measured no KV cache quality gain (doc/benchmarks.md, Online
 * Hadamard) and it costs a transform per key per read.  config.json
 * records it as "llmq_online_hadamard": {"ff_block": F, "head_dim": d,
 * "keys": true|false}; every llmq forward then applies it
 * (formats/config.h).
 */
#ifndef LLMQ_ROTATE_H
#define LLMQ_ROTATE_H

#include "../model.h"

typedef struct {
    int block;           /* B: a power of two dividing hidden; 0: the largest such */
    uint64_t seed;       /* the signs D */
    int online;          /* also the online Hadamard transforms (above); needs head_dim a power of two */
    int online_keys;     /* online, and the KV cache's keys too (implies online) */
} llmq_rotate_opts;

/* The block the options give for hidden size H: B itself when it is a
 * power of two dividing H, the largest power of two dividing H for 0;
 * -1 otherwise. */
int llmq_rotate_block(int H, int block);

/* x (n, a multiple of B) <- x Q, blockwise (signs then the fast
 * Walsh-Hadamard transform scaled by 1 / sqrt(B)), in double.  signs: n
 * values +-1, or NULL: none (Q = H / sqrt(B)). */
void llmq_rotate_row(double *x, int n, int B, const double *signs);

/* The n signs of seed: +-1 from a splitmix64 stream. */
void llmq_rotate_signs(uint64_t seed, int n, double *signs);

/* Write the rotated checkpoint of m to out_dir (atomic): model.safetensors
 * in dtype dt (F32, BF16 or F16), config.json (dtype; tie_word_embeddings
 * false; online, llmq_online_hadamard with "keys" o->online_keys),
 * tokenizer files.  meta: extra string metadata pairs.  A model that
 * already has online transforms is rotated (its residual stream; they
 * commute) and keeps them.  Errors: LLMQ_EUSAGE (a block that does not
 * fit, an output dtype), LLMQ_EIO, LLMQ_ENOMEM, LLMQ_ENONFINITE,
 * LLMQ_EUNSUPPORTED (a packed model; online with head_dim no power of
 * two, or on a model that has online transforms already: they are their
 * own inverse, a second would undo the first). */
int llmq_rotate_write(const llmq_model *m, const llmq_rotate_opts *o, llmq_dtype dt, const char *out_dir,
                      const char *const *keys, const char *const *vals, int n, llmq_err *err);

#endif
