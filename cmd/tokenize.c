/* tokenize.c - `llmq tokenize`: text to token ids with a model's tokenizer.json. */
#include <stdio.h>
#include "common.h"
#include "../lib/base/fileio.h"
#include "../formats/tokenizer.h"
#include "../formats/gguf_tokenizer.h"

static struct { const char *ids_out; int keep_cr; } o;

static opt_def tok_opts[] = {
    { "ids-out", OPT_PATH, &o.ids_out, "FILE", "write int32 little-endian ids to FILE ('-' = stdout) instead of text", NULL, 0, 0, NULL, 0, NULL },
    { "keep-cr", OPT_FLAG, &o.keep_cr, NULL, "encode the bytes as they are (default: CRLF and CR read as LF, as Python does)", NULL, 0, 0, NULL, 0, NULL },
    OPT_ROW_END,
};

static const cmd_spec tok_spec = {
    "tokenize", "MODEL [FILE|-] [--ids-out FILE.bin]",
    "Encode FILE (default stdin) with MODEL's tokenizer.json, without special tokens,\n"
    "and print one id per line.  MODEL is a model directory, a file beside its\n"
    "tokenizer.json, the tokenizer.json itself, or a .gguf file (its tokenizer.ggml.*\n"
    "metadata, read as llama.cpp reads it).",
    NULL, tok_opts, 1, 2,
};

int cmd_tokenize(int argc, char **argv)
{
    memset(&o, 0, sizeof o);
    char *args[2];
    int na, rc = opts_parse(&tok_spec, argc, argv, args, &na);
    if (rc) return rc == 1 ? 0 : LLMQ_EUSAGE;
    const char *in = na > 1 ? args[1] : "-";
    llmq_err err = { 0, "" };
    llmq_tok *tok = NULL;
    char *tp = NULL, *buf = NULL;
    int32_t *ids = NULL;
    size_t len, n;
    size_t al = strlen(args[0]);
    llmq_gguf_file gf;
    memset(&gf, 0, sizeof gf);
    int gguf = !llmq_is_dir(args[0]) && al >= 5 && strcmp(args[0] + al - 5, ".gguf") == 0;
    if (gguf) {
        tp = llmq_strdup(args[0], &err);
    } else if (!llmq_is_dir(args[0]) && al >= 5 && strcmp(args[0] + al - 5, ".json") == 0 &&
        !(al >= 11 && strcmp(args[0] + al - 11, ".index.json") == 0)) {
        tp = llmq_strdup(args[0], &err);
    } else {
        char *dir = model_dir(args[0], &err);
        if (dir) { tp = llmq_path_join(dir, "tokenizer.json", &err); free(dir); }
    }
    if (!tp) goto fail;
    {
        cmd_inputs ins;
        inputs_init(&ins);
        char *td = llmq_path_dir(tp, &err);
        inputs_add_model_dir(&ins, td);
        inputs_add(&ins, args[0]);
        inputs_add(&ins, tp);
        inputs_add(&ins, in);
        rc = td ? inputs_check_file(&ins, o.ids_out, &err) : (int)err.code;
        free(td);
        inputs_release(&ins);
        if (rc) goto fail;
    }
    if (gguf) {
        if ((rc = llmq_gguf_open(&gf, tp, &err))) goto fail;
        if ((rc = llmq_tok_from_gguf(&tok, &gf, &err))) goto fail;
    } else if ((rc = llmq_tok_load(&tok, tp, &err))) {
        goto fail;
    }
    if ((rc = llmq_read_text(in, o.keep_cr, &buf, &len, &err))) goto fail;
    if ((rc = llmq_tok_encode(tok, buf, len, &ids, &n, &err))) goto fail;
    if (o.ids_out) {
        llmq_out out;
        if ((rc = llmq_out_open(&out, o.ids_out, &err))) goto fail;
        uint8_t *b = llmq_malloc(n * 4, &err);
        if (!b) { llmq_out_abort(&out); goto fail; }
        for (size_t i = 0; i < n; i++) llmq_put_le32(b + 4 * i, (uint32_t)ids[i]);
        rc = llmq_out_write(&out, b, n * 4, &err);
        free(b);
        if (!rc) rc = llmq_out_commit(&out, &err);
        else llmq_out_abort(&out);
        if (rc) goto fail;
    } else {
        for (size_t i = 0; i < n; i++) printf("%d\n", ids[i]);
        if (fflush(stdout) != 0) { rc = llmq_errorf(&err, LLMQ_EIO, "<stdout>: write failed"); goto fail; }
    }
    goto out;
fail:
    rc = cmd_fail("tokenize", &err);
out:
    llmq_tok_free(tok);
    llmq_gguf_close(&gf);
    free(tp); free(buf); free(ids);
    return rc;
}
