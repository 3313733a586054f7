/*
 * checkpoint_kernel.cuh - the states at every multiple of the checkpoint
 * interval, for prefix caching, beside the forward that writes o and the
 * final state.
 *
 * The recurrence is element-wise, s = a_d s b_e + k_d v_e, so a block of
 * (sequence, head, 32 rows of D) keeps its 32 x E slice of the state in
 * registers (thread e: column e of the 32 rows) and steps the sequence token
 * by token, 16 tokens' k, v and decays staged in shared memory at a time,
 * storing the slice at every multiple of the interval.  fp32 throughout; it
 * reads k, v and the decays once per 32 rows of D.  A padding sequence's
 * rows are zeros.
 *
 * A block function (la_ckpt_block) that the host compiler also builds
 * (tests/test_serving_emulated.cpp); all shared data is in one array.
 */
#ifndef LA_CUDA_CHECKPOINT_KERNEL_CUH
#define LA_CUDA_CHECKPOINT_KERNEL_CUH

#include "kernel_params.h"
#include "slot_checks.cuh"

#include <math.h>

#define LA_CKPT_ROWS 32   /* rows of D a block keeps */
#define LA_CKPT_TOKENS 16 /* tokens staged at a time */
/* Shared memory for a block of `threads` (>= E) threads. */
#define LA_CKPT_SMEM(threads) ((2 * LA_CKPT_TOKENS * LA_CKPT_ROWS + 2 * LA_CKPT_TOKENS * (threads)) * (int)sizeof(float))

typedef struct la_ckpt_params {
    la_tok_t k, v; /* [B, H, N, *] */
    int decay;
    const float *ld, *ldv; /* by kind (SCALAR_HEAD: [H]) */
    int64_t ld_sb, ld_sh, ld_st, ld_sc, ldv_sb, ldv_sh, ldv_st, ldv_sc;
    const float *s0; /* initial states [S, H, D, E], or NULL: zeros */
    int64_t s0_ss, s0_sh, s0_sd, s0_se;
    void *ckpt; /* [C, H, D, E], f32 or bf16 by the kernel's type */
    int64_t c_ss, c_sh, c_sd, c_se;
    const int64_t *cu; /* device offsets of a packed batch (checked), or NULL */
    int64_t N, interval;
    int S, H, D, E;
    la_slots_t slots; /* a pool's slots (its padding), or read == NULL */
} la_ckpt_params_t;

template <typename T, typename CV>
__device__ void la_ckpt_block(const la_ckpt_params_t &p, int bx, int by, int tid, int nthreads, char *sm) {
    const int s = bx / p.H, h = bx % p.H, d0 = by * LA_CKPT_ROWS, e = tid, D = p.D, E = p.E;
    float *ks = (float *)sm, *as = ks + LA_CKPT_TOKENS * LA_CKPT_ROWS, *vs = as + LA_CKPT_TOKENS * LA_CKPT_ROWS,
          *bs = vs + LA_CKPT_TOKENS * nthreads;
    const int64_t t0 = p.cu ? p.cu[s] : 0, len = p.cu ? p.cu[s + 1] - p.cu[s] : p.N, b = p.cu ? 0 : s;
    int64_t row = 0; /* this sequence's first checkpoint row */
    if (p.cu)
        for (int j = 0; j < s; j++) row += (p.cu[j + 1] - p.cu[j]) / p.interval;
    else
        row = (int64_t)s * (p.N / p.interval);
    const bool pad = p.slots.read && la_slot_padding(&p.slots, s);
    const bool mine = e < E;
    float st[LA_CKPT_ROWS];
#pragma unroll
    for (int r = 0; r < LA_CKPT_ROWS; r++) {
        const int d = d0 + r;
        st[r] = mine && d < D && p.s0 && !pad ? p.s0[s * p.s0_ss + h * p.s0_sh + d * p.s0_sd + e * p.s0_se] : 0.0f;
    }
    CV *out = static_cast<CV *>(p.ckpt) + h * p.c_sh + e * p.c_se;
    if (pad) {
        for (int64_t m = 0; mine && m < len / p.interval; m++)
            for (int r = 0; r < LA_CKPT_ROWS && d0 + r < D; r++) out[(row + m) * p.c_ss + (d0 + r) * p.c_sd] = CV(0.0f);
        return;
    }
    for (int64_t c0 = 0; c0 < len; c0 += LA_CKPT_TOKENS) {
        const int n = len - c0 < LA_CKPT_TOKENS ? (int)(len - c0) : LA_CKPT_TOKENS;
        __syncthreads(); /* the previous tokens' stage is read */
        for (int i = tid; i < n * LA_CKPT_ROWS; i += nthreads) {
            const int t = i / LA_CKPT_ROWS, d = d0 + i % LA_CKPT_ROWS;
            const int64_t tok = t0 + c0 + t;
            float g = 0.0f, kk = 0.0f;
            if (d < D) {
                kk = float(static_cast<const T *>(p.k.ptr)[b * p.k.sb + h * p.k.sh + tok * p.k.st + d * p.k.sc]);
                if (p.decay == 1) g = p.ld[h * p.ld_sh];
                else if (p.decay == 2) g = p.ld[b * p.ld_sb + h * p.ld_sh + tok * p.ld_st];
                else if (p.decay >= 3) g = p.ld[b * p.ld_sb + h * p.ld_sh + tok * p.ld_st + d * p.ld_sc];
            }
            ks[i] = kk;
            as[i] = expf(g);
        }
        for (int i = tid; i < n * nthreads; i += nthreads) {
            const int t = i / nthreads, c = i % nthreads;
            const int64_t tok = t0 + c0 + t;
            const bool in = c < E;
            vs[i] = in ? float(static_cast<const T *>(p.v.ptr)[b * p.v.sb + h * p.v.sh + tok * p.v.st + c * p.v.sc]) : 0.0f;
            bs[i] = p.decay == 4 && in ? expf(p.ldv[b * p.ldv_sb + h * p.ldv_sh + tok * p.ldv_st + c * p.ldv_sc]) : 1.0f;
        }
        __syncthreads();
        if (!mine) continue;
        for (int t = 0; t < n; t++) {
            const float vb = vs[t * nthreads + e], be = bs[t * nthreads + e];
#pragma unroll
            for (int r = 0; r < LA_CKPT_ROWS; r++)
                st[r] = as[t * LA_CKPT_ROWS + r] * st[r] * be + ks[t * LA_CKPT_ROWS + r] * vb;
            if ((c0 + t + 1) % p.interval == 0) {
                CV *dst = out + (row + (c0 + t + 1) / p.interval - 1) * p.c_ss;
#pragma unroll
                for (int r = 0; r < LA_CKPT_ROWS; r++)
                    if (d0 + r < D) dst[(d0 + r) * p.c_sd] = CV(st[r]);
            }
        }
    }
}

#ifdef __CUDACC__
template <typename T, typename CV>
__global__ void la_ckpt_kernel(const la_ckpt_params_t p) {
    extern __shared__ __align__(16) char la_ckpt_sm[];
    la_ckpt_block<T, CV>(p, blockIdx.x, blockIdx.y, threadIdx.x, blockDim.x, la_ckpt_sm);
}
#endif

#endif
