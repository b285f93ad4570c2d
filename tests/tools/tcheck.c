/*
 * tcheck - small comparisons the shell tests need, so they need no python:
 *   tcheck logits A.safetensors B.safetensors TOL
 *       max |a - b| over tensor "logits" after subtracting each row's max;
 *       compares the first min(rows) rows; exit 1 if above TOL
 *   tcheck json FILE KEY          print a top-level number, string or array
 *   tcheck relerr A B TOL         exit 1 unless |A - B| <= TOL * |B|
 *   tcheck lt A B                 exit 1 unless A < B
 *   tcheck poke FILE TENSOR INDEX HEX   overwrite element INDEX of TENSOR
 *                                 with the little-endian bytes of HEX (test fixtures)
 *   tcheck poke-crc FILE TENSOR INDEX HEX   the same, then record the tensor's
 *                                 new crc32 in a packed file's llmq.crc32 metadata
 *                                 (a file whose values are bad, not its checksums)
 *   tcheck q3-nibbles IN OUT      copy packed file IN to OUT with every int3
 *                                 qweight in the int4 nibble layout of files
 *                                 from before LLMQ_W_Q3 (crc32s recorded anew)
 *   tcheck cut IN OUT TENSOR      copy IN to OUT with the rows of 2-d TENSOR 4
 *                                 bytes shorter (crc32 recorded anew)
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "../../formats/safetensors.h"
#include "../../lib/base/fileio.h"
#include "../../lib/quant/quant.h"

static int load_logits(const char *path, llmq_st_file *f, const llmq_st_tensor **t)
{
    llmq_err err = { 0, "" };
    if (llmq_st_open(f, path, &err)) { fprintf(stderr, "%s\n", err.msg); return 2; }
    *t = llmq_st_find(f, "logits");
    if (!*t || (*t)->dtype != LLMQ_DT_F32 || (*t)->ndim != 2) {
        fprintf(stderr, "%s: no 2-d F32 tensor 'logits'\n", path);
        return 2;
    }
    return 0;
}

static int cmp_logits(const char *a, const char *b, double tol)
{
    llmq_st_file fa, fb;
    const llmq_st_tensor *ta, *tb;
    if (load_logits(a, &fa, &ta) || load_logits(b, &fb, &tb)) return 2;
    if (ta->shape[1] != tb->shape[1]) { fprintf(stderr, "vocab differs\n"); return 1; }
    int64_t rows = ta->shape[0] < tb->shape[0] ? ta->shape[0] : tb->shape[0], V = ta->shape[1];
    double worst = 0;
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *pa = ta->data + 4 * r * V, *pb = tb->data + 4 * r * V;
        float ma = -INFINITY, mb = -INFINITY;
        for (int64_t i = 0; i < V; i++) {
            float x = llmq_bits_f32(llmq_get_le32(pa + 4 * i)), y = llmq_bits_f32(llmq_get_le32(pb + 4 * i));
            ma = x > ma ? x : ma;
            mb = y > mb ? y : mb;
        }
        for (int64_t i = 0; i < V; i++) {
            double d = fabs((double)(llmq_bits_f32(llmq_get_le32(pa + 4 * i)) - ma) -
                            (double)(llmq_bits_f32(llmq_get_le32(pb + 4 * i)) - mb));
            if (!(d <= worst)) worst = d;
        }
    }
    printf("rows %lld max_abs_diff %.3g\n", (long long)rows, worst);
    llmq_st_close(&fa);
    llmq_st_close(&fb);
    return worst <= tol ? 0 : 1;
}

static int json_get(const char *path, const char *key)
{
    char *buf; size_t n;
    llmq_err err = { 0, "" };
    if (llmq_read_file(path, &buf, &n, &err)) { fprintf(stderr, "%s\n", err.msg); return 2; }
    cJSON *j = cJSON_ParseWithLength(buf, n);
    free(buf);
    const cJSON *v = j ? cJSON_GetObjectItemCaseSensitive(j, key) : NULL;
    if (!v) { fprintf(stderr, "%s: no key '%s'\n", path, key); cJSON_Delete(j); return 2; }
    if (cJSON_IsNumber(v)) printf("%.17g\n", v->valuedouble);
    else if (cJSON_IsString(v)) printf("%s\n", v->valuestring);
    else if (cJSON_IsArray(v)) {
        const cJSON *e;
        int first = 1;
        cJSON_ArrayForEach(e, v) { printf(first ? "%.17g" : " %.17g", e->valuedouble); first = 0; }
        printf("\n");
    } else printf("%s\n", cJSON_IsTrue(v) ? "true" : "false");
    cJSON_Delete(j);
    return 0;
}

static int poke(const char *path, const char *name, long long idx, const char *hex)
{
    llmq_st_file f;
    llmq_err err = { 0, "" };
    if (llmq_st_open(&f, path, &err)) { fprintf(stderr, "%s\n", err.msg); return 2; }
    const llmq_st_tensor *t = llmq_st_find(&f, name);
    if (!t || idx < 0 || (uint64_t)idx >= t->nelem) { fprintf(stderr, "%s: no element %lld of '%s'\n", path, idx, name); return 2; }
    size_t esz = llmq_dtype_size(t->dtype);
    long off = (long)(8 + f.header_len + t->offset + (uint64_t)idx * esz);
    unsigned long long v = strtoull(hex, NULL, 16);
    llmq_st_close(&f);
    FILE *fp = fopen(path, "r+b");
    if (!fp || fseek(fp, off, SEEK_SET)) { perror(path); return 2; }
    for (size_t i = 0; i < esz; i++) fputc((int)((v >> (8 * i)) & 0xff), fp);
    fclose(fp);
    return 0;
}

/* After poke: the tensor's crc32 goes where the header records it, as
 * <name>\":\"<8 hex digits> inside the llmq.crc32 string. */
static int fix_crc(const char *path, const char *name)
{
    llmq_st_file f;
    llmq_err err = { 0, "" };
    if (llmq_st_open(&f, path, &err)) { fprintf(stderr, "%s\n", err.msg); return 2; }
    const llmq_st_tensor *t = llmq_st_find(&f, name);
    char want[300], hex[9];
    snprintf(want, sizeof want, "%s\\\":\\\"", name);
    snprintf(hex, sizeof hex, "%08lx", crc32(crc32(0L, Z_NULL, 0), t->data, (uInt)t->nbytes));
    const char *base = (const char *)f.map.data, *at = memmem(base + 8, (size_t)f.header_len, want, strlen(want));
    long off = at ? (long)(at - base + (long)strlen(want)) : -1;
    llmq_st_close(&f);
    if (off < 0) { fprintf(stderr, "%s: no crc32 of '%s' in the header\n", path, name); return 2; }
    FILE *fp = fopen(path, "r+b");
    if (!fp || fseek(fp, off, SEEK_SET) || fwrite(hex, 1, 8, fp) != 8) { perror(path); return 2; }
    fclose(fp);
    return 0;
}

/* The scheme of linear `prefix` in a packed file's llmq.linears, or NULL. */
static const char *linear_scheme(const cJSON *linears, const char *prefix)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(linears, prefix), "scheme");
    return cJSON_IsString(s) ? s->valuestring : NULL;
}

/* Copy IN to OUT, rewriting tensors: mode 'n' = int3 qweights to nibbles,
 * 'c' = rows of tensor `cut` 4 bytes shorter.  Metadata is copied, with the
 * crc32 of every tensor recorded anew. */
static int rewrite(const char *in, const char *out, int mode, const char *cut)
{
    llmq_st_file f;
    llmq_err err = { 0, "" };
    if (llmq_st_open(&f, in, &err)) { fprintf(stderr, "%s\n", err.msg); return 2; }
    const char *ls = llmq_st_meta(&f, "llmq.linears");
    cJSON *linears = ls ? cJSON_Parse(ls) : NULL, *crcs = cJSON_CreateObject();
    llmq_st_writer *w = llmq_st_writer_new(&err);
    void **bufs = calloc(f.n_tensors + 1, sizeof *bufs);
    int rc = 0, changed = 0;
    for (size_t i = 0; i < f.n_tensors && !rc; i++) {
        const llmq_st_tensor *t = &f.tensors[i];
        const void *data = t->data;
        int64_t shape[LLMQ_ST_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        uint64_t nbytes = t->nbytes;
        size_t len = strlen(t->name);
        if (mode == 'n' && len > 8 && !strcmp(t->name + len - 8, ".qweight")) {
            char prefix[300];
            snprintf(prefix, sizeof prefix, "%.*s", (int)(len - 8), t->name);
            const char *sc = linear_scheme(linears, prefix);
            if (sc && !strncmp(sc, "int3-", 5) && t->ndim == 2 && t->shape[1] % 12 == 0) {
                int64_t rows = t->shape[0], cols = t->shape[1] / 12 * 32;
                uint8_t *nib = malloc((size_t)(rows * cols / 2));
                llmq_q3_unpack(t->data, rows, cols, strstr(sc, "-sym") != NULL, nib);
                data = bufs[i] = nib;
                shape[1] = cols / 2;
                nbytes = (uint64_t)(rows * cols / 2);
                changed++;
            }
        }
        if (mode == 'c' && !strcmp(t->name, cut) && t->ndim == 2 && t->dtype == LLMQ_DT_U8 && t->shape[1] > 4) {
            int64_t rows = t->shape[0], c0 = t->shape[1], c1 = c0 - 4;
            uint8_t *b = malloc((size_t)(rows * c1));
            for (int64_t r = 0; r < rows; r++) memcpy(b + r * c1, t->data + r * c0, (size_t)c1);
            data = bufs[i] = b;
            shape[1] = c1;
            nbytes = (uint64_t)(rows * c1);
            changed++;
        }
        char hex[9];
        snprintf(hex, sizeof hex, "%08lx", crc32(crc32(0L, Z_NULL, 0), data, (uInt)nbytes));
        cJSON_AddStringToObject(crcs, t->name, hex);
        if (llmq_st_writer_add(w, t->name, t->dtype, t->ndim, shape, data, &err)) rc = 2;
    }
    char *cs = cJSON_PrintUnformatted(crcs);
    const cJSON *e;
    cJSON_ArrayForEach(e, f.metadata)
        if (!rc && cJSON_IsString(e) &&
            llmq_st_writer_meta(w, e->string, strcmp(e->string, "llmq.crc32") ? e->valuestring : cs, &err)) rc = 2;
    if (!rc && llmq_st_writer_finish(w, out, &err)) rc = 2;
    if (rc) fprintf(stderr, "%s\n", err.msg);
    if (!rc && !changed) { fprintf(stderr, "%s: nothing to rewrite\n", in); rc = 2; }
    llmq_st_writer_free(w);
    for (size_t i = 0; i < f.n_tensors; i++) free(bufs[i]);
    free(bufs);
    free(cs);
    cJSON_Delete(crcs);
    cJSON_Delete(linears);
    llmq_st_close(&f);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "q3-nibbles")) return rewrite(argv[2], argv[3], 'n', NULL);
    if (argc == 5 && !strcmp(argv[1], "cut")) return rewrite(argv[2], argv[3], 'c', argv[4]);
    if (argc == 6 && !strcmp(argv[1], "poke-crc")) {
        int rc = poke(argv[2], argv[3], atoll(argv[4]), argv[5]);
        return rc ? rc : fix_crc(argv[2], argv[3]);
    }
    if (argc == 6 && !strcmp(argv[1], "poke")) return poke(argv[2], argv[3], atoll(argv[4]), argv[5]);
    if (argc == 5 && !strcmp(argv[1], "logits")) return cmp_logits(argv[2], argv[3], atof(argv[4]));
    if (argc == 4 && !strcmp(argv[1], "json")) return json_get(argv[2], argv[3]);
    if (argc == 5 && !strcmp(argv[1], "relerr")) {
        double a = atof(argv[2]), b = atof(argv[3]), t = atof(argv[4]);
        double e = fabs(a - b) / fabs(b);
        printf("relerr %.3g\n", e);
        return e <= t ? 0 : 1;
    }
    if (argc == 4 && !strcmp(argv[1], "lt")) return atof(argv[2]) < atof(argv[3]) ? 0 : 1;
    fprintf(stderr, "usage: tcheck logits A B TOL | json FILE KEY | relerr A B TOL | lt A B | poke FILE TENSOR INDEX HEX\n"
                    "       | poke-crc FILE TENSOR INDEX HEX | q3-nibbles IN OUT | cut IN OUT TENSOR\n");
    return 2;
}
