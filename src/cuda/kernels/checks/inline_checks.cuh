/* inline_checks.cuh - the log-decay check made by the kernels that read the
 * decays anyway, instead of by a check kernel of its own: one launch fewer
 * per call (a few microseconds of host time, which small calls are bound by).
 *
 * Used for per-head decays (SCALAR_HEAD, H values) in the deferred mode
 * (value_checks.cu, la_cuda_inline_check).  Every block of every kernel that
 * reads a bad ld[h] writes the record only when h is the least bad head
 * (it looks at the heads below h, on this rare path only), so all writers of
 * a call write the same contents: they need no claim or atomic, and the
 * record names the element the check kernel would have named. */
#ifndef LA_CUDA_INLINE_CHECKS_CUH
#define LA_CUDA_INLINE_CHECKS_CUH

#include "lightning_attn.h"
#include "api/validate.h"
#include "error_record.h"
#include "internal.h"

#include <stdint.h>

static __device__ __forceinline__ bool la_bad_log_decay(float v) { return !(v <= 0.0f) || v < LA_MIN_LOG_DECAY; }

static __device__ __forceinline__ void la_record_bad_head_decay(la_cuda_error_record_t *rec, const float *ld, int64_t sh, int H,
                                                      int h, float v) {
    for (int j = 0; j < h; j++)
        if (la_bad_log_decay(ld[j * sh])) return; /* the block of head j writes */
    if (rec->status) return;                      /* an earlier error is still unreported */
    rec->tensor = LA_T_LD;
    rec->index = h;
    rec->value = v;
    rec->dims[0] = 1;
    rec->dims[1] = H;
    rec->dims[2] = 1;
    rec->dims[3] = 1;
    __threadfence_system();
    rec->status = LA_STATUS_BAD_DECAY;
}

/* ld[h] of a per-head decay, checked when rec is set. */
static __device__ __forceinline__ float la_head_log_decay(const float *ld, int64_t sh, int H, int h,
                                                   la_cuda_error_record_t *rec) {
    const float v = ld[h * sh];
    if (rec && la_bad_log_decay(v)) la_record_bad_head_decay(rec, ld, sh, H, h, v);
    return v;
}

#endif
