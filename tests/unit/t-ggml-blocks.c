/*
 * t-ggml-blocks.c - ggml's block types (LLMQ_W_GQ*): every ISA's matvec and
 * dequant against the oracle (q_ref.c over lib/quant/ggml_blocks.c) on
 * random valid blocks at odd addresses, odd row counts and row ranges; the
 * threaded, prefill and get_row paths; and hand-built blocks whose values
 * are worked out here by hand.  ggml's own dequantizers are compared with
 * the oracle by tests/tools/ggml-dqcheck.c.
 */
#include "../test.h"
#include "kernels/kern-int.h"
#include "quant/ggml_blocks.h"

/* |y - y_ref| <= TOL_DOT * sum_j |w_j x_j| + TOL_FLOOR: the weights are the
 * oracle's floats exactly (gq-simd.h), only the f32 summation order differs. */
#define TOL_DOT 2e-6
#define TOL_FLOOR 1e-30

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) { rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17; return rng_state; }
static float rndf(void) { return (float)((double)(rnd() >> 11) / 9007199254740992.0 * 2.0 - 1.0); }

static const llmq_gq_traits *traits(llmq_wtype t) { return &llmq_gq_types[t - LLMQ_W_GQ8_0]; }

/* Byte offsets of the f16 fields in one block of type t (-1 ends). */
static const int *f16_fields(llmq_wtype t)
{
    static const int at0[] = { 0, -1 }, at02[] = { 0, 2, -1 }, q2k[] = { 80, 82, -1 }, q3k[] = { 108, -1 },
                     q6k[] = { 208, -1 };
    switch (t) {
    case LLMQ_W_GQ4_1: case LLMQ_W_GQ5_1: case LLMQ_W_GQ4_K: case LLMQ_W_GQ5_K: return at02;
    case LLMQ_W_GQ2_K: return q2k;
    case LLMQ_W_GQ3_K: return q3k;
    case LLMQ_W_GQ6_K: return q6k;
    default: return at0;
    }
}

/* A finite f16: mostly moderate normals of either sign, some subnormals, zeros, large values. */
static uint16_t rand_f16(void)
{
    switch (rnd() % 16) {
    case 0: return (uint16_t)(rnd() & 0x83ff);                 /* subnormal or zero */
    case 1: return (uint16_t)((rnd() & 0x8000) | 0x7800 | (rnd() & 0x3ff)); /* 32768 .. 65504 */
    case 2: return 0;
    default: return llmq_f32_to_f16(rndf() * 0.05f);
    }
}

typedef struct {
    llmq_wmat W;
    uint8_t *buf;     /* allocation; W.data = buf + off */
} gmat;

/* rows x cols of type t, random valid blocks, data at buf + off (misaligned when off is odd) */
static gmat make_gmat(llmq_wtype t, int64_t rows, int64_t cols, int off)
{
    const llmq_gq_traits *g = traits(t);
    gmat m = { { t, rows, cols, NULL, NULL, NULL, g->qk, 0, 0 }, NULL };
    int64_t nblk = rows * (cols / g->qk);
    m.buf = malloc((size_t)(nblk * g->block_bytes + off));
    uint8_t *p = m.buf + off;
    for (int64_t i = 0; i < nblk * g->block_bytes; i++) p[i] = (uint8_t)rnd();
    for (int64_t b = 0; b < nblk; b++)
        for (const int *f = f16_fields(t); *f >= 0; f++) llmq_put_le16(p + b * g->block_bytes + *f, rand_f16());
    m.W.data = p;
    return m;
}

static float *rand_vec(int64_t n)
{
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) x[i] = rndf();
    return x;
}

/* the oracle's dequantized matrix, rows x cols */
static float *oracle_rows(const llmq_wmat *W)
{
    float *w = malloc((size_t)(W->rows * W->cols) * sizeof *w);
    llmq_ktable_ref.dequant[W->type](W, 0, W->rows, w);
    return w;
}

static int near_dot(float y, float yref, const float *w, const float *x, int64_t cols)
{
    double a = 0;
    for (int64_t j = 0; j < cols; j++) a += fabs((double)w[j] * x[j]);
    return fabs((double)y - yref) <= TOL_DOT * a + TOL_FLOOR;
}

static const int64_t cols32[] = { 32, 96, 160, 2048 }, cols256[] = { 256, 768, 2816 };
static const int64_t nrows[] = { 1, 2, 3, 5, 8 };

/* every ISA's row kernels on [r0, r1) against the oracle: matvec to
 * tolerance, dequant bit for bit */
static void check_type(llmq_wtype t)
{
    const llmq_gq_traits *g = traits(t);
    const int64_t *cl = g->qk == 32 ? cols32 : cols256;
    int ncl = g->qk == 32 ? 4 : 3;
    for (int ci = 0; ci < ncl; ci++)
        for (int ri = 0; ri < 5; ri++) {
            int64_t rows = nrows[ri], cols = cl[ci];
            gmat m = make_gmat(t, rows, cols, (int)(rnd() % 4) * 2 + 1);
            const llmq_wmat *W = &m.W;
            float *x = rand_vec(cols), *wr = oracle_rows(W), *yr = malloc((size_t)rows * 4);
            float *y = malloc((size_t)rows * 4), *dq = malloc((size_t)(rows * cols) * 4);
            llmq_ktable_ref.matvec[t](W, 0, rows, x, yr);
            for (int r = 0; r < rows; r++) {   /* the oracle sums its own dequant in double */
                double s = 0;
                for (int64_t j = 0; j < cols; j++) s += (double)wr[r * cols + j] * x[j];
                CHECK_MSG((float)s == yr[r], "%s oracle row %d", g->name, r);
            }
            for (int isa = LLMQ_ISA_SCALAR; isa <= (int)llmq_cpu_isa_max(); isa++) {
                llmq_cpu_set_isa((llmq_isa)isa);
                const llmq_ktable *kt = llmq_ktable_cur();
                for (int64_t r0 = 0; r0 < rows; r0++) {           /* every start: odd ranges and tails */
                    int64_t r1 = r0 + 1 + (int64_t)(rnd() % (uint64_t)(rows - r0));
                    kt->matvec[t](W, r0, r1, x, y);
                    for (int64_t r = r0; r < r1; r++)
                        CHECK_MSG(near_dot(y[r - r0], yr[r], wr + r * cols, x, cols), "%s %s %" PRId64 "x%" PRId64
                                  " rows [%" PRId64 ", %" PRId64 ") row %" PRId64 ": %.9g vs %.9g", g->name,
                                  llmq_isa_name((llmq_isa)isa), rows, cols, r0, r1, r, y[r - r0], yr[r]);
                    kt->dequant[t](W, r0, r1, dq);
                    CHECK_MSG(!memcmp(dq, wr + r0 * cols, (size_t)((r1 - r0) * cols) * 4), "%s %s dequant rows [%"
                              PRId64 ", %" PRId64 ")", g->name, llmq_isa_name((llmq_isa)isa), r0, r1);
                }
            }
            free(x); free(wr); free(yr); free(y); free(dq); free(m.buf);
        }
    llmq_cpu_set_isa(llmq_cpu_isa_max());
}

TEST(random_q8_0) { check_type(LLMQ_W_GQ8_0); }
TEST(random_q4_0) { check_type(LLMQ_W_GQ4_0); }
TEST(random_q4_1) { check_type(LLMQ_W_GQ4_1); }
TEST(random_q5_0) { check_type(LLMQ_W_GQ5_0); }
TEST(random_q5_1) { check_type(LLMQ_W_GQ5_1); }
TEST(random_q2_k) { check_type(LLMQ_W_GQ2_K); }
TEST(random_q3_k) { check_type(LLMQ_W_GQ3_K); }
TEST(random_q4_k) { check_type(LLMQ_W_GQ4_K); }
TEST(random_q5_k) { check_type(LLMQ_W_GQ5_K); }
TEST(random_q6_k) { check_type(LLMQ_W_GQ6_K); }

/* The entry points (pool threads, the OpenBLAS prefill over dequantized
 * tiles, one-token matmul, get_row) on every ISA against the oracle. */
TEST(threaded_and_prefill)
{
    llmq_err err;
    llmq_pool *pool = llmq_pool_new(3, &err);
    CHECK(pool != NULL);
    for (int t = LLMQ_W_GQ8_0; t <= LLMQ_W_GQ6_K; t++) {
        int64_t rows = 301, cols = traits(t)->qk == 32 ? 1024 : 1536, n = 5;   /* above the small-matrix cutoff */
        gmat m = make_gmat((llmq_wtype)t, rows, cols, 3);
        CHECK(llmq_wmat_check(&m.W, "w", &err) == LLMQ_OK);
        float *X = rand_vec(n * cols), *wr = oracle_rows(&m.W), *Y = malloc((size_t)(n * rows) * 4);
        float *yr = malloc((size_t)rows * 4), *row = malloc((size_t)cols * 4);
        for (int isa = LLMQ_ISA_SCALAR; isa <= (int)llmq_cpu_isa_max(); isa++) {
            llmq_cpu_set_isa((llmq_isa)isa);
            for (int64_t nt = 1; nt <= n; nt += 2) {          /* 1: matvec; 3, 5: sgemm tiles */
                llmq_matmul(pool, &m.W, X, nt, Y);
                int bad = 0;
                for (int64_t k = 0; k < nt && !bad; k++) {
                    llmq_ktable_ref.matvec[t](&m.W, 0, rows, X + k * cols, yr);
                    for (int64_t r = 0; r < rows && !bad; r++)
                        if (!near_dot(Y[k * rows + r], yr[r], wr + r * cols, X + k * cols, cols)) {
                            bad = 1;
                            CHECK_MSG(0, "%s %s n=%" PRId64 " token %" PRId64 " row %" PRId64 ": %.9g vs %.9g",
                                      traits(t)->name, llmq_isa_name((llmq_isa)isa), nt, k, r, Y[k * rows + r], yr[r]);
                        }
                }
            }
            for (int64_t r = 0; r < rows; r += 37) {
                llmq_get_row(&m.W, r, row);
                CHECK_MSG(!memcmp(row, wr + r * cols, (size_t)cols * 4), "%s get_row %" PRId64, traits(t)->name, r);
            }
        }
        llmq_cpu_set_isa(llmq_cpu_isa_max());
        free(X); free(wr); free(Y); free(yr); free(row); free(m.buf);
    }
    llmq_pool_free(pool);
}

/* ---- hand-built blocks: values worked out from ggml_blocks.h's formulas ---- */

typedef struct { int at; float want; } expect;

/* One row of one block of type t (bytes blk) checked at the given values on
 * every ISA: dequant, get_row and a one-hot matvec give each exactly. */
static void check_hand(llmq_wtype t, const uint8_t *blk, const expect *e, int ne)
{
    const llmq_gq_traits *g = traits(t);
    uint8_t *buf = malloc((size_t)g->block_bytes + 1);
    memcpy(buf + 1, blk, (size_t)g->block_bytes);                 /* odd address */
    llmq_wmat W = { t, 1, g->qk, buf + 1, NULL, NULL, g->qk, 0, 0 };
    llmq_err err;
    CHECK(llmq_wmat_check(&W, "hand", &err) == LLMQ_OK);
    CHECK_EQ_INT(llmq_wmat_bytes(&W), g->block_bytes);
    float v[LLMQ_GQK_K], x[LLMQ_GQK_K], y;
    for (int isa = LLMQ_ISA_SCALAR; isa <= (int)llmq_cpu_isa_max(); isa++) {
        llmq_cpu_set_isa((llmq_isa)isa);
        llmq_get_row(&W, 0, v);
        for (int i = 0; i < ne; i++) {
            CHECK_MSG(v[e[i].at] == e[i].want, "%s %s value %d = %.9g, want %.9g", g->name,
                      llmq_isa_name((llmq_isa)isa), e[i].at, v[e[i].at], e[i].want);
            memset(x, 0, sizeof x);
            x[e[i].at] = 1.0f;
            llmq_matvec(NULL, &W, x, &y);
            CHECK_MSG(y == e[i].want, "%s %s one-hot %d = %.9g", g->name, llmq_isa_name((llmq_isa)isa), e[i].at, y);
        }
    }
    llmq_cpu_set_isa(llmq_cpu_isa_max());
    free(buf);
}

#define F16_1     0x3c00
#define F16_0_5   0x3800
#define F16_0_25  0x3400
#define F16_2     0x4000
#define F16_10    0x4900
#define F16_M1    0xbc00

TEST(hand_q8_0)
{
    uint8_t b[34] = { 0 };
    llmq_put_le16(b, F16_0_5);
    b[2 + 0] = 0x80; b[2 + 5] = 3; b[2 + 31] = 127;
    expect e[] = { { 0, -64.0f }, { 5, 1.5f }, { 31, 63.5f }, { 7, 0.0f } };
    check_hand(LLMQ_W_GQ8_0, b, e, 4);
}

TEST(hand_q4_0)
{
    uint8_t b[18] = { 0 };
    llmq_put_le16(b, F16_2);
    b[2 + 0] = 0x1f; b[2 + 15] = 0x80;
    /* value 0: low nibble 15 -> (15 - 8) * 2; value 16: high nibble 1 -> (1 - 8) * 2 */
    expect e[] = { { 0, 14.0f }, { 16, -14.0f }, { 15, -16.0f }, { 31, 0.0f }, { 3, -16.0f } };
    check_hand(LLMQ_W_GQ4_0, b, e, 5);
}

TEST(hand_q4_1)
{
    uint8_t b[20] = { 0 };
    llmq_put_le16(b, F16_0_5); llmq_put_le16(b + 2, F16_M1);
    b[4 + 2] = 0xf3;
    expect e[] = { { 2, 0.5f }, { 18, 6.5f }, { 0, -1.0f } };   /* 0.5 * 3 - 1, 0.5 * 15 - 1, 0 - 1 */
    check_hand(LLMQ_W_GQ4_1, b, e, 3);
}

TEST(hand_q5_0)
{
    uint8_t b[22] = { 0 };
    llmq_put_le16(b, F16_1);
    llmq_put_le32(b + 2, 0x00020001u);       /* fifth bit of values 0 and 17 */
    b[6 + 0] = 0x0f; b[6 + 1] = 0x21;
    /* v0 = (15 | 16) - 16, v16 = 0 - 16, v1 = 1 - 16, v17 = (2 | 16) - 16 */
    expect e[] = { { 0, 15.0f }, { 16, -16.0f }, { 1, -15.0f }, { 17, 2.0f } };
    check_hand(LLMQ_W_GQ5_0, b, e, 4);
}

TEST(hand_q5_1)
{
    uint8_t b[24] = { 0 };
    llmq_put_le16(b, F16_0_25); llmq_put_le16(b + 2, F16_10);
    llmq_put_le32(b + 4, 0x80000000u);       /* fifth bit of value 31 */
    b[8 + 15] = 0xf0;
    expect e[] = { { 15, 10.0f }, { 31, 17.75f }, { 30, 10.0f } };   /* 0.25 * 31 + 10 */
    check_hand(LLMQ_W_GQ5_1, b, e, 3);
}

TEST(hand_q2_k)
{
    uint8_t b[84] = { 0 };
    b[0] = 0x23;                             /* sub-block 0: scale 3, min 2 */
    b[2] = 0x14;                             /* sub-block 2 (values 32..47): scale 4, min 1 */
    b[15] = 0xf1;                            /* sub-block 15: scale 1, min 15 */
    b[16 + 0] = 0xe4;                        /* qs[0]: pairs 0, 1, 2, 3 for values 0, 32, 64, 96 */
    b[16 + 63] = 0xc0;                       /* qs[63]: pair 3 = value 128 + 96 + 31 = 255 */
    llmq_put_le16(b + 80, F16_1); llmq_put_le16(b + 82, F16_0_5);
    /* v0 = 1*3*0 - 0.5*2; v32 = 1*4*1 - 0.5*1; v255 = 1*1*3 - 0.5*15 */
    expect e[] = { { 0, -1.0f }, { 32, 3.5f }, { 255, -4.5f } };
    check_hand(LLMQ_W_GQ2_K, b, e, 3);
}

TEST(hand_q3_k)
{
    uint8_t b[110] = { 0 };
    b[32 + 0] = 0x02;                        /* value 0: low bits 2 */
    b[32 + 48] = 0x03;                       /* value 144 (half 1, l = 16): low bits 3 */
    b[16] = 0x10;                            /* hmask[16] bit 4 = 4h + j for value 144: set */
    b[96 + 0] = 0x08; b[96 + 8] = 0x02;      /* scale 0: 8 | 2 << 4 = 40 -> 8 */
    b[96 + 1] = 0x50;                        /* scale 9: 5 | 0 << 4 = 5 -> -27 */
    llmq_put_le16(b + 108, F16_0_5);
    /* v0: hmask bit clear -> 2 - 4 = -2, 0.5 * 8 * -2; v144: bit set -> 3, 0.5 * -27 * 3 */
    expect e[] = { { 0, -8.0f }, { 144, -40.5f } };
    check_hand(LLMQ_W_GQ3_K, b, e, 2);
}

/* Q4_K / Q5_K scales: sub-block 0 (3, 2), 1 (5, 4), 5 (40, 33) */
static void k4_scales(uint8_t *sc12)
{
    sc12[0] = 3; sc12[4] = 2;
    sc12[1] = 0x80 | 5; sc12[5] = 0x80 | 4;  /* top bits: high 2 bits of sub-block 5's scale and min */
    sc12[9] = 0x18;                          /* sub-block 5: scale low 8, min low 1 -> 40, 33 */
}

TEST(hand_q4_k)
{
    uint8_t b[144] = { 0 };
    llmq_put_le16(b, F16_0_5); llmq_put_le16(b + 2, F16_0_25);
    k4_scales(b + 4);
    b[16 + 0] = 0x7a;                        /* value 0: 10, value 32: 7 */
    b[16 + 64 + 3] = 0xc0;                   /* value 163 (sub-block 5, high nibble): 12 */
    /* 0.5*3*10 - 0.25*2; 0.5*5*7 - 0.25*4; 0.5*40*12 - 0.25*33 */
    expect e[] = { { 0, 14.5f }, { 32, 16.5f }, { 163, 231.75f }, { 1, -0.5f } };
    check_hand(LLMQ_W_GQ4_K, b, e, 4);
}

TEST(hand_q5_k)
{
    uint8_t b[176] = { 0 };
    llmq_put_le16(b, F16_0_5); llmq_put_le16(b + 2, F16_0_25);
    k4_scales(b + 4);
    b[16 + 0] = 0x01;                        /* qh[0] bit 0: fifth bit of value 0 */
    b[16 + 3] = 0x20;                        /* qh[3] bit 5: fifth bit of value 5 * 32 + 3 = 163 */
    b[48 + 0] = 0x0a; b[48 + 1] = 0x70; b[48 + 64 + 3] = 0xc0;
    /* v0 = 0.5*3*26 - 0.25*2; v33 = 0.5*5*7 - 0.25*4; v163 = 0.5*40*28 - 0.25*33 */
    expect e[] = { { 0, 38.5f }, { 33, 16.5f }, { 163, 551.75f } };
    check_hand(LLMQ_W_GQ5_K, b, e, 3);
}

TEST(hand_q6_k)
{
    uint8_t b[210] = { 0 };
    b[0] = 0x05; b[128 + 0] = 0x02;          /* value 0: 5 | 2 << 4 = 37 -> 5 */
    b[64 + 23] = 0xf0; b[128 + 32 + 23] = 0x30;   /* value 215 (h 1, j 2, l 23): 15 | 3 << 4 = 63 -> 31 */
    b[192 + 0] = (uint8_t)-2; b[192 + 13] = 100;
    llmq_put_le16(b + 208, F16_0_25);
    /* v0 = 0.25 * -2 * 5; v215 = 0.25 * 100 * 31; v1 = 0.25 * -2 * -32 */
    expect e[] = { { 0, -2.5f }, { 215, 775.0f }, { 1, 16.0f } };
    check_hand(LLMQ_W_GQ6_K, b, e, 3);
}

/* ---- the API around the types ---- */

TEST(type_map_and_checks)
{
    static const struct { uint32_t g; int t; const char *name; } map[] = {
        { 0, LLMQ_W_F32, "f32" }, { 1, LLMQ_W_F16, "f16" }, { 30, LLMQ_W_BF16, "bf16" },
        { 2, LLMQ_W_GQ4_0, "q4_0" }, { 3, LLMQ_W_GQ4_1, "q4_1" }, { 6, LLMQ_W_GQ5_0, "q5_0" },
        { 7, LLMQ_W_GQ5_1, "q5_1" }, { 8, LLMQ_W_GQ8_0, "q8_0" }, { 10, LLMQ_W_GQ2_K, "q2_k" },
        { 11, LLMQ_W_GQ3_K, "q3_k" }, { 12, LLMQ_W_GQ4_K, "q4_k" }, { 13, LLMQ_W_GQ5_K, "q5_k" },
        { 14, LLMQ_W_GQ6_K, "q6_k" },
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++) {
        CHECK_EQ_INT(llmq_wtype_of_ggml(map[i].g), map[i].t);
        CHECK(!strcmp(llmq_wtype_name((llmq_wtype)map[i].t), map[i].name));
    }
    static const uint32_t none[] = { 4, 5, 9, 15, 16, 20, 29, 31, 39, 40, 1000, 0xffffffffu };
    for (size_t i = 0; i < sizeof none / sizeof *none; i++) CHECK_EQ_INT(llmq_wtype_of_ggml(none[i]), -1);
    CHECK(!strcmp(llmq_wtype_name(LLMQ_W_Q4), "q4"));
    CHECK(!strcmp(llmq_wtype_name((llmq_wtype)LLMQ_W_COUNT), "?"));

    llmq_err err;
    uint8_t data[210 * 3];
    llmq_wmat W = { LLMQ_W_GQ6_K, 1, 768, data, NULL, NULL, 256, 0, 0 };
    CHECK(llmq_wmat_check(&W, "w", &err) == LLMQ_OK);
    CHECK_EQ_INT(llmq_wmat_bytes(&W), 630);
    W.cols = 512 + 32;                                  /* not whole super-blocks */
    CHECK_EQ_INT(llmq_wmat_check(&W, "w", &err), LLMQ_EFORMAT);
    CHECK(strstr(err.msg, "q6_k") && strstr(err.msg, "256"));
    W.cols = 512; W.group = 32;                         /* group must be the block size */
    CHECK_EQ_INT(llmq_wmat_check(&W, "w", &err), LLMQ_EINTERNAL);
    W.type = LLMQ_W_GQ4_0; W.cols = 48;
    CHECK_EQ_INT(llmq_wmat_check(&W, "w", &err), LLMQ_EFORMAT);
    W.cols = 64;
    CHECK(llmq_wmat_check(&W, "w", &err) == LLMQ_OK);   /* scales NULL is right for ggml types */
    CHECK_EQ_INT(llmq_wmat_bytes(&W), 36);
    W.rows = 7; W.cols = 4096; W.type = LLMQ_W_GQ4_K; W.group = 256;
    CHECK_EQ_INT(llmq_wmat_bytes(&W), 7 * 16 * 144);
}

TEST_MAIN();
