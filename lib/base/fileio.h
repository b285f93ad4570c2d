/* fileio.h - read-only maps of whole files, atomic output files, "-" streams. */
#ifndef LLMQ_FILEIO_H
#define LLMQ_FILEIO_H

#include <stdio.h>
#include "llmq-int.h"

/* What llmq reads into memory at most: a small file (JSON of a model: the
 * largest tokenizer.json of a released family seen is 33 MB) and a
 * stream (text, ids).  Over that, reads fail with LLMQ_EIO naming the file. */
#define LLMQ_READ_FILE_MAX   ((uint64_t)256 << 20)
#define LLMQ_READ_STREAM_MAX ((uint64_t)4 << 30)

/* A read-only view of a whole regular file.  data is mmap'ed (malloc'ed when
 * the file is empty); size is its length in bytes. */
typedef struct {
    const uint8_t *data;
    uint64_t size;
    int mapped;          /* 1: munmap on close, 0: free */
} llmq_map;

/* Map the regular file path (a symbolic link to one is followed).  A
 * device, FIFO, socket or directory is refused (LLMQ_EIO naming path, and
 * a FIFO is not waited on): every file of a model must be a regular file.
 * "-" is no stream here: use llmq_read_stream. */
int llmq_map_open(llmq_map *m, const char *path, llmq_err *err);
void llmq_map_close(llmq_map *m);

/* A hint that this process is done with bytes [p, p + n) of m for now:
 * the whole pages among them leave its resident set (MADV_DONTNEED on the
 * read-only file mapping), and a later read brings them back from the
 * page cache or the file, unchanged.  Lets a pass over a model larger than
 * memory keep only what it is working on resident.  A no-op for a map that
 * is not a file mapping or a range outside it. */
void llmq_map_release(const llmq_map *m, const void *p, uint64_t n);

/* Read a whole small regular file (at most LLMQ_READ_FILE_MAX bytes) into a
 * NUL-terminated malloc'ed buffer; other kinds of file refused as by
 * llmq_map_open.  For the files of a model: config, tokenizer, index. */
int llmq_read_file(const char *path, char **out, size_t *len, llmq_err *err);

/* Read a stream to its end into a NUL-terminated malloc'ed buffer: "-" is
 * stdin; a pipe or FIFO (`--text <(cmd)`), a character device or a regular
 * file are read; a directory or block device is refused.  More than max
 * bytes (< 2^63) is refused with LLMQ_EIO.  For text and ids the user names. */
int llmq_read_stream(const char *path, uint64_t max, char **out, size_t *len, llmq_err *err);

/* Read a text stream (llmq_read_stream, at most LLMQ_READ_STREAM_MAX bytes)
 * the way Python's text mode does (universal newlines):
 * "\r\n" and lone "\r" become "\n".  Transformers pipelines read text so,
 * and the shared references were tokenized so.  keep_cr: bytes as they are. */
int llmq_read_text(const char *path, int keep_cr, char **out, size_t *len, llmq_err *err);

/* Atomic output: bytes go to a temp file ".NAME.llmq-XXXXXX" beside path;
 * commit fsyncs, closes, renames over path and fsyncs the directory, so
 * readers see the old file or the whole new one, never half.  abort removes
 * the temp file.  Any failure to write, fsync or close (ENOSPC, EFBIG under
 * a file size limit with SIGXFSZ ignored, EIO) is LLMQ_EIO "PATH: write
 * failed: ..." naming path, never the temp; after it, commit refuses and
 * only abort is left.  The temp is flock'ed while its writer lives: open
 * first removes the temps of path that no live process holds (left by a
 * run killed with -9), and never one that is held.  path "-" writes
 * to stdout directly (no atomicity possible).  An existing path must be a
 * regular file: a device, FIFO, socket or directory is refused (LLMQ_EUSAGE)
 * rather than replaced by the rename.  A symbolic link is resolved and the
 * file it names is replaced (the link stays); a dangling one is refused
 * (LLMQ_EUSAGE).  o->path is the file replaced. */
typedef struct {
    FILE *fp;            /* stdout for "-", else NULL */
    int fd;              /* the temp file, locked (flock) until renamed */
    char *path;
    char *tmp;
    uint8_t *buf;        /* bytes not yet written to fd */
    size_t len, cap;
    int is_stdout;
    int failed;
} llmq_out;

int llmq_out_open(llmq_out *o, const char *path, llmq_err *err);
int llmq_out_write(llmq_out *o, const void *buf, size_t n, llmq_err *err);
int llmq_out_commit(llmq_out *o, llmq_err *err);
void llmq_out_abort(llmq_out *o);

/* Atomic output directory: files are written into a fresh temp directory
 * beside path; commit renames it to path (which must not exist, or is an
 * existing directory llmq made, replaced whole: one that is empty or holds a
 * config.json; any other is refused, LLMQ_EUSAGE).  The temp directory is
 * ".NAME.llmq-XXXXXX", flock'ed and swept like llmq_out's temp; an existing
 * path is swapped out with RENAME_EXCHANGE where the file system has it.  An existing path that is
 * not a directory is refused (LLMQ_EUSAGE); a symbolic link to a directory
 * is resolved and the directory it names is replaced; a dangling one is
 * refused. */
typedef struct {
    char *path;
    char *tmp;
    int lockfd;          /* the temp directory, flock'ed until committed */
} llmq_outdir;
int llmq_outdir_open(llmq_outdir *d, const char *path, llmq_err *err);
/* Path of name inside the temp directory (malloc'ed). */
char *llmq_outdir_file(const llmq_outdir *d, const char *name, llmq_err *err);
/* Write text and a final newline as the file name inside the temp
 * directory (config.json of a written model), atomically. */
int llmq_outdir_write_text(const llmq_outdir *d, const char *name, const char *text, llmq_err *err);
int llmq_outdir_commit(llmq_outdir *d, llmq_err *err);
void llmq_outdir_abort(llmq_outdir *d);
/* abort after a failure reported in err: a message naming a file by its
 * temp path (a write into the temp directory failed) names it at path. */
void llmq_outdir_fail(llmq_outdir *d, llmq_err *err);

/* Copy a small file (config.json, tokenizer.json) byte for byte. */
int llmq_copy_file(const char *src, const char *dst, llmq_err *err);

/* 1 if both paths name the same existing file (device + inode). */
int llmq_same_file(const char *a, const char *b);
int llmq_is_dir(const char *path);
int llmq_exists(const char *path);
/* Join dir and name with one '/' (malloc'ed). */
char *llmq_path_join(const char *dir, const char *name, llmq_err *err);
/* Directory part of path (malloc'ed, "." if none). */
char *llmq_path_dir(const char *path, llmq_err *err);

#endif
