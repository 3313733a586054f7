/*
 * fwd_wg_kernel.cuh - the chunked forward on Hopper's warpgroup tensor cores
 * (wgmma, sm_90a): the same walk as fwd_kernel.cuh (segments, prefix mode,
 * state pass, regular-chunk tables), with one warpgroup (4 warps) per block
 * doing a whole 64-token chunk in 16 to 36 wgmma instructions where the
 * mma.sync kernel's 8 warps issue ~450 mma.sync and as many ldmatrix.
 *
 * Per chunk, for a slice of EP = 64 value columns (accumulators: 32 floats
 * per thread per m64n64 tile):
 *   P  = Q K^T                           A, B from shared memory (K-major)
 *   O  = Q S~                            B = the state's dtype copy (N-major)
 *   O  = e^{G_i} O + (P * Gamma) V       A = the masked P from registers
 *   S  = e^{G_last} S + K~^T V            A = K~^T from registers: ldmatrix.trans
 *                                         of the K tile times the key factors
 * with every exponent <= 0 as in the mma.sync kernel, whose factor tables
 * (Ts, Kf), cumsum and segment bookkeeping it shares.  Tiles are stored in
 * wgmma.cuh's core-matrix layout (no swizzle), the state copy's fragment
 * stores are conflict-free there.
 *
 * Status (H200, 2026-11-21): correct on the whole case table, but slower than
 * the mma.sync kernels (D64 B4 H32 N8192 forward 0.44 against 0.32 ms): with
 * one warpgroup per chunk and every phase waiting on the one before (tiles,
 * Q K^T with Q S~ and the update, the mask, P V, the stores), 3 blocks per SM
 * leave the SM idle most of the time (ncu: 694 instructions per warp and
 * chunk, 15 cycles between issues).  The way on (docs/PERF.md): a producer
 * warp loading with TMA and two consumer warpgroups on different chunks.
 * Hence opt-in (host/plan.cu, want_fwd_wgmma).
 */
#ifndef LA_CUDA_FWD_WG_KERNEL_CUH
#define LA_CUDA_FWD_WG_KERNEL_CUH

#include "fwd_kernel.cuh"
#include "wgmma.cuh"

#define LA_WG_THREADS 128
#define LA_WG_EP 64

/* Shared-memory bytes of one block: Q (not in the state pass), K, V tiles
 * per stage, the state's dtype copy (not in the state pass), the factor
 * tables and the per-warp cumsums. */
__host__ __device__ constexpr int fwd_wg_smem_bytes(int DP, int stages, bool state_only) {
    return ((state_only ? 1 : 2) * stages * LA_C * DP + stages * LA_C * LA_WG_EP + (state_only ? 0 : DP * LA_WG_EP)) * 2 +
           (fwd_tabs_floats(stages) + LA_WG_THREADS / 32 * 2 * LA_C) * 4;
}

/* Blocks per SM the kernel is built for (its register cap). */
__host__ __device__ constexpr int fwd_wg_blocks_per_sm(int DP) { return DP == 64 ? 3 : 2; }

/* The state slice as wgmma accumulators: S[mt] is rows 64 mt.. of the DP x 64
 * slice; f(x, d, e) on every element this thread holds. */
template <int DP, typename A, typename Fn>
__device__ __forceinline__ void wg_state_each(A &S, int warp, int lane, Fn f) {
#pragma unroll
    for (int mt = 0; mt < DP / 64; mt++)
#pragma unroll
        for (int i = 0; i < 32; i++)
            f(S[mt][i], 64 * mt + 16 * warp + (lane >> 2) + 8 * ((i >> 1) & 1), 8 * (i >> 2) + 2 * (lane & 3) + (i & 1));
}

/* One thread's share of a [64][X] tile's copies: 16-byte pieces t + 128 k in
 * row order (eight consecutive threads read a row's 128 bytes: whole lines,
 * as few L2 requests as the tile allows), i.e. rows row0 + k RSTEP, columns
 * col .. col + 7, stored at their core-matrix place soff + 2048 k. */
typedef struct la_wg_src {
    const char *src;  /* its first piece in the next chunk to load */
    int64_t tok_step; /* bytes per token */
    uint32_t soff;    /* its first piece's byte offset in the tile */
    int bytes;        /* bytes of its piece inside the valid columns */
    int row0;
} la_wg_src_t;

template <typename T, int X>
__device__ __forceinline__ la_wg_src_t wg_src(const la_tok_t &x, int64_t b, int64_t h, int64_t tok0, int valid_cols) {
    constexpr int PPR = X / 8; /* pieces per row */
    const int t = threadIdx.x;
    la_wg_src_t s;
    s.row0 = t / PPR;
    const int col = 8 * (t % PPR);
    s.soff = wg_cm_off(s.row0, col, X);
    s.bytes = piece_bytes(valid_cols, t % PPR);
    s.src = reinterpret_cast<const char *>(static_cast<const T *>(x.ptr) + b * x.sb + h * x.sh + (tok0 + s.row0) * x.st +
                                           col);
    s.tok_step = x.st * (int64_t)sizeof(T);
    return s;
}

/* Issue the next chunk's copies into the tile at sdst (rows >= nrows and
 * columns past the valid ones zero-filled), then step to the chunk after. */
template <typename T, int X>
__device__ __forceinline__ void wg_issue(uint32_t sdst, la_wg_src_t &s, int nrows, const void *base, bool issue) {
    constexpr int PIECES = X / 16, RSTEP = 1024 / X; /* RSTEP rows = 2048 bytes of the tile */
    if (issue) {
#pragma unroll
        for (int k = 0; k < PIECES; k++) {
            const bool ok = s.row0 + k * RSTEP < nrows && s.bytes > 0;
            cp_async_16_at(sdst + s.soff + 2048 * k, ok ? s.src + k * RSTEP * s.tok_step : base, ok ? s.bytes : 0);
        }
    }
    s.src += LA_C * s.tok_step;
}

template <typename T, int DP, bool STATE_ONLY, int STAGES, bool PRECISE>
__global__ void __launch_bounds__(LA_WG_THREADS, fwd_wg_blocks_per_sm(DP)) la_fwd_wg_kernel(const la_fwd_params_t p) {
    constexpr int EP = LA_WG_EP, MT = DP / 64;
    constexpr uint32_t TQ = LA_C * DP * 2, TV = LA_C * EP * 2; /* tile bytes */
    /* Descriptor strides: K-major tiles step 128 bytes per core matrix along
     * K and DP/8 x 128 per 8 rows; N-major [k][n] tiles (V, the state copy)
     * 8 x 128 per 8 rows of k and 128 along n. */
    constexpr uint32_t SBO_Q = DP / 8 * 128, LBO_N = EP / 8 * 128;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const uint32_t s0 = smem_addr(smem_raw);
    const uint32_t sQ0 = s0, sK0 = sQ0 + (STATE_ONLY ? 0 : STAGES * TQ), sV0 = sK0 + STAGES * TQ;
    const uint32_t sS = sV0 + STAGES * TV;
    unsigned char *const Sraw = smem_raw + (sS - s0);
    float *gs = reinterpret_cast<float *>(smem_raw + (sS - s0) + (STATE_ONLY ? 0 : DP * EP * 2));
    float *Ts = gs;
    uint2 *Kf = reinterpret_cast<uint2 *>(Ts + LA_FWD_TAB);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float *Gs = gs + fwd_tabs_floats(STAGES) + warp * 2 * LA_C;

    const int h = blockIdx.y, g = blockIdx.x;
    const int e0 = blockIdx.z * EP;
    const int Eloc = p.E - e0 < EP ? p.E - e0 : EP;
    const seg_loc L = locate_segment(p.seg, g);
    if (L.sp >= L.nseg) return; /* past the last segment (device offsets: the grid is a bound) */
    const int64_t slot = (int64_t)g * p.H + h;
    const bool multi = p.seg_state != nullptr;
    if (STATE_ONLY && L.sp == L.nseg - 1 && state_pass_skips_last(p)) {
        write_skipped_logdecay(p, L, h, slot);
        return;
    }

    float S[MT][32];
    int64_t s_sd = 0, s_se = 0;
    const float *s_src = STATE_ONLY ? nullptr : state_source(p, L, h, slot, DP, e0, &s_sd, &s_se);
    wg_state_each<DP>(S, warp, lane, [&](float &x, int d, int e) {
        x = (s_src && d < p.D && e < Eloc) ? s_src[d * s_sd + e * s_se] : 0.0f;
    });
    /* The state's copy in the input dtype (core-matrix layout [DP][64]): the
     * B operand of Q S for the next chunk; pairs of columns as 4-byte words. */
    auto write_state_copy = [&]() {
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int i = 0; i < 32; i += 2) {
                const int d = 64 * mt + 16 * warp + (lane >> 2) + 8 * ((i >> 1) & 1), e = 8 * (i >> 2) + 2 * (lane & 3);
                *reinterpret_cast<uint32_t *>(Sraw + wg_cm_off(d, e, EP)) = mma_traits<T>::pack(S[mt][i], S[mt][i + 1]);
            }
        fence_proxy_async();
    };
    if (!STATE_ONLY) write_state_copy();

    const int64_t walk0 = p.prefix ? 0 : L.ts;
    const int nchunks = (int)((L.te - walk0 + LA_C - 1) / LA_C);
    const int c_out = STATE_ONLY ? nchunks : (int)((L.ts - walk0) / LA_C);
    const int n_last = (int)(L.te - walk0 - (int64_t)(nchunks - 1) * LA_C);
    la_tok_t vz = p.v;
    vz.ptr = static_cast<const T *>(p.v.ptr) + e0 * p.v.sc;
    float seg_logdecay = 0.0f;
    la_wg_src_t tq, tk, tv;
    if (!STATE_ONLY) tq = wg_src<T, DP>(p.q, L.b, h, L.tb + walk0, p.D);
    tk = wg_src<T, DP>(p.k, L.b, h, L.tb + walk0, p.D);
    tv = wg_src<T, EP>(vz, L.b, h, L.tb + walk0, Eloc);

    auto issue = [&](int c) {
        const int buf = c % STAGES;
        const int64_t t0 = walk0 + (int64_t)c * LA_C;
        const int nrows = c < nchunks - 1 ? LA_C : n_last;
        if (!STATE_ONLY) wg_issue<T, DP>(sQ0 + buf * TQ, tq, nrows, p.q.ptr, c >= c_out);
        wg_issue<T, DP>(sK0 + buf * TQ, tk, nrows, p.k.ptr, true);
        wg_issue<T, EP>(sV0 + buf * TV, tv, nrows, p.v.ptr, true);
        load_raw_decays(gs + buf * LA_C, p, L, h, t0, nrows);
        cp_async_commit();
    };

    const float ld_head = p.decay == 1 ? la_head_log_decay(p.ld, p.ld_sh, p.H, h, p.check_rec) : 0.0f;
#pragma unroll
    for (int c = 0; c < (STAGES > 1 ? STAGES - 1 : 1); c++) {
        if (c < nchunks) issue(c);
        else cp_async_commit();
    }
    /* Regular chunks' factor tables and registers, as in fwd_kernel.cuh. */
    const bool table = p.decay != 2;
    const int i0 = 16 * warp + (lane >> 2);
    const float row_f0 = exp_nonpos(ld_head * (float)(i0 + 1)), row_f1 = exp_nonpos(ld_head * (float)(i0 + 9));
    const float decay_chunk = exp_nonpos(ld_head * (float)LA_C);
    if (table) make_chunk_tables<T>(Ts, Kf, ld_head, LA_WG_THREADS);
    /* ldmatrix.trans row address of K~^T's A fragments (matrix lane / 8:
     * d rows 16 warp + 8 (m & 1), tokens 8 (m >> 1) + lane % 8). */
    const uint32_t offKT = wg_cm_off(8 * ((lane >> 3) >> 1) + (lane & 7), 16 * warp + 8 * ((lane >> 3) & 1), DP);

    for (int c = 0; c < nchunks; c++) {
        const int buf = c % STAGES;
        const int64_t t0 = walk0 + (int64_t)c * LA_C;
        const int n = c < nchunks - 1 ? LA_C : n_last;
        const bool out = c >= c_out;
        if (STAGES == 1) {
            if (c > 0) {
                __syncthreads();
                issue(c);
            }
            cp_async_wait<0>();
        } else {
            cp_async_wait<STAGES - 2>();
        }
        fence_proxy_async(); /* this thread's copies, for the tensor cores */
        __syncthreads();     /* chunk c's tiles (and the state copy) are in for everyone */
        if (STAGES > 1) {
            if (c + STAGES - 1 < nchunks) issue(c + STAGES - 1);
            else cp_async_commit();
        }
        const bool regular = table && n == LA_C;
        if (!regular) {
            chunk_cumsum(gs + buf * LA_C, Gs, p.decay, ld_head, n, lane);
            __syncwarp();
        }
        const float G_last = regular ? ld_head * (float)LA_C : Gs[n - 1];
        const uint32_t sQb = sQ0 + buf * TQ, sKb = sK0 + buf * TQ, sVb = sV0 + buf * TV;

        /* The state update's operands first (S is idle: the last chunk's
         * update is done and its copy written): S <- e^{G_last} S, and the A
         * fragments of K~^T, K~_j = e^{G_last - G_j} k_j (0 past the valid rows). */
        const float sdecay = regular ? decay_chunk : exp_nonpos(G_last);
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int i = 0; i < 32; i++) S[mt][i] *= sdecay;
        uint32_t ahi[LA_C / 16][MT][4], alo[LA_C / 16][MT][4];
#pragma unroll
        for (int kk = 0; kk < LA_C / 16; kk++) {
            const int j0 = 16 * kk + 2 * (lane & 3);
            la_fpair_t fp[2];
            if (regular) {
                fpair_unpack<T>(fp[0], Kf[j0 >> 1]);
                fpair_unpack<T>(fp[1], Kf[(j0 + 8) >> 1]);
            } else {
                auto kf = [&](int j) { return j < n ? exp_nonpos(Gs[LA_C + j]) : 0.0f; };
                fpair_set<T>(fp[0], kf(j0), kf(j0 + 1));
                fpair_set<T>(fp[1], kf(j0 + 8), kf(j0 + 9));
            }
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                uint32_t a[4];
                ldmatrix_x4_trans_at(a, sKb + offKT + kk * 2 * SBO_Q + mt * 8 * 128);
#pragma unroll
                for (int r = 0; r < 4; r++) fpair_apply<T>(fp[r >> 1], a[r], ahi[kk][mt][r], alo[kk][mt][r], PRECISE);
            }
        }

        /* The state update's wgmmas (after wg_fence, inside a commit group). */
        auto state_update_issue = [&]() {
#pragma unroll
            for (int kk = 0; kk < LA_C / 16; kk++) {
                const uint64_t dv = wg_desc(sVb + kk * 2 * LBO_N, LBO_N, 128);
#pragma unroll
                for (int mt = 0; mt < MT; mt++) wg_rs<T>(S[mt], ahi[kk][mt], dv);
            }
            if (PRECISE) {
#pragma unroll
                for (int kk = 0; kk < LA_C / 16; kk++) {
                    const uint64_t dv = wg_desc(sVb + kk * 2 * LBO_N, LBO_N, 128);
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) wg_rs<T>(S[mt], alo[kk][mt], dv);
                }
            }
        };
        if (!out) { /* before the segment (prefix mode) or the state pass: the update alone */
            wg_fence();
            state_update_issue();
            wg_commit();
            wg_wait<0>();
        } else {
            /* One commit group: P = Q K^T, O = Q S~ (the copy is zero while
             * the state is) and the state update.  Every accumulator is
             * defined by its group's first wgmma and read only after the
             * wait (anything else makes the compiler serialise them). */
            float P[32], O[32];
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < DP / 16; kk++) {
                const uint64_t dq = wg_desc(sQb + kk * 256, 128, SBO_Q);
                if (kk == 0) wg_ss<T, 0, 0>(P, dq, wg_desc(sKb, 128, SBO_Q));
                else wg_ss<T, 1, 0>(P, dq, wg_desc(sKb + kk * 256, 128, SBO_Q));
            }
#pragma unroll
            for (int kk = 0; kk < DP / 16; kk++) {
                const uint64_t dq = wg_desc(sQb + kk * 256, 128, SBO_Q), ds = wg_desc(sS + kk * 2 * LBO_N, LBO_N, 128);
                if (kk == 0) wg_ss<T, 0, 1>(O, dq, ds);
                else wg_ss<T, 1, 1>(O, dq, ds);
            }
            state_update_issue();
            wg_commit();
            wg_wait<0>();

            /* Mask and decay P into A fragments; scale O's rows by e^{G_i}. */
            uint32_t Pa[4][4];
            const int ja = 2 * (lane & 3);
            if (regular) {
                const float *tdiag = Ts + LA_C + i0 - ja;
#pragma unroll
                for (int i = 0; i < 8; i++)
#pragma unroll
                    for (int hr = 0; hr < 2; hr++)
                        Pa[i >> 1][2 * (i & 1) + hr] = mma_traits<T>::pack(P[4 * i + 2 * hr] * tdiag[8 * hr - 8 * i],
                                                                           P[4 * i + 2 * hr + 1] * tdiag[8 * hr - 8 * i - 1]);
            } else {
#pragma unroll
                for (int i = 0; i < 8; i++)
#pragma unroll
                    for (int hr = 0; hr < 2; hr++) {
                        const int ti = i0 + 8 * hr, tj = 8 * i + ja;
                        const float gi = Gs[ti];
                        const float v0 = (ti >= tj && ti < n) ? P[4 * i + 2 * hr] * exp_nonpos(gi - Gs[tj]) : 0.0f;
                        const float v1 = (ti >= tj + 1 && ti < n) ? P[4 * i + 2 * hr + 1] * exp_nonpos(gi - Gs[tj + 1]) : 0.0f;
                        Pa[i >> 1][2 * (i & 1) + hr] = mma_traits<T>::pack(v0, v1);
                    }
            }
            const float f0 = regular ? row_f0 : exp_nonpos(Gs[i0]);
            const float f1 = regular ? row_f1 : exp_nonpos(Gs[i0 + 8]);
#pragma unroll
            for (int i = 0; i < 32; i++) O[i] *= ((i >> 1) & 1) ? f1 : f0;
            /* O += (P * Gamma) V */
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < LA_C / 16; kk++) wg_rs<T>(O, Pa[kk], wg_desc(sVb + kk * 2 * LBO_N, LBO_N, 128));
            wg_commit();
            wg_wait<0>();
            T *obase = const_cast<T *>(static_cast<const T *>(p.o.ptr)) + L.b * p.o.sb + h * p.o.sh +
                       (L.tb + t0) * p.o.st + e0 * p.o.sc;
            if (n == LA_C && Eloc == EP) {
                T *row0 = obase + i0 * p.o.st + 2 * (lane & 3);
                T *row1 = row0 + 8 * p.o.st;
#pragma unroll
                for (int i = 0; i < 8; i++) {
                    *reinterpret_cast<uint32_t *>(row0 + i * 8) = mma_traits<T>::pack(O[4 * i] * p.scale, O[4 * i + 1] * p.scale);
                    *reinterpret_cast<uint32_t *>(row1 + i * 8) =
                        mma_traits<T>::pack(O[4 * i + 2] * p.scale, O[4 * i + 3] * p.scale);
                }
            } else {
#pragma unroll
                for (int i = 0; i < 8; i++)
#pragma unroll
                    for (int hr = 0; hr < 2; hr++) {
                        const int r = i0 + 8 * hr, e = 8 * i + 2 * (lane & 3);
                        if (r >= n || e >= Eloc) continue;
                        T *dst = obase + r * p.o.st + e;
                        const float x0 = O[4 * i + 2 * hr] * p.scale, x1 = O[4 * i + 2 * hr + 1] * p.scale;
                        if (e + 1 < Eloc) *reinterpret_cast<uint32_t *>(dst) = mma_traits<T>::pack(x0, x1);
                        else dst[0] = T(x0);
                    }
            }
        }
        seg_logdecay += G_last;
        if (!STATE_ONLY && c + 1 >= c_out) {
            __syncthreads(); /* every warp's Q S~ of this chunk is past its reads of the copy */
            write_state_copy();
        }
    }

    float *dst = nullptr;
    int64_t dsd = 0, dse = 0;
    if (STATE_ONLY) { dst = p.seg_state + slot * DP * p.ept + e0; dsd = p.ept; dse = 1; }
    else if (!multi && p.sN.ptr && L.sp == L.nseg - 1) {
        dst = p.sN.ptr + L.s * p.sN.ss + h * p.sN.sh + e0 * p.sN.se;
        dsd = p.sN.sd;
        dse = p.sN.se;
    }
    const int Dst = STATE_ONLY ? DP : p.D, Est = STATE_ONLY ? EP : Eloc;
    if (dst)
        wg_state_each<DP>(S, warp, lane, [&](const float &x, int d, int e) {
            if (d < Dst && e < Est) dst[d * dsd + e * dse] = x;
        });
    if (STATE_ONLY && blockIdx.z == 0 && threadIdx.x == 0) p.seg_logdecay[slot] = seg_logdecay;
}

#endif
