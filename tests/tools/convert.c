/*
 * convert - test helper: rewrite a float checkpoint in another dtype.
 *   convert MODEL OUTDIR f32|f16|bf16
 * Every float tensor is converted (bf16 -> f32 is exact); config.json's
 * dtype is left as is (llmq reads the tensors' own dtypes).  Used to test
 * the runner on F32 and F16 weights and to measure bf16-in-kernels against
 * converting to f32.
 */
#include <stdio.h>
#include "formats/safetensors.h"
#include "formats/packed.h"
#include "formats/modeldir.h"
#include "lib/base/fileio.h"

int main(int argc, char **argv)
{
    if (argc != 4) { fprintf(stderr, "usage: convert MODEL OUTDIR f32|f16|bf16\n"); return 2; }
    llmq_dtype to = !strcmp(argv[3], "f32") ? LLMQ_DT_F32 : !strcmp(argv[3], "f16") ? LLMQ_DT_F16 : LLMQ_DT_BF16;
    llmq_err err = { 0, "" };
    llmq_ckpt c;
    if (llmq_ckpt_open(&c, argv[1], &err)) { fprintf(stderr, "convert: %s\n", err.msg); return err.code; }
    llmq_st_writer *w = llmq_st_writer_new(&err);
    void **bufs = calloc(4096, sizeof *bufs);
    int nb = 0, rc = 0;
    for (size_t s = 0; s < c.n_shards && !rc; s++)
        for (size_t i = 0; i < c.shards[s].n_tensors && !rc; i++) {
            const llmq_st_tensor *t = &c.shards[s].tensors[i];
            int fl = t->dtype == LLMQ_DT_F32 || t->dtype == LLMQ_DT_BF16 || t->dtype == LLMQ_DT_F16;
            if (!fl || t->dtype == to) { rc = llmq_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, &err); continue; }
            size_t esz = llmq_dtype_size(to);
            uint8_t *o = malloc(t->nelem * esz + 1);
            bufs[nb++] = o;
            for (uint64_t k = 0; k < t->nelem; k++) {
                const uint8_t *d = t->data;
                float v = t->dtype == LLMQ_DT_F32 ? llmq_bits_f32(llmq_get_le32(d + 4 * k))
                        : t->dtype == LLMQ_DT_BF16 ? llmq_bf16_to_f32(llmq_get_le16(d + 2 * k))
                        : llmq_f16_to_f32(llmq_get_le16(d + 2 * k));
                if (to == LLMQ_DT_F32) llmq_put_le32(o + 4 * k, llmq_f32_bits(v));
                else llmq_put_le16(o + 2 * k, to == LLMQ_DT_F16 ? llmq_f32_to_f16(v) : llmq_f32_to_bf16(v));
            }
            rc = llmq_st_writer_add(w, t->name, to, t->ndim, t->shape, o, &err);
        }
    if (!rc) rc = llmq_modeldir_write(argv[2], c.dir, NULL, w, NULL, NULL, &err);
    llmq_st_writer_free(w);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    free(bufs);
    llmq_ckpt_close(&c);
    if (rc) { fprintf(stderr, "convert: %s\n", err.msg); return rc; }
    return 0;
}
