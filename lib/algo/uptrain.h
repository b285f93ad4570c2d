/*
 * uptrain.h - continued training of a pooled GQA model (the GQA paper's
 * "uptraining", section 2.1): next-token cross-entropy mixed with KL
 * distillation from the original model's logits, AdamW, on windows of
 * calibration text; resumable from an atomically written state file.
 */
#ifndef LLMQ_ALGO_UPTRAIN_H
#define LLMQ_ALGO_UPTRAIN_H

#include "../train/tmodel.h"
#include "../runner.h"

/* Defaults of llmq_uptrain_opts_default(), plain literals so that the CLI's
 * option table prints and parses the same values (cmd/opts.h OPT_DEF).  60
 * steps x 8 windows x 512 tokens is the budget of every uptrained row in
 * doc/benchmarks.md. */
#define LLMQ_UPTRAIN_STEPS_DEFAULT 60
#define LLMQ_UPTRAIN_BATCH_DEFAULT 8
#define LLMQ_UPTRAIN_SEQLEN_DEFAULT 512
#define LLMQ_UPTRAIN_LR_DEFAULT 1e-3       /* training the K/V projections */
#define LLMQ_UPTRAIN_LR_ALL_DEFAULT 1e-4   /* training every tensor (the CLI's --train all) */
#define LLMQ_UPTRAIN_WARMUP_DEFAULT 5
#define LLMQ_UPTRAIN_WD_DEFAULT 0
#define LLMQ_UPTRAIN_DISTILL_DEFAULT 0.9
#define LLMQ_UPTRAIN_SAVE_EVERY_DEFAULT 20

typedef struct {
    int steps;           /* optimizer steps */
    int batch;           /* windows per step */
    int seqlen;          /* tokens per window */
    float lr;            /* peak learning rate */
    float min_lr_frac;   /* cosine decay to lr * this at the last step */
    int warmup;          /* linear warmup steps */
    float wd;            /* AdamW decoupled weight decay (matrices only) */
    float beta1, beta2;
    float distill;       /* a: loss = (1-a) CE + a KL(teacher || student) */
    float clip;          /* global gradient-norm clip (0 = none) */
    int save_every;      /* write the state every N steps (0 = never) */
    const char *state_path;  /* where the state goes (NULL = no state) */
    int resume;          /* continue from state_path if it exists */
    const char *key;     /* identifies the run: a state with another key is refused */
    int stop_at;         /* stop after this step, saving the state (0 = run to the end);
                            a state already at or past it trains nothing */
    /* progress(ctx, step, steps, loss, tokens_per_second) after each step */
    void (*progress)(void *ctx, int step, int steps, double loss, double tok_s);
    void *progress_ctx;
} llmq_uptrain_opts;

void llmq_uptrain_opts_default(llmq_uptrain_opts *o);

typedef struct {
    int start_step;      /* 0, or the step a resumed run continued after */
    int steps_done;      /* last step completed */
    double first_loss, last_loss;   /* mean loss of the first and last steps run */
    double last_ce, last_kl;        /* mean per-token parts of the last step */
    double seconds;      /* training time of this run */
    double tok_s;        /* trained tokens per second (forward+backward+teacher) */
    int64_t tokens;      /* tokens trained on in this run */
} llmq_uptrain_stats;

/* Train the trainable parameters of tm (llmq_tmodel_set_train) for
 * o->steps steps; step s (1-based) uses windows (s-1)*batch .. s*batch-1 of
 * tokens (n_windows, seqlen).  teacher: the original model (may be NULL
 * when o->distill is 0), run on a runner over pool.  With resume and an
 * existing state file the trainable values, AdamW moments and step are
 * restored from it first.  Errors: LLMQ_EUSAGE (too few windows, a state
 * for another run), LLMQ_EIO, LLMQ_EFORMAT (a damaged state), LLMQ_ENOMEM,
 * LLMQ_ENONFINITE (the loss diverged). */
int llmq_uptrain(llmq_tmodel *tm, const llmq_model *teacher, llmq_pool *pool, const int32_t *tokens,
                 int n_windows, const llmq_uptrain_opts *o, llmq_uptrain_stats *st, llmq_err *err);

/* Write / read the training state (trainable values, AdamW moments, step,
 * key) as a safetensors file; writing is atomic.  Reading checks the key
 * and every tensor's shape. */
int llmq_uptrain_save(const llmq_tmodel *tm, int step, const char *key, const char *path, llmq_err *err);
int llmq_uptrain_load(llmq_tmodel *tm, int *step, const char *key, const char *path, llmq_err *err);

#endif
