/* vec_params.h - what the host passes to the vector-decay chunk kernel
 * (vec_fwd_kernel.cuh): per-token, per-channel log decays on the keys
 * (VECTOR_K, GLA) and optionally on the values (VECTOR_KV).  All strides in
 * elements. */
#ifndef LA_CUDA_VEC_PARAMS_H
#define LA_CUDA_VEC_PARAMS_H

#include "kernel_params.h"

#define LA_VEC_CHUNK 16   /* tokens per chunk: one thread per (query, key) pair of a chunk */
#define LA_VEC_EV 32      /* value columns per block */
#define LA_VEC_THREADS 256

typedef struct la_vec_params {
    la_tok_t q, k, v, o;  /* q.ptr and o.ptr NULL: the state-only pass */
    const float *gk;      /* [B, H, N, D] key-side log decays */
    int64_t gk_sb, gk_sh, gk_st, gk_sc;
    const float *gv;      /* [B, H, N, E] value-side log decays, NULL for VECTOR_K */
    int64_t gv_sb, gv_sh, gv_st, gv_sc;
    la_st_t s0, sN;       /* initial state (NULL: zero), final state (NULL: not wanted) */
    int D, E, H;
    float scale;
    int64_t seqlen;       /* tokens per batch row */
    const int64_t *cu;    /* packed: [num_seqs + 1] checked offsets in device memory, else NULL */
} la_vec_params_t;

/* Dynamic shared memory of the kernel for head dim D. */
static inline int la_vec_fwd_smem(int D) {
    const int C = LA_VEC_CHUNK, EV = LA_VEC_EV;
    return (int)sizeof(float) * (D * EV            /* the state slice */
                                 + 3 * C * (D + 1) /* q, k, exp(gk) of a chunk, odd row pitch */
                                 + D               /* the chunk's whole key decay */
                                 + 4 * C * EV      /* v, exp(gv), decayed v, exp(Gv) */
                                 + EV              /* the chunk's whole value decay */
                                 + C * C);         /* intra-chunk scores */
}

#endif
