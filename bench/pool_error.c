/*
 * pool_error.c - what storing a decode state in bf16 costs in accuracy.
 *
 *   la_pool_error [--steps N] [--dim D] [--heads H] [--backend cpu|cuda]
 *
 * Runs N one-token decode steps through la_decode with a state pool, once
 * with f32 slots and once with bf16 slots (the arithmetic is fp32 either
 * way), beside an fp64 recurrence of the same tokens, and prints the
 * relative L2 error of the state and of o against fp64 at steps 1, 10, 100,
 * ... N, for two decays: a per-head decay (lightning attention's ALiBi rates,
 * exp(-rate) per step) and GLA-style gates (logsigmoid(randn) / 16 per key
 * channel).  bf16 keeps 8 bits: each step rounds the state once (relative
 * 2^-9 at most), and a decay a < 1 forgets old rounding errors at the rate it
 * forgets old tokens, so the error settles instead of growing with N.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lightning_attn.h"
#include "testutil.h"

typedef struct run {
    la_dtype_t pool_dt;
    void *pool; /* [1, H, D, D] */
    float *o;   /* [1, H, 1, D] */
} run_t;

static void die(la_handle_t *h, la_status_t st, const char *what) {
    fprintf(stderr, "%s: %s (%s)\n", what, la_status_string(st), h ? la_last_error(h) : "");
    exit(1);
}

int main(int argc, char **argv) {
    long steps = 100000;
    int D = 64, H = 4;
    la_backend_t backend = LA_BACKEND_CPU;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atol(argv[++i]);
        else if (!strcmp(argv[i], "--dim") && i + 1 < argc) D = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--heads") && i + 1 < argc) H = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--backend") && i + 1 < argc)
            backend = strcmp(argv[++i], "cuda") ? LA_BACKEND_CPU : LA_BACKEND_CUDA;
        else {
            fprintf(stderr, "usage: la_pool_error [--steps N] [--dim D] [--heads H] [--backend cpu|cuda]\n");
            return 2;
        }
    }
    if (backend == LA_BACKEND_CUDA && (!la_backend_available(LA_BACKEND_CUDA) || !tu_cuda_memory_init())) {
        printf("skipped: no CUDA device\n");
        return 0;
    }
    const tu_mem_ops_t *mem = tu_get_mem_ops();
    la_handle_t *h = NULL;
    la_status_t st = la_create(&h, backend);
    if (st) die(NULL, st, "la_create");
    const int E = D;
    const size_t per = (size_t)H * D * E;
    printf("bf16 state storage against fp64, %s backend, H %d, D = E = %d, f32 q/k/v, one token a step\n",
           backend == LA_BACKEND_CUDA ? "cuda" : "cpu", H, D);
    printf("%-12s %10s %14s %14s %14s %14s\n", "decay", "step", "f32 state", "bf16 state", "f32 o", "bf16 o");
    for (int kind = 0; kind < 2; kind++) {
        const la_decay_t decay = kind == 0 ? LA_DECAY_SCALAR_HEAD : LA_DECAY_VECTOR_K;
        tu_rng_t r;
        tu_rng_seed(&r, 0x706f6f6c + (uint64_t)kind);
        double *S = calloc(per, sizeof(double)), *o64 = calloc((size_t)H * E, sizeof(double));
        float *q = malloc((size_t)H * D * 4), *k = malloc((size_t)H * D * 4), *v = malloc((size_t)H * E * 4);
        float *ld = malloc((size_t)H * D * 4), *rates = malloc((size_t)H * 4);
        for (int hh = 0; hh < H; hh++) rates[hh] = -(float)pow(2.0, -8.0 * (hh + 1) / H); /* ALiBi-like slopes */
        run_t runs[2] = {{LA_DTYPE_F32, NULL, NULL}, {LA_DTYPE_BF16, NULL, NULL}};
        void *dev_tok[5] = {0};
        for (int i = 0; i < 2; i++) {
            const size_t bytes = per * (i ? 2 : 4);
            runs[i].pool = calloc(1, bytes);
            runs[i].o = calloc((size_t)H * E, sizeof(float));
        }
        int64_t slot = 0;
        void *slot_dev = &slot, *pool_dev[2] = {runs[0].pool, runs[1].pool}, *o_dev[2] = {runs[0].o, runs[1].o};
        if (mem) {
            slot_dev = mem->alloc(8);
            mem->to_device(slot_dev, &slot, 8);
            for (int i = 0; i < 2; i++) {
                pool_dev[i] = mem->alloc(per * (i ? 2 : 4));
                mem->to_device(pool_dev[i], runs[i].pool, per * (i ? 2 : 4));
                o_dev[i] = mem->alloc((size_t)H * E * 4);
            }
            for (int i = 0; i < 4; i++) dev_tok[i] = mem->alloc((size_t)H * D * 4);
            dev_tok[4] = mem->alloc((size_t)H * 4);
        }
        la_problem_t p;
        la_problem_init(&p);
        p.batch = 1, p.heads = H, p.seqlen = 1, p.dim_qk = D, p.dim_v = E, p.decay = decay;
        long next_report = 1;
        double err_s[2] = {0}, err_o[2] = {0};
        for (long step = 1; step <= steps; step++) {
            for (int i = 0; i < H * D; i++) {
                q[i] = (float)(tu_normal(&r) / sqrt((double)D));
                k[i] = (float)(tu_normal(&r) / sqrt((double)D));
                ld[i] = decay == LA_DECAY_VECTOR_K ? (float)(tu_logsigmoid(tu_normal(&r)) / 16) : rates[i / D];
            }
            for (int i = 0; i < H * E; i++) v[i] = (float)tu_normal(&r);
            for (int hh = 0; hh < H; hh++) /* the fp64 recurrence */
                for (int e = 0; e < E; e++) {
                    double acc = 0;
                    for (int d = 0; d < D; d++) {
                        double *s = &S[((size_t)hh * D + d) * E + e];
                        *s = exp((double)ld[hh * D + d]) * *s + (double)k[hh * D + d] * v[hh * E + e];
                        acc += (double)q[hh * D + d] * *s;
                    }
                    o64[hh * E + e] = acc;
                }
            const void *qp = q, *kp = k, *vp = v, *ldp = ld;
            if (mem) {
                mem->to_device(dev_tok[0], q, (size_t)H * D * 4);
                mem->to_device(dev_tok[1], k, (size_t)H * D * 4);
                mem->to_device(dev_tok[2], v, (size_t)H * E * 4);
                mem->to_device(dev_tok[3], ld, (size_t)H * D * 4);
                qp = dev_tok[0], kp = dev_tok[1], vp = dev_tok[2], ldp = dev_tok[3];
            }
            for (int i = 0; i < 2; i++) {
                la_tensors_t t;
                la_tensors_init(&t);
                la_tensor_contiguous(&t.q, (void *)qp, LA_DTYPE_F32, 1, H, 1, D);
                la_tensor_contiguous(&t.k, (void *)kp, LA_DTYPE_F32, 1, H, 1, D);
                la_tensor_contiguous(&t.v, (void *)vp, LA_DTYPE_F32, 1, H, 1, E);
                la_tensor_contiguous(&t.o, o_dev[i], LA_DTYPE_F32, 1, H, 1, E);
                if (decay == LA_DECAY_SCALAR_HEAD) { /* [H]: the first channel of each head's row */
                    la_tensor_contiguous(&t.ld, (void *)ldp, LA_DTYPE_F32, 1, H, 1, 1);
                    t.ld.stride[1] = D;
                } else {
                    la_tensor_contiguous(&t.ld, (void *)ldp, LA_DTYPE_F32, 1, H, 1, D);
                }
                la_tensor_contiguous(&t.pool.states, pool_dev[i], runs[i].pool_dt, 1, H, D, E);
                t.pool.num_slots = 1;
                t.pool.index_dtype = LA_INDEX_I64;
                t.pool.read_slot = slot_dev;
                if ((st = la_decode(h, &p, &t))) die(h, st, "la_decode");
            }
            if (step == next_report || step == steps) {
                for (int i = 0; i < 2; i++) {
                    if (mem) {
                        mem->to_host(runs[i].pool, pool_dev[i], per * (i ? 2 : 4));
                        mem->to_host(runs[i].o, o_dev[i], (size_t)H * E * 4);
                    }
                    double es = 0, rs = 0, eo = 0, ro = 0;
                    for (size_t j = 0; j < per; j++) {
                        const double x = i ? tu_bf16_to_f32(((uint16_t *)runs[i].pool)[j]) : ((float *)runs[i].pool)[j];
                        es += (x - S[j]) * (x - S[j]);
                        rs += S[j] * S[j];
                    }
                    for (int j = 0; j < H * E; j++) {
                        eo += (runs[i].o[j] - o64[j]) * (runs[i].o[j] - o64[j]);
                        ro += o64[j] * o64[j];
                    }
                    err_s[i] = sqrt(es / rs);
                    err_o[i] = sqrt(eo / ro);
                }
                printf("%-12s %10ld %14.3e %14.3e %14.3e %14.3e\n", kind == 0 ? "per head" : "GLA gates", step,
                       err_s[0], err_s[1], err_o[0], err_o[1]);
                next_report *= 10;
            }
        }
        if (mem) {
            mem->free(slot_dev);
            for (int i = 0; i < 2; i++) mem->free(pool_dev[i]), mem->free(o_dev[i]);
            for (int i = 0; i < 5; i++) mem->free(dev_tok[i]);
        }
        for (int i = 0; i < 2; i++) free(runs[i].pool), free(runs[i].o);
        free(S), free(o64), free(q), free(k), free(v), free(ld), free(rates);
    }
    la_destroy(h);
    return 0;
}
