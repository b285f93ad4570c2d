/* t-grad.c - every backward op of lib/train against central finite differences. */
#include "../test.h"
#include "train/ops.h"
#include "train/tmodel.h"
#include "calib/data.h"

static uint64_t rng = 12345;
static float urand(void) { return (float)((llmq_splitmix64(&rng) >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f; }
static float *rnd(size_t n, float scale)
{
    float *p = malloc(n * sizeof(float) + 64);
    for (size_t i = 0; i < n; i++) p[i] = urand() * scale;
    return p;
}
static double dot(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* Compare an analytic gradient g of f at x element by element against
 * central differences; f returns a double loss. */
typedef double (*lossfn)(void *ctx);
static int fd_check(const char *what, float *x, const float *g, size_t n, lossfn f, void *ctx, float h, double tol)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        float x0 = x[i];
        x[i] = x0 + h; double lp = f(ctx);
        x[i] = x0 - h; double lm = f(ctx);
        x[i] = x0;
        double num = (lp - lm) / (2.0 * h);
        double d = fabs(num - g[i]), s = fabs(num) > fabs(g[i]) ? fabs(num) : fabs(g[i]);
        if (d > tol * s + tol * 0.1) {
            if (bad < 3) fprintf(stderr, "  %s[%zu]: analytic %.6g, numeric %.6g\n", what, i, g[i], num);
            bad++;
        }
    }
    return bad;
}

/* ---- RMSNorm ---- */
struct rms_ctx { int T, H; float *x, *w, *y, *r, *R; };
static double rms_loss(void *c_)
{
    struct rms_ctx *c = c_;
    llmq_op_rmsnorm_fwd(c->x, c->w, c->T, c->H, 1e-5f, c->y, c->r);
    return dot(c->y, c->R, (size_t)c->T * c->H);
}
TEST(grad_rmsnorm)
{
    struct rms_ctx c = { 3, 8, rnd(24, 1), rnd(8, 1), rnd(24, 1), rnd(3, 1), rnd(24, 1) };
    float *dx = calloc(24, sizeof(float)), *dw = calloc(8, sizeof(float));
    rms_loss(&c);
    llmq_op_rmsnorm_bwd(c.x, c.w, c.r, c.R, 3, 8, dx, dw);
    CHECK(fd_check("rms dx", c.x, dx, 24, rms_loss, &c, 1e-2f, 1e-2) == 0);
    CHECK(fd_check("rms dw", c.w, dw, 8, rms_loss, &c, 1e-2f, 1e-2) == 0);
    free(c.x); free(c.w); free(c.y); free(c.r); free(c.R); free(dx); free(dw);
}

/* ---- linear ---- */
struct lin_ctx { int T, in, out; float *X, *W, *b, *Y, *R; };
static double lin_loss(void *c_)
{
    struct lin_ctx *c = c_;
    llmq_op_linear_fwd(c->X, c->W, c->b, c->T, c->in, c->out, c->Y);
    return dot(c->Y, c->R, (size_t)c->T * c->out);
}
TEST(grad_linear)
{
    struct lin_ctx c = { 4, 5, 3, rnd(20, 1), rnd(15, 1), rnd(3, 1), rnd(12, 1), rnd(12, 1) };
    float *dX = rnd(20, 1), *dW = calloc(15, sizeof(float)), *db = calloc(3, sizeof(float));
    float *dX0 = malloc(20 * sizeof(float));
    memcpy(dX0, dX, 20 * sizeof(float));
    lin_loss(&c);
    llmq_op_linear_bwd(c.X, c.W, c.R, 4, 5, 3, dX, 1, dW, db);
    for (int i = 0; i < 20; i++) dX[i] -= dX0[i];     /* accumulation adds exactly the gradient */
    CHECK(fd_check("lin dX", c.X, dX, 20, lin_loss, &c, 1e-2f, 1e-3) == 0);
    CHECK(fd_check("lin dW", c.W, dW, 15, lin_loss, &c, 1e-2f, 1e-3) == 0);
    CHECK(fd_check("lin db", c.b, db, 3, lin_loss, &c, 1e-2f, 1e-3) == 0);
    llmq_op_linear_bwd(c.X, c.W, c.R, 4, 5, 3, dX0, 0, NULL, NULL);   /* overwrite mode */
    CHECK(fd_check("lin dX overwrite", c.X, dX0, 20, lin_loss, &c, 1e-2f, 1e-3) == 0);
    free(c.X); free(c.W); free(c.b); free(c.Y); free(c.R); free(dX); free(dW); free(db); free(dX0);
}

/* ---- RoPE ---- */
struct rope_ctx { int T, nh, hd; float *x, *y, *cs, *sn, *R; };
static double rope_loss(void *c_)
{
    struct rope_ctx *c = c_;
    size_t n = (size_t)c->T * c->nh * c->hd;
    memcpy(c->y, c->x, n * sizeof(float));
    llmq_op_rope_fwd(c->y, c->T, c->nh, c->hd, c->cs, c->sn);
    return dot(c->y, c->R, n);
}
TEST(grad_rope)
{
    struct rope_ctx c = { 5, 2, 8, rnd(80, 1), rnd(80, 1), rnd(20, 1), rnd(20, 1), rnd(80, 1) };
    llmq_config rc = { .rope_theta = 10000.0 };
    llmq_op_rope_tables(5, 8, &rc, c.cs, c.sn);
    float *d = malloc(80 * sizeof(float));
    memcpy(d, c.R, 80 * sizeof(float));
    llmq_op_rope_bwd(d, 5, 2, 8, c.cs, c.sn);
    CHECK(fd_check("rope dx", c.x, d, 80, rope_loss, &c, 1e-2f, 1e-3) == 0);
    free(c.x); free(c.y); free(c.cs); free(c.sn); free(c.R); free(d);
}

/* ---- attention (GQA, causal, optionally windowed) ---- */
struct attn_ctx { llmq_attn_shape s; float *Q, *K, *V, *P, *O, *R; };
static double attn_loss(void *c_)
{
    struct attn_ctx *c = c_;
    llmq_op_attn_fwd(&c->s, c->Q, c->K, c->V, c->P, c->O);
    return dot(c->O, c->R, (size_t)c->s.T * c->s.n_heads * c->s.hd);
}
static void attn_case(int window)
{
    struct attn_ctx c;
    c.s = (llmq_attn_shape){ 6, 4, 2, 4, window };
    size_t nq = 6 * 16, nk = 6 * 8;
    c.Q = rnd(nq, 1.5f); c.K = rnd(nk, 1.5f); c.V = rnd(nk, 1); c.P = rnd(4 * 36, 1); c.O = rnd(nq, 1); c.R = rnd(nq, 1);
    float *dQ = malloc(nq * sizeof(float)), *dK = malloc(nk * sizeof(float)), *dV = malloc(nk * sizeof(float)), *scr = malloc(36 * sizeof(float));
    attn_loss(&c);
    /* rows of P sum to one and masked entries are zero */
    for (int h = 0; h < 4; h++)
        for (int i = 0; i < 6; i++) {
            double s = 0;
            for (int t = 0; t < 6; t++) {
                float p = c.P[(h * 6 + i) * 6 + t];
                s += p;
                if (t > i || (window && t < i - window + 1)) CHECK(p == 0.0f);
            }
            CHECK_NEAR(s, 1.0, 1e-5);
        }
    llmq_op_attn_bwd(&c.s, c.Q, c.K, c.V, c.P, c.R, dQ, dK, dV, scr);
    CHECK(fd_check("attn dQ", c.Q, dQ, nq, attn_loss, &c, 1e-2f, 1e-2) == 0);
    CHECK(fd_check("attn dK", c.K, dK, nk, attn_loss, &c, 1e-2f, 1e-2) == 0);
    CHECK(fd_check("attn dV", c.V, dV, nk, attn_loss, &c, 1e-2f, 1e-2) == 0);
    /* without dQ the K and V gradients are the same */
    float *dK2 = malloc(nk * sizeof(float)), *dV2 = malloc(nk * sizeof(float));
    attn_loss(&c);
    llmq_op_attn_bwd(&c.s, c.Q, c.K, c.V, c.P, c.R, NULL, dK2, dV2, scr);
    CHECK(memcmp(dK, dK2, nk * sizeof(float)) == 0 && memcmp(dV, dV2, nk * sizeof(float)) == 0);
    free(c.Q); free(c.K); free(c.V); free(c.P); free(c.O); free(c.R);
    free(dQ); free(dK); free(dV); free(scr); free(dK2); free(dV2);
}
TEST(grad_attention_gqa) { attn_case(0); }
TEST(grad_attention_window) { attn_case(3); }

/* ---- SwiGLU ---- */
struct sw_ctx { float *g, *u, *h, *R; };
static double sw_loss(void *c_)
{
    struct sw_ctx *c = c_;
    llmq_op_swiglu_fwd(c->g, c->u, 16, c->h);
    return dot(c->h, c->R, 16);
}
TEST(grad_swiglu)
{
    struct sw_ctx c = { rnd(16, 3), rnd(16, 2), rnd(16, 1), rnd(16, 1) };
    float dg[16], du[16];
    llmq_op_swiglu_bwd(c.g, c.u, c.R, 16, dg, du);
    CHECK(fd_check("swiglu dg", c.g, dg, 16, sw_loss, &c, 1e-2f, 1e-2) == 0);
    CHECK(fd_check("swiglu du", c.u, du, 16, sw_loss, &c, 1e-2f, 1e-2) == 0);
    free(c.g); free(c.u); free(c.h); free(c.R);
}

/* ---- embedding ---- */
struct emb_ctx { float *E, *x, *R; int32_t tok[5]; };
static double emb_loss(void *c_)
{
    struct emb_ctx *c = c_;
    llmq_op_embed_fwd(c->E, 4, c->tok, 5, c->x);
    return dot(c->x, c->R, 20);
}
TEST(grad_embedding)
{
    struct emb_ctx c = { rnd(24, 1), rnd(20, 1), rnd(20, 1), { 3, 1, 3, 0, 5 } };
    float *dE = calloc(24, sizeof(float));
    llmq_op_embed_bwd(dE, 4, c.tok, 5, c.R);
    CHECK(fd_check("embed dE", c.E, dE, 24, emb_loss, &c, 1e-2f, 1e-3) == 0);
    for (int i = 8; i < 12; i++) CHECK(dE[i] == 0.0f);   /* row 2 never used */
    free(c.E); free(c.x); free(c.R); free(dE);
}

/* ---- cross-entropy + KL on logits ---- */
struct xk_ctx { float *z, *t, *dz; int32_t tgt[4]; float a; };
static double xk_loss(void *c_)
{
    struct xk_ctx *c = c_;
    return llmq_op_xent_kl(c->z, c->t, c->tgt, 4, 7, c->a, 1.0f, c->dz, NULL, NULL);
}
TEST(grad_xent_kl)
{
    float as[] = { 0.0f, 0.5f, 1.0f };
    for (int k = 0; k < 3; k++) {
        struct xk_ctx c = { rnd(28, 3), rnd(28, 3), malloc(28 * sizeof(float)), { 2, -1, 6, 0 }, as[k] };
        float g[28];
        double ce, kl;
        double L = llmq_op_xent_kl(c.z, c.t, c.tgt, 4, 7, c.a, 1.0f, g, &ce, &kl);
        CHECK_NEAR(L, (1 - c.a) * ce + c.a * kl, 1e-9);
        CHECK(kl >= 0);
        for (int i = 7; i < 14; i++) CHECK(g[i] == 0.0f);   /* the skipped row */
        CHECK(fd_check("xent dz", c.z, g, 28, xk_loss, &c, 1e-2f, 1e-2) == 0);
        free(c.z); free(c.t); free(c.dz);
    }
    /* KL of a distribution to itself is zero */
    float z[7] = { 1, 2, 3, -1, 0, 0.5f, 2 }, d[7];
    int32_t tg[1] = { 1 };
    double kl;
    llmq_op_xent_kl(z, z, tg, 1, 7, 1.0f, 1.0f, d, NULL, &kl);
    CHECK_NEAR(kl, 0.0, 1e-6);
    for (int i = 0; i < 7; i++) CHECK_NEAR(d[i], 0.0, 1e-6);
}

/* ---- AdamW ---- */
TEST(adamw_first_step)
{
    /* the first bias-corrected step moves every weight by lr * sign(g) (plus decay) */
    float w[3] = { 1, -2, 0.5f }, g[3] = { 0.3f, -4, 1e-3f }, m[3] = { 0 }, v[3] = { 0 };
    llmq_adamw o = { 0.1f, 0.9f, 0.999f, 1e-12f, 0.01f };
    llmq_adamw_step(&o, 1, w, g, m, v, 3);
    CHECK_NEAR(w[0], 1 * (1 - 0.001) - 0.1, 1e-5);
    CHECK_NEAR(w[1], -2 * (1 - 0.001) + 0.1, 1e-5);
    CHECK_NEAR(w[2], 0.5 * (1 - 0.001) - 0.1, 1e-4);
}

/* ---- the whole model: directional derivatives per tensor ---- */
struct model_ctx { llmq_tmodel *tm; llmq_tws *ws; int32_t tok[7]; float *teacher; };
static double model_loss(void *c_)
{
    struct model_ctx *c = c_;
    int T = 6, V = c->tm->cfg.vocab;
    llmq_tmodel_forward(c->tm, c->ws, c->tok, T);
    return llmq_op_xent_kl(llmq_tws_logits(c->ws), c->teacher, c->tok + 1, T, V, 0.5f, 1.0f,
                           llmq_tws_dlogits(c->ws), NULL, NULL);
}
static void model_case(llmq_train_set set)
{
    llmq_err err = { 0, "" };
    llmq_model m;
    if (llmq_model_open(&m, "testdata/tiny-qwen2-gqa", &err)) { CHECK_MSG(0, "%s", err.msg); return; }
    llmq_tmodel tm;
    llmq_tws *ws = NULL;
    CHECK(llmq_tmodel_from_model(&tm, &m, &err) == 0);
    CHECK(llmq_tmodel_set_train(&tm, set, &err) == 0);
    CHECK(llmq_tws_new(&ws, &tm, 6, &err) == 0);
    struct model_ctx c = { &tm, ws, { 5, 100, 7, 2000, 33, 9, 1 }, rnd(6 * 4096, 4) };
    model_loss(&c);
    llmq_tmodel_zero_grad(&tm);
    llmq_tmodel_backward(&tm, ws);
    int checked = 0;
    for (int i = 0; i < tm.n_params; i++) {
        llmq_tparam *p = &tm.p[i];
        if (!p->train) continue;
        /* spot-check one layer's tensors plus the global ones */
        if (strstr(p->name, "layers.") && !strstr(p->name, "layers.1.")) continue;
        float *u = rnd(p->n, 1), *w0 = malloc(p->n * sizeof(float));
        memcpy(w0, p->w, p->n * sizeof(float));
        double an = dot(p->g, u, p->n), nu = 0;
        for (size_t k = 0; k < p->n; k++) nu += (double)u[k] * u[k];
        double wr = sqrt(dot(w0, w0, p->n) / p->n);
        float h = (float)(1e-2 * (wr > 0.1 ? wr : 0.1));   /* float forward: smaller steps drown in rounding */
        for (size_t k = 0; k < p->n; k++) p->w[k] = w0[k] + h * u[k];
        double lp = model_loss(&c);
        for (size_t k = 0; k < p->n; k++) p->w[k] = w0[k] - h * u[k];
        double lm = model_loss(&c);
        memcpy(p->w, w0, p->n * sizeof(float));
        double num = (lp - lm) / (2.0 * h);
        CHECK_MSG(fabs(num - an) <= 3e-2 * fabs(an) + 1e-3, "%s: analytic %.6g numeric %.6g", p->name, an, num);
        checked++;
        free(u); free(w0);
    }
    CHECK(checked >= (set == LLMQ_TRAIN_ALL ? 10 : 4));
    /* K/V training leaves the other tensors without gradients */
    if (set == LLMQ_TRAIN_KV)
        for (int i = 0; i < tm.n_params; i++)
            CHECK((tm.p[i].g != NULL) == (strstr(tm.p[i].name, "k_proj") || strstr(tm.p[i].name, "v_proj")));
    free(c.teacher);
    llmq_tws_free(ws);
    llmq_tmodel_release(&tm);
    llmq_model_close(&m);
}
TEST(grad_model_all) { model_case(LLMQ_TRAIN_ALL); }
TEST(grad_model_kv) { model_case(LLMQ_TRAIN_KV); }

/* the training forward agrees with the runner's logits */
#include "runner.h"
TEST(forward_matches_runner)
{
    llmq_err err = { 0, "" };
    llmq_model m;
    if (llmq_model_open(&m, "testdata/tiny-qwen2-gqa", &err)) { CHECK_MSG(0, "%s", err.msg); return; }
    llmq_tmodel tm;
    llmq_tws *ws = NULL;
    llmq_runner *r = NULL;
    int32_t tok[8] = { 1, 50, 300, 7, 4000, 12, 99, 3 };
    float *ref = malloc(8 * 4096 * sizeof(float));
    CHECK(llmq_tmodel_from_model(&tm, &m, &err) == 0);
    CHECK(llmq_tws_new(&ws, &tm, 8, &err) == 0);
    CHECK(llmq_runner_new(&r, &m, 8, NULL, &err) == 0);
    CHECK(llmq_runner_forward(r, tok, 8, 0, ref, 1, &err) == 0);
    llmq_tmodel_forward(&tm, ws, tok, 8);
    const float *lg = llmq_tws_logits(ws);
    double md = 0;
    for (int i = 0; i < 8 * 4096; i++) md = fmax(md, fabs(lg[i] - ref[i]));
    CHECK_MSG(md < 1e-3, "max diff %g", md);
    free(ref);
    llmq_runner_free(r);
    llmq_tws_free(ws);
    llmq_tmodel_release(&tm);
    llmq_model_close(&m);
}

TEST_MAIN()
