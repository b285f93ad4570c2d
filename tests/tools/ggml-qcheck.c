/*
 * ggml-qcheck - compare the Q8_0 / Q4_0 / Q4_1 blocks llmq export wrote from
 * a float checkpoint with the blocks ggml's own reference quantizers
 * (quantize_row_*_ref, the ones llama-quantize runs without an imatrix)
 * make from the same rows, byte for byte:
 *
 *   ggml-qcheck LIBGGML_BASE.so MODEL FILE.gguf
 *
 * LIBGGML_BASE.so is ggml's base library (node-llama-cpp's prebuilt one in
 * tests/npm); MODEL the checkpoint FILE.gguf was exported from.  Every
 * quantized 2-D tensor of FILE.gguf with a source in MODEL is checked, row
 * by row (q/k rows of a llama file in llama.cpp's order).  Prints one line
 * per type, "Q4_0: R rows, B blocks identical"; exit 1 on any difference,
 * 2 on usage or unreadable input.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../../formats/gguf.h"
#include "../../lib/base/fileio.h"
#include "../../lib/model.h"

typedef void (*qfn)(const float *x, void *y, int64_t k);

/* Size of a metadata value at p (trusting the file: llmq wrote it). */
static uint64_t vsize(const uint8_t *p, uint32_t type)
{
    static const uint8_t fixed[] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };
    if (type == LLMQ_GGUF_STRING) return 8 + llmq_get_le64(p);
    if (type == LLMQ_GGUF_ARRAY) {
        uint32_t et = llmq_get_le32(p);
        uint64_t n = llmq_get_le64(p + 4), o = 12;
        for (uint64_t i = 0; i < n; i++) o += vsize(p + o, et);
        return o;
    }
    return type < sizeof fixed ? fixed[type] : 0;
}

/* The source matrix of GGUF tensor name, and the heads its rows are
 * permuted over (0: none). */
static const llmq_wmat *source_of(const llmq_model *m, const char *name, int llama, int *heads)
{
    int l;
    char rest[64];
    *heads = 0;
    if (!strcmp(name, "token_embd.weight")) return &m->embed;
    if (!strcmp(name, "output.weight")) return &m->lm_head;
    if (sscanf(name, "blk.%d.%63s", &l, rest) != 2 || l < 0 || l >= m->cfg.n_layers) return NULL;
    const llmq_layer *L = &m->layers[l];
    if (!strcmp(rest, "attn_q.weight")) { *heads = llama ? m->cfg.n_heads : 0; return &L->wq; }
    if (!strcmp(rest, "attn_k.weight")) { *heads = llama ? m->cfg.n_kv_heads : 0; return &L->wk; }
    if (!strcmp(rest, "attn_v.weight")) return &L->wv;
    if (!strcmp(rest, "attn_output.weight")) return &L->wo;
    if (!strcmp(rest, "ffn_gate.weight")) return &L->w_gate;
    if (!strcmp(rest, "ffn_up.weight")) return &L->w_up;
    if (!strcmp(rest, "ffn_down.weight")) return &L->w_down;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4) { fprintf(stderr, "usage: ggml-qcheck LIBGGML_BASE.so MODEL FILE.gguf\n"); return 2; }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) { fprintf(stderr, "%s\n", dlerror()); return 2; }
    qfn q8 = (qfn)dlsym(lib, "quantize_row_q8_0_ref"), q40 = (qfn)dlsym(lib, "quantize_row_q4_0_ref"),
        q41 = (qfn)dlsym(lib, "quantize_row_q4_1_ref");
    if (!q8 || !q40 || !q41) { fprintf(stderr, "%s: no quantize_row_*_ref\n", argv[1]); return 2; }
    llmq_err err = { 0, "" };
    llmq_model m;
    llmq_map f;
    if (llmq_model_open(&m, argv[2], &err) || llmq_map_open(&f, argv[3], &err)) { fprintf(stderr, "%s\n", err.msg); return 2; }
    const uint8_t *b = f.data;
    if (f.size < 24 || memcmp(b, "GGUF", 4)) { fprintf(stderr, "%s: not GGUF\n", argv[3]); return 2; }
    uint64_t n_t = llmq_get_le64(b + 8), n_kv = llmq_get_le64(b + 16), o = 24;
    int llama = 0;
    for (uint64_t i = 0; i < n_kv; i++) {
        uint64_t kl = llmq_get_le64(b + o);
        const char *k = (const char *)b + o + 8;
        o += 8 + kl;
        uint32_t t = llmq_get_le32(b + o);
        if (kl == 20 && !memcmp(k, "general.architecture", 20) && t == LLMQ_GGUF_STRING)
            llama = llmq_get_le64(b + o + 4) == 5 && !memcmp(b + o + 12, "llama", 5);
        o += 4 + vsize(b + o + 4, t);
    }
    struct { char name[64]; int64_t ne0, ne1; uint32_t type; uint64_t off; int nd; } *ti = calloc(n_t, sizeof *ti);
    for (uint64_t i = 0; i < n_t; i++) {
        uint64_t nl = llmq_get_le64(b + o);
        snprintf(ti[i].name, sizeof ti[i].name, "%.*s", (int)nl, (const char *)b + o + 8);
        o += 8 + nl;
        ti[i].nd = (int)llmq_get_le32(b + o);
        o += 4;
        ti[i].ne0 = (int64_t)llmq_get_le64(b + o);
        ti[i].ne1 = ti[i].nd > 1 ? (int64_t)llmq_get_le64(b + o + 8) : 1;
        o += 8 * (uint64_t)ti[i].nd;
        ti[i].type = llmq_get_le32(b + o);
        ti[i].off = llmq_get_le64(b + o + 4);
        o += 12;
    }
    uint64_t data = (o + 31) / 32 * 32;
    long rows[3] = { 0 }, blocks[3] = { 0 }, bad = 0;
    static const char *tn[3] = { "Q8_0", "Q4_0", "Q4_1" };
    for (uint64_t i = 0; i < n_t; i++) {
        int k = ti[i].type == LLMQ_GGML_Q8_0 ? 0 : ti[i].type == LLMQ_GGML_Q4_0 ? 1 : ti[i].type == LLMQ_GGML_Q4_1 ? 2 : -1;
        int heads;
        const llmq_wmat *w = k >= 0 && ti[i].nd == 2 ? source_of(&m, ti[i].name, llama, &heads) : NULL;
        if (!w) continue;
        if (w->cols != ti[i].ne0 || w->rows != ti[i].ne1) { fprintf(stderr, "%s: shape differs\n", ti[i].name); bad++; continue; }
        uint64_t rb = llmq_ggml_row_bytes((llmq_ggml_type)ti[i].type, w->cols);
        float *x = malloc((size_t)w->cols * sizeof(float));
        uint8_t *y = malloc(rb);
        for (int64_t r = 0; r < w->rows; r++) {
            int64_t sr = r;
            if (heads) {
                int64_t d = w->rows / heads, h = r / d, j = r % d;
                sr = h * d + (j % 2) * (d / 2) + j / 2;
            }
            llmq_get_row(w, sr, x);
            (k == 0 ? q8 : k == 1 ? q40 : q41)(x, y, w->cols);
            const uint8_t *got = b + data + ti[i].off + (uint64_t)r * rb;
            if (memcmp(got, y, rb)) {
                if (bad < 5) fprintf(stderr, "%s row %lld differs from ggml's %s\n", ti[i].name, (long long)r, tn[k]);
                bad++;
            }
            rows[k]++;
            blocks[k] += w->cols / 32;
        }
        free(x);
        free(y);
    }
    for (int k = 0; k < 3; k++)
        if (rows[k]) printf("%s: %ld rows, %ld blocks %s\n", tn[k], rows[k], blocks[k], bad ? "checked" : "identical");
    free(ti);
    llmq_map_close(&f);
    llmq_model_close(&m);
    if (!rows[0] && !rows[1] && !rows[2]) { fprintf(stderr, "%s: no quantized tensor to check\n", argv[3]); return 1; }
    return bad ? 1 : 0;
}
