/*
 * dev/cpu_vector_check.c - playground for src/cpu/cpu_vector.c.
 *
 * Builds cpu_seq_t views over contiguous f32 buffers, runs the vector-decay
 * kernels and compares them with an fp64 token-by-token recurrence (its own,
 * below; with -DUSE_REF also src/reference/reference.c's ref_forward_recurrent
 * and ref_backward), over a grid of lengths, head dims, both kinds, optional
 * tensors and gate distributions.  Also checks: NaN/Inf, a guard word after
 * the workspace, state-only passes, a bit-identical second backward.
 * "time [reps [N D E]]" times one head, single thread (default N = 8192, D = E = 128).
 *
 * Build (from /work/main):
 *   gcc -std=c11 -O3 -Wall -Wextra -Wshadow -Iinclude -Isrc -Isrc/cpu -Isrc/reference \
 *       dev/cpu_vector_check.c src/cpu/cpu_vector.c src/cpu/tile_io.c src/cpu/gemm.c \
 *       [-DUSE_REF src/reference/reference.c] -lm -o /tmp/build-vector/check
 *   (-DNAIVE_GEMM instead of gemm.c: a naive fp32 gemm defined here.)
 * Run: check [quick|full|time [reps [N D E]]|case N D E kind gate_index]
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu_kernels.h"
#include "gemm.h"
#ifdef USE_REF
#include "reference.h"
#endif

#ifdef NAIVE_GEMM
void cpu_gemm_nn(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc, int beta) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float s = beta ? C[m * ldc + n] : 0.0f;
            for (int k = 0; k < K; k++) s += A[m * lda + k] * B[k * ldb + n];
            C[m * ldc + n] = s;
        }
}
void cpu_gemm_tn(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc, int beta) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float s = beta ? C[m * ldc + n] : 0.0f;
            for (int k = 0; k < K; k++) s += A[k * lda + m] * B[k * ldb + n];
            C[m * ldc + n] = s;
        }
}
void cpu_gemm_nt(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc, int beta) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float s = beta ? C[m * ldc + n] : 0.0f;
            for (int k = 0; k < K; k++) s += A[m * lda + k] * B[n * ldb + k];
            C[m * ldc + n] = s;
        }
}
#endif

/* ---- random numbers ------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double urand(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) / 9007199254740992.0;
}
static double randn(void) { return sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand()); }

/* gate mode: tau > 0 -> logsigmoid(randn / tau); else the constant value */
typedef struct gate {
    const char *name;
    double tau, value;
} gate_t;

static float gate_sample(const gate_t *g) {
    if (g->tau > 0) {
        double x = randn() / g->tau;
        double ls = x > 0 ? -log1p(exp(-x)) : x - log1p(exp(x));
        return (float)ls;
    }
    return (float)g->value;
}

/* ---- fp64 recurrence ------------------------------------------------------------ */

/* Forward: o [N*E], sN [D*E]; gv may be NULL. */
static void rec_forward(int64_t N, int D, int E, double scale, const double *q, const double *k, const double *v,
                        const double *gk, const double *gv, const double *s0, double *o, double *sN) {
    double *S = sN;
    for (int i = 0; i < D * E; i++) S[i] = s0 ? s0[i] : 0.0;
    for (int64_t t = 0; t < N; t++) {
        for (int d = 0; d < D; d++)
            for (int e = 0; e < E; e++) {
                double a = exp(gk[t * D + d]) * (gv ? exp(gv[t * E + e]) : 1.0);
                S[d * E + e] = a * S[d * E + e] + k[t * D + d] * v[t * E + e];
            }
        for (int e = 0; e < E; e++) {
            double s = 0;
            for (int d = 0; d < D; d++) s += q[t * D + d] * S[d * E + e];
            o[t * E + e] = scale * s;
        }
    }
}

/* Backward by the reverse recurrence, all states stored. */
static void rec_backward(int64_t N, int D, int E, double scale, const double *q, const double *k, const double *v,
                         const double *gk, const double *gv, const double *s0, const double *dO, const double *dsN,
                         double *dq, double *dk, double *dv, double *dgk, double *dgv, double *ds0) {
    const size_t DE = (size_t)D * E;
    double *St = malloc((size_t)(N + 1) * DE * sizeof(double));
    double *dS = malloc(DE * sizeof(double));
    for (size_t i = 0; i < DE; i++) St[i] = s0 ? s0[i] : 0.0;
    for (int64_t t = 0; t < N; t++) {
        double *P = St + t * DE, *S = P + DE;
        for (int d = 0; d < D; d++)
            for (int e = 0; e < E; e++) {
                double a = exp(gk[t * D + d]) * (gv ? exp(gv[t * E + e]) : 1.0);
                S[d * E + e] = a * P[d * E + e] + k[t * D + d] * v[t * E + e];
            }
    }
    for (size_t i = 0; i < DE; i++) dS[i] = dsN ? dsN[i] : 0.0;
    for (int64_t t = N - 1; t >= 0; t--) {
        const double *P = St + t * DE, *S = P + DE;
        if (dO)
            for (int d = 0; d < D; d++)
                for (int e = 0; e < E; e++) dS[d * E + e] += scale * q[t * D + d] * dO[t * E + e];
        for (int d = 0; d < D; d++) {
            double sq = 0, sk = 0;
            for (int e = 0; e < E; e++) {
                sq += S[d * E + e] * (dO ? dO[t * E + e] : 0.0);
                sk += dS[d * E + e] * v[t * E + e];
            }
            dq[t * D + d] = scale * sq;
            dk[t * D + d] = sk;
        }
        for (int e = 0; e < E; e++) {
            double s = 0;
            for (int d = 0; d < D; d++) s += dS[d * E + e] * k[t * D + d];
            dv[t * E + e] = s;
        }
        for (int d = 0; d < D; d++) dgk[t * D + d] = 0;
        if (gv)
            for (int e = 0; e < E; e++) dgv[t * E + e] = 0;
        for (int d = 0; d < D; d++)
            for (int e = 0; e < E; e++) {
                double a = exp(gk[t * D + d]) * (gv ? exp(gv[t * E + e]) : 1.0);
                double c = a * P[d * E + e] * dS[d * E + e];
                dgk[t * D + d] += c;
                if (gv) dgv[t * E + e] += c;
                dS[d * E + e] *= a;
            }
    }
    for (size_t i = 0; i < DE; i++) ds0[i] = dS[i];
    free(St);
    free(dS);
}

/* ---- harness ------------------------------------------------------------------- */

typedef struct buf {
    float *f;
    double *d;
    int64_t n;
} buf_t;

static buf_t mk(int64_t n) {
    buf_t b;
    b.n = n;
    b.f = malloc((size_t)(n ? n : 1) * sizeof(float));
    b.d = malloc((size_t)(n ? n : 1) * sizeof(double));
    for (int64_t i = 0; i < n; i++) b.f[i] = NAN, b.d[i] = 0;
    return b;
}
static void fill_randn(buf_t *b) {
    for (int64_t i = 0; i < b->n; i++) b->f[i] = (float)randn(), b->d[i] = b->f[i];
}
static void fill_gate(buf_t *b, const gate_t *g) {
    for (int64_t i = 0; i < b->n; i++) b->f[i] = gate_sample(g), b->d[i] = b->f[i];
}
static void freeb(buf_t *b) {
    free(b->f);
    free(b->d);
}

static cpu_view_t view(const buf_t *b, int w) {
    cpu_view_t v = {(char *)b->f, LA_DTYPE_F32, w, 1};
    return v;
}
static cpu_view_t noview(void) {
    cpu_view_t v = {NULL, LA_DTYPE_F32, 0, 0};
    return v;
}
static cpu_state_view_t sview(const buf_t *b, int E) {
    cpu_state_view_t v = {b->f, E, 1};
    return v;
}
static cpu_state_view_t nosview(void) {
    cpu_state_view_t v = {NULL, 0, 0};
    return v;
}

/* relative L2 error of x against ref; -1 when x has NaN/Inf */
static double rel_err(const float *x, const double *ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) return -1.0;
        double d = x[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    if (n == 0) return 0.0;
    /* true values below fp32's range (e.g. exp(-20 N) at strong decay) cannot
     * be represented: measure those absolutely, against a 1e-30 floor */
    double floor2 = 1e-60 * (double)n;
    return sqrt(num / (den > floor2 ? den : floor2));
}

#define NQ 8
static const char *qname[NQ] = {"o", "sN", "dq", "dk", "dv", "dgk", "dgv", "ds0"};

static const double tol_scaled = 1e-6;

typedef struct stats {
    double worst[NQ], worst_scaled[NQ];
    char where[NQ][160];
    int cases, failures;
} stats_t;

/* Fails when the error is above tol both relative to the true values and
 * relative to the magnitude reference (the same recurrence on |inputs|):
 * a result that is a small difference of large terms (one dot product q.k
 * close to 0, say) is ill-conditioned, and fp32 can only promise accuracy
 * relative to the size of the terms there. */
static void note(stats_t *st, int qi, const float *x, const double *ref, const double *mag, int64_t n, const char *desc,
                 double tol) {
    double err = rel_err(x, ref, n), scaled = rel_err(x, ref, n);
    if (err >= 0) {
        double num = 0, den = 0;
        for (int64_t i = 0; i < n; i++) num += (x[i] - ref[i]) * (x[i] - ref[i]), den += mag[i] * mag[i];
        double floor2 = 1e-60 * (double)n; /* as in rel_err */
        scaled = sqrt(num / (den > floor2 ? den : floor2));
    }
    if (err < 0 || (err > tol && scaled > tol_scaled)) {
        st->failures++;
        if (st->failures <= 30)
            printf("  FAIL %-10s err %.3g (vs magnitudes %.3g)  %s\n", qname[qi], err, scaled, desc);
    }
    double e = err < 0 ? INFINITY : err;
    if (e > st->worst[qi] || !st->where[qi][0]) {
        st->worst[qi] = e > st->worst[qi] ? e : st->worst[qi];
        snprintf(st->where[qi], sizeof st->where[qi], "%s", desc);
    }
    if (scaled > st->worst_scaled[qi]) st->worst_scaled[qi] = scaled;
}

typedef struct tcase {
    int64_t N;
    int D, E;
    la_decay_t kind;
    int has_s0, has_dsN, has_do;
    const gate_t *gate;
} tcase_t;

static void *ws_alloc(size_t bytes, size_t *total) {
    *total = (bytes + 64 + 63) / 64 * 64;
    unsigned char *p = aligned_alloc(64, *total);
    memset(p, 0xA5, *total);
    return p;
}
static int guard_ok(const void *ws, size_t bytes, size_t total) {
    const unsigned char *p = ws;
    for (size_t i = bytes; i < total; i++)
        if (p[i] != 0xA5) return 0;
    return 1;
}

static void run_case(const tcase_t *tc, stats_t *st, double tol) {
    const int64_t N = tc->N;
    const int D = tc->D, E = tc->E, kv = tc->kind == LA_DECAY_VECTOR_KV;
    const double scale = 0.5;
    buf_t q = mk(N * D), k = mk(N * D), v = mk(N * E), gk = mk(N * D), gv = mk(N * E);
    buf_t s0 = mk(D * E), dO = mk(N * E), dsN = mk(D * E);
    buf_t o = mk(N * E), sN = mk(D * E), sN2 = mk(D * E);
    buf_t dq = mk(N * D), dk = mk(N * D), dv = mk(N * E), dgk = mk(N * D), dgv = mk(N * E), ds0 = mk(D * E);
    buf_t dq2 = mk(N * D), dk2 = mk(N * D), dv2 = mk(N * E), dgk2 = mk(N * D), dgv2 = mk(N * E), ds02 = mk(D * E);
    fill_randn(&q);
    fill_randn(&k);
    fill_randn(&v);
    fill_randn(&s0);
    fill_randn(&dO);
    fill_randn(&dsN);
    fill_gate(&gk, tc->gate);
    if (kv) fill_gate(&gv, tc->gate);

    char desc[160];
    snprintf(desc, sizeof desc, "N=%lld D=%d E=%d %s s0=%d dsN=%d dO=%d gate=%s", (long long)N, D, E, kv ? "KV" : "K",
             tc->has_s0, tc->has_dsN, tc->has_do, tc->gate->name);

    cpu_seq_t s;
    memset(&s, 0, sizeof s);
    s.len = N;
    s.D = D;
    s.E = E;
    s.scale = (float)scale;
    s.kind = tc->kind;
    s.q = view(&q, D);
    s.k = view(&k, D);
    s.v = view(&v, E);
    s.o = view(&o, E);
    s.ld = view(&gk, D);
    s.ldv = kv ? view(&gv, E) : noview();
    s.s0 = tc->has_s0 ? sview(&s0, E) : nosview();
    s.sN = sview(&sN, E);
    size_t bytes = cpu_vector_workspace(D, E, N), total;
    void *ws = ws_alloc(bytes, &total);

    cpu_vector_forward(&s, ws);
    /* state-only forward */
    cpu_seq_t s2 = s;
    s2.o = noview();
    s2.sN = sview(&sN2, E);
    cpu_vector_forward(&s2, ws);

    s.d_o = tc->has_do ? view(&dO, E) : noview();
    s.dq = tc->has_do ? view(&dq, D) : noview();
    s.dk = view(&dk, D);
    s.dv = view(&dv, E);
    s.d_ld = view(&dgk, D);
    s.d_ldv = kv ? view(&dgv, E) : noview();
    s.dsN = tc->has_dsN ? sview(&dsN, E) : nosview();
    s.ds0 = sview(&ds0, E);
    cpu_vector_backward(&s, ws);
    cpu_seq_t s3 = s;
    s3.dq = tc->has_do ? view(&dq2, D) : noview();
    s3.dk = view(&dk2, D);
    s3.dv = view(&dv2, E);
    s3.d_ld = view(&dgk2, D);
    s3.d_ldv = kv ? view(&dgv2, E) : noview();
    s3.ds0 = sview(&ds02, E);
    memset(ws, 0x5A, bytes); /* stale workspace must not matter */
    cpu_vector_backward(&s3, ws);
    int det = memcmp(dk.f, dk2.f, N * D * 4) == 0 && memcmp(dv.f, dv2.f, N * E * 4) == 0 &&
              memcmp(dgk.f, dgk2.f, N * D * 4) == 0 && memcmp(ds0.f, ds02.f, D * E * 4) == 0 &&
              (!tc->has_do || memcmp(dq.f, dq2.f, N * D * 4) == 0) && (!kv || memcmp(dgv.f, dgv2.f, N * E * 4) == 0);
    if (!det) {
        st->failures++;
        printf("  FAIL backward not bit-identical on rerun: %s\n", desc);
    }
    if (!guard_ok(ws, bytes, total)) {
        st->failures++;
        printf("  FAIL workspace guard overwritten: %s\n", desc);
    }

    /* fp64 reference */
    buf_t ro = mk(N * E), rsN = mk(D * E), rdq = mk(N * D), rdk = mk(N * D), rdv = mk(N * E), rdgk = mk(N * D),
          rdgv = mk(N * E), rds0 = mk(D * E);
    const double *ps0 = tc->has_s0 ? s0.d : NULL, *pgv = kv ? gv.d : NULL;
    rec_forward(N, D, E, scale, q.d, k.d, v.d, gk.d, pgv, ps0, ro.d, rsN.d);
    rec_backward(N, D, E, scale, q.d, k.d, v.d, gk.d, pgv, ps0, tc->has_do ? dO.d : NULL, tc->has_dsN ? dsN.d : NULL,
                 rdq.d, rdk.d, rdv.d, rdgk.d, rdgv.d, rds0.d);
#ifdef USE_REF
    {
        buf_t xo = mk(N * E), xsN = mk(D * E), xdq = mk(N * D), xdk = mk(N * D), xdv = mk(N * E), xdgk = mk(N * D),
              xdgv = mk(N * E), xds0 = mk(D * E);
        ref_forward_recurrent(N, D, E, scale, q.d, k.d, v.d, gk.d, pgv, ps0, xo.d, xsN.d);
        ref_backward(N, D, E, scale, q.d, k.d, v.d, gk.d, pgv, ps0, tc->has_do ? dO.d : NULL,
                     tc->has_dsN ? dsN.d : NULL, xdq.d, xdk.d, xdv.d, xdgk.d, xdgv.d, xds0.d);
        double m = 0;
        const double *a[] = {xo.d, xsN.d, xdk.d, xdv.d, xdgk.d, xds0.d};
        const double *b[] = {ro.d, rsN.d, rdk.d, rdv.d, rdgk.d, rds0.d};
        int64_t len[] = {N * E, D * E, N * D, N * E, N * D, D * E};
        for (int i = 0; i < 6; i++)
            for (int64_t j = 0; j < len[i]; j++) {
                double d = fabs(a[i][j] - b[i][j]) / (fabs(b[i][j]) + 1e-300);
                if (fabs(a[i][j] - b[i][j]) > 1e-9 * (fabs(b[i][j]) + 1e-3) && d > m) m = d;
            }
        if (m > 0) printf("  note: reference.c differs from the dev recurrence (%.3g): %s\n", m, desc);
        freeb(&xo), freeb(&xsN), freeb(&xdq), freeb(&xdk), freeb(&xdv), freeb(&xdgk), freeb(&xdgv), freeb(&xds0);
    }
#endif

    /* magnitude reference: the same recurrences on |inputs| */
    buf_t *absd[] = {&q, &k, &v, &s0, &dO, &dsN};
    for (size_t i = 0; i < sizeof absd / sizeof absd[0]; i++)
        for (int64_t j = 0; j < absd[i]->n; j++) absd[i]->d[j] = fabs(absd[i]->d[j]);
    buf_t mo = mk(N * E), msN = mk(D * E), mdq = mk(N * D), mdk = mk(N * D), mdv = mk(N * E), mdgk = mk(N * D),
          mdgv = mk(N * E), mds0 = mk(D * E);
    rec_forward(N, D, E, scale, q.d, k.d, v.d, gk.d, pgv, ps0, mo.d, msN.d);
    rec_backward(N, D, E, scale, q.d, k.d, v.d, gk.d, pgv, ps0, tc->has_do ? dO.d : NULL, tc->has_dsN ? dsN.d : NULL,
                 mdq.d, mdk.d, mdv.d, mdgk.d, mdgv.d, mds0.d);

    note(st, 0, o.f, ro.d, mo.d, N * E, desc, tol);
    note(st, 1, sN.f, rsN.d, msN.d, D * E, desc, tol);
    if (tc->has_do) note(st, 2, dq.f, rdq.d, mdq.d, N * D, desc, tol);
    note(st, 3, dk.f, rdk.d, mdk.d, N * D, desc, tol);
    note(st, 4, dv.f, rdv.d, mdv.d, N * E, desc, tol);
    note(st, 5, dgk.f, rdgk.d, mdgk.d, N * D, desc, tol);
    if (kv) note(st, 6, dgv.f, rdgv.d, mdgv.d, N * E, desc, tol);
    note(st, 7, ds0.f, rds0.d, mds0.d, D * E, desc, tol);
    buf_t *mags[] = {&mo, &msN, &mdq, &mdk, &mdv, &mdgk, &mdgv, &mds0};
    for (size_t i = 0; i < sizeof mags / sizeof mags[0]; i++) freeb(mags[i]);
    if (memcmp(sN.f, sN2.f, D * E * 4) != 0) {
        st->failures++;
        printf("  FAIL state-only forward sN differs from the full forward's: %s\n", desc);
    }
    st->cases++;

    buf_t *all[] = {&q,   &k,   &v,   &gk,  &gv,   &s0,   &dO,   &dsN, &o,   &sN,  &sN2, &dq,  &dk,   &dv,   &dgk, &dgv,
                    &ds0, &dq2, &dk2, &dv2, &dgk2, &dgv2, &ds02, &ro,  &rsN, &rdq, &rdk, &rdv, &rdgk, &rdgv, &rds0};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) freeb(all[i]);
    free(ws);
}

static const gate_t gates[] = {
    {"ls(randn/0.1)", 0.1, 0}, {"ls(randn/1)", 1, 0}, {"ls(randn/10)", 10, 0}, {"0", 0, 0.0},
    {"-1e-6", 0, -1e-6},       {"-20", 0, -20.0},     {"-30", 0, -30.0},       {"-1e30", 0, -1e30},
    {"-inf", 0, -INFINITY},
};

static int run_grid(int full) {
    static const int64_t Ns[] = {0, 1, 2, 15, 16, 17, 63, 64, 65, 300};
    static const int DEs[][2] = {{1, 1}, {16, 16}, {48, 100}, {100, 48}, {128, 128}};
    const int ngates = (int)(sizeof gates / sizeof gates[0]);
    stats_t st;
    memset(&st, 0, sizeof st);
    for (int gi = 0; gi < ngates; gi++) {
        stats_t gs;
        memset(&gs, 0, sizeof gs);
        for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++)
            for (size_t di = 0; di < sizeof DEs / sizeof DEs[0]; di++)
                for (int kind = 0; kind < 2; kind++)
                    for (int opt = 0; opt < 8; opt++) {
                        /* quick: all-on and all-off plus one rotating combination */
                        if (!full && opt != 7 && opt != 0 && opt != (int)((ni + di) % 8)) continue;
                        tcase_t tc = {Ns[ni],         DEs[di][0],
                                      DEs[di][1],     kind ? LA_DECAY_VECTOR_KV : LA_DECAY_VECTOR_K,
                                      opt & 1,        (opt >> 1) & 1,
                                      (opt >> 2) & 1, &gates[gi]};
                        if (!tc.has_do && !tc.has_dsN) tc.has_dsN = 1; /* else all grads are 0 */
                        run_case(&tc, &gs, 5e-5);
                    }
        printf("gate %-14s cases %4d failures %d\n", gates[gi].name, gs.cases, gs.failures);
        for (int qi = 0; qi < 8; qi++)
            if (gs.where[qi][0])
                printf("    %-4s worst rel L2 %.2e  (%s); worst vs magnitudes %.2e\n", qname[qi], gs.worst[qi],
                       gs.where[qi], gs.worst_scaled[qi]);
        st.cases += gs.cases;
        st.failures += gs.failures;
    }
    /* extra shapes: widest heads, odd widths, ragged chunks and sub-chunks */
    {
        static const int64_t xN[] = {1, 31, 130};
        static const int xDE[][2] = {{256, 256}, {1, 256}, {256, 1}, {17, 33}, {200, 72}};
        stats_t xs;
        memset(&xs, 0, sizeof xs);
        for (size_t ni = 0; ni < sizeof xN / sizeof xN[0]; ni++)
            for (size_t di = 0; di < sizeof xDE / sizeof xDE[0]; di++)
                for (int kind = 0; kind < 2; kind++)
                    for (int gi = 0; gi < ngates; gi += full ? 1 : 4) {
                        tcase_t tc = {xN[ni], xDE[di][0], xDE[di][1], kind ? LA_DECAY_VECTOR_KV : LA_DECAY_VECTOR_K,
                                      1,      1,          1,          &gates[gi]};
                        run_case(&tc, &xs, 5e-5);
                    }
        printf("extra shapes       cases %4d failures %d\n", xs.cases, xs.failures);
        for (int qi = 0; qi < 8; qi++)
            if (xs.where[qi][0])
                printf("    %-4s worst rel L2 %.2e  (%s); worst vs magnitudes %.2e\n", qname[qi], xs.worst[qi],
                       xs.where[qi], xs.worst_scaled[qi]);
        st.cases += xs.cases;
        st.failures += xs.failures;
    }
    printf("total cases %d failures %d\n", st.cases, st.failures);
    return st.failures != 0;
}

/* Thread CPU time: on a shared, oversubscribed machine this is steadier than
 * wall time (it does not count time spent waiting for a core). */
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void run_timing(la_decay_t kind, int64_t N, int D, int E, int reps) {
    const int kv = kind == LA_DECAY_VECTOR_KV;
    buf_t q = mk(N * D), k = mk(N * D), v = mk(N * E), gk = mk(N * D), gv = mk(N * E);
    buf_t s0 = mk(D * E), dO = mk(N * E), dsN = mk(D * E), o = mk(N * E), sN = mk(D * E);
    buf_t dq = mk(N * D), dk = mk(N * D), dv = mk(N * E), dgk = mk(N * D), dgv = mk(N * E), ds0 = mk(D * E);
    const gate_t g = {"ls(randn)", 1, 0};
    fill_randn(&q), fill_randn(&k), fill_randn(&v), fill_randn(&s0), fill_randn(&dO), fill_randn(&dsN),
        fill_gate(&gk, &g), fill_gate(&gv, &g);
    cpu_seq_t s;
    memset(&s, 0, sizeof s);
    s.len = N, s.D = D, s.E = E, s.scale = 1.0f, s.kind = kind;
    s.q = view(&q, D), s.k = view(&k, D), s.v = view(&v, E), s.o = view(&o, E);
    s.ld = view(&gk, D), s.ldv = kv ? view(&gv, E) : noview();
    s.s0 = sview(&s0, E), s.sN = sview(&sN, E);
    s.d_o = view(&dO, E), s.dq = view(&dq, D), s.dk = view(&dk, D), s.dv = view(&dv, E);
    s.d_ld = view(&dgk, D), s.d_ldv = kv ? view(&dgv, E) : noview();
    s.dsN = sview(&dsN, E), s.ds0 = sview(&ds0, E);
    size_t bytes = cpu_vector_workspace(D, E, N), total;
    void *ws = ws_alloc(bytes, &total);
    double tf[64], tb[64];
    for (int r = 0; r < reps + 1; r++) {
        double t0 = now();
        cpu_vector_forward(&s, ws);
        double t1 = now();
        cpu_vector_backward(&s, ws);
        double t2 = now();
        if (r > 0) tf[r - 1] = t1 - t0, tb[r - 1] = t2 - t1; /* first run = warm-up */
    }
    qsort(tf, reps, sizeof(double), cmp_double);
    qsort(tb, reps, sizeof(double), cmp_double);
    printf("%s N=%lld D=%d E=%d: forward %.2f ms (min %.2f), backward %.2f ms (min %.2f) [median thread CPU time], ws "
           "%.1f MiB\n",
           kv ? "VECTOR_KV" : "VECTOR_K ", (long long)N, D, E, 1e3 * tf[reps / 2], 1e3 * tf[0], 1e3 * tb[reps / 2],
           1e3 * tb[0], bytes / 1048576.0);
    buf_t *all[] = {&q, &k, &v, &gk, &gv, &s0, &dO, &dsN, &o, &sN, &dq, &dk, &dv, &dgk, &dgv, &ds0};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) freeb(all[i]);
    free(ws);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "quick";
    if (!strcmp(mode, "time")) {
        /* time [reps [N D E]] */
        int reps = argc > 2 ? atoi(argv[2]) : 5;
        int64_t N = argc > 3 ? atoll(argv[3]) : 8192;
        int D = argc > 4 ? atoi(argv[4]) : 128, E = argc > 5 ? atoi(argv[5]) : 128;
        if (reps < 1 || reps > 63) reps = 5;
        run_timing(LA_DECAY_VECTOR_K, N, D, E, reps);
        run_timing(LA_DECAY_VECTOR_KV, N, D, E, reps);
        return 0;
    }
    if (!strcmp(mode, "case")) { /* case N D E kind(0/1) gate_index */
        stats_t st;
        memset(&st, 0, sizeof st);
        tcase_t tc = {atoll(argv[2]),
                      atoi(argv[3]),
                      atoi(argv[4]),
                      atoi(argv[5]) ? LA_DECAY_VECTOR_KV : LA_DECAY_VECTOR_K,
                      1,
                      1,
                      1,
                      &gates[atoi(argv[6])]};
        run_case(&tc, &st, 5e-5);
        for (int qi = 0; qi < 8; qi++)
            if (st.where[qi][0]) printf("%-4s %.17g\n", qname[qi], st.worst[qi]);
        return st.failures != 0;
    }
    return run_grid(!strcmp(mode, "full"));
}
