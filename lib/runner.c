/*
 * runner.c - inference: embeddings, the layers (forward.c, the pass every
 * user of a decoder layer shares) with a KV cache and quantized linears,
 * the final norm and the LM head, with the differences Hugging Face's
 * modeling_llama / modeling_qwen2 define: RMSNorm in fp32, rotate-half
 * RoPE, optional q/k/v/o and MLP biases, grouped-query attention, SwiGLU,
 * tied or untied LM head.
 */
#include <math.h>
#include <cblas.h>
#include "runner.h"
#include "linears.h"
#include "kvcache.h"
#include "train/ops.h"
#include "quant/quant.h"

struct llmq_runner {
    const llmq_model *m;
    llmq_pool *pool;
    int max_ctx;
    llmq_act_mode act_mode;
    llmq_mx_rule act_rule;  /* LLMQ_ACT_SAME: the block scale rule of MX / NV activations */
    int8_t *xq;      /* (max_ctx, max linear input) int8 activations */
    float *xscale;   /* (max_ctx) their per-token scales */
    float *xbscale;  /* (max_ctx, max linear input / 32) per-block scales (W4A8), or NULL */
    uint16_t *xb;    /* (max_ctx, max linear input) bf16 activations (LLMQ_ACT_BF16), or NULL */
    float *xf;       /* (max_ctx, max linear input) fake-quantized activations (LLMQ_ACT_SAME), or NULL */
    uint8_t *xfq;    /* (max linear input) codes and (max linear input / 16 + 1) scales: scratch of xf */
    float *act_scales;  /* (n_layers, 4) static scales per linear-input site, or NULL */
    float cur_scale;    /* static scale of the linear being run, 0 = dynamic */
    llmq_observer obs;
    void *obs_ctx;
    int release;        /* drop each layer's mapped pages once the forward has passed it */
    int stop;           /* layers a forward runs (llmq_runner_stop_after); n_layers by default */
    /* activations for up to max_ctx tokens */
    float *x;        /* (max_ctx, hidden) residual stream */
    float *xn;       /* (max_ctx, hidden) normed */
    float *q;        /* (max_ctx, q_dim) */
    float *k;        /* (max_ctx, kv_dim) */
    float *v;        /* (max_ctx, kv_dim) */
    float *att;      /* (max_ctx, q_dim) attention output */
    float *hb;       /* (max_ctx, intermediate) */
    float *hb2;      /* (max_ctx, intermediate) */
    /* the fp32 cache, made by the first forward without a quantized one */
    float *scores;   /* (n_threads, max_ctx, max_ctx) */
    float *key_cache;   /* (n_layers, n_kv_heads, max_ctx, head_dim) */
    float *value_cache; /* (n_layers, n_kv_heads, max_ctx, head_dim) */
    llmq_kvcache *kv;   /* llmq_runner_set_kv's cache, or NULL */
    float *kpre;        /* (max_ctx, kv_dim) keys before RoPE, for kv */
    float *rope_cos, *rope_sin;  /* (max_ctx, head_dim/2) */
};

int llmq_runner_max_ctx(const llmq_runner *r) { return r->max_ctx; }
const llmq_model *llmq_runner_model(const llmq_runner *r) { return r->m; }

void llmq_runner_observe(llmq_runner *r, llmq_observer fn, void *ctx) { r->obs = fn; r->obs_ctx = ctx; }
void llmq_runner_release_layers(llmq_runner *r, int on) { r->release = on; }

int llmq_runner_stop_after(llmq_runner *r, int n_layers, llmq_err *err)
{
    if (n_layers < 1 || n_layers > r->m->cfg.n_layers)
        return llmq_errorf(err, LLMQ_EUSAGE, "a forward runs 1..%d layers, not %d", r->m->cfg.n_layers, n_layers);
    r->stop = n_layers;
    return LLMQ_OK;
}
/* The widest linear input: the row length of the activation buffers. */
static size_t max_input(const llmq_config *c)
{
    return (size_t)LLMQ_MAX(LLMQ_MAX(c->hidden, c->intermediate), c->n_heads * c->head_dim);
}

int llmq_runner_set_act(llmq_runner *r, llmq_act_mode mode, llmq_err *err)
{
    if (mode == LLMQ_ACT_INT8_STATIC && !r->act_scales)
        return llmq_errorf(err, LLMQ_EUSAGE, "%s: static int8 activations need scales (llmq_runner_set_act_scales)", r->m->path);
    if (mode == LLMQ_ACT_BF16) {
        const llmq_model *m = r->m;
        if (m->layers[0].wq.type != LLMQ_W_BF16)
            return llmq_errorf(err, LLMQ_EUSAGE, "%s: bf16 activations need bf16 weights, this model has %s",
                               m->path, m->weights_dtype);
        if (!r->xb) {
            size_t cols = max_input(&m->cfg);
            if (!(r->xb = llmq_alloc_aligned((size_t)r->max_ctx * cols * sizeof(uint16_t), err))) return err->code;
        }
    }
    if (mode == LLMQ_ACT_SAME && r->m->layers[0].wq.type == LLMQ_W_Q8) mode = LLMQ_ACT_INT8;   /* W8A8 */
    if (mode == LLMQ_ACT_SAME) {
        const llmq_model *m = r->m;
        llmq_wtype wt = m->layers[0].wq.type;
        if (wt != LLMQ_W_Q4 && wt != LLMQ_W_MX8 && !llmq_wtype_is_block(wt))
            return llmq_errorf(err, LLMQ_EUSAGE, "%s: activations in the weights' format need llmq's quantized weights "
                               "(int8, int4, mxint8 or a block format), this model has %s", m->path, m->weights_dtype);
        if (!r->xf) {
            size_t cols = max_input(&m->cfg);
            if (!(r->xf = llmq_alloc_aligned((size_t)r->max_ctx * cols * sizeof(float), err)) ||
                !(r->xfq = llmq_alloc_aligned(2 * cols + 64, err))) return err->code;
        }
    }
    if (mode == LLMQ_ACT_INT8 || mode == LLMQ_ACT_INT8_STATIC) {
        const llmq_model *m = r->m;
        llmq_wtype wt = m->layers[0].wq.type;
        if (wt != LLMQ_W_Q8 && !(wt == LLMQ_W_Q4 && mode == LLMQ_ACT_INT8))
            return llmq_errorf(err, LLMQ_EUSAGE, "%s: int8 activations need int8 weights (llmq pack --format int8)%s, this model has %s",
                               m->path, mode == LLMQ_ACT_INT8 ? " or int4 weights" : "", m->weights_dtype);
        if (!r->xq) {
            size_t cols = max_input(&m->cfg);
            r->xq = llmq_alloc_aligned((size_t)r->max_ctx * cols, err);
            r->xscale = r->xq ? llmq_alloc_aligned((size_t)r->max_ctx * sizeof(float), err) : NULL;
            if (!r->xscale) return err->code;
        }
        if (wt == LLMQ_W_Q4 && !r->xbscale) {
            /* W4A8: one scale per 32 activations */
            size_t cols = max_input(&m->cfg);
            r->xbscale = llmq_alloc_aligned((size_t)r->max_ctx * (cols / LLMQ_A8_BLOCK + 1) * sizeof(float), err);
            if (!r->xbscale) return err->code;
        }
    }
    r->act_mode = mode;
    return LLMQ_OK;
}

void llmq_runner_set_act_rule(llmq_runner *r, llmq_mx_rule rule) { r->act_rule = rule; }

int llmq_runner_set_act_scales(llmq_runner *r, const float *scales, llmq_err *err)
{
    size_t n = (size_t)r->m->cfg.n_layers * 4;
    if (!r->act_scales && !(r->act_scales = llmq_malloc(n * sizeof(float), err))) return err->code;
    memcpy(r->act_scales, scales, n * sizeof(float));
    return LLMQ_OK;
}

/* The static scale of linear-input site s of layer l, or 0 (dynamic). */
static float static_scale(const llmq_runner *r, int l, llmq_site s)
{
    if (r->act_mode != LLMQ_ACT_INT8_STATIC || !r->act_scales || l < 0) return 0.0f;
    float v = r->act_scales[(size_t)l * 4 + s];
    return v > 0.0f && isfinite(v) ? v : 0.0f;
}

void llmq_runner_free(llmq_runner *r)
{
    if (!r) return;
    free(r->act_scales);
    float *bufs[] = { r->x, r->xn, r->q, r->k, r->v, r->att, r->hb, r->hb2, r->scores,
                      r->key_cache, r->value_cache, r->rope_cos, r->rope_sin, r->kpre };
    llmq_kv_free(r->kv);
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(bufs); i++) free(bufs[i]);
    free(r->xq);
    free(r->xscale);
    free(r->xf);
    free(r->xfq);
    free(r->xbscale);
    free(r->xb);
    free(r);
}

static float *falloc(size_t a, size_t b, size_t c, llmq_err *err)
{
    size_t n;
    if (llmq_mul_ovf_size(a, b, &n) || llmq_mul_ovf_size(n, c, &n) || llmq_mul_ovf_size(n, sizeof(float), &n)) {
        llmq_errorf(err, LLMQ_ENOMEM, "activation buffer size overflows");
        return NULL;
    }
    float *p = llmq_alloc_aligned(n, err);
    if (p) memset(p, 0, n);
    return p;
}

int llmq_runner_new(llmq_runner **out, const llmq_model *m, int max_ctx, llmq_pool *pool, llmq_err *err)
{
    const llmq_config *c = &m->cfg;
    *out = NULL;
    if (max_ctx < 1) return llmq_errorf(err, LLMQ_EUSAGE, "context size must be positive");
    llmq_runner *r = llmq_calloc(1, sizeof *r, err);
    if (!r) return err->code;
    r->m = m;
    r->stop = m->cfg.n_layers;
    r->pool = pool;
    r->max_ctx = max_ctx;
    size_t T = (size_t)max_ctx, H = (size_t)c->hidden, FF = (size_t)c->intermediate;
    size_t qd = (size_t)c->n_heads * (size_t)c->head_dim, kvd = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    if (!(r->x = falloc(T, H, 1, err)) || !(r->xn = falloc(T, H, 1, err)) ||
        !(r->q = falloc(T, qd, 1, err)) || !(r->k = falloc(T, kvd, 1, err)) ||
        !(r->v = falloc(T, kvd, 1, err)) || !(r->att = falloc(T, qd, 1, err)) ||
        !(r->hb = falloc(T, FF, 1, err)) || !(r->hb2 = falloc(T, FF, 1, err)) ||
        !(r->rope_cos = falloc(T, (size_t)c->head_dim / 2, 1, err)) ||
        !(r->rope_sin = falloc(T, (size_t)c->head_dim / 2, 1, err))) {
        llmq_runner_free(r);
        return err->code;
    }
    /* inv_freq (theta^(-2i/d), rescaled for linear / llama3 rope) and
     * angle = pos * inv_freq in fp32, as transformers computes them. */
    llmq_op_rope_tables(max_ctx, c->head_dim, c, r->rope_cos, r->rope_sin);
    *out = r;
    return LLMQ_OK;
}

/* The fp32 cache and scores of the default attention, on first use. */
static int dense_cache(llmq_runner *r, llmq_err *err)
{
    const llmq_config *c = &r->m->cfg;
    size_t T = (size_t)r->max_ctx, kvd = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    if (r->scores) return LLMQ_OK;
    if (!(r->key_cache = falloc((size_t)c->n_layers, T, kvd, err)) ||
        !(r->value_cache = falloc((size_t)c->n_layers, T, kvd, err)) ||
        !(r->scores = falloc((size_t)llmq_pool_size(r->pool), T, T, err)))
        return err->code;
    return LLMQ_OK;
}

int llmq_runner_set_kv(llmq_runner *r, const llmq_kv_spec *spec, const llmq_kv_calib *cal, llmq_err *err)
{
    const llmq_config *c = &r->m->cfg;
    llmq_kvcache *kv;
    int rc = llmq_kv_new(&kv, c, spec, cal, r->max_ctx, llmq_pool_size(r->pool), err);
    if (rc) return rc;
    if (!r->kpre && !(r->kpre = falloc((size_t)r->max_ctx, (size_t)c->n_kv_heads * c->head_dim, 1, err))) {
        llmq_kv_free(kv);
        return err->code;
    }
    llmq_kv_free(r->kv);
    r->kv = kv;
    return LLMQ_OK;
}

const llmq_kvcache *llmq_runner_kv(const llmq_runner *r) { return r->kv; }

/* LLMQ_ACT_SAME: each token's row of X quantized and dequantized in W's
 * format into r->xf; X itself where W is float. */
static const float *act_same(llmq_runner *r, const llmq_wmat *W, const float *X, int n)
{
    const int64_t cols = W->cols;
    uint8_t *codes = r->xfq, *sc = r->xfq + cols;
    if (W->type != LLMQ_W_Q4 && W->type != LLMQ_W_MX8 && !llmq_wtype_is_block(W->type)) return X;
    for (int t = 0; t < n; t++) {
        const float *x = X + (size_t)t * cols;
        float *o = r->xf + (size_t)t * cols;
        if (W->type == LLMQ_W_Q4) {
            llmq_q4_fake_row(x, cols, W->group, W->zeros == NULL, NULL, o);
        } else if (W->type == LLMQ_W_MX8) {
            llmq_mx8_quantize_row(x, cols, r->act_rule, (int8_t *)codes, sc);
            llmq_mx8_dequantize_row((const int8_t *)codes, sc, cols, o);
        } else {
            llmq_block_fake_row(W->type, x, cols, r->act_rule, codes, sc, o);
        }
    }
    return r->xf;
}

static void linear(llmq_runner *r, const llmq_wmat *W, const float *bias, const float *X, int n, float *Y)
{
    if (r->act_mode == LLMQ_ACT_SAME) X = act_same(r, W, X, n);
    if (r->act_mode == LLMQ_ACT_BF16 && W->type == LLMQ_W_BF16 && n > 1) {
        /* 16-bit prefill: bf16 times bf16, two products per fp32 lane
         * (decode reads every weight once per token: memory bound, fp32) */
        llmq_round_bf16(X, (int64_t)n * W->cols, r->xb);
        llmq_matmul_bf16(r->pool, W, r->xb, n, Y);
    } else if (r->act_mode == LLMQ_ACT_INT8 && W->type == LLMQ_W_Q4 && r->xbscale) {
        /* W4A8: each token's activations quantized on the fly per block of
         * 32 (absmax / 127), int4 codes times int8 in integers, as llama.cpp
         * runs Q4 on CPUs.  Q4 cols are multiples of the group, so of 32. */
        llmq_quantize_act_blocks(X, (int64_t)n * W->cols, r->xq, r->xbscale);
        if (n == 1) llmq_matvec_q4a8(r->pool, W, r->xq, r->xbscale, Y);
        else llmq_matmul_q4a8(r->pool, W, r->xq, r->xbscale, n, Y);
    } else if (r->act_mode != LLMQ_ACT_FP && W->type == LLMQ_W_Q8) {
        /* W8A8: each token's activations quantized on the fly (per-token
         * absmax, SmoothQuant's dynamic per-token scheme), or with the
         * site's static per-tensor scale (O3) */
        float ss = r->cur_scale;
        for (int t = 0; t < n; t++) {
            if (ss > 0.0f) {
                const float *x = X + (size_t)t * W->cols;
                int8_t *q = r->xq + (size_t)t * W->cols;
                float inv = 1.0f / ss;
                for (int64_t i = 0; i < W->cols; i++) {
                    float v = rintf(x[i] * inv);
                    q[i] = (int8_t)(v > 127.0f ? 127 : v < -127.0f ? -127 : v == v ? (int)v : 0);
                }
                r->xscale[t] = ss;
            } else {
                llmq_quantize_act_i8(X + (size_t)t * W->cols, W->cols, r->xq + (size_t)t * W->cols, &r->xscale[t]);
            }
        }
        if (n == 1) llmq_matvec_a8(r->pool, W, r->xq, r->xscale[0], Y);
        else llmq_matmul_a8(r->pool, W, r->xq, r->xscale, n, Y);
    } else if (n == 1) {
        llmq_matvec(r->pool, W, X, Y);
    } else {
        llmq_matmul(r->pool, W, X, n, Y);
    }
    if (bias)
        for (int t = 0; t < n; t++)
            for (int64_t i = 0; i < W->rows; i++) Y[(size_t)t * W->rows + i] += bias[i];
}

/* Decode attention of one query over T cached positions, vectorized per
 * ISA (GCC target_clones): sixteen running sums per dot product, added in
 * a fixed order, so the result does not depend on the ISA picked. */
LLMQ_VECTORIZE
static void decode_scores(const float *Q, const float *K, int T, int hd, float scale, float *S)
{
    for (int t = 0; t < T; t++) {
        const float *k = K + (size_t)t * hd;
        float acc[16] = { 0 }, s = 0.0f;
        int i = 0;
        for (; i + 16 <= hd; i += 16)
            for (int l = 0; l < 16; l++) acc[l] += Q[i + l] * k[i + l];
        for (int l = 0; l < 16; l++) s += acc[l];
        for (; i < hd; i++) s += Q[i] * k[i];
        S[t] = s * scale;
    }
}

LLMQ_VECTORIZE
static void decode_values(const float *P, const float *V, int T, int hd, float *O)
{
    for (int i = 0; i < hd; i++) O[i] = 0.0f;
    for (int t = 0; t < T; t++) {
        float p = P[t];
        const float *v = V + (size_t)t * hd;
        for (int i = 0; i < hd; i++) O[i] += p * v[i];
    }
}

struct attn_job {
    llmq_runner *r;
    int layer, n, pos;
};

/* Causal attention for the n new tokens, heads split over threads.
 * S = Q K^T / sqrt(d) over cached positions [0, pos+n), masked, softmax,
 * then O = P V; each query head h reads KV head h / (n_heads / n_kv_heads). */
static void attn_worker(void *ctx, int ti, int nt)
{
    struct attn_job *j = ctx;
    llmq_runner *r = j->r;
    const llmq_config *c = &r->m->cfg;
    int hd = c->head_dim, n = j->n, pos = j->pos, T = pos + n;
    int qd = c->n_heads * hd, group = c->n_heads / c->n_kv_heads;
    size_t layer_off = (size_t)j->layer * (size_t)c->n_kv_heads * r->max_ctx * hd;
    float *S = r->scores + (size_t)ti * r->max_ctx * r->max_ctx;
    float scale = 1.0f / sqrtf((float)hd);
    int64_t h0, h1;
    llmq_split(c->n_heads, ti, nt, 1, &h0, &h1);
    for (int h = (int)h0; h < (int)h1; h++) {
        int g = h / group;
        const float *K = r->key_cache + layer_off + (size_t)g * r->max_ctx * hd;
        const float *Vc = r->value_cache + layer_off + (size_t)g * r->max_ctx * hd;
        const float *Q = r->q + (size_t)h * hd;
        if (n == 1) {
            decode_scores(Q, K, T, hd, scale, S);
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, T, hd, scale, Q, qd, K, hd, 0.0f, S, T);
        }
        for (int i = 0; i < n; i++) {
            float *row = S + (size_t)i * T;
            int last = pos + i;  /* attend to [lo, last] */
            int lo = 0;
            if (c->sliding_window > 0 && last - c->sliding_window + 1 > 0) lo = last - c->sliding_window + 1;
            float mx = -INFINITY;
            for (int t = lo; t <= last; t++) mx = row[t] > mx ? row[t] : mx;
            float sum = 0.0f;
            for (int t = 0; t < T; t++) {
                float e = (t >= lo && t <= last) ? expf(row[t] - mx) : 0.0f;
                row[t] = e;
                sum += e;
            }
            float inv = 1.0f / sum;
            for (int t = 0; t < T; t++) row[t] *= inv;
        }
        float *O = r->att + (size_t)h * hd;
        if (n == 1) {
            decode_values(S, Vc, T, hd, O);
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hd, T, 1.0f, S, T, Vc, hd, 0.0f, O, qd);
        }
    }
}

/* Finite weights can still overflow fp32 on the way (bf16 reaches 3.4e38,
 * a subnormal rope_theta makes the RoPE table NaN): a NaN must not become a
 * perplexity of nan or a greedy token 0 with status 0.  A branch-free pass
 * over the last hidden state and the logits, small beside the forward. */
static int all_finite(const float *v, size_t n)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) bad |= !(v[i] - v[i] == 0.0f);
    return !bad;
}

static int nonfinite(const llmq_runner *r, const char *what, llmq_err *err)
{
    return llmq_errorf(err, LLMQ_ENONFINITE, "%s: the forward pass gave a NaN or Inf %s: the weights or config.json "
                       "overflow fp32", r->m->path, what);
}

/* The runner's side of the layer pass (forward.h): quantized linears with
 * each input site's activation mode, and attention over the KV cache. */
struct step {
    llmq_runner *r;
    const llmq_layer *L;
    int layer, n, pos;
};

static void step_linear(void *ctx, int k, const float *X, int n, float *Y)
{
    struct step *s = ctx;
    s->r->cur_scale = static_scale(s->r, s->layer, llmq_linears[k].input);
    linear(s->r, llmq_layer_w(s->L, k), llmq_layer_b(s->L, k), X, n, Y);
}

/* K and V of positions pos.. into the layer's cache, then attention of
 * the n new queries over [0, pos + n). */
static void step_attend(void *ctx, llmq_layer_acts *a)
{
    struct step *s = ctx;
    llmq_runner *r = s->r;
    const llmq_config *c = &r->m->cfg;
    if (r->kv) {
        llmq_kv_attend(r->kv, r->pool, s->layer, a->q, a->kpre, a->v, s->n, s->pos, r->rope_cos, r->rope_sin, a->att);
        return;
    }
    int hd = c->head_dim, kvd = c->n_kv_heads * hd;
    size_t layer_off = (size_t)s->layer * c->n_kv_heads * r->max_ctx * hd;
    for (int t = 0; t < s->n; t++)
        for (int g = 0; g < c->n_kv_heads; g++) {
            size_t at = layer_off + ((size_t)g * r->max_ctx + (size_t)(s->pos + t)) * hd;
            memcpy(r->key_cache + at, a->k + (size_t)t * kvd + g * hd, (size_t)hd * sizeof(float));
            memcpy(r->value_cache + at, a->v + (size_t)t * kvd + g * hd, (size_t)hd * sizeof(float));
        }
    struct attn_job job = { r, s->layer, s->n, s->pos };
    llmq_pool_run(r->pool, attn_worker, &job);
}

int llmq_runner_forward(llmq_runner *r, const int32_t *tokens, int n, int pos,
                        float *logits, int all_logits, llmq_err *err)
{
    const llmq_model *m = r->m;
    const llmq_config *c = &m->cfg;
    /* the RoPE position of the first token: pos, or inside a streaming
     * window once it evicts */
    int rp = pos;
    if (r->kv) {
        int last = n >= 1 && pos >= 0 && pos <= INT32_MAX - n ? llmq_kv_query_pos(r->kv, pos, n) : -1;
        if (last < 0)
            return llmq_errorf(err, LLMQ_EUSAGE, "positions %d..%d: past the cache's %d positions (a streaming "
                               "window takes one token at a time once full)", pos, pos + n - 1, llmq_kv_slots(r->kv));
        rp = last - n + 1;
    } else if (n < 1 || pos < 0 || pos + n > r->max_ctx) {
        return llmq_errorf(err, LLMQ_EUSAGE, "positions %d..%d exceed the context size %d", pos, pos + n - 1, r->max_ctx);
    } else {
        int rc = dense_cache(r, err);
        if (rc) return rc;
    }
    int H = c->hidden, hd = c->head_dim;
    float eps = (float)c->rms_eps;
    for (int t = 0; t < n; t++) {
        if (tokens[t] < 0 || tokens[t] >= c->vocab)
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: token id %d is outside the model's vocabulary (0..%d): its "
                               "tokenizer and config.json vocab_size disagree", m->path, tokens[t], c->vocab - 1);
        llmq_get_row(&m->embed, tokens[t], r->x + (size_t)t * H);
    }
    const float *cs = r->rope_cos + (size_t)rp * (hd / 2), *sn = r->rope_sin + (size_t)rp * (hd / 2);
    /* one set of scratch buffers for every layer; the residual stream x
     * is updated in place */
    llmq_layer_acts a = { .xn1 = r->xn, .q = r->q, .k = r->k, .v = r->v, .att = r->att, .xmid = r->x,
                          .xn2 = r->xn, .gate = r->hb, .up = r->hb2, .hact = r->hb, .tmp = r->xn,
                          .kpre = r->kv ? r->kpre : NULL };
    struct step st = { r, NULL, 0, n, pos };
    llmq_layer_pass p = { .c = c, .T = n, .cs = cs, .sn = sn, .linear = step_linear, .attend = step_attend,
                          .ctx = &st, .observe = r->obs, .obs_ctx = r->obs_ctx };
    if (logits && r->stop < c->n_layers)
        return llmq_errorf(err, LLMQ_EUSAGE, "no logits from a forward stopped after layer %d of %d", r->stop, c->n_layers);
    for (int l = 0; l < r->stop; l++) {
        st.L = &m->layers[l];
        st.layer = p.layer = l;
        p.attn_norm = st.L->attn_norm;
        p.mlp_norm = st.L->mlp_norm;
        llmq_layer_forward(&p, r->x, &a, r->x);
        if (r->release) llmq_model_release_layer(m, l);
    }
    r->cur_scale = 0.0f;
    if (!all_finite(r->x, (size_t)n * H)) return nonfinite(r, "hidden state", err);
    if (!logits) return LLMQ_OK;
    if (all_logits) {
        llmq_op_rmsnorm_fwd(r->x, m->final_norm, n, H, eps, r->xn, NULL);
        linear(r, &m->lm_head, NULL, r->xn, n, logits);
    } else {
        llmq_op_rmsnorm_fwd(r->x + (size_t)(n - 1) * H, m->final_norm, 1, H, eps, r->xn, NULL);
        linear(r, &m->lm_head, NULL, r->xn, 1, logits);
    }
    if (!all_finite(logits, (size_t)(all_logits ? n : 1) * (size_t)c->vocab)) return nonfinite(r, "logits", err);
    return LLMQ_OK;
}
