/* bwd_launch.h - host entry of the backward kernels (bwd.cu). */
#ifndef LA_CUDA_BWD_LAUNCH_H
#define LA_CUDA_BWD_LAUNCH_H

#include "internal.h"
#include "kernel_params.h"
#include <cuda_runtime.h>

/* One block per (sequence, head) and role; DP, EP: padded head dims (64 or 128). */
la_status_t la_cuda_bwd(const struct la_bwd_params *b, int DP, int EP, int total_segs, int bf16, cudaStream_t s,
                        char *msg);
int la_cuda_bwd_smem(int DP, int EP);

#endif
