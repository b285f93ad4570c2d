/*
 * data.h - calibration windows drawn from text.
 *
 * Sources are text files, or directories whose regular files (sorted by
 * name, hidden files skipped) are all used.  Each file is read with
 * universal newlines and tokenized on its own without special tokens.
 * Window i (i = 0..samples-1) is drawn with a splitmix64 stream seeded by
 * `seed`: a file with probability proportional to its usable token count,
 * then a start offset uniform in [0, tokens - seqlen].  The same sources,
 * tokenizer, samples, seqlen and seed always give the same windows.
 */
#ifndef LLMQ_CALIB_DATA_H
#define LLMQ_CALIB_DATA_H

#include "../lib/base/llmq-int.h"
#include "../formats/tokenizer.h"

typedef struct {
    int32_t *tokens;     /* (samples, seqlen) */
    int samples, seqlen;
    char text_digest[65];/* SHA-256 hex over every source file's bytes after newline
                            normalisation, in order, each preceded by its byte count */
    int64_t text_tokens; /* tokens in all sources */
    int n_files;
} llmq_calib_set;

/* Draw samples windows of seqlen tokens from paths[0..n_paths).  Files
 * shorter than seqlen + 1 tokens are not drawn from; no file long enough is
 * LLMQ_EUSAGE.  Errors name the file. */
int llmq_calib_sample(const llmq_tok *tok, const char *const *paths, int n_paths, int samples, int seqlen,
                      uint64_t seed, llmq_calib_set *out, llmq_err *err);
void llmq_calib_release(llmq_calib_set *s);

/* splitmix64: the project's deterministic random stream. */
static inline uint64_t llmq_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* Uniform in [0, n) without modulo bias worth noting for n << 2^64. */
static inline uint64_t llmq_rand_below(uint64_t *state, uint64_t n)
{
    return n ? (uint64_t)(((unsigned __int128)llmq_splitmix64(state) * n) >> 64) : 0;
}

#endif
