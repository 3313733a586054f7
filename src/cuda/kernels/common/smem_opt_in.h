/* smem_opt_in.h - the dynamic shared memory a kernel may take above 48 KB,
 * asked of the driver once per (kernel, device) rather than before every
 * launch. */
#ifndef LA_CUDA_SMEM_OPT_IN_H
#define LA_CUDA_SMEM_OPT_IN_H

#include <cuda_runtime.h>

/* Make sure `kernel` may launch with `bytes` of dynamic shared memory on the
 * current device: cudaFuncSetAttribute the first time (or when more is
 * needed than was set), a table lookup after that.  Thread-safe. */
cudaError_t la_cuda_opt_in_smem(const void *kernel, int bytes);

#endif
