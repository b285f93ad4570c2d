/*
 * kernels.h - matrix kernels over weights in any storage type, and the
 * decode attention's tile kernels over the KV cache (at the end).
 *
 * A weight matrix W is [rows, cols] = [out_features, in_features], row-major,
 * as Hugging Face stores nn.Linear weights.  Views are borrowed (usually from
 * an mmap).  Every kernel has a scalar reference (q_ref.c, the oracle) and
 * AVX2 / AVX-512 versions chosen at run time (cpu.c); tests compare them.
 */
#ifndef LLMQ_KERNELS_H
#define LLMQ_KERNELS_H

#include "../base/llmq-int.h"
#include "../base/wmat.h"
#include "../base/pool.h"

/* The llmq_wtype of a ggml type number: F32 (0), F16 (1), BF16 (30) and
 * Q4_0 (2), Q4_1 (3), Q5_0 (6), Q5_1 (7), Q8_0 (8), Q2_K (10), Q3_K (11),
 * Q4_K (12), Q5_K (13), Q6_K (14) to the LLMQ_W_GQ types; -1 for any other
 * number (the kernels cannot run it). */
int llmq_wtype_of_ggml(uint32_t ggml_type);

/* "f32", "bf16", "f16", "q8", "q4", "mx8", "q8_0", ..., "q4_k", "q6_k",
 * "mxfp4", ..., "mxfp8", "q3";
 * "?" for a value outside the enum. */
const char *llmq_wtype_name(llmq_wtype t);

/* Instruction sets, best last. */
typedef enum { LLMQ_ISA_SCALAR = 0, LLMQ_ISA_AVX2, LLMQ_ISA_AVX512 } llmq_isa;

/* The best ISA this CPU supports, limited by the LLMQ_ISA environment
 * variable ("scalar", "avx2", "avx512") if set.  Picked once. */
llmq_isa llmq_cpu_isa(void);
const char *llmq_isa_name(llmq_isa isa);
/* Force an ISA (tests); returns the previous one.  Not thread-safe.  An ISA
 * this CPU lacks is lowered to the best one it has (never an illegal
 * instruction), so compare llmq_cpu_set_isa's effect with llmq_cpu_isa(). */
llmq_isa llmq_cpu_set_isa(llmq_isa isa);
/* The best ISA the hardware supports, ignoring LLMQ_ISA.  AVX2 means
 * avx2+fma+f16c; AVX-512 means avx512 f/bw/vl/dq/vnni as well. */
llmq_isa llmq_cpu_isa_max(void);

/* Check that W is consistent before kernels see it: known type, rows and
 * cols >= 1, data non-NULL, scales present for llmq's quantized types, Q4
 * and Q3 group in {32, 64, 128} dividing cols, MX8 group 32 dividing cols, a ggml
 * block type's group equal to its QK and QK dividing cols, byte size
 * representable.  name labels the message.  Kernels themselves trust W. */
int llmq_wmat_check(const llmq_wmat *W, const char *name, llmq_err *err);

/* y[rows] = W x[cols], threaded over rows on pool (may be NULL). */
void llmq_matvec(llmq_pool *pool, const llmq_wmat *W, const float *x, float *y);

/* Y[n][rows] = X[n][cols] W^T for a batch of n tokens (prefill), threaded.
 * Float weights are converted tile by tile and multiplied with OpenBLAS
 * sgemm; never the whole matrix at once. */
void llmq_matmul(llmq_pool *pool, const llmq_wmat *W, const float *X, int64_t n, float *Y);

/* Row r of W as float (for embedding lookups): out[cols]. */
void llmq_get_row(const llmq_wmat *W, int64_t r, float *out);

/* Bytes of W's storage (data + scales + zeros): what a matvec streams. */
uint64_t llmq_wmat_bytes(const llmq_wmat *W);

/* Bytes of one row of W's data where every row has the same and the
 * runner's tiles (wmat.h's ilv) may hold them: BF16, F16, Q8, Q4; else 0. */
int64_t llmq_wmat_row_bytes(const llmq_wmat *W);
/* Whether W can be laid out in tiles of four rows: one of those types in
 * plain rows, rows % 4 == 0, a row a whole number of 64-byte lines. */
int llmq_wmat_interleavable(const llmq_wmat *W);
/* W's data (rows * llmq_wmat_row_bytes bytes) in that layout, into dst;
 * the view of them is W with data = dst and ilv = LLMQ_ILV_ROWS.  W
 * interleavable. */
void llmq_wmat_interleave(const llmq_wmat *W, uint8_t *dst);
/* Whether W can be laid out in tiles of sixteen rows (wmat.h's
 * LLMQ_ILV_LANES, for W4A8): Q4 in plain rows, rows % 16 == 0. */
int llmq_wmat_lanes_ok(const llmq_wmat *W);
/* The bytes that layout takes: codes, then the tiles' scales and zero points. */
uint64_t llmq_wmat_lanes_bytes(const llmq_wmat *W);
/* W's codes, scales and zero points in that layout into dst
 * (llmq_wmat_lanes_bytes of room); W becomes the view of them (data,
 * lscales, lzeros, ilv = LLMQ_ILV_LANES; scales and zeros unchanged).
 * W lanes_ok. */
void llmq_wmat_interleave_lanes(llmq_wmat *W, uint8_t *dst);
/* Whether this host's W4A8 kernels read that layout fast (AVX2, AVX-512 VNNI). */
int llmq_q4a8_lanes(void);

/* ---- W8A8: int8 weights times int8 activations, exact int32 sums ---- */

/* Per-token symmetric activation quantization: *scale = max|x| / 127,
 * q[i] = round(x[i] / *scale) in [-127, 127]; all-zero x gives scale 0 and
 * q = 0.  x must be finite (non-finite entries give code 0 or +-127 and an
 * unspecified scale, never undefined behaviour). */
void llmq_quantize_act_i8(const float *x, int64_t n, int8_t *q, float *scale);

/* y[rows] = (W.scales[r] * xscale) * sum_j W[r][j] * xq[j] with W of type
 * LLMQ_W_Q8 and xq[cols] from llmq_quantize_act_i8; threaded over rows. */
void llmq_matvec_a8(llmq_pool *pool, const llmq_wmat *W, const int8_t *xq, float xscale, float *y);

/* Y[n][rows]: llmq_matvec_a8 for each token t with Xq[t][cols] and
 * xscales[t]; each thread walks its rows in tiles held in cache across the
 * n tokens. */
void llmq_matmul_a8(llmq_pool *pool, const llmq_wmat *W, const int8_t *Xq, const float *xscales,
                    int64_t n, float *Y);

/* ---- W4A8: int4 weights times int8 activations in blocks of 32 ----
 *
 * The fast int4 decode path, as llama.cpp runs Q4 on CPUs: activations are
 * quantized on the fly per block of 32 columns, and each 32-block's product
 * sum_j (q_j - z) * xq_j is exact in integers (VNNI vpdpbusd / vpmaddubsw),
 * then scaled by (weight group scale * activation block scale) in float. */

#define LLMQ_A8_BLOCK 32

/* Per-block symmetric activation quantization, n % 32 == 0: for each block
 * b of 32, scales[b] = max|x| / 127 over the block and q[i] = round(x[i] *
 * (127 / max|x|)) in [-127, 127] (ties to even, as llmq_quantize_act_i8);
 * a block with max|x| < 2^-100 (all zero, say) gives scale 0 and q = 0.
 * Every ISA gives the same bytes.  x must be finite (non-finite entries
 * give code 0 or +-127 and an unspecified scale, never undefined
 * behaviour). */
void llmq_quantize_act_blocks(const float *x, int64_t n, int8_t *q, float *scales);

/* y[rows] = sum over 32-blocks b of
 *     (scale[r][g(b)] * xscales[b]) * sum_{j in b} (W[r][j] code - zero) * xq[j]
 * with W of type LLMQ_W_Q4 (any group, asymmetric or symmetric) and
 * xq[cols], xscales[cols / 32] from llmq_quantize_act_blocks.  The block
 * sums are exact integers; only the float scaling and the sum over blocks
 * round.  Threaded over rows. */
void llmq_matvec_q4a8(llmq_pool *pool, const llmq_wmat *W, const int8_t *xq, const float *xscales, float *y);

/* Y[n][rows]: llmq_matvec_q4a8 for each token t with Xq[t][cols] and
 * xscales[t][cols / 32] (prefill); each thread walks its rows in tiles held
 * in cache across the n tokens.  Results equal n matvecs bit for bit. */
void llmq_matmul_q4a8(llmq_pool *pool, const llmq_wmat *W, const int8_t *Xq, const float *xscales,
                      int64_t n, float *Y);

/* ---- bf16 weights times bf16 activations (prefill) ----
 *
 * The 16-bit prefill path with AVX512-BF16's vdpbf16ps: two bf16 products
 * per fp32 lane and instruction, twice the fp32 FMA rate.  Activations are
 * rounded to bf16 (llmq_round_bf16), which is what makes it an option
 * (llmq verify --act bf16), not the default: fp32 activations match
 * transformers' fp32 run. */

/* b[i] = x[i] rounded to bf16, nearest even (NaN stays NaN). */
void llmq_round_bf16(const float *x, int64_t n, uint16_t *b);

/* Y[n][rows] = W (of type LLMQ_W_BF16) times the bf16 activations Xb[n][cols]:
 * products exact, sums in fp32 (order unspecified).  Without AVX512-BF16
 * the activations are widened and llmq_matmul runs: the same inputs, the
 * same class of rounding. */
void llmq_matmul_bf16(llmq_pool *pool, const llmq_wmat *W, const uint16_t *Xb, int64_t n, float *Y);
/* Many small bf16 products on the caller's thread (awq's clip search):
 * B (m, k) packed once into pairs, Bp[((j / 16) * (k / 2) + p) * 32 +
 * 2 (j % 16) + e] = B[j][2p + e] (zero past m), in llmq_bf16_pairs_size(m, k)
 * elements; then C[i * ldc + j] = sum_k A[i][k] B[j][k] (i < n, j < m,
 * A (n, k) bf16 row-major) for each A, sums in fp32.  k even. */
int64_t llmq_bf16_pairs_size(int64_t m, int64_t k);
void llmq_bf16_pack_pairs(const uint16_t *B, int64_t m, int64_t k, uint16_t *Bp);
void llmq_gemm_bf16_pairs(const uint16_t *A, int64_t n, const uint16_t *Bp, int64_t m, int64_t k, float *C, int64_t ldc);

/* 1 where llmq_matmul_bf16 runs on a bf16 dot product (AVX512-BF16 under
 * the current ISA), 0 where it widens to fp32. */
int llmq_has_bf16_dot(void);

/* ---- decode attention: one query over a tile of the KV cache ----
 *
 * lib/kvcache.c's decode step reads its cache a tile of m <= LLMQ_ATTN_TILE
 * positions at a time into L1 (keys and values as f32 rows) and runs these
 * two products on it, for the `group` query heads (GQA) that share one KV
 * head of hd channels.  Keys are kept before RoPE (KVQuant), so the
 * scores rotate each key once and share it over the group.  The SIMD
 * versions transpose the rotated keys in registers so that each key is a
 * lane; any sum order (tests compare with the oracle to a tolerance). */

#define LLMQ_ATTN_TILE 32

/* S[h * ldS + r] = scale * Q_h . rope(K_r, p0 + r) for h < group, r < m:
 * K (m, hd) keys before RoPE, Q (group, hd) queries already rotated, rope
 * the rotate-half RoPE of llmq_op_rope_fwd with the cos and sin rows
 * cs + p * hd / 2 and sn + p * hd / 2 of position p.  hd even, m >= 1. */
void llmq_attn_scores(const float *K, int m, int hd, int p0, const float *cs, const float *sn, const float *Q,
                      int group, float scale, float *S, size_t ldS);
/* llmq_attn_scores with the rotated keys and the queries rounded to bf16
 * (nearest even) and their products summed in fp32: twice the product
 * rate where the CPU has a bf16 dot product (AVX512-BF16), else the fp32
 * kernel.  For caches of 4 bits and fewer, whose own rounding (a sixteenth
 * of a channel's range) dwarfs bf16's 2^-9 relative. */
void llmq_attn_scores_bf16(const float *K, int m, int hd, int p0, const float *cs, const float *sn, const float *Q,
                           int group, float scale, float *S, size_t ldS);
/* O[h * hd + c] += sum_{r < m} P[h * ldP + r] * V[r * hd + c] for h < group,
 * c < hd: V (m, hd) the tile's values, P the softmax weights. */
void llmq_attn_values(const float *P, size_t ldP, int m, const float *V, int hd, int group, float *O);

/* KV-cache rows of uniform codes to f32, for the same tile reads: m rows
 * of hd codes of `bits` bits (8, 4 or 2, whole bytes as
 * llmq_kvq_whole_bytes), row r at src + r * rowb, codes in order, least
 * significant bits first (llmq_kvq_pack).
 * _channels: out[r * hd + c] = lo[c] + step[c] * code, ranges per channel
 * (the keys).  _groups: ng groups of hd / ng channels a row, group k's
 * codes at src + r * rowb + k * llmq_kvq_row_bytes(hd / ng, bits), its
 * range the f16 pair par[(r * ng + k) * 2] (step) and [... + 1] (lo) (the
 * values).  The product and the sum are rounded one after the other, as
 * the oracle's plain C does: every ISA gives the same floats. */
void llmq_kv_deq_channels(const uint8_t *src, size_t rowb, int m, int hd, int bits, const float *lo,
                          const float *step, float *out);
void llmq_kv_deq_groups(const uint8_t *src, size_t rowb, const uint16_t *par, int ng, int m, int hd, int bits,
                        float *out);

/* llmq_attn_scores_bf16 on the keys that llmq_kv_deq_channels would read
 * (same code arguments, m <= LLMQ_ATTN_TILE rows), straight from their
 * 4-bit codes: each key lo[c] + step[c] * code (here with one rounding,
 * an FMA), rotated and rounded to bf16 in registers.  Returns 1 when done,
 * 0 (S untouched) where the ISA has no bf16 dot product or does not take
 * the shape: the caller then reads the tile with llmq_kv_deq_channels. */
int llmq_attn_scores_codes(const uint8_t *src, size_t rowb, int m, int hd, int bits, const float *lo, const float *step,
                           int p0, const float *cs, const float *sn, const float *Q, int group, float scale, float *S,
                           size_t ldS);

/* llmq_attn_values on the tile that llmq_kv_deq_groups would read (same
 * arguments), straight from its codes, for 4- and 2-bit caches: O[h * hd
 * + c] += sum_{r < m} P[h * ldP + r] * (lo + step * code), where each
 * P * step is rounded to bf16 (nearest even) and vdpbf16ps multiplies it
 * by two rows' codes at once.  The rounding is of the order of
 * llmq_attn_scores_bf16's.  Returns 1 when done, 0 (O untouched) where the
 * ISA has no bf16 dot product or does not take the shape: the caller then
 * reads the tile with llmq_kv_deq_groups and llmq_attn_values. */
int llmq_attn_values_codes(const float *P, size_t ldP, int m, const uint8_t *src, size_t rowb, const uint16_t *par,
                           int ng, int hd, int bits, int group, float *O);

#endif
