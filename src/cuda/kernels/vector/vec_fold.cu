/* vec_fold.cu - the kernels of a vector-decay sequence split
 * (vec_fold.cuh): the fold, one thread per state element; the running
 * sums' offsets, one thread per (sequence, head, column), and their
 * application, one per term. */
#include "vec_fold.cuh"
#include "vec_launch.h"

/* Grid x: a (sequence, head); y: its state elements in blocks of 256, with
 * 32-bit index arithmetic (64-bit divisions by runtime sizes cost a
 * hundred-odd instructions each). */
__global__ void la_vec_fold_kernel(float *seg_state, const float *seg_tot_k, const float *seg_tot_v, la_st_t s0,
                                   la_st_t sN, int nseg, int H, int D, int E, int reverse) {
    const int i = blockIdx.y * blockDim.x + threadIdx.x;
    if (i >= D * E) return;
    const int64_t sh = blockIdx.x;
    la_vec_fold_elem(seg_state, seg_tot_k, seg_tot_v, s0, sN, nseg, H, D, E, reverse, sh / H, (int)(sh % H), i / E,
                     i % E);
}

cudaError_t la_cuda_vec_fold(float *seg_state, const float *seg_tot_k, const float *seg_tot_v, la_st_t s0, la_st_t sN,
                             int nseg, int H, int D, int E, int reverse, int64_t num_seqs, cudaStream_t stream) {
    const dim3 grid((unsigned)(num_seqs * H), (unsigned)((D * E + 255) / 256));
    la_vec_fold_kernel<<<grid, 256, 0, stream>>>(seg_state, seg_tot_k, seg_tot_v, s0, sN, nseg, H, D, E, reverse);
    return cudaGetLastError();
}

__global__ void la_vec_sum_offsets_kernel(double *seg_sum, la_st_t fin_a, la_st_t fin_b, int nseg, int H, int R, int C,
                                          int64_t num_seqs) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= num_seqs * H * C) return;
    la_vec_sum_offsets_elem(seg_sum, fin_a, fin_b, nseg, H, R, C, i / ((int64_t)C * H), (int)(i / C % H), (int)(i % C));
}

/* The terms in blocks of 256 along (token, column) of one (sequence, head):
 * grid y, striding past the grid's 65535 rows. */
__global__ void la_vec_sum_apply_kernel(float *term, la_vec_strides_t ts, const double *offs, int nseg,
                                        int64_t seg_len, int H, int C, int64_t seqlen, int64_t num_sh) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= seqlen * C) return;
    for (int64_t sh = blockIdx.y; sh < num_sh; sh += gridDim.y)
        la_vec_sum_apply_elem(term, ts.s, offs, nseg, seg_len, H, C, sh / H, (int)(sh % H), i / C, (int)(i % C));
}

cudaError_t la_cuda_vec_sums(double *seg_sum, la_st_t fin_a, la_st_t fin_b, float *term, const int64_t *term_s,
                             int nseg, int64_t seg_len, int H, int R, int C, int64_t seqlen, int64_t num_seqs,
                             cudaStream_t stream) {
    const int64_t n = num_seqs * H * C;
    la_vec_sum_offsets_kernel<<<(unsigned)((n + 255) / 256), 256, 0, stream>>>(seg_sum, fin_a, fin_b, nseg, H, R, C,
                                                                                num_seqs);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
    la_vec_strides_t ts;
    for (int i = 0; i < 4; i++) ts.s[i] = term_s[i];
    const int64_t num_sh = num_seqs * H;
    const dim3 grid((unsigned)((seqlen * C + 255) / 256), (unsigned)(num_sh < 65535 ? num_sh : 65535));
    la_vec_sum_apply_kernel<<<grid, 256, 0, stream>>>(term, ts, seg_sum, nseg, seg_len, H, C, seqlen, num_sh);
    return cudaGetLastError();
}
