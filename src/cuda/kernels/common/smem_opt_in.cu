/* smem_opt_in.cu - cudaFuncSetAttribute once per (kernel, device)
 * (smem_opt_in.h).  The attribute costs a driver call of its own, which
 * every launch used to make; small calls are bound by host time.
 *
 * The table remembers what was set in the device's primary context (the one
 * the runtime and PyTorch use).  A cudaDeviceReset drops that context's
 * attributes: the library does not support calls across one (nor does a
 * handle's device memory survive it). */
#include "smem_opt_in.h"

#include <pthread.h>

#define LA_OPT_IN_SLOTS 512 /* kernel instances times devices; past it, set on every launch */

typedef struct opt_in {
    const void *kernel;
    int device;
    int bytes;
} opt_in_t;

static opt_in_t slots[LA_OPT_IN_SLOTS];
static int used;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

cudaError_t la_cuda_opt_in_smem(const void *kernel, int bytes) {
    if (bytes <= 48 * 1024) return cudaSuccess; /* every kernel may take this much */
    int device = 0;
    cudaError_t e = cudaGetDevice(&device);
    if (e != cudaSuccess) return e;
    pthread_mutex_lock(&lock);
    opt_in_t *s = NULL;
    for (int i = 0; i < used; i++)
        if (slots[i].kernel == kernel && slots[i].device == device) {
            s = &slots[i];
            break;
        }
    if (!s || s->bytes < bytes) {
        e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
        if (e == cudaSuccess && !s && used < LA_OPT_IN_SLOTS) {
            s = &slots[used++];
            s->kernel = kernel;
            s->device = device;
            s->bytes = 0;
        }
        if (e == cudaSuccess && s) s->bytes = bytes;
    }
    pthread_mutex_unlock(&lock);
    return e;
}
