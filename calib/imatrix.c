/* imatrix.c - statistics as llama.cpp's GGUF importance matrix (imatrix.h). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include "imatrix.h"
#include "../formats/gguf.h"
#include "../lib/linears.h"

/* What one tensor's bytes come from. */
typedef struct {
    const llmq_site_stats *q;
    int counts;               /* 1: the .counts tensor, 0: .in_sum2 */
} im_job;

static int fill(void *ctx, const char *name, void *buf, uint64_t nbytes, llmq_err *err)
{
    const im_job *j = ctx;
    uint8_t *p = buf;
    (void)name;
    if (j->counts) {
        if (nbytes != 4) return LLMQ_BUG(err, "imatrix: counts size");
        llmq_put_le32(p, llmq_f32_bits((float)j->q->count));
        return LLMQ_OK;
    }
    if (nbytes != (uint64_t)j->q->dim * 4) return LLMQ_BUG(err, "imatrix: in_sum2 size");
    for (int c = 0; c < j->q->dim; c++) llmq_put_le32(p + 4 * (size_t)c, llmq_f32_bits((float)j->q->sumsq[c]));
    return LLMQ_OK;
}

int llmq_imatrix_save(const llmq_stats *s, const char *dataset, const char *path, llmq_err *err)
{
    /* checked first, so that a bad value names its site rather than a half-written file */
    for (int l = 0; l < s->n_layers; l++)
        for (int k = 0; k < LLMQ_LIN_COUNT; k++) {
            llmq_site site = llmq_linears[k].input;
            const llmq_site_stats *q = &s->site[l * LLMQ_SITE_COUNT + site];
            if (q->count <= 0)
                return llmq_errorf(err, LLMQ_EUSAGE, "%s: layer %d site '%s' saw no tokens", path, l,
                                   llmq_site_name(site));
            for (int c = 0; c < q->dim; c++)
                if (!(q->sumsq[c] >= 0.0 && q->sumsq[c] <= FLT_MAX))
                    return llmq_errorf(err, LLMQ_ENONFINITE, "%s: layer %d site '%s' channel %d: sum of squares %g "
                                       "does not fit a float", path, l, llmq_site_name(site), c, q->sumsq[c]);
        }
    size_t n_jobs = (size_t)s->n_layers * LLMQ_LIN_COUNT * 2;
    im_job *jobs = llmq_calloc(n_jobs ? n_jobs : 1, sizeof *jobs, err);
    if (!jobs) return err->code;
    llmq_gguf_writer *w = llmq_gguf_writer_new(err);
    int rc = w ? LLMQ_OK : err->code;
    if (!rc) rc = llmq_gguf_kv_str(w, "general.type", "imatrix", err);
    const char *ds[1] = { dataset };
    if (!rc) rc = llmq_gguf_kv_arr_str(w, "imatrix.datasets", ds, dataset ? 1 : 0, err);
    if (!rc) rc = llmq_gguf_kv_u32(w, "imatrix.chunk_count", (uint32_t)s->samples, err);
    if (!rc) rc = llmq_gguf_kv_u32(w, "imatrix.chunk_size", (uint32_t)s->seqlen, err);
    if (!rc) rc = llmq_gguf_kv_str(w, "llmq.model_digest", s->model_digest, err);
    if (!rc) rc = llmq_gguf_kv_str(w, "llmq.text_digest", s->text_digest, err);
    size_t nj = 0;
    char name[96];
    for (int l = 0; l < s->n_layers && !rc; l++)
        for (int k = 0; k < LLMQ_LIN_COUNT && !rc; k++) {
            const llmq_site_stats *q = &s->site[l * LLMQ_SITE_COUNT + llmq_linears[k].input];
            int64_t ne_sum[1] = { q->dim }, ne_cnt[1] = { 1 };
            jobs[nj] = (im_job){ q, 0 };
            snprintf(name, sizeof name, "blk.%d.%s.in_sum2", l, llmq_linears[k].gguf);
            rc = llmq_gguf_add_tensor(w, name, LLMQ_GGML_F32, 1, ne_sum, fill, &jobs[nj++], err);
            if (rc) break;
            jobs[nj] = (im_job){ q, 1 };
            snprintf(name, sizeof name, "blk.%d.%s.counts", l, llmq_linears[k].gguf);
            rc = llmq_gguf_add_tensor(w, name, LLMQ_GGML_F32, 1, ne_cnt, fill, &jobs[nj++], err);
        }
    if (!rc) rc = llmq_gguf_writer_finish(w, path, NULL, err);
    llmq_gguf_writer_free(w);
    free(jobs);
    return rc;
}
