/*
 * decode_kernel.cuh - one decode step on the GPU, every decay kind.
 *
 * One block per (sequence, head); thread e owns column e of the state and
 * walks the D rows: s = a_d s b_e + k_d v_e, written back in place, while
 * o_e accumulates q_d s.  Each state element is read once and written once
 * (the floor of this operation), reads and writes coalesced along e, 16
 * rows' loads in flight per thread.
 */
#ifndef LA_CUDA_DECODE_KERNEL_CUH
#define LA_CUDA_DECODE_KERNEL_CUH

#include "internal.h"
#include "kernel_params.h"
#include "inline_checks.cuh"
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

typedef struct la_decode_params {
    la_tok_t q, k, v, o;
    int D, E, H, decay;
    float scale;
    const float *ld, *ldv;
    int64_t ld_sb, ld_sh, ld_sc, ldv_sb, ldv_sh, ldv_sc;
    la_cuda_error_record_t *check_rec; /* as la_fwd_params_t's */
    la_st_t s0, sN;
} la_decode_params_t;

template <typename T>
__device__ __forceinline__ float la_ld_elem(const void *p, int64_t i) { return float(static_cast<const T *>(p)[i]); }

template <typename T>
__global__ void la_decode_kernel(const la_decode_params_t p) {
    const int b = blockIdx.x / p.H, h = blockIdx.x % p.H;
    __shared__ float qs[LA_MAX_HEAD_DIM], ks[LA_MAX_HEAD_DIM], as[LA_MAX_HEAD_DIM];
    for (int d = threadIdx.x; d < p.D; d += blockDim.x) {
        qs[d] = la_ld_elem<T>(p.q.ptr, b * p.q.sb + h * p.q.sh + d * p.q.sc) * p.scale;
        ks[d] = la_ld_elem<T>(p.k.ptr, b * p.k.sb + h * p.k.sh + d * p.k.sc);
        float g = 0.0f;
        if (p.decay == 1) g = la_head_log_decay(p.ld, p.ld_sh, p.H, h, p.check_rec);
        else if (p.decay == 2) g = p.ld[b * p.ld_sb + h * p.ld_sh];
        else if (p.decay >= 3) g = p.ld[b * p.ld_sb + h * p.ld_sh + d * p.ld_sc];
        as[d] = expf(g);
    }
    __syncthreads();
    for (int e = threadIdx.x; e < p.E; e += blockDim.x) {
        float ve = la_ld_elem<T>(p.v.ptr, b * p.v.sb + h * p.v.sh + e * p.v.sc);
        float be = p.decay == 4 ? expf(p.ldv[b * p.ldv_sb + h * p.ldv_sh + e * p.ldv_sc]) : 1.0f;
        const float *src = p.s0.ptr + b * p.s0.ss + h * p.s0.sh + e * p.s0.se;
        float *dst = p.sN.ptr + b * p.sN.ss + h * p.sN.sh + e * p.sN.se;
        /* Rows in batches of DB loads before their stores: src and dst may
         * be one buffer, so the compiler cannot hoist a load above an
         * earlier store; without the batches each thread had one load in
         * flight (measured 1.86x the floor at B64 H32 D=E=128).  In place
         * is still safe: this thread alone reads and writes column e. */
        constexpr int DB = 16;
        float acc = 0.0f;
        for (int d0 = 0; d0 < p.D; d0 += DB) {
            float s[DB];
#pragma unroll
            for (int u = 0; u < DB; u++) s[u] = d0 + u < p.D ? src[(d0 + u) * p.s0.sd] : 0.0f;
#pragma unroll
            for (int u = 0; u < DB; u++) {
                const int d = d0 + u;
                if (d >= p.D) break;
                float x = as[d] * s[u] * be + ks[d] * ve;
                dst[d * p.sN.sd] = x;
                acc += qs[d] * x;
            }
        }
        static_cast<T *>(const_cast<void *>(p.o.ptr))[b * p.o.sb + h * p.o.sh + e * p.o.sc] = T(acc);
    }
}

/* Launch the decode step on blocks = B * H blocks (decode.cu). */
la_status_t la_cuda_decode(const la_decode_params_t *p, la_dtype_t dtype, int blocks, cudaStream_t stream, char *msg);

#endif
