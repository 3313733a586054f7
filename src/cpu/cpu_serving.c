/*
 * cpu_serving.c - decode, state pools and checkpoints on the CPU.
 *
 * The chunked kernels (cpu_scalar.c, cpu_vector.c) take dense f32 states.
 * A served call reaches them through a per-thread scratch state: the
 * sequence's slot is loaded into it (f32 or bf16, any strides), the kernel
 * runs from it, and the result is stored to the write slot.  Checkpoints cut
 * the sequence at every interval (a multiple of every kernel's chunk), run
 * the kernel piece by piece with the state carried in fp32, and store the
 * state between pieces; the pieces' results are those of split forwards.
 *
 * Decode steps the recurrence token by token (T tokens, no chunks): each
 * state element is read, decayed, updated and written in one pass, so the
 * dense in-place state needs no scratch.
 */
#include "cpu_serving.h"
#include "tile_io.h"

#include <math.h>
#include <string.h>

size_t cpu_serving_scratch(const la_plan_t *pl) {
    if (!pl->has_pool && !pl->has_checkpoints) return 0;
    return 2 * (size_t)pl->p.dim_qk * (size_t)pl->p.dim_v * sizeof(float);
}

/* Row `row`, head h of a [rows, H, D, E] f32 or bf16 tensor <-> dense fp32
 * [D][E]. */
static void load_row(const la_tensor_t *t, int64_t row, int64_t h, int D, int E, float *dst) {
    const int64_t base = row * t->stride[0] + h * t->stride[1];
    for (int d = 0; d < D; d++)
        for (int e = 0; e < E; e++) {
            const int64_t i = base + d * t->stride[2] + e * t->stride[3];
            dst[d * E + e] = t->dtype == LA_DTYPE_BF16 ? la_bf16_to_float(((const uint16_t *)t->data)[i])
                                                       : ((const float *)t->data)[i];
        }
}

static void store_row(const la_tensor_t *t, int64_t row, int64_t h, int D, int E, const float *src) {
    const int64_t base = row * t->stride[0] + h * t->stride[1];
    for (int d = 0; d < D; d++)
        for (int e = 0; e < E; e++) {
            const int64_t i = base + d * t->stride[2] + e * t->stride[3];
            if (t->dtype == LA_DTYPE_BF16) ((uint16_t *)t->data)[i] = la_float_to_bf16(src[d * E + e]);
            else ((float *)t->data)[i] = src[d * E + e];
        }
}

static cpu_state_view_t dense_view(float *s, int E) { return (cpu_state_view_t){s, E, 1}; }

/* Slot `row`, head h of an f32 pool, as a state view. */
static cpu_state_view_t slot_view(const la_tensor_t *t, int64_t row, int64_t h) {
    return (cpu_state_view_t){(float *)t->data + row * t->stride[0] + h * t->stride[1], t->stride[2], t->stride[3]};
}

static void zero_tokens(const cpu_view_t *v, int64_t len, int cols) {
    if (!v->ptr) return;
    float z[LA_MAX_HEAD_DIM] = {0};
    for (int64_t t = 0; t < len; t++) cpu_store_tile(v, t, 1, cols, z, cols);
}

/* The token views of q advanced by t0 tokens and cut to n. */
static void advance(cpu_view_t *v, int64_t t0) {
    if (v->ptr) v->ptr += t0 * v->st * (int64_t)la_dtype_size(v->dtype);
}
static cpu_seq_t piece(const cpu_seq_t *q, int64_t t0, int64_t n) {
    cpu_seq_t p = *q;
    p.len = n;
    cpu_view_t *views[6] = {&p.q, &p.k, &p.v, &p.o, &p.ld, &p.ldv};
    for (int i = 0; i < 6; i++) advance(views[i], t0);
    return p;
}

/* Row of sequence s's first checkpoint: the rows of the sequences before it. */
static int64_t first_checkpoint(const la_plan_t *pl, int64_t s) {
    const int64_t c = pl->p.checkpoint_interval;
    if (!pl->packed) return s * (pl->p.seqlen / c);
    int64_t row = 0;
    for (int64_t j = 0; j < s; j++) row += la_plan_seq_len(pl, j) / c;
    return row;
}

void cpu_forward_served(const la_plan_t *pl, int64_t s, int64_t h, cpu_seq_t *q, float *scratch, void *ws,
                        void (*kernel)(const cpu_seq_t *, void *)) {
    const int D = q->D, E = q->E;
    const int64_t c = pl->p.checkpoint_interval;
    float *cur = scratch, *next = scratch + (size_t)D * E;
    int64_t to = -1; /* pool slot of the final state */
    const la_slots_t slots = la_plan_slots(pl);
    if (pl->has_pool) {
        if (la_slot_padding(&slots, s)) {
            zero_tokens(&q->o, q->len, E);
            if (pl->has_checkpoints) {
                const float *z = memset(cur, 0, (size_t)D * E * sizeof(float));
                for (int64_t m = 0, row = first_checkpoint(pl, s); m < q->len / c; m++)
                    store_row(&pl->t.checkpoints, row + m, h, D, E, z);
            }
            return;
        }
        const int64_t from = la_slot_from(&slots, s);
        if (from >= 0) {
            load_row(&pl->t.pool.states, from, h, D, E, cur);
            q->s0 = dense_view(cur, E);
        } else {
            q->s0 = (cpu_state_view_t){0};
        }
        to = la_slot_final(&slots, s);
        q->sN = (cpu_state_view_t){0};
    }
    const cpu_state_view_t final_view = q->sN; /* dense final state, when given */
    int64_t done = 0;
    if (pl->has_checkpoints) {
        const int64_t row = first_checkpoint(pl, s);
        for (int64_t m = 0; m < q->len / c; m++, done += c) {
            cpu_seq_t p = piece(q, done, c);
            p.sN = dense_view(next, E);
            kernel(&p, ws);
            store_row(&pl->t.checkpoints, row + m, h, D, E, next);
            float *t = cur;
            cur = next;
            next = t;
            q->s0 = dense_view(cur, E);
        }
    }
    const int want_final = to >= 0 || final_view.ptr;
    if (done == q->len && done > 0) { /* the last checkpoint is the final state */
        if (to >= 0) store_row(&pl->t.pool.states, to, h, D, E, cur);
        if (final_view.ptr) cpu_store_state(&final_view, D, E, cur, E);
        return;
    }
    cpu_seq_t p = piece(q, done, q->len - done);
    p.sN = want_final ? dense_view(next, E) : (cpu_state_view_t){0};
    kernel(&p, ws);
    if (to >= 0) store_row(&pl->t.pool.states, to, h, D, E, next);
    if (final_view.ptr) cpu_store_state(&final_view, D, E, next, E);
}

/* Decay factors of token t: a over D, b over E. */
static void token_decays(const cpu_seq_t *s, int64_t t, float *a, float *b) {
    const int D = s->D, E = s->E;
    for (int d = 0; d < D; d++) a[d] = 1.0f;
    for (int e = 0; e < E; e++) b[e] = 1.0f;
    switch (s->kind) {
    case LA_DECAY_SCALAR_HEAD:
        for (int d = 0; d < D; d++) a[d] = expf(s->ld_head);
        break;
    case LA_DECAY_SCALAR_TOKEN: {
        float g;
        cpu_load_col(&s->ld, t, 1, &g);
        for (int d = 0; d < D; d++) a[d] = expf(g);
        break;
    }
    case LA_DECAY_VECTOR_K:
    case LA_DECAY_VECTOR_KV:
        cpu_load_tile(&s->ld, t, 1, D, a, D);
        for (int d = 0; d < D; d++) a[d] = expf(a[d]);
        if (s->kind == LA_DECAY_VECTOR_KV) {
            cpu_load_tile(&s->ldv, t, 1, E, b, E);
            for (int e = 0; e < E; e++) b[e] = expf(b[e]);
        }
        break;
    default: break;
    }
}

/* Token t: dst = diag(a) src diag(b) + k^T v, o = scale q dst.  Element by
 * element read-then-write, so src and dst may be the same memory; an absent
 * src is zeros. */
static void decode_token(const cpu_seq_t *s, int64_t t, const cpu_state_view_t *src, const cpu_state_view_t *dst) {
    float q[LA_MAX_HEAD_DIM], k[LA_MAX_HEAD_DIM], v[LA_MAX_HEAD_DIM], o[LA_MAX_HEAD_DIM];
    float a[LA_MAX_HEAD_DIM], b[LA_MAX_HEAD_DIM];
    const int D = s->D, E = s->E;
    cpu_load_tile(&s->q, t, 1, D, q, D);
    cpu_load_tile(&s->k, t, 1, D, k, D);
    cpu_load_tile(&s->v, t, 1, E, v, E);
    token_decays(s, t, a, b);
    for (int e = 0; e < E; e++) o[e] = 0.0f;
    for (int d = 0; d < D; d++) {
        const float *in = src->ptr ? src->ptr + d * src->sd : NULL;
        float *out = dst->ptr + d * dst->sd;
        const float qd = q[d] * s->scale;
        for (int e = 0; e < E; e++) {
            const float x = (in ? a[d] * in[e * src->se] * b[e] : 0.0f) + k[d] * v[e];
            out[e * dst->se] = x;
            o[e] += qd * x;
        }
    }
    cpu_store_tile(&s->o, t, 1, E, o, E);
}

void cpu_decode(const la_plan_t *pl, int64_t s, int64_t h, const cpu_seq_t *q, float *scratch) {
    const int D = q->D, E = q->E;
    if (!pl->has_pool) { /* dense: s0 -> sN for the first token, then sN in place */
        for (int64_t t = 0; t < q->len; t++) decode_token(q, t, t == 0 ? &q->s0 : &q->sN, &q->sN);
        return;
    }
    const la_slots_t slots = la_plan_slots(pl);
    if (la_slot_padding(&slots, s)) {
        zero_tokens(&q->o, q->len, E);
        return;
    }
    const int64_t from = la_slot_from(&slots, s), to = la_slot_final(&slots, s);
    const la_tensor_t *pool = &pl->t.pool.states;
    if (pool->dtype == LA_DTYPE_F32 && to >= 0) { /* f32 slots in place, as dense states: no copies */
        const cpu_state_view_t src = from >= 0 ? slot_view(pool, from, h) : (cpu_state_view_t){0};
        const cpu_state_view_t dst = slot_view(pool, to, h);
        for (int64_t t = 0; t < q->len; t++) decode_token(q, t, t == 0 ? &src : &dst, &dst);
        return;
    }
    const cpu_state_view_t cur = dense_view(scratch, E);
    if (from >= 0) load_row(&pl->t.pool.states, from, h, D, E, scratch);
    for (int64_t t = 0; t < q->len; t++) {
        const cpu_state_view_t none = {0};
        decode_token(q, t, t == 0 && from < 0 ? &none : &cur, &cur);
        const int64_t keep = la_slot_token(&slots, s, t);
        if (keep >= 0) store_row(&pl->t.pool.states, keep, h, D, E, scratch);
    }
    if (to >= 0) store_row(&pl->t.pool.states, to, h, D, E, scratch);
}
