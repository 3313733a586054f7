/* vec_launch.h - the vector-decay kernel's launcher (vec_fwd.cu). */
#ifndef LA_CUDA_VEC_LAUNCH_H
#define LA_CUDA_VEC_LAUNCH_H

#include "internal.h"
#include "vec_params.h"

#include <cuda_runtime.h>

/* One block per (sequence, head, value slice); p->gv NULL: VECTOR_K. */
la_status_t la_cuda_vec_fwd(const la_vec_params_t *p, la_dtype_t dtype, int64_t num_seqs, cudaStream_t stream,
                            char *msg);

#endif
