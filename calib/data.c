/* data.c - deterministic calibration windows from text files and directories. */
#include <dirent.h>
#include <sys/stat.h>
#include <stdio.h>
#include "data.h"
#include "../lib/base/fileio.h"
#include "../lib/base/sha256.h"

typedef struct { char **v; int n, cap; } strlist;

static int push(strlist *l, const char *s, llmq_err *err)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        char **nv = realloc(l->v, (size_t)cap * sizeof *nv);
        if (!nv) return llmq_errorf(err, LLMQ_ENOMEM, "out of memory");
        l->v = nv;
        l->cap = cap;
    }
    if (!(l->v[l->n] = llmq_strdup(s, err))) return err->code;
    l->n++;
    return LLMQ_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Expand directories into their regular files (following symlinks), sorted
 * by name; a path named as such may be a stream (-, a pipe, <(cmd)). */
static int expand(const char *const *paths, int n_paths, strlist *out, llmq_err *err)
{
    for (int i = 0; i < n_paths; i++) {
        if (!llmq_exists(paths[i]) && strcmp(paths[i], "-"))
            return llmq_errorf(err, LLMQ_EIO, "%s: No such file or directory", paths[i]);
        if (!llmq_is_dir(paths[i])) {
            int rc = push(out, paths[i], err);
            if (rc) return rc;
            continue;
        }
        DIR *d = opendir(paths[i]);
        if (!d) return llmq_errorf(err, LLMQ_EIO, "%s: cannot read directory", paths[i]);
        strlist names = { 0 };
        struct dirent *e;
        int rc = LLMQ_OK;
        while (!rc && (e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char *p = llmq_path_join(paths[i], e->d_name, err);
            if (!p) { rc = err->code; break; }
            struct stat st;   /* a FIFO or device in the directory would block or never end */
            if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) rc = push(&names, p, err);
            free(p);
        }
        closedir(d);
        if (!rc) {
            qsort(names.v, (size_t)names.n, sizeof *names.v, cmp_str);
            for (int k = 0; !rc && k < names.n; k++) rc = push(out, names.v[k], err);
        }
        for (int k = 0; k < names.n; k++) free(names.v[k]);
        free(names.v);
        if (rc) return rc;
        if (names.n == 0) return llmq_errorf(err, LLMQ_EUSAGE, "%s: directory holds no files", paths[i]);
    }
    return LLMQ_OK;
}

void llmq_calib_release(llmq_calib_set *s)
{
    free(s->tokens);
    memset(s, 0, sizeof *s);
}

int llmq_calib_sample(const llmq_tok *tok, const char *const *paths, int n_paths, int samples, int seqlen,
                      uint64_t seed, llmq_calib_set *out, llmq_err *err)
{
    memset(out, 0, sizeof *out);
    if (samples < 1 || seqlen < 1) return llmq_errorf(err, LLMQ_EUSAGE, "samples and seqlen must be positive");
    strlist files = { 0 };
    int32_t **toks = NULL;
    size_t *lens = NULL;
    int rc = expand(paths, n_paths, &files, err);
    if (rc) goto out;
    toks = llmq_calloc((size_t)files.n, sizeof *toks, err);
    lens = llmq_calloc((size_t)files.n, sizeof *lens, err);
    if (!toks || !lens) { rc = err->code; goto out; }
    llmq_sha256 sh;
    llmq_sha256_init(&sh);
    uint64_t usable = 0;
    for (int i = 0; i < files.n; i++) {
        char *buf;
        size_t len;
        if ((rc = llmq_read_text(files.v[i], 0, &buf, &len, err))) goto out;
        char hdr[32];
        int k = snprintf(hdr, sizeof hdr, "%zu\n", len);
        llmq_sha256_update(&sh, hdr, (size_t)k);
        llmq_sha256_update(&sh, buf, len);
        rc = llmq_tok_encode(tok, buf, len, &toks[i], &lens[i], err);
        free(buf);
        if (rc) { llmq_error_prefix(err, "%s", files.v[i]); goto out; }
        out->text_tokens += (int64_t)lens[i];
        if (lens[i] > (size_t)seqlen) usable += lens[i] - (size_t)seqlen;
    }
    uint8_t d[32];
    llmq_sha256_final(&sh, d);
    llmq_sha256_hex(d, out->text_digest);
    if (usable == 0) {
        rc = llmq_errorf(err, LLMQ_EUSAGE, "%s%s: no file holds more than %d tokens (seqlen)", files.v[0],
                         files.n > 1 ? " and the rest" : "", seqlen);
        goto out;
    }
    size_t n;
    if (llmq_mul_ovf_size((size_t)samples, (size_t)seqlen, &n) || n > SIZE_MAX / sizeof(int32_t)) {
        rc = llmq_errorf(err, LLMQ_ENOMEM, "calibration set of %d x %d tokens is too large", samples, seqlen);
        goto out;
    }
    if (!(out->tokens = llmq_malloc(n * sizeof(int32_t), err))) { rc = err->code; goto out; }
    uint64_t st = seed;
    for (int s = 0; s < samples; s++) {
        /* one draw over all usable start positions picks file and offset together */
        uint64_t r = llmq_rand_below(&st, usable);
        int f = 0;
        for (;; f++) {
            uint64_t u = lens[f] > (size_t)seqlen ? lens[f] - (size_t)seqlen : 0;
            if (r < u) break;
            r -= u;
        }
        memcpy(out->tokens + (size_t)s * seqlen, toks[f] + r, (size_t)seqlen * sizeof(int32_t));
    }
    out->samples = samples;
    out->seqlen = seqlen;
    out->n_files = files.n;
out:
    for (int i = 0; i < files.n; i++) {
        free(files.v[i]);
        if (toks) free(toks[i]);
    }
    free(files.v);
    free(toks);
    free(lens);
    if (rc) llmq_calib_release(out);
    return rc;
}
