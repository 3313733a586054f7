/*
 * mma.cuh - thin wrappers over the sm_80+ warp-level tensor-core and copy
 * instructions the kernels use: mma.sync m16n8k16 (bf16/f16 in, fp32
 * accumulate), ldmatrix (x4, optionally transposed) and cp.async (16-byte
 * global -> shared copies that complete asynchronously).
 *
 * Fragment layouts are PTX's (ISA "Matrix Fragments for mma.m16n8k16"):
 *   A (16x16, row-major)  4 regs of 2 halves;  B (16x8, "col")  2 regs;
 *   C/D (16x8 fp32)       4 floats: rows lane/4 and lane/4+8, columns
 *                         2*(lane%4) and 2*(lane%4)+1.
 */
#ifndef LA_CUDA_MMA_CUH
#define LA_CUDA_MMA_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

/* Element type of the tensor-core operands for an input dtype. */
template <typename T> struct mma_traits;
template <> struct mma_traits<__nv_bfloat16> {
    static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
        __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&v);
    }
};
template <> struct mma_traits<__half> {
    static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
        __half2 v = __floats2half2_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&v);
    }
};

/* 1 for bf16: the launchers' dtype flag for the Hopper kernels' C entry points. */
template <typename T> struct la_is_bf16 { static constexpr int value = 0; };
template <> struct la_is_bf16<__nv_bfloat16> { static constexpr int value = 1; };

/* How an input dtype sits in shared memory as an mma operand.  bf16 and f16
 * are their own operands.  f32 is split into two bf16 planes, x = hi + lo
 * (hi = bf16(x), lo = bf16(x - hi): 16 of fp32's 24 mantissa bits, fp32's
 * exponent range), and a product of two split operands takes three mmas,
 * hi lo + lo hi + hi hi (lo lo is 2^-16 of the product).  The lo plane of
 * every operand lies a fixed number of bytes after its hi plane (each
 * kernel puts all its operands' lo planes after all their hi planes). */
template <typename T> struct op_of {
    typedef T type;
    static constexpr bool split = false;
};
template <> struct op_of<float> {
    typedef __nv_bfloat16 type;
    static constexpr bool split = true;
};

/* d += a * b on one 16x8x16 tile. */
template <typename T>
__device__ __forceinline__ void mma_16816(float d[4], const uint32_t a[4], const uint32_t b[2]);

template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <>
__device__ __forceinline__ void mma_16816<__half>(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/* d += a * b where a = a + al, b = b + bl (SPLIT; else d += a * b): the
 * small terms first. */
template <typename OT, bool SPLIT>
__device__ __forceinline__ void mma_x(float d[4], const uint32_t a[4], const uint32_t al[4], const uint32_t b[2],
                                      const uint32_t bl[2]) {
    if (SPLIT) {
        mma_16816<OT>(d, a, bl);
        mma_16816<OT>(d, al, b);
    }
    mma_16816<OT>(d, a, b);
}

/* The packed operand word of x0, x1 and (SPLIT) the word of their lo parts. */
template <typename OT, bool SPLIT>
__device__ __forceinline__ void pack_op2(float x0, float x1, uint32_t &hi, uint32_t &lo) {
    hi = mma_traits<OT>::pack(x0, x1);
    if (SPLIT) {
        const OT *h = reinterpret_cast<const OT *>(&hi);
        lo = mma_traits<OT>::pack(x0 - float(h[0]), x1 - float(h[1]));
    }
}

/* Two values as one packed operand word at p (and, SPLIT, their lo parts
 * at p + plane elements). */
template <typename OT, bool SPLIT>
__device__ __forceinline__ void put_op2(OT *p, int plane, float x0, float x1) {
    uint32_t hi, lo;
    pack_op2<OT, SPLIT>(x0, x1, hi, lo);
    *reinterpret_cast<uint32_t *>(p) = hi;
    if (SPLIT) *reinterpret_cast<uint32_t *>(p + plane) = lo;
}

/* One input value as an operand element (SPLIT: hi at p, lo at p + plane). */
template <typename OT, bool SPLIT, typename T>
__device__ __forceinline__ void put_op1(OT *p, int plane, T x) {
    if (SPLIT) {
        const float f = float(x);
        const OT h = OT(f);
        p[0] = h;
        p[plane] = OT(f - float(h));
    } else {
        p[0] = x;
    }
}

/* Three planes (NP = 3; f32 operands of the backward's decay-gradient terms,
 * bwd_kernel.cuh): x = hi + lo + r with r = bf16(x - hi - lo), so the
 * operand keeps all 24 of fp32's mantissa bits where two planes keep 16, and
 * a product takes six mmas, hi r + r hi + lo lo + hi lo + lo hi + hi hi:
 * what is dropped (lo r, r lo, r r) is ~2^-25 of the product, where the
 * two-plane product loses ~2^-17 (the operands' missing bits and lo lo).
 * The decay gradient is a sum whose terms partly cancel, so its relative
 * error is that of its terms times their cancellation (docs/CUDA-BACKWARD.md). */
template <typename OT>
__device__ __forceinline__ void mma_x3(float d[4], const uint32_t a[4], const uint32_t al[4], const uint32_t ar[4],
                                       const uint32_t b[2], const uint32_t bl[2], const uint32_t br[2]) {
    mma_16816<OT>(d, a, br);
    mma_16816<OT>(d, ar, b);
    mma_16816<OT>(d, al, bl);
    mma_16816<OT>(d, a, bl);
    mma_16816<OT>(d, al, b);
    mma_16816<OT>(d, a, b);
}

/* x0, x1 as the packed words of three planes.  x - hi and (x - hi) - lo are
 * exact in fp32; only r is rounded (~2^-26 of x). */
template <typename OT>
__device__ __forceinline__ void pack_op3(float x0, float x1, uint32_t &hi, uint32_t &lo, uint32_t &r) {
    hi = mma_traits<OT>::pack(x0, x1);
    const OT *h = reinterpret_cast<const OT *>(&hi);
    const float r0 = x0 - float(h[0]), r1 = x1 - float(h[1]);
    lo = mma_traits<OT>::pack(r0, r1);
    const OT *l = reinterpret_cast<const OT *>(&lo);
    r = mma_traits<OT>::pack(r0 - float(l[0]), r1 - float(l[1]));
}

/* put_op2 and put_op1 for NP planes (1: the operand dtype itself; 2: hi, lo;
 * 3: hi, lo, r), each plane `plane` elements after the one before. */
template <typename OT, int NP>
__device__ __forceinline__ void put_opn2(OT *p, int plane, float x0, float x1) {
    if constexpr (NP == 3) {
        uint32_t hi, lo, r;
        pack_op3<OT>(x0, x1, hi, lo, r);
        *reinterpret_cast<uint32_t *>(p) = hi;
        *reinterpret_cast<uint32_t *>(p + plane) = lo;
        *reinterpret_cast<uint32_t *>(p + 2 * plane) = r;
    } else {
        put_op2<OT, NP == 2>(p, plane, x0, x1);
    }
}
template <typename OT, int NP, typename T>
__device__ __forceinline__ void put_opn1(OT *p, int plane, T x) {
    if constexpr (NP == 3) {
        const float f = float(x);
        const OT h = OT(f);
        const float r = f - float(h);
        const OT l = OT(r);
        p[0] = h;
        p[plane] = l;
        p[2 * plane] = OT(r - float(l));
    } else {
        put_op1<OT, NP == 2>(p, plane, x);
    }
}

/* Planes per operand element of input dtype T by default: 2 for f32 (split), else 1. */
template <typename T> struct op_planes {
    static constexpr int value = op_of<T>::split ? 2 : 1;
};

/* Barrier among `threads` threads (whole warps) that use the same id
 * (1..15; 0 is __syncthreads): lets warp groups that share data wait only
 * for each other. */
__device__ __forceinline__ void group_barrier(int id, int threads) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

/* Arrive at a group barrier without waiting (a producer that the group's
 * waiting threads count). */
__device__ __forceinline__ void group_arrive(int id, int threads) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

__device__ __forceinline__ uint32_t smem_addr(const void *p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

/* Four 8x8 b16 matrices; lane l supplies the row address of matrix l/8, row l%8. */
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *row_ptr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(row_ptr)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void *row_ptr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(row_ptr)));
}

/* The same, on a precomputed shared-memory address (bytes): lets the kernels
 * keep one per-thread base and add compile-time offsets. */
__device__ __forceinline__ void ldmatrix_x4_at(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans_at(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
/* Four 8x8 b16 matrices from registers (the mma C layout, packed in pairs) to
 * shared memory; lane l gives the address of row l%8 of matrix l/8 (sm_90+). */
__device__ __forceinline__ void stmatrix_x4_at(uint32_t addr, uint32_t r0, uint32_t r1, uint32_t r2, uint32_t r3) {
    asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1,%2,%3,%4};\n" ::"r"(addr), "r"(r0), "r"(r1),
                 "r"(r2), "r"(r3));
}
#endif
__device__ __forceinline__ void cp_async_16_at(uint32_t saddr, const void *gmem, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(saddr), "l"(gmem), "r"(src_bytes));
}

/* A whole 16-byte piece: no source size, so no zero-fill operand to compute. */
__device__ __forceinline__ void cp_async_16_full_at(uint32_t saddr, const void *gmem) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(saddr), "l"(gmem));
}

/* 16-byte asynchronous copy global -> shared; src_bytes < 16 zero-fills the rest. */
__device__ __forceinline__ void cp_async_16(void *smem, const void *gmem, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem)), "l"(gmem),
                 "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

/* mbarriers (sm_80+): a count of arrivals completes a phase; waiters name
 * the phase by its parity.  arrive releases this thread's earlier shared
 * memory writes (and, after cp.async.wait_group, its landed copies) to the
 * threads whose wait acquires the completed phase. */
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("{\n\t.reg .b64 st;\n\tmbarrier.arrive.shared.b64 st, [%0];\n\t}\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    /* try_wait parks the warp in hardware for a while before it reports
     * failure: no issue slots spent spinning. */
    asm volatile("{\n\t.reg .pred p;\n\tLA_MBAR_WAIT:\n\t"
                 "mbarrier.try_wait.parity.shared.b64 p, [%0], %1;\n\t"
                 "@!p bra LA_MBAR_WAIT;\n\t}\n" ::"r"(bar),
                 "r"(parity)
                 : "memory");
#else
    for (;;) {
        uint32_t ok;
        asm volatile("{\n\t.reg .pred p;\n\tmbarrier.test_wait.parity.shared.b64 p, [%1], %2;\n\t"
                     "selp.u32 %0, 1, 0, p;\n\t}\n"
                     : "=r"(ok)
                     : "r"(bar), "r"(parity)
                     : "memory");
        if (ok) break;
        __nanosleep(20);
    }
#endif
}

#endif
