/*
 * fwd_ws_kernel.cuh - the forward's output pass for head dims up to 64
 * (bf16, f16) with warps specialised by role: one block of 12 warps per
 * (segment, head, 64-column value slice), one block per SM, where the rows
 * kernel (fwd_rows_kernel.cuh) has 8 warps that each do a share of every
 * product of every chunk.
 *
 *   warps 0-3   the state: warp w owns rows [16w, 16w + 16) of the fp32
 *               state (all 64 columns) and walks every chunk:
 *               S <- e^{G_last} S + K~^T V; it writes the state's copy in the
 *               operand dtype that the chunk's Q S reads, and issues the tile
 *               copies (cp.async) R - 2 chunks ahead.
 *   warps 4-7   the output of the even chunks, warps 8-11 of the odd ones:
 *   warps 8-11  warp (g, r) makes rows [16r, 16r + 16) of a chunk's o, all
 *               64 columns: P = Q K^T, O = e^{G_i} Q S_c + (P * Gamma) V.
 *
 * Why (docs/PERF.md, "Warp roles"): the rows kernel is latency-bound, each
 * chunk a chain (tiles in, the fused k-loop, the mask, P V, the stores, the
 * state copy) that all eight warps walk in step behind one barrier, two
 * warps per scheduler.  Here the state's chain (a short one: 32 mma per
 * warp) runs ahead on its own warps, two chunks' outputs are in flight at
 * once (three warps per scheduler), P's rows are made once (the rows
 * kernel's two column halves each made all of them), and no warp waits for
 * another's output.
 *
 * Synchronisation: R slots, each holding one chunk's Q, K, V tiles, its raw
 * log decays and the state's copy before it (S_c); chunk c lives in slot
 * c % R, and two mbarriers per slot pass it on:
 *   ready[s]  128 arrivals (the state warps): chunk c's tiles have landed
 *             and S_c is written; phase parity (c / R) & 1.
 *   done[s]   128 arrivals (the output group of chunk c): it has read them.
 * The state warps wait on ready too (their barrier among themselves: every
 * thread's copies in), and on done(c - 2) before loading chunk c + R - 2
 * into that chunk's slot.  Every chunk passes both barriers, the ones before
 * the segment's outputs (prefix mode) too, so each slot's phases count
 * chunks one by one and no parity is ever two phases behind.
 *
 * The math, factors and tables are the rows kernel's (every exponent <= 0);
 * what it serves: vectorisable tensors (16-byte rows), no summed head-dim
 * shares (those take the rows kernel), and GPUs whose blocks can hold four
 * slots (host/plan.cu, want_warp_roles).
 */
#ifndef LA_CUDA_FWD_WS_KERNEL_CUH
#define LA_CUDA_FWD_WS_KERNEL_CUH

#include "fwd_rows_kernel.cuh" /* the row-block helpers; fwd_kernel.cuh */

#define LA_WS_THREADS 384 /* 4 state warps, two output groups of 4 */
#define LA_WS_COLS 64     /* value columns per block */
#define LA_WS_PITCH (LA_C + 8)
#define LA_WS_SLOTS 4     /* chunks in flight: the loads run two chunks ahead of the state */

/* Shared memory: R slots of four 64 x 72 operand tiles (Q, K, V, the state
 * copy), R x 64 raw log decays, 12 warps' cumsums, 2R mbarriers. */
__host__ __device__ constexpr int ws_tiles_bytes(int R) { return 4 * R * LA_C * LA_WS_PITCH * 2; }
__host__ __device__ constexpr int ws_smem_bytes(int R) {
    return ws_tiles_bytes(R) + R * LA_C * 4 + LA_WS_THREADS / 32 * 2 * LA_C * 4 + 2 * R * 8;
}

/* Which bytes of a token row one loader thread's 16-byte piece (columns
 * [8 pc, 8 pc + 8) of X) holds: all (full), some (any: bytes of them) or
 * none.  Made from pc < X / 8 and the like (as piece_bytes, which every
 * other tile copy now uses), never from the clamp
 * min(max(X - 8 pc, 0), 8) that tile_src_of once used: inside this kernel's
 * loop ptxas (CUDA 13.0, sm_90) rematerialised that clamp's test `== 8` as
 * one VIMNMX.RELU with a predicate output that came out true for X - 8 pc
 * == 0, so the piece just past X copied 16 bytes of the next columns
 * instead of zeros (found with compute-sanitizer, an out-of-bounds read at
 * the tensor's end, and a dump of the slots; docs/PERF.md). */
typedef struct ws_piece {
    bool full, any;
    int bytes;
} ws_piece_t;
__device__ __forceinline__ ws_piece_t ws_piece_of(int X, int tid) {
    const int pc = tid % 8;
    ws_piece_t w;
    w.full = pc < (X >> 3);
    w.any = pc < ((X + 7) >> 3);
    w.bytes = w.full ? 16 : (w.any ? 2 * (X & 7) : 0);
    return w;
}

/* One loader thread's copies of a chunk's [64][64] tile (128 loader
 * threads: piece tid % 8 of rows tid / 8 + 16 k), as tile_issue_of; pieces
 * with nothing to read (rows past nrows, columns past the tensor's) are
 * zeroed with plain shared stores. */
template <typename T>
__device__ __forceinline__ void ws_tile_issue(uint32_t sdst, la_tile_src_t &t, const ws_piece_t &w, int nrows,
                                              bool issue, int tid) {
    constexpr int RSTEP = 16;
    const int r0 = tid / 8;
    if (issue && nrows == LA_C && w.full) { /* nearly every copy: no per-row test */
        const char *src = t.src;
#pragma unroll
        for (int k = 0; k < LA_C / RSTEP; k++, src += RSTEP * t.tok_step)
            cp_async_16_full_at(sdst + t.soff + k * RSTEP * LA_WS_PITCH * (int)sizeof(T), src);
    } else if (issue) {
#pragma unroll
        for (int k = 0; k < LA_C / RSTEP; k++) {
            const uint32_t dst = sdst + t.soff + k * RSTEP * LA_WS_PITCH * (int)sizeof(T);
            const bool row = r0 + k * RSTEP < nrows;
            if (row && w.full) cp_async_16_full_at(dst, t.src + k * RSTEP * t.tok_step);
            else if (row && w.any) cp_async_16_at(dst, t.src + k * RSTEP * t.tok_step, w.bytes);
            else asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};\n" ::"r"(dst), "r"(0u) : "memory");
        }
    }
    t.src += LA_C * t.tok_step;
}

template <typename T, int R, bool PRECISE>
__global__ void __launch_bounds__(LA_WS_THREADS, 1) la_fwd_ws_kernel(const la_fwd_params_t p) {
    static_assert(sizeof(T) == 2, "bf16 and f16 operands");
    static_assert(R >= 4, "the loads run R - 2 >= 2 chunks ahead");
    constexpr int P = LA_WS_PITCH;
    constexpr int TB = LA_C * P * 2; /* bytes of one tile */
    constexpr int A = R - 2;         /* chunks the loads run ahead of the state warps */
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const uint32_t s0 = smem_addr(smem_raw);
    /* Slot s: Q at sQ0 + s TB, K, V and the state copy R tiles further each. */
    const uint32_t sQ0 = s0, sK0 = sQ0 + R * TB, sV0 = sK0 + R * TB, sS0 = sV0 + R * TB;
    T *const Ss = reinterpret_cast<T *>(smem_raw + 3 * R * TB);
    float *const gs = reinterpret_cast<float *>(smem_raw + ws_tiles_bytes(R)); /* [R][64] raw log decays */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float *const Gs = gs + R * LA_C + warp * 2 * LA_C; /* this warp's cumsums */
    const uint32_t bar0 = s0 + ws_tiles_bytes(R) + (R * LA_C + LA_WS_THREADS / 32 * 2 * LA_C) * 4;
    auto ready = [&](int c) { return bar0 + 8 * (c % R); };
    auto done = [&](int c) { return bar0 + 8 * (R + c % R); };
    auto parity = [&](int c) { return (uint32_t)((c / R) & 1); };
    if (threadIdx.x < 2 * R) mbar_init(bar0 + 8 * threadIdx.x, 128);
    __syncthreads();

    const int h = blockIdx.y, gseg = blockIdx.x;
    const int e0 = blockIdx.z * LA_WS_COLS;
    const int Eloc = p.E - e0 < LA_WS_COLS ? p.E - e0 : LA_WS_COLS;
    const seg_loc L = locate_segment(p.seg, gseg);
    if (L.sp >= L.nseg) return; /* past the last segment (device offsets: the grid is a bound) */
    const int64_t slot = (int64_t)gseg * p.H + h;
    const int64_t walk0 = p.prefix ? 0 : L.ts;
    const int nchunks = (int)((L.te - walk0 + LA_C - 1) / LA_C);
    const int c_out = (int)((L.ts - walk0) / LA_C);
    const int n_last = (int)(L.te - walk0 - (int64_t)(nchunks - 1) * LA_C);
    const float ld_head = p.decay == 1 ? la_head_log_decay(p.ld, p.ld_sh, p.H, h, p.check_rec) : 0.0f;
    const bool table = p.decay != 2;

    if (warp < 4) {
        /* ---------------- the state warps ---------------- */
        const int sw = warp;
        float S[2][1][4][4]; /* state_frag<64, 64> fragments (sw, 0) and (sw, 1): columns [0, 32), [32, 64) */
        int64_t s_sd = 0, s_se = 0;
        const float *s_src = state_source(p, L, h, slot, 64, e0, &s_sd, &s_se);
        state_load<64, 64>(S[0], s_src, s_sd, s_se, p.D, Eloc, sw, 0, lane);
        state_load<64, 64>(S[1], s_src, s_sd, s_se, p.D, Eloc, sw, 1, lane);
        if (c_out == 0) { /* the first output chunk's Q S reads S_0 (or zeros) */
            state_copy<T, 64, 64>(S[0], Ss, sw, 0, lane);
            state_copy<T, 64, 64>(S[1], Ss, sw, 1, lane);
        }
        la_tok_t vz = p.v;
        vz.ptr = static_cast<const T *>(p.v.ptr) + e0 * p.v.sc;
        const int ltid = threadIdx.x; /* 0..127 */
        la_tile_src_t tq = tile_src_of<T, 64>(p.q, L.b, h, L.tb + walk0, p.D, ltid);
        la_tile_src_t tk = tile_src_of<T, 64>(p.k, L.b, h, L.tb + walk0, p.D, ltid);
        la_tile_src_t tv = tile_src_of<T, LA_WS_COLS>(vz, L.b, h, L.tb + walk0, Eloc, ltid);
        const ws_piece_t wd = ws_piece_of(p.D, ltid), we = ws_piece_of(Eloc, ltid);
        auto issue = [&](int c) {
            const int s = c % R;
            const int64_t t0 = walk0 + (int64_t)c * LA_C;
            const int nrows = c < nchunks - 1 ? LA_C : n_last;
            ws_tile_issue<T>(sQ0 + s * TB, tq, wd, nrows, c >= c_out, ltid);
            ws_tile_issue<T>(sK0 + s * TB, tk, wd, nrows, true, ltid);
            ws_tile_issue<T>(sV0 + s * TB, tv, we, nrows, true, ltid);
            load_raw_decays(gs + s * LA_C, p, L, h, t0, nrows); /* threads 0..63 */
            cp_async_commit();
        };
#pragma unroll
        for (int c = 0; c < A; c++) {
            if (c < nchunks) issue(c);
            else cp_async_commit();
        }
        __syncwarp(); /* the copies diverge where D < 64 (zero-filled pieces); ldmatrix and mma need the warp whole */
        /* Regular chunks' key factor pairs e^{ld (63 - j)} of this lane's keys. */
        const int j0 = 2 * (lane & 3);
        uint2 kreg[4][2];
        key_factor_pairs<T>(kreg, j0, [&](int j) { return exp_nonpos(ld_head * (float)(LA_C - 1 - j)); });
        const float decay_chunk = exp_nonpos(ld_head * (float)LA_C);
        /* ldmatrix rows: K^T (rows d of this warp, through .trans), V (.trans). */
        const uint32_t offX = (((lane >> 4) * 8 + (lane & 7)) * P + 16 * sw + ((lane >> 3) & 1) * 8) * 2;
        const uint32_t offV = ((((lane >> 3) & 1) * 8 + (lane & 7)) * P + (lane >> 4) * 8) * 2;

        for (int c = 0; c < nchunks; c++) {
            const int s = c % R;
            const int n = c < nchunks - 1 ? LA_C : n_last;
            cp_async_wait<A - 1>(); /* this thread's copies of chunk c */
            mbar_arrive(ready(c));
            mbar_wait(ready(c), parity(c)); /* everyone's, and S_c written */
            /* Chunk c + A goes where chunk c - 2 was; the state copy S_{c+1}
             * below where chunk c + 1 - R <= c - 2 was. */
            if (c >= 2) mbar_wait(done(c - 2), parity(c - 2));
            if (c + A < nchunks) issue(c + A);
            else cp_async_commit();
            __syncwarp();

            const bool regular = table && n == LA_C;
            uint2 kp[4][2];
            float sdecay = decay_chunk;
            if (regular) {
#pragma unroll
                for (int kk = 0; kk < 4; kk++) { kp[kk][0] = kreg[kk][0]; kp[kk][1] = kreg[kk][1]; }
            } else {
                chunk_cumsum(gs + s * LA_C, Gs, p.decay, ld_head, n, lane);
                __syncwarp();
                key_factor_pairs<T>(kp, j0, [&](int j) { return j < n ? exp_nonpos(Gs[LA_C + j]) : 0.0f; });
                sdecay = exp_nonpos(Gs[n - 1]);
            }
            state_scale<64, 64>(S[0], sdecay);
            state_scale<64, 64>(S[1], sdecay);
            /* S += K~^T V: 8 accumulator tiles per warp, 4 k-steps. */
            const uint32_t sKb = sK0 + s * TB, sVb = sV0 + s * TB;
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                uint32_t ka[4], khi[4], klo[4];
                ldmatrix_x4_trans_at(ka, sKb + offX + kk * 16 * P * 2);
                la_fpair_t fp[2];
                fpair_unpack<T>(fp[0], kp[kk][0]);
                fpair_unpack<T>(fp[1], kp[kk][1]);
#pragma unroll
                for (int r = 0; r < 4; r++) fpair_apply<T>(fp[r >> 1], ka[r], khi[r], klo[r], PRECISE);
#pragma unroll
                for (int np = 0; np < 4; np++) {
                    uint32_t vb[4];
                    ldmatrix_x4_trans_at(vb, sVb + offV + kk * 16 * P * 2 + np * 32);
                    float(*acc)[4] = S[np >> 1][0] + 2 * (np & 1);
                    mma_16816<T>(acc[0], khi, vb);
                    mma_16816<T>(acc[1], khi, vb + 2);
                    if (PRECISE) {
                        mma_16816<T>(acc[0], klo, vb);
                        mma_16816<T>(acc[1], klo, vb + 2);
                    }
                }
            }
            if (c + 1 < nchunks && c + 1 >= c_out) {
                T *dst = Ss + ((c + 1) % R) * (TB / 2);
                state_copy<T, 64, 64>(S[0], dst, sw, 0, lane);
                state_copy<T, 64, 64>(S[1], dst, sw, 1, lane);
            }
        }
        cp_async_wait<0>();
        /* The final state, where no fold makes it. */
        if (p.seg_state == nullptr && p.sN.ptr && L.sp == L.nseg - 1) {
            float *dst = p.sN.ptr + L.s * p.sN.ss + h * p.sN.sh + e0 * p.sN.se;
            state_store<64, 64>(S[0], dst, p.sN.sd, p.sN.se, p.D, Eloc, sw, 0, lane);
            state_store<64, 64>(S[1], dst, p.sN.sd, p.sN.se, p.D, Eloc, sw, 1, lane);
        }
        return;
    }

    /* ---------------- the output warps ---------------- */
    const int og = (warp - 4) >> 2, rb = (warp - 4) & 3;
    const int i0 = 16 * rb + (lane >> 2), j0 = 2 * (lane & 3);
    /* Regular chunks' factors, the scale folded in: P's e^{ld (i - j)}
     * [i >= j] per accumulator element, Q S's rows e^{ld (i + 1)}. */
    float mf[8][4];
    p_factors_regular(mf, ld_head, p.scale, i0, j0);
    const float rf0 = p.scale * exp_nonpos(ld_head * (float)(i0 + 1));
    const float rf1 = p.scale * exp_nonpos(ld_head * (float)(i0 + 9));
    const bool vec = p.vec_ok != 0;
    /* ldmatrix rows: Q (A), K (B of Q K^T), V and the state copy (B, .trans). */
    const uint32_t offA = ((16 * rb + (lane & 15)) * P + (lane >> 4) * 8) * 2;
    const uint32_t offBK = (((lane >> 4) * 8 + (lane & 7)) * P + ((lane >> 3) & 1) * 8) * 2;
    const uint32_t offBV = ((((lane >> 3) & 1) * 8 + (lane & 7)) * P + (lane >> 4) * 8) * 2;

    for (int c = og; c < nchunks; c += 2) {
        const int s = c % R;
        mbar_wait(ready(c), parity(c));
        __syncwarp();
        if (c >= c_out) {
            const int64_t t0 = walk0 + (int64_t)c * LA_C;
            const int n = c < nchunks - 1 ? LA_C : n_last;
            const bool regular = table && n == LA_C;
            if (!regular) {
                chunk_cumsum(gs + s * LA_C, Gs, p.decay, ld_head, n, lane);
                __syncwarp();
            }
            const uint32_t sQb = sQ0 + s * TB, sKb = sK0 + s * TB, sVb = sV0 + s * TB, sSb = sS0 + s * TB;
            /* P = Q K^T and O = Q S_c in one pass over the k-steps: 16
             * independent accumulator chains. */
            float a[8][4], o[8][4];
#pragma unroll
            for (int nt = 0; nt < 8; nt++)
#pragma unroll
                for (int r = 0; r < 4; r++) { a[nt][r] = 0.0f; o[nt][r] = 0.0f; }
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                uint32_t qa[4];
                ldmatrix_x4_at(qa, sQb + offA + kk * 32);
#pragma unroll
                for (int np = 0; np < 4; np++) {
                    uint32_t b[4], sb[4];
                    ldmatrix_x4_at(b, sKb + offBK + np * 16 * P * 2 + kk * 32);
                    ldmatrix_x4_trans_at(sb, sSb + offBV + kk * 16 * P * 2 + np * 32);
                    mma_16816<T>(a[2 * np], qa, b);
                    mma_16816<T>(a[2 * np + 1], qa, b + 2);
                    mma_16816<T>(o[2 * np], qa, sb);
                    mma_16816<T>(o[2 * np + 1], qa, sb + 2);
                }
            }
            const float f0 = regular ? rf0 : p.scale * exp_nonpos(Gs[i0]);
            const float f1 = regular ? rf1 : p.scale * exp_nonpos(Gs[i0 + 8]);
#pragma unroll
            for (int nt = 0; nt < 8; nt++) {
                o[nt][0] *= f0; o[nt][1] *= f0; o[nt][2] *= f1; o[nt][3] *= f1;
            }
            p_mask_decay(a, mf, regular, Gs, i0, j0, n, p.scale);
            /* O += P V over keys [0, 16 rb + 16). */
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                if (kk > rb) break;
                uint32_t pa[4];
#pragma unroll
                for (int r = 0; r < 4; r++) {
                    const int nt = 2 * kk + (r >> 1), hr = r & 1;
                    pa[r] = mma_traits<T>::pack(a[nt][2 * hr], a[nt][2 * hr + 1]);
                }
#pragma unroll
                for (int np = 0; np < 4; np++) {
                    uint32_t vb[4];
                    ldmatrix_x4_trans_at(vb, sVb + offBV + kk * 16 * P * 2 + np * 32);
                    mma_16816<T>(o[2 * np], pa, vb);
                    mma_16816<T>(o[2 * np + 1], pa, vb + 2);
                }
            }
            /* Every shared read of the slot is in registers now: release it
             * before the stores, which need nothing from it. */
            mbar_arrive(done(c));
            store_tok<T, 8>(p.o, p.sum_o, LA_SUM_MODE(p.accum, LA_SUM_O), L.b, h, L.tb + t0, o, rb, e0, n, p.E, lane,
                            1.0f, vec);
        } else {
            mbar_arrive(done(c));
        }
    }
}

#endif
