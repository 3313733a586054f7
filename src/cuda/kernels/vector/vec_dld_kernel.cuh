/* vec_dld_kernel.cuh - the vector kinds' decay gradients (vec_bwd.h): per
 * (sequence, head) block, one channel per thread, summed from the last token
 * to the first in double, a fixed order:
 *
 *   d gk_t[d] = F_d + sum_{s >= t} (q_s[d] dq_s[d] - k_s[d] dk_s[d]),  F_d = sum_e dS_final[d,e] S_N[d,e]
 *   d gv_t[e] = F_e + sum_{s >= t} (o_s[e] do_s[e] - v_s[e] dv_s[e]),  F_e = sum_d dS_final[d,e] S_N[d,e]
 *
 * Like la_vec_fwd_block, a loop strided by the thread count, so the host
 * test runs it with one thread. */
#ifndef LA_CUDA_VEC_DLD_KERNEL_CUH
#define LA_CUDA_VEC_DLD_KERNEL_CUH

#include "vec_bwd.h"
#include "vec_fwd_kernel.cuh"

template <typename T>
__device__ __forceinline__ float vec_tok(const la_tok_t &x, int64_t b, int64_t h, int64_t t, int64_t c) {
    return vec_load<T>(x.ptr, b * x.sb + h * x.sh + t * x.st + c * x.sc);
}

template <typename T>
__device__ __forceinline__ void la_vec_dld_block(const la_vec_dld_params_t &p, int s, int h, int tid, int nt) {
    int64_t b, t0, t1;
    if (p.cu) {
        b = 0;
        t0 = p.cu[s];
        t1 = p.cu[s + 1];
    } else {
        b = s;
        t0 = 0;
        t1 = p.seqlen;
    }
    for (int c = tid; c < p.D + p.E; c += nt) {
        const bool key = c < p.D;
        const int x = key ? c : c - p.D;
        float *out = key ? p.d_gk : p.d_gv;
        if (!out) continue;
        const int64_t *os = key ? p.dgk_s : p.dgv_s;
        double acc = 0.0;
        if (p.dsN.ptr) { /* the final state's term */
            const int n = key ? p.E : p.D;
            for (int y = 0; y < n; y++) {
                const int d = key ? x : y, e = key ? y : x;
                acc += (double)p.dsN.ptr[s * p.dsN.ss + h * p.dsN.sh + d * p.dsN.sd + e * p.dsN.se] *
                       (double)p.sN.ptr[s * p.sN.ss + h * p.sN.sh + d * p.sN.sd + e * p.sN.se];
            }
        }
        const la_tok_t &a = key ? p.q : p.o, &da = key ? p.dq : p.d_o;
        const la_tok_t &z = key ? p.k : p.v, &dz = key ? p.dk : p.dv;
        for (int64_t t = t1 - 1; t >= t0; t--) {
            if (a.ptr) acc += (double)vec_tok<T>(a, b, h, t, x) * (double)vec_tok<T>(da, b, h, t, x);
            acc -= (double)vec_tok<T>(z, b, h, t, x) * (double)vec_tok<T>(dz, b, h, t, x);
            out[b * os[0] + h * os[1] + t * os[2] + x * os[3]] = (float)acc;
        }
    }
}

#ifdef __CUDACC__
template <typename T>
__global__ void __launch_bounds__(LA_VEC_THREADS) la_vec_dld_kernel(const la_vec_dld_params_t p) {
    la_vec_dld_block<T>(p, blockIdx.x, blockIdx.y, threadIdx.x, LA_VEC_THREADS);
}
#endif

#endif
