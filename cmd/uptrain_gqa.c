/* uptrain_gqa.c - `llmq uptrain-gqa`: MHA -> GQA by pooling K/V heads, then uptraining. */
#include <stdio.h>
#include <unistd.h>
#include "common.h"
#include "../lib/model.h"
#include "../lib/algo/gqa.h"
#include "../lib/algo/uptrain.h"
#include "../calib/data.h"
#include "../formats/tokenizer.h"

static struct {
    const char *out, *pool, *text, *train, *dtype, *state;
    int snapshot, stop_after, kv_heads, steps, samples, seqlen, calib_samples, k_steps, save_every, threads, resume, json, warmup;
    long long seed;
    double lr, distill, wd;
    int seen_lr;
} o;

static opt_def up_opts[] = {
    { "kv-heads", OPT_INT, &o.kv_heads, "G", "key/value heads of the output (required; divides the query heads)", NULL, 1, 65536, NULL, 0, NULL },
    OPT_ROW_OUTPUT(o.out, "DIR", "write the converted model to DIR (required)"),
    { "pool", OPT_CHOICE, &o.pool, NULL, "how K/V heads are pooled", "mean|activation", 0, 0, NULL, 0, "activation" },
    { "text", OPT_PATH, &o.text, "PATH", "calibration/training text: a file or a directory of files", NULL, 0, 0, NULL, 0, NULL },
    { "steps", OPT_INT, &o.steps, "N", "uptraining steps, 0 for none", NULL, 0, 1000000, NULL, 0, OPT_DEF(LLMQ_UPTRAIN_STEPS_DEFAULT) },
    { "samples", OPT_INT, &o.samples, "N", "windows per uptraining step", NULL, 1, 4096, NULL, 0, OPT_DEF(LLMQ_UPTRAIN_BATCH_DEFAULT) },
    { "seqlen", OPT_INT, &o.seqlen, "N", "tokens per window", NULL, 2, 65536, NULL, 0, OPT_DEF(LLMQ_UPTRAIN_SEQLEN_DEFAULT) },
    { "lr", OPT_DOUBLE, &o.lr, "X", "peak AdamW learning rate (default " OPT_DEF(LLMQ_UPTRAIN_LR_DEFAULT) " for K/V, " OPT_DEF(LLMQ_UPTRAIN_LR_ALL_DEFAULT) " for all)", NULL, 1e-9, 1, &o.seen_lr, 0, NULL },
    { "warmup", OPT_INT, &o.warmup, "N", "linear warmup steps before the cosine decay", NULL, 0, 1000000, NULL, 0, OPT_DEF(LLMQ_UPTRAIN_WARMUP_DEFAULT) },
    { "weight-decay", OPT_DOUBLE, &o.wd, "X", "AdamW decoupled weight decay on matrices", NULL, 0, 1, NULL, 0, OPT_DEF(LLMQ_UPTRAIN_WD_DEFAULT) },
    { "train", OPT_CHOICE, &o.train, NULL, "what uptraining updates: kv the K/V projections, all every tensor", "kv|all", 0, 0, NULL, 0, "kv" },
    { "distill", OPT_DOUBLE, &o.distill, "A", "loss = (1-A) cross-entropy + A KL from the original model", NULL, 0, 1, NULL, 0, OPT_DEF(LLMQ_UPTRAIN_DISTILL_DEFAULT) },
    { "calib-samples", OPT_INT, &o.calib_samples, "N", "windows for activation pooling", NULL, 1, 4096, NULL, 0, "16" },
    { "k-steps", OPT_INT, &o.k_steps, "N", "activation pooling: gradient steps on each layer's K", NULL, 0, 100000, NULL, 0, OPT_DEF(LLMQ_GQA_K_STEPS_DEFAULT) },
    { "seed", OPT_INT64, &o.seed, "N", "seed of the window sampler", NULL, 0, 9007199254740991.0, NULL, 0, "1" },
    { "resume", OPT_FLAG, &o.resume, NULL, "continue an interrupted run from its state file", NULL, 0, 0, NULL, 0, NULL },
    { "state", OPT_PATH, &o.state, "FILE", "training state file (default DIR.uptrain-state beside the output)", NULL, 0, 0, NULL, 0, NULL },
    { "stop-after", OPT_INT, &o.stop_after, "N", "stop after step N, keeping the state for --resume; write no model", NULL, 1, 1000000, NULL, 0, NULL },
    { "snapshot", OPT_FLAG, &o.snapshot, NULL, "with --stop-after: write the model as it is at that step too", NULL, 0, 0, NULL, 0, NULL },
    { "save-every", OPT_INT, &o.save_every, "N", "write the training state every N steps, 0 never", NULL, 0, 1000000, NULL, 0, OPT_DEF(LLMQ_UPTRAIN_SAVE_EVERY_DEFAULT) },
    { "dtype", OPT_CHOICE, &o.dtype, NULL, "weight type of the output (default: as the source)", "bf16|f16|f32", 0, 0, NULL, 0, NULL },
    { "threads", OPT_INT, &o.threads, "N", "worker threads of the teacher and calibration runs", NULL, 1, 256, NULL, 0, OPT_DEF(OPT_THREADS_DEFAULT) },
    OPT_ROW_JSON(o.json),
    OPT_ROW_END,
};

static const cmd_spec up_spec = {
    "uptrain-gqa", "MODEL --kv-heads G -o DIR [--pool mean|activation] [--text PATH] [--steps N] [options]",
    "Convert a multi-head attention checkpoint to grouped-query attention with G\n"
    "key/value heads by pooling the K and V projections of each group of heads,\n"
    "then uptrain (next-token cross-entropy plus distillation from the original\n"
    "model) to recover the quality.  DIR is a Hugging Face checkpoint.",
    "--pool activation (default) solves V by weighted least squares on each layer's\n"
    "attention output and refines K by gradient steps, from --text; --pool mean\n"
    "averages the heads as the GQA paper does.  --steps 0 skips uptraining.",
    up_opts, 1, 1,
};

typedef struct { cmd_progress p; int tty; } up_progress;

static void train_progress(void *ctx, int step, int steps, double loss, double tok_s)
{
    up_progress *u = ctx;
    if (!u->tty) return;
    double el = llmq_now() - u->p.t0;
    fprintf(stderr, "\ruptrain: step %d/%d  loss %.4f  %.0f tok/s  %.0fs elapsed   ", step, steps, loss, tok_s, el);
    u->p.shown = 1;
}

static const char *strip_slash(const char *s, char *buf, size_t n)
{
    snprintf(buf, n, "%s", s);
    size_t k = strlen(buf);
    while (k > 1 && buf[k - 1] == '/') buf[--k] = 0;
    return buf;
}

/* Uptraining (the steps, batches and schedule of the options) on train. */
static int run_uptrain(llmq_tmodel *tm, const llmq_model *m, llmq_pool *pool, const llmq_calib_set *train,
                       const char *state, const char *key, int train_all, llmq_uptrain_stats *ust, llmq_err *err)
{
    int rc = llmq_tmodel_set_train(tm, train_all ? LLMQ_TRAIN_ALL : LLMQ_TRAIN_KV, err);
    if (rc) return rc;
    llmq_uptrain_opts uo;
    llmq_uptrain_opts_default(&uo);
    uo.steps = o.steps;
    uo.batch = o.samples;
    uo.seqlen = o.seqlen;
    uo.lr = (float)o.lr;
    uo.warmup = LLMQ_MIN(o.warmup, o.steps);
    uo.wd = (float)o.wd;
    uo.distill = (float)o.distill;
    uo.save_every = o.save_every;
    uo.state_path = state;
    uo.resume = o.resume;
    uo.key = key;
    uo.stop_at = o.stop_after;
    up_progress up;
    progress_init(&up.p, "uptrain");
    up.tty = up.p.tty;
    uo.progress = train_progress;
    uo.progress_ctx = &up;
    rc = llmq_uptrain(tm, m, pool, train->tokens, train->samples, &uo, ust, err);
    progress_done(&up.p);
    return rc;
}

static void report_json(const char *model, const char *out, const llmq_model *m, const llmq_gqa_report *rep,
                        const llmq_uptrain_stats *ust, double t_pool, double t0)
{
    cJSON *j = json_report(model, out);
    cJSON_AddNumberToObject(j, "heads", m->cfg.n_heads);
    cJSON_AddNumberToObject(j, "kv_heads_in", m->cfg.n_kv_heads);
    cJSON_AddNumberToObject(j, "kv_heads", o.kv_heads);
    cJSON_AddStringToObject(j, "pool", o.pool);
    cJSON_AddNumberToObject(j, "kv_cache_bytes_per_token_fp16", 2.0 * 2 * m->cfg.n_layers * o.kv_heads * m->cfg.head_dim);
    if (rep->n_layers) {
        cJSON *em = cJSON_AddArrayToObject(j, "pool_err_mean"), *ea = cJSON_AddArrayToObject(j, "pool_err_activation");
        for (int l = 0; l < rep->n_layers; l++) {
            cJSON_AddItemToArray(em, cJSON_CreateNumber(rep->err_mean[l]));
            cJSON_AddItemToArray(ea, cJSON_CreateNumber(rep->err_act[l]));
        }
    }
    cJSON_AddNumberToObject(j, "pool_seconds", t_pool);
    cJSON_AddStringToObject(j, "train", o.train);
    const llmq_json_num f[] = {
        { "steps", o.steps }, { "resumed_from_step", ust->start_step }, { "steps_done", ust->steps_done },
        { "samples", o.samples }, { "seqlen", o.seqlen }, { "lr", o.lr }, { "distill", o.distill },
        { "train_tokens", (double)ust->tokens },
    };
    llmq_json_add_numbers(j, f, LLMQ_ARRAY_LEN(f));
    if (ust->tokens > 0) {
        const llmq_json_num loss[] = {
            { "first_loss", ust->first_loss }, { "last_loss", ust->last_loss }, { "last_ce", ust->last_ce },
            { "last_kl", ust->last_kl }, { "train_tok_s", ust->tok_s },
        };
        llmq_json_add_numbers(j, loss, LLMQ_ARRAY_LEN(loss));
    }
    cJSON_AddNumberToObject(j, "train_seconds", ust->seconds);
    json_report_done(j, t0, -1);
}

/* The option checks opts_parse cannot make; fills the lr default, which
 * depends on --train. */
static int check_options(const char *C)
{
    if (!o.out) return cmd_failf(C, LLMQ_EUSAGE, "missing -o DIR");
    if (!o.kv_heads) return cmd_failf(C, LLMQ_EUSAGE, "missing --kv-heads G");
    int act_pool = !strcmp(o.pool, "activation");
    if (!o.text && (act_pool || o.steps > 0))
        return cmd_failf(C, LLMQ_EUSAGE, "--text PATH is needed for %s (or use --pool mean --steps 0)",
                         act_pool ? "--pool activation" : "uptraining");
    if (!o.seen_lr) o.lr = !strcmp(o.train, "all") ? LLMQ_UPTRAIN_LR_ALL_DEFAULT : LLMQ_UPTRAIN_LR_DEFAULT;
    return 0;
}

/* The model's tokenizer, the training windows of --text, and the key a
 * resumed run's state must match (every option that shapes the run). */
static int load_text(const char *model, llmq_tok **tok, llmq_calib_set *train, char *key, size_t keylen, llmq_err *err)
{
    const char *paths[1] = { o.text };
    char *dir = model_dir(model, err), *tokpath = dir ? llmq_path_join(dir, "tokenizer.json", err) : NULL;
    int rc = tokpath ? llmq_tok_load(tok, tokpath, err) : (int)err->code;
    free(dir);
    free(tokpath);
    if (rc) return rc;
    if (o.steps > 0 && (rc = llmq_calib_sample(*tok, paths, 1, o.steps * o.samples, o.seqlen, (uint64_t)o.seed, train, err)))
        return rc;
    snprintf(key, keylen, "kv-heads=%d pool=%s k-steps=%d calib-samples=%d train=%s steps=%d samples=%d seqlen=%d lr=%g "
             "warmup=%d wd=%g distill=%g seed=%lld text=%.16s",
             o.kv_heads, o.pool, o.k_steps, o.calib_samples, o.train, o.steps, o.samples, o.seqlen, o.lr,
             o.warmup, o.wd, o.distill, o.seed, train->text_digest);
    return LLMQ_OK;
}

/* Pool the K/V heads of tm to --kv-heads: by activations (the calibration
 * windows through m) or by mean.  On a resumed run the state holds every
 * pooled tensor, so the cheap mean pooling only gives them their shapes. */
static int pool_heads(const llmq_model *m, llmq_tmodel *tm, llmq_pool *pool, llmq_tok *tok, int resumed,
                      llmq_gqa_report *rep, llmq_err *err)
{
    if (strcmp(o.pool, "activation") || resumed) return llmq_gqa_pool_mean(tm, o.kv_heads, err);
    const char *paths[1] = { o.text };
    int cT = LLMQ_MIN(o.seqlen, 512);
    llmq_gqa_opts go;
    llmq_gqa_opts_default(&go);
    go.k_steps = o.k_steps;
    up_progress up = { { 0 }, 0 };
    progress_init(&up.p, "activation pooling");
    go.progress = progress_cb;
    go.progress_ctx = &up.p;
    llmq_calib_set calib = { 0 };
    llmq_gqa_calib gc = { 0 };
    int rc = llmq_calib_sample(tok, paths, 1, o.calib_samples, cT, (uint64_t)o.seed ^ 0x6771615fULL, &calib, err);
    if (!rc && !(rc = llmq_gqa_collect(m, pool, calib.tokens, calib.samples, cT, &gc, err)) &&
        !(rc = llmq_gqa_pool_activation(tm, o.kv_heads, &gc, &go, rep, err)))
        progress_done(&up.p);
    llmq_gqa_calib_release(&gc);
    llmq_calib_release(&calib);
    return rc;
}

/* --json of a run that --stop-after ended before its last step. */
static void report_stopped(const char *model, const char *state, const llmq_uptrain_stats *ust, double t0)
{
    cJSON *j = json_report(model, NULL);
    cJSON_AddStringToObject(j, "state", state);
    cJSON_AddNumberToObject(j, "stopped_after_step", ust->steps_done);
    cJSON_AddNumberToObject(j, "steps", o.steps);
    cJSON_AddNumberToObject(j, "last_loss", ust->last_loss);
    json_report_done(j, t0, -1);
}

int cmd_uptrain_gqa(int argc, char **argv)
{
    memset(&o, 0, sizeof o);
    char *args[1];
    int na, rc = opts_parse(&up_spec, argc, argv, args, &na);
    if (rc) return rc == 1 ? 0 : LLMQ_EUSAGE;
    const char *C = "uptrain-gqa";
    if ((rc = check_options(C))) return rc;
    llmq_dtype dt = !o.dtype ? LLMQ_DT_COUNT : !strcmp(o.dtype, "f32") ? LLMQ_DT_F32 : !strcmp(o.dtype, "f16") ? LLMQ_DT_F16 : LLMQ_DT_BF16;
    char outbuf[4096], statebuf[4200], key[1024] = "";
    const char *out = strip_slash(o.out, outbuf, sizeof outbuf);
    const char *state = o.state;
    if (!state) { snprintf(statebuf, sizeof statebuf, "%s.uptrain-state", out); state = statebuf; }

    llmq_err err = { 0, "" };
    llmq_model m;
    llmq_tmodel tm;
    llmq_tok *tok = NULL;
    llmq_pool *pool = NULL;
    llmq_calib_set train = { 0 };
    llmq_gqa_report rep = { 0 };
    llmq_uptrain_stats ust;
    memset(&ust, 0, sizeof ust);
    memset(&tm, 0, sizeof tm);
    char *cl = NULL;
    int have_tm = 0;
    double t0 = llmq_now();
    if ((rc = cmd_model_open(&m, args[0], o.text, out, state, &err))) return cmd_fail(C, &err);
    if ((rc = llmq_gqa_check(&m.cfg, o.kv_heads, &err)) || (rc = llmq_tmodel_from_model(&tm, &m, &err))) goto fail;
    have_tm = 1;
    if (!(pool = llmq_pool_new(o.threads, &err))) { rc = err.code; goto fail; }
    if (o.text && (rc = load_text(args[0], &tok, &train, key, sizeof key, &err))) goto fail;
    int resumed = o.resume && o.steps > 0 && llmq_exists(state);
    double tp0 = llmq_now();
    if ((rc = pool_heads(&m, &tm, pool, tok, resumed, &rep, &err))) goto fail;
    double t_pool = llmq_now() - tp0;
    if (o.steps > 0) {
        if ((rc = run_uptrain(&tm, &m, pool, &train, state, key, !strcmp(o.train, "all"), &ust, &err))) goto fail;
        if (o.stop_after && ust.steps_done < o.steps && !o.snapshot) {
            if (o.json) report_stopped(args[0], state, &ust, t0);
            goto done;
        }
    }
    cl = command_line(C, argc, argv);
    char sbuf[32];
    snprintf(sbuf, sizeof sbuf, "%d", ust.steps_done);
    const char *meta[] = { "llmq.command", cl ? cl : "", "llmq.gqa.pool", o.pool, "llmq.gqa.uptrain_steps", sbuf, NULL };
    if ((rc = llmq_tmodel_write(&tm, &m, dt, meta, out, &err))) goto fail;
    if (o.steps > 0 && ust.steps_done == o.steps && llmq_exists(state)) unlink(state);
    if (o.json) report_json(args[0], out, &m, &rep, &ust, t_pool, t0);
    goto done;
fail:
    rc = cmd_fail(C, &err);
done:
    llmq_gqa_report_release(&rep);
    llmq_calib_release(&train);
    if (have_tm) llmq_tmodel_release(&tm);
    llmq_tok_free(tok);
    llmq_pool_free(pool);
    free(cl);
    llmq_model_close(&m);
    return rc;
}
