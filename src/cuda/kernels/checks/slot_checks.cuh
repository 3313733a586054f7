/* slot_checks.cuh - what is wrong with a state pool's slots, on the device
 * (the device half of src/api/slots.c: the rules of api/slot_rules.h, and the
 * same answers for the same arrays).
 *
 * Plain device functions over the index arrays, compiled by the host
 * compiler too (tests/cuda_emu.h).  The faults of one sequence are found by
 * one thread looking at every write of the call: O(writes) per sequence, run
 * by the check kernel (value_checks.cu) or, in a decode, on the error path
 * of the block that found its own sequence at fault. */
#ifndef LA_CUDA_SLOT_CHECKS_CUH
#define LA_CUDA_SLOT_CHECKS_CUH

#include "lightning_attn.h"
#include "api/validate.h"
#include "error_record.h"
#include "api/slot_rules.h"

#include <stdint.h>

/* Faults, in the order they are looked for (the record's dims[0]). */
enum {
    LA_SLOT_OK = 0,
    LA_SLOT_READ_RANGE = 1,   /* the slot it starts from is outside [0, num_slots) */
    LA_SLOT_WRITE_RANGE = 2,  /* a write or token slot >= num_slots */
    LA_SLOT_ACCEPTED = 3,     /* num_accepted outside [0, T] */
    LA_SLOT_TWICE = 4,        /* a slot it writes is written again in the call */
    LA_SLOT_READ_SHARED = 5   /* the slot it reads is written by another sequence */
};

/* What is wrong with sequence s's slots (LA_SLOT_OK: nothing); *slot names
 * the slot or count, *other the other sequence (or num_slots). */
static __device__ int la_slot_fault(const la_slots_t *q, int64_t s, int64_t *slot, int64_t *other) {
    if (la_slot_padding(q, s)) return LA_SLOT_OK;
    *other = q->num_slots;
    if (q->accepted) {
        const int64_t n = la_slot_at(q->accepted, q->idx64, s);
        if (n < 0 || n > q->T) {
            *slot = n;
            *other = q->T;
            return LA_SLOT_ACCEPTED;
        }
    }
    const bool reads = la_slot_reads(q, s);
    const int64_t from = la_slot_from(q, s);
    if (reads && (from < 0 || from >= q->num_slots)) {
        *slot = from;
        return LA_SLOT_READ_RANGE;
    }
    const int64_t nw = la_slot_nwrites(q);
    for (int64_t i = 0; i < nw; i++)
        if (la_slot_write_at(q, s, i) >= q->num_slots) {
            *slot = la_slot_write_at(q, s, i);
            return LA_SLOT_WRITE_RANGE;
        }
    for (int64_t j = 0; j < q->S; j++) {
        if (la_slot_padding(q, j)) continue;
        for (int64_t i = 0; i < nw; i++) {
            const int64_t w = la_slot_write_at(q, j, i);
            if (w < 0) continue;
            for (int64_t k = 0; k < nw; k++)
                if ((j != s || k != i) && la_slot_write_at(q, s, k) == w) {
                    *slot = w;
                    *other = j;
                    return LA_SLOT_TWICE;
                }
            if (j != s && reads && w == from) {
                *slot = w;
                *other = j;
                return LA_SLOT_READ_SHARED;
            }
        }
    }
    return LA_SLOT_OK;
}

/* Record sequence s's fault for the host (LA_STATUS_BAD_SLOT), unless a
 * sequence below s is at fault too: its block writes then, so that every
 * writer of a call writes the same contents (as inline_checks.cuh). */
static __device__ void la_record_slot_fault(la_cuda_error_record_t *rec, const la_slots_t *q, int64_t s) {
    int64_t slot = 0, other = 0, x, y;
    const int kind = la_slot_fault(q, s, &slot, &other);
    if (kind == LA_SLOT_OK) return;
    for (int64_t j = 0; j < s; j++)
        if (la_slot_fault(q, j, &x, &y) != LA_SLOT_OK) return;
    if (rec->status) return; /* an earlier error is still unreported */
    rec->tensor = LA_T_POOL;
    rec->index = s;
    rec->value = (double)slot;
    rec->dims[0] = kind;
    rec->dims[1] = other;
    rec->dims[2] = rec->dims[3] = 0;
    __threadfence_system();
    rec->status = LA_STATUS_BAD_SLOT;
}

#endif
