/* t-awq.c - AWQ building blocks: fake quantization, exact scale folding
 * (q/k/v, GQA v->o), the scale search, the clip search on planted
 * outliers, and the non-finite fallbacks. */
#include "../test.h"
#include "algo/awq.h"
#include "quant/quant.h"
#include "kernels/kernels.h"
#include "../../calib/data.h"

static uint64_t rs = 12345;
static float frand(void) { return (float)((double)(llmq_splitmix64(&rs) >> 11) / 9007199254740992.0); }
static float gauss(void)
{
    float u = frand() + 1e-7f, v = frand();
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

/* Y (n, rows) = X (n, cols) W^T, double accumulation */
static void ref_mm(const float *W, int rows, int cols, const float *X, int n, double *Y)
{
    for (int t = 0; t < n; t++)
        for (int r = 0; r < rows; r++) {
            double s = 0;
            for (int c = 0; c < cols; c++) s += (double)X[t * cols + c] * W[r * cols + c];
            Y[t * rows + r] = s;
        }
}

TEST(fake_row_matches_packer_quantizers)
{
    float w[256], a[256], b[256], clip[2], pair[4], wc[256];
    for (int trial = 0; trial < 400; trial++) {
        float mag = trial % 7 == 0 ? 1e-9f : trial % 7 == 1 ? 2e5f : trial % 7 == 2 ? 1e-30f : 1.0f;
        for (int i = 0; i < 256; i++) w[i] = gauss() * mag;
        if (trial % 5 == 0) for (int i = 0; i < 128; i++) w[i] = 0.0f;   /* an all-zero group */
        if (trial % 3 == 0) for (int i = 0; i < 256; i++) w[i] = fabsf(w[i]);  /* one-signed */
        clip[0] = trial % 4 == 0 ? INFINITY : fabsf(w[3]) * 0.7f;
        clip[1] = trial % 4 == 0 ? INFINITY : 0.0f;
        for (int g = 0; g < 2; g++) pair[2 * g] = pair[2 * g + 1] = clip[g];
        for (int bits = 3; bits <= 4; bits++)
            for (int sym = 0; sym <= 1; sym++) {
                llmq_awq_qcfg q = { .bits = bits, .group = 128, .sym = sym };
                llmq_awq_fake_row(&q, w, 256, trial % 2 ? pair : NULL, a);
                if (bits == 4) llmq_q4_fake_row(w, 256, 128, sym, trial % 2 ? clip : NULL, b);
                else llmq_q3_fake_row(w, 256, 128, sym, trial % 2 ? clip : NULL, b);
                CHECK_MSG(!memcmp(a, b, sizeof a), "trial %d bits %d sym %d", trial, bits, sym);
                /* two-sided: [-lo, hi] differ; the packer sees the clamped row */
                pair[0] = fabsf(w[7]) * 0.8f; pair[1] = fabsf(w[9]) * 0.5f; pair[2] = INFINITY; pair[3] = fabsf(w[200]) * 0.9f;
                memcpy(wc, w, sizeof wc);
                llmq_awq_transform(wc, 1, 256, NULL, NULL, pair, 128);
                llmq_awq_fake_row(&q, w, 256, pair, a);
                if (bits == 4) llmq_q4_fake_row(wc, 256, 128, sym, NULL, b);
                else llmq_q3_fake_row(wc, 256, 128, sym, NULL, b);
                CHECK_MSG(!memcmp(a, b, sizeof a), "two-sided: trial %d bits %d sym %d", trial, bits, sym);
                for (int g = 0; g < 2; g++) pair[2 * g] = pair[2 * g + 1] = clip[g];
            }
    }
}

TEST(int3_codes_and_error_bound)
{
    float w[128], out[128];
    uint8_t codes[64], zero;
    uint16_t scale;
    for (int trial = 0; trial < 100; trial++) {
        for (int i = 0; i < 128; i++) w[i] = gauss() * (trial + 1) * 0.1f;
        for (int sym = 0; sym <= 1; sym++) {
            llmq_q3_quantize_row(w, 128, 128, sym, NULL, codes, &scale, sym ? NULL : &zero);
            int lo = sym ? 5 : 0, hi = sym ? 11 : 7;
            for (int j = 0; j < 128; j++) {
                int q = (j & 1) ? codes[j / 2] >> 4 : codes[j / 2] & 15;
                CHECK(q >= lo && q <= hi);
            }
            if (!sym) CHECK(zero <= 7);
            llmq_q4_dequantize_row(codes, &scale, sym ? NULL : &zero, 128, 128, out);
            float s = llmq_f16_to_f32(scale);
            for (int j = 0; j < 128; j++) CHECK(fabsf(out[j] - w[j]) <= s / 2 * 1.0001f);
        }
    }
    llmq_err err = { 0, "" };
    float bad[128] = { 0 };
    bad[5] = NAN;
    uint8_t c2[64], z2[1];
    uint16_t s2[1];
    CHECK_EQ_INT(llmq_q3_quantize(bad, 1, 128, 128, 0, NULL, c2, s2, z2, "t.weight", &err), LLMQ_ENONFINITE);
    CHECK(strstr(err.msg, "t.weight") != NULL);
}

/* Folding s into the norm and the next linears' columns is exact before
 * quantization: norm(x) W^T == (norm(x) / s) (W s)^T. */
TEST(scale_folding_exact_qkv)
{
    enum { N = 16, H = 64, R = 48 };
    float x[N * H], nw[H], W[R * H], s[H], xs[N * H], Ws[R * H];
    for (int i = 0; i < N * H; i++) x[i] = gauss();
    for (int i = 0; i < H; i++) { nw[i] = 0.5f + frand(); s[i] = powf(2.0f, (float)(i % 9) - 4) * (0.5f + frand()); }
    for (int i = 0; i < R * H; i++) W[i] = gauss() * 0.1f;
    float xn[N * H];
    for (int t = 0; t < N; t++)
        for (int c = 0; c < H; c++) {
            xn[t * H + c] = x[t * H + c] * nw[c];
            xs[t * H + c] = x[t * H + c] * (nw[c] / s[c]);
        }
    memcpy(Ws, W, sizeof W);
    llmq_awq_transform(Ws, R, H, s, NULL, NULL, 0);
    double y0[N * R], y1[N * R];
    ref_mm(W, R, H, xn, N, y0);
    ref_mm(Ws, R, H, xs, N, y1);
    for (int i = 0; i < N * R; i++) CHECK_NEAR(y1[i], y0[i], 1e-5 * (1 + fabs(y0[i])));
}

/* GQA: scaling KV channel c of v_proj by 1/s and the o_proj columns of
 * every query head reading it by s leaves the attention output unchanged. */
TEST(gqa_v_o_folding_exact)
{
    enum { NH = 8, NKV = 2, HD = 16, H = 64, T = 12 };
    int qd = NH * HD, kvd = NKV * HD;
    float *Wv = malloc(sizeof(float) * kvd * H), *Wo = malloc(sizeof(float) * H * qd);
    float *Wv2 = malloc(sizeof(float) * kvd * H), *Wo2 = malloc(sizeof(float) * H * qd);
    float x[T * H], P[NH][T][T], s[NKV * HD], sq[NH * HD];
    for (int i = 0; i < kvd * H; i++) Wv[i] = gauss();
    for (int i = 0; i < H * qd; i++) Wo[i] = gauss();
    for (int i = 0; i < T * H; i++) x[i] = gauss();
    for (int h = 0; h < NH; h++)
        for (int i = 0; i < T; i++) {
            float sum = 0;
            for (int t = 0; t < T; t++) sum += (P[h][i][t] = t <= i ? frand() : 0.0f);
            for (int t = 0; t < T; t++) P[h][i][t] /= sum;
        }
    for (int i = 0; i < kvd; i++) s[i] = 0.1f + 4.0f * frand();
    llmq_awq_expand_kv(s, NH, NKV, HD, sq);
    for (int h = 0; h < NH; h++)
        for (int i = 0; i < HD; i++) CHECK(sq[h * HD + i] == s[(h / (NH / NKV)) * HD + i]);
    memcpy(Wv2, Wv, sizeof(float) * kvd * H);
    memcpy(Wo2, Wo, sizeof(float) * H * qd);
    llmq_awq_transform(Wv2, kvd, H, NULL, s, NULL, 0);
    llmq_awq_transform(Wo2, H, qd, sq, NULL, NULL, 0);
    double out[2][T * H];
    for (int pass = 0; pass < 2; pass++) {
        float *wv = pass ? Wv2 : Wv, *wo = pass ? Wo2 : Wo;
        float v[T * NKV * HD], att[T * NH * HD];
        double vd[T * NKV * HD];
        ref_mm(wv, kvd, H, x, T, vd);
        for (int i = 0; i < T * kvd; i++) v[i] = (float)vd[i];
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < T; i++)
                for (int d = 0; d < HD; d++) {
                    double a = 0;
                    for (int t = 0; t < T; t++) a += P[h][i][t] * v[t * kvd + (h / (NH / NKV)) * HD + d];
                    att[i * qd + h * HD + d] = (float)a;
                }
        ref_mm(wo, H, qd, att, T, out[pass]);
    }
    for (int i = 0; i < T * H; i++) CHECK_NEAR(out[1][i], out[0][i], 1e-4 * (1 + fabs(out[0][i])));
    free(Wv); free(Wo); free(Wv2); free(Wo2);
}

/* Activations with a few large channels: the search picks r > 0, does
 * better than s = 1, and for GQA returns one scale per KV channel. */
TEST(scale_search_gqa_outliers)
{
    enum { NH = 4, NKV = 2, HD = 64, N = 256, H = 128 };
    int qd = NH * HD, kvd = NKV * HD;
    float *x = malloc(sizeof(float) * N * qd), *W = malloc(sizeof(float) * H * qd), xm[NKV * HD], s[NKV * HD];
    for (int i = 0; i < H * qd; i++) W[i] = gauss() * 0.05f;
    /* KV channels 3 and 70 (each shared by two query heads) are 30x larger */
    for (int t = 0; t < N; t++)
        for (int c = 0; c < qd; c++) {
            int kv = (c / HD) / (NH / NKV) * HD + c % HD;
            x[t * qd + c] = gauss() * (kv == 3 || kv == 70 ? 30.0f : 1.0f);
        }
    for (int j = 0; j < kvd; j++) {
        double a = 0;
        for (int t = 0; t < N; t++)
            for (int r = 0; r < NH / NKV; r++) a += fabsf(x[t * qd + ((j / HD) * (NH / NKV) + r) * HD + j % HD]);
        xm[j] = (float)(a / (N * (NH / NKV)));
    }
    llmq_awq_group g = { x, N, qd, xm, NH, NKV, HD, 1, { W }, { H }, NULL, 0, 0, 0, 0 };
    llmq_awq_qcfg q = { .bits = 4, .group = 128, .sym = 0 };
    double ratio, l1, lb;
    int fb, pd;
    llmq_err err = { 0, "" };
    CHECK_EQ_INT(llmq_awq_search_scale(NULL, &g, &q, 20, 1, s, &ratio, &pd, &l1, &lb, &fb, &err), LLMQ_OK);
    CHECK(!fb);
    CHECK(ratio > 0.0);
    CHECK_MSG(lb < 0.9 * l1, "best %g, s=1 %g", lb, l1);
    CHECK(s[3] > s[4] && s[70] > s[71]);
    for (int j = 0; j < kvd; j++) CHECK(isfinite(s[j]) && s[j] > 0);
    free(x); free(W);
}

/* The clip search fed inputs x (n, cols) through their Gram factors. */
static int clip_xe(const float *W, int rows, int cols, const float *x, int n, const llmq_awq_qcfg *q, int bf16,
                   float *clip, double *before, double *after, double *shrink, double *frac, llmq_err *err)
{
    double *g = calloc((size_t)cols * q->group, sizeof(double));
    float *tmp = malloc(sizeof(float) * cols * q->group), *r = malloc(sizeof(float) * cols * q->group);
    llmq_awq_gram_add(NULL, x, n, cols, q->group, tmp, g);
    int rc = llmq_awq_gram_factor(NULL, g, cols, q->group, NULL, n, r, err);
    if (!rc) rc = llmq_awq_search_clip(NULL, W, rows, cols, r, q, 20, 0.5, bf16, clip, before, after, shrink, frac, err);
    free(g); free(tmp); free(r);
    return rc;
}

static int clip_x(const float *W, int rows, int cols, const float *x, int n, const llmq_awq_qcfg *q, float *clip,
                  double *before, double *after, double *shrink, double *frac, llmq_err *err)
{
    return clip_xe(W, rows, cols, x, n, q, 0, clip, before, after, shrink, frac, err);
}

/* The mean over the tokens of |x_t (w - q(w))|^2 summed over rows, in
 * doubles: the clip search's objective, exactly. */
static double clip_objective(const float *W, int rows, int cols, const float *x, int n, const llmq_awq_qcfg *q,
                             const float *clip)
{
    float *fq = malloc(sizeof(float) * cols);
    double e = 0.0;
    for (int r = 0; r < rows; r++) {
        llmq_awq_fake_row(q, W + r * cols, cols, clip + (size_t)r * (cols / q->group) * 2, fq);
        for (int t = 0; t < n; t++)
            for (int k = 0; k < cols / q->group; k++) {
                double a = 0.0;
                for (int c = k * q->group; c < (k + 1) * q->group; c++) a += (double)x[t * cols + c] * (W[r * cols + c] - fq[c]);
                e += a * a;
            }
    }
    free(fq);
    return e / n;
}

/* The clip search on bf16 products (awq --act bf16) chooses clips whose
 * exact objective is within 2% of the fp32 search's; where the host has
 * no bf16 dot product it is the fp32 search.  Inputs of rank 8 (plus
 * noise) give a nearly singular Gram matrix. */
TEST(clip_search_bf16)
{
    enum { R = 48, C = 256, N = 300, K = 8 };
    float *W = malloc(sizeof(float) * R * C), *x = malloc(sizeof(float) * N * C), *basis = malloc(sizeof(float) * K * C);
    float ca[R * (C / 128) * 2], cb[R * (C / 128) * 2];
    for (int i = 0; i < R * C; i++) W[i] = gauss() * 0.02f * (i % 37 == 0 ? 8.0f : 1.0f);
    for (int i = 0; i < K * C; i++) basis[i] = gauss();
    for (int t = 0; t < N; t++)
        for (int c = 0; c < C; c++) {
            float v = 1e-3f * gauss();
            for (int b = 0; b < K; b++) v += basis[b * C + c] * (float)(t % (b + 3)) / (float)(b + 1);
            x[t * C + c] = v;
        }
    llmq_awq_qcfg q = { .bits = 4, .group = 128, .sym = 0 };
    double before, after, shrink, frac;
    llmq_err err = { 0, "" };
    CHECK_EQ_INT(clip_xe(W, R, C, x, N, &q, 0, ca, &before, &after, &shrink, &frac, &err), LLMQ_OK);
    double ea = clip_objective(W, R, C, x, N, &q, ca);
    CHECK_MSG(fabs(after * R - ea) <= 1e-3 * ea, "reported %g, objective %g", after * R, ea);
    CHECK_EQ_INT(clip_xe(W, R, C, x, N, &q, 1, cb, &before, &after, &shrink, &frac, &err), LLMQ_OK);
    double eb = clip_objective(W, R, C, x, N, &q, cb);
    CHECK_MSG(eb <= 1.02 * ea, "bf16 clips: objective %g, fp32 clips %g", eb, ea);
    if (!llmq_has_bf16_dot()) CHECK(!memcmp(ca, cb, sizeof ca));
    free(W); free(x); free(basis);
}

/* The Gram factor stands in for the tokens: |R_k d|^2 equals the mean over
 * the tokens of (x_t,k . d)^2 (with the inputs divided by s), also when the
 * tokens are fewer than the group (a singular Gram matrix). */
TEST(gram_factor_matches_tokens)
{
    enum { C = 256, G = 128 };
    for (int trial = 0; trial < 3; trial++) {
        int n = trial == 2 ? 40 : 700;
        float *x = malloc(sizeof(float) * n * C), *tmp = malloc(sizeof(float) * C * G), *r = malloc(sizeof(float) * C * G);
        double *g = calloc((size_t)C * G, sizeof(double));
        float s[C], d[C];
        for (int i = 0; i < n * C; i++) x[i] = gauss() * ((i % C) == 7 ? 50.0f : 1.0f) + (trial == 1 ? 3.0f : 0.0f);
        for (int c = 0; c < C; c++) s[c] = trial == 0 ? 1.0f : 0.5f + frand();
        /* two calls accumulate: the rows in two halves */
        llmq_awq_gram_add(NULL, x, n / 2, C, G, tmp, g);
        llmq_awq_gram_add(NULL, x + (n / 2) * C, n - n / 2, C, G, tmp, g);
        llmq_err err = { 0, "" };
        CHECK_EQ_INT(llmq_awq_gram_factor(NULL, g, C, G, s, n, r, &err), LLMQ_OK);
        for (int rep = 0; rep < 5; rep++) {
            for (int c = 0; c < C; c++) d[c] = gauss();
            for (int k = 0; k < C / G; k++) {
                double want = 0, got = 0;
                for (int t = 0; t < n; t++) {
                    double a = 0;
                    for (int e = 0; e < G; e++) a += (double)x[t * C + k * G + e] / s[k * G + e] * d[k * G + e];
                    want += a * a;
                }
                want /= n;
                for (int i = 0; i < G; i++) {
                    double a = 0;
                    for (int e = 0; e < G; e++) a += (double)r[(size_t)k * G * G + i * G + e] * d[k * G + e];
                    got += a * a;
                }
                CHECK_MSG(fabs(got - want) <= 1e-4 * want, "trial %d block %d: %g vs %g", trial, k, got, want);
            }
        }
        free(x); free(tmp); free(r); free(g);
    }
}

/* A weight matrix with one planted outlier per row group on a column whose
 * input is tiny: clipping it costs nothing and refines the other codes. */
TEST(clip_search_planted_outlier)
{
    enum { R = 32, C = 256, N = 512 };
    float *W = malloc(sizeof(float) * R * C), *x = malloc(sizeof(float) * N * C), clip[R * (C / 128) * 2];
    for (int i = 0; i < R * C; i++) W[i] = gauss() * 0.02f;
    for (int r = 0; r < R / 2; r++) W[r * C + 5] = 1.0f, W[r * C + 130] = -1.0f;   /* rows 0..15 carry outliers */
    for (int t = 0; t < N; t++)
        for (int c = 0; c < C; c++) x[t * C + c] = c == 5 || c == 130 ? 1e-4f * gauss() : gauss();
    llmq_awq_qcfg q = { .bits = 4, .group = 128, .sym = 0 };
    double before, after, shrink, frac;
    llmq_err err = { 0, "" };
    CHECK_EQ_INT(clip_x(W, R, C, x, N, &q, clip, &before, &after, &shrink, &frac, &err), LLMQ_OK);
    CHECK(after <= before);
    CHECK_MSG(after < 0.5 * before, "after %g before %g", after, before);
    for (int r = 0; r < R / 2; r++)
        for (int k = 0; k < 2; k++) {
            /* group 0 holds +1 (its upper clip shrinks), group 1 holds -1 (its lower) */
            float c = clip[(r * 2 + k) * 2 + k];
            CHECK_MSG(c <= 0.55f, "row %d group %d clip %g", r, k, c);
        }
    CHECK(shrink < 1.0 && frac > 0.4);
    /* the clip is what the packer applies: clamping then quantizing gives
     * the same values as quantizing with the clip */
    float *Wc = malloc(sizeof(float) * R * C), a[C], b[C];
    memcpy(Wc, W, sizeof(float) * R * C);
    llmq_awq_transform(Wc, R, C, NULL, NULL, clip, 128);
    for (int r = 0; r < R; r++) {
        llmq_q4_fake_row(Wc + r * C, C, 128, 0, NULL, a);
        llmq_awq_fake_row(&q, W + r * C, C, clip + r * 4, b);
        CHECK(!memcmp(a, b, sizeof a));
    }
    free(W); free(x); free(Wc);
}

/* Zero and tiny activations give finite scales; an input where every loss
 * is non-finite falls back to s = 1 and says so. */
TEST(nonfinite_fallbacks)
{
    enum { N = 32, H = 128, R = 16 };
    float x[N * H], W[R * H], xm[H], s[H];
    for (int i = 0; i < R * H; i++) W[i] = gauss();
    for (int i = 0; i < N * H; i++) x[i] = (i % H) < 64 ? 0.0f : gauss() * 1e-30f;
    for (int c = 0; c < H; c++) xm[c] = c < 64 ? 0.0f : 1e-30f;
    llmq_awq_group g = { x, N, H, xm, 0, 0, 0, 1, { W }, { R }, NULL, 0, 0, 0, 0 };
    llmq_awq_qcfg q = { .bits = 4, .group = 128, .sym = 0 };
    double ratio, l1, lb;
    int fb, pd;
    llmq_err err = { 0, "" };
    CHECK_EQ_INT(llmq_awq_search_scale(NULL, &g, &q, 10, 1, s, &ratio, &pd, &l1, &lb, &fb, &err), LLMQ_OK);
    CHECK(!fb);
    for (int c = 0; c < H; c++) CHECK(isfinite(s[c]) && s[c] > 0);
    /* non-finite activations: every loss is NaN/Inf -> s = 1, flagged */
    for (int i = 0; i < N * H; i++) x[i] = gauss();
    x[7] = INFINITY;
    for (int c = 0; c < H; c++) xm[c] = c == 7 ? INFINITY : 1.0f;
    CHECK_EQ_INT(llmq_awq_search_scale(NULL, &g, &q, 10, 1, s, &ratio, &pd, &l1, &lb, &fb, &err), LLMQ_OK);
    CHECK(fb);
    CHECK(ratio == 0.0);
    for (int c = 0; c < H; c++) CHECK(s[c] == 1.0f);
    /* zero weights: clip search keeps them finite and unclipped */
    float Wz[R * H], clip[2 * R], before, after;
    double b2, a2, sh, fr;
    (void)before; (void)after;
    memset(Wz, 0, sizeof Wz);
    for (int i = 0; i < N * H; i++) x[i] = gauss();
    CHECK_EQ_INT(clip_x(Wz, R, H, x, N, &q, clip, &b2, &a2, &sh, &fr, &err), LLMQ_OK);
    CHECK(b2 == 0.0 && a2 == 0.0);
    for (int r = 0; r < 2 * R; r++) CHECK(isinf(clip[r]));
}

/* An MLP group (gate/up searched on the MLP output) improves on s = 1. */
TEST(scale_search_mlp_group)
{
    enum { N = 128, H = 128, FF = 256 };
    float *x = malloc(sizeof(float) * N * H), *Wg = malloc(sizeof(float) * FF * H), *Wu = malloc(sizeof(float) * FF * H),
          *Wd = malloc(sizeof(float) * H * FF), xm[H], s[H];
    for (int i = 0; i < FF * H; i++) { Wg[i] = gauss() * 0.1f; Wu[i] = gauss() * 0.1f; Wd[i] = gauss() * 0.1f; }
    for (int t = 0; t < N; t++)
        for (int c = 0; c < H; c++) x[t * H + c] = gauss() * (c % 31 == 0 ? 20.0f : 1.0f);
    for (int c = 0; c < H; c++) {
        double a = 0;
        for (int t = 0; t < N; t++) a += fabsf(x[t * H + c]);
        xm[c] = (float)(a / N);
    }
    llmq_awq_group g = { x, N, H, xm, 0, 0, 0, 2, { Wg, Wu }, { FF, FF }, Wd, H, 0, 0, 0 };
    llmq_awq_qcfg q = { .bits = 3, .group = 128, .sym = 0 };
    double ratio, l1, lb;
    int fb, pd;
    llmq_err err = { 0, "" };
    CHECK_EQ_INT(llmq_awq_search_scale(NULL, &g, &q, 20, 1, s, &ratio, &pd, &l1, &lb, &fb, &err), LLMQ_OK);
    CHECK(!fb && ratio > 0 && lb < l1);
    /* two stages (every candidate on 32 tokens, the best 4 and s = 1 on
     * all 128): s = 1's loss is the same, and the pick is within 2% of the
     * full search's, never worse than s = 1 */
    float s2[H];
    double ratio2, l12, lb2;
    g.n_coarse = 32;
    CHECK_EQ_INT(llmq_awq_search_scale(NULL, &g, &q, 20, 1, s2, &ratio2, &pd, &l12, &lb2, &fb, &err), LLMQ_OK);
    CHECK(!fb && l12 == l1 && lb2 <= l12);
    CHECK_MSG(lb2 <= 1.02 * lb, "two-stage %g, full %g", lb2, lb);
    /* the products in bf16 (act_bf16, both stages): s = 1's loss within 1%
     * of fp32's, and the pick's fp32 loss within 2% of the fp32 search's */
    float s3[H];
    double ratio3, l13, lb3;
    g.act_bf16 = 1;
    CHECK_EQ_INT(llmq_awq_search_scale(NULL, &g, &q, 20, 1, s3, &ratio3, &pd, &l13, &lb3, &fb, &err), LLMQ_OK);
    CHECK(!fb && lb3 <= l13);
    CHECK_MSG(fabs(l13 - l1) <= 0.01 * l1, "bf16 s=1 loss %g, fp32 %g", l13, l1);
    CHECK_MSG(fabs(lb3 - lb2) <= 0.02 * lb2, "bf16 best %g, fp32 %g (ratios %g, %g)", lb3, lb2, ratio3, ratio2);
    free(x); free(Wg); free(Wu); free(Wd);
}

TEST_MAIN()
