/* bench_device.c - see bench_device.h. */
#define _POSIX_C_SOURCE 200809L
#include "bench_device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef LA_BENCH_CUDA
#include <cuda_runtime.h>
#endif

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

int bdev_init(bdev_t *b, int cuda) {
    memset(b, 0, sizeof *b);
    strcpy(b->name, "CPU");
    if (!cuda) return 0;
#ifdef LA_BENCH_CUDA
    int dev = 0, l2 = 0;
    struct cudaDeviceProp prop;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess) return -1;
    snprintf(b->name, sizeof b->name, "%s", prop.name);
    cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev);
    b->flush_bytes = (size_t)(l2 > 0 ? l2 : 64 << 20) * 2;
    if (cudaMalloc(&b->flush, b->flush_bytes) != cudaSuccess) return -1;
    cudaEventCreate((cudaEvent_t *)&b->ev[0]);
    cudaEventCreate((cudaEvent_t *)&b->ev[1]);
    b->cuda = 1;
    return 0;
#else
    return -1;
#endif
}

void bdev_destroy(bdev_t *b) {
#ifdef LA_BENCH_CUDA
    if (b->cuda) {
        cudaFree(b->flush);
        cudaEventDestroy((cudaEvent_t)b->ev[0]);
        cudaEventDestroy((cudaEvent_t)b->ev[1]);
    }
#endif
    (void)b;
}

void *bdev_alloc(bdev_t *b, size_t bytes) {
#ifdef LA_BENCH_CUDA
    if (b->cuda) {
        void *p = NULL;
        return cudaMalloc(&p, bytes ? bytes : 1) == cudaSuccess ? p : NULL;
    }
#endif
    (void)b;
    return malloc(bytes ? bytes : 1);
}

void bdev_free(bdev_t *b, void *p) {
#ifdef LA_BENCH_CUDA
    if (b->cuda) {
        cudaFree(p);
        return;
    }
#endif
    (void)b;
    free(p);
}

void bdev_upload(bdev_t *b, void *dst, const void *src, size_t bytes) {
#ifdef LA_BENCH_CUDA
    if (b->cuda) {
        cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
        return;
    }
#endif
    (void)b;
    if (dst != src) memcpy(dst, src, bytes);
}

void bdev_download(bdev_t *b, void *dst, const void *src, size_t bytes) {
#ifdef LA_BENCH_CUDA
    if (b->cuda) {
        cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost);
        return;
    }
#endif
    (void)b;
    if (dst != src) memcpy(dst, src, bytes);
}

void bdev_flush_l2(bdev_t *b) {
#ifdef LA_BENCH_CUDA
    if (b->cuda) cudaMemsetAsync(b->flush, (int)(b->t0) & 0xff, b->flush_bytes, 0);
#endif
    (void)b;
}

void bdev_timer_start(bdev_t *b) {
#ifdef LA_BENCH_CUDA
    if (b->cuda) {
        cudaEventRecord((cudaEvent_t)b->ev[0], 0);
        return;
    }
#endif
    b->t0 = now_ms();
}

double bdev_timer_stop_ms(bdev_t *b) {
#ifdef LA_BENCH_CUDA
    if (b->cuda) {
        float ms = 0.0f;
        cudaEventRecord((cudaEvent_t)b->ev[1], 0);
        cudaEventSynchronize((cudaEvent_t)b->ev[1]);
        cudaEventElapsedTime(&ms, (cudaEvent_t)b->ev[0], (cudaEvent_t)b->ev[1]);
        return ms;
    }
#endif
    return now_ms() - b->t0;
}

static int cmp_ms(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bdev_copy_gbps(bdev_t *b) {
    size_t half = b->cuda ? b->flush_bytes / 2 : (size_t)64 << 20;
    char *cpu = b->cuda ? NULL : malloc(2 * half);
    if (!b->cuda && !cpu) return 0.0;
    if (cpu) memset(cpu, 1, 2 * half);
    /* Through a volatile pointer: the copy's result is never read, and clang
     * otherwise drops the memcpy (a bandwidth of millions of GB/s). */
    void *(*volatile copy)(void *, const void *, size_t) = memcpy;
    double ms[6];
    for (int r = 0; r < 6; r++) {
        bdev_timer_start(b);
#ifdef LA_BENCH_CUDA
        if (b->cuda) cudaMemcpyAsync((char *)b->flush + half, b->flush, half, cudaMemcpyDeviceToDevice, 0);
#endif
        if (cpu) copy(cpu + half, cpu, half);
        ms[r] = bdev_timer_stop_ms(b);
    }
    free(cpu);
    qsort(ms + 1, 5, sizeof(double), cmp_ms); /* ms[0]: warm-up */
    return ms[3] > 0 ? 2.0 * (double)half / (ms[3] * 1e6) : 0.0;
}

size_t bdev_used_bytes(bdev_t *b) {
#ifdef LA_BENCH_CUDA
    if (b->cuda) {
        size_t free_b = 0, total = 0;
        cudaDeviceSynchronize();
        if (cudaMemGetInfo(&free_b, &total) == cudaSuccess) return total - free_b;
    }
#endif
    (void)b;
    return 0;
}
