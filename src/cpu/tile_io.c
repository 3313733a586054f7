/* tile_io.c - strided typed tensors <-> dense fp32 tiles (see tile_io.h). */
#include "tile_io.h"

#include <string.h>

/* IEEE half <-> float by bit manipulation, so the build needs no F16C. */
float la_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            int e = -1;
            do {
                man <<= 1;
                e++;
            } while (!(man & 0x400u));
            bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t la_float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0));
    if (ax >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u) {                          /* result is subnormal or zero */
        if (ax < 0x33000000u) return (uint16_t)sign; /* < 2^-25 rounds to 0 */
        uint32_t e = ax >> 23;
        uint32_t man = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t r = ax + 0x0fffu + ((ax >> 13) & 1u); /* round to nearest even */
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

float la_bf16_to_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t la_float_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet nan */
    x += 0x7fffu + ((x >> 16) & 1u);                                           /* round to nearest even */
    return (uint16_t)(x >> 16);
}

static inline float load_elem(const char *base, la_dtype_t dt, int64_t off) {
    switch (dt) {
    case LA_DTYPE_F16: return la_half_to_float(((const uint16_t *)base)[off]);
    case LA_DTYPE_BF16: return la_bf16_to_float(((const uint16_t *)base)[off]);
    default: return ((const float *)base)[off];
    }
}

static inline void store_elem(char *base, la_dtype_t dt, int64_t off, float x) {
    switch (dt) {
    case LA_DTYPE_F16: ((uint16_t *)base)[off] = la_float_to_half(x); break;
    case LA_DTYPE_BF16: ((uint16_t *)base)[off] = la_float_to_bf16(x); break;
    default: ((float *)base)[off] = x; break;
    }
}

void cpu_load_tile(const cpu_view_t *v, int64_t t0, int rows, int cols, float *dst, int ld) {
    for (int r = 0; r < rows; r++) {
        float *d = dst + (int64_t)r * ld;
        int64_t row = (t0 + r) * v->st;
        if (v->dtype == LA_DTYPE_F32 && v->sc == 1) {
            memcpy(d, (const float *)v->ptr + row, (size_t)cols * sizeof(float));
        } else if (v->dtype == LA_DTYPE_BF16 && v->sc == 1) {
            const uint16_t *s = (const uint16_t *)v->ptr + row;
            for (int c = 0; c < cols; c++) {
                uint32_t bits = (uint32_t)s[c] << 16;
                memcpy(&d[c], &bits, 4);
            }
        } else {
            for (int c = 0; c < cols; c++) d[c] = load_elem(v->ptr, v->dtype, row + c * v->sc);
        }
        for (int c = cols; c < ld; c++) d[c] = 0.0f;
    }
}

void cpu_store_tile(const cpu_view_t *v, int64_t t0, int rows, int cols, const float *src, int ld) {
    for (int r = 0; r < rows; r++) {
        const float *s = src + (int64_t)r * ld;
        int64_t row = (t0 + r) * v->st;
        if (v->dtype == LA_DTYPE_F32 && v->sc == 1) {
            memcpy((float *)v->ptr + row, s, (size_t)cols * sizeof(float));
        } else {
            for (int c = 0; c < cols; c++) store_elem(v->ptr, v->dtype, row + c * v->sc, s[c]);
        }
    }
}

void cpu_load_col(const cpu_view_t *v, int64_t t0, int rows, float *dst) {
    for (int r = 0; r < rows; r++) dst[r] = load_elem(v->ptr, v->dtype, (t0 + r) * v->st);
}

void cpu_store_col(const cpu_view_t *v, int64_t t0, int rows, const float *src) {
    for (int r = 0; r < rows; r++) store_elem(v->ptr, v->dtype, (t0 + r) * v->st, src[r]);
}

void cpu_load_state(const cpu_state_view_t *s, int D, int E, float *dst, int ld) {
    for (int d = 0; d < D; d++) {
        float *row = dst + (int64_t)d * ld;
        if (s->ptr) {
            const float *src = s->ptr + d * s->sd;
            for (int e = 0; e < E; e++) row[e] = src[e * s->se];
        } else {
            for (int e = 0; e < E; e++) row[e] = 0.0f;
        }
        for (int e = E; e < ld; e++) row[e] = 0.0f;
    }
}

void cpu_store_state(const cpu_state_view_t *s, int D, int E, const float *src, int ld) {
    for (int d = 0; d < D; d++) {
        float *dst = s->ptr + d * s->sd;
        const float *row = src + (int64_t)d * ld;
        for (int e = 0; e < E; e++) dst[e * s->se] = row[e];
    }
}
