/* common.c - error lines, tty progress, model paths, id files. */
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>
#include "common.h"
#include "../lib/fileio.h"

int cmd_fail(const char *cmd, const llmq_err *err)
{
    fprintf(stderr, "llmq %s: %s\n", cmd, err->msg[0] ? err->msg : llmq_status_str(err->code));
    return err->code ? err->code : 1;
}

int cmd_failf(const char *cmd, int code, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "llmq %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

void progress_init(cmd_progress *p, const char *what)
{
    p->what = what;
    p->t0 = llmq_now();
    p->tty = isatty(2);
    p->shown = 0;
}

void progress_cb(void *ctx, int done, int total)
{
    cmd_progress *p = ctx;
    if (!p->tty) return;
    double el = llmq_now() - p->t0;
    double eta = done > 0 ? el / done * (total - done) : 0;
    fprintf(stderr, "\r%s: %d/%d  %.0fs elapsed, ETA %.0fs   ", p->what, done, total, el, eta);
    p->shown = 1;
}

void progress_done(cmd_progress *p)
{
    if (p->tty && p->shown) fprintf(stderr, "\r%*s\r", 70, "");
    p->shown = 0;
}

char *model_dir(const char *path, llmq_err *err)
{
    if (!llmq_exists(path)) {
        llmq_errorf(err, LLMQ_EIO, "%s: No such file or directory", path);
        return NULL;
    }
    if (llmq_is_dir(path)) return llmq_strdup(path, err);
    return llmq_path_dir(path, err);
}

int read_ids(const char *path, int32_t **ids, size_t *n, llmq_err *err)
{
    llmq_map m;
    int rc = llmq_map_open(&m, path, err);
    if (rc) return rc;
    if (m.size % 4) {
        llmq_map_close(&m);
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: size %" PRIu64 " is not a multiple of 4 (int32 LE ids)", path, m.size);
    }
    size_t cnt = (size_t)(m.size / 4);
    int32_t *v = llmq_malloc(cnt * sizeof(int32_t), err);
    if (!v) { llmq_map_close(&m); return err->code; }
    for (size_t i = 0; i < cnt; i++) v[i] = (int32_t)llmq_get_le32(m.data + 4 * i);
    llmq_map_close(&m);
    *ids = v;
    *n = cnt;
    return LLMQ_OK;
}

void json_emit(cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    if (s) { fputs(s, stdout); fputc('\n', stdout); free(s); }
    cJSON_Delete(o);
    fflush(stdout);
}
