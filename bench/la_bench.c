/*
 * la_bench.c - time the library's forward and backward and check them
 * against the fp64 reference, one row per sequence length.
 *
 *   la_bench [--backend cpu|cuda] [-B 1] [-H 8] [-N 1024,2048,4096,8192]
 *            [-D 128] [-E 128] [--dtype f32|f16|bf16] [--decay none|head|token|vk|vkv]
 *   (defaults: the GPU when one is usable, with B4 H32 bf16; else the CPU with B1 H8 f32)
 *            [--reps 5] [--threads 0] [--check-heads 2] [--learnable 0|1] [--json FILE]
 *
 * Times are medians of --reps runs after one warm-up, wall clock around a
 * synchronous call.  GFLOP/s counts the chunked algorithm's useful work
 * (see flops_fwd / flops_bwd).  x_floor is the time over the memory floor:
 * the bytes that must move (each input read once, each output written once)
 * at the copy bandwidth measured at start-up.  Error columns: relative L2
 * error of o (fwd) and of dq, dk, dv together (bwd) against
 * ref_forward_recurrent / ref_backward on the same (rounded) inputs, over the
 * first --check-heads heads of batch row 0.  --op state times the state-only
 * pass (fwd: final state; bwd: dk, dv from d final state; errors of the
 * final state and of dk, dv); --op decode one decode call of --tokens T
 * tokens a sequence, the state updated in place, dense or (--pool f32|bf16)
 * by slot in a pool (errors of o and the new state; -N is ignored).
 */
#include "lightning_attn.h"
#include "reference.h"
#include "bench_device.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    la_backend_t backend;
    int64_t B, H, D, E;
    int64_t Ns[32];
    int nN;
    la_dtype_t dtype;
    la_decay_t decay;
    int reps, threads, check_heads;
    int learnable; /* backward also returns d ld (LASD_PL) */
    const char *json;
    int op;           /* OP_TRAIN, OP_STATE or OP_DECODE */
    int64_t tokens;   /* decode: new tokens a sequence */
    int pool;         /* decode: -1 dense states, else the pool's la_dtype_t */
    double copy_gbps; /* measured copy bandwidth: the floors' denominator */
} opts_t;

/* What a row times: forward + backward (LA_OP_FORWARD / LA_OP_BACKWARD), the
 * state-only pass and its backward, or one decode step (N ignored). */
enum { OP_TRAIN, OP_STATE, OP_DECODE };
static const char *op_name(int op) {
    return op == OP_STATE ? "state-only" : op == OP_DECODE ? "decode" : "forward/backward";
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double rnd_uniform(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return ((z >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
static double rnd_normal(void) { return sqrt(-2.0 * log(rnd_uniform())) * cos(6.283185307179586 * rnd_uniform()); }

/* Values stored in the dtype (testutil's own rounding, to nearest even), as the
 * library will see them. */
static void put(void *buf, la_dtype_t dt, int64_t i, double x) {
    if (dt == LA_DTYPE_F32) ((float *)buf)[i] = (float)x;
    else if (dt == LA_DTYPE_BF16) ((uint16_t *)buf)[i] = tu_f32_to_bf16((float)x);
    else ((uint16_t *)buf)[i] = tu_f32_to_f16((float)x);
}
static double get(const void *buf, la_dtype_t dt, int64_t i) {
    if (dt == LA_DTYPE_F32) return ((const float *)buf)[i];
    if (dt == LA_DTYPE_BF16) return tu_bf16_to_f32(((const uint16_t *)buf)[i]);
    return tu_f16_to_f32(((const uint16_t *)buf)[i]);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Useful FLOPs per (sequence, head) token with chunk C = 64: the inter-chunk
 * products q S and k^T v (2DE each), the causal half of the intra-chunk
 * products Q K^T and A V (C(D+E) on average).  The backward recomputes the
 * state (2DE) and does dQ, dK, dV and dS inter (8DE) plus four causal-half
 * intra products (2C(D+E)). */
static double flops_fwd(const opts_t *o, int64_t N) {
    double C = 64, D = (double)o->D, E = (double)o->E;
    return (double)o->B * o->H * N * (4 * D * E + C * (D + E));
}
static double flops_bwd(const opts_t *o, int64_t N) {
    double C = 64, D = (double)o->D, E = (double)o->E;
    return (double)o->B * o->H * N * (10 * D * E + 2 * C * (D + E));
}

static const char *decay_name(la_decay_t d) {
    static const char *n[] = {"none", "scalar-head", "scalar-token", "vector-k", "vector-kv"};
    return n[d];
}
static const char *dtype_name(la_dtype_t d) {
    static const char *n[] = {"f32", "f16", "bf16"};
    return n[d];
}

static void usage(void) {
    fprintf(stderr, "usage: la_bench [--backend cpu|cuda] [-B n] [-H n] [-N n,n,...] [-D n] [-E n]\n"
                    "                [--dtype f32|f16|bf16] [--decay none|head|token|vk|vkv] [--reps n]\n"
                    "                [--threads n] [--check-heads n] [--learnable 0|1] [--json FILE]\n"
                    "                [--op train|state|decode] [--tokens T] [--pool none|f32|bf16]\n");
}

static int parse(int argc, char **argv, opts_t *o) {
    o->backend = la_backend_available(LA_BACKEND_CUDA) ? LA_BACKEND_CUDA : LA_BACKEND_CPU;
    o->B = 1;
    o->H = 8;
    o->D = 128;
    o->E = 128;
    int64_t defN[] = {1024, 2048, 4096, 8192};
    o->nN = 4;
    memcpy(o->Ns, defN, sizeof defN);
    o->dtype = (la_dtype_t)-1; /* default chosen after parsing: f32 on the CPU, bf16 on the GPU */
    int batch_given = 0, heads_given = 0;
    o->decay = LA_DECAY_SCALAR_HEAD;
    o->reps = 5;
    o->threads = 0;
    o->check_heads = 2;
    o->json = NULL;
    o->learnable = 0;
    o->op = OP_TRAIN;
    o->tokens = 1;
    o->pool = -1;
    for (int i = 1; i < argc; i += 2) { /* every option takes a value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            usage();
            return 0;
        }
        if (!strcmp(a, "--backend")) o->backend = !strcmp(v, "cuda") ? LA_BACKEND_CUDA : LA_BACKEND_CPU;
        else if (!strcmp(a, "-B")) {
            o->B = atoll(v);
            batch_given = 1;
        } else if (!strcmp(a, "-H")) {
            o->H = atoll(v);
            heads_given = 1;
        } else if (!strcmp(a, "-D")) o->D = atoll(v);
        else if (!strcmp(a, "-E")) o->E = atoll(v);
        else if (!strcmp(a, "-N")) {
            o->nN = 0;
            for (char *s = (char *)v; *s && o->nN < 32;) {
                o->Ns[o->nN++] = strtoll(s, &s, 10);
                if (*s == ',') s++;
            }
        } else if (!strcmp(a, "--dtype"))
            o->dtype = !strcmp(v, "bf16") ? LA_DTYPE_BF16 : !strcmp(v, "f16") ? LA_DTYPE_F16 : LA_DTYPE_F32;
        else if (!strcmp(a, "--decay")) {
            o->decay = !strcmp(v, "none")  ? LA_DECAY_NONE
                     : !strcmp(v, "token") ? LA_DECAY_SCALAR_TOKEN
                     : !strcmp(v, "vk")    ? LA_DECAY_VECTOR_K
                     : !strcmp(v, "vkv")   ? LA_DECAY_VECTOR_KV
                                           : LA_DECAY_SCALAR_HEAD;
        } else if (!strcmp(a, "--reps")) o->reps = atoi(v);
        else if (!strcmp(a, "--threads")) o->threads = atoi(v);
        else if (!strcmp(a, "--check-heads")) o->check_heads = atoi(v);
        else if (!strcmp(a, "--json")) o->json = v;
        else if (!strcmp(a, "--learnable")) {
            o->learnable = atoi(v);
        } else if (!strcmp(a, "--tokens")) {
            o->tokens = atoll(v) > 0 ? atoll(v) : 1;
        } else if (!strcmp(a, "--pool")) {
            o->pool = !strcmp(v, "f32") ? LA_DTYPE_F32 : !strcmp(v, "bf16") ? LA_DTYPE_BF16 : -1;
        } else if (!strcmp(a, "--op")) {
            if (!strcmp(v, "train")) o->op = OP_TRAIN;
            else if (!strcmp(v, "state")) o->op = OP_STATE;
            else if (!strcmp(v, "decode")) o->op = OP_DECODE;
            else {
                usage();
                return 0;
            }
        } else {
            usage();
            return 0;
        }
    }
    if (o->reps < 1) o->reps = 1;
    /* Defaults per device: the main training shape in bf16 on the GPU, a CPU-sized one in f32. */
    int gpu = o->backend == LA_BACKEND_CUDA;
    if ((int)o->dtype < 0) o->dtype = gpu ? LA_DTYPE_BF16 : LA_DTYPE_F32;
    if (gpu && !batch_given) o->B = 4;
    if (gpu && !heads_given) o->H = 32;
    return 1;
}

typedef struct {
    int64_t N;
    double fwd_ms, bwd_ms, err_o, err_grad;
    double fwd_bytes, bwd_bytes; /* the floors' bytes */
} row_t;

/* Relative L2 error accumulators. */
typedef struct {
    double num, den;
    int bad;
} err_t;
static void err_add(err_t *e, double x, double ref) {
    if (!isfinite(x)) e->bad = 1;
    e->num += (x - ref) * (x - ref);
    e->den += ref * ref;
}
/* A number for the JSON file: NaN (not measured) becomes null. */
static void json_num(char *buf, size_t n, const char *fmt, double x) {
    if (isnan(x) || isinf(x)) snprintf(buf, n, "null");
    else snprintf(buf, n, fmt, x);
}

static double err_val(const err_t *e) { return e->bad ? NAN : sqrt(e->num / (e->den > 0 ? e->den : 1)); }

/* A tensor of the benchmark: host copy (inputs filled, outputs read back
 * for the error check) and where the library sees it (the same pointer on
 * the CPU, a device copy on the GPU). */
typedef struct {
    void *h, *d;
    size_t bytes;
} buf_t;

static int buf_make(bdev_t *dev, buf_t *b, size_t bytes) {
    b->bytes = bytes;
    b->h = malloc(bytes ? bytes : 1);
    b->d = dev->cuda ? bdev_alloc(dev, bytes) : b->h;
    return b->h && b->d;
}
static void buf_drop(bdev_t *dev, buf_t *b) {
    if (dev->cuda && b->d) bdev_free(dev, b->d);
    free(b->h);
}

/* One of the library's operations (they share a signature). */
typedef la_status_t (*op_fn_t)(la_handle_t *, const la_problem_t *, const la_tensors_t *);

/* Time fwd, and bwd after it when given, --reps times after a warm-up (the
 * first call allocates the workspace, faults pages in, loads modules), the
 * L2 flushed before each; medians into row.  0 (message printed) on error. */
static int time_pair(const opts_t *o, la_handle_t *h, bdev_t *dev, op_fn_t fwd, op_fn_t bwd, const la_problem_t *p,
                     const la_tensors_t *t, row_t *row) {
    double tf[64], tb[64];
    int reps = o->reps > 64 ? 64 : o->reps;
    for (int r = -1; r < reps; r++) {
        bdev_flush_l2(dev);
        bdev_timer_start(dev);
        la_status_t st = fwd(h, p, t);
        double t1 = bdev_timer_stop_ms(dev), t2 = 0.0;
        if (st == LA_STATUS_SUCCESS && bwd) {
            bdev_flush_l2(dev);
            bdev_timer_start(dev);
            st = bwd(h, p, t);
            t2 = bdev_timer_stop_ms(dev);
        }
        if (st != LA_STATUS_SUCCESS) {
            fprintf(stderr, "la_bench: %s: %s\n", la_status_string(st), la_last_error(h));
            return 0;
        }
        if (r >= 0) {
            tf[r] = t1;
            tb[r] = t2;
        }
    }
    qsort(tf, reps, sizeof(double), cmp_double);
    qsort(tb, reps, sizeof(double), cmp_double);
    row->fwd_ms = tf[reps / 2];
    row->bwd_ms = bwd ? tb[reps / 2] : NAN;
    return 1;
}

/* The problem of one row: the options' shape and decay, N tokens. */
static la_problem_t bench_problem(const opts_t *o, int64_t N) {
    la_problem_t p;
    la_problem_init(&p);
    p.batch = o->B;
    p.heads = o->H;
    p.seqlen = N;
    p.dim_qk = o->D;
    p.dim_v = o->E;
    p.decay = o->decay;
    return p;
}

/* Decays of the benchmark, as bench_one fills them. */
static void fill_decays(const opts_t *o, float *ld, int64_t nld, int64_t H) {
    for (int64_t i = 0; i < nld; i++) {
        if (o->decay == LA_DECAY_SCALAR_HEAD)
            ld[i] = -(float)pow(2.0, -8.0 * (double)(i % H + 1) / (double)H); /* ALiBi */
        else ld[i] = (float)-log1p(exp(-(rnd_normal() + 3.0)));               /* logsigmoid */
    }
}

/* fp64 decays of head hh of batch row 0 for N tokens (NULL for NONE). */
static double *ref_decays(const opts_t *o, const float *ld, int64_t hh, int64_t N) {
    if (o->decay == LA_DECAY_NONE) return NULL;
    int64_t D = o->D;
    double *gk = malloc((size_t)(N * D) * sizeof(double));
    if (!gk) return NULL;
    for (int64_t n = 0; n < N; n++)
        for (int64_t d = 0; d < D; d++)
            gk[n * D + d] = o->decay == LA_DECAY_SCALAR_HEAD  ? ld[hh]
                          : o->decay == LA_DECAY_SCALAR_TOKEN ? ld[hh * N + n]
                                                              : ld[(hh * N + n) * D + d];
    return gk;
}


static int bench_one(const opts_t *o, la_handle_t *h, bdev_t *dev, int64_t N, row_t *row) {
    int64_t B = o->B, H = o->H, D = o->D, E = o->E;
    size_t es = la_dtype_size(o->dtype);
    int64_t nqk = B * H * N * D, nv = B * H * N * E;
    int64_t nld = o->decay == LA_DECAY_SCALAR_HEAD  ? H
                : o->decay == LA_DECAY_SCALAR_TOKEN ? B * H * N
                : o->decay == LA_DECAY_NONE         ? 1
                                                    : B * H * N * D;
    int64_t nldv = o->decay == LA_DECAY_VECTOR_KV ? B * H * N * E : 1;
    enum { Q, K, V, O, DO, DQ, DK, DV, LD, LDV, DLD, DLDV, NB };
    size_t sizes[NB] = {nqk * es, nqk * es, nv * es, nv * es,  nv * es, nqk * es,
                        nqk * es, nv * es,  nld * 4, nldv * 4, nld * 4, nldv * 4};
    buf_t bf[NB];
    memset(bf, 0, sizeof bf);
    int ok = 1;
    for (int i = 0; i < NB; i++) ok &= buf_make(dev, &bf[i], sizes[i]);
    if (!ok) {
        fprintf(stderr, "la_bench: out of memory at N=%lld\n", (long long)N);
        for (int i = 0; i < NB; i++) buf_drop(dev, &bf[i]);
        return 0;
    }
    void *q = bf[Q].h, *k = bf[K].h, *v = bf[V].h, *out = bf[O].h, *dout = bf[DO].h;
    void *dq = bf[DQ].h, *dk = bf[DK].h, *dv = bf[DV].h;
    float *ld = bf[LD].h, *ldv = bf[LDV].h;
    for (int64_t i = 0; i < nqk; i++) {
        put(q, o->dtype, i, rnd_normal() * 0.1);
        put(k, o->dtype, i, rnd_normal() * 0.1);
    }
    for (int64_t i = 0; i < nv; i++) {
        put(v, o->dtype, i, rnd_normal() * 0.1);
        put(dout, o->dtype, i, rnd_normal() * 0.1);
    }
    fill_decays(o, ld, nld, H);
    for (int64_t i = 0; i < nldv; i++) ldv[i] = (float)-log1p(exp(-(rnd_normal() + 3.0)));
    int in[] = {Q, K, V, DO, LD, LDV};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) bdev_upload(dev, bf[in[i]].d, bf[in[i]].h, bf[in[i]].bytes);

    la_problem_t p = bench_problem(o, N);
    la_tensors_t t;
    la_tensors_init(&t);
    la_tensor_contiguous(&t.q, bf[Q].d, o->dtype, B, H, N, D);
    la_tensor_contiguous(&t.k, bf[K].d, o->dtype, B, H, N, D);
    la_tensor_contiguous(&t.v, bf[V].d, o->dtype, B, H, N, E);
    la_tensor_contiguous(&t.o, bf[O].d, o->dtype, B, H, N, E);
    la_tensor_contiguous(&t.d_o, bf[DO].d, o->dtype, B, H, N, E);
    la_tensor_contiguous(&t.dq, bf[DQ].d, o->dtype, B, H, N, D);
    la_tensor_contiguous(&t.dk, bf[DK].d, o->dtype, B, H, N, D);
    la_tensor_contiguous(&t.dv, bf[DV].d, o->dtype, B, H, N, E);
    if (o->decay == LA_DECAY_SCALAR_HEAD) {
        la_tensor_contiguous(&t.ld, bf[LD].d, LA_DTYPE_F32, 1, H, 1, 1);
        if (o->learnable) la_tensor_contiguous(&t.d_ld, bf[DLD].d, LA_DTYPE_F32, 1, H, 1, 1);
    } else if (o->decay != LA_DECAY_NONE) {
        int64_t X = o->decay == LA_DECAY_SCALAR_TOKEN ? 1 : D;
        la_tensor_contiguous(&t.ld, bf[LD].d, LA_DTYPE_F32, B, H, N, X);
        if (o->learnable) la_tensor_contiguous(&t.d_ld, bf[DLD].d, LA_DTYPE_F32, B, H, N, X);
    }
    if (o->decay == LA_DECAY_VECTOR_KV) {
        la_tensor_contiguous(&t.ldv, bf[LDV].d, LA_DTYPE_F32, B, H, N, E);
        if (o->learnable) la_tensor_contiguous(&t.d_ldv, bf[DLDV].d, LA_DTYPE_F32, B, H, N, E);
    }
    int have_bwd = la_supports(h, LA_OP_BACKWARD, &p, &t) == LA_STATUS_SUCCESS;

    if (!time_pair(o, h, dev, la_forward, have_bwd ? la_backward : NULL, &p, &t, row)) {
        for (int i = 0; i < NB; i++) buf_drop(dev, &bf[i]);
        return 0;
    }
    row->N = N;
    int outs[] = {O, DQ, DK, DV};
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++)
        bdev_download(dev, bf[outs[i]].h, bf[outs[i]].d, bf[outs[i]].bytes);

    /* Error against the fp64 reference, per (batch 0, head) slice. */
    err_t eo = {0}, eg = {0};
    int heads = o->check_heads < H ? o->check_heads : (int)H;
    double *rq = malloc(N * D * sizeof(double)), *rk = malloc(N * D * sizeof(double)),
           *rv = malloc(N * E * sizeof(double));
    double *rdo = malloc(N * E * sizeof(double)), *ro = malloc(N * E * sizeof(double));
    double *rdq = malloc(N * D * sizeof(double)), *rdk = malloc(N * D * sizeof(double)),
           *rdv = malloc(N * E * sizeof(double));
    double *gv = o->decay == LA_DECAY_VECTOR_KV ? malloc(N * E * sizeof(double)) : NULL;
    for (int hh = 0; hh < heads && rq && rk && rv && rdo && ro && rdq && rdk && rdv; hh++) {
        int64_t bq = (int64_t)hh * N * D, bv = (int64_t)hh * N * E;
        for (int64_t i = 0; i < N * D; i++) {
            rq[i] = get(q, o->dtype, bq + i);
            rk[i] = get(k, o->dtype, bq + i);
        }
        for (int64_t i = 0; i < N * E; i++) {
            rv[i] = get(v, o->dtype, bv + i);
            rdo[i] = get(dout, o->dtype, bv + i);
        }
        double *gk = ref_decays(o, ld, hh, N);
        if (gv)
            for (int64_t i = 0; i < N * E; i++) gv[i] = ldv[bv + i];
        ref_forward_recurrent(N, (int)D, (int)E, 1.0, rq, rk, rv, gk, gv, NULL, ro, NULL);
        for (int64_t i = 0; i < N * E; i++) err_add(&eo, get(out, o->dtype, bv + i), ro[i]);
        if (have_bwd) {
            ref_backward(N, (int)D, (int)E, 1.0, rq, rk, rv, gk, gv, NULL, rdo, NULL, rdq, rdk, rdv, NULL, NULL, NULL);
            for (int64_t i = 0; i < N * D; i++) {
                err_add(&eg, get(dq, o->dtype, bq + i), rdq[i]);
                err_add(&eg, get(dk, o->dtype, bq + i), rdk[i]);
            }
            for (int64_t i = 0; i < N * E; i++) err_add(&eg, get(dv, o->dtype, bv + i), rdv[i]);
        }
        free(gk);
    }
    row->err_o = err_val(&eo);
    row->err_grad = have_bwd ? err_val(&eg) : NAN;
    row->fwd_bytes = (double)(2 * nqk + 2 * nv) * (double)es;
    row->bwd_bytes = (double)(4 * nqk + 3 * nv) * (double)es;
    free(rq);
    free(rk);
    free(rv);
    free(rdo);
    free(ro);
    free(rdq);
    free(rdk);
    free(rdv);
    free(gv);
    for (int i = 0; i < NB; i++) buf_drop(dev, &bf[i]);
    return 1;
}

/* The state-only pass (fwd) and its backward from a random d final state
 * (bwd).  Scalar and vector-k decays (what the state-only API takes). */
static int bench_state(const opts_t *o, la_handle_t *h, bdev_t *dev, int64_t N, row_t *row) {
    int64_t B = o->B, H = o->H, D = o->D, E = o->E;
    size_t es = la_dtype_size(o->dtype);
    int64_t nk = B * H * N * D, nv = B * H * N * E, ns = B * H * D * E;
    int64_t nld = o->decay == LA_DECAY_SCALAR_HEAD  ? H
                : o->decay == LA_DECAY_SCALAR_TOKEN ? B * H * N
                : o->decay == LA_DECAY_NONE         ? 1
                                                    : nk;
    enum { K, V, LD, SN, DSN, DK, DV, NB };
    size_t sizes[NB] = {nk * es, nv * es, nld * 4, ns * 4, ns * 4, nk * es, nv * es};
    buf_t bf[NB];
    memset(bf, 0, sizeof bf);
    int ok = o->decay != LA_DECAY_VECTOR_KV;
    for (int i = 0; i < NB && ok; i++) ok &= buf_make(dev, &bf[i], sizes[i]);
    if (!ok) {
        fprintf(stderr, "la_bench: out of memory (or vector-kv decay, which the state-only pass does not take)\n");
        for (int i = 0; i < NB; i++) buf_drop(dev, &bf[i]);
        return 0;
    }
    float *ld = bf[LD].h, *dsn = bf[DSN].h;
    for (int64_t i = 0; i < nk; i++) put(bf[K].h, o->dtype, i, rnd_normal() * 0.1);
    for (int64_t i = 0; i < nv; i++) put(bf[V].h, o->dtype, i, rnd_normal() * 0.1);
    for (int64_t i = 0; i < ns; i++) dsn[i] = (float)(rnd_normal() * 0.1);
    fill_decays(o, ld, nld, H);
    int in[] = {K, V, LD, DSN};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) bdev_upload(dev, bf[in[i]].d, bf[in[i]].h, bf[in[i]].bytes);

    la_problem_t p = bench_problem(o, N);
    la_tensors_t t;
    la_tensors_init(&t);
    la_tensor_contiguous(&t.k, bf[K].d, o->dtype, B, H, N, D);
    la_tensor_contiguous(&t.v, bf[V].d, o->dtype, B, H, N, E);
    la_tensor_contiguous(&t.dk, bf[DK].d, o->dtype, B, H, N, D);
    la_tensor_contiguous(&t.dv, bf[DV].d, o->dtype, B, H, N, E);
    la_tensor_contiguous(&t.final_state, bf[SN].d, LA_DTYPE_F32, B, H, D, E);
    la_tensor_contiguous(&t.d_final_state, bf[DSN].d, LA_DTYPE_F32, B, H, D, E);
    if (o->decay == LA_DECAY_SCALAR_HEAD) la_tensor_contiguous(&t.ld, bf[LD].d, LA_DTYPE_F32, 1, H, 1, 1);
    else if (o->decay != LA_DECAY_NONE)
        la_tensor_contiguous(&t.ld, bf[LD].d, LA_DTYPE_F32, B, H, N, o->decay == LA_DECAY_SCALAR_TOKEN ? 1 : D);
    int have_bwd = la_supports(h, LA_OP_STATE_BACKWARD, &p, &t) == LA_STATUS_SUCCESS;

    if (!time_pair(o, h, dev, la_state_forward, have_bwd ? la_state_backward : NULL, &p, &t, row)) {
        for (int i = 0; i < NB; i++) buf_drop(dev, &bf[i]);
        return 0;
    }
    row->N = N;
    row->fwd_bytes = (double)(nk + nv) * (double)es + (double)ns * 4;
    row->bwd_bytes = (double)(2 * (nk + nv)) * (double)es + (double)ns * 4;
    int outs[] = {SN, DK, DV};
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++)
        bdev_download(dev, bf[outs[i]].h, bf[outs[i]].d, bf[outs[i]].bytes);

    err_t es_ = {0}, eg = {0};
    int heads = o->check_heads < H ? o->check_heads : (int)H;
    double *rk = malloc(N * D * sizeof(double)), *rv = malloc(N * E * sizeof(double));
    double *ro = malloc(N * E * sizeof(double)), *rs = malloc(D * E * sizeof(double));
    double *rdo = calloc((size_t)(N * E), sizeof(double)), *rds = malloc(D * E * sizeof(double));
    double *rdk = malloc(N * D * sizeof(double)), *rdv = malloc(N * E * sizeof(double));
    for (int hh = 0; hh < heads && rk && rv && ro && rs && rdo && rds && rdk && rdv; hh++) {
        int64_t bk = (int64_t)hh * N * D, bv = (int64_t)hh * N * E, bs = (int64_t)hh * D * E;
        for (int64_t i = 0; i < N * D; i++) rk[i] = get(bf[K].h, o->dtype, bk + i);
        for (int64_t i = 0; i < N * E; i++) rv[i] = get(bf[V].h, o->dtype, bv + i);
        for (int64_t i = 0; i < D * E; i++) rds[i] = dsn[bs + i];
        double *gk = ref_decays(o, ld, hh, N);
        ref_forward_recurrent(N, (int)D, (int)E, 1.0, rk, rk, rv, gk, NULL, NULL, ro, rs);
        for (int64_t i = 0; i < D * E; i++) err_add(&es_, ((float *)bf[SN].h)[bs + i], rs[i]);
        if (have_bwd) {
            ref_backward(N, (int)D, (int)E, 1.0, rk, rk, rv, gk, NULL, NULL, rdo, rds, NULL, rdk, rdv, NULL, NULL,
                         NULL);
            for (int64_t i = 0; i < N * D; i++) err_add(&eg, get(bf[DK].h, o->dtype, bk + i), rdk[i]);
            for (int64_t i = 0; i < N * E; i++) err_add(&eg, get(bf[DV].h, o->dtype, bv + i), rdv[i]);
        }
        free(gk);
    }
    row->err_o = err_val(&es_);
    row->err_grad = have_bwd ? err_val(&eg) : NAN;
    free(rk);
    free(rv);
    free(ro);
    free(rs);
    free(rdo);
    free(rds);
    free(rdk);
    free(rdv);
    for (int i = 0; i < NB; i++) buf_drop(dev, &bf[i]);
    return 1;
}

/* One decode call of --tokens T tokens a sequence (what a serving loop does):
 * the dense f32 state updated in place, or (--pool f32|bf16) states read and
 * written in place by slot in a pool of 2B slots, the slots a random
 * permutation. */
static int bench_decode(const opts_t *o, la_handle_t *h, bdev_t *dev, row_t *row) {
    const int64_t B = o->B, H = o->H, D = o->D, E = o->E, T = o->tokens;
    const size_t es = la_dtype_size(o->dtype);
    const int pooled = o->pool >= 0;
    const la_dtype_t sdt = pooled ? (la_dtype_t)o->pool : LA_DTYPE_F32;
    const size_t ss = la_dtype_size(sdt);
    const int64_t slots = pooled ? 2 * B : B;
    const int64_t nk = B * H * T * D, nv = B * H * T * E, ns = B * H * D * E, npool = slots * H * D * E;
    const int64_t nld = o->decay == LA_DECAY_SCALAR_HEAD  ? H
                      : o->decay == LA_DECAY_SCALAR_TOKEN ? B * H * T
                      : o->decay == LA_DECAY_NONE         ? 1
                                                          : nk;
    const int64_t nldv = o->decay == LA_DECAY_VECTOR_KV ? nv : 1;
    enum { Q, K, V, O, LD, LDV, ST, SLOT, NB };
    size_t sizes[NB] = {nk * es, nk * es, nv * es, nv * es, nld * 4, nldv * 4, npool * ss, B * sizeof(int32_t)};
    buf_t bf[NB];
    memset(bf, 0, sizeof bf);
    int ok = 1;
    for (int i = 0; i < NB; i++) ok &= buf_make(dev, &bf[i], sizes[i]);
    void *st0 = malloc(npool * ss);
    if (!ok || !st0) {
        fprintf(stderr, "la_bench: out of memory\n");
        for (int i = 0; i < NB; i++) buf_drop(dev, &bf[i]);
        free(st0);
        return 0;
    }
    float *ld = bf[LD].h, *ldv = bf[LDV].h;
    int32_t *slot = bf[SLOT].h;
    for (int64_t i = 0; i < nk; i++) {
        put(bf[Q].h, o->dtype, i, rnd_normal() * 0.1);
        put(bf[K].h, o->dtype, i, rnd_normal() * 0.1);
    }
    for (int64_t i = 0; i < nv; i++) put(bf[V].h, o->dtype, i, rnd_normal() * 0.1);
    for (int64_t i = 0; i < npool; i++) put(st0, sdt, i, rnd_normal() * 0.1);
    for (int64_t b = 0; b < B; b++) slot[b] = (int32_t)(2 * b + 1); /* every other slot, then shuffled */
    for (int64_t b = B - 1; b > 0; b--) {
        const int64_t j = (int64_t)(rnd_uniform() * (double)(b + 1));
        const int32_t x = slot[b];
        slot[b] = slot[j];
        slot[j] = x;
    }
    fill_decays(o, ld, nld, H);
    for (int64_t i = 0; i < nldv; i++) ldv[i] = (float)-log1p(exp(-(rnd_normal() + 3.0)));
    int in[] = {Q, K, V, LD, LDV, SLOT};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) bdev_upload(dev, bf[in[i]].d, bf[in[i]].h, bf[in[i]].bytes);
    bdev_upload(dev, bf[ST].d, st0, npool * ss);

    la_problem_t p = bench_problem(o, T);
    la_tensors_t t;
    la_tensors_init(&t);
    la_tensor_contiguous(&t.q, bf[Q].d, o->dtype, B, H, T, D);
    la_tensor_contiguous(&t.k, bf[K].d, o->dtype, B, H, T, D);
    la_tensor_contiguous(&t.v, bf[V].d, o->dtype, B, H, T, E);
    la_tensor_contiguous(&t.o, bf[O].d, o->dtype, B, H, T, E);
    if (pooled) {
        la_tensor_contiguous(&t.pool.states, bf[ST].d, sdt, slots, H, D, E);
        t.pool.num_slots = slots;
        t.pool.index_dtype = LA_INDEX_I32;
        t.pool.read_slot = bf[SLOT].d;
    } else {
        la_tensor_contiguous(&t.initial_state, bf[ST].d, LA_DTYPE_F32, B, H, D, E);
        la_tensor_contiguous(&t.final_state, bf[ST].d, LA_DTYPE_F32, B, H, D, E);
    }
    if (o->decay == LA_DECAY_SCALAR_HEAD) la_tensor_contiguous(&t.ld, bf[LD].d, LA_DTYPE_F32, 1, H, 1, 1);
    else if (o->decay != LA_DECAY_NONE)
        la_tensor_contiguous(&t.ld, bf[LD].d, LA_DTYPE_F32, B, H, T, o->decay == LA_DECAY_SCALAR_TOKEN ? 1 : D);
    if (o->decay == LA_DECAY_VECTOR_KV) la_tensor_contiguous(&t.ldv, bf[LDV].d, LA_DTYPE_F32, B, H, T, E);

    double tf[64];
    int reps = o->reps > 64 ? 64 : o->reps;
    for (int r = -1; r <= reps; r++) { /* r = reps: the checked call, from the uploaded states */
        if (r == reps) bdev_upload(dev, bf[ST].d, st0, npool * ss);
        bdev_flush_l2(dev);
        bdev_timer_start(dev);
        la_status_t st = la_decode(h, &p, &t);
        double t1 = bdev_timer_stop_ms(dev);
        if (st != LA_STATUS_SUCCESS) {
            fprintf(stderr, "la_bench: %s: %s\n", la_status_string(st), la_last_error(h));
            for (int i = 0; i < NB; i++) buf_drop(dev, &bf[i]);
            free(st0);
            return 0;
        }
        if (r >= 0 && r < reps) tf[r] = t1;
    }
    qsort(tf, reps, sizeof(double), cmp_double);
    row->N = T;
    row->fwd_ms = tf[reps / 2];
    row->bwd_ms = NAN;
    row->fwd_bytes = (double)(2 * nk + 2 * nv) * (double)es + 2.0 * (double)ns * (double)ss;
    row->bwd_bytes = NAN;
    bdev_download(dev, bf[O].h, bf[O].d, bf[O].bytes);
    bdev_download(dev, bf[ST].h, bf[ST].d, bf[ST].bytes);

    /* Batch row 0 against the reference: its slot's state before and after. */
    err_t eo = {0}, es_ = {0};
    const int heads = o->check_heads < H ? o->check_heads : (int)H;
    const int64_t row0 = pooled ? slot[0] : 0;
    double *rq = malloc(T * D * sizeof(double)), *rk = malloc(T * D * sizeof(double)),
           *rv = malloc(T * E * sizeof(double));
    double *rs0 = malloc(D * E * sizeof(double)), *ro = malloc(T * E * sizeof(double)),
           *rs = malloc(D * E * sizeof(double));
    double *gv = o->decay == LA_DECAY_VECTOR_KV ? malloc(T * E * sizeof(double)) : NULL;
    for (int hh = 0; hh < heads && rq && rk && rv && rs0 && ro && rs; hh++) {
        for (int64_t i = 0; i < T * D; i++) {
            rq[i] = get(bf[Q].h, o->dtype, hh * T * D + i);
            rk[i] = get(bf[K].h, o->dtype, hh * T * D + i);
        }
        for (int64_t i = 0; i < T * E; i++) rv[i] = get(bf[V].h, o->dtype, hh * T * E + i);
        const int64_t base = (row0 * H + hh) * D * E;
        for (int64_t i = 0; i < D * E; i++) rs0[i] = get(st0, sdt, base + i);
        if (gv)
            for (int64_t i = 0; i < T * E; i++) gv[i] = ldv[hh * T * E + i];
        double *gk = ref_decays(o, ld, hh, T);
        ref_forward_recurrent(T, (int)D, (int)E, 1.0, rq, rk, rv, gk, gv, rs0, ro, rs);
        for (int64_t i = 0; i < T * E; i++) err_add(&eo, get(bf[O].h, o->dtype, hh * T * E + i), ro[i]);
        for (int64_t i = 0; i < D * E; i++) err_add(&es_, get(bf[ST].h, sdt, base + i), rs[i]);
        free(gk);
    }
    row->err_o = err_val(&eo);
    row->err_grad = err_val(&es_); /* the state's error goes in the second error column */
    free(rq);
    free(rk);
    free(rv);
    free(rs0);
    free(ro);
    free(rs);
    free(gv);
    for (int i = 0; i < NB; i++) buf_drop(dev, &bf[i]);
    free(st0);
    return 1;
}

int main(int argc, char **argv) {
    opts_t o;
    if (!parse(argc, argv, &o)) return 2;
    la_handle_t *h;
    la_status_t st = la_create(&h, o.backend);
    if (st) {
        fprintf(stderr, "la_bench: cannot create the %s backend: %s\n", o.backend == LA_BACKEND_CUDA ? "cuda" : "cpu",
                la_status_string(st));
        return 1;
    }
    la_set_num_threads(h, o.threads);
    bdev_t dev;
    if (bdev_init(&dev, o.backend == LA_BACKEND_CUDA) != 0) {
        fprintf(stderr, "la_bench: cannot set up the device (this build has no CUDA runtime for the benchmark)\n");
        return 1;
    }
    /* Trusted inputs: the benchmark's decays are valid by construction, and the
     * value check synchronises the stream on the GPU. */
    la_set_check_values(h, 0);
    o.copy_gbps = bdev_copy_gbps(&dev);
    static const char *err_names[3][2] = {{"err_o", "err_dqkv"}, {"err_state", "err_dkv"}, {"err_o", "err_state"}};
    const char *e1 = err_names[o.op][0], *e2 = err_names[o.op][1];
    printf("lightning-attn %s benchmark on %s: %s, %s, %s decay%s, B%lld H%lld D%lld E%lld, median of %d (ms), "
           "x_floor = time / (bytes moved at the measured copy bandwidth, %.0f GB/s), "
           "error = relative L2 vs fp64 reference\n",
           o.backend == LA_BACKEND_CUDA ? "CUDA" : "CPU", dev.name, op_name(o.op), dtype_name(o.dtype),
           decay_name(o.decay), o.learnable ? " (learnable: backward returns d ld)" : "", (long long)o.B,
           (long long)o.H, (long long)o.D, (long long)o.E, o.reps, o.copy_gbps);
    if (o.op == OP_DECODE)
        printf("decode: %lld token%s a sequence, %s (N below = tokens)\n", (long long)o.tokens,
               o.tokens == 1 ? "" : "s",
               o.pool < 0                ? "dense f32 states in place"
               : o.pool == LA_DTYPE_BF16 ? "bf16 pool by slot"
                                         : "f32 pool by slot");
    printf("%8s %10s %10s %8s %10s %10s %8s %12s %10s %10s\n", "N", "fwd_ms", "fwd_GF/s", "fwd_xfl", "bwd_ms",
           "bwd_GF/s", "bwd_xfl", "fwd+bwd_ms", e1, e2);
    FILE *js = o.json ? fopen(o.json, "w") : NULL;
    if (js)
        fprintf(js,
                "{\"backend\": \"%s\", \"op\": \"%s\", \"dtype\": \"%s\", \"decay\": \"%s\", \"B\": %lld, \"H\": %lld, "
                "\"D\": %lld, \"E\": %lld, \"copy_GBps\": %.1f, \"rows\": [",
                o.backend == LA_BACKEND_CUDA ? "cuda" : "cpu", op_name(o.op), dtype_name(o.dtype), decay_name(o.decay),
                (long long)o.B, (long long)o.H, (long long)o.D, (long long)o.E, o.copy_gbps);
    int ok = 1;
    for (int i = 0; i < (o.op == OP_DECODE ? 1 : o.nN); i++) {
        row_t r = {0};
        int done = o.op == OP_TRAIN ? bench_one(&o, h, &dev, o.Ns[i], &r)
                 : o.op == OP_STATE ? bench_state(&o, h, &dev, o.Ns[i], &r)
                                    : bench_decode(&o, h, &dev, &r);
        if (!done) {
            ok = 0;
            break;
        }
        /* GF/s for the chunked forward and backward only; "-" (null in the
         * JSON) where a figure does not apply or the backend does not run it. */
        double gf_f = o.op == OP_TRAIN ? flops_fwd(&o, r.N) / (r.fwd_ms * 1e6) : NAN;
        double gf_b = o.op == OP_TRAIN ? flops_bwd(&o, r.N) / (r.bwd_ms * 1e6) : NAN;
        double bw = o.copy_gbps * 1e6; /* bytes per ms */
        double xf = bw > 0 ? r.fwd_ms / (r.fwd_bytes / bw) : NAN, xb = bw > 0 ? r.bwd_ms / (r.bwd_bytes / bw) : NAN;
        double vals[9] = {r.fwd_ms,
                          gf_f,
                          xf,
                          r.bwd_ms,
                          gf_b,
                          xb,
                          r.fwd_ms + r.bwd_ms,
                          o.check_heads > 0 ? r.err_o : NAN,
                          o.check_heads > 0 ? r.err_grad : NAN};
        static const char *fmt[9] = {"%.3f", "%.1f", "%.2f", "%.3f", "%.1f", "%.2f", "%.3f", "%.2e", "%.2e"};
        static const int width[9] = {10, 10, 8, 10, 10, 8, 12, 10, 10};
        printf("%8lld", (long long)r.N);
        for (int c = 0; c < 9; c++) {
            char cell[32];
            if (isnan(vals[c]) || isinf(vals[c])) snprintf(cell, sizeof cell, "-");
            else snprintf(cell, sizeof cell, fmt[c], vals[c]);
            printf(" %*s", width[c], cell);
        }
        printf("\n");
        fflush(stdout);
        if (js) {
            static const char *key[9] = {"fwd_ms",      "fwd_GFs",  "fwd_x_floor", "bwd_ms", "bwd_GFs",
                                         "bwd_x_floor", "total_ms", NULL,          NULL};
            fprintf(js, "%s{\"N\": %lld", i ? ", " : "", (long long)r.N);
            for (int c = 0; c < 9; c++) {
                char num[32];
                json_num(num, sizeof num, c >= 7 ? "%.3e" : "%.4f", vals[c]);
                fprintf(js, ", \"%s\": %s", key[c] ? key[c] : c == 7 ? e1 : e2, num);
            }
            fprintf(js, "}");
        }
    }
    if (js) {
        fprintf(js, "]}\n");
        fclose(js);
    }
    bdev_destroy(&dev);
    la_destroy(h);
    return ok ? 0 : 1;
}
