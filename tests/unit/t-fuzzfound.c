/*
 * t-fuzzfound.c - regression tests for what the fuzz targets (tests/fuzz/)
 * found, each input inline as the fuzzer gave it or reduced by hand.
 * Several are undefined behaviour that only the ASan+UBSan build of this
 * file (build-san/tests/t-fuzzfound) reports; the plain build checks the
 * results.
 */
#include "tests/test.h"
#include "formats/tokenizer.h"
#include "lib/base/llmq-int.h"

static llmq_tok *load(const char *json)
{
    llmq_tok *t = NULL;
    llmq_err err = { 0 };
    if (llmq_tok_load_mem(&t, json, strlen(json), "t-fuzzfound", &err)) {
        fprintf(stderr, "  load: %s\n", err.msg);
        return NULL;
    }
    return t;
}

static int decodes_to(const llmq_tok *t, const int32_t *ids, size_t n, int skip, const char *want)
{
    char *out = NULL;
    size_t ol = 99;
    llmq_err err = { 0 };
    if (llmq_tok_decode(t, ids, n, skip, &out, &ol, &err)) { fprintf(stderr, "  decode: %s\n", err.msg); return 0; }
    int ok = out && ol == strlen(want) && !strcmp(out, want);
    if (!ok) fprintf(stderr, "  decode = \"%s\" (%zu bytes), expected \"%s\"\n", out ? out : "(null)", ol, want);
    free(out);
    return ok;
}

/* A SentencePiece-style tokenizer (Llama 2's decoder chain: Replace,
 * ByteFallback, Fuse, Strip) with an empty-text vocabulary entry. */
static const char sp_fuse[] =
    "{\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true},{\"id\":1,\"content\":\"<s>\",\"special\":true},"
    "{\"id\":2,\"content\":\"</s>\",\"special\":true}],\"normalizer\":null,\"pre_tokenizer\":null,"
    "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\xe2\x96\x81\"},"
    "\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]},"
    "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"fuse_unk\":true,\"byte_fallback\":true,"
    "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2,\"a\":3,\"\xe2\x96\x81\":4},\"merges\":[]}}";

/* fuzz-tokenize, the empty input: Fuse joins zero pieces into one empty
 * piece whose text pointer is NULL, and the final join did NULL + 0
 * (UBSan: applying zero offset to null pointer).  Every way no text
 * reaches the end of the decoder chain: no ids, only special ids skipped,
 * and a piece the Strip step empties. */
TEST(decode_no_text_through_fuse)
{
    llmq_tok *t = load(sp_fuse);
    CHECK(t != NULL);
    if (!t) return;
    static const int32_t none[1] = { 0 }, specials[] = { 1, 2, 1 }, space[] = { 4 }, a[] = { 4, 3 };
    CHECK(decodes_to(t, none, 0, 0, ""));
    CHECK(decodes_to(t, none, 0, 1, ""));
    CHECK(decodes_to(t, specials, 3, 1, ""));
    CHECK(decodes_to(t, space, 1, 0, ""));
    CHECK(decodes_to(t, a, 2, 0, "a"));
    CHECK(decodes_to(t, specials, 3, 0, "<s></s><s>"));
    llmq_tok_free(t);
}

TEST_MAIN()
