/* hadamard.c - the fast Walsh-Hadamard transform on float rows (hadamard.h). */
#include <math.h>
#include "hadamard.h"

/* 1 / sqrt(B) rounded once to float: both forms scale by the same value. */
static float fwht_scale(int B) { return (float)(1.0 / sqrt((double)B)); }

void llmq_fwht_ref(float *x, int64_t n, int64_t cols, int B)
{
    if (n < 1 || B < 1) return;
    float s = fwht_scale(B);
    int64_t nb = n * cols / B;
    for (int64_t k = 0; k < nb; k++) {
        float *y = x + k * B;
        for (int len = 1; len < B; len <<= 1)
            for (int i = 0; i < B; i += 2 * len)
                for (int j = i; j < i + len; j++) {
                    float u = y[j], v = y[j + len];
                    y[j] = u + v;
                    y[j + len] = u - v;
                }
        for (int i = 0; i < B; i++) y[i] *= s;
    }
}

/* The stages of span 1, 2 and 4 on y[0..8): the reference's additions,
 * each element's in the same order (an element's value after them depends
 * only on its own eight). */
static inline void fwht8(float *y)
{
    float a0 = y[0] + y[1], a1 = y[0] - y[1], a2 = y[2] + y[3], a3 = y[2] - y[3];
    float a4 = y[4] + y[5], a5 = y[4] - y[5], a6 = y[6] + y[7], a7 = y[6] - y[7];
    float b0 = a0 + a2, b2 = a0 - a2, b1 = a1 + a3, b3 = a1 - a3;
    float b4 = a4 + a6, b6 = a4 - a6, b5 = a5 + a7, b7 = a5 - a7;
    y[0] = b0 + b4; y[4] = b0 - b4;
    y[1] = b1 + b5; y[5] = b1 - b5;
    y[2] = b2 + b6; y[6] = b2 - b6;
    y[3] = b3 + b7; y[7] = b3 - b7;
}

/* One stage's butterflies of span len >= 8: two disjoint runs, a loop
 * the vectorizer takes whole. */
static inline void butterfly_run(float *restrict a, float *restrict b, int len)
{
    for (int j = 0; j < len; j++) {
        float u = a[j], v = b[j];
        a[j] = u + v;
        b[j] = u - v;
    }
}

LLMQ_VECTORIZE
static void fwht_blocks(float *x, int64_t nb, int B, float s)
{
    for (int64_t k = 0; k < nb; k++) {
        float *y = x + k * B;
        for (int i = 0; i < B; i += 8) fwht8(y + i);
        for (int len = 8; len < B; len <<= 1)
            for (int i = 0; i < B; i += 2 * len) butterfly_run(y + i, y + i + len, len);
        for (int i = 0; i < B; i++) y[i] *= s;
    }
}

void llmq_fwht(float *x, int64_t n, int64_t cols, int B)
{
    if (n < 1 || B < 1) return;
    if (B < 8) { llmq_fwht_ref(x, n, cols, B); return; }
    fwht_blocks(x, n * cols / B, B, fwht_scale(B));
}
