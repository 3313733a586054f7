/* value_checks.h - checks of argument VALUES that live in device memory (log
 * decays, device cu_seqlens), the per-handle state they report through, and
 * the packed-batch tables (kernels/checks/value_checks.cu).
 *
 * No check waits for the GPU unless the handle asks for it
 * (LA_CHECK_VALUES_SYNC): the kernels record the first bad element of a
 * call in the handle's error record, which lives in pinned, mapped host
 * memory; the host reads it on the handle's next call (no synchronisation)
 * or in la_check_errors (after synchronising). */
#ifndef LA_CUDA_VALUE_CHECKS_H
#define LA_CUDA_VALUE_CHECKS_H

#include "internal.h"
#include "error_record.h"
#include "slot_checks.cuh"
#include <cuda_runtime.h>

typedef struct la_cuda_state {
    la_cuda_error_record_t *rec;     /* host address (pinned, mapped) */
    la_cuda_error_record_t *rec_dev; /* its device address */
    unsigned long long *scratch;     /* device: [0] the least bad index (~0: none), [1] blocks finished */
    /* Host cu_seqlens and their tables go through this pinned buffer, so the
     * copy needs no wait; `staged` marks the end of the latest copy out of it. */
    void *staging;
    size_t staging_bytes;
    cudaEvent_t staged;
    int staged_pending;
} la_cuda_state_t;

la_status_t la_cuda_state_create(void **state);
void la_cuda_state_destroy(void *state);
/* The recorded error (cleared once returned), or LA_STATUS_SUCCESS;
 * wait: synchronise the stream first. */
la_status_t la_cuda_take_error(void *state, void *stream, int wait, char *msg);

/* Enqueue the checks of the plan's device log decays (ld, and ldv for
 * VECTOR_KV) that the kernels do not make themselves; with
 * LA_CHECK_VALUES_SYNC wait for them and return their error, so that the
 * call writes nothing. */
la_status_t la_cuda_check_decays(const la_plan_t *pl, cudaStream_t stream, char *msg);

/* The record the kernels check per-head log decays into as they read them
 * (inline_checks.cuh), or NULL when la_cuda_check_decays checks them first:
 * set for SCALAR_HEAD in the deferred mode, where nothing waits for the check
 * and it costs no launch of its own. */
la_cuda_error_record_t *la_cuda_inline_check(const la_plan_t *pl);

/* A state pool's slots (slot_checks.cuh): a kernel records the least
 * sequence at fault (LA_STATUS_BAD_SLOT); with LA_CHECK_VALUES_SYNC the call
 * waits for it and returns the error, having written nothing; OFF checks
 * nothing.  la_cuda_slot_record: the record a kernel that reads the slots
 * anyway checks them into itself (the deferred mode), else NULL. */
la_status_t la_cuda_check_slots(const la_plan_t *pl, const la_slots_t *slots, cudaStream_t stream, char *msg);
la_cuda_error_record_t *la_cuda_slot_record(const la_plan_t *pl);

/* The packed-batch tables in the workspace: the offsets (a checked and, where
 * invalid, clamped copy of device cu_seqlens, or a copy of host ones), each
 * sequence's first segment of seg_len tokens and first chunk. */
typedef struct la_cuda_packed_tables {
    int64_t *cu;
    int *seg_off, *chunk_off;
} la_cuda_packed_tables_t;
la_status_t la_cuda_packed_tables(const la_plan_t *pl, int64_t seg_len, const la_cuda_packed_tables_t *dst,
                                  cudaStream_t stream, char *msg);

#endif
