/*
 * kbench - decode (matvec) and prefill (matmul) throughput of every weight
 * type on every ISA this CPU has, next to a memory read bandwidth probe.
 *
 *   kbench [--threads N] [--rows R] [--cols C] [--tokens T] [--deciseconds D]
 *          [--group 32|64|128] [--type K] [--types NAME,...] [--isa NAME] [--interleave] [--lanes]
 *                                              (q4 / q3 group default 128, as llmq pack)
 *
 * "cold" cycles through copies of the matrix spread over a 1 GiB arena, so
 * weights come from DRAM as in a real decode step; "hot" repeats one matrix,
 * which may sit in a large L3.  GB/s counts llmq_wmat_bytes per product.
 * "%bw" is cold GB/s over a bandwidth probe run just before that row (the
 * machine may be shared: a neighbour's load moves both alike).  Rows q8a8
 * and q4a8 are the int8-activation products (W8A8 per token, W4A8 per 32
 * columns) on q8 and q4 weights.  q8_0 .. q6_k are ggml's block types as
 * GGUF files hold them (their bytes 0x30..0x3f too: f16 scales of 0.13 to
 * 1.0).  --types picks types by name (llmq_wtype_name, q8a8, q4a8), --isa
 * runs one ISA (scalar, avx2, avx512, or best: the best this CPU has)
 * instead of every one the CPU has.  --interleave runs q4 and q4a8 on rows
 * in the layout llmq verify gives them (tiles of four, wmat.h); --lanes runs
 * q4a8 on the tiles of sixteen rows that verify --act int8 gives int4 where
 * the host has AVX2 or AVX-512 VNNI (wmat.h's LLMQ_ILV_LANES; the scalar
 * ISA takes the oracle's kernel on them).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include "kernels/kernels.h"
#include "lib/base/blocks.h"
#include "eval.h"

#define ARENA_BYTES (1ull << 30)

static uint8_t *arena;
static int q4_group = 128;             /* llmq pack --format int4 default */
static int q4_ilv;                     /* --interleave: Q4 in the runner's tiles of four rows */
static int q4_lanes;                   /* --lanes: q4a8 on the W4A8 tiles of sixteen rows */
static int lanes_now;                  /* the row being measured is q4a8 under --lanes */

/* best read rate over the 1 GiB arena: the library's probe (llmq verify --bench) */
static double probe_bw(llmq_pool *pool, double secs)
{
    return llmq_bandwidth_probe_buf(pool, (const uint64_t *)arena, ARENA_BYTES / 8, secs) / 1e9;
}

/* Matrix number k of type t inside the arena (values are sane: every byte
 * is 0x30..0x3f, normal floats of either width, moderate codes). */
static llmq_wmat arena_mat(llmq_wtype t, int64_t rows, int64_t cols, uint64_t k)
{
    const int q43 = t == LLMQ_W_Q4 || t == LLMQ_W_Q3;
    llmq_wmat W = { t, rows, cols, NULL, NULL, NULL, q43 ? q4_group : t == LLMQ_W_MX8 ? 32 : 0, 0, 0 };
    if (llmq_wtype_is_ggml(t)) W.group = t >= LLMQ_W_GQ2_K ? 256 : 32;
    if (llmq_wtype_is_block(t)) W.group = llmq_block_size(t), W.tscale = 1.0f;
    W.zeros = q43 ? (const uint8_t *)1 : NULL;   /* placeholder for the size */
    if (lanes_now && t == LLMQ_W_Q4 && rows % LLMQ_ILV_LANES == 0) W.ilv = LLMQ_ILV_LANES;
    else if (q4_ilv && llmq_wmat_interleavable(&W)) W.ilv = LLMQ_ILV_ROWS;   /* random bytes: any layout */
    uint64_t bytes = llmq_wmat_bytes(&W), off = k * ((bytes + 4095) & ~4095ull);
    uint64_t n = (uint64_t)rows * (uint64_t)cols;
    uint8_t *p = arena + off;
    W.data = p;
    switch (t) {
    case LLMQ_W_Q8: W.scales = p + n; break;
    case LLMQ_W_Q4: W.scales = p + n / 2; W.zeros = p + n / 2 + 2 * (n / (uint64_t)q4_group); break;
    case LLMQ_W_Q3: W.scales = p + n / 8 * 3; W.zeros = p + n / 8 * 3 + 2 * (n / (uint64_t)q4_group); break;
    case LLMQ_W_MX8: W.scales = p + n; break;
    default:
        if (llmq_wtype_is_block(t)) W.scales = p + (llmq_wtype_is_block4(t) ? n / 2 : n);
        break;
    }
    if (W.ilv == LLMQ_ILV_LANES) W.lscales = W.scales, W.lzeros = W.zeros;   /* the same bytes, any order */
    return W;
}

static uint64_t n_copies(llmq_wtype t, int64_t rows, int64_t cols)
{
    llmq_wmat W = arena_mat(t, rows, cols, 0);
    return ARENA_BYTES / ((llmq_wmat_bytes(&W) + 4095) & ~4095ull);
}

/* activation modes of a row: fp32, per-token int8 (W8A8), per-32 int8 (W4A8) */
enum { ACT_FP, ACT_A8, ACT_Q4A8 };

/* ACT_Q4A8 times the activation quantization too (a decode step pays it). */
static double bench_matvec(llmq_pool *pool, llmq_wtype t, int64_t rows, int64_t cols,
                           int a8, int cold, double secs, double *us)
{
    uint64_t nc = cold ? n_copies(t, rows, cols) : 1, k = 0, iters = 0;
    float *x = malloc((size_t)cols * 4), *y = malloc((size_t)rows * 4);
    float *xbs = malloc((size_t)cols / LLMQ_A8_BLOCK * 4);
    int8_t *xq = malloc((size_t)cols);
    for (int64_t j = 0; j < cols; j++) x[j] = (float)((j * 7919) % 201 - 100) / 100.0f;
    float xs;
    llmq_quantize_act_i8(x, cols, xq, &xs);
    llmq_wmat W0 = arena_mat(t, rows, cols, 0);
    uint64_t bytes = llmq_wmat_bytes(&W0);
    double t0 = llmq_now(), t_end = t0 + secs;
    do {
        llmq_wmat W = arena_mat(t, rows, cols, k);
        if (a8 == ACT_Q4A8) {
            llmq_quantize_act_blocks(x, cols, xq, xbs);
            llmq_matvec_q4a8(pool, &W, xq, xbs, y);
        } else if (a8 == ACT_A8) {
            llmq_matvec_a8(pool, &W, xq, xs, y);
        } else {
            llmq_matvec(pool, &W, x, y);
        }
        iters++;
        if (++k == nc) k = 0;
    } while (llmq_now() < t_end || iters < 4);
    double dt = llmq_now() - t0;
    *us = dt / (double)iters * 1e6;
    free(x); free(y); free(xq); free(xbs);
    return (double)bytes * (double)iters / dt / 1e9;
}

/* a8: ACT_FP (f32 activations), ACT_A8 (W8A8), ACT_Q4A8 */
static double bench_matmul(llmq_pool *pool, llmq_wtype t, int64_t rows, int64_t cols, int64_t n, int a8, double secs)
{
    float *X = malloc((size_t)(n * cols) * 4), *Y = malloc((size_t)(n * rows) * 4);
    float *xbs = malloc((size_t)(n * cols) / LLMQ_A8_BLOCK * 4);
    int8_t *Xq = malloc((size_t)(n * cols));
    for (int64_t j = 0; j < n * cols; j++) X[j] = (float)((j * 7919) % 201 - 100) / 100.0f;
    llmq_wmat W = arena_mat(t, rows, cols, 0);
    uint64_t iters = 0;
    double t0 = llmq_now(), t_end = t0 + secs;
    do {
        if (a8 == ACT_Q4A8) {
            llmq_quantize_act_blocks(X, n * cols, Xq, xbs);
            llmq_matmul_q4a8(pool, &W, Xq, xbs, n, Y);
        } else if (a8 == ACT_A8) {
            for (int64_t t = 0; t < n; t++) llmq_quantize_act_i8(X + t * cols, cols, Xq + t * cols, &xbs[t]);
            llmq_matmul_a8(pool, &W, Xq, xbs, n, Y);
        } else {
            llmq_matmul(pool, &W, X, n, Y);
        }
        iters++;
    } while (llmq_now() < t_end || iters < 2);
    double dt = llmq_now() - t0;
    free(X); free(Y); free(Xq); free(xbs);
    return 2.0 * (double)rows * (double)cols * (double)n * (double)iters / dt / 1e9;
}

/* name of kbench type index t: the weight types, then q8a8 and q4a8 */
static const char *type_name(int t)
{
    return t == LLMQ_W_COUNT ? "q8a8" : t == LLMQ_W_COUNT + 1 ? "q4a8" : llmq_wtype_name((llmq_wtype)t);
}

static int arg_int(const char *s, const char *opt, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "kbench: %s: '%s' is not an integer in [%ld, %ld]\n", opt, s, lo, hi);
        return 0;
    }
    *out = v;
    return 1;
}

int main(int argc, char **argv)
{
    long threads = 2, rows = 2048, cols = 5632, tokens = 64, secs10 = 5, group = 128, only = -1;
    const char *types = NULL;
    int isa_lo = LLMQ_ISA_SCALAR, isa_hi = (int)llmq_cpu_isa_max();
    for (int i = 1; i < argc; i++) {
        long *dst = NULL, lo = 1, hi = 1 << 20;
        if (!strcmp(argv[i], "--types") && i + 1 < argc) { types = argv[++i]; continue; }
        if (!strcmp(argv[i], "--interleave")) { q4_ilv = 1; continue; }
        if (!strcmp(argv[i], "--lanes")) { q4_lanes = 1; continue; }
        if (!strcmp(argv[i], "--isa") && i + 1 < argc) {
            i++;
            int k = !strcmp(argv[i], "scalar") ? LLMQ_ISA_SCALAR : !strcmp(argv[i], "avx2") ? LLMQ_ISA_AVX2
                  : !strcmp(argv[i], "avx512") ? LLMQ_ISA_AVX512 : !strcmp(argv[i], "best") ? (int)llmq_cpu_isa_max() : -1;
            if (k < 0 || k > (int)llmq_cpu_isa_max()) { fprintf(stderr, "kbench: --isa: '%s' is not an ISA this CPU has\n", argv[i]); return 2; }
            isa_lo = isa_hi = k;
            continue;
        }
        if (!strcmp(argv[i], "--threads")) dst = &threads, hi = 256;
        else if (!strcmp(argv[i], "--rows")) dst = &rows;
        else if (!strcmp(argv[i], "--cols")) dst = &cols;
        else if (!strcmp(argv[i], "--tokens")) dst = &tokens, hi = 4096;
        else if (!strcmp(argv[i], "--deciseconds")) dst = &secs10, hi = 600;
        else if (!strcmp(argv[i], "--group")) dst = &group, lo = 32, hi = 128;
        else if (!strcmp(argv[i], "--type")) dst = &only, lo = 0, hi = LLMQ_W_COUNT + 1;
        else if (!strcmp(argv[i], "--help")) {
            printf("usage: kbench [--threads N] [--rows R] [--cols C] [--tokens T] [--deciseconds D]\n"
                   "              [--group 32|64|128] [--type K] [--types NAME,...] [--isa scalar|avx2|avx512|best]\n"
                   "              [--interleave] [--lanes]\n"
                   "  K or NAME:");
            for (int t = 0; t <= LLMQ_W_COUNT + 1; t++) printf(" %d %s", t, type_name(t));
            printf("\n");
            return 0;
        }
        if (!dst || i + 1 >= argc) { fprintf(stderr, "kbench: unknown or incomplete option '%s'\n", argv[i]); return 2; }
        if (!arg_int(argv[i + 1], argv[i], lo, hi, dst)) return 2;
        i++;
    }
    if (cols % 128) { fprintf(stderr, "kbench: --cols must be a multiple of 128\n"); return 2; }
    if (types)
        for (const char *p = types; *p;) {
            size_t n = strcspn(p, ",");
            int found = 0;
            for (int t = 0; t <= LLMQ_W_COUNT + 1; t++)
                found |= strlen(type_name(t)) == n && !strncmp(p, type_name(t), n);
            if (!found) { fprintf(stderr, "kbench: --types: unknown type '%.*s'\n", (int)n, p); return 2; }
            p += n + (p[n] == ',');
        }
    if (group != 32 && group != 64 && group != 128) { fprintf(stderr, "kbench: --group must be 32, 64 or 128\n"); return 2; }
    q4_group = (int)group;
    llmq_err err;
    llmq_pool *pool = llmq_pool_new((int)threads, &err);
    arena = llmq_alloc_aligned(ARENA_BYTES, &err);
    if (!pool || !arena) { fprintf(stderr, "kbench: %s\n", err.msg); return 6; }
    uint64_t s = 1;
    for (uint64_t i = 0; i < ARENA_BYTES; i++) { s = s * 6364136223846793005ull + 1442695040888963407ull; arena[i] = (uint8_t)(0x30 | (s >> 60)); }
    double secs = (double)secs10 / 10.0;

    double bw = probe_bw(pool, secs);
    printf("memory read bandwidth probe: %.1f GB/s (sum of a 1 GiB buffer, %ld threads)\n", bw, threads);
    printf("%-6s %-7s %9s %9s %6s %9s %6s %6s %12s\n", "type", "isa", "cold GB/s", "hot GB/s", "%bw", "us/matvec",
           "rows", "cols", "prefill GF/s");
    for (int isa = isa_lo; isa <= isa_hi; isa++) {
        llmq_cpu_set_isa((llmq_isa)isa);
        for (int t = 0; t <= LLMQ_W_COUNT + 1; t++) {
            if (only >= 0 && t != only) continue;
            if (types) {   /* whole names in the comma list */
                size_t n = strlen(type_name(t));
                const char *p = types;
                int in = 0;
                for (; *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ','))
                    in |= strcspn(p, ",") == n && !strncmp(p, type_name(t), n);
                if (!in) continue;
            }
            int a8 = t == LLMQ_W_COUNT ? ACT_A8 : t == LLMQ_W_COUNT + 1 ? ACT_Q4A8 : ACT_FP;
            llmq_wtype wt = a8 == ACT_A8 ? LLMQ_W_Q8 : a8 == ACT_Q4A8 ? LLMQ_W_Q4 : (llmq_wtype)t;
            lanes_now = q4_lanes && a8 == ACT_Q4A8;
            if (wt >= LLMQ_W_GQ2_K && wt <= LLMQ_W_GQ6_K && cols % 256) {
                printf("%-6s %-7s (skipped: --cols %ld is not whole 256-value super-blocks)\n", type_name(t),
                       llmq_isa_name((llmq_isa)isa), cols);
                continue;
            }
            double us, us_hot, near_bw = probe_bw(pool, 0.3);
            if (near_bw > bw) bw = near_bw;
            double cold = bench_matvec(pool, wt, rows, cols, a8, 1, isa == LLMQ_ISA_SCALAR ? secs / 4 : secs, &us);
            double hot = bench_matvec(pool, wt, rows, cols, a8, 0, isa == LLMQ_ISA_SCALAR ? secs / 8 : secs / 2, &us_hot);
            double gf = bench_matmul(pool, wt, rows, cols, tokens, a8, secs / 4);
            printf("%-6s %-7s %9.1f %9.1f %5.0f%% %9.1f %6ld %6ld ", type_name(t), llmq_isa_name((llmq_isa)isa),
                   cold, hot, 100.0 * cold / near_bw, us, rows, cols);
            printf("%12.1f\n", gf);
            fflush(stdout);
        }
    }
    printf("q4 / q3 group %d; prefill: %ld tokens, f32 tiles + OpenBLAS sgemm (q8a8, q4a8: int8 products, activation\n"
           "quantization included); q4a8 decode includes quantizing x; best bandwidth probe %.1f GB/s\n",
           q4_group, tokens, bw);
    free(arena);
    llmq_pool_free(pool);
    return 0;
}
