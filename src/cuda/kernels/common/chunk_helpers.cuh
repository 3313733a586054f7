/*
 * chunk_helpers.cuh - what every chunk kernel (forward, state, backward, on
 * mma.sync or wgmma) shares above chunk_common.cuh's arithmetic: where a
 * block's segment lies (locate_segment), where its starting state comes
 * from, the decay tables of a chunk, and the tile loads from strided token
 * tensors into shared memory.
 */
#ifndef LA_CUDA_CHUNK_HELPERS_CUH
#define LA_CUDA_CHUNK_HELPERS_CUH

#include "chunk_common.cuh"

/* The state pass leaves the last segment of each sequence out where nothing
 * reads its local state: no final state wanted (the fold's last step only
 * makes the final state).  SCALAR_TOKEN keeps it: the segment's total log
 * decay, which the backward's reverse fold reads, comes from its walk. */
__device__ __forceinline__ bool state_pass_skips_last(const la_fwd_params_t &p) {
    return p.sN.ptr == nullptr && p.decay != 2;
}

/* Which sequence, batch row, token range a block's segment covers. */
struct seg_loc {
    int s, sp, nseg;
    int64_t b, tb;     /* batch row, token offset of the sequence in the N dim */
    int64_t ts, te;    /* segment's token range within the sequence */
    int64_t len;       /* the sequence's length */
};

/* With device offsets the grid is sized by a bound on the segments: a block
 * past the last one finds L.sp >= L.nseg and returns at once. */
__device__ __forceinline__ seg_loc locate_segment(const la_seginfo_t &si, int g) {
    seg_loc L;
    int64_t len;
    if (si.cu) {
        int lo = 0, hi = si.num_seqs - 1; /* last s with seg_off[s] <= g */
        while (lo < hi) {
            int mid = (lo + hi + 1) >> 1;
            if (si.seg_off[mid] <= g) lo = mid; else hi = mid - 1;
        }
        L.s = lo;
        L.sp = g - si.seg_off[lo];
        L.nseg = si.seg_off[lo + 1] - si.seg_off[lo];
        L.b = 0;
        L.tb = si.cu[lo];
        len = si.cu[lo + 1] - si.cu[lo];
    } else {
        L.s = g / si.n_seg;
        L.sp = g % si.n_seg;
        L.nseg = si.n_seg;
        L.b = L.s;
        L.tb = 0;
        len = si.seqlen;
    }
    L.len = len;
    L.ts = (int64_t)L.sp * si.seg_len;
    L.te = L.ts + si.seg_len < len ? L.ts + si.seg_len : len;
    if (L.te < L.ts) L.te = L.ts;
    return L;
}

/* The state pass's block of a sequence's last segment when nothing reads its
 * local state (state_pass_skips_last): only the segment's total log decay,
 * summed as the walk would.  Both forward kernels. */
__device__ __forceinline__ void write_skipped_logdecay(const la_fwd_params_t &p, const seg_loc &L, int h, int64_t slot) {
    if (blockIdx.z == 0 && threadIdx.x == 0) {
        const float ldh = p.decay == 1 ? p.ld[h * p.ld_sh] : 0.0f;
        float sld = 0.0f;
        for (int64_t t0 = L.ts; t0 < L.te; t0 += LA_C) sld += ldh * (float)(L.te - t0 < LA_C ? L.te - t0 : LA_C);
        p.seg_logdecay[slot] = sld;
    }
}

/* Where an output pass block's state slice (columns e0..) starts:
 * the folded incoming state (segments), the initial state, or none (NULL);
 * its row and column strides into *sd, *se. */
__device__ __forceinline__ const float *state_source(const la_fwd_params_t &p, const seg_loc &L, int h, int64_t slot,
                                                     int DP, int e0, int64_t *sd, int64_t *se) {
    if (p.seg_state) { *sd = p.ept; *se = 1; return p.seg_state + slot * DP * p.ept + e0; }
    if (p.s0.ptr) { *sd = p.s0.sd; *se = p.s0.se; return p.s0.ptr + L.s * p.s0.ss + h * p.s0.sh + e0 * p.s0.se; }
    *sd = *se = 0;
    return nullptr;
}

/* Where a backward block's register state starts (both backward kernels):
 * role 0's S, role 1's dS.  Segments: the folded incoming state or the
 * gradient arriving at the segment's end (DP rows of ept floats per slot);
 * else the initial state (role 0) or the final state's gradient (role 1);
 * or none (NULL).  Row and column strides into *sd, *se. */
__device__ __forceinline__ const float *bwd_state_source(const la_bwd_params_t &bp, const seg_loc &L, int h,
                                                         int64_t slot, int role, int DP, int64_t *sd, int64_t *se) {
    const la_fwd_params_t &p = bp.f;
    *sd = *se = 0;
    if (p.seg_state) {
        *sd = p.ept;
        *se = 1;
        return (role == 0 ? p.seg_state : bp.seg_dstate) + slot * DP * p.ept;
    }
    if (role == 0 && p.s0.ptr) { *sd = p.s0.sd; *se = p.s0.se; return p.s0.ptr + L.s * p.s0.ss + h * p.s0.sh; }
    if (role == 1 && bp.dsN.ptr) { *sd = bp.dsN.sd; *se = bp.dsN.se; return bp.dsN.ptr + L.s * bp.dsN.ss + h * bp.dsN.sh; }
    return nullptr;
}

/* SCALAR_TOKEN: the raw log decays of the chunk at sequence token t0 (nrows
 * valid, 0 after) into gs[64], by threads 0..63. */
__device__ __forceinline__ void load_raw_decays(float *gs, const la_fwd_params_t &p, const seg_loc &L, int h, int64_t t0,
                                                int nrows) {
    if (p.decay == 2 && threadIdx.x < LA_C) {
        const int r = threadIdx.x;
        gs[r] = r < nrows ? p.ld[L.b * p.ld_sb + h * p.ld_sh + (L.tb + t0 + r) * p.ld_st] : 0.0f;
    }
}

/* A regular chunk's factor pairs (decay NONE or SCALAR_HEAD, all 64 rows):
 * Pf[j / 2] holds the factors of tokens j, j + 1, f(j) = mul e^{ld (d0 +
 * dstep j)}, split for fpair_apply; made by threads 0..31. */
template <typename T>
__device__ __forceinline__ void make_pair_table(uint2 *Pf, float ld_head, float mul, int d0, int dstep) {
    if (threadIdx.x < LA_C / 2) {
        const int j = 2 * threadIdx.x;
        la_fpair_t f;
        fpair_set<T>(f, mul * exp_nonpos(ld_head * (float)(d0 + dstep * j)),
                     mul * exp_nonpos(ld_head * (float)(d0 + dstep * (j + 1))));
        Pf[threadIdx.x] = fpair_pack<T>(f);
    }
}

/* The regular-chunk tables: Ts[64 + d] = e^{ld d} for d in [-64, 64] (0 for
 * d < 0) and Kf[j / 2], the key factor pair of tokens j, j + 1 of a full
 * chunk (e^{ld (63 - j)}), made by a block of `threads` threads once. */
template <typename T>
__device__ __forceinline__ void make_chunk_tables(float *Ts, uint2 *Kf, float ld_head, int threads) {
    for (int i = threadIdx.x; i <= 2 * LA_C; i += threads) Ts[i] = i < LA_C ? 0.0f : exp_nonpos(ld_head * (float)(i - LA_C));
    make_pair_table<T>(Kf, ld_head, 1.0f, LA_C - 1, -1);
}

/* Where one thread's part of a block's [64, XP] tiles of a token tensor comes
 * from (the vectorised path: channel stride 1, 16-byte aligned rows): of
 * THREADS loader threads (all LA_CUDA_THREADS unless a kernel says), thread
 * tid copies 16-byte piece tid % PIECES of rows tid / PIECES + k RSTEP.  Set
 * up once per block, so a chunk's loads cost a multiply-add and the copies. */
typedef struct la_tile_src {
    const char *src;  /* this thread's piece of its first row in the next chunk to load */
    int64_t tok_step; /* bytes per token */
    uint32_t soff;    /* its piece's byte offset in a shared tile */
    int bytes;        /* bytes of its piece inside the X valid columns (0..16) */
} la_tile_src_t;

template <typename T, int XP, typename TID>
__device__ __forceinline__ la_tile_src_t tile_src_of(const la_tok_t &x, int64_t b, int64_t h, int64_t tok0, int X,
                                                     TID tid) {
    constexpr int PIECES = XP / 8;
    const int pc = tid % PIECES, r0 = tid / PIECES;
    la_tile_src_t t;
    t.src = reinterpret_cast<const char *>(static_cast<const T *>(x.ptr) + b * x.sb + h * x.sh + (tok0 + r0) * x.st +
                                           pc * 8);
    t.tok_step = x.st * (int64_t)sizeof(T);
    t.soff = (uint32_t)((r0 * (XP + 8) + pc * 8) * sizeof(T));
    t.bytes = piece_bytes(X, pc);
    return t;
}
template <typename T, int XP>
__device__ __forceinline__ la_tile_src_t tile_src(const la_tok_t &x, int64_t b, int64_t h, int64_t tok0, int X) {
    return tile_src_of<T, XP>(x, b, h, tok0, X, threadIdx.x);
}

/* Issue the copies of the next chunk's tile into the shared tile at sdst
 * (bytes), rows >= nrows and columns past X zero-filled (a zero-byte copy
 * reads nothing; it names the tensor's base as its source), and step to the
 * chunk after it (issue = false: step only; dir = -1: the chunk before it,
 * for the backward's reverse walk; tid of THREADS: as tile_src_of).  FULL
 * adds a path for a full chunk of whole pieces (nearly every copy): no
 * bounds and no zero-fill, ~3 instructions a copy where the general form
 * takes ~15 (ncu, the rows kernel: ~190 per warp and chunk).  Only the rows
 * kernel takes it: the general forward at D = 128 with 64-column slices
 * spilled 60-80 bytes more with it, and its state pass ran no faster.
 * (tid's type is the caller's: the plain forms pass threadIdx.x as it is, so
 * their kernels' code stays as it was measured.) */
template <typename T, int XP, bool FULL, int THREADS, typename TID>
__device__ __forceinline__ void tile_issue_of(uint32_t sdst, la_tile_src_t &t, int nrows, const void *base, bool issue,
                                              int dir, TID tid) {
    constexpr int PIECES = XP / 8, RSTEP = THREADS / PIECES;
    static_assert(THREADS % PIECES == 0, "each thread keeps one column piece");
    const int r0 = tid / PIECES;
    if (FULL && issue && nrows == LA_C && t.bytes == 16) {
        const char *src = t.src;
#pragma unroll
        for (int k = 0; k < LA_C / RSTEP; k++, src += RSTEP * t.tok_step)
            cp_async_16_full_at(sdst + t.soff + k * RSTEP * (XP + 8) * (int)sizeof(T), src);
    } else if (issue) {
#pragma unroll
        for (int k = 0; k < LA_C / RSTEP; k++) {
            const bool ok = r0 + k * RSTEP < nrows && t.bytes > 0;
            cp_async_16_at(sdst + t.soff + k * RSTEP * (XP + 8) * (int)sizeof(T),
                           ok ? t.src + k * RSTEP * t.tok_step : base, ok ? t.bytes : 0);
        }
    }
    t.src += dir * LA_C * t.tok_step;
}
template <typename T, int XP, bool FULL = false>
__device__ __forceinline__ void tile_issue(uint32_t sdst, la_tile_src_t &t, int nrows, const void *base, bool issue,
                                           int dir = 1) {
    tile_issue_of<T, XP, FULL, LA_CUDA_THREADS>(sdst, t, nrows, base, issue, dir, threadIdx.x);
}

/* Load a [64, XP] tile of token tensor X starting at sequence token t0 into
 * shared memory (pitch XP + 8), zero-filling rows >= nrows and columns >= X.
 * vec: 16-byte cp.async pieces (bf16, f16).  f32 inputs are split into the
 * operand's NP planes (op_of, put_opn1; each plane `plane` elements after
 * the one before) element by element, through registers. */
template <typename T, int XP, int NP = op_planes<T>::value, typename OT>
__device__ __forceinline__ void load_tile(OT *dst, const la_tok_t &x, int64_t b, int64_t h, int64_t tok0,
                                          int nrows, int X, bool vec, int plane = 0) {
    constexpr bool SPLIT = op_of<T>::split;
    const T *base = static_cast<const T *>(x.ptr) + b * x.sb + h * x.sh + tok0 * x.st;
    constexpr int PIECES = XP / 8; /* 16-byte pieces per row */
    static_assert(LA_CUDA_THREADS % PIECES == 0, "each thread keeps one column piece");
    if (!SPLIT && vec) {
        /* Thread t copies piece t % PIECES of rows t / PIECES + k * RSTEP. */
        constexpr int RSTEP = LA_CUDA_THREADS / PIECES;
        const int pc = threadIdx.x % PIECES, r0 = threadIdx.x / PIECES;
        const int bytes = piece_bytes(X, pc);
        const T *src = base + r0 * x.st + pc * 8;
        const int64_t src_step = RSTEP * x.st;
        const uint32_t sdst = smem_addr(dst + r0 * (XP + 8) + pc * 8);
#pragma unroll
        for (int k = 0; k < LA_C / RSTEP; k++) {
            bool ok = r0 + k * RSTEP < nrows && bytes > 0;
            cp_async_16_at(sdst + k * RSTEP * (XP + 8) * 2, ok ? src + k * src_step : x.ptr, ok ? bytes : 0);
        }
    } else {
        for (int i = threadIdx.x; i < LA_C * XP; i += LA_CUDA_THREADS) {
            int r = i / XP, c = i % XP;
            T val = (r < nrows && c < X) ? base[r * x.st + c * x.sc] : T(0.0f);
            put_opn1<OT, NP>(dst + r * (XP + 8) + c, plane, val);
        }
    }
}

#endif
