/* t-gguf-read: the GGUF reader (formats/gguf_read.c).  A round trip through
 * the writer, every KV and tensor byte read back; then hostile files, as
 * mutations of a small file built here byte by byte (each field's offset
 * recorded), each refused with the right status and one line naming the
 * file.  Also built with ASan+UBSan (make san-units). */
#include "../test.h"
#include <unistd.h>
#include "lib/base/fileio.h"
#include "model.h"
#include "../../formats/gguf.h"
#include "../../lib/export/gguf_export.h"

static char tmpdir[256];
static char gpath[600];

static void cleanup(void)
{
    if (gpath[0]) unlink(gpath);
    if (tmpdir[0]) rmdir(tmpdir);
}

static const char *tpath(void)
{
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "%s/llmq-tgguf-read.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (!mkdtemp(tmpdir)) { perror("mkdtemp"); exit(1); }
        snprintf(gpath, sizeof gpath, "%s/rt.gguf", tmpdir);
        atexit(cleanup);
    }
    return gpath;
}

/* ---- round trip with the writer ---- */

static uint8_t pattern(const char *name, uint64_t i) { return (uint8_t)(name[0] * 31 + name[1] + i * 7 + (i >> 8)); }

static int fill(void *ctx, const char *name, void *buf, uint64_t n, llmq_err *err)
{
    (void)ctx; (void)err;
    for (uint64_t i = 0; i < n; i++) ((uint8_t *)buf)[i] = pattern(name, i);
    return LLMQ_OK;
}

TEST(round_trip_with_writer)
{
    llmq_err err = { 0 };
    llmq_gguf_writer *w = llmq_gguf_writer_new(&err);
    CHECK(w != NULL);
    const char *strs[] = { "a", "", "\xc4\xa0the", "long string with spaces" };
    int32_t ints[] = { -1, 0, 7, INT32_MAX };
    float fl[] = { 0.5f, -2.25f, 1e-30f };
    int64_t ne_a[] = { 64, 3 }, ne_b[] = { 32 }, ne_c[] = { 96, 2, 1, 2 }, ne_d[] = { 5 };
    CHECK_EQ_INT(llmq_gguf_kv_str(w, "general.architecture", "llama", &err), 0);
    CHECK_EQ_INT(llmq_gguf_kv_u32(w, "x.u32", 4000000000u, &err), 0);
    CHECK_EQ_INT(llmq_gguf_kv_i32(w, "x.i32", -12345, &err), 0);
    CHECK_EQ_INT(llmq_gguf_kv_f32(w, "x.f32", 1e-6f, &err), 0);
    CHECK_EQ_INT(llmq_gguf_kv_bool(w, "x.bool", 1, &err), 0);
    CHECK_EQ_INT(llmq_gguf_kv_arr_str(w, "x.strs", strs, 4, &err), 0);
    CHECK_EQ_INT(llmq_gguf_kv_arr_i32(w, "x.ints", ints, 4, &err), 0);
    CHECK_EQ_INT(llmq_gguf_kv_arr_f32(w, "x.floats", fl, 3, &err), 0);
    CHECK_EQ_INT(llmq_gguf_kv_arr_str(w, "x.empty", strs, 0, &err), 0);
    CHECK_EQ_INT(llmq_gguf_add_tensor(w, "blk.0.a", LLMQ_GGML_F32, 2, ne_a, fill, NULL, &err), 0);
    CHECK_EQ_INT(llmq_gguf_add_tensor(w, "blk.0.b", LLMQ_GGML_Q4_0, 1, ne_b, fill, NULL, &err), 0);
    CHECK_EQ_INT(llmq_gguf_add_tensor(w, "blk.0.c", LLMQ_GGML_Q4_1, 4, ne_c, fill, NULL, &err), 0);
    CHECK_EQ_INT(llmq_gguf_add_tensor(w, "d", LLMQ_GGML_BF16, 1, ne_d, fill, NULL, &err), 0);
    uint64_t bytes = 0;
    CHECK_EQ_INT(llmq_gguf_writer_finish(w, tpath(), &bytes, &err), 0);
    llmq_gguf_writer_free(w);

    llmq_gguf_file f;
    int rc = llmq_gguf_open(&f, tpath(), &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc) return;
    CHECK_EQ_INT(f.version, 3);
    CHECK_EQ_INT(f.alignment, 32);
    CHECK_EQ_INT(f.map.size, bytes);
    CHECK_EQ_INT(f.n_kv, 9);
    CHECK_EQ_INT(f.n_tensors, 4);
    CHECK_EQ_INT(f.data_offset % 32, 0);
    const char *s;
    uint64_t len;
    CHECK_EQ_INT(llmq_gguf_get_str(&f, "general.architecture", &s, &len, &err), 0);
    CHECK(len == 5 && memcmp(s, "llama", 5) == 0);
    uint32_t u;
    CHECK_EQ_INT(llmq_gguf_get_u32(&f, "x.u32", &u, &err), 0);
    CHECK(u == 4000000000u);
    const llmq_gguf_kv *kv = llmq_gguf_get(&f, "x.i32", LLMQ_GGUF_I32, -1, &err);
    CHECK(kv && (int32_t)llmq_get_le32(kv->val) == -12345);
    float x;
    CHECK_EQ_INT(llmq_gguf_get_f32(&f, "x.f32", &x, &err), 0);
    CHECK(x == 1e-6f);
    kv = llmq_gguf_get(&f, "x.bool", LLMQ_GGUF_BOOL, -1, &err);
    CHECK(kv && kv->val[0] == 1);
    kv = llmq_gguf_get(&f, "x.strs", LLMQ_GGUF_ARRAY, LLMQ_GGUF_STRING, &err);
    CHECK(kv && kv->n == 4);
    if (kv) {
        uint64_t pos = 0;
        for (int i = 0; i < 4; i++) {
            CHECK(llmq_gguf_arr_next_str(kv, &pos, &s, &len) == 1);
            CHECK(len == strlen(strs[i]) && memcmp(s, strs[i], len) == 0);
        }
        CHECK(llmq_gguf_arr_next_str(kv, &pos, &s, &len) == 0);
    }
    kv = llmq_gguf_get(&f, "x.ints", LLMQ_GGUF_ARRAY, LLMQ_GGUF_I32, &err);
    CHECK(kv && kv->n == 4 && kv->len == 16);
    for (int i = 0; kv && i < 4; i++) CHECK((int32_t)llmq_get_le32(kv->val + 4 * i) == ints[i]);
    kv = llmq_gguf_get(&f, "x.floats", LLMQ_GGUF_ARRAY, LLMQ_GGUF_F32, &err);
    CHECK(kv && kv->n == 3);
    for (int i = 0; kv && i < 3; i++) CHECK(llmq_bits_f32(llmq_get_le32(kv->val + 4 * i)) == fl[i]);
    kv = llmq_gguf_get(&f, "x.empty", LLMQ_GGUF_ARRAY, LLMQ_GGUF_STRING, &err);
    CHECK(kv && kv->n == 0 && kv->len == 0);

    /* type checks and absent keys */
    CHECK(llmq_gguf_get(&f, "x.u32", LLMQ_GGUF_I32, -1, &err) == NULL);
    CHECK_EQ_INT(err.code, LLMQ_EFORMAT);
    CHECK_MSG(strstr(err.msg, "'x.u32' is a u32, expected a i32") != NULL, "%s", err.msg);
    CHECK(llmq_gguf_get(&f, "x.ints", LLMQ_GGUF_ARRAY, LLMQ_GGUF_F32, &err) == NULL);
    CHECK_MSG(strstr(err.msg, "array of i32, expected an array of f32") != NULL, "%s", err.msg);
    CHECK(llmq_gguf_get_u32(&f, "nope", &u, &err) == LLMQ_EFORMAT);
    CHECK_MSG(strstr(err.msg, "rt.gguf: key 'nope' is missing") != NULL, "%s", err.msg);
    CHECK(llmq_gguf_find_kv(&f, "nope") == NULL);

    struct { const char *name; uint32_t type; int nd; const int64_t *ne; uint64_t nbytes; } want[] = {
        { "blk.0.a", LLMQ_GGML_F32, 2, ne_a, 64 * 3 * 4 }, { "blk.0.b", LLMQ_GGML_Q4_0, 1, ne_b, 18 },
        { "blk.0.c", LLMQ_GGML_Q4_1, 4, ne_c, 3 * 20 * 4 }, { "d", LLMQ_GGML_BF16, 1, ne_d, 10 },
    };
    for (int i = 0; i < 4; i++) {
        const llmq_gguf_tensor *t = llmq_gguf_find_tensor(&f, want[i].name);
        CHECK(t == &f.tensors[i]);
        if (!t) continue;
        CHECK_EQ_INT(t->type, want[i].type);
        CHECK_EQ_INT(t->n_dims, want[i].nd);
        for (int d = 0; d < 4; d++) CHECK_EQ_INT(t->ne[d], d < want[i].nd ? want[i].ne[d] : 1);
        CHECK_EQ_INT(t->nbytes, want[i].nbytes);
        CHECK_EQ_INT((uint64_t)(t->data - f.map.data) % 32, 0);
        int same = 1;
        for (uint64_t j = 0; j < t->nbytes; j++) same &= t->data[j] == pattern(t->name, j);
        CHECK_MSG(same, "tensor %s bytes differ", t->name);
    }
    CHECK(llmq_gguf_find_tensor(&f, "blk.0") == NULL);
    llmq_gguf_close(&f);
    llmq_gguf_close(&f);   /* closing twice is allowed */

    CHECK_EQ_INT(llmq_gguf_open(&f, "/nonexistent/x.gguf", &err), LLMQ_EIO);
    CHECK(strstr(err.msg, "/nonexistent/x.gguf") != NULL);
}

/* What llmq export writes reads back: the architecture's hyperparameters
 * equal config.json's, every layer's tensors are there with the shapes
 * the config implies (ne[0] innermost), in the type asked for. */
TEST(reads_llmq_export)
{
    static const struct { llmq_gguf_outtype out; uint32_t type; } cases[] = {
        { LLMQ_GGUF_TYPE_F16, LLMQ_GGML_F16 }, { LLMQ_GGUF_TYPE_Q4_0, LLMQ_GGML_Q4_0 },
    };
    llmq_err err = { 0 };
    llmq_model m;
    int rc = llmq_model_open(&m, "testdata/tiny-qwen2-gqa", &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc) return;
    const llmq_config *c = &m.cfg;
    for (size_t k = 0; k < LLMQ_ARRAY_LEN(cases); k++) {
        llmq_gguf_export_opts o = { cases[k].out, "test", NULL };
        llmq_gguf_export_stats st;
        rc = llmq_gguf_export(&m, &o, tpath(), &st, &err);
        CHECK_MSG(rc == 0, "%s", err.msg);
        llmq_gguf_file f;
        rc = llmq_gguf_open(&f, tpath(), &err);
        CHECK_MSG(rc == 0, "%s", err.msg);
        if (rc) continue;
        const char *s;
        uint64_t len;
        uint32_t u;
        float x;
        CHECK(llmq_gguf_get_str(&f, "general.architecture", &s, &len, &err) == 0 && len == 5 && !memcmp(s, "qwen2", 5));
        CHECK(llmq_gguf_get_u32(&f, "qwen2.block_count", &u, &err) == 0 && (int)u == c->n_layers);
        CHECK(llmq_gguf_get_u32(&f, "qwen2.embedding_length", &u, &err) == 0 && (int)u == c->hidden);
        CHECK(llmq_gguf_get_u32(&f, "qwen2.feed_forward_length", &u, &err) == 0 && (int)u == c->intermediate);
        CHECK(llmq_gguf_get_u32(&f, "qwen2.attention.head_count", &u, &err) == 0 && (int)u == c->n_heads);
        CHECK(llmq_gguf_get_u32(&f, "qwen2.attention.head_count_kv", &u, &err) == 0 && (int)u == c->n_kv_heads);
        CHECK(llmq_gguf_get_f32(&f, "qwen2.rope.freq_base", &x, &err) == 0 && x == (float)c->rope_theta);
        const llmq_gguf_kv *kv = llmq_gguf_get(&f, "tokenizer.ggml.tokens", LLMQ_GGUF_ARRAY, LLMQ_GGUF_STRING, &err);
        CHECK(kv && kv->n > 0);
        const llmq_gguf_tensor *t = llmq_gguf_find_tensor(&f, "token_embd.weight");
        CHECK(t && t->n_dims == 2 && t->ne[0] == c->hidden && t->ne[1] == c->vocab);
        int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
        for (int l = 0; l < c->n_layers; l++) {
            static const char *const lin[] = { "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down" };
            int64_t rows[] = { qd, kvd, kvd, c->hidden, c->intermediate, c->intermediate, c->hidden };
            int64_t cols[] = { c->hidden, c->hidden, c->hidden, qd, c->hidden, c->hidden, c->intermediate };
            for (int i = 0; i < 7; i++) {
                char name[64];
                snprintf(name, sizeof name, "blk.%d.%s.weight", l, lin[i]);
                t = llmq_gguf_find_tensor(&f, name);
                CHECK_MSG(t != NULL, "%s missing", name);
                if (!t) continue;
                CHECK_EQ_INT(t->type, cases[k].type);
                CHECK(t->n_dims == 2 && t->ne[0] == cols[i] && t->ne[1] == rows[i]);
                CHECK_EQ_INT(t->nbytes, llmq_ggml_row_bytes(cases[k].type, cols[i]) * (uint64_t)rows[i]);
            }
            char name[64];
            snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
            t = llmq_gguf_find_tensor(&f, name);
            CHECK(t && t->type == LLMQ_GGML_F32 && t->n_dims == 1 && t->ne[0] == c->hidden);
        }
        CHECK_EQ_INT(f.map.size, st.bytes);
        llmq_gguf_close(&f);
    }
    llmq_model_close(&m);
}

/* ---- a small file built field by field ---- */

typedef struct { uint8_t b[1024]; size_t n; } buf_t;
static void pu32(buf_t *b, uint32_t v) { llmq_put_le32(b->b + b->n, v); b->n += 4; }
static void pu64(buf_t *b, uint64_t v) { llmq_put_le64(b->b + b->n, v); b->n += 8; }
static void pstr(buf_t *b, const char *s) { pu64(b, strlen(s)); memcpy(b->b + b->n, s, strlen(s)); b->n += strlen(s); }

/* offsets of the fields the tests mutate */
static struct {
    size_t version, nt, nkv, kv0_type, kv0_len, kv1_etype, kv1_count, kv2_key, kv2_type, kv2_val,
        t0_ndims, t0_ne0, t0_ne1, t0_type, t0_off, t1_name, t1_ne0, t1_type, t1_off, data, end;
} o;

/* "GGUF" v3, 2 tensors, 3 KVs:
 *   general.architecture = "llama";  a.arr = [u32 1, 2, 3];  a.val = u32 7
 *   t0 F32 {32, 2} at 0 (256 bytes);  t1 Q4_0 {32} at 256 (18 bytes) */
static void build(buf_t *b)
{
    memset(b, 0, sizeof *b);
    memcpy(b->b, "GGUF", 4); b->n = 4;
    o.version = b->n; pu32(b, 3);
    o.nt = b->n; pu64(b, 2);
    o.nkv = b->n; pu64(b, 3);
    pstr(b, "general.architecture"); o.kv0_type = b->n; pu32(b, LLMQ_GGUF_STRING); o.kv0_len = b->n; pstr(b, "llama");
    pstr(b, "a.arr"); pu32(b, LLMQ_GGUF_ARRAY); o.kv1_etype = b->n; pu32(b, LLMQ_GGUF_U32);
    o.kv1_count = b->n; pu64(b, 3); pu32(b, 1); pu32(b, 2); pu32(b, 3);
    o.kv2_key = b->n; pstr(b, "a.val"); o.kv2_type = b->n; pu32(b, LLMQ_GGUF_U32); o.kv2_val = b->n; pu32(b, 7);
    pstr(b, "t0"); o.t0_ndims = b->n; pu32(b, 2); o.t0_ne0 = b->n; pu64(b, 32); o.t0_ne1 = b->n; pu64(b, 2);
    o.t0_type = b->n; pu32(b, LLMQ_GGML_F32); o.t0_off = b->n; pu64(b, 0);
    o.t1_name = b->n; pstr(b, "t1"); pu32(b, 1); o.t1_ne0 = b->n; pu64(b, 32);
    o.t1_type = b->n; pu32(b, LLMQ_GGML_Q4_0); o.t1_off = b->n; pu64(b, 256);
    b->n = (b->n + 31) / 32 * 32;
    o.data = b->n;
    for (int i = 0; i < 256 + 18; i++) b->b[b->n++] = (uint8_t)i;
    o.end = b->n;
}

/* Parse b[0..n): the status, with the contract on the message checked. */
static int parse(const uint8_t *p, size_t n, llmq_err *err)
{
    /* an exact-size heap copy: ASan sees any read past the end */
    uint8_t *c = malloc(n ? n : 1);
    memcpy(c, p, n);
    llmq_gguf_file f;
    int rc = llmq_gguf_parse(&f, c, n, "bad.gguf", err);
    if (rc) {
        CHECK_MSG(strncmp(err->msg, "bad.gguf: ", 10) == 0 && !strchr(err->msg, '\n'), "message: %s", err->msg);
        CHECK(f.kv == NULL && f.tensors == NULL);   /* left closed */
    }
    llmq_gguf_close(&f);
    free(c);
    return rc;
}

TEST(built_file_is_valid)
{
    buf_t b;
    build(&b);
    llmq_err err = { 0 };
    llmq_gguf_file f;
    int rc = llmq_gguf_parse(&f, b.b, b.n, "ok.gguf", &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc) return;
    CHECK_EQ_INT(f.data_offset, o.data);
    CHECK(f.tensors[1].data == b.b + o.data + 256);
    CHECK_EQ_INT(f.tensors[1].nbytes, 18);
    CHECK_EQ_INT(f.kv[1].n, 3);
    llmq_gguf_close(&f);
    /* version 2 has the same layout */
    llmq_put_le32(b.b + o.version, 2);
    CHECK_EQ_INT(parse(b.b, b.n, &err), 0);
}

TEST(truncated_at_every_length)
{
    buf_t b;
    build(&b);
    llmq_err err;
    for (size_t n = 0; n < b.n; n++) {
        int rc = parse(b.b, n, &err);
        CHECK_MSG(rc == LLMQ_EFORMAT, "length %zu: status %d", n, rc);
    }
}

static void mut32(size_t at, uint32_t v, int want, const char *msg)
{
    buf_t b;
    llmq_err err = { 0 };
    build(&b);
    llmq_put_le32(b.b + at, v);
    int rc = parse(b.b, b.n, &err);
    CHECK_MSG(rc == want, "u32 %u at %zu: status %d, expected %d (%s)", v, at, rc, want, err.msg);
    if (msg) CHECK_MSG(strstr(err.msg, msg) != NULL, "'%s' not in '%s'", msg, err.msg);
}

static void mut64(size_t at, uint64_t v, int want, const char *msg)
{
    buf_t b;
    llmq_err err = { 0 };
    build(&b);
    llmq_put_le64(b.b + at, v);
    int rc = parse(b.b, b.n, &err);
    CHECK_MSG(rc == want, "u64 %llu at %zu: status %d, expected %d (%s)", (unsigned long long)v, at, rc, want, err.msg);
    if (msg) CHECK_MSG(strstr(err.msg, msg) != NULL, "'%s' not in '%s'", msg, err.msg);
}

TEST(header_refused)
{
    mut32(0, 0x47475546, LLMQ_EFORMAT, "not a GGUF file");   /* "FUGG" */
    mut32(o.version, 1, LLMQ_EUNSUPPORTED, "version 1");
    mut32(o.version, 0, LLMQ_EFORMAT, "version 0");
    mut32(o.version, 4, LLMQ_EFORMAT, "version 4");
    mut32(o.version, 0x03000000, LLMQ_EFORMAT, "big-endian");
    mut64(o.nt, UINT64_MAX, LLMQ_EFORMAT, "tensors");
    mut64(o.nt, 1u << 20, LLMQ_EFORMAT, "the rest of the file");
    mut64(o.nt, (1ull << 20) + 1, LLMQ_EFORMAT, "limit");
    mut64(o.nkv, UINT64_MAX, LLMQ_EFORMAT, "key-value");
    mut64(o.nkv, 1000, LLMQ_EFORMAT, "key-value");
    mut64(o.nkv, 4, LLMQ_EFORMAT, NULL);   /* a 4th pair read from the tensor infos */
}

TEST(kv_refused)
{
    mut64(o.kv0_len, 1000, LLMQ_EFORMAT, "string value");
    mut64(o.kv0_len, UINT64_MAX, LLMQ_EFORMAT, "string value");
    mut64(o.kv1_count, 1ull << 62, LLMQ_EFORMAT, "'a.arr': array of");   /* count * 4 overflows */
    mut64(o.kv1_count, 1000, LLMQ_EFORMAT, "'a.arr': array of");
    mut64(o.kv1_count, UINT64_MAX, LLMQ_EFORMAT, "'a.arr'");
    mut32(o.kv1_etype, LLMQ_GGUF_STRING, LLMQ_EFORMAT, "'a.arr'");   /* lengths 1 + 2<<32 ... */
    mut32(o.kv1_etype, LLMQ_GGUF_ARRAY, LLMQ_EUNSUPPORTED, "array of arrays");
    mut32(o.kv1_etype, 13, LLMQ_EFORMAT, "unknown array element type 13");
    mut32(o.kv0_type, 13, LLMQ_EFORMAT, "key 'general.architecture': unknown value type 13");
    mut32(o.kv0_type, UINT32_MAX, LLMQ_EFORMAT, "unknown value type");
    mut32(o.kv2_type, LLMQ_GGUF_BOOL, LLMQ_EFORMAT, "bool value 7");
    /* the key "a.val" renamed "a.arr": a duplicate */
    buf_t b;
    llmq_err err;
    build(&b);
    memcpy(b.b + o.kv2_key + 8, "a.arr", 5);
    CHECK_EQ_INT(parse(b.b, b.n, &err), LLMQ_EFORMAT);
    CHECK_MSG(strstr(err.msg, "key 'a.arr' appears twice") != NULL, "%s", err.msg);
    /* a NUL inside a key, an empty key */
    build(&b);
    b.b[o.kv2_key + 9] = 0;
    CHECK_EQ_INT(parse(b.b, b.n, &err), LLMQ_EFORMAT);
    CHECK_MSG(strstr(err.msg, "NUL") != NULL, "%s", err.msg);
    mut64(o.kv2_key, 0, LLMQ_EFORMAT, "empty");
    mut64(o.kv2_key, 1ull << 40, LLMQ_EFORMAT, "at most 65535");
}

TEST(tensor_info_refused)
{
    mut32(o.t0_ndims, 5, LLMQ_EFORMAT, "tensor 't0': n_dims 5");
    mut32(o.t0_ndims, 0, LLMQ_EFORMAT, "n_dims 0");
    mut64(o.t0_ne1, 0, LLMQ_EFORMAT, "tensor 't0': ne[1] = 0");
    mut64(o.t0_ne0, 1ull << 63, LLMQ_EFORMAT, "ne[0]");
    mut64(o.t0_ne0, 1ull << 62, LLMQ_EFORMAT, "overflows");     /* 2^62 * 2 elements */
    mut64(o.t0_ne0, 1ull << 61, LLMQ_EFORMAT, "byte size overflows");   /* 2^62 elements * 4 bytes */
    mut64(o.t0_ne0, 1ull << 40, LLMQ_EFORMAT, "run past");
    mut32(o.t0_type, 40, LLMQ_EFORMAT, "unknown ggml type 40");
    mut32(o.t0_type, UINT32_MAX, LLMQ_EFORMAT, "unknown ggml type");
    mut32(o.t0_type, 4, LLMQ_EUNSUPPORTED, "Q4_2");
    mut32(o.t0_type, 32, LLMQ_EUNSUPPORTED, "Q4_0_4_8");
    mut64(o.t1_ne0, 33, LLMQ_EFORMAT, "not a multiple of Q4_0's block of 32");
    mut64(o.t1_ne0, 256, LLMQ_EFORMAT, "run past");   /* 144 bytes */
    mut32(o.t1_type, 12, LLMQ_EFORMAT, "block of 256");   /* Q4_K needs 256 */
    mut64(o.t1_off, 257, LLMQ_EFORMAT, "not a multiple of the alignment 32");
    mut64(o.t1_off, 288, LLMQ_EFORMAT, "run past");
    mut64(o.t1_off, UINT64_MAX - 31, LLMQ_EFORMAT, "run past");   /* offset + size wraps */
    mut64(o.t1_off, 224, LLMQ_EFORMAT, "tensor 't1' at [224, 242) overlaps tensor 't0' at [0, 256)");
    mut64(o.t1_off, 0, LLMQ_EFORMAT, "overlaps");
    /* t1 renamed t0 */
    buf_t b;
    llmq_err err;
    build(&b);
    b.b[o.t1_name + 9] = '0';
    CHECK_EQ_INT(parse(b.b, b.n, &err), LLMQ_EFORMAT);
    CHECK_MSG(strstr(err.msg, "tensor 't0' appears twice") != NULL, "%s", err.msg);
    mut64(o.t1_name, 64, LLMQ_EFORMAT, "at most 63");
    /* a Q4_0 tensor whose bytes are valid: t1 typed Q8_0 needs 34 bytes, the file has 18 */
    mut32(o.t1_type, LLMQ_GGML_Q8_0, LLMQ_EFORMAT, "run past");
    /* BF16 at ne0 = 32 needs 64 bytes: t1 ends at 320 > 274 */
    mut32(o.t1_type, LLMQ_GGML_BF16, LLMQ_EFORMAT, "run past");
}

/* general.alignment: a u32 power of two; the data area and offsets follow it */
TEST(alignment)
{
    static const uint32_t aligns[] = { 1, 8, 64, 0, 3, 48 };
    for (size_t k = 0; k < LLMQ_ARRAY_LEN(aligns); k++) {
        buf_t b;
        memset(&b, 0, sizeof b);
        memcpy(b.b, "GGUF", 4); b.n = 4;
        pu32(&b, 3); pu64(&b, 1); pu64(&b, 1);
        pstr(&b, "general.alignment"); pu32(&b, LLMQ_GGUF_U32); pu32(&b, aligns[k]);
        pstr(&b, "w"); pu32(&b, 1); pu64(&b, 4); pu32(&b, LLMQ_GGML_F32); pu64(&b, 0);
        uint32_t a = aligns[k] && !(aligns[k] & (aligns[k] - 1)) ? aligns[k] : 1;
        size_t d = (b.n + a - 1) / a * a;
        b.n = d + 16;
        llmq_err err = { 0 };
        llmq_gguf_file f;
        int rc = llmq_gguf_parse(&f, b.b, b.n, "al.gguf", &err);
        if (a == aligns[k]) {
            CHECK_MSG(rc == 0, "alignment %u: %s", aligns[k], err.msg);
            if (!rc) {
                CHECK_EQ_INT(f.alignment, a);
                CHECK_EQ_INT(f.data_offset, d);
            }
        } else {
            CHECK_EQ_INT(rc, LLMQ_EFORMAT);
            CHECK_MSG(strstr(err.msg, "not a power of two") != NULL, "%s", err.msg);
        }
        llmq_gguf_close(&f);
    }
    /* general.alignment of the wrong type */
    buf_t b;
    memset(&b, 0, sizeof b);
    memcpy(b.b, "GGUF", 4); b.n = 4;
    pu32(&b, 3); pu64(&b, 0); pu64(&b, 1);
    pstr(&b, "general.alignment"); pu32(&b, LLMQ_GGUF_I32); pu32(&b, 32);
    llmq_err err;
    CHECK_EQ_INT(parse(b.b, b.n, &err), LLMQ_EFORMAT);
    CHECK_MSG(strstr(err.msg, "'general.alignment' is a i32, expected a u32") != NULL, "%s", err.msg);
}

/* A string array whose strings run past the end, each length checked */
TEST(string_array_refused)
{
    buf_t b;
    memset(&b, 0, sizeof b);
    memcpy(b.b, "GGUF", 4); b.n = 4;
    pu32(&b, 3); pu64(&b, 0); pu64(&b, 1);
    pstr(&b, "tokenizer.ggml.tokens"); pu32(&b, LLMQ_GGUF_ARRAY); pu32(&b, LLMQ_GGUF_STRING); pu64(&b, 3);
    pstr(&b, "a"); pstr(&b, "bc"); size_t last = b.n; pstr(&b, "def");
    llmq_err err = { 0 };
    CHECK_EQ_INT(parse(b.b, b.n, &err), 0);
    llmq_put_le64(b.b + last, 4);
    CHECK_EQ_INT(parse(b.b, b.n, &err), LLMQ_EFORMAT);
    CHECK_MSG(strstr(err.msg, "key 'tokenizer.ggml.tokens': string 2 of the array runs past") != NULL, "%s", err.msg);
    llmq_put_le64(b.b + last, UINT64_MAX);
    CHECK_EQ_INT(parse(b.b, b.n, &err), LLMQ_EFORMAT);
}

/* Every ggml type the parser can size is accepted; only F32, F16, BF16 and
 * Q4_0 are readable into llmq's weights, the rest refused by name. */
TEST(readable_types)
{
    for (uint32_t ty = 0; ty < LLMQ_GGML_TYPE_COUNT; ty++) {
        buf_t b;
        memset(&b, 0, sizeof b);
        memcpy(b.b, "GGUF", 4); b.n = 4;
        pu32(&b, 3); pu64(&b, 1); pu64(&b, 0);
        pstr(&b, "w"); pu32(&b, 1); pu64(&b, 256); pu32(&b, ty); pu64(&b, 0);
        static uint8_t big[4096];   /* the infos, then data: 256 F64 take the most, 2048 bytes */
        memset(big, 0, sizeof big);
        memcpy(big, b.b, b.n);
        llmq_err err = { 0 };
        llmq_gguf_file f;
        int rc = llmq_gguf_parse(&f, big, sizeof big, "ty.gguf", &err);
        const char *name = llmq_ggml_type_name_any(ty);
        int removed = ty == 4 || ty == 5 || (ty >= 31 && ty <= 33) || (ty >= 36 && ty <= 38);
        if (removed) {
            CHECK_MSG(rc == LLMQ_EUNSUPPORTED, "type %u: %d %s", ty, rc, err.msg);
            continue;
        }
        CHECK_MSG(rc == 0, "type %u (%s): %s", ty, name, err.msg);
        if (rc) continue;
        rc = llmq_gguf_tensor_readable(&f, &f.tensors[0], &err);
        if (ty == LLMQ_GGML_F32 || ty == LLMQ_GGML_F16 || ty == LLMQ_GGML_BF16 || ty == LLMQ_GGML_Q4_0) {
            CHECK_EQ_INT(rc, 0);
        } else {
            CHECK_EQ_INT(rc, LLMQ_EUNSUPPORTED);
            char want[128];
            snprintf(want, sizeof want, "ty.gguf: tensor 'w': ggml type %s is not supported", name);
            CHECK_MSG(strstr(err.msg, want) != NULL, "%s", err.msg);
        }
        llmq_gguf_close(&f);
    }
}

TEST_MAIN()
