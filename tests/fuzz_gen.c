/*
 * fuzz_gen.c - a random valid call and the exact-size buffers behind it.
 *
 * Sizes stay tiny (B, H 1-3; N 0-70, a few to 200; D, E mostly 1-40, now
 * and then up to 256 with the rest shrunk) so that hundreds of thousands of
 * calls run under the sanitizers in a minute or two.  Every tensor gets its own malloc of exactly
 * the bytes its view spans (lowest to highest logical element), so any read
 * or write outside the view is AddressSanitizer's to see; gaps inside the
 * span (padded layouts, channel stride 2) hold a known byte and the checks
 * require them unchanged.
 */
#include "fuzz.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GAP_BYTE 0x5A
/* Fields an operation ignores point here: dereferencing it faults. */
#define GARBAGE_PTR ((void *)(uintptr_t)0x40)
#define GARBAGE_DTYPE ((la_dtype_t)77)

/* ---- elements ---------------------------------------------------------------------- */

size_t fz_esize(la_dtype_t dt) {
    if (dt == LA_DTYPE_F32) return 4;
    if (dt == LA_DTYPE_F16 || dt == LA_DTYPE_BF16) return 2;
    return 0;
}

/* Quiet NaNs with a payload no arithmetic produces. */
static const uint32_t POISON_F32 = 0x7fc0deadu;
static const uint16_t POISON_F16 = 0x7e5bu, POISON_BF16 = 0x7fdbu;

static void put_poison(la_dtype_t dt, unsigned char *p) {
    if (dt == LA_DTYPE_F32) memcpy(p, &POISON_F32, 4);
    else memcpy(p, dt == LA_DTYPE_F16 ? &POISON_F16 : &POISON_BF16, 2);
}

int fz_is_poison(la_dtype_t dt, const unsigned char *p) {
    if (dt == LA_DTYPE_F32) return memcmp(p, &POISON_F32, 4) == 0;
    return memcmp(p, dt == LA_DTYPE_F16 ? &POISON_F16 : &POISON_BF16, 2) == 0;
}

double fz_load(la_dtype_t dt, const unsigned char *p) {
    if (dt == LA_DTYPE_F32) {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    uint16_t u;
    memcpy(&u, p, 2);
    return dt == LA_DTYPE_F16 ? tu_f16_to_f32(u) : tu_bf16_to_f32(u);
}

void fz_store(la_dtype_t dt, unsigned char *p, double x) {
    if (dt == LA_DTYPE_F32) {
        float f = (float)x;
        memcpy(p, &f, 4);
        return;
    }
    uint16_t u = dt == LA_DTYPE_F16 ? tu_f32_to_f16((float)x) : tu_f32_to_bf16((float)x);
    memcpy(p, &u, 2);
}

int fz_span(const int64_t dim[4], const int64_t st[4], int64_t *lo, int64_t *hi) {
    *lo = *hi = 0;
    for (int d = 0; d < 4; d++)
        if (dim[d] == 0) return 0;
    for (int d = 0; d < 4; d++) {
        if (dim[d] <= 1) continue; /* its stride never multiplies a nonzero index */
        int64_t reach = (dim[d] - 1) * st[d];
        if (reach < 0) *lo += reach;
        else *hi += reach;
    }
    return 1;
}

int64_t fz_numel(const fz_tensor_t *t) { return t->dim[0] * t->dim[1] * t->dim[2] * t->dim[3]; }

size_t fz_elem_at(const fz_tensor_t *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    const int64_t idx[4] = {i0, i1, i2, i3};
    int64_t off = 0;
    for (int d = 0; d < 4; d++)
        if (t->dim[d] > 1) off += idx[d] * t->stride[d];
    return (size_t)((int64_t)t->byte_off + off * (int64_t)fz_esize(t->dtype));
}

#define FOR_ELEMENTS(t, a, b, c_, d)                     \
    for (int64_t a = 0; a < (t)->dim[0]; a++)            \
        for (int64_t b = 0; b < (t)->dim[1]; b++)        \
            for (int64_t c_ = 0; c_ < (t)->dim[2]; c_++) \
                for (int64_t d = 0; d < (t)->dim[3]; d++)

void fz_copy_elements(fz_call_t *c, const fz_tensor_t *from, const fz_tensor_t *to) {
    unsigned char *src = c->buf[from->buf].host, *dst = c->buf[to->buf].host;
    FOR_ELEMENTS(from, a, b, cc, d) {
        double x = fz_load(from->dtype, src + fz_elem_at(from, a, b, cc, d));
        fz_store(to->dtype, dst + fz_elem_at(to, a, b, cc, d), x);
    }
}

void fz_poison_elements(fz_call_t *c, const fz_tensor_t *t) {
    unsigned char *base = c->buf[t->buf].host;
    FOR_ELEMENTS(t, a, b, cc, d) { put_poison(t->dtype, base + fz_elem_at(t, a, b, cc, d)); }
}

/* ---- buffers ------------------------------------------------------------------------ */

static void *xmalloc_exact(size_t bytes) {
    void *p = malloc(bytes);
    if (!p && bytes == 0) p = malloc(1); /* malloc(0) may return NULL; NULL means "absent" */
    if (!p) {
        fprintf(stderr, "test_fuzz: out of memory (%zu bytes)\n", bytes);
        exit(2);
    }
    return p;
}

void *fz_dev_alloc(size_t bytes) {
    const tu_mem_ops_t *m = tu_get_mem_ops();
    return m ? m->alloc(bytes) : NULL;
}

void fz_dev_free(void *p) {
    const tu_mem_ops_t *m = tu_get_mem_ops();
    if (m && p) m->free(p);
}

int fz_add_buf(fz_call_t *c, size_t bytes) {
    if (c->nbuf == FZ_MAX_BUFS) {
        fprintf(stderr, "test_fuzz: more than %d buffers in one call\n", FZ_MAX_BUFS);
        exit(2);
    }
    fz_buf_t *b = &c->buf[c->nbuf];
    b->bytes = bytes;
    b->host = xmalloc_exact(bytes);
    b->snap = xmalloc_exact(bytes);
    memset(b->host, GAP_BYTE, bytes);
    b->dev = c->device ? fz_dev_alloc(bytes) : NULL;
    return c->nbuf++;
}

void fz_place(fz_call_t *c, fz_tensor_t *t) {
    int64_t lo, hi;
    size_t es = fz_esize(t->dtype), bytes = 0;
    t->byte_off = 0;
    if (fz_span(t->dim, t->stride, &lo, &hi)) {
        bytes = (size_t)(hi - lo + 1) * es;
        t->byte_off = (size_t)(-lo) * es;
    }
    t->src = FZ_IN_BUF;
    t->buf = fz_add_buf(c, bytes);
}

void fz_call_free(fz_call_t *c) {
    for (int i = 0; i < c->nbuf; i++) {
        free(c->buf[i].host);
        free(c->buf[i].snap);
        fz_dev_free(c->buf[i].dev);
    }
    c->nbuf = 0;
    free(c->cu);
    c->cu = NULL;
    fz_dev_free(c->cu_dev);
    c->cu_dev = NULL;
}

void *fz_tensor_ptr(const fz_call_t *c, const fz_tensor_t *t) {
    if (t->src == FZ_GARBAGE) return GARBAGE_PTR;
    if (t->src == FZ_ABSENT) return NULL;
    const fz_buf_t *b = &c->buf[t->buf];
    unsigned char *base = c->device ? (unsigned char *)b->dev : b->host;
    return base + t->byte_off;
}

la_tensors_t fz_call_tensors(const fz_call_t *c, int natural) {
    la_tensors_t ts;
    fz_tensors_init(&ts);
    for (int id = 0; id < FZ_NT; id++) {
        const fz_tensor_t *t = &c->t[id];
        la_tensor_t *f = fz_field(&ts, id);
        if (t->src == FZ_ABSENT) continue;
        f->data = fz_tensor_ptr(c, t);
        if (t->src == FZ_GARBAGE) {
            f->dtype = GARBAGE_DTYPE;
            for (int d = 0; d < 4; d++) f->stride[d] = INT64_MIN + d;
            continue;
        }
        f->dtype = t->dtype;
        memcpy(f->stride, natural ? t->nat : t->stride, sizeof f->stride);
    }
    return ts;
}

void fz_upload(fz_call_t *c) {
    const tu_mem_ops_t *m = tu_get_mem_ops();
    if (!c->device || !m) return;
    for (int i = 0; i < c->nbuf; i++)
        if (c->buf[i].bytes) m->to_device(c->buf[i].dev, c->buf[i].host, c->buf[i].bytes);
}

void fz_download(fz_call_t *c) {
    const tu_mem_ops_t *m = tu_get_mem_ops();
    if (!c->device || !m) return;
    for (int i = 0; i < c->nbuf; i++)
        if (c->buf[i].bytes) m->to_host(c->buf[i].host, c->buf[i].dev, c->buf[i].bytes);
}

void fz_snapshot(fz_call_t *c) {
    for (int i = 0; i < c->nbuf; i++) memcpy(c->buf[i].snap, c->buf[i].host, c->buf[i].bytes);
}

int fz_first_changed(const fz_call_t *c) {
    for (int i = 0; i < c->nbuf; i++)
        if (memcmp(c->buf[i].snap, c->buf[i].host, c->buf[i].bytes) != 0) return i;
    return -1;
}

/* ---- sizes ---------------------------------------------------------------------------- */

/* Head dims: the small ones around tile edges (8, 16, 32) most often. */
static int64_t pick_dim(tu_rng_t *r, int big) {
    static const int64_t small[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 40};
    static const int64_t large[] = {41, 63, 64, 65, 100, 127, 128, 129, 200, 255, 256};
    if (big) return tu_below(r, 3) ? large[tu_below(r, 11)] : 41 + (int64_t)tu_below(r, 216);
    if (tu_below(r, 3)) return 1 + (int64_t)tu_below(r, 16);
    return small[tu_below(r, 16)];
}

/* Sequence lengths: empty, one token, around the 64-token chunk, anything to
 * 70, now and then a few chunks. */
static int64_t pick_len(tu_rng_t *r) {
    uint64_t u = tu_below(r, 100);
    if (u < 8) return 0;
    if (u < 22) return 1;
    if (u < 28) return 63 + (int64_t)tu_below(r, 3);
    if (u < 70) return 2 + (int64_t)tu_below(r, 24);
    if (u < 97) return 2 + (int64_t)tu_below(r, 69);
    return 71 + (int64_t)tu_below(r, 130); /* a few chunks */
}

static la_op_t pick_op(tu_rng_t *r) {
    uint64_t u = tu_below(r, 100);
    if (u < 28) return LA_OP_FORWARD;
    if (u < 52) return LA_OP_BACKWARD;
    if (u < 68) return LA_OP_DECODE;
    if (u < 84) return LA_OP_STATE_FORWARD;
    return LA_OP_STATE_BACKWARD;
}

static float pick_scale(tu_rng_t *r, int64_t D) {
    uint64_t u = tu_below(r, 20);
    if (u < 10) return 1.0f;
    if (u < 16) return (float)(4 * tu_uniform(r) - 2);
    if (u < 19) return (float)(1.0 / sqrt((double)D));
    return 0.0f; /* finite, so valid: o = 0, dq = 0 */
}

/* Work of one call, about B*H*N*D*E (twice for VECTOR_KV). */
static int64_t call_cost(const la_problem_t *p) {
    return p->batch * p->heads * (p->seqlen ? p->seqlen : 1) * p->dim_qk * p->dim_v *
           (p->decay == LA_DECAY_VECTOR_KV ? 2 : 1);
}
#define COST_CAP 150000

static void gen_packed(fz_call_t *c, tu_rng_t *r, int64_t max_len) {
    int ns = 1 + (int)tu_below(r, 5);
    /* Exactly num_seqs + 1 offsets: reading past them is AddressSanitizer's to see. */
    c->cu = xmalloc_exact((size_t)(ns + 1) * sizeof *c->cu);
    c->cu[0] = 0;
    for (int i = 0; i < ns; i++) {
        int64_t len = tu_below(r, 3) == 0 ? 0 : pick_len(r);
        if (len > max_len) len = max_len;
        c->cu[i + 1] = c->cu[i] + len;
    }
    c->p.batch = 1;
    c->p.seqlen = c->cu[ns];
    c->p.cu_seqlens = c->cu;
    c->p.num_seqs = ns;
}

static void gen_problem(fz_call_t *c, tu_rng_t *r) {
    la_problem_t *p = &c->p;
    fz_problem_init(p);
    c->op = pick_op(r);
    p->decay = (la_decay_t)tu_below(r, 5);
    int big = tu_below(r, 25) == 0;
    p->dim_qk = pick_dim(r, big && tu_below(r, 4));
    p->dim_v = pick_dim(r, big && tu_below(r, 4));
    p->batch = 1 + (int64_t)tu_below(r, 3);
    p->heads = 1 + (int64_t)tu_below(r, 3);
    int64_t max_len = big ? 24 : 200;
    if (c->op == LA_OP_DECODE) p->seqlen = tu_below(r, 3) ? 1 : 2 + (int64_t)tu_below(r, 4); /* T new tokens */
    else if (tu_below(r, 4) == 0) gen_packed(c, r, max_len);
    else {
        int64_t n = pick_len(r);
        p->seqlen = n > max_len ? max_len : n;
    }
    p->scale = pick_scale(r, p->dim_qk);
    /* Shrink the expensive draws: heads, batch, then (unpacked) tokens. */
    while (call_cost(p) > COST_CAP) {
        if (p->heads > 1) p->heads--;
        else if (p->batch > 1) p->batch--;
        else if (!p->cu_seqlens && p->seqlen > 1) p->seqlen /= 2;
        else break;
    }
    c->S = p->cu_seqlens ? p->num_seqs : p->batch;
    /* A true max_seqlen hint now and then: the longest sequence, or N (a
     * bound); 0 (unknown) otherwise.  Results must not depend on it. */
    int64_t longest = p->seqlen;
    if (p->cu_seqlens) {
        longest = 0;
        for (int64_t s = 0; s < p->num_seqs; s++)
            if (c->cu[s + 1] - c->cu[s] > longest) longest = c->cu[s + 1] - c->cu[s];
    }
    uint64_t hint = tu_below(r, 4);
    p->max_seqlen = hint == 0 ? longest : hint == 1 ? p->seqlen : 0;
}

/* ---- layouts ------------------------------------------------------------------------ */

static void shuffle4(tu_rng_t *r, int perm[4]) {
    for (int i = 3; i > 0; i--) {
        int j = (int)tu_below(r, (uint64_t)i + 1), tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
}

/* Strides of a layout whose physical order is perm (outermost first), with
 * the given gaps after each level and innermost step. */
static void strides_for(const int64_t dim[4], const int perm[4], const int64_t pad[4], int64_t inner, int64_t st[4]) {
    int64_t acc = inner;
    for (int k = 3; k >= 0; k--) {
        int d = perm[k];
        st[d] = acc;
        acc = acc * (dim[d] > 1 ? dim[d] : 1) + pad[k];
    }
}

static int64_t garbage_stride(tu_rng_t *r) {
    static const int64_t g[] = {INT64_MIN, INT64_MAX, -1, -123456789, (int64_t)1 << 62, 0, 7, -((int64_t)1 << 40)};
    if (tu_below(r, 5) == 0) return (int64_t)tu_rng_next(r);
    return g[tu_below(r, 8)];
}

/* A random layout for t (dims and dtype set): contiguous, the library's
 * contiguous, permuted ([B,N,H,D] most often), padded, channel stride 2,
 * broadcast (stride 0: inputs only).  Then, now and then, garbage strides on
 * every dim whose stride the header says is ignored. */
static void gen_layout(fz_call_t *c, fz_tensor_t *t, tu_rng_t *r, int input, int token) {
    int perm[4] = {0, 1, 2, 3};
    int64_t pad[4] = {0, 0, 0, 0}, inner = 1;
    /* An empty tensor from la_tensor_contiguous (zero outer strides on dims
     * of extent > 1) half the time: the header ignores every stride of it. */
    uint64_t pick = fz_numel(t) == 0 && tu_below(r, 2) ? 2 : tu_below(r, 8);
    switch (pick) {
    case 0:
    case 1: break;
    case 2: /* through la_tensor_contiguous */
        if (fz_numel(t) == 0 || tu_below(r, 2)) {
            la_tensor_t lt;
            fz_tensor_contiguous(&lt, NULL, t->dtype, t->dim[0], t->dim[1], t->dim[2], t->dim[3]);
            memcpy(t->stride, lt.stride, sizeof t->stride);
            goto done;
        }
        break;
    case 3:
        if (token && tu_below(r, 2)) {
            perm[1] = 2;
            perm[2] = 1;
        } else shuffle4(r, perm);
        break;
    case 4:
        if (tu_below(r, 2)) shuffle4(r, perm);
        for (int k = 0; k < 4; k++) pad[k] = (int64_t)tu_below(r, 4);
        break;
    case 5: inner = 2; break;
    case 6:
        if (input) { /* broadcast one dim of extent > 1 */
            strides_for(t->dim, perm, pad, inner, t->stride);
            int d = (int)tu_below(r, 4);
            if (t->dim[d] > 1) t->stride[d] = 0;
            goto done;
        }
        break;
    default:
        if (token) {
            perm[1] = 2;
            perm[2] = 1;
        }
        break;
    }
    strides_for(t->dim, perm, pad, inner, t->stride);
done:
    memcpy(t->nat, t->stride, sizeof t->nat);
    if (tu_below(r, 6) == 0) {
        int empty = fz_numel(t) == 0;
        for (int d = 0; d < 4; d++)
            if ((empty || t->dim[d] <= 1) && tu_below(r, 3)) {
                t->stride[d] = garbage_stride(r);
                c->odd_strides |= t->stride[d] != t->nat[d];
            }
    }
}

/* ---- values -------------------------------------------------------------------------- */

/* Never exactly zero (a zero input hides dropped terms). */
static double nonzero_normal(tu_rng_t *r, la_dtype_t dt, double sigma) {
    for (;;) {
        double x = tu_round(dt, sigma * tu_normal(r));
        if (x != 0.0) return x;
    }
}

enum { LD_GATE, LD_SHARP, LD_SLOW, LD_ZERO, LD_EXTREME, LD_MODES };

/* A log decay in [-1e6, 0]: logsigmoid of normals, exactly 0, the -1e6 floor. */
static double draw_log_decay(tu_rng_t *r, int mode) {
    switch (mode) {
    case LD_GATE: return tu_logsigmoid(tu_normal(r) + 2);
    case LD_SHARP: return tu_logsigmoid(3 * tu_normal(r));
    case LD_SLOW: return tu_logsigmoid(tu_normal(r)) / 16;
    case LD_ZERO: return 0.0;
    default: {
        static const double ext[] = {0.0, -0.0, -1e-6, -20.0, -1e6, -104.0, -1e-40 /* subnormal */};
        uint64_t u = tu_below(r, 10);
        if (u < 7) return ext[u];
        if (u == 7) return -1e6 * tu_uniform(r);
        if (u == 8) return -1e3 * tu_uniform(r);
        return tu_logsigmoid(tu_normal(r));
    }
    }
}

static void fill_tensor(fz_call_t *c, const fz_tensor_t *t, int id, tu_rng_t *r, double sigma) {
    unsigned char *base = c->buf[t->buf].host;
    int mode = (int)tu_below(r, LD_MODES);
    FOR_ELEMENTS(t, a, b, cc, d) {
        double x = fz_is_decay(id) ? draw_log_decay(r, mode) : nonzero_normal(r, t->dtype, sigma);
        fz_store(t->dtype, base + fz_elem_at(t, a, b, cc, d), x);
    }
}

/* ---- the call ---------------------------------------------------------------------------- */

static int is_token(int id) { return !fz_is_state(id) && !fz_is_decay(id); }

/* A second view of an input already placed (inputs may alias freely). */
static int try_alias(fz_call_t *c, int id, tu_rng_t *r) {
    int other = id == FZ_K ? FZ_Q : id == FZ_V ? FZ_K : id == FZ_DO ? FZ_V : -1;
    if (other < 0 || c->t[other].src != FZ_IN_BUF || tu_below(r, 20)) return 0;
    const fz_tensor_t *o = &c->t[other];
    if (memcmp(o->dim, c->t[id].dim, sizeof o->dim) != 0 || o->dtype != c->t[id].dtype) return 0;
    c->t[id] = *o;
    return 1;
}

/* Fields the operation ignores may be anything, even views of its outputs:
 * they must neither be read nor count as overlapping. */
static void alias_ignored_fields(fz_call_t *c, tu_rng_t *r) {
    int outs[FZ_NT], n = 0;
    for (int id = 0; id < FZ_NT; id++)
        if (c->t[id].src == FZ_IN_BUF && fz_is_output(fz_role(c->op, c->p.decay, id))) outs[n++] = id;
    for (int id = 0; id < FZ_NT && n; id++)
        if (c->t[id].src == FZ_GARBAGE && tu_below(r, 2)) {
            c->t[id] = c->t[outs[tu_below(r, (uint64_t)n)]];
            memcpy(c->t[id].stride, c->t[id].nat, sizeof c->t[id].stride);
        }
}

/* Decode in place: final_state in initial_state's memory, with strides that
 * equal initial_state's except (maybe) on dims of extent 1. */
static int make_inplace(fz_call_t *c, tu_rng_t *r) {
    const fz_tensor_t *s0 = &c->t[FZ_S0];
    for (int d = 0; d < 4; d++)
        if (s0->dim[d] > 1 && s0->nat[d] == 0) return 0; /* a broadcast input is no output */
    fz_tensor_t *sn = &c->t[FZ_SN];
    *sn = c->t[FZ_S0];
    memcpy(sn->stride, sn->nat, sizeof sn->stride);
    for (int d = 0; d < 4; d++)
        if (sn->dim[d] <= 1 && tu_below(r, 2)) {
            sn->stride[d] = garbage_stride(r);
            c->odd_strides |= sn->stride[d] != sn->nat[d];
        }
    c->inplace = 1;
    return 1;
}

/* The tensors of the call's operation and problem: required ones always,
 * optional ones half the time, ignored fields now and then garbage. */
static void gen_tensors(fz_call_t *c, tu_rng_t *r) {
    const la_dtype_t dt = (la_dtype_t)tu_below(r, 3);
    const int mixed = tu_below(r, 10) == 0;
    const int garbage_fields = tu_below(r, 5) == 0;
    const double sigma = (double[]){0.25, 0.5, 1.0, 2.0}[tu_below(r, 4)];
    for (int id = 0; id < FZ_NT; id++) {
        fz_tensor_t *t = &c->t[id];
        fz_role_t role = fz_role(c->op, c->p.decay, id);
        if (role == FZ_UNUSED) {
            if (garbage_fields && !fz_op_uses(c->op, id) && tu_below(r, 2)) t->src = FZ_GARBAGE;
            continue;
        }
        if ((role == FZ_IN_OPT || role == FZ_OUT_OPT) && tu_below(r, 2)) continue;
        t->dtype = !is_token(id) ? LA_DTYPE_F32 : mixed ? (la_dtype_t)tu_below(r, 3) : dt;
        fz_logical_dims(&c->p, c->S, id, t->dim);
        if (id == FZ_SN && c->op == LA_OP_DECODE && tu_below(r, 3) == 0 && make_inplace(c, r)) continue;
        if (!fz_is_output(role) && try_alias(c, id, r)) continue;
        gen_layout(c, t, r, !fz_is_output(role), is_token(id));
        fz_place(c, t);
        if (!fz_is_output(role)) fill_tensor(c, t, id, r, fz_is_state(id) ? 0.5 : sigma);
    }
    if (garbage_fields) alias_ignored_fields(c, r);
}

/* Packed calls on a device: half of them with the offsets in device memory
 * (cu_seqlens_on_device = 1); c->cu keeps the host copy. */
static void offsets_to_device(fz_call_t *c) {
    const tu_mem_ops_t *m = tu_get_mem_ops();
    const size_t bytes = (size_t)(c->p.num_seqs + 1) * sizeof *c->cu;
    if (!m || !(c->cu_dev = fz_dev_alloc(bytes))) return;
    m->to_device(c->cu_dev, c->cu, bytes);
    c->p.cu_seqlens = (const int64_t *)c->cu_dev;
    c->p.cu_seqlens_on_device = 1;
}

void fz_gen_valid(fz_call_t *c, tu_rng_t *r, int device) {
    memset(c, 0, sizeof *c);
    c->device = device;
    gen_problem(c, r);
    /* drawn for every packed call, so that both backends draw alike */
    const int dev_offsets = c->cu && tu_below(r, 2);
    if (device && dev_offsets) offsets_to_device(c);
    gen_tensors(c, r);
}

void fz_gen_long(fz_call_t *c, tu_rng_t *r) {
    memset(c, 0, sizeof *c);
    fz_problem_init(&c->p);
    c->op = tu_below(r, 2) ? LA_OP_FORWARD : LA_OP_BACKWARD;
    c->p.decay = (la_decay_t)tu_below(r, 5);
    c->p.batch = c->p.heads = 2;
    c->p.seqlen = 200 + (int64_t)tu_below(r, 100);
    c->p.dim_qk = 32 + (int64_t)tu_below(r, 33);
    c->p.dim_v = 32 + (int64_t)tu_below(r, 33);
    c->S = c->p.batch;
    gen_tensors(c, r);
}
