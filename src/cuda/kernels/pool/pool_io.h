/* pool_io.h - the served forms of a forward: states moved between a pool
 * (by slot) and dense [S, H, D, E] f32 states in the workspace, so that the
 * forward kernels serve a pooled call unchanged (pool_io.cu), and the
 * checkpoints beside it (checkpoints.cu). */
#ifndef LA_CUDA_POOL_IO_H
#define LA_CUDA_POOL_IO_H

#include "internal.h"
#include "kernel_params.h"
#include "slot_checks.cuh"
#include "checkpoint_kernel.cuh"
#include <cuda_runtime.h>

typedef struct la_pool_io {
    void *pool; /* [num_slots, H, D, E] f32 or bf16 */
    int bf16;
    int64_t ss, sh, sd, se;
    la_slots_t slots;
    float *dense; /* [S, H, D, E] contiguous */
    int64_t H, D, E;
} la_pool_io_t;

/* dense[s] = pool[the slot s starts from], zeros for fresh and padding
 * sequences and for a slot outside the pool. */
la_status_t la_cuda_pool_gather(const la_pool_io_t *p, cudaStream_t stream, char *msg);
/* pool[s's write slot] = dense[s] where there is one (in range, not padding). */
la_status_t la_cuda_pool_scatter(const la_pool_io_t *p, cudaStream_t stream, char *msg);
/* o = 0 over the tokens of every padding sequence: [B, H, N, E] rows of
 * batch row s, or tokens [cu[s], cu[s + 1]) of the packed row (cu: device
 * offsets, already checked and clamped; NULL when not packed). */
la_status_t la_cuda_zero_padding(const la_slots_t *slots, la_tok_t o, la_dtype_t dtype, int64_t H, int64_t N,
                                 int64_t E, const int64_t *cu, cudaStream_t stream, char *msg);

/* The checkpoint kernel over p->S sequences x H heads (checkpoint_kernel.cuh);
 * io: k and v's dtype, ckpt: the checkpoints' (f32 or bf16). */
la_status_t la_cuda_checkpoints(const la_ckpt_params_t *p, la_dtype_t io, la_dtype_t ckpt, cudaStream_t stream,
                                char *msg);

#endif
