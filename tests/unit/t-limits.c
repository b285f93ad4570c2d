/* t-limits.c - resource bounds on hostile inputs: each bound refuses a file
 * just over it with one line naming the file and the bound, and lets one
 * just under it through (to load, or to fail later for another reason). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include "tests/test.h"
#include "formats/json.h"
#include "formats/safetensors.h"
#include "formats/tokenizer.h"
#include "calib/stats.h"
#include "lib/base/fileio.h"

/* LLMQ_SLOW_SKIP=1 (the ASan run): skip the cases that build a tree of
 * millions of values right at a bound. */
static int slow_skip(void)
{
    const char *s = getenv("LLMQ_SLOW_SKIP");
    return s && *s == '1';
}

static char *nested(int depth)
{
    char *s = malloc(2 * (size_t)depth + 2);
    for (int i = 0; i < depth; i++) { s[i] = '['; s[depth + 1 + i] = ']'; }
    s[depth] = '1';
    s[2 * depth + 1] = 0;
    return s;
}

/* "[0,0,...]" holding n values in all (the array and n - 1 zeros) */
static char *flat(size_t n, size_t *len)
{
    size_t k = n - 1;
    char *s = malloc(2 * k + 2);
    s[0] = '[';
    for (size_t i = 0; i < k; i++) { s[1 + 2 * i] = '0'; s[2 + 2 * i] = ','; }
    s[2 * k] = ']';
    s[2 * k + 1] = 0;
    *len = 2 * k + 1;
    return s;
}

TEST(json_depth)
{
    llmq_err e = { 0, "" };
    cJSON *j;
    char *s = nested(LLMQ_JSON_MAX_DEPTH);
    CHECK_EQ_INT(llmq_json_parse(s, strlen(s), "deep.json", &j, &e), 0);
    cJSON_Delete(j);
    free(s);
    s = nested(LLMQ_JSON_MAX_DEPTH + 1);
    CHECK_EQ_INT(llmq_json_parse(s, strlen(s), "deep.json", &j, &e), LLMQ_EFORMAT);
    CHECK(strstr(e.msg, "deep.json: JSON nested deeper than 64 levels") == e.msg && strstr(e.msg, "llmq's limit"));
    free(s);
    /* brackets inside strings are text, not nesting */
    CHECK_EQ_INT(llmq_json_bounds("[\"[[[[\\\"[[\"]", 12, "s.json", 2, 10, &e), 0);
    CHECK_EQ_INT(llmq_json_bounds("[[[]]]", 6, "s.json", 2, 10, &e), LLMQ_EFORMAT);
}

TEST(json_values)
{
    llmq_err e = { 0, "" };
    /* the count: members and elements at any depth, plus the top value */
    CHECK_EQ_INT(llmq_json_bounds("{\"a\":[1,2,{}],\"b\":[]}", 21, "c.json", 8, 6, &e), 0);
    CHECK_EQ_INT(llmq_json_bounds("{\"a\":[1,2,{}],\"b\":[]}", 21, "c.json", 8, 5, &e), LLMQ_EFORMAT);
    CHECK(strstr(e.msg, "c.json: more than 5 JSON values") == e.msg);
    CHECK_EQ_INT(llmq_json_bounds("[ ]", 3, "c.json", 8, 1, &e), 0);
    CHECK_EQ_INT(llmq_json_bounds("[\"a,b,c\"]", 9, "c.json", 8, 2, &e), 0);
    size_t len;
    char *s = flat(LLMQ_JSON_MAX_VALUES + 1, &len);
    cJSON *j;
    CHECK_EQ_INT(llmq_json_parse(s, len, "big.json", &j, &e), LLMQ_EFORMAT);
    CHECK(strstr(e.msg, "big.json: more than 8388608 JSON values (llmq's limit)") == e.msg);
    free(s);
    s = flat(LLMQ_JSON_MAX_VALUES, &len);
    CHECK_EQ_INT(llmq_json_bounds(s, len, "big.json", LLMQ_JSON_MAX_DEPTH, LLMQ_JSON_MAX_VALUES, &e), 0);
    if (!slow_skip()) {
        CHECK_EQ_INT(llmq_json_parse(s, len, "big.json", &j, &e), 0);
        CHECK_EQ_INT(cJSON_GetArraySize(j), LLMQ_JSON_MAX_VALUES - 1);
        cJSON_Delete(j);
    }
    free(s);
}

/* A safetensors image of n empty F32 tensors. */
static uint8_t *empty_tensors(size_t n, size_t *len)
{
    size_t cap = 64 + n * 64, k = 8;
    uint8_t *b = malloc(cap);
    k += (size_t)sprintf((char *)b + k, "{");
    for (size_t i = 0; i < n; i++)
        k += (size_t)sprintf((char *)b + k, "%s\"t%zu\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}",
                             i ? "," : "", i);
    k += (size_t)sprintf((char *)b + k, "}");
    llmq_put_le64(b, k - 8);
    *len = k;
    return b;
}

TEST(safetensors_tensor_count)
{
    llmq_err e = { 0, "" };
    llmq_st_file f;
    size_t len;
    uint8_t *b = empty_tensors(LLMQ_ST_MAX_TENSORS + 1, &len);
    CHECK_EQ_INT(llmq_st_parse(&f, b, len, "many.safetensors", &e), LLMQ_EFORMAT);
    CHECK(strstr(e.msg, "many.safetensors: header lists 262145 tensors, more than 262144 (llmq's limit)") == e.msg);
    free(b);
    if (slow_skip()) return;
    b = empty_tensors(LLMQ_ST_MAX_TENSORS, &len);
    CHECK_EQ_INT(llmq_st_parse(&f, b, len, "many.safetensors", &e), 0);
    CHECK_EQ_INT(f.n_tensors, LLMQ_ST_MAX_TENSORS);
    llmq_st_close(&f);
    free(b);
}

TEST(safetensors_header_values)
{
    /* a header far under 100 MiB whose tree would still be huge: refused
     * by the value count before cJSON allocates */
    llmq_err e = { 0, "" };
    size_t jl;
    char *j = flat(LLMQ_JSON_MAX_VALUES + 1, &jl);
    size_t len = 8 + 6 + jl + 1;
    uint8_t *b = malloc(len);
    llmq_put_le64(b, len - 8);
    memcpy(b + 8, "{\"a\":", 5);
    memcpy(b + 13, j, jl);
    memcpy(b + 13 + jl, "} ", 2);
    llmq_st_file f;
    CHECK_EQ_INT(llmq_st_parse(&f, b, len, "wide.safetensors", &e), LLMQ_EFORMAT);
    CHECK(strstr(e.msg, "wide.safetensors: more than 8388608 JSON values (llmq's limit)") == e.msg);
    free(b); free(j);
}

/* The tokenizer's largest token id, 2^24 - 1 (TOK_MAX_ID in tokenizer.c):
 * it sizes the id tables, so a bigger one is refused before they are made. */
TEST(tokenizer_max_id)
{
    llmq_err e = { 0, "" };
    llmq_tok *t = NULL;
    const char *under = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":16777215},\"merges\":[]}}";
    const char *over = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":16777216},\"merges\":[]}}";
    CHECK_EQ_INT(llmq_tok_load_mem(&t, under, strlen(under), "tok.json", &e), 0);
    llmq_tok_free(t);
    t = NULL;
    CHECK_EQ_INT(llmq_tok_load_mem(&t, over, strlen(over), "tok.json", &e), LLMQ_EFORMAT);
    CHECK(strstr(e.msg, "tok.json") == e.msg && strstr(e.msg, "16777215"));
    llmq_tok_free(t);
}

/* A model's JSON file is read whole up to LLMQ_READ_FILE_MAX bytes. */
TEST(read_file_max)
{
    llmq_err e = { 0, "" };
    char path[] = "/tmp/llmq-limits-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    CHECK_EQ_INT(ftruncate(fd, (off_t)LLMQ_READ_FILE_MAX + 1), 0);
    char *s = NULL;
    size_t n;
    CHECK_EQ_INT(llmq_read_file(path, &s, &n, &e), LLMQ_EIO);
    CHECK(strstr(e.msg, path) == e.msg && strstr(e.msg, "more than the 268435456 llmq reads into memory"));
    if (!slow_skip()) {
        CHECK_EQ_INT(ftruncate(fd, (off_t)LLMQ_READ_FILE_MAX), 0);
        CHECK_EQ_INT(llmq_read_file(path, &s, &n, &e), 0);
        CHECK(n == LLMQ_READ_FILE_MAX);
        free(s);
    }
    close(fd);
    unlink(path);
}

/* A statistics file with these counts and no tensors; the load's message. */
static int stats_with(const char *layers, const char *keep, llmq_err *e)
{
    char path[] = "/tmp/llmq-limits-stats-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    close(fd);
    llmq_st_writer *w = llmq_st_writer_new(e);
    const char *kv[][2] = { { "format", "llmq-stats" }, { "llmq.stats_version", LLMQ_STATS_VERSION },
                            { "n_layers", layers }, { "samples", "1" }, { "seqlen", "2" }, { "keep", keep },
                            { "tokens", "2" }, { "seed", "0" } };
    int rc = 0;
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(kv) && !rc; i++) rc = llmq_st_writer_meta(w, kv[i][0], kv[i][1], e);
    if (!rc) rc = llmq_st_writer_finish(w, path, e);
    llmq_st_writer_free(w);
    llmq_stats s;
    if (!rc) rc = llmq_stats_load(&s, path, e);
    if (!rc) llmq_stats_release(&s);
    unlink(path);
    return rc;
}

TEST(stats_counts)
{
    llmq_err e = { 0, "" };
    CHECK_EQ_INT(stats_with("100001", "0", &e), LLMQ_EFORMAT);
    CHECK(strstr(e.msg, "'n_layers' = '100001' is not an integer in 1..100000"));
    /* just under: past the bound, refused for the missing tensors */
    CHECK_EQ_INT(stats_with("100000", "0", &e), LLMQ_EFORMAT);
    CHECK(strstr(e.msg, "n_layers") == NULL && strstr(e.msg, "is missing"));
    CHECK_EQ_INT(stats_with("1", "16777217", &e), LLMQ_EFORMAT);
    CHECK(strstr(e.msg, "'keep' = '16777217' is not an integer in 0..16777216"));
    CHECK_EQ_INT(stats_with("1", "16777216", &e), LLMQ_EFORMAT);
    CHECK(strstr(e.msg, "keep") == NULL && strstr(e.msg, "is missing"));
}

TEST_MAIN()
