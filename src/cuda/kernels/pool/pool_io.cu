/* pool_io.cu - pool <-> dense state copies and the padding sequences'
 * zero outputs (pool_io.h).  One block per (sequence, head); the copies are
 * coalesced along the dense side. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "pool_io.h"

#include <stdio.h>

template <typename SV>
__global__ void la_pool_gather_kernel(const la_pool_io_t p) {
    const int64_t s = blockIdx.x / p.H, h = blockIdx.x % p.H, DE = p.D * p.E;
    float *dst = p.dense + (s * p.H + h) * DE;
    int64_t from = la_slot_padding(&p.slots, s) || !la_slot_reads(&p.slots, s) ? -1 : la_slot_from(&p.slots, s);
    if (from >= p.slots.num_slots) from = -1;
    const SV *src = from >= 0 ? static_cast<const SV *>(p.pool) + from * p.ss + h * p.sh : nullptr;
    for (int64_t i = threadIdx.x; i < DE; i += blockDim.x) {
        const int64_t d = i / p.E, e = i % p.E;
        dst[i] = src ? float(src[d * p.sd + e * p.se]) : 0.0f;
    }
}

template <typename SV>
__global__ void la_pool_scatter_kernel(const la_pool_io_t p) {
    const int64_t s = blockIdx.x / p.H, h = blockIdx.x % p.H, DE = p.D * p.E;
    if (la_slot_padding(&p.slots, s)) return;
    const int64_t to = la_slot_final(&p.slots, s);
    if (to < 0 || to >= p.slots.num_slots) return;
    const float *src = p.dense + (s * p.H + h) * DE;
    SV *dst = static_cast<SV *>(p.pool) + to * p.ss + h * p.sh;
    for (int64_t i = threadIdx.x; i < DE; i += blockDim.x) {
        const int64_t d = i / p.E, e = i % p.E;
        dst[d * p.sd + e * p.se] = SV(src[i]);
    }
}

template <typename T>
__global__ void la_zero_padding_kernel(const la_slots_t q, la_tok_t o, int64_t H, int64_t N, int64_t E, const int64_t *cu) {
    const int64_t s = blockIdx.x / H, h = blockIdx.x % H;
    if (!la_slot_padding(&q, s)) return;
    const int64_t row = cu ? 0 : s, t0 = cu ? cu[s] : 0, t1 = cu ? cu[s + 1] : N;
    T *out = static_cast<T *>(const_cast<void *>(o.ptr)) + row * o.sb + h * o.sh;
    for (int64_t i = threadIdx.x; i < (t1 - t0) * E; i += blockDim.x)
        out[(t0 + i / E) * o.st + (i % E) * o.sc] = T(0.0f);
}

static la_status_t launched(const char *what, char *msg) {
    const cudaError_t err = cudaGetLastError();
    if (err == cudaSuccess) return LA_STATUS_SUCCESS;
    snprintf(msg, LA_MSG_LEN, "%s launch failed: %s", what, cudaGetErrorString(err));
    return LA_STATUS_EXECUTION_FAILED;
}

la_status_t la_cuda_pool_gather(const la_pool_io_t *p, cudaStream_t stream, char *msg) {
    const int blocks = (int)(p->slots.S * p->H);
    if (blocks == 0) return LA_STATUS_SUCCESS;
    if (p->bf16) la_pool_gather_kernel<__nv_bfloat16><<<blocks, 256, 0, stream>>>(*p);
    else la_pool_gather_kernel<float><<<blocks, 256, 0, stream>>>(*p);
    return launched("pool gather", msg);
}

la_status_t la_cuda_pool_scatter(const la_pool_io_t *p, cudaStream_t stream, char *msg) {
    const int blocks = (int)(p->slots.S * p->H);
    if (blocks == 0) return LA_STATUS_SUCCESS;
    if (p->bf16) la_pool_scatter_kernel<__nv_bfloat16><<<blocks, 256, 0, stream>>>(*p);
    else la_pool_scatter_kernel<float><<<blocks, 256, 0, stream>>>(*p);
    return launched("pool scatter", msg);
}

la_status_t la_cuda_zero_padding(const la_slots_t *slots, la_tok_t o, la_dtype_t dtype, int64_t H, int64_t N,
                                 int64_t E, const int64_t *cu, cudaStream_t stream, char *msg) {
    const int blocks = (int)(slots->S * H);
    if (blocks == 0 || !o.ptr) return LA_STATUS_SUCCESS;
    switch (dtype) {
    case LA_DTYPE_BF16: la_zero_padding_kernel<__nv_bfloat16><<<blocks, 256, 0, stream>>>(*slots, o, H, N, E, cu); break;
    case LA_DTYPE_F16: la_zero_padding_kernel<__half><<<blocks, 256, 0, stream>>>(*slots, o, H, N, E, cu); break;
    default: la_zero_padding_kernel<float><<<blocks, 256, 0, stream>>>(*slots, o, H, N, E, cu); break;
    }
    return launched("padding zeros", msg);
}
