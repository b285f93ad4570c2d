/*
 * tokenizer.c - Hugging Face tokenizer.json, BPE models, in C.
 *
 * Mirrors the HF tokenizers (Rust) pipeline for encode(add_special_tokens=
 * False):
 *   1. split the text on non-normalized added tokens (AddedVocabulary::
 *      extract_and_normalize, leftmost-longest like its Aho-Corasick);
 *   2. normalize each remaining piece (NFC, Prepend, Replace), then split
 *      it on normalized added tokens;
 *   3. pre-tokenize (ByteLevel, Split on any regex or string with any
 *      behaviour, Metaspace);
 *   4. BPE each pre-token: chars -> ids (byte fallback, unk), then merges by
 *      rank with the same heap as models/bpe/word.rs::merge_all, so ties and
 *      stale entries resolve exactly as HF does.
 * Regexes run on Oniguruma (formats/regex.c), the engine HF uses.  The three
 * patterns most checkpoints use (GPT-2, Llama-3, Qwen2) are also recognised
 * by their text and run as hand-written scanners that reproduce Oniguruma's
 * leftmost-first backtracking result faster; tests check the two agree.
 * Decoding runs the decoder chain (ByteLevel, Metaspace, Replace,
 * ByteFallback, Fuse, Strip) over token strings, like Tokenizer::decode.
 */
#define _GNU_SOURCE       /* memmem, qsort_r */
#include <math.h>
#include <stdio.h>
#include <cjson/cJSON.h>
#include "../lib/base/llmq-int.h"
#include "../lib/base/fileio.h"
#include "tokenizer.h"
#include "json.h"
#include "unicode.h"
#include "regex.h"

/* Ids above this are refused: a hostile id must not make us allocate GBs
 * (the largest real vocabularies are ~256k). */
#define TOK_MAX_ID (1 << 24)
/* A normalizer chain may make a piece of text at most this long: real ones
 * grow it at most 3x + 3 (Llama / Mistral: ' ' -> U+2581, a prepended
 * U+2581); chained Replaces could otherwise grow it exponentially. */
#define TOK_NORM_GROWTH 64
#define TOK_NORM_SLACK 4096
/* Pre-tokens longer than this are not cached (HF: MAX_LENGTH 256 too). */
#define TOK_CACHE_MAX_KEY 256
/* A code point that is not one: an invalid UTF-8 byte, carried as itself. */
#define CP_BAD 0x80000000u

/* ---------------------------------------------------------------- buffers */

typedef struct { uint8_t *b; size_t len, cap; } tbuf;
typedef struct { int32_t *v; size_t n, cap; } ivec;

static int tbuf_reserve(tbuf *s, size_t extra)
{
    if (s->b && s->cap - s->len >= extra) return 0;
    size_t need = s->len + extra, cap = s->cap ? s->cap : 64;
    if (need < s->len) return -1;
    while (cap < need) { if (cap > SIZE_MAX / 2) return -1; cap *= 2; }
    uint8_t *nb = realloc(s->b, cap);
    if (!nb) return -1;
    s->b = nb; s->cap = cap;
    return 0;
}

static int tbuf_add(tbuf *s, const void *p, size_t n)
{
    if (tbuf_reserve(s, n)) return -1;
    if (n) memcpy(s->b + s->len, p, n);
    s->len += n;
    return 0;
}

static int ivec_push(ivec *v, int32_t x)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        int32_t *nv = realloc(v->v, cap * sizeof *nv);
        if (!nv) return -1;
        v->v = nv; v->cap = cap;
    }
    v->v[v->n++] = x;
    return 0;
}

static uint64_t hash_bytes(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint64_t h = 0xcbf29ce484222325ull;       /* FNV-1a, then a final mix */
    for (size_t i = 0; i < n; i++) { h ^= s[i]; h *= 0x100000001b3ull; }
    h ^= h >> 29; h *= 0xbf58476d1ce4e5b9ull; h ^= h >> 32;
    return h;
}

/* ---------------------------------------------------------------- UTF-8 */

/* Decode one code point at s[i] (i < n), strictly as Rust's str would
 * (no overlongs, surrogates or > U+10FFFF).  An invalid byte comes back as
 * CP_BAD | byte with length 1. */
static inline size_t u8_next(const uint8_t *s, size_t n, size_t i, uint32_t *cp)
{
    uint8_t b = s[i];
    if (b < 0x80) { *cp = b; return 1; }
    if (b >= 0xC2 && b <= 0xDF) {
        if (i + 1 < n && (s[i + 1] & 0xC0) == 0x80) {
            *cp = (uint32_t)(b & 0x1F) << 6 | (s[i + 1] & 0x3F);
            return 2;
        }
    } else if (b >= 0xE0 && b <= 0xEF) {
        if (i + 2 < n && (s[i + 1] & 0xC0) == 0x80 && (s[i + 2] & 0xC0) == 0x80) {
            uint32_t c = (uint32_t)(b & 0x0F) << 12 | (uint32_t)(s[i + 1] & 0x3F) << 6 | (s[i + 2] & 0x3F);
            if (c >= 0x800 && (c < 0xD800 || c > 0xDFFF)) { *cp = c; return 3; }
        }
    } else if (b >= 0xF0 && b <= 0xF4) {
        if (i + 3 < n && (s[i + 1] & 0xC0) == 0x80 && (s[i + 2] & 0xC0) == 0x80 &&
            (s[i + 3] & 0xC0) == 0x80) {
            uint32_t c = (uint32_t)(b & 0x07) << 18 | (uint32_t)(s[i + 1] & 0x3F) << 12 |
                         (uint32_t)(s[i + 2] & 0x3F) << 6 | (s[i + 3] & 0x3F);
            if (c >= 0x10000 && c <= 0x10FFFF) { *cp = c; return 4; }
        }
    }
    *cp = CP_BAD | b;
    return 1;
}

static size_t u8_put(uint8_t *o, uint32_t cp)
{
    if (cp & CP_BAD) { o[0] = (uint8_t)cp; return 1; }
    if (cp < 0x80) { o[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { o[0] = (uint8_t)(0xC0 | cp >> 6); o[1] = (uint8_t)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | cp >> 12); o[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F)); return 3;
    }
    o[0] = (uint8_t)(0xF0 | cp >> 18); o[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F)); o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

static size_t u8_prev(const uint8_t *s, size_t i);

/* Regex class of a code point; invalid bytes are "other" (neither \s, \p{L}
 * nor \p{N}), which keeps them in their own pre-tokens. */
static inline int cp_class(uint32_t cp)
{
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return LLMQ_UC_L;
        if (cp >= '0' && cp <= '9') return LLMQ_UC_N;
        if (cp == ' ' || (cp >= 9 && cp <= 13)) return LLMQ_UC_SPACE;
        return LLMQ_UC_OTHER;
    }
    if (cp & CP_BAD) return LLMQ_UC_OTHER;
    return llmq_uc_class(cp);
}

/* Class of the char at s[i] and its length in *l; -1 past the end. */
static inline int cls_at(const uint8_t *s, size_t n, size_t i, size_t *l)
{
    if (i >= n) { *l = 0; return -1; }
    if (s[i] < 0x80) { *l = 1; return cp_class(s[i]); }
    uint32_t cp;
    *l = u8_next(s, n, i, &cp);
    return cp_class(cp);
}

static size_t run_of(const uint8_t *s, size_t n, size_t i, int cls)
{
    size_t l;
    while (cls_at(s, n, i, &l) == cls) i += l;
    return i;
}

/* ---------------------------------------------------------------- regex scanners
 *
 * Each returns the end of the match that starts at i (i < n).  All three
 * patterns can match any character, so matches tile the text and Split's
 * "Isolated" behaviour is just the list of matches.  The alternatives are
 * tried in order, as Oniguruma's backtracking does; the comments give the
 * alternative each branch implements. */

enum { PAT_GPT2 = 1, PAT_LLAMA3, PAT_QWEN2 };

static const char *const pat_text[] = {
    [PAT_GPT2] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
    [PAT_LLAMA3] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    [PAT_QWEN2] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};

/* \s+(?!\S)|\s+ at a whitespace char: the run, less its last char when a
 * non-space follows and the run has more than one char. */
static size_t scan_space_tail(const uint8_t *s, size_t n, size_t i)
{
    size_t l, j = i, last = i;
    while (cls_at(s, n, j, &l) == LLMQ_UC_SPACE) { last = j; j += l; }
    if (j >= n || last == i) return j;
    return last;
}

static size_t scan_gpt2(const uint8_t *s, size_t n, size_t i)
{
    size_t l;
    if (s[i] == '\'' && i + 1 < n) {          /* 's|'t|'re|'ve|'m|'ll|'d */
        uint8_t a = s[i + 1];
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if (i + 2 < n) {
            uint8_t b = s[i + 2];
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
        }
    }
    size_t j = i;
    int c = cls_at(s, n, i, &l);
    if (s[i] == ' ') {                         /* the optional space of ' ?X+' */
        size_t l2;
        int c2 = cls_at(s, n, i + 1, &l2);
        if (c2 == LLMQ_UC_L || c2 == LLMQ_UC_N || c2 == LLMQ_UC_OTHER) { c = c2; j = i + 1; l = l2; }
    }
    switch (c) {
    case LLMQ_UC_L: return run_of(s, n, j + l, LLMQ_UC_L);        /*  ?\p{L}+ */
    case LLMQ_UC_N: return run_of(s, n, j + l, LLMQ_UC_N);        /*  ?\p{N}+ */
    case LLMQ_UC_OTHER: return run_of(s, n, j + l, LLMQ_UC_OTHER); /*  ?[^\s\p{L}\p{N}]+ */
    default: return scan_space_tail(s, n, i);                     /* \s+(?!\S)|\s+ */
    }
}

/* Case-insensitive ASCII letter x at s[i] for (?i:...): Unicode case folding
 * also maps U+017F LATIN SMALL LETTER LONG S to 's'. Returns its length. */
static size_t ci_letter(const uint8_t *s, size_t n, size_t i, char x)
{
    if (i >= n) return 0;
    if ((s[i] | 0x20) == x) return 1;
    if (x == 's' && i + 1 < n && s[i] == 0xC5 && s[i + 1] == 0xBF) return 2;
    return 0;
}

static size_t scan_llama3(const uint8_t *s, size_t n, size_t i, int max_digits)
{
    size_t l, l2, k;
    if (s[i] == '\'') {                        /* (?i:'s|'t|'re|'ve|'m|'ll|'d) */
        static const char *const alts[] = { "s", "t", "re", "ve", "m", "ll", "d" };
        for (size_t a = 0; a < LLMQ_ARRAY_LEN(alts); a++) {
            size_t j = i + 1;
            const char *p = alts[a];
            for (; *p; p++) { if (!(k = ci_letter(s, n, j, *p))) break; j += k; }
            if (!*p) return j;
        }
    }
    int c = cls_at(s, n, i, &l);
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (c != LLMQ_UC_L && c != LLMQ_UC_N && s[i] != '\r' && s[i] != '\n' &&
        cls_at(s, n, i + l, &l2) == LLMQ_UC_L)
        return run_of(s, n, i + l + l2, LLMQ_UC_L);
    if (c == LLMQ_UC_L) return run_of(s, n, i + l, LLMQ_UC_L);
    if (c == LLMQ_UC_N) {                      /* \p{N}{1,3} or \p{N} */
        size_t j = i + l;
        for (int d = 1; d < max_digits && cls_at(s, n, j, &l2) == LLMQ_UC_N; d++) j += l2;
        return j;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    size_t j = i;
    if (s[i] == ' ' && cls_at(s, n, i + 1, &l2) == LLMQ_UC_OTHER) j = i + 1;
    else if (c == LLMQ_UC_OTHER) j = i;
    else j = SIZE_MAX;
    if (j != SIZE_MAX) {
        j = run_of(s, n, j, LLMQ_UC_OTHER);
        while (j < n && (s[j] == '\r' || s[j] == '\n')) j++;
        return j;
    }
    /* \s*[\r\n]+ : backtracking leaves \s* just before the last \r or \n of
     * the whitespace run, and [\r\n]+ takes that one char. */
    size_t end = i, nl = SIZE_MAX;
    while (cls_at(s, n, end, &l) == LLMQ_UC_SPACE) {
        if (s[end] == '\r' || s[end] == '\n') nl = end;
        end += l;
    }
    if (nl != SIZE_MAX) return nl + 1;
    return scan_space_tail(s, n, i);           /* \s+(?!\S)|\s+ */
}

static size_t scan_pattern(int pat, const uint8_t *s, size_t n, size_t i)
{
    switch (pat) {
    case PAT_GPT2: return scan_gpt2(s, n, i);
    case PAT_LLAMA3: return scan_llama3(s, n, i, 3);
    default: return scan_llama3(s, n, i, 1);
    }
}

/* Which known pattern a Split regex is, 0 if none.  Normalised first: a
 * literal CR / LF (from a JSON "\r") reads as the regex escape, \pL as \p{L}. */
static int pattern_id(const char *re)
{
    tbuf b = { 0 };
    int id = 0;
    for (const char *p = re; *p; p++) {
        const char *rep = NULL;
        char one[2] = { *p, 0 };
        if (*p == '\r') rep = "\\r";
        else if (*p == '\n') rep = "\\n";
        else if (p[0] == '\\' && p[1] == 'p' && (p[2] == 'L' || p[2] == 'N')) {
            rep = p[2] == 'L' ? "\\p{L}" : "\\p{N}";
            p += 2;
        }
        if (tbuf_add(&b, rep ? rep : one, strlen(rep ? rep : one))) { free(b.b); return 0; }
    }
    if (tbuf_add(&b, "", 1)) { free(b.b); return 0; }
    for (int k = PAT_GPT2; k <= PAT_QWEN2; k++)
        if (!strcmp((const char *)b.b, pat_text[k])) id = k;
    free(b.b);
    return id;
}

/* ---------------------------------------------------------------- NFC
 * Decompose (tables + Hangul arithmetic), order marks by combining class,
 * recompose primary composites: UAX #15.  Text without any "unsafe" code
 * point (see tools/gen-unicode.py) is already NFC and is copied. */

enum { SBASE = 0xAC00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11A7,
       LCOUNT = 19, VCOUNT = 21, TCOUNT = 28, NCOUNT = VCOUNT * TCOUNT, SCOUNT = LCOUNT * NCOUNT };

static int cp_ccc(uint32_t cp) { return (cp & CP_BAD) ? 0 : llmq_uc_ccc(cp); }

static uint32_t nfc_compose(uint32_t a, uint32_t b)
{
    if ((a | b) & CP_BAD) return 0;
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE && b < TBASE + TCOUNT)
        return a + (b - TBASE);
    return llmq_uc_compose(a, b);
}

static int nfc_append(tbuf *out, const uint8_t *s, size_t n)
{
    size_t i = 0, unsafe = 0;
    while (i < n && !unsafe) {
        uint32_t cp;
        i += u8_next(s, n, i, &cp);
        unsafe = !(cp & CP_BAD) && llmq_uc_nfc_unsafe_cp(cp);
    }
    if (!unsafe) return tbuf_add(out, s, n);

    size_t cap, m = 0;
    if (llmq_mul_ovf_size(n, 4 * sizeof(uint32_t), &cap)) return -1;
    uint32_t *d = malloc(cap ? cap : 1);
    if (!d) return -1;
    for (i = 0; i < n;) {
        uint32_t cp;
        i += u8_next(s, n, i, &cp);
        const llmq_uc_decomp *dc;
        if (cp >= SBASE && cp < SBASE + SCOUNT) {
            uint32_t si = cp - SBASE;
            d[m++] = LBASE + si / NCOUNT;
            d[m++] = VBASE + si % NCOUNT / TCOUNT;
            if (si % TCOUNT) d[m++] = TBASE + si % TCOUNT;
        } else if (!(cp & CP_BAD) && cp >= 0xC0 && (dc = llmq_uc_decomp_find(cp))) {
            for (int k = 0; k < 4 && dc->d[k]; k++) d[m++] = dc->d[k];
        } else {
            d[m++] = cp;
        }
    }
    /* canonical ordering: a stable insertion sort of each run of marks */
    for (size_t k = 1; k < m; k++) {
        int c = cp_ccc(d[k]);
        if (!c) continue;
        for (size_t j = k; j > 0; j--) {
            int p = cp_ccc(d[j - 1]);
            if (p <= c) break;
            uint32_t t = d[j]; d[j] = d[j - 1]; d[j - 1] = t;
        }
    }
    /* canonical composition */
    if (m) {
        size_t starter = 0, w = 1;
        int last = cp_ccc(d[0]) ? 256 : 0;
        for (size_t k = 1; k < m; k++) {
            uint32_t ch = d[k];
            int c = cp_ccc(ch);
            uint32_t comp = cp_ccc(d[starter]) == 0 ? nfc_compose(d[starter], ch) : 0;
            if (comp && (last < c || last == 0)) {
                d[starter] = comp;
            } else {
                if (c == 0) starter = w;
                last = c;
                d[w++] = ch;
            }
        }
        m = w;
    }
    int rc = tbuf_reserve(out, m * 4);
    if (!rc)
        for (size_t k = 0; k < m; k++) out->len += u8_put(out->b + out->len, d[k]);
    free(d);
    return rc;
}

/* ---------------------------------------------------------------- the tokenizer */

enum { NORM_NFC = 1, NORM_PREPEND, NORM_REPLACE, NORM_STRIP };
typedef struct {
    int kind;
    int left, right;                 /* Strip: which ends */
    char *a, *b; size_t alen, blen;  /* Replace: pattern a (String) -> content b */
    llmq_re *re;                     /* Replace: a Regex pattern instead of a */
} norm_step;

enum { PRE_BYTELEVEL = 1, PRE_SPLIT, PRE_METASPACE };
enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };
/* Split behaviours (SplitDelimiterBehavior): what happens to a match. */
enum { SPLIT_ISOLATED, SPLIT_REMOVED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS };
typedef struct {
    int kind;
    int pattern;                 /* PAT_* with a hand-written scanner, or 0;
                                  * ByteLevel uses PAT_GPT2 when use_regex */
    llmq_re *re;                 /* Split's pattern (ByteLevel's GPT-2 regex) */
    int behavior, invert;        /* Split */
    int add_prefix_space;        /* ByteLevel */
    int prepend_scheme, split;   /* Metaspace */
    char repl[8]; size_t repl_len;
} pre_step;

enum { DEC_BYTELEVEL = 1, DEC_METASPACE, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP };
typedef struct {
    int kind;
    char *a, *b; size_t alen, blen;   /* Replace: pattern -> content; Strip / Metaspace: a = char */
    int start, stop, prepend_scheme;
} dec_step;

typedef struct {
    int32_t id;
    const char *match;           /* text searched for: content, or normalized content */
    size_t match_len;
    uint8_t single_word, lstrip, rstrip, normalized, special;
} added_tok;

/* The added tokens one pass searches for, indexed by first byte and sorted
 * longest first, so the first hit at a position is the longest. */
typedef struct {
    uint32_t *idx;               /* indices into t->added */
    uint32_t start[257];         /* idx[start[b] .. start[b+1]) begin with byte b */
} added_set;

typedef struct { uint64_t key; uint32_t rank; int32_t id; } merge_ent;

struct llmq_tok {
    char *path;                  /* tokenizer.json, for messages */
    int32_t n_ids;               /* vocab size: 1 + largest id */
    char **piece;                /* [n_ids] token text or NULL, into arena */
    uint32_t *piece_len;         /* [n_ids] */
    uint8_t *flags;              /* [n_ids] TF_* */
    char *arena;

    int32_t *vmap; size_t vmask; /* model vocab: open addressing, -1 empty */
    merge_ent *mmap; size_t mmask; /* (left << 32 | right) -> rank, merged id */

    added_tok *added; size_t n_added;
    char *added_norm;            /* normalized match texts, one block */
    added_set set_raw, set_norm;

    int byte_fallback, fuse_unk, ignore_merges;
    int32_t unk_id;              /* -1: no unk token */
    char *unk_missing;           /* unk_token named but absent: error when needed */
    int32_t bf_id[256];          /* <0xXX> ids, -1 if missing */

    norm_step *norm; size_t n_norm;
    pre_step *pre; size_t n_pre;
    dec_step *dec; size_t n_dec; int has_decoder;

    uint8_t byte_char[256][2]; uint8_t byte_char_len[256];   /* GPT-2 bytes_to_unicode */
    int16_t char_byte[512];      /* mapped code point (< 512) -> byte, -1 */

    int32_t bos, eos;
    int add_bos, add_eos;
    int scanners;                /* run known patterns by the hand-written scanners */
};

enum { TF_MODEL = 1, TF_ADDED = 2, TF_SPECIAL = 4 };

/* ---- model vocab map */

static int32_t vocab_get(const llmq_tok *t, const void *s, size_t n)
{
    size_t h = (size_t)hash_bytes(s, n) & t->vmask;
    for (;; h = (h + 1) & t->vmask) {
        int32_t id = t->vmap[h];
        if (id < 0) return -1;
        if (t->piece_len[id] == n && !memcmp(t->piece[id], s, n)) return id;
    }
}

/* Insert id (its piece set); returns the id already holding the key, or -1. */
static int32_t vocab_put(llmq_tok *t, int32_t id)
{
    size_t h = (size_t)hash_bytes(t->piece[id], t->piece_len[id]) & t->vmask;
    for (;; h = (h + 1) & t->vmask) {
        int32_t o = t->vmap[h];
        if (o < 0) { t->vmap[h] = id; return -1; }
        if (t->piece_len[o] == t->piece_len[id] && !memcmp(t->piece[o], t->piece[id], t->piece_len[id]))
            return o;
    }
}

/* ---- merges map */

static inline uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }
static inline size_t pair_hash(uint64_t k) { k ^= k >> 31; k *= 0x9e3779b97f4a7c15ull; k ^= k >> 29; return (size_t)k; }

static const merge_ent *merge_get(const llmq_tok *t, int32_t a, int32_t b)
{
    if (!t->mmap) return NULL;
    uint64_t k = pair_key(a, b);
    for (size_t h = pair_hash(k) & t->mmask;; h = (h + 1) & t->mmask) {
        const merge_ent *e = &t->mmap[h];
        if (e->key == UINT64_MAX) return NULL;
        if (e->key == k) return e;
    }
}

/* A later duplicate overwrites the earlier rank: HF collects the merges into
 * a HashMap, where the last insert wins. */
static void merge_put(llmq_tok *t, int32_t a, int32_t b, uint32_t rank, int32_t id)
{
    uint64_t k = pair_key(a, b);
    for (size_t h = pair_hash(k) & t->mmask;; h = (h + 1) & t->mmask) {
        merge_ent *e = &t->mmap[h];
        if (e->key == UINT64_MAX || e->key == k) { e->key = k; e->rank = rank; e->id = id; return; }
    }
}

/* ---------------------------------------------------------------- JSON helpers */

typedef struct { const char *path; llmq_err *err; } jctx;

static int jfail(const jctx *c, const char *field, const char *what)
{
    return llmq_errorf(c->err, LLMQ_EFORMAT, "%s: '%s': %s", c->path, field, what);
}

/* Integer field from a JSON number: finite, integral, in [lo, hi]. */
static int jint(const jctx *c, const cJSON *v, const char *field, long long lo, long long hi, long long *out)
{
    if (!cJSON_IsNumber(v)) return jfail(c, field, "expected an integer");
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d)) return jfail(c, field, "expected an integer");
    if (d < (double)lo || d > (double)hi)
        return llmq_errorf(c->err, LLMQ_EFORMAT, "%s: '%s': %.17g out of range [%lld, %lld]",
                           c->path, field, d, lo, hi);
    *out = (long long)d;
    return 0;
}

/* Optional boolean: absent or null -> def. */
static int jbool(const jctx *c, const cJSON *obj, const char *key, const char *field, int def, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) { *out = def; return 0; }
    if (!cJSON_IsBool(v)) {
        char f[160];
        snprintf(f, sizeof f, "%s.%s", field, key);
        return jfail(c, f, "expected true or false");
    }
    *out = cJSON_IsTrue(v);
    return 0;
}

/* Optional string: absent or null -> NULL. */
static int jstr(const jctx *c, const cJSON *obj, const char *key, const char *field, const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v) || !v->valuestring) {
        char f[160];
        snprintf(f, sizeof f, "%s.%s", field, key);
        return jfail(c, f, "expected a string");
    }
    *out = v->valuestring;
    return 0;
}

static const char *jtype(const jctx *c, const cJSON *obj, const char *field, int *rc)
{
    const char *ty = NULL;
    *rc = 0;
    if (!cJSON_IsObject(obj)) { *rc = jfail(c, field, "expected an object"); return NULL; }
    if ((*rc = jstr(c, obj, "type", field, &ty))) return NULL;
    if (!ty) { char f[160]; snprintf(f, sizeof f, "%s.type", field); *rc = jfail(c, f, "missing"); }
    return ty;
}

static int one_char(const char *s, size_t *len)
{
    uint32_t cp;
    size_t n = strlen(s);
    if (!n) return 0;
    size_t l = u8_next((const uint8_t *)s, n, 0, &cp);
    *len = l;
    return l == n && !(cp & CP_BAD);
}

/* "Replace" pattern: {"String": s}; with re non-NULL also {"Regex": r},
 * compiled into *re (then *pat is NULL). */
static int replace_pattern(const jctx *c, const cJSON *obj, const char *field, const char **pat,
                           llmq_re **re)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(obj, "pattern");
    char f[160];
    snprintf(f, sizeof f, "%s.pattern", field);
    if (!cJSON_IsObject(p)) return jfail(c, f, "expected an object");
    const char *s = NULL, *r = NULL;
    int rc = jstr(c, p, "String", f, &s);
    if (rc) return rc;
    *pat = NULL;
    if (!s) {
        if ((rc = jstr(c, p, "Regex", f, &r))) return rc;
        if (r && re) {
            char where[400];
            snprintf(where, sizeof where, "%s: '%s'", c->path, f);
            return llmq_re_new(re, r, strlen(r), LLMQ_RE_HF, where, c->err);
        }
        if (r)
            return llmq_errorf(c->err, LLMQ_EUNSUPPORTED, "%s: '%s': Regex patterns in a decoder's Replace are "
                               "not supported", c->path, f);
        return jfail(c, f, "expected {\"String\": ...} or {\"Regex\": ...}");
    }
    if (!*s)
        return llmq_errorf(c->err, LLMQ_EUNSUPPORTED, "%s: '%s': empty Replace pattern is not supported", c->path, f);
    *pat = s;
    return 0;
}

static int dup_into(char **dst, size_t *len, const char *s, llmq_err *err)
{
    *dst = llmq_strdup(s, err);
    if (!*dst) return LLMQ_ENOMEM;
    *len = strlen(s);
    return 0;
}

/* The "type" of step n (a normalizer, pre-tokenizer or decoder), or NULL
 * when the caller has nothing left to do, with *rc its status: n absent or
 * null (no step, 0), not an object with a type (an error), or a "Sequence",
 * whose array n[key] is parsed here element by element by parse (element i
 * named field.key[i] in messages). */
typedef int (*parse_step_fn)(llmq_tok *t, const jctx *c, const cJSON *n, const char *field);
static const char *step_type(llmq_tok *t, const jctx *c, const cJSON *n, const char *field, const char *key,
                             parse_step_fn parse, int *rc)
{
    *rc = 0;
    if (!n || cJSON_IsNull(n)) return NULL;
    const char *ty = jtype(c, n, field, rc);
    if (*rc || strcmp(ty, "Sequence")) return ty;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, key);
    char f[160];
    snprintf(f, sizeof f, "%s.%s", field, key);
    if (!cJSON_IsArray(list)) { *rc = jfail(c, f, "expected an array"); return NULL; }
    int i = 0;
    for (const cJSON *e = list->child; e; e = e->next, i++) {
        char fe[200];
        snprintf(fe, sizeof fe, "%s[%d]", f, i);
        if ((*rc = parse(t, c, e, fe))) return NULL;
    }
    return NULL;
}

/* ---------------------------------------------------------------- normalizer */

static int parse_normalizer(llmq_tok *t, const jctx *c, const cJSON *n, const char *field)
{
    int rc;
    const char *ty = step_type(t, c, n, field, "normalizers", parse_normalizer, &rc);
    if (!ty) return rc;
    norm_step s = { 0 };
    if (!strcmp(ty, "NFC")) {
        s.kind = NORM_NFC;
    } else if (!strcmp(ty, "Strip")) {
        /* normalizers/strip.rs: Strip::new(true, true) by default */
        s.kind = NORM_STRIP;
        if ((rc = jbool(c, n, "strip_left", field, 1, &s.left))) return rc;
        if ((rc = jbool(c, n, "strip_right", field, 1, &s.right))) return rc;
    } else if (!strcmp(ty, "Prepend")) {
        const char *p;
        if ((rc = jstr(c, n, "prepend", field, &p))) return rc;
        if (!p) { char f[160]; snprintf(f, sizeof f, "%s.prepend", field); return jfail(c, f, "missing"); }
        s.kind = NORM_PREPEND;
        if ((rc = dup_into(&s.a, &s.alen, p, c->err))) return rc;
    } else if (!strcmp(ty, "Replace")) {
        const char *pat, *content;
        if ((rc = replace_pattern(c, n, field, &pat, &s.re))) return rc;
        if ((rc = jstr(c, n, "content", field, &content))) { llmq_re_free(s.re); return rc; }
        if (!content) {
            char f[160]; snprintf(f, sizeof f, "%s.content", field);
            llmq_re_free(s.re);
            return jfail(c, f, "missing");
        }
        s.kind = NORM_REPLACE;
        if (pat && (rc = dup_into(&s.a, &s.alen, pat, c->err))) return rc;
        if ((rc = dup_into(&s.b, &s.blen, content, c->err))) { free(s.a); llmq_re_free(s.re); return rc; }
    } else {
        char q[LLMQ_QUOTE_SIZE];
        return llmq_errorf(c->err, LLMQ_EUNSUPPORTED, "%s: '%s': normalizer type '%s' is not supported "
                           "(supported: NFC, Prepend, Replace, Strip, Sequence)", c->path, field, llmq_quote(q, ty));
    }
    norm_step *nn = realloc(t->norm, (t->n_norm + 1) * sizeof *nn);
    if (!nn) { free(s.a); free(s.b); llmq_re_free(s.re); return llmq_errorf(c->err, LLMQ_ENOMEM, "out of memory"); }
    t->norm = nn;
    t->norm[t->n_norm++] = s;
    return 0;
}

/* Replace every non-overlapping occurrence of pat (left to right); -4 if
 * out would grow past max bytes. */
static int replace_all(tbuf *out, const uint8_t *s, size_t n, const char *pat, size_t plen,
                       const char *rep, size_t rlen, size_t max)
{
    size_t i = 0;
    while (i < n) {
        const uint8_t *hit = plen <= n - i ? memmem(s + i, n - i, pat, plen) : NULL;
        size_t stop = hit ? (size_t)(hit - s) : n;
        if (out->len + (stop - i) > max) return -4;
        if (tbuf_add(out, s + i, stop - i)) return -1;
        if (!hit) break;
        if (rlen > max - out->len) return -4;
        if (tbuf_add(out, rep, rlen)) return -1;
        i = stop + plen;
    }
    return 0;
}

/* Replace every match of re in s[0..n) by rep (NormalizedString::replace
 * over find_matches: empty matches insert rep too); -4 past max bytes, -5
 * the regex search gave up. */
static int replace_re(tbuf *out, const uint8_t *s, size_t n, const llmq_re *re, const char *rep, size_t rlen,
                      size_t max)
{
    llmq_re_match *m = NULL;
    size_t nm = 0, cap = 0, i = 0;
    int rc = llmq_re_find_all(re, s, n, &m, &nm, &cap);
    for (size_t k = 0; k < nm && !rc; k++) {
        size_t gap = m[k].start - i;
        if (gap > max - out->len || rlen > max - out->len - gap) rc = -4;
        else if (tbuf_add(out, s + i, gap) || tbuf_add(out, rep, rlen)) rc = -1;
        i = m[k].end;
    }
    if (!rc && n - i > max - out->len) rc = -4;
    if (!rc && tbuf_add(out, s + i, n - i)) rc = -1;
    free(m);
    return rc;
}

static size_t norm_limit(size_t n)
{
    return n > (SIZE_MAX - TOK_NORM_SLACK) / TOK_NORM_GROWTH ? SIZE_MAX : TOK_NORM_GROWTH * n + TOK_NORM_SLACK;
}

static int re_gave_up(const llmq_tok *t, llmq_err *err)
{
    return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: a regex search of the text passed the limit of %lu "
                       "backtracking steps", t->path, LLMQ_RE_RETRY_LIMIT);
}

static int norm_too_long(const llmq_tok *t, size_t n, llmq_err *err)
{
    return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: 'normalizer': a %zu-byte piece of text grows past %zu bytes "
                       "(the limit is %dx + %d)", t->path, n, norm_limit(n), TOK_NORM_GROWTH, TOK_NORM_SLACK);
}

/* Run the normalizer chain on s[0..n) into out (replacing its contents).
 * -1: out of memory; -4: the text grew past norm_limit(n); -5: a regex
 * search gave up (LLMQ_RE_RETRY_LIMIT). */
static int normalize(const llmq_tok *t, const uint8_t *s, size_t n, tbuf *out, tbuf *tmp)
{
    size_t max = norm_limit(n);
    out->len = 0;
    if (tbuf_add(out, s, n)) return -1;
    for (size_t k = 0; k < t->n_norm; k++) {
        const norm_step *st = &t->norm[k];
        int rc = 0;
        tmp->len = 0;
        switch (st->kind) {
        case NORM_NFC:              /* at most 3x, from an input already <= max */
            if (nfc_append(tmp, out->b, out->len)) return -1;
            if (tmp->len > max) return -4;
            break;
        case NORM_STRIP: {          /* char::is_whitespace at either end */
            size_t a = 0, b = out->len, l;
            if (st->left)
                while (a < b && cls_at(out->b, b, a, &l) == LLMQ_UC_SPACE) a += l;
            if (st->right)
                while (b > a) {
                    size_t p = u8_prev(out->b, b);
                    if (p < a || cls_at(out->b, b, p, &l) != LLMQ_UC_SPACE || p + l != b) break;
                    b = p;
                }
            if (tbuf_add(tmp, out->b + a, b - a)) return -1;
            break;
        }
        case NORM_PREPEND:          /* normalizers/prepend.rs: only if non-empty */
            if (out->len && st->alen > max - out->len) return -4;
            if (out->len && (tbuf_add(tmp, st->a, st->alen) || tbuf_add(tmp, out->b, out->len))) return -1;
            break;
        case NORM_REPLACE:
            if (st->re) rc = replace_re(tmp, out->b, out->len, st->re, st->b, st->blen, max);
            else rc = replace_all(tmp, out->b, out->len, st->a, st->alen, st->b, st->blen, max);
            if (rc) return rc;
            break;
        }
        tbuf sw = *out; *out = *tmp; *tmp = sw;
    }
    return 0;
}

/* ---------------------------------------------------------------- pre-tokenizer */

static int add_pre(llmq_tok *t, const pre_step *s, llmq_err *err)
{
    pre_step *np = realloc(t->pre, (t->n_pre + 1) * sizeof *np);
    if (!np) return llmq_errorf(err, LLMQ_ENOMEM, "out of memory");
    t->pre = np;
    t->pre[t->n_pre++] = *s;
    return 0;
}

/* Split's "behavior" into *out (SPLIT_*); def < 0: the key is required. */
static int parse_behavior(const jctx *c, const cJSON *n, const char *field, int def, int *out)
{
    static const char *const behs[] = { [SPLIT_ISOLATED] = "Isolated", [SPLIT_REMOVED] = "Removed",
                                        [SPLIT_MERGED_PREV] = "MergedWithPrevious",
                                        [SPLIT_MERGED_NEXT] = "MergedWithNext",
                                        [SPLIT_CONTIGUOUS] = "Contiguous" };
    const char *beh = NULL;
    char f[200], q[LLMQ_QUOTE_SIZE];
    int rc = jstr(c, n, "behavior", field, &beh);
    if (rc) return rc;
    snprintf(f, sizeof f, "%s.behavior", field);
    if (!beh) {
        if (def < 0) return jfail(c, f, "missing");
        *out = def;
        return 0;
    }
    for (int k = 0; k < (int)LLMQ_ARRAY_LEN(behs); k++)
        if (!strcmp(beh, behs[k])) { *out = k; return 0; }
    return llmq_errorf(c->err, LLMQ_EUNSUPPORTED, "%s: '%s': Split behavior '%s' is not one of Isolated, "
                       "Removed, MergedWithPrevious, MergedWithNext, Contiguous", c->path, f, llmq_quote(q, beh));
}

/* Patterns of the pre-tokenizers HF writes with char predicates or a fixed
 * regex; a one-character class matches each character alone, as a char
 * predicate's find_matches does. */
#define RE_WHITESPACE "\\s"                     /* char::is_whitespace (White_Space) */
#define RE_NUMERIC "\\p{N}"                     /* char::is_numeric: Nd, Nl, No */
/* pre_tokenizers/whitespace.rs: \w+|[^\w\s]+ on the Rust regex crate, not
 * Oniguruma.  Its \w is the Unicode Word property, which Oniguruma gives in
 * a class; a lone \w there also takes Latin-1's 1/2, 2 and the like (No). */
#define RE_WORDS "[\\w]+|[^\\w\\s]+"
/* is_ascii_punctuation || is_punctuation (the P categories) */
#define RE_PUNCT "[\\p{P}\\x21-\\x2F\\x3A-\\x40\\x5B-\\x60\\x7B-\\x7E]"

/* A Split step on a fixed pattern, appended to t. */
static int add_fixed_split(llmq_tok *t, const jctx *c, const char *field, const char *re, size_t len,
                           llmq_re_syntax syntax, int behavior, int invert)
{
    pre_step s = { .kind = PRE_SPLIT, .behavior = behavior, .invert = invert };
    char where[400];
    snprintf(where, sizeof where, "%s: '%s'", c->path, field);
    int rc = llmq_re_new(&s.re, re, len, syntax, where, c->err);
    if (!rc && (rc = add_pre(t, &s, c->err))) llmq_re_free(s.re);
    return rc;
}

static int parse_pre(llmq_tok *t, const jctx *c, const cJSON *n, const char *field)
{
    int rc;
    const char *ty = step_type(t, c, n, field, "pretokenizers", parse_pre, &rc);
    if (!ty) return rc;
    pre_step s = { 0 };
    if (!strcmp(ty, "ByteLevel")) {
        int use_regex;
        s.kind = PRE_BYTELEVEL;
        /* ByteLevel::default(): add_prefix_space true, use_regex true */
        if ((rc = jbool(c, n, "add_prefix_space", field, 1, &s.add_prefix_space))) return rc;
        if ((rc = jbool(c, n, "use_regex", field, 1, &use_regex))) return rc;
        if (use_regex) {
            s.pattern = PAT_GPT2;
            char where[400];
            snprintf(where, sizeof where, "%s: '%s'", c->path, field);
            if ((rc = llmq_re_new(&s.re, pat_text[PAT_GPT2], strlen(pat_text[PAT_GPT2]), LLMQ_RE_HF, where,
                                  c->err)))
                return rc;
        }
    } else if (!strcmp(ty, "Split")) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(n, "pattern");
        const char *re = NULL, *str = NULL;
        char f[160], where[400];
        snprintf(f, sizeof f, "%s.pattern", field);
        if (!cJSON_IsObject(p)) return jfail(c, f, "expected an object");
        if ((rc = jstr(c, p, "Regex", f, &re)) || (rc = jstr(c, p, "String", f, &str))) return rc;
        if (!re == !str) return jfail(c, f, "expected {\"Regex\": ...} or {\"String\": ...}");
        if ((rc = parse_behavior(c, n, field, -1, &s.behavior))) return rc;
        if ((rc = jbool(c, n, "invert", field, 0, &s.invert))) return rc;
        s.kind = PRE_SPLIT;
        s.pattern = re ? pattern_id(re) : 0;
        snprintf(where, sizeof where, "%s: '%s'", c->path, f);
        if ((rc = llmq_re_new(&s.re, re ? re : str, strlen(re ? re : str), re ? LLMQ_RE_HF : LLMQ_RE_LITERAL,
                              where, c->err)))
            return rc;
    } else if (!strcmp(ty, "Metaspace")) {
        const char *repl, *scheme;
        int aps, split;
        s.kind = PRE_METASPACE;
        if ((rc = jstr(c, n, "replacement", field, &repl))) return rc;
        if (!repl || !one_char(repl, &s.repl_len) || s.repl_len >= sizeof s.repl) {
            char f[160]; snprintf(f, sizeof f, "%s.replacement", field);
            return jfail(c, f, "expected one character");
        }
        memcpy(s.repl, repl, s.repl_len);
        if ((rc = jstr(c, n, "prepend_scheme", field, &scheme))) return rc;
        if ((rc = jbool(c, n, "add_prefix_space", field, 1, &aps))) return rc;
        if ((rc = jbool(c, n, "split", field, 1, &split))) return rc;
        /* metaspace.rs: prepend_scheme defaults to always; add_prefix_space
         * false forces never. */
        s.prepend_scheme = PREPEND_ALWAYS;
        if (scheme) {
            if (!strcmp(scheme, "first")) s.prepend_scheme = PREPEND_FIRST;
            else if (!strcmp(scheme, "never")) s.prepend_scheme = PREPEND_NEVER;
            else if (strcmp(scheme, "always")) {
                char f[160]; snprintf(f, sizeof f, "%s.prepend_scheme", field);
                return jfail(c, f, "expected first, always or never");
            }
        }
        if (!aps) s.prepend_scheme = PREPEND_NEVER;
        s.split = split;
    } else if (!strcmp(ty, "Digits")) {
        int each;
        if ((rc = jbool(c, n, "individual_digits", field, 0, &each))) return rc;
        return add_fixed_split(t, c, field, RE_NUMERIC, strlen(RE_NUMERIC), LLMQ_RE_HF,
                               each ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS, 0);
    } else if (!strcmp(ty, "WhitespaceSplit")) {
        return add_fixed_split(t, c, field, RE_WHITESPACE, strlen(RE_WHITESPACE), LLMQ_RE_HF, SPLIT_REMOVED, 0);
    } else if (!strcmp(ty, "Whitespace")) {
        return add_fixed_split(t, c, field, RE_WORDS, strlen(RE_WORDS), LLMQ_RE_HF, SPLIT_REMOVED, 1);
    } else if (!strcmp(ty, "Punctuation")) {
        int beh;
        if ((rc = parse_behavior(c, n, field, SPLIT_ISOLATED, &beh))) return rc;
        return add_fixed_split(t, c, field, RE_PUNCT, strlen(RE_PUNCT), LLMQ_RE_HF, beh, 0);
    } else if (!strcmp(ty, "BertPreTokenizer")) {
        if ((rc = add_fixed_split(t, c, field, RE_WHITESPACE, strlen(RE_WHITESPACE), LLMQ_RE_HF, SPLIT_REMOVED, 0)))
            return rc;
        return add_fixed_split(t, c, field, RE_PUNCT, strlen(RE_PUNCT), LLMQ_RE_HF, SPLIT_ISOLATED, 0);
    } else if (!strcmp(ty, "CharDelimiterSplit")) {
        const char *d;
        size_t dl;
        if ((rc = jstr(c, n, "delimiter", field, &d))) return rc;
        if (!d || !one_char(d, &dl)) {
            char f[160]; snprintf(f, sizeof f, "%s.delimiter", field);
            return jfail(c, f, "expected one character");
        }
        return add_fixed_split(t, c, field, d, dl, LLMQ_RE_LITERAL, SPLIT_REMOVED, 0);
    } else {
        char q[LLMQ_QUOTE_SIZE];
        return llmq_errorf(c->err, LLMQ_EUNSUPPORTED, "%s: '%s': pre_tokenizer type '%s' is not supported "
                           "(supported: ByteLevel, Split, Metaspace, Digits, Whitespace, WhitespaceSplit, "
                           "Punctuation, CharDelimiterSplit, BertPreTokenizer, Sequence)", c->path, field,
                           llmq_quote(q, ty));
    }
    if ((rc = add_pre(t, &s, c->err))) llmq_re_free(s.re);
    return rc;
}

/* The pre-tokens of one step: byte ranges of buf.  first: the piece starts
 * at offset 0 of the original text (Metaspace's prepend_scheme "first"). */
typedef struct { size_t off, len; int first; } piece_t;
typedef struct { tbuf buf; piece_t *p; size_t n, cap; } plist;

static int plist_add(plist *l, const void *s, size_t n, int first)
{
    if (!n) return 0;     /* PreTokenizedString::split drops empty splits */
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        piece_t *np = realloc(l->p, cap * sizeof *np);
        if (!np) return -1;
        l->p = np; l->cap = cap;
    }
    l->p[l->n++] = (piece_t){ l->buf.len, n, first };
    return tbuf_add(&l->buf, s, n);
}

/* Append the GPT-2 byte-to-unicode image of s[0..n) as one piece. */
static int plist_add_mapped(const llmq_tok *t, plist *l, const uint8_t *s, size_t n, int first)
{
    if (!n) return 0;
    if (tbuf_reserve(&l->buf, 2 * n)) return -1;
    size_t off = l->buf.len;
    uint8_t *o = l->buf.b + off;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = s[i];
        o[0] = t->byte_char[b][0];
        o[1] = t->byte_char[b][1];
        o += t->byte_char_len[b];
    }
    size_t m = (size_t)(o - (l->buf.b + off));
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        piece_t *np = realloc(l->p, cap * sizeof *np);
        if (!np) return -1;
        l->p = np; l->cap = cap;
    }
    l->p[l->n++] = (piece_t){ off, m, first };
    l->buf.len += m;
    return 0;
}

/* Scratch space of pre_step_run, reused across calls. */
typedef struct { size_t start, end; int match; } span_t;
typedef struct {
    tbuf tmp;
    llmq_re_match *m; size_t m_cap;
    span_t *sp; size_t sp_n, sp_cap;
} pre_scratch;

static int span_push(pre_scratch *x, size_t start, size_t end, int match)
{
    if (x->sp_n == x->sp_cap) {
        size_t cap = x->sp_cap ? x->sp_cap * 2 : 64;
        span_t *ns = realloc(x->sp, cap * sizeof *ns);
        if (!ns) return -1;
        x->sp = ns; x->sp_cap = cap;
    }
    x->sp[x->sp_n++] = (span_t){ start, end, match };
    return 0;
}

/* The pieces NormalizedString::split(pattern, behavior) cuts s[0..n) into,
 * as x->sp[0..sp_n) with .match = 0 for kept pieces, 1 for removed ones.
 * Matches come from the hand-written scanner when the pattern has one (its
 * matches tile the text), else from Oniguruma; gaps between matches are
 * non-matches, as find_matches gives them.  -1 out of memory, -5 the regex
 * search gave up. */
static int split_spans(const llmq_tok *t, const pre_step *st, const uint8_t *s, size_t n, pre_scratch *x)
{
    size_t nm = 0, prev = 0;
    x->sp_n = 0;
    if (st->pattern && t->scanners) {
        for (size_t i = 0; i < n;) {
            size_t e = scan_pattern(st->pattern, s, n, i);
            if (span_push(x, i, e, 1)) return -1;
            i = e;
        }
    } else {
        int rc = llmq_re_find_all(st->re, s, n, &x->m, &nm, &x->m_cap);
        if (rc) return rc;
        for (size_t k = 0; k < nm; k++) {
            if (prev != x->m[k].start && span_push(x, prev, x->m[k].start, 0)) return -1;
            if (span_push(x, x->m[k].start, x->m[k].end, 1)) return -1;
            prev = x->m[k].end;
        }
        if (prev != n && span_push(x, prev, n, 0)) return -1;
    }
    if (st->invert)
        for (size_t k = 0; k < x->sp_n; k++) x->sp[k].match = !x->sp[k].match;
    /* SplitDelimiterBehavior, folded in place: w is the output length. */
    size_t w = 0;
    int prev_match = 0;
    switch (st->behavior) {
    case SPLIT_ISOLATED:
        for (size_t k = 0; k < x->sp_n; k++) x->sp[k].match = 0;
        return 0;
    case SPLIT_REMOVED:
        return 0;
    case SPLIT_CONTIGUOUS:
    case SPLIT_MERGED_PREV:
        for (size_t k = 0; k < x->sp_n; k++) {
            span_t c = x->sp[k];
            int join = st->behavior == SPLIT_CONTIGUOUS ? c.match == prev_match : c.match && !prev_match;
            if (join && w) x->sp[w - 1].end = c.end;
            else x->sp[w++] = (span_t){ c.start, c.end, 0 };
            prev_match = c.match;
        }
        x->sp_n = w;
        return 0;
    case SPLIT_MERGED_NEXT:
        /* the same fold from the right: a match joins the piece after it */
        w = x->sp_n;
        for (size_t k = x->sp_n; k-- > 0;) {
            span_t c = x->sp[k];
            if (c.match && !prev_match && w < x->sp_n) x->sp[w].start = c.start;
            else x->sp[--w] = (span_t){ c.start, c.end, 0 };
            prev_match = c.match;
        }
        memmove(x->sp, x->sp + w, (x->sp_n - w) * sizeof *x->sp);
        x->sp_n -= w;
        return 0;
    }
    return -1;
}

/* One pre-tokenizer step on one piece s[0..n), appending to out.  -1 out
 * of memory, -5 a regex search gave up. */
static int pre_step_run(const llmq_tok *t, const pre_step *st, const uint8_t *s, size_t n, int first,
                        plist *out, pre_scratch *x)
{
    tbuf *tmp = &x->tmp;
    int rc;
    switch (st->kind) {
    case PRE_BYTELEVEL:
        /* byte_level.rs: prefix a space to every split that lacks one,
         * split with the GPT-2 regex (Isolated), then map every byte to its
         * char. */
        if (st->add_prefix_space && s[0] != ' ') {
            tmp->len = 0;
            if (tbuf_add(tmp, " ", 1) || tbuf_add(tmp, s, n)) return -1;
            s = tmp->b; n = tmp->len;
        }
        if (!st->pattern) return plist_add_mapped(t, out, s, n, first);
        if ((rc = split_spans(t, st, s, n, x))) return rc;
        for (size_t k = 0; k < x->sp_n; k++)
            if (plist_add_mapped(t, out, s + x->sp[k].start, x->sp[k].end - x->sp[k].start,
                                 first && x->sp[k].start == 0))
                return -1;
        return 0;
    case PRE_SPLIT:
        if ((rc = split_spans(t, st, s, n, x))) return rc;
        for (size_t k = 0; k < x->sp_n; k++)
            if (!x->sp[k].match && plist_add(out, s + x->sp[k].start, x->sp[k].end - x->sp[k].start,
                                             first && x->sp[k].start == 0))
                return -1;
        return 0;
    case PRE_METASPACE: {
        /* metaspace.rs: ' ' -> replacement; prepend per scheme; split with
         * MergedWithNext: each replacement char starts a new piece. */
        const char *r = st->repl;
        size_t rl = st->repl_len;
        tmp->len = 0;
        /* starts_with is tested after the replacement: a leading ' '
         * counts as the replacement char */
        int lacks = s[0] != ' ' && (n < rl || memcmp(s, r, rl));
        if (lacks && (st->prepend_scheme == PREPEND_ALWAYS || (st->prepend_scheme == PREPEND_FIRST && first)))
            if (tbuf_add(tmp, r, rl)) return -1;
        if (replace_all(tmp, s, n, " ", 1, r, rl, SIZE_MAX)) return -1;   /* rl < 8: bounded */
        const uint8_t *w = tmp->b;
        size_t m = tmp->len;
        if (!st->split) return plist_add(out, w, m, first);
        size_t start = 0;
        for (size_t i = 0; i + rl <= m;) {
            if (!memcmp(w + i, r, rl)) {
                if (i > start && plist_add(out, w + start, i - start, first && start == 0)) return -1;
                start = i;
                i += rl;
            } else {
                i++;
            }
        }
        return plist_add(out, w + start, m - start, first && start == 0);
    }
    }
    return -1;
}

/* ---------------------------------------------------------------- decoder */

static int parse_decoder(llmq_tok *t, const jctx *c, const cJSON *n, const char *field)
{
    int rc;
    const char *ty = step_type(t, c, n, field, "decoders", parse_decoder, &rc);
    if (!ty) return rc;
    dec_step s = { 0 };
    if (!strcmp(ty, "ByteLevel")) {
        s.kind = DEC_BYTELEVEL;
    } else if (!strcmp(ty, "ByteFallback")) {
        s.kind = DEC_BYTEFALLBACK;
    } else if (!strcmp(ty, "Fuse")) {
        s.kind = DEC_FUSE;
    } else if (!strcmp(ty, "Replace")) {
        const char *pat, *content;
        if ((rc = replace_pattern(c, n, field, &pat, NULL))) return rc;
        if ((rc = jstr(c, n, "content", field, &content))) return rc;
        if (!content) { char f[160]; snprintf(f, sizeof f, "%s.content", field); return jfail(c, f, "missing"); }
        s.kind = DEC_REPLACE;
        if ((rc = dup_into(&s.a, &s.alen, pat, c->err))) return rc;
        if ((rc = dup_into(&s.b, &s.blen, content, c->err))) { free(s.a); return rc; }
    } else if (!strcmp(ty, "Strip") || !strcmp(ty, "Metaspace")) {
        const char *ch;
        int is_strip = ty[0] == 'S';
        if ((rc = jstr(c, n, is_strip ? "content" : "replacement", field, &ch))) return rc;
        size_t l;
        if (!ch || !one_char(ch, &l)) {
            char f[160]; snprintf(f, sizeof f, "%s.%s", field, is_strip ? "content" : "replacement");
            return jfail(c, f, "expected one character");
        }
        if ((rc = dup_into(&s.a, &s.alen, ch, c->err))) return rc;
        if (is_strip) {
            long long v;
            char f[160];
            s.kind = DEC_STRIP;
            snprintf(f, sizeof f, "%s.start", field);
            if ((rc = jint(c, cJSON_GetObjectItemCaseSensitive(n, "start"), f, 0, 1 << 20, &v))) { free(s.a); return rc; }
            s.start = (int)v;
            snprintf(f, sizeof f, "%s.stop", field);
            if ((rc = jint(c, cJSON_GetObjectItemCaseSensitive(n, "stop"), f, 0, 1 << 20, &v))) { free(s.a); return rc; }
            s.stop = (int)v;
        } else {
            const char *scheme;
            int aps;
            s.kind = DEC_METASPACE;
            s.prepend_scheme = PREPEND_ALWAYS;
            if ((rc = jstr(c, n, "prepend_scheme", field, &scheme)) ||
                (rc = jbool(c, n, "add_prefix_space", field, 1, &aps))) { free(s.a); return rc; }
            if (scheme && !strcmp(scheme, "never")) s.prepend_scheme = PREPEND_NEVER;
            if (scheme && !strcmp(scheme, "first")) s.prepend_scheme = PREPEND_FIRST;
            if (!aps) s.prepend_scheme = PREPEND_NEVER;
        }
    } else {
        char q[LLMQ_QUOTE_SIZE];
        return llmq_errorf(c->err, LLMQ_EUNSUPPORTED, "%s: '%s': decoder type '%s' is not supported "
                           "(supported: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence)",
                           c->path, field, llmq_quote(q, ty));
    }
    dec_step *nd = realloc(t->dec, (t->n_dec + 1) * sizeof *nd);
    if (!nd) { free(s.a); free(s.b); return llmq_errorf(c->err, LLMQ_ENOMEM, "out of memory"); }
    t->dec = nd;
    t->dec[t->n_dec++] = s;
    return 0;
}

/* A list of byte strings: item i is buf[off[i] .. off[i+1]). */
typedef struct { tbuf buf; size_t *off; size_t n, cap; } slist;

/* End the item being written: it is everything added since the last end.
 * An item may end with nothing added (Fuse of no tokens): buf.b must still
 * be allocated, since readers form buf.b + off[i] (NULL + 0 is undefined). */
static int slist_end_item(slist *l)
{
    if (!l->buf.b && tbuf_reserve(&l->buf, 0)) return -1;
    if (l->n + 2 > l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        size_t *no = realloc(l->off, cap * sizeof *no);
        if (!no) return -1;
        l->off = no; l->cap = cap;
    }
    l->off[0] = 0;
    l->off[++l->n] = l->buf.len;
    return 0;
}

static int slist_add(slist *l, const void *s, size_t n)
{
    if (tbuf_add(&l->buf, s, n)) return -1;
    return slist_end_item(l);
}

static void slist_reset(slist *l) { l->buf.len = 0; l->n = 0; }

/* One decoder step over the token texts of in, appended to out.  -1: out of
 * memory; -4: Replace steps grew the text past max bytes. */
static int dec_step_run(const llmq_tok *t, const dec_step *st, const slist *in, slist *out, size_t max)
{
    int rc;
    for (size_t i = 0; i < in->n; i++) {
        const uint8_t *s = in->buf.b + in->off[i];
        size_t n = in->off[i + 1] - in->off[i];
        switch (st->kind) {
        case DEC_BYTELEVEL: {
            /* byte_level.rs decode_chain: a token whose chars all map back
             * to bytes gives those bytes, else its own UTF-8; one output. */
            size_t save = out->buf.len, j = 0;
            int ok = 1;
            while (j < n) {
                uint32_t cp;
                j += u8_next(s, n, j, &cp);
                int16_t b = cp < 512 ? t->char_byte[cp] : -1;
                uint8_t byte = (uint8_t)b;
                if (b < 0) { ok = 0; break; }
                if (tbuf_add(&out->buf, &byte, 1)) return -1;
            }
            if (!ok) { out->buf.len = save; if (tbuf_add(&out->buf, s, n)) return -1; }
            break;
        }
        case DEC_FUSE:
            if (tbuf_add(&out->buf, s, n)) return -1;
            break;
        case DEC_REPLACE:
            if ((rc = replace_all(&out->buf, s, n, st->a, st->alen, st->b, st->blen, max))) return rc;
            if (slist_end_item(out)) return -1;
            break;
        case DEC_METASPACE: {
            int drop = i == 0 && st->prepend_scheme != PREPEND_NEVER;
            if ((rc = replace_all(&out->buf, s, n, st->a, st->alen, drop ? "" : " ", drop ? 0 : 1, max))) return rc;
            if (slist_end_item(out)) return -1;
            break;
        }
        case DEC_STRIP: {
            size_t a = 0, b = n, cl = st->alen;
            for (int k = 0; k < st->start && a + cl <= b && !memcmp(s + a, st->a, cl); k++) a += cl;
            for (int k = 0; k < st->stop && b >= a + cl && !memcmp(s + b - cl, st->a, cl); k++) b -= cl;
            if (tbuf_add(&out->buf, s + a, b - a) || slist_end_item(out)) return -1;
            break;
        }
        case DEC_BYTEFALLBACK: {
            /* byte_fallback.rs: a run of <0xXX> tokens becomes its bytes
             * (HF then writes U+FFFD per byte if they are not UTF-8; we keep
             * the bytes, see llmq_tok_decode). */
            int hex = n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>';
            unsigned v = 0;
            for (int k = 3; hex && k < 5; k++) {
                int c = s[k], d = c >= '0' && c <= '9' ? c - '0' : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10 : -1;
                if (d < 0) hex = 0;
                v = v * 16 + (unsigned)d;
            }
            uint8_t byte = (uint8_t)v;
            if (hex) {
                if (tbuf_add(&out->buf, &byte, 1)) return -1;
                /* the run ends at the next non-byte token or the end */
                int next_hex = 0;
                if (i + 1 < in->n) {
                    const uint8_t *q = in->buf.b + in->off[i + 1];
                    size_t qn = in->off[i + 2] - in->off[i + 1];
                    next_hex = qn == 6 && !memcmp(q, "<0x", 3) && q[5] == '>';
                }
                if (!next_hex && slist_end_item(out)) return -1;
            } else if (tbuf_add(&out->buf, s, n) || slist_end_item(out)) {
                return -1;
            }
            break;
        }
        }
    }
    if (st->kind == DEC_BYTELEVEL || st->kind == DEC_FUSE) return slist_end_item(out);
    return 0;
}

/* ---------------------------------------------------------------- added tokens */

static int cmp_added_len(const void *a, const void *b, void *ctx)
{
    const added_tok *v = ctx;
    const added_tok *x = &v[*(const uint32_t *)a], *y = &v[*(const uint32_t *)b];
    if (x->match[0] != y->match[0]) return (uint8_t)x->match[0] < (uint8_t)y->match[0] ? -1 : 1;
    if (x->match_len != y->match_len) return x->match_len > y->match_len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int build_set(llmq_tok *t, added_set *set, int normalized)
{
    size_t m = 0;
    set->idx = malloc((t->n_added ? t->n_added : 1) * sizeof *set->idx);
    if (!set->idx) return -1;
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].normalized == normalized && t->added[i].match_len) set->idx[m++] = (uint32_t)i;
    qsort_r(set->idx, m, sizeof *set->idx, cmp_added_len, t->added);
    size_t k = 0;
    for (int b = 0; b < 256; b++) {
        set->start[b] = (uint32_t)k;
        while (k < m && (uint8_t)t->added[set->idx[k]].match[0] == b) k++;
    }
    set->start[256] = (uint32_t)k;
    return 0;
}

static int is_word_cp(uint32_t cp)
{
    /* regex \w: alphanumeric, marks, connector punctuation; approximated by
     * L, N, combining marks and '_' */
    if (cp == '_') return 1;
    if (cp & CP_BAD) return 0;
    int c = cp_class(cp);
    return c == LLMQ_UC_L || c == LLMQ_UC_N || cp_ccc(cp) != 0;
}

/* Start of the last char before position i. */
static size_t u8_prev(const uint8_t *s, size_t i)
{
    size_t j = i - 1;
    while (j > 0 && i - j < 4 && (s[j] & 0xC0) == 0x80) j--;
    uint32_t cp;
    if (u8_next(s, i, j, &cp) != i - j) return i - 1;
    return j;
}

/* added_vocabulary.rs find_matches: a split of s[0..n) into text runs
 * (id -1) and added tokens.  Callback per split. */
typedef int (*split_fn)(void *ctx, size_t start, size_t stop, int32_t id);

static int find_added(const llmq_tok *t, const added_set *set, const uint8_t *s, size_t n,
                      split_fn fn, void *ctx)
{
    size_t start_off = 0, i = 0;
    if (set->start[256] == 0) return n ? fn(ctx, 0, n, -1) : 0;
    while (i < n) {
        uint8_t b = s[i];
        const added_tok *hit = NULL;
        for (uint32_t k = set->start[b]; k < set->start[b + 1]; k++) {
            const added_tok *a = &t->added[set->idx[k]];
            if (a->match_len <= n - i && !memcmp(s + i, a->match, a->match_len)) { hit = a; break; }
        }
        if (!hit) { i++; continue; }
        size_t start = i, stop = i + hit->match_len, l;
        uint32_t cp;
        if (hit->single_word) {
            int ws = start == 0 || (u8_next(s, n, u8_prev(s, start), &cp), !is_word_cp(cp));
            int we = stop == n || (u8_next(s, n, stop, &cp), !is_word_cp(cp));
            if (!ws || !we) { i = stop; continue; }   /* the automaton resumes after the match */
        }
        if (hit->lstrip) {
            size_t ns = start;
            while (ns > start_off) {
                size_t p = u8_prev(s, ns);
                if (cls_at(s, n, p, &l) != LLMQ_UC_SPACE) break;
                ns = p;
            }
            start = ns;
        }
        size_t mend = stop;
        if (hit->rstrip)
            while (cls_at(s, n, stop, &l) == LLMQ_UC_SPACE) stop += l;
        int rc;
        if (start_off < start && (rc = fn(ctx, start_off, start, -1))) return rc;
        if ((rc = fn(ctx, start, stop, hit->id))) return rc;
        start_off = stop;
        /* HF resumes the search at the end of the match proper; we resume
         * after the stripped space, which differs only if an added token
         * itself starts with whitespace. */
        i = stop > mend ? stop : mend;
    }
    if (start_off < n) return fn(ctx, start_off, n, -1);
    return 0;
}

/* ---------------------------------------------------------------- BPE */

typedef struct { int32_t id; int32_t prev, next; uint32_t len; } sym_t;
typedef struct { uint32_t rank; uint32_t pos; int32_t id; } hent;

typedef struct {
    uint64_t hash;
    uint32_t key_off, key_len, ids_off, ids_n;
} cache_ent;

/* Per-call state: encode is re-entrant, so the word cache lives here. */
typedef struct {
    const llmq_tok *t;
    llmq_err *err;
    ivec out;
    sym_t *sym; size_t sym_cap;
    hent *heap; size_t heap_cap;
    cache_ent *cache; size_t cache_cap, cache_used;
    tbuf cache_keys; ivec cache_ids;
    plist pl[2];
    tbuf norm, norm_tmp;
    pre_scratch px;
    int first;                   /* current normalized piece starts the text */
    llmq_tok_piece_fn piece_fn;  /* llmq_tok_pretokenize: pieces go here, no BPE */
    void *piece_ctx;
} enc_ctx;

static inline int hent_less(const hent *a, const hent *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(hent *h, size_t *n, hent e)
{
    size_t i = (*n)++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (!hent_less(&e, &h[p])) break;
        h[i] = h[p]; i = p;
    }
    h[i] = e;
}

static hent heap_pop(hent *h, size_t *n)
{
    hent top = h[0], last = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && hent_less(&h[c + 1], &h[c])) c++;
        if (!hent_less(&h[c], &last)) break;
        h[i] = h[c]; i = c;
    }
    if (m) h[i] = last;
    return top;
}

static int sym_add(enc_ctx *e, size_t *n, int32_t id, uint32_t len)
{
    if (*n == e->sym_cap) {
        size_t cap = e->sym_cap ? e->sym_cap * 2 : 256;
        sym_t *ns = realloc(e->sym, cap * sizeof *ns);
        if (!ns) return -1;
        e->sym = ns; e->sym_cap = cap;
    }
    e->sym[*n] = (sym_t){ id, (int32_t)*n - 1, (int32_t)*n + 1, len };
    (*n)++;
    return 0;
}

/* models/bpe/model.rs merge_word + word.rs merge_all, appending the ids of
 * word w[0..n) to dst. */
static int bpe_word(enc_ctx *e, const uint8_t *w, size_t n, ivec *dst)
{
    const llmq_tok *t = e->t;
    if (t->ignore_merges) {
        int32_t id = vocab_get(t, w, n);
        if (id >= 0) return ivec_push(dst, id);
    }
    size_t ns = 0;
    int32_t unk = -1;
    uint32_t unk_len = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = u8_next(w, n, i, &cp);
        int32_t id = vocab_get(t, w + i, l);
        if (id >= 0) {
            if (unk >= 0) { if (sym_add(e, &ns, unk, unk_len)) return -1; unk = -1; }
            if (sym_add(e, &ns, id, (uint32_t)l)) return -1;
        } else {
            int done = 0;
            if (t->byte_fallback) {
                size_t k;
                for (k = 0; k < l && t->bf_id[w[i + k]] >= 0; k++) {}
                if (k == l) {
                    /* as HF: a pending unk is not flushed before the bytes */
                    for (k = 0; k < l; k++) if (sym_add(e, &ns, t->bf_id[w[i + k]], 1)) return -1;
                    done = 1;
                }
            }
            if (!done && (t->unk_id >= 0 || t->unk_missing)) {
                if (t->unk_id < 0) {
                    char q[LLMQ_QUOTE_SIZE];
                    llmq_errorf(e->err, LLMQ_EFORMAT, "%s: 'model.unk_token': '%s' is not in the vocab, and the "
                                "text has a character that needs it", t->path, llmq_quote(q, t->unk_missing));
                    return -2;
                }
                if (unk >= 0 && t->fuse_unk) {
                    unk_len += (uint32_t)l;
                } else {
                    if (unk >= 0 && sym_add(e, &ns, unk, unk_len)) return -1;
                    unk = t->unk_id; unk_len = (uint32_t)l;
                }
            }
            /* no byte fallback, no unk: HF drops the char */
        }
        i += l;
    }
    if (unk >= 0 && sym_add(e, &ns, unk, unk_len)) return -1;
    if (!ns) return 0;
    e->sym[ns - 1].next = -1;

    /* The heap starts with at most ns - 1 pairs; each merge pops one entry
     * and pushes at most two, and there are at most ns - 1 merges, so it
     * never holds more than 2 * ns - 2.  The capacity is checked against
     * that bound for every word: an earlier, shorter word may have left a
     * heap larger than ns but smaller than 2 * ns. */
    if (ns > SIZE_MAX / (2 * sizeof *e->heap)) return -1;
    if (e->heap_cap < 2 * ns) {
        hent *nh = realloc(e->heap, 2 * ns * sizeof *nh);
        if (!nh) return -1;
        e->heap = nh; e->heap_cap = 2 * ns;
    }
    size_t hn = 0;
    sym_t *s = e->sym;
    for (size_t i = 0; i + 1 < ns; i++) {
        const merge_ent *m = merge_get(t, s[i].id, s[i + 1].id);
        if (m) heap_push(e->heap, &hn, (hent){ m->rank, (uint32_t)i, m->id });
    }
    while (hn) {
        hent top = heap_pop(e->heap, &hn);
        sym_t *cur = &s[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        sym_t right = s[cur->next];
        const merge_ent *m = merge_get(t, cur->id, right.id);
        if (!m || m->id != top.id) continue;      /* stale entry */
        s[cur->next].len = 0;
        cur->id = top.id;
        cur->len += right.len;
        cur->next = right.next;
        if (right.next >= 0) s[right.next].prev = (int32_t)top.pos;
        if (cur->prev >= 0) {
            const merge_ent *pm = merge_get(t, s[cur->prev].id, cur->id);
            if (pm) heap_push(e->heap, &hn, (hent){ pm->rank, (uint32_t)cur->prev, pm->id });
        }
        if (cur->next >= 0) {
            const merge_ent *nm = merge_get(t, cur->id, s[cur->next].id);
            if (nm) heap_push(e->heap, &hn, (hent){ nm->rank, top.pos, nm->id });
        }
    }
    for (int32_t i = 0; i >= 0; i = s[i].next)
        if (ivec_push(dst, s[i].id)) return -1;
    return 0;
}

/* BPE of one pre-token through the per-call cache. */
static int bpe_cached(enc_ctx *e, const uint8_t *w, size_t n)
{
    if (e->piece_fn) return e->piece_fn(e->piece_ctx, (const char *)w, n, -1) ? -3 : 0;
    if (n > TOK_CACHE_MAX_KEY) return bpe_word(e, w, n, &e->out);
    uint64_t h = hash_bytes(w, n);
    if (e->cache_used * 2 >= e->cache_cap) {
        size_t cap = e->cache_cap ? e->cache_cap * 2 : 4096;
        if (cap > (1u << 18)) {          /* bound memory (~6 MB): start over */
            cap = e->cache_cap;
            e->cache_keys.len = 0; e->cache_ids.n = 0;
            memset(e->cache, 0, cap * sizeof *e->cache);
            e->cache_used = 0;
        } else {
            cache_ent *nc = calloc(cap, sizeof *nc);
            if (!nc) return -1;
            for (size_t i = 0; i < e->cache_cap; i++) {
                if (!e->cache[i].key_len) continue;
                size_t j = (size_t)e->cache[i].hash & (cap - 1);
                while (nc[j].key_len) j = (j + 1) & (cap - 1);
                nc[j] = e->cache[i];
            }
            free(e->cache);
            e->cache = nc; e->cache_cap = cap;
        }
    }
    size_t j = (size_t)h & (e->cache_cap - 1);
    for (; e->cache[j].key_len; j = (j + 1) & (e->cache_cap - 1)) {
        const cache_ent *c = &e->cache[j];
        if (c->hash == h && c->key_len == n && !memcmp(e->cache_keys.b + c->key_off, w, n)) {
            for (uint32_t k = 0; k < c->ids_n; k++)
                if (ivec_push(&e->out, e->cache_ids.v[c->ids_off + k])) return -1;
            return 0;
        }
    }
    size_t before = e->out.n;
    int rc = bpe_word(e, w, n, &e->out);
    if (rc) return rc;
    if (e->cache_keys.len > UINT32_MAX - n || e->cache_ids.n > UINT32_MAX - (e->out.n - before))
        return 0;
    cache_ent c = { h, (uint32_t)e->cache_keys.len, (uint32_t)n, (uint32_t)e->cache_ids.n,
                    (uint32_t)(e->out.n - before) };
    if (tbuf_add(&e->cache_keys, w, n)) return -1;
    for (size_t k = before; k < e->out.n; k++)
        if (ivec_push(&e->cache_ids, e->out.v[k])) return -1;
    e->cache[j] = c;
    e->cache_used++;
    return 0;
}

/* Pre-tokenize and BPE one normalized text run s[0..n). */
static int encode_run(enc_ctx *e, const uint8_t *s, size_t n, int first)
{
    const llmq_tok *t = e->t;
    if (!t->n_pre) return bpe_cached(e, s, n);
    plist *in = &e->pl[0], *out = &e->pl[1];
    in->buf.len = 0; in->n = 0;
    if (plist_add(in, s, n, first)) return -1;
    for (size_t k = 0; k < t->n_pre; k++) {
        out->buf.len = 0; out->n = 0;
        for (size_t i = 0; i < in->n; i++) {
            int rc = pre_step_run(t, &t->pre[k], in->buf.b + in->p[i].off, in->p[i].len, in->p[i].first,
                                  out, &e->px);
            if (rc == -5) { re_gave_up(t, e->err); return -2; }
            if (rc) return -1;
        }
        plist *sw = in; in = out; out = sw;
    }
    for (size_t i = 0; i < in->n; i++) {
        int rc = bpe_cached(e, in->buf.b + in->p[i].off, in->p[i].len);
        if (rc) return rc;
    }
    return 0;
}

static int emit_added(enc_ctx *e, int32_t id)
{
    if (e->piece_fn) return e->piece_fn(e->piece_ctx, e->t->piece[id], e->t->piece_len[id], id) ? -3 : 0;
    return ivec_push(&e->out, id);
}

static int on_norm_split(void *ctx, size_t start, size_t stop, int32_t id)
{
    enc_ctx *e = ctx;
    if (id >= 0) return emit_added(e, id);
    return encode_run(e, e->norm.b + start, stop - start, e->first && start == 0);
}

typedef struct { enc_ctx *e; const uint8_t *text; } raw_ctx;

static int on_raw_split(void *ctx, size_t start, size_t stop, int32_t id)
{
    raw_ctx *r = ctx;
    enc_ctx *e = r->e;
    if (id >= 0) return emit_added(e, id);
    int rc = normalize(e->t, r->text + start, stop - start, &e->norm, &e->norm_tmp);
    if (rc == -4) { norm_too_long(e->t, stop - start, e->err); return -2; }
    if (rc == -5) { re_gave_up(e->t, e->err); return -2; }
    if (rc) return -1;
    e->first = start == 0;
    return find_added(e->t, &e->t->set_norm, e->norm.b, e->norm.len, on_norm_split, e);
}

static int encode_common(const llmq_tok *t, const char *text, size_t len, int32_t **ids, size_t *n,
                         llmq_tok_piece_fn fn, void *ctx, llmq_err *err)
{
    if (ids) *ids = NULL;
    if (n) *n = 0;
    if (!text && len) return llmq_errorf(err, LLMQ_EUSAGE, "tokenizer: NULL text");
    enc_ctx e = { .t = t, .err = err, .piece_fn = fn, .piece_ctx = ctx };
    raw_ctx r = { &e, (const uint8_t *)text };
    int rc = len ? find_added(t, &t->set_raw, r.text, len, on_raw_split, &r) : 0;
    free(e.sym); free(e.heap); free(e.cache); free(e.cache_keys.b); free(e.cache_ids.v);
    free(e.pl[0].buf.b); free(e.pl[0].p); free(e.pl[1].buf.b); free(e.pl[1].p);
    free(e.norm.b); free(e.norm_tmp.b);
    free(e.px.tmp.b); free(e.px.m); free(e.px.sp);
    if (rc) {
        free(e.out.v);
        if (rc == -2) return err ? err->code : LLMQ_EFORMAT;
        if (rc == -3) return llmq_errorf(err, LLMQ_EGENERIC, "tokenizer: stopped by the piece callback");
        return llmq_errorf(err, LLMQ_ENOMEM, "tokenizer: out of memory encoding %zu bytes", len);
    }
    if (fn) { free(e.out.v); return LLMQ_OK; }
    if (!e.out.v && !(e.out.v = malloc(sizeof(int32_t))))
        return llmq_errorf(err, LLMQ_ENOMEM, "tokenizer: out of memory");
    *ids = e.out.v;
    *n = e.out.n;
    return LLMQ_OK;
}

int llmq_tok_encode(const llmq_tok *t, const char *text, size_t len, int32_t **ids, size_t *n,
                    llmq_err *err)
{
    return encode_common(t, text, len, ids, n, NULL, NULL, err);
}

int llmq_tok_pretokenize(const llmq_tok *t, const char *text, size_t len, llmq_tok_piece_fn fn,
                         void *ctx, llmq_err *err)
{
    return encode_common(t, text, len, NULL, NULL, fn, ctx, err);
}

/* ---------------------------------------------------------------- decode */

int llmq_tok_decode(const llmq_tok *t, const int32_t *ids, size_t n, int skip_special,
                    char **out, size_t *len, llmq_err *err)
{
    *out = NULL;
    if (len) *len = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n_ids)
            return llmq_errorf(err, LLMQ_EFORMAT, "tokenizer: id %" PRId32 " at position %zu is out of range "
                               "[0, %" PRId32 ")", ids[i], i, t->n_ids);
    slist a = { 0 }, b = { 0 };
    int fail = 0;
    for (size_t i = 0; i < n && !fail; i++) {
        int32_t id = ids[i];
        if (!t->piece[id] || (skip_special && (t->flags[id] & TF_SPECIAL))) continue;
        fail = slist_add(&a, t->piece[id], t->piece_len[id]);
    }
    size_t in_bytes = a.buf.len, max = norm_limit(in_bytes);
    for (size_t k = 0; k < t->n_dec && !fail; k++) {
        slist_reset(&b);
        fail = dec_step_run(t, &t->dec[k], &a, &b, max);
        slist sw = a; a = b; b = sw;
    }
    if (fail == -4) {
        free(a.buf.b); free(a.off); free(b.buf.b); free(b.off);
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: 'decoder': %zu bytes of token text grow past %zu bytes "
                           "(the limit is %dx + %d)", t->path, in_bytes, max, TOK_NORM_GROWTH, TOK_NORM_SLACK);
    }
    /* Tokenizer::decode with no decoder joins the tokens with spaces. */
    tbuf res = { 0 };
    for (size_t i = 0; i < a.n && !fail; i++) {
        if (!t->has_decoder && i && tbuf_add(&res, " ", 1)) fail = 1;
        if (!fail) fail = tbuf_add(&res, a.buf.b + a.off[i], a.off[i + 1] - a.off[i]);
    }
    if (!fail) fail = tbuf_add(&res, "", 1);
    free(a.buf.b); free(a.off); free(b.buf.b); free(b.off);
    if (fail) { free(res.b); return llmq_errorf(err, LLMQ_ENOMEM, "tokenizer: out of memory decoding"); }
    *out = (char *)res.b;
    if (len) *len = res.len - 1;
    return LLMQ_OK;
}

/* ---------------------------------------------------------------- loading */

static void set_free(added_set *s) { free(s->idx); }

void llmq_tok_free(llmq_tok *t)
{
    if (!t) return;
    free(t->piece); free(t->piece_len); free(t->flags); free(t->arena);
    free(t->vmap); free(t->mmap);
    free(t->added); free(t->added_norm);
    set_free(&t->set_raw); set_free(&t->set_norm);
    free(t->unk_missing); free(t->path);
    for (size_t i = 0; i < t->n_norm; i++) { free(t->norm[i].a); free(t->norm[i].b); llmq_re_free(t->norm[i].re); }
    for (size_t i = 0; i < t->n_pre; i++) llmq_re_free(t->pre[i].re);
    for (size_t i = 0; i < t->n_dec; i++) { free(t->dec[i].a); free(t->dec[i].b); }
    free(t->norm); free(t->pre); free(t->dec);
    free(t);
}

int32_t llmq_tok_vocab_size(const llmq_tok *t) { return t->n_ids; }
void llmq_tok_set_scanners(llmq_tok *t, int on) { t->scanners = on != 0; }
int32_t llmq_tok_bos(const llmq_tok *t) { return t->bos; }
int32_t llmq_tok_eos(const llmq_tok *t) { return t->eos; }
int llmq_tok_add_bos(const llmq_tok *t) { return t->add_bos; }

const char *llmq_tok_piece(const llmq_tok *t, int32_t id)
{
    if (!t || id < 0 || id >= t->n_ids) return NULL;
    return t->piece[id];
}

int llmq_tok_is_special(const llmq_tok *t, int32_t id)
{
    return t && id >= 0 && id < t->n_ids && (t->flags[id] & TF_SPECIAL);
}

int32_t llmq_tok_find(const llmq_tok *t, const char *piece)
{
    size_t n = strlen(piece);
    for (size_t i = 0; i < t->n_added; i++) {
        int32_t id = t->added[i].id;
        if (t->piece_len[id] == n && !memcmp(t->piece[id], piece, n)) return id;
    }
    return vocab_get(t, piece, n);
}

/* GPT-2 bytes_to_unicode (byte_level.rs bytes_char): printable Latin-1
 * bytes map to themselves, the rest to U+0100 + k in byte order. */
static void init_byte_map(llmq_tok *t)
{
    int k = 0;
    for (int i = 0; i < 512; i++) t->char_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        uint32_t cp = keep ? (uint32_t)b : 256u + (uint32_t)k++;
        uint8_t o[4];
        size_t l = u8_put(o, cp);
        t->byte_char_len[b] = (uint8_t)l;
        t->byte_char[b][0] = o[0];
        t->byte_char[b][1] = l > 1 ? o[1] : 0;
        t->char_byte[cp] = (int16_t)b;
    }
}

static int32_t token_id_by_text(const llmq_tok *t, const char *s)
{
    return s ? llmq_tok_find(t, s) : -1;
}

/* bos/eos/add_bos from the post-processor: TemplateProcessing (possibly in
 * a Sequence) whose "single" template starts / ends with a SpecialToken. */
static void read_post_processor(llmq_tok *t, const cJSON *pp)
{
    if (!cJSON_IsObject(pp)) return;
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(pp, "type");
    if (!cJSON_IsString(ty)) return;
    if (!strcmp(ty->valuestring, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(pp, "processors");
        if (cJSON_IsArray(list))
            for (const cJSON *e = list->child; e; e = e->next) read_post_processor(t, e);
        return;
    }
    if (strcmp(ty->valuestring, "TemplateProcessing")) return;
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(pp, "single");
    if (!cJSON_IsArray(single) || !single->child) return;
    const cJSON *first = single->child, *last = first;
    while (last->next) last = last->next;
    for (int k = 0; k < 2; k++) {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(k ? last : first, "SpecialToken");
        const cJSON *name = st ? cJSON_GetObjectItemCaseSensitive(st, "id") : NULL;
        if (!cJSON_IsString(name)) continue;
        int32_t id = token_id_by_text(t, name->valuestring);
        if (k == 0) { t->add_bos = 1; if (t->bos < 0) t->bos = id; }
        else if (t->eos < 0) t->eos = id;
    }
}

static const char *config_token(const cJSON *cfg, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* tokenizer_config.json beside path, if any. */
static int read_config(llmq_tok *t, const char *path, llmq_err *err)
{
    char *dir = llmq_path_dir(path, err), *cpath = NULL, *text = NULL;
    size_t len;
    int rc = 0;
    if (!dir) return LLMQ_ENOMEM;
    cpath = llmq_path_join(dir, "tokenizer_config.json", err);
    free(dir);
    if (!cpath) return LLMQ_ENOMEM;
    if (!llmq_exists(cpath)) { free(cpath); return 0; }
    if ((rc = llmq_read_file(cpath, &text, &len, err))) { free(cpath); return rc; }
    cJSON *cfg = NULL;
    rc = llmq_json_parse(text, len, cpath, &cfg, err);
    free(text);
    if (!rc && !cJSON_IsObject(cfg)) rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: not a JSON object", cpath);
    if (!rc) {
        const char *bos = config_token(cfg, "bos_token"), *eos = config_token(cfg, "eos_token");
        if (bos) t->bos = token_id_by_text(t, bos);
        if (eos) t->eos = token_id_by_text(t, eos);
        const cJSON *ab = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token");
        if (cJSON_IsBool(ab)) t->add_bos = cJSON_IsTrue(ab);
    }
    cJSON_Delete(cfg);
    free(cpath);
    return rc;
}

static int parse_merge(const jctx *c, const cJSON *m, int i, const char **a, size_t *alen,
                       const char **b, size_t *blen, int *skip)
{
    char f[64];
    snprintf(f, sizeof f, "model.merges[%d]", i);
    *skip = 0;
    if (cJSON_IsString(m)) {
        /* convert_merges_to_hashmap: "#version" lines are skipped; the line
         * must split on ' ' into exactly two parts. */
        const char *s = m->valuestring, *sp = strchr(s, ' ');
        if (!strncmp(s, "#version", 8)) { *skip = 1; return 0; }
        if (!sp || strchr(sp + 1, ' ')) return jfail(c, f, "expected \"left right\" (one space)");
        *a = s; *alen = (size_t)(sp - s);
        *b = sp + 1; *blen = strlen(sp + 1);
        return 0;
    }
    if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
        cJSON_IsString(m->child->next)) {
        *a = m->child->valuestring; *alen = strlen(*a);
        *b = m->child->next->valuestring; *blen = strlen(*b);
        return 0;
    }
    return jfail(c, f, "expected a string \"left right\" or a pair [left, right]");
}

static int load_model(llmq_tok *t, const jctx *c, const cJSON *root, const cJSON **merges_out)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!model) return jfail(c, "model", "missing");
    if (!cJSON_IsObject(model)) return jfail(c, "model", "expected an object");
    const char *ty, *unk, *prefix, *suffix;
    int rc;
    if ((rc = jstr(c, model, "type", "model", &ty))) return rc;
    char q[LLMQ_QUOTE_SIZE];
    if (ty && strcmp(ty, "BPE"))
        return llmq_errorf(c->err, LLMQ_EUNSUPPORTED, "%s: 'model.type': '%s' is not supported (only BPE)",
                           c->path, llmq_quote(q, ty));
    if ((rc = jstr(c, model, "unk_token", "model", &unk)) ||
        (rc = jstr(c, model, "continuing_subword_prefix", "model", &prefix)) ||
        (rc = jstr(c, model, "end_of_word_suffix", "model", &suffix)) ||
        (rc = jbool(c, model, "fuse_unk", "model", 0, &t->fuse_unk)) ||
        (rc = jbool(c, model, "byte_fallback", "model", 0, &t->byte_fallback)) ||
        (rc = jbool(c, model, "ignore_merges", "model", 0, &t->ignore_merges)))
        return rc;
    if ((prefix && *prefix) || (suffix && *suffix))
        return llmq_errorf(c->err, LLMQ_EUNSUPPORTED, "%s: 'model': continuing_subword_prefix / "
                           "end_of_word_suffix are not supported", c->path);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout)) {
        if (!cJSON_IsNumber(dropout)) return jfail(c, "model.dropout", "expected a number or null");
        if (dropout->valuedouble != 0.0)
            return llmq_errorf(c->err, LLMQ_EUNSUPPORTED, "%s: 'model.dropout': BPE dropout (random "
                               "tokenization) is not supported", c->path);
    }
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!vocab) return jfail(c, "model.vocab", "missing");
    if (!cJSON_IsObject(vocab)) return jfail(c, "model.vocab", "expected an object");
    if (merges && !cJSON_IsNull(merges) && !cJSON_IsArray(merges)) return jfail(c, "model.merges", "expected an array");
    *merges_out = merges;
    if (unk) {
        t->unk_missing = llmq_strdup(unk, c->err);
        if (!t->unk_missing) return LLMQ_ENOMEM;
    }
    return 0;
}

static int build(llmq_tok *t, const jctx *c, const cJSON *root)
{
    int rc;
    const cJSON *merges = NULL;
    if (!cJSON_IsObject(root)) return llmq_errorf(c->err, LLMQ_EFORMAT, "%s: not a JSON object", c->path);
    if ((rc = load_model(t, c, root, &merges))) return rc;
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "model"), "vocab");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added)) return jfail(c, "added_tokens", "expected an array");

    /* pass 1: sizes and the largest id */
    long long max_id = -1, v;
    size_t n_vocab = 0, bytes = 0;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        double d = e->valuedouble;
        if (cJSON_IsNumber(e) && d >= 0 && d < TOK_MAX_ID && d == floor(d)) {
            v = (long long)d;        /* the common case, without formatting a field name */
        } else {
            char f[LLMQ_QUOTE_SIZE + 16], q[LLMQ_QUOTE_SIZE];
            snprintf(f, sizeof f, "model.vocab[\"%s\"]", llmq_quote(q, e->string));
            if ((rc = jint(c, e, f, 0, TOK_MAX_ID - 1, &v))) return rc;
        }
        if (v > max_id) max_id = v;
        n_vocab++;
        bytes += strlen(e->string) + 1;
    }
    int i = 0;
    for (const cJSON *e = added ? added->child : NULL; e; e = e->next, i++) {
        char f[64];
        snprintf(f, sizeof f, "added_tokens[%d]", i);
        if (!cJSON_IsObject(e)) return jfail(c, f, "expected an object");
        const char *content;
        if ((rc = jstr(c, e, "content", f, &content))) return rc;
        if (!content) { strcat(f, ".content"); return jfail(c, f, "missing"); }
        strcat(f, ".id");
        if ((rc = jint(c, cJSON_GetObjectItemCaseSensitive(e, "id"), f, 0, TOK_MAX_ID - 1, &v))) return rc;
        if (v > max_id) max_id = v;
        bytes += strlen(content) + 1;
        t->n_added++;
    }
    if (max_id < 0) return jfail(c, "model.vocab", "no tokens");
    t->n_ids = (int32_t)(max_id + 1);
    size_t cap = 16;
    while (cap < 2 * n_vocab + 16) cap *= 2;
    t->vmask = cap - 1;
    t->piece = llmq_calloc((size_t)t->n_ids, sizeof *t->piece, c->err);
    t->piece_len = llmq_calloc((size_t)t->n_ids, sizeof *t->piece_len, c->err);
    t->flags = llmq_calloc((size_t)t->n_ids, 1, c->err);
    t->arena = llmq_malloc(bytes, c->err);
    t->vmap = llmq_malloc(cap * sizeof *t->vmap, c->err);
    t->added = llmq_calloc(t->n_added ? t->n_added : 1, sizeof *t->added, c->err);
    if (!t->piece || !t->piece_len || !t->flags || !t->arena || !t->vmap || !t->added) return LLMQ_ENOMEM;
    memset(t->vmap, 0xff, cap * sizeof *t->vmap);

    /* pass 2: the model vocab */
    char *ap = t->arena;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int32_t id = (int32_t)e->valuedouble;
        size_t l = strlen(e->string);
        char q[LLMQ_QUOTE_SIZE], q2[LLMQ_QUOTE_SIZE];
        if (t->piece[id])
            return llmq_errorf(c->err, LLMQ_EFORMAT, "%s: 'model.vocab': id %" PRId32 " is given to both '%s' and '%s'",
                               c->path, id, llmq_quote(q, t->piece[id]), llmq_quote(q2, e->string));
        memcpy(ap, e->string, l + 1);
        t->piece[id] = ap; t->piece_len[id] = (uint32_t)l;
        ap += l + 1;
        int32_t o = vocab_put(t, id);
        if (o >= 0)
            return llmq_errorf(c->err, LLMQ_EFORMAT, "%s: 'model.vocab': token '%s' appears twice (ids %" PRId32
                               " and %" PRId32 ")", c->path, llmq_quote(q, e->string), o, id);
        t->flags[id] = TF_MODEL;
    }

    /* added tokens: AddedVocabulary::add_tokens keeps the model's id for a
     * content already in the vocab (HF only warns when the file disagrees). */
    i = 0;
    for (const cJSON *e = added ? added->child : NULL; e; e = e->next, i++) {
        added_tok *a = &t->added[i];
        char f[64];
        snprintf(f, sizeof f, "added_tokens[%d]", i);
        const char *content = cJSON_GetObjectItemCaseSensitive(e, "content")->valuestring;
        int sw, ls, rs, norm, sp;
        if ((rc = jbool(c, e, "single_word", f, 0, &sw)) || (rc = jbool(c, e, "lstrip", f, 0, &ls)) ||
            (rc = jbool(c, e, "rstrip", f, 0, &rs)) || (rc = jbool(c, e, "normalized", f, 1, &norm)) ||
            (rc = jbool(c, e, "special", f, 0, &sp)))
            return rc;
        size_t l = strlen(content);
        int32_t id = vocab_get(t, content, l);
        if (id < 0) {
            id = (int32_t)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble;
            if (t->piece[id] && (t->piece_len[id] != l || memcmp(t->piece[id], content, l))) {
                char q[LLMQ_QUOTE_SIZE], q2[LLMQ_QUOTE_SIZE];
                return llmq_errorf(c->err, LLMQ_EFORMAT, "%s: '%s.id': id %" PRId32 " of '%s' already names '%s'",
                                   c->path, f, id, llmq_quote(q, content), llmq_quote(q2, t->piece[id]));
            }
            if (!t->piece[id]) {
                memcpy(ap, content, l + 1);
                t->piece[id] = ap; t->piece_len[id] = (uint32_t)l;
                ap += l + 1;
            }
        }
        *a = (added_tok){ id, t->piece[id], l, (uint8_t)sw, (uint8_t)ls, (uint8_t)rs, (uint8_t)norm, (uint8_t)sp };
        t->flags[id] |= TF_ADDED | (sp ? TF_SPECIAL : 0);
    }

    /* merges: ranks are positions (after "#version" lines); both sides and
     * their concatenation must be vocab tokens (BpeBuilder::build). */
    if (merges && cJSON_IsArray(merges)) {
        size_t nm = (size_t)cJSON_GetArraySize(merges), mc = 16;
        while (mc < 2 * nm + 16) mc *= 2;
        t->mmask = mc - 1;
        t->mmap = llmq_malloc(mc * sizeof *t->mmap, c->err);
        if (!t->mmap) return LLMQ_ENOMEM;
        for (size_t k = 0; k < mc; k++) t->mmap[k].key = UINT64_MAX;
        tbuf cat = { 0 };
        uint32_t rank = 0;
        i = 0;
        for (const cJSON *m = merges->child; m; m = m->next, i++) {
            const char *a = NULL, *b = NULL;
            size_t al = 0, bl = 0;
            int skip;
            if ((rc = parse_merge(c, m, i, &a, &al, &b, &bl, &skip))) { free(cat.b); return rc; }
            if (skip) continue;
            int32_t ia = vocab_get(t, a, al), ib = vocab_get(t, b, bl), ic = -1;
            cat.len = 0;
            if (tbuf_add(&cat, a, al) || tbuf_add(&cat, b, bl)) { free(cat.b); return llmq_errorf(c->err, LLMQ_ENOMEM, "out of memory"); }
            if (ia >= 0 && ib >= 0) ic = vocab_get(t, cat.b, cat.len);
            if (ia < 0 || ib < 0 || ic < 0) {
                int which = ia < 0 ? 0 : ib < 0 ? 1 : 2;
                char q[LLMQ_QUOTE_SIZE];
                rc = llmq_errorf(c->err, LLMQ_EFORMAT, "%s: 'model.merges[%d]': token '%s' is not in the vocab",
                                 c->path, i, llmq_quote_n(q, which == 0 ? a : which == 1 ? b : (const char *)cat.b,
                                                          which == 0 ? al : which == 1 ? bl : cat.len));
                free(cat.b);
                return rc;
            }
            merge_put(t, ia, ib, rank++, ic);
        }
        free(cat.b);
    }

    if (t->unk_missing) {
        t->unk_id = vocab_get(t, t->unk_missing, strlen(t->unk_missing));
        if (t->unk_id >= 0) { free(t->unk_missing); t->unk_missing = NULL; }
    }
    for (int b = 0; b < 256; b++) {
        char code[8];
        snprintf(code, sizeof code, "<0x%02X>", b);
        t->bf_id[b] = vocab_get(t, code, 6);
    }

    if ((rc = parse_normalizer(t, c, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), "normalizer")) ||
        (rc = parse_pre(t, c, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), "pre_tokenizer")))
        return rc;
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    t->has_decoder = dec && !cJSON_IsNull(dec);
    if ((rc = parse_decoder(t, c, dec, "decoder"))) return rc;

    /* normalized added tokens are searched for in their normalized form */
    tbuf all = { 0 }, one = { 0 }, tmp = { 0 };
    size_t *offs = llmq_calloc(t->n_added ? t->n_added : 1, sizeof *offs, c->err);
    int fail = !offs;
    for (size_t k = 0; k < t->n_added && !fail; k++) {
        added_tok *a = &t->added[k];
        offs[k] = SIZE_MAX;
        if (!a->normalized || !t->n_norm) continue;
        fail = normalize(t, (const uint8_t *)a->match, a->match_len, &one, &tmp);
        if (fail == -4 || fail == -5) {
            free(one.b); free(tmp.b); free(all.b); free(offs);
            return fail == -4 ? norm_too_long(t, a->match_len, c->err) : re_gave_up(t, c->err);
        }
        if (!fail) { offs[k] = all.len; a->match_len = one.len; fail = tbuf_add(&all, one.b, one.len); }
    }
    free(one.b); free(tmp.b);
    if (!fail) {
        t->added_norm = (char *)all.b;
        for (size_t k = 0; k < t->n_added; k++)
            if (offs[k] != SIZE_MAX) t->added[k].match = t->added_norm + offs[k];
    } else {
        free(all.b);
    }
    free(offs);
    if (fail || build_set(t, &t->set_raw, 0) || build_set(t, &t->set_norm, 1))
        return llmq_errorf(c->err, LLMQ_ENOMEM, "out of memory");

    t->bos = t->eos = -1;
    read_post_processor(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"));
    return 0;
}

/* Well-known special token texts, when nothing names bos/eos. */
static void guess_special(llmq_tok *t)
{
    static const char *const bos[] = { "<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>" };
    static const char *const eos[] = { "</s>", "<|end_of_text|>", "<eos>", "<|endoftext|>" };
    for (size_t k = 0; k < LLMQ_ARRAY_LEN(bos) && t->bos < 0; k++) t->bos = token_id_by_text(t, bos[k]);
    for (size_t k = 0; k < LLMQ_ARRAY_LEN(eos) && t->eos < 0; k++) t->eos = token_id_by_text(t, eos[k]);
}

/* Build from root (borrowed); json[0..len) is parsed when root is NULL. */
static int load_common(llmq_tok **out, const cJSON *root, const char *json, size_t len, const char *name,
                       const char *config_path, llmq_err *err)
{
    *out = NULL;
    llmq_tok *t = llmq_calloc(1, sizeof *t, err);
    if (!t) return LLMQ_ENOMEM;
    t->unk_id = -1;
    t->scanners = 1;
    init_byte_map(t);
    if (!(t->path = llmq_strdup(name, err))) { free(t); return LLMQ_ENOMEM; }
    cJSON *parsed = NULL;
    int rc = root ? LLMQ_OK : llmq_json_parse(json, len, name, &parsed, err);
    if (!rc) {
        jctx c = { name, err };
        rc = build(t, &c, root ? root : parsed);
        cJSON_Delete(parsed);
    }
    if (!rc && config_path) rc = read_config(t, config_path, err);
    if (!rc) guess_special(t);
    if (rc) { llmq_tok_free(t); return rc; }
    *out = t;
    return LLMQ_OK;
}

int llmq_tok_load_mem(llmq_tok **out, const char *json, size_t len, const char *name, llmq_err *err)
{
    return load_common(out, NULL, json, len, name ? name : "tokenizer.json", NULL, err);
}

int llmq_tok_load_tree(llmq_tok **out, const cJSON *root, const char *name, llmq_err *err)
{
    return load_common(out, root, NULL, 0, name ? name : "tokenizer.json", NULL, err);
}

int llmq_tok_set_merges(llmq_tok *t, const llmq_tok_merge *m, size_t n, llmq_err *err)
{
    for (size_t i = 0; i < n; i++) {
        const int32_t ids[3] = { m[i].left, m[i].right, m[i].id };
        for (int k = 0; k < 3; k++)
            if (ids[k] < 0 || ids[k] >= t->n_ids || !t->piece[ids[k]])
                return llmq_errorf(err, LLMQ_EUSAGE, "%s: merge %zu names id %" PRId32 ", which is no token",
                                   t->path, i, ids[k]);
        if (t->piece_len[m[i].left] > UINT32_MAX - t->piece_len[m[i].right] ||
            t->piece_len[m[i].left] + t->piece_len[m[i].right] != t->piece_len[m[i].id] ||
            memcmp(t->piece[m[i].left], t->piece[m[i].id], t->piece_len[m[i].left]) ||
            memcmp(t->piece[m[i].right], t->piece[m[i].id] + t->piece_len[m[i].left], t->piece_len[m[i].right]))
            return llmq_errorf(err, LLMQ_EUSAGE, "%s: merge %zu: ids %" PRId32 " + %" PRId32 " do not spell id %" PRId32,
                               t->path, i, m[i].left, m[i].right, m[i].id);
    }
    if (n > SIZE_MAX / 4 / sizeof(merge_ent)) return llmq_errorf(err, LLMQ_ENOMEM, "%s: too many merges", t->path);
    size_t mc = 16;
    while (mc < 2 * n + 16) mc *= 2;
    merge_ent *map = llmq_malloc(mc * sizeof *map, err);
    if (!map) return LLMQ_ENOMEM;
    for (size_t k = 0; k < mc; k++) map[k].key = UINT64_MAX;
    free(t->mmap);
    t->mmap = map;
    t->mmask = mc - 1;
    /* a pair given twice keeps its lowest rank */
    for (size_t i = 0; i < n; i++) {
        const merge_ent *e = merge_get(t, m[i].left, m[i].right);
        if (!e || e->rank > m[i].rank) merge_put(t, m[i].left, m[i].right, m[i].rank, m[i].id);
    }
    return LLMQ_OK;
}

void llmq_tok_set_special(llmq_tok *t, int32_t bos, int32_t eos, int add_bos, int add_eos)
{
    t->bos = bos >= 0 && bos < t->n_ids ? bos : -1;
    t->eos = eos >= 0 && eos < t->n_ids ? eos : -1;
    t->add_bos = add_bos != 0;
    t->add_eos = add_eos != 0;
}

int llmq_tok_add_eos(const llmq_tok *t) { return t->add_eos; }

int llmq_tok_load(llmq_tok **out, const char *path, llmq_err *err)
{
    char *text = NULL;
    size_t len = 0;
    *out = NULL;
    int rc = llmq_read_file(path, &text, &len, err);
    if (rc) return rc;
    rc = load_common(out, NULL, text, len, path, path, err);
    free(text);
    return rc;
}
