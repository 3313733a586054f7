/* bwd_f32.cu - the backward kernels for f32 inputs (split into bf16 planes,
 * op_of in mma.cuh): one 64 x 64 configuration; the host plans larger head
 * dims as 64 x 64 tiles (cuda_backend.cu, bwd_tiles). */
#include "bwd_launch.cuh"

la_status_t la_cuda_bwd_f32(const la_bwd_params_t *b, int DP, int EP, int total, cudaStream_t s, cudaEvent_t join,
                            const la_bwd_wg_t *wg, char *msg) {
    if (DP != 64 || EP != 64) {
        snprintf(msg, LA_MSG_LEN, "internal: the f32 backward runs 64 x 64 tiles (got %d x %d)", DP, EP);
        return LA_STATUS_INTERNAL_ERROR;
    }
    return bwd_run<float, 64, 64>(b, total, s, join, wg, msg);
}
