/*
 * cpu_scalar_check.c - playground for the scalar-family CPU kernels
 * (src/cpu/cpu_scalar.c) and the gemm under them (src/cpu/gemm.c).
 *
 * Checks the kernels against the fp64 reference (src/reference/reference.c)
 * over a table of shapes, decay kinds and optional tensors, reporting
 * relative L2 errors and asserting a tolerance; checks the backward is
 * bit-reproducible and that nothing is written past the workspace or the
 * outputs; then times the benchmark shape.
 *
 * Build (from the repository root):
 *   mkdir -p /tmp/build-scalar && gcc -std=c11 -O3 -fopenmp -Wall -Wextra -Wshadow \
 *     -Iinclude -Isrc -Isrc/cpu -Isrc/reference dev/cpu_scalar_check.c \
 *     src/cpu/cpu_scalar.c src/cpu/gemm.c src/cpu/tile_io.c src/reference/reference.c \
 *     -lm -o /tmp/build-scalar/check
 * Run:  check [quick|check|full|bench|bench1|gemm]
 *   quick   the check table, then the benchmark shape (the default)
 *   check   the check table only (e.g. under -fsanitize=address,undefined)
 *   full    the check table with the large cases (D = E = 256 at N = 1000,
 *           and N = 8200 at D = E = 256, which takes the checkpointed path)
 *   bench   benchmarks: the target shape on 1 and 2 threads, other kinds,
 *           head dims and decays
 *   bench1  the single-thread target shape alone, for profilers
 *   gemm    the gemm check alone
 * Exit status 0 when every check passed.
 */
#define _POSIX_C_SOURCE 200809L
#include "cpu_kernels.h"
#include "gemm.h"
#include "reference.h"
#include "tile_io.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define GUARD 0x7fc12345u /* a NaN pattern written after every buffer */
#define NGUARD 16

static double clock_s(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static double now(void) { return clock_s(CLOCK_MONOTONIC); }
/* CPU seconds of the whole process: on this shared 2-core machine, the
 * wall clock includes time other people's jobs held our cores; process CPU
 * time divided by the thread count does not (it still includes their cache
 * and memory-bandwidth interference). */
static double cpu_now(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }

/* xorshift64*: fixed seeds, reproducible everywhere. */
static uint64_t rng_state = 88172645463325252ull;
static double urand(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
}
static double srand1(void) { return 2.0 * urand() - 1.0; }

/* A float buffer of n elements followed by guard words. */
static float *galloc(size_t n) {
    float *p = aligned_alloc(64, ((n + NGUARD) * sizeof(float) + 63) / 64 * 64);
    for (size_t i = 0; i < n + NGUARD; i++) memcpy(&p[i], &(uint32_t){GUARD}, 4);
    return p;
}
static int guard_ok(const float *p, size_t n) {
    for (size_t i = n; i < n + NGUARD; i++) {
        uint32_t u;
        memcpy(&u, &p[i], 4);
        if (u != GUARD) return 0;
    }
    return 1;
}

/* ||x - ref|| / max(||ref||, floor): the floor keeps results that are zero
 * up to rounding (or below fp32's range) from reading as huge relative errors. */
static double rel_l2f(const float *x, const double *ref, size_t n, double floor) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)x[i] - ref[i];
        if (!isfinite(x[i])) return INFINITY;
        num += d * d;
        den += ref[i] * ref[i];
    }
    return sqrt(num) / fmax(sqrt(den), floor);
}
static double rel_l2(const float *x, const double *ref, size_t n) { return rel_l2f(x, ref, n, 1e-30); }

static double norm2(const double *x, size_t n) {
    double a = 0;
    for (size_t i = 0; i < n; i++) a += x[i] * x[i];
    return sqrt(a);
}

/* ---- one check case --------------------------------------------------------- */

typedef struct check_case {
    int64_t N;
    int D, E;
    la_decay_t kind;
    int with_s0, with_dsN, with_do, with_o;
    float ld; /* SCALAR_HEAD value, or the scale of SCALAR_TOKEN's random ld */
    float scale;
    int interleave; /* token stride = interleave * width (another head's data between) */
    int bf16;       /* inputs stored as bf16 */
} check_case_t;

typedef struct tensors {
    /* fp64 copies of exactly what the kernel sees (after bf16 rounding) */
    double *q, *k, *v, *gk, *s0, *d_o, *dsN, *ld;
    /* kernel buffers */
    void *qb, *kb, *vb, *dob;
    float *ldb, *s0b, *dsNb;
    float *o, *sN, *dq, *dk, *dv, *dld, *ds0;
} tensors_t;

static void *make_input(size_t n_alloc, int bf16, double *copy, size_t count, size_t stride_el, int width,
                        double (*gen)(void)) {
    /* count rows of width values at stride_el elements apart */
    void *buf = bf16 ? (void *)aligned_alloc(64, (n_alloc * 2 + 63) / 64 * 64)
                     : (void *)aligned_alloc(64, (n_alloc * 4 + 63) / 64 * 64);
    for (size_t i = 0; i < n_alloc; i++) {
        float x = (float)gen();
        if (bf16) ((uint16_t *)buf)[i] = la_float_to_bf16(x);
        else ((float *)buf)[i] = x;
    }
    for (size_t r = 0; r < count; r++)
        for (int c = 0; c < width; c++) {
            size_t i = r * stride_el + (size_t)c;
            copy[r * (size_t)width + (size_t)c] =
                bf16 ? (double)la_bf16_to_float(((uint16_t *)buf)[i]) : (double)((float *)buf)[i];
        }
    return buf;
}

static cpu_view_t view(void *p, int bf16, int64_t st) {
    cpu_view_t v = {(char *)p, bf16 ? LA_DTYPE_BF16 : LA_DTYPE_F32, st, 1};
    return v;
}

static double max_err_seen = 0.0;
static char max_err_where[160];

static int report(const char *what, double err, double tol, const check_case_t *c) {
    if (err > max_err_seen && isfinite(err)) {
        max_err_seen = err;
        snprintf(max_err_where, sizeof max_err_where, "%s of N=%lld D=%d E=%d kind=%d", what, (long long)c->N, c->D,
                 c->E, (int)c->kind);
    }
    if (err <= tol) return 0;
    printf("  FAIL %-6s rel %.3e > %.1e  (N=%lld D=%d E=%d kind=%d s0=%d dsN=%d do=%d o=%d bf16=%d)\n", what, err, tol,
           (long long)c->N, c->D, c->E, (int)c->kind, c->with_s0, c->with_dsN, c->with_do, c->with_o, c->bf16);
    return 1;
}

static int run_case(const check_case_t *c, int verbose) {
    int64_t N = c->N;
    int D = c->D, E = c->E, il = c->interleave > 0 ? c->interleave : 1, bf = c->bf16;
    size_t ND = (size_t)N * D, NE = (size_t)N * E, DE = (size_t)D * E;
    int fails = 0;
    tensors_t t;
    memset(&t, 0, sizeof t);
    t.q = malloc((ND + 1) * 8);
    t.k = malloc((ND + 1) * 8);
    t.v = malloc((NE + 1) * 8);
    t.d_o = malloc((NE + 1) * 8);
    t.s0 = malloc(DE * 8);
    t.dsN = malloc(DE * 8);
    t.ld = malloc(((size_t)N + 1) * 8);
    t.gk = malloc((ND + 1) * 8);
    size_t nq = (size_t)N * D * il + 1, nv = (size_t)N * E * il + 1;
    t.qb = make_input(nq, bf, t.q, (size_t)N, (size_t)D * il, D, srand1);
    t.kb = make_input(nq, bf, t.k, (size_t)N, (size_t)D * il, D, srand1);
    t.vb = make_input(nv, bf, t.v, (size_t)N, (size_t)E * il, E, srand1);
    t.dob = make_input(nv, bf, t.d_o, (size_t)N, (size_t)E * il, E, srand1);
    /* s0 stored transposed ([E, D]) to exercise the state strides. */
    t.s0b = galloc(DE);
    t.dsNb = galloc(DE);
    for (int d = 0; d < D; d++)
        for (int e = 0; e < E; e++) {
            float x = (float)srand1(), y = (float)srand1();
            t.s0b[(size_t)e * D + d] = x;
            t.s0[(size_t)d * E + e] = x;
            t.dsNb[(size_t)d * E + e] = y;
            t.dsN[(size_t)d * E + e] = y;
        }
    t.ldb = galloc((size_t)N + 1);
    for (int64_t i = 0; i < N; i++) {
        float g = c->kind == LA_DECAY_SCALAR_TOKEN ? (float)(c->ld * urand()) : c->ld;
        /* ld below -1000: mostly mild decays with a huge one (a reset) every 7 tokens */
        if (c->kind == LA_DECAY_SCALAR_TOKEN && c->ld < -1000.0f) g = i % 7 == 3 ? c->ld : (float)(-0.05 * urand());
        if (c->kind == LA_DECAY_NONE) g = 0.0f;
        t.ldb[i] = g;
        t.ld[i] = g;
        for (int d = 0; d < D; d++) t.gk[(size_t)i * D + d] = g;
    }
    t.o = galloc(NE);
    t.sN = galloc(DE);
    t.dq = galloc(ND);
    t.dk = galloc(ND);
    t.dv = galloc(NE);
    t.dld = galloc((size_t)N);
    t.ds0 = galloc(DE);

    cpu_seq_t s;
    memset(&s, 0, sizeof s);
    s.len = N;
    s.D = D;
    s.E = E;
    s.scale = c->scale;
    s.kind = c->kind;
    s.q = view(t.qb, bf, (int64_t)D * il);
    s.k = view(t.kb, bf, (int64_t)D * il);
    s.v = view(t.vb, bf, (int64_t)E * il);
    if (c->with_o) s.o = view(t.o, 0, E);
    s.ld_head = c->ld;
    if (c->kind == LA_DECAY_SCALAR_TOKEN) {
        s.ld = view(t.ldb, 0, 1);
        s.d_ld = view(t.dld, 0, 1);
    }
    if (c->with_s0) s.s0 = (cpu_state_view_t){t.s0b, 1, D};
    s.sN = (cpu_state_view_t){t.sN, E, 1};

    size_t wsb = cpu_scalar_workspace(D, E, N);
    float *ws = galloc(wsb / 4);

    /* forward */
    cpu_scalar_forward(&s, ws);
    double *ro = malloc((NE + 1) * 8), *rsN = malloc(DE * 8);
    int has_decay = c->kind != LA_DECAY_NONE;
    ref_forward_recurrent(N, D, E, c->scale, t.q, t.k, t.v, has_decay ? t.gk : NULL, NULL, c->with_s0 ? t.s0 : NULL, ro,
                          rsN);
    double tol = 3e-5 * (1.0 + (double)(D + E) / 256.0);
    double e_o = c->with_o ? rel_l2(t.o, ro, NE) : 0, e_sN = rel_l2(t.sN, rsN, DE);
    fails += c->with_o ? report("o", e_o, tol, c) : 0;
    fails += report("sN", e_sN, tol, c);
    if (!guard_ok(ws, wsb / 4) || !guard_ok(t.o, NE) || !guard_ok(t.sN, DE)) {
        printf("  FAIL forward wrote past a buffer\n");
        fails++;
    }

    /* backward */
    double dld_head = -1.0;
    if (c->with_do) {
        s.d_o = view(t.dob, bf, (int64_t)E * il);
        s.dq = view(t.dq, 0, D);
    }
    s.dk = view(t.dk, 0, D);
    s.dv = view(t.dv, 0, E);
    if (c->with_dsN) s.dsN = (cpu_state_view_t){t.dsNb, E, 1};
    s.ds0 = (cpu_state_view_t){t.ds0, E, 1};
    if (c->kind == LA_DECAY_SCALAR_HEAD) s.d_ld_head = &dld_head;
    s.o = (cpu_view_t){0};
    cpu_scalar_backward(&s, ws);
    double *rdq = calloc(ND + 1, 8), *rdk = calloc(ND + 1, 8), *rdv = calloc(NE + 1, 8);
    double *rdg = calloc(ND + 1, 8), *rds0 = calloc(DE, 8), *rdld = calloc((size_t)N + 1, 8);
    ref_backward(N, D, E, c->scale, t.q, t.k, t.v, has_decay ? t.gk : NULL, NULL, c->with_s0 ? t.s0 : NULL,
                 c->with_do ? t.d_o : NULL, c->with_dsN ? t.dsN : NULL, rdq, rdk, rdv, rdg, NULL, rds0);
    double head_ref = 0.0;
    for (int64_t i = 0; i < N; i++) {
        double a = 0;
        for (int d = 0; d < D; d++) a += rdg[(size_t)i * D + d];
        rdld[i] = a;
        head_ref += a;
    }
    double btol = 2 * tol;
    double e_dq = c->with_do ? rel_l2(t.dq, rdq, ND) : 0;
    double e_dk = rel_l2(t.dk, rdk, ND), e_dv = rel_l2(t.dv, rdv, NE);
    double e_ds0 = rel_l2(t.ds0, rds0, DE), e_dld = 0;
    if (c->with_do) fails += report("dq", e_dq, btol, c);
    if (N > 0 && (c->with_do || c->with_dsN)) {
        fails += report("dk", e_dk, btol, c);
        fails += report("dv", e_dv, btol, c);
    }
    fails += report("ds0", e_ds0, btol, c);
    /* The decay gradient is a sum of q . dq and k . dk terms: its natural
     * scale, when the sum itself is ~0, is ||q|| ||dq|| + ||k|| ||dk||. */
    double dg_scale = 1e-6 * (norm2(t.q, ND) * norm2(rdq, ND) + norm2(t.k, ND) * norm2(rdk, ND));
    if (c->kind == LA_DECAY_SCALAR_TOKEN && N > 0) {
        e_dld = rel_l2f(t.dld, rdld, (size_t)N, fmax(dg_scale, 1e-30));
        fails += report("dld", e_dld, btol, c);
    }
    if (c->kind == LA_DECAY_SCALAR_HEAD) {
        e_dld = fabs(dld_head - head_ref) / fmax(fabs(head_ref), fmax(dg_scale, 1e-30));
        fails += report("dldh", e_dld, btol, c);
    }
    if (!guard_ok(ws, wsb / 4) || !guard_ok(t.dq, ND) || !guard_ok(t.dk, ND) || !guard_ok(t.dv, NE) ||
        !guard_ok(t.ds0, DE) || !guard_ok(t.dld, (size_t)N)) {
        printf("  FAIL backward wrote past a buffer\n");
        fails++;
    }

    /* determinism: the backward again, bit for bit */
    if (N > 0) {
        float *dk2 = malloc(ND * 4 + 4), *dq2 = malloc(ND * 4 + 4), *dld2 = malloc((size_t)N * 4 + 4);
        memcpy(dk2, t.dk, ND * 4);
        memcpy(dq2, t.dq, ND * 4);
        memcpy(dld2, t.dld, (size_t)N * 4);
        double h2 = dld_head;
        cpu_scalar_backward(&s, ws);
        if (memcmp(dk2, t.dk, ND * 4) || (c->with_do && memcmp(dq2, t.dq, ND * 4)) ||
            (c->kind == LA_DECAY_SCALAR_TOKEN && memcmp(dld2, t.dld, (size_t)N * 4)) ||
            memcmp(&h2, &dld_head, sizeof h2)) {
            printf("  FAIL backward not bit-reproducible\n");
            fails++;
        }
        free(dk2);
        free(dq2);
        free(dld2);
    }

    if (verbose || fails)
        printf("N=%-5lld D=%-3d E=%-3d kind=%d ld=%-6g s0=%d dsN=%d do=%d o=%d il=%d bf16=%d | o %.1e sN %.1e "
               "dq %.1e dk %.1e dv %.1e ds0 %.1e dld %.1e\n",
               (long long)N, D, E, (int)c->kind, (double)c->ld, c->with_s0, c->with_dsN, c->with_do, c->with_o, il, bf,
               e_o, e_sN, e_dq, e_dk, e_dv, e_ds0, e_dld);

    free(t.q);
    free(t.k);
    free(t.v);
    free(t.d_o);
    free(t.s0);
    free(t.dsN);
    free(t.ld);
    free(t.gk);
    free(t.qb);
    free(t.kb);
    free(t.vb);
    free(t.dob);
    free(t.ldb);
    free(t.s0b);
    free(t.dsNb);
    free(t.o);
    free(t.sN);
    free(t.dq);
    free(t.dk);
    free(t.dv);
    free(t.dld);
    free(t.ds0);
    free(ws);
    free(ro);
    free(rsN);
    free(rdq);
    free(rdk);
    free(rdv);
    free(rdg);
    free(rds0);
    free(rdld);
    return fails;
}

static int run_checks(int full) {
    static const int64_t Ns[] = {0, 1, 2, 63, 64, 65, 1000};
    static const int dims[][2] = {{1, 1}, {16, 16}, {48, 100}, {128, 128}, {256, 256}, {7, 33}};
    static const la_decay_t kinds[] = {LA_DECAY_NONE, LA_DECAY_SCALAR_HEAD, LA_DECAY_SCALAR_TOKEN};
    int fails = 0, cases = 0;
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
        for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++)
            for (size_t ki = 0; ki < 3; ki++)
                for (int opt = 0; opt < 4; opt++) {
                    int D = dims[di][0], E = dims[di][1];
                    if (!full && D * E > 128 * 128 && Ns[ni] > 65) continue;
                    check_case_t c = {Ns[ni],
                                      D,
                                      E,
                                      kinds[ki],
                                      opt & 1,
                                      (opt >> 1) & 1,
                                      opt != 2,
                                      opt != 1,
                                      kinds[ki] == LA_DECAY_SCALAR_TOKEN ? -0.5f : -0.05f,
                                      opt == 3 ? 0.37f : 1.0f,
                                      opt == 1 ? 3 : 1,
                                      0};
                    fails += run_case(&c, Ns[ni] == 1000 && opt == 3);
                    cases++;
                }
    /* decay extremes, bf16 inputs, a long sequence */
    check_case_t extra[] = {
        {300, 32, 48, LA_DECAY_SCALAR_HEAD, 1, 1, 1, 1, 0.0f, 1.0f, 1, 0},
        {300, 32, 48, LA_DECAY_SCALAR_HEAD, 1, 1, 1, 1, -1e-6f, 1.0f, 1, 0},
        {300, 32, 48, LA_DECAY_SCALAR_HEAD, 1, 1, 1, 1, -20.0f, 1.0f, 1, 0},
        {300, 32, 48, LA_DECAY_SCALAR_HEAD, 1, 1, 1, 1, -1.5f, 1.0f, 1, 0}, /* subnormal range */
        {300, 32, 48, LA_DECAY_SCALAR_TOKEN, 1, 1, 1, 1, -3.0f, 1.0f, 1, 0},
        {300, 32, 48, LA_DECAY_SCALAR_TOKEN, 1, 1, 1, 1, -20.0f, 1.0f, 1, 0},
        {300, 32, 48, LA_DECAY_SCALAR_TOKEN, 1, 1, 1, 1, -1e-4f, 1.0f, 1, 0},
        {300, 32, 48, LA_DECAY_SCALAR_TOKEN, 1, 1, 1, 1, -1e6f, 1.0f, 1, 0},
        {300, 32, 48, LA_DECAY_SCALAR_HEAD, 1, 1, 1, 1, -1e6f, 1.0f, 1, 0},
        {500, 64, 64, LA_DECAY_SCALAR_HEAD, 1, 1, 1, 1, -0.02f, 0.125f, 2, 1},
        {500, 64, 64, LA_DECAY_SCALAR_TOKEN, 1, 1, 1, 1, -0.3f, 1.0f, 2, 1},
        {4096, 64, 32, LA_DECAY_SCALAR_TOKEN, 1, 1, 1, 1, -0.1f, 1.0f, 1, 0},
    };
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++, cases++) fails += run_case(&extra[i], 1);
    if (full) {
        /* (8200/64 + 1) states of 256 KiB exceed the 32 MiB cap: the checkpointed path. */
        check_case_t ck = {8200, 256, 256, LA_DECAY_SCALAR_TOKEN, 1, 1, 1, 1, -0.05f, 1.0f, 1, 0};
        fails += run_case(&ck, 1);
        cases++;
    }
    printf("%d cases, %d failures, largest relative L2 error %.2e (%s)\n", cases, fails, max_err_seen, max_err_where);
    return fails;
}

/* ---- gemm check ---------------------------------------------------------------- */

static int check_gemm(void) {
    static const int shapes[][3] = {{1, 16, 1},    {7, 16, 5}, {64, 128, 128}, {63, 48, 65},
                                    {13, 32, 300}, {9, 5, 3},  {64, 33, 128},  {17, 200, 0}};
    int fails = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
        int lda = K + 3, ldb = N + 16, ldc = N + 5, ldat = M + 2, ldbt = K + 1;
        float *A = malloc(sizeof(float) * (size_t)(M * lda + 1)), *At = malloc(sizeof(float) * (size_t)(K * ldat + 1));
        float *B = malloc(sizeof(float) * (size_t)(K * ldb + 1)), *Bt = malloc(sizeof(float) * (size_t)(N * ldbt + 1));
        float *C = malloc(sizeof(float) * (size_t)M * ldc), *C0 = malloc(sizeof(float) * (size_t)M * ldc);
        for (int i = 0; i < M * lda; i++) A[i] = (float)srand1();
        for (int i = 0; i < K * ldb; i++) B[i] = (float)srand1();
        for (int i = 0; i < M * ldc; i++) C0[i] = (float)srand1();
        for (int m = 0; m < M; m++)
            for (int k = 0; k < K; k++) At[k * ldat + m] = A[m * lda + k];
        for (int n = 0; n < N; n++)
            for (int k = 0; k < K; k++) Bt[n * ldbt + k] = B[k * ldb + n];
        for (int v = 0; v < 3; v++)
            for (int beta = 0; beta < 2; beta++) {
                memcpy(C, C0, sizeof(float) * (size_t)M * ldc);
                if (v == 0) cpu_gemm_nn(M, N, K, A, lda, B, ldb, C, ldc, beta);
                else if (v == 1) cpu_gemm_tn(M, N, K, At, ldat, B, ldb, C, ldc, beta);
                else cpu_gemm_nt(M, N, K, A, lda, Bt, ldbt, C, ldc, beta);
                double worst = 0;
                for (int m = 0; m < M; m++)
                    for (int n = 0; n < ldc; n++) {
                        double ref = C0[m * ldc + n], e;
                        if (n < N) {
                            ref = beta ? ref : 0.0;
                            for (int k = 0; k < K; k++) ref += (double)A[m * lda + k] * B[k * ldb + n];
                            e = fabs(ref - C[m * ldc + n]) / (1.0 + sqrt((double)K));
                        } else {
                            e = ref == C[m * ldc + n] ? 0.0 : INFINITY;
                        }
                        if (e > worst) worst = e;
                    }
                if (worst > 1e-6) {
                    printf("gemm FAIL %s M=%d N=%d K=%d beta=%d err %.2e\n",
                           v == 0   ? "nn"
                           : v == 1 ? "tn"
                                    : "nt",
                           M, N, K, beta, worst);
                    fails++;
                }
            }
        free(A);
        free(At);
        free(B);
        free(Bt);
        free(C);
        free(C0);
    }
    printf("gemm: %d failures\n", fails);
    return fails;
}

/* ---- benchmark ------------------------------------------------------------------- */

typedef struct bench_head {
    cpu_seq_t s;
    float *q, *k, *v, *o, *d_o, *dq, *dk, *dv, *sN, *ld, *dld;
    double dld_head;
} bench_head_t;

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median5(double *t) {
    qsort(t, 5, sizeof *t, cmp_d);
    return t[2];
}

/* Times forward and backward over H heads on `threads` threads (one
 * workspace per thread, heads split by an OpenMP loop as the driver does). */
static void bench(la_decay_t kind, int64_t N, int D, int E, int H, int threads, int want_dld, float ld) {
    bench_head_t *hd = calloc((size_t)H, sizeof *hd);
    size_t ND = (size_t)N * D, NE = (size_t)N * E;
    for (int h = 0; h < H; h++) {
        bench_head_t *b = &hd[h];
        b->q = malloc(ND * 4);
        b->k = malloc(ND * 4);
        b->v = malloc(NE * 4);
        b->o = malloc(NE * 4);
        b->d_o = malloc(NE * 4);
        b->dq = malloc(ND * 4);
        b->dk = malloc(ND * 4);
        b->dv = malloc(NE * 4);
        b->sN = malloc((size_t)D * E * 4);
        for (size_t i = 0; i < ND; i++) {
            b->q[i] = (float)srand1();
            b->k[i] = (float)srand1();
        }
        for (size_t i = 0; i < NE; i++) {
            b->v[i] = (float)srand1();
            b->d_o[i] = (float)srand1();
        }
        cpu_seq_t *s = &b->s;
        s->len = N;
        s->D = D;
        s->E = E;
        s->scale = 1.0f;
        s->kind = kind;
        /* ALiBi slopes unless a log decay is given (ld < 0) */
        s->ld_head = ld < 0.0f ? ld : -(float)pow(2.0, -8.0 * (h + 1) / H);
        b->ld = malloc((size_t)N * 4);
        for (int64_t i = 0; i < N; i++) b->ld[i] = ld < 0.0f ? (float)(ld * urand()) : (float)(-0.1 * urand());
        b->dld = malloc((size_t)N * 4);
        if (kind == LA_DECAY_SCALAR_TOKEN) s->ld = view(b->ld, 0, 1);
        s->q = view(b->q, 0, D);
        s->k = view(b->k, 0, D);
        s->v = view(b->v, 0, E);
        s->sN = (cpu_state_view_t){b->sN, E, 1};
    }
    size_t wsb = cpu_scalar_workspace(D, E, N);
    void **ws = malloc(sizeof(void *) * (size_t)threads);
    for (int i = 0; i < threads; i++) {
        ws[i] = aligned_alloc(64, (wsb + 63) / 64 * 64);
        memset(ws[i], 0, wsb);
    }
    double tf[5], tb[5], cf[5], cb[5];
    for (int rep = -1; rep < 5; rep++) {
        double c0 = cpu_now(), t0 = now();
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
#endif
        for (int h = 0; h < H; h++) {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            cpu_seq_t s = hd[h].s;
            s.o = view(hd[h].o, 0, E);
            cpu_scalar_forward(&s, ws[tid]);
        }
        double t1 = now(), c1 = cpu_now();
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
#endif
        for (int h = 0; h < H; h++) {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            cpu_seq_t s = hd[h].s;
            s.sN = (cpu_state_view_t){0};
            s.d_o = view(hd[h].d_o, 0, E);
            s.dq = view(hd[h].dq, 0, D);
            s.dk = view(hd[h].dk, 0, D);
            s.dv = view(hd[h].dv, 0, E);
            if (want_dld && kind == LA_DECAY_SCALAR_HEAD) s.d_ld_head = &hd[h].dld_head;
            if (want_dld && kind == LA_DECAY_SCALAR_TOKEN) s.d_ld = view(hd[h].dld, 0, 1);
            cpu_scalar_backward(&s, ws[tid]);
        }
        double t2 = now(), c2 = cpu_now();
        if (rep >= 0) {
            tf[rep] = t1 - t0;
            tb[rep] = t2 - t1;
            cf[rep] = (c1 - c0) / threads;
            cb[rep] = (c2 - c1) / threads;
        }
    }
    /* Useful flops (causal halves counted once): forward 4DE + C(D+E) per
     * token with C = 64 (Q K^T and A V over the lower triangle, Q S, K^T V);
     * backward 10DE + C(3D + 2E) (state recompute, dO S^T, V dS'^T, K dS',
     * Q^T dO; Q K^T, dO V^T, dA K, dA^T Q, A^T dO). */
    double C = 64, ff = (double)N * H * (4.0 * D * E + C * (D + E));
    double fb = (double)N * H * (10.0 * D * E + C * (3.0 * D + 2.0 * E));
    double mf = median5(tf), mb = median5(tb), mcf = median5(cf), mcb = median5(cb);
    printf("bench kind=%d ld=%g N=%lld D=%d E=%d H=%d threads=%d dld=%d: wall forward %.2f ms (%.1f GFLOP/s), "
           "backward %.2f ms (%.1f GFLOP/s), total %.2f ms | cpu/thread forward %.2f ms, "
           "backward %.2f ms, total %.2f ms\n",
           (int)kind, (double)ld, (long long)N, D, E, H, threads, want_dld, mf * 1e3, ff / mf * 1e-9, mb * 1e3,
           fb / mb * 1e-9, (mf + mb) * 1e3, mcf * 1e3, mcb * 1e3, (mcf + mcb) * 1e3);
    for (int h = 0; h < H; h++) {
        bench_head_t *b = &hd[h];
        free(b->q);
        free(b->k);
        free(b->v);
        free(b->o);
        free(b->d_o);
        free(b->dq);
        free(b->dk);
        free(b->dv);
        free(b->sN);
        free(b->ld);
        free(b->dld);
    }
    for (int i = 0; i < threads; i++) free(ws[i]);
    free(ws);
    free(hd);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "quick";
    int fails = 0;
    int checks = !strcmp(mode, "quick") || !strcmp(mode, "check") || !strcmp(mode, "full");
    if (checks || !strcmp(mode, "gemm")) fails += check_gemm();
    if (checks) fails += run_checks(!strcmp(mode, "full"));
    const la_decay_t HEAD = LA_DECAY_SCALAR_HEAD;
    if (!strcmp(mode, "bench1")) bench(HEAD, 8192, 128, 128, 1, 1, 0, 0.0f);
    if (!strcmp(mode, "bench") || !strcmp(mode, "quick")) {
        bench(HEAD, 8192, 128, 128, 1, 1, 0, 0.0f);
        bench(HEAD, 8192, 128, 128, 1, 1, 1, 0.0f);
        bench(HEAD, 8192, 128, 128, 8, 2, 0, 0.0f);
        bench(HEAD, 8192, 128, 128, 8, 2, 1, 0.0f);
    }
    if (!strcmp(mode, "bench")) {
        bench(LA_DECAY_NONE, 8192, 128, 128, 1, 1, 0, 0.0f);
        bench(LA_DECAY_SCALAR_TOKEN, 8192, 128, 128, 1, 1, 0, 0.0f);
        bench(LA_DECAY_SCALAR_TOKEN, 8192, 128, 128, 1, 1, 1, 0.0f);
        bench(HEAD, 8192, 64, 64, 1, 1, 0, 0.0f);
        bench(HEAD, 8192, 256, 256, 1, 1, 0, 0.0f);
        bench(HEAD, 8192, 128, 128, 1, 1, 1, -1.5f); /* exp(k ld) reaches the subnormal range */
        bench(HEAD, 8192, 128, 128, 1, 1, 1, -20.0f);
        bench(LA_DECAY_SCALAR_TOKEN, 8192, 128, 128, 1, 1, 1, -3.0f);
    }
    return fails ? 1 : 0;
}
