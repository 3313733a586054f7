/*
 * validate.c - every check on the caller's arguments, and the plan built
 * from them.
 *
 * One table (tensor_roles) says, for each operation, which tensors it reads
 * and writes and which are optional; the checks below walk it, so adding an
 * operation or a tensor is one row or one column.  Each failure returns the
 * most specific status and writes a message naming the tensor and the value.
 * Nothing is written to any output before all checks pass.
 */
#include "validate.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum role { UNUSED = 0, IN_REQ, IN_OPT, OUT_REQ, OUT_OPT };

/* Columns follow enum la_tensor_id.  The serving columns: a pool stands in
 * for initial_state and final_state (role_of), checkpoints come with
 * problem.checkpoint_interval. */
static const unsigned char tensor_roles[5][LA_NUM_TENSORS] = {
    /*                 q       k       v       ld      ldv     s0      o        sN       d_o     dsN     dq       dk       dv       d_ld     d_ldv    ds0      pool     ckpt */
    [LA_OP_FORWARD] = {IN_REQ, IN_REQ, IN_REQ, IN_REQ, IN_REQ, IN_OPT, OUT_REQ, OUT_OPT, UNUSED, UNUSED, UNUSED, UNUSED,
                       UNUSED, UNUSED, UNUSED, UNUSED, OUT_OPT, OUT_OPT},
    [LA_OP_BACKWARD] = {IN_REQ, IN_REQ, IN_REQ, IN_REQ, IN_REQ, IN_OPT, UNUSED, UNUSED, IN_REQ, IN_OPT, OUT_REQ,
                        OUT_REQ, OUT_REQ, OUT_OPT, OUT_OPT, OUT_OPT, UNUSED, UNUSED},
    [LA_OP_DECODE] = {IN_REQ, IN_REQ, IN_REQ, IN_REQ, IN_REQ, IN_REQ, OUT_REQ, OUT_REQ, UNUSED, UNUSED, UNUSED, UNUSED,
                      UNUSED, UNUSED, UNUSED, UNUSED, OUT_OPT, UNUSED},
    [LA_OP_STATE_FORWARD] = {UNUSED, IN_REQ, IN_REQ, IN_REQ, IN_REQ, IN_OPT, UNUSED, OUT_REQ, UNUSED, UNUSED, UNUSED,
                             UNUSED, UNUSED, UNUSED, UNUSED, UNUSED, OUT_OPT, OUT_OPT},
    [LA_OP_STATE_BACKWARD] = {UNUSED, IN_REQ, IN_REQ, IN_REQ, IN_REQ, IN_OPT, UNUSED, UNUSED, UNUSED, IN_REQ, UNUSED,
                              OUT_REQ, OUT_REQ, OUT_OPT, OUT_OPT, OUT_OPT, UNUSED, UNUSED},
};

static const char *const tensor_names[LA_NUM_TENSORS] = {
    "q",  "k",  "v",  "ld",   "ldv",   "initial_state",   "o",           "final_state", "d_o", "d_final_state",
    "dq", "dk", "dv", "d_ld", "d_ldv", "d_initial_state", "pool.states", "checkpoints"};

const char *la_tensor_name(la_tensor_id_t id) { return tensor_names[id]; }

la_tensor_t *la_tensor_by_id(la_tensors_t *t, la_tensor_id_t id) {
    la_tensor_t *all[LA_NUM_TENSORS] = {&t->q,           &t->k,
                                        &t->v,           &t->ld,
                                        &t->ldv,         &t->initial_state,
                                        &t->o,           &t->final_state,
                                        &t->d_o,         &t->d_final_state,
                                        &t->dq,          &t->dk,
                                        &t->dv,          &t->d_ld,
                                        &t->d_ldv,       &t->d_initial_state,
                                        &t->pool.states, &t->checkpoints};
    return all[id];
}

/* Does the decay kind use this decay tensor at all? */
static int decay_uses(la_decay_t kind, la_tensor_id_t id) {
    switch (id) {
    case LA_T_LD:
    case LA_T_DLD: return kind != LA_DECAY_NONE;
    case LA_T_LDV:
    case LA_T_DLDV: return kind == LA_DECAY_VECTOR_KV;
    default: return 1;
    }
}

/* The tensor's role in this operation, after the decay kind and the serving
 * fields are applied: a pool takes the place of the dense states, and
 * checkpoints are written exactly when an interval is set (check_serving
 * refuses the tensors this leaves given but unused). */
static enum role role_of(const la_plan_t *pl, la_tensor_id_t id) {
    if (!decay_uses(pl->p.decay, id)) return UNUSED;
    enum role r = (enum role)tensor_roles[pl->op][id];
    if (pl->t.pool.states.data && (id == LA_T_S0 || id == LA_T_SN)) return UNUSED;
    if (id == LA_T_CKPT && r != UNUSED) /* no rows (every sequence shorter than the interval): may be NULL */
        return pl->p.checkpoint_interval <= 0 ? UNUSED : la_plan_checkpoint_rows(pl) > 0 ? OUT_REQ : OUT_OPT;
    return r;
}

/* Logical extents of a tensor (see the header's table). */
void la_tensor_dims(const la_plan_t *pl, la_tensor_id_t id, int64_t dims[4]) {
    const la_problem_t *p = &pl->p;
    int64_t B = p->batch, H = p->heads, N = p->seqlen, D = p->dim_qk, E = p->dim_v;
    int64_t S = pl->num_seqs;
    switch (id) {
    case LA_T_Q:
    case LA_T_K:
    case LA_T_DQ:
    case LA_T_DK:
        dims[0] = B;
        dims[1] = H;
        dims[2] = N;
        dims[3] = D;
        return;
    case LA_T_V:
    case LA_T_O:
    case LA_T_DO:
    case LA_T_DV:
        dims[0] = B;
        dims[1] = H;
        dims[2] = N;
        dims[3] = E;
        return;
    case LA_T_LD:
    case LA_T_DLD:
        if (p->decay == LA_DECAY_SCALAR_HEAD) {
            dims[0] = 1;
            dims[1] = H;
            dims[2] = 1;
            dims[3] = 1;
        } else if (p->decay == LA_DECAY_SCALAR_TOKEN) {
            dims[0] = B;
            dims[1] = H;
            dims[2] = N;
            dims[3] = 1;
        } else {
            dims[0] = B;
            dims[1] = H;
            dims[2] = N;
            dims[3] = D;
        }
        return;
    case LA_T_LDV:
    case LA_T_DLDV:
        dims[0] = B;
        dims[1] = H;
        dims[2] = N;
        dims[3] = E;
        return;
    case LA_T_POOL:
        dims[0] = pl->t.pool.num_slots;
        dims[1] = H;
        dims[2] = D;
        dims[3] = E;
        return;
    case LA_T_CKPT:
        dims[0] = la_plan_checkpoint_rows(pl);
        dims[1] = H;
        dims[2] = D;
        dims[3] = E;
        return;
    default: /* states */
        dims[0] = S;
        dims[1] = H;
        dims[2] = D;
        dims[3] = E;
        return;
    }
}

static int is_state(la_tensor_id_t id) { return id == LA_T_S0 || id == LA_T_SN || id == LA_T_DSN || id == LA_T_DS0; }
static int is_decay(la_tensor_id_t id) { return id == LA_T_LD || id == LA_T_LDV || id == LA_T_DLD || id == LA_T_DLDV; }

#define FAIL(st, ...)                           \
    do {                                        \
        snprintf(msg, LA_MSG_LEN, __VA_ARGS__); \
        return (st);                            \
    } while (0)

/* Byte range [lo, hi) a tensor touches; empty tensors give lo == hi. */
static void byte_range(const la_tensor_t *t, const int64_t dims[4], uintptr_t *lo, uintptr_t *hi) {
    int64_t last = 0;
    for (int i = 0; i < 4; i++) {
        if (dims[i] == 0) {
            *lo = *hi = (uintptr_t)t->data;
            return;
        }
        if (dims[i] > 1) last += (dims[i] - 1) * t->stride[i];
    }
    size_t es = la_dtype_size(t->dtype);
    *lo = (uintptr_t)t->data;
    *hi = (uintptr_t)t->data + (uintptr_t)(last + 1) * es;
}

/* Outputs must not map two indices to one element: sort the dims of extent >
 * 1 by stride; each stride must reach past everything the smaller ones span.
 * An empty tensor has no elements to collide. */
static int self_overlaps(const la_tensor_t *t, const int64_t dims[4]) {
    int idx[4], n = 0;
    if (dims[0] == 0 || dims[1] == 0 || dims[2] == 0 || dims[3] == 0) return 0;
    for (int i = 0; i < 4; i++)
        if (dims[i] > 1) idx[n++] = i;
    for (int a = 1; a < n; a++)
        for (int b = a; b > 0 && t->stride[idx[b]] < t->stride[idx[b - 1]]; b--) {
            int tmp = idx[b];
            idx[b] = idx[b - 1];
            idx[b - 1] = tmp;
        }
    int64_t span = 0; /* largest offset reachable by the dims so far */
    for (int a = 0; a < n; a++) {
        int i = idx[a];
        if (t->stride[i] <= span) return 1;
        span += (dims[i] - 1) * t->stride[i];
    }
    return 0;
}

/* Every tensor the problem implies must be addressable (LA_MAX_BYTES), so
 * that no size derived from the problem can wrap.  The states count one per
 * sequence and head whether or not the call passes any.  The pair counts are
 * bounded too (far above any real model): a backend's scratch multiplies
 * them by padded head dims and chunk counts, and those products must stay
 * within 64 bits as well. */
static la_status_t check_problem_size(const la_problem_t *p, char *msg) {
    const int64_t S = p->cu_seqlens ? p->num_seqs : p->batch;
    const int64_t X = p->dim_qk > p->dim_v ? p->dim_qk : p->dim_v;
    const int64_t pairs = la_mul_capped(S, p->heads);
    if (pairs < 0 || pairs > LA_MAX_SEQ_HEADS)
        FAIL(LA_STATUS_BAD_SHAPE, "problem too large: %lld sequences x %lld heads pass 2^40 (sequence, head) pairs",
             (long long)S, (long long)p->heads);
    const int64_t token_heads = la_mul_capped(la_mul_capped(p->batch, p->heads), p->seqlen);
    if (token_heads < 0 || token_heads > LA_MAX_TOKEN_HEADS)
        FAIL(LA_STATUS_BAD_SHAPE, "problem too large: B*H*N = %lld*%lld*%lld passes 2^48 (token, head) pairs",
             (long long)p->batch, (long long)p->heads, (long long)p->seqlen);
    const int64_t tok = la_mul_capped(token_heads, X);
    if (la_mul_capped(tok, 4) < 0)
        FAIL(LA_STATUS_BAD_SHAPE, "problem too large: B*H*N*max(D,E) = %lld*%lld*%lld*%lld elements pass 2^62 bytes",
             (long long)p->batch, (long long)p->heads, (long long)p->seqlen, (long long)X);
    const int64_t st = la_mul_capped(la_mul_capped(la_mul_capped(S, p->heads), p->dim_qk), p->dim_v);
    if (la_mul_capped(st, 4) < 0)
        FAIL(LA_STATUS_BAD_SHAPE,
             "problem too large: %lld sequences x %lld heads of %lldx%lld fp32 states pass 2^62 bytes", (long long)S,
             (long long)p->heads, (long long)p->dim_qk, (long long)p->dim_v);
    return LA_STATUS_SUCCESS;
}

la_status_t la_check_problem(const la_problem_t *p, char *msg) {
    if (p->struct_size != sizeof(la_problem_t))
        FAIL(LA_STATUS_BAD_VERSION, "problem.struct_size is %zu, this library expects %zu (call la_problem_init)",
             p->struct_size, sizeof(la_problem_t));
    if (p->batch < 1) FAIL(LA_STATUS_BAD_SHAPE, "batch %lld < 1", (long long)p->batch);
    if (p->heads < 1) FAIL(LA_STATUS_BAD_SHAPE, "heads %lld < 1", (long long)p->heads);
    if (p->seqlen < 0) FAIL(LA_STATUS_BAD_SHAPE, "seqlen %lld < 0", (long long)p->seqlen);
    if (p->dim_qk < 1) FAIL(LA_STATUS_BAD_SHAPE, "head dim D = %lld < 1", (long long)p->dim_qk);
    if (p->dim_v < 1) FAIL(LA_STATUS_BAD_SHAPE, "head dim E = %lld < 1", (long long)p->dim_v);
    if (p->dim_qk > LA_MAX_HEAD_DIM)
        FAIL(LA_STATUS_UNSUPPORTED_HEAD_DIM, "head dim D = %lld > %d", (long long)p->dim_qk, LA_MAX_HEAD_DIM);
    if (p->dim_v > LA_MAX_HEAD_DIM)
        FAIL(LA_STATUS_UNSUPPORTED_HEAD_DIM, "head dim E = %lld > %d", (long long)p->dim_v, LA_MAX_HEAD_DIM);
    if ((unsigned)p->decay > LA_DECAY_VECTOR_KV) FAIL(LA_STATUS_BAD_PARAM, "unknown decay kind %d", (int)p->decay);
    if (!isfinite(p->scale)) FAIL(LA_STATUS_BAD_SCALE, "scale %g is not finite", (double)p->scale);
    if (p->cu_seqlens_on_device != 0 && p->cu_seqlens_on_device != 1)
        FAIL(LA_STATUS_BAD_PARAM, "cu_seqlens_on_device is %d, must be 0 or 1", p->cu_seqlens_on_device);
    if (p->max_seqlen < 0) FAIL(LA_STATUS_BAD_SHAPE, "max_seqlen %lld < 0", (long long)p->max_seqlen);
    if (p->checkpoint_interval < 0 || p->checkpoint_interval % LA_CHECKPOINT_ALIGN != 0)
        FAIL(LA_STATUS_BAD_PARAM, "checkpoint_interval %lld: must be 0 (none) or a positive multiple of %d",
             (long long)p->checkpoint_interval, LA_CHECKPOINT_ALIGN);
    if (p->cu_seqlens) {
        if (p->batch != 1) FAIL(LA_STATUS_BAD_SEQLENS, "cu_seqlens needs batch = 1, got %lld", (long long)p->batch);
        if (p->num_seqs < 1) FAIL(LA_STATUS_BAD_SEQLENS, "num_seqs %lld < 1 with cu_seqlens", (long long)p->num_seqs);
    } else if (p->num_seqs != 0) {
        FAIL(LA_STATUS_BAD_SEQLENS, "num_seqs = %lld given without cu_seqlens", (long long)p->num_seqs);
    } else if (p->cu_seqlens_on_device) {
        FAIL(LA_STATUS_BAD_SEQLENS, "cu_seqlens_on_device = 1 without cu_seqlens");
    }
    /* Before reading cu_seqlens: an absurd num_seqs is refused here, not read. */
    la_status_t st = check_problem_size(p, msg);
    if (st || !p->cu_seqlens || p->cu_seqlens_on_device) return st; /* device offsets: checked on the device */
    const int64_t *cu = p->cu_seqlens;
    if (cu[0] != 0) FAIL(LA_STATUS_BAD_SEQLENS, "cu_seqlens[0] = %lld, must be 0", (long long)cu[0]);
    for (int64_t i = 1; i <= p->num_seqs; i++)
        if (cu[i] < cu[i - 1])
            FAIL(LA_STATUS_BAD_SEQLENS, "cu_seqlens not increasing at index %lld (%lld < %lld)", (long long)i,
                 (long long)cu[i], (long long)cu[i - 1]);
    if (cu[p->num_seqs] != p->seqlen)
        FAIL(LA_STATUS_BAD_SEQLENS, "cu_seqlens[%lld] = %lld, must equal seqlen %lld", (long long)p->num_seqs,
             (long long)cu[p->num_seqs], (long long)p->seqlen);
    return LA_STATUS_SUCCESS;
}

la_status_t la_check_problem_for(la_op_t op, const la_problem_t *p, char *msg) {
    if ((unsigned)op > LA_OP_STATE_BACKWARD) FAIL(LA_STATUS_BAD_PARAM, "unknown operation %d", (int)op);
    la_status_t st = la_check_problem(p, msg);
    if (st) return st;
    if (op == LA_OP_DECODE) {
        if (p->cu_seqlens) FAIL(LA_STATUS_BAD_SEQLENS, "decode takes T tokens for every sequence: no cu_seqlens");
        if (p->seqlen < 1)
            FAIL(LA_STATUS_BAD_SHAPE, "decode needs seqlen = T >= 1 new tokens, got %lld", (long long)p->seqlen);
    }
    if (p->checkpoint_interval > 0 && op != LA_OP_FORWARD && op != LA_OP_STATE_FORWARD)
        FAIL(LA_STATUS_BAD_PARAM, "checkpoint_interval is for la_forward and la_state_forward (operation %d given)",
             (int)op);
    return LA_STATUS_SUCCESS;
}

/* The strides of a dimension of extent 1 never multiply a nonzero index, and
 * an empty tensor has no element at all: set those strides to 0, so that no
 * later offset computation meets the caller's arbitrary value and two views
 * of one tensor that differ only there compare equal (decode in place). */
static void normalise_strides(la_tensor_t *t, const int64_t dims[4]) {
    int empty = dims[0] == 0 || dims[1] == 0 || dims[2] == 0 || dims[3] == 0;
    for (int i = 0; i < 4; i++)
        if (empty || dims[i] == 1) t->stride[i] = 0;
}

/* Does the largest byte offset of the tensor stay within LA_MAX_BYTES and
 * the address space?  Strides are >= 0 here. */
static int span_addressable(const la_tensor_t *t, const int64_t dims[4]) {
    int64_t last = 0;
    for (int i = 0; i < 4; i++) {
        if (dims[i] <= 1) continue;
        int64_t reach = la_mul_capped(dims[i] - 1, t->stride[i]);
        if (reach < 0 || reach > LA_MAX_BYTES - last) return 0;
        last += reach;
    }
    int64_t bytes = la_mul_capped(last + 1, (int64_t)la_dtype_size(t->dtype));
    return bytes >= 0 && (uintptr_t)t->data <= UINTPTR_MAX - (uintptr_t)bytes;
}

static la_status_t check_tensor(const la_plan_t *pl, la_tensor_id_t id, char *msg) {
    const la_tensor_t *t = la_tensor_by_id((la_tensors_t *)&pl->t, id);
    const char *name = tensor_names[id];
    enum role r = role_of(pl, id);
    if (r == UNUSED || !t->data) {
        if (r == IN_REQ || r == OUT_REQ) FAIL(LA_STATUS_NULL_POINTER, "%s is required but NULL", name);
        if (t->data && !decay_uses(pl->p.decay, id) && tensor_roles[pl->op][id] != UNUSED)
            FAIL(LA_STATUS_BAD_PARAM, "%s given but decay kind %d does not use it", name, (int)pl->p.decay);
        return LA_STATUS_SUCCESS;
    }
    if ((unsigned)t->dtype > LA_DTYPE_BF16)
        FAIL(LA_STATUS_UNSUPPORTED_DTYPE, "%s: unknown dtype %d", name, (int)t->dtype);
    if ((is_state(id) || is_decay(id)) && t->dtype != LA_DTYPE_F32)
        FAIL(LA_STATUS_UNSUPPORTED_DTYPE, "%s must be f32 (dtype %d given)", name, (int)t->dtype);
    if ((id == LA_T_POOL || id == LA_T_CKPT) && t->dtype == LA_DTYPE_F16)
        FAIL(LA_STATUS_UNSUPPORTED_DTYPE, "%s must be f32 or bf16 (f16 given)", name);
    int64_t dims[4];
    la_tensor_dims(pl, id, dims);
    for (int i = 0; i < 4; i++)
        if (dims[i] > 1 && t->stride[i] < 0)
            FAIL(LA_STATUS_BAD_STRIDE, "%s: negative stride %lld in dim %d", name, (long long)t->stride[i], i);
    if (!span_addressable(t, dims))
        FAIL(LA_STATUS_BAD_STRIDE, "%s: strides {%lld,%lld,%lld,%lld} reach past 2^62 bytes or the address space", name,
             (long long)t->stride[0], (long long)t->stride[1], (long long)t->stride[2], (long long)t->stride[3]);
    if ((r == OUT_REQ || r == OUT_OPT) && self_overlaps(t, dims))
        FAIL(LA_STATUS_BAD_STRIDE, "%s: strides {%lld,%lld,%lld,%lld} make the output overlap itself", name,
             (long long)t->stride[0], (long long)t->stride[1], (long long)t->stride[2], (long long)t->stride[3]);
    return LA_STATUS_SUCCESS;
}

/* Outputs may not share bytes with inputs or with each other, except decode's
 * in-place state (initial_state and final_state: same pointer, same strides). */
static la_status_t check_overlaps(const la_plan_t *pl, char *msg) {
    uintptr_t lo[LA_NUM_TENSORS], hi[LA_NUM_TENSORS];
    int live[LA_NUM_TENSORS];
    for (int i = 0; i < LA_NUM_TENSORS; i++) {
        const la_tensor_t *t = la_tensor_by_id((la_tensors_t *)&pl->t, (la_tensor_id_t)i);
        live[i] = role_of(pl, (la_tensor_id_t)i) != UNUSED && t->data != NULL;
        if (!live[i]) continue;
        int64_t dims[4];
        la_tensor_dims(pl, (la_tensor_id_t)i, dims);
        byte_range(t, dims, &lo[i], &hi[i]);
    }
    for (int i = 0; i < LA_NUM_TENSORS; i++) {
        enum role ri = role_of(pl, (la_tensor_id_t)i);
        if (!live[i] || (ri != OUT_REQ && ri != OUT_OPT) || lo[i] == hi[i]) continue;
        for (int j = 0; j < LA_NUM_TENSORS; j++) {
            if (j == i || !live[j] || lo[j] == hi[j]) continue;
            if (lo[i] >= hi[j] || lo[j] >= hi[i]) continue;
            if (pl->op == LA_OP_DECODE && ((i == LA_T_SN && j == LA_T_S0) || (i == LA_T_S0 && j == LA_T_SN))) {
                const la_tensor_t *a = &pl->t.initial_state, *b = &pl->t.final_state;
                if (a->data == b->data && memcmp(a->stride, b->stride, sizeof a->stride) == 0) continue;
            }
            FAIL(LA_STATUS_OVERLAP, "output %s overlaps %s %s", tensor_names[i],
                 (role_of(pl, (la_tensor_id_t)j) == OUT_REQ || role_of(pl, (la_tensor_id_t)j) == OUT_OPT) ? "output"
                                                                                                          : "input",
                 tensor_names[j]);
        }
    }
    return LA_STATUS_SUCCESS;
}

static int misaligned(const void *a, size_t bytes) { return a && (uintptr_t)a % bytes != 0; }

/* The serving fields that are not tensors: which of them go together, and
 * that the dense states are not given beside a pool.  Slot values are data,
 * checked by the backend (slots.c on the host). */
static la_status_t check_serving(const la_plan_t *pl, char *msg) {
    const la_state_pool_t *pool = &pl->t.pool;
    if (pl->p.checkpoint_interval == 0 && pl->t.checkpoints.data)
        FAIL(LA_STATUS_BAD_PARAM, "checkpoints given with problem.checkpoint_interval = 0");
    if (!pool->states.data) {
        const char *stray = pool->read_slot         ? "read_slot"
                          : pool->write_slot        ? "write_slot"
                          : pool->has_initial_state ? "has_initial_state"
                          : pool->token_slot        ? "token_slot"
                          : pool->num_accepted      ? "num_accepted"
                          : pool->num_slots         ? "num_slots"
                                                    : NULL;
        if (stray) FAIL(LA_STATUS_BAD_PARAM, "pool.%s given without pool.states", stray);
        return LA_STATUS_SUCCESS;
    }
    if (pl->op == LA_OP_BACKWARD || pl->op == LA_OP_STATE_BACKWARD)
        FAIL(LA_STATUS_BAD_PARAM, "a state pool serves la_forward, la_state_forward and la_decode; the backward takes "
                                  "dense states");
    if (pl->t.initial_state.data || pl->t.final_state.data)
        FAIL(LA_STATUS_BAD_PARAM, "%s given with a state pool: the pool's slots are the states",
             pl->t.initial_state.data ? "initial_state" : "final_state");
    if (pool->num_slots < 1) FAIL(LA_STATUS_BAD_SHAPE, "pool.num_slots %lld < 1", (long long)pool->num_slots);
    if ((unsigned)pool->index_dtype > LA_INDEX_I64)
        FAIL(LA_STATUS_BAD_PARAM, "pool.index_dtype %d: must be LA_INDEX_I32 or LA_INDEX_I64", (int)pool->index_dtype);
    if (!pool->read_slot) FAIL(LA_STATUS_NULL_POINTER, "pool.read_slot is required with pool.states");
    if (pool->token_slot && pl->op != LA_OP_DECODE)
        FAIL(LA_STATUS_BAD_PARAM, "pool.token_slot is for la_decode (the states after each new token)");
    if (pool->token_slot && pool->write_slot)
        FAIL(LA_STATUS_BAD_PARAM,
             "pool.write_slot must be NULL with pool.token_slot: the states go to the token slots");
    if (pool->num_accepted && !pool->token_slot) FAIL(LA_STATUS_BAD_PARAM, "pool.num_accepted needs pool.token_slot");
    const size_t ib = pool->index_dtype == LA_INDEX_I32 ? 4 : 8;
    const void *idx[4] = {pool->read_slot, pool->write_slot, pool->token_slot, pool->num_accepted};
    const char *names[4] = {"read_slot", "write_slot", "token_slot", "num_accepted"};
    for (int i = 0; i < 4; i++)
        if (misaligned(idx[i], ib))
            FAIL(LA_STATUS_BAD_PARAM, "pool.%s at %p is not aligned to its %zu-byte index type", names[i], idx[i], ib);
    return LA_STATUS_SUCCESS;
}

/* Log decays must be finite, <= 0 and >= LA_MIN_LOG_DECAY.  Host memory only. */
static la_status_t check_decay_values(const la_plan_t *pl, la_tensor_id_t id, char *msg) {
    const la_tensor_t *t = la_tensor_by_id((la_tensors_t *)&pl->t, id);
    if (role_of(pl, id) == UNUSED || !t->data) return LA_STATUS_SUCCESS;
    int64_t dims[4];
    la_tensor_dims(pl, id, dims);
    /* An empty tensor has no value to check (and its outer extents may be
     * 2^40 pairs long: looping over them would take hours). */
    if (dims[0] == 0 || dims[1] == 0 || dims[2] == 0 || dims[3] == 0) return LA_STATUS_SUCCESS;
    const float *x = (const float *)t->data;
    for (int64_t a = 0; a < dims[0]; a++)
        for (int64_t b = 0; b < dims[1]; b++)
            for (int64_t c = 0; c < dims[2]; c++)
                for (int64_t d = 0; d < dims[3]; d++) {
                    float v = x[a * t->stride[0] + b * t->stride[1] + c * t->stride[2] + d * t->stride[3]];
                    if (!(v <= 0.0f) || v < LA_MIN_LOG_DECAY)
                        FAIL(LA_STATUS_BAD_DECAY, "%s[%lld,%lld,%lld,%lld] = %g: log decays must lie in [%g, 0]",
                             tensor_names[id], (long long)a, (long long)b, (long long)c, (long long)d, (double)v,
                             (double)LA_MIN_LOG_DECAY);
                }
    return LA_STATUS_SUCCESS;
}

la_status_t la_build_plan(la_op_t op, const la_problem_t *p, const la_tensors_t *t, int host_memory, la_plan_t *pl,
                          char *msg) {
    if (!p) FAIL(LA_STATUS_NULL_POINTER, "problem is NULL");
    if (!t) FAIL(LA_STATUS_NULL_POINTER, "tensors is NULL");
    la_status_t st = la_check_problem_for(op, p, msg);
    if (st) return st;
    if (t->struct_size != sizeof(la_tensors_t))
        FAIL(LA_STATUS_BAD_VERSION, "tensors.struct_size is %zu, this library expects %zu (call la_tensors_init)",
             t->struct_size, sizeof(la_tensors_t));
    memset(pl, 0, sizeof *pl);
    pl->op = op;
    pl->p = *p;
    pl->t = *t;
    pl->packed = p->cu_seqlens != NULL;
    pl->cu_device = pl->packed && p->cu_seqlens_on_device;
    pl->num_seqs = pl->packed ? p->num_seqs : p->batch;
    for (int i = 0; i < LA_NUM_TENSORS; i++) {
        int64_t dims[4];
        la_tensor_dims(pl, (la_tensor_id_t)i, dims);
        normalise_strides(la_tensor_by_id(&pl->t, (la_tensor_id_t)i), dims);
    }
    if ((st = check_serving(pl, msg))) return st;
    for (int i = 0; i < LA_NUM_TENSORS; i++)
        if ((st = check_tensor(pl, (la_tensor_id_t)i, msg))) return st;
    if ((st = check_overlaps(pl, msg))) return st;
    if (host_memory) {
        if ((st = check_decay_values(pl, LA_T_LD, msg))) return st;
        if ((st = check_decay_values(pl, LA_T_LDV, msg))) return st;
    }
    pl->has_initial = t->initial_state.data != NULL && role_of(pl, LA_T_S0) != UNUSED;
    pl->has_final = t->final_state.data != NULL && role_of(pl, LA_T_SN) != UNUSED;
    pl->has_dfinal = t->d_final_state.data != NULL && role_of(pl, LA_T_DSN) != UNUSED;
    pl->want_dld = t->d_ld.data != NULL && role_of(pl, LA_T_DLD) != UNUSED;
    pl->want_dldv = t->d_ldv.data != NULL && role_of(pl, LA_T_DLDV) != UNUSED;
    pl->want_dinitial = t->d_initial_state.data != NULL && role_of(pl, LA_T_DS0) != UNUSED;
    pl->has_o = op == LA_OP_FORWARD || op == LA_OP_DECODE || op == LA_OP_BACKWARD;
    pl->has_pool = t->pool.states.data != NULL;
    pl->has_checkpoints = p->checkpoint_interval > 0;
    return LA_STATUS_SUCCESS;
}

int64_t la_plan_max_len(const la_plan_t *pl) {
    if (!pl->packed) return pl->p.seqlen;
    if (pl->cu_device) return pl->p.max_seqlen > 0 && pl->p.max_seqlen < pl->p.seqlen ? pl->p.max_seqlen : pl->p.seqlen;
    int64_t m = 0;
    for (int64_t s = 0; s < pl->num_seqs; s++) {
        int64_t n = la_plan_seq_len(pl, s);
        if (n > m) m = n;
    }
    return m;
}
