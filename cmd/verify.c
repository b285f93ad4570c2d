/* verify.c - `llmq verify`: the reference CPU runner's report on a model. */
#include <math.h>
#include <stdio.h>
#include "common.h"
#include "../lib/model.h"
#include "../lib/runner.h"
#include "../lib/eval.h"
#include "../lib/kld.h"
#include "../lib/base/fileio.h"
#include "../formats/tokenizer.h"
#include "../formats/gguf_tokenizer.h"
#include "../formats/safetensors.h"
#include "../formats/packed.h"
#include "../formats/ctensors.h"
#include "../calib/stats.h"
#include "../lib/algo/pack.h"

static struct {
    const char *text, *ids, *tokenizer, *protocol, *logits_out, *gen, *kld_save, *kld, *act, *stats;
    int ctx, max_windows, json, n, bench, threads, kld_topk, keep_cr;
} o;

static opt_def verify_opts[] = {
    { "text", OPT_PATH, &o.text, "FILE", "score perplexity on this text file ('-' = stdin)", NULL, 0, 0, NULL, 0 },
    { "keep-cr", OPT_FLAG, &o.keep_cr, NULL, "tokenize --text bytes as they are (default: CRLF and CR read as LF, as Python does)", NULL, 0, 0, NULL, 0 },
    { "ids", OPT_PATH, &o.ids, "FILE", "score perplexity on int32 LE token ids instead of text", NULL, 0, 0, NULL, 0 },
    { "tokenizer", OPT_PATH, &o.tokenizer, "DIR", "tokenizer.json of DIR (or a tokenizer.json path) instead of the model's own (a GGUF file's: its metadata)", NULL, 0, 0, NULL, 0 },
    { "ctx", OPT_INT, &o.ctx, "N", "window length in tokens (default 512)", NULL, 2, 1 << 20, NULL, 0 },
    { "protocol", OPT_CHOICE, &o.protocol, NULL, "perplexity protocol (default full)", "full|llamacpp", 0, 0, NULL, 0 },
    { "max-windows", OPT_INT, &o.max_windows, "N", "score at most N windows (default all)", NULL, 1, 1 << 30, NULL, 0 },
    { "logits-out", OPT_PATH, &o.logits_out, "FILE", "write the first window's fp32 logits as safetensors", NULL, 0, 0, NULL, 0 },
    { "kld-save", OPT_PATH, &o.kld_save, "FILE", "save this (base) model's next-token distributions for --kld", NULL, 0, 0, NULL, 0 },
    { "kld", OPT_PATH, &o.kld, "FILE", "KL divergence against a base saved with --kld-save", NULL, 0, 0, NULL, 0 },
    { "kld-topk", OPT_INT, &o.kld_topk, "K", "log-probs kept per token by --kld-save (default 64)", NULL, 1, 1 << 20, NULL, 0 },
    { "act", OPT_CHOICE, &o.act, NULL, "activations for int8/int4 weights: fp, int8 (dynamic: per token for int8 = W8A8, per 32-block for int4 = W4A8) or int8-static per tensor (int8 weights, needs --stats); default fp, int8 for a compressed-tensors W8A8 checkpoint", "fp|int8|int8-static", 0, 0, NULL, 0 },
    { "stats", OPT_PATH, &o.stats, "FILE", "statistics of this model (llmq calibrate, or smooth --stats-out) giving the --act int8-static scales", NULL, 0, 0, NULL, 0 },
    { "gen", OPT_STRING, &o.gen, "PROMPT", "greedy generation from PROMPT", NULL, 0, 0, NULL, 0 },
    { "n", OPT_INT, &o.n, "N", "tokens to generate with --gen (default 32)", NULL, 1, 1 << 20, NULL, 0 },
    { "bench", OPT_FLAG, &o.bench, NULL, "measure prefill (512-token window) and decode (128 after 128) tok/s", NULL, 0, 0, NULL, 0 },
    OPT_ROW_THREADS(o.threads),
    OPT_ROW_JSON(o.json),
    OPT_ROW_END,
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

/* Static per-tensor activation scales of m from a statistics file made
 * for m (or, for a packed model, for the model it was packed from). */
static int load_act_scales(const llmq_model *m, const char *path, float **out, llmq_err *err)
{
    llmq_stats st;
    char digest[65];
    int rc = llmq_stats_load(&st, path, err);
    if (rc) return rc;
    if ((rc = llmq_stats_check_config(&st, &m->cfg, path, err))) goto done;
    const char *src = m->ckpt.n_shards ? llmq_st_meta(&m->ckpt.shards[0], "llmq.source_digest") : NULL;
    if (src) snprintf(digest, sizeof digest, "%s", src);
    else if ((rc = llmq_model_digest(m, digest, err))) goto done;
    if (strcmp(digest, st.model_digest) != 0) {
        char q[LLMQ_QUOTE_SIZE], q2[LLMQ_QUOTE_SIZE];
        rc = llmq_errorf(err, LLMQ_EUSAGE, "%s: statistics were computed on another model (digest %s, this model %s%s)",
                         path, llmq_quote_n(q, st.model_digest, strnlen(st.model_digest, 12)),
                         src ? "was packed from " : "", llmq_quote_n(q2, digest, strnlen(digest, 12)));
        goto done;
    }
    if (!(*out = llmq_malloc((size_t)m->cfg.n_layers * 4 * sizeof(float), err))) { rc = err->code; goto done; }
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int s = 0; s < 4; s++) (*out)[l * 4 + s] = llmq_stats_static_scale(&st, l, (llmq_site)s);
done:
    llmq_stats_release(&st);
    return rc;
}

static int runner_act(llmq_runner *run, llmq_act_mode act, const float *scales, llmq_err *err)
{
    if (scales) {
        int rc = llmq_runner_set_act_scales(run, scales, err);
        if (rc) return rc;
    }
    return llmq_runner_set_act(run, act, err);
}

int cmd_verify(int argc, char **argv)
{
    memset(&o, 0, sizeof o);
    o.ctx = 512;
    o.protocol = "full";
    o.n = 32;
    o.threads = 2;
    o.kld_topk = 64;
    o.act = NULL;              /* fp, or what a compressed-tensors checkpoint asks for */
    char *args[1];
    int na, rc = opts_parse(&verify_spec, argc, argv, args, &na);
    if (rc) return rc == 1 ? 0 : LLMQ_EUSAGE;
    if (o.text && o.ids) return cmd_failf("verify", LLMQ_EUSAGE, "--text and --ids exclude each other");
    if ((o.logits_out || o.kld || o.kld_save) && !o.text && !o.ids)
        return cmd_failf("verify", LLMQ_EUSAGE, "--logits-out, --kld and --kld-save need --text or --ids");
    if (o.kld && o.kld_save) return cmd_failf("verify", LLMQ_EUSAGE, "--kld and --kld-save exclude each other");
    if (same_output(o.logits_out, o.kld_save))
        return cmd_failf("verify", LLMQ_EUSAGE, "%s: --logits-out and --kld-save name the same file", o.kld_save);
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
    llmq_kld *kld = NULL;
    double read_bw = 0;
    llmq_kld_result kr;
    llmq_act_mode act = !o.act ? LLMQ_ACT_FP : !strcmp(o.act, "int8") ? LLMQ_ACT_INT8
                      : !strcmp(o.act, "int8-static") ? LLMQ_ACT_INT8_STATIC : LLMQ_ACT_FP;
    float *act_scales = NULL;
    if ((act == LLMQ_ACT_INT8_STATIC) != (o.stats != NULL))
        return cmd_failf("verify", LLMQ_EUSAGE, "--act int8-static and --stats FILE go together");
    int have_ppl = 0, n_gen = 0;

    if ((rc = llmq_model_open_any(&m, path, &err))) return cmd_fail("verify", &err);
    if (!o.act) {
        o.act = m.ct && llmq_ct_act_int8(m.ct) ? "int8" : "fp";
        act = m.ct && llmq_ct_act_int8(m.ct) ? LLMQ_ACT_INT8 : LLMQ_ACT_FP;
    }
    cmd_inputs in;
    inputs_init(&in);
    inputs_add_model(&in, &m);
    const char *reads[] = { o.text, o.ids, o.kld, o.stats, o.tokenizer };
    for (int i = 0; i < 5; i++) inputs_add(&in, reads[i]);
    rc = inputs_check_file(&in, o.logits_out, &err);
    if (!rc) rc = inputs_check_file(&in, o.kld_save, &err);
    inputs_release(&in);
    if (rc) goto fail;
    if (!(dir = model_dir(path, &err))) goto fail;
    if (o.stats && (rc = load_act_scales(&m, o.stats, &act_scales, &err))) goto fail;
    if (o.text || o.gen) {
        if (m.gguf && !o.tokenizer) {
            if ((rc = llmq_tok_from_gguf(&tok, m.gguf, &err))) goto fail;
            if (llmq_tok_vocab_size(tok) > m.cfg.vocab) {
                rc = llmq_errorf(&err, LLMQ_EFORMAT, "%s: the tokenizer has %d tokens, token_embd.weight only %d rows",
                                 path, llmq_tok_vocab_size(tok), m.cfg.vocab);
                goto fail;
            }
        } else {
        const char *td = o.tokenizer ? o.tokenizer : dir;
        char *tp = llmq_is_dir(td) ? llmq_path_join(td, "tokenizer.json", &err) : llmq_strdup(td, &err);
        if (!tp) goto fail;
        rc = llmq_tok_load(&tok, tp, &err);
        free(tp);
        if (rc) goto fail;
        }
    }
    if (o.text) {
        char *buf;
        size_t len;
        if ((rc = llmq_read_text(o.text, o.keep_cr, &buf, &len, &err))) goto fail;
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
        if (n_ids < (size_t)o.ctx) {
            rc = llmq_errorf(&err, LLMQ_EUSAGE, "%s: text has %zu tokens, fewer than one window of %d",
                             o.text ? o.text : o.ids, n_ids, o.ctx);
            goto fail;
        }
        if ((rc = llmq_runner_new(&run, &m, o.ctx, pool, &err))) goto fail;
        if ((rc = runner_act(run, act, act_scales, &err))) goto fail;
        size_t avail = n_ids / (size_t)o.ctx;
        int nw = (int)(o.max_windows > 0 && (size_t)o.max_windows < avail ? (size_t)o.max_windows : avail);
        if (o.kld_save && (rc = llmq_kld_recorder_new(&kld, m.cfg.vocab, LLMQ_MIN(o.kld_topk, m.cfg.vocab), &err))) goto fail;
        if (o.kld && nw > 0 && (rc = llmq_kld_load(&kld, o.kld, m.cfg.vocab, ids, n_ids, proto, o.ctx, nw, &err))) goto fail;
        if (o.logits_out && !(first_logits = llmq_malloc((size_t)o.ctx * m.cfg.vocab * sizeof(float), &err))) goto fail;
        cmd_progress pr;
        progress_init(&pr, "perplexity");
        int bos = proto == LLMQ_PPL_LLAMACPP && tok && llmq_tok_add_bos(tok) ? llmq_tok_bos(tok) : -1;
        rc = llmq_eval_ppl(run, ids, n_ids, o.ctx, proto, o.max_windows, bos, first_logits,
                           kld ? llmq_kld_window : NULL, kld, progress_cb, &pr, &ppl, &err);
        progress_done(&pr);
        if (rc) goto fail;
        have_ppl = 1;
        if (o.kld_save && (rc = llmq_kld_save(kld, o.kld_save, ids, n_ids, proto, o.ctx, ppl.windows, &err))) goto fail;
        if (o.kld && (rc = llmq_kld_result_get(kld, &kr, &err))) goto fail;
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
        if ((rc = llmq_runner_new(&run, &m, (int)np + o.n, pool, &err)) || (rc = runner_act(run, act, act_scales, &err))) {
            free(p);
            goto fail;
        }
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
        if ((rc = runner_act(run, act, act_scales, &err))) goto fail;
        if ((rc = llmq_bench(run, 512, 128, 128, &bench, &err))) goto fail;
        read_bw = llmq_bandwidth_probe(pool, (size_t)1 << 30);
    }

    if (o.json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", path);
        cJSON_AddStringToObject(j, "arch", m.cfg.arch_name);
        cJSON_AddStringToObject(j, "weights_dtype", m.weights_dtype);
        cJSON_AddNumberToObject(j, "params", (double)llmq_model_params(&m));
        cJSON_AddNumberToObject(j, "file_bytes", (double)llmq_model_file_bytes(&m));
        cJSON_AddNumberToObject(j, "threads", o.threads);
        cJSON_AddStringToObject(j, "act", o.act);
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
        if (o.kld) {
            cJSON_AddNumberToObject(j, "kld_mean", kr.kld_mean);
            cJSON_AddNumberToObject(j, "kld_se", kr.kld_se);
            cJSON_AddNumberToObject(j, "kld_p99", kr.kld_p99);
            cJSON_AddNumberToObject(j, "kld_max", kr.kld_max);
            cJSON_AddNumberToObject(j, "top1_agree", kr.top1_agree);
            cJSON_AddNumberToObject(j, "ppl_base", kr.ppl_base);
            cJSON_AddNumberToObject(j, "ppl_ratio", ppl.ppl / kr.ppl_base);
            cJSON_AddNumberToObject(j, "ln_ppl_ratio", kr.ln_ppl_ratio);
            cJSON_AddNumberToObject(j, "ln_ppl_ratio_se", kr.ln_ppl_ratio_se);
            cJSON_AddNumberToObject(j, "kld_topk", kr.topk);
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
            cJSON_AddNumberToObject(j, "read_bw_gb_s", read_bw / 1e9);
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
        if (o.kld) {
            printf("kld        mean %.6f +- %.6f, p99 %.6f, max %.4f; top-1 agreement %.4f (top-%d bins)\n",
                   kr.kld_mean, kr.kld_se, kr.kld_p99, kr.kld_max, kr.top1_agree, kr.topk);
            printf("ppl ratio  %.5f (base %.4f); ln ratio %+.6f +- %.6f\n", ppl.ppl / kr.ppl_base, kr.ppl_base,
                   kr.ln_ppl_ratio, kr.ln_ppl_ratio_se);
        }
        if (gen_ids) {
            printf("gen_ids   ");
            for (int i = 0; i < n_gen; i++) printf(" %d", gen_ids[i]);
            printf("\ngen_text   %s\n", gen_text);
        }
        if (o.bench)
            printf("speed      prefill %.1f tok/s, decode %.1f tok/s (%.2f GB/s of weights; machine reads %.1f GB/s), %d threads\n",
                   bench.prefill_tok_s, bench.decode_tok_s, bench.decode_gb_s, read_bw / 1e9, o.threads);
        if (!have_ppl && !gen_ids && !o.bench) printf("ok         all tensors present, shapes match config.json, values finite\n");
    }
    rc = 0;
    goto out;
fail:
    rc = cmd_fail("verify", &err);
out:
    llmq_runner_free(run);
    llmq_kld_free(kld);
    llmq_pool_free(pool);
    llmq_tok_free(tok);
    free(ids); free(gen_ids); free(gen_text); free(first_logits); free(dir); free(act_scales);
    if (m.path) llmq_model_close(&m);
    return rc;
}
