/*
 * fwd_launch.cuh - the templated launcher behind fwd_bf16.cu / fwd_f16.cu:
 * picks the kernel instance for (dtype, padded dims, stages) and launches
 * state pass, fold and output pass in stream order.
 */
#ifndef LA_CUDA_FWD_LAUNCH_CUH
#define LA_CUDA_FWD_LAUNCH_CUH

#include "fwd_launch.h"
#include "fwd_kernel.cuh"

#include <stdio.h>

#define LA_LAUNCH_TRY(call)                                                                     \
    do {                                                                                        \
        cudaError_t err_ = (call);                                                              \
        if (err_ != cudaSuccess) {                                                              \
            snprintf(msg, LA_MSG_LEN, "%s: %s", #call, cudaGetErrorString(err_));               \
            return LA_STATUS_EXECUTION_FAILED;                                                  \
        }                                                                                       \
    } while (0)

template <typename T, int DP, int EP, int STAGES>
static la_status_t la_fwd_run(const la_fwd_params_t &p, const la_fwd_launch_t &l, cudaStream_t stream, char *msg) {
    const int smem = fwd_smem_bytes(DP, EP, 2, STAGES);
    const dim3 grid(l.total_segs, p.H, (p.E + EP - 1) / EP);
    if (l.state_pass) {
        /* Segment states reach the caller only through the final state. */
        auto k = p.sN.ptr ? la_fwd_chunk_kernel<T, DP, EP, true, STAGES, true>
                          : la_fwd_chunk_kernel<T, DP, EP, true, STAGES, false>;
        LA_LAUNCH_TRY(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
        k<<<grid, LA_CUDA_THREADS, smem, stream>>>(p);
        LA_LAUNCH_TRY(cudaGetLastError());
        const int per_state = (DP * p.ept + 255) / 256;
        la_fold_kernel<DP><<<dim3(l.num_seqs * per_state, p.H), 256, 0, stream>>>(p, per_state);
        LA_LAUNCH_TRY(cudaGetLastError());
    }
    if (l.main_pass) {
        /* The output pass writes the final state without a state pass (one
         * segment per sequence, or the last segment's block in prefix mode;
         * else the fold does); without it, o alone needs no fp32-level state. */
        const bool precise = p.sN.ptr != nullptr && !l.state_pass;
        auto k = precise ? la_fwd_chunk_kernel<T, DP, EP, false, STAGES, true>
                         : la_fwd_chunk_kernel<T, DP, EP, false, STAGES, false>;
        LA_LAUNCH_TRY(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
        k<<<grid, LA_CUDA_THREADS, smem, stream>>>(p);
        LA_LAUNCH_TRY(cudaGetLastError());
    }
    return LA_STATUS_SUCCESS;
}

template <typename T, int STAGES>
static la_status_t la_fwd_dims(const la_fwd_params_t &p, const la_fwd_launch_t &l, cudaStream_t s, char *msg) {
    if (l.eslice == LA_CUDA_ESLICE_LARGE) {
        if (l.DP == 64) return la_fwd_run<T, 64, LA_CUDA_ESLICE_LARGE, STAGES>(p, l, s, msg);
        return la_fwd_run<T, 128, LA_CUDA_ESLICE_LARGE, STAGES>(p, l, s, msg);
    }
    if (l.DP == 64) return la_fwd_run<T, 64, LA_CUDA_ESLICE_SMALL, STAGES>(p, l, s, msg);
    if (l.DP == 256) return la_fwd_run<T, 256, LA_CUDA_ESLICE_SMALL, STAGES>(p, l, s, msg);
    return la_fwd_run<T, 128, LA_CUDA_ESLICE_SMALL, STAGES>(p, l, s, msg);
}

template <typename T>
static la_status_t la_fwd_dispatch(const la_fwd_params_t *p, const la_fwd_launch_t *l, cudaStream_t s, char *msg) {
    return l->stages == 2 ? la_fwd_dims<T, 2>(*p, *l, s, msg) : la_fwd_dims<T, 1>(*p, *l, s, msg);
}

#endif
