/*
 * gemm.c - the small fp32 matrix products of the CPU kernels (see gemm.h).
 *
 * Structure (the classic register-blocked design, minus the A packing):
 *
 *   driver      loops over column panels of NR columns (outer) and row blocks
 *               of MR rows (inner), so one B panel (K x NR floats, <= 32 KiB)
 *               stays in L1 while the rows of A stream past it;
 *   micro-kernel computes one MR x NR tile of C in registers: per k it loads
 *               NR floats of B (NV vectors) and broadcasts MR elements of A,
 *               then MR * NV fused multiply-adds.
 *
 * A is read in place through two strides, so nn (A[m,k] = A[m*lda + k]) and
 * tn (A[m,k] = A[k*lda + m]) share the micro-kernel.  B is read in place for
 * nn/tn whenever the panel's width is a whole number of the engine's vectors
 * (always, for N a multiple of 16); otherwise, and always for nt (whose B is
 * stored transposed: 16 x 16 in-register transposes on AVX-512), the panel is
 * copied into a zero-padded K x NR buffer on the stack (KB rows at a time),
 * so the micro-kernel only ever reads whole vectors.  Partial tiles of C are
 * loaded and stored under masks.  Nothing is allocated and there is no global
 * mutable state: the engine is chosen per call from the CPU's features.
 *
 * Measured on the 2-core Sapphire Rapids this was written on (single core,
 * FMA-loop peak about 125 GFLOP/s): nn and tn 125-130 GFLOP/s at
 * M = 64, N = K = 128; nt about 110.
 *
 * Engines, picked at run time (x86 attributes only on x86-64):
 *   avx512  MR = 8, NR = 32: 16 zmm accumulators, 2 B vectors, 1 broadcast;
 *           per k: 16 FMAs (8 cycles on 2 FMA ports) against 10 loads.
 *   avx2    MR = 6, NR = 16: 12 ymm accumulators (of 16 registers).
 *   generic MR = 4, NR = 8 in GCC vector extensions (4-float vectors: SSE,
 *           NEON), no fused multiply-add; the fallback for everything else.
 * Each product sums over k in increasing order inside one engine, so results
 * are deterministic for a given machine.
 */
#include "gemm.h"

#include <stddef.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define LA_GEMM_X86 1
#include <immintrin.h>
#else
#define LA_GEMM_X86 0
#endif

/* Rows of B packed per pass for nt and ragged panels; bounds the stack
 * buffer to KB * 32 floats (32 KiB). */
#define KB 256
#define NR_MAX 32

/* Which element of A the micro-kernel reads: A[m * as + k] (AK = 1, nn and
 * nt) or A[k * as + m] (AK = 0, tn). */
typedef void tile_fn(int mr, int nc, int K, const float *A, ptrdiff_t as, int ak, const float *B, ptrdiff_t ldb,
                     float *C, ptrdiff_t ldc, int beta);

/* P[k * w + j] = B[j * ldb + k] for j < nc, k < kb; zero for nc <= j < w. */
typedef void pack_fn(int nc, int kb, const float *B, ptrdiff_t ldb, float *P, int w);

typedef struct engine {
    int mr, nr;
    int vw; /* floats per B load: panels of a multiple of vw columns are read in place */
    tile_fn *tile;
    pack_fn *pack_t;
} engine_t;

static void pack_t_scalar(int nc, int kb, const float *B, ptrdiff_t ldb, float *P, int w) {
    for (int k = 0; k < kb; k++)
        for (int j = nc; j < w; j++) P[k * w + j] = 0.0f;
    for (int j = 0; j < nc; j++) {
        const float *b = B + (ptrdiff_t)j * ldb;
        for (int k = 0; k < kb; k++) P[k * w + j] = b[k];
    }
}

/* ---- generic engine (GCC vector extensions) --------------------------------- */

/* 4-float vectors map onto SSE and NEON registers directly.  aligned(4):
 * loads and stores through memcpy into this type may be unaligned. */
typedef float v4f __attribute__((vector_size(16), aligned(4)));

#define GEN_MR 4
#define GEN_NV 2 /* 4 x 8 tile: 8 accumulators, fits 16 registers */

static inline __attribute__((always_inline)) void gen_body(const int MR, int nc, int K, const float *A, ptrdiff_t as,
                                                           int ak, const float *B, ptrdiff_t ldb, float *C,
                                                           ptrdiff_t ldc, int beta) {
    v4f acc[GEN_MR][GEN_NV];
    float tmp[4 * GEN_NV];
#pragma GCC unroll 4
    for (int i = 0; i < MR; i++) {
        memset(tmp, 0, sizeof tmp);
        if (beta) memcpy(tmp, C + i * ldc, (size_t)nc * sizeof(float));
        memcpy(&acc[i][0], tmp, sizeof(v4f));
        memcpy(&acc[i][1], tmp + 4, sizeof(v4f));
    }
    for (int k = 0; k < K; k++) {
        v4f b0, b1;
        memcpy(&b0, B + k * ldb, sizeof b0);
        memcpy(&b1, B + k * ldb + 4, sizeof b1);
#pragma GCC unroll 4
        for (int i = 0; i < MR; i++) {
            float a = ak ? A[i * as + k] : A[k * as + i];
            acc[i][0] += b0 * a;
            acc[i][1] += b1 * a;
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < MR; i++) {
        memcpy(tmp, &acc[i][0], sizeof(v4f));
        memcpy(tmp + 4, &acc[i][1], sizeof(v4f));
        memcpy(C + i * ldc, tmp, (size_t)nc * sizeof(float));
    }
}

/* B rows always hold 8 readable floats here (panels are whole 8-wide
 * vectors or packed), so the second vector is loaded even when nc <= 4. */
static void gen_tile(int mr, int nc, int K, const float *A, ptrdiff_t as, int ak, const float *B, ptrdiff_t ldb,
                     float *C, ptrdiff_t ldc, int beta) {
    switch (mr) {
    case 1: gen_body(1, nc, K, A, as, ak, B, ldb, C, ldc, beta); break;
    case 2: gen_body(2, nc, K, A, as, ak, B, ldb, C, ldc, beta); break;
    case 3: gen_body(3, nc, K, A, as, ak, B, ldb, C, ldc, beta); break;
    default: gen_body(4, nc, K, A, as, ak, B, ldb, C, ldc, beta); break;
    }
}

static const engine_t engine_generic = {GEN_MR, 4 * GEN_NV, 4 * GEN_NV, gen_tile, pack_t_scalar};

#if LA_GEMM_X86
/* ---- AVX-512 engine ------------------------------------------------------------ */

#define TGT512 __attribute__((target("avx512f")))

static inline __attribute__((always_inline)) TGT512 void k512_body(const int MR, const int NV, const int AK, int K,
                                                                   const float *A, ptrdiff_t as, const float *B,
                                                                   ptrdiff_t ldb, float *C, ptrdiff_t ldc, int beta,
                                                                   __mmask16 m0, __mmask16 m1) {
    __m512 c0[8], c1[8];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        c0[i] = beta ? _mm512_maskz_loadu_ps(m0, C + i * ldc) : _mm512_setzero_ps();
        c1[i] = (NV == 2 && beta) ? _mm512_maskz_loadu_ps(m1, C + i * ldc + 16) : _mm512_setzero_ps();
    }
    for (int k = 0; k < K; k++) {
        const float *b = B + k * ldb;
        __m512 b0 = _mm512_loadu_ps(b);
        __m512 b1 = NV == 2 ? _mm512_loadu_ps(b + 16) : b0;
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            __m512 a = _mm512_set1_ps(AK ? A[i * as + k] : A[k * as + i]);
            c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
            if (NV == 2) c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        _mm512_mask_storeu_ps(C + i * ldc, m0, c0[i]);
        if (NV == 2) _mm512_mask_storeu_ps(C + i * ldc + 16, m1, c1[i]);
    }
}

/* One instantiation per (rows, vectors, A layout): constants let the compiler
 * keep every accumulator in a register. */
#define K512_CASE(R)                                                            \
    case R:                                                                     \
        if (nv == 2) {                                                          \
            if (ak) k512_body(R, 2, 1, K, A, as, B, ldb, C, ldc, beta, m0, m1); \
            else k512_body(R, 2, 0, K, A, as, B, ldb, C, ldc, beta, m0, m1);    \
        } else {                                                                \
            if (ak) k512_body(R, 1, 1, K, A, as, B, ldb, C, ldc, beta, m0, m1); \
            else k512_body(R, 1, 0, K, A, as, B, ldb, C, ldc, beta, m0, m1);    \
        }                                                                       \
        break;

static TGT512 void k512_tile(int mr, int nc, int K, const float *A, ptrdiff_t as, int ak, const float *B, ptrdiff_t ldb,
                             float *C, ptrdiff_t ldc, int beta) {
    int nv = nc > 16 ? 2 : 1;
    __mmask16 m0 = nc >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nc) - 1u);
    __mmask16 m1 = nc >= 32 ? (__mmask16)0xffff : nc > 16 ? (__mmask16)((1u << (nc - 16)) - 1u) : (__mmask16)0;
    switch (mr) {
        K512_CASE(1)
        K512_CASE(2) K512_CASE(3) K512_CASE(4) K512_CASE(5) K512_CASE(6) K512_CASE(7) default : K512_CASE(8)
    }
}
#undef K512_CASE

/* In-register transpose of 16 rows of 16 floats (3 rounds of 2-source
 * shuffles: 32-bit pairs, 64-bit pairs, 128-bit lanes twice). */
static inline __attribute__((always_inline)) TGT512 void t512_transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xee);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int i = 0; i < 16; i += 8) {
        for (int j = 0; j < 4; j++) {
            t[i + j] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0x88);
            t[i + j + 4] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0xdd);
        }
    }
    for (int j = 0; j < 8; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
        r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd);
    }
}

static TGT512 void k512_pack_t(int nc, int kb, const float *B, ptrdiff_t ldb, float *P, int w) {
    for (int j0 = 0; j0 < w; j0 += 16) {
        int nj = nc - j0 < 16 ? nc - j0 : 16; /* may be <= 0: an all-zero block */
        for (int k0 = 0; k0 < kb; k0 += 16) {
            int nk = kb - k0 < 16 ? kb - k0 : 16;
            __mmask16 mk = nk == 16 ? (__mmask16)0xffff : (__mmask16)((1u << nk) - 1u);
            __m512 r[16];
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++)
                r[j] = j < nj ? _mm512_maskz_loadu_ps(mk, B + (ptrdiff_t)(j0 + j) * ldb + k0) : _mm512_setzero_ps();
            t512_transpose16(r);
            for (int k = 0; k < nk; k++) _mm512_storeu_ps(P + (ptrdiff_t)(k0 + k) * w + j0, r[k]);
        }
    }
}

static const engine_t engine_avx512 = {8, 32, 16, k512_tile, k512_pack_t};

/* ---- AVX2 + FMA engine ----------------------------------------------------------- */

#define TGT256 __attribute__((target("avx2,fma")))

static inline __attribute__((always_inline)) TGT256 __m256i k256_mask(int n) {
    /* lane j is active when j < n (n clamped to 0..8) */
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

static inline __attribute__((always_inline)) TGT256 void k256_body(const int MR, const int NV, const int AK, int K,
                                                                   const float *A, ptrdiff_t as, const float *B,
                                                                   ptrdiff_t ldb, float *C, ptrdiff_t ldc, int beta,
                                                                   __m256i m0, __m256i m1) {
    __m256 c0[6], c1[6];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
        c0[i] = beta ? _mm256_maskload_ps(C + i * ldc, m0) : _mm256_setzero_ps();
        c1[i] = (NV == 2 && beta) ? _mm256_maskload_ps(C + i * ldc + 8, m1) : _mm256_setzero_ps();
    }
    for (int k = 0; k < K; k++) {
        const float *b = B + k * ldb;
        __m256 b0 = _mm256_loadu_ps(b);
        __m256 b1 = NV == 2 ? _mm256_loadu_ps(b + 8) : b0;
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            __m256 a = _mm256_broadcast_ss(AK ? &A[i * as + k] : &A[k * as + i]);
            c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);
            if (NV == 2) c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);
        }
    }
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
        _mm256_maskstore_ps(C + i * ldc, m0, c0[i]);
        if (NV == 2) _mm256_maskstore_ps(C + i * ldc + 8, m1, c1[i]);
    }
}

#define K256_CASE(R)                                                            \
    case R:                                                                     \
        if (nv == 2) {                                                          \
            if (ak) k256_body(R, 2, 1, K, A, as, B, ldb, C, ldc, beta, m0, m1); \
            else k256_body(R, 2, 0, K, A, as, B, ldb, C, ldc, beta, m0, m1);    \
        } else {                                                                \
            if (ak) k256_body(R, 1, 1, K, A, as, B, ldb, C, ldc, beta, m0, m1); \
            else k256_body(R, 1, 0, K, A, as, B, ldb, C, ldc, beta, m0, m1);    \
        }                                                                       \
        break;

static TGT256 void k256_tile(int mr, int nc, int K, const float *A, ptrdiff_t as, int ak, const float *B, ptrdiff_t ldb,
                             float *C, ptrdiff_t ldc, int beta) {
    int nv = nc > 8 ? 2 : 1;
    __m256i m0 = k256_mask(nc);
    __m256i m1 = k256_mask(nc - 8);
    switch (mr) { K256_CASE(1) K256_CASE(2) K256_CASE(3) K256_CASE(4) K256_CASE(5) default : K256_CASE(6) }
}
#undef K256_CASE

static const engine_t engine_avx2 = {6, 16, 8, k256_tile, pack_t_scalar};
#endif /* LA_GEMM_X86 */

/* LA_GEMM_FORCE_GENERIC / LA_GEMM_FORCE_AVX2 (compile-time, for dev/ tests
 * of the fallbacks on a machine that has AVX-512) cap the choice. */
static const engine_t *pick_engine(void) {
#if LA_GEMM_X86
    int force_generic = 0, force_avx2 = 0;
    __builtin_cpu_init(); /* idempotent; needed if we run before libgcc's constructor */
#ifdef LA_GEMM_FORCE_GENERIC
    force_generic = 1;
#endif
#ifdef LA_GEMM_FORCE_AVX2
    force_avx2 = 1;
#endif
    if (!force_generic && !force_avx2 && __builtin_cpu_supports("avx512f")) return &engine_avx512;
    if (!force_generic && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return &engine_avx2;
#endif
    return &engine_generic;
}

/* ---- drivers ------------------------------------------------------------------------ */

/* Subnormal operands or results cost x86 a microcode assist per operation
 * (tens of times slower; they appear with strong decays), so the products
 * run with flush-to-zero and denormals-are-zero, and the caller's MXCSR is
 * restored on return.  A caller that has set them already pays one read. */
typedef struct fp_mode {
    unsigned saved;
} fp_mode_t;

static fp_mode_t fp_enter(void) {
    fp_mode_t m = {0};
#if LA_GEMM_X86
    m.saved = _mm_getcsr();
    if ((m.saved & 0x8040u) != 0x8040u) _mm_setcsr(m.saved | 0x8040u); /* FTZ | DAZ */
#endif
    return m;
}

static void fp_leave(fp_mode_t m) {
#if LA_GEMM_X86
    if ((m.saved & 0x8040u) != 0x8040u) _mm_setcsr(m.saved);
#else
    (void)m;
#endif
}

/* All row blocks of one column panel: C[0:M, panel] (+)= A[0:M, 0:K] . P where P
 * (K x nc, row stride ldp) holds whole vectors. */
static void run_panel(const engine_t *e, int M, int nc, int K, const float *A, ptrdiff_t lda, int ak, const float *P,
                      ptrdiff_t ldp, float *C, ptrdiff_t ldc, int beta) {
    for (int m0 = 0; m0 < M; m0 += e->mr) {
        int mr = M - m0 < e->mr ? M - m0 : e->mr;
        const float *a = ak ? A + (ptrdiff_t)m0 * lda : A + m0;
        e->tile(mr, nc, K, a, lda, ak, P, ldp, C + (ptrdiff_t)m0 * ldc, ldc, beta);
    }
}

/* Shared by nn and tn: B [K, N] read in place, ragged panels packed. */
static void gemm_bn(int M, int N, int K, const float *A, int lda, int ak, const float *B, int ldb, float *C, int ldc,
                    int beta) {
    const engine_t *e = pick_engine();
    for (int n0 = 0; n0 < N; n0 += e->nr) {
        int nc = N - n0 < e->nr ? N - n0 : e->nr;
        if (nc % e->vw == 0) {
            run_panel(e, M, nc, K, A, lda, ak, B + n0, ldb, C + n0, ldc, beta);
            continue;
        }
        /* A ragged panel: copy it, zero-padded to whole vectors, KB rows at a time. */
        float P[KB * NR_MAX] __attribute__((aligned(64)));
        int w = (nc + 15) / 16 * 16;
        for (int k0 = 0; k0 < K || k0 == 0; k0 += KB) {
            int kb = K - k0 < KB ? K - k0 : KB;
            for (int k = 0; k < kb; k++) {
                memcpy(P + k * w, B + (ptrdiff_t)(k0 + k) * ldb + n0, (size_t)nc * sizeof(float));
                memset(P + k * w + nc, 0, (size_t)(w - nc) * sizeof(float));
            }
            const float *a = ak ? A + k0 : A + (ptrdiff_t)k0 * lda;
            run_panel(e, M, nc, kb, a, lda, ak, P, w, C + n0, ldc, beta || k0 > 0);
        }
    }
}

void cpu_gemm_nn(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc, int beta) {
    fp_mode_t fp = fp_enter();
    gemm_bn(M, N, K, A, lda, 1, B, ldb, C, ldc, beta);
    fp_leave(fp);
}

void cpu_gemm_tn(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc, int beta) {
    fp_mode_t fp = fp_enter();
    gemm_bn(M, N, K, A, lda, 0, B, ldb, C, ldc, beta);
    fp_leave(fp);
}

/* B stored [N, K]: each panel of B^T is transposed into the stack buffer. */
static void gemm_nt(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc,
                    int beta) {
    const engine_t *e = pick_engine();
    float P[KB * NR_MAX] __attribute__((aligned(64)));
    for (int n0 = 0; n0 < N; n0 += e->nr) {
        int nc = N - n0 < e->nr ? N - n0 : e->nr;
        int w = (nc + 15) / 16 * 16;
        for (int k0 = 0; k0 < K || k0 == 0; k0 += KB) {
            int kb = K - k0 < KB ? K - k0 : KB;
            e->pack_t(nc, kb, B + (ptrdiff_t)n0 * ldb + k0, ldb, P, w);
            run_panel(e, M, nc, kb, A + k0, lda, 1, P, w, C + n0, ldc, beta || k0 > 0);
        }
    }
}

void cpu_gemm_nt(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc, int beta) {
    fp_mode_t fp = fp_enter();
    gemm_nt(M, N, K, A, lda, B, ldb, C, ldc, beta);
    fp_leave(fp);
}
