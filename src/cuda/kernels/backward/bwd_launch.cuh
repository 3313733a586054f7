/* bwd_launch.cuh - the backward launch sequence, instantiated once per dtype
 * (bwd_bf16.cu, bwd_f16.cu, bwd_f32.cu, so they build in parallel). */
#ifndef LA_CUDA_BWD_LAUNCH_CUH
#define LA_CUDA_BWD_LAUNCH_CUH

#include "bwd_launch.h"
#include "smem_opt_in.h"
#include "bwd_kernel.cuh"

#include <stdio.h>

template <typename T, int DP, int EP, bool DSTATE_ONLY, bool DLD, int STAGES, int NP = op_planes<T>::value>
static cudaError_t bwd_launch(const la_bwd_params_t *b, int total, int roles, cudaStream_t s) {
    const int smem = bwd_smem_bytes(DP, EP, (int)sizeof(typename op_of<T>::type) * NP, DLD, STAGES);
    auto k = la_bwd_kernel<T, DP, EP, DSTATE_ONLY, DLD, STAGES, NP>;
    cudaError_t err = la_cuda_opt_in_smem((const void *)k, smem);
    if (err != cudaSuccess) return err;
    k<<<dim3(total, b->f.H, roles), LA_CUDA_THREADS, smem, s>>>(*b);
    return cudaGetLastError();
}

/* The decay gradient's block on three operand planes (dld_planes = 3, which
 * the host sets for f32 alone, whose tiles are 64 x 64): fp32-level terms. */
template <typename T, int DP, int EP>
static cudaError_t bwd_launch_dld3(const la_bwd_params_t *b, int total, int roles, cudaStream_t s) {
    if constexpr (op_of<T>::split && DP == 64 && EP == 64) return bwd_launch<T, DP, EP, false, true, 1, 3>(b, total, roles, s);
    else return cudaErrorInvalidValue;
}

template <typename T, int DP, int EP>
static la_status_t bwd_run(const la_bwd_params_t *b, const la_bwd_launch_t *l, cudaStream_t s, cudaEvent_t join,
                           char *msg) {
    const int stages = l->stages, total = l->total;
    cudaError_t err = cudaSuccess;
    if (b->seg_dstate) { /* reverse state pass (zero without d_o), then the reverse fold */
        err = stages == 2 ? bwd_launch<T, DP, EP, true, false, 2>(b, total, 1, s)
                          : bwd_launch<T, DP, EP, true, false, 1>(b, total, 1, s);
        /* The reverse fold reads the segments' total log decays, which
         * the forward state pass writes. */
        if (err == cudaSuccess && join) err = cudaStreamWaitEvent(s, join, 0);
        if (err == cudaSuccess) {
            const int per_state = (DP * b->f.ept + 255) / 256;
            la_rfold_kernel<DP><<<dim3(b->f.seg.num_seqs * per_state, b->f.H), 256, 0, s>>>(*b, per_state);
            err = cudaGetLastError();
        }
    }
    /* Two roles (dQ; dK, dV), or role 1 alone for the state-only backward. */
    const int roles = b->d_o.ptr ? 2 : 1;
#ifdef LA_HAVE_SM90A
    if constexpr (DP == 64 && EP == 64 && sizeof(T) == 2) {
        if (err == cudaSuccess && l->wgmma) return la_cuda_bwd_wg(b, l, la_is_bf16<T>::value, s, msg);
    }
#endif
    if (err == cudaSuccess) {
        if (b->want_dld && b->dld_planes == 3) err = bwd_launch_dld3<T, DP, EP>(b, total, roles, s);
        else if (b->want_dld) err = bwd_launch<T, DP, EP, false, true, 1>(b, total, roles, s);
        else if (stages == 2) err = bwd_launch<T, DP, EP, false, false, 2>(b, total, roles, s);
        else err = bwd_launch<T, DP, EP, false, false, 1>(b, total, roles, s);
    }
    if (err == cudaSuccess && b->want_dld) err = la_cuda_dld_finish(b, s);
    if (err != cudaSuccess) {
        snprintf(msg, LA_MSG_LEN, "backward launch failed: %s", cudaGetErrorString(err));
        return LA_STATUS_EXECUTION_FAILED;
    }
    return LA_STATUS_SUCCESS;
}

template <typename T>
static la_status_t bwd_dims(const la_bwd_params_t *b, const la_bwd_launch_t *l, cudaStream_t s, cudaEvent_t join,
                            char *msg) {
    if (l->DP == 64 && l->EP == 64) return bwd_run<T, 64, 64>(b, l, s, join, msg);
    if (l->DP == 64) return bwd_run<T, 64, 128>(b, l, s, join, msg);
    if (l->EP == 64) return bwd_run<T, 128, 64>(b, l, s, join, msg);
    return bwd_run<T, 128, 128>(b, l, s, join, msg);
}

#endif
