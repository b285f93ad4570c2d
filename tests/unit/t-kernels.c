/*
 * t-kernels.c - every SIMD kernel against the scalar oracle (q_ref.c) on
 * random and adversarial rows, each ISA the CPU has forced in turn; the
 * threaded and OpenBLAS paths against the same oracle.
 */
#include "../test.h"
/* test.h's TEST(name) pastes the test name over the member ".name"; until
 * that is fixed there, the same macro with a parameter that cannot clash. */
#undef TEST
#define TEST(tname_)                                                       \
    static void tname_(void);                                              \
    __attribute__((constructor)) static void reg_##tname_(void) {          \
        test_cases[test_count].name = #tname_;                             \
        test_cases[test_count++].fn = tname_;                              \
    }                                                                      \
    static void tname_(void)
#include "kernels/kern-int.h"
#include "quant/blocks.h"

/* |y - y_ref| <= TOL_DOT * sum_j |w_j x_j| (+ a denormal floor): f32 sums in
 * another order, relative to the condition of the dot product. */
#define TOL_DOT 2e-6
#define TOL_FLOOR 1e-30

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void) { rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17; return rng_state; }
static float rndf(void) { return (float)((double)(rnd() >> 11) / 9007199254740992.0 * 2.0 - 1.0); }

/* M_FLAT: nonzero scales, every quantized weight exactly 0 (codes at the
 * zero point): a kernel that cancels large terms instead of summing exact
 * zeros shows up against the zero tolerance floor. */
enum { M_RANDOM, M_ZERO, M_MAX, M_FLAT, M_COUNT };

typedef struct {
    llmq_wmat W;
    void *data, *scales;
    uint8_t *zeros;
} tmat;

static void tmat_free(tmat *m) { free(m->data); free(m->scales); free(m->zeros); }

/* A matrix of type t filled per mode: random, all zero, or extreme codes
 * (max magnitudes, nibbles 0 and 15, largest scales that keep sums finite). */
static tmat make_mat(llmq_wtype t, int64_t rows, int64_t cols, int group, int sym, int mode)
{
    tmat m = { 0 };
    int64_t n = rows * cols;
    m.W.type = t; m.W.rows = rows; m.W.cols = cols;
    switch (t) {
    case LLMQ_W_F32: {
        float *d = malloc((size_t)n * 4);
        for (int64_t i = 0; i < n; i++)
            d[i] = mode == M_ZERO ? 0.0f : mode == M_MAX ? ((rnd() & 1) ? 1e18f : -1e18f) : rndf();
        m.data = d; break;
    }
    case LLMQ_W_BF16: case LLMQ_W_F16: {
        uint16_t *d = malloc((size_t)n * 2);
        for (int64_t i = 0; i < n; i++) {
            float v = mode == M_ZERO ? 0.0f : mode == M_MAX ? ((rnd() & 1) ? 65504.0f : -65504.0f) : rndf();
            if (mode == M_RANDOM && i % 7 == 3) v *= 1e-6f;   /* f16 subnormals too */
            d[i] = t == LLMQ_W_BF16 ? llmq_f32_to_bf16(v) : llmq_f32_to_f16(v);
        }
        m.data = d; break;
    }
    case LLMQ_W_Q8: {
        int8_t *d = malloc((size_t)n);
        float *s = malloc((size_t)rows * 4);
        for (int64_t i = 0; i < n; i++)
            d[i] = mode == M_ZERO || mode == M_FLAT ? 0 : mode == M_MAX ? ((rnd() & 1) ? 127 : -127) : (int8_t)((int)(rnd() % 255) - 127);
        for (int64_t r = 0; r < rows; r++) s[r] = mode == M_ZERO ? 0.0f : 0.01f + 0.01f * (float)(rnd() % 100);
        m.data = d; m.scales = s; break;
    }
    case LLMQ_W_Q4: {
        int64_t ng = rows * (cols / group);
        uint8_t *d = malloc((size_t)(n / 2));
        uint16_t *s = malloc((size_t)ng * 2);
        for (int64_t i = 0; i < n / 2; i++)
            d[i] = mode == M_ZERO ? 0 : mode == M_FLAT ? 0x88 : mode == M_MAX ? ((rnd() & 1) ? 0xff : (rnd() & 1) ? 0x00 : 0x0f) : (uint8_t)rnd();
        for (int64_t g = 0; g < ng; g++)
            s[g] = llmq_f32_to_f16(mode == M_ZERO ? 0.0f : mode == M_MAX ? 65504.0f : 0.001f * (float)(1 + rnd() % 100));
        if (!sym) {
            m.zeros = malloc((size_t)ng);
            for (int64_t g = 0; g < ng; g++)
                m.zeros[g] = mode == M_FLAT ? 8 : mode == M_MAX ? (uint8_t)((rnd() & 1) ? 15 : 0) : (uint8_t)(rnd() % 16);
        }
        m.data = d; m.scales = s; m.W.group = group; break;
    }
    case LLMQ_W_MX8: {
        int64_t nb = n / LLMQ_MX8_BLOCK;
        int8_t *d = malloc((size_t)n);
        uint8_t *s = malloc((size_t)nb);
        for (int64_t i = 0; i < n; i++)
            d[i] = mode == M_ZERO || mode == M_FLAT ? 0 : mode == M_MAX ? ((rnd() & 1) ? 127 : -127) : (int8_t)((int)(rnd() % 255) - 127);
        for (int64_t b = 0; b < nb; b++)
            s[b] = mode == M_MAX ? (uint8_t)(b % 3 == 0 ? 0 : 180) : (uint8_t)(110 + rnd() % 30);
        m.data = d; m.scales = s; m.W.group = LLMQ_MX8_BLOCK; break;
    }
    default: break;
    }
    m.W.data = m.data; m.W.scales = m.scales; m.W.zeros = m.zeros;
    return m;
}

static float *rand_vec(int64_t n, float amp)
{
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) x[i] = amp * rndf();
    return x;
}

/* sum_j |W[r][j] x[j]| with the oracle's element values */
static double abs_dot(const llmq_wmat *W, int64_t r, const float *x)
{
    float *row = malloc((size_t)W->cols * sizeof *row);
    llmq_ktable_ref.dequant[W->type](W, r, r + 1, row);
    double s = 0;
    for (int64_t j = 0; j < W->cols; j++) s += fabs((double)row[j] * x[j]);
    free(row);
    return s;
}

static const char *tname(llmq_wtype t)
{
    static const char *n[] = { "f32", "bf16", "f16", "q8", "q4", "mx8" };
    return n[t];
}

static int isa_ok(llmq_isa isa) { return isa <= llmq_cpu_isa_max(); }

/* matvec of the current ISA on rows [0, rows) vs the oracle */
static int check_matvec(const tmat *m, const float *x, llmq_pool *pool, const char *what)
{
    const llmq_wmat *W = &m->W;
    float *y = malloc((size_t)W->rows * 4), *yr = malloc((size_t)W->rows * 4);
    llmq_ktable_ref.matvec[W->type](W, 0, W->rows, x, yr);
    llmq_matvec(pool, W, x, y);
    int bad = 0;
    for (int64_t r = 0; r < W->rows && !bad; r++) {
        double tol = TOL_DOT * abs_dot(W, r, x) + TOL_FLOOR;
        if (!(fabs((double)y[r] - yr[r]) <= tol)) {
            fprintf(stderr, "  %s %s isa %s %" PRId64 "x%" PRId64 " g%d row %" PRId64 ": %.9g vs %.9g (tol %g)\n",
                    what, tname(W->type), llmq_isa_name(llmq_cpu_isa()), W->rows, W->cols, W->group, r,
                    y[r], yr[r], tol);
            bad = 1;
        }
    }
    free(y); free(yr);
    return !bad;
}

static const int64_t ROWS[] = { 1, 3, 4, 5, 8, 17, 33 };
static const int64_t COLS_ANY[] = { 1, 2, 7, 8, 15, 16, 17, 31, 32, 33, 48, 63, 100, 257, 1000 };
static const int64_t COLS_128[] = { 128, 256, 384, 1152 };

static void each_isa_matvec(llmq_wtype t, int group, int sym)
{
    llmq_isa saved = llmq_cpu_isa();
    for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
        if (!isa_ok((llmq_isa)isa)) continue;
        llmq_cpu_set_isa((llmq_isa)isa);
        const int64_t *cols = t <= LLMQ_W_Q8 ? COLS_ANY : COLS_128;
        size_t nc = t <= LLMQ_W_Q8 ? LLMQ_ARRAY_LEN(COLS_ANY) : LLMQ_ARRAY_LEN(COLS_128);
        for (size_t ri = 0; ri < LLMQ_ARRAY_LEN(ROWS); ri++)
            for (size_t ci = 0; ci < nc; ci++)
                for (int mode = 0; mode < M_COUNT; mode++) {
                    tmat m = make_mat(t, ROWS[ri], cols[ci], group, sym, mode);
                    float *x = rand_vec(cols[ci], mode == M_MAX ? 1e3f : 1.0f);
                    CHECK(check_matvec(&m, x, NULL, "matvec"));
                    free(x);
                    tmat_free(&m);
                }
    }
    llmq_cpu_set_isa(saved);
}

TEST(matvec_f32) { each_isa_matvec(LLMQ_W_F32, 0, 0); }
TEST(matvec_bf16) { each_isa_matvec(LLMQ_W_BF16, 0, 0); }
TEST(matvec_f16) { each_isa_matvec(LLMQ_W_F16, 0, 0); }
TEST(matvec_q8) { each_isa_matvec(LLMQ_W_Q8, 0, 0); }
TEST(matvec_q4_g32) { each_isa_matvec(LLMQ_W_Q4, 32, 0); }
TEST(matvec_q4_g64) { each_isa_matvec(LLMQ_W_Q4, 64, 0); }
TEST(matvec_q4_g128) { each_isa_matvec(LLMQ_W_Q4, 128, 0); }
TEST(matvec_q4_sym) { each_isa_matvec(LLMQ_W_Q4, 32, 1); each_isa_matvec(LLMQ_W_Q4, 128, 1); }
TEST(matvec_mx8) { each_isa_matvec(LLMQ_W_MX8, 32, 0); }

/* The pool's row split must give the same rows as one thread. */
TEST(matvec_threaded)
{
    llmq_err err;
    llmq_pool *pool = llmq_pool_new(3, &err);
    CHECK(pool != NULL);
    for (int t = 0; t < LLMQ_W_COUNT; t++) {
        tmat m = make_mat((llmq_wtype)t, 301, 512, 64, 0, M_RANDOM);   /* above the small-matrix cutoff */
        float *x = rand_vec(512, 1.0f);
        CHECK(check_matvec(&m, x, pool, "threaded"));
        free(x); tmat_free(&m);
    }
    llmq_pool_free(pool);
}

/* Y = X W^T through sgemm tiles vs the oracle token by token. */
static void check_matmul(llmq_pool *pool, llmq_wtype t, int64_t rows, int64_t cols, int64_t n)
{
    tmat m = make_mat(t, rows, cols, 32, 0, M_RANDOM);
    float *X = rand_vec(n * cols, 1.0f), *Y = malloc((size_t)(n * rows) * 4), *yr = malloc((size_t)rows * 4);
    llmq_matmul(pool, &m.W, X, n, Y);
    int bad = 0;
    for (int64_t k = 0; k < n && !bad; k++) {
        llmq_ktable_ref.matvec[t](&m.W, 0, rows, X + k * cols, yr);
        for (int64_t r = 0; r < rows && !bad; r++) {
            double tol = TOL_DOT * abs_dot(&m.W, r, X + k * cols) + TOL_FLOOR;
            if (!(fabs((double)Y[k * rows + r] - yr[r]) <= tol)) {
                fprintf(stderr, "  matmul %s isa %s %" PRId64 "x%" PRId64 " n %" PRId64 " token %" PRId64
                        " row %" PRId64 ": %.9g vs %.9g\n", tname(t), llmq_isa_name(llmq_cpu_isa()),
                        rows, cols, n, k, r, Y[k * rows + r], yr[r]);
                bad = 1;
            }
        }
    }
    CHECK(!bad);
    free(X); free(Y); free(yr); tmat_free(&m);
}

TEST(matmul_all_types)
{
    llmq_err err;
    llmq_pool *pool = llmq_pool_new(2, &err);
    llmq_isa saved = llmq_cpu_isa();
    static const int64_t ns[] = { 1, 2, 3, 5, 16, 37 };
    for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
        if (!isa_ok((llmq_isa)isa)) continue;
        llmq_cpu_set_isa((llmq_isa)isa);
        for (int t = 0; t < LLMQ_W_COUNT; t++)
            for (size_t k = 0; k < LLMQ_ARRAY_LEN(ns); k++) {
                check_matmul(pool, (llmq_wtype)t, 150, 96, ns[k]);
                check_matmul(NULL, (llmq_wtype)t, 7, 32, ns[k]);
            }
    }
    llmq_cpu_set_isa(saved);
    llmq_pool_free(pool);
}

/* a[i] == b[i] for all i: equal values, a zero's sign aside */
static int same_values(const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++) if (!(a[i] == b[i])) return 0;
    return 1;
}

/* Tile dequantization is exact: every ISA gives the oracle's values (only
 * the sign of a zero may differ, e.g. (q - z) * 0 with q < z). */
TEST(dequant_exact)
{
    llmq_isa saved = llmq_cpu_isa();
    for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
        if (!isa_ok((llmq_isa)isa)) continue;
        llmq_cpu_set_isa((llmq_isa)isa);
        for (int t = 0; t < LLMQ_W_COUNT; t++)
            for (int mode = 0; mode < M_COUNT; mode++)
                for (int sym = 0; sym < 2; sym++) {
                    int64_t cols = t <= LLMQ_W_Q8 ? 77 : 256;
                    tmat m = make_mat((llmq_wtype)t, 9, cols, 64, sym, mode);
                    float *a = malloc((size_t)(9 * cols) * 4), *b = malloc((size_t)(9 * cols) * 4);
                    llmq_ktable_ref.dequant[t](&m.W, 0, 9, a);
                    llmq_ktable_cur()->dequant[t](&m.W, 0, 9, b);
                    CHECK_MSG(same_values(a, b, 9 * cols), "%s isa %s mode %d", tname((llmq_wtype)t),
                              llmq_isa_name(llmq_cpu_isa()), mode);
                    llmq_get_row(&m.W, 4, b);
                    CHECK(same_values(a + 4 * cols, b, cols));
                    free(a); free(b); tmat_free(&m);
                }
    }
    llmq_cpu_set_isa(saved);
}

TEST(a8_exact)
{
    llmq_err err;
    llmq_pool *pool = llmq_pool_new(2, &err);
    llmq_isa saved = llmq_cpu_isa();
    static const int64_t cols[] = { 1, 31, 32, 64, 65, 100, 128, 1000, 4096 };
    for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
        if (!isa_ok((llmq_isa)isa)) continue;
        llmq_cpu_set_isa((llmq_isa)isa);
        for (size_t ci = 0; ci < LLMQ_ARRAY_LEN(cols); ci++)
            for (int mode = 0; mode < M_COUNT; mode++) {
                int64_t rows = 37, n = 5, c = cols[ci];
                tmat m = make_mat(LLMQ_W_Q8, rows, c, 0, 0, mode);
                float *X = rand_vec(n * c, 3.0f), xs[5];
                int8_t *Xq = malloc((size_t)(n * c));
                for (int64_t t = 0; t < n; t++) {
                    if (mode == M_MAX) for (int64_t j = 0; j < c; j++) X[t * c + j] = (j + t) & 1 ? 3.0f : -3.0f;
                    llmq_quantize_act_i8(X + t * c, c, Xq + t * c, &xs[t]);
                }
                float *Y = malloc((size_t)(n * rows) * 4), *yr = malloc((size_t)rows * 4);
                llmq_matmul_a8(pool, &m.W, Xq, xs, n, Y);
                for (int64_t t = 0; t < n; t++) {
                    int32_t xsum = 0;
                    for (int64_t j = 0; j < c; j++) xsum += Xq[t * c + j];
                    llmq_ktable_ref.matvec_a8(&m.W, 0, rows, Xq + t * c, xs[t], xsum, yr);
                    CHECK_MSG(!memcmp(yr, Y + t * rows, (size_t)rows * 4), "isa %s cols %" PRId64 " mode %d token %" PRId64,
                              llmq_isa_name(llmq_cpu_isa()), c, mode, t);
                }
                llmq_matvec_a8(NULL, &m.W, Xq, xs[0], yr);
                CHECK(!memcmp(yr, Y, (size_t)rows * 4));
                free(X); free(Xq); free(Y); free(yr); tmat_free(&m);
            }
    }
    llmq_cpu_set_isa(saved);
    llmq_pool_free(pool);
}

TEST(quantize_act)
{
    float x[5] = { 1.0f, -2.0f, 0.5f, 0.0f, 1.27f };
    int8_t q[5];
    float s;
    llmq_quantize_act_i8(x, 5, q, &s);
    CHECK_NEAR(s, 2.0f / 127, 1e-9);
    CHECK_EQ_INT(q[1], -127);
    CHECK_EQ_INT(q[0], 64);          /* 63.5 rounds to even */
    CHECK_EQ_INT(q[3], 0);
    float z[3] = { 0, 0, 0 };
    llmq_quantize_act_i8(z, 3, q, &s);
    CHECK(s == 0.0f && q[0] == 0 && q[2] == 0);
}

TEST(isa_control)
{
    llmq_isa hw = llmq_cpu_isa_max(), cur = llmq_cpu_isa();
    CHECK(cur <= hw);
    CHECK(!strcmp(llmq_isa_name(LLMQ_ISA_AVX2), "avx2"));
    llmq_isa prev = llmq_cpu_set_isa(LLMQ_ISA_SCALAR);
    CHECK(prev == cur);
    CHECK(llmq_cpu_isa() == LLMQ_ISA_SCALAR);
    llmq_cpu_set_isa(LLMQ_ISA_AVX512);
    CHECK(llmq_cpu_isa() == hw);          /* lowered to what the CPU has */
    llmq_cpu_set_isa(cur);
    printf("cpu isa: %s (hardware %s)\n", llmq_isa_name(cur), llmq_isa_name(hw));
}

TEST(wmat_bytes_and_check)
{
    llmq_wmat W = { LLMQ_W_Q4, 2048, 5632, (void *)1, (void *)1, (const uint8_t *)1, 32 };
    CHECK_EQ_INT(llmq_wmat_bytes(&W), 2048ull * 5632 / 2 + 2048ull * 176 * 3);
    llmq_err err;
    CHECK_EQ_INT(llmq_wmat_check(&W, "w", &err), LLMQ_OK);
    W.group = 48;
    CHECK_EQ_INT(llmq_wmat_check(&W, "blk.0.w", &err), LLMQ_EUNSUPPORTED);
    CHECK(strstr(err.msg, "'blk.0.w'") != NULL);
    W.group = 128; W.cols = 5632 + 64;
    CHECK_EQ_INT(llmq_wmat_check(&W, "w", &err), LLMQ_EFORMAT);
    llmq_wmat F = { LLMQ_W_BF16, 3, 5, (void *)1, NULL, NULL, 0 };
    CHECK_EQ_INT(llmq_wmat_bytes(&F), 30);
    CHECK_EQ_INT(llmq_wmat_check(&F, "f", &err), LLMQ_OK);
    F.rows = 0;
    CHECK_EQ_INT(llmq_wmat_check(&F, "f", &err), LLMQ_EUNSUPPORTED);
    llmq_wmat M = { LLMQ_W_MX8, 4, 64, (void *)1, (void *)1, NULL, 32 };
    CHECK_EQ_INT(llmq_wmat_bytes(&M), 256 + 8);
    M.cols = 48;
    CHECK_EQ_INT(llmq_wmat_check(&M, "m", &err), LLMQ_EFORMAT);
    llmq_wmat Q = { LLMQ_W_Q8, 4, 64, (void *)1, NULL, NULL, 0 };
    CHECK_EQ_INT(llmq_wmat_check(&Q, "q", &err), LLMQ_EFORMAT);
    Q.type = (llmq_wtype)99;
    CHECK_EQ_INT(llmq_wmat_check(&Q, "q", &err), LLMQ_EUNSUPPORTED);
}

/* E8M0 and MX code scale: 2^(e-127) and 2^(e-133) exactly, NaN at 255. */
TEST(e8m0_values)
{
    CHECK(llmq_e8m0_to_f32(127) == 1.0f);
    CHECK(llmq_e8m0_to_f32(0) == ldexpf(1.0f, -127));
    CHECK(llmq_e8m0_to_f32(254) == ldexpf(1.0f, 127));
    CHECK(isnan(llmq_e8m0_to_f32(255)));
    for (int e = 0; e < 255; e++) CHECK(llmq_mx8_code_scale((uint8_t)e) == ldexpf(1.0f, e - 133));
    CHECK(isnan(llmq_mx8_code_scale(255)));
}

TEST_MAIN()
