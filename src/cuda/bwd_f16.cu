/* bwd_f16.cu - the backward kernels for f16 inputs. */
#include "bwd_launch.cuh"

la_status_t la_cuda_bwd_f16(const la_bwd_params_t *b, int DP, int EP, int total, cudaStream_t s, cudaEvent_t join,
                            const la_bwd_wg_t *wg, char *msg) {
    return bwd_dims<__half>(b, DP, EP, total, s, join, wg, msg);
}
