/*
 * fuzz-kld.c - a KLD base file as `verify --kld FILE` reads it:
 * llmq_kld_load (the safetensors reader, the llmq-kld metadata, the
 * window_crc32 / topk_ids / topk_logp / nll tensors, ids in the vocabulary,
 * log-probs finite and <= 0), then the comparison itself: every window's
 * token crc32 checked and its KL computed against fixed logits
 * (llmq_kld_window), and the summary (llmq_kld_result_get).
 *
 * The run is fixed, as the seeds were made for it (tests/fuzz/mkseeds.sh):
 * vocabulary 16, ctx 8, 3 windows of the ids (5 i + 3) mod 16, i < 24,
 * under both protocols.
 */
#include "fuzz.h"   /* first: it defines _GNU_SOURCE */
#include <math.h>
#include "lib/kld.h"

#define V 16
#define CTX 8
#define WINDOWS 3

static int32_t ids[WINDOWS * CTX];
static float logits[CTX * V];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    for (int i = 0; i < WINDOWS * CTX; i++) ids[i] = (5 * i + 3) % V;
    for (int i = 0; i < CTX * V; i++) logits[i] = (float)sin(0.7 * i) * 3.0f;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write("base.kld", data, size);
    for (int p = 0; p < 2; p++) {
        llmq_ppl_protocol proto = p ? LLMQ_PPL_LLAMACPP : LLMQ_PPL_FULL;
        llmq_kld *k = NULL;
        llmq_err err = { 0 };
        if (llmq_kld_load(&k, path, V, ids, WINDOWS * CTX, proto, CTX, WINDOWS, &err) != LLMQ_OK) {
            if (k || err.code == LLMQ_OK || !err.msg[0] || strchr(err.msg, '\n')) abort();
            continue;
        }
        int first, count, rc = LLMQ_OK;
        llmq_ppl_window_span(proto, CTX, &first, &count);
        for (int w = 0; w < WINDOWS && rc == LLMQ_OK; w++)
            rc = llmq_kld_window(k, w, ids + w * CTX, logits, V, first, count, &err);
        if (rc == LLMQ_OK) {
            llmq_kld_result r;
            if (llmq_kld_result_get(k, &r, &err) == LLMQ_OK &&
                (!(r.kld_mean >= 0) || !(r.top1_agree >= 0 && r.top1_agree <= 1) || r.tokens < 1)) {
                fprintf(stderr, "kld: mean %g, top-1 %g, tokens %" PRId64 "\n", r.kld_mean, r.top1_agree, r.tokens);
                abort();
            }
        }
        llmq_kld_free(k);
    }
    return 0;
}
