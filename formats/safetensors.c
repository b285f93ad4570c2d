/*
 * safetensors.c - reader and writer of safetensors files and sharded
 * checkpoints.  Layout of a file:
 *
 *   u64 LE  n                       header length in bytes
 *   n bytes JSON object, UTF-8      {"__metadata__": {str: str},
 *                                    name: {"dtype": "BF16", "shape": [..],
 *                                           "data_offsets": [begin, end]}, ...}
 *                                   possibly padded with trailing spaces
 *   rest    data area               offsets are relative to its start
 *
 * Every byte of input is hostile; see safetensors.h for what is checked.
 */
#include <stdio.h>
#include <math.h>
#include "safetensors.h"
#include "json.h"

/* Integers in the header are JSON numbers read as doubles; above 2^53 they
 * are no longer exact, and no real file needs them that large. */
#define ST_MAX_INT 9007199254740992.0   /* 2^53 */
#define ST_MAX_INDEX (100u * 1024 * 1024)

static const struct { const char *name; size_t size; } dtype_info[LLMQ_DT_COUNT] = {
    [LLMQ_DT_F32] = { "F32", 4 },   [LLMQ_DT_F16] = { "F16", 2 },
    [LLMQ_DT_BF16] = { "BF16", 2 }, [LLMQ_DT_F64] = { "F64", 8 },
    [LLMQ_DT_I8] = { "I8", 1 },     [LLMQ_DT_U8] = { "U8", 1 },
    [LLMQ_DT_I16] = { "I16", 2 },   [LLMQ_DT_U16] = { "U16", 2 },
    [LLMQ_DT_I32] = { "I32", 4 },   [LLMQ_DT_U32] = { "U32", 4 },
    [LLMQ_DT_I64] = { "I64", 8 },   [LLMQ_DT_U64] = { "U64", 8 },
    [LLMQ_DT_BOOL] = { "BOOL", 1 },
    [LLMQ_DT_F8_E4M3] = { "F8_E4M3", 1 }, [LLMQ_DT_F8_E5M2] = { "F8_E5M2", 1 },
};

const char *llmq_dtype_name(llmq_dtype dt)
{
    return (unsigned)dt < LLMQ_DT_COUNT ? dtype_info[dt].name : "?";
}

int llmq_dtype_from_name(const char *s, llmq_dtype *dt)
{
    for (int i = 0; i < LLMQ_DT_COUNT; i++)
        if (strcmp(s, dtype_info[i].name) == 0) { *dt = (llmq_dtype)i; return 0; }
    return -1;
}

size_t llmq_dtype_size(llmq_dtype dt)
{
    return (unsigned)dt < LLMQ_DT_COUNT ? dtype_info[dt].size : 0;
}

/* ---- helpers ---- */

static int name_ok(const char *s)
{
    return s && s[0] && llmq_utf8_valid((const uint8_t *)s, strlen(s), NULL);
}

/* Read a JSON number that must be an integer in [0, 2^53].  0 ok, -1 not. */
static int json_u64(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!isfinite(d) || d < 0 || d > ST_MAX_INT || d != floor(d)) return -1;
    *out = (uint64_t)d;
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const llmq_st_tensor *)a)->name, ((const llmq_st_tensor *)b)->name);
}

static int cmp_offset(const void *a, const void *b)
{
    const llmq_st_tensor *x = *(const llmq_st_tensor *const *)a, *y = *(const llmq_st_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

/* ---- reader ---- */

void llmq_st_close(llmq_st_file *f)
{
    if (!f) return;
    for (size_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    cJSON_Delete(f->metadata);
    llmq_map_close(&f->map);
    free(f->path);
    memset(f, 0, sizeof *f);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A key of obj that appears twice (cJSON keeps both), or NULL.  Sorting, not
 * pairwise comparison: a hostile header may hold millions of keys.  -1 in
 * *oom if the scratch array could not be allocated. */
static const char *dup_key(const cJSON *obj, int *oom)
{
    size_t n = 0, i = 0;
    const char *dup = NULL;
    *oom = 0;
    for (const cJSON *c = obj->child; c; c = c->next) n++;
    if (n < 2) return NULL;
    const char **keys = malloc(n * sizeof *keys);
    if (!keys) { *oom = -1; return NULL; }
    for (const cJSON *c = obj->child; c; c = c->next) keys[i++] = c->string ? c->string : "";
    qsort(keys, n, sizeof *keys, cmp_str);
    for (i = 1; i < n && !dup; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0) dup = keys[i];
    free(keys);
    return dup;
}

static int parse_metadata(llmq_st_file *f, cJSON *meta, llmq_err *err)
{
    char q[LLMQ_QUOTE_SIZE];
    int oom;
    if (!cJSON_IsObject(meta))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: __metadata__ is not an object", f->path);
    for (cJSON *m = meta->child; m; m = m->next)
        if (!cJSON_IsString(m) || !m->valuestring)
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: __metadata__ key '%s': value is not a string",
                               f->path, llmq_quote(q, m->string));
    const char *d = dup_key(meta, &oom);
    if (oom) return llmq_errorf(err, LLMQ_ENOMEM, "%s: out of memory checking __metadata__", f->path);
    if (d) return llmq_errorf(err, LLMQ_EFORMAT, "%s: __metadata__ key '%s' appears twice", f->path, llmq_quote(q, d));
    return LLMQ_OK;
}

static int parse_entry(llmq_st_file *f, const cJSON *e, llmq_st_tensor *t, uint64_t data_size, llmq_err *err)
{
    char q[LLMQ_QUOTE_SIZE];
    const char *nm = llmq_quote(q, e->string);
    if (!name_ok(e->string))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': name is empty or not valid UTF-8", f->path, nm);
    if (!cJSON_IsObject(e))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': entry is not an object", f->path, nm);

    int oom;
    const char *dup = dup_key(e, &oom);
    if (oom) return llmq_errorf(err, LLMQ_ENOMEM, "%s: out of memory checking tensor '%s'", f->path, nm);
    if (dup) {
        char q2[LLMQ_QUOTE_SIZE];
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': key '%s' appears twice", f->path, nm, llmq_quote(q2, dup));
    }
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!dt || !sh || !of)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': missing \"%s\"", f->path, nm,
                           !dt ? "dtype" : !sh ? "shape" : "data_offsets");
    if (!cJSON_IsString(dt) || !dt->valuestring)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': dtype is not a string", f->path, nm);
    if (llmq_dtype_from_name(dt->valuestring, &t->dtype) != 0) {
        /* dtypes of the format that llmq does not read are a valid file it
         * cannot handle; anything else is corruption */
        static const char *const foreign[] = { "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64" };
        char q2[LLMQ_QUOTE_SIZE];
        for (size_t k = 0; k < LLMQ_ARRAY_LEN(foreign); k++)
            if (strcmp(dt->valuestring, foreign[k]) == 0)
                return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: tensor '%s': dtype %s is not supported",
                                   f->path, nm, foreign[k]);
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': unknown dtype '%s'", f->path, nm,
                           llmq_quote(q2, dt->valuestring));
    }
    if (!cJSON_IsArray(sh))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': shape is not an array", f->path, nm);
    int nd = cJSON_GetArraySize(sh);
    if (nd > LLMQ_ST_MAX_DIMS)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': %d dimensions, at most %d supported",
                           f->path, nm, nd, LLMQ_ST_MAX_DIMS);
    t->ndim = nd;
    uint64_t nelem = 1;
    int i = 0, ovf = 0;
    for (const cJSON *d = sh->child; d; d = d->next, i++) {
        uint64_t v;
        if (json_u64(d, &v) != 0)
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': shape[%d] is not an integer in 0..2^53",
                               f->path, nm, i);
        t->shape[i] = (int64_t)v;
        /* a zero dimension makes the product 0 whatever the others are */
        if (llmq_mul_ovf_u64(nelem, v, &nelem)) ovf = 1;
    }
    for (const cJSON *d = sh->child; d; d = d->next)
        if (d->valuedouble == 0) { ovf = 0; nelem = 0; }
    uint64_t nbytes;
    if (ovf || llmq_mul_ovf_u64(nelem, llmq_dtype_size(t->dtype), &nbytes))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': shape size overflows 64 bits", f->path, nm);
    t->nelem = nelem;
    t->nbytes = nbytes;

    uint64_t b, en;
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': data_offsets is not an array of 2 numbers",
                           f->path, nm);
    if (json_u64(of->child, &b) != 0 || json_u64(of->child->next, &en) != 0)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': data_offsets are not integers in 0..2^53",
                           f->path, nm);
    if (b > en)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': data_offsets begin %" PRIu64 " > end %" PRIu64,
                           f->path, nm, b, en);
    if (en > data_size)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': data ends at %" PRIu64
                           ", data area has %" PRIu64 " bytes", f->path, nm, en, data_size);
    if (en - b != nbytes)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': %s shape needs %" PRIu64
                           " bytes, data_offsets span %" PRIu64, f->path, nm,
                           llmq_dtype_name(t->dtype), nbytes, en - b);
    t->offset = b;
    return LLMQ_OK;
}

static int st_parse(llmq_st_file *f, const uint8_t *buf, uint64_t len, llmq_err *err)
{
    char q[LLMQ_QUOTE_SIZE];
    if (len < 8)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: file has %" PRIu64 " bytes, too short for the 8-byte header length",
                           f->path, len);
    uint64_t n = llmq_get_le64(buf);
    if (n > LLMQ_ST_MAX_HEADER)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: header length %" PRIu64 " exceeds the limit of %u",
                           f->path, n, LLMQ_ST_MAX_HEADER);
    if (n > len - 8)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: header length %" PRIu64 " runs past end of file (%" PRIu64 " bytes)",
                           f->path, n, len);
    if (n < 2)
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: header length %" PRIu64 " is too short for a JSON object",
                           f->path, n);
    const uint8_t *h = buf + 8;
    size_t bad;
    if (!llmq_utf8_valid(h, (size_t)n, &bad))
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: header is not valid UTF-8 at byte %zu", f->path, 8 + bad);
    /* JSON allows no raw control bytes, and a NUL, raw or as \u0000, would
     * silently cut a name short in cJSON's C strings.  Escapes are skipped
     * in pairs so that "\\u0000" (a backslash, then text) is not flagged. */
    for (size_t i = 0; i < n; i++) {
        if (h[i] < 0x20 && h[i] != '\t' && h[i] != '\n' && h[i] != '\r')
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: header has control byte 0x%02x at byte %zu",
                               f->path, h[i], 8 + i);
        if (h[i] == '\\' && i + 1 < n) {
            if (n - i >= 6 && memcmp(h + i + 1, "u0000", 5) == 0)
                return llmq_errorf(err, LLMQ_EFORMAT, "%s: header has an escaped NUL (\\u0000) at byte %zu",
                                   f->path, 8 + i);
            i++;
        }
    }

    int brc = llmq_json_bounds((const char *)h, (size_t)n, f->path, LLMQ_JSON_MAX_DEPTH, LLMQ_JSON_MAX_VALUES, err);
    if (brc) return brc;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)h, (size_t)n, &end, 0);
    if (!root) {
        /* on failure cJSON points end at the offending byte */
        size_t at = end ? (size_t)(end - (const char *)h) : 0;
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: header is not valid JSON (near byte %zu)", f->path, 8 + at);
    }
    for (const char *p = end; p < (const char *)h + n; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return llmq_errorf(err, LLMQ_EFORMAT, "%s: header has trailing bytes after the JSON object at byte %zu",
                               f->path, (size_t)(8 + (p - (const char *)h)));
        }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: header is not a JSON object", f->path);
    }

    int rc = LLMQ_OK;
    uint64_t data_size = len - 8 - n;
    size_t count = 0;
    cJSON *meta = NULL;
    llmq_st_tensor **byoff = NULL;
    for (cJSON *e = root->child; e; e = e->next) {
        if (e->string && strcmp(e->string, "__metadata__") == 0) {
            if (meta) { rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: __metadata__ appears twice", f->path); goto out; }
            meta = e;
        } else {
            count++;
        }
    }
    if (count > LLMQ_ST_MAX_TENSORS) {
        rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: header lists %zu tensors, more than %zu (llmq's limit)", f->path,
                         count, LLMQ_ST_MAX_TENSORS);
        goto out;
    }
    if (meta && (rc = parse_metadata(f, meta, err))) goto out;

    f->tensors = llmq_calloc(count, sizeof *f->tensors, err);
    if (!f->tensors) { rc = err ? err->code : LLMQ_ENOMEM; goto out; }
    for (cJSON *e = root->child; e; e = e->next) {
        if (e == meta) continue;
        llmq_st_tensor *t = &f->tensors[f->n_tensors];
        if ((rc = parse_entry(f, e, t, data_size, err))) goto out;
        t->name = llmq_strdup(e->string, err);
        if (!t->name) { rc = err ? err->code : LLMQ_ENOMEM; goto out; }
        t->data = h + n + t->offset;
        f->n_tensors++;
    }

    /* overlap: sort by offset; a non-empty span must start at or after the
     * end of every earlier non-empty span */
    byoff = llmq_calloc(count, sizeof *byoff, err);
    if (!byoff) { rc = err ? err->code : LLMQ_ENOMEM; goto out; }
    for (size_t i = 0; i < count; i++) byoff[i] = &f->tensors[i];
    if (count) qsort(byoff, count, sizeof *byoff, cmp_offset);
    const llmq_st_tensor *last = NULL;
    for (size_t i = 0; i < count; i++) {
        const llmq_st_tensor *t = byoff[i];
        if (!t->nbytes) continue;
        if (last && t->offset < last->offset + last->nbytes) {
            char q2[LLMQ_QUOTE_SIZE];
            rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': data [%" PRIu64 ", %" PRIu64
                             ") overlaps tensor '%s' [%" PRIu64 ", %" PRIu64 ")",
                             f->path, llmq_quote(q, t->name), t->offset, t->offset + t->nbytes,
                             llmq_quote(q2, last->name), last->offset, last->offset + last->nbytes);
            goto out;
        }
        last = t;
    }

    if (count) qsort(f->tensors, count, sizeof *f->tensors, cmp_name);
    for (size_t i = 1; i < count; i++)
        if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0) {
            rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s' appears twice", f->path,
                             llmq_quote(q, f->tensors[i].name));
            goto out;
        }

    if (meta) f->metadata = cJSON_DetachItemViaPointer(root, meta);
    f->header_len = n;
out:
    free(byoff);
    cJSON_Delete(root);
    return rc;
}

int llmq_st_parse(llmq_st_file *f, const uint8_t *buf, uint64_t len, const char *path, llmq_err *err)
{
    memset(f, 0, sizeof *f);
    f->path = llmq_strdup(path, err);
    if (!f->path) return err ? err->code : LLMQ_ENOMEM;
    int rc = st_parse(f, buf, len, err);
    if (rc) llmq_st_close(f);
    return rc;
}

int llmq_st_open(llmq_st_file *f, const char *path, llmq_err *err)
{
    llmq_map m;
    memset(f, 0, sizeof *f);
    int rc = llmq_map_open(&m, path, err);
    if (rc) return rc;
    rc = llmq_st_parse(f, m.data, m.size, path, err);
    if (rc) { llmq_map_close(&m); return rc; }
    f->map = m;
    return LLMQ_OK;
}

const llmq_st_tensor *llmq_st_find(const llmq_st_file *f, const char *name)
{
    size_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, f->tensors[mid].name);
        if (c == 0) return &f->tensors[mid];
        if (c < 0) hi = mid; else lo = mid + 1;
    }
    return NULL;
}

const char *llmq_st_meta(const llmq_st_file *f, const char *key)
{
    const cJSON *v = f->metadata ? cJSON_GetObjectItemCaseSensitive(f->metadata, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- checkpoints ---- */

void llmq_ckpt_close(llmq_ckpt *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->n_shards; i++) llmq_st_close(&c->shards[i]);
    free(c->shards);
    free(c->dir);
    memset(c, 0, sizeof *c);
}

/* A shard name in an index must be a plain file name in the same directory,
 * without control characters (it goes into messages as part of a path). */
static int shard_name_ok(const char *s)
{
    if (!name_ok(s) || strchr(s, '/') || strchr(s, '\\') || strstr(s, "..")) return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f) return 0;
    return 1;
}

typedef struct {
    const char *tensor;        /* borrowed from the parsed index */
    const char *shard;
    size_t k;                  /* index into c->shards */
} ix_entry;

static int cmp_ix_shard(const void *a, const void *b)
{
    return strcmp(((const ix_entry *)a)->shard, ((const ix_entry *)b)->shard);
}

static int cmp_ix_tensor(const void *a, const void *b)
{
    return strcmp(((const ix_entry *)a)->tensor, ((const ix_entry *)b)->tensor);
}

static int ckpt_open_index(llmq_ckpt *c, const char *ipath, llmq_err *err)
{
    char q[LLMQ_QUOTE_SIZE], q2[LLMQ_QUOTE_SIZE];
    char *text = NULL;
    size_t len = 0;
    int rc = llmq_read_file(ipath, &text, &len, err);
    if (rc) return rc;
    if (len > ST_MAX_INDEX) {
        free(text);
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: index is %zu bytes, over the limit of %u", ipath, len, ST_MAX_INDEX);
    }
    /* strict: no duplicate keys, and no \u0000 to cut a tensor or shard
     * name short in cJSON's C strings */
    cJSON *root = NULL;
    ix_entry *ix = NULL;
    size_t n = 0, n_names = 0;
    if ((rc = llmq_json_parse(text, len, ipath, &root, err))) goto out;
    cJSON *wm = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!cJSON_IsObject(wm)) {
        rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: no \"weight_map\" object", ipath);
        goto out;
    }
    for (cJSON *e = wm->child; e; e = e->next) n++;
    if (n == 0) { rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: weight_map is empty", ipath); goto out; }
    ix = llmq_calloc(n, sizeof *ix, err);
    if (!ix) { rc = err ? err->code : LLMQ_ENOMEM; goto out; }
    size_t i = 0;
    for (cJSON *e = wm->child; e; e = e->next, i++) {
        if (!name_ok(e->string)) {
            rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: weight_map: tensor '%s': name is empty or not valid UTF-8",
                             ipath, llmq_quote(q, e->string));
            goto out;
        }
        if (!cJSON_IsString(e) || !e->valuestring) {
            rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: weight_map: tensor '%s': shard is not a string",
                             ipath, llmq_quote(q, e->string));
            goto out;
        }
        if (!shard_name_ok(e->valuestring)) {
            rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: weight_map: tensor '%s': shard '%s' is not a plain file name",
                             ipath, llmq_quote(q, e->string), llmq_quote(q2, e->valuestring));
            goto out;
        }
        ix[i].tensor = e->string;
        ix[i].shard = e->valuestring;
    }

    /* distinct shards, in name order */
    qsort(ix, n, sizeof *ix, cmp_ix_shard);
    for (i = 0; i < n; i++) {
        if (i && strcmp(ix[i - 1].shard, ix[i].shard) != 0) n_names++;
        ix[i].k = n_names;
    }
    n_names++;
    c->shards = llmq_calloc(n_names, sizeof *c->shards, err);
    if (!c->shards) { rc = err ? err->code : LLMQ_ENOMEM; goto out; }
    for (i = 0; i < n; i++) {
        if (i && ix[i].k == ix[i - 1].k) continue;
        char *sp = llmq_path_join(c->dir, ix[i].shard, err);
        if (!sp) { rc = err ? err->code : LLMQ_ENOMEM; goto out; }
        rc = llmq_st_open(&c->shards[ix[i].k], sp, err);
        free(sp);
        if (rc) goto out;
        c->n_shards++;
    }

    /* every listed tensor is listed once and is in its shard */
    qsort(ix, n, sizeof *ix, cmp_ix_tensor);
    for (i = 0; i < n; i++) {
        if (i && strcmp(ix[i - 1].tensor, ix[i].tensor) == 0) {
            rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: weight_map: tensor '%s' listed twice",
                             ipath, llmq_quote(q, ix[i].tensor));
            goto out;
        }
        if (!llmq_st_find(&c->shards[ix[i].k], ix[i].tensor)) {
            rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': not in its shard '%s'",
                             ipath, llmq_quote(q, ix[i].tensor), llmq_quote(q2, ix[i].shard));
            goto out;
        }
    }
    /* and no shard holds a tensor the index does not assign to it (which
     * also catches a tensor stored in two shards) */
    for (size_t k = 0; k < c->n_shards; k++) {
        const llmq_st_file *s = &c->shards[k];
        for (size_t t = 0; t < s->n_tensors; t++) {
            ix_entry key = { .tensor = s->tensors[t].name };
            const ix_entry *v = bsearch(&key, ix, n, sizeof *ix, cmp_ix_tensor);
            if (!v) {
                rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': stored in '%s' but not in the index",
                                 ipath, llmq_quote(q, s->tensors[t].name), llmq_quote(q2, s->path));
                goto out;
            }
            if (v->k != k) {
                char q3[LLMQ_QUOTE_SIZE];
                rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: tensor '%s': stored in '%s' too, index names '%s'",
                                 ipath, llmq_quote(q, s->tensors[t].name), llmq_quote(q2, s->path), llmq_quote(q3, v->shard));
                goto out;
            }
        }
    }
out:
    free(ix);
    cJSON_Delete(root);
    free(text);
    return rc;
}

int llmq_ckpt_open(llmq_ckpt *c, const char *path, llmq_err *err)
{
    memset(c, 0, sizeof *c);
    int rc;
    char *file = NULL;
    int is_index = 0;
    if (llmq_is_dir(path)) {
        c->dir = llmq_strdup(path, err);
        if (!c->dir) return err ? err->code : LLMQ_ENOMEM;
        file = llmq_path_join(path, "model.safetensors", err);
        if (!file) { rc = err ? err->code : LLMQ_ENOMEM; goto fail; }
        if (!llmq_exists(file)) {
            free(file);
            file = llmq_path_join(path, "model.safetensors.index.json", err);
            if (!file) { rc = err ? err->code : LLMQ_ENOMEM; goto fail; }
            if (!llmq_exists(file)) {
                rc = llmq_errorf(err, LLMQ_EIO, "%s: no model.safetensors or model.safetensors.index.json", path);
                goto fail;
            }
            is_index = 1;
        }
    } else {
        c->dir = llmq_path_dir(path, err);
        if (!c->dir) return err ? err->code : LLMQ_ENOMEM;
        file = llmq_strdup(path, err);
        if (!file) { rc = err ? err->code : LLMQ_ENOMEM; goto fail; }
        size_t n = strlen(path);
        is_index = n >= 5 && strcmp(path + n - 5, ".json") == 0;
    }
    if (is_index) {
        rc = ckpt_open_index(c, file, err);
    } else {
        c->shards = llmq_calloc(1, sizeof *c->shards, err);
        if (!c->shards) { rc = err ? err->code : LLMQ_ENOMEM; goto fail; }
        rc = llmq_st_open(&c->shards[0], file, err);
        if (!rc) c->n_shards = 1;
    }
    if (rc) goto fail;
    free(file);
    return LLMQ_OK;
fail:
    free(file);
    llmq_ckpt_close(c);
    return rc;
}

void llmq_ckpt_release(const llmq_ckpt *c, const llmq_st_tensor *t)
{
    for (size_t i = 0; i < c->n_shards; i++) {
        const llmq_st_file *f = &c->shards[i];
        if (f->n_tensors && t >= f->tensors && t < f->tensors + f->n_tensors) {
            llmq_map_release(&f->map, t->data, t->nbytes);
            return;
        }
    }
}

void llmq_ckpt_release_bytes(const llmq_ckpt *c, const void *p, uint64_t n)
{
    for (size_t i = 0; i < c->n_shards; i++) llmq_map_release(&c->shards[i].map, p, n);   /* no-op outside a map */
}

const llmq_st_tensor *llmq_ckpt_find(const llmq_ckpt *c, const char *name, const llmq_st_file **shard)
{
    for (size_t k = 0; k < c->n_shards; k++) {
        const llmq_st_tensor *t = llmq_st_find(&c->shards[k], name);
        if (t) {
            if (shard) *shard = &c->shards[k];
            return t;
        }
    }
    if (shard) *shard = NULL;
    return NULL;
}

uint64_t llmq_ckpt_bytes(const llmq_ckpt *c)
{
    uint64_t tot = 0;
    for (size_t k = 0; k < c->n_shards; k++)
        for (size_t i = 0; i < c->shards[k].n_tensors; i++) tot += c->shards[k].tensors[i].nbytes;
    return tot;
}

/* ---- writer ---- */

typedef struct {
    char *name;
    llmq_dtype dtype;
    int ndim;
    int64_t shape[LLMQ_ST_MAX_DIMS];
    uint64_t nbytes;
    const void *data;          /* borrowed, or NULL with fill */
    llmq_st_fill_fn fill;
    void *ctx;
} st_wentry;

struct llmq_st_writer {
    st_wentry *ents;
    size_t n, cap;
    cJSON *meta;               /* object of strings, or NULL */
    int finished;
};

llmq_st_writer *llmq_st_writer_new(llmq_err *err)
{
    return llmq_calloc(1, sizeof(llmq_st_writer), err);
}

void llmq_st_writer_free(llmq_st_writer *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) free(w->ents[i].name);
    free(w->ents);
    cJSON_Delete(w->meta);
    free(w);
}

static int writer_add(llmq_st_writer *w, const char *name, llmq_dtype dt, int ndim, const int64_t *shape,
                      const void *data, llmq_st_fill_fn fill, void *ctx, llmq_err *err)
{
    char q[LLMQ_QUOTE_SIZE];
    const char *nm = llmq_quote(q, name);
    if (w->finished) return LLMQ_BUG(err, "safetensors writer used after finish");
    if (!name_ok(name) || strcmp(name, "__metadata__") == 0)
        return llmq_errorf(err, LLMQ_EFORMAT, "tensor '%s': name is empty, reserved or not valid UTF-8", nm);
    if ((unsigned)dt >= LLMQ_DT_COUNT)
        return llmq_errorf(err, LLMQ_EFORMAT, "tensor '%s': bad dtype %d", nm, (int)dt);
    if (ndim < 0 || ndim > LLMQ_ST_MAX_DIMS || (ndim && !shape))
        return llmq_errorf(err, LLMQ_EFORMAT, "tensor '%s': %d dimensions, 0..%d supported", nm, ndim, LLMQ_ST_MAX_DIMS);
    uint64_t nelem = 1;
    int ovf = 0, zero = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (double)shape[i] > ST_MAX_INT)
            return llmq_errorf(err, LLMQ_EFORMAT, "tensor '%s': shape[%d] = %" PRId64 " is out of range",
                               nm, i, shape[i]);
        if (shape[i] == 0) zero = 1;
        if (llmq_mul_ovf_u64(nelem, (uint64_t)shape[i], &nelem)) ovf = 1;
    }
    if (zero) { nelem = 0; ovf = 0; }
    uint64_t nbytes;
    if (ovf || llmq_mul_ovf_u64(nelem, llmq_dtype_size(dt), &nbytes) || (double)nbytes > ST_MAX_INT)
        return llmq_errorf(err, LLMQ_EFORMAT, "tensor '%s': size overflows", nm);
    if (nbytes && !data && !fill)
        return llmq_errorf(err, LLMQ_EFORMAT, "tensor '%s': no data", nm);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->ents[i].name, name) == 0)
            return llmq_errorf(err, LLMQ_EFORMAT, "tensor '%s': added twice", nm);
    if (w->n == w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 64;
        st_wentry *ne = realloc(w->ents, nc * sizeof *ne);
        if (!ne) return llmq_errorf(err, LLMQ_ENOMEM, "tensor '%s': out of memory", nm);
        w->ents = ne;
        w->cap = nc;
    }
    st_wentry *e = &w->ents[w->n];
    memset(e, 0, sizeof *e);
    e->name = llmq_strdup(name, err);
    if (!e->name) return err ? err->code : LLMQ_ENOMEM;
    e->dtype = dt;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->nbytes = nbytes;
    e->data = data;
    e->fill = fill;
    e->ctx = ctx;
    w->n++;
    return LLMQ_OK;
}

int llmq_st_writer_add(llmq_st_writer *w, const char *name, llmq_dtype dt,
                       int ndim, const int64_t *shape, const void *data, llmq_err *err)
{
    return writer_add(w, name, dt, ndim, shape, data, NULL, NULL, err);
}

int llmq_st_writer_add_fill(llmq_st_writer *w, const char *name, llmq_dtype dt, int ndim,
                            const int64_t *shape, llmq_st_fill_fn fill, void *ctx, llmq_err *err)
{
    if (!fill) return LLMQ_BUG(err, "llmq_st_writer_add_fill without a fill function");
    return writer_add(w, name, dt, ndim, shape, NULL, fill, ctx, err);
}

int llmq_st_writer_meta(llmq_st_writer *w, const char *key, const char *value, llmq_err *err)
{
    char q[LLMQ_QUOTE_SIZE];
    if (!name_ok(key) || !value || !llmq_utf8_valid((const uint8_t *)value, strlen(value), NULL))
        return llmq_errorf(err, LLMQ_EFORMAT, "metadata '%s': key empty or key/value not valid UTF-8", llmq_quote(q, key));
    if (!w->meta && !(w->meta = cJSON_CreateObject()))
        return llmq_errorf(err, LLMQ_ENOMEM, "metadata: out of memory");
    if (cJSON_GetObjectItemCaseSensitive(w->meta, key))
        return llmq_errorf(err, LLMQ_EFORMAT, "metadata '%s': set twice", llmq_quote(q, key));
    if (!cJSON_AddStringToObject(w->meta, key, value))
        return llmq_errorf(err, LLMQ_ENOMEM, "metadata: out of memory");
    return LLMQ_OK;
}

static int cmp_wentry(const void *a, const void *b)
{
    return strcmp(((const st_wentry *)a)->name, ((const st_wentry *)b)->name);
}

/* Integers go in raw so that no value prints in exponent form. */
static cJSON *raw_u64(uint64_t v)
{
    char s[24];
    snprintf(s, sizeof s, "%" PRIu64, v);
    return cJSON_CreateRaw(s);
}

static char *writer_header(llmq_st_writer *w, const char *path, llmq_err *err)
{
    cJSON *root = cJSON_CreateObject();
    if (!root) goto oom;
    if (w->meta) {
        cJSON *m = cJSON_Duplicate(w->meta, 1);
        if (!m || !cJSON_AddItemToObject(root, "__metadata__", m)) { cJSON_Delete(m); goto oom; }
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        st_wentry *e = &w->ents[i];
        cJSON *t = cJSON_CreateObject(), *sh = cJSON_CreateArray(), *of = cJSON_CreateArray();
        int ok = t && sh && of && cJSON_AddStringToObject(t, "dtype", llmq_dtype_name(e->dtype));
        for (int d = 0; ok && d < e->ndim; d++) ok = cJSON_AddItemToArray(sh, raw_u64((uint64_t)e->shape[d]));
        ok = ok && cJSON_AddItemToArray(of, raw_u64(off)) && cJSON_AddItemToArray(of, raw_u64(off + e->nbytes));
        /* attach first so that one delete of root frees everything */
        if (sh && !(t && cJSON_AddItemToObject(t, "shape", sh))) { cJSON_Delete(sh); ok = 0; }
        if (of && !(t && cJSON_AddItemToObject(t, "data_offsets", of))) { cJSON_Delete(of); ok = 0; }
        if (t && !cJSON_AddItemToObject(root, e->name, t)) { cJSON_Delete(t); ok = 0; }
        if (!ok) goto oom;
        off += e->nbytes;
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!s) goto oom;
    return s;
oom:
    cJSON_Delete(root);
    llmq_errorf(err, LLMQ_ENOMEM, "%s: out of memory building the header", path);
    return NULL;
}

int llmq_st_writer_finish(llmq_st_writer *w, const char *path, llmq_err *err)
{
    if (w->finished) return LLMQ_BUG(err, "llmq_st_writer_finish called twice");
    w->finished = 1;
    if (w->n) qsort(w->ents, w->n, sizeof *w->ents, cmp_wentry);
    char *json = writer_header(w, path, err);
    if (!json) return err ? err->code : LLMQ_ENOMEM;
    size_t jl = strlen(json);
    size_t pad = (64 - (8 + jl) % 64) % 64;
    uint64_t hl = (uint64_t)jl + pad;
    uint8_t lenbuf[8];
    llmq_put_le64(lenbuf, hl);

    uint64_t maxfill = 0;
    for (size_t i = 0; i < w->n; i++)
        if (w->ents[i].fill && w->ents[i].nbytes > maxfill) maxfill = w->ents[i].nbytes;
    void *fillbuf = NULL;
    if (maxfill) {
        if (maxfill > SIZE_MAX) { free(json); return llmq_errorf(err, LLMQ_ENOMEM, "%s: tensor too large", path); }
        fillbuf = llmq_alloc_aligned((size_t)maxfill, err);
        if (!fillbuf) { free(json); return llmq_error_prefix(err, "%s", path); }
    }

    llmq_out o;
    int rc = llmq_out_open(&o, path, err);
    if (rc) { free(json); free(fillbuf); return rc; }
    static const char spaces[64] = "                                                               ";
    rc = llmq_out_write(&o, lenbuf, 8, err);
    if (!rc) rc = llmq_out_write(&o, json, jl, err);
    if (!rc) rc = llmq_out_write(&o, spaces, pad, err);
    free(json);
    for (size_t i = 0; !rc && i < w->n; i++) {
        st_wentry *e = &w->ents[i];
        if (!e->nbytes) continue;
        const void *src = e->data;
        if (e->fill) {
            rc = e->fill(e->ctx, e->name, fillbuf, e->nbytes, err);
            if (rc) break;
            src = fillbuf;
        }
        rc = llmq_out_write(&o, src, (size_t)e->nbytes, err);
    }
    free(fillbuf);
    if (rc) { llmq_out_abort(&o); return rc; }
    return llmq_out_commit(&o, err);
}

/* One loop per dtype: a switch per element kept it scalar. */
void llmq_st_tensor_f32(const llmq_st_tensor *t, float *out)
{
    const uint8_t *p = t->data;
    uint64_t n = t->nelem;
    switch (t->dtype) {
    case LLMQ_DT_F32: for (uint64_t i = 0; i < n; i++) out[i] = llmq_bits_f32(llmq_get_le32(p + 4 * i)); break;
    case LLMQ_DT_BF16: for (uint64_t i = 0; i < n; i++) out[i] = llmq_bf16_to_f32(llmq_get_le16(p + 2 * i)); break;
    case LLMQ_DT_F16: for (uint64_t i = 0; i < n; i++) out[i] = llmq_f16_to_f32(llmq_get_le16(p + 2 * i)); break;
    default: memset(out, 0, (size_t)n * sizeof(float)); break;
    }
}

int llmq_st_put_f32(void *buf, llmq_dtype dt, const float *v, uint64_t n, const char *name, llmq_err *err)
{
    if (dt != LLMQ_DT_F32 && dt != LLMQ_DT_BF16 && dt != LLMQ_DT_F16) return LLMQ_BUG(err, "float output dtype");
    for (uint64_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return llmq_errorf(err, LLMQ_ENONFINITE, "tensor '%s' became non-finite at %" PRIu64, name, i);
    uint8_t *o = buf;
    if (dt == LLMQ_DT_F32) {
        for (uint64_t i = 0; i < n; i++) llmq_put_le32(o + 4 * i, llmq_f32_bits(v[i]));
    } else if (dt == LLMQ_DT_BF16) {
        for (uint64_t i = 0; i < n; i++) llmq_put_le16(o + 2 * i, llmq_f32_to_bf16(v[i]));
    } else {
        for (uint64_t i = 0; i < n; i++) llmq_put_le16(o + 2 * i, llmq_f32_to_f16(v[i]));
    }
    return LLMQ_OK;
}
