/* tolerances.h - how close a backend's outputs must come to the fp64
 * reference, per I/O dtype and backend (tolerances.c has the measurements
 * behind each bound): the case table (test_backend) and the API fuzzer's
 * reference checks (fuzz_ref.c) hold every output to the same bounds. */
#ifndef LA_TEST_TOLERANCES_H
#define LA_TEST_TOLERANCES_H

#include "lightning_attn.h"

/* Per output: rel bounds ||x - ref||_2 / ||ref||_2, elem bounds
 * max|x - ref| / max|ref|. */
typedef struct tolset {
    double o_rel, o_elem;   /* o */
    double g_rel, g_elem;   /* dq, dk, dv */
    double d_rel, d_elem;   /* d_ld, d_ldv (f32 outputs), relative to their terms' scale */
    double s_rel, s_elem;   /* final state (f32) */
    double ds_rel, ds_elem; /* d_initial_state (f32) */
} tolset_t;

/* The bounds for token tensors of dtype dt on the backend (tensor-core
 * backends round intra-chunk products to the input dtype). */
const tolset_t *tu_tolerances(la_dtype_t dt, la_backend_t backend);

#endif
