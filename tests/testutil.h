/*
 * testutil.h - shared helpers of the lightning-attn test programs (and the
 * benchmark).
 *
 * Everything here is written independently of the library: our own RNG, our
 * own strided indexing, our own bf16/f16 rounding, our own comparison
 * metrics.  A test that reuses the library's code to check the library
 * checks nothing.
 *
 *   - RNG: xoshiro256** seeded through splitmix64; every failing line prints
 *     the seed of its case so it can be replayed (LA_TEST_SEED changes the
 *     base seed of test_backend).
 *   - Host tensors: a logical [d0,d1,d2,d3] tensor in f32/f16/bf16 in one of
 *     several layouts (contiguous, token-major, padded with gaps, channel-
 *     interleaved), with guard bytes before and after the data and a known
 *     pattern in every gap, so that a write outside the logical elements is
 *     detected (tu_guards_ok).
 *   - Poison (NaN in every logical element), random fill (never zero),
 *     element get/set with rounding to the tensor's dtype, gather of a
 *     (sequence, head) slice into contiguous doubles for the fp64 reference.
 *   - Metrics: non-finite check first, relative L2 error, worst element with
 *     its index; tu_check_close prints a failing line (case, seed, metric,
 *     index) and counts passes/failures; tu_summary prints "N passed, M
 *     failed" and returns the exit code.
 *   - Device memory: tensors live in host memory; a device backend can set
 *     tu_set_mem_ops so that every tensor also gets a device copy (tu_view
 *     then points at it, tu_upload / tu_download move the whole allocation,
 *     guards included).
 */
#ifndef LA_TESTUTIL_H
#define LA_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "lightning_attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- RNG ------------------------------------------------------------------ */

typedef struct tu_rng {
    uint64_t s[4];
} tu_rng_t;

uint64_t tu_splitmix64(uint64_t *state);
void tu_rng_seed(tu_rng_t *r, uint64_t seed);
uint64_t tu_rng_next(tu_rng_t *r);
/* Uniform in (0, 1): never exactly 0 or 1. */
double tu_uniform(tu_rng_t *r);
/* Standard normal (Box-Muller). */
double tu_normal(tu_rng_t *r);
/* Uniform integer in [0, n). */
uint64_t tu_below(tu_rng_t *r, uint64_t n);
/* A 64-bit hash of a string (FNV-1a), to derive per-case seeds from names. */
uint64_t tu_hash_str(const char *s);
/* log(sigmoid(x)), computed without overflow; always <= 0. */
double tu_logsigmoid(double x);

/* ---- statuses ----------------------------------------------------------------- */

/* Every status of lightning_attn.h with its name, written out here (not read
 * from the library) so that the tests check the library's strings. */
typedef struct tu_status_name {
    la_status_t status;
    const char *name;
} tu_status_name_t;
#define TU_NUM_STATUSES 21
extern const tu_status_name_t tu_statuses[TU_NUM_STATUSES];

/* ---- problems ----------------------------------------------------------------- */

/* la_problem_init, then batch B, heads H, seqlen N, dims D and E, decay kind. */
la_problem_t tu_problem(int64_t B, int64_t H, int64_t N, int64_t D, int64_t E, la_decay_t decay);

/* ---- rounding (our own, round to nearest even) ----------------------------- */

uint16_t tu_f32_to_bf16(float f);
float tu_bf16_to_f32(uint16_t h);
uint16_t tu_f32_to_f16(float f);
float tu_f16_to_f32(uint16_t h);
/* x rounded to the dtype and back (through f32). */
double tu_round(la_dtype_t dtype, double x);
size_t tu_dtype_size(la_dtype_t dtype);
const char *tu_dtype_name(la_dtype_t dtype);

/* ---- host tensors ----------------------------------------------------------- */

typedef enum tu_layout {
    TU_BHND = 0,        /* contiguous in logical order [d0,d1,d2,d3] */
    TU_BNHD = 1,        /* token-major: physical [d0,d2,d1,d3] (permuted strides) */
    TU_BHND_PAD = 2,    /* logical order with gaps after every row/plane/block */
    TU_BNHD_PAD = 3,    /* token-major with gaps */
    TU_INTERLEAVED = 4, /* logical order, channel stride 2 (every other element a gap) */
    TU_NUM_LAYOUTS = 5
} tu_layout_t;

const char *tu_layout_name(tu_layout_t layout);

#define TU_GUARD_BYTES 256

typedef struct tu_tensor {
    const char *name;
    int64_t dim[4];
    int64_t stride[4]; /* element strides */
    la_dtype_t dtype;
    tu_layout_t layout;
    size_t esize;         /* bytes per element */
    int64_t span;         /* elements covered by the data region */
    size_t bytes;         /* bytes of the data region (>= one element) */
    unsigned char *host;  /* [guard][data][guard] */
    void *dev;            /* same geometry on the device; == host without mem ops */
    unsigned char *saved; /* snapshot of the whole host allocation, or NULL */
} tu_tensor_t;

/* Allocate (aborts the program when out of memory).  The data region starts
 * filled with a gap pattern; guards hold their own pattern. */
void tu_alloc(tu_tensor_t *t, const char *name, la_dtype_t dtype, tu_layout_t layout, int64_t d0, int64_t d1,
              int64_t d2, int64_t d3);
/* Allocate with explicit element strides (all >= 0). */
void tu_alloc_strided(tu_tensor_t *t, const char *name, la_dtype_t dtype, const int64_t dim[4],
                      const int64_t stride[4]);
void tu_free(tu_tensor_t *t);
/* Is the tensor allocated? */
int tu_present(const tu_tensor_t *t);
int64_t tu_numel(const tu_tensor_t *t);

/* The la_tensor_t of the whole tensor, or of the sub-tensor starting at
 * logical element (i0,i1,i2,i3) (same strides).  An unallocated tensor gives
 * an absent view (data NULL). */
la_tensor_t tu_view(const tu_tensor_t *t);
la_tensor_t tu_view_at(const tu_tensor_t *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3);

/* Element access on the host copy; tu_set rounds to the dtype. */
int64_t tu_offset(const tu_tensor_t *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3);
double tu_get(const tu_tensor_t *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3);
void tu_set(tu_tensor_t *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3, double x);

/* Fill every logical element (gaps untouched). */
void tu_poison(tu_tensor_t *t); /* NaN */
void tu_fill_const(tu_tensor_t *t, double x);
void tu_fill_normal(tu_tensor_t *t, tu_rng_t *r, double sigma);          /* N(0,sigma^2), never 0 */
void tu_fill_uniform(tu_tensor_t *t, tu_rng_t *r, double lo, double hi); /* never 0 */
/* Fill every byte of the data region (gaps included) with a byte. */
void tu_fill_bytes(tu_tensor_t *t, unsigned char byte);
/* Fill every byte of every logical element (gaps untouched) with a byte. */
void tu_fill_elem_bytes(tu_tensor_t *t, unsigned char byte);

/* Contiguous doubles out[i*d3 + c] = t[i0, i1, t0 + i, c], i < n, c < d3. */
void tu_gather(const tu_tensor_t *t, int64_t i0, int64_t i1, int64_t t0, int64_t n, double *out);
/* All logical elements in logical row-major order. */
void tu_gather_all(const tu_tensor_t *t, double *out);
void tu_scatter_all(tu_tensor_t *t, const double *in);

/* Guards and gaps intact?  1 = yes; otherwise 0 and a description in msg. */
int tu_guards_ok(const tu_tensor_t *t, char *msg, size_t msg_len);
/* Only the guard bytes before and after the data region (for buffers the
 * library may write anywhere inside, e.g. a caller workspace). */
int tu_outer_guards_ok(const tu_tensor_t *t, char *msg, size_t msg_len);
/* Snapshot the host allocation; later tu_unchanged compares with it. */
void tu_snapshot(tu_tensor_t *t);
int tu_unchanged(const tu_tensor_t *t);
/* Data regions of two tensors of the same geometry bytewise equal? */
int tu_same_bytes(const tu_tensor_t *a, const tu_tensor_t *b);
/* Deep copy (geometry and contents). */
void tu_clone(tu_tensor_t *dst, const tu_tensor_t *src, const char *name);

/* Device memory hooks (NULL: host only). */
typedef struct tu_mem_ops {
    void *(*alloc)(size_t bytes);
    void (*free)(void *p);
    void (*to_device)(void *dst, const void *src, size_t bytes);
    void (*to_host)(void *dst, const void *src, size_t bytes);
} tu_mem_ops_t;
void tu_set_mem_ops(const tu_mem_ops_t *ops);
const tu_mem_ops_t *tu_get_mem_ops(void);
/* Device memory through the CUDA driver API (libcuda.so.1, loaded at run
 * time; allocations in the device's primary context, which the CUDA runtime
 * inside the library shares, so no CUDA toolkit is needed to build a test):
 * installs the hooks and returns 1, or returns 0 where the driver cannot be
 * loaded.  A driver call that fails later ends the program. */
int tu_cuda_memory_init(void);
/* Move host <-> device (the whole allocation, guards included); no-ops
 * without mem ops. */
void tu_upload(tu_tensor_t *t);
void tu_download(tu_tensor_t *t);

/* ---- metrics and checks ------------------------------------------------------ */

typedef struct tu_metrics {
    int64_t n;
    int64_t nonfinite; /* count of NaN/Inf in x */
    int64_t first_nonfinite;
    int64_t ref_nonfinite; /* count of NaN/Inf in the reference (a broken reference fails too) */
    double err_l2, ref_l2, rel_l2;
    double max_err; /* worst |x - ref| */
    int64_t max_idx;
    double x_at_max, ref_at_max;
    double ref_max;         /* max |ref| */
    double den_l2, den_max; /* the denominators used (see below) */
} tu_metrics_t;

/* Errors below this absolute size are fp32-underflow noise (f32's smallest
 * normal is 1.2e-38): the denominators never drop below it. */
#define TU_ABS_FLOOR 1e-30

/* rel_l2 = ||x - ref|| / den_l2 with den_l2 = max(||ref||, floor sqrt(n));
 * den_max = max(max|ref|, floor). */
void tu_compute_metrics(const double *x, const double *ref, int64_t n, tu_metrics_t *m);
/* As tu_compute_metrics, with scale (may be NULL): per-element magnitudes of
 * the terms that make up ref (for quantities that are small differences of
 * larger terms, e.g. log-decay gradients): den_l2 = sqrt(||ref||^2 +
 * ||scale||^2) (at least floor sqrt(n)), den_max = max(max|ref|, max|scale|,
 * floor). */
void tu_compute_metrics_scaled(const double *x, const double *ref, const double *scale, int64_t n, tu_metrics_t *m);
/* Pass iff everything finite, rel_l2 <= rel_tol and max_err <= elem_tol * den_max. */
int tu_metrics_ok(const tu_metrics_t *m, double rel_tol, double elem_tol);

/* Global counters. */
void tu_pass(void);
void tu_fail(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
void tu_skip(void);
int tu_passed(void);
int tu_failed(void);
int tu_skipped(void);
/* LA_TEST_VERBOSE=1: print every comparison. */
int tu_verbose(void);

/* Generic check: counts a pass when cond != 0, else prints
 * "FAIL [case] seed=0x...: <message>" and counts a failure.  Returns cond != 0. */
int tu_check(int cond, const char *case_name, uint64_t seed, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
/* Compare x with ref (n values); dims (may be NULL) turns the worst index
 * into a 4-d logical index in the message.  Returns 1 on pass. */
int tu_check_close(const char *case_name, uint64_t seed, const char *what, const double *x, const double *ref,
                   int64_t n, const int64_t *dims, double rel_tol, double elem_tol);
int tu_check_close_scaled(const char *case_name, uint64_t seed, const char *what, const double *x, const double *ref,
                          const double *scale, int64_t n, const int64_t *dims, double rel_tol, double elem_tol);
/* Tensor guards/gaps intact (one check). */
int tu_check_guards(const char *case_name, uint64_t seed, const tu_tensor_t *t);

/* Self-test of this file: rounding, RNG, metrics (a perturbation of 10x the
 * tolerance must fail), guards.  Counts its own passes/failures. */
void tu_selftest(void);

/* Print the skipped count (when > 0) and "N passed, M failed" on its own
 * line; returns the exit code (non-zero iff M > 0). */
int tu_summary(void);

/* Wall-clock seconds (monotonic). */
double tu_seconds(void);

#ifdef __cplusplus
}
#endif

#endif
