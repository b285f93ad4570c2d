/* t-gguf: the GGUF writer's bytes, and llmq export's mapping checked value
 * by value: every weight of an export from a packed model, decoded from the
 * file by this test's own reader of the GGUF blocks, against llmq's
 * dequantized weights (bit for bit where the mapping is exact, within the
 * stated bound for Q4_1's m), and q/k rows in llama.cpp's order. */
#include "../test.h"
#include <dirent.h>
#include <unistd.h>
#include "lib/base/fileio.h"
#include "model.h"
#include "../../formats/gguf.h"
#include "../../formats/packed.h"
#include "../../lib/algo/pack.h"
#include "../../lib/export/gguf_export.h"

#define MODEL "testdata/tiny-qwen2-gqa"

static char tmpdir[256];

static void rm_rf(const char *p)
{
    DIR *d = opendir(p);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char q[1024];
            snprintf(q, sizeof q, "%s/%s", p, e->d_name);
            rm_rf(q);
        }
        closedir(d);
        rmdir(p);
    } else {
        unlink(p);
    }
}

static void cleanup(void) { if (tmpdir[0]) rm_rf(tmpdir); }

static const char *tpath(const char *name)
{
    static char p[8][512];
    static int k;
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "%s/llmq-tgguf.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (!mkdtemp(tmpdir)) { perror("mkdtemp"); exit(1); }
        atexit(cleanup);
    }
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/%s", tmpdir, name);
    return p[k];
}

/* ---- a small GGUF reader for the tests (trusts the file: we wrote it) ---- */

typedef struct { char name[64]; int n_dims; int64_t ne[4]; uint32_t type; uint64_t off; } rtensor;
typedef struct {
    llmq_map map;
    uint64_t n_t, n_kv, data;       /* data: start of the data area */
    rtensor t[512];
    const uint8_t *kv[256]; char key[256][96]; uint32_t kvt[256];   /* value start, key, type */
} rfile;

static uint64_t skip_value(const uint8_t *p, uint32_t type)
{
    static const int sz[] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };
    if (type == LLMQ_GGUF_STRING) return 8 + llmq_get_le64(p);
    if (type == LLMQ_GGUF_ARRAY) {
        uint32_t et = llmq_get_le32(p);
        uint64_t n = llmq_get_le64(p + 4), o = 12;
        for (uint64_t i = 0; i < n; i++) o += skip_value(p + o, et);
        return o;
    }
    return (uint64_t)sz[type];
}

static int rread(rfile *f, const char *path)
{
    llmq_err err;
    memset(f, 0, sizeof *f);
    if (llmq_map_open(&f->map, path, &err)) { CHECK_MSG(0, "%s", err.msg); return -1; }
    const uint8_t *b = f->map.data;
    CHECK(!memcmp(b, "GGUF", 4));
    CHECK_EQ_INT(llmq_get_le32(b + 4), 3);
    f->n_t = llmq_get_le64(b + 8);
    f->n_kv = llmq_get_le64(b + 16);
    if (f->n_t > 512 || f->n_kv > 256) { CHECK(0); return -1; }
    uint64_t o = 24;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        uint64_t kl = llmq_get_le64(b + o);
        snprintf(f->key[i], sizeof f->key[i], "%.*s", (int)kl, (const char *)b + o + 8);
        o += 8 + kl;
        f->kvt[i] = llmq_get_le32(b + o);
        f->kv[i] = b + o + 4;
        o += 4 + skip_value(b + o + 4, f->kvt[i]);
    }
    for (uint64_t i = 0; i < f->n_t; i++) {
        rtensor *t = &f->t[i];
        uint64_t nl = llmq_get_le64(b + o);
        snprintf(t->name, sizeof t->name, "%.*s", (int)nl, (const char *)b + o + 8);
        o += 8 + nl;
        t->n_dims = (int)llmq_get_le32(b + o);
        o += 4;
        for (int d = 0; d < t->n_dims; d++, o += 8) t->ne[d] = (int64_t)llmq_get_le64(b + o);
        t->type = llmq_get_le32(b + o);
        t->off = llmq_get_le64(b + o + 4);
        o += 12;
    }
    f->data = (o + 31) / 32 * 32;
    for (uint64_t i = o; i < f->data; i++) CHECK(b[i] == 0);
    return 0;
}

static const uint8_t *rkv(const rfile *f, const char *key, uint32_t type)
{
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (!strcmp(f->key[i], key)) { CHECK_EQ_INT(f->kvt[i], type); return f->kv[i]; }
    CHECK_MSG(0, "no key %s", key);
    return NULL;
}

static const rtensor *rt(const rfile *f, const char *name)
{
    for (uint64_t i = 0; i < f->n_t; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

/* Row r of a 2-D GGUF tensor decoded to floats the way ggml dequantizes. */
static void rrow(const rfile *f, const rtensor *t, int64_t r, float *out)
{
    uint64_t rb = llmq_ggml_row_bytes((llmq_ggml_type)t->type, t->ne[0]);
    const uint8_t *p = f->map.data + f->data + t->off + (uint64_t)r * rb;
    int64_t n = t->ne[0];
    for (int64_t b = 0; b < (t->type <= 1 || t->type == 30 ? n : n / 32); b++) {
        switch (t->type) {
        case LLMQ_GGML_F32: out[b] = llmq_bits_f32(llmq_get_le32(p + 4 * b)); break;
        case LLMQ_GGML_F16: out[b] = llmq_f16_to_f32(llmq_get_le16(p + 2 * b)); break;
        case LLMQ_GGML_BF16: out[b] = llmq_bf16_to_f32(llmq_get_le16(p + 2 * b)); break;
        case LLMQ_GGML_Q8_0: {
            const uint8_t *q = p + 34 * b;
            float d = llmq_f16_to_f32(llmq_get_le16(q));
            for (int j = 0; j < 32; j++) out[32 * b + j] = (float)(int8_t)q[2 + j] * d;
            break;
        }
        case LLMQ_GGML_Q4_0: {
            const uint8_t *q = p + 18 * b;
            float d = llmq_f16_to_f32(llmq_get_le16(q));
            for (int j = 0; j < 16; j++) {
                out[32 * b + j] = (float)((q[2 + j] & 15) - 8) * d;
                out[32 * b + j + 16] = (float)((q[2 + j] >> 4) - 8) * d;
            }
            break;
        }
        case LLMQ_GGML_Q4_1: {
            const uint8_t *q = p + 20 * b;
            float d = llmq_f16_to_f32(llmq_get_le16(q)), m = llmq_f16_to_f32(llmq_get_le16(q + 2));
            for (int j = 0; j < 16; j++) {
                out[32 * b + j] = (float)(q[4 + j] & 15) * d + m;
                out[32 * b + j + 16] = (float)(q[4 + j] >> 4) * d + m;
            }
            break;
        }
        }
    }
}

TEST(writer_refuses)
{
    llmq_err err;
    llmq_gguf_writer *w = llmq_gguf_writer_new(&err);
    CHECK(w != NULL);
    const char *strs[] = { "a", "", "x y" };
    int32_t ints[] = { 1, -2 };
    CHECK(llmq_gguf_kv_u32(w, "k.u32", 7, &err) == 0);
    CHECK(llmq_gguf_kv_f32(w, "k.f32", 1.5f, &err) == 0);
    CHECK(llmq_gguf_kv_str(w, "k.str", "hello", &err) == 0);
    CHECK(llmq_gguf_kv_bool(w, "k.bool", 1, &err) == 0);
    CHECK(llmq_gguf_kv_arr_str(w, "k.as", strs, 3, &err) == 0);
    CHECK(llmq_gguf_kv_arr_i32(w, "k.ai", ints, 2, &err) == 0);
    /* refusals leave the writer usable for the caller to report */
    CHECK(llmq_gguf_kv_u32(w, "k.u32", 8, &err) == LLMQ_EUSAGE);
    int64_t ne1[1] = { 3 }, bad[2] = { 33, 1 }, ne5[5] = { 1, 1, 1, 1, 1 };
    CHECK(llmq_gguf_add_tensor(w, "t.a", LLMQ_GGML_F32, 1, ne1, NULL, NULL, &err) == 0);
    CHECK(llmq_gguf_add_tensor(w, "t.a", LLMQ_GGML_F32, 1, ne1, NULL, NULL, &err) == LLMQ_EUSAGE);
    CHECK(llmq_gguf_add_tensor(w, "t.q", LLMQ_GGML_Q8_0, 2, bad, NULL, NULL, &err) == LLMQ_EUSAGE);
    CHECK(llmq_gguf_add_tensor(w, "t.5", LLMQ_GGML_F32, 5, ne5, NULL, NULL, &err) == LLMQ_EUSAGE);
    char longname[80];
    memset(longname, 'n', 64);
    longname[64] = 0;
    CHECK(llmq_gguf_add_tensor(w, longname, LLMQ_GGML_F32, 1, ne1, NULL, NULL, &err) == LLMQ_EUSAGE);
    longname[63] = 0;
    CHECK(llmq_gguf_add_tensor(w, longname, LLMQ_GGML_F32, 1, ne1, NULL, NULL, &err) == 0);
    llmq_gguf_writer_free(w);
}

/* fill callbacks of a tiny file: a counting pattern */
static int fill_pattern(void *ctx, const char *name, void *buf, uint64_t n, llmq_err *err)
{
    (void)ctx; (void)name; (void)err;
    for (uint64_t i = 0; i < n; i++) ((uint8_t *)buf)[i] = (uint8_t)(i * 7 + 1);
    return 0;
}

TEST(writer_bytes)
{
    llmq_err err;
    llmq_gguf_writer *w = llmq_gguf_writer_new(&err);
    const char *strs[] = { "a", "", "x y" };
    int32_t ints[] = { 1, -2 };
    int64_t ne1[1] = { 3 }, ne2[2] = { 64, 2 };
    CHECK(llmq_gguf_kv_u32(w, "k.u32", 7, &err) == 0);
    CHECK(llmq_gguf_kv_f32(w, "k.f32", 1.5f, &err) == 0);
    CHECK(llmq_gguf_kv_str(w, "k.str", "hello", &err) == 0);
    CHECK(llmq_gguf_kv_bool(w, "k.bool", 1, &err) == 0);
    CHECK(llmq_gguf_kv_arr_str(w, "k.as", strs, 3, &err) == 0);
    CHECK(llmq_gguf_kv_arr_i32(w, "k.ai", ints, 2, &err) == 0);
    CHECK(llmq_gguf_add_tensor(w, "t.f", LLMQ_GGML_F32, 1, ne1, fill_pattern, NULL, &err) == 0);
    CHECK(llmq_gguf_add_tensor(w, "t.q", LLMQ_GGML_Q8_0, 2, ne2, fill_pattern, NULL, &err) == 0);
    uint64_t bytes = 0;
    const char *p = tpath("w.gguf");
    CHECK(llmq_gguf_writer_finish(w, p, &bytes, &err) == 0);
    llmq_gguf_writer_free(w);
    rfile *f = calloc(1, sizeof *f);
    if (rread(f, p)) { free(f); return; }
    CHECK_EQ_INT(f->n_kv, 6);
    CHECK_EQ_INT(f->n_t, 2);
    CHECK(!strcmp(f->key[0], "k.u32") && !strcmp(f->key[5], "k.ai"));   /* kept in order */
    const uint8_t *v;
    if ((v = rkv(f, "k.u32", LLMQ_GGUF_U32))) CHECK_EQ_INT(llmq_get_le32(v), 7);
    if ((v = rkv(f, "k.f32", LLMQ_GGUF_F32))) CHECK(llmq_bits_f32(llmq_get_le32(v)) == 1.5f);
    if ((v = rkv(f, "k.str", LLMQ_GGUF_STRING))) CHECK(llmq_get_le64(v) == 5 && !memcmp(v + 8, "hello", 5));
    if ((v = rkv(f, "k.bool", LLMQ_GGUF_BOOL))) CHECK_EQ_INT(v[0], 1);
    if ((v = rkv(f, "k.as", LLMQ_GGUF_ARRAY))) {
        CHECK_EQ_INT(llmq_get_le32(v), LLMQ_GGUF_STRING);
        CHECK_EQ_INT(llmq_get_le64(v + 4), 3);
        CHECK(llmq_get_le64(v + 12) == 1 && v[20] == 'a' && llmq_get_le64(v + 21) == 0 && llmq_get_le64(v + 29) == 3);
    }
    if ((v = rkv(f, "k.ai", LLMQ_GGUF_ARRAY))) {
        CHECK_EQ_INT(llmq_get_le32(v), LLMQ_GGUF_I32);
        CHECK_EQ_INT((int32_t)llmq_get_le32(v + 16), -2);
    }
    /* offsets: 12 bytes of F32 padded to 32, then 2 rows of 2 Q8_0 blocks */
    CHECK(f->t[0].off == 0 && f->t[1].off == 32);
    CHECK(f->t[1].n_dims == 2 && f->t[1].ne[0] == 64 && f->t[1].ne[1] == 2 && f->t[1].type == LLMQ_GGML_Q8_0);
    CHECK_EQ_INT(f->data % 32, 0);
    CHECK_EQ_INT(bytes, f->data + 32 + 160);   /* 136 bytes padded to 160 */
    CHECK_EQ_INT(f->map.size, bytes);
    const uint8_t *d = f->map.data + f->data;
    CHECK(d[0] == 1 && d[11] == (uint8_t)(11 * 7 + 1) && d[12] == 0 && d[31] == 0);
    CHECK(d[32] == 1 && d[32 + 135] == (uint8_t)(135 * 7 + 1) && d[32 + 136] == 0);
    llmq_map_close(&f->map);
    free(f);
}

/* Export src (opened as a model) to a file and compare every linear of
 * layer 0..n-1 against llmq's dequantized rows.  perm: llama q/k order. */
static void check_linears(const char *src, llmq_gguf_outtype type, int perm, double *worst_out, double *m_err_out)
{
    llmq_model m;
    llmq_err err;
    int rc = llmq_model_open(&m, src, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc) return;
    const char *out = tpath("x.gguf");
    llmq_gguf_export_opts o = { type, "test", NULL };
    llmq_gguf_export_stats st;
    rc = llmq_gguf_export(&m, &o, out, &st, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    rfile *f = calloc(1, sizeof *f);
    if (rc || rread(f, out)) { free(f); llmq_model_close(&m); return; }
    const uint8_t *v = rkv(f, "llmq.exact", LLMQ_GGUF_BOOL);
    CHECK(v && v[0] == (uint8_t)st.exact);
    double worst = 0;
    float *a = malloc(sizeof(float) * 4096), *b = malloc(sizeof(float) * 4096);
    static const char *g[] = { "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down" };
    for (int l = 0; l < m.cfg.n_layers; l++) {
        const llmq_layer *L = &m.layers[l];
        const llmq_wmat *w[] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down };
        int heads[] = { m.cfg.n_heads, m.cfg.n_kv_heads, 0, 0, 0, 0, 0 };
        for (int i = 0; i < 7; i++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, g[i]);
            const rtensor *t = rt(f, name);
            CHECK_MSG(t != NULL, "%s", name);
            if (!t || t->ne[0] != w[i]->cols || t->ne[1] != w[i]->rows || w[i]->cols > 4096) { CHECK(0); continue; }
            for (int64_t r = 0; r < w[i]->rows; r++) {
                int64_t sr = r;
                if (perm && heads[i]) {
                    int64_t d = w[i]->rows / heads[i], h = r / d, k = r % d;
                    sr = h * d + (k % 2) * (d / 2) + k / 2;
                }
                llmq_get_row(w[i], sr, a);
                rrow(f, t, r, b);
                for (int64_t j = 0; j < w[i]->cols; j++) {
                    double e = fabs((double)a[j] - (double)b[j]);
                    if (e > worst) worst = e;
                }
            }
        }
    }
    if (m_err_out) *m_err_out = st.m_max_err;
    if (worst_out) *worst_out = worst;
    else CHECK_MSG(worst == 0.0, "largest difference %g", worst);
    CHECK(st.exact == (worst == 0.0));
    free(a);
    free(b);
    llmq_map_close(&f->map);
    free(f);
    llmq_model_close(&m);
}

static void pack(const char *dir, llmq_pack_format fmt, int group, int sym)
{
    llmq_model m;
    llmq_err err;
    CHECK(llmq_model_open(&m, MODEL, &err) == 0);
    llmq_pack_opts po;
    memset(&po, 0, sizeof po);
    po.scheme.format = fmt;
    po.scheme.group = group;
    po.scheme.sym = sym;
    llmq_pack_stats ps;
    int rc = llmq_pack_model(&m, &po, dir, &ps, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    llmq_model_close(&m);
}

TEST(packed_int4_sym_is_q4_0_exactly)
{
    const char *d = tpath("s64");
    pack(d, LLMQ_PACK_INT4, 64, 1);
    check_linears(d, LLMQ_GGUF_TYPE_AUTO, 0, NULL, NULL);
    check_linears(d, LLMQ_GGUF_TYPE_Q4_1, 0, NULL, NULL);   /* m = -8 s: exact too */
    check_linears(d, LLMQ_GGUF_TYPE_Q8_0, 0, NULL, NULL);
}

TEST(packed_mxint8_is_q8_0_exactly)
{
    const char *d = tpath("mx");
    pack(d, LLMQ_PACK_MXINT8, 32, 0);
    check_linears(d, LLMQ_GGUF_TYPE_AUTO, 0, NULL, NULL);
}

TEST(packed_int4_asym_is_q4_1_within_the_m_bound)
{
    const char *d = tpath("a128");
    pack(d, LLMQ_PACK_INT4, 128, 0);
    double worst = -1, merr = -1;
    check_linears(d, LLMQ_GGUF_TYPE_AUTO, 0, &worst, &merr);
    /* each weight moves by its block's |f16(m) - m| (the recorded largest),
     * plus the float rounding of q d + m (an ulp of a weight, < 1e-7 here) */
    CHECK_MSG(worst > 0 && merr > 0 && worst <= merr + 1e-7, "worst %g, m error %g", worst, merr);
    CHECK(merr <= 15.0 / 2048 * 0.05);   /* <= 15 * 2^-11 * s, every s of this model < 0.05 */
    check_linears(d, LLMQ_GGUF_TYPE_Q8_0, 0, NULL, NULL);   /* q - z times s: exact */
    llmq_model m;
    llmq_err err;
    CHECK(llmq_model_open(&m, d, &err) == 0);
    llmq_gguf_export_opts o = { LLMQ_GGUF_TYPE_Q4_0, NULL, NULL };
    llmq_gguf_export_stats st;
    CHECK(llmq_gguf_export(&m, &o, tpath("no.gguf"), &st, &err) == LLMQ_EUNSUPPORTED);
    CHECK(strstr(err.msg, "Q4_0") != NULL);
    CHECK(access(tpath("no.gguf"), F_OK) != 0);
    llmq_model_close(&m);
}

TEST(packed_int3_is_refused)
{
    /* int3 at three bits per weight (LLMQ_W_Q3): the exporter refuses it,
     * one line naming the linear, no file (`llmq export` first widens it to
     * the int4 layout with llmq_model_widen_q3: tests/cli/t0550-int3.sh).  (int3 files in the
     * int4 layout, from before, load as int4 and map as int4.) */
    static const int sym[] = { 0, 1 };
    for (int k = 0; k < 2; k++) {
        const char *d = tpath(sym[k] ? "i3s" : "i3a");
        pack(d, LLMQ_PACK_INT3, sym[k] ? 32 : 64, sym[k]);
        llmq_model m;
        llmq_err err;
        CHECK(llmq_model_open(&m, d, &err) == 0);
        llmq_gguf_export_opts o = { LLMQ_GGUF_TYPE_AUTO, NULL, NULL };
        llmq_gguf_export_stats st;
        CHECK(llmq_gguf_export(&m, &o, tpath("no3.gguf"), &st, &err) == LLMQ_EUNSUPPORTED);
        CHECK_MSG(strstr(err.msg, "int3") && strstr(err.msg, "q_proj") && !strchr(err.msg, '\n'), "%s", err.msg);
        CHECK(access(tpath("no3.gguf"), F_OK) != 0);
        llmq_model_close(&m);
    }
}

TEST(llama_q_k_rows_in_llama_cpp_order)
{
    const char *sh = getenv("LLMQ_SHARED");
    char p[512];
    snprintf(p, sizeof p, "%s/models/tiny-llama-mha", sh && *sh ? sh : "../shared");
    if (access(p, F_OK)) { fprintf(stderr, "  (skipped: no %s)\n", p); return; }
    check_linears(p, LLMQ_GGUF_TYPE_AUTO, 1, NULL, NULL);       /* bf16 kept, rows reordered */
}

TEST_MAIN()
