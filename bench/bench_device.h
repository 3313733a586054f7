/*
 * bench_device.h - where the benchmark's tensors live and how it times.
 * Host memory and a monotonic clock for the CPU backend; device memory, CUDA
 * events and an L2 flush before every timed call for the CUDA backend (the
 * latter only in builds with CUDA: LA_BENCH_CUDA).
 */
#ifndef LA_BENCH_DEVICE_H
#define LA_BENCH_DEVICE_H

#include <stddef.h>

typedef struct bdev {
    int cuda;
    void *flush; /* device buffer of twice the L2 size, rewritten before each timing */
    size_t flush_bytes;
    void *ev[2];
    double t0;
    char name[256]; /* device name for the report */
} bdev_t;

/* 0 on success; cuda = 1 asks for the GPU (fails when the build has no CUDA). */
int bdev_init(bdev_t *b, int cuda);
void bdev_destroy(bdev_t *b);
void *bdev_alloc(bdev_t *b, size_t bytes);
void bdev_free(bdev_t *b, void *p);
void bdev_upload(bdev_t *b, void *dst, const void *src, size_t bytes);
void bdev_download(bdev_t *b, void *dst, const void *src, size_t bytes);
/* Evict the inputs from the GPU's L2 (no-op on the CPU). */
void bdev_flush_l2(bdev_t *b);
void bdev_timer_start(bdev_t *b);
/* Milliseconds since bdev_timer_start, after all queued work finished. */
double bdev_timer_stop_ms(bdev_t *b);
/* Measured copy bandwidth in GB/s (bytes read + bytes written per second):
 * device-to-device copies on the GPU, memcpy on the CPU; median of 5. */
double bdev_copy_gbps(bdev_t *b);
/* Bytes in use on the device right now (0 on the CPU). */
size_t bdev_used_bytes(bdev_t *b);

#endif
