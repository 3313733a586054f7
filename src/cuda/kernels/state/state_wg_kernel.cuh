/*
 * state_wg_kernel.cuh - the forward's state pass on Hopper (sm_90a): tiles
 * loaded by the tensor memory accelerator (TMA), the update on warpgroup
 * tensor cores (wgmma), for D in (64, 128] and 128-column value slices.
 * Every segment's local state S = sum_j e^{G_end - G_j} k_j^T v_j, as the
 * mma.sync state pass (fwd_kernel.cuh, STATE_ONLY) computes it, with the
 * same segments, fold, factor tables and hi/lo split.
 *
 * Why a kernel of its own: the state pass does one product per chunk, the
 * rank-64 update S <- e^{G_last} S + K~^T V, and moves 32 KB of K and V for
 * it.  The mma.sync pass (8 warps, ~1000 instructions per warp and chunk)
 * ran at 2.1x the time of reading K and V once (B4 H32 N8192: 0.264 ms
 * against 0.128).  A first version of this kernel with per-thread 16-byte
 * cp.async copies ran no faster (0.29 ms): ncu showed every 16-byte copy as
 * its own L2 request for a whole 32-byte sector, so 1.07 GB crossed from L2
 * for 537 MB of K and V, with L2 88% busy at 2 TB/s of DRAM reads.  TMA
 * moves a tile in whole lines, with one instruction per 8 KB.
 *
 * Block: two warpgroups (256 threads), one per SM.  Warpgroup w holds state
 * rows 64 w .. 64 w + 63 (all 128 columns: two m64n64 accumulators, 64
 * floats per thread).  Tiles: K and V of a chunk as two 64-column halves
 * each, [64 tokens][64 columns] in the 128-byte swizzled layout TMA writes
 * and wgmma reads (16-byte piece j of row r at piece j ^ (r % 8)), zero
 * past the tensor's rows and columns; in a ring of LA_SWG_SLOTS, one
 * mbarrier each, loaded LA_SWG_AHEAD chunks ahead by thread 0.  Per chunk:
 *   K~^T A fragments   ldmatrix.trans of warpgroup w's K half times the key
 *                      factors (hi, and lo where the state leaves the kernel)
 *   S *= e^{G_last}    after the previous chunk's wgmmas retired
 *   S += K~^T V        wgmma, A from registers, V (N-major) from shared memory
 * The wgmmas of chunk c run while both warpgroups pass chunk c + 1's
 * barrier; slot (c + AHEAD) is chunk c - 2's, whose wgmmas every warpgroup
 * waited for before chunk c's barrier.
 */
#ifndef LA_CUDA_STATE_WG_KERNEL_CUH
#define LA_CUDA_STATE_WG_KERNEL_CUH

#include "fwd_kernel.cuh"
#include "tma.cuh"

#define LA_SWG_THREADS 256
#define LA_SWG_DP 128
#define LA_SWG_EP 128
#define LA_SWG_AHEAD 3
#define LA_SWG_SLOTS (LA_SWG_AHEAD + 2)
#define LA_SWG_HALF (LA_C * 64 * 2)  /* bytes of a [64][64] half tile */
#define LA_SWG_SLOT (4 * LA_SWG_HALF) /* K and V, two halves each */

/* Shared-memory bytes: 1024 for aligning the ring (the swizzle repeats every
 * 1024 bytes; TMA and the descriptors assume tiles start on it), the ring,
 * its mbarriers, the factor tables or raw decays, the per-warp cumsums. */
__host__ __device__ constexpr int state_wg_smem_bytes() {
    return 1024 + LA_SWG_SLOTS * LA_SWG_SLOT + LA_SWG_SLOTS * 8 +
           (fwd_tabs_floats(LA_SWG_SLOTS) + LA_SWG_THREADS / 32 * 2 * LA_C) * 4;
}

template <typename T, bool PRECISE>
__global__ void __launch_bounds__(LA_SWG_THREADS, 1)
    la_state_wg_kernel(const la_fwd_params_t p, const __grid_constant__ CUtensorMap tmK,
                       const __grid_constant__ CUtensorMap tmV) {
    constexpr int DP = LA_SWG_DP, EP = LA_SWG_EP;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const uint32_t sraw = smem_addr(smem_raw);
    const uint32_t s0 = (sraw + 1023) & ~1023u; /* the ring: slot q at s0 + q SLOT, K halves then V halves */
    unsigned char *const after = smem_raw + (s0 - sraw) + LA_SWG_SLOTS * LA_SWG_SLOT;
    const uint32_t bar0 = smem_addr(after); /* mbarrier of slot q at bar0 + 8 q */
    float *gs = reinterpret_cast<float *>(after + LA_SWG_SLOTS * 8);
    float *Ts = gs;
    uint2 *Kf = reinterpret_cast<uint2 *>(Ts + LA_FWD_TAB);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int wg = warp >> 2, wq = warp & 3; /* warpgroup: state rows 64 wg ..; its warp */
    float *Gs = gs + fwd_tabs_floats(LA_SWG_SLOTS) + warp * 2 * LA_C;

    const int h = blockIdx.y, g = blockIdx.x;
    const int e0 = blockIdx.z * EP;
    const seg_loc L = locate_segment(p.seg, g);
    if (L.sp >= L.nseg) return; /* past the last segment (device offsets: the grid is a bound) */
    const int64_t slot = (int64_t)g * p.H + h;
    if (L.sp == L.nseg - 1 && state_pass_skips_last(p)) {
        write_skipped_logdecay(p, L, h, slot);
        return;
    }
    const int nchunks = (int)((L.te - L.ts + LA_C - 1) / LA_C);
    const int n_last = (int)(L.te - L.ts - (int64_t)(nchunks - 1) * LA_C);
    const int tok0 = (int)(L.tb + L.ts); /* the host checked that tokens fit an int (TMA coordinates) */

    if (threadIdx.x == 0) {
        for (int q = 0; q < LA_SWG_SLOTS; q++) mbar_init(bar0 + 8 * q, 1);
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
    auto issue = [&](int c) { /* thread 0 */
        const int q = c % LA_SWG_SLOTS;
        const uint32_t sb = s0 + q * LA_SWG_SLOT, bar = bar0 + 8 * q;
        const int tok = tok0 + c * LA_C;
        mbar_expect_tx(bar, LA_SWG_SLOT);
        tma_load_box(sb, &tmK, 0, tok, h, (int)L.b, bar);
        tma_load_box(sb + LA_SWG_HALF, &tmK, 64, tok, h, (int)L.b, bar);
        tma_load_box(sb + 2 * LA_SWG_HALF, &tmV, e0, tok, h, (int)L.b, bar);
        tma_load_box(sb + 3 * LA_SWG_HALF, &tmV, e0 + 64, tok, h, (int)L.b, bar);
    };
    if (threadIdx.x == 0)
        for (int c = 0; c < LA_SWG_AHEAD && c < nchunks; c++) issue(c);

    /* Not zeroed: chunk 0's first wgmmas ignore S's input (wg_rs_acc). */
    float S[2][32];
    const float ld_head = p.decay == 1 ? la_head_log_decay(p.ld, p.ld_sh, p.H, h, p.check_rec) : 0.0f;
    const bool table = p.decay != 2;
    const float decay_chunk = exp_nonpos(ld_head * (float)LA_C);
    if (table) make_chunk_tables<T>(Ts, Kf, ld_head, LA_SWG_THREADS); /* seen after chunk 0's barrier */
    /* ldmatrix.trans row address of K~^T's A fragments in warpgroup wg's K
     * half: matrix m = lane / 8 is tokens 8 (m >> 1) + lane % 8, columns
     * 16 wq + 8 (m & 1) (piece 2 wq + (m & 1), swizzled by the token). */
    const int krow = 8 * ((lane >> 3) >> 1) + (lane & 7);
    const uint32_t offKT = wg * LA_SWG_HALF + krow * 128 + (((2 * wq + ((lane >> 3) & 1)) ^ (lane & 7)) << 4);
    float seg_logdecay = 0.0f;
    /* SCALAR_TOKEN's raw decays (plain loads), one chunk ahead. */
    if (p.decay == 2 && nchunks > 0) load_raw_decays(gs, p, L, h, L.ts, nchunks > 1 ? LA_C : n_last);

    for (int c = 0; c < nchunks; c++) {
        const int q = c % LA_SWG_SLOTS;
        const int n = c < nchunks - 1 ? LA_C : n_last;
        const uint32_t sKb = s0 + q * LA_SWG_SLOT, sVb = sKb + 2 * LA_SWG_HALF;
        mbar_wait(bar0 + 8 * q, (uint32_t)((c / LA_SWG_SLOTS) & 1));
        if (n < LA_C) {
            /* A sequence's last chunk: rows n.. hold the next sequence's
             * tokens (packed batches) or TMA's zeros.  Zero them: a key
             * factor of 0 alone would still turn an infinite value into NaN. */
            for (int i = threadIdx.x; i < (LA_C - n) * 4 * 8; i += LA_SWG_THREADS) {
                const int r = n + i / 32, piece = i % 32; /* 8 pieces of 16 bytes per row, 4 halves */
                *reinterpret_cast<uint4 *>(smem_raw + (sKb - sraw) + (piece >> 3) * LA_SWG_HALF + r * 128 +
                                           (piece & 7) * 16) = make_uint4(0, 0, 0, 0);
            }
            fence_proxy_async();
        }
        __syncthreads(); /* raw decays (and zeroed rows) seen; chunk c - 2's wgmmas retired in every warpgroup */
        if (threadIdx.x == 0 && c + LA_SWG_AHEAD < nchunks) issue(c + LA_SWG_AHEAD);
        if (p.decay == 2 && c + 1 < nchunks) /* the next chunk's, seen after its barrier */
            load_raw_decays(gs + ((c + 1) % LA_SWG_SLOTS) * LA_C, p, L, h, L.ts + (int64_t)(c + 1) * LA_C,
                            c + 1 < nchunks - 1 ? LA_C : n_last);
        const bool regular = table && n == LA_C;
        if (!regular) {
            chunk_cumsum(gs + q * LA_C, Gs, p.decay, ld_head, n, lane);
            __syncwarp();
        }
        const float G_last = regular ? ld_head * (float)LA_C : Gs[n - 1];
        const float sdecay = regular ? decay_chunk : exp_nonpos(G_last);
        la_fpair_t fp[LA_C / 16][2];
#pragma unroll
        for (int kk = 0; kk < LA_C / 16; kk++) {
            const int j0 = 16 * kk + 2 * (lane & 3);
            if (regular) {
                fpair_unpack<T>(fp[kk][0], Kf[j0 >> 1]);
                fpair_unpack<T>(fp[kk][1], Kf[(j0 + 8) >> 1]);
            } else {
                auto kf = [&](int j) { return j < n ? exp_nonpos(Gs[LA_C + j]) : 0.0f; };
                fpair_set<T>(fp[kk][0], kf(j0), kf(j0 + 1));
                fpair_set<T>(fp[kk][1], kf(j0 + 8), kf(j0 + 9));
            }
        }
        /* Chunk c - 1's wgmmas read S and their A registers until here. */
        wg_wait<0>();
        uint32_t ahi[LA_C / 16][4], alo[LA_C / 16][4];
#pragma unroll
        for (int kk = 0; kk < LA_C / 16; kk++) {
            uint32_t a[4];
            ldmatrix_x4_trans_at(a, sKb + offKT + kk * 16 * 128);
#pragma unroll
            for (int r = 0; r < 4; r++) fpair_apply<T>(fp[kk][r >> 1], a[r], ahi[kk][r], alo[kk][r], PRECISE);
        }
#pragma unroll
        for (int nh = 0; nh < 2; nh++)
#pragma unroll
            for (int i = 0; i < 32; i++) S[nh][i] *= sdecay;
        wg_fence_acc(S[0]);
        wg_fence_acc(S[1]);
        wg_fence();
        /* V half nh, N-major: 128-byte rows of 64 columns, 8-row groups 1024
         * bytes apart; a k16 step is 16 rows (2048 bytes) on. */
#pragma unroll
        for (int kk = 0; kk < LA_C / 16; kk++)
#pragma unroll
            for (int nh = 0; nh < 2; nh++) {
                const uint64_t dv = wg_desc_sw128(sVb + nh * LA_SWG_HALF + kk * 2048, LA_SWG_HALF, 1024);
                if (kk == 0) wg_rs_acc<T>(S[nh], ahi[kk], dv, c > 0);
                else wg_rs<T>(S[nh], ahi[kk], dv);
            }
        if (PRECISE) {
#pragma unroll
            for (int kk = 0; kk < LA_C / 16; kk++)
#pragma unroll
                for (int nh = 0; nh < 2; nh++)
                    wg_rs<T>(S[nh], alo[kk], wg_desc_sw128(sVb + nh * LA_SWG_HALF + kk * 2048, LA_SWG_HALF, 1024));
        }
        wg_commit();
        seg_logdecay += G_last;
    }
    wg_wait<0>();

    /* The local state, rows 64 wg + 16 wq + lane / 4 (+ 8), columns in pairs. */
    float *dst = p.seg_state + slot * DP * p.ept + e0;
#pragma unroll
    for (int nh = 0; nh < 2; nh++)
#pragma unroll
        for (int i = 0; i < 32; i += 2) {
            const int d = 64 * wg + 16 * wq + (lane >> 2) + 8 * ((i >> 1) & 1), e = 64 * nh + 8 * (i >> 2) + 2 * (lane & 3);
            *reinterpret_cast<float2 *>(dst + (int64_t)d * p.ept + e) =
                nchunks > 0 ? make_float2(S[nh][i], S[nh][i + 1]) : make_float2(0.0f, 0.0f);
        }
    if (blockIdx.z == 0 && threadIdx.x == 0) p.seg_logdecay[slot] = seg_logdecay;
}

#endif
