/* calibrate.c - `llmq calibrate`: activation statistics on calibration text. */
#include <math.h>
#include <stdio.h>
#include <unistd.h>
#include "common.h"
#include "../lib/model.h"
#include "../lib/runner.h"
#include "../lib/eval.h"
#include "../lib/base/fileio.h"
#include "../formats/tokenizer.h"
#include "../formats/packed.h"
#include "../calib/data.h"
#include "../calib/stats.h"
#include "../calib/imatrix.h"
#include "../lib/algo/pack.h"

static struct {
    const char *text, *out, *imatrix, *inspect, *act, *layers;
    int samples, seqlen, keep, kv_keep, threads, json, top;
    long long seed_ll;
    double seed_d;
} o;

static opt_def calibrate_opts[] = {
    { "text", OPT_PATH, &o.text, "PATH", "calibration text: a file, or a directory whose files are all used", NULL, 0, 0, NULL, 0, NULL },
    { "samples", OPT_INT, &o.samples, "N", "windows to draw", NULL, 1, 1 << 20, NULL, 0, "128" },
    { "seqlen", OPT_INT, &o.seqlen, "N", "tokens per window", NULL, 2, 1 << 20, NULL, 0, "512" },
    { "seed", OPT_DOUBLE, &o.seed_d, "N", "seed of the window sampler, an integer 0..2^53", NULL, 0, 9007199254740992.0, NULL, 0, "0" },
    { "keep", OPT_INT, &o.keep, "N", "token rows kept per linear input for smooth's searches", NULL, 0, 1 << 16, NULL, 0, "256" },
    { "kv-keep", OPT_INT, &o.kv_keep, "N", "K and V rows kept per layer, past the first 4 positions of each window (the KV cache's outlier ranges)", NULL, 0, 1 << 20, NULL, 0, "2048" },
    OPT_ROW_OUTPUT(o.out, "FILE", "write the statistics to FILE (safetensors)"),
    { "imatrix-out", OPT_PATH, &o.imatrix, "FILE", "write llama.cpp's importance matrix (GGUF) to FILE", NULL, 0, 0, NULL, 0, NULL },
    { "inspect", OPT_PATH, &o.inspect, "FILE", "print a per-layer outlier summary of a statistics file", NULL, 0, 0, NULL, 0, NULL },
    { "top", OPT_INT, &o.top, "N", "channels listed per site by --inspect", NULL, 1, 1 << 20, NULL, 0, "4" },
    { "act", OPT_CHOICE, &o.act, NULL, "linear inputs of the forward: f32, or rounded to bf16 for the bf16 dot product (AVX512-BF16; the statistics are of the f32 inputs)", "f32|bf16", 0, 0, NULL, 0, "f32" },
    { "layers", OPT_STRING, &o.layers, "A:B", "record layers A..B-1 only, a shard for llmq merge (the forward stops after layer B-1)", NULL, 0, 0, NULL, 0, NULL },
    OPT_ROW_THREADS(o.threads),
    OPT_ROW_JSON(o.json),
    OPT_ROW_END,
};

static const cmd_spec calibrate_spec = {
    "calibrate", "MODEL --text PATH {-o FILE | --imatrix-out FILE} [options] | --inspect FILE",
    "Run MODEL in fp32 on calibration windows drawn from PATH and record, for the input of\n"
    "every linear layer, per-channel absmax, min, max, mean |x|, sum, sum of squares and the\n"
    "token count, plus per-head absmax of K (before and after RoPE) and of V.",
    "Window i is drawn by a splitmix64 stream seeded by --seed: a file with probability\n"
    "proportional to its token count, then a uniform start.  Same inputs and seed give a\n"
    "byte-identical file.  --imatrix-out writes the sums of squares and token counts as the\n"
    "importance matrix llama-quantize reads (GGUF, as llama-imatrix writes it).  See\n"
    "llmq-calibrate(1).  --layers A:B writes a shard of layers A..B-1; shards of one run,\n"
    "run as separate processes, join with llmq merge into the file a single run writes.",
    calibrate_opts, 0, 1,
};

/* Median of absmax over a site's channels (copy + nth element by sorting). */
static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static int inspect(const char *path)
{
    llmq_err err = { 0, "" };
    llmq_stats s;
    if (llmq_stats_load(&s, path, &err)) return cmd_fail("calibrate", &err);
    int maxdim = 0;
    for (int i = 0; i < s.n_layers * LLMQ_SITE_COUNT; i++) maxdim = LLMQ_MAX(maxdim, s.site[i].dim);
    float *tmp = malloc((size_t)maxdim * sizeof(float));
    int *idx = malloc((size_t)maxdim * sizeof(int));
    if (!tmp || !idx) { free(tmp); free(idx); llmq_stats_release(&s); return cmd_failf("calibrate", LLMQ_ENOMEM, "out of memory"); }
    cJSON *j = o.json ? cJSON_CreateObject() : NULL, *arr = NULL;
    if (j) {
        cJSON_AddStringToObject(j, "stats", path);
        cJSON_AddStringToObject(j, "model_digest", s.model_digest);
        cJSON_AddStringToObject(j, "text_digest", s.text_digest);
        cJSON_AddNumberToObject(j, "samples", s.samples);
        cJSON_AddNumberToObject(j, "seqlen", s.seqlen);
        cJSON_AddNumberToObject(j, "seed", (double)s.seed);
        cJSON_AddNumberToObject(j, "tokens", (double)s.tokens);
        arr = cJSON_AddArrayToObject(j, "sites");
    } else {
        printf("stats   %s: %d layers, %" PRId64 " tokens (%d x %d, seed %" PRIu64 ")%s%s\n", path, s.n_layers, s.tokens,
               s.samples, s.seqlen, s.seed, s.derived_by[0] ? ", derived by " : "", s.derived_by);
        printf("%-5s %-6s %10s %10s %8s  %s\n", "layer", "site", "median", "absmax", "max/med", "top channels (absmax/median)");
    }
    for (int l = 0; l < s.n_layers; l++)
        for (int k = 0; k <= LLMQ_SITE_DOWN; k++) {
            const llmq_site_stats *q = &s.site[l * LLMQ_SITE_COUNT + k];
            memcpy(tmp, q->absmax, (size_t)q->dim * sizeof(float));
            qsort(tmp, (size_t)q->dim, sizeof(float), cmp_float);
            float med = tmp[q->dim / 2], mx = tmp[q->dim - 1];
            /* top channels by absmax, ties by index */
            int ntop = LLMQ_MIN(o.top, q->dim);
            for (int t = 0; t < ntop; t++) {
                int best = -1;
                for (int c = 0; c < q->dim; c++) {
                    int used = 0;
                    for (int u = 0; u < t; u++) used |= idx[u] == c;
                    if (!used && (best < 0 || q->absmax[c] > q->absmax[best])) best = c;
                }
                idx[t] = best;
            }
            double ratio = med > 0 ? (double)mx / med : 0.0;
            if (j) {
                cJSON *e = cJSON_CreateObject();
                cJSON_AddNumberToObject(e, "layer", l);
                cJSON_AddStringToObject(e, "site", llmq_site_name((llmq_site)k));
                cJSON_AddNumberToObject(e, "median_absmax", med);
                cJSON_AddNumberToObject(e, "absmax", mx);
                cJSON_AddNumberToObject(e, "outlier_ratio", ratio);
                cJSON *tc = cJSON_AddArrayToObject(e, "top_channels");
                for (int t = 0; t < ntop; t++) cJSON_AddItemToArray(tc, cJSON_CreateNumber(idx[t]));
                cJSON_AddItemToArray(arr, e);
            } else {
                printf("%-5d %-6s %10.4g %10.4g %8.1f ", l, llmq_site_name((llmq_site)k), (double)med, (double)mx, ratio);
                for (int t = 0; t < ntop; t++)
                    printf(" %d(%.1f)", idx[t], med > 0 ? (double)q->absmax[idx[t]] / med : 0.0);
                printf("\n");
            }
        }
    if (j) json_emit(j);
    free(tmp);
    free(idx);
    llmq_stats_release(&s);
    return 0;
}

/* A non-finite activation anywhere is an error naming the layer and site. */
static int check_finite(const llmq_stats *st, const char *path, llmq_err *err)
{
    for (int i = 0; i < st->n_layers * LLMQ_SITE_COUNT; i++)
        for (int j = 0; j < st->site[i].dim; j++)
            if (!isfinite(st->site[i].absmax[j]) || !isfinite(st->site[i].sumsq[j]))
                return llmq_errorf(err, LLMQ_ENONFINITE, "%s: layer %d site '%s' produced a non-finite activation",
                                   path, i / LLMQ_SITE_COUNT, llmq_site_name((llmq_site)(i % LLMQ_SITE_COUNT)));
    return LLMQ_OK;
}

static void report_json(const char *path, const llmq_model *m, const llmq_calib_set *cs, const llmq_stats *st,
                        uint64_t seed, double secs)
{
    cJSON *j = json_report(path, o.out);
    if (o.layers) cJSON_AddStringToObject(j, "layers", o.layers);
    if (o.imatrix) cJSON_AddStringToObject(j, "imatrix", o.imatrix);
    cJSON_AddStringToObject(j, "model_digest", st->model_digest);
    cJSON_AddStringToObject(j, "text_digest", st->text_digest);
    const llmq_json_num f[] = {
        { "text_files", cs->n_files }, { "text_tokens", (double)cs->text_tokens }, { "samples", o.samples },
        { "seqlen", o.seqlen }, { "seed", (double)seed }, { "tokens", (double)st->tokens }, { "keep", o.keep },
        { "threads", o.threads }, { "seconds", secs }, { "tokens_per_s", (double)st->tokens / secs },
        { "model_file_bytes", (double)llmq_model_file_bytes(m) }, { "peak_rss_bytes", (double)llmq_peak_rss() },
    };
    llmq_json_add_numbers(j, f, LLMQ_ARRAY_LEN(f));
    json_emit(j);
}

int cmd_calibrate(int argc, char **argv)
{
    memset(&o, 0, sizeof o);
    char *args[1];
    int na, rc = opts_parse(&calibrate_spec, argc, argv, args, &na);
    if (rc) return rc == 1 ? 0 : LLMQ_EUSAGE;
    if (o.seed_d != floor(o.seed_d)) return cmd_failf("calibrate", LLMQ_EUSAGE, "--seed must be an integer");
    if (o.inspect) {
        if (na) return cmd_failf("calibrate", LLMQ_EUSAGE, "--inspect takes no MODEL");
        return inspect(o.inspect);
    }
    if (na != 1) return cmd_failf("calibrate", LLMQ_EUSAGE, "missing MODEL");
    if (!o.text) return cmd_failf("calibrate", LLMQ_EUSAGE, "missing --text PATH");
    if (!o.out && !o.imatrix) return cmd_failf("calibrate", LLMQ_EUSAGE, "missing -o FILE or --imatrix-out FILE");
    if (o.imatrix && !strcmp(o.imatrix, "-") && ((o.out && !strcmp(o.out, "-")) || o.json))
        return cmd_failf("calibrate", LLMQ_EUSAGE, "--imatrix-out - and %s both write stdout", o.json ? "--json" : "-o -");
    int lo = 0, hi = 0;
    if (o.layers && llmq_parse_range(o.layers, &lo, &hi))
        return cmd_failf("calibrate", LLMQ_EUSAGE, "--layers must be A:B with 0 <= A < B (layers A..B-1)");
    if (o.layers && o.imatrix)
        return cmd_failf("calibrate", LLMQ_EUSAGE, "--imatrix-out needs every layer: write shards with -o, merge them, then run calibrate without --layers");
    if (o.imatrix && same_output(o.out, o.imatrix))
        return cmd_failf("calibrate", LLMQ_EUSAGE, "%s: given as both -o and --imatrix-out", o.imatrix);
    uint64_t seed = (uint64_t)o.seed_d;
    const char *path = args[0];
    llmq_err err = { 0, "" };
    llmq_model m;
    llmq_pool *pool = NULL;
    llmq_runner *run = NULL;
    llmq_calib_set cs;
    llmq_stats st;
    memset(&cs, 0, sizeof cs);
    memset(&st, 0, sizeof st);
    double t0 = llmq_now();

    if ((rc = cmd_model_open(&m, path, o.text, NULL, o.out, &err))) return cmd_fail("calibrate", &err);
    if ((rc = check_outputs(&m, o.text, NULL, o.imatrix, &err))) goto fail;
    if ((rc = cmd_calib_windows(path, o.text, o.samples, o.seqlen, seed, &cs, &err))) goto fail;
    if (o.layers && hi > m.cfg.n_layers) {
        rc = llmq_errorf(&err, LLMQ_EUSAGE, "--layers %s: %s has %d layers", o.layers, path, m.cfg.n_layers);
        goto fail;
    }
    if ((rc = llmq_stats_init(&st, &m.cfg, o.keep, o.samples, o.seqlen, seed, &err))) goto fail;
    if ((rc = llmq_stats_keep_kv(&st, o.kv_keep, &err))) goto fail;
    if (o.layers && (rc = llmq_stats_set_layers(&st, lo, hi, &err))) goto fail;
    if ((rc = llmq_model_digest(&m, st.model_digest, &err))) goto fail;
    memcpy(st.text_digest, cs.text_digest, sizeof st.text_digest);
    if (!(pool = llmq_pool_new(o.threads, &err))) goto fail;
    if ((rc = llmq_runner_new(&run, &m, o.seqlen, pool, &err))) goto fail;
    llmq_runner_observe(run, llmq_stats_observe, &st);
    llmq_runner_release_layers(run, 1);   /* resident: one layer of the model at a time */
    if (o.layers && (rc = llmq_runner_stop_after(run, hi, &err))) goto fail;
    if (!strcmp(o.act, "bf16")) {
        if ((rc = llmq_runner_set_act(run, LLMQ_ACT_BF16, &err))) goto fail;
        snprintf(st.act, sizeof st.act, "bf16");
    }
    cmd_progress pr;
    progress_init(&pr, "calibrate windows");
    for (int w = 0; w < o.samples; w++) {
        llmq_stats_begin_window(&st, w);
        if ((rc = llmq_runner_forward(run, cs.tokens + (size_t)w * o.seqlen, o.seqlen, 0, NULL, 0, &err))) {
            progress_done(&pr);
            goto fail;
        }
        if (pr.tty) {
            double el = llmq_now() - pr.t0;
            fprintf(stderr, "\rcalibrate: window %d/%d (%d layers each), %.0f tok/s, ETA %.0fs   ", w + 1, o.samples,
                    o.layers ? hi : m.cfg.n_layers, (double)(w + 1) * o.seqlen / el, el / (w + 1) * (o.samples - w - 1));
            pr.shown = 1;
        }
    }
    progress_done(&pr);
    llmq_stats_finish(&st);
    if ((rc = check_finite(&st, path, &err))) goto fail;
    if (o.out && (rc = llmq_stats_save(&st, o.out, &err))) goto fail;
    if (o.imatrix && (rc = llmq_imatrix_save(&st, o.text, o.imatrix, &err))) goto fail;
    if (o.json) report_json(path, &m, &cs, &st, seed, llmq_now() - t0);
    rc = 0;
    goto out;
fail:
    rc = cmd_fail("calibrate", &err);
out:
    llmq_runner_free(run);
    llmq_pool_free(pool);
    llmq_calib_release(&cs);
    llmq_stats_release(&st);
    llmq_model_close(&m);
    return rc;
}
