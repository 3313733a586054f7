/* fwd_f16.cu - forward kernels instantiated for f16 inputs. */
#include "fwd_launch.cuh"

la_status_t la_cuda_fwd_f16(const la_fwd_params_t *p, const la_fwd_launch_t *l, cudaStream_t s, char *msg) {
    return la_fwd_dispatch<__half>(p, l, s, msg);
}
