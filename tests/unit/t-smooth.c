/*
 * t-smooth.c - activation statistics (calib/stats) and smoothing
 * (lib/algo/smooth) on small synthetic Llama and Qwen2 checkpoints written
 * here: statistics match a direct computation and round-trip through the
 * file byte for byte; the W8A8 error function matches a plain reference;
 * SmoothQuant and OS+ outputs compute the same logits (GQA, shift into
 * added attention biases, existing q/k/v biases); the statistics derived
 * for the smoothed model match statistics measured on it; static scales
 * change the runner's W8A8 output.
 */
#include "../test.h"
#include <unistd.h>
#include <sys/stat.h>
#include "calib/stats.h"
#include "algo/smooth.h"
#include "runner.h"
#include "model.h"
#include "lib/base/fileio.h"
#include "quant/quant.h"
#include "kernels/kernels.h"
#include "../../formats/packed.h"
#include "../../lib/algo/pack.h"

static uint64_t rs = 0x2545F4914F6CDD1Dull;
static uint64_t rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return rs; }
static float rndf(void) { return (float)((double)(rnd() >> 11) / 9007199254740992.0 * 2.0 - 1.0); }

enum { HID = 32, FF = 48, NL = 2, NH = 4, NKV = 2, HD = 8, VOCAB = 64, WIN = 4, SEQ = 16 };

static char tmpdir[256];

/* Write a random checkpoint (f32) to dir: Llama (no biases) or Qwen2 (q/k/v
 * biases).  Norm channel 5 and 17 carry x40 outliers, down_proj input 7 x30. */
static void write_model(const char *dir, int qwen)
{
    mkdir(dir, 0755);
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"architectures\":[\"%s\"],\"hidden_size\":%d,\"intermediate_size\":%d,\"num_hidden_layers\":%d,"
               "\"num_attention_heads\":%d,\"num_key_value_heads\":%d,\"vocab_size\":%d,\"rms_norm_eps\":1e-5,"
               "\"rope_theta\":10000.0,\"hidden_act\":\"silu\",\"tie_word_embeddings\":false,\"torch_dtype\":\"float32\","
               "\"max_position_embeddings\":64}\n",
            qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM", HID, FF, NL, NH, NKV, VOCAB);
    fclose(f);
    llmq_err err;
    llmq_st_writer *w = llmq_st_writer_new(&err);
    float *bufs[64];
    int nb = 0;
#define ADD(name, n0, n1, scale) do { int64_t sh[2] = { n0, n1 }; int nd = (n1) ? 2 : 1;            \
        size_t ne = (size_t)(n0) * ((n1) ? (size_t)(n1) : 1); float *b = malloc(ne * sizeof(float)); \
        for (size_t i = 0; i < ne; i++) b[i] = rndf() * (scale);                                      \
        bufs[nb++] = b; llmq_st_writer_add(w, name, LLMQ_DT_F32, nd, sh, b, &err); } while (0)
    char n[128];
    ADD("model.embed_tokens.weight", VOCAB, HID, 1.0f);
    ADD("lm_head.weight", VOCAB, HID, 0.3f);
    ADD("model.norm.weight", HID, 0, 1.0f);
    for (int l = 0; l < NL; l++) {
        const char *lin[] = { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj" };
        int rows[] = { NH * HD, NKV * HD, NKV * HD, HID, FF, FF, HID }, cols[] = { HID, HID, HID, NH * HD, HID, HID, FF };
        for (int i = 0; i < 7; i++) {
            snprintf(n, sizeof n, "model.layers.%d.%s.weight", l, lin[i]);
            ADD(n, rows[i], cols[i], 0.3f);
            if (i == 5) for (int j = 0; j < HID; j++) bufs[nb - 1][7 * HID + j] *= 30.0f;
            if (qwen && i < 3) {
                snprintf(n, sizeof n, "model.layers.%d.%s.bias", l, lin[i]);
                ADD(n, rows[i], 0, 0.5f);
            }
        }
        snprintf(n, sizeof n, "model.layers.%d.input_layernorm.weight", l);
        ADD(n, HID, 0, 1.0f);
        bufs[nb - 1][5] = 40.0f; bufs[nb - 1][17] = -40.0f;
        snprintf(n, sizeof n, "model.layers.%d.post_attention_layernorm.weight", l);
        ADD(n, HID, 0, 1.0f);
        bufs[nb - 1][5] = 40.0f;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(llmq_st_writer_finish(w, path, &err) == 0);
    llmq_st_writer_free(w);
    for (int i = 0; i < nb; i++) free(bufs[i]);
#undef ADD
}

static int32_t toks[WIN * SEQ];

static void collect(const llmq_model *m, llmq_stats *st, int keep)
{
    llmq_err err;
    CHECK(llmq_stats_init(st, &m->cfg, keep, WIN, SEQ, 3, &err) == 0);
    llmq_runner *r;
    CHECK(llmq_runner_new(&r, m, SEQ, NULL, &err) == 0);
    llmq_runner_observe(r, llmq_stats_observe, st);
    for (int w = 0; w < WIN; w++) {
        llmq_stats_begin_window(st, w);
        CHECK(llmq_runner_forward(r, toks + w * SEQ, SEQ, 0, NULL, 0, &err) == 0);
    }
    llmq_stats_finish(st);
    llmq_runner_free(r);
}

static void logits_of(const llmq_model *m, float *out)
{
    llmq_err err;
    llmq_runner *r;
    CHECK(llmq_runner_new(&r, m, SEQ, NULL, &err) == 0);
    CHECK(llmq_runner_forward(r, toks, SEQ, 0, out, 1, &err) == 0);
    llmq_runner_free(r);
}

static double rel_diff(const float *a, const float *b, size_t n)
{
    double d = 0, mx = 0;
    for (size_t i = 0; i < n; i++) { d = fmax(d, fabs((double)a[i] - b[i])); mx = fmax(mx, fabs((double)a[i])); }
    return d / mx;
}

static void cleanup(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
}

static void setup(void)
{
    if (tmpdir[0]) return;
    snprintf(tmpdir, sizeof tmpdir, "%s/llmq-tsmooth.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); exit(1); }
    atexit(cleanup);
    for (int i = 0; i < WIN * SEQ; i++) toks[i] = (int32_t)(rnd() % VOCAB);
    char d[300];
    snprintf(d, sizeof d, "%s/llama", tmpdir);
    write_model(d, 0);
    snprintf(d, sizeof d, "%s/qwen", tmpdir);
    write_model(d, 1);
}

/* The Llama test model and its statistics with `keep` token rows; 0 if it
 * does not open (a failed check). */
static int open_llama(llmq_model *m, llmq_stats *st, int keep)
{
    setup();
    char d[300];
    llmq_err err;
    snprintf(d, sizeof d, "%s/llama", tmpdir);
    int rc = llmq_model_open(m, d, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc) return 0;
    collect(m, st, keep);
    return 1;
}

TEST(stats_match_direct_computation)
{
    llmq_model m;
    llmq_err err;
    llmq_stats st;
    if (!open_llama(&m, &st, 8)) return;
    CHECK_EQ_INT(st.tokens, WIN * SEQ);
    /* the qkv input of layer 0 is rmsnorm(embed) * w: recompute channel 5 */
    const llmq_site_stats *q = &st.site[LLMQ_SITE_QKV];
    CHECK_EQ_INT(q->count, WIN * SEQ);
    float row[HID];
    double amax = 0, sum = 0, mn = 1e30, mx = -1e30;
    for (int t = 0; t < WIN * SEQ; t++) {
        llmq_get_row(&m.embed, toks[t], row);
        float ss = 0;
        for (int j = 0; j < HID; j++) ss += row[j] * row[j];
        float v = m.layers[0].attn_norm[5] * (row[5] * (1.0f / sqrtf(ss / HID + 1e-5f)));
        amax = fmax(amax, fabs(v)); sum += v; mn = fmin(mn, v); mx = fmax(mx, v);
    }
    CHECK_NEAR(q->absmax[5], amax, 1e-4 * amax);
    CHECK_NEAR(q->sum[5], sum, 1e-3 * amax);
    CHECK_NEAR(q->min[5], mn, 1e-4 * amax);
    CHECK_NEAR(q->max[5], mx, 1e-4 * amax);
    CHECK(q->mean_abs[5] > 0 && q->mean_abs[5] <= q->absmax[5]);
    /* head absmax of V is the max of its channels */
    const llmq_site_stats *v = &st.site[LLMQ_SITE_V];
    float h1 = 0;
    for (int j = HD; j < 2 * HD; j++) h1 = fmaxf(h1, v->absmax[j]);
    CHECK(v->head_absmax[1] == h1);
    /* kept rows are rows of the activations: row 0 of window 0 */
    CHECK(q->keep != NULL);
    int pos = st.keep_pos[0];
    llmq_get_row(&m.embed, toks[pos], row);
    float ss = 0;
    for (int j = 0; j < HID; j++) ss += row[j] * row[j];
    CHECK_NEAR(q->keep[5], m.layers[0].attn_norm[5] * (row[5] * (1.0f / sqrtf(ss / HID + 1e-5f))), 1e-4 * amax);
    CHECK(llmq_stats_static_scale(&st, 0, LLMQ_SITE_QKV) >= (float)(amax / 127.0) * 0.9999f);
    CHECK(llmq_stats_check_config(&st, &m.cfg, "x", &err) == 0);
    /* save, load, save again: identical bytes */
    char p1[320], p2[320];
    snprintf(p1, sizeof p1, "%s/a.stats", tmpdir);
    snprintf(p2, sizeof p2, "%s/b.stats", tmpdir);
    CHECK(llmq_stats_save(&st, p1, &err) == 0);
    llmq_stats ld;
    CHECK(llmq_stats_load(&ld, p1, &err) == 0);
    CHECK_EQ_INT(ld.n_keep, 8);
    CHECK_EQ_INT(ld.n_kv_heads, NKV);
    CHECK_EQ_INT(ld.head_dim, HD);
    CHECK(ld.site[LLMQ_SITE_DOWN].dim == FF);
    CHECK(llmq_stats_save(&ld, p2, &err) == 0);
    char *a, *b;
    size_t la, lb;
    CHECK(llmq_read_file(p1, &a, &la, &err) == 0 && llmq_read_file(p2, &b, &lb, &err) == 0);
    CHECK(la == lb && memcmp(a, b, la) == 0);
    free(a); free(b);
    /* a model of another shape is refused */
    llmq_config c2 = m.cfg;
    c2.intermediate = FF + 1;
    CHECK(llmq_stats_check_config(&ld, &c2, "x", &err) == LLMQ_EUSAGE);
    llmq_stats_release(&ld);
    llmq_stats_release(&st);
    llmq_model_close(&m);
}

TEST(stats_load_rejects_other_files)
{
    setup();
    char d[320];
    llmq_err err;
    llmq_stats st;
    snprintf(d, sizeof d, "%s/llama/model.safetensors", tmpdir);
    CHECK(llmq_stats_load(&st, d, &err) == LLMQ_EFORMAT);
    CHECK(strstr(err.msg, "not an llmq statistics file") != NULL);
    snprintf(d, sizeof d, "%s/nope.stats", tmpdir);
    CHECK(llmq_stats_load(&st, d, &err) == LLMQ_EIO);
}

/* Plain reference of llmq_smooth_error. */
static double ref_error(const float *W, int rows, int cols, const float *X, int n, const float *s, const float *z)
{
    double e = 0;
    float *xq = malloc(sizeof(float) * cols), *wq = malloc(sizeof(float) * cols), *xs = malloc(sizeof(float) * cols);
    int8_t *c = malloc(cols);
    for (int t = 0; t < n; t++) {
        float sc;
        for (int j = 0; j < cols; j++) xs[j] = (X[t * cols + j] - (z ? z[j] : 0)) / s[j];
        llmq_quantize_act_i8(xs, cols, c, &sc);
        for (int j = 0; j < cols; j++) xq[j] = c[j] * sc;
        for (int r = 0; r < rows; r++) {
            for (int j = 0; j < cols; j++) wq[j] = W[r * cols + j] * s[j];
            float ws;
            llmq_q8_quantize_row(wq, cols, c, &ws);
            double y = 0, want = 0;
            for (int j = 0; j < cols; j++) {
                y += (double)xq[j] * (c[j] * ws);
                want += (double)W[r * cols + j] * (X[t * cols + j] - (z ? z[j] : 0));
            }
            e += (y - want) * (y - want);
        }
    }
    free(xq); free(wq); free(xs); free(c);
    return e / ((double)n * rows);
}

TEST(error_function_matches_reference)
{
    enum { R = 70, C = 40, N = 9 };
    float *W = malloc(sizeof(float) * R * C), *X = malloc(sizeof(float) * N * C), s[C], z[C];
    float *ref = malloc(sizeof(float) * N * R), wz[R];
    for (int i = 0; i < R * C; i++) W[i] = rndf();
    for (int i = 0; i < N * C; i++) X[i] = rndf() * (i % C == 3 ? 50.0f : 1.0f) + (i % C == 4 ? 3.0f : 0.0f);
    for (int j = 0; j < C; j++) { s[j] = 0.5f + (float)(rnd() % 100) / 25.0f; z[j] = rndf(); }
    for (int t = 0; t < N; t++)
        for (int r = 0; r < R; r++) {
            double a = 0;
            for (int j = 0; j < C; j++) a += (double)X[t * C + j] * W[r * C + j];
            ref[t * R + r] = (float)a;
        }
    for (int r = 0; r < R; r++) {
        double a = 0;
        for (int j = 0; j < C; j++) a += (double)W[r * C + j] * z[j];
        wz[r] = (float)a;
    }
    llmq_err err;
    llmq_pool *pool = llmq_pool_new(2, &err);
    float ones[C];
    for (int j = 0; j < C; j++) ones[j] = 1.0f;
    double e0 = llmq_smooth_error(pool, W, R, C, X, N, NULL, NULL, ref, NULL, &err);
    CHECK_NEAR(e0, ref_error(W, R, C, X, N, ones, NULL), 1e-3 * e0);
    double e1 = llmq_smooth_error(pool, W, R, C, X, N, s, NULL, ref, NULL, &err);
    CHECK_NEAR(e1, ref_error(W, R, C, X, N, s, NULL), 1e-3 * e1);
    double e2 = llmq_smooth_error(pool, W, R, C, X, N, s, z, ref, wz, &err);
    CHECK_NEAR(e2, ref_error(W, R, C, X, N, s, z), 1e-3 * e2);
    /* one thread gives the same number (per-tile sums, fixed order) */
    CHECK(llmq_smooth_error(NULL, W, R, C, X, N, s, z, ref, wz, &err) == e2);
    llmq_pool_free(pool);
    free(W); free(X); free(ref);
}

/* Smooth the model in dir with o, write f32, reopen, compare logits and the
 * derived statistics with statistics measured on the output. */
static void smooth_roundtrip(const char *name, llmq_smooth_opts *o, int expect_bias)
{
    setup();
    char d[300], out[320];
    snprintf(d, sizeof d, "%s/%s", tmpdir, name);
    snprintf(out, sizeof out, "%s/%s.out%d", tmpdir, name, (int)o->method * 10 + o->auto_alpha);
    llmq_model m, mo;
    llmq_err err;
    CHECK(llmq_model_open(&m, d, &err) == 0);
    llmq_stats st, derived, measured;
    collect(&m, &st, 32);
    llmq_smooth_plan plan;
    int rc = llmq_smooth_plan_compute(&m, &st, o, &plan, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc) { llmq_stats_release(&st); llmq_model_close(&m); return; }
    CHECK_EQ_INT(plan.shifted, expect_bias);
    /* the outlier channel is scaled down the most on the qkv pair */
    const llmq_smooth_pair *q = &plan.p[LLMQ_PAIR_QKV];
    float others = 0;
    for (int j = 0; j < HID; j++) if (j != 5 && j != 17) others = fmaxf(others, q->scale[j]);
    CHECK_MSG(q->scale[5] > others, "s[5] = %g, max other %g", q->scale[5], others);
    if (o->auto_alpha || o->method == LLMQ_SMOOTH_OSPLUS) CHECK(q->err_after < q->err_before);
    const char *keys[] = { "llmq.test" }, *vals[] = { "1" };
    rc = llmq_smooth_write(&m, &plan, LLMQ_DT_F32, out, keys, vals, 1, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    CHECK(llmq_model_open(&mo, out, &err) == 0);
    CHECK_EQ_INT(mo.cfg.o_bias, expect_bias || m.cfg.o_bias);
    float *a = malloc(sizeof(float) * SEQ * VOCAB), *b = malloc(sizeof(float) * SEQ * VOCAB);
    logits_of(&m, a);
    logits_of(&mo, b);
    double rd = rel_diff(a, b, (size_t)SEQ * VOCAB);
    CHECK_MSG(rd < 1e-5, "%s: logits differ by %g relative", name, rd);
    /* derived statistics = measured ones */
    CHECK(llmq_smooth_stats(&m, &st, &plan, &derived, &err) == 0);
    collect(&mo, &measured, 32);
    for (int l = 0; l < NL; l++)
        for (int k = 0; k < LLMQ_SITE_COUNT; k++) {
            const llmq_site_stats *x = &derived.site[l * LLMQ_SITE_COUNT + k], *y = &measured.site[l * LLMQ_SITE_COUNT + k];
            float amax = 0;
            for (int j = 0; j < y->dim; j++) amax = fmaxf(amax, y->absmax[j]);
            for (int j = 0; j < y->dim; j++) {
                CHECK_NEAR(x->absmax[j], y->absmax[j], 1e-4 * amax + 1e-6);
                CHECK_NEAR(x->min[j], y->min[j], 1e-4 * amax + 1e-6);
                CHECK_NEAR(x->sum[j], y->sum[j], 1e-3 * amax * y->count + 1e-5);
            }
            if (x->keep) CHECK_NEAR(x->keep[3], y->keep[3], 1e-4 * amax + 1e-6);
        }
    free(a); free(b);
    llmq_stats_release(&derived);
    llmq_stats_release(&measured);
    llmq_stats_release(&st);
    llmq_smooth_plan_release(&plan);
    llmq_model_close(&mo);
    llmq_model_close(&m);
}

TEST(smoothquant_fixed_alpha_is_equivalent)
{
    llmq_smooth_opts o = { .method = LLMQ_SMOOTH_SQ, .alpha = 0.5, .pairs = 15 };
    smooth_roundtrip("llama", &o, 0);
}

TEST(smoothquant_auto_alpha_is_equivalent)
{
    llmq_smooth_opts o = { .method = LLMQ_SMOOTH_SQ, .auto_alpha = 1, .pairs = 15 };
    smooth_roundtrip("llama", &o, 0);
}

TEST(osplus_shift_adds_attention_biases)
{
    llmq_smooth_opts o = { .method = LLMQ_SMOOTH_OSPLUS, .shift = 1, .pairs = 15 };
    smooth_roundtrip("llama", &o, 1);
}

TEST(qwen2_biases_are_kept_equivalent)
{
    llmq_smooth_opts o = { .method = LLMQ_SMOOTH_OSPLUS, .shift = 1, .pairs = 15 };
    smooth_roundtrip("qwen", &o, 0);  /* no o_proj bias possible: scale only */
    llmq_smooth_opts o2 = { .method = LLMQ_SMOOTH_SQ, .auto_alpha = 1, .pairs = 15 };
    smooth_roundtrip("qwen", &o2, 0);
}

/* llmq_grid_search on curves whose minimum is known */
struct curve { const double *v; int calls[128]; int fail_at; };

static double curve_loss(void *ctx, int k)
{
    struct curve *c = ctx;
    c->calls[k]++;
    return k == c->fail_at ? -1.0 : c->v[k];
}

static int curve_search(const double *v, int K, int step, int fail_at, int *evals, double *best)
{
    struct curve c = { .v = v, .fail_at = fail_at };
    int k = llmq_grid_search(K, step, curve_loss, &c, best);
    *evals = 0;
    for (int i = 0; i <= K; i++) {
        CHECK_MSG(c.calls[i] <= 1, "point %d scored %d times", i, c.calls[i]);
        *evals += c.calls[i];
    }
    return k;
}

TEST(grid_search_coarse_to_fine)
{
    double v[128], best;
    int evals;
    for (int k = 0; k <= 80; k++) v[k] = (k - 37) * (k - 37) + 1.0;   /* one minimum, off the coarse points */
    CHECK_EQ_INT(curve_search(v, 80, 4, -1, &evals, &best), 37);
    CHECK(best == 1.0);
    CHECK_EQ_INT(evals, 21 + 6);
    CHECK_EQ_INT(curve_search(v, 80, 1, -1, &evals, &best), 37);
    CHECK_EQ_INT(evals, 81);
    for (int k = 0; k <= 80; k++) v[k] = 5.0;                         /* ties go to the lowest k */
    CHECK_EQ_INT(curve_search(v, 80, 4, -1, &evals, &best), 0);
    v[8] = v[5] = 1.0;                                                /* ...also a fine point below the coarse best */
    CHECK_EQ_INT(curve_search(v, 80, 4, -1, &evals, &best), 5);
    for (int k = 0; k <= 10; k++) v[k] = 100.0 - k;                   /* K off the coarse step is scored */
    CHECK_EQ_INT(curve_search(v, 10, 4, -1, &evals, &best), 10);
    CHECK_EQ_INT(evals, 4 + 2);                                       /* 0 4 8 10, then 7 9 */
    CHECK_EQ_INT(curve_search(v, 10, 4, 9, &evals, &best), -1);      /* an error stops the search */
    /* a narrow dip between coarse points far from the coarse best is
     * missed by design; the full grid finds it */
    for (int k = 0; k <= 80; k++) v[k] = fabs(k - 20.0) + 10.0;
    v[62] = 0.5;
    CHECK_EQ_INT(curve_search(v, 80, 4, -1, &evals, &best), 20);
    CHECK_EQ_INT(curve_search(v, 80, 1, -1, &evals, &best), 62);
}

/* OS+ with the coarse search never beats scoring the whole grid (the
 * minimum over a superset of thresholds); on this model the full grid's
 * choice also beats no smoothing on every pair. */
TEST(osplus_coarse_search_is_bounded_by_the_full_grid)
{
    llmq_model m;
    llmq_err err;
    llmq_stats st;
    if (!open_llama(&m, &st, 32)) return;
    llmq_smooth_opts of = { .method = LLMQ_SMOOTH_OSPLUS, .shift = 1, .full_grid = 1, .pairs = 15 };
    llmq_smooth_opts oc = of;
    oc.full_grid = 0;
    llmq_smooth_plan full, coarse;
    CHECK(llmq_smooth_plan_compute(&m, &st, &of, &full, &err) == 0);
    CHECK(llmq_smooth_plan_compute(&m, &st, &oc, &coarse, &err) == 0);
    int same = 0, n = NL * LLMQ_PAIR_COUNT;
    for (int i = 0; i < n; i++) {
        const llmq_smooth_pair *f = &full.p[i], *c = &coarse.p[i];
        CHECK_MSG(c->err_after >= f->err_after, "pair %d: coarse %.9g below the full grid's best %.9g", i,
                  c->err_after, f->err_after);
        CHECK(f->err_after <= f->err_before);
        same += c->param == f->param;
    }
    CHECK_MSG(same > 0, "no pair on the same threshold (%d pairs)", n);
    llmq_smooth_plan_release(&full);
    llmq_smooth_plan_release(&coarse);
    llmq_stats_release(&st);
    llmq_model_close(&m);
}

TEST(unselected_pairs_keep_unit_scales)
{
    llmq_model m;
    llmq_err err;
    llmq_stats st;
    if (!open_llama(&m, &st, 0)) return;
    llmq_smooth_opts o = { .method = LLMQ_SMOOTH_SQ, .alpha = 0.5, .pairs = 1u << LLMQ_PAIR_GATEUP };
    llmq_smooth_plan plan;
    CHECK(llmq_smooth_plan_compute(&m, &st, &o, &plan, &err) == 0);
    for (int j = 0; j < HID; j++) CHECK(plan.p[LLMQ_PAIR_QKV].scale[j] == 1.0f);
    CHECK(plan.p[LLMQ_PAIR_GATEUP].scale[5] != 1.0f);
    llmq_smooth_plan_release(&plan);
    /* searches need kept rows */
    llmq_smooth_opts o2 = { .method = LLMQ_SMOOTH_OSPLUS, .pairs = 15 };
    CHECK(llmq_smooth_plan_compute(&m, &st, &o2, &plan, &err) == LLMQ_EUSAGE);
    llmq_smooth_opts o3 = { .method = LLMQ_SMOOTH_SQ, .alpha = 1.5, .pairs = 15 };
    CHECK(llmq_smooth_plan_compute(&m, &st, &o3, &plan, &err) == LLMQ_EUSAGE);
    llmq_stats_release(&st);
    llmq_model_close(&m);
}

TEST(static_scales_drive_w8a8)
{
    setup();
    char d[300], q[320];
    snprintf(d, sizeof d, "%s/llama", tmpdir);
    snprintf(q, sizeof q, "%s/llama.q8", tmpdir);
    llmq_model m, mq;
    llmq_err err;
    CHECK(llmq_model_open(&m, d, &err) == 0);
    llmq_pack_opts po;
    memset(&po, 0, sizeof po);
    po.scheme.format = LLMQ_PACK_INT8;
    llmq_pack_stats ps;
    CHECK(llmq_pack_model(&m, &po, q, &ps, &err) == 0);
    CHECK(llmq_model_open(&mq, q, &err) == 0);
    llmq_stats st;
    collect(&m, &st, 0);
    float scales[NL * 4];
    for (int l = 0; l < NL; l++)
        for (int s = 0; s < 4; s++) scales[l * 4 + s] = llmq_stats_static_scale(&st, l, (llmq_site)s);
    float *fp = malloc(sizeof(float) * SEQ * VOCAB), *dyn = malloc(sizeof(float) * SEQ * VOCAB),
          *sta = malloc(sizeof(float) * SEQ * VOCAB), *tiny = malloc(sizeof(float) * SEQ * VOCAB);
    llmq_runner *r;
    CHECK(llmq_runner_new(&r, &mq, SEQ, NULL, &err) == 0);
    CHECK(llmq_runner_set_act(r, LLMQ_ACT_INT8_STATIC, &err) == LLMQ_EUSAGE);  /* no scales yet */
    CHECK(llmq_runner_forward(r, toks, SEQ, 0, fp, 1, &err) == 0);
    CHECK(llmq_runner_set_act(r, LLMQ_ACT_INT8, &err) == 0);
    CHECK(llmq_runner_forward(r, toks, SEQ, 0, dyn, 1, &err) == 0);
    CHECK(llmq_runner_set_act_scales(r, scales, &err) == 0);
    CHECK(llmq_runner_set_act(r, LLMQ_ACT_INT8_STATIC, &err) == 0);
    CHECK(llmq_runner_forward(r, toks, SEQ, 0, sta, 1, &err) == 0);
    /* scales so large that every code rounds to 0: each linear outputs 0,
     * so the logits are lm_head(norm(embedding)) */
    for (int i = 0; i < NL * 4; i++) scales[i] = 1e30f;
    CHECK(llmq_runner_set_act_scales(r, scales, &err) == 0);
    CHECK(llmq_runner_forward(r, toks, SEQ, 0, tiny, 1, &err) == 0);
    double worst = 0;
    for (int t = 0; t < SEQ; t++) {
        float e[HID], ss = 0, lm[HID];
        llmq_get_row(&m.embed, toks[t], e);
        for (int j = 0; j < HID; j++) ss += e[j] * e[j];
        for (int j = 0; j < HID; j++) e[j] = m.final_norm[j] * (e[j] * (1.0f / sqrtf(ss / HID + 1e-5f)));
        for (int v = 0; v < VOCAB; v++) {
            llmq_get_row(&m.lm_head, v, lm);
            double y = 0;
            for (int j = 0; j < HID; j++) y += (double)lm[j] * e[j];
            worst = fmax(worst, fabs(y - tiny[t * VOCAB + v]));
        }
    }
    CHECK_MSG(worst < 1e-3, "zeroed linears: logits off by %g", worst);
    double e_dyn = rel_diff(fp, dyn, SEQ * VOCAB), e_sta = rel_diff(fp, sta, SEQ * VOCAB);
    CHECK(e_dyn > 0 && e_sta > 0 && e_sta != e_dyn);
    for (int i = 0; i < SEQ * VOCAB; i++) CHECK(isfinite(sta[i]));
    llmq_runner_free(r);
    free(fp); free(dyn); free(sta); free(tiny);
    llmq_stats_release(&st);
    llmq_model_close(&mq);
    llmq_model_close(&m);
}

TEST_MAIN()
