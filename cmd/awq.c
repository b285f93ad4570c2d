/* awq.c - `llmq awq`: activation-aware weight quantization to INT4 / INT3 into a packed model directory. */
#include <stdio.h>
#include <unistd.h>
#include "common.h"
#include "../lib/model.h"
#include "../lib/eval.h"
#include "../lib/base/fileio.h"
#include "../lib/algo/awq.h"
#include "../lib/algo/gptq.h"
#include "../formats/packed.h"
#include "../calib/data.h"
#include "../lib/algo/pack.h"
#include "../lib/base/blocks.h"

static struct {
    const char *out, *text, *skip;
    int w_bit, group, sym, samples, seqlen, n_grid, no_duo, no_clip, no_clip_qk, seed, search_tokens;
    int stat_windows, loss_windows, threads, json, gptq;
    double gptq_damp;
} o;

static opt_def awq_opts[] = {
    OPT_ROW_OUTPUT(o.out, "DIR", "write the packed model to DIR (required)"),
    { "text", OPT_PATH, &o.text, "PATH", "calibration text: a file, or a directory whose files are all used (required)", NULL, 0, 0, NULL, 0, NULL },
    { "w-bit", OPT_INT, &o.w_bit, "N", "weight bits: 4 (int4) or 3 (int3 codes in the int4 layout)", NULL, 3, 4, NULL, 0, OPT_DEF(LLMQ_AWQ_BITS_DEFAULT) },
    { "group", OPT_INT, &o.group, "N", "group size along the input dimension: 32, 64 or 128", NULL, 32, 128, NULL, 0, OPT_DEF(LLMQ_AWQ_GROUP_DEFAULT) },
    { "sym", OPT_FLAG, &o.sym, NULL, "symmetric quantization, no zero points", NULL, 0, 0, NULL, 0, NULL },
    { "samples", OPT_INT, &o.samples, "N", "calibration windows", NULL, 1, 100000, NULL, 0, "128" },
    { "seqlen", OPT_INT, &o.seqlen, "N", "tokens per calibration window", NULL, 2, 65536, NULL, 0, "512" },
    { "n-grid", OPT_INT, &o.n_grid, "N", "scale search grid: ratios i/N, i = 0..N-1", NULL, 1, 1000, NULL, 0, OPT_DEF(LLMQ_AWQ_N_GRID_DEFAULT) },
    { "no-duo", OPT_FLAG, &o.no_duo, NULL, "search s = x^r only, not also x^r / w^(1-r)", NULL, 0, 0, NULL, 0, NULL },
    { "no-clip", OPT_FLAG, &o.no_clip, NULL, "skip the clipping search", NULL, 0, 0, NULL, 0, NULL },
    { "no-clip-qk", OPT_FLAG, &o.no_clip_qk, NULL, "no clipping search for q_proj and k_proj (as the reference llm-awq)", NULL, 0, 0, NULL, 0, NULL },
    { "search-tokens", OPT_INT, &o.search_tokens, "N", "tokens subsampled for the scale search", NULL, 1, 1 << 24, NULL, 0, OPT_DEF(LLMQ_AWQ_SEARCH_TOKENS_DEFAULT) },
    { "stat-windows", OPT_INT, &o.stat_windows, "N", "windows the statistics pass runs on, 0 for all", NULL, 0, 100000, NULL, 0, OPT_DEF(LLMQ_AWQ_STAT_WINDOWS_DEFAULT) },
    { "loss-windows", OPT_INT, &o.loss_windows, "N", "windows the per-layer RTN/AWQ output loss is measured on", NULL, 0, 100000, NULL, 0, OPT_DEF(LLMQ_AWQ_LOSS_WINDOWS_DEFAULT) },
    { "gptq", OPT_FLAG, &o.gptq, NULL, "round with GPTQ's error compensation on AWQ's grid", NULL, 0, 0, NULL, 0, NULL },
    { "gptq-damp", OPT_DOUBLE, &o.gptq_damp, "F", "GPTQ damping, a fraction of the mean Gram diagonal", NULL, 1e-6, 10, NULL, 0, OPT_DEF(LLMQ_GPTQ_DAMP_DEFAULT) },
    { "seed", OPT_INT, &o.seed, "N", "calibration windows and token subsample", NULL, 0, 2147483647, NULL, 0, "0" },
    OPT_ROW_THREADS(o.threads),
    { "skip", OPT_STRING, &o.skip, "REGEX", "linears whose name matches stay float (scaled and clipped, not quantized)", NULL, 0, 0, NULL, 0, NULL },
    OPT_ROW_JSON(o.json),
    OPT_ROW_END,
};

static const cmd_spec awq_spec = {
    "awq", "MODEL -o DIR --text PATH [--w-bit 4|3] [--group N] [--sym] [options]",
    "Quantize every linear layer of MODEL to group-wise INT4 or INT3 with AWQ\n"
    "(activation-aware scales and clipping searched block by block on calibration\n"
    "text) and write a packed model directory that llmq verify runs directly.",
    "INT3 codes are stored in the int4 layout (4 bits per weight on disk).\n"
    "Every choice is recorded under llmq.params in the packed file.  See llmq-awq(1).",
    awq_opts, 1, 1,
};

static void search_opts(llmq_awq_opts *ao, llmq_pool *pool)
{
    llmq_awq_opts_default(ao);
    ao->q.bits = o.w_bit;
    ao->q.group = o.group;
    ao->q.sym = o.sym;
    ao->n_grid = o.n_grid;
    ao->duo = !o.no_duo;
    ao->clip = !o.no_clip;
    ao->clip_qk = !o.no_clip_qk;
    ao->search_tokens = o.search_tokens;
    ao->stat_windows = o.stat_windows;
    ao->loss_windows = o.loss_windows;
    ao->seed = (uint64_t)o.seed;
    ao->gptq = o.gptq;
    ao->gptq_damp = o.gptq_damp;
    ao->pool = pool;
}

/* --json (taking *record, the awq record), or one line on a terminal. */
static void report(const char *model, const llmq_pack_opts *po, const llmq_pack_stats *st, const llmq_awq_result *res,
                   cJSON **record, double t_search, double secs)
{
    uint64_t rss = llmq_peak_rss();
    if (o.json) {
        char scheme[32];
        llmq_qscheme_name(&po->scheme, scheme, sizeof scheme);
        cJSON *j = json_report(model, o.out);
        cJSON_AddStringToObject(j, "scheme", scheme);
        const llmq_json_num f[] = {
            { "linears_packed", st->linears_packed }, { "bits_per_weight", st->bits_per_weight },
            /* information per weight: codes plus the f16 scale and zero of each group */
            { "effective_bits_per_weight", o.w_bit + (16.0 + (o.sym ? 0.0 : 8.0)) / o.group },
            { "file_bytes", (double)st->bytes }, { "search_seconds", t_search }, { "seconds", secs },
            { "peak_rss_bytes", (double)rss }, { "threads", o.threads },
        };
        llmq_json_add_numbers(j, f, LLMQ_ARRAY_LEN(f));
        llmq_awq_json_add_seconds(*record, res);
        cJSON_AddItemToObject(j, "awq", *record);
        *record = NULL;
        json_emit(j);
    } else if (isatty(2)) {
        fprintf(stderr, "llmq awq: %s: %d linears %s, %.2f bits/weight, %.1f s, peak RSS %.0f MiB\n", o.out,
                st->linears_packed, o.w_bit == 3 ? "int3" : "int4", st->bits_per_weight, secs, (double)rss / 1048576.0);
    }
}

int cmd_awq(int argc, char **argv)
{
    memset(&o, 0, sizeof o);
    char *args[1];
    int na, rc = opts_parse(&awq_spec, argc, argv, args, &na);
    if (rc) return rc == 1 ? 0 : LLMQ_EUSAGE;
    if (!o.out) return cmd_failf("awq", LLMQ_EUSAGE, "missing -o DIR");
    if (!o.text) return cmd_failf("awq", LLMQ_EUSAGE, "missing --text PATH: AWQ needs calibration text");
    if (!llmq_q4_group_ok(o.group))
        return cmd_failf("awq", LLMQ_EUSAGE, "--group must be 32, 64 or 128");

    llmq_err err = { 0, "" };
    llmq_model m;
    llmq_pool *pool = NULL;
    llmq_calib_set cs;
    memset(&cs, 0, sizeof cs);
    llmq_awq_result res;
    memset(&res, 0, sizeof res);
    char *cl = NULL;
    cJSON *extra = NULL;
    double t0 = llmq_now();
    if ((rc = llmq_model_open(&m, args[0], &err))) return cmd_fail("awq", &err);
    if (m.packed_meta) {
        rc = llmq_errorf(&err, LLMQ_EUNSUPPORTED, "%s: is already a packed model; run awq on its float source", m.path);
        goto fail;
    }
    if ((rc = check_outputs(&m, o.text, o.out, NULL, &err)) || (rc = cmd_calib_windows(args[0], o.text, o.samples, o.seqlen, (uint64_t)o.seed, &cs, &err))) goto fail;
    if (!(pool = llmq_pool_new(o.threads, &err))) { rc = err.code; goto fail; }

    llmq_awq_opts ao;
    search_opts(&ao, pool);
    cmd_progress pr;
    progress_init(&pr, "awq layers");
    ao.progress = progress_cb;
    ao.progress_ctx = &pr;
    rc = llmq_awq_run(&m, cs.tokens, cs.samples, cs.seqlen, &ao, &res, &err);
    progress_done(&pr);
    if (rc) goto fail;
    double t_search = llmq_now() - t0;

    if (!(extra = llmq_awq_json(&res))) { rc = llmq_errorf(&err, LLMQ_ENOMEM, "out of memory"); goto fail; }
    cJSON_AddStringToObject(extra, "calib_text", o.text);
    cJSON_AddStringToObject(extra, "calib_text_sha256", cs.text_digest);
    cJSON_AddNumberToObject(extra, "samples", cs.samples);
    cJSON_AddNumberToObject(extra, "seqlen", cs.seqlen);
    llmq_pack_opts po;
    memset(&po, 0, sizeof po);
    po.scheme.format = o.w_bit == 3 ? LLMQ_PACK_INT3 : LLMQ_PACK_INT4;
    po.scheme.group = o.group;
    po.scheme.sym = o.sym;
    cl = command_line("awq", argc, argv);
    po.command = cl;
    po.skip = o.skip;
    po.extra = extra;
    po.provider = llmq_awq_provider;
    po.provider_ctx = &res;
    po.qprovider = llmq_awq_qprovider;
    llmq_pack_stats st;
    if ((rc = llmq_pack_model(&m, &po, o.out, &st, &err))) goto fail;
    report(args[0], &po, &st, &res, &extra, t_search, llmq_now() - t0);
    goto out;
fail:
    rc = cmd_fail("awq", &err);
out:
    cJSON_Delete(extra);
    llmq_awq_release(&res);
    llmq_calib_release(&cs);
    llmq_pool_free(pool);
    free(cl);
    llmq_model_close(&m);
    return rc;
}
