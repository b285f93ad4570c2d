/* pack.c - `llmq pack`: round-to-nearest quantization into a packed model directory. */
#include <stdio.h>
#include "common.h"
#include "../lib/model.h"
#include "../formats/packed.h"
#include "../lib/algo/pack.h"
#include "../lib/base/blocks.h"

static struct {
    const char *out, *format, *skip, *mx_scale;
    int group, sym, json, quantize_head;
} o;

static opt_def pack_opts[] = {
    OPT_ROW_OUTPUT(o.out, "DIR", "write the packed model to DIR (required)"),
    { "format", OPT_CHOICE, &o.format, NULL, "weight format", "int8|int4|int3|mxint8|mxfp4|mxint4|nvfp4|nvint4|mxfp8", 0, 0, NULL, 0, "int4" },
    { "group", OPT_INT, &o.group, "N", "int4 / int3 group size along the input dimension: 32, 64 or 128", NULL, 32, 128, NULL, 0, "128" },
    { "sym", OPT_FLAG, &o.sym, NULL, "int4 / int3: symmetric, no zero points", NULL, 0, 0, NULL, 0, NULL },
    { "mx-scale", OPT_CHOICE, &o.mx_scale, NULL, "block scale rule of the mx and nv formats: ocp = the spec's (MX: floor(log2 amax) - emax; NV: E4M3 rounded to nearest), ceil = the smallest scale at which nothing clips, mse = per block the one of the ocp scale and its neighbours with the smallest squared error (mx and nv formats only); default mse for the mx and nv formats (measured best, doc/benchmarks.md), ocp for mxint8", "ocp|ceil|mse", 0, 0, NULL, 0, NULL },
    { "skip", OPT_STRING, &o.skip, "REGEX", "linears whose name matches stay float (POSIX ERE)", NULL, 0, 0, NULL, 0, NULL },
    { "quantize-head", OPT_FLAG, &o.quantize_head, NULL, "also quantize an untied LM head (default: it stays float)", NULL, 0, 0, NULL, 0, NULL },
    OPT_ROW_JSON(o.json),
    OPT_ROW_END,
};

static const cmd_spec pack_spec = {
    "pack", "MODEL -o DIR [--format int8|int4|int3|mxint8|mxfp4|mxint4|nvfp4|nvint4|mxfp8] [options]",
    "Quantize every linear layer of MODEL by round-to-nearest and write a packed model\n"
    "directory (model.safetensors with llmq metadata, config.json, tokenizer files)\n"
    "that llmq verify runs directly.  Norms, biases, embeddings and (unless\n"
    "--quantize-head) the LM head stay float.",
    "Formats: int8 = per-output-channel symmetric; int4 = group-wise along the input\n"
    "dimension, asymmetric with zero points unless --sym; int3 = int4's scheme with 8\n"
    "levels, stored in three bits per weight; mxint8 = OCP Microscaling MXINT8,\n"
    "blocks of 32 with an E8M0 shared scale; mxfp4 / mxint4 / mxfp8 = FP4\n"
    "E2M1 / INT4 / FP8 E4M3 elements in blocks of 32 with an E8M0 scale (OCP MX v1.0);\n"
    "nvfp4 / nvint4 = FP4 E2M1 / INT4 elements in blocks of 16 with an FP8 E4M3 scale\n"
    "times an fp32 tensor scale (NVIDIA's NVFP4).  See llmq-packed(5).",
    pack_opts, 1, 1,
};

int cmd_pack(int argc, char **argv)
{
    memset(&o, 0, sizeof o);
    char *args[1];
    int na, rc = opts_parse(&pack_spec, argc, argv, args, &na);
    if (rc) return rc == 1 ? 0 : LLMQ_EUSAGE;
    if (!o.out) return cmd_failf("pack", LLMQ_EUSAGE, "missing -o DIR");
    if (!llmq_q4_group_ok(o.group))
        return cmd_failf("pack", LLMQ_EUSAGE, "--group must be 32, 64 or 128");
    llmq_pack_opts po;
    memset(&po, 0, sizeof po);
    if (!strcmp(o.format, "int8")) po.scheme.format = LLMQ_PACK_INT8;
    else if (!strcmp(o.format, "int4")) po.scheme.format = LLMQ_PACK_INT4;
    else if (!strcmp(o.format, "int3")) po.scheme.format = LLMQ_PACK_INT3;
    else if (!strcmp(o.format, "mxint8")) po.scheme.format = LLMQ_PACK_MXINT8;
    else {
        po.scheme.format = LLMQ_PACK_BLOCK;
        for (int t = LLMQ_W_MXFP4; t <= LLMQ_W_MXFP8; t++)
            if (!strcmp(o.format, llmq_block_name((llmq_wtype)t))) po.scheme.btype = (llmq_wtype)t;
    }
    po.scheme.group = po.scheme.format == LLMQ_PACK_INT4 || po.scheme.format == LLMQ_PACK_INT3 ? o.group
                    : po.scheme.format == LLMQ_PACK_MXINT8 ? 32
                    : po.scheme.format == LLMQ_PACK_BLOCK ? llmq_block_size(po.scheme.btype) : 0;
    po.scheme.sym = o.sym;
    if (!o.mx_scale) o.mx_scale = po.scheme.format == LLMQ_PACK_BLOCK ? "mse" : "ocp";
    po.scheme.mx_rule = !strcmp(o.mx_scale, "ceil") ? LLMQ_MX_SCALE_CEIL : !strcmp(o.mx_scale, "mse") ? LLMQ_MX_SCALE_MSE
                      : LLMQ_MX_SCALE_OCP;
    if (po.scheme.mx_rule == LLMQ_MX_SCALE_MSE && po.scheme.format != LLMQ_PACK_BLOCK)
        return cmd_failf("pack", LLMQ_EUSAGE, "--mx-scale mse is for the mx and nv block formats, not %s", o.format);
    po.skip = o.skip;
    po.quantize_head = o.quantize_head;
    char *cl = command_line("pack", argc, argv);
    po.command = cl;

    llmq_err err = { 0, "" };
    llmq_model m;
    double t0 = llmq_now();
    if ((rc = cmd_model_open(&m, args[0], NULL, o.out, NULL, &err))) { free(cl); return cmd_fail("pack", &err); }
    llmq_pack_stats st;
    if ((rc = llmq_pack_model(&m, &po, o.out, &st, &err))) rc = cmd_fail("pack", &err);
    else if (o.json) {
        char scheme[32];
        llmq_qscheme_name(&po.scheme, scheme, sizeof scheme);
        cJSON *j = json_report(args[0], o.out);
        cJSON_AddStringToObject(j, "scheme", scheme);
        const llmq_json_num f[] = {
            { "linears_packed", st.linears_packed }, { "linears_float", st.linears_float },
            { "bits_per_weight", st.bits_per_weight }, { "file_bytes", (double)st.bytes },
        };
        llmq_json_add_numbers(j, f, LLMQ_ARRAY_LEN(f));
        json_report_done(j, t0, -1);
    }
    llmq_model_close(&m);
    free(cl);
    return rc;
}
