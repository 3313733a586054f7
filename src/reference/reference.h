/*
 * reference.h - the exact fp64 ground truth every backend is tested against.
 *
 * Deliberately simple: plain loops in double precision over ONE (sequence,
 * head) at a time, all arrays contiguous row-major.  Every decay kind is
 * expressed in the general per-token, per-channel form
 *
 *     S_t = diag(exp(gk_t)) S_{t-1} diag(exp(gv_t)) + k_t^T v_t,   o_t = scale q_t S_t
 *
 * (scalar kinds broadcast their log decay over gk_t[0..D) and pass gv = NULL;
 * the scalar gradient is then the sum of dgk over the channels it drives).
 *
 * Arrays: q, k [N*D]; v [N*E]; gk [N*D] (NULL = no key-side decay);
 * gv [N*E] (NULL = no value-side decay); s0 [D*E] (NULL = zero state);
 * o [N*E]; sN [D*E].  Output pointers may be NULL when not wanted.
 */
#ifndef LA_REFERENCE_H
#define LA_REFERENCE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Token-by-token recurrence. */
void ref_forward_recurrent(int64_t N, int D, int E, double scale, const double *q, const double *k, const double *v,
                           const double *gk, const double *gv, const double *s0, double *o, double *sN);

/* Quadratic masked form: o_t[e] = scale sum_{m<=t} sum_d
 *   q_t[d] k_m[d] exp(sum_{m<r<=t} gk_r[d]) v_m[e] exp(sum_{m<r<=t} gv_r[e])
 *   + the initial-state term; decay sums taken over the pair, never as a
 * difference of long prefix sums.  O(N^2 (D+E)).  Also returns sN from the
 * same closed form. */
void ref_forward_quadratic(int64_t N, int D, int E, double scale, const double *q, const double *k, const double *v,
                           const double *gk, const double *gv, const double *s0, double *o, double *sN);

/* Gradients by the reverse recurrence (states recomputed from checkpoints, so
 * memory stays O(sqrt(N) D E)).  d_o and dsN may be NULL (zero).  Outputs:
 * dq, dk [N*D]; dv [N*E]; dgk [N*D] (only when gk != NULL, else may be NULL);
 * dgv [N*E] (only when gv != NULL); ds0 [D*E].  Any output may be NULL. */
void ref_backward(int64_t N, int D, int E, double scale, const double *q, const double *k, const double *v,
                  const double *gk, const double *gv, const double *s0, const double *d_o, const double *dsN,
                  double *dq, double *dk, double *dv, double *dgk, double *dgv, double *ds0);

#ifdef __cplusplus
}
#endif

#endif
