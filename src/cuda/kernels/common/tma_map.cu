/*
 * tma_map.cu - TMA maps of token tensors (tma_map.h), for the Hopper state
 * pass and backward.  Built into the sm_90a object.
 */
#include "tma_map.h"

#include <cudaTypedefs.h>
#include <cuda_runtime.h>

/* cuTensorMapEncodeTiled from the driver, found once through the runtime
 * (no link against libcuda); NULL where the driver lacks it. */
static PFN_cuTensorMapEncodeTiled_v12000 encode_tiled(void) {
    static PFN_cuTensorMapEncodeTiled_v12000 fn = NULL;
    static int looked = 0;
    if (!looked) {
        void *f = NULL;
        cudaDriverEntryPointQueryResult q;
#if CUDART_VERSION >= 12050
        const cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q);
#else
        const cudaError_t e = cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &f, cudaEnableDefault, &q);
#endif
        if (e == cudaSuccess && q == cudaDriverEntryPointSuccess)
            fn = (PFN_cuTensorMapEncodeTiled_v12000)f;
        looked = 1;
    }
    return fn;
}

int la_tma_available(void) { return encode_tiled() != NULL; }

/* Mirrors la_tma_tok_ok: the plan asks that, this encodes. */
int la_tma_tok_map(CUtensorMap *m, const la_tok_t &x, int bf16, int64_t B, int64_t H, int64_t tokens, int64_t X) {
    PFN_cuTensorMapEncodeTiled_v12000 enc = encode_tiled();
    if (!enc) return 0;
    const cuuint64_t dims[4] = {(cuuint64_t)X, (cuuint64_t)tokens, (cuuint64_t)H, (cuuint64_t)B};
    /* Byte strides of dims 1..3; a dim of size 1 gets any valid stride (the
     * API sets the caller's stride of such a dim to 0, which TMA refuses). */
    const int64_t st[3] = {tokens > 1 ? x.st * 2 : 16, H > 1 ? x.sh * 2 : 16, B > 1 ? x.sb * 2 : 16};
    cuuint64_t strides[3];
    for (int i = 0; i < 3; i++) {
        if (st[i] <= 0 || st[i] % 16 || st[i] >= ((int64_t)1 << 40)) return 0;
        if ((uintptr_t)x.ptr % 16) return 0;
        strides[i] = (cuuint64_t)st[i];
    }
    const cuuint32_t box[4] = {64, LA_CUDA_CHUNK, 1, 1}, estr[4] = {1, 1, 1, 1};
    return enc(m, bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 4, const_cast<void *>(x.ptr),
               dims, strides, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
               CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}
