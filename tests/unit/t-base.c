/* t-base.c - the internal base: float conversions, sha256, pool, text
 * reading, atomic outputs, calibration windows, scheme names. */
#include <unistd.h>
#include "tests/test.h"
#include "lib/llmq-int.h"
#include "lib/fileio.h"
#include "lib/pool.h"
#include "lib/sha256.h"
#include "formats/packed.h"
#include "calib/data.h"

TEST(f16_round_trip_and_rounding)
{
    /* every f16 bit pattern that is finite converts to f32 and back exactly */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00) continue;
        float f = llmq_f16_to_f32((uint16_t)h);
        CHECK_MSG(llmq_f32_to_f16(f) == h, "h=%04x f=%g back %04x", h, f, llmq_f32_to_f16(f));
    }
    CHECK_EQ_INT(llmq_f32_to_f16(65520.0f), 0x7c00);            /* rounds to Inf */
    CHECK_EQ_INT(llmq_f32_to_f16(65519.0f), 0x7bff);
    CHECK_EQ_INT(llmq_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);  /* tie to even */
    CHECK_EQ_INT(llmq_f32_to_f16(2.9802322387695312e-08f), 0);  /* 2^-25: tie to even zero */
    CHECK_EQ_INT(llmq_f32_to_f16(3.0e-08f), 1);
    CHECK_EQ_INT(llmq_f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);   /* tie to even */
    CHECK_EQ_INT(llmq_f32_to_bf16(llmq_bits_f32(0x7fc00001u)) & 0x7fc0, 0x7fc0);
    CHECK(llmq_bf16_to_f32(0x3f80) == 1.0f);
}

TEST(sha256_vectors)
{
    struct { const char *in, *hex; } v[] = {
        { "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
        { "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
        { "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
    };
    for (size_t i = 0; i < 3; i++) {
        llmq_sha256 s;
        uint8_t d[32];
        char h[65];
        llmq_sha256_init(&s);
        /* feed byte by byte to cross block boundaries oddly */
        for (const char *p = v[i].in; *p; p++) llmq_sha256_update(&s, p, 1);
        llmq_sha256_final(&s, d);
        llmq_sha256_hex(d, h);
        CHECK_MSG(!strcmp(h, v[i].hex), "%s", h);
    }
}

static void count_fn(void *ctx, int i, int n)
{
    int64_t lo, hi, *acc = ctx;
    llmq_split(1000003, i, n, 16, &lo, &hi);
    for (int64_t k = lo; k < hi; k++) __atomic_add_fetch(acc, k, __ATOMIC_RELAXED);
}

TEST(pool_covers_every_index)
{
    for (int t = 1; t <= 3; t++) {
        llmq_pool *p = llmq_pool_new(t, NULL);
        CHECK(p != NULL);
        for (int rep = 0; rep < 50; rep++) {
            int64_t acc = 0;
            llmq_pool_run(p, count_fn, &acc);
            CHECK_EQ_INT(acc, (int64_t)1000003 * 1000002 / 2);
        }
        llmq_pool_free(p);
    }
}

static char tmpdir[64];

static const char *tmp(const char *name)
{
    static char buf[256];
    if (!tmpdir[0]) { strcpy(tmpdir, "/tmp/llmq-t-base.XXXXXX"); if (!mkdtemp(tmpdir)) abort(); }
    snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
    return buf;
}

static void write_file(const char *path, const char *s)
{
    FILE *f = fopen(path, "wb");
    fputs(s, f);
    fclose(f);
}

TEST(universal_newlines)
{
    char *s;
    size_t n;
    write_file(tmp("nl.txt"), "a\r\nb\rc\n\r\n\r");
    CHECK_EQ_INT(llmq_read_text(tmp("nl.txt"), 0, &s, &n, NULL), 0);
    CHECK(n == 8 && !memcmp(s, "a\nb\nc\n\n\n", 8));
    free(s);
    CHECK_EQ_INT(llmq_read_text(tmp("nl.txt"), 1, &s, &n, NULL), 0);
    CHECK_EQ_INT(n, 10);
    free(s);
}

TEST(atomic_output)
{
    llmq_out o;
    llmq_err e = { 0, "" };
    const char *p = tmp("out.bin");
    write_file(p, "old");
    CHECK_EQ_INT(llmq_out_open(&o, p, &e), 0);
    llmq_out_write(&o, "new!", 4, &e);
    llmq_out_abort(&o);
    char *s;
    size_t n;
    CHECK_EQ_INT(llmq_read_file(p, &s, &n, &e), 0);
    CHECK(n == 3 && !memcmp(s, "old", 3));          /* an aborted write leaves the old file */
    free(s);
    CHECK_EQ_INT(llmq_out_open(&o, p, &e), 0);
    llmq_out_write(&o, "new!", 4, &e);
    CHECK_EQ_INT(llmq_out_commit(&o, &e), 0);
    CHECK_EQ_INT(llmq_read_file(p, &s, &n, &e), 0);
    CHECK(n == 4 && !memcmp(s, "new!", 4));
    free(s);
    CHECK_EQ_INT(llmq_out_open(&o, "/nonexistent-dir/x", &e), LLMQ_EIO);
    CHECK(strstr(e.msg, "/nonexistent-dir/x") != NULL);
}

TEST(scheme_names)
{
    const char *ok[] = { "int8", "int4-g128-asym", "int4-g32-sym", "int4-g64-asym", "mxint8", "mxint8-ceil" };
    for (size_t i = 0; i < 6; i++) {
        llmq_qscheme s;
        char back[32];
        CHECK_EQ_INT(llmq_qscheme_parse(ok[i], &s), 0);
        llmq_qscheme_name(&s, back, sizeof back);
        CHECK_MSG(!strcmp(back, ok[i]), "%s -> %s", ok[i], back);
    }
    const char *bad[] = { "", "int4", "int4-g48-asym", "int4-g0128-asym", "int4-g128-asymx", "int4-g+128-sym", "INT8" };
    for (size_t i = 0; i < 7; i++) {
        llmq_qscheme s;
        CHECK_MSG(llmq_qscheme_parse(bad[i], &s) == -1, "%s", bad[i]);
    }
}

TEST(calibration_windows_deterministic)
{
    /* a toy byte-level tokenizer: every byte its own token */
    char json[8192];
    int k = snprintf(json, sizeof json, "{\"model\": {\"type\": \"BPE\", \"vocab\": {");
    for (int b = 33; b < 127; b++) {
        if (b == '"' || b == '\\') continue;
        k += snprintf(json + k, sizeof json - (size_t)k, "%s\"%c\": %d", b == 33 ? "" : ", ", b, b);
    }
    k += snprintf(json + k, sizeof json - (size_t)k, "}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}}");
    llmq_tok *t = NULL;
    llmq_err e = { 0, "" };
    if (llmq_tok_load_mem(&t, json, (size_t)k, "toy", &e)) fprintf(stderr, "  toy tokenizer: %s\n", e.msg);
    CHECK(t != NULL);
    if (!t) return;
    write_file(tmp("a.txt"), "abcdefghijklmnopqrstuvwxyz");
    write_file(tmp("b.txt"), "0123456789");
    const char *paths[] = { tmpdir };
    llmq_calib_set s1, s2, s3;
    CHECK_EQ_INT(llmq_calib_sample(t, paths, 1, 20, 8, 7, &s1, &e), 0);
    CHECK_EQ_INT(llmq_calib_sample(t, paths, 1, 20, 8, 7, &s2, &e), 0);
    CHECK_EQ_INT(llmq_calib_sample(t, paths, 1, 20, 8, 8, &s3, &e), 0);
    CHECK(!memcmp(s1.tokens, s2.tokens, 20 * 8 * sizeof(int32_t)));
    CHECK(memcmp(s1.tokens, s3.tokens, 20 * 8 * sizeof(int32_t)) != 0);
    CHECK(!strcmp(s1.text_digest, s3.text_digest));
    /* every window is a contiguous run of one file */
    for (int w = 0; w < 20; w++)
        for (int i = 1; i < 8; i++) CHECK_EQ_INT(s1.tokens[w * 8 + i], s1.tokens[w * 8 + i - 1] + 1);
    llmq_calib_release(&s1);
    llmq_calib_release(&s2);
    llmq_calib_release(&s3);
    CHECK_EQ_INT(llmq_calib_sample(t, paths, 1, 4, 100, 7, &s1, &e), LLMQ_EUSAGE);
    const char *missing[] = { "/nonexistent/file.txt" };
    CHECK_EQ_INT(llmq_calib_sample(t, missing, 1, 4, 4, 7, &s1, &e), LLMQ_EIO);
    llmq_tok_free(t);
    unlink(tmp("a.txt"));
    unlink(tmp("b.txt"));
    unlink(tmp("nl.txt"));
    unlink(tmp("out.bin"));
    rmdir(tmpdir);
}

TEST_MAIN()
