/*
 * gguf-tokcmp.c - compare the tokenizer a GGUF file's metadata gives
 * (llmq_tok_from_gguf) with the tokenizer.json it was exported from.
 *
 *   gguf-tokcmp TOKENIZER.json MODEL.gguf [--no-ids] TEXT...
 *
 * For each TEXT file (its bytes as they are, invalid UTF-8 included): both
 * tokenizers encode it and must give the same ids (unless --no-ids), and
 * the GGUF tokenizer's ids decoded by both must give the same bytes.  Also
 * checks that bos / eos / add_bos agree.  Silent when all agree (exit 0);
 * on a difference, a line on stderr per text that differs, naming the first
 * id that does, and exit 1; 2 on usage, else the error's status.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lib/base/llmq-int.h"
#include "lib/base/fileio.h"
#include "formats/gguf_tokenizer.h"

static void show(const llmq_tok *t, const int32_t *ids, size_t n, size_t at)
{
    for (size_t i = at > 3 ? at - 3 : 0; i < n && i < at + 4; i++) {
        const char *p = llmq_tok_piece(t, ids[i]);
        fprintf(stderr, " %s%d'%s'", i == at ? "*" : "", ids[i], p ? p : "?");
    }
    fputc('\n', stderr);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: gguf-tokcmp TOKENIZER.json MODEL.gguf [--no-ids] TEXT...\n");
        return 2;
    }
    llmq_err err = { 0, "" };
    llmq_tok *tj = NULL, *tg = NULL;
    llmq_gguf_file f;
    memset(&f, 0, sizeof f);
    int rc = llmq_tok_load(&tj, argv[1], &err);
    if (!rc) rc = llmq_gguf_open(&f, argv[2], &err);
    if (!rc) rc = llmq_tok_from_gguf(&tg, &f, &err);
    if (rc) { fprintf(stderr, "gguf-tokcmp: %s\n", err.msg); return rc; }
    int bad = 0, ids_too = 1;
    if (llmq_tok_bos(tj) != llmq_tok_bos(tg) || llmq_tok_eos(tj) != llmq_tok_eos(tg) ||
        llmq_tok_add_bos(tj) != llmq_tok_add_bos(tg)) {
        fprintf(stderr, "bos/eos/add_bos: json %d/%d/%d, gguf %d/%d/%d\n", llmq_tok_bos(tj), llmq_tok_eos(tj),
                llmq_tok_add_bos(tj), llmq_tok_bos(tg), llmq_tok_eos(tg), llmq_tok_add_bos(tg));
        bad = 1;
    }
    for (int a = 3; a < argc; a++) {
        if (!strcmp(argv[a], "--no-ids")) { ids_too = 0; continue; }
        char *text = NULL, *dj = NULL, *dg = NULL;
        size_t len, nj = 0, ng = 0, lj = 0, lg = 0;
        int32_t *ij = NULL, *ig = NULL;
        if ((rc = llmq_read_file(argv[a], &text, &len, &err)) ||
            (rc = llmq_tok_encode(tj, text, len, &ij, &nj, &err)) ||
            (rc = llmq_tok_encode(tg, text, len, &ig, &ng, &err)) ||
            (rc = llmq_tok_decode(tj, ig, ng, 0, &dj, &lj, &err)) ||
            (rc = llmq_tok_decode(tg, ig, ng, 0, &dg, &lg, &err))) {
            fprintf(stderr, "gguf-tokcmp: %s\n", err.msg);
            return rc;
        }
        size_t at = 0;
        while (at < nj && at < ng && ij[at] == ig[at]) at++;
        int same_ids = at == nj && at == ng, same_text = lj == lg && !memcmp(dj, dg, lj);
        if ((!same_ids && ids_too) || !same_text)
            fprintf(stderr, "%s: %zu bytes, %zu ids: ids %s, decoded %s\n", argv[a], len, ng,
                    same_ids ? "same" : "DIFFER", same_text ? "same" : "DIFFER");
        if (!same_ids && ids_too) {
            fprintf(stderr, "first difference at id %zu\n  json:", at);
            show(tj, ij, nj, at);
            fprintf(stderr, "  gguf:");
            show(tg, ig, ng, at);
        }
        if ((!same_ids && ids_too) || !same_text) bad = 1;
        free(text); free(ij); free(ig); free(dj); free(dg);
    }
    llmq_tok_free(tj);
    llmq_tok_free(tg);
    llmq_gguf_close(&f);
    return bad;
}
