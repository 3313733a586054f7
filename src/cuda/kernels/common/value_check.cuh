/*
 * value_check.cuh - the device value check fused into a kernel's prologue
 * (la_check_t, kernel_params.h): the log decays of a call checked by the
 * blocks of its first kernel, so a check costs no launch and no wait.
 */
#ifndef LA_CUDA_VALUE_CHECK_CUH
#define LA_CUDA_VALUE_CHECK_CUH

#include "kernel_params.h"
#include "lightning_attn.h"

/* Called first in a kernel, by every thread of every block (it has one
 * barrier).  Each block checks a share of the elements (in [-1e6, 0], not
 * NaN) and folds the bad indices into scratch[0]; the last block to finish
 * writes the least one to the handle's record (unless it holds an
 * unreported error) and resets the scratch for the next call. */
__device__ __forceinline__ void la_check_prologue(const la_check_t &c) {
    if (c.nt == 0) return;
    const long long nblocks = (long long)gridDim.x * gridDim.y * gridDim.z;
    const long long bid = blockIdx.x + (long long)gridDim.x * (blockIdx.y + (long long)gridDim.y * blockIdx.z);
    const int nthreads = blockDim.x * blockDim.y * blockDim.z;
    const int tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    long long base = 0; /* the tensors' elements, numbered one after the other */
    for (int k = 0; k < c.nt; k++) {
        const la_check_tensor_t &t = c.t[k];
        const long long total = t.n[0] * t.n[1] * t.n[2] * t.n[3];
        for (long long i = bid * nthreads + tid; i < total; i += nblocks * nthreads) {
            const long long a = i / (t.n[1] * t.n[2] * t.n[3]), b = (i / (t.n[2] * t.n[3])) % t.n[1];
            const long long d = (i / t.n[3]) % t.n[2], e = i % t.n[3];
            const float v = t.ptr[a * t.s[0] + b * t.s[1] + d * t.s[2] + e * t.s[3]];
            if (!(v <= 0.0f) || v < -1.0e6f) atomicMin(c.scratch, (unsigned long long)(base + i));
        }
        base += total;
    }
    __syncthreads();
    if (tid != 0) return;
    __threadfence();
    if (atomicAdd(c.scratch + 1, 1ull) != (unsigned long long)nblocks - 1) return;
    const unsigned long long bad = atomicExch(c.scratch, ~0ull);
    atomicExch(c.scratch + 1, 0ull);
    if (bad == ~0ull || c.rec->status) return;
    long long i = (long long)bad;
    int k = 0;
    while (k + 1 < c.nt && i >= c.t[k].n[0] * c.t[k].n[1] * c.t[k].n[2] * c.t[k].n[3]) {
        i -= c.t[k].n[0] * c.t[k].n[1] * c.t[k].n[2] * c.t[k].n[3];
        k++;
    }
    const la_check_tensor_t &t = c.t[k];
    const long long a = i / (t.n[1] * t.n[2] * t.n[3]), b = (i / (t.n[2] * t.n[3])) % t.n[1];
    const long long d = (i / t.n[3]) % t.n[2], e = i % t.n[3];
    c.rec->tensor = t.id;
    c.rec->index = i;
    c.rec->value = t.ptr[a * t.s[0] + b * t.s[1] + d * t.s[2] + e * t.s[3]];
    for (int j = 0; j < 4; j++) c.rec->dims[j] = t.n[j];
    __threadfence_system();
    c.rec->status = LA_STATUS_BAD_DECAY;
}

#endif
