/*
 * bwd_wg_kernel.cuh - the chunked backward on Hopper (sm_90a) for D = E = 64
 * in bf16 and f16: tiles by TMA, every product on warpgroup tensor cores
 * (wgmma), one warpgroup per block.  The same two roles, walks, segments,
 * factor tables and outputs as la_bwd_kernel (bwd_kernel.cuh), without the
 * decay gradient:
 *   role 0, forward sweep:  dQ^ = dA K + diag(e^{G_i}) dO S^T, then S as in the forward
 *   role 1, reverse sweep:  dV  = A^T dO + diag(e^{G_last - G_j}) K dS'
 *                           dK  = dA^T Q^ + diag(e^{G_last - G_j}) V dS'^T
 *                           dS <- e^{G_last} dS' + (diag(e^{G_i}) Q^)^T dO
 *
 * Why a kernel of its own: the mma.sync backward at D = E = 64 spends ~112
 * mma.sync (and as many ldmatrix) per warp and chunk on its dK / dV block,
 * a chain that is latency-bound on 8 warps (~4.7 us per chunk at B4 H32
 * N2048, docs/PERF.md).  Here a chunk of role 1 is 28 wgmma m64n64k16
 * (32 with the fp32-level split of dS), role 0's 16, in four dependent
 * groups each.
 *
 * Shared memory: a ring of LA_BWG_SLOTS slots of Q, K, V, dO tiles (role 0
 * loads no Q), [64][64] each in TMA's 128-byte swizzled layout (tma.cuh),
 * one mbarrier per slot, the next chunk loading during this one; A and dA
 * (role 1; staging for the gradient tiles' stores); the state's dtype copy
 * [d][e], the B operand of the products with S or dS.  Operand layouts
 * (tiles stored [token][column]):
 *   dO V^T, Q K^T, dO S^T, V dS^T   A and B K-major
 *   K dS                            A K-major, B = dS copy N-major
 *   A^T dO, dA^T Q                  A M-major (the [i][j] tile read as [k][m]), B N-major
 *   dA K                            A = the masked dA from registers (role 0), B N-major
 *   S, dS updates                   A = ldmatrix.trans of K or Q times the token
 *                                   factors (registers), B N-major
 */
#ifndef LA_CUDA_BWD_WG_KERNEL_CUH
#define LA_CUDA_BWD_WG_KERNEL_CUH

#include "fwd_kernel.cuh"
#include "tma.cuh"

#define LA_BWG_THREADS 128
#define LA_BWG_SLOTS 2
#define LA_BWG_TILE (LA_C * 64 * 2)      /* bytes of a [64][64] tile */
#define LA_BWG_SLOT (4 * LA_BWG_TILE)    /* Q, K, V, dO */

/* Shared-memory bytes: 1024 to align the tiles, the ring, A, dA, the state
 * copy, the mbarriers, the mask's pair table, the factor tables (or raw
 * decays) and the per-warp cumsums.  Two blocks per SM: 2 x 94 KB. */
__host__ __device__ constexpr int bwd_wg_smem_bytes() {
    return 1024 + LA_BWG_SLOTS * LA_BWG_SLOT + 3 * LA_BWG_TILE + LA_BWG_SLOTS * 8 + 2 * LA_C * 8 +
           (fwd_tabs_floats(LA_BWG_SLOTS) + LA_BWG_THREADS / 32 * 2 * LA_C) * 4;
}

/* Descriptor of a 128-byte swizzled [64][64] tile (tma.cuh) as its two
 * 32-bit words: lo holds the address field, so a k-step, another tile or
 * another slot is one 32-bit add to lo (the field cannot carry: shared
 * addresses stay below 256 KB).  SBO 1024 (8 rows of 128 bytes).  As a
 * K-major operand (rows are M or N, the 64 columns K) a k16 step is 32
 * bytes on inside the swizzled rows, LBO unused (16); as an MN-major one
 * (rows are K) a k16 step is 16 rows (2048 bytes) on, LBO 8192 (the
 * stride between 64-column atoms, unused at 64 columns: the state pass's
 * measured value). */
__device__ __forceinline__ uint32_t wgd_lo(uint32_t saddr, bool mn) { return ((saddr & 0x3FFFF) >> 4) | ((mn ? 512u : 1u) << 16); }
__device__ __forceinline__ uint64_t wgd(uint32_t lo) { return ((uint64_t)((1024u >> 4) | (1u << 30)) << 32) | lo; }
#define LA_WGD_K(kk) ((kk) * 2)    /* k16 step of a K-major tile: 32 bytes */
#define LA_WGD_MN(kk) ((kk) * 128) /* of an MN-major tile: 2048 bytes */
#define LA_WGD_TILE (LA_BWG_TILE >> 4)

/* Accumulator element i of this thread (m64n64 fragment, wgmma.cuh): row
 * and column in the 64 x 64 tile. */
__device__ __forceinline__ int wgf_row(int warp, int lane, int i) { return 16 * warp + (lane >> 2) + 8 * ((i >> 1) & 1); }
__device__ __forceinline__ int wgf_col(int lane, int i) { return 8 * (i >> 2) + 2 * (lane & 3) + (i & 1); }

/* The tile v(i) of a warpgroup's accumulators into a swizzled [64][64]
 * tile of dtype T (4-byte stores: a warp's 8 rows hit 8 different 16-byte
 * pieces, all 32 banks). */
template <typename T, typename Fn>
__device__ __forceinline__ void wg_put_tile(unsigned char *tile, int warp, int lane, Fn v) {
#pragma unroll
    for (int i = 0; i < 32; i += 2) {
        const int r = wgf_row(warp, lane, i), c = wgf_col(lane, i);
        *reinterpret_cast<uint32_t *>(tile + sw128_off(r, c)) = mma_traits<T>::pack(v(i), v(i + 1));
    }
}

/* A warp's 16 gradient rows (mul * acc) out to the token tensor x (64
 * columns): staged in this warp's 2 KB of a free tile (swizzled), then
 * 16-byte row pieces; rows from `rows` on (past the sequence) are not
 * written. */
template <typename T>
__device__ __forceinline__ void wg_store_rows(T *g, int64_t st, const float (&acc)[32], float mul, unsigned char *stage,
                                              int rows, int lane) {
#pragma unroll
    for (int i = 0; i < 32; i += 2) {
        const int r = (lane >> 2) + 8 * ((i >> 1) & 1), c = wgf_col(lane, i);
        *reinterpret_cast<uint32_t *>(stage + sw128_off(r, c)) = mma_traits<T>::pack(mul * acc[i], mul * acc[i + 1]);
    }
    __syncwarp();
#pragma unroll
    for (int k = 0; k < 4; k++) {
        const int seg = lane + 32 * k, r = seg >> 3, pc = seg & 7;
        if (rows >= 16 || r < rows)
            *reinterpret_cast<uint4 *>(g + r * st + 8 * pc) =
                *reinterpret_cast<const uint4 *>(stage + sw128_off(r, 8 * pc));
    }
    __syncwarp(); /* the stage may be written again */
}

template <typename T, bool PRECISE>
__global__ void __launch_bounds__(LA_BWG_THREADS, 2)
    la_bwd_wg_kernel(const la_bwd_params_t bp, const __grid_constant__ CUtensorMap tmQ,
                     const __grid_constant__ CUtensorMap tmK, const __grid_constant__ CUtensorMap tmV,
                     const __grid_constant__ CUtensorMap tmD) {
    const la_fwd_params_t &p = bp.f;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const uint32_t sraw = smem_addr(smem_raw);
    const uint32_t s0 = (sraw + 1023) & ~1023u; /* slot q at s0 + q SLOT: Q, K, V, dO */
    unsigned char *const base = smem_raw + (s0 - sraw);
    const uint32_t sA = s0 + LA_BWG_SLOTS * LA_BWG_SLOT, sdA = sA + LA_BWG_TILE, sS = sdA + LA_BWG_TILE;
    unsigned char *const Ag = base + (sA - s0), *const dAg = base + (sdA - s0), *const Sg = base + (sS - s0);
    const uint32_t bar0 = sS + LA_BWG_TILE; /* mbarrier of slot q at bar0 + 8 q */
    /* The mask's pair table (regular chunks): Mp[64 + d] = mul (Gamma(d),
     * Gamma(d - 1)), Gamma(d) = e^{ld d} for d >= 0, else 0: a thread's
     * element pair (i, j), (i, j + 1) is Mp[64 + i - j], one 8-byte load. */
    float2 *const Mp = reinterpret_cast<float2 *>(base + (bar0 - s0) + LA_BWG_SLOTS * 8);
    float *gs = reinterpret_cast<float *>(Mp + 2 * LA_C);
    float *const Ts = gs;
    uint2 *const Pf = reinterpret_cast<uint2 *>(Ts + LA_FWD_TAB);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float *Gs = gs + fwd_tabs_floats(LA_BWG_SLOTS) + warp * 2 * LA_C;

    const int h = blockIdx.y, role = blockIdx.z;
    const seg_loc L = locate_segment(p.seg, blockIdx.x);
    if (L.sp >= L.nseg) return; /* past the last segment (device offsets: the grid is a bound) */
    const int64_t slot = (int64_t)blockIdx.x * p.H + h;
    const int nchunks = (int)((L.te - L.ts + LA_C - 1) / LA_C);
    const int n_last = (int)(L.te - L.ts - (int64_t)(nchunks - 1) * LA_C);
    const int tok0 = (int)(L.tb + L.ts); /* the host checked that tokens fit an int (TMA coordinates) */
    const float ld_head = p.decay == 1 ? la_head_log_decay(p.ld, p.ld_sh, p.H, h, p.check_rec) : 0.0f;
    const bool table = p.decay != 2;
    auto chunk_of = [&](int it) { return role == 0 ? it : nchunks - 1 - it; };
    auto rows_of = [&](int c) { return c == nchunks - 1 ? n_last : LA_C; };

    if (threadIdx.x == 0) {
        for (int q = 0; q < LA_BWG_SLOTS; q++) mbar_init(bar0 + 8 * q, 1);
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    /* Regular chunks' tables (seen after the first barrier): Ts[64 + d] =
     * e^{ld d} (0 for d < 0) for the mask and the row and state factors, Pf
     * the update's token factor pairs: role 0's keys e^{ld (63 - j)}, role
     * 1's queries scale e^{ld (i + 1)}. */
    if (table) {
        for (int i = threadIdx.x; i <= 2 * LA_C; i += LA_BWG_THREADS)
            Ts[i] = i < LA_C ? 0.0f : exp_nonpos(ld_head * (float)(i - LA_C));
        if (role == 0) make_pair_table<T>(Pf, ld_head, 1.0f, LA_C - 1, -1);
        else make_pair_table<T>(Pf, ld_head, p.scale, 1, 1);
        /* role 1 keeps A and dA times scale (dK's intra part is scale dA^T Q) */
        const float mul = role == 1 ? p.scale : 1.0f;
        auto gam = [&](int d) { return d < 0 ? 0.0f : mul * exp_nonpos(ld_head * (float)d); };
        for (int i = threadIdx.x; i < 2 * LA_C; i += LA_BWG_THREADS) Mp[i] = make_float2(gam(i - LA_C), gam(i - LA_C - 1));
    }
    __syncthreads();
    auto issue = [&](int it) { /* thread 0 */
        const int q = it % LA_BWG_SLOTS, tok = tok0 + chunk_of(it) * LA_C, b = (int)L.b;
        const uint32_t sb = s0 + q * LA_BWG_SLOT, bar = bar0 + 8 * q;
        mbar_expect_tx(bar, (role == 0 ? 3 : 4) * LA_BWG_TILE);
        if (role == 1) tma_load_box(sb, &tmQ, 0, tok, h, b, bar);
        tma_load_box(sb + LA_BWG_TILE, &tmK, 0, tok, h, b, bar);
        tma_load_box(sb + 2 * LA_BWG_TILE, &tmV, 0, tok, h, b, bar);
        tma_load_box(sb + 3 * LA_BWG_TILE, &tmD, 0, tok, h, b, bar);
    };
    if (threadIdx.x == 0 && nchunks > 0) issue(0);
    /* SCALAR_TOKEN's raw decays (plain loads), one chunk ahead. */
    if (p.decay == 2 && nchunks > 0) load_raw_decays(gs, p, L, h, L.ts + (int64_t)chunk_of(0) * LA_C, rows_of(chunk_of(0)));

    /* The state (role 0: S; role 1: dS) in accumulator layout, and its
     * dtype copy for the first chunk.  Not zeroed without a source: the
     * first update's wgmmas ignore its input (zeroing before the loop makes
     * ptxas serialise the loop's wgmmas, wgmma.cuh). */
    float S[32];
    int64_t ssd = 0, sse = 0;
    const float *src = bwd_state_source(bp, L, h, slot, role, 64, &ssd, &sse);
    const bool has_init = src != nullptr;
    if (has_init) {
#pragma unroll
        for (int i = 0; i < 32; i++) {
            const int d = wgf_row(warp, lane, i), e = wgf_col(lane, i);
            S[i] = d < p.D && e < p.E ? src[d * ssd + e * sse] : 0.0f;
        }
    }
    wg_put_tile<T>(Sg, warp, lane, [&](int i) { return has_init ? S[i] : 0.0f; });
    fence_proxy_async();

    /* ldmatrix.trans row address of the update's A fragments (K or Q read
     * as [d][token]): matrix m = lane / 8 is tokens 8 (m >> 1) + lane % 8,
     * columns 16 warp + 8 (m & 1) (piece 2 warp + (m & 1), swizzled by the token). */
    const int krow = 8 * ((lane >> 3) >> 1) + (lane & 7);
    const uint32_t offT = krow * 128 + (((2 * warp + ((lane >> 3) & 1)) ^ (lane & 7)) << 4);
    const int r0 = 16 * warp + (lane >> 2); /* this thread's rows r0, r0 + 8 */
    const float2 *const mrow = Mp + LA_C + r0 - 2 * (lane & 3); /* its mask pairs: mrow[8 hr - 8 (i / 4)] */
    /* Descriptor words (wgd) of slot 0's Q tile and of A, dA, the state copy. */
    const uint32_t kQ0 = wgd_lo(s0, false), mQ0 = wgd_lo(s0, true);
    const uint32_t kS = wgd_lo(sS, false), mS = wgd_lo(sS, true), mA = wgd_lo(sA, true), mdA = wgd_lo(sdA, true);
    /* This warp's 16 rows of a token tensor at chunk token t0. */
    auto rows_at = [&](const la_tok_t &x, int64_t t0) {
        return const_cast<T *>(static_cast<const T *>(x.ptr)) + L.b * x.sb + h * x.sh + (L.tb + t0 + 16 * warp) * x.st;
    };

    for (int it = 0; it < nchunks; it++) {
        const int c = chunk_of(it), q = it % LA_BWG_SLOTS, n = rows_of(c);
        const int64_t t0 = L.ts + (int64_t)c * LA_C;
        const uint32_t sQ = s0 + q * LA_BWG_SLOT, sK = sQ + LA_BWG_TILE;
        /* descriptor words of this slot's tiles, K-major (k..) and MN-major (m..) */
        const uint32_t kQ = kQ0 + q * (LA_BWG_SLOT >> 4), mQ = mQ0 + q * (LA_BWG_SLOT >> 4);
        const uint32_t kK = kQ + LA_WGD_TILE, kV = kQ + 2 * LA_WGD_TILE, kD = kQ + 3 * LA_WGD_TILE;
        const uint32_t mK = mQ + LA_WGD_TILE, mD = mQ + 3 * LA_WGD_TILE;
        mbar_wait(bar0 + 8 * q, (uint32_t)((it / LA_BWG_SLOTS) & 1));
        if (n < LA_C) {
            /* A sequence's last chunk: rows n.. hold the next sequence's
             * tokens (packed batches) or TMA's zeros.  Zero them, so that no
             * product sees a value from outside the sequence (a factor of 0
             * would still turn an infinite one into NaN). */
            unsigned char *tiles = base + q * LA_BWG_SLOT;
            for (int i = threadIdx.x; i < (LA_C - n) * 8 * 4; i += LA_BWG_THREADS) {
                const int tile = i / ((LA_C - n) * 8), rest = i % ((LA_C - n) * 8);
                *reinterpret_cast<uint4 *>(tiles + tile * LA_BWG_TILE + (n + rest / 8) * 128 + (rest % 8) * 16) =
                    make_uint4(0, 0, 0, 0);
            }
            fence_proxy_async();
        }
        __syncthreads(); /* tiles, raw decays, the state copy seen; chunk it - 1 done with slot (it + 1) % 2 */
        if (threadIdx.x == 0 && it + 1 < nchunks) issue(it + 1);
        if (p.decay == 2 && it + 1 < nchunks) /* the next chunk's, seen after its barrier */
            load_raw_decays(gs + ((it + 1) % LA_BWG_SLOTS) * LA_C, p, L, h, L.ts + (int64_t)chunk_of(it + 1) * LA_C,
                            rows_of(chunk_of(it + 1)));
        const bool regular = table && n == LA_C;
        if (!regular) {
            chunk_cumsum(gs + q * LA_C, Gs, p.decay, ld_head, n, lane);
            __syncwarp();
        }
        /* fm[i] = mul Gamma_ij, Gamma_ij = e^{G_i - G_j} for j <= i < n, else 0
         * (mul: scale in role 1, as in Mp). */
        float fm[32];
        if (regular) {
#pragma unroll
            for (int i = 0; i < 32; i += 4)
#pragma unroll
                for (int hr = 0; hr < 2; hr++) {
                    const float2 m = mrow[8 * hr - 8 * (i >> 2)];
                    fm[i + 2 * hr] = m.x;
                    fm[i + 2 * hr + 1] = m.y;
                }
        } else {
            const float mul = role == 1 ? p.scale : 1.0f;
#pragma unroll
            for (int i = 0; i < 32; i++) {
                const int r = wgf_row(warp, lane, i), cc = wgf_col(lane, i);
                fm[i] = (r >= cc && r < n) ? mul * exp_nonpos(Gs[r] - Gs[cc]) : 0.0f;
            }
        }
        const float sdecay = regular ? Ts[2 * LA_C] : exp_nonpos(Gs[n - 1]);
        /* The update's A fragments: the [token][d] tile X read transposed,
         * times the token factors f(j) (0 past the chunk's rows). */
        uint32_t ahi[4][4], alo[4][4];
        auto update_frags = [&](uint32_t sX, bool lo) {
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                const int j0 = 16 * kk + 2 * (lane & 3);
                la_fpair_t fp[2];
#pragma unroll
                for (int hf = 0; hf < 2; hf++) {
                    const int j = j0 + 8 * hf;
                    if (regular) {
                        fpair_unpack<T>(fp[hf], Pf[j >> 1]);
                    } else {
                        auto f = [&](int t) {
                            return t >= n ? 0.0f : role == 0 ? exp_nonpos(Gs[LA_C + t]) : p.scale * exp_nonpos(Gs[t]);
                        };
                        fpair_set<T>(fp[hf], f(j), f(j + 1));
                    }
                }
                uint32_t a[4];
                ldmatrix_x4_trans_at(a, sX + offT + kk * 2048);
#pragma unroll
                for (int r = 0; r < 4; r++) fpair_apply<T>(fp[r >> 1], a[r], ahi[kk][r], alo[kk][r], lo);
            }
        };
        /* S <- e^{G_last} S + (f X)^T Y, Y the [token][e] tile (N-major, descriptor word mY). */
        auto update = [&](uint32_t mY, bool lo) {
#pragma unroll
            for (int i = 0; i < 32; i++) S[i] *= sdecay;
            wg_fence_acc(S);
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                if (kk == 0) wg_rs_acc<T>(S, ahi[kk], wgd(mY + LA_WGD_MN(kk)), it > 0 || has_init);
                else wg_rs<T>(S, ahi[kk], wgd(mY + LA_WGD_MN(kk)));
            }
            if (lo) {
#pragma unroll
                for (int kk = 0; kk < 4; kk++) wg_rs<T>(S, alo[kk], wgd(mY + LA_WGD_MN(kk)));
            }
            wg_commit();
        };

        /* Both roles' first products: dA = dO V^T, and X = dO S^T, dQ's inter
         * part (role 0; B: the S copy [d][e], K-major), or X = Q K^T (role 1). */
        float dA[32], X[32];
        {
            const uint32_t xa = role == 0 ? kD : kQ, xb = role == 0 ? kS : kK;
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < 4; kk++) wg_ss_acc<T, 0, 0>(dA, wgd(kD + LA_WGD_K(kk)), wgd(kV + LA_WGD_K(kk)), kk > 0);
#pragma unroll
            for (int kk = 0; kk < 4; kk++) wg_ss_acc<T, 0, 0>(X, wgd(xa + LA_WGD_K(kk)), wgd(xb + LA_WGD_K(kk)), kk > 0);
            wg_commit();
        }
        if (role == 0) {
            float (&dQ)[32] = X;
            update_frags(sK, false);
            wg_wait<0>();
            /* dA * Gamma as the A fragments of dA K (the accumulator's layout
             * is the A fragment's: k-step kk is elements 8 kk .. 8 kk + 7). */
            uint32_t fa[4][4];
#pragma unroll
            for (int kk = 0; kk < 4; kk++)
#pragma unroll
                for (int r = 0; r < 4; r++) {
                    const int i = 8 * kk + 2 * r;
                    fa[kk][r] = mma_traits<T>::pack(dA[i] * fm[i], dA[i + 1] * fm[i + 1]);
                }
            const float f0 = regular ? Ts[LA_C + r0 + 1] : exp_nonpos(Gs[r0]);
            const float f1 = regular ? Ts[LA_C + r0 + 9] : exp_nonpos(Gs[r0 + 8]);
#pragma unroll
            for (int i = 0; i < 32; i++) dQ[i] *= ((i >> 1) & 1) ? f1 : f0;
            wg_fence_acc(dQ);
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < 4; kk++) wg_rs<T>(dQ, fa[kk], wgd(mK + LA_WGD_MN(kk)));
            wg_commit();
            update(mQ + 2 * LA_WGD_TILE, false); /* B = V; the S copy's readers retired above */
            wg_wait<1>();      /* dQ done; the update may run on */
            wg_store_rows<T>(rows_at(bp.dq, t0), bp.dq.st, dQ, p.scale, Ag + warp * 2048, n - 16 * warp, lane);
        } else {
            /* A = scale (Q K^T) * Gamma and dA = scale (dO V^T) * Gamma (dK's
             * intra part is scale dA^T Q) into shared memory. */
            const float (&Aa)[32] = X;
            wg_wait<0>();
            wg_put_tile<T>(Ag, warp, lane, [&](int i) { return Aa[i] * fm[i]; });
            wg_put_tile<T>(dAg, warp, lane, [&](int i) { return dA[i] * fm[i]; });
            fence_proxy_async();
            __syncthreads(); /* A and dA written by every warp */
            /* Inter parts K dS' (B: the dS copy [d][e] N-major) and V dS'^T
             * (B K-major); intra parts A^T dO, dA^T Q (A M-major). */
            float dV[32], dK[32], dV2[32], dK2[32];
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < 4; kk++) wg_ss_acc<T, 0, 1>(dV, wgd(kK + LA_WGD_K(kk)), wgd(mS + LA_WGD_MN(kk)), kk > 0);
#pragma unroll
            for (int kk = 0; kk < 4; kk++) wg_ss_acc<T, 0, 0>(dK, wgd(kV + LA_WGD_K(kk)), wgd(kS + LA_WGD_K(kk)), kk > 0);
#pragma unroll
            for (int kk = 0; kk < 4; kk++) wg_ss_acc<T, 1, 1>(dV2, wgd(mA + LA_WGD_MN(kk)), wgd(mD + LA_WGD_MN(kk)), kk > 0);
#pragma unroll
            for (int kk = 0; kk < 4; kk++) wg_ss_acc<T, 1, 1>(dK2, wgd(mdA + LA_WGD_MN(kk)), wgd(mQ + LA_WGD_MN(kk)), kk > 0);
            wg_commit();
            update_frags(sQ, PRECISE);
            wg_wait<0>();
            __syncthreads(); /* every warp's products retired: A and dA may take the gradient tiles */
            update(mD, PRECISE);
            const float f0 = regular ? Ts[2 * LA_C - 1 - r0] : r0 < n ? exp_nonpos(Gs[LA_C + r0]) : 0.0f;
            const float f1 = regular ? Ts[2 * LA_C - 9 - r0] : r0 + 8 < n ? exp_nonpos(Gs[LA_C + r0 + 8]) : 0.0f;
#pragma unroll
            for (int i = 0; i < 32; i++) {
                const float f = ((i >> 1) & 1) ? f1 : f0;
                dV[i] = dV[i] * f + dV2[i];
                dK[i] = dK[i] * f + dK2[i];
            }
            wg_store_rows<T>(rows_at(bp.dv, t0), bp.dv.st, dV, 1.0f, Ag + warp * 2048, n - 16 * warp, lane);
            wg_store_rows<T>(rows_at(bp.dk, t0), bp.dk.st, dK, 1.0f, dAg + warp * 2048, n - 16 * warp, lane);
        }
        /* The state's copy for the next chunk (its readers retired above). */
        wg_wait<0>();
        wg_put_tile<T>(Sg, warp, lane, [&](int i) { return S[i]; });
        fence_proxy_async();
    }

    /* Role 1 of a sequence's first segment: what is left in dS is the
     * gradient of the initial state. */
    if (role == 1 && L.sp == 0 && bp.ds0.ptr) {
        const bool have = nchunks > 0 || has_init;
        float *dst = bp.ds0.ptr + L.s * bp.ds0.ss + h * bp.ds0.sh;
#pragma unroll
        for (int i = 0; i < 32; i++) {
            const int d = wgf_row(warp, lane, i), e = wgf_col(lane, i);
            if (d < p.D && e < p.E) dst[d * bp.ds0.sd + e * bp.ds0.se] = have ? S[i] : 0.0f;
        }
    }
}

#endif
