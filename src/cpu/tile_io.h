/*
 * tile_io.h - moving [rows, cols] tiles between strided typed tensors and
 * contiguous fp32 buffers.  The only place the CPU kernels touch dtypes and
 * strides; everything past a load is dense fp32.
 */
#ifndef LA_CPU_TILE_IO_H
#define LA_CPU_TILE_IO_H

#include "cpu_kernels.h"

/* dst[r*ld + c] = v[t0 + r, c] as fp32 for r < rows, c < cols; columns
 * cols..ld-1 are zero-filled (kernels pad widths for the SIMD gemm). */
void cpu_load_tile(const cpu_view_t *v, int64_t t0, int rows, int cols, float *dst, int ld);
/* v[t0 + r, c] = src[r*ld + c], rounded to the view's dtype. */
void cpu_store_tile(const cpu_view_t *v, int64_t t0, int rows, int cols, const float *src, int ld);
/* One scalar per token: dst[r] = v[t0 + r, 0]. */
void cpu_load_col(const cpu_view_t *v, int64_t t0, int rows, float *dst);
void cpu_store_col(const cpu_view_t *v, int64_t t0, int rows, const float *src);

/* Whole states: dense [D, ld] fp32 buffer <-> strided f32 state. */
void cpu_load_state(const cpu_state_view_t *s, int D, int E, float *dst, int ld);
void cpu_store_state(const cpu_state_view_t *s, int D, int E, const float *src, int ld);

/* Scalar conversions. */
float la_half_to_float(uint16_t h);
uint16_t la_float_to_half(float f);
float la_bf16_to_float(uint16_t h);
uint16_t la_float_to_bf16(float f);

#endif
