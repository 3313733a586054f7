/* limits.cu - the device's limits, queried once per device (limits.h). */
#include "limits.h"
#include "tma_map.h"

#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

#define LA_CUDA_MAX_DEVICES 64

/* Filled once per device; a plan then costs no driver query.  Concurrent
 * first calls on two threads both query and store the same values. */
static la_cuda_limits_t cached[LA_CUDA_MAX_DEVICES];
static int cached_ok[LA_CUDA_MAX_DEVICES];

static la_status_t query(int dev, la_cuda_limits_t *l, char *msg) {
    memset(l, 0, sizeof *l);
    l->device = dev;
    cudaError_t e = cudaDeviceGetAttribute(&l->sms, cudaDevAttrMultiProcessorCount, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&l->cc_major, cudaDevAttrComputeCapabilityMajor, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&l->cc_minor, cudaDevAttrComputeCapabilityMinor, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&l->smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&l->smem_per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev);
    if (e != cudaSuccess) {
        snprintf(msg, LA_MSG_LEN, "querying CUDA device %d failed: %s", dev, cudaGetErrorString(e));
        return LA_STATUS_EXECUTION_FAILED;
    }
#ifdef LA_HAVE_SM90A
    l->tma = la_tma_available();
#endif
    return LA_STATUS_SUCCESS;
}

la_status_t la_cuda_limits(const la_policy_t *policy, la_cuda_limits_t *out, char *msg) {
    int dev = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e != cudaSuccess) {
        snprintf(msg, LA_MSG_LEN, "cudaGetDevice failed: %s", cudaGetErrorString(e));
        return LA_STATUS_EXECUTION_FAILED;
    }
    if (dev >= 0 && dev < LA_CUDA_MAX_DEVICES && __atomic_load_n(&cached_ok[dev], __ATOMIC_ACQUIRE)) {
        *out = cached[dev];
    } else {
        la_status_t st = query(dev, out, msg);
        if (st) return st;
        if (dev >= 0 && dev < LA_CUDA_MAX_DEVICES) {
            cached[dev] = *out;
            __atomic_store_n(&cached_ok[dev], 1, __ATOMIC_RELEASE);
        }
    }
    /* The policy's cap: n KB per block and n + 1 KB per SM (sm_120: 99 and 100). */
    const int cap = policy && policy->smem_kb > 0 ? policy->smem_kb * 1024 : 0;
    if (cap && cap < out->smem_optin) {
        out->smem_optin = cap;
        out->smem_capped = 1;
    }
    if (cap && cap + 1024 < out->smem_per_sm) {
        out->smem_per_sm = cap + 1024;
        out->smem_capped = 1;
    }
    return LA_STATUS_SUCCESS;
}
