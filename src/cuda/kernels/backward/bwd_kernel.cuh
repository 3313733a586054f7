/*
 * bwd_kernel.cuh - the chunked backward: one block per (segment of a
 * sequence, head) and role, D and E up to 128, Q/K/V/dO tiles in one or two
 * stages, and the log-decay gradient's chunk terms (DLD; docs/CUDA-BACKWARD.md).
 *
 * Two roles share one launch (blockIdx.z), each owning the full D x E state
 * of its (sequence, head) in registers (dQ and dK sum over E, dV over D, so
 * the state cannot be sliced without cross-block sums):
 *   role 0, forward sweep:  dQ^ = dA K + diag(e^{G_i}) dO S^T, then S as in the forward
 *   role 1, reverse sweep:  dV  = A^T dO + diag(e^{G_last - G_j}) K dS'
 *                           dK  = dA^T Q^ + diag(e^{G_last - G_j}) V dS'^T
 *                           dS <- e^{G_last} dS' + (diag(e^{G_i}) Q^)^T dO
 * with q^ = scale q, A = (Q^ K^T) * Gamma, dA = (dO V^T) * Gamma (docs/MATH.md).
 * dS keeps fp32-level accuracy (the forward's hi/lo split) when the
 * initial-state gradient, an f32 output, is wanted.
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

/* acc[16 x 8*NT] += A[m0.., k] . B[k, n0..] over k in [16*k0, 16*ksteps),
 * operands of input dtype T (f32: split, each lo plane `plane` bytes after
 * its hi plane; op_of; NP = 3: both operands' third planes `plane` bytes
 * after their lo planes, six mmas a product, mma_x3). */
template <typename T, int NT, bool A_TR, bool B_TR, int NP = op_planes<T>::value>
__device__ __forceinline__ void warp_mma_step(float (*acc)[4], uint32_t sa, int pa, int m0, uint32_t sb, int pb, int n0,
                                              int ks, int lane, uint32_t plane) {
    typedef typename op_of<T>::type OT;
    constexpr bool SPLIT = op_of<T>::split;
    static_assert(NP != 3 || SPLIT, "three planes are a split operand's");
    {
        uint32_t a[4], al[4], ar[4];
        (void)ar;
        const uint32_t at = A_TR ? frag_a_tr(sa, pa, m0, ks * 16, lane) : frag_a_rm(sa, pa, m0, ks * 16, lane);
        if (A_TR) ldmatrix_x4_trans_at(a, at);
        else ldmatrix_x4_at(a, at);
        if (SPLIT) {
            if (A_TR) ldmatrix_x4_trans_at(al, at + plane);
            else ldmatrix_x4_at(al, at + plane);
        }
        if constexpr (NP == 3) {
            if (A_TR) ldmatrix_x4_trans_at(ar, at + 2 * plane);
            else ldmatrix_x4_at(ar, at + 2 * plane);
        }
#pragma unroll
        for (int np = 0; np < NT / 2; np++) {
            uint32_t b[4], bl[4], br[4];
            (void)br;
            const uint32_t bt = B_TR ? frag_b_tr(sb, pb, n0 + np * 16, ks * 16, lane)
                                     : frag_b_rm(sb, pb, n0 + np * 16, ks * 16, lane);
            if (B_TR) ldmatrix_x4_trans_at(b, bt);
            else ldmatrix_x4_at(b, bt);
            if (SPLIT) {
                if (B_TR) ldmatrix_x4_trans_at(bl, bt + plane);
                else ldmatrix_x4_at(bl, bt + plane);
            }
            if constexpr (NP == 3) {
                if (B_TR) ldmatrix_x4_trans_at(br, bt + 2 * plane);
                else ldmatrix_x4_at(br, bt + 2 * plane);
                mma_x3<OT>(acc[2 * np], a, al, ar, b, bl, br);
                mma_x3<OT>(acc[2 * np + 1], a, al, ar, b + 2, bl + 2, br + 2);
            } else {
                mma_x<OT, SPLIT>(acc[2 * np], a, al, b, bl);
                mma_x<OT, SPLIT>(acc[2 * np + 1], a, al, b + 2, bl + 2);
            }
        }
    }
}
template <typename T, int NT, bool A_TR, bool B_TR, int NP = op_planes<T>::value>
__device__ __forceinline__ void warp_mma(float (*acc)[4], uint32_t sa, int pa, int m0, uint32_t sb, int pb, int n0,
                                         int ksteps, int k0, int lane, uint32_t plane) {
    for (int ks = k0; ks < ksteps; ks++)
        warp_mma_step<T, NT, A_TR, B_TR, NP>(acc, sa, pa, m0, sb, pb, n0, ks, lane, plane);
}

/* acc *= the rows' factors (f0: rows lane/4, f1: rows lane/4 + 8). */
template <int NT>
__device__ __forceinline__ void rows_scale(float (*acc)[4], float f0, float f1) {
#pragma unroll
    for (int i = 0; i < NT; i++) {
        acc[i][0] *= f0; acc[i][1] *= f0;
        acc[i][2] *= f1; acc[i][3] *= f1;
    }
}

/* acc = f_row * acc + mul * acc2 on a 16 x 8*NT warp tile: the inter part
 * scaled by its rows' decay factors (f0: rows lane/4, f1: rows lane/4 + 8),
 * plus the intra part. */
template <int NT>
__device__ __forceinline__ void rows_combine(float (*acc)[4], const float (*acc2)[4], float f0, float f1, float mul) {
#pragma unroll
    for (int i = 0; i < NT; i++) {
        acc[i][0] = acc[i][0] * f0 + mul * acc2[i][0]; acc[i][1] = acc[i][1] * f0 + mul * acc2[i][1];
        acc[i][2] = acc[i][2] * f1 + mul * acc2[i][2]; acc[i][3] = acc[i][3] * f1 + mul * acc2[i][3];
    }
}

/* The decay mask of a 16x32 warp tile: f[nt][2hr + b] = e^{G_i - G_j} for
 * j <= i < n, else 0 (i = 16wm + lane/4 + 8hr, j = 32wn + 8nt + 2(lane%4) + b).
 * Computed once per chunk and shared by A, dA and the decay gradient. */
__device__ __forceinline__ void mask_factors(float (*f)[4], const float *Gs, int n, int wm, int wn, int lane) {
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
        for (int hr = 0; hr < 2; hr++)
#pragma unroll
            for (int b = 0; b < 2; b++) {
                int i = 16 * wm + (lane >> 2) + 8 * hr, j = 32 * wn + nt * 8 + 2 * (lane & 3) + b;
                f[nt][2 * hr + b] = (i >= j && i < n) ? exp_nonpos(Gs[i] - Gs[j]) : 0.0f;
            }
}

/* mask_factors of a regular chunk (all 64 rows, factors e^{ld (i - j)}):
 * Ts[64 + i - j] from the table (0 above the diagonal). */
__device__ __forceinline__ void mask_factors_regular(float (*f)[4], const float *Ts, int wm, int wn, int lane) {
    const float *tdiag = Ts + LA_C + 16 * wm + (lane >> 2) - 32 * wn - 2 * (lane & 3);
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
        for (int hr = 0; hr < 2; hr++)
#pragma unroll
            for (int b = 0; b < 2; b++) f[nt][2 * hr + b] = tdiag[8 * hr - 8 * nt - b];
}

/* The masked, decayed intra-chunk matrix of a 16x32 warp tile into shared
 * memory: M[i][j] = mul * acc * f (mask_factors), an operand of input dtype
 * T (f32: lo plane `plane` elements further). */
template <typename T, typename OT>
__device__ __forceinline__ void store_masked(OT *M, int MP, const float (*acc)[4], const float (*f)[4], int wm, int wn,
                                             int lane, float mul, int plane) {
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
            int i = 16 * wm + (lane >> 2) + 8 * hr;
            int j = 32 * wn + nt * 8 + 2 * (lane & 3);
            put_op2<OT, op_of<T>::split>(&M[i * MP + j], plane, mul * acc[nt][2 * hr] * f[nt][2 * hr],
                                         mul * acc[nt][2 * hr + 1] * f[nt][2 * hr + 1]);
        }
}

/* A 16 x 8NT warp tile of gradients (value mul * acc, chunk rows 16wm..,
 * columns c0..) of a full chunk, stored as 16-byte row pieces: the warp
 * writes it to a block of shared memory only it uses (stage, pitch P
 * elements), reads it back by rows and stores 8 rows x 64 bytes per
 * instruction (NT = 4) where store_tok's column pairs store 8 rows x 16
 * bytes: a quarter of the store instructions, whose queue had backed up
 * (ncu: long-scoreboard stalls on registers that queued stores still held). */
template <typename T, int NT>
__device__ __forceinline__ void store_tok_staged_half(const la_tok_t &x, int64_t b, int64_t h, int64_t tok0,
                                                 const float (*acc)[4], int wm, int c0, int lane, float mul, T *stage,
                                                 int P) {
    static_assert(NT % 2 == 0, "whole 16-column pieces");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const uint32_t base = smem_addr(stage + ((lane & 7) + 8 * ((lane >> 3) & 1)) * P + 8 * (lane >> 4));
#pragma unroll
    for (int np = 0; np < NT / 2; np++)
        stmatrix_x4_at(base + np * 32, mma_traits<T>::pack(mul * acc[2 * np][0], mul * acc[2 * np][1]),
                       mma_traits<T>::pack(mul * acc[2 * np][2], mul * acc[2 * np][3]),
                       mma_traits<T>::pack(mul * acc[2 * np + 1][0], mul * acc[2 * np + 1][1]),
                       mma_traits<T>::pack(mul * acc[2 * np + 1][2], mul * acc[2 * np + 1][3]));
#else
#pragma unroll
    for (int i = 0; i < NT; i++)
#pragma unroll
        for (int hr = 0; hr < 2; hr++)
            *reinterpret_cast<uint32_t *>(stage + ((lane >> 2) + 8 * hr) * P + 8 * i + 2 * (lane & 3)) =
                mma_traits<T>::pack(mul * acc[i][2 * hr], mul * acc[i][2 * hr + 1]);
#endif
    __syncwarp();
    T *g = const_cast<T *>(static_cast<const T *>(x.ptr)) + b * x.sb + h * x.sh + (tok0 + 16 * wm) * x.st + c0;
#pragma unroll
    for (int k = 0; k < NT / 2; k++) {
        const int seg = lane + 32 * k, r = seg / NT, sc = seg % NT;
        *reinterpret_cast<uint4 *>(g + r * x.st + sc * 8) = *reinterpret_cast<const uint4 *>(stage + r * P + sc * 8);
    }
    __syncwarp(); /* the stage may be written again */
}
/* f32 outputs never take the staged path (their kernels pass staged = false). */
template <typename T, int NT, typename OT>
__device__ __forceinline__ void store_tok_staged(const la_tok_t &x, int64_t b, int64_t h, int64_t tok0,
                                                 const float (*acc)[4], int wm, int c0, int lane, float mul, OT *stage,
                                                 int P) {
    if constexpr (sizeof(T) == 2) store_tok_staged_half<T, NT>(x, b, h, tok0, acc, wm, c0, lane, mul, stage, P);
}

/* Floats of the decay gradient's reduction scratch: per-row and per-column
 * partial sums of the warps (see la_bwd_kernel), and one per warp. */
#define LA_DLD_RED (10 * LA_C + 8)

/* Shared memory of one backward block: the Q, K, V, dO tiles (STAGES = 2:
 * double-buffered, the next chunk's loads in flight during this one), A,
 * dA, two state copies (the state's double buffer, or with DLD the state
 * and X / Y below), raw decays, every warp's own decay cumsum, and with DLD
 * the reduction scratch.  At DP = EP = 128: 158 KB for one stage (161 KB
 * with DLD, inside the A100's 163 KB), 226.5 KB for two (H100, H200, B200:
 * 227 KB). */
__host__ __device__ constexpr int bwd_op_elems(int DP, int EP, int stages) {
    return stages * (2 * LA_C * (DP + 8) + 2 * LA_C * (EP + 8)) + 2 * LA_C * (LA_C + 8) + 2 * DP * (EP + 8);
}
/* elem: bytes of one operand element (the input dtype's size: f32's
 * operands take two bf16 planes; 6 with the decay gradient's third plane). */
/* The raw log decays (SCALAR_TOKEN, [stages][64]) share their floats with
 * the regular-chunk tables (other kinds; fwd_kernel.cuh's Ts and a factor
 * pair table): LA_FWD_TABS floats at least. */
__host__ __device__ constexpr int bwd_smem_bytes(int DP, int EP, int elem, bool dld, int stages) {
    return bwd_op_elems(DP, EP, stages) * elem + (fwd_tabs_floats(stages) + LA_CUDA_THREADS / 32 * 2 * LA_C) * 4 +
           (dld ? LA_DLD_RED * 4 : 0);
}
/* Where a GPU's blocks are small (sm_120: 99 KB), the backward runs in 64 x 64
 * head-dim tiles (host/plan.cu, bwd_tiles): that block must fit there. */
static_assert(bwd_smem_bytes(64, 64, 2, true, 1) <= 99 * 1024, "the 64 x 64 backward block must fit sm_120's 99 KB");

/* Row dot products of a 16 x 8NT accumulator tile (rows r0 + lane/4 + 8hr,
 * columns c0 + 8i + 2(lane%4) + {0,1}) with the same entries of X (shared
 * memory, pitch P): out[hr], summed over the lane quad in a fixed order. */
template <typename T, int NT, int NP = op_planes<T>::value, typename OT>
__device__ __forceinline__ void tile_row_dots(const OT *X, int P, const float (*acc)[4], int r0, int c0, int lane,
                                              float out[2], int plane) {
    /* An f32 input's element is its planes' sum. */
    auto x = [&](const OT *e) {
        if constexpr (NP == 3) return float(e[0]) + float(e[plane]) + float(e[2 * plane]);
        else return op_of<T>::split ? float(e[0]) + float(e[plane]) : float(e[0]);
    };
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
        const OT *row = X + (r0 + (lane >> 2) + 8 * hr) * P + c0 + 2 * (lane & 3);
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < NT; i++) s += x(row + i * 8) * acc[i][2 * hr] + x(row + i * 8 + 1) * acc[i][2 * hr + 1];
        s += __shfl_xor_sync(0xffffffffu, s, 1);
        s += __shfl_xor_sync(0xffffffffu, s, 2);
        out[hr] = s;
    }
}

/* The two row dots of this lane's quad into red[col_block * 64 + row]. */
__device__ __forceinline__ void put_row_dots(float *red, int col_block, int r0, int lane, const float d[2]) {
    if ((lane & 3) == 0) {
        red[col_block * LA_C + r0 + (lane >> 2)] = d[0];
        red[col_block * LA_C + r0 + (lane >> 2) + 8] = d[1];
    }
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
    return x;
}

/* Index of chunk ci of sequence s in the [H][tc] chunk arrays. */
__device__ __forceinline__ int64_t dld_chunk_index(const la_bwd_params_t &bp, int s, int h, int64_t ci) {
    int64_t base = bp.f.seg.chunk_off ? bp.f.seg.chunk_off[s] : (int64_t)s * bp.nch_seq;
    return (int64_t)h * bp.tc + base + ci;
}

/* ---- the log-decay gradient (DLD), docs/CUDA-BACKWARD.md --------------------------
 * For token r of chunk c (local index), with every term a genuine pair
 * contribution (docs/MATH.md):
 *   dg_r = T1_r + T2_r + z_c + T4_r
 *   T1_r = sum_{t >= r} q^_t . dq^inter_t         role 0 (u_t below)
 *   T2_r = sum_{i >= r > j} M_ij, M = A o P          role 1, P = dO V^T
 *   T4_r = sum_{m < r} k_m . dk^inter_m              role 1 (w_m)
 *   z_c  = pairs from before chunk c to after it    (e^{G_last} <S_{c-1}, dS'_c>)
 * z_c needs S and dS' of the same chunk, which live in different roles.  With
 * col_c = pairs from chunks <= c-2 (and the initial state) to chunk c and
 * row_c = pairs from chunk c to chunks >= c+2 (and the final state),
 *   z_{c+1} = z_c + row_c - col_{c+1},   z_0 = e^{G_last,0} <S0, dS'_0>,
 * where role 0 forms col_c from X = e^{G_last,c-1} S_{c-2} (its state before
 * chunk c-1's tokens) and role 1 forms row_c from Y = e^{G_last,c+1} dS'_{c+1}.
 * No adjacent-chunk pair ever enters the recursion, so at strong decay every
 * term is as small as z itself: no cancellation.  la_dld_finish runs it.
 * T2 uses the same telescoping inside the chunk:
 *   T2_{r+1} = T2_r + sum_{i > r} M_ir - sum_{j < r} M_rj,
 * i.e. T2_r = sum_{j < r} (colsum_j - rowsum_j). */

/* Row and column sums of M_ij = scale (q_i.k_j)(dO_i.v_j) e^{G_i - G_j} over
 * i > j, i < n of this warp's 16x32 tile: rows into red_mr[wn][i], columns
 * into red_mc[wm][j] (fixed shuffle order: deterministic). */
__device__ __forceinline__ void dld_pair_partials(const float (*qk)[4], const float (*pv)[4], const float (*f)[4],
                                                  float scale, int wm, int wn, int lane, float *red_mr, float *red_mc) {
    float rs[2] = {0.0f, 0.0f}, cs[4][2];
#pragma unroll
    for (int nt = 0; nt < 4; nt++) {
        cs[nt][0] = cs[nt][1] = 0.0f;
#pragma unroll
        for (int hr = 0; hr < 2; hr++)
#pragma unroll
            for (int b = 0; b < 2; b++) {
                int i = 16 * wm + (lane >> 2) + 8 * hr, j = 32 * wn + nt * 8 + 2 * (lane & 3) + b;
                float m = i > j ? scale * qk[nt][2 * hr + b] * pv[nt][2 * hr + b] * f[nt][2 * hr + b] : 0.0f;
                rs[hr] += m;
                cs[nt][b] += m;
            }
    }
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
        rs[hr] += __shfl_xor_sync(0xffffffffu, rs[hr], 1);
        rs[hr] += __shfl_xor_sync(0xffffffffu, rs[hr], 2);
    }
    if ((lane & 3) == 0) {
        red_mr[wn * LA_C + 16 * wm + (lane >> 2)] = rs[0];
        red_mr[wn * LA_C + 16 * wm + (lane >> 2) + 8] = rs[1];
    }
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
        for (int b = 0; b < 2; b++) {
            float x = cs[nt][b];
            x += __shfl_xor_sync(0xffffffffu, x, 4);
            x += __shfl_xor_sync(0xffffffffu, x, 8);
            x += __shfl_xor_sync(0xffffffffu, x, 16);
            if (lane < 4) red_mc[wm * LA_C + 32 * wn + nt * 8 + 2 * lane + b] = x;
        }
}

/* This thread's part of <S, src> (src: fp32 [D][E] with strides). */
template <int DP, int EP>
__device__ __forceinline__ float state_dot(const float (&S)[DP / 64][EP / 16][4], const float *src, int64_t sd,
                                           int64_t se, int D, int E, int wm, int wn, int lane) {
    float z = 0.0f;
    state_each<DP, EP>(S, wm, wn, lane, [&](const float &x, int d, int e) {
        if (d < D && e < E) z += x * src[d * sd + e * se];
    });
    return z;
}

/* Warp 0, role 0, after chunk ci's partial sums: T1 (per token, or its sum
 * over the chunk for SCALAR_HEAD) and col_ci (when X was there). */
__device__ __forceinline__ void dld_chunk_role0(const la_bwd_params_t &bp, const seg_loc &L, int h, int64_t ci,
                                                bool has_x, int64_t t0, int n, const float *Gs, const float *red_u,
                                                const float *red_c, int64_t tok_row, int lane) {
    const la_fwd_params_t &p = bp.f;
    float u[2], cc[2];
#pragma unroll
    for (int k = 0; k < 2; k++) {
        int r = 2 * lane + k;
        float f = r < n ? p.scale * exp_nonpos(Gs[r]) : 0.0f;
        u[k] = (red_u[r] + red_u[LA_C + r]) * f;
        cc[k] = has_x ? (red_c[r] + red_c[LA_C + r]) * f : 0.0f;
    }
    /* T1_r = sum_{t >= r} u_t: suffix scan over lane pairs (no subtraction). */
    float incl = u[0] + u[1];
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
        float y = __shfl_down_sync(0xffffffffu, incl, off);
        if (lane + off < 32) incl += y;
    }
    float next = __shfl_down_sync(0xffffffffu, incl, 1);
    if (lane == 31) next = 0.0f;
    const float t1b = next + u[1], t1a = t1b + u[0];
    const int64_t idx = dld_chunk_index(bp, L.s, h, ci);
    if (p.decay == 2) {
        float *dst = bp.dld_tok + tok_row + t0;
        if (2 * lane < n) dst[2 * lane] = t1a;
        if (2 * lane + 1 < n) dst[2 * lane + 1] = t1b;
    } else {
        float s1 = warp_sum((2 * lane < n ? t1a : 0.0f) + (2 * lane + 1 < n ? t1b : 0.0f));
        if (lane == 0) bp.dld_chunk[2 * (int64_t)bp.f.H * bp.tc + idx] = s1;
    }
    float col = warp_sum(cc[0] + cc[1]);
    if (lane == 0 && has_x) bp.dld_chunk[idx] = col;
}

/* Warp 0, role 1, after chunk ci's partial sums: T2 + T4 (into d_ld per
 * token, or their chunk sum for SCALAR_HEAD), row_ci (when Y was there) and,
 * at a sequence's chunk 0, z_0. */
__device__ __forceinline__ void dld_chunk_role1(const la_bwd_params_t &bp, const seg_loc &L, int h, int64_t ci,
                                                bool has_y, int64_t t0, int n, const float *Gs, const float *red,
                                                int lane) {
    const la_fwd_params_t &p = bp.f;
    const float *red_w = red, *red_r = red + 2 * LA_C, *red_mr = red + 4 * LA_C, *red_mc = red + 6 * LA_C;
    const float G_last = Gs[n - 1];
    float dl[2], rr[2];
#pragma unroll
    for (int k = 0; k < 2; k++) {
        int r = 2 * lane + k;
        float fj = r < n ? exp_nonpos(Gs[LA_C + r]) : 0.0f;
        float colsum = (red_mc[r] + red_mc[LA_C + r]) + (red_mc[2 * LA_C + r] + red_mc[3 * LA_C + r]);
        float rowsum = red_mr[r] + red_mr[LA_C + r];
        dl[k] = (colsum - rowsum) + (red_w[r] + red_w[LA_C + r]) * fj;
        rr[k] = has_y ? (red_r[r] + red_r[LA_C + r]) * fj : 0.0f;
    }
    /* T2_r + T4_r = sum_{j < r} dl_j: exclusive scan over lane pairs. */
    float incl = dl[0] + dl[1];
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
        float y = __shfl_up_sync(0xffffffffu, incl, off);
        if (lane >= off) incl += y;
    }
    float prev = __shfl_up_sync(0xffffffffu, incl, 1);
    if (lane == 0) prev = 0.0f;
    const float ta = prev, tb = prev + dl[0];
    const int64_t idx = dld_chunk_index(bp, L.s, h, ci);
    if (p.decay == 2) {
        float *dst = bp.d_ld + L.b * bp.dld_sb + h * bp.dld_sh + (L.tb + t0) * bp.dld_st;
        const bool add = p.accum & LA_SUM_DLD_ADD; /* an earlier head-dim tile's share is there */
        float *d0 = dst + (2 * lane) * bp.dld_st, *d1 = d0 + bp.dld_st;
        if (2 * lane < n) *d0 = add ? *d0 + ta : ta;
        if (2 * lane + 1 < n) *d1 = add ? *d1 + tb : tb;
    } else {
        float s24 = warp_sum((2 * lane < n ? ta : 0.0f) + (2 * lane + 1 < n ? tb : 0.0f));
        if (lane == 0) bp.dld_chunk[3 * (int64_t)bp.f.H * bp.tc + idx] = s24;
    }
    float row = warp_sum(rr[0] + rr[1]);
    if (lane == 0 && has_y) bp.dld_chunk[(int64_t)bp.f.H * bp.tc + idx] = row;
    if (L.sp == 0 && t0 == 0 && lane == 0) {
        const float *red_z = red + 10 * LA_C;
        float z = ((red_z[0] + red_z[1]) + (red_z[2] + red_z[3])) + ((red_z[4] + red_z[5]) + (red_z[6] + red_z[7]));
        bp.dld_z0[(int64_t)L.s * p.H + h] = exp_nonpos(G_last) * z;
    }
}

/* Warp 0: col of the chunk after a segment (its q, dO and the X of this block). */
__device__ __forceinline__ void dld_boundary_col(const la_bwd_params_t &bp, int s, int h, int64_t ci, int n,
                                                 const float *Gs, const float *red_c, int lane) {
    float cc = 0.0f;
#pragma unroll
    for (int k = 0; k < 2; k++) {
        int r = 2 * lane + k;
        if (r < n) cc += (red_c[r] + red_c[LA_C + r]) * bp.f.scale * exp_nonpos(Gs[r]);
    }
    cc = warp_sum(cc);
    if (lane == 0) bp.dld_chunk[dld_chunk_index(bp, s, h, ci)] = cc;
}

/* Warp 0: row of the (full) chunk before a segment (its k, v and this block's Y). */
__device__ __forceinline__ void dld_boundary_row(const la_bwd_params_t &bp, int s, int h, int64_t ci,
                                                 const float *Gs, const float *red_r, int lane) {
    float rr = 0.0f;
#pragma unroll
    for (int k = 0; k < 2; k++) {
        int r = 2 * lane + k;
        rr += (red_r[r] + red_r[LA_C + r]) * exp_nonpos(Gs[LA_C + r]);
    }
    rr = warp_sum(rr);
    if (lane == 0) bp.dld_chunk[(int64_t)bp.f.H * bp.tc + dld_chunk_index(bp, s, h, ci)] = rr;
}

/* DSTATE_ONLY: the reverse state pass of multi-segment runs: role 1 only,
 * from a zero gradient, no dK/dV; the segment's local dS goes to seg_dstate. */
/* Blocks per SM the backward is built for: two at D = E = 64 (64 KB of
 * shared memory, 128 registers), else one. */
__host__ __device__ constexpr int bwd_blocks_per_sm(int DP, int EP, int elem) {
    return DP == 64 && EP == 64 && elem == 2 ? 2 : 1;
}

/* NP: planes per operand element (op_planes: 1, or 2 for f32); 3 for f32
 * where the decay gradient needs fp32-level terms (its products and the
 * state updates then run mma_x3 and state_update3; A and dA, which only
 * feed dq, dk and dv, keep two planes).  The decay gradient sums terms that
 * partly cancel, so its relative error is the terms' (~2^-17 with two
 * planes: the operands' 16 mantissa bits) times their cancellation, which
 * inputs can make arbitrarily large (docs/CUDA-BACKWARD.md). */
template <typename T, int DP, int EP, bool DSTATE_ONLY, bool DLD, int STAGES, int NP = op_planes<T>::value>
__global__ void __launch_bounds__(LA_CUDA_THREADS, bwd_blocks_per_sm(DP, EP, sizeof(T)))
    la_bwd_kernel(const la_bwd_params_t bp) {
    static_assert(STAGES == 1 || !DLD, "the decay gradient's block is single-stage (shared memory)");
    static_assert(NP == op_planes<T>::value || (NP == 3 && op_of<T>::split && STAGES == 1),
                  "a third plane: f32 operands, single-stage block");
    /* Operands: the input dtype, or f32 split into bf16 planes (op_of), every
     * lo plane PLANE elements (PB bytes) after its hi plane (NP = 3: the
     * third plane PLANE elements after the lo plane). */
    typedef typename op_of<T>::type OT;
    constexpr bool SPLIT = op_of<T>::split;
    constexpr int PLANE = SPLIT ? bwd_op_elems(DP, EP, STAGES) : 0;
    constexpr uint32_t PB = 2 * PLANE;
    const la_fwd_params_t &p = bp.f;
    constexpr int QP = DP + 8, VP = EP + 8, AP = LA_C + 8;
    constexpr int MT = DP / 64, NTS = EP / 16;   /* state tile per warp: (DP/4) x (EP/2) */
    constexpr int TPS = 2 * LA_C * QP + 2 * LA_C * VP; /* tile elements per stage */
    extern __shared__ __align__(16) unsigned char smem_raw[];
    OT *Qs = reinterpret_cast<OT *>(smem_raw);   /* [STAGES] x {Q, K [64][QP]; V, dO [64][VP]}; stage 0: */
    OT *Ks = Qs + LA_C * QP;
    OT *Vs = Ks + LA_C * QP;
    OT *Ds = Vs + LA_C * VP;
    OT *const Qs0 = Qs;
    OT *As = Qs + STAGES * TPS;                  /* A  [64][AP] (role 1) */
    OT *dAs = As + LA_C * AP;                    /* dA [64][AP] */
    OT *Ss = dAs + LA_C * AP;                    /* S (role 0) or dS (role 1) copy [DP][VP] */
    OT *Xs = Ss + DP * VP;                       /* DLD: X (role 0) or Y (role 1) copy; else Ss's second buffer */
    /* [STAGES][64] raw decays (SCALAR_TOKEN), after both planes of the
     * operands; or in their place (other kinds) the regular-chunk tables:
     * Ts[64 + d] = e^{ld d} (d in [-64, 64], 0 below 0) and Pf[j / 2], the
     * state update's factor pair of tokens j, j + 1 (see "regular" below). */
    float *gs = reinterpret_cast<float *>(smem_raw + bwd_op_elems(DP, EP, STAGES) * sizeof(OT) * NP);
    float *const Ts = gs;
    uint2 *const Pf = reinterpret_cast<uint2 *>(Ts + LA_FWD_TAB);
    /* [8 warps][2][64]: each warp's own cumsum and suffix sums (chunk_cumsum). */
    float *Gs = gs + fwd_tabs_floats(STAGES) + (threadIdx.x >> 5) * 2 * LA_C;
    float *red = gs + fwd_tabs_floats(STAGES) + LA_CUDA_THREADS / 32 * 2 * LA_C; /* DLD: [LA_DLD_RED] */

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int wm = warp & 3, wn = warp >> 2;
    /* Without d_o (the state-only backward) only role 1 runs, and q and dO
     * enter as zero tiles (loaded without reading memory). */
    const bool has_do = bp.d_o.ptr != nullptr;
    const int h = blockIdx.y, role = DSTATE_ONLY || !has_do ? 1 : blockIdx.z;
    const seg_loc L = locate_segment(p.seg, blockIdx.x);
    if (L.sp >= L.nseg) return; /* past the last segment (device offsets: the grid is a bound) */
    const int64_t slot = (int64_t)blockIdx.x * p.H + h;
    const uint32_t sQ = smem_addr(Qs), sK = smem_addr(Ks), sV = smem_addr(Vs), sD = smem_addr(Ds);
    const uint32_t sA = smem_addr(As), sdA = smem_addr(dAs), sX = smem_addr(Xs);
    const float ld_head = p.decay == 1 ? la_head_log_decay(p.ld, p.ld_sh, p.H, h, p.check_rec) : 0.0f;
    const int64_t nchunks = (L.te - L.ts + LA_C - 1) / LA_C;

    /* The register state: S (role 0, from s0) or dS (role 1, from dsN). */
    float S[MT][NTS][4];
    int64_t ssd = 0, sse = 0;
    /* DSTATE_ONLY: the local gradient starts at zero */
    const float *src = DSTATE_ONLY ? nullptr : bwd_state_source(bp, L, h, slot, role, DP, &ssd, &sse);
    state_load<DP, EP>(S, src, ssd, sse, p.D, p.E, wm, wn, lane);
    /* Without DLD the state copy is double-buffered: chunk `it` reads copy
     * it % 2 and writes the next into the other, so no barrier guards the
     * rewrite (the loop's first barrier orders it before the next reads). */
    auto copy_buf = [&](int64_t it) { return DLD || (it & 1) == 0 ? Ss : Xs; };
    state_copy<OT, DP, EP, SPLIT, NP>(S, Ss, wm, wn, lane, PLANE);

    /* Decay gradient (DLD): this segment's chunks are ci0, ci0 + 1, ... of
     * sequence L.s; per-warp partial sums meet in red (see dld_* below). */
    const int64_t ci0 = L.ts / LA_C;
    float *red_a = red, *red_b = red + 2 * LA_C, *red_mr = red + 4 * LA_C, *red_mc = red + 6 * LA_C;
    float *red_z = red + 10 * LA_C;
    const int64_t tok_row = ((int64_t)L.b * p.H + h) * bp.ntot + L.tb; /* dld_tok of this (row, head) */

    /* Load the tiles of the chunk at sequence token t0 (n rows) and its decay
     * cumsum; leaves Gs ready for every warp. */
    auto load_chunk = [&](int64_t t0, int n, bool q_do, bool k_v) {
        __syncthreads(); /* every warp is done with the previous tiles */
        if (q_do) {
            load_tile<T, DP, NP>(Qs, p.q, L.b, h, L.tb + t0, has_do ? n : 0, p.D, has_do && p.vec_ok != 0, PLANE);
            load_tile<T, EP, NP>(Ds, bp.d_o, L.b, h, L.tb + t0, has_do ? n : 0, p.E, has_do && p.vec_ok != 0, PLANE);
        }
        if (k_v) {
            load_tile<T, DP, NP>(Ks, p.k, L.b, h, L.tb + t0, n, p.D, p.vec_ok != 0, PLANE);
            load_tile<T, EP, NP>(Vs, p.v, L.b, h, L.tb + t0, n, p.E, p.vec_ok != 0, PLANE);
        }
        if (p.decay == 2 && threadIdx.x < LA_C) {
            int r = threadIdx.x;
            gs[r] = r < n ? p.ld[L.b * p.ld_sb + h * p.ld_sh + (L.tb + t0 + r) * p.ld_st] : 0.0f;
        }
        cp_async_commit();
        cp_async_wait<0>();
        __syncthreads();
        chunk_cumsum(gs, Gs, p.decay, ld_head, n, lane); /* every warp its own copy; fixed order */
        __syncwarp();
    };
    /* STAGES = 2: start the loads of iteration `it` into stage it % 2; called
     * for it = 0, 1, ... in order.  16-byte pieces (vec) come from tile
     * sources set up once that step a chunk along the walk (backward for
     * role 1), full chunks without bounds (tile_issue's FULL path: the
     * per-chunk address and bounds work was a quarter of the D = 64
     * backward's instructions).  Role 0 reads no q (its products are dO V^T,
     * dA K, dO S^T and K^T V) unless the decay gradient wants it. */
    const bool vec = !SPLIT && p.vec_ok != 0;
    const bool want_q = role == 1 || DLD;
    const int dir = role == 0 ? 1 : -1;
    /* At D = E = 128 the 16-byte pieces are issued by the warps of column
     * half wn = 1 (one per scheduler), whose A / dA tiles lie partly above
     * the diagonal: the copies wait in the load/store queue for their
     * address registers, and there they wait while the others still
     * compute (H200: B4 H32 N8192 1.227 -> 1.169 ms).  Not at D = E = 64:
     * at 128 registers it spilled and ran 14% slower.  Elsewhere LT = 0:
     * every thread loads, as tile_src / tile_issue would have it. */
    constexpr bool SPLIT_LOADS = DP == 128 && EP == 128 && !DLD;
    constexpr unsigned LT = SPLIT_LOADS ? LA_CUDA_THREADS / 2 : 0; /* threads before the loaders (warps 4..7: wn = 1) */
    constexpr int NL = LA_CUDA_THREADS - LT;                        /* loader threads */
    const bool loader = LT == 0 || threadIdx.x >= LT; /* (LT == 0: no unsigned compare with zero) */
    const unsigned ltid = threadIdx.x - LT;
    la_tile_src_t tq, tk, tv, td;
    if (STAGES == 2 && vec && nchunks > 0 && loader) {
        const int64_t first = L.tb + L.ts + (role == 0 ? 0 : (nchunks - 1) * LA_C);
        tq = tile_src_of<T, DP>(p.q, L.b, h, first, p.D, ltid);
        td = tile_src_of<T, EP>(bp.d_o, L.b, h, first, p.E, ltid);
        tk = tile_src_of<T, DP>(p.k, L.b, h, first, p.D, ltid);
        tv = tile_src_of<T, EP>(p.v, L.b, h, first, p.E, ltid);
    }
    auto issue = [&](int64_t it) {
        const int64_t c = role == 0 ? it : nchunks - 1 - it;
        const int64_t t0 = L.ts + c * LA_C;
        const int n = (int)((L.te - t0) < LA_C ? (L.te - t0) : LA_C);
        OT *Qb = Qs + (it & 1) * TPS;
        float *gb = gs + (it & 1) * LA_C;
        if (vec) {
            if (loader) {
                const uint32_t sb = sQ + (uint32_t)((it & 1) * TPS * 2);
                tile_issue_of<T, DP, true, NL>(sb, tq, has_do ? n : 0, p.q.ptr, want_q, dir, ltid);
                tile_issue_of<T, EP, true, NL>(sb + (2 * LA_C * QP + LA_C * VP) * 2, td, has_do ? n : 0, bp.d_o.ptr,
                                               true, dir, ltid);
                tile_issue_of<T, DP, true, NL>(sb + LA_C * QP * 2, tk, n, p.k.ptr, true, dir, ltid);
                tile_issue_of<T, EP, true, NL>(sb + 2 * LA_C * QP * 2, tv, n, p.v.ptr, true, dir, ltid);
            }
        } else {
            if (want_q) load_tile<T, DP, NP>(Qb, p.q, L.b, h, L.tb + t0, has_do ? n : 0, p.D, false, PLANE);
            load_tile<T, EP, NP>(Qb + 2 * LA_C * QP + LA_C * VP, bp.d_o, L.b, h, L.tb + t0, has_do ? n : 0, p.E, false,
                             PLANE);
            load_tile<T, DP, NP>(Qb + LA_C * QP, p.k, L.b, h, L.tb + t0, n, p.D, false, PLANE);
            load_tile<T, EP, NP>(Qb + 2 * LA_C * QP, p.v, L.b, h, L.tb + t0, n, p.E, false, PLANE);
        }
        if (p.decay == 2 && threadIdx.x < LA_C) {
            int r = threadIdx.x;
            gb[r] = r < n ? p.ld[L.b * p.ld_sb + h * p.ld_sh + (L.tb + t0 + r) * p.ld_st] : 0.0f;
        }
        cp_async_commit();
    };
    if (STAGES == 2 && nchunks > 0) issue(0);

    /* Regular chunks (decay NONE or SCALAR_HEAD, all 64 rows valid; not with
     * the decay gradient, which reads the cumsum) have the same factors every
     * chunk: e^{ld (i - j)} [i >= j] for A and dA, e^{ld (i + 1)} for role
     * 0's rows (dQ's inter part), e^{ld (63 - j)} for role 1's rows (dK's
     * and dV's) and role 0's keys, scale e^{ld (i + 1)} for role 1's queries,
     * e^{64 ld} for the state.  The tables (read after chunk 0's barrier)
     * replace the cumsum and every exp of such a chunk; the row and state
     * factors are read from Ts, not kept in registers (at D = E = 64 the
     * block has 128 per thread, and one more spilled the state's decay: a
     * local load on every chunk's path, 5% of the stall samples). */
    const bool table = !DLD && p.decay != 2;
    const int i0 = 16 * wm + (lane >> 2);
    /* Ts index of this thread's first row factor (the second is 8 rows on). */
    const int row_t = role == 0 ? LA_C + i0 + 1 : 2 * LA_C - 1 - i0;
    const int row_t8 = role == 0 ? row_t + 8 : row_t - 8;
    if (table) {
        for (int i = threadIdx.x; i <= 2 * LA_C; i += LA_CUDA_THREADS)
            Ts[i] = i < LA_C ? 0.0f : exp_nonpos(ld_head * (float)(i - LA_C));
        if (role == 0) make_pair_table<OT>(Pf, ld_head, 1.0f, LA_C - 1, -1);
        else make_pair_table<OT>(Pf, ld_head, p.scale, 1, 1);
    }

    for (int64_t it = 0; it < nchunks; it++) {
        const int64_t c = role == 0 ? it : nchunks - 1 - it;
        const int64_t t0 = L.ts + c * LA_C;
        const int n = (int)((L.te - t0) < LA_C ? (L.te - t0) : LA_C);
        if (STAGES == 1) {
            load_chunk(t0, n, true, true);
        } else {
            cp_async_wait<0>();
            __syncthreads(); /* this chunk's tiles are in; every warp is past the previous chunk */
            if (it + 1 < nchunks) issue(it + 1);
            if (!(table && n == LA_C)) {
                chunk_cumsum(gs + (it & 1) * LA_C, Gs, p.decay, ld_head, n, lane);
                __syncwarp();
            }
        }
        const bool regular = table && n == LA_C;
        /* Gradient tiles of regular chunks go out as 16-byte row pieces
         * (store_tok_staged), staged in this warp's own block of the state
         * copy that the chunk does not read: every warp read it last chunk
         * (before the barrier above), and only this warp writes that block,
         * with its state copy at the end of the chunk.  The block is
         * (DP/4) x (EP/2): it holds a 16 x DP/2 tile where DP <= EP.  Not
         * with the decay gradient (one state copy) or f32 (split planes).
         * The choice between the two stores is written out at each of the
         * five stores below: a helper making it (same arguments, forceinline)
         * changed the register allocation, and the D = E = 64 two-stage
         * kernel's spill grew from 8 to 36 bytes (ptxas -v, 2026-11-21). */
        const bool staged = !DLD && !SPLIT && DP <= EP && regular && bp.gvec_ok;
        OT *const stage = copy_buf(it + 1) + wm * (DP / 4) * VP + wn * (EP / 2);
        /* This chunk's stage of the tiles (shadowing stage 0's names). */
        OT *const Qs = Qs0 + (STAGES == 2 ? (it & 1) * TPS : 0);
        OT *const Ks = Qs + LA_C * QP;
        const uint32_t sQ = smem_addr(Qs), sK = sQ + LA_C * QP * 2, sV = sK + LA_C * QP * 2,
                       sD = sV + LA_C * VP * 2;
        const uint32_t sS = smem_addr(copy_buf(it)); /* this chunk's state copy */

        /* dA = (dO V^T) * Gamma (both roles); A = (Q^ K^T) * Gamma (role 1). */
        if (!DSTATE_ONLY) {
            /* Warp tiles entirely above the diagonal stay zero: no products. */
            const bool live = 32 * wn <= 16 * wm + 15;
            float acc[4][4] = {};
            if (live) warp_mma<T, 4, false, false, NP>(acc, sD, VP, 16 * wm, sV, VP, 32 * wn, EP / 16, 0, lane, PB);
            float fm[4][4];
            if (regular) mask_factors_regular(fm, Ts, wm, wn, lane);
            else mask_factors(fm, Gs, n, wm, wn, lane);
            /* Role 1 (without DLD) keeps dA times scale: dK's intra part is
             * scale dA^T Q and then accumulates onto its inter part.  A is
             * times scale too, so the scale goes into the mask factors once. */
            const bool scaled = role == 1 && !DLD;
            if (scaled) {
#pragma unroll
                for (int i = 0; i < 4; i++)
#pragma unroll
                    for (int r = 0; r < 4; r++) fm[i][r] *= p.scale;
            }
            store_masked<T>(dAs, AP, acc, fm, wm, wn, lane, 1.0f, PLANE);
            if (role == 1) {
                float acc_a[4][4] = {};
                if (live) warp_mma<T, 4, false, false, NP>(acc_a, sQ, QP, 16 * wm, sK, QP, 32 * wn, DP / 16, 0, lane, PB);
                store_masked<T>(As, AP, acc_a, fm, wm, wn, lane, scaled ? 1.0f : p.scale, PLANE);
                if (DLD) dld_pair_partials(acc_a, acc, fm, p.scale, wm, wn, lane, red_mr, red_mc);
            }
            /* dA (and A) ready, among the warps that read what they wrote.
             * Role 0: a warp's dQ rows 16wm.. use dA rows 16wm.., written
             * by its pair (wm, 0), (wm, 1).  Role 1: a warp's dK, dV rows
             * j = 16wm.. use columns 16wm.. of A and dA, rows i >= j: the
             * warps of column half wm / 2, which arrive on that half's
             * barrier (6 warps: its 4 writers and 4 readers, 2 both). */
            if (role == 0) {
                group_barrier(1 + wm, 64);
            } else {
                const int half = wm >> 1;
                if (half != wn) group_arrive(5 + wn, 192);
                group_barrier(5 + half, 192);
            }
        }

        if (role == 0) {
            /* dQ^ = diag(e^{G_i}) dO S^T + dA K: warp tile rows 16wm.., cols wn*DP/2.. */
            float acc[DP / 16][4] = {}, acc2[DP / 16][4] = {};
            if (DLD && it > 0) { /* q^_t . dO_t X^T: pairs from chunks before the previous one */
                float acc3[DP / 16][4] = {}, d[2];
                warp_mma<T, DP / 16, false, false, NP>(acc3, sD, VP, 16 * wm, sX, VP, wn * (DP / 2), EP / 16, 0, lane, PB);
                tile_row_dots<T, DP / 16, NP>(Qs, QP, acc3, 16 * wm, wn * (DP / 2), lane, d, PLANE);
                put_row_dots(red_b, wn, 16 * wm, lane, d);
            }
            warp_mma<T, DP / 16, false, false, NP>(acc, sD, VP, 16 * wm, sS, VP, wn * (DP / 2), EP / 16, 0, lane, PB);
            if (DLD) { /* q^_t . dq^inter_t (before e^{G_t} and scale) */
                float d[2];
                tile_row_dots<T, DP / 16, NP>(Qs, QP, acc, 16 * wm, wn * (DP / 2), lane, d, PLANE);
                put_row_dots(red_a, wn, 16 * wm, lane, d);
            }
            const float f0 = regular ? Ts[row_t] : exp_nonpos(Gs[i0]), f1 = regular ? Ts[row_t8] : exp_nonpos(Gs[i0 + 8]);
            if (DLD) {
                warp_mma<T, DP / 16, false, true>(acc2, sdA, AP, 16 * wm, sK, QP, wn * (DP / 2), wm + 1, 0, lane, PB);
                rows_combine<DP / 16>(acc, acc2, f0, f1, 1.0f);
            } else { /* the intra part accumulates onto the scaled inter part: no second tile */
                rows_scale<DP / 16>(acc, f0, f1);
                warp_mma<T, DP / 16, false, true>(acc, sdA, AP, 16 * wm, sK, QP, wn * (DP / 2), wm + 1, 0, lane, PB);
            }
            if (staged && !LA_SUM_MODE(p.accum, LA_SUM_DQ) && (wn + 1) * (DP / 2) <= p.D)
                store_tok_staged<T, DP / 16>(bp.dq, L.b, h, L.tb + t0, acc, wm, wn * (DP / 2), lane, p.scale,
                                             stage, VP);
            else
                store_tok<T, DP / 16>(bp.dq, bp.sum_dq, LA_SUM_MODE(p.accum, LA_SUM_DQ), L.b, h, L.tb + t0, acc, wm,
                                      wn * (DP / 2), n, p.D, lane, p.scale, bp.gvec_ok);
        } else if (!DSTATE_ONLY) {
            /* dV = A^T dO + diag(f_j) K dS': rows j = 16wm.., cols wn*EP/2.. */
            const float fj0 = regular ? Ts[row_t] : i0 < n ? exp_nonpos(Gs[LA_C + i0]) : 0.0f;
            const float fj1 = regular ? Ts[row_t8] : i0 + 8 < n ? exp_nonpos(Gs[LA_C + i0 + 8]) : 0.0f;
            if (!DLD) {
                /* dV and dK together: both inter products (K dS', V dS'^T) in
                 * one pass over the k-steps (8 independent accumulator chains,
                 * not 4), scaled by the rows' f_j, then both intra products
                 * (A^T dO, (scale dA)^T Q) in one pass over k-steps wm..3,
                 * accumulating onto them. */
                float av[EP / 16][4] = {}, ak[DP / 16][4] = {};
#pragma unroll
                for (int ks = 0; ks < (DP > EP ? DP : EP) / 16; ks++) {
                    if (ks < DP / 16)
                        warp_mma_step<T, EP / 16, false, true>(av, sK, QP, 16 * wm, sS, VP, wn * (EP / 2), ks, lane, PB);
                    if (ks < EP / 16)
                        warp_mma_step<T, DP / 16, false, false>(ak, sV, VP, 16 * wm, sS, VP, wn * (DP / 2), ks, lane, PB);
                }
                rows_scale<EP / 16>(av, fj0, fj1);
                rows_scale<DP / 16>(ak, fj0, fj1);
                for (int ks = wm; ks < LA_C / 16; ks++) {
                    warp_mma_step<T, EP / 16, true, true>(av, sA, AP, 16 * wm, sD, VP, wn * (EP / 2), ks, lane, PB);
                    warp_mma_step<T, DP / 16, true, true>(ak, sdA, AP, 16 * wm, sQ, QP, wn * (DP / 2), ks, lane, PB);
                }
                if (staged && !LA_SUM_MODE(p.accum, LA_SUM_DV) && (wn + 1) * (EP / 2) <= p.E)
                    store_tok_staged<T, EP / 16>(bp.dv, L.b, h, L.tb + t0, av, wm, wn * (EP / 2), lane, 1.0f,
                                                 stage, VP);
                else
                    store_tok<T, EP / 16>(bp.dv, bp.sum_dv, LA_SUM_MODE(p.accum, LA_SUM_DV), L.b, h, L.tb + t0, av,
                                          wm, wn * (EP / 2), n, p.E, lane, 1.0f, bp.gvec_ok);
                if (staged && !LA_SUM_MODE(p.accum, LA_SUM_DK) && (wn + 1) * (DP / 2) <= p.D)
                    store_tok_staged<T, DP / 16>(bp.dk, L.b, h, L.tb + t0, ak, wm, wn * (DP / 2), lane, 1.0f,
                                                 stage, VP);
                else
                    store_tok<T, DP / 16>(bp.dk, bp.sum_dk, LA_SUM_MODE(p.accum, LA_SUM_DK), L.b, h, L.tb + t0, ak,
                                          wm, wn * (DP / 2), n, p.D, lane, 1.0f, bp.gvec_ok);
            } else {
            {
                float acc[EP / 16][4] = {}, acc2[EP / 16][4] = {};
                warp_mma<T, EP / 16, false, true>(acc, sK, QP, 16 * wm, sS, VP, wn * (EP / 2), DP / 16, 0, lane, PB);
                /* A^T dO: only i >= j contributes, i.e. k-steps from wm on. */
                warp_mma<T, EP / 16, true, true>(acc2, sA, AP, 16 * wm, sD, VP, wn * (EP / 2), LA_C / 16, wm, lane, PB);
                rows_combine<EP / 16>(acc, acc2, fj0, fj1, 1.0f);
                if (staged && !LA_SUM_MODE(p.accum, LA_SUM_DV) && (wn + 1) * (EP / 2) <= p.E)
                    store_tok_staged<T, EP / 16>(bp.dv, L.b, h, L.tb + t0, acc, wm, wn * (EP / 2), lane, 1.0f,
                                                 stage, VP);
                else
                    store_tok<T, EP / 16>(bp.dv, bp.sum_dv, LA_SUM_MODE(p.accum, LA_SUM_DV), L.b, h, L.tb + t0, acc,
                                          wm, wn * (EP / 2), n, p.E, lane, 1.0f, bp.gvec_ok);
            }
            if (DLD && it > 0) { /* k_j . v_j Y^T: pairs to chunks after the next one */
                float acc3[DP / 16][4] = {}, d[2];
                warp_mma<T, DP / 16, false, false, NP>(acc3, sV, VP, 16 * wm, sX, VP, wn * (DP / 2), EP / 16, 0, lane, PB);
                tile_row_dots<T, DP / 16, NP>(Ks, QP, acc3, 16 * wm, wn * (DP / 2), lane, d, PLANE);
                put_row_dots(red_b, wn, 16 * wm, lane, d);
            }
            /* dK = dA^T Q^ + diag(f_j) V dS'^T: rows j, cols wn*DP/2.. */
            {
                float acc[DP / 16][4] = {}, acc2[DP / 16][4] = {};
                warp_mma<T, DP / 16, false, false, NP>(acc, sV, VP, 16 * wm, sS, VP, wn * (DP / 2), EP / 16, 0, lane, PB);
                if (DLD) { /* k_j . dk^inter_j (before f_j) */
                    float d[2];
                    tile_row_dots<T, DP / 16, NP>(Ks, QP, acc, 16 * wm, wn * (DP / 2), lane, d, PLANE);
                    put_row_dots(red_a, wn, 16 * wm, lane, d);
                }
                warp_mma<T, DP / 16, true, true>(acc2, sdA, AP, 16 * wm, sQ, QP, wn * (DP / 2), LA_C / 16, wm, lane, PB);
                rows_combine<DP / 16>(acc, acc2, fj0, fj1, p.scale);
                if (staged && !LA_SUM_MODE(p.accum, LA_SUM_DK) && (wn + 1) * (DP / 2) <= p.D)
                    store_tok_staged<T, DP / 16>(bp.dk, L.b, h, L.tb + t0, acc, wm, wn * (DP / 2), lane, 1.0f,
                                                 stage, VP);
                else
                    store_tok<T, DP / 16>(bp.dk, bp.sum_dk, LA_SUM_MODE(p.accum, LA_SUM_DK), L.b, h, L.tb + t0, acc,
                                          wm, wn * (DP / 2), n, p.D, lane, 1.0f, bp.gvec_ok);
            }
            } /* DLD */
        }

        /* z_0 (DLD): the initial state's pairs that span chunk 0, e^{G_last} <S0, dS'_0>. */
        if (DLD && role == 1 && L.sp == 0 && c == 0) {
            float z = p.s0.ptr ? state_dot<DP, EP>(S, p.s0.ptr + L.s * p.s0.ss + h * p.s0.sh, p.s0.sd, p.s0.se, p.D,
                                                    p.E, wm, wn, lane)
                               : 0.0f;
            z = warp_sum(z);
            if (lane == 0) red_z[warp] = z;
        }

        /* State update.  role 0: S <- e^{G_last} S + (f_j k_j)^T v_j, f_j = e^{G_last - G_j};
         * role 1: dS <- e^{G_last} dS + (f_i q^_i)^T dO_i, f_i = e^{G_i}.  Hi/lo split as in the forward. */
        state_scale<DP, EP>(S, regular ? Ts[2 * LA_C] : exp_nonpos(Gs[n - 1]));
        if (DLD) {
            __syncthreads(); /* partial sums complete; every warp is past its reads of Ss and Xs */
            if (warp == 0) {
                if (role == 0) dld_chunk_role0(bp, L, h, ci0 + c, it > 0, t0, n, Gs, red_a, red_b, tok_row, lane);
                else dld_chunk_role1(bp, L, h, ci0 + c, it > 0, t0, n, Gs, red, lane);
            }
            /* X = e^{G_last} S (role 0) or Y = e^{G_last} dS' (role 1): the
             * state without this chunk's own tokens, for the next chunk. */
            state_copy<OT, DP, EP, SPLIT, NP>(S, Xs, wm, wn, lane, PLANE);
        }
        const uint32_t sXo = role == 0 ? sK : sQ;  /* the [token][d] operand */
        const uint32_t sYo = role == 0 ? sV : sD;  /* the [token][e] operand */
        /* The hi/lo split only where a state leaves as f32: role 1's dS
         * when the initial-state gradient is wanted.  Otherwise S and dS
         * only multiply into half-precision dq, dk, dv (and the decay
         * gradient, held to the same precision). */
        auto factor = [&](int j) {
            return j >= n ? 0.0f : role == 0 ? exp_nonpos(Gs[LA_C + j]) : p.scale * exp_nonpos(Gs[j]);
        };
        auto pair = [&](int j, la_fpair_t &f) {
            if (regular) fpair_unpack<OT>(f, Pf[j >> 1]);
            else fpair_set<OT>(f, factor(j), factor(j + 1));
        };
        if constexpr (NP == 3) state_update3<DP, EP>(S, sXo, QP, sYo, VP, factor, wm, wn, lane, PB);
        else if (role == 1 && bp.ds0.ptr)
            state_update<OT, DP, EP, true, SPLIT>(S, sXo, QP, sYo, VP, pair, wm, wn, lane, PB);
        else state_update<OT, DP, EP, SPLIT, SPLIT>(S, sXo, QP, sYo, VP, pair, wm, wn, lane, PB);
        state_copy<OT, DP, EP, SPLIT, NP>(S, copy_buf(it + 1), wm, wn, lane, PLANE);
    }

    /* DLD across a segment boundary: the pairs that span the first chunk of
     * the next segment (role 0) or the last chunk of the previous one (role
     * 1) need this block's X or Y; load that neighbour chunk for them. */
    if (DLD && role == 0 && L.te < L.len) {
        const int n = (int)(L.len - L.te < LA_C ? L.len - L.te : LA_C);
        load_chunk(L.te, n, true, false);
        float acc3[DP / 16][4] = {}, d[2];
        warp_mma<T, DP / 16, false, false, NP>(acc3, sD, VP, 16 * wm, sX, VP, wn * (DP / 2), EP / 16, 0, lane, PB);
        tile_row_dots<T, DP / 16, NP>(Qs, QP, acc3, 16 * wm, wn * (DP / 2), lane, d, PLANE);
        put_row_dots(red_b, wn, 16 * wm, lane, d);
        __syncthreads();
        if (warp == 0) dld_boundary_col(bp, L.s, h, L.te / LA_C, n, Gs, red_b, lane);
    }
    if (DLD && role == 1 && L.sp > 0) {
        load_chunk(L.ts - LA_C, LA_C, false, true);
        float acc3[DP / 16][4] = {}, d[2];
        warp_mma<T, DP / 16, false, false, NP>(acc3, sV, VP, 16 * wm, sX, VP, wn * (DP / 2), EP / 16, 0, lane, PB);
        tile_row_dots<T, DP / 16, NP>(Ks, QP, acc3, 16 * wm, wn * (DP / 2), lane, d, PLANE);
        put_row_dots(red_b, wn, 16 * wm, lane, d);
        __syncthreads();
        if (warp == 0) dld_boundary_row(bp, L.s, h, L.ts / LA_C - 1, Gs, red_b, lane);
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
