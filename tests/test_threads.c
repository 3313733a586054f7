/*
 * test_threads.c - the thread-safety contract, under ThreadSanitizer in CI.
 *
 *   1. Handles are independent: several threads, each with its own handle,
 *      run forwards and backwards of different sizes at once (so each
 *      handle's workspace grows while the others run), and every result is
 *      bit-identical to the same call made alone.
 *   2. One handle, two threads: a call that arrives while another call runs
 *      on the same handle is refused with LA_STATUS_HANDLE_BUSY and changes
 *      nothing (no tensor, no setting, not the running call's result or
 *      message); la_destroy of a busy handle is refused the same way.  This
 *      used to corrupt the handle's workspace (use after free) or give
 *      silently wrong results.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lightning_attn.h"
#include "testutil.h"

static atomic_int g_fail;
static atomic_int g_pass;

static void check(int ok, const char *what) {
    if (ok) {
        atomic_fetch_add(&g_pass, 1);
    } else {
        atomic_fetch_add(&g_fail, 1);
        printf("FAIL: %s\n", what);
    }
}

/* One forward + backward problem with its own buffers (inputs shared
 * read-only between threads, outputs per call). */
typedef struct job {
    int64_t B, H, N, D, E;
    float *q, *k, *v, *d_o, ld[4];
    size_t ntok_d, ntok_e;
} job_t;

typedef struct result {
    float *o, *dq, *dk, *dv, d_ld[4];
} result_t;

static float *random_floats(tu_rng_t *r, size_t n) {
    float *x = (float *)malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = (float)tu_normal(r);
    return x;
}

static void job_init(job_t *j, uint64_t seed, int64_t B, int64_t H, int64_t N, int64_t D, int64_t E) {
    tu_rng_t r;
    tu_rng_seed(&r, seed);
    j->B = B;
    j->H = H;
    j->N = N;
    j->D = D;
    j->E = E;
    j->ntok_d = (size_t)(B * H * N * D);
    j->ntok_e = (size_t)(B * H * N * E);
    j->q = random_floats(&r, j->ntok_d);
    j->k = random_floats(&r, j->ntok_d);
    j->v = random_floats(&r, j->ntok_e);
    j->d_o = random_floats(&r, j->ntok_e);
    for (int h = 0; h < 4; h++) j->ld[h] = (float)tu_logsigmoid(tu_normal(&r) + 2.0);
}

static void job_free(job_t *j) {
    free(j->q);
    free(j->k);
    free(j->v);
    free(j->d_o);
}

static void result_alloc(result_t *r, const job_t *j) {
    r->o = (float *)malloc(j->ntok_e * sizeof(float));
    r->dq = (float *)malloc(j->ntok_d * sizeof(float));
    r->dk = (float *)malloc(j->ntok_d * sizeof(float));
    r->dv = (float *)malloc(j->ntok_e * sizeof(float));
    for (size_t i = 0; i < j->ntok_e; i++) r->o[i] = r->dv[i] = NAN;
    for (size_t i = 0; i < j->ntok_d; i++) r->dq[i] = r->dk[i] = NAN;
    for (int h = 0; h < 4; h++) r->d_ld[h] = NAN;
}

static void result_free(result_t *r) {
    free(r->o);
    free(r->dq);
    free(r->dk);
    free(r->dv);
}

static int result_equal(const result_t *a, const result_t *b, const job_t *j) {
    return memcmp(a->o, b->o, j->ntok_e * 4) == 0 && memcmp(a->dq, b->dq, j->ntok_d * 4) == 0 &&
           memcmp(a->dk, b->dk, j->ntok_d * 4) == 0 && memcmp(a->dv, b->dv, j->ntok_e * 4) == 0 &&
           memcmp(a->d_ld, b->d_ld, (size_t)j->H * 4) == 0;
}

static void job_problem(const job_t *j, la_problem_t *p) {
    la_problem_init(p);
    p->batch = j->B;
    p->heads = j->H;
    p->seqlen = j->N;
    p->dim_qk = j->D;
    p->dim_v = j->E;
    p->decay = LA_DECAY_SCALAR_HEAD;
}

static void job_tensors(const job_t *j, result_t *r, la_tensors_t *t) {
    la_tensors_init(t);
    la_tensor_contiguous(&t->q, j->q, LA_DTYPE_F32, j->B, j->H, j->N, j->D);
    la_tensor_contiguous(&t->k, j->k, LA_DTYPE_F32, j->B, j->H, j->N, j->D);
    la_tensor_contiguous(&t->v, j->v, LA_DTYPE_F32, j->B, j->H, j->N, j->E);
    la_tensor_contiguous(&t->d_o, j->d_o, LA_DTYPE_F32, j->B, j->H, j->N, j->E);
    la_tensor_contiguous(&t->ld, (void *)j->ld, LA_DTYPE_F32, 1, j->H, 1, 1);
    la_tensor_contiguous(&t->o, r->o, LA_DTYPE_F32, j->B, j->H, j->N, j->E);
    la_tensor_contiguous(&t->dq, r->dq, LA_DTYPE_F32, j->B, j->H, j->N, j->D);
    la_tensor_contiguous(&t->dk, r->dk, LA_DTYPE_F32, j->B, j->H, j->N, j->D);
    la_tensor_contiguous(&t->dv, r->dv, LA_DTYPE_F32, j->B, j->H, j->N, j->E);
    la_tensor_contiguous(&t->d_ld, r->d_ld, LA_DTYPE_F32, 1, j->H, 1, 1);
}

/* Forward then backward; returns the first status that is not SUCCESS. */
static la_status_t job_run(la_handle_t *h, const job_t *j, result_t *r) {
    la_problem_t p;
    la_tensors_t t;
    job_problem(j, &p);
    job_tensors(j, r, &t);
    la_status_t st = la_forward(h, &p, &t);
    return st ? st : la_backward(h, &p, &t);
}

/* ---- 1. one handle per thread ----------------------------------------------------- */

#define NJOBS 3
#define NTHREADS 4

static job_t g_jobs[NJOBS];
static result_t g_expect[NJOBS];

static void *own_handle_thread(void *arg) {
    int id = (int)(intptr_t)arg;
    la_handle_t *h = NULL;
    if (la_create(&h, LA_BACKEND_CPU) != LA_STATUS_SUCCESS) {
        check(0, "la_create in a thread");
        return NULL;
    }
    la_set_num_threads(h, 1 + id % 2);
    for (int round = 0; round < 4; round++) {
        /* Growing sizes: the handle's workspace is reallocated meanwhile. */
        const job_t *j = &g_jobs[(id + round) % NJOBS];
        result_t r;
        result_alloc(&r, j);
        char what[96];
        snprintf(what, sizeof what, "thread %d round %d: own handle runs", id, round);
        check(job_run(h, j, &r) == LA_STATUS_SUCCESS, what);
        snprintf(what, sizeof what, "thread %d round %d: bit-identical to the call made alone", id, round);
        check(result_equal(&r, &g_expect[(id + round) % NJOBS], j), what);
        result_free(&r);
    }
    la_destroy(h);
    return NULL;
}

static void test_own_handles(void) {
    job_init(&g_jobs[0], 1, 1, 2, 33, 8, 8);
    job_init(&g_jobs[1], 2, 2, 3, 150, 16, 12);
    job_init(&g_jobs[2], 3, 1, 4, 400, 32, 16);
    la_handle_t *h = NULL;
    la_create(&h, LA_BACKEND_CPU);
    for (int i = 0; i < NJOBS; i++) {
        result_alloc(&g_expect[i], &g_jobs[i]);
        check(job_run(h, &g_jobs[i], &g_expect[i]) == LA_STATUS_SUCCESS, "the call made alone runs");
    }
    la_destroy(h);
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) pthread_create(&th[i], NULL, own_handle_thread, (void *)(intptr_t)i);
    for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
}

/* ---- 2. one handle, two threads ------------------------------------------------------ */

static la_handle_t *g_shared;
static job_t g_long;
static result_t g_long_expect;
static atomic_int g_long_call_started, g_long_call_done;

/* Backward alone: one call that holds the handle for a long time. */
static la_status_t backward_only(la_handle_t *h, const job_t *j, result_t *r) {
    la_problem_t p;
    la_tensors_t t;
    job_problem(j, &p);
    job_tensors(j, r, &t);
    return la_backward(h, &p, &t);
}

/* Thread A: the long call on the shared handle. */
static void *long_call_thread(void *arg) {
    (void)arg;
    result_t r;
    result_alloc(&r, &g_long);
    atomic_store(&g_long_call_started, 1);
    la_status_t st;
    do st = backward_only(g_shared, &g_long, &r); /* B's probes may hold the handle for a moment */
    while (st == LA_STATUS_HANDLE_BUSY);
    check(st == LA_STATUS_SUCCESS, "the long call on the shared handle runs");
    check(result_equal(&r, &g_long_expect, &g_long), "the long call's result is untouched by the refused calls");
    result_free(&r);
    atomic_store(&g_long_call_done, 1);
    return NULL;
}

static void test_shared_handle(void) {
    /* Long enough (tens of milliseconds on one core, longer under a
     * sanitizer) that thread B's first calls surely meet it running. */
    job_init(&g_long, 4, 1, 4, 4096, 64, 64);
    la_create(&g_shared, LA_BACKEND_CPU);
    la_set_num_threads(g_shared, 1);
    result_alloc(&g_long_expect, &g_long);
    check(backward_only(g_shared, &g_long, &g_long_expect) == LA_STATUS_SUCCESS, "the long call made alone runs");
    pthread_t a;
    pthread_create(&a, NULL, long_call_thread, NULL);
    /* Thread B (this one): wait until A's call holds the handle (a setting
     * refused as busy), then try to destroy the handle under it, which would
     * free its workspace: refused instead. */
    while (!atomic_load(&g_long_call_started)) {
    }
    int held = 0;
    while (!held && !atomic_load(&g_long_call_done)) held = la_set_stream(g_shared, NULL) == LA_STATUS_HANDLE_BUSY;
    check(held, "a setting made while a call runs on the handle is refused (HANDLE_BUSY)");
    if (held)
        check(la_destroy(g_shared) == LA_STATUS_HANDLE_BUSY, "la_destroy of a handle in use is refused (HANDLE_BUSY)");
    const job_t *j = &g_jobs[0];
    long busy = 0, ran = 0;
    while (!atomic_load(&g_long_call_done)) {
        result_t r;
        result_alloc(&r, j);
        la_status_t st = job_run(g_shared, j, &r);
        if (st == LA_STATUS_HANDLE_BUSY) {
            busy++;
            check(isnan(r.o[0]) && isnan(r.dq[0]), "a refused call writes nothing");
        } else {
            ran++;
            check(st == LA_STATUS_SUCCESS && result_equal(&r, &g_expect[0], j), "a call between A's calls is right");
        }
        result_free(&r);
        st = la_set_num_threads(g_shared, 1);
        check(st == LA_STATUS_SUCCESS || st == LA_STATUS_HANDLE_BUSY, "la_set_num_threads: done or refused");
    }
    pthread_join(a, NULL);
    printf("shared handle: %ld calls refused as busy, %ld ran\n", busy, ran);
    check(busy > 0, "a call made while another runs on the handle is refused (HANDLE_BUSY)");
    check(la_destroy(g_shared) == LA_STATUS_SUCCESS, "la_destroy once the handle is free");
    result_free(&g_long_expect);
    job_free(&g_long);
}

int main(void) {
    test_own_handles();
    test_shared_handle();
    for (int i = 0; i < NJOBS; i++) {
        result_free(&g_expect[i]);
        job_free(&g_jobs[i]);
    }
    printf("%d passed, %d failed\n", atomic_load(&g_pass), atomic_load(&g_fail));
    return atomic_load(&g_fail) ? 1 : 0;
}
