/* t-ctensors: llmq export --to compressed-tensors and the reader, model by
 * model: every linear of a packed model, exported and read back, is the
 * same llmq_wmat (type, shape, group, and the bytes of codes, scales and
 * zero points), every other tensor the same bytes; what compressed-tensors
 * has no format for is refused. */
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

#define MODEL "testdata/tiny-qwen2-gqa"

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
TEST(roundtrip_int3_asym_g128) { roundtrip("int3-g128-asym", 28); }
TEST(roundtrip_int8) { roundtrip("int8", 28); }

TEST(refuses_float_and_mx8)
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
}

TEST_MAIN()
