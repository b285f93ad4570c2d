/*
 * fuzz-packed.c - a model directory as `llmq verify DIR` opens it: a fixed
 * tiny config.json (hidden 32, 1 layer, 2 heads, 1 KV head, intermediate
 * 64, vocab 16; the seeds are packed from a model of that shape) and
 * model.safetensors from the input, through llmq_model_open: the
 * safetensors reader, the llmq metadata of a packed file
 * (llmq_packed_meta), the crc32 of every tensor (llmq_packed_check_crc),
 * each linear's quantized view (llmq_packed_linear), shapes against the
 * config, finiteness.  A plain float checkpoint takes the same path.
 *
 * A model that opens is run: two tokens through the forward pass, which
 * reads every weight (it may fail only with LLMQ_ENONFINITE: finite weights
 * can still overflow fp32).  And since a mutated tensor rarely keeps its crc32,
 * the views are also built directly, crc check skipped (llmq_ckpt_open,
 * llmq_packed_meta, llmq_packed_linear), and each view that is accepted is
 * multiplied by a vector.
 */
#include "fuzz.h"   /* first: it defines _GNU_SOURCE */
#include "lib/runner.h"
#include "formats/packed.h"

static const char config[] =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"attention_bias\":false,\"bos_token_id\":1,\"eos_token_id\":2,"
    "\"head_dim\":16,\"hidden_act\":\"silu\",\"hidden_size\":32,\"intermediate_size\":64,"
    "\"max_position_embeddings\":2048,\"mlp_bias\":false,\"model_type\":\"llama\",\"num_attention_heads\":2,"
    "\"num_hidden_layers\":1,\"num_key_value_heads\":1,\"rms_norm_eps\":1e-05,\"rope_scaling\":null,"
    "\"rope_theta\":10000.0,\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\",\"vocab_size\":16}";

extern void openblas_set_num_threads(int);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    openblas_set_num_threads(1);
    return 0;
}

static void run_views(void)
{
    static const struct { const char *name; int64_t rows, cols; } lin[] = {
        { "model.layers.0.self_attn.q_proj", 32, 32 }, { "model.layers.0.self_attn.k_proj", 16, 32 },
        { "model.layers.0.self_attn.v_proj", 16, 32 }, { "model.layers.0.self_attn.o_proj", 32, 32 },
        { "model.layers.0.mlp.gate_proj", 64, 32 }, { "model.layers.0.mlp.up_proj", 64, 32 },
        { "model.layers.0.mlp.down_proj", 32, 64 }, { "lm_head", 16, 32 },
    };
    llmq_ckpt c;
    llmq_err err = { 0 };
    if (llmq_ckpt_open(&c, fuzz_dir(), &err)) return;
    cJSON *meta = NULL;
    if (llmq_packed_meta(&c.shards[0], &meta, &err) == LLMQ_OK && meta) {
        float x[64], y[64];
        for (int i = 0; i < 64; i++) x[i] = 1.0f / (float)(i + 1);
        for (size_t i = 0; i < LLMQ_ARRAY_LEN(lin); i++) {
            llmq_wmat w;
            int found = 0;
            memset(&w, 0, sizeof w);
            if (llmq_packed_linear(&c, meta, lin[i].name, lin[i].rows, lin[i].cols, &w, &found, &err) || !found)
                continue;
            if (w.rows != lin[i].rows || w.cols != lin[i].cols) abort();
            llmq_matvec(NULL, &w, x, y);
        }
    }
    cJSON_Delete(meta);
    llmq_ckpt_close(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_write("config.json", config, sizeof config - 1);
    fuzz_write("model.safetensors", data, size);
    llmq_model m;
    llmq_err err = { 0 };
    if (llmq_model_open(&m, fuzz_dir(), &err) == LLMQ_OK) {
        (void)llmq_model_decode_bytes(&m);
        (void)llmq_model_file_bytes(&m);
        (void)llmq_model_params(&m);
        llmq_runner *r = NULL;
        if (llmq_runner_new(&r, &m, 4, NULL, &err) == LLMQ_OK) {
            static const int32_t tok[2] = { 1, 7 };
            float logits[2 * 16];
            /* finite weights may still overflow fp32 on the way: that is
             * LLMQ_ENONFINITE, any other failure is a finding */
            if (llmq_runner_forward(r, tok, 2, 0, logits, 1, &err) != LLMQ_OK && err.code != LLMQ_ENONFINITE) {
                fprintf(stderr, "forward of an opened model failed: %s\n", err.msg);
                abort();
            }
            llmq_runner_free(r);
        }
        llmq_model_close(&m);
    } else if (err.code == LLMQ_OK || !err.msg[0] || strchr(err.msg, '\n')) {
        abort();
    }
    run_views();
    return 0;
}
