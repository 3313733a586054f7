/*
 * cpu_kernels.h - the CPU backend's per-(sequence, head) kernels.
 *
 * The driver (cpu_backend.c) splits a plan into work items, one per
 * (sequence, head), builds a cpu_seq_t of strided views for each and hands it
 * to the kernel of the decay family:
 *   scalar family  (cpu_scalar.c): NONE, SCALAR_HEAD, SCALAR_TOKEN
 *   vector family  (cpu_vector.c): VECTOR_K, VECTOR_KV
 * Each kernel gets a private per-thread workspace of the size it asked for.
 * Kernels convert inputs to fp32 through the tile helpers (tile_io.h), keep
 * the state and all sums in fp32, and write outputs in their dtype.
 */
#ifndef LA_CPU_KERNELS_H
#define LA_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include "lightning_attn.h"

/* Under ThreadSanitizer the kernels take their baseline loops only: the
 * load-time choice between AVX-512, AVX2 and baseline clones is an ELF ifunc,
 * whose resolver runs during relocation, before the sanitizer's runtime has
 * started, and crashes there. */
#if defined(__SANITIZE_THREAD__)
#define LA_CPU_NO_IFUNC 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LA_CPU_NO_IFUNC 1
#endif
#endif

/* A strided [tokens, channels] view of one (sequence, head) slice.  ptr points
 * at token 0, channel 0 of the slice; ptr == NULL means absent. */
typedef struct cpu_view {
    char *ptr;
    la_dtype_t dtype;
    int64_t st; /* element stride between tokens */
    int64_t sc; /* element stride between channels */
} cpu_view_t;

/* A strided f32 [D, E] state of one (sequence, head); ptr NULL = absent. */
typedef struct cpu_state_view {
    float *ptr;
    int64_t sd, se;
} cpu_state_view_t;

typedef struct cpu_seq {
    int64_t len; /* tokens in this sequence (may be 0) */
    int D, E;
    float scale;
    la_decay_t kind;
    /* token tensors */
    cpu_view_t q, k, v, o;      /* o: forward output (absent for the state-only pass) */
    cpu_view_t d_o, dq, dk, dv; /* backward; d_o and dq absent for the state-only backward */
    /* decay */
    float ld_head;          /* SCALAR_HEAD: the head's log decay */
    cpu_view_t ld;          /* SCALAR_TOKEN: [len, 1]; VECTOR_*: [len, D] */
    cpu_view_t ldv;         /* VECTOR_KV: [len, E] */
    cpu_view_t d_ld, d_ldv; /* per-token decay gradients (absent = fixed decay) */
    double *d_ld_head;      /* SCALAR_HEAD learnable: this item's partial sum, or NULL */
    /* states */
    cpu_state_view_t s0, sN;   /* initial (absent = 0), final (absent = not wanted) */
    cpu_state_view_t dsN, ds0; /* incoming final-state gradient (absent = 0), d initial state */
} cpu_seq_t;

/* Bytes of per-thread workspace for sequences up to max_len tokens. */
size_t cpu_scalar_workspace(int D, int E, int64_t max_len);
size_t cpu_vector_workspace(int D, int E, int64_t max_len);

/* Forward: writes o (when present) and sN (when present).  The state-only
 * pass is this call with o absent. */
void cpu_scalar_forward(const cpu_seq_t *s, void *ws);
void cpu_vector_forward(const cpu_seq_t *s, void *ws);

/* Backward: writes dk, dv, dq (when d_o is present), the decay gradient
 * (d_ld / d_ldv / *d_ld_head when present) and ds0 (when present).  With d_o
 * absent this is the backward of the state-only pass. */
void cpu_scalar_backward(const cpu_seq_t *s, void *ws);
void cpu_vector_backward(const cpu_seq_t *s, void *ws);

#endif
