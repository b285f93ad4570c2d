/* modeldir.c - the one writer of model directories (modeldir.h). */
#include "modeldir.h"
#include "json.h"
#include "../lib/base/fileio.h"

static const char *side_files[] = { "tokenizer.json", "tokenizer_config.json", "generation_config.json",
                                    "special_tokens_map.json", "tokenizer.model" };

int llmq_modeldir_check(const char *out_dir, const char *src_dir, const char *src_file, llmq_err *err)
{
    if (llmq_same_file(out_dir, src_dir) || (src_file && llmq_same_file(out_dir, src_file)))
        return llmq_errorf(err, LLMQ_EUSAGE, "%s: refusing to overwrite an input", out_dir);
    return LLMQ_OK;
}

void llmq_config_set_dtype(cJSON *j, llmq_dtype dt)
{
    const char *name = dt == LLMQ_DT_F32 ? "float32" : dt == LLMQ_DT_F16 ? "float16" : "bfloat16";
    const char *keys[] = { "torch_dtype", "dtype" };
    int had = 0;
    for (int i = 0; i < 2; i++)
        if (cJSON_GetObjectItemCaseSensitive(j, keys[i])) {
            cJSON_ReplaceItemInObjectCaseSensitive(j, keys[i], cJSON_CreateString(name));
            had = 1;
        }
    if (!had) cJSON_AddStringToObject(j, "torch_dtype", name);
}

static int copy_files(const llmq_outdir *od, const char *src_dir, int with_config, llmq_err *err)
{
    for (size_t i = with_config ? 0 : 1; i < LLMQ_ARRAY_LEN(side_files) + 1; i++) {
        const char *f = i == 0 ? "config.json" : side_files[i - 1];
        char *src = llmq_path_join(src_dir, f, err), *dst = src ? llmq_outdir_file(od, f, err) : NULL;
        if (!dst) { free(src); return err->code; }
        int rc = llmq_exists(src) ? llmq_copy_file(src, dst, err) : LLMQ_OK;
        free(src);
        free(dst);
        if (rc) return rc;
    }
    return LLMQ_OK;
}

static int edit_config(const llmq_outdir *od, const char *src_dir, llmq_config_edit edit, void *ctx, llmq_err *err)
{
    char *src = llmq_path_join(src_dir, "config.json", err), *text = NULL, *out = NULL;
    size_t len;
    cJSON *j = NULL;
    int rc;
    if (!src) return err->code;
    if ((rc = llmq_read_file(src, &text, &len, err)) || (rc = llmq_json_parse(text, len, src, &j, err))) goto out;
    if (!cJSON_IsObject(j)) { rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: is not a JSON object", src); goto out; }
    if ((rc = edit(ctx, j, err))) goto out;
    if (!(out = cJSON_Print(j))) { rc = llmq_errorf(err, LLMQ_ENOMEM, "out of memory for config.json"); goto out; }
    rc = llmq_outdir_write_text(od, "config.json", out, err);
out:
    cJSON_Delete(j);
    free(src); free(text); free(out);
    return rc;
}

int llmq_modeldir_write(const char *out_dir, const char *src_dir, const char *src_file, llmq_st_writer *w,
                        llmq_config_edit edit, void *ctx, llmq_err *err)
{
    int rc = llmq_modeldir_check(out_dir, src_dir, src_file, err);
    if (rc) return rc;
    llmq_outdir od;
    if ((rc = llmq_outdir_open(&od, out_dir, err))) return rc;
    char *path = llmq_outdir_file(&od, "model.safetensors", err);
    rc = path ? llmq_st_writer_finish(w, path, err) : (int)err->code;
    free(path);
    if (!rc) rc = copy_files(&od, src_dir, !edit, err);
    if (!rc && edit) rc = edit_config(&od, src_dir, edit, ctx, err);
    if (!rc) return llmq_outdir_commit(&od, err);
    llmq_outdir_fail(&od, err);
    return rc;
}
