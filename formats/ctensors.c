/* ctensors.c - read compressed-tensors checkpoints (ctensors.h); writing
 * them is lib/export/ct_export.c.
 *
 * Read from compressed-tensors' own description of the format (its
 * pack_quantized compressor and quantization lifecycle): a weight is
 * quantized as q = clamp(round(x / scale + zp), -2^(b-1), 2^(b-1) - 1) and
 * read back as (q - zp) * scale; packing adds 2^(b-1) to each q (and each
 * packed zp) and lays 32 / b of them into an int32, lowest bits first.
 *
 * nvfp4-pack-quantized (its fp4_quantized compressor, NVFP4PackedCompressor,
 * and lifecycle/forward.py): scale = weight_scale (E4M3) / weight_global_scale
 * in float32, x quantized to the nearest E2M1 of x / scale, and each E2M1
 * stored as its 4-bit code (magnitude index 0..7 of {0, 0.5, 1, 1.5, 2, 3,
 * 4, 6}, sign in bit 3), two per byte, the even column in the low nibble:
 * LLMQ_W_NVFP4's codes byte for byte. */
#include <stdio.h>
#include <math.h>
#include "ctensors.h"
#include "json.h"
#include "regex.h"
#include "packed.h"
#include "../lib/base/blocks.h"

#define CT_MAX_GROUPS 16

enum { CT_PACK = 0, CT_INT, CT_NVFP4 };

typedef struct {
    char name[64];
    int bits;            /* 4 (pack-quantized) or 8 (int-quantized) */
    int sym;
    int group;           /* columns per scale; 0: channel (one per row) */
    int act_int8;        /* input activations int8, dynamic per token */
    int act_fp4;         /* input activations NVFP4 (W4A4): llmq runs the weights alone */
    cJSON *targets;      /* borrowed from root */
    llmq_re **target_re; /* per target: compiled "re:" pattern or NULL */
} ct_group;

struct llmq_ct {
    char *cfg_path;
    cJSON *root;         /* the whole config.json */
    int format;
    const char *format_name;   /* borrowed from root */
    ct_group g[CT_MAX_GROUPS];
    int n_groups;
    cJSON *ignore;       /* borrowed from root: array of strings, may be NULL */
    llmq_re **ignore_re;
    void **owned;
    size_t n_owned, cap_owned;
};

static int ct_own(llmq_ct *ct, void *p, llmq_err *err)
{
    if (ct->n_owned == ct->cap_owned) {
        size_t cap = ct->cap_owned ? 2 * ct->cap_owned : 64;
        void **n = realloc(ct->owned, cap * sizeof *n);
        if (!n) { free(p); return llmq_errorf(err, LLMQ_ENOMEM, "out of memory"); }
        ct->owned = n;
        ct->cap_owned = cap;
    }
    ct->owned[ct->n_owned++] = p;
    return LLMQ_OK;
}

static void free_res(llmq_re **re, int n)
{
    if (!re) return;
    for (int i = 0; i < n; i++) llmq_re_free(re[i]);
    free(re);
}

void llmq_ct_free(llmq_ct *ct)
{
    if (!ct) return;
    for (int i = 0; i < ct->n_groups; i++) free_res(ct->g[i].target_re, cJSON_GetArraySize(ct->g[i].targets));
    free_res(ct->ignore_re, cJSON_GetArraySize(ct->ignore));
    for (size_t i = 0; i < ct->n_owned; i++) free(ct->owned[i]);
    free(ct->owned);
    cJSON_Delete(ct->root);
    free(ct->cfg_path);
    free(ct);
}

/* ---- quantization_config ---- */

/* An integer member: absent/null gives def when allow_null, else an error. */
static int get_int(const llmq_ct *ct, const cJSON *o, const char *where, const char *key, int allow_null, int def,
                   int lo, int hi, int *out, llmq_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        if (allow_null) { *out = def; return LLMQ_OK; }
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: %s: '%s' is missing", ct->cfg_path, where, key);
    }
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || !isfinite(d) || d != floor(d) || d < lo || d > hi)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: %s: '%s' must be an integer in [%d, %d]", ct->cfg_path, where, key, lo, hi);
    *out = (int)d;
    return LLMQ_OK;
}

static int get_bool(const llmq_ct *ct, const cJSON *o, const char *where, const char *key, int def, int *out,
                    llmq_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) { *out = def; return LLMQ_OK; }
    if (!cJSON_IsBool(v)) return llmq_errorf(err, LLMQ_EFORMAT, "%s: %s: '%s' must be true or false", ct->cfg_path, where, key);
    *out = cJSON_IsTrue(v);
    return LLMQ_OK;
}

/* A string member or NULL when absent/null; another type is an error. */
static int get_str(const llmq_ct *ct, const cJSON *o, const char *where, const char *key, const char **out, llmq_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return LLMQ_OK;
    if (!cJSON_IsString(v)) return llmq_errorf(err, LLMQ_EFORMAT, "%s: %s: '%s' must be a string", ct->cfg_path, where, key);
    *out = v->valuestring;
    return LLMQ_OK;
}

static int empty_or_null(const cJSON *v)
{
    return !v || cJSON_IsNull(v) || ((cJSON_IsObject(v) || cJSON_IsArray(v)) && !v->child);
}

/* A list of module names and "re:" patterns, compiled. */
static int compile_names(llmq_ct *ct, const cJSON *arr, const char *where, llmq_re ***out, llmq_err *err)
{
    *out = NULL;
    if (!arr) return LLMQ_OK;
    if (!cJSON_IsArray(arr)) return llmq_errorf(err, LLMQ_EFORMAT, "%s: %s must be a list of strings", ct->cfg_path, where);
    int n = cJSON_GetArraySize(arr);
    llmq_re **re = llmq_calloc((size_t)(n ? n : 1), sizeof *re, err);
    if (!re) return err->code;
    *out = re;
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        if (!cJSON_IsString(e))
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: %s must be a list of strings", ct->cfg_path, where);
        if (!strncmp(e->valuestring, "re:", 3)) {
            /* compressed-tensors matches with Python's re.match: anchored at the start only */
            const char *p = e->valuestring + 3;
            size_t len = strlen(p);
            if (len > LLMQ_RE_MAX_PATTERN)
                return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: %s: a pattern longer than %d bytes", ct->cfg_path,
                                   where, LLMQ_RE_MAX_PATTERN);
            char *pat = llmq_malloc(len + 8, err);
            if (!pat) return err->code;
            snprintf(pat, len + 8, "\\A(?:%s)", p);
            char w[300];
            snprintf(w, sizeof w, "%s: %s", ct->cfg_path, where);
            int rc = llmq_re_new(&re[i], pat, strlen(pat), LLMQ_RE_HF, w, err);
            free(pat);
            if (rc) return rc;
        }
        i++;
    }
    return LLMQ_OK;
}

/* 1 if module name matches an entry of arr (re: its compiled patterns);
 * -1 if a pattern search failed.  is_linear: name is a Linear module. */
static int names_match(const cJSON *arr, llmq_re *const *re, const char *name, int is_linear)
{
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        if (re && re[i]) {
            int r = llmq_re_search(re[i], name, strlen(name));
            if (r) return r == 1 ? 1 : -1;
        } else if (!strcmp(e->valuestring, name) || (is_linear && !strcmp(e->valuestring, "Linear"))) {
            return 1;
        }
        i++;
    }
    return 0;
}

/* The rest of an nvfp4-pack-quantized group, whose weights' num_bits, type,
 * strategy, actorder, symmetric and dynamic parse_group has read: what
 * compressed-tensors' presets "NVFP4A16" (weights alone) and "NVFP4"
 * (activations too, their block scales made at run time: dynamic "local")
 * write (quant_scheme.py), and nothing else. */
static int parse_nvfp4(llmq_ct *ct, const char *gname, const cJSON *gv, const cJSON *wq, ct_group *g, const char *type,
                       const char *strategy, const char *actorder, int dynamic, llmq_err *err)
{
    char where[128];
    const char *sdt;
    int rc, gs, sym;
    snprintf(where, sizeof where, "config group '%.60s' weights", gname);
    if (!type || strcmp(type, "float") || g->bits != 4)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: %s: %d-bit %s weights with nvfp4-pack-quantized are not supported "
                           "(4-bit float)", ct->cfg_path, where, g->bits, type ? type : "?");
    if (!strategy || strcmp(strategy, "tensor_group"))
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: %s: strategy '%s' with nvfp4-pack-quantized is not supported "
                           "(tensor_group)", ct->cfg_path, where, strategy ? strategy : "?");
    if ((rc = get_int(ct, wq, where, "group_size", 0, 0, 1, INT32_MAX, &gs, err))) return rc;
    if (gs != 16)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: %s: group_size %d with nvfp4-pack-quantized is not supported (16)",
                           ct->cfg_path, where, gs);
    if (!g->sym) return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: %s: asymmetric FP4 weights are not supported", ct->cfg_path, where);
    if (dynamic) return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: %s: dynamic weight quantization is not supported", ct->cfg_path, where);
    if (actorder)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: %s: actorder '%s' is not supported with tensor_group", ct->cfg_path,
                           where, actorder);
    if (!empty_or_null(cJSON_GetObjectItemCaseSensitive(wq, "block_structure")))
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: %s: block quantization is not supported", ct->cfg_path, where);
    /* newer writers name the block scales' dtype ("float8_e4m3fn", with or
     * without "torch."); the tensor's own dtype is checked too */
    if ((rc = get_str(ct, wq, where, "scale_dtype", &sdt, err))) return rc;
    if (sdt && strcmp(sdt, "float8_e4m3fn") && strcmp(sdt, "torch.float8_e4m3fn"))
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: %s: scale_dtype '%s' is not supported (float8_e4m3fn)", ct->cfg_path,
                           where, sdt);
    g->group = 16;

    const cJSON *ia = cJSON_GetObjectItemCaseSensitive(gv, "input_activations");
    if (empty_or_null(ia)) return LLMQ_OK;
    snprintf(where, sizeof where, "config group '%.60s' input_activations", gname);
    int bits, ags;
    if (!cJSON_IsObject(ia)) return llmq_errorf(err, LLMQ_EFORMAT, "%s: %s is not an object", ct->cfg_path, where);
    if ((rc = get_int(ct, ia, where, "num_bits", 0, 0, 1, 64, &bits, err)) || (rc = get_str(ct, ia, where, "type", &type, err)) ||
        (rc = get_str(ct, ia, where, "strategy", &strategy, err)) || (rc = get_bool(ct, ia, where, "symmetric", 1, &sym, err)) ||
        (rc = get_int(ct, ia, where, "group_size", 1, 0, -1, INT32_MAX, &ags, err))) return rc;
    const cJSON *dy = cJSON_GetObjectItemCaseSensitive(ia, "dynamic");
    if (bits != 4 || !type || strcmp(type, "float") || !strategy || strcmp(strategy, "tensor_group") || ags != 16 || !sym ||
        !cJSON_IsString(dy) || strcmp(dy->valuestring, "local"))
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: %s: only NVFP4 activations (4-bit float, tensor_group of 16, "
                           "symmetric, dynamic 'local') are supported with NVFP4 weights", ct->cfg_path, where);
    g->act_fp4 = 1;
    return LLMQ_OK;
}

static int parse_group(llmq_ct *ct, const char *gname, const cJSON *gv, ct_group *g, llmq_err *err)
{
    char where[128];
    int rc;
    snprintf(g->name, sizeof g->name, "%s", gname);
    snprintf(where, sizeof where, "config group '%.60s'", gname);
    if (!cJSON_IsObject(gv)) return llmq_errorf(err, LLMQ_EFORMAT, "%s: %s is not an object", ct->cfg_path, where);
    g->targets = cJSON_GetObjectItemCaseSensitive(gv, "targets");
    if (!cJSON_IsArray(g->targets) || !g->targets->child)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: %s: 'targets' must be a non-empty list", ct->cfg_path, where);
    char tw[160];
    snprintf(tw, sizeof tw, "%s: 'targets'", where);
    if ((rc = compile_names(ct, g->targets, tw, &g->target_re, err))) return rc;
    if (!empty_or_null(cJSON_GetObjectItemCaseSensitive(gv, "output_activations")))
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: %s: quantized output activations are not supported", ct->cfg_path, where);
    /* newer writers name each group's format too: one format per checkpoint */
    const char *gfmt;
    if ((rc = get_str(ct, gv, where, "format", &gfmt, err))) return rc;
    if (gfmt && strcmp(gfmt, ct->format_name))
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: %s: format '%s' differs from quantization_config's '%s'", ct->cfg_path,
                           where, gfmt, ct->format_name);

    const cJSON *wq = cJSON_GetObjectItemCaseSensitive(gv, "weights");
    if (!cJSON_IsObject(wq)) return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: %s: no 'weights' scheme (llmq reads quantized weights)", ct->cfg_path, where);
    snprintf(where, sizeof where, "config group '%.60s' weights", gname);
    const char *type, *strategy, *actorder;
    int dynamic;
    if ((rc = get_int(ct, wq, where, "num_bits", 0, 0, 1, 64, &g->bits, err)) ||
        (rc = get_str(ct, wq, where, "type", &type, err)) || (rc = get_str(ct, wq, where, "strategy", &strategy, err)) ||
        (rc = get_str(ct, wq, where, "actorder", &actorder, err)) ||
        (rc = get_bool(ct, wq, where, "symmetric", 1, &g->sym, err)) ||
        (rc = get_bool(ct, wq, where, "dynamic", 0, &dynamic, err))) return rc;
    if (ct->format == CT_NVFP4) return parse_nvfp4(ct, gname, gv, wq, g, type, strategy, actorder, dynamic, err);
    if (!type || strcmp(type, "int"))
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: %s: type '%s' is not supported (int)", ct->cfg_path, where, type ? type : "?");
    if (dynamic) return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: %s: dynamic weight quantization is not supported", ct->cfg_path, where);
    if (actorder && strcmp(actorder, "weight") && strcmp(actorder, "static"))
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: %s: actorder '%s' (permuted groups) is not supported", ct->cfg_path, where, actorder);
    if (!empty_or_null(cJSON_GetObjectItemCaseSensitive(wq, "block_structure")))
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: %s: block quantization is not supported", ct->cfg_path, where);
    if (ct->format == CT_PACK && g->bits != 4 && g->bits != 8)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: %s: num_bits %d with pack-quantized is not supported (4, 8)", ct->cfg_path, where, g->bits);
    if (ct->format == CT_INT && g->bits != 8)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: %s: num_bits %d with int-quantized is not supported (8)", ct->cfg_path, where, g->bits);
    if (!strategy) return llmq_errorf(err, LLMQ_EFORMAT, "%s: %s: 'strategy' is missing", ct->cfg_path, where);
    if (!strcmp(strategy, "group")) {
        if ((rc = get_int(ct, wq, where, "group_size", 0, 0, 1, INT32_MAX, &g->group, err))) return rc;
        if (g->group % 32)
            return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: %s: group_size %d is not a multiple of 32 (llmq's int4 kernels)",
                               ct->cfg_path, where, g->group);
    } else if (!strcmp(strategy, "channel")) {
        int gs;
        if ((rc = get_int(ct, wq, where, "group_size", 1, 0, -1, INT32_MAX, &gs, err))) return rc;
        g->group = 0;
    } else {
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: %s: strategy '%s' is not supported (group, channel)", ct->cfg_path, where, strategy);
    }
    if (g->bits == 8 && (g->group || !g->sym))
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: %s: int8 weights must be symmetric per channel", ct->cfg_path, where);

    const cJSON *ia = cJSON_GetObjectItemCaseSensitive(gv, "input_activations");
    if (!empty_or_null(ia)) {
        snprintf(where, sizeof where, "config group '%.60s' input_activations", gname);
        int bits, sym;
        if ((rc = get_int(ct, ia, where, "num_bits", 0, 0, 1, 64, &bits, err)) || (rc = get_str(ct, ia, where, "type", &type, err)) ||
            (rc = get_str(ct, ia, where, "strategy", &strategy, err)) || (rc = get_bool(ct, ia, where, "symmetric", 1, &sym, err)) ||
            (rc = get_bool(ct, ia, where, "dynamic", 0, &dynamic, err))) return rc;
        if (bits != 8 || !type || strcmp(type, "int") || !sym || !dynamic || !strategy || strcmp(strategy, "token") || g->bits != 8)
            return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: %s: only dynamic symmetric per-token int8 activations with int8 weights are supported",
                               ct->cfg_path, where);
        g->act_int8 = 1;
    }
    return LLMQ_OK;
}

int llmq_ct_open(llmq_ct **out, const char *dir, llmq_err *err)
{
    *out = NULL;
    llmq_ct *ct = llmq_calloc(1, sizeof *ct, err);
    if (!ct) return err->code;
    char *text = NULL;
    size_t len;
    int rc;
    if (!(ct->cfg_path = llmq_path_join(dir, "config.json", err))) { rc = err->code; goto fail; }
    if ((rc = llmq_read_file(ct->cfg_path, &text, &len, err))) goto fail;
    if ((rc = llmq_json_parse(text, len, ct->cfg_path, &ct->root, err))) goto fail;
    const cJSON *qc = cJSON_GetObjectItemCaseSensitive(ct->root, "quantization_config");
    const cJSON *qm = cJSON_GetObjectItemCaseSensitive(qc, "quant_method");
    if (!cJSON_IsString(qm) || strcmp(qm->valuestring, "compressed-tensors")) {
        free(text);
        llmq_ct_free(ct);
        return LLMQ_OK;              /* not ours: llmq_config_load has its say */
    }
    const char *fmt, *status;
    if ((rc = get_str(ct, qc, "quantization_config", "format", &fmt, err)) ||
        (rc = get_str(ct, qc, "quantization_config", "quantization_status", &status, err))) goto fail;
    if (fmt && !strcmp(fmt, "pack-quantized")) ct->format = CT_PACK;
    else if (fmt && !strcmp(fmt, "int-quantized")) ct->format = CT_INT;
    else if (fmt && !strcmp(fmt, "nvfp4-pack-quantized")) ct->format = CT_NVFP4;
    else { rc = llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: compressed-tensors format '%s' is not supported (pack-quantized, "
                            "int-quantized, nvfp4-pack-quantized)", ct->cfg_path, fmt ? fmt : "?"); goto fail; }
    ct->format_name = fmt;
    if (status && strcmp(status, "compressed")) {
        rc = llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: quantization_status '%s' is not supported (compressed)", ct->cfg_path, status);
        goto fail;
    }
    if (!empty_or_null(cJSON_GetObjectItemCaseSensitive(qc, "kv_cache_scheme"))) {
        rc = llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: a kv_cache_scheme is not supported", ct->cfg_path);
        goto fail;
    }
    if (!empty_or_null(cJSON_GetObjectItemCaseSensitive(qc, "sparsity_config"))) {
        rc = llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: a sparsity_config is not supported", ct->cfg_path);
        goto fail;
    }
    if (!empty_or_null(cJSON_GetObjectItemCaseSensitive(qc, "transform_config"))) {
        rc = llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: a transform_config is not supported", ct->cfg_path);
        goto fail;
    }
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(qc, "config_groups"), *gv;
    if (!cJSON_IsObject(groups) || !groups->child) {
        rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: quantization_config: 'config_groups' must be a non-empty object", ct->cfg_path);
        goto fail;
    }
    if (cJSON_GetArraySize(groups) > CT_MAX_GROUPS) {
        rc = llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: more than %d config groups", ct->cfg_path, CT_MAX_GROUPS);
        goto fail;
    }
    cJSON_ArrayForEach(gv, groups) {
        if ((rc = parse_group(ct, gv->string, gv, &ct->g[ct->n_groups], err))) { ct->n_groups++; goto fail; }
        ct->n_groups++;
    }
    ct->ignore = cJSON_GetObjectItemCaseSensitive(qc, "ignore");
    if (cJSON_IsNull(ct->ignore)) ct->ignore = NULL;
    if ((rc = compile_names(ct, ct->ignore, "quantization_config: 'ignore'", &ct->ignore_re, err))) goto fail;
    free(text);
    *out = ct;
    return LLMQ_OK;
fail:
    free(text);
    llmq_ct_free(ct);
    return rc;
}

void llmq_ct_name(const llmq_ct *ct, char *buf, size_t n)
{
    const ct_group *g = &ct->g[0];
    if (ct->format == CT_NVFP4) snprintf(buf, n, "%s", llmq_ct_act_fp4(ct) ? "ct-nvfp4-w4a4-weight-only" : "ct-nvfp4a16");
    else if (g->bits == 8) snprintf(buf, n, "ct-w8a%d%s", g->act_int8 ? 8 : 16, ct->format == CT_PACK ? "-packed" : "");
    else if (g->group) snprintf(buf, n, "ct-w4a16-g%d-%s", g->group, g->sym ? "sym" : "asym");
    else snprintf(buf, n, "ct-w4a16-channel-%s", g->sym ? "sym" : "asym");
}

int llmq_ct_act_int8(const llmq_ct *ct)
{
    for (int i = 0; i < ct->n_groups; i++)
        if (ct->g[i].act_int8) return 1;
    return 0;
}

int llmq_ct_act_fp4(const llmq_ct *ct)
{
    for (int i = 0; i < ct->n_groups; i++)
        if (ct->g[i].act_fp4) return 1;
    return 0;
}

/* ---- reading a linear ---- */

static const llmq_st_tensor *find(const llmq_ckpt *c, const char *prefix, const char *suffix, const char **path)
{
    char name[320];
    const llmq_st_file *f = NULL;
    snprintf(name, sizeof name, "%s.%s", prefix, suffix);
    const llmq_st_tensor *t = llmq_ckpt_find(c, name, &f);
    *path = f ? f->path : c->shards[0].path;
    return t;
}

static int want(const llmq_ckpt *c, const char *prefix, const char *suffix, const llmq_dtype *dts, int n_dt,
                int64_t d0, int64_t d1, const llmq_st_tensor **out, llmq_err *err)
{
    const char *path;
    const llmq_st_tensor *t = find(c, prefix, suffix, &path);
    if (!t) return llmq_errorf(err, LLMQ_EFORMAT, "%s: missing tensor '%s.%s'", path, prefix, suffix);
    int ok_dt = 0;
    char dl[64] = "";
    for (int i = 0; i < n_dt; i++) {
        ok_dt |= t->dtype == dts[i];
        snprintf(dl + strlen(dl), sizeof dl - strlen(dl), "%s%s", i ? "/" : "", llmq_dtype_name(dts[i]));
    }
    if (!ok_dt || t->ndim != (d1 < 0 ? 1 : 2) || t->shape[0] != d0 || (d1 >= 0 && t->shape[1] != d1)) {
        char got[64] = "";
        for (int i = 0; i < t->ndim && i < 4; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%" PRId64, i ? ", " : "", t->shape[i]);
        if (d1 < 0)
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s.%s' is %s [%s], must be %s [%" PRId64 "]", path, prefix,
                               suffix, llmq_dtype_name(t->dtype), got, dl, d0);
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s.%s' is %s [%s], must be %s [%" PRId64 ", %" PRId64 "]", path,
                           prefix, suffix, llmq_dtype_name(t->dtype), got, dl, d0, d1);
    }
    *out = t;
    return LLMQ_OK;
}

/* P.weight_shape: I64 or I32 [2] holding {rows, cols}. */
static int check_shape(const llmq_ckpt *c, const char *prefix, int64_t rows, int64_t cols, llmq_err *err)
{
    static const llmq_dtype shdt[] = { LLMQ_DT_I64, LLMQ_DT_I32 };
    const llmq_st_tensor *shp;
    const char *path;
    int rc = want(c, prefix, "weight_shape", shdt, 2, 2, -1, &shp, err);
    if (rc) return rc;
    int64_t s0 = shp->dtype == LLMQ_DT_I64 ? (int64_t)llmq_get_le64(shp->data) : (int32_t)llmq_get_le32(shp->data);
    int64_t s1 = shp->dtype == LLMQ_DT_I64 ? (int64_t)llmq_get_le64(shp->data + 8) : (int32_t)llmq_get_le32(shp->data + 4);
    if (s0 != rows || s1 != cols) {
        find(c, prefix, "weight_shape", &path);
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s.weight_shape' says [%" PRId64 ", %" PRId64 "], config.json implies [%"
                           PRId64 ", %" PRId64 "]", path, prefix, s0, s1, rows, cols);
    }
    return LLMQ_OK;
}

static float elem_f(const llmq_st_tensor *t, uint64_t i)
{
    const uint8_t *d = t->data;
    return t->dtype == LLMQ_DT_F32 ? llmq_bits_f32(llmq_get_le32(d + 4 * i))
         : t->dtype == LLMQ_DT_BF16 ? llmq_bf16_to_f32(llmq_get_le16(d + 2 * i))
         : llmq_f16_to_f32(llmq_get_le16(d + 2 * i));
}

/* What follows the codes of a symmetric int8 linear, int-quantized or
 * pack-quantized alike: no zero point, and sc (prefix.weight_scale, rows x 1)
 * as w->rows finite f32 scales, owned by ct, in w->scales; w->type Q8. */
static int int8_row_scales(llmq_ct *ct, const llmq_ckpt *c, const char *prefix, const llmq_st_tensor *sc, llmq_wmat *w,
                           llmq_err *err)
{
    const char *path;
    if (find(c, prefix, "weight_zero_point", &path))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s.weight_zero_point' contradicts symmetric int8 weights", path, prefix);
    float *s = llmq_alloc_aligned((size_t)w->rows * sizeof(float), err);
    if (!s) return err->code;
    int rc = ct_own(ct, s, err);
    if (rc) return rc;
    find(c, prefix, "weight_scale", &path);
    for (int64_t r = 0; r < w->rows; r++) {
        s[r] = elem_f(sc, (uint64_t)r);
        if (!isfinite(s[r]))
            return llmq_errorf(err, LLMQ_ENONFINITE, "%s: tensor '%s.weight_scale': element %" PRId64 " is NaN or Inf", path, prefix, r);
    }
    w->type = LLMQ_W_Q8;
    w->scales = s;
    return LLMQ_OK;
}

/* prefix.suffix, F32 [1]: a global scale of an NVFP4 linear, finite and
 * positive, into *out. */
static int global_scale(const llmq_ckpt *c, const char *prefix, const char *suffix, float *out, llmq_err *err)
{
    static const llmq_dtype f32[] = { LLMQ_DT_F32 };
    const llmq_st_tensor *t;
    const char *path;
    int rc = want(c, prefix, suffix, f32, 1, 1, -1, &t, err);
    if (rc) return rc;
    float v = llmq_bits_f32(llmq_get_le32(t->data));
    find(c, prefix, suffix, &path);
    if (!isfinite(v))
        return llmq_errorf(err, LLMQ_ENONFINITE, "%s: tensor '%s.%s' is %g, not a finite number", path, prefix, suffix, (double)v);
    if (!(v > 0.0f))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s.%s' is %g, not a positive number", path, prefix, suffix, (double)v);
    *out = v;
    return LLMQ_OK;
}

/* An nvfp4-pack-quantized linear: codes and E4M3 block scales read in place
 * as LLMQ_W_NVFP4, tscale = 1 / weight_global_scale.  compressed-tensors
 * dequantizes fp4 * (weight_scale / weight_global_scale), one float32
 * division per block; llmq's kernels take fp4 * (weight_scale * tscale)
 * with tscale rounded once on its own, so a block's factor can differ from
 * compressed-tensors' by a float32 rounding or two (relative 2^-24 each). */
static int nvfp4_linear(const llmq_ct *ct, const llmq_ckpt *c, const ct_group *g, const char *prefix, int64_t rows,
                        int64_t cols, llmq_wmat *w, llmq_err *err)
{
    static const llmq_dtype u8[] = { LLMQ_DT_U8 }, e4m3[] = { LLMQ_DT_F8_E4M3 };
    const llmq_st_tensor *q, *sc;
    const char *path;
    float gs, igs;
    int rc;
    if (cols % 32)      /* the kernels walk rows 32 columns at a time, NV blocks of 16 too */
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: linear '%s': %" PRId64 " columns are not a multiple of 32 (llmq's "
                           "NVFP4 kernels)", ct->cfg_path, prefix, cols);
    if (find(c, prefix, "weight_zero_point", &path))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s.weight_zero_point' contradicts symmetric NVFP4 weights", path, prefix);
    if (find(c, prefix, "weight_shape", &path) && (rc = check_shape(c, prefix, rows, cols, err))) return rc;
    if ((rc = want(c, prefix, "weight_packed", u8, 1, rows, cols / 2, &q, err)) ||
        (rc = want(c, prefix, "weight_scale", e4m3, 1, rows, cols / 16, &sc, err)) ||
        (rc = global_scale(c, prefix, "weight_global_scale", &gs, err))) return rc;
    /* W4A4: checked, then unused - the activations stay float (see ctensors.h) */
    if (g->act_fp4) {
        if ((rc = global_scale(c, prefix, "input_global_scale", &igs, err))) return rc;
    } else if (find(c, prefix, "input_global_scale", &path)) {
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s.input_global_scale' is present but %s quantizes no input "
                           "activations of '%s'", path, prefix, ct->cfg_path, prefix);
    }
    find(c, prefix, "weight_scale", &path);
    for (uint64_t i = 0; i < sc->nelem; i++)
        if (llmq_e4m3_is_nan(sc->data[i]))
            return llmq_errorf(err, LLMQ_ENONFINITE, "%s: tensor '%s.weight_scale': element %" PRIu64 " is NaN (E4M3 0x%02x)",
                               path, prefix, i, sc->data[i]);
    float ts = 1.0f / gs;
    if (!isfinite(ts)) {
        find(c, prefix, "weight_global_scale", &path);
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s.weight_global_scale' is %g, too small for its reciprocal to be a "
                           "float", path, prefix, (double)gs);
    }
    w->type = LLMQ_W_NVFP4;
    w->group = 16;
    w->data = q->data;
    w->scales = sc->data;
    w->tscale = ts;
    return LLMQ_OK;
}

/* Which group quantizes linear `prefix`, or NULL if it stays float. */
static int group_of(const llmq_ct *ct, const char *prefix, const ct_group **out, llmq_err *err)
{
    *out = NULL;
    int r = ct->ignore ? names_match(ct->ignore, ct->ignore_re, prefix, 1) : 0;
    if (r < 0) return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: an 'ignore' pattern ran too long on '%s'", ct->cfg_path, prefix);
    if (r) return LLMQ_OK;
    for (int i = 0; i < ct->n_groups; i++) {
        r = names_match(ct->g[i].targets, ct->g[i].target_re, prefix, 1);
        if (r < 0) return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: a 'targets' pattern ran too long on '%s'", ct->cfg_path, prefix);
        if (!r) continue;
        if (*out)
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: linear '%s' is targeted by config groups '%s' and '%s'", ct->cfg_path,
                               prefix, (*out)->name, ct->g[i].name);
        *out = &ct->g[i];
    }
    return LLMQ_OK;
}

int llmq_ct_linear(llmq_ct *ct, const llmq_ckpt *c, const char *prefix, int64_t rows, int64_t cols,
                   llmq_wmat *w, int *found, llmq_err *err)
{
    static const char *qsuffix[] = { "weight_packed", "weight_scale", "weight_zero_point", "weight_shape", "weight_g_idx",
                                     "weight_global_scale", "input_global_scale" };
    static const llmq_dtype fdt[] = { LLMQ_DT_F16, LLMQ_DT_BF16, LLMQ_DT_F32 };
    const ct_group *g;
    const char *path;
    int rc;
    *found = 0;
    if ((rc = group_of(ct, prefix, &g, err))) return rc;
    if (!g) {
        for (size_t i = 0; i < LLMQ_ARRAY_LEN(qsuffix); i++)
            if (find(c, prefix, qsuffix[i], &path))
                return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s.%s' is present but %s leaves '%s' unquantized",
                                   path, prefix, qsuffix[i], ct->cfg_path, prefix);
        return LLMQ_OK;
    }
    if (rows < 1 || cols < 1 || rows > INT32_MAX || cols > INT32_MAX) return LLMQ_BUG(err, "linear shape");
    const int64_t ng = g->group ? cols / g->group : 1;
    if (g->group && cols % g->group)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: linear '%s': %" PRId64 " columns are not a multiple of group_size %d",
                           ct->cfg_path, prefix, cols, g->group);
    if (find(c, prefix, "weight_g_idx", &path))
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: tensor '%s.weight_g_idx': permuted groups (actorder) are not supported",
                           path, prefix);
    const llmq_st_tensor *q, *sc, *zp = NULL;
    memset(w, 0, sizeof *w);
    w->rows = rows;
    w->cols = cols;
    if (ct->format == CT_NVFP4) {
        if ((rc = nvfp4_linear(ct, c, g, prefix, rows, cols, w, err))) return rc;
        *found = 1;
        return LLMQ_OK;
    }

    if (ct->format == CT_INT) {
        static const llmq_dtype i8[] = { LLMQ_DT_I8 };
        if ((rc = want(c, prefix, "weight", i8, 1, rows, cols, &q, err)) ||
            (rc = want(c, prefix, "weight_scale", fdt, 3, rows, 1, &sc, err)) ||
            (rc = int8_row_scales(ct, c, prefix, sc, w, err))) return rc;
        w->data = q->data;
        *found = 1;
        return LLMQ_OK;
    }

    static const llmq_dtype i32[] = { LLMQ_DT_I32 };
    if (g->bits == 8) {
        /* pack-quantized int8 (llm-compressor's W8A16): 4 bytes q + 128 per int32, low byte first */
        if (cols % 4)
            return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: linear '%s': %" PRId64 " columns are not a multiple of 4",
                               ct->cfg_path, prefix, cols);
        if ((rc = check_shape(c, prefix, rows, cols, err))) return rc;
        if ((rc = want(c, prefix, "weight_packed", i32, 1, rows, cols / 4, &q, err)) ||
            (rc = want(c, prefix, "weight_scale", fdt, 3, rows, 1, &sc, err)) ||
            (rc = int8_row_scales(ct, c, prefix, sc, w, err))) return rc;
        uint64_t n = (uint64_t)rows * (uint64_t)cols;
        int8_t *codes = llmq_alloc_aligned((size_t)n, err);
        if (!codes) return err->code;
        if ((rc = ct_own(ct, codes, err))) return rc;
        for (uint64_t i = 0; i < n; i++) codes[i] = (int8_t)(q->data[i] ^ 0x80u);
        w->data = codes;
        *found = 1;
        return LLMQ_OK;
    }

    /* pack-quantized int4 */
    if (cols % 32)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: linear '%s': %" PRId64 " columns are not a multiple of 32 (llmq's int4 kernels)",
                           ct->cfg_path, prefix, cols);
    if ((rc = check_shape(c, prefix, rows, cols, err))) return rc;
    if ((rc = want(c, prefix, "weight_packed", i32, 1, rows, cols / 8, &q, err)) ||
        (rc = want(c, prefix, "weight_scale", fdt, 3, rows, ng, &sc, err))) return rc;
    const llmq_st_tensor *zt = find(c, prefix, "weight_zero_point", &path);
    if (zt) {
        /* packed along the rows (int32), or the int8 of older writers */
        static const llmq_dtype zdt[] = { LLMQ_DT_I32, LLMQ_DT_I8 };
        int64_t zr = zt->dtype == LLMQ_DT_I8 ? rows : (rows + 7) / 8;
        if ((rc = want(c, prefix, "weight_zero_point", zdt, 2, zr, ng, &zp, err))) return rc;
    } else if (!g->sym) {
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: missing tensor '%s.weight_zero_point' (asymmetric weights)", path, prefix);
    }

    /* llmq's group: the widest of 128, 64, 32 dividing the file's; wider
     * groups repeat their scale and zero point (exact) */
    const int64_t G = g->group ? g->group : cols;
    const int lg = G % 128 == 0 ? 128 : G % 64 == 0 ? 64 : 32;
    const int64_t rep = G / lg, lng = cols / lg;
    const char *spath;
    find(c, prefix, "weight_scale", &spath);
    uint16_t *s16 = NULL;
    if (sc->dtype == LLMQ_DT_F16 && rep == 1 && (uintptr_t)sc->data % 2 == 0) {
        w->scales = sc->data;
        uint64_t at;
        for (at = 0; at < sc->nelem; at++)
            if ((llmq_get_le16(sc->data + 2 * at) & 0x7c00u) == 0x7c00u)
                return llmq_errorf(err, LLMQ_ENONFINITE, "%s: tensor '%s.weight_scale': element %" PRIu64 " is NaN or Inf",
                                   spath, prefix, at);
    } else {
        if (!(s16 = llmq_alloc_aligned((size_t)(rows * lng) * 2, err))) return err->code;
        if ((rc = ct_own(ct, s16, err))) return rc;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = 0; k < ng; k++) {
                uint64_t i = (uint64_t)(r * ng + k);
                float v = elem_f(sc, i);
                if (!isfinite(v))
                    return llmq_errorf(err, LLMQ_ENONFINITE, "%s: tensor '%s.weight_scale': element %" PRIu64 " is NaN or Inf",
                                       spath, prefix, i);
                uint16_t h = sc->dtype == LLMQ_DT_F16 ? llmq_get_le16(sc->data + 2 * i) : llmq_f32_to_f16(v);
                if (llmq_f16_to_f32(h) != v)
                    return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: tensor '%s.weight_scale': element %" PRIu64 " = %.9g is no f16 value "
                                       "(llmq's int4 scales are f16)", spath, prefix, i, (double)v);
                for (int64_t e = 0; e < rep; e++) s16[r * lng + k * rep + e] = h;
            }
        w->scales = s16;
    }
    if (zp) {
        uint8_t *z = llmq_alloc_aligned((size_t)(rows * lng), err);
        if (!z) return err->code;
        if ((rc = ct_own(ct, z, err))) return rc;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = 0; k < ng; k++) {
                int v;   /* the unsigned (offset by 8) zero point */
                if (zp->dtype == LLMQ_DT_I8) {
                    v = (int8_t)zp->data[r * ng + k] + 8;
                } else {
                    uint32_t word = llmq_get_le32(zp->data + 4 * ((r / 8) * ng + k));
                    v = (int)((word >> (4 * (r % 8))) & 15u);
                }
                if (v < 0 || v > 15)
                    return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s.weight_zero_point': row %" PRId64 " group %" PRId64
                                       " holds %d, outside the 4-bit range [-8, 7]", path, prefix, r, k, v - 8);
                if (g->sym && v != LLMQ_Q4_ZERO_SYM)
                    return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s.weight_zero_point': row %" PRId64 " group %" PRId64
                                       " is %d, but the weights are symmetric", path, prefix, r, k, v - 8);
                for (int64_t e = 0; e < rep; e++) z[r * lng + k * rep + e] = (uint8_t)v;
            }
        w->zeros = g->sym ? NULL : z;
    }
    /* element j of a row: bits 4 (j % 8) of little-endian int32 j / 8, i.e.
     * byte j / 2, low nibble first: LLMQ_W_Q4's layout, read in place */
    w->type = LLMQ_W_Q4;
    w->group = lg;
    w->data = q->data;
    *found = 1;
    return LLMQ_OK;
}
