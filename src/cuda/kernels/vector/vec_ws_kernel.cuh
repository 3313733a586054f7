/* vec_ws_kernel.cuh - the vector-decay recurrence on tensor cores with warps
 * in two roles, for runs without decay-gradient terms (no split outputs)
 * and blocks of 128 value columns: the same chunk phases as
 * vec_mma_kernel.cuh (vm_prep, vm_scores, vm_inter, vm_intra, vm_update),
 * in another order.
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

/* Shared memory: ns input stages, then two operand slots. */
template <int DM, bool CD> struct vw_layout {
    typedef vm_layout<DM, LA_VW_ET, CD, false> Y;
    static constexpr int SLOT = Y::BASE;
    static constexpr int bytes(int ns) { return ns * Y::RAW + 2 * SLOT; }
};

template <typename T, int DM, bool RD, bool CD>
__global__ void __launch_bounds__(LA_VW_THREADS, 1) la_vec_ws_kernel(const la_vec_params_t p) {
    typedef vm_layout<DM, LA_VW_ET, CD, false> Y;
    constexpr int ET = LA_VW_ET, L = LA_VM_L, VP = Y::VP, YP = Y::YP, GROUP = LA_VW_THREADS / 2;
    extern __shared__ __align__(16) char sm[];
    const int tid = threadIdx.x, lane = tid % 32;
    const int s = blockIdx.x, h = blockIdx.y, e0 = blockIdx.z * ET;
    const int EV = p.E - e0 < ET ? p.E - e0 : ET;
    const bool out = p.o.ptr != nullptr;
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
            const vm_ops<T> o = vm_ops_at<T, DM, ET, CD, false>(rest + b * Y::BASE);
            const vm_raw<T> r = vm_raw_at<T, DM, ET, CD>(sm + (int)(ci % ns) * Y::RAW);
            if (out) {
                float yi[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
                vm_inter<T, DM, false>(S, o, lane, yi);
                vm_intra<T, ET, CD, false>(o, CD ? o.vd : r.v, w, lane, yi);
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
    const bool orows = !CD && out && vm_pieces_ok<T>(p.o, p.E);
    for (int i = 0; i < ns - 2; i++) { /* the first chunks, a copy group each */
        if (i < nch) vm_load_chunk<T, DM, ET, RD, CD>(sm + i * Y::RAW, p, sq, h, e0, EV, i * L, out, pieces, GROUP);
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
                    vm_load_chunk<T, DM, ET, RD, CD>(sm + (int)(cn % ns) * Y::RAW, p, sq, h, e0, EV, cn * L, out,
                                                     pieces, GROUP);
                cp_async_commit();
            }
            const vm_ops<T> o = vm_ops_at<T, DM, ET, CD, false>(rest + b * Y::BASE);
            const vm_raw<T> r = vm_raw_at<T, DM, ET, CD>(sm + (int)(ci % ns) * Y::RAW);
            /* The column masks in the chunk's own slot (vm_prep picks the parity's words in it): addressed
             * from the slot's base, one register fewer than a region of their own (which spilled). */
            uint32_t *const MC = reinterpret_cast<uint32_t *>(rest + b * Y::BASE + Y::MC);
            vm_prep<T, DM, ET, RD, CD, false, GROUP>(o, MC, r, wt, lane, ci, out, p, row_tot, col_tot);
            group_barrier(1, GROUP);
            if (out && ww < 2) vm_scores<T, DM, false>(o, r, ww, lane, p);
            group_arrive(2 + b, LA_VW_THREADS); /* FULL[b] */
        }
        if (ci >= 1 && out) { /* chunk ci - 1's outputs, once the state warps are done with it */
            const int64_t cp = ci - 1;
            const int b = (int)(cp & 1);
            group_barrier(4 + b, LA_VW_THREADS); /* DONE[b] */
            const vm_ops<T> o = vm_ops_at<T, DM, ET, CD, false>(rest + b * Y::BASE);
            const vm_raw<T> r = vm_raw_at<T, DM, ET, CD>(sm + (int)(cp % ns) * Y::RAW);
            const uint32_t *mc = reinterpret_cast<const uint32_t *>(rest + b * Y::BASE + Y::MC) + (ET / 32) * b;
            const int64_t c0 = cp * L;
            const int n = sq.len - c0 < L ? (int)(sq.len - c0) : L;
            if (orows) {
                T *const o0 = vm_out_at<T>(p, sq, h, e0); /* o.sc = 1 */
                vm_store_rows<T, ET, GROUP, YP>(o.Ys, o0, p.o.st, sq, c0, n, EV, wt);
            } else {
                const bool any = vm_any_unfactored<ET, CD>(mc);
                const int e = wt % ET;
                T *const ocol = vm_out_at<T>(p, sq, h, e0 + e);
#pragma unroll
                for (int j = 0; j < L * ET / GROUP; j++) {
                    const int u = wt / ET + j * (GROUP / ET);
                    if (u >= n || e >= EV) continue;
                    float y = o.Ys[u * YP + e];
                    if (CD && any && (mc[e / 32] >> (e % 32) & 1)) y += vm_col_exact<L, VP, ET>(o.Pf, r.v, r.b, u, e);
                    ocol[sq.tok(c0 + u) * p.o.st] = T(y);
                }
            }
        } else if (ci >= 1) {
            group_barrier(4 + (int)((ci - 1) & 1), LA_VW_THREADS); /* DONE: a state-only walk has no outputs */
        }
    }
    vm_seg_totals<DM, ET, CD, GROUP>(p, sq, s, h, e0, EV, back, wt, row_tot, col_tot);
}

#endif
