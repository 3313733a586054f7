/* bwd.cu - launcher of the backward kernels (bwd_kernel.cuh), both dtypes. */
#include "bwd_launch.h"
#include "bwd_kernel.cuh"

#include <stdio.h>

int la_cuda_bwd_smem(int DP, int EP) { return bwd_smem_bytes(DP, EP, 2); }

template <typename T, int DP, int EP>
static la_status_t run(const la_bwd_params_t *b, int total, cudaStream_t s, char *msg) {
    const int smem = bwd_smem_bytes(DP, EP, 2);
    cudaError_t err = cudaSuccess;
    if (b->seg_dstate) { /* reverse state pass (zero without d_o), then the reverse fold */
        err = cudaFuncSetAttribute(la_bwd_kernel<T, DP, EP, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
        if (err == cudaSuccess) {
            la_bwd_kernel<T, DP, EP, true><<<dim3(total, b->f.H, 1), LA_CUDA_THREADS, smem, s>>>(*b);
            err = cudaGetLastError();
        }
        if (err == cudaSuccess) {
            const int per_state = (DP * b->f.ept + 255) / 256;
            la_rfold_kernel<DP><<<dim3(b->f.seg.num_seqs * per_state, b->f.H), 256, 0, s>>>(*b, per_state);
            err = cudaGetLastError();
        }
    }
    if (err == cudaSuccess)
        err = cudaFuncSetAttribute(la_bwd_kernel<T, DP, EP, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (err == cudaSuccess) {
        /* Two roles (dQ; dK, dV), or role 1 alone for the state-only backward. */
        la_bwd_kernel<T, DP, EP, false><<<dim3(total, b->f.H, b->d_o.ptr ? 2 : 1), LA_CUDA_THREADS, smem, s>>>(*b);
        err = cudaGetLastError();
    }
    if (err != cudaSuccess) {
        snprintf(msg, LA_MSG_LEN, "backward launch failed: %s", cudaGetErrorString(err));
        return LA_STATUS_EXECUTION_FAILED;
    }
    return LA_STATUS_SUCCESS;
}

template <typename T>
static la_status_t dims(const la_bwd_params_t *b, int DP, int EP, int total, cudaStream_t s, char *msg) {
    if (DP == 64 && EP == 64) return run<T, 64, 64>(b, total, s, msg);
    if (DP == 64) return run<T, 64, 128>(b, total, s, msg);
    if (EP == 64) return run<T, 128, 64>(b, total, s, msg);
    return run<T, 128, 128>(b, total, s, msg);
}

la_status_t la_cuda_bwd(const struct la_bwd_params *b, int DP, int EP, int total, int bf16, cudaStream_t s, char *msg) {
    return bf16 ? dims<__nv_bfloat16>(b, DP, EP, total, s, msg) : dims<__half>(b, DP, EP, total, s, msg);
}
