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
#include "llmq.h"

typedef struct llmq_re llmq_re;

/* A match s[start..end) (end == start for an empty match). */
typedef struct { size_t start, end; } llmq_re_match;

/* Backtracking steps one search may take before it gives up (Oniguruma's
 * retry limit): a hostile pattern such as (a*)*b must not run for minutes. */
#define LLMQ_RE_RETRY_LIMIT 10000000UL
/* Longest pattern accepted, in bytes (real ones are under 300). */
#define LLMQ_RE_MAX_PATTERN 4096

/* Compile pat[0..len) into *out (free with llmq_re_free).  literal: the
 * pattern is a plain string (tokenizer.json's {"String": ...}), matched as
 * HF matches regex::escape(s).  The error names where (a file and a JSON
 * field, for the message) and Oniguruma's reason.
 * Errors: LLMQ_EUNSUPPORTED (Oniguruma refuses the pattern, or it is longer
 * than LLMQ_RE_MAX_PATTERN), LLMQ_ENOMEM. */
int llmq_re_new(llmq_re **out, const char *pat, size_t len, int literal, const char *where,
                llmq_err *err);

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
