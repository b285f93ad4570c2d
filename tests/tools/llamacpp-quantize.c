/*
 * llamacpp-quantize - quantize a GGUF file with llama.cpp's own code
 * (llama_model_quantize of node-llama-cpp's prebuilt libllama), as
 * llama-quantize does without an imatrix, so that tests can make the files
 * llama.cpp users have (Q4_K_M, Q3_K_M, ...) without building llama.cpp:
 *
 *   llamacpp-quantize LIBLLAMA.so IN.gguf OUT.gguf TYPE
 *
 * TYPE is a llama-quantize type name (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K,
 * Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K).  Exit 0 on
 * success, 1 if llama.cpp fails, 2 on usage or a library it cannot load.
 *
 * Only two fields of llama_model_quantize_params are set, nthread and
 * ftype, the first two of the struct in every llama.h since the function
 * appeared; the rest stay as llama_model_quantize_default_params returns
 * them.  The struct is received into a buffer larger than any version of
 * it (returned through a hidden pointer on x86-64 either way).
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct { int32_t nthread, ftype; unsigned char rest[4096]; } qparams;
typedef qparams (*defaults_fn)(void);
typedef uint32_t (*quantize_fn)(const char *in, const char *out, const qparams *p);

/* llama.h's enum llama_ftype */
static const struct { const char *name; int ftype; } types[] = {
    { "Q4_0", 2 }, { "Q4_1", 3 }, { "Q8_0", 7 }, { "Q5_0", 8 }, { "Q5_1", 9 }, { "Q2_K", 10 },
    { "Q3_K_S", 11 }, { "Q3_K_M", 12 }, { "Q3_K_L", 13 }, { "Q4_K_S", 14 }, { "Q4_K_M", 15 },
    { "Q5_K_S", 16 }, { "Q5_K_M", 17 }, { "Q6_K", 18 },
};

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: llamacpp-quantize LIBLLAMA.so IN.gguf OUT.gguf TYPE\n");
        return 2;
    }
    int ft = -1;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(argv[4], types[i].name)) ft = types[i].ftype;
    if (ft < 0) {
        fprintf(stderr, "llamacpp-quantize: unknown type %s\n", argv[4]);
        return 2;
    }
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
    if (!h) {
        fprintf(stderr, "llamacpp-quantize: %s\n", dlerror());
        return 2;
    }
    defaults_fn defaults = (defaults_fn)dlsym(h, "llama_model_quantize_default_params");
    quantize_fn quantize = (quantize_fn)dlsym(h, "llama_model_quantize");
    void (*backend_init)(void) = (void (*)(void))dlsym(h, "llama_backend_init");
    if (!defaults || !quantize) {
        fprintf(stderr, "llamacpp-quantize: %s lacks llama_model_quantize\n", argv[1]);
        return 2;
    }
    if (backend_init) backend_init();
    qparams p = defaults();
    p.nthread = 2;
    p.ftype = ft;
    uint32_t rc = quantize(argv[2], argv[3], &p);
    if (rc) {
        fprintf(stderr, "llamacpp-quantize: llama_model_quantize failed (%u)\n", rc);
        return 1;
    }
    return 0;
}
