/* bwd_bf16.cu - the backward kernels for bf16 inputs. */
#include "bwd_launch.cuh"

la_status_t la_cuda_bwd_bf16(const la_bwd_params_t *b, const la_bwd_launch_t *l, cudaStream_t s, cudaEvent_t join,
                            char *msg) {
    return bwd_dims<__nv_bfloat16>(b, l, s, join, msg);
}
