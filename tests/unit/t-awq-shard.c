/* t-awq-shard.c - AWQ shards: what a range of layers saves, joined back,
 * is every array and record value bit for bit; shards that do not add up
 * or whose bytes were changed are refused without a crash. */
#include <stdint.h>
#include <unistd.h>
#include "../test.h"
#include "../../lib/algo/awq_shard.h"
#include "../../lib/algo/pack.h"

#define MODEL "testdata/tiny-qwen2-gqa"

static char tmpdir[256];
static char *tpath(const char *name)
{
    static char p[4][512];
    static int k;
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "%s/llmq-tas.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (!mkdtemp(tmpdir)) { perror("mkdtemp"); exit(1); }
    }
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", tmpdir, name);
    return p[k];
}

static uint64_t rs = 12345;
static double urand(void)
{
    rs = rs * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rs >> 11) / 9007199254740992.0;
}

/* A made-up result for m: every scale, clip, code and record value random. */
static void fake(const llmq_model *m, int gptq, llmq_awq_result *res)
{
    const llmq_config *c = &m->cfg;
    memset(res, 0, sizeof *res);
    res->m = m;
    res->n_layers = c->n_layers;
    res->tokens = 4096;
    llmq_awq_opts_default(&res->o);
    res->o.propagate_fp = 1;
    res->o.gptq = gptq;
    res->o.seed = 18446744073709551615ULL;   /* 2^64 - 1 survives the text */
    res->layers = calloc((size_t)c->n_layers, sizeof *res->layers);
    int G = res->o.q.group;
    for (int l = 0; l < c->n_layers; l++) {
        llmq_awq_layer *A = &res->layers[l];
        for (int g = 0; g < LLMQ_AWQ_NGROUP; g++) {
            A->s[g] = malloc((size_t)llmq_awq_scale_dim(c, g) * sizeof(float));
            for (int64_t i = 0; i < llmq_awq_scale_dim(c, g); i++) A->s[g][i] = (float)(0.01 + urand());
        }
        for (int k = 0; k < LLMQ_AWQ_NLIN; k++) {
            int64_t rows = llmq_linear_rows(c, k), cols = llmq_linear_cols(c, k), ng = rows * (cols / G);
            if ((k + l) % 3) {
                A->clip[k] = malloc((size_t)ng * 2 * sizeof(float));
                for (int64_t i = 0; i < 2 * ng; i++) A->clip[k][i] = urand() < 0.3 ? INFINITY : (float)urand();
            }
            if (gptq) {
                A->codes[k] = malloc((size_t)(rows * cols / 2));
                A->scales[k] = malloc((size_t)ng * 2);
                A->zeros[k] = malloc((size_t)ng);
                for (int64_t i = 0; i < rows * cols / 2; i++) A->codes[k][i] = (uint8_t)(urand() * 256);
                for (int64_t i = 0; i < ng; i++) { A->scales[k][i] = (uint16_t)(urand() * 30000); A->zeros[k][i] = (uint8_t)(urand() * 16); }
            }
            A->clip_before[k] = urand(); A->clip_after[k] = urand(); A->clip_mean[k] = urand(); A->clip_frac[k] = urand();
            A->gptq_loss[k][0] = urand(); A->gptq_loss[k][1] = urand();
        }
        for (int g = 0; g < LLMQ_AWQ_NGROUP; g++) {
            A->ratio[g] = urand(); A->duo[g] = urand() < 0.5; A->fallback[g] = urand() < 0.2; A->exact[g] = urand() < 0.5;
            A->loss_s1[g] = urand(); A->loss_best[g] = urand();
        }
        A->out_rtn = NAN;   /* no loss windows */
        A->out_awq = urand();
        A->sec_stats = urand(); A->sec_scale = urand(); A->sec_clip = urand(); A->sec_fwd = urand();
    }
}

static int same_layer(const llmq_config *c, const llmq_awq_layer *a, const llmq_awq_layer *b, int G)
{
    int ok = 1;
    for (int g = 0; g < LLMQ_AWQ_NGROUP; g++) {
        ok &= !memcmp(a->s[g], b->s[g], (size_t)llmq_awq_scale_dim(c, g) * sizeof(float));
        ok &= a->ratio[g] == b->ratio[g] && a->duo[g] == b->duo[g] && a->fallback[g] == b->fallback[g];
        ok &= a->exact[g] == b->exact[g] && a->loss_s1[g] == b->loss_s1[g] && a->loss_best[g] == b->loss_best[g];
    }
    for (int k = 0; k < LLMQ_AWQ_NLIN; k++) {
        int64_t rows = llmq_linear_rows(c, k), cols = llmq_linear_cols(c, k), ng = rows * (cols / G);
        ok &= !a->clip[k] == !b->clip[k] && (!a->clip[k] || !memcmp(a->clip[k], b->clip[k], (size_t)ng * 8));
        ok &= !a->codes[k] == !b->codes[k] && (!a->codes[k] || !memcmp(a->codes[k], b->codes[k], (size_t)(rows * cols / 2)));
        ok &= !a->scales[k] == !b->scales[k] && (!a->scales[k] || !memcmp(a->scales[k], b->scales[k], (size_t)ng * 2));
        ok &= !a->zeros[k] == !b->zeros[k] && (!a->zeros[k] || !memcmp(a->zeros[k], b->zeros[k], (size_t)ng));
        ok &= a->clip_before[k] == b->clip_before[k] && a->clip_after[k] == b->clip_after[k];
        ok &= a->clip_mean[k] == b->clip_mean[k] && a->clip_frac[k] == b->clip_frac[k];
        ok &= a->gptq_loss[k][0] == b->gptq_loss[k][0] && a->gptq_loss[k][1] == b->gptq_loss[k][1];
    }
    ok &= isnan(a->out_rtn) == isnan(b->out_rtn) && (isnan(a->out_rtn) || a->out_rtn == b->out_rtn);
    ok &= a->out_awq == b->out_awq && a->sec_stats == b->sec_stats && a->sec_scale == b->sec_scale;
    ok &= a->sec_clip == b->sec_clip && a->sec_fwd == b->sec_fwd;
    return ok;
}

/* The test model and its digest. */
static void open_model(llmq_model *m, char digest[65])
{
    llmq_err err = { 0, "" };
    CHECK_EQ_INT(llmq_model_open(m, MODEL, &err), LLMQ_OK);
    CHECK_EQ_INT(llmq_model_digest(m, digest, &err), LLMQ_OK);
}

static int save_range(llmq_awq_result *res, const char *digest, int lo, int hi, const char *path)
{
    llmq_err err = { 0, "" };
    res->o.layer_lo = lo;
    res->o.layer_hi = hi;
    cJSON *info = cJSON_CreateObject();
    cJSON_AddStringToObject(info, "calib_text_sha256", "abc");
    int rc = llmq_awq_shard_save(res, digest, info, path, &err);
    if (rc) fprintf(stderr, "  save: %s\n", err.msg);
    cJSON_Delete(info);
    res->o.layer_lo = res->o.layer_hi = 0;
    return rc;
}

static int join(const llmq_model *m, const char *digest, const char **paths, int n, llmq_awq_result *out, llmq_err *err)
{
    cJSON *info = NULL;
    int rc = llmq_awq_shard_join(m, digest, paths, n, out, &info, err);
    cJSON_Delete(info);
    return rc;
}

TEST(shards_round_trip)
{
    llmq_model m;
    llmq_err err = { 0, "" };
    char digest[65];
    open_model(&m, digest);
    int L = m.cfg.n_layers;
    for (int gptq = 0; gptq < 2; gptq++) {
        llmq_awq_result res, back;
        fake(&m, gptq, &res);
        const char *p[3] = { strdup(tpath("a")), strdup(tpath("b")), strdup(tpath("c")) };
        CHECK_EQ_INT(save_range(&res, digest, 1, L - 1, p[0]), LLMQ_OK);
        CHECK_EQ_INT(save_range(&res, digest, L - 1, L, p[1]), LLMQ_OK);
        CHECK_EQ_INT(save_range(&res, digest, 0, 1, p[2]), LLMQ_OK);
        CHECK_EQ_INT(join(&m, digest, p, 3, &back, &err), LLMQ_OK);
        CHECK(back.o.propagate_fp == 1 && back.o.gptq == gptq && back.o.seed == res.o.seed && back.tokens == res.tokens);
        CHECK(back.o.max_shrink == res.o.max_shrink && back.o.gptq_damp == res.o.gptq_damp);
        for (int l = 0; l < L && back.layers; l++) CHECK_MSG(same_layer(&m.cfg, &res.layers[l], &back.layers[l], 128), "layer %d", l);
        llmq_awq_release(&back);
        /* a layer left out; a layer twice; another model */
        CHECK_EQ_INT(join(&m, digest, p, 2, &back, &err), LLMQ_EFORMAT);
        CHECK(strstr(err.msg, "no shard holds layer 0") != NULL);
        const char *twice[4] = { p[0], p[1], p[2], p[2] };
        CHECK_EQ_INT(join(&m, digest, twice, 4, &back, &err), LLMQ_EFORMAT);
        CHECK(strstr(err.msg, "is also in") != NULL);
        char other[65];
        memcpy(other, digest, 65);
        other[0] = other[0] == '0' ? '1' : '0';
        CHECK_EQ_INT(join(&m, other, p, 3, &back, &err), LLMQ_EFORMAT);
        CHECK(strstr(err.msg, "another model") != NULL);
        /* another run's options */
        res.o.n_grid = 7;
        CHECK_EQ_INT(save_range(&res, digest, 0, 1, p[2]), LLMQ_OK);
        CHECK_EQ_INT(join(&m, digest, p, 3, &back, &err), LLMQ_EFORMAT);
        CHECK(strstr(err.msg, "another awq run") != NULL);
        for (int i = 0; i < 3; i++) { unlink(p[i]); free((void *)p[i]); }
        llmq_awq_release(&res);
    }
    llmq_model_close(&m);
}

/* Every single-byte change of a shard's header and of a sample of its data
 * is either refused or joins; never a crash (ASan run). */
TEST(shards_hostile_bytes)
{
    llmq_model m;
    llmq_err err = { 0, "" };
    char digest[65];
    open_model(&m, digest);
    llmq_awq_result res, back;
    fake(&m, 0, &res);
    /* layer 0 alone is the one tampered with; the rest joins it intact */
    const char *p = strdup(tpath("l0")), *q = strdup(tpath("bad")), *r = strdup(tpath("rest"));
    CHECK_EQ_INT(save_range(&res, digest, 0, 1, p), LLMQ_OK);
    CHECK_EQ_INT(save_range(&res, digest, 1, m.cfg.n_layers, r), LLMQ_OK);
    FILE *f = fopen(p, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    uint8_t *b = malloc((size_t)n);
    CHECK(fread(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    uint64_t hl = 0;
    memcpy(&hl, b, 8);
    int refused = 0, joined = 0;
    static const uint8_t vals[] = { 0x00, 0x22, 0x7f, 0xff, '9', ',', '-' };
    for (long i = 0; i < n; i += i < (long)hl + 8 ? 3 : 4099) {
        uint8_t keep = b[i];
        b[i] = vals[i % (long)sizeof vals] == keep ? (uint8_t)(keep ^ 0x40) : vals[i % (long)sizeof vals];
        FILE *g = fopen(q, "wb");
        fwrite(b, 1, (size_t)n, g);
        fclose(g);
        b[i] = keep;
        const char *two[2] = { q, r };
        if (join(&m, digest, two, 2, &back, &err) == LLMQ_OK) { joined++; llmq_awq_release(&back); }
        else refused++;
    }
    CHECK(refused > 0 && joined > 0);   /* some data bytes are just other values */
    /* truncated at every 64th byte */
    for (long len = 0; len < n; len += len < (long)hl + 8 ? 61 : 4099) {
        FILE *g = fopen(q, "wb");
        fwrite(b, 1, (size_t)len, g);
        fclose(g);
        const char *two[2] = { q, r };
        CHECK(join(&m, digest, two, 2, &back, &err) != LLMQ_OK);
    }
    unlink(p); unlink(q); unlink(r);
    free(b); free((void *)p); free((void *)q); free((void *)r);
    llmq_awq_release(&res);
    llmq_model_close(&m);
    rmdir(tmpdir);
}

TEST_MAIN()
