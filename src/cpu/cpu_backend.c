/*
 * cpu_backend.c - the CPU backend's driver.
 *
 * Splits a validated plan into work items, one per (sequence, head), builds
 * strided views for each and runs the kernel of the decay family on a pool
 * of OpenMP threads.  Items are independent, so any schedule gives the same
 * bits; the one cross-item sum (SCALAR_HEAD's d ld, over the batch) is
 * written per item and reduced afterwards in a fixed order.
 *
 * Workspace layout: [per-thread kernel scratch, served states] x threads,
 * then the SCALAR_HEAD partial sums (num_seqs x H doubles) or, in a call
 * with a state pool, the slot check's scratch.
 */
#include "internal.h"
#include "cpu_kernels.h"
#include "cpu_serving.h"
#include "tile_io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define WS_ALIGN 64

static size_t align_up(size_t x) { return (x + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN; }

static int is_vector_kind(la_decay_t k) { return k == LA_DECAY_VECTOR_K || k == LA_DECAY_VECTOR_KV; }

/* Threads a call runs on: the requested number (0 = OpenMP's default), but
 * never more than the call has (sequence, head) items, so a small call
 * starts no idle threads and sizes no scratch for them. */
static int threads_for(const la_plan_t *pl, int requested) {
#ifdef _OPENMP
    int64_t n = requested > 0 ? requested : omp_get_max_threads();
    int64_t items = pl->num_seqs * pl->p.heads;
    if (n > items) n = items;
    return n > 1 ? (int)n : 1;
#else
    (void)pl;
    (void)requested;
    return 1;
#endif
}

/* Kernel scratch, then the served forms' states (cpu_serving.c). */
static size_t kernel_bytes(const la_plan_t *pl) {
    int D = (int)pl->p.dim_qk, E = (int)pl->p.dim_v;
    if (pl->op == LA_OP_DECODE) return 0;
    int64_t max_len = la_plan_max_len(pl);
    return align_up(is_vector_kind(pl->p.decay) ? cpu_vector_workspace(D, E, max_len)
                                                : cpu_scalar_workspace(D, E, max_len));
}

static size_t per_thread_bytes(const la_plan_t *pl) { return kernel_bytes(pl) + align_up(cpu_serving_scratch(pl)); }

static size_t partials_bytes(const la_plan_t *pl) {
    return align_up((size_t)pl->num_seqs * (size_t)pl->p.heads * sizeof(double));
}

/* What a call runs on: its threads and their scratch. */
typedef struct cpu_plan {
    int threads;
    size_t kernel, per_thread, partials, workspace;
} cpu_plan_t;

/* Every decay kind, dtype and head dim the API accepts runs on the CPU.  The
 * API bounds every problem (LA_MAX_BYTES), so the workspace terms are far
 * from wrapping; the sum saturates anyway, and SIZE_MAX is never allocated. */
static la_status_t cpu_make_plan(const la_plan_t *pl, int num_threads, void *bplan, char *msg) {
    (void)msg;
    cpu_plan_t *c = (cpu_plan_t *)bplan;
    c->threads = threads_for(pl, num_threads);
    c->kernel = kernel_bytes(pl);
    c->per_thread = per_thread_bytes(pl);
    /* The decay-gradient partials and the slot check never meet in one call. */
    c->partials = partials_bytes(pl) > la_slot_check_bytes(pl) ? partials_bytes(pl) : la_slot_check_bytes(pl);
    c->workspace = la_size_add(la_size_add(la_size_mul(c->per_thread, (size_t)c->threads), c->partials), WS_ALIGN);
    return LA_STATUS_SUCCESS;
}

static size_t cpu_workspace_size(const la_plan_t *pl, const void *bplan) {
    (void)pl;
    return ((const cpu_plan_t *)bplan)->workspace;
}

static void cpu_describe(const la_plan_t *pl, const void *bplan, char *buf, size_t len) {
    static const char *ops[] = {"forward", "backward", "decode", "state forward", "state backward"};
    const cpu_plan_t *c = (const cpu_plan_t *)bplan;
    snprintf(buf, len, "cpu %s: %s kernels, %lld (sequence, head) items on %d thread%s%s%s, workspace %zu bytes",
             ops[pl->op], is_vector_kind(pl->p.decay) ? "vector-decay" : "scalar-decay",
             (long long)(pl->num_seqs * pl->p.heads), c->threads, c->threads == 1 ? "" : "s",
             pl->has_pool ? ", states by slot from a pool" : "", pl->has_checkpoints ? ", checkpoints" : "",
             c->workspace);
}

/* View of token tensor t for (sequence s, head h). */
static cpu_view_t token_view(const la_plan_t *pl, const la_tensor_t *t, int64_t s, int64_t h) {
    cpu_view_t v = {0};
    if (!t->data) return v;
    int64_t off = la_plan_seq_batch(pl, s) * t->stride[0] + h * t->stride[1] + la_plan_seq_start(pl, s) * t->stride[2];
    v.ptr = (char *)t->data + off * (int64_t)la_dtype_size(t->dtype);
    v.dtype = t->dtype;
    v.st = t->stride[2];
    v.sc = t->stride[3];
    return v;
}

static cpu_state_view_t state_view(const la_tensor_t *t, int64_t s, int64_t h) {
    cpu_state_view_t v = {0};
    if (!t->data) return v;
    v.ptr = (float *)t->data + s * t->stride[0] + h * t->stride[1];
    v.sd = t->stride[2];
    v.se = t->stride[3];
    return v;
}

static void build_seq(const la_plan_t *pl, int64_t s, int64_t h, double *partials, cpu_seq_t *q) {
    const la_tensors_t *t = &pl->t;
    memset(q, 0, sizeof *q);
    q->len = la_plan_seq_len(pl, s);
    q->D = (int)pl->p.dim_qk;
    q->E = (int)pl->p.dim_v;
    q->scale = pl->p.scale;
    q->kind = pl->p.decay;
    int fwd = pl->op == LA_OP_FORWARD || pl->op == LA_OP_DECODE;
    int bwd = pl->op == LA_OP_BACKWARD || pl->op == LA_OP_STATE_BACKWARD;
    if (pl->op != LA_OP_STATE_FORWARD && pl->op != LA_OP_STATE_BACKWARD) q->q = token_view(pl, &t->q, s, h);
    q->k = token_view(pl, &t->k, s, h);
    q->v = token_view(pl, &t->v, s, h);
    if (fwd) q->o = token_view(pl, &t->o, s, h);
    if (bwd) {
        if (pl->op == LA_OP_BACKWARD) {
            q->d_o = token_view(pl, &t->d_o, s, h);
            q->dq = token_view(pl, &t->dq, s, h);
        }
        q->dk = token_view(pl, &t->dk, s, h);
        q->dv = token_view(pl, &t->dv, s, h);
    }
    switch (pl->p.decay) {
    case LA_DECAY_SCALAR_HEAD:
        q->ld_head = ((const float *)t->ld.data)[h * t->ld.stride[1]];
        if (bwd && pl->want_dld) q->d_ld_head = &partials[s * pl->p.heads + h];
        break;
    case LA_DECAY_SCALAR_TOKEN:
    case LA_DECAY_VECTOR_K:
    case LA_DECAY_VECTOR_KV:
        q->ld = token_view(pl, &t->ld, s, h);
        if (bwd && pl->want_dld) q->d_ld = token_view(pl, &t->d_ld, s, h);
        if (pl->p.decay == LA_DECAY_VECTOR_KV) {
            q->ldv = token_view(pl, &t->ldv, s, h);
            if (bwd && pl->want_dldv) q->d_ldv = token_view(pl, &t->d_ldv, s, h);
        }
        break;
    default: break;
    }
    if (pl->has_initial) q->s0 = state_view(&t->initial_state, s, h);
    if (pl->has_final) q->sN = state_view(&t->final_state, s, h);
    if (bwd) {
        if (pl->has_dfinal) q->dsN = state_view(&t->d_final_state, s, h);
        if (pl->want_dinitial) q->ds0 = state_view(&t->d_initial_state, s, h);
    }
}

static void run_item(const la_plan_t *pl, const cpu_plan_t *c, int64_t item, char *ws, double *partials) {
    int64_t s = item / pl->p.heads, h = item % pl->p.heads;
    cpu_seq_t q;
    build_seq(pl, s, h, partials, &q);
    int vec = is_vector_kind(pl->p.decay);
    float *states = (float *)(ws + c->kernel); /* the served forms' scratch states */
    switch (pl->op) {
    case LA_OP_DECODE: cpu_decode(pl, s, h, &q, states); break;
    case LA_OP_FORWARD:
    case LA_OP_STATE_FORWARD:
        if (pl->has_pool || pl->has_checkpoints)
            cpu_forward_served(pl, s, h, &q, states, ws, vec ? cpu_vector_forward : cpu_scalar_forward);
        else if (vec) cpu_vector_forward(&q, ws);
        else cpu_scalar_forward(&q, ws);
        break;
    case LA_OP_BACKWARD:
    case LA_OP_STATE_BACKWARD:
        if (vec) cpu_vector_backward(&q, ws);
        else cpu_scalar_backward(&q, ws);
        break;
    }
}

static la_status_t cpu_run(const la_plan_t *pl, const void *bplan, void *ws, size_t ws_bytes, void *stream, char *msg) {
    (void)stream;
    const cpu_plan_t *c = (const cpu_plan_t *)bplan;
    const int nt = c->threads;
    const size_t per = c->per_thread;
    char *base = (char *)(((uintptr_t)ws + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN);
    double *partials = (double *)(base + per * (size_t)nt);
    (void)ws_bytes;
    la_status_t st = la_check_slots(pl, partials, msg); /* before anything is written */
    if (st) return st;
    int64_t items = pl->num_seqs * pl->p.heads;
    int want_head_partials = pl->p.decay == LA_DECAY_SCALAR_HEAD && pl->want_dld &&
                             (pl->op == LA_OP_BACKWARD || pl->op == LA_OP_STATE_BACKWARD);
    if (want_head_partials) memset(partials, 0, (size_t)items * sizeof(double));
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
#endif
    for (int64_t it = 0; it < items; it++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        run_item(pl, c, it, base + per * (size_t)tid, partials);
    }
    if (want_head_partials) {
        /* Fixed order over sequences: deterministic whatever the schedule. */
        for (int64_t h = 0; h < pl->p.heads; h++) {
            double acc = 0.0;
            for (int64_t s = 0; s < pl->num_seqs; s++) acc += partials[s * pl->p.heads + h];
            ((float *)pl->t.d_ld.data)[h * pl->t.d_ld.stride[1]] = (float)acc;
        }
    }
    return LA_STATUS_SUCCESS;
}

static int cpu_available(void) { return 1; }

static void *cpu_ws_alloc(size_t bytes) { return malloc(bytes); }

const la_backend_ops_t la_cpu_backend = {
    .name = "cpu",
    .plan_bytes = sizeof(cpu_plan_t),
    .make_plan = cpu_make_plan,
    .workspace_size = cpu_workspace_size,
    .run = cpu_run,
    .describe = cpu_describe,
    .available = cpu_available,
    .ws_alloc = cpu_ws_alloc,
    .ws_free = free,
    .host_memory = 1,
};
