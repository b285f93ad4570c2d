/*
 * cpu.c - pick the kernel ISA once at run time and dispatch through a table.
 * The dispatch state below is the library's only mutable global.
 */
#include <cpuid.h>
#include <pthread.h>
#include <cblas.h>
#include "kern-int.h"

static struct {
    pthread_once_t once;
    llmq_isa hw;            /* best the hardware has */
    llmq_isa isa;           /* in use */
    int hw_bf16;            /* the hardware has AVX512-BF16 */
    llmq_ktable table;      /* isa's kernels, NULL slots filled from the oracle */
} dispatch = { .once = PTHREAD_ONCE_INIT };

/* F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports
 * does not know "f16c", and the fuzz build (tests/fuzz) uses clang. */
static int has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

/* The best ISA, and in *bf16 whether it has AVX512-BF16 (vdpbf16ps). */
static llmq_isa detect_hw(int *bf16)
{
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c()))
        return LLMQ_ISA_SCALAR;
    /* The AVX-512 file is compiled with VNNI and DQ enabled, so the compiler
     * may use them anywhere in it: require all of them. */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vnni")) {
        unsigned a, b, c, d;
        /* CPUID leaf 7 sub-leaf 1, EAX bit 5 */
        *bf16 = __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5));
        return LLMQ_ISA_AVX512;
    }
    return LLMQ_ISA_AVX2;
}

static void fill_table(llmq_isa isa)
{
    const llmq_ktable *src = isa == LLMQ_ISA_AVX512 ? &llmq_ktable_avx512
                           : isa == LLMQ_ISA_AVX2 ? &llmq_ktable_avx2 : &llmq_ktable_ref;
    const llmq_ktable *ref = &llmq_ktable_ref;
    llmq_ktable t = *src;
    for (int i = 0; i < LLMQ_W_COUNT; i++) {
        if (!t.matvec[i]) t.matvec[i] = ref->matvec[i];
        if (!t.dequant[i]) t.dequant[i] = ref->dequant[i];
    }
    if (!t.matvec_a8) t.matvec_a8 = ref->matvec_a8;
    if (!t.matmul_a8) t.matmul_a8 = ref->matmul_a8;
    /* the AVX-512 file's vdpbf16ps needs AVX512-BF16 beyond what selects it;
     * without it (and in the AVX2 table) the slot stays empty and
     * llmq_matmul_bf16 widens (matmul.c); the oracle's table has its own */
    if (isa == LLMQ_ISA_AVX512 && !dispatch.hw_bf16) t.matmul_bf16 = NULL, t.gemm_bf16p = NULL, t.attn_scores_bf16 = NULL,
                                                 t.attn_scores_codes = NULL, t.attn_values_codes = NULL;
    if (!t.gemm_bf16p) t.gemm_bf16p = ref->gemm_bf16p;
    if (!t.matvec_q4a8) t.matvec_q4a8 = ref->matvec_q4a8;
    /* the oracle's matmul is its matvec per token: an ISA with its own
     * matvec_q4a8 needs its own matmul_q4a8 too (t-kernels checks they agree) */
    if (!t.matmul_q4a8) t.matmul_q4a8 = ref->matmul_q4a8;
    if (!t.quant_blocks) t.quant_blocks = ref->quant_blocks;
    if (!t.q4a8_prep) t.q4a8_prep = ref->q4a8_prep;
    if (!t.attn_scores) t.attn_scores = ref->attn_scores;
    if (!t.attn_values) t.attn_values = ref->attn_values;
    /* the oracle's bf16 scores are the oracle of the SIMD ones; an ISA
     * without a bf16 dot product runs its own fp32 scores instead */
    if (!t.attn_scores_bf16) t.attn_scores_bf16 = isa == LLMQ_ISA_SCALAR ? ref->attn_scores_bf16 : t.attn_scores;
    if (!t.kv_deq_channels) t.kv_deq_channels = ref->kv_deq_channels;
    if (!t.kv_deq_groups) t.kv_deq_groups = ref->kv_deq_groups;
    /* attn_scores_codes and attn_values_codes stay empty without bf16
     * products (the AVX2 table has none): llmq_attn_*_codes then decline
     * and kvcache.c reads the tile; the oracle's table has its own */
    dispatch.table = t;
    dispatch.isa = isa;
}

static void init_once(void)
{
    dispatch.hw = detect_hw(&dispatch.hw_bf16);
    llmq_isa isa = dispatch.hw;
    const char *env = getenv("LLMQ_ISA");
    if (env) {
        llmq_isa cap = isa;
        if (!strcmp(env, "scalar")) cap = LLMQ_ISA_SCALAR;
        else if (!strcmp(env, "avx2")) cap = LLMQ_ISA_AVX2;
        else if (!strcmp(env, "avx512")) cap = LLMQ_ISA_AVX512;
        /* an unknown value caps nothing: the library cannot report it here;
         * cmd/ may validate LLMQ_ISA itself */
        isa = LLMQ_MIN(isa, cap);
    }
    fill_table(isa);
    /* we thread ourselves (matmul.c): OpenBLAS must not spawn its own */
    openblas_set_num_threads(1);
}

llmq_isa llmq_cpu_isa(void)
{
    pthread_once(&dispatch.once, init_once);
    return dispatch.isa;
}

llmq_isa llmq_cpu_isa_max(void)
{
    pthread_once(&dispatch.once, init_once);
    return dispatch.hw;
}

llmq_isa llmq_cpu_set_isa(llmq_isa isa)
{
    pthread_once(&dispatch.once, init_once);
    llmq_isa prev = dispatch.isa;
    if ((int)isa < LLMQ_ISA_SCALAR) isa = LLMQ_ISA_SCALAR;
    fill_table(LLMQ_MIN(isa, dispatch.hw));
    return prev;
}

const char *llmq_isa_name(llmq_isa isa)
{
    switch (isa) {
    case LLMQ_ISA_SCALAR: return "scalar";
    case LLMQ_ISA_AVX2:   return "avx2";
    case LLMQ_ISA_AVX512: return "avx512";
    }
    return "unknown";
}

const llmq_ktable *llmq_ktable_cur(void)
{
    pthread_once(&dispatch.once, init_once);
    return &dispatch.table;
}
