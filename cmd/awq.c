/* awq.c - `llmq awq`: activation-aware weight quantization to INT4 / INT3 or an MX / NV block format
 * into a packed model directory. */
#include <stdio.h>
#include <unistd.h>
#include "common.h"
#include "../lib/model.h"
#include "../lib/eval.h"
#include "../lib/base/fileio.h"
#include "../lib/algo/awq.h"
#include "../lib/algo/awq_shard.h"
#include "../lib/algo/gptq.h"
#include "../formats/packed.h"
#include "../calib/data.h"
#include "../lib/algo/pack.h"
#include "../lib/base/blocks.h"

static struct {
    const char *out, *text, *skip, *propagate, *layers, *act, *format, *mx_scale;
    int w_bit, group, sym, samples, seqlen, n_grid, no_duo, no_clip, no_clip_qk, seed, search_tokens;
    int stat_windows, loss_windows, threads, json, gptq;
    int seen_w_bit, seen_group, seen_mx_scale;
    double gptq_damp;
} o;

static opt_def awq_opts[] = {
    OPT_ROW_OUTPUT(o.out, "DIR", "write the packed model to DIR (required; with --layers, the shard FILE)"),
    { "text", OPT_PATH, &o.text, "PATH", "calibration text: a file, or a directory whose files are all used (required)", NULL, 0, 0, NULL, 0, NULL },
    { "format", OPT_CHOICE, &o.format, NULL, "weight format the scales and clips are searched for and the model is packed in: group-wise int4 (or int3 with --w-bit 3), or a block format (mx: blocks of 32 with an E8M0 scale; nv: blocks of 16 with an E4M3 scale and a tensor scale)", "int4|nvint4|nvfp4|mxfp4|mxint4|mxfp8", 0, 0, NULL, 0, "int4" },
    { "mx-scale", OPT_CHOICE, &o.mx_scale, NULL, "block scale rule of the block formats, as llmq pack: ocp = the spec's, ceil = the smallest scale at which nothing clips, mse = per block the one of the ocp scale and its neighbours with the smallest squared error", "ocp|ceil|mse", 0, 0, &o.seen_mx_scale, 0, "mse" },
    { "w-bit", OPT_INT, &o.w_bit, "N", "int format: weight bits, 4 (int4) or 3 (int3, three bits per code)", NULL, 3, 4, &o.seen_w_bit, 0, OPT_DEF(LLMQ_AWQ_BITS_DEFAULT) },
    { "group", OPT_INT, &o.group, "N", "int format: group size along the input dimension, 32, 64 or 128", NULL, 32, 128, &o.seen_group, 0, OPT_DEF(LLMQ_AWQ_GROUP_DEFAULT) },
    { "sym", OPT_FLAG, &o.sym, NULL, "int format: symmetric quantization, no zero points", NULL, 0, 0, NULL, 0, NULL },
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
    { "propagate", OPT_CHOICE, &o.propagate, NULL, "each layer's calibration inputs: the outputs of the quantized layers below, or of the float model's (fp, as llm-awq; needed by --layers)", "quant|fp", 0, 0, NULL, 0, "quant" },
    { "act", OPT_CHOICE, &o.act, NULL, "inputs of the float passes' linears: f32, or rounded to bf16 for the bf16 dot product (AVX512-BF16)", "f32|bf16", 0, 0, NULL, 0, "f32" },
    { "layers", OPT_STRING, &o.layers, "A:B", "search layers A..B-1 only and write them to -o FILE as a shard for llmq merge (needs --propagate fp)", NULL, 0, 0, NULL, 0, NULL },
    { "seed", OPT_INT, &o.seed, "N", "calibration windows and token subsample", NULL, 0, 2147483647, NULL, 0, "0" },
    OPT_ROW_THREADS(o.threads),
    { "skip", OPT_STRING, &o.skip, "REGEX", "linears whose name matches stay float (scaled and clipped, not quantized)", NULL, 0, 0, NULL, 0, NULL },
    OPT_ROW_JSON(o.json),
    OPT_ROW_END,
};

static const cmd_spec awq_spec = {
    "awq", "MODEL -o DIR --text PATH [--format F [--mx-scale R]] [--w-bit 4|3] [--group N] [--sym] [options]",
    "Quantize every linear layer of MODEL to group-wise INT4 or INT3, or to an MX /\n"
    "NV block format, with AWQ (activation-aware scales and clipping searched block\n"
    "by block on calibration text, for the chosen format) and write a packed model\n"
    "directory that llmq verify runs directly.",
    "INT3 is written three bits per code, as llmq pack --format int3 writes it.\n"
    "With a block format the searches fake-quantize with that format (the clips per\n"
    "block) and the model is packed as llmq pack --format F --mx-scale R packs the\n"
    "scaled, clipped weights; --w-bit, --group and --sym are for int4 only.\n"
    "Every choice is recorded under llmq.params in the packed file.  With --propagate fp\n"
    "the layers can be searched in ranges (--layers A:B, each its own process or machine)\n"
    "and joined by llmq merge into the bytes a single run gives.  See llmq-awq(1).",
    awq_opts, 1, 1,
};

/* The block format --format names, or LLMQ_W_F32 for int4. */
static llmq_wtype format_btype(void)
{
    for (int t = LLMQ_W_MXFP4; t <= LLMQ_W_MXFP8; t++)
        if (!strcmp(o.format, llmq_block_name((llmq_wtype)t))) return (llmq_wtype)t;
    return LLMQ_W_F32;
}

static void search_opts(llmq_awq_opts *ao)
{
    llmq_awq_opts_default(ao);
    ao->q.bits = o.w_bit;
    ao->q.group = o.group;
    ao->q.sym = o.sym;
    llmq_wtype bt = format_btype();
    if (llmq_wtype_is_block(bt)) {
        ao->q.btype = bt;
        ao->q.rule = !strcmp(o.mx_scale, "ceil") ? LLMQ_MX_SCALE_CEIL : !strcmp(o.mx_scale, "mse") ? LLMQ_MX_SCALE_MSE
                   : LLMQ_MX_SCALE_OCP;
        ao->q.bits = bt == LLMQ_W_MXFP8 ? 8 : 4;
        ao->q.group = llmq_block_size(bt);
        ao->q.sym = 1;
    }
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
    ao->propagate_fp = !strcmp(o.propagate, "fp");
    ao->act_bf16 = !strcmp(o.act, "bf16");
}

/* --json (taking *record, the awq record), or one line on a terminal. */
static void report(const char *cmd, const char *model, const char *out, int json, const llmq_pack_opts *po,
                   const llmq_pack_stats *st, const llmq_awq_result *res, cJSON **record, double t_search, double secs)
{
    uint64_t rss = llmq_peak_rss();
    const llmq_awq_qcfg *q = &res->o.q;
    if (json) {
        char scheme[32];
        llmq_qscheme_name(&po->scheme, scheme, sizeof scheme);
        cJSON *j = json_report(model, out);
        cJSON_AddStringToObject(j, "scheme", scheme);
        /* information per weight: codes plus the f16 scale and zero of each
         * group, or the scale byte of each block (less the NV tensor scale) */
        double eff = llmq_awq_is_block(q) ? q->bits + 8.0 / q->group : q->bits + (16.0 + (q->sym ? 0.0 : 8.0)) / q->group;
        const llmq_json_num f[] = {
            { "linears_packed", st->linears_packed }, { "bits_per_weight", st->bits_per_weight },
            { "effective_bits_per_weight", eff },
            { "file_bytes", (double)st->bytes }, { "search_seconds", t_search }, { "seconds", secs },
            { "peak_rss_bytes", (double)rss }, { "threads", llmq_pool_size(res->o.pool) },
        };
        llmq_json_add_numbers(j, f, LLMQ_ARRAY_LEN(f));
        llmq_awq_json_add_seconds(*record, res);
        cJSON_AddItemToObject(j, "awq", *record);
        *record = NULL;
        json_emit(j);
    } else if (isatty(2)) {
        fprintf(stderr, "llmq %s: %s: %d linears %s, %.2f bits/weight, %.1f s, peak RSS %.0f MiB\n", cmd, out,
                st->linears_packed, llmq_awq_is_block(q) ? llmq_block_name(q->btype) : q->bits == 3 ? "int3" : "int4",
                st->bits_per_weight, secs, (double)rss / 1048576.0);
    }
}

/* The command of a single run that a set of shards adds up to: argv less
 * --layers and its value and --json, the output's value blanked (llmq merge writes
 * its own there); {"argv": [...], "output_at": i, "output_prefix": "-o"
 * value's prefix ("" or "--output=")}. */
static cJSON *single_run_argv(int argc, char **argv)
{
    cJSON *j = cJSON_CreateObject(), *a = j ? cJSON_AddArrayToObject(j, "argv") : NULL;
    if (!a) { cJSON_Delete(j); return NULL; }
    int n = 0, only_args = 0;
    for (int i = 0; i < argc; i++) {
        const char *t = argv[i];
        if (i == 0 || only_args || t[0] != '-' || !strcmp(t, "-")) {
            cJSON_AddItemToArray(a, cJSON_CreateString(t)); n++;
            continue;
        }
        if (!strcmp(t, "--")) { only_args = 1; cJSON_AddItemToArray(a, cJSON_CreateString(t)); n++; continue; }
        const opt_def *d = NULL;
        const char *eq = t[1] == '-' ? strchr(t, '=') : NULL;
        size_t nl = eq ? (size_t)(eq - t - 2) : strlen(t + 2);
        for (const opt_def *x = awq_opts; x->type != OPT_END && !d; x++)
            if (t[1] == '-' ? strlen(x->name) == nl && !strncmp(x->name, t + 2, nl) : (x->alias && t[1] == x->alias && !t[2])) d = x;
        int takes = d && d->type != OPT_FLAG && !eq;
        if (d && (d->dest == (void *)&o.layers || d->dest == (void *)&o.json)) { i += takes; continue; }   /* not the search's */
        if (d && d->dest == (void *)&o.out) {
            cJSON_AddNumberToObject(j, "output_at", eq ? n : n + 1);
            cJSON_AddStringToObject(j, "output_prefix", eq ? "--output=" : "");
            cJSON_AddItemToArray(a, cJSON_CreateString(eq ? "--output=" : t)); n++;
            if (takes && i + 1 < argc) { cJSON_AddItemToArray(a, cJSON_CreateString("")); n++; i++; }
            continue;
        }
        cJSON_AddItemToArray(a, cJSON_CreateString(t)); n++;
        if (takes && i + 1 < argc) { cJSON_AddItemToArray(a, cJSON_CreateString(argv[++i])); n++; }
    }
    return j;
}

char *awq_merged_command(const cJSON *info, const char *out)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(info, "argv"), *at = cJSON_GetObjectItemCaseSensitive(info, "output_at"),
                *pre = cJSON_GetObjectItemCaseSensitive(info, "output_prefix");
    int n = cJSON_GetArraySize(a);
    if (!cJSON_IsArray(a) || n < 1 || n > 100000 || !cJSON_IsNumber(at) || !cJSON_IsString(pre) || at->valuedouble < 0 ||
        at->valuedouble >= n)
        return NULL;
    char **v = calloc((size_t)n, sizeof *v);
    char *cl = NULL;
    int i = 0, ok = v != NULL;
    for (const cJSON *e = a->child; e && ok; e = e->next, i++) {
        if (!cJSON_IsString(e)) { ok = 0; break; }
        if (i != (int)at->valuedouble) { v[i] = strdup(e->valuestring); ok = v[i] != NULL; continue; }
        size_t len = strlen(pre->valuestring) + strlen(out) + 1;
        if ((v[i] = malloc(len))) snprintf(v[i], len, "%s%s", pre->valuestring, out);
        ok = v[i] != NULL;
    }
    if (ok) cl = command_line("awq", n, v);
    for (i = 0; v && i < n; i++) free(v[i]);
    free(v);
    return cl;
}

int awq_write(const char *cmd, const char *model_arg, const llmq_model *m, llmq_awq_result *res, const cJSON *info,
              const char *command, const char *out, int json, double t0, double t_search, llmq_err *err)
{
    cJSON *extra = llmq_awq_json(res);
    if (!extra) return llmq_errorf(err, LLMQ_ENOMEM, "out of memory");
    static const char *keys[] = { "calib_text", "calib_text_sha256", "samples", "seqlen" };
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(keys); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(info, keys[i]);
        if (!(cJSON_IsString(v) || cJSON_IsNumber(v))) {
            cJSON_Delete(extra);
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: the calibration record lacks '%s'", model_arg, keys[i]);
        }
        cJSON_AddItemToObject(extra, keys[i], cJSON_Duplicate(v, 0));
    }
    const cJSON *skip = cJSON_GetObjectItemCaseSensitive(info, "skip");
    llmq_pack_opts po;
    memset(&po, 0, sizeof po);
    if (llmq_awq_is_block(&res->o.q)) {
        po.scheme.format = LLMQ_PACK_BLOCK;
        po.scheme.btype = res->o.q.btype;
        po.scheme.group = res->o.q.group;
        po.scheme.mx_rule = res->o.q.rule;
    } else {
        po.scheme.format = res->o.q.bits == 3 ? LLMQ_PACK_INT3 : LLMQ_PACK_INT4;
        po.scheme.group = res->o.q.group;
        po.scheme.sym = res->o.q.sym;
    }
    po.command = command;
    po.skip = cJSON_IsString(skip) ? skip->valuestring : NULL;
    po.extra = extra;
    po.provider = llmq_awq_provider;
    po.provider_ctx = res;
    po.qprovider = llmq_awq_qprovider;
    po.bprovider = llmq_awq_bprovider;
    llmq_pack_stats st;
    int rc = llmq_pack_model(m, &po, out, &st, err);
    if (!rc) report(cmd, model_arg, out, json, &po, &st, res, &extra, t_search, llmq_now() - t0);
    cJSON_Delete(extra);
    return rc;
}

/* What the packed file records of the calibration, and what shards carry
 * to llmq merge. */
static cJSON *calib_info(const llmq_calib_set *cs, int argc, char **argv)
{
    cJSON *j = single_run_argv(argc, argv);
    if (!j) return NULL;
    cJSON_AddStringToObject(j, "calib_text", o.text);
    cJSON_AddStringToObject(j, "calib_text_sha256", cs->text_digest);
    cJSON_AddNumberToObject(j, "samples", cs->samples);
    cJSON_AddNumberToObject(j, "seqlen", cs->seqlen);
    if (o.skip) cJSON_AddStringToObject(j, "skip", o.skip);
    return j;
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
    if (llmq_wtype_is_block(format_btype()) && (o.seen_w_bit || o.seen_group || o.sym))
        return cmd_failf("awq", LLMQ_EUSAGE, "--w-bit, --group and --sym are for --format int4; %s has its own block "
                         "(%d) and symmetric scales", o.format, llmq_block_size(format_btype()));
    if (!llmq_wtype_is_block(format_btype()) && o.seen_mx_scale)
        return cmd_failf("awq", LLMQ_EUSAGE, "--mx-scale is for the block formats, not %s", o.format);
    llmq_awq_opts ao;
    search_opts(&ao);
    if (o.layers && llmq_parse_range(o.layers, &ao.layer_lo, &ao.layer_hi))
        return cmd_failf("awq", LLMQ_EUSAGE, "--layers must be A:B with 0 <= A < B (layers A..B-1)");
    if (o.layers && !ao.propagate_fp)
        return cmd_failf("awq", LLMQ_EUSAGE, "--layers needs --propagate fp (each range then starts from the float model)");
    if (o.layers && !strcmp(o.out, "-")) return cmd_failf("awq", LLMQ_EUSAGE, "--layers writes a shard FILE, not stdout");

    llmq_err err = { 0, "" };
    llmq_model m;
    llmq_pool *pool = NULL;
    llmq_calib_set cs;
    memset(&cs, 0, sizeof cs);
    llmq_awq_result res;
    memset(&res, 0, sizeof res);
    char *cl = NULL;
    cJSON *info = NULL;
    double t0 = llmq_now();
    if ((rc = llmq_model_open(&m, args[0], &err))) return cmd_fail("awq", &err);
    if (m.packed_meta) {
        rc = llmq_errorf(&err, LLMQ_EUNSUPPORTED, "%s: is already a packed model; run awq on its float source", m.path);
        goto fail;
    }
    if ((rc = check_outputs(&m, o.text, o.layers ? NULL : o.out, o.layers ? o.out : NULL, &err)) ||
        (rc = cmd_calib_windows(args[0], o.text, o.samples, o.seqlen, (uint64_t)o.seed, &cs, &err))) goto fail;
    if (!(pool = llmq_pool_new(o.threads, &err))) { rc = err.code; goto fail; }
    ao.pool = pool;
    cmd_progress pr;
    progress_init(&pr, "awq layers");
    ao.progress = progress_cb;
    ao.progress_ctx = &pr;
    rc = llmq_awq_run(&m, cs.tokens, cs.samples, cs.seqlen, &ao, &res, &err);
    progress_done(&pr);
    if (rc) goto fail;
    double t_search = llmq_now() - t0;
    if (!(info = calib_info(&cs, argc, argv))) { rc = llmq_errorf(&err, LLMQ_ENOMEM, "out of memory"); goto fail; }
    if (o.layers) {
        char digest[65];   /* after the run: the run refuses a range outside the model first */
        if ((rc = llmq_model_digest(&m, digest, &err)) || (rc = llmq_awq_shard_save(&res, digest, info, o.out, &err)))
            goto fail;
        if (o.json) {
            cJSON *j = json_report(args[0], o.out);
            cJSON_AddStringToObject(j, "layers", o.layers);
            llmq_json_num f[] = { { "search_seconds", t_search }, { "peak_rss_bytes", (double)llmq_peak_rss() },
                                  { "threads", o.threads } };
            llmq_json_add_numbers(j, f, LLMQ_ARRAY_LEN(f));
            json_emit(j);
        }
        goto out;
    }
    /* the command less --json, as llmq merge records it for shards */
    if (!(cl = awq_merged_command(info, o.out))) { rc = llmq_errorf(&err, LLMQ_ENOMEM, "out of memory"); goto fail; }
    if ((rc = awq_write("awq", args[0], &m, &res, info, cl, o.out, o.json, t0, t_search, &err))) goto fail;
    goto out;
fail:
    rc = cmd_fail("awq", &err);
out:
    cJSON_Delete(info);
    llmq_awq_release(&res);
    llmq_calib_release(&cs);
    llmq_pool_free(pool);
    free(cl);
    llmq_model_close(&m);
    return rc;
}
