/*
 * decode_kernel.cuh - decode on the GPU: T >= 1 new tokens of every
 * sequence, every decay kind, states dense or in a pool by slot.
 *
 * One block per (sequence, head); thread e owns column e of the state.  The
 * recurrence is element-wise along a column, s = a_d s b_e + k_d v_e, so a
 * thread walks the D rows in batches, and for each row steps all T tokens in
 * registers before the next row: every state element is read once and
 * written once per call (the floor of this operation), whatever T is, and
 * o_t accumulates q_t s over the rows in one register per token.  The state
 * after token t is also stored where a token slot asks for it (speculative
 * decoding).  q, k and the key decays of the T tokens sit in shared memory;
 * v and the value decays of column e in registers.
 *
 * Pools: the block's slots are resolved once (slot_checks.cuh); padding
 * writes zeros to o and touches no state; a slot outside the pool is never
 * read or written.  In the deferred check mode the block of head 0 of each
 * sequence also checks its slots against every write of the call (in
 * parallel over its threads) and records a fault, so the check needs no
 * launch of its own.
 *
 * Written as a block function (la_decode_block) that the host compiler also
 * builds, for the emulated test (tests/test_serving_emulated.cpp); all of the
 * block's shared data is in its one dynamic array.
 */
#ifndef LA_CUDA_DECODE_KERNEL_CUH
#define LA_CUDA_DECODE_KERNEL_CUH

#include "decode_params.h"
#include "inline_checks.cuh"
#include "slot_checks.cuh"

#include <math.h>

/* Shared memory: a header of the block's slot facts, then q (scaled), k and
 * exp(key decay) of the T tokens, [TM][D] floats each. */
#define LA_DECODE_HDR 64
#define LA_DECODE_SMEM(TM, D) (LA_DECODE_HDR + 3 * (TM) * (D) * (int)sizeof(float))
/* Rows a thread loads before it stores: src and dst may be one buffer, so the
 * compiler cannot hoist a load above an earlier store; the batches keep 16
 * loads in flight (one at a time measured 1.86x the floor at B64 H32
 * D = E = 128). */
#define LA_DECODE_ROWS 16

template <typename T>
__device__ __forceinline__ float la_dec_elem(const void *p, int64_t i) {
    return float(static_cast<const T *>(p)[i]);
}

/* Does any write of the call collide with sequence b's slots, or is one of
 * them out of range?  Every thread looks at its share of the writes. */
static __device__ bool la_decode_slot_clash(const la_slots_t *q, int64_t b, int tid, int nthreads) {
    const int64_t nw = la_slot_nwrites(q);
    const bool reads = la_slot_reads(q, b);
    const int64_t from = la_slot_from(q, b);
    bool bad = false;
    if (tid == 0) {
        if (q->accepted) {
            const int64_t n = la_slot_at(q->accepted, q->idx64, b);
            bad = n < 0 || n > q->T;
        }
        bad = bad || (reads && (from < 0 || from >= q->num_slots));
        for (int64_t i = 0; i < nw; i++) bad = bad || la_slot_write_at(q, b, i) >= q->num_slots;
    }
    for (int64_t w = tid; w < q->S * nw; w += nthreads) {
        const int64_t j = w / nw, i = w % nw;
        if (la_slot_padding(q, j)) continue;
        const int64_t x = la_slot_write_at(q, j, i);
        if (x < 0) continue;
        for (int64_t k = 0; k < nw; k++)
            if ((j != b || k != i) && la_slot_write_at(q, b, k) == x) bad = true;
        if (j != b && reads && x == from) bad = true;
    }
    return bad;
}

template <typename T, typename SV, int TM>
__device__ void la_decode_block(const la_decode_params_t &p, int bx, int tid, int nthreads, char *sm) {
    const int b = bx / p.H, h = bx % p.H, D = p.D, E = p.E, NT = p.T;
    int64_t *hdr = (int64_t *)sm; /* from (-1: zeros), to (-1: none), padding, fault */
    float *qs = (float *)(sm + LA_DECODE_HDR), *ks = qs + TM * D, *as = ks + TM * D;
    const bool pooled = p.pool != nullptr;
    const la_slots_t *sl = &p.slots;
    if (tid == 0) {
        int64_t from = 0, to = 0, pad = 0;
        if (pooled) {
            pad = la_slot_padding(sl, b);
            from = pad || !la_slot_reads(sl, b) ? -1 : la_slot_from(sl, b);
            to = pad ? -1 : la_slot_final(sl, b);
            if (from >= sl->num_slots || from < 0) from = -1; /* a fault (reported): read nothing */
            if (to >= sl->num_slots) to = -1;
        }
        hdr[0] = from;
        hdr[1] = to;
        hdr[2] = pad;
        hdr[3] = 0;
    }
    for (int i = tid; i < NT * D; i += nthreads) {
        const int t = i / D, d = i % D;
        qs[t * D + d] = la_dec_elem<T>(p.q.ptr, b * p.q.sb + h * p.q.sh + t * p.q.st + d * p.q.sc) * p.scale;
        ks[t * D + d] = la_dec_elem<T>(p.k.ptr, b * p.k.sb + h * p.k.sh + t * p.k.st + d * p.k.sc);
        float g = 0.0f;
        if (p.decay == 1) g = la_head_log_decay(p.ld, p.ld_sh, p.H, h, p.check_rec);
        else if (p.decay == 2) g = p.ld[b * p.ld_sb + h * p.ld_sh + t * p.ld_st];
        else if (p.decay >= 3) g = p.ld[b * p.ld_sb + h * p.ld_sh + t * p.ld_st + d * p.ld_sc];
        as[t * D + d] = expf(g);
    }
    __syncthreads();
    const bool pad = hdr[2] != 0;
    if (pooled && p.slot_rec && h == 0 && !pad) { /* uniform over the block */
        if (la_decode_slot_clash(sl, b, tid, nthreads)) hdr[3] = 1;
        __syncthreads();
        if (tid == 0 && hdr[3]) la_record_slot_fault(p.slot_rec, sl, b);
    }
    const int64_t from = hdr[0], to = hdr[1];
    for (int e = tid; e < E; e += nthreads) {
        float vv[TM], bb[TM], acc[TM];
        int64_t keep[TM]; /* token slots, -1: not kept */
#pragma unroll
        for (int t = 0; t < TM; t++) {
            acc[t] = 0.0f;
            vv[t] = bb[t] = 0.0f;
            keep[t] = -1;
            if (t >= NT) continue;
            vv[t] = la_dec_elem<T>(p.v.ptr, b * p.v.sb + h * p.v.sh + t * p.v.st + e * p.v.sc);
            bb[t] = p.decay == 4 ? expf(p.ldv[b * p.ldv_sb + h * p.ldv_sh + t * p.ldv_st + e * p.ldv_sc]) : 1.0f;
            if (pooled && sl->token) {
                const int64_t ts = la_slot_token(sl, b, t);
                keep[t] = ts >= 0 && ts < sl->num_slots ? ts : -1;
            }
        }
        if (pad) {
            for (int t = 0; t < NT; t++)
                static_cast<T *>(const_cast<void *>(p.o.ptr))[b * p.o.sb + h * p.o.sh + t * p.o.st + e * p.o.sc] = T(0.0f);
            continue;
        }
        const SV *src;
        SV *dst;
        int64_t sd, pbase = h * p.pool_sh + e * p.pool_se;
        if (pooled) {
            src = from >= 0 ? static_cast<const SV *>(p.pool) + from * p.pool_ss + pbase : nullptr;
            dst = to >= 0 ? static_cast<SV *>(p.pool) + to * p.pool_ss + pbase : nullptr;
            sd = p.pool_sd;
        } else {
            src = reinterpret_cast<const SV *>(p.s0.ptr + b * p.s0.ss + h * p.s0.sh + e * p.s0.se);
            dst = reinterpret_cast<SV *>(p.sN.ptr + b * p.sN.ss + h * p.sN.sh + e * p.sN.se);
            sd = p.s0.sd;
        }
        const int64_t dsd = pooled ? p.pool_sd : p.sN.sd;
        for (int d0 = 0; d0 < D; d0 += LA_DECODE_ROWS) {
            float s[LA_DECODE_ROWS];
#pragma unroll
            for (int u = 0; u < LA_DECODE_ROWS; u++) s[u] = src && d0 + u < D ? float(src[(d0 + u) * sd]) : 0.0f;
#pragma unroll
            for (int t = 0; t < TM; t++) {
                if (t >= NT) break;
#pragma unroll
                for (int u = 0; u < LA_DECODE_ROWS; u++) {
                    const int d = d0 + u;
                    if (d >= D) break;
                    const float x = as[t * D + d] * s[u] * bb[t] + ks[t * D + d] * vv[t];
                    s[u] = x;
                    acc[t] += qs[t * D + d] * x;
                }
                if (keep[t] >= 0) {
                    SV *kp = static_cast<SV *>(p.pool) + keep[t] * p.pool_ss + pbase;
#pragma unroll
                    for (int u = 0; u < LA_DECODE_ROWS; u++)
                        if (d0 + u < D) kp[(d0 + u) * p.pool_sd] = SV(s[u]);
                }
            }
            if (dst) {
#pragma unroll
                for (int u = 0; u < LA_DECODE_ROWS; u++)
                    if (d0 + u < D) dst[(d0 + u) * dsd] = SV(s[u]);
            }
        }
#pragma unroll
        for (int t = 0; t < TM; t++)
            if (t < NT)
                static_cast<T *>(const_cast<void *>(p.o.ptr))[b * p.o.sb + h * p.o.sh + t * p.o.st + e * p.o.sc] = T(acc[t]);
    }
}

#ifdef __CUDACC__
template <typename T, typename SV, int TM>
__global__ void la_decode_kernel(const la_decode_params_t p) {
    extern __shared__ __align__(16) char la_decode_sm[];
    la_decode_block<T, SV, TM>(p, blockIdx.x, threadIdx.x, blockDim.x, la_decode_sm);
}
#endif

#endif
