/*
 * smooth.h - SmoothQuant (Xiao et al. 2023, arXiv:2211.10438) and Outlier
 * Suppression+ (Wei et al. 2023, arXiv:2304.09145): per-channel scales (and
 * OS+ shifts) that move activation outliers into the weights, folded into
 * the checkpoint so that the model computes the same function in exact
 * arithmetic while its linear inputs become easy to quantize to int8.
 *
 * Four pairs per decoder layer, each "producer -> consumers":
 *   QKV     input_layernorm            -> q/k/v_proj columns
 *   VO      v_proj rows (+ bias)       -> o_proj columns; with GQA one scale
 *           per KV channel, shared by the query heads that read that group
 *   GATEUP  post_attention_layernorm   -> gate/up_proj columns
 *   UPDOWN  up_proj rows (+ bias)      -> down_proj columns (SwiGLU is linear in up)
 * The activation X of a pair becomes (X - z) / s and the consumer weight
 * W diag(s); the consumer bias absorbs W z.  A shift z needs a producer that
 * can subtract it: only v_proj's bias can (softmax rows sum to 1, so the
 * attention output moves by exactly -z), so OS+ shifts the VO pair of
 * Llama models (attention_bias) and scales only elsewhere.  RMSNorm has no
 * bias and silu(gate)*up is not affine in a per-channel shift.
 */
#ifndef LLMQ_SMOOTH_H
#define LLMQ_SMOOTH_H

#include "../model.h"
#include "../base/pool.h"
#include "../../calib/stats.h"
#include "../../formats/safetensors.h"

typedef enum { LLMQ_SMOOTH_SQ = 0, LLMQ_SMOOTH_OSPLUS } llmq_smooth_method;
typedef enum { LLMQ_PAIR_QKV = 0, LLMQ_PAIR_VO, LLMQ_PAIR_GATEUP, LLMQ_PAIR_UPDOWN, LLMQ_PAIR_COUNT } llmq_pair;

const char *llmq_pair_name(llmq_pair p);   /* "qkv", "vo", "gateup", "updown" */

typedef struct {
    llmq_smooth_method method;
    double alpha;        /* SmoothQuant migration strength in [0, 1] when !auto_alpha */
    int auto_alpha;      /* SmoothQuant: per pair, the alpha of 0, 0.05, ..., 1 with the least error */
    int shift;           /* OS+: shift where the architecture allows it (VO of Llama) */
    int full_grid;       /* OS+: score all 81 thresholds, not coarse to fine (at most 27) */
    unsigned pairs;      /* bit (1 << llmq_pair) set: smooth this pair; others keep s = 1 */
    llmq_pool *pool;     /* borrowed, may be NULL */
    const char *stats_path;  /* where the statistics came from, for messages; may be NULL */
} llmq_smooth_opts;

typedef struct {
    int dim;             /* channels of the scale: hidden, kv_dim (VO), intermediate */
    float *scale;        /* (dim) s_j > 0 */
    float *shift;        /* (dim) z_j, or NULL */
    double param;        /* SmoothQuant: alpha; OS+: the threshold t; 0 if not smoothed */
    double err_before;   /* W8A8 output MSE of the consumers on the kept tokens, s = 1 */
    double err_after;    /* the same with the chosen s (and z); -1 when not measured */
} llmq_smooth_pair;

typedef struct {
    int n_layers;
    llmq_smooth_pair *p; /* (n_layers * LLMQ_PAIR_COUNT) */
    int shifted;         /* some shift is non-zero: the output needs attention biases */
} llmq_smooth_plan;

/* LLMQ_EUNSUPPORTED for a model with online Hadamard transforms (llmq
 * rotate --online-hadamard): down_proj's input is rotated online, so its
 * smoothing scales cannot fold into up_proj; LLMQ_OK otherwise. */
int llmq_smooth_refuse_online(const llmq_model *m, llmq_err *err);

/* Compute scales (and shifts) for every layer of m from statistics st.
 * Error searches (auto alpha, OS+) run on st's token subsample and need
 * one (LLMQ_EUSAGE otherwise).  Errors: LLMQ_EUSAGE, LLMQ_ENOMEM,
 * LLMQ_EUNSUPPORTED (a packed model, online Hadamard transforms). */
int llmq_smooth_plan_compute(const llmq_model *m, const llmq_stats *st, const llmq_smooth_opts *o,
                             llmq_smooth_plan *plan, llmq_err *err);
void llmq_smooth_plan_release(llmq_smooth_plan *plan);

/* W8A8 output error (mean squared) of consumer W (rows, cols; fp32) on
 * tokens X (n, cols) after smoothing by s (cols) and shift z (cols, may be
 * NULL): || Q_tok((X - z)/s) Q_row(W diag s)^T - (X - z) W^T ||^2 / (n rows),
 * Q_tok per-token dynamic int8, Q_row per-output-channel int8 (pack's int8).
 * The quantized product runs on the runner's W8A8 kernel (llmq_matmul_a8: exact
 * int32 sums of codes).  ref (n, rows) must hold X W^T and wz (rows) W z
 * (NULL when z is NULL). */
double llmq_smooth_error(llmq_pool *pool, const float *W, int64_t rows, int64_t cols, const float *X, int64_t n,
                         const float *s, const float *z, const float *ref, const float *wz, llmq_err *err);

/* Search grid points 0..K (K >= 0) for the least loss(ctx, k), coarse to fine:
 * every step-th point (and K), then the step - 1 points on each side of
 * the best of those; step 1 scores every point.  Ties go to the lower k.
 * Returns the best k and its loss in *best, or -1 as soon as loss returns
 * a negative value (its error). */
typedef double (*llmq_grid_loss)(void *ctx, int k);
int llmq_grid_search(int K, int step, llmq_grid_loss loss, void *ctx, double *best);

/* Write the smoothed checkpoint to out_dir (atomic): model.safetensors in
 * dtype dt (F32, BF16 or F16), config.json (dtype, and attention_bias set
 * when shifts added biases), tokenizer files.  meta: extra string metadata
 * pairs (keys[i], vals[i]), n of them.  Errors: LLMQ_EIO, LLMQ_EUSAGE,
 * LLMQ_ENOMEM, LLMQ_ENONFINITE. */
int llmq_smooth_write(const llmq_model *m, const llmq_smooth_plan *plan, llmq_dtype dt, const char *out_dir,
                      const char *const *keys, const char *const *vals, int n, llmq_err *err);

/* Statistics of the smoothed model, derived from those of m exactly
 * (absmax, min, max, sum, sum of squares, token rows; mean |x| exactly where
 * no shift applies, else estimated from the token rows).  out is
 * allocated; free with llmq_stats_release. */
int llmq_smooth_stats(const llmq_model *m, const llmq_stats *in, const llmq_smooth_plan *plan, llmq_stats *out,
                      llmq_err *err);

#endif
