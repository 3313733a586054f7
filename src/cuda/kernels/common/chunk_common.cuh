/*
 * chunk_common.cuh - pieces every chunk kernel shares: the chunk-local
 * log-decay cumsum, and the fp32 state held as mma accumulators (its
 * fragment layout, loads, stores, dtype copy and decayed rank-64 update).
 *
 * State tile layout: 8 warps as 4 (rows d) x 2 (columns e); warp (wm, wn)
 * holds rows wm*DP/4.. and columns wn*EP/2.. as MT = DP/64 m16 tiles by
 * NTS = EP/16 n8 tiles of 4 floats each (PTX's C fragment layout).
 */
#ifndef LA_CUDA_CHUNK_COMMON_CUH
#define LA_CUDA_CHUNK_COMMON_CUH

#include "kernel_params.h"
#include "inline_checks.cuh"
#include "mma.cuh"

#define LA_C LA_CUDA_CHUNK

/* e^x for the chunk kernels' exponents, all <= 0 by construction: one
 * ex2.approx.ftz (plus the scaling multiply).  __expf compiles to the
 * non-ftz ex2 with a range fix-up around it (five more instructions and a
 * predicate per exp, ~8% of the D=64 forward's instructions); flushing
 * results below 2^-126 to zero is the underflow the design allows. */
__device__ __forceinline__ float exp_nonpos(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x * 1.4426950408889634f));
    return y;
}

/* Warp 0: Gs[i] = sum_{r <= i} g_r over the chunk and Gs[64 + j] =
 * sum_{j < r < n} g_r = G_last - G_j (fixed order, so deterministic);
 * SCALAR_HEAD: (i + 1) ld and (n - 1 - j) ld; NONE: 0.  The suffix sums are
 * summed directly, not taken as G_last - G_j: under strong decay G is large
 * and that difference would lose the exponent's low bits (a relative error
 * of ~eps |G| in every key's factor of the state update). */
__device__ __forceinline__ void chunk_cumsum(const float *gs, float *Gs, int decay, float ld_head, int n, int lane) {
    float *Rs = Gs + LA_C;
    if (decay == 2) { /* rows >= n hold g = 0 */
        float x0 = gs[2 * lane], x1 = gs[2 * lane + 1];
        float incl = x0 + x1, sincl = x0 + x1;
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) {
            float y = __shfl_up_sync(0xffffffffu, incl, off);
            if (lane >= off) incl += y;
            float z = __shfl_down_sync(0xffffffffu, sincl, off);
            if (lane + off < 32) sincl += z;
        }
        float excl = incl - (x0 + x1);
        Gs[2 * lane] = excl + x0;
        Gs[2 * lane + 1] = excl + x0 + x1;
        float after = __shfl_down_sync(0xffffffffu, sincl, 1);
        if (lane == 31) after = 0.0f;
        Rs[2 * lane + 1] = after;
        Rs[2 * lane] = after + x1;
    } else {
        Gs[2 * lane] = ld_head * (float)(2 * lane + 1);
        Gs[2 * lane + 1] = ld_head * (float)(2 * lane + 2);
        Rs[2 * lane] = 2 * lane < n ? ld_head * (float)(n - 1 - 2 * lane) : 0.0f;
        Rs[2 * lane + 1] = 2 * lane + 1 < n ? ld_head * (float)(n - 2 - 2 * lane) : 0.0f;
    }
}

/* Bytes of 16-byte column piece pc that lie inside X valid columns (16,
 * fewer at the end, or 0), from two flags.  The equivalent clamp
 * min(max(X - 8 pc, 0), 8) is what ptxas (CUDA 13.0) miscompiled once
 * rematerialised inside a loop, with a wrong predicate (fwd_ws_kernel.cuh,
 * docs/PERF.md): every tile copy sizes its pieces here instead. */
__device__ __forceinline__ int piece_bytes(int X, int pc) {
    const bool whole = pc < (X >> 3), part = pc < ((X + 7) >> 3);
    return whole ? 16 : part ? 2 * (X - 8 * pc) : 0;
}

template <int DP, int EP>
struct state_frag {
    static constexpr int MT = DP / 64, NTS = EP / 16;
    /* Row and column of element r of tile (mt, nt) held by this lane. */
    static __device__ __forceinline__ int row(int wm, int lane, int mt, int r) {
        return wm * (DP / 4) + mt * 16 + (lane >> 2) + 8 * (r >> 1);
    }
    static __device__ __forceinline__ int col(int wn, int lane, int nt, int r) {
        return wn * (EP / 2) + nt * 8 + 2 * (lane & 3) + (r & 1);
    }
};

/* f(x, d, e) for every element x of this lane's state fragment S (a
 * float or const float [DP/64][EP/16][4]; row d, column e): the one walk over
 * the fragment that loads, stores, dots and scales share. */
template <int DP, int EP, typename A, typename Fn>
__device__ __forceinline__ void state_each(A &S, int wm, int wn, int lane, Fn f) {
    typedef state_frag<DP, EP> F;
#pragma unroll
    for (int mt = 0; mt < F::MT; mt++)
#pragma unroll
        for (int nt = 0; nt < F::NTS; nt++)
#pragma unroll
            for (int r = 0; r < 4; r++) f(S[mt][nt][r], F::row(wm, lane, mt, r), F::col(wn, lane, nt, r));
}

/* S = src[d*sd + e*se] for d < D, e < E, else 0 (src NULL: all 0). */
template <int DP, int EP>
__device__ __forceinline__ void state_load(float (&S)[DP / 64][EP / 16][4], const float *src, int64_t sd, int64_t se,
                                           int D, int E, int wm, int wn, int lane) {
    state_each<DP, EP>(S, wm, wn, lane, [&](float &x, int d, int e) {
        x = (src && d < D && e < E) ? src[d * sd + e * se] : 0.0f;
    });
}

/* dst[d*sd + e*se] = S for d < D, e < E. */
template <int DP, int EP>
__device__ __forceinline__ void state_store(const float (&S)[DP / 64][EP / 16][4], float *dst, int64_t sd, int64_t se,
                                            int D, int E, int wm, int wn, int lane) {
    state_each<DP, EP>(S, wm, wn, lane, [&](const float &x, int d, int e) {
        if (d < D && e < E) dst[d * sd + e * se] = x;
    });
}

/* S *= a (the state's decay over one chunk). */
template <int DP, int EP>
__device__ __forceinline__ void state_scale(float (&S)[DP / 64][EP / 16][4], float a) {
    state_each<DP, EP>(S, 0, 0, 0, [&](float &x, int, int) { x *= a; });
}

/* The state rounded to the operand dtype into Ss [DP][EP + 8] (an mma
 * operand; SPLIT: hi there, lo plane elements further, and with NP = 3 the
 * third plane (mma.cuh, pack_op3) plane elements after lo). */
template <typename T, int DP, int EP, bool SPLIT = false, int NP = SPLIT ? 2 : 1>
__device__ __forceinline__ void state_copy(const float (&S)[DP / 64][EP / 16][4], T *Ss, int wm, int wn, int lane,
                                           int plane = 0) {
    static_assert(NP != 3 || SPLIT, "three planes are a split operand's");
    typedef state_frag<DP, EP> F;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    /* stmatrix: one store per two n8 tiles (four 8x8 matrices: rows 0-7 and
     * 8-15 of tiles nt and nt+1) instead of eight 4-byte stores. */
    const uint32_t base = smem_addr(Ss + (wm * (DP / 4) + (lane & 7) + 8 * ((lane >> 3) & 1)) * (EP + 8) +
                                    wn * (EP / 2) + 8 * (lane >> 4));
#pragma unroll
    for (int mt = 0; mt < F::MT; mt++)
#pragma unroll
        for (int np = 0; np < F::NTS / 2; np++) {
            uint32_t h[4], l[4], r[4];
#pragma unroll
            for (int q = 0; q < 4; q++) {
                const float x0 = S[mt][2 * np + (q >> 1)][2 * (q & 1)], x1 = S[mt][2 * np + (q >> 1)][2 * (q & 1) + 1];
                if constexpr (NP == 3) pack_op3<T>(x0, x1, h[q], l[q], r[q]);
                else pack_op2<T, SPLIT>(x0, x1, h[q], l[q]);
            }
            const uint32_t at = base + (mt * 16 * (EP + 8) + np * 16) * 2;
            stmatrix_x4_at(at, h[0], h[1], h[2], h[3]);
            if (SPLIT) stmatrix_x4_at(at + plane * 2, l[0], l[1], l[2], l[3]);
            if constexpr (NP == 3) stmatrix_x4_at(at + plane * 4, r[0], r[1], r[2], r[3]);
        }
#else
#pragma unroll
    for (int mt = 0; mt < F::MT; mt++)
#pragma unroll
        for (int nt = 0; nt < F::NTS; nt++)
#pragma unroll
            for (int hr = 0; hr < 2; hr++) {
                int d = F::row(wm, lane, mt, 2 * hr), e = F::col(wn, lane, nt, 2 * hr);
                put_opn2<T, NP>(&Ss[d * (EP + 8) + e], plane, S[mt][nt][2 * hr], S[mt][nt][2 * hr + 1]);
            }
#endif
}

/* Two adjacent outputs (columns c, c + 1) as one store: a 4-byte word of
 * two halves, or 8 bytes of f32. */
template <typename T>
__device__ __forceinline__ void store_out2(T *p, float a, float b) {
    *reinterpret_cast<uint32_t *>(p) = mma_traits<T>::pack(a, b);
}
template <>
__device__ __forceinline__ void store_out2<float>(float *p, float a, float b) {
    *reinterpret_cast<float2 *>(p) = make_float2(a, b);
}

/* Store a 16 x (8*NT) warp tile of mma accumulators into a token tensor:
 * rows 16wm + lane/4 (+8) of the chunk starting at token tok0 (< n),
 * columns c0 + 8i + 2(lane%4) (+1) (< X), value mul * acc.  vec (channel
 * stride 1, aligned rows): a full chunk and whole tile store each lane's
 * column pairs as one 4-byte word, without bounds checks.
 * mode (LA_SUM_* bits, kernel_params.h): the tile is a head-dim tile's
 * share of a sum; add the fp32 sum so far (sm) and/or keep the result
 * there instead of storing it.  That rare path has its own branch, so the
 * plain stores below stay as they were. */
template <typename T, int NT>
__device__ __forceinline__ void store_tok(const la_tok_t &x, const la_sum_t &sm, int mode, int64_t b, int64_t h,
                                          int64_t tok0, const float (*acc)[4], int wm, int c0, int n, int X, int lane,
                                          float mul, bool vec) {
    T *base = const_cast<T *>(static_cast<const T *>(x.ptr)) + b * x.sb + h * x.sh + tok0 * x.st;
    const int r0 = 16 * wm + (lane >> 2), cl = c0 + 2 * (lane & 3);
    if (mode) {
        float *sbase = sm.ptr + b * sm.sb + h * sm.sh + tok0 * sm.st;
        if (vec && n == LA_C && c0 + 8 * NT <= X) { /* column pairs: 8-byte sums, 4-byte outputs */
#pragma unroll
            for (int hr = 0; hr < 2; hr++) {
                T *row = base + (r0 + 8 * hr) * x.st + cl;
                float *srow = sbase + (r0 + 8 * hr) * sm.st + cl;
#pragma unroll
                for (int i = 0; i < NT; i++) {
                    float2 v = make_float2(mul * acc[i][2 * hr], mul * acc[i][2 * hr + 1]);
                    if (mode & LA_SUM_ADD) {
                        const float2 old = *reinterpret_cast<const float2 *>(srow + i * 8);
                        v.x += old.x;
                        v.y += old.y;
                    }
                    if (mode & LA_SUM_KEEP) *reinterpret_cast<float2 *>(srow + i * 8) = v;
                    else store_out2<T>(row + i * 8, v.x, v.y);
                }
            }
            return;
        }
#pragma unroll
        for (int i = 0; i < NT; i++)
#pragma unroll
            for (int k = 0; k < 4; k++) {
                const int r = r0 + 8 * (k >> 1), c = cl + i * 8 + (k & 1);
                if (r >= n || c >= X) continue;
                float v = mul * acc[i][k];
                float *sd = sbase + r * sm.st + c;
                if (mode & LA_SUM_ADD) v += *sd;
                if (mode & LA_SUM_KEEP) *sd = v;
                else base[r * x.st + c * x.sc] = T(v);
            }
        return;
    }
    if (vec && n == LA_C && c0 + 8 * NT <= X) {
        T *row0 = base + r0 * x.st + cl, *row1 = row0 + 8 * x.st;
#pragma unroll
        for (int i = 0; i < NT; i++) {
            store_out2<T>(row0 + i * 8, mul * acc[i][0], mul * acc[i][1]);
            store_out2<T>(row1 + i * 8, mul * acc[i][2], mul * acc[i][3]);
        }
        return;
    }
#pragma unroll
    for (int i = 0; i < NT; i++)
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
            const int r = r0 + 8 * hr, c = cl + i * 8;
            if (r >= n) continue;
            T *dst = base + r * x.st + c * x.sc;
            if (c < X) dst[0] = T(mul * acc[i][2 * hr]);
            if (c + 1 < X) dst[x.sc] = T(mul * acc[i][2 * hr + 1]);
        }
}

/* One register of an A fragment (two elements x0, x1 of X in the input
 * dtype) times the decay factors of its two tokens, in the input dtype:
 * hi, and with want_lo the remainder lo (x f = hi + lo to ~16 mantissa bits).
 * The generic form goes through fp32: unpack, multiply, round, unpack the
 * rounded value, subtract, round (10 instructions for hi and lo).  bf16
 * (below) stays packed: with the factors split as f = fh + fl in bf16,
 *   hi = x fh                 (one rounding)
 *   r  = fma(x, fh, -hi)      exact: x fh has 16 significant bits, hi its
 *                             top 8, so the residual fits a bf16
 *   lo = fma(x, fl, r)        (one rounding, of a term 2^-8 of the product)
 * three bf16x2 instructions; per-term error ~2^-16 instead of ~2^-18, still
 * far below what the final-state tests allow (1.5e-5 relative L2).  Without
 * lo, hi = fma(x, fh, x fl): one rounding of the product, as before.
 * (f16's range is too short to split factors that way: the generic form.) */
typedef struct {
    float f0, f1;     /* generic: the two factors */
    uint32_t fh, fl;  /* bf16: the factors split as fh + fl, packed */
} la_fpair_t;

template <typename T>
__device__ __forceinline__ void fpair_set(la_fpair_t &f, float a, float b) { f.f0 = a; f.f1 = b; }

template <typename T>
__device__ __forceinline__ void fpair_apply(const la_fpair_t &f, uint32_t x, uint32_t &hi, uint32_t &lo, bool want_lo) {
    const T *h2 = reinterpret_cast<const T *>(&x);
    float x0 = float(h2[0]) * f.f0, x1 = float(h2[1]) * f.f1;
    hi = mma_traits<T>::pack(x0, x1);
    if (want_lo) {
        const T *hh = reinterpret_cast<const T *>(&hi);
        lo = mma_traits<T>::pack(x0 - float(hh[0]), x1 - float(hh[1]));
    }
}

template <>
__device__ __forceinline__ void fpair_set<__nv_bfloat16>(la_fpair_t &f, float a, float b) {
    __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    const float2 back = __bfloat1622float2(h);
    __nv_bfloat162 l = __floats2bfloat162_rn(a - back.x, b - back.y);
    f.fh = *reinterpret_cast<uint32_t *>(&h);
    f.fl = *reinterpret_cast<uint32_t *>(&l);
}

template <>
__device__ __forceinline__ void fpair_apply<__nv_bfloat16>(const la_fpair_t &f, uint32_t x, uint32_t &hi, uint32_t &lo,
                                                           bool want_lo) {
    const __nv_bfloat162 xv = *reinterpret_cast<const __nv_bfloat162 *>(&x);
    const __nv_bfloat162 fh = *reinterpret_cast<const __nv_bfloat162 *>(&f.fh);
    const __nv_bfloat162 fl = *reinterpret_cast<const __nv_bfloat162 *>(&f.fl);
    __nv_bfloat162 h;
    if (want_lo) {
        h = __hmul2(xv, fh);
        const __nv_bfloat162 r = __hfma2(xv, fh, __hneg2(h));
        const __nv_bfloat162 l = __hfma2(xv, fl, r);
        lo = *reinterpret_cast<const uint32_t *>(&l);
    } else {
        h = __hfma2(xv, fh, __hmul2(xv, fl));
    }
    hi = *reinterpret_cast<const uint32_t *>(&h);
}

/* lo += xl f: the lo plane of a split operand's two elements times their
 * factors, into the lo part of the product (fpair_apply made hi and lo of
 * the hi plane's product). */
template <typename T>
__device__ __forceinline__ void fpair_add_lo(const la_fpair_t &f, uint32_t xl, uint32_t &lo) {
    const T *x2 = reinterpret_cast<const T *>(&xl), *l2 = reinterpret_cast<const T *>(&lo);
    lo = mma_traits<T>::pack(float(l2[0]) + float(x2[0]) * f.f0, float(l2[1]) + float(x2[1]) * f.f1);
}
template <>
__device__ __forceinline__ void fpair_add_lo<__nv_bfloat16>(const la_fpair_t &f, uint32_t xl, uint32_t &lo) {
    const __nv_bfloat162 r = __hfma2(*reinterpret_cast<const __nv_bfloat162 *>(&xl),
                                     *reinterpret_cast<const __nv_bfloat162 *>(&f.fh),
                                     *reinterpret_cast<const __nv_bfloat162 *>(&lo));
    lo = *reinterpret_cast<const uint32_t *>(&r);
}

/* A token pair's factors packed in 8 bytes (bf16: fh, fl; generic: f0, f1),
 * so a kernel can prepare them once in shared memory (fwd_kernel.cuh's
 * table for chunks whose factors do not change). */
template <typename T>
__device__ __forceinline__ uint2 fpair_pack(const la_fpair_t &f) {
    return make_uint2(__float_as_uint(f.f0), __float_as_uint(f.f1));
}
template <typename T>
__device__ __forceinline__ void fpair_unpack(la_fpair_t &f, uint2 u) {
    f.f0 = __uint_as_float(u.x);
    f.f1 = __uint_as_float(u.y);
}
template <>
__device__ __forceinline__ uint2 fpair_pack<__nv_bfloat16>(const la_fpair_t &f) { return make_uint2(f.fh, f.fl); }
template <>
__device__ __forceinline__ void fpair_unpack<__nv_bfloat16>(la_fpair_t &f, uint2 u) {
    f.fh = u.x;
    f.fl = u.y;
}

/* S += sum_j (f(j) X_j)^T Y_j over the chunk's 64 tokens, X: [64][DP] at sX
 * (pitch XP elements), Y: [64][EP] at sY (pitch YP), f(j) the token's decay
 * factor (0 past the chunk's valid rows), given as pair_of(j, fp): the
 * factors of tokens j and j + 1 (j even) into fp.  f(j) X_j is formed in registers
 * and split into a hi and a lo part in the input dtype (fpair_apply): two
 * products, so the state carries ~16 mantissa bits of every term, not 8
 * (fp32-level states).
 * All hi products, then all lo products: consecutive mmas hit different
 * accumulator tiles.  LO = false drops the lo part (a quarter of a forward
 * chunk's mmas): for states that only ever multiply q into a half-precision
 * output, never leave the kernel, so 8 bits per term are what the output
 * keeps anyway.  SPLIT (f32 inputs, op_of): X and Y are split operands
 * whose lo planes lie `plane` bytes after sX and sY; the lo part of f X
 * takes X's lo plane too, and the product gains the hi X times lo Y term. */
template <typename T, int DP, int EP, bool LO, bool SPLIT = false, typename PairFn>
__device__ __forceinline__ void state_update(float (&S)[DP / 64][EP / 16][4], uint32_t sX, int XP, uint32_t sY, int YP,
                                             PairFn pair_of, int wm, int wn, int lane, uint32_t plane = 0) {
    static_assert(LO || !SPLIT, "split operands keep the lo part");
    constexpr int MT = DP / 64, NTS = EP / 16;
    /* Per-lane fragment row addresses (bytes) of X^T (transposed load of the
     * stored [j][d] tile) and of Y. */
    const uint32_t offX = (((lane >> 4) * 8 + (lane & 7)) * XP + wm * (DP / 4) + ((lane >> 3) & 1) * 8) * 2;
    const uint32_t offY = ((((lane >> 3) & 1) * 8 + (lane & 7)) * YP + wn * (EP / 2) + (lane >> 4) * 8) * 2;
#pragma unroll
    for (int kk = 0; kk < LA_C / 16; kk++) {
        /* This lane's fragment columns are tokens j0, j0+1, j0+8, j0+9. */
        const int j0 = kk * 16 + 2 * (lane & 3);
        la_fpair_t fp[2]; /* registers 0, 1: tokens j0, j0+1; registers 2, 3: j0+8, j0+9 */
        pair_of(j0, fp[0]);
        pair_of(j0 + 8, fp[1]);
        uint32_t ahi[MT][4], alo[MT][4], bfr[NTS / 2][4], bfl[NTS / 2][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            uint32_t a[4], al[4];
            const uint32_t at = sX + offX + kk * 16 * XP * 2 + mt * 32;
            ldmatrix_x4_trans_at(a, at);
            if (SPLIT) ldmatrix_x4_trans_at(al, at + plane);
#pragma unroll
            for (int r = 0; r < 4; r++) {
                fpair_apply<T>(fp[r >> 1], a[r], ahi[mt][r], alo[mt][r], LO);
                if (SPLIT) fpair_add_lo<T>(fp[r >> 1], al[r], alo[mt][r]);
            }
        }
#pragma unroll
        for (int np = 0; np < NTS / 2; np++) {
            const uint32_t at = sY + offY + kk * 16 * YP * 2 + np * 32;
            ldmatrix_x4_trans_at(bfr[np], at);
            if (SPLIT) ldmatrix_x4_trans_at(bfl[np], at + plane);
        }
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int np = 0; np < NTS / 2; np++) {
                mma_16816<T>(S[mt][2 * np], ahi[mt], bfr[np]);
                mma_16816<T>(S[mt][2 * np + 1], ahi[mt], bfr[np] + 2);
            }
        if (LO) {
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int np = 0; np < NTS / 2; np++) {
                    mma_16816<T>(S[mt][2 * np], alo[mt], bfr[np]);
                    mma_16816<T>(S[mt][2 * np + 1], alo[mt], bfr[np] + 2);
                    if (SPLIT) {
                        mma_16816<T>(S[mt][2 * np], ahi[mt], bfl[np]);
                        mma_16816<T>(S[mt][2 * np + 1], ahi[mt], bfl[np] + 2);
                    }
                }
        }
    }
}

/* state_update for three-plane f32 operands (NP = 3, mma.cuh): f(j) X_j is
 * formed in fp32 from X's three planes and split into three planes again,
 * and each product takes six mmas (mma_x3), so every term of the state keeps
 * fp32-level accuracy (~2^-24; state_update's split keeps ~2^-16 a term).
 * factor(j): the token's decay factor as a float (0 past the chunk's valid
 * rows).  X, Y and the planes as in state_update; the factors are formed
 * here, not from a pair table. */
template <int DP, int EP, typename FactorFn>
__device__ __forceinline__ void state_update3(float (&S)[DP / 64][EP / 16][4], uint32_t sX, int XP, uint32_t sY,
                                              int YP, FactorFn factor, int wm, int wn, int lane, uint32_t plane) {
    typedef __nv_bfloat16 OT;
    constexpr int MT = DP / 64, NTS = EP / 16;
    const uint32_t offX = (((lane >> 4) * 8 + (lane & 7)) * XP + wm * (DP / 4) + ((lane >> 3) & 1) * 8) * 2;
    const uint32_t offY = ((((lane >> 3) & 1) * 8 + (lane & 7)) * YP + wn * (EP / 2) + (lane >> 4) * 8) * 2;
#pragma unroll 1
    for (int kk = 0; kk < LA_C / 16; kk++) {
        /* Register r of an X^T fragment holds tokens j0 + 8 (r / 2) and the one after. */
        const int j0 = kk * 16 + 2 * (lane & 3);
        const float f[4] = {factor(j0), factor(j0 + 1), factor(j0 + 8), factor(j0 + 9)};
        uint32_t ah[MT][4], al[MT][4], ar[MT][4], bh[NTS / 2][4], bl[NTS / 2][4], br[NTS / 2][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            uint32_t x[3][4];
            const uint32_t at = sX + offX + kk * 16 * XP * 2 + mt * 32;
            ldmatrix_x4_trans_at(x[0], at);
            ldmatrix_x4_trans_at(x[1], at + plane);
            ldmatrix_x4_trans_at(x[2], at + 2 * plane);
#pragma unroll
            for (int r = 0; r < 4; r++) {
                const OT *p0 = reinterpret_cast<const OT *>(&x[0][r]), *p1 = reinterpret_cast<const OT *>(&x[1][r]),
                         *p2 = reinterpret_cast<const OT *>(&x[2][r]);
                const float v0 = (float(p0[0]) + float(p1[0]) + float(p2[0])) * f[2 * (r >> 1)];
                const float v1 = (float(p0[1]) + float(p1[1]) + float(p2[1])) * f[2 * (r >> 1) + 1];
                pack_op3<OT>(v0, v1, ah[mt][r], al[mt][r], ar[mt][r]);
            }
        }
#pragma unroll
        for (int np = 0; np < NTS / 2; np++) {
            const uint32_t at = sY + offY + kk * 16 * YP * 2 + np * 32;
            ldmatrix_x4_trans_at(bh[np], at);
            ldmatrix_x4_trans_at(bl[np], at + plane);
            ldmatrix_x4_trans_at(br[np], at + 2 * plane);
        }
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int np = 0; np < NTS / 2; np++) {
                mma_x3<OT>(S[mt][2 * np], ah[mt], al[mt], ar[mt], bh[np], bl[np], br[np]);
                mma_x3<OT>(S[mt][2 * np + 1], ah[mt], al[mt], ar[mt], bh[np] + 2, bl[np] + 2, br[np] + 2);
            }
    }
}

/* Stitch the states at segment boundaries of sequence s, head h, for state
 * element idx (row d, column e of a DP x p.ept cell), in a fixed order:
 *   forward (state):    in[0] = start, in[q+1] = exp(ld[q]) in[q] + local[q]
 *   reverse (gradient): out[last] = start, out[q-1] = exp(ld[q]) out[q] + local[q]
 * Each cell's local value is replaced by the value that enters it from its
 * neighbour (the incoming state, or the gradient at the outgoing state);
 * returns what leaves the last segment folded.  ld[q] is the segment's total
 * log decay from the forward state pass. */
template <int DP, bool REVERSE>
__device__ __forceinline__ float fold_cells(const la_fwd_params_t &p, float *cells, const la_st_t &start, int s, int h,
                                            int idx, bool last_local = true) {
    const int d = idx / p.ept, e = idx % p.ept;
    int g0, ns;
    if (p.seg.cu) { g0 = p.seg.seg_off[s]; ns = p.seg.seg_off[s + 1] - g0; }
    else { g0 = s * p.seg.n_seg; ns = p.seg.n_seg; }
    const bool in_range = d < p.D && e < p.E;
    float run = (start.ptr && in_range) ? start.ptr[s * start.ss + h * start.sh + d * start.sd + e * start.se] : 0.0f;
    for (int k = 0; k < ns; k++) {
        int64_t slot = (int64_t)(g0 + (REVERSE ? ns - 1 - k : k)) * p.H + h;
        float *cell = cells + slot * DP * p.ept + idx;
        /* !last_local: the last cell holds no local value (its pass skipped
         * it); only what enters it is wanted, and the returned value is not. */
        float local = last_local || k + 1 < ns ? *cell : 0.0f;
        *cell = run;
        run = exp_nonpos(p.seg_logdecay[slot]) * run + local;
    }
    return run;
}

#endif
