/*
 * test_serving_emulated.cpp - the CUDA serving kernels' block code, compiled
 * by the host C++ compiler and run block by block under tests/cuda_emu.h,
 * against the fp64 reference, on machines without a GPU:
 *   - decode (src/cuda/kernels/decode/decode_kernel.cuh): dense states and
 *     pools (f32 and bf16 storage, value-major strides), T = 1 to 16 tokens,
 *     token slots with accepted counts, padding, fresh sequences, and slot
 *     faults recorded for the host (the least faulty sequence, never a write
 *     outside the pool);
 *   - checkpoints (src/cuda/kernels/pool/checkpoint_kernel.cuh): batches and
 *     packed batches, every decay kind, initial states or none, padding
 *     sequences of a pool, f32 and bf16 rows, rows past the last untouched.
 */
#include "cuda_emu.h"

static inline void __threadfence_system() {}

#include "checkpoint_kernel.cuh"
#include "decode_kernel.cuh"
#include "reference.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>
#include <vector>

alignas(16) char la_decode_sm[LA_DECODE_SMEM(LA_CUDA_DECODE_MAX_T, 256)];
alignas(16) char la_ckpt_sm[LA_CKPT_SMEM(256)];

static uint64_t rng_state;
static uint64_t next_u64() {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return rng_state >> 11;
}
static double uniform() { return (next_u64() + 0.5) / 9007199254740992.0; }
static int below(int n) { return (int)(next_u64() % (uint64_t)n); }
static double normal() { return sqrt(-2.0 * log(uniform())) * cos(6.283185307179586 * uniform()); }
static double logsigmoid(double x) { return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)); }

static int passed, failed;
static void check(bool ok, const char *what, int c, const char *detail) {
    if (ok) {
        passed++;
        return;
    }
    failed++;
    printf("FAIL case %d: %s%s%s\n", c, what, detail[0] ? ": " : "", detail);
}

/* Guard rows around the pool: a slot outside [0, num_slots) written shows up there. */
#define GUARD 2

struct dcase {
    int io;      /* 0 f32, 1 bf16, 2 f16 */
    int pooled;  /* 0: dense states */
    int state16; /* bf16 pool */
    int vm;      /* value-major pool strides */
    int decay, S, H, D, E, T, slots;
    int tokens, accepted, padding, fresh, separate_writes;
};

template <typename T> static float rnd(float x) { return float(T(x)); }

/* Run one case: returns after counting its checks. */
template <typename T, typename SV>
static void run_case(int c, const dcase &k) {
    const int S = k.S, H = k.H, D = k.D, E = k.E, NT = k.T;
    std::vector<T> q((size_t)S * H * NT * D), kk(q.size()), v((size_t)S * H * NT * E), o(v.size());
    std::vector<float> ld((size_t)S * H * NT * D), ldv((size_t)S * H * NT * E), ldh(H);
    for (auto &x : q) x = T((float)(0.5 * normal()));
    for (auto &x : kk) x = T((float)(0.5 * normal()));
    for (auto &x : v) x = T((float)normal());
    for (auto &x : ld) x = (float)(logsigmoid(normal()) / 4);
    for (auto &x : ldv) x = (float)(logsigmoid(normal()) / 4);
    for (auto &x : ldh) x = (float)(-0.5 * uniform());
    for (auto &x : o) x = T(NAN);
    /* states: dense [S, H, D, E] f32 in and out, or a pool with guard rows */
    const int64_t per = (int64_t)H * D * E;
    const int rows = k.pooled ? k.slots + 2 * GUARD : S;
    std::vector<SV> pool((size_t)rows * per);
    std::vector<float> s0((size_t)S * per), sN((size_t)S * per, NAN);
    for (auto &x : pool) x = SV((float)(0.3 * normal()));
    for (auto &x : s0) x = (float)(0.3 * normal());
    const std::vector<SV> pool0 = pool;
    /* slots: read s -> perm[s], writes perm[S + s] or the read slot, tokens from 2S on */
    std::vector<int64_t> perm(k.slots), rd(S), wr(S), tok((size_t)S * NT, -1), acc(S, 0);
    std::vector<uint8_t> init(S, 1);
    for (int i = 0; i < k.slots; i++) perm[i] = i;
    for (int i = k.slots - 1; i > 0; i--) std::swap(perm[i], perm[below(i + 1)]);
    int next = 2 * S;
    for (int s = 0; s < S; s++) {
        rd[s] = k.padding && below(4) == 0 ? -1 : perm[s];
        wr[s] = below(5) == 0 ? -1 : perm[S + s];
        if (k.fresh) init[s] = below(3) != 0;
        for (int t = 0; t < NT && k.tokens; t++)
            if (below(4) && next < k.slots) tok[(size_t)s * NT + t] = perm[next++];
        if (k.accepted) acc[s] = below(NT + 1);
        if (k.accepted && acc[s] > 0 && tok[(size_t)s * NT + acc[s] - 1] < 0) acc[s] = 0;
    }
    la_decode_params_t p;
    memset(&p, 0, sizeof p);
    const int64_t st = D, sb = (int64_t)H * NT * D; /* [S, H, T, D] contiguous */
    p.q = {q.data(), sb, (int64_t)NT * D, st, 1};
    p.k = {kk.data(), sb, (int64_t)NT * D, st, 1};
    p.v = {v.data(), (int64_t)H * NT * E, (int64_t)NT * E, E, 1};
    p.o = {o.data(), (int64_t)H * NT * E, (int64_t)NT * E, E, 1};
    p.D = D, p.E = E, p.H = H, p.T = NT, p.decay = k.decay, p.scale = 0.5f;
    if (k.decay == 1) p.ld = ldh.data(), p.ld_sh = 1;
    if (k.decay == 2) p.ld = ld.data(), p.ld_sb = (int64_t)H * NT, p.ld_sh = NT, p.ld_st = 1;
    if (k.decay >= 3) p.ld = ld.data(), p.ld_sb = sb, p.ld_sh = (int64_t)NT * D, p.ld_st = D, p.ld_sc = 1;
    if (k.decay == 4)
        p.ldv = ldv.data(), p.ldv_sb = (int64_t)H * NT * E, p.ldv_sh = (int64_t)NT * E, p.ldv_st = E, p.ldv_sc = 1;
    la_cuda_error_record_t rec;
    memset(&rec, 0, sizeof rec);
    if (k.pooled) {
        p.pool = pool.data() + GUARD * per;
        p.pool_ss = per, p.pool_sh = (int64_t)D * E;
        p.pool_sd = k.vm ? 1 : E, p.pool_se = k.vm ? D : 1;
        p.slots.read = rd.data();
        p.slots.write = k.separate_writes && !k.tokens ? wr.data() : nullptr;
        p.slots.token = k.tokens ? tok.data() : nullptr;
        p.slots.accepted = k.tokens && k.accepted ? acc.data() : nullptr;
        p.slots.has_init = k.fresh ? init.data() : nullptr;
        p.slots.idx64 = 1, p.slots.num_slots = k.slots, p.slots.S = S, p.slots.T = NT;
        p.slot_rec = &rec;
    } else {
        p.s0 = {s0.data(), per, (int64_t)D * E, E, 1};
        p.sN = {sN.data(), per, (int64_t)D * E, E, 1};
    }
    const int threads = E <= 64 ? 64 : (E <= 128 ? 128 : 256);
    const int TM = NT <= 1 ? 1 : NT <= 4 ? 4 : LA_CUDA_DECODE_MAX_T;
    auto body = [&] {
        if (TM == 1) la_decode_block<T, SV, 1>(p, blockIdx.x, threadIdx.x, threads, la_decode_sm);
        else if (TM == 4) la_decode_block<T, SV, 4>(p, blockIdx.x, threadIdx.x, threads, la_decode_sm);
        else la_decode_block<T, SV, LA_CUDA_DECODE_MAX_T>(p, blockIdx.x, threadIdx.x, threads, la_decode_sm);
    };
    emu_launch({(unsigned)(S * H), 1, 1}, threads, la_decode_sm, LA_DECODE_SMEM(TM, D), (uint64_t)c + 1, body);
    check(rec.status == 0, "no slot fault recorded for valid slots", c, "");
    /* The reference per (sequence, head); expected pool after. */
    auto pool_at = [&](const std::vector<SV> &P, int64_t slot, int h, int d, int e) {
        return (double)float(P[(size_t)((slot + GUARD) * per + (int64_t)h * D * E + (k.vm ? (int64_t)e * D + d : (int64_t)d * E + e))]);
    };
    std::vector<double> want((size_t)rows * per), got_v;
    std::vector<uint8_t> written((size_t)rows, 0);
    for (size_t i = 0; i < want.size(); i++) want[i] = NAN;
    double oerr = 0, oref = 0, serr = 0, sref = 0;
    bool pad_zero = true;
    std::vector<double> rq((size_t)NT * D), rk(rq.size()), rv((size_t)NT * E), rgk(rq.size()), rgv(rv.size()), rs0((size_t)D * E),
        ro(rv.size()), rsN((size_t)D * E);
    for (int s = 0; s < S; s++)
        for (int h = 0; h < H; h++) {
            const bool pad = k.pooled && rd[s] < 0;
            for (int t = 0; t < NT; t++) {
                for (int d = 0; d < D; d++) {
                    const size_t i = (((size_t)s * H + h) * NT + t) * D + d;
                    rq[(size_t)t * D + d] = float(q[i]);
                    rk[(size_t)t * D + d] = float(kk[i]);
                    rgk[(size_t)t * D + d] = k.decay == 1 ? ldh[h] : k.decay == 2 ? ld[((size_t)s * H + h) * NT + t] : k.decay >= 3 ? ld[i] : 0.0;
                }
                for (int e = 0; e < E; e++) {
                    const size_t i = (((size_t)s * H + h) * NT + t) * E + e;
                    rv[(size_t)t * E + e] = float(v[i]);
                    rgv[(size_t)t * E + e] = k.decay == 4 ? ldv[i] : 0.0;
                }
            }
            if (pad) {
                for (int t = 0; t < NT; t++)
                    for (int e = 0; e < E; e++) pad_zero &= float(o[(((size_t)s * H + h) * NT + t) * E + e]) == 0.0f;
                continue;
            }
            bool zero = false;
            int64_t from = 0;
            if (k.pooled) {
                zero = k.fresh && !init[s];
                from = k.tokens && k.accepted && acc[s] > 0 ? tok[(size_t)s * NT + acc[s] - 1] : rd[s];
            }
            for (int d = 0; d < D; d++)
                for (int e = 0; e < E; e++)
                    rs0[(size_t)d * E + e] = k.pooled ? (zero ? 0.0 : pool_at(pool0, from, h, d, e)) : s0[(size_t)(s * H + h) * D * E + d * E + e];
            auto run = [&](int n) {
                ref_forward_recurrent(n, D, E, 0.5, rq.data(), rk.data(), rv.data(), k.decay ? rgk.data() : nullptr,
                                      k.decay == 4 ? rgv.data() : nullptr, rs0.data(), ro.data(), rsN.data());
            };
            auto expect_slot = [&](int64_t slot) {
                written[(size_t)(slot + GUARD)] = 1;
                for (int d = 0; d < D; d++)
                    for (int e = 0; e < E; e++) want[(size_t)((slot + GUARD) * per + (int64_t)h * D * E + d * E + e)] = rsN[(size_t)d * E + e];
            };
            for (int t = 0; k.pooled && k.tokens && t < NT; t++)
                if (tok[(size_t)s * NT + t] >= 0) {
                    run(t + 1);
                    expect_slot(tok[(size_t)s * NT + t]);
                }
            run(NT);
            for (int t = 0; t < NT; t++)
                for (int e = 0; e < E; e++) {
                    const double x = float(o[(((size_t)s * H + h) * NT + t) * E + e]), r = ro[(size_t)t * E + e];
                    oerr += (x - r) * (x - r);
                    oref += r * r;
                }
            if (!k.pooled) {
                for (int i = 0; i < D * E; i++) {
                    const double x = sN[(size_t)(s * H + h) * D * E + i];
                    serr += (x - rsN[i]) * (x - rsN[i]);
                    sref += rsN[i] * rsN[i];
                }
            } else if (!k.tokens) {
                const int64_t to = k.separate_writes ? wr[s] : rd[s];
                if (to >= 0) expect_slot(to);
            }
        }
    char msg[160];
    const double orel = sqrt(oerr / (oref + 1e-30));
    const double otol = k.io == 1 ? 1e-2 : k.io == 2 ? 1e-3 : 2e-6;
    snprintf(msg, sizeof msg, "rel L2 %.3g > %.3g", orel, otol);
    check(orel <= otol, "o against the fp64 reference", c, msg);
    check(pad_zero, "padding sequences' o exactly zero", c, "");
    if (!k.pooled) {
        const double srel = sqrt(serr / (sref + 1e-30));
        snprintf(msg, sizeof msg, "rel L2 %.3g", srel);
        check(srel <= 2e-6, "dense final state against the reference", c, msg);
        return;
    }
    /* Every pool row: written ones near the reference (bf16: one rounding), the rest bit-unchanged. */
    double perr = 0, pref = 0;
    bool unchanged = true;
    for (int r = 0; r < rows; r++)
        for (int h = 0; h < H; h++)
            for (int d = 0; d < D; d++)
                for (int e = 0; e < E; e++) {
                    const int64_t slot = r - GUARD;
                    const size_t i = (size_t)(r * per + (int64_t)h * D * E + (k.vm ? (int64_t)e * D + d : (int64_t)d * E + e));
                    if (written[(size_t)r]) {
                        const double x = float(pool[i]), w = want[(size_t)(r * per + (int64_t)h * D * E + d * E + e)];
                        perr += (x - w) * (x - w);
                        pref += w * w;
                    } else {
                        unchanged &= memcmp(&pool[i], &pool0[i], sizeof(SV)) == 0;
                    }
                    (void)slot;
                }
    const double prel = sqrt(perr / (pref + 1e-30));
    snprintf(msg, sizeof msg, "rel L2 %.3g", prel);
    check(prel <= (k.state16 ? 4e-3 : 2e-6), "written slots against the reference", c, msg);
    check(unchanged, "slots not written (and the guard rows) bit-unchanged", c, "");
}

/* Faulty slots: the record names the least faulty sequence and the fault,
 * and nothing outside the pool is touched. */
static void fault_case(int c, int kind, bool via_write = false) {
    const int S = 4, H = 2, D = 16, E = 32, NT = 2, slots = 16;
    const int64_t per = (int64_t)H * D * E;
    std::vector<float> q((size_t)S * H * NT * D, 0.25f), kk(q.size(), 0.5f), v((size_t)S * H * NT * E, 1.0f), o(v.size());
    std::vector<float> pool((size_t)(slots + 2 * GUARD) * per, 7.0f);
    const std::vector<float> pool0 = pool;
    std::vector<int64_t> rd = {0, 1, 2, 3}, tok = {4, 5, 6, 7, 8, 9, 10, 11}, acc = {0, 0, 0, 0}, wr = {4, 16, 6, 7};
    int want_seq = -1, want_kind = 0;
    switch (kind) {
    case LA_SLOT_READ_RANGE: rd[2] = slots; want_seq = 2; want_kind = kind; break;
    case LA_SLOT_WRITE_RANGE: tok[5] = 1 << 20; tok[7] = -5; want_seq = 2; want_kind = kind; break;
    case LA_SLOT_ACCEPTED: acc[3] = 3; want_seq = 3; want_kind = kind; break;
    case LA_SLOT_TWICE: tok[3] = 8; want_seq = 1; want_kind = kind; break;        /* sequences 1 and 2 */
    case LA_SLOT_READ_SHARED: tok[6] = 1; want_seq = 1; want_kind = kind; break;  /* 3 writes what 1 reads */
    }
    la_decode_params_t p;
    memset(&p, 0, sizeof p);
    p.q = {q.data(), (int64_t)H * NT * D, (int64_t)NT * D, D, 1};
    p.k = {kk.data(), (int64_t)H * NT * D, (int64_t)NT * D, D, 1};
    p.v = {v.data(), (int64_t)H * NT * E, (int64_t)NT * E, E, 1};
    p.o = {o.data(), (int64_t)H * NT * E, (int64_t)NT * E, E, 1};
    p.D = D, p.E = E, p.H = H, p.T = NT, p.decay = 0, p.scale = 1.0f;
    p.pool = pool.data() + GUARD * per;
    p.pool_ss = per, p.pool_sh = (int64_t)D * E, p.pool_sd = E, p.pool_se = 1;
    p.slots.read = rd.data(), p.slots.token = tok.data(), p.slots.accepted = acc.data();
    if (via_write) { /* the final state's slot = num_slots: the first guard row above the pool */
        p.slots.token = p.slots.accepted = nullptr;
        p.slots.write = wr.data();
        want_seq = 1;
        want_kind = LA_SLOT_WRITE_RANGE;
    }
    p.slots.idx64 = 1, p.slots.num_slots = slots, p.slots.S = S, p.slots.T = NT;
    la_cuda_error_record_t rec;
    memset(&rec, 0, sizeof rec);
    p.slot_rec = &rec;
    emu_launch({(unsigned)(S * H), 1, 1}, 64, la_decode_sm, LA_DECODE_SMEM(4, D), 99 + (uint64_t)kind,
               [&] { la_decode_block<float, float, 4>(p, blockIdx.x, threadIdx.x, 64, la_decode_sm); });
    char msg[160];
    snprintf(msg, sizeof msg, "status %d, sequence %lld, fault %lld (want sequence %d, fault %d)", rec.status,
             (long long)rec.index, (long long)rec.dims[0], want_seq, want_kind);
    check(rec.status == LA_STATUS_BAD_SLOT && rec.index == want_seq && rec.dims[0] == want_kind && rec.tensor == LA_T_POOL,
          "the record names the least faulty sequence", c, msg);
    bool guards = true;
    for (int64_t i = 0; i < GUARD * per; i++) guards &= pool[(size_t)i] == 7.0f && pool[pool.size() - 1 - (size_t)i] == 7.0f;
    check(guards, "nothing written outside the pool", c, "");
    (void)pool0;
}

/* Checkpoints of random sequences against the fp64 recurrence over each prefix. */
template <typename T, typename CV>
static void ckpt_case(int c) {
    const int dims[4] = {16, 40, 64, 128};
    const int S = 1 + below(3), H = 1 + below(2), D = dims[below(4)], E = dims[below(3)], decay = below(5);
    const int64_t every = below(2) ? 64 : 32; /* the kernel takes any interval; the API multiples of 64 */
    const bool packed = below(2), with_s0 = below(2), pooled = below(2);
    std::vector<int64_t> cu(S + 1, 0);
    int64_t N = 1 + below(200);
    if (packed) {
        for (int s = 0; s < S; s++) cu[s + 1] = cu[s] + below(200);
        N = cu[S];
    }
    const int B = packed ? 1 : S;
    auto len = [&](int s) { return packed ? cu[s + 1] - cu[s] : N; };
    auto start = [&](int s) { return packed ? cu[s] : 0; };
    std::vector<T> k((size_t)B * H * N * D), v((size_t)B * H * N * E);
    std::vector<float> ld((size_t)B * H * N * D), ldv((size_t)B * H * N * E), ldh(H), s0((size_t)S * H * D * E);
    for (auto &x : k) x = T((float)(0.5 * normal()));
    for (auto &x : v) x = T((float)normal());
    for (auto &x : ld) x = (float)(logsigmoid(normal()) / 4);
    for (auto &x : ldv) x = (float)(logsigmoid(normal()) / 4);
    for (auto &x : ldh) x = (float)(-0.5 * uniform());
    for (auto &x : s0) x = (float)(0.3 * normal());
    std::vector<int64_t> rd(S);
    for (int s = 0; s < S; s++) rd[s] = pooled && below(3) == 0 ? -1 : s;
    const int64_t rows = (int64_t)B * (N / every);
    std::vector<CV> out((size_t)(rows + 1) * H * D * E, CV(NAN));
    la_ckpt_params_t p;
    memset(&p, 0, sizeof p);
    p.k = {k.data(), (int64_t)H * N * D, (int64_t)N * D, D, 1};
    p.v = {v.data(), (int64_t)H * N * E, (int64_t)N * E, E, 1};
    p.decay = decay;
    if (decay == 1) p.ld = ldh.data(), p.ld_sh = 1;
    if (decay == 2) p.ld = ld.data(), p.ld_sb = (int64_t)H * N, p.ld_sh = N, p.ld_st = 1;
    if (decay >= 3) p.ld = ld.data(), p.ld_sb = (int64_t)H * N * D, p.ld_sh = (int64_t)N * D, p.ld_st = D, p.ld_sc = 1;
    if (decay == 4)
        p.ldv = ldv.data(), p.ldv_sb = (int64_t)H * N * E, p.ldv_sh = (int64_t)N * E, p.ldv_st = E, p.ldv_sc = 1;
    if (with_s0) p.s0 = s0.data(), p.s0_ss = (int64_t)H * D * E, p.s0_sh = (int64_t)D * E, p.s0_sd = E, p.s0_se = 1;
    p.ckpt = out.data();
    p.c_ss = (int64_t)H * D * E, p.c_sh = (int64_t)D * E, p.c_sd = 1, p.c_se = D; /* value-major rows */
    p.cu = packed ? cu.data() : nullptr;
    p.N = N, p.interval = every, p.S = S, p.H = H, p.D = D, p.E = E;
    if (pooled) p.slots.read = rd.data(), p.slots.idx64 = 1, p.slots.num_slots = S, p.slots.S = S, p.slots.T = 1;
    const int threads = E <= 32 ? 32 : (E + 31) / 32 * 32;
    emu_launch({(unsigned)(S * H), (unsigned)((D + LA_CKPT_ROWS - 1) / LA_CKPT_ROWS), 1}, threads, la_ckpt_sm,
               LA_CKPT_SMEM(threads), 500 + (uint64_t)c,
               [&] { la_ckpt_block<T, CV>(p, blockIdx.x, blockIdx.y, threadIdx.x, threads, la_ckpt_sm); });
    double err = 0, ref = 0;
    bool pads = true, untouched = true;
    int64_t row = 0;
    std::vector<double> rk((size_t)N * D), rv((size_t)N * E), rgk((size_t)N * D), rgv((size_t)N * E), rs0((size_t)D * E),
        rsN((size_t)D * E), ro((size_t)N * E), rq((size_t)N * D, 0.0);
    for (int s = 0; s < S; s++) {
        const int64_t n = len(s), b = packed ? 0 : s;
        for (int64_t m = 1; m <= n / every; m++, row++)
            for (int h = 0; h < H; h++) {
                for (int64_t t = 0; t < m * every; t++) {
                    const int64_t tok = start(s) + t;
                    for (int d = 0; d < D; d++) {
                        const size_t i = (((size_t)b * H + h) * N + tok) * D + d;
                        rk[t * D + d] = float(k[i]);
                        rgk[t * D + d] = decay == 1 ? ldh[h] : decay == 2 ? ld[((size_t)b * H + h) * N + tok] : decay >= 3 ? ld[i] : 0.0;
                    }
                    for (int e = 0; e < E; e++) {
                        const size_t i = (((size_t)b * H + h) * N + tok) * E + e;
                        rv[t * E + e] = float(v[i]);
                        rgv[t * E + e] = decay == 4 ? ldv[i] : 0.0;
                    }
                }
                for (int i = 0; i < D * E; i++) rs0[i] = s0[((size_t)s * H + h) * D * E + i];
                ref_forward_recurrent(m * every, D, E, 1.0, rq.data(), rk.data(), rv.data(), decay ? rgk.data() : nullptr,
                                      decay == 4 ? rgv.data() : nullptr, with_s0 ? rs0.data() : nullptr, ro.data(), rsN.data());
                for (int d = 0; d < D; d++)
                    for (int e = 0; e < E; e++) {
                        const double x = float(out[(size_t)(row * H * D * E + (int64_t)h * D * E + (int64_t)e * D + d)]);
                        if (rd[s] < 0) {
                            pads &= x == 0.0;
                            continue;
                        }
                        err += (x - rsN[(size_t)d * E + e]) * (x - rsN[(size_t)d * E + e]);
                        ref += rsN[(size_t)d * E + e] * rsN[(size_t)d * E + e];
                    }
            }
    }
    for (size_t i = (size_t)row * H * D * E; i < out.size(); i++) untouched &= std::isnan(float(out[i]));
    char msg[160];
    const double rel = ref > 0 ? sqrt(err / ref) : 0.0;
    const double tol = std::is_same<CV, float>::value ? 1e-5 : 4e-3;
    snprintf(msg, sizeof msg, "rel L2 %.3g > %.3g (%lld rows)", rel, tol, (long long)row);
    check(rel <= tol, "checkpoints against the fp64 reference", c, msg);
    check(pads, "a padding sequence's checkpoint rows are zeros", c, "");
    check(untouched, "rows past the last checkpoint untouched", c, "");
}

int main() {
    rng_state = 0x6465636f64650001ull;
    const int dims[5] = {16, 40, 64, 128, 256};
    int c = 0;
    for (; c < 90; c++) {
        dcase k;
        memset(&k, 0, sizeof k);
        k.io = below(3);
        k.pooled = c % 5 != 0;
        k.state16 = k.pooled && below(3) == 0;
        k.vm = below(2);
        k.decay = below(5);
        k.S = 1 + below(4);
        k.H = 1 + below(2);
        k.D = dims[below(c % 9 == 0 ? 5 : 4)];
        k.E = dims[below(c % 7 == 0 ? 5 : 4)];
        const int ts[6] = {1, 1, 2, 4, 7, 16};
        k.T = ts[below(6)];
        k.tokens = k.pooled && k.T > 1 && below(2);
        k.accepted = k.tokens && below(2);
        k.padding = below(2);
        k.fresh = below(2);
        k.separate_writes = below(2);
        k.slots = 2 * k.S + k.S * k.T + below(3);
        if (k.io == 1) {
            if (k.state16) run_case<emu_bf16, emu_bf16>(c, k);
            else run_case<emu_bf16, float>(c, k);
        } else if (k.io == 2) {
            if (k.state16) run_case<emu_f16, emu_bf16>(c, k);
            else run_case<emu_f16, float>(c, k);
        } else {
            if (k.state16) run_case<float, emu_bf16>(c, k);
            else run_case<float, float>(c, k);
        }
    }
    for (int kind = 1; kind <= 5; kind++) fault_case(c++, kind);
    fault_case(c++, 0, true);
    for (int i = 0; i < 40; i++, c++) {
        if (i % 4 == 0) ckpt_case<float, emu_bf16>(c);
        else if (i % 4 == 1) ckpt_case<emu_bf16, float>(c);
        else if (i % 4 == 2) ckpt_case<emu_f16, float>(c);
        else ckpt_case<float, float>(c);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
