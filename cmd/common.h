/* common.h - what every subcommand shares: errors, progress, input helpers. */
#ifndef LLMQ_CMD_COMMON_H
#define LLMQ_CMD_COMMON_H

#include <cjson/cJSON.h>
#include "opts.h"
#include "../lib/llmq-int.h"

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

/* Read int32 LE token ids. */
int read_ids(const char *path, int32_t **ids, size_t *n, llmq_err *err);

/* Print a cJSON object on stdout (one object on one line), and free it. */
void json_emit(cJSON *o);

int cmd_verify(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_pack(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_smooth(int argc, char **argv);
int cmd_awq(int argc, char **argv);
int cmd_uptrain_gqa(int argc, char **argv);
/* "llmq CMD args..." for the record (malloc'ed). */
char *command_line(const char *cmd, int argc, char **argv);

#endif
