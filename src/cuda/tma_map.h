/* tma_map.h - TMA maps of token tensors for the Hopper kernels (tma_map.cu,
 * in the sm_90a object). */
#ifndef LA_CUDA_TMA_MAP_H
#define LA_CUDA_TMA_MAP_H

#include "kernel_params.h"

#include <cuda.h>

/* The [B, H, N, X] token tensor x (X columns, `tokens` rows per batch row)
 * as a map of [64 tokens][64 columns] boxes, 128-byte swizzled, zeros
 * outside; 0 where TMA cannot describe it (a stride that is not a multiple
 * of 16 bytes, an unaligned base) or the driver lacks the encoder. */
int la_tma_tok_map(CUtensorMap *m, const la_tok_t &x, int bf16, int64_t B, int64_t H, int64_t tokens, int64_t X);

#endif
