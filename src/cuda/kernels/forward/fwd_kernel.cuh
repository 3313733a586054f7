/*
 * fwd_kernel.cuh - the chunked forward kernel (and its state-only variant).
 *
 * One thread block (8 warps) walks the chunks of one segment of one
 * (sequence, head) in order, for one slice of EP value columns (blockIdx.z),
 * keeping its fp32 state slice S (DP x EP) in registers as mma accumulators.
 * Slicing E gives each (sequence, head) several blocks (more of the GPU
 * busy, fewer registers per thread: two blocks per SM at EP = 64) at the
 * price of recomputing Q K^T per slice.  Per chunk of C = 64 tokens, with the
 * chunk-local inclusive log-decay cumsum G (every exponent below is <= 0):
 *
 *   A   = (Q K^T) * exp(G_i - G_j) [i >= j]           16x32 tile per warp
 *   O   = exp(G_i) (Q S) + A V                         16 x EP/2 per warp
 *   S  <- exp(G_last) S + (exp(G_last - G_j) K)^T V     DP/4 x EP/2 per warp
 *
 * Operands go through shared memory in the input dtype (bf16/f16; f32 as
 * two bf16 planes, op_of in mma.cuh, each product three mmas): Q, K, V
 * tiles (loaded with cp.async one chunk ahead; the state pass has K and V
 * only, up to three chunks ahead), A, and a
 * copy of S rounded to the input dtype for the Q S product.  The state
 * itself never leaves fp32.
 *
 * Short sequences with few (sequence, head) pairs run in prefix mode
 * (p.prefix): sequences cut into segments as for the state pass, but each
 * block walks from the sequence start and updates the state alone until its
 * segment begins: no state pass, no fold, and the walk before the segment
 * costs a state update per chunk, not a whole chunk step.
 *
 * Barriers per chunk: B1 tiles landed (whole block); B3 A ready (the two
 * warps of a row block); B4 the four warps of a column half past their O
 * products (their S copy columns may be rewritten).  (Each warp keeps its own copy
 * of the decay cumsum G, so G needs no barrier.)  Row pitches are padded by 8 elements
 * (16 bytes) so ldmatrix rows fall in distinct banks.
 */
#ifndef LA_CUDA_FWD_KERNEL_CUH
#define LA_CUDA_FWD_KERNEL_CUH

#include "chunk_helpers.cuh"

/* Floats of the decay table Ts and of the table and key factor pairs together
 * (the region that SCALAR_TOKEN's raw log decays, [STAGES][64], use instead). */
#define LA_FWD_TAB (2 * LA_C + 4)
#define LA_FWD_TABS (LA_FWD_TAB + LA_C)
__host__ __device__ constexpr int fwd_tabs_floats(int stages) {
    return stages * LA_C > LA_FWD_TABS ? stages * LA_C : LA_FWD_TABS;
}

/* Shared-memory bytes of one forward block (host and device agree on it).
 * The output pass: STAGES = 2 double-buffers the Q, K, V tiles (Hopper,
 * Ampere: up to 227 KB per block); STAGES = 1 is the consumer-Blackwell
 * configuration, which must fit 99 KB per block (checked below at compile
 * time).  The state pass keeps only K and V tiles, in 2 or 4 stages: its
 * chunk step is short next to a tile's load latency, so it loads further
 * ahead. */
__host__ __device__ constexpr int fwd_op_elems(int DP, int EP, int stages, bool state_only) {
    return (state_only ? 1 : 2) * stages * LA_C * (DP + 8) + stages * LA_C * (EP + 8) +
           (state_only ? 0 : LA_C * (LA_C + 8) + DP * (EP + 8));
}
/* elem: bytes per operand element, the input dtype's size (f32 inputs take
 * two bf16 planes, op_of). */
__host__ __device__ constexpr int fwd_smem_bytes(int DP, int EP, int elem, int stages, bool state_only) {
    return fwd_op_elems(DP, EP, stages, state_only) * elem +
           (fwd_tabs_floats(stages) + LA_CUDA_THREADS / 32 * 2 * LA_C) * 4;
}
static_assert(fwd_smem_bytes(128, 128, 2, 1, false) <= 99 * 1024, "single-stage forward must fit sm_120's 99 KB");
static_assert(fwd_smem_bytes(128, 128, 2, 2, true) <= 99 * 1024 && fwd_smem_bytes(256, 64, 2, 2, true) <= 99 * 1024,
              "two-stage state pass must fit sm_120's 99 KB");
static_assert(fwd_smem_bytes(64, 64, 4, 1, false) <= 99 * 1024 && fwd_smem_bytes(64, 64, 4, 2, true) <= 99 * 1024,
              "the f32 forward's 64 x 64 blocks must fit sm_120's 99 KB");


/* PRECISE: the state update keeps fp32-level terms (hi/lo split); needed
 * where the state leaves the kernel (final state, segment states), not for a
 * state that only produces o. */
template <typename T, int DP, int EP, bool STATE_ONLY, int STAGES, bool PRECISE>
__global__ void __launch_bounds__(LA_CUDA_THREADS, EP == 64 && DP <= 128 && sizeof(T) == 2 ? 2 : 1)
    la_fwd_chunk_kernel(const la_fwd_params_t p) {
    /* Operands in shared memory: the input dtype, or f32 split into two bf16
     * planes (SPLIT): every operand's lo plane PLANE elements (PB bytes)
     * after its hi plane, each product three mmas (mma_x). */
    typedef typename op_of<T>::type OT;
    constexpr bool SPLIT = op_of<T>::split;
    constexpr int PLANE = SPLIT ? fwd_op_elems(DP, EP, STAGES, STATE_ONLY) : 0;
    constexpr uint32_t PB = 2 * PLANE;
    /* Where the state leaves the kernel, or feeds an f32 output, its terms keep their lo part. */
    constexpr bool LO = PRECISE || SPLIT;
    constexpr int QP = DP + 8, VP = EP + 8, AP = LA_C + 8;
    constexpr int MT = DP / 64;        /* m16 tiles of the state per warp (rows d) */
    constexpr int NTS = EP / 16;       /* n8 tiles of the state per warp (cols e) */
    constexpr int NTO = EP / 16;       /* n8 tiles of O per warp */
    extern __shared__ __align__(16) unsigned char smem_raw[];
    /* The state pass (STATE_ONLY) has no Q, A or state copy. */
    OT *Qs = reinterpret_cast<OT *>(smem_raw);          /* [STAGES][64][QP] */
    OT *Ks = Qs + (STATE_ONLY ? 0 : STAGES * LA_C * QP); /* [STAGES][64][QP] */
    OT *Vs = Ks + STAGES * LA_C * QP;                  /* [STAGES][64][VP] */
    OT *As = Vs + STAGES * LA_C * VP;                  /* [64][AP] */
    OT *Ss = As + (STATE_ONLY ? 0 : LA_C * AP);        /* [DP][VP] */
    /* [STAGES][64] raw log decays (SCALAR_TOKEN), or in their place (other kinds)
     * Ts[64 + d] = e^{ld d} for d in [-64, 64] (0 for d < 0) and Kf[j / 2]
     * the key factor pair of tokens j, j + 1 of a full chunk: see "regular" below. */
    float *gs = reinterpret_cast<float *>(smem_raw + fwd_op_elems(DP, EP, STAGES, STATE_ONLY) * sizeof(T));
    float *Ts = gs;
    uint2 *Kf = reinterpret_cast<uint2 *>(Ts + LA_FWD_TAB);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    /* [8 warps][2][64] cumsum and suffix sums: each warp computes its own
     * copy (a few dozen instructions), which saves a block-wide barrier per
     * chunk. */
    float *Gs = gs + fwd_tabs_floats(STAGES) + warp * 2 * LA_C;

    const int wm = warp & 3, wn = warp >> 2;
    /* Per-thread ldmatrix row addresses (bytes), fixed for the whole block:
     * every fragment load below is one of these plus a compile-time offset. */
    const uint32_t sQ0 = smem_addr(Qs), sK0 = smem_addr(Ks), sV0 = smem_addr(Vs);
    const uint32_t sA = smem_addr(As), sS = smem_addr(Ss);
    const uint32_t offA_Q = ((16 * wm + (lane & 15)) * QP + (lane >> 4) * 8) * 2;            /* A rows of Q */
    const uint32_t offB_K = ((32 * wn + (lane >> 4) * 8 + (lane & 7)) * QP + ((lane >> 3) & 1) * 8) * 2;
    const uint32_t offA_A = ((16 * wm + (lane & 15)) * AP + (lane >> 4) * 8) * 2;            /* A rows of A */
    const uint32_t offB_V = ((((lane >> 3) & 1) * 8 + (lane & 7)) * VP + wn * (EP / 2) + (lane >> 4) * 8) * 2;
    const int h = blockIdx.y, g = blockIdx.x;
    /* Column slice of the value dim this block owns: [e0, e0 + Eloc). */
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

    /* ---- initial state into registers (and its dtype copy into Ss) ---- */
    float S[MT][NTS][4];
    int64_t s_sd = 0, s_se = 0;
    const float *s_src = STATE_ONLY ? nullptr : state_source(p, L, h, slot, DP, e0, &s_sd, &s_se);
    bool state_nonzero = s_src != nullptr;
    state_load<DP, EP>(S, s_src, s_sd, s_se, p.D, Eloc, wm, wn, lane);
    /* The state's copy in the input dtype, the B operand of Q S. */
    auto write_state_copy = [&]() { state_copy<OT, DP, EP, SPLIT>(S, Ss, wm, wn, lane, PLANE); };
    if (!STATE_ONLY) write_state_copy();

    /* Prefix mode: walk from the sequence start, the chunks before the
     * segment updating the state only (no Q tile, no A, no O). */
    const int64_t walk0 = p.prefix ? 0 : L.ts;
    /* Chunks of the walk; the block writes o from chunk c_out on (prefix
     * mode: the walk starts before the segment); the last chunk has n_last rows. */
    const int nchunks = (int)((L.te - walk0 + LA_C - 1) / LA_C);
    const int c_out = STATE_ONLY ? nchunks : (int)((L.ts - walk0) / LA_C);
    const int n_last = (int)(L.te - walk0 - (int64_t)(nchunks - 1) * LA_C);
    la_tok_t vz = p.v; /* this block's value columns */
    vz.ptr = static_cast<const T *>(p.v.ptr) + e0 * p.v.sc;
    const bool vec = !SPLIT && p.vec_ok != 0; /* cp.async tiles (f32 splits through registers) */
    float seg_logdecay = 0.0f;
    la_tile_src_t tq, tk, tv;
    if (vec) {
        tq = tile_src<T, DP>(p.q, L.b, h, L.tb + walk0, p.D);
        tk = tile_src<T, DP>(p.k, L.b, h, L.tb + walk0, p.D);
        tv = tile_src<T, EP>(vz, L.b, h, L.tb + walk0, Eloc);
    }

    /* Issue the loads of chunk c into buffer c % STAGES; called for c = 0, 1,
     * 2, ... in order (the tile sources step along). */
    auto issue = [&](int c) {
        int buf = c % STAGES;
        int64_t t0 = walk0 + (int64_t)c * LA_C;
        int nrows = c < nchunks - 1 ? LA_C : n_last;
        const bool wq = c >= c_out;
        if (vec) {
            if (!STATE_ONLY) tile_issue<T, DP>(sQ0 + buf * LA_C * QP * 2, tq, nrows, p.q.ptr, wq);
            tile_issue<T, DP>(sK0 + buf * LA_C * QP * 2, tk, nrows, p.k.ptr, true);
            tile_issue<T, EP>(sV0 + buf * LA_C * VP * 2, tv, nrows, p.v.ptr, true);
        } else {
            if (wq) load_tile<T, DP>(Qs + buf * LA_C * QP, p.q, L.b, h, L.tb + t0, nrows, p.D, false, PLANE);
            load_tile<T, DP>(Ks + buf * LA_C * QP, p.k, L.b, h, L.tb + t0, nrows, p.D, false, PLANE);
            load_tile<T, EP>(Vs + buf * LA_C * VP, vz, L.b, h, L.tb + t0, nrows, Eloc, false, PLANE);
        }
        load_raw_decays(gs + buf * LA_C, p, L, h, t0, nrows);
        cp_async_commit();
    };

    const float ld_head = p.decay == 1 ? la_head_log_decay(p.ld, p.ld_sh, p.H, h, p.check_rec) : 0.0f;
    /* Loads run STAGES - 1 chunks ahead (one commit group per chunk, empty
     * past the end, so the wait below counts the same every chunk). */
#pragma unroll
    for (int c = 0; c < (STAGES > 1 ? STAGES - 1 : 1); c++) {
        if (c < nchunks) issue(c);
        else cp_async_commit();
    }
    /* Regular chunks (decay NONE or SCALAR_HEAD, all 64 rows valid) have the
     * same factors every chunk: e^{ld (i - j)} [i >= j] for the mask,
     * e^{ld (i + 1)} for q's inter part, e^{ld (63 - j)} for the keys and
     * e^{64 ld} for the state.  Tabulated here once (read after chunk 0's
     * barrier), they replace the cumsum and every exp of such a chunk. */
    const bool table = p.decay != 2;
    /* The same factors in registers where a thread uses them every chunk:
     * q's inter-part rows and the state's decay (as in Ts, bit for bit). */
    const int i0 = 16 * wm + (lane >> 2);
    const float row_f0 = exp_nonpos(ld_head * (float)(i0 + 1)), row_f1 = exp_nonpos(ld_head * (float)(i0 + 9));
    const float decay_chunk = exp_nonpos(ld_head * (float)LA_C);
    if (table) make_chunk_tables<OT>(Ts, Kf, ld_head, LA_CUDA_THREADS);

    for (int c = 0; c < nchunks; c++) {
        const int buf = c % STAGES;
        const int64_t t0 = walk0 + (int64_t)c * LA_C;
        const int n = c < nchunks - 1 ? LA_C : n_last;
        const bool out = c >= c_out; /* this chunk's o is the block's to write */
        if (STAGES == 1) {
            if (c > 0) {
                __syncthreads(); /* single buffer: everyone is done with chunk c-1's tiles */
                issue(c);
            }
            cp_async_wait<0>();
        } else {
            cp_async_wait<STAGES - 2>(); /* chunk c's group; the STAGES - 2 after it may still fly */
        }
        __syncthreads(); /* B1: chunk c's tiles are in shared memory for everyone */
        if (STAGES > 1) { /* into the buffer of chunk c - 1, which everyone is done with */
            if (c + STAGES - 1 < nchunks) issue(c + STAGES - 1);
            else cp_async_commit();
        }

        const bool regular = table && n == LA_C;
        /* Otherwise the chunk-local inclusive cumsum of the log decay (every warp, fixed order). */
        if (!regular) {
            chunk_cumsum(gs + buf * LA_C, Gs, p.decay, ld_head, n, lane);
            __syncwarp();
        }
        const float G_last = regular ? ld_head * (float)LA_C : Gs[n - 1];
        const uint32_t sQb = sQ0 + buf * LA_C * QP * 2, sKb = sK0 + buf * LA_C * QP * 2;
        const uint32_t sVb = sV0 + buf * LA_C * VP * 2;

        if (out) {
            /* ---- A = (Q K^T) * decay mask: warp tile rows 16wm.., cols 32wn.. ---- */
            /* Even and odd k-steps accumulate separately: 8 independent mma
             * chains instead of 4, so back-to-back mmas do not wait on each
             * other's accumulators (the dominant stall, measured). */
            float acc[4][4], acc2[4][4];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int r = 0; r < 4; r++) acc[i][r] = acc2[i][r] = 0.0f;
            const bool live = 32 * wn <= 16 * wm + 15; /* tile not entirely above the diagonal */
            if (live) {
#pragma unroll
                for (int kk = 0; kk < DP / 16; kk++) {
                    uint32_t a[4], al[4];
                    ldmatrix_x4_at(a, sQb + offA_Q + kk * 32);
                    if (SPLIT) ldmatrix_x4_at(al, sQb + offA_Q + kk * 32 + PB);
                    float(*dst)[4] = (kk & 1) ? acc2 : acc;
#pragma unroll
                    for (int np = 0; np < 2; np++) {
                        uint32_t bfr[4], bfl[4];
                        ldmatrix_x4_at(bfr, sKb + offB_K + np * 16 * QP * 2 + kk * 32);
                        if (SPLIT) ldmatrix_x4_at(bfl, sKb + offB_K + np * 16 * QP * 2 + kk * 32 + PB);
                        mma_x<OT, SPLIT>(dst[2 * np], a, al, bfr, bfl);
                        mma_x<OT, SPLIT>(dst[2 * np + 1], a, al, bfr + 2, bfl + 2);
                    }
                }
#pragma unroll
                for (int i = 0; i < 4; i++)
#pragma unroll
                    for (int r = 0; r < 4; r++) acc[i][r] += acc2[i][r];
            }
            const int ia = 16 * wm + (lane >> 2), ja = 32 * wn + 2 * (lane & 3);
            if (regular) {
                /* The factor of (i, j) is Ts[64 + i - j] (0 above the diagonal). */
                const float *tdiag = Ts + LA_C + ia - ja;
#pragma unroll
                for (int nt = 0; nt < 4; nt++)
#pragma unroll
                    for (int hr = 0; hr < 2; hr++)
                        put_op2<OT, SPLIT>(&As[(ia + 8 * hr) * AP + ja + nt * 8], PLANE,
                                           acc[nt][2 * hr] * tdiag[8 * hr - 8 * nt],
                                           acc[nt][2 * hr + 1] * tdiag[8 * hr - 8 * nt - 1]);
            } else {
                /* Tiles strictly below the diagonal of a full chunk need no mask. */
                const bool unmasked = n == LA_C && 32 * wn + 31 < 16 * wm;
#pragma unroll
                for (int nt = 0; nt < 4; nt++)
#pragma unroll
                    for (int hr = 0; hr < 2; hr++) {
                        const int i = ia + 8 * hr, j = ja + nt * 8;
                        const float gi = Gs[i];
                        float v0, v1;
                        if (unmasked) {
                            v0 = acc[nt][2 * hr] * exp_nonpos(gi - Gs[j]);
                            v1 = acc[nt][2 * hr + 1] * exp_nonpos(gi - Gs[j + 1]);
                        } else {
                            v0 = (i >= j && i < n) ? acc[nt][2 * hr] * exp_nonpos(gi - Gs[j]) : 0.0f;
                            v1 = (i >= j + 1 && i < n) ? acc[nt][2 * hr + 1] * exp_nonpos(gi - Gs[j + 1]) : 0.0f;
                        }
                        put_op2<OT, SPLIT>(&As[i * AP + j], PLANE, v0, v1);
                    }
            }
        }
        /* B3: A is ready.  A warp's O rows 16wm.. read only the A rows its
         * own pair of warps (wm, 0) and (wm, 1) wrote. */
        if (out) group_barrier(1 + wm, 64);

        if (out) {
            /* ---- O = exp(G_i) Q S + A V: warp tile rows 16wm.., cols wn*EP/2.. ---- */
            float o[NTO][4];
#pragma unroll
            for (int i = 0; i < NTO; i++)
#pragma unroll
                for (int r = 0; r < 4; r++) o[i][r] = 0.0f;
            const int ecol0 = wn * (EP / 2);
            if (state_nonzero) {
#pragma unroll
                for (int kk = 0; kk < DP / 16; kk++) {
                    uint32_t a[4], al[4];
                    ldmatrix_x4_at(a, sQb + offA_Q + kk * 32);
                    if (SPLIT) ldmatrix_x4_at(al, sQb + offA_Q + kk * 32 + PB);
#pragma unroll
                    for (int np = 0; np < NTO / 2; np++) {
                        uint32_t bfr[4], bfl[4];
                        ldmatrix_x4_trans_at(bfr, sS + offB_V + kk * 16 * VP * 2 + np * 32);
                        if (SPLIT) ldmatrix_x4_trans_at(bfl, sS + offB_V + kk * 16 * VP * 2 + np * 32 + PB);
                        mma_x<OT, SPLIT>(o[2 * np], a, al, bfr, bfl);
                        mma_x<OT, SPLIT>(o[2 * np + 1], a, al, bfr + 2, bfl + 2);
                    }
                }
                const float f0 = regular ? row_f0 : exp_nonpos(Gs[i0]);
                const float f1 = regular ? row_f1 : exp_nonpos(Gs[i0 + 8]);
#pragma unroll
                for (int i = 0; i < NTO; i++) {
                    o[i][0] *= f0; o[i][1] *= f0; o[i][2] *= f1; o[i][3] *= f1;
                }
            }
            /* The intra part accumulates apart from the inter part: twice the
             * independent mma chains, and no dependency on the scaling above. */
            float o2[NTO][4];
#pragma unroll
            for (int i = 0; i < NTO; i++)
#pragma unroll
                for (int r = 0; r < 4; r++) o2[i][r] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < LA_C / 16; kk++) {
                if (kk > wm) break; /* A is zero above the diagonal */
                uint32_t a[4], al[4];
                ldmatrix_x4_at(a, sA + offA_A + kk * 32);
                if (SPLIT) ldmatrix_x4_at(al, sA + offA_A + kk * 32 + PB);
#pragma unroll
                for (int np = 0; np < NTO / 2; np++) {
                    uint32_t bfr[4], bfl[4];
                    ldmatrix_x4_trans_at(bfr, sVb + offB_V + kk * 16 * VP * 2 + np * 32);
                    if (SPLIT) ldmatrix_x4_trans_at(bfl, sVb + offB_V + kk * 16 * VP * 2 + np * 32 + PB);
                    mma_x<OT, SPLIT>(o2[2 * np], a, al, bfr, bfl);
                    mma_x<OT, SPLIT>(o2[2 * np + 1], a, al, bfr + 2, bfl + 2);
                }
            }
#pragma unroll
            for (int i = 0; i < NTO; i++)
#pragma unroll
                for (int r = 0; r < 4; r++) o[i][r] += o2[i][r];
            /* Store O rows < n, columns < E (a D tile's share of a sum with blocked head dims). */
            store_tok<T, NTO>(p.o, p.sum_o, LA_SUM_MODE(p.accum, LA_SUM_O), L.b, h, L.tb + t0, o, wm, e0 + ecol0, n,
                              p.E, lane, p.scale, vec);
        }
        /* ---- S <- exp(G_last) S + K~^T V, K~_j = exp(G_last - G_j) k_j (exponent <= 0, the suffix sum;
         * rows j >= n are zero and get factor 0, never exp of a positive number). ---- */
        state_scale<DP, EP>(S, regular ? decay_chunk : exp_nonpos(G_last));
        if (regular) {
            state_update<OT, DP, EP, LO, SPLIT>(S, sKb, QP, sVb, VP,
                                                [&](int j, la_fpair_t &f) { fpair_unpack<OT>(f, Kf[j >> 1]); }, wm, wn,
                                                lane, PB);
        } else {
            auto kf = [&](int j) { return j < n ? exp_nonpos(Gs[LA_C + j]) : 0.0f; };
            state_update<OT, DP, EP, LO, SPLIT>(S, sKb, QP, sVb, VP,
                                                [&](int j, la_fpair_t &f) { fpair_set<OT>(f, kf(j), kf(j + 1)); }, wm,
                                                wn, lane, PB);
        }
        seg_logdecay += G_last;
        state_nonzero = true;
        if (!STATE_ONLY && c + 1 >= c_out) { /* the next chunk (if any) multiplies Q by this state */
            /* B4: Ss may be rewritten once every warp reading its columns
             * (the four warps of this wn, which also write them) is past its
             * O products. */
            group_barrier(5 + wn, 128);
            write_state_copy();
        }
    }

    /* ---- write the state: local segment state (state pass) or final state ---- */
    float *dst = nullptr;
    int64_t dsd = 0, dse = 0;
    if (STATE_ONLY) { dst = p.seg_state + slot * DP * p.ept + e0; dsd = p.ept; dse = 1; }
    else if (!multi && p.sN.ptr && L.sp == L.nseg - 1) { /* prefix mode: the last segment's block */
        dst = p.sN.ptr + L.s * p.sN.ss + h * p.sN.sh + e0 * p.sN.se;
        dsd = p.sN.sd;
        dse = p.sN.se;
    }
    if (dst) state_store<DP, EP>(S, dst, dsd, dse, STATE_ONLY ? DP : p.D, STATE_ONLY ? EP : Eloc, wm, wn, lane);
    if (STATE_ONLY && blockIdx.z == 0 && threadIdx.x == 0) p.seg_logdecay[slot] = seg_logdecay;
}

/* Stitch segment states in order, per (sequence, head) and state element:
 *   in[0] = s0 (or 0);  in[p+1] = exp(logdecay[p]) in[p] + local[p]
 * Each slot's local state is replaced by its incoming state; the state after
 * the last segment is the final state.  Fixed order: deterministic. */
template <int DP>
__global__ void la_fold_kernel(const la_fwd_params_t p, int blocks_per_state) {
    /* blockIdx.x = sequence x blocks_per_state (x has room for any number of
     * sequences; y and z stop at 65535), blockIdx.y = head. */
    const int s = blockIdx.x / blocks_per_state, h = blockIdx.y;
    const int idx = (blockIdx.x % blocks_per_state) * blockDim.x + threadIdx.x;
    if (idx >= DP * p.ept) return;
    const float run = fold_cells<DP, false>(p, p.seg_state, p.s0, s, h, idx, !state_pass_skips_last(p));
    const int d = idx / p.ept, e = idx % p.ept;
    if (p.sN.ptr && d < p.D && e < p.E) p.sN.ptr[s * p.sN.ss + h * p.sN.sh + d * p.sN.sd + e * p.sN.se] = run;
}

#endif
