/*
 * ops.c - forward and backward of the decoder ops (see ops.h).
 *
 * Backward formulas, for y = f(x) and upstream gradient dy:
 *   RMSNorm   y_i = w_i x_i r, r = (mean x^2 + eps)^-1/2:
 *             dx_j = r w_j dy_j - x_j r^3 / H * sum_i dy_i w_i x_i,  dw_i = sum_t dy_i x_i r
 *   linear    dX = dY W, dW = dY^T X, db = sum_t dY
 *   RoPE      a rotation per pair (i, i+hd/2): the gradient goes through its transpose
 *   attention S = Q K^T / sqrt(d), P = softmax(S) (causal), O = P V:
 *             dP = dO V^T, dV = P^T dO, dS = P o (dP - rowsum(P o dP)),
 *             dQ = dS K / sqrt(d), dK = dS^T Q / sqrt(d)
 *   SwiGLU    h = silu(g) u: dg = dh u s (1 + g (1 - s)), s = sigmoid(g); du = dh silu(g)
 *   CE + KL   d/dz [(1-a) CE + a KL(q||p)] = p - (1-a) onehot - a q
 */
#include <math.h>
#include <cblas.h>
#include "ops.h"

void llmq_op_embed_fwd(const float *E, int H, const int32_t *tok, int T, float *x)
{
    for (int t = 0; t < T; t++) memcpy(x + (size_t)t * H, E + (size_t)tok[t] * H, (size_t)H * sizeof(float));
}

void llmq_op_embed_bwd(float *dE, int H, const int32_t *tok, int T, const float *dx)
{
    for (int t = 0; t < T; t++) {
        float *d = dE + (size_t)tok[t] * H;
        const float *s = dx + (size_t)t * H;
        for (int i = 0; i < H; i++) d[i] += s[i];
    }
}

void llmq_op_rmsnorm_fwd(const float *x, const float *w, int T, int H, float eps, float *y, float *rinv)
{
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * H;
        float *yr = y + (size_t)t * H;
        float ss = 0.0f;
        for (int i = 0; i < H; i++) ss += xr[i] * xr[i];
        float r = 1.0f / sqrtf(ss / (float)H + eps);
        if (rinv) rinv[t] = r;
        for (int i = 0; i < H; i++) yr[i] = w[i] * (xr[i] * r);
    }
}

void llmq_op_rmsnorm_bwd(const float *x, const float *w, const float *rinv, const float *dy,
                         int T, int H, float *dx, float *dw)
{
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * H, *dr = dy + (size_t)t * H;
        float *dxr = dx + (size_t)t * H;
        float r = rinv[t], dot = 0.0f;
        for (int i = 0; i < H; i++) dot += dr[i] * w[i] * xr[i];
        float c = dot * r * r * r / (float)H;
        for (int i = 0; i < H; i++) dxr[i] += r * w[i] * dr[i] - c * xr[i];
        if (dw)
            for (int i = 0; i < H; i++) dw[i] += dr[i] * xr[i] * r;
    }
}

void llmq_op_linear_fwd(const float *X, const float *W, const float *b, int T, int in, int out, float *Y)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, out, in, 1.0f, X, in, W, in, 0.0f, Y, out);
    if (b)
        for (int t = 0; t < T; t++)
            for (int i = 0; i < out; i++) Y[(size_t)t * out + i] += b[i];
}

void llmq_op_linear_bwd(const float *X, const float *W, const float *dY, int T, int in, int out,
                        float *dX, int dx_acc, float *dW, float *db)
{
    if (dX)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, in, out, 1.0f, dY, out, W, in,
                    dx_acc ? 1.0f : 0.0f, dX, in);
    if (dW)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, T, 1.0f, dY, out, X, in, 1.0f, dW, in);
    if (db)
        for (int t = 0; t < T; t++)
            for (int i = 0; i < out; i++) db[i] += dY[(size_t)t * out + i];
}

/* inv_freq of rotary pair i, in fp32 as transformers' modeling_rope_utils
 * computes it: base^(-2i/hd), divided by factor (linear) or, for llama3,
 * divided by factor where the wavelength exceeds orig / low_freq_factor,
 * kept where it is below orig / high_freq_factor, and blended in between
 * with weight s = (orig / wavelength - low) / (high - low). */
static float rope_inv_freq(const llmq_config *c, int i, int hd)
{
    float inv = 1.0f / powf((float)c->rope_theta, (float)(2 * i) / (float)hd);
    float factor = (float)c->rope_factor;
    if (c->rope_divisors) inv /= c->rope_divisors[i];
    if (c->rope_type == LLMQ_ROPE_LINEAR) return inv / factor;
    if (c->rope_type != LLMQ_ROPE_LLAMA3) return inv;
    float orig = (float)c->rope_orig_max, low = (float)c->rope_low_freq, high = (float)c->rope_high_freq;
    float wavelen = (float)(2.0 * M_PI) / inv;
    if (wavelen > orig / low) return inv / factor;
    if (wavelen < orig / high) return inv;
    float s = (orig / wavelen - low) / (high - low);
    return (1.0f - s) * inv / factor + s * inv;
}

void llmq_op_rope_tables(int T, int hd, const llmq_config *c, float *cs, float *sn)
{
    int half = hd / 2;
    for (int i = 0; i < half; i++) {
        float inv = rope_inv_freq(c, i, hd);
        for (int p = 0; p < T; p++) {
            float ang = (float)p * inv;
            cs[(size_t)p * half + i] = (float)cos((double)ang);
            sn[(size_t)p * half + i] = (float)sin((double)ang);
        }
    }
}

static void rope_rows(float *x, int T, int n_heads, int hd, const float *cs, const float *sn, float sign)
{
    int half = hd / 2;
    for (int t = 0; t < T; t++) {
        const float *c = cs + (size_t)t * half, *s = sn + (size_t)t * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)t * n_heads + h) * hd;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half], si = sign * s[i];
                v[i] = a * c[i] - b * si;
                v[i + half] = b * c[i] + a * si;
            }
        }
    }
}

void llmq_op_rope_fwd(float *x, int T, int n_heads, int hd, const float *cs, const float *sn)
{
    rope_rows(x, T, n_heads, hd, cs, sn, 1.0f);
}

void llmq_op_rope_bwd(float *dx, int T, int n_heads, int hd, const float *cs, const float *sn)
{
    rope_rows(dx, T, n_heads, hd, cs, sn, -1.0f);   /* R(-theta) = R(theta)^T */
}

static void attn_span(const llmq_attn_shape *s, int i, int *lo, int *hi)
{
    *hi = i;
    *lo = (s->window > 0 && i - s->window + 1 > 0) ? i - s->window + 1 : 0;
}

void llmq_op_attn_head_fwd(const llmq_attn_shape *s, int h, const float *Q, const float *K, const float *V,
                           float *S, float *O)
{
    int T = s->T, hd = s->hd, qd = s->n_heads * hd, kvd = s->n_kv_heads * hd;
    int g = h / (s->n_heads / s->n_kv_heads);
    float scale = 1.0f / sqrtf((float)hd);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, Q + (size_t)h * hd, qd,
                K + (size_t)g * hd, kvd, 0.0f, S, T);
    for (int i = 0; i < T; i++) {
        float *row = S + (size_t)i * T;
        int lo, hi;
        attn_span(s, i, &lo, &hi);
        float mx = -INFINITY, sum = 0.0f;
        for (int t = lo; t <= hi; t++) mx = row[t] > mx ? row[t] : mx;
        for (int t = 0; t < T; t++) {
            float e = (t >= lo && t <= hi) ? expf(row[t] - mx) : 0.0f;
            row[t] = e;
            sum += e;
        }
        float inv = 1.0f / sum;
        for (int t = lo; t <= hi; t++) row[t] *= inv;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, S, T, V + (size_t)g * hd, kvd,
                0.0f, O + (size_t)h * hd, qd);
}

void llmq_op_attn_fwd(const llmq_attn_shape *s, const float *Q, const float *K, const float *V,
                      float *P, float *O)
{
    for (int h = 0; h < s->n_heads; h++) llmq_op_attn_head_fwd(s, h, Q, K, V, P + (size_t)h * s->T * s->T, O);
}

void llmq_op_attn_bwd(const llmq_attn_shape *s, const float *Q, const float *K, const float *V,
                      const float *P, const float *dO, float *dQ, float *dK, float *dV, float *scratch)
{
    int T = s->T, hd = s->hd, qd = s->n_heads * hd, kvd = s->n_kv_heads * hd;
    int group = s->n_heads / s->n_kv_heads;
    float scale = 1.0f / sqrtf((float)hd);
    memset(dK, 0, (size_t)T * kvd * sizeof(float));
    memset(dV, 0, (size_t)T * kvd * sizeof(float));
    for (int h = 0; h < s->n_heads; h++) {
        int g = h / group;
        const float *Ph = P + (size_t)h * T * T;
        float *dS = scratch;
        /* dP = dO_h V_g^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, dO + (size_t)h * hd, qd,
                    V + (size_t)g * hd, kvd, 0.0f, dS, T);
        /* dV_g += P^T dO_h */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, Ph, T, dO + (size_t)h * hd, qd,
                    1.0f, dV + (size_t)g * hd, kvd);
        for (int i = 0; i < T; i++) {
            const float *pr = Ph + (size_t)i * T;
            float *dr = dS + (size_t)i * T;
            int lo, hi;
            attn_span(s, i, &lo, &hi);
            float dot = 0.0f;
            for (int t = lo; t <= hi; t++) dot += pr[t] * dr[t];
            for (int t = 0; t < T; t++) dr[t] = (t >= lo && t <= hi) ? pr[t] * (dr[t] - dot) : 0.0f;
        }
        if (dQ)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, scale, dS, T, K + (size_t)g * hd, kvd,
                        0.0f, dQ + (size_t)h * hd, qd);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, scale, dS, T, Q + (size_t)h * hd, qd,
                    1.0f, dK + (size_t)g * hd, kvd);
    }
}

void llmq_op_swiglu_fwd(const float *g, const float *u, size_t n, float *h)
{
    for (size_t i = 0; i < n; i++) h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void llmq_op_swiglu_bwd(const float *g, const float *u, const float *dh, size_t n, float *dg, float *du)
{
    for (size_t i = 0; i < n; i++) {
        float sg = 1.0f / (1.0f + expf(-g[i]));
        du[i] = dh[i] * g[i] * sg;
        dg[i] = dh[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
    }
}

double llmq_op_xent_kl(const float *z, const float *teacher, const int32_t *target, int T, int V,
                       float a, float scale, float *dz, double *ce, double *kl)
{
    double tot = 0.0, tce = 0.0, tkl = 0.0;
    for (int t = 0; t < T; t++) {
        const float *zr = z + (size_t)t * V;
        float *dr = dz + (size_t)t * V;
        if (target[t] < 0) { memset(dr, 0, (size_t)V * sizeof(float)); continue; }
        float mx = -INFINITY;
        for (int i = 0; i < V; i++) mx = zr[i] > mx ? zr[i] : mx;
        double sum = 0.0;
        for (int i = 0; i < V; i++) { float e = expf(zr[i] - mx); dr[i] = e; sum += e; }
        float inv = (float)(1.0 / sum);
        double lse = (double)mx + log(sum);
        double c = lse - (double)zr[target[t]], k = 0.0;
        for (int i = 0; i < V; i++) dr[i] *= inv;         /* p */
        if (a != 0.0f) {
            const float *tr = teacher + (size_t)t * V;
            float tm = -INFINITY;
            for (int i = 0; i < V; i++) tm = tr[i] > tm ? tr[i] : tm;
            double ts = 0.0;
            for (int i = 0; i < V; i++) ts += exp((double)(tr[i] - tm));
            double tlse = (double)tm + log(ts);
            for (int i = 0; i < V; i++) {
                double lq = (double)tr[i] - tlse, q = exp(lq);
                if (q > 0.0) k += q * (lq - ((double)zr[i] - lse));
                dr[i] -= a * (float)q;
            }
        }
        dr[target[t]] -= 1.0f - a;
        for (int i = 0; i < V; i++) dr[i] *= scale;
        tce += c;
        tkl += k;
        tot += (1.0 - a) * c + a * k;
    }
    if (ce) *ce = tce;
    if (kl) *kl = tkl;
    return tot;
}

void llmq_adamw_step(const llmq_adamw *o, int64_t step, float *w, const float *g, float *m, float *v, size_t n)
{
    float b1 = o->beta1, b2 = o->beta2;
    float c1 = 1.0f / (1.0f - powf(b1, (float)step)), c2 = 1.0f / (1.0f - powf(b2, (float)step));
    float decay = 1.0f - o->lr * o->wd;
    for (size_t i = 0; i < n; i++) {
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        float mh = m[i] * c1, vh = v[i] * c2;
        w[i] = w[i] * decay - o->lr * mh / (sqrtf(vh) + o->eps);
    }
}
