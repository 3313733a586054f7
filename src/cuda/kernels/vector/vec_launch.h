/* vec_launch.h - the vector-decay kernel's launcher (vec_fwd.cu). */
#ifndef LA_CUDA_VEC_LAUNCH_H
#define LA_CUDA_VEC_LAUNCH_H

#include "internal.h"
#include "vec_params.h"

#include <cuda_runtime.h>

/* One run of the recurrence: one block per (sequence, head, value slice).
 * The tensor-core kernel (vec_mma_kernel.cuh) where it applies: bf16 or f16
 * inputs, rows D <= 128, and its shared memory within mma_smem bytes (0:
 * never); else the fp32 kernel (vec_fwd_kernel.cuh). */
la_status_t la_cuda_vec_fwd(const la_vec_params_t *p, la_dtype_t dtype, int64_t num_seqs, int mma_smem,
                            cudaStream_t stream, char *msg);

/* Whether a run of row dim D in dtype takes the tensor-core kernel (split:
 * its outputs feed a decay gradient, vec_params.h's term). */
int la_cuda_vec_uses_mma(int D, int split, la_dtype_t dtype, int mma_smem);

/* The tensor-core kernel alone (bf16 or f16, D <= 128), with blocks of 128
 * value columns where E needs them, mma_smem allows and the grid covers at
 * least half of p->sms, else 64. */
cudaError_t la_cuda_vec_mma(const la_vec_params_t *p, la_dtype_t dtype, int64_t num_seqs, int mma_smem,
                            cudaStream_t stream);

/* The fold of a sequence split (vec_fold.cuh), in the walk's order. */
cudaError_t la_cuda_vec_fold(float *seg_state, const float *seg_tot_k, const float *seg_tot_v, la_st_t s0, la_st_t sN,
                             int nseg, int H, int D, int E, int reverse, int64_t num_seqs, cudaStream_t stream);

/* A split reverse walk's running sums: each segment's offset from seg_sum (in place) and the
 * final state's share (fin_a . fin_b over R rows), added to its terms (f32, strides term_s). */
cudaError_t la_cuda_vec_sums(double *seg_sum, la_st_t fin_a, la_st_t fin_b, float *term, const int64_t *term_s,
                             int nseg, int64_t seg_len, int H, int R, int C, int64_t seqlen, int64_t num_seqs,
                             cudaStream_t stream);

#endif
