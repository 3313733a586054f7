/*
 * fwd_wg.cu - the Hopper forward (fwd_wg_kernel.cuh): state pass, fold and
 * output pass in stream order, for bf16 and f16.  Built for sm_90a alone
 * (CMakeLists.txt), so the runner calls it only where LA_HAVE_SM90A is
 * defined and the plan chose it (host/plan.cu, want_fwd_wgmma).
 */
#include "fwd_launch.h"
#include "smem_opt_in.h"
#include "fwd_wg_kernel.cuh"

#include <stdio.h>

int la_cuda_fwd_wg_smem(int DP, int stages, int state_only) { return fwd_wg_smem_bytes(DP, stages, state_only != 0); }
int la_cuda_fwd_wg_blocks_per_sm(int DP) { return fwd_wg_blocks_per_sm(DP); }

template <typename T, int DP, bool STATE_ONLY, int STAGES, bool PRECISE>
static cudaError_t wg_launch(const la_fwd_params_t &p, const la_fwd_launch_t &l, cudaStream_t s) {
    const int smem = fwd_wg_smem_bytes(DP, STAGES, STATE_ONLY);
    auto k = la_fwd_wg_kernel<T, DP, STATE_ONLY, STAGES, PRECISE>;
    cudaError_t err = la_cuda_opt_in_smem((const void *)k, smem);
    if (err != cudaSuccess) return err;
    k<<<dim3(l.total_segs, p.H, (p.E + LA_WG_EP - 1) / LA_WG_EP), LA_WG_THREADS, smem, s>>>(p);
    return cudaGetLastError();
}

template <typename T, int DP>
static la_status_t wg_run(const la_fwd_params_t &p, const la_fwd_launch_t &l, cudaStream_t s, char *msg) {
    cudaError_t err = cudaSuccess;
    if (l.state_pass) {
        /* fp32-level terms only where the segment states reach the final state */
        err = p.sN.ptr ? wg_launch<T, DP, true, 2, true>(p, l, s)
              : l.state_stages == 4 ? wg_launch<T, DP, true, 4, false>(p, l, s)
                                    : wg_launch<T, DP, true, 2, false>(p, l, s);
        if (err == cudaSuccess) {
            const int per_state = (DP * p.ept + 255) / 256;
            la_fold_kernel<DP><<<dim3(l.num_seqs * per_state, p.H), 256, 0, s>>>(p, per_state);
            err = cudaGetLastError();
        }
    }
    if (err == cudaSuccess && l.main_pass) {
        /* The output pass writes the final state itself only without a state pass. */
        err = p.sN.ptr && !l.state_pass ? wg_launch<T, DP, false, 2, true>(p, l, s)
                                        : wg_launch<T, DP, false, 2, false>(p, l, s);
    }
    if (err != cudaSuccess) {
        snprintf(msg, LA_MSG_LEN, "Hopper forward launch failed: %s", cudaGetErrorString(err));
        return LA_STATUS_EXECUTION_FAILED;
    }
    return LA_STATUS_SUCCESS;
}

template <typename T>
static la_status_t wg_dispatch(const la_fwd_params_t *p, const la_fwd_launch_t *l, cudaStream_t s, char *msg) {
    if (l->DP == 64) return wg_run<T, 64>(*p, *l, s, msg);
    return wg_run<T, 128>(*p, *l, s, msg);
}

la_status_t la_cuda_fwd_wg_bf16(const la_fwd_params_t *p, const la_fwd_launch_t *l, cudaStream_t s, char *msg) {
    return wg_dispatch<__nv_bfloat16>(p, l, s, msg);
}
la_status_t la_cuda_fwd_wg_f16(const la_fwd_params_t *p, const la_fwd_launch_t *l, cudaStream_t s, char *msg) {
    return wg_dispatch<__half>(p, l, s, msg);
}
