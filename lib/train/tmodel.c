/*
 * tmodel.c - fp32 training model: parameters, forward keeping activations
 * (the layer pass of lib/forward.c, the runner's), backward, AdamW,
 * checkpoint output.
 */
#include <math.h>
#include <stdio.h>
#include <cjson/cJSON.h>
#include "tmodel.h"
#include "../forward.h"
#include "../../formats/json.h"
#include "../../formats/packed.h"
#include "../../formats/modeldir.h"

static int add_param(llmq_tmodel *tm, int *cap, const char *name, int ndim, int64_t rows, int64_t cols,
                     llmq_err *err)
{
    if (tm->n_params == *cap) {
        int nc = *cap ? *cap * 2 : 64;
        llmq_tparam *np = realloc(tm->p, (size_t)nc * sizeof *np);
        if (!np) return llmq_errorf(err, LLMQ_ENOMEM, "out of memory for parameters"), -1;
        tm->p = np;
        *cap = nc;
    }
    llmq_tparam *p = &tm->p[tm->n_params];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->shape[0] = rows;
    p->shape[1] = ndim == 2 ? cols : 1;
    p->n = (size_t)rows * (size_t)(ndim == 2 ? cols : 1);
    p->w = llmq_alloc_aligned(p->n * sizeof(float) + 64, err);
    if (!p->w) return -1;
    return tm->n_params++;
}

static int add_mat(llmq_tmodel *tm, int *cap, const char *name, const llmq_wmat *W, llmq_err *err)
{
    int i = add_param(tm, cap, name, 2, W->rows, W->cols, err);
    if (i < 0) return -1;
    for (int64_t r = 0; r < W->rows; r++) llmq_get_row(W, r, tm->p[i].w + (size_t)r * W->cols);
    return i;
}

static int add_vec(llmq_tmodel *tm, int *cap, const char *name, const float *v, int64_t n, llmq_err *err)
{
    if (!v) return -1;
    int i = add_param(tm, cap, name, 1, n, 1, err);
    if (i < 0) return -2;
    memcpy(tm->p[i].w, v, (size_t)n * sizeof(float));
    return i;
}

void llmq_tmodel_release(llmq_tmodel *tm)
{
    for (int i = 0; i < tm->n_params; i++) {
        free(tm->p[i].w); free(tm->p[i].g); free(tm->p[i].m); free(tm->p[i].v);
    }
    free(tm->p);
    free(tm->L);
    memset(tm, 0, sizeof *tm);
}

int llmq_tmodel_find(const llmq_tmodel *tm, const char *name)
{
    for (int i = 0; i < tm->n_params; i++)
        if (!strcmp(tm->p[i].name, name)) return i;
    return -1;
}

static int is_float(llmq_wtype t) { return t == LLMQ_W_F32 || t == LLMQ_W_BF16 || t == LLMQ_W_F16; }

int llmq_tmodel_from_model(llmq_tmodel *tm, const llmq_model *m, llmq_err *err)
{
    memset(tm, 0, sizeof *tm);
    if (m->packed_meta || !is_float(m->embed.type) || !is_float(m->layers[0].wq.type))
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: is a packed model (%s); start from its float checkpoint",
                           m->path, m->weights_dtype);
    const llmq_config *c = &m->cfg;
    int rc0 = llmq_config_refuse_online(c, m->path, "training's backward pass does not apply them; convert the "
                                        "model before llmq rotate --online-hadamard", err);
    if (rc0) return rc0;
    tm->cfg = *c;
    int cap = 0;
    tm->L = llmq_calloc((size_t)c->n_layers, sizeof *tm->L, err);
    if (!tm->L) return err->code;
    char nm[128];
    int l = 0;
    if ((tm->embed = add_mat(tm, &cap, "model.embed_tokens.weight", &m->embed, err)) < 0) goto fail;
    for (l = 0; l < c->n_layers; l++) {
        const llmq_layer *S = &m->layers[l];
        llmq_tlayer *L = &tm->L[l];
        for (size_t k = 0; k < sizeof *L / sizeof(int); k++) ((int *)L)[k] = -1;
        for (int k = 0; k < LLMQ_LIN_COUNT; k++)
            if (!is_float(llmq_layer_w(S, k)->type))
                return llmq_tmodel_release(tm), llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: layer %d holds quantized weights", m->path, l);
        /* attention's linears, then the MLP's, each weights before biases:
         * the order AdamW sums the gradient norm in */
        static const int part[][2] = { { LLMQ_LIN_Q, LLMQ_LIN_O }, { LLMQ_LIN_GATE, LLMQ_LIN_DOWN } };
        for (int pi = 0; pi < 2; pi++) {
            for (int k = part[pi][0]; k <= part[pi][1]; k++) {
                snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", l, llmq_linears[k].hf);
                if ((L->w[k] = add_mat(tm, &cap, nm, llmq_layer_w(S, k), err)) < 0) goto fail;
            }
            for (int k = part[pi][0]; k <= part[pi][1]; k++) {
                snprintf(nm, sizeof nm, "model.layers.%d.%s.bias", l, llmq_linears[k].hf);
                if ((L->b[k] = add_vec(tm, &cap, nm, llmq_layer_b(S, k), llmq_linear_rows(c, k), err)) < -1) goto fail;
            }
        }
        snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l);
        if ((L->attn_norm = add_vec(tm, &cap, nm, S->attn_norm, c->hidden, err)) < 0) goto fail;
        snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", l);
        if ((L->mlp_norm = add_vec(tm, &cap, nm, S->mlp_norm, c->hidden, err)) < 0) goto fail;
    }
    if ((tm->final_norm = add_vec(tm, &cap, "model.norm.weight", m->final_norm, c->hidden, err)) < 0) goto fail;
    if (c->tie_embeddings) tm->lm_head = tm->embed;
    else if ((tm->lm_head = add_mat(tm, &cap, "lm_head.weight", &m->lm_head, err)) < 0) goto fail;
    return LLMQ_OK;
fail:
    llmq_tmodel_release(tm);
    return err->code ? err->code : LLMQ_ENOMEM;
}

void llmq_tmodel_replace(llmq_tmodel *tm, int i, float *w, int ndim, int64_t rows, int64_t cols)
{
    llmq_tparam *p = &tm->p[i];
    free(p->w); free(p->g); free(p->m); free(p->v);
    p->g = p->m = p->v = NULL;
    p->train = 0;
    p->w = w;
    p->ndim = ndim;
    p->shape[0] = rows;
    p->shape[1] = ndim == 2 ? cols : 1;
    p->n = (size_t)rows * (size_t)(ndim == 2 ? cols : 1);
}

int llmq_tmodel_set_train(llmq_tmodel *tm, llmq_train_set set, llmq_err *err)
{
    for (int i = 0; i < tm->n_params; i++) tm->p[i].train = set == LLMQ_TRAIN_ALL;
    if (set == LLMQ_TRAIN_KV)
        for (int l = 0; l < tm->cfg.n_layers; l++) {
            const llmq_tlayer *L = &tm->L[l];
            int ids[] = { L->w[LLMQ_LIN_K], L->w[LLMQ_LIN_V], L->b[LLMQ_LIN_K], L->b[LLMQ_LIN_V] };
            for (size_t k = 0; k < LLMQ_ARRAY_LEN(ids); k++)
                if (ids[k] >= 0) tm->p[ids[k]].train = 1;
        }
    for (int i = 0; i < tm->n_params; i++) {
        llmq_tparam *p = &tm->p[i];
        if (!p->train || p->g) continue;
        if (!(p->g = llmq_calloc(p->n, sizeof(float), err)) || !(p->m = llmq_calloc(p->n, sizeof(float), err)) ||
            !(p->v = llmq_calloc(p->n, sizeof(float), err)))
            return err->code;
    }
    return LLMQ_OK;
}

void llmq_tmodel_zero_grad(llmq_tmodel *tm)
{
    for (int i = 0; i < tm->n_params; i++)
        if (tm->p[i].g) memset(tm->p[i].g, 0, tm->p[i].n * sizeof(float));
}

double llmq_tmodel_adamw(llmq_tmodel *tm, const llmq_adamw *o, int64_t step, double clip)
{
    double norm = 0.0;
    if (clip > 0) {
        for (int i = 0; i < tm->n_params; i++) {
            const llmq_tparam *p = &tm->p[i];
            if (!p->train) continue;
            for (size_t k = 0; k < p->n; k++) norm += (double)p->g[k] * p->g[k];
        }
        norm = sqrt(norm);
        if (norm > clip) {
            float s = (float)(clip / norm);
            for (int i = 0; i < tm->n_params; i++)
                if (tm->p[i].train)
                    for (size_t k = 0; k < tm->p[i].n; k++) tm->p[i].g[k] *= s;
        }
    }
    for (int i = 0; i < tm->n_params; i++) {
        llmq_tparam *p = &tm->p[i];
        if (!p->train) continue;
        llmq_adamw oo = *o;
        if (p->ndim == 1) oo.wd = 0.0f;   /* no decay on norms and biases */
        llmq_adamw_step(&oo, step, p->w, p->g, p->m, p->v, p->n);
    }
    return norm;
}

/* ---- activations ---- */

typedef struct {
    float *xin, *xn1, *r1, *q, *k, *v, *P, *att, *xmid, *xn2, *r2, *gate, *up, *hact;
} tacts;

struct llmq_tws {
    int max_T, T;
    const int32_t *tok;
    tacts *A;           /* (n_layers) */
    float *xfin, *xnf, *rf, *logits, *dlogits;
    float *cs, *sn;     /* rope tables (max_T, hd/2) */
    /* backward scratch */
    float *dx, *dxn, *dq, *dk, *dv, *datt, *dS, *dh, *dg, *du, *tmp;
    void **bufs;
    int n_bufs, cap_bufs;
};

static float *wsalloc(llmq_tws *ws, size_t n, llmq_err *err)
{
    if (ws->n_bufs == ws->cap_bufs) {
        int nc = ws->cap_bufs ? ws->cap_bufs * 2 : 64;
        void **nb = realloc(ws->bufs, (size_t)nc * sizeof *nb);
        if (!nb) { llmq_errorf(err, LLMQ_ENOMEM, "out of memory for training activations"); return NULL; }
        ws->bufs = nb;
        ws->cap_bufs = nc;
    }
    size_t bytes;
    if (llmq_mul_ovf_size(n, sizeof(float), &bytes)) { llmq_errorf(err, LLMQ_ENOMEM, "activation size overflows"); return NULL; }
    float *p = llmq_alloc_aligned(bytes + 64, err);
    if (p) { memset(p, 0, bytes); ws->bufs[ws->n_bufs++] = p; }
    return p;
}

void llmq_tws_free(llmq_tws *ws)
{
    if (!ws) return;
    for (int i = 0; i < ws->n_bufs; i++) free(ws->bufs[i]);
    free(ws->bufs);
    free(ws->A);
    free(ws);
}

int llmq_tws_new(llmq_tws **out, const llmq_tmodel *tm, int max_T, llmq_err *err)
{
    const llmq_config *c = &tm->cfg;
    *out = NULL;
    llmq_tws *ws = llmq_calloc(1, sizeof *ws, err);
    if (!ws) return err->code;
    ws->max_T = max_T;
    size_t T = (size_t)max_T, H = (size_t)c->hidden, FF = (size_t)c->intermediate, V = (size_t)c->vocab;
    size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    if (!(ws->A = llmq_calloc((size_t)c->n_layers, sizeof *ws->A, err))) goto fail;
    for (int l = 0; l < c->n_layers; l++) {
        tacts *a = &ws->A[l];
        if (!(a->xin = wsalloc(ws, T * H, err)) || !(a->xn1 = wsalloc(ws, T * H, err)) || !(a->r1 = wsalloc(ws, T, err)) ||
            !(a->q = wsalloc(ws, T * qd, err)) || !(a->k = wsalloc(ws, T * kvd, err)) || !(a->v = wsalloc(ws, T * kvd, err)) ||
            !(a->P = wsalloc(ws, (size_t)c->n_heads * T * T, err)) || !(a->att = wsalloc(ws, T * qd, err)) ||
            !(a->xmid = wsalloc(ws, T * H, err)) || !(a->xn2 = wsalloc(ws, T * H, err)) || !(a->r2 = wsalloc(ws, T, err)) ||
            !(a->gate = wsalloc(ws, T * FF, err)) || !(a->up = wsalloc(ws, T * FF, err)) || !(a->hact = wsalloc(ws, T * FF, err)))
            goto fail;
    }
    size_t big = LLMQ_MAX(LLMQ_MAX(H, FF), qd);
    if (!(ws->xfin = wsalloc(ws, T * H, err)) || !(ws->xnf = wsalloc(ws, T * H, err)) || !(ws->rf = wsalloc(ws, T, err)) ||
        !(ws->logits = wsalloc(ws, T * V, err)) || !(ws->dlogits = wsalloc(ws, T * V, err)) ||
        !(ws->cs = wsalloc(ws, T * (size_t)(c->head_dim / 2), err)) || !(ws->sn = wsalloc(ws, T * (size_t)(c->head_dim / 2), err)) ||
        !(ws->dx = wsalloc(ws, T * H, err)) || !(ws->dxn = wsalloc(ws, T * H, err)) || !(ws->dq = wsalloc(ws, T * qd, err)) ||
        !(ws->dk = wsalloc(ws, T * kvd, err)) || !(ws->dv = wsalloc(ws, T * kvd, err)) || !(ws->datt = wsalloc(ws, T * qd, err)) ||
        !(ws->dS = wsalloc(ws, T * T, err)) || !(ws->dh = wsalloc(ws, T * FF, err)) || !(ws->dg = wsalloc(ws, T * FF, err)) ||
        !(ws->du = wsalloc(ws, T * FF, err)) || !(ws->tmp = wsalloc(ws, T * big, err)))
        goto fail;
    llmq_op_rope_tables(max_T, c->head_dim, c, ws->cs, ws->sn);
    *out = ws;
    return LLMQ_OK;
fail:
    llmq_tws_free(ws);
    return err->code;
}

float *llmq_tws_logits(llmq_tws *ws) { return ws->logits; }
float *llmq_tws_dlogits(llmq_tws *ws) { return ws->dlogits; }

static const float *PW(const llmq_tmodel *tm, int i) { return i >= 0 ? tm->p[i].w : NULL; }
static float *PG(const llmq_tmodel *tm, int i) { return i >= 0 && tm->p[i].train ? tm->p[i].g : NULL; }

/* Training's side of the layer pass (forward.h): fp32 parameters, and
 * attention that keeps its probabilities for the backward pass. */
struct tstep {
    const llmq_tmodel *tm;
    const llmq_tlayer *L;
    llmq_attn_shape as;
    float *P;
};

static void tstep_linear(void *ctx, int k, const float *X, int T, float *Y)
{
    const struct tstep *s = ctx;
    const llmq_config *c = &s->tm->cfg;
    llmq_op_linear_fwd(X, PW(s->tm, s->L->w[k]), PW(s->tm, s->L->b[k]), T, (int)llmq_linear_cols(c, k),
                       (int)llmq_linear_rows(c, k), Y);
}

static void tstep_attend(void *ctx, llmq_layer_acts *a)
{
    const struct tstep *s = ctx;
    llmq_op_attn_fwd(&s->as, a->q, a->k, a->v, s->P, a->att);
}

void llmq_tmodel_forward(const llmq_tmodel *tm, llmq_tws *ws, const int32_t *tokens, int T)
{
    const llmq_config *c = &tm->cfg;
    int H = c->hidden;
    ws->T = T;
    ws->tok = tokens;
    llmq_op_embed_fwd(tm->p[tm->embed].w, H, tokens, T, ws->A[0].xin);
    struct tstep st = { tm, NULL, { T, c->n_heads, c->n_kv_heads, c->head_dim, c->sliding_window }, NULL };
    llmq_layer_pass p = { .c = c, .T = T, .cs = ws->cs, .sn = ws->sn, .linear = tstep_linear,
                          .attend = tstep_attend, .ctx = &st };
    for (int l = 0; l < c->n_layers; l++) {
        tacts *a = &ws->A[l];
        st.L = &tm->L[l];
        st.P = a->P;
        p.layer = l;
        p.attn_norm = PW(tm, st.L->attn_norm);
        p.mlp_norm = PW(tm, st.L->mlp_norm);
        llmq_layer_acts la = { .xn1 = a->xn1, .r1 = a->r1, .q = a->q, .k = a->k, .v = a->v, .att = a->att,
                               .xmid = a->xmid, .xn2 = a->xn2, .r2 = a->r2, .gate = a->gate, .up = a->up,
                               .hact = a->hact, .tmp = ws->tmp };
        llmq_layer_forward(&p, a->xin, &la, l + 1 < c->n_layers ? ws->A[l + 1].xin : ws->xfin);
    }
    llmq_op_rmsnorm_fwd(ws->xfin, PW(tm, tm->final_norm), T, H, (float)c->rms_eps, ws->xnf, ws->rf);
    llmq_op_linear_fwd(ws->xnf, PW(tm, tm->lm_head), NULL, T, H, c->vocab, ws->logits);
}

/* Backward through linear k of layer L (its shape from linears.h): dX
 * (NULL: not needed) set, or added to when acc, and the weight and bias
 * gradients where they are trained. */
static void lin_bwd(const llmq_tmodel *tm, const llmq_tlayer *L, int k, const float *X, const float *dY, int T,
                    float *dX, int acc)
{
    const llmq_config *c = &tm->cfg;
    llmq_op_linear_bwd(X, PW(tm, L->w[k]), dY, T, (int)llmq_linear_cols(c, k), (int)llmq_linear_rows(c, k), dX, acc,
                       PG(tm, L->w[k]), PG(tm, L->b[k]));
}

void llmq_tmodel_backward(const llmq_tmodel *tm, llmq_tws *ws)
{
    const llmq_config *c = &tm->cfg;
    int T = ws->T, H = c->hidden, FF = c->intermediate, hd = c->head_dim;
    llmq_attn_shape as = { T, c->n_heads, c->n_kv_heads, hd, c->sliding_window };
    /* the lowest layer whose input gradient is needed: below the lowest
     * trainable tensor nothing has to flow */
    int lowest = c->n_layers;
    if (tm->p[tm->embed].train) lowest = -1;
    else
        for (int l = 0; l < c->n_layers && lowest == c->n_layers; l++) {
            const int *ids = (const int *)&tm->L[l];
            for (size_t k = 0; k < sizeof(llmq_tlayer) / sizeof(int); k++)
                if (ids[k] >= 0 && tm->p[ids[k]].train) { lowest = l; break; }
        }
    llmq_op_linear_bwd(ws->xnf, PW(tm, tm->lm_head), ws->dlogits, T, H, c->vocab, ws->dxn, 0, PG(tm, tm->lm_head), NULL);
    memset(ws->dx, 0, (size_t)T * H * sizeof(float));
    llmq_op_rmsnorm_bwd(ws->xfin, PW(tm, tm->final_norm), ws->rf, ws->dxn, T, H, ws->dx, PG(tm, tm->final_norm));
    for (int l = c->n_layers - 1; l >= 0 && l >= lowest; l--) {
        const llmq_tlayer *L = &tm->L[l];
        tacts *a = &ws->A[l];
        /* MLP: x_out = xmid + down(silu(gate) * up) */
        lin_bwd(tm, L, LLMQ_LIN_DOWN, a->hact, ws->dx, T, ws->dh, 0);
        llmq_op_swiglu_bwd(a->gate, a->up, ws->dh, (size_t)T * FF, ws->dg, ws->du);
        lin_bwd(tm, L, LLMQ_LIN_GATE, a->xn2, ws->dg, T, ws->dxn, 0);
        lin_bwd(tm, L, LLMQ_LIN_UP, a->xn2, ws->du, T, ws->dxn, 1);
        llmq_op_rmsnorm_bwd(a->xmid, PW(tm, L->mlp_norm), a->r2, ws->dxn, T, H, ws->dx, PG(tm, L->mlp_norm));
        /* attention: xmid = xin + o(attn(rope(q), rope(k), v)) */
        lin_bwd(tm, L, LLMQ_LIN_O, a->att, ws->dx, T, ws->datt, 0);
        int need_x = l > lowest;    /* the layer below needs dx */
        int need_q = need_x || PG(tm, L->w[LLMQ_LIN_Q]) || PG(tm, L->b[LLMQ_LIN_Q]);
        llmq_op_attn_bwd(&as, a->q, a->k, a->v, a->P, ws->datt, need_q ? ws->dq : NULL, ws->dk, ws->dv, ws->dS);
        if (need_q) llmq_op_rope_bwd(ws->dq, T, c->n_heads, hd, ws->cs, ws->sn);
        llmq_op_rope_bwd(ws->dk, T, c->n_kv_heads, hd, ws->cs, ws->sn);
        int need_n = need_x || PG(tm, L->attn_norm);
        float *dxn = need_n ? ws->dxn : NULL;
        if (need_q) lin_bwd(tm, L, LLMQ_LIN_Q, a->xn1, ws->dq, T, dxn, 0);
        lin_bwd(tm, L, LLMQ_LIN_K, a->xn1, ws->dk, T, dxn, need_q);
        lin_bwd(tm, L, LLMQ_LIN_V, a->xn1, ws->dv, T, dxn, 1);
        if (need_n) llmq_op_rmsnorm_bwd(a->xin, PW(tm, L->attn_norm), a->r1, ws->dxn, T, H, ws->dx, PG(tm, L->attn_norm));
    }
    if (PG(tm, tm->embed)) llmq_op_embed_bwd(PG(tm, tm->embed), H, ws->tok, T, ws->dx);
}

/* ---- checkpoint output ---- */

typedef struct {
    const llmq_tparam *p;
    llmq_dtype dt;
} fill_ctx;

static int fill_param(void *ctx, const char *name, void *buf, uint64_t nbytes, llmq_err *err)
{
    const fill_ctx *f = ctx;
    (void)name;
    if (nbytes != f->p->n * llmq_dtype_size(f->dt)) return LLMQ_BUG(err, "tensor size");
    for (size_t i = 0; i < f->p->n; i++) {
        float v = f->p->w[i];
        if (!isfinite(v))
            return llmq_errorf(err, LLMQ_ENONFINITE, "tensor '%s': element %zu is not finite", f->p->name, i);
        if (f->dt == LLMQ_DT_F32) memcpy((float *)buf + i, &v, 4);
        else if (f->dt == LLMQ_DT_BF16) llmq_put_le16((uint8_t *)buf + 2 * i, llmq_f32_to_bf16(v));
        else llmq_put_le16((uint8_t *)buf + 2 * i, llmq_f32_to_f16(v));
    }
    return LLMQ_OK;
}

struct config_edit { int n_kv_heads; llmq_dtype dt; };

/* config.json: the KV heads after pooling and, unless kept, the dtype */
static int edit_config(void *ctx, cJSON *j, llmq_err *err)
{
    const struct config_edit *e = ctx;
    (void)err;
    cJSON *kv = cJSON_CreateNumber(e->n_kv_heads);
    if (cJSON_GetObjectItemCaseSensitive(j, "num_key_value_heads")) cJSON_ReplaceItemInObjectCaseSensitive(j, "num_key_value_heads", kv);
    else cJSON_AddItemToObject(j, "num_key_value_heads", kv);
    if (e->dt != LLMQ_DT_COUNT) llmq_config_set_dtype(j, e->dt);
    return LLMQ_OK;
}

int llmq_tmodel_write(const llmq_tmodel *tm, const llmq_model *src, llmq_dtype dtype,
                      const char *const *meta, const char *out_dir, llmq_err *err)
{
    int rc = llmq_modeldir_check(out_dir, src->ckpt.dir, src->path, err);
    if (rc) return rc;
    size_t total = 0;
    for (size_t s = 0; s < src->ckpt.n_shards; s++) total += src->ckpt.shards[s].n_tensors;
    fill_ctx *fc = llmq_calloc(total ? total : 1, sizeof *fc, err);
    if (!fc) return err->code;
    llmq_st_writer *w = llmq_st_writer_new(err);
    int nfc = 0;
    rc = w ? LLMQ_OK : (int)err->code;
    llmq_dtype cfg_dt = dtype;
    for (size_t s = 0; !rc && s < src->ckpt.n_shards; s++) {
        const llmq_st_file *f = &src->ckpt.shards[s];
        for (size_t t = 0; !rc && t < f->n_tensors; t++) {
            const llmq_st_tensor *st = &f->tensors[t];
            int i = llmq_tmodel_find(tm, st->name);
            if (i < 0) {
                rc = llmq_st_writer_add(w, st->name, st->dtype, st->ndim, st->shape, st->data, err);
                continue;
            }
            llmq_dtype dt = dtype;
            if (dt == LLMQ_DT_COUNT) {
                dt = (st->dtype == LLMQ_DT_F32 || st->dtype == LLMQ_DT_F16) ? st->dtype : LLMQ_DT_BF16;
                if (cfg_dt == LLMQ_DT_COUNT && st->dtype != LLMQ_DT_BF16 && st->dtype != LLMQ_DT_F16 && st->dtype != LLMQ_DT_F32)
                    cfg_dt = LLMQ_DT_BF16;
            }
            fc[nfc].p = &tm->p[i];
            fc[nfc].dt = dt;
            rc = llmq_st_writer_add_fill(w, st->name, dt, tm->p[i].ndim, tm->p[i].shape, fill_param, &fc[nfc], err);
            nfc++;
        }
    }
    for (int k = 0; !rc && meta && meta[k] && meta[k + 1]; k += 2) rc = llmq_st_writer_meta(w, meta[k], meta[k + 1], err);
    struct config_edit ce = { tm->cfg.n_kv_heads, cfg_dt };
    if (!rc) rc = llmq_modeldir_write(out_dir, src->ckpt.dir, src->path, w, edit_config, &ce, err);
    llmq_st_writer_free(w);
    free(fc);
    return rc;
}
