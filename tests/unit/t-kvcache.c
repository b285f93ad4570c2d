/*
 * t-kvcache.c - the KV-cache row quantizers (lib/quant/kvq.c) against
 * naive oracles written here, and the cache's attention (lib/kvcache.c)
 * against a brute-force causal softmax attention in double precision on
 * keys rotated at their positions: exact for f32, an exact emulation of
 * what each query reads (sinks, residual, KIVI's filling group, the
 * quantized rest) for bf16, int and nuq, and StreamingLLM's re-assigned
 * positions once a window evicts.
 */
#include "../test.h"
#include <float.h>
#include "kvcache.h"
#include "quant/kvq.h"
#include "train/ops.h"
#include "base/pool.h"

/* ---- tolerances ---- */
/* kvq: dequantized values are lo + step * code in f32; (x - lo) / step and
 * that product add a few roundings relative to the magnitudes involved */
#define KVQ_ROUND_REL (4.0 * FLT_EPSILON)
/* attention of f32 and of an exact emulation of the quantized reads:
 * float scores, expf and sgemm against double, relative to max |v| */
#define TOL_ATT 1e-5
/* the same where tiles of 4 bits and fewer score on bf16
 * (llmq_attn_scores_bf16: keys and queries rounded by 2^-9 relative,
 * scores of about 1 off by about 2^-8) and sum their values with bf16
 * weights (llmq_attn_values_codes); measured 9.3e-4, 2x allowed */
#define TOL_ATT_BF16 2e-3
/* the same cache read exactly everywhere (residual covering every
 * position) against the f32 cache: the same float operations */
#define TOL_SAME 1e-6
/* quantized caches against the exact oracle on uniform [-1, 1] values
 * (keys with 4x outlier channels), head sizes 16 and 64: max errors
 * measured 0.0037 (int8) and 0.064 (int4), 3x that allowed */
#define TOL_INT8 0.012
#define TOL_INT4 0.2
/* bf16 storage against the exact oracle: 2^-8 relative rounding of values
 * about 1, keys rounded too */
#define TOL_BF16 0.01
/* a query whose score on one sink beats every other by > 100 reads that
 * sink's value: exp(-100) of everything else */
#define TOL_SINK 1e-4

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint64_t rnd(void) { rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17; return rng_state; }
static float rndf(void) { return (float)((double)(rnd() >> 11) / 9007199254740992.0 * 2.0 - 1.0); }   /* [-1, 1) */
static float rndu(void) { return (float)((double)(rnd() >> 11) / 9007199254740992.0); }               /* [0, 1) */

/* ================= kvq: bit packing ================= */

#define GUARD 16
#define GUARD_BYTE 0xA5

static int guard_ok(const uint8_t *p) { for (int i = 0; i < GUARD; i++) if (p[i] != GUARD_BYTE) return 0; return 1; }

static const int lens[] = { 1, 3, 63, 64, 65, 1000, 1025 };

TEST(kvq_pack_round_trip)
{
    enum { NMAX = 1025 };
    static uint8_t codes[NMAX], back[NMAX + GUARD], buf[NMAX + GUARD];
    for (int bits = 2; bits <= 8; bits++)
        for (size_t li = 0; li < LLMQ_ARRAY_LEN(lens); li++) {
            int n = lens[li];
            size_t nb = llmq_kvq_row_bytes(n, bits);
            CHECK_EQ_INT(nb, ((size_t)n * bits + 7) / 8);
            for (int i = 0; i < n; i++) codes[i] = (uint8_t)(rnd() & ((1u << bits) - 1));
            if (n > 2) { codes[0] = (uint8_t)((1u << bits) - 1); codes[n - 1] = (uint8_t)((1u << bits) - 1); }
            memset(buf, 0xFF, nb);              /* pack must not OR into old bytes */
            memset(buf + nb, GUARD_BYTE, GUARD);
            llmq_kvq_pack(codes, n, bits, buf);
            CHECK_MSG(guard_ok(buf + nb), "bits %d n %d: pack wrote past %zu bytes", bits, n, nb);
            /* the layout: code i's bit j is bit i * bits + j of the little-endian stream */
            int bad = 0;
            for (int i = 0; i < n && !bad; i++)
                for (int j = 0; j < bits; j++) {
                    size_t at = (size_t)i * bits + j;
                    if (((buf[at >> 3] >> (at & 7)) & 1) != ((codes[i] >> j) & 1)) { bad = 1; break; }
                }
            CHECK_MSG(!bad, "bits %d n %d: not a little-endian bit stream", bits, n);
            /* unpack reads exactly nb bytes (ASan sees an over-read of this
             * copy) and ignores the padding bits */
            uint8_t *in = malloc(nb);
            memcpy(in, buf, nb);
            if ((size_t)n * bits % 8) in[nb - 1] |= (uint8_t)(0xFF << ((size_t)n * bits % 8));
            memset(back, GUARD_BYTE, sizeof back);
            llmq_kvq_unpack(in, n, bits, back);
            free(in);
            CHECK_MSG(memcmp(codes, back, (size_t)n) == 0, "bits %d n %d: unpack(pack(codes)) != codes", bits, n);
            CHECK_MSG(guard_ok(back + n), "bits %d n %d: unpack wrote past %d codes", bits, n, n);
        }
}

/* ================= kvq: uniform codes with element-wise ranges ================= */

/* the definition, in the f32 arithmetic the header implies */
static uint8_t uniform_oracle(float x, float lo, float step, int bits)
{
    int top = (1 << bits) - 1;
    if (step == 0.0f) return 0;
    float c = rintf((x - lo) / step);
    return (uint8_t)(c < 0.0f ? 0 : c > (float)top ? top : (int)c);
}

TEST(kvq_uniform_vs_oracle)
{
    enum { NMAX = 2500 };
    static float x[NMAX], lo[NMAX], step[NMAX], y[NMAX];
    static uint8_t out[NMAX + GUARD], codes[NMAX];
    static const int ns[] = { 1, 3, 65, 1000, 1025, 2500 };
    for (int bits = 2; bits <= 8; bits++)
        for (size_t ni = 0; ni < LLMQ_ARRAY_LEN(ns); ni++) {
            int n = ns[ni], top = (1 << bits) - 1;
            for (int i = 0; i < n; i++) {
                lo[i] = rndf() * 4.0f;
                step[i] = (i % 17 == 5) ? 0.0f : rndu() * 0.5f + 1e-3f;
                float hi = lo[i] + step[i] * (float)top;
                switch (i % 8) {
                case 0: x[i] = lo[i] - rndu() * 3.0f - 1e-3f; break;               /* below */
                case 1: x[i] = hi + rndu() * 3.0f + 1e-3f; break;                  /* above */
                case 2: x[i] = lo[i]; break;
                case 3: x[i] = hi; break;
                case 4: x[i] = lo[i] + step[i] * ((float)(rnd() % (unsigned)top) + 0.5f); break;   /* near a tie */
                default: x[i] = lo[i] + rndu() * (hi - lo[i]); break;
                }
            }
            memset(out + llmq_kvq_row_bytes(n, bits), GUARD_BYTE, GUARD);
            llmq_kvq_quantize(x, n, lo, step, NULL, bits, out);
            CHECK_MSG(guard_ok(out + llmq_kvq_row_bytes(n, bits)), "bits %d n %d: quantize wrote past the row", bits, n);
            llmq_kvq_unpack(out, n, bits, codes);
            llmq_kvq_dequantize(out, n, lo, step, NULL, bits, y);
            int bad_code = -1, bad_val = -1;
            for (int i = 0; i < n; i++) {
                if (codes[i] != uniform_oracle(x[i], lo[i], step[i], bits) && bad_code < 0) bad_code = i;
                double hi = (double)lo[i] + (double)step[i] * top, e = fabs((double)y[i] - x[i]);
                double slack = KVQ_ROUND_REL * (fabs(lo[i]) + fabs(x[i]) + step[i] * top);
                int ok;
                if (step[i] == 0.0f) ok = codes[i] == 0 && y[i] == lo[i];
                else if (x[i] < lo[i]) ok = codes[i] == 0 && y[i] == lo[i];
                else if ((double)x[i] > hi + slack) ok = codes[i] == top && fabs((double)y[i] - hi) <= slack;
                else ok = e <= step[i] / 2.0 + slack;
                if (!ok && bad_val < 0) bad_val = i;
            }
            CHECK_MSG(bad_code < 0, "bits %d n %d: element %d: code %d, oracle %d (x %.9g lo %.9g step %.9g)", bits, n,
                      bad_code, bad_code < 0 ? 0 : codes[bad_code],
                      bad_code < 0 ? 0 : uniform_oracle(x[bad_code], lo[bad_code], step[bad_code], bits),
                      bad_code < 0 ? 0.0 : x[bad_code], bad_code < 0 ? 0.0 : lo[bad_code], bad_code < 0 ? 0.0 : step[bad_code]);
            CHECK_MSG(bad_val < 0, "bits %d n %d: element %d: x %.9g -> %.9g (lo %.9g step %.9g)", bits, n, bad_val,
                      bad_val < 0 ? 0.0 : x[bad_val], bad_val < 0 ? 0.0 : y[bad_val],
                      bad_val < 0 ? 0.0 : lo[bad_val], bad_val < 0 ? 0.0 : step[bad_val]);
        }
}

/* A NaN (the header: "given a NaN anyway write some code") stays a code in
 * range and writes nothing past the row. */
TEST(kvq_nan_gives_a_code)
{
    float x[5] = { NAN, 1.0f, -NAN, 0.5f, NAN }, lo[5] = { 0, 0, 0, 0, 0 }, step[5] = { 0.1f, 0.1f, 0.1f, 0.1f, 0.1f };
    float book[4] = { 0.0f, 0.2f, 0.7f, 1.0f };
    uint8_t out[8 + GUARD], codes[5];
    for (int b = 0; b < 2; b++) {
        memset(out, GUARD_BYTE, sizeof out);
        llmq_kvq_quantize(x, 5, lo, step, b ? book : NULL, 2, out);
        CHECK(guard_ok(out + llmq_kvq_row_bytes(5, 2)));
        llmq_kvq_unpack(out, 5, 2, codes);
        CHECK(codes[0] < 4 && codes[2] < 4 && codes[4] < 4);
        CHECK(codes[1] == 3 && codes[3] == 3);   /* u = 10 and 5: above the range, the top code */
    }
}

/* ================= kvq: codebook codes ================= */

/* 2^bits ascending levels in [0, 1] with both ends; kind 0: random, 1:
 * uniform k / top (dyadic-free), 2: dyadic (exact midpoints), 3: random
 * with repeated levels */
static void make_book(float *book, int bits, int kind)
{
    int n = 1 << bits;
    for (int i = 0; i < n; i++) {
        switch (kind) {
        case 1: book[i] = (float)i / (float)(n - 1); break;
        case 2: book[i] = (float)i / (float)n; break;
        default: book[i] = rndu(); break;
        }
    }
    for (int i = 1; i < n; i++)   /* insertion sort */
        for (int j = i; j > 0 && book[j - 1] > book[j]; j--) { float t = book[j]; book[j] = book[j - 1]; book[j - 1] = t; }
    if (kind == 3) for (int i = 1; i < n; i += 3) book[i] = book[i - 1];
    book[0] = 0.0f;
    if (kind != 2) book[n - 1] = 1.0f;
}

/* the code is a nearest level of u = (x - lo) / step: |u - level[code]|
 * is the minimum over the book, in double from the f32 u */
static int nearest_ok(float x, float lo, float step, const float *book, int bits, int code)
{
    if (step == 0.0f) return code == 0;
    double u = (double)((x - lo) / step), best = INFINITY;
    for (int k = 0; k < (1 << bits); k++) best = fmin(best, fabs(u - book[k]));
    return fabs(u - book[code]) == best;
}

static void check_book_codes(const float *x, int n, const float *lo, const float *step, const float *book, int bits,
                             const char *what)
{
    static uint8_t out[4096 + GUARD], codes[4096];
    static float y[4096];
    memset(out + llmq_kvq_row_bytes(n, bits), GUARD_BYTE, GUARD);
    llmq_kvq_quantize(x, n, lo, step, book, bits, out);
    CHECK_MSG(guard_ok(out + llmq_kvq_row_bytes(n, bits)), "%s bits %d: quantize wrote past the row", what, bits);
    llmq_kvq_unpack(out, n, bits, codes);
    llmq_kvq_dequantize(out, n, lo, step, book, bits, y);
    int bad = -1, badv = -1;
    for (int i = 0; i < n; i++) {
        if (!nearest_ok(x[i], lo[i], step[i], book, bits, codes[i]) && bad < 0) bad = i;
        if (y[i] != lo[i] + step[i] * book[codes[i]] && badv < 0) badv = i;
    }
    if (bad >= 0) {
        double u = (double)((x[bad] - lo[bad]) / step[bad]);
        int c = codes[bad];
        CHECK_MSG(0, "%s bits %d: element %d: u %.9g got level[%d] = %.9g (distance %.3g), level[%d] = %.9g, level[%d] = %.9g",
                  what, bits, bad, u, c, book[c], fabs(u - book[c]), c > 0 ? c - 1 : c, book[c > 0 ? c - 1 : c],
                  c < (1 << bits) - 1 ? c + 1 : c, book[c < (1 << bits) - 1 ? c + 1 : c]);
    }
    CHECK_MSG(badv < 0, "%s bits %d: element %d: dequantized %.9g, lo + step * level %.9g", what, bits, badv,
              badv < 0 ? 0.0 : y[badv], badv < 0 ? 0.0 : lo[badv] + step[badv] * book[codes[badv]]);
}

TEST(kvq_codebook_nearest_level)
{
    enum { N = 3000 };
    static float x[N], lo[N], step[N], book[256];
    for (int bits = 2; bits <= 8; bits++)
        for (int kind = 0; kind < 4; kind++) {
            make_book(book, bits, kind);
            int top = (1 << bits) - 1;
            for (int i = 0; i < N; i++) {
                lo[i] = rndf() * 2.0f;
                step[i] = i % 29 == 3 ? 0.0f : 0.1f + rndu() * 3.0f;
                float u;
                switch (i % 6) {
                case 0: u = -rndu() * 2.0f; break;                           /* below the book */
                case 1: u = 1.0f + rndu() * 2.0f; break;                     /* above */
                case 2: u = book[rnd() % (unsigned)(top + 1)]; break;        /* on a level */
                default: u = rndu(); break;
                }
                x[i] = lo[i] + step[i] * u;
            }
            char what[48];
            snprintf(what, sizeof what, "book kind %d", kind);
            check_book_codes(x, N, lo, step, book, bits, what);
        }
}

/* Values of u one float either side of each midpoint between levels (and
 * on it: either neighbour then), lo 0 and step 1 so u is x exactly. */
TEST(kvq_codebook_midpoints)
{
    static float x[4096], lo[4096], step[4096], book[256];
    for (int bits = 2; bits <= 8; bits++)
        for (int kind = 0; kind < 3; kind++) {
            make_book(book, bits, kind);
            int n = 0;
            for (int k = 0; k + 1 < (1 << bits); k++) {
                double mid = 0.5 * ((double)book[k] + (double)book[k + 1]);   /* exact: two floats */
                float m = (float)mid;
                float cand[4] = { m, nextafterf(m, -1.0f), nextafterf(m, 2.0f), nextafterf(nextafterf(m, 2.0f), 2.0f) };
                for (int j = 0; j < 4; j++) x[n++] = cand[j];
            }
            for (int i = 0; i < n; i++) { lo[i] = 0.0f; step[i] = 1.0f; }
            char what[48];
            snprintf(what, sizeof what, "midpoints, book kind %d", kind);
            check_book_codes(x, n, lo, step, book, bits, what);
        }
}

/* ================= kvq: per-group f16 ranges ================= */

/* every element's range covers it and no element clamps: its error is at
 * most step / 2 (a codebook: half the widest gap between levels) */
static void check_groups(const float *x, int n, int group, const float *book, int bits, const char *what)
{
    static uint8_t out[8192 + GUARD];
    static uint16_t par[2 * 1100];
    static float y[4096];
    int top = (1 << bits) - 1, ng = (n + group - 1) / group;
    size_t bytes = 0;   /* kvcache.c's row size: each group from a whole byte */
    for (int g0 = 0; g0 < n; g0 += group) bytes += llmq_kvq_row_bytes(LLMQ_MIN(group, n - g0), bits);
    memset(out + bytes, GUARD_BYTE, GUARD);
    memset(par, 0xEE, sizeof par);
    llmq_kvq_quantize_groups(x, n, group, book, bits, out, par);
    CHECK_MSG(guard_ok(out + bytes), "%s: quantize_groups wrote past %zu bytes", what, bytes);
    CHECK_MSG(par[2 * ng] == 0xEEEE && par[2 * ng + 1] == 0xEEEE, "%s: more than %d ranges written", what, ng);
    llmq_kvq_dequantize_groups(out, n, group, par, book, bits, y);
    double gap = 1.0;   /* uniform: codes one step apart */
    if (book) {
        gap = 0.0;
        for (int k = 0; k < top; k++) gap = fmax(gap, (double)book[k + 1] - book[k]);
    }
    for (int k = 0; k < ng; k++) {
        int g0 = k * group, m = LLMQ_MIN(group, n - g0);
        float mn = INFINITY, mx = -INFINITY;
        for (int i = 0; i < m; i++) { mn = fminf(mn, x[g0 + i]); mx = fmaxf(mx, x[g0 + i]); }
        /* the same range from group_range (stride 1 and, reversed, stride -1) */
        uint16_t p1[2], p2[2];
        llmq_kvq_group_range(x + g0, m, 1, bits, book != NULL, p1);
        llmq_kvq_group_range(x + g0 + m - 1, m, -1, bits, book != NULL, p2);
        CHECK_MSG(p1[0] == par[2 * k] && p1[1] == par[2 * k + 1] && p2[0] == p1[0] && p2[1] == p1[1],
                  "%s group %d: group_range disagrees with quantize_groups", what, k);
        double step = llmq_f16_to_f32(par[2 * k]), lo = llmq_f16_to_f32(par[2 * k + 1]);
        double hi = lo + step * (book ? 1.0 : top);
        double slack = KVQ_ROUND_REL * (fabs(lo) + fabs(hi));
        CHECK_MSG(lo <= mn && hi >= (double)mx - slack && step >= 0.0 && isfinite(step),
                  "%s group %d: range [%.9g, %.9g] (step %.9g) does not cover [%.9g, %.9g]", what, k, lo, hi, step, mn, mx);
        if (mn == mx && (float)lo == mn) CHECK_MSG(step == 0.0, "%s group %d: constant f16 group with step %g", what, k, step);
        int bad = -1;
        for (int i = 0; i < m; i++)
            if (!(fabs((double)y[g0 + i] - x[g0 + i]) <= step * gap / 2.0 + slack) && bad < 0) bad = i;
        CHECK_MSG(bad < 0, "%s group %d element %d: %.9g -> %.9g, step %.9g lo %.9g", what, k, bad,
                  bad < 0 ? 0.0 : x[g0 + bad], bad < 0 ? 0.0 : y[g0 + bad], step, lo);
    }
}

TEST(kvq_group_ranges)
{
    enum { N = 1100 };
    static float x[N], book[256];
    static const struct { int n, group; } shapes[] = { { 64, 32 }, { 72, 32 }, { 40, 32 }, { 32, 32 }, { 7, 32 },
                                                      { 1100, 512 }, { 50, 12 }, { 33, 8 } };
    for (int bits = 2; bits <= 8; bits++)
        for (size_t si = 0; si < LLMQ_ARRAY_LEN(shapes); si++)
            for (int kind = 0; kind < 9; kind++) {
                int n = shapes[si].n, group = shapes[si].group;
                for (int i = 0; i < n; i++) {
                    float v = rndf();
                    switch (kind) {
                    case 1: v = 0.3f; break;                                   /* constant, not an f16 */
                    case 2: v = 0.0f; break;                                   /* all zero */
                    case 3: v = 0.25f; break;                                  /* constant f16 */
                    case 4: v = i == n / 3 ? 3e4f : v * 0.01f; break;          /* one huge value */
                    case 5: v = -1.0f - fabsf(v) * 7.0f; break;                /* negative only */
                    case 6: v = 1000.0f + v; break;                            /* offset: lo far from 0 */
                    case 7: v *= 1e-6f; break;                                 /* below f16's normals */
                    default: break;
                    }
                    x[i] = v;
                }
                char what[96];
                snprintf(what, sizeof what, "bits %d n %d group %d kind %d", bits, n, group, kind);
                check_groups(x, n, group, NULL, bits, what);
                if (kind == 0 || kind == 4 || kind == 5) {
                    make_book(book, bits, kind == 4 ? 0 : 1);
                    strcat(what, " book");
                    check_groups(x, n, group, book, bits, what);
                }
            }
}

/* A group whose f32 span rounds down onto an exact f16 step: lo -1536,
 * max the float after 1.5: (max - lo) / 3 = 512.5 + 2^-23 / 3, f32 gives
 * 512.5, an f16, and lo + 3 * 512.5 = 1.5 < max.  The header promises
 * the step is rounded up so the range still covers max. */
TEST(kvq_group_range_covers_max_exactly)
{
    float mx = nextafterf(1.5f, 2.0f);
    float x[4] = { -1536.0f, 0.0f, 1.0f, mx };
    uint16_t par[2];
    llmq_kvq_group_range(x, 4, 1, 2, 0, par);
    double step = llmq_f16_to_f32(par[0]), lo = llmq_f16_to_f32(par[1]);
    CHECK_MSG(lo + 3.0 * step >= (double)mx, "range [%.9g, %.9g] ends below max %.9g", lo, lo + 3.0 * step, (double)mx);
    /* the codebook form: step = span itself */
    float xb[2] = { -1024.0f, nextafterf(1.0f, 2.0f) };
    llmq_kvq_group_range(xb, 2, 1, 4, 1, par);
    step = llmq_f16_to_f32(par[0]);
    lo = llmq_f16_to_f32(par[1]);
    CHECK_MSG(lo + step >= (double)xb[1], "book range [%.9g, %.9g] ends below max %.9g", lo, lo + step, (double)xb[1]);
}

/* Values beyond f16's range cannot be covered; what is stored stays finite. */
TEST(kvq_group_beyond_f16_stays_finite)
{
    float x[32], y[32];
    uint8_t out[32];
    uint16_t par[2];
    for (int i = 0; i < 32; i++) x[i] = (i % 2 ? 1e6f : -3e5f) * rndu();
    llmq_kvq_quantize_groups(x, 32, 32, NULL, 4, out, par);
    llmq_kvq_dequantize_groups(out, 32, 32, par, NULL, 4, y);
    int fin = 1;
    for (int i = 0; i < 32; i++) fin &= isfinite(y[i]) != 0;
    CHECK(fin);
}

/* The cache's branch-free f16 reader equals the library's on all 65536
 * bit patterns (NaNs: a NaN of the same sign and payload). */
TEST(kvq_f16_reader_exact)
{
    int bad = -1;
    for (uint32_t h = 0; h < 65536 && bad < 0; h++) {
        float a = llmq_kvq_f16((uint16_t)h), b = llmq_f16_to_f32((uint16_t)h);
        if (llmq_f32_bits(a) != llmq_f32_bits(b)) bad = (int)h;
    }
    CHECK_MSG(bad < 0, "f16 0x%04x reads %.9g, llmq_f16_to_f32 %.9g", bad, llmq_kvq_f16((uint16_t)bad),
              llmq_f16_to_f32((uint16_t)bad));
}

/* ================= the cache ================= */

static llmq_config tiny_config(int L, int nh, int nkv, int hd, int swin)
{
    llmq_config c;
    memset(&c, 0, sizeof c);
    c.n_layers = L;
    c.n_heads = nh;
    c.n_kv_heads = nkv;
    c.head_dim = hd;
    c.hidden = nh * hd;
    c.intermediate = 4 * c.hidden;
    c.vocab = 16;
    c.max_pos = 4096;
    c.sliding_window = swin;
    c.rms_eps = 1e-6;
    c.rope_theta = 10000.0;
    c.rope_type = LLMQ_ROPE_DEFAULT;
    c.rope_factor = 1.0;
    c.bos_id = c.eos_id = -1;
    return c;
}

/* A run: pre-RoPE k, v, q for T logical positions per layer, fed to a
 * cache in chunks, the outputs kept. */
typedef struct {
    llmq_config c;
    int T, kvd, qd;
    float *K, *V, *Q;     /* (L, T, kvd), (L, T, kvd), (L, T, qd); Q rotated already when q_rot */
    int q_rot;
    float *cs, *sn;       /* (T, hd / 2) */
    float *att;           /* (L, T, qd) the cache's outputs */
} run_t;

static void run_init(run_t *r, llmq_config c, int T)
{
    memset(r, 0, sizeof *r);
    r->c = c;
    r->T = T;
    r->kvd = c.n_kv_heads * c.head_dim;
    r->qd = c.n_heads * c.head_dim;
    size_t L = (size_t)c.n_layers;
    r->K = malloc(L * T * r->kvd * sizeof(float));
    r->V = malloc(L * T * r->kvd * sizeof(float));
    r->Q = malloc(L * T * r->qd * sizeof(float));
    r->att = malloc(L * T * r->qd * sizeof(float));
    r->cs = malloc((size_t)T * c.head_dim / 2 * sizeof(float));
    r->sn = malloc((size_t)T * c.head_dim / 2 * sizeof(float));
    llmq_op_rope_tables(T, c.head_dim, &r->c, r->cs, r->sn);
    for (size_t i = 0; i < L * T * r->kvd; i++) { r->K[i] = rndf(); r->V[i] = rndf(); }
    /* a few outlier key channels, as real keys have before RoPE */
    for (size_t i = 0; i < L * T * r->kvd; i++) if (i % (size_t)r->kvd % 7 == 2) r->K[i] *= 4.0f;
    for (size_t i = 0; i < L * T * r->qd; i++) r->Q[i] = rndf();
}

static void run_free(run_t *r)
{
    free(r->K); free(r->V); free(r->Q); free(r->att); free(r->cs); free(r->sn);
}

static float *rowp(float *base, const run_t *r, int l, int t, int dim) { return base + ((size_t)l * r->T + t) * dim; }

static void rotate_rows(float *x, int heads, int hd, int p, const run_t *r)
{
    llmq_op_rope_fwd(x, 1, heads, hd, r->cs + (size_t)p * (hd / 2), r->sn + (size_t)p * (hd / 2));
}

/* Feed positions 0.. in chunks of the given sizes (0 ends the list; the
 * last size repeats until T), every layer per chunk as the runner does.
 * Returns 0, or -1 (a failed check) where query_pos refuses a chunk. */
static int run_cache(run_t *r, llmq_kvcache *kv, llmq_pool *pool, const int *chunks)
{
    int hd = r->c.head_dim, pos = 0, ci = 0;
    float *q = malloc((size_t)r->T * r->qd * sizeof(float));
    while (pos < r->T) {
        int n = chunks[ci] ? chunks[ci] : chunks[ci - 1];
        if (chunks[ci]) ci++;
        n = LLMQ_MIN(n, r->T - pos);
        int last = llmq_kv_query_pos(kv, pos, n);
        if (last < 0) { CHECK_MSG(0, "query_pos(%d, %d) refused", pos, n); free(q); return -1; }
        for (int l = 0; l < r->c.n_layers; l++) {
            memcpy(q, rowp(r->Q, r, l, pos, r->qd), (size_t)n * r->qd * sizeof(float));
            if (!r->q_rot)
                for (int i = 0; i < n; i++) rotate_rows(q + (size_t)i * r->qd, r->c.n_heads, hd, last - n + 1 + i, r);
            llmq_kv_attend(kv, pool, l, q, rowp(r->K, r, l, pos, r->kvd), rowp(r->V, r, l, pos, r->kvd), n, pos,
                           r->cs, r->sn, rowp(r->att, r, l, pos, r->qd));
        }
        pos += n;
    }
    free(q);
    return 0;
}

/* What each query reads, for the oracle. */
typedef struct {
    llmq_kv_spec s;     /* key_group, value_group filled in */
    int calib;          /* keys on calibrated ranges */
    const float *Kq, *Vq;   /* (L, T, kvd) stored keys and values as read back, or NULL: exact */
} reads_t;

static int is_quant(const llmq_kv_spec *s) { return s->type == LLMQ_KV_INT || s->type == LLMQ_KV_NUQ; }

static int key_exact(const reads_t *rd, int t, int a)
{
    if (t < rd->s.sinks || !rd->Kq) return 1;
    if (!is_quant(&rd->s)) return 0;
    int lo = a - rd->s.residual + 1;
    if (!rd->calib) lo = LLMQ_MIN(lo, (a + 1) / rd->s.key_group * rd->s.key_group);   /* KIVI: the group filling */
    return t >= lo;
}

static int value_exact(const reads_t *rd, int t, int a)
{
    if (t < rd->s.sinks || !rd->Vq) return 1;
    return is_quant(&rd->s) && t >= a - rd->s.residual + 1;
}

/* Brute-force attention of query a (layer l, head h) in double: the keys
 * it sees rotated at their positions in the cache (StreamingLLM's once
 * the window evicts), causal softmax over them, the values summed. */
static void oracle(const run_t *r, const reads_t *rd, int l, int a, int h, double *out)
{
    int hd = r->c.head_dim, g = h / (r->c.n_heads / r->c.n_kv_heads);
    int S = rd->s.sinks, W = rd->s.window, swin = r->c.sliding_window;
    int ts[4096], np = 0;
    int evict = W > 0 && a >= S + W;
    if (evict) {
        for (int t = 0; t < S; t++) ts[np++] = t;
        for (int t = a - W + 1; t <= a; t++) ts[np++] = t;
    } else {
        for (int t = (swin > 0 ? LLMQ_MAX(0, a - swin + 1) : 0); t <= a; t++) ts[np++] = t;
    }
    int qp = evict ? S + W - 1 : a;
    float q[512], k[512];
    memcpy(q, r->Q + ((size_t)l * r->T + a) * r->qd + (size_t)h * hd, (size_t)hd * sizeof(float));
    if (!r->q_rot) rotate_rows(q, 1, hd, qp, r);
    static double sc[4096];
    double mx = -INFINITY;
    for (int i = 0; i < np; i++) {
        int t = ts[i];
        const float *src = key_exact(rd, t, a) ? r->K : rd->Kq;
        memcpy(k, src + ((size_t)l * r->T + t) * r->kvd + (size_t)g * hd, (size_t)hd * sizeof(float));
        rotate_rows(k, 1, hd, evict ? i : t, r);
        double d = 0.0;
        for (int c = 0; c < hd; c++) d += (double)q[c] * k[c];
        sc[i] = d / sqrt((double)hd);
        mx = fmax(mx, sc[i]);
    }
    double sum = 0.0;
    for (int i = 0; i < np; i++) { sc[i] = exp(sc[i] - mx); sum += sc[i]; }
    for (int c = 0; c < hd; c++) out[c] = 0.0;
    for (int i = 0; i < np; i++) {
        int t = ts[i];
        const float *src = value_exact(rd, t, a) ? r->V : rd->Vq;
        const float *v = src + ((size_t)l * r->T + t) * r->kvd + (size_t)g * hd;
        for (int c = 0; c < hd; c++) out[c] += sc[i] / sum * v[c];
    }
}

/* max |att - oracle| over every layer, query from a0, head and channel */
static double max_err(const run_t *r, const reads_t *rd, int a0, int *where_a)
{
    int hd = r->c.head_dim;
    double worst = 0.0, o[512];
    *where_a = -1;
    for (int l = 0; l < r->c.n_layers; l++)
        for (int a = a0; a < r->T; a++)
            for (int h = 0; h < r->c.n_heads; h++) {
                oracle(r, rd, l, a, h, o);
                const float *y = r->att + ((size_t)l * r->T + a) * r->qd + (size_t)h * hd;
                for (int c = 0; c < hd; c++) {
                    double e = fabs(y[c] - o[c]);
                    if (!(e <= worst)) { worst = e; *where_a = a; }
                }
            }
    return worst;
}

static double max_abs(const float *x, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

static llmq_kv_spec spec_of(llmq_kv_type type, int bits, int sinks, int residual, int window, int key_group)
{
    llmq_kv_spec s = { .type = type, .bits = bits, .sinks = sinks, .residual = residual, .window = window,
                       .key_group = key_group, .value_group = LLMQ_KV_VALUE_GROUP };
    return s;
}

/* spec with its defaults filled in, as reads_t wants it */
static llmq_kv_spec filled(llmq_kv_spec s)
{
    if (s.key_group <= 0) s.key_group = LLMQ_KV_KEY_GROUP;
    if (s.value_group <= 0) s.value_group = LLMQ_KV_VALUE_GROUP;
    return s;
}

/* A cache of spec over run r, fed in chunks: 0 or -1. */
static int feed(run_t *r, const llmq_kv_spec *s, const llmq_kv_calib *cal, int max_ctx, const int *chunks,
                llmq_pool *pool, llmq_kvcache **keep)
{
    llmq_kvcache *kv;
    llmq_err err = { 0, "" };
    int rc = llmq_kv_new(&kv, &r->c, s, cal, max_ctx, llmq_pool_size(pool), &err);
    CHECK_MSG(rc == 0, "llmq_kv_new: %s", err.msg);
    if (rc) return -1;
    rc = run_cache(r, kv, pool, chunks);
    if (keep) *keep = kv;
    else llmq_kv_free(kv);
    return rc;
}

/* f32: prefill then single-token decodes equal the oracle on keys
 * rotated at their positions, for both head sizes, one and two threads,
 * a prefill of more than one 64-query block, in one chunk or two. */
TEST(kv_f32_vs_oracle)
{
    static const int hds[] = { 16, 64 };
    static const int ch_a[] = { 100, 1, 0 }, ch_b[] = { 40, 60, 1, 0 }, ch_c[] = { 1, 0 };
    const int *chs[] = { ch_a, ch_b, ch_c };
    for (int nt = 1; nt <= 2; nt++) {
        llmq_err err = { 0, "" };
        llmq_pool *pool = llmq_pool_new(nt, &err);
        for (int hi = 0; hi < 2; hi++)
            for (int ci = 0; ci < 3; ci++) {
                run_t r;
                run_init(&r, tiny_config(2, 4, 2, hds[hi], 0), 106);
                llmq_kv_spec s = spec_of(LLMQ_KV_F32, 32, 0, 0, 0, 0);
                if (!feed(&r, &s, NULL, r.T, chs[ci], pool, NULL)) {
                    reads_t rd = { filled(s), 0, NULL, NULL };
                    int wa;
                    double e = max_err(&r, &rd, 0, &wa), tol = TOL_ATT * max_abs(r.V, (size_t)2 * r.T * r.kvd);
                    CHECK_MSG(e <= tol, "threads %d hd %d chunks %d: max error %.3g at query %d (tol %.3g)", nt, hds[hi],
                              ci, e, wa, tol);
                }
                run_free(&r);
            }
        llmq_pool_free(pool);
    }
}

/* A model's sliding window (Mistral) limits what each query sees. */
TEST(kv_f32_sliding_window)
{
    static const int ch[] = { 70, 1, 0 };
    run_t r;
    run_init(&r, tiny_config(1, 4, 2, 16, 7), 80);
    llmq_kv_spec s = spec_of(LLMQ_KV_F32, 32, 0, 0, 0, 0);
    if (!feed(&r, &s, NULL, r.T, ch, NULL, NULL)) {
        reads_t rd = { filled(s), 0, NULL, NULL };
        int wa;
        double e = max_err(&r, &rd, 0, &wa);
        CHECK_MSG(e <= TOL_ATT, "max error %.3g at query %d", e, wa);
    }
    run_free(&r);
}

/* Stored keys and values as a query reads them back: bf16 rounding, or
 * KIVI / calibrated keys and grouped values through kvq, computed here
 * from the header's description with the (tested) kvq functions. */
static void emulate_store(const run_t *r, const llmq_kv_spec *s, const llmq_kv_calib *cal, float *Kq, float *Vq)
{
    int hd = r->c.head_dim, L = r->c.n_layers, T = r->T, nkv = r->c.n_kv_heads, S = s->sinks, bits = s->bits;
    int top = (1 << bits) - 1, calib = cal && cal->k_min;
    size_t n = (size_t)L * T * r->kvd;
    if (s->type == LLMQ_KV_BF16) {
        for (size_t i = 0; i < n; i++) {
            Kq[i] = llmq_bf16_to_f32(llmq_f32_to_bf16(r->K[i]));
            Vq[i] = llmq_bf16_to_f32(llmq_f32_to_bf16(r->V[i]));
        }
        return;
    }
    uint8_t codes[1024];
    uint16_t par[2 * 64];
    float lo[512], step[512];
    for (int l = 0; l < L; l++) {
        const float *kb = s->type == LLMQ_KV_NUQ ? cal->k_book + ((size_t)l << bits) : NULL;
        const float *vb = s->type == LLMQ_KV_NUQ ? cal->v_book + ((size_t)l << bits) : NULL;
        for (int g = 0; g < nkv; g++) {
            for (int t = 0; t < T; t++) {
                size_t at = ((size_t)l * T + t) * r->kvd + (size_t)g * hd;
                llmq_kvq_quantize_groups(r->V + at, hd, s->value_group, vb, bits, codes, par);
                llmq_kvq_dequantize_groups(codes, hd, s->value_group, par, vb, bits, Vq + at);
                if (calib) {
                    size_t ca = ((size_t)l * nkv + g) * hd;
                    for (int c = 0; c < hd; c++) {
                        lo[c] = cal->k_min[ca + c];
                        step[c] = (cal->k_max[ca + c] - lo[c]) / (kb ? 1.0f : (float)top);
                    }
                    llmq_kvq_quantize(r->K + at, hd, lo, step, kb, bits, codes);
                    llmq_kvq_dequantize(codes, hd, lo, step, kb, bits, Kq + at);
                }
            }
            if (calib) continue;
            /* KIVI: per channel over each group's positions past the sinks */
            int G = s->key_group;
            for (int t1 = G - 1; t1 < T; t1 += G) {
                int t0 = LLMQ_MAX(t1 - G + 1, S);
                if (t0 > t1) continue;
                const float *base = r->K + ((size_t)l * T + t0) * r->kvd + (size_t)g * hd;
                for (int c = 0; c < hd; c++) {
                    uint16_t p[2];
                    llmq_kvq_group_range(base + c, t1 - t0 + 1, r->kvd, bits, kb != NULL, p);
                    step[c] = llmq_f16_to_f32(p[0]);
                    lo[c] = llmq_f16_to_f32(p[1]);
                }
                for (int t = t0; t <= t1; t++) {
                    size_t at = ((size_t)l * T + t) * r->kvd + (size_t)g * hd;
                    llmq_kvq_quantize(r->K + at, hd, lo, step, kb, bits, codes);
                    llmq_kvq_dequantize(codes, hd, lo, step, kb, bits, Kq + at);
                }
            }
        }
    }
}

/* Quantized and bf16 caches against the oracle that reads what the header
 * says each query reads: exact where it should, dequantized elsewhere. */
TEST(kv_quantized_vs_emulation)
{
    static const int ch_a[] = { 100, 1, 0 }, ch_b[] = { 45, 30, 1, 1, 20, 1, 0 };
    struct { llmq_kv_type type; int bits, sinks, residual, key_group, hd, calib; const int *ch; } cs[] = {
        { LLMQ_KV_BF16, 16, 0, 0, 0, 16, 0, ch_a },   { LLMQ_KV_BF16, 16, 3, 5, 0, 64, 0, ch_b },
        { LLMQ_KV_INT, 8, 0, 0, 0, 16, 0, ch_a },     { LLMQ_KV_INT, 4, 0, 0, 0, 64, 0, ch_a },
        { LLMQ_KV_INT, 4, 1, 10, 0, 16, 0, ch_a },    { LLMQ_KV_INT, 4, 2, 10, 8, 64, 0, ch_b },
        { LLMQ_KV_INT, 2, 4, 3, 16, 16, 0, ch_b },    { LLMQ_KV_INT, 3, 0, 70, 0, 16, 0, ch_a },
        { LLMQ_KV_INT, 4, 0, 0, 0, 64, 1, ch_a },     { LLMQ_KV_INT, 4, 1, 10, 0, 16, 1, ch_b },
        { LLMQ_KV_INT, 8, 4, 0, 0, 64, 1, ch_b },     { LLMQ_KV_NUQ, 4, 1, 0, 0, 16, 1, ch_a },
        { LLMQ_KV_NUQ, 3, 2, 6, 0, 64, 1, ch_b },     { LLMQ_KV_NUQ, 4, 1, 5, 8, 16, 0, ch_b },
        { LLMQ_KV_INT, 2, 1, 0, 0, 64, 0, ch_b },     { LLMQ_KV_INT, 2, 0, 0, 0, 128, 1, ch_a },
    };
    llmq_err err = { 0, "" };
    llmq_pool *pool = llmq_pool_new(2, &err);
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(cs); i++) {
        run_t r;
        run_init(&r, tiny_config(2, 4, 2, cs[i].hd, 0), 104);
        llmq_kv_spec s = spec_of(cs[i].type, cs[i].bits, cs[i].sinks, cs[i].residual, 0, cs[i].key_group);
        int L = r.c.n_layers, hd = cs[i].hd, nuq = cs[i].type == LLMQ_KV_NUQ, nb = nuq ? 1 << cs[i].bits : 1;
        float *kmin = malloc((size_t)L * r.kvd * sizeof(float)), *kmax = malloc((size_t)L * r.kvd * sizeof(float));
        float *kbook = malloc((size_t)L * nb * sizeof(float)), *vbook = malloc((size_t)L * nb * sizeof(float));
        for (int l = 0; l < L; l++) {
            for (int j = 0; j < r.kvd; j++) { kmin[l * r.kvd + j] = INFINITY; kmax[l * r.kvd + j] = -INFINITY; }
            for (int t = cs[i].sinks; t < r.T; t++)
                for (int j = 0; j < r.kvd; j++) {
                    float v = r.K[((size_t)l * r.T + t) * r.kvd + j];
                    kmin[l * r.kvd + j] = fminf(kmin[l * r.kvd + j], v);
                    kmax[l * r.kvd + j] = fmaxf(kmax[l * r.kvd + j], v);
                }
            if (nuq) {
                make_book(kbook + (size_t)l * nb, cs[i].bits, 0);
                make_book(vbook + (size_t)l * nb, cs[i].bits, 0);
            }
        }
        llmq_kv_calib cal = { cs[i].calib ? kmin : NULL, cs[i].calib ? kmax : NULL,
                              nuq ? kbook : NULL, nuq ? vbook : NULL };
        if (!feed(&r, &s, &cal, r.T, cs[i].ch, pool, NULL)) {
            size_t n = (size_t)L * r.T * r.kvd;
            float *Kq = malloc(n * sizeof(float)), *Vq = malloc(n * sizeof(float));
            reads_t rd = { filled(s), cs[i].calib, Kq, Vq };
            emulate_store(&r, &rd.s, &cal, Kq, Vq);
            int wa;
            double e = max_err(&r, &rd, 0, &wa);
            /* bf16 products: uniform codes read by tiles (4 or 2 bits) */
            int bf16 = cs[i].type == LLMQ_KV_INT && (cs[i].bits == 4 || cs[i].bits == 2);
            double tol = (bf16 ? TOL_ATT_BF16 : TOL_ATT) * max_abs(r.V, n);
            CHECK_MSG(e <= tol, "case %zu (type %d bits %d sinks %d residual %d key group %d hd %d calib %d): "
                      "max error %.3g at query %d (tol %.3g)", i, cs[i].type, cs[i].bits, cs[i].sinks,
                      cs[i].residual, cs[i].key_group, hd, cs[i].calib, e, wa, tol);
            free(Kq); free(Vq);
        }
        free(kmin); free(kmax); free(kbook); free(vbook);
        run_free(&r);
    }
    llmq_pool_free(pool);
}

/* int8 and int4 (KIVI, no calibration) near the exact oracle, int4
 * further than int8; with a residual covering every position the f32
 * cache's outputs to rounding. */
TEST(kv_int_close_and_residual_exact)
{
    static const int ch[] = { 100, 1, 0 };
    static const int hds[] = { 16, 64 };
    for (int hi = 0; hi < 2; hi++) {
        run_t r;
        run_init(&r, tiny_config(2, 4, 2, hds[hi], 0), 106);
        size_t n = (size_t)2 * r.T * r.qd;
        llmq_kv_spec sf = spec_of(LLMQ_KV_F32, 32, 0, 0, 0, 0);
        if (feed(&r, &sf, NULL, r.T, ch, NULL, NULL)) { run_free(&r); continue; }
        float *ref = malloc(n * sizeof(float));
        memcpy(ref, r.att, n * sizeof(float));
        reads_t rd = { filled(sf), 0, NULL, NULL };
        double e8 = -1, e4 = -1;
        for (int bits = 8; bits >= 4; bits -= 4) {
            llmq_kv_spec s = spec_of(LLMQ_KV_INT, bits, 0, 0, 0, 0);
            int wa;
            if (!feed(&r, &s, NULL, r.T, ch, NULL, NULL)) {
                double e = max_err(&r, &rd, 0, &wa), tol = bits == 8 ? TOL_INT8 : TOL_INT4;
                CHECK_MSG(e <= tol, "int%d hd %d: max error %.3g at query %d against the exact oracle (tol %g)", bits,
                          hds[hi], e, wa, tol);
                CHECK_MSG(e > 0.0, "int%d hd %d: exact, so nothing was quantized", bits, hds[hi]);
                *(bits == 8 ? &e8 : &e4) = e;
            }
            s.residual = r.T;
            if (!feed(&r, &s, NULL, r.T, ch, NULL, NULL)) {
                double worst = 0.0;
                for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(r.att[i] - ref[i]));
                CHECK_MSG(worst <= TOL_SAME, "int%d hd %d residual %d: %.3g from the f32 cache", bits, hds[hi], r.T, worst);
            }
        }
        CHECK_MSG(e4 > e8, "hd %d: int4 error %.3g not above int8's %.3g", hds[hi], e4, e8);
        free(ref);
        run_free(&r);
    }
}

/* Sinks: with int2 and three sinks, a query whose score on sink p beats
 * the rest by > 100 reads v[p] in fp32; without sinks it reads an int2
 * value far from it (the check has teeth). */
TEST(kv_sinks_exact)
{
    static const int ch[] = { 40, 1, 0 };
    run_t r;
    run_init(&r, tiny_config(1, 4, 2, 16, 0), 48);
    int hd = 16, S = 3;
    for (int p = 0; p < S; p++)
        for (int j = 0; j < r.kvd; j++) r.K[(size_t)p * r.kvd + j] = 10.0f * rndf();   /* outlier sink keys */
    r.q_rot = 1;
    for (int a = 0; a < r.T; a++)
        for (int h = 0; h < 4; h++) {
            int p = (a + h) % S, g = h / 2;
            float *q = r.Q + (size_t)a * r.qd + (size_t)h * hd;
            memcpy(q, r.K + (size_t)p * r.kvd + (size_t)g * hd, (size_t)hd * sizeof(float));
            rotate_rows(q, 1, hd, p, &r);
            double nrm = 0.0;
            for (int c = 0; c < hd; c++) nrm += (double)q[c] * q[c];
            for (int c = 0; c < hd; c++) q[c] = (float)(q[c] * 70.0 / sqrt(nrm));   /* score on p: 70 |k_p| / 4 */
        }
    double dev[2];
    for (int with = 1; with >= 0; with--) {
        llmq_kv_spec s = spec_of(LLMQ_KV_INT, 2, with ? S : 0, 0, 0, 0);
        dev[with] = 0.0;
        if (feed(&r, &s, NULL, r.T, ch, NULL, NULL)) continue;
        reads_t rd = { filled(s), 0, NULL, NULL };
        for (int a = 40; a < r.T; a++)   /* decode steps, sinks' group long complete */
            for (int h = 0; h < 4; h++) {
                int p = (a + h) % S, g = h / 2;
                const float *vp = r.V + (size_t)p * r.kvd + (size_t)g * hd, *y = r.att + (size_t)a * r.qd + (size_t)h * hd;
                double o[16], oe = 0.0;
                oracle(&r, &rd, 0, a, h, o);
                for (int c = 0; c < hd; c++) {
                    oe = fmax(oe, fabs(o[c] - vp[c]));
                    dev[with] = fmax(dev[with], fabs(y[c] - vp[c]));
                }
                if (with) CHECK_MSG(oe <= 1e-9, "query %d head %d: the construction does not single out sink %d (%.3g)", a, h, p, oe);
            }
    }
    CHECK_MSG(dev[1] <= TOL_SINK, "int2 with %d sinks: output %.3g from the sink's value", S, dev[1]);
    CHECK_MSG(dev[0] > 0.05, "int2 without sinks: output only %.3g from the sink's value", dev[0]);
    run_free(&r);
}

/* Streaming: the sinks and the last W positions, re-assigned positions
 * 0..S+W-1, the query last. */
TEST(kv_streaming_f32)
{
    enum { S = 2, W = 8 };
    static const int ch_full[] = { S + W, 1, 0 }, ch_short[] = { 5, 1, 0 }, ch_one[] = { 1, 0 };
    const int *chs[] = { ch_full, ch_short, ch_one };
    for (int ci = 0; ci < 3; ci++) {
        run_t r;
        run_init(&r, tiny_config(2, 4, 2, 16, 0), 40);
        llmq_kv_spec s = spec_of(LLMQ_KV_F32, 32, S, 0, W, 0);
        llmq_kvcache *kv = NULL;
        int max_ctx = 64;
        if (!feed(&r, &s, NULL, max_ctx, chs[ci], NULL, &kv)) {
            reads_t rd = { filled(s), 0, NULL, NULL };
            int wa;
            double e = max_err(&r, &rd, 0, &wa);
            CHECK_MSG(e <= TOL_ATT, "chunks %d: max error %.3g at query %d", ci, e, wa);
        }
        if (kv) {
            CHECK_EQ_INT(llmq_kv_slots(kv), S + W);
            CHECK_EQ_INT(llmq_kv_query_pos(kv, 0, S + W), S + W - 1);
            CHECK_EQ_INT(llmq_kv_query_pos(kv, 3, 4), 6);
            CHECK_EQ_INT(llmq_kv_query_pos(kv, 5, 6), -1);   /* would evict inside a forward */
            CHECK_EQ_INT(llmq_kv_query_pos(kv, S + W, 2), -1);
            CHECK_EQ_INT(llmq_kv_query_pos(kv, 1000, 2), -1);
            CHECK_EQ_INT(llmq_kv_query_pos(kv, S + W, 1), S + W - 1);
            CHECK_EQ_INT(llmq_kv_query_pos(kv, 5000, 1), S + W - 1);
            CHECK_EQ_INT(llmq_kv_query_pos(kv, 7, 1), 7);
        }
        llmq_kv_free(kv);
        run_free(&r);
    }
    /* without a window: max_ctx bounds the positions */
    llmq_config c = tiny_config(1, 4, 2, 16, 0);
    llmq_kv_spec s = spec_of(LLMQ_KV_F32, 32, 0, 0, 0, 0);
    llmq_kvcache *kv;
    llmq_err err = { 0, "" };
    if (!llmq_kv_new(&kv, &c, &s, NULL, 20, 1, &err)) {
        CHECK_EQ_INT(llmq_kv_slots(kv), 20);
        CHECK_EQ_INT(llmq_kv_query_pos(kv, 0, 20), 19);
        CHECK_EQ_INT(llmq_kv_query_pos(kv, 19, 1), 19);
        CHECK_EQ_INT(llmq_kv_query_pos(kv, 20, 1), -1);
        CHECK_EQ_INT(llmq_kv_query_pos(kv, 10, 11), -1);
        llmq_kv_free(kv);
    } else {
        CHECK_MSG(0, "llmq_kv_new: %s", err.msg);
    }
    /* a window longer than max_ctx: the cache holds max_ctx */
    s.window = 100;
    if (!llmq_kv_new(&kv, &c, &s, NULL, 20, 1, &err)) {
        CHECK_EQ_INT(llmq_kv_slots(kv), 20);
        llmq_kv_free(kv);
    }
}

/* Streaming with quantized caches: near the exact oracle (int8 tolerance),
 * across many evictions of KIVI groups and of calibrated keys; bf16 to
 * its rounding. */
TEST(kv_streaming_quantized)
{
    struct { llmq_kv_type type; int bits, sinks, residual, window, key_group, calib; double tol; } cs[] = {
        { LLMQ_KV_INT, 8, 2, 0, 10, 4, 0, TOL_INT8 }, { LLMQ_KV_INT, 8, 1, 3, 9, 4, 0, TOL_INT8 },
        { LLMQ_KV_INT, 8, 4, 0, 16, 16, 0, TOL_INT8 }, { LLMQ_KV_INT, 8, 2, 2, 10, 0, 1, TOL_INT8 },
        { LLMQ_KV_BF16, 16, 2, 0, 10, 0, 0, TOL_BF16 },
        /* windows longer than a decode tile: whole tiles of stored rows,
         * read in one call, across the ring's wrap and key groups */
        { LLMQ_KV_INT, 8, 2, 0, 40, 8, 0, TOL_INT8 }, { LLMQ_KV_INT, 8, 3, 0, 45, 0, 1, TOL_INT8 },
        { LLMQ_KV_BF16, 16, 1, 0, 40, 0, 0, TOL_BF16 },
    };
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(cs); i++) {
        run_t r;
        run_init(&r, tiny_config(2, 4, 2, 16, 0), 90);
        float *kmin = malloc((size_t)2 * r.kvd * sizeof(float)), *kmax = malloc((size_t)2 * r.kvd * sizeof(float));
        for (int j = 0; j < 2 * r.kvd; j++) { kmin[j] = -4.0f; kmax[j] = 4.0f; }
        llmq_kv_calib cal = { kmin, kmax, NULL, NULL };
        llmq_kv_spec s = spec_of(cs[i].type, cs[i].bits, cs[i].sinks, cs[i].residual, cs[i].window, cs[i].key_group);
        int ch[] = { cs[i].sinks + cs[i].window, 1, 0 };   /* prefill up to the first eviction */
        if (!feed(&r, &s, cs[i].calib ? &cal : NULL, r.T, ch, NULL, NULL)) {
            reads_t rd = { filled(s), 0, NULL, NULL };
            int wa;
            double e = max_err(&r, &rd, 0, &wa);
            CHECK_MSG(e <= cs[i].tol, "case %zu: max error %.3g at query %d against the exact oracle (tol %g)", i, e, wa,
                      cs[i].tol);
        }
        free(kmin); free(kmax);
        run_free(&r);
    }
}

/* ================= spec parsing, sizes, refusals ================= */

TEST(kv_spec_parse)
{
    static const char *good[] = { "f32", "bf16", "int2", "int3", "int4", "int5", "int6", "int7", "int8",
                                  "nuq2", "nuq3", "nuq4", "nuq5", "nuq6", "nuq7", "nuq8" };
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(good); i++) {
        llmq_kv_spec s = spec_of(LLMQ_KV_F32, 0, 7, 8, 9, 10);
        llmq_err err = { 0, "" };
        CHECK_MSG(llmq_kv_spec_parse(good[i], &s, &err) == 0, "'%s' refused: %s", good[i], err.msg);
        int want_type = i == 0 ? LLMQ_KV_F32 : i == 1 ? LLMQ_KV_BF16 : i < 9 ? LLMQ_KV_INT : LLMQ_KV_NUQ;
        int want_bits = i == 0 ? 32 : i == 1 ? 16 : good[i][3] - '0';
        CHECK_MSG((int)s.type == want_type && s.bits == want_bits, "'%s': type %d bits %d", good[i], s.type, s.bits);
        CHECK_MSG(s.sinks == 7 && s.residual == 8 && s.window == 9 && s.key_group == 10, "'%s' changed other members", good[i]);
    }
    static const char *bad[] = { "int1", "int9", "int", "int4x", "", "nuq", "nuq1", "nuq9", "int0", "INT4", "f16",
                                 "bf16 ", "int 4", "int10", "f32x", "nuq4b", "i4" };
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(bad); i++) {
        llmq_kv_spec s = spec_of(LLMQ_KV_F32, 32, 0, 0, 0, 0);
        llmq_err err = { 0, "" };
        CHECK_MSG(llmq_kv_spec_parse(bad[i], &s, &err) == LLMQ_EUSAGE, "'%s' accepted", bad[i]);
        CHECK_MSG(err.code == LLMQ_EUSAGE && err.msg[0], "'%s': no message", bad[i]);
        CHECK_MSG(s.type == LLMQ_KV_F32 && s.bits == 32, "'%s': spec changed on error", bad[i]);
    }
}

TEST(kv_bits_per_value)
{
    llmq_config c = tiny_config(2, 4, 2, 64, 0);
    llmq_kv_spec s = spec_of(LLMQ_KV_INT, 4, 1, 0, 0, 32);
    s.value_group = 32;
    CHECK_NEAR(llmq_kv_bits_per_value(&s, &c, 1, -1.0), 4.5, 1e-12);    /* keys 4, values 4 + 2 * 16 / 32 */
    CHECK_NEAR(llmq_kv_bits_per_value(&s, &c, 0, -1.0), 5.0, 1e-12);    /* keys 4 + 2 * 16 / 32 too */
    s.key_group = 0;                                              /* the default group, 32 */
    s.value_group = 0;
    CHECK_NEAR(llmq_kv_bits_per_value(&s, &c, 0, -1.0), 5.0, 1e-12);
    CHECK_NEAR(llmq_kv_bytes_per_token(&s, &c, 0, -1.0), 5.0 / 8 * 2 * 2 * 2 * 64, 1e-9);
    s.bits = 2;
    s.key_group = 64;
    CHECK_NEAR(llmq_kv_bits_per_value(&s, &c, 0, -1.0), 0.5 * (2.5 + 3.0), 1e-12);
    llmq_kv_spec f = spec_of(LLMQ_KV_F32, 32, 0, 0, 0, 0), b = spec_of(LLMQ_KV_BF16, 16, 0, 0, 0, 0);
    CHECK_NEAR(llmq_kv_bits_per_value(&f, &c, 0, -1.0), 32.0, 0);
    CHECK_NEAR(llmq_kv_bits_per_value(&b, &c, 1, -1.0), 16.0, 0);
    CHECK_NEAR(llmq_kv_bytes_per_token(&f, &c, 0, -1.0), 4.0 * 2 * 2 * 2 * 64, 1e-9);
    /* head_dim 16 with value groups of 32: one group of 16 channels */
    llmq_config c16 = tiny_config(1, 4, 2, 16, 0);
    llmq_kv_spec s16 = spec_of(LLMQ_KV_INT, 8, 0, 0, 0, 32);
    CHECK_NEAR(llmq_kv_bits_per_value(&s16, &c16, 1, -1.0), 0.5 * (8.0 + 8.0 + 2.0), 1e-12);
}

TEST(kv_new_refusals)
{
    llmq_config c = tiny_config(2, 4, 2, 16, 0);
    int nb = 16;
    float kb[2 * 16], vb[2 * 16], kmin[2 * 32], kmax[2 * 32];
    for (int l = 0; l < 2; l++) { make_book(kb + l * nb, 4, 1); make_book(vb + l * nb, 4, 1); }
    for (int i = 0; i < 64; i++) { kmin[i] = -1.0f; kmax[i] = 1.0f; }
    llmq_kv_calib none = { NULL, NULL, NULL, NULL }, konly = { kmin, kmax, NULL, NULL }, half = { kmin, kmax, kb, NULL };
    llmq_kv_calib books = { NULL, NULL, kb, vb }, all = { kmin, kmax, kb, vb };
    struct { llmq_kv_spec s; const llmq_kv_calib *cal; int max_ctx, rc; const char *what; } cs[] = {
        { spec_of(LLMQ_KV_NUQ, 4, 0, 0, 0, 0), NULL, 64, LLMQ_EUSAGE, "nuq, no calibration" },
        { spec_of(LLMQ_KV_NUQ, 4, 0, 0, 0, 0), &none, 64, LLMQ_EUSAGE, "nuq, empty calibration" },
        { spec_of(LLMQ_KV_NUQ, 4, 0, 0, 0, 0), &konly, 64, LLMQ_EUSAGE, "nuq, ranges only" },
        { spec_of(LLMQ_KV_NUQ, 4, 0, 0, 0, 0), &half, 64, LLMQ_EUSAGE, "nuq, key book only" },
        { spec_of(LLMQ_KV_NUQ, 4, 0, 0, 0, 0), &books, 64, 0, "nuq, books (KIVI ranges)" },
        { spec_of(LLMQ_KV_NUQ, 4, 0, 0, 0, 0), &all, 64, 0, "nuq, books and ranges" },
        { spec_of(LLMQ_KV_INT, 1, 0, 0, 0, 0), NULL, 64, LLMQ_EUSAGE, "int1" },
        { spec_of(LLMQ_KV_INT, 9, 0, 0, 0, 0), NULL, 64, LLMQ_EUSAGE, "int9" },
        { spec_of(LLMQ_KV_INT, 0, 0, 0, 0, 0), NULL, 64, LLMQ_EUSAGE, "int0" },
        { spec_of(LLMQ_KV_NUQ, 9, 0, 0, 0, 0), &all, 64, LLMQ_EUSAGE, "nuq9" },
        { spec_of(LLMQ_KV_INT, 2, 0, 0, 0, 0), NULL, 64, 0, "int2" },
        { spec_of(LLMQ_KV_INT, 8, 0, 0, 0, 0), NULL, 64, 0, "int8" },
        { spec_of(LLMQ_KV_INT, 4, -1, 0, 0, 0), NULL, 64, LLMQ_EUSAGE, "negative sinks" },
        { spec_of(LLMQ_KV_F32, 32, -1, 0, 0, 0), NULL, 64, LLMQ_EUSAGE, "f32, negative sinks" },
        { spec_of(LLMQ_KV_INT, 4, 0, -1, 0, 0), NULL, 64, LLMQ_EUSAGE, "negative residual" },
        { spec_of(LLMQ_KV_INT, 4, 0, 0, -1, 0), NULL, 64, LLMQ_EUSAGE, "negative window" },
        { spec_of(LLMQ_KV_INT, 4, 0, 0, 8, 0), NULL, 64, LLMQ_EUSAGE, "KIVI group 32 longer than a window of 8" },
        { spec_of(LLMQ_KV_INT, 4, 0, 0, 8, 8), NULL, 64, 0, "KIVI group 8 in a window of 8" },
        { spec_of(LLMQ_KV_INT, 4, 0, 0, 8, 0), &konly, 64, 0, "calibrated keys in a window of 8" },
        { spec_of(LLMQ_KV_INT, 4, 0, 0, 0, 0), NULL, 0, LLMQ_EUSAGE, "max_ctx 0" },
    };
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(cs); i++) {
        llmq_kvcache *kv = (llmq_kvcache *)&c;   /* must be overwritten */
        llmq_err err = { 0, "" };
        int rc = llmq_kv_new(&kv, &c, &cs[i].s, cs[i].cal, cs[i].max_ctx, 1, &err);
        CHECK_MSG(rc == cs[i].rc, "%s: rc %d, expected %d (%s)", cs[i].what, rc, cs[i].rc, err.msg);
        if (rc) CHECK_MSG(kv == NULL && err.msg[0], "%s: no NULL handle or message on error", cs[i].what);
        else llmq_kv_free(kv);
    }
    /* value groups: a multiple of 8 up to 512 */
    llmq_kv_spec s = spec_of(LLMQ_KV_INT, 4, 0, 0, 0, 0);
    llmq_kvcache *kv;
    llmq_err err = { 0, "" };
    s.value_group = 12;
    CHECK_EQ_INT(llmq_kv_new(&kv, &c, &s, NULL, 64, 1, &err), LLMQ_EUSAGE);
    s.value_group = 1024;
    CHECK_EQ_INT(llmq_kv_new(&kv, &c, &s, NULL, 64, 1, &err), LLMQ_EUSAGE);
    s.value_group = 8;
    if (llmq_kv_new(&kv, &c, &s, NULL, 64, 1, &err) == 0) llmq_kv_free(kv);
    else CHECK_MSG(0, "value group 8: %s", err.msg);
    llmq_kv_free(NULL);
}

TEST_MAIN()
