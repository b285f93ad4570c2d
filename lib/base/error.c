/* error.c - status strings and error formatting. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include "llmq-int.h"

static const struct { int code; const char *str; } status_strs[] = {
    { LLMQ_OK, "success" },
    { LLMQ_EGENERIC, "failure" },
    { LLMQ_EUSAGE, "usage error" },
    { LLMQ_EIO, "i/o error" },
    { LLMQ_EFORMAT, "format error" },
    { LLMQ_EUNSUPPORTED, "unsupported input" },
    { LLMQ_ENOMEM, "out of memory" },
    { LLMQ_ENONFINITE, "non-finite value" },
    { LLMQ_EVERIFY, "verification failed" },
    { LLMQ_EINTERNAL, "internal error" },
};

const char *llmq_status_str(int code)
{
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(status_strs); i++)
        if (status_strs[i].code == code) return status_strs[i].str;
    return "unknown status";
}

int llmq_errorf(llmq_err *err, llmq_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int llmq_error_prefix(llmq_err *err, const char *fmt, ...)
{
    if (!err) return LLMQ_EGENERIC;
    char pre[256], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t n = strlen(pre);
    if (n > sizeof err->msg - 3) n = sizeof err->msg - 3;
    memcpy(err->msg, pre, n);
    memcpy(err->msg + n, ": ", 2);
    size_t room = sizeof err->msg - n - 3, m = strnlen(old, sizeof old);
    if (m > room) m = room;
    memcpy(err->msg + n + 2, old, m);
    err->msg[n + 2 + m] = 0;
    return err->code;
}

void llmq_err_clear(llmq_err *err)
{
    if (err) { err->code = LLMQ_OK; err->msg[0] = 0; }
}

void *llmq_malloc(size_t n, llmq_err *err)
{
    void *p = malloc(n ? n : 1);
    if (!p) llmq_errorf(err, LLMQ_ENOMEM, "out of memory allocating %zu bytes", n);
    return p;
}

void *llmq_calloc(size_t n, size_t size, llmq_err *err)
{
    size_t tot;
    if (llmq_mul_ovf_size(n, size, &tot)) {
        llmq_errorf(err, LLMQ_ENOMEM, "allocation of %zu x %zu bytes overflows", n, size);
        return NULL;
    }
    void *p = calloc(tot ? tot : 1, 1);
    if (!p) llmq_errorf(err, LLMQ_ENOMEM, "out of memory allocating %zu bytes", tot);
    return p;
}

void *llmq_alloc_aligned(size_t n, llmq_err *err)
{
    void *p = NULL;
    size_t r = (n + 63) & ~(size_t)63;
    if (r < n || posix_memalign(&p, 64, r ? r : 64) != 0) {
        llmq_errorf(err, LLMQ_ENOMEM, "out of memory allocating %zu bytes", n);
        return NULL;
    }
    return p;
}

char *llmq_strdup(const char *s, llmq_err *err)
{
    size_t n = strlen(s) + 1;
    char *p = llmq_malloc(n, err);
    if (p) memcpy(p, s, n);
    return p;
}

size_t llmq_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp)
{
    if (!n) return 0;
    uint8_t c = s[0];
    size_t k;
    uint32_t v, min;
    if (c < 0x80) { *cp = c; return 1; }
    if ((c & 0xe0) == 0xc0) { k = 1; v = c & 0x1f; min = 0x80; }
    else if ((c & 0xf0) == 0xe0) { k = 2; v = c & 0x0f; min = 0x800; }
    else if ((c & 0xf8) == 0xf0) { k = 3; v = c & 0x07; min = 0x10000; }
    else return 0;
    if (n <= k) return 0;
    for (size_t j = 1; j <= k; j++) {
        if ((s[j] & 0xc0) != 0x80) return 0;
        v = v << 6 | (s[j] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    *cp = v;
    return k + 1;
}

/* Code points a terminal may act on rather than show: C1 controls (U+009B
 * is CSI), line / paragraph separators, bidi marks, embeddings, overrides
 * and isolates, and the BOM / zero-width no-break space. */
static int cp_hidden(uint32_t cp)
{
    return (cp >= 0x80 && cp <= 0x9f) || cp == 0x200e || cp == 0x200f || (cp >= 0x2028 && cp <= 0x202e) ||
           (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff;
}

const char *llmq_quote_n(char out[LLMQ_QUOTE_SIZE], const char *s, size_t n)
{
    const size_t keep = 80;          /* text bytes shown; the worst unit is 6, plus "..." and NUL */
    const uint8_t *p = (const uint8_t *)(s ? s : "");
    size_t i = 0, o = 0;
    if (!s) n = 0;
    while (i < n) {
        char u[8];
        size_t ul, l;
        uint32_t cp = p[i];
        if (cp >= 0x20 && cp < 0x7f && cp != '\\') { u[0] = (char)cp; ul = 1; l = 1; }
        else if (cp == '\\') { memcpy(u, "\\\\", 2); ul = 2; l = 1; }
        else if (cp == '\n' || cp == '\r' || cp == '\t') {
            u[0] = '\\'; u[1] = cp == '\n' ? 'n' : cp == '\r' ? 'r' : 't'; ul = 2; l = 1;
        } else if (cp < 0x80 || !(l = llmq_utf8_decode(p + i, n - i, &cp))) {
            ul = (size_t)snprintf(u, sizeof u, "\\x%02x", p[i]); l = 1;
        } else if (cp_hidden(cp)) {
            ul = (size_t)snprintf(u, sizeof u, "\\u%04x", (unsigned)cp);
        } else {
            memcpy(u, p + i, l); ul = l;
        }
        if (o + ul > keep) break;
        memcpy(out + o, u, ul);
        o += ul;
        i += l;
    }
    if (i < n) { memcpy(out + o, "...", 3); o += 3; }
    out[o] = 0;
    return out;
}

const char *llmq_quote(char out[LLMQ_QUOTE_SIZE], const char *s)
{
    return llmq_quote_n(out, s, s ? strlen(s) : 0);
}

double llmq_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

float llmq_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in f32 */
        float f = (float)man * 5.9604644775390625e-8f;
        return sign ? -f : f;
    }
    if (exp == 31) return llmq_bits_f32(sign | 0x7f800000u | (man << 13));
    return llmq_bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t llmq_f32_to_f16(float f)
{
    uint32_t u = llmq_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00;            /* NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00;           /* rounds to >= 65520: Inf */
    if (a < 0x38800000u) {                                 /* below 2^-14: subnormal */
        if (a < 0x33000000u) return sign;                  /* < 2^-25 rounds to 0 */
        uint32_t e = a >> 23, m = (a & 0x7fffff) | 0x800000;
        /* value = m * 2^(e-150); in units of 2^-24 that is m >> (126 - e) */
        int shift = 126 - (int)e;
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return sign | (uint16_t)q;
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1);             /* round mantissa to 10 bits */
    return sign | (uint16_t)(((r >> 13) - (112u << 10)) & 0xffff);
}
