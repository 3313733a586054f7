/*
 * slot_rules.h - which slots of a state pool a sequence reads and writes:
 * the one statement of the rules in lightning_attn.h's "Serving", read by
 * the host (src/api/slots.c, the CPU backend) and by the CUDA kernels alike,
 * so that both backends serve the same slots.
 *
 * Plain C over the index arrays; under nvcc the functions are host and
 * device functions.  Values are not checked here (slots.c on the host,
 * slot_checks.cuh on the device).
 */
#ifndef LA_SLOT_RULES_H
#define LA_SLOT_RULES_H

#include <stdint.h>

#ifdef __CUDACC__
#define LA_SLOT_FN static __host__ __device__ __forceinline__
#else
#define LA_SLOT_FN static inline
#endif

/* A pool's index arrays, with the call's sizes. */
typedef struct la_slots {
    const void *read, *write, *token, *accepted; /* token [S, T]; NULL = absent */
    const uint8_t *has_init;                     /* NULL: every sequence reads its slot */
    int idx64;                                   /* int64 indices (else int32) */
    int64_t num_slots, S, T;
} la_slots_t;

LA_SLOT_FN int64_t la_slot_at(const void *a, int idx64, int64_t i) {
    return idx64 ? ((const int64_t *)a)[i] : (int64_t)((const int32_t *)a)[i];
}
/* Sequence s is padding: it reads and writes no state, o = 0. */
LA_SLOT_FN int la_slot_padding(const la_slots_t *q, int64_t s) { return la_slot_at(q->read, q->idx64, s) < 0; }
/* Does s start from a slot (else from zeros)? */
LA_SLOT_FN int la_slot_reads(const la_slots_t *q, int64_t s) { return !q->has_init || q->has_init[s]; }
/* Accepted draft tokens of s, clamped to [0, T] (a bad count is a fault). */
LA_SLOT_FN int64_t la_slot_accepted(const la_slots_t *q, int64_t s) {
    if (!q->accepted) return 0;
    const int64_t n = la_slot_at(q->accepted, q->idx64, s);
    return n < 0 ? 0 : n > q->T ? q->T : n;
}
/* The slot s starts from, or -1: zeros. */
LA_SLOT_FN int64_t la_slot_from(const la_slots_t *q, int64_t s) {
    if (!la_slot_reads(q, s)) return -1;
    const int64_t n = la_slot_accepted(q, s);
    if (n > 0) return la_slot_at(q->token, q->idx64, s * q->T + n - 1);
    return la_slot_at(q->read, q->idx64, s);
}
/* The slot s's final state goes to (< 0: none; none with token slots). */
LA_SLOT_FN int64_t la_slot_final(const la_slots_t *q, int64_t s) {
    if (q->token) return -1;
    return la_slot_at(q->write ? q->write : q->read, q->idx64, s);
}
/* The slot the state after token t of s goes to (< 0: not kept). */
LA_SLOT_FN int64_t la_slot_token(const la_slots_t *q, int64_t s, int64_t t) {
    return q->token ? la_slot_at(q->token, q->idx64, s * q->T + t) : -1;
}
/* Every write of s, as a list: the token slots, or the final state's slot. */
LA_SLOT_FN int64_t la_slot_nwrites(const la_slots_t *q) { return q->token ? q->T : 1; }
LA_SLOT_FN int64_t la_slot_write_at(const la_slots_t *q, int64_t s, int64_t i) {
    return q->token ? la_slot_token(q, s, i) : la_slot_final(q, s);
}

#endif
