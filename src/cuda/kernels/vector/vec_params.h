/* vec_params.h - what the host passes to the vector-decay chunk kernel
 * (vec_fwd_kernel.cuh): per-token, per-channel log decays on the keys
 * (VECTOR_K, GLA) and optionally on the values (VECTOR_KV).  All strides in
 * elements.
 *
 * The kernel is one recurrence, S_u = diag(a_u) S_{u-1} diag(b_u) + kscale
 * k_u^T v_u, o_u = scale q_u S_u, walked forwards or backwards in time;
 * the backward of the vector kinds is that recurrence on transposed and
 * time-reversed operands (vec_bwd.h), hence the options below. */
#ifndef LA_CUDA_VEC_PARAMS_H
#define LA_CUDA_VEC_PARAMS_H

#include "kernel_params.h"

#define LA_VEC_CHUNK 16   /* tokens per chunk: one thread per (query, key) pair of a chunk */
#define LA_VEC_EV 32      /* value columns per block */
#define LA_VEC_THREADS 256

/* Four strides, by value in a kernel's arguments. */
typedef struct la_vec_strides {
    int64_t s[4];
} la_vec_strides_t;

typedef struct la_vec_params {
    la_tok_t q, k, v, o;  /* o.ptr NULL: o not stored (a term may still be); q.ptr, o.ptr and term all
                             NULL: the state alone; k.ptr or v.ptr NULL: no k^T v term */
    float kscale;         /* k's factor (1 in the forward) */
    int reverse;          /* walk from the last token to the first; step t takes token t + 1's decays
                             (none at the last token), and the final state is decayed once more by the
                             first token's: the gradient of the state before the sequence */
    const float *gk;      /* [B, H, N, D] key-side log decays, NULL for none */
    int64_t gk_sb, gk_sh, gk_st, gk_sc;
    const float *gv;      /* [B, H, N, E] value-side log decays, NULL for VECTOR_K */
    int64_t gv_sb, gv_sh, gv_st, gv_sc;
    la_st_t s0, sN;       /* initial state (NULL: zero), final state (NULL: not wanted) */
    int D, E, H;
    float scale;
    int64_t seqlen;       /* tokens per batch row */
    const int64_t *cu;    /* packed: [num_seqs + 1] checked offsets in device memory, else NULL */
    /* A sequence split (the tensor-core kernel, walks of batch rows, cu NULL): nseg > 1 cuts
     * each row into nseg segments of seg_len tokens (the last one shorter); block x walks
     * segment x % nseg of row x / nseg, and s0, sN, seg_tot and seg_sum index segments by x.
     * A reverse walk's segment takes the decays of the token after it; only the row's first
     * segment steps back by its first token's decays (and counts them in its totals). */
    int64_t seg_len;
    int nseg;
    float *seg_tot_k, *seg_tot_v; /* NULL, or [segments, H, D] / [segments, H, E]: each segment's
                                     summed row / column log decays */
    double *seg_sum;      /* a split walk with term_mode 2: NULL, or [segments, H, E]: each segment's running
                             sums at its walk's end (from zero; the runner adds the offsets) */
    int nstage;           /* the tensor-core kernel's input stages in flight (2 or 3), set by its launcher */
    int sms;              /* the device's SMs (0: not known): the tensor-core kernel takes blocks of 64 value
                             columns where 128-column blocks would leave more than half of them idle */
    int warp_roles;       /* the warp-role recurrence (vec_ws_kernel.cuh) where it applies: 128-column
                             blocks whose shared memory fits */
    /* A decay gradient's share (vec_bwd.h): term, f32 [B, H, N, output columns], NULL for none.
     *   term_mode 1: term_t = out_t . mul_t (out: what o_t would be, o.ptr NULL or not);
     *   term_mode 2: walking, term_t = F + sum over the steps so far, this one included, of
     *                (term_t as it was read, where term_in) - mul_t . out_t, summed in double,
     *                with F = sum over state rows r of fin_a[r, c] fin_b[r, c] (fin_a.ptr NULL: 0). */
    float *term;
    int64_t term_sb, term_sh, term_st, term_sc;
    int term_mode, term_in;
    la_tok_t mul;
    la_st_t fin_a, fin_b;
} la_vec_params_t;

/* Dynamic shared memory of the kernel for head dim D. */
static inline int la_vec_fwd_smem(int D) {
    const int C = LA_VEC_CHUNK, EV = LA_VEC_EV;
    return (int)sizeof(float) * (D * EV            /* the state slice */
                                 + 3 * C * (D + 1) /* q, k, exp(gk) of a chunk, odd row pitch */
                                 + D               /* the chunk's whole key decay */
                                 + 4 * C * EV      /* v, exp(gv), decayed v, exp(Gv) */
                                 + EV              /* the chunk's whole value decay */
                                 + C * C           /* intra-chunk scores */
                                 + C * EV          /* the chunk's outputs (a running sum's terms) */
                                 + 2)              /* alignment for the sums */
           + (int)sizeof(double) * EV;             /* each column's running sum */
}

#endif
