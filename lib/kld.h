/*
 * kld.h - KL divergence of a model's next-token distributions against a
 * base model's, as llama.cpp's perplexity tool does it in two runs:
 * `verify BASE --kld-save base.kld` stores the base's distributions,
 * `verify QUANT --kld base.kld` compares.
 *
 * The base file keeps, for every scored token, the top-K log-probabilities
 * (with their ids) and the token's nll: K+1 bins (the top K and the rest).
 * KLD is computed between those coarsened distributions,
 *   KL_t = sum_{i in topK} p_i log(p_i / q_i) + p_R log(p_R / q_R),
 * p_R = 1 - sum p_i, q_R = 1 - sum q_i, which is a lower bound of the full
 * KL (log-sum inequality) and equals it as K grows; K = 64 by default.
 */
#ifndef LLMQ_KLD_H
#define LLMQ_KLD_H

#include "eval.h"

typedef struct llmq_kld llmq_kld;

/* A recorder for the base run: vocab entries per row, top k kept. */
int llmq_kld_recorder_new(llmq_kld **out, int vocab, int k, llmq_err *err);
/* A comparer: loads path, checks it was made for the same tokens (crc32 of
 * the ids), protocol, ctx and window count.  Errors: LLMQ_EFORMAT,
 * LLMQ_EUSAGE (made for another text, protocol or context). */
int llmq_kld_load(llmq_kld **out, const char *path, int vocab, const int32_t *ids, size_t n_ids,
                  llmq_ppl_protocol protocol, int ctx, int windows, llmq_err *err);
void llmq_kld_free(llmq_kld *k);

/* The llmq_window_fn for llmq_eval_ppl: records or compares each window. */
int llmq_kld_window(void *ctx, int window, const int32_t *tokens, const float *logits,
                    int vocab, int first, int count, llmq_err *err);

/* Write a recorder's data (after llmq_eval_ppl) with what it was made for. */
int llmq_kld_save(llmq_kld *k, const char *path, const int32_t *ids, size_t n_ids,
                  llmq_ppl_protocol protocol, int ctx, int windows, llmq_err *err);

typedef struct {
    double kld_mean, kld_p99, kld_max;
    double kld_se;           /* standard error of kld_mean, windows as blocks */
    double ln_ppl_ratio;     /* mean over tokens of nll - base nll = ln(ppl / ppl_base) */
    double ln_ppl_ratio_se;  /* its standard error, windows as blocks */
    double top1_agree;       /* fraction of tokens whose argmax equals the base's */
    double ppl_base;         /* the base run's perplexity over the same tokens */
    int64_t tokens;
    int topk;
} llmq_kld_result;

/* Results of a comparer after llmq_eval_ppl. */
int llmq_kld_result_get(llmq_kld *k, llmq_kld_result *r, llmq_err *err);

#endif
