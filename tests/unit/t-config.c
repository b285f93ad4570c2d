/* t-config.c - config.json parsing: both transformers generations, errors. */
#include "tests/test.h"
#include "formats/config.h"

static int parse(const char *json, llmq_config *c, llmq_err *err)
{
    return llmq_config_parse(c, json, strlen(json), "m/config.json", err);
}

#define BASE "\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, " \
             "\"num_attention_heads\": 4, \"vocab_size\": 100"

TEST(llama_transformers4)
{
    llmq_config c;
    llmq_err e = { 0, "" };
    CHECK_EQ_INT(parse("{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"num_key_value_heads\": 2,"
                       "\"rope_theta\": 500000.0, \"torch_dtype\": \"bfloat16\", \"rms_norm_eps\": 1e-5,"
                       "\"rope_scaling\": null, \"tie_word_embeddings\": true}", &c, &e), 0);
    CHECK_EQ_INT(c.arch, LLMQ_ARCH_LLAMA);
    CHECK_EQ_INT(c.n_kv_heads, 2);
    CHECK_EQ_INT(c.head_dim, 16);
    CHECK_NEAR(c.rope_theta, 500000.0, 0);
    CHECK_NEAR(c.rms_eps, 1e-5, 0);
    CHECK(!strcmp(c.dtype, "bfloat16"));
    CHECK_EQ_INT(c.tie_embeddings, 1);
    CHECK_EQ_INT(c.qkv_bias, 0);
}

TEST(qwen2_transformers5)
{
    llmq_config c;
    llmq_err e = { 0, "" };
    CHECK_EQ_INT(parse("{\"architectures\": [\"Qwen2ForCausalLM\"], " BASE ", \"dtype\": \"float32\","
                       "\"rope_parameters\": {\"rope_theta\": 1000000.0, \"rope_type\": \"default\"},"
                       "\"head_dim\": 32, \"sliding_window\": null, \"use_sliding_window\": false}", &c, &e), 0);
    CHECK_EQ_INT(c.arch, LLMQ_ARCH_QWEN2);
    CHECK_NEAR(c.rope_theta, 1e6, 0);
    CHECK_EQ_INT(c.head_dim, 32);
    CHECK_EQ_INT(c.n_kv_heads, 4);   /* defaults to the query heads */
    CHECK_EQ_INT(c.qkv_bias, 1);
    CHECK_EQ_INT(c.o_bias, 0);
    CHECK(!strcmp(c.dtype, "float32"));
}

TEST(llama_biases_and_mistral_window)
{
    llmq_config c;
    llmq_err e = { 0, "" };
    CHECK_EQ_INT(parse("{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"attention_bias\": true, \"mlp_bias\": true}", &c, &e), 0);
    CHECK(c.qkv_bias && c.o_bias && c.mlp_bias);
    CHECK_EQ_INT(parse("{\"architectures\": [\"MistralForCausalLM\"], " BASE ", \"sliding_window\": 4096}", &c, &e), 0);
    CHECK_EQ_INT(c.sliding_window, 4096);
}

TEST(errors)
{
    llmq_config c;
    struct { const char *json; int code; const char *needle; } cases[] = {
        { "not json", LLMQ_EFORMAT, "not valid JSON" },
        { "[1]", LLMQ_EFORMAT, "not a JSON object" },
        { "{" BASE "}", LLMQ_EFORMAT, "architectures" },
        { "{\"architectures\": [\"GPT2LMHeadModel\"], " BASE "}", LLMQ_EUNSUPPORTED, "GPT2LMHeadModel" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64}", LLMQ_EFORMAT, "intermediate_size" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64.5, \"intermediate_size\": 1,"
          "\"num_hidden_layers\": 1, \"num_attention_heads\": 1, \"vocab_size\": 1}", LLMQ_EFORMAT, "hidden_size" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": -1, \"intermediate_size\": 1,"
          "\"num_hidden_layers\": 1, \"num_attention_heads\": 1, \"vocab_size\": 1}", LLMQ_EFORMAT, "out of range" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"num_key_value_heads\": 3}", LLMQ_EFORMAT, "not a multiple" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8}}",
          LLMQ_EUNSUPPORTED, "llama3" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rope_scaling\": {\"type\": \"linear\"}}", LLMQ_EUNSUPPORTED, "linear" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"hidden_act\": \"gelu\"}", LLMQ_EUNSUPPORTED, "gelu" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rope_theta\": \"big\"}", LLMQ_EFORMAT, "rope_theta" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rope_theta\": 0}", LLMQ_EFORMAT, "rope_theta" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"head_dim\": 15}", LLMQ_EFORMAT, "odd" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"attention_bias\": 1}", LLMQ_EFORMAT, "attention_bias" },
        { "{\"architectures\": [\"Qwen2ForCausalLM\"], " BASE ", \"use_sliding_window\": true}", LLMQ_EUNSUPPORTED, "sliding" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"pretraining_tp\": 2}", LLMQ_EUNSUPPORTED, "pretraining_tp" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        llmq_err e = { 0, "" };
        int rc = parse(cases[i].json, &c, &e);
        CHECK_MSG(rc == cases[i].code && strstr(e.msg, cases[i].needle) && strstr(e.msg, "m/config.json"),
                  "case %zu: rc %d msg '%s'", i, rc, e.msg);
    }
}

TEST_MAIN()
