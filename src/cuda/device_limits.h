/* device_limits.h - the current device's shared-memory limits as every plan
 * and launcher of the CUDA backend sees them (cuda_backend.cu).
 *
 * LA_CUDA_SMEM_KB=<n> in the environment lowers them to n KB per block and
 * n + 1 KB per SM, so a larger GPU plans as a smaller one would: with 99,
 * an H200 picks consumer Blackwell's (sm_120) head-dim tiles, stages and
 * kernels, which the GPU tests run there (tests/gpu/run). */
#ifndef LA_CUDA_DEVICE_LIMITS_H
#define LA_CUDA_DEVICE_LIMITS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Largest dynamic shared memory one block may opt in to. */
int la_cuda_smem_optin(void);
/* Shared memory of one SM. */
int la_cuda_smem_per_sm(void);

#ifdef __cplusplus
}
#endif

#endif
