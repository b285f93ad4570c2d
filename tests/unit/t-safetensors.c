/* t-safetensors.c - safetensors reader/writer, hostile headers, checkpoints. */
#define _GNU_SOURCE
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include "tests/test.h"
#include "formats/safetensors.h"
#include "formats/packed.h"

#define HPATH "hostile.safetensors"

/* ---- helpers ---- */

/* An image: 8-byte LE length of hdr, hdr, then data_len bytes 0,1,2,...
 * malloc'ed to its exact size so that ASan sees any overread. */
static uint8_t *mkimg(const char *hdr, size_t data_len, size_t *len)
{
    size_t hl = strlen(hdr);
    *len = 8 + hl + data_len;
    uint8_t *b = malloc(*len);
    llmq_put_le64(b, hl);
    memcpy(b + 8, hdr, hl);
    for (size_t i = 0; i < data_len; i++) b[8 + hl + i] = (uint8_t)i;
    return b;
}

/* Parse buf, expect code, and a message naming the path and each of want[]. */
static void expect_bad_at(int line, const uint8_t *buf, size_t len, int code, const char *w1, const char *w2)
{
    llmq_st_file f;
    llmq_err err = { 0 };
    int rc = llmq_st_parse(&f, buf, len, HPATH, &err);
    if (rc != code) {
        fprintf(stderr, "  line %d: rc %d, expected %d (msg: %s)\n", line, rc, code, rc ? err.msg : "");
        test_failed_now = 1;
    }
    if (rc == LLMQ_OK) { llmq_st_close(&f); return; }
    CHECK_MSG(strncmp(err.msg, HPATH ": ", strlen(HPATH) + 2) == 0, "line %d: %s", line, err.msg);
    CHECK_MSG(!strchr(err.msg, '\n'), "line %d: %s", line, err.msg);
    if (w1) CHECK_MSG(strstr(err.msg, w1) != NULL, "line %d: '%s' not in '%s'", line, w1, err.msg);
    if (w2) CHECK_MSG(strstr(err.msg, w2) != NULL, "line %d: '%s' not in '%s'", line, w2, err.msg);
    llmq_st_close(&f);   /* closing a failed parse is harmless */
}
#define BAD(arr, w) expect_bad_at(__LINE__, arr, sizeof arr, LLMQ_EFORMAT, w, NULL)

static void bad_json_at(int line, const char *hdr, size_t data_len, int code, const char *w1, const char *w2)
{
    size_t len;
    uint8_t *b = mkimg(hdr, data_len, &len);
    expect_bad_at(line, b, len, code, w1, w2);
    free(b);
}
#define BADJ(hdr, dl, w1, w2) bad_json_at(__LINE__, hdr, dl, LLMQ_EFORMAT, w1, w2)

static int good_json(const char *hdr, size_t data_len, llmq_st_file *f, uint8_t **buf)
{
    size_t len;
    *buf = mkimg(hdr, data_len, &len);
    llmq_err err = { 0 };
    int rc = llmq_st_parse(f, *buf, len, "good.safetensors", &err);
    if (rc) fprintf(stderr, "  unexpected: %s\n", err.msg);
    return rc;
}

static char tmpdir[64];

static void mk_tmpdir(void)
{
    strcpy(tmpdir, "/tmp/t-safetensors-XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); exit(1); }
}

static void rm_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2]))) continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(tmpdir);
}

static char *tpath(const char *name)
{
    static char p[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/%s", tmpdir, name);
    return p[k];
}

static void write_bytes(const char *name, const void *buf, size_t n)
{
    FILE *fp = fopen(tpath(name), "wb");
    fwrite(buf, 1, n, fp);
    fclose(fp);
}

static void write_text(const char *name, const char *text)
{
    write_bytes(name, text, strlen(text));
}

/* Write a shard holding the named F32 [2] tensors (value = index+1). */
static void write_shard(const char *file, const char *const *names, int n)
{
    static const float v[2] = { 1.0f, 2.0f };
    static const int64_t shape[1] = { 2 };
    llmq_err err = { 0 };
    llmq_st_writer *w = llmq_st_writer_new(&err);
    for (int i = 0; i < n; i++) CHECK_EQ_INT(llmq_st_writer_add(w, names[i], LLMQ_DT_F32, 1, shape, v, &err), 0);
    CHECK_EQ_INT(llmq_st_writer_finish(w, tpath(file), &err), 0);
    llmq_st_writer_free(w);
}

/* ---- dtypes ---- */

TEST(dtype_table)
{
    for (int i = 0; i < LLMQ_DT_COUNT; i++) {
        llmq_dtype dt;
        CHECK_EQ_INT(llmq_dtype_from_name(llmq_dtype_name((llmq_dtype)i), &dt), 0);
        CHECK_EQ_INT(dt, i);
        CHECK(llmq_dtype_size((llmq_dtype)i) >= 1);
    }
    llmq_dtype dt;
    CHECK_EQ_INT(llmq_dtype_from_name("bf16", &dt), -1);
    CHECK_EQ_INT(llmq_dtype_size(LLMQ_DT_BF16), 2);
    CHECK_EQ_INT(llmq_dtype_size(LLMQ_DT_F64), 8);
}

/* ---- writer + reader round trip ---- */

TEST(round_trip)
{
    mk_tmpdir();
    float f32[6] = { 1, -2, 3.5f, 0, 1e-30f, -7 };
    uint16_t bf16[4] = { 0x3f80, 0xbf80, 0x7f80, 0x0001 };
    int64_t i64 = -1234567890123LL;
    uint16_t f16[3] = { 0x3c00, 0x0000, 0x8001 };
    uint8_t b[1] = { 1 };
    int32_t i32[5] = { 1, 2, 3, 4, 5 };
    int64_t s23[2] = { 2, 3 }, s4[1] = { 4 }, s05[2] = { 0, 5 }, s3[1] = { 3 }, s1[1] = { 1 };
    int64_t s5[3] = { 1, 5, 1 };
    llmq_err err = { 0 };
    llmq_st_writer *w = llmq_st_writer_new(&err);
    CHECK(w != NULL);
    CHECK_EQ_INT(llmq_st_writer_add(w, "z.f32", LLMQ_DT_F32, 2, s23, f32, &err), 0);
    CHECK_EQ_INT(llmq_st_writer_add(w, "b.bf16", LLMQ_DT_BF16, 1, s4, bf16, &err), 0);
    CHECK_EQ_INT(llmq_st_writer_add(w, "scalar", LLMQ_DT_I64, 0, NULL, &i64, &err), 0);
    CHECK_EQ_INT(llmq_st_writer_add(w, "empty", LLMQ_DT_U8, 2, s05, NULL, &err), 0);
    CHECK_EQ_INT(llmq_st_writer_add(w, "a.f16", LLMQ_DT_F16, 1, s3, f16, &err), 0);
    CHECK_EQ_INT(llmq_st_writer_add(w, "flag", LLMQ_DT_BOOL, 1, s1, b, &err), 0);
    CHECK_EQ_INT(llmq_st_writer_add(w, "\xc3\xbcml\xc3\xa4ut", LLMQ_DT_I32, 3, s5, i32, &err), 0);
    CHECK_EQ_INT(llmq_st_writer_meta(w, "format", "pt", &err), 0);
    CHECK_EQ_INT(llmq_st_writer_meta(w, "note", "quote \" and \\ and \xe2\x82\xac", &err), 0);
    const char *path = tpath("rt.safetensors");
    CHECK_EQ_INT(llmq_st_writer_finish(w, path, &err), 0);
    llmq_st_writer_free(w);

    llmq_st_file f;
    int rc = llmq_st_open(&f, path, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc) { rm_tmpdir(); return; }
    CHECK_EQ_INT(f.n_tensors, 7);
    CHECK_EQ_INT(f.header_len % 8, 0);
    CHECK_EQ_INT((8 + f.header_len) % 64, 0);
    for (size_t i = 1; i < f.n_tensors; i++) CHECK(strcmp(f.tensors[i - 1].name, f.tensors[i].name) < 0);
    /* contiguous in name order, no holes, data area exactly filled */
    uint64_t off = 0;
    for (size_t i = 0; i < f.n_tensors; i++) {
        CHECK_EQ_INT(f.tensors[i].offset, off);
        off += f.tensors[i].nbytes;
    }
    CHECK_EQ_INT(8 + f.header_len + off, f.map.size);

    const llmq_st_tensor *t = llmq_st_find(&f, "z.f32");
    CHECK(t && t->dtype == LLMQ_DT_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && t->nelem == 6);
    CHECK(t && t->nbytes == 24 && memcmp(t->data, f32, 24) == 0);
    t = llmq_st_find(&f, "b.bf16");
    CHECK(t && t->dtype == LLMQ_DT_BF16 && t->nbytes == 8 && memcmp(t->data, bf16, 8) == 0);
    t = llmq_st_find(&f, "scalar");
    CHECK(t && t->ndim == 0 && t->nelem == 1 && t->nbytes == 8 && memcmp(t->data, &i64, 8) == 0);
    t = llmq_st_find(&f, "empty");
    CHECK(t && t->ndim == 2 && t->shape[0] == 0 && t->shape[1] == 5 && t->nelem == 0 && t->nbytes == 0);
    t = llmq_st_find(&f, "a.f16");
    CHECK(t && t->dtype == LLMQ_DT_F16 && memcmp(t->data, f16, 6) == 0);
    t = llmq_st_find(&f, "flag");
    CHECK(t && t->dtype == LLMQ_DT_BOOL && t->data[0] == 1);
    t = llmq_st_find(&f, "\xc3\xbcml\xc3\xa4ut");
    CHECK(t && t->ndim == 3 && t->shape[1] == 5 && memcmp(t->data, i32, 20) == 0);
    CHECK(llmq_st_find(&f, "nope") == NULL);
    CHECK(llmq_st_find(&f, "") == NULL);
    CHECK(llmq_st_meta(&f, "format") && strcmp(llmq_st_meta(&f, "format"), "pt") == 0);
    CHECK(llmq_st_meta(&f, "note") && strcmp(llmq_st_meta(&f, "note"), "quote \" and \\ and \xe2\x82\xac") == 0);
    CHECK(llmq_st_meta(&f, "absent") == NULL);
    /* header starts with the metadata, as the reference writer does */
    CHECK(memcmp(f.map.data + 8, "{\"__metadata__\"", 15) == 0);
    llmq_st_close(&f);
    llmq_st_close(&f);   /* idempotent */
    rm_tmpdir();
}

TEST(round_trip_no_tensors)
{
    mk_tmpdir();
    llmq_err err = { 0 };
    llmq_st_writer *w = llmq_st_writer_new(&err);
    CHECK_EQ_INT(llmq_st_writer_finish(w, tpath("e.safetensors"), &err), 0);
    llmq_st_writer_free(w);
    llmq_st_file f;
    CHECK_EQ_INT(llmq_st_open(&f, tpath("e.safetensors"), &err), 0);
    CHECK_EQ_INT(f.n_tensors, 0);
    CHECK(f.metadata == NULL);
    CHECK(llmq_st_meta(&f, "x") == NULL);
    CHECK(llmq_st_find(&f, "x") == NULL);
    llmq_st_close(&f);
    rm_tmpdir();
}

static int fill_pattern(void *ctx, const char *name, void *buf, uint64_t nbytes, llmq_err *err)
{
    (void)err;
    int *calls = ctx;
    (*calls)++;
    for (uint64_t i = 0; i < nbytes; i++) ((uint8_t *)buf)[i] = (uint8_t)(i * 7 + (uint8_t)name[0]);
    return LLMQ_OK;
}

static int fill_fail(void *ctx, const char *name, void *buf, uint64_t nbytes, llmq_err *err)
{
    (void)ctx; (void)buf; (void)nbytes;
    return llmq_errorf(err, LLMQ_EIO, "source of '%s' is gone", name);
}

TEST(writer_fill)
{
    mk_tmpdir();
    llmq_err err = { 0 };
    int calls = 0;
    int64_t sa[2] = { 100, 3 }, sb[1] = { 10 };
    uint8_t plain[4] = { 9, 8, 7, 6 };
    int64_t sp[1] = { 2 };
    llmq_st_writer *w = llmq_st_writer_new(&err);
    CHECK_EQ_INT(llmq_st_writer_add_fill(w, "b", LLMQ_DT_F32, 2, sa, fill_pattern, &calls, &err), 0);
    CHECK_EQ_INT(llmq_st_writer_add_fill(w, "a", LLMQ_DT_BF16, 1, sb, fill_pattern, &calls, &err), 0);
    CHECK_EQ_INT(llmq_st_writer_add(w, "c", LLMQ_DT_U16, 1, sp, plain, &err), 0);
    CHECK_EQ_INT(llmq_st_writer_finish(w, tpath("f.safetensors"), &err), 0);
    llmq_st_writer_free(w);
    CHECK_EQ_INT(calls, 2);
    llmq_st_file f;
    CHECK_EQ_INT(llmq_st_open(&f, tpath("f.safetensors"), &err), 0);
    const llmq_st_tensor *t = llmq_st_find(&f, "b");
    int ok = t && t->nbytes == 1200;
    for (uint64_t i = 0; ok && i < t->nbytes; i++) ok = t->data[i] == (uint8_t)(i * 7 + 'b');
    CHECK(ok);
    t = llmq_st_find(&f, "a");
    CHECK(t && t->nbytes == 20 && t->data[3] == (uint8_t)(21 + 'a'));
    t = llmq_st_find(&f, "c");
    CHECK(t && memcmp(t->data, plain, 4) == 0);
    llmq_st_close(&f);

    /* a failing fill leaves no file behind */
    w = llmq_st_writer_new(&err);
    CHECK_EQ_INT(llmq_st_writer_add_fill(w, "x", LLMQ_DT_F32, 1, sb, fill_fail, NULL, &err), 0);
    CHECK_EQ_INT(llmq_st_writer_finish(w, tpath("g.safetensors"), &err), LLMQ_EIO);
    CHECK(strstr(err.msg, "'x'") != NULL);
    llmq_st_writer_free(w);
    CHECK(!llmq_exists(tpath("g.safetensors")));
    DIR *d = opendir(tmpdir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += e->d_name[0] != '.' || strstr(e->d_name, "tmp") != NULL;
    closedir(d);
    CHECK_EQ_INT(n, 1);   /* only f.safetensors, no temp files */
    rm_tmpdir();
}

TEST(writer_rejects)
{
    llmq_err err = { 0 };
    float v[4] = { 0 };
    int64_t s2[1] = { 2 }, neg[1] = { -1 }, big[2] = { 1LL << 40, 1LL << 40 };
    int64_t s9[9] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };
    llmq_st_writer *w = llmq_st_writer_new(&err);
    CHECK_EQ_INT(llmq_st_writer_add(w, "a", LLMQ_DT_F32, 1, s2, v, &err), 0);
    CHECK_EQ_INT(llmq_st_writer_add(w, "a", LLMQ_DT_F32, 1, s2, v, &err), LLMQ_EFORMAT);
    CHECK(strstr(err.msg, "'a'") != NULL);
    CHECK_EQ_INT(llmq_st_writer_add(w, "n", LLMQ_DT_F32, 1, neg, v, &err), LLMQ_EFORMAT);
    CHECK(strstr(err.msg, "'n'") != NULL);
    CHECK_EQ_INT(llmq_st_writer_add(w, "o", LLMQ_DT_F32, 2, big, v, &err), LLMQ_EFORMAT);
    CHECK_EQ_INT(llmq_st_writer_add(w, "d", LLMQ_DT_F32, 9, s9, v, &err), LLMQ_EFORMAT);
    CHECK_EQ_INT(llmq_st_writer_add(w, "d", LLMQ_DT_F32, -1, s9, v, &err), LLMQ_EFORMAT);
    CHECK_EQ_INT(llmq_st_writer_add(w, "", LLMQ_DT_F32, 1, s2, v, &err), LLMQ_EFORMAT);
    CHECK_EQ_INT(llmq_st_writer_add(w, "__metadata__", LLMQ_DT_F32, 1, s2, v, &err), LLMQ_EFORMAT);
    CHECK_EQ_INT(llmq_st_writer_add(w, "bad\xff", LLMQ_DT_F32, 1, s2, v, &err), LLMQ_EFORMAT);
    CHECK_EQ_INT(llmq_st_writer_add(w, "nodata", LLMQ_DT_F32, 1, s2, NULL, &err), LLMQ_EFORMAT);
    CHECK_EQ_INT(llmq_st_writer_add(w, "dt", (llmq_dtype)99, 1, s2, v, &err), LLMQ_EFORMAT);
    CHECK_EQ_INT(llmq_st_writer_meta(w, "k", "v", &err), 0);
    CHECK_EQ_INT(llmq_st_writer_meta(w, "k", "w", &err), LLMQ_EFORMAT);
    CHECK_EQ_INT(llmq_st_writer_meta(w, "", "w", &err), LLMQ_EFORMAT);
    CHECK_EQ_INT(llmq_st_writer_meta(w, "x", "\xc0\xaf", &err), LLMQ_EFORMAT);
    llmq_st_writer_free(w);
    llmq_st_writer_free(NULL);

    /* unwritable destination: LLMQ_EIO naming it */
    w = llmq_st_writer_new(&err);
    CHECK_EQ_INT(llmq_st_writer_finish(w, "/nonexistent-dir/x.safetensors", &err), LLMQ_EIO);
    CHECK(strstr(err.msg, "/nonexistent-dir/x.safetensors") != NULL);
    llmq_st_writer_free(w);
}

/* ---- hostile headers ---- */

TEST(hostile_length_field)
{
    static const uint8_t empty[1] = { 0 };
    expect_bad_at(__LINE__, empty, 0, LLMQ_EFORMAT, "0 bytes", NULL);
    static const uint8_t short3[] = { 0x10, 0x00, 0x00 };
    BAD(short3, "3 bytes");
    static const uint8_t short7[] = { 0x02, 0, 0, 0, 0, 0, 0 };
    BAD(short7, "too short");
    static const uint8_t past_eof[] = { 0x20, 0, 0, 0, 0, 0, 0, 0, '{', '}' };
    BAD(past_eof, "past end of file");
    static const uint8_t past_eof1[] = { 0x03, 0, 0, 0, 0, 0, 0, 0, '{', '}' };
    BAD(past_eof1, "past end of file");
    static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}' };
    BAD(huge, "exceeds");
    static const uint8_t over_limit[] = { 0x01, 0x00, 0x40, 0x06, 0, 0, 0, 0, '{', '}' };  /* 100 MiB + 1 */
    BAD(over_limit, "exceeds");
    static const uint8_t top_bit[] = { 0x02, 0, 0, 0, 0, 0, 0, 0x80, '{', '}' };
    BAD(top_bit, "exceeds");
    static const uint8_t zero_len[] = { 0, 0, 0, 0, 0, 0, 0, 0 };
    BAD(zero_len, "too short");
    static const uint8_t one_len[] = { 1, 0, 0, 0, 0, 0, 0, 0, '{' };
    BAD(one_len, "too short");
    /* the minimal valid file */
    static const uint8_t minimal[] = { 2, 0, 0, 0, 0, 0, 0, 0, '{', '}' };
    expect_bad_at(__LINE__, minimal, sizeof minimal, LLMQ_OK, NULL, NULL);
}

TEST(hostile_json)
{
    static const uint8_t trunc_obj[] = { 6, 0, 0, 0, 0, 0, 0, 0, '{', '"', 'a', '"', ':', ' ' };
    BAD(trunc_obj, "not valid JSON");
    BADJ("{\"a\":{\"dtype\":\"F32\",}}", 0, "not valid JSON", NULL);
    BADJ("[", 0, "too short", NULL);
    BADJ("{\"", 0, "not valid JSON", NULL);
    BADJ("", 0, "too short", NULL);
    BADJ("  ", 0, "not valid JSON", NULL);
    BADJ("nul", 0, "not valid JSON", NULL);
    BADJ("{} x", 0, "trailing bytes", NULL);
    BADJ("{}{}", 0, "trailing bytes", NULL);
    BADJ("[1,2]", 0, "not a JSON object", NULL);
    BADJ("\"str\"", 0, "not a JSON object", NULL);
    BADJ("null", 0, "not a JSON object", NULL);
    BADJ("{\"a\":1,}", 0, "not valid JSON", NULL);
    BADJ("{\"w\":\"\\ud800\"}", 0, "not valid JSON", NULL);          /* lone surrogate escape */
    static const uint8_t nul_in_key[] = { 7, 0, 0, 0, 0, 0, 0, 0, '{', '"', 'a', 0, '"', ':', '1' };
    BAD(nul_in_key, "control byte");
    BADJ("{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]}}", 1, "escaped NUL", NULL);
    BADJ("{\"\x01\":1}", 0, "control byte", NULL);
    /* deep nesting: refused by LLMQ_JSON_MAX_DEPTH before cJSON recurses */
    char deep[4200];
    memset(deep, '[', 4100);
    deep[4100] = 0;
    BADJ(deep, 0, "JSON nested deeper than 64 levels", "llmq's limit");
    /* trailing spaces (the writer's padding) and newlines are fine */
    llmq_st_file f;
    uint8_t *b;
    CHECK_EQ_INT(good_json("{}     \n\t", 0, &f, &b), 0);
    llmq_st_close(&f);
    free(b);
    /* an escaped backslash before u0000 is text, not a NUL */
    CHECK_EQ_INT(good_json("{\"__metadata__\":{\"k\":\"\\\\u0000\"}}", 0, &f, &b), 0);
    CHECK(llmq_st_meta(&f, "k") && strcmp(llmq_st_meta(&f, "k"), "\\u0000") == 0);
    llmq_st_close(&f);
    free(b);
}

TEST(hostile_entries)
{
    BADJ("{\"w\":[1]}", 0, "'w'", "not an object");
    BADJ("{\"w\":\"x\"}", 0, "'w'", "not an object");
    BADJ("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'w'", "missing \"dtype\"");
    BADJ("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "'w'", "missing \"shape\"");
    BADJ("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "'w'", "missing \"data_offsets\"");
    BADJ("{\"w\":{\"dtype\":3,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'w'", "dtype is not a string");
    BADJ("{\"w\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'w'", "unknown dtype 'F33'");
    BADJ("{\"w\":{\"dtype\":\"bf16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2, "'w'", "unknown dtype");
    bad_json_at(__LINE__, "{\"w\":{\"dtype\":\"F8_E8M0\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                LLMQ_EUNSUPPORTED, "'w'", "F8_E8M0");
    BADJ("{\"w\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", 4, "'w'", "shape is not an array");
    BADJ("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "'w'", "9 dimensions");
    BADJ("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "'w'", "shape[0]");
    BADJ("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "'w'", "shape[0]");
    BADJ("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,\"2\"],\"data_offsets\":[0,8]}}", 8, "'w'", "shape[1]");
    BADJ("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,null],\"data_offsets\":[0,8]}}", 8, "'w'", "shape[1]");
    BADJ("{\"w\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]}}", 4, "'w'", "shape[0]");
    BADJ("{\"w\":{\"dtype\":\"F32\",\"shape\":[1e999],\"data_offsets\":[0,4]}}", 4, "'w'", "shape[0]");
    BADJ("{\"w\":{\"dtype\":\"F32\",\"shape\":[-0.5],\"data_offsets\":[0,4]}}", 4, "'w'", "shape[0]");
    /* 2^62 is beyond exact doubles; 2^32 x 2^32 overflows the product;
     * 2^31 x 2^31 x 8 bytes overflows the byte count */
    BADJ("{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4611686018427387904],\"data_offsets\":[0,4]}}", 4,
         "'w'", "shape[0]");
    BADJ("{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, "'w'", "overflows");
    BADJ("{\"w\":{\"dtype\":\"F64\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,4]}}", 4, "'w'", "overflows");
    BADJ("{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,3],\"data_offsets\":[0,4]}}", 4, "'w'", "overflows");
    /* shape and span disagree */
    BADJ("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, "'w'", "needs 8 bytes");
    BADJ("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, "'w'", "span 8");
    BADJ("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,4]}}", 4, "'w'", "needs 0 bytes");
    /* offsets */
    BADJ("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, "'w'", "begin 8 > end 4");
    BADJ("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "'w'", "data ends at 16");
    BADJ("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 8, "'w'", "data ends at 12");
    BADJ("{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[9,9]}}", 8, "'w'", "data ends at 9");
    BADJ("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 8, "'w'", "data_offsets");
    BADJ("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0.5,4.5]}}", 8, "'w'", "data_offsets");
    BADJ("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 8, "'w'", "data_offsets");
    BADJ("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, "'w'", "data_offsets");
    BADJ("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{\"a\":0}}}", 8, "'w'", "data_offsets");
    BADJ("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",\"4\"]}}", 8, "'w'", "data_offsets");
    BADJ("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[18446744073709551612,18446744073709551616]}}", 8,
         "'w'", "data_offsets");
    /* overlaps (also when listed in reverse order) */
    BADJ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "'b'", "overlaps tensor 'a'");
    BADJ("{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, "'b'", "overlaps");
    BADJ("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "overlaps", NULL);
    BADJ("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
         "\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[16,20]}}", 20, "'b'", "overlaps tensor 'a'");
    BADJ("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'w'",
         "key 'dtype' appears twice");
    /* names */
    BADJ("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "'w'", "appears twice");
    BADJ("{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "name is empty", NULL);
    BADJ("{\"\xff\xfe\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "not valid UTF-8", NULL);
    BADJ("{\"a\xc0\xaf\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "not valid UTF-8", NULL);
    BADJ("{\"\xed\xa0\x80\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "not valid UTF-8", NULL);
    BADJ("{\"\xf4\x90\x80\x80\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "not valid UTF-8", NULL);
    BADJ("{\"ab\xe2\x82\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "not valid UTF-8", NULL);
    /* a hostile name is quoted safely in the one-line message */
    BADJ("{\"line\\nbreak\":[1]}", 0, "'line\\nbreak'", "not an object");
    /* metadata */
    BADJ("{\"__metadata__\":[\"a\"]}", 0, "__metadata__ is not an object", NULL);
    BADJ("{\"__metadata__\":\"a\"}", 0, "__metadata__ is not an object", NULL);
    BADJ("{\"__metadata__\":{\"k\":1}}", 0, "'k'", "not a string");
    BADJ("{\"__metadata__\":{\"k\":null}}", 0, "'k'", "not a string");
    BADJ("{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}", 0, "'k'", "not a string");
    BADJ("{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, "'k'", "twice");
    BADJ("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__ appears twice", NULL);
    /* whole header must be UTF-8, even inside metadata values */
    BADJ("{\"__metadata__\":{\"k\":\"\x80\"}}", 0, "not valid UTF-8", NULL);
}

TEST(accepted_layouts)
{
    llmq_st_file f;
    uint8_t *b;
    /* holes between spans and after the last one are accepted; empty
     * tensors may sit anywhere, even inside another span */
    int rc = good_json("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
                       "\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                       "\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[9,9]},"
                       "\"s\":{\"dtype\":\"U16\",\"shape\":[],\"data_offsets\":[12,14]},"
                       "\"extra\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[14,15],\"note\":1}}", 20, &f, &b);
    CHECK_EQ_INT(rc, 0);
    if (rc == 0) {
        CHECK_EQ_INT(f.n_tensors, 5);
        CHECK(strcmp(f.tensors[0].name, "a") == 0 && strcmp(f.tensors[4].name, "s") == 0);
        const llmq_st_tensor *t = llmq_st_find(&f, "b");
        CHECK(t && t->data == b + 8 + f.header_len + 8 && t->data[0] == 8);
        t = llmq_st_find(&f, "s");
        CHECK(t && t->ndim == 0 && t->nelem == 1 && t->nbytes == 2);
        t = llmq_st_find(&f, "e");
        CHECK(t && t->nelem == 0 && t->shape[1] == 3);
        llmq_st_close(&f);
    }
    free(b);
    /* a zero dimension makes a huge other dimension harmless */
    rc = good_json("{\"z\":{\"dtype\":\"F64\",\"shape\":[0,9007199254740992],\"data_offsets\":[0,0]}}", 0, &f, &b);
    CHECK_EQ_INT(rc, 0);
    if (rc == 0) llmq_st_close(&f);
    free(b);
}

TEST(open_errors)
{
    llmq_st_file f;
    llmq_err err = { 0 };
    CHECK_EQ_INT(llmq_st_open(&f, "/nonexistent/x.safetensors", &err), LLMQ_EIO);
    CHECK(strstr(err.msg, "/nonexistent/x.safetensors") != NULL);
    CHECK_EQ_INT(llmq_st_open(&f, "/tmp", &err), LLMQ_EIO);
    mk_tmpdir();
    write_text("empty.safetensors", "");
    CHECK_EQ_INT(llmq_st_open(&f, tpath("empty.safetensors"), &err), LLMQ_EFORMAT);
    CHECK(strstr(err.msg, "empty.safetensors: ") == strstr(err.msg, tmpdir) + strlen(tmpdir) + 1);
    rm_tmpdir();
}

/* ---- fuzz-ish: every position, several mutations; then random ones ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static unsigned fuzz_ok, fuzz_bad;

static void fuzz_one(const uint8_t *buf, size_t len)
{
    llmq_st_file f;
    llmq_err err = { 0 };
    int rc = llmq_st_parse(&f, buf, len, "fuzz.safetensors", &err);
    if (rc == 0) {
        /* every byte of every tensor must be readable (ASan checks) */
        unsigned sum = 0;
        for (size_t i = 0; i < f.n_tensors; i++)
            for (uint64_t j = 0; j < f.tensors[i].nbytes; j++) sum += f.tensors[i].data[j];
        (void)sum;
        for (size_t i = 0; i < f.n_tensors; i++) CHECK(llmq_st_find(&f, f.tensors[i].name) == &f.tensors[i]);
        fuzz_ok++;
        llmq_st_close(&f);
    } else {
        CHECK_MSG(rc == LLMQ_EFORMAT || rc == LLMQ_EUNSUPPORTED, "rc %d: %s", rc, err.msg);
        CHECK(strncmp(err.msg, "fuzz.safetensors: ", 18) == 0);
        fuzz_bad++;
    }
}

TEST(fuzz_mutations)
{
    const char *hdr =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"a\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[12,28]},"
        "\"c\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[28,36]},"
        "\"d\":{\"dtype\":\"U8\",\"shape\":[0,7],\"data_offsets\":[36,36]},"
        "\"e\":{\"dtype\":\"F16\",\"shape\":[1,1,2],\"data_offsets\":[36,40]}}  ";
    size_t len;
    uint8_t *img = mkimg(hdr, 40, &len);
    fuzz_ok = fuzz_bad = 0;
    fuzz_one(img, len);
    CHECK_EQ_INT(fuzz_ok, 1);

    static const uint8_t xors[] = { 0x01, 0x02, 0x08, 0x20, 0x40, 0x80, 0xff };
    static const uint8_t sets[] = { 0, '"', '{', '}', '[', ']', ',', ':', '0', '9', '-', '.', 'e', '\\', 0x80, 0xc3 };
    uint8_t *m = malloc(len);
    for (size_t pos = 0; pos < len; pos++) {
        memcpy(m, img, len);
        for (size_t k = 0; k < sizeof xors; k++) {
            m[pos] = img[pos] ^ xors[k];
            fuzz_one(m, len);
        }
        for (size_t k = 0; k < sizeof sets; k++) {
            m[pos] = sets[k];
            fuzz_one(m, len);
        }
    }
    /* truncations, into exact-size buffers */
    for (size_t n = 0; n < len; n++) {
        uint8_t *t = malloc(n ? n : 1);
        memcpy(t, img, n);
        fuzz_one(t, n);
        free(t);
    }
    /* header-length field off by small amounts */
    for (int d = -40; d <= 40; d++) {
        memcpy(m, img, len);
        llmq_put_le64(m, llmq_get_le64(img) + (uint64_t)(int64_t)d);
        fuzz_one(m, len);
    }
    /* 5000 random multi-byte mutations with a fixed seed */
    rng_state = 12345;
    for (int it = 0; it < 5000; it++) {
        memcpy(m, img, len);
        int nmut = 1 + (int)(rng() % 8);
        for (int j = 0; j < nmut; j++) {
            size_t pos = (size_t)(rng() % len);
            uint64_t r = rng();
            switch (r % 4) {
            case 0: m[pos] ^= (uint8_t)(1u << ((r >> 8) % 8)); break;
            case 1: m[pos] = (uint8_t)(r >> 8); break;
            case 2: m[pos] = sets[(r >> 8) % sizeof sets]; break;
            default: m[pos] = (uint8_t)('0' + (r >> 8) % 10); break;
            }
        }
        size_t n = len;
        if (rng() % 4 == 0) n = (size_t)(rng() % (len + 1));
        uint8_t *t = malloc(n ? n : 1);
        memcpy(t, m, n);
        fuzz_one(t, n);
        free(t);
    }
    free(m);
    free(img);
    CHECK(fuzz_ok > 1 && fuzz_bad > 1000);
}

/* The shared quoting of file text in messages. */
TEST(quote)
{
    char q[LLMQ_QUOTE_SIZE];
    CHECK(!strcmp(llmq_quote(q, "model.layers.0.q_proj"), "model.layers.0.q_proj"));
    CHECK(!strcmp(llmq_quote(q, NULL), ""));
    CHECK(!strcmp(llmq_quote(q, "\xc4\xa0the \xe4\xb8\xad\xe6\x96\x87"), "\xc4\xa0the \xe4\xb8\xad\xe6\x96\x87"));
    CHECK(!strcmp(llmq_quote(q, "a\nb\rc\td\\e"), "a\\nb\\rc\\td\\\\e"));
    CHECK(!strcmp(llmq_quote(q, "\x1b[2J\x7f"), "\\x1b[2J\\x7f"));
    CHECK(!strcmp(llmq_quote(q, "\xff\xc0\xaf\xed\xa0\x80\xe4\xb8"), "\\xff\\xc0\\xaf\\xed\\xa0\\x80\\xe4\\xb8"));
    CHECK(!strcmp(llmq_quote(q, "\xc2\x9b" "2J \xe2\x80\xae" "x \xe2\x80\xa8"), "\\u009b2J \\u202ex \\u2028"));
    CHECK(!strcmp(llmq_quote_n(q, "a\0b", 3), "a\\x00b"));
    /* long text is cut, never inside a character or an escape */
    char big[400];
    for (int i = 0; i < 399; i++) big[i] = "\xe4\xb8\xad"[i % 3];
    big[399] = 0;
    llmq_quote(q, big);
    size_t n = strlen(q);
    CHECK(n <= 83 && n > 70 && !strcmp(q + n - 3, "...") && (n - 3) % 3 == 0);
    memset(big, '\x01', 399);
    llmq_quote(q, big);
    n = strlen(q);
    CHECK(n <= 83 && !strcmp(q + n - 3, "...") && (n - 3) % 4 == 0);
    memset(big, 'A', 80);
    big[80] = 0;
    CHECK(!strcmp(llmq_quote(q, big), big));
    big[80] = 'B';
    big[81] = 0;
    llmq_quote(q, big);
    CHECK(strlen(q) == 83 && !strcmp(q + 80, "..."));
}

/* The llmq.* metadata of a packed file are JSON inside a JSON string: read
 * as strictly as a file. */
TEST(packed_meta_strict)
{
    struct { const char *linears; int rc; const char *want; } cases[] = {
        { "{}", 0, NULL },
        { "{} garbage {\"model.layers.0.mlp.up_proj\": {}}", LLMQ_EFORMAT,
          "good.safetensors: metadata 'llmq.linears': trailing bytes after the JSON value at byte 3" },
        { "{\"a\": 1, \"a\": 2}", LLMQ_EFORMAT, "metadata 'llmq.linears': duplicate key 'a'" },
        { "[]", LLMQ_EFORMAT, "metadata 'llmq.linears' is not a JSON object" },
        { "{", LLMQ_EFORMAT, "metadata 'llmq.linears': not valid JSON" },
    };
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(cases); i++) {
        cJSON *h = cJSON_CreateObject(), *m = cJSON_AddObjectToObject(h, "__metadata__");
        cJSON_AddStringToObject(m, "llmq.format_version", LLMQ_PACKED_VERSION);
        cJSON_AddStringToObject(m, "llmq.linears", cases[i].linears);
        cJSON_AddStringToObject(m, "llmq.crc32", "{}");
        char *hdr = cJSON_PrintUnformatted(h);
        llmq_st_file f;
        uint8_t *buf;
        cJSON *meta = NULL;
        llmq_err err = { 0 };
        if (good_json(hdr, 0, &f, &buf) == 0) {
            int rc = llmq_packed_meta(&f, &meta, &err);
            CHECK_MSG(rc == cases[i].rc && (rc ? !meta && strstr(err.msg, cases[i].want) : meta != NULL),
                      "case %zu: rc %d: %s", i, rc, rc ? err.msg : "");
            llmq_st_close(&f);
        }
        cJSON_Delete(meta);
        free(buf);
        free(hdr);
        cJSON_Delete(h);
    }
}

/* ---- checkpoints ---- */

static const char *const A_NAMES[] = { "x", "y" };
static const char *const B_NAMES[] = { "z" };

static void ckpt_fixture(void)
{
    mk_tmpdir();
    write_shard("a.safetensors", A_NAMES, 2);
    write_shard("b.safetensors", B_NAMES, 1);
    write_text("config.json", "{}");
}

static void expect_ckpt_bad_at(int line, const char *index, int code, const char *w1, const char *w2)
{
    llmq_ckpt c;
    llmq_err err = { 0 };
    write_text("model.safetensors.index.json", index);
    int rc = llmq_ckpt_open(&c, tmpdir, &err);
    if (rc != code) {
        fprintf(stderr, "  line %d: rc %d, expected %d (msg: %s)\n", line, rc, code, rc ? err.msg : "");
        test_failed_now = 1;
    }
    if (rc == 0) { llmq_ckpt_close(&c); return; }
    CHECK_MSG(strncmp(err.msg, tmpdir, strlen(tmpdir)) == 0, "line %d: %s", line, err.msg);
    if (w1) CHECK_MSG(strstr(err.msg, w1) != NULL, "line %d: '%s' not in '%s'", line, w1, err.msg);
    if (w2) CHECK_MSG(strstr(err.msg, w2) != NULL, "line %d: '%s' not in '%s'", line, w2, err.msg);
    CHECK(c.shards == NULL && c.dir == NULL);
    llmq_ckpt_close(&c);
}
#define BADCK(index, code, w1, w2) expect_ckpt_bad_at(__LINE__, index, code, w1, w2)

TEST(ckpt_sharded_good)
{
    ckpt_fixture();
    write_text("model.safetensors.index.json",
               "{\"metadata\":{\"total_size\":24},\"weight_map\":"
               "{\"x\":\"a.safetensors\",\"z\":\"b.safetensors\",\"y\":\"a.safetensors\"}}\n");
    llmq_ckpt c;
    llmq_err err = { 0 };
    for (int how = 0; how < 2; how++) {
        const char *p = how ? tpath("model.safetensors.index.json") : tmpdir;
        int rc = llmq_ckpt_open(&c, p, &err);
        CHECK_MSG(rc == 0, "%s", err.msg);
        if (rc) continue;
        CHECK_EQ_INT(c.n_shards, 2);
        CHECK(strcmp(c.dir, tmpdir) == 0);
        const llmq_st_file *s = NULL;
        const llmq_st_tensor *t = llmq_ckpt_find(&c, "z", &s);
        CHECK(t && s && strstr(s->path, "b.safetensors"));
        CHECK(t && t->nbytes == 8);
        t = llmq_ckpt_find(&c, "y", &s);
        CHECK(t && s && strstr(s->path, "a.safetensors"));
        CHECK(llmq_ckpt_find(&c, "w", &s) == NULL && s == NULL);
        CHECK(llmq_ckpt_find(&c, "x", NULL) != NULL);
        CHECK_EQ_INT(llmq_ckpt_bytes(&c), 24);
        llmq_ckpt_close(&c);
    }
    rm_tmpdir();
}

TEST(ckpt_single)
{
    mk_tmpdir();
    write_shard("model.safetensors", A_NAMES, 2);
    llmq_ckpt c;
    llmq_err err = { 0 };
    CHECK_EQ_INT(llmq_ckpt_open(&c, tmpdir, &err), 0);
    CHECK_EQ_INT(c.n_shards, 1);
    CHECK(llmq_ckpt_find(&c, "y", NULL) != NULL);
    CHECK_EQ_INT(llmq_ckpt_bytes(&c), 16);
    llmq_ckpt_close(&c);
    CHECK_EQ_INT(llmq_ckpt_open(&c, tpath("model.safetensors"), &err), 0);
    CHECK(strcmp(c.dir, tmpdir) == 0);
    llmq_ckpt_close(&c);
    llmq_ckpt_close(&c);
    /* a bare file name: its directory is "." */
    char cwd[512];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK_EQ_INT(chdir(tmpdir), 0);
    CHECK_EQ_INT(llmq_ckpt_open(&c, "model.safetensors", &err), 0);
    CHECK(c.dir && strcmp(c.dir, ".") == 0);
    llmq_ckpt_close(&c);
    CHECK_EQ_INT(chdir(cwd), 0);
    rm_tmpdir();
}

TEST(ckpt_missing)
{
    llmq_ckpt c;
    llmq_err err = { 0 };
    CHECK_EQ_INT(llmq_ckpt_open(&c, "/nonexistent/model", &err), LLMQ_EIO);
    CHECK(strstr(err.msg, "/nonexistent/model") != NULL);
    CHECK_EQ_INT(llmq_ckpt_open(&c, "/nonexistent/model.safetensors.index.json", &err), LLMQ_EIO);
    mk_tmpdir();
    CHECK_EQ_INT(llmq_ckpt_open(&c, tmpdir, &err), LLMQ_EIO);
    CHECK(strstr(err.msg, tmpdir) && strstr(err.msg, "model.safetensors"));
    rm_tmpdir();
}

TEST(ckpt_bad_index)
{
    ckpt_fixture();
    BADCK("{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"c.safetensors\"}}",
          LLMQ_EIO, "c.safetensors", NULL);
    BADCK("{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"b.safetensors\","
          "\"w\":\"b.safetensors\"}}", LLMQ_EFORMAT, "'w'", "not in its shard 'b.safetensors'");
    BADCK("{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"../b.safetensors\"}}",
          LLMQ_EFORMAT, "'z'", "'../b.safetensors' is not a plain file name");
    BADCK("{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"/tmp/b.safetensors\"}}",
          LLMQ_EFORMAT, "'z'", "not a plain file name");
    BADCK("{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"..\"}}",
          LLMQ_EFORMAT, "'z'", "not a plain file name");
    BADCK("{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"\"}}",
          LLMQ_EFORMAT, "'z'", "not a plain file name");
    /* the index lists y in a, but z's shard b is not asked for x: a tensor not in the index */
    BADCK("{\"weight_map\":{\"x\":\"a.safetensors\",\"z\":\"b.safetensors\"}}",
          LLMQ_EFORMAT, "'y'", "not in the index");
    BADCK("{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"b.safetensors\","
          "\"x\":\"a.safetensors\"}}", LLMQ_EFORMAT, "duplicate key 'x'", "in 'weight_map'");
    BADCK("{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":1}}",
          LLMQ_EFORMAT, "'z'", "not a string");
    BADCK("{\"weight_map\":[\"a.safetensors\"]}", LLMQ_EFORMAT, "weight_map", NULL);
    BADCK("{\"metadata\":{}}", LLMQ_EFORMAT, "weight_map", NULL);
    BADCK("{\"weight_map\":{}}", LLMQ_EFORMAT, "empty", NULL);
    BADCK("[]", LLMQ_EFORMAT, "weight_map", NULL);
    BADCK("{\"weight_map\":{\"x\":\"a.safetensors\"", LLMQ_EFORMAT, "not valid JSON", NULL);
    BADCK("{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"b.safetensors\"}} junk",
          LLMQ_EFORMAT, "trailing", NULL);
    BADCK("", LLMQ_EFORMAT, "not valid JSON", NULL);
    /* strict JSON: a \u0000 would cut a shard or tensor name short */
    BADCK("{\"weight_map\":{\"x\":\"a.safetensors\\u0000\",\"y\":\"a.safetensors\",\"z\":\"b.safetensors\"}}",
          LLMQ_EFORMAT, "\\u0000 in a string at byte 33", NULL);
    BADCK("{\"weight_map\":{\"x\\u0000junk\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"b.safetensors\"}}",
          LLMQ_EFORMAT, "\\u0000 in a string at byte 17", NULL);
    BADCK("{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"b.safetensors\"}} junk",
          LLMQ_EFORMAT, "trailing bytes after the JSON value at byte 77", NULL);
    BADCK("{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"b.safe\ntensors\"}}",
          LLMQ_EFORMAT, "raw control character 0x0a", NULL);
    BADCK("{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"b.safetensors\"},"
          "\"weight_map\":{\"x\":\"b.safetensors\"}}", LLMQ_EFORMAT, "duplicate key 'weight_map' in the top-level object", NULL);
    BADCK("{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"b\\u001b[2J.safetensors\"}}",
          LLMQ_EFORMAT, "'b\\x1b[2J.safetensors' is not a plain file name", NULL);

    /* a tensor stored in two shards */
    static const char *const B2[] = { "x", "z" };
    write_shard("b.safetensors", B2, 2);
    BADCK("{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"b.safetensors\"}}",
          LLMQ_EFORMAT, "'x'", "too, index names 'a.safetensors'");
    /* a broken shard: the shard's own path is in the message */
    write_bytes("b.safetensors", "\x02\0\0\0\0\0\0\0[]", 10);
    BADCK("{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"b.safetensors\"}}",
          LLMQ_EFORMAT, "b.safetensors: header is not a JSON object", NULL);
    rm_tmpdir();
}

TEST_MAIN()
