/* verify.c - `llmq verify`: the reference CPU runner's report on a model. */
#include <math.h>
#include <stdio.h>
#include "common.h"
#include "../lib/model.h"
#include "../lib/runner.h"
#include "../lib/eval.h"
#include "../lib/fileio.h"
#include "../formats/tokenizer.h"
#include "../formats/safetensors.h"

static struct {
    const char *text, *ids, *protocol, *logits_out, *gen;
    int ctx, max_windows, json, n, bench, threads;
} o;

static opt_def verify_opts[] = {
    { "text", OPT_STRING, &o.text, "FILE", "score perplexity on this text file ('-' = stdin)", NULL, 0, 0, NULL },
    { "ids", OPT_STRING, &o.ids, "FILE", "score perplexity on int32 LE token ids instead of text", NULL, 0, 0, NULL },
    { "ctx", OPT_INT, &o.ctx, "N", "window length in tokens (default 512)", NULL, 2, 1 << 20, NULL },
    { "protocol", OPT_CHOICE, &o.protocol, NULL, "perplexity protocol (default full)", "full|llamacpp", 0, 0, NULL },
    { "max-windows", OPT_INT, &o.max_windows, "N", "score at most N windows (default all)", NULL, 1, 1 << 30, NULL },
    { "logits-out", OPT_STRING, &o.logits_out, "FILE", "write the first window's fp32 logits as safetensors", NULL, 0, 0, NULL },
    { "gen", OPT_STRING, &o.gen, "PROMPT", "greedy generation from PROMPT", NULL, 0, 0, NULL },
    { "n", OPT_INT, &o.n, "N", "tokens to generate with --gen (default 32)", NULL, 1, 1 << 20, NULL },
    { "bench", OPT_FLAG, &o.bench, NULL, "measure prefill (512-token window) and decode (128 after 128) tok/s", NULL, 0, 0, NULL },
    { "threads", OPT_INT, &o.threads, "N", "worker threads (default 2)", NULL, 1, 256, NULL },
    { "json", OPT_FLAG, &o.json, NULL, "print one JSON object on stdout", NULL, 0, 0, NULL },
    { NULL, OPT_END, NULL, NULL, NULL, NULL, 0, 0, NULL },
};

static const cmd_spec verify_spec = {
    "verify", "MODEL [--text FILE | --ids FILE] [options]",
    "Load MODEL (a directory, a .safetensors file or an index .json, with config.json and\n"
    "tokenizer.json beside it), check every tensor, and report what was asked:\n"
    "perplexity, greedy generation, speed.",
    "Protocols: 'full' scores tokens 2..ctx of consecutive non-overlapping windows (the\n"
    "protocol of the models' reference/ref.json); 'llamacpp' scores the second half of\n"
    "each window like llama.cpp's llama-perplexity.",
    verify_opts, 1, 1,
};

static int write_logits(const char *path, const int32_t *ids, int ctx, int vocab, const float *logits, llmq_err *err)
{
    llmq_st_writer *w = llmq_st_writer_new(err);
    if (!w) return err->code;
    int64_t ls[2] = { ctx, vocab }, is[1] = { ctx };
    int rc = llmq_st_writer_add(w, "logits", LLMQ_DT_F32, 2, ls, logits, err);
    if (!rc) rc = llmq_st_writer_add(w, "input_ids", LLMQ_DT_I32, 1, is, ids, err);
    if (!rc) rc = llmq_st_writer_meta(w, "producer", "llmq verify " LLMQ_VERSION, err);
    if (!rc) rc = llmq_st_writer_finish(w, path, err);
    llmq_st_writer_free(w);
    return rc;
}

int cmd_verify(int argc, char **argv)
{
    memset(&o, 0, sizeof o);
    o.ctx = 512;
    o.protocol = "full";
    o.n = 32;
    o.threads = 2;
    char *args[1];
    int na, rc = opts_parse(&verify_spec, argc, argv, args, &na);
    if (rc) return rc == 1 ? 0 : LLMQ_EUSAGE;
    if (o.text && o.ids) return cmd_failf("verify", LLMQ_EUSAGE, "--text and --ids exclude each other");
    if (o.logits_out && !o.text && !o.ids)
        return cmd_failf("verify", LLMQ_EUSAGE, "--logits-out needs --text or --ids");
    const char *path = args[0];
    llmq_err err = { 0, "" };
    llmq_model m;
    llmq_tok *tok = NULL;
    llmq_pool *pool = NULL;
    llmq_runner *run = NULL;
    int32_t *ids = NULL, *gen_ids = NULL;
    size_t n_ids = 0;
    char *dir = NULL, *gen_text = NULL;
    float *first_logits = NULL;
    llmq_ppl_protocol proto = strcmp(o.protocol, "full") == 0 ? LLMQ_PPL_FULL : LLMQ_PPL_LLAMACPP;
    llmq_ppl_result ppl;
    llmq_bench_result bench;
    int have_ppl = 0, n_gen = 0;

    if ((rc = llmq_model_open(&m, path, &err))) return cmd_fail("verify", &err);
    if (o.logits_out && (llmq_same_file(o.logits_out, path))) {
        rc = cmd_failf("verify", LLMQ_EUSAGE, "%s: refusing to overwrite an input", o.logits_out);
        goto out;
    }
    if (!(dir = model_dir(path, &err))) goto fail;
    if (o.text || o.gen) {
        char *tp = llmq_path_join(dir, "tokenizer.json", &err);
        if (!tp) goto fail;
        rc = llmq_tok_load(&tok, tp, &err);
        free(tp);
        if (rc) goto fail;
    }
    if (o.text) {
        char *buf;
        size_t len;
        if ((rc = llmq_read_file(o.text, &buf, &len, &err))) goto fail;
        rc = llmq_tok_encode(tok, buf, len, &ids, &n_ids, &err);
        free(buf);
        if (rc) goto fail;
    } else if (o.ids) {
        if ((rc = read_ids(o.ids, &ids, &n_ids, &err))) goto fail;
        for (size_t i = 0; i < n_ids; i++)
            if (ids[i] < 0 || ids[i] >= m.cfg.vocab) {
                rc = llmq_errorf(&err, LLMQ_EFORMAT, "%s: id %d at index %zu is outside the vocabulary (0..%d)",
                                 o.ids, ids[i], i, m.cfg.vocab - 1);
                goto fail;
            }
    }
    int max_ctx = o.ctx;
    if (o.bench) max_ctx = LLMQ_MAX(max_ctx, 512);
    if (!(pool = llmq_pool_new(o.threads, &err))) goto fail;

    if (ids) {
        if ((rc = llmq_runner_new(&run, &m, o.ctx, pool, &err))) goto fail;
        if (o.logits_out && !(first_logits = llmq_malloc((size_t)o.ctx * m.cfg.vocab * sizeof(float), &err))) goto fail;
        cmd_progress pr;
        progress_init(&pr, "perplexity");
        int bos = proto == LLMQ_PPL_LLAMACPP && tok && llmq_tok_add_bos(tok) ? llmq_tok_bos(tok) : -1;
        rc = llmq_eval_ppl(run, ids, n_ids, o.ctx, proto, o.max_windows, bos, first_logits, NULL, NULL,
                           progress_cb, &pr, &ppl, &err);
        progress_done(&pr);
        if (rc) goto fail;
        have_ppl = 1;
        if (o.logits_out && (rc = write_logits(o.logits_out, ids, o.ctx, m.cfg.vocab, first_logits, &err))) goto fail;
        llmq_runner_free(run);
        run = NULL;
    }
    if (o.gen) {
        int32_t *p;
        size_t np;
        if ((rc = llmq_tok_encode(tok, o.gen, strlen(o.gen), &p, &np, &err))) goto fail;
        if (np == 0) { free(p); rc = cmd_failf("verify", LLMQ_EUSAGE, "--gen: the prompt encodes to no tokens"); goto out; }
        if (!(gen_ids = llmq_malloc((np + (size_t)o.n) * sizeof(int32_t), &err))) { free(p); goto fail; }
        if ((rc = llmq_runner_new(&run, &m, (int)np + o.n, pool, &err))) { free(p); goto fail; }
        int eos = llmq_tok_eos(tok) >= 0 ? llmq_tok_eos(tok) : m.cfg.eos_id;
        rc = llmq_generate(run, p, (int)np, o.n, eos, gen_ids, &n_gen, &err);
        free(p);
        if (rc) goto fail;
        size_t tl;
        if ((rc = llmq_tok_decode(tok, gen_ids, (size_t)n_gen, 1, &gen_text, &tl, &err))) goto fail;
        llmq_runner_free(run);
        run = NULL;
    }
    if (o.bench) {
        if ((rc = llmq_runner_new(&run, &m, 512, pool, &err))) goto fail;
        if ((rc = llmq_bench(run, 512, 128, 128, &bench, &err))) goto fail;
    }

    if (o.json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", path);
        cJSON_AddStringToObject(j, "arch", m.cfg.arch_name);
        cJSON_AddStringToObject(j, "weights_dtype", m.weights_dtype);
        cJSON_AddNumberToObject(j, "params", (double)llmq_model_params(&m));
        cJSON_AddNumberToObject(j, "file_bytes", (double)llmq_model_file_bytes(&m));
        cJSON_AddNumberToObject(j, "threads", o.threads);
        if (have_ppl) {
            cJSON_AddStringToObject(j, "protocol", llmq_ppl_protocol_name(proto));
            cJSON_AddStringToObject(j, "protocol_desc", llmq_ppl_protocol_desc(proto));
            cJSON_AddNumberToObject(j, "ctx", o.ctx);
            cJSON_AddNumberToObject(j, "perplexity", ppl.ppl);
            cJSON_AddNumberToObject(j, "nll_sum", ppl.nll);
            cJSON_AddNumberToObject(j, "scored_tokens", (double)ppl.scored);
            cJSON_AddNumberToObject(j, "windows", ppl.windows);
            cJSON_AddNumberToObject(j, "windows_total", ppl.windows_total);
            cJSON_AddNumberToObject(j, "text_tokens", (double)n_ids);
            cJSON_AddNumberToObject(j, "eval_seconds", ppl.seconds);
        }
        if (gen_ids) {
            cJSON *a = cJSON_AddArrayToObject(j, "gen_ids");
            for (int i = 0; i < n_gen; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(gen_ids[i]));
            cJSON_AddStringToObject(j, "gen_text", gen_text);
        }
        if (o.bench) {
            cJSON_AddNumberToObject(j, "prefill_tok_s", bench.prefill_tok_s);
            cJSON_AddNumberToObject(j, "decode_tok_s", bench.decode_tok_s);
            cJSON_AddNumberToObject(j, "decode_gb_s", bench.decode_gb_s);
            cJSON_AddNumberToObject(j, "decode_bytes_per_token", (double)llmq_model_decode_bytes(&m));
        }
        cJSON_AddNumberToObject(j, "peak_rss_bytes", (double)llmq_peak_rss());
        json_emit(j);
    } else {
        printf("model      %s (%s, %s, %.1fM params)\n", path, m.cfg.arch_name, m.weights_dtype,
               (double)llmq_model_params(&m) / 1e6);
        if (have_ppl) {
            printf("protocol   %s: %s\n", llmq_ppl_protocol_name(proto), llmq_ppl_protocol_desc(proto));
            printf("perplexity %.4f  (ctx %d, %d of %d windows, %" PRId64 " tokens scored, %.1fs)\n", ppl.ppl, o.ctx,
                   ppl.windows, ppl.windows_total, ppl.scored, ppl.seconds);
        }
        if (gen_ids) {
            printf("gen_ids   ");
            for (int i = 0; i < n_gen; i++) printf(" %d", gen_ids[i]);
            printf("\ngen_text   %s\n", gen_text);
        }
        if (o.bench)
            printf("speed      prefill %.1f tok/s, decode %.1f tok/s (%.2f GB/s of weights), %d threads\n",
                   bench.prefill_tok_s, bench.decode_tok_s, bench.decode_gb_s, o.threads);
        if (!have_ppl && !gen_ids && !o.bench) printf("ok         all tensors present, shapes match config.json, values finite\n");
    }
    rc = 0;
    goto out;
fail:
    rc = cmd_fail("verify", &err);
out:
    llmq_runner_free(run);
    llmq_pool_free(pool);
    llmq_tok_free(tok);
    free(ids); free(gen_ids); free(gen_text); free(first_logits); free(dir);
    if (m.path) llmq_model_close(&m);
    return rc;
}
