/*
 * fuzz_mutate.c - one deliberate mistake in a valid call, and the status
 * every entry point must answer it with.
 *
 * A mutation changes exactly one thing of a valid call (a copy of its
 * problem and tensors, a new buffer, or one input element put back
 * afterwards), so exactly one status is right whatever order the library
 * checks in.  Each entry point that sees the mistake (la_supports, the two
 * workspace queries, la_describe, the operation, and la_execute with caller
 * memory of exactly the valid call's figure) is called with it and must
 * return that status, leave a message, and change no byte of any buffer,
 * of the caller's workspace or of la_describe's text buffer.
 */
#include "fuzz.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    ENT_SUP = 1,
    ENT_WS = 2,
    ENT_WSF = 4,
    ENT_OP = 8,
    ENT_EXEC = 16,
    ENT_DESC = 32,
    ENT_LAST = ENT_DESC,
    ENT_ALL = 63,
    ENT_CALL = ENT_SUP | ENT_WSF | ENT_OP | ENT_EXEC | ENT_DESC
};

/* la_execute's workspace in a mutation: the valid call's figure, one byte
 * short of it, or NULL with 0 bytes. */
enum { EXEC_WS_FULL, EXEC_WS_SHORT, EXEC_WS_NULL };

typedef struct mut {
    char name[128];
    la_status_t want;      /* la_supports, the workspace queries and la_describe */
    la_status_t want_op;   /* the operation (differs only for a short workspace) */
    la_status_t want_exec; /* la_execute (likewise; SUCCESS: as want_op) */
    unsigned entries;      /* the entry points that see the mistake */
    int sup_may_pass;      /* a value only the call reads: la_supports need not see it */
    int wsf_may_pass;      /* the same for la_workspace_size_for on a device backend */
    la_op_t op;            /* passed to every entry point but the operation's own */
    int null_handle, null_problem, null_tensors, null_bytes;
    int use_ws; /* a caller workspace of ws_bytes for the call */
    size_t ws_bytes;
    int exec_ws;          /* EXEC_WS_* */
    int exec_need_known;  /* exec_need is la_workspace_size_for's figure of the valid call */
    size_t exec_need;     /* (the workspace la_execute gets, and the *needed it must report) */
    int exec_null_needed; /* la_execute's needed = NULL */
    int desc_null_buf;    /* la_describe's buf = NULL */
    size_t desc_len;      /* la_describe's len (0: a mistake) */
    la_problem_t p;
    la_tensors_t t;
    int64_t *cu;  /* the mutated offsets (exact size), or NULL */
    int undo_buf; /* an input element changed in place, or -1 */
    size_t undo_at;
    unsigned char undo[4];
} mut_t;

typedef int (*mutator_t)(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m);

static const char *sname(la_status_t st) {
    const char *n = fz_status_name(st);
    return n ? n : "(unknown status)";
}

/* ---- picking tensors -------------------------------------------------------------------- */

static int live(const fz_call_t *c, int id) {
    return c->t[id].src == FZ_IN_BUF && fz_role(c->op, c->p.decay, id) != FZ_UNUSED;
}
static int live_output(const fz_call_t *c, int id) {
    return live(c, id) && fz_is_output(fz_role(c->op, c->p.decay, id));
}
static int live_input(const fz_call_t *c, int id) {
    return live(c, id) && !fz_is_output(fz_role(c->op, c->p.decay, id));
}
static int nonempty(const fz_call_t *c, int id) { return fz_numel(&c->t[id]) > 0; }
static int has_long_dim(const fz_call_t *c, int id) {
    for (int d = 0; d < 4; d++)
        if (c->t[id].dim[d] > 1) return 1;
    return 0;
}

typedef int (*pred_t)(const fz_call_t *c, int id);
static int p_required(const fz_call_t *c, int id) {
    fz_role_t r = fz_role(c->op, c->p.decay, id);
    return c->t[id].src == FZ_IN_BUF && (r == FZ_IN_REQ || r == FZ_OUT_REQ);
}
static int p_live(const fz_call_t *c, int id) { return live(c, id); }
static int p_f32_only(const fz_call_t *c, int id) { return live(c, id) && (fz_is_state(id) || fz_is_decay(id)); }
static int p_log_decay(const fz_call_t *c, int id) {
    return live_input(c, id) && (id == FZ_LD || id == FZ_LDV) && nonempty(c, id);
}
static int p_out_nonempty(const fz_call_t *c, int id) { return live_output(c, id) && nonempty(c, id); }
static int p_in_nonempty(const fz_call_t *c, int id) { return live_input(c, id) && nonempty(c, id); }
static int p_out_two(const fz_call_t *c, int id) { return live_output(c, id) && fz_numel(&c->t[id]) >= 2; }
static int p_long(const fz_call_t *c, int id) { return live(c, id) && nonempty(c, id) && has_long_dim(c, id); }

static int pick(tu_rng_t *r, const fz_call_t *c, pred_t ok, int except) {
    int ids[FZ_NT], n = 0;
    for (int id = 0; id < FZ_NT; id++)
        if (id != except && ok(c, id)) ids[n++] = id;
    return n ? ids[tu_below(r, (uint64_t)n)] : -1;
}

static int pick_long_dim(tu_rng_t *r, const fz_tensor_t *t) {
    int ds[4], n = 0;
    for (int d = 0; d < 4; d++)
        if (t->dim[d] > 1) ds[n++] = d;
    return n ? ds[tu_below(r, (uint64_t)n)] : -1;
}

/* The field of the mutated tensors as view t. */
static void set_field(const fz_call_t *c, mut_t *m, int id, const fz_tensor_t *t) {
    la_tensor_t *f = fz_field(&m->t, id);
    f->data = fz_tensor_ptr(c, t);
    f->dtype = t->dtype;
    memcpy(f->stride, t->stride, sizeof f->stride);
}

/* Contiguous strides (identity order) with the given innermost step. */
static void contiguous(const int64_t dim[4], int64_t inner, int64_t st[4]) {
    int64_t acc = inner;
    for (int d = 3; d >= 0; d--) {
        st[d] = acc;
        acc *= dim[d] > 1 ? dim[d] : 1;
    }
}

/* A copy of tensor id with strides st in a new buffer of exactly its span;
 * an input keeps its values there. */
static fz_tensor_t relayout(fz_call_t *c, int id, const int64_t st[4]) {
    fz_tensor_t t = c->t[id];
    memcpy(t.stride, st, sizeof t.stride);
    memcpy(t.nat, st, sizeof t.nat);
    fz_place(c, &t);
    if (!fz_is_output(fz_role(c->op, c->p.decay, id))) fz_copy_elements(c, &c->t[id], &t);
    return t;
}

static int64_t *copy_offsets(const fz_call_t *c) {
    size_t n = (size_t)c->p.num_seqs + 1;
    int64_t *cu = malloc(n * sizeof *cu);
    if (!cu) exit(2);
    memcpy(cu, c->cu, n * sizeof *cu);
    return cu;
}

/* ---- pointers, versions, handles ------------------------------------------------------------ */

static int m_null_problem(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    (void)c;
    (void)r;
    snprintf(m->name, sizeof m->name, "problem NULL");
    m->null_problem = 1;
    m->want = LA_STATUS_NULL_POINTER;
    m->entries = ENT_ALL;
    return 1;
}

static int m_null_tensors(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    (void)c;
    (void)r;
    snprintf(m->name, sizeof m->name, "tensors NULL");
    m->null_tensors = 1;
    m->want = LA_STATUS_NULL_POINTER;
    return 1;
}

static int m_null_bytes(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    (void)c;
    (void)r;
    snprintf(m->name, sizeof m->name, "bytes NULL");
    m->null_bytes = 1;
    m->want = LA_STATUS_NULL_POINTER;
    m->entries = ENT_WS | ENT_WSF;
    return 1;
}

static int m_null_required(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    int id = pick(r, c, p_required, -1);
    if (id < 0) return 0;
    snprintf(m->name, sizeof m->name, "required %s NULL", fz_tensor_names[id]);
    fz_field(&m->t, id)->data = NULL;
    m->want = LA_STATUS_NULL_POINTER;
    return 1;
}

static int m_problem_version(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    (void)c;
    const size_t v[] = {0, 1, sizeof(la_problem_t) - 8, sizeof(la_problem_t) + 8, sizeof(la_problem_t) / 2, SIZE_MAX};
    m->p.struct_size = v[tu_below(r, 6)];
    snprintf(m->name, sizeof m->name, "problem.struct_size %zu", m->p.struct_size);
    m->want = LA_STATUS_BAD_VERSION;
    m->entries = ENT_ALL;
    return 1;
}

static int m_tensors_version(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    (void)c;
    const size_t v[] = {0, 1, sizeof(la_tensors_t) - 8, sizeof(la_tensors_t) + 8, sizeof(la_problem_t), SIZE_MAX};
    m->t.struct_size = v[tu_below(r, 6)];
    snprintf(m->name, sizeof m->name, "tensors.struct_size %zu", m->t.struct_size);
    m->want = LA_STATUS_BAD_VERSION;
    return 1;
}

static int m_unknown_op(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    (void)c;
    const int v[] = {5, 6, -1, 1000, INT_MAX};
    m->op = (la_op_t)v[tu_below(r, 5)];
    snprintf(m->name, sizeof m->name, "operation %d", (int)m->op);
    m->want = LA_STATUS_BAD_PARAM;
    m->entries = ENT_SUP | ENT_WS | ENT_WSF | ENT_EXEC | ENT_DESC;
    return 1;
}

/* ---- the problem ---------------------------------------------------------------------------- */

static int m_nonpositive(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    const int packed = c->p.cu_seqlens != NULL;
    const int64_t bad[] = {0, -1, -1 - (int64_t)tu_below(r, 1000), INT64_MIN};
    int64_t v = bad[tu_below(r, 4)];
    /* Packed: batch and seqlen are tied to the offsets (changing them is a
     * second mistake), so only heads and head dims. */
    static const int packed_fields[3] = {1, 3, 4};
    switch (packed ? packed_fields[tu_below(r, 3)] : (int)tu_below(r, 5)) {
    case 0:
        m->p.batch = v;
        snprintf(m->name, sizeof m->name, "batch %lld", (long long)v);
        break;
    case 1:
        m->p.heads = v;
        snprintf(m->name, sizeof m->name, "heads %lld", (long long)v);
        break;
    case 2:
        m->p.seqlen = v == 0 ? -1 : v; /* seqlen 0 is valid */
        snprintf(m->name, sizeof m->name, "seqlen %lld", (long long)m->p.seqlen);
        break;
    case 3:
        m->p.dim_qk = v;
        snprintf(m->name, sizeof m->name, "dim_qk %lld", (long long)v);
        break;
    default:
        m->p.dim_v = v;
        snprintf(m->name, sizeof m->name, "dim_v %lld", (long long)v);
        break;
    }
    m->want = LA_STATUS_BAD_SHAPE;
    m->entries = ENT_ALL;
    return 1;
}

static int m_head_dim(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    (void)c;
    const int64_t v[] = {LA_MAX_HEAD_DIM + 1, 512, 1 << 20, LA_MAX_HEAD_DIM + 1 + (int64_t)tu_below(r, 5000)};
    int64_t d = v[tu_below(r, 4)];
    if (tu_below(r, 2)) m->p.dim_qk = d;
    else m->p.dim_v = d;
    snprintf(m->name, sizeof m->name, "dim_qk %lld, dim_v %lld", (long long)m->p.dim_qk, (long long)m->p.dim_v);
    m->want = LA_STATUS_UNSUPPORTED_HEAD_DIM;
    m->entries = ENT_ALL;
    return 1;
}

static int m_decay_kind(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    (void)c;
    const int v[] = {5, 6, 100, -1, INT_MAX, INT_MIN};
    m->p.decay = (la_decay_t)v[tu_below(r, 6)];
    snprintf(m->name, sizeof m->name, "decay kind %d", (int)m->p.decay);
    m->want = LA_STATUS_BAD_PARAM;
    m->entries = ENT_ALL;
    return 1;
}

static int m_scale(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    (void)c;
    const float v[] = {NAN, -NAN, INFINITY, -INFINITY};
    m->p.scale = v[tu_below(r, 4)];
    snprintf(m->name, sizeof m->name, "scale %g", (double)m->p.scale);
    m->want = LA_STATUS_BAD_SCALE;
    m->entries = ENT_ALL;
    return 1;
}

static int m_seqlens(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    m->want = LA_STATUS_BAD_SEQLENS;
    m->entries = ENT_ALL;
    if (!c->p.cu_seqlens) {
        m->p.num_seqs = 1 + (int64_t)tu_below(r, 5);
        snprintf(m->name, sizeof m->name, "num_seqs %lld without cu_seqlens", (long long)m->p.num_seqs);
        return 1;
    }
    const int64_t ns = c->p.num_seqs;
    m->cu = copy_offsets(c);
    m->p.cu_seqlens = m->cu;
    switch (tu_below(r, 5)) {
    case 0:
        m->cu[0] = tu_below(r, 2) ? -1 - (int64_t)tu_below(r, 5) : 1 + (int64_t)tu_below(r, 3);
        snprintf(m->name, sizeof m->name, "cu_seqlens[0] = %lld", (long long)m->cu[0]);
        break;
    case 1: {
        int64_t i = ns >= 2 ? 1 + (int64_t)tu_below(r, (uint64_t)(ns - 1)) : 1;
        m->cu[i] = m->cu[i - 1] - 1 - (int64_t)tu_below(r, 3);
        snprintf(m->name, sizeof m->name, "cu_seqlens decreasing at %lld", (long long)i);
        break;
    }
    case 2:
        m->cu[ns] = c->p.seqlen + 1 + (int64_t)tu_below(r, 3);
        snprintf(m->name, sizeof m->name, "cu_seqlens[%lld] = %lld != seqlen", (long long)ns, (long long)m->cu[ns]);
        break;
    case 3:
        m->p.batch = 2 + (int64_t)tu_below(r, 3);
        snprintf(m->name, sizeof m->name, "batch %lld with cu_seqlens", (long long)m->p.batch);
        break;
    default:
        m->p.num_seqs = -(int64_t)tu_below(r, 3);
        snprintf(m->name, sizeof m->name, "num_seqs %lld with cu_seqlens", (long long)m->p.num_seqs);
        break;
    }
    return 1;
}

static int m_decode_shape(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    if (c->op != LA_OP_DECODE) return 0;
    m->entries = ENT_ALL;
    if (tu_below(r, 3) == 0) {
        m->cu = malloc(2 * sizeof *m->cu);
        if (!m->cu) exit(2);
        m->cu[0] = 0;
        m->cu[1] = 1;
        m->p.cu_seqlens = m->cu;
        m->p.num_seqs = 1;
        m->p.batch = 1;
        snprintf(m->name, sizeof m->name, "decode with cu_seqlens");
        m->want = LA_STATUS_BAD_SEQLENS;
        return 1;
    }
    const int64_t v[] = {0, -1, -2, -70, INT64_MIN};
    m->p.seqlen = v[tu_below(r, 5)];
    snprintf(m->name, sizeof m->name, "decode with seqlen %lld", (long long)m->p.seqlen);
    m->want = LA_STATUS_BAD_SHAPE;
    return 1;
}

/* problem.cu_seqlens_on_device: 0 or 1 only; 1 needs cu_seqlens, and the
 * CPU backend (host memory) refuses device offsets as not supported. */
static int m_cu_device(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    const int packed = c->p.cu_seqlens != NULL, host = fz_handle_backend(h) == LA_BACKEND_CPU;
    m->entries = ENT_ALL;
    if (tu_below(r, 2) || (packed && !host)) {
        const int v[] = {2, 3, -1, 100, INT_MAX, INT_MIN};
        m->p.cu_seqlens_on_device = v[tu_below(r, 6)];
        snprintf(m->name, sizeof m->name, "cu_seqlens_on_device = %d", m->p.cu_seqlens_on_device);
        m->want = LA_STATUS_BAD_PARAM;
    } else if (!packed) {
        m->p.cu_seqlens_on_device = 1;
        snprintf(m->name, sizeof m->name, "cu_seqlens_on_device = 1 without cu_seqlens");
        m->want = LA_STATUS_BAD_SEQLENS;
    } else {
        m->p.cu_seqlens_on_device = 1; /* host offsets, said to be in device memory */
        snprintf(m->name, sizeof m->name, "cu_seqlens_on_device = 1 on the CPU backend");
        m->want = LA_STATUS_NOT_SUPPORTED;
    }
    return 1;
}

static int m_max_seqlen(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    (void)c;
    const int64_t v[] = {-1, -2 - (int64_t)tu_below(r, 1000), INT64_MIN, -((int64_t)1 << 40)};
    m->p.max_seqlen = v[tu_below(r, 4)];
    snprintf(m->name, sizeof m->name, "max_seqlen %lld", (long long)m->p.max_seqlen);
    m->want = LA_STATUS_BAD_SHAPE;
    m->entries = ENT_ALL;
    return 1;
}

/* la_describe without a buffer: buf NULL, or len 0. */
static int m_describe_buf(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    (void)c;
    if (tu_below(r, 2)) {
        m->desc_null_buf = 1;
        snprintf(m->name, sizeof m->name, "la_describe buf NULL, len %zu", m->desc_len);
    } else {
        m->desc_len = 0;
        snprintf(m->name, sizeof m->name, "la_describe len 0");
    }
    m->want = LA_STATUS_NULL_POINTER;
    m->entries = ENT_DESC;
    return 1;
}

static int64_t pow2(int e) { return (int64_t)1 << e; }

/* Sizes whose tensors pass 2^62 bytes (some wrap int64 products to small
 * numbers, e.g. 2^32 x 2^32 = 0).  Offsets stay consistent, decode stays at
 * one token: only the size is wrong. */
static int m_huge(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    const int packed = c->p.cu_seqlens != NULL, decode = c->op == LA_OP_DECODE;
    m->want = LA_STATUS_BAD_SHAPE;
    m->entries = ENT_ALL;
    for (int attempt = 0; attempt < 8; attempt++) {
        la_problem_t p = m->p;
        switch (tu_below(r, 6)) {
        case 0:
            if (packed) continue;
            p.batch = pow2(60) + (int64_t)tu_below(r, 100);
            p.heads = 2;
            if (!decode) p.seqlen = (int64_t)tu_below(r, 2);
            break;
        case 1:
            if (decode) continue;
            p.seqlen = (packed ? pow2(62) : INT64_MAX) - (int64_t)tu_below(r, 1000);
            break;
        case 2:
            if (packed) continue;
            p.batch = pow2(32);
            p.heads = pow2(32);
            break;
        case 3: p.heads = INT64_MAX - (int64_t)tu_below(r, 10); break;
        case 4: {
            int a = packed ? 0 : (int)tu_below(r, 63), b = (int)tu_below(r, 63), e = decode ? 0 : (int)tu_below(r, 63);
            if (!packed) p.batch = pow2(a);
            p.heads = pow2(b);
            if (!decode && !packed) p.seqlen = pow2(e);
            break;
        }
        default:
            /* So many sequences that their states cannot exist: refused
             * before the offsets (only num_seqs + 1 of them) are read. */
            if (!packed) continue;
            p.num_seqs = pow2(61) + (int64_t)tu_below(r, 1000);
            break;
        }
        if (fz_addressable(&p) != FZ_ADDR_NO) continue;
        if (packed && p.seqlen != c->p.seqlen) {
            free(m->cu);
            m->cu = copy_offsets(c);
            m->cu[c->p.num_seqs] = p.seqlen;
            p.cu_seqlens = m->cu;
        }
        m->p = p;
        snprintf(m->name, sizeof m->name, "huge sizes B %lld H %lld N %lld S %lld", (long long)p.batch,
                 (long long)p.heads, (long long)p.seqlen, (long long)(packed ? p.num_seqs : p.batch));
        return 1;
    }
    return 0;
}

/* ---- tensors -------------------------------------------------------------------------------- */

static int m_dtype_unknown(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    int id = pick(r, c, p_live, -1);
    if (id < 0) return 0;
    const int v[] = {3, 4, 99, -1, INT_MAX};
    fz_field(&m->t, id)->dtype = (la_dtype_t)v[tu_below(r, 5)];
    snprintf(m->name, sizeof m->name, "%s dtype %d", fz_tensor_names[id], (int)fz_field(&m->t, id)->dtype);
    m->want = LA_STATUS_UNSUPPORTED_DTYPE;
    return 1;
}

static int m_dtype_half(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    int id = pick(r, c, p_f32_only, -1);
    if (id < 0) return 0;
    fz_field(&m->t, id)->dtype = tu_below(r, 2) ? LA_DTYPE_F16 : LA_DTYPE_BF16;
    snprintf(m->name, sizeof m->name, "%s in %s (must be f32)", fz_tensor_names[id],
             tu_dtype_name(fz_field(&m->t, id)->dtype));
    m->want = LA_STATUS_UNSUPPORTED_DTYPE;
    return 1;
}

static int m_bad_decay(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)h;
    /* Device values are checked by the call itself only in the synchronous
     * mode (deferred: reported later; off: results unspecified). */
    if (c->device && x->check_mode != LA_CHECK_VALUES_SYNC) return 0;
    int id = pick(r, c, p_log_decay, -1);
    if (id < 0) return 0;
    const fz_tensor_t *t = &c->t[id];
    int64_t i[4];
    for (int d = 0; d < 4; d++) i[d] = (int64_t)tu_below(r, (uint64_t)t->dim[d]);
    static const uint32_t bits[] = {0x3f000000u /* 0.5 */,
                                    0x00000001u /* smallest denormal */,
                                    0x7f800000u /* +inf */,
                                    0x7fc00000u /* NaN */,
                                    0xffc00000u /* -NaN */,
                                    0x7f800001u /* signalling NaN */,
                                    0xff800000u /* -inf */,
                                    0xc9742401u /* just below -1e6 */,
                                    0xcb18967fu /* about -1e7 */,
                                    0xff7fffffu /* -FLT_MAX */,
                                    0x0d800000u /* 7.9e-31 */};
    uint32_t b = bits[tu_below(r, 11)];
    m->undo_buf = t->buf;
    m->undo_at = fz_elem_at(t, i[0], i[1], i[2], i[3]);
    memcpy(m->undo, c->buf[t->buf].host + m->undo_at, 4);
    memcpy(c->buf[t->buf].host + m->undo_at, &b, 4);
    float f;
    memcpy(&f, &b, 4);
    snprintf(m->name, sizeof m->name, "%s[%lld,%lld,%lld,%lld] = %g (bits 0x%08x)", fz_tensor_names[id],
             (long long)i[0], (long long)i[1], (long long)i[2], (long long)i[3], (double)f, b);
    m->want = LA_STATUS_BAD_DECAY;
    m->sup_may_pass = 1;
    m->wsf_may_pass = c->device;
    return 1;
}

static int m_overlap_input(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    int o = pick(r, c, p_out_nonempty, -1);
    if (o < 0) return 0;
    /* final_state on initial_state with equal strides is decode's in-place update, not a mistake */
    int in = pick(r, c, p_in_nonempty, c->op == LA_OP_DECODE && o == FZ_SN ? FZ_S0 : -1);
    if (in < 0) return 0;
    fz_tensor_t t = c->t[o];
    t.buf = c->t[in].buf;
    t.byte_off = c->t[in].byte_off;
    set_field(c, m, o, &t);
    snprintf(m->name, sizeof m->name, "output %s on input %s", fz_tensor_names[o], fz_tensor_names[in]);
    m->want = LA_STATUS_OVERLAP;
    return 1;
}

static int m_overlap_outputs(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    int a = pick(r, c, p_out_nonempty, -1);
    int b = a < 0 ? -1 : pick(r, c, p_out_nonempty, a);
    if (b < 0) return 0;
    fz_tensor_t t = c->t[b];
    t.buf = c->t[a].buf;
    t.byte_off = c->t[a].byte_off;
    set_field(c, m, b, &t);
    snprintf(m->name, sizeof m->name, "output %s on output %s", fz_tensor_names[b], fz_tensor_names[a]);
    m->want = LA_STATUS_OVERLAP;
    return 1;
}

/* Two outputs interleaved element by element in one buffer: no shared
 * element, yet overlapping address ranges (the header refuses them). */
static int m_interleaved(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    int pairs[FZ_NT * FZ_NT][2], n = 0;
    for (int a = 0; a < FZ_NT; a++)
        for (int b = a + 1; b < FZ_NT; b++)
            if (p_out_two(c, a) && p_out_two(c, b) && c->t[a].dtype == c->t[b].dtype &&
                memcmp(c->t[a].dim, c->t[b].dim, sizeof c->t[a].dim) == 0) {
                pairs[n][0] = a;
                pairs[n++][1] = b;
            }
    if (!n) return 0;
    int k = (int)tu_below(r, (uint64_t)n), a = pairs[k][0], b = pairs[k][1];
    fz_tensor_t ta = c->t[a], tb = c->t[b];
    contiguous(ta.dim, 2, ta.stride);
    memcpy(tb.stride, ta.stride, sizeof tb.stride);
    size_t es = fz_esize(ta.dtype);
    int buf = fz_add_buf(c, (size_t)(2 * fz_numel(&ta)) * es);
    ta.buf = tb.buf = buf;
    ta.byte_off = 0;
    tb.byte_off = es;
    set_field(c, m, a, &ta);
    set_field(c, m, b, &tb);
    snprintf(m->name, sizeof m->name, "outputs %s and %s interleaved", fz_tensor_names[a], fz_tensor_names[b]);
    m->want = LA_STATUS_OVERLAP;
    return 1;
}

/* Decode's final_state on initial_state's memory with other strides: only
 * the same strides make an in-place update. */
static int m_inplace_mismatch(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    (void)r;
    const fz_tensor_t *s0 = &c->t[FZ_S0];
    if (c->op != LA_OP_DECODE || s0->src != FZ_IN_BUF || fz_numel(s0) < 2) return 0;
    fz_tensor_t sn = *s0;
    sn.dtype = LA_DTYPE_F32;
    int64_t cand[3][4];
    const int rev[4] = {3, 2, 1, 0};
    contiguous(sn.dim, 1, cand[0]);
    contiguous(sn.dim, 2, cand[1]);
    int64_t acc = 1; /* reversed physical order: a permutation, so no self-overlap */
    for (int k = 3; k >= 0; k--) {
        cand[2][rev[k]] = acc;
        acc *= sn.dim[rev[k]] > 1 ? sn.dim[rev[k]] : 1;
    }
    for (int k = 0; k < 3; k++) {
        int differs = 0;
        for (int d = 0; d < 4; d++) differs |= sn.dim[d] > 1 && cand[k][d] != s0->nat[d];
        if (!differs) continue;
        memcpy(sn.stride, cand[k], sizeof sn.stride);
        set_field(c, m, FZ_SN, &sn);
        snprintf(m->name, sizeof m->name, "decode in place with other strides");
        m->want = LA_STATUS_OVERLAP;
        return 1;
    }
    return 0;
}

/* An output whose strides map two indices to one element. */
static int m_self_overlap(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    int id = pick(r, c, p_out_two, -1);
    if (id < 0) return 0;
    const fz_tensor_t *t = &c->t[id];
    int64_t st[4];
    contiguous(t->dim, 1, st);
    int i = pick_long_dim(r, t), j = pick_long_dim(r, t);
    if (i == j || tu_below(r, 3) == 0) {
        st[i] = 0;
    } else { /* (i = 1, j = 0) and (i = 0, j = k) are one element */
        st[i] = (int64_t)tu_below(r, (uint64_t)t->dim[j]) * st[j];
    }
    fz_tensor_t nt = relayout(c, id, st);
    set_field(c, m, id, &nt);
    snprintf(m->name, sizeof m->name, "%s strides {%lld,%lld,%lld,%lld} overlap themselves", fz_tensor_names[id],
             (long long)st[0], (long long)st[1], (long long)st[2], (long long)st[3]);
    m->want = LA_STATUS_BAD_STRIDE;
    return 1;
}

static int m_negative_stride(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    int id = pick(r, c, p_long, -1);
    if (id < 0) return 0;
    const fz_tensor_t *t = &c->t[id];
    int64_t st[4];
    memcpy(st, t->nat, sizeof st);
    int d = pick_long_dim(r, t);
    st[d] = st[d] > 0 ? -st[d] : -1 - (int64_t)tu_below(r, 3);
    fz_tensor_t nt = relayout(c, id, st);
    set_field(c, m, id, &nt);
    snprintf(m->name, sizeof m->name, "%s stride[%d] = %lld", fz_tensor_names[id], d, (long long)st[d]);
    m->want = LA_STATUS_BAD_STRIDE;
    return 1;
}

/* Strides whose reach passes 2^62 bytes: one dim alone, or two whose sum does. */
static int m_absurd_stride(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    int id = pick(r, c, p_long, -1);
    if (id < 0) return 0;
    fz_tensor_t t = c->t[id];
    memcpy(t.stride, t.nat, sizeof t.stride);
    const int64_t es = (int64_t)fz_esize(t.dtype);
    int d = pick_long_dim(r, &t), d2 = pick_long_dim(r, &t);
    switch (tu_below(r, 4)) {
    case 0: t.stride[d] = INT64_MAX - (int64_t)tu_below(r, 1000); break;
    case 1: t.stride[d] = FZ_MAX_BYTES; break;
    case 2: t.stride[d] = FZ_MAX_BYTES / ((t.dim[d] - 1) * es) + 1 + (int64_t)tu_below(r, 1000); break;
    default:
        if (d2 == d) {
            t.stride[d] = FZ_MAX_BYTES / ((t.dim[d] - 1) * es) + 1;
            break;
        }
        t.stride[d] = FZ_MAX_BYTES / 2 / ((t.dim[d] - 1) * es) + 1;
        t.stride[d2] = FZ_MAX_BYTES / 2 / ((t.dim[d2] - 1) * es) + 1;
        break;
    }
    set_field(c, m, id, &t);
    snprintf(m->name, sizeof m->name, "%s strides {%lld,%lld,%lld,%lld} reach past 2^62 bytes", fz_tensor_names[id],
             (long long)t.stride[0], (long long)t.stride[1], (long long)t.stride[2], (long long)t.stride[3]);
    m->want = LA_STATUS_BAD_STRIDE;
    return 1;
}

/* A decay tensor the kind does not use, given to an operation that takes it. */
static int m_unused_decay_tensor(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    (void)x;
    (void)h;
    int ids[4], n = 0;
    const int cand[4] = {FZ_LD, FZ_LDV, FZ_DLD, FZ_DLDV};
    for (int i = 0; i < 4; i++)
        if (fz_op_uses(c->op, cand[i]) && fz_role(c->op, c->p.decay, cand[i]) == FZ_UNUSED) ids[n++] = cand[i];
    if (!n) return 0;
    int id = ids[tu_below(r, (uint64_t)n)];
    fz_tensor_t t;
    memset(&t, 0, sizeof t);
    t.dtype = LA_DTYPE_F32;
    fz_logical_dims(&c->p, c->S, id, t.dim);
    contiguous(t.dim, 1, t.stride);
    memcpy(t.nat, t.stride, sizeof t.nat);
    fz_place(c, &t);
    if (id == FZ_LD || id == FZ_LDV) { /* valid values: only its presence is wrong */
        unsigned char *base = c->buf[t.buf].host;
        for (int64_t i = 0; i < fz_numel(&t); i++) fz_store(LA_DTYPE_F32, base + 4 * (size_t)i, -0.5);
    }
    set_field(c, m, id, &t);
    snprintf(m->name, sizeof m->name, "%s given to decay kind %d", fz_tensor_names[id], (int)c->p.decay);
    m->want = LA_STATUS_BAD_PARAM;
    return 1;
}

/* A caller workspace one byte short of this call's own figure: the
 * handle's (la_set_workspace) for the operation; la_execute's one byte short
 * or NULL with 0 bytes, with *needed set to the figure all the same. */
static int m_short_workspace(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r, mut_t *m) {
    size_t exact = 0;
    la_status_t st = fz_workspace_size_for(h, c->op, &m->p, &m->t, &exact);
    if (st != LA_STATUS_SUCCESS || exact == 0) return 0;
    fz_check_message(x, h, st, "la_workspace_size_for");
    m->use_ws = 1;
    m->ws_bytes = exact - 1;
    m->exec_need_known = 1;
    m->exec_need = exact;
    m->exec_ws = tu_below(r, 3) == 0 ? EXEC_WS_NULL : EXEC_WS_SHORT;
    m->exec_null_needed = tu_below(r, 8) == 0;
    snprintf(m->name, sizeof m->name, "caller workspace of %zu bytes (la_execute: %s%s), the call needs %zu", exact - 1,
             m->exec_ws == EXEC_WS_NULL ? "NULL, 0 bytes" : "one byte short",
             m->exec_null_needed ? ", needed NULL" : "", exact);
    m->want = LA_STATUS_SUCCESS;
    m->want_op = LA_STATUS_WORKSPACE_TOO_SMALL;
    m->want_exec = LA_STATUS_WORKSPACE_TOO_SMALL;
    return 1;
}

/* ---- running a mutation --------------------------------------------------------------------- */

#define FILL_BYTE 0xA5

/* What la_execute and la_describe get besides the call. */
typedef struct extra {
    void *ws; /* la_execute's workspace (exact size), or NULL */
    size_t ws_bytes;
    size_t needed;
    char *buf; /* la_describe's text buffer (exactly desc_len bytes, at least 1) */
} extra_t;

static la_status_t call_entry(unsigned e, la_handle_t *h, const fz_call_t *c, const mut_t *m, extra_t *ex,
                              const char **what) {
    const la_problem_t *p = m->null_problem ? NULL : &m->p;
    const la_tensors_t *t = m->null_tensors ? NULL : &m->t;
    size_t out = 0, *bytes = m->null_bytes ? NULL : &out;
    switch (e) {
    case ENT_SUP: *what = "la_supports"; return fz_supports(h, m->op, p, t);
    case ENT_WS: *what = "la_workspace_size"; return fz_workspace_size(h, m->op, p, bytes);
    case ENT_WSF: *what = "la_workspace_size_for"; return fz_workspace_size_for(h, m->op, p, t, bytes);
    case ENT_EXEC:
        *what = "la_execute";
        return fz_execute(h, m->op, p, t, ex->ws, ex->ws_bytes, m->exec_null_needed ? NULL : &ex->needed);
    case ENT_DESC:
        *what = "la_describe";
        return fz_describe(h, m->op, p, t, m->desc_null_buf ? NULL : ex->buf, m->desc_len);
    default: *what = fz_op_name(c->op); return fz_run_op(h, c->op, p, t);
    }
}

/* la_execute's workspace for the mutation: exactly the bytes it is given. */
static void exec_workspace(const fz_call_t *c, const mut_t *m, extra_t *ex) {
    ex->ws = NULL;
    ex->ws_bytes = 0;
    if (m->exec_ws == EXEC_WS_NULL || !m->exec_need_known) return;
    size_t bytes = m->exec_ws == EXEC_WS_SHORT ? m->exec_need - 1 : m->exec_need;
    if (bytes == 0 || bytes > ((size_t)1 << 30)) return;
    ex->ws = c->device ? fz_dev_alloc(bytes) : malloc(bytes);
    if (!ex->ws) return;
    ex->ws_bytes = bytes;
    if (!c->device) memset(ex->ws, FILL_BYTE, bytes);
}

static size_t first_not(const void *p, size_t n, unsigned char byte) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != byte) return i;
    return n;
}

static void run_mutation(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, const mut_t *m) {
    la_handle_t *hh = m->null_handle ? NULL : h;
    void *ws = NULL;
    if (m->use_ws) {
        ws = c->device ? fz_dev_alloc(m->ws_bytes) : malloc(m->ws_bytes ? m->ws_bytes : 1);
        la_status_t st = fz_set_workspace(h, ws, m->ws_bytes);
        if (st != LA_STATUS_SUCCESS) fz_fail(x, "setting-rejected", "la_set_workspace returned %s", sname(st));
    }
    for (unsigned e = 1; e <= ENT_LAST; e <<= 1) {
        if (!(m->entries & e)) continue;
        const char *what;
        extra_t ex = {.needed = (size_t)0x5eed5eed};
        const size_t buf_len = m->desc_len ? m->desc_len : 1;
        if (e == ENT_EXEC) exec_workspace(c, m, &ex);
        if (e == ENT_DESC) {
            ex.buf = malloc(buf_len);
            if (!ex.buf) exit(2);
            memset(ex.buf, FILL_BYTE, buf_len);
        }
        fz_snapshot(c);
        fz_upload(c);
        la_status_t st = call_entry(e, hh, c, m, &ex, &what);
        fz_download(c);
        la_status_t want = e == ENT_OP ? m->want_op : e == ENT_EXEC ? m->want_exec : m->want;
        /* la_describe and la_workspace_size_for validate like the call (the header) */
        int ok = st == want || (st == LA_STATUS_SUCCESS && ((e == ENT_SUP && m->sup_may_pass) ||
                                                            ((e == ENT_WSF || e == ENT_DESC) && m->wsf_may_pass)));
        if (!ok)
            fz_fail(x, "wrong-status", "%s(%s) with %s returned %s, want %s; message: %s", what, fz_op_name(m->op),
                    m->name, sname(st), sname(want), hh ? fz_last_error(hh) : "(no handle)");
        if (st != LA_STATUS_SUCCESS) fz_check_known(x, st, what);
        if (hh) fz_check_message(x, hh, st, what);
        int changed = fz_first_changed(c);
        if (changed >= 0) {
            fz_fail(x, "wrote-on-failure", "%s(%s) with %s (%s) changed buffer %d", what, fz_op_name(c->op), m->name,
                    sname(st), changed);
            for (int i = 0; i < c->nbuf; i++) /* so later calls start from the same inputs */
                memcpy(c->buf[i].host, c->buf[i].snap, c->buf[i].bytes);
        }
        if (e == ENT_EXEC) {
            if (st == LA_STATUS_WORKSPACE_TOO_SMALL && m->exec_need_known && !m->exec_null_needed &&
                ex.needed != m->exec_need)
                fz_fail(x, "execute-needed", "la_execute(%s) with %s: WORKSPACE_TOO_SMALL with *needed = %zu, want %zu",
                        fz_op_name(m->op), m->name, ex.needed, m->exec_need);
            size_t at;
            if (st != LA_STATUS_SUCCESS && ex.ws && !c->device &&
                (at = first_not(ex.ws, ex.ws_bytes, FILL_BYTE)) < ex.ws_bytes)
                fz_fail(x, "wrote-on-failure", "la_execute(%s) with %s (%s) wrote byte %zu of its workspace",
                        fz_op_name(m->op), m->name, sname(st), at);
            if (ex.ws) {
                if (c->device) fz_dev_free(ex.ws);
                else free(ex.ws);
            }
        }
        if (e == ENT_DESC) {
            size_t at;
            if (st == LA_STATUS_SUCCESS && !memchr(ex.buf, 0, buf_len))
                fz_fail(x, "describe-unterminated", "la_describe(%s, len %zu) with %s: no NUL within len",
                        fz_op_name(m->op), buf_len, m->name);
            if (st != LA_STATUS_SUCCESS && (at = first_not(ex.buf, buf_len, FILL_BYTE)) < buf_len)
                fz_fail(x, "wrote-on-failure", "la_describe(%s, len %zu) with %s (%s) wrote byte %zu of buf",
                        fz_op_name(m->op), m->desc_len, m->name, sname(st), at);
            free(ex.buf);
        }
    }
    if (ws) {
        fz_set_workspace(h, NULL, 0);
        if (c->device) fz_dev_free(ws);
        else free(ws);
    }
}

/* ---- mistakes of the handle itself ------------------------------------------------------------ */

/* Every handle-taking entry point with handle NULL. */
static void null_handle_everywhere(fz_ctx_t *x, fz_call_t *c) {
    const la_tensors_t t = fz_call_tensors(c, 0);
    size_t bytes = 0, needed = 0;
    char text[64];
    la_policy_t pol;
    fz_policy_init(&pol);
    struct {
        const char *what;
        la_status_t st;
    } r[] = {
        {"la_set_num_threads", fz_set_num_threads(NULL, 1)},
        {"la_set_stream", fz_set_stream(NULL, NULL)},
        {"la_set_workspace", fz_set_workspace(NULL, NULL, 0)},
        {"la_set_check_values", fz_set_check_values(NULL, 1)},
        {"la_check_errors", fz_check_errors(NULL)},
        {"la_set_policy", fz_set_policy(NULL, &pol)},
        {"la_get_policy", fz_get_policy(NULL, &pol)},
        {"la_workspace_size", fz_workspace_size(NULL, c->op, &c->p, &bytes)},
        {"la_workspace_size_for", fz_workspace_size_for(NULL, c->op, &c->p, &t, &bytes)},
        {"la_supports", fz_supports(NULL, c->op, &c->p, &t)},
        {"la_describe", fz_describe(NULL, c->op, &c->p, &t, text, sizeof text)},
        {"la_execute", fz_execute(NULL, c->op, &c->p, &t, NULL, 0, &needed)},
        {"la_destroy", fz_destroy(NULL)},
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        if (r[i].st != LA_STATUS_NULL_POINTER)
            fz_fail(x, "wrong-status", "%s(handle NULL) returned %s, want LA_STATUS_NULL_POINTER", r[i].what,
                    sname(r[i].st));
    if (!fz_last_error(NULL)) fz_fail(x, "message-null", "la_last_error(NULL) returned NULL");
    (void)fz_handle_backend(NULL);
}

/* la_set_num_threads outside [0, LA_MAX_THREADS]: BAD_PARAM, and nothing
 * changes.  The evidence is the workspace figure of a problem with more
 * (sequence, head) items than threads, which scales with the thread count. */
static void bad_thread_counts(fz_ctx_t *x, la_handle_t *h, tu_rng_t *r) {
    const int v[] = {-1, -1000, INT_MIN, LA_MAX_THREADS + 1, LA_MAX_THREADS + 1 + (int)tu_below(r, 1000000), INT_MAX};
    const int n = v[tu_below(r, 6)], before_n = 1 + (int)tu_below(r, LA_MAX_THREADS);
    la_problem_t p;
    fz_problem_init(&p);
    p.batch = p.heads = 1024;
    p.seqlen = 64;
    p.dim_qk = p.dim_v = 16;
    size_t before = 0, after = 0;
    la_status_t st = fz_set_num_threads(h, before_n);
    la_status_t s0 = fz_workspace_size(h, LA_OP_FORWARD, &p, &before);
    st = fz_set_num_threads(h, n);
    if (st != LA_STATUS_BAD_PARAM)
        fz_fail(x, "wrong-status", "la_set_num_threads(%d) returned %s, want LA_STATUS_BAD_PARAM", n, sname(st));
    else fz_check_message(x, h, st, "la_set_num_threads");
    la_status_t s1 = fz_workspace_size(h, LA_OP_FORWARD, &p, &after);
    if (st == LA_STATUS_BAD_PARAM && s0 == LA_STATUS_SUCCESS && s1 == LA_STATUS_SUCCESS && before != after)
        fz_fail(x, "rejected-setting-applied",
                "la_set_num_threads(%d) was refused, yet la_workspace_size moved from %zu to %zu bytes", n, before,
                after);
    fz_set_num_threads(h, 1); /* the calls to come run on few threads */
}

/* A policy with one field out of range (or the wrong struct_size, or NULL)
 * is refused, and the handle keeps the policy it had. */
static void bad_policy(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r) {
    la_policy_t before, bad, back;
    fz_random_policy(&before, r, c->device);
    la_status_t st = fz_set_policy(h, &before);
    if (st != LA_STATUS_SUCCESS) {
        fz_fail(x, "setting-rejected", "la_set_policy(a valid policy) returned %s: %s", sname(st), fz_last_error(h));
        return;
    }
    fz_random_policy(&bad, r, c->device);
    char name[128];
    la_status_t want = LA_STATUS_BAD_PARAM;
    int set_null = 0, get_null = 0;
    switch (tu_below(r, 7)) {
    case 0: {
        const int v[] = {-1, 1, 32, 63, 65, 96, 127, 129, 256, INT_MAX, INT_MIN};
        bad.tile_cap = v[tu_below(r, 11)];
        snprintf(name, sizeof name, "tile_cap %d", bad.tile_cap);
        break;
    }
    case 1:
        bad.smem_kb = tu_below(r, 2) ? -1 - (int)tu_below(r, 1000) : INT_MIN;
        snprintf(name, sizeof name, "smem_kb %d", bad.smem_kb);
        break;
    case 2: {
        const int v[] = {-1, 3, 4, 100, INT_MAX, INT_MIN};
        la_switch_t *sw[8] = {&bad.fwd_wgmma, &bad.fwd_rows,    &bad.fwd_warp_roles, &bad.state_wgmma,
                              &bad.bwd_wgmma, &bad.vec_kernels, &bad.vec_split,      &bad.vec_warp_roles};
        const char *names[8] = {"fwd_wgmma", "fwd_rows",    "fwd_warp_roles", "state_wgmma",
                                "bwd_wgmma", "vec_kernels", "vec_split",      "vec_warp_roles"};
        int k = (int)tu_below(r, 8);
        *sw[k] = (la_switch_t)v[tu_below(r, 6)];
        snprintf(name, sizeof name, "%s %d", names[k], (int)*sw[k]);
        break;
    }
    case 3: {
        const int v[] = {-1, 1, 3, 4, 64, INT_MAX, INT_MIN};
        bad.dld_planes = v[tu_below(r, 7)];
        snprintf(name, sizeof name, "dld_planes %d", bad.dld_planes);
        break;
    }
    case 4: {
        const size_t v[] = {0, 1, sizeof(la_policy_t) - 4, sizeof(la_policy_t) + 8, sizeof(la_problem_t), SIZE_MAX};
        bad.struct_size = v[tu_below(r, 6)];
        snprintf(name, sizeof name, "policy.struct_size %zu", bad.struct_size);
        want = LA_STATUS_BAD_VERSION;
        break;
    }
    case 5:
        set_null = 1;
        snprintf(name, sizeof name, "la_set_policy(policy NULL)");
        want = LA_STATUS_NULL_POINTER;
        break;
    default:
        get_null = 1;
        snprintf(name, sizeof name, "la_get_policy(policy NULL)");
        want = LA_STATUS_NULL_POINTER;
        break;
    }
    const char *what = get_null ? "la_get_policy" : "la_set_policy";
    st = get_null ? fz_get_policy(h, NULL) : fz_set_policy(h, set_null ? NULL : &bad);
    if (st != want)
        fz_fail(x, "wrong-status", "%s with %s returned %s, want %s; message: %s", what, name, sname(st), sname(want),
                fz_last_error(h));
    if (st != LA_STATUS_SUCCESS) fz_check_known(x, st, what);
    fz_check_message(x, h, st, what);
    memset(&back, 0xA5, sizeof back);
    st = fz_get_policy(h, &back);
    if (st != LA_STATUS_SUCCESS)
        fz_fail(x, "wrong-status", "la_get_policy returned %s: %s", sname(st), fz_last_error(h));
    else if (!fz_policy_equal(&before, &back))
        fz_fail(x, "rejected-setting-applied",
                "la_set_policy with %s was refused, yet la_get_policy reads another policy", name);
}

/* la_set_check_values outside 0..2: BAD_PARAM.  la_check_errors: nothing to
 * report (the CPU backend never has a deferred error). */
static void bad_check_mode(fz_ctx_t *x, la_handle_t *h, tu_rng_t *r) {
    const int v[] = {-1, 3, 4, 100, INT_MAX, INT_MIN};
    const int mode = v[tu_below(r, 6)];
    la_status_t st = fz_set_check_values(h, mode);
    if (st != LA_STATUS_BAD_PARAM)
        fz_fail(x, "wrong-status", "la_set_check_values(%d) returned %s, want LA_STATUS_BAD_PARAM", mode, sname(st));
    else fz_check_message(x, h, st, "la_set_check_values");
    st = fz_check_errors(h);
    fz_check_message(x, h, st, "la_check_errors");
    if (fz_handle_backend(h) == LA_BACKEND_CPU && st != LA_STATUS_SUCCESS)
        fz_fail(x, "check-errors", "la_check_errors on the CPU backend returned %s: %s", sname(st), fz_last_error(h));
}

/* ---- the dispatcher ------------------------------------------------------------------------------ */

static const mutator_t mutators[] = {
    m_null_problem,
    m_null_tensors,
    m_null_bytes,
    m_null_required,
    m_problem_version,
    m_tensors_version,
    m_unknown_op,
    m_nonpositive,
    m_head_dim,
    m_decay_kind,
    m_scale,
    m_seqlens,
    m_decode_shape,
    m_huge,
    m_huge,
    m_dtype_unknown,
    m_dtype_half,
    m_bad_decay,
    m_bad_decay,
    m_overlap_input,
    m_overlap_outputs,
    m_interleaved,
    m_inplace_mismatch,
    m_self_overlap,
    m_negative_stride,
    m_absurd_stride,
    m_absurd_stride,
    m_unused_decay_tensor,
    m_short_workspace,
    m_short_workspace,
    m_cu_device,
    m_max_seqlen,
    m_describe_buf,
};
#define NMUT ((int)(sizeof mutators / sizeof mutators[0]))

int fz_exercise_mutation(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r) {
    uint64_t u = tu_below(r, (uint64_t)NMUT + 4);
    switch (u - (uint64_t)NMUT) {
    case 0: null_handle_everywhere(x, c); return 1;
    case 1: bad_thread_counts(x, h, r); return 1;
    case 2: bad_policy(x, h, c, r); return 1;
    case 3: bad_check_mode(x, h, r); return 1;
    default: break;
    }
    /* la_execute gets caller memory of exactly the valid call's figure (one
     * mistake at a time); the figure of the call as it is, before a
     * mutation changes an input in place. */
    mut_t base;
    memset(&base, 0, sizeof base);
    base.p = c->p;
    if (base.p.cu_seqlens_on_device) { /* the mutations build on the host copy of the offsets */
        base.p.cu_seqlens = c->cu;
        base.p.cu_seqlens_on_device = 0;
    }
    base.t = fz_call_tensors(c, 0);
    base.op = c->op;
    base.entries = ENT_CALL;
    base.undo_buf = -1;
    base.exec_need_known = fz_workspace_size_for(h, c->op, &base.p, &base.t, &base.exec_need) == LA_STATUS_SUCCESS;
    static const size_t desc_lens[] = {1, 2, 5, 16, 64, 300};
    for (int attempt = 0; attempt < 12; attempt++) {
        mut_t m = base;
        m.desc_len = desc_lens[tu_below(r, 6)];
        mutator_t f = attempt == 0 ? mutators[u] : mutators[tu_below(r, (uint64_t)NMUT)];
        if (f(x, h, c, r, &m)) {
            if ((m.entries & ENT_OP) && m.want_op == LA_STATUS_SUCCESS) m.want_op = m.want;
            if (m.want_exec == LA_STATUS_SUCCESS) m.want_exec = m.want_op != LA_STATUS_SUCCESS ? m.want_op : m.want;
            if (x->o->verbose) printf("    mutation: %s\n", m.name);
            run_mutation(x, h, c, &m);
            if (m.undo_buf >= 0) memcpy(c->buf[m.undo_buf].host + m.undo_at, m.undo, 4);
            free(m.cu);
            return 1;
        }
        free(m.cu);
    }
    return 0;
}
