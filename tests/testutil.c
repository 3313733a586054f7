/* testutil.c - see testutil.h.  Independent of the library's own code. */
#define _POSIX_C_SOURCE 200809L

#include "testutil.h"

#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- RNG -------------------------------------------------------------------- */

uint64_t tu_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void tu_rng_seed(tu_rng_t *r, uint64_t seed) {
    uint64_t st = seed;
    for (int i = 0; i < 4; i++) r->s[i] = tu_splitmix64(&st);
}

static uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t tu_rng_next(tu_rng_t *r) { /* xoshiro256** */
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

double tu_uniform(tu_rng_t *r) {
    /* 53 random bits, shifted by half a step: strictly inside (0, 1). */
    return ((double)(tu_rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

double tu_normal(tu_rng_t *r) {
    double u1 = tu_uniform(r), u2 = tu_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t tu_below(tu_rng_t *r, uint64_t n) { return n ? tu_rng_next(r) % n : 0; }

const tu_status_name_t tu_statuses[] = {
    {LA_STATUS_SUCCESS, "LA_STATUS_SUCCESS"},
    {LA_STATUS_BAD_PARAM, "LA_STATUS_BAD_PARAM"},
    {LA_STATUS_NULL_POINTER, "LA_STATUS_NULL_POINTER"},
    {LA_STATUS_BAD_SHAPE, "LA_STATUS_BAD_SHAPE"},
    {LA_STATUS_BAD_STRIDE, "LA_STATUS_BAD_STRIDE"},
    {LA_STATUS_BAD_DECAY, "LA_STATUS_BAD_DECAY"},
    {LA_STATUS_BAD_SEQLENS, "LA_STATUS_BAD_SEQLENS"},
    {LA_STATUS_OVERLAP, "LA_STATUS_OVERLAP"},
    {LA_STATUS_BAD_VERSION, "LA_STATUS_BAD_VERSION"},
    {LA_STATUS_BAD_SCALE, "LA_STATUS_BAD_SCALE"},
    {LA_STATUS_HANDLE_BUSY, "LA_STATUS_HANDLE_BUSY"},
    {LA_STATUS_BAD_SLOT, "LA_STATUS_BAD_SLOT"},
    {LA_STATUS_NOT_SUPPORTED, "LA_STATUS_NOT_SUPPORTED"},
    {LA_STATUS_UNSUPPORTED_DTYPE, "LA_STATUS_UNSUPPORTED_DTYPE"},
    {LA_STATUS_UNSUPPORTED_HEAD_DIM, "LA_STATUS_UNSUPPORTED_HEAD_DIM"},
    {LA_STATUS_UNSUPPORTED_DECAY, "LA_STATUS_UNSUPPORTED_DECAY"},
    {LA_STATUS_BACKEND_UNAVAILABLE, "LA_STATUS_BACKEND_UNAVAILABLE"},
    {LA_STATUS_ALLOC_FAILED, "LA_STATUS_ALLOC_FAILED"},
    {LA_STATUS_WORKSPACE_TOO_SMALL, "LA_STATUS_WORKSPACE_TOO_SMALL"},
    {LA_STATUS_EXECUTION_FAILED, "LA_STATUS_EXECUTION_FAILED"},
    {LA_STATUS_INTERNAL_ERROR, "LA_STATUS_INTERNAL_ERROR"},
};
_Static_assert(sizeof tu_statuses / sizeof tu_statuses[0] == TU_NUM_STATUSES, "one entry per status");

uint64_t tu_hash_str(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

double tu_logsigmoid(double x) { return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)); }

/* ---- problems ----------------------------------------------------------------- */

la_problem_t tu_problem(int64_t B, int64_t H, int64_t N, int64_t D, int64_t E, la_decay_t decay) {
    la_problem_t p;
    la_problem_init(&p);
    p.batch = B;
    p.heads = H;
    p.seqlen = N;
    p.dim_qk = D;
    p.dim_v = E;
    p.decay = decay;
    return p;
}

/* ---- rounding ----------------------------------------------------------------- */

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t tu_f32_to_bf16(float f) {
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it a (quiet) NaN */
        return (uint16_t)((u >> 16) | 0x0040u);
    /* Round to nearest even on the 16 dropped bits; carries into the
     * exponent (and up to infinity) are the correct rounding. */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float tu_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t tu_f32_to_f16(float f) {
    uint32_t u = f2u(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);   /* NaN */
    if (a == 0x7f800000u) return (uint16_t)(sign | 0x7c00u);  /* Inf */
    int e = a >> 23 ? (int)(a >> 23) - 127 : -126;            /* unbiased exponent (f32 subnormals: -126) */
    uint32_t m = (a & 0x7fffffu) | (a >> 23 ? 0x800000u : 0); /* 24-bit significand */
    if (a == 0) return sign;
    /* value = m * 2^(e - 23).  f16 quantum: 2^(e-10) for normals (e >= -14),
     * 2^-24 for subnormals.  Express the result as an integer count q of
     * quanta of 2^(qe), rounding m * 2^(e-23) / 2^qe to nearest even. */
    int qe = e >= -14 ? e - 10 : -24;
    int shift = qe - (e - 23); /* bits of m to drop, >= 13 */
    uint32_t q;
    if (shift >= 32) {
        q = 0;
        /* below half the smallest quantum: rounds to zero */
    } else {
        q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
    }
    if (e < -14) {
        /* subnormal result: q quanta of 2^-24 (q == 1024 is the smallest normal,
         * whose encoding 0x400 is exactly q) */
        return (uint16_t)(sign | q);
    }
    /* normal: q in [1024, 2048]; 2048 means the exponent carries */
    int be = e + 15;
    if (q == 2048u) {
        q = 1024u;
        be++;
    }
    if (be >= 31) return (uint16_t)(sign | 0x7c00u); /* overflow to infinity */
    return (uint16_t)(sign | ((uint32_t)be << 10) | (q - 1024u));
}

float tu_f16_to_f32(uint16_t h) {
    double sign = (h & 0x8000u) ? -1.0 : 1.0;
    int be = (h >> 10) & 0x1f;
    int m = h & 0x3ff;
    if (be == 31) return m ? u2f(0x7fc00000u) : (float)(sign * INFINITY);
    if (be == 0) return (float)(sign * ldexp((double)m, -24));
    return (float)(sign * ldexp((double)(m + 1024), be - 25));
}

double tu_round(la_dtype_t dtype, double x) {
    float f = (float)x;
    switch (dtype) {
    case LA_DTYPE_F16: return tu_f16_to_f32(tu_f32_to_f16(f));
    case LA_DTYPE_BF16: return tu_bf16_to_f32(tu_f32_to_bf16(f));
    default: return f;
    }
}

size_t tu_dtype_size(la_dtype_t dtype) {
    switch (dtype) {
    case LA_DTYPE_F32: return 4;
    case LA_DTYPE_F16: return 2;
    case LA_DTYPE_BF16: return 2;
    default: return 4; /* invalid dtypes (API tests) get f32-sized storage */
    }
}

const char *tu_dtype_name(la_dtype_t dtype) {
    switch (dtype) {
    case LA_DTYPE_F32: return "f32";
    case LA_DTYPE_F16: return "f16";
    case LA_DTYPE_BF16: return "bf16";
    default: return "bad-dtype";
    }
}

const char *tu_layout_name(tu_layout_t layout) {
    switch (layout) {
    case TU_BHND: return "bhnd";
    case TU_BNHD: return "bnhd";
    case TU_BHND_PAD: return "bhnd_pad";
    case TU_BNHD_PAD: return "bnhd_pad";
    case TU_INTERLEAVED: return "interleaved";
    default: return "?";
    }
}

/* ---- tensors --------------------------------------------------------------------- */

static const tu_mem_ops_t *g_mem = NULL;
void tu_set_mem_ops(const tu_mem_ops_t *ops) { g_mem = ops; }
const tu_mem_ops_t *tu_get_mem_ops(void) { return g_mem; }

#define GAP_BYTE 0xE7u

static unsigned char guard_byte(size_t i, int back) { return (unsigned char)(0xA5u ^ (i * 37u) ^ (back ? 0x5Au : 0u)); }

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "testutil: out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

void tu_alloc_strided(tu_tensor_t *t, const char *name, la_dtype_t dtype, const int64_t dim[4],
                      const int64_t stride[4]) {
    memset(t, 0, sizeof *t);
    t->name = name;
    t->dtype = dtype;
    t->layout = TU_BHND;
    t->esize = tu_dtype_size(dtype);
    int64_t span = 1, empty = 0;
    for (int i = 0; i < 4; i++) {
        t->dim[i] = dim[i];
        t->stride[i] = stride[i];
        if (dim[i] <= 0) empty = 1;
        else span += (dim[i] - 1) * stride[i];
    }
    t->span = empty ? 0 : span;
    /* at least one element so that data pointers are never NULL */
    t->bytes = (size_t)(t->span > 0 ? t->span : 1) * t->esize;
    size_t total = t->bytes + 2 * TU_GUARD_BYTES;
    t->host = xmalloc(total);
    for (size_t i = 0; i < TU_GUARD_BYTES; i++) {
        t->host[i] = guard_byte(i, 0);
        t->host[TU_GUARD_BYTES + t->bytes + i] = guard_byte(i, 1);
    }
    memset(t->host + TU_GUARD_BYTES, GAP_BYTE, t->bytes);
    if (g_mem) {
        t->dev = g_mem->alloc(total);
        if (!t->dev) {
            fprintf(stderr, "testutil: device allocation of %zu bytes failed\n", total);
            exit(2);
        }
        g_mem->to_device(t->dev, t->host, total);
    } else {
        t->dev = t->host;
    }
}

void tu_alloc(tu_tensor_t *t, const char *name, la_dtype_t dtype, tu_layout_t layout, int64_t d0, int64_t d1,
              int64_t d2, int64_t d3) {
    int64_t dim[4] = {d0, d1, d2, d3};
    /* physical order, outermost first */
    int perm_bhnd[4] = {0, 1, 2, 3}, perm_bnhd[4] = {0, 2, 1, 3};
    const int *perm = (layout == TU_BNHD || layout == TU_BNHD_PAD) ? perm_bnhd : perm_bhnd;
    int pad = (layout == TU_BHND_PAD || layout == TU_BNHD_PAD);
    static const int64_t gaps[4] = {0, 7, 5, 3}; /* gap after each level's block */
    int64_t inner = layout == TU_INTERLEAVED ? 2 : 1;
    int64_t stride[4];
    int64_t s = inner;
    for (int lev = 3; lev >= 0; lev--) {
        stride[perm[lev]] = s;
        int64_t ext = dim[perm[lev]] > 0 ? dim[perm[lev]] : 1;
        s = ext * s + (pad && lev > 0 ? gaps[lev] : 0);
    }
    tu_alloc_strided(t, name, dtype, dim, stride);
    t->layout = layout;
}

void tu_free(tu_tensor_t *t) {
    if (t->host && g_mem && t->dev && t->dev != (void *)t->host) g_mem->free(t->dev);
    free(t->host);
    free(t->saved);
    memset(t, 0, sizeof *t);
}

int tu_present(const tu_tensor_t *t) { return t->host != NULL; }

int64_t tu_numel(const tu_tensor_t *t) { return t->dim[0] * t->dim[1] * t->dim[2] * t->dim[3]; }

int64_t tu_offset(const tu_tensor_t *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    return i0 * t->stride[0] + i1 * t->stride[1] + i2 * t->stride[2] + i3 * t->stride[3];
}

la_tensor_t tu_view_at(const tu_tensor_t *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    la_tensor_t v;
    memset(&v, 0, sizeof v);
    if (!t->host) return v;
    v.data = (char *)t->dev + TU_GUARD_BYTES + (size_t)tu_offset(t, i0, i1, i2, i3) * t->esize;
    v.dtype = t->dtype;
    for (int i = 0; i < 4; i++) v.stride[i] = t->stride[i];
    return v;
}

la_tensor_t tu_view(const tu_tensor_t *t) { return tu_view_at(t, 0, 0, 0, 0); }

static unsigned char *elem_ptr(const tu_tensor_t *t, int64_t off) {
    return t->host + TU_GUARD_BYTES + (size_t)off * t->esize;
}

static double load_elem(const tu_tensor_t *t, int64_t off) {
    const unsigned char *p = elem_ptr(t, off);
    if (t->esize == 4) {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p, 2);
    return t->dtype == LA_DTYPE_F16 ? tu_f16_to_f32(h) : tu_bf16_to_f32(h);
}

static void store_elem(tu_tensor_t *t, int64_t off, double x) {
    unsigned char *p = elem_ptr(t, off);
    float f = (float)x;
    if (t->esize == 4) {
        memcpy(p, &f, 4);
        return;
    }
    uint16_t h = t->dtype == LA_DTYPE_F16 ? tu_f32_to_f16(f) : tu_f32_to_bf16(f);
    memcpy(p, &h, 2);
}

double tu_get(const tu_tensor_t *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    return load_elem(t, tu_offset(t, i0, i1, i2, i3));
}

void tu_set(tu_tensor_t *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3, double x) {
    store_elem(t, tu_offset(t, i0, i1, i2, i3), x);
}

#define FOR_EACH(t, a, b, c, d)                       \
    for (int64_t a = 0; a < (t)->dim[0]; a++)         \
        for (int64_t b = 0; b < (t)->dim[1]; b++)     \
            for (int64_t c = 0; c < (t)->dim[2]; c++) \
                for (int64_t d = 0; d < (t)->dim[3]; d++)

void tu_poison(tu_tensor_t *t) { FOR_EACH(t, a, b, c, d) store_elem(t, tu_offset(t, a, b, c, d), NAN); }

void tu_fill_const(tu_tensor_t *t, double x) { FOR_EACH(t, a, b, c, d) store_elem(t, tu_offset(t, a, b, c, d), x); }

void tu_fill_normal(tu_tensor_t *t, tu_rng_t *r, double sigma) {
    FOR_EACH(t, a, b, c, d) {
        double x;
        do x = tu_round(t->dtype, sigma * tu_normal(r));
        while (x == 0.0);
        store_elem(t, tu_offset(t, a, b, c, d), x);
    }
}

void tu_fill_uniform(tu_tensor_t *t, tu_rng_t *r, double lo, double hi) {
    FOR_EACH(t, a, b, c, d) {
        double x;
        do x = tu_round(t->dtype, lo + (hi - lo) * tu_uniform(r));
        while (x == 0.0);
        store_elem(t, tu_offset(t, a, b, c, d), x);
    }
}

void tu_fill_bytes(tu_tensor_t *t, unsigned char byte) { memset(t->host + TU_GUARD_BYTES, byte, t->bytes); }

void tu_fill_elem_bytes(tu_tensor_t *t, unsigned char byte) {
    FOR_EACH(t, a, b, c, d) memset(elem_ptr(t, tu_offset(t, a, b, c, d)), byte, t->esize);
}

void tu_gather(const tu_tensor_t *t, int64_t i0, int64_t i1, int64_t t0, int64_t n, double *out) {
    int64_t w = t->dim[3];
    for (int64_t i = 0; i < n; i++)
        for (int64_t c = 0; c < w; c++) out[i * w + c] = tu_get(t, i0, i1, t0 + i, c);
}

void tu_gather_all(const tu_tensor_t *t, double *out) {
    int64_t i = 0;
    FOR_EACH(t, a, b, c, d) out[i++] = tu_get(t, a, b, c, d);
}

void tu_scatter_all(tu_tensor_t *t, const double *in) {
    int64_t i = 0;
    FOR_EACH(t, a, b, c, d) tu_set(t, a, b, c, d, in[i++]);
}

int tu_outer_guards_ok(const tu_tensor_t *t, char *msg, size_t msg_len) {
    const unsigned char *h = t->host;
    for (size_t i = 0; i < TU_GUARD_BYTES; i++) {
        if (h[i] != guard_byte(i, 0)) {
            snprintf(msg, msg_len, "%s: front guard byte %zu (of %d before the data) overwritten", t->name,
                     TU_GUARD_BYTES - i, TU_GUARD_BYTES);
            return 0;
        }
        if (h[TU_GUARD_BYTES + t->bytes + i] != guard_byte(i, 1)) {
            snprintf(msg, msg_len, "%s: back guard byte %zu after the data overwritten", t->name, i);
            return 0;
        }
    }
    return 1;
}

int tu_guards_ok(const tu_tensor_t *t, char *msg, size_t msg_len) {
    const unsigned char *h = t->host;
    if (!tu_outer_guards_ok(t, msg, msg_len)) return 0;
    /* gaps: every byte of the data region that belongs to no logical element
     * must still hold the gap pattern */
    int64_t n = tu_numel(t);
    if ((int64_t)(t->bytes / t->esize) > n) {
        unsigned char *owned = calloc(t->bytes, 1);
        if (!owned) return 1;
        FOR_EACH(t, a, b, c, d)
        memset(owned + (size_t)tu_offset(t, a, b, c, d) * t->esize, 1, t->esize);
        const unsigned char *data = h + TU_GUARD_BYTES;
        for (size_t i = 0; i < t->bytes; i++) {
            if (!owned[i] && data[i] != GAP_BYTE) {
                snprintf(msg, msg_len, "%s: gap byte at data offset %zu (element %zu) overwritten", t->name, i,
                         i / t->esize);
                free(owned);
                return 0;
            }
        }
        free(owned);
    }
    return 1;
}

void tu_snapshot(tu_tensor_t *t) {
    size_t total = t->bytes + 2 * TU_GUARD_BYTES;
    if (!t->saved) t->saved = xmalloc(total);
    memcpy(t->saved, t->host, total);
}

int tu_unchanged(const tu_tensor_t *t) {
    return t->saved && memcmp(t->saved, t->host, t->bytes + 2 * TU_GUARD_BYTES) == 0;
}

int tu_same_bytes(const tu_tensor_t *a, const tu_tensor_t *b) {
    return a->bytes == b->bytes && memcmp(a->host + TU_GUARD_BYTES, b->host + TU_GUARD_BYTES, a->bytes) == 0;
}

void tu_clone(tu_tensor_t *dst, const tu_tensor_t *src, const char *name) {
    tu_alloc_strided(dst, name, src->dtype, src->dim, src->stride);
    dst->layout = src->layout;
    memcpy(dst->host, src->host, src->bytes + 2 * TU_GUARD_BYTES);
    tu_upload(dst);
}

void tu_upload(tu_tensor_t *t) {
    if (g_mem && t->host) g_mem->to_device(t->dev, t->host, t->bytes + 2 * TU_GUARD_BYTES);
}

void tu_download(tu_tensor_t *t) {
    if (g_mem && t->host) g_mem->to_host(t->host, t->dev, t->bytes + 2 * TU_GUARD_BYTES);
}

/* ---- device memory through the CUDA driver API (loaded at run time) ------------------------- */

typedef int cu_result_t;
typedef unsigned long long cu_ptr_t;
static struct {
    cu_result_t (*init)(unsigned);
    cu_result_t (*device_get)(int *, int);
    cu_result_t (*ctx_retain)(void **, int);
    cu_result_t (*ctx_set)(void *);
    cu_result_t (*sync)(void);
    cu_result_t (*alloc)(cu_ptr_t *, size_t);
    cu_result_t (*free)(cu_ptr_t);
    cu_result_t (*h2d)(cu_ptr_t, const void *, size_t);
    cu_result_t (*d2h)(void *, cu_ptr_t, size_t);
} g_cu;

static void cu_die(const char *what, cu_result_t r) {
    fprintf(stderr, "CUDA driver call %s failed (%d)\n", what, r);
    printf("FAIL: CUDA driver call %s failed (%d)\n", what, r);
    exit(3);
}
static void *cu_alloc_fn(size_t bytes) {
    cu_ptr_t p = 0;
    cu_result_t r = g_cu.alloc(&p, bytes ? bytes : 1);
    if (r) cu_die("cuMemAlloc", r);
    return (void *)(uintptr_t)p;
}
static void cu_free_fn(void *p) { g_cu.free((cu_ptr_t)(uintptr_t)p); }
static void cu_to_device(void *dst, const void *src, size_t bytes) {
    cu_result_t r = g_cu.sync(); /* earlier kernels may still read or write this memory */
    if (!r) r = g_cu.h2d((cu_ptr_t)(uintptr_t)dst, src, bytes);
    if (r) cu_die("cuMemcpyHtoD", r);
}
static void cu_to_host(void *dst, const void *src, size_t bytes) {
    cu_result_t r = g_cu.sync();
    if (!r) r = g_cu.d2h(dst, (cu_ptr_t)(uintptr_t)src, bytes);
    if (r) cu_die("cuMemcpyDtoH", r);
}

int tu_cuda_memory_init(void) {
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (!lib) lib = dlopen("libcuda.so", RTLD_NOW | RTLD_GLOBAL);
    if (!lib) return 0;
    struct {
        void **fn;
        const char *name;
    } syms[] = {
        {(void **)&g_cu.init, "cuInit"},
        {(void **)&g_cu.device_get, "cuDeviceGet"},
        {(void **)&g_cu.ctx_retain, "cuDevicePrimaryCtxRetain"},
        {(void **)&g_cu.ctx_set, "cuCtxSetCurrent"},
        {(void **)&g_cu.sync, "cuCtxSynchronize"},
        {(void **)&g_cu.alloc, "cuMemAlloc_v2"},
        {(void **)&g_cu.free, "cuMemFree_v2"},
        {(void **)&g_cu.h2d, "cuMemcpyHtoD_v2"},
        {(void **)&g_cu.d2h, "cuMemcpyDtoH_v2"},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        void *f = dlsym(lib, syms[i].name);
        if (!f) return 0;
        memcpy(syms[i].fn, &f, sizeof f); /* object pointer -> function pointer, POSIX style */
    }
    int dev = 0;
    void *ctx = NULL;
    cu_result_t r = g_cu.init(0);
    if (!r) r = g_cu.device_get(&dev, 0);
    if (!r) r = g_cu.ctx_retain(&ctx, dev);
    if (!r) r = g_cu.ctx_set(ctx);
    if (r) cu_die("context setup", r);
    static const tu_mem_ops_t ops = {cu_alloc_fn, cu_free_fn, cu_to_device, cu_to_host};
    tu_set_mem_ops(&ops);
    return 1;
}

/* ---- metrics and checks --------------------------------------------------------- */

void tu_compute_metrics(const double *x, const double *ref, int64_t n, tu_metrics_t *m) {
    tu_compute_metrics_scaled(x, ref, NULL, n, m);
}

void tu_compute_metrics_scaled(const double *x, const double *ref, const double *scale, int64_t n, tu_metrics_t *m) {
    memset(m, 0, sizeof *m);
    double s2 = 0, smax = 0;
    m->n = n;
    m->first_nonfinite = -1;
    m->max_idx = -1;
    double e2 = 0, r2 = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) {
            if (m->nonfinite++ == 0) m->first_nonfinite = i;
            continue;
        }
        if (!isfinite(ref[i])) {
            m->ref_nonfinite++;
            continue;
        }
        double e = fabs(x[i] - ref[i]);
        if (scale) {
            s2 += scale[i] * scale[i];
            if (fabs(scale[i]) > smax) smax = fabs(scale[i]);
        }
        e2 += e * e;
        r2 += ref[i] * ref[i];
        if (fabs(ref[i]) > m->ref_max) m->ref_max = fabs(ref[i]);
        if (m->max_idx < 0 || e > m->max_err) {
            m->max_err = e;
            m->max_idx = i;
            m->x_at_max = x[i];
            m->ref_at_max = ref[i];
        }
    }
    m->err_l2 = sqrt(e2);
    m->ref_l2 = sqrt(r2);
    m->den_l2 = sqrt(r2 + s2);
    if (m->den_l2 < TU_ABS_FLOOR * sqrt((double)(n > 0 ? n : 1)))
        m->den_l2 = TU_ABS_FLOOR * sqrt((double)(n > 0 ? n : 1));
    m->den_max = m->ref_max > smax ? m->ref_max : smax;
    if (m->den_max < TU_ABS_FLOOR) m->den_max = TU_ABS_FLOOR;
    m->rel_l2 = m->err_l2 / m->den_l2;
}

int tu_metrics_ok(const tu_metrics_t *m, double rel_tol, double elem_tol) {
    if (m->nonfinite || m->ref_nonfinite) return 0;
    if (!(m->rel_l2 <= rel_tol)) return 0;
    if (!(m->max_err <= elem_tol * m->den_max)) return 0;
    return 1;
}

static int g_pass, g_fail, g_skip, g_verbose = -1;

void tu_pass(void) { g_pass++; }
void tu_skip(void) { g_skip++; }
int tu_passed(void) { return g_pass; }
int tu_failed(void) { return g_fail; }
int tu_skipped(void) { return g_skip; }

int tu_verbose(void) {
    if (g_verbose < 0) {
        const char *e = getenv("LA_TEST_VERBOSE");
        g_verbose = e && *e && strcmp(e, "0") != 0;
    }
    return g_verbose;
}

void tu_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    g_fail++;
}

int tu_check(int cond, const char *case_name, uint64_t seed, const char *fmt, ...) {
    if (cond) {
        g_pass++;
        return 1;
    }
    printf("FAIL [%s] seed=0x%016llx: ", case_name, (unsigned long long)seed);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    g_fail++;
    return 0;
}

static void format_index(char *buf, size_t len, int64_t idx, const int64_t *dims) {
    if (!dims || idx < 0) {
        snprintf(buf, len, "%lld", (long long)idx);
        return;
    }
    int64_t i3 = idx % dims[3], r = idx / dims[3];
    int64_t i2 = r % dims[2];
    r /= dims[2];
    int64_t i1 = r % dims[1], i0 = r / dims[1];
    snprintf(buf, len, "%lld [%lld,%lld,%lld,%lld]", (long long)idx, (long long)i0, (long long)i1, (long long)i2,
             (long long)i3);
}

int tu_check_close(const char *case_name, uint64_t seed, const char *what, const double *x, const double *ref,
                   int64_t n, const int64_t *dims, double rel_tol, double elem_tol) {
    return tu_check_close_scaled(case_name, seed, what, x, ref, NULL, n, dims, rel_tol, elem_tol);
}

int tu_check_close_scaled(const char *case_name, uint64_t seed, const char *what, const double *x, const double *ref,
                          const double *scale, int64_t n, const int64_t *dims, double rel_tol, double elem_tol) {
    tu_metrics_t m;
    tu_compute_metrics_scaled(x, ref, scale, n, &m);
    int ok = tu_metrics_ok(&m, rel_tol, elem_tol);
    char idx[128];
    if (tu_verbose())
        printf("  %-4s [%s] %s: rel_l2=%.3e (tol %.1e) worst=%.3e rel-to-max=%.3e (tol %.1e)\n", ok ? "ok" : "BAD",
               case_name, what, m.rel_l2, rel_tol, m.max_err, m.max_err / m.den_max, elem_tol);
    if (ok) {
        g_pass++;
        return 1;
    }
    if (m.nonfinite) {
        format_index(idx, sizeof idx, m.first_nonfinite, dims);
        tu_check(0, case_name, seed, "%s: %lld non-finite value(s), first at %s (value %g, ref %g)", what,
                 (long long)m.nonfinite, idx, x[m.first_nonfinite], ref[m.first_nonfinite]);
    } else if (m.ref_nonfinite) {
        tu_check(0, case_name, seed, "%s: the REFERENCE has %lld non-finite value(s)", what,
                 (long long)m.ref_nonfinite);
    } else {
        format_index(idx, sizeof idx, m.max_idx, dims);
        tu_check(0, case_name, seed,
                 "%s: rel_l2=%.3e (tol %.1e), worst |x-ref|=%.3e (%.3e of scale %.3e, tol %.1e) "
                 "at %s: x=%.9g ref=%.9g (n=%lld, ||ref||=%.3e)",
                 what, m.rel_l2, rel_tol, m.max_err, m.max_err / m.den_max, m.den_max, elem_tol, idx, m.x_at_max,
                 m.ref_at_max, (long long)n, m.ref_l2);
    }
    return 0;
}

int tu_check_guards(const char *case_name, uint64_t seed, const tu_tensor_t *t) {
    char msg[256];
    tu_download((tu_tensor_t *)t);
    int ok = tu_guards_ok(t, msg, sizeof msg);
    return tu_check(ok, case_name, seed, "guard/gap check: %s", ok ? "" : msg);
}

double tu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int tu_summary(void) {
    if (g_skip) printf("%d skipped\n", g_skip);
    printf("%d passed, %d failed\n", g_pass, g_fail);
    fflush(stdout);
    return g_fail > 0 ? 1 : 0;
}

/* ---- self-test ------------------------------------------------------------------ */

void tu_selftest(void) {
    const char *cn = "testutil-selftest";
    const uint64_t seed = 0x5e1f7e57ull;

    /* Rounding: known encodings, ties to even, subnormals, overflow. */
    tu_check(tu_f32_to_bf16(1.0f) == 0x3f80, cn, seed, "bf16(1.0)");
    tu_check(tu_f32_to_bf16(u2f(0x3f808000u)) == 0x3f80, cn, seed, "bf16 tie rounds to even (down)");
    tu_check(tu_f32_to_bf16(u2f(0x3f818000u)) == 0x3f82, cn, seed, "bf16 tie rounds to even (up)");
    tu_check(tu_f32_to_bf16(u2f(0x3f808001u)) == 0x3f81, cn, seed, "bf16 above tie rounds up");
    tu_check(tu_f32_to_bf16(-2.5f) == 0xc020, cn, seed, "bf16(-2.5)");
    tu_check(tu_f32_to_bf16(u2f(0x7f7fffffu)) == 0x7f80, cn, seed, "bf16(FLT_MAX) -> inf");
    tu_check(isnan(tu_bf16_to_f32(tu_f32_to_bf16(NAN))), cn, seed, "bf16(NaN) is NaN");
    tu_check(tu_f32_to_f16(1.0f) == 0x3c00, cn, seed, "f16(1.0)");
    tu_check(tu_f32_to_f16(-2.0f) == 0xc000, cn, seed, "f16(-2.0)");
    tu_check(tu_f32_to_f16(65504.0f) == 0x7bff, cn, seed, "f16(65504)");
    tu_check(tu_f32_to_f16(65519.0f) == 0x7bff, cn, seed, "f16(65519) rounds down");
    tu_check(tu_f32_to_f16(65520.0f) == 0x7c00, cn, seed, "f16(65520) -> inf");
    tu_check(tu_f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00, cn, seed, "f16 tie to even (down)");
    tu_check(tu_f32_to_f16(1.0f + 3.0f / 2048) == 0x3c02, cn, seed, "f16 tie to even (up)");
    tu_check(tu_f32_to_f16(0x1p-24f) == 0x0001, cn, seed, "f16 smallest subnormal");
    tu_check(tu_f32_to_f16(0x1p-25f) == 0x0000, cn, seed, "f16 2^-25 ties to zero");
    tu_check(tu_f32_to_f16(0x1.8p-25f) == 0x0001, cn, seed, "f16 1.5*2^-25 rounds up");
    tu_check(tu_f32_to_f16(0x1p-14f) == 0x0400, cn, seed, "f16 smallest normal");
    tu_check(tu_f32_to_f16(0x1.ffep-15f) == 0x0400, cn, seed, "f16 subnormal rounding into normal");
    tu_check(tu_f16_to_f32(0x0001) == 0x1p-24f, cn, seed, "f16 decode subnormal");
    tu_check(tu_f16_to_f32(0x7bff) == 65504.0f, cn, seed, "f16 decode max");
    tu_check(tu_f16_to_f32(0xbc00) == -1.0f, cn, seed, "f16 decode -1");
    { /* round trip of every finite f16 / bf16 bit pattern */
        int bad_h = 0, bad_b = 0;
        for (uint32_t h = 0; h < 65536; h++) {
            if ((h & 0x7c00u) != 0x7c00u && tu_f32_to_f16(tu_f16_to_f32((uint16_t)h)) != h) bad_h++;
            if ((h & 0x7f80u) != 0x7f80u && tu_f32_to_bf16(tu_bf16_to_f32((uint16_t)h)) != h) bad_b++;
        }
        tu_check(bad_h == 0 && bad_b == 0, cn, seed, "round trips: %d f16, %d bf16 patterns differ", bad_h, bad_b);
    }
    { /* RNE rounding error bound over many random values */
        tu_rng_t r;
        tu_rng_seed(&r, seed);
        double worst_h = 0, worst_b = 0;
        for (int i = 0; i < 100000; i++) {
            double x = tu_normal(&r) * exp(4 * tu_normal(&r));
            float f = (float)x;
            if (fabs(f) < 1e-4 || fabs(f) > 6e4) continue;
            double eh = fabs(tu_round(LA_DTYPE_F16, f) - f) / fabs(f);
            double eb = fabs(tu_round(LA_DTYPE_BF16, f) - f) / fabs(f);
            if (eh > worst_h) worst_h = eh;
            if (eb > worst_b) worst_b = eb;
        }
        tu_check(worst_h <= 0x1p-11 && worst_h > 0x1p-13, cn, seed, "f16 rel rounding error %.3g", worst_h);
        tu_check(worst_b <= 0x1p-8 && worst_b > 0x1p-10, cn, seed, "bf16 rel rounding error %.3g", worst_b);
    }

    /* RNG: reproducible, seed-dependent, roughly standard normal. */
    {
        tu_rng_t a, b, c;
        tu_rng_seed(&a, 42);
        tu_rng_seed(&b, 42);
        tu_rng_seed(&c, 43);
        int same = 1, diff = 0;
        for (int i = 0; i < 100; i++) {
            uint64_t x = tu_rng_next(&a), y = tu_rng_next(&b), z = tu_rng_next(&c);
            same &= x == y;
            diff += x != z;
        }
        tu_check(same && diff > 90, cn, seed, "rng reproducibility (same %d, differ %d)", same, diff);
        double s = 0, s2 = 0;
        for (int i = 0; i < 20000; i++) {
            double x = tu_normal(&a);
            s += x;
            s2 += x * x;
        }
        tu_check(fabs(s / 20000) < 0.05 && fabs(s2 / 20000 - 1) < 0.05, cn, seed, "normal moments mean %.3f var %.3f",
                 s / 20000, s2 / 20000);
    }

    /* Metrics: a correct f32-rounded vector passes the f32 tolerance; one
     * element perturbed by 10x the tolerance (relative to the norm) fails; a
     * NaN fails; a global 3x-tolerance scaling fails. */
    {
        enum { n = 4096 };
        static double ref[n], x[n];
        tu_rng_t r;
        tu_rng_seed(&r, seed + 1);
        for (int i = 0; i < n; i++) {
            ref[i] = tu_normal(&r);
            x[i] = (float)ref[i];
        }
        const double tol = 1e-5, etol = 1e-4;
        tu_metrics_t m;
        tu_compute_metrics(x, ref, n, &m);
        tu_check(tu_metrics_ok(&m, tol, etol), cn, seed, "f32-rounded copy passes (rel %.3g)", m.rel_l2);
        x[1234] += 10 * tol * m.ref_l2;
        tu_compute_metrics(x, ref, n, &m);
        tu_check(!tu_metrics_ok(&m, tol, etol) && m.max_idx == 1234, cn, seed,
                 "one element perturbed by 10x tol must fail (rel %.3g, idx %lld)", m.rel_l2, (long long)m.max_idx);
        x[1234] = (float)ref[1234];
        /* a perturbation that is small in L2 but large for one element:
         * caught by the element criterion */
        x[77] += 3 * etol * m.ref_max;
        tu_compute_metrics(x, ref, n, &m);
        tu_check(!tu_metrics_ok(&m, 1.0, etol), cn, seed, "element criterion catches a local error");
        x[77] = (float)ref[77];
        x[5] = NAN;
        tu_compute_metrics(x, ref, n, &m);
        tu_check(!tu_metrics_ok(&m, 1e30, 1e30) && m.nonfinite == 1 && m.first_nonfinite == 5, cn, seed,
                 "NaN must fail");
        x[5] = INFINITY;
        tu_compute_metrics(x, ref, n, &m);
        tu_check(!tu_metrics_ok(&m, 1e30, 1e30), cn, seed, "Inf must fail");
        for (int i = 0; i < n; i++) x[i] = ref[i] * (1 + 3 * tol);
        tu_compute_metrics(x, ref, n, &m);
        tu_check(!tu_metrics_ok(&m, tol, 1e30), cn, seed, "global scaling by 3x tol must fail");
        for (int i = 0; i < n; i++) x[i] = 0;
        tu_compute_metrics(x, ref, n, &m);
        tu_check(!tu_metrics_ok(&m, 0.5, 1e30), cn, seed, "all-zero output must fail");
    }

    /* Tensors: strides of the layouts, guards, gaps, poison, gather. */
    {
        tu_tensor_t t;
        tu_alloc(&t, "selftest", LA_DTYPE_F32, TU_BNHD, 2, 3, 5, 7);
        tu_check(t.stride[3] == 1 && t.stride[1] == 7 && t.stride[2] == 21 && t.stride[0] == 105, cn, seed,
                 "bnhd strides %lld %lld %lld %lld", (long long)t.stride[0], (long long)t.stride[1],
                 (long long)t.stride[2], (long long)t.stride[3]);
        tu_free(&t);
        tu_alloc(&t, "selftest", LA_DTYPE_BF16, TU_BHND, 2, 3, 5, 7);
        tu_check(t.stride[3] == 1 && t.stride[2] == 7 && t.stride[1] == 35 && t.stride[0] == 105, cn, seed,
                 "bhnd strides");
        char msg[256];
        tu_rng_t r;
        tu_rng_seed(&r, seed);
        tu_fill_normal(&t, &r, 1.0);
        tu_check(tu_guards_ok(&t, msg, sizeof msg), cn, seed, "fresh guards ok");
        t.host[TU_GUARD_BYTES + t.bytes + 3] ^= 1;
        tu_check(!tu_guards_ok(&t, msg, sizeof msg), cn, seed, "corrupted back guard detected");
        t.host[TU_GUARD_BYTES + t.bytes + 3] ^= 1;
        t.host[TU_GUARD_BYTES - 1] ^= 0x80;
        tu_check(!tu_guards_ok(&t, msg, sizeof msg), cn, seed, "corrupted front guard detected");
        t.host[TU_GUARD_BYTES - 1] ^= 0x80;
        /* element (1,2,3,4) lives at 1*105 + 2*35 + 3*7 + 4 = 200 */
        tu_set(&t, 1, 2, 3, 4, 3.0);
        uint16_t raw;
        memcpy(&raw, t.host + TU_GUARD_BYTES + 200 * 2, 2);
        tu_check(raw == 0x4040, cn, seed, "bf16 element at its address (0x%04x)", raw);
        double g[7];
        tu_gather(&t, 1, 2, 3, 1, g);
        tu_check(g[4] == 3.0, cn, seed, "gather reads it back");
        tu_poison(&t);
        tu_check(isnan(tu_get(&t, 0, 0, 0, 0)) && isnan(tu_get(&t, 1, 2, 4, 6)), cn, seed, "poison");
        tu_free(&t);
        for (int lay = TU_BHND_PAD; lay < TU_NUM_LAYOUTS; lay++) {
            tu_alloc(&t, "selftest-gaps", LA_DTYPE_F16, (tu_layout_t)lay, 2, 3, 4, 5);
            tu_fill_normal(&t, &r, 1.0);
            int ok = tu_guards_ok(&t, msg, sizeof msg);
            /* find a gap byte: an element offset not reached by any index */
            int64_t gap = -1;
            for (int64_t o = 0; o < (int64_t)(t.bytes / 2) && gap < 0; o++) {
                int hit = 0;
                FOR_EACH(&t, a, b, c, d) hit |= tu_offset(&t, a, b, c, d) == o;
                if (!hit) gap = o;
            }
            tu_check(ok && gap >= 0, cn, seed, "%s has gaps", tu_layout_name((tu_layout_t)lay));
            if (gap >= 0) {
                t.host[TU_GUARD_BYTES + gap * 2] ^= 1;
                tu_check(!tu_guards_ok(&t, msg, sizeof msg), cn, seed, "%s: write into a gap detected",
                         tu_layout_name((tu_layout_t)lay));
            }
            tu_free(&t);
        }
    }
}
