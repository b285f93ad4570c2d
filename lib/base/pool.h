/* pool.h - a fixed pool of worker threads that run one parallel-for at a time. */
#ifndef LLMQ_POOL_H
#define LLMQ_POOL_H

#include "llmq-int.h"

typedef struct llmq_pool llmq_pool;

/* fn(ctx, i, n) is called once for each i in [0, n) with n = the pool's
 * thread count; the caller's thread runs i == 0.  Returns when all are done. */
typedef void (*llmq_pool_fn)(void *ctx, int i, int n);

/* n_threads >= 1; 1 means no extra threads. */
llmq_pool *llmq_pool_new(int n_threads, llmq_err *err);
void llmq_pool_free(llmq_pool *p);          /* accepts NULL */
int llmq_pool_size(const llmq_pool *p);     /* 1 for NULL */
/* Run fn on every thread; p may be NULL (runs fn(ctx, 0, 1)). */
void llmq_pool_run(llmq_pool *p, llmq_pool_fn fn, void *ctx);

/* Split [0, total) into n near-equal parts, aligned to align; part i. */
static inline void llmq_split(int64_t total, int i, int n, int64_t align, int64_t *lo, int64_t *hi)
{
    int64_t blocks = (total + align - 1) / align;
    int64_t b0 = blocks * i / n, b1 = blocks * (i + 1) / n;
    *lo = LLMQ_MIN(total, b0 * align);
    *hi = LLMQ_MIN(total, b1 * align);
}

#endif
