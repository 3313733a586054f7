/*
 * bwd_kernel.cuh - the chunked backward (first version: one block per
 * (sequence, head) and role, whole sequence, D and E up to 128, fixed decay).
 *
 * Two roles share one launch (blockIdx.z), each owning the full D x E state
 * of its (sequence, head) in registers (dQ and dK sum over E, dV over D, so
 * the state cannot be sliced without cross-block sums):
 *   role 0, forward sweep:  dQ^ = dA K + diag(e^{G_i}) dO S^T, then S as in the forward
 *   role 1, reverse sweep:  dV  = A^T dO + diag(e^{G_last - G_j}) K dS'
 *                           dK  = dA^T Q^ + diag(e^{G_last - G_j}) V dS'^T
 *                           dS <- e^{G_last} dS' + (diag(e^{G_i}) Q^)^T dO
 * with q^ = scale q, A = (Q^ K^T) * Gamma, dA = (dO V^T) * Gamma (docs/MATH.md).
 * Both state updates use the hi/lo split of the forward so S and dS keep
 * fp32-level accuracy (the initial-state gradient is an fp32 output).
 * The state-only backward is role 1 with dO = 0 (and no q).
 */
#ifndef LA_CUDA_BWD_KERNEL_CUH
#define LA_CUDA_BWD_KERNEL_CUH

#include "fwd_kernel.cuh"

/* Fragment row addresses (bytes) of one lane for ldmatrix.x4, P = row pitch
 * in elements.  "rm": the matrix is stored with the fragment's rows as
 * smem rows; "tr": stored transposed (loaded with .trans). */
__device__ __forceinline__ uint32_t frag_a_rm(uint32_t base, int P, int m0, int k0, int lane) {
    return base + ((m0 + (lane & 15)) * P + k0 + (lane >> 4) * 8) * 2;
}
__device__ __forceinline__ uint32_t frag_a_tr(uint32_t base, int P, int m0, int k0, int lane) {
    return base + ((k0 + (lane >> 4) * 8 + (lane & 7)) * P + m0 + ((lane >> 3) & 1) * 8) * 2;
}
__device__ __forceinline__ uint32_t frag_b_rm(uint32_t base, int P, int n0, int k0, int lane) {
    return base + ((n0 + (lane >> 4) * 8 + (lane & 7)) * P + k0 + ((lane >> 3) & 1) * 8) * 2;
}
__device__ __forceinline__ uint32_t frag_b_tr(uint32_t base, int P, int n0, int k0, int lane) {
    return base + ((k0 + ((lane >> 3) & 1) * 8 + (lane & 7)) * P + n0 + (lane >> 4) * 8) * 2;
}

/* acc[16 x 8*NT] += A[m0.., k] . B[k, n0..] over k in [0, 16*ksteps). */
template <typename T, int NT, bool A_TR, bool B_TR>
__device__ __forceinline__ void warp_mma(float (*acc)[4], uint32_t sa, int pa, int m0, uint32_t sb, int pb, int n0,
                                         int ksteps, int kmax_unrolled_bound, int lane) {
    (void)kmax_unrolled_bound;
    for (int ks = 0; ks < ksteps; ks++) {
        uint32_t a[4];
        if (A_TR) ldmatrix_x4_trans_at(a, frag_a_tr(sa, pa, m0, ks * 16, lane));
        else ldmatrix_x4_at(a, frag_a_rm(sa, pa, m0, ks * 16, lane));
#pragma unroll
        for (int np = 0; np < NT / 2; np++) {
            uint32_t b[4];
            if (B_TR) ldmatrix_x4_trans_at(b, frag_b_tr(sb, pb, n0 + np * 16, ks * 16, lane));
            else ldmatrix_x4_at(b, frag_b_rm(sb, pb, n0 + np * 16, ks * 16, lane));
            mma_16816<T>(acc[2 * np], a, b);
            mma_16816<T>(acc[2 * np + 1], a, b + 2);
        }
    }
}

/* The masked, decayed intra-chunk matrix of a 16x32 warp tile into shared
 * memory: M[i][j] = mul * acc * e^{G_i - G_j} for j <= i < n, else 0. */
template <typename T>
__device__ __forceinline__ void store_masked(T *M, int MP, const float (*acc)[4], const float *Gs, int n, int wm,
                                             int wn, int lane, float mul) {
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
            int i = 16 * wm + (lane >> 2) + 8 * hr;
            int j = 32 * wn + nt * 8 + 2 * (lane & 3);
            float gi = Gs[i];
            float v0 = (i >= j && i < n) ? mul * acc[nt][2 * hr] * __expf(gi - Gs[j]) : 0.0f;
            float v1 = (i >= j + 1 && i < n) ? mul * acc[nt][2 * hr + 1] * __expf(gi - Gs[j + 1]) : 0.0f;
            *reinterpret_cast<uint32_t *>(&M[i * MP + j]) = mma_traits<T>::pack(v0, v1);
        }
}

/* Store a 16 x (8*NT) warp tile of a token tensor: rows 16wm.. of the chunk
 * (< n), columns c0.. (< X), value = mul * (acc + f_row * acc2 ... ) given as acc. */
template <typename T, int NT>
__device__ __forceinline__ void store_tok(const la_tok_t &x, int64_t b, int64_t h, int64_t tok0, const float (*acc)[4],
                                          int wm, int c0, int n, int X, int lane, float mul) {
    T *base = const_cast<T *>(static_cast<const T *>(x.ptr)) + b * x.sb + h * x.sh + tok0 * x.st;
#pragma unroll
    for (int i = 0; i < NT; i++)
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
            int r = 16 * wm + (lane >> 2) + 8 * hr;
            int c = c0 + i * 8 + 2 * (lane & 3);
            if (r >= n) continue;
            T *dst = base + r * x.st + c * x.sc;
            if (c < X) dst[0] = T(mul * acc[i][2 * hr]);
            if (c + 1 < X) dst[x.sc] = T(mul * acc[i][2 * hr + 1]);
        }
}

/* Shared memory of one backward block. */
__host__ __device__ constexpr int bwd_smem_bytes(int DP, int EP, int elem) {
    return (2 * LA_C * (DP + 8) + 2 * LA_C * (EP + 8) + 2 * LA_C * (LA_C + 8) + DP * (EP + 8)) * elem +
           2 * LA_C * 4;
}

/* DSTATE_ONLY: the reverse state pass of multi-segment runs: role 1 only,
 * from a zero gradient, no dK/dV; the segment's local dS goes to seg_dstate. */
template <typename T, int DP, int EP, bool DSTATE_ONLY>
__global__ void __launch_bounds__(LA_CUDA_THREADS, 1) la_bwd_kernel(const la_bwd_params_t bp) {
    const la_fwd_params_t &p = bp.f;
    constexpr int QP = DP + 8, VP = EP + 8, AP = LA_C + 8;
    constexpr int MT = DP / 64, NTS = EP / 16;   /* state tile per warp: (DP/4) x (EP/2) */
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *Qs = reinterpret_cast<T *>(smem_raw);     /* [64][QP] */
    T *Ks = Qs + LA_C * QP;                      /* [64][QP] */
    T *Vs = Ks + LA_C * QP;                      /* [64][VP] */
    T *Ds = Vs + LA_C * VP;                      /* dO [64][VP] */
    T *As = Ds + LA_C * VP;                      /* A  [64][AP] (role 1) */
    T *dAs = As + LA_C * AP;                     /* dA [64][AP] */
    T *Ss = dAs + LA_C * AP;                     /* S (role 0) or dS (role 1) copy [DP][VP] */
    float *gs = reinterpret_cast<float *>(Ss + DP * VP);
    float *Gs = gs + LA_C;

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int wm = warp & 3, wn = warp >> 2;
    /* Without d_o (the state-only backward) only role 1 runs, and q and dO
     * enter as zero tiles (loaded without reading memory). */
    const bool has_do = bp.d_o.ptr != nullptr;
    const int h = blockIdx.y, role = DSTATE_ONLY || !has_do ? 1 : blockIdx.z;
    const seg_loc L = locate_segment(p.seg, blockIdx.x);
    const int64_t slot = (int64_t)blockIdx.x * p.H + h;
    const bool multi = p.seg_state != nullptr;
    const uint32_t sQ = smem_addr(Qs), sK = smem_addr(Ks), sV = smem_addr(Vs), sD = smem_addr(Ds);
    const uint32_t sA = smem_addr(As), sdA = smem_addr(dAs), sS = smem_addr(Ss);
    const float ld_head = p.decay == 1 ? p.ld[h * p.ld_sh] : 0.0f;
    const int64_t nchunks = (L.te - L.ts + LA_C - 1) / LA_C;

    /* The register state: S (role 0, from s0) or dS (role 1, from dsN). */
    float S[MT][NTS][4];
    const float *src = nullptr;
    int64_t ssd = 0, sse = 0;
    if (DSTATE_ONLY) {
        /* local gradient: starts at zero */
    } else if (multi) { /* folded: incoming state (role 0) or outgoing-state gradient (role 1) */
        src = (role == 0 ? p.seg_state : bp.seg_dstate) + slot * DP * p.ept;
        ssd = p.ept;
        sse = 1;
    } else if (role == 0 && p.s0.ptr) {
        src = p.s0.ptr + L.s * p.s0.ss + h * p.s0.sh; ssd = p.s0.sd; sse = p.s0.se;
    } else if (role == 1 && bp.dsN.ptr) {
        src = bp.dsN.ptr + L.s * bp.dsN.ss + h * bp.dsN.sh; ssd = bp.dsN.sd; sse = bp.dsN.se;
    }
    state_load<DP, EP>(S, src, ssd, sse, p.D, p.E, wm, wn, lane);
    auto write_state_copy = [&]() { state_copy<T, DP, EP>(S, Ss, wm, wn, lane); };
    write_state_copy();

    for (int64_t it = 0; it < nchunks; it++) {
        const int64_t c = role == 0 ? it : nchunks - 1 - it;
        const int64_t t0 = L.ts + c * LA_C;
        const int n = (int)((L.te - t0) < LA_C ? (L.te - t0) : LA_C);
        __syncthreads(); /* previous chunk done with every tile; state copy written */
        load_tile<T, DP>(Qs, p.q, L.b, h, L.tb + t0, has_do ? n : 0, p.D, has_do && p.vec_ok != 0);
        load_tile<T, DP>(Ks, p.k, L.b, h, L.tb + t0, n, p.D, p.vec_ok != 0);
        load_tile<T, EP>(Vs, p.v, L.b, h, L.tb + t0, n, p.E, p.vec_ok != 0);
        load_tile<T, EP>(Ds, bp.d_o, L.b, h, L.tb + t0, has_do ? n : 0, p.E, has_do && p.vec_ok != 0);
        if (p.decay == 2 && threadIdx.x < LA_C) {
            int r = threadIdx.x;
            gs[r] = r < n ? p.ld[L.b * p.ld_sb + h * p.ld_sh + (L.tb + t0 + r) * p.ld_st] : 0.0f;
        }
        cp_async_commit();
        cp_async_wait<0>();
        __syncthreads();
        if (warp == 0) chunk_cumsum(gs, Gs, p.decay, ld_head, lane); /* chunk-local, fixed order */
        __syncthreads();
        const float G_last = Gs[n - 1];

        /* dA = (dO V^T) * Gamma (both roles); A = (Q^ K^T) * Gamma (role 1). */
        if (!DSTATE_ONLY) {
            float acc[4][4] = {};
            warp_mma<T, 4, false, false>(acc, sD, VP, 16 * wm, sV, VP, 32 * wn, EP / 16, 0, lane);
            store_masked<T>(dAs, AP, acc, Gs, n, wm, wn, lane, 1.0f);
        }
        if (role == 1 && !DSTATE_ONLY) {
            float acc[4][4] = {};
            warp_mma<T, 4, false, false>(acc, sQ, QP, 16 * wm, sK, QP, 32 * wn, DP / 16, 0, lane);
            store_masked<T>(As, AP, acc, Gs, n, wm, wn, lane, p.scale);
        }
        __syncthreads();

        if (role == 0) {
            /* dQ^ = diag(e^{G_i}) dO S^T + dA K: warp tile rows 16wm.., cols wn*DP/2.. */
            float acc[DP / 16][4] = {}, acc2[DP / 16][4] = {};
            warp_mma<T, DP / 16, false, false>(acc, sD, VP, 16 * wm, sS, VP, wn * (DP / 2), EP / 16, 0, lane);
            float f0 = __expf(Gs[16 * wm + (lane >> 2)]), f1 = __expf(Gs[16 * wm + (lane >> 2) + 8]);
            warp_mma<T, DP / 16, false, true>(acc2, sdA, AP, 16 * wm, sK, QP, wn * (DP / 2), wm + 1, 0, lane);
#pragma unroll
            for (int i = 0; i < DP / 16; i++) {
                acc[i][0] = acc[i][0] * f0 + acc2[i][0]; acc[i][1] = acc[i][1] * f0 + acc2[i][1];
                acc[i][2] = acc[i][2] * f1 + acc2[i][2]; acc[i][3] = acc[i][3] * f1 + acc2[i][3];
            }
            store_tok<T, DP / 16>(bp.dq, L.b, h, L.tb + t0, acc, wm, wn * (DP / 2), n, p.D, lane, p.scale);
        } else if (!DSTATE_ONLY) {
            /* dV = A^T dO + diag(f_j) K dS': rows j = 16wm.., cols wn*EP/2.. */
            const float fj0 = (16 * wm + (lane >> 2) < n) ? __expf(G_last - Gs[16 * wm + (lane >> 2)]) : 0.0f;
            const float fj1 = (16 * wm + (lane >> 2) + 8 < n) ? __expf(G_last - Gs[16 * wm + (lane >> 2) + 8]) : 0.0f;
            {
                float acc[EP / 16][4] = {}, acc2[EP / 16][4] = {};
                warp_mma<T, EP / 16, false, true>(acc, sK, QP, 16 * wm, sS, VP, wn * (EP / 2), DP / 16, 0, lane);
                /* A^T dO: only i >= j contributes, i.e. k-steps from wm on. */
                for (int ks = wm; ks < LA_C / 16; ks++) {
                    uint32_t a[4];
                    ldmatrix_x4_trans_at(a, frag_a_tr(sA, AP, 16 * wm, ks * 16, lane));
#pragma unroll
                    for (int np = 0; np < EP / 32; np++) {
                        uint32_t b[4];
                        ldmatrix_x4_trans_at(b, frag_b_tr(sD, VP, wn * (EP / 2) + np * 16, ks * 16, lane));
                        mma_16816<T>(acc2[2 * np], a, b);
                        mma_16816<T>(acc2[2 * np + 1], a, b + 2);
                    }
                }
#pragma unroll
                for (int i = 0; i < EP / 16; i++) {
                    acc[i][0] = acc[i][0] * fj0 + acc2[i][0]; acc[i][1] = acc[i][1] * fj0 + acc2[i][1];
                    acc[i][2] = acc[i][2] * fj1 + acc2[i][2]; acc[i][3] = acc[i][3] * fj1 + acc2[i][3];
                }
                store_tok<T, EP / 16>(bp.dv, L.b, h, L.tb + t0, acc, wm, wn * (EP / 2), n, p.E, lane, 1.0f);
            }
            /* dK = dA^T Q^ + diag(f_j) V dS'^T: rows j, cols wn*DP/2.. */
            {
                float acc[DP / 16][4] = {}, acc2[DP / 16][4] = {};
                warp_mma<T, DP / 16, false, false>(acc, sV, VP, 16 * wm, sS, VP, wn * (DP / 2), EP / 16, 0, lane);
                for (int ks = wm; ks < LA_C / 16; ks++) {
                    uint32_t a[4];
                    ldmatrix_x4_trans_at(a, frag_a_tr(sdA, AP, 16 * wm, ks * 16, lane));
#pragma unroll
                    for (int np = 0; np < DP / 32; np++) {
                        uint32_t b[4];
                        ldmatrix_x4_trans_at(b, frag_b_tr(sQ, QP, wn * (DP / 2) + np * 16, ks * 16, lane));
                        mma_16816<T>(acc2[2 * np], a, b);
                        mma_16816<T>(acc2[2 * np + 1], a, b + 2);
                    }
                }
#pragma unroll
                for (int i = 0; i < DP / 16; i++) {
                    acc[i][0] = acc[i][0] * fj0 + p.scale * acc2[i][0]; acc[i][1] = acc[i][1] * fj0 + p.scale * acc2[i][1];
                    acc[i][2] = acc[i][2] * fj1 + p.scale * acc2[i][2]; acc[i][3] = acc[i][3] * fj1 + p.scale * acc2[i][3];
                }
                store_tok<T, DP / 16>(bp.dk, L.b, h, L.tb + t0, acc, wm, wn * (DP / 2), n, p.D, lane, 1.0f);
            }
        }

        /* State update.  role 0: S <- e^{G_last} S + (f_j k_j)^T v_j, f_j = e^{G_last - G_j};
         * role 1: dS <- e^{G_last} dS + (f_i q^_i)^T dO_i, f_i = e^{G_i}.  Hi/lo split as in the forward. */
        const float decay_all = __expf(G_last);
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < NTS; nt++)
#pragma unroll
                for (int r = 0; r < 4; r++) S[mt][nt][r] *= decay_all;
        const uint32_t sX = role == 0 ? sK : sQ;  /* the [token][d] operand */
        const uint32_t sY = role == 0 ? sV : sD;  /* the [token][e] operand */
        state_update<T, DP, EP>(S, sX, QP, sY, VP, [&](int j) {
            return j >= n ? 0.0f : role == 0 ? __expf(G_last - Gs[j]) : p.scale * __expf(Gs[j]);
        }, wm, wn, lane);
        __syncthreads(); /* every warp is past its reads of the state copy */
        write_state_copy();
    }

    /* Reverse state pass: the segment's local gradient. */
    if (DSTATE_ONLY) state_store<DP, EP>(S, bp.seg_dstate + slot * DP * p.ept, p.ept, 1, DP, p.ept, wm, wn, lane);
    /* role 1 of a sequence's first segment: what is left in dS is the
     * gradient of the initial state. */
    if (!DSTATE_ONLY && role == 1 && L.sp == 0 && bp.ds0.ptr)
        state_store<DP, EP>(S, bp.ds0.ptr + L.s * bp.ds0.ss + h * bp.ds0.sh, bp.ds0.sd, bp.ds0.se, p.D, p.E, wm, wn,
                            lane);
}

/* Stitch segment state gradients from the last segment back, per (sequence,
 * head) and element: out[last] = dsN (or 0); out[p-1] = exp(logdecay[p]) out[p]
 * + local[p].  Each slot's local gradient is replaced by out[p], the gradient
 * arriving at the segment's outgoing state.  Fixed order: deterministic. */
template <int DP>
__global__ void la_rfold_kernel(const la_bwd_params_t bp, int blocks_per_state) {
    const la_fwd_params_t &p = bp.f;
    const int s = blockIdx.x / blocks_per_state, h = blockIdx.y;
    const int idx = (blockIdx.x % blocks_per_state) * blockDim.x + threadIdx.x;
    if (idx >= DP * p.ept) return;
    fold_cells<DP, true>(p, bp.seg_dstate, bp.dsN, s, h, idx);
}

#endif
