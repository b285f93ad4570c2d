/*
 * fuzz-config.c - config.json as llmq_config_parse reads it (what
 * llmq_config_load does after reading the file).  An accepted config must
 * describe a model llmq can size: every dimension positive and consistent.
 */
#include "fuzz.h"   /* first: it defines _GNU_SOURCE */
#include "formats/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    llmq_config c;
    llmq_err err = { 0 };
    if (llmq_config_parse(&c, buf, size, "fuzz/config.json", &err) == LLMQ_OK) {
        if (c.hidden < 1 || c.intermediate < 1 || c.n_layers < 1 || c.n_heads < 1 || c.n_kv_heads < 1 ||
            c.head_dim < 1 || c.head_dim % 2 || c.vocab < 1 || c.n_heads % c.n_kv_heads != 0 || !(c.rms_eps >= 0) ||
            !(c.rope_theta > 0) || !memchr(c.arch_name, 0, sizeof c.arch_name) || !memchr(c.dtype, 0, sizeof c.dtype)) {
            fprintf(stderr, "accepted config: hidden %d inter %d layers %d heads %d/%d head_dim %d vocab %d eps %g theta %g\n",
                    c.hidden, c.intermediate, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab, c.rms_eps, c.rope_theta);
            abort();
        }
    } else if (err.code == LLMQ_OK || !err.msg[0] || strchr(err.msg, '\n')) {
        abort();
    }
    free(buf);
    return 0;
}
