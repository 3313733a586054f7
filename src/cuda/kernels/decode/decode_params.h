/* decode_params.h - what the decode launcher (decode.cu) passes to the
 * decode kernel (decode_kernel.cuh). */
#ifndef LA_CUDA_DECODE_PARAMS_H
#define LA_CUDA_DECODE_PARAMS_H

#include "kernel_params.h"
#include "slot_checks.cuh"

/* Most new tokens per sequence one decode call takes on the GPU: a block
 * keeps one output accumulator per token in registers, and q, k and the
 * decays of every token in shared memory (3 T D floats). */
#define LA_CUDA_DECODE_MAX_T 16

typedef struct la_decode_params {
    la_tok_t q, k, v, o; /* [B, H, T, *]: token stride st */
    int D, E, H, T, decay;
    float scale;
    const float *ld, *ldv; /* [B, H, T, *] by kind (SCALAR_HEAD: [H]) */
    int64_t ld_sb, ld_sh, ld_st, ld_sc, ldv_sb, ldv_sh, ldv_st, ldv_sc;
    la_cuda_error_record_t *check_rec; /* per-head decays checked as read (inline_checks.cuh), or NULL */
    /* Dense states (pool == NULL): s0 -> sN, sequence b's at row b. */
    la_st_t s0, sN;
    /* A pool: rows by slot, f32 or bf16 by the kernel's state type. */
    void *pool;
    int64_t pool_ss, pool_sh, pool_sd, pool_se;
    la_slots_t slots;
    la_cuda_error_record_t *slot_rec; /* slot faults recorded by the kernel (deferred checks), or NULL */
} la_decode_params_t;

#endif
