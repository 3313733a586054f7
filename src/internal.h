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
    /* presence of optional tensors */
    int has_initial, has_final, has_dfinal, want_dld, want_dldv, want_dinitial;
    int has_o;        /* forward/decode write o; backward reads d_o and writes dq */
    int check_values; /* check device-resident values (log decays) before running */
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

/* First token and length of sequence s (in the N dimension of batch row seq_batch). */
static inline int64_t la_plan_seq_start(const la_plan_t *pl, int64_t s) { return pl->packed ? pl->p.cu_seqlens[s] : 0; }
static inline int64_t la_plan_seq_len(const la_plan_t *pl, int64_t s) {
    return pl->packed ? pl->p.cu_seqlens[s + 1] - pl->p.cu_seqlens[s] : pl->p.seqlen;
}
static inline int64_t la_plan_seq_batch(const la_plan_t *pl, int64_t s) { return pl->packed ? 0 : s; }
/* Longest sequence of the plan. */
int64_t la_plan_max_len(const la_plan_t *pl);

/* A backend: its support check and its runner.  The support check and the
 * runner read the same table (each backend's own), so "supported?" and what
 * the kernels accept can never disagree. */
typedef struct la_backend_ops {
    const char *name;
    /* LA_STATUS_SUCCESS or a 2xx status with a message written to msg. */
    la_status_t (*supports)(const la_plan_t *pl, char *msg);
    size_t (*workspace_size)(const la_plan_t *pl, int num_threads);
    la_status_t (*run)(const la_plan_t *pl, void *ws, size_t ws_bytes, int num_threads, void *stream, char *msg);
    int (*available)(void);
    void *(*ws_alloc)(size_t bytes); /* workspace memory of this backend's kind */
    void (*ws_free)(void *ptr);
    int host_memory; /* tensors live in host memory (values checkable) */
} la_backend_ops_t;

extern const la_backend_ops_t la_cpu_backend;
/* NULL when the library was built without CUDA. */
extern const la_backend_ops_t *const la_cuda_backend_ptr;

#ifdef __cplusplus
}
#endif

#endif
