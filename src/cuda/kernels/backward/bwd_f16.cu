/* bwd_f16.cu - the backward kernels for f16 inputs. */
#include "bwd_launch.cuh"

la_status_t la_cuda_bwd_f16(const la_bwd_params_t *b, const la_bwd_launch_t *l, cudaStream_t s, cudaEvent_t join,
                            char *msg) {
    return bwd_dims<__half>(b, l, s, join, msg);
}
