/* t-awq-block.c - AWQ with the MX / NV block formats: the searches' fake
 * quantization is the packer's (llmq_block_quantize_row then
 * llmq_block_dequantize_row) bit for bit, for every format and scale rule,
 * on random, tied and extreme blocks, clamped or not; the clip search
 * never clips the NV tensor's max; GPTQ on a block grid writes the
 * packer's scale bytes and codes that decode to its values; shards carry
 * the block format and its GPTQ arrays, and refuse NaN scales. */
#include "../test.h"
#include <float.h>
#include <unistd.h>
#include "algo/awq.h"
#include "algo/awq_shard.h"
#include "algo/gptq.h"
#include "algo/pack.h"
#include "quant/quant.h"
#include "../../calib/data.h"

static uint64_t rs = 4242;
static float frand(void) { return (float)((double)(llmq_splitmix64(&rs) >> 11) / 9007199254740992.0); }
static float gauss(void)
{
    float u = frand() + 1e-7f, v = frand();
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static const llmq_wtype types[] = { LLMQ_W_MXFP4, LLMQ_W_MXINT4, LLMQ_W_NVFP4, LLMQ_W_NVINT4, LLMQ_W_MXFP8 };

static llmq_awq_qcfg qcfg(llmq_wtype t, int rule)
{
    llmq_awq_qcfg q = { t == LLMQ_W_MXFP8 ? 8 : 4, llmq_block_size(t), 1, t, (llmq_mx_rule)rule };
    return q;
}

/* The packer's values of row w (cols) clamped to clip (NULL: none) with tensor scale ts. */
static void packer_row(llmq_wtype t, int rule, float ts, const float *w, int cols, const float *clip, float *out)
{
    float x[256];
    uint8_t codes[256], sc[256 / 16];
    memcpy(x, w, (size_t)cols * sizeof(float));
    if (clip) llmq_q4_clip_row(x, cols, llmq_block_size(t), clip);
    llmq_block_quantize_row(t, x, cols, (llmq_mx_rule)rule, ts, codes, sc);
    llmq_block_dequantize_row(t, codes, sc, ts, cols, out);
}

/* A row of 256 for trial k: gaussian at some magnitude, with ties,
 * zero blocks, element midpoints, outliers and one-signed blocks. */
static void make_row(int k, llmq_wtype t, float *w)
{
    static const float mags[] = { 1.0f, 1e-3f, 3e4f, 1e-30f, 1e-41f, 1e36f, 0.02f };
    float mag = mags[k % 7];
    for (int i = 0; i < 256; i++) w[i] = gauss() * mag;
    if (k % 5 == 0) for (int i = 0; i < 32; i++) w[i] = 0.0f;                        /* a zero block */
    if (k % 3 == 0) for (int i = 32; i < 96; i++) w[i] = fabsf(w[i]);                /* one-signed */
    if (k % 4 == 1) {   /* elements on the element grid's midpoints at the block's scale */
        static const float mid[] = { 0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 6.0f, 0.5f, 1.5f, 2.0f, 3.0f };
        static const float imid[] = { 0.5f, 1.5f, 2.5f, 3.5f, 4.5f, 5.5f, 6.5f, 7.0f, 1.0f, 0.125f, 0.375f, 0.625f };
        const float *m = t == LLMQ_W_MXFP4 || t == LLMQ_W_NVFP4 ? mid : imid;
        float sc = ldexpf(1.0f, (int)(k % 9) - 4);
        for (int i = 96; i < 160; i++) w[i] = (i & 1 ? -1.0f : 1.0f) * m[i % 12] * sc;
    }
    if (k % 6 == 2) w[200] = 40.0f * mag;                                            /* an outlier */
    if (k % 8 == 3) for (int i = 160; i < 192; i++) w[i] = (i % 2 ? 1.0f : -1.0f) * mag;   /* ties */
}

TEST(fake_row_is_the_packer_bit_for_bit)
{
    float w[256], a[256], b[256], clip[2 * 16];
    for (size_t ti = 0; ti < LLMQ_ARRAY_LEN(types); ti++) {
        llmq_wtype t = types[ti];
        const int B = llmq_block_size(t), nb = 256 / B;
        for (int rule = 0; rule < 3; rule++) {
            llmq_awq_qcfg q = qcfg(t, rule);
            int bad = 0;
            for (int k = 0; k < 300 && !bad; k++) {
                make_row(k, t, w);
                for (int g = 0; g < nb; g++) {   /* clips: none, shrunk, one end only */
                    float m = 0.0f;
                    for (int e = 0; e < B; e++) m = fmaxf(m, fabsf(w[g * B + e]));
                    clip[2 * g] = (k + g) % 3 == 0 ? INFINITY : m * (0.5f + 0.05f * (float)(g % 10));
                    clip[2 * g + 1] = (k + g) % 4 == 1 ? INFINITY : m * (0.6f + 0.04f * (float)(g % 7));
                }
                /* the tensor scale of some larger tensor, of this row, and an odd one */
                float amax = 0.0f;
                for (int i = 0; i < 256; i++) amax = fmaxf(amax, fabsf(w[i]));
                float ts_list[3] = { llmq_block_tscale(t, amax * 3.7f), llmq_block_tscale(t, amax), amax * 1e-3f + 1e-30f };
                for (int c = 0; c < 2; c++)
                    for (int u = 0; u < (llmq_wtype_is_nv(t) ? 3 : 1); u++) {
                        float ts = llmq_wtype_is_nv(t) ? ts_list[u] : 1.0f;
                        const float *cl = c ? clip : NULL;
                        llmq_awq_fake_row_t(&q, ts, w, 256, cl, a);
                        packer_row(t, rule, ts, w, 256, cl, b);
                        if (memcmp(a, b, sizeof a)) {
                            int j = 0;
                            while (a[j] == b[j] && j < 255) j++;
                            CHECK_MSG(0, "%s rule %d trial %d clip %d tscale %g: element %d is %.9g, packer %.9g",
                                      llmq_block_name(t), rule, k, c, (double)ts, j, (double)a[j], (double)b[j]);
                            bad = 1;
                            break;
                        }
                    }
                /* without a tensor scale: the row is its own tensor, as llmq_block_fake_row */
                uint8_t cq[256], sq[16];
                llmq_awq_fake_row(&q, w, 256, NULL, a);
                llmq_block_fake_row(t, w, 256, (llmq_mx_rule)rule, cq, sq, b);
                CHECK_MSG(!memcmp(a, b, sizeof a), "%s rule %d trial %d: row as its own tensor", llmq_block_name(t), rule, k);
            }
        }
    }
}

/* Every 4-bit element code's value and the midpoints between them, at
 * every MX scale a block can take: the same rounding as the encoders. */
TEST(every_grid_point_and_midpoint)
{
    float w[32], a[32], b[32];
    for (int t = LLMQ_W_MXFP4; t <= LLMQ_W_MXINT4; t++)
        for (int e = -140; e <= 125; e += 3) {
            llmq_awq_qcfg q = qcfg((llmq_wtype)t, LLMQ_MX_SCALE_OCP);
            const float *P = llmq_block4_values(t);
            for (int i = 0; i < 32; i++) {
                float lo = P[i % 8], hi = P[(i % 8) + 1 < 8 ? (i % 8) + 1 : 7];
                float v = i < 16 ? lo : 0.5f * (lo + hi);
                w[i] = (i & 2 ? -1.0f : 1.0f) * ldexpf(v, e);
            }
            w[7] = ldexpf(P[7], e);   /* the block's max on the grid's top */
            llmq_awq_fake_row_t(&q, 1.0f, w, 32, NULL, a);
            packer_row((llmq_wtype)t, LLMQ_MX_SCALE_OCP, 1.0f, w, 32, NULL, b);
            CHECK_MSG(!memcmp(a, b, sizeof a), "%s at 2^%d", llmq_block_name((llmq_wtype)t), e);
        }
}

/* The clip search with an NV format leaves the cell holding the tensor's
 * max unclipped (so the packer's tensor scale is the one searched with)
 * and its result, quantized with that scale, is what the packer writes. */
TEST(nv_clip_search_keeps_the_tensor_max)
{
    enum { R = 8, C = 64, G = 16, NG = C / G, N = 96 };
    float W[R * C], x[N * C];
    for (int i = 0; i < R * C; i++) W[i] = gauss() * 0.05f;
    W[3 * C + 37] = 0.9f;                   /* the tensor max, in cell (3, 2) */
    for (int i = 0; i < 4; i++) W[i * C + 5] = -0.5f;   /* outliers elsewhere, worth clipping */
    for (int i = 0; i < N * C; i++) x[i] = gauss();
    double *gram = calloc((size_t)C * G, sizeof(double));
    float *tmp = malloc((size_t)C * G * sizeof(float)), *r = malloc((size_t)C * G * sizeof(float));
    float clip[R * NG * 2];
    llmq_err err = { 0, "" };
    llmq_awq_gram_add(NULL, x, N, C, G, tmp, gram);
    CHECK(llmq_awq_gram_factor(NULL, gram, C, G, NULL, N, r, &err) == LLMQ_OK);
    for (int rule = 0; rule < 3; rule++) {
        llmq_awq_qcfg q = qcfg(LLMQ_W_NVINT4, rule);
        double before, after, shrink, frac;
        CHECK(llmq_awq_search_clip(NULL, W, R, C, r, &q, 20, 0.5, 0, clip, &before, &after, &shrink, &frac, &err) == LLMQ_OK);
        CHECK_MSG(isinf(clip[2 * (3 * NG + 2)]) && isinf(clip[2 * (3 * NG + 2) + 1]), "rule %d: the max's cell is clipped", rule);
        CHECK_MSG(frac > 0.0 && after <= before, "rule %d: clipped %g, error %g -> %g", rule, frac, before, after);
        /* the packer's tensor scale of the clipped tensor is the unclipped one's */
        float Wc[R * C], amax = 0.0f;
        memcpy(Wc, W, sizeof Wc);
        llmq_awq_transform(Wc, R, C, NULL, NULL, clip, G);
        for (int i = 0; i < R * C; i++) amax = fmaxf(amax, fabsf(Wc[i]));
        CHECK(amax == 0.9f);
        uint8_t codes[R * C / 2], sc[R * NG];
        float ts, a[C], b[C];
        CHECK(llmq_block_quantize(LLMQ_W_NVINT4, Wc, R, C, (llmq_mx_rule)rule, codes, sc, &ts, "w", &err) == LLMQ_OK);
        CHECK(ts == llmq_block_tscale(LLMQ_W_NVINT4, 0.9f));
        for (int i = 0; i < R; i++) {
            llmq_awq_fake_row_t(&q, ts, W + i * C, C, clip + i * NG * 2, a);
            llmq_block_dequantize_row(LLMQ_W_NVINT4, codes + i * C / 2, sc + i * NG, ts, C, b);
            CHECK_MSG(!memcmp(a, b, sizeof a), "rule %d row %d", rule, i);
        }
    }
    free(gram); free(tmp); free(r);
}

/* GPTQ on a block grid: the scale bytes are round to nearest's of the
 * clipped tensor (with its tensor scale), every code decodes to the
 * dequantized value returned, the loss on the grid does not rise, and
 * with an identity Gram matrix (no error to spread that helps) the codes
 * are round to nearest's. */
TEST(gptq_block_grid)
{
    enum { R = 16, C = 64, N = 256 };
    float W[R * C], x[N * C];
    for (int i = 0; i < R * C; i++) W[i] = gauss() * 0.1f;
    W[5] = 1.3f;
    for (int i = 0; i < N * C; i++) x[i] = gauss() + 0.8f * (i % C == 3 ? gauss() * 4.0f : 0.0f);
    double *gram = calloc((size_t)C * C, sizeof(double)), *eye = calloc((size_t)C * C, sizeof(double));
    for (int t = 0; t < N; t++)
        for (int i = 0; i < C; i++)
            for (int j = i; j < C; j++) gram[i * C + j] += (double)x[t * C + i] * x[t * C + j];
    for (int i = 0; i < C; i++) eye[i * C + i] = N;
    llmq_err err = { 0, "" };
    for (size_t ti = 0; ti < LLMQ_ARRAY_LEN(types); ti++) {
        llmq_wtype t = types[ti];
        const int B = llmq_block_size(t), NG = C / B, CB = llmq_wtype_is_block4(t) ? C / 2 : C;
        float clip[R * (C / 16) * 2];
        for (int i = 0; i < R * NG; i++) { clip[2 * i] = (i % 3) ? INFINITY : 0.15f; clip[2 * i + 1] = (i % 5) ? INFINITY : 0.12f; }
        for (int rule = 0; rule < 3; rule++) {
            for (int id = 0; id < 2; id++) {
                llmq_gptq_h *h = NULL;
                CHECK(llmq_gptq_h_new(&h, id ? eye : gram, C, N, NULL, 0.01, &err) == LLMQ_OK);
                if (!h) return;
                float w[R * C], Wc[R * C], deq[R * C], out[C], ts, ts_rtn;
                uint8_t codes[R * C], sc[R * NG], codes_rtn[R * C], sc_rtn[R * NG];
                memcpy(w, W, sizeof w);
                memcpy(Wc, W, sizeof Wc);
                if (!id) llmq_awq_transform(Wc, R, C, NULL, NULL, clip, B);
                CHECK(llmq_block_quantize(t, Wc, R, C, (llmq_mx_rule)rule, codes_rtn, sc_rtn, &ts_rtn, "w", &err) == LLMQ_OK);
                llmq_gptq_stats st;
                const float *cl = id ? NULL : clip;   /* identity: round to nearest of w on its own grid */
                CHECK(llmq_gptq_quantize_block(NULL, t, (llmq_mx_rule)rule, h, w, R, cl, codes, sc, &ts, deq, &st, &err) ==
                      LLMQ_OK);
                CHECK_MSG(ts == ts_rtn && !memcmp(sc, sc_rtn, sizeof sc), "%s rule %d: the grid is round to nearest's",
                          llmq_block_name(t), rule);
                for (int i = 0; i < R; i++) {
                    llmq_block_dequantize_row(t, codes + i * CB, sc + i * NG, ts, C, out);
                    CHECK_MSG(!memcmp(out, deq + i * C, sizeof out), "%s rule %d row %d: codes decode to deq",
                              llmq_block_name(t), rule, i);
                }
                if (id) {
                    CHECK_MSG(!memcmp(codes, codes_rtn, (size_t)R * CB), "%s rule %d: identity Gram gives round to nearest",
                              llmq_block_name(t), rule);
                } else {
                    float q_rtn[R * C];
                    for (int i = 0; i < R; i++)
                        llmq_block_dequantize_row(t, codes_rtn + i * CB, sc_rtn + i * NG, ts, C, q_rtn + i * C);
                    double l_rtn = llmq_gptq_loss(h, W, q_rtn, R), l_g = llmq_gptq_loss(h, W, deq, R);
                    CHECK_MSG(l_g <= l_rtn * 1.0001, "%s rule %d: gptq loss %g above round to nearest's %g",
                              llmq_block_name(t), rule, l_g, l_rtn);
                }
                llmq_gptq_h_free(h);
            }
        }
    }
    free(gram); free(eye);
}

/* A made-up block-format gptq result for m: scales, codes, scale bytes and
 * tensor scales random (valid). */
static void fake_block(const llmq_model *m, llmq_wtype t, llmq_awq_result *res)
{
    const llmq_config *c = &m->cfg;
    memset(res, 0, sizeof *res);
    res->m = m;
    res->n_layers = c->n_layers;
    res->tokens = 1024;
    llmq_awq_opts_default(&res->o);
    res->o.q = qcfg(t, LLMQ_MX_SCALE_MSE);
    res->o.propagate_fp = 1;
    res->o.gptq = 1;
    res->layers = calloc((size_t)c->n_layers, sizeof *res->layers);
    const int B = llmq_block_size(t);
    for (int l = 0; l < c->n_layers; l++) {
        llmq_awq_layer *A = &res->layers[l];
        for (int g = 0; g < LLMQ_AWQ_NGROUP; g++) {
            A->s[g] = malloc((size_t)llmq_awq_scale_dim(c, g) * sizeof(float));
            for (int64_t i = 0; i < llmq_awq_scale_dim(c, g); i++) A->s[g][i] = 0.5f + frand();
        }
        for (int k = 0; k < LLMQ_AWQ_NLIN; k++) {
            int64_t rows = llmq_linear_rows(c, k), cols = llmq_linear_cols(c, k), ng = rows * (cols / B);
            int64_t cb = rows * (llmq_wtype_is_block4(t) ? cols / 2 : cols);
            A->codes[k] = malloc((size_t)cb);
            A->bscales[k] = malloc((size_t)ng);
            for (int64_t i = 0; i < cb; i++) A->codes[k][i] = (uint8_t)(frand() * 256) & (t == LLMQ_W_MXFP8 ? 0x7e : 0xff);
            for (int64_t i = 0; i < ng; i++) A->bscales[k][i] = (uint8_t)(frand() * 0x7e);
            A->tscale[k] = llmq_wtype_is_nv(t) ? 1e-3f + frand() : 1.0f;
            if (k % 2) {
                A->clip[k] = malloc((size_t)ng * 2 * sizeof(float));
                for (int64_t i = 0; i < 2 * ng; i++) A->clip[k][i] = frand() < 0.3f ? INFINITY : frand();
            }
        }
    }
}

static int save_all(llmq_awq_result *res, const char *digest, const char *path)
{
    llmq_err err = { 0, "" };
    res->o.layer_lo = 0;
    res->o.layer_hi = res->n_layers;
    int rc = llmq_awq_shard_save(res, digest, NULL, path, &err);
    if (rc) fprintf(stderr, "  save: %s\n", err.msg);
    res->o.layer_hi = 0;
    return rc;
}

TEST(shards_carry_the_block_format)
{
    llmq_model m;
    llmq_err err = { 0, "" };
    char digest[65], path[512];
    snprintf(path, sizeof path, "%s/llmq-tab.%d", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    CHECK_EQ_INT(llmq_model_open(&m, "testdata/tiny-qwen2-gqa", &err), LLMQ_OK);
    CHECK_EQ_INT(llmq_model_digest(&m, digest, &err), LLMQ_OK);
    const llmq_config *c = &m.cfg;
    for (size_t ti = 0; ti < LLMQ_ARRAY_LEN(types); ti++) {
        llmq_wtype t = types[ti];
        const int B = llmq_block_size(t);
        llmq_awq_result res, back;
        cJSON *info = NULL;
        fake_block(&m, t, &res);
        CHECK_EQ_INT(save_all(&res, digest, path), LLMQ_OK);
        const char *p[1] = { path };
        CHECK_EQ_INT(llmq_awq_shard_join(&m, digest, p, 1, &back, &info, &err), LLMQ_OK);
        cJSON_Delete(info);
        CHECK_MSG(back.o.q.btype == t && back.o.q.rule == LLMQ_MX_SCALE_MSE && back.o.q.group == B && back.o.gptq,
                  "%s: options", llmq_block_name(t));
        for (int l = 0; l < c->n_layers && back.layers; l++)
            for (int k = 0; k < LLMQ_AWQ_NLIN; k++) {
                const llmq_awq_layer *a = &res.layers[l], *b = &back.layers[l];
                int64_t rows = llmq_linear_rows(c, k), cols = llmq_linear_cols(c, k), ng = rows * (cols / B);
                int64_t cb = rows * (llmq_wtype_is_block4(t) ? cols / 2 : cols);
                CHECK_MSG(b->codes[k] && !memcmp(a->codes[k], b->codes[k], (size_t)cb) && b->bscales[k] &&
                          !memcmp(a->bscales[k], b->bscales[k], (size_t)ng) && a->tscale[k] == b->tscale[k] &&
                          !b->scales[k] && !b->zeros[k], "%s layer %d linear %d", llmq_block_name(t), l, k);
                CHECK(!a->clip[k] == !b->clip[k] && (!a->clip[k] || !memcmp(a->clip[k], b->clip[k], (size_t)ng * 8)));
            }
        llmq_awq_release(&back);
        /* a NaN scale byte, a zero NV tensor scale, an MX tensor scale not 1: refused */
        uint8_t keep = res.layers[1].bscales[2][5];
        res.layers[1].bscales[2][5] = llmq_wtype_is_nv(t) ? 0x7f : LLMQ_E8M0_NAN;
        CHECK_EQ_INT(save_all(&res, digest, path), LLMQ_OK);
        CHECK_EQ_INT(llmq_awq_shard_join(&m, digest, p, 1, &back, &info, &err), LLMQ_EFORMAT);
        CHECK_MSG(strstr(err.msg, "scale 5 is not a") != NULL, "%s: %s", llmq_block_name(t), err.msg);
        res.layers[1].bscales[2][5] = keep;
        res.layers[0].tscale[3] = llmq_wtype_is_nv(t) ? 0.0f : 2.0f;
        CHECK_EQ_INT(save_all(&res, digest, path), LLMQ_OK);
        CHECK_EQ_INT(llmq_awq_shard_join(&m, digest, p, 1, &back, &info, &err), LLMQ_EFORMAT);
        CHECK_MSG(strstr(err.msg, "tensor scale") != NULL, "%s: %s", llmq_block_name(t), err.msg);
        llmq_awq_release(&res);
    }
    unlink(path);
    llmq_model_close(&m);
}

TEST_MAIN()
