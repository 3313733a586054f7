/* decode.cu - host launcher of decode (see decode_kernel.cuh): one instance
 * per I/O dtype, state storage (f32, bf16 pools) and token capacity. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "decode.h"
#include "decode_kernel.cuh"
#include "smem_opt_in.h"

#include <stdio.h>

template <typename T, typename SV, int TM>
static cudaError_t launch(const la_decode_params_t *p, int blocks, cudaStream_t stream) {
    const int threads = p->E <= 64 ? 64 : (p->E <= 128 ? 128 : 256);
    const int smem = LA_DECODE_SMEM(TM, p->D);
    if (smem > 48 * 1024) {
        const cudaError_t e = la_cuda_opt_in_smem((const void *)la_decode_kernel<T, SV, TM>, smem);
        if (e != cudaSuccess) return e;
    }
    la_decode_kernel<T, SV, TM><<<blocks, threads, smem, stream>>>(*p);
    return cudaGetLastError();
}

/* The smallest token capacity that holds T. */
template <typename T, typename SV>
static cudaError_t launch_t(const la_decode_params_t *p, int blocks, cudaStream_t stream) {
    if (p->T <= 1) return launch<T, SV, 1>(p, blocks, stream);
    if (p->T <= 4) return launch<T, SV, 4>(p, blocks, stream);
    return launch<T, SV, LA_CUDA_DECODE_MAX_T>(p, blocks, stream);
}

template <typename T>
static cudaError_t launch_state(const la_decode_params_t *p, la_dtype_t state, int blocks, cudaStream_t stream) {
    if (state == LA_DTYPE_BF16) return launch_t<T, __nv_bfloat16>(p, blocks, stream);
    return launch_t<T, float>(p, blocks, stream);
}

la_status_t la_cuda_decode(const la_decode_params_t *p, la_dtype_t io, la_dtype_t state, int blocks,
                           cudaStream_t stream, char *msg) {
    if (p->T < 1 || p->T > LA_CUDA_DECODE_MAX_T) {
        snprintf(msg, LA_MSG_LEN, "decode launcher given T = %d (1..%d)", p->T, LA_CUDA_DECODE_MAX_T);
        return LA_STATUS_INTERNAL_ERROR;
    }
    cudaError_t err;
    switch (io) {
    case LA_DTYPE_BF16: err = launch_state<__nv_bfloat16>(p, state, blocks, stream); break;
    case LA_DTYPE_F16: err = launch_state<__half>(p, state, blocks, stream); break;
    default: err = launch_state<float>(p, state, blocks, stream); break;
    }
    if (err != cudaSuccess) {
        snprintf(msg, LA_MSG_LEN, "decode launch failed: %s", cudaGetErrorString(err));
        return LA_STATUS_EXECUTION_FAILED;
    }
    return LA_STATUS_SUCCESS;
}
