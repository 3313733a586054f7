/*
 * test_serving.c - state pools, multi-token decode and checkpoints against
 * the fp64 reference.
 *
 *   test_serving [--backend cpu|cuda]     LA_TEST_SEED=<n>   LA_TEST_VERBOSE=1
 *
 * Every case draws a pool (f32 or bf16, [slots, H, D, E] or value-major
 * [slots, H, E, D] storage, random contents), a random assignment of
 * sequences to slots (padding, fresh sequences, separate write slots), runs
 * the call, and checks:
 *   - o against the reference run from the state each sequence should have
 *     read (padding rows exactly zero);
 *   - every written slot against the reference final state (or the state
 *     after each token with token slots), every other slot bit-unchanged,
 *     guards and layout gaps intact, inputs unchanged;
 *   - multi-token decode then a commit of n tokens equals n one-token steps,
 *     bit for bit (f32 pool);
 *   - prefill then decode steps from the pool equal one forward over the
 *     whole sequence;
 *   - checkpoints equal the reference state after every interval, rows past
 *     the last checkpoint untouched;
 *   - bad slots and bad serving arguments: the specific status, a message,
 *     nothing written.
 * On the CUDA backend, calls it declines (2xx from la_supports) are
 * counted as skipped, never as passed.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lightning_attn.h"
#include "reference.h"
#include "testutil.h"
#include "tolerances.h"

static la_backend_t g_backend = LA_BACKEND_CPU;

static void *xcalloc(size_t n, size_t s) {
    void *p = calloc(n ? n : 1, s ? s : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

/* ---- index arrays (host copy, device copy on CUDA) ------------------------------------ */

typedef struct idx {
    la_index_dtype_t dt;
    int64_t n;
    void *host, *dev;
} idx_t;

static void idx_alloc(idx_t *a, la_index_dtype_t dt, int64_t n) {
    a->dt = dt;
    a->n = n;
    a->host = xcalloc((size_t)n, dt == LA_INDEX_I32 ? 4 : 8);
    a->dev = a->host;
}
static void idx_set(idx_t *a, int64_t i, int64_t v) {
    if (a->dt == LA_INDEX_I32) ((int32_t *)a->host)[i] = (int32_t)v;
    else ((int64_t *)a->host)[i] = v;
}
static int64_t idx_get(const idx_t *a, int64_t i) {
    return a->dt == LA_INDEX_I32 ? ((int32_t *)a->host)[i] : ((int64_t *)a->host)[i];
}
static size_t idx_bytes(const idx_t *a) { return (size_t)a->n * (a->dt == LA_INDEX_I32 ? 4 : 8); }
/* Device copy of the host contents (CUDA), before each call. */
static void idx_upload(idx_t *a) {
    const tu_mem_ops_t *m = tu_get_mem_ops();
    if (!m || !a->host) return;
    if (a->dev == a->host) a->dev = m->alloc(idx_bytes(a));
    m->to_device(a->dev, a->host, idx_bytes(a));
}
static void idx_free(idx_t *a) {
    const tu_mem_ops_t *m = tu_get_mem_ops();
    if (m && a->dev && a->dev != a->host) m->free(a->dev);
    free(a->host);
    memset(a, 0, sizeof *a);
}
static void *bytes_upload(const void *host, size_t n) {
    const tu_mem_ops_t *m = tu_get_mem_ops();
    if (!m) return (void *)host;
    void *d = m->alloc(n);
    m->to_device(d, host, n);
    return d;
}
static void bytes_free(void *dev, const void *host) {
    const tu_mem_ops_t *m = tu_get_mem_ops();
    if (m && dev != host) m->free(dev);
}

/* ---- one case's tensors ------------------------------------------------------------------ */

typedef struct sv {
    const char *name;
    uint64_t seed;
    la_op_t op;
    la_decay_t decay;
    la_dtype_t dt, pool_dt;
    int value_major, packed;
    int64_t S, H, D, E, N, slots; /* N: tokens per sequence, or total when packed; decode: T */
    int64_t *cu;                  /* packed offsets [S + 1] */
    la_problem_t p;
    tu_tensor_t q, k, v, o, ld, ldv, pool, pool0, ckpt;
    idx_t rd, wr, tok, acc;
    int has_wr, has_tok, has_acc;
    uint8_t *init; /* has_initial_state, or NULL */
} sv_t;

static int64_t seq_start(const sv_t *c, int64_t s) { return c->packed ? c->cu[s] : 0; }
static int64_t seq_len(const sv_t *c, int64_t s) { return c->packed ? c->cu[s + 1] - c->cu[s] : c->N; }
static int64_t seq_row(const sv_t *c, int64_t s) { return c->packed ? 0 : s; }

static void alloc_pool(tu_tensor_t *t, const char *name, la_dtype_t dt, int vm, int64_t slots, int64_t H, int64_t D,
                       int64_t E) {
    const int64_t dim[4] = {slots, H, D, E};
    /* value-major: [slots, H, E, D] in memory; a slot stride with a gap */
    const int64_t st_vm[4] = {H * D * E + 3, D * E, 1, D};
    const int64_t st_dm[4] = {H * D * E + 5, D * E, E, 1};
    tu_alloc_strided(t, name, dt, dim, vm ? st_vm : st_dm);
}

/* Inputs and the pool of a case (c's sizes, kinds and flags set). */
static void sv_setup(sv_t *c, tu_rng_t *r) {
    const int64_t B = c->packed ? 1 : c->S;
    c->p = tu_problem(B, c->H, c->N, c->D, c->E, c->decay);
    c->p.scale = 0.5f;
    if (c->packed) {
        c->p.cu_seqlens = c->cu;
        c->p.num_seqs = c->S;
    }
    const tu_layout_t lay = (tu_layout_t)tu_below(r, TU_NUM_LAYOUTS);
    tu_alloc(&c->q, "q", c->dt, lay, B, c->H, c->N, c->D);
    tu_alloc(&c->k, "k", c->dt, lay, B, c->H, c->N, c->D);
    tu_alloc(&c->v, "v", c->dt, lay, B, c->H, c->N, c->E);
    if (c->op != LA_OP_STATE_FORWARD) tu_alloc(&c->o, "o", c->dt, lay, B, c->H, c->N, c->E);
    tu_fill_normal(&c->q, r, 0.5);
    tu_fill_normal(&c->k, r, 0.5);
    tu_fill_normal(&c->v, r, 1.0);
    if (c->decay == LA_DECAY_SCALAR_HEAD) {
        tu_alloc(&c->ld, "ld", LA_DTYPE_F32, TU_BHND, 1, c->H, 1, 1);
        tu_fill_uniform(&c->ld, r, -0.5, -1e-3);
    } else if (c->decay != LA_DECAY_NONE) {
        const int64_t w = c->decay == LA_DECAY_SCALAR_TOKEN ? 1 : c->D;
        tu_alloc(&c->ld, "ld", LA_DTYPE_F32, lay, B, c->H, c->N, w);
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < c->H; h++)
                for (int64_t t = 0; t < c->N; t++)
                    for (int64_t d = 0; d < w; d++) tu_set(&c->ld, b, h, t, d, tu_logsigmoid(tu_normal(r)) / 4);
    }
    if (c->decay == LA_DECAY_VECTOR_KV) {
        tu_alloc(&c->ldv, "ldv", LA_DTYPE_F32, lay, B, c->H, c->N, c->E);
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < c->H; h++)
                for (int64_t t = 0; t < c->N; t++)
                    for (int64_t e = 0; e < c->E; e++) tu_set(&c->ldv, b, h, t, e, tu_logsigmoid(tu_normal(r)) / 4);
    }
    alloc_pool(&c->pool, "pool", c->pool_dt, c->value_major, c->slots, c->H, c->D, c->E);
    tu_fill_normal(&c->pool, r, 0.3);
    tu_clone(&c->pool0, &c->pool, "pool before");
}

/* Slot assignment: distinct slots from a permutation; about one sequence in
 * five padding, one in four fresh (has_initial_state = 0); write slots either
 * the read slots or fresh ones (some < 0). */
static void sv_slots(sv_t *c, tu_rng_t *r, la_index_dtype_t dt, int allow_padding) {
    int64_t *perm = xcalloc((size_t)c->slots, sizeof *perm);
    for (int64_t i = 0; i < c->slots; i++) perm[i] = i;
    for (int64_t i = c->slots - 1; i > 0; i--) {
        int64_t j = (int64_t)tu_below(r, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    idx_alloc(&c->rd, dt, c->S);
    for (int64_t s = 0; s < c->S; s++) idx_set(&c->rd, s, allow_padding && tu_below(r, 5) == 0 ? -1 : perm[s]);
    c->has_wr = !c->has_tok && 2 * c->S <= c->slots && tu_below(r, 2);
    if (c->has_wr) {
        idx_alloc(&c->wr, dt, c->S);
        for (int64_t s = 0; s < c->S; s++) idx_set(&c->wr, s, tu_below(r, 6) == 0 ? -1 : perm[c->S + s]);
    }
    if (tu_below(r, 2)) {
        c->init = xcalloc((size_t)c->S, 1);
        for (int64_t s = 0; s < c->S; s++) c->init[s] = tu_below(r, 4) != 0;
    }
    free(perm);
}

static la_tensors_t sv_tensors(sv_t *c) {
    la_tensors_t t;
    la_tensors_init(&t);
    if (c->op != LA_OP_STATE_FORWARD) t.q = tu_view(&c->q);
    t.k = tu_view(&c->k);
    t.v = tu_view(&c->v);
    if (c->op != LA_OP_STATE_FORWARD) t.o = tu_view(&c->o);
    t.ld = tu_view(&c->ld);
    t.ldv = tu_view(&c->ldv);
    t.pool.states = tu_view(&c->pool);
    t.pool.num_slots = c->slots;
    t.pool.index_dtype = c->rd.dt;
    t.pool.read_slot = c->rd.dev;
    t.pool.write_slot = c->has_wr ? c->wr.dev : NULL;
    t.pool.token_slot = c->has_tok ? c->tok.dev : NULL;
    t.pool.num_accepted = c->has_acc ? c->acc.dev : NULL;
    t.checkpoints = tu_view(&c->ckpt);
    return t;
}

static void sv_free(sv_t *c) {
    tu_tensor_t *all[9] = {&c->q, &c->k, &c->v, &c->o, &c->ld, &c->ldv, &c->pool, &c->pool0, &c->ckpt};
    for (int i = 0; i < 9; i++)
        if (tu_present(all[i])) tu_free(all[i]);
    idx_free(&c->rd);
    if (c->has_wr) idx_free(&c->wr);
    if (c->has_tok) idx_free(&c->tok);
    if (c->has_acc) idx_free(&c->acc);
    free(c->init);
    free(c->cu);
}

/* ---- the reference of one (sequence, head) ----------------------------------------------- */

typedef struct refseq {
    double *q, *k, *v, *gk, *gv, *s0, *o, *sN;
} refseq_t;

static void ref_alloc(refseq_t *w, int64_t n, int64_t D, int64_t E) {
    n = n > 0 ? n : 1;
    w->q = xcalloc((size_t)(n * D), sizeof(double));
    w->k = xcalloc((size_t)(n * D), sizeof(double));
    w->v = xcalloc((size_t)(n * E), sizeof(double));
    w->gk = xcalloc((size_t)(n * D), sizeof(double));
    w->gv = xcalloc((size_t)(n * E), sizeof(double));
    w->o = xcalloc((size_t)(n * E), sizeof(double));
    w->s0 = xcalloc((size_t)(D * E), sizeof(double));
    w->sN = xcalloc((size_t)(D * E), sizeof(double));
}
static void ref_free(refseq_t *w) {
    double *all[8] = {w->q, w->k, w->v, w->gk, w->gv, w->s0, w->o, w->sN};
    for (int i = 0; i < 8; i++) free(all[i]);
}

/* Load the rounded inputs of tokens [t0, t0 + n) of sequence s, head h. */
static void ref_load(const sv_t *c, int64_t s, int64_t h, int64_t t0, int64_t n, refseq_t *w) {
    const int64_t b = seq_row(c, s), a = seq_start(c, s) + t0;
    tu_gather(&c->q, b, h, a, n, w->q);
    tu_gather(&c->k, b, h, a, n, w->k);
    tu_gather(&c->v, b, h, a, n, w->v);
    for (int64_t t = 0; t < n; t++) {
        for (int64_t d = 0; d < c->D; d++) {
            double g = 0.0;
            if (c->decay == LA_DECAY_SCALAR_HEAD) g = tu_get(&c->ld, 0, h, 0, 0);
            else if (c->decay == LA_DECAY_SCALAR_TOKEN) g = tu_get(&c->ld, b, h, a + t, 0);
            else if (c->decay >= LA_DECAY_VECTOR_K) g = tu_get(&c->ld, b, h, a + t, d);
            w->gk[t * c->D + d] = g;
        }
        for (int64_t e = 0; e < c->E; e++)
            w->gv[t * c->E + e] = c->decay == LA_DECAY_VECTOR_KV ? tu_get(&c->ldv, b, h, a + t, e) : 0.0;
    }
}

/* Run the reference over n tokens from w->s0 (NULL start = zeros). */
static void ref_run(const sv_t *c, int64_t n, int zero_start, refseq_t *w) {
    ref_forward_recurrent(n, (int)c->D, (int)c->E, c->p.scale, w->q, w->k, w->v,
                          c->decay == LA_DECAY_NONE ? NULL : w->gk, c->decay == LA_DECAY_VECTOR_KV ? w->gv : NULL,
                          zero_start ? NULL : w->s0, w->o, w->sN);
}

static void slot_get(const tu_tensor_t *pool, int64_t slot, int64_t h, int64_t D, int64_t E, double *out) {
    for (int64_t d = 0; d < D; d++)
        for (int64_t e = 0; e < E; e++) out[d * E + e] = tu_get(pool, slot, h, d, e);
}

/* ---- checks ---------------------------------------------------------------------------------- */

/* Tolerance of a stored state: f32 as the backend's states; bf16 storage adds
 * one rounding (u = 2^-8) of each element. */
static void state_tol(const sv_t *c, double *rel, double *elem) {
    const tolset_t *t = tu_tolerances(c->dt, g_backend);
    *rel = c->pool_dt == LA_DTYPE_BF16 ? 4e-3 : t->s_rel;
    *elem = c->pool_dt == LA_DTYPE_BF16 ? 8e-3 : t->s_elem;
}

/* Expected pool after the call: each written slot's reference state (want,
 * [slots, H, D, E] doubles) where written[slot] is set; the rest unchanged. */
static void check_pool(const sv_t *c, const double *want, const uint8_t *written) {
    const int64_t DE = c->D * c->E, per = c->H * DE;
    double rel, elem;
    state_tol(c, &rel, &elem);
    double *got = xcalloc((size_t)per, sizeof(double));
    int64_t unchanged_bad = -1;
    for (int64_t sl = 0; sl < c->slots; sl++) {
        for (int64_t h = 0; h < c->H; h++) slot_get(&c->pool, sl, h, c->D, c->E, got + h * DE);
        if (written[sl]) {
            char what[64];
            snprintf(what, sizeof what, "pool slot %lld", (long long)sl);
            tu_check_close(c->name, c->seed, what, got, want + sl * per, per, NULL, rel, elem);
        } else {
            for (int64_t h = 0; h < c->H && unchanged_bad < 0; h++)
                for (int64_t d = 0; d < c->D; d++)
                    for (int64_t e = 0; e < c->E; e++)
                        if (memcmp(&(double){tu_get(&c->pool, sl, h, d, e)}, &(double){tu_get(&c->pool0, sl, h, d, e)},
                                   sizeof(double)) != 0)
                            unchanged_bad = sl;
        }
    }
    tu_check(unchanged_bad < 0, c->name, c->seed, "pool slot %lld was not to be written, but changed",
             (long long)unchanged_bad);
    tu_check_guards(c->name, c->seed, &c->pool);
    free(got);
}

static int supported(la_handle_t *h, const sv_t *c, const la_tensors_t *t) {
    la_status_t st = la_supports(h, c->op, &c->p, t);
    if (la_status_category(st) == 200) {
        tu_skip();
        if (tu_verbose()) printf("skip [%s]: %s\n", c->name, la_last_error(h));
        return 0;
    }
    return 1;
}

static la_status_t run(la_handle_t *h, la_op_t op, const la_problem_t *p, const la_tensors_t *t) {
    switch (op) {
    case LA_OP_FORWARD: return la_forward(h, p, t);
    case LA_OP_STATE_FORWARD: return la_state_forward(h, p, t);
    case LA_OP_DECODE: return la_decode(h, p, t);
    default: return LA_STATUS_BAD_PARAM;
    }
}

static void upload_all(sv_t *c) {
    tu_tensor_t *all[7] = {&c->q, &c->k, &c->v, &c->o, &c->ld, &c->ldv, &c->pool};
    for (int i = 0; i < 7; i++)
        if (tu_present(all[i])) tu_upload(all[i]);
    if (tu_present(&c->ckpt)) tu_upload(&c->ckpt);
    idx_upload(&c->rd);
    if (c->has_wr) idx_upload(&c->wr);
    if (c->has_tok) idx_upload(&c->tok);
    if (c->has_acc) idx_upload(&c->acc);
}
static void download_outputs(sv_t *c) {
    if (tu_present(&c->o)) tu_download(&c->o);
    tu_download(&c->pool);
    if (tu_present(&c->ckpt)) tu_download(&c->ckpt);
}

/* ---- prefill / state forward / decode with a pool ------------------------------------------ */

/* Run c (set up, slots drawn) and check it against the reference. */
static void check_pooled_call(la_handle_t *h, sv_t *c) {
    uint8_t *init_dev = NULL;
    la_tensors_t t = sv_tensors(c);
    if (c->init) t.pool.has_initial_state = init_dev = bytes_upload(c->init, (size_t)c->S);
    if (tu_present(&c->o)) tu_poison(&c->o);
    upload_all(c);
    if (!supported(h, c, &t)) {
        bytes_free(init_dev, c->init);
        return;
    }
    la_status_t st = run(h, c->op, &c->p, &t);
    if (!tu_check(st == LA_STATUS_SUCCESS, c->name, c->seed, "call failed: %s", la_last_error(h))) {
        bytes_free(init_dev, c->init);
        return;
    }
    download_outputs(c);
    const int64_t DE = c->D * c->E, per = c->H * DE, T = c->op == LA_OP_DECODE ? c->N : 0;
    double *want_pool = xcalloc((size_t)(c->slots * per), sizeof(double));
    uint8_t *written = xcalloc((size_t)c->slots, 1);
    const int64_t B = c->packed ? 1 : c->S;
    double *want_o = xcalloc((size_t)(B * c->H * c->N * c->E), sizeof(double));
    int64_t maxlen = 1;
    for (int64_t s = 0; s < c->S; s++) maxlen = seq_len(c, s) > maxlen ? seq_len(c, s) : maxlen;
    refseq_t w;
    ref_alloc(&w, maxlen, c->D, c->E);
    for (int64_t s = 0; s < c->S; s++) {
        const int64_t rslot = idx_get(&c->rd, s);
        if (rslot < 0) continue; /* padding: o stays zero in want_o */
        const int fresh = c->init && !c->init[s];
        int64_t from = rslot;
        if (c->has_acc && idx_get(&c->acc, s) > 0) from = idx_get(&c->tok, s * T + idx_get(&c->acc, s) - 1);
        const int64_t to = c->has_tok ? -1 : c->has_wr ? idx_get(&c->wr, s) : rslot;
        const int64_t len = seq_len(c, s);
        for (int64_t hh = 0; hh < c->H; hh++) {
            ref_load(c, s, hh, 0, len, &w);
            if (!fresh) slot_get(&c->pool0, from, hh, c->D, c->E, w.s0);
            ref_run(c, len, fresh, &w);
            for (int64_t tt = 0; tt < len; tt++)
                for (int64_t e = 0; e < c->E; e++)
                    want_o[((seq_row(c, s) * c->H + hh) * c->N + seq_start(c, s) + tt) * c->E + e] = w.o[tt * c->E + e];
            if (to >= 0) {
                memcpy(want_pool + to * per + hh * DE, w.sN, (size_t)DE * sizeof(double));
                written[to] = 1;
            }
            for (int64_t tt = 0; c->has_tok && tt < T; tt++) { /* the state after each token */
                const int64_t ks = idx_get(&c->tok, s * T + tt);
                if (ks < 0) continue;
                refseq_t w2 = w;
                double *sN = xcalloc((size_t)DE, sizeof(double)),
                       *o2 = xcalloc((size_t)((tt + 1) * c->E), sizeof(double));
                w2.sN = sN;
                w2.o = o2;
                ref_run(c, tt + 1, fresh, &w2);
                memcpy(want_pool + ks * per + hh * DE, sN, (size_t)DE * sizeof(double));
                written[ks] = 1;
                free(sN);
                free(o2);
            }
        }
    }
    if (tu_present(&c->o)) {
        const int64_t n = B * c->H * c->N * c->E;
        double *got = xcalloc((size_t)n, sizeof(double));
        tu_gather_all(&c->o, got);
        const tolset_t *tol = tu_tolerances(c->dt, g_backend);
        tu_check_close(c->name, c->seed, "o", got, want_o, n, c->o.dim, tol->o_rel, tol->o_elem);
        int64_t pad_bad = -1;
        for (int64_t s = 0; s < c->S; s++)
            if (idx_get(&c->rd, s) < 0)
                for (int64_t hh = 0; hh < c->H; hh++)
                    for (int64_t tt = 0; tt < seq_len(c, s); tt++)
                        for (int64_t e = 0; e < c->E; e++)
                            if (tu_get(&c->o, seq_row(c, s), hh, seq_start(c, s) + tt, e) != 0.0) pad_bad = s;
        tu_check(pad_bad < 0, c->name, c->seed, "padding sequence %lld: o is not exactly zero", (long long)pad_bad);
        tu_check_guards(c->name, c->seed, &c->o);
        free(got);
    }
    check_pool(c, want_pool, written);
    ref_free(&w);
    free(want_pool);
    free(written);
    free(want_o);
    bytes_free(init_dev, c->init);
}

/* Case i of a test: its seed (printed by every failing line) and its generator. */
static uint64_t case_seed(uint64_t base, const char *name, int i, tu_rng_t *r) {
    const uint64_t seed = base ^ tu_hash_str(name) ^ (uint64_t)i * 0x9e3779b97f4a7c15ull;
    tu_rng_seed(r, seed);
    return seed;
}

static const la_decay_t KINDS[5] = {LA_DECAY_NONE, LA_DECAY_SCALAR_HEAD, LA_DECAY_SCALAR_TOKEN, LA_DECAY_VECTOR_K,
                                    LA_DECAY_VECTOR_KV};

/* Draw a case of the given operation. */
static void draw_case(sv_t *c, la_op_t op, uint64_t seed, const char *name, tu_rng_t *r) {
    memset(c, 0, sizeof *c);
    c->name = name;
    c->seed = seed;
    c->op = op;
    c->decay = KINDS[tu_below(r, 5)];
    c->dt = tu_below(r, 2) ? LA_DTYPE_BF16 : LA_DTYPE_F32;
    c->pool_dt = tu_below(r, 3) == 0 ? LA_DTYPE_BF16 : LA_DTYPE_F32;
    c->value_major = (int)tu_below(r, 2);
    c->H = 1 + (int64_t)tu_below(r, 3);
    const int64_t dims[4] = {16, 32, 64, 40};
    c->D = dims[tu_below(r, 4)];
    c->E = dims[tu_below(r, 4)];
    c->S = 1 + (int64_t)tu_below(r, 6);
    c->slots = 2 * c->S + (int64_t)tu_below(r, 5);
    if (op == LA_OP_DECODE) {
        c->N = tu_below(r, 2) ? 1 : 2 + (int64_t)tu_below(r, 3);
    } else if (tu_below(r, 2)) {
        c->packed = 1;
        c->cu = xcalloc((size_t)c->S + 1, sizeof(int64_t));
        for (int64_t s = 0; s < c->S; s++) c->cu[s + 1] = c->cu[s] + (int64_t)tu_below(r, 150);
        c->N = c->cu[c->S];
    } else {
        c->N = 1 + (int64_t)tu_below(r, 150);
    }
}

static void test_pooled(la_handle_t *h, uint64_t base) {
    const la_op_t ops[3] = {LA_OP_FORWARD, LA_OP_STATE_FORWARD, LA_OP_DECODE};
    const char *names[3] = {"pool_forward", "pool_state_forward", "pool_decode"};
    for (int o = 0; o < 3; o++)
        for (int i = 0; i < 24; i++) {
            tu_rng_t r;
            const uint64_t seed = case_seed(base, names[o], i, &r);
            sv_t c;
            draw_case(&c, ops[o], seed, names[o], &r);
            sv_setup(&c, &r);
            const la_index_dtype_t idt = tu_below(&r, 2) ? LA_INDEX_I64 : LA_INDEX_I32;
            if (ops[o] == LA_OP_DECODE && c.N > 1 && tu_below(&r, 2)) { /* speculative: states per token */
                c.has_tok = 1;
                idx_alloc(&c.tok, idt, c.S * c.N);
                /* token slots after the read slots: [S, 2S) plus, beyond, some not kept */
                for (int64_t s = 0; s < c.S; s++)
                    for (int64_t t = 0; t < c.N; t++) idx_set(&c.tok, s * c.N + t, -1);
                int64_t next = c.S;
                for (int64_t s = 0; s < c.S && next < c.slots; s++)
                    for (int64_t t = 0; t < c.N && next < c.slots; t++)
                        if (tu_below(&r, 4)) idx_set(&c.tok, s * c.N + t, next++);
            }
            sv_slots(&c, &r, idt, 1);
            if (c.has_tok) { /* read slots must not be token slots of others: use [0, S) */
                for (int64_t s = 0; s < c.S; s++)
                    if (idx_get(&c.rd, s) >= 0) idx_set(&c.rd, s, s);
            }
            check_pooled_call(h, &c);
            sv_free(&c);
        }
}

/* ---- speculative decoding: commit of n draft tokens == n one-token steps ------------------- */

static void test_commit_equals_steps(la_handle_t *h, uint64_t base) {
    for (int i = 0; i < 10; i++) {
        tu_rng_t r;
        const uint64_t seed = case_seed(base, "commit", i, &r);
        sv_t c;
        draw_case(&c, LA_OP_DECODE, seed, "commit_equals_steps", &r);
        c.pool_dt = LA_DTYPE_F32;
        c.N = 3 + (int64_t)tu_below(&r, 3); /* T draft tokens */
        const int64_t S = c.S, T = c.N;
        c.slots = S * (T + 1);
        sv_setup(&c, &r);
        /* sequence s: read slot s, token slots S + s*T + t */
        idx_alloc(&c.rd, LA_INDEX_I32, S);
        c.has_tok = 1;
        idx_alloc(&c.tok, LA_INDEX_I32, S * T);
        for (int64_t s = 0; s < S; s++) {
            idx_set(&c.rd, s, s);
            for (int64_t t = 0; t < T; t++) idx_set(&c.tok, s * T + t, S + s * T + t);
        }
        la_tensors_t t = sv_tensors(&c);
        upload_all(&c);
        if (!supported(h, &c, &t)) {
            sv_free(&c);
            continue;
        }
        la_status_t st = la_decode(h, &c.p, &t);
        tu_check(st == LA_STATUS_SUCCESS, c.name, seed, "draft decode: %s", la_last_error(h));
        download_outputs(&c);
        /* The same tokens one at a time on a dense f32 state started from slot s. */
        la_problem_t p1 = c.p;
        p1.seqlen = 1;
        tu_tensor_t dense, o1;
        tu_alloc(&dense, "dense state", LA_DTYPE_F32, TU_BHND, S, c.H, c.D, c.E);
        tu_alloc(&o1, "o1", c.dt, TU_BHND, S, c.H, 1, c.E);
        for (int64_t s = 0; s < S; s++)
            for (int64_t hh = 0; hh < c.H; hh++)
                for (int64_t d = 0; d < c.D; d++)
                    for (int64_t e = 0; e < c.E; e++) tu_set(&dense, s, hh, d, e, tu_get(&c.pool0, s, hh, d, e));
        tu_upload(&dense);
        int same_o = 1, same_s = 1;
        for (int64_t tok = 0; tok < T; tok++) {
            la_tensors_t t1;
            la_tensors_init(&t1);
            t1.q = tu_view_at(&c.q, 0, 0, tok, 0);
            t1.k = tu_view_at(&c.k, 0, 0, tok, 0);
            t1.v = tu_view_at(&c.v, 0, 0, tok, 0);
            if (c.decay == LA_DECAY_SCALAR_HEAD) t1.ld = tu_view(&c.ld);
            else if (c.decay != LA_DECAY_NONE) t1.ld = tu_view_at(&c.ld, 0, 0, tok, 0);
            if (c.decay == LA_DECAY_VECTOR_KV) t1.ldv = tu_view_at(&c.ldv, 0, 0, tok, 0);
            t1.initial_state = t1.final_state = tu_view(&dense);
            t1.o = tu_view(&o1);
            st = la_decode(h, &p1, &t1);
            tu_check(st == LA_STATUS_SUCCESS, c.name, seed, "one-token step %lld: %s", (long long)tok,
                     la_last_error(h));
            tu_download(&dense);
            tu_download(&o1);
            for (int64_t s = 0; s < S; s++)
                for (int64_t hh = 0; hh < c.H; hh++) {
                    for (int64_t e = 0; e < c.E; e++) same_o &= tu_get(&o1, s, hh, 0, e) == tu_get(&c.o, s, hh, tok, e);
                    for (int64_t d = 0; d < c.D; d++)
                        for (int64_t e = 0; e < c.E; e++)
                            same_s &= tu_get(&dense, s, hh, d, e) == tu_get(&c.pool, S + s * T + tok, hh, d, e);
                }
        }
        tu_check(same_o, c.name, seed, "o of the draft tokens differs from one-token steps");
        tu_check(same_s, c.name, seed, "the state kept after a draft token differs from one-token steps");
        /* Commit n tokens: the next step starts from token slot n - 1 (n = 0: the read slot). */
        idx_t acc;
        idx_alloc(&acc, LA_INDEX_I32, S);
        for (int64_t s = 0; s < S; s++) idx_set(&acc, s, (int64_t)tu_below(&r, (uint64_t)T + 1));
        c.has_acc = 1;
        c.acc = acc;
        tu_free(&c.pool0);
        tu_clone(&c.pool0, &c.pool, "pool before");
        check_pooled_call(h, &c);
        tu_free(&dense);
        tu_free(&o1);
        sv_free(&c);
    }
}

/* ---- prefill into slots, then decode steps: one forward over the whole ----------------------- */

static void test_prefill_then_decode(la_handle_t *h, uint64_t base) {
    for (int i = 0; i < 8; i++) {
        tu_rng_t r;
        const uint64_t seed = case_seed(base, "continue", i, &r);
        sv_t c;
        draw_case(&c, LA_OP_FORWARD, seed, "prefill_then_decode", &r);
        if (c.packed) { /* batch rows here: decode steps read token n of each row */
            free(c.cu);
            c.cu = NULL;
            c.packed = 0;
        }
        c.pool_dt = LA_DTYPE_F32;
        const int64_t P = 1 + (int64_t)tu_below(&r, 100), steps = 3;
        c.N = P + steps;
        sv_setup(&c, &r);
        const int64_t S = c.S;
        idx_alloc(&c.rd, tu_below(&r, 2) ? LA_INDEX_I32 : LA_INDEX_I64, S);
        for (int64_t s = 0; s < S; s++) idx_set(&c.rd, s, c.slots - 1 - s);
        c.init = xcalloc((size_t)S, 1); /* fresh requests */
        la_problem_t pp = c.p;
        pp.seqlen = P;
        la_tensors_t t = sv_tensors(&c);
        t.pool.has_initial_state = bytes_upload(c.init, (size_t)S);
        upload_all(&c);
        if (!supported(h, &c, &t)) {
            bytes_free((void *)t.pool.has_initial_state, c.init);
            sv_free(&c);
            continue;
        }
        la_status_t st = la_forward(h, &pp, &t);
        tu_check(st == LA_STATUS_SUCCESS, c.name, seed, "prefill: %s", la_last_error(h));
        bytes_free((void *)t.pool.has_initial_state, c.init);
        la_problem_t p1 = c.p;
        p1.seqlen = 1;
        for (int64_t k = 0; k < steps; k++) {
            la_tensors_t t1 = sv_tensors(&c);
            t1.q = tu_view_at(&c.q, 0, 0, P + k, 0);
            t1.k = tu_view_at(&c.k, 0, 0, P + k, 0);
            t1.v = tu_view_at(&c.v, 0, 0, P + k, 0);
            t1.o = tu_view_at(&c.o, 0, 0, P + k, 0);
            if (c.decay >= LA_DECAY_SCALAR_TOKEN) t1.ld = tu_view_at(&c.ld, 0, 0, P + k, 0);
            if (c.decay == LA_DECAY_VECTOR_KV) t1.ldv = tu_view_at(&c.ldv, 0, 0, P + k, 0);
            st = la_decode(h, &p1, &t1);
            tu_check(st == LA_STATUS_SUCCESS, c.name, seed, "decode step %lld: %s", (long long)k, la_last_error(h));
        }
        download_outputs(&c);
        /* One reference forward over all P + steps tokens from zeros. */
        const int64_t DE = c.D * c.E, n = S * c.H * c.N * c.E;
        double *want_o = xcalloc((size_t)n, sizeof(double)), *got = xcalloc((size_t)n, sizeof(double));
        double *want_pool = xcalloc((size_t)(c.slots * c.H * DE), sizeof(double));
        uint8_t *written = xcalloc((size_t)c.slots, 1);
        refseq_t w;
        ref_alloc(&w, c.N, c.D, c.E);
        for (int64_t s = 0; s < S; s++)
            for (int64_t hh = 0; hh < c.H; hh++) {
                ref_load(&c, s, hh, 0, c.N, &w);
                ref_run(&c, c.N, 1, &w);
                memcpy(want_o + (s * c.H + hh) * c.N * c.E, w.o, (size_t)(c.N * c.E) * sizeof(double));
                memcpy(want_pool + ((c.slots - 1 - s) * c.H + hh) * DE, w.sN, (size_t)DE * sizeof(double));
                written[c.slots - 1 - s] = 1;
            }
        tu_gather_all(&c.o, got);
        const tolset_t *tol = tu_tolerances(c.dt, g_backend);
        tu_check_close(c.name, seed, "o (prefill, then decode)", got, want_o, n, c.o.dim, tol->o_rel, tol->o_elem);
        check_pool(&c, want_pool, written);
        ref_free(&w);
        free(want_o);
        free(got);
        free(want_pool);
        free(written);
        sv_free(&c);
    }
}

/* ---- checkpoints ------------------------------------------------------------------------------- */

static void test_checkpoints(la_handle_t *h, uint64_t base) {
    for (int i = 0; i < 16; i++) {
        tu_rng_t r;
        const uint64_t seed = case_seed(base, "checkpoints", i, &r);
        sv_t c;
        const la_op_t op = i % 3 == 2 ? LA_OP_STATE_FORWARD : LA_OP_FORWARD;
        draw_case(&c, op, seed, "checkpoints", &r);
        const int64_t every = tu_below(&r, 3) ? 64 : 128;
        if (c.packed) { /* lengths up to 300: several checkpoints, some sequences with none */
            for (int64_t s = 0; s < c.S; s++) c.cu[s + 1] = c.cu[s] + (int64_t)tu_below(&r, 300);
            c.N = c.cu[c.S];
        } else {
            c.N = 64 * (1 + (int64_t)tu_below(&r, 4)) + (tu_below(&r, 2) ? 0 : (int64_t)tu_below(&r, 64));
        }
        sv_setup(&c, &r);
        c.p.checkpoint_interval = every;
        const int pooled = (int)tu_below(&r, 2);
        const int64_t rows = (c.packed ? 1 : c.S) * (c.N / every);
        tu_alloc(&c.ckpt, "checkpoints", tu_below(&r, 3) ? LA_DTYPE_F32 : LA_DTYPE_BF16, TU_BHND_PAD,
                 rows > 0 ? rows : 1, c.H, c.D, c.E);
        tu_poison(&c.ckpt);
        tu_tensor_t s0, sN;
        memset(&s0, 0, sizeof s0);
        memset(&sN, 0, sizeof sN);
        la_tensors_t t;
        if (pooled) {
            sv_slots(&c, &r, LA_INDEX_I64, 0);
            t = sv_tensors(&c);
        } else {
            t = sv_tensors(&c);
            memset(&t.pool, 0, sizeof t.pool);
            tu_alloc(&s0, "initial_state", LA_DTYPE_F32, TU_BHND, c.S, c.H, c.D, c.E);
            tu_alloc(&sN, "final_state", LA_DTYPE_F32, TU_BHND, c.S, c.H, c.D, c.E);
            tu_fill_normal(&s0, &r, 0.3);
            tu_poison(&sN);
            tu_upload(&s0);
            tu_upload(&sN);
            t.initial_state = tu_view(&s0);
            t.final_state = tu_view(&sN);
        }
        if (rows > 0) { /* rows to write: checkpoints are required */
            la_tensors_t t0 = t;
            memset(&t0.checkpoints, 0, sizeof t0.checkpoints);
            const la_status_t st0 = run(h, op, &c.p, &t0);
            tu_check(st0 == LA_STATUS_NULL_POINTER, c.name, seed, "%lld checkpoint rows, checkpoints NULL: %s",
                     (long long)rows, la_status_string(st0));
        }
        uint8_t *init_dev = c.init ? bytes_upload(c.init, (size_t)c.S) : NULL;
        t.pool.has_initial_state = init_dev;
        if (tu_present(&c.o)) tu_poison(&c.o);
        upload_all(&c);
        if (supported(h, &c, &t)) {
            la_status_t st = run(h, op, &c.p, &t);
            if (tu_check(st == LA_STATUS_SUCCESS, c.name, seed, "call failed: %s", la_last_error(h))) {
                download_outputs(&c);
                if (!pooled) tu_download(&sN);
                const int64_t DE = c.D * c.E;
                double rel = c.ckpt.dtype == LA_DTYPE_BF16 ? 4e-3 : tu_tolerances(c.dt, g_backend)->s_rel;
                double elem = c.ckpt.dtype == LA_DTYPE_BF16 ? 8e-3 : tu_tolerances(c.dt, g_backend)->s_elem;
                refseq_t w;
                ref_alloc(&w, c.N, c.D, c.E);
                double *got = xcalloc((size_t)DE, sizeof(double));
                int64_t row = 0;
                for (int64_t s = 0; s < c.S; s++) {
                    const int64_t len = seq_len(&c, s);
                    const int pad = pooled && idx_get(&c.rd, s) < 0;
                    const int fresh = pooled ? (c.init && !c.init[s]) : 0;
                    for (int64_t m = 1; m <= len / every; m++, row++)
                        for (int64_t hh = 0; hh < c.H; hh++) {
                            ref_load(&c, s, hh, 0, m * every, &w);
                            if (pooled && !fresh && !pad) slot_get(&c.pool0, idx_get(&c.rd, s), hh, c.D, c.E, w.s0);
                            if (!pooled) slot_get(&s0, s, hh, c.D, c.E, w.s0);
                            ref_run(&c, m * every, pooled && fresh, &w);
                            if (pad) memset(w.sN, 0, (size_t)DE * sizeof(double));
                            slot_get(&c.ckpt, row, hh, c.D, c.E, got);
                            char what[64];
                            snprintf(what, sizeof what, "checkpoint %lld of sequence %lld", (long long)m, (long long)s);
                            tu_check_close(c.name, seed, what, got, w.sN, DE, NULL, rel, elem);
                        }
                    if (!pooled)
                        for (int64_t hh = 0; hh < c.H; hh++) {
                            ref_load(&c, s, hh, 0, len, &w);
                            slot_get(&s0, s, hh, c.D, c.E, w.s0);
                            ref_run(&c, len, 0, &w);
                            slot_get(&sN, s, hh, c.D, c.E, got);
                            const tolset_t *tol = tu_tolerances(c.dt, g_backend);
                            tu_check_close(c.name, seed, "final state beside checkpoints", got, w.sN, DE, NULL,
                                           tol->s_rel, tol->s_elem);
                        }
                }
                int untouched = 1; /* rows past the last checkpoint keep their poison */
                for (int64_t rr = row; rr < c.ckpt.dim[0]; rr++)
                    for (int64_t hh = 0; hh < c.H; hh++) untouched &= isnan(tu_get(&c.ckpt, rr, hh, 0, 0));
                tu_check(untouched, c.name, seed, "a checkpoint row past the last checkpoint (%lld) was written",
                         (long long)row);
                tu_check_guards(c.name, seed, &c.ckpt);
                free(got);
                ref_free(&w);
            }
        }
        bytes_free(init_dev, c.init);
        if (tu_present(&s0)) tu_free(&s0);
        if (tu_present(&sN)) tu_free(&sN);
        sv_free(&c);
    }
}

/* ---- bad slots and bad arguments ------------------------------------------------------------- */

/* The call must fail with want, leave a message, and write nothing. */
static void expect_refused(la_handle_t *h, sv_t *c, la_tensors_t *t, la_status_t want, const char *what) {
    if (tu_present(&c->o)) tu_poison(&c->o);
    upload_all(c);
    if (tu_present(&c->o)) tu_snapshot(&c->o);
    tu_snapshot(&c->pool);
    la_status_t st = run(h, c->op, &c->p, t);
    download_outputs(c);
    tu_check(st == want, what, c->seed, "got %s, want %s (%s)", la_status_string(st), la_status_string(want),
             la_last_error(h));
    tu_check(la_last_error(h)[0] != '\0', what, c->seed, "no message after a refused call");
    tu_check(tu_unchanged(&c->pool), what, c->seed, "a refused call wrote to the pool");
    if (tu_present(&c->o)) tu_check(tu_unchanged(&c->o), what, c->seed, "a refused call wrote to o");
}

static void test_refusals(la_handle_t *h, uint64_t base) {
    const uint64_t seed = base ^ tu_hash_str("refusals");
    la_set_check_values(h, LA_CHECK_VALUES_SYNC); /* device slots: the call itself reports, having written nothing */
    tu_rng_t r;
    tu_rng_seed(&r, seed);
    sv_t c;
    memset(&c, 0, sizeof c);
    c.name = "refusals";
    c.seed = seed;
    c.op = LA_OP_DECODE;
    c.decay = LA_DECAY_VECTOR_K;
    c.dt = LA_DTYPE_BF16;
    c.pool_dt = LA_DTYPE_F32;
    c.H = 2;
    c.D = 32;
    c.E = 16;
    c.S = 3;
    c.N = 2;
    c.slots = 12;
    sv_setup(&c, &r);
    idx_alloc(&c.rd, LA_INDEX_I64, c.S);
    for (int64_t s = 0; s < c.S; s++) idx_set(&c.rd, s, s);
    la_tensors_t t = sv_tensors(&c);
    /* slot values */
    idx_set(&c.rd, 1, 12);
    expect_refused(h, &c, &t, LA_STATUS_BAD_SLOT, "read slot = num_slots");
    idx_set(&c.rd, 1, 2);
    expect_refused(h, &c, &t, LA_STATUS_BAD_SLOT, "two sequences on one slot");
    idx_set(&c.rd, 1, 1);
    c.has_wr = 1;
    idx_alloc(&c.wr, LA_INDEX_I64, c.S);
    idx_set(&c.wr, 0, 5);
    idx_set(&c.wr, 1, 2); /* sequence 2 reads slot 2 */
    idx_set(&c.wr, 2, 7);
    t = sv_tensors(&c);
    expect_refused(h, &c, &t, LA_STATUS_BAD_SLOT, "a slot read by one sequence, written by another");
    idx_set(&c.wr, 1, -3);
    idx_set(&c.wr, 2, 1ll << 40);
    expect_refused(h, &c, &t, LA_STATUS_BAD_SLOT, "write slot far out of range");
    idx_free(&c.wr);
    c.has_wr = 0;
    c.has_tok = 1;
    idx_alloc(&c.tok, LA_INDEX_I64, c.S * c.N);
    for (int64_t i = 0; i < c.S * c.N; i++) idx_set(&c.tok, i, 3 + i);
    idx_set(&c.tok, 5, 4);
    t = sv_tensors(&c);
    expect_refused(h, &c, &t, LA_STATUS_BAD_SLOT, "a token slot written twice");
    idx_set(&c.tok, 5, 8);
    idx_set(&c.tok, 2, 0); /* sequence 1's token slot is sequence 0's read slot */
    expect_refused(h, &c, &t, LA_STATUS_BAD_SLOT, "a token slot another sequence reads");
    idx_set(&c.tok, 2, 5);
    c.has_acc = 1;
    idx_alloc(&c.acc, LA_INDEX_I64, c.S);
    idx_set(&c.acc, 1, 3);
    t = sv_tensors(&c);
    expect_refused(h, &c, &t, LA_STATUS_BAD_SLOT, "num_accepted > T");
    idx_set(&c.acc, 1, 1);
    idx_set(&c.tok, 2, -1);
    expect_refused(h, &c, &t, LA_STATUS_BAD_SLOT, "accepted token's state was not kept");
    idx_set(&c.tok, 2, 5);
    /* arguments */
    la_tensors_t bad = t;
    bad.pool.read_slot = NULL;
    expect_refused(h, &c, &bad, LA_STATUS_NULL_POINTER, "pool without read_slot");
    bad = t;
    bad.pool.index_dtype = (la_index_dtype_t)7;
    expect_refused(h, &c, &bad, LA_STATUS_BAD_PARAM, "unknown index dtype");
    bad = t;
    bad.pool.num_slots = 0;
    expect_refused(h, &c, &bad, LA_STATUS_BAD_SHAPE, "num_slots 0");
    bad = t;
    bad.pool.states.dtype = LA_DTYPE_F16;
    expect_refused(h, &c, &bad, LA_STATUS_UNSUPPORTED_DTYPE, "f16 pool");
    bad = t;
    bad.pool.write_slot = c.rd.dev;
    expect_refused(h, &c, &bad, LA_STATUS_BAD_PARAM, "write_slot with token_slot");
    bad = t;
    bad.initial_state = tu_view(&c.pool);
    expect_refused(h, &c, &bad, LA_STATUS_BAD_PARAM, "initial_state beside a pool");
    bad = t;
    bad.o = tu_view(&c.pool);
    bad.o.dtype = c.dt;
    expect_refused(h, &c, &bad, LA_STATUS_OVERLAP, "o inside the pool");
    bad = t;
    bad.pool.read_slot = (const char *)c.rd.dev + 4;
    expect_refused(h, &c, &bad, LA_STATUS_BAD_PARAM, "misaligned read_slot");
    bad = t;
    memset(&bad.pool.states, 0, sizeof bad.pool.states);
    bad.initial_state = bad.final_state = tu_view(&c.pool0);
    expect_refused(h, &c, &bad, LA_STATUS_BAD_PARAM, "slot arrays without pool.states");
    /* the forward: token slots are decode's; checkpoints need their interval */
    c.op = LA_OP_FORWARD;
    expect_refused(h, &c, &t, LA_STATUS_BAD_PARAM, "token_slot in a forward");
    bad = t;
    bad.pool.token_slot = bad.pool.num_accepted = NULL;
    c.p.checkpoint_interval = 100;
    expect_refused(h, &c, &bad, LA_STATUS_BAD_PARAM, "checkpoint interval not a multiple of 64");
    c.p.checkpoint_interval = 64; /* 2 tokens: no checkpoint row, so checkpoints may be NULL */
    const la_status_t st = run(h, c.op, &c.p, &bad);
    if (la_status_category(st) == 200) tu_skip(); /* a backend without checkpoints */
    else
        tu_check(st == LA_STATUS_SUCCESS, "no checkpoint rows, checkpoints NULL", seed, "%s (%s)", la_status_string(st),
                 la_last_error(h));
    c.p.checkpoint_interval = 0;
    bad.checkpoints = tu_view(&c.pool0);
    expect_refused(h, &c, &bad, LA_STATUS_BAD_PARAM, "checkpoints without an interval");
    c.op = LA_OP_BACKWARD;
    bad = t;
    expect_refused(h, &c, &bad, LA_STATUS_BAD_PARAM, "a backward with a pool");
    la_set_check_values(h, LA_CHECK_VALUES_DEFERRED);
    sv_free(&c);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc) {
            const char *b = argv[++i];
            if (!strcmp(b, "cuda")) g_backend = LA_BACKEND_CUDA;
            else if (strcmp(b, "cpu") != 0) {
                fprintf(stderr, "unknown backend %s\n", b);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: test_serving [--backend cpu|cuda]\n");
            return 2;
        }
    }
    if (g_backend == LA_BACKEND_CUDA) {
        if (!la_backend_available(LA_BACKEND_CUDA)) {
            printf("skipped: no CUDA device (or the library was built without CUDA)\n");
            return 0;
        }
        if (!tu_cuda_memory_init()) {
            printf("FAIL: the CUDA backend is available but libcuda.so.1 could not be loaded\n0 passed, 1 failed\n");
            return 1;
        }
    }
    uint64_t base = 0x5e7e5e7e12345678ull;
    const char *se = getenv("LA_TEST_SEED");
    if (se && *se) base = strtoull(se, NULL, 0);
    la_handle_t *h = NULL;
    if (la_create(&h, g_backend) != LA_STATUS_SUCCESS) {
        printf("FAIL: la_create\n0 passed, 1 failed\n");
        return 1;
    }
    la_set_check_values(h, LA_CHECK_VALUES_DEFERRED);
    test_pooled(h, base);
    test_commit_equals_steps(h, base);
    test_prefill_then_decode(h, base);
    test_checkpoints(h, base);
    test_refusals(h, base);
    la_destroy(h);
    return tu_summary();
}
