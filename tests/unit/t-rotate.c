/*
 * t-rotate.c - the Hadamard rotation (lib/algo/rotate): the fast transform
 * against the explicit matrix D H / sqrt(B), orthogonality, the block rule,
 * and the written checkpoint computing the same logits on a model with
 * every bias the rotation moves (o_proj, down_proj), tied embeddings and a
 * width that is not a power of two (blocks of 16 in 48 channels).
 */
#include "../test.h"
#include <unistd.h>
#include <sys/stat.h>
#include "algo/rotate.h"
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

enum { HID = 48, FF = 40, NL = 2, NH = 4, NKV = 2, HD = 12, VOCAB = 50, SEQ = 12 };

static char tmpdir[256];

static void cleanup(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
}

/* A random f32 Llama checkpoint with every bias (attention_bias, mlp_bias)
 * and tied embeddings; norm weights far from one, an outlier channel. */
static void write_model(const char *dir)
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
            HID, FF, NL, NH, NKV, HD, VOCAB);
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
    int rows[] = { NH * HD, NKV * HD, NKV * HD, HID, FF, FF, HID }, cols[] = { HID, HID, HID, NH * HD, HID, HID, FF };
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

static int logits_of(const char *dir, const int32_t *toks, float *out)
{
    llmq_err err = { 0, "" };
    llmq_model m;
    int rc = llmq_model_open(&m, dir, &err);
    CHECK_MSG(rc == 0, "%s: %s", dir, err.msg);
    if (rc) return rc;
    llmq_runner *r;
    CHECK((rc = llmq_runner_new(&r, &m, SEQ, NULL, &err)) == 0);
    if (!rc) {
        CHECK((rc = llmq_runner_forward(r, toks, SEQ, 0, out, 1, &err)) == 0);
        llmq_runner_free(r);
    }
    llmq_model_close(&m);
    return rc;
}

/* Rotated in f32 with the default block (16 of 48) and with blocks of 8:
 * the same logits to rounding; the head untied. */
TEST(rotated_checkpoint_same_logits)
{
    snprintf(tmpdir, sizeof tmpdir, "%s/llmq-trotate.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); exit(1); }
    atexit(cleanup);
    char src[300], out[300];
    snprintf(src, sizeof src, "%s/src", tmpdir);
    write_model(src);
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
        llmq_rotate_opts o = { blocks[k], 5 + k };
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
    llmq_rotate_opts bad = { 32, 0 };
    snprintf(out, sizeof out, "%s/bad", tmpdir);
    CHECK(llmq_rotate_write(&m, &bad, LLMQ_DT_F32, out, NULL, NULL, 0, &err) == LLMQ_EUSAGE);
    CHECK(strstr(err.msg, "hidden_size 48") != NULL);
    llmq_rotate_opts good = { 0, 0 };
    CHECK(llmq_rotate_write(&m, &good, LLMQ_DT_I32, out, NULL, NULL, 0, &err) == LLMQ_EUSAGE);
    CHECK(access(out, F_OK) != 0);
    llmq_model_close(&m);
}

TEST_MAIN()
