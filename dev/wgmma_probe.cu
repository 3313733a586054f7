/*
 * wgmma_probe.cu - checks, on an sm_90 GPU, the wgmma operand conventions the
 * Hopper forward kernel relies on (not part of the library):
 *   1. A and B from shared memory, both K-major (Q K^T)
 *   2. A K-major, B MN-major, both LBO/SBO assignments (Q S, P V)
 *   3. A from registers (accumulator-shaped fragments), B MN-major (P V)
 *   4. A from registers via ldmatrix.trans of a [k][m] tile (K^T V)
 * Tiles use the no-swizzle core-matrix layout: 8 rows x 16 bytes contiguous,
 * core matrix (rb, cb) of a [R][C] tile at ((rb * C/8) + cb) * 128 bytes.
 * Build: nvcc -gencode=arch=compute_90a,code=sm_90a -o wgmma_probe dev/wgmma_probe.cu
 */
#include <cuda_bf16.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>

#define M 64
#define N 64
#define K 32

__device__ uint32_t cm_off(int r, int c, int C) { return ((r >> 3) * (C >> 3) + (c >> 3)) * 128 + (r & 7) * 16 + (c & 7) * 2; }

__device__ uint64_t desc(uint32_t saddr, uint32_t lbo, uint32_t sbo) {
    return (uint64_t)((saddr & 0x3FFFF) >> 4) | ((uint64_t)(lbo >> 4) << 16) | ((uint64_t)(sbo >> 4) << 32);
}

#define ACC32(d) "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
    "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
    "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
    "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define R32 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}"

template <int TB>
__device__ void wg_ss(float *d, uint64_t da, uint64_t db) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " R32 ", %32, %33, 1, 1, 1, 0, %34;\n"
                 : ACC32(d) : "l"(da), "l"(db), "n"(TB));
}
__device__ void wg_rs(float *d, const uint32_t *a, uint64_t db) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " R32 ", {%32,%33,%34,%35}, %36, 1, 1, 1, 1;\n"
                 : ACC32(d) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
}
__device__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ void wg_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
__device__ void fence_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

__device__ uint32_t pack(float a, float b) {
    __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<uint32_t *>(&v);
}

/* a: [M][K] row-major, b: [K][N] row-major (math B), x: [K][M] (A^T stored) */
__global__ void probe(const float *a, const float *b, float *out /* [6][M][N] */) {
    /* One dynamic buffer with room after each tile: a wrong stride reads
     * shared memory past the tile, not past the block's allocation. */
    extern __shared__ __align__(128) unsigned char smem[];
    unsigned char *sA = smem, *sBk = smem + 4096, *sX = smem + 8192, *sBm = smem + 12288;
    const int t = threadIdx.x, w = t >> 5, l = t & 31, g = l >> 2, q = l & 3;
    for (int i = t; i < M * K; i += 128) {
        int r = i / K, c = i % K;
        *reinterpret_cast<__nv_bfloat16 *>(sA + cm_off(r, c, K)) = __float2bfloat16(a[i]);
        *reinterpret_cast<__nv_bfloat16 *>(sX + cm_off(c, r, M)) = __float2bfloat16(a[i]); /* X[k][m] = A[m][k] */
    }
    for (int i = t; i < K * N; i += 128) {
        int r = i / N, c = i % N;
        *reinterpret_cast<__nv_bfloat16 *>(sBk + cm_off(c, r, K)) = __float2bfloat16(b[i]); /* [n][k] */
        *reinterpret_cast<__nv_bfloat16 *>(sBm + cm_off(r, c, N)) = __float2bfloat16(b[i]); /* [k][n] */
    }
    fence_async();
    __syncthreads();
    const uint32_t aA = (uint32_t)__cvta_generic_to_shared(sA), aBk = (uint32_t)__cvta_generic_to_shared(sBk);
    const uint32_t aBm = (uint32_t)__cvta_generic_to_shared(sBm), aX = (uint32_t)__cvta_generic_to_shared(sX);
    float d[6][32];
    for (int v = 0; v < 6; v++)
        for (int i = 0; i < 32; i++) d[v][i] = 0.0f;
    wg_fence();
    for (int kk = 0; kk < K / 16; kk++) {
        /* 1: A K-major (LBO = K-dir 128, SBO = M-dir K/8*128), B K-major */
        wg_ss<0>(d[0], desc(aA + kk * 256, 128, K / 8 * 128), desc(aBk + kk * 256, 128, K / 8 * 128));
        /* 2a: B MN-major, LBO = K-dir core stride (N/8*128), SBO = N-dir (128) */
        wg_ss<1>(d[1], desc(aA + kk * 256, 128, K / 8 * 128), desc(aBm + kk * 2 * N / 8 * 128, N / 8 * 128, 128));
        /* 2b: the other way round */
        wg_ss<1>(d[2], desc(aA + kk * 256, 128, K / 8 * 128), desc(aBm + kk * 2 * N / 8 * 128, 128, N / 8 * 128));
    }
    wg_commit();
    wg_wait0();
    /* 3: A from registers (row-major a, the accumulator-shaped fragment) */
    for (int kk = 0; kk < K / 16; kk++) {
        const int r0 = 16 * w + g, c0 = 16 * kk + 2 * q;
        uint32_t ar[4] = {pack(a[r0 * K + c0], a[r0 * K + c0 + 1]), pack(a[(r0 + 8) * K + c0], a[(r0 + 8) * K + c0 + 1]),
                          pack(a[r0 * K + c0 + 8], a[r0 * K + c0 + 9]),
                          pack(a[(r0 + 8) * K + c0 + 8], a[(r0 + 8) * K + c0 + 9])};
        /* 4: A^T via ldmatrix.trans of X = [k][m]: matrix mi = l/8: m block 16w + (mi&1)*8, k block 16kk + (mi>>1)*8 */
        const int mi = l >> 3;
        const uint32_t row = aX + cm_off(16 * kk + (mi >> 1) * 8 + (l & 7), 16 * w + (mi & 1) * 8, M);
        uint32_t ax[4];
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(ax[0]), "=r"(ax[1]), "=r"(ax[2]), "=r"(ax[3]) : "r"(row));
        wg_fence();
        wg_rs(d[3], ar, desc(aBm + kk * 2 * N / 8 * 128, N / 8 * 128, 128));
        wg_rs(d[4], ar, desc(aBm + kk * 2 * N / 8 * 128, 128, N / 8 * 128));
        wg_rs(d[5], ax, desc(aBm + kk * 2 * N / 8 * 128, N / 8 * 128, 128));
        wg_commit();
        wg_wait0();
    }
    /* accumulator layout: n8 block i: (16w+g, 8i+2q), (.., +1), (16w+g+8, 8i+2q), (.., +1) */
    for (int v = 0; v < 6; v++)
        for (int i = 0; i < 8; i++)
            for (int r = 0; r < 4; r++) {
                int row = 16 * w + g + (r >> 1) * 8, col = 8 * i + 2 * q + (r & 1);
                out[(v * M + row) * N + col] = d[v][4 * i + r];
            }
}

static float bf(float x) { return __bfloat162float(__float2bfloat16(x)); }

int main(void) {
    float ha[M * K], hb[K * N], ref[M * N], *hout = (float *)malloc(6 * M * N * 4);
    srand(7);
    for (int i = 0; i < M * K; i++) ha[i] = bf((float)rand() / RAND_MAX - 0.5f);
    for (int i = 0; i < K * N; i++) hb[i] = bf((float)rand() / RAND_MAX - 0.5f);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)ha[m * K + k] * hb[k * N + n];
            ref[m * N + n] = (float)s;
        }
    float *da, *db, *dout;
    cudaMalloc(&da, sizeof ha); cudaMalloc(&db, sizeof hb); cudaMalloc(&dout, 6 * M * N * 4);
    cudaMemcpy(da, ha, sizeof ha, cudaMemcpyHostToDevice);
    cudaMemcpy(db, hb, sizeof hb, cudaMemcpyHostToDevice);
    cudaFuncSetAttribute(probe, cudaFuncAttributeMaxDynamicSharedMemorySize, 96 * 1024);
    probe<<<1, 128, 96 * 1024>>>(da, db, dout);
    cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess) { printf("error %s\n", cudaGetErrorString(e)); return 1; }
    cudaMemcpy(hout, dout, 6 * M * N * 4, cudaMemcpyDeviceToHost);
    const char *name[6] = {"SS K-major B", "SS MN-major B, LBO=K-dir", "SS MN-major B, LBO=N-dir",
                           "RS MN-major B, LBO=K-dir", "RS MN-major B, LBO=N-dir", "RS ldmatrix.trans A, LBO=K-dir"};
    for (int v = 0; v < 6; v++) {
        double err = 0;
        for (int i = 0; i < M * N; i++) err = fmax(err, fabs(hout[v * M * N + i] - ref[i]));
        printf("%-34s max abs err %.3e  %s\n", name[v], err, err < 1e-3 ? "OK" : "WRONG");
    }
    return 0;
}
