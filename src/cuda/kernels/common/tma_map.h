/* tma_map.h - TMA maps of token tensors for the Hopper kernels (tma_map.cu,
 * in the sm_90a object). */
#ifndef LA_CUDA_TMA_MAP_H
#define LA_CUDA_TMA_MAP_H

#include "kernel_params.h"

#include <cuda.h>
#include <stdint.h>

/* The [B, H, N, X] token tensor x (X columns, `tokens` rows per batch row)
 * as a map of [64 tokens][64 columns] boxes, 128-byte swizzled, zeros
 * outside; 0 where TMA cannot describe it (a stride that is not a multiple
 * of 16 bytes, an unaligned base) or the driver lacks the encoder. */
int la_tma_tok_map(CUtensorMap *m, const la_tok_t &x, int bf16, int64_t B, int64_t H, int64_t tokens, int64_t X);
/* The driver has the TMA map encoder (read once). */
int la_tma_available(void);

/* Whether la_tma_tok_map describes x (16-byte aligned base and strides, 32-bit
 * coordinates): host-only arithmetic, for the plan, in every build. */
static inline int la_tma_tok_ok(const void *ptr, int64_t sb, int64_t sh, int64_t st, int elem, int64_t B, int64_t H,
                                int64_t tokens) {
    if (tokens + 64 >= ((int64_t)1 << 31) || B >= ((int64_t)1 << 31)) return 0;
    if ((uintptr_t)ptr % 16) return 0;
    const int64_t s[3] = {tokens > 1 ? st * elem : 16, H > 1 ? sh * elem : 16, B > 1 ? sb * elem : 16};
    for (int i = 0; i < 3; i++)
        if (s[i] <= 0 || s[i] % 16 || s[i] >= ((int64_t)1 << 40)) return 0;
    return 1;
}

#endif
