/* vec_ws_kernel.cuh - the vector-decay recurrence on tensor cores with warps
 * in two roles, for blocks of 128 value columns: the same chunk phases as
 * vec_mma_kernel.cuh (vm_prep, vm_scores, vm_inter, vm_intra, vm_update,
 * vm_outputs), in another order.  With SP the outputs' products are split
 * and the decay-gradient terms kept, as there.
 *
 *   warps 0-7   the state: warp w holds S^T for value columns 16 w ..
 *               16 w + 15 and walks every chunk: the inter and intra
 *               products to Ys, then the state update.
 *   warps 8-15  the walks: per chunk the input copies (ns - 2 chunks
 *               ahead), the operand walks and the scores, then the outputs
 *               of the chunk before.
 *
 * Why: the lockstep kernel's eight warps meet at three barriers a chunk,
 * so the products of chunk c wait for its walks and the walks of chunk
 * c + 1 for its products.  Here the walks of chunk c + 1 run while the
 * state warps do chunk c's products.
 *
 * Chunk c's operands live in slot c & 1 (vm_ops), its inputs in stage c %
 * ns.  Named barriers (mma.cuh's group_barrier / group_arrive):
 *   FULL[b]  (ids 2, 3)  the walk warps arrive when chunk c's operands and
 *            scores are in slot b; the state warps wait.
 *   DONE[b]  (ids 4, 5)  the state warps arrive when they are done with
 *            chunk c (Ys written; slot b and stage c read); the walk warps
 *            wait, before chunk c's outputs, and so before they refill
 *            slot b (chunk c + 2) or stage c % ns (chunk c + ns).
 *   id 1     the 256 walk threads among themselves.
 * Each FULL and DONE phase passes once per chunk, in order: the walk warps
 * arrive at FULL[b] for chunk c + 2 only after DONE[b] of chunk c, which
 * the state warps arrive at only after FULL[b] of chunk c. */
#ifndef LA_CUDA_VEC_WS_KERNEL_CUH
#define LA_CUDA_VEC_WS_KERNEL_CUH

#include "vec_mma_kernel.cuh"

#define LA_VW_THREADS 512 /* 8 state warps, 8 walk warps */
#define LA_VW_ET 128      /* value columns a block */

/* Shared memory: ns input stages (row decays only where the run has them),
 * two operand slots, and with SP the running sums and one chunk's terms (the
 * walk warps use them, one chunk at a time). */
template <int DM, bool RD, bool CD, bool SP> struct vw_layout {
    typedef vm_layout<DM, LA_VW_ET, CD, SP, RD> Y;
    static constexpr int SLOT = SP ? Y::TI : Y::BASE; /* vm_ops's regions, with SP their lo parts */
    static constexpr int SUMS = 2 * SLOT;             /* (SP) [ET] double: each column's running sum */
    static constexpr int TI = SUMS + LA_VW_ET * 8;    /* (SP) [L][ET] double: a chunk's terms */
    static constexpr int REST = SP ? TI + LA_VM_L * LA_VW_ET * 8 : 2 * SLOT;
    static constexpr int bytes(int ns) { return ns * Y::RAW + REST; }
};

template <typename T, int DM, bool RD, bool CD, bool SP>
__global__ void __launch_bounds__(LA_VW_THREADS, 1) la_vec_ws_kernel(const la_vec_params_t p) {
    typedef vw_layout<DM, RD, CD, SP> W;
    typedef typename W::Y Y;
    constexpr int ET = LA_VW_ET, L = LA_VM_L, GROUP = LA_VW_THREADS / 2;
    extern __shared__ __align__(16) char sm[];
    const int tid = threadIdx.x, lane = tid % 32;
    const int s = blockIdx.x, h = blockIdx.y, e0 = blockIdx.z * ET;
    const int EV = p.E - e0 < ET ? p.E - e0 : ET;
    const bool out = p.o.ptr != nullptr || p.term != nullptr;
    const int term_mode = SP ? p.term_mode : 0; /* the launcher splits every run with a term */
    bool back;
    const vm_seq sq = vm_seq_of(p, s, back);
    const int ns = p.nstage; /* 3 or 4: the copies run ns - 2 chunks ahead */
    char *const rest = sm + ns * Y::RAW;
    const int64_t nch = (sq.len + L - 1) / L;

    if (tid < GROUP) { /* ---- the state warps ---- */
        const int w = tid / 32;
        float S[DM / 8][4];
        vm_state_load<DM>(S, p, s, h, e0, EV, w, lane);
        for (int64_t ci = 0; ci < nch; ci++) {
            const int b = (int)(ci & 1);
            group_barrier(2 + b, LA_VW_THREADS); /* FULL[b] */
            const vm_ops<T> o = vm_ops_at<T, DM, ET, CD, SP>(rest + b * W::SLOT);
            const vm_raw<T> r = vm_raw_at<T, DM, ET, CD, RD>(sm + (int)(ci % ns) * Y::RAW);
            if (out) {
                float yi[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
                vm_inter<T, DM, SP>(S, o, lane, yi);
                vm_intra<T, ET, CD, SP>(o, CD ? o.vd : r.v, w, lane, yi);
            }
            vm_update<T, DM, ET, RD, CD>(S, o, CD ? o.vh : r.v, w, lane);
            group_arrive(4 + b, LA_VW_THREADS); /* DONE[b] */
        }
        vm_state_store<DM, CD>(S, p, sq, s, h, e0, EV, back, w, lane);
        return;
    }

    /* ---- the walk warps ---- */
    const int wt = tid - GROUP, ww = wt / 32; /* this thread and warp within the group */
    const bool pieces = vm_inputs_in_pieces<T>(p);
    const bool orows = !CD && p.o.ptr && term_mode == 0 && vm_pieces_ok<T>(p.o, p.E);
    double *const sums = reinterpret_cast<double *>(rest + W::SUMS), *const TI = reinterpret_cast<double *>(rest + W::TI);
    if (term_mode == 2) /* the final state's share of each column's sum (thread c's column is c) */
        for (int c = wt; c < ET; c += GROUP) sums[c] = c < EV ? la_vec_fin_share(p.fin_a, p.fin_b, p.D, s, h, e0 + c) : 0.0;
    for (int i = 0; i < ns - 2; i++) { /* the first chunks, a copy group each */
        if (i < nch) vm_load_chunk<T, DM, ET, RD, CD, RD>(sm + i * Y::RAW, p, sq, h, e0, EV, i * L, out, pieces, GROUP);
        cp_async_commit();
    }
    float row_tot = 0.0f, col_tot = 0.0f;
    for (int64_t ci = 0; ci <= nch; ci++) {
        if (ci < nch) {
            const int b = (int)(ci & 1);
            if (ns >= 4) cp_async_wait<1>(); /* chunk ci's group: all but the newest ns - 3 */
            else cp_async_wait<0>();
            group_barrier(1, GROUP); /* every thread's copies of chunk ci in; chunk ci - 2's outputs out */
            {   /* chunk ci + ns - 2 to the stage of chunk ci - 2 (DONE of ci - 2 passed) */
                const int64_t cn = ci + ns - 2;
                if (cn < nch)
                    vm_load_chunk<T, DM, ET, RD, CD, RD>(sm + (int)(cn % ns) * Y::RAW, p, sq, h, e0, EV, cn * L, out,
                                                         pieces, GROUP);
                cp_async_commit();
            }
            const vm_ops<T> o = vm_ops_at<T, DM, ET, CD, SP>(rest + b * W::SLOT);
            const vm_raw<T> r = vm_raw_at<T, DM, ET, CD, RD>(sm + (int)(ci % ns) * Y::RAW);
            /* The column masks in the chunk's own slot (vm_prep picks the parity's words in it): addressed
             * from the slot's base, one register fewer than a region of their own (which spilled). */
            uint32_t *const MC = reinterpret_cast<uint32_t *>(rest + b * W::SLOT + Y::MC);
            vm_prep<T, DM, ET, RD, CD, SP, GROUP>(o, MC, r, wt, lane, ci, out, p, row_tot, col_tot);
            group_barrier(1, GROUP);
            if (out && ww < 2) vm_scores<T, DM, SP>(o, r, ww, lane, p);
            group_arrive(2 + b, LA_VW_THREADS); /* FULL[b] */
        }
        if (ci >= 1) { /* chunk ci - 1's outputs, once the state warps are done with it */
            const int64_t cp = ci - 1;
            const int b = (int)(cp & 1);
            /* DONE[b] (a state-only walk has no outputs).  Every walk thread waits here, so the column sums
             * of chunk ci - 2 have read the terms (TI) before any thread writes chunk ci - 1's. */
            group_barrier(4 + b, LA_VW_THREADS);
            if (out) {
                const vm_ops<T> o = vm_ops_at<T, DM, ET, CD, SP>(rest + b * W::SLOT);
                const vm_raw<T> r = vm_raw_at<T, DM, ET, CD, RD>(sm + (int)(cp % ns) * Y::RAW);
                const uint32_t *mc = reinterpret_cast<const uint32_t *>(rest + b * W::SLOT + Y::MC) + (ET / 32) * b;
                vm_outputs<T, ET, CD, SP, GROUP, 1>(o, r, mc, p, sq, h, e0, EV, cp * L, wt, orows, term_mode, sums, TI);
            }
        }
    }
    vm_seg_totals<DM, ET, CD, GROUP>(p, sq, s, h, e0, EV, back, wt, row_tot, col_tot);
    /* A split walk's running sums, for the offsets of the segments walked after it. */
    if (term_mode == 2 && p.seg_sum && wt < EV) p.seg_sum[((int64_t)s * p.H + h) * p.E + e0 + wt] = sums[wt];
}

#endif
