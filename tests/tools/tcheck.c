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
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "../../formats/safetensors.h"
#include "../../lib/base/fileio.h"

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

int main(int argc, char **argv)
{
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
    fprintf(stderr, "usage: tcheck logits A B TOL | json FILE KEY | relerr A B TOL | lt A B\n");
    return 2;
}
