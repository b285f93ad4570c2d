/* common.h - what every subcommand shares: errors, progress, input helpers. */
#ifndef LLMQ_CMD_COMMON_H
#define LLMQ_CMD_COMMON_H

#include <cjson/cJSON.h>
#include "opts.h"
#include "../lib/base/llmq-int.h"
#include "../formats/json.h"
#include "../lib/model.h"
#include "../calib/data.h"
#include "../lib/algo/awq.h"

/* Print "llmq CMD: message" to stderr and return the exit code. */
int cmd_fail(const char *cmd, const llmq_err *err);
int cmd_failf(const char *cmd, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Progress line on stderr, only when stderr is a terminal. */
typedef struct { const char *what; double t0; int tty; int shown; } cmd_progress;
void progress_init(cmd_progress *p, const char *what);
void progress_cb(void *ctx, int done, int total);
void progress_done(cmd_progress *p);

/* Directory that holds config.json / tokenizer.json for a model path given
 * as a directory, a .safetensors file or an index .json (malloc'ed). */
char *model_dir(const char *path, llmq_err *err);
/* Calibration windows of the text at `text` (a file or directory),
 * tokenized by the tokenizer.json beside the model at `model`. */
int cmd_calib_windows(const char *model, const char *text, int samples, int seqlen, uint64_t seed,
                      llmq_calib_set *cs, llmq_err *err);

/* What a command reads, listed once, so that no output can replace it:
 * every output file and directory is checked against the list before the
 * work starts.  Adding never fails (allocation failure is reported by the
 * checks); NULL and "-" are ignored. */
typedef struct {
    char **path;         /* owned copies */
    unsigned char *model; /* 1: a model directory (also protects model_files[] names in it) */
    size_t n, cap;
    int oom;
} cmd_inputs;

/* Files llmq reads or copies from a model directory besides the shards. */
extern const char *const model_files[];

void inputs_init(cmd_inputs *in);
void inputs_release(cmd_inputs *in);
/* A file or directory read; a directory is read whole (--text DIR): its
 * files are inputs too. */
void inputs_add(cmd_inputs *in, const char *path);
/* A directory holding a model: its model_files[], existing or not. */
void inputs_add_model_dir(cmd_inputs *in, const char *dir);
/* An open model: the path given, its directory, every shard. */
void inputs_add_model(cmd_inputs *in, const llmq_model *m);
/* out (a file; NULL or "-" pass) must not be, nor resolve to, an input, nor
 * be a model file name in an input model directory.  LLMQ_EUSAGE
 * "OUT: refusing to overwrite an input". */
int inputs_check_file(const cmd_inputs *in, const char *out, llmq_err *err);
/* out (a directory replaced whole; NULL passes) must not be an input nor
 * hold one anywhere below it. */
int inputs_check_dir(const cmd_inputs *in, const char *out, llmq_err *err);
/* The usual case in one call: a command that reads model m and the file or
 * directory input (NULL: none) and writes the directory out_dir and then the
 * file out_file (either NULL).  out_file may not be one of out_dir's model
 * files either: out_dir is read back as a model. */
int check_outputs(const llmq_model *m, const char *input, const char *out_dir, const char *out_file, llmq_err *err);
/* Open the model at path (llmq_model_open) and check_outputs against it:
 * how a command that writes starts.  On an error m is closed (or was never
 * opened) and err says why. */
int cmd_model_open(llmq_model *m, const char *path, const char *input, const char *out_dir, const char *out_file,
                   llmq_err *err);
/* 1 if writing a and writing b would replace the same file: the same
 * canonical path (existing or not, through links) or the same inode. */
int same_output(const char *a, const char *b);

/* Read int32 LE token ids ("-" = stdin; a pipe or FIFO is read as a stream). */
int read_ids(const char *path, int32_t **ids, size_t *n, llmq_err *err);

/* Print a cJSON object on stdout (one object on one line), and free it. */
void json_emit(cJSON *o);

/* The shape every command's --json report shares: it starts as
 * {"model": MODEL, "output": OUTPUT} (output NULL: left out; the caller adds
 * its own fields) and ends, in json_report_done, with "seconds" since t0 and,
 * if peak_rss >= 0, "peak_rss_bytes"; then it is printed and freed as by
 * json_emit.  json_report returns NULL when out of memory (cJSON's adders
 * accept NULL). */
cJSON *json_report(const char *model, const char *output);
void json_report_done(cJSON *j, double t0, double peak_rss);

int cmd_verify(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_pack(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_smooth(int argc, char **argv);
int cmd_rotate(int argc, char **argv);
int cmd_awq(int argc, char **argv);
int cmd_uptrain_gqa(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_merge(int argc, char **argv);

/* Shared by awq and merge (cmd/awq.c): pack the AWQ result res of model m
 * to out, recording command and info (the calibration: calib_text,
 * calib_text_sha256, samples, seqlen, skip), and report as `llmq CMD`. */
int awq_write(const char *cmd, const char *model_arg, const llmq_model *m, llmq_awq_result *res, const cJSON *info,
              const char *command, const char *out, int json, double t0, double t_search, llmq_err *err);
/* The awq command a set of shards adds up to, writing out (malloc'ed), from
 * a shard's info; NULL if info lacks it. */
char *awq_merged_command(const cJSON *info, const char *out);
/* "llmq CMD args..." for the record (malloc'ed). */
char *command_line(const char *cmd, int argc, char **argv);

#endif
