/* fileio.c - mmap'ed inputs and atomic outputs (temp file, fsync, rename). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>
#include "fileio.h"

/* Read fd to EOF into a malloc'ed buffer; more
 * than max bytes is refused, so a stream with no end (/dev/zero) fails
 * cleanly instead of taking all memory. */
static int read_fd_all(int fd, const char *path, uint64_t max, uint8_t **out, uint64_t *len, llmq_err *err)
{
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = llmq_malloc(cap, err);
    if (!buf) return err ? err->code : LLMQ_ENOMEM;
    for (;;) {
        if (n == cap) {
            if ((uint64_t)n > max) {
                free(buf);
                return llmq_errorf(err, LLMQ_EIO, "%s: more than %" PRIu64 " bytes; llmq reads at most that much", path, max);
            }
            size_t nc = (uint64_t)cap * 2 > max + 1 ? (size_t)(max + 1) : cap * 2;
            uint8_t *nb = realloc(buf, nc);
            if (!nb) { free(buf); return llmq_errorf(err, LLMQ_ENOMEM, "%s: out of memory reading", path); }
            buf = nb; cap = nc;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR) continue;
            free(buf);
            return llmq_errorf(err, LLMQ_EIO, "%s: read failed: %s", path, strerror(errno));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    if ((uint64_t)n > max) {
        free(buf);
        return llmq_errorf(err, LLMQ_EIO, "%s: more than %" PRIu64 " bytes; llmq reads at most that much", path, max);
    }
    *out = buf;
    *len = n;
    return LLMQ_OK;
}

static const char *file_kind(mode_t mode)
{
    return S_ISDIR(mode) ? "a directory" : S_ISCHR(mode) ? "a character device" : S_ISBLK(mode) ? "a block device"
         : S_ISFIFO(mode) ? "a FIFO" : S_ISSOCK(mode) ? "a socket" : "not a regular file";
}

/* Open path for reading and check that it is a regular file.  O_NONBLOCK
 * keeps open(2) of a FIFO from waiting for a writer; it is cleared after. */
static int open_regular(const char *path, struct stat *st, llmq_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        llmq_errorf(err, LLMQ_EIO, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, st) != 0) {
        int e = errno; close(fd);
        llmq_errorf(err, LLMQ_EIO, "%s: %s", path, strerror(e));
        return -1;
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        llmq_errorf(err, LLMQ_EIO, "%s: is %s, not a regular file", path, file_kind(st->st_mode));
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

int llmq_map_open(llmq_map *m, const char *path, llmq_err *err)
{
    memset(m, 0, sizeof *m);
    struct stat st;
    int fd = open_regular(path, &st, err);
    if (fd < 0) return err ? err->code : LLMQ_EIO;
    if (st.st_size == 0) {
        close(fd);
        if (!(m->data = llmq_malloc(1, err))) return err ? err->code : LLMQ_ENOMEM;
        m->size = 0; m->mapped = 0;
        return LLMQ_OK;
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return llmq_errorf(err, LLMQ_EIO, "%s: too large to map", path);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return llmq_errorf(err, LLMQ_EIO, "%s: mmap failed: %s", path, strerror(e));
    m->data = p; m->size = (uint64_t)st.st_size; m->mapped = 1;
    return LLMQ_OK;
}

void llmq_map_close(llmq_map *m)
{
    if (!m || !m->data) return;
    if (m->mapped) munmap((void *)m->data, (size_t)m->size);
    else free((void *)m->data);
    m->data = NULL; m->size = 0;
}

void llmq_map_release(const llmq_map *m, const void *p, uint64_t n)
{
    if (!m->mapped || !p || !n) return;
    uintptr_t base = (uintptr_t)m->data, a = (uintptr_t)p;
    if (a < base || a - base > m->size || n > m->size - (a - base)) return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    if (!llmq_is_pow2((int64_t)page)) return;
    uintptr_t lo = (a + page - 1) & ~(page - 1), hi = (a + (uintptr_t)n) & ~(page - 1);
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* read_fd_all, then a NUL after the bytes (the buffer may be exactly full). */
static int read_fd_nul(int fd, const char *path, uint64_t max, char **out, size_t *len, llmq_err *err)
{
    uint8_t *b = NULL;
    uint64_t n = 0;
    int rc = read_fd_all(fd, path, max, &b, &n, err);
    if (rc) return rc;
    uint8_t *nb = realloc(b, (size_t)n + 1);
    if (!nb) { free(b); return llmq_errorf(err, LLMQ_ENOMEM, "%s: out of memory", path); }
    nb[n] = 0;
    *out = (char *)nb;
    if (len) *len = (size_t)n;
    return LLMQ_OK;
}

int llmq_read_file(const char *path, char **out, size_t *len, llmq_err *err)
{
    struct stat st;
    int fd = open_regular(path, &st, err);
    if (fd < 0) return err ? err->code : LLMQ_EIO;
    if ((uint64_t)st.st_size > LLMQ_READ_FILE_MAX) {
        close(fd);
        return llmq_errorf(err, LLMQ_EIO, "%s: %" PRIu64 " bytes, more than the %" PRIu64 " llmq reads into memory",
                           path, (uint64_t)st.st_size, (uint64_t)LLMQ_READ_FILE_MAX);
    }
    int rc = read_fd_nul(fd, path, LLMQ_READ_FILE_MAX, out, len, err);
    close(fd);
    return rc;
}

int llmq_read_stream(const char *path, uint64_t max, char **out, size_t *len, llmq_err *err)
{
    if (strcmp(path, "-") == 0) return read_fd_nul(0, "<stdin>", max, out, len, err);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return llmq_errorf(err, LLMQ_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno; close(fd);
        return llmq_errorf(err, LLMQ_EIO, "%s: %s", path, strerror(e));
    }
    int rc;
    if (S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode))
        rc = llmq_errorf(err, LLMQ_EIO, "%s: is %s", path, file_kind(st.st_mode));
    else if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max)
        rc = llmq_errorf(err, LLMQ_EIO, "%s: %" PRIu64 " bytes, more than the %" PRIu64 " llmq reads into memory",
                         path, (uint64_t)st.st_size, max);
    else
        rc = read_fd_nul(fd, path, max, out, len, err);
    close(fd);
    return rc;
}

int llmq_read_text(const char *path, int keep_cr, char **out, size_t *len, llmq_err *err)
{
    size_t n;
    int rc = llmq_read_stream(path, LLMQ_READ_STREAM_MAX, out, &n, err);
    if (rc || keep_cr) { if (!rc && len) *len = n; return rc; }
    char *s = *out;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r') {
            s[k++] = '\n';
            if (i + 1 < n && s[i + 1] == '\n') i++;
        } else {
            s[k++] = s[i];
        }
    }
    s[k] = 0;
    if (len) *len = k;
    return LLMQ_OK;
}

char *llmq_path_join(const char *dir, const char *name, llmq_err *err)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = llmq_malloc(a + b + 2, err);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

char *llmq_path_dir(const char *path, llmq_err *err)
{
    const char *s = strrchr(path, '/');
    if (!s) return llmq_strdup(".", err);
    if (s == path) return llmq_strdup("/", err);
    size_t n = (size_t)(s - path);
    char *p = llmq_malloc(n + 1, err);
    if (p) { memcpy(p, path, n); p[n] = 0; }
    return p;
}

static int fsync_dir_of(const char *path)
{
    char *d = llmq_path_dir(path, NULL);
    if (!d) return -1;
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(d);
    if (fd < 0) return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

/* The path an output replaces: path itself or, when path is a symbolic
 * link, the file it resolves to (the link stays a link).  What is there must
 * be a regular file (want_dir: a directory) or nothing: a device, FIFO or
 * socket would be replaced by the rename, and a dangling link would have to
 * be followed to a place nobody named.  Malloc'ed, or NULL with err. */
static char *resolve_output(const char *path, int want_dir, llmq_err *err)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) return llmq_strdup(path, err);
        llmq_errorf(err, LLMQ_EIO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *real;
    if (S_ISLNK(st.st_mode)) {
        if (!(real = realpath(path, NULL))) {
            if (errno == ENOENT)
                llmq_errorf(err, LLMQ_EUSAGE, "%s: is a dangling symbolic link; llmq writes only to an existing link target", path);
            else
                llmq_errorf(err, LLMQ_EIO, "%s: %s", path, strerror(errno));
            return NULL;
        }
        if (stat(real, &st) != 0) {
            llmq_errorf(err, LLMQ_EIO, "%s: %s", path, strerror(errno));
            free(real);
            return NULL;
        }
    } else if (!(real = llmq_strdup(path, err))) {
        return NULL;
    }
    if (want_dir && !S_ISDIR(st.st_mode)) {
        llmq_errorf(err, LLMQ_EUSAGE, "%s: exists and is not a directory", path);
        free(real);
        return NULL;
    }
    if (!want_dir && !S_ISREG(st.st_mode)) {
        llmq_errorf(err, LLMQ_EUSAGE, "%s: is %s, not a regular file; llmq writes outputs atomically", path,
                    file_kind(st.st_mode));
        free(real);
        return NULL;
    }
    return real;
}

/* Temp names are ".<base>.llmq-XXXXXX" beside the output.  A writer holds an
 * exclusive flock(2) on its temp file (or temp directory) from creation to
 * rename, and the kernel drops it when the process dies, kill -9 included.
 * So a temp of this name that can be locked belongs to no live llmq and is
 * removed by the next run writing the same output (stale_sweep).  Names of
 * other patterns, other outputs' temps and locked temps are never touched. */
#define TMP_INFIX ".llmq-"
#define TMP_XLEN 6

static char *temp_template(const char *path, llmq_err *err)
{
    char *d = llmq_path_dir(path, err);
    if (!d) return NULL;
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    size_t n = strlen(d) + strlen(base) + sizeof TMP_INFIX + TMP_XLEN + 3;
    char *t = llmq_malloc(n, err);
    if (t) snprintf(t, n, "%s/.%s" TMP_INFIX "XXXXXX", d, base);
    free(d);
    return t;
}

static void rm_tree(const char *path);

/* Lock fd (the temp just made at tmp) and check that tmp still names it: a
 * sweep by another run may have taken the lock first and removed the name.
 * 1: locked and ours, 0: gone (make another), -1: error (errno). */
static int lock_fresh_temp(int fd, const char *tmp)
{
    while (flock(fd, LOCK_EX) != 0)
        if (errno != EINTR) return errno == ENOLCK || errno == EOPNOTSUPP ? 1 : -1;
    struct stat a, b;
    if (fstat(fd, &a) != 0) return -1;
    return lstat(tmp, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Remove temps of dead writers of the output path (see TMP_INFIX).  Best
 * effort: any failure leaves the leftover where it is. */
static void stale_sweep(const char *path)
{
    char *dir = llmq_path_dir(path, NULL);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    DIR *d = dir ? opendir(dir) : NULL;
    size_t bl = strlen(base), il = strlen(TMP_INFIX);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        const char *n = e->d_name;
        if (n[0] != '.' || strlen(n) != 1 + bl + il + TMP_XLEN || strncmp(n + 1, base, bl) ||
            strncmp(n + 1 + bl, TMP_INFIX, il))
            continue;
        char *p = llmq_path_join(dir, n, NULL);
        int fd = p ? open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY) : -1;
        struct stat a, b;
        if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &a) == 0 && lstat(p, &b) == 0 &&
            a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
            /* removed while the lock is held, so no writer can be inside */
            if (S_ISDIR(a.st_mode)) rm_tree(p);
            else if (S_ISREG(a.st_mode)) unlink(p);
        }
        if (fd >= 0) close(fd);
        free(p);
    }
    if (d) closedir(d);
    free(dir);
}

/* Every write error names the output the user asked for (o->path). */
static int out_fail(llmq_out *o, const char *what, int e, llmq_err *err)
{
    o->failed = 1;
    return llmq_errorf(err, LLMQ_EIO, "%s: %s: %s", o->path, what, strerror(e));
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n > ((size_t)1 << 30) ? (size_t)1 << 30 : n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (w == 0) { errno = EIO; return -1; }
        p += w; n -= (size_t)w;
    }
    return 0;
}

int llmq_out_open(llmq_out *o, const char *path, llmq_err *err)
{
    memset(o, 0, sizeof *o);
    o->fd = -1;
    if (strcmp(path, "-") == 0) {
        o->fp = stdout; o->is_stdout = 1;
        o->path = llmq_strdup(path, err);
        return o->path ? LLMQ_OK : err->code;
    }
    if (!(o->path = resolve_output(path, 0, err))) return err ? err->code : LLMQ_EUSAGE;
    stale_sweep(o->path);
    int fd = -1, e = 0;
    for (int tries = 0; fd < 0 && tries < 100; tries++) {
        free(o->tmp);
        if (!(o->tmp = temp_template(o->path, err))) { free(o->path); o->path = NULL; return err->code; }
        if ((fd = mkostemp(o->tmp, O_CLOEXEC)) < 0) { e = errno; break; }
        int r = lock_fresh_temp(fd, o->tmp);
        if (r <= 0) {
            e = errno;
            close(fd);
            fd = -1;
            if (r < 0) { unlink(o->tmp); break; }
        }
    }
    if (fd < 0) {
        int rc = llmq_errorf(err, LLMQ_EIO, "%s: cannot create: %s", path, strerror(e ? e : EEXIST));
        free(o->path); free(o->tmp);
        o->path = o->tmp = NULL;
        return rc;
    }
    fchmod(fd, 0644);
    o->fd = fd;
    o->cap = (size_t)1 << 16;
    if (!(o->buf = llmq_malloc(o->cap, err))) {
        int rc = err ? err->code : LLMQ_ENOMEM;
        llmq_out_abort(o);
        return rc;
    }
    return LLMQ_OK;
}

int llmq_out_write(llmq_out *o, const void *buf, size_t n, llmq_err *err)
{
    if (o->failed) return llmq_errorf(err, LLMQ_EIO, "%s: write after a failed write", o->path);
    if (o->is_stdout) {
        if (n && fwrite(buf, 1, n, o->fp) != n) {
            o->failed = 1;
            return llmq_errorf(err, LLMQ_EIO, "<stdout>: write failed: %s", strerror(errno));
        }
        return LLMQ_OK;
    }
    if (o->len + n <= o->cap) {
        memcpy(o->buf + o->len, buf, n);
        o->len += n;
        return LLMQ_OK;
    }
    if (write_all(o->fd, o->buf, o->len) != 0) return out_fail(o, "write failed", errno, err);
    o->len = 0;
    if (n >= o->cap) {
        if (write_all(o->fd, buf, n) != 0) return out_fail(o, "write failed", errno, err);
        return LLMQ_OK;
    }
    memcpy(o->buf, buf, n);
    o->len = n;
    return LLMQ_OK;
}

int llmq_out_commit(llmq_out *o, llmq_err *err)
{
    int rc = LLMQ_OK;
    if (o->is_stdout) {
        if (fflush(stdout) != 0) rc = llmq_errorf(err, LLMQ_EIO, "<stdout>: write failed: %s", strerror(errno));
        free(o->path);
        memset(o, 0, sizeof *o);
        o->fd = -1;
        return rc;
    }
    if (o->failed) rc = llmq_errorf(err, LLMQ_EIO, "%s: not committed after a failed write", o->path);
    else if (write_all(o->fd, o->buf, o->len) != 0) rc = out_fail(o, "write failed", errno, err);
    else if (fsync(o->fd) != 0 && errno != EINVAL && errno != ENOTSUP) rc = out_fail(o, "fsync failed", errno, err);
    if (rc) { llmq_out_abort(o); return rc; }
    o->len = 0;
    /* close (where NFS reports late errors) before the rename, but keep the
     * lock through a duplicate until the temp name is gone */
    int lockfd = dup(o->fd), fd = o->fd;
    o->fd = lockfd;
    if (lockfd < 0 || (close(fd) != 0 && errno != EINTR)) {
        rc = out_fail(o, "close failed", errno, err);
        if (lockfd < 0) o->fd = fd;
        llmq_out_abort(o);
        return rc;
    }
    if (rename(o->tmp, o->path) != 0) {
        rc = llmq_errorf(err, LLMQ_EIO, "%s: cannot rename into place: %s", o->path, strerror(errno));
        llmq_out_abort(o);
        return rc;
    }
    close(lockfd);
    fsync_dir_of(o->path);
    free(o->path); free(o->tmp); free(o->buf);
    memset(o, 0, sizeof *o);
    o->fd = -1;
    return LLMQ_OK;
}

void llmq_out_abort(llmq_out *o)
{
    if (!o->path) return;
    if (!o->is_stdout && o->tmp) unlink(o->tmp);
    if (!o->is_stdout && o->fd >= 0) close(o->fd);
    free(o->path); free(o->tmp); free(o->buf);
    memset(o, 0, sizeof *o);
    o->fd = -1;
}

static void rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char *p = llmq_path_join(path, e->d_name, NULL);
            if (!p) continue;
            struct stat st;
            if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) rm_tree(p);
            else unlink(p);
            free(p);
        }
        closedir(d);
    }
    rmdir(path);
}

/* llmq_outdir_commit removes an existing directory: replace only one that
 * is empty or holds a config.json, as every output directory of llmq does,
 * never a directory of other files named by mistake. */
static int replaceable_dir(const char *path)
{
    char *c = llmq_path_join(path, "config.json", NULL);
    int ok = c && llmq_exists(c);
    free(c);
    DIR *d = ok ? NULL : opendir(path);
    if (d) {
        struct dirent *e;
        ok = 1;
        while (ok && (e = readdir(d))) ok = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
        closedir(d);
    }
    return ok;
}

int llmq_outdir_open(llmq_outdir *d, const char *path, llmq_err *err)
{
    memset(d, 0, sizeof *d);
    d->lockfd = -1;
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    char *given = llmq_malloc(n + 1, err);
    if (!given) return err->code;
    memcpy(given, path, n); given[n] = 0;
    d->path = resolve_output(given, 1, err);
    free(given);
    if (!d->path) return err ? err->code : LLMQ_EUSAGE;
    if (llmq_is_dir(d->path) && !replaceable_dir(d->path)) {
        int rc = llmq_errorf(err, LLMQ_EUSAGE, "%s: exists and is not a model directory (no config.json, not empty); "
                             "llmq replaces an output directory whole", d->path);
        free(d->path); d->path = NULL;
        return rc;
    }
    stale_sweep(d->path);
    int e = 0;
    for (int tries = 0; d->lockfd < 0 && tries < 100; tries++) {
        free(d->tmp);
        if (!(d->tmp = temp_template(d->path, err))) { free(d->path); d->path = NULL; return err->code; }
        if (!mkdtemp(d->tmp)) { e = errno; break; }
        int fd = open(d->tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = fd < 0 ? -1 : lock_fresh_temp(fd, d->tmp);
        if (r > 0) { d->lockfd = fd; break; }
        e = errno;
        if (fd >= 0) close(fd);
        if (r < 0) { rmdir(d->tmp); break; }
    }
    if (d->lockfd < 0) {
        int rc = llmq_errorf(err, LLMQ_EIO, "%s: cannot create directory: %s", d->path, strerror(e ? e : EEXIST));
        free(d->tmp); free(d->path); d->path = d->tmp = NULL;
        return rc;
    }
    chmod(d->tmp, 0755);
    return LLMQ_OK;
}

char *llmq_outdir_file(const llmq_outdir *d, const char *name, llmq_err *err)
{
    return llmq_path_join(d->tmp, name, err);
}

/* Messages about files in the temp directory name them at the output path. */
static void outdir_rename_msg(const llmq_outdir *d, llmq_err *err)
{
    if (!err || !d->tmp || !d->path) return;
    char *at = strstr(err->msg, d->tmp);
    if (!at) return;
    char rest[sizeof err->msg];
    snprintf(rest, sizeof rest, "%s", at + strlen(d->tmp));
    size_t pre = (size_t)(at - err->msg);
    snprintf(at, sizeof err->msg - pre, "%s%s", d->path, rest);
}

int llmq_outdir_write_text(const llmq_outdir *d, const char *name, const char *text, llmq_err *err)
{
    char *dst = llmq_outdir_file(d, name, err);
    if (!dst) return err->code;
    llmq_out o;
    int rc = llmq_out_open(&o, dst, err);
    if (!rc && ((rc = llmq_out_write(&o, text, strlen(text), err)) || (rc = llmq_out_write(&o, "\n", 1, err))))
        llmq_out_abort(&o);
    else if (!rc)
        rc = llmq_out_commit(&o, err);
    free(dst);
    return rc;
}

/* The end of a committed or abandoned directory: its lock released, its
 * names freed. */
static void outdir_release(llmq_outdir *d)
{
    if (d->lockfd >= 0 && d->path) close(d->lockfd);
    free(d->path); free(d->tmp);
    d->path = d->tmp = NULL;
    d->lockfd = -1;
}

int llmq_outdir_commit(llmq_outdir *d, llmq_err *err)
{
    struct stat st;
    if (stat(d->path, &st) == 0) {
        /* swap the new directory in and the old one out in one step; the
         * old one, now under the temp name, is removed after */
        if (renameat2(AT_FDCWD, d->tmp, AT_FDCWD, d->path, RENAME_EXCHANGE) == 0) {
            fsync_dir_of(d->path);
            rm_tree(d->tmp);
            outdir_release(d);
            return LLMQ_OK;
        }
        if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP) {
            int rc = llmq_errorf(err, LLMQ_EIO, "%s: cannot replace: %s", d->path, strerror(errno));
            llmq_outdir_abort(d);
            return rc;
        }
        /* no RENAME_EXCHANGE here: move the old directory aside under a
         * temp name (an empty directory a rename may replace), then in */
        char *old = temp_template(d->path, err);
        if (!old) { int rc = err->code; llmq_outdir_abort(d); return rc; }
        if (!mkdtemp(old) || rename(d->path, old) != 0) {
            int rc = llmq_errorf(err, LLMQ_EIO, "%s: cannot replace: %s", d->path, strerror(errno));
            rmdir(old);
            free(old);
            llmq_outdir_abort(d);
            return rc;
        }
        if (rename(d->tmp, d->path) != 0) {
            int rc = llmq_errorf(err, LLMQ_EIO, "%s: cannot rename into place: %s", d->path, strerror(errno));
            rename(old, d->path);
            free(old);
            llmq_outdir_abort(d);
            return rc;
        }
        rm_tree(old);
        free(old);
    } else if (rename(d->tmp, d->path) != 0) {
        int rc = llmq_errorf(err, LLMQ_EIO, "%s: cannot rename into place: %s", d->path, strerror(errno));
        llmq_outdir_abort(d);
        return rc;
    }
    fsync_dir_of(d->path);
    outdir_release(d);
    return LLMQ_OK;
}

void llmq_outdir_abort(llmq_outdir *d)
{
    if (d->tmp) rm_tree(d->tmp);
    outdir_release(d);
}

void llmq_outdir_fail(llmq_outdir *d, llmq_err *err)
{
    outdir_rename_msg(d, err);
    llmq_outdir_abort(d);
}

int llmq_copy_file(const char *src, const char *dst, llmq_err *err)
{
    char *buf; size_t n;
    int rc = llmq_read_file(src, &buf, &n, err);
    if (rc) return rc;
    llmq_out o;
    rc = llmq_out_open(&o, dst, err);
    if (!rc) rc = llmq_out_write(&o, buf, n, err);
    if (!rc) rc = llmq_out_commit(&o, err);
    else llmq_out_abort(&o);
    free(buf);
    return rc;
}

int llmq_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) != 0 || stat(b, &sb) != 0) return 0;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int llmq_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int llmq_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}
