/*
 * fuzz-stats.c - an activation-statistics file as `smooth --stats`,
 * `awq --stats` and `verify --stats` read it: llmq_stats_load (the
 * safetensors reader, the llmq-stats metadata, every site's tensors with
 * their dtypes and shapes, finiteness, min <= max), then
 * llmq_stats_check_config against the tiny model the seeds were made from
 * (hidden 32, 1 layer, 2 heads, 1 KV head, intermediate 64) and the static
 * int8 scales a W8A8 run derives from the file.
 */
#include "fuzz.h"   /* first: it defines _GNU_SOURCE */
#include "calib/stats.h"

static const char config[] =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"head_dim\":16,\"hidden_act\":\"silu\",\"hidden_size\":32,"
    "\"intermediate_size\":64,\"num_attention_heads\":2,\"num_hidden_layers\":1,\"num_key_value_heads\":1,"
    "\"rms_norm_eps\":1e-05,\"rope_theta\":10000.0,\"vocab_size\":16}";
static llmq_config cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    llmq_err err = { 0 };
    if (llmq_config_parse(&cfg, config, sizeof config - 1, "fuzz/config.json", &err)) {
        fprintf(stderr, "fuzz-stats: %s\n", err.msg);
        exit(1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write("stats.safetensors", data, size);
    llmq_stats s;
    llmq_err err = { 0 };
    if (llmq_stats_load(&s, path, &err) != LLMQ_OK) {
        if (err.code == LLMQ_OK || !err.msg[0] || strchr(err.msg, '\n')) abort();
        return 0;
    }
    if (s.n_layers < 1 || s.n_kv_heads < 1 || s.head_dim < 1 || !s.site) abort();
    for (int l = 0; l < s.n_layers; l++)
        for (int k = 0; k < LLMQ_SITE_COUNT; k++) {
            const llmq_site_stats *q = &s.site[l * LLMQ_SITE_COUNT + k];
            float m = 0;
            for (int j = 0; j < q->dim; j++) m += q->absmax[j] + q->mean_abs[j] + (float)q->sum[j];
            if (q->head_absmax)
                for (int h = 0; h < s.n_kv_heads; h++) m += q->head_absmax[h];
            if (q->keep) m += q->keep[(size_t)s.n_keep * (size_t)q->dim - 1];
            if (m == 12345.0f) fputc(' ', stderr);   /* keep the reads */
        }
    if (llmq_stats_check_config(&s, &cfg, path, &err) == LLMQ_OK)
        for (int l = 0; l < cfg.n_layers; l++)
            for (int k = 0; k < LLMQ_SITE_COUNT; k++)
                if (llmq_site_is_linear((llmq_site)k)) {
                    float sc = llmq_stats_static_scale(&s, l, (llmq_site)k);
                    if (!(sc >= 0)) abort();
                }
    llmq_stats_release(&s);
    return 0;
}
