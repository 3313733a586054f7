/* vec_fold.cuh - the fold of a vector-decay sequence split: from each
 * segment's local final state T_j (the walk of segment j from a zero state)
 * and its summed log decays A_j (rows) and B_j (columns), the state each
 * segment starts from,
 *
 *   S_0 = s0,   S_{j+1} = diag(e^{A_j}) S_j diag(e^{B_j}) + T_j,
 *
 * written over T_j in place, and the sequence's final state S_nseg.  One
 * thread per state element (sequence, head, row, column), walking the
 * segments in order; every exponent is a sum of log decays, <= 0.  Shared by
 * the kernel (vec_fold.cu) and the host emulation's test. */
#ifndef LA_CUDA_VEC_FOLD_CUH
#define LA_CUDA_VEC_FOLD_CUH

#include "vec_params.h"

/* seg_state: [num_seqs * nseg, H, D, E] contiguous; seg_tot_k [.., H, D];
 * seg_tot_v [.., H, E] or NULL; s0.ptr / sN.ptr NULL: zero / not wanted. */
__device__ __forceinline__ void la_vec_fold_elem(float *seg_state, const float *seg_tot_k, const float *seg_tot_v,
                                                 la_st_t s0, la_st_t sN, int nseg, int H, int D, int E,
                                                 int64_t seq, int h, int d, int e) {
    float S = s0.ptr ? s0.ptr[seq * s0.ss + h * s0.sh + d * s0.sd + e * s0.se] : 0.0f;
    for (int j = 0; j < nseg; j++) {
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

#endif
