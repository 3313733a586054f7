/* fwd_f32.cu - forward kernels instantiated for f32 inputs (split into bf16
 * planes, op_of in mma.cuh): one 64 x 64 configuration; the host plans
 * larger head dims as 64 x 64 tiles (host/plan.cu, fwd_tiles). */
#include "fwd_launch.cuh"

la_status_t la_cuda_fwd_f32(const la_fwd_params_t *p, const la_fwd_launch_t *l, cudaStream_t s, char *msg) {
    if (l->DP != 64 || l->eslice != LA_CUDA_ESLICE_SMALL) {
        snprintf(msg, LA_MSG_LEN, "internal: the f32 forward runs 64 x 64 tiles (got DP %d, slice %d)", l->DP,
                 l->eslice);
        return LA_STATUS_INTERNAL_ERROR;
    }
    return la_fwd_run<float, 64, LA_CUDA_ESLICE_SMALL>(*p, *l, s, msg);
}
