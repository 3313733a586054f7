/* bwd_launch.cuh - the backward launch sequence, instantiated once per dtype
 * (bwd_bf16.cu, bwd_f16.cu, so the two build in parallel). */
#ifndef LA_CUDA_BWD_LAUNCH_CUH
#define LA_CUDA_BWD_LAUNCH_CUH

#include "bwd_launch.h"
#include "bwd_kernel.cuh"

#include <stdio.h>

template <typename T, int DP, int EP, bool DLD>
static cudaError_t bwd_main(const la_bwd_params_t *b, int total, cudaStream_t s) {
    const int smem = bwd_smem_bytes(DP, EP, 2, DLD);
    cudaError_t err =
        cudaFuncSetAttribute(la_bwd_kernel<T, DP, EP, false, DLD>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (err != cudaSuccess) return err;
    /* Two roles (dQ; dK, dV), or role 1 alone for the state-only backward. */
    la_bwd_kernel<T, DP, EP, false, DLD><<<dim3(total, b->f.H, b->d_o.ptr ? 2 : 1), LA_CUDA_THREADS, smem, s>>>(*b);
    return cudaGetLastError();
}

template <typename T, int DP, int EP>
static la_status_t bwd_run(const la_bwd_params_t *b, int total, cudaStream_t s, char *msg) {
    const int smem = bwd_smem_bytes(DP, EP, 2, false);
    cudaError_t err = cudaSuccess;
    if (b->seg_dstate) { /* reverse state pass (zero without d_o), then the reverse fold */
        err = cudaFuncSetAttribute(la_bwd_kernel<T, DP, EP, true, false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   smem);
        if (err == cudaSuccess) {
            la_bwd_kernel<T, DP, EP, true, false><<<dim3(total, b->f.H, 1), LA_CUDA_THREADS, smem, s>>>(*b);
            err = cudaGetLastError();
        }
        if (err == cudaSuccess) {
            const int per_state = (DP * b->f.ept + 255) / 256;
            la_rfold_kernel<DP><<<dim3(b->f.seg.num_seqs * per_state, b->f.H), 256, 0, s>>>(*b, per_state);
            err = cudaGetLastError();
        }
    }
    if (err == cudaSuccess) err = b->want_dld ? bwd_main<T, DP, EP, true>(b, total, s) : bwd_main<T, DP, EP, false>(b, total, s);
    if (err == cudaSuccess && b->want_dld) {
        err = la_cuda_dld_finish(b, s);
    }
    if (err != cudaSuccess) {
        snprintf(msg, LA_MSG_LEN, "backward launch failed: %s", cudaGetErrorString(err));
        return LA_STATUS_EXECUTION_FAILED;
    }
    return LA_STATUS_SUCCESS;
}

template <typename T>
static la_status_t bwd_dims(const la_bwd_params_t *b, int DP, int EP, int total, cudaStream_t s, char *msg) {
    if (DP == 64 && EP == 64) return bwd_run<T, 64, 64>(b, total, s, msg);
    if (DP == 64) return bwd_run<T, 64, 128>(b, total, s, msg);
    if (EP == 64) return bwd_run<T, 128, 64>(b, total, s, msg);
    return bwd_run<T, 128, 128>(b, total, s, msg);
}

#endif
