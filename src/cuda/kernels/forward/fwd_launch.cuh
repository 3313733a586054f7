/*
 * fwd_launch.cuh - the templated launcher behind fwd_bf16.cu, fwd_f16.cu, fwd_f32.cu:
 * picks the kernel instance for (dtype, padded dims, stages) and launches
 * state pass, fold and output pass in stream order.
 */
#ifndef LA_CUDA_FWD_LAUNCH_CUH
#define LA_CUDA_FWD_LAUNCH_CUH

#include "fwd_launch.h"
#include "smem_opt_in.h"
#include "fwd_kernel.cuh"
#include "fwd_rows_kernel.cuh"
#include "fwd_ws_kernel.cuh"

#include <stdio.h>

#define LA_LAUNCH_TRY(call)                                                                     \
    do {                                                                                        \
        cudaError_t err_ = (call);                                                              \
        if (err_ != cudaSuccess) {                                                              \
            snprintf(msg, LA_MSG_LEN, "%s: %s", #call, cudaGetErrorString(err_));               \
            return LA_STATUS_EXECUTION_FAILED;                                                  \
        }                                                                                       \
    } while (0)

/* The state pass and fold: every segment's local state, then the states
 * at segment boundaries (and the final state) in order. */
template <typename T, int DP, int EP, int STAGES, bool PRECISE>
static la_status_t la_fwd_state_run(const la_fwd_params_t &p, const la_fwd_launch_t &l, cudaStream_t stream,
                                    char *msg) {
    const int smem = fwd_smem_bytes(DP, EP, sizeof(T), STAGES, true);
    const dim3 grid(l.total_segs, p.H, (p.E + EP - 1) / EP);
    auto k = la_fwd_chunk_kernel<T, DP, EP, true, STAGES, PRECISE>;
    LA_LAUNCH_TRY(la_cuda_opt_in_smem((const void *)k, smem));
    k<<<grid, LA_CUDA_THREADS, smem, stream>>>(p);
    LA_LAUNCH_TRY(cudaGetLastError());
    const int per_state = (DP * p.ept + 255) / 256;
    la_fold_kernel<DP><<<dim3(l.num_seqs * per_state, p.H), 256, 0, stream>>>(p, per_state);
    LA_LAUNCH_TRY(cudaGetLastError());
    return LA_STATUS_SUCCESS;
}

/* The output pass. */
template <typename T, int DP, int EP, int STAGES>
static la_status_t la_fwd_out_run(const la_fwd_params_t &p, const la_fwd_launch_t &l, cudaStream_t stream,
                                  char *msg) {
    const int smem = fwd_smem_bytes(DP, EP, sizeof(T), STAGES, false);
    const dim3 grid(l.total_segs, p.H, (p.E + EP - 1) / EP);
    /* The output pass writes the final state without a state pass (one
     * segment per sequence, or the last segment's block in prefix mode;
     * else the fold does); without it, o alone needs no fp32-level state. */
    const bool precise = p.sN.ptr != nullptr && !l.state_pass;
    auto k = precise ? la_fwd_chunk_kernel<T, DP, EP, false, STAGES, true>
                     : la_fwd_chunk_kernel<T, DP, EP, false, STAGES, false>;
    LA_LAUNCH_TRY(la_cuda_opt_in_smem((const void *)k, smem));
    k<<<grid, LA_CUDA_THREADS, smem, stream>>>(p);
    LA_LAUNCH_TRY(cudaGetLastError());
    return LA_STATUS_SUCCESS;
}

/* The output pass on the rows kernel (D, E <= 64, bf16 and f16). */
template <typename T, int STAGES>
static la_status_t la_fwd_rows_run(const la_fwd_params_t &p, const la_fwd_launch_t &l, cudaStream_t stream,
                                   char *msg) {
    const int smem = rows_smem_bytes(STAGES);
    const dim3 grid(l.total_segs, p.H, (p.E + LA_ROWS_COLS - 1) / LA_ROWS_COLS);
    const bool precise = p.sN.ptr != nullptr && !l.state_pass; /* as la_fwd_out_run */
    const bool share = LA_SUM_MODE(p.accum, LA_SUM_O) != 0;   /* a head-dim tile's share of o */
    auto k = precise ? (share ? la_fwd_rows_kernel<T, STAGES, true, true> : la_fwd_rows_kernel<T, STAGES, true, false>)
                     : (share ? la_fwd_rows_kernel<T, STAGES, false, true> : la_fwd_rows_kernel<T, STAGES, false, false>);
    LA_LAUNCH_TRY(la_cuda_opt_in_smem((const void *)k, smem));
    k<<<grid, LA_ROWS_THREADS, smem, stream>>>(p);
    LA_LAUNCH_TRY(cudaGetLastError());
    return LA_STATUS_SUCCESS;
}

/* The output pass on the warp-role kernel (D, E <= 64, bf16 and f16,
 * vectorisable tensors, no summed shares). */
template <typename T>
static la_status_t la_fwd_ws_run(const la_fwd_params_t &p, const la_fwd_launch_t &l, cudaStream_t stream,
                                 char *msg) {
    constexpr int R = LA_WS_SLOTS;
    const int smem = ws_smem_bytes(R);
    const dim3 grid(l.total_segs, p.H, (p.E + LA_WS_COLS - 1) / LA_WS_COLS);
    const bool precise = p.sN.ptr != nullptr && !l.state_pass; /* as la_fwd_out_run */
    auto k = precise ? la_fwd_ws_kernel<T, R, true> : la_fwd_ws_kernel<T, R, false>;
    LA_LAUNCH_TRY(la_cuda_opt_in_smem((const void *)k, smem));
    k<<<grid, LA_WS_THREADS, smem, stream>>>(p);
    LA_LAUNCH_TRY(cudaGetLastError());
    return LA_STATUS_SUCCESS;
}

template <typename T, int DP, int EP>
static la_status_t la_fwd_run(const la_fwd_params_t &p, const la_fwd_launch_t &l, cudaStream_t s, char *msg) {
    if (l.state_pass) {
        /* Segment states reach the caller only through the final state:
         * without it the state pass needs no fp32-level terms.  Four stages
         * measured faster for that pass (B1 H16 N8192 forward 0.157 -> 0.150
         * ms) and slower for the precise one (state-only B4 H32 N8192 0.262
         * -> 0.277 ms), which keeps two. */
        la_status_t st;
#ifdef LA_HAVE_SM90A
        if (l.state_wg) st = la_cuda_state_wg(&p, &l, la_is_bf16<T>::value, s, msg);
        else
#endif
            st = p.sN.ptr ? la_fwd_state_run<T, DP, EP, 2, true>(p, l, s, msg)
                 : l.state_stages == 4 ? la_fwd_state_run<T, DP, EP, 4, false>(p, l, s, msg)
                                       : la_fwd_state_run<T, DP, EP, 2, false>(p, l, s, msg);
        if (st) return st;
    }
    if constexpr (DP == 64 && EP == 64 && sizeof(T) == 2) {
        if (l.main_pass && l.ws) return la_fwd_ws_run<T>(p, l, s, msg);
        if (l.main_pass && l.rows_stages)
            return l.rows_stages == 4 ? la_fwd_rows_run<T, 4>(p, l, s, msg) : la_fwd_rows_run<T, 2>(p, l, s, msg);
    }
    if (l.main_pass)
        return l.stages == 2 ? la_fwd_out_run<T, DP, EP, 2>(p, l, s, msg) : la_fwd_out_run<T, DP, EP, 1>(p, l, s, msg);
    return LA_STATUS_SUCCESS;
}

template <typename T>
static la_status_t la_fwd_dispatch(const la_fwd_params_t *p, const la_fwd_launch_t *l, cudaStream_t s, char *msg) {
    if (l->eslice == LA_CUDA_ESLICE_LARGE) {
        if (l->DP == 64) return la_fwd_run<T, 64, LA_CUDA_ESLICE_LARGE>(*p, *l, s, msg);
        return la_fwd_run<T, 128, LA_CUDA_ESLICE_LARGE>(*p, *l, s, msg);
    }
    if (l->DP == 64) return la_fwd_run<T, 64, LA_CUDA_ESLICE_SMALL>(*p, *l, s, msg);
    if (l->DP == 256) return la_fwd_run<T, 256, LA_CUDA_ESLICE_SMALL>(*p, *l, s, msg);
    return la_fwd_run<T, 128, LA_CUDA_ESLICE_SMALL>(*p, *l, s, msg);
}

#endif
