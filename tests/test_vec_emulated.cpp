/*
 * test_vec_emulated.cpp - the CUDA vector-decay kernels compiled by the host
 * C++ compiler and run against the fp64 reference, forward and backward (the
 * backward's runs of the same kernels, decay gradients included, listed by
 * vec_bwd.h as the GPU runner lists them):
 *
 * - the fp32 recurrence (vec_fwd_kernel.cuh, la_vec_fwd_block), one block at
 *   a time by one thread: every step of its block is a loop strided by the
 *   thread count between barriers, so one thread with the barriers left out
 *   computes what the GPU block computes.  f32 inputs (it widens every dtype
 *   to f32 on load).
 * - the tensor-core recurrence (vec_mma_kernel.cuh) on bf16 and f16 inputs,
 *   every thread of a block a coroutine (cuda_emu.h): its fragments,
 *   ldmatrix addressing, barriers and shared-memory phases, with the
 *   threads resumed in a random order between barriers and shared memory
 *   poisoned.
 *
 * This checks the arithmetic and the indexing (decay factors, chunk edges,
 * value slices, strides, packed offsets, initial and final states) on any
 * machine; what only a GPU shows (shared memory limits, launches, the real
 * tensor cores) the GPU case table checks.
 */
#include "cuda_emu.h"

#include "vec_fwd_kernel.cuh"
#include "vec_mma_kernel.cuh"
#include "vec_ws_kernel.cuh"
#include "vec_bwd.h"
#include "vec_fold.cuh"

extern "C" {
#include "reference.h"
}

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

static int passed, failed;

/* Which kernel runs a case, on which input dtype. */
enum kernel_kind { K_FP32, K_MMA_BF16, K_MMA_F16 };
static const char *const KIND_NAME[] = {"fp32", "mma bf16", "mma f16"};
static int mma_et = 64; /* the tensor-core kernel's value columns a block in this pass: every case runs with 64 and 128 */
static bool mma_ws = false; /* this pass runs the warp-role kernel where it applies (128-column blocks) */
static const char *kind_name(int kind) {
    static char buf[32];
    if (kind == K_FP32) return KIND_NAME[kind];
    snprintf(buf, sizeof buf, "%s, %d-column blocks%s", KIND_NAME[kind], mma_et, mma_ws ? ", warp roles" : "");
    return buf;
}

/* The tensor-core kernels' shared memory (cuda_emu.h: the kernel's extern __shared__ array): the
 * larger of the lockstep kernel's and the warp-role kernel's largest blocks. */
constexpr int emu_smem_bytes(int a, int b) { return a > b ? a : b; }
alignas(16) char sm[emu_smem_bytes(vm_layout<128, 128, true, true>::bytes(3), vw_layout<128, true, true, true>::bytes(4))];

static uint64_t rng_state;
static double uniform() {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return ((rng_state >> 11) + 0.5) / 9007199254740992.0;
}
static double normal() { return sqrt(-2.0 * log(uniform())) * cos(6.283185307179586 * uniform()); }
static double logsigmoid(double x) { return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)); }

struct vcase {
    const char *name;
    int B, H;
    int64_t N;
    int D, E;
    bool kv, s0, state_only, bnhd, value_major;
    double gate_sigma; /* gates logsigmoid(normal * sigma) */
    int strong;        /* every strong-th decay set to -30, and one to -1e6 */
    std::vector<int64_t> cu; /* packed offsets (B = 1), or empty */
    double shift = 2.0;      /* gates logsigmoid(normal * sigma + shift) */
};

/* Element (b, h, t, c) of a token tensor [B, H, N, X] in either layout. */
static int64_t tok_at(const vcase &c, int64_t X, int64_t b, int64_t h, int64_t t, int64_t x) {
    return c.bnhd ? ((b * c.N + t) * c.H + h) * X + x : ((b * c.H + h) * c.N + t) * X + x;
}
static la_tok_t tok_view(const vcase &c, const void *p, int64_t X) {
    la_tok_t v;
    v.ptr = p;
    v.sb = c.N * c.H * X;
    v.sh = c.bnhd ? X : c.N * X;
    v.st = c.bnhd ? c.H * X : X;
    v.sc = 1;
    return v;
}
/* State [S, H, D, E], or value-major [S, H, E, D] through strides. */
static la_st_t state_view(const vcase &c, const float *p) {
    la_st_t v;
    v.ptr = const_cast<float *>(p);
    v.ss = (int64_t)c.H * c.D * c.E;
    v.sh = (int64_t)c.D * c.E;
    v.sd = c.value_major ? 1 : c.E;
    v.se = c.value_major ? c.D : 1;
    return v;
}

static double rel_l2(const std::vector<double> &x, const std::vector<double> &ref) {
    double num = 0, den = 0;
    for (size_t i = 0; i < x.size(); i++) {
        if (!(x[i] == x[i])) return INFINITY; /* NaN: an element the kernel left unwritten */
        num += (x[i] - ref[i]) * (x[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void check(bool ok, const char *name, const char *what, double err) {
    if (getenv("LA_VERBOSE")) printf("%s %s: %s relative error %.3g\n", ok ? "ok" : "FAIL", name, what, err);
    if (ok) {
        passed++;
        return;
    }
    failed++;
    printf("FAIL %s: %s relative error %.3g\n", name, what, err);
}

/* A case's inputs (f32), drawn from its own seed. */
struct inputs {
    int64_t S;
    std::vector<float> q, k, v, gk, gv, s0, d_o, dsN;
    inputs(const vcase &c, kernel_kind kind) {
        rng_state = 0x9E3779B97F4A7C15ull ^ (uint64_t)(c.N * 131 + c.D * 17 + c.E * 7 + c.kv + 2 * c.state_only);
        const int64_t B = c.B, H = c.H, N = c.N, D = c.D, E = c.E;
        S = c.cu.empty() ? B : (int64_t)c.cu.size() - 1;
        q.resize(B * H * N * D);
        k.resize(q.size());
        gk.resize(q.size());
        v.resize(B * H * N * E);
        gv.resize(v.size());
        d_o.resize(v.size());
        s0.resize(S * H * D * E);
        dsN.resize(s0.size());
        for (auto &x : q) x = (float)(normal() / sqrt((double)D));
        for (auto &x : k) x = (float)(normal() / sqrt((double)D));
        for (auto &x : v) x = (float)normal();
        for (auto &x : gk) x = (float)logsigmoid(normal() * c.gate_sigma + c.shift);
        for (auto &x : gv) x = (float)logsigmoid(normal() * c.gate_sigma + c.shift);
        if (c.strong) {
            for (size_t i = 0; i < gk.size(); i += c.strong) gk[i] = -30.0f;
            gk[gk.size() / 2] = -1.0e6f;
            if (c.kv) gv[gv.size() / 3] = -1.0e6f;
        }
        for (auto &x : s0) x = (float)normal();
        for (auto &x : d_o) x = (float)normal();
        for (auto &x : dsN) x = (float)normal();
        if (kind != K_FP32) /* the 16-bit kernels' inputs: the reference sees the rounded values */
            for (std::vector<float> *x : {&q, &k, &v, &d_o})
                for (float &y : *x) y = kind == K_MMA_BF16 ? float(emu_bf16(y)) : float(emu_f16(y));
    }
};

/* A token tensor in the kernel's input dtype (NaN-filled where n == 0: an output). */
struct typed {
    kernel_kind kind;
    std::vector<char> bytes;
    typed(kernel_kind k, const std::vector<float> &x, bool poison = false) : kind(k) {
        const size_t es = k == K_FP32 ? 4 : 2;
        bytes.assign(x.size() * es, poison ? (char)0xff : 0);
        if (!poison)
            for (size_t i = 0; i < x.size(); i++) {
                if (k == K_FP32) memcpy(&bytes[4 * i], &x[i], 4);
                else if (k == K_MMA_BF16) {
                    const emu_bf16 b(x[i]);
                    memcpy(&bytes[2 * i], &b, 2);
                } else {
                    const emu_f16 h(x[i]);
                    memcpy(&bytes[2 * i], &h, 2);
                }
            }
    }
    const void *data() const { return bytes.data(); }
    std::vector<float> floats() const {
        const size_t es = kind == K_FP32 ? 4 : 2, n = bytes.size() / es;
        std::vector<float> r(n);
        for (size_t i = 0; i < n; i++) {
            if (kind == K_FP32) memcpy(&r[i], &bytes[4 * i], 4);
            else if (kind == K_MMA_BF16) {
                emu_bf16 b;
                memcpy(&b, &bytes[2 * i], 2);
                r[i] = float(b);
            } else {
                emu_f16 h;
                memcpy(&h, &bytes[2 * i], 2);
                r[i] = float(h);
            }
        }
        return r;
    }
};

/* One (sequence, head)'s rows of a token tensor, as contiguous doubles. */
static std::vector<double> gather(const vcase &c, const std::vector<float> &x, int64_t X, int64_t b, int64_t h,
                                  int64_t t0, int64_t n) {
    std::vector<double> r(n * X);
    for (int64_t t = 0; t < n; t++)
        for (int64_t i = 0; i < X; i++) r[t * X + i] = x[tok_at(c, X, b, h, t0 + t, i)];
    return r;
}
static std::vector<double> gather_state(const vcase &c, const std::vector<float> &x, int64_t s, int64_t h) {
    const la_st_t sv = state_view(c, NULL);
    std::vector<double> r((size_t)c.D * c.E);
    for (int64_t d = 0; d < c.D; d++)
        for (int64_t e = 0; e < c.E; e++) r[d * c.E + e] = x[s * sv.ss + h * sv.sh + d * sv.sd + e * sv.se];
    return r;
}

/* The tensor-core kernel's instance for the run, as vec_mma.cu picks it (the
 * block's value columns: this pass's), on every thread of its grid. */
template <typename T, int DM, int ET, bool RD, bool CD, bool SP>
static void run_mma_instance(const la_vec_params_t &p, int64_t S, int H, uint64_t seed) {
    const emu_dim3 grid = {(unsigned)S, (unsigned)H, (unsigned)((p.E + ET - 1) / ET)};
    la_vec_params_t ps = p;
    if (ET == LA_VW_ET && mma_ws) { /* the warp-role kernel: three or four input stages */
        ps.nstage = 3 + (int)(seed % 2);
        emu_launch(grid, LA_VW_THREADS, sm, vw_layout<DM, RD, CD, SP>::bytes(ps.nstage), seed,
                   [&ps] { la_vec_ws_kernel<T, DM, RD, CD, SP>(ps); });
        return;
    }
    ps.nstage = 2 + (int)(seed % 2); /* both depths of the input pipeline, launch by launch */
    emu_launch(grid, LA_VM_THREADS(ET), sm, vm_layout<DM, ET, CD, SP>::bytes(ps.nstage), seed,
               [&ps] { la_vec_mma_kernel<T, DM, ET, RD, CD, SP>(ps); });
}
template <typename T, int DM, int ET, bool SP>
static void run_mma_kind(const la_vec_params_t &p, int64_t S, int H, uint64_t seed) {
    if (!p.gv) run_mma_instance<T, DM, ET, true, false, SP>(p, S, H, seed);
    else if (p.gk) run_mma_instance<T, DM, ET, true, true, SP>(p, S, H, seed);
    else run_mma_instance<T, DM, ET, false, true, SP>(p, S, H, seed);
}
template <typename T, int DM, bool SP> static void run_mma_cols(const la_vec_params_t &p, int64_t S, int H, uint64_t seed) {
    if (mma_et == 128) run_mma_kind<T, DM, 128, SP>(p, S, H, seed);
    else run_mma_kind<T, DM, 64, SP>(p, S, H, seed);
}
template <typename T, int DM> static void run_mma_dm(const la_vec_params_t &p, int64_t S, int H, uint64_t seed) {
    if (p.term_mode) run_mma_cols<T, DM, true>(p, S, H, seed);
    else run_mma_cols<T, DM, false>(p, S, H, seed);
}
template <typename T> static void run_mma(const la_vec_params_t &p, int64_t S, int H, uint64_t seed) {
    if (p.D <= 64) run_mma_dm<T, 64>(p, S, H, seed);
    else run_mma_dm<T, 128>(p, S, H, seed);
}

/* Every block of one run of the recurrence: the fp32 kernel one thread a
 * block, the tensor-core kernel every thread. */
static void run_blocks(const la_vec_params_t &p, int64_t S, int H, kernel_kind kind) {
    static uint64_t seed = 1;
    if (kind == K_MMA_BF16) return run_mma<emu_bf16>(p, S, H, seed++);
    if (kind == K_MMA_F16) return run_mma<emu_f16>(p, S, H, seed++);
    std::vector<float> smem(la_vec_fwd_smem(p.D) / sizeof(float));
    const int slices = (p.E + LA_VEC_EV - 1) / LA_VEC_EV;
    for (int64_t s = 0; s < S; s++)
        for (int h = 0; h < H; h++)
            for (int z = 0; z < slices; z++) {
                for (auto &x : smem) x = NAN; /* what the block reads it must have written */
                if (p.gv) la_vec_fwd_block<float, true>(p, (int)s, h, z, smem.data(), 0, 1);
                else la_vec_fwd_block<float, false>(p, (int)s, h, z, smem.data(), 0, 1);
            }
}

/* Bounds on the relative L2 error: token tensors, states, decay gradients.
 * The 16-bit kernels round their products' operands to the input dtype
 * (tests/tolerances.c: u of the dtype, a few times over); their states, and
 * the outputs that feed the decay gradients, keep fp32 accuracy (split
 * operands: measured up to 6.5e-5 of the decay gradients, bf16 and f16). */
struct bounds {
    double tok, state, dld;
};
static bounds bounds_of(kernel_kind k) {
    if (k == K_MMA_BF16) return {1e-2 + 2 * 3.90625e-3, 5e-5, 3e-4};
    if (k == K_MMA_F16) return {1e-3 + 2 * 4.8828125e-4, 2.5e-4, 3e-4};
    return {2e-5, 2e-5, 1e-4};
}

/* One run split along the sequence, as the runner does it (host/backend.cu): each segment's
 * walk from a zero state (its local state and summed decays), the fold in the run's direction,
 * each segment's walk from its starting state, and a reverse run's running sums' offsets. */
static void run_split(const la_vec_params_t &p, int64_t S, int64_t seg_len, kernel_kind kind) {
    const int64_t H = p.H, D = p.D, E = p.E, nseg = (p.seqlen + seg_len - 1) / seg_len;
    std::vector<float> seg_state((size_t)(S * nseg * H * D * E), NAN), tot((size_t)(S * nseg * H * (D + E)), NAN);
    std::vector<double> sums((size_t)(S * nseg * H * E), NAN);
    la_st_t seg;
    seg.ptr = seg_state.data();
    seg.ss = H * D * E;
    seg.sh = D * E;
    seg.sd = E;
    seg.se = 1;
    la_vec_params_t sp = p;
    sp.seg_len = seg_len;
    sp.nseg = (int)nseg;
    sp.q = sp.o = sp.mul = la_vec_none();
    sp.term = NULL;
    sp.term_mode = 0;
    sp.fin_a.ptr = sp.fin_b.ptr = NULL;
    sp.s0.ptr = NULL;
    sp.sN = seg;
    sp.seg_tot_k = tot.data();
    sp.seg_tot_v = p.gv ? tot.data() + S * nseg * H * D : NULL;
    run_blocks(sp, S * nseg, (int)H, kind);
    for (int64_t s = 0; s < S; s++)
        for (int h = 0; h < H; h++)
            for (int d = 0; d < D; d++)
                for (int e = 0; e < E; e++)
                    la_vec_fold_elem(seg_state.data(), sp.seg_tot_k, sp.seg_tot_v, p.s0, p.sN, (int)nseg, (int)H,
                                     (int)D, (int)E, p.reverse, s, h, d, e);
    if (!p.o.ptr && !p.term) return;
    sp = p;
    sp.seg_len = seg_len;
    sp.nseg = (int)nseg;
    sp.s0 = seg;
    sp.sN.ptr = NULL;
    if (p.term_mode == 2) {
        sp.fin_a.ptr = sp.fin_b.ptr = NULL;
        sp.seg_sum = sums.data();
    }
    run_blocks(sp, S * nseg, (int)H, kind);
    if (p.term_mode != 2) return;
    const int64_t ts[4] = {p.term_sb, p.term_sh, p.term_st, p.term_sc};
    for (int64_t s = 0; s < S; s++)
        for (int h = 0; h < H; h++) {
            for (int c = 0; c < E; c++)
                la_vec_sum_offsets_elem(sums.data(), p.fin_a, p.fin_b, (int)nseg, (int)H, (int)D, (int)E, s, h, c);
            for (int64_t t = 0; t < p.seqlen; t++)
                for (int c = 0; c < E; c++)
                    la_vec_sum_apply_elem(p.term, ts, sums.data(), (int)nseg, seg_len, (int)H, (int)E, s, h, t, c);
        }
}

/* seg_len > 0: the forward split along the sequence in segments of seg_len tokens. */
static void run_case(const vcase &c, kernel_kind kind, int64_t seg_len = 0) {
    const inputs in(c, kind);
    const int64_t B = c.B, H = c.H, N = c.N, D = c.D, E = c.E, S = in.S;
    const std::vector<float> &q = in.q, &k = in.k, &v = in.v, &gk = in.gk, &gv = in.gv, &s0 = in.s0;
    std::vector<float> sN(s0.size(), NAN);
    const typed tq(kind, q), tk(kind, k), tv(kind, v);
    typed to(kind, std::vector<float>(B * H * N * E), true);
    const float scale = 0.75f;

    la_vec_params_t p;
    memset(&p, 0, sizeof p);
    p.k = tok_view(c, tk.data(), D);
    p.v = tok_view(c, tv.data(), E);
    p.kscale = 1.0f;
    if (!c.state_only) {
        p.q = tok_view(c, tq.data(), D);
        p.o = tok_view(c, to.data(), E);
    }
    const la_tok_t g = tok_view(c, gk.data(), D);
    p.gk = gk.data();
    p.gk_sb = g.sb; p.gk_sh = g.sh; p.gk_st = g.st; p.gk_sc = g.sc;
    if (c.kv) {
        const la_tok_t gvv = tok_view(c, gv.data(), E);
        p.gv = gv.data();
        p.gv_sb = gvv.sb; p.gv_sh = gvv.sh; p.gv_st = gvv.st; p.gv_sc = gvv.sc;
    }
    if (c.s0) p.s0 = state_view(c, s0.data());
    p.sN = state_view(c, sN.data());
    p.D = (int)D; p.E = (int)E; p.H = (int)H;
    p.scale = scale;
    p.seqlen = N;
    p.cu = c.cu.empty() ? NULL : c.cu.data();

    if (seg_len) run_split(p, S, seg_len, kind);
    else run_blocks(p, S, (int)H, kind);
    const std::vector<float> o = to.floats();

    std::vector<double> got_o, ref_o, got_s, ref_s;
    for (int64_t s = 0; s < S; s++)
        for (int64_t h = 0; h < H; h++) {
            const int64_t b = c.cu.empty() ? s : 0, t0 = c.cu.empty() ? 0 : c.cu[s];
            const int64_t n = c.cu.empty() ? N : c.cu[s + 1] - c.cu[s];
            std::vector<double> dq(n * D), dk(n * D), dgk(n * D), dv(n * E), dgv(n * E), ds0(D * E), ro(n * E), rs(D * E);
            for (int64_t t = 0; t < n; t++) {
                for (int64_t d = 0; d < D; d++) {
                    dq[t * D + d] = q[tok_at(c, D, b, h, t0 + t, d)];
                    dk[t * D + d] = k[tok_at(c, D, b, h, t0 + t, d)];
                    dgk[t * D + d] = gk[tok_at(c, D, b, h, t0 + t, d)];
                }
                for (int64_t e = 0; e < E; e++) {
                    dv[t * E + e] = v[tok_at(c, E, b, h, t0 + t, e)];
                    dgv[t * E + e] = gv[tok_at(c, E, b, h, t0 + t, e)];
                }
            }
            const la_st_t sv = state_view(c, NULL);
            for (int64_t d = 0; d < D; d++)
                for (int64_t e = 0; e < E; e++) ds0[d * E + e] = s0[s * sv.ss + h * sv.sh + d * sv.sd + e * sv.se];
            ref_forward_recurrent(n, (int)D, (int)E, scale, dq.data(), dk.data(), dv.data(), dgk.data(),
                                  c.kv ? dgv.data() : NULL, c.s0 ? ds0.data() : NULL, ro.data(), rs.data());
            if (!c.state_only)
                for (int64_t t = 0; t < n; t++)
                    for (int64_t e = 0; e < E; e++) {
                        got_o.push_back(o[tok_at(c, E, b, h, t0 + t, e)]);
                        ref_o.push_back(ro[t * E + e]);
                    }
            for (int64_t d = 0; d < D; d++)
                for (int64_t e = 0; e < E; e++) {
                    got_s.push_back(sN[s * sv.ss + h * sv.sh + d * sv.sd + e * sv.se]);
                    ref_s.push_back(rs[d * E + e]);
                }
        }
    const bounds tol = bounds_of(kind);
    char what[64];
    if (!c.state_only) {
        const double eo = rel_l2(got_o, ref_o);
        snprintf(what, sizeof what, "%s: o%s", kind_name(kind), seg_len ? " (split)" : "");
        check(eo < tol.tok, c.name, what, eo);
    }
    const double es = rel_l2(got_s, ref_s);
    snprintf(what, sizeof what, "%s: final state%s", kind_name(kind), seg_len ? " (split)" : "");
    check(es < tol.state, c.name, what, es);
}

static void strides_of(const la_tok_t &t, int64_t s[4]) {
    s[0] = t.sb;
    s[1] = t.sh;
    s[2] = t.st;
    s[3] = t.sc;
}

/* The backward (or the state-only backward, for state-only cases): every run
 * vec_bwd.h lists, against ref_backward. */
static void run_backward(const vcase &c, kernel_kind kind, int64_t seg_len = 0) {
    const inputs in(c, kind);
    const int64_t H = c.H, N = c.N, D = c.D, E = c.E, S = in.S;
    const float scale = 0.75f;
    const bool so = c.state_only, states = c.s0; /* s0 and dS_final both, or neither */
    std::vector<float> dgk(in.gk.size(), NAN), dgv(in.gv.size(), NAN), ds0(in.s0.size(), NAN),
        sN_ws(in.s0.size(), NAN);
    const typed tq(kind, in.q), tk(kind, in.k), tv(kind, in.v), tdo(kind, in.d_o);
    typed tdq(kind, in.q, true), tdk(kind, in.k, true), tdv(kind, in.v, true);
    la_vec_bwd_args_t a;
    memset(&a, 0, sizeof a);
    a.state_only = so;
    a.k = tok_view(c, tk.data(), D);
    a.v = tok_view(c, tv.data(), E);
    a.dk = tok_view(c, tdk.data(), D);
    a.dv = tok_view(c, tdv.data(), E);
    if (!so) {
        a.q = tok_view(c, tq.data(), D);
        a.d_o = tok_view(c, tdo.data(), E);
        a.dq = tok_view(c, tdq.data(), D);
    }
    a.gk = in.gk.data();
    strides_of(tok_view(c, in.gk.data(), D), a.gk_s);
    a.d_gk = dgk.data();
    strides_of(tok_view(c, dgk.data(), D), a.dgk_s);
    if (c.kv) {
        a.gv = in.gv.data();
        strides_of(tok_view(c, in.gv.data(), E), a.gv_s);
        a.d_gv = dgv.data();
        strides_of(tok_view(c, dgv.data(), E), a.dgv_s);
    }
    if (states) {
        a.s0 = state_view(c, in.s0.data());
        a.dsN = state_view(c, in.dsN.data());
    }
    a.ds0 = state_view(c, ds0.data());
    a.D = (int)D; a.E = (int)E; a.H = (int)H;
    a.scale = scale;
    a.seqlen = N;
    a.cu = c.cu.empty() ? NULL : c.cu.data();
    if (la_vec_bwd_ws_state(1, states)) a.sN_ws = sN_ws.data();
    la_vec_params_t runs[4];
    const int nr = la_vec_bwd_runs(&a, runs);
    for (int i = 0; i < nr; i++)
        if (seg_len) run_split(runs[i], S, seg_len, kind);
        else run_blocks(runs[i], S, (int)H, kind);
    const std::vector<float> dq = tdq.floats(), dk = tdk.floats(), dv = tdv.floats();

    std::vector<double> got[6], ref[6]; /* dq, dk, dv, dgk, dgv, ds0 */
    for (int64_t s = 0; s < S; s++)
        for (int64_t h = 0; h < H; h++) {
            const int64_t b = c.cu.empty() ? s : 0, t0 = c.cu.empty() ? 0 : c.cu[s];
            const int64_t n = c.cu.empty() ? N : c.cu[s + 1] - c.cu[s];
            const std::vector<double> rq = gather(c, in.q, D, b, h, t0, n), rk = gather(c, in.k, D, b, h, t0, n),
                                      rv = gather(c, in.v, E, b, h, t0, n), rgk = gather(c, in.gk, D, b, h, t0, n),
                                      rgv = gather(c, in.gv, E, b, h, t0, n), rdo = gather(c, in.d_o, E, b, h, t0, n),
                                      rs0 = gather_state(c, in.s0, s, h), rdsN = gather_state(c, in.dsN, s, h);
            std::vector<double> r[6] = {std::vector<double>(n * D), std::vector<double>(n * D),
                                        std::vector<double>(n * E), std::vector<double>(n * D),
                                        std::vector<double>(n * E), std::vector<double>(D * E)};
            ref_backward(n, (int)D, (int)E, scale, rq.data(), rk.data(), rv.data(), rgk.data(),
                         c.kv ? rgv.data() : NULL, states ? rs0.data() : NULL, so ? NULL : rdo.data(),
                         states ? rdsN.data() : NULL, r[0].data(), r[1].data(), r[2].data(), r[3].data(),
                         c.kv ? r[4].data() : NULL, r[5].data());
            const std::vector<float> *outs[5] = {&dq, &dk, &dv, &dgk, &dgv};
            const int64_t dims[5] = {D, D, E, D, E};
            for (int i = 0; i < 5; i++) {
                if ((i == 0 && so) || (i == 4 && !c.kv)) continue;
                const std::vector<double> g = gather(c, *outs[i], dims[i], b, h, t0, n);
                got[i].insert(got[i].end(), g.begin(), g.end());
                ref[i].insert(ref[i].end(), r[i].begin(), r[i].end());
            }
            const std::vector<double> g = gather_state(c, ds0, s, h);
            got[5].insert(got[5].end(), g.begin(), g.end());
            ref[5].insert(ref[5].end(), r[5].begin(), r[5].end());
        }
    const char *names[6] = {"dq", "dk", "dv", "d gk", "d gv", "d initial state"};
    const bounds b = bounds_of(kind);
    const double tols[6] = {b.tok, b.tok, b.tok, b.dld, b.dld, b.state};
    char what[64];
    for (int i = 0; i < 6; i++) {
        if ((i == 0 && so) || (i == 4 && !c.kv)) continue;
        const double err = rel_l2(got[i], ref[i]);
        snprintf(what, sizeof what, "%s: %sbackward%s: %s", kind_name(kind), so ? "state-only " : "", seg_len ? " (split)" : "", names[i]);
        check(err < tols[i], c.name, what, err);
    }
}

/* The emulator's named barriers as a kernel with warp roles uses them: producers fill one of two
 * slots and arrive at its FULL barrier; consumers wait there, read another producer's value and
 * arrive at the slot's DONE barrier, which the producers wait at before they fill the slot again. */
static void check_named_barriers(void) {
    enum { T = 128, HALF = 64, ROUNDS = 12 };
    static char slots[2 * HALF * 4];
    int bad = 0;
    emu_launch({1, 1, 1}, T, slots, sizeof slots, 7, [&] {
        const int tid = (int)threadIdx.x;
        int *slot = reinterpret_cast<int *>(slots);
        for (int r = 0; r < ROUNDS; r++) {
            const int s = r & 1;
            if (tid < HALF) {
                if (r >= 2) group_barrier(3 + s, T); /* the slot's readers of round r - 2 are done */
                slot[s * HALF + tid] = 1000 * r + tid;
                group_arrive(1 + s, T);
            } else {
                group_barrier(1 + s, T);
                const int i = (tid - HALF + 1) % HALF;
                bad += slot[s * HALF + i] != 1000 * r + i;
                group_arrive(3 + s, T);
            }
        }
        if (tid < HALF) /* the last two rounds' DONE phases */
            for (int r = ROUNDS; r < ROUNDS + 2; r++) group_barrier(3 + (r & 1), T);
    });
    check(bad == 0, "named_barriers", "two slots through FULL and DONE barriers", bad);
}

int main(void) {
    check_named_barriers();
    const std::vector<int64_t> none;
    const vcase cases[] = {
        {"vk_n1_d1", 2, 2, 1, 1, 1, false, true, false, false, false, 1.0, 0, none},
        {"vk_n15_d5_e3", 2, 3, 15, 5, 3, false, true, false, false, false, 1.0, 0, none},
        {"vk_n16_d16", 1, 2, 16, 16, 16, false, false, false, false, false, 1.0, 0, none},
        {"vk_n17_d40_e24_bnhd", 2, 3, 17, 40, 24, false, true, false, true, false, 1.0, 0, none},
        {"vk_n77_d64_e70", 1, 2, 77, 64, 70, false, true, false, false, false, 10.0, 0, none},
        {"vkv_n77_d64_e70", 1, 2, 77, 64, 70, true, true, false, false, false, 10.0, 0, none},
        {"vkv_n33_d24_e40_bnhd_valuemajor", 2, 2, 33, 24, 40, true, true, false, true, true, 0.1, 0, none},
        {"vk_n130_d128_e32_strong", 1, 2, 130, 128, 32, false, true, false, false, false, 1.0, 7, none},
        {"vkv_n130_d32_e128_strong", 1, 2, 130, 32, 128, true, true, false, false, false, 1.0, 5, none},
        {"vk_n40_d256_e33", 1, 1, 40, 256, 33, false, true, false, false, false, 1.0, 0, none},
        {"vkv_n20_d1_e256", 1, 1, 20, 1, 256, true, true, false, false, false, 1.0, 0, none},
        {"vk_state_only_n50_d48_e48", 2, 2, 50, 48, 48, false, true, true, false, false, 1.0, 0, none},
        {"vkv_state_only_n50_d20_e36_bnhd", 2, 2, 50, 20, 36, true, false, true, true, false, 1.0, 0, none},
        {"vk_packed", 1, 3, 70, 32, 40, false, true, false, false, false, 1.0, 0, {0, 5, 5, 37, 70}},
        {"vkv_packed_bnhd", 1, 2, 70, 24, 24, true, true, false, true, false, 1.0, 0, {0, 16, 17, 70}},
        {"vk_packed_state_only", 1, 2, 70, 16, 16, false, true, true, false, true, 1.0, 3, {0, 1, 69, 70}},
        /* Long sequences, gates logsigmoid(randn / {0.1, 1, 10}) and log decays down to -1e6: the
         * decay gradients' telescoped sums stay accurate. */
        {"vk_n65536_gates_sd10", 1, 1, 65536, 8, 8, false, true, false, false, false, 10.0, 4099, none, 0.0},
        {"vkv_n65536_gates_sd1", 1, 1, 65536, 8, 8, true, true, false, false, false, 1.0, 0, none, 0.0},
        {"vk_n65536_gates_sd0.1", 1, 1, 65536, 8, 8, false, true, false, false, false, 0.1, 0, none, 0.0},
    };
    for (const vcase &c : cases) {
        run_case(c, K_FP32);
        run_backward(c, K_FP32);
    }
    /* The tensor-core kernel takes rows up to 128 (runs Q and K have E rows); the long cases
     * stay with the fp32 kernel (one coroutine switch per thread and collective is slow). */
    const vcase mma_cases[] = {
        {"vkv_n100_d128_e128_sharp", 1, 2, 100, 128, 128, true, true, false, false, false, 0.1, 0, none},
        {"vk_n40_d128_e72_gates", 1, 1, 40, 128, 72, false, true, false, true, false, 1.0, 0, none, 0.0},
    };
    for (int pass = 0; pass < 3; pass++) /* 64 columns, 128, 128 with warp roles */
    for (int kind = K_MMA_BF16; kind <= K_MMA_F16; kind++) {
        mma_et = pass == 0 ? 64 : 128;
        mma_ws = pass == 2;
        for (const vcase &c : cases)
            if (c.N <= 200 && c.D <= 128 && c.E <= 128) {
                run_case(c, (kernel_kind)kind);
                if (c.cu.empty() && c.N > 16) {
                    run_case(c, (kernel_kind)kind, c.N > 64 ? 48 : 16);
                    run_backward(c, (kernel_kind)kind, c.N > 64 ? 48 : 16);
                }
                run_backward(c, (kernel_kind)kind);
            }
        for (const vcase &c : mma_cases) {
            run_case(c, (kernel_kind)kind);
            run_case(c, (kernel_kind)kind, 32);
            run_backward(c, (kernel_kind)kind);
            run_backward(c, (kernel_kind)kind, 32);
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
