/*
 * api.c - the public entry points: handle, messages, workspace, dispatch.
 *
 * Every operation goes the same way: build and validate a plan
 * (validate.c), ask the backend whether it supports the plan (the same table
 * its kernels dispatch from), make sure the workspace is large enough, run.
 */
#include "validate.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct la_handle {
    la_backend_t backend;
    const la_backend_ops_t *ops;
    /* Set while a call runs.  A handle belongs to one thread at a time; a
     * second, concurrent call finds this set and is refused with
     * LA_STATUS_HANDLE_BUSY before it touches anything below. */
    atomic_flag busy;
    int num_threads;
    int no_value_checks; /* la_set_check_values(h, 0) */
    void *stream;
    void *ws; /* workspace in use */
    size_t ws_bytes;
    int ws_owned; /* the handle allocated ws */
    char msg[LA_MSG_LEN];
};

/* Take the handle for one call, and clear its message: every call but the
 * two accessors starts from "" so that la_last_error only ever describes the
 * latest call.  Pair with leave(). */
static la_status_t enter(la_handle_t *h) {
    if (!h) return LA_STATUS_NULL_POINTER;
    if (atomic_flag_test_and_set_explicit(&h->busy, memory_order_acquire)) return LA_STATUS_HANDLE_BUSY;
    h->msg[0] = '\0';
    return LA_STATUS_SUCCESS;
}

static la_status_t leave(la_handle_t *h, la_status_t st) {
    atomic_flag_clear_explicit(&h->busy, memory_order_release);
    return st;
}

static const struct {
    la_status_t st;
    const char *s;
} status_strings[] = {
    {LA_STATUS_SUCCESS, "LA_STATUS_SUCCESS: success"},
    {LA_STATUS_BAD_PARAM, "LA_STATUS_BAD_PARAM: invalid argument"},
    {LA_STATUS_NULL_POINTER, "LA_STATUS_NULL_POINTER: a required pointer is NULL"},
    {LA_STATUS_BAD_SHAPE, "LA_STATUS_BAD_SHAPE: sizes are invalid or inconsistent"},
    {LA_STATUS_BAD_STRIDE, "LA_STATUS_BAD_STRIDE: strides are negative or an output overlaps itself"},
    {LA_STATUS_BAD_DECAY, "LA_STATUS_BAD_DECAY: a log decay is positive, NaN or out of range"},
    {LA_STATUS_BAD_SEQLENS, "LA_STATUS_BAD_SEQLENS: cu_seqlens are invalid"},
    {LA_STATUS_OVERLAP, "LA_STATUS_OVERLAP: an output overlaps another tensor"},
    {LA_STATUS_BAD_VERSION, "LA_STATUS_BAD_VERSION: struct_size does not match this library"},
    {LA_STATUS_BAD_SCALE, "LA_STATUS_BAD_SCALE: scale is not finite"},
    {LA_STATUS_HANDLE_BUSY, "LA_STATUS_HANDLE_BUSY: another call is running on this handle"},
    {LA_STATUS_NOT_SUPPORTED, "LA_STATUS_NOT_SUPPORTED: not supported by this backend"},
    {LA_STATUS_UNSUPPORTED_DTYPE, "LA_STATUS_UNSUPPORTED_DTYPE: dtype not supported"},
    {LA_STATUS_UNSUPPORTED_HEAD_DIM, "LA_STATUS_UNSUPPORTED_HEAD_DIM: head dim not supported"},
    {LA_STATUS_UNSUPPORTED_DECAY, "LA_STATUS_UNSUPPORTED_DECAY: decay kind not supported by this backend"},
    {LA_STATUS_BACKEND_UNAVAILABLE, "LA_STATUS_BACKEND_UNAVAILABLE: backend not built or no device"},
    {LA_STATUS_ALLOC_FAILED, "LA_STATUS_ALLOC_FAILED: memory allocation failed"},
    {LA_STATUS_WORKSPACE_TOO_SMALL, "LA_STATUS_WORKSPACE_TOO_SMALL: the caller's workspace is too small"},
    {LA_STATUS_EXECUTION_FAILED, "LA_STATUS_EXECUTION_FAILED: the backend failed while running"},
    {LA_STATUS_INTERNAL_ERROR, "LA_STATUS_INTERNAL_ERROR: internal error"},
};

const char *la_status_string(la_status_t status) {
    for (size_t i = 0; i < sizeof status_strings / sizeof status_strings[0]; i++)
        if (status_strings[i].st == status) return status_strings[i].s;
    return "LA_STATUS_UNKNOWN: not a lightning-attn status";
}

int la_status_category(la_status_t status) { return ((int)status / 100) * 100; }

size_t la_dtype_size(la_dtype_t dtype) {
    switch (dtype) {
    case LA_DTYPE_F32: return 4;
    case LA_DTYPE_F16:
    case LA_DTYPE_BF16: return 2;
    default: return 0;
    }
}

void la_problem_init(la_problem_t *p) {
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->scale = 1.0f;
}

void la_tensors_init(la_tensors_t *t) {
    memset(t, 0, sizeof *t);
    t->struct_size = sizeof *t;
}

/* Extents are clamped to >= 0 and the products saturate at INT64_MAX, so a
 * shape too large to address gives strides the call refuses (BAD_STRIDE or,
 * from the problem's sizes, BAD_SHAPE) instead of wrapping. */
static int64_t saturating_product(int64_t a, int64_t b) {
    if (a <= 0 || b <= 0) return 0;
    return b > INT64_MAX / a ? INT64_MAX : a * b;
}

void la_tensor_contiguous(la_tensor_t *t, void *data, la_dtype_t dtype, int64_t d0, int64_t d1, int64_t d2,
                          int64_t d3) {
    (void)d0;
    t->data = data;
    t->dtype = dtype;
    t->stride[3] = 1;
    t->stride[2] = d3 > 0 ? d3 : 0;
    t->stride[1] = saturating_product(d2, t->stride[2]);
    t->stride[0] = saturating_product(d1, t->stride[1]);
}

static const la_backend_ops_t *backend_ops(la_backend_t b) {
    switch (b) {
    case LA_BACKEND_CPU: return &la_cpu_backend;
    case LA_BACKEND_CUDA: return la_cuda_backend_ptr;
    default: return NULL;
    }
}

int la_backend_available(la_backend_t backend) {
    const la_backend_ops_t *ops = backend_ops(backend);
    return ops != NULL && ops->available();
}

la_status_t la_create(la_handle_t **handle, la_backend_t backend) {
    if (!handle) return LA_STATUS_NULL_POINTER;
    *handle = NULL;
    if ((unsigned)backend > LA_BACKEND_CUDA) return LA_STATUS_BAD_PARAM;
    const la_backend_ops_t *ops = backend_ops(backend);
    if (!ops || !ops->available()) return LA_STATUS_BACKEND_UNAVAILABLE;
    la_handle_t *h = (la_handle_t *)calloc(1, sizeof *h);
    if (!h) return LA_STATUS_ALLOC_FAILED;
    atomic_flag_clear(&h->busy);
    h->backend = backend;
    h->ops = ops;
    *handle = h;
    return LA_STATUS_SUCCESS;
}

static void release_workspace(la_handle_t *h) {
    if (h->ws_owned && h->ws) h->ops->ws_free(h->ws);
    h->ws = NULL;
    h->ws_bytes = 0;
    h->ws_owned = 0;
}

la_status_t la_destroy(la_handle_t *h) {
    la_status_t st = enter(h);
    if (st) return st;
    release_workspace(h);
    free(h);
    return LA_STATUS_SUCCESS;
}

la_backend_t la_handle_backend(const la_handle_t *h) { return h ? h->backend : LA_BACKEND_CPU; }

const char *la_last_error(const la_handle_t *h) { return h ? h->msg : "handle is NULL"; }

la_status_t la_set_num_threads(la_handle_t *h, int n) {
    la_status_t st = enter(h);
    if (st) return st;
    if (n < 0 || n > LA_MAX_THREADS) {
        snprintf(h->msg, LA_MSG_LEN, "num_threads %d: must lie in [0, %d] (0 = all cores)", n, LA_MAX_THREADS);
        return leave(h, LA_STATUS_BAD_PARAM);
    }
    h->num_threads = n;
    return leave(h, LA_STATUS_SUCCESS);
}

la_status_t la_set_stream(la_handle_t *h, void *stream) {
    la_status_t st = enter(h);
    if (st) return st;
    h->stream = stream;
    return leave(h, LA_STATUS_SUCCESS);
}

la_status_t la_set_check_values(la_handle_t *h, int enable) {
    la_status_t st = enter(h);
    if (st) return st;
    h->no_value_checks = !enable;
    return leave(h, LA_STATUS_SUCCESS);
}

la_status_t la_set_workspace(la_handle_t *h, void *ws, size_t bytes) {
    la_status_t st = enter(h);
    if (st) return st;
    release_workspace(h);
    if (ws) {
        h->ws = ws;
        h->ws_bytes = bytes;
    }
    return leave(h, LA_STATUS_SUCCESS);
}

/* A plan for size queries only: the shapes matter, the pointers do not.
 * The tensors are unknown, so the figure must cover every call the problem
 * allows: a backend's plan (tiles, segments) depends on the input dtype and,
 * for a backward, on whether the decay gradient is wanted; the query takes
 * the largest workspace over those choices (every optional state given). */
static void size_plan(la_op_t op, const la_problem_t *p, la_dtype_t dt, int want_dld, la_plan_t *pl) {
    memset(pl, 0, sizeof *pl);
    pl->op = op;
    pl->p = *p;
    pl->packed = p->cu_seqlens != NULL;
    pl->num_seqs = pl->packed ? p->num_seqs : p->batch;
    la_tensor_t *tok[8] = {&pl->t.q, &pl->t.k, &pl->t.v, &pl->t.o, &pl->t.d_o, &pl->t.dq, &pl->t.dk, &pl->t.dv};
    for (int i = 0; i < 8; i++) tok[i]->dtype = dt;
    if (op == LA_OP_BACKWARD || op == LA_OP_STATE_BACKWARD) {
        pl->want_dld = want_dld && p->decay != LA_DECAY_NONE;
        pl->want_dldv = want_dld && p->decay == LA_DECAY_VECTOR_KV;
        pl->want_dinitial = pl->has_dfinal = 1;
    }
}

static la_status_t workspace_bound(la_handle_t *h, la_op_t op, const la_problem_t *p, size_t *bytes) {
    if (!p || !bytes) {
        snprintf(h->msg, LA_MSG_LEN, "%s is NULL", !p ? "problem" : "bytes");
        return LA_STATUS_NULL_POINTER;
    }
    la_status_t st = la_check_problem_for(op, p, h->msg);
    if (st) return st;
    size_t most = 0;
    const la_dtype_t dts[3] = {LA_DTYPE_F32, LA_DTYPE_F16, LA_DTYPE_BF16};
    for (int i = 0; i < 3; i++)
        for (int dld = 0; dld <= 1; dld++) {
            la_plan_t pl;
            size_plan(op, p, dts[i], dld, &pl);
            size_t b = h->ops->workspace_size(&pl, h->num_threads);
            if (b > most) most = b;
        }
    *bytes = most;
    return LA_STATUS_SUCCESS;
}

la_status_t la_workspace_size(la_handle_t *h, la_op_t op, const la_problem_t *p, size_t *bytes) {
    la_status_t st = enter(h);
    if (st) return st;
    return leave(h, workspace_bound(h, op, p, bytes));
}

la_status_t la_workspace_size_for(la_handle_t *h, la_op_t op, const la_problem_t *p, const la_tensors_t *t,
                                  size_t *bytes) {
    la_status_t st = enter(h);
    if (st) return st;
    if (!bytes) {
        snprintf(h->msg, LA_MSG_LEN, "bytes is NULL");
        return leave(h, LA_STATUS_NULL_POINTER);
    }
    la_plan_t pl;
    st = la_build_plan(op, p, t, h->ops->host_memory, &pl, h->msg);
    if (st == LA_STATUS_SUCCESS) st = h->ops->supports(&pl, h->msg);
    if (st == LA_STATUS_SUCCESS) *bytes = h->ops->workspace_size(&pl, h->num_threads);
    return leave(h, st);
}

la_status_t la_supports(la_handle_t *h, la_op_t op, const la_problem_t *p, const la_tensors_t *t) {
    la_status_t st = enter(h);
    if (st) return st;
    la_plan_t pl;
    st = la_build_plan(op, p, t, 0, &pl, h->msg);
    if (st == LA_STATUS_SUCCESS) st = h->ops->supports(&pl, h->msg);
    return leave(h, st);
}

/* Validate, check support, size the workspace, run. */
static la_status_t run_plan(la_handle_t *h, la_op_t op, const la_problem_t *p, const la_tensors_t *t) {
    la_plan_t pl;
    la_status_t st = la_build_plan(op, p, t, h->ops->host_memory, &pl, h->msg);
    if (st) return st;
    pl.check_values = !h->no_value_checks;
    if ((st = h->ops->supports(&pl, h->msg))) return st;
    size_t need = h->ops->workspace_size(&pl, h->num_threads);
    if (need > h->ws_bytes) {
        if (h->ws && !h->ws_owned) {
            snprintf(h->msg, LA_MSG_LEN, "workspace of %zu bytes given, this call needs %zu", h->ws_bytes, need);
            return LA_STATUS_WORKSPACE_TOO_SMALL;
        }
        release_workspace(h);
        h->ws = need == SIZE_MAX ? NULL : h->ops->ws_alloc(need);
        if (!h->ws) {
            snprintf(h->msg, LA_MSG_LEN, "could not allocate a workspace of %zu bytes", need);
            return LA_STATUS_ALLOC_FAILED;
        }
        h->ws_bytes = need;
        h->ws_owned = 1;
    }
    return h->ops->run(&pl, h->ws, h->ws_bytes, h->num_threads, h->stream, h->msg);
}

static la_status_t run_op(la_handle_t *h, la_op_t op, const la_problem_t *p, const la_tensors_t *t) {
    la_status_t st = enter(h);
    if (st) return st;
    return leave(h, run_plan(h, op, p, t));
}

la_status_t la_forward(la_handle_t *h, const la_problem_t *p, const la_tensors_t *t) {
    return run_op(h, LA_OP_FORWARD, p, t);
}
la_status_t la_backward(la_handle_t *h, const la_problem_t *p, const la_tensors_t *t) {
    return run_op(h, LA_OP_BACKWARD, p, t);
}
la_status_t la_decode(la_handle_t *h, const la_problem_t *p, const la_tensors_t *t) {
    return run_op(h, LA_OP_DECODE, p, t);
}
la_status_t la_state_forward(la_handle_t *h, const la_problem_t *p, const la_tensors_t *t) {
    return run_op(h, LA_OP_STATE_FORWARD, p, t);
}
la_status_t la_state_backward(la_handle_t *h, const la_problem_t *p, const la_tensors_t *t) {
    return run_op(h, LA_OP_STATE_BACKWARD, p, t);
}
