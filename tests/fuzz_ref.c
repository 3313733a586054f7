/*
 * fuzz_ref.c - the outputs of a successful call against the fp64 reference.
 *
 * The reference runs per (sequence, head) on the inputs as they were before
 * the call (the snapshot: decode in place overwrites its input state), read
 * through our own strided indexing and rounding.  Each output is compared as
 * one vector: relative L2 error and worst element against the largest
 * reference element, with NaN never passing (testutil's metrics).  The
 * tolerances are the case table's (tolerances.h), measured with margin on
 * longer sequences than the fuzzer draws.
 */
#include "fuzz.h"
#include "reference.h"
#include "tolerances.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The least precise token dtype of the call sets the tolerances. */
static const tolset_t *tolerances(const fz_call_t *c, la_backend_t backend) {
    int worst = LA_DTYPE_F32;
    static const int id[] = {FZ_Q, FZ_K, FZ_V, FZ_O, FZ_DO, FZ_DQ, FZ_DK, FZ_DV};
    for (int i = 0; i < 8; i++) {
        const fz_tensor_t *t = &c->t[id[i]];
        if (t->src != FZ_IN_BUF) continue;
        if (t->dtype == LA_DTYPE_BF16) worst = LA_DTYPE_BF16;
        else if (t->dtype == LA_DTYPE_F16 && worst == LA_DTYPE_F32) worst = LA_DTYPE_F16;
    }
    return tu_tolerances((la_dtype_t)worst, backend);
}

/* ---- reading the call's tensors ---------------------------------------------------------- */

static int present(const fz_call_t *c, int id) { return c->t[id].src == FZ_IN_BUF; }

/* An input element as it was before the call. */
static double before(const fz_call_t *c, int id, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    const fz_tensor_t *t = &c->t[id];
    return fz_load(t->dtype, c->buf[t->buf].snap + fz_elem_at(t, i0, i1, i2, i3));
}

/* out[i*w + j] = tensor[i0, i1, t0 + i, j] for i < n, j < w (from the snapshot). */
static void gather_rows(const fz_call_t *c, int id, int64_t i0, int64_t i1, int64_t t0, int64_t n, double *out) {
    const int64_t w = c->t[id].dim[3];
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < w; j++) out[i * w + j] = before(c, id, i0, i1, t0 + i, j);
}

static double *zalloc(int64_t n) {
    double *p = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    if (!p) {
        fprintf(stderr, "test_fuzz: out of memory in the reference\n");
        exit(2);
    }
    return p;
}

/* ---- comparing ------------------------------------------------------------------------------ */

static void compare(fz_ctx_t *x, const fz_call_t *c, int id, const double *ref, const double *scale, double rel,
                    double elem) {
    const fz_tensor_t *t = &c->t[id];
    const int64_t n = fz_numel(t);
    if (n == 0) return;
    double *got = zalloc(n);
    int64_t i = 0;
    for (int64_t a = 0; a < t->dim[0]; a++)
        for (int64_t b = 0; b < t->dim[1]; b++)
            for (int64_t cc = 0; cc < t->dim[2]; cc++)
                for (int64_t d = 0; d < t->dim[3]; d++)
                    got[i++] = fz_load(t->dtype, c->buf[t->buf].host + fz_elem_at(t, a, b, cc, d));
    tu_metrics_t m;
    tu_compute_metrics_scaled(got, ref, scale, n, &m);
    if (!tu_metrics_ok(&m, rel, elem)) {
        if (m.nonfinite || m.ref_nonfinite)
            fz_fail(x, "reference-mismatch", "%s: %s has %lld non-finite value(s) (reference: %lld), first at %lld",
                    fz_op_name(c->op), fz_tensor_names[id], (long long)m.nonfinite, (long long)m.ref_nonfinite,
                    (long long)m.first_nonfinite);
        else
            fz_fail(x, "reference-mismatch",
                    "%s: %s vs the fp64 reference: rel_l2 %.3e (tol %.1e), worst |x-ref| %.3e = %.3e of %.3e "
                    "(tol %.1e) at element %lld: x = %.9g, ref = %.9g (%lld elements)",
                    fz_op_name(c->op), fz_tensor_names[id], m.rel_l2, rel, m.max_err, m.max_err / m.den_max, m.den_max,
                    elem, (long long)m.max_idx, m.x_at_max, m.ref_at_max, (long long)n);
    }
    free(got);
}

/* ---- the reference ------------------------------------------------------------------------- */

typedef struct refs {
    double *o, *sN, *dq, *dk, *dv, *dld, *dld_sc, *dldv, *dldv_sc, *ds0;
} refs_t;

typedef struct seqbuf { /* one (sequence, head), contiguous */
    double *q, *k, *v, *gk, *gv, *s0, *go, *gsN, *o, *sN, *dq, *dk, *dv, *dgk, *dgv, *ds0;
} seqbuf_t;

static void seqbuf_alloc(seqbuf_t *s, int64_t len, int64_t D, int64_t E) {
    int64_t nd = len * D, ne = len * E, de = D * E;
    s->q = zalloc(nd);
    s->k = zalloc(nd);
    s->v = zalloc(ne);
    s->gk = zalloc(nd);
    s->gv = zalloc(ne);
    s->s0 = zalloc(de);
    s->go = zalloc(ne);
    s->gsN = zalloc(de);
    s->o = zalloc(ne);
    s->sN = zalloc(de);
    s->dq = zalloc(nd);
    s->dk = zalloc(nd);
    s->dv = zalloc(ne);
    s->dgk = zalloc(nd);
    s->dgv = zalloc(ne);
    s->ds0 = zalloc(de);
}

static void seqbuf_free(seqbuf_t *s) {
    double **all[] = {&s->q, &s->k,  &s->v,  &s->gk, &s->gv, &s->s0,  &s->go,  &s->gsN,
                      &s->o, &s->sN, &s->dq, &s->dk, &s->dv, &s->dgk, &s->dgv, &s->ds0};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(*all[i]);
}

/* The key-side log decay of token t (every kind as per-channel). */
static void gather_gk(const fz_call_t *c, int64_t b, int64_t h, int64_t t0, int64_t len, double *gk) {
    const int64_t D = c->p.dim_qk;
    for (int64_t t = 0; t < len; t++)
        for (int64_t d = 0; d < D; d++) {
            double g = 0.0;
            switch (c->p.decay) {
            case LA_DECAY_SCALAR_HEAD: g = before(c, FZ_LD, 0, h, 0, 0); break;
            case LA_DECAY_SCALAR_TOKEN: g = before(c, FZ_LD, b, h, t0 + t, 0); break;
            case LA_DECAY_VECTOR_K:
            case LA_DECAY_VECTOR_KV: g = before(c, FZ_LD, b, h, t0 + t, d); break;
            default: break;
            }
            gk[t * D + d] = g;
        }
}

/* One (sequence, head) into the logical-order reference arrays. */
static void reference_one(const fz_call_t *c, int64_t s, int64_t h, seqbuf_t *w, refs_t *r) {
    const la_problem_t *p = &c->p;
    const int64_t H = p->heads, N = p->seqlen, D = p->dim_qk, E = p->dim_v, DE = D * E;
    const int packed = p->cu_seqlens != NULL;
    const int64_t b = packed ? 0 : s, t0 = packed ? c->cu[s] : 0;
    const int64_t len = packed ? c->cu[s + 1] - c->cu[s] : N;
    const int bwd = c->op == LA_OP_BACKWARD || c->op == LA_OP_STATE_BACKWARD;
    const int has_gk = p->decay != LA_DECAY_NONE, has_gv = p->decay == LA_DECAY_VECTOR_KV;
    const int has_s0 = present(c, FZ_S0), has_dsN = bwd && present(c, FZ_DSN);
    const int64_t st = (s * H + h) * DE;
    if (has_s0) gather_rows(c, FZ_S0, s, h, 0, D, w->s0);
    if (has_dsN) gather_rows(c, FZ_DSN, s, h, 0, D, w->gsN);
    if (len == 0) { /* empty sequence: the state passes through, and its gradient */
        for (int64_t i = 0; i < DE; i++) {
            r->sN[st + i] = has_s0 ? w->s0[i] : 0.0;
            if (bwd) r->ds0[st + i] = has_dsN ? w->gsN[i] : 0.0;
        }
        return;
    }
    if (c->op != LA_OP_STATE_FORWARD && c->op != LA_OP_STATE_BACKWARD) gather_rows(c, FZ_Q, b, h, t0, len, w->q);
    else memset(w->q, 0, (size_t)(len * D) * sizeof(double));
    gather_rows(c, FZ_K, b, h, t0, len, w->k);
    gather_rows(c, FZ_V, b, h, t0, len, w->v);
    if (has_gk) gather_gk(c, b, h, t0, len, w->gk);
    if (has_gv) gather_rows(c, FZ_LDV, b, h, t0, len, w->gv);
    const double *gk = has_gk ? w->gk : NULL, *gv = has_gv ? w->gv : NULL, *s0 = has_s0 ? w->s0 : NULL;
    ref_forward_recurrent(len, (int)D, (int)E, p->scale, w->q, w->k, w->v, gk, gv, s0, w->o, w->sN);
    memcpy(r->sN + st, w->sN, (size_t)DE * sizeof(double));
    const int64_t row0 = (b * H + h) * N + t0;
    for (int64_t t = 0; t < len; t++)
        for (int64_t e = 0; e < E; e++) r->o[(row0 + t) * E + e] = w->o[t * E + e];
    if (!bwd) return;
    const int has_do = c->op == LA_OP_BACKWARD;
    if (has_do) gather_rows(c, FZ_DO, b, h, t0, len, w->go);
    ref_backward(len, (int)D, (int)E, p->scale, w->q, w->k, w->v, gk, gv, s0, has_do ? w->go : NULL,
                 has_dsN ? w->gsN : NULL, w->dq, w->dk, w->dv, has_gk ? w->dgk : NULL, has_gv ? w->dgv : NULL, w->ds0);
    memcpy(r->ds0 + st, w->ds0, (size_t)DE * sizeof(double));
    for (int64_t t = 0; t < len; t++) {
        const int64_t row = row0 + t;
        double rowsum = 0, rowsc = 0;
        for (int64_t d = 0; d < D; d++) {
            const int64_t i = t * D + d;
            const double sc = fabs(w->q[i] * w->dq[i]) + fabs(w->k[i] * w->dk[i]);
            r->dq[row * D + d] = w->dq[i];
            r->dk[row * D + d] = w->dk[i];
            if (has_gk) {
                rowsum += w->dgk[i];
                rowsc += sc;
            }
            if (p->decay >= LA_DECAY_VECTOR_K) {
                r->dld[row * D + d] = w->dgk[i];
                r->dld_sc[row * D + d] = sc;
            }
        }
        for (int64_t e = 0; e < E; e++) {
            const int64_t i = t * E + e;
            r->dv[row * E + e] = w->dv[i];
            if (has_gv) {
                r->dldv[row * E + e] = w->dgv[i];
                r->dldv_sc[row * E + e] = fabs(w->o[i] * (has_do ? w->go[i] : 0.0)) + fabs(w->v[i] * w->dv[i]);
            }
        }
        if (p->decay == LA_DECAY_SCALAR_HEAD) {
            r->dld[h] += rowsum;
            r->dld_sc[h] += rowsc;
        }
        if (p->decay == LA_DECAY_SCALAR_TOKEN) {
            r->dld[row] = rowsum;
            r->dld_sc[row] = rowsc;
        }
    }
}

int fz_compare_reference(fz_ctx_t *x, const fz_call_t *c, la_backend_t backend) {
    const la_problem_t *p = &c->p;
    const int64_t B = p->batch, H = p->heads, N = p->seqlen, D = p->dim_qk, E = p->dim_v;
    const int64_t tokD = B * H * N * D, tokE = B * H * N * E, states = c->S * H * D * E;
    int64_t maxlen = 1;
    for (int64_t s = 0; s < c->S; s++) {
        int64_t len = p->cu_seqlens ? c->cu[s + 1] - c->cu[s] : N;
        if (len > maxlen) maxlen = len;
    }
    /* d_ld: [H] for SCALAR_HEAD (even when N = 0), else at most [B,H,N,D] */
    refs_t r = {zalloc(tokE),     zalloc(states),   zalloc(tokD), zalloc(tokD), zalloc(tokE),
                zalloc(tokD + H), zalloc(tokD + H), zalloc(tokE), zalloc(tokE), zalloc(states)};
    seqbuf_t w;
    seqbuf_alloc(&w, maxlen, D, E);
    for (int64_t s = 0; s < c->S; s++)
        for (int64_t h = 0; h < H; h++) reference_one(c, s, h, &w, &r);
    seqbuf_free(&w);

    const tolset_t *tol = tolerances(c, backend);
    const int before_fails = x->failures;
    switch (c->op) {
    case LA_OP_FORWARD:
    case LA_OP_DECODE:
        compare(x, c, FZ_O, r.o, NULL, tol->o_rel, tol->o_elem);
        /* fall through */
    case LA_OP_STATE_FORWARD:
        if (present(c, FZ_SN)) compare(x, c, FZ_SN, r.sN, NULL, tol->s_rel, tol->s_elem);
        break;
    case LA_OP_BACKWARD:
    case LA_OP_STATE_BACKWARD:
        if (c->op == LA_OP_BACKWARD) compare(x, c, FZ_DQ, r.dq, NULL, tol->g_rel, tol->g_elem);
        compare(x, c, FZ_DK, r.dk, NULL, tol->g_rel, tol->g_elem);
        compare(x, c, FZ_DV, r.dv, NULL, tol->g_rel, tol->g_elem);
        if (present(c, FZ_DLD)) compare(x, c, FZ_DLD, r.dld, r.dld_sc, tol->d_rel, tol->d_elem);
        if (present(c, FZ_DLDV)) compare(x, c, FZ_DLDV, r.dldv, r.dldv_sc, tol->d_rel, tol->d_elem);
        if (present(c, FZ_DS0)) compare(x, c, FZ_DS0, r.ds0, NULL, tol->ds_rel, tol->ds_elem);
        break;
    }
    double **all[] = {&r.o, &r.sN, &r.dq, &r.dk, &r.dv, &r.dld, &r.dld_sc, &r.dldv, &r.dldv_sc, &r.ds0};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(*all[i]);
    return x->failures == before_fails;
}
