/* pool.c - worker threads woken by a generation counter; the caller works too. */
#include <pthread.h>
#include "pool.h"

struct llmq_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    uint64_t gen;           /* bumped for each job */
    int pending;            /* workers still running the current job */
    int quit;
    llmq_pool_fn fn;
    void *ctx;
};

struct worker_arg { llmq_pool *p; int idx; };

static void *worker(void *arg)
{
    struct worker_arg *wa = arg;
    llmq_pool *p = wa->p;
    int idx = wa->idx;
    free(wa);
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->gen == seen) pthread_cond_wait(&p->wake, &p->mu);
        if (p->quit) break;
        seen = p->gen;
        llmq_pool_fn fn = p->fn;
        void *ctx = p->ctx;
        pthread_mutex_unlock(&p->mu);
        fn(ctx, idx, p->n);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

llmq_pool *llmq_pool_new(int n_threads, llmq_err *err)
{
    if (n_threads < 1) n_threads = 1;
    llmq_pool *p = llmq_calloc(1, sizeof *p, err);
    if (!p) return NULL;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    if (n_threads > 1) {
        p->threads = llmq_calloc((size_t)n_threads, sizeof *p->threads, err);
        if (!p->threads) { free(p); return NULL; }
        for (int i = 1; i < n_threads; i++) {
            struct worker_arg *wa = llmq_malloc(sizeof *wa, err);
            if (!wa || pthread_create(&p->threads[i], NULL, worker, (wa->p = p, wa->idx = i, wa)) != 0) {
                free(wa);
                p->n = i;  /* free what started */
                llmq_pool_free(p);
                llmq_errorf(err, LLMQ_ENOMEM, "cannot start thread %d", i);
                return NULL;
            }
        }
    }
    return p;
}

void llmq_pool_free(llmq_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p);
}

int llmq_pool_size(const llmq_pool *p) { return p ? p->n : 1; }

void llmq_pool_run(llmq_pool *p, llmq_pool_fn fn, void *ctx)
{
    if (!p || p->n == 1) { fn(ctx, 0, 1); return; }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->pending = p->n - 1;
    p->gen++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    fn(ctx, 0, p->n);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
