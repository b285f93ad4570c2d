/* merge.c - `llmq merge`: join the shards `llmq awq --layers` wrote into one
 * packed model, or those of `llmq calibrate --layers` into one statistics file. */
#include <stdio.h>
#include "common.h"
#include "../lib/model.h"
#include "../lib/algo/awq.h"
#include "../lib/algo/awq_shard.h"
#include "../lib/algo/pack.h"
#include "../formats/safetensors.h"
#include "../calib/stats.h"

static struct {
    const char *out;
    int json;
} o;

static opt_def merge_opts[] = {
    OPT_ROW_OUTPUT(o.out, "OUT", "write the packed model to directory OUT, or the statistics to file OUT (required)"),
    OPT_ROW_JSON(o.json),
    OPT_ROW_END,
};

static const cmd_spec merge_spec = {
    "merge", "MODEL SHARD... -o OUT [--json]",
    "Join the shards that llmq awq --layers A:B --propagate fp wrote for MODEL (every\n"
    "layer in exactly one shard, all from one awq command) and pack the model to\n"
    "directory OUT as that awq command without --layers would have: the same bytes.\n"
    "Shards of llmq calibrate --layers A:B join the same way into the statistics file OUT\n"
    "that one calibrate run without --layers writes.",
    "The packed file's llmq.command is that single awq command, writing OUT.\n"
    "See llmq-merge(1).",
    merge_opts, 2, 4096,
};

/* 1 if path is a statistics file (format "llmq-stats"): shards of calibrate. */
static int is_stats(const char *path)
{
    llmq_st_file f;
    llmq_err e = { 0, "" };
    if (llmq_st_open(&f, path, &e)) return 0;   /* the awq reader names what is wrong */
    const char *fmt = llmq_st_meta(&f, "format");
    int yes = fmt && !strcmp(fmt, "llmq-stats");
    llmq_st_close(&f);
    return yes;
}

/* Statistics shards into the file o.out; m is the model they were computed on. */
static int merge_stats(const llmq_model *m, int na, char **args, double t0, llmq_err *err)
{
    llmq_stats st;
    char digest[65];
    memset(&st, 0, sizeof st);
    int rc;
    if ((rc = llmq_stats_join(&st, (const char *const *)args + 1, na - 1, err)) ||
        (rc = llmq_stats_check_config(&st, &m->cfg, args[1], err)) || (rc = llmq_model_digest(m, digest, err)))
        goto out;
    if (strcmp(digest, st.model_digest) != 0) {
        rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: the shards were computed on another model (digest %.12s, %s has %.12s)",
                         args[1], st.model_digest, args[0], digest);
        goto out;
    }
    if ((rc = llmq_stats_save(&st, o.out, err))) goto out;
    if (o.json) {
        cJSON *j = json_report(args[0], o.out);
        cJSON_AddNumberToObject(j, "shards", na - 1);
        cJSON_AddNumberToObject(j, "n_layers", st.n_layers);
        json_report_done(j, t0, -1);
    }
out:
    llmq_stats_release(&st);
    return rc;
}

/* awq shards into the packed model directory o.out. */
static int merge_awq(const llmq_model *m, int na, char **args, double t0, llmq_err *err)
{
    llmq_awq_result res;
    memset(&res, 0, sizeof res);
    cJSON *info = NULL;
    char *cl = NULL, digest[65];
    int rc;
    if (m->packed_meta) {
        rc = llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: is a packed model; merge takes the float model the shards searched", m->path);
        goto out;
    }
    if ((rc = llmq_model_digest(m, digest, err)) ||
        (rc = llmq_awq_shard_join(m, digest, (const char *const *)args + 1, na - 1, &res, &info, err)))
        goto out;
    if (!(cl = awq_merged_command(info, o.out))) {
        rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: the shard does not record its awq command", args[1]);
        goto out;
    }
    rc = awq_write("merge", args[0], m, &res, info, cl, o.out, o.json, t0, 0.0, err);
out:
    free(cl);
    cJSON_Delete(info);
    llmq_awq_release(&res);
    return rc;
}

int cmd_merge(int argc, char **argv)
{
    memset(&o, 0, sizeof o);
    char *args[4096];
    int na, rc = opts_parse(&merge_spec, argc, argv, args, &na);
    if (rc) return rc == 1 ? 0 : LLMQ_EUSAGE;
    if (!o.out) return cmd_failf("merge", LLMQ_EUSAGE, "missing -o OUT");
    int stats = is_stats(args[1]);
    llmq_err err = { 0, "" };
    llmq_model m;
    double t0 = llmq_now();
    if ((rc = llmq_model_open(&m, args[0], &err))) return cmd_fail("merge", &err);
    cmd_inputs in;
    inputs_init(&in);
    inputs_add_model(&in, &m);
    for (int i = 1; i < na; i++) inputs_add(&in, args[i]);
    rc = stats ? inputs_check_file(&in, o.out, &err) : inputs_check_dir(&in, o.out, &err);
    inputs_release(&in);
    if (!rc) rc = stats ? merge_stats(&m, na, args, t0, &err) : merge_awq(&m, na, args, t0, &err);
    if (rc) rc = cmd_fail("merge", &err);
    llmq_model_close(&m);
    return rc;
}
