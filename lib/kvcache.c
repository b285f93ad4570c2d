/*
 * kvcache.c - the quantized KV cache and its attention (kvcache.h).
 *
 * Attention runs per KV head and block of queries: the keys and values a
 * block sees are read once into fp32 rows (dequantized, or the exact
 * values where the block's last query reads them exactly), keys rotated
 * at their positions, then shared by the head's query heads.  Queries of
 * a block that read a position exactly where the block's last query does
 * not (the residual and KIVI's incomplete group move with the query) get
 * those scores and values corrected one by one.
 */
#include <math.h>
#include <cblas.h>
#include "kvcache.h"
#include "quant/kvq.h"
#include "kernels/hadamard.h"
#include "kernels/kernels.h"
#include "train/ops.h"

#define OUT_NONE 0x7e00   /* an f16 NaN: no outlier in this entry */
#define QB 64     /* queries per attention block */
#define TILE LLMQ_ATTN_TILE   /* positions a decode step reads into L1 at once */

struct llmq_kvcache {
    llmq_kv_spec s;
    int L, nkv, nh, hd, swin;   /* layers, KV heads, query heads, head_dim, model's sliding window */
    int max_ctx, slots;
    int calib;                  /* keys on calibrated per-channel ranges */
    int had;                    /* keys arrive and are kept as k H per head (online Hadamard):
                                 * each read multiplies by H again before RoPE */
    int nq;                     /* int/nuq: 1 */
    size_t krow, vrow;          /* bytes of one (token, head) row */
    int vgroups;                /* value ranges per row */
    int gcap;                   /* KIVI key groups held per head */
    int ocap, kcap;             /* outliers per value row; at most per key row (calibrated keys) */
    int64_t krows, kout;        /* key rows stored past the sinks, outliers they kept */
    uint8_t *kox, *vox;         /* (L, nkv, slots, kcap | ocap) their channels */
    uint16_t *kov, *vov;        /* (L, nkv, slots, kcap | ocap) their f16 values; OUT_NONE: unused */
    uint8_t *kc, *vc;           /* (L, nkv, slots, krow | vrow) codes or values */
    uint16_t *vpar;             /* (L, nkv, slots, vgroups, 2) f16 step, lo */
    uint16_t *kpar;             /* KIVI: (L, nkv, gcap, hd, 2) f16 step, lo per channel */
    float *klo, *kstep;         /* calibrated: (L, nkv * hd) */
    float *kbook, *vbook;       /* nuq: (L, 2^bits) */
    int ring;                   /* positions in the exact ring */
    float *rk, *rv;             /* (L, nkv, ring, hd) exact pre-RoPE k, v of the last positions */
    float *sk, *sv;             /* (L, nkv, sinks, hd) the sinks */
    int nt;
    size_t scr_floats;
    float *scr;                 /* (nt, scr_floats) per-thread rows, scores, row list */
};

int llmq_kv_spec_parse(const char *str, llmq_kv_spec *spec, llmq_err *err)
{
    if (!strcmp(str, "f32")) { spec->type = LLMQ_KV_F32; spec->bits = 32; return LLMQ_OK; }
    if (!strcmp(str, "bf16")) { spec->type = LLMQ_KV_BF16; spec->bits = 16; return LLMQ_OK; }
    llmq_kv_type t;
    if (!strncmp(str, "int", 3)) t = LLMQ_KV_INT;
    else if (!strncmp(str, "nuq", 3)) t = LLMQ_KV_NUQ;
    else goto bad;
    if (str[3] < '2' || str[3] > '8' || str[4]) goto bad;
    spec->type = t;
    spec->bits = str[3] - '0';
    return LLMQ_OK;
bad:
    return llmq_errorf(err, LLMQ_EUSAGE, "KV cache type '%s': expected f32, bf16, int2..int8 or nuq2..nuq8", str);
}

static int quantized(const llmq_kv_spec *s) { return s->type == LLMQ_KV_INT || s->type == LLMQ_KV_NUQ; }

double llmq_kv_bits_per_value(const llmq_kv_spec *s, const llmq_config *c, int calibrated_keys, double key_outliers)
{
    if (!quantized(s)) return s->bits;
    int hd = c->head_dim, vg = s->value_group > 0 ? s->value_group : LLMQ_KV_VALUE_GROUP;
    int kg = s->key_group > 0 ? s->key_group : LLMQ_KV_KEY_GROUP;
    int ngr = (hd + vg - 1) / vg;
    double vbits = s->bits + 32.0 * ngr / hd;                 /* two f16 per value group */
    double kbits = s->bits + (calibrated_keys ? 0.0 : 32.0 / kg);   /* two f16 per channel per key group */
    if (s->outliers > 0) {   /* a channel byte and an f16 per outlier */
        vbits += 24.0 * ceil(s->outliers * hd) / hd;
        /* keys: a row's count (a byte) and the outliers it holds, the
         * calibration's rate unless measured */
        double per_row = key_outliers >= 0 ? key_outliers : s->outliers * hd;
        if (calibrated_keys) kbits += (8.0 + 24.0 * per_row) / hd;
    }
    return 0.5 * (kbits + vbits);
}

double llmq_kv_bytes_per_token(const llmq_kv_spec *s, const llmq_config *c, int calibrated_keys, double key_outliers)
{
    return llmq_kv_bits_per_value(s, c, calibrated_keys, key_outliers) / 8.0 * 2.0 * c->n_layers * c->n_kv_heads * c->head_dim;
}

void llmq_kv_free(llmq_kvcache *kv)
{
    if (!kv) return;
    void *p[] = { kv->kox, kv->vox, kv->kov, kv->vov, kv->kc, kv->vc, kv->vpar, kv->kpar, kv->klo, kv->kstep, kv->kbook, kv->vbook,
                  kv->rk, kv->rv, kv->sk, kv->sv, kv->scr };
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(p); i++) free(p[i]);
    free(kv);
}

int llmq_kv_slots(const llmq_kvcache *kv) { return kv->slots; }

void llmq_kv_key_outliers(const llmq_kvcache *kv, int64_t *rows, int64_t *outliers)
{
    *rows = kv->krows;
    *outliers = kv->kout;
}

static void *zalloc(size_t a, size_t b, size_t c, llmq_err *err)
{
    size_t n;
    if (llmq_mul_ovf_size(a, b, &n) || llmq_mul_ovf_size(n, c, &n)) {
        llmq_errorf(err, LLMQ_ENOMEM, "KV cache size overflows");
        return NULL;
    }
    void *p = llmq_alloc_aligned(n ? n : 1, err);
    if (p) memset(p, 0, n);
    return p;
}

int llmq_kv_new(llmq_kvcache **out, const llmq_config *c, const llmq_kv_spec *spec, const llmq_kv_calib *cal,
                int max_ctx, int n_threads, llmq_err *err)
{
    *out = NULL;
    llmq_kv_spec s = *spec;
    if (s.key_group <= 0) s.key_group = LLMQ_KV_KEY_GROUP;
    if (s.value_group <= 0) s.value_group = LLMQ_KV_VALUE_GROUP;
    if (s.sinks < 0 || s.residual < 0 || s.window < 0)
        return llmq_errorf(err, LLMQ_EUSAGE, "KV sinks, residual and window must not be negative");
    if (quantized(&s) && (s.bits < 2 || s.bits > LLMQ_KVQ_MAX_BITS))
        return llmq_errorf(err, LLMQ_EUSAGE, "KV cache codes of %d bits: 2..%d", s.bits, LLMQ_KVQ_MAX_BITS);
    if (s.value_group % 8 || s.value_group > 512)
        return llmq_errorf(err, LLMQ_EUSAGE, "KV value groups of %d channels: a multiple of 8 up to 512", s.value_group);
    int calib = cal && cal->k_min && cal->k_max;
    if (s.type == LLMQ_KV_NUQ && !(cal && cal->k_book && cal->v_book))
        return llmq_errorf(err, LLMQ_EUSAGE, "nuq%d KV cache needs codebooks (fitted on llmq calibrate's K and V rows)", s.bits);
    if (s.window > 0 && quantized(&s) && !calib && s.key_group > s.window)
        return llmq_errorf(err, LLMQ_EUSAGE, "KV window %d is shorter than a key group (%d tokens)", s.window, s.key_group);
    if (!(s.outliers >= 0.0 && s.outliers <= 0.5) || (s.outliers > 0 && (!quantized(&s) || c->head_dim > 256)))
        return llmq_errorf(err, LLMQ_EUSAGE, "KV outliers: a fraction 0..0.5 of a quantized cache's values, head_dim <= 256");
    if (max_ctx < 1 || n_threads < 1) return llmq_errorf(err, LLMQ_EUSAGE, "KV cache of %d positions", max_ctx);
    llmq_kvcache *kv = llmq_calloc(1, sizeof *kv, err);
    if (!kv) return err->code;
    kv->s = s;
    kv->L = c->n_layers;
    kv->nkv = c->n_kv_heads;
    kv->nh = c->n_heads;
    kv->hd = c->head_dim;
    kv->swin = c->sliding_window;
    kv->max_ctx = max_ctx;
    kv->slots = s.window > 0 ? LLMQ_MIN(max_ctx, s.sinks + s.window) : max_ctx;
    kv->calib = calib && quantized(&s);
    kv->had = c->had_keys;
    kv->nt = n_threads;
    int hd = kv->hd;
    size_t lh = (size_t)kv->L * kv->nkv, slots = (size_t)kv->slots;
    if (quantized(&s)) {
        kv->krow = llmq_kvq_row_bytes(hd, s.bits);
        kv->vgroups = (hd + s.value_group - 1) / s.value_group;
        kv->vrow = 0;
        for (int g0 = 0; g0 < hd; g0 += s.value_group) kv->vrow += llmq_kvq_row_bytes(LLMQ_MIN(s.value_group, hd - g0), s.bits);
    } else {
        kv->krow = kv->vrow = (size_t)hd * (s.type == LLMQ_KV_F32 ? 4 : 2);
    }
    kv->ring = s.residual + (quantized(&s) && !kv->calib ? s.key_group : 0);
    size_t books = (size_t)1 << (quantized(&s) ? s.bits : 0);
    int ok = (kv->kc = zalloc(lh * slots, kv->krow, 1, err)) && (kv->vc = zalloc(lh * slots, kv->vrow, 1, err)) &&
             (!kv->ring || ((kv->rk = zalloc(lh * kv->ring, hd, sizeof(float), err)) &&
                            (kv->rv = zalloc(lh * kv->ring, hd, sizeof(float), err)))) &&
             (!s.sinks || ((kv->sk = zalloc(lh * s.sinks, hd, sizeof(float), err)) &&
                           (kv->sv = zalloc(lh * s.sinks, hd, sizeof(float), err))));
    if (ok && quantized(&s)) {
        ok = (kv->vpar = zalloc(lh * slots, (size_t)kv->vgroups * 2, sizeof(uint16_t), err)) != NULL;
        if (ok && kv->calib) {
            size_t nk = (size_t)kv->L * kv->nkv * hd;
            ok = (kv->klo = zalloc(nk, sizeof(float), 1, err)) && (kv->kstep = zalloc(nk, sizeof(float), 1, err));
            float levels = s.type == LLMQ_KV_NUQ ? 1.0f : (float)((1 << s.bits) - 1);
            for (size_t i = 0; ok && i < nk; i++) {
                float lo = cal->k_min[i], hi = cal->k_max[i];
                if (!(hi >= lo)) lo = hi = 0.0f;
                kv->klo[i] = lo;
                kv->kstep[i] = (hi - lo) / levels;
            }
        } else if (ok) {
            kv->gcap = (kv->slots + s.key_group - 1) / s.key_group + 2;
            ok = (kv->kpar = zalloc(lh * (size_t)kv->gcap, (size_t)hd * 2, sizeof(uint16_t), err)) != NULL;
        }
        kv->ocap = s.outliers > 0 ? (int)ceil(s.outliers * hd) : 0;
        /* keys: as many as fall outside the calibrated range, up to four
         * times the rate (a token the calibration never saw can have many) */
        kv->kcap = kv->calib && kv->ocap ? LLMQ_MIN(hd, LLMQ_MAX(2, 4 * kv->ocap)) : 0;
        if (ok && kv->ocap) {
            size_t no = lh * slots * (size_t)kv->ocap, nk = lh * slots * (size_t)kv->kcap;
            ok = (kv->vox = zalloc(no, 1, 1, err)) && (kv->vov = zalloc(no, 2, 1, err)) &&
                 (!kv->kcap || ((kv->kox = zalloc(nk, 1, 1, err)) && (kv->kov = zalloc(nk, 2, 1, err))));
        }
        if (ok && s.type == LLMQ_KV_NUQ) {
            ok = (kv->kbook = zalloc((size_t)kv->L, books, sizeof(float), err)) &&
                 (kv->vbook = zalloc((size_t)kv->L, books, sizeof(float), err));
            if (ok) {
                memcpy(kv->kbook, cal->k_book, (size_t)kv->L * books * sizeof(float));
                memcpy(kv->vbook, cal->v_book, (size_t)kv->L * books * sizeof(float));
            }
        }
    }
    /* per thread: key and value rows (slots, hd), scores (QB, slots), row
     * list (slots), a group's ranges and their tag (2 hd + 1); a decode
     * tile (TILE, hd) and its heads' 1 / sums (at most QB); a KIVI group's
     * rows (thread 0) */
    kv->scr_floats = (2 * slots + TILE + (size_t)s.key_group) * hd + (size_t)QB * slots + slots + 2 * (size_t)hd + 1 + QB;
    if (ok) ok = (kv->scr = zalloc((size_t)n_threads, kv->scr_floats, sizeof(float), err)) != NULL;
    if (!ok) {
        llmq_kv_free(kv);
        return err->code;
    }
    *out = kv;
    return LLMQ_OK;
}

int llmq_kv_query_pos(const llmq_kvcache *kv, int pos, int n)
{
    int last = pos + n - 1;
    if (kv->s.window > 0) {
        if (last < kv->slots) return last;
        return n == 1 ? kv->slots - 1 : -1;
    }
    return last < kv->max_ctx ? last : -1;
}

/* The slot of logical position t (t < sinks: the sink store instead). */
static size_t slot_of(const llmq_kvcache *kv, int t)
{
    if (kv->s.window <= 0) return (size_t)t;
    int S = kv->s.sinks;
    return (size_t)(S + (t - S) % kv->s.window);
}

/* The first position >= sinks that a query at a reads exactly: keys
 * (KIVI: also the group still filling) or values. */
static int exact_from(const llmq_kvcache *kv, int a, int keys)
{
    int lo = a + 1;
    if (quantized(&kv->s)) {
        lo = a - kv->s.residual + 1;
        if (keys && !kv->calib) {
            int G = kv->s.key_group, g = (a + 1) / G * G;
            lo = LLMQ_MIN(lo, g);
        }
    }
    return LLMQ_MAX(lo, kv->s.sinks);
}

/* Exact pre-RoPE k (which 0) or v (1) of head g at t >= pos - ring: this
 * forward's (t >= pos) or the ring's. */
static const float *exact_row(const llmq_kvcache *kv, int layer, int g, int t, int pos,
                              const float *k, const float *v, int which)
{
    int hd = kv->hd, kvd = kv->nkv * hd;
    if (t >= pos) return (which ? v : k) + (size_t)(t - pos) * kvd + (size_t)g * hd;
    size_t at = (((size_t)layer * kv->nkv + g) * kv->ring + (size_t)(t % kv->ring)) * hd;
    return (which ? kv->rv : kv->rk) + at;
}

static size_t lh_of(const llmq_kvcache *kv, int layer, int g) { return (size_t)layer * kv->nkv + g; }

static void put_outliers(const uint8_t *ox, const uint16_t *ov, size_t at, int cap, float *out)
{
    for (int e = 0; e < cap; e++)
        if (ov[at + e] != OUT_NONE) out[ox[at + e]] = llmq_f16_to_f32(ov[at + e]);
}

/* Keep up to cap of the n candidates (channel cand[i], badness bad[i]),
 * the worst first, as f16 values of x; returns how many. */
static int take_outliers(const float *x, int *cand, float *bad, int n, int cap, uint8_t *ox, uint16_t *ov)
{
    int kept = 0;
    for (int e = 0; e < cap; e++) {
        int b = -1;
        for (int i = 0; i < n; i++)
            if (cand[i] >= 0 && (b < 0 || bad[i] > bad[b])) b = i;
        if (b < 0) { ox[e] = 0; ov[e] = OUT_NONE; continue; }
        ox[e] = (uint8_t)cand[b];
        ov[e] = llmq_f32_to_f16(x[cand[b]]);
        cand[b] = -1;
        kept++;
    }
    return kept;
}

LLMQ_VECTORIZE
static void bf16_row(const uint16_t *src, int n, float *out)
{
    for (int i = 0; i < n; i++) out[i] = llmq_bits_f32((uint32_t)src[i] << 16);
}

/* An f32 or bf16 cache's row: stored, read back. */
static void put_plain(const llmq_kvcache *kv, const float *x, uint8_t *dst)
{
    if (kv->s.type == LLMQ_KV_F32) memcpy(dst, x, (size_t)kv->hd * 4);
    else for (int i = 0; i < kv->hd; i++) ((uint16_t *)dst)[i] = llmq_f32_to_bf16(x[i]);   /* rows are 2-aligned */
}

/* m consecutive rows of an f32 or bf16 cache, read back. */
static void get_plain(const llmq_kvcache *kv, const uint8_t *src, int m, float *out)
{
    if (kv->s.type == LLMQ_KV_F32) memcpy(out, src, (size_t)m * kv->hd * 4);
    else bf16_row((const uint16_t *)src, m * kv->hd, out);
}

/* A KIVI key group's ranges (hd f16 pairs step, lo) as floats. */
LLMQ_VECTORIZE
static void kivi_ranges(const uint16_t *par, int hd, float *lo, float *step)
{
    for (int i = 0; i < hd; i++) { step[i] = llmq_kvq_f16(par[2 * i]); lo[i] = llmq_kvq_f16(par[2 * i + 1]); }
}

/* KIVI's ranges of the key group holding logical t as floats into tmp
 * (lo, then step), tagged (tmp[2 hd]) with the group they are of and
 * decoded once per group: a caller's tmp serves one layer and head (the
 * tag is exact while gcap < 2^24).  Returns how many keys from t on, up
 * to end, the group still holds. */
static int key_group_ranges(const llmq_kvcache *kv, size_t lh, int t, int end, float *tmp)
{
    int hd = kv->hd, G = kv->s.key_group;
    size_t grp = (size_t)(t / G % kv->gcap);
    if (tmp[2 * hd] != (float)grp) {
        kivi_ranges(kv->kpar + (lh * kv->gcap + grp) * hd * 2, hd, tmp, tmp + hd);
        tmp[2 * hd] = (float)grp;
    }
    return LLMQ_MIN(end, (t / G + 1) * G) - t;
}

/* Stored (dequantized) pre-RoPE key of head g at logical t >= sinks.
 * tmp: 2 hd + 1 floats kept between the calls for one layer and head,
 * tmp[2 hd] = -1 before the first. */
static void key_row(const llmq_kvcache *kv, int layer, int g, int t, float *out, float *tmp)
{
    int hd = kv->hd;
    size_t lh = lh_of(kv, layer, g), slot = slot_of(kv, t);
    const uint8_t *src = kv->kc + (lh * kv->slots + slot) * kv->krow;
    if (!quantized(&kv->s)) { get_plain(kv, src, 1, out); return; }
    const float *book = kv->kbook ? kv->kbook + ((size_t)layer << kv->s.bits) : NULL;
    if (kv->calib) {
        size_t at = ((size_t)layer * kv->nkv + g) * hd;
        llmq_kvq_dequantize(src, hd, kv->klo + at, kv->kstep + at, book, kv->s.bits, out);
        if (kv->kox) put_outliers(kv->kox, kv->kov, (lh * kv->slots + slot) * kv->kcap, kv->kcap, out);
        return;
    }
    key_group_ranges(kv, lh, t, t + 1, tmp);
    llmq_kvq_dequantize(src, hd, tmp, tmp + hd, book, kv->s.bits, out);
}

static void value_row(const llmq_kvcache *kv, int layer, int g, int t, float *out)
{
    int hd = kv->hd;
    size_t lh = lh_of(kv, layer, g), slot = slot_of(kv, t);
    const uint8_t *src = kv->vc + (lh * kv->slots + slot) * kv->vrow;
    if (!quantized(&kv->s)) { get_plain(kv, src, 1, out); return; }
    const float *book = kv->vbook ? kv->vbook + ((size_t)layer << kv->s.bits) : NULL;
    const uint16_t *par = kv->vpar + (lh * kv->slots + slot) * kv->vgroups * 2;
    llmq_kvq_dequantize_groups(src, hd, kv->s.value_group, par, book, kv->s.bits, out);
    if (kv->vox) put_outliers(kv->vox, kv->vov, (lh * kv->slots + slot) * kv->ocap, kv->ocap, out);
}

/* KIVI: the key group ending at t is full: its per-channel ranges over
 * the group's positions past the sinks, then their codes. */
static void key_group(llmq_kvcache *kv, int layer, int g, int t, int pos, const float *k, const float *v)
{
    int hd = kv->hd, G = kv->s.key_group, t0 = LLMQ_MAX(t - G + 1, kv->s.sinks), m = t - t0 + 1;
    size_t lh = lh_of(kv, layer, g);
    uint16_t *par = kv->kpar + (lh * kv->gcap + (size_t)(t / G % kv->gcap)) * hd * 2;
    float *rows = kv->scr, *lo = rows + (size_t)G * hd, *step = lo + hd;   /* thread 0's scratch: store is serial */
    for (int i = 0; i < m; i++) memcpy(rows + (size_t)i * hd, exact_row(kv, layer, g, t0 + i, pos, k, v, 0), (size_t)hd * 4);
    int book = kv->s.type == LLMQ_KV_NUQ;
    for (int c = 0; c < hd; c++) llmq_kvq_group_range(rows + c, m, hd, kv->s.bits, book, par + 2 * c);
    kivi_ranges(par, hd, lo, step);
    const float *bk = book ? kv->kbook + ((size_t)layer << kv->s.bits) : NULL;
    for (int i = 0; i < m; i++)
        llmq_kvq_quantize(rows + (size_t)i * hd, hd, lo, step, bk, kv->s.bits,
                          kv->kc + (lh * kv->slots + slot_of(kv, t0 + i)) * kv->krow);
}

static void store(llmq_kvcache *kv, int layer, const float *k, const float *v, int n, int pos)
{
    int hd = kv->hd, kvd = kv->nkv * hd, S = kv->s.sinks;
    for (int i = 0; i < n; i++) {
        int t = pos + i;
        for (int g = 0; g < kv->nkv; g++) {
            const float *kr = k + (size_t)i * kvd + (size_t)g * hd, *vr = v + (size_t)i * kvd + (size_t)g * hd;
            size_t lh = lh_of(kv, layer, g);
            if (t < S) {
                memcpy(kv->sk + (lh * S + t) * hd, kr, (size_t)hd * 4);
                memcpy(kv->sv + (lh * S + t) * hd, vr, (size_t)hd * 4);
                continue;
            }
            size_t slot = slot_of(kv, t);
            uint8_t *kd = kv->kc + (lh * kv->slots + slot) * kv->krow, *vd = kv->vc + (lh * kv->slots + slot) * kv->vrow;
            if (!quantized(&kv->s)) {
                put_plain(kv, kr, kd);
                put_plain(kv, vr, vd);
                continue;
            }
            const float *vb = kv->vbook ? kv->vbook + ((size_t)layer << kv->s.bits) : NULL;
            size_t oat = (lh * kv->slots + slot) * kv->ocap;
            if (kv->vox) {
                /* the token's largest |values| go apart; in their place the
                 * group's nearest other value, so they widen no range */
                float *vx = kv->scr, *bad = vx + hd;
                int *cand = (int *)(bad + hd);
                for (int c = 0; c < hd; c++) { vx[c] = vr[c]; cand[c] = c; bad[c] = fabsf(vr[c]); }
                take_outliers(vr, cand, bad, hd, kv->ocap, kv->vox + oat, kv->vov + oat);
                for (int e = 0; e < kv->ocap; e++) {
                    if (kv->vov[oat + e] == OUT_NONE) continue;
                    int c = kv->vox[oat + e], g0 = c / kv->s.value_group * kv->s.value_group;
                    int g1 = LLMQ_MIN(g0 + kv->s.value_group, hd);
                    for (int d = 1; d < hd; d++) {
                        int cc = c - d >= g0 && cand[c - d] >= 0 ? c - d : c + d < g1 && cand[c + d] >= 0 ? c + d : -1;
                        if (cc >= 0) { vx[c] = vr[cc]; break; }
                    }
                }
                llmq_kvq_quantize_groups(vx, hd, kv->s.value_group, vb, kv->s.bits, vd,
                                         kv->vpar + (lh * kv->slots + slot) * kv->vgroups * 2);
            } else {
                llmq_kvq_quantize_groups(vr, hd, kv->s.value_group, vb, kv->s.bits, vd,
                                         kv->vpar + (lh * kv->slots + slot) * kv->vgroups * 2);
            }
            if (kv->calib) {
                size_t at = lh * hd;
                const float *kb = kv->kbook ? kv->kbook + ((size_t)layer << kv->s.bits) : NULL;
                llmq_kvq_quantize(kr, hd, kv->klo + at, kv->kstep + at, kb, kv->s.bits, kd);
                if (kv->kox) {   /* keys past their calibrated range, the farthest first */
                    float *bad = kv->scr;
                    int *cand = (int *)(bad + hd), nc = 0;
                    float top = kv->s.type == LLMQ_KV_NUQ ? 1.0f : (float)((1 << kv->s.bits) - 1);
                    for (int c = 0; c < hd; c++) {
                        float lo = kv->klo[at + c], hi = lo + kv->kstep[at + c] * top;
                        float over = kr[c] < lo ? lo - kr[c] : kr[c] > hi ? kr[c] - hi : 0.0f;
                        if (over > 0.0f) { cand[nc] = c; bad[nc++] = over; }
                    }
                    size_t kat = (lh * kv->slots + slot) * kv->kcap;
                    kv->kout += take_outliers(kr, cand, bad, nc, kv->kcap, kv->kox + kat, kv->kov + kat);
                    kv->krows++;
                }
            } else if ((t + 1) % kv->s.key_group == 0) {
                key_group(kv, layer, g, t, pos, k, v);
            }
        }
    }
}

static void ring_update(llmq_kvcache *kv, int layer, const float *k, const float *v, int n, int pos)
{
    int hd = kv->hd, kvd = kv->nkv * hd;
    if (!kv->ring) return;
    for (int t = LLMQ_MAX(pos, pos + n - kv->ring); t < pos + n; t++)
        for (int g = 0; g < kv->nkv; g++) {
            size_t at = (lh_of(kv, layer, g) * kv->ring + (size_t)(t % kv->ring)) * hd;
            memcpy(kv->rk + at, k + (size_t)(t - pos) * kvd + (size_t)g * hd, (size_t)hd * 4);
            memcpy(kv->rv + at, v + (size_t)(t - pos) * kvd + (size_t)g * hd, (size_t)hd * 4);
        }
}

/* Rotate-half RoPE of one row at position p, as llmq_op_rope_fwd. */
LLMQ_VECTORIZE
static void rotate(float *row, int hd, int p, const float *cs, const float *sn)
{
    int half = hd / 2;
    const float *c = cs + (size_t)p * half, *s = sn + (size_t)p * half;
    for (int i = 0; i < half; i++) {
        float a = row[i], b = row[i + half];
        row[i] = a * c[i] - b * s[i];
        row[i + half] = b * c[i] + a * s[i];
    }
}

LLMQ_VECTORIZE
static float dot(const float *a, const float *b, int n)
{
    float acc[16] = { 0 }, s = 0.0f;
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) acc[l] += a[i + l] * b[i + l];
    for (int l = 0; l < 16; l++) s += acc[l];
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

LLMQ_VECTORIZE
static void axpy(float p, const float *x, int n, float *y)
{
    for (int i = 0; i < n; i++) y[i] += p * x[i];
}

/* Read row r of a block's rows into kr (rotated key) and/or vr. */
struct rows {
    int evict, a1, lok, lov;
};

static int row_t(const llmq_kvcache *kv, const struct rows *R, int r)
{
    if (!R->evict) return r;
    return r < kv->s.sinks ? r : R->a1 - kv->s.window + 1 + (r - kv->s.sinks);
}

/* ---- a decode tile's rows, one call per tile ----
 * When a tile's m rows are all stored (past the sinks, before the exact
 * ones) at consecutive slots, they are read in one call; the rows of
 * any other tile go one by one (key_row, value_row).  Same values. */

/* Rows stored in whole bytes without codebooks or outliers: what the
 * tile readers take. */
static int tile_keys_ok(const llmq_kvcache *kv)
{
    if (!quantized(&kv->s)) return 1;
    return !kv->kbook && !kv->kox && llmq_kvq_whole_bytes(kv->hd, kv->s.bits);
}

static int tile_values_ok(const llmq_kvcache *kv)
{
    if (!quantized(&kv->s)) return 1;
    int vg = LLMQ_MIN(kv->s.value_group, kv->hd);
    return !kv->vbook && !kv->vox && kv->hd % vg == 0 && llmq_kvq_whole_bytes(vg, kv->s.bits);
}

/* Keys t0..t0+m-1 of head g (tile_stored) into out (m, hd), pre-RoPE. */
static void tile_keys(const llmq_kvcache *kv, int layer, int g, int t0, int m, float *out, float *tmp)
{
    int hd = kv->hd;
    size_t lh = lh_of(kv, layer, g);
    const uint8_t *src = kv->kc + (lh * kv->slots + slot_of(kv, t0)) * kv->krow;
    if (!quantized(&kv->s)) {
        get_plain(kv, src, m, out);
        return;
    }
    if (kv->calib) {
        size_t at = lh * hd;
        llmq_kv_deq_channels(src, kv->krow, m, hd, kv->s.bits, kv->klo + at, kv->kstep + at, out);
        return;
    }
    /* KIVI: a run of rows per key group */
    for (int t = t0, n; t < t0 + m; t += n) {
        n = key_group_ranges(kv, lh, t, t0 + m, tmp);
        llmq_kv_deq_channels(src + (size_t)(t - t0) * kv->krow, kv->krow, n, hd, kv->s.bits, tmp, tmp + hd,
                             out + (size_t)(t - t0) * hd);
    }
}

/* The scores of the query heads Q over keys t0..t0+m-1 (tile_stored, at
 * positions p0 on) straight from their codes (llmq_attn_scores_codes):
 * 4-bit caches where the ISA has bf16 products.  0 when it declines (on
 * the shape alone, so at the first call), tile_keys then.  tmp as
 * tile_keys'. */
static int tile_scores_codes(const llmq_kvcache *kv, int layer, int g, int t0, int m, int p0, const float *cs,
                             const float *sn, const float *Q, int group, float scale, float *S, size_t ldS, float *tmp)
{
    int hd = kv->hd;
    if (!quantized(&kv->s) || kv->s.bits != 4 || kv->had) return 0;
    size_t lh = lh_of(kv, layer, g);
    const uint8_t *src = kv->kc + (lh * kv->slots + slot_of(kv, t0)) * kv->krow;
    if (kv->calib)
        return llmq_attn_scores_codes(src, kv->krow, m, hd, 4, kv->klo + lh * hd, kv->kstep + lh * hd, p0, cs, sn,
                                      Q, group, scale, S, ldS);
    for (int t = t0, n; t < t0 + m; t += n) {
        n = key_group_ranges(kv, lh, t, t0 + m, tmp);
        if (!llmq_attn_scores_codes(src + (size_t)(t - t0) * kv->krow, kv->krow, n, hd, 4, tmp, tmp + hd,
                                    p0 + (t - t0), cs, sn, Q, group, scale, S + (t - t0), ldS))
            return 0;
    }
    return 1;
}

static void tile_vals(const llmq_kvcache *kv, int layer, int g, int t0, int m, float *out)
{
    int hd = kv->hd;
    size_t lh = lh_of(kv, layer, g), slot = slot_of(kv, t0);
    const uint8_t *src = kv->vc + (lh * kv->slots + slot) * kv->vrow;
    if (!quantized(&kv->s)) {
        get_plain(kv, src, m, out);
        return;
    }
    llmq_kv_deq_groups(src, kv->vrow, kv->vpar + (lh * kv->slots + slot) * kv->vgroups * 2, kv->vgroups, m, hd,
                       kv->s.bits, out);
}

/* The tile's values straight from their codes into the heads' sums O, for
 * 4- and 2-bit caches where the ISA has bf16 products
 * (llmq_attn_values_codes): 0 when it declines, tile_vals then. */
static int tile_vals_codes(const llmq_kvcache *kv, int layer, int g, int t0, int m, const float *P, size_t ldP,
                           int group, float *O)
{
    if (!quantized(&kv->s) || kv->s.bits > 4) return 0;
    size_t lh = lh_of(kv, layer, g), slot = slot_of(kv, t0);
    return llmq_attn_values_codes(P, ldP, m, kv->vc + (lh * kv->slots + slot) * kv->vrow, kv->vrow,
                                  kv->vpar + (lh * kv->slots + slot) * kv->vgroups * 2, kv->vgroups, kv->hd,
                                  kv->s.bits, group, O);
}

/* e^x for x <= 0 (softmax's arguments less their max), within 1 ulp of
 * e^x (measured on every 7th float of [-87, 0]); below -87, e^-87.  A range reduction by
 * ln 2 in two parts and a degree 7 polynomial (Cephes' expf), inline so
 * the loops below vectorize. */
static inline float exp_le0(float x)
{
    x = x > -87.0f ? x : -87.0f;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;   /* nearest integer */
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    return p * llmq_bits_f32((uint32_t)((int32_t)n + 127) << 23);
}

/* row[0..n) = e^(row - max row), unnormalized; returns 1 / their sum
 * (the caller scales the output, not the n weights).  Sixteen running
 * maxima and sums, so that the loops vectorize. */
LLMQ_VECTORIZE_FMA
static float softmax_exp(float *row, int n)
{
    float mx[16], sum[16], m = -INFINITY, s = 0.0f;
    for (int l = 0; l < 16; l++) mx[l] = -INFINITY, sum[l] = 0.0f;
    int r = 0;
    for (; r + 16 <= n; r += 16)
        for (int l = 0; l < 16; l++) mx[l] = row[r + l] > mx[l] ? row[r + l] : mx[l];
    for (int l = 0; l < 16; l++) m = mx[l] > m ? mx[l] : m;
    for (; r < n; r++) m = row[r] > m ? row[r] : m;
    for (r = 0; r + 16 <= n; r += 16)
        for (int l = 0; l < 16; l++) {
            row[r + l] = exp_le0(row[r + l] - m);
            sum[l] += row[r + l];
        }
    for (; r < n; r++) {
        row[r] = exp_le0(row[r] - m);
        s += row[r];
    }
    for (int l = 0; l < 16; l++) s += sum[l];
    return 1.0f / s;
}

/* Whether rows r0..r0+m-1 of a step are logical positions t0 = row_t(r0)
 * onwards, all stored (past the sinks, before lim, the first read exactly)
 * at consecutive slots: a tile the tile readers take. */
static int tile_stored(const llmq_kvcache *kv, const struct rows *R, int r0, int m, int lim)
{
    int t0 = row_t(kv, R, r0);
    if (row_t(kv, R, r0 + m - 1) != t0 + m - 1 || t0 < kv->s.sinks || t0 + m > lim) return 0;
    return slot_of(kv, t0 + m - 1) - slot_of(kv, t0) == (size_t)(m - 1);
}

struct job {
    llmq_kvcache *kv;
    int layer, n, pos;
    const float *q, *k, *v, *cs, *sn;
    float *att;
};

/* A decode step (one query) on KV head g: keys and values read a tile at
 * a time into L1 and shared by the head's query heads. */
static void decode_head(const struct job *j, int g, float *scr)
{
    llmq_kvcache *kv = j->kv;
    int hd = kv->hd, S = kv->s.sinks, pos = j->pos, layer = j->layer, group = kv->nh / kv->nkv;
    struct rows R = { kv->s.window > 0 && pos >= kv->slots, pos, exact_from(kv, pos, 1), exact_from(kv, pos, 0) };
    int nr = R.evict ? S + kv->s.window : pos + 1;
    int lo = 0;
    if (!R.evict && kv->swin > 0 && pos - kv->swin + 1 > 0) lo = pos - kv->swin + 1;
    float *tile = scr, *Sm = tile + (size_t)TILE * hd, *tmp = Sm + (size_t)group * nr;
    tmp[2 * hd] = -1.0f;   /* no key ranges decoded yet (key_row) */
    const float *Q = j->q + (size_t)g * group * hd;
    float scale = 1.0f / sqrtf((float)hd);
    size_t lh = lh_of(kv, layer, g);
    int fastk = tile_keys_ok(kv), fastv = tile_values_ok(kv);
    /* tiles of stored keys of 4 bits and fewer: products on bf16
     * (kernels.h); sinks and exact rows keep fp32 */
    int lowbits = quantized(&kv->s) && kv->s.bits <= 4;
    for (int r0 = lo; r0 < nr; r0 += TILE) {
        int m = LLMQ_MIN(TILE, nr - r0), t0 = row_t(kv, &R, r0), lowp = 0;
        if (fastk && tile_stored(kv, &R, r0, m, R.lok)) {
            if (lowbits && tile_scores_codes(kv, layer, g, t0, m, R.evict ? r0 : t0, j->cs, j->sn, Q, group, scale,
                                             Sm + r0, (size_t)nr, tmp))
                continue;
            tile_keys(kv, layer, g, t0, m, tile, tmp);
            lowp = lowbits;
        } else {
            for (int r = 0; r < m; r++) {
                int t = row_t(kv, &R, r0 + r);
                float *kr = tile + (size_t)r * hd;
                if (t < S) memcpy(kr, kv->sk + (lh * S + t) * hd, (size_t)hd * 4);
                else if (t >= R.lok) memcpy(kr, exact_row(kv, layer, g, t, pos, j->k, j->v, 0), (size_t)hd * 4);
                else key_row(kv, layer, g, t, kr, tmp);
            }
        }
        if (kv->had) llmq_fwht(tile, m, hd, hd);
        /* positions: t unless evicting, then the row's place in the cache */
        (lowp ? llmq_attn_scores_bf16 : llmq_attn_scores)(tile, m, hd, R.evict ? r0 : t0, j->cs, j->sn, Q, group, scale,
                                                          Sm + r0, (size_t)nr);
    }
    float *inv = tmp + 2 * hd + 1;   /* group <= QB floats (scr_floats) */
    for (int h = 0; h < group; h++) {
        inv[h] = softmax_exp(Sm + (size_t)h * nr + lo, nr - lo);
        memset(j->att + (size_t)(g * group + h) * hd, 0, (size_t)hd * 4);
    }
    for (int r0 = lo; r0 < nr; r0 += TILE) {
        int m = LLMQ_MIN(TILE, nr - r0), t0 = row_t(kv, &R, r0);
        if (fastv && tile_stored(kv, &R, r0, m, R.lov)) {
            if (tile_vals_codes(kv, layer, g, t0, m, Sm + r0, (size_t)nr, group, j->att + (size_t)g * group * hd))
                continue;
            tile_vals(kv, layer, g, t0, m, tile);
        } else {
            for (int r = 0; r < m; r++) {
                int t = row_t(kv, &R, r0 + r);
                float *vr = tile + (size_t)r * hd;
                if (t < S) memcpy(vr, kv->sv + (lh * S + t) * hd, (size_t)hd * 4);
                else if (t >= R.lov) memcpy(vr, exact_row(kv, layer, g, t, pos, j->k, j->v, 1), (size_t)hd * 4);
                else value_row(kv, layer, g, t, vr);
            }
        }
        llmq_attn_values(Sm + r0, (size_t)nr, m, tile, hd, group, j->att + (size_t)g * group * hd);
    }
    for (int h = 0; h < group; h++)
        for (int c = 0; c < hd; c++) j->att[(size_t)(g * group + h) * hd + c] *= inv[h];
}

/* Queries i0..i1-1 of the job on KV head g. */
static void attend_block(const struct job *j, int g, int i0, int i1, float *scr)
{
    llmq_kvcache *kv = j->kv;
    int hd = kv->hd, S = kv->s.sinks, pos = j->pos, layer = j->layer;
    int qd = kv->nh * hd, group = kv->nh / kv->nkv, nb = i1 - i0;
    int a1 = pos + i1 - 1;
    int evict = kv->s.window > 0 && a1 >= kv->slots;   /* then nb == 1 */
    size_t slots = (size_t)kv->slots;
    float *Kd = scr, *Vd = Kd + slots * hd, *Sm = Vd + slots * hd, *tmp = Sm + (size_t)QB * slots;
    int *tl = (int *)(tmp + 2 * hd + 1);
    tmp[2 * hd] = -1.0f;   /* no key ranges decoded yet (key_row) */
    int nr = 0;
    if (evict) {
        for (int t = 0; t < S; t++) tl[nr++] = t;
        for (int t = a1 - kv->s.window + 1; t <= a1; t++) tl[nr++] = t;
    } else {
        for (int t = 0; t <= a1; t++) tl[nr++] = t;
    }
    int lok = exact_from(kv, a1, 1), lov = exact_from(kv, a1, 0);
    for (int r = 0; r < nr; r++) {
        int t = tl[r];
        float *kr = Kd + (size_t)r * hd, *vr = Vd + (size_t)r * hd;
        if (t < S) {
            size_t at = (lh_of(kv, layer, g) * S + t) * hd;
            memcpy(kr, kv->sk + at, (size_t)hd * 4);
            memcpy(vr, kv->sv + at, (size_t)hd * 4);
        } else {
            if (t >= lok) memcpy(kr, exact_row(kv, layer, g, t, pos, j->k, j->v, 0), (size_t)hd * 4);
            else key_row(kv, layer, g, t, kr, tmp);
            if (t >= lov) memcpy(vr, exact_row(kv, layer, g, t, pos, j->k, j->v, 1), (size_t)hd * 4);
            else value_row(kv, layer, g, t, vr);
        }
        if (kv->had) llmq_fwht(kr, 1, hd, hd);
        rotate(kr, hd, evict ? r : t, j->cs, j->sn);
    }
    float scale = 1.0f / sqrtf((float)hd);
    for (int h = g * group; h < (g + 1) * group; h++) {
        const float *Q = j->q + (size_t)i0 * qd + (size_t)h * hd;
        if (nb == 1) {
            for (int r = 0; r < nr; r++) Sm[r] = dot(Q, Kd + (size_t)r * hd, hd) * scale;
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, nr, hd, scale, Q, qd, Kd, hd, 0.0f, Sm, nr);
        }
        for (int i = 0; i < nb; i++) {
            float *row = Sm + (size_t)i * nr;
            int a = pos + i0 + i, lo = 0, last = evict ? nr - 1 : a;
            /* keys this query reads exactly that the block's last query does not */
            for (int t = exact_from(kv, a, 1); t < LLMQ_MIN(lok, a + 1); t++) {
                memcpy(tmp, exact_row(kv, layer, g, t, pos, j->k, j->v, 0), (size_t)hd * 4);
                if (kv->had) llmq_fwht(tmp, 1, hd, hd);
                rotate(tmp, hd, t, j->cs, j->sn);
                row[t] = dot(Q + (size_t)i * qd, tmp, hd) * scale;
            }
            if (!evict && kv->swin > 0 && a - kv->swin + 1 > 0) lo = a - kv->swin + 1;
            float mx = -INFINITY, sum = 0.0f;
            for (int r = lo; r <= last; r++) mx = row[r] > mx ? row[r] : mx;
            for (int r = 0; r < nr; r++) {
                float e = r >= lo && r <= last ? expf(row[r] - mx) : 0.0f;
                row[r] = e;
                sum += e;
            }
            float inv = 1.0f / sum;
            for (int r = 0; r < nr; r++) row[r] *= inv;
        }
        float *O = j->att + (size_t)i0 * qd + (size_t)h * hd;
        if (nb == 1) {
            memset(O, 0, (size_t)hd * 4);
            for (int r = 0; r < nr; r++) axpy(Sm[r], Vd + (size_t)r * hd, hd, O);
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, hd, nr, 1.0f, Sm, nr, Vd, hd, 0.0f, O, qd);
        }
        for (int i = 0; i < nb; i++) {
            int a = pos + i0 + i;
            float *o = O + (size_t)i * qd;
            for (int t = exact_from(kv, a, 0); t < LLMQ_MIN(lov, a + 1); t++) {
                const float *ve = exact_row(kv, layer, g, t, pos, j->k, j->v, 1), *vq = Vd + (size_t)t * hd;
                float p = Sm[(size_t)i * nr + t];
                for (int c = 0; c < hd; c++) o[c] += p * (ve[c] - vq[c]);
            }
        }
    }
}

static void attend_worker(void *ctx, int ti, int nt)
{
    const struct job *j = ctx;
    llmq_kvcache *kv = j->kv;
    int blocks = (j->n + QB - 1) / QB, units = blocks * kv->nkv;
    float *scr = kv->scr + (size_t)ti * kv->scr_floats;
    for (int u = ti; u < units; u += nt) {
        int g = u % kv->nkv, b = u / kv->nkv;
        if (j->n == 1 && kv->nh / kv->nkv <= QB) decode_head(j, g, scr);
        else attend_block(j, g, b * QB, LLMQ_MIN(j->n, (b + 1) * QB), scr);
    }
}

void llmq_kv_attend(llmq_kvcache *kv, llmq_pool *pool, int layer, const float *q, const float *k,
                    const float *v, int n, int pos, const float *cs, const float *sn, float *att)
{
    store(kv, layer, k, v, n, pos);
    struct job j = { kv, layer, n, pos, q, k, v, cs, sn, att };
    if (llmq_pool_size(pool) > kv->nt) {
        attend_worker(&j, 0, 1);   /* scratch for fewer threads than the pool has */
    } else {
        llmq_pool_run(pool, attend_worker, &j);
    }
    ring_update(kv, layer, k, v, n, pos);
}
