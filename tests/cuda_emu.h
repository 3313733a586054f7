/*
 * cuda_emu.h - runs a CUDA kernel's blocks on the host, for tests on machines
 * without a GPU: each thread of a block is a coroutine (ucontext) on one OS
 * thread, __syncthreads, the named barriers (bar.sync / bar.arrive) and the
 * warp-collective instructions a kernel uses (mma.sync m16n8k16, ldmatrix x4
 * plain and transposed, __ballot_sync, __shfl_xor_sync) are points where a
 * coroutine yields (cp.async copies land at random ones of
 * them, or at the thread's wait), and a scheduler resumes the threads in a
 * seeded random order, so that a read racing a write of the same phase
 * shows up as a result that changes with the order.  A barrier that not
 * every thread reaches, or a warp collective that not all 32 lanes reach,
 * stops the run with a message.  Shared memory starts each block as NaN
 * bytes, so a read of what the block never wrote poisons the result.
 *
 * The kernel's source is compiled as it is by the host compiler: the CUDA
 * keywords below become nothing, threadIdx and blockIdx read the scheduler's
 * current thread, and `extern __shared__ char NAME[]` names the array the
 * including file defines (emu_shared_decl).  The 16-bit operand types are
 * emulated (round to nearest even), so no CUDA header is needed.
 *
 * Fragment layouts are PTX's (ISA "Matrix Fragments for mma.m16n8k16";
 * mma.cuh).  Products are summed in fp32 in k order, which the tensor cores
 * need not do: results agree to fp32 rounding, not bit for bit.
 */
#ifndef LA_TESTS_CUDA_EMU_H
#define LA_TESTS_CUDA_EMU_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <functional>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define LA_CUDA_MMA_CUH /* the device-only wrappers: replaced below */
struct float2 {
    float x, y;
};
static inline float2 make_float2(float x, float y) { return float2{x, y}; }
struct float4 {
    float x, y, z, w;
};
struct uint4 {
    uint32_t x, y, z, w;
};

/* ---- 16-bit operand types ------------------------------------------------------- */

struct emu_bf16 {
    uint16_t bits;
    emu_bf16() = default;
    emu_bf16(float f) {
        uint32_t u;
        memcpy(&u, &f, 4);
        if ((u & 0x7fffffffu) > 0x7f800000u) bits = (uint16_t)((u >> 16) | 0x40); /* NaN stays NaN */
        else bits = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
    }
    operator float() const {
        const uint32_t u = (uint32_t)bits << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
};

struct emu_f16 {
    _Float16 h;
    emu_f16() = default;
    emu_f16(float f) : h((_Float16)f) {}
    operator float() const { return (float)h; }
};

typedef emu_bf16 __nv_bfloat16;
typedef emu_f16 __half;

template <typename T> struct emu_is_bf16 { static constexpr bool value = false; };
template <> struct emu_is_bf16<emu_bf16> { static constexpr bool value = true; };

static inline float emu_elem(uint16_t bits, bool bf16) {
    if (bf16) {
        emu_bf16 x;
        x.bits = bits;
        return float(x);
    }
    emu_f16 x;
    memcpy(&x.h, &bits, 2);
    return float(x);
}

/* ---- the scheduler ---------------------------------------------------------------- */

struct emu_dim3 {
    unsigned x, y, z;
};

enum { EMU_RUN, EMU_BAR, EMU_WARP, EMU_DONE, EMU_GBAR };
enum { EMU_OP_LDM, EMU_OP_LDMT, EMU_OP_MMA_BF16, EMU_OP_MMA_F16, EMU_OP_BALLOT, EMU_OP_SHFL_XOR };

/* A 16-byte asynchronous copy in flight: its source bytes (zero-filled past
 * src_bytes) are read when issued, and land at a random later point up to
 * the thread's wait. */
struct emu_copy {
    void *dst;
    int group; /* the commit group it belongs to: the thread's commits before it */
    unsigned char bytes[16];
};

struct emu_thread {
    ucontext_t ctx;
    int state, op;
    const void *addr;
    uint32_t a[4], b[2], r[4];
    float c[4];
    int pred;
    int gbar;                      /* the named barrier it waits at (EMU_GBAR) */
    std::vector<emu_copy> pending; /* cp.async copies issued, not yet landed */
    int commits;                   /* cp.async groups committed */
};

#define EMU_THREADS_MAX 1024
#define EMU_STACK (256 * 1024)

struct emu_grid_state {
    emu_thread t[EMU_THREADS_MAX];
    std::vector<char> stacks;
    ucontext_t sched;
    int cur, nthreads;
    emu_dim3 tid_of_cur, block;
    std::function<void()> body;
    uint64_t rng;
    int garrived[16]; /* arrivals at each named barrier's current phase */
};
static emu_grid_state emu_g;

#define threadIdx (emu_g.tid_of_cur)
#define blockIdx (emu_g.block)

static uint32_t emu_rand();

/* Lands each of this thread's copies in flight with probability 1/16 (all:
 * every one): a copy often outlives the twenty-odd collectives of a chunk. */
static inline void emu_land(emu_thread &t, bool all, int below = 1 << 30) {
    size_t keep = 0;
    for (size_t i = 0; i < t.pending.size(); i++)
        if ((all && t.pending[i].group < below) || emu_rand() % 16 == 0)
            memcpy(t.pending[i].dst, t.pending[i].bytes, 16);
        else t.pending[keep++] = t.pending[i];
    t.pending.resize(keep);
}

static inline void emu_yield(int state) {
    emu_thread &t = emu_g.t[emu_g.cur];
    emu_land(t, false);
    t.state = state;
    swapcontext(&t.ctx, &emu_g.sched);
}

static inline void __syncthreads() { emu_yield(EMU_BAR); }

/* mma.cuh's named barriers (bar.sync / bar.arrive id, threads): the phase
 * completes when `threads` threads have arrived; then every waiter runs on. */
static inline bool emu_group_arrive(int id, int threads) {
    if (id <= 0 || id >= 16 || threads % 32) abort();
    if (++emu_g.garrived[id] < threads) return false;
    emu_g.garrived[id] = 0;
    for (int i = 0; i < emu_g.nthreads; i++)
        if (emu_g.t[i].state == EMU_GBAR && emu_g.t[i].gbar == id) emu_g.t[i].state = EMU_RUN;
    return true;
}
static inline void group_barrier(int id, int threads) {
    if (emu_group_arrive(id, threads)) emu_yield(EMU_RUN);
    else {
        emu_g.t[emu_g.cur].gbar = id;
        emu_yield(EMU_GBAR);
    }
}
static inline void group_arrive(int id, int threads) {
    emu_group_arrive(id, threads);
    emu_yield(EMU_RUN);
}

/* cp.async (mma.cuh's wrappers): a copy lands at once, at one of the
 * thread's later barriers or collectives, or at its wait, so that reading a
 * stage before the wait, or writing one that others still read, shows. */
static inline void cp_async_16(void *smem, const void *gmem, int src_bytes) {
    emu_copy c;
    c.dst = smem;
    c.group = emu_g.t[emu_g.cur].commits;
    memset(c.bytes, 0, 16);
    if (src_bytes) memcpy(c.bytes, gmem, (size_t)src_bytes);
    if (emu_rand() % 3 == 0) memcpy(smem, c.bytes, 16);
    else emu_g.t[emu_g.cur].pending.push_back(c);
}
static inline void cp_async_commit() { emu_g.t[emu_g.cur].commits++; }
/* wait_group N: every group but the newest N has landed. */
template <int N> static inline void cp_async_wait() {
    emu_thread &t = emu_g.t[emu_g.cur];
    emu_land(t, true, t.commits - N);
}

static inline unsigned __ballot_sync(unsigned mask, int pred) {
    (void)mask;
    emu_thread &t = emu_g.t[emu_g.cur];
    t.op = EMU_OP_BALLOT;
    t.pred = pred != 0;
    emu_yield(EMU_WARP);
    return t.r[0];
}

/* Lane l gets x of lane l ^ lane_mask (every lane of the warp takes part). */
static inline float __shfl_xor_sync(unsigned mask, float x, int lane_mask) {
    (void)mask;
    emu_thread &t = emu_g.t[emu_g.cur];
    t.op = EMU_OP_SHFL_XOR;
    memcpy(&t.r[0], &x, 4);
    t.pred = lane_mask;
    emu_yield(EMU_WARP);
    float y;
    memcpy(&y, &t.r[1], 4);
    return y;
}

static inline int __ffs(unsigned x) { return __builtin_ffs((int)x); }

static inline void emu_ldmatrix(uint32_t r[4], const void *row_ptr, int op) {
    emu_thread &t = emu_g.t[emu_g.cur];
    t.op = op;
    t.addr = row_ptr;
    emu_yield(EMU_WARP);
    memcpy(r, t.r, sizeof t.r);
}
static inline void ldmatrix_x4(uint32_t r[4], const void *row_ptr) { emu_ldmatrix(r, row_ptr, EMU_OP_LDM); }
static inline void ldmatrix_x4_trans(uint32_t r[4], const void *row_ptr) { emu_ldmatrix(r, row_ptr, EMU_OP_LDMT); }

template <typename T> static inline void mma_16816(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    emu_thread &t = emu_g.t[emu_g.cur];
    t.op = emu_is_bf16<T>::value ? EMU_OP_MMA_BF16 : EMU_OP_MMA_F16;
    memcpy(t.a, a, sizeof t.a);
    memcpy(t.b, b, sizeof t.b);
    memcpy(t.c, d, sizeof t.c);
    emu_yield(EMU_WARP);
    memcpy(d, t.c, sizeof t.c);
}

static inline uint16_t emu_lo(uint32_t x) { return (uint16_t)(x & 0xffff); }
static inline uint16_t emu_hi(uint32_t x) { return (uint16_t)(x >> 16); }
static inline uint32_t emu_pack(uint16_t lo, uint16_t hi) { return (uint32_t)lo | (uint32_t)hi << 16; }

/* mma.cuh's pack_op2: x0, x1 rounded to OT as one operand word (x0 in the low half), and with
 * SPLIT the word of their remainders. */
template <typename OT> static inline uint16_t emu_bits(OT x) {
    uint16_t b;
    memcpy(&b, &x, 2);
    return b;
}
template <typename OT, bool SPLIT> static inline void pack_op2(float x0, float x1, uint32_t &hi, uint32_t &lo) {
    const OT h0(x0), h1(x1);
    hi = emu_pack(emu_bits(h0), emu_bits(h1));
    if (SPLIT) lo = emu_pack(emu_bits(OT(x0 - float(h0))), emu_bits(OT(x1 - float(h1))));
}

/* The collective of the 32 lanes of warp w (all waiting at the same op). */
static void emu_warp_op(int w) {
    emu_thread *L = emu_g.t + 32 * w;
    const int op = L[0].op;
    for (int l = 1; l < 32; l++)
        if (L[l].op != op) {
            fprintf(stderr, "cuda_emu: warp %d: lanes at different collectives (%d, %d)\n", w, op, L[l].op);
            abort();
        }
    if (op == EMU_OP_SHFL_XOR) {
        for (int l = 0; l < 32; l++)
            if (L[l].pred != L[0].pred) {
                fprintf(stderr, "cuda_emu: warp %d: lanes shuffle with different lane masks\n", w);
                abort();
            }
        for (int l = 0; l < 32; l++) L[l].r[1] = L[l ^ (L[0].pred & 31)].r[0];
    } else if (op == EMU_OP_BALLOT) {
        uint32_t m = 0;
        for (int l = 0; l < 32; l++) m |= (uint32_t)L[l].pred << l;
        for (int l = 0; l < 32; l++) L[l].r[0] = m;
    } else if (op == EMU_OP_LDM || op == EMU_OP_LDMT) {
        /* Matrix i's row j is the 8 elements at lane 8 i + j's address. */
        uint16_t M[4][8][8];
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 8; j++) memcpy(M[i][j], L[8 * i + j].addr, 16);
        for (int l = 0; l < 32; l++)
            for (int i = 0; i < 4; i++)
                L[l].r[i] = op == EMU_OP_LDM ? emu_pack(M[i][l / 4][2 * (l % 4)], M[i][l / 4][2 * (l % 4) + 1])
                                             : emu_pack(M[i][2 * (l % 4)][l / 4], M[i][2 * (l % 4) + 1][l / 4]);
    } else { /* mma m16n8k16: D = A B + C */
        const bool bf = op == EMU_OP_MMA_BF16;
        float A[16][16], B[16][8], C[16][8];
        for (int l = 0; l < 32; l++) {
            const int g = l / 4, t = l % 4;
            const uint32_t *a = L[l].a, *b = L[l].b;
            A[g][2 * t] = emu_elem(emu_lo(a[0]), bf), A[g][2 * t + 1] = emu_elem(emu_hi(a[0]), bf);
            A[g + 8][2 * t] = emu_elem(emu_lo(a[1]), bf), A[g + 8][2 * t + 1] = emu_elem(emu_hi(a[1]), bf);
            A[g][2 * t + 8] = emu_elem(emu_lo(a[2]), bf), A[g][2 * t + 9] = emu_elem(emu_hi(a[2]), bf);
            A[g + 8][2 * t + 8] = emu_elem(emu_lo(a[3]), bf), A[g + 8][2 * t + 9] = emu_elem(emu_hi(a[3]), bf);
            B[2 * t][g] = emu_elem(emu_lo(b[0]), bf), B[2 * t + 1][g] = emu_elem(emu_hi(b[0]), bf);
            B[2 * t + 8][g] = emu_elem(emu_lo(b[1]), bf), B[2 * t + 9][g] = emu_elem(emu_hi(b[1]), bf);
            C[g][2 * t] = L[l].c[0], C[g][2 * t + 1] = L[l].c[1];
            C[g + 8][2 * t] = L[l].c[2], C[g + 8][2 * t + 1] = L[l].c[3];
        }
        for (int m = 0; m < 16; m++)
            for (int n = 0; n < 8; n++) {
                float s = C[m][n];
                for (int k = 0; k < 16; k++) s += A[m][k] * B[k][n];
                C[m][n] = s;
            }
        for (int l = 0; l < 32; l++) {
            const int g = l / 4, t = l % 4;
            L[l].c[0] = C[g][2 * t], L[l].c[1] = C[g][2 * t + 1];
            L[l].c[2] = C[g + 8][2 * t], L[l].c[3] = C[g + 8][2 * t + 1];
        }
    }
    for (int l = 0; l < 32; l++) L[l].state = EMU_RUN;
}

static void emu_entry() {
    emu_g.body();
    emu_land(emu_g.t[emu_g.cur], true);
    emu_g.t[emu_g.cur].state = EMU_DONE; /* uc_link returns to the scheduler */
}

static uint32_t emu_rand() {
    emu_g.rng = emu_g.rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(emu_g.rng >> 33);
}

/* Thread i at the start of the body.  (A function of its own: getcontext
 * returns twice, which the caller's locals need not survive.) */
__attribute__((noinline)) static void emu_start_thread(int i) {
    emu_thread &t = emu_g.t[i];
    getcontext(&t.ctx);
    t.ctx.uc_stack.ss_sp = &emu_g.stacks[(size_t)i * EMU_STACK];
    t.ctx.uc_stack.ss_size = EMU_STACK;
    t.ctx.uc_link = &emu_g.sched;
    makecontext(&t.ctx, emu_entry, 0);
    t.state = EMU_RUN;
    t.pending.clear();
    t.commits = 0;
}

/* Run body() as every thread of every block of the grid; smem (bytes) is
 * poisoned before each block. */
static void emu_launch(emu_dim3 grid, int threads, char *smem, size_t smem_bytes, uint64_t seed,
                       std::function<void()> body) {
    if (threads % 32 || threads > EMU_THREADS_MAX) abort();
    emu_g.body = body;
    emu_g.nthreads = threads;
    emu_g.rng = seed * 2654435761u + 1;
    emu_g.stacks.resize((size_t)threads * EMU_STACK);
    std::vector<int> order(threads);
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                emu_g.block = {x, y, z};
                memset(emu_g.garrived, 0, sizeof emu_g.garrived);
                memset(smem, 0xff, smem_bytes);
                for (int i = 0; i < threads; i++) {
                    emu_start_thread(i);
                    order[i] = i;
                }
                for (;;) {
                    for (int i = threads - 1; i > 0; i--) { /* a fresh order each round */
                        const int j = (int)(emu_rand() % (uint32_t)(i + 1));
                        const int x2 = order[i];
                        order[i] = order[j];
                        order[j] = x2;
                    }
                    bool ran = false;
                    for (int i : order)
                        if (emu_g.t[i].state == EMU_RUN) {
                            emu_g.cur = i;
                            emu_g.tid_of_cur = {(unsigned)i, 0, 0};
                            swapcontext(&emu_g.sched, &emu_g.t[i].ctx);
                            ran = true;
                        }
                    int done = 0, bar = 0;
                    for (int i = 0; i < threads; i++) {
                        done += emu_g.t[i].state == EMU_DONE;
                        bar += emu_g.t[i].state == EMU_BAR;
                    }
                    if (done == threads) break;
                    for (int w = 0; w < threads / 32; w++) {
                        int at = 0;
                        for (int l = 0; l < 32; l++) at += emu_g.t[32 * w + l].state == EMU_WARP;
                        if (at == 32) {
                            emu_warp_op(w);
                            ran = true;
                        }
                    }
                    if (bar == threads) {
                        for (int i = 0; i < threads; i++) emu_g.t[i].state = EMU_RUN;
                        ran = true;
                    } else if (!ran) {
                        int gbar = 0;
                        for (int i = 0; i < threads; i++) gbar += emu_g.t[i].state == EMU_GBAR;
                        fprintf(stderr,
                                "cuda_emu: block (%u, %u, %u): %d threads at __syncthreads, %d at named barriers "
                                "short of their count, %d done, the rest at warp collectives that not all lanes "
                                "reached\n",
                                x, y, z, bar, gbar, done);
                        abort();
                    }
                }
            }
}

#endif
