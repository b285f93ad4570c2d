/*
 * ggml_blocks.c - scalar dequantization of ggml's block types: the layouts
 * and formulas of ggml_blocks.h, written out value by value.  Plain C, the
 * oracle of lib/kernels (q_ref.c) and of tests/unit/t-ggml-blocks.c.
 */
#include "ggml_blocks.h"

static inline float h2f(const uint8_t *p) { return llmq_f16_to_f32(llmq_get_le16(p)); }

void llmq_gq_dequant_q8_0(const void *x, float *y, int64_t n)
{
    const uint8_t *b = x;
    for (int64_t i = 0; i < n / LLMQ_GQK; i++, b += sizeof(llmq_gblock_q8_0), y += LLMQ_GQK) {
        float d = h2f(b);
        for (int k = 0; k < 32; k++) y[k] = d * (float)(int8_t)b[2 + k];
    }
}

void llmq_gq_dequant_q4_0(const void *x, float *y, int64_t n)
{
    const uint8_t *b = x;
    for (int64_t i = 0; i < n / LLMQ_GQK; i++, b += sizeof(llmq_gblock_q4_0), y += LLMQ_GQK) {
        float d = h2f(b);
        const uint8_t *qs = b + 2;
        for (int k = 0; k < 16; k++) {
            y[k] = d * (float)((qs[k] & 15) - 8);
            y[k + 16] = d * (float)((qs[k] >> 4) - 8);
        }
    }
}

void llmq_gq_dequant_q4_1(const void *x, float *y, int64_t n)
{
    const uint8_t *b = x;
    for (int64_t i = 0; i < n / LLMQ_GQK; i++, b += sizeof(llmq_gblock_q4_1), y += LLMQ_GQK) {
        float d = h2f(b), m = h2f(b + 2);
        const uint8_t *qs = b + 4;
        for (int k = 0; k < 16; k++) {
            y[k] = d * (float)(qs[k] & 15) + m;
            y[k + 16] = d * (float)(qs[k] >> 4) + m;
        }
    }
}

/* Q5_0 / Q5_1: 5-bit code k of a block from its nibble and bit k of qh. */
static inline int q5_code(const uint8_t *qs, uint32_t qh, int k)
{
    int nib = k < 16 ? qs[k] & 15 : qs[k - 16] >> 4;
    return nib | (int)((qh >> k) & 1) << 4;
}

void llmq_gq_dequant_q5_0(const void *x, float *y, int64_t n)
{
    const uint8_t *b = x;
    for (int64_t i = 0; i < n / LLMQ_GQK; i++, b += sizeof(llmq_gblock_q5_0), y += LLMQ_GQK) {
        float d = h2f(b);
        uint32_t qh = llmq_get_le32(b + 2);
        for (int k = 0; k < 32; k++) y[k] = d * (float)(q5_code(b + 6, qh, k) - 16);
    }
}

void llmq_gq_dequant_q5_1(const void *x, float *y, int64_t n)
{
    const uint8_t *b = x;
    for (int64_t i = 0; i < n / LLMQ_GQK; i++, b += sizeof(llmq_gblock_q5_1), y += LLMQ_GQK) {
        float d = h2f(b), m = h2f(b + 2);
        uint32_t qh = llmq_get_le32(b + 4);
        for (int k = 0; k < 32; k++) y[k] = d * (float)q5_code(b + 8, qh, k) + m;
    }
}

void llmq_gq_dequant_q2_k(const void *x, float *y, int64_t n)
{
    const uint8_t *b = x;
    for (int64_t i = 0; i < n / LLMQ_GQK_K; i++, b += sizeof(llmq_gblock_q2_k), y += LLMQ_GQK_K) {
        const uint8_t *scales = b, *qs = b + 16;
        float d = h2f(b + 80), dmin = h2f(b + 82);
        for (int v = 0; v < 256; v++) {
            int h = v / 128, j = v % 128 / 32, l = v % 32, s = v / 16;
            int q = (qs[32 * h + l] >> (2 * j)) & 3;
            float dl = d * (float)(scales[s] & 15), ml = dmin * (float)(scales[s] >> 4);
            y[v] = dl * (float)q - ml;
        }
    }
}

void llmq_gq_dequant_q3_k(const void *x, float *y, int64_t n)
{
    const uint8_t *b = x;
    for (int64_t i = 0; i < n / LLMQ_GQK_K; i++, b += sizeof(llmq_gblock_q3_k), y += LLMQ_GQK_K) {
        const uint8_t *hmask = b, *qs = b + 32, *sc12 = b + 96;
        float d = h2f(b + 108);
        for (int v = 0; v < 256; v++) {
            int h = v / 128, j = v % 128 / 32, l = v % 32;
            int low2 = (qs[32 * h + l] >> (2 * j)) & 3;
            int code = (hmask[l] >> (4 * h + j)) & 1 ? low2 : low2 - 4;
            float dl = d * (float)llmq_gq_k3_scale(sc12, v / 16);
            y[v] = dl * (float)code;
        }
    }
}

void llmq_gq_dequant_q4_k(const void *x, float *y, int64_t n)
{
    const uint8_t *b = x;
    for (int64_t i = 0; i < n / LLMQ_GQK_K; i++, b += sizeof(llmq_gblock_q4_k), y += LLMQ_GQK_K) {
        float d = h2f(b), dmin = h2f(b + 2);
        const uint8_t *sc12 = b + 4, *qs = b + 16;
        for (int s = 0; s < 8; s++) {
            int sc, mn;
            llmq_gq_k4_scale_min(sc12, s, &sc, &mn);
            float d1 = d * (float)sc, m1 = dmin * (float)mn;
            for (int l = 0; l < 32; l++) {
                int q = (qs[32 * (s / 2) + l] >> (4 * (s % 2))) & 15;
                y[32 * s + l] = d1 * (float)q - m1;
            }
        }
    }
}

void llmq_gq_dequant_q5_k(const void *x, float *y, int64_t n)
{
    const uint8_t *b = x;
    for (int64_t i = 0; i < n / LLMQ_GQK_K; i++, b += sizeof(llmq_gblock_q5_k), y += LLMQ_GQK_K) {
        float d = h2f(b), dmin = h2f(b + 2);
        const uint8_t *sc12 = b + 4, *qh = b + 16, *qs = b + 48;
        for (int s = 0; s < 8; s++) {
            int sc, mn;
            llmq_gq_k4_scale_min(sc12, s, &sc, &mn);
            float d1 = d * (float)sc, m1 = dmin * (float)mn;
            for (int l = 0; l < 32; l++) {
                int q = ((qs[32 * (s / 2) + l] >> (4 * (s % 2))) & 15) | ((qh[l] >> s) & 1) << 4;
                y[32 * s + l] = d1 * (float)q - m1;
            }
        }
    }
}

void llmq_gq_dequant_q6_k(const void *x, float *y, int64_t n)
{
    const uint8_t *b = x;
    for (int64_t i = 0; i < n / LLMQ_GQK_K; i++, b += sizeof(llmq_gblock_q6_k), y += LLMQ_GQK_K) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *scales = (const int8_t *)(b + 192);
        float d = h2f(b + 208);
        for (int v = 0; v < 256; v++) {
            int h = v / 128, j = v % 128 / 32, l = v % 32;
            int lo = (ql[64 * h + 32 * (j % 2) + l] >> (4 * (j / 2))) & 15;
            int hi = (qh[32 * h + l] >> (2 * j)) & 3;
            y[v] = d * (float)scales[v / 16] * (float)((lo | hi << 4) - 32);
        }
    }
}

const llmq_gq_traits llmq_gq_types[LLMQ_GQ_COUNT] = {
    { "q8_0", 8, LLMQ_GQK, sizeof(llmq_gblock_q8_0), llmq_gq_dequant_q8_0, 1, { offsetof(llmq_gblock_q8_0, d) } },
    { "q4_0", 2, LLMQ_GQK, sizeof(llmq_gblock_q4_0), llmq_gq_dequant_q4_0, 1, { offsetof(llmq_gblock_q4_0, d) } },
    { "q4_1", 3, LLMQ_GQK, sizeof(llmq_gblock_q4_1), llmq_gq_dequant_q4_1, 2, { offsetof(llmq_gblock_q4_1, d), offsetof(llmq_gblock_q4_1, m) } },
    { "q5_0", 6, LLMQ_GQK, sizeof(llmq_gblock_q5_0), llmq_gq_dequant_q5_0, 1, { offsetof(llmq_gblock_q5_0, d) } },
    { "q5_1", 7, LLMQ_GQK, sizeof(llmq_gblock_q5_1), llmq_gq_dequant_q5_1, 2, { offsetof(llmq_gblock_q5_1, d), offsetof(llmq_gblock_q5_1, m) } },
    { "q2_k", 10, LLMQ_GQK_K, sizeof(llmq_gblock_q2_k), llmq_gq_dequant_q2_k, 2, { offsetof(llmq_gblock_q2_k, d), offsetof(llmq_gblock_q2_k, dmin) } },
    { "q3_k", 11, LLMQ_GQK_K, sizeof(llmq_gblock_q3_k), llmq_gq_dequant_q3_k, 1, { offsetof(llmq_gblock_q3_k, d) } },
    { "q4_k", 12, LLMQ_GQK_K, sizeof(llmq_gblock_q4_k), llmq_gq_dequant_q4_k, 2, { offsetof(llmq_gblock_q4_k, d), offsetof(llmq_gblock_q4_k, dmin) } },
    { "q5_k", 13, LLMQ_GQK_K, sizeof(llmq_gblock_q5_k), llmq_gq_dequant_q5_k, 2, { offsetof(llmq_gblock_q5_k, d), offsetof(llmq_gblock_q5_k, dmin) } },
    { "q6_k", 14, LLMQ_GQK_K, sizeof(llmq_gblock_q6_k), llmq_gq_dequant_q6_k, 1, { offsetof(llmq_gblock_q6_k, d) } },
};

int llmq_gq_nonfinite(const llmq_gq_traits *t, const void *data, uint64_t nblocks, uint64_t *at)
{
    const uint8_t *d = data;
    for (uint64_t b = 0; b < nblocks; b++)
        for (int k = 0; k < t->n_f16; k++)
            if ((llmq_get_le16(d + b * (uint64_t)t->block_bytes + (uint64_t)t->f16_off[k]) & 0x7c00) == 0x7c00) {
                *at = b;
                return 1;
            }
    return 0;
}
