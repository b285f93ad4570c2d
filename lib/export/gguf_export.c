/*
 * gguf_export.c - a model (Hugging Face checkpoint or llmq packed model) as
 * a GGUF file llama.cpp runs: tensor names, metadata and tokenizer as
 * llama.cpp's convert_hf_to_gguf.py lays them out, weights rounded as
 * llama-quantize's reference quantizers (ggml-quants.c *_ref) round them, or,
 * for a packed model, mapped exactly.  The mapping is documented in
 * man/llmq-export.1.
 */
#include <ctype.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include "gguf_export.h"
#include "../algo/pack.h"
#include "../base/fileio.h"
#include "../base/blocks.h"
#include "../../formats/json.h"
#include "../../formats/packed.h"
#include "../../formats/tokenizer.h"
#include "../../formats/gguf_tokenizer.h"

/* llama.cpp's llama_ftype values for general.file_type. */
enum { FTYPE_F32 = 0, FTYPE_F16 = 1, FTYPE_Q4_0 = 2, FTYPE_Q4_1 = 3, FTYPE_Q8_0 = 7, FTYPE_BF16 = 32, FTYPE_MXFP4 = 38 };
/* llama.cpp's token types (tokenizer.ggml.token_type). */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

typedef struct export_ctx export_ctx;

/* One tensor to write: where its values come from and what it becomes. */
typedef struct {
    export_ctx *x;
    const char *src;          /* the source's name, for messages */
    const llmq_wmat *w;       /* a matrix, or NULL */
    const float *vec;         /* or a vector (fp32 copy from the model) */
    int64_t n;                /* vector length */
    int perm_heads;           /* > 0: llama.cpp's q/k row order over this many heads */
    llmq_ggml_type type;
} job;

struct export_ctx {
    const llmq_model *m;
    llmq_gguf_outtype want;
    int packed;               /* the source is an llmq packed model */
    int exact;
    double m_max_err;
    double q8_rel_err;        /* int8 -> Q8_0: largest |f16(s) - s| / s over row scales */
    job *jobs; size_t n_jobs, cap_jobs;
    float *rope_freqs;        /* llama3 rope: rope_freqs.weight [head_dim / 2] */
    uint64_t lin_bits, lin_weights;
};

/* ---- row orders ---- */

/* Source row of output row r: llama.cpp rotates adjacent pairs (x[2i],
 * x[2i+1]) where Hugging Face Llama rotates (x[i], x[i + d/2]) of each
 * head of d rows; convert_hf_to_gguf.py reorders q and k rows so the two
 * agree: output row h*d + 2i + j is source row h*d + j*d/2 + i. */
static int64_t src_row(int64_t r, int64_t rows, int heads)
{
    if (heads <= 0) return r;
    int64_t d = rows / heads, h = r / d, k = r % d;
    return h * d + (k % 2) * (d / 2) + k / 2;
}

/* ---- float rows into GGML types, as ggml-quants.c's reference quantizers do ---- */

static int f16_finite(uint16_t h) { return (h & 0x7c00) != 0x7c00; }

static int row_q8_0(const float *x, int64_t n, llmq_ggml_q8_0 *y)
{
    for (int64_t b = 0; b < n / LLMQ_GGML_QK; b++, x += LLMQ_GGML_QK) {
        float amax = 0.0f;
        for (int j = 0; j < LLMQ_GGML_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = llmq_f32_to_f16(d);
        if (!f16_finite(dh)) return -1;
        llmq_put_le16(&y[b].d, dh);
        for (int j = 0; j < LLMQ_GGML_QK; j++) y[b].qs[j] = (int8_t)roundf(x[j] * id);
    }
    return 0;
}

static int row_q4_0(const float *x, int64_t n, llmq_ggml_q4_0 *y)
{
    for (int64_t b = 0; b < n / LLMQ_GGML_QK; b++, x += LLMQ_GGML_QK) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < LLMQ_GGML_QK; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        const float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = llmq_f32_to_f16(d);
        if (!f16_finite(dh)) return -1;
        llmq_put_le16(&y[b].d, dh);
        for (int j = 0; j < LLMQ_GGML_QK / 2; j++) {
            int lo = (int8_t)(x[j] * id + 8.5f), hi = (int8_t)(x[j + 16] * id + 8.5f);
            y[b].qs[j] = (uint8_t)(LLMQ_MIN(15, lo) | LLMQ_MIN(15, hi) << 4);
        }
    }
    return 0;
}

static int row_q4_1(const float *x, int64_t n, llmq_ggml_q4_1 *y)
{
    for (int64_t b = 0; b < n / LLMQ_GGML_QK; b++, x += LLMQ_GGML_QK) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < LLMQ_GGML_QK; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = llmq_f32_to_f16(d), mh = llmq_f32_to_f16(min);
        if (!f16_finite(dh) || !f16_finite(mh)) return -1;
        llmq_put_le16(&y[b].d, dh);
        llmq_put_le16(&y[b].m, mh);
        for (int j = 0; j < LLMQ_GGML_QK / 2; j++) {
            int lo = (int8_t)((x[j] - min) * id + 0.5f), hi = (int8_t)((x[j + 16] - min) * id + 0.5f);
            y[b].qs[j] = (uint8_t)(LLMQ_MIN(15, lo) | LLMQ_MIN(15, hi) << 4);
        }
    }
    return 0;
}

/* A float row into type t at out.  -1: a value or scale overflows f16. */
static int float_row(const float *x, int64_t n, llmq_ggml_type t, void *out)
{
    uint8_t *o = out;
    switch (t) {
    case LLMQ_GGML_F32:
        for (int64_t j = 0; j < n; j++) llmq_put_le32(o + 4 * j, llmq_f32_bits(x[j]));
        return 0;
    case LLMQ_GGML_F16:
        for (int64_t j = 0; j < n; j++) {
            uint16_t h = llmq_f32_to_f16(x[j]);
            if (!f16_finite(h)) return -1;
            llmq_put_le16(o + 2 * j, h);
        }
        return 0;
    case LLMQ_GGML_BF16:
        for (int64_t j = 0; j < n; j++) llmq_put_le16(o + 2 * j, llmq_f32_to_bf16(x[j]));
        return 0;
    case LLMQ_GGML_Q8_0: return row_q8_0(x, n, out);
    case LLMQ_GGML_Q4_0: return row_q4_0(x, n, out);
    case LLMQ_GGML_Q4_1: return row_q4_1(x, n, out);
    case LLMQ_GGML_MXFP4: break;     /* written from packed MXFP4 only */
    }
    return -1;
}

/* ---- packed rows into GGML types: exact, or refused ---- */

/* Code k of a row of LLMQ_W_Q4 codes (element k in byte k/2, low nibble even k). */
static int q4_code(const uint8_t *codes, int64_t k) { return (codes[k / 2] >> (4 * (k & 1))) & 15; }

/* Row r of an MXFP4 linear as ggml's MXFP4: the same E8M0 byte and the
 * same 4-bit codes, the nibbles moved to ggml's order.  Exact. */
static void mxfp4_row(const llmq_wmat *w, int64_t r, void *out)
{
    const uint8_t *c = (const uint8_t *)w->data + r * (w->cols / 2);
    const uint8_t *e = (const uint8_t *)w->scales + r * (w->cols / LLMQ_GGML_QK);
    for (int64_t b = 0; b < w->cols / LLMQ_GGML_QK; b++) {
        llmq_ggml_mxfp4 *y = (llmq_ggml_mxfp4 *)out + b;
        y->e = e[b];
        for (int j = 0; j < LLMQ_GGML_QK / 2; j++)
            y->qs[j] = (uint8_t)(q4_code(c, b * LLMQ_GGML_QK + j) | q4_code(c, b * LLMQ_GGML_QK + j + 16) << 4);
    }
}

/* Q4_1's m for a group of scale s (f16 bits) and zero point z: f16(-s z)
 * into *mh, and |f16(-s z) - (-s z)| returned; -1 when it overflows f16. */
static double q4_1_m(uint16_t s, int z, uint16_t *mh)
{
    float mf = -llmq_f16_to_f32(s) * (float)z;
    *mh = llmq_f32_to_f16(mf);
    if (!f16_finite(*mh)) return -1.0;
    return fabs((double)llmq_f16_to_f32(*mh) - (double)mf);
}

/* Row r of a Q4 (int4 / int3, asymmetric or symmetric) linear; -1 when
 * Q4_1's m = -s * z overflows f16.  Each
 * 32-block lies inside one group (the group is a multiple of 32) and takes
 * its scale s and zero point z (8 when symmetric): value (q - z) * s.
 * Q4_0: d = s, codes as they are (symmetric only: the zero is 8).
 * Q4_1: d = s, m = -s * z rounded to f16 (s * z is exact in f32; the
 *       rounding moves every weight of the block by the same |m - (-s z)|
 *       <= 2^-11 |s z|, half an f16 ulp).
 * Q8_0: d = s, qs = q - z in [-15, 15]: exact. */
static int q4_row(const llmq_wmat *w, int64_t r, llmq_ggml_type t, void *out)
{
    const int64_t cols = w->cols, ng = cols / w->group;
    const uint8_t *codes = (const uint8_t *)w->data + r * (cols / 2);
    const uint16_t *sc = (const uint16_t *)w->scales + r * ng;
    const uint8_t *zs = w->zeros ? w->zeros + r * ng : NULL;
    for (int64_t b = 0; b < cols / LLMQ_GGML_QK; b++) {
        int64_t g = b * LLMQ_GGML_QK / w->group, k0 = b * LLMQ_GGML_QK;
        uint16_t s = sc[g];
        int z = zs ? zs[g] : LLMQ_Q4_ZERO_SYM;
        if (t == LLMQ_GGML_Q4_0) {
            llmq_ggml_q4_0 *y = (llmq_ggml_q4_0 *)out + b;
            llmq_put_le16(&y->d, s);
            for (int j = 0; j < 16; j++)
                y->qs[j] = (uint8_t)(q4_code(codes, k0 + j) | q4_code(codes, k0 + j + 16) << 4);
        } else if (t == LLMQ_GGML_Q4_1) {
            llmq_ggml_q4_1 *y = (llmq_ggml_q4_1 *)out + b;
            uint16_t mh;
            if (q4_1_m(s, z, &mh) < 0) return -1;
            llmq_put_le16(&y->d, s);
            llmq_put_le16(&y->m, mh);
            for (int j = 0; j < 16; j++)
                y->qs[j] = (uint8_t)(q4_code(codes, k0 + j) | q4_code(codes, k0 + j + 16) << 4);
        } else {
            llmq_ggml_q8_0 *y = (llmq_ggml_q8_0 *)out + b;
            llmq_put_le16(&y->d, s);
            for (int j = 0; j < LLMQ_GGML_QK; j++) y->qs[j] = (int8_t)(q4_code(codes, k0 + j) - z);
        }
    }
    return 0;
}

/* 1 if the f32 s is an f16 value (normal or subnormal, not rounded). */
static int is_f16(float s)
{
    uint16_t h = llmq_f32_to_f16(s);
    return f16_finite(h) && llmq_f16_to_f32(h) == s;
}

/* Row r of an int8 linear (codes c, f32 row scale s, value c * s) as Q8_0:
 * d = f16(s), qs = c.  Exact when s is an f16; else (only when the type
 * was asked for, never under auto) each weight moves by a relative
 * |f16(s) - s| / s <= 2^-11. */
static int q8_row(const llmq_wmat *w, int64_t r, void *out)
{
    const int8_t *c = (const int8_t *)w->data + r * w->cols;
    float s = ((const float *)w->scales)[r];
    uint16_t dh = llmq_f32_to_f16(s);
    if (!f16_finite(dh)) return -1;
    for (int64_t b = 0; b < w->cols / LLMQ_GGML_QK; b++) {
        llmq_ggml_q8_0 *y = (llmq_ggml_q8_0 *)out + b;
        llmq_put_le16(&y->d, dh);
        memcpy(y->qs, c + b * LLMQ_GGML_QK, LLMQ_GGML_QK);
    }
    return 0;
}

/* Row r of an MXINT8 linear (code c, E8M0 e per 32, value c * 2^(e-133))
 * as Q8_0: d = 2^(e-133), exact in f16 for 109 <= e <= 148; a block of
 * zero codes takes d = 0.  -1 at a block outside that range. */
static int mx8_row(const llmq_wmat *w, int64_t r, void *out, int64_t *bad_block)
{
    const int8_t *c = (const int8_t *)w->data + r * w->cols;
    const uint8_t *e = (const uint8_t *)w->scales + r * (w->cols / LLMQ_MX8_BLOCK);
    for (int64_t b = 0; b < w->cols / LLMQ_GGML_QK; b++) {
        llmq_ggml_q8_0 *y = (llmq_ggml_q8_0 *)out + b;
        int nz = 0;
        for (int j = 0; j < LLMQ_GGML_QK; j++) nz |= c[b * LLMQ_GGML_QK + j];
        uint16_t dh = 0;
        if (nz) {
            float d = llmq_mx8_code_scale(e[b]);
            if (!is_f16(d)) { *bad_block = b; return -1; }
            dh = llmq_f32_to_f16(d);
        }
        llmq_put_le16(&y->d, dh);
        memcpy(y->qs, c + b * LLMQ_GGML_QK, LLMQ_GGML_QK);
    }
    return 0;
}

static int fill_tensor(void *ctx, const char *name, void *buf, uint64_t nbytes, llmq_err *err)
{
    (void)name;
    job *j = ctx;
    export_ctx *x = j->x;
    if (!j->w) {
        /* vectors: norms and biases as F32 (exact from bf16 / f16 / f32) */
        const int64_t n = j->n;
        for (int64_t i = 0; i < n; i++) {
            float v = j->vec[src_row(i, n, j->perm_heads)];
            llmq_put_le32((uint8_t *)buf + 4 * i, llmq_f32_bits(v));
        }
        return LLMQ_OK;
    }
    const llmq_wmat *w = j->w;
    uint64_t rb = llmq_ggml_row_bytes(j->type, w->cols);
    if (rb * (uint64_t)w->rows != nbytes) return LLMQ_BUG(err, "gguf tensor size");
    float *row = NULL;
    int is_float = w->type == LLMQ_W_F32 || w->type == LLMQ_W_BF16 || w->type == LLMQ_W_F16;
    if (is_float && !(row = llmq_malloc((size_t)w->cols * sizeof(float), err))) return err->code;
    int rc = LLMQ_OK;
    for (int64_t r = 0; r < w->rows && !rc; r++) {
        int64_t sr = src_row(r, w->rows, j->perm_heads);
        uint8_t *out = (uint8_t *)buf + (uint64_t)r * rb;
        int64_t bad = 0;
        if (is_float) {
            llmq_get_row(w, sr, row);
            if (float_row(row, w->cols, j->type, out))
                rc = llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: tensor '%s' row %" PRId64 ": a value or scale "
                                 "overflows f16, so %s cannot hold it", x->m->path, j->src, sr,
                                 llmq_ggml_type_name(j->type));
        } else if (w->type == LLMQ_W_Q4) {
            if (q4_row(w, sr, j->type, out))
                rc = llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: '%s' row %" PRId64 ": -scale * zero overflows f16, so "
                                 "Q4_1's m cannot hold it: use --type q8_0", x->m->path, j->src, sr);
        } else if (w->type == LLMQ_W_Q8) {
            if (q8_row(w, sr, out))
                rc = llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: '%s' row %" PRId64 ": scale overflows f16, Q8_0 "
                                 "cannot hold it", x->m->path, j->src, sr);
        } else if (w->type == LLMQ_W_MXFP4) {
            mxfp4_row(w, sr, out);
        } else if (w->type == LLMQ_W_MX8) {
            if (mx8_row(w, sr, out, &bad))
                rc = llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: '%s' row %" PRId64 " block %" PRId64 ": its MXINT8 "
                                 "scale is no f16 value, so Q8_0 cannot hold it exactly", x->m->path, j->src, sr, bad);
        } else {
            rc = LLMQ_BUG(err, "weight type");
        }
    }
    free(row);
    return rc;
}

static int fill_rope(void *ctx, const char *name, void *buf, uint64_t nbytes, llmq_err *err)
{
    const export_ctx *x = ctx;
    (void)name;
    for (uint64_t i = 0; i < nbytes / 4; i++) llmq_put_le32((uint8_t *)buf + 4 * i, llmq_f32_bits(x->rope_freqs[i]));
    (void)err;
    return LLMQ_OK;
}

/* ---- the type of each tensor ---- */

static llmq_ggml_type float_type(llmq_gguf_outtype t, const llmq_wmat *w)
{
    switch (t) {
    case LLMQ_GGUF_TYPE_F32: return LLMQ_GGML_F32;
    case LLMQ_GGUF_TYPE_F16: return LLMQ_GGML_F16;
    case LLMQ_GGUF_TYPE_BF16: return LLMQ_GGML_BF16;
    case LLMQ_GGUF_TYPE_Q8_0: return LLMQ_GGML_Q8_0;
    case LLMQ_GGUF_TYPE_Q4_0: return LLMQ_GGML_Q4_0;
    case LLMQ_GGUF_TYPE_Q4_1: return LLMQ_GGML_Q4_1;
    case LLMQ_GGUF_TYPE_AUTO: break;
    }
    return w->type == LLMQ_W_F32 ? LLMQ_GGML_F32 : w->type == LLMQ_W_F16 ? LLMQ_GGML_F16 : LLMQ_GGML_BF16;
}

static int is_float_w(const llmq_wmat *w)
{
    return w->type == LLMQ_W_F32 || w->type == LLMQ_W_BF16 || w->type == LLMQ_W_F16;
}

/* The GGML type of a packed linear under the requested type, or refuse. */
static int packed_type(export_ctx *x, const char *src, const llmq_wmat *w, llmq_ggml_type *out, llmq_err *err)
{
    const char *path = x->m->path;
    llmq_gguf_outtype t = x->want;
    if (llmq_wtype_is_ggml(w->type))
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: '%s' is ggml %s from a GGUF file: export writes from "
                           "safetensors checkpoints, not from GGUF", path, src, llmq_wtype_name(w->type));
    if (w->type == LLMQ_W_MXFP4 && t == LLMQ_GGUF_TYPE_AUTO) {
        *out = LLMQ_GGML_MXFP4;
        return LLMQ_OK;
    }
    if (llmq_wtype_is_block(w->type))
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: '%s' is %s, which %s", path, src, llmq_block_name(w->type),
                           w->type == LLMQ_W_MXFP4 ? "exports as GGUF MXFP4 (--type auto) only"
                                                   : "no GGUF type llmq writes holds exactly");
    if (w->type == LLMQ_W_Q3)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: '%s' is int3 at three bits per weight, which no GGUF type llmq "
                           "writes holds: export an int4 model instead", path, src);
    if (t == LLMQ_GGUF_TYPE_F32 || t == LLMQ_GGUF_TYPE_F16 || t == LLMQ_GGUF_TYPE_BF16)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: a packed model exports to --type auto, q8_0 or the 4-bit type "
                           "its linears map to exactly, not to a float type (dequantizing is not exact)", path);
    if (w->type == LLMQ_W_Q4) {
        if (w->group % LLMQ_GGML_QK) return LLMQ_BUG(err, "q4 group");
        if (t == LLMQ_GGUF_TYPE_AUTO) *out = w->zeros ? LLMQ_GGML_Q4_1 : LLMQ_GGML_Q4_0;
        else if (t == LLMQ_GGUF_TYPE_Q8_0) *out = LLMQ_GGML_Q8_0;
        else if (t == LLMQ_GGUF_TYPE_Q4_1) *out = LLMQ_GGML_Q4_1;
        else if (!w->zeros) *out = LLMQ_GGML_Q4_0;
        else return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: '%s' is asymmetric int4 (zero points), which Q4_0 "
                                "(zero fixed at 8) cannot hold exactly: use --type auto (Q4_1) or q8_0", path, src);
        return LLMQ_OK;
    }
    if (t == LLMQ_GGUF_TYPE_Q4_0 || t == LLMQ_GGUF_TYPE_Q4_1)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: '%s' is %s, which a 4-bit type cannot hold: use --type auto "
                           "or q8_0", path, src, w->type == LLMQ_W_Q8 ? "int8" : "mxint8");
    if (w->type == LLMQ_W_Q8 && t == LLMQ_GGUF_TYPE_AUTO) {
        const float *s = w->scales;
        for (int64_t r = 0; r < w->rows; r++)
            if (!is_f16(s[r]))
                return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: '%s' row %" PRId64 ": int8 scale %.9g is no f16 value "
                                   "and Q8_0 scales are f16, so no GGUF type holds it exactly; --type q8_0 rounds "
                                   "the scales to f16 (each weight moves by a relative 2^-11 at most, for scales "
                                   "of 2^-14 or more)", path, src, r, (double)s[r]);
    }
    if (w->type == LLMQ_W_Q8 && t == LLMQ_GGUF_TYPE_Q8_0) {
        const float *s = w->scales;
        for (int64_t r = 0; r < w->rows; r++) {
            if (is_f16(s[r]) || s[r] == 0.0f) continue;
            double e = fabs((double)llmq_f16_to_f32(llmq_f32_to_f16(s[r])) - (double)s[r]) / fabs((double)s[r]);
            x->exact = 0;
            if (e > x->q8_rel_err) x->q8_rel_err = e;
        }
    }
    *out = LLMQ_GGML_Q8_0;
    return LLMQ_OK;
}

static int add_job(export_ctx *x, llmq_gguf_writer *gw, const char *gname, const char *src, const llmq_wmat *w,
                   const float *vec, int64_t n, int perm_heads, int linear, llmq_err *err)
{
    if (x->n_jobs == x->cap_jobs) return LLMQ_BUG(err, "gguf export job table");
    job *j = &x->jobs[x->n_jobs];
    memset(j, 0, sizeof *j);
    j->x = x;
    j->src = src;
    j->w = w;
    j->vec = vec;
    j->n = n;
    j->perm_heads = perm_heads;
    int rc;
    int64_t ne[2];
    char q[LLMQ_QUOTE_SIZE];
    if (!w) {
        j->type = LLMQ_GGML_F32;
        ne[0] = n;
        rc = llmq_gguf_add_tensor(gw, gname, j->type, 1, ne, fill_tensor, j, err);
    } else {
        if (is_float_w(w)) {
            /* embeddings and an unquantized head of a packed model keep
             * their dtype: only the linears it quantized change storage */
            j->type = x->packed ? float_type(LLMQ_GGUF_TYPE_AUTO, w) : float_type(x->want, w);
            if (j->type != float_type(LLMQ_GGUF_TYPE_AUTO, w)) x->exact = 0;
        } else if ((rc = packed_type(x, src, w, &j->type, err))) {
            return rc;
        }
        if (w->cols % LLMQ_GGML_QK && llmq_ggml_row_bytes(j->type, w->cols) == 0)
            return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: '%s' rows of %" PRId64 " are not whole %s blocks of 32",
                               x->m->path, llmq_quote(q, src), w->cols, llmq_ggml_type_name(j->type));
        ne[0] = w->cols;
        ne[1] = w->rows;
        rc = llmq_gguf_add_tensor(gw, gname, j->type, 2, ne, fill_tensor, j, err);
        if (!rc && linear) {
            x->lin_bits += 8 * llmq_ggml_row_bytes(j->type, w->cols) * (uint64_t)w->rows;
            x->lin_weights += (uint64_t)w->cols * (uint64_t)w->rows;
        }
    }
    if (!rc) x->n_jobs++;
    return rc;
}

/* ---- tokenizer ---- */

/* tokenizer.json's ByteLevel pre-tokenizer with use_regex splits so */
#define GPT2_PATTERN "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jtrue(const cJSON *o, const char *k, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

/* The steps of a pre_tokenizer / normalizer: a Sequence's items or the one. */
static int steps_of(const cJSON *p, const char *list, const cJSON **items, int max)
{
    if (!cJSON_IsObject(p)) return 0;
    const char *t = jstr(p, "type");
    if (t && !strcmp(t, "Sequence")) {
        int n = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(p, list)) {
            if (n < max) items[n] = e;
            n++;
        }
        return n;
    }
    items[0] = p;
    return 1;
}

typedef struct {
    int spm;                  /* SentencePiece-style BPE ("llama"), else byte-level ("gpt2") */
    const char *pre;          /* tokenizer.ggml.pre for gpt2 */
    int add_space_prefix;     /* spm */
} tok_family;

static int tok_family_of(const cJSON *root, const char *path, tok_family *f, llmq_err *err)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const char *mt = jstr(model, "type");
    memset(f, 0, sizeof *f);
    if (!mt || strcmp(mt, "BPE"))
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: model type is not BPE: GGUF export writes BPE tokenizers only", path);
    const cJSON *steps[8];
    int n = steps_of(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), "pretokenizers", steps, 8);
    if (n > 8) return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: %d pre-tokenizer steps: GGUF has no name for them", path, n);
    int bytelevel = 0, bl_regex = 0, metaspace = -1;
    const char *split = NULL;
    for (int i = 0; i < n; i++) {
        const char *t = jstr(steps[i], "type");
        if (t && !strcmp(t, "ByteLevel")) {
            bytelevel = 1;
            bl_regex = jtrue(steps[i], "use_regex", 1);
            if (jtrue(steps[i], "add_prefix_space", 0))
                return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: the ByteLevel pre-tokenizer adds a prefix space, "
                                   "which llama.cpp's byte-level BPE does not", path);
        }
        else if (t && !strcmp(t, "Split") && !split) {
            split = jstr(cJSON_GetObjectItemCaseSensitive(steps[i], "pattern"), "Regex");
            if (!split) split = "";
        } else if (t && !strcmp(t, "Metaspace")) {
            const char *ps = jstr(steps[i], "prepend_scheme");
            metaspace = ps ? strcmp(ps, "never") != 0 : jtrue(steps[i], "add_prefix_space", 1);
        } else {
            return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: pre-tokenizer step '%s' has no GGUF equivalent llmq knows",
                               path, t ? t : "?");
        }
    }
    if (bytelevel) {
        /* a ByteLevel step with use_regex splits with GPT-2's pattern */
        const char *pat = split ? split : bl_regex ? GPT2_PATTERN : NULL;
        if (split && bl_regex) pat = NULL;
        f->pre = llmq_gguf_pre_name(pat);
        if (!f->pre)
            return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: the byte-level pre-tokenizer's split pattern is none of "
                               "GPT-2's, Llama 3's or Qwen2's, the ones llmq can name to llama.cpp (tokenizer.ggml.pre)", path);
        return LLMQ_OK;
    }
    if (!jtrue(model, "byte_fallback", 0) || split)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: neither byte-level BPE nor SentencePiece-style BPE with "
                           "byte fallback: GGUF export writes those two", path);
    f->spm = 1;
    f->add_space_prefix = metaspace > 0;
    const cJSON *ns[8];
    int nn = steps_of(cJSON_GetObjectItemCaseSensitive(root, "normalizer"), "normalizers", ns, 8);
    for (int i = 0; i < nn && i < 8; i++) {
        const char *t = jstr(ns[i], "type");
        const char *pp = jstr(ns[i], "prepend");
        if (t && !strcmp(t, "Prepend") && pp && !strcmp(pp, "\xe2\x96\x81")) f->add_space_prefix = 1;
    }
    return LLMQ_OK;
}

/* "a b" merge strings from model.merges, either form tokenizers writes
 * ("a b" strings, or ["a", "b"] pairs).  *out: n pointers into one block. */
static int merges_of(const cJSON *root, const char *path, char ***out, uint64_t *n_out, llmq_err *err)
{
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "model"), "merges");
    *out = NULL;
    *n_out = 0;
    if (!merges) return LLMQ_OK;
    if (!cJSON_IsArray(merges)) return llmq_errorf(err, LLMQ_EFORMAT, "%s: model.merges is not an array", path);
    uint64_t n = (uint64_t)cJSON_GetArraySize(merges), i = 0;
    char **v = llmq_calloc((size_t)n + 1, sizeof *v, err);
    if (!v) return err->code;
    const cJSON *e;
    int rc = LLMQ_OK;
    cJSON_ArrayForEach(e, merges) {
        const char *a = NULL, *b = NULL;
        if (cJSON_IsString(e)) {
            if (!(v[i] = llmq_strdup(e->valuestring, err))) { rc = err->code; break; }
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 0)) && cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            a = cJSON_GetArrayItem(e, 0)->valuestring;
            b = cJSON_GetArrayItem(e, 1)->valuestring;
            /* llama.cpp splits "a b" at its first space after the first byte */
            if (!*a || !*b || strchr(a, ' ') || strchr(b, ' ')) {
                rc = llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: merge %" PRIu64 " has a part with a space or an empty part, "
                                 "which GGUF's \"a b\" merges cannot write", path, i);
                break;
            }
            size_t la = strlen(a), lb = strlen(b);
            if (!(v[i] = llmq_malloc(la + lb + 2, err))) { rc = err->code; break; }
            memcpy(v[i], a, la);
            v[i][la] = ' ';
            memcpy(v[i] + la + 1, b, lb + 1);
        } else {
            rc = llmq_errorf(err, LLMQ_EFORMAT, "%s: merge %" PRIu64 " is neither \"a b\" nor [\"a\", \"b\"]", path, i);
            break;
        }
        i++;
    }
    if (rc) {
        for (uint64_t k = 0; k < n; k++) free(v[k]);
        free(v);
        return rc;
    }
    *out = v;
    *n_out = n;
    return LLMQ_OK;
}

static void free_strv(char **v, uint64_t n)
{
    if (!v) return;
    for (uint64_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* "<0xAB>" */
static int is_byte_token(const char *s)
{
    return strlen(s) == 6 && !strncmp(s, "<0x", 3) && s[5] == '>' &&
           isxdigit((unsigned char)s[3]) && isxdigit((unsigned char)s[4]);
}

static int write_tokenizer(llmq_gguf_writer *gw, const llmq_model *m, llmq_err *err)
{
    char *tpath = llmq_path_join(m->ckpt.dir, "tokenizer.json", err), *text = NULL;
    if (!tpath) return err->code;
    llmq_tok *tok = NULL;
    cJSON *root = NULL;
    char **merges = NULL, **pads = NULL;
    const char **tokens = NULL;
    int32_t *types = NULL;
    float *scores = NULL;
    uint64_t n_merges = 0;
    size_t len;
    int32_t V = m->cfg.vocab, nt = 0;
    tok_family fam;
    int rc = llmq_tok_load(&tok, tpath, err);
    if (!rc) rc = llmq_read_file(tpath, &text, &len, err);
    if (!rc) rc = llmq_json_parse(text, len, tpath, &root, err);
    if (!rc) rc = tok_family_of(root, tpath, &fam, err);
    if (!rc) rc = merges_of(root, tpath, &merges, &n_merges, err);
    if (!rc && (nt = llmq_tok_vocab_size(tok)) > V)
        rc = llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: %d token ids, more than the model's vocab_size %d (llama.cpp needs "
                         "one embedding row per token)", tpath, nt, V);
    if (rc) goto done;
    tokens = llmq_calloc((size_t)V, sizeof *tokens, err);
    pads = llmq_calloc((size_t)V, sizeof *pads, err);
    types = llmq_calloc((size_t)V, sizeof *types, err);
    scores = fam.spm ? llmq_calloc((size_t)V, sizeof *scores, err) : NULL;
    if (!tokens || !pads || !types || (fam.spm && !scores)) { rc = err->code; goto done; }
    int32_t unk = -1;
    const char *unk_text = jstr(cJSON_GetObjectItemCaseSensitive(root, "model"), "unk_token");
    if (unk_text) unk = llmq_tok_find(tok, unk_text);
    /* which ids tokenizer.json lists as added tokens */
    uint8_t *added = llmq_calloc((size_t)V, 1, err);
    if (!added) { rc = err->code; goto done; }
    const cJSON *at;
    cJSON_ArrayForEach(at, cJSON_GetObjectItemCaseSensitive(root, "added_tokens")) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(at, "id");
        if (cJSON_IsNumber(id) && id->valuedouble >= 0 && id->valuedouble < V) added[(int32_t)id->valuedouble] = 1;
    }
    for (int32_t i = 0; i < V; i++) {
        const char *p = i < nt ? llmq_tok_piece(tok, i) : NULL;
        if (!p || !*p) {
            /* ids no token names (embedding rows past the tokenizer): as
             * convert_hf_to_gguf.py pads them */
            char b[32];
            snprintf(b, sizeof b, "[PAD%d]", (int)i);
            if (!(pads[i] = llmq_strdup(b, err))) { rc = err->code; break; }
            tokens[i] = pads[i];
            types[i] = TT_UNUSED;
            continue;
        }
        tokens[i] = p;
        if (i == unk) types[i] = TT_UNKNOWN;
        else if (llmq_tok_is_special(tok, i)) types[i] = TT_CONTROL;
        else if (added[i]) types[i] = TT_USER;
        else if (fam.spm && is_byte_token(p)) types[i] = TT_BYTE;
        else types[i] = TT_NORMAL;
    }
    free(added);
    if (rc) goto done;
    if (fam.spm) {
        /* llama.cpp's SentencePiece tokenizer merges the adjacent pair whose
         * joined text has the highest score: score -rank of the first merge
         * that makes a token gives Hugging Face's merge order; tokens no
         * merge makes come last (single characters are never looked up). */
        for (int32_t i = 0; i < V; i++) scores[i] = types[i] == TT_NORMAL ? -1e9f : 0.0f;
        for (uint64_t r = 0; r < n_merges; r++) {
            char *sp = strchr(merges[r], ' ');
            if (!sp) continue;
            size_t la = (size_t)(sp - merges[r]), lb = strlen(sp + 1);
            char *joined = llmq_malloc(la + lb + 1, err);
            if (!joined) { rc = err->code; goto done; }
            memcpy(joined, merges[r], la);
            memcpy(joined + la, sp + 1, lb + 1);
            int32_t id = llmq_tok_find(tok, joined);
            free(joined);
            if (id >= 0 && id < V && scores[id] == -1e9f) scores[id] = -(float)r;
        }
    }
    int32_t bos = llmq_tok_bos(tok), eos = llmq_tok_eos(tok);
    rc = llmq_gguf_kv_str(gw, "tokenizer.ggml.model", fam.spm ? "llama" : "gpt2", err);
    if (!rc && !fam.spm) rc = llmq_gguf_kv_str(gw, "tokenizer.ggml.pre", fam.pre, err);
    if (!rc) rc = llmq_gguf_kv_arr_str(gw, "tokenizer.ggml.tokens", tokens, (uint64_t)V, err);
    if (!rc && fam.spm) rc = llmq_gguf_kv_arr_f32(gw, "tokenizer.ggml.scores", scores, (uint64_t)V, err);
    if (!rc) rc = llmq_gguf_kv_arr_i32(gw, "tokenizer.ggml.token_type", types, (uint64_t)V, err);
    if (!rc && !fam.spm) rc = llmq_gguf_kv_arr_str(gw, "tokenizer.ggml.merges", (const char *const *)merges, n_merges, err);
    if (!rc && bos >= 0) rc = llmq_gguf_kv_u32(gw, "tokenizer.ggml.bos_token_id", (uint32_t)bos, err);
    if (!rc && eos >= 0) rc = llmq_gguf_kv_u32(gw, "tokenizer.ggml.eos_token_id", (uint32_t)eos, err);
    if (!rc && unk >= 0) rc = llmq_gguf_kv_u32(gw, "tokenizer.ggml.unknown_token_id", (uint32_t)unk, err);
    if (!rc) rc = llmq_gguf_kv_bool(gw, "tokenizer.ggml.add_bos_token", llmq_tok_add_bos(tok), err);
    if (!rc) rc = llmq_gguf_kv_bool(gw, "tokenizer.ggml.add_eos_token", 0, err);
    if (!rc && fam.spm) rc = llmq_gguf_kv_bool(gw, "tokenizer.ggml.add_space_prefix", fam.add_space_prefix, err);
done:
    free_strv(pads, (uint64_t)(pads ? V : 0));
    free_strv(merges, n_merges);
    free(tokens);
    free(types);
    free(scores);
    cJSON_Delete(root);
    free(text);
    llmq_tok_free(tok);
    free(tpath);
    return rc;
}

/* ---- metadata and the whole file ---- */

/* llama3 rope (transformers' _compute_llama3_parameters): the factor each
 * inverse frequency is divided by, as llama.cpp reads rope_freqs.weight. */
static int llama3_freqs(export_ctx *x, llmq_err *err)
{
    const llmq_config *c = &x->m->cfg;
    int half = c->head_dim / 2;
    x->rope_freqs = llmq_malloc((size_t)half * sizeof(float), err);
    if (!x->rope_freqs) return err->code;
    double lo_wl = c->rope_orig_max / c->rope_low_freq, hi_wl = c->rope_orig_max / c->rope_high_freq;
    for (int i = 0; i < half; i++) {
        double freq = 1.0 / pow(c->rope_theta, (2.0 * i) / c->head_dim), wl = 2.0 * M_PI / freq, f;
        if (wl < hi_wl) f = 1.0;
        else if (wl > lo_wl) f = c->rope_factor;
        else {
            double smooth = (c->rope_orig_max / wl - c->rope_low_freq) / (c->rope_high_freq - c->rope_low_freq);
            f = 1.0 / ((1.0 - smooth) / c->rope_factor + smooth);
        }
        x->rope_freqs[i] = (float)f;
    }
    return LLMQ_OK;
}

static const char *dir_name(const char *dir, char *buf, size_t n)
{
    size_t l = strlen(dir);
    while (l > 1 && dir[l - 1] == '/') l--;
    size_t s = l;
    while (s > 0 && dir[s - 1] != '/') s--;
    snprintf(buf, n, "%.*s", (int)(l - s), dir + s);
    return buf;
}

static int write_meta(llmq_gguf_writer *gw, export_ctx *x, const llmq_gguf_export_opts *o, const char *arch,
                      int ftype, llmq_err *err)
{
    const llmq_model *m = x->m;
    const llmq_config *c = &m->cfg;
    char k[128], nb[256], digest[65];
    int rc = llmq_gguf_kv_str(gw, "general.architecture", arch, err);
#define KV(fn, key, ...) do { if (!rc) { snprintf(k, sizeof k, "%s.%s", arch, key); rc = fn(gw, k, __VA_ARGS__, err); } } while (0)
    if (!rc) rc = llmq_gguf_kv_str(gw, "general.name", o->name ? o->name : dir_name(m->ckpt.dir, nb, sizeof nb), err);
    if (!rc) rc = llmq_gguf_kv_u32(gw, "general.file_type", (uint32_t)ftype, err);
    if (!rc && ftype != FTYPE_F32 && ftype != FTYPE_F16 && ftype != FTYPE_BF16)
        rc = llmq_gguf_kv_u32(gw, "general.quantization_version", 2, err);
    KV(llmq_gguf_kv_u32, "vocab_size", (uint32_t)c->vocab);
    /* Mistral's sliding window: llama.cpp's llama attends to the whole
     * context, which is the same attention for contexts up to the window,
     * so the window is the context the file declares */
    int ctx_len = c->max_pos > 0 ? c->max_pos : 2048;
    if (c->sliding_window > 0 && c->sliding_window < ctx_len) ctx_len = c->sliding_window;
    KV(llmq_gguf_kv_u32, "context_length", (uint32_t)ctx_len);
    KV(llmq_gguf_kv_u32, "embedding_length", (uint32_t)c->hidden);
    KV(llmq_gguf_kv_u32, "block_count", (uint32_t)c->n_layers);
    KV(llmq_gguf_kv_u32, "feed_forward_length", (uint32_t)c->intermediate);
    KV(llmq_gguf_kv_u32, "attention.head_count", (uint32_t)c->n_heads);
    KV(llmq_gguf_kv_u32, "attention.head_count_kv", (uint32_t)c->n_kv_heads);
    KV(llmq_gguf_kv_u32, "attention.key_length", (uint32_t)c->head_dim);
    KV(llmq_gguf_kv_u32, "attention.value_length", (uint32_t)c->head_dim);
    KV(llmq_gguf_kv_u32, "rope.dimension_count", (uint32_t)c->head_dim);
    KV(llmq_gguf_kv_f32, "rope.freq_base", (float)c->rope_theta);
    KV(llmq_gguf_kv_f32, "attention.layer_norm_rms_epsilon", (float)c->rms_eps);
    if (c->rope_type == LLMQ_ROPE_LINEAR) {
        KV(llmq_gguf_kv_str, "rope.scaling.type", "linear");
        KV(llmq_gguf_kv_f32, "rope.scaling.factor", (float)c->rope_factor);
    }
#undef KV
    if (!rc) rc = write_tokenizer(gw, m, err);
    /* provenance */
    if (!rc) rc = llmq_gguf_kv_str(gw, "llmq.version", LLMQ_VERSION, err);
    if (!rc) rc = llmq_gguf_kv_str(gw, "llmq.source", m->path, err);
    if (!rc) rc = llmq_model_digest(m, digest, err);
    if (!rc) rc = llmq_gguf_kv_str(gw, "llmq.source_digest", digest, err);
    if (!rc) rc = llmq_gguf_kv_str(gw, "llmq.source_weights", m->weights_dtype, err);
    if (!rc && o->command) rc = llmq_gguf_kv_str(gw, "llmq.command", o->command, err);
    if (!rc && c->sliding_window > 0) rc = llmq_gguf_kv_u32(gw, "llmq.sliding_window", (uint32_t)c->sliding_window, err);
    if (!rc && x->packed) {
        const llmq_st_file *f = &m->ckpt.shards[0];
        const char *keys[] = { "llmq.params", "llmq.command", "llmq.source_digest", "llmq.source" };
        const char *names[] = { "llmq.packed.params", "llmq.packed.command", "llmq.packed.source_digest", "llmq.packed.source" };
        for (size_t i = 0; !rc && i < LLMQ_ARRAY_LEN(keys); i++) {
            const char *v = llmq_st_meta(f, keys[i]);
            if (v) rc = llmq_gguf_kv_str(gw, names[i], v, err);
        }
        /* the method, scheme and calibration text of the packed model at
         * the top level, for readers that do not parse llmq.packed.params */
        const char *pj = llmq_st_meta(f, "llmq.params");
        cJSON *p = NULL;
        llmq_err perr;
        if (!rc && pj && llmq_json_parse(pj, strlen(pj), "llmq.params", &p, &perr) == LLMQ_OK) {
            const char *meth = jstr(p, "method"), *scheme = jstr(p, "scheme"), *cal = jstr(p, "calib_text_sha256");
            const cJSON *g = cJSON_GetObjectItemCaseSensitive(p, "group");
            rc = llmq_gguf_kv_str(gw, "llmq.method", meth ? meth : "rtn", err);
            if (!rc && scheme) rc = llmq_gguf_kv_str(gw, "llmq.scheme", scheme, err);
            if (!rc && cJSON_IsNumber(g) && g->valuedouble >= 1 && g->valuedouble <= 1 << 20)
                rc = llmq_gguf_kv_u32(gw, "llmq.group", (uint32_t)g->valuedouble, err);
            if (!rc && cal) rc = llmq_gguf_kv_str(gw, "llmq.calib_text_sha256", cal, err);
        }
        cJSON_Delete(p);
    }
    return rc;
}

int llmq_gguf_export(const llmq_model *m, const llmq_gguf_export_opts *o, const char *path,
                     llmq_gguf_export_stats *st, llmq_err *err)
{
    const llmq_config *c = &m->cfg;
    memset(st, 0, sizeof *st);
    const char *arch = c->arch == LLMQ_ARCH_QWEN2 ? "qwen2" : "llama";
    int perm = c->arch != LLMQ_ARCH_QWEN2;
    if (c->rope_type == LLMQ_ROPE_LLAMA3 && !perm)
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: llama3 rope scaling on Qwen2: llama.cpp's qwen2 reads no rope_freqs", m->path);
    if (c->arch == LLMQ_ARCH_QWEN2 && (c->o_bias || c->mlp_bias))
        return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: Qwen2 with o_proj or MLP biases: llama.cpp's qwen2 has no such tensors", m->path);
    if (c->head_dim % 2) return llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: odd head_dim %d", m->path, c->head_dim);
    int rc0 = llmq_config_refuse_online(c, m->path, "llama.cpp would not apply them; export the model rotated "
                                        "without --online-hadamard", err);
    if (rc0) return rc0;

    export_ctx x;
    memset(&x, 0, sizeof x);
    x.m = m;
    x.want = o->type;
    x.packed = m->packed_meta != NULL;
    x.exact = 1;
    x.cap_jobs = 4 + (size_t)c->n_layers * 16;
    llmq_gguf_writer *gw = NULL;
    char (*names)[2][96] = NULL;   /* per job: GGUF name, source name */
    int rc = LLMQ_OK;
    x.jobs = llmq_calloc(x.cap_jobs, sizeof *x.jobs, err);
    names = llmq_calloc(x.cap_jobs, sizeof *names, err);
    if (!x.jobs || !names || !(gw = llmq_gguf_writer_new(err))) { rc = err->code; goto done; }
    if (c->rope_type == LLMQ_ROPE_LLAMA3 && (rc = llama3_freqs(&x, err))) goto done;

    /* the tensors, in llama.cpp's order */
    size_t ni = 0;
#define NAME(g, s) (snprintf(names[ni][0], 96, "%s", g), snprintf(names[ni][1], 96, "%s", s), ni++)
#define ADD(W, V, N, P, ISLIN) do { if (!rc) rc = add_job(&x, gw, names[ni - 1][0], names[ni - 1][1], W, V, N, P, ISLIN, err); } while (0)
#define LIN(k) llmq_linears[LLMQ_LIN_##k].gguf, llmq_linears[LLMQ_LIN_##k].hf
    NAME("token_embd.weight", "model.embed_tokens.weight");
    ADD(&m->embed, NULL, 0, 0, 0);
    int tied = m->lm_head.data == m->embed.data;
    if (!tied) {
        NAME("output.weight", "lm_head");
        ADD(&m->lm_head, NULL, 0, 0, 0);
    }
    NAME("output_norm.weight", "model.norm.weight");
    ADD(NULL, m->final_norm, c->hidden, 0, 0);
    int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    for (int l = 0; l < c->n_layers && !rc; l++) {
        const llmq_layer *L = &m->layers[l];
        struct { const char *g, *s; const llmq_wmat *w; const float *v; int64_t n; int heads; } t[] = {
            { "attn_norm.weight", "input_layernorm.weight", NULL, L->attn_norm, c->hidden, 0 },
            { LIN(Q), &L->wq, NULL, 0, perm ? c->n_heads : 0 },
            { LIN(K), &L->wk, NULL, 0, perm ? c->n_kv_heads : 0 },
            { LIN(V), &L->wv, NULL, 0, 0 },
            { LIN(O), &L->wo, NULL, 0, 0 },
            { "attn_q.bias", "self_attn.q_proj.bias", NULL, L->bq, qd, perm ? c->n_heads : 0 },
            { "attn_k.bias", "self_attn.k_proj.bias", NULL, L->bk, kvd, perm ? c->n_kv_heads : 0 },
            { "attn_v.bias", "self_attn.v_proj.bias", NULL, L->bv, kvd, 0 },
            { "attn_output.bias", "self_attn.o_proj.bias", NULL, L->bo, c->hidden, 0 },
            { "ffn_norm.weight", "post_attention_layernorm.weight", NULL, L->mlp_norm, c->hidden, 0 },
            { LIN(GATE), &L->w_gate, NULL, 0, 0 },
            { LIN(UP), &L->w_up, NULL, 0, 0 },
            { LIN(DOWN), &L->w_down, NULL, 0, 0 },
            { "ffn_gate.bias", "mlp.gate_proj.bias", NULL, L->b_gate, c->intermediate, 0 },
            { "ffn_up.bias", "mlp.up_proj.bias", NULL, L->b_up, c->intermediate, 0 },
            { "ffn_down.bias", "mlp.down_proj.bias", NULL, L->b_down, c->hidden, 0 },
        };
        _Static_assert(LLMQ_ARRAY_LEN(t) <= 16, "jobs per layer");
        for (size_t i = 0; i < LLMQ_ARRAY_LEN(t) && !rc; i++) {
            if (!t[i].w && !t[i].v) continue;    /* a bias the model does not have */
            snprintf(names[ni][0], 96, "blk.%d.%s", l, t[i].g);
            snprintf(names[ni][1], 96, "model.layers.%d.%s", l, t[i].s);
            ni++;
            ADD(t[i].w, t[i].v, t[i].n, t[i].heads, t[i].w != NULL);
        }
    }
#undef NAME
#undef ADD
#undef LIN
    if (!rc && x.rope_freqs) {
        int64_t ne[1] = { c->head_dim / 2 };
        rc = llmq_gguf_add_tensor(gw, "rope_freqs.weight", LLMQ_GGML_F32, 1, ne, fill_rope, &x, err);
    }
    if (rc) goto done;

    /* general.file_type: the type of the first linear, as llama.cpp names a file */
    llmq_ggml_type t0 = LLMQ_GGML_F32;
    for (size_t i = 0; i < x.n_jobs; i++)
        if (x.jobs[i].w == &m->layers[0].wq) t0 = x.jobs[i].type;
    int ftype = t0 == LLMQ_GGML_F32 ? FTYPE_F32 : t0 == LLMQ_GGML_F16 ? FTYPE_F16 : t0 == LLMQ_GGML_BF16 ? FTYPE_BF16
              : t0 == LLMQ_GGML_Q8_0 ? FTYPE_Q8_0 : t0 == LLMQ_GGML_Q4_0 ? FTYPE_Q4_0
              : t0 == LLMQ_GGML_MXFP4 ? FTYPE_MXFP4 : FTYPE_Q4_1;
    snprintf(st->file_type, sizeof st->file_type, "%s", llmq_ggml_type_name(t0));
    /* the metadata comes before the tensors, so what it says about them is
     * found first: the packed linears' exactness was decided per linear
     * (packed_type); here Q4_1's m rounding, over every group */
    for (size_t i = 0; i < x.n_jobs; i++) {
        const llmq_wmat *w = x.jobs[i].w;
        if (!w || w->type != LLMQ_W_Q4 || x.jobs[i].type != LLMQ_GGML_Q4_1) continue;
        const uint16_t *sc = w->scales;
        for (int64_t e = 0; e < w->rows * (w->cols / w->group); e++) {
            uint16_t mh;
            double d = q4_1_m(sc[e], w->zeros ? w->zeros[e] : LLMQ_Q4_ZERO_SYM, &mh);
            if (d < 0) {
                rc = llmq_errorf(err, LLMQ_EUNSUPPORTED, "%s: '%s' row %" PRId64 ": -scale * zero overflows f16, so "
                                 "Q4_1's m cannot hold it: use --type q8_0", m->path, x.jobs[i].src,
                                 e / (w->cols / w->group));
                goto done;
            }
            if (d > x.m_max_err) x.m_max_err = d;
        }
    }
    if (x.m_max_err > 0.0) x.exact = 0;
    if ((rc = write_meta(gw, &x, o, arch, ftype, err))) goto done;
    if (x.packed) rc = llmq_gguf_kv_f32(gw, "llmq.q4_1_m_max_abs_err", (float)x.m_max_err, err);
    if (!rc && x.q8_rel_err > 0.0) rc = llmq_gguf_kv_f32(gw, "llmq.q8_0_scale_max_rel_err", (float)x.q8_rel_err, err);
    if (!rc) rc = llmq_gguf_kv_bool(gw, "llmq.exact", x.exact, err);
    if (!rc) rc = llmq_gguf_writer_finish(gw, path, &st->bytes, err);
    if (rc) goto done;
    st->tensors = (int)x.n_jobs + (x.rope_freqs ? 1 : 0);
    st->exact = x.exact;
    st->m_max_err = x.m_max_err;
    st->q8_scale_rel_err = x.q8_rel_err;
    st->bits_per_weight = x.lin_weights ? (double)x.lin_bits / (double)x.lin_weights : 0.0;
done:
    llmq_gguf_writer_free(gw);
    free(x.jobs);
    free(names);
    free(x.rope_freqs);
    return rc;
}
