/* ct_export.c - write a model as a compressed-tensors checkpoint
 * (ct_export.h); formats/ctensors.c reads one. */
#include <stdio.h>
#include "ct_export.h"
#include "../base/fileio.h"
#include "../base/blocks.h"
#include "../../formats/json.h"
#include "../../formats/packed.h"
#include "../../formats/modeldir.h"
#include "../linears.h"

/* ---- writing ---- */

typedef struct {
    char prefix[96];
    const llmq_wmat *w;
} lin;

/* The tensor suffixes a quantized linear's storage uses, in llmq packed
 * files and in compressed-tensors files: not copied as they are. */
static int is_qsuffix(const char *s)
{
    static const char *sx[] = { "qweight", "scales", "zeros", "weight", "weight_packed", "weight_scale",
                                "weight_zero_point", "weight_shape", "weight_g_idx" };
    for (size_t i = 0; i < LLMQ_ARRAY_LEN(sx); i++)
        if (!strcmp(s, sx[i])) return 1;
    return 0;
}

static cJSON *qargs(int bits, int sym, const char *strategy, int group, int dynamic, const char *observer)
{
    cJSON *a = cJSON_CreateObject();
    if (!a) return NULL;
    cJSON_AddNullToObject(a, "actorder");
    cJSON_AddNullToObject(a, "block_structure");
    cJSON_AddBoolToObject(a, "dynamic", dynamic);
    if (group) cJSON_AddNumberToObject(a, "group_size", group);
    else cJSON_AddNullToObject(a, "group_size");
    cJSON_AddNumberToObject(a, "num_bits", bits);
    if (observer) cJSON_AddStringToObject(a, "observer", observer);
    else cJSON_AddNullToObject(a, "observer");
    cJSON_AddItemToObject(a, "observer_kwargs", cJSON_CreateObject());
    cJSON_AddStringToObject(a, "strategy", strategy);
    cJSON_AddBoolToObject(a, "symmetric", sym);
    cJSON_AddStringToObject(a, "type", "int");
    return a;
}

/* The quantization_config llm-compressor writes for its W4A16 / W4A16_ASYM
 * (group) and W8A8 (int8 channel weights, dynamic per-token int8
 * activations) presets. */
static cJSON *quant_config(int q8, int group, int sym, cJSON *ignore)
{
    cJSON *qc = cJSON_CreateObject(), *groups = cJSON_CreateObject(), *g0 = cJSON_CreateObject();
    cJSON *targets = cJSON_CreateArray();
    if (!qc || !groups || !g0 || !targets) {
        cJSON_Delete(qc); cJSON_Delete(groups); cJSON_Delete(g0); cJSON_Delete(targets); cJSON_Delete(ignore);
        return NULL;
    }
    cJSON_AddItemToArray(targets, cJSON_CreateString("Linear"));
    if (q8) cJSON_AddItemToObject(g0, "input_activations", qargs(8, 1, "token", 0, 1, NULL));
    else cJSON_AddNullToObject(g0, "input_activations");
    cJSON_AddNullToObject(g0, "output_activations");
    cJSON_AddItemToObject(g0, "targets", targets);
    cJSON_AddItemToObject(g0, "weights", q8 ? qargs(8, 1, "channel", 0, 0, "minmax") : qargs(4, sym, "group", group, 0, "minmax"));
    cJSON_AddItemToObject(groups, "group_0", g0);
    cJSON_AddItemToObject(qc, "config_groups", groups);
    cJSON_AddStringToObject(qc, "format", q8 ? "int-quantized" : "pack-quantized");
    cJSON_AddNullToObject(qc, "global_compression_ratio");
    cJSON_AddItemToObject(qc, "ignore", ignore);
    cJSON_AddNullToObject(qc, "kv_cache_scheme");
    cJSON_AddStringToObject(qc, "quant_method", "compressed-tensors");
    cJSON_AddStringToObject(qc, "quantization_status", "compressed");
    cJSON_AddItemToObject(qc, "sparsity_config", cJSON_CreateObject());
    cJSON_AddItemToObject(qc, "transform_config", cJSON_CreateObject());
    cJSON_AddStringToObject(qc, "version", "0.10.2");
    return qc;
}

/* config.json of the source with quantization_config (ctx) set */
static int edit_config(void *ctx, cJSON *root, llmq_err *err)
{
    cJSON **qc = ctx;
    (void)err;
    cJSON_DeleteItemFromObjectCaseSensitive(root, "quantization_config");
    cJSON_AddItemToObject(root, "quantization_config", *qc);
    *qc = NULL;      /* root owns it now */
    return LLMQ_OK;
}

int llmq_ct_export(const llmq_model *m, const char *out_dir, const char *command,
                   llmq_ct_export_stats *st, llmq_err *err)
{
    memset(st, 0, sizeof *st);
    int rc = llmq_modeldir_check(out_dir, m->ckpt.dir, m->path, err);
    if (rc) return rc;
    const llmq_config *c = &m->cfg;
    if ((rc = llmq_config_refuse_online(c, m->path, "vLLM would not apply them; export the model rotated without "
                                        "--online-hadamard", err)))
        return rc;
    size_t n_lin = (size_t)c->n_layers * LLMQ_LIN_COUNT + 1;
    lin *L = llmq_calloc(n_lin, sizeof *L, err);
    if (!L) return err->code;
    size_t k = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int i = 0; i < LLMQ_LIN_COUNT; i++, k++) {
            snprintf(L[k].prefix, sizeof L[k].prefix, "model.layers.%d.%s", l, llmq_linears[i].hf);
            L[k].w = llmq_layer_w(&m->layers[l], i);
        }
    if (m->lm_head.data != m->embed.data) {    /* an lm_head of its own, not the tied embeddings */
        snprintf(L[k].prefix, sizeof L[k].prefix, "lm_head");
        L[k++].w = &m->lm_head;
    }
    n_lin = k;

    /* one scheme for every quantized linear */
    const llmq_wmat *w0 = NULL;
    rc = LLMQ_OK;
    for (k = 0; k < n_lin; k++) {
        const llmq_wmat *w = L[k].w;
        if (w->type == LLMQ_W_MX8 || llmq_wtype_is_block(w->type) || w->type == LLMQ_W_Q3) {   /* Q3: cmd/export.c widens it first */
            rc = llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: linear '%s' is %s, which llmq does not export to compressed-tensors "
                             "(int4 group-wise and int8 per-channel are exported)", m->path, L[k].prefix,
                             w->type == LLMQ_W_MX8 ? "mxint8" : w->type == LLMQ_W_Q3 ? "int3 at three bits per weight"
                             : llmq_block_name(w->type));
            goto out_lin;
        }
        if (w->type != LLMQ_W_Q4 && w->type != LLMQ_W_Q8) continue;
        if (!w0) { w0 = w; continue; }
        if (w->type != w0->type || (w->type == LLMQ_W_Q4 && (w->group != w0->group || !w->zeros != !w0->zeros))) {
            rc = llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: linear '%s' is quantized unlike the first quantized linear "
                             "(one compressed-tensors config group is written)", m->path, L[k].prefix);
            goto out_lin;
        }
    }
    if (!w0) {
        rc = llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: has no int4 or int8 linear to export as compressed-tensors "
                         "(pack it first: llmq pack --format int4|int8)", m->path);
        goto out_lin;
    }
    const int q8 = w0->type == LLMQ_W_Q8, sym = !w0->zeros;
    if (q8) snprintf(st->scheme, sizeof st->scheme, "W8A8");
    else snprintf(st->scheme, sizeof st->scheme, "W4A16 group %d %s", w0->group, sym ? "symmetric" : "asymmetric");

    llmq_st_writer *wr = llmq_st_writer_new(err);
    cJSON *ignore = cJSON_CreateArray();
    void **bufs = llmq_calloc(n_lin * 2 + 1, sizeof *bufs, err);
    size_t nb = 0;
    if (!wr || !ignore || !bufs) { rc = llmq_errorf(err, LLMQ_ENOMEM, "out of memory"); goto out; }
    if (m->lm_head.data == m->embed.data) cJSON_AddItemToArray(ignore, cJSON_CreateString("lm_head"));

    /* every tensor that is no quantized linear's storage, as it is */
    for (size_t s = 0; s < m->ckpt.n_shards; s++)
        for (size_t i = 0; i < m->ckpt.shards[s].n_tensors; i++) {
            const llmq_st_tensor *t = &m->ckpt.shards[s].tensors[i];
            const char *dot = strrchr(t->name, '.');
            int skip = 0;
            if (dot && is_qsuffix(dot + 1))
                for (k = 0; k < n_lin && !skip; k++)
                    skip = L[k].w->type >= LLMQ_W_Q8 && strlen(L[k].prefix) == (size_t)(dot - t->name) &&
                           !strncmp(L[k].prefix, t->name, (size_t)(dot - t->name));
            if (skip) continue;
            if ((rc = llmq_st_writer_add(wr, t->name, t->dtype, t->ndim, t->shape, t->data, err))) goto out;
            st->bytes += t->nbytes;
        }
    for (k = 0; k < n_lin; k++) {
        const llmq_wmat *w = L[k].w;
        char name[160];
        if (w->type < LLMQ_W_Q8) {
            cJSON_AddItemToArray(ignore, cJSON_CreateString(L[k].prefix));
            st->linears_float++;
            continue;
        }
        st->linears_packed++;
        const int64_t R = w->rows, C = w->cols;
        if (q8) {
            int64_t sh[2] = { R, C }, ss[2] = { R, 1 };
            snprintf(name, sizeof name, "%s.weight", L[k].prefix);
            if ((rc = llmq_st_writer_add(wr, name, LLMQ_DT_I8, 2, sh, w->data, err))) goto out;
            snprintf(name, sizeof name, "%s.weight_scale", L[k].prefix);
            if ((rc = llmq_st_writer_add(wr, name, LLMQ_DT_F32, 2, ss, w->scales, err))) goto out;
            st->bytes += (uint64_t)(R * C + 4 * R);
            continue;
        }
        const int64_t ng = C / w->group;
        int64_t sp[2] = { R, C / 8 }, ss[2] = { R, ng }, s1[1] = { 2 }, sz[2] = { (R + 7) / 8, ng };
        uint8_t *shape = llmq_alloc_aligned(16, err);
        if (!shape) { rc = err->code; goto out; }
        bufs[nb++] = shape;
        llmq_put_le64(shape, (uint64_t)R);
        llmq_put_le64(shape + 8, (uint64_t)C);
        /* LLMQ_W_Q4's code bytes are the little-endian int32 words (ctensors.h) */
        snprintf(name, sizeof name, "%s.weight_packed", L[k].prefix);
        if ((rc = llmq_st_writer_add(wr, name, LLMQ_DT_I32, 2, sp, w->data, err))) goto out;
        snprintf(name, sizeof name, "%s.weight_scale", L[k].prefix);
        if ((rc = llmq_st_writer_add(wr, name, LLMQ_DT_F16, 2, ss, w->scales, err))) goto out;
        snprintf(name, sizeof name, "%s.weight_shape", L[k].prefix);
        if ((rc = llmq_st_writer_add(wr, name, LLMQ_DT_I64, 1, s1, shape, err))) goto out;
        st->bytes += (uint64_t)(R * C / 2 + 2 * R * ng + 16);
        if (sym) continue;
        /* zero points packed along the rows: row 8i + j in nibble j of word [i][g], unused nibbles 0 */
        uint8_t *zb = llmq_calloc((size_t)(sz[0] * ng), 4, err);
        if (!zb) { rc = err->code; goto out; }
        bufs[nb++] = zb;
        for (int64_t r = 0; r < R; r++)
            for (int64_t g = 0; g < ng; g++)
                zb[4 * ((r / 8) * ng + g) + (r % 8) / 2] |= (uint8_t)((w->zeros[r * ng + g] & 15u) << (4 * (r % 2)));
        snprintf(name, sizeof name, "%s.weight_zero_point", L[k].prefix);
        if ((rc = llmq_st_writer_add(wr, name, LLMQ_DT_I32, 2, sz, zb, err))) goto out;
        st->bytes += (uint64_t)(sz[0] * ng * 4);
    }
    if ((rc = llmq_st_writer_meta(wr, "format", "pt", err)) ||
        (command && (rc = llmq_st_writer_meta(wr, "llmq.command", command, err)))) goto out;

    cJSON *qc = quant_config(q8, w0->group, sym, ignore);
    ignore = NULL;
    if (!qc) { rc = llmq_errorf(err, LLMQ_ENOMEM, "out of memory"); goto out; }
    rc = llmq_modeldir_write(out_dir, m->ckpt.dir, m->path, wr, edit_config, &qc, err);
    cJSON_Delete(qc);
out:
    cJSON_Delete(ignore);
    llmq_st_writer_free(wr);
    for (size_t i = 0; i < nb; i++) free(bufs[i]);
    free(bufs);
out_lin:
    free(L);
    return rc;
}
