/* pool.c - worker threads woken by a generation counter; the caller works too.
 *
 * Decode runs about eight parallel-fors per layer per token, each a few
 * tens of microseconds long, so waking sleeping threads through a condition
 * variable for each would cost a noticeable share of the token.  Workers
 * therefore spin briefly on the generation counter before sleeping, and the
 * caller spins on the pending count; a condition variable remains the
 * fallback so idle pools cost nothing. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include "pool.h"

#define SPIN_ITERS 20000   /* ~tens of microseconds of polling before sleeping */

struct llmq_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    _Atomic uint64_t gen;   /* bumped for each job */
    _Atomic int pending;    /* workers still running the current job */
    _Atomic int quit;
    llmq_pool_fn fn;
    void *ctx;
};

struct worker_arg { llmq_pool *p; int idx; };

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker(void *arg)
{
    struct worker_arg *wa = arg;
    llmq_pool *p = wa->p;
    int idx = wa->idx;
    free(wa);
    uint64_t seen = 0;
    for (;;) {
        int spins = 0;
        while (atomic_load_explicit(&p->gen, memory_order_acquire) == seen &&
               !atomic_load_explicit(&p->quit, memory_order_acquire) && spins < SPIN_ITERS) {
            cpu_relax();
            spins++;
        }
        if (atomic_load_explicit(&p->gen, memory_order_acquire) == seen) {
            pthread_mutex_lock(&p->mu);
            while (!atomic_load(&p->quit) && atomic_load(&p->gen) == seen) pthread_cond_wait(&p->wake, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit)) break;
        seen = atomic_load_explicit(&p->gen, memory_order_acquire);
        p->fn(p->ctx, idx, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
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
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->quit, 0);
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
    atomic_store(&p->quit, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    free(p);
}

int llmq_pool_size(const llmq_pool *p) { return p ? p->n : 1; }

void llmq_pool_run(llmq_pool *p, llmq_pool_fn fn, void *ctx)
{
    if (!p || p->n == 1) { fn(ctx, 0, 1); return; }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    /* the mutex orders the bump against a worker about to sleep: no lost wake-up */
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    fn(ctx, 0, p->n);
    int spins = 0;
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) {
        if (++spins < SPIN_ITERS) cpu_relax();
        else sched_yield();
    }
}
