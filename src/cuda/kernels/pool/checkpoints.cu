/* checkpoints.cu - launcher of the checkpoint kernel (checkpoint_kernel.cuh). */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "checkpoint_kernel.cuh"
#include "pool_io.h"

#include <stdio.h>

template <typename T, typename CV>
static void launch(const la_ckpt_params_t *p, cudaStream_t stream) {
    const int threads = p->E <= 32 ? 32 : (p->E + 31) / 32 * 32;
    const dim3 grid((unsigned)(p->S * p->H), (unsigned)((p->D + LA_CKPT_ROWS - 1) / LA_CKPT_ROWS));
    la_ckpt_kernel<T, CV><<<grid, threads, LA_CKPT_SMEM(threads), stream>>>(*p);
}

template <typename T>
static void launch_out(const la_ckpt_params_t *p, la_dtype_t ckpt, cudaStream_t stream) {
    if (ckpt == LA_DTYPE_BF16) launch<T, __nv_bfloat16>(p, stream);
    else launch<T, float>(p, stream);
}

la_status_t la_cuda_checkpoints(const la_ckpt_params_t *p, la_dtype_t io, la_dtype_t ckpt, cudaStream_t stream,
                                char *msg) {
    if (p->S == 0) return LA_STATUS_SUCCESS;
    switch (io) {
    case LA_DTYPE_BF16: launch_out<__nv_bfloat16>(p, ckpt, stream); break;
    case LA_DTYPE_F16: launch_out<__half>(p, ckpt, stream); break;
    default: launch_out<float>(p, ckpt, stream); break;
    }
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) {
        snprintf(msg, LA_MSG_LEN, "checkpoint launch failed: %s", cudaGetErrorString(err));
        return LA_STATUS_EXECUTION_FAILED;
    }
    return LA_STATUS_SUCCESS;
}
