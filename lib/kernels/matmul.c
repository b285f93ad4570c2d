/*
 * matmul.c - the threaded entry points of kernels.h: rows go to the pool's
 * threads in blocks taken on demand (rowq below) and are handed to the
 * current ISA's row kernels.  Prefill converts row tiles to f32 in
 * per-thread scratch and multiplies them with OpenBLAS sgemm
 * (single-threaded: cpu.c sets that once); W4A8 and W8A8 prefill walk int
 * tiles held in cache across the tokens.
 */
#include <limits.h>
#include <string.h>
#include <math.h>
#include <cblas.h>
#include "kern-int.h"
#include "../base/blocks.h"
#include "../quant/ggml_blocks.h"

/* Row blocks are multiples of this, so the 4-row kernels see few tails. */
#define ROW_ALIGN 16
/* Below this many weight bytes a matvec runs on the caller alone: waking the
 * pool costs more than the whole product. */
#define SMALL_BYTES (128u * 1024u)
/* Prefill with fewer tokens than this streams the weights once per token
 * instead of converting them; conversion costs more than it saves. */
#define MIN_GEMM_TOKENS 3
/* f32 tile target: 256 rows, fewer for very wide rows.  OpenBLAS packs all
 * of X (n x cols) again in every sgemm call, so a tile must be tall enough
 * to amortize that: 64-row tiles (32 for 5632 columns) spent about a third
 * of bf16 prefill repacking X; 256 rows ran 1.1-1.5x faster at 512 tokens. */
#define TILE_ROWS 256
#define TILE_BYTES (8u << 20)

uint64_t llmq_wmat_bytes(const llmq_wmat *W)
{
    uint64_t r = (uint64_t)W->rows, c = (uint64_t)W->cols, n = r * c;
    switch (W->type) {
    case LLMQ_W_F32:  return 4 * n;
    case LLMQ_W_BF16:
    case LLMQ_W_F16:  return 2 * n;
    case LLMQ_W_Q8:   return n + 4 * r;
    case LLMQ_W_Q4: {
        uint64_t g = W->group > 0 ? r * (c / (uint64_t)W->group) : 0;
        return n / 2 + 2 * g + (W->zeros ? g : 0);
    }
    case LLMQ_W_Q3: {
        uint64_t g = W->group > 0 ? r * (c / (uint64_t)W->group) : 0;
        return n / 8 * 3 + 2 * g + (W->zeros ? g : 0);
    }
    case LLMQ_W_MX8:  return n + n / LLMQ_MX8_BLOCK;
    case LLMQ_W_MXFP4:
    case LLMQ_W_MXINT4:
    case LLMQ_W_NVFP4:
    case LLMQ_W_NVINT4:
    case LLMQ_W_MXFP8: {
        uint64_t codes = llmq_wtype_is_block4(W->type) ? n / 2 : n;
        return codes + n / (uint64_t)llmq_block_size(W->type) + (llmq_wtype_is_nv(W->type) ? 4 : 0);
    }
    default:
        if (llmq_wtype_is_ggml(W->type)) {
            const llmq_gq_traits *g = &llmq_gq_types[W->type - LLMQ_W_GQ8_0];
            return r * (c / (uint64_t)g->qk) * (uint64_t)g->block_bytes;
        }
        return 0;
    }
}

const char *llmq_wtype_name(llmq_wtype t)
{
    static const char *tn[] = { "f32", "bf16", "f16", "q8", "q4", "mx8" };
    _Static_assert(LLMQ_ARRAY_LEN(tn) == LLMQ_W_GQ8_0, "a name for every llmq type");
    if ((unsigned)t < LLMQ_W_GQ8_0) return tn[t];
    if (llmq_wtype_is_ggml(t)) return llmq_gq_types[t - LLMQ_W_GQ8_0].name;
    if (llmq_wtype_is_block(t)) return llmq_block_name(t);
    if (t == LLMQ_W_Q3) return "q3";
    return "?";
}

int llmq_wtype_of_ggml(uint32_t ggml_type)
{
    switch (ggml_type) {
    case 0:  return LLMQ_W_F32;
    case 1:  return LLMQ_W_F16;
    case 30: return LLMQ_W_BF16;
    default: break;
    }
    for (int i = 0; i < LLMQ_GQ_COUNT; i++)
        if (llmq_gq_types[i].ggml_type == ggml_type) return LLMQ_W_GQ8_0 + i;
    return -1;
}

int64_t llmq_wmat_row_bytes(const llmq_wmat *W)
{
    switch (W->type) {
    case LLMQ_W_BF16:
    case LLMQ_W_F16:    return 2 * W->cols;
    case LLMQ_W_Q8:
    case LLMQ_W_MX8:
    case LLMQ_W_MXFP8:  return W->cols;
    case LLMQ_W_Q4:
    case LLMQ_W_MXFP4:
    case LLMQ_W_MXINT4:
    case LLMQ_W_NVFP4:
    case LLMQ_W_NVINT4: return W->cols / 2;
    default:            return 0;   /* f32 (sgemm reads it in place), Q3, ggml's blocks */
    }
}

static int ilv_shape_ok(const llmq_wmat *W)
{
    int64_t rb = llmq_wmat_row_bytes(W);
    return rb > 0 && rb % LLMQ_ILV_LINE == 0 && W->rows % LLMQ_ILV_ROWS == 0;
}

int llmq_wmat_interleavable(const llmq_wmat *W) { return !W->ilv && ilv_shape_ok(W); }

int llmq_wmat_lanes_ok(const llmq_wmat *W)
{
    return !W->ilv && W->type == LLMQ_W_Q4 && llmq_q4_group_ok(W->group) && W->cols % W->group == 0 &&
           W->rows % LLMQ_ILV_LANES == 0 && W->scales;
}

uint64_t llmq_wmat_lanes_bytes(const llmq_wmat *W)
{
    uint64_t g = (uint64_t)W->rows * (uint64_t)(W->cols / W->group);
    return (uint64_t)W->rows * (uint64_t)(W->cols / 2) + 2 * g + (W->zeros ? g : 0);
}

void llmq_wmat_interleave_lanes(llmq_wmat *W, uint8_t *dst)
{
    const int64_t rb = W->cols / 2, lines = rb / LLMQ_ILV_LANE_LINE, ng = W->cols / W->group, R = LLMQ_ILV_LANES;
    const uint8_t *src = W->data;
    const uint16_t *sc = W->scales;
    uint16_t *lsc = (uint16_t *)(dst + W->rows * rb);
    uint8_t *lz = W->zeros ? (uint8_t *)(lsc + W->rows * ng) : NULL;
    for (int64_t r = 0; r < W->rows; r += R) {
        for (int64_t j = 0; j < lines; j++)
            for (int k = 0; k < R; k++)
                memcpy(dst + r * rb + (j * R + k) * LLMQ_ILV_LANE_LINE, src + (r + k) * rb + j * LLMQ_ILV_LANE_LINE,
                       LLMQ_ILV_LANE_LINE);
        for (int64_t g = 0; g < ng; g++)
            for (int k = 0; k < R; k++) {
                lsc[(r / R * ng + g) * R + k] = sc[(r + k) * ng + g];
                if (lz) lz[(r / R * ng + g) * R + k] = W->zeros[(r + k) * ng + g];
            }
    }
    W->data = dst;
    W->lscales = lsc;
    W->lzeros = lz;
    W->ilv = LLMQ_ILV_LANES;
}

void llmq_wmat_interleave(const llmq_wmat *W, uint8_t *dst)
{
    const int64_t rb = llmq_wmat_row_bytes(W), lines = rb / LLMQ_ILV_LINE;
    const uint8_t *src = W->data;
    for (int64_t r = 0; r < W->rows; r += LLMQ_ILV_ROWS)
        for (int64_t j = 0; j < lines; j++)
            for (int k = 0; k < LLMQ_ILV_ROWS; k++)
                memcpy(dst + r * rb + (j * LLMQ_ILV_ROWS + k) * LLMQ_ILV_LINE,
                       src + (r + k) * rb + j * LLMQ_ILV_LINE, LLMQ_ILV_LINE);
}

int llmq_wmat_check(const llmq_wmat *W, const char *name, llmq_err *err)
{
    if (!name) name = "?";
    if ((unsigned)W->type >= LLMQ_W_COUNT)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "tensor '%s': unknown weight type %d", name, (int)W->type);
    const char *t = llmq_wtype_name(W->type);
    if (W->rows < 1 || W->cols < 1 || W->rows > INT_MAX || W->cols > INT_MAX)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "tensor '%s': %s shape [%" PRId64 ", %" PRId64
                           "] outside [1, %d]", name, t, W->rows, W->cols, INT_MAX);
    uint64_t n;
    if (llmq_mul_ovf_u64((uint64_t)W->rows, (uint64_t)W->cols, &n) || n > (UINT64_MAX >> 3))
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "tensor '%s': too many elements", name);
    if (!W->data)
        return llmq_errorf(err, LLMQ_EINTERNAL, "tensor '%s': %s matrix without data", name, t);
    if (W->type >= LLMQ_W_Q8 && !llmq_wtype_is_ggml(W->type) && !W->scales)
        return llmq_errorf(err, LLMQ_EFORMAT, "tensor '%s': %s matrix without scales", name, t);
    if (W->type == LLMQ_W_Q4 || W->type == LLMQ_W_Q3) {
        if (!llmq_q4_group_ok(W->group))
            return llmq_errorf(err, LLMQ_EUNSUPPORTED, "tensor '%s': %s group %d is not 32, 64 or 128",
                               name, t, W->group);
        if (W->cols % W->group)
            return llmq_errorf(err, LLMQ_EFORMAT, "tensor '%s': %s cols %" PRId64
                               " not a multiple of group %d", name, t, W->cols, W->group);
    }
    if (W->ilv == LLMQ_ILV_LANES) {
        llmq_wmat p = *W;
        p.ilv = 0;
        if (!llmq_wmat_lanes_ok(&p) || !W->lscales || !W->lzeros != !W->zeros)
            return llmq_errorf(err, LLMQ_EINTERNAL, "tensor '%s': %s [%" PRId64 ", %" PRId64 "] cannot be "
                               "interleaved by %d", name, t, W->rows, W->cols, W->ilv);
    } else if (W->ilv && (W->ilv != LLMQ_ILV_ROWS || !ilv_shape_ok(W)))
        return llmq_errorf(err, LLMQ_EINTERNAL, "tensor '%s': %s [%" PRId64 ", %" PRId64 "] cannot be interleaved "
                           "by %d", name, t, W->rows, W->cols, W->ilv);
    if (W->type == LLMQ_W_MX8) {
        if (W->group != LLMQ_MX8_BLOCK)
            return llmq_errorf(err, LLMQ_EUNSUPPORTED, "tensor '%s': mx8 block %d is not %d",
                               name, W->group, LLMQ_MX8_BLOCK);
        if (W->cols % LLMQ_MX8_BLOCK)
            return llmq_errorf(err, LLMQ_EFORMAT, "tensor '%s': mx8 cols %" PRId64
                               " not a multiple of %d", name, W->cols, LLMQ_MX8_BLOCK);
    }
    if (llmq_wtype_is_block(W->type)) {
        int B = llmq_block_size(W->type);
        if (W->group != B)
            return llmq_errorf(err, LLMQ_EINTERNAL, "tensor '%s': %s block %d is not %d", name, t, W->group, B);
        if (W->cols % 32)   /* the kernels walk rows 32 columns at a time, NV blocks of 16 too */
            return llmq_errorf(err, LLMQ_EFORMAT, "tensor '%s': %s rows of %" PRId64
                               " values are not a multiple of 32", name, t, W->cols);
        if (llmq_wtype_is_nv(W->type) && !(W->tscale > 0.0f && isfinite(W->tscale)))
            return llmq_errorf(err, LLMQ_EFORMAT, "tensor '%s': %s tensor scale %g is not a positive number",
                               name, t, (double)W->tscale);
    }
    if (llmq_wtype_is_ggml(W->type)) {
        int qk = llmq_gq_types[W->type - LLMQ_W_GQ8_0].qk;
        if (W->group != qk)
            return llmq_errorf(err, LLMQ_EINTERNAL, "tensor '%s': %s group %d is not its block size %d",
                               name, t, W->group, qk);
        if (W->cols % qk)
            return llmq_errorf(err, LLMQ_EFORMAT, "tensor '%s': %s rows of %" PRId64
                               " values are not whole blocks of %d", name, t, W->cols, qk);
    }
    return LLMQ_OK;
}

/* The table whose kernels read W: rows in tiles of sixteen are for the
 * W4A8 kernels (matmul_q4a8); every other product of them is the oracle's. */
static const llmq_ktable *kt_of(const llmq_wmat *W)
{
    return W->ilv == LLMQ_ILV_LANES ? &llmq_ktable_ref : llmq_ktable_cur();
}

void llmq_get_row(const llmq_wmat *W, int64_t r, float *out)
{
    kt_of(W)->dequant[W->type](W, r, r + 1, out);
}

/* ---- row blocks handed out on demand ----
 *
 * Threads take blocks of rows from a shared counter instead of a fixed
 * half each: when a thread starts late (a pool wake-up, a core shared with
 * other processes), the others take its blocks rather than wait for it.
 * Every row is computed the same way whichever thread takes it, so results
 * do not depend on the schedule. */

typedef struct { int64_t next, blk, total; } rowq;

static rowq rowq_make(int64_t total, int64_t blk) { rowq q = { 0, LLMQ_MAX(blk, 1), total }; return q; }

/* The next block [*lo, *hi), or 0 when all are taken. */
static int rowq_take(rowq *q, int64_t *lo, int64_t *hi)
{
    int64_t r = __atomic_fetch_add(&q->next, q->blk, __ATOMIC_RELAXED);
    if (r >= q->total) return 0;
    *lo = r;
    *hi = LLMQ_MIN(r + q->blk, q->total);
    return 1;
}

/* Decode blocks: about 8 per thread, multiples of ROW_ALIGN. */
static int64_t mv_block(int64_t rows, llmq_pool *pool)
{
    int64_t per = rows / (8 * (int64_t)llmq_pool_size(pool));
    return LLMQ_MAX(ROW_ALIGN, (per + ROW_ALIGN - 1) / ROW_ALIGN * ROW_ALIGN);
}

/* ---- matvec ---- */

struct mv_job {
    llmq_kmv_fn fn;
    const llmq_wmat *W;
    const float *x;
    float *y;
    rowq q;
};

static void mv_worker(void *ctx, int i, int n)
{
    (void)i; (void)n;
    struct mv_job *j = ctx;
    int64_t lo, hi;
    while (rowq_take(&j->q, &lo, &hi)) j->fn(j->W, lo, hi, j->x, j->y + lo);
}

void llmq_matvec(llmq_pool *pool, const llmq_wmat *W, const float *x, float *y)
{
    if (llmq_wmat_bytes(W) < SMALL_BYTES) pool = NULL;
    struct mv_job j = { kt_of(W)->matvec[W->type], W, x, y, rowq_make(W->rows, mv_block(W->rows, pool)) };
    llmq_pool_run(pool, mv_worker, &j);
}

/* ---- matmul ---- */

struct mm_job {
    const llmq_ktable *kt;
    const llmq_wmat *W;
    const float *X;
    int64_t n;
    float *Y;
    rowq q;                 /* tiles */
};

/* Fallback without scratch: one matvec per token over rows [lo, hi). */
static void mm_by_rows(const struct mm_job *j, int64_t lo, int64_t hi)
{
    const llmq_wmat *W = j->W;
    llmq_kmv_fn fn = j->kt->matvec[W->type];
    for (int64_t t = 0; t < j->n; t++)
        fn(W, lo, hi, j->X + t * W->cols, j->Y + t * W->rows + lo);
}

/* rows per tile for W: a widened tile fits the scratch (TILE_BYTES); fp32
 * weights need no scratch, so their tiles are as large as two per thread
 * allow: each sgemm call packs all of X again, so fewer calls pack less. */
static int64_t mm_tile(const llmq_wmat *W, llmq_pool *pool)
{
    if (W->type == LLMQ_W_F32) {
        int64_t per = 2 * (int64_t)llmq_pool_size(pool);
        return LLMQ_MAX(TILE_ROWS, (W->rows + per - 1) / per + 15) & ~(int64_t)15;
    }
    int64_t tile = TILE_ROWS;
    while (tile > 8 && (uint64_t)tile * (uint64_t)W->cols * 4 > TILE_BYTES) tile /= 2;
    return tile;
}

static void mm_worker(void *ctx, int i, int nth)
{
    (void)i; (void)nth;
    struct mm_job *j = ctx;
    const llmq_wmat *W = j->W;
    int64_t lo, hi, cols = W->cols;
    float *buf = NULL;
    int tried = 0;
    llmq_kdeq_fn deq = j->kt->dequant[W->type];
    while (rowq_take(&j->q, &lo, &hi)) {
        if (!tried && j->n >= MIN_GEMM_TOKENS && W->type != LLMQ_W_F32) {   /* only a thread that gets a tile */
            buf = llmq_alloc_aligned((size_t)j->q.blk * (size_t)cols * sizeof(float), NULL);
            tried = 1;
        }
        if (j->n >= MIN_GEMM_TOKENS && W->type == LLMQ_W_F32) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)j->n, (int)(hi - lo), (int)cols,
                        1.0f, j->X, (int)cols, (const float *)W->data + lo * cols, (int)cols,
                        0.0f, j->Y + lo, (int)W->rows);
        } else if (buf) {
            deq(W, lo, hi, buf);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)j->n, (int)(hi - lo), (int)cols,
                        1.0f, j->X, (int)cols, buf, (int)cols, 0.0f, j->Y + lo, (int)W->rows);
        } else {
            mm_by_rows(j, lo, hi);   /* few tokens, or no scratch: slower, same result */
        }
    }
    free(buf);
}

void llmq_matmul(llmq_pool *pool, const llmq_wmat *W, const float *X, int64_t n, float *Y)
{
    if (n <= 0) return;
    if (n == 1) { llmq_matvec(pool, W, X, Y); return; }
    int64_t blk = n < MIN_GEMM_TOKENS ? mv_block(W->rows, pool) : mm_tile(W, pool);
    struct mm_job j = { kt_of(W), W, X, n, Y, rowq_make(W->rows, blk) };
    if (n > INT_MAX) j.n = MIN_GEMM_TOKENS - 1;   /* sgemm takes int sizes */
    if (j.n != n) {
        for (int64_t t = 0; t < n; t++) llmq_matvec(pool, W, X + t * W->cols, Y + t * W->rows);
        return;
    }
    llmq_pool_run(pool, mm_worker, &j);
}

/* ---- W8A8 ---- */

void llmq_quantize_act_i8(const float *x, int64_t n, int8_t *q, float *scale)
{
    /* no libm calls per element (see llmq_q8_quantize_row); the comparisons
     * drop a NaN as fmaxf / fminf do, so no float-to-int conversion is
     * undefined, and adding and taking away 1.5 * 2^23 rounds half to even
     * as lrintf does for |v| <= 127 */
    float amax = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        amax = a > amax ? a : amax;
    }
    float s = amax / 127.0f;
    *scale = s;
    float inv = s > 0.0f ? 127.0f / amax : 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] * inv;
        v = v > -127.0f ? v : -127.0f;
        v = v < 127.0f ? v : 127.0f;
        v = (v + 0x1.8p23f) - 0x1.8p23f;
        q[i] = (int8_t)v;
    }
}

static int32_t sum_i8(const int8_t *x, int64_t n)
{
    int32_t s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    return s;
}

struct a8_job {
    llmq_kmva8_fn fn;       /* decode */
    llmq_kmma8_fn mfn;      /* prefill */
    const llmq_wmat *W;
    const int8_t *Xq;
    const float *xs;
    const int32_t *xsum;    /* (n) code sums, the VNNI bias correction */
    int64_t n;
    float *Y;
    rowq q;                 /* decode blocks, or prefill tiles */
};

static void a8_worker(void *ctx, int i, int nth)
{
    (void)i; (void)nth;
    struct a8_job *j = ctx;
    const llmq_wmat *W = j->W;
    int64_t lo, hi;
    while (rowq_take(&j->q, &lo, &hi)) {
        if (j->n == 1) j->fn(W, lo, hi, j->Xq, j->xs[0], j->xsum[0], j->Y + lo);
        else j->mfn(W, lo, hi, j->Xq, j->xs, j->xsum, j->n, j->Y + lo, W->rows);
    }
}

void llmq_matmul_a8(llmq_pool *pool, const llmq_wmat *W, const int8_t *Xq, const float *xscales,
                    int64_t n, float *Y)
{
    if (n <= 0) return;
    const llmq_ktable *kt = W->cols > LLMQ_A8_MAX_COLS ? &llmq_ktable_ref : llmq_ktable_cur();
    if (n == 1 && llmq_wmat_bytes(W) < SMALL_BYTES) pool = NULL;
    int32_t sum1, *xsum = n == 1 ? &sum1 : malloc((size_t)n * sizeof *xsum);
    if (!xsum) {   /* no room for the sums: a token at a time, same values */
        for (int64_t t = 0; t < n; t++) llmq_matmul_a8(pool, W, Xq + t * W->cols, xscales + t, 1, Y + t * W->rows);
        return;
    }
    for (int64_t t = 0; t < n; t++) xsum[t] = sum_i8(Xq + t * W->cols, W->cols);
    /* prefill: a tile of int8 rows stays in L2 while every token passes over it */
    int64_t blk = n == 1 ? mv_block(W->rows, pool) : LLMQ_MAX(4, (int64_t)(512 * 1024) / W->cols);
    struct a8_job j = { kt->matvec_a8, kt->matmul_a8, W, Xq, xscales, xsum, n, Y, rowq_make(W->rows, blk) };
    llmq_pool_run(pool, a8_worker, &j);
    if (xsum != &sum1) free(xsum);
}

void llmq_matvec_a8(llmq_pool *pool, const llmq_wmat *W, const int8_t *xq, float xscale, float *y)
{
    llmq_matmul_a8(pool, W, xq, &xscale, 1, y);
}

/* ---- W4A8 ---- */

void llmq_quantize_act_blocks(const float *x, int64_t n, int8_t *q, float *scales)
{
    llmq_ktable_cur()->quant_blocks(x, n, q, scales);
}

/* Prefill tiles: this many bytes of int4 codes stay in L2 while every token
 * passes over them. */
#define Q4A8_TILE_BYTES (256u * 1024u)

/* Tokens per matmul_q4a8 call, their llmq_q4a8_x views on the worker's
 * stack (the AVX2 kernel takes them 8 at a time). */
#define Q4A8_BATCH 16

struct q4a8_job {
    llmq_kq4a8_fn fn;
    llmq_kq4a8n_fn mfn;      /* prefill, NULL: fn once per token */
    const llmq_wmat *W;
    const int8_t *Xq;
    const float *xs;
    llmq_q4a8_chunk *ch;     /* [n][nck], NULL for the oracle */
    int32_t *bneg;           /* [n][cols / 32], LLMQ_ILV_LANES only */
    int64_t n, nck;
    float *Y;
    rowq q;                  /* decode blocks, or prefill tiles */
};

/* llmq_q4a8_x's bneg of one token: -(sum of each 32-block's codes), in
 * the low half of an int32 (|sum| <= 32 * 127 fits an int16). */
static void q4a8_bneg(const int8_t *xq, int64_t cols, int32_t *bneg)
{
    for (int64_t b = 0; b < cols / LLMQ_A8_BLOCK; b++) {
        int s = 0;
        for (int i = 0; i < LLMQ_A8_BLOCK; i++) s += xq[b * LLMQ_A8_BLOCK + i];
        bneg[b] = (int32_t)(uint16_t)(int16_t)-s;
    }
}

static void q4a8_prep_rows(struct q4a8_job *j, int64_t lo, int64_t hi)
{
    const int64_t cols = j->W->cols, nb = cols / LLMQ_A8_BLOCK;
    llmq_kq4a8_prep_fn prep = llmq_ktable_cur()->q4a8_prep;
    for (int64_t t = lo; t < hi; t++) {
        prep(j->Xq + t * cols, j->xs + t * nb, cols, j->ch + t * j->nck);
        if (j->bneg) q4a8_bneg(j->Xq + t * cols, cols, j->bneg + t * nb);
    }
}

static void q4a8_prep_worker(void *ctx, int i, int nth)
{
    struct q4a8_job *j = ctx;
    int64_t lo, hi;
    llmq_split(j->n, i, nth, 1, &lo, &hi);
    q4a8_prep_rows(j, lo, hi);
}

/* Token t's view. */
static llmq_q4a8_x q4a8_view(const struct q4a8_job *j, int64_t t)
{
    const int64_t cols = j->W->cols, nb = cols / LLMQ_A8_BLOCK;
    return (llmq_q4a8_x){ j->Xq + t * cols, j->xs + t * nb, j->ch ? j->ch + t * j->nck : NULL,
                          j->bneg ? j->bneg + t * nb : NULL };
}

static void q4a8_worker(void *ctx, int i, int nth)
{
    (void)i; (void)nth;
    struct q4a8_job *j = ctx;
    const llmq_wmat *W = j->W;
    int64_t lo, hi;
    while (rowq_take(&j->q, &lo, &hi)) {
        if (!j->mfn) {
            for (int64_t t = 0; t < j->n; t++) {
                llmq_q4a8_x x = q4a8_view(j, t);
                j->fn(W, lo, hi, &x, j->Y + t * W->rows + lo);
            }
            continue;
        }
        for (int64_t t0 = 0; t0 < j->n; t0 += Q4A8_BATCH) {
            llmq_q4a8_x x[Q4A8_BATCH];
            int64_t nt = LLMQ_MIN(Q4A8_BATCH, j->n - t0);
            for (int64_t t = 0; t < nt; t++) x[t] = q4a8_view(j, t0 + t);
            j->mfn(W, lo, hi, x, nt, j->Y + t0 * W->rows + lo, W->rows);
        }
    }
}

void llmq_matmul_q4a8(llmq_pool *pool, const llmq_wmat *W, const int8_t *Xq, const float *xscales,
                      int64_t n, float *Y)
{
    if (n <= 0) return;
    const llmq_ktable *kt = llmq_ktable_cur();
    const int lanes = W->ilv == LLMQ_ILV_LANES;
    if (lanes && !kt->matvec_q4a8l) kt = &llmq_ktable_ref;   /* the oracle reads any layout */
    if (n == 1 && llmq_wmat_bytes(W) < SMALL_BYTES) pool = NULL;
    /* prefill tiles are also no larger than decode blocks: a tile of
     * Q4A8_TILE_BYTES alone held all of a 512-column matrix (tiny-llama's
     * q, k, v, o), or most of it, and one thread did that product alone */
    int64_t blk = n == 1 ? mv_block(W->rows, pool)
                         : LLMQ_MIN(mv_block(W->rows, pool),
                                    LLMQ_MAX(4, (int64_t)Q4A8_TILE_BYTES / (W->cols / 2) & ~(int64_t)3));
    if (lanes) blk = (blk + LLMQ_ILV_LANES - 1) / LLMQ_ILV_LANES * LLMQ_ILV_LANES;   /* whole tiles */
    struct q4a8_job j = { lanes && kt->matvec_q4a8l ? kt->matvec_q4a8l : kt->matvec_q4a8, NULL, W, Xq, xscales,
                          NULL, NULL, n, (W->cols + 127) / 128, Y, rowq_make(W->rows, blk) };
    if (j.fn != llmq_ktable_ref.matvec_q4a8) {
        size_t bytes, nbb = (size_t)(W->cols / LLMQ_A8_BLOCK) * sizeof(int32_t);
        if (!llmq_mul_ovf_size((size_t)n, (size_t)j.nck * sizeof(llmq_q4a8_chunk) + (lanes ? nbb : 0), &bytes))
            j.ch = llmq_alloc_aligned(bytes, NULL);
        if (j.ch && lanes) j.bneg = (int32_t *)((char *)j.ch + (size_t)n * (size_t)j.nck * sizeof(llmq_q4a8_chunk));
        if (!j.ch) j.fn = llmq_ktable_ref.matvec_q4a8;   /* slower, same block sums */
        else if (n == 1) q4a8_prep_rows(&j, 0, 1);
        else llmq_pool_run(pool, q4a8_prep_worker, &j);
    }
    /* decode keeps the single-token kernel: a tile of one token shares nothing */
    if (n > 1 && j.ch) j.mfn = lanes ? kt->matmul_q4a8l : kt->matmul_q4a8;
    llmq_pool_run(pool, q4a8_worker, &j);
    free(j.ch);
}

void llmq_matvec_q4a8(llmq_pool *pool, const llmq_wmat *W, const int8_t *xq, const float *xscales, float *y)
{
    llmq_matmul_q4a8(pool, W, xq, xscales, 1, y);
}

/* ---- bf16 x bf16 ---- */

/* llmq_f32_to_bf16 without its branch, so that the loop vectorizes (it
 * was a tenth of awq --act bf16): the same bits for every input. */
LLMQ_VECTORIZE
void llmq_round_bf16(const float *x, int64_t n, uint16_t *b)
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, x + i, sizeof u);
        uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16, q = (u >> 16) | 0x40u;
        b[i] = (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? q : r);
    }
}

int llmq_q4a8_lanes(void) { return llmq_ktable_cur()->matvec_q4a8l != NULL; }

int llmq_has_bf16_dot(void) { return llmq_ktable_cur()->matmul_bf16 != NULL; }

int64_t llmq_bf16_pairs_size(int64_t m, int64_t k) { return (m + 15) / 16 * 16 * k; }

void llmq_bf16_pack_pairs(const uint16_t *B, int64_t m, int64_t k, uint16_t *Bp)
{
    const int64_t kp = k / 2;
    for (int64_t b = 0; b < (m + 15) / 16; b++)
        for (int64_t p = 0; p < kp; p++)
            for (int i = 0; i < 16; i++) {
                int64_t j = 16 * b + i;
                uint16_t *o = Bp + (b * kp + p) * 32 + 2 * i;
                o[0] = j < m ? B[j * k + 2 * p] : 0;
                o[1] = j < m ? B[j * k + 2 * p + 1] : 0;
            }
}

void llmq_gemm_bf16_pairs(const uint16_t *A, int64_t n, const uint16_t *Bp, int64_t m, int64_t k, float *C, int64_t ldc)
{
    if (n > 0 && m > 0) llmq_ktable_cur()->gemm_bf16p(A, n, Bp, m, k, C, ldc);
}

void llmq_attn_scores(const float *K, int m, int hd, int p0, const float *cs, const float *sn, const float *Q,
                      int group, float scale, float *S, size_t ldS)
{
    llmq_ktable_cur()->attn_scores(K, m, hd, p0, cs, sn, Q, group, scale, S, ldS);
}

void llmq_attn_scores_bf16(const float *K, int m, int hd, int p0, const float *cs, const float *sn, const float *Q,
                           int group, float scale, float *S, size_t ldS)
{
    llmq_ktable_cur()->attn_scores_bf16(K, m, hd, p0, cs, sn, Q, group, scale, S, ldS);
}

void llmq_attn_values(const float *P, size_t ldP, int m, const float *V, int hd, int group, float *O)
{
    llmq_ktable_cur()->attn_values(P, ldP, m, V, hd, group, O);
}

void llmq_kv_deq_channels(const uint8_t *src, size_t rowb, int m, int hd, int bits, const float *lo,
                          const float *step, float *out)
{
    llmq_ktable_cur()->kv_deq_channels(src, rowb, m, hd, bits, lo, step, out);
}

void llmq_kv_deq_groups(const uint8_t *src, size_t rowb, const uint16_t *par, int ng, int m, int hd, int bits,
                        float *out)
{
    llmq_ktable_cur()->kv_deq_groups(src, rowb, par, ng, m, hd, bits, out);
}

int llmq_attn_scores_codes(const uint8_t *src, size_t rowb, int m, int hd, int bits, const float *lo, const float *step,
                           int p0, const float *cs, const float *sn, const float *Q, int group, float scale, float *S,
                           size_t ldS)
{
    llmq_kattn_scodes_fn f = llmq_ktable_cur()->attn_scores_codes;
    return f && m > 0 && f(src, rowb, m, hd, bits, lo, step, p0, cs, sn, Q, group, scale, S, ldS);
}

int llmq_attn_values_codes(const float *P, size_t ldP, int m, const uint8_t *src, size_t rowb, const uint16_t *par,
                           int ng, int hd, int bits, int group, float *O)
{
    llmq_kattn_vcodes_fn f = llmq_ktable_cur()->attn_values_codes;
    return f && m > 0 && f(P, ldP, m, src, rowb, par, ng, hd, bits, group, O);
}

struct bf16_job {
    llmq_kmmbf16_fn fn;
    const llmq_wmat *W;
    const uint16_t *Xb;
    int64_t n;
    float *Y;
    rowq q;                 /* tiles */
};

static void bf16_worker(void *ctx, int i, int nth)
{
    (void)i; (void)nth;
    struct bf16_job *j = ctx;
    int64_t lo, hi;
    while (rowq_take(&j->q, &lo, &hi)) j->fn(j->W, lo, hi, j->Xb, j->n, j->Y + lo, j->W->rows);
}

void llmq_matmul_bf16(llmq_pool *pool, const llmq_wmat *W, const uint16_t *Xb, int64_t n, float *Y)
{
    if (n <= 0) return;
    const llmq_ktable *kt = llmq_ktable_cur();
    if (!kt->matmul_bf16) {
        /* no bf16 dot product here: the same bf16 inputs, widened (the
         * oracle, which allocates nothing, where even that has no room) */
        float *X = malloc((size_t)n * (size_t)W->cols * sizeof(float));
        if (!X) { llmq_ktable_ref.matmul_bf16(W, 0, W->rows, Xb, n, Y, W->rows); return; }
        for (int64_t i = 0; i < n * W->cols; i++) X[i] = llmq_bf16_to_f32(Xb[i]);
        llmq_matmul(pool, W, X, n, Y);
        free(X);
        return;
    }
    /* a tile of bf16 rows stays in L2 while every token passes over it */
    int64_t blk = LLMQ_MAX(4, (int64_t)(256 * 1024) / (2 * W->cols) & ~(int64_t)3);
    struct bf16_job j = { kt->matmul_bf16, W, Xb, n, Y, rowq_make(W->rows, blk) };
    llmq_pool_run(pool, bf16_worker, &j);
}
