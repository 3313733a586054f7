/* cuda_stub.c - the CUDA backend's entry when the library is built without
 * CUDA: no backend, so la_create(LA_BACKEND_CUDA) reports
 * LA_STATUS_BACKEND_UNAVAILABLE. */
#include "internal.h"

const la_backend_ops_t *const la_cuda_backend_ptr = NULL;
