/* vec_mma.cu - instances and launcher of the tensor-core vector-decay
 * recurrence (vec_mma_kernel.cuh): bf16 and f16, row dims up to 64 and 128,
 * outputs split or not, with row decays, column decays or both, blocks of
 * 64 or 128 value columns. */
#include "vec_launch.h"
#include "vec_mma_kernel.cuh"
#include "vec_ws_kernel.cuh"
#include "smem_opt_in.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

template <typename T, int DM, int ET, bool RD, bool CD, bool SP>
static cudaError_t vm_launch(const la_vec_params_t &p, int64_t num_seqs, int mma_smem, cudaStream_t s) {
    la_vec_params_t ps = p;
    ps.nstage = la_vec_mma_stages(DM, ET, CD, SP, mma_smem);
    const int smem = vm_layout<DM, ET, CD, SP>::bytes(ps.nstage);
    auto k = la_vec_mma_kernel<T, DM, ET, RD, CD, SP>;
    cudaError_t err = la_cuda_opt_in_smem((const void *)k, smem);
    if (err != cudaSuccess) return err;
    k<<<dim3((unsigned)num_seqs, p.H, (p.E + ET - 1) / ET), LA_VM_THREADS(ET), smem, s>>>(ps);
    return cudaGetLastError();
}

/* The warp-role kernel (vec_ws_kernel.cuh): four input stages where they fit, else three. */
template <typename T, int DM, bool RD, bool CD, bool SP>
static cudaError_t vw_launch(const la_vec_params_t &p, int64_t num_seqs, int mma_smem, cudaStream_t s) {
    typedef vw_layout<DM, RD, CD, SP> W;
    la_vec_params_t ps = p;
    ps.nstage = W::bytes(4) <= mma_smem ? 4 : 3;
    const int smem = W::bytes(ps.nstage);
    auto k = la_vec_ws_kernel<T, DM, RD, CD, SP>;
    cudaError_t err = la_cuda_opt_in_smem((const void *)k, smem);
    if (err != cudaSuccess) return err;
    k<<<dim3((unsigned)num_seqs, p.H, (p.E + LA_VW_ET - 1) / LA_VW_ET), LA_VW_THREADS, smem, s>>>(ps);
    return cudaGetLastError();
}

/* 128 value columns a block where they fit and the grid still covers half the SMs; else 64 (twice
 * the blocks, for grids that fall short of the GPU).  With warp roles asked for, the warp-role
 * kernel takes the 128-column runs where its block fits. */
template <typename T, int DM, bool RD, bool CD, bool SP>
static cudaError_t vm_launch_cols(const la_vec_params_t &p, int64_t num_seqs, int mma_smem, cudaStream_t s) {
    const int64_t wide_blocks = num_seqs * p.H * ((p.E + 127) / 128);
    const bool wide = la_vec_mma_et(p.D, p.E, CD, SP, mma_smem) == 128 && (p.sms == 0 || 2 * wide_blocks >= p.sms);
    if (p.warp_roles && wide && vw_layout<DM, RD, CD, SP>::bytes(3) <= mma_smem)
        return vw_launch<T, DM, RD, CD, SP>(p, num_seqs, mma_smem, s);
    return wide ? vm_launch<T, DM, 128, RD, CD, SP>(p, num_seqs, mma_smem, s)
                : vm_launch<T, DM, 64, RD, CD, SP>(p, num_seqs, mma_smem, s);
}

/* Row decays only (the forward of VECTOR_K, and the runs whose rows are its
 * keys), column decays only (the runs of VECTOR_K transposed), or both. */
template <typename T, int DM, bool SP>
static cudaError_t vm_launch_kind(const la_vec_params_t &p, int64_t num_seqs, int mma_smem, cudaStream_t s) {
    if (!p.gv) return vm_launch_cols<T, DM, true, false, SP>(p, num_seqs, mma_smem, s);
    return p.gk ? vm_launch_cols<T, DM, true, true, SP>(p, num_seqs, mma_smem, s)
                : vm_launch_cols<T, DM, false, true, SP>(p, num_seqs, mma_smem, s);
}

/* Split outputs (SP) where they feed a decay gradient's sum (term_mode). */
template <typename T, int DM>
static cudaError_t vm_launch_split(const la_vec_params_t &p, int64_t num_seqs, int mma_smem, cudaStream_t s) {
    return p.term_mode ? vm_launch_kind<T, DM, true>(p, num_seqs, mma_smem, s)
                       : vm_launch_kind<T, DM, false>(p, num_seqs, mma_smem, s);
}

template <typename T>
static cudaError_t vm_launch_dims(const la_vec_params_t &p, int64_t num_seqs, int mma_smem, cudaStream_t s) {
    return p.D <= 64 ? vm_launch_split<T, 64>(p, num_seqs, mma_smem, s)
                     : vm_launch_split<T, 128>(p, num_seqs, mma_smem, s);
}

cudaError_t la_cuda_vec_mma(const la_vec_params_t *p, la_dtype_t dtype, int64_t num_seqs, int mma_smem,
                            cudaStream_t stream) {
    return dtype == LA_DTYPE_BF16 ? vm_launch_dims<__nv_bfloat16>(*p, num_seqs, mma_smem, stream)
                                  : vm_launch_dims<__half>(*p, num_seqs, mma_smem, stream);
}
