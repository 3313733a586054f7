/* vec_mma_kernel.cuh - the vector-decay recurrence on tensor cores (bf16 and
 * f16 inputs, row dim up to 128): the same recurrence, options and results
 * as the fp32 kernel (vec_fwd_kernel.cuh, vec_params.h), which stays for f32
 * inputs, wider rows and plans without the shared memory for this one.
 *
 *   S_u = diag(e^{alpha_u}) S_{u-1} diag(e^{beta_u}) + kscale k_u^T v_u,   y_u = scale q_u S_u
 *
 * (alpha: the row log decays, gk; beta: the column log decays, gv; either may
 * be absent).  A block owns (sequence, head, ET value columns) and walks
 * its sequence in chunks of L = 16 steps.  Warp w holds the transpose S^T
 * of the fp32 state for value columns 16 w .. 16 w + 15, every row, as mma
 * accumulators: the accumulators of two n8 tiles are the A fragment of a
 * k16 step, so the inter product reads the state from registers, and no
 * other warp ever needs it.  Per chunk, with lambda_u / nu_u the
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
 * Per chunk, barriers B1..B3 (B4 for a running sum):
 *   prep   walks (row prefix, row suffix; with column decays, column
 *          prefix and suffix), each over a pair of channels and split in
 *          two halves of 8 steps, a half a lane (the partner lane, lane ^ 1,
 *          has the other): sums, factors, packed operands, masks   -> B1
 *          then every thread: chunk c + ns - 1's inputs to the stage the
 *          last chunk read (cp.async pieces, or element copies; ns = 2 or 3
 *          stages), chunk c + 1's landing by B3
 *   scores warps 0, 1: an n8 tile each, masked, with the rows left out of
 *          the factored product added in fp32
 *   inter  every warp: y^T for its columns from the state in registers -> B2
 *   intra  every warp: its columns' intra product, y to shared memory;
 *          the state update in registers                           -> B3
 *   E      the outputs in 16-byte rows where nothing is kept per column;
 *          else a thread per (u, e), e fixed per thread: unfactored
 *          columns, outputs, terms (and B4, the running sums of
 *          term_mode 2). */
#ifndef LA_CUDA_VEC_MMA_KERNEL_CUH
#define LA_CUDA_VEC_MMA_KERNEL_CUH

#include "mma.cuh"
#include "vec_fold.cuh"
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

/* Whether every input of a run may be copied in 16-byte pieces. */
template <typename T> __device__ __forceinline__ bool vm_inputs_in_pieces(const la_vec_params_t &p) {
    return vm_pieces_ok<T>(p.q, p.D) && vm_pieces_ok<T>(p.k, p.D) && vm_pieces_ok<T>(p.v, p.E) &&
           vm_pieces_ok_f32(p.gk, p.gk_sb, p.gk_sh, p.gk_st, p.gk_sc, p.D) &&
           vm_pieces_ok_f32(p.gv, p.gv_sb, p.gv_sh, p.gv_st, p.gv_sc, p.E);
}

/* Which steps of a chunk have a row to read: u in [lo, hi).  Steps past the
 * walk's end have none; in a reverse walk, step u takes the decays of the
 * token after its own, and the sequence's last token has none (dend: the end
 * of the sequence the walk is part of, past a split's segment). */
struct vm_rows {
    int lo, hi;
};
__device__ __forceinline__ vm_rows vm_rows_of(const vm_seq &sq, int64_t c0, bool decays, int64_t dend) {
    vm_rows r;
    const int64_t left = sq.len - c0;
    r.hi = left < LA_VM_L ? (int)left : LA_VM_L;
    r.lo = 0;
    if (decays && sq.reverse && sq.dtok(c0) >= dend) r.lo = (int)(sq.dtok(c0) - dend + 1); /* only c0 = 0 */
    return r;
}

/* Row t of a tensor x (NULL: none): a row that may lie past the end (a step
 * with no row) is never read. */
template <typename X> __device__ __forceinline__ const X *vm_row(const X *x, int64_t t, int64_t st) {
    return x ? x + t * st : nullptr;
}

/* One input of a chunk, [L][W] in its stage (W = DM or ET channels, row
 * pitch P), of which the first `valid` channels exist: channel c of step u is
 * row0[u * rstep + c * sc] for u in rows (row0: step 0's row, rstep: the
 * step's stride, negative in a reverse walk), zeros elsewhere or where x,
 * the tensor at (sequence, head), is NULL.  In 16-byte pieces by cp.async
 * where the block may (zero-filled where nothing is read), else element by
 * element.  tid: this thread's index, opaque to the compiler (below). */
template <typename X, int W, int P, int TH>
__device__ __forceinline__ void vm_load_input(X *dst, const X *x, const X *row0, int64_t rstep, int64_t sc, int valid,
                                              vm_rows rows, bool pieces, unsigned tid) {
    if (pieces) {
        constexpr int PE = 16 / sizeof(X), NP = W / PE, N = LA_VM_L * NP;
#pragma unroll
        for (int j = 0; j < (N + TH - 1) / TH; j++) {
            const unsigned i = tid + j * TH;
            if (N % TH != 0 && i >= N) break;
            const int u = (int)(i / NP), c = (int)(i % NP) * PE;
            const bool ok = u >= rows.lo && u < rows.hi && c < valid;
            if (x) cp_async_16(dst + u * P + c, ok ? row0 + u * rstep + c : x, ok ? 16 : 0);
            else
#pragma unroll
                for (int e = 0; e < PE; e++) dst[u * P + c + e] = X(0.0f); /* an absent input: zeros */
        }
    } else {
#pragma unroll 4
        for (unsigned i = tid; i < LA_VM_L * W; i += TH) {
            const int u = (int)(i / W), c = (int)(i % W);
            const bool ok = x && u >= rows.lo && u < rows.hi && c < valid;
            dst[u * P + c] = ok ? row0[u * rstep + c * sc] : X(0.0f);
        }
    }
}

/* A chunk's inputs (q, k, row decays; v, column decays) to a stage, from the
 * block's (sequence, head, first value column), by the LA_VM_THREADS(ET)
 * threads from first_thread on.  RA: the stage has room for row decays
 * (vm_layout). */
template <typename T, int DM, int ET, bool RD, bool CD, bool RA = true>
__device__ __forceinline__ void vm_load_chunk(char *raw, const la_vec_params_t &p, const vm_seq &sq, int h, int e0,
                                              int EV, int64_t c0, bool out, bool pieces, unsigned first_thread) {
    static_assert(RA || !RD, "row decays need their stage region");
    typedef vm_layout<DM, ET, CD, false, RA> Y; /* the input stages lie alike split or not */
    constexpr int TH = LA_VM_THREADS(ET);
    /* The thread index made opaque: the copies' addresses are worked out afresh each chunk
     * rather than held in registers for the whole walk (which spilled). */
    unsigned tid = threadIdx.x - first_thread;
#ifdef __CUDA_ARCH__
    asm volatile("" : "+r"(tid));
#endif
    const int64_t dend = p.nseg > 1 ? p.seqlen : sq.t1; /* a split's segments: the row's end */
    const int64_t t = sq.tok(c0), dt = sq.dtok(c0), dir = sq.reverse ? -1 : 1;
    const vm_rows rows = vm_rows_of(sq, c0, false, dend), drows = vm_rows_of(sq, c0, true, dend);
    const T *q = out && p.q.ptr ? static_cast<const T *>(p.q.ptr) + sq.b * p.q.sb + h * p.q.sh : nullptr;
    const T *k = p.k.ptr ? static_cast<const T *>(p.k.ptr) + sq.b * p.k.sb + h * p.k.sh : nullptr;
    const T *v = p.v.ptr ? static_cast<const T *>(p.v.ptr) + sq.b * p.v.sb + h * p.v.sh + e0 * p.v.sc : nullptr;
    vm_load_input<T, DM, DM, TH>(reinterpret_cast<T *>(raw + Y::R_Q), q, vm_row(q, t, p.q.st), dir * p.q.st, p.q.sc, p.D,
                                 rows, pieces, tid);
    vm_load_input<T, DM, DM, TH>(reinterpret_cast<T *>(raw + Y::R_K), k, vm_row(k, t, p.k.st), dir * p.k.st, p.k.sc, p.D,
                                 rows, pieces, tid);
    vm_load_input<T, ET, Y::VP, TH>(reinterpret_cast<T *>(raw + Y::R_V), v, vm_row(v, t, p.v.st), dir * p.v.st, p.v.sc,
                                    EV, rows, pieces, tid);
    if (RD) { /* the row decays only where something reads them */
        const float *a = p.gk ? p.gk + sq.b * p.gk_sb + h * p.gk_sh : nullptr;
        vm_load_input<float, DM, DM, TH>(reinterpret_cast<float *>(raw + Y::R_A), a, vm_row(a, dt, p.gk_st),
                                         dir * p.gk_st, p.gk_sc, p.D, drows, pieces, tid);
    }
    if (CD) {
        const float *b = p.gv + sq.b * p.gv_sb + h * p.gv_sh + e0 * p.gv_sc;
        vm_load_input<float, ET, ET, TH>(reinterpret_cast<float *>(raw + Y::R_B), b, vm_row(b, dt, p.gv_st),
                                         dir * p.gv_st, p.gv_sc, EV, drows, pieces, tid);
    }
}

/* Waits until all but the newest ns - 2 copy groups have landed: the next
 * chunk's stage. */
__device__ __forceinline__ void vm_wait_stage(int ns) {
    if (ns >= 3) cp_async_wait<1>();
    else cp_async_wait<0>();
}

/* o at (the walk's batch row, head h, column col): its stores add t * o.st. */
template <typename T>
__device__ __forceinline__ T *vm_out_at(const la_vec_params_t &p, const vm_seq &sq, int h, int64_t col) {
    return static_cast<T *>(const_cast<void *>(p.o.ptr)) + sq.b * p.o.sb + h * p.o.sh + col * p.o.sc;
}

/* Whether a chunk has a column left out of the factored product (mc: its
 * mask words; never without column decays). */
template <int ET, bool CD> __device__ __forceinline__ bool vm_any_unfactored(const uint32_t *mc) {
    uint32_t any = 0;
    if (CD)
#pragma unroll
        for (int i = 0; i < ET / 32; i++) any |= mc[i];
    return any != 0;
}

/* The intra product's share of output (u, e) for a column left out of the
 * factored product (its chunk decay passes e^-SAFE): the sum over s <= u of
 * P[u][s] v[s][e] e^{the column's log decays from s + 1 to u}, in fp32, from
 * the scores Pf ([L][L]), the values rv and the column decays rbt as read. */
template <int L, int VP, int ET, typename T>
__device__ __forceinline__ float vm_col_exact(const float *Pf, const T *rv, const float *rbt, int u, int e) {
    float acc = 0.0f, sum = 0.0f;
    for (int sc = u; sc >= 0; sc--) {
        acc += Pf[u * L + sc] * float(rv[sc * VP + e]) * expf(sum);
        sum += rbt[sc * ET + e];
    }
    return acc;
}

/* A chunk's outputs from Ys ([L][YP] f32) to o, 16 bytes a thread: rows u <
 * n, columns below EV (a multiple of 8: vm_pieces_ok of o), from obase, o's
 * address at (sequence, head, the block's first column).  Where nothing else
 * reads or changes them per column (no terms, every column factored); by TH
 * threads, this one tid of them. */
template <typename T, int ET, int TH, int YP>
__device__ __forceinline__ void vm_store_rows(const float *Ys, T *obase, int64_t st, const vm_seq &sq, int64_t c0, int n,
                                              int EV, int tid) {
    constexpr int PR = ET / 8; /* 16-byte pieces a row */
#pragma unroll
    for (int i = tid; i < LA_VM_L * PR; i += TH) {
        const int u = i / PR, c = (i % PR) * 8;
        if (u >= n || c >= EV) continue;
        const float4 a = *reinterpret_cast<const float4 *>(Ys + u * YP + c);
        const float4 b = *reinterpret_cast<const float4 *>(Ys + u * YP + c + 4);
        uint4 w;
        uint32_t unused;
        pack_op2<T, false>(a.x, a.y, w.x, unused);
        pack_op2<T, false>(a.z, a.w, w.y, unused);
        pack_op2<T, false>(b.x, b.y, w.z, unused);
        pack_op2<T, false>(b.z, b.w, w.w, unused);
        *reinterpret_cast<uint4 *>(obase + sq.tok(c0 + u) * st + c) = w;
    }
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

/* A pair of channels' decays over a chunk, x[u * stride] and x[u * stride +
 * 1] for u < L (none: HAS false), from two lanes (lane ^ 1) that each walk
 * half of it, from step u0: the other half's sums (what a prefix walk of the
 * second half, or a suffix walk of the first, starts from), each channel's
 * total (the first half's sum plus the second's: the same on both lanes, so
 * a prefix and a suffix walk agree on the mask), whether the diagonal may
 * take the factored product, and its anchor factor e^{-total / 2} (0 where
 * it may not). */
struct vm_pair_chan {
    float oth0, oth1, tot0, tot1, eM0, eM1;
    bool safe0, safe1;
};
template <bool HAS>
__device__ __forceinline__ vm_pair_chan vm_pair_channel(const float *x, int stride, int u0, float safe_limit) {
    vm_pair_chan c;
    float part0 = 0.0f, part1 = 0.0f; /* this half's log decays, in step order */
    if (HAS)
#pragma unroll
        for (int i = 0; i < LA_VM_L / 2; i++) {
            const float2 y = *reinterpret_cast<const float2 *>(x + (u0 + i) * stride);
            part0 += y.x;
            part1 += y.y;
        }
    c.oth0 = HAS ? __shfl_xor_sync(0xffffffffu, part0, 1) : 0.0f;
    c.oth1 = HAS ? __shfl_xor_sync(0xffffffffu, part1, 1) : 0.0f;
    c.tot0 = part0 + c.oth0;
    c.tot1 = part1 + c.oth1;
    c.safe0 = -c.tot0 <= safe_limit;
    c.safe1 = -c.tot1 <= safe_limit;
    c.eM0 = c.safe0 ? (HAS ? vm_exp(-0.5f * c.tot0) : 1.0f) : 0.0f;
    c.eM1 = c.safe1 ? (HAS ? vm_exp(-0.5f * c.tot1) : 1.0f) : 0.0f;
    return c;
}

/* A warp's mask word of 32 channels (bit j: channel j is left out of the
 * factored product), from the pairs on its even lanes. */
__device__ __forceinline__ uint32_t vm_pair_mask(bool safe0, bool safe1) {
    const unsigned bad0 = __ballot_sync(0xffffffffu, !safe0), bad1 = __ballot_sync(0xffffffffu, !safe1);
    return (bad0 & 0x55555555u) | (bad1 & 0x55555555u) << 1;
}

/* An output product's operand element: hi[i], and with SP its lo part. */
template <typename T, bool SP> __device__ __forceinline__ void vm_put(T *hi, T *lo, int i, float x) {
    const T h = T(x);
    hi[i] = h;
    if (SP) lo[i] = T(x - float(h));
}

/* Two adjacent elements of an operand row, as one 32-bit access. */
template <typename T> struct __align__(4) vm_pair {
    T x, y;
};

/* Elements i and i + 1 (i even) of an operand: hi[i..], and with SP the lo parts. */
template <typename T, bool SP> __device__ __forceinline__ void vm_put2(T *hi, T *lo, int i, float x0, float x1) {
    uint32_t h, l;
    pack_op2<T, SP>(x0, x1, h, l);
    *reinterpret_cast<uint32_t *>(hi + i) = h;
    if (SP) *reinterpret_cast<uint32_t *>(lo + i) = l;
}

/* A warp's state operand for the inter product: its accumulators of n8
 * tiles 2 kb and 2 kb + 1 are, as pairs, the A fragment of k16 step kb (the
 * accumulator and A layouts agree row for row), with SP their lo parts. */
template <typename T, bool SP>
__device__ __forceinline__ void vm_state_operand(const float (&c0)[4], const float (&c1)[4], uint32_t a[4],
                                                 uint32_t al[4]) {
    pack_op2<T, SP>(c0[0], c0[1], a[0], al[0]);
    pack_op2<T, SP>(c0[2], c0[3], a[1], al[1]);
    pack_op2<T, SP>(c1[0], c1[1], a[2], al[2]);
    pack_op2<T, SP>(c1[2], c1[3], a[3], al[3]);
}

/* d += a b, with a's lo part (SA) and b's (SB) where they have one: the
 * small terms first, the product of the two lo parts left out. */
template <typename T, bool SA, bool SB>
__device__ __forceinline__ void vm_mma(float d[4], const uint32_t *a, const uint32_t *al, const uint32_t *b,
                                       const uint32_t *bl) {
    if (SA) mma_16816<T>(d, al, b);
    if (SB) mma_16816<T>(d, a, bl);
    mma_16816<T>(d, a, b);
}

/* The phases of a chunk below take each lane's ldmatrix row offsets
 * (elements) from its lane: A tiles from [m][k] rows (a_row, a_col; not
 * transposed); A^T stored [k][m] and B^T stored [n][k] (at_row, at_col and
 * bt_row, bt_col: the same lanes' rows); B stored [k][n] (transposed). */

/* One slot of a chunk's operands (the stages' inputs turned into the
 * products' operands) in shared memory: vm_layout's regions from QH to MR.
 * The lo planes (SP) and the column-decay planes (CD) alias others where
 * the kernel has none: nothing writes or reads them then. */
template <typename T> struct vm_ops {
    T *qh, *qhl, *qd, *qdl, *kh, *kl, *kd, *kdl, *vh, *vl, *vd, *vdl, *Pb, *Pbl;
    float *Pf, *Ys, *eN, *eMc, *TR, *UC;
    uint32_t *MR;
};
template <typename T, int DM, int ET, bool CD, bool SP> __device__ __forceinline__ vm_ops<T> vm_ops_at(char *rest) {
    typedef vm_layout<DM, ET, CD, SP> Y;
    vm_ops<T> o;
    o.qh = reinterpret_cast<T *>(rest + Y::QH);
    o.qd = reinterpret_cast<T *>(rest + Y::QD);
    o.kh = reinterpret_cast<T *>(rest + Y::KH);
    o.kl = reinterpret_cast<T *>(rest + Y::KL);
    o.kd = reinterpret_cast<T *>(rest + Y::KD);
    o.Pb = reinterpret_cast<T *>(rest + Y::PB);
    o.vh = reinterpret_cast<T *>(rest + Y::VH);
    o.vl = reinterpret_cast<T *>(rest + Y::VL);
    o.vd = reinterpret_cast<T *>(rest + Y::VD);
    o.qhl = reinterpret_cast<T *>(rest + (SP ? Y::QHL : Y::QH));
    o.qdl = reinterpret_cast<T *>(rest + (SP ? Y::QDL : Y::QD));
    o.kdl = reinterpret_cast<T *>(rest + (SP ? Y::KDL : Y::KD));
    o.vdl = reinterpret_cast<T *>(rest + (SP ? Y::VDL : Y::VD));
    o.Pbl = reinterpret_cast<T *>(rest + (SP ? Y::PBL : Y::PB));
    o.Pf = reinterpret_cast<float *>(rest + Y::PF);
    o.Ys = reinterpret_cast<float *>(rest + Y::Y);
    o.eN = reinterpret_cast<float *>(rest + Y::EN);
    o.eMc = reinterpret_cast<float *>(rest + Y::EMC);
    o.TR = reinterpret_cast<float *>(rest + Y::TR);
    o.UC = reinterpret_cast<float *>(rest + Y::UC);
    o.MR = reinterpret_cast<uint32_t *>(rest + Y::MR);
    return o;
}

/* A chunk's inputs as read, in one stage: q, k (rows DM), v (pitch VP), the
 * row decays a and the column decays b (f32). */
template <typename T> struct vm_raw {
    const T *q, *k, *v;
    const float *a, *b;
};
template <typename T, int DM, int ET, bool CD, bool RA = true>
__device__ __forceinline__ vm_raw<T> vm_raw_at(const char *raw) {
    typedef vm_layout<DM, ET, CD, false, RA> Y;
    vm_raw<T> r;
    r.q = reinterpret_cast<const T *>(raw + Y::R_Q);
    r.k = reinterpret_cast<const T *>(raw + Y::R_K);
    r.v = reinterpret_cast<const T *>(raw + Y::R_V);
    r.a = reinterpret_cast<const float *>(raw + Y::R_A);
    r.b = reinterpret_cast<const float *>(raw + Y::R_B);
    return r;
}

/* The operand walks of a chunk (prep), on NTH threads of which this is
 * thread tid: a row's prefix (the queries' factors, the row's chunk decay
 * and mask bit) or suffix (the keys'), a column's prefix (the outputs'
 * column factors) or suffix (the values'), each on lane pairs (below).
 * row_tot and col_tot gather the walk's chunk totals of thread tid's row
 * and column prefix tasks. */
template <typename T, int DM, int ET, bool RD, bool CD, bool SP, int NTH>
__device__ __forceinline__ void vm_prep(const vm_ops<T> &o, uint32_t *MC, const vm_raw<T> &in, int tid, int lane,
                                        int64_t ci, bool out, const la_vec_params_t &p, float &row_tot, float &col_tot) {
    constexpr int L = LA_VM_L, HL = L / 2, QP = DM + 8, VP = ET + 8, NTASK = 2 * DM + (CD ? 2 * ET : 0);
    constexpr float SAFE = vm_safe<T>::value;
    T *const qh = o.qh, *const qhl = o.qhl, *const qd = o.qd, *const qdl = o.qdl, *const kh = o.kh, *const kl = o.kl;
    T *const kd = o.kd, *const kdl = o.kdl, *const vh = o.vh, *const vl = o.vl, *const vd = o.vd, *const vdl = o.vdl;
    float *const TR = o.TR, *const UC = o.UC, *const eMc = o.eMc, *const eN = o.eN;
    uint32_t *const MR = o.MR;
    const T *const rq = in.q, *const rk = in.k, *const rv = in.v;
    const float *const ra = in.a, *const rbt = in.b;
#pragma unroll
    for (int task = tid; task < NTASK; task += NTH) {
        if (task < 2 * DM) {
            /* Rows in pairs (d, d + 1), each pair's chunk in two halves of HL steps, one a lane:
             * the partner lane (lane ^ 1) has the other half.  Operands go out as packed pairs. */
            const bool pre = task < DM;
            const int idx = pre ? task : task - DM, d = idx & ~1, hf = idx & 1, u0 = HL * hf;
            const vm_pair_chan c = vm_pair_channel<RD>(ra + d, DM, u0, SAFE);
            if (pre) {
                row_tot += hf ? c.tot1 : c.tot0; /* thread idx's own row, d + hf */
                if (hf == 0)
                    *reinterpret_cast<float2 *>(TR + d) =
                        make_float2(RD ? vm_exp(c.tot0) : 1.0f, RD ? vm_exp(c.tot1) : 1.0f);
                if (out) { /* the operands of the outputs' products: none in a state-only walk */
                    float run0 = hf ? c.oth0 : 0.0f, run1 = hf ? c.oth1 : 0.0f; /* prefix sums: the queries' factors */
#pragma unroll
                    for (int i = 0; i < HL; i++) {
                        const int u = u0 + i;
                        if (RD) {
                            const float2 x = *reinterpret_cast<const float2 *>(ra + u * DM + d);
                            run0 += x.x;
                            run1 += x.y;
                        }
                        const vm_pair<T> q2 = *reinterpret_cast<const vm_pair<T> *>(rq + u * DM + d);
                        const float qe0 = float(q2.x) * p.scale * (RD ? vm_exp(run0) : 1.0f);
                        const float qe1 = float(q2.y) * p.scale * (RD ? vm_exp(run1) : 1.0f);
                        vm_put2<T, SP>(qh, qhl, u * QP + d, qe0, qe1);
                        vm_put2<T, SP>(qd, qdl, u * QP + d, qe0 * c.eM0, qe1 * c.eM1);
                    }
                }
                const uint32_t bad = vm_pair_mask(c.safe0, c.safe1);
                if (lane == 0) MR[d / 32] = bad;
            } else {
                float run0 = hf ? 0.0f : c.oth0, run1 = hf ? 0.0f : c.oth1; /* suffix sums: the keys' factors */
#pragma unroll
                for (int i = HL - 1; i >= 0; i--) {
                    const int u = u0 + i;
                    const vm_pair<T> k2 = *reinterpret_cast<const vm_pair<T> *>(rk + u * DM + d);
                    const float ke0 = float(k2.x) * p.kscale * (RD ? vm_exp(run0) : 1.0f);
                    const float ke1 = float(k2.y) * p.kscale * (RD ? vm_exp(run1) : 1.0f);
                    if (RD) {
                        const float2 x = *reinterpret_cast<const float2 *>(ra + u * DM + d);
                        run0 += x.x;
                        run1 += x.y;
                    }
                    vm_put2<T, true>(kh, kl, u * QP + d, ke0, ke1);
                    if (out) vm_put2<T, SP>(kd, kdl, u * QP + d, ke0 * c.eM0, ke1 * c.eM1);
                }
            }
        } else if (CD) { /* columns as the rows above: pairs, half chunks */
            const bool pre = task < 2 * DM + ET;
            const int idx = pre ? task - 2 * DM : task - 2 * DM - ET, e = idx & ~1, hf = idx & 1, u0 = HL * hf;
            const vm_pair_chan c = vm_pair_channel<true>(rbt + e, ET, u0, SAFE); /* eM 0: E adds the column exactly */
            if (pre) {
                col_tot += hf ? c.tot1 : c.tot0; /* thread idx's own column, e + hf */
                if (hf == 0) {
                    *reinterpret_cast<float2 *>(UC + e) = make_float2(vm_exp(c.tot0), vm_exp(c.tot1));
                    *reinterpret_cast<float2 *>(eMc + e) = make_float2(c.eM0, c.eM1);
                }
                if (out) {
                    float run0 = hf ? c.oth0 : 0.0f, run1 = hf ? c.oth1 : 0.0f; /* prefix sums: the output's column factors */
#pragma unroll
                    for (int i = 0; i < HL; i++) {
                        const int u = u0 + i;
                        const float2 x = *reinterpret_cast<const float2 *>(rbt + u * ET + e);
                        run0 += x.x;
                        run1 += x.y;
                        *reinterpret_cast<float2 *>(eN + u * ET + e) = make_float2(vm_exp(run0), vm_exp(run1));
                    }
                }
                const uint32_t bad = vm_pair_mask(c.safe0, c.safe1);
                if (lane == 0) MC[(ET / 32) * (ci & 1) + e / 32] = bad; /* two sets: E reads this one after the next prep */
            } else {
                float run0 = hf ? 0.0f : c.oth0, run1 = hf ? 0.0f : c.oth1; /* suffix sums: the values' factors */
#pragma unroll
                for (int i = HL - 1; i >= 0; i--) {
                    const int u = u0 + i;
                    const vm_pair<T> v2 = *reinterpret_cast<const vm_pair<T> *>(rv + u * VP + e);
                    const float ve0 = float(v2.x) * vm_exp(run0), ve1 = float(v2.y) * vm_exp(run1);
                    const float2 x = *reinterpret_cast<const float2 *>(rbt + u * ET + e);
                    run0 += x.x;
                    run1 += x.y;
                    vm_put2<T, true>(vh, vl, u * VP + e, ve0, ve1);
                    if (out) vm_put2<T, SP>(vd, vdl, u * VP + e, ve0 * c.eM0, ve1 * c.eM1);
                }
            }
        }
    }
}

/* The chunk's scores, n8 tile w (0 or 1) of P[u][s] = (q_u e^{lambda_u - M}) .
 * (k_s e^{M - lambda_s}), masked (s <= u), with the rows left out of the
 * factored product added in fp32: to Pf, and as an operand to Pb (SP: Pbl). */
template <typename T, int DM, bool SP>
__device__ __forceinline__ void vm_scores(const vm_ops<T> &o, const vm_raw<T> &in, int w, int lane,
                                          const la_vec_params_t &p) {
    constexpr int L = LA_VM_L, QP = DM + 8, PP = L + 8;
    const int g = lane / 4, t4 = lane % 4, mi = lane / 8, r8 = lane % 8;
    const int a_row = r8 + 8 * (mi & 1), a_col = 8 * (mi >> 1);
    const T *const qd = o.qd, *const qdl = o.qdl, *const kd = o.kd, *const kdl = o.kdl;
    const uint32_t *const MR = o.MR;
    T *const Pb = o.Pb, *const Pbl = o.Pbl;
    float *const Pf = o.Pf;
    const T *const rq = in.q, *const rk = in.k;
    const float *const ra = in.a;
    uint32_t a[4], b[4], al[4], bl[4];
    float pc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int kk = 0; kk < DM / 32; kk++) {
        ldmatrix_x4(b, kd + (8 * w + r8) * QP + 32 * kk + 8 * mi);
        if (SP) ldmatrix_x4(bl, kdl + (8 * w + r8) * QP + 32 * kk + 8 * mi);
#pragma unroll
        for (int k2 = 0; k2 < 2; k2++) {
            ldmatrix_x4(a, qd + a_row * QP + 32 * kk + 16 * k2 + a_col);
            if (SP) ldmatrix_x4(al, qdl + a_row * QP + 32 * kk + 16 * k2 + a_col);
            vm_mma<T, SP, SP>(pc, a, al, b + 2 * k2, bl + 2 * k2);
        }
    }
#pragma unroll
    for (int r = 0; r < 4; r++) {
        const int u = g + 8 * (r >> 1), sc = 8 * w + 2 * t4 + (r & 1);
        float x = 0.0f;
        if (sc <= u) {
            x = pc[r];
            for (int word = 0; word < DM / 32; word++)
                for (uint32_t m = MR[word]; m; m &= m - 1) {
                    const int d = 32 * word + __ffs(m) - 1;
                    float sum = 0.0f;
                    for (int rr = sc + 1; rr <= u; rr++) sum += ra[rr * DM + d];
                    x += float(rq[u * DM + d]) * p.scale * (float(rk[sc * DM + d]) * p.kscale) * expf(sum);
                }
        }
        Pf[u * L + sc] = x;
        vm_put<T, SP>(Pb, Pbl, u * PP + sc, x);
    }
}

/* The inter product y^T (this warp's 16 value columns x 16 steps) from the
 * state S^T in registers and the queries' operand qh (SP: and qhl). */
template <typename T, int DM, bool SP>
__device__ __forceinline__ void vm_inter(const float (&S)[DM / 8][4], const vm_ops<T> &o, int lane, float (&yi)[2][4]) {
    constexpr int QP = DM + 8;
    const int mi = lane / 8, r8 = lane % 8, at_row = r8 + 8 * (mi >> 1), at_col = 8 * (mi & 1);
    const T *const qh = o.qh, *const qhl = o.qhl;
    uint32_t a[4], b[4], al[4], bl[4];
#pragma unroll
    for (int kb = 0; kb < DM / 16; kb++) {
        vm_state_operand<T, SP>(S[2 * kb], S[2 * kb + 1], a, al);
        ldmatrix_x4(b, qh + at_row * QP + 16 * kb + at_col);
        if (SP) ldmatrix_x4(bl, qhl + at_row * QP + 16 * kb + at_col);
        vm_mma<T, SP, SP>(yi[0], a, al, b, bl);
        vm_mma<T, SP, SP>(yi[1], a, al, b + 2, bl + 2);
    }
}

/* The intra product of warp w's 16 value columns (the scores Pb times the
 * values' diagonal operand vdp), added to yi, to Ys (rows u, columns e). */
template <typename T, int ET, bool CD, bool SP>
__device__ __forceinline__ void vm_intra(const vm_ops<T> &o, const T *vdp, int w, int lane, const float (&yi)[2][4]) {
    constexpr int L = LA_VM_L, VP = ET + 8, PP = L + 8, YP = ET + 4;
    const int g = lane / 4, t4 = lane % 4, ew = 16 * w + g;
    const int mi = lane / 8, r8 = lane % 8, at_row = r8 + 8 * (mi >> 1), at_col = 8 * (mi & 1);
    const T *const vdl = o.vdl, *const Pb = o.Pb, *const Pbl = o.Pbl;
    const float *const eMc = o.eMc, *const eN = o.eN;
    float *const Ys = o.Ys;
    uint32_t a[4], b[4], al[4], bl[4];
    float yd[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
    ldmatrix_x4_trans(a, vdp + at_row * VP + 16 * w + at_col);
    if (SP && CD) ldmatrix_x4_trans(al, vdl + at_row * VP + 16 * w + at_col);
    ldmatrix_x4(b, Pb + at_row * PP + at_col);
    if (SP) ldmatrix_x4(bl, Pbl + at_row * PP + at_col);
    vm_mma<T, SP && CD, SP>(yd[0], a, al, b, bl);
    vm_mma<T, SP && CD, SP>(yd[1], a, al, b + 2, bl + 2);
#pragma unroll
    for (int nt = 0; nt < 2; nt++)
#pragma unroll
        for (int r = 0; r < 4; r++) {
            const int e = ew + 8 * (r >> 1), u = 8 * nt + 2 * t4 + (r & 1);
            float y = yi[nt][r] + (CD ? yd[nt][r] * eMc[e] : yd[nt][r]);
            if (CD) y *= eN[u * ET + e];
            Ys[u * YP + e] = y;
        }
}

/* The state update in registers: S^T <- diag(UC) S^T diag(TR) + vbar^T kbar,
 * for warp w's 16 value columns (vhp: the values' operand, hi part). */
template <typename T, int DM, int ET, bool RD, bool CD>
__device__ __forceinline__ void vm_update(float (&S)[DM / 8][4], const vm_ops<T> &o, const T *vhp, int w, int lane) {
    constexpr int NT = DM / 8, QP = DM + 8, VP = ET + 8;
    const int g = lane / 4, t4 = lane % 4, ew = 16 * w + g;
    const int mi = lane / 8, r8 = lane % 8, at_row = r8 + 8 * (mi >> 1), at_col = 8 * (mi & 1);
    const int bt_row = r8 + 8 * (mi & 1), bt_col = 8 * (mi >> 1);
    const T *const vl = o.vl, *const kh = o.kh, *const kl = o.kl;
    const float *const UC = o.UC, *const TR = o.TR;
    const float uc0 = CD ? UC[ew] : 1.0f, uc1 = CD ? UC[ew + 8] : 1.0f;
#pragma unroll
    for (int j = 0; j < NT; j++) {
        const float2 tr = RD ? *reinterpret_cast<const float2 *>(TR + 8 * j + 2 * t4) : make_float2(1.0f, 1.0f);
        S[j][0] *= tr.x * uc0;
        S[j][1] *= tr.y * uc0;
        S[j][2] *= tr.x * uc1;
        S[j][3] *= tr.y * uc1;
    }
    uint32_t ah[4], al[4];
    ldmatrix_x4_trans(ah, vhp + at_row * VP + 16 * w + at_col);
    if (CD) ldmatrix_x4_trans(al, vl + at_row * VP + 16 * w + at_col);
#pragma unroll
    for (int j = 0; j < NT; j += 2) {
        uint32_t bh[4], bl[4];
        ldmatrix_x4_trans(bh, kh + bt_row * QP + 8 * j + bt_col);
        ldmatrix_x4_trans(bl, kl + bt_row * QP + 8 * j + bt_col);
        vm_mma<T, CD, true>(S[j], ah, al, bh, bl);
        vm_mma<T, CD, true>(S[j + 1], ah, al, bh + 2, bl + 2);
    }
}

/* Block s's walk (sequence or split segment), and whether it takes the
 * reverse walk's final step back by its first token's decays (back: a
 * reverse walk that begins its sequence). */
__device__ __forceinline__ vm_seq vm_seq_of(const la_vec_params_t &p, int s, bool &back) {
    vm_seq sq;
    sq.reverse = p.reverse;
    bool first = true; /* the walk begins its sequence (a split's first segment) */
    if (p.cu) {
        sq.b = 0;
        sq.t0 = p.cu[s];
        sq.t1 = p.cu[s + 1];
    } else if (p.nseg > 1) {
        sq.b = s / p.nseg;
        sq.t0 = (s % p.nseg) * p.seg_len;
        sq.t1 = sq.t0 + p.seg_len < p.seqlen ? sq.t0 + p.seg_len : p.seqlen;
        first = s % p.nseg == 0;
    } else {
        sq.b = s;
        sq.t0 = 0;
        sq.t1 = p.seqlen;
    }
    sq.len = sq.t1 - sq.t0;
    back = p.reverse && first && sq.len > 0;
    return sq;
}

/* Warp w's S^T (value columns 16 w .. 16 w + 15, every row) from s0 (zeros
 * without): element (j, r) of a lane is row d = 8 j + 2 t4 + (r & 1) of the
 * state, column e = 16 w + g + 8 (r >> 1). */
template <int DM>
__device__ __forceinline__ void vm_state_load(float (&S)[DM / 8][4], const la_vec_params_t &p, int s, int h, int e0,
                                              int EV, int w, int lane) {
    const int g = lane / 4, t4 = lane % 4, ew = 16 * w + g;
#pragma unroll
    for (int j = 0; j < DM / 8; j++)
#pragma unroll
        for (int r = 0; r < 4; r++) {
            const int d = 8 * j + 2 * t4 + (r & 1), e = ew + 8 * (r >> 1);
            S[j][r] = p.s0.ptr && d < p.D && e < EV
                          ? p.s0.ptr[s * p.s0.ss + h * p.s0.sh + d * p.s0.sd + (e0 + e) * p.s0.se]
                          : 0.0f;
        }
}

/* The walk's final state to sN (where wanted), with back's step. */
template <int DM, bool CD>
__device__ __forceinline__ void vm_state_store(const float (&S)[DM / 8][4], const la_vec_params_t &p, const vm_seq &sq,
                                               int s, int h, int e0, int EV, bool back, int w, int lane) {
    const int g = lane / 4, t4 = lane % 4, ew = 16 * w + g;
    if (p.sN.ptr)
#pragma unroll
        for (int j = 0; j < DM / 8; j++)
#pragma unroll
            for (int r = 0; r < 4; r++) {
                const int d = 8 * j + 2 * t4 + (r & 1), e = ew + 8 * (r >> 1);
                if (d >= p.D || e >= EV) continue;
                float x = S[j][r];
                if (back) { /* one more step back: the first token's own decay */
                    if (p.gk) x *= expf(p.gk[sq.b * p.gk_sb + h * p.gk_sh + sq.t0 * p.gk_st + d * p.gk_sc]);
                    if (CD) x *= expf(p.gv[sq.b * p.gv_sb + h * p.gv_sh + sq.t0 * p.gv_st + (e0 + e) * p.gv_sc]);
                }
                p.sN.ptr[s * p.sN.ss + h * p.sN.sh + d * p.sN.sd + (e0 + e) * p.sN.se] = x;
            }
}

/* Each segment's summed decays (seg_tot_k, seg_tot_v), from the threads
 * that walked a row's (a column's) prefix (vm_prep's tasks on NTH threads,
 * this one tid), with the reverse walk's step back where it takes one. */
template <int DM, int ET, bool CD, int NTH>
__device__ __forceinline__ void vm_seg_totals(const la_vec_params_t &p, const vm_seq &sq, int s, int h, int e0, int EV,
                                              bool back, int tid, float row_tot, float col_tot) {
    constexpr int NTASK = 2 * DM + (CD ? 2 * ET : 0);
    if (p.seg_tot_k && tid < DM && tid < p.D && blockIdx.z == 0) {
        if (back && p.gk) row_tot += p.gk[sq.b * p.gk_sb + h * p.gk_sh + sq.t0 * p.gk_st + tid * p.gk_sc];
        p.seg_tot_k[((int64_t)s * p.H + h) * p.D + tid] = row_tot;
    }
    if (CD && p.seg_tot_v) {
#pragma unroll
        for (int task = tid; task < NTASK; task += NTH)
            if (task >= 2 * DM && task < 2 * DM + EV) {
                const int e = task - 2 * DM;
                if (back) col_tot += p.gv[sq.b * p.gv_sb + h * p.gv_sh + sq.t0 * p.gv_st + (e0 + e) * p.gv_sc];
                p.seg_tot_v[((int64_t)s * p.H + h) * p.E + e0 + e] = col_tot;
            }
    }
}

/* A barrier among the TH threads that run a phase: the whole block (BAR 0)
 * or named barrier BAR. */
template <int BAR, int TH> __device__ __forceinline__ void vm_sync() {
    if (BAR == 0) __syncthreads();
    else group_barrier(BAR, TH);
}

/* A chunk's outputs (E): Ys (its intra product's) to o, with the columns left
 * out of the factored product added, and the decay-gradient terms: term_mode
 * 1 writes y times mul, term_mode 2 each column's running sum in the walk's
 * order (sums; TI holds the chunk's terms, read back by the column's thread
 * after barrier BAR).  By TH threads, this one tid; thread tid writes column
 * tid % ET in every row it takes.  orows: o may take 16-byte rows (no terms). */
template <typename T, int ET, bool CD, bool SP, int TH, int BAR>
__device__ __forceinline__ void vm_outputs(const vm_ops<T> &o, const vm_raw<T> &r, const uint32_t *mc,
                                           const la_vec_params_t &p, const vm_seq &sq, int h, int e0, int EV,
                                           int64_t c0, int tid, bool orows, int term_mode, double *sums, double *TI) {
    constexpr int L = LA_VM_L, VP = ET + 8, YP = ET + 4;
    const int n = sq.len - c0 < L ? (int)(sq.len - c0) : L;
    /* o's address is worked out here: a pointer held for the walk spilled.  Not with column decays:
     * beside their per-column path, the row path made those instances spill. */
    if (!CD && orows) {
        vm_store_rows<T, ET, TH, YP>(o.Ys, vm_out_at<T>(p, sq, h, e0), p.o.st, sq, c0, n, EV, tid); /* o.sc = 1 */
        return;
    }
    const bool cbad = vm_any_unfactored<ET, CD>(mc);
    const int e = tid % ET; /* this thread's column, the same in every row it writes */
    const int64_t eo = e0 + (e < EV ? e : 0);
    T *const ob = p.o.ptr ? vm_out_at<T>(p, sq, h, eo) : nullptr;
    float *const tb = SP && p.term ? p.term + sq.b * p.term_sb + h * p.term_sh + eo * p.term_sc : nullptr;
    const T *const mb =
        SP && p.mul.ptr ? static_cast<const T *>(p.mul.ptr) + sq.b * p.mul.sb + h * p.mul.sh + eo * p.mul.sc : nullptr;
    constexpr int RPT = L * ET / TH; /* rows per thread */
    /* The terms' inputs, all read before the stores below, which could alias them (and would make
     * each read wait for the last store's round trip). */
    float mv[RPT], xv[RPT];
#pragma unroll
    for (int j = 0; j < RPT; j++) {
        const int u = tid / ET + j * (TH / ET);
        const bool ok = term_mode && u < n && e < EV;
        const int64_t t = sq.tok(c0 + u);
        mv[j] = ok ? float(mb[t * p.mul.st]) : 0.0f;
        xv[j] = ok && term_mode == 2 && p.term_in ? tb[t * p.term_st] : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < RPT; j++) {
        const int u = tid / ET + j * (TH / ET);
        if (u >= n || e >= EV) continue;
        float y = o.Ys[u * YP + e];
        if (cbad && (mc[e / 32] >> (e % 32) & 1)) y += vm_col_exact<L, VP, ET>(o.Pf, r.v, r.b, u, e);
        const int64_t t = sq.tok(c0 + u);
        if (ob) ob[t * p.o.st] = T(y);
        if (term_mode == 1) tb[t * p.term_st] = y * mv[j];
        if (SP && term_mode == 2) TI[u * ET + e] = (double)xv[j] - (double)mv[j] * (double)y;
    }
    if (SP && term_mode == 2) { /* each column's running sum, in the walk's order */
        vm_sync<BAR, TH>();
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

template <typename T, int DM, int ET, bool RD, bool CD, bool SP>
__global__ void __launch_bounds__(LA_VM_THREADS(ET), SP ? 1 : 512 / LA_VM_THREADS(ET))
    la_vec_mma_kernel(const la_vec_params_t p) {
    typedef vm_layout<DM, ET, CD, SP> Y;
    constexpr int L = LA_VM_L, TH = LA_VM_THREADS(ET);
    /* Warp w holds the state's transpose S^T for value columns 16 w .. 16 w + 15 (its rows) and every
     * row d (its NT n8 tiles of columns): the inter product takes it from registers as it is. */
    constexpr int NT = DM / 8;
    extern __shared__ __align__(16) char sm[];
    const int tid = threadIdx.x, w = tid / 32, lane = tid % 32;
    const int s = blockIdx.x, h = blockIdx.y, e0 = blockIdx.z * ET;
    const int EV = p.E - e0 < ET ? p.E - e0 : ET;
    const bool out = p.o.ptr != nullptr || p.term != nullptr;
    const int term_mode = SP ? p.term_mode : 0; /* the launcher splits every run with a term */
    bool back;
    const vm_seq sq = vm_seq_of(p, s, back);

    const int ns = p.nstage;
    char *rest = sm + ns * Y::RAW; /* past the input stages */
    const vm_ops<T> o = vm_ops_at<T, DM, ET, CD, SP>(rest);
    uint32_t *const MC = reinterpret_cast<uint32_t *>(rest + Y::MC);
    double *sums = reinterpret_cast<double *>(rest + Y::SUM);
    double *TI = reinterpret_cast<double *>(rest + (SP ? Y::TI : Y::SUM)); /* SP only (term_mode 2 runs split) */

    float S[NT][4];
    vm_state_load<DM>(S, p, s, h, e0, EV, w, lane);
    if (term_mode == 2) /* the final state's share of each column's sum */
        for (int c = tid; c < ET; c += TH) sums[c] = c < EV ? la_vec_fin_share(p.fin_a, p.fin_b, p.D, s, h, e0 + c) : 0.0;

    /* The outputs in 16-byte rows where o allows and no term is kept (E). */
    const bool orows = !CD && p.o.ptr && term_mode == 0 && vm_pieces_ok<T>(p.o, p.E);
    const bool pieces = vm_inputs_in_pieces<T>(p);
    for (int i = 0; i < ns - 1; i++) { /* the first chunks, a copy group each */
        if (i * L < sq.len) vm_load_chunk<T, DM, ET, RD, CD>(sm + i * Y::RAW, p, sq, h, e0, EV, i * L, out, pieces, 0);
        cp_async_commit();
    }
    vm_wait_stage(ns); /* chunk 0 */
    __syncthreads();

    /* The walk's summed log decays of this thread's row prefix task and column prefix task (at most one each). */
    float row_tot = 0.0f, col_tot = 0.0f;

    for (int64_t c0 = 0, ci = 0, stage = 0; c0 < sq.len; c0 += L, ci++, stage = stage + 1 < ns ? stage + 1 : 0) {
        const char *raw = sm + stage * Y::RAW;
        const vm_raw<T> r = vm_raw_at<T, DM, ET, CD>(raw);
        /* The values' operands: as read, without column decays. */
        const T *vhp = CD ? o.vh : r.v, *vdp = CD ? o.vd : r.v;

        /* ---- prep: the operand walks ---- */
        vm_prep<T, DM, ET, RD, CD, SP, TH>(o, MC, r, tid, lane, ci, out, p, row_tot, col_tot);
        __syncthreads(); /* B1 */
        /* Chunk ci + ns - 1's inputs to the stage the last chunk read, before B1 (its E phase last). */
        {
            const int64_t cn = c0 + (int64_t)(ns - 1) * L;
            const int sn = stage == 0 ? ns - 1 : (int)stage - 1;
            if (cn < sq.len) vm_load_chunk<T, DM, ET, RD, CD>(sm + sn * Y::RAW, p, sq, h, e0, EV, cn, out, pieces, 0);
            cp_async_commit(); /* a group a chunk, empty or not: the waits count them */
        }

        /* ---- the scores (warps 0, 1: an n8 tile each), masked, with the rows left out of
         * their factored product; the inter product from the state in registers ---- */
        float yi[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
        if (out) {
            if (w < 2) vm_scores<T, DM, SP>(o, r, w, lane, p); /* P[u][8 w ..] */
            vm_inter<T, DM, SP>(S, o, lane, yi);
            __syncthreads(); /* B2: the scores */

            /* ---- the intra product, y (transposed: rows e, columns u) to shared memory ---- */
            vm_intra<T, ET, CD, SP>(o, vdp, w, lane, yi);
        }

        /* ---- the state update in registers ---- */
        vm_update<T, DM, ET, RD, CD>(S, o, vhp, w, lane);
        vm_wait_stage(ns); /* the next chunk's stage, visible after B3 */
        __syncthreads(); /* B3 */

        /* ---- E: the columns left out of the factored intra product, the outputs ---- */
        if (out)
            vm_outputs<T, ET, CD, SP, TH, 0>(o, r, MC + (ET / 32) * (ci & 1), p, sq, h, e0, EV, c0, tid, orows,
                                              term_mode, sums, TI);
    }
    vm_seg_totals<DM, ET, CD, TH>(p, sq, s, h, e0, EV, back, tid, row_tot, col_tot);
    /* A split walk's running sums, for the offsets of the segments walked after it. */
    if (term_mode == 2 && p.seg_sum && tid < EV) p.seg_sum[((int64_t)s * p.H + h) * p.E + e0 + tid] = sums[tid];
    vm_state_store<DM, CD>(S, p, sq, s, h, e0, EV, back, w, lane);
}

#endif
