/*
 * eval.h - what `llmq verify` measures: perplexity under two protocols,
 * greedy generation, prefill/decode speed, and the read-bandwidth probe.
 */
#ifndef LLMQ_EVAL_H
#define LLMQ_EVAL_H

#include "runner.h"

typedef enum {
    LLMQ_PPL_FULL = 0,   /* non-overlapping windows of ctx, tokens 2..ctx of each scored */
    LLMQ_PPL_LLAMACPP,   /* llama.cpp llama-perplexity: windows of ctx, second half scored */
    LLMQ_PPL_SLIDING     /* window w = tokens [w * stride, w * stride + ctx), its last token scored:
                          * sliding-window recomputation, each token after ctx - 1 others */
} llmq_ppl_protocol;

const char *llmq_ppl_protocol_name(llmq_ppl_protocol p);
/* One line spelling the protocol out, for reports. */
const char *llmq_ppl_protocol_desc(llmq_ppl_protocol p);

/* Called once per window with its logits (ctx, vocab); positions
 * [first, first + count) are scored: logits row i predicts tokens[i + 1]. */
typedef int (*llmq_window_fn)(void *ctx, int window, const int32_t *tokens, const float *logits,
                              int vocab, int first, int count, llmq_err *err);
typedef void (*llmq_progress_fn)(void *ctx, int done, int total);

typedef struct {
    double nll;              /* total negative log-likelihood, nats */
    int64_t scored;          /* tokens scored */
    int windows;             /* windows evaluated */
    int windows_total;       /* windows the text holds */
    double ppl;              /* exp(nll / scored) */
    double seconds;
} llmq_ppl_result;

/* Perplexity of ids[0..n) under protocol with windows of ctx tokens, at
 * most max_windows of them (0 = all); LLMQ_PPL_SLIDING windows start
 * every stride tokens (the other protocols ignore stride).  bos >= 0 replaces the first token of
 * each llama.cpp window, as llama-perplexity does for models that add BOS.
 * first_logits (may be NULL) receives the first window's (ctx, vocab)
 * logits; cb (may be NULL) sees every window.  Errors: LLMQ_EUSAGE when
 * the text is shorter than one window. */
int llmq_eval_ppl(llmq_runner *r, const int32_t *ids, size_t n, int ctx, llmq_ppl_protocol protocol, int stride,
                  int max_windows, int bos, float *first_logits, llmq_window_fn cb, void *cb_ctx,
                  llmq_progress_fn progress, void *progress_ctx, llmq_ppl_result *res, llmq_err *err);

/* Scored positions of one window: [*first, *first + *count). */
void llmq_ppl_window_span(llmq_ppl_protocol protocol, int ctx, int *first, int *count);

/* Greedy decoding: out gets the prompt followed by up to n_new tokens
 * (stops after eos when eos >= 0).  *n_out is the total length. */
int llmq_generate(llmq_runner *r, const int32_t *prompt, int n_prompt, int n_new, int eos,
                  int32_t *out, int *n_out, llmq_err *err);

typedef struct {
    double prefill_tok_s;    /* one window of prefill_tokens */
    double decode_tok_s;     /* decode_tokens after a prompt of decode_prompt */
    int prefill_tokens, decode_prompt, decode_tokens;
    double decode_gb_s;      /* weight bytes streamed per second while decoding */
} llmq_bench_result;

/* Prefill speed on one window of prefill_tokens, then decode_tokens
 * single-token steps after decode_prompt positions: a prefill of them, or
 * with zero_fill whatever the prefill measurement left in the cache
 * (zeros past its window, the cache of a fresh runner being zeroed): a
 * decode step reads and multiplies every position all the same, whatever
 * it holds, so long contexts cost no prefill. */
int llmq_bench(llmq_runner *r, int prefill_tokens, int decode_prompt, int decode_tokens, int zero_fill,
               llmq_bench_result *res, llmq_err *err);

/* Read bandwidth of this machine in bytes/s: sums a buffer of bytes
 * (>= 256 MiB, much larger than caches) with every thread of pool. */
double llmq_bandwidth_probe(llmq_pool *pool, size_t bytes);
/* The same over a caller's buffer (16-byte aligned, words a multiple of
 * 8 per thread), best of the passes that fit in secs (at least one). */
double llmq_bandwidth_probe_buf(llmq_pool *pool, const uint64_t *buf, size_t words, double secs);

/* Peak resident set size of this process, bytes. */
uint64_t llmq_peak_rss(void);

#endif
