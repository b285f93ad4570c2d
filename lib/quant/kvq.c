/* kvq.c - KV-cache row quantizers (kvq.h). */
#include <math.h>
#include "kvq.h"

void llmq_kvq_pack(const uint8_t *codes, int n, int bits, uint8_t *out)
{
    memset(out, 0, llmq_kvq_row_bytes(n, bits));
    for (int i = 0; i < n; i++) {
        size_t at = (size_t)i * bits;
        unsigned v = (unsigned)codes[i] << (at & 7);   /* at most 15 bits */
        out[at >> 3] |= (uint8_t)v;
        if ((at & 7) + bits > 8) out[(at >> 3) + 1] |= (uint8_t)(v >> 8);
    }
}

void llmq_kvq_unpack(const uint8_t *in, int n, int bits, uint8_t *codes)
{
    /* the widths whose codes never straddle a byte, in loops that vectorize */
    if (bits == 8) { memcpy(codes, in, (size_t)n); return; }
    if (bits == 4 && n % 2 == 0) {
        for (int i = 0; i < n / 2; i++) { codes[2 * i] = in[i] & 15; codes[2 * i + 1] = in[i] >> 4; }
        return;
    }
    if (bits == 2 && n % 4 == 0) {
        for (int i = 0; i < n / 4; i++)
            for (int e = 0; e < 4; e++) codes[4 * i + e] = (in[i] >> (2 * e)) & 3;
        return;
    }
    unsigned mask = (1u << bits) - 1;
    for (int i = 0; i < n; i++) {
        size_t at = (size_t)i * bits;
        unsigned v = in[at >> 3];
        if ((at & 7) + bits > 8) v |= (unsigned)in[(at >> 3) + 1] << 8;
        codes[i] = (uint8_t)((v >> (at & 7)) & mask);
    }
}

/* The code nearest x on [lo, lo + step * (2^bits - 1)] or on the codebook. */
static inline uint8_t code_of(float x, float lo, float step, const float *book, int bits)
{
    int top = (1 << bits) - 1;
    if (!(step > 0.0f)) return 0;
    float u = (x - lo) / step;
    if (!book) {
        float c = rintf(u);
        return (uint8_t)(c > (float)top ? top : c >= 0.0f ? (int)c : 0);
    }
    /* levels ascend: the first whose midpoint with the next exceeds u
     * (midpoints in double are exact: a float one can round past u) */
    int c = 0;
    while (c < top && (double)u > 0.5 * ((double)book[c] + (double)book[c + 1])) c++;
    return (uint8_t)c;
}

void llmq_kvq_quantize(const float *x, int n, const float *lo, const float *step, const float *book,
                       int bits, uint8_t *out)
{
    uint8_t codes[1024];
    for (int i0 = 0; i0 < n; i0 += 1024) {
        int m = LLMQ_MIN(1024, n - i0);
        for (int i = 0; i < m; i++) codes[i] = code_of(x[i0 + i], lo[i0 + i], step[i0 + i], book, bits);
        /* 1024 codes fill whole bytes at any width */
        llmq_kvq_pack(codes, m, bits, out + (size_t)i0 * bits / 8);
    }
}

LLMQ_VECTORIZE
static void deq_elem(const uint8_t *in, int n, int bits, const float *lo, const float *step, float *y)
{
    llmq_kvq_deq_row(in, n, bits, lo, step, y);
}

LLMQ_VECTORIZE
static void deq_one(const uint8_t *in, int n, int bits, float lo, float step, float *y)
{
    llmq_kvq_deq_row1(in, n, bits, lo, step, y);
}

void llmq_kvq_dequantize(const uint8_t *in, int n, const float *lo, const float *step, const float *book,
                         int bits, float *y)
{
    if (!book && llmq_kvq_whole_bytes(n, bits)) {
        deq_elem(in, n, bits, lo, step, y);
        return;
    }
    uint8_t codes[1024];
    for (int i0 = 0; i0 < n; i0 += 1024) {
        int m = LLMQ_MIN(1024, n - i0);
        llmq_kvq_unpack(in + (size_t)i0 * bits / 8, m, bits, codes);
        for (int i = 0; i < m; i++)
            y[i0 + i] = lo[i0 + i] + step[i0 + i] * (book ? book[codes[i]] : (float)codes[i]);
    }
}

/* v rounded to an f16 towards -inf (up = 0) or +inf (up = 1), finite. */
static uint16_t f16_dir(float v, int up)
{
    uint16_t h = llmq_f32_to_f16(v);
    if ((h & 0x7c00) == 0x7c00) return (uint16_t)((h & 0x8000) | 0x7bff);   /* +-65504 */
    float back = llmq_f16_to_f32(h);
    if (up ? back >= v : back <= v) return h;
    int neg = (h & 0x8000) != 0, mag = h & 0x7fff;
    /* one f16 step in the asked direction */
    if (up != neg) {
        if (mag < 0x7bff) mag++;
    } else if (mag == 0) {
        neg = !neg;
        mag = 1;
    } else {
        mag--;
    }
    return (uint16_t)((neg ? 0x8000 : 0) | mag);
}

void llmq_kvq_group_range(const float *x, int n, int stride, int bits, int book, uint16_t par[2])
{
    float mn = INFINITY, mx = -INFINITY;
    for (int i = 0; i < n; i++) {
        float v = x[(size_t)i * stride];
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
    }
    if (!(mn <= mx)) mn = mx = 0.0f;   /* empty or NaN */
    uint16_t lo = f16_dir(mn, 0);
    /* in double, then up to a float and an f16: lo + step * top covers mx */
    double span = (double)mx - (double)llmq_f16_to_f32(lo);
    double step = book ? span : span / (double)((1 << bits) - 1);
    float sf = (float)step;
    if ((double)sf < step) sf = nextafterf(sf, INFINITY);
    par[0] = span > 0.0 ? f16_dir(sf, 1) : 0;
    par[1] = lo;
}

void llmq_kvq_quantize_groups(const float *x, int n, int group, const float *book, int bits,
                              uint8_t *out, uint16_t *par)
{
    uint8_t codes[LLMQ_KVQ_MAX_BITS * 64];
    /* groups are packed one after another: whole bytes when group * bits
     * is a multiple of 8 (kvcache uses 32-channel groups) */
    size_t at = 0;
    for (int g0 = 0, k = 0; g0 < n; g0 += group, k++) {
        int m = LLMQ_MIN(group, n - g0);
        llmq_kvq_group_range(x + g0, m, 1, bits, book != NULL, par + 2 * k);
        float step = llmq_f16_to_f32(par[2 * k]), lo = llmq_f16_to_f32(par[2 * k + 1]);
        for (int i0 = 0; i0 < m; i0 += 512) {
            int mm = LLMQ_MIN(512, m - i0);
            for (int i = 0; i < mm; i++) codes[i] = code_of(x[g0 + i0 + i], lo, step, book, bits);
            llmq_kvq_pack(codes, mm, bits, out + at);
            at += llmq_kvq_row_bytes(mm, bits);
        }
    }
}

void llmq_kvq_dequantize_groups(const uint8_t *in, int n, int group, const uint16_t *par,
                                const float *book, int bits, float *y)
{
    uint8_t codes[512];
    size_t at = 0;
    for (int g0 = 0, k = 0; g0 < n; g0 += group, k++) {
        int m = LLMQ_MIN(group, n - g0);
        float step = llmq_kvq_f16(par[2 * k]), lo = llmq_kvq_f16(par[2 * k + 1]);
        if (!book && m <= 512 && llmq_kvq_whole_bytes(m, bits)) {
            deq_one(in + at, m, bits, lo, step, y + g0);
            at += llmq_kvq_row_bytes(m, bits);
            continue;
        }
        for (int i0 = 0; i0 < m; i0 += 512) {
            int mm = LLMQ_MIN(512, m - i0);
            llmq_kvq_unpack(in + at, mm, bits, codes);
            at += llmq_kvq_row_bytes(mm, bits);
            for (int i = 0; i < mm; i++) y[g0 + i0 + i] = lo + step * (book ? book[codes[i]] : (float)codes[i]);
        }
    }
}

void llmq_kvq_fit_codebook(const float *u, int64_t n, int bits, float *book)
{
    int L = 1 << bits;
    double sum[256], cnt[256];
    for (int c = 0; c < L; c++) book[c] = (float)c / (float)(L - 1);
    for (int it = 0; it < 50 && n > 0; it++) {
        memset(sum, 0, sizeof sum);
        memset(cnt, 0, sizeof cnt);
        for (int64_t i = 0; i < n; i++) {
            int c = code_of(u[i], 0.0f, 1.0f, book, bits);
            sum[c] += u[i];
            cnt[c] += 1;
        }
        float moved = 0.0f;
        for (int c = 0; c < L; c++) {
            if (!cnt[c]) continue;
            float nb = (float)(sum[c] / cnt[c]);
            moved = LLMQ_MAX(moved, fabsf(nb - book[c]));
            book[c] = nb;
        }
        /* Lloyd keeps the order: each mean lies between its neighbours' cells */
        if (moved < 1e-7f) break;
    }
}
