/* decode.h - the decode launcher (decode.cu; the kernel: decode_kernel.cuh). */
#ifndef LA_CUDA_DECODE_H
#define LA_CUDA_DECODE_H

#include "internal.h"
#include "decode_params.h"
#include <cuda_runtime.h>

/* Launch decode over blocks = sequences x heads; io: q, k, v, o's dtype;
 * state: the pool's (LA_DTYPE_F32 for dense states).  p->T <= LA_CUDA_DECODE_MAX_T. */
la_status_t la_cuda_decode(const la_decode_params_t *p, la_dtype_t io, la_dtype_t state, int blocks,
                           cudaStream_t stream, char *msg);

#endif
