/* kld.c - base distributions (top-K + rest) and KL divergence against them. */
#include <math.h>
#include <stdio.h>
#include <zlib.h>
#include "kld.h"
#include "../formats/safetensors.h"

struct llmq_kld {
    int comparing;
    int vocab, k;
    int64_t n, cap;          /* tokens recorded / compared so far, room */
    int32_t *ids;            /* (cap, k) top ids, best first */
    float *logp;             /* (cap, k) their log-probs */
    float *nll;              /* (cap) base nll of the actual next token */
    uint32_t *wcrc;          /* (windows) crc32 of each window's tokens */
    int n_windows, cap_windows;
    llmq_st_file file;       /* comparing: the loaded base */
    int have_file;
    double *kl;              /* comparing: per-token KL */
    double *wsum;            /* comparing: (n_windows, 3) per window: sum KL, sum nll - base nll, tokens */
    int64_t agree;
    double nll_base;
    float *lsm;              /* (vocab) scratch: log-softmax of one row */
};

void llmq_kld_free(llmq_kld *k)
{
    if (!k) return;
    if (!k->comparing) { free(k->ids); free(k->logp); free(k->nll); free(k->wcrc); }
    if (k->have_file) llmq_st_close(&k->file);
    free(k->kl);
    free(k->wsum);
    free(k->lsm);
    free(k);
}

int llmq_kld_recorder_new(llmq_kld **out, int vocab, int k, llmq_err *err)
{
    *out = NULL;
    if (k < 1 || k > vocab) return llmq_errorf(err, LLMQ_EUSAGE, "top-k %d must be in 1..%d", k, vocab);
    llmq_kld *r = llmq_calloc(1, sizeof *r, err);
    if (!r) return err->code;
    r->vocab = vocab;
    r->k = k;
    if (!(r->lsm = llmq_malloc((size_t)vocab * sizeof(float), err))) { free(r); return err->code; }
    *out = r;
    return LLMQ_OK;
}

/* log-softmax of row into out (double accumulation). */
static void log_softmax(const float *row, int V, float *out)
{
    float mx = row[0];
    for (int i = 1; i < V; i++) mx = row[i] > mx ? row[i] : mx;
    double s = 0;
    for (int i = 0; i < V; i++) s += exp((double)row[i] - mx);
    double lse = log(s) + mx;
    for (int i = 0; i < V; i++) out[i] = (float)((double)row[i] - lse);
}

/* Indices of the k largest of v[0..V), best first (insertion into a sorted
 * list of k: fine for k << V since most entries fail the first compare). */
static void top_k(const float *v, int V, int k, int32_t *idx, float *val)
{
    int n = 0;
    for (int i = 0; i < V; i++) {
        float x = v[i];
        if (n == k && !(x > val[k - 1])) continue;
        int j = n < k ? n++ : k - 1;
        while (j > 0 && val[j - 1] < x) { val[j] = val[j - 1]; idx[j] = idx[j - 1]; j--; }
        val[j] = x;
        idx[j] = i;
    }
}

static int grow(llmq_kld *k, int64_t need, llmq_err *err)
{
    if (need <= k->cap) return LLMQ_OK;
    int64_t cap = k->cap ? k->cap : 4096;
    while (cap < need) cap *= 2;
    int32_t *ni = realloc(k->ids, (size_t)cap * k->k * sizeof(int32_t));
    if (ni) k->ids = ni;
    float *nl = realloc(k->logp, (size_t)cap * k->k * sizeof(float));
    if (nl) k->logp = nl;
    float *nn = realloc(k->nll, (size_t)cap * sizeof(float));
    if (nn) k->nll = nn;
    if (!ni || !nl || !nn) return llmq_errorf(err, LLMQ_ENOMEM, "out of memory recording KLD base");
    k->cap = cap;
    return LLMQ_OK;
}

static uint32_t ids_crc(const int32_t *ids, size_t n)
{
    uLong c = crc32_z(0L, Z_NULL, 0);
    for (size_t i = 0; i < n; i++) {
        uint8_t b[4];
        llmq_put_le32(b, (uint32_t)ids[i]);
        c = crc32_z(c, b, 4);
    }
    return (uint32_t)c;
}

int llmq_kld_window(void *ctx, int window, const int32_t *tokens, const float *logits,
                    int vocab, int first, int count, llmq_err *err)
{
    llmq_kld *k = ctx;
    if (vocab != k->vocab) return llmq_errorf(err, LLMQ_EUSAGE, "KLD base has vocabulary %d, this model %d", k->vocab, vocab);
    /* the window's tokens as scored (after any BOS substitution) */
    uint32_t crc = ids_crc(tokens, (size_t)(first + count + 1));
    if (!k->comparing) {
        int rc = grow(k, k->n + count, err);
        if (rc) return rc;
        if (window >= k->cap_windows) {
            int cap = k->cap_windows ? 2 * k->cap_windows : 256;
            while (cap <= window) cap *= 2;
            uint32_t *nw = realloc(k->wcrc, (size_t)cap * sizeof *nw);
            if (!nw) return llmq_errorf(err, LLMQ_ENOMEM, "out of memory recording KLD base");
            k->wcrc = nw;
            k->cap_windows = cap;
        }
        k->wcrc[window] = crc;
        k->n_windows = window + 1;
        for (int i = first; i < first + count; i++, k->n++) {
            log_softmax(logits + (size_t)i * vocab, vocab, k->lsm);
            top_k(k->lsm, vocab, k->k, k->ids + k->n * k->k, k->logp + k->n * k->k);
            k->nll[k->n] = -k->lsm[tokens[i + 1]];
        }
        return LLMQ_OK;
    }
    if (window >= k->n_windows || k->n + count > k->cap)
        return llmq_errorf(err, LLMQ_EUSAGE, "%s: the KLD base holds %d windows, this run scores more", k->file.path, k->n_windows);
    if (k->wcrc[window] != crc)
        return llmq_errorf(err, LLMQ_EUSAGE, "%s: window %d was made from other tokens (another text, tokenizer or protocol)",
                           k->file.path, window);
    for (int i = first; i < first + count; i++, k->n++) {
        const float *row = logits + (size_t)i * vocab;
        log_softmax(row, vocab, k->lsm);
        const int32_t *ids = k->ids + k->n * k->k;
        const float *lp = k->logp + k->n * k->k;
        double kl = 0, sp = 0, sq = 0;
        for (int j = 0; j < k->k; j++) {
            double p = exp((double)lp[j]), lq = k->lsm[ids[j]];
            kl += p * ((double)lp[j] - lq);
            sp += p;
            sq += exp(lq);
        }
        double pr = 1.0 - sp, qr = 1.0 - sq;
        if (pr > 1e-12) kl += pr * log(pr / (qr > 1e-30 ? qr : 1e-30));
        k->kl[k->n] = kl > 0 ? kl : 0;
        k->wsum[3 * window] += k->kl[k->n];
        k->wsum[3 * window + 1] += (double)-k->lsm[tokens[i + 1]] - (double)k->nll[k->n];
        k->wsum[3 * window + 2] += 1.0;
        int best = 0;
        for (int j = 1; j < vocab; j++)
            if (row[j] > row[best]) best = j;
        k->agree += best == ids[0];
        k->nll_base += k->nll[k->n];
    }
    return LLMQ_OK;
}

int llmq_kld_save(llmq_kld *k, const char *path, const int32_t *ids, size_t n_ids,
                  llmq_ppl_protocol protocol, int ctx, int windows, llmq_err *err)
{
    llmq_st_writer *w = llmq_st_writer_new(err);
    if (!w) return err->code;
    int64_t s2[2] = { k->n, k->k }, s1[1] = { k->n }, sw[1] = { k->n_windows };
    char buf[5][32];
    (void)ids; (void)n_ids;
    snprintf(buf[0], 32, "%d", k->n_windows);
    snprintf(buf[1], 32, "%d", ctx);
    snprintf(buf[2], 32, "%d", windows);
    snprintf(buf[3], 32, "%d", k->vocab);
    snprintf(buf[4], 32, "%d", k->k);
    int rc = llmq_st_writer_add(w, "topk_ids", LLMQ_DT_I32, 2, s2, k->ids, err);
    if (!rc) rc = llmq_st_writer_add(w, "topk_logp", LLMQ_DT_F32, 2, s2, k->logp, err);
    if (!rc) rc = llmq_st_writer_add(w, "nll", LLMQ_DT_F32, 1, s1, k->nll, err);
    if (!rc) rc = llmq_st_writer_add(w, "window_crc32", LLMQ_DT_U32, 1, sw, k->wcrc, err);
    if (!rc && windows != k->n_windows) rc = LLMQ_BUG(err, "window count differs from the windows recorded");
    const char *kv[][2] = { { "format", "llmq-kld" }, { "llmq.kld_version", "1" },
                            { "ctx", buf[1] }, { "windows", buf[2] }, { "vocab", buf[3] }, { "topk", buf[4] },
                            { "protocol", llmq_ppl_protocol_name(protocol) } };
    for (size_t i = 0; !rc && i < LLMQ_ARRAY_LEN(kv); i++) rc = llmq_st_writer_meta(w, kv[i][0], kv[i][1], err);
    if (!rc) rc = llmq_st_writer_finish(w, path, err);
    llmq_st_writer_free(w);
    return rc;
}

static int meta_is(const llmq_st_file *f, const char *key, const char *want, const char *what, llmq_err *err)
{
    const char *v = llmq_st_meta(f, key);
    char q[LLMQ_QUOTE_SIZE];
    if (!v) return llmq_errorf(err, LLMQ_EFORMAT, "%s: not an llmq KLD base file (no '%s')", f->path, key);
    if (strcmp(v, want) != 0 && !strcmp(key, "format"))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: not an llmq KLD base file (format '%s')", f->path, llmq_quote(q, v));
    if (strcmp(v, want) != 0)
        return llmq_errorf(err, LLMQ_EUSAGE, "%s: made for %s %s, this run uses %s", f->path, what, llmq_quote(q, v), want);
    return LLMQ_OK;
}

int llmq_kld_load(llmq_kld **out, const char *path, int vocab, const int32_t *ids, size_t n_ids,
                  llmq_ppl_protocol protocol, int ctx, int windows, llmq_err *err)
{
    *out = NULL;
    llmq_kld *k = llmq_calloc(1, sizeof *k, err);
    if (!k) return err->code;
    k->comparing = 1;
    int rc = llmq_st_open(&k->file, path, err);
    if (rc) { free(k); return rc; }
    k->have_file = 1;
    const llmq_st_file *f = &k->file;
    char buf[4][32];
    (void)ids; (void)n_ids;
    snprintf(buf[1], 32, "%d", ctx);
    snprintf(buf[3], 32, "%d", vocab);
    const char *ver = llmq_st_meta(f, "llmq.kld_version");
    if ((rc = meta_is(f, "format", "llmq-kld", "format", err))) goto fail;
    if (!ver || strcmp(ver, "1")) {
        char q[LLMQ_QUOTE_SIZE];
        rc = llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: KLD base version %s; this llmq reads version 1", path,
                         ver ? llmq_quote(q, ver) : "(none)");
        goto fail;
    }
    if (
        (rc = meta_is(f, "protocol", llmq_ppl_protocol_name(protocol), "protocol", err)) ||
        (rc = meta_is(f, "ctx", buf[1], "context", err)) ||
        (rc = meta_is(f, "vocab", buf[3], "vocabulary size", err)))
        goto fail;
    const llmq_st_tensor *ti = llmq_st_find(f, "topk_ids"), *tl = llmq_st_find(f, "topk_logp"), *tn = llmq_st_find(f, "nll");
    const llmq_st_tensor *tw = llmq_st_find(f, "window_crc32");
    if (!tw || tw->dtype != LLMQ_DT_U32 || tw->ndim != 1 || (uintptr_t)tw->data % 4 || tw->shape[0] < 1 ||
        !ti || ti->ndim != 2 || ti->shape[1] < 1 || ti->shape[0] != tw->shape[0] * (ti->shape[0] / tw->shape[0])) {
        rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: tensors window_crc32 / topk_ids are missing or malformed", path);
        goto fail;
    }
    if (windows > tw->shape[0]) {
        rc = llmq_errorf(err, LLMQ_EUSAGE, "%s: the KLD base holds %" PRId64 " windows, this run scores %d", path, tw->shape[0], windows);
        goto fail;
    }
    k->wcrc = (uint32_t *)(uintptr_t)tw->data;
    k->n_windows = (int)tw->shape[0];
    if (!ti || !tl || !tn || ti->dtype != LLMQ_DT_I32 || tl->dtype != LLMQ_DT_F32 || tn->dtype != LLMQ_DT_F32 ||
        ti->ndim != 2 || tl->ndim != 2 || tn->ndim != 1 || ti->shape[0] != tl->shape[0] || ti->shape[1] != tl->shape[1] ||
        tn->shape[0] != ti->shape[0] || ti->shape[1] < 1 || ti->shape[1] > vocab ||
        ((uintptr_t)ti->data | (uintptr_t)tl->data | (uintptr_t)tn->data) % 4) {
        rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: tensors topk_ids, topk_logp, nll are missing or malformed", path);
        goto fail;
    }
    /* the counts in the metadata must be the tensors' (a file that says one
     * thing and holds another was not written by llmq) */
    {
        const char *mw = llmq_st_meta(f, "windows"), *mk = llmq_st_meta(f, "topk");
        char hw[32], hk[32], qw[LLMQ_QUOTE_SIZE], qk[LLMQ_QUOTE_SIZE];
        snprintf(hw, sizeof hw, "%" PRId64, tw->shape[0]);
        snprintf(hk, sizeof hk, "%" PRId64, ti->shape[1]);
        if (!mw || !mk || strcmp(mw, hw) || strcmp(mk, hk)) {
            rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: metadata windows '%s' / topk '%s' contradict the tensors "
                             "(%s windows, top %s)", path, llmq_quote(qw, mw), llmq_quote(qk, mk), hw, hk);
            goto fail;
        }
    }
    k->vocab = vocab;
    k->k = (int)ti->shape[1];
    k->cap = ti->shape[0];
    k->ids = (int32_t *)(uintptr_t)ti->data;
    k->logp = (float *)(uintptr_t)tl->data;
    k->nll = (float *)(uintptr_t)tn->data;
    for (int64_t i = 0; i < k->cap * k->k; i++)
        if (k->ids[i] < 0 || k->ids[i] >= vocab || !(k->logp[i] <= 0) || !isfinite(k->logp[i])) {
            rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: entry %" PRId64 " holds an id outside the vocabulary or a log-prob "
                             "that is not finite and at most 0", path, i);
            goto fail;
        }
    for (int64_t i = 0; i < k->cap; i++)
        if (!(k->nll[i] >= 0) || !isfinite(k->nll[i])) {
            rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: token %" PRId64 ": nll %g is not a finite value >= 0", path, i,
                             (double)k->nll[i]);
            goto fail;
        }
    if (!(k->kl = llmq_calloc((size_t)k->cap ? (size_t)k->cap : 1, sizeof(double), err)) ||
        !(k->wsum = llmq_calloc(3 * (size_t)(k->n_windows ? k->n_windows : 1), sizeof(double), err)) ||
        !(k->lsm = llmq_malloc((size_t)vocab * sizeof(float), err))) { rc = err->code; goto fail; }
    *out = k;
    return LLMQ_OK;
fail:
    llmq_kld_free(k);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Standard error of the ratio mean sum_w a_w / sum_w n_w with windows as
 * independent blocks (tokens inside a window share their context, so a
 * per-token estimate would be too small); 0 with fewer than 2 windows. */
static double block_se(const double *wsum, int col, int n_windows, double mean)
{
    double n = 0, ss = 0;
    int w_used = 0;
    for (int w = 0; w < n_windows; w++) {
        double cnt = wsum[3 * w + 2];
        if (cnt <= 0) continue;
        double d = wsum[3 * w + col] - mean * cnt;
        ss += d * d;
        n += cnt;
        w_used++;
    }
    if (w_used < 2 || n <= 0) return 0.0;
    return sqrt(ss * w_used / (w_used - 1)) / n;
}

int llmq_kld_result_get(llmq_kld *k, llmq_kld_result *r, llmq_err *err)
{
    memset(r, 0, sizeof *r);
    if (!k->comparing || k->n == 0) return LLMQ_BUG(err, "no KLD comparison was run");
    double s = 0;
    for (int64_t i = 0; i < k->n; i++) s += k->kl[i];
    r->kld_mean = s / (double)k->n;
    r->kld_se = block_se(k->wsum, 0, k->n_windows, r->kld_mean);
    double dnll = 0;
    for (int w = 0; w < k->n_windows; w++) dnll += k->wsum[3 * w + 1];
    r->ln_ppl_ratio = dnll / (double)k->n;
    r->ln_ppl_ratio_se = block_se(k->wsum, 1, k->n_windows, r->ln_ppl_ratio);
    qsort(k->kl, (size_t)k->n, sizeof(double), cmp_double);
    int64_t p = (int64_t)ceil(0.99 * (double)k->n) - 1;
    r->kld_p99 = k->kl[p < 0 ? 0 : p];
    r->kld_max = k->kl[k->n - 1];
    r->top1_agree = (double)k->agree / (double)k->n;
    r->ppl_base = exp(k->nll_base / (double)k->n);
    r->tokens = k->n;
    r->topk = k->k;
    return LLMQ_OK;
}
