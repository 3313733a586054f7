/*
 * dld_finish.cuh - the last step of the log-decay gradient on the GPU: the
 * terms that cross chunks (bwd_kernel.cuh, "the log-decay gradient").
 *
 * Per (sequence, head) it runs z_0 = dld_z0, z_{c+1} = z_c + row_c - col_{c+1}
 * in double, in chunk order (deterministic), then
 *   SCALAR_TOKEN: d_ld[t] += T1[t] + z_{c(t)}   (T2 + T4 already in d_ld, added there
 *                 to an earlier head-dim tile's share with LA_SUM_DLD_ADD)
 *   SCALAR_HEAD:  part[s, h] = sum_c (s1_c + s24_c + n_c z_c)
 * and la_dld_head_kernel adds the parts of every sequence in order.
 * Without d_o (the state-only backward) role 0 never ran: T1 and col are 0.
 */
#ifndef LA_CUDA_DLD_FINISH_CUH
#define LA_CUDA_DLD_FINISH_CUH

#include "bwd_kernel.cuh"

#define LA_DLD_TILE 256 /* chunks whose z one pass keeps in shared memory */

__global__ void __launch_bounds__(256) la_dld_finish_kernel(const la_bwd_params_t bp) {
    const la_fwd_params_t &p = bp.f;
    const int s = blockIdx.x, h = blockIdx.y;
    const bool has_do = bp.d_o.ptr != nullptr;
    const int64_t tb = p.seg.cu ? p.seg.cu[s] : 0, b = p.seg.cu ? 0 : s;
    const int64_t len = p.seg.cu ? p.seg.cu[s + 1] - tb : p.seg.seqlen;
    const int64_t nch = (len + LA_C - 1) / LA_C;
    const int64_t HT = (int64_t)p.H * bp.tc, base = dld_chunk_index(bp, s, h, 0);
    const float *col = bp.dld_chunk + base, *row = col + HT, *s1 = col + 2 * HT, *s24 = col + 3 * HT;
    __shared__ float zs[LA_DLD_TILE];
    double z = 0.0, head = 0.0;
    for (int64_t c0 = 0; c0 < nch; c0 += LA_DLD_TILE) {
        const int64_t c1 = c0 + LA_DLD_TILE < nch ? c0 + LA_DLD_TILE : nch;
        if (threadIdx.x == 0) {
            for (int64_t c = c0; c < c1; c++) {
                if (c == 0) z = bp.dld_z0[(int64_t)s * p.H + h];
                else z = z + (double)row[c - 1] - (has_do ? (double)col[c] : 0.0);
                zs[c - c0] = (float)z;
                if (p.decay == 1) {
                    const int64_t nc = len - c * LA_C < LA_C ? len - c * LA_C : LA_C;
                    head += (has_do ? (double)s1[c] : 0.0) + (double)s24[c] + (double)nc * z;
                }
            }
        }
        __syncthreads();
        if (p.decay == 2) {
            const int64_t t_end = c1 * LA_C < len ? c1 * LA_C : len;
            const float *t1 = bp.dld_tok + (b * p.H + h) * bp.ntot + tb;
            float *dst = bp.d_ld + b * bp.dld_sb + h * bp.dld_sh + tb * bp.dld_st;
            for (int64_t t = c0 * LA_C + threadIdx.x; t < t_end; t += blockDim.x)
                dst[t * bp.dld_st] += (has_do ? t1[t] : 0.0f) + zs[t / LA_C - c0];
        }
        __syncthreads();
    }
    if (p.decay == 1 && threadIdx.x == 0) bp.dld_part[(int64_t)s * p.H + h] = head;
}

/* SCALAR_HEAD: d_ld[h] = sum over sequences of the parts, in order. */
__global__ void la_dld_head_kernel(const la_bwd_params_t bp) {
    const int h = blockIdx.x * blockDim.x + threadIdx.x;
    if (h >= bp.f.H) return;
    double sum = 0.0;
    for (int s = 0; s < bp.f.seg.num_seqs; s++) sum += bp.dld_part[(int64_t)s * bp.f.H + h];
    float *dst = bp.d_ld + h * bp.dld_sh;
    *dst = (bp.f.accum & LA_SUM_DLD_ADD ? *dst : 0.0f) + (float)sum;
}

#endif
