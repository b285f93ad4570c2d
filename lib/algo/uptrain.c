/*
 * uptrain.c - the uptraining loop: per step, for each window, the teacher's
 * logits (the original model on the runner), the student's forward keeping
 * activations, the loss gradient on the logits, the backward; then one
 * AdamW step with warmup and cosine decay.
 */
#include <math.h>
#include <stdio.h>
#include "uptrain.h"
#include "../../formats/safetensors.h"

void llmq_uptrain_opts_default(llmq_uptrain_opts *o)
{
    memset(o, 0, sizeof *o);
    o->steps = LLMQ_UPTRAIN_STEPS_DEFAULT;
    o->batch = LLMQ_UPTRAIN_BATCH_DEFAULT;
    o->seqlen = LLMQ_UPTRAIN_SEQLEN_DEFAULT;
    o->lr = (float)LLMQ_UPTRAIN_LR_DEFAULT;
    o->min_lr_frac = 0.1f;
    o->warmup = LLMQ_UPTRAIN_WARMUP_DEFAULT;
    o->wd = (float)LLMQ_UPTRAIN_WD_DEFAULT;
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->distill = (float)LLMQ_UPTRAIN_DISTILL_DEFAULT;
    o->clip = 1.0f;
    o->save_every = LLMQ_UPTRAIN_SAVE_EVERY_DEFAULT;
}

static float lr_at(const llmq_uptrain_opts *o, int step)
{
    if (o->warmup > 0 && step <= o->warmup) return o->lr * (float)step / (float)o->warmup;
    int span = o->steps - o->warmup;
    if (span <= 0) return o->lr;
    double f = (double)(step - o->warmup) / span;
    double c = 0.5 * (1.0 + cos(M_PI * (f > 1 ? 1 : f)));
    return (float)(o->lr * (o->min_lr_frac + (1.0 - o->min_lr_frac) * c));
}

int llmq_uptrain_save(const llmq_tmodel *tm, int step, const char *key, const char *path, llmq_err *err)
{
    llmq_st_writer *w = llmq_st_writer_new(err);
    if (!w) return err->code;
    char sbuf[32], nm[160];
    snprintf(sbuf, sizeof sbuf, "%d", step);
    int rc = llmq_st_writer_meta(w, "llmq.uptrain.step", sbuf, err);
    if (!rc) rc = llmq_st_writer_meta(w, "llmq.uptrain.key", key ? key : "", err);
    for (int i = 0; !rc && i < tm->n_params; i++) {
        const llmq_tparam *p = &tm->p[i];
        if (!p->train) continue;
        const float *src[3] = { p->w, p->m, p->v };
        const char *suf[3] = { "", ".adam_m", ".adam_v" };
        for (int k = 0; !rc && k < 3; k++) {
            snprintf(nm, sizeof nm, "%s%s", p->name, suf[k]);
            rc = llmq_st_writer_add(w, nm, LLMQ_DT_F32, p->ndim, p->shape, src[k], err);
        }
    }
    if (!rc) rc = llmq_st_writer_finish(w, path, err);
    llmq_st_writer_free(w);
    return rc;
}

int llmq_uptrain_load(llmq_tmodel *tm, int *step, const char *key, const char *path, llmq_err *err)
{
    llmq_st_file f;
    int rc = llmq_st_open(&f, path, err);
    if (rc) return rc;
    const char *k = llmq_st_meta(&f, "llmq.uptrain.key"), *s = llmq_st_meta(&f, "llmq.uptrain.step");
    char *end = NULL;
    long sv = s ? strtol(s, &end, 10) : -1;
    if (!k || !s || !end || *end || sv < 0 || sv > 100000000) {
        rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: not an llmq uptraining state", path);
        goto out;
    }
    if (strcmp(k, key ? key : "")) {
        rc = llmq_errorf(err, LLMQ_EUSAGE, "%s: state of another run (%s); remove it or repeat that run's options", path, k);
        goto out;
    }
    char nm[160];
    for (int i = 0; !rc && i < tm->n_params; i++) {
        llmq_tparam *p = &tm->p[i];
        if (!p->train) continue;
        float *dst[3] = { p->w, p->m, p->v };
        const char *suf[3] = { "", ".adam_m", ".adam_v" };
        for (int j = 0; j < 3; j++) {
            snprintf(nm, sizeof nm, "%s%s", p->name, suf[j]);
            const llmq_st_tensor *t = llmq_st_find(&f, nm);
            if (!t || t->dtype != LLMQ_DT_F32 || t->nelem != p->n || t->ndim != p->ndim || t->shape[0] != p->shape[0]) {
                rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s' is missing or has the wrong shape", path, nm);
                break;
            }
            memcpy(dst[j], t->data, p->n * sizeof(float));
            for (size_t q = 0; q < p->n; q++)
                if (!isfinite(dst[j][q])) {
                    rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s' holds non-finite values", path, nm);
                    break;
                }
            if (rc) break;
        }
    }
    if (!rc) *step = (int)sv;
out:
    llmq_st_close(&f);
    return rc;
}

int llmq_uptrain(llmq_tmodel *tm, const llmq_model *teacher, llmq_pool *pool, const int32_t *tokens,
                 int n_windows, const llmq_uptrain_opts *o, llmq_uptrain_stats *st, llmq_err *err)
{
    memset(st, 0, sizeof *st);
    int T = o->seqlen, V = tm->cfg.vocab;
    if (o->steps < 0 || o->batch < 1 || T < 2)
        return llmq_errorf(err, LLMQ_EUSAGE, "uptraining needs a positive batch and a window of at least 2 tokens");
    if ((int64_t)o->steps * o->batch > n_windows)
        return llmq_errorf(err, LLMQ_EUSAGE, "%d steps of %d windows need %d windows, have %d",
                           o->steps, o->batch, o->steps * o->batch, n_windows);
    if (o->distill > 0 && !teacher) return LLMQ_BUG(err, "distillation without a teacher");
    int start = 0, rc = LLMQ_OK;
    if (o->resume && o->state_path && llmq_exists(o->state_path)) {
        if ((rc = llmq_uptrain_load(tm, &start, o->key, o->state_path, err))) return rc;
        if (start > o->steps)
            return llmq_errorf(err, LLMQ_EUSAGE, "%s: state is at step %d, past --steps %d", o->state_path, start, o->steps);
    }
    st->start_step = start;
    st->steps_done = start;
    if (start == o->steps || (o->stop_at > 0 && start >= o->stop_at)) return LLMQ_OK;
    llmq_tws *ws = NULL;
    llmq_runner *run = NULL;
    float *tlog = NULL;
    int32_t *tgt = NULL;
    if ((rc = llmq_tws_new(&ws, tm, T, err))) return rc;
    if (o->distill > 0) {
        if ((rc = llmq_runner_new(&run, teacher, T, pool, err))) goto out;
        if (!(tlog = llmq_alloc_aligned((size_t)T * V * sizeof(float), err))) { rc = err->code; goto out; }
    }
    if (!(tgt = llmq_malloc((size_t)T * sizeof(int32_t), err))) { rc = err->code; goto out; }
    double t0 = llmq_now();
    float scale = 1.0f / ((float)o->batch * (float)(T - 1));
    for (int step = start + 1; step <= o->steps; step++) {
        double loss = 0.0, ce = 0.0, kl = 0.0;
        llmq_tmodel_zero_grad(tm);
        for (int b = 0; b < o->batch; b++) {
            const int32_t *win = tokens + ((size_t)(step - 1) * o->batch + b) * T;
            if (run && (rc = llmq_runner_forward(run, win, T, 0, tlog, 1, err))) goto out;
            llmq_tmodel_forward(tm, ws, win, T);
            memcpy(tgt, win + 1, (size_t)(T - 1) * sizeof(int32_t));
            tgt[T - 1] = -1;
            double c1, k1;
            loss += llmq_op_xent_kl(llmq_tws_logits(ws), tlog, tgt, T, V, o->distill, scale,
                                    llmq_tws_dlogits(ws), &c1, &k1);
            ce += c1;
            kl += k1;
            llmq_tmodel_backward(tm, ws);
        }
        double ntok = (double)o->batch * (T - 1);
        loss /= ntok;
        if (!isfinite(loss)) {
            rc = llmq_errorf(err, LLMQ_ENONFINITE, "step %d: the loss is not finite; lower --lr", step);
            goto out;
        }
        llmq_adamw ad = { lr_at(o, step), o->beta1, o->beta2, 1e-8f, o->wd };
        llmq_tmodel_adamw(tm, &ad, step, o->clip);
        if (step == start + 1) st->first_loss = loss;
        st->last_loss = loss;
        st->last_ce = ce / ntok;
        st->last_kl = kl / ntok;
        st->steps_done = step;
        st->tokens += (int64_t)o->batch * T;
        st->seconds = llmq_now() - t0;
        st->tok_s = st->seconds > 0 ? (double)st->tokens / st->seconds : 0.0;
        if (o->progress) o->progress(o->progress_ctx, step, o->steps, loss, st->tok_s);
        int stop = o->stop_at > 0 && step == o->stop_at && step < o->steps;
        if (o->state_path && ((o->save_every > 0 && step % o->save_every == 0 && step < o->steps) || stop) &&
            (rc = llmq_uptrain_save(tm, step, o->key, o->state_path, err)))
            goto out;
        if (stop) break;
    }
out:
    free(tgt);
    free(tlog);
    llmq_runner_free(run);
    llmq_tws_free(ws);
    return rc;
}
