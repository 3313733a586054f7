/* smem_attr.h - a kernel's dynamic shared-memory limit, set once per
 * (kernel, device) instead of before every launch (host/limits.cu): on a
 * virtualised host each driver call costs microseconds of a small call's
 * budget. */
#ifndef LA_CUDA_SMEM_ATTR_H
#define LA_CUDA_SMEM_ATTR_H

#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

/* cudaFuncSetAttribute(kernel, MaxDynamicSharedMemorySize, bytes) unless this
 * kernel already allows at least bytes on the current device. */
cudaError_t la_cuda_smem_attr(const void *kernel, int bytes);

#ifdef __cplusplus
}
#endif

#endif
