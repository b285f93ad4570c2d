/*
 * regex.c - tokenizer.json regular expressions on Oniguruma, the engine
 * Hugging Face tokenizers uses, so lookahead, Unicode properties, (?i:...)
 * and leftmost-first alternation behave exactly as there.
 */
#include <pthread.h>
#include <oniguruma.h>
#include "../lib/base/llmq-int.h"
#include "regex.h"

struct llmq_re {
    regex_t *re;
};

static pthread_once_t re_once = PTHREAD_ONCE_INIT;
static int re_init_rc = -1;

/* Oniguruma's global set-up: one encoding, and the retry limits that bound
 * a search.  Run once; later calls see its result. */
static void re_init(void)
{
    OnigEncoding enc[1] = { ONIG_ENCODING_UTF8 };
    re_init_rc = onig_initialize(enc, 1);
    if (re_init_rc != ONIG_NORMAL) return;
    onig_set_retry_limit_in_match(LLMQ_RE_RETRY_LIMIT);
    onig_set_retry_limit_in_search(LLMQ_RE_RETRY_LIMIT);
}

int llmq_re_new(llmq_re **out, const char *pat, size_t len, llmq_re_syntax syntax, const char *where,
                llmq_err *err)
{
    char q[LLMQ_QUOTE_SIZE];
    *out = NULL;
    pthread_once(&re_once, re_init);
    if (re_init_rc != ONIG_NORMAL)
        return llmq_errorf(err, LLMQ_EINTERNAL, "%s: Oniguruma failed to initialize (%d)", where, re_init_rc);
    if (len > LLMQ_RE_MAX_PATTERN)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: a %zu-byte pattern is longer than the %d bytes "
                           "allowed", where, len, LLMQ_RE_MAX_PATTERN);
    llmq_re *r = calloc(1, sizeof *r);
    if (!r) return llmq_errorf(err, LLMQ_ENOMEM, "out of memory");
    OnigErrorInfo einfo;
    const UChar *p = (const UChar *)pat;
    /* ASIS: the pattern is plain text, as HF's regex::escape(s) makes it */
    OnigSyntaxType *syn = syntax == LLMQ_RE_LITERAL ? ONIG_SYNTAX_ASIS
                        : syntax == LLMQ_RE_ERE ? ONIG_SYNTAX_POSIX_EXTENDED : ONIG_SYNTAX_DEFAULT;
    int rc = onig_new(&r->re, p, p + len, ONIG_OPTION_NONE, ONIG_ENCODING_UTF8, syn, &einfo);
    if (rc != ONIG_NORMAL) {
        UChar why[ONIG_MAX_ERROR_MESSAGE_LEN];
        onig_error_code_to_str(why, rc, &einfo);
        free(r);
        if (rc == ONIGERR_MEMORY) return llmq_errorf(err, LLMQ_ENOMEM, "out of memory");
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: regex '%s' is not valid for Oniguruma: %s", where,
                           llmq_quote(q, pat), (const char *)why);
    }
    *out = r;
    return LLMQ_OK;
}

int llmq_re_search(const llmq_re *re, const char *s, size_t n)
{
    llmq_re_match *m = NULL;
    size_t nm = 0, cap = 0;
    int rc = llmq_re_find_all(re, (const uint8_t *)s, n, &m, &nm, &cap);
    free(m);
    return rc ? rc : nm > 0;
}

void llmq_re_free(llmq_re *re)
{
    if (!re) return;
    if (re->re) onig_free(re->re);
    free(re);
}

/* Length of the valid UTF-8 character at s[i] (strict, as Rust's str:
 * no overlongs, surrogates or code points past U+10FFFF), 0 if invalid. */
static size_t utf8_len(const uint8_t *s, size_t n, size_t i)
{
    uint8_t b = s[i];
    if (b < 0x80) return 1;
    size_t l;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) l = 2;
    else if (b >= 0xE0 && b <= 0xEF) { l = 3; if (b == 0xE0) lo = 0xA0; if (b == 0xED) hi = 0x9F; }
    else if (b >= 0xF0 && b <= 0xF4) { l = 4; if (b == 0xF0) lo = 0x90; if (b == 0xF4) hi = 0x8F; }
    else return 0;
    if (n - i < l) return 0;
    if (s[i + 1] < lo || s[i + 1] > hi) return 0;
    for (size_t k = 2; k < l; k++)
        if ((s[i + k] & 0xC0) != 0x80) return 0;
    return l;
}

static int push_match(llmq_re_match **m, size_t *nm, size_t *cap, size_t b, size_t e)
{
    if (*nm == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        if (c > SIZE_MAX / sizeof **m) return -1;
        llmq_re_match *nn = realloc(*m, c * sizeof *nn);
        if (!nn) return -1;
        *m = nn; *cap = c;
    }
    (*m)[(*nm)++] = (llmq_re_match){ b, e };
    return 0;
}

int llmq_re_find_all(const llmq_re *re, const uint8_t *s, size_t n, llmq_re_match **m, size_t *nm,
                     size_t *cap)
{
    *nm = 0;
    size_t i = 0, l;
    while (i < n && (l = utf8_len(s, n, i))) i += l;
    /* Invalid bytes: match a copy where each is U+FFFD, map offsets back. */
    uint8_t *copy = NULL;
    size_t *map = NULL, len = n;
    const uint8_t *subj = s;
    if (i < n) {
        if (n > (SIZE_MAX - 1) / 3 / sizeof *map) return -1;
        copy = malloc(3 * n + 1);
        map = malloc((3 * n + 1) * sizeof *map);
        if (!copy || !map) { free(copy); free(map); return -1; }
        len = 0;
        for (size_t j = 0; j < n;) {
            l = utf8_len(s, n, j);
            if (l) {
                for (size_t k = 0; k < l; k++) { copy[len] = s[j + k]; map[len++] = j; }
                j += l;
            } else {
                static const uint8_t fffd[3] = { 0xEF, 0xBF, 0xBD };
                for (size_t k = 0; k < 3; k++) { copy[len] = fffd[k]; map[len++] = j; }
                j++;
            }
        }
        map[len] = n;
        subj = copy;
    }
    OnigRegion *rg = onig_region_new();
    int rc = rg ? 0 : -1;
    size_t last_end = 0, last_match_end = 0;
    int have_last = 0;
    while (!rc && last_end <= len) {
        int r = onig_search(re->re, subj, subj + len, subj + last_end, subj + len, rg, ONIG_OPTION_NONE);
        if (r == ONIG_MISMATCH) break;
        if (r < 0) { rc = r == ONIGERR_MEMORY ? -1 : -5; break; }
        size_t b = (size_t)rg->beg[0], e = (size_t)rg->end[0];
        /* onig crate FindMatches: no empty match right after the last one */
        if (b == e && have_last && last_match_end == e) {
            last_end += last_end < len ? utf8_len(subj, len, last_end) : 1;
            continue;
        }
        last_end = e; last_match_end = e; have_last = 1;
        rc = push_match(m, nm, cap, map ? map[b] : b, map ? map[e] : e);
    }
    if (rg) onig_region_free(rg, 1);
    free(copy);
    free(map);
    return rc;
}
