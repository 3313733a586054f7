/*
 * fuzz_misc.c - the entry points that take no generated call: status and
 * dtype helpers, struct initialisers, la_tensor_contiguous on any extents,
 * handles and their errors, workspace queries of problems far too large to
 * run (monotone, and refused exactly where nothing could address them), and
 * concurrent calls on one handle (one at a time, the others HANDLE_BUSY).
 */
#define _POSIX_C_SOURCE 200809L

#include "fuzz.h"

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *sname(la_status_t st) {
    const char *n = fz_status_name(st);
    return n ? n : "(unknown status)";
}

/* ---- addressability of a problem -------------------------------------------------------- */

static uint64_t sat_mul(uint64_t a, uint64_t b) { return a && b > UINT64_MAX / a ? UINT64_MAX : a * b; }

static uint64_t elements(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
    return sat_mul(sat_mul(sat_mul(a, b), c), d);
}

int fz_addressable(const la_problem_t *p) {
    const uint64_t B = (uint64_t)p->batch, H = (uint64_t)p->heads, N = (uint64_t)p->seqlen;
    const uint64_t D = (uint64_t)p->dim_qk, E = (uint64_t)p->dim_v;
    const uint64_t S = (uint64_t)(p->cu_seqlens ? p->num_seqs : p->batch);
    const uint64_t X = D > E ? D : E;
    const uint64_t seq_heads = sat_mul(S, H), token_heads = elements(B, H, N, 1);
    /* the largest tensor at its smallest element size (token tensors may be
     * 2-byte), and at 4 bytes each */
    uint64_t tok = elements(B, H, N, X), states = elements(S, H, D, E);
    uint64_t decay = p->decay == LA_DECAY_NONE         ? 0
                   : p->decay == LA_DECAY_SCALAR_HEAD  ? H
                   : p->decay == LA_DECAY_SCALAR_TOKEN ? token_heads
                                                       : tok;
    uint64_t least = sat_mul(tok, 2);
    uint64_t f32 = sat_mul(states > decay ? states : decay, 4);
    if (f32 > least) least = f32;
    uint64_t most = sat_mul(tok > states ? (tok > decay ? tok : decay) : (states > decay ? states : decay), 4);
    if (seq_heads > FZ_MAX_SEQ_HEADS || token_heads > FZ_MAX_TOKEN_HEADS || least > (uint64_t)FZ_MAX_BYTES)
        return FZ_ADDR_NO;
    if (most <= (uint64_t)FZ_MAX_BYTES) return FZ_ADDR_YES;
    return FZ_ADDR_MAYBE;
}

/* ---- helpers without a handle --------------------------------------------------------------- */

static const la_status_t all_statuses[] = {LA_STATUS_SUCCESS,           LA_STATUS_BAD_PARAM,
                                           LA_STATUS_NULL_POINTER,      LA_STATUS_BAD_SHAPE,
                                           LA_STATUS_BAD_STRIDE,        LA_STATUS_BAD_DECAY,
                                           LA_STATUS_BAD_SEQLENS,       LA_STATUS_OVERLAP,
                                           LA_STATUS_BAD_VERSION,       LA_STATUS_BAD_SCALE,
                                           LA_STATUS_HANDLE_BUSY,       LA_STATUS_NOT_SUPPORTED,
                                           LA_STATUS_UNSUPPORTED_DTYPE, LA_STATUS_UNSUPPORTED_HEAD_DIM,
                                           LA_STATUS_UNSUPPORTED_DECAY, LA_STATUS_BACKEND_UNAVAILABLE,
                                           LA_STATUS_ALLOC_FAILED,      LA_STATUS_WORKSPACE_TOO_SMALL,
                                           LA_STATUS_EXECUTION_FAILED,  LA_STATUS_INTERNAL_ERROR};

static void check_status_helpers(fz_ctx_t *x, tu_rng_t *r) {
    la_status_t st = all_statuses[tu_below(r, sizeof all_statuses / sizeof all_statuses[0])];
    const char *s = fz_status_string(st), *name = fz_status_name(st);
    if (!s || strncmp(s, name, strlen(name)) != 0 || s[strlen(name)] != ':')
        fz_fail(x, "status-string", "la_status_string(%d) = \"%s\", want \"%s: ...\"", (int)st, s ? s : "NULL", name);
    if (fz_status_category(st) != (int)st / 100 * 100)
        fz_fail(x, "status-category", "la_status_category(%d) = %d", (int)st, fz_status_category(st));
    const int unknown[] = {1, 99, 110, 199, 205, 302, 402, 500, -1, INT_MAX, INT_MIN, (int)tu_rng_next(r)};
    int u = unknown[tu_below(r, 12)];
    if (!fz_status_name((la_status_t)u)) {
        s = fz_status_string((la_status_t)u);
        if (!s) fz_fail(x, "status-string", "la_status_string(%d) returned NULL", u);
        (void)fz_status_category((la_status_t)u);
    }
}

static void check_dtype_sizes(fz_ctx_t *x, tu_rng_t *r) {
    const int dts[] = {LA_DTYPE_F32, LA_DTYPE_F16, LA_DTYPE_BF16, 3, -1, 100, INT_MAX, INT_MIN};
    int d = dts[tu_below(r, 8)];
    size_t want = d == LA_DTYPE_F32 ? 4 : d == LA_DTYPE_F16 || d == LA_DTYPE_BF16 ? 2 : 0;
    size_t got = fz_dtype_size((la_dtype_t)d);
    if (got != want) fz_fail(x, "dtype-size", "la_dtype_size(%d) = %zu, want %zu", d, got, want);
}

static void check_initialisers(fz_ctx_t *x) {
    la_problem_t p;
    la_tensors_t t;
    memset(&p, 0xAB, sizeof p);
    memset(&t, 0xAB, sizeof t);
    fz_problem_init(&p);
    fz_tensors_init(&t);
    if (p.struct_size != sizeof p || p.scale != 1.0f || p.batch || p.heads || p.seqlen || p.dim_qk || p.dim_v ||
        p.decay != LA_DECAY_NONE || p.cu_seqlens || p.num_seqs || p.cu_seqlens_on_device || p.max_seqlen)
        fz_fail(x, "initialiser", "la_problem_init left a field other than struct_size = sizeof, scale = 1, rest 0");
    la_policy_t q;
    memset(&q, 0xAB, sizeof q);
    fz_policy_init(&q);
    if (q.struct_size != sizeof q || q.tile_cap || q.smem_kb || q.fwd_wgmma != LA_SWITCH_AUTO ||
        q.fwd_rows != LA_SWITCH_AUTO || q.fwd_warp_roles != LA_SWITCH_AUTO || q.state_wgmma != LA_SWITCH_AUTO ||
        q.bwd_wgmma != LA_SWITCH_AUTO || q.dld_planes || q.vec_kernels != LA_SWITCH_AUTO ||
        q.vec_split != LA_SWITCH_AUTO || q.vec_warp_roles != LA_SWITCH_AUTO)
        fz_fail(x, "initialiser", "la_policy_init left a field other than struct_size = sizeof, rest 0 (automatic)");
    int clean = t.struct_size == sizeof t;
    for (int id = 0; id < FZ_NT; id++) {
        const la_tensor_t *f = fz_field(&t, id);
        clean &= !f->data && f->dtype == 0 && !f->stride[0] && !f->stride[1] && !f->stride[2] && !f->stride[3];
    }
    if (!clean) fz_fail(x, "initialiser", "la_tensors_init left a field other than struct_size = sizeof, rest 0");
}

static int64_t any_extent(tu_rng_t *r) {
    switch (tu_below(r, 6)) {
    case 0: return 0;
    case 1: return 1 + (int64_t)tu_below(r, 300);
    case 2: return (int64_t)1 << tu_below(r, 63);
    case 3: return INT64_MAX - (int64_t)tu_below(r, 3);
    case 4: return tu_below(r, 2) ? -1 - (int64_t)tu_below(r, 5) : INT64_MIN + (int64_t)tu_below(r, 5);
    default: return (int64_t)tu_rng_next(r);
    }
}

/* Row-major strides where the products are small; anything at all must not
 * trap (the sanitizers watch the arithmetic). */
static void check_contiguous(fz_ctx_t *x, tu_rng_t *r) {
    int64_t d[4];
    int small = tu_below(r, 2);
    for (int i = 0; i < 4; i++) d[i] = small ? (int64_t)tu_below(r, 1000) : any_extent(r);
    la_tensor_t t;
    memset(&t, 0xCD, sizeof t);
    int marker;
    la_dtype_t dt = (la_dtype_t)tu_below(r, 3);
    fz_tensor_contiguous(&t, &marker, dt, d[0], d[1], d[2], d[3]);
    if (t.data != (void *)&marker || t.dtype != dt)
        fz_fail(x, "contiguous", "la_tensor_contiguous did not set data and dtype");
    if (small &&
        (t.stride[3] != 1 || t.stride[2] != d[3] || t.stride[1] != d[2] * d[3] || t.stride[0] != d[1] * d[2] * d[3]))
        fz_fail(x, "contiguous", "la_tensor_contiguous(%lld,%lld,%lld,%lld) gave strides {%lld,%lld,%lld,%lld}",
                (long long)d[0], (long long)d[1], (long long)d[2], (long long)d[3], (long long)t.stride[0],
                (long long)t.stride[1], (long long)t.stride[2], (long long)t.stride[3]);
}

static void check_handles(fz_ctx_t *x, tu_rng_t *r) {
    if (!fz_backend_available(LA_BACKEND_CPU)) fz_fail(x, "backend", "la_backend_available(CPU) = 0");
    const int bogus[] = {2, -1, 77, INT_MAX};
    int b = bogus[tu_below(r, 4)];
    if (fz_backend_available((la_backend_t)b)) fz_fail(x, "backend", "la_backend_available(%d) != 0", b);
    la_handle_t *h = (la_handle_t *)&b; /* not NULL: a refused la_create must set NULL */
    la_status_t st = fz_create(&h, (la_backend_t)b);
    if (st != LA_STATUS_BAD_PARAM || h)
        fz_fail(x, "wrong-status", "la_create(backend %d) returned %s, handle %p; want BAD_PARAM and NULL", b,
                sname(st), (void *)h);
    if (h && h != (la_handle_t *)&b) fz_destroy(h);
    st = fz_create(NULL, LA_BACKEND_CPU);
    if (st != LA_STATUS_NULL_POINTER)
        fz_fail(x, "wrong-status", "la_create(NULL, CPU) returned %s, want NULL_POINTER", sname(st));
    st = fz_destroy(NULL);
    if (st != LA_STATUS_NULL_POINTER)
        fz_fail(x, "wrong-status", "la_destroy(NULL) returned %s, want NULL_POINTER", sname(st));
    const int cuda = fz_backend_available(LA_BACKEND_CUDA);
    const int want_cuda = (int)tu_below(r, 2); /* drawn on every machine alike */
    const la_backend_t kind = cuda && want_cuda ? LA_BACKEND_CUDA : LA_BACKEND_CPU;
    h = (la_handle_t *)&b;
    st = fz_create(&h, LA_BACKEND_CUDA);
    if (!cuda && (st != LA_STATUS_BACKEND_UNAVAILABLE || h))
        fz_fail(x, "wrong-status", "la_create(CUDA) without a device returned %s, handle %p", sname(st), (void *)h);
    if (st == LA_STATUS_SUCCESS) fz_destroy(h);
    if (fz_create(&h, kind) != LA_STATUS_SUCCESS || !h) {
        fz_fail(x, "create", "la_create(%d) failed", (int)kind);
        return;
    }
    if (fz_handle_backend(h) != kind) fz_fail(x, "handle-backend", "la_handle_backend != the created backend");
    const char *m = fz_last_error(h);
    if (!m || m[0]) fz_fail(x, "message-stale", "a new handle's la_last_error is \"%s\"", m ? m : "NULL");
    /* A handle's policy (defaults and environment overrides) is one la_set_policy takes. */
    la_policy_t q;
    st = fz_get_policy(h, &q);
    if (st != LA_STATUS_SUCCESS) fz_fail(x, "wrong-status", "la_get_policy of a new handle returned %s", sname(st));
    else if ((st = fz_set_policy(h, &q)) != LA_STATUS_SUCCESS)
        fz_fail(x, "wrong-status", "la_set_policy(a new handle's own policy) returned %s: %s", sname(st),
                fz_last_error(h));
    st = fz_check_errors(h);
    if (st != LA_STATUS_SUCCESS)
        fz_fail(x, "check-errors", "la_check_errors on a new handle returned %s: %s", sname(st), fz_last_error(h));
    if (fz_destroy(h) != LA_STATUS_SUCCESS) fz_fail(x, "destroy", "la_destroy of a fresh handle failed");
}

void fz_iter_helpers(fz_ctx_t *x, tu_rng_t *r) {
    int n = 1 + (int)tu_below(r, 4);
    for (int i = 0; i < n; i++) {
        switch (tu_below(r, 5)) {
        case 0: check_status_helpers(x, r); break;
        case 1: check_dtype_sizes(x, r); break;
        case 2: check_initialisers(x); break;
        case 3: check_contiguous(x, r); break;
        default: check_handles(x, r); break;
        }
    }
}

/* ---- workspace figures of large problems ---------------------------------------------------- */

/* One size of the problem grown: a little, or by a power of two (saturating). */
static void grow(la_problem_t *p, la_op_t op, tu_rng_t *r) {
    int64_t *f[5] = {&p->batch, &p->heads, &p->seqlen, &p->dim_qk, &p->dim_v};
    int k = (int)tu_below(r, 5);
    if (k == 2 && op == LA_OP_DECODE) k = 1; /* decode stays at one token */
    int64_t *v = f[k];
    if (k >= 3) {
        *v += (int64_t)tu_below(r, (uint64_t)(LA_MAX_HEAD_DIM - *v + 1));
        return;
    }
    if (tu_below(r, 2)) {
        *v += (int64_t)tu_below(r, 100);
        return;
    }
    int e = 1 + (int)tu_below(r, 62);
    int64_t base = *v > 0 ? *v : 1;
    *v = base > (INT64_MAX >> e) ? INT64_MAX : base << e;
}

/* The header's pair limits exactly: 2^40 (sequence, head) and 2^48 (token,
 * head) pairs are accepted, one pair more is refused with BAD_SHAPE, by the
 * workspace query and, where the problem has no tokens (N = 0: every token
 * tensor empty, zero bytes), by la_supports and la_workspace_size_for too. */
static void check_size_limits(fz_ctx_t *x, la_handle_t *h, tu_rng_t *r) {
    fz_call_t *c = calloc(1, sizeof *c);
    if (!c) exit(2);
    la_problem_t *p = &c->p;
    fz_problem_init(p);
    p->decay = (la_decay_t)tu_below(r, 5);
    p->dim_qk = 1 + (int64_t)tu_below(r, LA_MAX_HEAD_DIM);
    p->dim_v = 1 + (int64_t)tu_below(r, LA_MAX_HEAD_DIM);
    const int over = (int)tu_below(r, 2), seq_limit = (int)tu_below(r, 2);
    if (seq_limit) {
        int e = (int)tu_below(r, 41);
        c->op = tu_below(r, 2) ? LA_OP_FORWARD : LA_OP_BACKWARD;
        p->heads = (int64_t)1 << e;
        p->batch = ((int64_t)1 << (40 - e)) + over;
        p->seqlen = 0;
        /* ld is [H] for SCALAR_HEAD; per-token decays are [B,H,0,*], whose value
         * check walks every (b, h) of the empty tensor: 2^40 steps */
        if (p->decay != LA_DECAY_NONE) p->decay = e <= 12 ? LA_DECAY_SCALAR_HEAD : LA_DECAY_NONE;
    } else {
        int a = (int)tu_below(r, 21), b = (int)tu_below(r, 21);
        c->op = (la_op_t)(tu_below(r, 2) ? LA_OP_FORWARD : LA_OP_STATE_BACKWARD);
        p->batch = (int64_t)1 << a;
        p->heads = (int64_t)1 << b;
        p->seqlen = ((int64_t)1 << (48 - a - b)) + over;
    }
    c->S = p->batch;
    const la_status_t want = over ? LA_STATUS_BAD_SHAPE : LA_STATUS_SUCCESS;
    char dims[160];
    snprintf(dims, sizeof dims, "%s, B %lld H %lld N %lld D %lld E %lld, decay %d", fz_op_name(c->op),
             (long long)p->batch, (long long)p->heads, (long long)p->seqlen, (long long)p->dim_qk, (long long)p->dim_v,
             (int)p->decay);
    if (fz_addressable(p) != (over ? FZ_ADDR_NO : FZ_ADDR_YES))
        fz_fail(x, "fuzzer-internal", "size classification of %s", dims);
    size_t bytes = 0;
    la_status_t st = fz_workspace_size(h, c->op, p, &bytes);
    fz_check_message(x, h, st, "la_workspace_size");
    if (st != want)
        fz_fail(x, over ? "huge-accepted" : "valid-rejected", "la_workspace_size(%s) returned %s, want %s: %s", dims,
                sname(st), sname(want), fz_last_error(h));
    if (seq_limit && !x->o->device) { /* the required tensors (host memory), all empty but [H] decays */
        for (int id = 0; id < FZ_NT; id++) {
            fz_role_t role = fz_role(c->op, p->decay, id);
            if (role != FZ_IN_REQ && role != FZ_OUT_REQ) continue;
            fz_tensor_t *t = &c->t[id];
            t->dtype = fz_is_decay(id) ? LA_DTYPE_F32 : (la_dtype_t)tu_below(r, 3);
            fz_logical_dims(p, c->S, id, t->dim);
            la_tensor_t lt;
            fz_tensor_contiguous(&lt, NULL, t->dtype, t->dim[0], t->dim[1], t->dim[2], t->dim[3]);
            memcpy(t->stride, lt.stride, sizeof t->stride);
            memcpy(t->nat, lt.stride, sizeof t->nat);
            fz_place(c, t); /* zero bytes, or H floats of gap pattern: a valid log decay */
            if (fz_is_decay(id)) memset(c->buf[t->buf].host, 0, c->buf[t->buf].bytes);
        }
        la_tensors_t t = fz_call_tensors(c, 0);
        st = fz_supports(h, c->op, p, &t);
        fz_check_message(x, h, st, "la_supports");
        if (st != want)
            fz_fail(x, over ? "huge-accepted" : "valid-rejected",
                    "la_supports(%s, empty tensors) returned %s, want "
                    "%s: %s",
                    dims, sname(st), sname(want), fz_last_error(h));
        st = fz_workspace_size_for(h, c->op, p, &t, &bytes);
        fz_check_message(x, h, st, "la_workspace_size_for");
        if (st != want)
            fz_fail(x, over ? "huge-accepted" : "valid-rejected",
                    "la_workspace_size_for(%s, empty tensors) returned "
                    "%s, want %s: %s",
                    dims, sname(st), sname(want), fz_last_error(h));
    }
    fz_call_free(c);
    free(c);
}

/* Each size one larger (where the problem stays valid) never needs less
 * workspace: tile and checkpoint boundaries are where a figure may drop. */
static void check_neighbours(fz_ctx_t *x, la_handle_t *h, la_op_t op, const la_problem_t *p) {
    size_t base = 0;
    if (fz_workspace_size(h, op, p, &base) != LA_STATUS_SUCCESS) return;
    for (int k = 0; k < 5; k++) {
        la_problem_t q = *p;
        int64_t *f[5] = {&q.batch, &q.heads, &q.seqlen, &q.dim_qk, &q.dim_v};
        if ((k == 2 && op == LA_OP_DECODE) || (k >= 3 && *f[k] >= LA_MAX_HEAD_DIM) || *f[k] == INT64_MAX) continue;
        ++*f[k];
        size_t bytes = 0;
        if (fz_workspace_size(h, op, &q, &bytes) == LA_STATUS_SUCCESS && bytes < base)
            fz_fail(x, "workspace-not-monotone",
                    "la_workspace_size(%s, decay %d) shrinks from %zu to %zu bytes when "
                    "%s grows from %lld to %lld (B %lld H %lld N %lld D %lld E %lld)",
                    fz_op_name(op), (int)p->decay, base, bytes,
                    (const char *[]){"batch", "heads", "seqlen", "dim_qk", "dim_v"}[k], (long long)*f[k] - 1,
                    (long long)*f[k], (long long)p->batch, (long long)p->heads, (long long)p->seqlen,
                    (long long)p->dim_qk, (long long)p->dim_v);
    }
}

/* Head dims stepping across a multiple of 16 (where padded tiles grow), at
 * lengths from one chunk to the many where stored states give way to
 * checkpoints. */
static void check_tile_boundaries(fz_ctx_t *x, la_handle_t *h, tu_rng_t *r) {
    static const int64_t lens[] = {1, 64, 1000, 20000, 100000, (int64_t)1 << 20};
    la_problem_t p;
    fz_problem_init(&p);
    la_op_t op = (la_op_t)tu_below(r, 5);
    p.decay = (la_decay_t)tu_below(r, 5);
    p.batch = 1 + (int64_t)tu_below(r, 2);
    p.heads = 1 + (int64_t)tu_below(r, 2);
    p.seqlen = op == LA_OP_DECODE ? 1 : lens[tu_below(r, 6)];
    p.dim_qk = 1 + (int64_t)tu_below(r, LA_MAX_HEAD_DIM);
    p.dim_v = 1 + (int64_t)tu_below(r, LA_MAX_HEAD_DIM);
    int64_t *d = tu_below(r, 2) ? &p.dim_qk : &p.dim_v;
    *d = 16 * (1 + (int64_t)tu_below(r, LA_MAX_HEAD_DIM / 16 - 1));
    check_neighbours(x, h, op, &p);
}

/* la_workspace_size never shrinks when the problem grows, refuses with
 * BAD_SHAPE exactly the problems no tensor could address, and accepts the
 * clearly addressable ones (no allocation happens: it is a query). */
void fz_iter_sizes(fz_ctx_t *x, tu_rng_t *r) {
    la_handle_t *h = NULL;
    la_backend_t kind = x->o->backend;
    if (fz_create(&h, kind) != LA_STATUS_SUCCESS) {
        fz_fail(x, "create", "la_create failed");
        return;
    }
    if (tu_below(r, 2)) fz_set_num_threads(h, 1 + (int)tu_below(r, 4));
    la_problem_t p;
    fz_problem_init(&p);
    la_op_t op = (la_op_t)tu_below(r, 5);
    p.decay = (la_decay_t)tu_below(r, 5);
    p.batch = 1 + (int64_t)tu_below(r, 4);
    p.heads = 1 + (int64_t)tu_below(r, 4);
    p.seqlen = op == LA_OP_DECODE ? 1 : (int64_t)tu_below(r, 100);
    p.dim_qk = 1 + (int64_t)tu_below(r, LA_MAX_HEAD_DIM);
    p.dim_v = 1 + (int64_t)tu_below(r, LA_MAX_HEAD_DIM);
    size_t prev = 0;
    la_status_t st = fz_workspace_size(h, op, &p, &prev);
    if (st != LA_STATUS_SUCCESS)
        fz_fail(x, "valid-rejected", "la_workspace_size(%s, B %lld H %lld N %lld D %lld E %lld) returned %s: %s",
                fz_op_name(op), (long long)p.batch, (long long)p.heads, (long long)p.seqlen, (long long)p.dim_qk,
                (long long)p.dim_v, sname(st), fz_last_error(h));
    for (int step = 0; step < 4 && st == LA_STATUS_SUCCESS; step++) {
        la_problem_t q = p;
        grow(&q, op, r);
        size_t bytes = 0;
        int cls = fz_addressable(&q);
        la_status_t sq = fz_workspace_size(h, op, &q, &bytes);
        fz_check_message(x, h, sq, "la_workspace_size");
        char dims[160];
        snprintf(dims, sizeof dims, "%s, B %lld H %lld N %lld D %lld E %lld, decay %d", fz_op_name(op),
                 (long long)q.batch, (long long)q.heads, (long long)q.seqlen, (long long)q.dim_qk, (long long)q.dim_v,
                 (int)q.decay);
        if (cls == FZ_ADDR_NO && sq != LA_STATUS_BAD_SHAPE)
            fz_fail(x, "huge-accepted",
                    "la_workspace_size(%s) returned %s (%zu bytes) for a problem past the header's "
                    "size limits, want BAD_SHAPE",
                    dims, sname(sq), bytes);
        if (cls == FZ_ADDR_YES && sq != LA_STATUS_SUCCESS)
            fz_fail(x, "valid-rejected",
                    "la_workspace_size(%s) returned %s for a problem within the header's size limits: %s", dims,
                    sname(sq), fz_last_error(h));
        if (cls == FZ_ADDR_MAYBE && sq != LA_STATUS_SUCCESS && sq != LA_STATUS_BAD_SHAPE)
            fz_fail(x, "wrong-status", "la_workspace_size(%s) returned %s", dims, sname(sq));
        if (sq != LA_STATUS_SUCCESS) break;
        if (bytes < prev)
            fz_fail(x, "workspace-not-monotone",
                    "la_workspace_size shrank from %zu to %zu bytes when the problem "
                    "grew to %s",
                    prev, bytes, dims);
        prev = bytes;
        p = q;
    }
    check_neighbours(x, h, op, &p);
    check_tile_boundaries(x, h, r);
    if (tu_below(r, 2)) check_size_limits(x, h, r);
    /* more threads never need less workspace */
    size_t a = 0, b = 0;
    fz_set_num_threads(h, 1);
    la_status_t s1 = fz_workspace_size(h, op, &p, &a);
    fz_set_num_threads(h, 2 + (int)tu_below(r, LA_MAX_THREADS - 1));
    la_status_t s2 = fz_workspace_size(h, op, &p, &b);
    if (s1 == LA_STATUS_SUCCESS && s2 == LA_STATUS_SUCCESS && b < a)
        fz_fail(x, "workspace-not-monotone", "la_workspace_size with more threads: %zu < %zu bytes", b, a);
    fz_destroy(h);
}

/* ---- one handle, two threads ---------------------------------------------------------------- */

typedef struct image { /* every buffer of a call, to start each run alike */
    unsigned char **bytes;
    int n;
} image_t;

static void image_take(image_t *im, const fz_call_t *c) {
    im->n = c->nbuf;
    im->bytes = malloc((size_t)c->nbuf * sizeof *im->bytes);
    for (int i = 0; i < c->nbuf; i++) {
        im->bytes[i] = malloc(c->buf[i].bytes ? c->buf[i].bytes : 1);
        memcpy(im->bytes[i], c->buf[i].host, c->buf[i].bytes);
    }
}

static void image_put(const image_t *im, fz_call_t *c) {
    for (int i = 0; i < im->n; i++) memcpy(c->buf[i].host, im->bytes[i], c->buf[i].bytes);
}

static int image_equal(const image_t *im, const fz_call_t *c) {
    for (int i = 0; i < im->n; i++)
        if (memcmp(c->buf[i].host, im->bytes[i], c->buf[i].bytes) != 0) return 0;
    return 1;
}

static void image_free(image_t *im) {
    for (int i = 0; i < im->n; i++) free(im->bytes[i]);
    free(im->bytes);
}

/* Inputs as generated, outputs poisoned. */
static void prepare(fz_call_t *c, const image_t *fresh) {
    image_put(fresh, c);
    for (int id = 0; id < FZ_NT; id++)
        if (c->t[id].src == FZ_IN_BUF && fz_is_output(fz_role(c->op, c->p.decay, id)) && !(id == FZ_SN && c->inplace))
            fz_poison_elements(c, &c->t[id]);
}

typedef struct runner {
    la_handle_t *h;
    fz_call_t *c;
    la_tensors_t t;
    const image_t *fresh, *expect;
    int rounds;
    atomic_long started, finished; /* calls begun / returned on this thread */
    int ok, busy, wrong;           /* rounds right, refusals retried, rounds wrong: read after the join */
    la_status_t wrong_status;
} runner_t;

/* Each round retries while refused as busy (a refusal is a right answer,
 * and must leave the tensors alone), until the call runs. */
static void *run_rounds(void *arg) {
    runner_t *w = arg;
    for (int i = 0; i < w->rounds; i++) {
        la_status_t st;
        for (int attempt = 0;; attempt++) {
            prepare(w->c, w->fresh);
            fz_snapshot(w->c);
            atomic_fetch_add(&w->started, 1);
            st = fz_run_op(w->h, w->c->op, &w->c->p, &w->t);
            atomic_fetch_add(&w->finished, 1);
            if (st != LA_STATUS_HANDLE_BUSY || fz_first_changed(w->c) >= 0 || attempt == 100000) break;
            w->busy++;
        }
        if (st == LA_STATUS_SUCCESS && image_equal(w->expect, w->c)) w->ok++;
        else {
            w->wrong++;
            w->wrong_status = st;
        }
    }
    return NULL;
}

/* Calls this thread makes while the other runs (enough to land inside its
 * calls many times, few enough not to dominate a run's call count). */
#define MAX_POKES 300

/* One call of the main thread on the shared handle; 1 if it was refused as busy. */
static int poke(fz_ctx_t *x, la_handle_t *h, int shared, fz_call_t *b, const image_t *b_fresh, const image_t *b_expect,
                size_t b_need, tu_rng_t *r) {
    const la_tensors_t t = fz_call_tensors(b, 0);
    size_t bytes = 0;
    la_status_t st;
    const char *what;
    switch (tu_below(r, 14)) {
    case 0:
    case 1:
    case 2:
        what = fz_op_name(b->op);
        prepare(b, b_fresh);
        fz_snapshot(b);
        st = fz_run_op(h, b->op, &b->p, &t);
        if (st == LA_STATUS_SUCCESS && !image_equal(b_expect, b))
            fz_fail(x, "busy-corrupted",
                    "%s succeeded on a handle shared with a running call, but its outputs "
                    "differ from the same call run alone",
                    what);
        if (st == LA_STATUS_HANDLE_BUSY && fz_first_changed(b) >= 0)
            fz_fail(x, "wrote-on-failure", "%s was refused as HANDLE_BUSY but wrote to its tensors", what);
        break;
    case 3:
        what = "la_supports";
        st = fz_supports(h, b->op, &b->p, &t);
        break;
    case 4:
        what = "la_workspace_size";
        st = fz_workspace_size(h, b->op, &b->p, &bytes);
        break;
    case 5:
        what = "la_workspace_size_for";
        st = fz_workspace_size_for(h, b->op, &b->p, &t, &bytes);
        break;
    case 6:
        what = "la_set_num_threads";
        st = fz_set_num_threads(h, 1);
        break;
    case 7:
        what = "la_set_check_values";
        st = fz_set_check_values(h, 1);
        break;
    case 8:
        what = "la_set_workspace(NULL)";
        st = fz_set_workspace(h, NULL, 0);
        break;
    case 9: {
        what = "la_describe";
        char text[200];
        memset(text, 0xA5, sizeof text);
        st = fz_describe(h, b->op, &b->p, &t, text, sizeof text);
        if (st == LA_STATUS_HANDLE_BUSY && (unsigned char)text[0] != 0xA5)
            fz_fail(x, "wrote-on-failure", "la_describe was refused as HANDLE_BUSY but wrote its text");
        break;
    }
    case 10: {
        what = "la_get_policy";
        la_policy_t q;
        st = fz_get_policy(h, &q);
        break;
    }
    case 11:
        what = "la_check_errors";
        st = fz_check_errors(h);
        break;
    case 12: {
        /* la_execute with caller memory of exactly the call's figure */
        what = "la_execute";
        void *ws = b_need ? malloc(b_need) : NULL;
        size_t needed = 0;
        prepare(b, b_fresh);
        fz_snapshot(b);
        st = fz_execute(h, b->op, &b->p, &t, ws, b_need, &needed);
        if (st == LA_STATUS_SUCCESS && !image_equal(b_expect, b))
            fz_fail(x, "busy-corrupted",
                    "la_execute(%s) succeeded on a handle shared with a running call, but its outputs "
                    "differ from the same call run alone",
                    fz_op_name(b->op));
        if (st == LA_STATUS_HANDLE_BUSY && fz_first_changed(b) >= 0)
            fz_fail(x, "wrote-on-failure", "la_execute was refused as HANDLE_BUSY but wrote to its tensors");
        free(ws);
        break;
    }
    default:
        what = "la_last_error";
        if (!fz_last_error(h)) fz_fail(x, "message-null", "la_last_error returned NULL");
        if (fz_handle_backend(h) != LA_BACKEND_CPU) fz_fail(x, "handle-backend", "la_handle_backend changed");
        return -1; /* the two accessors may always run */
    }
    if (!shared && st != LA_STATUS_SUCCESS)
        fz_fail(x, "handles-interfere", "%s on its own handle, beside a call running on another, returned %s: %s", what,
                sname(st), fz_last_error(h));
    if (shared && st != LA_STATUS_SUCCESS && st != LA_STATUS_HANDLE_BUSY)
        fz_fail(x, "busy-wrong-status",
                "%s on a handle shared with a running call returned %s, want SUCCESS or HANDLE_BUSY", what, sname(st));
    /* Every call here is valid, so the message stays "": a refused call
     * leaves the running call's message alone. */
    const char *m = fz_last_error(h);
    if (m && m[0])
        fz_fail(x, "busy-message", "after %s (%s) beside a running valid call, la_last_error says \"%s\"", what,
                sname(st), m);
    return st == LA_STATUS_HANDLE_BUSY;
}

/* A long call on one thread, short calls on the same handle from this one:
 * each call either runs as if alone or is refused with HANDLE_BUSY and does
 * nothing.  A library without the refusal shares the workspace between the
 * two (wrong results, or a freed workspace in use: AddressSanitizer). */
void fz_iter_busy(fz_ctx_t *x, tu_rng_t *r) {
    if (x->o->device) return; /* host memory only */
    la_handle_t *h = NULL;
    if (fz_create(&h, LA_BACKEND_CPU) != LA_STATUS_SUCCESS) {
        fz_fail(x, "create", "la_create failed");
        return;
    }
    fz_set_num_threads(h, 1);
    /* Now and then this thread takes a handle of its own: handles never
     * share state, so nothing is refused and nothing interferes. */
    la_handle_t *mine = h;
    if (tu_below(r, 3) == 0 && fz_create(&mine, LA_BACKEND_CPU) != LA_STATUS_SUCCESS) mine = h;
    if (mine != h) fz_set_num_threads(mine, 1); /* as h: one workspace figure for both (la_execute in poke) */
    const int shared = mine == h;
    fz_call_t *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    fz_gen_long(a, r);
    do { /* a short call that does not update its own input */
        fz_call_free(b);
        fz_gen_valid(b, r, 0);
    } while (b->inplace);
    image_t a_fresh, b_fresh, a_expect, b_expect;
    image_take(&a_fresh, a);
    image_take(&b_fresh, b);
    la_tensors_t at = fz_call_tensors(a, 0), bt = fz_call_tensors(b, 0);
    prepare(a, &a_fresh);
    la_status_t sa = fz_run_op(h, a->op, &a->p, &at);
    prepare(b, &b_fresh);
    la_status_t sb = fz_run_op(h, b->op, &b->p, &bt);
    if (sa != LA_STATUS_SUCCESS || sb != LA_STATUS_SUCCESS) {
        fz_fail(x, "valid-rejected", "busy test: the calls alone returned %s and %s: %s", sname(sa), sname(sb),
                fz_last_error(h));
    } else {
        image_take(&a_expect, a);
        image_take(&b_expect, b);
        size_t b_need = 0; /* la_execute's workspace in poke */
        if (fz_workspace_size_for(h, b->op, &b->p, &bt, &b_need) != LA_STATUS_SUCCESS) b_need = 0;
        runner_t w = {.h = h, .c = a, .t = at, .fresh = &a_fresh, .expect = &a_expect, .rounds = 3};
        pthread_t th;
        if (pthread_create(&th, NULL, run_rounds, &w) != 0) {
            fz_fail(x, "thread", "pthread_create failed");
        } else {
            long nested = 0, nested_busy = 0;
            for (int i = 0; i < MAX_POKES && atomic_load(&w.finished) < w.rounds;) {
                long s0 = atomic_load(&w.started), f0 = atomic_load(&w.finished);
                if (s0 == f0) { /* poke only while the other thread is inside a call */
                    sched_yield();
                    continue;
                }
                i++;
                int busy = poke(x, mine, shared, b, &b_fresh, &b_expect, b_need, r);
                long s1 = atomic_load(&w.started), f1 = atomic_load(&w.finished);
                /* the other thread's call was in flight from before this call to after it */
                if (shared && busy >= 0 && s0 == s1 && f0 == f1 && s0 == f0 + 1) {
                    nested++;
                    nested_busy += busy;
                }
            }
            pthread_join(th, NULL);
            if (w.wrong)
                fz_fail(x, "busy-corrupted",
                        "%d of %d runs of %s beside calls on the same handle went wrong (last "
                        "status %s)",
                        w.wrong, w.rounds, fz_op_name(a->op), sname(w.wrong_status));
            if (!shared && w.busy)
                fz_fail(x, "handles-interfere",
                        "%s was refused %d times as HANDLE_BUSY although the other thread "
                        "used a handle of its own",
                        fz_op_name(a->op), w.busy);
            if (nested >= 5 && nested_busy == 0)
                fz_fail(x, "busy-missing",
                        "%ld calls ran entirely inside a %s on the same handle and none was "
                        "refused with HANDLE_BUSY",
                        nested, fz_op_name(a->op));
            if (x->o->verbose)
                printf("    busy: %d rounds right (%d refusals retried); %ld calls nested in them, %ld refused\n", w.ok,
                       w.busy, nested, nested_busy);
        }
        image_free(&a_expect);
        image_free(&b_expect);
    }
    image_free(&a_fresh);
    image_free(&b_fresh);
    fz_call_free(a);
    fz_call_free(b);
    free(a);
    free(b);
    if (!shared) fz_destroy(mine);
    fz_destroy(h);
}
