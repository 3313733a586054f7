/* bwd_f32.cu - the backward kernels for f32 inputs (split into bf16 planes,
 * op_of in mma.cuh): one 64 x 64 configuration; the host plans larger head
 * dims as 64 x 64 tiles (host/plan.cu, bwd_tiles). */
#include "bwd_launch.cuh"

la_status_t la_cuda_bwd_f32(const la_bwd_params_t *b, const la_bwd_launch_t *l, cudaStream_t s, cudaEvent_t join,
                            char *msg) {
    if (l->DP != 64 || l->EP != 64) {
        snprintf(msg, LA_MSG_LEN, "internal: the f32 backward runs 64 x 64 tiles (got %d x %d)", l->DP, l->EP);
        return LA_STATUS_INTERNAL_ERROR;
    }
    return bwd_run<float, 64, 64>(b, l, s, join, msg);
}
