/*
 * regex.h - the regular expressions of tokenizer.json (Split pre-tokenizer
 * and Replace normalizer patterns), run by Oniguruma as Hugging Face
 * tokenizers runs them (its onig crate: default syntax, UTF-8, no options).
 *
 * A compiled llmq_re is immutable: several threads may search one at once.
 */
#ifndef LLMQ_REGEX_H
#define LLMQ_REGEX_H

#include <stddef.h>
#include <stdint.h>
#include "../lib/base/llmq.h"

typedef struct llmq_re llmq_re;

/* A match s[start..end) (end == start for an empty match). */
typedef struct { size_t start, end; } llmq_re_match;

/* Backtracking steps one search may take before it gives up (Oniguruma's
 * retry limit): a hostile pattern such as (a*)*b must not run for minutes. */
#define LLMQ_RE_RETRY_LIMIT 10000000UL
/* Longest pattern accepted, in bytes (real ones are under 300). */
#define LLMQ_RE_MAX_PATTERN 4096

/* How a pattern reads. */
typedef enum {
    LLMQ_RE_HF,        /* tokenizer.json {"Regex": ...}: Oniguruma's default syntax */
    LLMQ_RE_LITERAL,   /* tokenizer.json {"String": ...}: plain text, as HF's regex::escape(s) */
    LLMQ_RE_ERE        /* a POSIX extended regular expression (command-line options) */
} llmq_re_syntax;

/* Compile pat[0..len) into *out (free with llmq_re_free).  The error names
 * where (a file and a JSON field, or an option, for the message) and
 * Oniguruma's reason.
 * Errors: LLMQ_EUNSUPPORTED (Oniguruma refuses the pattern, or it is longer
 * than LLMQ_RE_MAX_PATTERN), LLMQ_ENOMEM. */
int llmq_re_new(llmq_re **out, const char *pat, size_t len, llmq_re_syntax syntax, const char *where,
                llmq_err *err);

/* 1 if re matches somewhere in s[0..n), 0 if not, -5 if the search gave up
 * (LLMQ_RE_RETRY_LIMIT), -1 out of memory. */
int llmq_re_search(const llmq_re *re, const char *s, size_t n);

void llmq_re_free(llmq_re *re);

/* The matches of re in s[0..n), left to right, as the onig crate's
 * find_iter gives them: each search starts where the last match ended (the
 * whole of s stays visible to look-behind), and an empty match right where
 * the last match ended is skipped by one character.  *m / *cap is a
 * growable array the caller owns (may start NULL / 0); *nm is set.
 * Bytes that are not valid UTF-8 (s need not be) are matched as U+FFFD,
 * one per byte, and offsets are those of s.
 * Returns 0, -1 out of memory, -5 the search passed LLMQ_RE_RETRY_LIMIT
 * (or Oniguruma failed otherwise). */
int llmq_re_find_all(const llmq_re *re, const uint8_t *s, size_t n, llmq_re_match **m, size_t *nm,
                     size_t *cap);

#endif
