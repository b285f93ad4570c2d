/*
 * gqa.h - converting a multi-head (or grouped-query) checkpoint to fewer
 * key/value heads (Ainslie et al. 2023, "GQA: Training Generalized
 * Multi-Query Transformer Models from Multi-Head Checkpoints", section 2.1).
 *
 * The model's K heads kv_src are pooled into G groups of kv_src / G
 * consecutive heads: query head h then reads new head h / (n_heads / G),
 * which is the union of the old heads its group read.
 *   mean:        each pooled K/V projection row block (and bias) is the mean
 *                of its group's heads (the paper's choice).
 *   activation:  V by weighted least squares on the attention output given
 *                the original attention probabilities, K by gradient steps
 *                on the same layer-local objective: see doc/gqa-pooling.md.
 */
#ifndef LLMQ_ALGO_GQA_H
#define LLMQ_ALGO_GQA_H

#include "../train/tmodel.h"
#include "../runner.h"

/* Check that G key/value heads are reachable from tm: G >= 1 divides the
 * query heads and the current key/value heads.  LLMQ_EUSAGE otherwise,
 * naming the numbers. */
int llmq_gqa_check(const llmq_config *c, int G, llmq_err *err);

/* Mean-pool tm's K/V projections (weights and biases) to G heads and set
 * tm->cfg.n_kv_heads = G.  G equal to the current count changes nothing.
 * Gradient state of the replaced tensors is dropped.  Errors: LLMQ_EUSAGE
 * (see llmq_gqa_check), LLMQ_ENOMEM. */
int llmq_gqa_pool_mean(llmq_tmodel *tm, int G, llmq_err *err);

/* Calibration inputs of every layer's q/k/v projections (input_layernorm
 * outputs) for n_seq sequences of T tokens, collected from the original
 * model with the runner's observer.  X[l] is (n_seq * T, hidden). */
typedef struct {
    float **X;           /* (n_layers) owned */
    int n_layers, n_seq, T, hidden;
} llmq_gqa_calib;
/* tokens (n_seq, T).  Errors: LLMQ_ENOMEM, the runner's. */
int llmq_gqa_collect(const llmq_model *m, llmq_pool *pool, const int32_t *tokens, int n_seq, int T,
                     llmq_gqa_calib *out, llmq_err *err);
void llmq_gqa_calib_release(llmq_gqa_calib *c);

#define LLMQ_GQA_K_STEPS_DEFAULT 24   /* of llmq_gqa_opts_default(), a plain literal (cmd/opts.h OPT_DEF) */

typedef struct {
    int k_steps;         /* Adam steps on each layer's K (0: V only) */
    float k_lr;          /* their step size relative to the rms of the pooled K weights */
    float ridge;         /* V least squares: ridge relative to the mean diagonal */
    void (*progress)(void *ctx, int done, int total);
    void *progress_ctx;
} llmq_gqa_opts;
void llmq_gqa_opts_default(llmq_gqa_opts *o);

/* Per layer, the relative attention-output error
 * sum ||O_pooled - O_orig||^2 / sum ||O_orig||^2 on the calibration set. */
typedef struct {
    double *err_mean;    /* (n_layers) after mean pooling */
    double *err_act;     /* (n_layers) after activation pooling */
    int n_layers;
} llmq_gqa_report;
void llmq_gqa_report_release(llmq_gqa_report *r);

/* Activation-aware pooling of tm (the original model, n_kv_heads heads)
 * to G heads from calibration inputs cal; sets tm->cfg.n_kv_heads = G.
 * rep (may be NULL) gets per-layer errors for mean and activation pooling.
 * Errors: LLMQ_EUSAGE, LLMQ_ENOMEM, LLMQ_ENONFINITE (a singular system). */
int llmq_gqa_pool_activation(llmq_tmodel *tm, int G, const llmq_gqa_calib *cal, const llmq_gqa_opts *o,
                             llmq_gqa_report *rep, llmq_err *err);

#endif
