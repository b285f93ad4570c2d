/* t-gqa.c - MHA -> GQA conversion, activation pooling, uptraining state. */
#include <unistd.h>
#include "../test.h"
#include "algo/gqa.h"
#include "algo/uptrain.h"
#include "calib/data.h"

#define MODEL "testdata/tiny-qwen2-gqa"   /* 8 query heads, 2 KV heads, q/k/v biases */

static int open_both(llmq_model *m, llmq_tmodel *tm)
{
    llmq_err err = { 0, "" };
    if (llmq_model_open(m, MODEL, &err)) { CHECK_MSG(0, "%s", err.msg); return -1; }
    if (llmq_tmodel_from_model(tm, m, &err)) { CHECK_MSG(0, "%s", err.msg); llmq_model_close(m); return -1; }
    return 0;
}

static char *tmpdir(void)
{
    static char buf[64];
    snprintf(buf, sizeof buf, "/tmp/t-gqa.XXXXXX");
    return mkdtemp(buf);
}

TEST(gqa_check_divisors)
{
    llmq_config c = { 0 };
    c.n_heads = 8;
    c.n_kv_heads = 8;
    llmq_err err = { 0, "" };
    CHECK_EQ_INT(llmq_gqa_check(&c, 3, &err), LLMQ_EUSAGE);
    CHECK(strstr(err.msg, "must divide the model's 8 query heads") != NULL);
    CHECK_EQ_INT(llmq_gqa_check(&c, 0, &err), LLMQ_EUSAGE);
    CHECK_EQ_INT(llmq_gqa_check(&c, 16, &err), LLMQ_EUSAGE);
    for (int g = 1; g <= 8; g *= 2) CHECK_EQ_INT(llmq_gqa_check(&c, g, &err), 0);
    c.n_kv_heads = 2;
    CHECK_EQ_INT(llmq_gqa_check(&c, 4, &err), LLMQ_EUSAGE);   /* more than the model has */
    CHECK(strstr(err.msg, "key-value heads") != NULL);
    CHECK_EQ_INT(llmq_gqa_check(&c, 1, &err), 0);
}

TEST(gqa_mean_same_heads_is_identity)
{
    llmq_model m;
    llmq_tmodel tm;
    if (open_both(&m, &tm)) return;
    llmq_err err = { 0, "" };
    int i = llmq_tmodel_find(&tm, "model.layers.1.self_attn.k_proj.weight");
    size_t n = tm.p[i].n;
    float *before = malloc(n * sizeof(float));
    memcpy(before, tm.p[i].w, n * sizeof(float));
    CHECK_EQ_INT(llmq_gqa_pool_mean(&tm, 2, &err), 0);
    CHECK(tm.p[i].n == n && memcmp(before, tm.p[i].w, n * sizeof(float)) == 0);
    free(before);

    /* written back out, every tensor is byte-identical to the source */
    char *d = tmpdir(), out[128];
    snprintf(out, sizeof out, "%s/g2", d);
    CHECK_EQ_INT(llmq_tmodel_write(&tm, &m, LLMQ_DT_COUNT, NULL, out, &err), 0);
    llmq_model m2;
    CHECK_EQ_INT(llmq_model_open(&m2, out, &err), 0);
    int same = 0, total = 0;
    for (size_t s = 0; s < m.ckpt.n_shards; s++)
        for (size_t t = 0; t < m.ckpt.shards[s].n_tensors; t++) {
            const llmq_st_tensor *a = &m.ckpt.shards[s].tensors[t];
            const llmq_st_tensor *b = llmq_ckpt_find(&m2.ckpt, a->name, NULL);
            total++;
            if (b && b->dtype == a->dtype && b->nbytes == a->nbytes && !memcmp(a->data, b->data, a->nbytes)) same++;
        }
    CHECK(total > 10);
    CHECK_EQ_INT(same, total);
    CHECK_EQ_INT(m2.cfg.n_kv_heads, 2);
    llmq_model_close(&m2);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", d);
    CHECK(system(cmd) == 0);
    llmq_tmodel_release(&tm);
    llmq_model_close(&m);
}

TEST(gqa_mean_to_one_head)
{
    llmq_model m;
    llmq_tmodel tm;
    if (open_both(&m, &tm)) return;
    llmq_err err = { 0, "" };
    int hd = m.cfg.head_dim, H = m.cfg.hidden;
    int wk = llmq_tmodel_find(&tm, "model.layers.2.self_attn.v_proj.weight");
    int bk = llmq_tmodel_find(&tm, "model.layers.2.self_attn.k_proj.bias");
    float w0 = tm.p[wk].w[3 * H + 5], w1 = tm.p[wk].w[(size_t)(hd + 3) * H + 5];
    float b0 = tm.p[bk].w[7], b1 = tm.p[bk].w[hd + 7];
    CHECK_EQ_INT(llmq_gqa_pool_mean(&tm, 1, &err), 0);
    CHECK_EQ_INT(tm.cfg.n_kv_heads, 1);
    CHECK_EQ_INT(tm.p[wk].shape[0], hd);
    CHECK_EQ_INT(tm.p[wk].shape[1], H);
    CHECK_EQ_INT(tm.p[bk].shape[0], hd);
    CHECK_NEAR(tm.p[wk].w[3 * H + 5], (w0 + w1) / 2, 1e-7);
    CHECK_NEAR(tm.p[bk].w[7], (b0 + b1) / 2, 1e-6);
    /* q/o untouched */
    int wq = llmq_tmodel_find(&tm, "model.layers.2.self_attn.q_proj.weight");
    CHECK_EQ_INT(tm.p[wq].shape[0], m.cfg.n_heads * hd);

    /* the written model loads with one KV head and its config says so */
    char *d = tmpdir(), out[128], cfgp[160];
    snprintf(out, sizeof out, "%s/g1", d);
    const char *meta[] = { "llmq.gqa.pool", "mean", NULL };
    CHECK_EQ_INT(llmq_tmodel_write(&tm, &m, LLMQ_DT_F32, meta, out, &err), 0);
    llmq_model m2;
    CHECK_EQ_INT(llmq_model_open(&m2, out, &err), 0);
    CHECK_EQ_INT(m2.cfg.n_kv_heads, 1);
    CHECK_EQ_INT(m2.cfg.n_heads, m.cfg.n_heads);
    CHECK(!strcmp(m2.cfg.dtype, "float32"));
    const llmq_st_tensor *t = llmq_ckpt_find(&m2.ckpt, "model.layers.0.self_attn.k_proj.weight", NULL);
    CHECK(t && t->dtype == LLMQ_DT_F32 && t->shape[0] == hd && t->shape[1] == H);
    t = llmq_ckpt_find(&m2.ckpt, "model.layers.0.self_attn.v_proj.bias", NULL);
    CHECK(t && t->shape[0] == hd);
    CHECK(llmq_st_meta(&m2.ckpt.shards[0], "llmq.gqa.pool") && !strcmp(llmq_st_meta(&m2.ckpt.shards[0], "llmq.gqa.pool"), "mean"));
    /* and it runs */
    llmq_runner *r = NULL;
    int32_t tok[4] = { 1, 2, 3, 4 };
    float *lg = malloc(4096 * sizeof(float));
    CHECK_EQ_INT(llmq_runner_new(&r, &m2, 4, NULL, &err), 0);
    CHECK_EQ_INT(llmq_runner_forward(r, tok, 4, 0, lg, 0, &err), 0);
    CHECK(isfinite(lg[0]));
    free(lg);
    llmq_runner_free(r);
    snprintf(cfgp, sizeof cfgp, "%s/tokenizer.json", out);
    CHECK(access(cfgp, R_OK) == 0);
    /* refusing to write over the source */
    CHECK_EQ_INT(llmq_tmodel_write(&tm, &m, LLMQ_DT_COUNT, NULL, MODEL, &err), LLMQ_EUSAGE);
    llmq_model_close(&m2);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", d);
    CHECK(system(cmd) == 0);
    llmq_tmodel_release(&tm);
    llmq_model_close(&m);
}

static int32_t *random_tokens(int n, uint64_t seed)
{
    int32_t *t = malloc((size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++) t[i] = (int32_t)llmq_rand_below(&seed, 4096);
    return t;
}

TEST(gqa_activation_beats_mean)
{
    llmq_model m;
    llmq_tmodel tm;
    if (open_both(&m, &tm)) return;
    llmq_err err = { 0, "" };
    int T = 24, S = 3;
    int32_t *tok = random_tokens(S * T, 7);
    llmq_gqa_calib cal;
    CHECK_EQ_INT(llmq_gqa_collect(&m, NULL, tok, S, T, &cal, &err), 0);
    llmq_gqa_opts o;
    llmq_gqa_opts_default(&o);
    o.k_steps = 8;
    llmq_gqa_report rep;
    CHECK_EQ_INT(llmq_gqa_pool_activation(&tm, 1, &cal, &o, &rep, &err), 0);
    CHECK_EQ_INT(tm.cfg.n_kv_heads, 1);
    for (int l = 0; l < rep.n_layers; l++) {
        CHECK_MSG(rep.err_act[l] < rep.err_mean[l], "layer %d: activation %g, mean %g", l, rep.err_act[l], rep.err_mean[l]);
        CHECK(rep.err_act[l] >= 0);
    }
    int i = llmq_tmodel_find(&tm, "model.layers.0.self_attn.v_proj.weight");
    CHECK_EQ_INT(tm.p[i].shape[0], m.cfg.head_dim);
    llmq_gqa_report_release(&rep);
    llmq_tmodel_release(&tm);

    /* pooling to the heads the model has: the original is the optimum,
     * the layer errors stay ~0 */
    CHECK_EQ_INT(llmq_tmodel_from_model(&tm, &m, &err), 0);
    CHECK_EQ_INT(llmq_gqa_pool_activation(&tm, 2, &cal, &o, &rep, &err), 0);
    for (int l = 0; l < rep.n_layers; l++) {
        CHECK_MSG(rep.err_act[l] < 1e-3, "layer %d: %g", l, rep.err_act[l]);
        CHECK_MSG(rep.err_mean[l] == 0.0, "layer %d: %g", l, rep.err_mean[l]);
    }
    llmq_gqa_report_release(&rep);
    llmq_gqa_calib_release(&cal);
    llmq_tmodel_release(&tm);
    free(tok);
    llmq_model_close(&m);
}

static size_t run_n;
/* run `steps` uptraining steps from a mean-pooled model; returns k_proj values */
static float *train_run(int steps, int resume_at, const char *state, double *last_loss)
{
    llmq_model m;
    llmq_tmodel tm;
    if (open_both(&m, &tm)) return NULL;
    llmq_err err = { 0, "" };
    int T = 16, B = 2;
    int32_t *tok = random_tokens(6 * B * T, 3);
    CHECK_EQ_INT(llmq_gqa_pool_mean(&tm, 1, &err), 0);
    CHECK_EQ_INT(llmq_tmodel_set_train(&tm, LLMQ_TRAIN_KV, &err), 0);
    llmq_uptrain_opts o;
    llmq_uptrain_opts_default(&o);
    o.batch = B;
    o.seqlen = T;
    o.warmup = 1;
    o.lr = 1e-3f;
    o.state_path = state;
    o.key = "test";
    o.save_every = 1;
    llmq_uptrain_stats st;
    if (resume_at > 0) {
        o.steps = steps;
        o.stop_at = resume_at;          /* an interruption after step resume_at */
        o.save_every = 0;
        CHECK_EQ_INT(llmq_uptrain(&tm, &m, NULL, tok, 6 * B, &o, &st, &err), 0);
        CHECK_EQ_INT(st.steps_done, resume_at);
        o.stop_at = 0;
        /* the interrupted run's later state is simulated by a fresh model */
        llmq_tmodel_release(&tm);
        CHECK_EQ_INT(llmq_tmodel_from_model(&tm, &m, &err), 0);
        CHECK_EQ_INT(llmq_gqa_pool_mean(&tm, 1, &err), 0);
        CHECK_EQ_INT(llmq_tmodel_set_train(&tm, LLMQ_TRAIN_KV, &err), 0);
    }
    o.steps = steps;
    o.resume = resume_at > 0;
    CHECK_EQ_INT(llmq_uptrain(&tm, &m, NULL, tok, 6 * B, &o, &st, &err), 0);
    if (resume_at > 0) CHECK_EQ_INT(st.start_step, resume_at);
    *last_loss = st.last_loss;
    int i = llmq_tmodel_find(&tm, "model.layers.0.self_attn.k_proj.weight");
    float *w = malloc(tm.p[i].n * sizeof(float));
    run_n = tm.p[i].n;
    memcpy(w, tm.p[i].w, tm.p[i].n * sizeof(float));
    /* the uptrain keeps q_proj as it was */
    int q = llmq_tmodel_find(&tm, "model.layers.0.self_attn.q_proj.weight");
    llmq_tmodel ref;
    CHECK_EQ_INT(llmq_tmodel_from_model(&ref, &m, &err), 0);
    CHECK(memcmp(ref.p[q].w, tm.p[q].w, tm.p[q].n * sizeof(float)) == 0);
    llmq_tmodel_release(&ref);
    free(tok);
    llmq_tmodel_release(&tm);
    llmq_model_close(&m);
    return w;
}

TEST(uptrain_resume_matches_straight_run)
{
    char *d = tmpdir(), st1[128], st2[128];
    snprintf(st1, sizeof st1, "%s/a.state", d);
    snprintf(st2, sizeof st2, "%s/b.state", d);
    double l1, l2;
    float *a = train_run(4, 0, st1, &l1);
    float *b = train_run(4, 3, st2, &l2);
    CHECK(a && b);
    if (a && b) {
        CHECK(memcmp(a, b, run_n * sizeof(float)) == 0);
        CHECK(l1 == l2);
    }
    free(a);
    free(b);
    /* a state of another run is refused */
    llmq_model m;
    llmq_tmodel tm;
    if (!open_both(&m, &tm)) {
        llmq_err err = { 0, "" };
        int step;
        CHECK_EQ_INT(llmq_gqa_pool_mean(&tm, 1, &err), 0);
        CHECK_EQ_INT(llmq_tmodel_set_train(&tm, LLMQ_TRAIN_KV, &err), 0);
        CHECK_EQ_INT(llmq_uptrain_load(&tm, &step, "other", st2, &err), LLMQ_EUSAGE);
        CHECK_EQ_INT(llmq_uptrain_load(&tm, &step, "test", st2, &err), 0);
        CHECK_EQ_INT(step, 3);      /* save_every 1 wrote steps 1..3, never the last */
        /* a state with another shape (two KV heads) is refused */
        llmq_tmodel t2;
        CHECK_EQ_INT(llmq_tmodel_from_model(&t2, &m, &err), 0);
        CHECK_EQ_INT(llmq_tmodel_set_train(&t2, LLMQ_TRAIN_KV, &err), 0);
        CHECK_EQ_INT(llmq_uptrain_load(&t2, &step, "test", st2, &err), LLMQ_EFORMAT);
        llmq_tmodel_release(&t2);
        llmq_tmodel_release(&tm);
        llmq_model_close(&m);
    }
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", d);
    CHECK(system(cmd) == 0);
}

TEST(uptrain_lowers_loss_on_fixed_data)
{
    llmq_model m;
    llmq_tmodel tm;
    if (open_both(&m, &tm)) return;
    llmq_err err = { 0, "" };
    int T = 16, steps = 8;
    int32_t *one = random_tokens(T, 11), *tok = malloc((size_t)steps * T * sizeof(int32_t));
    for (int s = 0; s < steps; s++) memcpy(tok + (size_t)s * T, one, (size_t)T * sizeof(int32_t));
    CHECK_EQ_INT(llmq_gqa_pool_mean(&tm, 1, &err), 0);
    CHECK_EQ_INT(llmq_tmodel_set_train(&tm, LLMQ_TRAIN_ALL, &err), 0);
    llmq_uptrain_opts o;
    llmq_uptrain_opts_default(&o);
    o.steps = steps;
    o.batch = 1;
    o.seqlen = T;
    o.warmup = 0;
    o.lr = 1e-3f;
    llmq_uptrain_stats st;
    CHECK_EQ_INT(llmq_uptrain(&tm, &m, NULL, tok, steps, &o, &st, &err), 0);
    CHECK_MSG(st.last_loss < 0.9 * st.first_loss, "first %g last %g", st.first_loss, st.last_loss);
    /* too few windows for the steps asked */
    o.steps = steps + 1;
    CHECK_EQ_INT(llmq_uptrain(&tm, &m, NULL, tok, steps, &o, &st, &err), LLMQ_EUSAGE);
    free(one);
    free(tok);
    llmq_tmodel_release(&tm);
    llmq_model_close(&m);
}

TEST_MAIN()
