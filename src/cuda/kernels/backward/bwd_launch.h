/* bwd_launch.h - host entry of the backward kernels (bwd_bf16.cu, bwd_f16.cu, bwd_f32.cu). */
#ifndef LA_CUDA_BWD_LAUNCH_H
#define LA_CUDA_BWD_LAUNCH_H

#include "internal.h"
#include "kernel_params.h"
#include <cuda_runtime.h>

/* What the plan (host/plan.cu) chose for the backward: padded head dims
 * (64 or 128), the grid's segments, tile stages (1 or 2; 1 with the decay
 * gradient), the Hopper main pass (wgmma: D = E = 64, bf16 or f16, a full
 * backward without the decay gradient, tensors TMA describes), and the
 * token tensors' batch rows and tokens per row (its TMA maps). */
typedef struct la_bwd_launch {
    int DP, EP, total, stages, wgmma;
    int64_t rows, row_tokens;
} la_bwd_launch_t;

/* One block per (segment, head) and role.  With b->want_dld the log-decay
 * gradient's finish kernels follow.  join: an event the reverse fold (and all
 * after it) waits for, the forward state pass that runs on another stream
 * beside the reverse one; or NULL. */
la_status_t la_cuda_bwd_bf16(const la_bwd_params_t *b, const la_bwd_launch_t *l, cudaStream_t s, cudaEvent_t join,
                             char *msg);
la_status_t la_cuda_bwd_f16(const la_bwd_params_t *b, const la_bwd_launch_t *l, cudaStream_t s, cudaEvent_t join,
                            char *msg);
/* f32 inputs (split operands): DP = EP = 64 only; the plan runs larger head
 * dims as 64 x 64 tiles. */
la_status_t la_cuda_bwd_f32(const la_bwd_params_t *b, const la_bwd_launch_t *l, cudaStream_t s, cudaEvent_t join,
                            char *msg);
/* The decay gradient's finish kernels (after the backward kernel). */
cudaError_t la_cuda_dld_finish(const la_bwd_params_t *b, cudaStream_t s);
/* Shared memory of one backward block (elem: bytes of an operand element,
 * the input dtype's size or 6 for f32's three planes; dld: with the decay
 * gradient; stages: 1 or 2). */
int la_cuda_bwd_smem(int DP, int EP, int elem, int dld, int stages);
/* Blocks per SM the backward kernel is built for (its launch bounds). */
int la_cuda_bwd_blocks_per_sm(int DP, int EP, int elem);

#ifdef LA_HAVE_SM90A
/* The Hopper backward's main pass (bf16: 1, f16: 0), where the plan chose it. */
la_status_t la_cuda_bwd_wg(const la_bwd_params_t *b, const la_bwd_launch_t *l, int bf16, cudaStream_t s, char *msg);
int la_cuda_bwd_wg_smem(void);
#endif

#endif
