/*
 * gemm.h - the fp32 matrix products of the CPU kernels.
 *
 * Row-major, fp32, small (chunk-sized: M, K up to a few hundred).  N is the
 * vectorised dimension and must be a multiple of LA_CPU_NPAD; callers pad
 * their buffers (tile_io zero-fills the padding).  M and K are arbitrary.
 * beta is 0 (overwrite C) or 1 (accumulate into C).
 */
#ifndef LA_CPU_GEMM_H
#define LA_CPU_GEMM_H

#define LA_CPU_NPAD 16

/* C[M,N] = beta C + A[M,K] . B[K,N] */
void cpu_gemm_nn(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                 float *C, int ldc, int beta);
/* C[M,N] = beta C + A^T . B, with A stored [K, M] */
void cpu_gemm_tn(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                 float *C, int ldc, int beta);
/* C[M,N] = beta C + A[M,K] . B^T, with B stored [N, K]; here N need NOT be
 * padded (used for Q K^T-like products, N = chunk length). */
void cpu_gemm_nt(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                 float *C, int ldc, int beta);

#endif
