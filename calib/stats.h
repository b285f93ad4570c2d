/*
 * stats.h - activation statistics of a model on calibration windows
 * (`llmq calibrate`), the input of smooth, awq and static W8A8.
 *
 * For every layer and every observer site (runner.h: the inputs of
 * q/k/v, o, gate/up and down_proj, and K before/after RoPE and V) we keep,
 * per channel: absmax, min, max, mean |x|, sum and sum of squares, plus the
 * token count; per KV head the absmax of K (pre and post RoPE) and of V; and
 * for the four linear-input sites a bounded, deterministic subsample of whole
 * token rows (what smooth's error searches run on).  Memory is O(channels)
 * per site plus the subsample, independent of the number of windows.
 *
 * On disk: a safetensors file.  Tensors (l = layer, SITE one of qkv, o,
 * gateup, down, k_pre, k_post, v):
 *   layers.l.SITE.absmax|min|max|mean_abs   F32 (dim)
 *   layers.l.SITE.sum|sumsq                 F64 (dim)
 *   layers.l.SITE.count                     I64 (1)
 *   layers.l.SITE.head_absmax               F32 (n_kv_heads)   k_pre, k_post, v
 *   layers.l.SITE.kv_min|kv_max             F32 (dim)          k_pre, v: positions >= 4 of each
 *                                                              window (absent in older files)
 *   layers.l.SITE.kv_tokens                 F32 (kv_keep, dim) k_pre, v: rows at positions >= 4
 *                                                              (when metadata kv_keep > 0)
 *   layers.l.SITE.tokens                    F32 (n_keep, dim)  qkv, o, gateup, down
 * Metadata: format "llmq-stats", llmq.stats_version "1", model_digest,
 * text_digest, samples, seqlen, seed, tokens, keep, n_layers, and
 * derived_by when smooth transformed the statistics for its output.
 * A shard (calibrate --layers A:B) holds the tensors of layers A..B-1 only
 * and the metadata layers "A:B"; llmq merge joins shards into the file a
 * single run writes.
 * Saving the same statistics gives the same bytes.
 */
#ifndef LLMQ_CALIB_STATS_H
#define LLMQ_CALIB_STATS_H

/* Bounds on a statistics file's counts, checked before anything is sized
 * by them (see LIMITS in llmq(1)). */
#define LLMQ_STATS_MAX_LAYERS 100000
#define LLMQ_STATS_MAX_KEEP   (1 << 24)   /* kept activation rows per linear input */
#define LLMQ_STATS_MAX_DIM    (1 << 24)   /* channels of one site */

#include "../lib/runner.h"

#define LLMQ_STATS_VERSION "1"

typedef struct {
    int dim;
    float *absmax, *min, *max, *mean_abs;   /* (dim) */
    double *sum, *sumsq;                    /* (dim) */
    double *abs_sum;                        /* (dim) accumulator of |x| until finish */
    int64_t count;                          /* tokens seen */
    float *head_absmax;                     /* (n_kv_heads) K/V sites, else NULL */
    float *keep;                            /* (n_keep, dim) linear-input sites, else NULL */
    float *kv_min, *kv_max;                 /* (dim) k_pre, v: over positions >= LLMQ_STATS_KV_SINKS of
                                             * each window (the KV cache's calibrated ranges), or NULL */
    float *kv_keep;                         /* (n_kv_keep, dim) k_pre, v: rows at positions >=
                                             * LLMQ_STATS_KV_SINKS (range quantiles, codebooks), or NULL */
} llmq_site_stats;

/* Positions of each window left out of the KV ranges: attention sinks,
 * whose keys and values are outliers a cache keeps apart (KVQuant keeps
 * the first token, StreamingLLM four). */
#define LLMQ_STATS_KV_SINKS 4

typedef struct {
    int n_layers, n_kv_heads, head_dim;
    int n_keep;                /* subsample rows per linear-input site */
    int lo, hi;                /* the layers held, [lo, hi): all of them, or a shard's
                                * (calibrate --layers); other layers' sites are empty */
    llmq_site_stats *site;     /* (n_layers * LLMQ_SITE_COUNT), site[l * LLMQ_SITE_COUNT + s] */
    char model_digest[65], text_digest[65];
    int samples, seqlen;
    uint64_t seed;
    int64_t tokens;
    char derived_by[256];      /* "" or what transformed these statistics */
    char act[8];               /* "" (fp32 products) or "bf16": how the forward multiplied (calibrate --act) */
    /* subsample plan while collecting: row k comes from window keep_win[k],
     * position keep_pos[k]; rows are ordered by window */
    int *keep_win, *keep_pos;
    int cur_window;
    int n_kv_keep;             /* rows kept per K/V site (llmq_stats_keep_kv), 0: none */
    int *kvk_win, *kvk_pos;    /* their plan while collecting, as keep_win / keep_pos */
} llmq_stats;

/* Site names as they appear in tensor names ("qkv", "o", ...). */
const char *llmq_site_name(llmq_site s);
/* 1 for the four linear-input sites (they hold a token subsample). */
int llmq_site_is_linear(llmq_site s);
/* Channels of site s under config c. */
int llmq_site_dim(const llmq_config *c, llmq_site s);

/* Allocate empty statistics for a model of config c, keeping n_keep token
 * rows per linear-input site drawn from `samples` windows of `seqlen`
 * tokens: row k comes from window floor(k * samples / n_keep) at a position
 * uniform in [1, seqlen) drawn from splitmix64(seed ^ 0x5157...), position 0
 * excluded (it sees no context).  Errors: LLMQ_EUSAGE, LLMQ_ENOMEM. */
int llmq_stats_init(llmq_stats *s, const llmq_config *c, int n_keep, int samples, int seqlen,
                    uint64_t seed, llmq_err *err);
void llmq_stats_release(llmq_stats *s);

/* Also keep n rows of K (pre-RoPE) and V per layer, from positions >=
 * LLMQ_STATS_KV_SINKS: row k from window floor(k * samples / n) at a
 * position uniform in [LLMQ_STATS_KV_SINKS, seqlen) (from 1 when seqlen is
 * shorter), drawn from another stream of the seed.  Call after
 * llmq_stats_init, before observing.  Errors: LLMQ_EUSAGE, LLMQ_ENOMEM. */
int llmq_stats_keep_kv(llmq_stats *s, int n, llmq_err *err);

/* Keep statistics of layers [lo, hi) only (a shard; 0 <= lo < hi <=
 * n_layers): the other layers' sites are freed and not observed.
 * Errors: LLMQ_EUSAGE. */
int llmq_stats_set_layers(llmq_stats *s, int lo, int hi, llmq_err *err);

/* Tell the collector which window the next forward pass runs. */
void llmq_stats_begin_window(llmq_stats *s, int window);
/* An llmq_observer: ctx is the llmq_stats.  Accumulates x (n, dim). */
void llmq_stats_observe(void *ctx, int layer, llmq_site site, const float *x, int64_t n, int64_t dim);
/* Turn accumulators into mean_abs after the last window. */
void llmq_stats_finish(llmq_stats *s);

/* Write atomically to path.  Errors: LLMQ_EIO, LLMQ_ENOMEM. */
int llmq_stats_save(const llmq_stats *s, const char *path, llmq_err *err);
/* Read and check a statistics file (every tensor present with its dtype
 * and shape, values finite, min <= max).  Errors name the file:
 * LLMQ_EIO, LLMQ_EFORMAT (not a stats file, missing or malformed tensor),
 * LLMQ_ENONFINITE, LLMQ_ENOMEM. */
int llmq_stats_load(llmq_stats *s, const char *path, llmq_err *err);
/* llmq_stats_load that also takes a shard (s->lo, s->hi say which layers
 * it holds).  Every other reader takes whole files only. */
int llmq_stats_load_shard(llmq_stats *s, const char *path, llmq_err *err);
/* Join shards (llmq_stats_load_shard each) of one calibrate run, whose
 * layers tile 0..n_layers exactly, into out: the statistics a single run
 * gives, saved to the same bytes.  Errors name the shard: LLMQ_EFORMAT
 * (another run, a layer missing or held twice, a whole file), and
 * llmq_stats_load's. */
int llmq_stats_join(llmq_stats *out, const char *const *paths, int n, llmq_err *err);

/* Check that s fits config c (layers, dims, heads); path names the stats
 * file in the message.  Errors: LLMQ_EUSAGE. */
int llmq_stats_check_config(const llmq_stats *s, const llmq_config *c, const char *path, llmq_err *err);

/* The calibrated KV ranges (kvcache.h's llmq_kv_calib k_min, k_max):
 * (n_layers, n_kv_heads * head_dim) floats each, malloc'd.  Errors:
 * LLMQ_EUSAGE when s lacks them (an older file: path names it),
 * LLMQ_ENOMEM. */
int llmq_stats_kv_ranges(const llmq_stats *s, const char *path, float **k_min, float **k_max, llmq_err *err);
/* Per-channel key ranges leaving out a fraction `outliers` of the kept
 * rows, half at each end (KVQuant's dense range; the rest are the cache's
 * sparse outliers): the floor(outliers / 2 * n)-th smallest and largest
 * of each channel.  Errors: LLMQ_EUSAGE when s kept no K rows. */
int llmq_stats_kv_quantile_ranges(const llmq_stats *s, const char *path, double outliers, float **k_min,
                                  float **k_max, llmq_err *err);

/* Non-uniform KV codebooks (KVQuant's nuq) fitted on the kept rows, per
 * layer, 2^bits levels in [0, 1] each (llmq_kvq_fit_codebook): keys
 * normalized by the ranges k_min, k_max (n_layers, kv_dim) the cache will
 * use, values per token in groups of value_group channels by their own
 * min and max.  *k_book, *v_book: (n_layers, 2^bits) floats, malloc'd.
 * Errors: LLMQ_EUSAGE (no kept rows), LLMQ_ENOMEM. */
int llmq_stats_kv_codebooks(const llmq_stats *s, const char *path, int bits, int value_group, const float *k_min,
                            const float *k_max, float **k_book, float **v_book, llmq_err *err);

/* Per-tensor static int8 scale of a linear-input site: max_j absmax_j / 127
 * (SmoothQuant's O3 per-tensor static scheme); 0 when the site was all zero. */
float llmq_stats_static_scale(const llmq_stats *s, int layer, llmq_site site);

#endif
