/*
 * tokbench.c - encode speed of a tokenizer.json on a text, with the
 * hand-written scanners of the known Split patterns and with every pattern
 * on Oniguruma, interleaved, as a markdown table row.
 *   tokbench NAME TOKENIZER.json TEXT [ROUNDS]
 * Prints: | NAME | MB | ids | scanners MB/s (median, min-max) | Oniguruma MB/s | ratio | same ids |
 * The text is read as the tests read it (CRLF -> LF).  Each round encodes
 * the whole text once each way, in alternating order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lib/base/fileio.h"
#include "formats/tokenizer.h"

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 4) { fprintf(stderr, "usage: tokbench NAME TOKENIZER.json TEXT [ROUNDS]\n"); return 2; }
    int rounds = argc > 4 ? atoi(argv[4]) : 5;
    if (rounds < 1 || rounds > 100) rounds = 5;
    llmq_err err = { 0 };
    llmq_tok *t = NULL;
    char *s = NULL;
    size_t len = 0;
    if (llmq_tok_load(&t, argv[2], &err) || llmq_read_file(argv[3], &s, &len, &err)) {
        fprintf(stderr, "tokbench: %s\n", err.msg);
        return 1;
    }
    size_t w = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\r') { s[w++] = '\n'; if (i + 1 < len && s[i + 1] == '\n') i++; continue; }
        s[w++] = s[i];
    }
    len = w;
    double *dt[2] = { calloc(rounds, sizeof(double)), calloc(rounds, sizeof(double)) };
    int32_t *ids[2] = { NULL, NULL };
    size_t n[2] = { 0, 0 };
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < 2; k++) {
            int sc = (r & 1) ? k : 1 - k;         /* alternate which goes first */
            llmq_tok_set_scanners(t, sc);
            free(ids[sc]);
            double t0 = llmq_now();
            if (llmq_tok_encode(t, s, len, &ids[sc], &n[sc], &err)) { fprintf(stderr, "tokbench: %s\n", err.msg); return 1; }
            dt[sc][r] = llmq_now() - t0;
        }
    }
    int same = n[0] == n[1] && !memcmp(ids[0], ids[1], n[0] * sizeof(int32_t));
    double mb = len / 1e6, med[2], lo[2], hi[2];
    for (int k = 0; k < 2; k++) {
        qsort(dt[k], rounds, sizeof(double), cmp_d);
        med[k] = mb / dt[k][rounds / 2]; lo[k] = mb / dt[k][rounds - 1]; hi[k] = mb / dt[k][0];
    }
    printf("| %s | %.2f | %zu | %.1f (%.1f-%.1f) | %.1f (%.1f-%.1f) | %.2f | %s |\n", argv[1], mb, n[1],
           med[1], lo[1], hi[1], med[0], lo[0], hi[0], med[1] / med[0], same ? "yes" : "NO");
    llmq_tok_free(t);
    free(s); free(ids[0]); free(ids[1]); free(dt[0]); free(dt[1]);
    return same ? 0 : 1;
}
