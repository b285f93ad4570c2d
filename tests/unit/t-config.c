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

/* Llama 3.1's rope_scaling (transformers 4 layout, theta at the top) */
TEST(llama3_rope)
{
    llmq_config c;
    llmq_err e = { 0, "" };
    CHECK_EQ_INT(parse("{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rope_theta\": 500000.0,"
                       "\"rope_scaling\": {\"factor\": 32.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0,"
                       "\"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}}", &c, &e), 0);
    CHECK_EQ_INT(c.rope_type, LLMQ_ROPE_LLAMA3);
    CHECK_NEAR(c.rope_theta, 500000.0, 0);
    CHECK_NEAR(c.rope_factor, 32.0, 0);
    CHECK_NEAR(c.rope_low_freq, 1.0, 0);
    CHECK_NEAR(c.rope_high_freq, 4.0, 0);
    CHECK_NEAR(c.rope_orig_max, 8192.0, 0);
    CHECK_EQ_INT(parse("{\"architectures\": [\"LlamaForCausalLM\"], " BASE ","
                       "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}}", &c, &e), 0);
    CHECK_EQ_INT(c.rope_type, LLMQ_ROPE_LINEAR);
    CHECK_NEAR(c.rope_factor, 2.0, 0);
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
          LLMQ_EFORMAT, "\"rope_scaling.low_freq_factor\" must be a positive number" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8,"
          "\"low_freq_factor\": 4, \"high_freq_factor\": 4, \"original_max_position_embeddings\": 8192}}", LLMQ_EFORMAT, "must exceed" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rope_scaling\": {\"type\": \"linear\"}}", LLMQ_EFORMAT,
          "\"rope_scaling.factor\" must be a positive number" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rope_parameters\": {\"rope_type\": \"linear\", \"factor\": -2}}",
          LLMQ_EFORMAT, "\"rope_parameters.factor\" must be a positive number" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2}}",
          LLMQ_EUNSUPPORTED, "rope type \"dynamic\" is not supported" },
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

/* JSON that cJSON takes but Python's json (transformers) refuses or reads
 * differently: refused, with the file and the byte offset named. */
TEST(strict_json)
{
    llmq_config c;
    struct { const char *json; size_t len; const char *needle; } cases[] = {
        { "{\"architectures\": [\"LlamaForCausalLM\"], " BASE "} garbage {\"hidden_size\": 1}", 0,
          "trailing bytes after the JSON value at byte 154" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], " BASE "}\n{}", 0, "trailing bytes" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], " BASE "}\n\x01", 0, "trailing bytes" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"hidden_size\": 32}", 0,
          "duplicate key 'hidden_size' in the top-level object" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rope_scaling\": {\"type\": \"default\", \"type\": \"x\"}}", 0,
          "duplicate key 'type' in 'rope_scaling'" },
        { "{\"architectures\": [\"Llama\nForCausalLM\"], " BASE "}", 0, "raw control character 0x0a in a string at byte 25" },
        { "{\"architectures\": [\"Llama\tForCausalLM\"], " BASE "}", 0, "raw control character 0x09" },
        { "{\"architectures\": [\"Llama\xff\"], " BASE "}", 0, "invalid UTF-8 at byte 25" },
        { "{\"architectures\": [\"Llama\xc0\xaf\"], " BASE "}", 0, "invalid UTF-8 at byte 25" },
        { "{\"architectures\": [\"Llama\xed\xa0\x80\"], " BASE "}", 0, "invalid UTF-8" },
        { "{\"architectures\": [\"LlamaForCausalLM\\u0000x\"], " BASE "}", 0, "\\u0000 in a string at byte 36" },
        { "\xef\xbb\xbf{\"architectures\": [\"LlamaForCausalLM\"], " BASE "}", 0, "at byte 0" },
        { "{\"architectures\":\x0b[\"LlamaForCausalLM\"], " BASE "}", 0, "unexpected byte 0x0b at byte 17" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"head_dim\": 016}", 0, "malformed number" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rope_theta\": 1.}", 0, "malformed number" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rope_theta\": -.5}", 0, "malformed number" },
        /* a NUL byte: cJSON would take it as whitespace */
        { "{\"architectures\": [\"LlamaForCausalLM\"],\0 " BASE "}", 40, "unexpected byte 0x00 at byte 39" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        llmq_err e = { 0, "" };
        size_t len = cases[i].len ? cases[i].len + strlen(cases[i].json + cases[i].len) : strlen(cases[i].json);
        int rc = llmq_config_parse(&c, cases[i].json, len, "m/config.json", &e);
        CHECK_MSG(rc == LLMQ_EFORMAT && strstr(e.msg, cases[i].needle) && !strncmp(e.msg, "m/config.json: ", 15),
                  "case %zu: rc %d msg '%s'", i, rc, e.msg);
    }
    /* whitespace after the object, and JSON escapes, are fine */
    llmq_err e = { 0, "" };
    CHECK_EQ_INT(parse("{\"architectures\": [\"Llama\\u0046orCausalLM\"], " BASE "} \t\r\n\n", &c, &e), 0);
    CHECK_EQ_INT(c.arch, LLMQ_ARCH_LLAMA);
}

/* Strings from the file reach the message escaped, on one line. */
TEST(hostile_strings_quoted)
{
    llmq_config c;
    struct { const char *json; int code; const char *needle; } cases[] = {
        { "{\"architectures\": [\"Qwen2\\u001eForCausaLM\"], " BASE "}", LLMQ_EUNSUPPORTED,
          "architecture \"Qwen2\\x1eForCausaLM\" is not supported" },
        { "{\"architectures\": [\"Llama\\nForCausalLM\\r\\u009b2J\\u202e\"], " BASE "}", LLMQ_EUNSUPPORTED,
          "\"Llama\\nForCausalLM\\r\\u009b2J\\u202e\"" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"hidden_act\": \"s\\nlu\"}", LLMQ_EUNSUPPORTED,
          "hidden_act \"s\\nlu\" is not supported" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rope_scaling\": {\"rope_type\": \"a\\u0007\"}}",
          LLMQ_EUNSUPPORTED, "rope type \"a\\x07\"" },
        /* printable UTF-8 stays readable */
        { "{\"architectures\": [\"\xe9\x80\x9a\xe4\xb9\x89\xc4\xa0Model\"], " BASE "}", LLMQ_EUNSUPPORTED,
          "\"\xe9\x80\x9a\xe4\xb9\x89\xc4\xa0Model\"" },
        /* long strings are cut */
        { "{\"architectures\": [\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
          "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"], "
          BASE "}", LLMQ_EUNSUPPORTED, "AAAA...\" is not supported" },
        /* huge numbers print short */
        { "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 1e300, \"intermediate_size\": 1,"
          "\"num_hidden_layers\": 1, \"num_attention_heads\": 1, \"vocab_size\": 1}", LLMQ_EFORMAT,
          "\"hidden_size\" = 1e+300 is out of range" },
        { "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 16777217, \"intermediate_size\": 1,"
          "\"num_hidden_layers\": 1, \"num_attention_heads\": 1, \"vocab_size\": 1}", LLMQ_EFORMAT,
          "\"hidden_size\" = 16777217 is out of range" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        llmq_err e = { 0, "" };
        int rc = parse(cases[i].json, &c, &e);
        int oneline = 1;
        for (const unsigned char *p = (const unsigned char *)e.msg; *p; p++)
            if (*p < 0x20 || *p == 0x7f) oneline = 0;
        CHECK_MSG(rc == cases[i].code && strstr(e.msg, cases[i].needle) && oneline && strlen(e.msg) < 300,
                  "case %zu: rc %d msg '%s'", i, rc, e.msg);
    }
}

TEST_MAIN()
