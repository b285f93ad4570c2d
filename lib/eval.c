/* eval.c - perplexity protocols, greedy generation, speed, bandwidth. */
#include <math.h>
#include <sys/resource.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include "eval.h"

const char *llmq_ppl_protocol_name(llmq_ppl_protocol p)
{
    return p == LLMQ_PPL_FULL ? "full" : p == LLMQ_PPL_LLAMACPP ? "llamacpp" : "sliding";
}

const char *llmq_ppl_protocol_desc(llmq_ppl_protocol p)
{
    return p == LLMQ_PPL_FULL
        ? "consecutive non-overlapping windows of ctx tokens, tail dropped; tokens 2..ctx of each window scored"
        : p == LLMQ_PPL_LLAMACPP
        ? "llama.cpp llama-perplexity: consecutive windows of ctx tokens, tail dropped; the second half of each window scored"
        : "sliding-window recomputation: a window of ctx tokens every stride tokens; its last token scored";
}

void llmq_ppl_window_span(llmq_ppl_protocol protocol, int ctx, int *first, int *count)
{
    if (protocol == LLMQ_PPL_FULL) {
        /* logits rows 0..ctx-2 predict tokens 1..ctx-1 */
        *first = 0;
        *count = ctx - 1;
    } else if (protocol == LLMQ_PPL_SLIDING) {
        *first = ctx - 2;
        *count = 1;
    } else {
        /* llama-perplexity: first = n_ctx/2, rows first..n_ctx-2 scored */
        *first = ctx / 2;
        *count = ctx - 1 - ctx / 2;
    }
}

/* -log softmax(row)[target] in double: log-sum-exp around the max. */
static double row_nll(const float *row, int vocab, int target)
{
    float mx = row[0];
    for (int i = 1; i < vocab; i++) mx = row[i] > mx ? row[i] : mx;
    double s = 0.0;
    for (int i = 0; i < vocab; i++) s += exp((double)row[i] - (double)mx);
    return log(s) + (double)mx - (double)row[target];
}

int llmq_eval_ppl(llmq_runner *r, const int32_t *ids, size_t n, int ctx, llmq_ppl_protocol protocol, int stride,
                  int max_windows, int bos, float *first_logits, llmq_window_fn cb, void *cb_ctx,
                  llmq_progress_fn progress, void *progress_ctx, llmq_ppl_result *res, llmq_err *err)
{
    memset(res, 0, sizeof *res);
    if (ctx < 2) return llmq_errorf(err, LLMQ_EUSAGE, "context %d is too small (at least 2)", ctx);
    /* a streaming cache scores a window longer than itself a token at a time */
    const llmq_kvcache *kv = llmq_runner_kv(r);
    int stream = kv && ctx > llmq_kv_slots(kv);
    if (stream && (first_logits || cb))
        return llmq_errorf(err, LLMQ_EUSAGE, "logits of a %d-token window are not kept by a streaming cache of %d", ctx,
                           llmq_kv_slots(kv));
    if (ctx > llmq_runner_max_ctx(r) && !stream)
        return llmq_errorf(err, LLMQ_EUSAGE, "context %d exceeds the runner's %d", ctx, llmq_runner_max_ctx(r));
    if (protocol != LLMQ_PPL_SLIDING || stride < 1) stride = ctx;
    size_t total = n < (size_t)ctx ? 0 : (n - (size_t)ctx) / (size_t)stride + 1;
    if (total == 0)
        return llmq_errorf(err, LLMQ_EUSAGE, "text has %zu tokens, fewer than one window of %d", n, ctx);
    if (total > INT32_MAX) total = INT32_MAX;
    int nw = (int)total;
    if (max_windows > 0 && max_windows < nw) nw = max_windows;
    res->windows_total = (int)total;

    int vocab = llmq_runner_model(r)->cfg.vocab;
    int rows = stream ? llmq_kv_slots(kv) : ctx;   /* logits rows of the first forward */
    float *logits = llmq_alloc_aligned((size_t)rows * (size_t)vocab * sizeof(float), err);
    int32_t *win = llmq_malloc((size_t)ctx * sizeof(int32_t), err);
    if (!logits || !win) { free(logits); free(win); return err->code; }
    int first, count, rc = LLMQ_OK;
    llmq_ppl_window_span(protocol, ctx, &first, &count);
    double t0 = llmq_now();
    for (int w = 0; w < nw; w++) {
        memcpy(win, ids + (size_t)w * stride, (size_t)ctx * sizeof(int32_t));
        if (protocol == LLMQ_PPL_LLAMACPP && bos >= 0) win[0] = bos;
        if (stream) {
            /* the cache's first fill in one forward, then a token at a time */
            if ((rc = llmq_runner_forward(r, win, rows, 0, logits, 1, err))) break;
            for (int i = first; i < first + count && i < rows; i++)
                res->nll += row_nll(logits + (size_t)i * vocab, vocab, win[i + 1]);
            for (int i = rows; i < first + count; i++) {
                if ((rc = llmq_runner_forward(r, &win[i], 1, i, logits, 0, err))) break;
                if (i >= first) res->nll += row_nll(logits, vocab, win[i + 1]);
            }
            if (rc) break;
            res->scored += count;
            res->windows++;
            if (progress) progress(progress_ctx, w + 1, nw);
            continue;
        }
        if ((rc = llmq_runner_forward(r, win, ctx, 0, logits, 1, err))) break;
        if (w == 0 && first_logits) memcpy(first_logits, logits, (size_t)ctx * vocab * sizeof(float));
        for (int i = first; i < first + count; i++)
            res->nll += row_nll(logits + (size_t)i * vocab, vocab, win[i + 1]);
        res->scored += count;
        res->windows++;
        if (cb && (rc = cb(cb_ctx, w, win, logits, vocab, first, count, err))) break;
        if (progress) progress(progress_ctx, w + 1, nw);
    }
    res->seconds = llmq_now() - t0;
    res->ppl = res->scored ? exp(res->nll / (double)res->scored) : NAN;
    free(logits);
    free(win);
    return rc;
}

static int argmax(const float *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

int llmq_generate(llmq_runner *r, const int32_t *prompt, int n_prompt, int n_new, int eos,
                  int32_t *out, int *n_out, llmq_err *err)
{
    int vocab = llmq_runner_model(r)->cfg.vocab;
    *n_out = 0;
    if (n_prompt < 1) return llmq_errorf(err, LLMQ_EUSAGE, "the prompt is empty");
    const llmq_kvcache *kv = llmq_runner_kv(r);
    int stream = kv && llmq_kv_query_pos(kv, llmq_kv_slots(kv), 1) >= 0;   /* evicts: unbounded */
    if (stream && n_prompt > llmq_kv_slots(kv))
        return llmq_errorf(err, LLMQ_EUSAGE, "prompt (%d tokens) exceeds the streaming cache's %d positions", n_prompt,
                           llmq_kv_slots(kv));
    if (!stream && n_prompt + n_new > llmq_runner_max_ctx(r))
        return llmq_errorf(err, LLMQ_EUSAGE, "prompt (%d tokens) plus %d new tokens exceed the context %d",
                           n_prompt, n_new, llmq_runner_max_ctx(r));
    float *logits = llmq_malloc((size_t)vocab * sizeof(float), err);
    if (!logits) return err->code;
    memcpy(out, prompt, (size_t)n_prompt * sizeof(int32_t));
    int n = n_prompt, rc = llmq_runner_forward(r, prompt, n_prompt, 0, logits, 0, err);
    for (int i = 0; !rc && i < n_new; i++) {
        int next = argmax(logits, vocab);
        out[n++] = next;
        if (next == eos || i == n_new - 1) break;
        rc = llmq_runner_forward(r, &out[n - 1], 1, n - 1, logits, 0, err);
    }
    free(logits);
    *n_out = n;
    return rc;
}

int llmq_bench(llmq_runner *r, int prefill_tokens, int decode_prompt, int decode_tokens, int zero_fill,
               llmq_bench_result *res, llmq_err *err)
{
    const llmq_model *m = llmq_runner_model(r);
    int vocab = m->cfg.vocab;
    memset(res, 0, sizeof *res);
    int need = LLMQ_MAX(prefill_tokens, (zero_fill ? 0 : decode_prompt) + decode_tokens);
    if (zero_fill && decode_prompt + decode_tokens > llmq_runner_max_ctx(r))
        return llmq_errorf(err, LLMQ_EUSAGE, "benchmark needs a context of %d, the runner has %d",
                           decode_prompt + decode_tokens, llmq_runner_max_ctx(r));
    if (need > llmq_runner_max_ctx(r))
        return llmq_errorf(err, LLMQ_EUSAGE, "benchmark needs a context of %d, the runner has %d", need, llmq_runner_max_ctx(r));
    int32_t *toks = llmq_malloc((size_t)need * sizeof(int32_t), err);
    float *logits = llmq_malloc((size_t)vocab * sizeof(float), err);
    if (!toks || !logits) { free(toks); free(logits); return err->code; }
    /* fixed pseudo-random tokens: speed does not depend on them */
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < need; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        toks[i] = (int32_t)(s % (uint64_t)vocab);
    }
    int rc = llmq_runner_forward(r, toks, LLMQ_MIN(prefill_tokens, 16), 0, logits, 0, err);  /* warm up */
    double t0 = llmq_now();
    if (!rc) rc = llmq_runner_forward(r, toks, prefill_tokens, 0, logits, 0, err);
    double t1 = llmq_now();
    if (!rc && !zero_fill) rc = llmq_runner_forward(r, toks, decode_prompt, 0, logits, 0, err);
    if (!rc && zero_fill) rc = llmq_runner_forward(r, toks, 1, 0, logits, 0, err);   /* then positions 1.. hold zeros */
    double t2 = llmq_now();
    int at = zero_fill ? 0 : decode_prompt;
    for (int i = 0; !rc && i < decode_tokens; i++)
        rc = llmq_runner_forward(r, &toks[at + i], 1, decode_prompt + i, logits, 0, err);
    double t3 = llmq_now();
    if (!rc) {
        res->prefill_tokens = prefill_tokens;
        res->decode_prompt = decode_prompt;
        res->decode_tokens = decode_tokens;
        res->prefill_tok_s = prefill_tokens / (t1 - t0);
        res->decode_tok_s = decode_tokens / (t3 - t2);
        res->decode_gb_s = res->decode_tok_s * (double)llmq_model_decode_bytes(m) / 1e9;
    }
    free(toks);
    free(logits);
    return rc;
}

struct bw_job { const uint64_t *buf; size_t words; uint64_t sums[64]; };

/* Each thread reads its part as four interleaved streams (more misses in
 * flight than one stream gives), summing 64-bit words. */
static void bw_worker(void *ctx, int i, int n)
{
    struct bw_job *j = ctx;
    int64_t lo, hi;
    llmq_split((int64_t)j->words, i, n, 64, &lo, &hi);
    int64_t q = (hi - lo) / 4 & ~(int64_t)1;
    const uint64_t *p = j->buf + lo;
#ifdef __SSE2__
    __m128i a = _mm_setzero_si128(), b = a, c = a, d = a;
    for (int64_t k = 0; k < q; k += 2) {
        a = _mm_add_epi64(a, _mm_load_si128((const __m128i *)(p + k)));
        b = _mm_add_epi64(b, _mm_load_si128((const __m128i *)(p + q + k)));
        c = _mm_add_epi64(c, _mm_load_si128((const __m128i *)(p + 2 * q + k)));
        d = _mm_add_epi64(d, _mm_load_si128((const __m128i *)(p + 3 * q + k)));
    }
    a = _mm_add_epi64(_mm_add_epi64(a, b), _mm_add_epi64(c, d));
    j->sums[i & 63] = (uint64_t)_mm_cvtsi128_si64(a) + (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(a, a));
#else
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (int64_t k = 0; k < q; k++) { a += p[k]; b += p[q + k]; c += p[2 * q + k]; d += p[3 * q + k]; }
    j->sums[i & 63] = a + b + c + d;
#endif
}

double llmq_bandwidth_probe_buf(llmq_pool *pool, const uint64_t *buf, size_t words, double secs)
{
    struct bw_job j = { buf, words, { 0 } };
    llmq_pool_run(pool, bw_worker, &j);      /* warm up */
    double best = 0.0, end = llmq_now() + secs;
    do {
        double t0 = llmq_now();
        llmq_pool_run(pool, bw_worker, &j);
        double dt = llmq_now() - t0;
        if (dt > 0 && (double)(words * 8) / dt > best) best = (double)(words * 8) / dt;
    } while (llmq_now() < end);
    volatile uint64_t sink = j.sums[0];
    (void)sink;
    return best;
}

double llmq_bandwidth_probe(llmq_pool *pool, size_t bytes)
{
    if (bytes < (256u << 20)) bytes = 256u << 20;
    size_t words = bytes / 8;
    uint64_t *buf = llmq_alloc_aligned(words * 8, NULL);
    if (!buf) return 0.0;
    for (size_t i = 0; i < words; i++) buf[i] = i * 0x9e3779b97f4a7c15ull;
    double best = llmq_bandwidth_probe_buf(pool, buf, words, 1.0);
    free(buf);
    return best;
}

uint64_t llmq_peak_rss(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (uint64_t)ru.ru_maxrss * 1024u;
}
