/* vec_fwd_kernel.cuh - the recurrence of the vector decay kinds, one block
 * per (sequence, head, slice of LA_VEC_EV value columns): the forward, the
 * state-only pass, and (transposed, walked backwards, vec_bwd.h) every run
 * of the backward:
 *
 *   VECTOR_K   S_t = diag(a_t) S_{t-1} + k_t^T v_t                 (GLA)
 *   VECTOR_KV  S_t = diag(a_t) S_{t-1} diag(b_t) + k_t^T v_t
 *   o_t = scale q_t S_t,   a_t = exp(gk_t), b_t = exp(gv_t), gk, gv <= 0.
 *
 * The block walks its sequence in chunks of C = 16 tokens, with the fp32
 * state slice [D, EV] in shared memory.  Every decay factor is a product of
 * per-token factors exp(g) <= 1, never exp of a difference of cumulative
 * sums, so no exponent is positive, nothing overflows and nothing cancels
 * (a gate of -1e6 underflows to 0, as the exact factor does):
 *
 *   scores     A_ij = sum_d q_id k_jd prod_{r=j+1..i} a_rd        (j <= i, exact per channel)
 *   output     o_ie = sum_d q_id prod_{r<=i} a_rd S_de prod_{r<=i} b_re
 *                   + sum_{j<=i} A_ij v_je prod_{r=j+1..i} b_re
 *   state      S_de <- S_de prod_r a_rd prod_r b_re + sum_j k_jd prod_{r>j} a_rd v_je prod_{r>j} b_re
 *
 * With chunks this short the exact per-channel scores cost less than the
 * state products, so no sub-chunk anchoring is needed.  The products run on
 * CUDA cores in fp32 (inputs of any dtype are widened on load); the state
 * products are 4 D E multiply-adds per token.  Deterministic: fixed loop
 * orders, no atomics.  vec_params.h lists the options the backward's runs
 * use (keys scaled or absent, the walk reversed, decay-gradient sums).
 *
 * The block's work is la_vec_fwd_block: every step is a loop strided by the
 * thread count between barriers, so the same code run by one thread with
 * the barriers left out computes the same result.  tests/test_vec_emulated.cpp
 * does that with a host compiler and checks it against the fp64 reference;
 * the GPU tests check the kernel itself. */
#ifndef LA_CUDA_VEC_FWD_KERNEL_CUH
#define LA_CUDA_VEC_FWD_KERNEL_CUH

#include "vec_params.h"

#include <math.h>

#ifdef __CUDACC__
#define LA_VEC_SYNC() __syncthreads()
#else /* a host compiler (the emulated test): one thread, nothing to wait for */
#define LA_VEC_SYNC() ((void)0)
#endif

template <typename T>
__device__ __forceinline__ float vec_load(const void *p, int64_t i) {
    return float(static_cast<const T *>(p)[i]);
}

template <typename T>
__device__ __forceinline__ void vec_store(const void *p, int64_t i, float x) {
    static_cast<T *>(const_cast<void *>(p))[i] = T(x);
}

/* Block (s, h, z) of the grid: sequence s, head h, value columns from z EV,
 * as thread tid of nt, with sm the block's shared memory (la_vec_fwd_smem). */
template <typename T, bool KV>
__device__ __forceinline__ void la_vec_fwd_block(const la_vec_params_t &p, int s, int h, int z, float *sm, int tid,
                                                 int nt) {
    constexpr int C = LA_VEC_CHUNK, EVM = LA_VEC_EV;
    const int e0 = z * EVM;
    const int D = p.D, DP = p.D + 1; /* odd row pitch: the score loop reads 16 rows at once */
    const int EV = p.E - e0 < EVM ? p.E - e0 : EVM;
    const bool out = p.o.ptr != nullptr || p.term != nullptr;
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
    float *S = sm;               /* [D][EVM] the state slice */
    float *qs = S + D * EVM;     /* [C][DP] q (scaled), then q . exp(G_i) */
    float *ks = qs + C * DP;     /* [C][DP] k, then k . exp(G_L - G_j) */
    float *eg = ks + C * DP;     /* [C][DP] exp(gk) */
    float *egL = eg + C * DP;    /* [D] exp(G_L): the chunk's whole key decay */
    float *vs = egL + D;         /* [C][EVM] v */
    float *egv = vs + C * EVM;   /* [C][EVM] exp(gv) */
    float *vR = egv + C * EVM;   /* [C][EVM] v . exp(Gv_L - Gv_j) */
    float *eGv = vR + C * EVM;   /* [C][EVM] exp(Gv_i) */
    float *egvL = eGv + C * EVM; /* [EVM] the chunk's whole value decay */
    float *A = egvL + EVM;       /* [C][C] scores */
    float *ob = A + C * C;       /* [C][EVM] the chunk's outputs (term_mode 2) */
    double *sums = (double *)(((uintptr_t)(ob + C * EVM) + 7) & ~(uintptr_t)7); /* [EVM] running sums */

    for (int i = tid; i < D * EVM; i += nt) {
        const int d = i / EVM, e = i % EVM;
        S[i] = p.s0.ptr && e < EV ? p.s0.ptr[s * p.s0.ss + h * p.s0.sh + d * p.s0.sd + (e0 + e) * p.s0.se] : 0.0f;
    }
    if (p.term_mode == 2) /* the final state's share of each column's sum */
        for (int c = tid; c < EVM; c += nt) {
            double f = 0.0;
            if (p.fin_a.ptr && c < EV)
                for (int r = 0; r < D; r++)
                    f += (double)p.fin_a.ptr[s * p.fin_a.ss + h * p.fin_a.sh + r * p.fin_a.sd + (e0 + c) * p.fin_a.se] *
                         (double)p.fin_b.ptr[s * p.fin_b.ss + h * p.fin_b.sh + r * p.fin_b.sd + (e0 + c) * p.fin_b.se];
            sums[c] = f;
        }
    /* The walk's step u is token t0 + u, or t1 - 1 - u walking backwards, where
     * step u's decay is that of the token after it (none for the last one). */
    const int64_t len = t1 - t0;
    for (int64_t c0 = 0; c0 < len; c0 += C) {
        const int n = len - c0 < C ? (int)(len - c0) : C;
        LA_VEC_SYNC(); /* the previous chunk's reads are done */
        /* Rows past the sequence: zero operands and a factor of 1. */
        for (int i = tid; i < C * D; i += nt) {
            const int r = i / D, d = i % D;
            float qv = 0.0f, kv = 0.0f, g = 1.0f;
            if (r < n) {
                const int64_t t = p.reverse ? t1 - 1 - (c0 + r) : t0 + c0 + r, tg = p.reverse ? t + 1 : t;
                if (out) qv = vec_load<T>(p.q.ptr, b * p.q.sb + h * p.q.sh + t * p.q.st + d * p.q.sc) * p.scale;
                if (p.k.ptr) kv = vec_load<T>(p.k.ptr, b * p.k.sb + h * p.k.sh + t * p.k.st + d * p.k.sc) * p.kscale;
                if (p.gk && tg < t1) g = expf(p.gk[b * p.gk_sb + h * p.gk_sh + tg * p.gk_st + d * p.gk_sc]);
            }
            qs[r * DP + d] = qv;
            ks[r * DP + d] = kv;
            eg[r * DP + d] = g;
        }
        for (int i = tid; i < C * EVM; i += nt) {
            const int r = i / EVM, e = i % EVM;
            float vv = 0.0f, g = 1.0f;
            if (r < n && e < EV) {
                const int64_t t = p.reverse ? t1 - 1 - (c0 + r) : t0 + c0 + r, tg = p.reverse ? t + 1 : t;
                if (p.v.ptr) vv = vec_load<T>(p.v.ptr, b * p.v.sb + h * p.v.sh + t * p.v.st + (e0 + e) * p.v.sc);
                if (KV && tg < t1) g = expf(p.gv[b * p.gv_sb + h * p.gv_sh + tg * p.gv_st + (e0 + e) * p.gv_sc]);
            }
            vs[i] = vv;
            egv[i] = g;
        }
        LA_VEC_SYNC();
        if (out) /* scores of the chunk, one (i, j) per thread on the GPU */
            for (int x = tid; x < C * C; x += nt) {
                const int i = x / C, j = x % C;
                float a = 0.0f;
                if (j <= i)
                    for (int d = 0; d < D; d++) {
                        float f = 1.0f;
                        for (int r = j + 1; r <= i; r++) f *= eg[r * DP + d];
                        a = fmaf(qs[i * DP + d] * ks[j * DP + d], f, a);
                    }
                A[x] = a;
            }
        LA_VEC_SYNC();
        /* Decayed operands, by running products down and up the chunk. */
        for (int d = tid; d < D; d += nt) {
            float pr = 1.0f;
            for (int r = 0; r < C; r++) {
                pr *= eg[r * DP + d];
                qs[r * DP + d] *= pr;
            }
            egL[d] = pr;
            float su = 1.0f;
            for (int r = C - 1; r >= 0; r--) {
                ks[r * DP + d] *= su;
                su *= eg[r * DP + d];
            }
        }
        if (KV)
            for (int e = tid; e < EVM; e += nt) {
                float pr = 1.0f;
                for (int r = 0; r < C; r++) {
                    pr *= egv[r * EVM + e];
                    eGv[r * EVM + e] = pr;
                }
                egvL[e] = pr;
                float su = 1.0f;
                for (int r = C - 1; r >= 0; r--) {
                    vR[r * EVM + e] = vs[r * EVM + e] * su;
                    su *= egv[r * EVM + e];
                }
            }
        LA_VEC_SYNC();
        if (out)
            for (int x = tid; x < C * EVM; x += nt) {
                const int i = x / EVM, e = x % EVM;
                if (i >= n || e >= EV) continue;
                float inter = 0.0f;
                for (int d = 0; d < D; d++) inter = fmaf(qs[i * DP + d], S[d * EVM + e], inter);
                float intra = 0.0f;
                if (KV) {
                    inter *= eGv[i * EVM + e];
                    float f = 1.0f;
                    for (int j = i; j >= 0; j--) {
                        intra = fmaf(A[i * C + j] * vs[j * EVM + e], f, intra);
                        f *= egv[j * EVM + e];
                    }
                } else {
                    for (int j = 0; j <= i; j++) intra = fmaf(A[i * C + j], vs[j * EVM + e], intra);
                }
                const int64_t t = p.reverse ? t1 - 1 - (c0 + i) : t0 + c0 + i;
                const float y = inter + intra;
                if (p.o.ptr) vec_store<T>(p.o.ptr, b * p.o.sb + h * p.o.sh + t * p.o.st + (e0 + e) * p.o.sc, y);
                if (p.term_mode == 1)
                    p.term[b * p.term_sb + h * p.term_sh + t * p.term_st + (e0 + e) * p.term_sc] =
                        y * vec_load<T>(p.mul.ptr, b * p.mul.sb + h * p.mul.sh + t * p.mul.st + (e0 + e) * p.mul.sc);
                else if (p.term_mode == 2)
                    ob[i * EVM + e] = y;
            }
        if (p.term_mode == 2) { /* each column's running sum, in the walk's order */
            LA_VEC_SYNC();
            for (int c = tid; c < EV; c += nt)
                for (int i = 0; i < n; i++) {
                    const int64_t t = p.reverse ? t1 - 1 - (c0 + i) : t0 + c0 + i;
                    float *x = p.term + b * p.term_sb + h * p.term_sh + t * p.term_st + (e0 + c) * p.term_sc;
                    const float m = vec_load<T>(p.mul.ptr, b * p.mul.sb + h * p.mul.sh + t * p.mul.st + (e0 + c) * p.mul.sc);
                    sums[c] += (p.term_in ? (double)*x : 0.0) - (double)m * (double)ob[i * EVM + c];
                    *x = (float)sums[c];
                }
        }
        LA_VEC_SYNC(); /* every read of the old state is done */
        const float *vsrc = KV ? vR : vs;
        for (int x = tid; x < D * EVM; x += nt) {
            const int d = x / EVM, e = x % EVM;
            float acc = S[x] * egL[d];
            if (KV) acc *= egvL[e];
            for (int j = 0; j < n; j++) acc = fmaf(ks[j * DP + d], vsrc[j * EVM + e], acc);
            S[x] = acc;
        }
    }
    LA_VEC_SYNC();
    if (p.sN.ptr)
        for (int i = tid; i < D * EVM; i += nt) {
            const int d = i / EVM, e = i % EVM;
            if (e >= EV) continue;
            float x = S[i];
            if (p.reverse && len > 0) { /* one more step back: the first token's own decay */
                if (p.gk) x *= expf(p.gk[b * p.gk_sb + h * p.gk_sh + t0 * p.gk_st + d * p.gk_sc]);
                if (KV) x *= expf(p.gv[b * p.gv_sb + h * p.gv_sh + t0 * p.gv_st + (e0 + e) * p.gv_sc]);
            }
            p.sN.ptr[s * p.sN.ss + h * p.sN.sh + d * p.sN.sd + (e0 + e) * p.sN.se] = x;
        }
}

#ifdef __CUDACC__
template <typename T, bool KV>
__global__ void __launch_bounds__(LA_VEC_THREADS) la_vec_fwd_kernel(const la_vec_params_t p) {
    extern __shared__ float sm[];
    la_vec_fwd_block<T, KV>(p, blockIdx.x, blockIdx.y, blockIdx.z, sm, threadIdx.x, LA_VEC_THREADS);
}
#endif

#endif
