/*
 * test_backend.c - a backend against the fp64 reference, and against itself.
 *
 *   test_backend [--backend cpu|cuda] [--filter SUBSTRING] [--list] [--sanitize]
 *   LA_TEST_LEVEL=quick (default) | full      LA_TEST_SEED=<n>   LA_TEST_VERBOSE=1
 *   LA_TEST_FILTER=SUBSTRING (as --filter)
 *   --sanitize: only the small cases (for slow memory/race checkers)
 *
 * CUDA: tensors must live in device memory.  The test loads the CUDA DRIVER
 * library (libcuda.so.1, present wherever a GPU is) at run time and
 * allocates/copies through it in the device's primary context, which the
 * CUDA runtime inside the library shares; so no CUDA toolkit is needed to
 * build the test.
 *
 * One case table serves every backend.  It has two parts:
 *   - TABLE: hand-written, named cases aimed at one risk each (chunk
 *     boundaries, decay extremes, head dims 1 and 256, D != E, layouts with
 *     gaps, packed batches, equivalences between entry points, long N);
 *   - a SWEEP of the cross product decay kind x dtype x layout x {initial
 *     state, final state, final-state gradient, learnable decay} x N x (D, E)
 *     x B x H, sampled deterministically: every axis walks through shuffled
 *     rounds of all its values, so each value of each axis appears about
 *     equally often (quick: SWEEP_QUICK cases, full: SWEEP_FULL), and a cost
 *     cap per tier shrinks B, H and then D/E of the most expensive combos.
 * Tier filtering is by the T_FULL tag; no case is ever commented out.
 *
 * For every case: the forward (o, final state) and backward (dq, dk, dv, the
 * decay gradient reduced per kind, d_initial_state) against the reference
 * run per (sequence, head) on the SAME rounded inputs the library sees;
 * outputs poisoned with NaN before every call; guard bytes and layout gaps
 * checked after every call; inputs checked unchanged; forward and backward
 * run twice and required bit-identical.  Tags add equivalence checks:
 * decode steps, state-only passes, split sequences (forward and backward,
 * state and state-gradient carried), SCALAR_HEAD vs SCALAR_TOKEN broadcast,
 * packed vs separate calls, caller workspace, one thread.
 *
 * Tolerances (one table, TOL below) were set from measured errors with
 * margin; see the comment there.  Backends may decline a case with a 2xx
 * status from la_supports: it is counted as skipped, never as passed.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lightning_attn.h"
#include "reference.h"
#include "testutil.h"
#include "tolerances.h"

/* ---- the case table ---------------------------------------------------------------- */

enum {
    /* state flags */
    T_INIT = 1u << 0,   /* initial_state given */
    T_FINAL = 1u << 1,  /* final_state wanted */
    T_DFINAL = 1u << 2, /* d_final_state given to the backward */
    T_LEARN = 1u << 3,  /* d_ld (and d_ldv) wanted: learnable decay */
    T_DINIT = 1u << 4,  /* d_initial_state wanted */
    /* extra checks */
    T_DECODE = 1u << 8,     /* N la_decode steps, state in place == forward */
    T_STATEF = 1u << 9,     /* la_state_forward == forward's final state */
    T_STATEB = 1u << 10,    /* la_state_backward == backward with d_o = 0 */
    T_SPLIT = 1u << 11,     /* [0,m) then [m,N) with state (and state gradient) carried */
    T_HEADTOK = 1u << 12,   /* SCALAR_HEAD == SCALAR_TOKEN with the value broadcast */
    T_WS = 1u << 13,        /* caller workspace of exactly la_workspace_size bytes */
    T_THREADS1 = 1u << 14,  /* one thread (CPU) */
    T_SELFCHECK = 1u << 15, /* perturb the library's real output: the check must fail */
    T_ALLFIELDS = 1u << 16, /* pass every tensor field to every call (unused ones ignored) */
    T_FULL = 1u << 20       /* only in the full tier */
};
#define T_STATES (T_INIT | T_FINAL | T_DFINAL | T_DINIT)

/* How log decays are drawn (all <= 0). */
enum {
    M_GATE = 0, /* token/vector: logsigmoid(randn); head: -exp(U * ln 1e-3), in [-1, -1e-3] */
    M_SLOW,     /* token/vector: logsigmoid(randn)/16 (GLA-like); head: in [-1e-2, -1e-5] */
    M_SHARP,    /* token/vector: logsigmoid(randn/0.1); head: in [-20, -1] */
    M_FLAT,     /* token/vector: logsigmoid(randn/10); head: logsigmoid(randn/10) */
    M_ZERO,     /* ld = 0 everywhere (no decay through a decay path) */
    M_TINY,     /* ld = -1e-6 everywhere */
    M_HUGE,     /* ld = -20 everywhere (the state forgets almost completely) */
    M_MIXED,    /* cycles 0, -1e-6, -20, logsigmoid(randn) over elements */
    M_ALIBI,    /* every token: minus head h's ALiBi slope 2^(-8 (h + 1) / H) (H a power of two) */
    M_COUNT
};
static const char *mode_name[M_COUNT] = {"gate", "slow", "sharp", "flat", "ld0", "ld-1e-6", "ld-20", "mixed", "alibi"};

typedef struct bcase {
    char name[112];
    unsigned tags;
    la_decay_t decay;
    la_dtype_t dtype;
    tu_layout_t layout;
    int B, H;
    int64_t N;
    int D, E;
    int mode;
    float scale; /* 0 means 1 */
    int nseq;    /* > 0: packed batch of these lengths (B must be 1, N their sum) */
    int64_t lens[8];
} bcase_t;

#define ALLST (T_INIT | T_FINAL | T_DFINAL | T_LEARN | T_DINIT)
#define NONE_ LA_DECAY_NONE
#define HEAD_ LA_DECAY_SCALAR_HEAD
#define TOK_ LA_DECAY_SCALAR_TOKEN
#define VK_ LA_DECAY_VECTOR_K
#define VKV_ LA_DECAY_VECTOR_KV
#define F32_ LA_DTYPE_F32
#define F16_ LA_DTYPE_F16
#define BF16_ LA_DTYPE_BF16

/* One case a line: clang-format would put every field on a line of its own. */
/* clang-format off */
static const bcase_t TABLE[] = {
    /* The comparison must be able to fail on a real library output. */
    {.name = "selfcheck_f32", .tags = ALLST | T_SELFCHECK, .decay = TOK_, .dtype = F32_,
     .layout = TU_BHND, .B = 2, .H = 2, .N = 100, .D = 16, .E = 24, .mode = M_GATE},
    {.name = "selfcheck_bf16", .tags = ALLST | T_SELFCHECK, .decay = HEAD_, .dtype = BF16_,
     .layout = TU_BNHD, .B = 1, .H = 3, .N = 130, .D = 32, .E = 16, .mode = M_GATE},

    /* Chunk boundaries: 1 token, C-1, C, C+1, two chunks and a ragged tail,
     * for every kind (the chunk size is presumably 64; the sweep also walks N). */
    {.name = "n1_none", .tags = ALLST, .decay = NONE_, .dtype = F32_, .layout = TU_BHND, .B = 2, .H = 2, .N = 1, .D = 16, .E = 16},
    {.name = "n2_head", .tags = ALLST, .decay = HEAD_, .dtype = F32_, .layout = TU_BHND, .B = 2, .H = 2, .N = 2, .D = 16, .E = 16},
    {.name = "n63_tok", .tags = ALLST, .decay = TOK_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 63, .D = 16, .E = 48},
    {.name = "n64_vk", .tags = ALLST, .decay = VK_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 64, .D = 48, .E = 16},
    {.name = "n65_vkv", .tags = ALLST, .decay = VKV_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 65, .D = 16, .E = 16},
    {.name = "n129_head_bnhd", .tags = ALLST, .decay = HEAD_, .dtype = F32_, .layout = TU_BNHD, .B = 2, .H = 3, .N = 129, .D = 64, .E = 64},
    {.name = "n200_tok_ragged", .tags = ALLST, .decay = TOK_, .dtype = BF16_, .layout = TU_BHND, .B = 1, .H = 2, .N = 200, .D = 64, .E = 64},

    /* Head dims: 1 (degenerate), 256 (the maximum), non-powers of two, D != E both ways. */
    {.name = "dim1x1_tok", .tags = ALLST, .decay = TOK_, .dtype = F32_, .layout = TU_BHND, .B = 2, .H = 2, .N = 70, .D = 1, .E = 1},
    {.name = "dim1x256_vkv", .tags = ALLST, .decay = VKV_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 1, .N = 70, .D = 1, .E = 256},
    {.name = "dim256x1_vk", .tags = ALLST, .decay = VK_, .dtype = BF16_, .layout = TU_BNHD, .B = 1, .H = 1, .N = 70, .D = 256, .E = 1},
    {.name = "dim256x256_head", .tags = ALLST, .decay = HEAD_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 130, .D = 256, .E = 256},
    /* The decay gradient of f32 inputs at D = E = 256 (on the GPU: 16 head-dim tiles of 64) under ALiBi decay:
     * one number per head summing ~45k pair terms of both signs, so its error relative to itself is that of the
     * terms times their cancellation (docs/CUDA-BACKWARD.md, "f32 inputs: split operands"). */
    {.name = "dld_alibi_f32_d256_h1", .tags = T_LEARN, .decay = HEAD_, .dtype = F32_, .layout = TU_BNHD, .B = 1, .H = 1, .N = 300, .D = 256, .E = 256, .mode = M_ALIBI},
    {.name = "dld_alibi_f32_d256_h4", .tags = T_LEARN, .decay = HEAD_, .dtype = F32_, .layout = TU_BNHD, .B = 1, .H = 4, .N = 300, .D = 256, .E = 256, .mode = M_ALIBI},
    {.name = "dld_alibi_tok_f32_d256_h1", .tags = T_LEARN, .decay = TOK_, .dtype = F32_, .layout = TU_BNHD, .B = 1, .H = 1, .N = 300, .D = 256, .E = 256, .mode = M_ALIBI},
    /* D > 128 with scalar decay: the GPU forward's 256-row state (one value slice, then four, with segments) */
    {.name = "dim200x96_tok_bf16", .tags = ALLST, .decay = TOK_, .dtype = BF16_, .layout = TU_BHND, .B = 2, .H = 2, .N = 300, .D = 200, .E = 96},
    {.name = "dim256x256_head_f16_n1100", .tags = ALLST, .decay = HEAD_, .dtype = F16_, .layout = TU_BNHD, .B = 1, .H = 1, .N = 1100, .D = 256, .E = 256},
    {.name = "dim256x256_vkv_bf16", .tags = ALLST, .decay = VKV_, .dtype = BF16_, .layout = TU_BHND, .B = 1, .H = 1, .N = 100, .D = 256, .E = 256},
    {.name = "dim48x100_none_f16", .tags = ALLST, .decay = NONE_, .dtype = F16_, .layout = TU_BNHD, .B = 2, .H = 2, .N = 97, .D = 48, .E = 100},
    {.name = "dim100x48_vk_f16", .tags = ALLST, .decay = VK_, .dtype = F16_, .layout = TU_BHND, .B = 1, .H = 2, .N = 97, .D = 100, .E = 48},
    {.name = "dim128x64_tok_bf16", .tags = ALLST, .decay = TOK_, .dtype = BF16_, .layout = TU_BHND, .B = 2, .H = 2, .N = 150, .D = 128, .E = 64},
    /* D in (64, 128] with 128-column value slices in bf16/f16: the GPU's Hopper state pass (state-only
     * forward, and the forward's and backward's segments): ragged chunks, a partial second slice,
     * D padded inside a tile, packed sequences, a long sequence cut into segments. */
    {.name = "stpass_d128_head_bf16", .tags = ALLST | T_STATEF | T_STATEB, .decay = HEAD_, .dtype = BF16_, .layout = TU_BHND, .B = 2, .H = 2, .N = 1000, .D = 128, .E = 128},
    {.name = "stpass_d100x200_tok_f16", .tags = ALLST | T_STATEF | T_STATEB, .decay = TOK_, .dtype = F16_, .layout = TU_BNHD, .B = 1, .H = 1, .N = 2100, .D = 100, .E = 200, .mode = M_SHARP},
    {.name = "stpass_varlen_none_bf16", .tags = ALLST | T_STATEF, .decay = NONE_, .dtype = BF16_, .layout = TU_BHND, .B = 1, .H = 2, .N = 830, .D = 128, .E = 128, .nseq = 5, .lens = {1, 64, 0, 700, 65}},
    {.name = "stpass_long4100_head_bf16", .tags = ALLST | T_STATEF, .decay = HEAD_, .dtype = BF16_, .layout = TU_BNHD, .B = 1, .H = 1, .N = 4100, .D = 128, .E = 128, .mode = M_SLOW},
    /* D = E = 64 in bf16/f16 without the decay gradient: the GPU's Hopper backward (TMA, wgmma): ragged
     * last chunks, per-token decay, with the initial-state gradient (fp32-level dS) and without it, packed
     * sequences (an empty and a 1-token one), a long sequence cut into segments, a layout with gaps. */
    {.name = "bwg_head_bf16", .tags = T_STATES, .decay = HEAD_, .dtype = BF16_, .layout = TU_BHND, .B = 2, .H = 3, .N = 200, .D = 64, .E = 64},
    {.name = "bwg_tok_f16_nodinit", .tags = T_INIT | T_DFINAL, .decay = TOK_, .dtype = F16_, .layout = TU_BNHD, .B = 1, .H = 2, .N = 300, .D = 64, .E = 64, .mode = M_SHARP},
    {.name = "bwg_varlen_none_bf16", .tags = T_STATES, .decay = NONE_, .dtype = BF16_, .layout = TU_BHND, .B = 1, .H = 2, .N = 830, .D = 64, .E = 64, .nseq = 5, .lens = {1, 64, 0, 700, 65}},
    {.name = "bwg_long4100_head_bf16", .tags = T_STATES, .decay = HEAD_, .dtype = BF16_, .layout = TU_BNHD_PAD, .B = 1, .H = 1, .N = 4100, .D = 64, .E = 64, .mode = M_SLOW},

    /* Layouts: gaps after every row/plane (the library must not write them),
     * channel stride 2, token-major with gaps. */
    {.name = "layout_bhnd_pad_vkv", .tags = ALLST, .decay = VKV_, .dtype = BF16_, .layout = TU_BHND_PAD, .B = 2, .H = 2, .N = 80, .D = 24, .E = 40},
    {.name = "layout_bnhd_pad_head", .tags = ALLST, .decay = HEAD_, .dtype = F16_, .layout = TU_BNHD_PAD, .B = 2, .H = 3, .N = 80, .D = 40, .E = 24},
    {.name = "layout_interleaved_tok", .tags = ALLST, .decay = TOK_, .dtype = F32_, .layout = TU_INTERLEAVED, .B = 2, .H = 2, .N = 80, .D = 16, .E = 32},
    {.name = "layout_interleaved_vk_bf16", .tags = ALLST, .decay = VK_, .dtype = BF16_, .layout = TU_INTERLEAVED, .B = 1, .H = 2, .N = 80, .D = 32, .E = 16},

    /* Optional tensors absent / present in unusual combinations. */
    {.name = "no_optional_tensors_vkv", .tags = 0, .decay = VKV_, .dtype = F32_, .layout = TU_BHND, .B = 2, .H = 2, .N = 90, .D = 16, .E = 16},
    {.name = "dinit_without_init_head", .tags = T_FINAL | T_DFINAL | T_LEARN | T_DINIT, .decay = HEAD_, .dtype = F32_, .layout = TU_BHND, .B = 2, .H = 2, .N = 90, .D = 16, .E = 16},
    {.name = "fixed_decay_tok", .tags = T_INIT | T_FINAL | T_DFINAL | T_DINIT, .decay = TOK_, .dtype = F32_, .layout = TU_BHND, .B = 2, .H = 2, .N = 90, .D = 16, .E = 16},
    {.name = "allfields_vk", .tags = ALLST | T_ALLFIELDS, .decay = VK_, .dtype = F32_, .layout = TU_BHND, .B = 2, .H = 2, .N = 70, .D = 16, .E = 16},

    /* Scale: not 1, negative. */
    {.name = "scale_0p125_head", .tags = ALLST, .decay = HEAD_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 100, .D = 64, .E = 32, .scale = 0.125f},
    {.name = "scale_neg_vkv_bf16", .tags = ALLST, .decay = VKV_, .dtype = BF16_, .layout = TU_BNHD, .B = 1, .H = 2, .N = 100, .D = 32, .E = 32, .scale = -0.7f},

    /* Decay extremes: ld = 0, -1e-6, -20, and all of them mixed, for every
     * decayed kind; sharp and flat gates for the data-dependent kinds. */
    {.name = "ext_ld0_head", .tags = ALLST, .decay = HEAD_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 200, .D = 32, .E = 32, .mode = M_ZERO},
    {.name = "ext_tiny_head", .tags = ALLST, .decay = HEAD_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 200, .D = 32, .E = 32, .mode = M_TINY},
    {.name = "ext_huge_head", .tags = ALLST, .decay = HEAD_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 200, .D = 32, .E = 32, .mode = M_HUGE},
    {.name = "ext_mixed_head", .tags = ALLST, .decay = HEAD_, .dtype = BF16_, .layout = TU_BHND, .B = 1, .H = 4, .N = 200, .D = 32, .E = 32, .mode = M_MIXED},
    {.name = "ext_ld0_tok", .tags = ALLST, .decay = TOK_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 200, .D = 32, .E = 32, .mode = M_ZERO},
    {.name = "ext_tiny_tok", .tags = ALLST, .decay = TOK_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 200, .D = 32, .E = 32, .mode = M_TINY},
    {.name = "ext_huge_tok", .tags = ALLST, .decay = TOK_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 200, .D = 32, .E = 32, .mode = M_HUGE},
    {.name = "ext_mixed_tok", .tags = ALLST, .decay = TOK_, .dtype = F16_, .layout = TU_BHND, .B = 1, .H = 2, .N = 200, .D = 32, .E = 32, .mode = M_MIXED},
    {.name = "ext_sharp_tok", .tags = ALLST, .decay = TOK_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 200, .D = 32, .E = 32, .mode = M_SHARP},
    {.name = "ext_flat_tok", .tags = ALLST, .decay = TOK_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 200, .D = 32, .E = 32, .mode = M_FLAT},
    {.name = "ext_ld0_vk", .tags = ALLST, .decay = VK_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 200, .D = 32, .E = 32, .mode = M_ZERO},
    {.name = "ext_tiny_vk", .tags = ALLST, .decay = VK_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 200, .D = 32, .E = 32, .mode = M_TINY},
    {.name = "ext_huge_vk", .tags = ALLST, .decay = VK_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 200, .D = 32, .E = 32, .mode = M_HUGE},
    {.name = "ext_mixed_vk", .tags = ALLST, .decay = VK_, .dtype = BF16_, .layout = TU_BHND, .B = 1, .H = 2, .N = 200, .D = 32, .E = 32, .mode = M_MIXED},
    {.name = "ext_sharp_vk", .tags = ALLST, .decay = VK_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 200, .D = 32, .E = 32, .mode = M_SHARP},
    {.name = "ext_flat_vk", .tags = ALLST, .decay = VK_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 200, .D = 32, .E = 32, .mode = M_FLAT},
    {.name = "ext_ld0_vkv", .tags = ALLST, .decay = VKV_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 200, .D = 32, .E = 32, .mode = M_ZERO},
    {.name = "ext_tiny_vkv", .tags = ALLST, .decay = VKV_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 200, .D = 32, .E = 32, .mode = M_TINY},
    {.name = "ext_huge_vkv", .tags = ALLST, .decay = VKV_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 200, .D = 32, .E = 32, .mode = M_HUGE},
    {.name = "ext_mixed_vkv", .tags = ALLST, .decay = VKV_, .dtype = F16_, .layout = TU_BHND, .B = 1, .H = 2, .N = 200, .D = 32, .E = 32, .mode = M_MIXED},
    {.name = "ext_sharp_vkv", .tags = ALLST, .decay = VKV_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 200, .D = 32, .E = 32, .mode = M_SHARP},
    {.name = "ext_flat_vkv", .tags = ALLST, .decay = VKV_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 200, .D = 32, .E = 32, .mode = M_FLAT},

    /* Equivalences between entry points, every kind. */
    {.name = "eq_decode_none", .tags = ALLST | T_DECODE, .decay = NONE_, .dtype = F32_, .layout = TU_BHND, .B = 2, .H = 2, .N = 70, .D = 16, .E = 24},
    {.name = "eq_decode_head_bf16", .tags = ALLST | T_DECODE, .decay = HEAD_, .dtype = BF16_, .layout = TU_BNHD, .B = 2, .H = 2, .N = 70, .D = 24, .E = 16},
    {.name = "eq_decode_tok_pad", .tags = ALLST | T_DECODE, .decay = TOK_, .dtype = F32_, .layout = TU_BNHD_PAD, .B = 2, .H = 2, .N = 70, .D = 16, .E = 16},
    {.name = "eq_decode_vk_f16", .tags = ALLST | T_DECODE, .decay = VK_, .dtype = F16_, .layout = TU_BHND, .B = 1, .H = 3, .N = 70, .D = 16, .E = 16},
    {.name = "eq_decode_vkv", .tags = ALLST | T_DECODE, .decay = VKV_, .dtype = F32_, .layout = TU_BHND, .B = 2, .H = 2, .N = 70, .D = 16, .E = 16},
    {.name = "eq_decode_noinit_head", .tags = T_FINAL | T_DECODE, .decay = HEAD_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 10, .D = 8, .E = 8},
    {.name = "eq_state_none", .tags = ALLST | T_STATEF | T_STATEB, .decay = NONE_, .dtype = F32_, .layout = TU_BHND, .B = 2, .H = 2, .N = 150, .D = 16, .E = 24},
    {.name = "eq_state_head", .tags = ALLST | T_STATEF | T_STATEB, .decay = HEAD_, .dtype = BF16_, .layout = TU_BHND, .B = 2, .H = 2, .N = 150, .D = 24, .E = 16},
    {.name = "eq_state_tok", .tags = ALLST | T_STATEF | T_STATEB, .decay = TOK_, .dtype = F16_, .layout = TU_BNHD, .B = 2, .H = 2, .N = 150, .D = 16, .E = 16},
    /* Long enough for the GPU's forward split along the sequence (few blocks, segments of at
     * least 128 tokens, a ragged last one), and the state-only pass with it. */
    {.name = "long_split_vk_bf16", .tags = ALLST | T_STATEF, .decay = VK_, .dtype = BF16_, .layout = TU_BHND, .B = 1, .H = 2, .N = 1000, .D = 64, .E = 64},
    {.name = "long_split_vkv_f16", .tags = ALLST | T_STATEF, .decay = VKV_, .dtype = F16_, .layout = TU_BNHD, .B = 1, .H = 1, .N = 900, .D = 32, .E = 128},
    /* The long-sequence numerics target: 65536 tokens of sharp and flat gates, bf16 (the GPU's
     * tensor-core kernel), with the decay gradients. */
    {.name = "long_sharp_vk_bf16", .tags = ALLST, .decay = VK_, .dtype = BF16_, .layout = TU_BHND, .B = 1, .H = 1, .N = 65536, .D = 32, .E = 32, .mode = M_SHARP},
    {.name = "long_flat_vkv_bf16", .tags = ALLST, .decay = VKV_, .dtype = BF16_, .layout = TU_BNHD, .B = 1, .H = 1, .N = 65536, .D = 32, .E = 32, .mode = M_FLAT},
    {.name = "eq_state_vk", .tags = ALLST | T_STATEF | T_STATEB, .decay = VK_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 150, .D = 32, .E = 16},
    {.name = "eq_state_vkv", .tags = ALLST | T_STATEF | T_STATEB, .decay = VKV_, .dtype = BF16_, .layout = TU_BHND_PAD, .B = 1, .H = 2, .N = 150, .D = 16, .E = 32},
    {.name = "eq_state_nodfinal_tok", .tags = T_INIT | T_LEARN | T_DINIT | T_STATEB, .decay = TOK_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 70, .D = 16, .E = 16},
    {.name = "eq_split_none", .tags = ALLST | T_SPLIT, .decay = NONE_, .dtype = F32_, .layout = TU_BHND, .B = 2, .H = 2, .N = 200, .D = 16, .E = 24},
    {.name = "eq_split_head", .tags = ALLST | T_SPLIT, .decay = HEAD_, .dtype = F32_, .layout = TU_BNHD, .B = 2, .H = 2, .N = 200, .D = 24, .E = 16},
    {.name = "eq_split_tok_bf16", .tags = ALLST | T_SPLIT, .decay = TOK_, .dtype = BF16_, .layout = TU_BHND, .B = 1, .H = 2, .N = 200, .D = 16, .E = 16},
    {.name = "eq_split_vk", .tags = ALLST | T_SPLIT, .decay = VK_, .dtype = F32_, .layout = TU_BHND_PAD, .B = 1, .H = 2, .N = 200, .D = 32, .E = 16},
    {.name = "eq_split_vkv_f16", .tags = ALLST | T_SPLIT, .decay = VKV_, .dtype = F16_, .layout = TU_BHND, .B = 1, .H = 2, .N = 200, .D = 16, .E = 32},
    {.name = "eq_split_n2_vkv", .tags = ALLST | T_SPLIT, .decay = VKV_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 1, .N = 2, .D = 16, .E = 16},
    {.name = "eq_headtok_f32", .tags = ALLST | T_HEADTOK, .decay = HEAD_, .dtype = F32_, .layout = TU_BHND, .B = 2, .H = 3, .N = 150, .D = 32, .E = 16},
    {.name = "eq_headtok_bf16_bnhd", .tags = ALLST | T_HEADTOK, .decay = HEAD_, .dtype = BF16_, .layout = TU_BNHD, .B = 2, .H = 2, .N = 150, .D = 16, .E = 32, .mode = M_MIXED},

    /* Packed variable-length batches (with an empty sequence and a
     * one-token one) == separate calls per sequence; also vs the reference. */
    {.name = "varlen_none", .tags = ALLST, .decay = NONE_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 260, .D = 16, .E = 24, .nseq = 5, .lens = {1, 64, 0, 130, 65}},
    {.name = "varlen_head", .tags = ALLST | T_HEADTOK, .decay = HEAD_, .dtype = F32_, .layout = TU_BNHD, .B = 1, .H = 2, .N = 260, .D = 24, .E = 16, .nseq = 5, .lens = {1, 64, 0, 130, 65}},
    {.name = "varlen_tok_bf16", .tags = ALLST, .decay = TOK_, .dtype = BF16_, .layout = TU_BHND, .B = 1, .H = 2, .N = 260, .D = 16, .E = 16, .nseq = 5, .lens = {1, 64, 0, 130, 65}},
    {.name = "varlen_vk_f16", .tags = ALLST, .decay = VK_, .dtype = F16_, .layout = TU_BHND_PAD, .B = 1, .H = 2, .N = 260, .D = 16, .E = 16, .nseq = 5, .lens = {1, 64, 0, 130, 65}},
    {.name = "varlen_vkv", .tags = ALLST | T_STATEF | T_STATEB, .decay = VKV_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 260, .D = 16, .E = 16, .nseq = 5, .lens = {1, 64, 0, 130, 65}},
    {.name = "varlen_empty_ends_tok", .tags = ALLST, .decay = TOK_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 1, .N = 70, .D = 16, .E = 16, .nseq = 4, .lens = {0, 63, 7, 0}},
    {.name = "varlen_nostate_head", .tags = T_LEARN, .decay = HEAD_, .dtype = BF16_, .layout = TU_BHND, .B = 1, .H = 2, .N = 200, .D = 16, .E = 16, .nseq = 3, .lens = {100, 1, 99}},

    /* Workspace supplied by the caller (exact size, guards after it), one
     * thread, many (sequence, head) items (B*H far above any SM count). */
    {.name = "ws_caller_vkv", .tags = ALLST | T_WS, .decay = VKV_, .dtype = F32_, .layout = TU_BHND, .B = 2, .H = 2, .N = 300, .D = 32, .E = 48},
    {.name = "ws_caller_head_bf16", .tags = ALLST | T_WS, .decay = HEAD_, .dtype = BF16_, .layout = TU_BHND, .B = 2, .H = 2, .N = 300, .D = 64, .E = 64},
    {.name = "threads1_tok", .tags = ALLST | T_THREADS1, .decay = TOK_, .dtype = F32_, .layout = TU_BHND, .B = 2, .H = 2, .N = 150, .D = 32, .E = 32},
    {.name = "many_heads_vk", .tags = ALLST, .decay = VK_, .dtype = BF16_, .layout = TU_BNHD, .B = 4, .H = 72, .N = 65, .D = 16, .E = 16},
    {.name = "many_heads_head", .tags = ALLST, .decay = HEAD_, .dtype = F32_, .layout = TU_BHND, .B = 8, .H = 40, .N = 33, .D = 8, .E = 8},

    /* Long N: accumulated error over many chunks (quick: moderate, full: >= 32k). */
    {.name = "long8192_tok", .tags = ALLST, .decay = TOK_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 2, .N = 8192, .D = 16, .E = 16, .mode = M_SLOW},
    {.name = "long4096_none_bf16", .tags = ALLST, .decay = NONE_, .dtype = BF16_, .layout = TU_BNHD, .B = 1, .H = 1, .N = 4096, .D = 32, .E = 32},
    {.name = "long32768_none", .tags = ALLST | T_FULL, .decay = NONE_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 1, .N = 32768, .D = 64, .E = 64},
    {.name = "long32768_head_bf16", .tags = ALLST | T_FULL, .decay = HEAD_, .dtype = BF16_, .layout = TU_BNHD, .B = 1, .H = 2, .N = 32768, .D = 64, .E = 64, .mode = M_SLOW},
    {.name = "long32768_tok", .tags = ALLST | T_FULL, .decay = TOK_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 1, .N = 32768, .D = 128, .E = 64, .mode = M_SLOW},
    {.name = "long32768_vk", .tags = ALLST | T_FULL, .decay = VK_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 1, .N = 32768, .D = 64, .E = 64, .mode = M_SLOW},
    {.name = "long40000_vkv_f16", .tags = ALLST | T_FULL, .decay = VKV_, .dtype = F16_, .layout = TU_BHND, .B = 1, .H = 1, .N = 40000, .D = 32, .E = 48, .mode = M_SLOW},
    {.name = "long16384_vkv_split", .tags = ALLST | T_SPLIT | T_STATEF | T_STATEB | T_FULL, .decay = VKV_, .dtype = F32_, .layout = TU_BHND, .B = 1, .H = 1, .N = 16384, .D = 32, .E = 32, .mode = M_SLOW},
    /* Long enough at D = E = 256 that the backward's stored chunk states
     * exceed the kernels' 32 MiB cap: the checkpoint-and-recompute path. */
    {.name = "ckpt_vk_D256_N9000", .tags = ALLST | T_FULL, .decay = VK_, .dtype = BF16_, .layout = TU_BHND, .B = 1, .H = 1, .N = 9000, .D = 256, .E = 256, .mode = M_SLOW},
    {.name = "ckpt_head_D256_N9000", .tags = ALLST | T_FULL, .decay = HEAD_, .dtype = F32_, .layout = TU_BNHD, .B = 1, .H = 1, .N = 9000, .D = 256, .E = 256, .mode = M_SLOW},
    {.name = "big256_vkv_full", .tags = ALLST | T_FULL, .decay = VKV_, .dtype = F32_, .layout = TU_BNHD, .B = 2, .H = 2, .N = 1000, .D = 256, .E = 256},
    {.name = "big256_decode_full", .tags = ALLST | T_DECODE | T_FULL, .decay = VK_, .dtype = BF16_, .layout = TU_BHND, .B = 2, .H = 2, .N = 1000, .D = 256, .E = 128},
};
/* clang-format on */
#define NTABLE ((int)(sizeof TABLE / sizeof TABLE[0]))

/* ---- the sweep ------------------------------------------------------------------------ */

#define SWEEP_QUICK 100
#define SWEEP_FULL 400
#define COST_CAP_QUICK (1ll << 23) /* B*H*N*D*E (x2 for VECTOR_KV) */
#define COST_CAP_FULL (1ll << 28)

static const int64_t SWEEP_N[] = {1, 2, 63, 64, 65, 1000, 4096};
static const int SWEEP_DIMS[] = {1, 16, 48, 64, 100, 128, 256};

/* A balanced deterministic sequence over n values: shuffled rounds. */
typedef struct rotor {
    int n, pos, perm[32];
} rotor_t;

static int rotor_next(rotor_t *r, tu_rng_t *rng) {
    if (r->pos == 0) {
        for (int i = 0; i < r->n; i++) r->perm[i] = i;
        for (int i = r->n - 1; i > 0; i--) {
            int j = (int)tu_below(rng, (uint64_t)i + 1), t = r->perm[i];
            r->perm[i] = r->perm[j];
            r->perm[j] = t;
        }
    }
    int v = r->perm[r->pos];
    r->pos = (r->pos + 1) % r->n;
    return v;
}

static int64_t case_cost(const bcase_t *c) {
    return (int64_t)c->B * c->H * c->N * c->D * c->E * (c->decay == LA_DECAY_VECTOR_KV ? 2 : 1);
}

static int dim_index(int d) {
    for (int i = 0; i < 7; i++)
        if (SWEEP_DIMS[i] == d) return i;
    return 0;
}

static int gen_sweep(bcase_t *out, int count, int full) {
    tu_rng_t rng;
    tu_rng_seed(&rng, 0x5eed5eedull);
    rotor_t r_decay = {5, 0, {0}}, r_dtype = {3, 0, {0}}, r_layout = {4, 0, {0}}, r_n = {7, 0, {0}}, r_d = {7, 0, {0}},
            r_e = {7, 0, {0}}, r_st = {16, 0, {0}}, r_mode = {4, 0, {0}}, r_b = {3, 0, {0}}, r_h = {4, 0, {0}},
            r_sc = {3, 0, {0}};
    static const tu_layout_t layouts[4] = {TU_BHND, TU_BNHD, TU_BHND_PAD, TU_BNHD_PAD};
    static const char *kind_name[5] = {"none", "head", "tok", "vk", "vkv"};
    int64_t cap = full ? COST_CAP_FULL : COST_CAP_QUICK;
    for (int i = 0; i < count; i++) {
        bcase_t *c = &out[i];
        memset(c, 0, sizeof *c);
        c->decay = (la_decay_t)rotor_next(&r_decay, &rng);
        c->dtype = (la_dtype_t)rotor_next(&r_dtype, &rng);
        c->layout = layouts[rotor_next(&r_layout, &rng)];
        c->N = SWEEP_N[rotor_next(&r_n, &rng)];
        c->D = SWEEP_DIMS[rotor_next(&r_d, &rng)];
        c->E = SWEEP_DIMS[rotor_next(&r_e, &rng)];
        int st = rotor_next(&r_st, &rng);
        c->tags = (st & 1 ? T_INIT : 0) | (st & 2 ? T_FINAL : 0) | (st & 4 ? T_DFINAL : 0) | (st & 8 ? T_LEARN : 0);
        if ((c->tags & T_INIT) || i % 7 == 0) c->tags |= T_DINIT;
        int m = rotor_next(&r_mode, &rng);
        c->mode = c->decay == LA_DECAY_SCALAR_HEAD ? (m == 3 ? M_MIXED : m) : m;
        c->B = 1 + rotor_next(&r_b, &rng);
        c->H = 1 + rotor_next(&r_h, &rng);
        int sc = rotor_next(&r_sc, &rng);
        c->scale = sc == 0 ? 1.0f : sc == 1 ? (float)(1.0 / sqrt((double)c->D)) : 0.37f;
        /* extra equivalence checks on a rotating subset */
        if (i % 4 == 1 && c->N <= 4096) c->tags |= T_DECODE;
        if (i % 5 == 2) c->tags |= T_STATEF | T_STATEB;
        if (i % 3 == 0 && c->N >= 2) c->tags |= T_SPLIT;
        if (c->decay == LA_DECAY_SCALAR_HEAD && i % 2 == 0) c->tags |= T_HEADTOK;
        /* cost cap: fewer heads/batch first, then smaller head dims */
        while (case_cost(c) > cap) {
            if (c->H > 1) c->H--;
            else if (c->B > 1) c->B--;
            else if (c->D >= c->E && c->D > 1) c->D = SWEEP_DIMS[dim_index(c->D) - 1];
            else c->E = SWEEP_DIMS[dim_index(c->E) - 1];
        }
        snprintf(c->name, sizeof c->name, "sw%03d_%s_%s_%s_B%dH%dN%lldD%dE%d_%s%s%s%s%s_%s", i, kind_name[c->decay],
                 tu_dtype_name(c->dtype), tu_layout_name(c->layout), c->B, c->H, (long long)c->N, c->D, c->E,
                 c->tags & T_INIT ? "i" : "", c->tags & T_FINAL ? "f" : "", c->tags & T_DFINAL ? "g" : "",
                 c->tags & T_LEARN ? "l" : "", c->tags & T_DINIT ? "d" : "", mode_name[c->mode]);
    }
    return count;
}

/* ---- one case: tensors, reference ----------------------------------------------------- */

enum { Q, K, V, LD, LDV, S0, O, SN, DO, DSN, DQ, DK, DV, DLD, DLDV, DS0, NT };
static const char *TNAME[NT] = {
    "q",  "k",  "v",  "ld",   "ldv",   "initial_state",  "o", "final_state", "d_o", "d_final_state",
    "dq", "dk", "dv", "d_ld", "d_ldv", "d_initial_state"};

typedef struct ctx {
    const bcase_t *c;
    const char *name;
    uint64_t seed;
    la_handle_t *h;
    la_backend_t backend;
    la_problem_t p;
    int64_t S;     /* sequences (= states) */
    int64_t cu[9]; /* packed offsets */
    int packed;
    void *cu_dev; /* the offsets in device memory (p.cu_seqlens_on_device), or NULL */
    tu_rng_t rng;
    tu_tensor_t T[NT];
    const tolset_t *tol;
    int fwd_ok, bwd_ok; /* main forward / backward ran successfully */
} ctx_t;

typedef struct refout {
    double *o, *sN, *dq, *dk, *dv, *dld, *dldv, *ds0;
    /* Magnitudes of the terms whose (partly cancelling) sum is the log-decay
     * gradient, per element of d_ld / d_ldv (reduced like d_ld):
     *   key side   |q_t[d] dq_t[d]| + |k_t[d] dk_t[d]|
     *   value side |o_t[e] dO_t[e]| + |v_t[e] dv_t[e]|
     * (dg_r = sum_{t >= r} (q_t dq_t - k_t dk_t), MATH.md).  fp32 computes
     * each term with a relative error of ~1e-7 of ITS size, so when the
     * gradient itself is much smaller than its terms (ld = -20, N = 1) the
     * tolerance is taken relative to these magnitudes, not to the tiny sum. */
    double *dld_sc, *dldv_sc;
} refout_t;

static void *xcalloc(size_t n, size_t sz) {
    void *p = calloc(n ? n : 1, sz);
    if (!p) {
        fprintf(stderr, "test_backend: out of memory\n");
        exit(2);
    }
    return p;
}

static void refout_free(refout_t *r) {
    free(r->o);
    free(r->sN);
    free(r->dq);
    free(r->dk);
    free(r->dv);
    free(r->dld);
    free(r->dldv);
    free(r->ds0);
    free(r->dld_sc);
    free(r->dldv_sc);
    memset(r, 0, sizeof *r);
}

static void seq_info(const ctx_t *x, int64_t s, int64_t *b, int64_t *t0, int64_t *len) {
    if (x->packed) {
        *b = 0;
        *t0 = x->cu[s];
        *len = x->cu[s + 1] - x->cu[s];
    } else {
        *b = s;
        *t0 = 0;
        *len = x->p.seqlen;
    }
}

static int64_t dld_count(const ctx_t *x, la_decay_t kind) {
    int64_t B = x->p.batch, H = x->p.heads, N = x->p.seqlen;
    switch (kind) {
    case LA_DECAY_SCALAR_HEAD: return H;
    case LA_DECAY_SCALAR_TOKEN: return B * H * N;
    case LA_DECAY_VECTOR_K:
    case LA_DECAY_VECTOR_KV: return B * H * N * x->p.dim_qk;
    default: return 0;
    }
}

/* The fp64 reference over every (sequence, head), from the tensors' current
 * (rounded) contents.  kind and ld select the decay (so the SCALAR_TOKEN
 * broadcast of a SCALAR_HEAD case can be run too); d_o and dsN may be NULL. */
static void reference(const ctx_t *x, la_decay_t kind, const tu_tensor_t *ld, const tu_tensor_t *ldv,
                      const tu_tensor_t *s0, const tu_tensor_t *d_o, const tu_tensor_t *dsN, int want_bwd,
                      refout_t *r) {
    const int64_t B = x->p.batch, H = x->p.heads, N = x->p.seqlen;
    const int D = (int)x->p.dim_qk, E = (int)x->p.dim_v;
    const int64_t DE = (int64_t)D * E;
    const double scale = x->p.scale;
    memset(r, 0, sizeof *r);
    r->o = xcalloc((size_t)(B * H * N * E), sizeof(double));
    r->sN = xcalloc((size_t)(x->S * H * DE), sizeof(double));
    if (want_bwd) {
        r->dq = xcalloc((size_t)(B * H * N * D), sizeof(double));
        r->dk = xcalloc((size_t)(B * H * N * D), sizeof(double));
        r->dv = xcalloc((size_t)(B * H * N * E), sizeof(double));
        r->dld = xcalloc((size_t)dld_count(x, kind), sizeof(double));
        r->dldv = xcalloc((size_t)(B * H * N * E), sizeof(double));
        r->dld_sc = xcalloc((size_t)dld_count(x, kind), sizeof(double));
        r->dldv_sc = xcalloc((size_t)(B * H * N * E), sizeof(double));
        r->ds0 = xcalloc((size_t)(x->S * H * DE), sizeof(double));
    }
    int64_t maxlen = 1;
    for (int64_t s = 0; s < x->S; s++) {
        int64_t b, t0, len;
        seq_info(x, s, &b, &t0, &len);
        if (len > maxlen) maxlen = len;
    }
    size_t nd = (size_t)(maxlen * D), ne = (size_t)(maxlen * E);
    double *q = xcalloc(nd, 8), *k = xcalloc(nd, 8), *v = xcalloc(ne, 8);
    double *gk = xcalloc(nd, 8), *gv = xcalloc(ne, 8), *st0 = xcalloc((size_t)DE, 8);
    double *go = xcalloc(ne, 8), *gsN = xcalloc((size_t)DE, 8);
    double *o = xcalloc(ne, 8), *sN = xcalloc((size_t)DE, 8);
    double *dq = xcalloc(nd, 8), *dk = xcalloc(nd, 8), *dv = xcalloc(ne, 8);
    double *dgk = xcalloc(nd, 8), *dgv = xcalloc(ne, 8), *ds0 = xcalloc((size_t)DE, 8);
    for (int64_t s = 0; s < x->S; s++) {
        int64_t b, t0, len;
        seq_info(x, s, &b, &t0, &len);
        for (int64_t h = 0; h < H; h++) {
            if (s0) tu_gather(s0, s, h, 0, D, st0);
            if (dsN) tu_gather(dsN, s, h, 0, D, gsN);
            double *sidx_sN = r->sN + (s * H + h) * DE;
            if (len == 0) { /* empty sequence: final = initial; d_initial = d_final */
                for (int64_t i = 0; i < DE; i++) {
                    sidx_sN[i] = s0 ? st0[i] : 0.0;
                    if (want_bwd) r->ds0[(s * H + h) * DE + i] = dsN ? gsN[i] : 0.0;
                }
                continue;
            }
            tu_gather(&x->T[Q], b, h, t0, len, q);
            tu_gather(&x->T[K], b, h, t0, len, k);
            tu_gather(&x->T[V], b, h, t0, len, v);
            int has_gk = kind != LA_DECAY_NONE, has_gv = kind == LA_DECAY_VECTOR_KV;
            for (int64_t t = 0; t < len; t++) {
                for (int d = 0; d < D; d++) {
                    double g = 0;
                    if (kind == LA_DECAY_SCALAR_HEAD) g = tu_get(ld, 0, h, 0, 0);
                    else if (kind == LA_DECAY_SCALAR_TOKEN) g = tu_get(ld, b, h, t0 + t, 0);
                    else if (kind >= LA_DECAY_VECTOR_K) g = tu_get(ld, b, h, t0 + t, d);
                    gk[t * D + d] = g;
                }
            }
            if (has_gv) tu_gather(ldv, b, h, t0, len, gv);
            ref_forward_recurrent(len, D, E, scale, q, k, v, has_gk ? gk : NULL, has_gv ? gv : NULL, s0 ? st0 : NULL, o,
                                  sN);
            for (int64_t t = 0; t < len; t++)
                for (int e = 0; e < E; e++) r->o[((b * H + h) * N + t0 + t) * E + e] = o[t * E + e];
            memcpy(sidx_sN, sN, (size_t)DE * sizeof(double));
            if (!want_bwd) continue;
            if (d_o) tu_gather(d_o, b, h, t0, len, go);
            ref_backward(len, D, E, scale, q, k, v, has_gk ? gk : NULL, has_gv ? gv : NULL, s0 ? st0 : NULL,
                         d_o ? go : NULL, dsN ? gsN : NULL, dq, dk, dv, has_gk ? dgk : NULL, has_gv ? dgv : NULL, ds0);
            for (int64_t t = 0; t < len; t++) {
                int64_t row = (b * H + h) * N + t0 + t;
                double rowsum = 0, rowsc = 0;
                for (int d = 0; d < D; d++) {
                    int64_t i = t * D + d;
                    r->dq[row * D + d] = dq[i];
                    r->dk[row * D + d] = dk[i];
                    double sc = fabs(q[i] * dq[i]) + fabs(k[i] * dk[i]);
                    if (has_gk) {
                        rowsum += dgk[i];
                        rowsc += sc;
                    }
                    if (kind >= LA_DECAY_VECTOR_K) {
                        r->dld[row * D + d] = dgk[i];
                        r->dld_sc[row * D + d] = sc;
                    }
                }
                for (int e = 0; e < E; e++) {
                    int64_t i = t * E + e;
                    r->dv[row * E + e] = dv[i];
                    if (has_gv) {
                        r->dldv[row * E + e] = dgv[i];
                        r->dldv_sc[row * E + e] = fabs(o[i] * (d_o ? go[i] : 0.0)) + fabs(v[i] * dv[i]);
                    }
                }
                if (kind == LA_DECAY_SCALAR_HEAD) {
                    r->dld[h] += rowsum;
                    r->dld_sc[h] += rowsc;
                }
                if (kind == LA_DECAY_SCALAR_TOKEN) {
                    r->dld[row] = rowsum;
                    r->dld_sc[row] = rowsc;
                }
            }
            memcpy(r->ds0 + (s * H + h) * DE, ds0, (size_t)DE * sizeof(double));
        }
    }
    free(q);
    free(k);
    free(v);
    free(gk);
    free(gv);
    free(st0);
    free(go);
    free(gsN);
    free(o);
    free(sN);
    free(dq);
    free(dk);
    free(dv);
    free(dgk);
    free(dgv);
    free(ds0);
}

/* ---- comparison and call helpers -------------------------------------------------- */

/* library output t vs ref (logical order); scale: see refout_t (may be NULL) */
static int cmp_ref_sc(ctx_t *x, const char *what, tu_tensor_t *t, const double *ref, const double *scale, double rel,
                      double elem) {
    tu_download(t);
    int64_t n = tu_numel(t);
    double *buf = xcalloc((size_t)n, sizeof(double));
    tu_gather_all(t, buf);
    int ok = tu_check_close_scaled(x->name, x->seed, what, buf, ref, scale, n, t->dim, rel, elem);
    free(buf);
    return ok;
}

static int cmp_ref(ctx_t *x, const char *what, tu_tensor_t *t, const double *ref, double rel, double elem) {
    return cmp_ref_sc(x, what, t, ref, NULL, rel, elem);
}

/* library vs library: same logical shape required */
static int cmp_lib_sc(ctx_t *x, const char *what, tu_tensor_t *a, tu_tensor_t *b, const double *scale, double rel,
                      double elem) {
    tu_download(b);
    int64_t n = tu_numel(b);
    double *buf = xcalloc((size_t)n, sizeof(double));
    tu_gather_all(b, buf);
    int ok = cmp_ref_sc(x, what, a, buf, scale, rel, elem);
    free(buf);
    return ok;
}

static int cmp_lib(ctx_t *x, const char *what, tu_tensor_t *a, tu_tensor_t *b, double rel, double elem) {
    return cmp_lib_sc(x, what, a, b, NULL, rel, elem);
}

/* Half-precision outputs are rounded to NEAREST (even): most elements equal
 * the reference rounded to the dtype.  An fp32 error flips a few elements
 * that lie near a rounding boundary; truncation (round toward zero) would
 * miss about half of them while staying inside the L2 tolerance (its error
 * is below one bf16 ulp), so this check catches biased rounding. */
#define ROUND_MATCH_MIN 0.8
static void check_rounding(ctx_t *x, const char *what, tu_tensor_t *t, const double *ref) {
    if (t->dtype == LA_DTYPE_F32) return;
    /* Only for backends that compute in fp32 throughout.  Tensor-core
     * backends round the intra-chunk matrix and the state copy that multiply
     * q to the input dtype (as FlashAttention rounds P), so their outputs sit
     * one rounding further from the reference; the L2 and worst-element
     * bounds above still hold them. */
    if (la_handle_backend(x->h) != LA_BACKEND_CPU) return;
    int64_t n = tu_numel(t);
    if (n < 64) return; /* too few elements for a rate */
    tu_download(t);
    double *buf = xcalloc((size_t)n, sizeof(double));
    tu_gather_all(t, buf);
    int64_t match = 0;
    for (int64_t i = 0; i < n; i++) match += buf[i] == tu_round(t->dtype, ref[i]);
    double rate = (double)match / (double)n;
    if (tu_verbose()) printf("  rounding [%s] %s: %.4f match\n", x->name, what, rate);
    tu_check(rate >= ROUND_MATCH_MIN, x->name, x->seed,
             "%s: only %.1f%% of %lld %s elements equal the correctly rounded reference (want >= %.0f%%): "
             "not rounded to nearest?",
             what, 100 * rate, (long long)n, tu_dtype_name(t->dtype), 100 * ROUND_MATCH_MIN);
    free(buf);
}

/* Which kernel variants the main calls ran (la_describe's names), per policy:
 * the policy matrix below must reach every variant a GPU can pick. */
static const char *const VARIANTS[] = {"fwd-mma",   "fwd-rows",    "fwd-warp-roles", "fwd-wgmma",
                                       "state-mma", "state-wgmma", "bwd-mma",        "bwd-wgmma",
                                       "decode",    "vec-fwd",     "vec-bwd",        "cpu"};
#define NVARIANTS (int)(sizeof VARIANTS / sizeof VARIANTS[0])
static int variant_count[NVARIANTS];

static void tally_plan(la_handle_t *h, la_op_t op, const la_problem_t *p, const la_tensors_t *t) {
    char line[1024];
    if (la_describe(h, op, p, t, line, sizeof line) != LA_STATUS_SUCCESS) return;
    for (int i = 0; i < NVARIANTS; i++) {
        /* whole names only: "fwd-mma" is not counted inside "fwd-mma-x" */
        const size_t n = strlen(VARIANTS[i]);
        for (const char *at = strstr(line, VARIANTS[i]); at; at = strstr(at + 1, VARIANTS[i]))
            if ((at == line || at[-1] == ' ' || at[-1] == '(') && (at[n] == ' ' || at[n] == ',' || at[n] == '\0')) {
                variant_count[i]++;
                break;
            }
    }
    if (tu_verbose()) printf("  plan: %s\n", line);
}

static int status_ok(ctx_t *x, const char *what, la_status_t st) {
    return tu_check(st == LA_STATUS_SUCCESS, x->name, x->seed, "%s returned %d (%s): %s", what, (int)st,
                    la_status_string(st), la_last_error(x->h));
}

/* Before a call: poison the outputs (NaN), snapshot the inputs. */
static void pre_call(tu_tensor_t **outs, int nouts, tu_tensor_t **ins, int nins) {
    for (int i = 0; i < nouts; i++)
        if (outs[i] && tu_present(outs[i])) {
            tu_poison(outs[i]);
            tu_upload(outs[i]);
        }
    for (int i = 0; i < nins; i++)
        if (ins[i] && tu_present(ins[i])) tu_snapshot(ins[i]);
}

/* After a call: guards/gaps of every tensor intact, inputs unchanged (one check each). */
static void post_call(ctx_t *x, const char *what, tu_tensor_t **outs, int nouts, tu_tensor_t **ins, int nins) {
    char msg[256] = "";
    int ok = 1;
    for (int i = 0; i < nouts + nins && ok; i++) {
        tu_tensor_t *t = i < nouts ? outs[i] : ins[i - nouts];
        if (!t || !tu_present(t)) continue;
        tu_download(t);
        ok = tu_guards_ok(t, msg, sizeof msg);
    }
    tu_check(ok, x->name, x->seed, "%s: guard/gap bytes: %s", what, msg);
    const char *changed = NULL;
    for (int i = 0; i < nins && !changed; i++)
        if (ins[i] && tu_present(ins[i]) && !tu_unchanged(ins[i])) changed = ins[i]->name;
    tu_check(!changed, x->name, x->seed, "%s modified its input %s", what, changed ? changed : "");
}

/* la_supports for one op; 1 = go on, 0 = skipped (counted) or failed. */
static int supported(ctx_t *x, la_op_t op, const la_problem_t *p, const la_tensors_t *t, const char *what) {
    la_status_t st = la_supports(x->h, op, p, t);
    if (st == LA_STATUS_SUCCESS) return 1;
    if (la_status_category(st) == 200) {
        tu_skip();
        if (tu_verbose()) printf("  skip [%s] %s: %s\n", x->name, what, la_last_error(x->h));
        return 0;
    }
    tu_check(0, x->name, x->seed, "la_supports(%s) returned %d (%s): %s", what, (int)st, la_status_string(st),
             la_last_error(x->h));
    return 0;
}

static la_tensors_t fwd_tensors(ctx_t *x) {
    la_tensors_t t;
    la_tensors_init(&t);
    if (x->c->tags & T_ALLFIELDS) { /* everything: the op must ignore what it does not use */
        la_tensor_t *f[NT] = {
            &t.q,  &t.k,  &t.v,  &t.ld,   &t.ldv,   &t.initial_state,  &t.o, &t.final_state, &t.d_o, &t.d_final_state,
            &t.dq, &t.dk, &t.dv, &t.d_ld, &t.d_ldv, &t.d_initial_state};
        for (int i = 0; i < NT; i++) *f[i] = tu_view(&x->T[i]);
        return t;
    }
    t.q = tu_view(&x->T[Q]);
    t.k = tu_view(&x->T[K]);
    t.v = tu_view(&x->T[V]);
    t.ld = tu_view(&x->T[LD]);
    t.ldv = tu_view(&x->T[LDV]);
    t.initial_state = tu_view(&x->T[S0]);
    t.o = tu_view(&x->T[O]);
    t.final_state = tu_view(&x->T[SN]);
    return t;
}

static la_tensors_t bwd_tensors(ctx_t *x) {
    la_tensors_t t = fwd_tensors(x);
    if (x->c->tags & T_ALLFIELDS) return t;
    t.o.data = NULL;
    t.final_state.data = NULL;
    t.d_o = tu_view(&x->T[DO]);
    t.d_final_state = tu_view(&x->T[DSN]);
    t.dq = tu_view(&x->T[DQ]);
    t.dk = tu_view(&x->T[DK]);
    t.dv = tu_view(&x->T[DV]);
    t.d_ld = tu_view(&x->T[DLD]);
    t.d_ldv = tu_view(&x->T[DLDV]);
    t.d_initial_state = tu_view(&x->T[DS0]);
    return t;
}

/* Fill a log-decay tensor by mode (f32, all <= 0). */
static void fill_decay(tu_tensor_t *t, tu_rng_t *r, int mode, la_decay_t kind) {
    int64_t i = 0;
    for (int64_t a = 0; a < t->dim[0]; a++)
        for (int64_t b = 0; b < t->dim[1]; b++)
            for (int64_t c = 0; c < t->dim[2]; c++)
                for (int64_t d = 0; d < t->dim[3]; d++, i++) {
                    double g = 0, z = tu_normal(r), u = tu_uniform(r);
                    int head = kind == LA_DECAY_SCALAR_HEAD;
                    switch (mode) {
                    case M_GATE: g = head ? -exp(u * log(1e-3)) : tu_logsigmoid(z); break;
                    case M_SLOW: g = head ? -exp(log(1e-5) + u * log(1e3)) : tu_logsigmoid(z) / 16; break;
                    case M_SHARP: g = head ? -exp(u * log(20.0)) : tu_logsigmoid(z / 0.1); break;
                    case M_FLAT: g = tu_logsigmoid(z / 10); break;
                    case M_ZERO: g = 0.0; break;
                    case M_TINY: g = -1e-6; break;
                    case M_HUGE: g = -20.0; break;
                    case M_ALIBI: g = -pow(2.0, -8.0 * (double)(b + 1) / (double)t->dim[1]); break;
                    default: {
                        static const double cyc[3] = {0.0, -1e-6, -20.0};
                        g = i % 4 < 3 ? cyc[i % 4] : tu_logsigmoid(z);
                    }
                    }
                    if (g > 0) g = 0; /* never: logsigmoid <= 0; belt and braces */
                    tu_set(t, a, b, c, d, g);
                }
}

static void alloc_like(tu_tensor_t *dst, const tu_tensor_t *src, const char *name) {
    tu_alloc_strided(dst, name, src->dtype, src->dim, src->stride);
    dst->layout = src->layout;
}

/* ---- extra checks ------------------------------------------------------------------- */

/* Forward's results (library) for comparison: o, final state (or the reference). */
static void cmp_state_to_forward(ctx_t *x, const char *what, tu_tensor_t *st, const refout_t *ref) {
    if (tu_present(&x->T[SN]) && x->fwd_ok) cmp_lib(x, what, st, &x->T[SN], 2 * x->tol->s_rel, 2 * x->tol->s_elem);
    else cmp_ref(x, what, st, ref->sN, x->tol->s_rel, x->tol->s_elem);
}

/* N decode steps (N = 1 each), the state updated in place through
 * initial_state == final_state, must give the forward's o and final state.
 * Guards against: decode using the wrong decay index, a state not carried,
 * in-place update reading half-written rows. */
static void check_decode(ctx_t *x, const refout_t *ref) {
    const bcase_t *c = x->c;
    tu_tensor_t st, od;
    if (tu_present(&x->T[S0])) {
        tu_clone(&st, &x->T[S0], "decode_state");
    } else { /* decode requires an initial state: zeros, as "absent" means */
        tu_alloc(&st, "decode_state", LA_DTYPE_F32, c->layout, x->S, x->p.heads, x->p.dim_qk, x->p.dim_v);
        tu_fill_const(&st, 0.0);
        tu_upload(&st);
    }
    alloc_like(&od, &x->T[O], "decode_o");
    tu_poison(&od);
    tu_upload(&od);
    la_problem_t p = x->p;
    p.seqlen = 1;
    int ok = 1;
    for (int64_t t = 0; t < x->p.seqlen && ok; t++) {
        la_tensors_t tt;
        la_tensors_init(&tt);
        tt.q = tu_view_at(&x->T[Q], 0, 0, t, 0);
        tt.k = tu_view_at(&x->T[K], 0, 0, t, 0);
        tt.v = tu_view_at(&x->T[V], 0, 0, t, 0);
        if (c->decay == LA_DECAY_SCALAR_HEAD) tt.ld = tu_view(&x->T[LD]);
        else if (c->decay != LA_DECAY_NONE) tt.ld = tu_view_at(&x->T[LD], 0, 0, t, 0);
        if (c->decay == LA_DECAY_VECTOR_KV) tt.ldv = tu_view_at(&x->T[LDV], 0, 0, t, 0);
        tt.initial_state = tu_view(&st);
        tt.final_state = tu_view(&st);
        tt.o = tu_view_at(&od, 0, 0, t, 0);
        if (t == 0 && !supported(x, LA_OP_DECODE, &p, &tt, "decode")) {
            ok = 0;
            break;
        }
        la_status_t s = la_decode(x->h, &p, &tt);
        if (s != LA_STATUS_SUCCESS) {
            char what[64];
            snprintf(what, sizeof what, "la_decode step %lld", (long long)t);
            status_ok(x, what, s);
            ok = 0;
        }
    }
    if (ok) {
        tu_tensor_t *outs[2] = {&st, &od};
        post_call(x, "decode", outs, 2, NULL, 0);
        /* Decode is a token-by-token fp32 recurrence: N rounded state updates,
         * so its fp32 error grows like sqrt(N) (measured: 8.7e-6 for o at
         * N = 1000, D = E = 256, slow decay).  The fp32 quantities (the state,
         * and o when it is f32) get the factor sqrt(N / 256) (at least 1);
         * half-precision o stays dominated by its final rounding. */
        double fs = sqrt((double)x->p.seqlen / 256.0);
        if (fs < 1) fs = 1;
        double fo = c->dtype == LA_DTYPE_F32 ? fs : 1.0;
        if (x->fwd_ok)
            cmp_lib(x, "decode o == forward o", &od, &x->T[O], 2 * fo * x->tol->o_rel, 2 * fo * x->tol->o_elem);
        cmp_ref(x, "decode o vs reference", &od, ref->o, fo * x->tol->o_rel, fo * x->tol->o_elem);
        if (tu_present(&x->T[SN]) && x->fwd_ok)
            cmp_lib(x, "decode state == forward final state", &st, &x->T[SN], 2 * fs * x->tol->s_rel,
                    2 * fs * x->tol->s_elem);
        else cmp_ref(x, "decode state vs reference", &st, ref->sN, fs * x->tol->s_rel, fs * x->tol->s_elem);
    }
    tu_free(&st);
    tu_free(&od);
}

/* la_state_forward == the forward's final state.  Guards against the
 * state-only path (no o) diverging from the full forward. */
static void check_state_forward(ctx_t *x, const refout_t *ref) {
    tu_tensor_t sn;
    tu_alloc(&sn, "state_forward_final", LA_DTYPE_F32, x->c->layout, x->S, x->p.heads, x->p.dim_qk, x->p.dim_v);
    la_tensors_t t;
    la_tensors_init(&t);
    t.k = tu_view(&x->T[K]);
    t.v = tu_view(&x->T[V]);
    t.ld = tu_view(&x->T[LD]);
    t.ldv = tu_view(&x->T[LDV]);
    t.initial_state = tu_view(&x->T[S0]);
    t.final_state = tu_view(&sn);
    if (supported(x, LA_OP_STATE_FORWARD, &x->p, &t, "state_forward")) {
        tu_tensor_t *outs[1] = {&sn};
        tu_tensor_t *ins[5] = {&x->T[K], &x->T[V], &x->T[LD], &x->T[LDV], &x->T[S0]};
        pre_call(outs, 1, ins, 5);
        if (status_ok(x, "la_state_forward", la_state_forward(x->h, &x->p, &t))) {
            post_call(x, "la_state_forward", outs, 1, ins, 5);
            cmp_state_to_forward(x, "state_forward == forward final state", &sn, ref);
        }
    }
    tu_free(&sn);
}

/* la_state_backward == la_backward with d_o = 0 (dk, dv, d_ld, d_ldv,
 * d_initial_state), and both against the reference with d_o absent; the
 * backward's dq must then be exactly 0.  Guards against the state-only
 * backward dropping the intra-chunk terms or the decay gradient's <S', dS'>. */
static void check_state_backward(ctx_t *x) {
    const bcase_t *c = x->c;
    tu_tensor_t dsn_local, zero;
    tu_tensor_t *dsn = &x->T[DSN];
    tu_tensor_t a[5], b[6]; /* state_backward outs: dk dv dld dldv ds0; backward: + dq */
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    int local_dsn = !tu_present(&x->T[DSN]);
    if (local_dsn) { /* the state backward needs a final-state gradient */
        tu_alloc(&dsn_local, "d_final_state(local)", LA_DTYPE_F32, c->layout, x->S, x->p.heads, x->p.dim_qk,
                 x->p.dim_v);
        tu_fill_normal(&dsn_local, &x->rng, 0.1);
        tu_upload(&dsn_local);
        dsn = &dsn_local;
    }
    alloc_like(&zero, &x->T[DO], "d_o(zero)");
    tu_fill_const(&zero, 0.0);
    tu_upload(&zero);
    const int srcs[5] = {DK, DV, DLD, DLDV, DS0};
    for (int i = 0; i < 5; i++)
        if (tu_present(&x->T[srcs[i]])) {
            alloc_like(&a[i], &x->T[srcs[i]], TNAME[srcs[i]]);
            alloc_like(&b[i], &x->T[srcs[i]], TNAME[srcs[i]]);
        }
    alloc_like(&b[5], &x->T[DQ], "dq");

    refout_t ref;
    reference(x, c->decay, &x->T[LD], &x->T[LDV], tu_present(&x->T[S0]) ? &x->T[S0] : NULL, NULL, dsn, 1, &ref);

    la_tensors_t t;
    la_tensors_init(&t);
    t.k = tu_view(&x->T[K]);
    t.v = tu_view(&x->T[V]);
    t.ld = tu_view(&x->T[LD]);
    t.ldv = tu_view(&x->T[LDV]);
    t.initial_state = tu_view(&x->T[S0]);
    t.d_final_state = tu_view(dsn);
    t.dk = tu_view(&a[0]);
    t.dv = tu_view(&a[1]);
    t.d_ld = tu_view(&a[2]);
    t.d_ldv = tu_view(&a[3]);
    t.d_initial_state = tu_view(&a[4]);
    tu_tensor_t *ins[6] = {&x->T[K], &x->T[V], &x->T[LD], &x->T[LDV], &x->T[S0], dsn};
    tu_tensor_t *outa[5] = {&a[0], &a[1], &a[2], &a[3], &a[4]};
    int sb_ok = 0;
    if (supported(x, LA_OP_STATE_BACKWARD, &x->p, &t, "state_backward")) {
        pre_call(outa, 5, ins, 6);
        if (status_ok(x, "la_state_backward", la_state_backward(x->h, &x->p, &t))) {
            sb_ok = 1;
            post_call(x, "la_state_backward", outa, 5, ins, 6);
            const tolset_t *tl = x->tol;
            cmp_ref(x, "state_backward dk vs ref", &a[0], ref.dk, tl->g_rel, tl->g_elem);
            cmp_ref(x, "state_backward dv vs ref", &a[1], ref.dv, tl->g_rel, tl->g_elem);
            if (tu_present(&a[2]))
                cmp_ref_sc(x, "state_backward d_ld vs ref", &a[2], ref.dld, ref.dld_sc, x->tol->d_rel, x->tol->d_elem);
            if (tu_present(&a[3]))
                cmp_ref_sc(x, "state_backward d_ldv vs ref", &a[3], ref.dldv, ref.dldv_sc, x->tol->d_rel,
                           x->tol->d_elem);
            if (tu_present(&a[4]))
                cmp_ref(x, "state_backward d_initial_state vs ref", &a[4], ref.ds0, x->tol->ds_rel, x->tol->ds_elem);
        }
    }
    /* the same through la_backward with an all-zero d_o */
    la_tensors_t tb = t;
    tb.q = tu_view(&x->T[Q]);
    tb.d_o = tu_view(&zero);
    tb.dq = tu_view(&b[5]);
    tb.dk = tu_view(&b[0]);
    tb.dv = tu_view(&b[1]);
    tb.d_ld = tu_view(&b[2]);
    tb.d_ldv = tu_view(&b[3]);
    tb.d_initial_state = tu_view(&b[4]);
    tu_tensor_t *outb[6] = {&b[0], &b[1], &b[2], &b[3], &b[4], &b[5]};
    if (sb_ok && supported(x, LA_OP_BACKWARD, &x->p, &tb, "backward(d_o=0)")) {
        pre_call(outb, 6, NULL, 0);
        if (status_ok(x, "la_backward(d_o = 0)", la_backward(x->h, &x->p, &tb))) {
            post_call(x, "la_backward(d_o = 0)", outb, 6, ins, 0);
            const tolset_t *tl = x->tol;
            static const char *what[5] = {"state_backward dk == backward(d_o=0) dk",
                                          "state_backward dv == backward(d_o=0) dv",
                                          "state_backward d_ld == backward(d_o=0) d_ld",
                                          "state_backward d_ldv == backward(d_o=0) d_ldv",
                                          "state_backward d_initial_state == backward(d_o=0)"};
            const double rel[5] = {2 * tl->g_rel, 2 * tl->g_rel, 2 * x->tol->d_rel, 2 * x->tol->d_rel,
                                   2 * x->tol->ds_rel};
            const double el[5] = {2 * tl->g_elem, 2 * tl->g_elem, 2 * x->tol->d_elem, 2 * x->tol->d_elem,
                                  2 * x->tol->ds_elem};
            const double *sc[5] = {NULL, NULL, ref.dld_sc, ref.dldv_sc, NULL};
            for (int i = 0; i < 5; i++)
                if (tu_present(&a[i])) cmp_lib_sc(x, what[i], &a[i], &b[i], sc[i], rel[i], el[i]);
            /* dq with d_o = 0 is exactly zero */
            tu_download(&b[5]);
            double worst = 0;
            int64_t nz = 0;
            for (int64_t i0 = 0; i0 < b[5].dim[0]; i0++)
                for (int64_t i1 = 0; i1 < b[5].dim[1]; i1++)
                    for (int64_t i2 = 0; i2 < b[5].dim[2]; i2++)
                        for (int64_t i3 = 0; i3 < b[5].dim[3]; i3++) {
                            double vv = tu_get(&b[5], i0, i1, i2, i3);
                            if (!(vv == 0.0)) {
                                nz++;
                                if (!(fabs(vv) <= worst)) worst = fabs(vv);
                            }
                        }
            tu_check(nz == 0, x->name, x->seed, "backward(d_o = 0): dq has %lld non-zero values (worst %g)",
                     (long long)nz, worst);
        }
    }
    refout_free(&ref);
    for (int i = 0; i < 5; i++) {
        if (tu_present(&a[i])) tu_free(&a[i]);
        if (tu_present(&b[i])) tu_free(&b[i]);
    }
    tu_free(&b[5]);
    tu_free(&zero);
    if (local_dsn) tu_free(&dsn_local);
}

/* Forward over [0, m) then [m, N) with the state carried == forward over
 * [0, N); backward over [m, N) then [0, m) with the state gradient carried
 * (d_initial_state of the second half -> d_final_state of the first) ==
 * backward over [0, N).  Guards against a mis-handled initial state in the
 * middle of a chunk and a wrong d_initial_state. */
static void check_split(ctx_t *x, const refout_t *ref) {
    const bcase_t *c = x->c;
    const int64_t N = x->p.seqlen;
    const int64_t m = N >= 130 ? 77 : N / 2; /* not chunk aligned */
    if (m < 1 || m >= N) return;
    tu_tensor_t mid, fin, osp;
    tu_alloc(&mid, "split_mid_state", LA_DTYPE_F32, c->layout, x->S, x->p.heads, x->p.dim_qk, x->p.dim_v);
    tu_alloc(&fin, "split_final_state", LA_DTYPE_F32, c->layout, x->S, x->p.heads, x->p.dim_qk, x->p.dim_v);
    alloc_like(&osp, &x->T[O], "split_o");
    tu_poison(&mid);
    tu_poison(&fin);
    tu_poison(&osp);
    tu_upload(&mid);
    tu_upload(&fin);
    tu_upload(&osp);
    int is_tokdecay = c->decay != LA_DECAY_NONE && c->decay != LA_DECAY_SCALAR_HEAD;
    la_problem_t p1 = x->p, p2 = x->p;
    p1.seqlen = m;
    p2.seqlen = N - m;
    la_tensors_t t1, t2;
    la_tensors_init(&t1);
    la_tensors_init(&t2);
    t1.q = tu_view(&x->T[Q]);
    t1.k = tu_view(&x->T[K]);
    t1.v = tu_view(&x->T[V]);
    t1.ld = tu_view(&x->T[LD]);
    t1.ldv = tu_view(&x->T[LDV]);
    t1.initial_state = tu_view(&x->T[S0]);
    t1.o = tu_view(&osp);
    t1.final_state = tu_view(&mid);
    t2.q = tu_view_at(&x->T[Q], 0, 0, m, 0);
    t2.k = tu_view_at(&x->T[K], 0, 0, m, 0);
    t2.v = tu_view_at(&x->T[V], 0, 0, m, 0);
    t2.ld = is_tokdecay ? tu_view_at(&x->T[LD], 0, 0, m, 0) : tu_view(&x->T[LD]);
    t2.ldv = tu_view_at(&x->T[LDV], 0, 0, m, 0);
    t2.initial_state = tu_view(&mid);
    t2.o = tu_view_at(&osp, 0, 0, m, 0);
    t2.final_state = tu_view(&fin);
    int ok = status_ok(x, "split forward [0,m)", la_forward(x->h, &p1, &t1)) &&
             status_ok(x, "split forward [m,N)", la_forward(x->h, &p2, &t2));
    if (ok) {
        tu_tensor_t *outs[3] = {&mid, &fin, &osp};
        post_call(x, "split forward", outs, 3, NULL, 0);
    }
    if (ok && x->fwd_ok) {
        cmp_lib(x, "split forward o == forward o", &osp, &x->T[O], 2 * x->tol->o_rel, 2 * x->tol->o_elem);
        if (tu_present(&x->T[SN]))
            cmp_lib(x, "split forward final state == forward", &fin, &x->T[SN], 2 * x->tol->s_rel, 2 * x->tol->s_elem);
    }
    /* backward, second half first */
    if (ok && x->bwd_ok) {
        tu_tensor_t dmid, ds0, dq, dk, dv, dld1, dld2, dldv;
        memset(&ds0, 0, sizeof ds0);
        memset(&dld1, 0, sizeof dld1);
        memset(&dld2, 0, sizeof dld2);
        memset(&dldv, 0, sizeof dldv);
        tu_alloc(&dmid, "split_d_mid", LA_DTYPE_F32, c->layout, x->S, x->p.heads, x->p.dim_qk, x->p.dim_v);
        alloc_like(&dq, &x->T[DQ], "split_dq");
        alloc_like(&dk, &x->T[DK], "split_dk");
        alloc_like(&dv, &x->T[DV], "split_dv");
        if (tu_present(&x->T[DS0])) alloc_like(&ds0, &x->T[DS0], "split_ds0");
        if (tu_present(&x->T[DLD])) {
            alloc_like(&dld1, &x->T[DLD], "split_dld");
            if (!is_tokdecay) alloc_like(&dld2, &x->T[DLD], "split_dld2");
        }
        if (tu_present(&x->T[DLDV])) alloc_like(&dldv, &x->T[DLDV], "split_dldv");
        tu_tensor_t *outs[8] = {&dmid, &dq, &dk, &dv, &ds0, &dld1, &dld2, &dldv};
        pre_call(outs, 8, NULL, 0);
        la_tensors_t b1 = t1, b2 = t2;
        b1.o.data = b2.o.data = NULL;
        b1.final_state.data = b2.final_state.data = NULL;
        b2.d_o = tu_view_at(&x->T[DO], 0, 0, m, 0);
        b2.d_final_state = tu_view(&x->T[DSN]);
        b2.dq = tu_view_at(&dq, 0, 0, m, 0);
        b2.dk = tu_view_at(&dk, 0, 0, m, 0);
        b2.dv = tu_view_at(&dv, 0, 0, m, 0);
        b2.d_ld = is_tokdecay ? tu_view_at(&dld1, 0, 0, m, 0) : tu_view(&dld2);
        b2.d_ldv = tu_view_at(&dldv, 0, 0, m, 0);
        b2.d_initial_state = tu_view(&dmid);
        b1.d_o = tu_view(&x->T[DO]);
        b1.d_final_state = tu_view(&dmid);
        b1.dq = tu_view(&dq);
        b1.dk = tu_view(&dk);
        b1.dv = tu_view(&dv);
        b1.d_ld = tu_view(&dld1);
        b1.d_ldv = tu_view(&dldv);
        b1.d_initial_state = tu_view(&ds0);
        if (status_ok(x, "split backward [m,N)", la_backward(x->h, &p2, &b2)) &&
            status_ok(x, "split backward [0,m)", la_backward(x->h, &p1, &b1))) {
            post_call(x, "split backward", outs, 8, NULL, 0);
            const tolset_t *tl = x->tol;
            cmp_lib(x, "split backward dq == backward", &dq, &x->T[DQ], 2 * tl->g_rel, 2 * tl->g_elem);
            cmp_lib(x, "split backward dk == backward", &dk, &x->T[DK], 2 * tl->g_rel, 2 * tl->g_elem);
            cmp_lib(x, "split backward dv == backward", &dv, &x->T[DV], 2 * tl->g_rel, 2 * tl->g_elem);
            if (tu_present(&ds0))
                cmp_lib(x, "split backward d_initial_state == backward", &ds0, &x->T[DS0], 2 * x->tol->ds_rel,
                        2 * x->tol->ds_elem);
            if (tu_present(&dld1)) {
                if (!is_tokdecay) { /* SCALAR_HEAD: the two halves' d_ld add up */
                    tu_download(&dld1);
                    tu_download(&dld2);
                    for (int64_t hh = 0; hh < x->p.heads; hh++)
                        tu_set(&dld1, 0, hh, 0, 0, tu_get(&dld1, 0, hh, 0, 0) + tu_get(&dld2, 0, hh, 0, 0));
                    tu_upload(&dld1);
                }
                cmp_lib_sc(x, "split backward d_ld == backward", &dld1, &x->T[DLD], ref->dld_sc, 2 * x->tol->d_rel,
                           2 * x->tol->d_elem);
            }
            if (tu_present(&dldv))
                cmp_lib_sc(x, "split backward d_ldv == backward", &dldv, &x->T[DLDV], ref->dldv_sc, 2 * x->tol->d_rel,
                           2 * x->tol->d_elem);
        }
        for (int i = 0; i < 8; i++)
            if (tu_present(outs[i])) tu_free(outs[i]);
    }
    tu_free(&mid);
    tu_free(&fin);
    tu_free(&osp);
}

/* SCALAR_HEAD == SCALAR_TOKEN with the head's value broadcast over batch and
 * tokens: same o, final state, dq, dk, dv, d_initial_state, and the head's
 * d_ld equals the sum over batch and tokens of the token d_ld.  Guards
 * against the two scalar paths disagreeing on decay indexing or reduction. */
static void check_headtok(ctx_t *x, const refout_t *ref) {
    const bcase_t *c = x->c;
    const int64_t B = x->p.batch, H = x->p.heads, N = x->p.seqlen;
    tu_tensor_t ldt, dldt, o2, sn2, dq2, dk2, dv2, ds02;
    memset(&dldt, 0, sizeof dldt);
    memset(&sn2, 0, sizeof sn2);
    memset(&ds02, 0, sizeof ds02);
    tu_alloc(&ldt, "ld(token broadcast)", LA_DTYPE_F32, c->layout, B, H, N, 1);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t t = 0; t < N; t++) tu_set(&ldt, b, h, t, 0, tu_get(&x->T[LD], 0, h, 0, 0));
    tu_upload(&ldt);
    if (tu_present(&x->T[DLD])) tu_alloc(&dldt, "d_ld(token)", LA_DTYPE_F32, c->layout, B, H, N, 1);
    alloc_like(&o2, &x->T[O], "o(token)");
    if (tu_present(&x->T[SN])) alloc_like(&sn2, &x->T[SN], "final_state(token)");
    alloc_like(&dq2, &x->T[DQ], "dq(token)");
    alloc_like(&dk2, &x->T[DK], "dk(token)");
    alloc_like(&dv2, &x->T[DV], "dv(token)");
    if (tu_present(&x->T[DS0])) alloc_like(&ds02, &x->T[DS0], "d_initial_state(token)");
    la_problem_t p = x->p;
    p.decay = LA_DECAY_SCALAR_TOKEN;
    la_tensors_t t = fwd_tensors(x);
    t.ld = tu_view(&ldt);
    t.o = tu_view(&o2);
    t.final_state = tu_view(&sn2);
    tu_tensor_t *outs[2] = {&o2, &sn2};
    const tolset_t *tl = x->tol;
    if (supported(x, LA_OP_FORWARD, &p, &t, "forward(token)")) {
        pre_call(outs, 2, NULL, 0);
        if (status_ok(x, "la_forward(SCALAR_TOKEN broadcast)", la_forward(x->h, &p, &t)) && x->fwd_ok) {
            post_call(x, "la_forward(SCALAR_TOKEN broadcast)", outs, 2, NULL, 0);
            cmp_lib(x, "head == token: o", &o2, &x->T[O], 2 * tl->o_rel, 2 * tl->o_elem);
            if (tu_present(&sn2))
                cmp_lib(x, "head == token: final state", &sn2, &x->T[SN], 2 * x->tol->s_rel, 2 * x->tol->s_elem);
        }
    }
    la_tensors_t tb = bwd_tensors(x);
    tb.ld = tu_view(&ldt);
    tb.dq = tu_view(&dq2);
    tb.dk = tu_view(&dk2);
    tb.dv = tu_view(&dv2);
    tb.d_ld = tu_view(&dldt);
    tb.d_initial_state = tu_view(&ds02);
    tu_tensor_t *outb[5] = {&dq2, &dk2, &dv2, &dldt, &ds02};
    if (x->bwd_ok && supported(x, LA_OP_BACKWARD, &p, &tb, "backward(token)")) {
        pre_call(outb, 5, NULL, 0);
        if (status_ok(x, "la_backward(SCALAR_TOKEN broadcast)", la_backward(x->h, &p, &tb))) {
            post_call(x, "la_backward(SCALAR_TOKEN broadcast)", outb, 5, NULL, 0);
            cmp_lib(x, "head == token: dq", &dq2, &x->T[DQ], 2 * tl->g_rel, 2 * tl->g_elem);
            cmp_lib(x, "head == token: dk", &dk2, &x->T[DK], 2 * tl->g_rel, 2 * tl->g_elem);
            cmp_lib(x, "head == token: dv", &dv2, &x->T[DV], 2 * tl->g_rel, 2 * tl->g_elem);
            if (tu_present(&ds02))
                cmp_lib(x, "head == token: d_initial_state", &ds02, &x->T[DS0], 2 * x->tol->ds_rel,
                        2 * x->tol->ds_elem);
            if (tu_present(&dldt)) {
                double *sum = xcalloc((size_t)H, sizeof(double)), *lib = xcalloc((size_t)H, sizeof(double));
                int finite = 1;
                for (int64_t h = 0; h < H; h++) {
                    for (int64_t b = 0; b < B; b++)
                        for (int64_t tt = 0; tt < N; tt++) sum[h] += tu_get(&dldt, b, h, tt, 0);
                    finite &= isfinite(sum[h]) != 0;
                }
                tu_download(&x->T[DLD]);
                tu_gather_all(&x->T[DLD], lib);
                if (tu_check(finite, x->name, x->seed, "head == token: token d_ld not finite"))
                    tu_check_close_scaled(x->name, x->seed, "head == token: d_ld[h] == sum of token d_ld", lib, sum,
                                          ref->dld_sc, H, NULL, 2 * x->tol->d_rel, 2 * x->tol->d_elem);
                free(sum);
                free(lib);
            }
        }
    }
    tu_tensor_t *all[9] = {&ldt, &dldt, &o2, &sn2, &dq2, &dk2, &dv2, &ds02, NULL};
    for (int i = 0; all[i]; i++)
        if (tu_present(all[i])) tu_free(all[i]);
}

/* A packed batch == one call per sequence (B = 1, N = its length), forward
 * and backward, states per sequence; empty sequences: final = initial and
 * d_initial = d_final.  Guards against sequences leaking into each other
 * across cu_seqlens boundaries (state, decay prefix, chunk tails). */
static void check_varlen(ctx_t *x, const refout_t *ref) {
    const bcase_t *c = x->c;
    const int64_t H = x->p.heads;
    const int is_tokdecay = c->decay != LA_DECAY_NONE && c->decay != LA_DECAY_SCALAR_HEAD;
    tu_tensor_t o2, sn2, dq2, dk2, dv2, dld2, dldv2, ds02, dldh;
    memset(&sn2, 0, sizeof sn2);
    memset(&dld2, 0, sizeof dld2);
    memset(&dldv2, 0, sizeof dldv2);
    memset(&ds02, 0, sizeof ds02);
    memset(&dldh, 0, sizeof dldh);
    alloc_like(&o2, &x->T[O], "o(separate)");
    if (tu_present(&x->T[SN])) alloc_like(&sn2, &x->T[SN], "final_state(separate)");
    alloc_like(&dq2, &x->T[DQ], "dq(separate)");
    alloc_like(&dk2, &x->T[DK], "dk(separate)");
    alloc_like(&dv2, &x->T[DV], "dv(separate)");
    if (tu_present(&x->T[DLD])) {
        alloc_like(&dld2, &x->T[DLD], "d_ld(separate)");
        if (!is_tokdecay) alloc_like(&dldh, &x->T[DLD], "d_ld(one sequence)");
    }
    if (tu_present(&x->T[DLDV])) alloc_like(&dldv2, &x->T[DLDV], "d_ldv(separate)");
    if (tu_present(&x->T[DS0])) alloc_like(&ds02, &x->T[DS0], "d_initial_state(separate)");
    tu_tensor_t *outs[9] = {&o2, &sn2, &dq2, &dk2, &dv2, &dld2, &dldv2, &ds02, &dldh};
    pre_call(outs, 9, NULL, 0);
    double *hsum = xcalloc((size_t)H, sizeof(double));
    int ok = 1;
    for (int64_t s = 0; s < x->S && ok; s++) {
        int64_t t0 = x->cu[s], len = x->cu[s + 1] - x->cu[s];
        if (len == 0) continue; /* filled in below */
        la_problem_t p = x->p;
        p.batch = 1;
        p.seqlen = len;
        p.cu_seqlens = NULL;
        p.cu_seqlens_on_device = 0;
        p.max_seqlen = 0;
        p.num_seqs = 0;
        la_tensors_t t;
        la_tensors_init(&t);
        t.q = tu_view_at(&x->T[Q], 0, 0, t0, 0);
        t.k = tu_view_at(&x->T[K], 0, 0, t0, 0);
        t.v = tu_view_at(&x->T[V], 0, 0, t0, 0);
        t.ld = is_tokdecay ? tu_view_at(&x->T[LD], 0, 0, t0, 0) : tu_view(&x->T[LD]);
        t.ldv = tu_view_at(&x->T[LDV], 0, 0, t0, 0);
        t.initial_state = tu_view_at(&x->T[S0], s, 0, 0, 0);
        t.o = tu_view_at(&o2, 0, 0, t0, 0);
        t.final_state = tu_view_at(&sn2, s, 0, 0, 0);
        ok = status_ok(x, "separate forward", la_forward(x->h, &p, &t));
        if (!ok || !x->bwd_ok) continue;
        la_tensors_t b = t;
        b.o.data = NULL;
        b.final_state.data = NULL;
        b.d_o = tu_view_at(&x->T[DO], 0, 0, t0, 0);
        b.d_final_state = tu_view_at(&x->T[DSN], s, 0, 0, 0);
        b.dq = tu_view_at(&dq2, 0, 0, t0, 0);
        b.dk = tu_view_at(&dk2, 0, 0, t0, 0);
        b.dv = tu_view_at(&dv2, 0, 0, t0, 0);
        b.d_ld = is_tokdecay ? tu_view_at(&dld2, 0, 0, t0, 0) : tu_view(&dldh);
        b.d_ldv = tu_view_at(&dldv2, 0, 0, t0, 0);
        b.d_initial_state = tu_view_at(&ds02, s, 0, 0, 0);
        ok = status_ok(x, "separate backward", la_backward(x->h, &p, &b));
        if (ok && tu_present(&dldh)) {
            tu_download(&dldh);
            for (int64_t h = 0; h < H; h++) hsum[h] += tu_get(&dldh, 0, h, 0, 0);
        }
    }
    if (ok) {
        post_call(x, "separate calls", outs, 9, NULL, 0); /* downloads */
        /* empty sequences: final = initial (or 0), d_initial = d_final (or 0) */
        for (int64_t s = 0; s < x->S; s++) {
            if (x->cu[s + 1] != x->cu[s]) continue;
            for (int64_t h = 0; h < H; h++)
                for (int64_t d = 0; d < x->p.dim_qk; d++)
                    for (int64_t e = 0; e < x->p.dim_v; e++) {
                        if (tu_present(&sn2))
                            tu_set(&sn2, s, h, d, e, tu_present(&x->T[S0]) ? tu_get(&x->T[S0], s, h, d, e) : 0.0);
                        if (tu_present(&ds02))
                            tu_set(&ds02, s, h, d, e, tu_present(&x->T[DSN]) ? tu_get(&x->T[DSN], s, h, d, e) : 0.0);
                    }
        }
        for (int i = 0; i < 9; i++)
            if (tu_present(outs[i])) tu_upload(outs[i]);
        const tolset_t *tl = x->tol;
        if (x->fwd_ok) {
            cmp_lib(x, "packed o == separate", &x->T[O], &o2, 2 * tl->o_rel, 2 * tl->o_elem);
            if (tu_present(&sn2))
                cmp_lib(x, "packed final state == separate", &x->T[SN], &sn2, 2 * x->tol->s_rel, 2 * x->tol->s_elem);
        }
        if (x->bwd_ok) {
            cmp_lib(x, "packed dq == separate", &x->T[DQ], &dq2, 2 * tl->g_rel, 2 * tl->g_elem);
            cmp_lib(x, "packed dk == separate", &x->T[DK], &dk2, 2 * tl->g_rel, 2 * tl->g_elem);
            cmp_lib(x, "packed dv == separate", &x->T[DV], &dv2, 2 * tl->g_rel, 2 * tl->g_elem);
            if (tu_present(&ds02))
                cmp_lib(x, "packed d_initial_state == separate", &x->T[DS0], &ds02, 2 * x->tol->ds_rel,
                        2 * x->tol->ds_elem);
            if (tu_present(&dldv2))
                cmp_lib_sc(x, "packed d_ldv == separate", &x->T[DLDV], &dldv2, ref->dldv_sc, 2 * x->tol->d_rel,
                           2 * x->tol->d_elem);
            if (tu_present(&dld2)) {
                if (!is_tokdecay) {
                    for (int64_t h = 0; h < H; h++) tu_set(&dld2, 0, h, 0, 0, hsum[h]);
                    tu_upload(&dld2);
                }
                cmp_lib_sc(x, "packed d_ld == separate (head: summed)", &x->T[DLD], &dld2, ref->dld_sc,
                           2 * x->tol->d_rel, 2 * x->tol->d_elem);
            }
        }
    }
    free(hsum);
    for (int i = 0; i < 9; i++)
        if (tu_present(outs[i])) tu_free(outs[i]);
}

/* Caller workspace of exactly la_workspace_size bytes (max over forward and
 * backward), guard bytes after it: results still match the reference and
 * nothing is written past the end. */
static void check_workspace(ctx_t *x, const refout_t *ref) {
    size_t bf = 0, bb = 0;
    if (!status_ok(x, "la_workspace_size(forward)", la_workspace_size(x->h, LA_OP_FORWARD, &x->p, &bf)) ||
        !status_ok(x, "la_workspace_size(backward)", la_workspace_size(x->h, LA_OP_BACKWARD, &x->p, &bb)))
        return;
    size_t bytes = bf > bb ? bf : bb;
    if (bytes == 0) {
        tu_check(1, x->name, x->seed, "no workspace needed");
        return;
    }
    /* f32 storage of ceil(bytes/4) words; the library gets exactly `bytes`
     * from its start.  The tail up to the word boundary and the guard bytes
     * after it must stay untouched. */
    tu_tensor_t ws;
    int64_t dim[4] = {1, 1, 1, (int64_t)((bytes + 3) / 4)}, str[4] = {0, 0, 0, 1};
    tu_alloc_strided(&ws, "workspace", LA_DTYPE_F32, dim, str);
    tu_fill_bytes(&ws, 0xE7);
    tu_upload(&ws);
    if (!status_ok(x, "la_set_workspace", la_set_workspace(x->h, tu_view(&ws).data, bytes))) {
        tu_free(&ws);
        return;
    }
    tu_tensor_t *outs[8] = {&x->T[O], &x->T[SN], &x->T[DQ], &x->T[DK], &x->T[DV], &x->T[DLD], &x->T[DLDV], &x->T[DS0]};
    pre_call(outs, 8, NULL, 0);
    la_tensors_t tf = fwd_tensors(x), tb = bwd_tensors(x);
    int ok = status_ok(x, "la_forward (caller workspace)", la_forward(x->h, &x->p, &tf)) &&
             status_ok(x, "la_backward (caller workspace)", la_backward(x->h, &x->p, &tb));
    la_set_workspace(x->h, NULL, 0);
    if (ok) {
        const tolset_t *tl = x->tol;
        cmp_ref(x, "caller workspace: o", &x->T[O], ref->o, tl->o_rel, tl->o_elem);
        cmp_ref(x, "caller workspace: dq", &x->T[DQ], ref->dq, tl->g_rel, tl->g_elem);
        cmp_ref(x, "caller workspace: dv", &x->T[DV], ref->dv, tl->g_rel, tl->g_elem);
        /* the workspace region itself: guards after it intact (bytes past
         * `bytes` inside the last word are not the library's either) */
        tu_download(&ws);
        int good = 1;
        size_t bad_at = 0;
        for (size_t i = bytes; i < ws.bytes && good; i++)
            if (ws.host[TU_GUARD_BYTES + i] != 0xE7) {
                good = 0;
                bad_at = i;
            }
        char msg[256] = "";
        if (good) good = tu_outer_guards_ok(&ws, msg, sizeof msg);
        else snprintf(msg, sizeof msg, "byte %zu past the %zu-byte workspace written", bad_at, bytes);
        tu_check(good, x->name, x->seed, "workspace guard: %s", msg);
    }
    tu_free(&ws);
}

/* ---- one case ------------------------------------------------------------------------ */

static void run_case(const bcase_t *c, la_handle_t *h, la_backend_t backend, uint64_t base_seed) {
    ctx_t X;
    ctx_t *x = &X;
    memset(x, 0, sizeof *x);
    x->c = c;
    x->name = c->name;
    x->seed = tu_hash_str(c->name) ^ base_seed;
    x->h = h;
    x->backend = backend;
    x->tol = tu_tolerances(c->dtype, backend);
    tu_rng_seed(&x->rng, x->seed);

    la_problem_init(&x->p);
    x->p.batch = c->B;
    x->p.heads = c->H;
    x->p.seqlen = c->N;
    x->p.dim_qk = c->D;
    x->p.dim_v = c->E;
    x->p.decay = c->decay;
    x->p.scale = c->scale != 0 ? c->scale : 1.0f;
    x->S = c->B;
    if (c->nseq > 0) {
        x->packed = 1;
        x->S = c->nseq;
        x->cu[0] = 0;
        for (int i = 0; i < c->nseq; i++) x->cu[i + 1] = x->cu[i] + c->lens[i];
        if (c->B != 1 || x->cu[c->nseq] != c->N) {
            tu_check(0, c->name, x->seed, "bad table entry: packed case needs B = 1 and N = sum of lengths");
            return;
        }
        x->p.cu_seqlens = x->cu;
        x->p.num_seqs = c->nseq;
        /* On the GPU, every other packed case passes its offsets in device
         * memory (read there, nothing copied or awaited), half of those with
         * the longest-sequence hint: both must give the host offsets' results. */
        const tu_mem_ops_t *mops = tu_get_mem_ops();
        if (backend == LA_BACKEND_CUDA && mops && (x->seed & 1)) {
            const size_t bytes = (size_t)(c->nseq + 1) * sizeof(int64_t);
            x->cu_dev = mops->alloc(bytes);
            mops->to_device(x->cu_dev, x->cu, bytes);
            x->p.cu_seqlens = (const int64_t *)x->cu_dev;
            x->p.cu_seqlens_on_device = 1;
            if (x->seed & 2)
                for (int i = 0; i < c->nseq; i++)
                    if (c->lens[i] > x->p.max_seqlen) x->p.max_seqlen = c->lens[i];
        }
    }
    const int64_t B = c->B, H = c->H, N = c->N, D = c->D, E = c->E, S = x->S;
    tu_tensor_t *T = x->T;
    tu_alloc(&T[Q], "q", c->dtype, c->layout, B, H, N, D);
    tu_alloc(&T[K], "k", c->dtype, c->layout, B, H, N, D);
    tu_alloc(&T[V], "v", c->dtype, c->layout, B, H, N, E);
    tu_alloc(&T[O], "o", c->dtype, c->layout, B, H, N, E);
    tu_alloc(&T[DO], "d_o", c->dtype, c->layout, B, H, N, E);
    tu_alloc(&T[DQ], "dq", c->dtype, c->layout, B, H, N, D);
    tu_alloc(&T[DK], "dk", c->dtype, c->layout, B, H, N, D);
    tu_alloc(&T[DV], "dv", c->dtype, c->layout, B, H, N, E);
    int64_t ld_dims[4] = {0, 0, 0, 0};
    switch (c->decay) {
    case LA_DECAY_SCALAR_HEAD:
        ld_dims[0] = 1;
        ld_dims[1] = H;
        ld_dims[2] = 1;
        ld_dims[3] = 1;
        break;
    case LA_DECAY_SCALAR_TOKEN:
        ld_dims[0] = B;
        ld_dims[1] = H;
        ld_dims[2] = N;
        ld_dims[3] = 1;
        break;
    case LA_DECAY_VECTOR_K:
    case LA_DECAY_VECTOR_KV:
        ld_dims[0] = B;
        ld_dims[1] = H;
        ld_dims[2] = N;
        ld_dims[3] = D;
        break;
    default: break;
    }
    if (c->decay != LA_DECAY_NONE) {
        tu_alloc(&T[LD], "ld", LA_DTYPE_F32, c->layout, ld_dims[0], ld_dims[1], ld_dims[2], ld_dims[3]);
        if (c->tags & T_LEARN)
            tu_alloc(&T[DLD], "d_ld", LA_DTYPE_F32, c->layout, ld_dims[0], ld_dims[1], ld_dims[2], ld_dims[3]);
    }
    if (c->decay == LA_DECAY_VECTOR_KV) {
        tu_alloc(&T[LDV], "ldv", LA_DTYPE_F32, c->layout, B, H, N, E);
        if (c->tags & T_LEARN) tu_alloc(&T[DLDV], "d_ldv", LA_DTYPE_F32, c->layout, B, H, N, E);
    }
    if (c->tags & T_INIT) tu_alloc(&T[S0], "initial_state", LA_DTYPE_F32, c->layout, S, H, D, E);
    if (c->tags & T_FINAL) tu_alloc(&T[SN], "final_state", LA_DTYPE_F32, c->layout, S, H, D, E);
    if (c->tags & T_DFINAL) tu_alloc(&T[DSN], "d_final_state", LA_DTYPE_F32, c->layout, S, H, D, E);
    if (c->tags & T_DINIT) tu_alloc(&T[DS0], "d_initial_state", LA_DTYPE_F32, c->layout, S, H, D, E);

    /* inputs: random, never zero, already rounded to their dtype */
    tu_fill_normal(&T[Q], &x->rng, 0.1);
    tu_fill_normal(&T[K], &x->rng, 0.1);
    tu_fill_normal(&T[V], &x->rng, 0.1);
    tu_fill_normal(&T[DO], &x->rng, 0.1);
    if (tu_present(&T[LD])) fill_decay(&T[LD], &x->rng, c->mode, c->decay);
    if (tu_present(&T[LDV])) fill_decay(&T[LDV], &x->rng, c->mode, c->decay);
    if (tu_present(&T[S0])) tu_fill_uniform(&T[S0], &x->rng, -0.5, 0.5);
    if (tu_present(&T[DSN])) tu_fill_normal(&T[DSN], &x->rng, 0.1);
    for (int i = 0; i < NT; i++)
        if (tu_present(&T[i])) tu_upload(&T[i]);

    if (c->tags & T_THREADS1 && backend == LA_BACKEND_CPU) la_set_num_threads(h, 1);

    la_tensors_t tf = fwd_tensors(x), tb = bwd_tensors(x);
    int sup_f = supported(x, LA_OP_FORWARD, &x->p, &tf, "forward");
    int sup_b = supported(x, LA_OP_BACKWARD, &x->p, &tb, "backward");

    refout_t ref;
    reference(x, c->decay, &T[LD], &T[LDV], tu_present(&T[S0]) ? &T[S0] : NULL, &T[DO],
              tu_present(&T[DSN]) ? &T[DSN] : NULL, sup_b, &ref);
    const tolset_t *tl = x->tol;

    /* ---- forward ---- */
    tu_tensor_t *fins[6] = {&T[Q], &T[K], &T[V], &T[LD], &T[LDV], &T[S0]};
    tu_tensor_t *fout[2] = {&T[O], &T[SN]};
    if (sup_f) {
        pre_call(fout, 2, fins, 6);
        tally_plan(h, LA_OP_FORWARD, &x->p, &tf);
        if (status_ok(x, "la_forward", la_forward(h, &x->p, &tf))) {
            post_call(x, "la_forward", fout, 2, fins, 6);
            int o_ok = cmp_ref(x, "o", &T[O], ref.o, tl->o_rel, tl->o_elem);
            check_rounding(x, "o", &T[O], ref.o);
            int s_ok = 1;
            if (tu_present(&T[SN])) s_ok = cmp_ref(x, "final_state", &T[SN], ref.sN, x->tol->s_rel, x->tol->s_elem);
            x->fwd_ok = o_ok && s_ok;
            /* self-check on the real output: one element off by 10x the
             * tolerance (relative to the norm) must fail the comparison */
            if (c->tags & T_SELFCHECK) {
                int64_t n = tu_numel(&T[O]);
                double *buf = xcalloc((size_t)n, sizeof(double));
                tu_gather_all(&T[O], buf);
                tu_metrics_t m;
                tu_compute_metrics(buf, ref.o, n, &m);
                buf[n / 2] += 10 * tl->o_rel * m.ref_l2;
                tu_compute_metrics(buf, ref.o, n, &m);
                tu_check(!tu_metrics_ok(&m, tl->o_rel, tl->o_elem) && m.max_idx == n / 2, x->name, x->seed,
                         "self-check: a 10x-tolerance error in one element of o was NOT detected (rel %.3g)", m.rel_l2);
                free(buf);
            }
            /* determinism: the same call again gives the same bits */
            tu_tensor_t o1, s1;
            tu_clone(&o1, &T[O], "o(first run)");
            if (tu_present(&T[SN])) tu_clone(&s1, &T[SN], "final_state(first run)");
            pre_call(fout, 2, NULL, 0);
            if (status_ok(x, "la_forward (second run)", la_forward(h, &x->p, &tf))) {
                tu_download(&T[O]);
                tu_download(&T[SN]);
                int same = tu_same_bytes(&o1, &T[O]) && (!tu_present(&T[SN]) || tu_same_bytes(&s1, &T[SN]));
                tu_check(same, x->name, x->seed, "forward not deterministic: two runs differ");
            }
            tu_free(&o1);
            if (tu_present(&T[SN])) tu_free(&s1);
        }
    }

    /* ---- backward ---- */
    tu_tensor_t *bins[8] = {&T[Q], &T[K], &T[V], &T[LD], &T[LDV], &T[S0], &T[DO], &T[DSN]};
    tu_tensor_t *bout[6] = {&T[DQ], &T[DK], &T[DV], &T[DLD], &T[DLDV], &T[DS0]};
    if (sup_b) {
        pre_call(bout, 6, bins, 8);
        tally_plan(h, LA_OP_BACKWARD, &x->p, &tb);
        if (status_ok(x, "la_backward", la_backward(h, &x->p, &tb))) {
            post_call(x, "la_backward", bout, 6, bins, 8);
            int ok = cmp_ref(x, "dq", &T[DQ], ref.dq, tl->g_rel, tl->g_elem);
            ok &= cmp_ref(x, "dk", &T[DK], ref.dk, tl->g_rel, tl->g_elem);
            ok &= cmp_ref(x, "dv", &T[DV], ref.dv, tl->g_rel, tl->g_elem);
            check_rounding(x, "dq", &T[DQ], ref.dq);
            check_rounding(x, "dk", &T[DK], ref.dk);
            check_rounding(x, "dv", &T[DV], ref.dv);
            if (tu_present(&T[DLD]))
                ok &= cmp_ref_sc(x, "d_ld", &T[DLD], ref.dld, ref.dld_sc, x->tol->d_rel, x->tol->d_elem);
            /* The ALiBi rows hold d_ld to 1e-4 of itself, not of its terms' scale
             * (at f32, D = E = 256 it once was 5.6e-4 of itself on the GPU). */
            if (tu_present(&T[DLD]) && c->mode == M_ALIBI && c->dtype == LA_DTYPE_F32)
                ok &= cmp_ref(x, "d_ld relative to itself", &T[DLD], ref.dld, 1e-4, 1e-4);
            if (tu_present(&T[DLDV]))
                ok &= cmp_ref_sc(x, "d_ldv", &T[DLDV], ref.dldv, ref.dldv_sc, x->tol->d_rel, x->tol->d_elem);
            if (tu_present(&T[DS0]))
                ok &= cmp_ref(x, "d_initial_state", &T[DS0], ref.ds0, x->tol->ds_rel, x->tol->ds_elem);
            x->bwd_ok = ok;
            /* determinism: run again, require identical bits */
            tu_tensor_t first[6];
            memset(first, 0, sizeof first);
            for (int i = 0; i < 6; i++)
                if (tu_present(bout[i])) tu_clone(&first[i], bout[i], "first run");
            pre_call(bout, 6, NULL, 0);
            if (status_ok(x, "la_backward (second run)", la_backward(h, &x->p, &tb))) {
                const char *diff = NULL;
                for (int i = 0; i < 6 && !diff; i++)
                    if (tu_present(bout[i])) {
                        tu_download(bout[i]);
                        if (!tu_same_bytes(&first[i], bout[i])) diff = bout[i]->name;
                    }
                tu_check(!diff, x->name, x->seed, "backward not deterministic: %s differs between two runs",
                         diff ? diff : "");
                /* the comparisons above used the first run's results; the
                 * tensors now hold the second run's, bit-identical or failed */
            }
            for (int i = 0; i < 6; i++)
                if (tu_present(&first[i])) tu_free(&first[i]);
        }
    }

    /* ---- equivalences ---- */
    if (sup_f && (c->tags & T_DECODE) && !x->packed) check_decode(x, &ref);
    if (sup_f && (c->tags & T_STATEF)) check_state_forward(x, &ref);
    if (sup_b && (c->tags & T_STATEB)) check_state_backward(x);
    if (sup_f && (c->tags & T_SPLIT) && !x->packed) check_split(x, &ref);
    if (sup_f && (c->tags & T_HEADTOK) && c->decay == LA_DECAY_SCALAR_HEAD) check_headtok(x, &ref);
    if (sup_f && sup_b && x->packed) check_varlen(x, &ref);
    if (sup_f && sup_b && (c->tags & T_WS)) check_workspace(x, &ref);

    if (c->tags & T_THREADS1 && backend == LA_BACKEND_CPU) la_set_num_threads(h, 0);
    refout_free(&ref);
    for (int i = 0; i < NT; i++)
        if (tu_present(&T[i])) tu_free(&T[i]);
    if (x->cu_dev) tu_get_mem_ops()->free(x->cu_dev);
}

/* ---- device memory (testutil's CUDA driver hooks) ------------------------------------------ */

/* The device memory path itself: a tensor survives upload / download with
 * its guards, and a device-side write is seen after download. */
static void device_memory_selftest(void) {
    const char *cn = "device-memory-selftest";
    tu_tensor_t a, b;
    tu_rng_t r;
    tu_rng_seed(&r, 77);
    tu_alloc(&a, "dev_a", LA_DTYPE_BF16, TU_BNHD_PAD, 2, 3, 5, 7);
    tu_fill_normal(&a, &r, 1.0);
    tu_upload(&a);
    tu_snapshot(&a);
    tu_poison(&a); /* host copy only */
    tu_download(&a);
    tu_check(tu_unchanged(&a), cn, 77, "upload + download does not give back the same bytes");
    tu_alloc(&b, "dev_b", LA_DTYPE_F32, TU_BHND, 1, 1, 1, 64);
    tu_fill_const(&b, 3.0);
    tu_upload(&b);
    tu_fill_const(&b, 0.0);
    tu_download(&b);
    tu_check(tu_get(&b, 0, 0, 0, 63) == 3.0 && tu_guards_ok(&b, (char[64]){0}, 64), cn, 77,
             "device copy lost or guards damaged");
    tu_free(&a);
    tu_free(&b);
}

/* ---- device value checks: deferred and synchronous ----------------------------------------- */

/* A bad log decay or bad device offsets in device memory: the deferred mode
 * (the default) runs the call without waiting and reports the error on
 * la_check_errors or on the handle's next call (which then writes nothing);
 * the synchronous mode returns it from the call itself, writing nothing. */
/* One sequence of N tokens, H heads, D = E, a log decay per head. */
static la_problem_t head_decay_problem(int64_t H, int64_t N, int64_t D) {
    return tu_problem(1, H, N, D, D, LA_DECAY_SCALAR_HEAD);
}

static void device_value_checks(void) {
    const char *cn = "device_value_checks";
    const int64_t H = 2, N = 64, D = 16;
    tu_rng_t r;
    tu_rng_seed(&r, 91);
    tu_tensor_t q, k, v, o, ld, cu;
    tu_alloc(&q, "q", LA_DTYPE_F32, TU_BHND, 1, H, N, D);
    tu_alloc(&k, "k", LA_DTYPE_F32, TU_BHND, 1, H, N, D);
    tu_alloc(&v, "v", LA_DTYPE_F32, TU_BHND, 1, H, N, D);
    tu_alloc(&o, "o", LA_DTYPE_F32, TU_BHND, 1, H, N, D);
    tu_alloc(&ld, "ld", LA_DTYPE_F32, TU_BHND, 1, H, 1, 1);
    tu_tensor_t *all[4] = {&q, &k, &v, &o};
    for (int i = 0; i < 4; i++) {
        tu_fill_normal(all[i], &r, 1.0);
        tu_upload(all[i]);
    }
    la_problem_t p = head_decay_problem(H, N, D);
    la_tensors_t t;
    la_tensors_init(&t);
    t.q = tu_view(&q);
    t.k = tu_view(&k);
    t.v = tu_view(&v);
    t.o = tu_view(&o);
    t.ld = tu_view(&ld);
    la_handle_t *h = NULL;
    if (la_create(&h, LA_BACKEND_CUDA) != LA_STATUS_SUCCESS) {
        tu_fail("%s: la_create failed", cn);
        return;
    }
    /* deferred: a bad decay at ld[0,1,0,0] */
    tu_set(&ld, 0, 0, 0, 0, -0.1);
    tu_set(&ld, 0, 1, 0, 0, 0.5);
    tu_upload(&ld);
    la_status_t st = la_forward(h, &p, &t);
    tu_check(st == LA_STATUS_SUCCESS, cn, 91, "deferred: the call itself returned %d (%s)", (int)st, la_last_error(h));
    st = la_check_errors(h);
    tu_check(st == LA_STATUS_BAD_DECAY && strstr(la_last_error(h), "ld[0,1,0,0]"), cn, 91,
             "deferred: la_check_errors returned %d: '%s' (want BAD_DECAY naming ld[0,1,0,0])", (int)st,
             la_last_error(h));
    st = la_check_errors(h);
    tu_check(st == LA_STATUS_SUCCESS, cn, 91, "deferred: the error was not cleared once reported (%d)", (int)st);
    /* ... or by the handle's next call, which then writes nothing */
    tu_set(&ld, 0, 1, 0, 0, 0.5);
    tu_upload(&ld);
    la_forward(h, &p, &t);
    tu_set(&ld, 0, 1, 0, 0, -0.2);
    tu_upload(&ld); /* a synchronous copy on the default stream: the bad call's check has run */
    tu_poison(&o);
    tu_upload(&o);
    tu_snapshot(&o);
    st = la_forward(h, &p, &t);
    tu_download(&o);
    tu_check(st == LA_STATUS_BAD_DECAY && strstr(la_last_error(h), "earlier call"), cn, 91,
             "deferred: the next call returned %d: '%s' (want the earlier call's BAD_DECAY)", (int)st,
             la_last_error(h));
    tu_check(tu_unchanged(&o), cn, 91, "deferred: the call that reported an earlier error wrote o");
    /* sync: the call returns the error and writes nothing */
    la_set_check_values(h, LA_CHECK_VALUES_SYNC);
    tu_set(&ld, 0, 0, 0, 0, NAN);
    tu_upload(&ld);
    tu_poison(&o);
    tu_upload(&o);
    tu_snapshot(&o);
    st = la_forward(h, &p, &t);
    tu_download(&o);
    tu_check(st == LA_STATUS_BAD_DECAY && strstr(la_last_error(h), "ld[0,0,0,0]") &&
                 !strstr(la_last_error(h), "earlier"),
             cn, 91, "sync: returned %d: '%s'", (int)st, la_last_error(h));
    tu_check(tu_unchanged(&o), cn, 91, "sync: a refused call wrote o");
    /* device offsets that decrease: deferred, then sync */
    tu_set(&ld, 0, 0, 0, 0, -0.1);
    tu_upload(&ld);
    tu_alloc(&cu, "cu", LA_DTYPE_F32, TU_BHND, 1, 1, 1, 8); /* 4 int64 in 8 floats' bytes */
    const int64_t bad_cu[4] = {0, 50, 30, N};
    la_tensor_t cuv = tu_view(&cu);
    const tu_mem_ops_t *m = tu_get_mem_ops();
    m->to_device(cuv.data, bad_cu, sizeof bad_cu);
    la_problem_t pp = p;
    pp.cu_seqlens = (const int64_t *)cuv.data;
    pp.cu_seqlens_on_device = 1;
    pp.num_seqs = 3;
    la_tensors_t tp = t;
    tu_tensor_t s0;
    tu_alloc(&s0, "final_state", LA_DTYPE_F32, TU_BHND, 3, H, D, D);
    tu_upload(&s0);
    tp.final_state = tu_view(&s0);
    la_set_check_values(h, LA_CHECK_VALUES_DEFERRED);
    st = la_forward(h, &pp, &tp);
    tu_check(st == LA_STATUS_SUCCESS, cn, 91, "device offsets, deferred: the call returned %d (%s)", (int)st,
             la_last_error(h));
    st = la_check_errors(h);
    tu_check(st == LA_STATUS_BAD_SEQLENS && strstr(la_last_error(h), "cu_seqlens[2]"), cn, 91,
             "device offsets: la_check_errors returned %d: '%s'", (int)st, la_last_error(h));
    la_set_check_values(h, LA_CHECK_VALUES_SYNC);
    tu_poison(&o);
    tu_upload(&o);
    tu_snapshot(&o);
    st = la_forward(h, &pp, &tp);
    tu_download(&o);
    tu_check(st == LA_STATUS_BAD_SEQLENS, cn, 91, "device offsets, sync: returned %d (%s)", (int)st, la_last_error(h));
    tu_check(tu_unchanged(&o), cn, 91, "device offsets, sync: a refused call wrote o");
    /* the CPU backend refuses device offsets */
    la_handle_t *hc = NULL;
    la_create(&hc, LA_BACKEND_CPU);
    st = la_supports(hc, LA_OP_FORWARD, &pp, &tp);
    tu_check(st == LA_STATUS_NOT_SUPPORTED, cn, 91, "cpu with device offsets: la_supports returned %d", (int)st);
    la_destroy(hc);
    la_destroy(h);
    tu_free(&s0);
    tu_free(&cu);
    for (int i = 0; i < 4; i++) tu_free(all[i]);
    tu_free(&ld);
}

/* Per-head log decays in the deferred mode are checked by the kernels that
 * read them rather than by a check kernel: every operation, with one
 * segment and with several segments and head-dim tiles, must report a bad
 * head, and the least one when two are bad; a valid call after it reports
 * nothing.  Run under each policy, since each picks other kernels. */
static void inline_head_decay_checks(const la_policy_t *pol) {
    const char *cn = "inline_head_decay_checks";
    const int64_t H = 4;
    const int64_t shapes[2][2] = {{64, 16}, {700, 160}}; /* N, D = E */
    la_handle_t *h = NULL;
    if (la_create(&h, LA_BACKEND_CUDA) != LA_STATUS_SUCCESS || la_set_policy(h, pol) != LA_STATUS_SUCCESS) {
        tu_fail("%s: la_create or la_set_policy failed", cn);
        la_destroy(h);
        return;
    }
    for (int si = 0; si < 2; si++)
        for (int op = LA_OP_FORWARD; op <= LA_OP_STATE_BACKWARD; op++) {
            const int64_t N = op == LA_OP_DECODE ? 1 : shapes[si][0], D = shapes[si][1];
            tu_rng_t r;
            tu_rng_seed(&r, 920 + (uint64_t)(si * 8 + op));
            const char *names[8] = {"q", "k", "v", "o", "d_o", "dq", "dk", "dv"};
            tu_tensor_t x[8], s_in, s_out, ld;
            for (int i = 0; i < 8; i++) {
                tu_alloc(&x[i], names[i], LA_DTYPE_BF16, TU_BHND, 1, H, N, D);
                tu_fill_normal(&x[i], &r, 0.5);
                tu_upload(&x[i]);
            }
            tu_alloc(&s_in, "state_in", LA_DTYPE_F32, TU_BHND, 1, H, D, D);
            tu_alloc(&s_out, "state_out", LA_DTYPE_F32, TU_BHND, 1, H, D, D);
            tu_fill_normal(&s_in, &r, 0.5);
            tu_upload(&s_in);
            tu_upload(&s_out);
            tu_alloc(&ld, "ld", LA_DTYPE_F32, TU_BHND, 1, H, 1, 1);
            la_problem_t p = head_decay_problem(H, N, D);
            la_tensors_t t;
            la_tensors_init(&t);
            t.k = tu_view(&x[1]);
            t.v = tu_view(&x[2]);
            t.ld = tu_view(&ld);
            if (op != LA_OP_STATE_FORWARD && op != LA_OP_STATE_BACKWARD) t.q = tu_view(&x[0]);
            if (op == LA_OP_FORWARD || op == LA_OP_DECODE) t.o = tu_view(&x[3]);
            if (op == LA_OP_BACKWARD) {
                t.d_o = tu_view(&x[4]);
                t.dq = tu_view(&x[5]);
            }
            if (op == LA_OP_BACKWARD || op == LA_OP_STATE_BACKWARD) {
                t.dk = tu_view(&x[6]);
                t.dv = tu_view(&x[7]);
            }
            if (op == LA_OP_DECODE) {
                t.initial_state = tu_view(&s_in);
                t.final_state = tu_view(&s_out);
            }
            if (op == LA_OP_STATE_FORWARD) t.final_state = tu_view(&s_out);
            if (op == LA_OP_STATE_BACKWARD) t.d_final_state = tu_view(&s_in);
            /* heads 3 and 1 bad (+inf, NaN): head 1 is named */
            const double vals[3][4] = {{-0.1, 0.25, -0.3, INFINITY}, {-0.1, NAN, -0.3, -0.4}, {-0.1, -0.2, -0.3, -0.4}};
            const char *want[3] = {"ld[0,1,0,0]", "ld[0,1,0,0]", NULL};
            for (int c = 0; c < 3; c++) {
                for (int64_t j = 0; j < H; j++) tu_set(&ld, 0, j, 0, 0, vals[c][j]);
                tu_upload(&ld);
                la_status_t st = op == LA_OP_FORWARD       ? la_forward(h, &p, &t)
                               : op == LA_OP_BACKWARD      ? la_backward(h, &p, &t)
                               : op == LA_OP_DECODE        ? la_decode(h, &p, &t)
                               : op == LA_OP_STATE_FORWARD ? la_state_forward(h, &p, &t)
                                                           : la_state_backward(h, &p, &t);
                tu_check(st == LA_STATUS_SUCCESS, cn, op, "N%lld D%lld op %d case %d: the call returned %d (%s)",
                         (long long)N, (long long)D, op, c, (int)st, la_last_error(h));
                st = la_check_errors(h);
                if (want[c])
                    tu_check(st == LA_STATUS_BAD_DECAY && strstr(la_last_error(h), want[c]), cn, op,
                             "N%lld D%lld op %d case %d: la_check_errors returned %d: '%s' (want BAD_DECAY naming %s)",
                             (long long)N, (long long)D, op, c, (int)st, la_last_error(h), want[c]);
                else
                    tu_check(st == LA_STATUS_SUCCESS, cn, op, "N%lld D%lld op %d: valid decays reported %d: '%s'",
                             (long long)N, (long long)D, op, (int)st, la_last_error(h));
            }
            for (int i = 0; i < 8; i++) tu_free(&x[i]);
            tu_free(&s_in);
            tu_free(&s_out);
            tu_free(&ld);
        }
    la_destroy(h);
}

/* ---- main -------------------------------------------------------------------------------- */

/* The policy matrix: every kernel variant any GPU can pick runs the whole case
 * table under at least one of these (the variant tally printed after each
 * says which ran).  CUDA runs them all unless --policy names one. */
typedef struct policy_row {
    const char *name, *why;
    void (*set)(la_policy_t *);
} policy_row_t;
static void pol_default(la_policy_t *q) { (void)q; }
static void pol_wgmma(la_policy_t *q) { q->fwd_wgmma = LA_SWITCH_ON; }
static void pol_tiles64(la_policy_t *q) { q->tile_cap = 64; }
static void pol_smem99(la_policy_t *q) { q->smem_kb = 99; }
static void pol_mma(la_policy_t *q) {
    q->fwd_rows = LA_SWITCH_OFF;
    q->state_wgmma = LA_SWITCH_OFF;
    q->bwd_wgmma = LA_SWITCH_OFF;
}
static void pol_rows(la_policy_t *q) { q->fwd_warp_roles = LA_SWITCH_OFF; }
static void pol_planes2(la_policy_t *q) { q->dld_planes = 2; }
static void pol_vec_ws(la_policy_t *q) { q->vec_warp_roles = LA_SWITCH_ON; }
static const policy_row_t POLICIES[] = {
    {"default", "what users run", pol_default},
    {"wgmma-forward", "the opt-in Hopper forward (sm_90a builds on sm_90)", pol_wgmma},
    {"tiles-64", "head-dim tiles capped at 64: every D or E above 64 as summed sub-problems", pol_tiles64},
    {"smem-99", "consumer Blackwell's plan (99 KB per block): 64 x 64 backward tiles, single stages", pol_smem99},
    {"mma-sync-only", "the general forward, mma.sync state pass and backward where Hopper kernels run", pol_mma},
    {"rows-forward", "the rows kernel where the warp-role kernel runs", pol_rows},
    {"dld-two-planes", "the f32 decay gradient on two operand planes", pol_planes2},
    {"vector-warp-roles", "the opt-in warp-role vector-decay recurrence", pol_vec_ws},
};
#define NPOLICIES (int)(sizeof POLICIES / sizeof POLICIES[0])

static void usage(void) {
    fprintf(stderr, "usage: test_backend [--backend cpu|cuda] [--filter SUBSTRING] [--list] [--sanitize]\n"
                    "                    [--policy default|wgmma-forward|tiles-64|smem-99|mma-sync-only|rows-forward|"
                    "dld-two-planes|vector-warp-roles|all]\n"
                    "env: LA_TEST_LEVEL=quick|full  LA_TEST_SEED=<n>  LA_TEST_VERBOSE=1  LA_TEST_FILTER=<s>\n"
                    "(CUDA runs --policy all by default; the CPU backend has no policy)\n");
}

int main(int argc, char **argv) {
    la_backend_t backend = LA_BACKEND_CPU;
    const char *filter = NULL;
    int list = 0, sanitize = 0, dev_selftest = 0;
    const char *policy_arg = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc) {
            const char *b = argv[++i];
            if (!strcmp(b, "cpu")) backend = LA_BACKEND_CPU;
            else if (!strcmp(b, "cuda")) backend = LA_BACKEND_CUDA;
            else {
                usage();
                return 2;
            }
        } else if (!strcmp(argv[i], "--filter") && i + 1 < argc) {
            filter = argv[++i];
        } else if (!strcmp(argv[i], "--list")) {
            list = 1;
        } else if (!strcmp(argv[i], "--sanitize")) {
            sanitize = 1;
        } else if (!strcmp(argv[i], "--policy") && i + 1 < argc) {
            policy_arg = argv[++i];
        } else if (!strcmp(argv[i], "--device-selftest")) {
            dev_selftest = 1; /* only the CUDA device-memory plumbing (no CUDA backend needed) */
        } else {
            usage();
            return 2;
        }
    }
    if (!filter) {
        const char *fe = getenv("LA_TEST_FILTER");
        if (fe && *fe) filter = fe;
    }
    const char *lvl = getenv("LA_TEST_LEVEL");
    int full = 0;
    if (lvl && *lvl) {
        if (!strcmp(lvl, "full")) full = 1;
        else if (strcmp(lvl, "quick") != 0) {
            fprintf(stderr, "LA_TEST_LEVEL must be quick or full, not '%s'\n", lvl);
            return 2;
        }
    }
    uint64_t base_seed = 0x1a2b3c4d5e6f7788ull;
    const char *se = getenv("LA_TEST_SEED");
    if (se && *se) base_seed = strtoull(se, NULL, 0);

    if (dev_selftest) {
        if (!tu_cuda_memory_init()) {
            printf("skipped: libcuda.so.1 not loadable (no NVIDIA driver)\n");
            return 0;
        }
        device_memory_selftest();
        return tu_summary();
    }
    if (backend == LA_BACKEND_CUDA && !la_backend_available(LA_BACKEND_CUDA)) {
        printf("skipped: no CUDA device (or the library was built without CUDA)\n");
        return 0;
    }
    if (backend == LA_BACKEND_CUDA && !tu_cuda_memory_init()) {
        /* A CUDA device is present but device memory cannot be allocated
         * from here: testing with host pointers would test nothing. */
        printf("FAIL: the CUDA backend is available but libcuda.so.1 (the driver API) could not be "
               "loaded to allocate device memory\n");
        printf("0 passed, 1 failed\n");
        return 1;
    }
    if (backend == LA_BACKEND_CUDA) {
        device_memory_selftest();
        device_value_checks();
    }

    int nsweep = full ? SWEEP_FULL : SWEEP_QUICK;
    bcase_t *cases = xcalloc((size_t)(NTABLE + nsweep), sizeof(bcase_t));
    int nc = 0;
    for (int i = 0; i < NTABLE; i++)
        if (full || !(TABLE[i].tags & T_FULL)) cases[nc++] = TABLE[i];
    nc += gen_sweep(cases + nc, nsweep, full);
    if (sanitize) { /* only the small cases: memory/race checkers are slow */
        int kept = 0;
        for (int i = 0; i < nc; i++)
            if (case_cost(&cases[i]) <= (1ll << 20)) cases[kept++] = cases[i];
        nc = kept;
    }

    if (list) {
        for (int i = 0; i < nc; i++)
            if (!filter || strstr(cases[i].name, filter)) printf("%s\n", cases[i].name);
        free(cases);
        return 0;
    }

    printf("test_backend: backend %s, level %s%s, %d cases, base seed 0x%016llx\n",
           backend == LA_BACKEND_CPU ? "cpu" : "cuda", full ? "full" : "quick", sanitize ? " (sanitize slice)" : "", nc,
           (unsigned long long)base_seed);
    fflush(stdout);
    tu_selftest();

    int pol_first = 0, pol_last = backend == LA_BACKEND_CUDA ? NPOLICIES - 1 : 0;
    if (policy_arg && strcmp(policy_arg, "all") != 0) {
        pol_first = -1;
        for (int i = 0; i < NPOLICIES; i++)
            if (!strcmp(policy_arg, POLICIES[i].name)) pol_first = i;
        if (pol_first < 0) {
            usage();
            free(cases);
            return 2;
        }
        pol_last = pol_first;
    }
    double t_all = tu_seconds();
    int ran = 0;
    for (int pi = pol_first; pi <= pol_last; pi++) {
        la_handle_t *h = NULL;
        la_status_t st = la_create(&h, backend);
        if (st != LA_STATUS_SUCCESS) {
            printf("FAIL: la_create returned %d (%s)\n", (int)st, la_status_string(st));
            tu_fail("la_create failed");
            free(cases);
            return tu_summary();
        }
        la_policy_t pol;
        la_get_policy(h, &pol);
        POLICIES[pi].set(&pol);
        if ((st = la_set_policy(h, &pol)) != LA_STATUS_SUCCESS) {
            printf("FAIL: la_set_policy(%s) returned %d: %s\n", POLICIES[pi].name, (int)st, la_last_error(h));
            tu_fail("la_set_policy failed");
            la_destroy(h);
            continue;
        }
        if (backend == LA_BACKEND_CUDA && !filter) inline_head_decay_checks(&pol);
        /* Device values are checked and reported within the call here, so a
         * failing check names its case. */
        la_set_check_values(h, LA_CHECK_VALUES_SYNC);
        memset(variant_count, 0, sizeof variant_count);
        const int failed0 = tu_failed();
        const double t_pol = tu_seconds();
        if (backend == LA_BACKEND_CUDA) printf("policy %s: %s\n", POLICIES[pi].name, POLICIES[pi].why);
        for (int i = 0; i < nc; i++) {
            if (filter && !strstr(cases[i].name, filter)) continue;
            double t0 = tu_seconds();
            int f0 = tu_failed();
            run_case(&cases[i], h, backend, base_seed);
            ran++;
            double dt = tu_seconds() - t0;
            if (tu_verbose() || tu_failed() != f0)
                printf("%s %s [%s] (%.2f s)\n", tu_failed() != f0 ? "FAILED" : "ok", cases[i].name, POLICIES[pi].name,
                       dt);
            fflush(stdout);
        }
        la_destroy(h);
        if (backend == LA_BACKEND_CUDA) {
            printf("policy %s: %d failed checks, %.1f s; variants run (main forward/backward calls):",
                   POLICIES[pi].name, tu_failed() - failed0, tu_seconds() - t_pol);
            for (int v = 0; v < NVARIANTS; v++)
                if (variant_count[v]) printf(" %s %d", VARIANTS[v], variant_count[v]);
            printf("\n");
            fflush(stdout);
        }
    }
    printf("%d cases in %.1f s\n", ran, tu_seconds() - t_all);
    free(cases);
    return tu_summary();
}
