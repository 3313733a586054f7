/*
 * plan.cu - the CUDA backend's planner: one pure function from the call
 * (problem, dtypes, strides, alignment), the device's limits and the
 * handle's policy to a la_cuda_plan_t.  It is the backend's support table
 * too: what it refuses is what the call refuses, with the same status.
 *
 * What runs:
 *   forward, state-only forward  chunk kernels (fp32 state), scalar decay kinds;
 *                                vector kinds: vec-fwd, the recurrence kernels (kernels/vector)
 *   backward, state-only backward  chunk kernels, scalar decay kinds (with d ld);
 *                                vector kinds: vec-bwd, runs of those kernels (vec_bwd.h)
 *   decode                       one block per (sequence, head), every decay kind
 * Chunk kernels take bf16, f16 and f32 inputs; f32 as split operands (two
 * bf16 planes, three mmas per product: op_of in mma.cuh) on 64 x 64 head-dim
 * tiles only.  The forward chunk kernels take D <= 256 (padded to 64, 128 or
 * 256) and any E <= 256 (cut into value slices of 64 or 128 columns, one
 * block each); the backward kernel D, E <= 128.  Larger head dims than a
 * block of this GPU holds run as sub-problems on head-dim tiles whose shares
 * are summed (the runner's tile loop).
 *
 * Sequence parallelism: when batch x heads is small next to the number of
 * SMs, each sequence is cut into segments; a state pass computes every
 * segment's local state, a fold stitches them in order, and the forward pass
 * starts each segment from its incoming state.  Short sequences (forward, up
 * to LA_CUDA_PREFIX_UPTO tokens) skip the state pass and fold: each block
 * walks from its sequence's start (prefix mode).
 */
#include "plan.h"
#include "decode_params.h"
#include "vec_bwd.h"
#include "vec_launch.h"
#include "vec_mma_layout.h"
#include "fwd_launch.h"
#include "bwd_launch.h"
#include "tma_map.h"

#include <stdio.h>
#include <string.h>

/* Shortest segment worth its share of the state pass and fold.  With few
 * (sequence, head) pairs a sequence is bound by the latency of its chunk
 * steps (~5.5 us each on the H200), and the state pass plus fold add ~20 us
 * whatever their length: the forward cuts sequences of 16 chunks or more
 * into segments of at least 2 chunks (measured B1 H16: N1024 0.078 ->
 * 0.062 ms, N2048 0.089 -> 0.082; cutting N256 and N512 lost 11 and 7 us).
 * The backward's extra passes cost more: segments of at least 8 chunks. */
#define LA_CUDA_MIN_SEGMENT_FWD 128
#define LA_CUDA_SEGMENT_FROM_FWD 1024
#define LA_CUDA_MIN_SEGMENT_BWD 512
/* Forwards of sequences up to this long cut them in prefix mode instead
 * (fwd_kernel.cuh): every block walks from the sequence start, so nothing
 * runs before the output pass and segments can be one chunk long. */
#define LA_CUDA_PREFIX_UPTO 1024

/* ---- kernel names ---------------------------------------------------------------- */

static const struct {
    la_cuda_kernel_t k;
    const char *name;
} kernel_names[] = {
    {LA_K_NONE, "none"},
    {LA_K_FWD_GENERAL, "fwd-mma"},
    {LA_K_FWD_ROWS, "fwd-rows"},
    {LA_K_FWD_WARP_ROLES, "fwd-warp-roles"},
    {LA_K_FWD_WGMMA, "fwd-wgmma"},
    {LA_K_STATE_MMA, "state-mma"},
    {LA_K_STATE_WGMMA, "state-wgmma"},
    {LA_K_BWD_MMA, "bwd-mma"},
    {LA_K_BWD_WGMMA, "bwd-wgmma"},
    {LA_K_DECODE, "decode"},
    {LA_K_VEC_FWD, "vec-fwd"},
    {LA_K_VEC_BWD, "vec-bwd"},
};

const char *la_cuda_kernel_name(la_cuda_kernel_t k) {
    for (size_t i = 0; i < sizeof kernel_names / sizeof kernel_names[0]; i++)
        if (kernel_names[i].k == k) return kernel_names[i].name;
    return "?";
}

/* ---- small facts of a call -------------------------------------------------- */

typedef struct ctx {
    const la_plan_t *pl;
    const la_cuda_limits_t *lim;
    const la_policy_t *pol;
} ctx_t;

static int pad_dim(int64_t x) { return x <= 64 ? 64 : x <= 128 ? 128 : 256; }
static int min_int(int64_t a, int b) { return a < b ? (int)a : b; }
static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static size_t al256(size_t x) { return (x + 255) & ~(size_t)255; }

static int is_scalar_kind(la_decay_t k) {
    return k == LA_DECAY_NONE || k == LA_DECAY_SCALAR_HEAD || k == LA_DECAY_SCALAR_TOKEN;
}
static int is_bwd(const la_plan_t *pl) { return pl->op == LA_OP_BACKWARD || pl->op == LA_OP_STATE_BACKWARD; }
/* Bytes per element of the plan's token tensors (k is in every operation). */
static int elem_of(const la_plan_t *pl) { return (int)la_dtype_size(pl->t.k.dtype); }
static int is_sm90(const la_cuda_limits_t *lim) { return lim->cc_major == 9 && lim->cc_minor == 0; }

/* 16-byte vector loads need unit channel stride and 16-byte aligned rows. */
static int tok_vec_ok(const la_tensor_t *t) {
    if (!t->data) return 1;
    size_t es = la_dtype_size(t->dtype);
    if (t->stride[3] != 1) return 0;
    if (((uintptr_t)t->data) % 16) return 0;
    for (int i = 0; i < 3; i++)
        if ((t->stride[i] * (int64_t)es) % 16) return 0;
    return 1;
}

static int tma_ok(const la_plan_t *pl, const la_tensor_t *t) {
    if (!t->data) return 1;
    return la_tma_tok_ok(t->data, t->stride[0], t->stride[1], t->stride[2], (int)la_dtype_size(t->dtype),
                         pl->packed ? 1 : pl->p.batch, pl->p.heads, la_cuda_row_tokens(pl));
}

/* Chunks over all sequences (device offsets: a bound). */
static int64_t total_chunks(const la_plan_t *pl) {
    if (pl->cu_device) return ceil_div(pl->p.seqlen, LA_CUDA_CHUNK) + pl->num_seqs;
    int64_t tc = 0;
    for (int64_t s = 0; s < pl->num_seqs; s++) tc += ceil_div(la_plan_seq_len(pl, s), LA_CUDA_CHUNK);
    return tc;
}

/* ---- head-dim tiles ---------------------------------------------------------- */

/* f32 inputs run split operands, built for 64 x 64 head-dim tiles only: twice
 * the shared memory of a bf16 block, and one configuration to compile.  The
 * policy's tile_cap makes a GPU with room to spare run the blocked path as a
 * small-shared-memory one (sm_120) does. */
static int plan_cap(const ctx_t *c) {
    if (elem_of(c->pl) == 4) return 64;
    return c->pol->tile_cap ? c->pol->tile_cap : 256;
}

/* Backward: D and E up to 128 each, the largest pair whose block (one
 * stage, with the decay gradient where asked) fits; 64 x 64 on sm_120. */
static int bwd_tiles(const ctx_t *c, int *td, int *te) {
    static const int cand[4][2] = {{128, 128}, {128, 64}, {64, 128}, {64, 64}};
    const la_plan_t *pl = c->pl;
    const int cap = plan_cap(c);
    for (int i = 0; i < 4; i++) {
        if (cand[i][0] > cap || cand[i][1] > cap) continue;
        const int dt = min_int(pl->p.dim_qk, cand[i][0]), et = min_int(pl->p.dim_v, cand[i][1]);
        if (la_cuda_bwd_smem(pad_dim(dt), pad_dim(et), elem_of(pl), pl->want_dld, 1) <= c->lim->smem_optin) {
            *td = dt;
            *te = et;
            return 1;
        }
    }
    return 0;
}

/* Forward: D up to 256 (in 64-column value slices above 128) where one
 * single-stage block fits this GPU (not on sm_120's 99 KB: 128 there); E
 * is never cut, the kernel walks it in slices. */
static int fwd_tiles(const ctx_t *c, int *td, int *te) {
    const la_plan_t *pl = c->pl;
    const int cap = plan_cap(c);
    for (int d = 256; d >= 64; d /= 2) {
        if (d > cap) continue;
        const int dt = min_int(pl->p.dim_qk, d);
        const int eslice = pad_dim(dt) > 128 || elem_of(pl) == 4 ? LA_CUDA_ESLICE_SMALL : LA_CUDA_ESLICE_LARGE;
        if (la_cuda_fwd_smem(pad_dim(dt), eslice, elem_of(pl), 1, 0) <= c->lim->smem_optin) {
            *td = dt;
            *te = (int)pl->p.dim_v;
            return 1;
        }
    }
    return 0;
}

/* ---- the variant rows ---------------------------------------------------------- */

/* fwd-wgmma: the forward on Hopper's warpgroup tensor cores
 * (fwd_wg_kernel.cuh), sm_90a builds on a compute capability 9.0 device,
 * D <= 128, bf16/f16, vectorisable tensors, no summed shares.  Correct (the
 * GPU tests run the case table on it) but not yet faster than the mma.sync
 * kernels (docs/PERF.md: one warpgroup per chunk is latency-bound): only
 * when the policy turns it on. */
static int want_fwd_wgmma(const ctx_t *c) {
#ifdef LA_HAVE_SM90A
    const la_plan_t *pl = c->pl;
    if (c->pol->fwd_wgmma != LA_SWITCH_ON) return 0;
    if (pl->op != LA_OP_FORWARD && pl->op != LA_OP_STATE_FORWARD) return 0;
    return pl->p.dim_qk <= 128 && elem_of(pl) == 2 && is_sm90(c->lim);
#else
    (void)c;
    return 0;
#endif
}

/* Value columns per block.  128-column slices compute Q K^T once per 128
 * columns and run one block per SM; 64-column slices run two blocks per SM
 * (half the registers) and give more blocks when batch x heads is small.
 * Segments fill the GPU with 128-column blocks too, and those do a chunk's
 * 128 columns in less time than two 64-column blocks sharing an SM: they
 * win from 512 tokens on (H200, B1 H16 forward: N512 0.025 -> 0.022 ms,
 * N8192 0.150 -> 0.133, N32768 0.465 -> 0.391; N256 0.015 -> 0.016). */
static int choose_eslice(const ctx_t *c) {
    const la_plan_t *pl = c->pl;
    if (want_fwd_wgmma(c)) return LA_CUDA_ESLICE_SMALL; /* the Hopper kernel's one slice width */
    if (elem_of(pl) == 4) return LA_CUDA_ESLICE_SMALL;  /* the f32 kernels' one slice width */
    if (pl->p.dim_v <= LA_CUDA_ESLICE_SMALL) return LA_CUDA_ESLICE_SMALL; /* a wider slice would be padding */
    if (pl->p.dim_qk > 128) return LA_CUDA_ESLICE_SMALL; /* a 256 x 64 fp32 state is all the registers allow */
    int64_t items = pl->num_seqs * pl->p.heads * ceil_div(pl->p.dim_v, 128);
    if (items >= (3 * (int64_t)c->lim->sms) / 4 || la_plan_max_len(pl) >= 512) return LA_CUDA_ESLICE_LARGE;
    return LA_CUDA_ESLICE_SMALL;
}

/* Forward blocks per SM (the kernel's launch bounds): 64-column slices run
 * two per SM up to D = 128; a D = 256 block, or an f32 one, takes a whole SM. */
static int blocks_per_sm(int eslice, int DP, int elem) {
    return eslice == LA_CUDA_ESLICE_LARGE || DP > 128 || elem == 4 ? 1 : 2;
}

/* fwd-rows: the output pass for D, E <= 64 in bf16 or f16 (fwd_rows_kernel.cuh:
 * P stays in registers, one barrier per chunk) unless the policy turns it off. */
static int want_rows(const ctx_t *c, int eslice) {
    const la_plan_t *pl = c->pl;
    if (pl->op != LA_OP_FORWARD || elem_of(pl) != 2 || pl->p.dim_qk > 64 || eslice != LA_CUDA_ESLICE_SMALL) return 0;
    return c->pol->fwd_rows != LA_SWITCH_OFF;
}

/* fwd-warp-roles: where the rows kernel runs, the warp-role kernel
 * (fwd_ws_kernel.cuh) takes its place when the GPU's blocks hold its four
 * slots (151 KB: sm_80, sm_90 and sm_100, not sm_120's 99 KB), the tensors
 * are vectorisable and o is not a summed head-dim share.  Four slots, not
 * five: five fit the H200 too but ran 3-12% slower (docs/PERF.md). */
static int want_warp_roles(const ctx_t *c) {
    if (c->pol->fwd_warp_roles == LA_SWITCH_OFF) return 0;
    return la_cuda_fwd_ws_smem() + 1024 <= c->lim->smem_per_sm;
}

static int fwd_blocks_per_sm(const ctx_t *c, int eslice, int DP) {
#ifdef LA_HAVE_SM90A
    if (want_fwd_wgmma(c)) return la_cuda_fwd_wg_blocks_per_sm(DP);
#endif
    /* The rows kernel runs one block per SM, so B4 H32 fills the GPU without
     * segments (whose state pass reads K and V a second time). */
    if (want_rows(c, eslice)) return 1;
    return blocks_per_sm(eslice, DP, elem_of(c->pl));
}

/* state-wgmma: the state pass (of the forward, the backward and the
 * state-only forward) on TMA and wgmma (state_wg_kernel.cuh: tile loads
 * three chunks ahead, two warpgroups), sm_90a builds on a compute capability
 * 9.0 device, bf16 and f16 with D in (64, 128], 128-column value slices and k
 * and v that TMA can describe, unless the policy turns it off. */
static int want_state_wgmma(const ctx_t *c, int eslice) {
#ifdef LA_HAVE_SM90A
    const la_plan_t *pl = c->pl;
    if (elem_of(pl) != 2 || pad_dim(pl->p.dim_qk) != 128 || eslice != LA_CUDA_ESLICE_LARGE) return 0;
    if (!tok_vec_ok(&pl->t.k) || !tok_vec_ok(&pl->t.v) || !tma_ok(pl, &pl->t.k) || !tma_ok(pl, &pl->t.v)) return 0;
    if (c->pol->state_wgmma == LA_SWITCH_OFF || !c->lim->tma) return 0;
    return is_sm90(c->lim) && la_cuda_state_wg_smem() + 1024 <= c->lim->smem_per_sm;
#else
    (void)c;
    (void)eslice;
    return 0;
#endif
}

/* bwd-wgmma: the backward's main pass at D = E = 64 in bf16 and f16 on TMA
 * and wgmma (bwd_wg_kernel.cuh: every product on wgmma, one warpgroup per
 * role), sm_90a builds on a compute capability 9.0 device, for a full
 * backward (dO given) without the decay gradient or summed shares, with
 * tensors TMA can describe and vectorisable gradients, unless the policy
 * turns it off.  Its blocks run two per SM, as the mma.sync kernel's do at
 * D = E = 64. */
static int want_bwd_wgmma(const ctx_t *c, int vec, int gvec, int shares) {
#ifdef LA_HAVE_SM90A
    const la_plan_t *pl = c->pl;
    if (pl->op != LA_OP_BACKWARD || elem_of(pl) != 2 || pl->want_dld || !vec || !gvec || shares) return 0;
    if (pl->p.dim_qk != 64 || pl->p.dim_v != 64) return 0; /* its gradient stores write whole 128-byte rows */
    if (!tma_ok(pl, &pl->t.q) || !tma_ok(pl, &pl->t.k) || !tma_ok(pl, &pl->t.v) || !tma_ok(pl, &pl->t.d_o)) return 0;
    if (c->pol->bwd_wgmma == LA_SWITCH_OFF || !c->lim->tma) return 0;
    return is_sm90(c->lim) && 2 * (la_cuda_bwd_wg_smem() + 1024) <= c->lim->smem_per_sm;
#else
    (void)c; (void)vec; (void)gvec; (void)shares;
    return 0;
#endif
}

/* ---- the variant table ------------------------------------------------------------ */

/* What a tile's variant predicates see beyond the call. */
typedef struct tile_facts {
    int eslice;
    int vec_ok, gvec_ok; /* 16-byte vector access to the token tensors / gradients */
    int shares;          /* the tile's outputs are summed shares (several head-dim tiles) */
} tile_facts_t;

typedef enum la_cuda_pass { PASS_OUTPUT, PASS_STATE, PASS_BACKWARD } la_cuda_pass_t;

static int row_fwd_wgmma(const ctx_t *c, const tile_facts_t *f) { return want_fwd_wgmma(c) && f->vec_ok && !f->shares; }
static int row_warp_roles(const ctx_t *c, const tile_facts_t *f) {
    return want_rows(c, f->eslice) && f->vec_ok && !f->shares && want_warp_roles(c);
}
static int row_rows(const ctx_t *c, const tile_facts_t *f) { return want_rows(c, f->eslice); }
static int row_state_wgmma(const ctx_t *c, const tile_facts_t *f) { return want_state_wgmma(c, f->eslice); }
static int row_bwd_wgmma(const ctx_t *c, const tile_facts_t *f) {
    return want_bwd_wgmma(c, f->vec_ok, f->gvec_ok, f->shares);
}
static int row_always(const ctx_t *c, const tile_facts_t *f) {
    (void)c;
    (void)f;
    return 1;
}

/* One row per kernel variant: the pass it serves, the predicate under which
 * the plan picks it (architecture, build, dtype, dims, alignment, shared
 * memory, policy: see each want_* above), and why it exists.  The rows of a
 * pass are tried in order and the first that holds runs; every pass ends in
 * a row that always holds.  docs/CUDA.md prints this table. */
static const struct variant_row {
    la_cuda_kernel_t kernel;
    la_cuda_pass_t pass;
    int (*applies)(const ctx_t *c, const tile_facts_t *f);
    const char *why;
} variant_table[] = {
    {LA_K_FWD_WGMMA, PASS_OUTPUT, row_fwd_wgmma, "warpgroup MMA forward (opt-in: correct, not yet faster)"},
    {LA_K_FWD_WARP_ROLES, PASS_OUTPUT, row_warp_roles, "producer/consumer warps hide load latency at D, E <= 64"},
    {LA_K_FWD_ROWS, PASS_OUTPUT, row_rows, "P in registers, one barrier per chunk at D, E <= 64"},
    {LA_K_FWD_GENERAL, PASS_OUTPUT, row_always, "the general chunk kernel: any dims, dtypes, strides"},
    {LA_K_FWD_WGMMA, PASS_STATE, row_fwd_wgmma, "the opt-in Hopper forward's own state pass"},
    {LA_K_STATE_WGMMA, PASS_STATE, row_state_wgmma, "TMA loads three chunks ahead, wgmma products"},
    {LA_K_STATE_MMA, PASS_STATE, row_always, "the general state pass"},
    {LA_K_BWD_WGMMA, PASS_BACKWARD, row_bwd_wgmma, "every backward product on wgmma at D = E = 64"},
    {LA_K_BWD_MMA, PASS_BACKWARD, row_always, "the general backward"},
};

static la_cuda_kernel_t pick(const ctx_t *c, const tile_facts_t *f, la_cuda_pass_t pass) {
    for (size_t i = 0; i < sizeof variant_table / sizeof variant_table[0]; i++)
        if (variant_table[i].pass == pass && variant_table[i].applies(c, f)) return variant_table[i].kernel;
    return LA_K_NONE; /* not reached: every pass ends in an always row */
}

/* f32 with the decay gradient: that gradient's products and the state
 * updates on three operand planes (24 mantissa bits, six mmas a product;
 * bwd_kernel.cuh) where its block (223 KB at 64 x 64) fits this GPU (H100,
 * H200, B200; not the A100 or sm_120, which keep two planes), unless the
 * policy asks for two (A/B measurements: the two-plane terms carry ~2^-17
 * of their size, which the gradient's cancellation multiplies;
 * docs/CUDA-BACKWARD.md).  0 where it does not apply. */
static int dld_planes(const ctx_t *c) {
    if (elem_of(c->pl) != 4 || !c->pl->want_dld) return 0;
    if (c->pol->dld_planes == 2) return 2;
    return la_cuda_bwd_smem(64, 64, 6, 1, 1) <= c->lim->smem_optin ? 3 : 2;
}

/* Tile stages of the forward passes: as many as the blocks that share an SM
 * leave room for (output pass 2 or 1, state pass 4 or 2).  A grid of no more
 * blocks than SMs runs one per SM whatever the launch bounds allow: the
 * D = 128 output pass's two-stage block (118 KB) fits then, not two of them. */
static int fwd_stages(const ctx_t *c, int DP, int eslice, int state_only, int64_t blocks) {
    const int elem = elem_of(c->pl);
    const int hi = state_only ? 4 : 2;
    const int per_sm = blocks <= c->lim->sms ? 1 : blocks_per_sm(eslice, DP, elem);
    const int bytes = la_cuda_fwd_smem(DP, eslice, elem, hi, state_only) + 1024;
    return per_sm * bytes <= c->lim->smem_per_sm ? hi : hi / 2;
}

/* Backward: two stages (the next chunk's tiles loading during this one)
 * where the block fits the device; the decay gradient's block is single-stage. */
static int bwd_stages(const ctx_t *c, int DP, int EP) {
    const la_plan_t *pl = c->pl;
    if (pl->want_dld) return 1;
    const int two = la_cuda_bwd_smem(DP, EP, elem_of(pl), 0, 2);
    return two <= c->lim->smem_optin &&
                   la_cuda_bwd_blocks_per_sm(DP, EP, elem_of(pl)) * (two + 1024) <= c->lim->smem_per_sm
               ? 2
               : 1;
}

/* ---- segments and workspace ----------------------------------------------------- */

/* One segment per sequence when the (sequence, head) blocks already fill the
 * GPU; otherwise segments of at least LA_CUDA_MIN_SEGMENT_FWD / _BWD tokens
 * until they do. */
static la_seg_plan_t plan_segments(const ctx_t *c, int eslice) {
    const la_plan_t *pl = c->pl;
    la_seg_plan_t sp;
    memset(&sp, 0, sizeof sp);
    /* Blocks without segmenting: (sequence, head, value slice) forward, or
     * (sequence, head, role) backward at one block per SM; segments multiply
     * them up to what fits on the GPU at once, never past it (a second
     * partial wave would cost as much as the first). */
    const int bwd = is_bwd(pl), sms = c->lim->sms;
    int64_t items = pl->num_seqs * pl->p.heads * (bwd ? 2 : ceil_div(pl->p.dim_v, eslice));
    int64_t slots = (int64_t)(bwd ? la_cuda_bwd_blocks_per_sm(pad_dim(pl->p.dim_qk), pad_dim(pl->p.dim_v), elem_of(pl))
                                  : fwd_blocks_per_sm(c, eslice, pad_dim(pl->p.dim_qk))) * sms;
    int64_t maxlen = la_plan_max_len(pl);
    int64_t want = items >= (3 * slots) / 4 ? 1 : slots / items;
    const int prefix = pl->op == LA_OP_FORWARD && maxlen <= LA_CUDA_PREFIX_UPTO;
    int64_t min_seg = bwd ? LA_CUDA_MIN_SEGMENT_BWD : prefix ? LA_CUDA_CHUNK : LA_CUDA_MIN_SEGMENT_FWD;
    int64_t by_len = ceil_div(maxlen, min_seg);
    if (!bwd && !prefix && maxlen < LA_CUDA_SEGMENT_FROM_FWD) by_len = 1;
    if (want > by_len) want = by_len;
    if (want < 1) want = 1;
    int64_t chunks = ceil_div(maxlen, LA_CUDA_CHUNK);
    if (chunks < 1) chunks = 1;
    sp.seg_len = ceil_div(chunks, want) * LA_CUDA_CHUNK;
    if (!pl->packed) {
        sp.n_seg = (int)ceil_div(pl->p.seqlen, sp.seg_len);
        if (sp.n_seg < 1) sp.n_seg = 1;
        sp.total = (int)(pl->num_seqs * sp.n_seg);
        sp.multi = sp.n_seg > 1;
    } else if (pl->cu_device) {
        /* Each sequence has at most ceil(len / seg_len) segments (one when
         * empty): at most num_seqs + N / seg_len in all. */
        sp.total = (int)(pl->num_seqs + pl->p.seqlen / sp.seg_len);
        sp.multi = maxlen > sp.seg_len;
    } else {
        for (int64_t s = 0; s < pl->num_seqs; s++) {
            int64_t len = la_plan_seq_len(pl, s);
            int n = len == 0 ? 1 : (int)ceil_div(len, sp.seg_len);
            sp.total += n;
            if (n > 1) sp.multi = 1;
        }
    }
    sp.prefix = prefix && sp.multi;
    if (sp.prefix) sp.multi = 0;
    return sp;
}

static la_ws_layout_t layout_ws(const la_plan_t *pl, const la_seg_plan_t *sp, int DP, int ept, int64_t tc) {
    la_ws_layout_t w;
    size_t S = (size_t)pl->num_seqs + 1;
    int multi = sp->multi || pl->op == LA_OP_STATE_FORWARD;
    size_t st = multi ? (size_t)sp->total * (size_t)pl->p.heads : 0;
    w.cu = 0;
    w.seg_off = al256(w.cu + (pl->packed ? S * sizeof(int64_t) : 0));
    w.chunk_off = al256(w.seg_off + (pl->packed ? S * sizeof(int) : 0));
    w.seg_state = al256(w.chunk_off + (pl->packed ? S * sizeof(int) : 0));
    w.seg_logdecay = al256(w.seg_state + st * (size_t)DP * ept * sizeof(float));
    w.seg_dstate = al256(w.seg_logdecay + st * sizeof(float));
    /* The backward's state gradients at segment boundaries, same shape. */
    size_t dst = is_bwd(pl) ? st * (size_t)DP * ept * sizeof(float) : 0;
    w.dld_tok = al256(w.seg_dstate + dst);
    /* The decay gradient's scratch: per token (role 0's term, SCALAR_TOKEN),
     * per chunk and per (sequence, head).  B4 H32 N8192: 16 MiB, 0.2 MiB. */
    int dld = is_bwd(pl) ? pl->want_dld : 0;
    size_t tok = dld && pl->op == LA_OP_BACKWARD && pl->p.decay == LA_DECAY_SCALAR_TOKEN
                     ? (size_t)(pl->packed ? 1 : pl->p.batch) * (size_t)pl->p.heads * (size_t)la_cuda_row_tokens(pl)
                     : 0;
    size_t sh = (size_t)pl->num_seqs * (size_t)pl->p.heads;
    w.dld_chunk = al256(w.dld_tok + tok * sizeof(float));
    w.dld_z0 = al256(w.dld_chunk + (dld ? 4 * (size_t)pl->p.heads * (size_t)tc * sizeof(float) : 0));
    w.dld_part = al256(w.dld_z0 + (dld ? sh * sizeof(float) : 0));
    w.total = al256(w.dld_part + (dld ? sh * sizeof(double) : 0));
    return w;
}

/* Running sums after the sub-problems' workspace: o (forward) and dv
 * (backward) summed over D tiles, E wide; dq and dk summed over the E
 * tiles of one D tile, a D tile wide (reused tile after tile).  Rows:
 * (batch row, head, token); pitch a multiple of 4 floats (8-byte pairs). */
static la_sum_layout_t layout_sums(const la_plan_t *pl, const la_cuda_plan_t *c, size_t base) {
    la_sum_layout_t w;
    w.rows = (pl->packed ? 1 : pl->p.batch) * pl->p.heads * la_cuda_row_tokens(pl);
    w.pe = (pl->p.dim_v + 3) / 4 * 4;
    w.pd = (c->td + 3) / 4 * 4;
    const size_t e_bytes = c->nd > 1 ? (size_t)w.rows * (size_t)w.pe * sizeof(float) : 0;
    const size_t d_bytes = is_bwd(pl) && c->ne > 1 ? (size_t)w.rows * (size_t)w.pd * sizeof(float) : 0;
    w.o_dv = al256(base);
    w.dq = al256(w.o_dv + e_bytes);
    w.dk = al256(w.dq + d_bytes);
    w.total = al256(w.dk + d_bytes);
    return w;
}

/* ---- one tile's plan ------------------------------------------------------------- */

static la_tile_plan_t plan_tile(const ctx_t *c, int shares) {
    const la_plan_t *pl = c->pl;
    const la_tensors_t *t = &pl->t;
    la_tile_plan_t tp;
    memset(&tp, 0, sizeof tp);
    tp.D = (int)pl->p.dim_qk;
    tp.E = (int)pl->p.dim_v;
    tp.DP = pad_dim(tp.D);
    tp.EP = pad_dim(tp.E);
    tp.eslice = choose_eslice(c);
    tp.ept = (int)ceil_div(tp.E, tp.eslice) * tp.eslice;
    tp.seg = plan_segments(c, tp.eslice);
    tp.tc = total_chunks(pl);
    tp.ws = layout_ws(pl, &tp.seg, tp.DP, tp.ept, tp.tc);
    tile_facts_t f = {tp.eslice, 0, 0, shares};
    if (is_bwd(pl)) {
        const int so = pl->op == LA_OP_STATE_BACKWARD; /* no q, d_o, dq */
        tp.vec_ok = (so || tok_vec_ok(&t->q)) && tok_vec_ok(&t->k) && tok_vec_ok(&t->v) && (so || tok_vec_ok(&t->d_o));
        tp.gvec_ok = (so || tok_vec_ok(&t->dq)) && tok_vec_ok(&t->dk) && tok_vec_ok(&t->dv);
        f.vec_ok = tp.vec_ok;
        f.gvec_ok = tp.gvec_ok;
        if (tp.seg.multi) {
            /* The forward state pass of the backward: the forward's own
             * wgmma rows do not apply (that kernel is opt-in for forwards). */
            tp.state = row_state_wgmma(c, &f) ? LA_K_STATE_WGMMA : LA_K_STATE_MMA;
            /* It shares the GPU with the reverse state pass: no SM is its own. */
            tp.side_state_stages = fwd_stages(c, tp.DP, tp.eslice, 1, INT64_MAX);
        }
        tp.bwd = pick(c, &f, PASS_BACKWARD);
        tp.bwd_stages = bwd_stages(c, tp.DP, tp.EP);
        tp.dld_planes = dld_planes(c);
        return tp;
    }
    tp.vec_ok = tok_vec_ok(&t->q) && tok_vec_ok(&t->k) && tok_vec_ok(&t->v) && tok_vec_ok(&t->o);
    f.vec_ok = tp.vec_ok;
    const int so = pl->op == LA_OP_STATE_FORWARD;
    tp.main = so ? LA_K_NONE : pick(c, &f, PASS_OUTPUT);
    tp.state = tp.seg.multi || so ? pick(c, &f, PASS_STATE) : LA_K_NONE;
    if (tp.main == LA_K_FWD_WGMMA || tp.state == LA_K_FWD_WGMMA) {
        tp.stages = 2;
#ifdef LA_HAVE_SM90A
        tp.state_stages =
            la_cuda_fwd_wg_blocks_per_sm(tp.DP) * (la_cuda_fwd_wg_smem(tp.DP, 4, 1) + 1024) <= c->lim->smem_per_sm ? 4
                                                                                                                 : 2;
#endif
        return tp;
    }
    const int64_t blocks = (int64_t)tp.seg.total * pl->p.heads * (tp.ept / tp.eslice); /* either pass's grid */
    tp.stages = fwd_stages(c, tp.DP, tp.eslice, 0, blocks);
    tp.state_stages = fwd_stages(c, tp.DP, tp.eslice, 1, blocks);
    /* The rows and warp-role kernels: four stages (loads three chunks ahead;
     * an SM must keep ~32 GB/s in flight) where they fit, else two. */
    if (tp.main == LA_K_FWD_ROWS || tp.main == LA_K_FWD_WARP_ROLES)
        tp.rows_stages = la_cuda_fwd_rows_smem(4) + 1024 <= c->lim->smem_per_sm ? 4 : 2;
    return tp;
}

/* ---- the plan --------------------------------------------------------------------- */

la_plan_t la_cuda_sub_plan(const la_plan_t *pl, int td, int te, int64_t d0, int64_t e0) {
    la_plan_t s = *pl;
    la_tensors_t *t = &s.t;
    s.p.dim_qk = min_int(pl->p.dim_qk - d0, td);
    s.p.dim_v = min_int(pl->p.dim_v - e0, te);
    la_tensor_t *dcols[4] = {&t->q, &t->k, &t->dq, &t->dk}, *ecols[4] = {&t->v, &t->o, &t->d_o, &t->dv};
    for (int i = 0; i < 4; i++) {
        if (dcols[i]->data)
            dcols[i]->data = (char *)dcols[i]->data + d0 * dcols[i]->stride[3] * (int64_t)la_dtype_size(dcols[i]->dtype);
        if (ecols[i]->data)
            ecols[i]->data = (char *)ecols[i]->data + e0 * ecols[i]->stride[3] * (int64_t)la_dtype_size(ecols[i]->dtype);
    }
    la_tensor_t *states[4] = {&t->initial_state, &t->final_state, &t->d_final_state, &t->d_initial_state};
    for (int i = 0; i < 4; i++)
        if (states[i]->data) states[i]->data = (float *)states[i]->data + d0 * states[i]->stride[2] + e0 * states[i]->stride[3];
    if (d0 || e0) s.check_values = LA_CHECK_VALUES_OFF; /* the first sub-problem checked the decays */
    return s;
}

static la_status_t support(const ctx_t *c, char *msg) {
    const la_plan_t *pl = c->pl;
    /* q, k, v, o in one dtype: the kernels are instantiated per dtype. */
    const la_tensor_t *tok = pl->op == LA_OP_STATE_FORWARD || pl->op == LA_OP_STATE_BACKWARD ? &pl->t.k : &pl->t.q;
    la_dtype_t dt = tok->dtype;
    const la_tensor_t *all[4] = {&pl->t.q, &pl->t.k, &pl->t.v, &pl->t.o};
    for (int i = 0; i < 4; i++)
        if (all[i]->data && all[i]->dtype != dt) {
            snprintf(msg, LA_MSG_LEN, "the CUDA backend needs q, k, v and o in one dtype");
            return LA_STATUS_UNSUPPORTED_DTYPE;
        }
    if (pl->p.heads > 65535) { /* heads are a grid dimension of every kernel */
        snprintf(msg, LA_MSG_LEN, "the CUDA backend takes at most 65535 heads (got %lld)", (long long)pl->p.heads);
        return LA_STATUS_NOT_SUPPORTED;
    }
    if (pl->op == LA_OP_DECODE && pl->p.seqlen > LA_CUDA_DECODE_MAX_T) {
        snprintf(msg, LA_MSG_LEN, "the CUDA decode takes up to %d new tokens per sequence, got T = %lld: run longer "
                 "spans with la_forward", LA_CUDA_DECODE_MAX_T, (long long)pl->p.seqlen);
        return LA_STATUS_NOT_SUPPORTED;
    }
    if (pl->op == LA_OP_DECODE) return LA_STATUS_SUCCESS;
    if (is_bwd(pl)) {
        const int state_only = pl->op == LA_OP_STATE_BACKWARD;
        const la_tensor_t *g[4] = {&pl->t.dk, &pl->t.dv, &pl->t.d_o, &pl->t.dq};
        for (int i = 0; i < (state_only ? 2 : 4); i++)
            if (g[i]->dtype != dt) {
                snprintf(msg, LA_MSG_LEN, "the CUDA backward needs its token tensors (q, k, v, d_o, dq, dk, dv) in one dtype");
                return LA_STATUS_UNSUPPORTED_DTYPE;
            }
    }
    if (!is_scalar_kind(pl->p.decay) && c->pol->vec_kernels == LA_SWITCH_OFF) {
        snprintf(msg, LA_MSG_LEN,
                 "the policy turns the CUDA vector-decay kernels off (vec_kernels = LA_SWITCH_OFF, or LA_CUDA_VEC=0), "
                 "and this operation has kind %d; decode still runs vector decays, and the CPU backend every operation",
                 (int)pl->p.decay);
        return LA_STATUS_UNSUPPORTED_DECAY;
    }
    return LA_STATUS_SUCCESS;
}

/* Vector decays: a recurrence kernel walks each (sequence, head, slice of
 * value columns) in chunks of 16 tokens, on tensor cores where it applies,
 * else in fp32 (kernels/vector, chosen per run at launch; the fp32 kernel,
 * whose block is checked here, always fits); the backward runs it on
 * transposed and reversed operands (vec_bwd.h).  The workspace holds the
 * packed tables, and the final state where the backward's decay gradient
 * meets an incoming final-state gradient. */
static la_status_t plan_vector(const la_plan_t *pl, const la_policy_t *pol, la_cuda_plan_t *p, char *msg) {
    const int bwd = is_bwd(pl);
    const int64_t widest = bwd && pl->p.dim_v > pl->p.dim_qk ? pl->p.dim_v : pl->p.dim_qk; /* runs Q, K: D' = E */
    const int smem = la_vec_fwd_smem((int)widest);
    if (smem > p->lim.smem_optin) {
        snprintf(msg, LA_MSG_LEN, "the CUDA vector-decay kernel needs %d bytes of shared memory per block, this GPU has %d",
                 smem, p->lim.smem_optin);
        return LA_STATUS_NOT_SUPPORTED;
    }
    p->nd = p->ne = 1;
    p->td = (int)pl->p.dim_qk;
    p->te = (int)pl->p.dim_v;
    la_tile_plan_t *t = &p->tile[0][0];
    t->D = p->td;
    t->E = p->te;
    t->eslice = LA_VEC_EV;
    t->main = bwd ? LA_K_VEC_BWD : LA_K_VEC_FWD;
    t->vec_mma_smem = p->lim.smem_optin;
    t->vec_sms = p->lim.sms;
    t->vec_warp_roles = pol->vec_warp_roles == LA_SWITCH_ON;
    t->seg.seg_len = pl->p.seqlen; /* one segment per sequence */
    t->seg.total = (int)pl->num_seqs;
    const size_t S = (size_t)pl->num_seqs;
    if (pl->packed) {
        t->ws.cu = 0;
        t->ws.seg_off = al256((S + 1) * sizeof(int64_t));
        t->ws.chunk_off = t->ws.seg_off + al256((S + 1) * sizeof(int));
        t->ws.total = t->ws.chunk_off + al256((S + 1) * sizeof(int));
    }
    /* A sequence split where the tensor-core kernel's blocks would not fill the GPU once (few rows
     * and heads): batch rows only, segments of at least 128 tokens, as many blocks as the SMs hold
     * at once.  Each run walks its segments' states, folds them, then walks each segment from its
     * state (the backward: each of its runs, in its own direction).  Policy vec_split = OFF walks
     * each row whole. */
    const int D = (int)pl->p.dim_qk, E = (int)pl->p.dim_v;
    const int mma = la_cuda_vec_uses_mma(D, bwd, pl->t.k.dtype, t->vec_mma_smem) &&
                    (!bwd || la_cuda_vec_uses_mma(E, bwd, pl->t.k.dtype, t->vec_mma_smem)); /* runs Q, K: E rows */
    if (!pl->packed && mma && pol->vec_split != LA_SWITCH_OFF) {
        const int cd = pl->p.decay == LA_DECAY_VECTOR_KV;
        const int et = la_vec_mma_et(D, E, cd, bwd, t->vec_mma_smem);
        const int ns = la_vec_mma_stages(D, et, cd, bwd, t->vec_mma_smem);
        const int per_sm_smem = p->lim.smem_per_sm / (la_vec_mma_smem(D, et, cd, bwd, ns) + 1024);
        /* Blocks an SM holds by threads (split outputs: by registers, up to 255 a thread; the
         * warp-role kernel: one 512-thread block). */
        const int per_sm_thr = t->vec_warp_roles && et == 128 ? 1 : (bwd ? 256 : 512) / LA_VM_THREADS(et);
        const int per_sm = per_sm_smem < 1 ? 1 : per_sm_smem > per_sm_thr ? per_sm_thr : per_sm_smem;
        const int64_t blocks = (int64_t)S * pl->p.heads * ((pl->p.dim_v + et - 1) / et);
        const int64_t want = (int64_t)per_sm * p->lim.sms / blocks; /* one wave */
        const int64_t most = pl->p.seqlen / 128;
        const int64_t nseg = want < most ? want : most;
        if (nseg > 1) {
            const int64_t len = ((pl->p.seqlen + nseg - 1) / nseg + 15) / 16 * 16;
            t->seg.seg_len = len;
            t->seg.n_seg = (int)((pl->p.seqlen + len - 1) / len);
            t->seg.total = (int)(S * t->seg.n_seg);
            t->seg.multi = 1;
            const size_t rows = (size_t)t->seg.total * (size_t)pl->p.heads;
            t->ws.vec_seg_state = t->ws.total;
            t->ws.total += al256(rows * (size_t)pl->p.dim_qk * (size_t)pl->p.dim_v * sizeof(float));
            t->ws.vec_seg_tot = t->ws.total;
            t->ws.total += al256(rows * (size_t)(pl->p.dim_qk + pl->p.dim_v) * sizeof(float));
            if (bwd) { /* runs K and V's running sums, by segment and column */
                t->ws.vec_seg_sum = t->ws.total;
                t->ws.total += al256(rows * (size_t)(D > E ? D : E) * sizeof(double));
            }
        }
    }
    if (bwd && la_vec_bwd_ws_state(pl->want_dld || pl->want_dldv, pl->has_dfinal)) {
        t->ws.vec_state = t->ws.total;
        t->ws.total += al256(S * (size_t)pl->p.heads * (size_t)pl->p.dim_qk * (size_t)pl->p.dim_v * sizeof(float));
    }
    p->tile[0][1] = p->tile[1][0] = p->tile[1][1] = *t;
    p->workspace = t->ws.total;
    return LA_STATUS_SUCCESS;
}

la_plan_t la_cuda_served_as_dense(const la_plan_t *pl, float *states) {
    la_plan_t d = *pl;
    d.p.checkpoint_interval = 0;
    memset(&d.t.checkpoints, 0, sizeof d.t.checkpoints);
    d.has_checkpoints = 0;
    if (!pl->has_pool) return d;
    const int64_t S = pl->num_seqs, H = pl->p.heads, D = pl->p.dim_qk, E = pl->p.dim_v;
    la_tensor_t *st[2] = {&d.t.initial_state, &d.t.final_state};
    const int64_t dims[4] = {S, H, D, E};
    for (int i = 0; i < 2; i++) {
        la_tensor_contiguous(st[i], states + i * S * H * D * E, LA_DTYPE_F32, S, H, D, E);
        for (int k = 0; k < 4; k++)
            if (dims[k] == 1) st[i]->stride[k] = 0; /* as validate.c leaves a dim of extent 1 */
    }
    memset(&d.t.pool, 0, sizeof d.t.pool);
    d.has_pool = 0;
    d.has_initial = d.has_final = 1;
    return d;
}

/* A stand-in address for planning: 256-byte aligned like the workspace. */
#define LA_PLAN_STATES ((float *)(uintptr_t)256)

la_status_t la_cuda_make_plan(const la_plan_t *pl, int num_threads, void *bplan, char *msg) {
    la_cuda_plan_t *p = (la_cuda_plan_t *)bplan;
    memset(p, 0, sizeof *p);
    if ((pl->has_pool || pl->has_checkpoints) && pl->op != LA_OP_DECODE) {
        la_status_t st = la_cuda_limits(pl->policy, &p->lim, msg);
        la_policy_t defaults;
        la_policy_init(&defaults);
        ctx_t c = {pl, &p->lim, pl->policy ? pl->policy : &defaults};
        if (st || (st = support(&c, msg))) return st;
        const la_plan_t dense = la_cuda_served_as_dense(pl, LA_PLAN_STATES);
        if ((st = la_cuda_make_plan(&dense, num_threads, bplan, msg))) return st;
        const size_t S = (size_t)pl->num_seqs;
        p->served = 1;
        p->pooled = pl->has_pool;
        size_t at = al256(p->workspace);
        if (p->pooled) {
            p->pool_states = at;
            at += al256(2 * S * (size_t)pl->p.heads * (size_t)pl->p.dim_qk * (size_t)pl->p.dim_v * 4);
        }
        p->served_cu = at;
        p->served_tabs = p->served_cu + al256((S + 1) * sizeof(int64_t));
        p->workspace = p->served_tabs + 2 * al256((S + 1) * sizeof(int));
        return LA_STATUS_SUCCESS;
    }
    (void)num_threads;
    la_status_t st = la_cuda_limits(pl->policy, &p->lim, msg);
    if (st) return st;
    la_policy_t defaults;
    la_policy_init(&defaults);
    ctx_t c = {pl, &p->lim, pl->policy ? pl->policy : &defaults};
    if ((st = support(&c, msg))) return st;
    if (pl->op == LA_OP_DECODE) {
        p->nd = p->ne = 1;
        p->tile[0][0].main = LA_K_DECODE;
        return LA_STATUS_SUCCESS;
    }
    if (!is_scalar_kind(pl->p.decay)) return plan_vector(pl, c.pol, p, msg);
    const int ok = is_bwd(pl) ? bwd_tiles(&c, &p->td, &p->te) : fwd_tiles(&c, &p->td, &p->te);
    if (!ok) {
        if (is_bwd(pl))
            snprintf(msg, LA_MSG_LEN, "the CUDA backward%s%s needs %d bytes of shared memory per block, this GPU has %d",
                     elem_of(pl) == 4 ? " of f32 inputs" : "", pl->want_dld ? " with the decay gradient" : "",
                     la_cuda_bwd_smem(64, 64, elem_of(pl), pl->want_dld, 1), p->lim.smem_optin);
        else
            snprintf(msg, LA_MSG_LEN, "the CUDA forward needs %d bytes of shared memory per block, this GPU has %d",
                     la_cuda_fwd_smem(64, elem_of(pl) == 4 ? LA_CUDA_ESLICE_SMALL : LA_CUDA_ESLICE_LARGE, elem_of(pl), 1, 0),
                     p->lim.smem_optin);
        return LA_STATUS_NOT_SUPPORTED;
    }
    p->nd = (int)ceil_div(pl->p.dim_qk, p->td);
    p->ne = (int)ceil_div(pl->p.dim_v, p->te);
    /* Whether a tile's outputs are summed shares (the summing variants only). */
    const int shares = is_bwd(pl) ? (p->nd > 1 || p->ne > 1) : p->nd > 1;
    size_t sub_ws = 0;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            if ((i && p->nd == 1) || (j && p->ne == 1)) continue;
            const la_plan_t sub = la_cuda_sub_plan(pl, p->td, p->te, i ? (int64_t)(p->nd - 1) * p->td : 0,
                                                   j ? (int64_t)(p->ne - 1) * p->te : 0);
            ctx_t cs = {&sub, &p->lim, c.pol};
            p->tile[i][j] = plan_tile(&cs, shares);
            if (p->tile[i][j].ws.total > sub_ws) sub_ws = p->tile[i][j].ws.total;
        }
    /* Tiles that divide evenly share [0][0]'s plan. */
    if (p->nd == 1) p->tile[1][0] = p->tile[0][0], p->tile[1][1] = p->tile[0][1];
    if (p->ne == 1) p->tile[0][1] = p->tile[0][0], p->tile[1][1] = p->tile[1][0];
    p->sums = layout_sums(pl, p, sub_ws);
    p->workspace = p->sums.total;
    return LA_STATUS_SUCCESS;
}

size_t la_cuda_plan_workspace(const la_plan_t *pl, const void *bplan) {
    const la_cuda_plan_t *p = (const la_cuda_plan_t *)bplan;
    return pl->op == LA_OP_DECODE ? 0 : p->workspace;
}

/* snprintf at *n, advancing it; stops quietly when buf is full. */
#define APPEND(...)                                                                    \
    do {                                                                               \
        if (n >= 0 && (size_t)n < len) n += snprintf(buf + n, len - (size_t)n, __VA_ARGS__); \
    } while (0)

void la_cuda_describe(const la_plan_t *pl, const void *bplan, char *buf, size_t len) {
    static const char *ops[] = {"forward", "backward", "decode", "state forward", "state backward"};
    static const char *dts[] = {"f32", "f16", "bf16"};
    const la_cuda_plan_t *p = (const la_cuda_plan_t *)bplan;
    const la_tile_plan_t *t = &p->tile[0][0];
    int n = 0;
    buf[0] = '\0';
    APPEND("cuda %s, %s, D%lld E%lld, sm_%d%d (%d SMs, %d KB per block%s)", ops[pl->op], dts[pl->t.k.dtype],
           (long long)pl->p.dim_qk, (long long)pl->p.dim_v, p->lim.cc_major, p->lim.cc_minor, p->lim.sms,
           p->lim.smem_optin / 1024, p->lim.smem_capped ? ", policy-capped" : "");
    if (pl->op == LA_OP_DECODE) {
        APPEND(": decode kernel, %lld blocks, %lld token%s a sequence%s", (long long)(pl->num_seqs * pl->p.heads),
               (long long)pl->p.seqlen, pl->p.seqlen == 1 ? "" : "s",
               pl->has_pool ? (pl->t.pool.states.dtype == LA_DTYPE_BF16 ? ", bf16 state pool by slot" : ", f32 state pool by slot")
                            : "");
        return;
    }
    if (p->pooled)
        APPEND(" [state pool: slots gathered into dense f32 states in the workspace, the final states scattered back]");
    if (pl->has_checkpoints)
        APPEND(" [checkpoints every %lld tokens: a recurrence kernel beside the forward]", (long long)pl->p.checkpoint_interval);
    if (t->main == LA_K_VEC_FWD || t->main == LA_K_VEC_BWD) {
        const int rows = (int)pl->p.dim_qk, cols = (int)pl->p.dim_v; /* the runs' row dims: D, and E transposed */
        const int split = t->main == LA_K_VEC_BWD && (pl->want_dld || pl->want_dldv);
        const int mma_d = la_cuda_vec_uses_mma(rows, split, pl->t.k.dtype, t->vec_mma_smem);
        const int mma_e = t->main == LA_K_VEC_BWD && la_cuda_vec_uses_mma(cols, split, pl->t.k.dtype, t->vec_mma_smem);
        APPEND(": %s (the recurrence kernel in chunks of 16 tokens, %s%s), %d sequence%s x %lld heads, workspace %zu bytes",
               la_cuda_kernel_name(t->main),
               mma_d && (mma_e || t->main == LA_K_VEC_FWD) ? "tensor cores"
               : mma_d || mma_e                            ? "tensor cores where the rows are at most 128, else fp32 products"
                                                           : "fp32 products",
               t->main == LA_K_VEC_BWD ? "; runs for dq, dk, dv, the decay gradients summed backwards" : "",
               (int)pl->num_seqs, pl->num_seqs == 1 ? "" : "s", (long long)pl->p.heads, p->workspace);
        if (t->vec_warp_roles && mma_d)
            APPEND("; warp roles (walks and products on their own warps) for 128-column runs where the block fits");
        if (t->seg.multi)
            APPEND("; each sequence split into %d segments of %lld tokens (their state passes, a fold, their walks)",
                   t->seg.n_seg, (long long)t->seg.seg_len);
        return;
    }
    APPEND(": head-dim tile %dx%d (%d x %d tiles%s)", p->td, p->te, p->nd, p->ne, p->nd * p->ne > 1 ? ", summed" : "");
    APPEND(", %d segment%s of %lld tokens (%s%s)", t->seg.total, t->seg.total == 1 ? "" : "s", (long long)t->seg.seg_len,
           t->seg.prefix ? "prefix walk" : t->seg.multi ? "state pass + fold" : "one per sequence",
           pl->cu_device ? ", device offsets: a bound" : "");
    if (is_bwd(pl)) {
        if (t->state) APPEND(", forward state pass %s (%d stages, side stream)", la_cuda_kernel_name(t->state), t->side_state_stages);
        APPEND(", main pass %s (%d stage%s%s)", la_cuda_kernel_name(t->bwd), t->bwd_stages, t->bwd_stages == 1 ? "" : "s",
               pl->want_dld ? ", decay gradient" : "");
        if (t->dld_planes) APPEND(", %d operand planes", t->dld_planes);
    } else {
        APPEND(", value slices of %d", t->eslice);
        if (t->state) APPEND(", state pass %s (%d stages)", la_cuda_kernel_name(t->state), t->state_stages);
        if (t->main)
            APPEND(", output pass %s (%d stages)", la_cuda_kernel_name(t->main),
                   t->main == LA_K_FWD_ROWS || t->main == LA_K_FWD_WARP_ROLES ? t->rows_stages : t->stages);
    }
    APPEND(", %s vector loads", t->vec_ok ? "16-byte" : "no");
    APPEND(", workspace %zu bytes", p->workspace);
}
