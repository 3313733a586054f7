/*
 * test_reference.c - checks the fp64 reference against itself and against
 * finite differences.  It is the base of the test pyramid, so it depends on
 * nothing but the reference and libm.
 *
 *  1. Forward: the token recurrence and the quadratic closed form are
 *     algebraically different computations, so agreement to ~1e-12 catches
 *     decay-index and state-convention mistakes.  Every decay kind, with and
 *     without an initial state, several (N, D, E) and decay extremes.
 *  2. A few exact facts: N = 0 (final state = initial state), a tiny case
 *     worked by hand, splitting a sequence with the state carried.
 *  3. Backward: every gradient against finite differences of the quadratic
 *     form (independent of the reverse recurrence), on the underlying
 *     parameter of each decay kind.
 *  4. The checks can fail: a deliberately wrong result, a NaN, an Inf, a
 *     decay shifted by one token and a wrong gradient must all be flagged.
 *
 * Every failure prints one line with the case's seed and parameters; the
 * last line is "N passed, M failed" and the exit code is 0 iff M == 0.
 */
#include "reference.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_PI 3.14159265358979323846 /* -std=c11 hides M_PI */

/* Tolerances (why these values: see rel_l2's users and compare_grad). */
#define FWD_TOL 1e-12   /* recurrence vs quadratic, relative L2 (seen: < 1e-13) */
#define FD_RTOL 1e-8    /* analytic vs 4-point finite differences, relative */
#define FD_FLOOR 100.0  /* ... plus this many eps * Lmag / h (see loss_magnitude) */
#define FD_STEP 0x1p-10 /* ~1e-3, a power of two (see fd_grad) */

/* ---- deterministic random numbers ------------------------------------------- */

typedef struct {
    uint64_t s;
} rng_t;

/* splitmix64: tiny, good enough, and the same on every platform. */
static uint64_t rng_next(rng_t *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(rng_t *r) { return (double)(rng_next(r) >> 11) * 0x1p-53; }

/* Standard normal by Box-Muller (one value per call: simplicity over speed).
 * 1 - u lies in (0, 1], so the log is finite. */
static double rng_normal(rng_t *r) {
    double u1 = 1.0 - rng_uniform(r);
    double u2 = rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * TEST_PI * u2);
}

/* A per-case seed: a hash of (group, index), so every case is reproducible
 * from the seed printed with its failure and cases do not share streams. */
static uint64_t case_seed(uint64_t group, uint64_t index) {
    rng_t r = {0x4C41524546ull ^ (group << 40) ^ index};
    return rng_next(&r);
}

/* log(sigmoid(x)) without overflow; always < 0. */
static double logsigmoid(double x) { return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)); }

/* ---- bookkeeping -------------------------------------------------------------- */

typedef struct {
    int passed, failed;
    double max_fwd_err;  /* largest recurrence-vs-quadratic error seen */
    double max_fd_err;   /* largest |fd - analytic| / allowed seen (fails above 1) */
    double max_fd_noise; /* largest |fd - an| / floor */
} tally_t;

static void tally(tally_t *T, int ok) {
    if (ok) T->passed++;
    else T->failed++;
}

static double *alloc_doubles(size_t n) {
    double *p = malloc((n ? n : 1) * sizeof(double));
    if (!p) {
        fprintf(stderr, "test_reference: out of memory (%zu doubles)\n", n);
        exit(2);
    }
    return p;
}

static void fill_normal(rng_t *r, double *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = rng_normal(r);
}

static void fill_nan(double *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

/* Relative L2 error of got against want, and the worst element.  Any
 * NaN/Inf in either makes the result non-finite (checked first, so a NaN can
 * never hide behind a comparison that is false for NaN). */
typedef struct {
    double err;
    int nonfinite;    /* 1 if any value is NaN or Inf */
    size_t worst;     /* index of the largest |got - want| (or first non-finite) */
    double got, want; /* values at worst */
} metric_t;

static metric_t rel_l2(const double *got, const double *want, size_t n) {
    metric_t m = {0.0, 0, 0, 0.0, 0.0};
    double num = 0.0, den = 0.0, worst = -1.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]) || !isfinite(want[i])) {
            m.nonfinite = 1;
            m.worst = i;
            m.got = got[i];
            m.want = want[i];
            m.err = NAN;
            return m;
        }
        double d = got[i] - want[i];
        num += d * d;
        den += want[i] * want[i];
        if (fabs(d) > worst) {
            worst = fabs(d);
            m.worst = i;
            m.got = got[i];
            m.want = want[i];
        }
    }
    /* want == 0 everywhere: fall back to the absolute error. */
    m.err = den > 0 ? sqrt(num / den) : sqrt(num);
    return m;
}

static int metric_ok(metric_t m, double tol) { return !m.nonfinite && m.err <= tol; }

static int check_close(tally_t *T, uint64_t seed, const char *ctx, const char *what, const double *got,
                       const double *want, size_t n, double tol) {
    metric_t m = rel_l2(got, want, n);
    int ok = metric_ok(m, tol);
    if (!m.nonfinite && m.err > T->max_fwd_err && tol > 0) T->max_fwd_err = m.err;
    if (!ok)
        printf("FAIL %s [%s] seed=0x%016llx: %srel L2 err %.3e (tol %.1e), worst [%zu] "
               "got %.17g want %.17g\n",
               what, ctx, (unsigned long long)seed, m.nonfinite ? "NON-FINITE value, " : "", m.err, tol, m.worst, m.got,
               m.want);
    tally(T, ok);
    return ok;
}

/* ---- cases -------------------------------------------------------------------- */

enum form { F_NONE, F_SCALAR_HEAD, F_SCALAR_TOKEN, F_VECTOR_K, F_VECTOR_KV, F_COUNT };
static const char *const form_name[F_COUNT] = {"none", "scalar-head", "scalar-token", "vector-k", "vector-kv"};

/* How log decays are drawn. */
enum gen { G_ZERO, G_TINY, G_STRONG, G_GATE_SHARP, G_GATE, G_GATE_SOFT, G_COUNT };
static const char *const gen_name[G_COUNT] = {
    "0", "-1e-6", "-20", "logsig(randn/0.1)", "logsig(randn)", "logsig(randn/10)"};

static double gen_value(rng_t *r, int gen) {
    switch (gen) {
    case G_ZERO: return 0.0;
    case G_TINY: return -1e-6;
    case G_STRONG: return -20.0;
    case G_GATE_SHARP: return logsigmoid(rng_normal(r) / 0.1);
    case G_GATE: return logsigmoid(rng_normal(r));
    default: return logsigmoid(rng_normal(r) / 10.0);
    }
}

/* One (sequence, head) problem.  The decay kinds are expressed through their
 * underlying parameter gp (1 value for scalar-head, N for scalar-token, N*D
 * for the vector kinds), expanded into the reference's per-channel gk. */
typedef struct {
    int64_t N;
    int D, E, form, gen, with_s0;
    double scale;
    double *q, *k, *v;
    double *gp; /* underlying key-side parameter (NULL for F_NONE) */
    size_t n_gp;
    double *gk;    /* expanded, or NULL */
    double *gv;    /* F_VECTOR_KV only */
    double *s0;    /* == s0buf when with_s0, else NULL */
    double *s0buf; /* the initial state, zeros when !with_s0 */
    char ctx[160];
} case_t;

static void expand_gk(case_t *c) {
    size_t N = (size_t)c->N, D = (size_t)c->D;
    for (size_t t = 0; t < N; t++)
        for (size_t d = 0; d < D; d++) {
            double g = 0.0;
            switch (c->form) {
            case F_SCALAR_HEAD: g = c->gp[0]; break;
            case F_SCALAR_TOKEN: g = c->gp[t]; break;
            case F_VECTOR_K:
            case F_VECTOR_KV: g = c->gp[t * D + d]; break;
            default: break;
            }
            if (c->gk) c->gk[t * D + d] = g;
        }
}

static void make_case(case_t *c, uint64_t seed, int form, int gen, int64_t N, int D, int E, int with_s0) {
    rng_t r = {seed};
    size_t n = (size_t)N;
    memset(c, 0, sizeof *c);
    c->N = N;
    c->D = D;
    c->E = E;
    c->form = form;
    c->gen = gen;
    c->with_s0 = with_s0;
    c->scale = 0.5 + rng_uniform(&r); /* never the default 1, so a lost scale shows */
    c->q = alloc_doubles(n * D);
    c->k = alloc_doubles(n * D);
    c->v = alloc_doubles(n * E);
    fill_normal(&r, c->q, n * D);
    fill_normal(&r, c->k, n * D);
    fill_normal(&r, c->v, n * E);
    c->s0buf = alloc_doubles((size_t)D * E);
    if (with_s0) {
        fill_normal(&r, c->s0buf, (size_t)D * E);
        c->s0 = c->s0buf;
    } else {
        memset(c->s0buf, 0, (size_t)D * E * sizeof(double));
    }
    c->n_gp = form == F_SCALAR_HEAD ? 1 : form == F_SCALAR_TOKEN ? n : form == F_NONE ? 0 : n * D;
    if (form != F_NONE) {
        c->gp = alloc_doubles(c->n_gp);
        for (size_t i = 0; i < c->n_gp; i++) c->gp[i] = gen_value(&r, gen);
        c->gk = alloc_doubles(n * D);
        expand_gk(c);
    }
    if (form == F_VECTOR_KV) {
        c->gv = alloc_doubles(n * E);
        for (size_t i = 0; i < n * (size_t)E; i++) c->gv[i] = gen_value(&r, gen);
    }
    snprintf(c->ctx, sizeof c->ctx, "decay=%s ld=%s N=%lld D=%d E=%d s0=%s scale=%.17g", form_name[form],
             form == F_NONE ? "-" : gen_name[gen], (long long)N, D, E, with_s0 ? "yes" : "no", c->scale);
}

static void free_case(case_t *c) {
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->gp);
    free(c->gk);
    free(c->gv);
    free(c->s0buf);
    memset(c, 0, sizeof *c);
}

/* ---- 1. recurrence vs quadratic --------------------------------------------- */

static void test_forward_agreement(tally_t *T) {
    static const int64_t Ns[] = {1, 2, 63, 64, 65, 200};
    static const int DEs[][2] = {{1, 1}, {5, 3}, {16, 16}, {48, 100}, {100, 48}, {64, 64}};
    uint64_t index = 0;
    for (int form = 0; form < F_COUNT; form++)
        for (int gen = 0; gen < (form == F_NONE ? 1 : G_COUNT); gen++) {
            /* A constant log decay gives the same gk array whether it comes
             * as scalar-head, scalar-token or vector-k (the reference sees
             * only gk), so it is run once, as scalar-head. */
            int constant = gen == G_ZERO || gen == G_TINY || gen == G_STRONG;
            if (constant && (form == F_SCALAR_TOKEN || form == F_VECTOR_K)) continue;
            for (int with_s0 = 0; with_s0 < 2; with_s0++)
                for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++)
                    for (size_t di = 0; di < sizeof DEs / sizeof DEs[0]; di++) {
                        uint64_t seed = case_seed(1, index++);
                        case_t c;
                        make_case(&c, seed, form, gen, Ns[ni], DEs[di][0], DEs[di][1], with_s0);
                        size_t no = (size_t)c.N * c.E, ns = (size_t)c.D * c.E;
                        double *o_r = alloc_doubles(no), *o_q = alloc_doubles(no);
                        double *s_r = alloc_doubles(ns), *s_q = alloc_doubles(ns);
                        /* Poison: an element an implementation forgets to write fails. */
                        fill_nan(o_r, no);
                        fill_nan(o_q, no);
                        fill_nan(s_r, ns);
                        fill_nan(s_q, ns);
                        ref_forward_recurrent(c.N, c.D, c.E, c.scale, c.q, c.k, c.v, c.gk, c.gv, c.s0, o_r, s_r);
                        ref_forward_quadratic(c.N, c.D, c.E, c.scale, c.q, c.k, c.v, c.gk, c.gv, c.s0, o_q, s_q);
                        check_close(T, seed, c.ctx, "fwd o recurrent-vs-quadratic", o_r, o_q, no, FWD_TOL);
                        check_close(T, seed, c.ctx, "fwd sN recurrent-vs-quadratic", s_r, s_q, ns, FWD_TOL);
                        free(o_r);
                        free(o_q);
                        free(s_r);
                        free(s_q);
                        free_case(&c);
                    }
        }
}

/* ---- 2. exact facts ------------------------------------------------------------ */

/* N = 0: the final state is the initial state (zero when absent), and the
 * gradient of the initial state is the gradient arriving at the final one. */
static void test_empty(tally_t *T) {
    for (int with_s0 = 0; with_s0 < 2; with_s0++) {
        uint64_t seed = case_seed(2, (uint64_t)with_s0);
        case_t c;
        make_case(&c, seed, F_VECTOR_KV, G_GATE, 0, 3, 4, with_s0);
        double s_r[12], s_q[12], ds0[12], dsN[12], ds0_null[12];
        rng_t r = {seed ^ 1};
        fill_normal(&r, dsN, 12);
        fill_nan(s_r, 12);
        fill_nan(s_q, 12);
        fill_nan(ds0, 12);
        fill_nan(ds0_null, 12);
        ref_forward_recurrent(0, 3, 4, c.scale, c.q, c.k, c.v, c.gk, c.gv, c.s0, NULL, s_r);
        ref_forward_quadratic(0, 3, 4, c.scale, c.q, c.k, c.v, c.gk, c.gv, c.s0, NULL, s_q);
        ref_backward(0, 3, 4, c.scale, c.q, c.k, c.v, c.gk, c.gv, c.s0, NULL, dsN, NULL, NULL, NULL, NULL, NULL, ds0);
        ref_backward(0, 3, 4, c.scale, c.q, c.k, c.v, c.gk, c.gv, c.s0, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                     ds0_null);
        double zeros[12] = {0};
        check_close(T, seed, c.ctx, "N=0 recurrent sN == s0", s_r, c.s0buf, 12, 0.0);
        check_close(T, seed, c.ctx, "N=0 quadratic sN == s0", s_q, c.s0buf, 12, 0.0);
        check_close(T, seed, c.ctx, "N=0 backward ds0 == dsN", ds0, dsN, 12, 0.0);
        check_close(T, seed, c.ctx, "N=0 backward ds0 == 0 without dsN", ds0_null, zeros, 12, 0.0);
        free_case(&c);
    }
}

/* N = 2, D = E = 1, both decays, initial state: the recurrence written out
 * by hand, so a convention shared by both implementations (say an exclusive
 * state) cannot pass unnoticed. */
static void test_by_hand(tally_t *T) {
    uint64_t seed = case_seed(3, 0);
    case_t c;
    make_case(&c, seed, F_VECTOR_KV, G_GATE, 2, 1, 1, 1);
    double a0 = exp(c.gk[0]), a1 = exp(c.gk[1]), b0 = exp(c.gv[0]), b1 = exp(c.gv[1]);
    double S0 = a0 * c.s0[0] * b0 + c.k[0] * c.v[0];
    double S1 = a1 * S0 * b1 + c.k[1] * c.v[1];
    double want_o[2] = {c.scale * c.q[0] * S0, c.scale * c.q[1] * S1};
    double o[2], sN[1];
    ref_forward_recurrent(2, 1, 1, c.scale, c.q, c.k, c.v, c.gk, c.gv, c.s0, o, sN);
    check_close(T, seed, c.ctx, "by hand: recurrent o", o, want_o, 2, 1e-15);
    check_close(T, seed, c.ctx, "by hand: recurrent sN", sN, &S1, 1, 1e-15);
    ref_forward_quadratic(2, 1, 1, c.scale, c.q, c.k, c.v, c.gk, c.gv, c.s0, o, sN);
    check_close(T, seed, c.ctx, "by hand: quadratic o", o, want_o, 2, 1e-15);
    check_close(T, seed, c.ctx, "by hand: quadratic sN", sN, &S1, 1, 1e-15);
    free_case(&c);
}

/* Running [0, m) and then [m, N) with the state carried must equal one run
 * over [0, N): the property the inclusive-state convention exists for. */
static void test_split(tally_t *T) {
    static const int64_t ms[] = {1, 31, 64};
    for (int form = 0; form < 2; form++) {
        void (*fwd)(int64_t, int, int, double, const double *, const double *, const double *, const double *,
                    const double *, const double *, double *, double *) =
            form == 0 ? ref_forward_recurrent : ref_forward_quadratic;
        for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
            uint64_t seed = case_seed(4, (uint64_t)(form * 10 + (int)mi));
            case_t c;
            make_case(&c, seed, F_VECTOR_KV, G_GATE_SOFT, 65, 7, 5, 1);
            int64_t m = ms[mi], N = c.N;
            int D = c.D, E = c.E;
            double *o_full = alloc_doubles((size_t)N * E), *o_split = alloc_doubles((size_t)N * E);
            double s_full[35], s_mid[35], s_split[35];
            fwd(N, D, E, c.scale, c.q, c.k, c.v, c.gk, c.gv, c.s0, o_full, s_full);
            fwd(m, D, E, c.scale, c.q, c.k, c.v, c.gk, c.gv, c.s0, o_split, s_mid);
            fwd(N - m, D, E, c.scale, c.q + m * D, c.k + m * D, c.v + m * E, c.gk + m * D, c.gv + m * E, s_mid,
                o_split + m * E, s_split);
            char ctx[220];
            snprintf(ctx, sizeof ctx, "%s %s split at %lld", c.ctx, form == 0 ? "recurrent" : "quadratic",
                     (long long)m);
            check_close(T, seed, ctx, "split o == full o", o_split, o_full, (size_t)N * E, FWD_TOL);
            check_close(T, seed, ctx, "split sN == full sN", s_split, s_full, 35, FWD_TOL);
            free(o_full);
            free(o_split);
            free_case(&c);
        }
    }
}

/* Output pointers may be NULL: asking for fewer outputs changes nothing. */
static void test_null_outputs(tally_t *T) {
    uint64_t seed = case_seed(5, 0);
    case_t c;
    make_case(&c, seed, F_VECTOR_KV, G_GATE, 11, 3, 4, 1);
    size_t N = (size_t)c.N, D = (size_t)c.D, E = (size_t)c.E;
    double *o = alloc_doubles(N * E), *o1 = alloc_doubles(N * E);
    double sN[12], sN1[12];
    for (int form = 0; form < 2; form++) {
        void (*fwd)(int64_t, int, int, double, const double *, const double *, const double *, const double *,
                    const double *, const double *, double *, double *) =
            form == 0 ? ref_forward_recurrent : ref_forward_quadratic;
        fwd(c.N, c.D, c.E, c.scale, c.q, c.k, c.v, c.gk, c.gv, c.s0, o, sN);
        fill_nan(o1, N * E);
        fill_nan(sN1, 12);
        fwd(c.N, c.D, c.E, c.scale, c.q, c.k, c.v, c.gk, c.gv, c.s0, o1, NULL);
        fwd(c.N, c.D, c.E, c.scale, c.q, c.k, c.v, c.gk, c.gv, c.s0, NULL, sN1);
        check_close(T, seed, c.ctx, form ? "quadratic o alone" : "recurrent o alone", o1, o, N * E, 0.0);
        check_close(T, seed, c.ctx, form ? "quadratic sN alone" : "recurrent sN alone", sN1, sN, 12, 0.0);
    }
    /* Backward: all six outputs at once, then each alone. */
    rng_t r = {seed ^ 7};
    double *d_o = alloc_doubles(N * E), dsN[12];
    fill_normal(&r, d_o, N * E);
    fill_normal(&r, dsN, 12);
    size_t sizes[6] = {N * D, N * D, N * E, N * D, N * E, D * E};
    static const char *const names[6] = {"dq", "dk", "dv", "dgk", "dgv", "ds0"};
    double *full[6], *alone[6];
    for (int i = 0; i < 6; i++) {
        full[i] = alloc_doubles(sizes[i]);
        alone[i] = alloc_doubles(sizes[i]);
        fill_nan(alone[i], sizes[i]);
    }
    ref_backward(c.N, c.D, c.E, c.scale, c.q, c.k, c.v, c.gk, c.gv, c.s0, d_o, dsN, full[0], full[1], full[2], full[3],
                 full[4], full[5]);
    for (int i = 0; i < 6; i++) {
        double *out[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
        out[i] = alone[i];
        ref_backward(c.N, c.D, c.E, c.scale, c.q, c.k, c.v, c.gk, c.gv, c.s0, d_o, dsN, out[0], out[1], out[2], out[3],
                     out[4], out[5]);
        char what[64];
        snprintf(what, sizeof what, "backward %s alone == with all outputs", names[i]);
        check_close(T, seed, c.ctx, what, alone[i], full[i], sizes[i], 0.0);
        free(full[i]);
        free(alone[i]);
    }
    free(d_o);
    free(o);
    free(o1);
    free_case(&c);
}

/* ---- 3. gradients vs finite differences ---------------------------------------- */

/* L = sum(o * d_o) + sum(sN * dsN), from the quadratic form (which shares
 * nothing with the reverse recurrence under test).  o / sN are scratch. */
static double loss(case_t *c, const double *d_o, const double *dsN, double *o, double *sN) {
    if (c->gk) expand_gk(c);
    ref_forward_quadratic(c->N, c->D, c->E, c->scale, c->q, c->k, c->v, c->gk, c->gv, c->s0, d_o ? o : NULL,
                          dsN ? sN : NULL);
    double L = 0.0;
    if (d_o)
        for (size_t i = 0; i < (size_t)c->N * c->E; i++) L += o[i] * d_o[i];
    if (dsN)
        for (size_t i = 0; i < (size_t)c->D * c->E; i++) L += sN[i] * dsN[i];
    return L;
}

/* Central difference dL/dp[i].  L is affine in each single element of q, k,
 * v and s0 (linear = 1), so (L(x+h) - L(x-h)) / (2h) is exact there up to
 * rounding.  L is smooth in the log decays, and there the fourth-order
 *     (L(x-2h) - 8 L(x-h) + 8 L(x+h) - L(x+2h)) / (12 h)
 * is used: with h ~ 1e-3 its h^4 truncation error is ~1e-13 relative, and
 * its rounding error (eps / h ~ 1e-13 of the sum of |terms|) is 1000x below
 * that of the plain central difference with h ~ 1e-6, which would force a
 * tolerance near 1e-6.  The caller shrinks h for a parameter that moves many exponents
 * at once (the scalar-head decay moves sum_{m<r<=t} by up to N h). */
static double fd_grad(case_t *c, double *p, size_t i, double h, int linear, const double *d_o, const double *dsN,
                      double *o, double *sN) {
    double x = p[i];
    p[i] = x + h;
    double f1 = loss(c, d_o, dsN, o, sN);
    p[i] = x - h;
    double fm1 = loss(c, d_o, dsN, o, sN);
    if (linear) {
        p[i] = x;
        return (f1 - fm1) / (2.0 * h);
    }
    p[i] = x + 2 * h;
    double f2 = loss(c, d_o, dsN, o, sN);
    p[i] = x - 2 * h;
    double fm2 = loss(c, d_o, dsN, o, sN);
    p[i] = x;
    /* Differences first: equal values then give exactly 0 (as -7f + 8f
     * would not, by one rounding). */
    return (8.0 * (f1 - fm1) - (f2 - fm2)) / (12.0 * h);
}

/* The finite-difference noise floor.  Each L evaluation carries a rounding
 * error of a few eps times the sum of |every term| of L, so the stencil
 * cannot resolve a derivative below ~eps * Lmag / h.  Lmag is L itself
 * evaluated on absolute values: every term of L is a product of inputs and
 * positive exponentials, so that sums |term| exactly. */
static double loss_magnitude(const case_t *c, const double *d_o, const double *dsN, double *o, double *sN) {
    size_t n = (size_t)c->N, D = (size_t)c->D, E = (size_t)c->E;
    case_t a = *c;
    double *bufs[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
    const double *src[6] = {c->q, c->k, c->v, c->s0buf, d_o, dsN};
    size_t len[6] = {n * D, n * D, n * E, D * E, n * E, D * E};
    for (int i = 0; i < 6; i++) {
        if (!src[i]) continue;
        bufs[i] = alloc_doubles(len[i]);
        for (size_t j = 0; j < len[i]; j++) bufs[i][j] = fabs(src[i][j]);
    }
    a.q = bufs[0];
    a.k = bufs[1];
    a.v = bufs[2];
    a.s0 = bufs[3];
    double L = loss(&a, bufs[4], bufs[5], o, sN);
    for (int i = 0; i < 6; i++) free(bufs[i]);
    return L;
}

/* Compare an analytic gradient with finite differences on the listed
 * elements: |fd - an| <= FD_RTOL |an| + FD_FLOOR floor, floor = eps Lmag / h
 * (see loss_magnitude).  Without the floor, gradients that are genuinely
 * tiny (the decay gradient at ld = -20 is ~exp(-20) of the rest) would be
 * compared with pure rounding noise.  NaN/Inf anywhere fails.  Returns the
 * worst |fd - an| / allowed (ok iff <= 1) and where it is. */
static int compare_grad(const double *an, const double *fd, const size_t *idx, size_t n_idx, double floor,
                        double *worst_ratio, size_t *worst_at) {
    *worst_ratio = 0.0;
    *worst_at = idx[0];
    for (size_t j = 0; j < n_idx; j++)
        if (!isfinite(an[j]) || !isfinite(fd[j])) {
            *worst_at = idx[j];
            *worst_ratio = NAN;
            return 0;
        }
    for (size_t j = 0; j < n_idx; j++) {
        double allowed = FD_RTOL * fabs(an[j]) + FD_FLOOR * floor;
        double diff = fabs(fd[j] - an[j]);
        /* allowed == 0 (everything exactly zero): only exact agreement passes. */
        double ratio = allowed > 0 ? diff / allowed : (diff > 0 ? INFINITY : 0.0);
        if (ratio > *worst_ratio) {
            *worst_ratio = ratio;
            *worst_at = idx[j];
        }
    }
    return *worst_ratio <= 1.0;
}

/* Which elements of a tensor of n to check: all of them, or max_checks
 * distinct random ones. */
static size_t pick_indices(rng_t *r, size_t n, size_t max_checks, size_t *idx) {
    if (n <= max_checks) {
        for (size_t i = 0; i < n; i++) idx[i] = i;
        return n;
    }
    size_t m = 0;
    while (m < max_checks) {
        size_t cand = (size_t)(rng_uniform(r) * (double)n);
        int dup = 0;
        for (size_t j = 0; j < m; j++) dup |= idx[j] == cand;
        if (!dup) idx[m++] = cand;
    }
    return m;
}

enum { P_Q, P_K, P_V, P_S0, P_GK, P_GV, P_COUNT };
static const char *const param_name[P_COUNT] = {"dq", "dk", "dv", "ds0", "dgk", "dgv"};

/* One gradient case.  do_mode: 0 = d_o and dsN, 1 = dsN NULL, 2 = d_o NULL.
 * self_check: perturb one analytic dq element by 1e-6 of the tensor's
 * largest and require the comparison to flag it (counted as one check). */
static void fd_case(tally_t *T, uint64_t seed, int form, int gen, int64_t N, int D, int E, int with_s0, int do_mode,
                    size_t max_checks, int self_check) {
    case_t c;
    make_case(&c, seed, form, gen, N, D, E, with_s0);
    rng_t r = {seed ^ 0xD0D0ull};
    size_t n = (size_t)N, DE = (size_t)D * E;
    double *d_o = NULL, *dsN = NULL;
    if (do_mode != 2) {
        d_o = alloc_doubles(n * E);
        fill_normal(&r, d_o, n * E);
    }
    if (do_mode != 1) {
        dsN = alloc_doubles(DE);
        fill_normal(&r, dsN, DE);
    }
    double *o = alloc_doubles(n * E), *sN = alloc_doubles(DE);

    /* Analytic gradients, outputs poisoned so anything unwritten is NaN. */
    size_t sizes[P_COUNT] = {n * D, n * D, n * E, DE, n * D, n * E};
    double *an[P_COUNT];
    for (int p = 0; p < P_COUNT; p++) {
        an[p] = alloc_doubles(sizes[p]);
        fill_nan(an[p], sizes[p]);
    }
    /* dgk / dgv are passed even when their decay is absent: the reference
     * must then leave them alone (checked below). */
    ref_backward(c.N, c.D, c.E, c.scale, c.q, c.k, c.v, c.gk, c.gv, c.s0, d_o, dsN, an[P_Q], an[P_K], an[P_V], an[P_GK],
                 an[P_GV], an[P_S0]);

    char ctx[256];
    snprintf(ctx, sizeof ctx, "%s d_o=%s dsN=%s", c.ctx, d_o ? "yes" : "NULL", dsN ? "yes" : "NULL");
    double Lmag = loss_magnitude(&c, d_o, dsN, o, sN);

    for (int p = 0; p < P_COUNT; p++) {
        double *param = NULL;
        size_t n_param = 0;
        double h = FD_STEP;
        switch (p) {
        case P_Q:
            param = c.q;
            n_param = n * D;
            break;
        case P_K:
            param = c.k;
            n_param = n * D;
            break;
        case P_V:
            param = c.v;
            n_param = n * E;
            break;
        case P_S0:
            param = c.s0buf;
            n_param = DE;
            break;
        case P_GK:
            param = c.gp;
            n_param = c.n_gp;
            if (form == F_SCALAR_HEAD) h = FD_STEP / (double)(N > 0 ? N : 1);
            break;
        case P_GV:
            param = c.gv;
            n_param = c.gv ? n * E : 0;
            break;
        default: break;
        }
        if (!param || n_param == 0) continue;

        /* The analytic gradient of the underlying parameter. */
        double *an_p = alloc_doubles(n_param);
        for (size_t i = 0; i < n_param; i++) an_p[i] = 0.0;
        if (p == P_GK && form == F_SCALAR_HEAD) {
            for (size_t i = 0; i < n * D; i++) an_p[0] += an[P_GK][i];
        } else if (p == P_GK && form == F_SCALAR_TOKEN) {
            for (size_t t = 0; t < n; t++)
                for (size_t d = 0; d < (size_t)D; d++) an_p[t] += an[P_GK][t * D + d];
        } else {
            memcpy(an_p, an[p], n_param * sizeof(double));
        }

        size_t *idx = malloc(n_param * sizeof(size_t));
        double *an_sel = alloc_doubles(n_param), *fd_sel = alloc_doubles(n_param);
        if (!idx) {
            fprintf(stderr, "test_reference: out of memory\n");
            exit(2);
        }
        size_t n_idx = pick_indices(&r, n_param, max_checks, idx);
        /* s0 is perturbed even when the case has none: ds0 is the gradient
         * at a zero initial state, and the buffer holds zeros. */
        double *saved_s0 = c.s0;
        if (p == P_S0) c.s0 = c.s0buf;
        for (size_t j = 0; j < n_idx; j++) {
            an_sel[j] = an_p[idx[j]];
            fd_sel[j] = fd_grad(&c, param, idx[j], h, p < P_GK, d_o, dsN, o, sN);
        }
        c.s0 = saved_s0;

        double floor = DBL_EPSILON * Lmag / h;
        for (size_t j = 0; j < n_idx; j++) {
            double diff = fabs(fd_sel[j] - an_sel[j]);
            if (!isfinite(diff)) continue;
            if (floor > 0 && diff / floor > T->max_fd_noise) T->max_fd_noise = diff / floor;
        }
        double ratio;
        size_t at;
        int ok = compare_grad(an_sel, fd_sel, idx, n_idx, floor, &ratio, &at);
        if (isfinite(ratio) && ratio > T->max_fd_err) T->max_fd_err = ratio;
        if (!ok) {
            size_t j = 0;
            while (idx[j] != at) j++;
            printf("FAIL grad %s vs finite differences [%s] seed=0x%016llx: |fd - analytic| is "
                   "%.3g x allowed (%.0e relative + %.0f x noise floor %.3e) at [%zu]: "
                   "analytic %.17g fd %.17g\n",
                   param_name[p], ctx, (unsigned long long)seed, ratio, FD_RTOL, FD_FLOOR, floor, at, an_sel[j],
                   fd_sel[j]);
        }
        tally(T, ok);

        if (self_check && p == P_Q && ok) {
            /* A wrong gradient must be flagged: move the largest-|an|
             * element by 1e-6 of itself (100x the tolerance). */
            size_t jmax = 0;
            for (size_t j = 1; j < n_idx; j++)
                if (fabs(an_sel[j]) > fabs(an_sel[jmax])) jmax = j;
            an_sel[jmax] *= 1.0 + 1e-6;
            int flagged = !compare_grad(an_sel, fd_sel, idx, n_idx, floor, &ratio, &at);
            if (!flagged)
                printf("FAIL self-check: a dq element off by 1e-6 relative was not flagged [%s] "
                       "seed=0x%016llx (err %.3e)\n",
                       ctx, (unsigned long long)seed, ratio);
            tally(T, flagged);
        }
        free(idx);
        free(an_sel);
        free(fd_sel);
        free(an_p);
    }

    /* Nothing the call should not write was written; dgk/dgv are outputs
     * only when their decay is given, and must be left alone otherwise. */
    for (int p = P_GK; p <= P_GV; p++) {
        int given = p == P_GK ? c.gk != NULL : c.gv != NULL;
        if (given) continue;
        int untouched = 1;
        for (size_t i = 0; i < sizes[p]; i++) untouched &= isnan(an[p][i]);
        if (!untouched)
            printf("FAIL %s written although its decay is absent [%s] seed=0x%016llx\n", param_name[p], ctx,
                   (unsigned long long)seed);
        tally(T, untouched);
    }

    for (int p = 0; p < P_COUNT; p++) free(an[p]);
    free(d_o);
    free(dsN);
    free(o);
    free(sN);
    free_case(&c);
}

static void test_gradients(tally_t *T) {
    /* Small shapes.  N = 5, 17 leave a ragged last checkpoint segment
     * (segment = ceil(sqrt(N))); 20 does not.  Every element is checked up
     * to N = 5; above, 24 random elements per tensor (all of them would
     * quadruple the run time and add little: a wrong index or a missing
     * term moves many elements at once). */
    static const int shapes[][3] = {{1, 1, 1}, {2, 2, 3}, {5, 3, 2}, {17, 4, 6}, {20, 6, 5}};
    static const int gens[] = {G_GATE, G_GATE_SHARP, G_GATE_SOFT, G_STRONG, G_ZERO};
    uint64_t index = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int form = 0; form < F_COUNT; form++)
            for (size_t gi = 0; gi < (form == F_NONE ? 1 : sizeof gens / sizeof gens[0]); gi++)
                for (int with_s0 = 0; with_s0 < 2; with_s0++)
                    for (int do_mode = 0; do_mode < 3; do_mode++) {
                        uint64_t seed = case_seed(6, index++);
                        fd_case(T, seed, form, gens[gi], shapes[si][0], shapes[si][1], shapes[si][2], with_s0, do_mode,
                                shapes[si][0] <= 5 ? SIZE_MAX : 24,
                                si == 4 && form == F_VECTOR_KV && gi == 0 && with_s0 && !do_mode);
                    }

    /* Longer sequences, a random subset of elements: many checkpoint
     * segments (N = 64 is a perfect square, 200 leaves a ragged segment). */
    static const int longs[][3] = {{64, 3, 2}, {200, 2, 3}};
    for (size_t li = 0; li < sizeof longs / sizeof longs[0]; li++)
        for (int form = 1; form < F_COUNT; form++) {
            uint64_t seed = case_seed(7, index++);
            fd_case(T, seed, form, G_GATE_SOFT, longs[li][0], longs[li][1], longs[li][2], 1, 0, 12, 0);
        }

    /* d_o and dsN both NULL: every gradient is exactly zero. */
    {
        uint64_t seed = case_seed(8, 0);
        case_t c;
        make_case(&c, seed, F_VECTOR_KV, G_GATE, 9, 3, 2, 1);
        size_t sizes[P_COUNT] = {27, 27, 18, 6, 27, 18};
        double *g[P_COUNT];
        for (int p = 0; p < P_COUNT; p++) {
            g[p] = alloc_doubles(sizes[p]);
            fill_nan(g[p], sizes[p]);
        }
        ref_backward(c.N, c.D, c.E, c.scale, c.q, c.k, c.v, c.gk, c.gv, c.s0, NULL, NULL, g[P_Q], g[P_K], g[P_V],
                     g[P_GK], g[P_GV], g[P_S0]);
        double zeros[27] = {0};
        for (int p = 0; p < P_COUNT; p++) {
            char what[64];
            snprintf(what, sizeof what, "%s == 0 without d_o and dsN", param_name[p]);
            check_close(T, seed, c.ctx, what, g[p], zeros, sizes[p], 0.0);
            free(g[p]);
        }
        free_case(&c);
    }
}

/* ---- 4. the checks can fail ----------------------------------------------------- */

static void test_self_checks(tally_t *T) {
    uint64_t seed = case_seed(9, 0);
    case_t c;
    make_case(&c, seed, F_VECTOR_KV, G_GATE, 65, 16, 16, 1);
    size_t no = (size_t)c.N * c.E;
    double *o_r = alloc_doubles(no), *o_q = alloc_doubles(no), *bad = alloc_doubles(no);
    ref_forward_recurrent(c.N, c.D, c.E, c.scale, c.q, c.k, c.v, c.gk, c.gv, c.s0, o_r, NULL);
    ref_forward_quadratic(c.N, c.D, c.E, c.scale, c.q, c.k, c.v, c.gk, c.gv, c.s0, o_q, NULL);

    /* The correct result passes (otherwise the detections below prove nothing). */
    int ok = metric_ok(rel_l2(o_r, o_q, no), FWD_TOL);
    if (!ok) printf("FAIL self-check baseline [%s] seed=0x%016llx\n", c.ctx, (unsigned long long)seed);
    tally(T, ok);

    /* One element off by 1e-9 of the norm of o. */
    double norm = 0.0;
    for (size_t i = 0; i < no; i++) norm += o_q[i] * o_q[i];
    norm = sqrt(norm);
    memcpy(bad, o_r, no * sizeof(double));
    bad[no / 3] += 1e-9 * norm;
    metric_t m = rel_l2(bad, o_q, no);
    ok = !metric_ok(m, FWD_TOL);
    if (!ok)
        printf("FAIL self-check: o off by 1e-9 of its norm not flagged (err %.3e) seed=0x%016llx\n", m.err,
               (unsigned long long)seed);
    tally(T, ok);

    /* NaN and Inf, in the result and in the expected value. */
    const double poison[2] = {NAN, INFINITY};
    for (int side = 0; side < 2; side++)
        for (int pi = 0; pi < 2; pi++) {
            memcpy(bad, o_r, no * sizeof(double));
            bad[no - 1] = pi ? -poison[pi] : poison[pi];
            m = side ? rel_l2(o_q, bad, no) : rel_l2(bad, o_q, no);
            ok = !metric_ok(m, FWD_TOL) && m.nonfinite;
            if (!ok)
                printf("FAIL self-check: %s in the %s not flagged seed=0x%016llx\n", pi ? "-Inf" : "NaN",
                       side ? "expected value" : "result", (unsigned long long)seed);
            tally(T, ok);
        }

    /* A decay applied one token late (gk_{t-1} in place of gk_t), the
     * classic index mistake, must not pass the recurrence-vs-quadratic check. */
    double *gk_late = alloc_doubles((size_t)c.N * c.D);
    for (int64_t t = 0; t < c.N; t++)
        for (int d = 0; d < c.D; d++) gk_late[t * c.D + d] = t > 0 ? c.gk[(t - 1) * c.D + d] : c.gk[d];
    ref_forward_quadratic(c.N, c.D, c.E, c.scale, c.q, c.k, c.v, gk_late, c.gv, c.s0, bad, NULL);
    m = rel_l2(o_r, bad, no);
    ok = !metric_ok(m, FWD_TOL);
    if (!ok)
        printf("FAIL self-check: decay shifted by one token not flagged (err %.3e) seed=0x%016llx\n", m.err,
               (unsigned long long)seed);
    tally(T, ok);

    free(gk_late);
    free(o_r);
    free(o_q);
    free(bad);
    free_case(&c);
}

int main(void) {
    tally_t T = {0, 0, 0.0, 0.0, 0.0};
    test_self_checks(&T);
    test_empty(&T);
    test_by_hand(&T);
    test_split(&T);
    test_null_outputs(&T);
    T.max_fwd_err = 0.0;
    test_forward_agreement(&T);
    printf("recurrence vs quadratic: largest rel L2 error %.3e (tol %.0e)\n", T.max_fwd_err, FWD_TOL);
    test_gradients(&T);
    printf("gradients vs finite differences: worst %.3g of the allowed error; largest error "
           "%.3g x the noise floor eps*Lmag/h\n",
           T.max_fd_err, T.max_fd_noise);
    printf("%d passed, %d failed\n", T.passed, T.failed);
    return T.failed == 0 ? 0 : 1;
}
