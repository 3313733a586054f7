/*
 * kernel_params.h - what the host launchers pass to the CUDA kernels.
 *
 * Plain structs passed by value.  All strides are in elements, all offsets
 * 64-bit.  A "segment" is a run of consecutive chunks of one sequence that
 * one thread block walks in order; long sequences with few heads are cut
 * into several segments so the whole GPU works (sequence parallelism), and
 * the states at segment boundaries are stitched by a fold kernel.
 */
#ifndef LA_CUDA_KERNEL_PARAMS_H
#define LA_CUDA_KERNEL_PARAMS_H

#include "error_record.h"

#include <stdint.h>

#define LA_CUDA_CHUNK 64      /* tokens per chunk */
#define LA_CUDA_THREADS 256   /* threads per block of the chunk kernels */

/* Head dims larger than one block's tile run as sub-problems whose shares of
 * one output are summed in a fixed order (host/backend.cu, the tile loop).
 * The running sum stays in fp32 (la_sum_t), not in the output's dtype: a
 * share can be larger than the total, and rounding each one to bf16 would
 * add its error to the result.  Per summed output two bits of
 * la_fwd_params_t.accum, shifted by LA_SUM_O ... LA_SUM_DV:
 *   LA_SUM_ADD   add the fp32 sum so far to this share
 *   LA_SUM_KEEP  store the result as the fp32 sum, not into the output
 * (first share: KEEP; middle: ADD | KEEP; last: ADD).  d_ld is f32 and
 * takes the shares in place (LA_SUM_DLD_ADD). */
#define LA_SUM_ADD 1
#define LA_SUM_KEEP 2
#define LA_SUM_O 0    /* forward: o */
#define LA_SUM_DQ 2   /* backward: dq, dk, dv */
#define LA_SUM_DK 4
#define LA_SUM_DV 6
#define LA_SUM_DLD_ADD 256
#define LA_SUM_MODE(accum, shift) (((accum) >> (shift)) & 3)

/* An fp32 running sum of one token output [B, H, N, X]: channel stride 1. */
typedef struct la_sum {
    float *ptr;
    int64_t sb, sh, st;
} la_sum_t;

/* One token tensor [B, H, N, X]: base pointer and strides. */
typedef struct la_tok {
    const void *ptr;
    int64_t sb, sh, st, sc;
} la_tok_t;

/* One state tensor [S, H, D, E] (f32). */
typedef struct la_st {
    float *ptr;
    int64_t ss, sh, sd, se;
} la_st_t;

typedef struct la_seginfo {
    /* Non-packed: sequence s = batch row s, every sequence has n_seg segments. */
    int64_t seqlen;          /* N (non-packed) */
    int n_seg;               /* segments per sequence (non-packed) */
    int64_t seg_len;         /* tokens per segment, a multiple of LA_CUDA_CHUNK */
    /* Packed: device arrays. */
    const int64_t *cu;       /* [num_seqs + 1] token offsets, or NULL */
    const int *seg_off;      /* [num_seqs + 1] first global segment of each sequence */
    const int *chunk_off;    /* [num_seqs + 1] first global chunk of each sequence */
    int num_seqs;
    int total_segs;          /* number of segments over all sequences */
} la_seginfo_t;

typedef struct la_fwd_params {
    la_tok_t q, k, v, o;
    int D, E, H;
    float scale;
    int decay;               /* la_decay_t */
    const float *ld;         /* SCALAR_HEAD: ld[h * ld_sh]; SCALAR_TOKEN: [B,H,N] strides below */
    int64_t ld_sb, ld_sh, ld_st;
    la_cuda_error_record_t *check_rec; /* SCALAR_HEAD: check ld[h] where read (inline_checks.cuh); NULL: checked before */
    la_st_t s0;              /* initial state, ptr NULL = zero */
    la_st_t sN;              /* final state, ptr NULL = not wanted */
    la_seginfo_t seg;
    /* Workspace for multi-segment runs: per (global segment, head) a D_PAD x E_PAD
     * fp32 state (local state from the state pass, then the incoming state after
     * the fold) and the segment's total log decay. */
    float *seg_state;
    float *seg_logdecay;
    int ept;                 /* columns of one segment state in seg_state: slices x EP */
    int vec_ok;              /* q, k, v: channel stride 1 and 16-byte aligned rows */
    int prefix;              /* forward: each block walks its sequence from token 0, updating the
                                state alone before its segment (short sequences, no state pass) */
    int accum;               /* LA_SUM_* bits (the backward's too): shares of a sum */
    la_sum_t sum_o;          /* o's running sum (LA_SUM_O) */
} la_fwd_params_t;

/* The backward: the forward's parameters plus the gradients. */
typedef struct la_bwd_params {
    la_fwd_params_t f;       /* q, k, v, decay, s0, one segment per sequence, D, E, H, scale */
    la_tok_t d_o, dq, dk, dv;
    la_sum_t sum_dq, sum_dk, sum_dv; /* running sums (f.accum: LA_SUM_DQ ... DV) */
    int gvec_ok;             /* dq, dk, dv: channel stride 1 and 16-byte aligned rows */
    la_st_t dsN, ds0;        /* incoming final-state gradient, initial-state gradient (NULL = absent) */
    /* Multi-segment runs: per (global segment, head) a DP x f.ept fp32 state
     * gradient: the local one from the reverse state pass, then (after the
     * reverse fold) the gradient arriving at the segment's outgoing state.
     * f.seg_state holds the incoming states from the forward state pass. */
    float *seg_dstate;
    /* The log-decay gradient (learnable decay; docs/CUDA-BACKWARD.md), or
     * want_dld = 0.  Per chunk the kernel writes its local terms, the finish
     * kernels add the terms that cross chunks, all in a fixed order. */
    int want_dld;
    /* f32 inputs with want_dld: 3 runs the decay gradient's products and the
     * state updates on three operand planes (fp32-level terms, mma.cuh
     * mma_x3), 2 on the two planes of every other f32 product (GPUs whose
     * blocks cannot hold the third: A100, sm_120). */
    int dld_planes;
    float *d_ld;             /* SCALAR_HEAD: d_ld[h * dld_sh]; SCALAR_TOKEN: [B, H, N] */
    int64_t dld_sb, dld_sh, dld_st;
    float *dld_tok;          /* [B * H * ntot] role 0's per-token term (SCALAR_TOKEN) */
    float *dld_chunk;        /* [4][H][tc]: col, row, s1, s24 per chunk (see la_dld_finish) */
    float *dld_z0;           /* [S * H] initial-state pairs spanning chunk 0 */
    double *dld_part;        /* [S * H] per-sequence sums (SCALAR_HEAD) */
    int64_t ntot;            /* tokens per (batch row, head) row of dld_tok */
    int64_t tc;              /* chunks over all sequences */
    int nch_seq;             /* chunks per sequence (not packed) */
} la_bwd_params_t;

#endif
