/*
 * t-kernels.c - every SIMD kernel against the scalar oracle (q_ref.c) on
 * random and adversarial rows, each ISA the CPU has forced in turn; the
 * threaded and OpenBLAS paths against the same oracle.  The MX / NV block
 * formats too: every code and scale byte, kernel row ranges and tails.
 */
#include <cpuid.h>
#include "../test.h"
#include "kernels/kern-int.h"
#include "lib/base/blocks.h"
#include "quant/quant.h"
#include "quant/kvq.h"

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
    case LLMQ_W_Q3: {
        /* FLAT: every code at zero point 4 (lo bits 0, hi bit 1); MAX:
         * codes 0 and 7 against zero points 7 and 0, the largest scale */
        int64_t ng = rows * (cols / group), nb = n / 8 * 3;
        uint8_t *d = malloc((size_t)nb);
        uint16_t *s = malloc((size_t)ng * 2);
        for (int64_t i = 0; i < nb; i++) {
            int hi = i % 12 >= 8;
            d[i] = mode == M_ZERO ? 0 : mode == M_FLAT ? (hi ? 0xff : 0x00)
                 : mode == M_MAX ? ((rnd() & 1) ? 0xff : 0x00) : (uint8_t)rnd();
        }
        for (int64_t g = 0; g < ng; g++)
            s[g] = llmq_f32_to_f16(mode == M_ZERO ? 0.0f : mode == M_MAX ? 65504.0f : 0.001f * (float)(1 + rnd() % 100));
        if (!sym) {
            m.zeros = malloc((size_t)ng);
            for (int64_t g = 0; g < ng; g++)
                m.zeros[g] = mode == M_FLAT ? 4 : mode == M_MAX ? (uint8_t)((rnd() & 1) ? 7 : 0) : (uint8_t)(rnd() % 8);
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
    case LLMQ_W_MXFP4: case LLMQ_W_MXINT4: case LLMQ_W_NVFP4: case LLMQ_W_NVINT4: case LLMQ_W_MXFP8: {
        /* every code the kernels may meet (int4 -8 and FP4 -0 too, which the
         * quantizer never writes), scale bytes other than NaN (negative E4M3
         * scales too); MAX: the largest codes and scales that keep sums finite */
        const int B = llmq_block_size(t), four = llmq_wtype_is_block4(t), nv = llmq_wtype_is_nv(t);
        int64_t nd = four ? n / 2 : n, nb = n / B;
        uint8_t *d = malloc((size_t)nd), *s = malloc((size_t)nb);
        static const uint8_t max4[] = { 0x77, 0x88, 0xff, 0x78, 0x87, 0xf7, 0x8f }, max8[] = { 0x7e, 0xfe };
        for (int64_t i = 0; i < nd; i++) {
            uint8_t v = (uint8_t)rnd();
            if (!four && llmq_e4m3_is_nan(v)) v ^= 1;
            if (mode == M_ZERO) v = 0;
            else if (mode == M_FLAT) v = four ? (t == LLMQ_W_MXFP4 || t == LLMQ_W_NVFP4 ? (uint8_t)(rnd() & 1 ? 0x88 : 0x08) : 0)
                                              : (uint8_t)(rnd() & 1 ? 0x80 : 0x00);   /* zeros of both signs */
            else if (mode == M_MAX) v = four ? max4[rnd() % 7] : max8[rnd() & 1];
            d[i] = v;
        }
        for (int64_t b = 0; b < nb; b++) {
            uint8_t v;
            if (nv) {
                v = (uint8_t)rnd();
                if (llmq_e4m3_is_nan(v)) v ^= 1;
                if (mode == M_ZERO) v = 0;
                else if (mode == M_MAX) v = b % 3 == 0 ? 0x01 : 0x7e;
            } else {
                v = mode == M_MAX ? (uint8_t)(b % 3 == 0 ? 0 : 180) : (uint8_t)(100 + rnd() % 50);
            }
            s[b] = v;
        }
        static const float tsc[] = { 1.0f, 3.7e-3f, 2.5e-5f, 0.71f, 1e-40f };   /* the last subnormal */
        m.W.tscale = nv ? mode == M_MAX ? 1e25f : tsc[rnd() % 5] : 0.0f;
        m.data = d; m.scales = s; m.W.group = B; break;
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

static const char *tname(llmq_wtype t) { return llmq_wtype_name(t); }

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
/* the block formats: 32-column chunks, around the AVX-512 kernels' 16 block
 * factors at a time (256 columns NV, 512 MX), and whole 128-column chunks
 * (the AVX-512 128-column path) past one and two sets of factors */
static const int64_t COLS_BLOCK[] = { 32, 64, 96, 128, 256, 288, 384, 512, 544, 640, 800, 1152 };

/* the types of this file (ggml's: t-ggml-blocks.c) */
static const llmq_wtype OWN_TYPES[] = { LLMQ_W_F32, LLMQ_W_BF16, LLMQ_W_F16, LLMQ_W_Q8, LLMQ_W_Q4, LLMQ_W_MX8,
                                        LLMQ_W_MXFP4, LLMQ_W_MXINT4, LLMQ_W_NVFP4, LLMQ_W_NVINT4, LLMQ_W_MXFP8,
                                        LLMQ_W_Q3 };
/* Q3: odd and even numbers of 32-column chunks and groups (those the group
 * does not divide are skipped) */
static const int64_t COLS_Q3[] = { 32, 64, 96, 128, 160, 256, 384, 640, 1152 };

static void each_isa_matvec(llmq_wtype t, int group, int sym)
{
    llmq_isa saved = llmq_cpu_isa();
    for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
        if (!isa_ok((llmq_isa)isa)) continue;
        llmq_cpu_set_isa((llmq_isa)isa);
        const int64_t *cols = t <= LLMQ_W_Q8 ? COLS_ANY : llmq_wtype_is_block(t) ? COLS_BLOCK
                            : t == LLMQ_W_Q3 ? COLS_Q3 : COLS_128;
        size_t nc = t <= LLMQ_W_Q8 ? LLMQ_ARRAY_LEN(COLS_ANY) : llmq_wtype_is_block(t) ? LLMQ_ARRAY_LEN(COLS_BLOCK)
                  : t == LLMQ_W_Q3 ? LLMQ_ARRAY_LEN(COLS_Q3) : LLMQ_ARRAY_LEN(COLS_128);
        for (size_t ri = 0; ri < LLMQ_ARRAY_LEN(ROWS); ri++)
            for (size_t ci = 0; ci < nc; ci++)
                for (int mode = 0; mode < M_COUNT; mode++) {
                    if (t == LLMQ_W_Q3 && cols[ci] % group) continue;
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
TEST(matvec_q3_g32) { each_isa_matvec(LLMQ_W_Q3, 32, 0); }
TEST(matvec_q3_g64) { each_isa_matvec(LLMQ_W_Q3, 64, 0); }
TEST(matvec_q3_g128) { each_isa_matvec(LLMQ_W_Q3, 128, 0); }
TEST(matvec_q3_sym) { each_isa_matvec(LLMQ_W_Q3, 32, 1); each_isa_matvec(LLMQ_W_Q3, 64, 1); each_isa_matvec(LLMQ_W_Q3, 128, 1); }
TEST(matvec_mx8) { each_isa_matvec(LLMQ_W_MX8, 32, 0); }
TEST(matvec_mxfp4) { each_isa_matvec(LLMQ_W_MXFP4, 32, 0); }
TEST(matvec_mxint4) { each_isa_matvec(LLMQ_W_MXINT4, 32, 0); }
TEST(matvec_nvfp4) { each_isa_matvec(LLMQ_W_NVFP4, 16, 0); }
TEST(matvec_nvint4) { each_isa_matvec(LLMQ_W_NVINT4, 16, 0); }
TEST(matvec_mxfp8) { each_isa_matvec(LLMQ_W_MXFP8, 32, 0); }

/* The pool's row split must give the same rows as one thread. */
TEST(matvec_threaded)
{
    llmq_err err;
    llmq_pool *pool = llmq_pool_new(3, &err);
    CHECK(pool != NULL);
    for (size_t k = 0; k < LLMQ_ARRAY_LEN(OWN_TYPES); k++) {
        tmat m = make_mat(OWN_TYPES[k], 301, 512, 64, 0, M_RANDOM);   /* above the small-matrix cutoff */
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
        for (size_t ti = 0; ti < LLMQ_ARRAY_LEN(OWN_TYPES); ti++)
            for (size_t k = 0; k < LLMQ_ARRAY_LEN(ns); k++) {
                llmq_wtype t = OWN_TYPES[ti];
                check_matmul(pool, t, 150, 96, ns[k]);
                check_matmul(NULL, t, 7, 32, ns[k]);
                /* two tiles of 256 rows: the second dequantized from row 256 */
                if (llmq_wtype_is_block(t) && ns[k] >= 3) check_matmul(pool, t, 301, 64, ns[k]);
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
        for (size_t ti = 0; ti < LLMQ_ARRAY_LEN(OWN_TYPES); ti++)
            for (int mode = 0; mode < M_COUNT; mode++)
                for (int sym = 0; sym < 2; sym++) {
                    int t = OWN_TYPES[ti];
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

/* ---- bf16 x bf16 ---- */

/* llmq_matmul_bf16 against the oracle (exact products summed in double):
 * fp32 sums of c terms are within c * 2^-24 of sum |w x| (plus the
 * rounding of the result).  Every ISA (AVX-512 with vdpbf16ps where the
 * CPU has it, else the widened sgemm path), threaded and not, token counts
 * around the kernel's blocks of four, columns around its 32-value steps;
 * the kernel slot itself writes only its rows. */
TEST(bf16_matmul_vs_oracle)
{
    llmq_err err;
    llmq_pool *pool = llmq_pool_new(2, &err);
    llmq_isa saved = llmq_cpu_isa();
    static const int64_t ns[] = { 1, 3, 4, 5, 9, 17 }, cols[] = { 7, 32, 100, 512 };
    for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
        if (!isa_ok((llmq_isa)isa)) continue;
        llmq_cpu_set_isa((llmq_isa)isa);
        const llmq_ktable *kt = llmq_ktable_cur();
        for (size_t ci = 0; ci < LLMQ_ARRAY_LEN(cols); ci++)
            for (size_t k = 0; k < LLMQ_ARRAY_LEN(ns); k++) {
                int64_t rows = 37, c = cols[ci], n = ns[k];
                tmat m = make_mat(LLMQ_W_BF16, rows, c, 0, 0, (int)(k % M_COUNT));
                float *X = rand_vec(n * c, 2.0f), *Y = malloc((size_t)(n * rows) * 4), *Yr = malloc((size_t)(n * rows) * 4);
                uint16_t *Xb = malloc((size_t)(n * c) * 2);
                llmq_round_bf16(X, n * c, Xb);
                for (int64_t i = 0; i < n * c; i++) CHECK(Xb[i] == llmq_f32_to_bf16(X[i]));
                llmq_matmul_bf16(k & 1 ? pool : NULL, &m.W, Xb, n, Y);
                llmq_ktable_ref.matmul_bf16(&m.W, 0, rows, Xb, n, Yr, rows);
                for (int64_t t = 0; t < n; t++)
                    for (int64_t r = 0; r < rows; r++) {
                        double a = 0;
                        for (int64_t j = 0; j < c; j++)
                            a += fabs((double)llmq_bf16_to_f32(((const uint16_t *)m.W.data)[r * c + j]) *
                                      (double)llmq_bf16_to_f32(Xb[t * c + j]));
                        double tol = (double)(c + 2) * 0x1p-24 * a + TOL_FLOOR;
                        CHECK_MSG(fabs((double)Y[t * rows + r] - (double)Yr[t * rows + r]) <= tol,
                                  "isa %s cols %" PRId64 " n %" PRId64 " token %" PRId64 " row %" PRId64,
                                  llmq_isa_name(llmq_cpu_isa()), c, n, t, r);
                    }
                if (kt->matmul_bf16) {   /* the slot: rows [3, 30) at a wider stride, each (row, token) the
                                          * value llmq_matmul_bf16 gave bit for bit, nothing between */
                    int64_t r0 = 3, r1 = 30, ldy = r1 - r0 + 4;
                    float *Z = malloc((size_t)(n * ldy) * 4);
                    memset(Z, 0x7f, (size_t)(n * ldy) * 4);
                    kt->matmul_bf16(&m.W, r0, r1, Xb, n, Z, ldy);
                    for (int64_t t = 0; t < n; t++) {
                        CHECK(!memcmp(Z + t * ldy, Y + t * rows + r0, (size_t)(r1 - r0) * 4));
                        for (int64_t i = r1 - r0; i < ldy; i++) CHECK(((const uint32_t *)Z)[t * ldy + i] == 0x7f7f7f7fu);
                    }
                    free(Z);
                }
                free(X); free(Y); free(Yr); free(Xb); tmat_free(&m);
            }
    }
    llmq_cpu_set_isa(saved);
    llmq_pool_free(pool);
}

/* llmq_round_bf16 (vectorized) gives llmq_f32_to_bf16's bits for the
 * special values and the rounding ties too, at every position of a run. */
TEST(round_bf16_specials)
{
    static const uint32_t v[] = { 0x7fc00000u, 0xffc00001u, 0x7f800001u, 0x7f800000u, 0xff800000u, 0x00000000u,
                                  0x80000000u, 0x00000001u, 0x807fffffu, 0x7f7fffffu, 0x3f808000u, 0x3f818000u,
                                  0x3f807fffu, 0x3f808001u, 0x7f7f8000u, 0xc0490fdbu };
    enum { N = 16 * 37 };
    float x[N];
    uint16_t b[N];
    for (int i = 0; i < N; i++) memcpy(&x[i], &v[(i * 7) % 16], 4);
    for (int off = 0; off < 3; off++) {
        llmq_round_bf16(x + off, N - off, b);
        for (int i = 0; i < N - off; i++) CHECK_MSG(b[i] == llmq_f32_to_bf16(x[off + i]), "value %08x", v[((off + i) * 7) % 16]);
    }
}

/* llmq_gemm_bf16_pairs against the oracle (exact products summed in
 * double), every ISA: row counts around the kernel's blocks of four,
 * column counts around its blocks of 16 and 64, k from one pair up; C's
 * stride wider than m, nothing written between; the pair layout itself. */
TEST(bf16_pairs_gemm_vs_oracle)
{
    llmq_isa saved = llmq_cpu_isa();
    static const int64_t ns[] = { 1, 3, 4, 7, 64 }, ms[] = { 1, 15, 16, 17, 64, 70, 128 }, ks[] = { 2, 32, 128 };
    for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
        if (!isa_ok((llmq_isa)isa)) continue;
        llmq_cpu_set_isa((llmq_isa)isa);
        for (size_t a = 0; a < LLMQ_ARRAY_LEN(ns); a++)
            for (size_t b = 0; b < LLMQ_ARRAY_LEN(ms); b++)
                for (size_t c = 0; c < LLMQ_ARRAY_LEN(ks); c++) {
                    int64_t n = ns[a], m = ms[b], k = ks[c], ldc = m + 5;
                    float *Af = rand_vec(n * k, 2.0f), *Bf = rand_vec(m * k, 1.0f);
                    uint16_t *A = malloc((size_t)(n * k) * 2), *B = malloc((size_t)(m * k) * 2);
                    uint16_t *Bp = malloc((size_t)llmq_bf16_pairs_size(m, k) * 2);
                    float *C = malloc((size_t)(n * ldc) * 4);
                    llmq_round_bf16(Af, n * k, A);
                    llmq_round_bf16(Bf, m * k, B);
                    llmq_bf16_pack_pairs(B, m, k, Bp);
                    for (int64_t j = 0; j < m; j++)
                        for (int64_t e = 0; e < k; e++)
                            CHECK(Bp[((j / 16) * (k / 2) + e / 2) * 32 + 2 * (j % 16) + e % 2] == B[j * k + e]);
                    memset(C, 0x7f, (size_t)(n * ldc) * 4);
                    llmq_gemm_bf16_pairs(A, n, Bp, m, k, C, ldc);
                    for (int64_t i = 0; i < n; i++) {
                        for (int64_t j = 0; j < m; j++) {
                            double want = 0, mag = 0;
                            for (int64_t e = 0; e < k; e++) {
                                double p = (double)llmq_bf16_to_f32(A[i * k + e]) * (double)llmq_bf16_to_f32(B[j * k + e]);
                                want += p;
                                mag += fabs(p);
                            }
                            double tol = (double)(k + 2) * 0x1p-24 * mag + TOL_FLOOR;
                            CHECK_MSG(fabs((double)C[i * ldc + j] - want) <= tol, "isa %s n %" PRId64 " m %" PRId64 " k %" PRId64,
                                      llmq_isa_name(llmq_cpu_isa()), n, m, k);
                        }
                        for (int64_t j = m; j < ldc; j++) CHECK(((const uint32_t *)C)[i * ldc + j] == 0x7f7f7f7fu);
                    }
                    free(Af); free(Bf); free(A); free(B); free(Bp); free(C);
                }
    }
    llmq_cpu_set_isa(saved);
}

/* ---- W4A8 ---- */

/* int8 activation codes of n tokens x cols by mode: random, all zero,
 * +-127 extremes, or random with some whole blocks zero. */
enum { A_RANDOM, A_ZERO, A_EXTREME, A_SPARSE, A_COUNT };
static void act_codes(int8_t *q, int64_t n, int mode)
{
    for (int64_t i = 0; i < n; i++) {
        int v = (int)(rnd() % 255) - 127;
        if (mode == A_ZERO) v = 0;
        else if (mode == A_EXTREME) v = (rnd() & 1) ? 127 : -127;
        else if (mode == A_SPARSE && (i / 32) % 3 == 1) v = 0;
        q[i] = (int8_t)v;
    }
}

/* The tables' matmul_a8 itself: rows [r0, r1) written at y[t * ldy + r - r0]
 * with ldy wider than the rows, each value the same table's matvec_a8 bit
 * for bit (and so the oracle's: a8_exact), nothing written between the
 * rows; token counts around the kernels' blocks of four, column counts
 * around the 64-byte vectors. */
TEST(a8_matmul_kernel_rows)
{
    llmq_isa saved = llmq_cpu_isa();
    static const int64_t ns[] = { 1, 2, 3, 4, 5, 8, 11, 17 }, cols[] = { 7, 64, 100, 448 };
    for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
        if (!isa_ok((llmq_isa)isa)) continue;
        llmq_cpu_set_isa((llmq_isa)isa);
        const llmq_ktable *kt = llmq_ktable_cur();
        for (size_t ci = 0; ci < LLMQ_ARRAY_LEN(cols); ci++)
            for (size_t k = 0; k < LLMQ_ARRAY_LEN(ns); k++) {
                int64_t rows = 23, r0 = 2, r1 = 21, c = cols[ci], n = ns[k], ldy = r1 - r0 + 3;
                tmat m = make_mat(LLMQ_W_Q8, rows, c, 0, 0, (int)(k % M_COUNT));
                int8_t *Xq = malloc((size_t)(n * c));
                float *xs = malloc((size_t)n * 4), *Y = malloc((size_t)(n * ldy) * 4), *y = malloc((size_t)rows * 4);
                int32_t *xsum = malloc((size_t)n * 4);
                act_codes(Xq, n * c, (int)(k + ci) % A_COUNT);
                for (int64_t t = 0; t < n; t++) {
                    xs[t] = (float)(rnd() % 1000 + 1) / 1000.0f;
                    xsum[t] = 0;
                    for (int64_t j = 0; j < c; j++) xsum[t] += Xq[t * c + j];
                }
                memset(Y, 0x7f, (size_t)(n * ldy) * 4);
                kt->matmul_a8(&m.W, r0, r1, Xq, xs, xsum, n, Y, ldy);
                for (int64_t t = 0; t < n; t++) {
                    kt->matvec_a8(&m.W, r0, r1, Xq + t * c, xs[t], xsum[t], y);
                    CHECK_MSG(!memcmp(y, Y + t * ldy, (size_t)(r1 - r0) * 4), "isa %s cols %" PRId64 " n %" PRId64
                              " token %" PRId64, llmq_isa_name(llmq_cpu_isa()), c, n, t);
                    for (int64_t i = r1 - r0; i < ldy; i++) CHECK(((const uint32_t *)Y)[t * ldy + i] == 0x7f7f7f7fu);
                }
                free(Xq); free(xs); free(Y); free(y); free(xsum); tmat_free(&m);
            }
    }
    llmq_cpu_set_isa(saved);
}

/* The oracle's block sums, independently: sum_j W[r][j] * (xq[j] * xs[j/32])
 * from the oracle's dequantized weights, in double.  Exact when every
 * scale is a power of two and the sums are small (q4a8_exact). */
static double q4a8_direct(const llmq_wmat *W, int64_t r, const int8_t *xq, const float *xs)
{
    float *row = malloc((size_t)W->cols * sizeof *row);
    llmq_ktable_ref.dequant[W->type](W, r, r + 1, row);
    double s = 0;
    for (int64_t j = 0; j < W->cols; j++) s += (double)row[j] * ((double)xq[j] * xs[j / 32]);
    free(row);
    return s;
}

/* sum over blocks of |scale * xscale| * sum_j |q_j - z| |xq_j|: the scale
 * of every term the W4A8 kernels add, what float rounding is relative to */
static double q4a8_abs(const llmq_wmat *W, int64_t r, const int8_t *xq, const float *xs)
{
    const uint8_t *row = (const uint8_t *)W->data + r * (W->cols / 2);
    int64_t ng = W->cols / W->group;
    double t = 0;
    for (int64_t b = 0; b < W->cols / 32; b++) {
        int64_t g = r * ng + b * 32 / W->group, a = 0;
        int z = W->zeros ? W->zeros[g] : LLMQ_Q4_ZERO_SYM;
        for (int64_t j = b * 32; j < (b + 1) * 32; j++) {
            int q = (j & 1) ? row[j / 2] >> 4 : row[j / 2] & 15;
            a += (int64_t)abs(q - z) * abs(xq[j]);
        }
        t += (double)a * fabs((double)llmq_f16_to_f32(((const uint16_t *)W->scales)[g]) * xs[b]);
    }
    return t;
}

static const int64_t Q4A8_COLS[] = { 128, 256, 384, 1152 };
static const int64_t Q4A8_COLS_ODD[] = { 32, 64, 96, 160, 224, 480 };   /* groups that fit */

/* Power-of-two scales (weights 1/2, 1, 2; activations 1/2, 1, 2) and sums
 * below 2^22 make every product and every float sum exact: each ISA must
 * give the oracle's result bit for bit, and the oracle the direct sum. */
TEST(q4a8_exact)
{
    llmq_isa saved = llmq_cpu_isa();
    static const float p2[] = { 0.5f, 1.0f, 2.0f };
    static const int64_t cols[] = { 32, 64, 96, 128, 160, 256, 384, 512 };
    for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
        if (!isa_ok((llmq_isa)isa)) continue;
        llmq_cpu_set_isa((llmq_isa)isa);
        for (int G = 32; G <= 128; G *= 2)
            for (size_t ci = 0; ci < LLMQ_ARRAY_LEN(cols); ci++)
                for (int sym = 0; sym < 2; sym++)
                    for (int mode = 0; mode < M_COUNT; mode++)
                        for (int am = 0; am < A_COUNT; am++) {
                            int64_t c = cols[ci], rows = (int64_t)(rnd() % 2 ? 5 : 8), nb = c / 32;
                            if (c % G) continue;
                            tmat m = make_mat(LLMQ_W_Q4, rows, c, G, sym, mode);
                            uint16_t *sc = m.scales;
                            for (int64_t g = 0; g < rows * (c / G); g++)
                                sc[g] = llmq_f32_to_f16(mode == M_ZERO ? 0.0f : p2[rnd() % 3]);
                            int8_t *xq = malloc((size_t)c);
                            float *xs = malloc((size_t)nb * 4), *y = malloc((size_t)rows * 4), *yr = malloc((size_t)rows * 4);
                            act_codes(xq, c, am);
                            for (int64_t b = 0; b < nb; b++) xs[b] = p2[rnd() % 3];
                            llmq_q4a8_x x = { xq, xs, NULL };
                            llmq_ktable_ref.matvec_q4a8(&m.W, 0, rows, &x, yr);
                            llmq_matvec_q4a8(NULL, &m.W, xq, xs, y);
                            for (int64_t r = 0; r < rows; r++) {
                                CHECK_MSG(y[r] == yr[r], "isa %s g%d cols %" PRId64 " sym %d mode %d act %d row %" PRId64
                                          ": %.9g vs %.9g", llmq_isa_name(llmq_cpu_isa()), G, c, sym, mode, am, r, y[r], yr[r]);
                                CHECK((double)yr[r] == q4a8_direct(&m.W, r, xq, xs));
                            }
                            free(xq); free(xs); free(y); free(yr); tmat_free(&m);
                        }
    }
    llmq_cpu_set_isa(saved);
}

/* Random and adversarial rows (codes all 0 / all 15, zero points 0 and 15,
 * symmetric, codes at the zero point, f16-max scales) with activations
 * quantized from floats: |y - y_ref| <= (cols / 32 + 20) * 2^-24 * T, T =
 * q4a8_abs: every lane product rounds once (2^-24 T in all) and each of the
 * at most cols / 64 + 16 float additions on a lane's way into y rounds
 * relative to a partial sum bounded by T.  Codes at the zero point must
 * give exactly 0 (the zero point is subtracted in integers). */
TEST(q4a8_vs_oracle)
{
    llmq_isa saved = llmq_cpu_isa();
    for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
        if (!isa_ok((llmq_isa)isa)) continue;
        llmq_cpu_set_isa((llmq_isa)isa);
        for (int G = 32; G <= 128; G *= 2)
            for (int sym = 0; sym < 2; sym++)
                for (size_t ri = 0; ri < LLMQ_ARRAY_LEN(ROWS); ri++)
                    for (size_t ci = 0; ci < LLMQ_ARRAY_LEN(Q4A8_COLS) + LLMQ_ARRAY_LEN(Q4A8_COLS_ODD); ci++)
                        for (int mode = 0; mode < M_COUNT; mode++) {
                            int64_t c = ci < LLMQ_ARRAY_LEN(Q4A8_COLS) ? Q4A8_COLS[ci]
                                      : Q4A8_COLS_ODD[ci - LLMQ_ARRAY_LEN(Q4A8_COLS)];
                            int64_t rows = ROWS[ri], nb = c / 32;
                            if (c % G) continue;
                            int am = (int)(rnd() % A_COUNT);
                            tmat m = make_mat(LLMQ_W_Q4, rows, c, G, sym, mode);
                            float *xf = rand_vec(c, mode == M_MAX ? 1e3f : 1.0f);
                            if (am == A_ZERO) memset(xf, 0, (size_t)c * 4);
                            if (am == A_EXTREME) for (int64_t j = 0; j < c; j++) xf[j] = (j & 1) ? 2.5f : -2.5f;
                            if (am == A_SPARSE) for (int64_t j = 0; j < c; j++) if ((j / 32) % 3 == 1) xf[j] = 0.0f;
                            int8_t *xq = malloc((size_t)c);
                            float *xs = malloc((size_t)nb * 4), *y = malloc((size_t)rows * 4), *yr = malloc((size_t)rows * 4);
                            llmq_quantize_act_blocks(xf, c, xq, xs);
                            llmq_q4a8_x x = { xq, xs, NULL };
                            llmq_ktable_ref.matvec_q4a8(&m.W, 0, rows, &x, yr);
                            llmq_matvec_q4a8(NULL, &m.W, xq, xs, y);
                            for (int64_t r = 0; r < rows; r++) {
                                double tol = (double)(c / 32 + 20) * 0x1p-24 * q4a8_abs(&m.W, r, xq, xs) + TOL_FLOOR;
                                CHECK_MSG(fabs((double)y[r] - yr[r]) <= tol, "isa %s g%d sym %d %" PRId64 "x%" PRId64
                                          " mode %d act %d row %" PRId64 ": %.9g vs %.9g (tol %g)",
                                          llmq_isa_name(llmq_cpu_isa()), G, sym, rows, c, mode, am, r, y[r], yr[r], tol);
                                if (mode == M_FLAT || mode == M_ZERO || am == A_ZERO) CHECK(y[r] == 0.0f);
                            }
                            free(xf); free(xq); free(xs); free(y); free(yr); tmat_free(&m);
                        }
    }
    llmq_cpu_set_isa(saved);
}

/* Prefill: llmq_matmul_q4a8 over n tokens, threaded or not, equals n
 * single-token products bit for bit (each row's sum is computed the same
 * way whatever the tiling), and those the oracle within the tolerance above. */
TEST(q4a8_matmul_threaded)
{
    llmq_err err;
    llmq_pool *pool = llmq_pool_new(3, &err);
    CHECK(pool != NULL);
    llmq_isa saved = llmq_cpu_isa();
    static const int64_t ns[] = { 1, 2, 5, 37 };
    for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
        if (!isa_ok((llmq_isa)isa)) continue;
        llmq_cpu_set_isa((llmq_isa)isa);
        for (size_t k = 0; k < LLMQ_ARRAY_LEN(ns); k++)
            for (int G = 32; G <= 128; G *= 2) {
                int64_t rows = 301, c = G == 64 ? 1472 : 1152, n = ns[k], nb = c / 32;  /* 1472: a partial chunk */
                tmat m = make_mat(LLMQ_W_Q4, rows, c, G, G == 64, M_RANDOM);
                float *X = rand_vec(n * c, 2.0f), *xs = malloc((size_t)(n * nb) * 4);
                int8_t *Xq = malloc((size_t)(n * c));
                llmq_quantize_act_blocks(X, n * c, Xq, xs);
                float *Y = malloc((size_t)(n * rows) * 4), *y = malloc((size_t)rows * 4), *yr = malloc((size_t)rows * 4);
                llmq_matmul_q4a8(pool, &m.W, Xq, xs, n, Y);
                for (int64_t t = 0; t < n; t++) {
                    llmq_matvec_q4a8(t & 1 ? pool : NULL, &m.W, Xq + t * c, xs + t * nb, y);
                    CHECK_MSG(!memcmp(y, Y + t * rows, (size_t)rows * 4), "isa %s g%d n %" PRId64 " token %" PRId64,
                              llmq_isa_name(llmq_cpu_isa()), G, n, t);
                    llmq_q4a8_x x = { Xq + t * c, xs + t * nb, NULL };
                    llmq_ktable_ref.matvec_q4a8(&m.W, 0, rows, &x, yr);
                    for (int64_t r = 0; r < rows; r++) {
                        double tol = (double)(c / 32 + 20) * 0x1p-24 * q4a8_abs(&m.W, r, Xq + t * c, xs + t * nb);
                        if (!(fabs((double)y[r] - yr[r]) <= tol)) {
                            CHECK_MSG(0, "row %" PRId64 ": %.9g vs %.9g", r, y[r], yr[r]);
                            break;
                        }
                    }
                }
                free(X); free(xs); free(Xq); free(Y); free(y); free(yr); tmat_free(&m);
            }
    }
    llmq_cpu_set_isa(saved);
    llmq_pool_free(pool);
}

/* The runner's layout of rows in tiles of four (wmat.h's ilv,
 * llmq_model_interleave): every kernel reading it gives what it gives on
 * the plain rows, bit for bit, on every ISA and every type that takes it
 * (bf16, f16, int8, int4, MXINT8 and the block formats) - matvec with fp32 activations
 * and the integer ones of the type (W8A8, W4A8), bf16 products, prefill
 * (fp32 tiles + sgemm), and dequantized rows from any row on (embedding
 * lookups take one row). */
static int same_floats(const float *a, const float *b, int64_t n) { return !memcmp(a, b, (size_t)n * 4); }

static void check_interleaved(llmq_pool *pool, llmq_wtype t, int G, int64_t rows, int64_t c, int sym, int mode)
{
    llmq_err err;
    const int64_t n = 5, nb = c / 32;
    tmat m = make_mat(t, rows, c, G, sym, mode);
    CHECK(llmq_wmat_interleavable(&m.W));
    const int64_t bytes = rows * llmq_wmat_row_bytes(&m.W);
    uint8_t *d = malloc((size_t)bytes);
    llmq_wmat_interleave(&m.W, d);
    llmq_wmat Wi = m.W;
    Wi.data = d;
    Wi.ilv = LLMQ_ILV_ROWS;
    CHECK(llmq_wmat_check(&Wi, "wi", &err) == LLMQ_OK);
    CHECK(!llmq_wmat_interleavable(&Wi));
    if (llmq_wmat_row_bytes(&m.W) > 64 && mode == M_RANDOM)   /* one-line rows lie as they did */
        CHECK(memcmp(d, m.W.data, (size_t)bytes) != 0);
    float *X = rand_vec(n * c, 2.0f), *xs = malloc((size_t)(n * nb) * 4);
    int8_t *Xq = malloc((size_t)(n * c));
    float *a = malloc((size_t)(n * rows * c) * 4), *b = malloc((size_t)(n * rows * c) * 4);
    const char *in = llmq_isa_name(llmq_cpu_isa()), *tn = tname(t);
    llmq_matvec(pool, &m.W, X, a);
    llmq_matvec(pool, &Wi, X, b);
    CHECK_MSG(same_floats(a, b, rows), "%s matvec isa %s g%d %" PRId64 "x%" PRId64, tn, in, G, rows, c);
    llmq_matmul(pool, &m.W, X, n, a);
    llmq_matmul(pool, &Wi, X, n, b);
    CHECK_MSG(same_floats(a, b, n * rows), "%s matmul isa %s g%d %" PRId64 "x%" PRId64, tn, in, G, rows, c);
    if (t == LLMQ_W_Q4) {
        llmq_quantize_act_blocks(X, n * c, Xq, xs);
        llmq_matvec_q4a8(pool, &m.W, Xq, xs, a);
        llmq_matvec_q4a8(pool, &Wi, Xq, xs, b);
        CHECK_MSG(same_floats(a, b, rows), "q4a8 matvec isa %s g%d %" PRId64 "x%" PRId64, in, G, rows, c);
        llmq_matmul_q4a8(pool, &m.W, Xq, xs, n, a);
        llmq_matmul_q4a8(pool, &Wi, Xq, xs, n, b);
        CHECK_MSG(same_floats(a, b, n * rows), "q4a8 matmul isa %s g%d %" PRId64 "x%" PRId64, in, G, rows, c);
    }
    if (t == LLMQ_W_Q8) {
        for (int64_t k = 0; k < n; k++) llmq_quantize_act_i8(X + k * c, c, Xq + k * c, &xs[k]);
        llmq_matvec_a8(pool, &m.W, Xq, xs[0], a);
        llmq_matvec_a8(pool, &Wi, Xq, xs[0], b);
        CHECK_MSG(same_floats(a, b, rows), "a8 matvec isa %s %" PRId64 "x%" PRId64, in, rows, c);
        llmq_matmul_a8(pool, &m.W, Xq, xs, n, a);
        llmq_matmul_a8(pool, &Wi, Xq, xs, n, b);
        CHECK_MSG(same_floats(a, b, n * rows), "a8 matmul isa %s %" PRId64 "x%" PRId64, in, rows, c);
    }
    if (t == LLMQ_W_BF16) {
        uint16_t *Xb = malloc((size_t)(n * c) * 2);
        for (int64_t k = 0; k < n * c; k++) Xb[k] = llmq_f32_to_bf16(X[k]);
        llmq_matmul_bf16(pool, &m.W, Xb, n, a);
        llmq_matmul_bf16(pool, &Wi, Xb, n, b);
        CHECK_MSG(same_floats(a, b, n * rows), "bf16 matmul isa %s %" PRId64 "x%" PRId64, in, rows, c);
        free(Xb);
    }
    const llmq_ktable *kt = llmq_ktable_cur();
    for (int64_t r0 = 0; r0 < LLMQ_MIN(rows, 6); r0++) {
        kt->dequant[t](&m.W, r0, rows, a);
        kt->dequant[t](&Wi, r0, rows, b);
        CHECK_MSG(same_floats(a, b, (rows - r0) * c), "%s dequant isa %s from row %" PRId64, tn, in, r0);
        llmq_get_row(&Wi, r0, b);        /* the ISA's dequant, as on plain rows (E2M1's -0 may be +0 there) */
        kt->dequant[t](&m.W, r0, r0 + 1, a);
        CHECK_MSG(same_floats(a, b, c), "%s get_row isa %s row %" PRId64, tn, in, r0);
    }
    free(a); free(b); free(X); free(xs); free(Xq); free(d); tmat_free(&m);
}

TEST(interleaved_same_as_plain)
{
    llmq_err err;
    llmq_pool *pool = llmq_pool_new(3, &err);
    CHECK(pool != NULL);
    llmq_isa saved = llmq_cpu_isa();
    static const int64_t rows_[] = { 4, 8, 20, 300 }, cols_[] = { 128, 256, 384, 1152, 1408 };
    static const llmq_wtype types[] = { LLMQ_W_Q4, LLMQ_W_Q8, LLMQ_W_BF16, LLMQ_W_F16, LLMQ_W_MX8, LLMQ_W_MXFP4,
                                        LLMQ_W_MXINT4, LLMQ_W_NVFP4, LLMQ_W_NVINT4, LLMQ_W_MXFP8 };
    for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
        if (!isa_ok((llmq_isa)isa)) continue;
        llmq_cpu_set_isa((llmq_isa)isa);
        for (size_t ti = 0; ti < LLMQ_ARRAY_LEN(types); ti++)
            for (int G = 32; G <= 128; G *= 2) {
                if (types[ti] != LLMQ_W_Q4 && G != 128) continue;
                for (size_t ri = 0; ri < LLMQ_ARRAY_LEN(rows_); ri++)
                    for (size_t ci = 0; ci < LLMQ_ARRAY_LEN(cols_); ci++)
                        if (cols_[ci] % G == 0)
                            check_interleaved(pool, types[ti], types[ti] == LLMQ_W_Q4 ? G : 0, rows_[ri], cols_[ci],
                                              (int)(ri & 1), ci == 1 ? M_MAX : M_RANDOM);
            }
    }
    llmq_cpu_set_isa(saved);
    llmq_pool_free(pool);
}

/* Which matrices take the layout, and that a view claiming it otherwise is refused. */
TEST(interleave_shapes)
{
    llmq_err err;
    llmq_wmat W = { LLMQ_W_Q4, 8, 256, (void *)1, (void *)1, NULL, 32, 0, 0 };
    CHECK(llmq_wmat_interleavable(&W));
    W.rows = 6;
    CHECK(!llmq_wmat_interleavable(&W));           /* not whole tiles */
    W.ilv = LLMQ_ILV_ROWS;
    CHECK(llmq_wmat_check(&W, "w", &err) == LLMQ_EINTERNAL);
    W.rows = 8; W.cols = 96;                       /* 48-byte rows: not whole lines */
    W.ilv = 0;
    CHECK(!llmq_wmat_interleavable(&W));
    W.ilv = LLMQ_ILV_ROWS;
    CHECK(llmq_wmat_check(&W, "w", &err) == LLMQ_EINTERNAL);
    W.cols = 256; W.ilv = 2;                       /* only tiles of four */
    CHECK(llmq_wmat_check(&W, "w", &err) == LLMQ_EINTERNAL);
    llmq_wmat Q = { LLMQ_W_Q8, 8, 256, (void *)1, (void *)1, NULL, 0, 0, 0 };
    CHECK(llmq_wmat_interleavable(&Q));
    Q.cols = 100;                                  /* 100-byte rows */
    CHECK(!llmq_wmat_interleavable(&Q));
    llmq_wmat F = { LLMQ_W_F32, 8, 256, (void *)1, NULL, NULL, 0, 0, 0 };
    CHECK(!llmq_wmat_interleavable(&F));           /* sgemm reads f32 rows in place */
    F.ilv = LLMQ_ILV_ROWS;
    CHECK(llmq_wmat_check(&F, "f", &err) == LLMQ_EINTERNAL);
    llmq_wmat M = { LLMQ_W_Q3, 8, 256, (void *)1, (void *)1, NULL, 32, 0, 0 };
    CHECK(!llmq_wmat_interleavable(&M));           /* 12-byte chunks would cross lines */
    M.type = LLMQ_W_GQ4_0;
    CHECK(!llmq_wmat_interleavable(&M));           /* ggml's blocks: GGUF bytes as they lie */
    llmq_wmat B = { LLMQ_W_BF16, 4, 32, (void *)1, NULL, NULL, 0, 0, 0 };
    CHECK(llmq_wmat_interleavable(&B));            /* 64-byte rows */
    B.cols = 48;
    CHECK(!llmq_wmat_interleavable(&B));
}

/* The W4A8 layout of sixteen-row tiles (wmat.h's LLMQ_ILV_LANES,
 * llmq_wmat_interleave_lanes): on every ISA, W4A8 decode on it equals the
 * oracle on the plain rows within q4a8_vs_oracle's tolerance (exactly 0
 * where the codes sit at the zero point or the scales are 0), prefill of n
 * tokens, threaded, equals n decodes bit for bit, and where the ISA's
 * table has no such kernel it is the oracle's bit for bit; every other
 * product of the layout (fp32 activations, prefill, a row) is the
 * oracle's on the plain rows, bit for bit. */
static void check_lanes(llmq_pool *pool, int G, int64_t rows, int64_t c, int sym, int mode)
{
    llmq_err err;
    static const int64_t ns[] = { 1, 2, 5, 6, 7, 13, 16, 17, 40 };
    const int64_t nmax = 40, nb = c / 32;
    tmat m = make_mat(LLMQ_W_Q4, rows, c, G, sym, mode);
    CHECK(llmq_wmat_lanes_ok(&m.W));
    uint8_t *d = malloc((size_t)llmq_wmat_lanes_bytes(&m.W));
    llmq_wmat Wl = m.W;
    llmq_wmat_interleave_lanes(&Wl, d);
    CHECK(Wl.ilv == LLMQ_ILV_LANES && Wl.data == d && Wl.scales == m.W.scales && !Wl.lzeros == !m.W.zeros);
    CHECK(llmq_wmat_check(&Wl, "wl", &err) == LLMQ_OK);
    CHECK(!llmq_wmat_lanes_ok(&Wl) && !llmq_wmat_interleavable(&Wl));
    for (int64_t r = 0; r < rows; r++)   /* every byte where row_byte says */
        for (int64_t o = 0; o < c / 2; o++)
            if (*llmq_wmat_row_byte(&Wl, r, c / 2, o) != ((const uint8_t *)m.W.data)[r * (c / 2) + o]) {
                CHECK_MSG(0, "row %" PRId64 " byte %" PRId64 " misplaced", r, o);
                r = rows;
                break;
            }
    float *X = rand_vec(nmax * c, mode == M_MAX ? 1e3f : 1.0f), *xs = malloc((size_t)(nmax * nb) * 4);
    int8_t *Xq = malloc((size_t)(nmax * c));
    const size_t fl = (size_t)LLMQ_MAX(nmax * rows, c) * 4;
    float *a = malloc(fl), *b = malloc(fl), *one = malloc(fl);
    const char *in = llmq_isa_name(llmq_cpu_isa());
    if (mode == M_RANDOM && rows >= 16) for (int64_t j = 0; j < c; j++) X[j] = 0.0f;   /* a token of zeros */
    llmq_quantize_act_blocks(X, nmax * c, Xq, xs);
    for (int64_t t = 0; t < nmax; t++) {
        llmq_q4a8_x x = { Xq + t * c, xs + t * nb, NULL, NULL };
        llmq_ktable_ref.matvec_q4a8(&m.W, 0, rows, &x, a + t * rows);
        llmq_matvec_q4a8(t % 2 ? pool : NULL, &Wl, Xq + t * c, xs + t * nb, one + t * rows);
    }
    int bad = 0;
    for (int64_t t = 0; t < nmax && !bad; t++)
        for (int64_t r = 0; r < rows; r++) {
            double tol = (double)(c / 32 + 20) * 0x1p-24 * q4a8_abs(&m.W, r, Xq + t * c, xs + t * nb) + TOL_FLOOR;
            double e = fabs((double)one[t * rows + r] - a[t * rows + r]);
            int zero = mode == M_FLAT || mode == M_ZERO;
            if (e > tol || (zero && one[t * rows + r] != 0.0f) || (!llmq_q4a8_lanes() && e != 0.0)) {
                CHECK_MSG(0, "lanes isa %s g%d sym %d %" PRId64 "x%" PRId64 " mode %d token %" PRId64 " row %" PRId64
                          ": %.9g vs %.9g (tol %g)", in, G, sym, rows, c, mode, t, r, one[t * rows + r], a[t * rows + r], tol);
                bad = 1;
                break;
            }
        }
    for (size_t k = 0; k < LLMQ_ARRAY_LEN(ns); k++) {
        llmq_matmul_q4a8(k % 2 ? pool : NULL, &Wl, Xq, xs, ns[k], b);
        CHECK_MSG(same_floats(one, b, ns[k] * rows), "lanes prefill isa %s g%d sym %d %" PRId64 "x%" PRId64 " n %" PRId64,
                  in, G, sym, rows, c, ns[k]);
    }
    /* the rest: the oracle's */
    llmq_matvec(pool, &Wl, X, b);
    llmq_ktable_ref.matvec[LLMQ_W_Q4](&m.W, 0, rows, X, a);
    CHECK_MSG(same_floats(a, b, rows), "lanes fp32 matvec isa %s g%d", in, G);
    llmq_matmul(pool, &Wl, X, 5, b);
    llmq_matmul(pool, &m.W, X, 5, a);
    for (int64_t t = 0; t < 5; t++) {
        llmq_ktable_ref.matvec[LLMQ_W_Q4](&m.W, 0, rows, X + t * c, a);
        if (!same_floats(a, b + t * rows, rows)) {
            /* prefill of 5 tokens is dequantized tiles + sgemm on both layouts */
            float *p = malloc((size_t)(5 * rows) * 4);
            llmq_isa s = llmq_cpu_isa();
            llmq_cpu_set_isa(LLMQ_ISA_SCALAR);
            llmq_matmul(pool, &m.W, X, 5, p);
            llmq_cpu_set_isa(s);
            CHECK_MSG(same_floats(p, b, 5 * rows), "lanes fp32 matmul isa %s g%d", in, G);
            free(p);
            break;
        }
    }
    for (int64_t r = 0; r < LLMQ_MIN(rows, 3); r++) {
        llmq_get_row(&Wl, r, b);
        llmq_ktable_ref.dequant[LLMQ_W_Q4](&m.W, r, r + 1, a);
        CHECK_MSG(same_floats(a, b, c), "lanes get_row isa %s row %" PRId64, in, r);
    }
    free(a); free(b); free(one); free(X); free(xs); free(Xq); free(d); tmat_free(&m);
}

TEST(q4a8_lanes)
{
    llmq_err err;
    llmq_pool *pool = llmq_pool_new(3, &err);
    CHECK(pool != NULL);
    llmq_isa saved = llmq_cpu_isa();
    static const int64_t rows_[] = { 16, 48, 320 }, cols_[] = { 32, 96, 128, 160, 384, 1152, 2048 };
    for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
        if (!isa_ok((llmq_isa)isa)) continue;
        llmq_cpu_set_isa((llmq_isa)isa);
        for (int G = 32; G <= 128; G *= 2)
            for (size_t ri = 0; ri < LLMQ_ARRAY_LEN(rows_); ri++)
                for (size_t ci = 0; ci < LLMQ_ARRAY_LEN(cols_); ci++)
                    if (cols_[ci] % G == 0)
                        check_lanes(pool, G, rows_[ri], cols_[ci], (int)((ri + ci) & 1), (int)((ri + ci + G / 32) % M_COUNT));
    }
    llmq_cpu_set_isa(saved);
    llmq_pool_free(pool);
    /* which matrices take the layout; a view that claims it otherwise is refused */
    uint16_t sc[64] = { 0 };
    llmq_wmat W = { .type = LLMQ_W_Q4, .rows = 16, .cols = 256, .data = (void *)1, .scales = sc, .group = 128 };
    CHECK(llmq_wmat_lanes_ok(&W));
    W.rows = 24;
    CHECK(!llmq_wmat_lanes_ok(&W));                /* not whole tiles of sixteen */
    W.ilv = LLMQ_ILV_LANES; W.lscales = sc;
    CHECK(llmq_wmat_check(&W, "w", &err) == LLMQ_EINTERNAL);
    W.rows = 16;
    CHECK(llmq_wmat_check(&W, "w", &err) == LLMQ_OK);
    W.lscales = NULL;                              /* no tile scales */
    CHECK(llmq_wmat_check(&W, "w", &err) == LLMQ_EINTERNAL);
    W.lscales = sc; W.zeros = (const uint8_t *)sc; /* zero points without tile zero points */
    CHECK(llmq_wmat_check(&W, "w", &err) == LLMQ_EINTERNAL);
    llmq_wmat Q = { .type = LLMQ_W_Q8, .rows = 16, .cols = 256, .data = (void *)1, .scales = sc };
    CHECK(!llmq_wmat_lanes_ok(&Q));                /* int4 only */
    Q.type = LLMQ_W_Q4; Q.group = 128; Q.ilv = LLMQ_ILV_ROWS;
    CHECK(!llmq_wmat_lanes_ok(&Q));                /* plain rows only */
}

/* Prefill tiles and their tails: llmq_matmul_q4a8 on n tokens equals n
 * single-token products bit for bit, for every group size, symmetric or
 * not, rows not a multiple of the row tile, token counts around the token
 * tiles and the 16-token batches, and columns that end in a partial chunk
 * (cols % 128 == 32, 64, 96); those products equal the oracle within the
 * tolerance of q4a8_vs_oracle, and exactly on power-of-two scales (as in
 * q4a8_exact).  Every weight mode; activation modes and row counts rotate. */
TEST(q4a8_matmul_tails)
{
    static const float p2[] = { 0.5f, 1.0f, 2.0f };
    static const int64_t cols[] = { 32, 64, 96, 128, 160, 192, 224, 320, 384, 480, 1152 };
    static const int64_t rows_[] = { 1, 3, 5, 8, 17 };
    static const int64_t ns[] = { 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 23 };
    llmq_isa saved = llmq_cpu_isa();
    int cases = 0;
    for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
        if (!isa_ok((llmq_isa)isa)) continue;
        llmq_cpu_set_isa((llmq_isa)isa);
        for (int G = 32; G <= 128; G *= 2)
            for (int sym = 0; sym < 2; sym++)
                for (size_t ci = 0; ci < LLMQ_ARRAY_LEN(cols); ci++)
                    for (size_t k = 0; k < LLMQ_ARRAY_LEN(ns); k++)
                        for (int mode = 0; mode < M_COUNT; mode++) {
                            int64_t c = cols[ci], n = ns[k], nb = c / 32, rows = rows_[(ci + k + (size_t)mode) % LLMQ_ARRAY_LEN(rows_)];
                            if (c % G) continue;
                            int am = (int)((ci + 2 * k + (size_t)mode) % A_COUNT);
                            /* power-of-two scales, sums below 2^22 (as q4a8_exact): no rounding anywhere */
                            int exact = c <= 512 && (k + ci + (size_t)mode) % 3 == 0;
                            tmat m = make_mat(LLMQ_W_Q4, rows, c, G, sym, mode);
                            if (exact) {
                                uint16_t *sc = m.scales;
                                for (int64_t g = 0; g < rows * (c / G); g++)
                                    sc[g] = llmq_f32_to_f16(mode == M_ZERO ? 0.0f : p2[rnd() % 3]);
                            }
                            int8_t *Xq = malloc((size_t)(n * c));
                            float *xs = malloc((size_t)(n * nb) * 4), *Y = malloc((size_t)(n * rows) * 4);
                            float *y = malloc((size_t)rows * 4), *yr = malloc((size_t)rows * 4);
                            act_codes(Xq, n * c, am);
                            for (int64_t b = 0; b < n * nb; b++) xs[b] = exact ? p2[rnd() % 3] : (float)(rnd() % 1000 + 1) / 1000.0f;
                            llmq_matmul_q4a8(NULL, &m.W, Xq, xs, n, Y);
                            int bad = 0;
                            for (int64_t t = 0; t < n && !bad; t++) {
                                const int8_t *xq = Xq + t * c;
                                const float *xst = xs + t * nb;
                                llmq_matvec_q4a8(NULL, &m.W, xq, xst, y);
                                llmq_q4a8_x x = { xq, xst, NULL };
                                llmq_ktable_ref.matvec_q4a8(&m.W, 0, rows, &x, yr);
                                for (int64_t r = 0; r < rows && !bad; r++) {
                                    float got = Y[t * rows + r];
                                    double tol = exact ? 0.0 : (double)(c / 32 + 20) * 0x1p-24 * q4a8_abs(&m.W, r, xq, xst) + TOL_FLOOR;
                                    if (memcmp(&got, &y[r], 4) || !(fabs((double)got - yr[r]) <= tol) ||
                                        ((mode == M_FLAT || mode == M_ZERO || am == A_ZERO) && got != 0.0f)) {
                                        CHECK_MSG(0, "isa %s g%d sym %d %" PRId64 "x%" PRId64 " n %" PRId64 " mode %d act %d"
                                                  " token %" PRId64 " row %" PRId64 ": %.9g, decode %.9g, oracle %.9g (tol %g)",
                                                  llmq_isa_name(llmq_cpu_isa()), G, sym, rows, c, n, mode, am, t, r,
                                                  got, y[r], yr[r], tol);
                                        bad = 1;
                                    }
                                }
                            }
                            cases++;
                            free(Xq); free(xs); free(Y); free(y); free(yr); tmat_free(&m);
                        }
    }
    llmq_cpu_set_isa(saved);
    CHECK(cases > 1000);
}

/* The tables' matmul_q4a8 itself: rows [r0, r1) of a matrix written at
 * y[t * ldy + r - r0] with ldy wider than the rows, each value the same
 * table's matvec_q4a8 bit for bit, and nothing written between the rows. */
TEST(q4a8_matmul_kernel_rows)
{
    llmq_isa saved = llmq_cpu_isa();
    static const int64_t ns[] = { 1, 2, 3, 5, 11, 17 };
    for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
        if (!isa_ok((llmq_isa)isa)) continue;
        llmq_cpu_set_isa((llmq_isa)isa);
        const llmq_ktable *kt = llmq_ktable_cur();
        for (int G = 32; G <= 128; G *= 2)
            for (size_t k = 0; k < LLMQ_ARRAY_LEN(ns); k++) {
                int64_t rows = 23, r0 = 3, r1 = 20, c = G == 32 ? 480 : 384, n = ns[k], nb = c / 32, nck = (c + 127) / 128;
                int64_t ldy = r1 - r0 + 5;
                tmat m = make_mat(LLMQ_W_Q4, rows, c, G, (int)(k & 1), M_RANDOM);
                int8_t *Xq = malloc((size_t)(n * c));
                float *xs = malloc((size_t)(n * nb) * 4), *Y = malloc((size_t)(n * ldy) * 4), *y = malloc((size_t)rows * 4);
                llmq_q4a8_chunk *ch = llmq_alloc_aligned((size_t)(n * nck) * sizeof *ch, NULL);
                llmq_q4a8_x *x = malloc((size_t)n * sizeof *x);
                act_codes(Xq, n * c, A_RANDOM);
                for (int64_t b = 0; b < n * nb; b++) xs[b] = (float)(rnd() % 1000 + 1) / 1000.0f;
                for (int64_t t = 0; t < n; t++) {
                    kt->q4a8_prep(Xq + t * c, xs + t * nb, c, ch + t * nck);
                    x[t] = (llmq_q4a8_x){ Xq + t * c, xs + t * nb, ch + t * nck };
                }
                memset(Y, 0x7f, (size_t)(n * ldy) * 4);
                kt->matmul_q4a8(&m.W, r0, r1, x, n, Y, ldy);
                for (int64_t t = 0; t < n; t++) {
                    kt->matvec_q4a8(&m.W, r0, r1, x + t, y);
                    CHECK_MSG(!memcmp(y, Y + t * ldy, (size_t)(r1 - r0) * 4), "isa %s g%d n %" PRId64 " token %" PRId64,
                              llmq_isa_name(llmq_cpu_isa()), G, n, t);
                    for (int64_t i = r1 - r0; i < ldy; i++) CHECK(((const uint32_t *)Y)[t * ldy + i] == 0x7f7f7f7fu);
                }
                free(Xq); free(xs); free(Y); free(y); free(ch); free(x); tmat_free(&m);
            }
    }
    llmq_cpu_set_isa(saved);
}

/* W4A8 against the fp32-activation product on the same int4 weights.
 * Rounding to the nearest code moves each x_j by at most xs_b / 2, so
 * |y_a8 - y_fp| <= sum_b xs_b / 2 * sum_{j in b} |w_j| (the bound, per
 * row), plus float rounding of both products (2e-6 of sum |w_j x_j| here).
 * In aggregate the rounding is noise of variance xs_b^2 / 12 per term, so
 * the expected squared error of row r is sum_j w_j^2 xs_b^2 / 12: the
 * measured RMS error over all rows must be within 1.5x of that prediction
 * (64 rows: the estimate's spread is ~20%).  For uniform x that is about
 * 1 / 254 = 0.4% of the signal (variance amax^2 / 3): we also require < 1%;
 * an outlier channel in a block coarsens its 31 neighbours (blocks of 32
 * keep that local), which the prediction accounts for. */
TEST(q4a8_vs_fp32_activations)
{
    for (int G = 32; G <= 128; G *= 2)
        for (int outl = 0; outl < 2; outl++) {
            int64_t rows = 64, c = 2048, nb = c / 32;
            tmat m = make_mat(LLMQ_W_Q4, rows, c, G, 0, M_RANDOM);
            float *x = rand_vec(c, 1.0f), *xs = malloc((size_t)nb * 4);
            if (outl) for (int64_t j = 0; j < c; j += 97) x[j] *= 40.0f;   /* outlier channels */
            int8_t *xq = malloc((size_t)c);
            llmq_quantize_act_blocks(x, c, xq, xs);
            float *ya = malloc((size_t)rows * 4), *yf = malloc((size_t)rows * 4), *w = malloc((size_t)c * 4);
            llmq_matvec_q4a8(NULL, &m.W, xq, xs, ya);
            llmq_matvec(NULL, &m.W, x, yf);
            double se = 0, sy = 0, sp = 0;
            for (int64_t r = 0; r < rows; r++) {
                llmq_ktable_ref.dequant[LLMQ_W_Q4](&m.W, r, r + 1, w);
                double bound = 0, mag = 0;
                for (int64_t j = 0; j < c; j++) {
                    bound += xs[j / 32] / 2 * fabs((double)w[j]);
                    mag += fabs((double)w[j] * x[j]);
                    sp += (double)w[j] * w[j] * xs[j / 32] * xs[j / 32] / 12;
                }
                double e = fabs((double)ya[r] - yf[r]);
                CHECK_MSG(e <= bound + 2e-6 * mag, "g%d row %" PRId64 ": |%.9g - %.9g| > %g", G, r, ya[r], yf[r], bound);
                se += e * e;
                sy += (double)yf[r] * yf[r];
            }
            double rel = sqrt(se / sy), pred = sqrt(sp / sy);
            CHECK_MSG(rel <= 1.5 * pred && rel >= pred / 1.5, "g%d outliers %d: relative RMS error %.4f, predicted %.4f",
                      G, outl, rel, pred);
            if (!outl) CHECK_MSG(rel < 0.01, "g%d: relative RMS error %.4f", G, rel);
            if (G == 128) printf("w4a8 vs fp32 activations, g128%s: relative RMS error %.4f (predicted %.4f)\n",
                                 outl ? " with outliers" : "", rel, pred);
            free(x); free(xs); free(xq); free(ya); free(yf); free(w); tmat_free(&m);
        }
}

/* The activation chunks of kern-int.h: every ISA the oracle's bytes, for
 * full and partial chunks and extreme codes. */
TEST(q4a8_prep)
{
    llmq_isa saved = llmq_cpu_isa();
    static const int64_t cols[] = { 32, 64, 96, 128, 160, 192, 224, 256, 1152, 1184 };
    for (size_t ci = 0; ci < LLMQ_ARRAY_LEN(cols); ci++)
        for (int am = 0; am < A_COUNT; am++) {
            int64_t c = cols[ci], nck = (c + 127) / 128;
            int8_t *xq = malloc((size_t)c);
            float *xs = malloc((size_t)c / 32 * 4);
            act_codes(xq, c, am);
            for (int64_t b = 0; b < c / 32; b++) xs[b] = rndf();
            llmq_q4a8_chunk *want = llmq_alloc_aligned((size_t)nck * sizeof *want, NULL);
            llmq_q4a8_chunk *got = llmq_alloc_aligned((size_t)nck * sizeof *got, NULL);
            llmq_ktable_ref.q4a8_prep(xq, xs, c, want);
            CHECK(want[0].xe[0] == xq[0] && want[0].xo[0] == xq[1] && want[0].xs[0] == xs[0]);
            for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
                if (!isa_ok((llmq_isa)isa)) continue;
                llmq_cpu_set_isa((llmq_isa)isa);
                memset(got, 0x5a, (size_t)nck * sizeof *got);
                llmq_ktable_cur()->q4a8_prep(xq, xs, c, got);
                CHECK_MSG(!memcmp(got, want, (size_t)nck * sizeof *got), "isa %s cols %" PRId64 " act %d",
                          llmq_isa_name(llmq_cpu_isa()), c, am);
            }
            free(xq); free(xs); free(want); free(got);
        }
    llmq_cpu_set_isa(saved);
}

/* Block quantization: every ISA the oracle's bytes and scales, on random
 * values, exact ties, zero and tiny blocks; the values themselves checked. */
TEST(quantize_act_blocks)
{
    llmq_isa saved = llmq_cpu_isa();
    int64_t n = 32 * 40;
    float *x = malloc((size_t)n * 4), *s = malloc(40 * 4), *sr = malloc(40 * 4);
    int8_t *q = malloc((size_t)n), *qr = malloc((size_t)n);
    for (int64_t i = 0; i < n; i++) {
        int64_t b = i / 32;
        x[i] = b % 5 == 1 ? 0.0f : b % 5 == 2 ? 1e-35f * rndf() : b % 5 == 3 ? (float)((int)(rnd() % 255) - 127) * 0.5f
             : b % 5 == 4 ? 1e30f * rndf() : rndf();
    }
    for (int64_t b = 0; b < 40; b++) if (b % 5 == 3) x[b * 32 + 5] = 63.5f;   /* amax 63.5: x / s = 2x exactly, ties */
    llmq_ktable_ref.quant_blocks(x, n, qr, sr);
    for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
        if (!isa_ok((llmq_isa)isa)) continue;
        llmq_cpu_set_isa((llmq_isa)isa);
        memset(q, 0x55, (size_t)n);
        llmq_quantize_act_blocks(x, n, q, s);
        CHECK_MSG(!memcmp(q, qr, (size_t)n) && !memcmp(s, sr, 40 * 4), "isa %s", llmq_isa_name(llmq_cpu_isa()));
    }
    llmq_cpu_set_isa(saved);
    for (int64_t b = 0; b < 40; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        if (b % 5 == 1 || b % 5 == 2) {          /* zero, and below 2^-100: scale 0, codes 0 */
            CHECK(sr[b] == 0.0f);
            for (int j = 0; j < 32; j++) CHECK(qr[b * 32 + j] == 0);
            continue;
        }
        CHECK(sr[b] == amax / 127.0f);
        for (int j = 0; j < 32; j++) {
            double want = (double)x[b * 32 + j] / sr[b];
            CHECK(fabs(qr[b * 32 + j] - want) <= 0.5 + 1e-4 && abs(qr[b * 32 + j]) <= 127);
        }
    }
    /* ties: 63.5 * (127 / 63.5) = 127; 0.5 * 2 = 1; x = 1.5 -> 3; 0.25 -> 0.5 -> 0 (to even) */
    float t[32] = { 63.5f, 0.5f, 1.5f, 0.25f, 0.75f, -0.25f, -63.5f };
    llmq_quantize_act_blocks(t, 32, q, s);
    CHECK(s[0] == 63.5f / 127.0f);
    CHECK(q[0] == 127 && q[1] == 1 && q[2] == 3 && q[3] == 0 && q[4] == 2 && q[5] == 0 && q[6] == -127 && q[7] == 0);
    /* non-finite input: codes stay in range, nothing undefined */
    t[3] = NAN; t[9] = INFINITY;
    llmq_quantize_act_blocks(t, 32, q, s);
    for (int j = 0; j < 32; j++) CHECK(q[j] >= -127 && q[j] <= 127);
    free(x); free(s); free(sr); free(q); free(qr);
}

/* The plain fmaxf / fminf / lrintf form of llmq_quantize_act_i8: the oracle
 * its libm-free loops must match code for code. */
static void act_i8_oracle(const float *x, int64_t n, int8_t *q, float *scale)
{
    float amax = 0.0f;
    for (int64_t i = 0; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
    float s = amax / 127.0f;
    *scale = s;
    float inv = s > 0.0f ? 127.0f / amax : 0.0f;
    for (int64_t i = 0; i < n; i++) q[i] = (int8_t)lrintf(fminf(fmaxf(x[i] * inv, -127.0f), 127.0f));
}

TEST(act_i8_matches_oracle)
{
    enum { C = 301 };
    float x[C], s, so;
    int8_t q[C], qo[C];
    uint64_t st = 12345;
    for (int r = 0; r < 500; r++) {
        for (int j = 0; j < C; j++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            x[j] = (float)((double)(st >> 11) / 9007199254740992.0 - 0.5) * (r % 3 ? 4.0f : 1e-39f);
        }
        if (r % 4 == 0) {                  /* exact ties on a 127-step grid */
            x[0] = 127.0f;
            for (int j = 1; j < C; j++) x[j] = (float)(j % 254 - 127) + 0.5f;
        }
        if (r % 7 == 1) x[r % C] = NAN;
        if (r % 9 == 2) x[(r + 3) % C] = r & 1 ? INFINITY : -INFINITY;
        if (r % 10 == 5) for (int j = 0; j < C; j++) x[j] = 0.0f;
        llmq_quantize_act_i8(x, C, q, &s);
        act_i8_oracle(x, C, qo, &so);
        CHECK_MSG(!memcmp(&s, &so, sizeof s) && !memcmp(q, qo, C), "row %d", r);
    }
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
    llmq_wmat W = { LLMQ_W_Q4, 2048, 5632, (void *)1, (void *)1, (const uint8_t *)1, 32, 0, 0 };
    CHECK_EQ_INT(llmq_wmat_bytes(&W), 2048ull * 5632 / 2 + 2048ull * 176 * 3);
    llmq_err err;
    CHECK_EQ_INT(llmq_wmat_check(&W, "w", &err), LLMQ_OK);
    W.group = 48;
    CHECK_EQ_INT(llmq_wmat_check(&W, "blk.0.w", &err), LLMQ_EUNSUPPORTED);
    CHECK(strstr(err.msg, "'blk.0.w'") != NULL);
    W.group = 128; W.cols = 5632 + 64;
    CHECK_EQ_INT(llmq_wmat_check(&W, "w", &err), LLMQ_EFORMAT);
    llmq_wmat F = { LLMQ_W_BF16, 3, 5, (void *)1, NULL, NULL, 0, 0, 0 };
    CHECK_EQ_INT(llmq_wmat_bytes(&F), 30);
    CHECK_EQ_INT(llmq_wmat_check(&F, "f", &err), LLMQ_OK);
    F.rows = 0;
    CHECK_EQ_INT(llmq_wmat_check(&F, "f", &err), LLMQ_EUNSUPPORTED);
    llmq_wmat M = { LLMQ_W_MX8, 4, 64, (void *)1, (void *)1, NULL, 32, 0, 0 };
    CHECK_EQ_INT(llmq_wmat_bytes(&M), 256 + 8);
    M.cols = 48;
    CHECK_EQ_INT(llmq_wmat_check(&M, "m", &err), LLMQ_EFORMAT);
    llmq_wmat Q = { LLMQ_W_Q8, 4, 64, (void *)1, NULL, NULL, 0, 0, 0 };
    CHECK_EQ_INT(llmq_wmat_check(&Q, "q", &err), LLMQ_EFORMAT);
    Q.type = (llmq_wtype)99;
    CHECK_EQ_INT(llmq_wmat_check(&Q, "q", &err), LLMQ_EUNSUPPORTED);
}

/* ---- Q3 ---- */

/* One chunk by hand (blocks.h): codes j & 7, then (j >> 2) & 7. */
TEST(q3_layout_by_hand)
{
    static const uint8_t want[2][12] = {
        { 0x00, 0x55, 0xaa, 0xff, 0x00, 0x55, 0xaa, 0xff, 0xf0, 0xf0, 0xf0, 0xf0 },
        { 0x88, 0x88, 0x88, 0x88, 0xdd, 0xdd, 0xdd, 0xdd, 0x00, 0x00, 0xff, 0xff },
    };
    for (int k = 0; k < 2; k++) {
        uint8_t c[12];
        memset(c, 0xa5, sizeof c);                   /* put_code overwrites every bit */
        for (int j = 0; j < 32; j++) llmq_q3_put_code(c, j, k ? (j >> 2) & 7 : j & 7);
        CHECK_MSG(!memcmp(c, want[k], 12), "pattern %d", k);
        for (int j = 0; j < 32; j++) CHECK_EQ_INT(llmq_q3_get_code(want[k], j), k ? (j >> 2) & 7 : j & 7);
    }
    CHECK_EQ_INT(sizeof(llmq_q3_chunk), 12);
    CHECK_EQ_INT(llmq_q3_row_bytes(128), 48);
    /* values through every ISA: zero point 3 (asymmetric), 4 (symmetric), s = 0.5 */
    uint8_t d[24];
    memcpy(d, want[0], 12);
    memcpy(d + 12, want[1], 12);
    uint16_t sc[2] = { llmq_f32_to_f16(0.5f), llmq_f32_to_f16(0.5f) };
    uint8_t z[2] = { 3, 3 };
    llmq_isa saved = llmq_cpu_isa();
    for (int sym = 0; sym < 2; sym++)
        for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
            if (!isa_ok((llmq_isa)isa)) continue;
            llmq_cpu_set_isa((llmq_isa)isa);
            llmq_wmat W = { LLMQ_W_Q3, 1, 64, d, sc, sym ? NULL : z, 32, 0, 0 };
            float out[64], x[64], y;
            llmq_err err;
            CHECK_EQ_INT(llmq_wmat_check(&W, "w", &err), LLMQ_OK);
            llmq_ktable_cur()->dequant[LLMQ_W_Q3](&W, 0, 1, out);
            double dot = 0;
            for (int j = 0; j < 64; j++) {
                int q = j < 32 ? j & 7 : ((j - 32) >> 2) & 7;
                CHECK_MSG(out[j] == (float)(q - (sym ? 4 : 3)) * 0.5f, "isa %s sym %d col %d: %g", llmq_isa_name(llmq_cpu_isa()),
                          sym, j, (double)out[j]);
                x[j] = (float)(j % 5) - 2.0f;
                dot += (double)out[j] * x[j];
            }
            llmq_ktable_cur()->matvec[LLMQ_W_Q3](&W, 0, 1, x, &y);
            CHECK_MSG(y == (float)dot, "isa %s sym %d: %g vs %g", llmq_isa_name(llmq_cpu_isa()), sym, (double)y, dot);
        }
    llmq_cpu_set_isa(saved);
}

/* Every code in every lane: the same codes as Q3 and as Q4 nibbles
 * (llmq_q3_unpack) dequantize to the same values on every ISA, the
 * kernel row ranges write only their rows. */
TEST(q3_equals_nibble_layout)
{
    llmq_isa saved = llmq_cpu_isa();
    static const int groups[] = { 32, 64, 128 };
    for (size_t gi = 0; gi < LLMQ_ARRAY_LEN(groups); gi++)
        for (int sym = 0; sym < 2; sym++) {
            const int G = groups[gi];
            const int64_t rows = 7, cols = 384;
            tmat m = make_mat(LLMQ_W_Q3, rows, cols, G, sym, M_RANDOM);
            uint8_t *nib = malloc((size_t)(rows * cols / 2));
            llmq_q3_unpack(m.data, rows, cols, sym, nib);
            llmq_wmat W4 = m.W;
            W4.type = LLMQ_W_Q4;
            W4.data = nib;
            float *a = malloc((size_t)(rows * cols) * 4), *b = malloc((size_t)(rows * cols + 16) * 4);
            llmq_ktable_ref.dequant[LLMQ_W_Q4](&W4, 0, rows, a);
            float *x = rand_vec(cols, 1.0f), y[8], yr[8];
            for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
                if (!isa_ok((llmq_isa)isa)) continue;
                llmq_cpu_set_isa((llmq_isa)isa);
                const llmq_ktable *kt = llmq_ktable_cur();
                memset(b, 0x7f, (size_t)(rows * cols + 16) * 4);
                kt->dequant[LLMQ_W_Q3](&m.W, 2, 7, b);
                CHECK_MSG(same_values(a + 2 * cols, b, 5 * cols), "g%d sym %d isa %s", G, sym, llmq_isa_name(llmq_cpu_isa()));
                CHECK(((const uint32_t *)b)[5 * cols] == 0x7f7f7f7fu);
                memset(y, 0x7f, sizeof y);
                kt->matvec[LLMQ_W_Q3](&m.W, 1, 6, x, y);
                llmq_ktable_ref.matvec[LLMQ_W_Q4](&W4, 1, 6, x, yr);
                for (int r = 0; r < 5; r++)
                    CHECK_MSG(fabs((double)y[r] - yr[r]) <= TOL_DOT * abs_dot(&W4, 1 + r, x) + TOL_FLOOR,
                              "g%d sym %d isa %s row %d: %.9g vs %.9g", G, sym, llmq_isa_name(llmq_cpu_isa()), 1 + r,
                              (double)y[r], (double)yr[r]);
                CHECK(((const uint32_t *)y)[5] == 0x7f7f7f7fu);
            }
            free(x); free(a); free(b); free(nib); tmat_free(&m);
        }
    llmq_cpu_set_isa(saved);
}

TEST(q3_wmat_bytes_and_check)
{
    llmq_wmat W = { LLMQ_W_Q3, 2048, 5632, (void *)1, (void *)1, (const uint8_t *)1, 128, 0, 0 };
    CHECK_EQ_INT(llmq_wmat_bytes(&W), 2048ull * 5632 * 3 / 8 + 2048ull * 44 * 3);
    W.zeros = NULL;
    CHECK_EQ_INT(llmq_wmat_bytes(&W), 2048ull * 5632 * 3 / 8 + 2048ull * 44 * 2);
    llmq_err err;
    CHECK_EQ_INT(llmq_wmat_check(&W, "w", &err), LLMQ_OK);
    CHECK(!strcmp(llmq_wtype_name(LLMQ_W_Q3), "q3"));
    W.group = 16;
    CHECK_EQ_INT(llmq_wmat_check(&W, "blk.0.w", &err), LLMQ_EUNSUPPORTED);
    CHECK(strstr(err.msg, "'blk.0.w'") && strstr(err.msg, "q3"));
    W.group = 128; W.cols = 5632 + 32;
    CHECK_EQ_INT(llmq_wmat_check(&W, "w", &err), LLMQ_EFORMAT);
    W.cols = 5632; W.scales = NULL;
    CHECK_EQ_INT(llmq_wmat_check(&W, "w", &err), LLMQ_EFORMAT);
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

/* ---- MX / NV block formats ---- */

static const llmq_wtype BLOCK_TYPES[] = { LLMQ_W_MXFP4, LLMQ_W_MXINT4, LLMQ_W_NVFP4, LLMQ_W_NVINT4, LLMQ_W_MXFP8 };

/* The kernel slots themselves on rows [r0, r1) (the 4-row kernels' tails,
 * a start that is not a multiple of 4): matvec within the dot tolerance of
 * the oracle, dequant its values exactly, nothing written past r1 - r0. */
TEST(block_kernel_ranges)
{
    llmq_isa saved = llmq_cpu_isa();
    static const int64_t rng[][2] = { { 0, 11 }, { 1, 8 }, { 3, 4 }, { 5, 11 }, { 2, 9 } }, cols[] = { 32, 96, 544, 640 };
    for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
        if (!isa_ok((llmq_isa)isa)) continue;
        llmq_cpu_set_isa((llmq_isa)isa);
        const llmq_ktable *kt = llmq_ktable_cur();
        for (size_t ti = 0; ti < LLMQ_ARRAY_LEN(BLOCK_TYPES); ti++)
            for (size_t ci = 0; ci < LLMQ_ARRAY_LEN(cols); ci++)
                for (int mode = 0; mode < M_COUNT; mode++) {
                    llmq_wtype t = BLOCK_TYPES[ti];
                    int64_t c = cols[ci];
                    tmat m = make_mat(t, 11, c, 0, 0, mode);
                    float *x = rand_vec(c, mode == M_MAX ? 1e3f : 1.0f);
                    float *y = malloc(16 * 4), *yr = malloc(16 * 4);
                    float *d = malloc((size_t)(11 * c + 8) * 4), *dr = malloc((size_t)(11 * c) * 4);
                    for (size_t k = 0; k < LLMQ_ARRAY_LEN(rng); k++) {
                        int64_t r0 = rng[k][0], r1 = rng[k][1], nr = r1 - r0;
                        memset(y, 0x7f, 16 * 4);
                        kt->matvec[t](&m.W, r0, r1, x, y);
                        llmq_ktable_ref.matvec[t](&m.W, r0, r1, x, yr);
                        for (int64_t r = 0; r < nr; r++) {
                            double tol = TOL_DOT * abs_dot(&m.W, r0 + r, x) + TOL_FLOOR;
                            CHECK_MSG(fabs((double)y[r] - yr[r]) <= tol, "%s isa %s cols %" PRId64 " mode %d rows [%" PRId64
                                      ", %" PRId64 ") row %" PRId64 ": %.9g vs %.9g", tname(t), llmq_isa_name(llmq_cpu_isa()),
                                      c, mode, r0, r1, r0 + r, y[r], yr[r]);
                        }
                        for (int64_t r = nr; r < 16; r++) CHECK(((const uint32_t *)y)[r] == 0x7f7f7f7fu);
                        memset(d, 0x7f, (size_t)(11 * c + 8) * 4);
                        kt->dequant[t](&m.W, r0, r1, d);
                        llmq_ktable_ref.dequant[t](&m.W, r0, r1, dr);
                        CHECK_MSG(same_values(d, dr, nr * c), "%s isa %s cols %" PRId64 " mode %d rows [%" PRId64 ", %" PRId64 ")",
                                  tname(t), llmq_isa_name(llmq_cpu_isa()), c, mode, r0, r1);
                        for (int64_t i = nr * c; i < 11 * c + 8; i++) CHECK(((const uint32_t *)d)[i] == 0x7f7f7f7fu);
                    }
                    free(x); free(y); free(yr); free(d); free(dr); tmat_free(&m);
                }
    }
    llmq_cpu_set_isa(saved);
}

/* Every code and every scale byte but NaN through every ISA's dequant:
 * byte i of the codes is i + 13 r (all 256 nibble pairs, all E4M3 codes),
 * scale byte b of row r is b + r (all E8M0 exponents, all E4M3 scales
 * including negative ones and subnormals).  Values that overflow are inf in
 * the oracle and the kernels alike. */
TEST(block_all_codes)
{
    llmq_isa saved = llmq_cpu_isa();
    for (size_t ti = 0; ti < LLMQ_ARRAY_LEN(BLOCK_TYPES); ti++) {
        llmq_wtype t = BLOCK_TYPES[ti];
        const int B = llmq_block_size(t), four = llmq_wtype_is_block4(t);
        const int64_t rows = 6, cols = 256 * B, rb = four ? cols / 2 : cols, nb = cols / B;
        uint8_t *q = malloc((size_t)(rows * rb)), *s = malloc((size_t)(rows * nb));
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t i = 0; i < rb; i++) {
                uint8_t v = (uint8_t)(i + 13 * r);
                q[r * rb + i] = !four && llmq_e4m3_is_nan(v) ? (uint8_t)(v - 1) : v;
            }
            for (int64_t b = 0; b < nb; b++) {
                uint8_t v = (uint8_t)(b + r);
                s[r * nb + b] = llmq_wtype_is_nv(t) ? (llmq_e4m3_is_nan(v) ? 0x3f : v) : (v == 255 ? 127 : v);
            }
        }
        llmq_wmat W = { t, rows, cols, q, s, NULL, B, llmq_wtype_is_nv(t) ? 0.37f : 0.0f, 0 };
        llmq_err err;
        CHECK_EQ_INT(llmq_wmat_check(&W, "w", &err), LLMQ_OK);
        float *a = malloc((size_t)(rows * cols) * 4), *b = malloc((size_t)(rows * cols) * 4);
        llmq_ktable_ref.dequant[t](&W, 0, rows, a);
        for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
            if (!isa_ok((llmq_isa)isa)) continue;
            llmq_cpu_set_isa((llmq_isa)isa);
            memset(b, 0, (size_t)(rows * cols) * 4);
            llmq_ktable_cur()->dequant[t](&W, 0, rows, b);
            int64_t bad = -1;
            for (int64_t i = 0; i < rows * cols && bad < 0; i++) if (!(a[i] == b[i])) bad = i;
            CHECK_MSG(bad < 0, "%s isa %s: element %" PRId64 " (row %" PRId64 " col %" PRId64 "): %.9g, oracle %.9g",
                      tname(t), llmq_isa_name(llmq_cpu_isa()), bad, bad / cols, bad % cols, b[bad < 0 ? 0 : bad],
                      a[bad < 0 ? 0 : bad]);
            llmq_get_row(&W, 3, b);
            CHECK(same_values(a + 3 * cols, b, cols));
        }
        /* the oracle itself: code 5 of MXFP4 (3) in block 0 of row 0, factor 2^(0 - 127) */
        if (t == LLMQ_W_MXFP4) CHECK(a[10] == ldexpf(3.0f, -127) && a[1] == 0.0f);
        free(q); free(s); free(a); free(b);
        llmq_cpu_set_isa(saved);
    }
}

/* NV blocks are 16 columns, the SIMD kernels step 32 at a time: rows of
 * 16 * odd columns must be refused by llmq_wmat_check or computed right by
 * every ISA.  Buffers are padded so that a kernel reading or writing past
 * the row shows up as a wrong value, not a crash. */
TEST(block_nv_cols_16)
{
    llmq_isa saved = llmq_cpu_isa();
    static const int64_t cols[] = { 16, 48, 80, 272, 288 };   /* NV rows must be whole 32-column chunks */
    for (int nvi = 0; nvi < 2; nvi++)
        for (size_t ci = 0; ci < LLMQ_ARRAY_LEN(cols); ci++) {
            llmq_wtype t = nvi ? LLMQ_W_NVINT4 : LLMQ_W_NVFP4;
            int64_t rows = 5, c = cols[ci], pad = 64;
            tmat m = make_mat(t, rows, c, 16, 0, M_RANDOM);
            uint8_t *q = malloc((size_t)(rows * c / 2 + pad)), *s = malloc((size_t)(rows * c / 16 + pad));
            memcpy(q, m.data, (size_t)(rows * c / 2));
            memset(q + rows * c / 2, 0x77, (size_t)pad);
            memcpy(s, m.scales, (size_t)(rows * c / 16));
            memset(s + rows * c / 16, 0x7e, (size_t)pad);
            free(m.data); free(m.scales);
            m.data = q; m.scales = s; m.W.data = q; m.W.scales = s;
            llmq_err err;
            int rc = llmq_wmat_check(&m.W, "w", &err);
            CHECK_EQ_INT(rc, c % 32 ? LLMQ_EFORMAT : LLMQ_OK);
            if (rc != LLMQ_OK) { tmat_free(&m); continue; }
            float *x = malloc((size_t)(c + pad) * 4), *y = malloc((size_t)rows * 4), *yr = malloc((size_t)rows * 4);
            float *d = malloc((size_t)(rows * c + pad) * 4), *dr = malloc((size_t)(rows * c) * 4);
            for (int64_t j = 0; j < c + pad; j++) x[j] = j < c ? rndf() : 1e3f;
            llmq_ktable_ref.matvec[t](&m.W, 0, rows, x, yr);
            llmq_ktable_ref.dequant[t](&m.W, 0, rows, dr);
            for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
                if (!isa_ok((llmq_isa)isa)) continue;
                llmq_cpu_set_isa((llmq_isa)isa);
                const llmq_ktable *kt = llmq_ktable_cur();
                kt->matvec[t](&m.W, 0, rows, x, y);
                int ok = 1;
                for (int64_t r = 0; r < rows; r++) ok &= fabs((double)y[r] - yr[r]) <= TOL_DOT * abs_dot(&m.W, r, x) + TOL_FLOOR;
                CHECK_MSG(ok, "%s isa %s: %" PRId64 " columns pass llmq_wmat_check, but matvec row 0 is %.9g, oracle %.9g",
                          tname(t), llmq_isa_name(llmq_cpu_isa()), c, y[0], yr[0]);
                memset(d, 0x7f, (size_t)(rows * c + pad) * 4);
                kt->dequant[t](&m.W, 0, rows, d);
                int tail = 1;
                for (int64_t i = rows * c; i < rows * c + pad; i++) tail &= ((const uint32_t *)d)[i] == 0x7f7f7f7fu;
                CHECK_MSG(same_values(d, dr, rows * c) && tail, "%s isa %s: %" PRId64 " columns pass llmq_wmat_check, "
                          "but dequant differs from the oracle%s", tname(t), llmq_isa_name(llmq_cpu_isa()), c,
                          tail ? "" : " and writes past the rows");
            }
            free(x); free(y); free(yr); free(d); free(dr); tmat_free(&m);
        }
    llmq_cpu_set_isa(saved);
}

TEST(block_wmat_bytes_and_check)
{
    llmq_err err;
    for (size_t ti = 0; ti < LLMQ_ARRAY_LEN(BLOCK_TYPES); ti++) {
        llmq_wtype t = BLOCK_TYPES[ti];
        const int B = llmq_block_size(t), nv = llmq_wtype_is_nv(t);
        llmq_wmat W = { t, 6, 512, (void *)1, (void *)1, NULL, B, nv ? 0.5f : 0.0f, 0 };
        uint64_t codes = llmq_wtype_is_block4(t) ? 6 * 256 : 6 * 512;
        CHECK_EQ_INT(llmq_wmat_bytes(&W), codes + 6 * 512 / B + (nv ? 4 : 0));
        CHECK_EQ_INT(llmq_wmat_check(&W, "w", &err), LLMQ_OK);
        CHECK(!strcmp(llmq_wtype_name(t), llmq_block_name(t)));
        W.cols = 512 + B / 2;                      /* not whole blocks */
        CHECK_EQ_INT(llmq_wmat_check(&W, "blk.1.w", &err), LLMQ_EFORMAT);
        CHECK(strstr(err.msg, "'blk.1.w'") != NULL);
        W.cols = 512;
        W.group = B == 16 ? 32 : 16;               /* the block size is the type's */
        CHECK(llmq_wmat_check(&W, "w", &err) != LLMQ_OK);
        W.group = B;
        /* NV: the tensor scale must be a positive number; MX types ignore it */
        static const float bad[] = { 0.0f, -1.0f, NAN, INFINITY, -0.0f };
        for (size_t k = 0; k < LLMQ_ARRAY_LEN(bad); k++) {
            W.tscale = bad[k];
            CHECK_MSG(llmq_wmat_check(&W, "w", &err) == (nv ? LLMQ_EFORMAT : LLMQ_OK), "%s tscale %g", tname(t), (double)bad[k]);
        }
        W.tscale = 1e-40f;                         /* subnormal is still a positive number */
        CHECK_EQ_INT(llmq_wmat_check(&W, "w", &err), LLMQ_OK);
    }
}

/* E4M3 (blocks.h): the bits give 2^(e - 7) (1 + m / 8) and m 2^-9, the
 * values the kernels' f16 trick relies on (E4M3 bits << 7 as an f16 are the
 * value times 2^-8) */
TEST(e4m3_values_kernels)
{
    for (int b = 0; b < 256; b++) {
        float v = llmq_e4m3_to_f32((uint8_t)b);
        if ((b & 0x7f) == 0x7f) { CHECK(isnan(v)); continue; }
        int e = (b >> 3) & 15, mm = b & 7;
        double want = e ? ldexp(1 + mm / 8.0, e - 7) : ldexp(mm, -9);
        CHECK_MSG((double)fabsf(v) == want && !signbit(v) == !(b & 0x80), "0x%02x: %g", b, (double)v);
        uint16_t h = (uint16_t)(((b & 0x7f) << 7) | ((b & 0x80) << 8));
        CHECK(llmq_f16_to_f32(h) * 256.0f == v);
    }
}

/* ---- decode attention tiles (llmq_attn_scores / llmq_attn_values) ----
 * Each ISA against the oracle's table entries on random tiles: head sizes
 * around the SIMD paths' 8- and 16-channel steps and 256-channel limit
 * (past it they run the oracle's loops), tiles around 8-key blocks, head
 * groups around the kernels' head blocks.
 * Buffers are exactly their size (ASan catches a read past the tile's
 * cos / sin rows), cos / sin rows before p0 and P's padding are NaN (a
 * read of them poisons the result), S's padding holds a sentinel. */

/* |y - y_ref| <= TOL_ATTN * sum of |terms| (f32 sums in another order) */
#define TOL_ATTN 1e-5

static const int ATT_HD[] = { 2, 6, 8, 24, 32, 34, 40, 64, 80, 96, 128, 256, 260 };
static const int ATT_M[] = { 1, 5, 8, 15, 16, 17, 31, 32 };
static const int ATT_GROUP[] = { 1, 2, 3, 4, 5, 7, 8, 9, 16 };
static const int ATT_P0[] = { 0, 7, 1000 };

static const uint32_t ATT_SENTINEL = 0x7fc0beefu;   /* a NaN no kernel makes */

static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* cos / sin tables of exactly p0 + m rows of hd / 2: NaN before p0, random
 * (not a real rotation: any value tests the same arithmetic) from p0 on */
static float *att_table(int p0, int m, int half)
{
    float *t = malloc((size_t)(p0 + m) * (size_t)half * sizeof *t);
    for (size_t i = 0; i < (size_t)(p0 + m) * (size_t)half; i++)
        t[i] = i < (size_t)p0 * (size_t)half ? NAN : rndf();
    return t;
}

/* S's m scores of each head against the oracle's Sr, to tol_rel of the
 * sum of |products| over the rotated keys K (pre-RoPE floats) and queries
 * Q; S's padding past m (all of it where none were written) still the
 * sentinel.  0 with a message on the first failure. */
static int scores_close(const char *what, const float *K, const float *Q, int hd, int m, int group, int p0,
                        const float *cs, const float *sn, float scale, const float *S, const float *Sr, size_t ldS,
                        double tol_rel, int written)
{
    int half = hd / 2;
    for (int h = 0; h < group; h++)
        for (size_t r = 0; r < ldS; r++) {
            size_t at = (size_t)h * ldS + r;
            if (r >= (size_t)m || !written) {
                if (f32_bits(S[at]) == ATT_SENTINEL) continue;
                fprintf(stderr, "  %s isa %s hd %d m %d group %d p0 %d: S[%d][%zu] written\n", what,
                        llmq_isa_name(llmq_cpu_isa()), hd, m, group, p0, h, r);
                return 0;
            }
            const float *k = K + r * (size_t)hd, *q = Q + (size_t)h * hd;
            const float *c = cs + (size_t)(p0 + (int)r) * half, *s = sn + (size_t)(p0 + (int)r) * half;
            double mag = 0;
            for (int i = 0; i < half; i++)
                mag += fabs(q[i]) * (fabs(k[i] * c[i]) + fabs(k[i + half] * s[i]))
                     + fabs(q[i + half]) * (fabs(k[i + half] * c[i]) + fabs(k[i] * s[i]));
            double tol = tol_rel * mag * scale + TOL_FLOOR;
            if (!(fabs((double)S[at] - Sr[at]) <= tol)) {
                fprintf(stderr, "  %s isa %s hd %d m %d group %d p0 %d: S[%d][%zu] = %.9g, oracle %.9g (tol %g)\n",
                        what, llmq_isa_name(llmq_cpu_isa()), hd, m, group, p0, h, r, S[at], Sr[at], tol);
                return 0;
            }
        }
    return 1;
}

/* bf16: llmq_attn_scores_bf16 against the oracle's bf16 scores, to 2^-7 of
 * the products' magnitudes (a rotated key rounded to the neighbouring bf16
 * where an FMA rounds the rotation differently, or an ISA without a bf16
 * dot product running fp32: either is 2^-8 relative a product at most) */
static int check_attn_scores(int hd, int m, int group, int p0, const float *cs, const float *sn, int bf16)
{
    size_t ldS = (size_t)m + 3, nS = (size_t)group * ldS;
    float *K = rand_vec((int64_t)m * hd, 1.0f), *Q = rand_vec((int64_t)group * hd, 1.0f);
    float *S = malloc(nS * sizeof *S), *Sr = malloc(nS * sizeof *Sr);
    float scale = 1.0f / sqrtf((float)hd);
    for (size_t i = 0; i < nS; i++) S[i] = Sr[i] = bits_f32(ATT_SENTINEL);
    (bf16 ? llmq_ktable_ref.attn_scores_bf16 : llmq_ktable_ref.attn_scores)(K, m, hd, p0, cs, sn, Q, group, scale,
                                                                            Sr, ldS);
    (bf16 ? llmq_attn_scores_bf16 : llmq_attn_scores)(K, m, hd, p0, cs, sn, Q, group, scale, S, ldS);
    int ok = scores_close(bf16 ? "attn_scores_bf16" : "attn_scores", K, Q, hd, m, group, p0, cs, sn, scale, S, Sr,
                          ldS, bf16 ? 0x1p-7 : TOL_ATTN, 1);
    free(K); free(Q); free(S); free(Sr);
    return ok;
}

static int check_attn_values(int hd, int m, int group)
{
    int bad = 0;
    size_t ldP = (size_t)m + 3, nO = (size_t)group * hd;
    float *P = malloc((size_t)group * ldP * sizeof *P), *V = rand_vec((int64_t)m * hd, 1.0f);
    float *O = rand_vec((int64_t)nO, 1.0f), *Or = malloc(nO * sizeof *Or);
    for (size_t i = 0; i < (size_t)group * ldP; i++) P[i] = i % ldP < (size_t)m ? 0.5f * (rndf() + 1.0f) : NAN;
    memcpy(Or, O, nO * sizeof *O);
    llmq_ktable_ref.attn_values(P, ldP, m, V, hd, group, Or);
    /* the sums' magnitudes from the inputs: O before the call is O0 */
    float *O0 = malloc(nO * sizeof *O0);
    memcpy(O0, O, nO * sizeof *O);
    llmq_attn_values(P, ldP, m, V, hd, group, O);
    for (int h = 0; h < group && !bad; h++)
        for (int c = 0; c < hd && !bad; c++) {
            size_t at = (size_t)h * hd + c;
            double mag = fabs(O0[at]);
            for (int r = 0; r < m; r++) mag += fabs(P[(size_t)h * ldP + r] * V[(size_t)r * hd + c]);
            double tol = TOL_ATTN * mag + TOL_FLOOR;
            if (!(fabs((double)O[at] - Or[at]) <= tol)) {
                fprintf(stderr, "  attn_values isa %s hd %d m %d group %d: O[%d][%d] = %.9g, oracle %.9g (tol %g)\n",
                        llmq_isa_name(llmq_cpu_isa()), hd, m, group, h, c, O[at], Or[at], tol);
                bad = 1;
            }
        }
    free(P); free(V); free(O); free(Or); free(O0);
    return !bad;
}

TEST(attn_scores_vs_oracle)
{
    llmq_isa saved = llmq_cpu_isa();
    for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
        if (!isa_ok((llmq_isa)isa)) continue;
        llmq_cpu_set_isa((llmq_isa)isa);
        for (size_t di = 0; di < LLMQ_ARRAY_LEN(ATT_HD); di++)
            for (size_t pi = 0; pi < LLMQ_ARRAY_LEN(ATT_P0); pi++)
                for (size_t mi = 0; mi < LLMQ_ARRAY_LEN(ATT_M); mi++) {
                    int hd = ATT_HD[di], p0 = ATT_P0[pi], m = ATT_M[mi];
                    float *cs = att_table(p0, m, hd / 2), *sn = att_table(p0, m, hd / 2);
                    for (size_t gi = 0; gi < LLMQ_ARRAY_LEN(ATT_GROUP); gi++) {
                        CHECK(check_attn_scores(hd, m, ATT_GROUP[gi], p0, cs, sn, 0));
                        CHECK(check_attn_scores(hd, m, ATT_GROUP[gi], p0, cs, sn, 1));
                    }
                    free(cs); free(sn);
                }
    }
    llmq_cpu_set_isa(saved);
}

TEST(attn_values_vs_oracle)
{
    llmq_isa saved = llmq_cpu_isa();
    for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
        if (!isa_ok((llmq_isa)isa)) continue;
        llmq_cpu_set_isa((llmq_isa)isa);
        for (size_t di = 0; di < LLMQ_ARRAY_LEN(ATT_HD); di++)
            for (size_t mi = 0; mi < LLMQ_ARRAY_LEN(ATT_M); mi++)
                for (size_t gi = 0; gi < LLMQ_ARRAY_LEN(ATT_GROUP); gi++)
                    CHECK(check_attn_values(ATT_HD[di], ATT_M[mi], ATT_GROUP[gi]));
    }
    llmq_cpu_set_isa(saved);
}

/* ---- KV-cache codes to f32 (llmq_kv_deq_channels / _groups) ----
 *
 * Every ISA gives the oracle's floats bit for bit.  Rows at a
 * stride of their bytes or 3 more; the code buffer ends at the last row's
 * last byte and the ranges are exactly their size (ASan sees any read past
 * them); out has a sentinel tail that must survive.  Ranges include zero,
 * negative, subnormal and large (finite) steps; the f16 pairs of the
 * groups are any finite f16, subnormals and -0 among them.  Widths that are
 * not a multiple of 8 take the SIMD files' fallback to the oracle. */

static const int KVD_HD[] = { 8, 16, 24, 32, 40, 64, 128, 256, 6 };
static const int KVD_M[] = { 1, 2, 7, 32 };
static const int KVD_BITS[] = { 8, 4, 2 };
#define KVD_TAIL 16

/* One f32 range end of a kind picked at random: ordinary, zero, negative,
 * subnormal or large (lo + step * 255 overflows to Inf for some: still
 * the same Inf everywhere). */
static float kvd_range(int is_step)
{
    switch (rnd() % 6) {
    case 0: return 0.0f;
    case 1: return is_step ? -0.01f * (1.0f + rndf()) : -3.0f;
    case 2: return rndf() * 1e-39f;
    case 3: return rndf() * (is_step ? 3e35f : 3e38f);
    default: return rndf() * (is_step ? 0.1f : 4.0f);
    }
}

/* Any finite f16: random bits, the special values, or a small step. */
static uint16_t kvd_f16(void)
{
    static const uint16_t special[] = { 0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x83ff, 0x0400, 0x7bff, 0xfbff,
                                        0x3c00 };
    switch (rnd() % 3) {
    case 0: return special[rnd() % LLMQ_ARRAY_LEN(special)];
    case 1: return llmq_f32_to_f16(0.02f * rndf());
    default:
        for (;;) {
            uint16_t h = (uint16_t)rnd();
            if ((h & 0x7c00) != 0x7c00) return h;
        }
    }
}

/* m rows of rb code bytes at stride rowb, in a buffer of exactly
 * (m - 1) rowb + rb bytes, random (any bytes are valid codes). */
static uint8_t *kvd_codes(int m, size_t rowb, size_t rb)
{
    size_t n = (size_t)(m - 1) * rowb + rb;
    uint8_t *src = malloc(n);
    for (size_t i = 0; i < n; i++) src[i] = (uint8_t)rnd();
    return src;
}

static float *kvd_out(size_t n)
{
    float *o = malloc((n + KVD_TAIL) * sizeof *o);
    for (size_t i = 0; i < n + KVD_TAIL; i++) o[i] = bits_f32(ATT_SENTINEL);
    return o;
}

/* out's n floats against the oracle's bit for bit, and its tail still the
 * sentinel: 0 with a message on the first difference */
static int kvd_same(const float *out, const float *ref, size_t n, const char *what, int bits, int hd, int m,
                    size_t rowb, int ng)
{
    for (size_t i = 0; i < n + KVD_TAIL; i++) {
        if (i < n ? f32_bits(out[i]) == f32_bits(ref[i]) : f32_bits(out[i]) == ATT_SENTINEL) continue;
        fprintf(stderr, "  %s isa %s bits %d hd %d m %d rowb %zu ng %d: out[%zu] = %a, %s %a\n", what,
                llmq_isa_name(llmq_cpu_isa()), bits, hd, m, rowb, ng, i, (double)out[i],
                i < n ? "oracle" : "past the end, sentinel", (double)(i < n ? ref[i] : bits_f32(ATT_SENTINEL)));
        return 0;
    }
    return 1;
}

static int check_kv_deq_channels(int bits, int hd, int m, size_t rowb)
{
    size_t rb = llmq_kvq_row_bytes(hd, bits), n = (size_t)m * hd;
    uint8_t *src = kvd_codes(m, rowb, rb);
    float *lo = malloc((size_t)hd * sizeof *lo), *step = malloc((size_t)hd * sizeof *step);
    for (int c = 0; c < hd; c++) lo[c] = kvd_range(0), step[c] = kvd_range(1);
    float *out = kvd_out(n), *ref = kvd_out(n);
    llmq_ktable_ref.kv_deq_channels(src, rowb, m, hd, bits, lo, step, ref);
    llmq_kv_deq_channels(src, rowb, m, hd, bits, lo, step, out);
    int ok = kvd_same(out, ref, n, "kv_deq_channels", bits, hd, m, rowb, 0);
    free(src); free(lo); free(step); free(out); free(ref);
    return ok;
}

static int check_kv_deq_groups(int bits, int hd, int ng, int m, size_t rowb)
{
    size_t rb = (size_t)ng * llmq_kvq_row_bytes(hd / ng, bits), n = (size_t)m * hd;
    size_t np = (size_t)m * ng * 2;
    uint8_t *src = kvd_codes(m, rowb, rb);
    uint16_t *par = malloc(np * sizeof *par);
    for (size_t i = 0; i < np; i++) par[i] = kvd_f16();
    float *out = kvd_out(n), *ref = kvd_out(n);
    llmq_ktable_ref.kv_deq_groups(src, rowb, par, ng, m, hd, bits, ref);
    llmq_kv_deq_groups(src, rowb, par, ng, m, hd, bits, out);
    int ok = kvd_same(out, ref, n, "kv_deq_groups", bits, hd, m, rowb, ng);
    free(src); free(par); free(out); free(ref);
    return ok;
}

TEST(kv_deq_channels_vs_oracle)
{
    llmq_isa saved = llmq_cpu_isa();
    for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
        if (!isa_ok((llmq_isa)isa)) continue;
        llmq_cpu_set_isa((llmq_isa)isa);
        for (size_t bi = 0; bi < LLMQ_ARRAY_LEN(KVD_BITS); bi++)
            for (size_t di = 0; di < LLMQ_ARRAY_LEN(KVD_HD); di++) {
                int bits = KVD_BITS[bi], hd = KVD_HD[di];
                if (!llmq_kvq_whole_bytes(hd, bits)) continue;
                size_t rb = llmq_kvq_row_bytes(hd, bits);
                for (size_t mi = 0; mi < LLMQ_ARRAY_LEN(KVD_M); mi++)
                    for (size_t pad = 0; pad <= 3; pad += 3)
                        CHECK(check_kv_deq_channels(bits, hd, KVD_M[mi], rb + pad));
            }
    }
    llmq_cpu_set_isa(saved);
}

TEST(kv_deq_groups_vs_oracle)
{
    llmq_isa saved = llmq_cpu_isa();
    for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
        if (!isa_ok((llmq_isa)isa)) continue;
        llmq_cpu_set_isa((llmq_isa)isa);
        for (size_t bi = 0; bi < LLMQ_ARRAY_LEN(KVD_BITS); bi++)
            for (size_t di = 0; di < LLMQ_ARRAY_LEN(KVD_HD); di++) {
                int bits = KVD_BITS[bi], hd = KVD_HD[di];
                /* group widths hd, hd / 2, hd / 4 and 8, each once; widths
                 * not a multiple of 8 (hd 6, 40 / 16, ...) too */
                const int ngs[] = { 1, 2, 4, hd / 8 };
                for (size_t gi = 0; gi < LLMQ_ARRAY_LEN(ngs); gi++) {
                    int ng = ngs[gi], dup = 0;
                    for (size_t j = 0; j < gi; j++) dup |= ngs[j] == ng;
                    if (dup || ng < 1 || hd % ng || !llmq_kvq_whole_bytes(hd / ng, bits)) continue;
                    size_t rb = (size_t)ng * llmq_kvq_row_bytes(hd / ng, bits);
                    for (size_t mi = 0; mi < LLMQ_ARRAY_LEN(KVD_M); mi++)
                        for (size_t pad = 0; pad <= 3; pad += 3)
                            CHECK(check_kv_deq_groups(bits, hd, ng, KVD_M[mi], rb + pad));
                }
            }
    }
    llmq_cpu_set_isa(saved);
}

/* ---- the values' sum straight from their codes (llmq_attn_values_codes) ----
 * Against the oracle's table entry to TOL_ATTN of the sum of |terms|.  Where the function takes a shape it must: the oracle
 * always, AVX-512 with a bf16 dot product for 4-bit heads of 32 channels
 * and 2-bit heads of 64, groups of 16 channels and more (8 bytes and
 * more); a call it declines leaves O as it was.  Codes exactly their size,
 * P's padding NaN. */

static int has_bf16_dot(void)
{
    unsigned a, b, c, d;
    return llmq_cpu_isa_max() == LLMQ_ISA_AVX512 && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5));
}

static int check_attn_values_codes(int bits, int hd, int ng, int m, int group, size_t rowb)
{
    int vg = hd / ng, isa = llmq_cpu_isa();
    size_t rb = (size_t)ng * llmq_kvq_row_bytes(vg, bits), ldP = (size_t)m + 3, nO = (size_t)group * hd;
    uint8_t *src = kvd_codes(m, rowb, rb);
    uint16_t *par = malloc((size_t)m * ng * 2 * sizeof *par);
    for (int i = 0; i < m * ng; i++) {
        par[2 * i] = llmq_f32_to_f16(0.05f * (rndf() + 1.0f));       /* step */
        par[2 * i + 1] = llmq_f32_to_f16(3.0f * rndf());             /* lo */
    }
    float *P = malloc((size_t)group * ldP * sizeof *P);
    for (size_t i = 0; i < (size_t)group * ldP; i++) P[i] = i % ldP < (size_t)m ? 0.5f * (rndf() + 1.0f) : NAN;
    float *O = rand_vec((int64_t)nO, 1.0f), *O0 = malloc(nO * sizeof *O0), *Or = malloc(nO * sizeof *Or);
    memcpy(O0, O, nO * sizeof *O);
    memcpy(Or, O, nO * sizeof *O);
    int bad = 0, done = llmq_attn_values_codes(P, ldP, m, src, rowb, par, ng, hd, bits, group, O);
    int must = isa == LLMQ_ISA_SCALAR ||
               (isa == LLMQ_ISA_AVX512 && has_bf16_dot() && hd * bits % 128 == 0 && vg % 16 == 0 && ng <= 16 &&
                (vg * bits / 8 % 16 == 0 || vg * bits / 8 == 8));
    if (done != must) {
        fprintf(stderr, "  attn_values_codes isa %s bits %d hd %d ng %d: returned %d\n", llmq_isa_name(isa), bits,
                hd, ng, done);
        bad = 1;
    }
    if (!done) {
        if (memcmp(O, O0, nO * sizeof *O)) fprintf(stderr, "  attn_values_codes declined but wrote O\n"), bad = 1;
    } else {
        CHECK(llmq_ktable_ref.attn_values_codes(P, ldP, m, src, rowb, par, ng, hd, bits, group, Or));
        float code[256];
        for (int h = 0; h < group && !bad; h++)
            for (int c = 0; c < hd && !bad; c++) {
                size_t at = (size_t)h * hd + c;
                int k = c / vg;
                double mag = fabs(O0[at]);
                for (int r = 0; r < m; r++) {
                    const uint16_t *pk = par + ((size_t)r * ng + k) * 2;
                    double p = P[(size_t)h * ldP + r], st = llmq_kvq_f16(pk[0]);
                    llmq_kvq_deq_row1(src + (size_t)r * rowb + (size_t)k * llmq_kvq_row_bytes(vg, bits), vg, bits,
                                      0.0f, 1.0f, code);
                    mag += p * st * code[c % vg] + fabs(p * llmq_kvq_f16(pk[1]));
                }
                double tol = TOL_ATTN * mag + TOL_FLOOR;
                if (!(fabs((double)O[at] - Or[at]) <= tol)) {
                    fprintf(stderr, "  attn_values_codes isa %s bits %d hd %d ng %d m %d group %d: O[%d][%d] = %.9g,"
                            " oracle %.9g (tol %g)\n", llmq_isa_name(isa), bits, hd, ng, m, group, h, c, O[at],
                            Or[at], tol);
                    bad = 1;
                }
            }
    }
    free(src); free(par); free(P); free(O); free(O0); free(Or);
    return !bad;
}

/* llmq_attn_scores_codes against the oracle's, to check_attn_scores' bf16
 * tolerance over the keys the codes stand for; taken where it must be
 * (4 bits: the oracle always, AVX-512 with bf16 for heads of 64, 128, 192,
 * 256); declined calls leave S as it was. */
static int check_attn_scores_codes(int hd, int m, int group, int p0, const float *cs, const float *sn, size_t rowb)
{
    int bad = 0, isa = llmq_cpu_isa();
    size_t ldS = (size_t)m + 3, nS = (size_t)group * ldS;
    uint8_t *src = kvd_codes(m, rowb, llmq_kvq_row_bytes(hd, 4));
    float *lo = malloc((size_t)hd * sizeof *lo), *step = malloc((size_t)hd * sizeof *step);
    for (int c = 0; c < hd; c++) lo[c] = 3.0f * rndf(), step[c] = 0.2f * (rndf() + 1.0f);
    float *K = malloc((size_t)m * hd * sizeof *K), *Q = rand_vec((int64_t)group * hd, 1.0f);
    llmq_ktable_ref.kv_deq_channels(src, rowb, m, hd, 4, lo, step, K);
    float *S = malloc(nS * sizeof *S), *Sr = malloc(nS * sizeof *Sr);
    float scale = 1.0f / sqrtf((float)hd);
    for (size_t i = 0; i < nS; i++) S[i] = Sr[i] = bits_f32(ATT_SENTINEL);
    int done = llmq_attn_scores_codes(src, rowb, m, hd, 4, lo, step, p0, cs, sn, Q, group, scale, S, ldS);
    int must = isa == LLMQ_ISA_SCALAR || (isa == LLMQ_ISA_AVX512 && has_bf16_dot() && hd % 64 == 0 && hd <= 256);
    if (done != must) {
        fprintf(stderr, "  attn_scores_codes isa %s hd %d: returned %d\n", llmq_isa_name(isa), hd, done);
        bad = 1;
    }
    if (done) CHECK(llmq_ktable_ref.attn_scores_codes(src, rowb, m, hd, 4, lo, step, p0, cs, sn, Q, group, scale, Sr,
                                                      ldS));
    if (!bad) bad = !scores_close("attn_scores_codes", K, Q, hd, m, group, p0, cs, sn, scale, S, Sr, ldS, 0x1p-7, done);
    free(src); free(lo); free(step); free(K); free(Q); free(S); free(Sr);
    return !bad;
}

TEST(attn_scores_codes_vs_oracle)
{
    static const int hds[] = { 32, 64, 128, 192, 256, 320 };
    llmq_isa saved = llmq_cpu_isa();
    for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
        if (!isa_ok((llmq_isa)isa)) continue;
        llmq_cpu_set_isa((llmq_isa)isa);
        for (size_t di = 0; di < LLMQ_ARRAY_LEN(hds); di++)
            for (size_t pi = 0; pi < LLMQ_ARRAY_LEN(ATT_P0); pi++)
                for (size_t mi = 0; mi < LLMQ_ARRAY_LEN(ATT_M); mi++) {
                    int hd = hds[di], p0 = ATT_P0[pi], m = ATT_M[mi];
                    float *cs = att_table(p0, m, hd / 2), *sn = att_table(p0, m, hd / 2);
                    for (size_t gi = 0; gi < LLMQ_ARRAY_LEN(ATT_GROUP); gi++)
                        CHECK(check_attn_scores_codes(hd, m, ATT_GROUP[gi], p0, cs, sn,
                                                      llmq_kvq_row_bytes(hd, 4) + 3 * (gi & 1)));
                    free(cs); free(sn);
                }
    }
    llmq_cpu_set_isa(saved);
}

TEST(attn_values_codes_vs_oracle)
{
    static const int hds[] = { 32, 64, 96, 128, 256, 40 };
    llmq_isa saved = llmq_cpu_isa();
    for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
        if (!isa_ok((llmq_isa)isa)) continue;
        llmq_cpu_set_isa((llmq_isa)isa);
        for (int bits = 4; bits >= 2; bits -= 2)
            for (size_t di = 0; di < LLMQ_ARRAY_LEN(hds); di++) {
                int hd = hds[di];
                const int ngs[] = { 1, 2, 4, hd / 16, hd / 8 };
                for (size_t gi = 0; gi < LLMQ_ARRAY_LEN(ngs); gi++) {
                    int ng = ngs[gi], dup = 0;
                    for (size_t j = 0; j < gi; j++) dup |= ngs[j] == ng;
                    if (dup || ng < 1 || hd % ng || !llmq_kvq_whole_bytes(hd / ng, bits)) continue;
                    size_t rb = (size_t)ng * llmq_kvq_row_bytes(hd / ng, bits);
                    for (size_t mi = 0; mi < LLMQ_ARRAY_LEN(ATT_M); mi++)
                        for (size_t ci = 0; ci < LLMQ_ARRAY_LEN(ATT_GROUP); ci++)
                            CHECK(check_attn_values_codes(bits, hd, ng, ATT_M[mi], ATT_GROUP[ci], rb + 3 * (ci & 1)));
                }
            }
    }
    llmq_cpu_set_isa(saved);
}

/* One row of each width against values computed here: the code order
 * (least significant bits first) and the rounding, product then sum.
 * lo = -1, step = 1 / 3 (rounded), code 3: the product rounds to 1, the
 * sum is +0; an FMA would give 2^-25. */
TEST(kv_deq_rounding_and_order)
{
    llmq_isa saved = llmq_cpu_isa();
    for (int isa = LLMQ_ISA_SCALAR; isa <= LLMQ_ISA_AVX512; isa++) {
        if (!isa_ok((llmq_isa)isa)) continue;
        llmq_cpu_set_isa((llmq_isa)isa);
        for (size_t bi = 0; bi < LLMQ_ARRAY_LEN(KVD_BITS); bi++) {
            int bits = KVD_BITS[bi], hd = 16, top = (1 << bits) - 1;
            uint8_t codes[16], row[16];
            for (int c = 0; c < hd; c++) codes[c] = (uint8_t)(c % 2 ? 3 : c % (top + 1));
            llmq_kvq_pack(codes, hd, bits, row);
            size_t rb = llmq_kvq_row_bytes(hd, bits);
            uint8_t *src = malloc(rb);
            memcpy(src, row, rb);
            float lo[16], step[16], out[16];
            for (int c = 0; c < hd; c++) lo[c] = -1.0f, step[c] = 1.0f / 3.0f;
            llmq_kv_deq_channels(src, rb, 1, hd, bits, lo, step, out);
            for (int c = 0; c < hd; c++) {
                float want = codes[c] == 3 ? 0.0f : -1.0f + step[c] * (float)codes[c];
                CHECK_MSG(f32_bits(out[c]) == f32_bits(want), "isa %s bits %d c %d: %a, want %a",
                          llmq_isa_name(llmq_cpu_isa()), bits, c, (double)out[c], (double)want);
            }
            free(src);
        }
    }
    llmq_cpu_set_isa(saved);
}

TEST_MAIN()
