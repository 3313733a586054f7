/* limits.h - what the CUDA backend's plan knows of the device: SMs, compute
 * capability, shared memory per block and per SM, TMA.  Read from the
 * driver once per device and process; the policy's smem_kb then lowers the
 * shared-memory figures, so a large GPU plans as a smaller one would (with
 * 99, an H200 picks sm_120's tiles, stages and kernels). */
#ifndef LA_CUDA_LIMITS_H
#define LA_CUDA_LIMITS_H

#include "internal.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct la_cuda_limits {
    int device;
    int sms;
    int cc_major, cc_minor;
    int smem_optin;  /* the most dynamic shared memory one block may opt in to */
    int smem_per_sm; /* shared memory of one SM */
    int tma;         /* TMA maps can be encoded (an sm_90a build and a driver with the encoder) */
    int smem_capped; /* the policy lowered the shared-memory figures */
} la_cuda_limits_t;

/* The current device's limits under the policy; LA_STATUS_EXECUTION_FAILED
 * with a message when the device cannot be queried. */
la_status_t la_cuda_limits(const la_policy_t *policy, la_cuda_limits_t *out, char *msg);

#ifdef __cplusplus
}
#endif

#endif
