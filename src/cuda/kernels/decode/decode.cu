/* decode.cu - host launcher of the decode step (see decode_kernel.cuh). */
#include "decode_kernel.cuh"

#include <stdio.h>

la_status_t la_cuda_decode(const la_decode_params_t *p, la_dtype_t dtype, int blocks, cudaStream_t stream, char *msg) {
    const int threads = p->E <= 64 ? 64 : (p->E <= 128 ? 128 : 256);
    switch (dtype) {
    case LA_DTYPE_BF16: la_decode_kernel<__nv_bfloat16><<<blocks, threads, 0, stream>>>(*p); break;
    case LA_DTYPE_F16: la_decode_kernel<__half><<<blocks, threads, 0, stream>>>(*p); break;
    default: la_decode_kernel<float><<<blocks, threads, 0, stream>>>(*p); break;
    }
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) {
        snprintf(msg, LA_MSG_LEN, "decode launch failed: %s", cudaGetErrorString(err));
        return LA_STATUS_EXECUTION_FAILED;
    }
    return LA_STATUS_SUCCESS;
}
