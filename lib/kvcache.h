/*
 * kvcache.h - a quantized KV cache with attention sinks, a full-precision
 * recent window and streaming eviction, and the attention that reads it.
 *
 * Keys are stored before RoPE and rotated when read, at their position in
 * the cache: KVQuant's pre-RoPE keys (Hooper et al. 2024, sec. 3.2), and
 * what lets StreamingLLM (Xiao et al. 2023) re-assign positions inside a
 * rolling cache.  Per layer and KV head:
 *
 *   keys    b-bit codes per channel: with calibrated per-channel ranges
 *           (llmq calibrate; KVQuant's per-channel pre-RoPE scheme), or
 *           KIVI's (Liu et al. 2024) per-channel ranges shared by a group
 *           of key_group tokens, computed once the group is full; until
 *           then its tokens are read at full precision
 *   values  b-bit codes per token, a range per value_group channels (both
 *           papers' per-token scheme)
 *   sinks   the first `sinks` positions, kept in fp32 (KVQuant keeps the
 *           first token, StreamingLLM four)
 *   outliers  KVQuant's dense-and-sparse split: per token and head a few
 *           values kept as f16 with their channel, the rest quantized
 *           without them: a value row's ceil(outliers * head_dim) largest,
 *           a calibrated key row's values past their range (up to four
 *           times that many, the farthest first; the rest clamp)
 *   residual  a query reads the keys and values of the last `residual`
 *           positions up to itself at full precision (KIVI's residual)
 *
 * With online Hadamard transforms of the keys (config had_keys, llmq
 * rotate --online-hadamard-keys) the keys arrive as k H per head (H the
 * normalized Hadamard matrix of head_dim, QuaRot's key rotation moved
 * before RoPE, which does not commute with it) and everything above holds
 * them so; every read multiplies by H again (H H = I) before RoPE.
 *
 * Ranges are f16 (step, lo) pairs; codes use uniform levels (int) or a
 * per-layer codebook (nuq, KVQuant's non-uniform datatype fitted offline).
 * f32 and bf16 store the values themselves.
 *
 * Streaming (window > 0): the cache holds the sinks and the last `window`
 * positions; a query at logical position a >= sinks + window sees the
 * sinks at positions 0..sinks-1 and the window at sinks.., itself last, as
 * StreamingLLM re-assigns them.  Forwards of several tokens must fit before
 * the first eviction; past it, one token at a time.
 */
#ifndef LLMQ_KVCACHE_H
#define LLMQ_KVCACHE_H

#include "model.h"
#include "base/pool.h"

typedef enum { LLMQ_KV_F32 = 0, LLMQ_KV_BF16, LLMQ_KV_INT, LLMQ_KV_NUQ } llmq_kv_type;

typedef struct {
    llmq_kv_type type;
    int bits;          /* 32 (f32), 16 (bf16), 2..8 (int, nuq) */
    int sinks;         /* first positions kept in fp32 */
    int residual;      /* last positions read at full precision */
    int window;        /* > 0: keep only the sinks and the last `window` positions */
    int key_group;     /* tokens sharing a per-channel key range without calibration (KIVI) */
    int value_group;   /* channels sharing a value range, per token */
    double outliers;   /* > 0: per row, up to ceil(outliers * head_dim) values kept as f16 beside the
                        * codes: calibrated keys outside their range, a token's largest |values| */
} llmq_kv_spec;

#define LLMQ_KV_KEY_GROUP   32
#define LLMQ_KV_VALUE_GROUP 32

/* Calibration from llmq calibrate (borrowed until llmq_kv_new returns;
 * NULL members: none).  Ranges are (n_layers, n_kv_heads * head_dim)
 * floats in the order of k_proj's outputs; books (n_layers, 2^bits). */
typedef struct {
    const float *k_min, *k_max;   /* pre-RoPE keys, sinks excluded */
    const float *k_book, *v_book; /* nuq levels in [0, 1], ascending */
} llmq_kv_calib;

/* Parse "f32", "bf16", "intB" or "nuqB" (B in 2..8) into spec->type and
 * bits, leaving the other members.  Errors: LLMQ_EUSAGE. */
int llmq_kv_spec_parse(const char *s, llmq_kv_spec *spec, llmq_err *err);
/* Bits the cache stores per key and value element, ranges and outliers
 * included, over a long context (sinks and the residual's fp32 copy
 * excluded: they do not grow with it).  calibrated_keys: keys use
 * calibrated ranges; key_outliers: the mean outliers a key row keeps
 * (llmq_kv_key_outliers), or < 0 for the calibration's rate. */
double llmq_kv_bits_per_value(const llmq_kv_spec *s, const llmq_config *c, int calibrated_keys, double key_outliers);
/* Bytes per token of context over every layer (the same count). */
double llmq_kv_bytes_per_token(const llmq_kv_spec *s, const llmq_config *c, int calibrated_keys, double key_outliers);


typedef struct llmq_kvcache llmq_kvcache;

/* A cache for config c with room for max_ctx positions (or, streaming,
 * sinks + window), threads for attention from pool.  Errors: LLMQ_EUSAGE
 * (a spec that does not fit: nuq without codebooks, bits, groups),
 * LLMQ_ENOMEM. */
int llmq_kv_new(llmq_kvcache **out, const llmq_config *c, const llmq_kv_spec *spec, const llmq_kv_calib *cal,
                int max_ctx, int n_threads, llmq_err *err);
void llmq_kv_free(llmq_kvcache *kv);   /* accepts NULL */

/* Positions the cache holds at once (max_ctx, or sinks + window). */
int llmq_kv_slots(const llmq_kvcache *kv);
/* Key rows stored so far (past the sinks) and the outliers they kept. */
void llmq_kv_key_outliers(const llmq_kvcache *kv, int64_t *rows, int64_t *outliers);
/* The RoPE position of the last of n queries at logical position pos..:
 * pos + n - 1, or inside the window once streaming evicts.  Errors
 * (returns -1): n > 1 past the first eviction, or past max_ctx without a
 * window. */
int llmq_kv_query_pos(const llmq_kvcache *kv, int pos, int n);

/* One layer's attention for n queries at logical positions pos..: store
 * k and v (pre-RoPE, k times H per head with online Hadamard; (n,
 * n_kv_heads * head_dim)), then
 * att (n, n_heads * head_dim) = softmax(q k^T / sqrt(d)) v over what each
 * query sees, q (n, n_heads * head_dim) rotated at its RoPE position.
 * cs, sn: the RoPE tables (rows 0..slots-1, head_dim / 2 each), scratch
 * for nt threads made by llmq_kv_new. */
void llmq_kv_attend(llmq_kvcache *kv, llmq_pool *pool, int layer, const float *q, const float *k,
                    const float *v, int n, int pos, const float *cs, const float *sn, float *att);

#endif
