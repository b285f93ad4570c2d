/* t-base.c - the internal base: float conversions, sha256, pool, text
 * reading, atomic outputs, calibration windows, scheme names. */
#include <sys/stat.h>
#include <unistd.h>
#include "tests/test.h"
#include "lib/base/llmq-int.h"
#include "lib/base/fileio.h"
#include "lib/base/pool.h"
#include "lib/base/sha256.h"
#include "formats/packed.h"
#include "lib/model.h"
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

/* RssFile of this process in KiB (Linux), or -1. */
static long rss_file_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "RssFile:", 8)) v = strtol(line + 8, NULL, 10);
    if (f) fclose(f);
    return v;
}

/* llmq_map_release takes the whole pages of a range out of the resident
 * set (RssFile falls by the range) and the bytes read back unchanged;
 * ranges outside the map, empty ones and a map that is not a file mapping
 * are ignored. */
TEST(map_release)
{
    llmq_err e = { 0, "" };
    const char *p = tmp("map.bin");
    long page = sysconf(_SC_PAGESIZE);
    size_t n = (size_t)32 << 20;
    char *buf = malloc(n);
    for (size_t i = 0; i < n; i++) buf[i] = (char)(i * 131 + 7);
    FILE *f = fopen(p, "wb");
    CHECK(f && fwrite(buf, 1, n, f) == n);
    if (f) fclose(f);
    llmq_map m;
    CHECK_EQ_INT(llmq_map_open(&m, p, &e), 0);
    volatile char sink = 0;
    for (size_t i = 0; i < n; i += (size_t)page) sink ^= ((const char *)m.data)[i];   /* all resident */
    long before = rss_file_kib();
    /* from half a page in to half a page before the end: all but two pages go */
    llmq_map_release(&m, (const char *)m.data + page / 2, (uint64_t)(n - (size_t)page));
    long after = rss_file_kib();
    CHECK_MSG(before < 0 || before - after >= 24 * 1024, "RssFile %ld -> %ld KiB", before, after);
    CHECK(!memcmp(m.data, buf, n));                      /* read back, unchanged */
    llmq_map_release(&m, (const char *)m.data + n - 1, 2);   /* past the end: ignored */
    llmq_map_release(&m, buf, 16);                       /* not in the map: ignored */
    llmq_map_release(&m, m.data, 0);
    CHECK(!memcmp(m.data, buf, n));
    llmq_map_close(&m);
    llmq_map heap = { (const uint8_t *)buf, 3 * (uint64_t)page, 0 };   /* not a file mapping: a no-op */
    llmq_map_release(&heap, buf, 3 * (uint64_t)page);
    CHECK((unsigned char)buf[page + 5] == (unsigned char)((size_t)(page + 5) * 131 + 7));
    (void)sink;
    free(buf);
    unlink(p);
}

/* llmq_out_open that must fail; a wrong success is undone, never committed. */
static int out_refused(llmq_out *o, const char *path, llmq_err *e)
{
    int rc = llmq_out_open(o, path, e);
    if (rc == 0) llmq_out_abort(o);
    return rc;
}

/* Model files must be regular files; text streams are capped; an output
 * never replaces a device, FIFO or symbolic link. */
TEST(special_files)
{
    llmq_err e = { 0, "" };
    char *s;
    size_t n;
    llmq_map m;
    char fifo[256], link[256], target[256], dangle[256], dir[256];
    snprintf(fifo, sizeof fifo, "%s", tmp("fifo"));
    snprintf(link, sizeof link, "%s", tmp("link.bin"));
    snprintf(target, sizeof target, "%s", tmp("target.bin"));
    snprintf(dangle, sizeof dangle, "%s", tmp("dangle.bin"));
    snprintf(dir, sizeof dir, "%s", tmp("outdir"));
    CHECK_EQ_INT(mkfifo(fifo, 0600), 0);
    /* a FIFO or a device as a model file: refused at once, not waited on or read forever */
    CHECK_EQ_INT(llmq_map_open(&m, fifo, &e), LLMQ_EIO);
    CHECK(strstr(e.msg, "FIFO") && strstr(e.msg, "not a regular file"));
    CHECK_EQ_INT(llmq_read_file(fifo, &s, &n, &e), LLMQ_EIO);
    CHECK_EQ_INT(llmq_read_file("/dev/zero", &s, &n, &e), LLMQ_EIO);
    CHECK(strstr(e.msg, "/dev/zero: is a character device") != NULL);
    CHECK_EQ_INT(llmq_map_open(&m, "/dev/zero", &e), LLMQ_EIO);
    CHECK_EQ_INT(llmq_read_file(tmpdir, &s, &n, &e), LLMQ_EIO);
    CHECK(strstr(e.msg, "is a directory") != NULL);
    /* an empty regular file maps to an empty view */
    write_file(target, "");
    CHECK_EQ_INT(llmq_map_open(&m, target, &e), 0);
    CHECK(m.size == 0 && m.data != NULL);
    llmq_map_close(&m);
    /* streams: a device is read, up to the cap */
    CHECK_EQ_INT(llmq_read_stream("/dev/zero", 100000, &s, &n, &e), LLMQ_EIO);
    CHECK(strstr(e.msg, "more than 100000 bytes") != NULL);
    CHECK_EQ_INT(llmq_read_stream("/dev/zero", 10, &s, &n, &e), LLMQ_EIO);
    CHECK_EQ_INT(llmq_read_stream("/dev/null", 10, &s, &n, &e), 0);
    CHECK(n == 0 && s[0] == 0);
    free(s);
    write_file(target, "0123456789");
    CHECK_EQ_INT(llmq_read_stream(target, 10, &s, &n, &e), 0);
    CHECK(n == 10 && !strcmp(s, "0123456789"));
    free(s);
    CHECK_EQ_INT(llmq_read_stream(target, 9, &s, &n, &e), LLMQ_EIO);
    CHECK_EQ_INT(llmq_read_stream(tmpdir, 10, &s, &n, &e), LLMQ_EIO);
    /* outputs: a FIFO, a device, a directory are refused and left alone */
    llmq_out o;
    CHECK_EQ_INT(out_refused(&o, fifo, &e), LLMQ_EUSAGE);
    CHECK(strstr(e.msg, "not a regular file; llmq writes outputs atomically") != NULL);
    struct stat st;
    CHECK(lstat(fifo, &st) == 0 && S_ISFIFO(st.st_mode));
    CHECK_EQ_INT(out_refused(&o, "/dev/null", &e), LLMQ_EUSAGE);
    CHECK(lstat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode));
    CHECK_EQ_INT(out_refused(&o, tmpdir, &e), LLMQ_EUSAGE);
    /* a symbolic link: its target is replaced, the link stays */
    CHECK_EQ_INT(symlink("target.bin", link), 0);
    CHECK_EQ_INT(llmq_out_open(&o, link, &e), 0);
    llmq_out_write(&o, "new!", 4, &e);
    CHECK_EQ_INT(llmq_out_commit(&o, &e), 0);
    CHECK(lstat(link, &st) == 0 && S_ISLNK(st.st_mode));
    CHECK_EQ_INT(llmq_read_file(target, &s, &n, &e), 0);
    CHECK(n == 4 && !memcmp(s, "new!", 4));
    free(s);
    /* a dangling link is refused and nothing is created */
    CHECK_EQ_INT(symlink("nowhere.bin", dangle), 0);
    CHECK_EQ_INT(llmq_out_open(&o, dangle, &e), LLMQ_EUSAGE);
    CHECK(strstr(e.msg, "dangling") != NULL);
    CHECK(!llmq_exists(tmp("nowhere.bin")));
    /* output directories: a file or FIFO is refused; a link to a directory is followed */
    llmq_outdir d;
    CHECK_EQ_INT(llmq_outdir_open(&d, fifo, &e), LLMQ_EUSAGE);
    CHECK_EQ_INT(llmq_outdir_open(&d, target, &e), LLMQ_EUSAGE);
    CHECK_EQ_INT(mkdir(dir, 0755), 0);
    unlink(link);
    CHECK_EQ_INT(symlink("outdir", link), 0);
    CHECK_EQ_INT(llmq_outdir_open(&d, link, &e), 0);
    char *f = llmq_outdir_file(&d, "x.txt", &e);
    write_file(f, "x");
    free(f);
    CHECK_EQ_INT(llmq_outdir_commit(&d, &e), 0);
    CHECK(lstat(link, &st) == 0 && S_ISLNK(st.st_mode));
    CHECK(llmq_exists(tmp("outdir/x.txt")));
    unlink(tmp("outdir/x.txt"));
    rmdir(dir);
    unlink(link);
    unlink(dangle);
    unlink(target);
    unlink(fifo);
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
    const char *bad[] = { "", "int4", "int4-g48-asym", "int4-g0128-asym", "int4-g128-asymx", "int4-g+128-sym", "INT8",
                          "int4-g4294967424-asym", "int04-g128-asym", "int4-g128-asym ", "int3-g128-sy", "int5-g128-sym" };
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(bad); i++) {
        llmq_qscheme s;
        CHECK_MSG(llmq_qscheme_parse(bad[i], &s) == -1, "%s", bad[i]);
    }
}

TEST(layer_names)
{
    const char *rest = NULL;
    CHECK_EQ_INT(llmq_layer_of("model.layers.0.mlp.up_proj", 6, &rest), 0);
    CHECK(rest && !strcmp(rest, "mlp.up_proj"));
    CHECK_EQ_INT(llmq_layer_of("model.layers.5.x", 6, &rest), 5);
    CHECK_EQ_INT(llmq_layer_of("model.layers.10.", 11, &rest), 10);
    CHECK(!strcmp(rest, ""));
    /* out of range (also past int), signs, leading zeros, spaces, no dot */
    const char *bad[] = { "model.layers.6.x", "model.layers.4294967296.x", "model.layers.99999999999999999999999.x",
                          "model.layers.-1.x", "model.layers.+1.x", "model.layers.01.x", "model.layers.00.x",
                          "model.layers. 1.x", "model.layers.1", "model.layers..x", "model.layer.1.x", "lm_head", "" };
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(bad); i++) CHECK_MSG(llmq_layer_of(bad[i], 6, &rest) == -1, "%s", bad[i]);
    CHECK_EQ_INT(llmq_layer_of("model.layers.0.x", 0, &rest), -1);
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
