/* vec_fold.cuh - the fold of a vector-decay sequence split: from each
 * segment's local final state T_j (the walk of segment j from a zero state)
 * and its summed log decays A_j (rows) and B_j (columns), the state each
 * segment starts from, in the walk's order (reverse: from the last segment
 * to the first),
 *
 *   S_first = s0,   S_next = diag(e^{A_j}) S_j diag(e^{B_j}) + T_j,
 *
 * written over T_j in place, and the sequence's final state.  Then, for a
 * walk that kept running sums (the backward's decay gradients), each
 * segment's offset: the final state's share F plus the sums of the segments
 * walked before it, added to every term of the segment.  One thread per
 * state element or per sum, walking the segments in order; every exponent
 * is a sum of log decays, <= 0.  Shared by the kernels (vec_fold.cu) and
 * the host emulation's test. */
#ifndef LA_CUDA_VEC_FOLD_CUH
#define LA_CUDA_VEC_FOLD_CUH

#include "vec_params.h"

/* seg_state: [num_seqs * nseg, H, D, E] contiguous; seg_tot_k [.., H, D];
 * seg_tot_v [.., H, E] or NULL; s0.ptr / sN.ptr NULL: zero / not wanted. */
__device__ __forceinline__ void la_vec_fold_elem(float *seg_state, const float *seg_tot_k, const float *seg_tot_v,
                                                 la_st_t s0, la_st_t sN, int nseg, int H, int D, int E, int reverse,
                                                 int64_t seq, int h, int d, int e) {
    float S = s0.ptr ? s0.ptr[seq * s0.ss + h * s0.sh + d * s0.sd + e * s0.se] : 0.0f;
    for (int i = 0; i < nseg; i++) {
        const int j = reverse ? nseg - 1 - i : i;
        const int64_t g = (seq * nseg + j) * H + h; /* the segment's (segment, head) row */
        float *x = seg_state + (g * D + d) * E + e;
        const float T = *x;
        *x = S;
        float a = seg_tot_k[g * D + d];
        if (seg_tot_v) a += seg_tot_v[g * E + e];
        S = S * expf(a) + T;
    }
    if (sN.ptr) sN.ptr[seq * sN.ss + h * sN.sh + d * sN.sd + e * sN.se] = S;
}

/* The final state's share of column c's running sum (vec_params.h's term_mode 2):
 * sum over rows r < R of fin_a[r, c] fin_b[r, c] for (sequence seq, head h), in double;
 * 0 where fin_a.ptr is NULL. */
__device__ __forceinline__ double la_vec_fin_share(la_st_t fin_a, la_st_t fin_b, int R, int64_t seq, int h, int64_t c) {
    double f = 0.0;
    if (fin_a.ptr)
        for (int r = 0; r < R; r++)
            f += (double)fin_a.ptr[seq * fin_a.ss + h * fin_a.sh + r * fin_a.sd + c * fin_a.se] *
                 (double)fin_b.ptr[seq * fin_b.ss + h * fin_b.sh + r * fin_b.sd + c * fin_b.se];
    return f;
}

/* seg_sum: [num_seqs * nseg, H, C] each segment's sums of column c, made
 * each segment's offset in place, for a walk in reverse (the backward's
 * runs K and V); F = sum over rows r < R of fin_a[r, c] fin_b[r, c]
 * (fin_a.ptr NULL: 0). */
__device__ __forceinline__ void la_vec_sum_offsets_elem(double *seg_sum, la_st_t fin_a, la_st_t fin_b, int nseg, int H,
                                                        int R, int C, int64_t seq, int h, int c) {
    double acc = la_vec_fin_share(fin_a, fin_b, R, seq, h, c);
    for (int j = nseg - 1; j >= 0; j--) {
        double *x = seg_sum + ((seq * nseg + j) * H + h) * C + c;
        const double own = *x;
        *x = acc;
        acc += own;
    }
}

/* Term t of column c (of batch row seq, head h) takes its segment's offset. */
__device__ __forceinline__ void la_vec_sum_apply_elem(float *term, const int64_t *ts, const double *offs, int nseg,
                                                      int64_t seg_len, int H, int C, int64_t seq, int h, int64_t t,
                                                      int c) {
    float *x = term + seq * ts[0] + h * ts[1] + t * ts[2] + c * ts[3];
    *x = (float)((double)*x + offs[((seq * nseg + t / seg_len) * H + h) * C + c]);
}

#endif
