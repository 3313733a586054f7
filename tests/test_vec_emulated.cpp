/*
 * test_vec_emulated.cpp - the CUDA vector-decay forward's block code
 * (src/cuda/kernels/vector/vec_fwd_kernel.cuh, la_vec_fwd_block) compiled by
 * the host C++ compiler and run one block at a time by one thread, against
 * the fp64 reference, forward and backward (the backward's runs of the same
 * block code, decay gradients included, listed by vec_bwd.h as the GPU
 * runner lists them).
 *
 * Every step of the block is a loop strided by the thread count between
 * barriers, so one thread with the barriers left out computes what the GPU
 * block computes.  This checks the arithmetic and the indexing (decay
 * factors, chunk edges, value slices, strides, packed offsets, initial and
 * final states) on any machine; what only a GPU shows (barriers, shared
 * memory limits, launches) the GPU case table checks.  f32 inputs: the
 * kernel widens every dtype to f32 on load.
 */
#define __device__
#define __forceinline__ inline

#include "vec_fwd_kernel.cuh"
#include "vec_bwd.h"

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
static la_tok_t tok_view(const vcase &c, const float *p, int64_t X) {
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
    inputs(const vcase &c) {
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

/* Every block of one run of the recurrence, one thread each. */
static void run_blocks(const la_vec_params_t &p, int64_t S, int H) {
    std::vector<float> sm(la_vec_fwd_smem(p.D) / sizeof(float));
    const int slices = (p.E + LA_VEC_EV - 1) / LA_VEC_EV;
    for (int64_t s = 0; s < S; s++)
        for (int h = 0; h < H; h++)
            for (int z = 0; z < slices; z++) {
                for (auto &x : sm) x = NAN; /* what the block reads it must have written */
                if (p.gv) la_vec_fwd_block<float, true>(p, (int)s, h, z, sm.data(), 0, 1);
                else la_vec_fwd_block<float, false>(p, (int)s, h, z, sm.data(), 0, 1);
            }
}

static void run_case(const vcase &c) {
    const inputs in(c);
    const int64_t B = c.B, H = c.H, N = c.N, D = c.D, E = c.E, S = in.S;
    const std::vector<float> &q = in.q, &k = in.k, &v = in.v, &gk = in.gk, &gv = in.gv, &s0 = in.s0;
    std::vector<float> o(B * H * N * E, NAN), sN(s0.size(), NAN);
    const float scale = 0.75f;

    la_vec_params_t p;
    memset(&p, 0, sizeof p);
    p.k = tok_view(c, k.data(), D);
    p.v = tok_view(c, v.data(), E);
    p.kscale = 1.0f;
    if (!c.state_only) {
        p.q = tok_view(c, q.data(), D);
        p.o = tok_view(c, o.data(), E);
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

    run_blocks(p, S, (int)H);

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
    const double tol = 2e-5;
    if (!c.state_only) {
        const double eo = rel_l2(got_o, ref_o);
        check(eo < tol, c.name, "o", eo);
    }
    const double es = rel_l2(got_s, ref_s);
    check(es < tol, c.name, "final state", es);
}

static void strides_of(const la_tok_t &t, int64_t s[4]) {
    s[0] = t.sb;
    s[1] = t.sh;
    s[2] = t.st;
    s[3] = t.sc;
}

/* The backward (or the state-only backward, for state-only cases): every run
 * vec_bwd.h lists, against ref_backward. */
static void run_backward(const vcase &c) {
    const inputs in(c);
    const int64_t H = c.H, N = c.N, D = c.D, E = c.E, S = in.S;
    const float scale = 0.75f;
    const bool so = c.state_only, states = c.s0; /* s0 and dS_final both, or neither */
    std::vector<float> dq(in.q.size(), NAN), dk(in.k.size(), NAN), dgk(in.gk.size(), NAN), dv(in.v.size(), NAN),
        dgv(in.gv.size(), NAN), ds0(in.s0.size(), NAN), sN_ws(in.s0.size(), NAN);
    la_vec_bwd_args_t a;
    memset(&a, 0, sizeof a);
    a.state_only = so;
    a.k = tok_view(c, in.k.data(), D);
    a.v = tok_view(c, in.v.data(), E);
    a.dk = tok_view(c, dk.data(), D);
    a.dv = tok_view(c, dv.data(), E);
    if (!so) {
        a.q = tok_view(c, in.q.data(), D);
        a.d_o = tok_view(c, in.d_o.data(), E);
        a.dq = tok_view(c, dq.data(), D);
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
    for (int i = 0; i < nr; i++) run_blocks(runs[i], S, (int)H);

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
    const double tols[6] = {2e-5, 2e-5, 2e-5, 1e-4, 1e-4, 2e-5};
    char what[64];
    for (int i = 0; i < 6; i++) {
        if ((i == 0 && so) || (i == 4 && !c.kv)) continue;
        const double err = rel_l2(got[i], ref[i]);
        snprintf(what, sizeof what, "%sbackward: %s", so ? "state-only " : "", names[i]);
        check(err < tols[i], c.name, what, err);
    }
}

int main(void) {
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
        run_case(c);
        run_backward(c);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
