/*
 * t-hadamard.c - the online Hadamard transform (lib/kernels/hadamard.c):
 * the reference against the explicit matrix H / sqrt(B), the vectorized
 * form against the reference bit for bit on random and adversarial rows,
 * its own inverse; config.json's "llmq_online_hadamard" read as hostile
 * input; AWQ's MLP group search through the transform (the loss of a group
 * whose down_proj is stored rotated equals the plain group's).
 */
#include "../test.h"
#include "kernels/hadamard.h"
#include "algo/awq.h"
#include "formats/config.h"

static uint64_t rs = 0x243F6A8885A308D3ull;
static uint64_t rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return rs; }
static float rndf(void) { return (float)((double)(rnd() >> 11) / 9007199254740992.0 * 2.0 - 1.0); }

/* want (n, cols) = x with each block times H_B / sqrt(B), in double. */
static void by_matrix(const float *x, int n, int cols, int B, double *want)
{
    for (int k = 0; k < n * cols / B; k++)
        for (int j = 0; j < B; j++) {
            double a = 0;
            for (int i = 0; i < B; i++) a += (double)x[k * B + i] * (__builtin_popcount(i & j) & 1 ? -1.0 : 1.0);
            want[k * B + j] = a / sqrt((double)B);
        }
}

TEST(reference_vs_matrix)
{
    static const int Bs[] = { 1, 2, 4, 8, 16, 64, 256 };
    enum { N = 3, MAXC = 2 * 256 };
    static float x[N * MAXC], y[N * MAXC];
    static double want[N * MAXC];
    for (size_t k = 0; k < LLMQ_ARRAY_LEN(Bs); k++) {
        int B = Bs[k], cols = 2 * B;
        for (int i = 0; i < N * cols; i++) x[i] = y[i] = rndf();
        llmq_fwht_ref(y, N, cols, B);
        by_matrix(x, N, cols, B, want);
        double err = 0, n0 = 0, n1 = 0;
        for (int i = 0; i < N * cols; i++) {
            err = fmax(err, fabs(y[i] - want[i]));
            n0 += (double)x[i] * x[i];
            n1 += (double)y[i] * y[i];
        }
        /* float butterflies: log2(B) roundings of values of size ~sqrt(B) */
        CHECK_MSG(err < 1e-6 * sqrt((double)B), "B %d: max error %.3g against the matrix", B, err);
        CHECK_MSG(fabs(n0 - n1) < 1e-5 * n0, "B %d: norm %.9g became %.9g", B, n0, n1);
    }
}

/* The vectorized form does the reference's additions in its order: the
 * same bits, also on rows of huge, tiny, subnormal, signed-zero and
 * non-finite values. */
TEST(vectorized_equals_reference)
{
    static const int Bs[] = { 1, 2, 4, 8, 16, 32, 128, 512, 2048 };
    enum { MAXN = 4096 * 3 };
    static float a[MAXN], b[MAXN];
    for (size_t k = 0; k < LLMQ_ARRAY_LEN(Bs); k++) {
        int B = Bs[k], cols = B * (B < 2048 ? 3 : 1), n = MAXN / cols > 4 ? 4 : MAXN / cols;
        for (int round = 0; round < 3; round++) {
            for (int i = 0; i < n * cols; i++) {
                float v = rndf();
                if (round == 1) v *= (rnd() & 1) ? 3e38f : 1e-40f;     /* overflow to Inf, subnormals */
                if (round == 2 && i % 97 == 5) v = (i % 2) ? NAN : -0.0f;
                a[i] = b[i] = v;
            }
            llmq_fwht_ref(a, n, cols, B);
            llmq_fwht(b, n, cols, B);
            int same = 1;
            for (int i = 0; i < n * cols; i++) same &= isnan(a[i]) ? isnan(b[i]) : memcmp(&a[i], &b[i], 4) == 0;
            CHECK_MSG(same, "B %d round %d: the vectorized transform differs from the reference", B, round);
        }
    }
    /* n = 0 leaves the row alone */
    float z[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, z0[8];
    memcpy(z0, z, sizeof z);
    llmq_fwht(z, 0, 8, 8);
    CHECK(!memcmp(z, z0, sizeof z));
}

/* H / sqrt(B) is symmetric and orthogonal: twice is the identity. */
TEST(own_inverse)
{
    enum { B = 128, N = 5 };
    static float x[N * B], y[N * B];
    for (int i = 0; i < N * B; i++) x[i] = y[i] = rndf() * 100.0f;
    llmq_fwht(y, N, B, B);
    double moved = 0;
    for (int i = 0; i < N * B; i++) moved = fmax(moved, fabs((double)y[i] - x[i]));
    CHECK(moved > 1.0);
    llmq_fwht(y, N, B, B);
    double err = 0;
    for (int i = 0; i < N * B; i++) err = fmax(err, fabs((double)y[i] - x[i]));
    CHECK_MSG(err < 1e-4, "twice: max error %.3g", err);
    CHECK(llmq_is_pow2(1) && llmq_is_pow2(4096) && !llmq_is_pow2(0) && !llmq_is_pow2(48) && !llmq_is_pow2(-8));
}

/* ---- config.json ---- */

/* intermediate 768 (largest power of two dividing it: 256), head_dim 32 */
#define CFG_HEAD "{\"architectures\":[\"Qwen2ForCausalLM\"],\"hidden_size\":256,\"intermediate_size\":768," \
                 "\"num_hidden_layers\":2,\"num_attention_heads\":8,\"num_key_value_heads\":2,\"vocab_size\":100"

static int parse(const char *tail, llmq_config *c, llmq_err *err)
{
    char json[1024];
    snprintf(json, sizeof json, "%s%s}", CFG_HEAD, tail);
    return llmq_config_parse(c, json, strlen(json), "m/config.json", err);
}

TEST(config_key_parsed)
{
    llmq_config c;
    llmq_err e = { 0, "" };
    CHECK_EQ_INT(parse("", &c, &e), LLMQ_OK);
    CHECK(c.had_ff_block == 0 && c.had_head_dim == 0 && c.had_keys == 0);
    CHECK_EQ_INT(llmq_config_refuse_online(&c, "m", "why", &e), LLMQ_OK);
    CHECK_EQ_INT(parse(",\"llmq_online_hadamard\":null", &c, &e), LLMQ_OK);
    CHECK(c.had_ff_block == 0 && c.had_head_dim == 0 && c.had_keys == 0);
    /* "keys" absent: written before it was a choice, when keys were rotated */
    CHECK_EQ_INT(parse(",\"llmq_online_hadamard\":{\"ff_block\":256,\"head_dim\":32}", &c, &e), LLMQ_OK);
    CHECK(c.had_ff_block == 256 && c.had_head_dim == 32 && c.had_keys == 1);
    CHECK_EQ_INT(parse(",\"llmq_online_hadamard\":{\"ff_block\":256,\"head_dim\":32,\"keys\":false}", &c, &e), LLMQ_OK);
    CHECK(c.had_ff_block == 256 && c.had_head_dim == 32 && c.had_keys == 0);
    CHECK_EQ_INT(parse(",\"llmq_online_hadamard\":{\"keys\":true,\"ff_block\":256,\"head_dim\":32}", &c, &e), LLMQ_OK);
    CHECK(c.had_ff_block == 256 && c.had_head_dim == 32 && c.had_keys == 1);
    CHECK_EQ_INT(parse(",\"llmq_online_hadamard\":{\"head_dim\":32.0,\"ff_block\":4,\"keys\":false}", &c, &e), LLMQ_OK);
    CHECK(c.had_ff_block == 4 && c.had_head_dim == 32 && c.had_keys == 0);
    /* refused with or without rotated keys: ff_block is always there */
    CHECK_EQ_INT(llmq_config_refuse_online(&c, "m.rot", "llama.cpp would not", &e), LLMQ_EUNSUPPORTED);
    CHECK_MSG(strstr(e.msg, "m.rot: has online Hadamard transforms") && strstr(e.msg, "llama.cpp would not"), "%s", e.msg);
}

TEST(config_key_hostile)
{
    static const struct { const char *tail; int code; const char *needle; } cases[] = {
        { ",\"llmq_online_hadamard\":true", LLMQ_EFORMAT, "\"llmq_online_hadamard\" is not an object" },
        { ",\"llmq_online_hadamard\":[256,32]", LLMQ_EFORMAT, "is not an object" },
        { ",\"llmq_online_hadamard\":\"yes\"", LLMQ_EFORMAT, "is not an object" },
        { ",\"llmq_online_hadamard\":{}", LLMQ_EFORMAT, "has no \"ff_block\"" },
        { ",\"llmq_online_hadamard\":{\"ff_block\":256}", LLMQ_EFORMAT, "has no \"head_dim\"" },
        { ",\"llmq_online_hadamard\":{\"ff_block\":\"256\",\"head_dim\":32}", LLMQ_EFORMAT, "ff_block\" is not an integer" },
        { ",\"llmq_online_hadamard\":{\"ff_block\":256.5,\"head_dim\":32}", LLMQ_EFORMAT, "ff_block\" is not an integer" },
        { ",\"llmq_online_hadamard\":{\"ff_block\":1e300,\"head_dim\":32}", LLMQ_EFORMAT, "ff_block\" is not an integer" },
        { ",\"llmq_online_hadamard\":{\"ff_block\":-256,\"head_dim\":32}", LLMQ_EFORMAT, "ff_block\" is not an integer" },
        { ",\"llmq_online_hadamard\":{\"ff_block\":0,\"head_dim\":32}", LLMQ_EFORMAT, "ff_block\" is not an integer" },
        { ",\"llmq_online_hadamard\":{\"ff_block\":null,\"head_dim\":32}", LLMQ_EFORMAT, "ff_block\" is not an integer" },
        { ",\"llmq_online_hadamard\":{\"ff_block\":256,\"head_dim\":true}", LLMQ_EFORMAT, "head_dim\" is not an integer" },
        { ",\"llmq_online_hadamard\":{\"ff_block\":96,\"head_dim\":32}", LLMQ_EFORMAT,
          "\"llmq_online_hadamard.ff_block\" 96 is not a power of two dividing intermediate_size 768" },
        { ",\"llmq_online_hadamard\":{\"ff_block\":512,\"head_dim\":32}", LLMQ_EFORMAT,
          "512 is not a power of two dividing intermediate_size 768" },
        { ",\"llmq_online_hadamard\":{\"ff_block\":256,\"head_dim\":16}", LLMQ_EFORMAT,
          "\"llmq_online_hadamard.head_dim\" 16: expected the model's head_dim 32" },
        { ",\"head_dim\":48,\"llmq_online_hadamard\":{\"ff_block\":256,\"head_dim\":48}", LLMQ_EFORMAT,
          "head_dim 48, which is no power of two" },
        { ",\"llmq_online_hadamard\":{\"ff_block\":256,\"head_dim\":32,\"keys\":1}", LLMQ_EFORMAT,
          "\"llmq_online_hadamard.keys\" is not true or false" },
        { ",\"llmq_online_hadamard\":{\"ff_block\":256,\"head_dim\":32,\"keys\":\"yes\"}", LLMQ_EFORMAT,
          "\"llmq_online_hadamard.keys\" is not true or false" },
        { ",\"llmq_online_hadamard\":{\"ff_block\":256,\"head_dim\":32,\"keys\":null}", LLMQ_EFORMAT,
          "\"llmq_online_hadamard.keys\" is not true or false" },
        { ",\"llmq_online_hadamard\":{\"ff_block\":256,\"head_dim\":32,\"keys\":{}}", LLMQ_EFORMAT,
          "\"llmq_online_hadamard.keys\" is not true or false" },
        { ",\"llmq_online_hadamard\":{\"ff_block\":256,\"head_dim\":32,\"Keys\":true}", LLMQ_EUNSUPPORTED,
          "\"llmq_online_hadamard.Keys\" is a transform this llmq does not know" },
        { ",\"llmq_online_hadamard\":{\"ff_block\":256,\"head_dim\":32,\"q_block\":8}", LLMQ_EUNSUPPORTED,
          "\"llmq_online_hadamard.q_block\" is a transform this llmq does not know" },
        { ",\"llmq_online_hadamard\":{\"ff_block\":256,\"head_dim\":32,\"\\u001b[2J\":1}", LLMQ_EUNSUPPORTED,
          "\\x1b[2J" },
    };
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(cases); i++) {
        llmq_config c;
        llmq_err e = { 0, "" };
        int rc = parse(cases[i].tail, &c, &e);
        CHECK_MSG(rc == cases[i].code && strstr(e.msg, cases[i].needle) && !strncmp(e.msg, "m/config.json: ", 15),
                  "case %zu: rc %d, '%s'", i, rc, e.msg);
    }
}

/* ---- AWQ's MLP group through the transform ---- */

static float gauss(void)
{
    double u = (double)(rnd() >> 11) / 9007199254740992.0 + 1e-12, v = (double)(rnd() >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* A group with down_proj stored as Wd Q and ff_block set computes the
 * plain group's MLP output, so its search sees the same losses (to
 * rounding; skipping the transform gives other ones) and picks the same
 * ratio. */
TEST(awq_mlp_group_through_transform)
{
    enum { N = 96, H = 64, FF = 192, B = 64 };   /* 192 = 3 blocks of 64 */
    float *x = malloc(sizeof(float) * N * H), *Wg = malloc(sizeof(float) * FF * H), *Wu = malloc(sizeof(float) * FF * H),
          *Wd = malloc(sizeof(float) * H * FF), *Wdq = malloc(sizeof(float) * H * FF), xm[H], s[H], s2[H];
    for (int i = 0; i < FF * H; i++) { Wg[i] = gauss() * 0.1f; Wu[i] = gauss() * 0.1f; Wd[i] = gauss() * 0.1f; }
    memcpy(Wdq, Wd, sizeof(float) * H * FF);
    llmq_fwht_ref(Wdq, H, FF, B);   /* each row of Wd times Q: Wd Q */
    for (int t = 0; t < N; t++)
        for (int c = 0; c < H; c++) x[t * H + c] = gauss() * (c % 13 == 0 ? 15.0f : 1.0f);
    for (int c = 0; c < H; c++) {
        double a = 0;
        for (int t = 0; t < N; t++) a += fabsf(x[t * H + c]);
        xm[c] = (float)(a / N);
    }
    llmq_awq_group g = { x, N, H, xm, 0, 0, 0, 2, { Wg, Wu }, { FF, FF }, Wd, H, 0, 0, 0 };
    llmq_awq_qcfg q = { .bits = 3, .group = 64, .sym = 0 };
    double r1, l1, b1, r2, l2, b2;
    int fb, pd;
    llmq_err err = { 0, "" };
    CHECK_EQ_INT(llmq_awq_search_scale(NULL, &g, &q, 10, 0, s, &r1, &pd, &l1, &b1, &fb, &err), LLMQ_OK);
    g.down = Wdq;
    g.ff_block = B;
    CHECK_EQ_INT(llmq_awq_search_scale(NULL, &g, &q, 10, 0, s2, &r2, &pd, &l2, &b2, &fb, &err), LLMQ_OK);
    CHECK_MSG(fabs(l2 - l1) <= 1e-4 * l1 && fabs(b2 - b1) <= 1e-4 * b1 && r2 == r1,
              "rotated down: loss at s=1 %.9g (plain %.9g), best %.9g (%.9g), ratio %g (%g)", l2, l1, b2, b1, r2, r1);
    free(x); free(Wg); free(Wu); free(Wd); free(Wdq);
}

TEST_MAIN()
