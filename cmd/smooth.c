/* smooth.c - `llmq smooth`: SmoothQuant / Outlier Suppression+ folded into a checkpoint. */
#include <math.h>
#include <stdio.h>
#include "common.h"
#include "../lib/model.h"
#include "../lib/eval.h"
#include "../lib/base/fileio.h"
#include "../lib/algo/smooth.h"
#include "../formats/packed.h"
#include "../calib/stats.h"
#include "../lib/algo/pack.h"

static struct {
    const char *stats, *method, *out, *dtype, *pairs, *stats_out;
    double alpha;
    int auto_alpha, no_shift, full_search, threads, json, alpha_seen;
} o;

static opt_def smooth_opts[] = {
    { "stats", OPT_PATH, &o.stats, "FILE", "activation statistics of MODEL from llmq calibrate (required)", NULL, 0, 0, NULL, 0, NULL },
    { "method", OPT_CHOICE, &o.method, NULL, "smoothing method", "smoothquant|osplus", 0, 0, NULL, 0, "smoothquant" },
    { "alpha", OPT_DOUBLE, &o.alpha, "A", "smoothquant: fixed migration strength in [0, 1]", NULL, 0, 1, &o.alpha_seen, 0, NULL },
    { "auto-alpha", OPT_FLAG, &o.auto_alpha, NULL, "smoothquant: per layer and pair, the alpha of 0..1 step 0.05 with the least W8A8 error (default)", NULL, 0, 0, NULL, 0, NULL },
    { "no-shift", OPT_FLAG, &o.no_shift, NULL, "osplus: scale only, no channel shift", NULL, 0, 0, NULL, 0, NULL },
    { "full-search", OPT_FLAG, &o.full_search, NULL, "osplus: score all 81 thresholds, not coarse to fine (3x slower)", NULL, 0, 0, NULL, 0, NULL },
    { "pairs", OPT_STRING, &o.pairs, "LIST", "pairs to smooth, comma-separated from qkv,vo,gateup,updown", NULL, 0, 0, NULL, 0, "qkv,vo,gateup,updown" },
    { "dtype", OPT_CHOICE, &o.dtype, NULL, "output weight dtype (default: the source's)", "f32|bf16|f16", 0, 0, NULL, 0, NULL },
    OPT_ROW_OUTPUT(o.out, "DIR", "write the smoothed checkpoint to DIR (required)"),
    { "stats-out", OPT_PATH, &o.stats_out, "FILE", "also write the statistics of the smoothed model (for --act int8-static)", NULL, 0, 0, NULL, 0, NULL },
    OPT_ROW_THREADS(o.threads),
    OPT_ROW_JSON(o.json),
    OPT_ROW_END,
};

static const cmd_spec smooth_spec = {
    "smooth", "MODEL --stats FILE -o DIR [--method smoothquant|osplus] [--alpha A | --auto-alpha]",
    "Migrate activation outliers of MODEL into its weights with per-channel scales\n"
    "(SmoothQuant) or shifts and scales (Outlier Suppression+), folded exactly into\n"
    "the norms, q/k/v, v->o, gate/up and up->down projections.  DIR is a normal\n"
    "checkpoint computing the same function, easier to run in W8A8.",
    "Pack it with `llmq pack DIR --format int8` and run `llmq verify --act int8`\n"
    "(or --act int8-static with --stats-out's file).  See llmq-smooth(1).",
    smooth_opts, 1, 1,
};

static int parse_pairs(const char *s, unsigned *mask)
{
    *mask = 0;
    while (*s) {
        const char *e = strchr(s, ',');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        int found = 0;
        for (int p = 0; p < LLMQ_PAIR_COUNT; p++)
            if (strlen(llmq_pair_name((llmq_pair)p)) == n && !strncmp(s, llmq_pair_name((llmq_pair)p), n)) {
                *mask |= 1u << p;
                found = 1;
            }
        if (!found) return -1;
        s += n;
        if (*s == ',') s++;
    }
    return *mask ? 0 : -1;
}

/* What was chosen, per layer and pair, recorded in the output and --json;
 * *eb and *ea sum the errors before and after where the plan measured them. */
static cJSON *plan_record(const llmq_smooth_plan *plan, const llmq_smooth_opts *so, int osplus, double *eb, double *ea)
{
    cJSON *pj = cJSON_CreateObject();
    cJSON_AddStringToObject(pj, "method", osplus ? "osplus" : "smoothquant");
    cJSON_AddStringToObject(pj, "mode", osplus ? (plan->shifted ? "shift+scale" : "scale") : so->auto_alpha ? "auto-alpha" : "fixed-alpha");
    cJSON_AddStringToObject(pj, "pairs", o.pairs);
    cJSON *layers = cJSON_AddArrayToObject(pj, "layers");
    for (int l = 0; l < plan->n_layers; l++) {
        cJSON *e = cJSON_CreateObject();
        for (int p = 0; p < LLMQ_PAIR_COUNT; p++) {
            const llmq_smooth_pair *q = &plan->p[l * LLMQ_PAIR_COUNT + p];
            if (!(so->pairs & (1u << p))) continue;
            cJSON *x = cJSON_AddObjectToObject(e, llmq_pair_name((llmq_pair)p));
            cJSON_AddNumberToObject(x, osplus ? "t" : "alpha", q->param);
            if (q->err_before >= 0) {
                cJSON_AddNumberToObject(x, "err_before", q->err_before);
                cJSON_AddNumberToObject(x, "err_after", q->err_after);
                *eb += q->err_before;
                *ea += q->err_after;
            }
            if (q->shift) cJSON_AddTrueToObject(x, "shift");
        }
        cJSON_AddItemToArray(layers, e);
    }
    return pj;
}

/* The option checks opts_parse cannot make, and so from the options. */
static int check_options(llmq_smooth_opts *so)
{
    if (!o.stats) return cmd_failf("smooth", LLMQ_EUSAGE, "missing --stats FILE");
    if (!o.out) return cmd_failf("smooth", LLMQ_EUSAGE, "missing -o DIR");
    int osplus = !strcmp(o.method, "osplus");
    if (o.alpha_seen && o.auto_alpha) return cmd_failf("smooth", LLMQ_EUSAGE, "--alpha and --auto-alpha exclude each other");
    if (osplus && (o.alpha_seen || o.auto_alpha))
        return cmd_failf("smooth", LLMQ_EUSAGE, "--alpha and --auto-alpha are for --method smoothquant");
    if (!osplus && o.no_shift) return cmd_failf("smooth", LLMQ_EUSAGE, "--no-shift is for --method osplus");
    if (!osplus && o.full_search) return cmd_failf("smooth", LLMQ_EUSAGE, "--full-search is for --method osplus");
    memset(so, 0, sizeof *so);
    so->method = osplus ? LLMQ_SMOOTH_OSPLUS : LLMQ_SMOOTH_SQ;
    so->alpha = o.alpha;
    so->auto_alpha = !osplus && !o.alpha_seen;
    so->shift = !o.no_shift;
    so->full_grid = o.full_search;
    if (parse_pairs(o.pairs, &so->pairs))
        return cmd_failf("smooth", LLMQ_EUSAGE, "--pairs '%s': expected a comma-separated list of qkv, vo, gateup, updown", o.pairs);
    return 0;
}

/* --stats-out: the statistics of the smoothed model just written (what
 * calibrate would measure on it), tied to its digest. */
static int save_smoothed_stats(const llmq_model *m, const llmq_stats *st, const llmq_smooth_plan *plan, const char *cl,
                               llmq_err *err)
{
    llmq_model mo;
    llmq_stats st2;
    char out_digest[65];
    memset(&st2, 0, sizeof st2);
    int rc = llmq_model_open(&mo, o.out, err);
    if (rc) return rc;
    if (!(rc = llmq_model_digest(&mo, out_digest, err)) && !(rc = llmq_smooth_stats(m, st, plan, &st2, err))) {
        memcpy(st2.model_digest, out_digest, sizeof out_digest);
        snprintf(st2.derived_by, sizeof st2.derived_by, "%.255s", cl);
        rc = llmq_stats_save(&st2, o.stats_out, err);
    }
    llmq_stats_release(&st2);
    llmq_model_close(&mo);
    return rc;
}

/* --json; takes pj over. */
static void report(const char *path, const llmq_model *m, const llmq_smooth_plan *plan, llmq_dtype dt, double eb,
                   double ea, cJSON *pj, double t0)
{
    cJSON *j = json_report(path, o.out);
    cJSON_AddStringToObject(j, "dtype", llmq_dtype_name(dt));
    cJSON_AddBoolToObject(j, "attention_bias_added", plan->shifted && !m->cfg.o_bias);
    if (eb > 0) {
        cJSON_AddNumberToObject(j, "err_before", eb);
        cJSON_AddNumberToObject(j, "err_after", ea);
    }
    cJSON_AddItemToObject(j, "smooth", pj);
    json_report_done(j, t0, (double)llmq_peak_rss());
}

int cmd_smooth(int argc, char **argv)
{
    memset(&o, 0, sizeof o);
    char *args[1];
    int na, rc = opts_parse(&smooth_spec, argc, argv, args, &na);
    if (rc) return rc == 1 ? 0 : LLMQ_EUSAGE;
    llmq_smooth_opts so;
    if ((rc = check_options(&so))) return rc;
    const char *path = args[0];
    llmq_err err = { 0, "" };
    llmq_model m;
    llmq_stats st;
    llmq_smooth_plan plan;
    llmq_pool *pool = NULL;
    char digest[65], *cl = command_line("smooth", argc, argv), *params = NULL;
    cJSON *pj = NULL;
    memset(&st, 0, sizeof st);
    memset(&plan, 0, sizeof plan);
    double t0 = llmq_now();
    if (!cl) return cmd_failf("smooth", LLMQ_ENOMEM, "out of memory");
    if ((rc = cmd_model_open(&m, path, o.stats, o.out, o.stats_out, &err))) { free(cl); return cmd_fail("smooth", &err); }
    if (m.packed_meta) {
        rc = cmd_failf("smooth", LLMQ_EUNSUPPORTED, "%s: is a packed model; smooth the float checkpoint it came from", path);
        goto out;
    }
    if ((rc = llmq_smooth_refuse_online(&m, &err))) goto fail;
    if ((rc = llmq_stats_load(&st, o.stats, &err)) || (rc = llmq_stats_check_config(&st, &m.cfg, o.stats, &err)) ||
        (rc = llmq_model_digest(&m, digest, &err)))
        goto fail;
    if (strcmp(digest, st.model_digest) != 0) {
        char q[LLMQ_QUOTE_SIZE];
        rc = cmd_failf("smooth", LLMQ_EUSAGE, "%s: statistics were computed on another model (digest %s, %s has %.12s)",
                       o.stats, llmq_quote_n(q, st.model_digest, strnlen(st.model_digest, 12)), path, digest);
        goto out;
    }
    if (!(pool = llmq_pool_new(o.threads, &err))) goto fail;
    so.pool = pool;
    so.stats_path = o.stats;
    if ((rc = llmq_smooth_plan_compute(&m, &st, &so, &plan, &err))) goto fail;
    llmq_dtype dt = m.layers[0].wq.type == LLMQ_W_F32 ? LLMQ_DT_F32 : m.layers[0].wq.type == LLMQ_W_F16 ? LLMQ_DT_F16 : LLMQ_DT_BF16;
    if (o.dtype) dt = !strcmp(o.dtype, "f32") ? LLMQ_DT_F32 : !strcmp(o.dtype, "f16") ? LLMQ_DT_F16 : LLMQ_DT_BF16;

    double eb = 0, ea = 0;
    pj = plan_record(&plan, &so, so.method == LLMQ_SMOOTH_OSPLUS, &eb, &ea);
    if (!(params = cJSON_PrintUnformatted(pj))) { rc = llmq_errorf(&err, LLMQ_ENOMEM, "out of memory"); goto fail; }
    const char *keys[] = { "llmq.smooth", "llmq.command", "llmq.source", "llmq.source_digest", "llmq.stats_text_digest" };
    const char *vals[] = { params, cl, path, digest, st.text_digest };
    if ((rc = llmq_smooth_write(&m, &plan, dt, o.out, keys, vals, 5, &err))) goto fail;
    if (o.stats_out && (rc = save_smoothed_stats(&m, &st, &plan, cl, &err))) goto fail;
    if (o.json) {
        report(path, &m, &plan, dt, eb, ea, pj, t0);
        pj = NULL;
    }
    rc = 0;
    goto out;
fail:
    rc = cmd_fail("smooth", &err);
out:
    cJSON_Delete(pj);
    free(params);
    free(cl);
    llmq_smooth_plan_release(&plan);
    llmq_stats_release(&st);
    llmq_pool_free(pool);
    llmq_model_close(&m);
    return rc;
}
