/*
 * llmq.h - the public API of libllmq: status codes, errors, and the handles
 * that cmd/ uses.  Every exported symbol starts with llmq_ and a module word.
 *
 * Library code never prints and never exits: it returns an llmq_status and
 * fills an llmq_err with one line that names the file and what is wrong.
 */
#ifndef LLMQ_H
#define LLMQ_H

#include <stddef.h>
#include <stdint.h>

#define LLMQ_VERSION "0.1.0"

/* The status is also the process exit code (man/llmq.1, EXIT STATUS).
 * Values are stable: append, never renumber. */
typedef enum {
    LLMQ_OK = 0,
    LLMQ_EGENERIC = 1,      /* failure with no more specific code */
    LLMQ_EUSAGE = 2,        /* bad command line */
    LLMQ_EIO = 3,           /* file missing, unreadable, unwritable */
    LLMQ_EFORMAT = 4,       /* malformed or corrupt input file */
    LLMQ_EUNSUPPORTED = 5,  /* valid input llmq does not handle */
    LLMQ_ENOMEM = 6,        /* allocation failed */
    LLMQ_ENONFINITE = 7,    /* NaN or Inf where numbers must be finite */
    LLMQ_EVERIFY = 8,       /* checksum or verification mismatch */
    LLMQ_EINTERNAL = 70     /* a bug in llmq */
} llmq_status;

typedef struct {
    llmq_status code;
    char msg[512];
} llmq_err;

/* Fill err (may be NULL) with code and a printf-style message; returns code. */
int llmq_errorf(llmq_err *err, llmq_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefix an existing message: "prefix: old message". Returns err->code. */
int llmq_error_prefix(llmq_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Short English name of a status ("format error", ...). Never NULL. */
const char *llmq_status_str(int code);
void llmq_err_clear(llmq_err *err);

#endif
