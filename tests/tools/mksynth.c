/*
 * mksynth.c - write a synthetic Llama checkpoint for tests and benchmarks.
 *
 *   mksynth OUTDIR [--hidden 2048] [--layers 22] [--heads 32] [--kv-heads 4]
 *                  [--intermediate 5632] [--vocab 32000] [--shards N]
 *                  [--seed 1] [--tie] [--tokenizer FILE]
 *
 * OUTDIR gets config.json (LlamaForCausalLM, transformers-4 style), bf16
 * weights under Hugging Face tensor names, sharded into N files with
 * model.safetensors.index.json (one file, model.safetensors, when N is 1),
 * and tokenizer.json copied from FILE if given.  The defaults are the
 * TinyLlama 1.1B shape.  Without --shards, N is the fewest shards that keep
 * each file under 1 GiB.
 *
 * Weights are N(0, 0.02) (Box-Muller over splitmix64), norms 1.0.  Each
 * tensor is seeded from --seed and its name alone, so a tensor's values do
 * not depend on the shard count.  Tensors are generated one at a time while
 * a shard is written (llmq_st_writer_add_fill), so memory stays at about
 * one tensor, the largest being the embedding.
 *
 * OUTDIR is written as a temp directory and renamed into place.  An existing
 * OUTDIR is replaced only if it is empty or holds a config.json.
 *
 * Exit status: 0 ok, 2 usage, else the llmq_status of the failure.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>
#include "formats/safetensors.h"

#define GIB (1ull << 30)

typedef struct {
    uint64_t hidden, layers, heads, kv_heads, inter, vocab, shards, seed, max_pos;
    int tie;
    const char *tokenizer;
    const char *outdir;
} synth_opts;

typedef struct {
    char name[96];
    int64_t shape[2];
    int ndim;
    int is_norm;
    uint64_t nbytes;
    int shard;
} synth_tensor;

/* ---- PRNG ---- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

typedef struct {
    synth_tensor t;
    uint64_t seed;
} fill_ctx;

static int fill_tensor(void *vctx, const char *name, void *buf, uint64_t nbytes, llmq_err *err)
{
    (void)err;
    const fill_ctx *c = vctx;
    uint16_t *out = buf;
    uint64_t n = nbytes / 2;
    if (c->t.is_norm) {
        for (uint64_t i = 0; i < n; i++) out[i] = 0x3f80;   /* bf16 1.0 */
        return LLMQ_OK;
    }
    uint64_t s = fnv1a(name) ^ splitmix64(&(uint64_t){ c->seed });
    for (uint64_t i = 0; i < n; i += 2) {
        /* u1 in (0, 1]: never log(0) */
        double u1 = (double)((splitmix64(&s) >> 11) + 1) * 0x1.0p-53;
        double u2 = (double)(splitmix64(&s) >> 11) * 0x1.0p-53;
        double r = 0.02 * sqrt(-2.0 * log(u1)), a = 6.283185307179586 * u2;
        out[i] = llmq_f32_to_bf16((float)(r * cos(a)));
        if (i + 1 < n) out[i + 1] = llmq_f32_to_bf16((float)(r * sin(a)));
    }
    return LLMQ_OK;
}

/* ---- options ---- */

static void usage(FILE *fp)
{
    fputs("usage: mksynth OUTDIR [--hidden N] [--layers N] [--heads N] [--kv-heads N]\n"
          "               [--intermediate N] [--vocab N] [--shards N] [--seed S] [--tie]\n"
          "               [--tokenizer FILE] [--max-pos N]\n"
          "Writes a synthetic bf16 Llama checkpoint (default: the TinyLlama 1.1B shape).\n", fp);
}

/* Strict decimal: digits only, no sign, no overflow, within [lo, hi]. */
static int parse_u64(const char *opt, const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    if (!s || !*s || *s < '0' || *s > '9') goto bad;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi) goto bad;
    *out = v;
    return 0;
bad:
    fprintf(stderr, "mksynth: %s: '%s' is not an integer in %" PRIu64 "..%" PRIu64 "\n", opt, s ? s : "", lo, hi);
    return -1;
}

static int parse_args(int argc, char **argv, synth_opts *o)
{
    static const struct { const char *name; size_t off; uint64_t lo, hi; } num[] = {
        { "--hidden", offsetof(synth_opts, hidden), 1, 1 << 20 },
        { "--layers", offsetof(synth_opts, layers), 1, 4096 },
        { "--heads", offsetof(synth_opts, heads), 1, 1 << 16 },
        { "--kv-heads", offsetof(synth_opts, kv_heads), 1, 1 << 16 },
        { "--intermediate", offsetof(synth_opts, inter), 1, 1 << 22 },
        { "--vocab", offsetof(synth_opts, vocab), 1, 1 << 24 },
        { "--shards", offsetof(synth_opts, shards), 1, 99999 },
        { "--seed", offsetof(synth_opts, seed), 0, UINT64_MAX },
        { "--max-pos", offsetof(synth_opts, max_pos), 1, 1 << 24 },
    };
    *o = (synth_opts){ .hidden = 2048, .layers = 22, .heads = 32, .kv_heads = 4, .inter = 5632,
                       .vocab = 32000, .shards = 0, .seed = 1, .max_pos = 2048 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0) { usage(stdout); exit(0); }
        if (strcmp(a, "--tie") == 0) { o->tie = 1; continue; }
        if (strcmp(a, "--tokenizer") == 0) {
            if (++i >= argc) { fprintf(stderr, "mksynth: --tokenizer needs a file\n"); return -1; }
            o->tokenizer = argv[i];
            continue;
        }
        size_t k;
        for (k = 0; k < LLMQ_ARRAY_LEN(num); k++)
            if (strcmp(a, num[k].name) == 0) break;
        if (k < LLMQ_ARRAY_LEN(num)) {
            if (parse_u64(a, i + 1 < argc ? argv[i + 1] : NULL, num[k].lo, num[k].hi,
                          (uint64_t *)((char *)o + num[k].off)))
                return -1;
            i++;
            continue;
        }
        if (a[0] == '-' && a[1]) { fprintf(stderr, "mksynth: unknown option '%s'\n", a); return -1; }
        if (o->outdir) { fprintf(stderr, "mksynth: more than one OUTDIR\n"); return -1; }
        o->outdir = a;
    }
    if (!o->outdir) { fprintf(stderr, "mksynth: no OUTDIR\n"); return -1; }
    if (o->hidden % o->heads) {
        fprintf(stderr, "mksynth: --hidden %" PRIu64 " is not a multiple of --heads %" PRIu64 "\n", o->hidden, o->heads);
        return -1;
    }
    if (o->heads % o->kv_heads) {
        fprintf(stderr, "mksynth: --heads %" PRIu64 " is not a multiple of --kv-heads %" PRIu64 "\n", o->heads, o->kv_heads);
        return -1;
    }
    return 0;
}

/* ---- layout ---- */

static void add_t(synth_tensor *ts, size_t *n, int is_norm, uint64_t d0, uint64_t d1, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void add_t(synth_tensor *ts, size_t *n, int is_norm, uint64_t d0, uint64_t d1, const char *fmt, ...)
{
    synth_tensor *t = &ts[(*n)++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->is_norm = is_norm;
    t->ndim = d1 ? 2 : 1;
    t->shape[0] = (int64_t)d0;
    t->shape[1] = (int64_t)d1;
    t->nbytes = d0 * (d1 ? d1 : 1) * 2;
}

/* Tensors in module order (as Hugging Face shards them). */
static synth_tensor *make_layout(const synth_opts *o, size_t *count)
{
    uint64_t hd = o->hidden / o->heads, h = o->hidden;
    size_t cap = 3 + 9 * (size_t)o->layers;
    synth_tensor *ts = calloc(cap, sizeof *ts);
    size_t n = 0;
    if (!ts) return NULL;
    add_t(ts, &n, 0, o->vocab, h, "model.embed_tokens.weight");
    for (uint64_t i = 0; i < o->layers; i++) {
        add_t(ts, &n, 0, o->heads * hd, h, "model.layers.%" PRIu64 ".self_attn.q_proj.weight", i);
        add_t(ts, &n, 0, o->kv_heads * hd, h, "model.layers.%" PRIu64 ".self_attn.k_proj.weight", i);
        add_t(ts, &n, 0, o->kv_heads * hd, h, "model.layers.%" PRIu64 ".self_attn.v_proj.weight", i);
        add_t(ts, &n, 0, h, o->heads * hd, "model.layers.%" PRIu64 ".self_attn.o_proj.weight", i);
        add_t(ts, &n, 0, o->inter, h, "model.layers.%" PRIu64 ".mlp.gate_proj.weight", i);
        add_t(ts, &n, 0, o->inter, h, "model.layers.%" PRIu64 ".mlp.up_proj.weight", i);
        add_t(ts, &n, 0, h, o->inter, "model.layers.%" PRIu64 ".mlp.down_proj.weight", i);
        add_t(ts, &n, 1, h, 0, "model.layers.%" PRIu64 ".input_layernorm.weight", i);
        add_t(ts, &n, 1, h, 0, "model.layers.%" PRIu64 ".post_attention_layernorm.weight", i);
    }
    add_t(ts, &n, 1, h, 0, "model.norm.weight");
    if (!o->tie) add_t(ts, &n, 0, o->vocab, h, "lm_head.weight");
    *count = n;
    return ts;
}

/* Split ts into nshards contiguous runs of about equal bytes, none empty.
 * Returns the largest shard's bytes. */
static uint64_t assign_shards(synth_tensor *ts, size_t n, uint64_t nshards, uint64_t total)
{
    uint64_t cum = 0, cur = 0, maxb = 0;
    uint64_t s = 0;
    int empty = 1;
    for (size_t i = 0; i < n; i++) {
        /* move on when this tensor's middle lies past the shard's share, or
         * when only enough tensors remain to give each later shard one */
        double mid = (double)cum + ts[i].nbytes / 2.0;
        if (!empty && s + 1 < nshards &&
            (mid > (double)total * (double)(s + 1) / (double)nshards || n - i <= nshards - 1 - s)) {
            s++;
            cur = 0;
        }
        ts[i].shard = (int)s;
        cur += ts[i].nbytes;
        cum += ts[i].nbytes;
        empty = 0;
        if (cur > maxb) maxb = cur;
    }
    return maxb;
}

static void shard_name(char *buf, size_t n, int k, uint64_t nshards)
{
    if (nshards == 1) snprintf(buf, n, "model.safetensors");
    else snprintf(buf, n, "model-%05d-of-%05d.safetensors", k + 1, (int)nshards);
}

/* ---- output ---- */

static int write_json(const llmq_outdir *d, const char *name, cJSON *root, llmq_err *err)
{
    char *text = cJSON_Print(root);
    if (!text) return llmq_errorf(err, LLMQ_ENOMEM, "%s: out of memory", name);
    char *path = llmq_outdir_file(d, name, err);
    int rc = path ? LLMQ_OK : err->code;
    llmq_out out;
    if (!rc) rc = llmq_out_open(&out, path, err);
    if (!rc) {
        rc = llmq_out_write(&out, text, strlen(text), err);
        if (!rc) rc = llmq_out_write(&out, "\n", 1, err);
        if (!rc) rc = llmq_out_commit(&out, err);
        else llmq_out_abort(&out);
    }
    free(path);
    free(text);
    return rc;
}

static cJSON *make_config(const synth_opts *o)
{
    cJSON *c = cJSON_CreateObject();
    if (!c) return NULL;
    const char *arch[1] = { "LlamaForCausalLM" };
    int ok = cJSON_AddItemToObject(c, "architectures", cJSON_CreateStringArray(arch, 1));
    ok = ok && cJSON_AddFalseToObject(c, "attention_bias");
    ok = ok && cJSON_AddRawToObject(c, "attention_dropout", "0.0");
    ok = ok && cJSON_AddNumberToObject(c, "bos_token_id", 1);
    ok = ok && cJSON_AddNumberToObject(c, "eos_token_id", 2);
    ok = ok && cJSON_AddNumberToObject(c, "head_dim", (double)(o->hidden / o->heads));
    ok = ok && cJSON_AddStringToObject(c, "hidden_act", "silu");
    ok = ok && cJSON_AddNumberToObject(c, "hidden_size", (double)o->hidden);
    ok = ok && cJSON_AddRawToObject(c, "initializer_range", "0.02");
    ok = ok && cJSON_AddNumberToObject(c, "intermediate_size", (double)o->inter);
    ok = ok && cJSON_AddNumberToObject(c, "max_position_embeddings", (double)o->max_pos);
    ok = ok && cJSON_AddFalseToObject(c, "mlp_bias");
    ok = ok && cJSON_AddStringToObject(c, "model_type", "llama");
    ok = ok && cJSON_AddNumberToObject(c, "num_attention_heads", (double)o->heads);
    ok = ok && cJSON_AddNumberToObject(c, "num_hidden_layers", (double)o->layers);
    ok = ok && cJSON_AddNumberToObject(c, "num_key_value_heads", (double)o->kv_heads);
    ok = ok && cJSON_AddNumberToObject(c, "pretraining_tp", 1);
    ok = ok && cJSON_AddRawToObject(c, "rms_norm_eps", "1e-05");
    ok = ok && cJSON_AddNullToObject(c, "rope_scaling");
    ok = ok && cJSON_AddRawToObject(c, "rope_theta", "10000.0");
    ok = ok && cJSON_AddBoolToObject(c, "tie_word_embeddings", o->tie);
    ok = ok && cJSON_AddStringToObject(c, "torch_dtype", "bfloat16");
    ok = ok && cJSON_AddStringToObject(c, "transformers_version", "4.44.2");
    ok = ok && cJSON_AddTrueToObject(c, "use_cache");
    ok = ok && cJSON_AddNumberToObject(c, "vocab_size", (double)o->vocab);
    if (!ok) { cJSON_Delete(c); return NULL; }
    return c;
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp((*(const synth_tensor *const *)a)->name, (*(const synth_tensor *const *)b)->name);
}

static cJSON *make_index(synth_tensor *ts, size_t n, uint64_t nshards, uint64_t total)
{
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject(), *wm = cJSON_CreateObject();
    synth_tensor **sorted = malloc(n * sizeof *sorted);
    char num[24], file[64];
    int ok = root && meta && wm && sorted;
    if (ok) {
        snprintf(num, sizeof num, "%" PRIu64, total);
        ok = cJSON_AddRawToObject(meta, "total_size", num) != NULL;
        ok = ok && cJSON_AddItemToObject(root, "metadata", meta);
        if (ok) meta = NULL;
        ok = ok && cJSON_AddItemToObject(root, "weight_map", wm);
        if (ok) wm = NULL;
    }
    cJSON *map = ok ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    for (size_t i = 0; ok && i < n; i++) sorted[i] = &ts[i];
    if (ok) qsort(sorted, n, sizeof *sorted, cmp_tensor_name);
    for (size_t i = 0; ok && i < n; i++) {
        shard_name(file, sizeof file, sorted[i]->shard, nshards);
        ok = cJSON_AddStringToObject(map, sorted[i]->name, file) != NULL;
    }
    free(sorted);
    cJSON_Delete(meta);
    cJSON_Delete(wm);
    if (!ok) { cJSON_Delete(root); return NULL; }
    return root;
}

/* An existing OUTDIR is replaced only when that cannot destroy anything
 * that is not a model directory. */
static int outdir_replaceable(const char *path)
{
    if (!llmq_exists(path)) return 1;
    if (!llmq_is_dir(path)) return 0;
    char *cfg = llmq_path_join(path, "config.json", NULL);
    int ok = cfg && llmq_exists(cfg);
    free(cfg);
    if (ok) return 1;
    DIR *d = opendir(path);
    if (!d) return 0;
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) { empty = 0; break; }
    closedir(d);
    return empty;
}

static int run(const synth_opts *o, llmq_err *err)
{
    size_t n;
    synth_tensor *ts = make_layout(o, &n);
    fill_ctx *ctx = NULL;
    cJSON *json = NULL;
    llmq_outdir d = { 0 };
    int rc = LLMQ_OK, opened = 0;
    double t0 = llmq_now();
    if (!ts) return llmq_errorf(err, LLMQ_ENOMEM, "out of memory");

    uint64_t total = 0, params = 0;
    for (size_t i = 0; i < n; i++) {
        if (llmq_add_ovf_u64(total, ts[i].nbytes, &total))
            { rc = llmq_errorf(err, LLMQ_EUSAGE, "model size overflows"); goto out; }
        params += ts[i].nbytes / 2;
    }
    uint64_t nshards = o->shards;
    if (nshards > n) {
        rc = llmq_errorf(err, LLMQ_EUSAGE, "--shards %" PRIu64 ": only %zu tensors", nshards, n);
        goto out;
    }
    if (nshards) {
        assign_shards(ts, n, nshards, total);
    } else {
        /* fewest shards keeping each file (plus a header of well under
         * 1 MiB) below 1 GiB */
        for (nshards = total > GIB ? (total + GIB - 1) / GIB : 1;; nshards++) {
            if (nshards > n) {
                rc = llmq_errorf(err, LLMQ_EUSAGE, "a single tensor is over 1 GiB; give --shards");
                goto out;
            }
            if (assign_shards(ts, n, nshards, total) + (1u << 20) < GIB) break;
        }
    }

    if (!outdir_replaceable(o->outdir)) {
        rc = llmq_errorf(err, LLMQ_EUSAGE, "%s: exists and is not empty or a model directory; not replacing it",
                         o->outdir);
        goto out;
    }
    if ((rc = llmq_outdir_open(&d, o->outdir, err))) goto out;
    opened = 1;

    json = make_config(o);
    if (!json) { rc = llmq_errorf(err, LLMQ_ENOMEM, "config.json: out of memory"); goto out; }
    if ((rc = write_json(&d, "config.json", json, err))) goto out;
    cJSON_Delete(json);
    json = NULL;
    if (nshards > 1) {
        json = make_index(ts, n, nshards, total);
        if (!json) { rc = llmq_errorf(err, LLMQ_ENOMEM, "index: out of memory"); goto out; }
        if ((rc = write_json(&d, "model.safetensors.index.json", json, err))) goto out;
    }
    if (o->tokenizer) {
        char *dst = llmq_outdir_file(&d, "tokenizer.json", err);
        if (!dst) { rc = err->code; goto out; }
        rc = llmq_copy_file(o->tokenizer, dst, err);
        free(dst);
        if (rc) goto out;
    }

    ctx = calloc(n, sizeof *ctx);
    if (!ctx) { rc = llmq_errorf(err, LLMQ_ENOMEM, "out of memory"); goto out; }
    for (uint64_t k = 0; k < nshards; k++) {
        char file[64];
        shard_name(file, sizeof file, (int)k, nshards);
        llmq_st_writer *w = llmq_st_writer_new(err);
        if (!w) { rc = err->code; goto out; }
        rc = llmq_st_writer_meta(w, "format", "pt", err);
        for (size_t i = 0; !rc && i < n; i++) {
            if (ts[i].shard != (int)k) continue;
            ctx[i].t = ts[i];
            ctx[i].seed = o->seed;
            rc = llmq_st_writer_add_fill(w, ts[i].name, LLMQ_DT_BF16, ts[i].ndim, ts[i].shape,
                                         fill_tensor, &ctx[i], err);
        }
        char *path = rc ? NULL : llmq_outdir_file(&d, file, err);
        if (!rc && !path) rc = err->code;
        if (!rc) rc = llmq_st_writer_finish(w, path, err);
        free(path);
        llmq_st_writer_free(w);
        if (rc) goto out;
    }
    if ((rc = llmq_outdir_commit(&d, err))) { opened = 0; goto out; }
    opened = 0;
    printf("mksynth: %s: %" PRIu64 " parameters, %" PRIu64 " bytes in %" PRIu64 " shard%s, %.1f s\n",
           o->outdir, params, total, nshards, nshards == 1 ? "" : "s", llmq_now() - t0);
out:
    if (opened) llmq_outdir_abort(&d);
    cJSON_Delete(json);
    free(ctx);
    free(ts);
    return rc;
}

int main(int argc, char **argv)
{
    synth_opts o;
    if (parse_args(argc, argv, &o) != 0) { usage(stderr); return LLMQ_EUSAGE; }
    llmq_err err = { 0 };
    int rc = run(&o, &err);
    if (rc) fprintf(stderr, "mksynth: %s\n", err.msg);
    return rc;
}
