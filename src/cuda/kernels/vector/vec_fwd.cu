/* vec_fwd.cu - instances and launcher of the vector-decay recurrence
 * (vec_fwd_kernel.cuh): three dtypes, with and without value decay.  The
 * forward, the state-only pass and every run of the backward (vec_bwd.h). */
#include "vec_launch.h"
#include "vec_fwd_kernel.cuh"
#include "smem_opt_in.h"
#include "vec_mma_layout.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdio.h>

template <typename T, bool KV>
static cudaError_t vec_launch(const la_vec_params_t &p, int64_t num_seqs, cudaStream_t s) {
    const int smem = la_vec_fwd_smem(p.D);
    auto k = la_vec_fwd_kernel<T, KV>;
    cudaError_t err = la_cuda_opt_in_smem((const void *)k, smem);
    if (err != cudaSuccess) return err;
    k<<<dim3((unsigned)num_seqs, p.H, (p.E + LA_VEC_EV - 1) / LA_VEC_EV), LA_VEC_THREADS, smem, s>>>(p);
    return cudaGetLastError();
}

template <typename T>
static cudaError_t vec_launch_kind(const la_vec_params_t &p, int64_t num_seqs, cudaStream_t s) {
    return p.gv ? vec_launch<T, true>(p, num_seqs, s) : vec_launch<T, false>(p, num_seqs, s);
}

int la_cuda_vec_uses_mma(int D, int split, la_dtype_t dtype, int mma_smem) {
    return (dtype == LA_DTYPE_BF16 || dtype == LA_DTYPE_F16) && D <= 128 && la_vec_mma_smem(D, 64, 1, split, 2) <= mma_smem;
}

la_status_t la_cuda_vec_fwd(const la_vec_params_t *p, la_dtype_t dtype, int64_t num_seqs, int mma_smem,
                            cudaStream_t stream, char *msg) {
    const cudaError_t err = la_cuda_vec_uses_mma(p->D, p->term_mode != 0, dtype, mma_smem) ? la_cuda_vec_mma(p, dtype, num_seqs, mma_smem, stream)
                            : dtype == LA_DTYPE_BF16                    ? vec_launch_kind<__nv_bfloat16>(*p, num_seqs, stream)
                            : dtype == LA_DTYPE_F16 ? vec_launch_kind<__half>(*p, num_seqs, stream)
                                                    : vec_launch_kind<float>(*p, num_seqs, stream);
    if (err != cudaSuccess) {
        snprintf(msg, LA_MSG_LEN, "launching the vector-decay recurrence failed: %s", cudaGetErrorString(err));
        return LA_STATUS_EXECUTION_FAILED;
    }
    return LA_STATUS_SUCCESS;
}
