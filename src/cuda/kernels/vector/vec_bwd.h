/* vec_bwd.h - the backward of the vector decay kinds, as runs of the
 * vector-decay recurrence (vec_fwd_kernel.cuh).  With S_t the state after
 * token t and dS_t the gradient reaching it,
 *
 *   dq_t = scale do_t S_t^T          run Q: S^T walked forwards (queries do, keys v, values k)
 *   dS_t = scale q_t^T do_t + diag(a_{t+1}) dS_{t+1} diag(b_{t+1}),  dS_{N-1} also takes dS_final
 *   dk_t = v_t dS_t^T                run K: dS^T walked backwards (queries v, keys do, values scale q)
 *   dv_t = k_t dS_t                  run V: dS walked backwards (queries k, keys scale q, values do),
 *   ds0  = diag(a_0) dS_0 diag(b_0)         its final state
 *   d gk_t = sum_{s >= t} (q_s . dq_s - k_s . dk_s) + sum_e dS_final . S_N
 *   d gv_t = sum_{s >= t} (o_s . do_s - v_s . dv_s) + sum_d dS_final . S_N
 *
 * The decay gradients are sum_e dS_t . (S_t - k_t^T v_t) telescoped.  Their
 * terms are products of fp32 values (dq, dk, dv, o as the runs compute them,
 * before any rounding to the output dtype): run Q writes q . dq and run O
 * (the forward, VECTOR_KV) o . do into the gradient tensors, and runs K and
 * V, walking backwards, sum them with - k . dk and - v . dv in double, in
 * place.  Rounded terms would not do: with bf16 dq and dk the sum over 65536
 * tokens has a relative error near 1 (f32 terms: about 1e-5).
 *
 * Each run's block owns whole columns of its outputs: runs Q and K slice the
 * key dim D, runs O and V the value dim E, so nothing is summed across
 * blocks.  No state is stored: S walks forwards, dS backwards.  The
 * state-only backward has no q, do or dq (no q^T do term, no run Q).
 * Workspace: S_N (run Q's final state, or a state-only forward's) where a
 * decay gradient meets an incoming dS_final.  Header-only, for the runner
 * (host/backend.cu) and for tests/test_vec_emulated.cpp, which runs the
 * same list on the host. */
#ifndef LA_CUDA_VEC_BWD_H
#define LA_CUDA_VEC_BWD_H

#include "vec_params.h"

#include <string.h>

typedef struct la_vec_bwd_args {
    int state_only;                   /* the state-only backward: q, d_o, dq absent */
    la_tok_t q, k, v, d_o, dq, dk, dv; /* gradients are written (ptr const only by type) */
    const float *gk, *gv;             /* log decays; gv NULL for VECTOR_K */
    int64_t gk_s[4], gv_s[4];
    la_st_t s0, dsN, ds0;             /* ptr NULL: absent (ds0: not wanted) */
    float *d_gk, *d_gv;               /* decay gradients [B, H, N, D] / [B, H, N, E], NULL: not wanted */
    int64_t dgk_s[4], dgv_s[4];
    int D, E, H;
    float scale;
    int64_t seqlen;
    const int64_t *cu;                /* packed offsets in device memory, else NULL */
    float *sN_ws;                     /* [S, H, D, E] contiguous, or NULL (see la_vec_bwd_ws_state) */
} la_vec_bwd_args_t;

/* Whether the decay gradient needs S_N (an incoming final-state gradient). */
static inline int la_vec_bwd_ws_state(int want_dld, int has_dfinal) { return want_dld && has_dfinal; }

static inline la_st_t la_vec_transposed(la_st_t x) {
    const int64_t d = x.sd;
    x.sd = x.se;
    x.se = d;
    return x;
}

static inline la_tok_t la_vec_none(void) {
    la_tok_t t;
    memset(&t, 0, sizeof t);
    return t;
}

static inline void la_vec_set_gk(la_vec_params_t *p, const float *g, const int64_t *s) {
    p->gk = g;
    p->gk_sb = s[0]; p->gk_sh = s[1]; p->gk_st = s[2]; p->gk_sc = s[3];
}
static inline void la_vec_set_gv(la_vec_params_t *p, const float *g, const int64_t *s) {
    p->gv = g;
    p->gv_sb = s[0]; p->gv_sh = s[1]; p->gv_st = s[2]; p->gv_sc = s[3];
}

static inline void la_vec_set_term(la_vec_params_t *p, float *term, const int64_t *s, int mode, int in, la_tok_t mul) {
    p->term = term;
    p->term_sb = s[0]; p->term_sh = s[1]; p->term_st = s[2]; p->term_sc = s[3];
    p->term_mode = mode;
    p->term_in = in;
    p->mul = mul;
}

static inline la_vec_params_t la_vec_run_base(const la_vec_bwd_args_t *a) {
    la_vec_params_t p;
    memset(&p, 0, sizeof p);
    p.H = a->H;
    p.seqlen = a->seqlen;
    p.cu = a->cu;
    p.scale = 1.0f;
    p.kscale = 1.0f;
    return p;
}

/* The state after the sequence, contiguous [S, H, D, E]. */
static inline la_st_t la_vec_ws_state(const la_vec_bwd_args_t *a) {
    la_st_t x;
    x.ptr = a->sN_ws;
    x.ss = (int64_t)a->H * a->D * a->E;
    x.sh = (int64_t)a->D * a->E;
    x.sd = a->E;
    x.se = 1;
    return x;
}

/* The runs of the recurrence kernel, in order (a run with gv set takes the
 * value-decay instance); returns how many. */
static inline int la_vec_bwd_runs(const la_vec_bwd_args_t *a, la_vec_params_t run[4]) {
    int n = 0;
    const int in = !a->state_only; /* runs O and Q wrote the terms' first halves */
    if (a->d_gv && !a->state_only) { /* run O: o . do, the value side's first half */
        la_vec_params_t p = la_vec_run_base(a);
        p.q = a->q; p.k = a->k; p.v = a->v;
        p.scale = a->scale;
        la_vec_set_gk(&p, a->gk, a->gk_s);
        la_vec_set_gv(&p, a->gv, a->gv_s);
        p.s0 = a->s0;
        la_vec_set_term(&p, a->d_gv, a->dgv_s, 1, 0, a->d_o);
        p.D = a->D; p.E = a->E;
        run[n++] = p;
    }
    if (!a->state_only) { /* run Q: dq, q . dq, and S_N^T */
        la_vec_params_t p = la_vec_run_base(a);
        p.q = a->d_o; p.k = a->v; p.v = a->k; p.o = a->dq;
        p.scale = a->scale;
        if (a->gv) la_vec_set_gk(&p, a->gv, a->gv_s);
        la_vec_set_gv(&p, a->gk, a->gk_s);
        p.s0 = la_vec_transposed(a->s0);
        if (a->sN_ws) p.sN = la_vec_transposed(la_vec_ws_state(a));
        if (a->d_gk) la_vec_set_term(&p, a->d_gk, a->dgk_s, 1, 0, a->q);
        p.D = a->E; p.E = a->D;
        run[n++] = p;
    } else if (a->sN_ws) { /* the state-only forward's S_N */
        la_vec_params_t p = la_vec_run_base(a);
        p.k = a->k; p.v = a->v;
        la_vec_set_gk(&p, a->gk, a->gk_s);
        if (a->gv) la_vec_set_gv(&p, a->gv, a->gv_s);
        p.s0 = a->s0;
        p.sN = la_vec_ws_state(a);
        p.D = a->D; p.E = a->E;
        run[n++] = p;
    }
    { /* run K: dk, and d gk summed backwards */
        la_vec_params_t p = la_vec_run_base(a);
        p.reverse = 1;
        p.q = a->v; p.o = a->dk;
        if (!a->state_only) {
            p.k = a->d_o;
            p.v = a->q;
            p.kscale = a->scale;
        }
        if (a->gv) la_vec_set_gk(&p, a->gv, a->gv_s);
        la_vec_set_gv(&p, a->gk, a->gk_s);
        p.s0 = la_vec_transposed(a->dsN);
        if (a->d_gk) {
            la_vec_set_term(&p, a->d_gk, a->dgk_s, 2, in, a->k);
            if (a->sN_ws) {
                p.fin_a = la_vec_transposed(a->dsN);
                p.fin_b = la_vec_transposed(la_vec_ws_state(a));
            }
        }
        p.D = a->E; p.E = a->D;
        run[n++] = p;
    }
    { /* run V: dv, ds0, and d gv summed backwards */
        la_vec_params_t p = la_vec_run_base(a);
        p.reverse = 1;
        p.q = a->k; p.o = a->dv;
        if (!a->state_only) {
            p.k = a->q;
            p.v = a->d_o;
            p.kscale = a->scale;
        }
        la_vec_set_gk(&p, a->gk, a->gk_s);
        if (a->gv) la_vec_set_gv(&p, a->gv, a->gv_s);
        p.s0 = a->dsN;
        p.sN = a->ds0;
        if (a->d_gv) {
            la_vec_set_term(&p, a->d_gv, a->dgv_s, 2, in, a->v);
            if (a->sN_ws) {
                p.fin_a = a->dsN;
                p.fin_b = la_vec_ws_state(a);
            }
        }
        p.D = a->D; p.E = a->E;
        run[n++] = p;
    }
    return n;
}

#endif
