/* cuda_check.h - checks of argument VALUES that live in device memory. */
#ifndef LA_CUDA_CHECK_H
#define LA_CUDA_CHECK_H

#include "internal.h"
#include <cuda_runtime.h>

/* Every log decay the plan reads (ld, ldv) must lie in [LA_MIN_LOG_DECAY, 0]
 * and not be NaN.  Runs one small kernel and copies one int back, so it
 * synchronises the stream.  Returns LA_STATUS_BAD_DECAY with the first
 * offending index in msg. */
la_status_t la_cuda_check_decays(const la_plan_t *pl, int *dflag, cudaStream_t stream, char *msg);

#endif
