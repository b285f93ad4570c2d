/*
 * t-rotate.c - the Hadamard rotation (lib/algo/rotate): the fast transform
 * against the explicit matrix D H / sqrt(B), orthogonality, the block rule,
 * and the written checkpoint computing the same logits on a model with
 * every bias the rotation moves (o_proj, down_proj), tied embeddings and a
 * width that is not a power of two (blocks of 16 in 48 channels); with the
 * online Hadamard transforms (--online-hadamard, and with the keys,
 * --online-hadamard-keys), the same logits from the dense and the KV
 * cache's attention, the folded weights against their definition, what the
 * observers see, config.json's "keys" (absent: rotated), and the refusals.
 */
#include "../test.h"
#include <unistd.h>
#include <sys/stat.h>
#include "algo/rotate.h"
#include "kernels/hadamard.h"
#include "kvcache.h"
#include "linears.h"
#include "runner.h"
#include "model.h"
#include "lib/base/fileio.h"

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return rs; }
static double rndd(void) { return (double)(rnd() >> 11) / 9007199254740992.0 * 2.0 - 1.0; }

TEST(block_rule)
{
    CHECK(llmq_rotate_block(512, 0) == 512);
    CHECK(llmq_rotate_block(768, 0) == 256);
    CHECK(llmq_rotate_block(48, 0) == 16);
    CHECK(llmq_rotate_block(4096, 128) == 128);
    CHECK(llmq_rotate_block(48, 1) == 1);
    CHECK(llmq_rotate_block(512, 3) == -1);
    CHECK(llmq_rotate_block(512, 1024) == -1);
    CHECK(llmq_rotate_block(768, 512) == -1);
    CHECK(llmq_rotate_block(48, -4) == -1);
    CHECK(llmq_rotate_block(0, 0) == -1);
}

/* x Q against sum_i x_i d_i H_ij / sqrt(B), H_ij = (-1)^popcount(i & j)
 * within a block; |x Q| = |x|. */
TEST(fast_transform_vs_matrix)
{
    static const int Bs[] = { 1, 2, 8, 64 };
    for (size_t k = 0; k < LLMQ_ARRAY_LEN(Bs); k++) {
        int B = Bs[k], n = 3 * B;
        double x[192], y[192], s[192], want[192];
        llmq_rotate_signs(11 + k, n, s);
        for (int i = 0; i < n; i++) x[i] = y[i] = rndd();
        llmq_rotate_row(y, n, B, s);
        double err = 0, n0 = 0, n1 = 0;
        for (int b0 = 0; b0 < n; b0 += B)
            for (int j = 0; j < B; j++) {
                double a = 0;
                for (int i = 0; i < B; i++) a += x[b0 + i] * s[b0 + i] * (__builtin_popcount(i & j) & 1 ? -1.0 : 1.0);
                want[b0 + j] = a / sqrt((double)B);
            }
        for (int i = 0; i < n; i++) {
            err = fmax(err, fabs(y[i] - want[i]));
            n0 += x[i] * x[i];
            n1 += y[i] * y[i];
        }
        CHECK_MSG(err < 1e-12, "B %d: max error %.3g against the matrix", B, err);
        CHECK_MSG(fabs(n0 - n1) < 1e-12 * n0, "B %d: norm %.17g became %.17g", B, n0, n1);
    }
}

TEST(signs_are_balanced_and_seeded)
{
    double a[4096], b[4096];
    llmq_rotate_signs(0, 4096, a);
    llmq_rotate_signs(1, 4096, b);
    int neg = 0, same = 0;
    for (int i = 0; i < 4096; i++) {
        CHECK(a[i] == 1.0 || a[i] == -1.0);
        neg += a[i] < 0;
        same += a[i] == b[i];
    }
    CHECK_MSG(neg > 1800 && neg < 2300, "%d of 4096 signs negative", neg);
    CHECK_MSG(same > 1800 && same < 2300, "seeds 0 and 1 agree on %d of 4096", same);
}

enum { HID = 48, FF = 40, NL = 2, NH = 4, NKV = 2, VOCAB = 50, SEQ = 12 };   /* head_dim: write_model's */

static char tmpdir[256];

static void cleanup(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
}

/* A random f32 Llama checkpoint with every bias (attention_bias, mlp_bias)
 * and tied embeddings, head_dim hd; norm weights far from one, an outlier
 * channel. */
static void write_model(const char *dir, int hd)
{
    mkdir(dir, 0755);
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":%d,\"intermediate_size\":%d,"
               "\"num_hidden_layers\":%d,\"num_attention_heads\":%d,\"num_key_value_heads\":%d,\"head_dim\":%d,"
               "\"vocab_size\":%d,\"rms_norm_eps\":1e-5,\"rope_theta\":10000.0,\"hidden_act\":\"silu\","
               "\"attention_bias\":true,\"mlp_bias\":true,\"tie_word_embeddings\":true,\"torch_dtype\":\"float32\","
               "\"max_position_embeddings\":64}\n",
            HID, FF, NL, NH, NKV, hd, VOCAB);
    fclose(f);
    llmq_err err;
    llmq_st_writer *w = llmq_st_writer_new(&err);
    float *bufs[64];
    int nb = 0;
    char n[128];
#define ADD(name, n0, n1, scale, base)                                                                   \
    do {                                                                                                 \
        int64_t sh[2] = { n0, n1 };                                                                      \
        size_t ne = (size_t)(n0) * ((n1) ? (size_t)(n1) : 1);                                           \
        float *b = malloc(ne * sizeof(float));                                                           \
        for (size_t i = 0; i < ne; i++) b[i] = (float)(base + rndd() * (scale));                         \
        bufs[nb++] = b;                                                                                  \
        llmq_st_writer_add(w, name, LLMQ_DT_F32, (n1) ? 2 : 1, sh, b, &err);                             \
    } while (0)
    ADD("model.embed_tokens.weight", VOCAB, HID, 1.0, 0.0);
    bufs[nb - 1][3] *= 20.0f;
    ADD("model.norm.weight", HID, 0, 0.8, 1.0);
    const char *lin[] = { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                          "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj" };
    int rows[] = { NH * hd, NKV * hd, NKV * hd, HID, FF, FF, HID }, cols[] = { HID, HID, HID, NH * hd, HID, HID, FF };
    for (int l = 0; l < NL; l++) {
        for (int i = 0; i < 7; i++) {
            snprintf(n, sizeof n, "model.layers.%d.%s.weight", l, lin[i]);
            ADD(n, rows[i], cols[i], 0.3, 0.0);
            snprintf(n, sizeof n, "model.layers.%d.%s.bias", l, lin[i]);
            ADD(n, rows[i], 0, 0.5, 0.0);
        }
        snprintf(n, sizeof n, "model.layers.%d.input_layernorm.weight", l);
        ADD(n, HID, 0, 0.8, 1.0);
        snprintf(n, sizeof n, "model.layers.%d.post_attention_layernorm.weight", l);
        ADD(n, HID, 0, 0.8, 1.0);
    }
#undef ADD
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(llmq_st_writer_finish(w, path, &err) == 0);
    llmq_st_writer_free(w);
    for (int i = 0; i < nb; i++) free(bufs[i]);
}

/* Layer 0's activations at the DOWN and K_PRE sites, as an observer sees them. */
typedef struct { float down[SEQ * FF], kpre[SEQ * NKV * 16]; } seen;

static void record(void *ctx, int layer, llmq_site site, const float *x, int64_t n, int64_t dim)
{
    seen *s = ctx;
    if (layer != 0 || n != SEQ) return;
    if (site == LLMQ_SITE_DOWN && dim == FF) memcpy(s->down, x, sizeof s->down);
    if (site == LLMQ_SITE_K_PRE && dim * n <= (int64_t)LLMQ_ARRAY_LEN(s->kpre)) memcpy(s->kpre, x, (size_t)(n * dim) * 4);
}

/* The runner's logits of toks: the dense attention, or with kv != NULL
 * that KV cache's; obs != NULL records what the observers see. */
static int logits_kv(const char *dir, const int32_t *toks, float *out, const llmq_kv_spec *kv, seen *obs)
{
    llmq_err err = { 0, "" };
    llmq_model m;
    int rc = llmq_model_open(&m, dir, &err);
    CHECK_MSG(rc == 0, "%s: %s", dir, err.msg);
    if (rc) return rc;
    llmq_runner *r;
    CHECK((rc = llmq_runner_new(&r, &m, SEQ, NULL, &err)) == 0);
    if (!rc && kv) CHECK_MSG((rc = llmq_runner_set_kv(r, kv, NULL, &err)) == 0, "%s", err.msg);
    if (!rc && obs) llmq_runner_observe(r, record, obs);
    if (!rc) CHECK((rc = llmq_runner_forward(r, toks, SEQ, 0, out, 1, &err)) == 0);
    llmq_runner_free(r);
    llmq_model_close(&m);
    return rc;
}

static int logits_of(const char *dir, const int32_t *toks, float *out) { return logits_kv(dir, toks, out, NULL, NULL); }

static void make_tmpdir(void)
{
    if (tmpdir[0]) return;
    snprintf(tmpdir, sizeof tmpdir, "%s/llmq-trotate.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); exit(1); }
    atexit(cleanup);
}

static double max_diff(const float *a, const float *b, size_t n, double *largest)
{
    double d = 0, mx = 0;
    for (size_t i = 0; i < n; i++) { d = fmax(d, fabs((double)a[i] - b[i])); mx = fmax(mx, fabs((double)a[i])); }
    if (largest) *largest = mx;
    return d;
}

/* Rotated in f32 with the default block (16 of 48) and with blocks of 8:
 * the same logits to rounding; the head untied. */
TEST(rotated_checkpoint_same_logits)
{
    make_tmpdir();
    char src[300], out[300];
    snprintf(src, sizeof src, "%s/src", tmpdir);
    write_model(src, 12);
    int32_t toks[SEQ];
    for (int i = 0; i < SEQ; i++) toks[i] = (int32_t)(rnd() % VOCAB);
    static float a[SEQ * VOCAB], b[SEQ * VOCAB];
    if (logits_of(src, toks, a)) return;
    static const int blocks[] = { 0, 8 };
    for (size_t k = 0; k < LLMQ_ARRAY_LEN(blocks); k++) {
        llmq_err err = { 0, "" };
        llmq_model m;
        snprintf(out, sizeof out, "%s/rot%zu", tmpdir, k);
        CHECK(llmq_model_open(&m, src, &err) == 0);
        llmq_rotate_opts o = { blocks[k], 5 + k, 0, 0 };
        int rc = llmq_rotate_write(&m, &o, LLMQ_DT_F32, out, NULL, NULL, 0, &err);
        CHECK_MSG(rc == 0, "%s", err.msg);
        llmq_model_close(&m);
        if (rc || logits_of(out, toks, b)) continue;
        double d = 0, mx = 0;
        for (int i = 0; i < SEQ * VOCAB; i++) { d = fmax(d, fabs((double)a[i] - b[i])); mx = fmax(mx, fabs((double)a[i])); }
        CHECK_MSG(d <= 1e-5 * mx, "block %d: logits differ by %.3g (largest %.3g)", blocks[k], d, mx);
        CHECK(llmq_model_open(&m, out, &err) == 0);
        CHECK_MSG(!m.cfg.tie_embeddings, "block %d: the head is still tied", blocks[k]);
        float g[HID];
        memcpy(g, m.final_norm, sizeof g);
        int ones = 1;
        for (int j = 0; j < HID; j++) ones &= g[j] == 1.0f;
        CHECK_MSG(ones, "block %d: the final norm's weight is not all ones", blocks[k]);
        llmq_model_close(&m);
    }
    /* refusals: a block that does not divide 48, a dtype */
    llmq_err err = { 0, "" };
    llmq_model m;
    CHECK(llmq_model_open(&m, src, &err) == 0);
    llmq_rotate_opts bad = { 32, 0, 0, 0 };
    snprintf(out, sizeof out, "%s/bad", tmpdir);
    CHECK(llmq_rotate_write(&m, &bad, LLMQ_DT_F32, out, NULL, NULL, 0, &err) == LLMQ_EUSAGE);
    CHECK(strstr(err.msg, "hidden_size 48") != NULL);
    llmq_rotate_opts good = { 0, 0, 0, 0 };
    CHECK(llmq_rotate_write(&m, &good, LLMQ_DT_I32, out, NULL, NULL, 0, &err) == LLMQ_EUSAGE);
    CHECK(access(out, F_OK) != 0);
    /* the online transforms need head_dim (12 here) a power of two */
    llmq_rotate_opts online = { 0, 0, 1, 0 }, keys = { 0, 0, 0, 1 };
    CHECK(llmq_rotate_write(&m, &online, LLMQ_DT_F32, out, NULL, NULL, 0, &err) == LLMQ_EUNSUPPORTED);
    CHECK_MSG(strstr(err.msg, "head_dim 12 is not a power of two") != NULL, "%s", err.msg);
    CHECK(llmq_rotate_write(&m, &keys, LLMQ_DT_F32, out, NULL, NULL, 0, &err) == LLMQ_EUNSUPPORTED);
    CHECK_MSG(strstr(err.msg, "head_dim 12 is not a power of two") != NULL, "%s", err.msg);
    CHECK(access(out, F_OK) != 0);
    llmq_model_close(&m);
}

/* W (rows, cols) of linear k of layer l as floats. */
static float *weights(const llmq_model *m, int l, llmq_lin k)
{
    const llmq_wmat *W = llmq_layer_w(&m->layers[l], k);
    float *v = malloc((size_t)(W->rows * W->cols) * sizeof(float));
    for (int64_t r = 0; r < W->rows; r++) llmq_get_row(W, r, v + r * W->cols);
    return v;
}

/* dir/config.json without "llmq_online_hadamard.keys", as llmq wrote it
 * before the keys became a choice. */
static void drop_keys(const char *dir)
{
    char path[512], *text = NULL;
    size_t len;
    llmq_err err = { 0, "" };
    snprintf(path, sizeof path, "%s/config.json", dir);
    CHECK_MSG(llmq_read_file(path, &text, &len, &err) == 0, "%s", err.msg);
    cJSON *j = text ? cJSON_ParseWithLength(text, len) : NULL;
    cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "llmq_online_hadamard");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(h, "keys")));
    cJSON_DeleteItemFromObjectCaseSensitive(h, "keys");
    char *out = cJSON_Print(j);
    FILE *f = out ? fopen(path, "w") : NULL;
    CHECK(f && fputs(out, f) >= 0 && fclose(f) == 0);
    free(out);
    cJSON_Delete(j);
    free(text);
}

/* --online-hadamard on a model with head_dim 16 and intermediate 40
 * (blocks of 8), every bias: the checkpoint holds W_down Q_ff, W_o (I (x) H)
 * and (I (x) H) W_v, b_v H beside the plain rotation's; the forward's
 * DOWN observer sees h Q_ff, K_PRE sees k; logits equal the source's
 * with the dense attention and with an f32 KV cache.  --online-hadamard-keys
 * (online_keys alone: it implies online) writes the same weights and
 * "keys": true: K_PRE sees k H, the f32 KV cache (which gets k H and
 * multiplies by H again) still gives the source's logits, an int4 cache
 * other ones, and without "keys" in config.json the same ones.  A second
 * plain rotation keeps the transforms, a second online one is refused. */
TEST(online_hadamard_same_logits)
{
    enum { HDO = 16, KVD = NKV * HDO, QD = NH * HDO };
    make_tmpdir();
    char src[300], plain[300], on[300], onk[300], on2[300], bad[300];
    snprintf(src, sizeof src, "%s/src16", tmpdir);
    snprintf(plain, sizeof plain, "%s/plain16", tmpdir);
    snprintf(on, sizeof on, "%s/online16", tmpdir);
    snprintf(onk, sizeof onk, "%s/online16-keys", tmpdir);
    snprintf(on2, sizeof on2, "%s/online16-again", tmpdir);
    snprintf(bad, sizeof bad, "%s/online16-twice", tmpdir);
    write_model(src, HDO);
    llmq_err err = { 0, "" };
    llmq_model m;
    CHECK(llmq_model_open(&m, src, &err) == 0);
    llmq_rotate_opts po = { 0, 9, 0, 0 }, oo = { 0, 9, 1, 0 }, ko = { 0, 9, 0, 1 };
    CHECK_MSG(llmq_rotate_write(&m, &po, LLMQ_DT_F32, plain, NULL, NULL, 0, &err) == 0, "%s", err.msg);
    CHECK_MSG(llmq_rotate_write(&m, &oo, LLMQ_DT_F32, on, NULL, NULL, 0, &err) == 0, "%s", err.msg);
    CHECK_MSG(llmq_rotate_write(&m, &ko, LLMQ_DT_F32, onk, NULL, NULL, 0, &err) == 0, "%s", err.msg);
    llmq_model_close(&m);

    /* the folded halves against their definition; the keys change no weight */
    llmq_model mp, mo, mk;
    if (llmq_model_open(&mp, plain, &err) || llmq_model_open(&mo, on, &err) || llmq_model_open(&mk, onk, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    CHECK(mp.cfg.had_ff_block == 0 && mo.cfg.had_ff_block == 8 && mo.cfg.had_head_dim == HDO);
    CHECK(mp.cfg.had_keys == 0 && mo.cfg.had_keys == 0);
    CHECK(mk.cfg.had_ff_block == 8 && mk.cfg.had_head_dim == HDO && mk.cfg.had_keys == 1);
    for (int l = 0; l < NL; l++)
        for (int k = 0; k < LLMQ_LIN_COUNT; k++) {
            float *wo = weights(&mo, l, (llmq_lin)k), *wk = weights(&mk, l, (llmq_lin)k);
            const llmq_wmat *W = llmq_layer_w(&mo.layers[l], (llmq_lin)k);
            CHECK_MSG(max_diff(wo, wk, (size_t)(W->rows * W->cols), NULL) == 0.0, "layer %d linear %d: the keys changed it", l, k);
            free(wo); free(wk);
        }
    llmq_model_close(&mk);
    for (int l = 0; l < NL; l++) {
        float *pd = weights(&mp, l, LLMQ_LIN_DOWN), *od = weights(&mo, l, LLMQ_LIN_DOWN);
        float *po_ = weights(&mp, l, LLMQ_LIN_O), *oo_ = weights(&mo, l, LLMQ_LIN_O);
        float *pv = weights(&mp, l, LLMQ_LIN_V), *ov = weights(&mo, l, LLMQ_LIN_V);
        float pvt[HID * KVD], bv[KVD];
        llmq_fwht_ref(pd, HID, FF, 8);          /* W_down Q_ff: each row */
        llmq_fwht_ref(po_, HID, QD, HDO);       /* W_o: each row per head */
        for (int r = 0; r < KVD; r++)           /* W_v: each column per head */
            for (int c = 0; c < HID; c++) pvt[c * KVD + r] = pv[r * HID + c];
        llmq_fwht_ref(pvt, HID, KVD, HDO);
        for (int r = 0; r < KVD; r++)
            for (int c = 0; c < HID; c++) pv[r * HID + c] = pvt[c * KVD + r];
        memcpy(bv, mp.layers[l].bv, sizeof bv);
        llmq_fwht_ref(bv, 1, KVD, HDO);
        double e1 = max_diff(pd, od, (size_t)HID * FF, NULL), e2 = max_diff(po_, oo_, (size_t)HID * QD, NULL);
        double e3 = max_diff(pv, ov, (size_t)KVD * HID, NULL), e4 = max_diff(bv, mo.layers[l].bv, KVD, NULL);
        CHECK_MSG(e1 < 1e-5 && e2 < 1e-5 && e3 < 1e-5 && e4 < 1e-5, "layer %d: down %.3g, o %.3g, v %.3g, v bias %.3g", l,
                  e1, e2, e3, e4);
        CHECK(max_diff(mp.layers[l].bo, mo.layers[l].bo, HID, NULL) == 0.0);   /* o and down biases: the residual's */
        free(pd); free(od); free(po_); free(oo_); free(pv); free(ov);
    }
    llmq_model_close(&mp);
    llmq_model_close(&mo);

    int32_t toks[SEQ];
    for (int i = 0; i < SEQ; i++) toks[i] = (int32_t)(rnd() % VOCAB);
    static float a[SEQ * VOCAB], b[SEQ * VOCAB], c[SEQ * VOCAB], q[SEQ * VOCAB], qk[SEQ * VOCAB];
    static seen sa, sb, sk;
    llmq_kv_spec f32 = { LLMQ_KV_F32, 32, 0, 0, 0, 0, 0, 0.0 }, i4 = { LLMQ_KV_INT, 4, 0, 0, 0, 4, HDO, 0.0 };
    if (logits_kv(src, toks, a, NULL, &sa) || logits_kv(on, toks, b, NULL, &sb) || logits_kv(on, toks, c, &f32, NULL)) return;
    double mx, d = max_diff(a, b, SEQ * VOCAB, &mx), dk = max_diff(a, c, SEQ * VOCAB, NULL);
    CHECK_MSG(d <= 1e-5 * mx, "online: logits differ by %.3g (largest %.3g)", d, mx);
    CHECK_MSG(dk <= 1e-5 * mx, "online, f32 KV cache: logits differ by %.3g (largest %.3g)", dk, mx);
    if (logits_kv(onk, toks, b, NULL, &sk) || logits_kv(onk, toks, c, &f32, NULL)) return;
    d = max_diff(a, b, SEQ * VOCAB, &mx);
    dk = max_diff(a, c, SEQ * VOCAB, NULL);
    CHECK_MSG(d <= 1e-5 * mx, "online with keys: logits differ by %.3g (largest %.3g)", d, mx);
    CHECK_MSG(dk <= 1e-5 * mx, "online with keys, f32 KV cache: logits differ by %.3g (largest %.3g)", dk, mx);
    double ek0 = max_diff(sa.kpre, sb.kpre, SEQ * KVD, NULL);
    CHECK_MSG(ek0 <= 1e-4, "K_PRE sees %.3g from k without the keys", ek0);
    llmq_fwht_ref(sa.down, SEQ, FF, 8);
    llmq_fwht_ref(sa.kpre, SEQ * NKV, HDO, HDO);
    double ed = max_diff(sa.down, sb.down, SEQ * FF, &mx), ek = max_diff(sa.kpre, sk.kpre, SEQ * KVD, NULL);
    CHECK_MSG(ed <= 1e-5 * mx && mx > 0, "DOWN sees %.3g from h Q_ff", ed);
    CHECK_MSG(ek <= 1e-4 && ek >= 0, "K_PRE sees %.3g from k H", ek);
    /* an int4 cache quantizes k or k H: other logits; without "keys" the
     * keys are rotated, the same ones bit for bit */
    if (logits_kv(on, toks, q, &i4, NULL) || logits_kv(onk, toks, qk, &i4, NULL)) return;
    CHECK_MSG(max_diff(q, qk, SEQ * VOCAB, NULL) > 0, "int4 KV cache: the keys' rotation changed nothing");
    drop_keys(onk);
    CHECK(llmq_model_open(&m, onk, &err) == 0);
    CHECK(m.cfg.had_ff_block == 8 && m.cfg.had_head_dim == HDO && m.cfg.had_keys == 1);
    llmq_model_close(&m);
    if (logits_kv(onk, toks, q, &i4, NULL)) return;
    CHECK_MSG(!memcmp(q, qk, sizeof q), "int4 KV cache: \"keys\" absent is not \"keys\": true");

    /* rotated again: plain keeps the transforms, online is refused */
    CHECK(llmq_model_open(&m, on, &err) == 0);
    llmq_rotate_opts again = { 8, 4, 0, 0 };
    CHECK_MSG(llmq_rotate_write(&m, &again, LLMQ_DT_F32, on2, NULL, NULL, 0, &err) == 0, "%s", err.msg);
    CHECK(llmq_rotate_write(&m, &oo, LLMQ_DT_F32, bad, NULL, NULL, 0, &err) == LLMQ_EUNSUPPORTED);
    CHECK_MSG(strstr(err.msg, "already has online Hadamard transforms") != NULL, "%s", err.msg);
    CHECK(llmq_rotate_write(&m, &ko, LLMQ_DT_F32, bad, NULL, NULL, 0, &err) == LLMQ_EUNSUPPORTED);
    CHECK_MSG(strstr(err.msg, "already has online Hadamard transforms") != NULL, "%s", err.msg);
    CHECK(access(bad, F_OK) != 0);
    llmq_model_close(&m);
    CHECK(llmq_model_open(&m, on2, &err) == 0);
    CHECK(m.cfg.had_ff_block == 8 && m.cfg.had_head_dim == HDO && m.cfg.had_keys == 0);
    llmq_model_close(&m);
    if (logits_of(on2, toks, b)) return;
    d = max_diff(a, b, SEQ * VOCAB, &mx);
    CHECK_MSG(d <= 1e-5 * mx, "online, rotated again: logits differ by %.3g (largest %.3g)", d, mx);
}

TEST_MAIN()
