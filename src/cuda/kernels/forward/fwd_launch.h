/*
 * fwd_launch.h - host entry points of the forward kernels, one translation
 * unit per input dtype; they launch what the plan (host/plan.cu) chose (fwd_bf16.cu, fwd_f16.cu, fwd_f32.cu) so they build
 * in parallel.
 */
#ifndef LA_CUDA_FWD_LAUNCH_H
#define LA_CUDA_FWD_LAUNCH_H

#include "internal.h"
#include "kernel_params.h"
#include <cuda_runtime.h>

/* Value columns per block: E is cut into slices of 64 or 128 columns. */
#define LA_CUDA_ESLICE_SMALL 64
#define LA_CUDA_ESLICE_LARGE 128

typedef struct la_fwd_launch {
    int DP;              /* padded key dim: 64 or 128 */
    int eslice;          /* value columns per block: 64 (two blocks per SM) or 128 (one) */
    int stages;          /* output pass: 2 where shared memory allows, else 1 */
    int state_stages;    /* state pass without a final state: 4 where shared memory allows, else 2 */
    int total_segs, num_seqs;
    int state_pass;      /* run the state pass and the fold first */
    int main_pass;       /* run the output pass (0 for the state-only operation) */
    int rows_stages;     /* output pass on the rows kernel with 2 or 4 stages (D, E <= 64,
                            bf16/f16), or 0: the general kernel */
    int ws;              /* output pass on the warp-role kernel (where the rows kernel would
                            run, vectorisable tensors, no summed shares), or 0 */
    int state_wg;        /* state pass on the Hopper kernel (state_wg.cu: sm_90a builds on a
                            compute capability 9.0 device, bf16/f16, DP = 128, 128-column
                            slices, k and v TMA can describe), or 0 */
    int wgmma;           /* both passes on the Hopper forward (fwd_wg.cu), or 0 */
    int64_t rows, row_tokens; /* the token tensors' batch rows (1 packed) and tokens per row */
} la_fwd_launch_t;

la_status_t la_cuda_fwd_bf16(const la_fwd_params_t *p, const la_fwd_launch_t *l, cudaStream_t s, char *msg);
la_status_t la_cuda_fwd_f16(const la_fwd_params_t *p, const la_fwd_launch_t *l, cudaStream_t s, char *msg);
/* f32 inputs (operands split into bf16 planes): DP = 64 and 64-column
 * slices only; larger head dims run as 64 x 64 head-dim tiles. */
la_status_t la_cuda_fwd_f32(const la_fwd_params_t *p, const la_fwd_launch_t *l, cudaStream_t s, char *msg);
/* Bytes of shared memory the forward kernel takes for this configuration
 * (elem: the input dtype's size; state_only: the state pass). */
int la_cuda_fwd_smem(int DP, int eslice, int elem, int stages, int state_only);
/* Bytes of shared memory the rows kernel takes with this many stages. */
int la_cuda_fwd_rows_smem(int stages);
/* ... and the warp-role kernel. */
int la_cuda_fwd_ws_smem(void);

#ifdef LA_HAVE_SM90A
/* The Hopper forward (fwd_wg.cu, sm_90a only): 64-column value slices, DP 64
 * or 128, vectorisable token tensors; l->stages is 2, l->state_stages 2 or 4. */
la_status_t la_cuda_fwd_wg_bf16(const la_fwd_params_t *p, const la_fwd_launch_t *l, cudaStream_t s, char *msg);
la_status_t la_cuda_fwd_wg_f16(const la_fwd_params_t *p, const la_fwd_launch_t *l, cudaStream_t s, char *msg);
int la_cuda_fwd_wg_smem(int DP, int stages, int state_only);
int la_cuda_fwd_wg_blocks_per_sm(int DP);
/* The Hopper state pass and its fold (bf16: 1, f16: 0), where the plan chose
 * it (l->state_wg: TMA describes k and v). */
la_status_t la_cuda_state_wg(const la_fwd_params_t *p, const la_fwd_launch_t *l, int bf16, cudaStream_t s, char *msg);
int la_cuda_state_wg_smem(void);
#endif

#endif
