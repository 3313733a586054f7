/* cuda_check.cu - value checks on device tensors (see cuda_check.h). */
#include "cuda_check.h"
#include "api/validate.h"

#include <stdio.h>

__global__ void la_check_decay_kernel(const float *ld, int64_t n0, int64_t n1, int64_t n2, int64_t n3, int64_t s0,
                                      int64_t s1, int64_t s2, int64_t s3, float lo, unsigned long long *flag) {
    int64_t total = n0 * n1 * n2 * n3;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t a = i / (n1 * n2 * n3), b = (i / (n2 * n3)) % n1, c = (i / n3) % n2, d = i % n3;
        float v = ld[a * s0 + b * s1 + c * s2 + d * s3];
        if (!(v <= 0.0f) || v < lo) atomicMin(flag, (unsigned long long)i);
    }
}

static la_status_t check_one(const la_plan_t *pl, la_tensor_id_t id, unsigned long long *dflag, cudaStream_t stream,
                             char *msg) {
    const la_tensor_t *t = la_tensor_by_id((la_tensors_t *)&pl->t, id);
    if (!t->data) return LA_STATUS_SUCCESS;
    int64_t n[4];
    la_tensor_dims(pl, id, n);
    int64_t total = n[0] * n[1] * n[2] * n[3];
    if (total == 0) return LA_STATUS_SUCCESS;
    unsigned long long init = ~0ull, bad = 0;
    cudaError_t err = cudaMemcpyAsync(dflag, &init, sizeof init, cudaMemcpyHostToDevice, stream);
    int blocks = (int)((total + 255) / 256 < 1024 ? (total + 255) / 256 : 1024);
    if (err == cudaSuccess) {
        la_check_decay_kernel<<<blocks, 256, 0, stream>>>((const float *)t->data, n[0], n[1], n[2], n[3],
                                                          t->stride[0], t->stride[1], t->stride[2], t->stride[3],
                                                          LA_MIN_LOG_DECAY, dflag);
        err = cudaGetLastError();
    }
    if (err == cudaSuccess) err = cudaMemcpyAsync(&bad, dflag, sizeof bad, cudaMemcpyDeviceToHost, stream);
    if (err == cudaSuccess) err = cudaStreamSynchronize(stream);
    if (err != cudaSuccess) {
        snprintf(msg, LA_MSG_LEN, "checking %s on the device failed: %s", la_tensor_name(id), cudaGetErrorString(err));
        return LA_STATUS_EXECUTION_FAILED;
    }
    if (bad != ~0ull) {
        int64_t i = (int64_t)bad;
        snprintf(msg, LA_MSG_LEN, "%s[%lld,%lld,%lld,%lld]: log decays must be finite and lie in [%g, 0]",
                 la_tensor_name(id), (long long)(i / (n[1] * n[2] * n[3])), (long long)((i / (n[2] * n[3])) % n[1]),
                 (long long)((i / n[3]) % n[2]), (long long)(i % n[3]), (double)LA_MIN_LOG_DECAY);
        return LA_STATUS_BAD_DECAY;
    }
    return LA_STATUS_SUCCESS;
}

la_status_t la_cuda_check_decays(const la_plan_t *pl, int *dflag, cudaStream_t stream, char *msg) {
    unsigned long long *f = (unsigned long long *)dflag;
    la_status_t st = LA_STATUS_SUCCESS;
    if (pl->p.decay != LA_DECAY_NONE) st = check_one(pl, LA_T_LD, f, stream, msg);
    if (!st && pl->p.decay == LA_DECAY_VECTOR_KV) st = check_one(pl, LA_T_LDV, f, stream, msg);
    return st;
}
