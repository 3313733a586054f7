/*
 * gemm.h - the fp32 matrix products of the CPU kernels.
 *
 * Row-major, fp32, small (chunk-sized: M, K up to a few hundred).  N is the
 * vectorised dimension; whole multiples of LA_CPU_NPAD are read in place,
 * any other N goes through a packed panel (a 32 KiB stack buffer).  M and K
 * are arbitrary.  beta is 0 (overwrite C) or 1 (accumulate into C).  Each
 * call runs with flush-to-zero set on the calling thread (restored on
 * return): strong decays produce subnormals that are 25x slower and below
 * fp32 accuracy anyway.  The engine (AVX-512, AVX2+FMA, portable) is chosen
 * at run time.
 */
#ifndef LA_CPU_GEMM_H
#define LA_CPU_GEMM_H

#define LA_CPU_NPAD 16

/* C[M,N] = beta C + A[M,K] . B[K,N] */
void cpu_gemm_nn(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc, int beta);
/* C[M,N] = beta C + A^T . B, with A stored [K, M] */
void cpu_gemm_tn(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc, int beta);
/* C[M,N] = beta C + A[M,K] . B^T, with B stored [N, K] (Q K^T-like products). */
void cpu_gemm_nt(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc, int beta);

#endif
