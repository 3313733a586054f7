/* vec_mma_kernel.cuh - the vector-decay recurrence on tensor cores (bf16 and
 * f16 inputs, row dim up to 128): the same recurrence, options and results
 * as the fp32 kernel (vec_fwd_kernel.cuh, vec_params.h), which stays for f32
 * inputs, wider rows and plans without the shared memory for this one.
 *
 *   S_u = diag(e^{alpha_u}) S_{u-1} diag(e^{beta_u}) + kscale k_u^T v_u,   y_u = scale q_u S_u
 *
 * (alpha: the row log decays, gk; beta: the column log decays, gv; either may
 * be absent).  A block owns (sequence, head, ET value columns) and walks
 * its sequence in chunks of L = 16 steps with the fp32 state slice in
 * registers, as mma accumulators.  Per chunk, with lambda_u / nu_u the
 * inclusive sums of alpha / beta over the chunk's steps up to u, mu_s / xi_s
 * the exclusive sums after s (each summed from its own terms, so no
 * difference of large sums loses digits), and lambda_L, nu_L the chunk's
 * totals:
 *
 *   inter   y_u  = e^{nu_u} . (scale q_u e^{lambda_u}) S                exponents <= 0
 *   scores  P_us = sum_d q_ud k_sd e^{lambda_ud - lambda_sd}        (s <= u)
 *   intra   y_ue += sum_s P_us v_se e^{nu_ue - nu_se}
 *   state   S <- diag(e^{lambda_L}) S diag(e^{nu_L}) + (kscale k e^{mu})^T (v e^{xi})
 *
 * The diagonal factors e^{lambda_u - lambda_s} would overflow as a product of
 * a query factor and a key factor anchored at the chunk start.  Anchored at
 * the middle of the chunk's decay, M = lambda_L / 2, both factors lie within
 * e^{+-|lambda_L| / 2}: a row whose chunk decay stays above e^{-SAFE} takes
 * the factored product on tensor cores (q e^{lambda_u - M}) (k e^{M -
 * lambda_s}); the rows past it (rare: a near-closed gate) are left out of
 * that product and added exactly, channel by channel, in fp32, with one
 * e^{sum of alpha from s + 1 to u} per pair.  Columns alike for the value
 * decay.  So every exponent is bounded, and no factor is an
 * exponential of a difference that could overflow.
 *
 * Precision: the products that make outputs round their operands to the
 * input dtype (as the scalar kernels do), or with SP split them into hi +
 * lo parts (three mmas a product), for the backward's runs whose outputs
 * feed a decay gradient: that sum over the sequence partly cancels, so its
 * terms need fp32 accuracy.  The state update always splits its decayed
 * operands, so states keep fp32 accuracy.
 * Deterministic: fixed orders, no atomics (the masks are ballots).
 *
 * Per chunk, barriers B1..B4 (B5 for a running sum):
 *   prep   threads by channel: sums, factors, operands, masks   -> B1
 *          then every thread: the next chunk's inputs to the other stage
 *          (cp.async pieces, or element copies), landing by B4
 *   B      every warp: its rows of the state update (registers), its n8
 *          tile of the inter product; warps 0, 1: the scores' tiles -> B2
 *   C      thread per (u, s): the mask and unfactored rows      -> B3
 *   D      every warp: intra product, y to shared memory, the new state
 *          copy                                                 -> B4
 *   E      thread per (u, e), e fixed per thread: unfactored columns,
 *          outputs (and B5, the running sums of term_mode 2). */
#ifndef LA_CUDA_VEC_MMA_KERNEL_CUH
#define LA_CUDA_VEC_MMA_KERNEL_CUH

#include "mma.cuh"
#include "vec_mma_layout.h"
#include "vec_params.h"

/* The largest chunk decay |lambda_L| a channel may have and still take the
 * factored diagonal: its factors reach e^{SAFE / 2}.  bf16 has fp32's
 * exponent range; f16's largest value is 65504 (e^11), and its normal range
 * ends at 6e-5, so its factors stay within e^{+-6}. */
template <typename T> struct vm_safe { static constexpr float value = 80.0f; };
template <> struct vm_safe<__half> { static constexpr float value = 12.0f; };

/* Where a block's sequence lies, and which of its steps is which token. */
struct vm_seq {
    int64_t b, t0, t1, len;
    int reverse;
    /* The token of step u (from the walk's start), and whose decays it takes. */
    __device__ __forceinline__ int64_t tok(int64_t u) const { return reverse ? t1 - 1 - u : t0 + u; }
    __device__ __forceinline__ int64_t dtok(int64_t u) const { return reverse ? t1 - u : t0 + u; }
};

/* Whether a block may copy its inputs in 16-byte pieces: unit channel
 * strides, and every base, stride and row dim a multiple of 16 bytes, so
 * that a piece never straddles a row's end. */
template <typename T>
__device__ __forceinline__ bool vm_pieces_ok(const la_tok_t &x, int channels) {
    constexpr int PE = 16 / sizeof(T); /* elements per piece */
    return !x.ptr || (x.sc == 1 && channels % PE == 0 && x.sb % PE == 0 && x.sh % PE == 0 && x.st % PE == 0 &&
                      (reinterpret_cast<uintptr_t>(x.ptr) & 15) == 0);
}
__device__ __forceinline__ bool vm_pieces_ok_f32(const float *x, int64_t sb, int64_t sh, int64_t st, int64_t sc,
                                                 int channels) {
    return !x || (sc == 1 && channels % 4 == 0 && sb % 4 == 0 && sh % 4 == 0 && st % 4 == 0 &&
                  (reinterpret_cast<uintptr_t>(x) & 15) == 0);
}

/* One input of a chunk, [L][W] in its stage (W = DM or ET channels),
 * of which the first `valid` channels exist: channel c of step u is
 * x[t * st + c * sc], t the walk's token of step u, or with `decays` the
 * token whose decays step u takes (none past the sequence's end).  In
 * 16-byte pieces by cp.async where the block may (zero-filled where nothing
 * is read), else element by element. */
template <typename X, int W, int TH>
__device__ __forceinline__ void vm_load_input(X *dst, const X *x, int64_t st, int64_t sc, int valid, const vm_seq &sq,
                                              int64_t c0, bool decays, bool pieces) {
    const int tid = threadIdx.x;
    if (pieces) {
        constexpr int PE = 16 / sizeof(X), NP = W / PE;
#pragma unroll
        for (int i = tid; i < LA_VM_L * NP; i += TH) {
            const int u = i / NP, c = (i % NP) * PE;
            const int64_t t = decays ? sq.dtok(c0 + u) : sq.tok(c0 + u);
            const bool ok = c0 + u < sq.len && c < valid && (!decays || t < sq.t1);
            if (x) cp_async_16(dst + u * W + c, ok ? x + t * st + c : x, ok ? 16 : 0);
            else
#pragma unroll
                for (int j = 0; j < PE; j++) dst[u * W + c + j] = X(0.0f); /* an absent input: zeros */
        }
    } else {
#pragma unroll 4
        for (int i = tid; i < LA_VM_L * W; i += TH) {
            const int u = i / W, c = i % W;
            const int64_t t = decays ? sq.dtok(c0 + u) : sq.tok(c0 + u);
            const bool ok = x && c0 + u < sq.len && c < valid && (!decays || t < sq.t1);
            dst[i] = ok ? x[t * st + c * sc] : X(0.0f);
        }
    }
}

/* A chunk's inputs (q, k, row decays; v, column decays) to a stage, from the
 * block's (sequence, head, first value column). */
template <typename T, int DM, int ET, bool RD, bool CD>
__device__ __forceinline__ void vm_load_chunk(char *raw, const la_vec_params_t &p, const vm_seq &sq, int h, int e0,
                                              int EV, int64_t c0, bool out, bool pieces) {
    typedef vm_layout<DM, ET, false> Y; /* the input stages lie alike in both layouts */
    constexpr int TH = LA_VM_THREADS(ET);
    const T *q = out && p.q.ptr ? static_cast<const T *>(p.q.ptr) + sq.b * p.q.sb + h * p.q.sh : nullptr;
    const T *k = p.k.ptr ? static_cast<const T *>(p.k.ptr) + sq.b * p.k.sb + h * p.k.sh : nullptr;
    const T *v = p.v.ptr ? static_cast<const T *>(p.v.ptr) + sq.b * p.v.sb + h * p.v.sh + e0 * p.v.sc : nullptr;
    vm_load_input<T, DM, TH>(reinterpret_cast<T *>(raw + Y::R_Q), q, p.q.st, p.q.sc, p.D, sq, c0, false, pieces);
    vm_load_input<T, DM, TH>(reinterpret_cast<T *>(raw + Y::R_K), k, p.k.st, p.k.sc, p.D, sq, c0, false, pieces);
    vm_load_input<T, ET, TH>(reinterpret_cast<T *>(raw + Y::R_V), v, p.v.st, p.v.sc, EV, sq, c0, false, pieces);
    const float *a = RD && p.gk ? p.gk + sq.b * p.gk_sb + h * p.gk_sh : nullptr;
    const float *bb = CD ? p.gv + sq.b * p.gv_sb + h * p.gv_sh + e0 * p.gv_sc : nullptr;
    vm_load_input<float, DM, TH>(reinterpret_cast<float *>(raw + Y::R_A), a, p.gk_st, p.gk_sc, p.D, sq, c0, true, pieces);
    vm_load_input<float, ET, TH>(reinterpret_cast<float *>(raw + Y::R_B), bb, p.gv_st, p.gv_sc, EV, sq, c0, true,
                                   pieces);
    cp_async_commit();
}

/* e^x for the operand pass: one ex2.approx.ftz.  Rounding x log2 e gives a
 * relative error of |x| 2^-24 (plus the instruction's 2 ulp): for x <= 0 an
 * absolute error of at most 2^-24 / e, for the anchor factors e^{-M} (x up
 * to SAFE / 2 = 40) a relative 2.4e-6, far inside an operand's rounding.
 * Results below 2^-126 flush to zero. */
__device__ __forceinline__ float vm_exp(float x) {
#ifdef __CUDA_ARCH__
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x * 1.4426950408889634f));
    return y;
#else
    return exp2f(x * 1.4426950408889634f);
#endif
}

/* One channel's decay over a chunk: the total log decay of x[u * stride],
 * u < L (0 where the channel has none), whether the diagonal may take the
 * factored product, its anchor factor e^{-M} = e^{M - total} (M = total /
 * 2) and the whole chunk's factor e^{total}. */
struct vm_chan {
    float tot, eM, etot;
    bool safe;
};
template <bool HAS>
__device__ __forceinline__ vm_chan vm_channel(const float *x, int stride, float safe_limit) {
    vm_chan c;
    c.tot = 0.0f;
    if (HAS)
#pragma unroll
        for (int u = 0; u < LA_VM_L; u++) c.tot += x[u * stride];
    c.safe = -c.tot <= safe_limit;
    c.eM = HAS ? vm_exp(-0.5f * c.tot) : 1.0f;
    c.etot = HAS ? vm_exp(c.tot) : 1.0f;
    return c;
}

/* x as an operand hi part and its remainder lo. */
template <typename T> __device__ __forceinline__ void vm_split(float x, T &hi, T &lo) {
    hi = T(x);
    lo = T(x - float(hi));
}

/* An output product's operand element: hi[i], and with SP its lo part. */
template <typename T, bool SP> __device__ __forceinline__ void vm_put(T *hi, T *lo, int i, float x) {
    const T h = T(x);
    hi[i] = h;
    if (SP) lo[i] = T(x - float(h));
}

/* Two adjacent elements (i even): one 4-byte store a plane. */
template <typename T> struct __align__(4) vm_pair { T x, y; };
template <typename T, bool SP> __device__ __forceinline__ void vm_put2(T *hi, T *lo, int i, float x, float y) {
    vm_pair<T> h;
    h.x = T(x);
    h.y = T(y);
    *reinterpret_cast<vm_pair<T> *>(hi + i) = h;
    if (SP) {
        vm_pair<T> l;
        l.x = T(x - float(h.x));
        l.y = T(y - float(h.y));
        *reinterpret_cast<vm_pair<T> *>(lo + i) = l;
    }
}

/* A warp's state accumulators S[NT][4] (rows 16 rb + .., n8 tiles nt0 + ..)
 * to the state copy the inter product reads (row pitch VP). */
template <typename T, bool SP, int NT, int VP>
__device__ __forceinline__ void vm_copy_state(const float (&S)[NT][4], T *Sc, T *Scl, int rb, int nt0, int lane) {
    const int g = lane / 4, t4 = lane % 4;
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int r = 0; r < 4; r += 2) {
            const int d = 16 * rb + g + 8 * (r >> 1), e = 8 * (nt0 + j) + 2 * t4;
            vm_put2<T, SP>(Sc, Scl, d * VP + e, S[j][r], S[j][r + 1]);
        }
}

/* d += a b, or with SP (a + al)(b + bl) less al bl: the small terms first. */
template <typename T, bool SP>
__device__ __forceinline__ void vm_mma(float d[4], const uint32_t *a, const uint32_t *al, const uint32_t *b,
                                       const uint32_t *bl) {
    if (SP) {
        mma_16816<T>(d, al, b);
        mma_16816<T>(d, a, bl);
    }
    mma_16816<T>(d, a, b);
}

template <typename T, int DM, int ET, bool RD, bool CD, bool SP>
__global__ void __launch_bounds__(LA_VM_THREADS(ET), 512 / LA_VM_THREADS(ET)) la_vec_mma_kernel(const la_vec_params_t p) {
    typedef vm_layout<DM, ET, SP> Y;
    constexpr int L = LA_VM_L, TH = LA_VM_THREADS(ET), QP = Y::QP, VP = Y::VP, PP = Y::PP;
    constexpr float SAFE = vm_safe<T>::value;
    /* The state update's warp tiles: RBS row blocks of 16, each split into CG column groups of NT n8 tiles. */
    constexpr int RBS = DM / 16, CG = TH / 32 / RBS, NT = ET / 8 / CG;
    /* The operand pass: a thread per channel walks its prefixes and suffixes, or (WALK2, where the
     * block has a thread for each) two threads walk them apart.  Column threads start at CB. */
    constexpr bool WALK2 = TH >= 2 * (DM + ET);
    constexpr int CB = WALK2 ? 2 * DM : DM;
    extern __shared__ __align__(16) char sm[];
    const int tid = threadIdx.x, w = tid / 32, lane = tid % 32, g = lane / 4, t4 = lane % 4;
    const int s = blockIdx.x, h = blockIdx.y, e0 = blockIdx.z * ET;
    const int EV = p.E - e0 < ET ? p.E - e0 : ET;
    const bool out = p.o.ptr != nullptr || p.term != nullptr;
    vm_seq sq;
    sq.reverse = p.reverse;
    if (p.cu) {
        sq.b = 0;
        sq.t0 = p.cu[s];
        sq.t1 = p.cu[s + 1];
    } else if (p.nseg > 1) {
        sq.b = s / p.nseg;
        sq.t0 = (s % p.nseg) * p.seg_len;
        sq.t1 = sq.t0 + p.seg_len < p.seqlen ? sq.t0 + p.seg_len : p.seqlen;
    } else {
        sq.b = s;
        sq.t0 = 0;
        sq.t1 = p.seqlen;
    }
    sq.len = sq.t1 - sq.t0;

    T *qh = reinterpret_cast<T *>(sm + Y::QH), *qd = reinterpret_cast<T *>(sm + Y::QD);
    T *kh = reinterpret_cast<T *>(sm + Y::KH), *kl = reinterpret_cast<T *>(sm + Y::KL);
    T *kd = reinterpret_cast<T *>(sm + Y::KD), *vh = reinterpret_cast<T *>(sm + Y::VH);
    T *vl = reinterpret_cast<T *>(sm + Y::VL), *vd = reinterpret_cast<T *>(sm + Y::VD);
    T *Sc = reinterpret_cast<T *>(sm + Y::SC), *Pb = reinterpret_cast<T *>(sm + Y::PB);
    float *Pf = reinterpret_cast<float *>(sm + Y::PF), *Ys = reinterpret_cast<float *>(sm + Y::Y);
    float *eN = reinterpret_cast<float *>(sm + Y::EN), *eNM = reinterpret_cast<float *>(sm + Y::ENM);
    float *TR = reinterpret_cast<float *>(sm + Y::TR), *UC = reinterpret_cast<float *>(sm + Y::UC);
    uint32_t *MR = reinterpret_cast<uint32_t *>(sm + Y::MR), *MC = reinterpret_cast<uint32_t *>(sm + Y::MC);
    double *sums = reinterpret_cast<double *>(sm + Y::SUM);
    double *TI = reinterpret_cast<double *>(sm + (SP ? Y::TI : Y::SUM)); /* SP only (term_mode 2 runs split) */
    /* The lo planes (SP only; else aliases of the hi planes that nothing writes or reads). */
    T *qhl = reinterpret_cast<T *>(sm + (SP ? Y::QHL : Y::QH)), *qdl = reinterpret_cast<T *>(sm + (SP ? Y::QDL : Y::QD));
    T *kdl = reinterpret_cast<T *>(sm + (SP ? Y::KDL : Y::KD)), *vdl = reinterpret_cast<T *>(sm + (SP ? Y::VDL : Y::VD));
    T *Pbl = reinterpret_cast<T *>(sm + (SP ? Y::PBL : Y::PB)), *Scl = reinterpret_cast<T *>(sm + (SP ? Y::SCL : Y::SC));

    /* The state: warp w holds rows 16 rb .. of the slice, n8 tiles nt0 .. nt0 + NT. */
    const int rb = w % RBS, nt0 = (w / RBS) * NT;
    float S[NT][4];
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int r = 0; r < 4; r++) {
            const int d = 16 * rb + g + 8 * (r >> 1), e = 8 * (nt0 + j) + 2 * t4 + (r & 1);
            S[j][r] = p.s0.ptr && d < p.D && e < EV
                          ? p.s0.ptr[s * p.s0.ss + h * p.s0.sh + d * p.s0.sd + (e0 + e) * p.s0.se]
                          : 0.0f;
        }
    if (out) vm_copy_state<T, SP, NT, VP>(S, Sc, Scl, rb, nt0, lane);
    if (p.term_mode == 2) /* the final state's share of each column's sum */
        for (int c = tid; c < ET; c += TH) {
            double f = 0.0;
            if (p.fin_a.ptr && c < EV)
                for (int r = 0; r < p.D; r++)
                    f += (double)p.fin_a.ptr[s * p.fin_a.ss + h * p.fin_a.sh + r * p.fin_a.sd + (e0 + c) * p.fin_a.se] *
                         (double)p.fin_b.ptr[s * p.fin_b.ss + h * p.fin_b.sh + r * p.fin_b.sd + (e0 + c) * p.fin_b.se];
            sums[c] = f;
        }

    /* This thread's output column (fixed: E walks rows of the same column): base pointers at (sequence, head, column). */
    const int64_t eo = e0 + (tid % ET < EV ? tid % ET : 0);
    T *ob = p.o.ptr ? static_cast<T *>(const_cast<void *>(p.o.ptr)) + sq.b * p.o.sb + h * p.o.sh + eo * p.o.sc : nullptr;
    float *tb = p.term ? p.term + sq.b * p.term_sb + h * p.term_sh + eo * p.term_sc : nullptr;
    const T *mb = p.mul.ptr ? static_cast<const T *>(p.mul.ptr) + sq.b * p.mul.sb + h * p.mul.sh + eo * p.mul.sc : nullptr;
    const bool pieces = vm_pieces_ok<T>(p.q, p.D) && vm_pieces_ok<T>(p.k, p.D) && vm_pieces_ok<T>(p.v, p.E) &&
                        vm_pieces_ok_f32(p.gk, p.gk_sb, p.gk_sh, p.gk_st, p.gk_sc, p.D) &&
                        vm_pieces_ok_f32(p.gv, p.gv_sb, p.gv_sh, p.gv_st, p.gv_sc, p.E);
    vm_load_chunk<T, DM, ET, RD, CD>(sm, p, sq, h, e0, EV, 0, out, pieces);
    cp_async_wait<0>();
    __syncthreads();

    float seg_tot = 0.0f; /* the walk's summed log decays of this thread's row (prefix walkers) or column */

    /* Per-lane ldmatrix row offsets (elements): A tiles from [m][k] rows
     * (non-transposed), B tiles from [k][n] rows (transposed), B tiles from [n][k] rows. */
    const int mi = lane / 8, r8 = lane % 8;
    const int a_row = r8 + 8 * (mi & 1), a_col = 8 * (mi >> 1);   /* A [m][k]: matrices m0-7/k0-7, m8-15, k8-15 ... */
    const int at_row = r8 + 8 * (mi >> 1), at_col = 8 * (mi & 1); /* A^T stored [k][m] */
    const int bt_row = r8 + 8 * (mi & 1), bt_col = 8 * (mi >> 1); /* B stored [k][n]: two n8 tiles of k16 */

    for (int64_t c0 = 0, ci = 0; c0 < sq.len; c0 += L, ci++) {
        const char *raw = sm + (ci & 1) * Y::RAW;
        const T *rq = reinterpret_cast<const T *>(raw + Y::R_Q), *rk = reinterpret_cast<const T *>(raw + Y::R_K);
        const T *rv = reinterpret_cast<const T *>(raw + Y::R_V);
        const float *ra = reinterpret_cast<const float *>(raw + Y::R_A), *rbt = reinterpret_cast<const float *>(raw + Y::R_B);
        const bool more = c0 + L < sq.len;

        /* ---- prep: per row channel, then per column, the prefix walk (with the
         * channel's chunk decay and mask bit) and the suffix walk: on one
         * thread, or where the block has the threads (WALK2), on two ---- */
        const bool rowp = tid < DM, rows = WALK2 ? tid >= DM && tid < 2 * DM : rowp;
        const bool colp = tid >= CB && tid < CB + ET, cols = WALK2 ? tid >= CB + ET && tid < CB + 2 * ET : colp;
        if (rowp || rows) {
            const int d = rowp ? tid : tid - DM;
            const vm_chan c = vm_channel<RD>(ra + d, DM, SAFE);
            const float eM = c.safe ? c.eM : 0.0f; /* 0: the diagonal takes this row exactly, in C */
            if (rowp) {
                seg_tot += c.tot;
                TR[d] = c.etot;
                float run = 0.0f;
                if (out) { /* the operands of the outputs' products: none in a state-only walk */
#pragma unroll
                    for (int u = 0; u < L; u++) { /* prefix sums: the queries' factors */
                        if (RD) run += ra[u * DM + d];
                        const float qe = float(rq[u * DM + d]) * p.scale * (RD ? vm_exp(run) : 1.0f);
                        vm_put<T, SP>(qh, qhl, u * QP + d, qe);
                        vm_put<T, SP>(qd, qdl, u * QP + d, qe * eM);
                    }
                }
                const unsigned bad = __ballot_sync(0xffffffffu, !c.safe);
                if (lane == 0) MR[d / 32] = bad;
            }
            if (rows) {
                float run = 0.0f;
#pragma unroll
                for (int u = L - 1; u >= 0; u--) { /* suffix sums: the keys' factors */
                    const float ke = float(rk[u * DM + d]) * p.kscale * (RD ? vm_exp(run) : 1.0f);
                    if (RD) run += ra[u * DM + d];
                    T hi, lo;
                    vm_split<T>(ke, hi, lo);
                    kh[u * QP + d] = hi;
                    kl[u * QP + d] = lo;
                    if (out) vm_put<T, SP>(kd, kdl, u * QP + d, ke * eM);
                }
            }
        } else if (colp || cols) {
            const int e = colp ? tid - CB : tid - CB - ET;
            const vm_chan c = vm_channel<CD>(rbt + e, ET, SAFE);
            const float eM = c.safe ? c.eM : 0.0f; /* 0: E adds this column exactly */
            if (colp) {
                seg_tot += c.tot;
                UC[e] = c.etot;
                float run = 0.0f;
                if (out) {
#pragma unroll
                    for (int u = 0; u < L; u++) { /* prefix sums: the output's column factors */
                        if (CD) run += rbt[u * ET + e];
                        const float en = CD ? vm_exp(run) : 1.0f;
                        eN[u * ET + e] = en;
                        eNM[u * ET + e] = en * eM;
                    }
                }
                const unsigned bad = __ballot_sync(0xffffffffu, !c.safe);
                if (lane == 0) MC[(ET / 32) * (ci & 1) + e / 32] = bad; /* two sets: E reads this one after the next prep */
            }
            if (cols) {
                float run = 0.0f;
#pragma unroll
                for (int u = L - 1; u >= 0; u--) { /* suffix sums: the values' factors */
                    const float ve = float(rv[u * ET + e]) * (CD ? vm_exp(run) : 1.0f);
                    if (CD) {
                        run += rbt[u * ET + e];
                        T hi, lo;
                        vm_split<T>(ve, hi, lo);
                        vh[u * VP + e] = hi;
                        vl[u * VP + e] = lo;
                    } else {
                        vh[u * VP + e] = rv[u * ET + e];
                    }
                    if (out) vm_put<T, SP>(vd, vdl, u * VP + e, ve * eM);
                }
            }
        }
        __syncthreads(); /* B1 */
        /* The next chunk's inputs to the other stage, which the last chunk's E read before B1. */
        if (more) vm_load_chunk<T, DM, ET, RD, CD>(sm + ((ci + 1) & 1) * Y::RAW, p, sq, h, e0, EV, c0 + L, out, pieces);

        /* ---- B: the state update in registers, the inter product, the scores ---- */
        float yi[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        if (out) {
            uint32_t a[4], b[4], al[4], bl[4];
#pragma unroll
            for (int kk = 0; kk < DM / 32; kk++) {
                ldmatrix_x4_trans(b, Sc + (32 * kk + r8 + 8 * mi) * VP + 8 * w);
                if (SP) ldmatrix_x4_trans(bl, Scl + (32 * kk + r8 + 8 * mi) * VP + 8 * w);
#pragma unroll
                for (int k2 = 0; k2 < 2; k2++) {
                    ldmatrix_x4(a, qh + a_row * QP + 32 * kk + 16 * k2 + a_col);
                    if (SP) ldmatrix_x4(al, qhl + a_row * QP + 32 * kk + 16 * k2 + a_col);
                    vm_mma<T, SP>(yi, a, al, b + 2 * k2, bl + 2 * k2);
                }
            }
            if (w < 2) { /* scores P[u][8w ..] */
                float pc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
                for (int kk = 0; kk < DM / 32; kk++) {
                    ldmatrix_x4(b, kd + (8 * w + r8) * QP + 32 * kk + 8 * mi);
                    if (SP) ldmatrix_x4(bl, kdl + (8 * w + r8) * QP + 32 * kk + 8 * mi);
#pragma unroll
                    for (int k2 = 0; k2 < 2; k2++) {
                        ldmatrix_x4(a, qd + a_row * QP + 32 * kk + 16 * k2 + a_col);
                        if (SP) ldmatrix_x4(al, qdl + a_row * QP + 32 * kk + 16 * k2 + a_col);
                        vm_mma<T, SP>(pc, a, al, b + 2 * k2, bl + 2 * k2);
                    }
                }
                Pf[g * L + 8 * w + 2 * t4] = pc[0];
                Pf[g * L + 8 * w + 2 * t4 + 1] = pc[1];
                Pf[(g + 8) * L + 8 * w + 2 * t4] = pc[2];
                Pf[(g + 8) * L + 8 * w + 2 * t4 + 1] = pc[3];
            }
        }
        {
#pragma unroll
            for (int j = 0; j < NT; j++)
#pragma unroll
                for (int r = 0; r < 4; r++) {
                    const int d = 16 * rb + g + 8 * (r >> 1), e = 8 * (nt0 + j) + 2 * t4 + (r & 1);
                    float x = S[j][r];
                    if (RD) x *= TR[d];
                    if (CD) x *= UC[e];
                    S[j][r] = x;
                }
            uint32_t ah[4], al[4];
            ldmatrix_x4_trans(ah, kh + at_row * QP + 16 * rb + at_col);
            ldmatrix_x4_trans(al, kl + at_row * QP + 16 * rb + at_col);
#pragma unroll
            for (int j = 0; j < NT; j += 2) {
                uint32_t bh[4];
                ldmatrix_x4_trans(bh, vh + bt_row * VP + 8 * (nt0 + j) + bt_col);
                mma_16816<T>(S[j], al, bh);
                mma_16816<T>(S[j + 1], al, bh + 2);
                if (CD) {
                    uint32_t bl[4];
                    ldmatrix_x4_trans(bl, vl + bt_row * VP + 8 * (nt0 + j) + bt_col);
                    mma_16816<T>(S[j], ah, bl);
                    mma_16816<T>(S[j + 1], ah, bl + 2);
                }
                mma_16816<T>(S[j], ah, bh);
                mma_16816<T>(S[j + 1], ah, bh + 2);
            }
        }
        __syncthreads(); /* B2 */

        /* ---- C: the causal mask and the rows left out of the factored scores ---- */
        if (out && tid < L * L) {
            const int u = tid / L, sc = tid % L;
            float x = 0.0f;
            if (sc <= u) {
                x = Pf[u * L + sc];
                for (int word = 0; word < DM / 32; word++)
                    for (uint32_t m = MR[word]; m; m &= m - 1) {
                        const int d = 32 * word + __ffs(m) - 1;
                        float sum = 0.0f;
                        for (int r = sc + 1; r <= u; r++) sum += ra[r * DM + d];
                        x += float(rq[u * DM + d]) * p.scale * (float(rk[sc * DM + d]) * p.kscale) * expf(sum);
                    }
            }
            Pf[u * L + sc] = x;
            vm_put<T, SP>(Pb, Pbl, u * PP + sc, x);
        }
        __syncthreads(); /* B3 */

        /* ---- D: the intra product, y, the new state copy ---- */
        if (out) {
            float yd[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            uint32_t a[4], b[4], al[4], bl[4];
            ldmatrix_x4(a, Pb + a_row * PP + a_col);
            ldmatrix_x4_trans(b, vd + bt_row * VP + 8 * w);
            if (SP) {
                ldmatrix_x4(al, Pbl + a_row * PP + a_col);
                ldmatrix_x4_trans(bl, vdl + bt_row * VP + 8 * w);
            }
            vm_mma<T, SP>(yd, a, al, b, bl);
#pragma unroll
            for (int r = 0; r < 4; r++) {
                const int u = g + 8 * (r >> 1), e = 8 * w + 2 * t4 + (r & 1);
                float y = yi[r];
                if (CD) y *= eN[u * ET + e];
                y += CD ? yd[r] * eNM[u * ET + e] : yd[r];
                Ys[u * ET + e] = y;
            }
        }
        if (out) vm_copy_state<T, SP, NT, VP>(S, Sc, Scl, rb, nt0, lane); /* for the next inter product */
        cp_async_wait<0>(); /* the next chunk's stage, visible after B4 */
        __syncthreads(); /* B4 */

        /* ---- E: the columns left out of the factored intra product, the outputs ---- */
        if (out) {
            const int n = sq.len - c0 < L ? (int)(sq.len - c0) : L;
            const uint32_t *mc = MC + (ET / 32) * (ci & 1);
            uint32_t any = 0;
#pragma unroll
            for (int i = 0; i < ET / 32; i++) any |= mc[i];
            const bool cbad = CD && any;
            const int e = tid % ET; /* this thread's column, the same in every row it writes */
            constexpr int RPT = L * ET / TH; /* rows per thread */
            /* The terms' inputs, all read before the stores below, which could alias them (and
             * would make each read wait for the last store's round trip). */
            float mv[RPT], xv[RPT];
#pragma unroll
            for (int j = 0; j < RPT; j++) {
                const int u = tid / ET + j * (TH / ET);
                const bool ok = p.term_mode && u < n && e < EV;
                const int64_t t = sq.tok(c0 + u);
                mv[j] = ok ? float(mb[t * p.mul.st]) : 0.0f;
                xv[j] = ok && p.term_mode == 2 && p.term_in ? tb[t * p.term_st] : 0.0f;
            }
#pragma unroll
            for (int j = 0; j < RPT; j++) {
                const int u = tid / ET + j * (TH / ET);
                if (u >= n || e >= EV) continue;
                float y = Ys[u * ET + e];
                if (cbad && (mc[e / 32] >> (e % 32) & 1)) {
                    float acc = 0.0f, sum = 0.0f;
                    for (int sc = u; sc >= 0; sc--) {
                        acc += Pf[u * L + sc] * float(rv[sc * ET + e]) * expf(sum);
                        sum += rbt[sc * ET + e];
                    }
                    y += acc;
                    Ys[u * ET + e] = y;
                }
                const int64_t t = sq.tok(c0 + u);
                if (ob) ob[t * p.o.st] = T(y);
                if (p.term_mode == 1) tb[t * p.term_st] = y * mv[j];
                if (SP && p.term_mode == 2) TI[u * ET + e] = (double)xv[j] - (double)mv[j] * (double)y;
            }
            if (p.term_mode == 2) { /* each column's running sum, in the walk's order */
                __syncthreads(); /* B5 */
                if (tid < EV) { /* thread tid's column is tid: tb points at it */
                    double acc = sums[tid];
                    for (int u = 0; u < n; u++) {
                        acc += TI[u * ET + tid];
                        tb[sq.tok(c0 + u) * p.term_st] = (float)acc;
                    }
                    sums[tid] = acc;
                }
            }
        }
    }
    if (p.seg_tot_k && tid < DM && tid < p.D && blockIdx.z == 0)
        p.seg_tot_k[((int64_t)s * p.H + h) * p.D + tid] = seg_tot;
    if (p.seg_tot_v && tid >= CB && tid < CB + EV)
        p.seg_tot_v[((int64_t)s * p.H + h) * p.E + e0 + tid - CB] = seg_tot;
    if (p.sN.ptr)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int r = 0; r < 4; r++) {
                const int d = 16 * rb + g + 8 * (r >> 1), e = 8 * (nt0 + j) + 2 * t4 + (r & 1);
                if (d >= p.D || e >= EV) continue;
                float x = S[j][r];
                if (p.reverse && sq.len > 0) { /* one more step back: the first token's own decay */
                    if (p.gk) x *= expf(p.gk[sq.b * p.gk_sb + h * p.gk_sh + sq.t0 * p.gk_st + d * p.gk_sc]);
                    if (CD) x *= expf(p.gv[sq.b * p.gv_sb + h * p.gv_sh + sq.t0 * p.gv_st + (e0 + e) * p.gv_sc]);
                }
                p.sN.ptr[s * p.sN.ss + h * p.sN.sh + d * p.sN.sd + (e0 + e) * p.sN.se] = x;
            }
}

#endif
