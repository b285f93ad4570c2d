/* common.c - error lines, tty progress, model paths, input lists, id files. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>
#include "common.h"
#include "../lib/base/fileio.h"

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

const char *const model_files[] = {
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "tokenizer.model", "model.safetensors", "model.safetensors.index.json", NULL,
};

void inputs_init(cmd_inputs *in)
{
    memset(in, 0, sizeof *in);
}

void inputs_release(cmd_inputs *in)
{
    for (size_t i = 0; i < in->n; i++) free(in->path[i]);
    free(in->path);
    free(in->model);
    memset(in, 0, sizeof *in);
}

static void push_input(cmd_inputs *in, const char *path, int model)
{
    if (!path || !strcmp(path, "-") || in->oom) return;
    if (in->n == in->cap) {
        size_t nc = in->cap ? in->cap * 2 : 16;
        char **np = realloc(in->path, nc * sizeof *np);
        if (np) in->path = np;
        unsigned char *nm = np ? realloc(in->model, nc) : NULL;
        if (nm) in->model = nm;
        if (!np || !nm) { in->oom = 1; return; }
        in->cap = nc;
    }
    if (!(in->path[in->n] = strdup(path))) { in->oom = 1; return; }
    in->model[in->n++] = (unsigned char)model;
}

void inputs_add(cmd_inputs *in, const char *path)
{
    push_input(in, path, 0);
    if (!path || !strcmp(path, "-") || !llmq_is_dir(path)) return;
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *p = llmq_path_join(path, e->d_name, NULL);
        if (!p) { in->oom = 1; break; }
        push_input(in, p, 0);
        free(p);
    }
    closedir(d);
}

void inputs_add_model_dir(cmd_inputs *in, const char *dir)
{
    push_input(in, dir, 1);
}

void inputs_add_model(cmd_inputs *in, const llmq_model *m)
{
    if (m->path) {
        if (llmq_is_dir(m->path)) inputs_add_model_dir(in, m->path);
        else push_input(in, m->path, 0);
    }
    inputs_add_model_dir(in, m->ckpt.dir);
    for (size_t i = 0; i < m->ckpt.n_shards; i++) push_input(in, m->ckpt.shards[i].path, 0);
}

/* Canonical form of path: realpath(3), or for a path that does not exist
 * (yet), the canonical form of its directory and its name.  A link is
 * resolved, so this is what writing to path replaces.  Malloc'ed; NULL on
 * an error other than a missing file. */
static char *canon(const char *path)
{
    char *r = realpath(path, NULL);
    if (r || errno != ENOENT) return r;
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    char *p = strndup(path, n);
    if (!p) return NULL;
    char *d = llmq_path_dir(p, NULL), *cd = d && strcmp(d, p) ? canon(d) : NULL;
    const char *base = strrchr(p, '/') ? strrchr(p, '/') + 1 : p;
    if (cd) r = llmq_path_join(cd, base, NULL);
    free(d); free(cd); free(p);
    return r;
}

static int is_model_file(const char *name)
{
    for (int i = 0; model_files[i]; i++)
        if (!strcmp(name, model_files[i])) return 1;
    return 0;
}

static int refuse(const char *out, llmq_err *err)
{
    return llmq_errorf(err, LLMQ_EUSAGE, "%s: refusing to overwrite an input", out);
}

/* Writing out would replace one of model_files[] in the directory dir,
 * whether that file exists yet or not. */
static int model_file_of(const char *out, const char *dir)
{
    char *t = canon(out), *d = t ? llmq_path_dir(t, NULL) : NULL, *cd = d ? canon(dir) : NULL;
    const char *base = t && strrchr(t, '/') ? strrchr(t, '/') + 1 : t;
    int bad = d && is_model_file(base) && ((cd && !strcmp(d, cd)) || llmq_same_file(d, dir));
    free(t); free(d); free(cd);
    return bad;
}

int inputs_check_file(const cmd_inputs *in, const char *out, llmq_err *err)
{
    if (in->oom) return llmq_errorf(err, LLMQ_ENOMEM, "out of memory");
    if (!out || !strcmp(out, "-")) return LLMQ_OK;
    int bad = 0;
    for (size_t i = 0; i < in->n && !bad; i++)
        bad = same_output(out, in->path[i]) || (in->model[i] && model_file_of(out, in->path[i]));
    return bad ? refuse(out, err) : LLMQ_OK;
}

int inputs_check_dir(const cmd_inputs *in, const char *out, llmq_err *err)
{
    if (in->oom) return llmq_errorf(err, LLMQ_ENOMEM, "out of memory");
    if (!out) return LLMQ_OK;
    char *t = realpath(out, NULL);
    if (!t) return LLMQ_OK;
    size_t tn = strlen(t);
    while (tn > 1 && t[tn - 1] == '/') tn--;
    int bad = 0;
    for (size_t i = 0; i < in->n && !bad; i++) {
        char *r = realpath(in->path[i], NULL);
        bad = llmq_same_file(t, in->path[i]) ||
              (r && (tn == 1 || (!strncmp(r, t, tn) && (r[tn] == '/' || r[tn] == 0))));
        free(r);
    }
    free(t);
    return bad ? refuse(out, err) : LLMQ_OK;
}

int same_output(const char *a, const char *b)
{
    if (!a || !b || !strcmp(a, "-") || !strcmp(b, "-")) return 0;
    char *ca = canon(a), *cb = canon(b);
    int same = (ca && cb && !strcmp(ca, cb)) || llmq_same_file(a, b);
    free(ca); free(cb);
    return same;
}

int check_outputs(const llmq_model *m, const char *input, const char *out_dir, const char *out_file, llmq_err *err)
{
    cmd_inputs in;
    inputs_init(&in);
    inputs_add_model(&in, m);
    inputs_add(&in, input);
    int rc = inputs_check_dir(&in, out_dir, err);
    if (!rc) rc = inputs_check_file(&in, out_file, err);
    inputs_release(&in);
    if (!rc && out_dir && out_file && (same_output(out_dir, out_file) || model_file_of(out_file, out_dir)))
        rc = llmq_errorf(err, LLMQ_EUSAGE, "%s: is the output directory %s or one of the model files written there",
                         out_file, out_dir);
    return rc;
}

int cmd_model_open(llmq_model *m, const char *path, const char *input, const char *out_dir, const char *out_file,
                   llmq_err *err)
{
    int rc = llmq_model_open(m, path, err);
    if (rc) return rc;
    if ((rc = check_outputs(m, input, out_dir, out_file, err))) llmq_model_close(m);
    return rc;
}

int read_ids(const char *path, int32_t **ids, size_t *n, llmq_err *err)
{
    char *buf;
    size_t len;
    int rc = llmq_read_stream(path, LLMQ_READ_STREAM_MAX, &buf, &len, err);
    if (rc) return rc;
    if (len % 4) {
        free(buf);
        return llmq_errorf(err, LLMQ_EFORMAT, "%s: size %zu is not a multiple of 4 (int32 LE ids)", path, len);
    }
    size_t cnt = len / 4;
    int32_t *v = llmq_malloc(cnt * sizeof(int32_t), err);
    if (!v) { free(buf); return err->code; }
    for (size_t i = 0; i < cnt; i++) v[i] = (int32_t)llmq_get_le32((const uint8_t *)buf + 4 * i);
    free(buf);
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

cJSON *json_report(const char *model, const char *output)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", model);
    if (output) cJSON_AddStringToObject(j, "output", output);
    return j;
}

void json_report_done(cJSON *j, double t0, double peak_rss)
{
    cJSON_AddNumberToObject(j, "seconds", llmq_now() - t0);
    if (peak_rss >= 0) cJSON_AddNumberToObject(j, "peak_rss_bytes", peak_rss);
    json_emit(j);
}

/* The command line as one string, recorded in the file. */
char *command_line(const char *cmd, int argc, char **argv)
{
    size_t n = strlen(cmd) + 8;
    for (int i = 1; i < argc; i++) n += strlen(argv[i]) + 3;
    char *s = malloc(n);
    if (!s) return NULL;
    size_t k = (size_t)snprintf(s, n, "llmq %s", cmd);
    for (int i = 1; i < argc; i++) k += (size_t)snprintf(s + k, n - k, strchr(argv[i], ' ') ? " '%s'" : " %s", argv[i]);
    return s;
}

int cmd_calib_windows(const char *model, const char *text, int samples, int seqlen, uint64_t seed,
                      llmq_calib_set *cs, llmq_err *err)
{
    llmq_tok *tok = NULL;
    char *dir = model_dir(model, err), *tp = dir ? llmq_path_join(dir, "tokenizer.json", err) : NULL;
    int rc = tp ? llmq_tok_load(&tok, tp, err) : (int)err->code;
    const char *paths[1] = { text };
    if (!rc) rc = llmq_calib_sample(tok, paths, 1, samples, seqlen, seed, cs, err);
    llmq_tok_free(tok);
    free(dir);
    free(tp);
    return rc;
}
