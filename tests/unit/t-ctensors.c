/* t-ctensors: llmq export --to compressed-tensors and the reader, model by
 * model: every linear of a packed model, exported and read back, is the
 * same llmq_wmat (type, shape, group, and the bytes of codes, scales and
 * zero points), every other tensor the same bytes; what compressed-tensors
 * has no format for is refused.  NVFP4 (nvfp4-pack-quantized, read only):
 * the safetensors dtypes F8_E4M3 / F8_E5M2, and testdata/ct-nvfp4 (written
 * with compressed-tensors' functions) read in place as LLMQ_W_NVFP4 whose
 * values are compressed-tensors' fp4 * (weight_scale / weight_global_scale). */
#include "../test.h"
#include <dirent.h>
#include <unistd.h>
#include "lib/base/fileio.h"
#include "model.h"
#include "kernels/kernels.h"
#include "../../formats/ctensors.h"
#include "../../formats/packed.h"
#include "../../lib/algo/pack.h"
#include "../../lib/export/ct_export.h"
#include "../../lib/base/blocks.h"
#include "linears.h"

#define MODEL "testdata/tiny-qwen2-gqa"
#define NVFP4 "testdata/ct-nvfp4"

static char tmpdir[256];

static void rm_tree(const char *p)
{
    DIR *d = opendir(p);
    if (!d) { unlink(p); return; }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char q[1024];
        snprintf(q, sizeof q, "%s/%s", p, e->d_name);
        rm_tree(q);
    }
    closedir(d);
    rmdir(p);
}

static void cleanup(void) { if (tmpdir[0]) rm_tree(tmpdir); }

static const char *tpath(const char *name)
{
    static char p[4][512];
    static int k;
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "%s/llmq-tct.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (!mkdtemp(tmpdir)) { perror("mkdtemp"); exit(1); }
        atexit(cleanup);
    }
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", tmpdir, name);
    return p[k];
}

static int same_wmat(const llmq_wmat *a, const llmq_wmat *b)
{
    if (a->type != b->type || a->rows != b->rows || a->cols != b->cols || !a->zeros != !b->zeros) return 0;
    size_t n = (size_t)(a->rows * a->cols);
    switch (a->type) {
    case LLMQ_W_Q8:
        return !memcmp(a->data, b->data, n) && !memcmp(a->scales, b->scales, (size_t)a->rows * 4);
    case LLMQ_W_Q4: {
        if (a->group != b->group) return 0;
        size_t g = (size_t)a->rows * (size_t)(a->cols / a->group);
        return !memcmp(a->data, b->data, n / 2) && !memcmp(a->scales, b->scales, 2 * g) &&
               (!a->zeros || !memcmp(a->zeros, b->zeros, g));
    }
    default:
        return !memcmp(a->data, b->data, llmq_wmat_bytes(a));
    }
}

/* pack MODEL with scheme s, export it, and compare what the two files load as */
static void roundtrip(const char *scheme, int expect_packed)
{
    llmq_err err = { 0, "" };
    llmq_model src, pk, ct;
    llmq_pack_opts po;
    llmq_pack_stats ps;
    llmq_ct_export_stats cs;
    memset(&po, 0, sizeof po);
    CHECK(llmq_qscheme_parse(scheme, &po.scheme) == 0);
    const char *pdir = tpath("packed"), *cdir = tpath("ct");
    CHECK_EQ_INT(llmq_model_open(&src, MODEL, &err), 0);
    CHECK_MSG(llmq_pack_model(&src, &po, pdir, &ps, &err) == 0, "%s", err.msg);
    llmq_model_close(&src);
    CHECK_MSG(llmq_model_open(&pk, pdir, &err) == 0, "%s", err.msg);
    CHECK_MSG(llmq_ct_export(&pk, cdir, "test", &cs, &err) == 0, "%s", err.msg);
    CHECK_EQ_INT(cs.linears_packed, expect_packed);
    CHECK_MSG(llmq_model_open(&ct, cdir, &err) == 0, "%s", err.msg);
    CHECK(ct.ct != NULL && pk.ct == NULL);
    int n_same = 0, n = 0;
    for (int l = 0; l < pk.cfg.n_layers; l++) {
        const llmq_layer *A = &pk.layers[l], *B = &ct.layers[l];
        const llmq_wmat *a[] = { &A->wq, &A->wk, &A->wv, &A->wo, &A->w_gate, &A->w_up, &A->w_down };
        const llmq_wmat *b[] = { &B->wq, &B->wk, &B->wv, &B->wo, &B->w_gate, &B->w_up, &B->w_down };
        for (int i = 0; i < 7; i++, n++) {
            CHECK(a[i]->type >= LLMQ_W_Q8);
            n_same += same_wmat(a[i], b[i]);
        }
        CHECK(!memcmp(A->attn_norm, B->attn_norm, (size_t)pk.cfg.hidden * 4));
        CHECK(!memcmp(A->mlp_norm, B->mlp_norm, (size_t)pk.cfg.hidden * 4));
        if (A->bq) CHECK(B->bq && !memcmp(A->bq, B->bq, (size_t)(pk.cfg.n_heads * pk.cfg.head_dim) * 4));
    }
    CHECK_EQ_INT(n_same, n);
    CHECK(same_wmat(&pk.embed, &ct.embed));
    CHECK(same_wmat(&pk.lm_head, &ct.lm_head));
    CHECK(!memcmp(pk.final_norm, ct.final_norm, (size_t)pk.cfg.hidden * 4));
    /* the export of the export: the same bytes again */
    llmq_model_close(&pk);
    const char *c2 = tpath("ct2");
    CHECK_MSG(llmq_ct_export(&ct, c2, "test", &cs, &err) == 0, "%s", err.msg);
    char *f1 = llmq_path_join(cdir, "model.safetensors", &err), *f2 = llmq_path_join(c2, "model.safetensors", &err);
    char *b1 = NULL, *b2 = NULL;
    size_t n1 = 0, n2 = 0;
    CHECK(llmq_read_file(f1, &b1, &n1, &err) == 0 && llmq_read_file(f2, &b2, &n2, &err) == 0);
    /* the same bytes: same tensors, same metadata (the command line given is the same) */
    CHECK(n1 == n2 && b1 && b2 && !memcmp(b1, b2, n1));
    free(b1); free(b2); free(f1); free(f2);
    llmq_model_close(&ct);
    rm_tree(pdir);
    rm_tree(cdir);
    rm_tree(c2);
}

TEST(roundtrip_int4_asym_g64) { roundtrip("int4-g64-asym", 28); }
TEST(roundtrip_int4_sym_g32) { roundtrip("int4-g32-sym", 28); }
TEST(roundtrip_int4_asym_g128) { roundtrip("int4-g128-asym", 28); }
TEST(roundtrip_int8) { roundtrip("int8", 28); }

TEST(refuses_float_mx8_and_int3)
{
    llmq_err err = { 0, "" };
    llmq_model m, pk;
    llmq_ct_export_stats cs;
    CHECK_EQ_INT(llmq_model_open(&m, MODEL, &err), 0);
    CHECK_EQ_INT(llmq_ct_export(&m, tpath("f"), NULL, &cs, &err), LLMQ_EUNSUPPORTED);
    CHECK(strstr(err.msg, "no int4 or int8 linear") != NULL);
    CHECK(access(tpath("f"), F_OK) != 0);
    CHECK_EQ_INT(llmq_ct_export(&m, MODEL, NULL, &cs, &err), LLMQ_EUSAGE);
    llmq_pack_opts po;
    llmq_pack_stats ps;
    memset(&po, 0, sizeof po);
    CHECK(llmq_qscheme_parse("mxint8", &po.scheme) == 0);
    CHECK_MSG(llmq_pack_model(&m, &po, tpath("mx"), &ps, &err) == 0, "%s", err.msg);
    llmq_model_close(&m);
    CHECK_EQ_INT(llmq_model_open(&pk, tpath("mx"), &err), 0);
    CHECK_EQ_INT(llmq_ct_export(&pk, tpath("f"), NULL, &cs, &err), LLMQ_EUNSUPPORTED);
    CHECK(strstr(err.msg, "mxint8") != NULL);
    llmq_model_close(&pk);
    /* int3 at three bits per weight: compressed-tensors' int4 words cannot hold it as it lies */
    CHECK_EQ_INT(llmq_model_open(&m, MODEL, &err), 0);
    CHECK(llmq_qscheme_parse("int3-g128-asym", &po.scheme) == 0);
    CHECK_MSG(llmq_pack_model(&m, &po, tpath("i3"), &ps, &err) == 0, "%s", err.msg);
    llmq_model_close(&m);
    CHECK_EQ_INT(llmq_model_open(&pk, tpath("i3"), &err), 0);
    CHECK_EQ_INT(llmq_ct_export(&pk, tpath("f"), NULL, &cs, &err), LLMQ_EUNSUPPORTED);
    CHECK_MSG(strstr(err.msg, "int3") && strstr(err.msg, "compressed-tensors"), "%s", err.msg);
    CHECK(access(tpath("f"), F_OK) != 0);
    llmq_model_close(&pk);
}

/* ---- NVFP4: the F8 dtypes of safetensors ---- */

/* A safetensors image: header hdr (padded to 8) and data bytes. */
static uint8_t *st_image(const char *hdr, const uint8_t *data, size_t n, size_t *len)
{
    size_t h = strlen(hdr), hp = (h + 7) / 8 * 8;
    uint8_t *b = calloc(1, 8 + hp + n);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(hp >> (8 * i));
    memcpy(b + 8, hdr, h);
    memset(b + 8 + h, ' ', hp - h);
    if (n) memcpy(b + 8 + hp, data, n);
    *len = 8 + hp + n;
    return b;
}

TEST(f8_dtypes)
{
    llmq_dtype dt;
    CHECK(llmq_dtype_from_name("F8_E4M3", &dt) == 0 && dt == LLMQ_DT_F8_E4M3);
    CHECK(llmq_dtype_from_name("F8_E5M2", &dt) == 0 && dt == LLMQ_DT_F8_E5M2);
    CHECK_EQ_INT(llmq_dtype_size(LLMQ_DT_F8_E4M3), 1);
    CHECK_EQ_INT(llmq_dtype_size(LLMQ_DT_F8_E5M2), 1);
    CHECK(!strcmp(llmq_dtype_name(LLMQ_DT_F8_E4M3), "F8_E4M3") && !strcmp(llmq_dtype_name(LLMQ_DT_F8_E5M2), "F8_E5M2"));
    CHECK_EQ_INT(llmq_dtype_from_name("f8_e4m3", &dt), -1);
    CHECK_EQ_INT(llmq_dtype_from_name("F8_E4M3FN", &dt), -1);

    static const uint8_t data[6] = { 0x38, 0x7f, 0xff, 0x01, 0x3c, 0x80 };
    llmq_err err = { 0, "" };
    llmq_st_file f;
    size_t len;
    uint8_t *b = st_image("{\"s\":{\"dtype\":\"F8_E4M3\",\"shape\":[2,2],\"data_offsets\":[0,4]},"
                          "\"t\":{\"dtype\":\"F8_E5M2\",\"shape\":[2],\"data_offsets\":[4,6]}}", data, 6, &len);
    CHECK_MSG(llmq_st_parse(&f, b, len, "f8.safetensors", &err) == 0, "%s", err.msg);
    const llmq_st_tensor *s = llmq_st_find(&f, "s"), *t = llmq_st_find(&f, "t");
    CHECK(s && s->dtype == LLMQ_DT_F8_E4M3 && s->nelem == 4 && s->nbytes == 4 && s->data[1] == 0x7f);
    CHECK(t && t->dtype == LLMQ_DT_F8_E5M2 && t->nbytes == 2 && t->data[1] == 0x80);
    float z[4] = { 1, 1, 1, 1 };
    llmq_st_tensor_f32(s, z);            /* no float path: zeros, as for every non-float dtype */
    CHECK(z[0] == 0 && z[3] == 0);
    uint8_t out[8];
    float one = 1.0f;
    CHECK_EQ_INT(llmq_st_put_f32(out, LLMQ_DT_F8_E4M3, &one, 1, "s", &err), LLMQ_EINTERNAL);
    llmq_st_close(&f);
    free(b);

    /* one byte per element: a span of another size is corrupt */
    b = st_image("{\"s\":{\"dtype\":\"F8_E4M3\",\"shape\":[3],\"data_offsets\":[0,6]}}", data, 6, &len);
    CHECK_EQ_INT(llmq_st_parse(&f, b, len, "f8.safetensors", &err), LLMQ_EFORMAT);
    CHECK(strstr(err.msg, "'s'") && strstr(err.msg, "F8_E4M3 shape needs 3 bytes"));
    llmq_st_close(&f);
    free(b);
    /* the other 8-bit floats of the format stay refused */
    b = st_image("{\"s\":{\"dtype\":\"F8_E8M0\",\"shape\":[1],\"data_offsets\":[0,1]}}", data, 1, &len);
    CHECK_EQ_INT(llmq_st_parse(&f, b, len, "f8.safetensors", &err), LLMQ_EUNSUPPORTED);
    CHECK(strstr(err.msg, "F8_E8M0") != NULL);
    llmq_st_close(&f);
    free(b);

    /* written as they were read */
    int64_t sh[2] = { 2, 2 };
    llmq_st_writer *w = llmq_st_writer_new(&err);
    CHECK_EQ_INT(llmq_st_writer_add(w, "s", LLMQ_DT_F8_E4M3, 2, sh, data, &err), 0);
    CHECK_EQ_INT(llmq_st_writer_add(w, "t", LLMQ_DT_F8_E5M2, 1, sh, data + 4, &err), 0);
    CHECK_MSG(llmq_st_writer_finish(w, tpath("f8.safetensors"), &err) == 0, "%s", err.msg);
    llmq_st_writer_free(w);
    CHECK_MSG(llmq_st_open(&f, tpath("f8.safetensors"), &err) == 0, "%s", err.msg);
    s = llmq_st_find(&f, "s");
    t = llmq_st_find(&f, "t");
    CHECK(s && s->dtype == LLMQ_DT_F8_E4M3 && s->nbytes == 4 && !memcmp(s->data, data, 4));
    CHECK(t && t->dtype == LLMQ_DT_F8_E5M2 && t->nbytes == 2 && !memcmp(t->data, data + 4, 2));
    llmq_st_close(&f);
}

/* ---- NVFP4: testdata/ct-nvfp4 ---- */

/* One linear of the NVFP4 checkpoint against its tensors: the view borrows
 * them, and every value is compressed-tensors' fp4 * (e4m3 / global) up to
 * the one rounding of 1 / global.  Returns the largest relative difference. */
static double nvfp4_linear_check(const llmq_model *m, const char *prefix, const llmq_wmat *w)
{
    char n[320];
    snprintf(n, sizeof n, "%s.weight_packed", prefix);
    const llmq_st_tensor *q = llmq_model_tensor(m, n);
    snprintf(n, sizeof n, "%s.weight_scale", prefix);
    const llmq_st_tensor *sc = llmq_model_tensor(m, n);
    snprintf(n, sizeof n, "%s.weight_global_scale", prefix);
    const llmq_st_tensor *gt = llmq_model_tensor(m, n);
    CHECK(q && sc && gt && sc->dtype == LLMQ_DT_F8_E4M3 && gt->dtype == LLMQ_DT_F32);
    if (!q || !sc || !gt) return 1.0;
    float gs = llmq_bits_f32(llmq_get_le32(gt->data));
    CHECK_MSG(w->type == LLMQ_W_NVFP4 && w->group == 16 && w->tscale == 1.0f / gs, "%s", prefix);
    CHECK(w->data == (const void *)q->data && w->scales == (const void *)sc->data);
    double worst = 0.0;
    float *row = malloc((size_t)w->cols * sizeof(float));
    for (int64_t r = 0; r < w->rows; r++) {
        llmq_get_row(w, r, row);
        for (int64_t j = 0; j < w->cols; j++) {
            uint8_t byte = q->data[r * (w->cols / 2) + j / 2];
            float fp4 = llmq_e2m1_values[(byte >> (4 * (j & 1))) & 15];
            float ref = fp4 * (llmq_e4m3_to_f32(sc->data[r * (w->cols / 16) + j / 16]) / gs);
            double d = ref == 0.0f ? fabs((double)row[j]) : fabs((double)row[j] - ref) / fabs((double)ref);
            if (d > worst) worst = d;
        }
    }
    free(row);
    return worst;
}

TEST(nvfp4_reads_in_place)
{
    llmq_err err = { 0, "" };
    llmq_model m;
    CHECK_MSG(llmq_model_open(&m, NVFP4, &err) == 0, "%s", err.msg);
    if (err.code) return;
    CHECK(m.ct != NULL && !strcmp(m.weights_dtype, "ct-nvfp4a16") && !llmq_ct_act_fp4(m.ct) && !llmq_ct_act_int8(m.ct));
    double worst = 0.0;
    int n = 0;
    char prefix[128];
    for (int l = 0; l < m.cfg.n_layers; l++)
        for (int k = 0; k < LLMQ_LIN_COUNT; k++, n++) {
            snprintf(prefix, sizeof prefix, "model.layers.%d.%s", l, llmq_linears[k].hf);
            double d = nvfp4_linear_check(&m, prefix, llmq_layer_w(&m.layers[l], k));
            if (d > worst) worst = d;
        }
    CHECK_EQ_INT(n, 28);
    /* llmq rounds 1 / global, its product with the E4M3 scale and the value;
     * compressed-tensors the quotient and the value: a few 2^-24 at most
     * (seen: 2.5 x 2^-24) */
    CHECK_MSG(worst <= 8.0 * 0x1p-24, "worst relative difference %g", worst);
    /* the head is ignored (tied): the bf16 embedding */
    CHECK(m.lm_head.type == LLMQ_W_BF16);
    CHECK_NEAR(llmq_model_bits_per_weight(&m), 4.5, 1e-3);
    llmq_model_close(&m);
}

TEST(nvfp4_codes_are_e2m1)
{
    /* compressed-tensors' FLOAT_TO_E2M1 and sign bit 3 are llmq's E2M1 table */
    static const float mag[8] = { 0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f };
    for (int c = 0; c < 16; c++)
        CHECK(llmq_e2m1_values[c] == (c & 8 ? -mag[c & 7] : mag[c & 7]) && !!signbit(llmq_e2m1_values[c]) == !!(c & 8));
    /* and every code of the fixture's packed bytes is one of them */
    llmq_err err = { 0, "" };
    llmq_ckpt c;
    CHECK_MSG(llmq_ckpt_open(&c, NVFP4, &err) == 0, "%s", err.msg);
    const llmq_st_tensor *q = llmq_ckpt_find(&c, "model.layers.0.mlp.down_proj.weight_packed", NULL);
    CHECK(q && q->dtype == LLMQ_DT_U8 && q->ndim == 2 && q->shape[0] == 256 && q->shape[1] == 384);
    int seen[16] = { 0 };
    for (uint64_t i = 0; q && i < q->nbytes; i++) { seen[q->data[i] & 15]++; seen[q->data[i] >> 4]++; }
    int kinds = 0;
    for (int k = 0; k < 16; k++) kinds += seen[k] > 0;
    CHECK(kinds >= 14);          /* the full grid is used, both signs */
    llmq_ckpt_close(&c);
}

TEST_MAIN()
