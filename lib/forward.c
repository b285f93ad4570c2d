/* forward.c - the decoder layer's forward pass (forward.h). */
#include "forward.h"
#include "linears.h"
#include "kernels/hadamard.h"
#include "train/ops.h"

static void observe(const llmq_layer_pass *p, llmq_site s, const float *x, int64_t dim)
{
    if (p->observe) p->observe(p->obs_ctx, p->layer, s, x, p->T, dim);
}

void llmq_layer_forward(const llmq_layer_pass *p, const float *x, llmq_layer_acts *a, float *out)
{
    const llmq_config *c = p->c;
    int T = p->T, H = c->hidden, FF = c->intermediate, hd = c->head_dim;
    int qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    float eps = (float)c->rms_eps;

    /* attention block */
    llmq_op_rmsnorm_fwd(x, p->attn_norm, T, H, eps, a->xn1, a->r1);
    observe(p, LLMQ_SITE_QKV, a->xn1, H);
    p->linear(p->ctx, LLMQ_LIN_Q, a->xn1, T, a->q);
    p->linear(p->ctx, LLMQ_LIN_K, a->xn1, T, a->k);
    p->linear(p->ctx, LLMQ_LIN_V, a->xn1, T, a->v);
    if (c->had_keys) {
        /* online Hadamard: the KV cache keeps pre-RoPE keys (KVQuant), so it
         * keeps them as k H per head, their outlier channels spread, and
         * multiplies by H again when it reads them (H H = I); K_PRE, where
         * its calibrated ranges come from, sees k H too.  Attention here
         * reads k itself: RoPE does not commute with H.  Without kpre, k H
         * is made in place and undone (to rounding) whether or not anyone
         * observes: the forward's numbers must not depend on observers
         * (AWQ's shards propagate with and without them, byte for byte). */
        if (a->kpre) memcpy(a->kpre, a->k, (size_t)T * kvd * sizeof(float));
        float *kh = a->kpre ? a->kpre : a->k;
        llmq_fwht(kh, (int64_t)T * c->n_kv_heads, hd, hd);
        observe(p, LLMQ_SITE_K_PRE, kh, kvd);
        if (!a->kpre) llmq_fwht(kh, (int64_t)T * c->n_kv_heads, hd, hd);   /* back to k */
    } else {
        observe(p, LLMQ_SITE_K_PRE, a->k, kvd);
        if (a->kpre) memcpy(a->kpre, a->k, (size_t)T * kvd * sizeof(float));
    }
    observe(p, LLMQ_SITE_V, a->v, kvd);
    /* rotate-half RoPE, as transformers' apply_rotary_pos_emb */
    llmq_op_rope_fwd(a->q, T, c->n_heads, hd, p->cs, p->sn);
    llmq_op_rope_fwd(a->k, T, c->n_kv_heads, hd, p->cs, p->sn);
    observe(p, LLMQ_SITE_K_POST, a->k, kvd);
    p->attend(p->ctx, a);
    observe(p, LLMQ_SITE_O, a->att, qd);
    p->linear(p->ctx, LLMQ_LIN_O, a->att, T, a->tmp);
    for (size_t i = 0; i < (size_t)T * H; i++) a->xmid[i] = x[i] + a->tmp[i];

    /* MLP block: down(silu(gate(x)) * up(x)) */
    llmq_op_rmsnorm_fwd(a->xmid, p->mlp_norm, T, H, eps, a->xn2, a->r2);
    observe(p, LLMQ_SITE_GATEUP, a->xn2, H);
    p->linear(p->ctx, LLMQ_LIN_GATE, a->xn2, T, a->gate);
    p->linear(p->ctx, LLMQ_LIN_UP, a->xn2, T, a->up);
    llmq_op_swiglu_fwd(a->gate, a->up, (size_t)T * FF, a->hact);
    /* online Hadamard (QuaRot): h Q blockwise, down_proj's weight stored as
     * W Q, so down(h Q) = down(h) with h Q's outliers spread */
    if (c->had_ff_block) llmq_fwht(a->hact, T, FF, c->had_ff_block);
    observe(p, LLMQ_SITE_DOWN, a->hact, FF);
    if (!out) return;
    p->linear(p->ctx, LLMQ_LIN_DOWN, a->hact, T, a->tmp);
    for (size_t i = 0; i < (size_t)T * H; i++) out[i] = a->xmid[i] + a->tmp[i];
}
