/*
 * awq.h - Activation-aware Weight Quantization (Lin et al. 2023,
 * "AWQ: Activation-aware Weight Quantization for LLM Compression and
 * Acceleration", arXiv:2306.00978) for INT4 / INT3 group-wise weights and
 * the MX / NV block formats (MXFP4, MXINT4, NVFP4, NVINT4, MXFP8).
 *
 * Block by block, in order, each block fed the output of the blocks before
 * it as they will run quantized (or, with propagate_fp, as the reference
 * implementations do, as they ran in the float model: then any range of
 * layers can be searched alone, and the results of several ranges joined,
 * awq_shard.h):
 *   1. the fp block runs on the calibration windows; per-channel mean |x| of
 *      every linear input and a token subsample of those inputs are kept;
 *   2. per group of linears sharing an input (q/k/v; v->o; gate/up;
 *      up->down) s = mean|x|^r / sqrt(max * min), r on a grid in [0, 1),
 *      minimising the MSE of the group's output with fake-quantized
 *      weights (paper section 3.2, eq. 4-5): every candidate on 1/8 of the
 *      token subsample, the 4 best and s = 1 on all of it; q/k/v and o
 *      on every token through the Gram factor where their input is no
 *      wider than the subsample;
 *   3. per output row and group, the range is shrunk over a grid and the
 *      clip minimising the linear's output error is kept (llm-awq auto_clip,
 *      then each end of the range refined alone, coarse then fine),
 *      the error measured on every calibration token through per-group
 *      Gram matrices gathered in step 1;
 *   4. with gptq on (gptq.h), each linear's codes are rounded onto the grid
 *      the clipped weights define, column by column with the error spread
 *      over the columns not yet rounded, weighted by the input's whole Gram
 *      matrix (gathered in step 1);
 *   5. the quantized block runs on all windows to feed the next one (with
 *      propagate_fp the float pass of step 1 ran the whole block and its
 *      outputs feed the next one).
 * Only the scales and clips are kept (and, with gptq, the codes, scales and
 * zero points); the packer recomputes each tensor from the mmap through
 * llmq_awq_provider, so memory stays bounded.
 *
 * With a block format (llmq_awq_qcfg.btype) every fake quantization of
 * steps 2-3 is that format's (llmq_awq_fake_row_t: the packer's bit for
 * bit), groups are its blocks, and step 4 rounds onto its grid
 * (llmq_gptq_quantize_block).  An NV format's tensor scale is the one the
 * packer computes: the scale search takes it from each scaled candidate
 * tensor, the clip search from the unclipped tensor, whose max it never
 * clips (llmq_awq_search_clip).
 */
#ifndef LLMQ_ALGO_AWQ_H
#define LLMQ_ALGO_AWQ_H

#include <cjson/cJSON.h>
#include "../model.h"
#include "../linears.h"
#include "../base/pool.h"
#include "../base/wmat.h"

/* Linears of a decoder layer, in the order the result stores them. */
enum {
    LLMQ_AWQ_Q = LLMQ_LIN_Q, LLMQ_AWQ_K = LLMQ_LIN_K, LLMQ_AWQ_V = LLMQ_LIN_V, LLMQ_AWQ_O = LLMQ_LIN_O,
    LLMQ_AWQ_GATE = LLMQ_LIN_GATE, LLMQ_AWQ_UP = LLMQ_LIN_UP, LLMQ_AWQ_DOWN = LLMQ_LIN_DOWN, LLMQ_AWQ_NLIN = LLMQ_LIN_COUNT
};
/* Groups of linears sharing an input (one scale vector each). */
enum {
    LLMQ_AWQ_G_QKV = LLMQ_SITE_QKV, LLMQ_AWQ_G_O = LLMQ_SITE_O, LLMQ_AWQ_G_GATEUP = LLMQ_SITE_GATEUP,
    LLMQ_AWQ_G_DOWN = LLMQ_SITE_DOWN, LLMQ_AWQ_NGROUP
};

/* Length of layer's scale vector for group g: hidden (qkv, gate_up),
 * kv_heads * head_dim (o: on v_proj's rows), intermediate (down). */
int64_t llmq_awq_scale_dim(const llmq_config *c, int g);
/* "qkv", "o", "gate_up", "down": the names the record and shards use. */
const char *llmq_awq_group_name(int g);
/* Linear k's name within its block, "q_proj" .. "down_proj". */
const char *llmq_awq_lin_name(int k);

/* Weight quantizer the search imitates: exactly the packer's.  Either
 * group-wise int (btype 0: bits, group, sym; llmq_q4_quantize) or an MX /
 * NV block format (btype LLMQ_W_MXFP4 .. LLMQ_W_MXFP8, with rule: group
 * = llmq_block_size(btype), bits its element bits, sym 1;
 * llmq_block_quantize): the scale and clip searches then fake-quantize
 * with that format, one clip pair per block. */
typedef struct {
    int bits;     /* 3 or 4; block formats: 4 (8 for MXFP8) */
    int group;    /* 32, 64 or 128; block formats: the block, 32 or 16 */
    int sym;
    llmq_wtype btype;    /* 0 (LLMQ_W_F32) = int; else the block format */
    llmq_mx_rule rule;   /* block formats: the block scale rule */
} llmq_awq_qcfg;

/* Whether q is a block format. */
static inline int llmq_awq_is_block(const llmq_awq_qcfg *q) { return llmq_wtype_is_block(q->btype); }

/* Defaults of llmq_awq_opts_default(), plain literals so that the CLI's
 * option table prints and parses the same values (cmd/opts.h OPT_DEF). */
#define LLMQ_AWQ_BITS_DEFAULT 4
#define LLMQ_AWQ_GROUP_DEFAULT 128
#define LLMQ_AWQ_N_GRID_DEFAULT 20
#define LLMQ_AWQ_SEARCH_TOKENS_DEFAULT 2048
#define LLMQ_AWQ_STAT_WINDOWS_DEFAULT 0
#define LLMQ_AWQ_LOSS_WINDOWS_DEFAULT 2

typedef struct {
    llmq_awq_qcfg q;
    int n_grid;          /* scale ratios r = i / n_grid, i = 0..n_grid-1 (20) */
    int duo;             /* also try s = x^r / w^(1-r) (AutoAWQ's duo scaling) (1) */
    int clip;            /* run the clipping search (1) */
    int clip_qk;         /* also clip q_proj / k_proj (1; llm-awq does not) */
    int clip_steps;      /* shrink steps (20) */
    double max_shrink;   /* the range shrinks down to 1 - max_shrink (0.5) */
    int search_tokens;   /* tokens subsampled for the scale search */
    int gptq;            /* round with GPTQ's error compensation (gptq.h) (0) */
    double gptq_damp;    /* its damping, a fraction of the mean diagonal (LLMQ_GPTQ_DAMP_DEFAULT) */
    int stat_windows;    /* windows the fp statistics pass runs on (0 = all) */
    int loss_windows;    /* windows the per-layer output loss is measured on */
    uint64_t seed;       /* token subsample */
    int propagate_fp;    /* feed each layer the float model's outputs, not the quantized layers' (0) */
    int act_bf16;        /* the float passes' linears on bf16 weights take bf16-rounded inputs, and
                            the scale search's products round both sides to bf16
                            (llmq_matmul_bf16: AVX512-BF16 dot products) (0: fp32) */
    int layer_lo, layer_hi;   /* search layers [lo, hi) only (hi 0: to the last); lo > 0 needs propagate_fp */
    llmq_pool *pool;     /* borrowed, may be NULL */
    void (*progress)(void *ctx, int done, int total);   /* per layer, may be NULL */
    void *progress_ctx;
} llmq_awq_opts;

/* Defaults above: 4-bit int, group 128, asymmetric. */
void llmq_awq_opts_default(llmq_awq_opts *o);

typedef struct {
    float *s[LLMQ_AWQ_NGROUP];     /* (hidden), (kv_dim), (hidden), (intermediate): input-channel scales */
    float *clip[LLMQ_AWQ_NLIN];    /* (rows, cols / group, 2): per group the upper clip hi and the
                                      lower clip's magnitude lo (w clamped to [-lo, hi]) after scaling,
                                      +Inf = none; NULL = no clip */
    double ratio[LLMQ_AWQ_NGROUP]; /* chosen r */
    int duo[LLMQ_AWQ_NGROUP];      /* chosen s was x^r / w^(1-r) */
    int fallback[LLMQ_AWQ_NGROUP]; /* every loss was non-finite: s = 1 */
    int exact[LLMQ_AWQ_NGROUP];    /* searched on every token (Gram factor), not the subsample */
    double loss_s1[LLMQ_AWQ_NGROUP], loss_best[LLMQ_AWQ_NGROUP];   /* search MSE at s = 1 and chosen */
    double clip_before[LLMQ_AWQ_NLIN], clip_after[LLMQ_AWQ_NLIN];   /* clip search MSE */
    double clip_mean[LLMQ_AWQ_NLIN];   /* mean shrink factor kept (the tighter end / max|w|) */
    double clip_frac[LLMQ_AWQ_NLIN];   /* fraction of (row, group) clipped */
    uint8_t *codes[LLMQ_AWQ_NLIN];  /* gptq: the packer's int4 layout (rows, cols / 2), NULL = none;
                                       block formats: their codes (rows, cols / 2), MXFP8 (rows, cols) */
    uint16_t *scales[LLMQ_AWQ_NLIN];   /* (rows, cols / group) f16 (int formats) */
    uint8_t *zeros[LLMQ_AWQ_NLIN];     /* (rows, cols / group), NULL when sym */
    uint8_t *bscales[LLMQ_AWQ_NLIN];   /* gptq, block formats: scale bytes (rows, cols / group) */
    float tscale[LLMQ_AWQ_NLIN];       /* gptq, NV formats: the tensor scale (1 for MX) */
    double gptq_loss[LLMQ_AWQ_NLIN][2];   /* (W - Q) H (W - Q)^T per row: round to nearest, gptq */
    double out_rtn, out_awq;        /* layer output MSE vs fp on loss windows: RTN, AWQ */
    double sec_stats, sec_scale, sec_clip, sec_fwd;   /* wall seconds of each phase */
} llmq_awq_layer;

typedef struct {
    const llmq_model *m;   /* borrowed */
    llmq_awq_opts o;
    int n_layers;
    llmq_awq_layer *layers;
    int tokens;            /* calibration tokens propagated */
    double seconds;
} llmq_awq_result;

/* Run AWQ on m over tokens (samples, seqlen).  Errors: LLMQ_EUSAGE (bad
 * options, a linear whose columns the group does not divide),
 * LLMQ_ENOMEM, LLMQ_ENONFINITE (a non-finite weight, naming the tensor).
 * On success res owns its arrays: llmq_awq_release. */
int llmq_awq_run(const llmq_model *m, const int32_t *tokens, int samples, int seqlen,
                 const llmq_awq_opts *o, llmq_awq_result *res, llmq_err *err);
void llmq_awq_release(llmq_awq_result *res);

/* llmq_pack_provider over an llmq_awq_result (ctx): norms divided by the
 * scales, linear columns multiplied, v/up rows (and biases) divided,
 * rows clamped to the clips. */
int llmq_awq_provider(void *ctx, const char *name, float *out, int64_t nelem, int *provided, llmq_err *err);
/* llmq_pack_qprovider over an llmq_awq_result: the gptq codes of a linear. */
int llmq_awq_qprovider(void *ctx, const char *prefix, int64_t rows, int64_t cols, uint8_t *codes, uint16_t *scales,
                       uint8_t *zeros, int *provided, llmq_err *err);
/* llmq_pack_bprovider over an llmq_awq_result: the gptq codes, scale bytes
 * and tensor scale of a linear in a block format. */
int llmq_awq_bprovider(void *ctx, const char *prefix, int64_t rows, int64_t cols, uint8_t *codes, uint8_t *scales,
                       float *tscale, int *provided, llmq_err *err);

/* What the run chose, for the packed metadata and --json (owned). */
cJSON *llmq_awq_json(const llmq_awq_result *res);
/* Adds each layer's wall seconds per phase (statistics pass, scale search,
 * clip search, quantized forward) to j, an llmq_awq_json object: for --json,
 * never for the file, whose bytes a seed fixes. */
void llmq_awq_json_add_seconds(cJSON *j, const llmq_awq_result *res);

/* ---- building blocks (exported for tests) ---- */

/* Quantize then dequantize one row (cols a multiple of q->group), group g
 * clamped to [-clip[2g+1], clip[2g]] first (clip may be NULL).  For an NV
 * block format the row is its own tensor: the tensor scale comes from the
 * max |w| of the clamped row (llmq_block_fake_row's rule). */
void llmq_awq_fake_row(const llmq_awq_qcfg *q, const float *w, int64_t cols, const float *clip, float *out);
/* The same with the NV tensor scale given (llmq_block_tscale of the whole
 * tensor's clamped max |w|; ignored by the other formats): for a block
 * format exactly llmq_block_quantize_row then llmq_block_dequantize_row of
 * the clamped row, rounding elements by comparisons, without libm calls
 * per element (MXFP8 runs the reference quantizer). */
void llmq_awq_fake_row_t(const llmq_awq_qcfg *q, float tscale, const float *w, int64_t cols, const float *clip,
                         float *out);

/* w[rows][cols]: column j *= col_mul[j], row i /= row_div[i], then group k
 * of row i clamped to [-lo, hi] with (hi, lo) = clip[2 (i * cols / group + k)
 * + {0, 1}]; any may be NULL. */
void llmq_awq_transform(float *w, int64_t rows, int64_t cols, const float *col_mul, const float *row_div,
                        const float *clip, int group);

/* s_q[h * head_dim + i] = s_kv[(h / (n_heads / n_kv)) * head_dim + i]. */
void llmq_awq_expand_kv(const float *s_kv, int n_heads, int n_kv, int head_dim, float *s_q);

/* One scale search.  x (n, in) are the group's input activations; xmean
 * (n_s) the per-channel mean |x| the scales are powers of (n_s = in, or
 * kv_heads * head_dim when heads > 0: grouped-query v->o, each scale shared
 * by the n_heads / kv_heads query heads reading that KV channel).
 * w[i] (rows[i], in) fp32.  With down != NULL the group is an MLP (w[0] =
 * gate, w[1] = up, output down(silu(gate x) * up x), down (down_rows, rows[0])
 * kept float; ff_block: down's input rotated first); otherwise the output
 * is the concatenation of every w[i] x.
 * With duo, candidates s = x^r / (w^(1-r) + 1e-4) are tried as well, w the
 * per-channel mean of |W| over the group's rows, each row's group max
 * normalised to 1 (AutoAWQ); *picked_duo says which kind won.
 * Writes s (n_s), the chosen ratio, the MSE at s = 1 and at s; *fallback = 1
 * (and s = 1) when every loss is non-finite. */
typedef struct {
    const float *x; int64_t n, in;
    const float *xmean;
    int heads, kv_heads, head_dim;
    int n_w;
    const float *w[3]; int64_t rows[3];
    const float *down; int64_t down_rows;
    int64_t n_coarse;   /* > 0: first every candidate on n_coarse evenly spaced
                           tokens of x, then only s = 1 and the 4 best on all n */
    int act_bf16;       /* the products in bf16 (inputs and weights rounded; llmq_matmul_bf16) */
    int ff_block;       /* down != NULL: > 0 multiplies down's input by H / sqrt(ff_block) per block
                           (the online Hadamard; down holds W Q), as the forward does */
} llmq_awq_group;
int llmq_awq_search_scale(llmq_pool *pool, const llmq_awq_group *g, const llmq_awq_qcfg *q, int n_grid, int duo,
                          float *s, double *ratio, int *picked_duo, double *loss_s1, double *loss_best, int *fallback,
                          llmq_err *err);

/* The clip search sees its inputs only through the Gram matrix of each
 * group of columns, G_k = sum_t x_t,k x_t,k^T (group x group), accumulated
 * over every calibration token: the error of a weight change d in group k
 * is sum_t (x_t,k . d)^2 = d^T G_k d = |R_k d|^2 for any R_k with
 * R_k^T R_k = G_k, so a (group x group) factor stands in for all the tokens.
 *
 * llmq_awq_gram_add: gram (cols/group, group, group) += the block-diagonal
 * Gram of x (n, cols); tmp holds cols * group floats. */
void llmq_awq_gram_add(llmq_pool *pool, const float *x, int64_t n, int64_t cols, int group, float *tmp, double *gram);

/* r (cols/group, group, group), each block R_k with R_k^T R_k =
 * D G_k D / count, D = diag(1 / s) (s NULL = 1: the inputs of weights whose
 * columns were multiplied by s), through the eigendecomposition
 * (eigenvalues below zero, from rounding, count as zero).  Row i of R_k is
 * sqrt(lambda_i) v_i, eigenvalues ascending: a singular Gram matrix (fewer
 * tokens than the group, dead channels) leaves leading zero rows, which
 * the clip search skips. */
int llmq_awq_gram_factor(llmq_pool *pool, const double *gram, int64_t cols, int group, const float *s, double count,
                         float *r, llmq_err *err);

/* Clip search for w (rows, cols) whose inputs have the Gram factors r
 * (llmq_awq_gram_factor): per row and group, the clamp [-lo, hi] with
 * the least output error |R_k (w - q(w))_k|^2 (the mean over the tokens of
 * (x_t,k . (w - q(w))_k)^2): first lo = hi = max|w| (1 - i max_shrink /
 * steps), i = 0..steps-1 (llm-awq), then from the best lo alone and hi
 * alone on the same grid below their own extremes, then lo and hi alone
 * again on a grid ten times finer within one coarse step of the best;
 * clip (rows, cols/group, 2) = (hi, lo), +Inf where no shrink is kept.
 * Mean output error per token and row before / after into
 * *before, *after, mean shrink and fraction clipped.  NV block formats:
 * every candidate is quantized with the tensor scale of the unclipped w,
 * and the (row, group) holding the first max |w| is never clipped, so the
 * clipped tensor keeps that max, hence that tensor scale, and the search
 * sees exactly what the packer will write.  With bf16 (and a
 * bf16 dot product on this host, llmq_has_bf16_dot) the products R_k d
 * take R_k and the weight errors d rounded to bf16, sums in fp32 (awq
 * --act bf16); else fp32 sgemm. */
int llmq_awq_search_clip(llmq_pool *pool, const float *w, int64_t rows, int64_t cols, const float *r,
                         const llmq_awq_qcfg *q, int steps, double max_shrink, int bf16, float *clip,
                         double *before, double *after, double *mean_shrink, double *frac, llmq_err *err);

#endif
