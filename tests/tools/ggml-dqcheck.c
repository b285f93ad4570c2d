/*
 * ggml-dqcheck - llmq's kernels on ggml's block types against ggml's own
 * code (node-llama-cpp's prebuilt libggml-base.so):
 *
 *   ggml-dqcheck LIBGGML_BASE.so [ROWS]
 *
 * For each of Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K: ROWS
 * (default 48) random float rows of 4096 values (several shapes: gaussian-
 * like, outliers, tiny values that give subnormal f16 scales, constant and
 * zero rows) quantized by ggml's quantize_row_<type>_ref, and as many rows
 * of random block bytes with finite f16 scales (codes and packed scales
 * the quantizers never write); then
 *   - llmq's oracle dequantization (lib/quant/ggml_blocks.c) must equal
 *     ggml's dequantize_row_<type> bit for bit, and
 *   - llmq_matvec on every ISA the CPU has must equal the double sum of
 *     ggml's dequantized row times x within 2e-6 * sum |w x|.
 * Prints one line per type; exit 1 on any difference, 2 on usage or a
 * library without the functions.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../../lib/kernels/kernels.h"
#include "../../lib/quant/ggml_blocks.h"

#define COLS 4096
#define TOL_DOT 2e-6

typedef void (*qfn)(const float *x, void *y, int64_t k);
typedef void (*dqfn)(const void *x, float *y, int64_t k);

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }
static float rndf(void) { return (float)((double)(rnd() >> 11) / 9007199254740992.0 * 2.0 - 1.0); }

/* row r's values: the shape cycles with r */
static void make_row(float *x, int r)
{
    switch (r % 6) {
    case 0: case 1:   /* roughly gaussian, as trained weights are */
        for (int j = 0; j < COLS; j++) x[j] = 0.02f * (rndf() + rndf() + rndf() + rndf());
        break;
    case 2:           /* outliers */
        for (int j = 0; j < COLS; j++) x[j] = 0.01f * rndf() * (rnd() % 97 == 0 ? 300.0f : 1.0f);
        break;
    case 3:           /* tiny: f16 scales go subnormal */
        for (int j = 0; j < COLS; j++) x[j] = 1e-6f * rndf();
        break;
    case 4:           /* one sign, offset: the minimum-carrying types' mins matter */
        for (int j = 0; j < COLS; j++) x[j] = 0.5f + 0.1f * rndf();
        break;
    default:          /* blocks of zeros and constants between random ones */
        for (int j = 0; j < COLS; j++) x[j] = (j / 256) % 3 == 0 ? 0.0f : (j / 256) % 3 == 1 ? 0.25f : rndf();
        break;
    }
}

/* a finite f16 of moderate size, sometimes subnormal, zero or large */
static uint16_t rand_f16(void)
{
    switch (rnd() % 16) {
    case 0: return (uint16_t)(rnd() & 0x83ff);
    case 1: return (uint16_t)((rnd() & 0x8000) | 0x7800 | (rnd() & 0x3ff));
    case 2: return 0;
    default: return llmq_f32_to_f16(rndf() * 0.05f);
    }
}

static const int *f16_fields(int i)
{
    static const int at0[] = { 0, -1 }, at02[] = { 0, 2, -1 }, q2k[] = { 80, 82, -1 }, q3k[] = { 108, -1 },
                     q6k[] = { 208, -1 };
    switch (LLMQ_W_GQ8_0 + i) {
    case LLMQ_W_GQ4_1: case LLMQ_W_GQ5_1: case LLMQ_W_GQ4_K: case LLMQ_W_GQ5_K: return at02;
    case LLMQ_W_GQ2_K: return q2k;
    case LLMQ_W_GQ3_K: return q3k;
    case LLMQ_W_GQ6_K: return q6k;
    default: return at0;
    }
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) { fprintf(stderr, "usage: ggml-dqcheck LIBGGML_BASE.so [ROWS]\n"); return 2; }
    int rows = argc == 3 ? atoi(argv[2]) : 48;
    if (rows < 1 || rows > 100000) { fprintf(stderr, "ggml-dqcheck: ROWS must be 1..100000\n"); return 2; }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) { fprintf(stderr, "%s\n", dlerror()); return 2; }
    int total_bad = 0;
    float *x = malloc(COLS * sizeof(float)), *a = malloc(COLS * sizeof(float)), *b = malloc(COLS * sizeof(float));
    float *xv = malloc(COLS * sizeof(float));
    for (int i = 0; i < LLMQ_GQ_COUNT; i++) {
        const llmq_gq_traits *g = &llmq_gq_types[i];
        char name[32], qn[64], dn[64];
        snprintf(name, sizeof name, "%s", g->name);
        if (g->qk == LLMQ_GQK_K) name[3] = 'K';                     /* ggml spells q4_K */
        snprintf(qn, sizeof qn, "quantize_row_%s_ref", name);
        snprintf(dn, sizeof dn, "dequantize_row_%s", name);
        qfn quant = (qfn)dlsym(lib, qn);
        dqfn deq = (dqfn)dlsym(lib, dn);
        if (!quant || !deq) { fprintf(stderr, "%s: no %s or %s\n", argv[1], qn, dn); return 2; }
        const int64_t rb = COLS / g->qk * g->block_bytes;
        int n = 2 * rows;                                           /* quantized rows, then random bytes */
        uint8_t *data = malloc((size_t)(n * rb) + 1), *m = data + 1; /* at an odd address */
        for (int r = 0; r < rows; r++) {
            make_row(x, r);
            quant(x, m + r * rb, COLS);
        }
        for (int64_t k = rows * rb; k < n * rb; k++) m[k] = (uint8_t)rnd();
        for (int64_t blk = rows * (COLS / g->qk); blk < n * (COLS / g->qk); blk++)
            for (const int *f = f16_fields(i); *f >= 0; f++) llmq_put_le16(m + blk * g->block_bytes + *f, rand_f16());
        llmq_wmat W = { (llmq_wtype)(LLMQ_W_GQ8_0 + i), n, COLS, m, NULL, NULL, g->qk, 0, 0 };
        llmq_err err;
        if (llmq_wmat_check(&W, g->name, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
        for (int j = 0; j < COLS; j++) xv[j] = rndf();
        float *y = malloc((size_t)n * sizeof(float));
        int bad_dq = 0, bad_mv = 0;
        double worst = 0;
        for (int r = 0; r < n; r++) {
            deq(m + r * rb, a, COLS);
            g->dequant(m + r * rb, b, COLS);
            if (memcmp(a, b, COLS * sizeof(float))) {
                if (bad_dq < 3) {
                    int j = 0;
                    while (!memcmp(a + j, b + j, sizeof(float))) j++;
                    fprintf(stderr, "%s row %d value %d: llmq %.9g, ggml %.9g\n", name, r, j, b[j], a[j]);
                }
                bad_dq++;
            }
        }
        for (int isa = LLMQ_ISA_SCALAR; isa <= (int)llmq_cpu_isa_max(); isa++) {
            llmq_cpu_set_isa((llmq_isa)isa);
            llmq_matvec(NULL, &W, xv, y);
            for (int r = 0; r < n; r++) {
                deq(m + r * rb, a, COLS);
                double s = 0, sa = 0;
                for (int j = 0; j < COLS; j++) { s += (double)a[j] * xv[j]; sa += fabs((double)a[j] * xv[j]); }
                double e = fabs((double)y[r] - s);
                if (sa > 0 && e / sa > worst) worst = e / sa;
                if (!(e <= TOL_DOT * sa + 1e-30)) {
                    if (bad_mv < 3) fprintf(stderr, "%s %s row %d: llmq matvec %.9g, ggml row . x %.9g\n", name,
                                            llmq_isa_name((llmq_isa)isa), r, y[r], s);
                    bad_mv++;
                }
            }
        }
        llmq_cpu_set_isa(llmq_cpu_isa_max());
        printf("%-5s %d rows x %d (%d quantized by %s, %d random): dequant %s; matvec on %s..%s %s (worst %.2g of sum|wx|)\n",
               name, n, COLS, rows, qn, rows, bad_dq ? "DIFFERS" : "bit-identical", llmq_isa_name(LLMQ_ISA_SCALAR),
               llmq_isa_name(llmq_cpu_isa_max()), bad_mv ? "OUT OF TOLERANCE" : "within 2e-6", worst);
        total_bad += bad_dq + bad_mv;
        free(y);
        free(data);
    }
    free(x); free(a); free(b); free(xv);
    dlclose(lib);
    return total_bad ? 1 : 0;
}
