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

/* Plans the handle keeps: one slot per operation, keyed by everything a
 * backend plan depends on (not the data pointers, beyond their alignment).
 * A call whose key matches reuses the slot's plan: it costs the argument
 * checks and the launches. */
typedef struct plan_key {
    la_op_t op;
    int decay, packed, cu_device, num_threads, check_values;
    int pool_flags; /* index dtype, token slots, accepted counts */
    int64_t batch, heads, seqlen, dim_qk, dim_v, num_seqs, max_seqlen, checkpoint_interval;
    int dtype[LA_NUM_TENSORS];
    int64_t stride[LA_NUM_TENSORS][4];
    unsigned present, aligned16; /* bit i: tensor i given; its address is a multiple of 16 bytes */
    unsigned policy_gen;
} plan_key_t;

typedef struct plan_slot {
    int valid;
    plan_key_t key;
    _Alignas(16) unsigned char bplan[LA_BACKEND_PLAN_MAX];
} plan_slot_t;

struct la_handle {
    la_backend_t backend;
    const la_backend_ops_t *ops;
    void *backend_state; /* ops->state_create's */
    /* Set while a call runs.  A handle belongs to one thread at a time; a
     * second, concurrent call finds this set and is refused with
     * LA_STATUS_HANDLE_BUSY before it touches anything below. */
    atomic_flag busy;
    int num_threads;
    int check_values; /* la_check_mode_t */
    la_policy_t policy;
    unsigned policy_gen; /* bumped by la_set_policy: cached plans go stale */
    void *stream;
    void *ws; /* workspace in use */
    size_t ws_bytes;
    int ws_owned; /* the handle allocated ws */
    plan_slot_t plans[LA_OP_STATE_BACKWARD + 1];
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
    {LA_STATUS_BAD_SLOT, "LA_STATUS_BAD_SLOT: a state-pool slot is out of range or used by two sequences"},
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

void la_policy_init(la_policy_t *policy) {
    if (!policy) return;
    memset(policy, 0, sizeof *policy);
    policy->struct_size = sizeof *policy;
}

static la_status_t check_policy(const la_policy_t *q, char *msg) {
    if (q->struct_size != sizeof(la_policy_t)) {
        snprintf(msg, LA_MSG_LEN, "policy.struct_size is %zu, this library expects %zu (call la_policy_init)",
                 q->struct_size, sizeof(la_policy_t));
        return LA_STATUS_BAD_VERSION;
    }
    const la_switch_t sw[8] = {q->fwd_wgmma, q->fwd_rows,    q->fwd_warp_roles, q->state_wgmma,
                               q->bwd_wgmma, q->vec_kernels, q->vec_split,      q->vec_warp_roles};
    const char *names[8] = {"fwd_wgmma", "fwd_rows",    "fwd_warp_roles", "state_wgmma",
                            "bwd_wgmma", "vec_kernels", "vec_split",      "vec_warp_roles"};
    for (int i = 0; i < 8; i++)
        if ((unsigned)sw[i] > LA_SWITCH_ON) {
            snprintf(msg, LA_MSG_LEN, "policy.%s = %d: must be LA_SWITCH_AUTO, _OFF or _ON", names[i], (int)sw[i]);
            return LA_STATUS_BAD_PARAM;
        }
    if (q->tile_cap != 0 && q->tile_cap != 64 && q->tile_cap != 128) {
        snprintf(msg, LA_MSG_LEN, "policy.tile_cap = %d: must be 0, 64 or 128", q->tile_cap);
        return LA_STATUS_BAD_PARAM;
    }
    if (q->smem_kb < 0 || q->smem_kb > 1024 * 1024) {
        snprintf(msg, LA_MSG_LEN, "policy.smem_kb = %d: must lie in [0, 1048576] (0: the device's)", q->smem_kb);
        return LA_STATUS_BAD_PARAM;
    }
    if (q->dld_planes != 0 && q->dld_planes != 2) {
        snprintf(msg, LA_MSG_LEN, "policy.dld_planes = %d: must be 0 (automatic) or 2", q->dld_planes);
        return LA_STATUS_BAD_PARAM;
    }
    return LA_STATUS_SUCCESS;
}

/* The environment's overrides of the default policy, read once per handle
 * (A/B runs of whole programs: LA_CUDA_ROWS=0 python train.py).  Values the
 * policy would refuse are ignored. */
static void policy_from_env(la_policy_t *q) {
    const char *e;
    if ((e = getenv("LA_CUDA_TILE_CAP")) && (atoi(e) == 64 || atoi(e) == 128)) q->tile_cap = atoi(e);
    if ((e = getenv("LA_CUDA_SMEM_KB")) && atoi(e) > 0 && atoi(e) < 1024 * 1024) q->smem_kb = atoi(e);
    if ((e = getenv("LA_CUDA_WGMMA")) && e[0] == '1') q->fwd_wgmma = LA_SWITCH_ON;
    if ((e = getenv("LA_CUDA_ROWS")) && e[0] == '0') q->fwd_rows = LA_SWITCH_OFF;
    if ((e = getenv("LA_CUDA_WS")) && e[0] == '0') q->fwd_warp_roles = LA_SWITCH_OFF;
    if ((e = getenv("LA_CUDA_STATE_WG")) && e[0] == '0') q->state_wgmma = LA_SWITCH_OFF;
    if ((e = getenv("LA_CUDA_BWD_WG")) && e[0] == '0') q->bwd_wgmma = LA_SWITCH_OFF;
    if ((e = getenv("LA_CUDA_DLD_PLANES")) && atoi(e) == 2) q->dld_planes = 2;
    if ((e = getenv("LA_CUDA_VEC")) && e[0] == '0') q->vec_kernels = LA_SWITCH_OFF;
    if ((e = getenv("LA_CUDA_VEC_SPLIT")) && e[0] == '0') q->vec_split = LA_SWITCH_OFF;
    if ((e = getenv("LA_CUDA_VEC_WS")) && e[0] == '1') q->vec_warp_roles = LA_SWITCH_ON;
}

la_status_t la_create(la_handle_t **handle, la_backend_t backend) {
    if (!handle) return LA_STATUS_NULL_POINTER;
    *handle = NULL;
    if ((unsigned)backend > LA_BACKEND_CUDA) return LA_STATUS_BAD_PARAM;
    const la_backend_ops_t *ops = backend_ops(backend);
    if (!ops || !ops->available()) return LA_STATUS_BACKEND_UNAVAILABLE;
    la_handle_t *h = (la_handle_t *)calloc(1, sizeof *h);
    if (!h) return LA_STATUS_ALLOC_FAILED;
    if (ops->state_create) {
        la_status_t st = ops->state_create(&h->backend_state);
        if (st) {
            free(h);
            return st;
        }
    }
    atomic_flag_clear(&h->busy);
    h->backend = backend;
    h->ops = ops;
    h->check_values = LA_CHECK_VALUES_DEFERRED;
    la_policy_init(&h->policy);
    policy_from_env(&h->policy);
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
    if (h->ops->state_destroy && h->backend_state) h->ops->state_destroy(h->backend_state);
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

la_status_t la_set_check_values(la_handle_t *h, int mode) {
    la_status_t st = enter(h);
    if (st) return st;
    if (mode < LA_CHECK_VALUES_OFF || mode > LA_CHECK_VALUES_SYNC) {
        snprintf(h->msg, LA_MSG_LEN, "value check mode %d: must be LA_CHECK_VALUES_OFF, _DEFERRED or _SYNC", mode);
        return leave(h, LA_STATUS_BAD_PARAM);
    }
    h->check_values = mode;
    return leave(h, LA_STATUS_SUCCESS);
}

la_status_t la_check_errors(la_handle_t *h) {
    la_status_t st = enter(h);
    if (st) return st;
    if (h->ops->take_error) st = h->ops->take_error(h->backend_state, h->stream, 1, h->msg);
    return leave(h, st);
}

la_status_t la_set_policy(la_handle_t *h, const la_policy_t *policy) {
    la_status_t st = enter(h);
    if (st) return st;
    if (!policy) {
        snprintf(h->msg, LA_MSG_LEN, "policy is NULL");
        return leave(h, LA_STATUS_NULL_POINTER);
    }
    if ((st = check_policy(policy, h->msg))) return leave(h, st);
    h->policy = *policy;
    h->policy_gen++;
    return leave(h, LA_STATUS_SUCCESS);
}

la_status_t la_get_policy(la_handle_t *h, la_policy_t *policy) {
    la_status_t st = enter(h);
    if (st) return st;
    if (!policy) {
        snprintf(h->msg, LA_MSG_LEN, "policy is NULL");
        return leave(h, LA_STATUS_NULL_POINTER);
    }
    *policy = h->policy;
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
static void size_plan(const la_handle_t *h, la_op_t op, const la_problem_t *p, la_dtype_t dt, int want_dld,
                      la_plan_t *pl) {
    memset(pl, 0, sizeof *pl);
    pl->op = op;
    pl->p = *p;
    pl->packed = p->cu_seqlens != NULL;
    pl->cu_device = pl->packed && p->cu_seqlens_on_device;
    pl->num_seqs = pl->packed ? p->num_seqs : p->batch;
    pl->policy = &h->policy;
    pl->check_values = h->check_values;
    la_tensor_t *tok[8] = {&pl->t.q, &pl->t.k, &pl->t.v, &pl->t.o, &pl->t.d_o, &pl->t.dq, &pl->t.dk, &pl->t.dv};
    for (int i = 0; i < 8; i++) tok[i]->dtype = dt;
    /* A pool where the operation takes one: it costs scratch on some backends. */
    pl->has_pool = op == LA_OP_FORWARD || op == LA_OP_STATE_FORWARD || op == LA_OP_DECODE;
    pl->has_checkpoints = p->checkpoint_interval > 0;
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
    if (p->cu_seqlens_on_device && h->ops->host_memory) {
        snprintf(h->msg, LA_MSG_LEN, "cu_seqlens in device memory need the CUDA backend");
        return LA_STATUS_NOT_SUPPORTED;
    }
    size_t most = 0;
    const la_dtype_t dts[3] = {LA_DTYPE_F32, LA_DTYPE_F16, LA_DTYPE_BF16};
    _Alignas(16) unsigned char bplan[LA_BACKEND_PLAN_MAX];
    char scratch[LA_MSG_LEN];
    for (int i = 0; i < 3; i++)
        for (int dld = 0; dld <= 1; dld++) {
            la_plan_t pl;
            size_plan(h, op, p, dts[i], dld, &pl);
            /* A dtype or choice this backend refuses needs no workspace. */
            if (h->ops->make_plan(&pl, h->num_threads, bplan, scratch) != LA_STATUS_SUCCESS) continue;
            size_t b = h->ops->workspace_size(&pl, bplan);
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

static void make_key(const la_handle_t *h, const la_plan_t *pl, plan_key_t *k) {
    memset(k, 0, sizeof *k); /* padding too: keys compare with memcmp */
    k->op = pl->op;
    k->decay = (int)pl->p.decay;
    k->packed = pl->packed;
    k->cu_device = pl->cu_device;
    k->num_threads = h->num_threads;
    k->check_values = pl->check_values;
    k->batch = pl->p.batch;
    k->heads = pl->p.heads;
    k->seqlen = pl->p.seqlen;
    k->dim_qk = pl->p.dim_qk;
    k->dim_v = pl->p.dim_v;
    k->num_seqs = pl->num_seqs;
    k->max_seqlen = pl->p.max_seqlen;
    k->checkpoint_interval = pl->p.checkpoint_interval;
    if (pl->has_pool)
        k->pool_flags = 1 + (int)pl->t.pool.index_dtype + 2 * (pl->t.pool.token_slot != NULL) +
                        4 * (pl->t.pool.num_accepted != NULL);
    for (int i = 0; i < LA_NUM_TENSORS; i++) {
        const la_tensor_t *t = la_tensor_by_id((la_tensors_t *)&pl->t, (la_tensor_id_t)i);
        if (!t->data) continue;
        k->present |= 1u << i;
        if ((uintptr_t)t->data % 16 == 0) k->aligned16 |= 1u << i;
        k->dtype[i] = (int)t->dtype;
        memcpy(k->stride[i], t->stride, sizeof t->stride);
    }
    k->policy_gen = h->policy_gen;
}

/* Validate the call and find its backend plan: the handle's cached one when
 * the key matches, else a new one (cached, except for host offsets, whose
 * contents shape the plan). */
static la_status_t prepare(la_handle_t *h, la_op_t op, const la_problem_t *p, const la_tensors_t *t, int host_check,
                           la_plan_t *pl, const void **bplan) {
    la_status_t st = la_build_plan(op, p, t, host_check && h->ops->host_memory, pl, h->msg);
    if (st) return st;
    if (pl->cu_device && h->ops->host_memory) {
        snprintf(h->msg, LA_MSG_LEN,
                 "cu_seqlens in device memory need the CUDA backend (give the %s backend a host array)", h->ops->name);
        return LA_STATUS_NOT_SUPPORTED;
    }
    pl->check_values = h->check_values;
    pl->policy = &h->policy;
    pl->backend_state = h->backend_state;
    plan_slot_t *slot = &h->plans[op];
    plan_key_t key;
    make_key(h, pl, &key);
    const int cacheable = !(pl->packed && !pl->cu_device);
    if (cacheable && slot->valid && memcmp(&key, &slot->key, sizeof key) == 0) {
        *bplan = slot->bplan;
        return LA_STATUS_SUCCESS;
    }
    slot->valid = 0;
    if ((st = h->ops->make_plan(pl, h->num_threads, slot->bplan, h->msg))) return st;
    slot->key = key;
    slot->valid = cacheable;
    *bplan = slot->bplan;
    return LA_STATUS_SUCCESS;
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
    const void *bp = NULL;
    st = prepare(h, op, p, t, 1, &pl, &bp);
    if (st == LA_STATUS_SUCCESS) *bytes = h->ops->workspace_size(&pl, bp);
    return leave(h, st);
}

la_status_t la_supports(la_handle_t *h, la_op_t op, const la_problem_t *p, const la_tensors_t *t) {
    la_status_t st = enter(h);
    if (st) return st;
    la_plan_t pl;
    const void *bp = NULL;
    st = prepare(h, op, p, t, 0, &pl, &bp);
    return leave(h, st);
}

la_status_t la_describe(la_handle_t *h, la_op_t op, const la_problem_t *p, const la_tensors_t *t, char *buf,
                        size_t len) {
    la_status_t st = enter(h);
    if (st) return st;
    if (!buf || len == 0) {
        snprintf(h->msg, LA_MSG_LEN, "buf is NULL or len is 0");
        return leave(h, LA_STATUS_NULL_POINTER);
    }
    la_plan_t pl;
    const void *bp = NULL;
    st = prepare(h, op, p, t, 1, &pl, &bp);
    if (st == LA_STATUS_SUCCESS) h->ops->describe(&pl, bp, buf, len);
    return leave(h, st);
}

/* Report a deferred value-check error of an earlier call, if one arrived:
 * the call that finds it returns it and does nothing else. */
static la_status_t earlier_error(la_handle_t *h) {
    if (!h->ops->take_error) return LA_STATUS_SUCCESS;
    return h->ops->take_error(h->backend_state, h->stream, 0, h->msg);
}

/* Validate, plan (or find the plan), make sure of the workspace, run. */
static la_status_t run_plan(la_handle_t *h, la_op_t op, const la_problem_t *p, const la_tensors_t *t) {
    la_status_t st = earlier_error(h);
    if (st) return st;
    la_plan_t pl;
    const void *bp = NULL;
    if ((st = prepare(h, op, p, t, 1, &pl, &bp))) return st;
    size_t need = h->ops->workspace_size(&pl, bp);
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
    return h->ops->run(&pl, bp, h->ws, h->ws_bytes, h->stream, h->msg);
}

static la_status_t run_op(la_handle_t *h, la_op_t op, const la_problem_t *p, const la_tensors_t *t) {
    la_status_t st = enter(h);
    if (st) return st;
    return leave(h, run_plan(h, op, p, t));
}

la_status_t la_execute(la_handle_t *h, la_op_t op, const la_problem_t *p, const la_tensors_t *t, void *workspace,
                       size_t workspace_bytes, size_t *needed) {
    la_status_t st = enter(h);
    if (st) return st;
    if ((st = earlier_error(h))) return leave(h, st);
    if ((unsigned)op > LA_OP_STATE_BACKWARD) {
        snprintf(h->msg, LA_MSG_LEN, "unknown operation %d", (int)op);
        return leave(h, LA_STATUS_BAD_PARAM);
    }
    la_plan_t pl;
    const void *bp = NULL;
    if ((st = prepare(h, op, p, t, 1, &pl, &bp))) return leave(h, st);
    const size_t need = h->ops->workspace_size(&pl, bp);
    if (needed) *needed = need;
    if (need > workspace_bytes || (need && !workspace)) {
        snprintf(h->msg, LA_MSG_LEN, "workspace of %zu bytes given, this call needs %zu",
                 workspace ? workspace_bytes : 0, need);
        return leave(h, LA_STATUS_WORKSPACE_TOO_SMALL);
    }
    return leave(h, h->ops->run(&pl, bp, workspace, workspace_bytes, h->stream, h->msg));
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
