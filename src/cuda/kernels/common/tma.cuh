/*
 * tma.cuh - the tensor memory accelerator (TMA, sm_90) as the Hopper kernels
 * use it: [64 tokens][64 columns] boxes of a [B, H, N, X] token tensor into
 * 128-byte swizzled shared memory (16-byte piece j of row r at piece
 * j ^ (r % 8); a tile starts on 1024 bytes), completing on an mbarrier, and
 * the wgmma descriptors that read such tiles.  The maps come from
 * tma_map.cu.
 */
#ifndef LA_CUDA_TMA_CUH
#define LA_CUDA_TMA_CUH

#include "wgmma.cuh"

#include <cuda.h>

/* Shared-memory descriptor of a 128-byte swizzled operand (layout type 1);
 * SBO: bytes between 8-row groups. */
__device__ __forceinline__ uint64_t wg_desc_sw128(uint32_t saddr, uint32_t lbo, uint32_t sbo) {
    return wg_desc(saddr, lbo, sbo) | (1ull << 62);
}

/* Byte offset of element (r, c) of a [64][64] 16-bit swizzled tile. */
__device__ __forceinline__ uint32_t sw128_off(int r, int c) {
    return (uint32_t)(r * 128 + ((((c >> 3) ^ (r & 7))) << 4) + (c & 7) * 2);
}

__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}

/* One [64 rows][64 columns] box of a [B, H, N, X] tensor at (column, token,
 * head, batch row) into shared memory, completing on an mbarrier. */
__device__ __forceinline__ void tma_load_box(uint32_t sdst, const CUtensorMap *map, int col, int tok, int h, int b,
                                             uint32_t bar) {
    asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%2, %3, %4, %5}], [%6];\n" ::"r"(sdst),
                 "l"(reinterpret_cast<uint64_t>(map)), "r"(col), "r"(tok), "r"(h), "r"(b), "r"(bar)
                 : "memory");
}

#endif
