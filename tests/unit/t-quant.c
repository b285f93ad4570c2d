/*
 * t-quant.c - the reference quantizers (lib/quant): round-trip error
 * bounds, edge groups (all zero, constant, one huge value, subnormals, f16
 * scale overflow), exact layouts, and input errors that name the tensor.
 * The MX / NV block formats (microscale.c): the E2M1 and E4M3 encoders
 * exhaustively, block scales and element errors against values this file
 * computes itself (not blocks.h's tables), layouts by hand.
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
        llmq_wmat W = { LLMQ_W_Q4, R, C, q, s, sym ? NULL : z, group, 0, 0 };
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

/* int3: the quantizer's nibbles repacked to three bits per code
 * (LLMQ_W_Q3) are the same numbers: symmetric codes move from around 8 to
 * around 4, values stay; in place equals out of place; back again gives the
 * nibbles; codes no quantizer writes are refused naming the tensor. */
static void q3_pack_round_trip(int group, int sym)
{
    enum { R = 21, C = 384 };
    static float w[R * C], a[C], b[C];
    static uint8_t q[R * C / 2], q3[R * C * 3 / 8], back[R * C / 2], z[R * C / 32];
    static uint16_t s[R * C / 32];
    for (int r = 0; r < R; r++) fill_row(w + r * C, C, r);
    llmq_err err;
    CHECK_EQ_INT(llmq_q3_quantize(w, R, C, group, sym, NULL, q, s, sym ? NULL : z, "t", &err), LLMQ_OK);
    CHECK_EQ_INT(llmq_q3_pack(q, R, C, sym, q3, "t", &err), LLMQ_OK);
    llmq_wmat W4 = { LLMQ_W_Q4, R, C, q, s, sym ? NULL : z, group, 0, 0 };
    llmq_wmat W3 = { LLMQ_W_Q3, R, C, q3, s, sym ? NULL : z, group, 0, 0 };
    for (int r = 0; r < R; r++) {
        llmq_get_row(&W4, r, a);
        llmq_get_row(&W3, r, b);
        CHECK_MSG(!memcmp(a, b, sizeof a), "g%d sym %d row %d", group, sym, r);
        for (int j = 0; j < C; j++) {
            int c = llmq_q3_get_code(q3 + r * C * 3 / 8, j);
            if (sym) CHECK(c >= 1 && c <= 7);
        }
    }
    llmq_q3_unpack(q3, R, C, sym, back);
    CHECK(!memcmp(back, q, sizeof q));
    CHECK_EQ_INT(llmq_q3_pack(back, R, C, sym, back, "t", &err), LLMQ_OK);   /* in place */
    CHECK(!memcmp(back, q3, sizeof q3));
}

TEST(q3_pack_round_trip_asym) { q3_pack_round_trip(32, 0); q3_pack_round_trip(64, 0); q3_pack_round_trip(128, 0); }
TEST(q3_pack_round_trip_sym) { q3_pack_round_trip(32, 1); q3_pack_round_trip(64, 1); q3_pack_round_trip(128, 1); }

TEST(q3_pack_refuses)
{
    uint8_t nib[2 * 16], out[2 * 12];
    llmq_err err;
    memset(nib, 0x77, sizeof nib);                  /* code 7 everywhere: fine both ways */
    CHECK_EQ_INT(llmq_q3_pack(nib, 2, 32, 0, out, "a.weight", &err), LLMQ_OK);
    CHECK_EQ_INT(llmq_q3_pack(nib, 2, 32, 1, out, "a.weight", &err), LLMQ_OK);
    nib[16 + 5] = 0x87;                             /* row 1, column 11: code 8 */
    CHECK_EQ_INT(llmq_q3_pack(nib, 2, 32, 0, out, "a.weight", &err), LLMQ_EINTERNAL);
    CHECK(strstr(err.msg, "'a.weight'") && strstr(err.msg, "row 1 column 11"));
    CHECK_EQ_INT(llmq_q3_pack(nib, 2, 32, 1, out, "a.weight", &err), LLMQ_OK);   /* 8 is symmetric zero */
    nib[3] = 0x37;                                  /* row 0, column 7: 3 is below symmetric 4..11 */
    CHECK_EQ_INT(llmq_q3_pack(nib, 2, 32, 1, out, "a.weight", &err), LLMQ_EINTERNAL);
    CHECK(strstr(err.msg, "column 7") != NULL);
    CHECK_EQ_INT(llmq_q3_pack(nib, 2, 48, 0, out, "a.weight", &err), LLMQ_EINTERNAL);   /* not whole chunks */
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
    llmq_wmat W = { LLMQ_W_MX8, 1, 32, q, &e, NULL, 32, 0, 0 };
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
    llmq_wmat F = { LLMQ_W_F32, R, C, w, NULL, NULL, 0, 0, 0 };
    llmq_matvec(NULL, &F, x, y);
    llmq_err err;
    CHECK_EQ_INT(llmq_q8_quantize(w, R, C, q8, s8, "w", &err), 0);
    llmq_wmat W8 = { LLMQ_W_Q8, R, C, q8, s8, NULL, 0, 0, 0 };
    llmq_matvec(NULL, &W8, x, yq);
    for (int r = 0; r < R; r++) CHECK(fabs(yq[r] - y[r]) < 0.01);
    CHECK_EQ_INT(llmq_q4_quantize(w, R, C, 32, 0, NULL, q4, s4, z4, "w", &err), 0);
    llmq_wmat W4 = { LLMQ_W_Q4, R, C, q4, s4, z4, 32, 0, 0 };
    llmq_matvec(NULL, &W4, x, yq);
    for (int r = 0; r < R; r++) CHECK(fabs(yq[r] - y[r]) < 0.1);
    CHECK_EQ_INT(llmq_mx8_quantize(w, R, C, LLMQ_MX_SCALE_OCP, q8, e8, "w", &err), 0);
    llmq_wmat WM = { LLMQ_W_MX8, R, C, q8, e8, NULL, 32, 0, 0 };
    llmq_matvec(NULL, &WM, x, yq);
    for (int r = 0; r < R; r++) CHECK(fabs(yq[r] - y[r]) < 0.01);
}

/* ---- MX / NV block formats (microscale.c) ----
 *
 * Everything below decodes with its own formulas (OCP MX v1.0 section 5.3,
 * OFP8 E4M3), so a wrong table in blocks.h fails here too. */

static const llmq_wtype BLOCK_TYPES[] = { LLMQ_W_MXFP4, LLMQ_W_MXINT4, LLMQ_W_NVFP4, LLMQ_W_NVINT4, LLMQ_W_MXFP8 };
#define N_BLOCK_TYPES ((int)(sizeof BLOCK_TYPES / sizeof BLOCK_TYPES[0]))

/* E4M3 byte -> value: normals 2^(e - 7) (1 + m / 8), subnormals m 2^-9;
 * NaN for S.1111.111. */
static double e4m3_val(int b)
{
    int e = (b >> 3) & 15, m = b & 7;
    if (e == 15 && m == 7) return NAN;
    double v = e ? ldexp(1.0 + m / 8.0, e - 7) : ldexp(m, -9);
    return b & 0x80 ? -v : v;
}

static const double E2M1_MAG[8] = { 0, 0.5, 1, 1.5, 2, 3, 4, 6 };

/* element value P(code) of type t */
static double elem_val(llmq_wtype t, int c)
{
    switch (t) {
    case LLMQ_W_MXFP8: return e4m3_val(c);
    case LLMQ_W_MXINT4: return (c < 8 ? c : c - 16) / 4.0;
    case LLMQ_W_NVINT4: return c < 8 ? c : c - 16;
    default: return c & 8 ? -E2M1_MAG[c & 7] : E2M1_MAG[c & 7];
    }
}

static double elem_maxv(llmq_wtype t)
{
    return t == LLMQ_W_MXFP8 ? 448.0 : t == LLMQ_W_MXINT4 ? 1.75 : t == LLMQ_W_NVINT4 ? 7.0 : 6.0;
}

/* the non-negative values an element can take, ascending */
static int elem_grid(llmq_wtype t, double *g)
{
    int n = 0;
    if (t == LLMQ_W_MXFP8) for (int b = 0; b <= 0x7e; b++) g[n++] = e4m3_val(b);
    else for (int c = 0; c < 8; c++) g[n++] = t == LLMQ_W_MXFP4 || t == LLMQ_W_NVFP4 ? E2M1_MAG[c] : elem_val(t, c);
    return n;
}

static int blk_size(llmq_wtype t) { return t == LLMQ_W_NVFP4 || t == LLMQ_W_NVINT4 ? 16 : 32; }
static int is_nv(llmq_wtype t) { return t == LLMQ_W_NVFP4 || t == LLMQ_W_NVINT4; }
static int is_b4(llmq_wtype t) { return t != LLMQ_W_MXFP8; }

/* the code of element j of a row */
static int code_at(llmq_wtype t, const uint8_t *row, int64_t j)
{
    return is_b4(t) ? (j & 1 ? row[j / 2] >> 4 : row[j / 2] & 15) : row[j];
}

/* block factor: 2^(e - 127) (MX), or the float product E4M3(s) * tscale (NV) */
static double blk_factor(llmq_wtype t, int sc, float tscale)
{
    return is_nv(t) ? (double)((float)e4m3_val(sc) * tscale) : ldexp(1.0, sc - 127);
}

TEST(e4m3_values)
{
    for (int b = 0; b < 256; b++) {
        float v = llmq_e4m3_to_f32((uint8_t)b);
        if ((b & 0x7f) == 0x7f) { CHECK(isnan(v) && llmq_e4m3_is_nan((uint8_t)b)); continue; }
        CHECK(!llmq_e4m3_is_nan((uint8_t)b));
        CHECK_MSG((double)v == e4m3_val(b) && !signbit(v) == !(b & 0x80), "byte 0x%02x: %g, want %g", b, (double)v, e4m3_val(b));
    }
    CHECK(llmq_e4m3_to_f32(0x7e) == 448.0f && llmq_e4m3_to_f32(0x01) == 0x1p-9f && llmq_e4m3_to_f32(0x08) == 0x1p-6f);
}

TEST(e4m3_encode_exhaustive)
{
    /* every value back to its byte (-0 to 0) */
    for (int b = 0; b < 256; b++) {
        if ((b & 0x7f) == 0x7f) continue;
        int want = b == 0x80 ? 0 : b;
        CHECK_MSG(llmq_e4m3_encode((float)e4m3_val(b)) == want, "0x%02x -> 0x%02x", b, llmq_e4m3_encode((float)e4m3_val(b)));
    }
    /* midpoints go to the even code (the low bit is the mantissa's), and a
     * hair either side to the nearer neighbour; both signs */
    for (int b = 0; b < 0x7e; b++) {
        float mid = (float)((e4m3_val(b) + e4m3_val(b + 1)) / 2);   /* exact: 5 significant bits */
        CHECK((double)mid == (e4m3_val(b) + e4m3_val(b + 1)) / 2);
        int even = b & 1 ? b + 1 : b;
        for (int neg = 0; neg < 2; neg++) {
            float m = neg ? -mid : mid;
            int sg = neg ? 0x80 : 0;
            int we = even ? even | sg : 0, wlo = b ? b | sg : 0;
            CHECK_MSG(llmq_e4m3_encode(m) == we, "midpoint %g of 0x%02x: 0x%02x, want 0x%02x", (double)m, b,
                      llmq_e4m3_encode(m), we);
            CHECK_MSG(llmq_e4m3_encode(nextafterf(m, 0.0f)) == wlo, "below midpoint %g", (double)m);
            CHECK_MSG(llmq_e4m3_encode(nextafterf(m, neg ? -INFINITY : INFINITY)) == ((b + 1) | sg), "above midpoint %g",
                      (double)m);
        }
    }
    /* random values: the nearest of all 127 magnitudes */
    for (int i = 0; i < 20000; i++) {
        float v = (float)ldexp(1.0 + (double)(rnd() % 1000000) / 1e6, (int)(rnd() % 24) - 14);
        if (rnd() & 1) v = -v;
        int c = llmq_e4m3_encode(v);
        double got = e4m3_val(c), best = INFINITY;
        for (int b = 0; b <= 0x7e; b++) best = fmin(best, fabs(fabs((double)v) - e4m3_val(b)));
        CHECK_MSG(c != 0x7f && c != 0xff && fabs(fabs((double)v) - fabs(got)) == best && (got == 0 || (got < 0) == (v < 0)),
                  "%g -> 0x%02x", (double)v, c);
    }
    /* saturation, NaN, the smallest values */
    CHECK_EQ_INT(llmq_e4m3_encode(1e6f), 0x7e);
    CHECK_EQ_INT(llmq_e4m3_encode(-1e6f), 0xfe);
    CHECK_EQ_INT(llmq_e4m3_encode(464.0f), 0x7e);
    CHECK_EQ_INT(llmq_e4m3_encode(FLT_MAX), 0x7e);
    CHECK_EQ_INT(llmq_e4m3_encode(INFINITY), 0x7e);
    CHECK_EQ_INT(llmq_e4m3_encode(-INFINITY), 0xfe);
    CHECK_EQ_INT(llmq_e4m3_encode(NAN), 0);
    CHECK_EQ_INT(llmq_e4m3_encode(-0.0f), 0);
    CHECK_EQ_INT(llmq_e4m3_encode(1e-45f), 0);
    CHECK_EQ_INT(llmq_e4m3_encode(0x1p-10f), 0);             /* tie with 0 */
    CHECK_EQ_INT(llmq_e4m3_encode(0x1.000002p-10f), 1);
    CHECK_EQ_INT(llmq_e4m3_encode(-0x1p-9f), 0x81);
}

TEST(e2m1_encode_exhaustive)
{
    for (int c = 0; c < 16; c++) {
        float v = (float)elem_val(LLMQ_W_MXFP4, c);
        CHECK_MSG(llmq_e2m1_encode(v) == (c == 8 ? 0 : c), "%g -> %d", (double)v, llmq_e2m1_encode(v));
        CHECK((double)llmq_e2m1_values[c] == elem_val(LLMQ_W_MXFP4, c));   /* blocks.h's table */
    }
    /* midpoints: 0.25 -> 0, 0.75 -> 1, 1.25 -> 1, 1.75 -> 2, 2.5 -> 2, 3.5 -> 4, 5 -> 4 (even mantissa) */
    static const float mid[7] = { 0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f };
    static const int want[7] = { 0, 2, 2, 4, 4, 6, 6 };
    for (int k = 0; k < 7; k++) {
        CHECK_MSG(llmq_e2m1_encode(mid[k]) == want[k], "%g -> %d", (double)mid[k], llmq_e2m1_encode(mid[k]));
        CHECK_MSG(llmq_e2m1_encode(-mid[k]) == (want[k] ? want[k] | 8 : 0), "-%g -> %d", (double)mid[k], llmq_e2m1_encode(-mid[k]));
        CHECK_MSG(llmq_e2m1_encode(nextafterf(mid[k], 0.0f)) == k, "below %g", (double)mid[k]);
        CHECK_MSG(llmq_e2m1_encode(nextafterf(mid[k], INFINITY)) == k + 1, "above %g", (double)mid[k]);
        CHECK_MSG(llmq_e2m1_encode(-nextafterf(mid[k], INFINITY)) == ((k + 1) | 8), "above -%g", (double)mid[k]);
    }
    CHECK_EQ_INT(llmq_e2m1_encode(6.99f), 7);
    CHECK_EQ_INT(llmq_e2m1_encode(100.0f), 7);
    CHECK_EQ_INT(llmq_e2m1_encode(-100.0f), 15);
    CHECK_EQ_INT(llmq_e2m1_encode(INFINITY), 7);
    CHECK_EQ_INT(llmq_e2m1_encode(-INFINITY), 15);
    CHECK_EQ_INT(llmq_e2m1_encode(NAN), 0);
    CHECK_EQ_INT(llmq_e2m1_encode(-0.0f), 0);
    CHECK_EQ_INT(llmq_e2m1_encode(-0.1f), 0);
    for (int c = 0; c < 16; c++) {          /* the other 4-bit tables */
        CHECK((double)llmq_mxint4_values[c] == elem_val(LLMQ_W_MXINT4, c));
        CHECK((double)llmq_int4_values[c] == elem_val(LLMQ_W_NVINT4, c));
    }
}

/* Rows of a block test matrix, times a scale: gaussian-ish, an outlier,
 * zero, constant, positive, blocks of assorted magnitudes, every other block
 * zero, and block maxima just under a power of two (OCP MX clips those). */
enum { BLK_KINDS = 8 };
static void fill_block_row(float *w, int64_t cols, int kind, double scale)
{
    for (int64_t j = 0; j < cols; j++) {
        double v = (rndf() + rndf() + rndf()) * 0.05;
        switch (kind) {
        case 1: if (j % 97 == 5) v *= 100.0; break;
        case 2: v = 0.0; break;
        case 3: v = 0.3; break;
        case 4: v = fabs(v) + 1.0; break;
        case 5: v *= ldexp(1.0, (int)(j / 32 % 12) - 6); break;
        case 6: if (j / 32 % 2) v = 0.0; break;
        case 7: if (j % 16 == 3) v = (j & 32 ? -1.999 : 1.999) * ldexp(1.0, (int)(j / 16 % 5) - 2);
                else v *= 0.5;
                break;
        default: break;
        }
        w[j] = (float)(v * scale);
    }
}

/* llmq_block_quantize of one matrix (rows of every kind at one scale),
 * checked block by block and element by element; returns the elements
 * that clipped. */
static int block_round_trip(llmq_wtype t, llmq_mx_rule rule, double scale)
{
    enum { R = BLK_KINDS + 1, C = 512 };
    static float w[R * C], out[C], ref[C];
    static uint8_t q[R * C], s[R * C / 16];
    double g[128];
    const int B = blk_size(t), ng = elem_grid(t, g), nb = C / B;
    const int64_t rb = is_b4(t) ? C / 2 : C;
    const double gmax = elem_maxv(t);
    for (int r = 0; r < R; r++) fill_block_row(w + r * C, C, r % BLK_KINDS, scale);
    float ts = -1.0f;
    llmq_err err;
    CHECK_EQ_INT(llmq_block_quantize(t, w, R, C, rule, q, s, &ts, "t", &err), LLMQ_OK);
    double amax = 0;
    for (int i = 0; i < R * C; i++) amax = fmax(amax, fabs((double)w[i]));
    if (!is_nv(t)) CHECK(ts == 1.0f);
    else if (amax == 0) CHECK(ts == 1.0f);
    else CHECK_MSG(fabs(ts - amax / (448 * gmax)) <= 1e-6 * ts + 0x1p-149 && ts > 0.0f,   /* subnormal: 2^-149 steps */ "%s tscale %g, amax %g",
                   llmq_block_name(t), (double)ts, amax);
    int clipped = 0;
    llmq_wmat W = { t, R, C, q, s, NULL, B, ts, 0 };
    llmq_isa saved = llmq_cpu_set_isa(LLMQ_ISA_SCALAR);
    for (int r = 0; r < R; r++) {
        const uint8_t *qr = q + r * rb, *sr = s + r * nb;
        llmq_block_dequantize_row(t, qr, sr, ts, C, out);
        llmq_get_row(&W, r, ref);               /* the kernels' oracle reads the same bytes the same way */
        CHECK_MSG(!memcmp(ref, out, sizeof out), "%s row %d: dequantize_row differs from the oracle", llmq_block_name(t), r);
        for (int b = 0; b < nb; b++) {
            double bmax = 0;
            for (int j = 0; j < B; j++) bmax = fmax(bmax, fabs((double)w[r * C + b * B + j]));
            int sc = sr[b];
            if (bmax == 0) {                    /* a block of zeros: scale 0, codes 0 */
                CHECK_EQ_INT(sc, 0);
                for (int j = 0; j < B; j++) CHECK(code_at(t, qr, b * B + j) == 0);
                continue;
            }
            if (!is_nv(t)) {
                int want;
                if (rule == LLMQ_MX_SCALE_OCP) {
                    want = ilogb(bmax) - (t == LLMQ_W_MXFP8 ? 8 : t == LLMQ_W_MXINT4 ? 0 : 2);
                } else {
                    want = (int)ceil(log2(bmax / gmax));
                    while (ldexp(gmax, want) < bmax) want++;
                    while (ldexp(gmax, want - 1) >= bmax) want--;
                }
                want = want < -127 ? -127 : want > 127 ? 127 : want;
                CHECK_MSG(sc == want + 127, "%s rule %d block max %g: E8M0 %d, want %d", llmq_block_name(t), rule, bmax,
                          sc, want + 127);
            } else {
                double x = bmax / (gmax * ts), best = INFINITY;
                CHECK_MSG(sc <= 0x7e, "%s scale byte 0x%02x", llmq_block_name(t), sc);
                if (rule == LLMQ_MX_SCALE_OCP) {
                    for (int c = 0; c <= 0x7e; c++) best = fmin(best, fabs(e4m3_val(c) - x));
                    CHECK_MSG(fabs(e4m3_val(sc) - x) == best, "%s block max %g: E4M3 scale %g is not the nearest to %g",
                              llmq_block_name(t), bmax, e4m3_val(sc), x);
                } else {
                    CHECK_MSG((sc == 0x7e || e4m3_val(sc) >= x) && (sc == 0 || e4m3_val(sc - 1) < x),
                              "%s block max %g: E4M3 scale %g is not the smallest >= %g", llmq_block_name(t), bmax,
                              e4m3_val(sc), x);
                }
            }
            double d = blk_factor(t, sc, ts);
            for (int j = b * B; j < (b + 1) * B; j++) {
                double v = w[r * C + j], deq = out[j];
                int c = code_at(t, qr, j);
                if (t == LLMQ_W_MXFP8) CHECK(c != 0x7f && c != 0xff);
                if (t == LLMQ_W_MXINT4 || t == LLMQ_W_NVINT4) CHECK(c != 8);    /* -8 is never written */
                CHECK_MSG(deq == (double)(float)(elem_val(t, c) * d), "%s row %d col %d: %g is not code %d times %g",
                          llmq_block_name(t), r, j, deq, c, d);
                if (v == 0) { CHECK(deq == 0); continue; }
                double x = d > 0 ? fabs(v) / d : INFINITY;
                if (x <= gmax) {
                    int k = 0;
                    while (k + 1 < ng && g[k + 1] <= x) k++;
                    double half = k + 1 < ng ? (g[k + 1] - g[k]) / 2 : 0;
                    double tol = half * d * (1 + 1e-12) + fabs(deq) * 0x1p-24 + 0x1p-150;
                    CHECK_MSG(fabs(deq - v) <= tol && (deq == 0 || (deq < 0) == (v < 0)),
                              "%s rule %d row %d col %d: w %.9g deq %.9g, block factor %g, half step %g",
                              llmq_block_name(t), rule, r, j, v, deq, d, half);
                } else {
                    /* beyond the largest element: saturates to it */
                    /* (ceil: only by the float roundings of tscale and of the
                     * block factor, which are coarse where they are subnormal) */
                    double slack = 0x1p-20 + (is_nv(t) ? 0x1p-149 / ts + 0x1p-149 / d : 0);
                    if (x > gmax * (1 + slack)) clipped++;
                    CHECK_MSG(deq == (double)(float)(copysign(gmax, v) * d), "%s row %d col %d: w %.9g clips to %.9g, not %g",
                              llmq_block_name(t), r, j, v, deq, copysign(gmax, v) * d);
                }
            }
        }
    }
    llmq_cpu_set_isa(saved);
    return clipped;
}

static const double BLOCK_SCALES[] = { 1.0, 1e-3, 1e-30, 1e-39, 1e25, 2e36 };

TEST(block_round_trip_ocp)
{
    for (int k = 0; k < N_BLOCK_TYPES; k++) {
        int clipped = 0;
        for (size_t i = 0; i < sizeof BLOCK_SCALES / sizeof BLOCK_SCALES[0]; i++)
            clipped += block_round_trip(BLOCK_TYPES[k], LLMQ_MX_SCALE_OCP, BLOCK_SCALES[i]);
        /* block maxima of 1.999 * 2^k clip under the OCP rule */
        if (!is_nv(BLOCK_TYPES[k])) CHECK_MSG(clipped > 0, "%s: nothing clipped", llmq_block_name(BLOCK_TYPES[k]));
    }
}

TEST(block_round_trip_ceil)
{
    for (int k = 0; k < N_BLOCK_TYPES; k++) {
        int clipped = 0;
        for (size_t i = 0; i < sizeof BLOCK_SCALES / sizeof BLOCK_SCALES[0]; i++)
            clipped += block_round_trip(BLOCK_TYPES[k], LLMQ_MX_SCALE_CEIL, BLOCK_SCALES[i]);
        CHECK_MSG(clipped == 0, "%s: %d elements clipped under the ceil rule", llmq_block_name(BLOCK_TYPES[k]), clipped);
    }
}

/* Bytes by hand: low nibble = even column, the scale bytes, the value table. */
TEST(block_layouts)
{
    float w[64] = { 0 }, out[64], ts;
    uint8_t q[64], s[4];
    llmq_err err;
    /* MXFP4, amax 6: X = 2^(2 - 2) = 1; 6, -0.5, 1.5, 3 are codes 7, 9, 3, 5 */
    w[0] = 6.0f; w[1] = -0.5f; w[2] = 1.5f; w[3] = 3.0f; w[33] = -0.75f;   /* second block: X = 2^(-1 - 2), -6 */
    CHECK_EQ_INT(llmq_block_quantize(LLMQ_W_MXFP4, w, 1, 64, LLMQ_MX_SCALE_OCP, q, s, &ts, "w", &err), LLMQ_OK);
    CHECK_EQ_INT(q[0], 0x97);
    CHECK_EQ_INT(q[1], 0x53);
    CHECK_EQ_INT(q[2], 0);
    CHECK_EQ_INT(q[16], 0xf0);
    CHECK_EQ_INT(s[0], 127);
    CHECK_EQ_INT(s[1], 124);
    CHECK(ts == 1.0f);
    llmq_block_dequantize_row(LLMQ_W_MXFP4, q, s, ts, 64, out);
    CHECK(!memcmp(out, w, sizeof w));
    /* ceil: the same (6 is the largest element) */
    CHECK_EQ_INT(llmq_block_quantize(LLMQ_W_MXFP4, w, 1, 64, LLMQ_MX_SCALE_CEIL, q, s, &ts, "w", &err), LLMQ_OK);
    CHECK(s[0] == 127 && s[1] == 124 && q[0] == 0x97);
    /* 7: OCP keeps X = 1 and clips to 6; ceil takes X = 2 and rounds 3.5 to 4 */
    w[0] = 7.0f;
    CHECK_EQ_INT(llmq_block_quantize(LLMQ_W_MXFP4, w, 1, 64, LLMQ_MX_SCALE_OCP, q, s, &ts, "w", &err), LLMQ_OK);
    CHECK(s[0] == 127 && (q[0] & 15) == 7);
    CHECK_EQ_INT(llmq_block_quantize(LLMQ_W_MXFP4, w, 1, 64, LLMQ_MX_SCALE_CEIL, q, s, &ts, "w", &err), LLMQ_OK);
    CHECK(s[0] == 128 && (q[0] & 15) == 6 && q[1] == 0x32);   /* 1.5 / 2 = 0.75 -> 1 (even), 3 / 2 -> 1.5 */
    /* MXINT4, amax 1.75: X = 1; 1.75, -0.25, 0.5, -1.75 are 7, -1, 2, -7 */
    memset(w, 0, sizeof w);
    w[0] = 1.75f; w[1] = -0.25f; w[2] = 0.5f; w[3] = -1.75f;
    CHECK_EQ_INT(llmq_block_quantize(LLMQ_W_MXINT4, w, 1, 64, LLMQ_MX_SCALE_OCP, q, s, &ts, "w", &err), LLMQ_OK);
    CHECK_EQ_INT(q[0], 0xf7);
    CHECK_EQ_INT(q[1], 0x92);
    CHECK(s[0] == 127 && s[1] == 0);
    llmq_block_dequantize_row(LLMQ_W_MXINT4, q, s, ts, 64, out);
    CHECK(!memcmp(out, w, sizeof w));
    /* NVFP4, blocks of 16: amax 6 in block 0, 3 in block 1, 1.5 in block 3;
     * tscale 6 / (448 * 6) = 1/448; scales 448, 224, 0, 112 */
    memset(w, 0, sizeof w);
    w[0] = 6.0f; w[1] = -1.0f; w[16] = 3.0f; w[48] = -1.5f;
    CHECK_EQ_INT(llmq_block_quantize(LLMQ_W_NVFP4, w, 1, 64, LLMQ_MX_SCALE_OCP, q, s, &ts, "w", &err), LLMQ_OK);
    CHECK(ts == (float)(1.0 / 448));
    CHECK_EQ_INT(s[0], 0x7e);
    CHECK_EQ_INT(s[1], 0x76);
    CHECK_EQ_INT(s[2], 0);
    CHECK_EQ_INT(s[3], 0x6e);
    CHECK_EQ_INT(q[0], 0xa7);                /* 6 -> 7, -1 -> 8 | 2 */
    CHECK_EQ_INT(q[8], 0x07);                /* 3 / (224 / 448) = 6 */
    CHECK_EQ_INT(q[24], 0x0f);
    llmq_block_dequantize_row(LLMQ_W_NVFP4, q, s, ts, 64, out);
    for (int j = 0; j < 64; j++) CHECK_NEAR(out[j], w[j], 1e-6);
    /* NVINT4: amax 7, tscale 1/448; -7 is code 9, 3 is 3 */
    memset(w, 0, sizeof w);
    w[0] = -7.0f; w[1] = 3.0f; w[63] = 1.0f;
    CHECK_EQ_INT(llmq_block_quantize(LLMQ_W_NVINT4, w, 1, 64, LLMQ_MX_SCALE_OCP, q, s, &ts, "w", &err), LLMQ_OK);
    CHECK(ts == (float)(7.0 / (448 * 7)));
    CHECK_EQ_INT(s[0], 0x7e);
    CHECK_EQ_INT(s[3], 0x68);                /* 1 / (7 / 448) = 64 = 2^6 */
    CHECK_EQ_INT(q[0], 0x39);
    CHECK_EQ_INT(q[31], 0x70);
    /* MXFP8: amax 448, X = 2^(8 - 8) = 1; 448 -> 0x7e, -2^-9 -> 0x81, 0.3 -> nearest 0.3125 */
    memset(w, 0, sizeof w);
    w[0] = 448.0f; w[1] = -0x1p-9f; w[2] = 0.3f;
    CHECK_EQ_INT(llmq_block_quantize(LLMQ_W_MXFP8, w, 1, 64, LLMQ_MX_SCALE_OCP, q, s, &ts, "w", &err), LLMQ_OK);
    CHECK(q[0] == 0x7e && q[1] == 0x81 && q[2] == 0x2a && q[3] == 0 && q[63] == 0);
    CHECK(s[0] == 127 && s[1] == 0);
    llmq_block_dequantize_row(LLMQ_W_MXFP8, q, s, ts, 64, out);
    CHECK(out[0] == 448.0f && out[1] == -0x1p-9f && out[2] == 0.3125f);
}

/* tscale: amax / (448 * elem_max); 1 for nothing to scale; never 0 */
TEST(block_tscale)
{
    CHECK(llmq_block_tscale(LLMQ_W_NVFP4, 2688.0f) == 1.0f);
    CHECK(llmq_block_tscale(LLMQ_W_NVINT4, 3136.0f) == 1.0f);
    CHECK(llmq_block_tscale(LLMQ_W_NVFP4, 0.0f) == 1.0f);
    CHECK(llmq_block_tscale(LLMQ_W_NVFP4, NAN) == 1.0f);
    CHECK(llmq_block_tscale(LLMQ_W_NVFP4, 1e-45f) > 0.0f);
    CHECK(isfinite(llmq_block_tscale(LLMQ_W_NVINT4, FLT_MAX)));
    /* the fake row is quantize + dequantize with the row's own tscale */
    enum { C = 96 };
    float w[C], a[C], b[C];
    uint8_t q[C], q2[C], s[C / 16], s2[C / 16];
    for (int k = 0; k < N_BLOCK_TYPES; k++) {
        llmq_wtype t = BLOCK_TYPES[k];
        for (int rule = 0; rule < 2; rule++) {
            fill_block_row(w, C, 5, 0.1);
            float amax = 0;
            for (int j = 0; j < C; j++) amax = fmaxf(amax, fabsf(w[j]));
            float ts = is_nv(t) ? llmq_block_tscale(t, amax) : 1.0f;
            llmq_block_fake_row(t, w, C, (llmq_mx_rule)rule, q, s, a);
            llmq_block_quantize_row(t, w, C, (llmq_mx_rule)rule, ts, q2, s2);
            llmq_block_dequantize_row(t, q2, s2, ts, C, b);
            CHECK_MSG(!memcmp(a, b, sizeof a), "%s rule %d", llmq_block_name(t), rule);
        }
    }
}

TEST(block_quantize_errors)
{
    enum { R = 3, C = 64 };
    float w[R * C], ts;
    uint8_t q[R * C], s[R * C / 16];
    llmq_err err;
    for (int i = 0; i < R * C; i++) w[i] = rndf();
    for (int k = 0; k < N_BLOCK_TYPES; k++) {
        llmq_wtype t = BLOCK_TYPES[k];
        const char *bs = "multiple of 32";
        /* a row length the kernels cannot walk: not whole 32-column chunks
         * (NV blocks are 16 wide, but rows of 48 are refused too) */
        CHECK_EQ_INT(llmq_block_quantize(t, w, 1, is_nv(t) ? 48 : 40, LLMQ_MX_SCALE_OCP, q, s, &ts, "blk.0.w", &err),
                     LLMQ_EUNSUPPORTED);
        CHECK_MSG(strstr(err.msg, "'blk.0.w'") && strstr(err.msg, bs), "%s", err.msg);
        CHECK_EQ_INT(llmq_block_quantize(t, w, 1, 0, LLMQ_MX_SCALE_OCP, q, s, &ts, "w", &err), LLMQ_EUNSUPPORTED);
        CHECK_EQ_INT(llmq_block_quantize(t, w, 1, 64, (llmq_mx_rule)7, q, s, &ts, "w", &err), LLMQ_EUNSUPPORTED);
        CHECK_EQ_INT(llmq_block_quantize(t, w, 1, 32, LLMQ_MX_SCALE_OCP, q, s, &ts, "w", &err), LLMQ_OK);
        /* NaN / Inf: ENONFINITE naming tensor, row and column, outputs untouched */
        float bad[3] = { NAN, INFINITY, -INFINITY };
        const char *word[3] = { "NaN", "+Inf", "-Inf" };
        for (int b = 0; b < 3; b++) {
            w[1 * C + 33] = bad[b];
            memset(q, 0x55, sizeof q);
            memset(s, 0x55, sizeof s);
            ts = 123.0f;
            CHECK_EQ_INT(llmq_block_quantize(t, w, R, C, LLMQ_MX_SCALE_CEIL, q, s, &ts, "model.layers.1.mlp.up_proj", &err),
                         LLMQ_ENONFINITE);
            CHECK_MSG(strstr(err.msg, "'model.layers.1.mlp.up_proj'") && strstr(err.msg, "row 1") &&
                      strstr(err.msg, "col 33") && strstr(err.msg, word[b]), "%s", err.msg);
            int untouched = ts == 123.0f;
            for (size_t i = 0; i < sizeof q; i++) untouched &= q[i] == 0x55;
            for (size_t i = 0; i < sizeof s; i++) untouched &= s[i] == 0x55;
            CHECK_MSG(untouched, "%s: outputs written before the error", llmq_block_name(t));
        }
        w[1 * C + 33] = 0.5f;
    }
    CHECK_EQ_INT(llmq_block_quantize(LLMQ_W_Q4, w, 1, 64, LLMQ_MX_SCALE_OCP, q, s, &ts, "w", &err), LLMQ_EUNSUPPORTED);
    CHECK_EQ_INT(llmq_block_quantize(LLMQ_W_MX8, w, 1, 64, LLMQ_MX_SCALE_OCP, q, s, &ts, "w", &err), LLMQ_EUNSUPPORTED);
}

/* LLMQ_MX_SCALE_MSE tries the OCP scale and its neighbours (the ceil scale
 * among them): per block, its squared error is no larger than either
 * rule's, its scale at most two E4M3 steps (NV) or one power of two (MX)
 * from the OCP one, and its elements are as near as the block factor allows. */
TEST(block_mse_rule)
{
    enum { R = BLK_KINDS, C = 256 };
    static float w[R * C], o[3][R * C];
    static uint8_t q[3][R * C], s[3][R * C / 16];
    static const llmq_mx_rule rules[3] = { LLMQ_MX_SCALE_OCP, LLMQ_MX_SCALE_CEIL, LLMQ_MX_SCALE_MSE };
    llmq_err err;
    for (int k = 0; k < N_BLOCK_TYPES; k++) {
        llmq_wtype t = BLOCK_TYPES[k];
        const int B = blk_size(t), nb = C / B;
        const int64_t rb = is_b4(t) ? C / 2 : C;
        int better = 0;
        for (int r = 0; r < R; r++) fill_block_row(w + r * C, C, r, 1.0);
        float ts[3];
        for (int u = 0; u < 3; u++) {
            CHECK_EQ_INT(llmq_block_quantize(t, w, R, C, rules[u], q[u], s[u], &ts[u], "w", &err), LLMQ_OK);
            for (int r = 0; r < R; r++) llmq_block_dequantize_row(t, q[u] + r * rb, s[u] + r * nb, ts[u], C, o[u] + r * C);
        }
        CHECK(ts[0] == ts[2] && ts[1] == ts[2]);
        for (int b = 0; b < R * nb; b++) {
            double e[3] = { 0, 0, 0 };
            for (int u = 0; u < 3; u++)
                for (int j = b * B; j < (b + 1) * B; j++) e[u] += ((double)o[u][j] - w[j]) * ((double)o[u][j] - w[j]);
            int d = (int)s[2][b] - (int)s[0][b];
            CHECK_MSG(e[2] <= fmin(e[0], e[1]) * (1 + 1e-9), "%s block %d: squared error %g, ocp %g, ceil %g",
                      llmq_block_name(t), b, e[2], e[0], e[1]);
            CHECK_MSG(is_nv(t) ? d >= -2 && d <= 2 && s[2][b] <= 0x7e : d >= 0 && d <= 1, "%s block %d: mse scale 0x%02x, ocp 0x%02x",
                      llmq_block_name(t), b, s[2][b], s[0][b]);
            better += e[2] < fmin(e[0], e[1]);
        }
        /* MX: the two candidates are the ocp and ceil scales; NV tries more */
        if (is_nv(t)) CHECK_MSG(better > 0, "%s: mse never better than both ocp and ceil", llmq_block_name(t));
    }
}

/* quantized with the block formats, the kernels' matvec stays close to f32 */
TEST(block_matvec_close)
{
    enum { R = 64, C = 256 };
    static float w[R * C], x[C], y[R], yq[R];
    static uint8_t q[R * C], s[R * C / 16];
    for (int i = 0; i < R * C; i++) w[i] = rndf() * 0.1f;
    for (int j = 0; j < C; j++) x[j] = rndf();
    llmq_wmat F = { LLMQ_W_F32, R, C, w, NULL, NULL, 0, 0, 0 };
    llmq_matvec(NULL, &F, x, y);
    for (int k = 0; k < N_BLOCK_TYPES; k++) {
        llmq_wtype t = BLOCK_TYPES[k];
        float ts;
        llmq_err err;
        CHECK_EQ_INT(llmq_block_quantize(t, w, R, C, LLMQ_MX_SCALE_OCP, q, s, &ts, "w", &err), 0);
        llmq_wmat W = { t, R, C, q, s, NULL, blk_size(t), ts, 0 };
        CHECK_EQ_INT(llmq_wmat_check(&W, "w", &err), LLMQ_OK);
        llmq_matvec(NULL, &W, x, yq);
        /* relative RMS error of the products: about 0.06-0.1 for 4-bit
         * elements, 0.03 for E4M3 (3 mantissa bits: 1/16 / sqrt(3) per
         * weight); |y| ~ 0.5, so rows stay within 0.25 and 0.1 */
        double tol = t == LLMQ_W_MXFP8 ? 0.1 : 0.25, se = 0, sy = 0;
        for (int r = 0; r < R; r++) {
            CHECK_MSG(fabs(yq[r] - y[r]) < tol, "%s row %d: %g vs %g", llmq_block_name(t), r, yq[r], y[r]);
            se += (yq[r] - y[r]) * (yq[r] - y[r]);
            sy += y[r] * y[r];
        }
        CHECK_MSG(sqrt(se / sy) < (t == LLMQ_W_MXFP8 ? 0.05 : 0.15), "%s relative RMS error %g", llmq_block_name(t), sqrt(se / sy));
    }
}

TEST_MAIN()
