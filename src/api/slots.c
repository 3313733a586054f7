/*
 * slots.c - the host check of a state pool's slot values.
 *
 * Slot indices are data, so they are checked where they live: here for host
 * arrays (the CPU backend calls this before it writes anything), by a device
 * kernel for device arrays.  What is refused (LA_STATUS_BAD_SLOT):
 *   - a slot outside [0, num_slots) that the call would read or write
 *     (negative values mean padding / no write, see lightning_attn.h);
 *   - num_accepted outside [0, T];
 *   - a slot written twice in one call (two sequences, or two tokens);
 *   - a slot one sequence reads and another writes: the result would
 *     depend on the order the sequences run in.
 * A sequence may read the slot it writes: it reads before it writes.
 * Duplicates are found by sorting the writes in the caller's scratch, so the
 * check costs O(W log W) for W writes, whatever the pool's size.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct slot_write {
    int64_t slot, seq;
} slot_write_t;

/* Writes a call can make: one final state a sequence, or one state a token
 * in a decode (the bound for a decode with or without token slots, so that a
 * workspace query knowing only the problem covers both). */
static int64_t max_writes(const la_plan_t *pl) { return pl->num_seqs * (pl->op == LA_OP_DECODE ? pl->p.seqlen : 1); }

size_t la_slot_check_bytes(const la_plan_t *pl) {
    if (!pl->has_pool) return 0;
    return la_size_mul((size_t)max_writes(pl), sizeof(slot_write_t));
}

static int by_slot(const void *a, const void *b) {
    const slot_write_t *x = (const slot_write_t *)a, *y = (const slot_write_t *)b;
    if (x->slot != y->slot) return x->slot < y->slot ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

#define FAIL(...)                               \
    do {                                        \
        snprintf(msg, LA_MSG_LEN, __VA_ARGS__); \
        return LA_STATUS_BAD_SLOT;              \
    } while (0)

la_status_t la_check_slots(const la_plan_t *pl, void *scratch, char *msg) {
    if (!pl->has_pool) return LA_STATUS_SUCCESS;
    const la_slots_t q = la_plan_slots(pl);
    const int64_t S = q.S, T = q.T, n_slots = q.num_slots;
    slot_write_t *w = (slot_write_t *)scratch;
    int64_t nw = 0;
    for (int64_t s = 0; s < S; s++) {
        const int64_t r = la_slot_at(q.read, q.idx64, s);
        if (r < 0) continue; /* padding: nothing else of it is read */
        if (r >= n_slots)
            FAIL("pool.read_slot[%lld] = %lld: outside [0, %lld)", (long long)s, (long long)r, (long long)n_slots);
        if (q.accepted) {
            const int64_t n = la_slot_at(q.accepted, q.idx64, s);
            if (n < 0 || n > T)
                FAIL("pool.num_accepted[%lld] = %lld: must lie in [0, T = %lld]", (long long)s, (long long)n,
                     (long long)T);
        }
        const int64_t from = la_slot_from(&q, s);
        if (la_slot_reads(&q, s) && (from < 0 || from >= n_slots)) /* only a token slot can be negative here */
            FAIL("sequence %lld starts from pool.token_slot[%lld, num_accepted - 1] = %lld: outside [0, %lld)",
                 (long long)s, (long long)s, (long long)from, (long long)n_slots);
        for (int64_t i = 0; i < la_slot_nwrites(&q); i++) {
            const int64_t to = la_slot_write_at(&q, s, i);
            if (to >= n_slots) {
                if (q.token)
                    FAIL("pool.token_slot[%lld, %lld] = %lld: outside [0, %lld)", (long long)s, (long long)i,
                         (long long)to, (long long)n_slots);
                FAIL("pool.%s[%lld] = %lld: outside [0, %lld)", q.write ? "write_slot" : "read_slot", (long long)s,
                     (long long)to, (long long)n_slots);
            }
            if (to >= 0) w[nw++] = (slot_write_t){to, s};
        }
    }
    qsort(w, (size_t)nw, sizeof *w, by_slot);
    for (int64_t i = 1; i < nw; i++)
        if (w[i].slot == w[i - 1].slot)
            FAIL("slot %lld is written twice in one call (by sequence %lld and by sequence %lld)", (long long)w[i].slot,
                 (long long)w[i - 1].seq, (long long)w[i].seq);
    for (int64_t s = 0; s < S; s++) {
        if (la_slot_padding(&q, s)) continue;
        const int64_t from = la_slot_from(&q, s);
        if (from < 0) continue;
        int64_t lo = 0, hi = nw; /* first write with slot >= from */
        while (lo < hi) {
            const int64_t mid = lo + (hi - lo) / 2;
            if (w[mid].slot < from) lo = mid + 1;
            else hi = mid;
        }
        if (lo < nw && w[lo].slot == from && w[lo].seq != s)
            FAIL("sequence %lld reads slot %lld, which sequence %lld writes in the same call", (long long)s,
                 (long long)from, (long long)w[lo].seq);
    }
    return LA_STATUS_SUCCESS;
}
