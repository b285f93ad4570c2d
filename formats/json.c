/*
 * json.c - strict JSON parsing on top of cJSON.
 *
 * cJSON is lenient where Python's json (what transformers reads config.json
 * and tokenizer files with) is strict: it stops at the end of the first
 * value, takes any byte <= 0x20 as whitespace, copies control bytes and
 * invalid UTF-8 into strings, reads 01 and 1. as numbers, keeps the first
 * of two equal keys where Python keeps the last, and cuts strings at an
 * escaped NUL.  cJSON parses; then one linear pass over the bytes checks
 * the lexical rules, and a walk over the tree looks for duplicate keys.
 */
#include <stdio.h>
#include "json.h"

int llmq_utf8_valid(const uint8_t *s, size_t n, size_t *bad)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        uint32_t cp;
        size_t l = llmq_utf8_decode(s + i, n - i, &cp);
        if (!l) {
            if (bad) *bad = i;
            return 0;
        }
        i += l;
    }
    return 1;
}

/* ---- the lexical pass ---- */

enum { LX_OK, LX_UTF8, LX_CTRL, LX_NUL, LX_ESC, LX_BYTE, LX_NUM, LX_EOF };
typedef struct { int kind; size_t at; uint8_t byte; } lex_err;

static int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }
static int is_hex(uint8_t c) { return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); }

static int lex_fail(lex_err *e, int kind, size_t at, uint8_t byte)
{
    e->kind = kind;
    e->at = at;
    e->byte = byte;
    return kind;
}

/* The string whose opening quote is at s[i]: *end gets the offset after
 * its closing quote. */
static int lex_string(const uint8_t *s, size_t n, size_t i, size_t *end, lex_err *e)
{
    for (i++; i < n;) {
        uint8_t c = s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') { i++; continue; }
        if (c == '"') { *end = i + 1; return LX_OK; }
        if (c < 0x20) return lex_fail(e, LX_CTRL, i, c);
        if (c == '\\') {
            if (i + 1 >= n) return lex_fail(e, LX_EOF, i, c);
            uint8_t x = s[i + 1];
            if (x == 'u') {
                if (n - i < 6 || !is_hex(s[i + 2]) || !is_hex(s[i + 3]) || !is_hex(s[i + 4]) || !is_hex(s[i + 5]))
                    return lex_fail(e, LX_ESC, i, x);
                if (!memcmp(s + i + 2, "0000", 4)) return lex_fail(e, LX_NUL, i, x);
                i += 6;
            } else if (x && strchr("\"\\/bfnrt", x)) {
                i += 2;
            } else {
                return lex_fail(e, LX_ESC, i, x);
            }
            continue;
        }
        uint32_t cp;
        size_t l = llmq_utf8_decode(s + i, n - i, &cp);
        if (!l) return lex_fail(e, LX_UTF8, i, c);
        i += l;
    }
    return lex_fail(e, LX_EOF, n, 0);
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at s[i], not followed by
 * more number characters. */
static int lex_number(const uint8_t *s, size_t n, size_t i, size_t *end, lex_err *e)
{
    size_t j = i;
    if (s[j] == '-') j++;
    if (j < n && s[j] == '0') j++;
    else if (j < n && is_digit(s[j])) while (j < n && is_digit(s[j])) j++;
    else return lex_fail(e, LX_NUM, i, s[i]);
    if (j < n && s[j] == '.') {
        if (++j >= n || !is_digit(s[j])) return lex_fail(e, LX_NUM, i, s[i]);
        while (j < n && is_digit(s[j])) j++;
    }
    if (j < n && (s[j] == 'e' || s[j] == 'E')) {
        j++;
        if (j < n && (s[j] == '+' || s[j] == '-')) j++;
        if (j >= n || !is_digit(s[j])) return lex_fail(e, LX_NUM, i, s[i]);
        while (j < n && is_digit(s[j])) j++;
    }
    if (j < n && (is_digit(s[j]) || s[j] == '.' || s[j] == 'e' || s[j] == 'E' || s[j] == '+' || s[j] == '-'))
        return lex_fail(e, LX_NUM, i, s[i]);
    *end = j;
    return LX_OK;
}

/* Every token of s[0..n) against JSON's lexical grammar (RFC 8259); the
 * structure is cJSON's to check. */
static int lex(const uint8_t *s, size_t n, lex_err *e)
{
    static const char *const lits[] = { "true", "false", "null" };
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        int rc = LX_OK;
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '{' || c == '}' || c == '[' || c == ']' ||
            c == ':' || c == ',') {
            i++;
        } else if (c == '"') {
            rc = lex_string(s, n, i, &i, e);
        } else if (c == '-' || is_digit(c)) {
            rc = lex_number(s, n, i, &i, e);
        } else {
            const char *lit = c == 't' ? lits[0] : c == 'f' ? lits[1] : c == 'n' ? lits[2] : NULL;
            size_t l = lit ? strlen(lit) : 0;
            if (!lit || n - i < l || memcmp(s + i, lit, l)) return lex_fail(e, LX_BYTE, i, c);
            i += l;
        }
        if (rc) return rc;
    }
    return LX_OK;
}

static int lex_report(const lex_err *e, const char *name, llmq_err *err)
{
    switch (e->kind) {
    case LX_UTF8:
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: invalid UTF-8 at byte %zu", name, e->at);
    case LX_CTRL:
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: raw control character 0x%02x in a string at byte %zu",
                           name, e->byte, e->at);
    case LX_NUL:
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: \\u0000 in a string at byte %zu is not supported", name, e->at);
    case LX_ESC:
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: bad escape in a string at byte %zu", name, e->at);
    case LX_NUM:
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: malformed number at byte %zu", name, e->at);
    case LX_BYTE:
        if (e->byte > 0x20 && e->byte < 0x7f)
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: unexpected '%c' at byte %zu", name, e->byte, e->at);
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: unexpected byte 0x%02x at byte %zu", name, e->byte, e->at);
    default:
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: unterminated string at byte %zu", name, e->at);
    }
}

/* ---- duplicate keys ---- */

/* Scratch open-addressing table of key pointers, reused across objects so
 * that a document with a 150k-key vocab costs one table of 512k slots. */
typedef struct { const char **slot; size_t cap; int oom; } keyset;

static size_t key_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return (size_t)(h ^ h >> 29);
}

static const char *key_of(const cJSON *c) { return c->string ? c->string : ""; }

/* A key that obj holds twice, or NULL. */
static const char *obj_dup(const cJSON *obj, keyset *ks)
{
    size_t n = 0;
    for (const cJSON *c = obj->child; c; c = c->next) n++;
    if (n < 2) return NULL;
    if (n <= 8) {
        for (const cJSON *a = obj->child; a; a = a->next)
            for (const cJSON *b = a->next; b; b = b->next)
                if (!strcmp(key_of(a), key_of(b))) return key_of(b);
        return NULL;
    }
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    if (cap > ks->cap) {
        const char **ns = realloc(ks->slot, cap * sizeof *ns);
        if (!ns) { ks->oom = 1; return NULL; }
        ks->slot = ns;
        ks->cap = cap;
    }
    memset(ks->slot, 0, cap * sizeof *ks->slot);
    for (const cJSON *c = obj->child; c; c = c->next) {
        const char *k = key_of(c);
        size_t h = key_hash(k) & (cap - 1);
        for (; ks->slot[h]; h = (h + 1) & (cap - 1))
            if (!strcmp(ks->slot[h], k)) return k;
        ks->slot[h] = k;
    }
    return NULL;
}

/* The first object under v (depth first) holding a key twice; the key in
 * *key.  cJSON refuses nesting deeper than CJSON_NESTING_LIMIT (1000), which
 * bounds the recursion. */
static const cJSON *find_dup(const cJSON *v, keyset *ks, const char **key)
{
    if (cJSON_IsObject(v) && (*key = obj_dup(v, ks))) return v;
    if (ks->oom) return NULL;
    for (const cJSON *c = v->child; c; c = c->next) {
        if (!cJSON_IsObject(c) && !cJSON_IsArray(c)) continue;
        const cJSON *d = find_dup(c, ks, key);
        if (d || ks->oom) return d;
    }
    return NULL;
}

/* The path from v to target ("model.vocab", "added_tokens[2]") into
 * buf[len..cap); 1 if target lies under v. */
static int where(const cJSON *v, const cJSON *target, char *buf, size_t cap, size_t len)
{
    if (v == target) return 1;
    int i = 0;
    for (const cJSON *c = v->child; c; c = c->next, i++) {
        if (!cJSON_IsObject(c) && !cJSON_IsArray(c)) continue;
        int w = cJSON_IsObject(v) ? snprintf(buf + len, cap - len, "%s%s", len ? "." : "", key_of(c))
                                  : snprintf(buf + len, cap - len, "[%d]", i);
        size_t l = w < 0 ? len : LLMQ_MIN(len + (size_t)w, cap - 1);
        if (where(c, target, buf, cap, l)) return 1;
        buf[len] = 0;
    }
    return 0;
}

static int dup_check(const cJSON *root, const char *name, llmq_err *err)
{
    keyset ks = { 0 };
    const char *key = NULL;
    const cJSON *obj = find_dup(root, &ks, &key);
    free(ks.slot);
    if (ks.oom) return llmq_errorf(err, LLMQ_ENOMEM, "%s: out of memory checking for duplicate keys", name);
    if (!obj) return LLMQ_OK;
    char path[256] = "", qk[LLMQ_QUOTE_SIZE], qp[LLMQ_QUOTE_SIZE];
    where(root, obj, path, sizeof path, 0);
    if (!path[0])
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: duplicate key '%s' in the top-level object", name, llmq_quote(qk, key));
    return llmq_errorf(err, LLMQ_EFORMAT, "%s: duplicate key '%s' in '%s'", name, llmq_quote(qk, key),
                       llmq_quote(qp, path));
}

/* ---- resource bounds ---- */

int llmq_json_bounds(const char *text, size_t len, const char *name, int max_depth, size_t max_values,
                     llmq_err *err)
{
    const uint8_t *s = (const uint8_t *)text;
    size_t values = 1;
    int depth = 0, opened = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = s[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
        /* the first thing after '[' or '{' other than its close is a value */
        if (opened && c != ']' && c != '}') values++;
        opened = 0;
        if (c == '"') {
            for (i++; i < len && s[i] != '"'; i++)
                if (s[i] == '\\') i++;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth)
                return llmq_errorf(err, LLMQ_EFORMAT, "%s: JSON nested deeper than %d levels at byte %zu (llmq's limit)",
                                   name, max_depth, i);
            opened = 1;
        } else if (c == ']' || c == '}') {
            if (depth > 0) depth--;
        } else if (c == ',') {
            values++;
        }
        if (values > max_values)
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: more than %zu JSON values (llmq's limit)", name, max_values);
    }
    return LLMQ_OK;
}

/* ---- the parser ---- */

int llmq_json_parse(const char *text, size_t len, const char *name, cJSON **out, llmq_err *err)
{
    *out = NULL;
    if (!text) len = 0;
    const uint8_t *s = (const uint8_t *)text;
    const char *end = NULL;
    int brc = llmq_json_bounds(text, len, name, LLMQ_JSON_MAX_DEPTH, LLMQ_JSON_MAX_VALUES, err);
    if (brc) return brc;
    cJSON *root = len ? cJSON_ParseWithLengthOpts(text, len, &end, 0) : NULL;
    lex_err le = { 0 };
    if (!root) {
        /* cJSON points end at the byte it stopped on; bad UTF-8 or a control
         * character at or before it says more */
        size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        int k = lex(s, len, &le);
        if ((k == LX_UTF8 || k == LX_CTRL || k == LX_NUL) && le.at <= at) return lex_report(&le, name, err);
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: not valid JSON (near byte %zu)", name, at);
    }
    for (size_t i = (size_t)(end - text); i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') {
            cJSON_Delete(root);
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: trailing bytes after the JSON value at byte %zu", name, i);
        }
    int rc = lex(s, len, &le) ? lex_report(&le, name, err) : dup_check(root, name, err);
    if (rc) { cJSON_Delete(root); return rc; }
    *out = root;
    return LLMQ_OK;
}

void llmq_json_add_numbers(cJSON *o, const llmq_json_num *f, size_t n)
{
    for (size_t i = 0; i < n; i++) cJSON_AddNumberToObject(o, f[i].key, f[i].value);
}
