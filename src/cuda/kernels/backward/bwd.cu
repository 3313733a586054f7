/* bwd.cu - the dtype-independent parts of the backward: the decay gradient's
 * finish kernels and the shared-memory figure the support table checks. */
#include "bwd_launch.h"
#include "dld_finish.cuh"

int la_cuda_bwd_smem(int DP, int EP, int elem, int dld, int stages) {
    return bwd_smem_bytes(DP, EP, elem, dld != 0, stages);
}
int la_cuda_bwd_blocks_per_sm(int DP, int EP, int elem) { return bwd_blocks_per_sm(DP, EP, elem); }

cudaError_t la_cuda_dld_finish(const la_bwd_params_t *b, cudaStream_t s) {
    la_dld_finish_kernel<<<dim3(b->f.seg.num_seqs, b->f.H), 256, 0, s>>>(*b);
    cudaError_t err = cudaGetLastError();
    if (err == cudaSuccess && b->f.decay == 1) {
        la_dld_head_kernel<<<(b->f.H + 255) / 256, 256, 0, s>>>(*b);
        err = cudaGetLastError();
    }
    return err;
}
