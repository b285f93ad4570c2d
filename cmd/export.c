/* export.c - `llmq export`: a model as a GGUF file that llama.cpp runs, or
 * as a compressed-tensors checkpoint that vLLM runs. */
#include <stdio.h>
#include "common.h"
#include "../formats/gguf.h"
#include "../formats/ctensors.h"
#include "../lib/export/gguf_export.h"
#include "../lib/export/ct_export.h"

static struct {
    const char *out, *type, *name, *to;
    int json;
} o;

static opt_def export_opts[] = {
    OPT_ROW_OUTPUT(o.out, "OUT", "write the GGUF file (--to gguf) or the checkpoint directory (--to compressed-tensors) to OUT (required)"),
    { "to", OPT_CHOICE, &o.to, NULL, "output format", "gguf|compressed-tensors", 0, 0, NULL, 0, "gguf" },
    { "type", OPT_CHOICE, &o.type, NULL, "weight type", "auto|f32|f16|bf16|q8_0|q4_0|q4_1", 0, 0, NULL, 0, "auto" },
    { "name", OPT_STRING, &o.name, "NAME", "general.name (default: the model directory's name)", NULL, 0, 0, NULL, 0, NULL },
    OPT_ROW_JSON(o.json),
    OPT_ROW_END,
};

static const cmd_spec export_spec = {
    "export", "MODEL -o FILE.gguf [--type auto|f32|f16|bf16|q8_0|q4_0|q4_1] [options]\n"
    "       llmq export MODEL --to compressed-tensors -o DIR [options]",
    "Write MODEL (a Hugging Face checkpoint or an llmq packed model) as a GGUF v3\n"
    "file that llama.cpp loads: architecture llama (Llama, Mistral) or qwen2, the\n"
    "tokenizer as tokenizer.ggml.* metadata, provenance under llmq.*.  With --to\n"
    "compressed-tensors, write a packed int4 (W4A16) or int8 (W8A8) model as the\n"
    "checkpoint llm-compressor writes for vLLM, codes and scales bit for bit.",
    "A checkpoint is rounded to --type as llama-quantize's reference quantizers\n"
    "round (auto keeps its dtype).  A packed model maps exactly under auto: int4/int3\n"
    "asym -> Q4_1 (m = -s*z rounded to f16), sym -> Q4_0, mxint8 -> Q8_0, int8 -> Q8_0\n"
    "when its row scales are f16 values; what no type holds exactly is refused\n"
    "(status 5).  See llmq-export(1) for the mapping table.",
    export_opts, 1, 1,
};

static const struct { const char *name; llmq_gguf_outtype t; } types[] = {
    { "auto", LLMQ_GGUF_TYPE_AUTO }, { "f32", LLMQ_GGUF_TYPE_F32 }, { "f16", LLMQ_GGUF_TYPE_F16 },
    { "bf16", LLMQ_GGUF_TYPE_BF16 }, { "q8_0", LLMQ_GGUF_TYPE_Q8_0 }, { "q4_0", LLMQ_GGUF_TYPE_Q4_0 },
    { "q4_1", LLMQ_GGUF_TYPE_Q4_1 },
};

/* --to compressed-tensors; with --json, what it wrote added to j */
static int export_ct(const llmq_model *m, const char *cl, cJSON *j, llmq_err *err)
{
    llmq_ct_export_stats st;
    int rc = llmq_ct_export(m, o.out, cl, &st, err);
    if (rc || !j) return rc;
    cJSON_AddStringToObject(j, "to", "compressed-tensors");
    cJSON_AddStringToObject(j, "source_weights", m->weights_dtype);
    cJSON_AddStringToObject(j, "scheme", st.scheme);
    cJSON_AddBoolToObject(j, "exact", 1);
    const llmq_json_num f[] = {
        { "linears_packed", st.linears_packed }, { "linears_float", st.linears_float },
        { "tensor_bytes", (double)st.bytes },
    };
    llmq_json_add_numbers(j, f, LLMQ_ARRAY_LEN(f));
    return 0;
}

/* --to gguf, the same */
static int export_gguf(const llmq_model *m, const char *cl, cJSON *j, llmq_err *err)
{
    llmq_gguf_export_opts eo;
    memset(&eo, 0, sizeof eo);
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(types); i++)
        if (!strcmp(o.type, types[i].name)) eo.type = types[i].t;
    eo.name = o.name;
    eo.command = cl;
    llmq_gguf_export_stats st;
    int rc = llmq_gguf_export(m, &eo, o.out, &st, err);
    if (rc || !j) return rc;
    cJSON_AddStringToObject(j, "source_weights", m->weights_dtype);
    cJSON_AddStringToObject(j, "file_type", st.file_type);
    cJSON_AddBoolToObject(j, "exact", st.exact);
    const llmq_json_num f[] = {
        { "q4_1_m_max_abs_err", st.m_max_err }, { "q8_0_scale_max_rel_err", st.q8_scale_rel_err },
        { "tensors", st.tensors }, { "bits_per_weight", st.bits_per_weight }, { "file_bytes", (double)st.bytes },
    };
    llmq_json_add_numbers(j, f, LLMQ_ARRAY_LEN(f));
    return 0;
}

int cmd_export(int argc, char **argv)
{
    memset(&o, 0, sizeof o);
    char *args[1];
    int na, rc = opts_parse(&export_spec, argc, argv, args, &na);
    if (rc) return rc == 1 ? 0 : LLMQ_EUSAGE;
    const int to_ct = !strcmp(o.to, "compressed-tensors");
    if (!o.out) return cmd_failf("export", LLMQ_EUSAGE, to_ct ? "missing -o DIR" : "missing -o FILE.gguf");
    if (to_ct && (strcmp(o.type, "auto") || o.name))
        return cmd_failf("export", LLMQ_EUSAGE, "--type and --name are options of --to gguf");

    llmq_err err = { 0, "" };
    llmq_model m;
    double t0 = llmq_now();
    if ((rc = cmd_model_open(&m, args[0], NULL, to_ct ? o.out : NULL, to_ct ? NULL : o.out, &err)))
        return cmd_fail("export", &err);
    /* int3 in 3 bits goes out in the int4 layouts that hold its codes exactly */
    if ((rc = llmq_model_widen_q3(&m, &err))) {
        llmq_model_close(&m);
        return cmd_fail("export", &err);
    }
    char *cl = command_line("export", argc, argv);
    cJSON *j = o.json ? json_report(args[0], o.out) : NULL;
    rc = to_ct ? export_ct(&m, cl, j, &err) : export_gguf(&m, cl, j, &err);
    if (rc) {
        rc = cmd_fail("export", &err);
        cJSON_Delete(j);
    } else if (o.json) {
        json_report_done(j, t0, -1);
    }
    llmq_model_close(&m);
    free(cl);
    return rc;
}
