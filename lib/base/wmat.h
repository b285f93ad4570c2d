/*
 * wmat.h - the view of one weight matrix in any storage type: what the
 * formats fill from a file's bytes and the kernels run.  Only types here;
 * the kernels that use them are lib/kernels/kernels.h, the byte layouts of
 * llmq's quantized types lib/base/blocks.h.
 *
 * A weight matrix W is [rows, cols] = [out_features, in_features], row-major,
 * as Hugging Face stores nn.Linear weights.  Views are borrowed (usually from
 * an mmap).
 */
#ifndef LLMQ_WMAT_H
#define LLMQ_WMAT_H

#include <stdint.h>

typedef enum {
    LLMQ_W_F32 = 0,   /* data: float[rows][cols] */
    LLMQ_W_BF16,      /* data: uint16 bf16[rows][cols] */
    LLMQ_W_F16,       /* data: uint16 f16[rows][cols] */
    LLMQ_W_Q8,        /* int8 per output channel, symmetric: data int8[rows][cols], scales float[rows] */
    LLMQ_W_Q4,        /* int4 group-wise along cols: see lib/base/blocks.h */
    LLMQ_W_MX8,       /* MXINT8, blocks of 32 along cols, E8M0 scales: see lib/base/blocks.h */
    /* ggml's block types, straight from GGUF bytes (lib/quant/ggml_blocks.h):
     * data is the tensor as GGUF stores it, rows one after another, each
     * row cols / QK blocks, no padding, at any alignment; scales and zeros
     * NULL; group = QK (32, or 256 for the K types), QK | cols. */
    LLMQ_W_GQ8_0,
    LLMQ_W_GQ4_0,
    LLMQ_W_GQ4_1,
    LLMQ_W_GQ5_0,
    LLMQ_W_GQ5_1,
    LLMQ_W_GQ2_K,
    LLMQ_W_GQ3_K,
    LLMQ_W_GQ4_K,
    LLMQ_W_GQ5_K,
    LLMQ_W_GQ6_K,
    /* Block formats of OCP Microscaling (MX) v1.0 and NVIDIA's NVFP4, and
     * the integer twins of the INT-vs-FP study (Chen et al., arXiv
     * 2510.25602): see lib/base/blocks.h.  group = elements per block
     * scale (32 or 16); NV types also use tscale. */
    LLMQ_W_MXFP4,     /* E2M1 elements, blocks of 32, E8M0 scale */
    LLMQ_W_MXINT4,    /* int4 elements (code / 4), blocks of 32, E8M0 scale */
    LLMQ_W_NVFP4,     /* E2M1 elements, blocks of 16, E4M3 scale times an f32 tensor scale */
    LLMQ_W_NVINT4,    /* int4 elements, blocks of 16, E4M3 scale times an f32 tensor scale */
    LLMQ_W_MXFP8,     /* E4M3 elements, blocks of 32, E8M0 scale */
    LLMQ_W_Q3,        /* int3 group-wise along cols, 3 bits per code: see lib/base/blocks.h */
    LLMQ_W_COUNT
} llmq_wtype;

/* Whether t is one of ggml's block types (LLMQ_W_GQ8_0 .. LLMQ_W_GQ6_K). */
static inline int llmq_wtype_is_ggml(llmq_wtype t) { return t >= LLMQ_W_GQ8_0 && t <= LLMQ_W_GQ6_K; }
/* Whether t is one of the MX / NV block formats (LLMQ_W_MXFP4 .. LLMQ_W_MXFP8). */
static inline int llmq_wtype_is_block(llmq_wtype t) { return t >= LLMQ_W_MXFP4 && t <= LLMQ_W_MXFP8; }
/* Of those, the ones with 4-bit codes (two per byte). */
static inline int llmq_wtype_is_block4(llmq_wtype t) { return t >= LLMQ_W_MXFP4 && t <= LLMQ_W_NVINT4; }
/* Of those, the ones with an E4M3 block scale and an f32 tensor scale. */
static inline int llmq_wtype_is_nv(llmq_wtype t) { return t == LLMQ_W_NVFP4 || t == LLMQ_W_NVINT4; }

typedef struct {
    llmq_wtype type;
    int64_t rows, cols;
    const void *data;      /* elements or packed codes */
    const void *scales;    /* per-type, see lib/base/blocks.h; NULL for float types */
    const uint8_t *zeros;  /* Q4 / Q3 asymmetric zero points, NULL if symmetric */
    int group;             /* Q4 / Q3 group size (32/64/128), MX8: 32, block formats: 32 or 16 */
    float tscale;          /* NVFP4 / NVINT4 tensor scale (lib/base/blocks.h); unused by other types */
    int ilv;               /* 0: rows one after another; LLMQ_ILV_ROWS or LLMQ_ILV_LANES: rows in tiles (below) */
    const uint16_t *lscales;  /* LLMQ_ILV_LANES only: scales [rows / 16][cols / group][16] */
    const uint8_t *lzeros;    /* LLMQ_ILV_LANES only: zero points, the same order; NULL if symmetric */
} llmq_wmat;

/* An interleaved matrix (ilv = LLMQ_ILV_ROWS, made by llmq_wmat_interleave
 * for the runner, never in a file): rows in tiles of four whose 64-byte
 * lines alternate, so that a kernel reading four rows at once reads one
 * address stream instead of four.  Line j of row 4t + k lies at data +
 * 4t * rb + (4j + k) * 64, rb the row's bytes of data (llmq_wmat_row_bytes
 * in kernels.h); rows % 4 == 0 and rb % 64 == 0.  Types BF16, F16, Q8 and
 * Q4, MXINT8 and the block formats (not f32, Q3, ggml blocks); scales and
 * zero points stay row-major. */
#define LLMQ_ILV_ROWS 4
#define LLMQ_ILV_LINE 64

/* Q4 only, for W4A8 on VNNI (ilv = LLMQ_ILV_LANES, llmq_wmat_interleave_lanes):
 * rows in tiles of sixteen whose 4-byte lines alternate, so that one
 * 64-byte load holds 8 columns of 16 rows, row k of the tile in dword lane
 * k: a register of 16 rows' sums, no horizontal sums.  Line j (columns
 * 8j .. 8j + 7, the file's bytes) of row 16t + k lies at data + 16t * rb +
 * (16j + k) * 4; rows % 16 == 0.  The scales and zero points of a tile's
 * 16 rows sit together in lscales / lzeros (scales / zeros stay too, for
 * the oracle).  Only the W4A8 kernels of a table with matvec_q4a8l read it
 * fast; every other kernel of Q4 takes the oracle's. */
#define LLMQ_ILV_LANES 16
#define LLMQ_ILV_LANE_LINE 4

/* Where byte `off` of row r's data lies (rb bytes per row), any layout. */
static inline const uint8_t *llmq_wmat_row_byte(const llmq_wmat *W, int64_t r, int64_t rb, int64_t off)
{
    const uint8_t *d = (const uint8_t *)W->data;
    if (!W->ilv) return d + r * rb + off;
    if (W->ilv == LLMQ_ILV_LANES)
        return d + (r & ~(int64_t)15) * rb +
               (off / LLMQ_ILV_LANE_LINE * LLMQ_ILV_LANES + (r & 15)) * LLMQ_ILV_LANE_LINE + off % LLMQ_ILV_LANE_LINE;
    return d + (r & ~(int64_t)3) * rb + (off / LLMQ_ILV_LINE * LLMQ_ILV_ROWS + (r & 3)) * LLMQ_ILV_LINE +
           off % LLMQ_ILV_LINE;
}

/* The distance between consecutive 64-byte lines of one row (plain rows
 * or LLMQ_ILV_ROWS tiles; kernels that read lines never see LLMQ_ILV_LANES). */
static inline int64_t llmq_wmat_line_stride(const llmq_wmat *W)
{
    return W->ilv ? LLMQ_ILV_ROWS * LLMQ_ILV_LINE : LLMQ_ILV_LINE;
}

/* How an MXINT8 block's shared E8M0 scale was chosen (llmq_mx8_quantize in
 * lib/quant/quant.h); recorded in a packed file's scheme name. */
typedef enum {
    /* OCP MX v1.0 section 6.3: X = 2^(floor(log2 amax) - emax_elem) with
     * emax_elem = 0 for MXINT8; elements round(w / X * 64) clamped to
     * [-127, 127].  Elements in (127.5/64, 2) * X clip to 127 / 64 * X: up to
     * one integer step of error.  This is the spec's rule. */
    LLMQ_MX_SCALE_OCP = 0,
    /* The integer step is 2^ceil(log2(amax / 127)), the smallest power of two
     * at which nothing clips (error <= step / 2 everywhere), one bit coarser
     * than OCP for blocks whose amax is in (127, 128] * 2^k.  Discussed as
     * the remedy for MXINT8 clipping in Chen et al., "INT v.s. FP"
     * (arXiv:2510.25602, 2025). */
    LLMQ_MX_SCALE_CEIL = 1,
    /* Block formats only (lib/quant/microscale.c): of the OCP scale and the
     * next one up (MX: 2^(e + 1); NV: the E4M3 values one and two steps
     * either side of the nearest), the one whose block has the smallest
     * squared error - the clipping OCP causes weighed against the coarser
     * grid that avoids it, per block. */
    LLMQ_MX_SCALE_MSE = 2
} llmq_mx_rule;

#endif
