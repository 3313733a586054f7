/*
 * state_wg.cu - the Hopper state pass (state_wg_kernel.cuh) and the fold
 * after it, for bf16 and f16: the TMA descriptors of K and V, the launch.
 * Built for sm_90a alone (CMakeLists.txt), so the forward launchers call it
 * only where LA_HAVE_SM90A is defined and the plan chose it (host/plan.cu:
 * la_fwd_launch_t's state_wg).
 */
#include "fwd_launch.h"
#include "smem_opt_in.h"
#include "state_wg_kernel.cuh"
#include "tma_map.h"

#include <stdio.h>
#include <string.h>

int la_cuda_state_wg_smem(void) { return state_wg_smem_bytes(); }

template <typename T, bool PRECISE>
static cudaError_t swg_launch(const la_fwd_params_t &p, const la_fwd_launch_t &l, const CUtensorMap &mk,
                              const CUtensorMap &mv, cudaStream_t s) {
    const int smem = state_wg_smem_bytes();
    auto k = la_state_wg_kernel<T, PRECISE>;
    cudaError_t err = la_cuda_opt_in_smem((const void *)k, smem);
    if (err != cudaSuccess) return err;
    k<<<dim3(l.total_segs, p.H, (p.E + LA_SWG_EP - 1) / LA_SWG_EP), LA_SWG_THREADS, smem, s>>>(p, mk, mv);
    return cudaGetLastError();
}

la_status_t la_cuda_state_wg(const la_fwd_params_t *p, const la_fwd_launch_t *l, int bf16, cudaStream_t s, char *msg) {
    const int64_t B = l->rows, tokens = l->row_tokens;
    if (l->DP != LA_SWG_DP || l->eslice != LA_SWG_EP) {
        snprintf(msg, LA_MSG_LEN, "Hopper state pass: padded dims %d x %d, it takes %d x %d", l->DP, l->eslice,
                 LA_SWG_DP, LA_SWG_EP);
        return LA_STATUS_INTERNAL_ERROR;
    }
    /* TMA coordinates are 32-bit: tokens, heads and batch rows must fit. */
    CUtensorMap mk, mv;
    memset(&mk, 0, sizeof mk);
    memset(&mv, 0, sizeof mv);
    if (tokens + LA_C >= ((int64_t)1 << 31) || B >= ((int64_t)1 << 31) ||
        !la_tma_tok_map(&mk, p->k, bf16, B, p->H, tokens, p->D) || !la_tma_tok_map(&mv, p->v, bf16, B, p->H, tokens, p->E))
    {
        snprintf(msg, LA_MSG_LEN, "Hopper state pass: the TMA maps of k and v could not be encoded");
        return LA_STATUS_INTERNAL_ERROR; /* the plan checked that they can */
    }
    /* fp32-level terms (hi and lo) only where the segment states reach the final state */
    const bool precise = p->sN.ptr != nullptr;
    cudaError_t err = bf16 ? (precise ? swg_launch<__nv_bfloat16, true>(*p, *l, mk, mv, s)
                                      : swg_launch<__nv_bfloat16, false>(*p, *l, mk, mv, s))
                           : (precise ? swg_launch<__half, true>(*p, *l, mk, mv, s)
                                      : swg_launch<__half, false>(*p, *l, mk, mv, s));
    if (err == cudaSuccess) {
        const int per_state = (LA_SWG_DP * p->ept + 255) / 256;
        la_fold_kernel<LA_SWG_DP><<<dim3(l->num_seqs * per_state, p->H), 256, 0, s>>>(*p, per_state);
        err = cudaGetLastError();
    }
    if (err != cudaSuccess) {
        snprintf(msg, LA_MSG_LEN, "Hopper state pass launch failed: %s", cudaGetErrorString(err));
        return LA_STATUS_EXECUTION_FAILED;
    }
    return LA_STATUS_SUCCESS;
}
