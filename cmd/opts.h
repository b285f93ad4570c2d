/*
 * opts.h - option tables: each subcommand declares its options once; the
 * table drives parsing (long options only, spelled in full, numbers parsed
 * strictly) and --help.
 */
#ifndef LLMQ_OPTS_H
#define LLMQ_OPTS_H

#include <stdio.h>

/* OPT_PATH is a string naming a file or directory: '' is refused at once
 * (it would fail only when opened or renamed into, after the work). */
typedef enum { OPT_FLAG, OPT_INT, OPT_INT64, OPT_DOUBLE, OPT_STRING, OPT_PATH, OPT_CHOICE, OPT_END } opt_type;

typedef struct {
    const char *name;      /* "ctx" for --ctx */
    opt_type type;
    void *dest;            /* int* (OPT_INT, OPT_FLAG), long long* (OPT_INT64), double*, const char** */
    const char *arg;       /* "N" shown in help */
    const char *help;
    const char *choices;   /* OPT_CHOICE: "full|llamacpp" */
    double min, max;       /* OPT_INT / OPT_DOUBLE bounds (inclusive) */
    int *seen;             /* set to 1 when given (may be NULL) */
    char alias;            /* one-letter short form ('o' for -o), or 0 */
    const char *def;       /* the default, as it would be typed (NULL: none, or
                            * one the help text explains): opts_parse stores it
                            * in dest before reading argv, and --help prints
                            * "(default DEF)" from it, so the two cannot differ */
} opt_def;

/* OPT_DEF(LLMQ_X_DEFAULT): a default taken from a named constant (a plain
 * literal such as 60 or 0.9) as the text the row's parser reads. */
#define OPT_STR_(x) #x
#define OPT_DEF(x) OPT_STR_(x)
#define OPT_THREADS_DEFAULT 2

typedef struct {
    const char *name;      /* "verify" */
    const char *synopsis;  /* "MODEL --text FILE [options]" */
    const char *summary;   /* one line */
    const char *details;   /* paragraph(s) after the usage, may be NULL */
    opt_def *opts;         /* ends with { NULL, OPT_END } */
    int min_args, max_args;
} cmd_spec;

/* Rows that read the same in every subcommand's table. */
#define OPT_ROW_THREADS(var) { "threads", OPT_INT, &(var), "N", "worker threads", NULL, 1, 256, NULL, 0, OPT_DEF(OPT_THREADS_DEFAULT) }
#define OPT_ROW_JSON(var) { "json", OPT_FLAG, &(var), NULL, "print one JSON object on stdout", NULL, 0, 0, NULL, 0, NULL }
#define OPT_ROW_OUTPUT(var, arg, help) { "output", OPT_PATH, &(var), arg, help, NULL, 0, 0, NULL, 'o', NULL }
#define OPT_ROW_END { NULL, OPT_END, NULL, NULL, NULL, NULL, 0, 0, NULL, 0, NULL }

/* Store every row's default (def) in its dest, then parse argv[1..argc):
 * options into their dests, positionals into args (at most max_args).
 * Returns 0 to go on, 1 if --help was printed (exit 0), 2 on a usage error
 * (message already printed to stderr; also for a def its row refuses, a bug
 * that every --help shows). */
int opts_parse(const cmd_spec *spec, int argc, char **argv, char **args, int *n_args);
void opts_help(const cmd_spec *spec, FILE *fp);

/* Strict number parsing: whole string, finite, in range. */
int parse_int(const char *s, long long min, long long max, long long *out);
int parse_double(const char *s, double *out);

#endif
