/* vec_fold.cu - the fold kernel of a vector-decay sequence split
 * (vec_fold.cuh): one thread per state element. */
#include "vec_fold.cuh"
#include "vec_launch.h"

__global__ void la_vec_fold_kernel(float *seg_state, const float *seg_tot_k, const float *seg_tot_v, la_st_t s0,
                                   la_st_t sN, int nseg, int H, int D, int E, int64_t num_seqs) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= num_seqs * H * D * E) return;
    const int e = (int)(i % E), d = (int)(i / E % D), h = (int)(i / E / D % H);
    la_vec_fold_elem(seg_state, seg_tot_k, seg_tot_v, s0, sN, nseg, H, D, E, i / ((int64_t)E * D * H), h, d, e);
}

cudaError_t la_cuda_vec_fold(float *seg_state, const float *seg_tot_k, const float *seg_tot_v, la_st_t s0, la_st_t sN,
                             int nseg, int H, int D, int E, int64_t num_seqs, cudaStream_t stream) {
    const int64_t n = num_seqs * H * D * E;
    la_vec_fold_kernel<<<(unsigned)((n + 255) / 256), 256, 0, stream>>>(seg_state, seg_tot_k, seg_tot_v, s0, sN, nseg,
                                                                         H, D, E, num_seqs);
    return cudaGetLastError();
}
