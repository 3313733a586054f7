/*
 * wgmma.cuh - Hopper (sm_90a) warpgroup tensor-core wrappers: wgmma.mma_async
 * m64n64k16 with fp32 accumulators, A from shared memory or registers, B
 * from shared memory, and the fences and group waits around it.
 *
 * Shared-memory operands use the no-swizzle core-matrix layout: a tile of R
 * rows and C columns (16-bit elements) is cut into 8-row x 8-column core
 * matrices of 128 contiguous bytes (row r % 8 at 16 (r % 8)), core matrix
 * (r / 8, c / 8) at byte ((r / 8) (C / 8) + c / 8) 128 (wg_cm_off).  A
 * descriptor names the operand's start, LBO = the byte stride between core
 * matrices along K and SBO = the stride along M or N, for K-major and MN-major
 * operands alike (checked on the H200 by dev/wgmma_probe.cu).
 *
 * Register fragments (PTX ISA, "Register Fragments" of wgmma .m64nNk16): warp
 * w of the warpgroup owns rows 16w + lane/4 and 16w + lane/4 + 8; accumulator
 * element 4i + r sits at column 8i + 2 (lane % 4) + (r & 1), row + 8 (r >> 1);
 * an A fragment is mma.sync's m16n8k16 A fragment of those rows.
 */
#ifndef LA_CUDA_WGMMA_CUH
#define LA_CUDA_WGMMA_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
#error "wgmma.cuh is built for sm_90a only (CMakeLists.txt: the Hopper kernels' object library)"
#endif

/* Byte offset of element (r, c) in a core-matrix tiled tile of C columns. */
__host__ __device__ constexpr uint32_t wg_cm_off(int r, int c, int C) {
    return (uint32_t)((((r >> 3) * (C >> 3)) + (c >> 3)) * 128 + (r & 7) * 16 + (c & 7) * 2);
}

/* Shared-memory matrix descriptor, no swizzle. */
__device__ __forceinline__ uint64_t wg_desc(uint32_t saddr, uint32_t lbo, uint32_t sbo) {
    return (uint64_t)((saddr & 0x3FFFF) >> 4) | ((uint64_t)(lbo >> 4) << 16) | ((uint64_t)(sbo >> 4) << 32);
}

__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void wg_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* An empty asm that reads and redefines each accumulator register: the
 * compiler cannot move an instruction that defines them (a scaling of S)
 * past it, into the wgmmas' pipeline stage, which makes ptxas serialise the
 * stage (info C7515). */
__device__ __forceinline__ void wg_fence_acc(float (&d)[32]) {
#pragma unroll
    for (int i = 0; i < 32; i++) asm volatile("" : "+f"(d[i])::"memory");
}
/* Ordinary shared-memory writes (st.shared, cp.async) made visible to the
 * tensor cores' async proxy; each writing thread, before the barrier. */
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

#define LA_WG_ACC32(d)                                                                                           \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),  \
        "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),   \
        "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),  \
        "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define LA_WG_OUT32(d)                                                                                           \
    "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3]), "=f"(d[4]), "=f"(d[5]), "=f"(d[6]), "=f"(d[7]), "=f"(d[8]),  \
        "=f"(d[9]), "=f"(d[10]), "=f"(d[11]), "=f"(d[12]), "=f"(d[13]), "=f"(d[14]), "=f"(d[15]), "=f"(d[16]),   \
        "=f"(d[17]), "=f"(d[18]), "=f"(d[19]), "=f"(d[20]), "=f"(d[21]), "=f"(d[22]), "=f"(d[23]), "=f"(d[24]),  \
        "=f"(d[25]), "=f"(d[26]), "=f"(d[27]), "=f"(d[28]), "=f"(d[29]), "=f"(d[30]), "=f"(d[31])
#define LA_WG_R32                                                                                                \
    "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28," \
    "%29,%30,%31}"

template <typename T> struct wg_type;
template <> struct wg_type<__nv_bfloat16> { static constexpr bool bf16 = true; };
template <> struct wg_type<__half> { static constexpr bool bf16 = false; };

/* d = A B (ACC = 0: d is only written) or d += A B (ACC = 1) over one k16
 * step, m64n64, A and B in shared memory; TB = 1 reads B as N-major ([k][n]
 * rows), 0 as K-major. */
template <typename T, int ACC, int TB>
__device__ __forceinline__ void wg_ss(float (&d)[32], uint64_t da, uint64_t db) {
    if (ACC == 0 && wg_type<T>::bf16)
        asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " LA_WG_R32 ", %32, %33, 0, 1, 1, 0, %34;\n"
                     : LA_WG_OUT32(d) : "l"(da), "l"(db), "n"(TB));
    else if (ACC == 0)
        asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " LA_WG_R32 ", %32, %33, 0, 1, 1, 0, %34;\n"
                     : LA_WG_OUT32(d) : "l"(da), "l"(db), "n"(TB));
    else if (wg_type<T>::bf16)
        asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " LA_WG_R32 ", %32, %33, 1, 1, 1, 0, %34;\n"
                     : LA_WG_ACC32(d) : "l"(da), "l"(db), "n"(TB));
    else
        asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " LA_WG_R32 ", %32, %33, 1, 1, 1, 0, %34;\n"
                     : LA_WG_ACC32(d) : "l"(da), "l"(db), "n"(TB));
}

/* d = A B (accumulate = 0) or d += A B over one k16 step, m64n64, A and B in
 * shared memory; TA = 1 reads A as M-major ([k][m] rows), TB = 1 reads B as
 * N-major ([k][n] rows), 0: K-major.  The runtime predicate, as in
 * wg_rs_acc, keeps the accumulators unzeroed before a loop. */
template <typename T, int TA, int TB>
__device__ __forceinline__ void wg_ss_acc(float (&d)[32], uint64_t da, uint64_t db, int accumulate) {
    if (wg_type<T>::bf16)
        asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.b32 p, %34, 0;\n\t"
                     "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " LA_WG_R32
                     ", %32, %33, p, 1, 1, %35, %36;\n\t}\n"
                     : LA_WG_ACC32(d) : "l"(da), "l"(db), "r"(accumulate), "n"(TA), "n"(TB));
    else
        asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.b32 p, %34, 0;\n\t"
                     "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " LA_WG_R32
                     ", %32, %33, p, 1, 1, %35, %36;\n\t}\n"
                     : LA_WG_ACC32(d) : "l"(da), "l"(db), "r"(accumulate), "n"(TA), "n"(TB));
}

/* d += A B over one k16 step, m64n64: A from registers (a fragment as above),
 * B in shared memory, N-major. */
template <typename T>
__device__ __forceinline__ void wg_rs(float (&d)[32], const uint32_t (&a)[4], uint64_t db) {
    if (wg_type<T>::bf16)
        asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " LA_WG_R32
                     ", {%32,%33,%34,%35}, %36, 1, 1, 1, 1;\n"
                     : LA_WG_ACC32(d) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
    else
        asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " LA_WG_R32
                     ", {%32,%33,%34,%35}, %36, 1, 1, 1, 1;\n"
                     : LA_WG_ACC32(d) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
}

/* The same with d's input scaled by `accumulate` (0: d = A B, its old value
 * ignored, as on a loop's first step).  A runtime predicate instead of
 * zeroing the accumulators before the loop: that zeroing makes ptxas
 * serialise every wgmma in it (info C7515, seen with CUDA 13.0). */
template <typename T>
__device__ __forceinline__ void wg_rs_acc(float (&d)[32], const uint32_t (&a)[4], uint64_t db, int accumulate) {
    if (wg_type<T>::bf16)
        asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.b32 p, %37, 0;\n\t"
                     "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " LA_WG_R32
                     ", {%32,%33,%34,%35}, %36, p, 1, 1, 1;\n\t}\n"
                     : LA_WG_ACC32(d) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(accumulate));
    else
        asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.b32 p, %37, 0;\n\t"
                     "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " LA_WG_R32
                     ", {%32,%33,%34,%35}, %36, p, 1, 1, 1;\n\t}\n"
                     : LA_WG_ACC32(d) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(accumulate));
}

#endif
