/* t-gptq.c - GPTQ rounding on a fixed grid: the grid is round to nearest's
 * bit for bit, a diagonal Gram matrix leaves nothing to compensate (round
 * to nearest exactly), correlated inputs lower the output error, the loss
 * it reports is the OBS identity's, threads change nothing, bad input is
 * refused. */
#include "../test.h"
#include "algo/gptq.h"
#include "../../calib/data.h"
#include "quant/quant.h"

static uint64_t rs = 777;
static float frand(void) { return (float)((double)(llmq_splitmix64(&rs) >> 11) / 9007199254740992.0); }
static float gauss(void)
{
    float u = frand() + 1e-7f, v = frand();
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

enum { R = 24, C = 128, N = 512 };

/* Correlated inputs x = z A (N, C) with a few large channels; gram = X^T X
 * (upper triangle, row-major). */
static void make_inputs(double *gram, int diagonal)
{
    static float A[C * C], X[N * C];
    for (int i = 0; i < C * C; i++) A[i] = diagonal ? 0.0f : 0.3f * gauss();
    for (int i = 0; i < C; i++) A[i * C + i] += 1.0f + (i % 17 == 0 ? 6.0f : 0.0f);
    for (int t = 0; t < N; t++) {
        float z[C];
        for (int i = 0; i < C; i++) z[i] = gauss();
        for (int c = 0; c < C; c++) {
            float s = 0;
            for (int i = 0; i < C; i++) s += z[i] * A[i * C + c];
            X[t * C + c] = s;
        }
    }
    for (int a = 0; a < C; a++)
        for (int b = 0; b < C; b++) {
            double s = 0;
            if (b >= a && (!diagonal || a == b))
                for (int t = 0; t < N; t++) s += (double)X[t * C + a] * X[t * C + b];
            gram[a * C + b] = s;
        }
}

static void make_weights(float *w)
{
    for (int i = 0; i < R * C; i++) w[i] = 0.02f * gauss();
    w[5] = 0.3f;      /* an outlier weight */
}

static int nib(const uint8_t *c, int j) { return j & 1 ? c[j / 2] >> 4 : c[j / 2] & 15; }

struct out {
    uint8_t codes[R * C / 2], zeros[R * C / 32];
    uint16_t scales[R * C / 32];
    float deq[R * C];
    llmq_gptq_stats st;
};

static int run(llmq_pool *pool, int bits, int group, int sym, const float *w, const double *gram, const float *div,
               const float *clip, struct out *o)
{
    static float wk[R * C];
    memcpy(wk, w, sizeof wk);
    llmq_gptq_cfg q = { bits, group, sym };
    llmq_err err = { 0, "" };
    memset(o, 0, sizeof *o);
    llmq_gptq_h *h = NULL;
    int rc = llmq_gptq_h_new(&h, gram, C, N, div, LLMQ_GPTQ_DAMP_DEFAULT, &err);
    if (!rc) rc = llmq_gptq_quantize(pool, &q, h, wk, R, clip, o->codes, o->scales, sym ? NULL : o->zeros, o->deq, &o->st,
                                     &err);
    llmq_gptq_h_free(h);
    return rc;
}

/* round to nearest of the clipped rows: the packer's quantizers */
static void rtn(int bits, int group, int sym, const float *w, const float *clip, struct out *o)
{
    int ng = C / group;
    memset(o, 0, sizeof *o);
    for (int r = 0; r < R; r++) {
        float row[C];
        for (int c = 0; c < C; c++) {
            row[c] = w[r * C + c];
            if (clip) row[c] = fminf(fmaxf(row[c], -clip[2 * (r * ng + c / group) + 1]), clip[2 * (r * ng + c / group)]);
        }
        (bits == 3 ? llmq_q3_quantize_row : llmq_q4_quantize_row)(row, C, group, sym, NULL, o->codes + r * C / 2,
                                                                  o->scales + r * ng, sym ? NULL : o->zeros + r * ng);
        llmq_q4_dequantize_row(o->codes + r * C / 2, o->scales + r * ng, sym ? NULL : o->zeros + r * ng, C, group,
                               o->deq + r * C);
    }
}

static void make_clip(float *clip, const float *w, int group)
{
    int ng = C / group;
    for (int r = 0; r < R; r++)
        for (int g = 0; g < ng; g++) {
            float mx = 0, mn = 0;
            for (int c = g * group; c < (g + 1) * group; c++) { mx = fmaxf(mx, w[r * C + c]); mn = fminf(mn, w[r * C + c]); }
            clip[2 * (r * ng + g)] = (r + g) % 3 ? 0.8f * mx : INFINITY;
            clip[2 * (r * ng + g) + 1] = (r + g) % 2 ? -0.9f * mn : INFINITY;
        }
}

TEST(grid_is_round_to_nearest_and_codes_stay_on_it)
{
    static double gram[C * C];
    static float w[R * C], clip[R * C / 32 * 2];
    static struct out g, r;
    make_inputs(gram, 0);
    make_weights(w);
    for (int bits = 3; bits <= 4; bits++)
        for (int sym = 0; sym <= 1; sym++)
            for (int group = 32; group <= 128; group *= 2)
                for (int withclip = 0; withclip <= 1; withclip++) {
                    if (withclip) make_clip(clip, w, group);
                    int ng = C / group;
                    CHECK_EQ_INT(run(NULL, bits, group, sym, w, gram, NULL, withclip ? clip : NULL, &g), LLMQ_OK);
                    rtn(bits, group, sym, w, withclip ? clip : NULL, &r);
                    CHECK(!memcmp(g.scales, r.scales, sizeof(uint16_t) * R * ng));
                    CHECK(sym || !memcmp(g.zeros, r.zeros, (size_t)R * ng));
                    int maxq = sym ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
                    int lo = sym ? 8 - maxq - (bits == 4) : 0, hi = sym ? 8 + maxq : maxq, bad = 0, dbad = 0;
                    for (int i = 0; i < R * C; i++) {
                        int q = nib(g.codes, i), z = sym ? 8 : g.zeros[i / group];
                        bad += q < lo || q > hi;
                        dbad += g.deq[i] != (float)(q - z) * llmq_f16_to_f32(g.scales[i / group]);
                    }
                    CHECK_MSG(!bad && !dbad, "bits %d sym %d group %d clip %d: %d off the grid, %d dequantized wrong",
                              bits, sym, group, withclip, bad, dbad);
                }
}

TEST(diagonal_gram_leaves_round_to_nearest)
{
    static double gram[C * C];
    static float w[R * C];
    static struct out g, r;
    make_inputs(gram, 1);
    make_weights(w);
    for (int bits = 3; bits <= 4; bits++)
        for (int sym = 0; sym <= 1; sym++) {
            CHECK_EQ_INT(run(NULL, bits, 32, sym, w, gram, NULL, NULL, &g), LLMQ_OK);
            rtn(bits, 32, sym, w, NULL, &r);
            CHECK_MSG(!memcmp(g.codes, r.codes, sizeof g.codes), "bits %d sym %d", bits, sym);
        }
}

TEST(correlated_inputs_lower_the_output_error)
{
    static double gram[C * C];
    static float w[R * C], div[C], clip[R * C / 32 * 2];
    static struct out g, r;
    make_inputs(gram, 0);
    make_weights(w);
    for (int c = 0; c < C; c++) div[c] = 0.5f + frand();
    for (int bits = 3; bits <= 4; bits++)
        for (int sym = 0; sym <= 1; sym++)
            for (int withdiv = 0; withdiv <= 1; withdiv++) {
                make_clip(clip, w, 32);
                const float *d = withdiv ? div : NULL;
                CHECK_EQ_INT(run(NULL, bits, 32, sym, w, gram, d, clip, &g), LLMQ_OK);
                rtn(bits, 32, sym, w, clip, &r);
                llmq_gptq_h *h = NULL;
                llmq_err err = { 0, "" };
                CHECK_EQ_INT(llmq_gptq_h_new(&h, gram, C, N, d, LLMQ_GPTQ_DAMP_DEFAULT, &err), LLMQ_OK);
                double lg = llmq_gptq_loss(h, w, g.deq, R), lr = llmq_gptq_loss(h, w, r.deq, R);
                llmq_gptq_h_free(h);
                CHECK_MSG(lg > 0 && lg < 0.9 * lr, "bits %d sym %d div %d: gptq %g, rtn %g", bits, sym, withdiv, lg, lr);
                /* the OBS identity: the sum of the scaled errors is the loss
                 * under the damped Gram matrix */
                double mean = 0, dw2 = 0;
                for (int c = 0; c < C; c++) mean += gram[c * C + c] / N / (d ? (double)d[c] * d[c] : 1.0);
                mean /= C;
                for (int i = 0; i < R * C; i++) dw2 += ((double)w[i] - g.deq[i]) * ((double)w[i] - g.deq[i]);
                double damped = lg + g.st.damp * mean * dw2 / R;
                CHECK_MSG(fabs(g.st.loss - damped) <= 1e-3 * damped, "reported %g, direct %g", g.st.loss, damped);
            }
}

TEST(threads_change_nothing)
{
    static double gram[C * C];
    static float w[R * C];
    static struct out a, b;
    make_inputs(gram, 0);
    make_weights(w);
    llmq_err err = { 0, "" };
    llmq_pool *p = llmq_pool_new(3, &err);
    CHECK(p != NULL);
    for (int sym = 0; sym <= 1; sym++) {
        CHECK_EQ_INT(run(NULL, 4, 64, sym, w, gram, NULL, NULL, &a), LLMQ_OK);
        CHECK_EQ_INT(run(p, 4, 64, sym, w, gram, NULL, NULL, &b), LLMQ_OK);
        CHECK(!memcmp(a.codes, b.codes, sizeof a.codes) && !memcmp(a.deq, b.deq, sizeof a.deq));
    }
    llmq_pool_free(p);
}

TEST(bad_input_is_refused_or_harmless)
{
    static double gram[C * C];
    static float w[R * C];
    static struct out o;
    make_inputs(gram, 0);
    make_weights(w);
    llmq_err err = { 0, "" };
    llmq_gptq_h *h = NULL;
    CHECK_EQ_INT(llmq_gptq_h_new(&h, gram, C, N, NULL, 0.01, &err), LLMQ_OK);
    llmq_gptq_cfg q = { 4, 48, 0 };
    CHECK_EQ_INT(llmq_gptq_quantize(NULL, &q, h, w, R, NULL, o.codes, o.scales, o.zeros, NULL, NULL, &err), LLMQ_EUSAGE);
    q.group = 32;
    llmq_gptq_h *h0 = NULL;
    CHECK_EQ_INT(llmq_gptq_h_new(&h0, gram, C, N, NULL, 0, &err), LLMQ_EUSAGE);   /* no damping */
    CHECK(h0 == NULL);
    CHECK_EQ_INT(llmq_gptq_quantize(NULL, &q, h, w, R, NULL, o.codes, o.scales, NULL, NULL, NULL, &err),
                 LLMQ_EUSAGE);     /* asymmetric without zero points */
    llmq_gptq_h_free(h);
    gram[3 * C + 7] = NAN;
    CHECK_EQ_INT(run(NULL, 4, 32, 0, w, gram, NULL, NULL, &o), LLMQ_ENONFINITE);
    make_inputs(gram, 0);
    static float wn[R * C];
    memcpy(wn, w, sizeof wn);
    wn[9] = NAN;      /* the caller checks weights; here it must only not crash */
    CHECK_EQ_INT(run(NULL, 4, 32, 1, wn, gram, NULL, NULL, &o), LLMQ_OK);
    int bad = 0;
    for (int i = 0; i < R * C; i++) bad += nib(o.codes, i) > 15;
    CHECK(!bad);
}

TEST_MAIN()
