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
    const char *text, *ids, *tokenizer, *protocol, *logits_out, *gen, *kld_save, *kld, *act, *stats, *kv_cache, *kv_outliers;
    int ctx, max_windows, json, n, bench, threads, kld_topk, keep_cr;
    int stride, kv_sinks, kv_residual, kv_window, kv_key_group, kv_value_group, bench_ctx, kv_seen;
} o;

static opt_def verify_opts[] = {
    { "text", OPT_PATH, &o.text, "FILE", "score perplexity on this text file ('-' = stdin)", NULL, 0, 0, NULL, 0, NULL },
    { "keep-cr", OPT_FLAG, &o.keep_cr, NULL, "tokenize --text bytes as they are (default: CRLF and CR read as LF, as Python does)", NULL, 0, 0, NULL, 0, NULL },
    { "ids", OPT_PATH, &o.ids, "FILE", "score perplexity on int32 LE token ids instead of text", NULL, 0, 0, NULL, 0, NULL },
    { "tokenizer", OPT_PATH, &o.tokenizer, "DIR", "tokenizer.json of DIR (or a tokenizer.json path) instead of the model's own (a GGUF file's: its metadata)", NULL, 0, 0, NULL, 0, NULL },
    { "ctx", OPT_INT, &o.ctx, "N", "window length in tokens", NULL, 2, 1 << 20, NULL, 0, "512" },
    { "protocol", OPT_CHOICE, &o.protocol, NULL, "perplexity protocol", "full|llamacpp|sliding", 0, 0, NULL, 0, "full" },
    { "stride", OPT_INT, &o.stride, "N", "tokens between sliding windows", NULL, 1, 1 << 30, NULL, 0, "1" },
    { "max-windows", OPT_INT, &o.max_windows, "N", "score at most N windows (default all)", NULL, 1, 1 << 30, NULL, 0, NULL },
    { "logits-out", OPT_PATH, &o.logits_out, "FILE", "write the first window's fp32 logits as safetensors", NULL, 0, 0, NULL, 0, NULL },
    { "kld-save", OPT_PATH, &o.kld_save, "FILE", "save this (base) model's next-token distributions for --kld", NULL, 0, 0, NULL, 0, NULL },
    { "kld", OPT_PATH, &o.kld, "FILE", "KL divergence against a base saved with --kld-save", NULL, 0, 0, NULL, 0, NULL },
    { "kld-topk", OPT_INT, &o.kld_topk, "K", "log-probs kept per token by --kld-save", NULL, 1, 1 << 20, NULL, 0, "64" },
    { "act", OPT_CHOICE, &o.act, NULL, "activations: fp, int8 (dynamic: per token for int8 weights = W8A8, per 32-block for int4 = W4A8), int8-static per tensor (int8 weights, needs --stats) bf16 (bf16 weights: prefill with bf16 activations, AVX512-BF16) or same (each quantized linear's input quantized and dequantized in its weights' format: int8 per token, int4 in the weights' groups, mxint8 and the mx / nv block formats in their blocks with the weights' scale rule, an nv tensor scale per token); default fp, int8 for a compressed-tensors W8A8 checkpoint", "fp|int8|int8-static|bf16|same", 0, 0, NULL, 0, NULL },
    { "stats", OPT_PATH, &o.stats, "FILE", "statistics of this model (llmq calibrate, or smooth --stats-out) giving the --act int8-static scales and the calibrated key ranges of --kv-cache", NULL, 0, 0, NULL, 0, NULL },
    { "kv-cache", OPT_STRING, &o.kv_cache, "TYPE", "KV cache: f32 (default), bf16, int8..int2 (keys per channel before RoPE: calibrated ranges with --stats, else KIVI's per-channel groups of tokens; values per token in groups of 32), nuq4..nuq2 (non-uniform: per-layer codebooks fitted on the K and V rows that llmq calibrate kept, needs --stats)", NULL, 0, 0, NULL, 0, NULL },
    { "kv-sinks", OPT_INT, &o.kv_sinks, "N", "first positions kept in fp32 by --kv-cache", NULL, 0, 1 << 20, &o.kv_seen, 0, "1" },
    { "kv-residual", OPT_INT, &o.kv_residual, "R", "the last R positions before a query read at full precision", NULL, 0, 1 << 20, &o.kv_seen, 0, "0" },
    { "kv-window", OPT_INT, &o.kv_window, "W", "streaming: keep only the sinks and the last W positions (StreamingLLM); --ctx may then exceed the model's", NULL, 1, 1 << 30, NULL, 0, NULL },
    { "kv-key-group", OPT_INT, &o.kv_key_group, "G", "tokens per key range without --stats (KIVI's group)", NULL, 1, 1 << 16, NULL, 0, "32" },
    { "kv-outliers", OPT_STRING, &o.kv_outliers, "F", "dense-and-sparse: per token up to F of the values kept apart as f16 (0.01 or 1%): keys past their calibrated range (with --stats, whose ranges then leave out F of the calibration rows), each token's largest values", NULL, 0, 0, NULL, 0, NULL },
    { "kv-value-group", OPT_INT, &o.kv_value_group, "G", "channels per value range, per token (a multiple of 8)", NULL, 8, 512, NULL, 0, "32" },
    { "gen", OPT_STRING, &o.gen, "PROMPT", "greedy generation from PROMPT", NULL, 0, 0, NULL, 0, NULL },
    { "n", OPT_INT, &o.n, "N", "tokens to generate with --gen", NULL, 1, 1 << 20, NULL, 0, "32" },
    { "bench", OPT_FLAG, &o.bench, NULL, "measure prefill (512-token window) and decode (128 after 128) tok/s", NULL, 0, 0, NULL, 0, NULL },
    { "bench-ctx", OPT_INT, &o.bench_ctx, "N", "--bench decodes its 128 tokens after N positions of context (past 128: a cache of zeros, no prefill; decode reads every position whatever it holds)", NULL, 1, 1 << 24, NULL, 0, "128" },
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
    "each window like llama.cpp's llama-perplexity; 'sliding' scores the last token of a\n"
    "window of ctx tokens every --stride tokens (sliding-window recomputation).",
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

/* Everything one run of verify holds; released by verify_release. */
typedef struct {
    const char *path;
    llmq_model m;
    llmq_tok *tok;
    llmq_pool *pool;
    llmq_runner *run;
    char *dir;
    llmq_act_mode act;
    float *act_scales;              /* (n_layers, 4) with --stats, else NULL */
    int kv_on;                      /* --kv-cache, --kv-sinks ... given: the runner gets kv_spec */
    int interleaved;                /* llmq_model_interleave done (before the first runner) */
    llmq_kv_spec kv_spec;
    llmq_kv_calib kv_cal;
    float *kv_kmin, *kv_kmax;       /* (n_layers, kv_dim) calibrated key ranges, or NULL */
    float *kv_kbook, *kv_vbook;     /* (n_layers, 2^bits) nuq codebooks, or NULL */
    double kv_key_out;              /* outliers per key row measured by the first mode run, or -1 */
    int32_t *ids;                   /* (n_ids) from --text or --ids */
    size_t n_ids;
    llmq_ppl_protocol proto;
    int have_ppl;
    llmq_ppl_result ppl;
    llmq_kld *kld;
    llmq_kld_result kr;
    float *first_logits;            /* (ctx, vocab) with --logits-out */
    int32_t *gen_ids;               /* (prompt + n) with --gen */
    int n_gen;
    char *gen_text;
    llmq_bench_result bench;
    double read_bw;
} verify_run;

/* From a statistics file made for m (or, for a packed model, for the model
 * it was packed from): the static per-tensor activation scales
 * (--act int8-static) and the calibrated key ranges of a quantized
 * --kv-cache. */
static int load_stats(verify_run *v, const char *path, llmq_err *err)
{
    const llmq_model *m = &v->m;
    llmq_stats st;
    char digest[65];
    int rc = llmq_stats_load(&st, path, err);
    if (rc) return rc;
    if ((rc = llmq_stats_check_config(&st, &m->cfg, path, err))) goto done;
    /* a checkpoint that rotate or smooth wrote names its source too, but
     * its statistics are its own */
    const char *src = m->packed_meta && m->ckpt.n_shards ? llmq_st_meta(&m->ckpt.shards[0], "llmq.source_digest") : NULL;
    if (src) snprintf(digest, sizeof digest, "%s", src);
    else if ((rc = llmq_model_digest(m, digest, err))) goto done;
    if (strcmp(digest, st.model_digest) != 0) {
        char q[LLMQ_QUOTE_SIZE], q2[LLMQ_QUOTE_SIZE];
        rc = llmq_errorf(err, LLMQ_EUSAGE, "%s: statistics were computed on another model (digest %s, this model %s%s)",
                         path, llmq_quote_n(q, st.model_digest, strnlen(st.model_digest, 12)),
                         src ? "was packed from " : "", llmq_quote_n(q2, digest, strnlen(digest, 12)));
        goto done;
    }
    if (v->act == LLMQ_ACT_INT8_STATIC) {
        float *sc = v->act_scales = llmq_malloc((size_t)m->cfg.n_layers * 4 * sizeof(float), err);
        if (!sc) { rc = err->code; goto done; }
        for (int l = 0; l < m->cfg.n_layers; l++)
            for (int s = 0; s < 4; s++) sc[l * 4 + s] = llmq_stats_static_scale(&st, l, (llmq_site)s);
    }
    if (v->kv_on && (v->kv_spec.type == LLMQ_KV_INT || v->kv_spec.type == LLMQ_KV_NUQ)) {
        rc = v->kv_spec.outliers > 0
           ? llmq_stats_kv_quantile_ranges(&st, path, v->kv_spec.outliers, &v->kv_kmin, &v->kv_kmax, err)
           : llmq_stats_kv_ranges(&st, path, &v->kv_kmin, &v->kv_kmax, err);
        if (rc) goto done;
        if (v->kv_spec.type == LLMQ_KV_NUQ &&
            (rc = llmq_stats_kv_codebooks(&st, path, v->kv_spec.bits, v->kv_spec.value_group, v->kv_kmin, v->kv_kmax,
                                          &v->kv_kbook, &v->kv_vbook, err)))
            goto done;
        v->kv_cal.k_book = v->kv_kbook;
        v->kv_cal.v_book = v->kv_vbook;
        v->kv_cal.k_min = v->kv_kmin;
        v->kv_cal.k_max = v->kv_kmax;
    }
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
    llmq_qscheme qs;     /* activations take the weights' block scale rule */
    if (!llmq_qscheme_parse(llmq_runner_model(run)->weights_dtype, &qs)) llmq_runner_set_act_rule(run, qs.mx_rule);
    return llmq_runner_set_act(run, act, err);
}

/* The runner's positions for a run of `need` (a streaming window holds
 * fewer). */
static int runner_ctx(const llmq_kv_spec *kv, int on, int need)
{
    if (on && kv->window > 0 && (int64_t)kv->sinks + kv->window < need) return kv->sinks + kv->window;
    return need;
}

/* A runner of `need` positions with the activation mode and KV cache asked for. */
static int make_runner(verify_run *v, int need, llmq_err *err)
{
    int rc = 0;
    if (!v->interleaved) {
        v->interleaved = 1;
        /* W4A8 runs every int4 linear: int4 in its kernels' 16-row tiles */
        int lanes = v->act == LLMQ_ACT_INT8 && v->m.cfg.n_layers > 0 && v->m.layers[0].wq.type == LLMQ_W_Q4 &&
                    llmq_q4a8_lanes();
        rc = llmq_model_interleave(&v->m, lanes, err);
    }
    if (!rc) rc = llmq_runner_new(&v->run, &v->m, runner_ctx(&v->kv_spec, v->kv_on, need), v->pool, err);
    if (!rc) rc = runner_act(v->run, v->act, v->act_scales, err);
    if (!rc && v->kv_on) rc = llmq_runner_set_kv(v->run, &v->kv_spec, &v->kv_cal, err);
    return rc;
}

/* The key outliers a run's cache kept per row, once: what --kv-outliers costs. */
static void kv_measure(verify_run *v)
{
    const llmq_kvcache *kv = llmq_runner_kv(v->run);
    int64_t rows, out;
    if (!kv || v->kv_key_out >= 0) return;
    llmq_kv_key_outliers(kv, &rows, &out);
    if (rows > 0) v->kv_key_out = (double)out / (double)rows;
}

/* Option combinations refused before anything is read: 0 or the exit code. */
static int check_usage(void)
{
    if (o.text && o.ids) return cmd_failf("verify", LLMQ_EUSAGE, "--text and --ids exclude each other");
    if ((o.logits_out || o.kld || o.kld_save) && !o.text && !o.ids)
        return cmd_failf("verify", LLMQ_EUSAGE, "--logits-out, --kld and --kld-save need --text or --ids");
    if (o.kld && o.kld_save) return cmd_failf("verify", LLMQ_EUSAGE, "--kld and --kld-save exclude each other");
    if (same_output(o.logits_out, o.kld_save))
        return cmd_failf("verify", LLMQ_EUSAGE, "%s: --logits-out and --kld-save name the same file", o.kld_save);
    return 0;
}

/* Neither output may replace the model or a file read. */
static int check_outputs_verify(const verify_run *v, llmq_err *err)
{
    cmd_inputs in;
    inputs_init(&in);
    inputs_add_model(&in, &v->m);
    const char *reads[] = { o.text, o.ids, o.kld, o.stats, o.tokenizer };
    for (int i = 0; i < 5; i++) inputs_add(&in, reads[i]);
    int rc = inputs_check_file(&in, o.logits_out, err);
    if (!rc) rc = inputs_check_file(&in, o.kld_save, err);
    inputs_release(&in);
    return rc;
}

/* A GGUF file's own tokenizer, or tokenizer.json of --tokenizer or the model's directory. */
static int load_tokenizer(verify_run *v, llmq_err *err)
{
    int rc;
    if (v->m.gguf && !o.tokenizer) {
        if ((rc = llmq_tok_from_gguf(&v->tok, v->m.gguf, err))) return rc;
        if (llmq_tok_vocab_size(v->tok) > v->m.cfg.vocab)
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: the tokenizer has %d tokens, token_embd.weight only %d rows",
                               v->path, llmq_tok_vocab_size(v->tok), v->m.cfg.vocab);
        return 0;
    }
    const char *td = o.tokenizer ? o.tokenizer : v->dir;
    char *tp = llmq_is_dir(td) ? llmq_path_join(td, "tokenizer.json", err) : llmq_strdup(td, err);
    if (!tp) return err->code;
    rc = llmq_tok_load(&v->tok, tp, err);
    free(tp);
    return rc;
}

/* The ids scored: --text encoded, or --ids read and checked against the vocabulary. */
static int load_ids(verify_run *v, llmq_err *err)
{
    int rc;
    if (o.text) {
        char *buf;
        size_t len;
        if ((rc = llmq_read_text(o.text, o.keep_cr, &buf, &len, err))) return rc;
        rc = llmq_tok_encode(v->tok, buf, len, &v->ids, &v->n_ids, err);
        free(buf);
        return rc;
    }
    if ((rc = read_ids(o.ids, &v->ids, &v->n_ids, err))) return rc;
    for (size_t i = 0; i < v->n_ids; i++)
        if (v->ids[i] < 0 || v->ids[i] >= v->m.cfg.vocab)
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: id %d at index %zu is outside the vocabulary (0..%d)",
                               o.ids, v->ids[i], i, v->m.cfg.vocab - 1);
    return 0;
}

/* Perplexity mode, with --kld-save, --kld and --logits-out riding on the same windows. */
static int run_ppl(verify_run *v, llmq_err *err)
{
    int rc;
    if (v->n_ids < (size_t)o.ctx)
        return llmq_errorf(err, LLMQ_EUSAGE, "%s: text has %zu tokens, fewer than one window of %d",
                           o.text ? o.text : o.ids, v->n_ids, o.ctx);
    if (o.ctx > v->m.cfg.max_pos && v->m.cfg.max_pos > 0 && !(v->kv_on && o.kv_window))
        return llmq_errorf(err, LLMQ_EUSAGE, "--ctx %d exceeds the model's max_position_embeddings %d (a streaming "
                           "--kv-window allows it)", o.ctx, v->m.cfg.max_pos);
    if ((rc = make_runner(v, o.ctx, err))) return rc;
    int vocab = v->m.cfg.vocab;
    size_t avail = v->n_ids / (size_t)o.ctx;
    int nw = (int)(o.max_windows > 0 && (size_t)o.max_windows < avail ? (size_t)o.max_windows : avail);
    if (o.kld_save && (rc = llmq_kld_recorder_new(&v->kld, vocab, LLMQ_MIN(o.kld_topk, vocab), err))) return rc;
    if (o.kld && nw > 0 && (rc = llmq_kld_load(&v->kld, o.kld, vocab, v->ids, v->n_ids, v->proto, o.ctx, nw, err)))
        return rc;
    if (o.logits_out && !(v->first_logits = llmq_malloc((size_t)o.ctx * vocab * sizeof(float), err))) return err->code;
    cmd_progress pr;
    progress_init(&pr, "perplexity");
    int bos = v->proto == LLMQ_PPL_LLAMACPP && v->tok && llmq_tok_add_bos(v->tok) ? llmq_tok_bos(v->tok) : -1;
    rc = llmq_eval_ppl(v->run, v->ids, v->n_ids, o.ctx, v->proto, o.stride, o.max_windows, bos, v->first_logits,
                       v->kld ? llmq_kld_window : NULL, v->kld, progress_cb, &pr, &v->ppl, err);
    progress_done(&pr);
    if (rc) return rc;
    v->have_ppl = 1;
    if (o.kld_save && (rc = llmq_kld_save(v->kld, o.kld_save, v->ids, v->n_ids, v->proto, o.ctx, v->ppl.windows, err)))
        return rc;
    if (o.kld && (rc = llmq_kld_result_get(v->kld, &v->kr, err))) return rc;
    if (o.logits_out && (rc = write_logits(o.logits_out, v->ids, o.ctx, vocab, v->first_logits, err))) return rc;
    kv_measure(v);
    llmq_runner_free(v->run);
    v->run = NULL;
    return 0;
}

/* Generation mode: --n greedy tokens after the --gen prompt. */
static int run_gen(verify_run *v, llmq_err *err)
{
    int32_t *p;
    size_t np;
    int rc;
    if ((rc = llmq_tok_encode(v->tok, o.gen, strlen(o.gen), &p, &np, err))) return rc;
    if (np == 0) { free(p); return llmq_errorf(err, LLMQ_EUSAGE, "--gen: the prompt encodes to no tokens"); }
    if (!(v->gen_ids = llmq_malloc((np + (size_t)o.n) * sizeof(int32_t), err))) { free(p); return err->code; }
    if ((rc = make_runner(v, (int)np + o.n, err))) {
        free(p);
        return rc;
    }
    int eos = llmq_tok_eos(v->tok) >= 0 ? llmq_tok_eos(v->tok) : v->m.cfg.eos_id;
    rc = llmq_generate(v->run, p, (int)np, o.n, eos, v->gen_ids, &v->n_gen, err);
    free(p);
    if (rc) return rc;
    size_t tl;
    if ((rc = llmq_tok_decode(v->tok, v->gen_ids, (size_t)v->n_gen, 1, &v->gen_text, &tl, err))) return rc;
    kv_measure(v);
    llmq_runner_free(v->run);
    v->run = NULL;
    return 0;
}

/* Speed mode: prefill and decode tok/s, and the machine's read bandwidth. */
static int run_bench(verify_run *v, llmq_err *err)
{
    int rc;
    /* past the default 128, a prefill of the context would cost far more
     * than the decode it sets up: the cache's positions are left zeros */
    if ((rc = make_runner(v, LLMQ_MAX(512, o.bench_ctx + 128), err))) return rc;
    if ((rc = llmq_bench(v->run, 512, o.bench_ctx, 128, o.bench_ctx > 128, &v->bench, err))) return rc;
    v->read_bw = llmq_bandwidth_probe(v->pool, (size_t)1 << 30);
    return 0;
}

static void report_json(const verify_run *v)
{
    const llmq_model *m = &v->m;
    cJSON *j = json_report(v->path, NULL);
    cJSON_AddStringToObject(j, "arch", m->cfg.arch_name);
    cJSON_AddStringToObject(j, "weights_dtype", m->weights_dtype);
    cJSON_AddNumberToObject(j, "params", (double)llmq_model_params(m));
    cJSON_AddNumberToObject(j, "file_bytes", (double)llmq_model_file_bytes(m));
    cJSON_AddNumberToObject(j, "bits_per_weight", llmq_model_bits_per_weight(m));
    cJSON_AddNumberToObject(j, "threads", o.threads);
    cJSON_AddStringToObject(j, "act", o.act);
    if (v->kv_on) {
        const llmq_kv_spec *k = &v->kv_spec;
        int cal = v->kv_kmin != NULL;
        cJSON_AddStringToObject(j, "kv_cache", o.kv_cache);
        cJSON_AddStringToObject(j, "kv_keys", k->type != LLMQ_KV_INT && k->type != LLMQ_KV_NUQ ? "plain"
                                : cal ? "calibrated per channel, pre-RoPE" : "per channel per token group, pre-RoPE");
        const llmq_json_num f[] = {
            { "kv_bits_per_value", llmq_kv_bits_per_value(k, &m->cfg, cal, v->kv_key_out) },
            { "kv_bytes_per_token", llmq_kv_bytes_per_token(k, &m->cfg, cal, v->kv_key_out) },
            { "kv_sinks", k->sinks }, { "kv_residual", k->residual }, { "kv_window", k->window },
            { "kv_key_group", cal ? 0 : k->key_group }, { "kv_value_group", k->value_group },
            { "kv_outliers", k->outliers },
        };
        llmq_json_add_numbers(j, f, LLMQ_ARRAY_LEN(f));
    }
    if (v->have_ppl) {
        cJSON_AddStringToObject(j, "protocol", llmq_ppl_protocol_name(v->proto));
        cJSON_AddStringToObject(j, "protocol_desc", llmq_ppl_protocol_desc(v->proto));
        const llmq_json_num f[] = {
            { "ctx", o.ctx }, { "perplexity", v->ppl.ppl }, { "nll_sum", v->ppl.nll },
            { "scored_tokens", (double)v->ppl.scored }, { "windows", v->ppl.windows },
            { "windows_total", v->ppl.windows_total }, { "text_tokens", (double)v->n_ids },
            { "eval_seconds", v->ppl.seconds },
        };
        llmq_json_add_numbers(j, f, LLMQ_ARRAY_LEN(f));
    }
    if (o.kld) {
        const llmq_kld_result *kr = &v->kr;
        const llmq_json_num f[] = {
            { "kld_mean", kr->kld_mean }, { "kld_se", kr->kld_se }, { "kld_p99", kr->kld_p99 },
            { "kld_max", kr->kld_max }, { "top1_agree", kr->top1_agree }, { "ppl_base", kr->ppl_base },
            { "ppl_ratio", v->ppl.ppl / kr->ppl_base }, { "ln_ppl_ratio", kr->ln_ppl_ratio },
            { "ln_ppl_ratio_se", kr->ln_ppl_ratio_se }, { "kld_topk", kr->topk },
        };
        llmq_json_add_numbers(j, f, LLMQ_ARRAY_LEN(f));
    }
    if (v->gen_ids) {
        cJSON *a = cJSON_AddArrayToObject(j, "gen_ids");
        for (int i = 0; i < v->n_gen; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v->gen_ids[i]));
        cJSON_AddStringToObject(j, "gen_text", v->gen_text);
    }
    if (o.bench) {
        const llmq_json_num f[] = {
            { "prefill_tok_s", v->bench.prefill_tok_s }, { "decode_tok_s", v->bench.decode_tok_s },
            { "decode_gb_s", v->bench.decode_gb_s }, { "decode_bytes_per_token", (double)llmq_model_decode_bytes(m) },
            { "read_bw_gb_s", v->read_bw / 1e9 }, { "decode_ctx", v->bench.decode_prompt },
        };
        llmq_json_add_numbers(j, f, LLMQ_ARRAY_LEN(f));
    }
    cJSON_AddNumberToObject(j, "peak_rss_bytes", (double)llmq_peak_rss());
    json_emit(j);
}

static void report_text(const verify_run *v)
{
    const llmq_model *m = &v->m;
    printf("model      %s (%s, %s, %.1fM params)\n", v->path, m->cfg.arch_name, m->weights_dtype,
           (double)llmq_model_params(m) / 1e6);
    if (v->have_ppl) {
        printf("protocol   %s: %s\n", llmq_ppl_protocol_name(v->proto), llmq_ppl_protocol_desc(v->proto));
        printf("perplexity %.4f  (ctx %d, %d of %d windows, %" PRId64 " tokens scored, %.1fs)\n", v->ppl.ppl, o.ctx,
               v->ppl.windows, v->ppl.windows_total, v->ppl.scored, v->ppl.seconds);
    }
    if (o.kld) {
        const llmq_kld_result *kr = &v->kr;
        printf("kld        mean %.6f +- %.6f, p99 %.6f, max %.4f; top-1 agreement %.4f (top-%d bins)\n",
               kr->kld_mean, kr->kld_se, kr->kld_p99, kr->kld_max, kr->top1_agree, kr->topk);
        printf("ppl ratio  %.5f (base %.4f); ln ratio %+.6f +- %.6f\n", v->ppl.ppl / kr->ppl_base, kr->ppl_base,
               kr->ln_ppl_ratio, kr->ln_ppl_ratio_se);
    }
    if (v->gen_ids) {
        printf("gen_ids   ");
        for (int i = 0; i < v->n_gen; i++) printf(" %d", v->gen_ids[i]);
        printf("\ngen_text   %s\n", v->gen_text);
    }
    if (v->kv_on)
        printf("kv cache   %s, %.3f bits per value, %.0f bytes per token; sinks %d, residual %d, window %d\n",
               o.kv_cache, llmq_kv_bits_per_value(&v->kv_spec, &m->cfg, v->kv_kmin != NULL, v->kv_key_out),
               llmq_kv_bytes_per_token(&v->kv_spec, &m->cfg, v->kv_kmin != NULL, v->kv_key_out), v->kv_spec.sinks,
               v->kv_spec.residual, v->kv_spec.window);
    if (o.bench)
        printf("speed      prefill %.1f tok/s, decode %.1f tok/s (%.2f GB/s of weights; machine reads %.1f GB/s), %d threads\n",
               v->bench.prefill_tok_s, v->bench.decode_tok_s, v->bench.decode_gb_s, v->read_bw / 1e9, o.threads);
    if (!v->have_ppl && !v->gen_ids && !o.bench)
        printf("ok         all tensors present, shapes match config.json, values finite\n");
}

static void verify_release(verify_run *v)
{
    llmq_runner_free(v->run);
    llmq_kld_free(v->kld);
    llmq_pool_free(v->pool);
    llmq_tok_free(v->tok);
    free(v->ids); free(v->gen_ids); free(v->gen_text); free(v->first_logits); free(v->dir); free(v->act_scales);
    free(v->kv_kmin); free(v->kv_kmax); free(v->kv_kbook); free(v->kv_vbook);
    if (v->m.path) llmq_model_close(&v->m);
}

/* Open and check the model, then run each mode asked for (perplexity on
 * --text/--ids, --gen, --bench) in that order, then report. */
static int verify_body(verify_run *v, llmq_err *err)
{
    int rc;
    if (o.stats && (rc = load_stats(v, o.stats, err))) return rc;
    if ((o.text || o.gen) && (rc = load_tokenizer(v, err))) return rc;
    if ((o.text || o.ids) && (rc = load_ids(v, err))) return rc;
    if (!(v->pool = llmq_pool_new(o.threads, err))) return err->code;
    if (v->ids && (rc = run_ppl(v, err))) return rc;
    if (o.gen && (rc = run_gen(v, err))) return rc;
    if (o.bench && (rc = run_bench(v, err))) return rc;
    if (o.json) report_json(v);
    else report_text(v);
    return 0;
}

int cmd_verify(int argc, char **argv)
{
    memset(&o, 0, sizeof o);
    o.act = NULL;              /* fp, or what a compressed-tensors checkpoint asks for */
    char *args[1];
    int na, rc = opts_parse(&verify_spec, argc, argv, args, &na);
    if (rc) return rc == 1 ? 0 : LLMQ_EUSAGE;
    if ((rc = check_usage())) return rc;
    verify_run v;
    memset(&v, 0, sizeof v);
    v.kv_key_out = -1;
    v.path = args[0];
    v.proto = !strcmp(o.protocol, "full") ? LLMQ_PPL_FULL : !strcmp(o.protocol, "llamacpp") ? LLMQ_PPL_LLAMACPP
            : LLMQ_PPL_SLIDING;
    if (v.proto == LLMQ_PPL_SLIDING && (o.kld || o.kld_save))
        return cmd_failf("verify", LLMQ_EUSAGE, "--kld and --kld-save take the full or llamacpp protocol");
    v.act = !o.act ? LLMQ_ACT_FP : !strcmp(o.act, "int8") ? LLMQ_ACT_INT8
          : !strcmp(o.act, "int8-static") ? LLMQ_ACT_INT8_STATIC : !strcmp(o.act, "bf16") ? LLMQ_ACT_BF16
          : !strcmp(o.act, "same") ? LLMQ_ACT_SAME : LLMQ_ACT_FP;
    v.kv_on = o.kv_cache || o.kv_window || o.kv_residual || o.kv_seen;
    v.kv_spec = (llmq_kv_spec){ LLMQ_KV_F32, 32, o.kv_sinks, o.kv_residual, o.kv_window, o.kv_key_group,
                                o.kv_value_group, 0.0 };
    if (!o.kv_cache) o.kv_cache = "f32";
    if (o.kv_outliers) {
        size_t L = strlen(o.kv_outliers);
        char buf[64];
        int pct = L > 0 && o.kv_outliers[L - 1] == '%';
        snprintf(buf, sizeof buf, "%.*s", (int)(L - (size_t)pct), o.kv_outliers);
        double f;
        if (L >= sizeof buf || parse_double(buf, &f) || !(f >= 0) || (pct ? f / 100 : f) > 0.5)
            return cmd_failf("verify", LLMQ_EUSAGE, "--kv-outliers '%s': a fraction 0..0.5 or a percentage 0..50%%",
                             o.kv_outliers);
        v.kv_spec.outliers = pct ? f / 100 : f;
        v.kv_on = 1;
    }
    llmq_err perr = { 0, "" };
    if (llmq_kv_spec_parse(o.kv_cache, &v.kv_spec, &perr)) return cmd_failf("verify", LLMQ_EUSAGE, "--kv-cache: %s", perr.msg);
    int kvq = v.kv_spec.type == LLMQ_KV_INT || v.kv_spec.type == LLMQ_KV_NUQ;
    if (v.act == LLMQ_ACT_INT8_STATIC && !o.stats)
        return cmd_failf("verify", LLMQ_EUSAGE, "--act int8-static needs --stats FILE");
    if (v.kv_spec.type == LLMQ_KV_NUQ && !o.stats)
        return cmd_failf("verify", LLMQ_EUSAGE, "--kv-cache %s needs --stats FILE (its codebooks are fitted on the "
                         "calibration's K and V rows)", o.kv_cache);
    if (o.stats && v.act != LLMQ_ACT_INT8_STATIC && !kvq)
        return cmd_failf("verify", LLMQ_EUSAGE, "--stats FILE serves --act int8-static or a quantized --kv-cache");
    if (o.kv_window && (o.kld || o.kld_save || o.logits_out) && o.ctx > o.kv_sinks + o.kv_window)
        return cmd_failf("verify", LLMQ_EUSAGE, "--kld, --kld-save and --logits-out need a --kv-window that holds --ctx");
    llmq_err err = { 0, "" };
    if ((rc = llmq_model_open_any(&v.m, v.path, &err))) return cmd_fail("verify", &err);
    if (!o.act) {
        int ct8 = v.m.ct && llmq_ct_act_int8(v.m.ct);
        o.act = ct8 ? "int8" : "fp";
        v.act = ct8 ? LLMQ_ACT_INT8 : LLMQ_ACT_FP;
    }
    if ((rc = check_outputs_verify(&v, &err)) || !(v.dir = model_dir(v.path, &err)) || (rc = verify_body(&v, &err)))
        rc = cmd_fail("verify", &err);
    verify_release(&v);
    return rc;
}
