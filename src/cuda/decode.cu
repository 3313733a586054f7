/* decode.cu - host launcher of the decode step (see decode_kernel.cuh). */
#include "decode_kernel.cuh"
#include "cuda_check.h"

#include <stdio.h>

la_status_t la_cuda_decode(const la_plan_t *pl, int *dflag, cudaStream_t stream, char *msg) {
    if (pl->check_values) {
        la_status_t st = la_cuda_check_decays(pl, dflag, stream, msg);
        if (st) return st;
    }
    const la_tensors_t *t = &pl->t;
    la_decode_params_t p;
    memset(&p, 0, sizeof p);
    const la_tensor_t *tt[4] = {&t->q, &t->k, &t->v, &t->o};
    la_tok_t *pt[4] = {&p.q, &p.k, &p.v, &p.o};
    for (int i = 0; i < 4; i++) {
        pt[i]->ptr = tt[i]->data;
        pt[i]->sb = tt[i]->stride[0]; pt[i]->sh = tt[i]->stride[1]; pt[i]->st = tt[i]->stride[2]; pt[i]->sc = tt[i]->stride[3];
    }
    p.D = (int)pl->p.dim_qk; p.E = (int)pl->p.dim_v; p.H = (int)pl->p.heads; p.decay = (int)pl->p.decay;
    p.scale = pl->p.scale;
    p.ld = (const float *)t->ld.data;
    p.ld_sb = t->ld.stride[0]; p.ld_sh = t->ld.stride[1]; p.ld_sc = t->ld.stride[3];
    p.ldv = (const float *)t->ldv.data;
    p.ldv_sb = t->ldv.stride[0]; p.ldv_sh = t->ldv.stride[1]; p.ldv_sc = t->ldv.stride[3];
    p.s0.ptr = (float *)t->initial_state.data;
    p.s0.ss = t->initial_state.stride[0]; p.s0.sh = t->initial_state.stride[1];
    p.s0.sd = t->initial_state.stride[2]; p.s0.se = t->initial_state.stride[3];
    p.sN.ptr = (float *)t->final_state.data;
    p.sN.ss = t->final_state.stride[0]; p.sN.sh = t->final_state.stride[1];
    p.sN.sd = t->final_state.stride[2]; p.sN.se = t->final_state.stride[3];
    int threads = p.E <= 64 ? 64 : (p.E <= 128 ? 128 : 256);
    unsigned blocks = (unsigned)(pl->p.batch * pl->p.heads);
    switch (t->q.dtype) {
    case LA_DTYPE_BF16: la_decode_kernel<__nv_bfloat16><<<blocks, threads, 0, stream>>>(p); break;
    case LA_DTYPE_F16: la_decode_kernel<__half><<<blocks, threads, 0, stream>>>(p); break;
    default: la_decode_kernel<float><<<blocks, threads, 0, stream>>>(p); break;
    }
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) {
        snprintf(msg, LA_MSG_LEN, "decode launch failed: %s", cudaGetErrorString(err));
        return LA_STATUS_EXECUTION_FAILED;
    }
    return LA_STATUS_SUCCESS;
}
