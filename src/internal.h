/*
 * internal.h - what the API layer hands to a backend.
 *
 * src/api/ validates every argument and builds a la_plan_t: a copy of the
 * problem and tensors plus the derived facts every backend needs (number of
 * sequences, where each starts, which optional tensors are present).  A
 * backend then only runs; it never re-validates.
 */
#ifndef LA_INTERNAL_H
#define LA_INTERNAL_H

#include "lightning_attn.h"
#include "api/slot_rules.h"

#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LA_MSG_LEN 512

typedef struct la_plan {
    la_op_t op;
    la_problem_t p;
    la_tensors_t t;
    int64_t num_seqs; /* B, or problem.num_seqs when packed */
    int packed;       /* cu_seqlens given */
    int cu_device;    /* ... in device memory: never read on the host */
    /* presence of optional tensors */
    int has_initial, has_final, has_dfinal, want_dld, want_dldv, want_dinitial;
    int has_o;                 /* forward/decode write o; backward reads d_o and writes dq */
    int has_pool;              /* states by slot (t.pool) in place of initial_state / final_state */
    int has_checkpoints;       /* p.checkpoint_interval > 0: t.checkpoints is written */
    int check_values;          /* la_check_mode_t for device-resident values (log decays, device cu_seqlens) */
    const la_policy_t *policy; /* the handle's (never NULL once the API built the plan) */
    void *backend_state;       /* the handle's backend state (backend_ops.state_create), or NULL */
} la_plan_t;

/* Every byte count the library forms stays below this (2^62), so sums and
 * products of a few of them cannot wrap; the API refuses larger problems and
 * strides (validate.c). */
#define LA_MAX_BYTES ((int64_t)1 << 62)
/* Largest counts of (sequence, head) and (token, head) pairs a problem may
 * have: times a padded state (at most 2^16 floats) or a chunk's share of one,
 * they stay below 2^64 bytes. */
#define LA_MAX_SEQ_HEADS ((int64_t)1 << 40)
#define LA_MAX_TOKEN_HEADS ((int64_t)1 << 48)

/* a * b for a, b >= 0, or -1 when it passes LA_MAX_BYTES. */
static inline int64_t la_mul_capped(int64_t a, int64_t b) {
    if (a < 0 || b < 0) return -1;
    if (a != 0 && b > LA_MAX_BYTES / a) return -1;
    return a * b;
}
/* Saturating size_t arithmetic for workspace sizes: SIZE_MAX never fits. */
static inline size_t la_size_mul(size_t a, size_t b) { return (a != 0 && b > SIZE_MAX / a) ? SIZE_MAX : a * b; }
static inline size_t la_size_add(size_t a, size_t b) { return a > SIZE_MAX - b ? SIZE_MAX : a + b; }

/* First token and length of sequence s (in the N dimension of batch row
 * seq_batch).  Host offsets only: with device cu_seqlens (pl->cu_device) the
 * host knows no sequence's bounds, only la_plan_max_len's bound. */
static inline int64_t la_plan_seq_start(const la_plan_t *pl, int64_t s) { return pl->packed ? pl->p.cu_seqlens[s] : 0; }
static inline int64_t la_plan_seq_len(const la_plan_t *pl, int64_t s) {
    return pl->packed ? pl->p.cu_seqlens[s + 1] - pl->p.cu_seqlens[s] : pl->p.seqlen;
}
static inline int64_t la_plan_seq_batch(const la_plan_t *pl, int64_t s) { return pl->packed ? 0 : s; }
/* Longest sequence of the plan (with device offsets: problem.max_seqlen when
 * given, else N, a bound). */
int64_t la_plan_max_len(const la_plan_t *pl);

/* problem.checkpoint_interval is a multiple of this: every backend's chunk
 * length divides it, so checkpoints fall on chunk boundaries. */
#define LA_CHECKPOINT_ALIGN 64

/* Rows of tensors.checkpoints: floor(N / interval) per batch row (a packed
 * batch has one row of N tokens, enough for any offsets). */
static inline int64_t la_plan_checkpoint_rows(const la_plan_t *pl) {
    if (pl->p.checkpoint_interval <= 0) return 0;
    return pl->p.batch * (pl->p.seqlen / pl->p.checkpoint_interval);
}

/* The pool's index arrays with the call's sizes (api/slot_rules.h). */
static inline la_slots_t la_plan_slots(const la_plan_t *pl) {
    const la_state_pool_t *q = &pl->t.pool;
    la_slots_t s;
    memset(&s, 0, sizeof s);
    s.read = q->read_slot;
    s.write = q->write_slot;
    s.token = q->token_slot;
    s.accepted = q->num_accepted;
    s.has_init = q->has_initial_state;
    s.idx64 = q->index_dtype == LA_INDEX_I64;
    s.num_slots = q->num_slots;
    s.S = pl->num_seqs;
    s.T = pl->p.seqlen;
    return s;
}

/* Host slot arrays (slots.c): the scratch bytes the check needs, and the
 * check itself (LA_STATUS_BAD_SLOT with a message, or success). */
size_t la_slot_check_bytes(const la_plan_t *pl);
la_status_t la_check_slots(const la_plan_t *pl, void *scratch, char *msg);

/* Largest backend plan (la_backend_ops_t.plan_bytes), so the API can keep
 * one per cached problem without allocating. */
#define LA_BACKEND_PLAN_MAX 4096

/* A backend: its planner and its runner.  make_plan is the backend's one
 * support table and its dispatch: it decides everything that runs for a call
 * (or refuses with the status the call returns), the workspace size is read
 * from that plan, and run executes it without deciding anything again. */
typedef struct la_backend_ops {
    const char *name;
    size_t plan_bytes; /* <= LA_BACKEND_PLAN_MAX */
    /* LA_STATUS_SUCCESS and *bplan filled, or a 2xx status with a message. */
    la_status_t (*make_plan)(const la_plan_t *pl, int num_threads, void *bplan, char *msg);
    size_t (*workspace_size)(const la_plan_t *pl, const void *bplan);
    la_status_t (*run)(const la_plan_t *pl, const void *bplan, void *ws, size_t ws_bytes, void *stream, char *msg);
    /* One line naming what the plan runs. */
    void (*describe)(const la_plan_t *pl, const void *bplan, char *buf, size_t len);
    int (*available)(void);
    void *(*ws_alloc)(size_t bytes); /* workspace memory of this backend's kind */
    void (*ws_free)(void *ptr);
    int host_memory; /* tensors live in host memory (values checkable) */
    /* Per-handle state (NULL functions: none): made in la_create, freed in
     * la_destroy. */
    la_status_t (*state_create)(void **state);
    void (*state_destroy)(void *state);
    /* An error a deferred value check recorded (LA_STATUS_SUCCESS: none),
     * cleared once returned; wait: synchronise the stream first. */
    la_status_t (*take_error)(void *state, void *stream, int wait, char *msg);
} la_backend_ops_t;

extern const la_backend_ops_t la_cpu_backend;
/* NULL when the library was built without CUDA. */
extern const la_backend_ops_t *const la_cuda_backend_ptr;

#ifdef __cplusplus
}
#endif

#endif
