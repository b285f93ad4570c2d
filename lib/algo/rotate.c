/* rotate.c - a Hadamard rotation of the residual stream folded into the weights (rotate.h). */
#include <math.h>
#include <inttypes.h>
#include "rotate.h"
#include "../linears.h"
#include "../kernels/kernels.h"
#include "../../formats/modeldir.h"

int llmq_rotate_block(int H, int block)
{
    if (H < 1) return -1;
    if (block == 0) return H & -H;   /* the lowest set bit: the largest power of two dividing H */
    if (!llmq_is_pow2(block) || H % block) return -1;
    return block;
}

void llmq_rotate_signs(uint64_t seed, int n, double *signs)
{
    uint64_t s = seed;
    for (int i = 0; i < n; i++) {
        uint64_t z = (s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        signs[i] = (z >> 63) ? -1.0 : 1.0;
    }
}

/* x[i * stride], i < n: signs, then each block's Walsh-Hadamard transform
 * (butterflies of growing span, in Sylvester's order), scaled. */
static void rotate_strided(double *x, int n, size_t stride, int B, const double *signs)
{
    double scale = 1.0 / sqrt((double)B);
    if (signs)
        for (int i = 0; i < n; i++) x[(size_t)i * stride] *= signs[i];
    for (int b0 = 0; b0 < n; b0 += B) {
        double *y = x + (size_t)b0 * stride;
        for (int len = 1; len < B; len <<= 1)
            for (int i = 0; i < B; i += 2 * len)
                for (int j = i; j < i + len; j++) {
                    double u = y[(size_t)j * stride], v = y[(size_t)(j + len) * stride];
                    y[(size_t)j * stride] = u + v;
                    y[(size_t)(j + len) * stride] = u - v;
                }
        for (int i = 0; i < B; i++) y[(size_t)i * stride] *= scale;
    }
}

void llmq_rotate_row(double *x, int n, int B, const double *signs) { rotate_strided(x, n, 1, B, signs); }

/* ---- writing the checkpoint ---- */

struct wctx {
    const llmq_model *m;
    int B;
    double *signs;          /* (hidden) */
    llmq_dtype dt;
    int ff_block, head_dim; /* online: Q_ff's block, H's order (head_dim); 0: not online */
};

/* Rows r of W (rows, H) as v[r] <- (W[r] * gamma) Q; gamma NULL: ones. */
static int rotate_rows(const struct wctx *x, const llmq_wmat *W, int64_t rows, const float *gamma, float *v, llmq_err *err)
{
    int H = x->m->cfg.hidden;
    double *d = llmq_malloc((size_t)H * sizeof(double), err);
    if (!d) return err->code;
    for (int64_t r = 0; r < rows; r++) {
        float *row = v + (size_t)r * H;
        llmq_get_row(W, r, row);
        for (int j = 0; j < H; j++) d[j] = (double)row[j] * (gamma ? (double)gamma[j] : 1.0);
        llmq_rotate_row(d, H, x->B, x->signs);
        for (int j = 0; j < H; j++) row[j] = (float)d[j];
    }
    free(d);
    return LLMQ_OK;
}

/* v <- Q^T W for W (H, cols): each column rotated, eight at a time. */
static int rotate_cols(const struct wctx *x, const llmq_wmat *W, int64_t cols, float *v, llmq_err *err)
{
    enum { CH = 8 };
    int H = x->m->cfg.hidden;
    double *d = llmq_malloc((size_t)H * CH * sizeof(double), err);
    if (!d) return err->code;
    for (int r = 0; r < H; r++) llmq_get_row(W, r, v + (size_t)r * cols);
    for (int64_t c0 = 0; c0 < cols; c0 += CH) {
        int w = (int)LLMQ_MIN((int64_t)CH, cols - c0);
        for (int r = 0; r < H; r++)
            for (int k = 0; k < w; k++) d[(size_t)r * CH + k] = v[(size_t)r * cols + c0 + k];
        for (int k = 0; k < w; k++) rotate_strided(d + k, H, CH, x->B, x->signs);
        for (int r = 0; r < H; r++)
            for (int k = 0; k < w; k++) v[(size_t)r * cols + c0 + k] = (float)d[(size_t)r * CH + k];
    }
    free(d);
    return LLMQ_OK;
}

/* v <- b Q for a bias b (hidden) added to the residual. */
static int rotate_vec(const struct wctx *x, const float *b, float *v, llmq_err *err)
{
    int H = x->m->cfg.hidden;
    double *t = llmq_malloc((size_t)H * sizeof(double), err);
    if (!t) return err->code;
    for (int j = 0; j < H; j++) t[j] = b[j];
    llmq_rotate_row(t, H, x->B, x->signs);
    for (int j = 0; j < H; j++) v[j] = (float)t[j];
    free(t);
    return LLMQ_OK;
}

/* ---- the online Hadamard's offline halves: H / sqrt(B), no signs ---- */

/* Each row of v (rows, cols) <- row Q, Q = H_B / sqrt(B) per block of B
 * columns, in double. */
static int had_rows(float *v, int64_t rows, int64_t cols, int B, llmq_err *err)
{
    double *d = llmq_malloc((size_t)cols * sizeof(double), err);
    if (!d) return err->code;
    for (int64_t r = 0; r < rows; r++) {
        float *row = v + (size_t)r * cols;
        for (int64_t j = 0; j < cols; j++) d[j] = row[j];
        rotate_strided(d, (int)cols, 1, B, NULL);
        for (int64_t j = 0; j < cols; j++) row[j] = (float)d[j];
    }
    free(d);
    return LLMQ_OK;
}

/* v (rows, cols) <- (I (x) Q) v: each column's blocks of B rows times Q
 * (Q symmetric), eight columns at a time. */
static int had_cols(float *v, int64_t rows, int64_t cols, int B, llmq_err *err)
{
    enum { CH = 8 };
    double *d = llmq_malloc((size_t)rows * CH * sizeof(double), err);
    if (!d) return err->code;
    for (int64_t c0 = 0; c0 < cols; c0 += CH) {
        int w = (int)LLMQ_MIN((int64_t)CH, cols - c0);
        for (int64_t r = 0; r < rows; r++)
            for (int k = 0; k < w; k++) d[(size_t)r * CH + k] = v[(size_t)r * cols + c0 + k];
        for (int k = 0; k < w; k++) rotate_strided(d + k, (int)rows, CH, B, NULL);
        for (int64_t r = 0; r < rows; r++)
            for (int k = 0; k < w; k++) v[(size_t)r * cols + c0 + k] = (float)d[(size_t)r * CH + k];
    }
    free(d);
    return LLMQ_OK;
}

enum { COPY = -1 };   /* transform(): a tensor the rotation leaves as it is */

/* Tensor `name` of the rotated model into v (n floats); COPY for one the
 * rotation does not change. */
static int transform(const struct wctx *x, const char *name, float *v, uint64_t n, llmq_err *err)
{
    const llmq_model *m = x->m;
    const llmq_config *c = &m->cfg;
    int H = c->hidden;
    if (!strcmp(name, "model.embed_tokens.weight")) return rotate_rows(x, &m->embed, c->vocab, NULL, v, err);
    if (!strcmp(name, "lm_head.weight")) return rotate_rows(x, &m->lm_head, c->vocab, m->final_norm, v, err);
    if (!strcmp(name, "model.norm.weight")) {
        for (uint64_t i = 0; i < n; i++) v[i] = 1.0f;
        return LLMQ_OK;
    }
    const char *r;
    int l = llmq_layer_of(name, c->n_layers, &r);
    if (l < 0) return COPY;
    const llmq_layer *L = &m->layers[l];
    if (!strcmp(r, "input_layernorm.weight") || !strcmp(r, "post_attention_layernorm.weight")) {
        for (uint64_t i = 0; i < n; i++) v[i] = 1.0f;
        return LLMQ_OK;
    }
    char mod[128];
    snprintf(mod, sizeof mod, "%s", r);
    char *dot = strrchr(mod, '.');
    if (!dot || (strcmp(dot, ".weight") && strcmp(dot, ".bias"))) return COPY;
    int bias = dot[1] == 'b';
    *dot = 0;
    int k = llmq_linear_find(mod);
    if (k < 0) return COPY;
    int writes = k == LLMQ_LIN_O || k == LLMQ_LIN_DOWN, hd = x->head_dim;
    int64_t rows = llmq_linear_rows(c, (llmq_lin)k), cols = llmq_linear_cols(c, (llmq_lin)k);
    if (bias) {
        const float *b = llmq_layer_b(L, (llmq_lin)k);
        if (k == LLMQ_LIN_V && hd) {   /* v H per head: its bias too */
            if (!b || n != (uint64_t)rows)
                return llmq_errorf(err, LLMQ_EFORMAT, "tensor '%s': a bias of %" PRIu64 " values, v_proj has %" PRId64
                                   " rows", name, n, rows);
            memcpy(v, b, (size_t)rows * sizeof(float));
            return had_rows(v, 1, rows, hd, err);
        }
        if (!writes) return COPY;   /* q/k/v, gate/up biases are on their outputs: unchanged */
        if (!b || n != (uint64_t)H) return llmq_errorf(err, LLMQ_EFORMAT, "tensor '%s': a bias of %" PRIu64 " values, hidden is %d", name, n, H);
        return rotate_vec(x, b, v, err);
    }
    const llmq_wmat *W = llmq_layer_w(L, (llmq_lin)k);
    int rc;
    if (writes) {
        if ((rc = rotate_cols(x, W, cols, v, err))) return rc;
        if (k == LLMQ_LIN_O && hd) return had_rows(v, rows, cols, hd, err);                      /* W_o (I (x) H) */
        if (k == LLMQ_LIN_DOWN && x->ff_block) return had_rows(v, rows, cols, x->ff_block, err);  /* W_down Q_ff */
        return LLMQ_OK;
    }
    const float *gamma = k <= LLMQ_LIN_V ? L->attn_norm : L->mlp_norm;
    if ((rc = rotate_rows(x, W, rows, gamma, v, err))) return rc;
    if (k == LLMQ_LIN_V && hd) return had_cols(v, rows, cols, hd, err);   /* (I (x) H) W_v: v H per head */
    return LLMQ_OK;
}

static int fill(void *ctx, const char *name, void *buf, uint64_t nbytes, llmq_err *err)
{
    const struct wctx *x = ctx;
    uint64_t n = nbytes / llmq_dtype_size(x->dt);
    float *v = llmq_malloc((size_t)n * sizeof(float) + 1, err);
    if (!v) return err->code;
    int rc = transform(x, name, v, n, err);
    if (rc == COPY) {
        const llmq_st_tensor *t = llmq_ckpt_find(&x->m->ckpt, name, NULL);
        if (t && t->nelem == n) llmq_st_tensor_f32(t, v);
        else memset(v, 0, (size_t)n * sizeof(float));
        rc = 0;
    }
    if (!rc) rc = llmq_st_put_f32(buf, x->dt, v, n, name, err);
    free(v);
    return rc;
}

struct config_edit { llmq_dtype dt; int ff_block, head_dim, keys; };

static int edit_config(void *ctx, cJSON *j, llmq_err *err)
{
    const struct config_edit *e = ctx;
    llmq_config_set_dtype(j, e->dt);
    if (cJSON_GetObjectItemCaseSensitive(j, "tie_word_embeddings"))
        cJSON_ReplaceItemInObjectCaseSensitive(j, "tie_word_embeddings", cJSON_CreateFalse());
    else cJSON_AddFalseToObject(j, "tie_word_embeddings");
    if (e->ff_block) {   /* what every later forward applies (formats/config.c reads it) */
        cJSON *h = cJSON_CreateObject();
        if (!h || !cJSON_AddNumberToObject(h, "ff_block", e->ff_block) || !cJSON_AddNumberToObject(h, "head_dim", e->head_dim) ||
            !cJSON_AddBoolToObject(h, "keys", e->keys) || !cJSON_AddItemToObject(j, "llmq_online_hadamard", h)) {
            cJSON_Delete(h);
            return llmq_errorf(err, LLMQ_ENOMEM, "out of memory for config.json");
        }
    }
    return LLMQ_OK;
}

int llmq_rotate_write(const llmq_model *m, const llmq_rotate_opts *o, llmq_dtype dt, const char *out_dir,
                      const char *const *keys, const char *const *vals, int n, llmq_err *err)
{
    const llmq_config *c = &m->cfg;
    if (m->packed_meta) return llmq_errorf(err, LLMQ_EUNSUPPORTED, "a packed model: rotate the float checkpoint it came from");
    if (dt != LLMQ_DT_F32 && dt != LLMQ_DT_BF16 && dt != LLMQ_DT_F16)
        return llmq_errorf(err, LLMQ_EUSAGE, "output dtype must be f32, bf16 or f16");
    int B = llmq_rotate_block(c->hidden, o->block);
    if (B < 0)
        return llmq_errorf(err, LLMQ_EUSAGE, "Hadamard block %d: expected a power of two dividing hidden_size %d", o->block,
                           c->hidden);
    struct wctx x = { m, B, NULL, dt, 0, 0 };
    if (o->online || o->online_keys) {
        if (c->had_ff_block || c->had_head_dim)
            return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: already has online Hadamard transforms (config.json "
                               "\"llmq_online_hadamard\"), which a second would undo: rotate it without --online-hadamard", m->path);
        if (!llmq_is_pow2(c->head_dim))
            return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: head_dim %d is not a power of two: the online Hadamard "
                               "transform of keys and values needs one", m->path, c->head_dim);
        x.ff_block = llmq_rotate_block(c->intermediate, 0);   /* the largest power of two dividing it */
        x.head_dim = c->head_dim;
    }
    int rc = llmq_modeldir_check(out_dir, m->ckpt.dir, m->path, err);
    if (rc) return rc;
    if (!(x.signs = llmq_malloc((size_t)c->hidden * sizeof(double), err))) return err->code;
    llmq_rotate_signs(o->seed, c->hidden, x.signs);
    llmq_st_writer *w = llmq_st_writer_new(err);
    if (!w) { free(x.signs); return err->code; }
    int head = 0;
    for (size_t s = 0; s < m->ckpt.n_shards && !rc; s++) {
        const llmq_st_file *f = &m->ckpt.shards[s];
        for (size_t i = 0; i < f->n_tensors && !rc; i++) {
            const llmq_st_tensor *t = &f->tensors[i];
            head |= !strcmp(t->name, "lm_head.weight");
            if (t->dtype == LLMQ_DT_F32 || t->dtype == LLMQ_DT_BF16 || t->dtype == LLMQ_DT_F16)
                rc = llmq_st_writer_add_fill(w, t->name, dt, t->ndim, t->shape, fill, &x, err);
            else
                rc = llmq_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, err);
        }
    }
    if (!head && !rc) {   /* tied: the head gets its own tensor */
        int64_t shape[2] = { c->vocab, c->hidden };
        rc = llmq_st_writer_add_fill(w, "lm_head.weight", dt, 2, shape, fill, &x, err);
    }
    for (int i = 0; i < n && !rc; i++) rc = llmq_st_writer_meta(w, keys[i], vals[i], err);
    if (!rc) rc = llmq_st_writer_meta(w, "format", "pt", err);
    struct config_edit ce = { dt, x.ff_block, x.head_dim, o->online_keys };
    if (!rc) rc = llmq_modeldir_write(out_dir, m->ckpt.dir, m->path, w, edit_config, &ce, err);
    llmq_st_writer_free(w);
    free(x.signs);
    return rc;
}
