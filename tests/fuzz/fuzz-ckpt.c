/*
 * fuzz-ckpt.c - a sharded checkpoint: model.safetensors.index.json and the
 * shards it names, opened by llmq_ckpt_open on a directory as every command
 * opens a model.
 *
 * Input: the index, then each shard, separated by FUZZ_SEP (fuzz.h); shard
 * k of n (from 1) is written as model-0000k-of-0000n.safetensors, the
 * names Hugging Face gives and the seeds' index uses.  At most 8 shards.
 */
#include "fuzz.h"   /* first: it defines _GNU_SOURCE */
#include "formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *part[9];
    size_t len[9], pos = 0, n = 0;
    while (n < 9 && fuzz_next_part(data, size, &pos, &part[n], &len[n])) n++;
    if (n == 0) return 0;
    fuzz_clear();
    fuzz_write("model.safetensors.index.json", part[0], len[0]);
    for (size_t k = 1; k < n; k++) {
        char name[64];
        snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", k, n - 1);
        fuzz_write(name, part[k], len[k]);
    }
    llmq_ckpt c;
    llmq_err err = { 0 };
    if (llmq_ckpt_open(&c, fuzz_dir(), &err) == LLMQ_OK) {
        unsigned sum = 0;
        uint64_t total = 0;
        for (size_t s = 0; s < c.n_shards; s++)
            for (size_t i = 0; i < c.shards[s].n_tensors; i++) {
                const llmq_st_tensor *t = &c.shards[s].tensors[i];
                const llmq_st_file *where = NULL;
                /* the index assigns every tensor to exactly one shard */
                if (llmq_ckpt_find(&c, t->name, &where) != t || where != &c.shards[s]) abort();
                for (uint64_t j = 0; j < t->nbytes; j++) sum += t->data[j];
                total += t->nbytes;
            }
        if (total != llmq_ckpt_bytes(&c)) abort();
        if (llmq_ckpt_find(&c, "no such tensor", NULL)) abort();
        if (sum == 0xdeadbeef) fputc(' ', stderr);
        llmq_ckpt_close(&c);
    } else if (err.code == LLMQ_OK || !err.msg[0] || strchr(err.msg, '\n')) {
        abort();
    }
    return 0;
}
