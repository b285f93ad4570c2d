/*
 * model_gguf.c - a model from a GGUF file, the format llama.cpp runs: the
 * config from the file's metadata ({arch}.* keys), the weights as views of
 * its blocks (any type lib/kernels runs: F32, F16, BF16, Q8_0, Q4_0, Q4_1,
 * Q5_0, Q5_1, Q2_K..Q6_K).
 *
 * Two things differ from a Hugging Face checkpoint:
 *   - llama.cpp's "llama" architecture rotates adjacent pairs (x[2i],
 *     x[2i+1]) where transformers rotates (x[i], x[i + d/2]), so the q and
 *     k rows of every head were reordered when the file was made
 *     (convert_hf_to_gguf.py, llmq export).  Rows are whole runs of blocks
 *     in every ggml type, so the loader puts them back in Hugging Face's
 *     order by copying rows; the runner stays as it is.  "qwen2" rotates as
 *     transformers does and is not reordered.
 *   - Llama 3.x rope scaling is stored as rope_freqs.weight, one divisor
 *     per rotary frequency, not as the scaling parameters.
 */
#include <stdio.h>
#include "model.h"
#include "linears.h"
#include "base/fileio.h"
#include "../formats/gguf.h"
#include "quant/ggml_blocks.h"

/* The first element (float types) or block (quantized types) of t holding
 * a NaN or Inf, in *at; 0 if none. */
static int gguf_nonfinite(const llmq_gguf_tensor *t, uint64_t *at)
{
    const uint8_t *d = t->data;
    if (t->type == LLMQ_GGML_F32 || t->type == LLMQ_GGML_F16 || t->type == LLMQ_GGML_BF16) {
        llmq_st_tensor v;
        memset(&v, 0, sizeof v);
        v.dtype = t->type == LLMQ_GGML_F32 ? LLMQ_DT_F32 : t->type == LLMQ_GGML_F16 ? LLMQ_DT_F16 : LLMQ_DT_BF16;
        v.data = d;
        v.nelem = t->nelem;
        return llmq_tensor_nonfinite(&v, at);
    }
    int wt = llmq_wtype_of_ggml(t->type);
    if (wt >= 0 && llmq_wtype_is_ggml((llmq_wtype)wt)) {
        const llmq_gq_traits *g = &llmq_gq_types[wt - LLMQ_W_GQ8_0];
        return llmq_gq_nonfinite(g, d, t->nbytes / (uint64_t)g->block_bytes, at);
    }
    return 0;
}

/* ---- metadata ---- */

static int get_u32_opt(const llmq_gguf_file *f, const char *key, uint32_t *v, int *present, llmq_err *err)
{
    *present = llmq_gguf_find_kv(f, key) != NULL;
    return *present ? llmq_gguf_get_u32(f, key, v, err) : LLMQ_OK;
}

/* A count from key within [lo, hi]. */
static int get_count(const llmq_gguf_file *f, const char *key, int required, int dflt, long lo, long hi,
                     int *out, llmq_err *err)
{
    uint32_t v;
    int present, rc = get_u32_opt(f, key, &v, &present, err);
    if (rc) return rc;
    if (!present) {
        if (required) return llmq_errorf(err, LLMQ_EFORMAT, "%s: key '%s' is missing", f->path, key);
        *out = dflt;
        return LLMQ_OK;
    }
    if ((long)v < lo || (long)v > hi)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: key '%s' = %u is out of range [%ld, %ld]", f->path, key, v, lo, hi);
    *out = (int)v;
    return LLMQ_OK;
}

static int get_float_opt(const llmq_gguf_file *f, const char *key, double dflt, double *out, llmq_err *err)
{
    float v;
    if (!llmq_gguf_find_kv(f, key)) { *out = dflt; return LLMQ_OK; }
    int rc = llmq_gguf_get_f32(f, key, &v, err);
    if (rc) return rc;
    if (!(v >= 0.0f && v <= 3.4e38f))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: key '%s' = %g is not a finite number >= 0", f->path, key, (double)v);
    *out = v;
    return LLMQ_OK;
}

/* The string value of key as a NUL-terminated copy in buf (cut at n - 1
 * bytes), or "" if absent. */
static int get_str_opt(const llmq_gguf_file *f, const char *key, char *buf, size_t n, llmq_err *err)
{
    const char *s;
    uint64_t len;
    buf[0] = 0;
    if (!llmq_gguf_find_kv(f, key)) return LLMQ_OK;
    int rc = llmq_gguf_get_str(f, key, &s, &len, err);
    if (rc) return rc;
    size_t k = len < n - 1 ? (size_t)len : n - 1;
    memcpy(buf, s, k);
    buf[k] = 0;
    if (memchr(buf, 0, k)) buf[0] = 0;
    return LLMQ_OK;
}

static int gguf_config(llmq_config *c, const llmq_gguf_file *f, llmq_err *err)
{
    char arch[32], key[96], q[LLMQ_QUOTE_SIZE], rs[32];
    const llmq_gguf_tensor *t;
    int rc;
    memset(c, 0, sizeof *c);
    if (!llmq_gguf_find_kv(f, "general.architecture"))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: key 'general.architecture' is missing", f->path);
    if ((rc = get_str_opt(f, "general.architecture", arch, sizeof arch, err))) return rc;
    if (!strcmp(arch, "llama")) {
        c->arch = LLMQ_ARCH_LLAMA;
        snprintf(c->arch_name, sizeof c->arch_name, "LlamaForCausalLM");
    } else if (!strcmp(arch, "qwen2")) {
        c->arch = LLMQ_ARCH_QWEN2;
        snprintf(c->arch_name, sizeof c->arch_name, "Qwen2ForCausalLM");
    } else {
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: GGUF architecture '%s' is not supported (llama, qwen2)",
                           f->path, llmq_quote(q, arch));
    }
#define K(s) (snprintf(key, sizeof key, "%s.%s", arch, s), key)
    const long big = 1L << 24;
    if ((rc = get_count(f, K("embedding_length"), 1, 0, 1, big, &c->hidden, err)) ||
        (rc = get_count(f, K("feed_forward_length"), 1, 0, 1, big, &c->intermediate, err)) ||
        (rc = get_count(f, K("block_count"), 1, 0, 1, 4096, &c->n_layers, err)) ||
        (rc = get_count(f, K("attention.head_count"), 1, 0, 1, 65536, &c->n_heads, err)) ||
        (rc = get_count(f, K("attention.head_count_kv"), 0, c->n_heads, 1, 65536, &c->n_kv_heads, err)) ||
        (rc = get_count(f, K("context_length"), 0, 0, 0, 1L << 30, &c->max_pos, err)))
        return rc;
    if (c->hidden % c->n_heads && !llmq_gguf_find_kv(f, K("attention.key_length")))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: embedding_length %d is not a multiple of head_count %d",
                           f->path, c->hidden, c->n_heads);
    int vd = 0, rd = 0;
    if ((rc = get_count(f, K("attention.key_length"), 0, c->hidden / c->n_heads, 1, 65536, &c->head_dim, err)) ||
        (rc = get_count(f, K("attention.value_length"), 0, c->head_dim, 1, 65536, &vd, err)) ||
        (rc = get_count(f, K("rope.dimension_count"), 0, c->head_dim, 1, 65536, &rd, err)))
        return rc;
    if (vd != c->head_dim)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: value_length %d differs from key_length %d", f->path, vd, c->head_dim);
    if (rd != c->head_dim)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: rope.dimension_count %d: partial rotary embeddings "
                           "(fewer dimensions than key_length %d) are not supported", f->path, rd, c->head_dim);
    if (c->head_dim % 2)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: key_length %d is odd; rotary embeddings need it even", f->path, c->head_dim);
    if (c->n_heads % c->n_kv_heads)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: head_count %d is not a multiple of head_count_kv %d",
                           f->path, c->n_heads, c->n_kv_heads);
    if ((rc = get_float_opt(f, K("rope.freq_base"), 10000.0, &c->rope_theta, err)) ||
        (rc = get_float_opt(f, K("attention.layer_norm_rms_epsilon"), 1e-6, &c->rms_eps, err)))
        return rc;
    if (!(c->rope_theta > 0))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: key '%s' must be positive", f->path, K("rope.freq_base"));
    if ((rc = get_str_opt(f, K("rope.scaling.type"), rs, sizeof rs, err))) return rc;
    if (rs[0] && strcmp(rs, "none")) {
        if (strcmp(rs, "linear"))
            return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: rope scaling '%s' is not supported (linear)",
                               f->path, llmq_quote(q, rs));
        c->rope_type = LLMQ_ROPE_LINEAR;
        if ((rc = get_float_opt(f, K("rope.scaling.factor"), 1.0, &c->rope_factor, err))) return rc;
        if (!(c->rope_factor > 0))
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: rope.scaling.factor must be positive", f->path);
    }
    if (llmq_gguf_find_kv(f, K("expert_count")))
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: mixture-of-experts models are not supported", f->path);
#undef K
    if (!(t = llmq_gguf_find_tensor(f, "token_embd.weight")))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: missing tensor 'token_embd.weight'", f->path);
    if (t->n_dims != 2 || t->ne[1] < 1 || t->ne[1] > (1L << 28))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor 'token_embd.weight' is not a [vocab, %d] matrix", f->path, c->hidden);
    c->vocab = (int)t->ne[1];
    c->qkv_bias = llmq_gguf_find_tensor(f, "blk.0.attn_q.bias") != NULL;
    c->o_bias = llmq_gguf_find_tensor(f, "blk.0.attn_output.bias") != NULL;
    c->mlp_bias = llmq_gguf_find_tensor(f, "blk.0.ffn_up.bias") != NULL;
    c->tie_embeddings = llmq_gguf_find_tensor(f, "output.weight") == NULL;
    c->bos_id = c->eos_id = -1;
    uint32_t v;
    int present;
    if (!get_u32_opt(f, "tokenizer.ggml.bos_token_id", &v, &present, err) && present && v < (uint32_t)c->vocab) c->bos_id = (int)v;
    if (!get_u32_opt(f, "tokenizer.ggml.eos_token_id", &v, &present, err) && present && v < (uint32_t)c->vocab) c->eos_id = (int)v;
    snprintf(c->dtype, sizeof c->dtype, "gguf");
    return LLMQ_OK;
}

/* ---- tensors ---- */

static const llmq_gguf_tensor *need_tensor(llmq_model *m, const char *name, int required, llmq_err *err)
{
    const llmq_gguf_tensor *t = llmq_gguf_find_tensor(m->gguf, name);
    if (!t && required) llmq_errorf(err, LLMQ_EFORMAT, "%s: missing tensor '%s'", m->path, name);
    return t;
}

static int check_values(llmq_model *m, const llmq_gguf_tensor *t, llmq_err *err)
{
    uint64_t at;
    if (gguf_nonfinite(t, &at))
        return llmq_errorf(err, LLMQ_ENONFINITE, "%s: tensor '%s': %s %" PRIu64 " is NaN or Inf", m->path, t->name,
                           t->type <= LLMQ_GGML_F16 || t->type == LLMQ_GGML_BF16 ? "element" : "the scale of block", at);
    return LLMQ_OK;
}

/* Row order of a llama q or k matrix of `heads` heads: Hugging Face row r
 * is file row src_row(r) (see the top of this file). */
static int64_t src_row(int64_t r, int64_t rows, int heads)
{
    int64_t d = rows / heads, h = r / d, k = r % d, half = d / 2;
    return h * d + 2 * (k % half) + k / half;
}

/* A matrix [rows, cols] (ne = {cols, rows}) named name; heads > 0 puts its
 * rows back in Hugging Face's order (an owned copy). */
static int gguf_matrix(llmq_model *m, const char *name, int64_t rows, int64_t cols, int heads, llmq_wmat *w, llmq_err *err)
{
    const llmq_gguf_tensor *t = need_tensor(m, name, 1, err);
    if (!t) return err->code;
    if (t->n_dims != 2 || t->ne[0] != cols || t->ne[1] != rows)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s' has ne [%" PRId64 ", %" PRId64 "%s], the metadata implies [%"
                           PRId64 ", %" PRId64 "]", m->path, name, t->ne[0], t->n_dims > 1 ? t->ne[1] : 1,
                           t->n_dims > 2 ? ", ..." : "", cols, rows);
    int wt = llmq_wtype_of_ggml(t->type);
    if (wt < 0)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: tensor '%s': ggml type %s is not supported (llmq runs F32, F16, BF16, "
                           "Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)", m->path, name,
                           llmq_ggml_type_name_any(t->type));
    int rc = check_values(m, t, err);
    if (rc) return rc;
    memset(w, 0, sizeof *w);
    w->type = (llmq_wtype)wt;
    w->rows = rows;
    w->cols = cols;
    w->data = t->data;
    w->group = llmq_wtype_is_ggml(w->type) ? llmq_gq_types[w->type - LLMQ_W_GQ8_0].qk : 0;
    uint64_t rb = t->nbytes / (uint64_t)rows;
    int misaligned = (w->type == LLMQ_W_F32 && (uintptr_t)t->data % 4) ||
                     ((w->type == LLMQ_W_F16 || w->type == LLMQ_W_BF16) && (uintptr_t)t->data % 2);
    if (heads > 0 || misaligned) {
        if (heads > 0 && (rows % heads || (rows / heads) % 2))
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': %" PRId64 " rows do not split into %d heads of even size",
                               m->path, name, rows, heads);
        uint8_t *p = llmq_alloc_aligned((size_t)t->nbytes, err);
        if (!p) return err->code;
        for (int64_t r = 0; r < rows; r++)
            memcpy(p + (uint64_t)r * rb, t->data + (uint64_t)(heads > 0 ? src_row(r, rows, heads) : r) * rb, (size_t)rb);
        if ((rc = llmq_model_own(m, p, err))) return rc;
        w->data = p;
    }
    return llmq_wmat_check(w, name, err);
}

/* A vector of n floats (F32, F16 or BF16) as an owned fp32 copy; heads > 0
 * reorders it like a q/k matrix's rows.  NULL if absent and !required. */
static int gguf_vector(llmq_model *m, const char *name, int64_t n, int required, int heads, float **out, llmq_err *err)
{
    *out = NULL;
    const llmq_gguf_tensor *t = need_tensor(m, name, required, err);
    if (!t) return required ? err->code : LLMQ_OK;
    if (t->type != LLMQ_GGML_F32 && t->type != LLMQ_GGML_F16 && t->type != LLMQ_GGML_BF16)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: tensor '%s': ggml type %s is not supported for a vector (F32, F16, BF16)",
                           m->path, name, llmq_ggml_type_name_any(t->type));
    if (t->n_dims != 1 || t->ne[0] != n)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s' has %d dims and ne[0] = %" PRId64 ", the metadata implies [%" PRId64 "]",
                           m->path, name, t->n_dims, t->ne[0], n);
    int rc = check_values(m, t, err);
    if (rc) return rc;
    if (heads > 0 && (n % heads || (n / heads) % 2))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': %" PRId64 " values do not split into %d heads of even size",
                           m->path, name, n, heads);
    float *v = llmq_alloc_aligned((size_t)n * sizeof(float), err);
    if (!v) return err->code;
    for (int64_t i = 0; i < n; i++) {
        int64_t s = heads > 0 ? src_row(i, n, heads) : i;
        const uint8_t *d = t->data;
        v[i] = t->type == LLMQ_GGML_F32 ? llmq_bits_f32(llmq_get_le32(d + 4 * s))
             : t->type == LLMQ_GGML_BF16 ? llmq_bf16_to_f32(llmq_get_le16(d + 2 * s))
             : llmq_f16_to_f32(llmq_get_le16(d + 2 * s));
    }
    if ((rc = llmq_model_own(m, v, err))) return rc;
    *out = v;
    return LLMQ_OK;
}

/* 1 if a model of config c reads the tensor named tn (the loads check
 * what it holds). */
static int known_tensor(const char *tn, const llmq_config *c)
{
    if (!strcmp(tn, "token_embd.weight") || !strcmp(tn, "output_norm.weight") || !strcmp(tn, "rope_freqs.weight"))
        return 1;
    if (!strcmp(tn, "output.weight")) return !c->tie_embeddings;
    if (strncmp(tn, "blk.", 4)) return 0;
    const char *p = tn + 4;
    long l = 0;
    int nd = 0;
    for (; *p >= '0' && *p <= '9' && nd < 6; p++, nd++) l = 10 * l + (*p - '0');
    if (nd == 0 || (nd > 1 && tn[4] == '0') || *p != '.' || l >= c->n_layers) return 0;
    p++;   /* a layer's tensors, under blk.<l>. */
    if (!strcmp(p, "attn_norm.weight") || !strcmp(p, "ffn_norm.weight")) return 1;
    for (int i = 0; i < LLMQ_LIN_COUNT; i++)
        if (!strcmp(p, llmq_linears[i].gguf) || !strcmp(p, llmq_linears[i].gguf_bias)) return 1;
    return 0;
}

int llmq_model_open_gguf(llmq_model *m, const char *path, llmq_err *err)
{
    memset(m, 0, sizeof *m);
    int rc;
    char name[96];
    if (!(m->path = llmq_strdup(path, err))) return err->code;
    if (!(m->gguf = llmq_calloc(1, sizeof *m->gguf, err))) { rc = err->code; goto fail; }
    if ((rc = llmq_gguf_open(m->gguf, path, err))) goto fail;
    if (!(m->ckpt.dir = llmq_path_dir(path, err))) { rc = err->code; goto fail; }
    if ((rc = gguf_config(&m->cfg, m->gguf, err))) goto fail;
    const llmq_config *c = &m->cfg;
    if (!(m->layers = llmq_calloc((size_t)c->n_layers, sizeof(llmq_layer), err))) { rc = err->code; goto fail; }
    int64_t H = c->hidden, V = c->vocab;
    int perm = c->arch == LLMQ_ARCH_LLAMA;

    if ((rc = gguf_matrix(m, "token_embd.weight", V, H, 0, &m->embed, err))) goto fail;
    if (c->tie_embeddings) m->lm_head = m->embed;
    else if ((rc = gguf_matrix(m, "output.weight", V, H, 0, &m->lm_head, err))) goto fail;
    if ((rc = gguf_vector(m, "output_norm.weight", H, 1, 0, &m->final_norm, err))) goto fail;
    const llmq_gguf_tensor *rf = llmq_gguf_find_tensor(m->gguf, "rope_freqs.weight");
    if (rf) {
        float *d;
        if ((rc = gguf_vector(m, "rope_freqs.weight", c->head_dim / 2, 1, 0, &d, err))) goto fail;
        for (int i = 0; i < c->head_dim / 2; i++)
            if (!(d[i] > 0)) {
                rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor 'rope_freqs.weight': element %d = %g is not a positive divisor",
                                 path, i, (double)d[i]);
                goto fail;
            }
        m->cfg.rope_divisors = d;
    }
    for (int l = 0; l < c->n_layers; l++) {
        llmq_layer *L = &m->layers[l];
        for (int i = 0; i < LLMQ_LIN_COUNT; i++) {
            /* llama.cpp's convert permutes q and k rows for its RoPE */
            int heads = !perm ? 0 : i == LLMQ_LIN_Q ? c->n_heads : i == LLMQ_LIN_K ? c->n_kv_heads : 0;
            snprintf(name, sizeof name, "blk.%d.%s", l, llmq_linears[i].gguf);
            if ((rc = gguf_matrix(m, name, llmq_linear_rows(c, i), llmq_linear_cols(c, i), heads, llmq_layer_wp(L, i), err))) goto fail;
            snprintf(name, sizeof name, "blk.%d.%s", l, llmq_linears[i].gguf_bias);
            if (!llmq_linear_has_bias(c, i)) {
                if (llmq_gguf_find_tensor(m->gguf, name)) {
                    rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s' is present but blk.0 has none", path, name);
                    goto fail;
                }
                continue;
            }
            if ((rc = gguf_vector(m, name, llmq_linear_rows(c, i), 1, heads, llmq_layer_bp(L, i), err))) goto fail;
        }
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        if ((rc = gguf_vector(m, name, H, 1, 0, &L->attn_norm, err))) goto fail;
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        if ((rc = gguf_vector(m, name, H, 1, 0, &L->mlp_norm, err))) goto fail;
    }
    /* Every tensor must be one this model reads: an extra layer or an
     * unknown tensor means the file is not the model its metadata says. */
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++) {
        const char *tn = m->gguf->tensors[i].name;
        if (!known_tensor(tn, c)) {
            char q[LLMQ_QUOTE_SIZE];
            rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s' is not part of a %d-layer %s model",
                             path, llmq_quote(q, tn), c->n_layers, c->arch_name);
            goto fail;
        }
    }
    const llmq_gguf_tensor *q0 = llmq_gguf_find_tensor(m->gguf, "blk.0.attn_q.weight");
    snprintf(m->weights_dtype, sizeof m->weights_dtype, "gguf %s", llmq_ggml_type_name_any(q0->type));
    return LLMQ_OK;
fail:
    llmq_model_close(m);
    return rc;
}
