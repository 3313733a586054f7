/*
 * fwd_rows_kernel.cuh - the forward's output pass for head dims up to 64
 * (bf16, f16): one block of 8 warps per (segment, head, 64-column value
 * slice), one block per SM.  Warp w owns a row block rb of the chunk (16
 * rows) and a half eh of the value columns (32): its rows of P = Q K^T
 * (all 64 keys), its tile of O, and its 16 x 32 tile of the state.
 *
 * Why (docs/PERF.md): the general kernel (fwd_kernel.cuh) cuts a chunk's
 * A = Q K^T into 16 x 32 warp tiles, so A goes through shared memory with a
 * barrier between its making and its use, and Q's fragments are loaded for
 * each product; at D = E = 64 it spent ~750 instructions per warp and chunk
 * on 55 mmas, and ran two blocks per SM, so B4 H32 needed a state pass (K
 * and V read a second time) to fill the GPU.  Here a warp's rows of P never
 * leave registers: the mma accumulator layout of P is the A-operand layout
 * of P V (FlashAttention-2's trick); Q's fragments serve Q K^T and Q S, V's
 * serve the state update and P V, and the three products that need no P run
 * in one pass over the k-steps (16 independent accumulator chains).  The
 * state copy is double-buffered: one barrier per chunk (tiles landed).
 * B4 H32 at E = 64 is 128 blocks: the GPU full, no segments.
 *
 * Per chunk, warp (rb, eh) (chunk rows i in [16rb, 16rb + 16), value columns
 * [32eh, 32eh + 32); every exponent <= 0):
 *   O_i = scale e^{G_i} (Q S)_i + sum_{j <= i} scale e^{G_i - G_j} (q_i . k_j) v_j
 *   S  <- e^{G_last} S + sum_j e^{G_last - G_j} k_j^T v_j      (state rows [16rb, 16rb + 16))
 * P V skips P's upper triangle in 16-key steps (keys [0, 16rb + 16) only).
 * The state fragment is state_frag<64, 64> of chunk_common.cuh with
 * (wm, wn) = (rb, eh), so the shared state helpers serve it as is.
 *
 * Everything else follows the general kernel's output pass: segments and
 * their folded incoming states, prefix mode, SCALAR_TOKEN and partial chunks
 * (chunk-local cumsum), the final state (PRECISE: hi/lo terms), summed
 * head-dim tile shares, strided tensors.
 */
#ifndef LA_CUDA_FWD_ROWS_KERNEL_CUH
#define LA_CUDA_FWD_ROWS_KERNEL_CUH

#include "fwd_kernel.cuh"

#define LA_ROWS_THREADS LA_CUDA_THREADS /* 8 warps, as the shared tile loaders assume */
#define LA_ROWS_COLS 64 /* value columns per block */
/* Elements per tile row (Q, K, V and the state copy are all 64 x 64): 64
 * columns and 16 bytes of padding, so ldmatrix's eight rows fall in distinct
 * banks; the state copy's pitch is state_copy's default, EP + 8. */
#define LA_ROWS_PITCH (LA_C + 8)

/* Q, K, V tiles in STAGES buffers and two state copies (bf16/f16 elements). */
__host__ __device__ constexpr int rows_op_elems(int stages) {
    return (3 * stages + 2) * LA_C * LA_ROWS_PITCH;
}
/* ... then SCALAR_TOKEN's raw log decays [STAGES][64] and each warp's cumsums. */
__host__ __device__ constexpr int rows_smem_bytes(int stages) {
    return rows_op_elems(stages) * 2 + (stages * LA_C + LA_ROWS_THREADS / 32 * 2 * LA_C) * 4;
}
static_assert(rows_smem_bytes(2) <= 99 * 1024, "the two-stage rows kernel must fit sm_120's 99 KB");

/* Helpers of a warp that owns 16 rows of a chunk (rows i0 and i0 + 8 of
 * each mma accumulator tile, columns j0 and j0 + 1 of each 8-column tile:
 * i0 = 16 r + lane / 4, j0 = 2 (lane % 4)), shared with the warp-role
 * kernel (fwd_ws_kernel.cuh). */

/* Regular chunks' factors of P, the scale folded in: scale e^{ld (i - j)}
 * for i >= j, 0 above the diagonal. */
__device__ __forceinline__ void p_factors_regular(float (&mf)[8][4], float ld_head, float scale, int i0, int j0) {
#pragma unroll
    for (int nt = 0; nt < 8; nt++)
#pragma unroll
        for (int r = 0; r < 4; r++) {
            const int i = i0 + 8 * (r >> 1), j = 8 * nt + j0 + (r & 1);
            mf[nt][r] = i >= j ? scale * exp_nonpos(ld_head * (float)(i - j)) : 0.0f;
        }
}

/* P's mask and decay in place: regular chunks by mf, others from the
 * warp's cumsum Gs (scale e^{G_i - G_j} for j <= i < n, else 0). */
__device__ __forceinline__ void p_mask_decay(float (&a)[8][4], const float (&mf)[8][4], bool regular, const float *Gs,
                                             int i0, int j0, int n, float scale) {
    if (regular) {
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int r = 0; r < 4; r++) a[nt][r] *= mf[nt][r];
    } else {
        const float g0 = Gs[i0], g1 = Gs[i0 + 8];
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int r = 0; r < 4; r++) {
                const int i = i0 + 8 * (r >> 1), j = 8 * nt + j0 + (r & 1);
                a[nt][r] = (i >= j && i < n) ? a[nt][r] * scale * exp_nonpos((r >> 1 ? g1 : g0) - Gs[j]) : 0.0f;
            }
    }
}

/* The state update's key factor pairs of this lane's keys (j0 + 16 kk + 8
 * hh and the key after it, in the A fragments of K~^T), fac(j) the factor
 * of key j, packed for fpair_apply. */
template <typename T, typename Fac>
__device__ __forceinline__ void key_factor_pairs(uint2 (&kp)[4][2], int j0, Fac fac) {
#pragma unroll
    for (int kk = 0; kk < 4; kk++)
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            const int j = 16 * kk + 8 * hh + j0;
            la_fpair_t f;
            fpair_set<T>(f, fac(j), fac(j + 1));
            kp[kk][hh] = fpair_pack<T>(f);
        }
}

/* PRECISE: the final state leaves the kernel (hi/lo terms in the update).
 * SPLIT_P: the block's o is a head-dim tile's share of a sum over D tiles;
 * its P is a partial dot product, the shares can cancel, and rounding each
 * one to the operand dtype would cost their sum that many bits (a bf16 case
 * with D = 256 in four tiles measured 1.9e-2 of its scale), so P V takes P
 * as hi + lo, two mmas.  (A template flag: as a run-time test it cost the
 * plain kernel 4%, through its register allocation.) */
template <typename T, int STAGES, bool PRECISE, bool SPLIT_P>
__global__ void __launch_bounds__(LA_ROWS_THREADS, 1) la_fwd_rows_kernel(const la_fwd_params_t p) {
    static_assert(sizeof(T) == 2, "bf16 and f16 operands");
    static_assert(STAGES >= 2, "loads run at least one chunk ahead");
    constexpr int P = LA_ROWS_PITCH;
    constexpr int TILE = LA_C * P; /* elements of one tile */
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *Qs = reinterpret_cast<T *>(smem_raw); /* [STAGES][64][P] */
    T *Ks = Qs + STAGES * TILE;
    T *Vs = Ks + STAGES * TILE;
    T *Ss = Vs + STAGES * TILE; /* [2][64][P]: the state before chunk c, in buffer c & 1 */
    float *gs = reinterpret_cast<float *>(smem_raw + rows_op_elems(STAGES) * 2); /* raw log decays */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    /* Row block and value-column half: the warps of a scheduler (w, w + 4)
     * take row blocks w and 3 - w, one long and one short P V triangle. */
    const int rb = warp < 4 ? warp : 7 - warp, eh = warp >> 2;
    float *Gs = gs + STAGES * LA_C + warp * 2 * LA_C; /* this warp's cumsums */

    /* Per-lane ldmatrix row addresses (bytes): A rows of Q; K rows as the B
     * operand of Q K^T; V (and the state copy) as B through .trans. */
    const uint32_t sQ0 = smem_addr(Qs), sK0 = smem_addr(Ks), sV0 = smem_addr(Vs), sS0 = smem_addr(Ss);
    const uint32_t offA = ((16 * rb + (lane & 15)) * P + (lane >> 4) * 8) * 2;
    const uint32_t offBK = (((lane >> 4) * 8 + (lane & 7)) * P + ((lane >> 3) & 1) * 8) * 2;
    const uint32_t offBV = ((((lane >> 3) & 1) * 8 + (lane & 7)) * P + 32 * eh + (lane >> 4) * 8) * 2;
    const int h = blockIdx.y, gseg = blockIdx.x;
    const int e0 = blockIdx.z * LA_ROWS_COLS; /* value columns [e0, e0 + Eloc) */
    const int Eloc = p.E - e0 < LA_ROWS_COLS ? p.E - e0 : LA_ROWS_COLS;
    const seg_loc L = locate_segment(p.seg, gseg);
    if (L.sp >= L.nseg) return; /* past the last segment (device offsets: the grid is a bound) */
    const int64_t slot = (int64_t)gseg * p.H + h;

    float S[1][4][4];
    int64_t s_sd = 0, s_se = 0;
    const float *s_src = state_source(p, L, h, slot, 64, e0, &s_sd, &s_se);
    state_load<64, 64>(S, s_src, s_sd, s_se, p.D, Eloc, rb, eh, lane);

    /* The walk as in fwd_kernel.cuh: prefix mode starts at the sequence's
     * first token and writes o from chunk c_out on. */
    const int64_t walk0 = p.prefix ? 0 : L.ts;
    const int nchunks = (int)((L.te - walk0 + LA_C - 1) / LA_C);
    const int c_out = (int)((L.ts - walk0) / LA_C);
    const int n_last = (int)(L.te - walk0 - (int64_t)(nchunks - 1) * LA_C);
    /* Q S runs on every chunk that writes o, so the first one reads a copy
     * of the initial state, or of zeros (never uninitialised memory). */
    if (c_out == 0) state_copy<T, 64, 64>(S, Ss, rb, eh, lane);
    la_tok_t vz = p.v;
    vz.ptr = static_cast<const T *>(p.v.ptr) + e0 * p.v.sc;
    const bool vec = p.vec_ok != 0;
    /* The cp.async tiles are issued by the four warps of row blocks 0 and 1
     * (one per scheduler), whose P V is the shortest: the copies wait in
     * the load/store queue for their address registers (ncu: ~20% of the
     * stall samples when all eight warps issued them, right after the
     * barrier), and there they wait while the others still compute. */
    const bool loader = rb < 2;
    const int ltid = (2 * rb + eh) * 32 + lane;
    la_tile_src_t tq, tk, tv;
    if (vec && loader) {
        tq = tile_src_of<T, 64>(p.q, L.b, h, L.tb + walk0, p.D, ltid);
        tk = tile_src_of<T, 64>(p.k, L.b, h, L.tb + walk0, p.D, ltid);
        tv = tile_src_of<T, LA_ROWS_COLS>(vz, L.b, h, L.tb + walk0, Eloc, ltid);
    }
    /* Loads of chunk c into buffer c % STAGES, for c = 0, 1, ... in order. */
    auto issue = [&](int c) {
        const int buf = c % STAGES;
        const int64_t t0 = walk0 + (int64_t)c * LA_C;
        const int nrows = c < nchunks - 1 ? LA_C : n_last;
        const bool wq = c >= c_out;
        if (vec) {
            if (loader) {
                constexpr int LT = LA_ROWS_THREADS / 2;
                tile_issue_of<T, 64, true, LT>(sQ0 + buf * TILE * 2, tq, nrows, p.q.ptr, wq, 1, ltid);
                tile_issue_of<T, 64, true, LT>(sK0 + buf * TILE * 2, tk, nrows, p.k.ptr, true, 1, ltid);
                tile_issue_of<T, LA_ROWS_COLS, true, LT>(sV0 + buf * TILE * 2, tv, nrows, p.v.ptr, true, 1, ltid);
            }
        } else {
            if (wq) load_tile<T, 64>(Qs + buf * TILE, p.q, L.b, h, L.tb + t0, nrows, p.D, false);
            load_tile<T, 64>(Ks + buf * TILE, p.k, L.b, h, L.tb + t0, nrows, p.D, false);
            load_tile<T, LA_ROWS_COLS>(Vs + buf * TILE, vz, L.b, h, L.tb + t0, nrows, Eloc, false);
        }
        load_raw_decays(gs + buf * LA_C, p, L, h, t0, nrows);
        cp_async_commit();
    };

    const float ld_head = p.decay == 1 ? la_head_log_decay(p.ld, p.ld_sh, p.H, h, p.check_rec) : 0.0f;
#pragma unroll
    for (int c = 0; c < STAGES - 1; c++) {
        if (c < nchunks) issue(c);
        else cp_async_commit();
    }
    const bool table = p.decay != 2;
    /* Regular chunks' factors in registers, the scale folded in: P's
     * scale e^{ld (i - j)} [i >= j] per accumulator element, Q S's rows
     * scale e^{ld (i + 1)}, the state's e^{64 ld}, and the factor pairs
     * e^{ld (63 - j)} of this lane's keys j (j0 + 16kk + 8hh, + 1) in the
     * state update's A fragments (as fwd_kernel.cuh's table, bit for bit). */
    const int i0 = 16 * rb + (lane >> 2), j0 = 2 * (lane & 3);
    float mf[8][4];
    p_factors_regular(mf, ld_head, p.scale, i0, j0);
    const float rf0 = p.scale * exp_nonpos(ld_head * (float)(i0 + 1));
    const float rf1 = p.scale * exp_nonpos(ld_head * (float)(i0 + 9));
    const float decay_chunk = exp_nonpos(ld_head * (float)LA_C);
    uint2 kreg[4][2];
    key_factor_pairs<T>(kreg, j0, [&](int j) { return exp_nonpos(ld_head * (float)(LA_C - 1 - j)); });
    /* The state update's operand rows: K^T (rows d of this warp's row
     * block, through .trans) and V (this warp's value columns: offBV). */
    const uint32_t offX = (((lane >> 4) * 8 + (lane & 7)) * P + 16 * rb + ((lane >> 3) & 1) * 8) * 2;

    for (int c = 0; c < nchunks; c++) {
        const int buf = c % STAGES;
        const int64_t t0 = walk0 + (int64_t)c * LA_C;
        const int n = c < nchunks - 1 ? LA_C : n_last;
        cp_async_wait<STAGES - 2>(); /* chunk c's group; the ones after it may still fly */
        /* The block's one barrier per chunk: chunk c's tiles and the state
         * copy of chunk c - 1 are visible, and everyone is done with chunk
         * c - 1's buffer, which the next loads take. */
        __syncthreads();
        if (c + STAGES - 1 < nchunks) issue(c + STAGES - 1);
        else cp_async_commit();

        const bool regular = table && n == LA_C;
        uint2 kp[4][2]; /* this chunk's key factor pairs (as kreg) */
        float sdecay = decay_chunk;
        if (regular) {
#pragma unroll
            for (int kk = 0; kk < 4; kk++) { kp[kk][0] = kreg[kk][0]; kp[kk][1] = kreg[kk][1]; }
        } else { /* the chunk-local cumsums (each warp its own copy); rows j >= n get factor 0 */
            chunk_cumsum(gs + buf * LA_C, Gs, p.decay, ld_head, n, lane);
            __syncwarp();
            key_factor_pairs<T>(kp, j0, [&](int j) { return j < n ? exp_nonpos(Gs[LA_C + j]) : 0.0f; });
            sdecay = exp_nonpos(Gs[n - 1]);
        }
        const uint32_t sQb = sQ0 + buf * TILE * 2, sKb = sK0 + buf * TILE * 2, sVb = sV0 + buf * TILE * 2;
        /* S <- e^{G_last} S + K~^T V, K~_j = e^{G_last - G_j} k_j. */
        state_scale<64, 64>(S, sdecay);
        if (c < c_out) { /* prefix mode's walk before the segment: the update alone */
            state_update<T, 64, 64, PRECISE>(
                S, sKb, P, sVb, P, [&](int j, la_fpair_t &f) { fpair_unpack<T>(f, kp[j >> 4][(j >> 3) & 1]); }, rb,
                eh, lane);
        } else {
            /* One pass over the four 16-wide k-steps issues all three
             * products that need no P (Q K^T over D, Q S over D, the state
             * update over tokens): 16 independent accumulator chains, where
             * product after product would wait on 2 to 4 (ncu: the dominant
             * stall).  V's fragments stay for P V. */
            const uint32_t sSb = sS0 + (c & 1) * TILE * 2;
            float a[8][4], o[4][4]; /* P (rows i0, i0 + 8; keys 8nt + j0, + 1); O (columns 32eh + 8nt + j0, + 1) */
#pragma unroll
            for (int nt = 0; nt < 8; nt++)
#pragma unroll
                for (int r = 0; r < 4; r++) a[nt][r] = 0.0f;
#pragma unroll
            for (int nt = 0; nt < 4; nt++)
#pragma unroll
                for (int r = 0; r < 4; r++) o[nt][r] = 0.0f;
            uint32_t vb[4][2][4];
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                uint32_t qa[4], ka[4], khi[4], klo[4];
                ldmatrix_x4_at(qa, sQb + offA + kk * 32);
                ldmatrix_x4_trans_at(ka, sKb + offX + kk * 16 * P * 2);
                la_fpair_t fp[2];
                fpair_unpack<T>(fp[0], kp[kk][0]);
                fpair_unpack<T>(fp[1], kp[kk][1]);
#pragma unroll
                for (int r = 0; r < 4; r++) fpair_apply<T>(fp[r >> 1], ka[r], khi[r], klo[r], PRECISE);
#pragma unroll
                for (int np = 0; np < 2; np++) {
                    uint32_t sb[4];
                    ldmatrix_x4_trans_at(vb[kk][np], sVb + offBV + kk * 16 * P * 2 + np * 32);
                    ldmatrix_x4_trans_at(sb, sSb + offBV + kk * 16 * P * 2 + np * 32);
                    mma_16816<T>(o[2 * np], qa, sb);
                    mma_16816<T>(o[2 * np + 1], qa, sb + 2);
                    mma_16816<T>(S[0][2 * np], khi, vb[kk][np]);
                    mma_16816<T>(S[0][2 * np + 1], khi, vb[kk][np] + 2);
                    if (PRECISE) {
                        mma_16816<T>(S[0][2 * np], klo, vb[kk][np]);
                        mma_16816<T>(S[0][2 * np + 1], klo, vb[kk][np] + 2);
                    }
                }
                /* Every warp makes all 64 keys of P (the upper blocks are
                 * masked to 0): no branch between the chains. */
#pragma unroll
                for (int np = 0; np < 4; np++) {
                    uint32_t b[4];
                    ldmatrix_x4_at(b, sKb + offBK + np * 16 * P * 2 + kk * 32);
                    mma_16816<T>(a[2 * np], qa, b);
                    mma_16816<T>(a[2 * np + 1], qa, b + 2);
                }
            }
            /* O = scale e^{G_i} Q S, then the intra part accumulates on it. */
            const float f0 = regular ? rf0 : p.scale * exp_nonpos(Gs[i0]);
            const float f1 = regular ? rf1 : p.scale * exp_nonpos(Gs[i0 + 8]);
#pragma unroll
            for (int nt = 0; nt < 4; nt++) {
                o[nt][0] *= f0; o[nt][1] *= f0; o[nt][2] *= f1; o[nt][3] *= f1;
            }
            /* Mask and decay, then P as the A operand of P V (the accumulator
             * tiles 2kk, 2kk + 1 are k-step kk's A fragment). */
            p_mask_decay(a, mf, regular, Gs, i0, j0, n, p.scale);
            /* ---- intra part: O += P V over keys [0, 16 rb + 16) ---- */
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                if (kk > rb) break;
                uint32_t pa[4], pl[4];
#pragma unroll
                for (int r = 0; r < 4; r++) {
                    const int nt = 2 * kk + (r >> 1), hr = r & 1;
                    pack_op2<T, SPLIT_P>(a[nt][2 * hr], a[nt][2 * hr + 1], pa[r], pl[r]);
                }
#pragma unroll
                for (int np = 0; np < 2; np++) {
                    mma_16816<T>(o[2 * np], pa, vb[kk][np]);
                    mma_16816<T>(o[2 * np + 1], pa, vb[kk][np] + 2);
                    if (SPLIT_P) {
                        mma_16816<T>(o[2 * np], pl, vb[kk][np]);
                        mma_16816<T>(o[2 * np + 1], pl, vb[kk][np] + 2);
                    }
                }
            }
            store_tok<T, 4>(p.o, p.sum_o, LA_SUM_MODE(p.accum, LA_SUM_O), L.b, h, L.tb + t0, o, rb, e0 + 32 * eh, n,
                            p.E, lane, 1.0f, vec);
        }
        /* The next chunk's Q S reads this copy; the other buffer may still be
         * read by warps behind in this chunk. */
        if (c + 1 < nchunks && c + 1 >= c_out)
            state_copy<T, 64, 64>(S, Ss + ((c + 1) & 1) * TILE, rb, eh, lane);
    }

    /* The final state, where no fold makes it (one segment per sequence, or
     * prefix mode's last segment). */
    if (p.seg_state == nullptr && p.sN.ptr && L.sp == L.nseg - 1)
        state_store<64, 64>(S, p.sN.ptr + L.s * p.sN.ss + h * p.sN.sh + e0 * p.sN.se, p.sN.sd, p.sN.se, p.D, Eloc,
                            rb, eh, lane);
}

#endif
