/* faultfs.c - an LD_PRELOAD shim that makes file writes fail, for the write
 * fault tests (tests/cli/t0055-write-faults.sh) where a full tmpfs or a
 * read-only mount is out of reach.  It acts only on descriptors whose path
 * (/proc/self/fd) or on templates that contain LLMQ_FAULT_PATH:
 *   LLMQ_FAULT=write:ERRNO:N   writes succeed up to N bytes in all, then fail
 *                              with ERRNO (ENOSPC, EFBIG, EIO); ERRNO KILL:
 *                              the process kills itself with SIGKILL there;
 *                              STOP: it stops itself (SIGSTOP) there once,
 *                              holding its temp file, for the test to kill
 *   LLMQ_FAULT=fsync:ERRNO     fsync/fdatasync fail with ERRNO
 *   LLMQ_FAULT=close:ERRNO     close closes, then reports ERRNO
 *   LLMQ_FAULT=create:ERRNO    mkstemp/mkostemp/mkdtemp fail with ERRNO (EROFS)
 * Each fault that fires writes "faultfs: OP PID" to the file LLMQ_FAULT_LOG
 * if set, so a test can tell the fault was reached and by which process. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned long long written;
static int stopped;   /* STOP fired: the writes that follow go through */

static const char *fault(const char *op)
{
    const char *f = getenv("LLMQ_FAULT");
    size_t n = strlen(op);
    if (!f || strncmp(f, op, n) || f[n] != ':') return NULL;
    return f + n + 1;
}

static int err_of(const char *s)
{
    static const struct { const char *name; int e; } t[] = {
        { "ENOSPC", ENOSPC }, { "EFBIG", EFBIG }, { "EIO", EIO }, { "EROFS", EROFS }, { "EDQUOT", EDQUOT },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!strncmp(s, t[i].name, strlen(t[i].name))) return t[i].e;
    return EIO;
}

static int path_matches(const char *p)
{
    const char *want = getenv("LLMQ_FAULT_PATH");
    return want && *want && p && strstr(p, want);
}

static int fd_matches(int fd)
{
    char l[64], p[PATH_MAX];
    snprintf(l, sizeof l, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(l, p, sizeof p - 1);
    if (n < 0) return 0;
    p[n] = 0;
    return path_matches(p);
}

static void note(const char *op)
{
    const char *log = getenv("LLMQ_FAULT_LOG");
    if (!log) return;
    int (*ropen)(const char *, int, ...) = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
    int fd = ropen(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return;
    char b[64];
    int n = snprintf(b, sizeof b, "faultfs: %s %ld\n", op, (long)getpid());
    ssize_t (*rwrite)(int, const void *, size_t) = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    if (rwrite(fd, b, (size_t)n) < 0) { /* nothing to do */ }
    int (*rclose)(int) = (int (*)(int))dlsym(RTLD_NEXT, "close");
    rclose(fd);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    static ssize_t (*real)(int, const void *, size_t);
    if (!real) real = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    const char *f = fault("write");
    if (!f || !fd_matches(fd)) return real(fd, buf, n);
    const char *colon = strchr(f, ':');
    unsigned long long limit = colon ? strtoull(colon + 1, NULL, 10) : 0;
    if (written >= limit && !stopped) {
        note("write");
        if (!strncmp(f, "KILL", 4)) raise(SIGKILL);
        if (!strncmp(f, "STOP", 4)) { stopped = 1; raise(SIGSTOP); return real(fd, buf, n); }
        errno = err_of(f);
        return -1;
    }
    if (!stopped && n > limit - written) n = (size_t)(limit - written);
    ssize_t w = real(fd, buf, n);
    if (w > 0) written += (unsigned long long)w;
    return w;
}

static int fail_sync(const char *op, int fd)
{
    const char *f = fault("fsync");
    if (!f || !fd_matches(fd)) return 0;
    note(op);
    errno = err_of(f);
    return -1;
}

int fsync(int fd)
{
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return fail_sync("fsync", fd) ? -1 : real(fd);
}

int fdatasync(int fd)
{
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return fail_sync("fdatasync", fd) ? -1 : real(fd);
}

int close(int fd)
{
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "close");
    const char *f = fault("close");
    int hit = f && fd_matches(fd);
    int r = real(fd);
    if (!hit || r != 0) return r;
    note("close");
    errno = err_of(f);
    return -1;
}

static int fail_create(const char *tmpl)
{
    const char *f = fault("create");
    if (!f || !path_matches(tmpl)) return 0;
    note("create");
    errno = err_of(f);
    return 1;
}

int mkstemp(char *tmpl)
{
    static int (*real)(char *);
    if (!real) real = (int (*)(char *))dlsym(RTLD_NEXT, "mkstemp");
    return fail_create(tmpl) ? -1 : real(tmpl);
}

int mkostemp(char *tmpl, int flags)
{
    static int (*real)(char *, int);
    if (!real) real = (int (*)(char *, int))dlsym(RTLD_NEXT, "mkostemp");
    return fail_create(tmpl) ? -1 : real(tmpl, flags);
}

char *mkdtemp(char *tmpl)
{
    static char *(*real)(char *);
    if (!real) real = (char *(*)(char *))dlsym(RTLD_NEXT, "mkdtemp");
    return fail_create(tmpl) ? NULL : real(tmpl);
}
