/* main.c - the llmq command table and dispatch. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include "common.h"
#include "../lib/base/llmq.h"

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    { "calibrate", cmd_calibrate, "record per-channel activation statistics of every linear input" },
    { "smooth", cmd_smooth, "SmoothQuant / Outlier Suppression+ equivalent transformations for W8A8" },
    { "rotate", cmd_rotate, "fold a randomized Hadamard rotation of the residual stream into the weights" },
    { "awq", cmd_awq, "activation-aware weight quantization to int4/int3" },
    { "merge", cmd_merge, "join the shards of awq --layers into one packed model" },
    { "uptrain-gqa", cmd_uptrain_gqa, "convert multi-head attention to grouped-query attention and uptrain" },
    { "verify", cmd_verify, "run a model: perplexity, generation, speed, file integrity" },
    { "pack", cmd_pack, "quantize a model by round-to-nearest into packed int8, int4 or mxint8 files" },
    { "tokenize", cmd_tokenize, "turn text into token ids with the model's tokenizer.json" },
    { "export", cmd_export, "write a model as a GGUF file that llama.cpp runs" },
};

static void usage(FILE *fp)
{
    fprintf(fp, "usage: llmq [--version] [--help] <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(fp, "  %-14s %s\n", commands[i].name, commands[i].summary);
    fprintf(fp, "\n'llmq help <command>' or 'llmq <command> --help' shows a command's options;\n"
                "man llmq lists exit statuses.\n");
}

static const command *find(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    /* Over a file size limit (ulimit -f) write(2) then fails with EFBIG,
     * which the atomic writer reports and cleans up after; by default the
     * signal would kill llmq silently and leave the temp file behind. */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) { usage(stderr); return LLMQ_EUSAGE; }
    const char *a = argv[1];
    int opt = !strcmp(a, "--help") || !strcmp(a, "-h") || !strcmp(a, "--version");
    if ((opt && argc > 2) || (!strcmp(a, "help") && argc > 3)) {
        fprintf(stderr, "llmq: unexpected argument '%s' after '%s%s'\n", argv[opt ? 2 : 3], opt ? "" : "help ", opt ? a : argv[2]);
        return LLMQ_EUSAGE;
    }
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
    if (!strcmp(a, "--version")) { printf("llmq %s\n", LLMQ_VERSION); return 0; }
    if (!strcmp(a, "help")) {
        if (argc < 3) { usage(stdout); return 0; }
        const command *c = find(argv[2]);
        if (!c) { fprintf(stderr, "llmq: unknown command '%s'\n", argv[2]); return LLMQ_EUSAGE; }
        char *hargv[] = { (char *)c->name, "--help", NULL };
        return c->fn(2, hargv);
    }
    const command *c = find(a);
    if (!c) {
        fprintf(stderr, "llmq: unknown command '%s'\ntry 'llmq --help'\n", a);
        return LLMQ_EUSAGE;
    }
    return c->fn(argc - 1, argv + 1);
}
