/*
 * bwd_wg.cu - the Hopper backward (bwd_wg_kernel.cuh) for bf16 and f16: the
 * TMA maps of q, k, v and dO, the launch.  Built for sm_90a alone
 * (CMakeLists.txt); bwd_launch.cuh calls it where the plan chose it
 * (host/plan.cu; la_bwd_launch_t's wgmma).
 */
#include "bwd_launch.h"
#include "smem_opt_in.h"
#include "bwd_wg_kernel.cuh"
#include "tma_map.h"

#include <stdio.h>
#include <string.h>

int la_cuda_bwd_wg_smem(void) { return bwd_wg_smem_bytes(); }

template <typename T, bool PRECISE>
static cudaError_t bwg_launch(const la_bwd_params_t &b, int total, const CUtensorMap *m, cudaStream_t s) {
    const int smem = bwd_wg_smem_bytes();
    auto k = la_bwd_wg_kernel<T, PRECISE>;
    cudaError_t err = la_cuda_opt_in_smem((const void *)k, smem);
    if (err != cudaSuccess) return err;
    k<<<dim3(total, b.f.H, 2), LA_BWG_THREADS, smem, s>>>(b, m[0], m[1], m[2], m[3]);
    return cudaGetLastError();
}

la_status_t la_cuda_bwd_wg(const la_bwd_params_t *b, const la_bwd_launch_t *w, int bf16, cudaStream_t s, char *msg) {
    const int total = w->total;
    const la_fwd_params_t &p = b->f;
    if (p.D != 64 || p.E != 64 || !b->d_o.ptr || b->want_dld || p.accum) {
        snprintf(msg, LA_MSG_LEN, "Hopper backward: D %d, E %d (it takes 64 x 64), no decay gradient or shares", p.D,
                 p.E);
        return LA_STATUS_INTERNAL_ERROR;
    }
    /* TMA coordinates are 32-bit: tokens, heads and batch rows must fit. */
    CUtensorMap m[4];
    memset(m, 0, sizeof m);
    const int64_t B = w->rows, tokens = w->row_tokens;
    if (tokens + LA_C >= ((int64_t)1 << 31) || B >= ((int64_t)1 << 31) ||
        !la_tma_tok_map(&m[0], p.q, bf16, B, p.H, tokens, p.D) || !la_tma_tok_map(&m[1], p.k, bf16, B, p.H, tokens, p.D) ||
        !la_tma_tok_map(&m[2], p.v, bf16, B, p.H, tokens, p.E) ||
        !la_tma_tok_map(&m[3], b->d_o, bf16, B, p.H, tokens, p.E))
    {
        snprintf(msg, LA_MSG_LEN, "Hopper backward: the TMA maps of q, k, v and dO could not be encoded");
        return LA_STATUS_INTERNAL_ERROR; /* the plan checked that they can */
    }
    /* fp32-level dS (hi and lo) only where it leaves as the initial-state gradient */
    const bool precise = b->ds0.ptr != nullptr;
    cudaError_t err = bf16 ? (precise ? bwg_launch<__nv_bfloat16, true>(*b, total, m, s)
                                      : bwg_launch<__nv_bfloat16, false>(*b, total, m, s))
                           : (precise ? bwg_launch<__half, true>(*b, total, m, s)
                                      : bwg_launch<__half, false>(*b, total, m, s));
    if (err != cudaSuccess) {
        snprintf(msg, LA_MSG_LEN, "Hopper backward launch failed: %s", cudaGetErrorString(err));
        return LA_STATUS_EXECUTION_FAILED;
    }
    return LA_STATUS_SUCCESS;
}
