/* model.c - assemble and check a model from config.json + safetensors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <sys/mman.h>
#include "model.h"
#include "base/blocks.h"
#include "quant/quant.h"
#include "base/fileio.h"
#include "linears.h"
#include "../formats/packed.h"
#include "../formats/gguf.h"
#include "../formats/ctensors.h"

/* Remember a buffer the loader allocated; close frees it. On failure p is
 * freed here so callers need no cleanup. */
int llmq_model_own(llmq_model *m, void *p, llmq_err *err)
{
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? 2 * m->cap_owned : 64;
        void **n = realloc(m->owned, (size_t)cap * sizeof *n);
        if (!n) { free(p); return llmq_errorf(err, LLMQ_ENOMEM, "out of memory"); }
        m->owned = n;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = p;
    return LLMQ_OK;
}

static int own(llmq_model *m, void *p, llmq_err *err) { return llmq_model_own(m, p, err); }

const llmq_st_tensor *llmq_model_tensor(const llmq_model *m, const char *name)
{
    return llmq_ckpt_find(&m->ckpt, name, NULL);
}

static const char *shard_path(const llmq_model *m, const char *name)
{
    const llmq_st_file *f = NULL;
    llmq_ckpt_find(&m->ckpt, name, &f);
    return f ? f->path : m->path;
}

/* 1 if any element is NaN or Inf (exponent bits all ones); *where is the
 * first.  A branch-free pass over chunks (the compiler vectorizes it) finds
 * a bad chunk, then a second look finds the element: loading a model scans
 * every weight, so this runs at memory speed. */
#define FINITE_CHUNK 4096
int llmq_tensor_nonfinite(const llmq_st_tensor *t, uint64_t *where)
{
    const uint8_t *d = t->data;
    uint64_t n = t->nelem;
    size_t esz = llmq_dtype_size(t->dtype);
    uint32_t mask = t->dtype == LLMQ_DT_BF16 ? 0x7f80u : t->dtype == LLMQ_DT_F16 ? 0x7c00u : 0x7f800000u;
    if (t->dtype != LLMQ_DT_BF16 && t->dtype != LLMQ_DT_F16 && t->dtype != LLMQ_DT_F32) return 0;
    for (uint64_t c0 = 0; c0 < n; c0 += FINITE_CHUNK) {
        uint64_t c1 = LLMQ_MIN(n, c0 + FINITE_CHUNK);
        int bad = 0;
        if (esz == 2) {
            for (uint64_t i = c0; i < c1; i++) {
                uint16_t v;
                memcpy(&v, d + 2 * i, 2);   /* little-endian host (x86-64) */
                bad |= (v & mask) == mask;
            }
        } else {
            for (uint64_t i = c0; i < c1; i++) {
                uint32_t v;
                memcpy(&v, d + 4 * i, 4);
                bad |= (v & mask) == mask;
            }
        }
        if (!bad) continue;
        for (uint64_t i = c0; i < c1; i++) {
            uint32_t v = esz == 2 ? llmq_get_le16(d + 2 * i) : llmq_get_le32(d + 4 * i);
            if ((v & mask) == mask) { *where = i; return 1; }
        }
    }
    return 0;
}

static int check_finite(const llmq_model *m, const char *name, const llmq_st_tensor *t, llmq_err *err)
{
    uint64_t at;
    if (llmq_tensor_nonfinite(t, &at))
        return llmq_errorf(err, LLMQ_ENONFINITE, "%s: tensor '%s': element %" PRIu64 " is NaN or Inf",
                           shard_path(m, name), name, at);
    /* the check read every byte: leave none resident, so that opening a
     * model larger than memory holds one tensor at a time */
    llmq_ckpt_release(&m->ckpt, t);
    return LLMQ_OK;
}

static int is_float_dtype(llmq_dtype dt)
{
    return dt == LLMQ_DT_F32 || dt == LLMQ_DT_BF16 || dt == LLMQ_DT_F16;
}

static int shape_err(const llmq_model *m, const char *name, const llmq_st_tensor *t,
                     int64_t r, int64_t c, llmq_err *err)
{
    char got[64] = "", want[64];
    int k = 0;
    for (int i = 0; i < t->ndim; i++)
        k += snprintf(got + k, sizeof got - (size_t)k, "%s%" PRId64, i ? ", " : "", t->shape[i]);
    if (c > 0) snprintf(want, sizeof want, "%" PRId64 ", %" PRId64, r, c);
    else snprintf(want, sizeof want, "%" PRId64, r);
    return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s' has shape [%s], config.json implies [%s]",
                       shard_path(m, name), name, got, want);
}

/* A float matrix [rows, cols] named name (must exist). */
static int load_matrix(llmq_model *m, const char *name, int64_t rows, int64_t cols, llmq_wmat *w, llmq_err *err)
{
    const llmq_st_tensor *t = llmq_model_tensor(m, name);
    if (!t) return llmq_errorf(err, LLMQ_EFORMAT, "%s: missing tensor '%s'", m->path, name);
    if (!is_float_dtype(t->dtype))
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: tensor '%s': dtype %s is not supported for weights (F32, F16, BF16)",
                           shard_path(m, name), name, llmq_dtype_name(t->dtype));
    if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols) return shape_err(m, name, t, rows, cols, err);
    int rc = check_finite(m, name, t, err);
    if (rc) return rc;
    memset(w, 0, sizeof *w);
    w->rows = rows;
    w->cols = cols;
    w->data = t->data;
    w->type = t->dtype == LLMQ_DT_F32 ? LLMQ_W_F32 : t->dtype == LLMQ_DT_BF16 ? LLMQ_W_BF16 : LLMQ_W_F16;
    size_t esz = llmq_dtype_size(t->dtype);
    if (((uintptr_t)t->data % esz) != 0) {
        /* misaligned in the file: keep an aligned copy */
        void *p = llmq_alloc_aligned(t->nbytes, err);
        if (!p) return err->code;
        memcpy(p, t->data, t->nbytes);
        if ((rc = own(m, p, err))) return rc;
        w->data = p;
    }
    return LLMQ_OK;
}

/* The values of a packed linear's side tensors that no kernel can use: a
 * NaN or Inf scale (int8 f32, int4 / int3 f16), an E8M0 exponent of 255
 * (NaN in the OCP MX spec) or a zero point above the codes' range
 * (check_zeros).  pack never writes them, so a file holding them is
 * corrupt or hostile. */
static int check_packed(const llmq_model *m, const char *prefix, const llmq_wmat *w, llmq_err *err)
{
    char name[300];
    snprintf(name, sizeof name, "%s.scales", prefix);
    const llmq_st_tensor *t = llmq_model_tensor(m, name);
    const uint8_t *e = t->data;
    if (llmq_wtype_is_nv(w->type)) {
        for (uint64_t i = 0; i < t->nelem; i++)
            if (llmq_e4m3_is_nan(e[i]))
                return llmq_errorf(err, LLMQ_ENONFINITE, "%s: tensor '%s': element %" PRIu64 " is NaN (E4M3 0x%02x)",
                                   shard_path(m, name), name, i, e[i]);
        return LLMQ_OK;
    }
    if (w->type == LLMQ_W_MXFP8) {
        /* the codes are E4M3 too */
        char qn[300];
        snprintf(qn, sizeof qn, "%s.qweight", prefix);
        const llmq_st_tensor *q = llmq_model_tensor(m, qn);
        const uint8_t *c = q->data;
        for (uint64_t i = 0; i < q->nelem; i++)
            if (llmq_e4m3_is_nan(c[i]))
                return llmq_errorf(err, LLMQ_ENONFINITE, "%s: tensor '%s': element %" PRIu64 " is NaN (E4M3 0x%02x)",
                                   shard_path(m, qn), qn, i, c[i]);
    }
    if (w->type != LLMQ_W_MX8 && !llmq_wtype_is_block(w->type)) return check_finite(m, name, t, err);
    for (uint64_t i = 0; i < t->nelem; i++)
        if (e[i] == 255)
            return llmq_errorf(err, LLMQ_ENONFINITE, "%s: tensor '%s': element %" PRIu64 " is NaN (E8M0 255)",
                               shard_path(m, name), name, i);
    return LLMQ_OK;
}

/* Zero points above the codes' range: 15 for Q4 (int3 files in the int4
 * layout included, as before LLMQ_W_Q3), 7 for Q3. */
static int check_zeros(const llmq_model *m, const char *prefix, const llmq_wmat *w, llmq_err *err)
{
    char name[300];
    snprintf(name, sizeof name, "%s.zeros", prefix);
    const llmq_st_tensor *t = llmq_model_tensor(m, name);
    const uint8_t *z = t->data;
    const int bits = w->type == LLMQ_W_Q3 ? 3 : 4;
    for (uint64_t i = 0; i < t->nelem; i++)
        if (z[i] >= 1 << bits)
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': element %" PRIu64 " = %d is not a %d-bit zero point",
                               shard_path(m, name), name, i, z[i], bits);
    return LLMQ_OK;
}

/* A linear layer: packed (listed in the llmq metadata) or float. */
static int load_linear(llmq_model *m, const char *prefix, int64_t rows, int64_t cols, llmq_wmat *w, llmq_err *err)
{
    char name[300];
    int rc, found = 0;
    if (m->packed_meta) {
        if ((rc = llmq_packed_linear(&m->ckpt, m->packed_meta, prefix, rows, cols, w, &found, err))) return rc;
        if (found) {
            if ((rc = check_packed(m, prefix, w, err)) || (w->zeros && (rc = check_zeros(m, prefix, w, err)))) return rc;
            /* the kernels read scales as float / f16: copy if the file left them unaligned */
            size_t sz = w->type == LLMQ_W_Q8 ? 4 : w->type == LLMQ_W_Q4 || w->type == LLMQ_W_Q3 ? 2 : 1;
            if ((uintptr_t)w->scales % sz) {
                uint64_t n = w->type == LLMQ_W_Q8 ? (uint64_t)rows : (uint64_t)rows * (uint64_t)(cols / w->group);
                void *p = llmq_alloc_aligned(n * sz, err);
                if (!p) return err->code;
                memcpy(p, w->scales, n * sz);
                if ((rc = own(m, p, err))) return rc;
                w->scales = p;
            }
            return llmq_wmat_check(w, prefix, err);
        }
    }
    if (m->ct) {
        if ((rc = llmq_ct_linear(m->ct, &m->ckpt, prefix, rows, cols, w, &found, err))) return rc;
        if (found) return llmq_wmat_check(w, prefix, err);
    }
    snprintf(name, sizeof name, "%s.weight", prefix);
    return load_matrix(m, name, rows, cols, w, err);
}

int llmq_layer_of(const char *name, int n_layers, const char **rest)
{
    static const char pre[] = "model.layers.";
    if (strncmp(name, pre, sizeof pre - 1)) return -1;
    const char *p = name + sizeof pre - 1;
    long long l = 0;
    int nd = 0;
    for (; *p >= '0' && *p <= '9'; p++, nd++) {
        l = 10 * l + (*p - '0');
        if (l >= n_layers) return -1;
    }
    if (nd == 0 || (nd > 1 && name[sizeof pre - 1] == '0') || *p != '.') return -1;
    *rest = p + 1;
    return (int)l;
}

/* The linear `name` names, if this model has it and loaded it packed. */
static const llmq_wmat *packed_linear_of(const llmq_model *m, const char *name)
{
    const llmq_wmat *w = NULL;
    const char *r;
    int l;
    if (!strcmp(name, "lm_head")) {
        w = &m->lm_head;
    } else if ((l = llmq_layer_of(name, m->cfg.n_layers, &r)) >= 0) {
        int k = llmq_linear_find(r);
        if (k >= 0) w = llmq_layer_w(&m->layers[l], k);
    }
    return w && w->type > LLMQ_W_F16 ? w : NULL;
}

/* Every entry of llmq.linears must be a linear this model loaded from it:
 * one for a layer config.json does not have (or an lm_head that the tied
 * embeddings stand in for) means the metadata and the config disagree. */
static int check_linears_used(const llmq_model *m, llmq_err *err)
{
    const cJSON *lin = cJSON_GetObjectItemCaseSensitive(m->packed_meta, "linears"), *e;
    char q[LLMQ_QUOTE_SIZE];
    cJSON_ArrayForEach(e, lin)
        if (!packed_linear_of(m, e->string))
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: metadata 'llmq.linears' lists '%s', which this model "
                               "(%d layers in config.json) does not load from it", m->ckpt.shards[0].path,
                               llmq_quote(q, e->string), m->cfg.n_layers);
    return LLMQ_OK;
}

/* A vector of n floats converted to an owned fp32 copy; NULL if absent and
 * !required. */
static int load_vector(llmq_model *m, const char *name, int64_t n, int required, float **out, llmq_err *err)
{
    *out = NULL;
    const llmq_st_tensor *t = llmq_model_tensor(m, name);
    if (!t) {
        if (!required) return LLMQ_OK;
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: missing tensor '%s'", m->path, name);
    }
    if (!is_float_dtype(t->dtype))
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: tensor '%s': dtype %s is not supported (F32, F16, BF16)",
                           shard_path(m, name), name, llmq_dtype_name(t->dtype));
    if (t->ndim != 1 || t->shape[0] != n) return shape_err(m, name, t, n, 0, err);
    int rc = check_finite(m, name, t, err);
    if (rc) return rc;
    float *v = llmq_alloc_aligned((size_t)n * sizeof(float), err);
    if (!v) return err->code;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *d = t->data;
        v[i] = t->dtype == LLMQ_DT_F32 ? llmq_bits_f32(llmq_get_le32(d + 4 * i))
             : t->dtype == LLMQ_DT_BF16 ? llmq_bf16_to_f32(llmq_get_le16(d + 2 * i))
             : llmq_f16_to_f32(llmq_get_le16(d + 2 * i));
    }
    if ((rc = own(m, v, err))) return rc;
    *out = v;
    return LLMQ_OK;
}

/* A bias the config says must (or must not) be there. */
static int load_bias(llmq_model *m, const char *name, int64_t n, int expected, float **out, const char *flag, llmq_err *err)
{
    if (!expected) {
        *out = NULL;
        if (llmq_model_tensor(m, name))
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s' is present but config.json says %s is false",
                               shard_path(m, name), name, flag);
        return LLMQ_OK;
    }
    return load_vector(m, name, n, 1, out, err);
}

int llmq_is_gguf(const char *path)
{
    char b[4];
    FILE *f = llmq_is_dir(path) ? NULL : fopen(path, "rb");
    if (!f) return 0;
    int r = fread(b, 1, 4, f) == 4 && !memcmp(b, "GGUF", 4);
    fclose(f);
    return r;
}

int llmq_model_open_any(llmq_model *m, const char *path, llmq_err *err)
{
    return llmq_is_gguf(path) ? llmq_model_open_gguf(m, path, err) : llmq_model_open(m, path, err);
}

int llmq_model_open(llmq_model *m, const char *path, llmq_err *err)
{
    memset(m, 0, sizeof *m);
    int rc;
    if (llmq_is_gguf(path))
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: a GGUF file; this command reads Hugging Face checkpoints "
                           "(llmq verify reads GGUF)", path);
    m->path = llmq_strdup(path, err);
    if (!m->path) return err->code;
    if ((rc = llmq_ckpt_open(&m->ckpt, path, err))) { free(m->path); m->path = NULL; return rc; }
    if ((rc = llmq_config_load(&m->cfg, m->ckpt.dir, err))) goto fail_early;
    if ((rc = llmq_packed_meta(&m->ckpt.shards[0], &m->packed_meta, err))) goto fail_early;
    if (m->packed_meta && (rc = llmq_packed_check_crc(&m->ckpt, m->packed_meta, err))) goto fail_early;
    if (!m->packed_meta && (rc = llmq_ct_open(&m->ct, m->ckpt.dir, err))) goto fail_early;

    const llmq_config *c = &m->cfg;
    m->layers = llmq_calloc((size_t)c->n_layers, sizeof(llmq_layer), err);
    if (!m->layers) { rc = err->code; goto fail_early; }

    int64_t H = c->hidden, V = c->vocab;
    char name[256];
    if ((rc = load_matrix(m, "model.embed_tokens.weight", V, H, &m->embed, err))) goto fail;
    if (c->tie_embeddings) {
        if (llmq_model_tensor(m, "lm_head.weight") || llmq_model_tensor(m, "lm_head.qweight") ||
            llmq_model_tensor(m, "lm_head.weight_packed")) {
            if ((rc = load_linear(m, "lm_head", V, H, &m->lm_head, err))) goto fail;
        } else {
            m->lm_head = m->embed;
        }
    } else if ((rc = load_linear(m, "lm_head", V, H, &m->lm_head, err))) {
        goto fail;
    }
    if ((rc = load_vector(m, "model.norm.weight", H, 1, &m->final_norm, err))) goto fail;

    for (int l = 0; l < c->n_layers; l++) {
        llmq_layer *L = &m->layers[l];
        for (int i = 0; i < LLMQ_LIN_COUNT; i++) {
            snprintf(name, sizeof name, "model.layers.%d.%s", l, llmq_linears[i].hf);
            if ((rc = load_linear(m, name, llmq_linear_rows(c, i), llmq_linear_cols(c, i), llmq_layer_wp(L, i), err)))
                goto fail;
        }
        for (int i = 0; i < LLMQ_LIN_COUNT; i++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.bias", l, llmq_linears[i].hf);
            if ((rc = load_bias(m, name, llmq_linear_rows(c, i), llmq_linear_has_bias(c, i), llmq_layer_bp(L, i),
                                llmq_linears[i].bias_key, err)))
                goto fail;
        }
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        if ((rc = load_vector(m, name, H, 1, &L->attn_norm, err))) goto fail;
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        if ((rc = load_vector(m, name, H, 1, &L->mlp_norm, err))) goto fail;
    }
    if ((rc = check_linears_used(m, err))) goto fail;
    const llmq_wmat *w0 = &m->layers[0].wq;
    if (w0->type == LLMQ_W_F32 || w0->type == LLMQ_W_BF16 || w0->type == LLMQ_W_F16) {
        snprintf(m->weights_dtype, sizeof m->weights_dtype, "%s",
                 w0->type == LLMQ_W_F32 ? "f32" : w0->type == LLMQ_W_BF16 ? "bf16" : "f16");
    } else if (m->ct) {
        llmq_ct_name(m->ct, m->weights_dtype, sizeof m->weights_dtype);
    } else {
        const cJSON *lin = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(m->packed_meta, "linears"),
                                                            "model.layers.0.self_attn.q_proj");
        const cJSON *sn = cJSON_GetObjectItemCaseSensitive(lin, "scheme");
        snprintf(m->weights_dtype, sizeof m->weights_dtype, "%s", cJSON_IsString(sn) ? sn->valuestring : "packed");
    }
    return LLMQ_OK;
fail:
    llmq_model_close(m);
    return rc;
fail_early:
    cJSON_Delete(m->packed_meta);
    llmq_ct_free(m->ct);
    llmq_ckpt_close(&m->ckpt);
    free(m->path);
    memset(m, 0, sizeof *m);
    return rc;
}

void llmq_model_close(llmq_model *m)
{
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    if (m->packed_meta) cJSON_Delete(m->packed_meta);
    if (m->gguf) llmq_gguf_close(m->gguf);
    free(m->gguf);
    llmq_ct_free(m->ct);
    llmq_ckpt_close(&m->ckpt);
    free(m->path);
    memset(m, 0, sizeof *m);
}

static void release_w(const llmq_model *m, const llmq_wmat *W)
{
    uint64_t r = (uint64_t)W->rows, n = r * (uint64_t)W->cols;
    uint64_t g = W->group > 0 ? n / (uint64_t)W->group : 0;
    switch (W->type) {
    case LLMQ_W_Q8: llmq_ckpt_release_bytes(&m->ckpt, W->data, n); llmq_ckpt_release_bytes(&m->ckpt, W->scales, 4 * r); break;
    case LLMQ_W_Q4:
        llmq_ckpt_release_bytes(&m->ckpt, W->data, n / 2);
        llmq_ckpt_release_bytes(&m->ckpt, W->scales, 2 * g);
        if (W->zeros) llmq_ckpt_release_bytes(&m->ckpt, W->zeros, g);
        break;
    case LLMQ_W_Q3:
        llmq_ckpt_release_bytes(&m->ckpt, W->data, n / 8 * 3);
        llmq_ckpt_release_bytes(&m->ckpt, W->scales, 2 * g);
        if (W->zeros) llmq_ckpt_release_bytes(&m->ckpt, W->zeros, g);
        break;
    case LLMQ_W_MX8: llmq_ckpt_release_bytes(&m->ckpt, W->data, n); llmq_ckpt_release_bytes(&m->ckpt, W->scales, g); break;
    case LLMQ_W_MXFP4:
    case LLMQ_W_MXINT4:
    case LLMQ_W_NVFP4:
    case LLMQ_W_NVINT4:
    case LLMQ_W_MXFP8:
        llmq_ckpt_release_bytes(&m->ckpt, W->data, llmq_wtype_is_block4(W->type) ? n / 2 : n);
        llmq_ckpt_release_bytes(&m->ckpt, W->scales, g);
        break;
    default: llmq_ckpt_release_bytes(&m->ckpt, W->data, llmq_wmat_bytes(W)); break;   /* float types */
    }
}

/* The matrices a decode step streams: the layers' linears, then the LM
 * head.  n = 7 * n_layers + 1.  (The embeddings are read a row per token:
 * they keep the file's layout and stay mapped unless tied to the head.) */
static llmq_wmat *model_w(llmq_model *m, int i)
{
    int nl = LLMQ_LIN_COUNT * m->cfg.n_layers;
    if (i < nl) return llmq_layer_wp(&m->layers[i / LLMQ_LIN_COUNT], i % LLMQ_LIN_COUNT);
    return &m->lm_head;
}

/* The bytes W takes in the runner's layout, 0 if it keeps its own. */
static uint64_t ilv_bytes(const llmq_wmat *W, int q4_lanes)
{
    if (q4_lanes && llmq_wmat_lanes_ok(W)) return llmq_wmat_lanes_bytes(W);
    if (llmq_wmat_interleavable(W)) return (uint64_t)W->rows * (uint64_t)llmq_wmat_row_bytes(W);
    return 0;
}

int llmq_model_interleave(llmq_model *m, int q4_lanes, llmq_err *err)
{
    const char *env = getenv("LLMQ_INTERLEAVE");
    if (env && strcmp(env, "0") == 0) return LLMQ_OK;
    if (env && strcmp(env, "4") == 0) q4_lanes = 0;
    const int n = LLMQ_LIN_COUNT * m->cfg.n_layers + 1;
    uint64_t total = 0;
    for (int i = 0; i < n; i++) total += (ilv_bytes(model_w(m, i), q4_lanes) + 63) & ~(uint64_t)63;
    if (total == 0) return LLMQ_OK;
    const size_t huge = 2u << 20;       /* transparent huge pages where the kernel gives them */
    void *buf = NULL;
    if (total > SIZE_MAX - huge || posix_memalign(&buf, huge, (size_t)((total + huge - 1) / huge * huge)) != 0)
        return llmq_errorf(err, LLMQ_ENOMEM, "%s: out of memory interleaving %" PRIu64 " bytes of weights",
                           m->path ? m->path : "model", total);
#ifdef MADV_HUGEPAGE
    (void)madvise(buf, (size_t)((total + huge - 1) / huge * huge), MADV_HUGEPAGE);
#endif
    int rc = llmq_model_own(m, buf, err);
    if (rc) return rc;
    uint8_t *at = buf;
    for (int i = 0; i < n; i++) {
        llmq_wmat *W = model_w(m, i);
        const uint64_t room = ilv_bytes(W, q4_lanes);
        if (!room) continue;
        const void *old = W->data;
        const uint64_t bytes = (uint64_t)W->rows * (uint64_t)llmq_wmat_row_bytes(W);
        if (q4_lanes && llmq_wmat_lanes_ok(W)) {
            llmq_wmat_interleave_lanes(W, at);
        } else {
            llmq_wmat_interleave(W, at);
            W->data = at;
            W->ilv = LLMQ_ILV_ROWS;
        }
        llmq_ckpt_release_bytes(&m->ckpt, old, bytes);           /* no-op outside the maps */
        if (m->gguf) llmq_map_release(&m->gguf->map, old, bytes);
        if (i == n - 1 && m->embed.data == old) m->embed = *W;   /* tied: one copy, one view */
        at += (room + 63) & ~(uint64_t)63;
    }
    return LLMQ_OK;
}

void llmq_model_release_layer(const llmq_model *m, int l)
{
    if (l < 0 || l >= m->cfg.n_layers) return;
    for (int k = 0; k < LLMQ_LIN_COUNT; k++) release_w(m, llmq_layer_w(&m->layers[l], k));
}

uint64_t llmq_model_decode_bytes(const llmq_model *m)
{
    uint64_t b = llmq_wmat_bytes(&m->lm_head);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const llmq_layer *L = &m->layers[l];
        b += llmq_wmat_bytes(&L->wq) + llmq_wmat_bytes(&L->wk) + llmq_wmat_bytes(&L->wv) +
             llmq_wmat_bytes(&L->wo) + llmq_wmat_bytes(&L->w_gate) + llmq_wmat_bytes(&L->w_up) +
             llmq_wmat_bytes(&L->w_down);
    }
    return b;
}

int llmq_model_widen_q3(llmq_model *m, llmq_err *err)
{
    for (int l = 0; l <= m->cfg.n_layers; l++)
        for (int k = 0; k < (l < m->cfg.n_layers ? LLMQ_LIN_COUNT : 1); k++) {
            llmq_wmat *w = l < m->cfg.n_layers ? llmq_layer_wp(&m->layers[l], k) : &m->lm_head;   /* then the head */
            if (w->type != LLMQ_W_Q3) continue;
            uint8_t *nib = llmq_alloc_aligned((size_t)(w->rows * (w->cols / 2)), err);
            int rc;
            if (!nib) return err->code;
            if ((rc = own(m, nib, err))) return rc;
            llmq_q3_unpack(w->data, w->rows, w->cols, w->zeros == NULL, nib);
            w->data = nib;
            w->type = LLMQ_W_Q4;
        }
    return LLMQ_OK;
}

double llmq_model_bits_per_weight(const llmq_model *m)
{
    uint64_t bytes = 0, n = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < LLMQ_LIN_COUNT; k++) {
            const llmq_wmat *w = llmq_layer_w(&m->layers[l], k);
            bytes += llmq_wmat_bytes(w);
            n += (uint64_t)w->rows * (uint64_t)w->cols;
        }
    const llmq_wmat *h = &m->lm_head;
    if (h->type != LLMQ_W_F32 && h->type != LLMQ_W_BF16 && h->type != LLMQ_W_F16) {
        bytes += llmq_wmat_bytes(h);
        n += (uint64_t)h->rows * (uint64_t)h->cols;
    }
    return n ? 8.0 * (double)bytes / (double)n : 0.0;
}

uint64_t llmq_model_file_bytes(const llmq_model *m)
{
    return llmq_ckpt_bytes(&m->ckpt);
}

uint64_t llmq_model_params(const llmq_model *m)
{
    const llmq_config *c = &m->cfg;
    uint64_t H = (uint64_t)c->hidden, I = (uint64_t)c->intermediate, V = (uint64_t)c->vocab;
    uint64_t qd = (uint64_t)c->n_heads * (uint64_t)c->head_dim, kvd = (uint64_t)c->n_kv_heads * (uint64_t)c->head_dim;
    uint64_t per = H * qd * 2 + H * kvd * 2 + 3 * H * I + 2 * H;
    if (c->qkv_bias) per += qd + 2 * kvd;
    if (c->o_bias) per += H;
    if (c->mlp_bias) per += 2 * I + H;
    return V * H * (c->tie_embeddings ? 1 : 2) + H + per * (uint64_t)c->n_layers;
}
