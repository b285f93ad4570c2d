/*
 * fuzz.h - what the libFuzzer targets in tests/fuzz/ share: a private
 * scratch directory for the readers that take a path, writing an input to a
 * file there, and splitting one input into several files.
 *
 * Each target is one process (libFuzzer runs inputs one after another), so
 * one directory per process, made on first use and removed at exit.
 */
#ifndef LLMQ_FUZZ_H
#define LLMQ_FUZZ_H

#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Separates the files packed into one input (the sharded-checkpoint target:
 * index, then shards); also in the target's dictionary. */
#define FUZZ_SEP "\n--llmq-fuzz-file--\n"

static char fuzz_dir_path[256];

static void fuzz_dir_remove(void)
{
    DIR *d = opendir(fuzz_dir_path);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", fuzz_dir_path, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(fuzz_dir_path);
}

/* The scratch directory ($TMPDIR or /tmp); a failure here is the harness's,
 * not the library's: abort so libFuzzer does not report it as a finding
 * disguised as something else. */
static inline const char *fuzz_dir(void)
{
    if (fuzz_dir_path[0]) return fuzz_dir_path;
    const char *tmp = getenv("TMPDIR");
    snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/llmq-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fuzz_dir_path)) { perror("fuzz: mkdtemp"); abort(); }
    atexit(fuzz_dir_remove);
    return fuzz_dir_path;
}

/* Write data[0..n) to name inside the scratch directory (replacing it) and
 * return its path in a static buffer. */
static inline const char *fuzz_write(const char *name, const void *data, size_t n)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) { perror(path); abort(); }
    const char *p = data;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) { perror(path); abort(); }
        p += w;
        n -= (size_t)w;
    }
    close(fd);
    return path;
}

/* Remove every file from the scratch directory (between inputs). */
static inline void fuzz_clear(void)
{
    DIR *d = opendir(fuzz_dir());
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", fuzz_dir_path, e->d_name);
        unlink(p);
    }
    closedir(d);
}

/* The next part of data[*pos..n) up to FUZZ_SEP (or the end): its start and
 * length; *pos moves past the separator.  Returns 0 when nothing is left. */
static inline int fuzz_next_part(const uint8_t *data, size_t n, size_t *pos, const uint8_t **part, size_t *len)
{
    if (*pos > n || (*pos == n && *pos != 0)) return 0;
    const size_t sl = sizeof FUZZ_SEP - 1;
    const uint8_t *s = data + *pos;
    size_t rest = n - *pos;
    const uint8_t *hit = rest >= sl ? memmem(s, rest, FUZZ_SEP, sl) : NULL;
    *part = s;
    *len = hit ? (size_t)(hit - s) : rest;
    *pos = hit ? *pos + *len + sl : n + 1;
    return 1;
}

#endif
