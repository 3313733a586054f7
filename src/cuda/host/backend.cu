/*
 * backend.cu - the CUDA backend's runner: executes a la_cuda_plan_t
 * (plan.cu) on the caller's stream.  It fills the kernels' parameters from
 * the call's tensors, lays out the workspace as the plan says, and runs the
 * head-dim tiles in a fixed order (deterministic sums); the launchers it
 * calls take the plan's choices as given.
 */
#include "internal.h"
#include "plan.h"
#include "kernel_params.h"
#include "fwd_launch.h"
#include "bwd_launch.h"
#include "decode.h"
#include "vec_launch.h"
#include "vec_bwd.h"
#include "value_checks.h"
#include "pool_io.h"

#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

/* ---- head-dim tiles: how a sub-problem's outputs are summed ------------------ */

/* LA_SUM_* bits and the fp32 running sums (kernel_params.h). */
typedef struct sums {
    int accum;
    la_sum_t o, dq, dk, dv;
} sums_t;

static int is_bwd(const la_plan_t *pl) { return pl->op == LA_OP_BACKWARD || pl->op == LA_OP_STATE_BACKWARD; }

static la_sum_t sum_view(char *ws, size_t off, const la_plan_t *pl, int64_t pitch, int64_t c0) {
    la_sum_t v;
    const int64_t n = la_cuda_row_tokens(pl);
    v.ptr = (float *)(ws + off) + c0;
    v.st = pitch;
    v.sh = n * pitch;
    v.sb = pl->p.heads * n * pitch;
    return v;
}

/* Tile (i, j) of nd x ne: which shares it adds and keeps, and where. */
static sums_t sub_sums(const la_plan_t *pl, const la_cuda_plan_t *c, char *ws, int64_t i, int64_t j) {
    sums_t m;
    memset(&m, 0, sizeof m);
    const la_sum_layout_t *w = &c->sums;
    const int over_d = (i > 0 ? LA_SUM_ADD : 0) | (i < c->nd - 1 ? LA_SUM_KEEP : 0);
    const int over_e = (j > 0 ? LA_SUM_ADD : 0) | (j < c->ne - 1 ? LA_SUM_KEEP : 0);
    if (!is_bwd(pl)) {
        m.accum = over_d << LA_SUM_O;
        if (c->nd > 1) m.o = sum_view(ws, w->o_dv, pl, w->pe, 0);
        return m;
    }
    m.accum = over_e << LA_SUM_DQ | over_e << LA_SUM_DK | over_d << LA_SUM_DV | (i || j ? LA_SUM_DLD_ADD : 0);
    if (c->nd > 1) m.dv = sum_view(ws, w->o_dv, pl, w->pe, j * c->te);
    if (c->ne > 1) {
        m.dq = sum_view(ws, w->dq, pl, w->pd, 0);
        m.dk = sum_view(ws, w->dk, pl, w->pd, 0);
    }
    return m;
}

/* ---- parameters ------------------------------------------------------------------ */

static la_tok_t tok_of(const la_tensor_t *t) {
    la_tok_t x;
    x.ptr = t->data;
    x.sb = t->stride[0]; x.sh = t->stride[1]; x.st = t->stride[2]; x.sc = t->stride[3];
    return x;
}

static la_st_t st_of(const la_tensor_t *t) {
    la_st_t x;
    x.ptr = (float *)t->data;
    x.ss = t->stride[0]; x.sh = t->stride[1]; x.sd = t->stride[2]; x.se = t->stride[3];
    return x;
}

/* A second stream per device, made on first use and kept for the process
 * (as a library handle would keep it): the backward's forward state pass
 * runs on it beside the reverse state pass, which it does not depend on.
 * Fork and join go through events, so stream capture records them too. */
#define LA_CUDA_MAX_DEVICES 64
static cudaStream_t side_streams[LA_CUDA_MAX_DEVICES];

static cudaStream_t side_stream(int dev) {
    if (dev < 0 || dev >= LA_CUDA_MAX_DEVICES) return NULL;
    cudaStream_t s = __atomic_load_n(&side_streams[dev], __ATOMIC_ACQUIRE);
    if (s) return s;
    cudaStream_t mine = NULL, expected = NULL;
    if (cudaStreamCreateWithFlags(&mine, cudaStreamNonBlocking) != cudaSuccess) return NULL;
    if (__atomic_compare_exchange_n(&side_streams[dev], &expected, mine, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return mine;
    cudaStreamDestroy(mine); /* another thread's stream won */
    return expected;
}

/* Parameters every chunk kernel shares, and the packed tables in the workspace. */
static la_status_t fill_common(const la_plan_t *pl, const la_tile_plan_t *tp, char *ws, cudaStream_t stream,
                               la_fwd_params_t *pp, char *msg) {
    la_fwd_params_t &p = *pp;
    memset(&p, 0, sizeof p);
    const la_tensors_t *t = &pl->t;
    p.q = tok_of(&t->q); p.k = tok_of(&t->k); p.v = tok_of(&t->v); p.o = tok_of(&t->o);
    p.D = (int)pl->p.dim_qk; p.E = (int)pl->p.dim_v; p.H = (int)pl->p.heads;
    p.scale = pl->p.scale;
    p.decay = (int)pl->p.decay;
    p.ld = (const float *)t->ld.data;
    p.ld_sb = t->ld.stride[0]; p.ld_sh = t->ld.stride[1]; p.ld_st = t->ld.stride[2];
    p.check_rec = la_cuda_inline_check(pl);
    p.s0 = st_of(&t->initial_state);
    p.sN = st_of(&t->final_state);
    if (!pl->has_final) p.sN.ptr = NULL;
    p.seg.seqlen = pl->p.seqlen;
    p.seg.n_seg = tp->seg.n_seg;
    p.seg.seg_len = tp->seg.seg_len;
    p.seg.num_seqs = (int)pl->num_seqs;
    p.seg.total_segs = tp->seg.total;
    p.ept = tp->ept;
    p.vec_ok = tp->vec_ok;
    p.prefix = tp->seg.prefix;
    if (pl->packed) {
        la_cuda_packed_tables_t tab;
        tab.cu = (int64_t *)(ws + tp->ws.cu);
        tab.seg_off = (int *)(ws + tp->ws.seg_off);
        tab.chunk_off = (int *)(ws + tp->ws.chunk_off);
        la_status_t st = la_cuda_packed_tables(pl, tp->seg.seg_len, &tab, stream, msg);
        if (st) return st;
        p.seg.cu = tab.cu;
        p.seg.seg_off = tab.seg_off;
        p.seg.chunk_off = tab.chunk_off;
    }
    return LA_STATUS_SUCCESS;
}

static la_fwd_launch_t launch_of(const la_plan_t *pl, const la_tile_plan_t *tp) {
    la_fwd_launch_t l;
    memset(&l, 0, sizeof l);
    l.DP = tp->DP;
    l.eslice = tp->eslice;
    l.stages = tp->stages;
    l.state_stages = tp->state_stages;
    l.total_segs = tp->seg.total;
    l.num_seqs = (int)pl->num_seqs;
    l.rows = pl->packed ? 1 : pl->p.batch;
    l.row_tokens = la_cuda_row_tokens(pl);
    return l;
}

/* ---- forward ---------------------------------------------------------------------- */

static la_status_t fwd_launch(la_dtype_t dt, const la_fwd_params_t *p, const la_fwd_launch_t *l, cudaStream_t s,
                              char *msg) {
#ifdef LA_HAVE_SM90A
    if (l->wgmma) return dt == LA_DTYPE_BF16 ? la_cuda_fwd_wg_bf16(p, l, s, msg) : la_cuda_fwd_wg_f16(p, l, s, msg);
#endif
    if (dt == LA_DTYPE_BF16) return la_cuda_fwd_bf16(p, l, s, msg);
    if (dt == LA_DTYPE_F16) return la_cuda_fwd_f16(p, l, s, msg);
    return la_cuda_fwd_f32(p, l, s, msg);
}

static la_status_t run_forward(const la_plan_t *pl, const la_tile_plan_t *tp, char *ws, cudaStream_t stream,
                               const sums_t *sums, char *msg) {
    la_status_t st = la_cuda_check_decays(pl, stream, msg);
    if (st) return st;
    la_fwd_params_t p;
    if ((st = fill_common(pl, tp, ws, stream, &p, msg))) return st;
    if (tp->state) {
        p.seg_state = (float *)(ws + tp->ws.seg_state);
        p.seg_logdecay = (float *)(ws + tp->ws.seg_logdecay);
    }
    p.accum = sums->accum;
    p.sum_o = sums->o;
    la_fwd_launch_t l = launch_of(pl, tp);
    l.state_pass = tp->state != LA_K_NONE;
    l.main_pass = tp->main != LA_K_NONE;
    l.wgmma = tp->main == LA_K_FWD_WGMMA || tp->state == LA_K_FWD_WGMMA;
    l.state_wg = tp->state == LA_K_STATE_WGMMA;
    l.rows_stages = tp->main == LA_K_FWD_ROWS || tp->main == LA_K_FWD_WARP_ROLES ? tp->rows_stages : 0;
    l.ws = tp->main == LA_K_FWD_WARP_ROLES;
    return fwd_launch(pl->t.k.dtype, &p, &l, stream, msg);
}

/* ---- backward --------------------------------------------------------------------- */

static la_status_t run_backward(const la_plan_t *pl, const la_tile_plan_t *tp, int dev, char *ws, cudaStream_t stream,
                                const sums_t *sums, char *msg) {
    la_status_t st = la_cuda_check_decays(pl, stream, msg);
    if (st) return st;
    const la_tensors_t *t = &pl->t;
    la_bwd_params_t b;
    memset(&b, 0, sizeof b);
    if ((st = fill_common(pl, tp, ws, stream, &b.f, msg))) return st;
    b.f.accum = sums->accum;
    b.sum_dq = sums->dq;
    b.sum_dk = sums->dk;
    b.sum_dv = sums->dv;
    b.d_o = tok_of(&t->d_o); b.dq = tok_of(&t->dq); b.dk = tok_of(&t->dk); b.dv = tok_of(&t->dv);
    if (pl->op == LA_OP_STATE_BACKWARD) { /* q, d_o and dq are not part of this operation */
        b.d_o.ptr = NULL;
        b.dq.ptr = NULL;
        b.f.q.ptr = NULL;
    }
    b.dsN = st_of(&t->d_final_state);
    if (!pl->has_dfinal) b.dsN.ptr = NULL;
    b.ds0 = st_of(&t->d_initial_state);
    if (!pl->want_dinitial) b.ds0.ptr = NULL;
    b.gvec_ok = tp->gvec_ok;
    /* Events of the side stream's fork and join (NULL: one stream). */
    cudaEvent_t fork = NULL, join = NULL;
    if (tp->state) {
        /* Incoming states of every segment: the forward's state pass and
         * fold, on the side stream where one can be had. */
        cudaStream_t fs = stream, side = side_stream(dev);
        if (side && cudaEventCreateWithFlags(&fork, cudaEventDisableTiming) == cudaSuccess &&
            cudaEventCreateWithFlags(&join, cudaEventDisableTiming) == cudaSuccess &&
            cudaEventRecord(fork, stream) == cudaSuccess && cudaStreamWaitEvent(side, fork, 0) == cudaSuccess)
            fs = side;
        else {
            if (fork) cudaEventDestroy(fork);
            if (join) cudaEventDestroy(join);
            fork = join = NULL;
        }
        b.f.seg_state = (float *)(ws + tp->ws.seg_state);
        b.f.seg_logdecay = (float *)(ws + tp->ws.seg_logdecay);
        b.seg_dstate = (float *)(ws + tp->ws.seg_dstate);
        la_fwd_launch_t l = launch_of(pl, tp);
        l.stages = 1;
        l.state_stages = tp->side_state_stages;
        l.state_pass = 1;
        l.state_wg = tp->state == LA_K_STATE_WGMMA;
        la_fwd_params_t fp = b.f;
        fp.sN.ptr = NULL; /* the backward writes no final state */
        fp.accum = 0;
        st = fwd_launch(t->k.dtype, &fp, &l, fs, msg);
        if (!st && join && cudaEventRecord(join, side) != cudaSuccess) {
            snprintf(msg, LA_MSG_LEN, "recording the side stream's event failed");
            st = LA_STATUS_EXECUTION_FAILED;
        }
        if (st) {
            if (fork) { cudaEventDestroy(fork); cudaEventDestroy(join); }
            return st;
        }
    }
    if (pl->want_dld) {
        b.want_dld = 1;
        b.dld_planes = tp->dld_planes;
        b.d_ld = (float *)t->d_ld.data;
        b.dld_sb = t->d_ld.stride[0]; b.dld_sh = t->d_ld.stride[1]; b.dld_st = t->d_ld.stride[2];
        b.dld_tok = (float *)(ws + tp->ws.dld_tok);
        b.dld_chunk = (float *)(ws + tp->ws.dld_chunk);
        b.dld_z0 = (float *)(ws + tp->ws.dld_z0);
        b.dld_part = (double *)(ws + tp->ws.dld_part);
        b.ntot = la_cuda_row_tokens(pl);
        b.tc = tp->tc;
        b.nch_seq = (int)((pl->p.seqlen + LA_CUDA_CHUNK - 1) / LA_CUDA_CHUNK);
    }
    la_bwd_launch_t l;
    l.DP = tp->DP;
    l.EP = tp->EP;
    l.total = tp->seg.total;
    l.stages = tp->bwd_stages;
    l.wgmma = tp->bwd == LA_K_BWD_WGMMA;
    l.rows = pl->packed ? 1 : pl->p.batch;
    l.row_tokens = la_cuda_row_tokens(pl);
    const la_dtype_t dt = t->k.dtype; /* q is absent from the state-only backward */
    st = dt == LA_DTYPE_BF16  ? la_cuda_bwd_bf16(&b, &l, stream, join, msg)
         : dt == LA_DTYPE_F16 ? la_cuda_bwd_f16(&b, &l, stream, join, msg)
                              : la_cuda_bwd_f32(&b, &l, stream, join, msg);
    /* Enqueued work keeps what it needs of an event; destroying it now is safe. */
    if (fork) { cudaEventDestroy(fork); cudaEventDestroy(join); }
    return st;
}

/* ---- decode ------------------------------------------------------------------------ */

/* Decode: the decays checked (per-head ones inline), a pool's slots checked
 * inline by the kernel in the deferred mode or first, waited for, in the sync
 * mode; then one launch. */
static la_status_t run_decode(const la_plan_t *pl, cudaStream_t stream, char *msg) {
    la_status_t st = la_cuda_check_decays(pl, stream, msg);
    if (st) return st;
    const la_tensors_t *t = &pl->t;
    la_decode_params_t p;
    memset(&p, 0, sizeof p);
    p.q = tok_of(&t->q); p.k = tok_of(&t->k); p.v = tok_of(&t->v); p.o = tok_of(&t->o);
    p.D = (int)pl->p.dim_qk; p.E = (int)pl->p.dim_v; p.H = (int)pl->p.heads; p.decay = (int)pl->p.decay;
    p.T = (int)pl->p.seqlen;
    p.scale = pl->p.scale;
    p.ld = (const float *)t->ld.data;
    p.ld_sb = t->ld.stride[0]; p.ld_sh = t->ld.stride[1]; p.ld_st = t->ld.stride[2]; p.ld_sc = t->ld.stride[3];
    p.ldv = (const float *)t->ldv.data;
    p.ldv_sb = t->ldv.stride[0]; p.ldv_sh = t->ldv.stride[1]; p.ldv_st = t->ldv.stride[2]; p.ldv_sc = t->ldv.stride[3];
    p.check_rec = la_cuda_inline_check(pl);
    la_dtype_t state = LA_DTYPE_F32;
    if (pl->has_pool) {
        const la_tensor_t *pool = &t->pool.states;
        p.pool = pool->data;
        p.pool_ss = pool->stride[0]; p.pool_sh = pool->stride[1]; p.pool_sd = pool->stride[2]; p.pool_se = pool->stride[3];
        p.slots = la_plan_slots(pl);
        state = pool->dtype;
        if (pl->check_values == LA_CHECK_VALUES_SYNC) {
            if ((st = la_cuda_check_slots(pl, &p.slots, stream, msg))) return st;
        } else {
            p.slot_rec = la_cuda_slot_record(pl);
        }
    } else {
        p.s0 = st_of(&t->initial_state);
        p.sN = st_of(&t->final_state);
    }
    return la_cuda_decode(&p, t->q.dtype, state, (int)(pl->num_seqs * pl->p.heads), stream, msg);
}

/* ---- vector decays ----------------------------------------------------------------- */

static void strides_of(const la_tensor_t *t, int64_t s[4]) { memcpy(s, t->stride, 4 * sizeof(int64_t)); }

/* One run split along the sequence (plan_vector), in the run's own dims and direction: each
 * segment's walk from a zero state to its local state and summed decays, the fold to each
 * segment's starting state (and the run's final state), then, where the run has outputs, each
 * segment's walk from its state; a reverse run's running sums then take their segments'
 * offsets. */
static la_status_t run_vector_split(const la_plan_t *pl, const la_tile_plan_t *tp, const la_vec_params_t *run,
                                    char *ws, cudaStream_t stream, char *msg) {
    const int H = run->H, D = run->D, E = run->E, nseg = tp->seg.n_seg;
    la_st_t seg;
    seg.ptr = (float *)(ws + tp->ws.vec_seg_state);
    seg.se = 1;
    seg.sd = E;
    seg.sh = (int64_t)D * E;
    seg.ss = (int64_t)H * D * E;
    float *tot_k = (float *)(ws + tp->ws.vec_seg_tot);
    float *tot_v = run->gv ? tot_k + (size_t)tp->seg.total * H * D : NULL;
    la_vec_params_t p = *run;
    p.seg_len = tp->seg.seg_len;
    p.nseg = nseg;
    p.q = p.o = p.mul = la_vec_none(); /* the segments' state pass */
    p.term = NULL;
    p.term_mode = 0;
    p.fin_a.ptr = p.fin_b.ptr = NULL;
    p.s0.ptr = NULL;
    p.sN = seg;
    p.seg_tot_k = tot_k;
    p.seg_tot_v = tot_v;
    la_status_t st = la_cuda_vec_fwd(&p, pl->t.k.dtype, tp->seg.total, tp->vec_mma_smem, stream, msg);
    if (st) return st;
    cudaError_t err =
        la_cuda_vec_fold(seg.ptr, tot_k, tot_v, run->s0, run->sN, nseg, H, D, E, run->reverse, pl->num_seqs, stream);
    if (err != cudaSuccess) {
        snprintf(msg, LA_MSG_LEN, "launching the vector-decay fold failed: %s", cudaGetErrorString(err));
        return LA_STATUS_EXECUTION_FAILED;
    }
    if (!run->o.ptr && !run->term) return LA_STATUS_SUCCESS; /* the state alone: the fold wrote it */
    p = *run;
    p.seg_len = tp->seg.seg_len;
    p.nseg = nseg;
    p.s0 = seg;
    p.sN.ptr = NULL;
    const int sums = run->term_mode == 2;
    if (sums) { /* each segment's sums from zero; the final state's share goes in with the offsets */
        p.fin_a.ptr = p.fin_b.ptr = NULL;
        p.seg_sum = (double *)(ws + tp->ws.vec_seg_sum);
    }
    if ((st = la_cuda_vec_fwd(&p, pl->t.k.dtype, tp->seg.total, tp->vec_mma_smem, stream, msg))) return st;
    if (!sums) return LA_STATUS_SUCCESS;
    const int64_t term_s[4] = {run->term_sb, run->term_sh, run->term_st, run->term_sc};
    err = la_cuda_vec_sums(p.seg_sum, run->fin_a, run->fin_b, run->term, term_s, nseg, tp->seg.seg_len, H, D, E,
                           pl->p.seqlen, pl->num_seqs, stream);
    if (err != cudaSuccess) {
        snprintf(msg, LA_MSG_LEN, "launching the vector-decay sums' offsets failed: %s", cudaGetErrorString(err));
        return LA_STATUS_EXECUTION_FAILED;
    }
    return LA_STATUS_SUCCESS;
}

/* The backward: the runs vec_bwd.h lists. */
static la_status_t run_vector_backward(const la_plan_t *pl, const la_tile_plan_t *tp, char *ws, const int64_t *cu,
                                       cudaStream_t stream, char *msg) {
    const la_tensors_t *t = &pl->t;
    la_vec_bwd_args_t a;
    memset(&a, 0, sizeof a);
    a.state_only = pl->op == LA_OP_STATE_BACKWARD;
    a.k = tok_of(&t->k); a.v = tok_of(&t->v); a.dk = tok_of(&t->dk); a.dv = tok_of(&t->dv);
    if (!a.state_only) {
        a.q = tok_of(&t->q); a.d_o = tok_of(&t->d_o); a.dq = tok_of(&t->dq);
    }
    a.gk = (const float *)t->ld.data;
    strides_of(&t->ld, a.gk_s);
    if (pl->p.decay == LA_DECAY_VECTOR_KV) {
        a.gv = (const float *)t->ldv.data;
        strides_of(&t->ldv, a.gv_s);
    }
    a.s0 = st_of(&t->initial_state);
    a.dsN = st_of(&t->d_final_state);
    if (!pl->has_dfinal) a.dsN.ptr = NULL;
    a.ds0 = st_of(&t->d_initial_state);
    if (!pl->want_dinitial) a.ds0.ptr = NULL;
    if (pl->want_dld) {
        a.d_gk = (float *)t->d_ld.data;
        strides_of(&t->d_ld, a.dgk_s);
    }
    if (pl->want_dldv) {
        a.d_gv = (float *)t->d_ldv.data;
        strides_of(&t->d_ldv, a.dgv_s);
    }
    a.D = (int)pl->p.dim_qk; a.E = (int)pl->p.dim_v; a.H = (int)pl->p.heads;
    a.scale = pl->p.scale;
    a.seqlen = pl->p.seqlen;
    a.cu = cu;
    /* The same rule as the plan's workspace layout. */
    if (la_vec_bwd_ws_state(pl->want_dld || pl->want_dldv, pl->has_dfinal)) a.sN_ws = (float *)(ws + tp->ws.vec_state);
    la_vec_params_t runs[4];
    const int n = la_vec_bwd_runs(&a, runs);
    for (int i = 0; i < n; i++) {
        runs[i].sms = tp->vec_sms;
        runs[i].warp_roles = tp->vec_warp_roles;
        const la_status_t st = tp->seg.multi ? run_vector_split(pl, tp, &runs[i], ws, stream, msg)
                                             : la_cuda_vec_fwd(&runs[i], t->k.dtype, pl->num_seqs, tp->vec_mma_smem,
                                                               stream, msg);
        if (st) return st;
    }
    return LA_STATUS_SUCCESS;
}

static la_status_t run_vector(const la_plan_t *pl, const la_tile_plan_t *tp, char *ws, cudaStream_t stream, char *msg) {
    la_status_t st = la_cuda_check_decays(pl, stream, msg);
    if (st) return st;
    const int64_t *cu = NULL;
    if (pl->packed) {
        la_cuda_packed_tables_t tab;
        tab.cu = (int64_t *)(ws + tp->ws.cu);
        tab.seg_off = (int *)(ws + tp->ws.seg_off);
        tab.chunk_off = (int *)(ws + tp->ws.chunk_off);
        if ((st = la_cuda_packed_tables(pl, tp->seg.seg_len, &tab, stream, msg))) return st;
        cu = tab.cu;
    }
    if (is_bwd(pl)) return run_vector_backward(pl, tp, ws, cu, stream, msg);
    const la_tensors_t *t = &pl->t;
    la_vec_params_t p;
    memset(&p, 0, sizeof p);
    p.k = tok_of(&t->k);
    p.v = tok_of(&t->v);
    p.kscale = 1.0f;
    if (pl->op == LA_OP_FORWARD) { /* the state-only pass has neither */
        p.q = tok_of(&t->q);
        p.o = tok_of(&t->o);
    }
    la_vec_set_gk(&p, (const float *)t->ld.data, t->ld.stride);
    if (pl->p.decay == LA_DECAY_VECTOR_KV) la_vec_set_gv(&p, (const float *)t->ldv.data, t->ldv.stride);
    p.s0 = st_of(&t->initial_state);
    p.sN = st_of(&t->final_state);
    if (!pl->has_final) p.sN.ptr = NULL;
    p.D = (int)pl->p.dim_qk; p.E = (int)pl->p.dim_v; p.H = (int)pl->p.heads;
    p.scale = pl->p.scale;
    p.seqlen = pl->p.seqlen;
    p.cu = cu;
    p.sms = tp->vec_sms;
    p.warp_roles = tp->vec_warp_roles;
    if (!tp->seg.multi) return la_cuda_vec_fwd(&p, t->k.dtype, pl->num_seqs, tp->vec_mma_smem, stream, msg);
    return run_vector_split(pl, tp, &p, ws, stream, msg);
}

/* ---- served forwards: state pools, checkpoints ---------------------------------------------------- */

static la_status_t cuda_run(const la_plan_t *pl, const void *bplan, void *ws_ptr, size_t ws_bytes, void *stream_ptr,
                            char *msg);

/* The checkpoints of a served forward, from the call's initial states
 * (s0: [S, H, D, E] f32 or NULL) and device offsets (cu, or NULL). */
static la_status_t run_checkpoints(const la_plan_t *pl, const float *s0, const int64_t *s0_strides, const int64_t *cu,
                                   cudaStream_t stream, char *msg) {
    const la_tensors_t *t = &pl->t;
    la_ckpt_params_t p;
    memset(&p, 0, sizeof p);
    p.k = tok_of(&t->k);
    p.v = tok_of(&t->v);
    p.decay = (int)pl->p.decay;
    p.ld = (const float *)t->ld.data;
    p.ld_sb = t->ld.stride[0]; p.ld_sh = t->ld.stride[1]; p.ld_st = t->ld.stride[2]; p.ld_sc = t->ld.stride[3];
    p.ldv = (const float *)t->ldv.data;
    p.ldv_sb = t->ldv.stride[0]; p.ldv_sh = t->ldv.stride[1]; p.ldv_st = t->ldv.stride[2]; p.ldv_sc = t->ldv.stride[3];
    p.s0 = s0;
    if (s0) { p.s0_ss = s0_strides[0]; p.s0_sh = s0_strides[1]; p.s0_sd = s0_strides[2]; p.s0_se = s0_strides[3]; }
    p.ckpt = t->checkpoints.data;
    p.c_ss = t->checkpoints.stride[0]; p.c_sh = t->checkpoints.stride[1];
    p.c_sd = t->checkpoints.stride[2]; p.c_se = t->checkpoints.stride[3];
    p.cu = cu;
    p.N = pl->p.seqlen;
    p.interval = pl->p.checkpoint_interval;
    p.S = (int)pl->num_seqs; p.H = (int)pl->p.heads; p.D = (int)pl->p.dim_qk; p.E = (int)pl->p.dim_v;
    if (pl->has_pool) p.slots = la_plan_slots(pl);
    if (!p.ckpt || la_plan_checkpoint_rows(pl) == 0) return LA_STATUS_SUCCESS;
    return la_cuda_checkpoints(&p, t->k.dtype, t->checkpoints.dtype, stream, msg);
}

/* A served forward: a pool's slots checked (deferred or waited for) and
 * gathered into workspace states; the packed offsets on the device; the
 * checkpoints from the starting states; the dense forward; the final states
 * scattered to their write slots, and zeros for the padding sequences'
 * outputs. */
static la_status_t run_served(const la_plan_t *pl, const la_cuda_plan_t *c, char *ws, cudaStream_t stream, char *msg) {
    const int64_t S = pl->num_seqs, H = pl->p.heads, D = pl->p.dim_qk, E = pl->p.dim_v;
    la_status_t st;
    la_slots_t slots;
    memset(&slots, 0, sizeof slots);
    float *states = c->pooled ? (float *)(ws + c->pool_states) : NULL;
    la_pool_io_t io;
    memset(&io, 0, sizeof io);
    if (c->pooled) {
        slots = la_plan_slots(pl);
        if ((st = la_cuda_check_slots(pl, &slots, stream, msg))) return st;
        const la_tensor_t *pool = &pl->t.pool.states;
        io.pool = pool->data;
        io.bf16 = pool->dtype == LA_DTYPE_BF16;
        io.ss = pool->stride[0]; io.sh = pool->stride[1]; io.sd = pool->stride[2]; io.se = pool->stride[3];
        io.slots = slots;
        io.dense = states;
        io.H = H; io.D = D; io.E = E;
        if ((st = la_cuda_pool_gather(&io, stream, msg))) return st;
    }
    const int64_t *cu = NULL;
    if (pl->packed) { /* the offsets on the device, checked and clamped (host ones copied) */
        la_cuda_packed_tables_t tab;
        tab.cu = (int64_t *)(ws + c->served_cu);
        tab.seg_off = (int *)(ws + c->served_tabs);
        tab.chunk_off = tab.seg_off + ((S + 1 + 63) / 64) * 64;
        if ((st = la_cuda_packed_tables(pl, pl->p.seqlen > 0 ? pl->p.seqlen : 1, &tab, stream, msg))) return st;
        cu = tab.cu;
    }
    if (pl->has_checkpoints) {
        const int64_t dense_strides[4] = {H * D * E, D * E, E, 1};
        const la_tensor_t *s0 = &pl->t.initial_state;
        st = c->pooled ? run_checkpoints(pl, states, dense_strides, cu, stream, msg)
                       : run_checkpoints(pl, pl->has_initial ? (const float *)s0->data : NULL, s0->stride, cu, stream, msg);
        if (st) return st;
    }
    const la_plan_t dense = la_cuda_served_as_dense(pl, states);
    la_cuda_plan_t inner = *c;
    inner.served = inner.pooled = 0;
    if ((st = cuda_run(&dense, &inner, ws, c->served_cu, stream, msg))) return st;
    if (!c->pooled) return LA_STATUS_SUCCESS;
    io.dense = states + S * H * D * E;
    if ((st = la_cuda_pool_scatter(&io, stream, msg))) return st;
    if (pl->op != LA_OP_FORWARD) return LA_STATUS_SUCCESS;
    return la_cuda_zero_padding(&slots, tok_of(&pl->t.o), pl->t.o.dtype, H, pl->p.seqlen, E, cu, stream, msg);
}

/* ---- the backend -------------------------------------------------------------------- */

static la_status_t cuda_run(const la_plan_t *pl, const void *bplan, void *ws_ptr, size_t ws_bytes, void *stream_ptr,
                            char *msg) {
    (void)ws_bytes;
    const la_cuda_plan_t *c = (const la_cuda_plan_t *)bplan;
    cudaStream_t stream = (cudaStream_t)stream_ptr;
    char *ws = (char *)ws_ptr;
    if (pl->op == LA_OP_DECODE) return run_decode(pl, stream, msg);
    if (c->served) return run_served(pl, c, ws, stream, msg);
    if (c->tile[0][0].main == LA_K_VEC_FWD || c->tile[0][0].main == LA_K_VEC_BWD)
        return run_vector(pl, &c->tile[0][0], ws, stream, msg);
    /* The chunk kernels on each head-dim tile in turn (one tile when the dims
     * fit a block), in a fixed order: deterministic sums. */
    for (int64_t i = 0; i < c->nd; i++)
        for (int64_t j = 0; j < c->ne; j++) {
            const la_plan_t sub = la_cuda_sub_plan(pl, c->td, c->te, i * c->td, j * c->te);
            const la_tile_plan_t *tp = la_cuda_tile(c, i, j);
            const sums_t m = sub_sums(pl, c, ws, i, j);
            const la_status_t st = is_bwd(pl) ? run_backward(&sub, tp, c->lim.device, ws, stream, &m, msg)
                                              : run_forward(&sub, tp, ws, stream, &m, msg);
            if (st) return st;
        }
    return LA_STATUS_SUCCESS;
}

static int cuda_available(void) {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

static void *cuda_ws_alloc(size_t bytes) {
    void *p = NULL;
    return cudaMalloc(&p, bytes ? bytes : 1) == cudaSuccess ? p : NULL;
}

static void cuda_ws_free(void *p) { cudaFree(p); }

static const la_backend_ops_t la_cuda_backend = {
    "cuda",
    sizeof(la_cuda_plan_t),
    la_cuda_make_plan,
    la_cuda_plan_workspace,
    cuda_run,
    la_cuda_describe,
    cuda_available,
    cuda_ws_alloc,
    cuda_ws_free,
    0,
    la_cuda_state_create,
    la_cuda_state_destroy,
    la_cuda_take_error,
};

extern "C" const la_backend_ops_t *const la_cuda_backend_ptr = &la_cuda_backend;
