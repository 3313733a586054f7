/* fwd_bf16.cu - forward kernels instantiated for bf16 inputs. */
#include "fwd_launch.cuh"

la_status_t la_cuda_fwd_bf16(const la_fwd_params_t *p, const la_fwd_launch_t *l, cudaStream_t s, char *msg) {
    return la_fwd_dispatch<__nv_bfloat16>(p, l, s, msg);
}

int la_cuda_fwd_smem(int DP, int eslice, int elem, int stages, int state_only) {
    return fwd_smem_bytes(DP, eslice, elem, stages, state_only != 0);
}

int la_cuda_fwd_rows_smem(int stages) { return rows_smem_bytes(stages); }

int la_cuda_fwd_ws_smem(void) { return ws_smem_bytes(LA_WS_SLOTS); }
