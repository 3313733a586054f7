/*
 * reference.c - the fp64 ground truth (see reference.h for the contract).
 *
 * Three deliberately plain implementations of one (sequence, head):
 *
 *   ref_forward_recurrent  the token recurrence, exactly as the header of
 *                          lightning_attn.h writes it;
 *   ref_forward_quadratic  the closed form, summed pair by pair.  It shares
 *                          no code and no summation order with the
 *                          recurrence, so agreement between the two catches
 *                          decay-index and state-convention mistakes;
 *   ref_backward           reverse-mode gradients by the reverse recurrence,
 *                          with states recomputed from sqrt(N) checkpoints.
 *
 * Nothing here is tuned: clarity over speed.  Scratch memory comes from
 * malloc and is freed before returning.  These functions return void, so an
 * allocation failure is reported on stderr and the outputs are left
 * untouched (callers poison their outputs, so a test notices).
 */
#include "reference.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* malloc of n doubles that says so when it fails (n == 0 still returns a
 * distinct pointer so "NULL" always means failure). */
static double *ref_alloc(size_t n, const char *who) {
    double *p = malloc((n ? n : 1) * sizeof(double));
    if (!p) fprintf(stderr, "%s: out of memory allocating %zu doubles; outputs left untouched\n", who, n);
    return p;
}

/* Sizes the reference accepts: N >= 0, D, E >= 1.  Anything else is a bug
 * in the caller; say so rather than reading out of bounds. */
static int ref_sizes_ok(int64_t N, int D, int E, const char *who) {
    if (N < 0 || D < 1 || E < 1) {
        fprintf(stderr, "%s: bad sizes N=%lld D=%d E=%d; outputs left untouched\n", who, (long long)N, D, E);
        return 0;
    }
    return 1;
}

/* The state entering token 0: s0, or zero when absent. */
static void ref_init_state(double *S, const double *s0, size_t DE) {
    if (s0) memcpy(S, s0, DE * sizeof(double));
    else memset(S, 0, DE * sizeof(double));
}

/* One token of the recurrence, in place:
 *     S <- diag(exp(gk_t)) S diag(exp(gv_t)) + k_t^T v_t.
 * gk_t / gv_t may be NULL (no decay on that side).  b is scratch of E. */
static void ref_state_step(double *S, int D, int E, const double *k_t, const double *v_t, const double *gk_t,
                           const double *gv_t, double *b) {
    for (int e = 0; e < E; e++) b[e] = gv_t ? exp(gv_t[e]) : 1.0;
    for (int d = 0; d < D; d++) {
        double a = gk_t ? exp(gk_t[d]) : 1.0;
        double *row = S + (size_t)d * E;
        for (int e = 0; e < E; e++) row[e] = a * row[e] * b[e] + k_t[d] * v_t[e];
    }
}

void ref_forward_recurrent(int64_t N, int D, int E, double scale, const double *q, const double *k, const double *v,
                           const double *gk, const double *gv, const double *s0, double *o, double *sN) {
    const char *who = "ref_forward_recurrent";
    if (!ref_sizes_ok(N, D, E, who)) return;
    size_t DE = (size_t)D * E;
    double *S = ref_alloc(DE, who);
    double *b = ref_alloc((size_t)E, who);
    if (!S || !b) {
        free(S);
        free(b);
        return;
    }

    ref_init_state(S, s0, DE);
    for (int64_t t = 0; t < N; t++) {
        ref_state_step(S, D, E, k + t * D, v + t * E, gk ? gk + t * D : NULL, gv ? gv + t * E : NULL, b);
        /* Inclusive state: o_t reads S_t, which already holds token t. */
        if (o) {
            const double *q_t = q + t * D;
            for (int e = 0; e < E; e++) {
                double acc = 0.0;
                for (int d = 0; d < D; d++) acc += q_t[d] * S[(size_t)d * E + e];
                o[t * E + e] = scale * acc;
            }
        }
    }
    /* The final state is S_{N-1}; for N == 0 that is the initial state. */
    if (sN) memcpy(sN, S, DE * sizeof(double));
    free(S);
    free(b);
}

/*
 * Closed form.  For output t and source m <= t the decay between them is
 * exp(sum_{m<r<=t} gk_r[d]) on key channel d and exp(sum_{m<r<=t} gv_r[e]) on
 * value channel e.  Walking m from t down to 0 and adding gk_m after using
 * pair (t, m) builds exactly those sums; taking them as differences of prefix
 * sums from 0 would cancel catastrophically at long N, and exponentiating a
 * prefix sum alone would underflow.
 *
 * The pair term factorises per output channel e:
 *     o_t[e] += [sum_d q_t[d] k_m[d] exp(Lk[d])] * v_m[e] exp(Lv[e]),
 * so the cost is O(N^2 (D + E)) whether or not gv is given (the bound in
 * reference.h, O(N^2 D E) with gv, is an upper bound).
 */
void ref_forward_quadratic(int64_t N, int D, int E, double scale, const double *q, const double *k, const double *v,
                           const double *gk, const double *gv, const double *s0, double *o, double *sN) {
    const char *who = "ref_forward_quadratic";
    if (!ref_sizes_ok(N, D, E, who)) return;
    double *Lk = ref_alloc((size_t)D, who); /* running log decay, key side */
    double *Lv = ref_alloc((size_t)E, who); /* running log decay, value side */
    double *ek = ref_alloc((size_t)D, who); /* exp(Lk) */
    double *ev = ref_alloc((size_t)E, who); /* exp(Lv) */
    if (!Lk || !Lv || !ek || !ev) {
        free(Lk);
        free(Lv);
        free(ek);
        free(ev);
        return;
    }

    if (o) {
        for (int64_t t = 0; t < N; t++) {
            const double *q_t = q + t * D;
            double *o_t = o + t * E;
            memset(o_t, 0, (size_t)E * sizeof(double));
            memset(Lk, 0, (size_t)D * sizeof(double));
            memset(Lv, 0, (size_t)E * sizeof(double));
            for (int64_t m = t; m >= 0; m--) {
                /* Here Lk = sum_{m<r<=t} gk_r, Lv likewise (empty for m == t). */
                const double *k_m = k + m * D;
                const double *v_m = v + m * E;
                double w = 0.0;
                for (int d = 0; d < D; d++) w += q_t[d] * k_m[d] * (gk ? exp(Lk[d]) : 1.0);
                for (int e = 0; e < E; e++) o_t[e] += w * v_m[e] * (gv ? exp(Lv[e]) : 1.0);
                if (gk)
                    for (int d = 0; d < D; d++) Lk[d] += gk[m * D + d];
                if (gv)
                    for (int e = 0; e < E; e++) Lv[e] += gv[m * E + e];
            }
            /* Now Lk = sum_{0<=r<=t} gk_r: the decay the initial state has
             * suffered by the time it is read at token t. */
            if (s0) {
                for (int d = 0; d < D; d++) ek[d] = exp(Lk[d]);
                for (int e = 0; e < E; e++) {
                    double acc = 0.0;
                    for (int d = 0; d < D; d++) acc += q_t[d] * ek[d] * s0[(size_t)d * E + e];
                    o_t[e] += acc * exp(Lv[e]);
                }
            }
            for (int e = 0; e < E; e++) o_t[e] *= scale;
        }
    }

    if (sN) {
        /* sN = sum_m exp(sum_{m<r<=N-1} gk) k_m^T v_m exp(sum_{m<r<=N-1} gv)
         *      + exp(sum_{r<=N-1} gk) s0 exp(sum_{r<=N-1} gv),
         * summed newest first (the recurrence sums oldest first). */
        memset(sN, 0, (size_t)D * E * sizeof(double));
        memset(Lk, 0, (size_t)D * sizeof(double));
        memset(Lv, 0, (size_t)E * sizeof(double));
        for (int64_t m = N - 1; m >= 0; m--) {
            const double *k_m = k + m * D;
            const double *v_m = v + m * E;
            for (int e = 0; e < E; e++) ev[e] = v_m[e] * exp(Lv[e]);
            for (int d = 0; d < D; d++) {
                double kd = k_m[d] * exp(Lk[d]);
                for (int e = 0; e < E; e++) sN[(size_t)d * E + e] += kd * ev[e];
            }
            if (gk)
                for (int d = 0; d < D; d++) Lk[d] += gk[m * D + d];
            if (gv)
                for (int e = 0; e < E; e++) Lv[e] += gv[m * E + e];
        }
        if (s0) {
            for (int d = 0; d < D; d++)
                for (int e = 0; e < E; e++) sN[(size_t)d * E + e] += exp(Lk[d]) * s0[(size_t)d * E + e] * exp(Lv[e]);
        }
    }
    free(Lk);
    free(Lv);
    free(ek);
    free(ev);
}

/*
 * Reverse recurrence.  With a_t = exp(gk_t), b_t = exp(gv_t) and dS the total
 * gradient reaching S_t (from o_t, from S_{t+1}, and dsN at t = N-1):
 *
 *     dS     += scale q_t^T d_o_t                      (o_t = scale q_t S_t)
 *     dq_t    = scale S_t d_o_t^T
 *     dk_t    = dS v_t^T,   dv_t = k_t dS
 *     dgk_t[d]= a_t[d] sum_e dS[d,e] S_{t-1}[d,e] b_t[e]
 *     dgv_t[e]= b_t[e] sum_d dS[d,e] a_t[d] S_{t-1}[d,e]
 *     dS     <- diag(a_t) dS diag(b_t)                 (now the gradient of S_{t-1})
 *
 * and ds0 is what reaches S_{-1}.  Each step needs S_t and S_{t-1}.  Storing
 * all N states costs O(N D E); inverting the decay to walk the states
 * backwards divides by numbers that underflow to 0.  So the forward pass
 * keeps the state entering every segment of ~sqrt(N) tokens, and the
 * backward walks the segments last to first, recomputing one segment's
 * states from its checkpoint: O(sqrt(N) D E) memory, two forward passes.
 */
void ref_backward(int64_t N, int D, int E, double scale, const double *q, const double *k, const double *v,
                  const double *gk, const double *gv, const double *s0, const double *d_o, const double *dsN,
                  double *dq, double *dk, double *dv, double *dgk, double *dgv, double *ds0) {
    const char *who = "ref_backward";
    if (!ref_sizes_ok(N, D, E, who)) return;
    size_t DE = (size_t)D * E;
    /* dgk / dgv are outputs only when their decay is given. */
    if (!gk) dgk = NULL;
    if (!gv) dgv = NULL;

    int64_t seg = 1;
    while (seg * seg < N) /* seg = ceil(sqrt(N)), no floating point */
        seg++;
    int64_t nseg = N > 0 ? (N + seg - 1) / seg : 0;

    double *ckpt = ref_alloc((size_t)nseg * DE, who);        /* S_{j*seg-1} */
    double *states = ref_alloc((size_t)(seg + 1) * DE, who); /* one segment */
    double *dS = ref_alloc(DE, who);
    double *a = ref_alloc((size_t)D, who);
    double *b = ref_alloc((size_t)E, who);
    if (!ckpt || !states || !dS || !a || !b) {
        free(ckpt);
        free(states);
        free(dS);
        free(a);
        free(b);
        return;
    }

    /* Forward pass, keeping the state that enters each segment. */
    ref_init_state(states, s0, DE);
    for (int64_t t = 0; t < N; t++) {
        if (t % seg == 0) memcpy(ckpt + (size_t)(t / seg) * DE, states, DE * sizeof(double));
        ref_state_step(states, D, E, k + t * D, v + t * E, gk ? gk + t * D : NULL, gv ? gv + t * E : NULL, b);
    }

    if (dsN) memcpy(dS, dsN, DE * sizeof(double));
    else memset(dS, 0, DE * sizeof(double));

    for (int64_t j = nseg - 1; j >= 0; j--) {
        int64_t start = j * seg;
        int64_t len = N - start < seg ? N - start : seg;
        /* states + i*DE holds S_{start-1+i}, i = 0 .. len. */
        memcpy(states, ckpt + (size_t)j * DE, DE * sizeof(double));
        for (int64_t i = 0; i < len; i++) {
            int64_t t = start + i;
            memcpy(states + (size_t)(i + 1) * DE, states + (size_t)i * DE, DE * sizeof(double));
            ref_state_step(states + (size_t)(i + 1) * DE, D, E, k + t * D, v + t * E, gk ? gk + t * D : NULL,
                           gv ? gv + t * E : NULL, b);
        }

        for (int64_t i = len - 1; i >= 0; i--) {
            int64_t t = start + i;
            const double *S_prev = states + (size_t)i * DE;
            const double *S_t = states + (size_t)(i + 1) * DE;
            const double *q_t = q + t * D, *k_t = k + t * D, *v_t = v + t * E;
            for (int d = 0; d < D; d++) a[d] = gk ? exp(gk[t * D + d]) : 1.0;
            for (int e = 0; e < E; e++) b[e] = gv ? exp(gv[t * E + e]) : 1.0;

            /* o_t reads S_t: its gradient joins dS before anything uses dS. */
            if (d_o) {
                const double *do_t = d_o + t * E;
                for (int d = 0; d < D; d++)
                    for (int e = 0; e < E; e++) dS[(size_t)d * E + e] += scale * q_t[d] * do_t[e];
            }
            if (dq) {
                for (int d = 0; d < D; d++) {
                    double acc = 0.0;
                    if (d_o)
                        for (int e = 0; e < E; e++) acc += S_t[(size_t)d * E + e] * d_o[t * E + e];
                    dq[t * D + d] = scale * acc;
                }
            }
            if (dk) {
                for (int d = 0; d < D; d++) {
                    double acc = 0.0;
                    for (int e = 0; e < E; e++) acc += dS[(size_t)d * E + e] * v_t[e];
                    dk[t * D + d] = acc;
                }
            }
            if (dv) {
                for (int e = 0; e < E; e++) {
                    double acc = 0.0;
                    for (int d = 0; d < D; d++) acc += dS[(size_t)d * E + e] * k_t[d];
                    dv[t * E + e] = acc;
                }
            }
            if (dgk) {
                for (int d = 0; d < D; d++) {
                    double acc = 0.0;
                    for (int e = 0; e < E; e++) acc += dS[(size_t)d * E + e] * S_prev[(size_t)d * E + e] * b[e];
                    dgk[t * D + d] = a[d] * acc;
                }
            }
            if (dgv) {
                for (int e = 0; e < E; e++) {
                    double acc = 0.0;
                    for (int d = 0; d < D; d++) acc += dS[(size_t)d * E + e] * a[d] * S_prev[(size_t)d * E + e];
                    dgv[t * E + e] = b[e] * acc;
                }
            }
            /* Through the decay to S_{t-1}. */
            for (int d = 0; d < D; d++)
                for (int e = 0; e < E; e++) dS[(size_t)d * E + e] *= a[d] * b[e];
        }
    }

    if (ds0) memcpy(ds0, dS, DE * sizeof(double));
    free(ckpt);
    free(states);
    free(dS);
    free(a);
    free(b);
}
