/*
 * t-quant.c - the reference quantizers (lib/quant): round-trip error
 * bounds, edge groups (all zero, constant, one huge value, subnormals, f16
 * scale overflow), exact layouts, and input errors that name the tensor.
 */
#include "../test.h"
#include <float.h>
#include <string.h>
#include "quant/quant.h"
#include "kernels/kernels.h"

/* see t-kernels.c: test.h's TEST(name) clashes with the member .name */

/* dequantized Q8 values are code * s rounded to float: one f32 rounding on
 * top of the s / 2 quantization bound */
#define Q8_ROUNDING (1.0 / (1 << 23))

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) { rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17; return rng_state; }
static float rndf(void) { return (float)((double)(rnd() >> 11) / 9007199254740992.0 * 2.0 - 1.0); }

/* rows of assorted character: gaussian-ish, one outlier, all zero,
 * constant, subnormal, all positive, huge */
static void fill_row(float *w, int64_t cols, int kind)
{
    for (int64_t j = 0; j < cols; j++) {
        float v = (rndf() + rndf() + rndf()) * 0.05f;
        switch (kind % 7) {
        case 1: if (j == cols / 3) v = 1e4f; break;
        case 2: v = 0.0f; break;
        case 3: v = 0.3f; break;
        case 4: v *= 1e-38f; break;          /* float subnormals */
        case 5: v = fabsf(v) + 1.0f; break;
        case 6: v *= 1e30f; break;
        default: break;
        }
        w[j] = v;
    }
}

TEST(q8_round_trip)
{
    enum { R = 14, C = 200 };
    static float w[R * C], out[C];
    static int8_t q[R * C];
    float s[R];
    for (int r = 0; r < R; r++) fill_row(w + r * C, C, r);
    llmq_err err;
    CHECK_EQ_INT(llmq_q8_quantize(w, R, C, q, s, "t", &err), LLMQ_OK);
    for (int r = 0; r < R; r++) {
        double amax = 0;
        for (int j = 0; j < C; j++) amax = fmax(amax, fabs(w[r * C + j]));
        if (amax == 0) CHECK(s[r] == 0.0f);
        else CHECK((double)s[r] * 127 >= amax && s[r] > 0.0f);
        llmq_q8_dequantize_row(q + r * C, s[r], C, out);
        for (int j = 0; j < C; j++) {
            CHECK(q[r * C + j] >= -127);
            double e = fabs((double)w[r * C + j] - out[j]);
            CHECK_MSG(e <= s[r] / 2.0 + fabs(w[r * C + j]) * Q8_ROUNDING + 1e-45, "row %d col %d: err %g scale %g", r, j, e, s[r]);
        }
    }
}

/* The plain form llmq_q8_quantize_row had before its loops lost their libm
 * calls: the oracle the fast loops must match code for code. */
static void q8_row_oracle(const float *w, int64_t cols, int8_t *codes, float *scale)
{
    float amax = 0.0f;
    for (int64_t j = 0; j < cols; j++) amax = fmaxf(amax, fabsf(w[j]));
    float s = (float)((double)amax / LLMQ_Q8_MAXQ);
    if ((double)s * LLMQ_Q8_MAXQ < (double)amax) s = nextafterf(s, INFINITY);
    if (isinf((float)LLMQ_Q8_MAXQ * s)) s = nextafterf(s, 0.0f);
    *scale = s;
    for (int64_t j = 0; j < cols; j++) {
        double q = s > 0.0f ? nearbyint((double)w[j] / s) : 0.0;
        q = fmin(fmax(q, -LLMQ_Q8_MAXQ), LLMQ_Q8_MAXQ);
        codes[j] = (int8_t)q;
    }
}

TEST(q8_row_matches_oracle)
{
    enum { C = 257 };
    static float w[C];
    int8_t q[C], qo[C];
    for (int r = 0; r < 400; r++) {
        fill_row(w, C, r);
        if (r % 5 == 0) {                  /* exact ties: k + 0.5 steps of a 127-step row */
            w[0] = 127.0f;
            for (int j = 1; j < C; j++) w[j] = (float)((int)(rnd() % 254) - 127) + 0.5f;
        }
        if (r % 11 == 3) w[r % C] = NAN;
        if (r % 13 == 4) w[(r + 1) % C] = r & 1 ? INFINITY : -INFINITY;
        if (r % 17 == 5) w[(r + 2) % C] = -0.0f;
        float s, so;
        llmq_q8_quantize_row(w, C, q, &s);
        q8_row_oracle(w, C, qo, &so);
        CHECK_MSG(!memcmp(&s, &so, sizeof s) && !memcmp(q, qo, C), "row %d: scale %g vs %g", r, s, so);
    }
}

TEST(q8_extremes)
{
    float w[4] = { FLT_MAX, -FLT_MAX, 1.0f, 0.0f }, s, out[4];
    int8_t q[4];
    llmq_q8_quantize_row(w, 4, q, &s);
    CHECK(isfinite(s));
    CHECK_EQ_INT(q[0], 127);
    CHECK_EQ_INT(q[1], -127);
    llmq_q8_dequantize_row(q, s, 4, out);
    CHECK(isfinite(out[0]) && fabs(out[0] - FLT_MAX) <= s + FLT_MAX * Q8_ROUNDING);   /* clips by < 1 ulp of s */
    float tiny[2] = { 1.4e-45f, -1.4e-45f };     /* smallest subnormal */
    llmq_q8_quantize_row(tiny, 2, q, &s);
    CHECK(s > 0.0f);
    CHECK_EQ_INT(q[0], 1);
    CHECK_EQ_INT(q[1], -1);
}

static double q4_step(const uint16_t *scales, int64_t g) { return llmq_f16_to_f32(scales[g]); }

static void q4_round_trip(int group, int sym)
{
    enum { R = 21, C = 384 };
    static float w[R * C], out[C];
    static uint8_t q[R * C / 2], z[R * C / 32];
    static uint16_t s[R * C / 32];
    for (int r = 0; r < R; r++) fill_row(w + r * C, C, r);
    llmq_err err;
    CHECK_EQ_INT(llmq_q4_quantize(w, R, C, group, sym, NULL, q, s, sym ? NULL : z, "t", &err), LLMQ_OK);
    int64_t ng = C / group;
    for (int r = 0; r < R; r++) {
        llmq_q4_dequantize_row(q + r * C / 2, s + r * ng, sym ? NULL : z + r * ng, C, group, out);
        for (int j = 0; j < C; j++) {
            double step = q4_step(s, r * ng + j / group), x = w[r * C + j];
            double e = fabs(x - out[j]);
            if (r % 7 == 6) {               /* |w| ~ 1e28: the f16 scale saturates and values clip */
                CHECK(step == 65504.0);
                CHECK(fabs(out[j]) <= 15 * 65504.0);
                continue;
            }
            CHECK_MSG(e <= step / 2.0 * (1 + 1e-12), "g%d sym%d row %d col %d: w %g deq %g step %g", group, sym, r, j, x,
                      (double)out[j], step);
            if (!sym) CHECK(z[r * ng + j / group] <= 15);
            else CHECK((j & 1 ? q[(r * C + j) / 2] >> 4 : q[(r * C + j) / 2] & 15) != 0);
        }
        /* the kernels' oracle reads the same bytes the same way */
        llmq_wmat W = { LLMQ_W_Q4, R, C, q, s, sym ? NULL : z, group };
        float k[C];
        llmq_get_row(&W, r, k);
        CHECK(!memcmp(k, out, sizeof k));
    }
}

TEST(q4_round_trip_asym) { q4_round_trip(32, 0); q4_round_trip(64, 0); q4_round_trip(128, 0); }
TEST(q4_round_trip_sym) { q4_round_trip(32, 1); q4_round_trip(64, 1); q4_round_trip(128, 1); }

TEST(q4_layout_and_edges)
{
    /* symmetric, amax 3.5: s = 0.5 exactly, q = w / 0.5 + 8 = (j % 15) + 1 */
    float w[32], out[32];
    uint8_t q[16], z[1];
    uint16_t s[1];
    for (int j = 0; j < 32; j++) w[j] = (float)(j % 15 - 7) * 0.5f;
    llmq_q4_quantize_row(w, 32, 32, 1, NULL, q, s, NULL);
    CHECK(llmq_f16_to_f32(s[0]) == 0.5f);
    CHECK_EQ_INT(q[0], 0x21);              /* element 0 low nibble, element 1 high */
    CHECK_EQ_INT(q[7], (1 << 4) | 15);    /* element 14 (q 15) low, element 15 (q 1) high */
    llmq_q4_dequantize_row(q, s, NULL, 32, 32, out);
    CHECK(!memcmp(w, out, sizeof w));
    /* asymmetric over [-1, 2]: s = f16 >= 0.2, z = round(1 / s) = 5 */
    for (int j = 0; j < 32; j++) w[j] = -1.0f + 3.0f * (float)j / 31.0f;
    llmq_q4_quantize_row(w, 32, 32, 0, NULL, q, s, z);
    CHECK(llmq_f16_to_f32(s[0]) >= 0.2f && llmq_f16_to_f32(s[0]) < 0.2002f);
    CHECK_EQ_INT(z[0], 5);
    CHECK_EQ_INT(q[0] & 15, 0);
    CHECK_EQ_INT(q[15] >> 4, 15);
    /* all zero: scale 0, zero 0, codes 0, dequantized 0 */
    memset(w, 0, sizeof w);
    llmq_q4_quantize_row(w, 32, 32, 0, NULL, q, s, z);
    CHECK(s[0] == 0 && z[0] == 0 && q[3] == 0);
    llmq_q4_dequantize_row(q, s, z, 32, 32, out);
    CHECK(out[5] == 0.0f);
    llmq_q4_quantize_row(w, 32, 32, 1, NULL, q, s, NULL);
    CHECK(s[0] == 0 && q[3] == 0x88);
    /* constant positive group: range [0, c], z = 0, value c back within s / 2 */
    for (int j = 0; j < 32; j++) w[j] = 0.3f;
    llmq_q4_quantize_row(w, 32, 32, 0, NULL, q, s, z);
    llmq_q4_dequantize_row(q, s, z, 32, 32, out);
    CHECK_EQ_INT(z[0], 0);
    CHECK(fabs(out[7] - 0.3) <= llmq_f16_to_f32(s[0]) / 2);
    /* f16 scale underflow: a group of 1e-30 keeps the smallest subnormal scale */
    for (int j = 0; j < 32; j++) w[j] = j & 1 ? 1e-30f : -1e-30f;
    llmq_q4_quantize_row(w, 32, 32, 0, NULL, q, s, z);
    CHECK_EQ_INT(s[0], 1);                 /* 2^-24 */
    llmq_q4_dequantize_row(q, s, z, 32, 32, out);
    CHECK(fabs(out[1] - 1e-30) <= ldexp(1.0, -25));
    /* f16 scale overflow: clamped to 65504, codes stay in range, values clip */
    w[0] = 1e7f; w[1] = -1e7f;
    llmq_q4_quantize_row(w, 32, 32, 0, NULL, q, s, z);
    CHECK(llmq_f16_to_f32(s[0]) == 65504.0f);
    llmq_q4_dequantize_row(q, s, z, 32, 32, out);
    CHECK(out[0] > 0 && out[1] < 0 && fabs(out[0] - out[1]) <= 15 * 65504.0);
}

TEST(q4_clip)
{
    enum { C = 64 };
    float w[C], out[C], clip[2] = { 0.05f, INFINITY };
    uint8_t q[C / 2], z[2];
    uint16_t s[2];
    for (int j = 0; j < C; j++) w[j] = rndf() * 0.1f;
    w[3] = 5.0f;                           /* clipped away in group 0 */
    llmq_q4_quantize_row(w, C, 32, 0, clip, q, s, z);
    llmq_q4_dequantize_row(q, s, z, C, 32, out);
    for (int j = 0; j < C; j++) {
        double x = j < 32 ? fmin(fmax(w[j], -0.05), 0.05) : w[j];
        CHECK(fabs(x - out[j]) <= llmq_f16_to_f32(s[j / 32]) / 2);
    }
    float f[C];
    llmq_q4_fake_row(w, C, 32, 0, clip, f);
    CHECK(!memcmp(f, out, sizeof f));
    llmq_err err;
    uint16_t s2[2];
    uint8_t q2[C / 2], z2[2];
    float bad[2] = { -1.0f, 1.0f };
    CHECK_EQ_INT(llmq_q4_quantize(w, 1, C, 32, 0, bad, q2, s2, z2, "blk.3.mlp", &err), LLMQ_EUNSUPPORTED);
    CHECK(strstr(err.msg, "blk.3.mlp") != NULL);
    bad[0] = NAN;
    CHECK_EQ_INT(llmq_q4_quantize(w, 1, C, 32, 0, bad, q2, s2, z2, "x", &err), LLMQ_ENONFINITE);
    CHECK_EQ_INT(llmq_q4_quantize(w, 1, C, 32, 0, clip, q2, s2, z2, "x", &err), LLMQ_OK);
    CHECK(!memcmp(q2, q, sizeof q) && !memcmp(s2, s, sizeof s));
}

static double mx_step(uint8_t e) { return ldexp(1.0, (int)e - 127 - 6); }

static void mx_round_trip(llmq_mx_rule rule)
{
    enum { R = 21, C = 256 };
    static float w[R * C], out[C];
    static int8_t q[R * C];
    static uint8_t s[R * C / 32];
    for (int r = 0; r < R; r++) fill_row(w + r * C, C, r);
    w[5 * C + 7] = 1.999f;                  /* near 2^(k+1): OCP clips it */
    llmq_err err;
    CHECK_EQ_INT(llmq_mx8_quantize(w, R, C, rule, q, s, "t", &err), LLMQ_OK);
    int clipped = 0;
    for (int r = 0; r < R; r++) {
        llmq_mx8_dequantize_row(q + r * C, s + r * C / 32, C, out);
        for (int b = 0; b < C / 32; b++) {
            double amax = 0;
            for (int j = 0; j < 32; j++) amax = fmax(amax, fabs(w[r * C + b * 32 + j]));
            uint8_t e = s[r * C / 32 + b];
            CHECK(e != 255);
            if (amax == 0) { CHECK_EQ_INT(e, 0); continue; }
            int want = rule == LLMQ_MX_SCALE_OCP ? ilogb(amax) : (int)ceil(log2(amax / 127)) + 6;
            if (want < -127) want = -127;
            CHECK_MSG(e == want + 127, "rule %d amax %g: e %d, want %d", rule, amax, e, want + 127);
            for (int j = 0; j < 32; j++) {
                double x = w[r * C + b * 32 + j], step = mx_step(e), d = fabs(x - out[b * 32 + j]);
                CHECK(q[r * C + b * 32 + j] >= -127);
                if (fabs(x) / step <= 127.5) CHECK_MSG(d <= step / 2, "rule %d x %g step %g", rule, x, step);
                else { clipped++; CHECK(rule == LLMQ_MX_SCALE_OCP && d < step && abs(q[r * C + b * 32 + j]) == 127); }
            }
        }
    }
    if (rule == LLMQ_MX_SCALE_OCP) CHECK(clipped > 0);
    else CHECK_EQ_INT(clipped, 0);
}

TEST(mx8_round_trip_ocp) { mx_round_trip(LLMQ_MX_SCALE_OCP); }
TEST(mx8_round_trip_ceil) { mx_round_trip(LLMQ_MX_SCALE_CEIL); }

TEST(mx8_edges)
{
    float w[32] = { 0 }, out[32];
    int8_t q[32];
    uint8_t e;
    /* amax 1: OCP X = 2^0, codes w * 64; CEIL step 2^ceil(log2(1/127)) = 2^-6 too */
    w[0] = 1.0f; w[1] = -0.5f; w[2] = 1.0f / 128;
    llmq_mx8_quantize_row(w, 32, LLMQ_MX_SCALE_OCP, q, &e);
    CHECK_EQ_INT(e, 127);
    CHECK_EQ_INT(q[0], 64); CHECK_EQ_INT(q[1], -32); CHECK_EQ_INT(q[2], 0);   /* 0.5 ties to even */
    llmq_mx8_quantize_row(w, 32, LLMQ_MX_SCALE_CEIL, q, &e);
    CHECK_EQ_INT(e, 127);
    /* amax 127/64 * 2^3 = 15.875 exactly: OCP X = 2^3 and code 127; CEIL the same */
    w[0] = 15.875f;
    llmq_mx8_quantize_row(w, 32, LLMQ_MX_SCALE_OCP, q, &e);
    CHECK_EQ_INT(e, 130); CHECK_EQ_INT(q[0], 127);
    llmq_mx8_quantize_row(w, 32, LLMQ_MX_SCALE_CEIL, q, &e);
    CHECK_EQ_INT(e, 130); CHECK_EQ_INT(q[0], 127);
    /* 15.99: OCP clips to 127, CEIL moves to X = 2^4 and code 64 */
    w[0] = 15.99f;
    llmq_mx8_quantize_row(w, 32, LLMQ_MX_SCALE_OCP, q, &e);
    CHECK_EQ_INT(e, 130); CHECK_EQ_INT(q[0], 127);
    llmq_mx8_quantize_row(w, 32, LLMQ_MX_SCALE_CEIL, q, &e);
    CHECK_EQ_INT(e, 131); CHECK_EQ_INT(q[0], 64);
    /* all zero */
    memset(w, 0, sizeof w);
    llmq_mx8_quantize_row(w, 32, LLMQ_MX_SCALE_OCP, q, &e);
    CHECK(e == 0 && q[0] == 0 && q[31] == 0);
    /* subnormal block: X clamps at 2^-127 (e = 0), still within half a step */
    w[0] = 1e-42f; w[1] = -3e-43f;
    for (int rule = 0; rule < 2; rule++) {
        llmq_mx8_quantize_row(w, 32, (llmq_mx_rule)rule, q, &e);
        CHECK_EQ_INT(e, 0);
        llmq_mx8_dequantize_row(q, &e, 32, out);
        CHECK(fabs(out[0] - 1e-42) <= mx_step(0) / 2 && fabs(out[1] + 3e-43) <= mx_step(0) / 2);
    }
    /* FLT_MAX: OCP e = 254; CEIL wants 255 (NaN), clamps to 254 and clips */
    w[0] = FLT_MAX;
    for (int rule = 0; rule < 2; rule++) {
        llmq_mx8_quantize_row(w, 32, (llmq_mx_rule)rule, q, &e);
        CHECK_EQ_INT(e, 254);
        CHECK_EQ_INT(q[0], 127);
        llmq_mx8_dequantize_row(q, &e, 32, out);
        CHECK(isfinite(out[0]));
    }
    /* the kernels' oracle reads the same bytes the same way */
    float r[32];
    llmq_wmat W = { LLMQ_W_MX8, 1, 32, q, &e, NULL, 32 };
    llmq_get_row(&W, 0, r);
    CHECK(!memcmp(r, out, sizeof r));
}

/* NaN / Inf anywhere: ENONFINITE naming tensor, row and column; outputs untouched. */
TEST(nonfinite_rejected)
{
    enum { R = 3, C = 64 };
    float w[R * C];
    for (int i = 0; i < R * C; i++) w[i] = rndf();
    int8_t q8[R * C];
    float s8[R];
    uint8_t q4[R * C / 2], z4[R * 2], s5[R * 2];
    uint16_t s4[R * 2];
    llmq_err err;
    float bad[3] = { NAN, INFINITY, -INFINITY };
    const char *word[3] = { "NaN", "+Inf", "-Inf" };
    for (int k = 0; k < 3; k++) {
        w[2 * C + 33] = bad[k];
        memset(q8, 0x55, sizeof q8);
        CHECK_EQ_INT(llmq_q8_quantize(w, R, C, q8, s8, "model.layers.0.q_proj.weight", &err), LLMQ_ENONFINITE);
        CHECK(strstr(err.msg, "'model.layers.0.q_proj.weight'") && strstr(err.msg, "row 2") &&
              strstr(err.msg, "col 33") && strstr(err.msg, word[k]));
        CHECK(q8[0] == 0x55);
        CHECK_EQ_INT(llmq_q4_quantize(w, R, C, 32, 0, NULL, q4, s4, z4, "w4", &err), LLMQ_ENONFINITE);
        CHECK(strstr(err.msg, "'w4'") != NULL);
        CHECK_EQ_INT(llmq_mx8_quantize(w, R, C, LLMQ_MX_SCALE_OCP, q8, s5, "w8", &err), LLMQ_ENONFINITE);
        CHECK(strstr(err.msg, "'w8'") && strstr(err.msg, "col 33"));
    }
}

TEST(shape_errors)
{
    float w[100] = { 0 };
    uint8_t q4[50], z4[4], s5[4];
    uint16_t s4[4];
    int8_t q8[100];
    llmq_err err;
    CHECK_EQ_INT(llmq_q4_quantize(w, 1, 100, 32, 0, NULL, q4, s4, z4, "lm_head.weight", &err), LLMQ_EUNSUPPORTED);
    CHECK(strstr(err.msg, "'lm_head.weight'") && strstr(err.msg, "multiple of 32") && strstr(err.msg, "100"));
    CHECK_EQ_INT(llmq_q4_quantize(w, 1, 96, 48, 0, NULL, q4, s4, z4, "w", &err), LLMQ_EUNSUPPORTED);
    CHECK(strstr(err.msg, "48") != NULL);
    CHECK_EQ_INT(llmq_q4_quantize(w, 1, 64, 32, 0, NULL, q4, s4, NULL, "w", &err), LLMQ_EINTERNAL);
    CHECK_EQ_INT(llmq_mx8_quantize(w, 1, 100, LLMQ_MX_SCALE_OCP, q8, s5, "e", &err), LLMQ_EUNSUPPORTED);
    CHECK(strstr(err.msg, "'e'") && strstr(err.msg, "multiple of 32"));
    CHECK_EQ_INT(llmq_mx8_quantize(w, 1, 64, (llmq_mx_rule)7, q8, s5, "e", &err), LLMQ_EUNSUPPORTED);
    CHECK_EQ_INT(llmq_q8_quantize(w, 1, 0, q8, (float *)s4, "e", &err), LLMQ_EUNSUPPORTED);
    CHECK_EQ_INT(llmq_q8_quantize(w, 0, 100, q8, (float *)s4, "e", &err), LLMQ_OK);
}

/* a quantized matrix through the kernels: matvec close to the f32 product */
TEST(quantized_matvec_close)
{
    enum { R = 64, C = 256 };
    static float w[R * C], x[C], y[R], yq[R];
    static int8_t q8[R * C];
    static uint8_t q4[R * C / 2], z4[R * C / 32], e8[R * C / 32];
    static uint16_t s4[R * C / 32];
    float s8[R];
    for (int i = 0; i < R * C; i++) w[i] = rndf() * 0.1f;
    for (int j = 0; j < C; j++) x[j] = rndf();
    llmq_wmat F = { LLMQ_W_F32, R, C, w, NULL, NULL, 0 };
    llmq_matvec(NULL, &F, x, y);
    llmq_err err;
    CHECK_EQ_INT(llmq_q8_quantize(w, R, C, q8, s8, "w", &err), 0);
    llmq_wmat W8 = { LLMQ_W_Q8, R, C, q8, s8, NULL, 0 };
    llmq_matvec(NULL, &W8, x, yq);
    for (int r = 0; r < R; r++) CHECK(fabs(yq[r] - y[r]) < 0.01);
    CHECK_EQ_INT(llmq_q4_quantize(w, R, C, 32, 0, NULL, q4, s4, z4, "w", &err), 0);
    llmq_wmat W4 = { LLMQ_W_Q4, R, C, q4, s4, z4, 32 };
    llmq_matvec(NULL, &W4, x, yq);
    for (int r = 0; r < R; r++) CHECK(fabs(yq[r] - y[r]) < 0.1);
    CHECK_EQ_INT(llmq_mx8_quantize(w, R, C, LLMQ_MX_SCALE_OCP, q8, e8, "w", &err), 0);
    llmq_wmat WM = { LLMQ_W_MX8, R, C, q8, e8, NULL, 32 };
    llmq_matvec(NULL, &WM, x, yq);
    for (int r = 0; r < R; r++) CHECK(fabs(yq[r] - y[r]) < 0.01);
}

TEST_MAIN()
