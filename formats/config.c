/* config.c - read the fields of config.json that define a Llama-family model. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <cjson/cJSON.h>
#include "config.h"
#include "json.h"
#include "../lib/base/fileio.h"

static const struct { const char *name; llmq_arch arch; } archs[] = {
    { "LlamaForCausalLM", LLMQ_ARCH_LLAMA },
    { "MistralForCausalLM", LLMQ_ARCH_MISTRAL },
    { "Qwen2ForCausalLM", LLMQ_ARCH_QWEN2 },
};

const char *llmq_arch_supported(void)
{
    return "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM";
}

/* An integer field: absent -> *present = 0; present must be an integral
 * number in [lo, hi]. */
static int get_int(const cJSON *o, const char *key, int *out, int *present, long lo, long hi,
                   const char *path, llmq_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *present = 0;
    if (!v || cJSON_IsNull(v)) return LLMQ_OK;
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || !isfinite(d) || d != floor(d))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: \"%s\" is not an integer", path, key);
    if (d < (double)lo || d > (double)hi)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: \"%s\" = %.15g is out of range [%ld, %ld]", path, key, d, lo, hi);
    *out = (int)d;
    *present = 1;
    return LLMQ_OK;
}

static int need_int(const cJSON *o, const char *key, int *out, long lo, long hi, const char *path, llmq_err *err)
{
    int present, rc = get_int(o, key, out, &present, lo, hi, path, err);
    if (rc) return rc;
    if (!present) return llmq_errorf(err, LLMQ_EFORMAT, "%s: missing \"%s\"", path, key);
    return LLMQ_OK;
}

static int get_num(const cJSON *o, const char *key, double *out, int *present, const char *path, llmq_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *present = 0;
    if (!v || cJSON_IsNull(v)) return LLMQ_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: \"%s\" is not a finite number", path, key);
    *out = v->valuedouble;
    *present = 1;
    return LLMQ_OK;
}

static int get_bool(const cJSON *o, const char *key, int *out, const char *path, llmq_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return LLMQ_OK;
    if (!cJSON_IsBool(v)) return llmq_errorf(err, LLMQ_EFORMAT, "%s: \"%s\" is not true or false", path, key);
    *out = cJSON_IsTrue(v);
    return LLMQ_OK;
}

/* A positive finite parameter of a rope object, required. */
static int rope_param(const cJSON *rs, const char *obj, const char *key, double *out, const char *path, llmq_err *err)
{
    int present, rc = get_num(rs, key, out, &present, path, err);
    if (rc) return rc;
    if (!present || !(*out > 0 && *out <= FLT_MAX))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: \"%s.%s\" must be a positive number", path, obj, key);
    return LLMQ_OK;
}

/* The parameters of the linear and llama3 rope types, as transformers'
 * _compute_linear_scaling_rope_parameters / _compute_llama3_parameters
 * read them. */
static int parse_rope_scaling(llmq_config *c, const cJSON *rs, const char *obj, const char *path, llmq_err *err)
{
    int rc = rope_param(rs, obj, "factor", &c->rope_factor, path, err);
    if (rc || c->rope_type != LLMQ_ROPE_LLAMA3) return rc;
    if ((rc = rope_param(rs, obj, "low_freq_factor", &c->rope_low_freq, path, err)) ||
        (rc = rope_param(rs, obj, "high_freq_factor", &c->rope_high_freq, path, err)) ||
        (rc = rope_param(rs, obj, "original_max_position_embeddings", &c->rope_orig_max, path, err)))
        return rc;
    if (!(c->rope_high_freq > c->rope_low_freq))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: \"%s\": high_freq_factor %.15g must exceed low_freq_factor %.15g",
                           path, obj, c->rope_high_freq, c->rope_low_freq);
    return LLMQ_OK;
}

/* rope_scaling (transformers 4) or rope_parameters (5): the default, linear
 * and llama3 rope types; theta may sit in rope_parameters. */
static int parse_rope(llmq_config *c, const cJSON *root, const char *path, llmq_err *err)
{
    int present, rc;
    if ((rc = get_num(root, "rope_theta", &c->rope_theta, &present, path, err))) return rc;
    const char *keys[] = { "rope_scaling", "rope_parameters" };
    for (size_t k = 0; k < LLMQ_ARRAY_LEN(keys); k++) {
        const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, keys[k]);
        if (!rs || cJSON_IsNull(rs)) continue;
        if (!cJSON_IsObject(rs)) return llmq_errorf(err, LLMQ_EFORMAT, "%s: \"%s\" is not an object", path, keys[k]);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
        if (!t) t = cJSON_GetObjectItemCaseSensitive(rs, "type");
        if (t && !cJSON_IsString(t))
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: \"%s.rope_type\" is not a string", path, keys[k]);
        const char *ty = t ? t->valuestring : "default";
        c->rope_type = !strcmp(ty, "default") ? LLMQ_ROPE_DEFAULT : !strcmp(ty, "linear") ? LLMQ_ROPE_LINEAR
                     : !strcmp(ty, "llama3") ? LLMQ_ROPE_LLAMA3 : -1;
        if (c->rope_type < 0) {
            char q[LLMQ_QUOTE_SIZE];
            return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: rope type \"%s\" is not supported "
                               "(default, linear, llama3)", path, llmq_quote(q, ty));
        }
        double th;
        if ((rc = get_num(rs, "rope_theta", &th, &present, path, err))) return rc;
        if (present) c->rope_theta = th;
        if (c->rope_type != LLMQ_ROPE_DEFAULT && (rc = parse_rope_scaling(c, rs, keys[k], path, err))) return rc;
    }
    /* the RoPE tables are fp32: a theta that rounds to 0 (subnormal) or Inf
     * would make them NaN */
    if (!(c->rope_theta >= FLT_MIN && c->rope_theta <= FLT_MAX))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: rope_theta %.15g is not a positive fp32 number", path, c->rope_theta);
    return LLMQ_OK;
}

/* "llmq_online_hadamard", written by llmq rotate --online-hadamard: the
 * forward must apply what it records, so anything short of a transform
 * that fits this model is refused rather than skipped.  "keys" came later:
 * files without it rotated their keys. */
static int parse_online(llmq_config *c, const cJSON *root, const char *path, llmq_err *err)
{
    static const char *K = "llmq_online_hadamard", *names[2] = { "ff_block", "head_dim" };
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, K);
    char q[LLMQ_QUOTE_SIZE];
    if (!o || cJSON_IsNull(o)) return LLMQ_OK;
    if (!cJSON_IsObject(o)) return llmq_errorf(err, LLMQ_EFORMAT, "%s: \"%s\" is not an object", path, K);
    for (const cJSON *e = o->child; e; e = e->next)
        if (strcmp(e->string, names[0]) && strcmp(e->string, names[1]) && strcmp(e->string, "keys"))
            return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: \"%s.%s\" is a transform this llmq does not know",
                               path, K, llmq_quote(q, e->string));
    long v[2];
    for (int i = 0; i < 2; i++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, names[i]);
        if (!x) return llmq_errorf(err, LLMQ_EFORMAT, "%s: \"%s\" has no \"%s\"", path, K, names[i]);
        double d = x->valuedouble;
        if (!cJSON_IsNumber(x) || !isfinite(d) || d != floor(d) || d < 1 || d > (double)(1L << 24))
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: \"%s.%s\" is not an integer in [1, %ld]", path, K, names[i],
                               1L << 24);
        v[i] = (long)d;
    }
    if (!llmq_is_pow2(v[0]) || c->intermediate % v[0])
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: \"%s.ff_block\" %ld is not a power of two dividing "
                           "intermediate_size %d", path, K, v[0], c->intermediate);
    if (v[1] != c->head_dim || !llmq_is_pow2(v[1]))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: \"%s.head_dim\" %ld: expected the model's head_dim %d%s", path, K,
                           v[1], c->head_dim, llmq_is_pow2(c->head_dim) ? "" : ", which is no power of two");
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(o, "keys");
    if (k && !cJSON_IsBool(k)) return llmq_errorf(err, LLMQ_EFORMAT, "%s: \"%s.keys\" is not true or false", path, K);
    c->had_ff_block = (int)v[0];
    c->had_head_dim = (int)v[1];
    c->had_keys = !k || cJSON_IsTrue(k);
    return LLMQ_OK;
}

int llmq_config_refuse_online(const llmq_config *c, const char *path, const char *why, llmq_err *err)
{
    if (!c->had_ff_block && !c->had_head_dim) return LLMQ_OK;
    return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: has online Hadamard transforms (config.json \"llmq_online_hadamard\"): %s",
                       path, why);
}

int llmq_config_parse(llmq_config *c, const char *json, size_t len, const char *path, llmq_err *err)
{
    memset(c, 0, sizeof *c);
    cJSON *root;
    int rc = llmq_json_parse(json, len, path, &root, err), present;
    if (rc) return rc;
    char q[LLMQ_QUOTE_SIZE];
    if (!cJSON_IsObject(root)) { rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: not a JSON object", path); goto out; }

    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const char *aname = NULL;
    if (cJSON_IsArray(a) && cJSON_GetArraySize(a) >= 1 && cJSON_IsString(cJSON_GetArrayItem(a, 0)))
        aname = cJSON_GetArrayItem(a, 0)->valuestring;
    if (!aname) {
        rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: missing \"architectures\" (supported: %s)", path, llmq_arch_supported());
        goto out;
    }
    size_t i;
    for (i = 0; i < LLMQ_ARRAY_LEN(archs); i++)
        if (strcmp(aname, archs[i].name) == 0) break;
    if (i == LLMQ_ARRAY_LEN(archs)) {
        rc = llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: architecture \"%s\" is not supported (supported: %s)",
                         path, llmq_quote(q, aname), llmq_arch_supported());
        goto out;
    }
    c->arch = archs[i].arch;
    snprintf(c->arch_name, sizeof c->arch_name, "%s", archs[i].name);

    const long big = 1L << 24;
    if ((rc = need_int(root, "hidden_size", &c->hidden, 1, big, path, err))) goto out;
    if ((rc = need_int(root, "intermediate_size", &c->intermediate, 1, big, path, err))) goto out;
    if ((rc = need_int(root, "num_hidden_layers", &c->n_layers, 1, 4096, path, err))) goto out;
    if ((rc = need_int(root, "num_attention_heads", &c->n_heads, 1, 65536, path, err))) goto out;
    if ((rc = need_int(root, "vocab_size", &c->vocab, 1, 1L << 28, path, err))) goto out;
    if ((rc = get_int(root, "num_key_value_heads", &c->n_kv_heads, &present, 1, 65536, path, err))) goto out;
    if (!present) c->n_kv_heads = c->n_heads;
    if ((rc = get_int(root, "head_dim", &c->head_dim, &present, 1, 65536, path, err))) goto out;
    if (!present) {
        if (c->hidden % c->n_heads) {
            rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: hidden_size %d is not a multiple of num_attention_heads %d",
                             path, c->hidden, c->n_heads);
            goto out;
        }
        c->head_dim = c->hidden / c->n_heads;
    }
    if (c->head_dim % 2) {
        rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: head_dim %d is odd; rotary embeddings need it even", path, c->head_dim);
        goto out;
    }
    if (c->n_heads % c->n_kv_heads) {
        rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                         path, c->n_heads, c->n_kv_heads);
        goto out;
    }
    if ((rc = get_int(root, "max_position_embeddings", &c->max_pos, &present, 1, 1L << 30, path, err))) goto out;
    c->rms_eps = 1e-6;
    if ((rc = get_num(root, "rms_norm_eps", &c->rms_eps, &present, path, err))) goto out;
    if (!(c->rms_eps >= 0 && c->rms_eps <= FLT_MAX)) {
        rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: rms_norm_eps %.15g is not an fp32 number >= 0", path, c->rms_eps);
        goto out;
    }
    c->rope_theta = 10000.0;
    if ((rc = parse_rope(c, root, path, err))) goto out;

    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (act && !(cJSON_IsString(act) && (!strcmp(act->valuestring, "silu") || !strcmp(act->valuestring, "swish")))) {
        rc = llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: hidden_act \"%s\" is not supported (only \"silu\")",
                         path, cJSON_IsString(act) ? llmq_quote(q, act->valuestring) : "?");
        goto out;
    }
    const cJSON *tp = cJSON_GetObjectItemCaseSensitive(root, "pretraining_tp");
    if (tp && cJSON_IsNumber(tp) && tp->valuedouble > 1) {
        rc = llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: pretraining_tp > 1 is not supported", path);
        goto out;
    }

    /* Biases: Qwen2 always has q/k/v biases and none on o_proj; Llama and
     * Mistral follow attention_bias (q, k, v and o) and mlp_bias. */
    int attn_bias = 0;
    if ((rc = get_bool(root, "attention_bias", &attn_bias, path, err))) goto out;
    if ((rc = get_bool(root, "mlp_bias", &c->mlp_bias, path, err))) goto out;
    if (c->arch == LLMQ_ARCH_QWEN2) { c->qkv_bias = 1; c->o_bias = 0; c->mlp_bias = 0; }
    else { c->qkv_bias = attn_bias; c->o_bias = attn_bias; }
    if (c->arch == LLMQ_ARCH_MISTRAL) c->mlp_bias = 0;
    c->tie_embeddings = 0;
    if ((rc = get_bool(root, "tie_word_embeddings", &c->tie_embeddings, path, err))) goto out;

    /* Sliding window: Mistral applies it when set; Qwen2 only with
     * use_sliding_window (and then per layer): refuse that rather than
     * compute something else. */
    int sw = 0;
    if ((rc = get_int(root, "sliding_window", &sw, &present, 0, 1L << 30, path, err))) goto out;
    if (c->arch == LLMQ_ARCH_MISTRAL && present) c->sliding_window = sw;
    if (c->arch == LLMQ_ARCH_QWEN2) {
        int use = 0;
        if ((rc = get_bool(root, "use_sliding_window", &use, path, err))) goto out;
        if (use) { rc = llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: use_sliding_window is not supported", path); goto out; }
    }

    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(root, "dtype");
    if (!dt || cJSON_IsNull(dt)) dt = cJSON_GetObjectItemCaseSensitive(root, "torch_dtype");
    if (dt && cJSON_IsString(dt)) snprintf(c->dtype, sizeof c->dtype, "%.15s", dt->valuestring);

    if ((rc = parse_online(c, root, path, err))) goto out;

    c->bos_id = c->eos_id = -1;
    int v;
    if (get_int(root, "bos_token_id", &v, &present, 0, c->vocab - 1, path, NULL) == 0 && present) c->bos_id = v;
    if (get_int(root, "eos_token_id", &v, &present, 0, c->vocab - 1, path, NULL) == 0 && present) c->eos_id = v;
out:
    cJSON_Delete(root);
    return rc;
}

int llmq_config_load(llmq_config *c, const char *dir, llmq_err *err)
{
    char *path = llmq_path_join(dir, "config.json", err);
    if (!path) return err->code;
    char *buf; size_t len;
    int rc = llmq_read_file(path, &buf, &len, err);
    if (!rc) {
        rc = llmq_config_parse(c, buf, len, path, err);
        free(buf);
    }
    free(path);
    return rc;
}
