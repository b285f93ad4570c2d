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

/* --to compressed-tensors */
static int export_ct(const char *model, int argc, char **argv)
{
    llmq_err err = { 0, "" };
    llmq_model m;
    double t0 = llmq_now();
    int rc;
    if ((rc = llmq_model_open(&m, model, &err))) return cmd_fail("export", &err);
    char *cl = command_line("export", argc, argv);
    llmq_ct_export_stats st;
    rc = check_outputs(&m, NULL, o.out, NULL, &err);
    if (!rc) rc = llmq_ct_export(&m, o.out, cl, &st, &err);
    if (rc) rc = cmd_fail("export", &err);
    else if (o.json) {
        cJSON *j = json_report(model, o.out);
        cJSON_AddStringToObject(j, "to", "compressed-tensors");
        cJSON_AddStringToObject(j, "source_weights", m.weights_dtype);
        cJSON_AddStringToObject(j, "scheme", st.scheme);
        cJSON_AddBoolToObject(j, "exact", 1);
        cJSON_AddNumberToObject(j, "linears_packed", st.linears_packed);
        cJSON_AddNumberToObject(j, "linears_float", st.linears_float);
        cJSON_AddNumberToObject(j, "tensor_bytes", (double)st.bytes);
        json_report_done(j, t0, -1);
    }
    llmq_model_close(&m);
    free(cl);
    return rc;
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
    if (to_ct) return export_ct(args[0], argc, argv);
    llmq_gguf_export_opts eo;
    memset(&eo, 0, sizeof eo);
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(types); i++)
        if (!strcmp(o.type, types[i].name)) eo.type = types[i].t;
    eo.name = o.name;
    char *cl = command_line("export", argc, argv);
    eo.command = cl;

    llmq_err err = { 0, "" };
    llmq_model m;
    double t0 = llmq_now();
    if ((rc = llmq_model_open(&m, args[0], &err))) { free(cl); return cmd_fail("export", &err); }
    llmq_gguf_export_stats st;
    rc = check_outputs(&m, NULL, NULL, o.out, &err);
    if (!rc) rc = llmq_gguf_export(&m, &eo, o.out, &st, &err);
    if (rc) rc = cmd_fail("export", &err);
    else if (o.json) {
        cJSON *j = json_report(args[0], o.out);
        cJSON_AddStringToObject(j, "source_weights", m.weights_dtype);
        cJSON_AddStringToObject(j, "file_type", st.file_type);
        cJSON_AddBoolToObject(j, "exact", st.exact);
        cJSON_AddNumberToObject(j, "q4_1_m_max_abs_err", st.m_max_err);
        cJSON_AddNumberToObject(j, "q8_0_scale_max_rel_err", st.q8_scale_rel_err);
        cJSON_AddNumberToObject(j, "tensors", st.tensors);
        cJSON_AddNumberToObject(j, "bits_per_weight", st.bits_per_weight);
        cJSON_AddNumberToObject(j, "file_bytes", (double)st.bytes);
        json_report_done(j, t0, -1);
    }
    llmq_model_close(&m);
    free(cl);
    return rc;
}
