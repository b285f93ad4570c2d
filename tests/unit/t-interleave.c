/*
 * t-interleave.c - llmq_model_interleave (lib/model.c): which of a model's
 * matrices take the runner's tiles of four rows (wmat.h), that a tied LM
 * head and embeddings stay one view, that untied embeddings keep the
 * file's rows, that LLMQ_INTERLEAVE=0 leaves the model alone, and that
 * the runner's logits do not change by a bit.  (The kernels on both
 * layouts: t-kernels interleaved_same_as_plain.)
 */
#include "../test.h"
#include <stdlib.h>
#include "linears.h"
#include "runner.h"
#include "model.h"
#include "lib/base/fileio.h"

static const int32_t TOKS[] = { 1, 450, 3681, 310, 278, 427, 2989, 322, 3681, 263 };   /* < 4096: every shared vocabulary */
#define NT ((int)LLMQ_ARRAY_LEN(TOKS))

/* the runner's logits of TOKS into out (vocab * NT floats) */
static int run_logits(llmq_model *m, float *out)
{
    llmq_err err = { 0, "" };
    llmq_runner *r;
    int rc = llmq_runner_new(&r, m, NT, NULL, &err);
    CHECK_MSG(rc == 0, "runner: %s", err.msg);
    if (rc) return rc;
    rc = llmq_runner_forward(r, TOKS, NT, 0, out, 1, &err);
    CHECK_MSG(rc == 0, "forward: %s", err.msg);
    llmq_runner_free(r);
    return rc;
}

static void check_model(const char *dir, int tied)
{
    llmq_err err = { 0, "" };
    llmq_model a, b;
    if (llmq_model_open(&a, dir, &err)) { CHECK_MSG(0, "%s: %s", dir, err.msg); return; }
    if (llmq_model_open(&b, dir, &err)) { CHECK_MSG(0, "%s: %s", dir, err.msg); llmq_model_close(&a); return; }
    CHECK((a.embed.data == a.lm_head.data) == tied);
    const void *embed0 = b.embed.data;
    CHECK(llmq_model_interleave(&b, tied, &err) == LLMQ_OK);   /* q4_lanes: int4 only, none here */
    for (int l = 0; l < b.cfg.n_layers; l++)
        for (int k = 0; k < LLMQ_LIN_COUNT; k++) {
            const llmq_wmat *W = llmq_layer_w(&b.layers[l], k);
            CHECK_MSG(W->ilv == LLMQ_ILV_ROWS, "%s layer %d linear %d not in tiles", dir, l, k);
            CHECK(W->data != llmq_layer_w(&a.layers[l], k)->data);
            CHECK(llmq_wmat_check(W, "w", &err) == LLMQ_OK);
        }
    CHECK(b.lm_head.ilv == LLMQ_ILV_ROWS);
    if (tied) {
        CHECK(b.embed.data == b.lm_head.data);
        CHECK(b.embed.ilv == LLMQ_ILV_ROWS);
    } else {
        CHECK(b.embed.data == embed0);           /* read a row per token: left mapped */
        CHECK(b.embed.ilv == 0);
    }
    CHECK(llmq_model_interleave(&b, 0, &err) == LLMQ_OK);   /* a second call finds nothing to do */
    CHECK(b.layers[0].wq.ilv == LLMQ_ILV_ROWS);
    int64_t n = (int64_t)a.cfg.vocab * NT;
    float *la = malloc((size_t)n * 4), *lb = malloc((size_t)n * 4);
    if (!run_logits(&a, la) && !run_logits(&b, lb))
        CHECK_MSG(!memcmp(la, lb, (size_t)n * 4), "%s: logits differ in tiles", dir);
    free(la); free(lb);
    llmq_model_close(&b);
    setenv("LLMQ_INTERLEAVE", "0", 1);
    if (!llmq_model_open(&b, dir, &err)) {
        CHECK(llmq_model_interleave(&b, 0, &err) == LLMQ_OK);
        CHECK(b.layers[0].wq.ilv == 0 && b.lm_head.ilv == 0);
        llmq_model_close(&b);
    }
    unsetenv("LLMQ_INTERLEAVE");
    llmq_model_close(&a);
}

TEST(tied_bf16) { check_model("testdata/tiny-qwen2-gqa", 1); }

TEST(untied_bf16)
{
    const char *shared = getenv("LLMQ_SHARED") ? getenv("LLMQ_SHARED") : "../shared";
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/models/tiny-llama-mha", shared);
    if (!llmq_is_dir(dir)) { fprintf(stderr, "  (no %s: skipped)\n", dir); return; }
    check_model(dir, 0);
}

TEST_MAIN()
