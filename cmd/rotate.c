/* rotate.c - `llmq rotate`: a randomized Hadamard rotation of the residual stream folded into a checkpoint. */
#include <stdio.h>
#include "common.h"
#include "../lib/model.h"
#include "../lib/eval.h"
#include "../lib/base/fileio.h"
#include "../lib/algo/pack.h"
#include "../lib/algo/rotate.h"

static struct {
    const char *out, *dtype;
    int block, json, online, keys;
    long long seed;
} o;

static opt_def rotate_opts[] = {
    { "hadamard-block", OPT_INT, &o.block, "B", "channels per Hadamard block: a power of two dividing hidden_size (default: the largest, the whole width when it is a power of two)", NULL, 1, 1 << 30, NULL, 0, NULL },
    { "seed", OPT_INT64, &o.seed, "S", "seed of the random signs", NULL, 0, 9007199254740992.0, NULL, 0, "0" },
    { "online-hadamard", OPT_FLAG, &o.online, NULL, "also QuaRot's online Hadamard transforms: down_proj's input (run by llmq's forward, folded into down_proj), values folded into v_proj / o_proj; recorded in config.json (needs head_dim a power of two)", NULL, 0, 0, NULL, 0, NULL },
    { "online-hadamard-keys", OPT_FLAG, &o.keys, NULL, "--online-hadamard and the keys of the KV cache, rotated per head at run time (no quality gain measured with llmq's per-channel key ranges; costs decode time)", NULL, 0, 0, NULL, 0, NULL },
    { "dtype", OPT_CHOICE, &o.dtype, NULL, "output weight dtype (default: the source's)", "f32|bf16|f16", 0, 0, NULL, 0, NULL },
    OPT_ROW_OUTPUT(o.out, "DIR", "write the rotated checkpoint to DIR (required)"),
    OPT_ROW_JSON(o.json),
    OPT_ROW_END,
};

static const cmd_spec rotate_spec = {
    "rotate", "MODEL -o DIR [--hadamard-block B] [--seed S] [--online-hadamard | --online-hadamard-keys] [--dtype f32|bf16|f16]",
    "Rotate the residual stream of MODEL by a randomized Hadamard matrix (QuaRot),\n"
    "folded into the weights: the RMSNorm weights go into the linears they feed,\n"
    "embeddings and readers of the residual are multiplied by Q, its writers\n"
    "(o_proj, down_proj) by Q^T.  DIR is a normal checkpoint computing the same\n"
    "function whose linears have no outlier channels to quantize.",
    "Then quantize it like any checkpoint: `llmq pack DIR --format int4` or\n"
    "`llmq awq DIR ...`.  Written in f32 it equals MODEL to rounding; bf16 rounds the\n"
    "rotated weights once more.\n"
    "\n"
    "--online-hadamard also rotates down_proj's input (the SwiGLU output) by\n"
    "H / sqrt(F) per block of F channels (F the largest power of two dividing\n"
    "intermediate_size), which llmq's forward applies at run time with a fast\n"
    "Walsh-Hadamard transform and down_proj's weight undoes; and the values per\n"
    "head (folded into v_proj and o_proj).  --online-hadamard-keys also rotates\n"
    "the keys the KV cache stores (verify --kv-cache), at a decode cost and with\n"
    "no quality gain measured for llmq's per-channel key ranges, so it is\n"
    "opt-in.  config.json records it (\"llmq_online_hadamard\"): verify,\n"
    "calibrate, pack, awq and merge honour it; export, smooth and uptrain-gqa refuse\n"
    "such a model (status 5).  See llmq-rotate(1).",
    rotate_opts, 1, 1,
};

int cmd_rotate(int argc, char **argv)
{
    char *args[1];
    int na, rc = opts_parse(&rotate_spec, argc, argv, args, &na);
    if (rc) return rc == 1 ? 0 : LLMQ_EUSAGE;
    if (!o.out) return cmd_failf("rotate", LLMQ_EUSAGE, "missing -o DIR");
    const char *path = args[0];
    llmq_err err = { 0, "" };
    llmq_model m;
    double t0 = llmq_now();
    char *cl = command_line("rotate", argc, argv), digest[65];
    if (!cl) return cmd_failf("rotate", LLMQ_ENOMEM, "out of memory");
    if ((rc = cmd_model_open(&m, path, NULL, o.out, NULL, &err))) { free(cl); return cmd_fail("rotate", &err); }
    if (m.packed_meta) {
        rc = cmd_failf("rotate", LLMQ_EUNSUPPORTED, "%s: is a packed model; rotate the float checkpoint it came from", path);
        goto out;
    }
    int B = llmq_rotate_block(m.cfg.hidden, o.block);
    if (B < 0) {
        rc = cmd_failf("rotate", LLMQ_EUSAGE, "--hadamard-block %d: expected a power of two dividing hidden_size %d of %s",
                       o.block, m.cfg.hidden, path);
        goto out;
    }
    llmq_dtype dt = m.layers[0].wq.type == LLMQ_W_F32 ? LLMQ_DT_F32 : m.layers[0].wq.type == LLMQ_W_F16 ? LLMQ_DT_F16 : LLMQ_DT_BF16;
    if (o.dtype) dt = !strcmp(o.dtype, "f32") ? LLMQ_DT_F32 : !strcmp(o.dtype, "f16") ? LLMQ_DT_F16 : LLMQ_DT_BF16;
    int online = o.online || o.keys;
    char params[160];
    snprintf(params, sizeof params, "{\"hadamard_block\":%d,\"seed\":%lld,\"online_hadamard\":%s,\"online_hadamard_keys\":%s}",
             B, o.seed, online ? "true" : "false", o.keys ? "true" : "false");
    llmq_rotate_opts ro = { B, (uint64_t)o.seed, online, o.keys };
    if ((rc = llmq_model_digest(&m, digest, &err))) goto fail;
    const char *keys[] = { "llmq.rotate", "llmq.command", "llmq.source", "llmq.source_digest" };
    const char *vals[] = { params, cl, path, digest };
    if ((rc = llmq_rotate_write(&m, &ro, dt, o.out, keys, vals, 4, &err))) goto fail;
    if (o.json) {
        cJSON *j = json_report(path, o.out);
        cJSON_AddStringToObject(j, "dtype", llmq_dtype_name(dt));
        cJSON_AddNumberToObject(j, "hadamard_block", B);
        cJSON_AddNumberToObject(j, "seed", (double)o.seed);
        cJSON_AddBoolToObject(j, "untied_head", m.cfg.tie_embeddings);
        if (online) {
            cJSON *h = cJSON_AddObjectToObject(j, "online_hadamard");
            cJSON_AddNumberToObject(h, "ff_block", m.cfg.intermediate & -m.cfg.intermediate);
            cJSON_AddNumberToObject(h, "head_dim", m.cfg.head_dim);
            cJSON_AddBoolToObject(h, "keys", o.keys);
        } else {
            cJSON_AddFalseToObject(j, "online_hadamard");
        }
        json_report_done(j, t0, (double)llmq_peak_rss());
    }
    rc = 0;
    goto out;
fail:
    rc = cmd_fail("rotate", &err);
out:
    free(cl);
    llmq_model_close(&m);
    return rc;
}
