/*
 * cuda_backend.cu - the CUDA backend: its support table, workspace plan and
 * launchers.
 *
 * Support comes from one function (cuda_support) that the dispatcher also
 * follows, so "supported?" and what runs cannot disagree.  What runs:
 *   forward, state-only forward  chunk kernels (mma.sync, fp32 state), scalar decay kinds;
 *                                the output pass at D, E <= 64 in bf16/f16 on the rows kernel
 *   backward, state-only backward  chunk kernels, scalar decay kinds (with d ld)
 *   decode                       one block per (sequence, head), every decay kind
 * Chunk kernels take bf16, f16 and f32 inputs; f32 as split operands (two
 * bf16 planes, three mmas per product: op_of in mma.cuh) on 64 x 64 head-dim
 * tiles only (plan_cap).
 *   (sm_90a builds: the state pass on TMA and wgmma, use_state_wg; the
 *   backward at D = E = 64 in bf16/f16 on TMA and wgmma, use_bwd_wg; a wgmma
 *   forward, opt-in with LA_CUDA_WGMMA=1, use_wg)
 * The forward chunk kernels take D <= 256 (padded to 64, 128 or 256) and any
 * E <= 256 (cut into slices of 64 or 128 columns, one block each: see
 * choose_eslice; 64 when D > 128); the backward kernel D, E <= 128.  Larger
 * head dims than a block of this GPU holds (the backward above 128, or above
 * 64 on sm_120's 99 KB; the forward above 128 there) run as sub-problems on
 * head-dim tiles whose shares are summed (run_blocked).
 *
 * Sequence parallelism: when batch x heads is small next to the number of
 * SMs, each sequence is cut into segments; a state pass computes every
 * segment's local state, a fold stitches them in order, and the forward pass
 * starts each segment from its incoming state.  Short sequences (forward, up
 * to LA_CUDA_PREFIX_UPTO tokens) skip the state pass and fold: each block
 * walks from its sequence's start (prefix mode).  The backward's forward and
 * reverse state passes are independent and run side by side (side_stream).
 */
#include "internal.h"
#include "kernel_params.h"
#include "fwd_launch.h"
#include "bwd_launch.h"
#include "decode_kernel.cuh"
#include "cuda_check.h"
#include "device_limits.h"

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
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

static int pad_dim(int64_t x) { return x <= 64 ? 64 : x <= 128 ? 128 : 256; }

static int is_scalar_kind(la_decay_t k) {
    return k == LA_DECAY_NONE || k == LA_DECAY_SCALAR_HEAD || k == LA_DECAY_SCALAR_TOKEN;
}

/* LA_CUDA_SMEM_KB's cap on a block's shared memory, in bytes (device_limits.h);
 * 0: none. */
static int smem_cap(void) {
    const char *env = getenv("LA_CUDA_SMEM_KB");
    const int kb = env ? atoi(env) : 0;
    return kb > 0 && kb < 1024 * 1024 ? kb * 1024 : 0;
}

int la_cuda_smem_optin(void) {
    int dev = 0, bytes = 48 * 1024;
    if (cudaGetDevice(&dev) == cudaSuccess)
        cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    const int cap = smem_cap();
    return cap && cap < bytes ? cap : bytes;
}

int la_cuda_smem_per_sm(void) {
    int dev = 0, bytes = 64 * 1024;
    if (cudaGetDevice(&dev) == cudaSuccess)
        cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev);
    const int cap = smem_cap();
    return cap && cap + 1024 < bytes ? cap + 1024 : bytes;
}

/* Head-dim tiles: the most rows of D and columns of E one sub-problem
 * takes (d = 0: none fits this GPU).  A plan whose dims exceed its tile runs
 * as sub-problems (run_blocked).  LA_CUDA_TILE_CAP=64 in the environment
 * caps both at 64, so a GPU with room to spare runs the blocked path as a
 * small-shared-memory one (sm_120) does: the GPU tests use it. */
typedef struct tiles {
    int d, e;
} tiles_t;

static int tile_cap(void) {
    const char *env = getenv("LA_CUDA_TILE_CAP");
    return env && atoi(env) == 64 ? 64 : env && atoi(env) == 128 ? 128 : 256;
}

static int min_int(int64_t a, int b) { return a < b ? (int)a : b; }

/* Bytes per element of the plan's token tensors (k is in every operation). */
static int elem_of(const la_plan_t *pl) { return (int)la_dtype_size(pl->t.k.dtype); }

/* f32 inputs run split operands (two bf16 planes per tile, three mmas per
 * product: op_of in mma.cuh), built for 64 x 64 head-dim tiles only: twice
 * the shared memory of a bf16 block, and one configuration to compile. */
static int plan_cap(const la_plan_t *pl) { return elem_of(pl) == 4 ? 64 : tile_cap(); }

/* Backward: D and E up to 128 each, the largest pair whose block (one
 * stage, with the decay gradient where asked) fits; 64 x 64 on sm_120. */
static tiles_t bwd_tiles(const la_plan_t *pl) {
    static const int cand[4][2] = {{128, 128}, {128, 64}, {64, 128}, {64, 64}};
    const int cap = plan_cap(pl), optin = la_cuda_smem_optin();
    tiles_t t = {0, 0};
    for (int i = 0; i < 4; i++) {
        if (cand[i][0] > cap || cand[i][1] > cap) continue;
        const int dt = min_int(pl->p.dim_qk, cand[i][0]), et = min_int(pl->p.dim_v, cand[i][1]);
        if (la_cuda_bwd_smem(pad_dim(dt), pad_dim(et), elem_of(pl), pl->want_dld) <= optin) {
            t.d = dt;
            t.e = et;
            return t;
        }
    }
    return t;
}

/* Forward: D up to 256 (in 64-column value slices above 128) where one
 * single-stage block fits this GPU (not on sm_120's 99 KB: 128 there); E
 * is never cut, the kernel walks it in slices. */
static tiles_t fwd_tiles(const la_plan_t *pl) {
    const int cap = plan_cap(pl), optin = la_cuda_smem_optin();
    tiles_t t = {0, (int)pl->p.dim_v};
    for (int d = 256; d >= 64; d /= 2) {
        if (d > cap) continue;
        const int dt = min_int(pl->p.dim_qk, d);
        const int eslice = pad_dim(dt) > 128 || elem_of(pl) == 4 ? LA_CUDA_ESLICE_SMALL : LA_CUDA_ESLICE_LARGE;
        if (la_cuda_fwd_smem(pad_dim(dt), eslice, elem_of(pl), 1, 0) <= optin) {
            t.d = dt;
            return t;
        }
    }
    return t;
}

static int is_bwd(const la_plan_t *pl) { return pl->op == LA_OP_BACKWARD || pl->op == LA_OP_STATE_BACKWARD; }

static tiles_t plan_tiles(const la_plan_t *pl) { return is_bwd(pl) ? bwd_tiles(pl) : fwd_tiles(pl); }

/* The one support table of this backend. */
static la_status_t cuda_support(const la_plan_t *pl, char *msg) {
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
    if (pl->op == LA_OP_DECODE) return LA_STATUS_SUCCESS;
    if (pl->op == LA_OP_BACKWARD || pl->op == LA_OP_STATE_BACKWARD) {
        const int state_only = pl->op == LA_OP_STATE_BACKWARD;
        const la_tensor_t *g[4] = {&pl->t.dk, &pl->t.dv, &pl->t.d_o, &pl->t.dq};
        for (int i = 0; i < (state_only ? 2 : 4); i++)
            if (g[i]->dtype != dt) {
                snprintf(msg, LA_MSG_LEN, "the CUDA backward needs its token tensors (q, k, v, d_o, dq, dk, dv) in one dtype");
                return LA_STATUS_UNSUPPORTED_DTYPE;
            }
        tiles_t tl = bwd_tiles(pl);
        if (!tl.d) {
            snprintf(msg, LA_MSG_LEN, "the CUDA backward%s%s needs %d bytes of shared memory per block, this GPU has %d",
                     elem_of(pl) == 4 ? " of f32 inputs" : "", pl->want_dld ? " with the decay gradient" : "",
                     la_cuda_bwd_smem(64, 64, elem_of(pl), pl->want_dld), la_cuda_smem_optin());
            return LA_STATUS_NOT_SUPPORTED;
        }
    }
    if (!is_scalar_kind(pl->p.decay)) {
        snprintf(msg, LA_MSG_LEN, "the CUDA backend runs decay kinds NONE, SCALAR_HEAD and SCALAR_TOKEN (got %d)",
                 (int)pl->p.decay);
        return LA_STATUS_UNSUPPORTED_DECAY;
    }
    if (!fwd_tiles(pl).d) {
        snprintf(msg, LA_MSG_LEN, "the CUDA forward needs %d bytes of shared memory per block, this GPU has %d",
                 la_cuda_fwd_smem(64, elem_of(pl) == 4 ? LA_CUDA_ESLICE_SMALL : LA_CUDA_ESLICE_LARGE, elem_of(pl), 1, 0),
                 la_cuda_smem_optin());
        return LA_STATUS_NOT_SUPPORTED;
    }
    return LA_STATUS_SUCCESS;
}

static int device_sms(void) {
    int dev = 0, sms = 1;
    if (cudaGetDevice(&dev) != cudaSuccess) return 1;
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) return 1;
    return sms;
}

/* The forward on Hopper's warpgroup tensor cores (fwd_wg_kernel.cuh) can run
 * where it was built (sm_90a, LA_HAVE_SM90A) on a compute capability 9.0
 * device, for D <= 128.  It is correct (the GPU tests run the case table on
 * it) but not yet faster than the mma.sync kernels (docs/PERF.md: one
 * warpgroup per chunk is latency-bound), so it runs only when asked for
 * with LA_CUDA_WGMMA=1 in the environment. */
static int device_is_sm90(void) {
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess)
        return 0;
    return major == 9 && minor == 0;
}

static int use_wg(const la_plan_t *pl) {
#ifdef LA_HAVE_SM90A
    if (pl->op != LA_OP_FORWARD && pl->op != LA_OP_STATE_FORWARD) return 0;
    if (pl->p.dim_qk > 128 || elem_of(pl) != 2) return 0; /* bf16 and f16 kernels only */
    const char *env = getenv("LA_CUDA_WGMMA");
    if (!env || env[0] != '1') return 0;
    return device_is_sm90();
#else
    (void)pl;
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
static int choose_eslice(const la_plan_t *pl, int sms) {
    if (use_wg(pl)) return LA_CUDA_ESLICE_SMALL; /* the Hopper kernel's one slice width */
    if (elem_of(pl) == 4) return LA_CUDA_ESLICE_SMALL; /* the f32 kernels' one slice width */
    if (pl->p.dim_v <= LA_CUDA_ESLICE_SMALL) return LA_CUDA_ESLICE_SMALL; /* a wider slice would be padding */
    if (pl->p.dim_qk > 128) return LA_CUDA_ESLICE_SMALL; /* a 256 x 64 fp32 state is all the registers allow */
    int64_t items = pl->num_seqs * pl->p.heads * ((pl->p.dim_v + 127) / 128);
    if (items >= (3 * (int64_t)sms) / 4 || la_plan_max_len(pl) >= 512) return LA_CUDA_ESLICE_LARGE;
    return LA_CUDA_ESLICE_SMALL;
}

/* Forward blocks per SM (the kernel's launch bounds): 64-column slices run
 * two per SM up to D = 128; a D = 256 block, or an f32 one, takes a whole SM. */
static int blocks_per_sm(int eslice, int DP, int elem) {
    return eslice == LA_CUDA_ESLICE_LARGE || DP > 128 || elem == 4 ? 1 : 2;
}

/* The forward's output pass for D, E <= 64 in bf16 or f16 runs on the rows
 * kernel (fwd_rows_kernel.cuh: P stays in registers, one barrier per chunk)
 * unless LA_CUDA_ROWS=0 in the environment asks for the general kernel
 * (A/B measurements; the GPU tests run the case table both ways). */
static int use_rows(const la_plan_t *pl, int eslice) {
    if (pl->op != LA_OP_FORWARD || elem_of(pl) != 2 || pl->p.dim_qk > 64 || eslice != LA_CUDA_ESLICE_SMALL) return 0;
    const char *env = getenv("LA_CUDA_ROWS");
    return !(env && env[0] == '0');
}

/* Where the rows kernel runs, the warp-role kernel (fwd_ws_kernel.cuh) takes
 * its place when the GPU's blocks hold its four slots (151 KB: sm_80, sm_90
 * and sm_100, not sm_120's 99 KB), the tensors are vectorisable and o is not
 * a summed head-dim share, unless LA_CUDA_WS=0 (A/B measurements; the GPU
 * tests run the case table both ways).  Four slots, not five: five fit the
 * H200 too but ran 3-12% slower (docs/PERF.md). */
static int use_ws(void) {
    const char *env = getenv("LA_CUDA_WS");
    if (env && env[0] == '0') return 0;
    return la_cuda_fwd_ws_smem() + 1024 <= la_cuda_smem_per_sm();
}

/* The same for the plan's forward kernel (the Hopper one: 3 at D = 64, else
 * 2).  The rows kernel runs one block per SM, so B4 H32 fills the GPU
 * without segments (whose state pass reads K and V a second time). */
static int fwd_blocks_per_sm(const la_plan_t *pl, int eslice, int DP) {
#ifdef LA_HAVE_SM90A
    if (use_wg(pl)) return la_cuda_fwd_wg_blocks_per_sm(DP);
#endif
    if (use_rows(pl, eslice)) return 1;
    return blocks_per_sm(eslice, DP, elem_of(pl));
}

/* The state pass (of the forward, the backward and the state-only forward)
 * runs on the Hopper kernel (state_wg_kernel.cuh: TMA tile loads three
 * chunks ahead, wgmma, two warpgroups) where it was built (sm_90a) on a compute
 * capability 9.0 device, for bf16 and f16 with D in (64, 128], 128-column
 * value slices and vectorisable k and v, unless LA_CUDA_STATE_WG=0 (A/B
 * measurements; the GPU tests run the case table both ways). */
static int use_state_wg(const la_plan_t *pl, int eslice, int kv_vec) {
#ifdef LA_HAVE_SM90A
    if (elem_of(pl) != 2 || pad_dim(pl->p.dim_qk) != 128 || eslice != LA_CUDA_ESLICE_LARGE || !kv_vec) return 0;
    const char *env = getenv("LA_CUDA_STATE_WG");
    if (env && env[0] == '0') return 0;
    return device_is_sm90() && la_cuda_state_wg_smem() + 1024 <= la_cuda_smem_per_sm();
#else
    (void)pl; (void)eslice; (void)kv_vec;
    return 0;
#endif
}

/* The backward's main pass at D = E = 64 in bf16 and f16 runs on the Hopper
 * kernel (bwd_wg_kernel.cuh: TMA tiles, every product on wgmma, one
 * warpgroup per role) where it was built (sm_90a) on a compute capability
 * 9.0 device, for a full backward (dO given) without the decay gradient
 * and with vectorisable tensors and gradients, unless LA_CUDA_BWD_WG=0 (A/B
 * measurements; the GPU tests run the case table both ways).  Its blocks
 * run two per SM, as the mma.sync kernel's do at D = E = 64. */
static int use_bwd_wg(const la_plan_t *pl, int vec, int gvec) {
#ifdef LA_HAVE_SM90A
    if (pl->op != LA_OP_BACKWARD || elem_of(pl) != 2 || pl->want_dld || !vec || !gvec) return 0;
    if (pl->p.dim_qk != 64 || pl->p.dim_v != 64) return 0; /* its gradient stores write whole 128-byte rows */
    const char *env = getenv("LA_CUDA_BWD_WG");
    if (env && env[0] == '0') return 0;
    return device_is_sm90() && 2 * (la_cuda_bwd_wg_smem() + 1024) <= la_cuda_smem_per_sm();
#else
    (void)pl; (void)vec; (void)gvec;
    return 0;
#endif
}

/* f32 with the decay gradient: that gradient's products and the state
 * updates on three operand planes (24 mantissa bits, six mmas a product;
 * bwd_kernel.cuh) where its block (223 KB at 64 x 64) fits this GPU (H100,
 * H200, B200; not the A100 or sm_120, which keep two planes), unless
 * LA_CUDA_DLD_PLANES=2 (A/B measurements: the two-plane terms carry ~2^-17
 * of their size, which the gradient's cancellation multiplies;
 * docs/CUDA-BACKWARD.md).  0 where it does not apply. */
static int dld_planes(const la_plan_t *pl) {
    if (elem_of(pl) != 4 || !pl->want_dld) return 0;
    const char *env = getenv("LA_CUDA_DLD_PLANES");
    if (env && atoi(env) == 2) return 2;
    return la_cuda_bwd_smem(64, 64, 6, 1) <= la_cuda_smem_optin() ? 3 : 2;
}

static int round_up_slice(int64_t E, int eslice) { return (int)((E + eslice - 1) / eslice) * eslice; }

/* Tile stages of the forward passes: as many as the blocks that share an SM
 * leave room for (output pass 2 or 1, state pass 4 or 2).  A grid of no more
 * blocks than SMs runs one per SM whatever the launch bounds allow: the
 * D = 128 output pass's two-stage block (118 KB) fits then, not two of them. */
static int fwd_stages(int DP, int eslice, int elem, int state_only, int64_t blocks) {
    const int hi = state_only ? 4 : 2;
    const int per_sm = blocks <= device_sms() ? 1 : blocks_per_sm(eslice, DP, elem);
    const int bytes = la_cuda_fwd_smem(DP, eslice, elem, hi, state_only) + 1024;
    return per_sm * bytes <= la_cuda_smem_per_sm() ? hi : hi / 2;
}

/* How sequences are cut into segments.  One segment per sequence when the
 * (sequence, head) blocks already fill the GPU; otherwise segments of at
 * least LA_CUDA_MIN_SEGMENT_FWD / _BWD tokens until they do. */
typedef struct seg_plan {
    int64_t seg_len;
    int n_seg;          /* non-packed: segments per sequence */
    int total;          /* all segments */
    int multi;          /* any sequence has more than one segment, joined by a state pass and fold */
    int prefix;         /* ... joined by each block walking from its sequence's start instead */
} seg_plan_t;

static seg_plan_t plan_segments(const la_plan_t *pl, int sms) {
    seg_plan_t sp;
    /* Blocks without segmenting: (sequence, head, value slice) forward, or
     * (sequence, head, role) backward at one block per SM; segments multiply
     * them up to what fits on the GPU at once, never past it (a second
     * partial wave would cost as much as the first). */
    int eslice = choose_eslice(pl, sms);
    int bwd = pl->op == LA_OP_BACKWARD || pl->op == LA_OP_STATE_BACKWARD;
    int64_t items = pl->num_seqs * pl->p.heads * (bwd ? 2 : (pl->p.dim_v + eslice - 1) / eslice);
    int64_t slots = (int64_t)(bwd ? la_cuda_bwd_blocks_per_sm(pad_dim(pl->p.dim_qk), pad_dim(pl->p.dim_v), elem_of(pl))
                                  : fwd_blocks_per_sm(pl, eslice, pad_dim(pl->p.dim_qk))) * sms;
    int64_t maxlen = la_plan_max_len(pl);
    int64_t want = items >= (3 * slots) / 4 ? 1 : slots / items;
    const int prefix = pl->op == LA_OP_FORWARD && maxlen <= LA_CUDA_PREFIX_UPTO;
    int64_t min_seg = bwd ? LA_CUDA_MIN_SEGMENT_BWD : prefix ? LA_CUDA_CHUNK : LA_CUDA_MIN_SEGMENT_FWD;
    int64_t by_len = (maxlen + min_seg - 1) / min_seg;
    if (!bwd && !prefix && maxlen < LA_CUDA_SEGMENT_FROM_FWD) by_len = 1;
    if (want > by_len) want = by_len;
    if (want < 1) want = 1;
    int64_t chunks = (maxlen + LA_CUDA_CHUNK - 1) / LA_CUDA_CHUNK;
    if (chunks < 1) chunks = 1;
    int64_t per = (chunks + want - 1) / want;
    sp.seg_len = per * LA_CUDA_CHUNK;
    if (!pl->packed) {
        sp.n_seg = (int)((pl->p.seqlen + sp.seg_len - 1) / sp.seg_len);
        if (sp.n_seg < 1) sp.n_seg = 1;
        sp.total = (int)(pl->num_seqs * sp.n_seg);
        sp.multi = sp.n_seg > 1;
    } else {
        sp.n_seg = 0;
        sp.total = 0;
        sp.multi = 0;
        for (int64_t s = 0; s < pl->num_seqs; s++) {
            int64_t len = la_plan_seq_len(pl, s);
            int n = len == 0 ? 1 : (int)((len + sp.seg_len - 1) / sp.seg_len);
            sp.total += n;
            if (n > 1) sp.multi = 1;
        }
    }
    sp.prefix = prefix && sp.multi;
    if (sp.prefix) sp.multi = 0;
    return sp;
}

/* Workspace layout (bytes, each part 256-aligned):
 *   [flag int] [cu_seqlens int64 x (S+1)] [seg_off int x (S+1)] [chunk_off int x (S+1)]
 *   [seg_state f32 x total*H*DP*EPT] [seg_logdecay f32 x total*H] [seg_dstate, as seg_state]
 *   decay gradient: [dld_tok f32 x B*H*ntot] [dld_chunk f32 x 4*H*tc] [dld_z0 f32 x S*H]
 *   [dld_part f64 x S*H]
 * (EPT = E rounded up to whole value slices; seg_dstate for the backward)
 * Head-dim tiles run one after another in the largest such layout of any of
 * them, followed by their fp32 running sums (layout_sums). */
typedef struct ws_layout {
    size_t flag, cu, seg_off, chunk_off, seg_state, seg_logdecay, seg_dstate;
    size_t dld_tok, dld_chunk, dld_z0, dld_part, total;
} ws_layout_t;

static size_t al256(size_t x) { return (x + 255) & ~(size_t)255; }

/* Chunks over all sequences, and tokens per (batch row, head) row. */
static int64_t total_chunks(const la_plan_t *pl) {
    int64_t tc = 0;
    for (int64_t s = 0; s < pl->num_seqs; s++) tc += (la_plan_seq_len(pl, s) + LA_CUDA_CHUNK - 1) / LA_CUDA_CHUNK;
    return tc;
}
static int64_t tokens_per_row(const la_plan_t *pl) {
    return pl->packed ? pl->p.cu_seqlens[pl->num_seqs] : pl->p.seqlen;
}

static ws_layout_t layout_ws(const la_plan_t *pl, const seg_plan_t *sp, int eslice) {
    ws_layout_t w;
    size_t S = (size_t)pl->num_seqs + 1;
    int multi = sp->multi || pl->op == LA_OP_STATE_FORWARD;
    size_t st = multi ? (size_t)sp->total * (size_t)pl->p.heads : 0;
    int DP = pad_dim(pl->p.dim_qk), EPT = round_up_slice(pl->p.dim_v, eslice);
    w.flag = 0;
    w.cu = al256(w.flag + sizeof(int));
    w.seg_off = al256(w.cu + (pl->packed ? S * sizeof(int64_t) : 0));
    w.chunk_off = al256(w.seg_off + (pl->packed ? S * sizeof(int) : 0));
    w.seg_state = al256(w.chunk_off + (pl->packed ? S * sizeof(int) : 0));
    w.seg_logdecay = al256(w.seg_state + st * (size_t)DP * EPT * sizeof(float));
    w.seg_dstate = al256(w.seg_logdecay + st * sizeof(float));
    /* The backward's state gradients at segment boundaries, same shape. */
    size_t dst = pl->op == LA_OP_BACKWARD || pl->op == LA_OP_STATE_BACKWARD ? st * (size_t)DP * EPT * sizeof(float) : 0;
    w.dld_tok = al256(w.seg_dstate + dst);
    /* The decay gradient's scratch: per token (role 0's term, SCALAR_TOKEN),
     * per chunk and per (sequence, head).  B4 H32 N8192: 16 MiB, 0.2 MiB. */
    int dld = pl->op == LA_OP_BACKWARD || pl->op == LA_OP_STATE_BACKWARD ? pl->want_dld : 0;
    int has_do = pl->op == LA_OP_BACKWARD;
    size_t tok = dld && has_do && pl->p.decay == LA_DECAY_SCALAR_TOKEN
                     ? (size_t)(pl->packed ? 1 : pl->p.batch) * (size_t)pl->p.heads * (size_t)tokens_per_row(pl)
                     : 0;
    size_t sh = (size_t)pl->num_seqs * (size_t)pl->p.heads;
    w.dld_chunk = al256(w.dld_tok + tok * sizeof(float));
    w.dld_z0 = al256(w.dld_chunk + (dld ? 4 * (size_t)pl->p.heads * (size_t)total_chunks(pl) * sizeof(float) : 0));
    w.dld_part = al256(w.dld_z0 + (dld ? sh * sizeof(float) : 0));
    w.total = al256(w.dld_part + (dld ? sh * sizeof(double) : 0));
    return w;
}

/* Head-dim tiles (tiles_t above): the sub-problem on rows [d0, d0 + dn) of D
 * and columns [e0, e0 + en) of E is the same operation on views of the
 * plan's tensors.  The math splits exactly: Q Kᵀ sums over D and dO Vᵀ over
 * E, so o and dv are sums over D tiles, dq and dk over E tiles, d ld over
 * all; a state and its gradient are the tile pair's own block of them. */
static void view_tok(la_tensor_t *t, int64_t c0) {
    if (t->data) t->data = (char *)t->data + c0 * t->stride[3] * (int64_t)la_dtype_size(t->dtype);
}
static void view_state(la_tensor_t *t, int64_t d0, int64_t e0) {
    if (t->data) t->data = (float *)t->data + d0 * t->stride[2] + e0 * t->stride[3];
}

static la_plan_t sub_plan(const la_plan_t *pl, tiles_t tl, int64_t d0, int64_t e0) {
    la_plan_t s = *pl;
    la_tensors_t *t = &s.t;
    s.p.dim_qk = min_int(pl->p.dim_qk - d0, tl.d);
    s.p.dim_v = min_int(pl->p.dim_v - e0, tl.e);
    view_tok(&t->q, d0); view_tok(&t->k, d0); view_tok(&t->dq, d0); view_tok(&t->dk, d0);
    view_tok(&t->v, e0); view_tok(&t->o, e0); view_tok(&t->d_o, e0); view_tok(&t->dv, e0);
    view_state(&t->initial_state, d0, e0);
    view_state(&t->final_state, d0, e0);
    view_state(&t->d_final_state, d0, e0);
    view_state(&t->d_initial_state, d0, e0);
    if (d0 || e0) s.check_values = 0; /* the first sub-problem checked the decays */
    return s;
}

/* How a sub-problem's outputs are summed: LA_SUM_* bits and the fp32
 * running sums (kernel_params.h). */
typedef struct sums {
    int accum;
    la_sum_t o, dq, dk, dv;
} sums_t;

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Running sums after the sub-problems' workspace: o (forward) and dv
 * (backward) summed over D tiles, E wide; dq and dk summed over the E
 * tiles of one D tile, a D tile wide (reused tile after tile).  Rows:
 * (batch row, head, token); pitch a multiple of 4 floats (8-byte pairs). */
typedef struct sum_layout {
    int64_t rows, pe, pd;  /* rows; pitch of the E-wide and D-tile-wide sums */
    size_t o_dv, dq, dk, total;
} sum_layout_t;

static sum_layout_t layout_sums(const la_plan_t *pl, tiles_t tl, size_t base) {
    sum_layout_t w;
    const int64_t nd = ceil_div(pl->p.dim_qk, tl.d), ne = ceil_div(pl->p.dim_v, tl.e);
    w.rows = (pl->packed ? 1 : pl->p.batch) * pl->p.heads * tokens_per_row(pl);
    w.pe = (pl->p.dim_v + 3) / 4 * 4;
    w.pd = (tl.d + 3) / 4 * 4;
    const size_t e_bytes = nd > 1 ? (size_t)w.rows * (size_t)w.pe * sizeof(float) : 0;
    const size_t d_bytes = is_bwd(pl) && ne > 1 ? (size_t)w.rows * (size_t)w.pd * sizeof(float) : 0;
    w.o_dv = al256(base);
    w.dq = al256(w.o_dv + e_bytes);
    w.dk = al256(w.dq + d_bytes);
    w.total = al256(w.dk + d_bytes);
    return w;
}

static la_sum_t sum_view(char *ws, size_t off, const la_plan_t *pl, int64_t pitch, int64_t c0) {
    la_sum_t v;
    const int64_t n = tokens_per_row(pl);
    v.ptr = (float *)(ws + off) + c0;
    v.st = pitch;
    v.sh = n * pitch;
    v.sb = pl->p.heads * n * pitch;
    return v;
}

/* Tile (i, j) of nd x ne: which shares it adds and keeps, and where. */
static sums_t sub_sums(const la_plan_t *pl, tiles_t tl, const sum_layout_t *w, char *ws, int64_t d0, int64_t e0) {
    sums_t m;
    memset(&m, 0, sizeof m);
    const int64_t nd = ceil_div(pl->p.dim_qk, tl.d), ne = ceil_div(pl->p.dim_v, tl.e);
    const int64_t i = d0 / tl.d, j = e0 / tl.e;
    const int over_d = (i > 0 ? LA_SUM_ADD : 0) | (i < nd - 1 ? LA_SUM_KEEP : 0);
    const int over_e = (j > 0 ? LA_SUM_ADD : 0) | (j < ne - 1 ? LA_SUM_KEEP : 0);
    if (!is_bwd(pl)) {
        m.accum = over_d << LA_SUM_O;
        if (nd > 1) m.o = sum_view(ws, w->o_dv, pl, w->pe, 0);
        return m;
    }
    m.accum = over_e << LA_SUM_DQ | over_e << LA_SUM_DK | over_d << LA_SUM_DV | (i || j ? LA_SUM_DLD_ADD : 0);
    if (nd > 1) m.dv = sum_view(ws, w->o_dv, pl, w->pe, e0);
    if (ne > 1) {
        m.dq = sum_view(ws, w->dq, pl, w->pd, 0);
        m.dk = sum_view(ws, w->dk, pl, w->pd, 0);
    }
    return m;
}

/* The workspace of the sub-problems, which run one after another in it. */
static size_t sub_workspace(const la_plan_t *pl, tiles_t tl, int sms) {
    size_t most = 0;
    for (int64_t d0 = 0; d0 < pl->p.dim_qk; d0 += tl.d)
        for (int64_t e0 = 0; e0 < pl->p.dim_v; e0 += tl.e) {
            la_plan_t sub = sub_plan(pl, tl, d0, e0);
            seg_plan_t sp = plan_segments(&sub, sms);
            size_t bytes = layout_ws(&sub, &sp, choose_eslice(&sub, sms)).total;
            if (bytes > most) most = bytes;
        }
    return most;
}

static size_t cuda_workspace_size(const la_plan_t *pl, int num_threads) {
    (void)num_threads;
    if (pl->op == LA_OP_DECODE) return 256;
    tiles_t tl = plan_tiles(pl);
    if (!tl.d) return 256; /* refused by cuda_support */
    return layout_sums(pl, tl, sub_workspace(pl, tl, device_sms())).total;
}

static la_tok_t tok_of(const la_tensor_t *t) {
    la_tok_t x;
    x.ptr = t->data;
    x.sb = t->stride[0]; x.sh = t->stride[1]; x.st = t->stride[2]; x.sc = t->stride[3];
    return x;
}

static la_st_t st_of(const la_tensor_t *t) {
    la_st_t x;
    x.ptr = (float *)t->data;
    x.ss = t->stride[0]; x.sh = t->stride[1]; x.sd = t->stride[2]; x.se = t->stride[3];
    return x;
}

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

/* A second stream per device, made on first use and kept for the process
 * (as a library handle would keep it): the backward's forward state pass
 * runs on it beside the reverse state pass, which it does not depend on.
 * Fork and join go through events, so stream capture records them too. */
#define LA_CUDA_MAX_DEVICES 64
static cudaStream_t side_streams[LA_CUDA_MAX_DEVICES];

static cudaStream_t side_stream(void) {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= LA_CUDA_MAX_DEVICES) return NULL;
    cudaStream_t s = __atomic_load_n(&side_streams[dev], __ATOMIC_ACQUIRE);
    if (s) return s;
    cudaStream_t mine = NULL, expected = NULL;
    if (cudaStreamCreateWithFlags(&mine, cudaStreamNonBlocking) != cudaSuccess) return NULL;
    if (__atomic_compare_exchange_n(&side_streams[dev], &expected, mine, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return mine;
    cudaStreamDestroy(mine); /* another thread's stream won */
    return expected;
}

/* Parameters every chunk kernel shares, and the packed tables uploaded to
 * the workspace (one synchronising copy). */
static la_status_t fill_common(const la_plan_t *pl, const seg_plan_t *sp, char *ws, const ws_layout_t *w,
                               cudaStream_t stream, la_fwd_params_t *pp, char *msg) {
    la_fwd_params_t &p = *pp;
    memset(&p, 0, sizeof p);
    const la_tensors_t *t = &pl->t;
    p.q = tok_of(&t->q); p.k = tok_of(&t->k); p.v = tok_of(&t->v); p.o = tok_of(&t->o);
    p.D = (int)pl->p.dim_qk; p.E = (int)pl->p.dim_v; p.H = (int)pl->p.heads;
    p.scale = pl->p.scale;
    p.decay = (int)pl->p.decay;
    p.ld = (const float *)t->ld.data;
    p.ld_sb = t->ld.stride[0]; p.ld_sh = t->ld.stride[1]; p.ld_st = t->ld.stride[2];
    p.s0 = st_of(&t->initial_state);
    p.sN = st_of(&t->final_state);
    if (!pl->has_final) p.sN.ptr = NULL;
    p.seg.seqlen = pl->p.seqlen;
    p.seg.n_seg = sp->n_seg;
    p.seg.seg_len = sp->seg_len;
    p.seg.num_seqs = (int)pl->num_seqs;
    p.seg.total_segs = sp->total;
    if (pl->packed) {
        int64_t S = pl->num_seqs;
        int64_t *cu = (int64_t *)(ws + w->cu);
        int *off = (int *)(ws + w->seg_off), *coff = (int *)(ws + w->chunk_off);
        int host_off[2 * 1024];
        /* first segment and first chunk of each sequence, side by side */
        int *hoff = S + 1 <= 1024 ? host_off : (int *)malloc(2 * (size_t)(S + 1) * sizeof(int));
        if (!hoff) { snprintf(msg, LA_MSG_LEN, "out of host memory"); return LA_STATUS_ALLOC_FAILED; }
        int *hcoff = hoff + S + 1;
        hoff[0] = 0;
        hcoff[0] = 0;
        for (int64_t s = 0; s < S; s++) {
            int64_t len = la_plan_seq_len(pl, s);
            hoff[s + 1] = hoff[s] + (len == 0 ? 1 : (int)((len + sp->seg_len - 1) / sp->seg_len));
            hcoff[s + 1] = hcoff[s] + (int)((len + LA_CUDA_CHUNK - 1) / LA_CUDA_CHUNK);
        }
        cudaError_t e1 = cudaMemcpyAsync(cu, pl->p.cu_seqlens, (size_t)(S + 1) * sizeof(int64_t),
                                         cudaMemcpyHostToDevice, stream);
        cudaError_t e2 = cudaMemcpyAsync(off, hoff, (size_t)(S + 1) * sizeof(int), cudaMemcpyHostToDevice, stream);
        cudaError_t e4 = cudaMemcpyAsync(coff, hcoff, (size_t)(S + 1) * sizeof(int), cudaMemcpyHostToDevice, stream);
        /* The copies read pageable host memory: wait before the buffer goes away. */
        cudaError_t e3 = cudaStreamSynchronize(stream);
        if (hoff != host_off) free(hoff);
        if (e1 != cudaSuccess || e2 != cudaSuccess || e3 != cudaSuccess || e4 != cudaSuccess) {
            snprintf(msg, LA_MSG_LEN, "copying cu_seqlens to the device failed");
            return LA_STATUS_EXECUTION_FAILED;
        }
        p.seg.cu = cu;
        p.seg.seg_off = off;
        p.seg.chunk_off = coff;
    }
    return LA_STATUS_SUCCESS;
}

/* The forward kernels of the input dtype. */
static la_status_t fwd_launch(la_dtype_t dt, const la_fwd_params_t *p, const la_fwd_launch_t *l, cudaStream_t s,
                              char *msg) {
    if (dt == LA_DTYPE_BF16) return la_cuda_fwd_bf16(p, l, s, msg);
    if (dt == LA_DTYPE_F16) return la_cuda_fwd_f16(p, l, s, msg);
    return la_cuda_fwd_f32(p, l, s, msg);
}

static la_status_t run_forward(const la_plan_t *pl, char *ws, cudaStream_t stream, const sums_t *sums, char *msg) {
    int sms = device_sms();
    seg_plan_t sp = plan_segments(pl, sms);
    int eslice = choose_eslice(pl, sms);
    ws_layout_t w = layout_ws(pl, &sp, eslice);
    if (pl->check_values) {
        la_status_t st = la_cuda_check_decays(pl, (int *)(ws + w.flag), stream, msg);
        if (st) return st;
    }
    const la_tensors_t *t = &pl->t;
    la_fwd_params_t p;
    la_status_t st = fill_common(pl, &sp, ws, &w, stream, &p, msg);
    if (st) return st;
    bool so = pl->op == LA_OP_STATE_FORWARD;
    bool multi = sp.multi || so;
    p.ept = round_up_slice(p.E, eslice);
    if (multi) {
        p.seg_state = (float *)(ws + w.seg_state);
        p.seg_logdecay = (float *)(ws + w.seg_logdecay);
    }
    p.vec_ok = tok_vec_ok(&t->q) && tok_vec_ok(&t->k) && tok_vec_ok(&t->v) && tok_vec_ok(&t->o);
    p.prefix = sp.prefix;
    p.accum = sums->accum;
    p.sum_o = sums->o;
    la_fwd_launch_t l;
    l.total_segs = sp.total;
    l.num_seqs = (int)pl->num_seqs;
    l.state_pass = multi;
    l.main_pass = !so;
    l.rows_stages = 0;
    l.ws = 0;
    l.DP = pad_dim(p.D);
    l.eslice = eslice;
    l.state_wg = use_state_wg(pl, eslice, tok_vec_ok(&t->k) && tok_vec_ok(&t->v));
    l.rows = pl->packed ? 1 : pl->p.batch;
    l.row_tokens = tokens_per_row(pl);
#ifdef LA_HAVE_SM90A
    /* The Hopper kernel copies whole 16-byte pieces: vectorisable tensors only
     * (others take the mma.sync kernels, on the same plan); it has no summed
     * stores, so a D tile's share of o takes the mma.sync kernels too. */
    if (use_wg(pl) && p.vec_ok && !p.accum) {
        l.stages = 2;
        l.state_stages = la_cuda_fwd_wg_blocks_per_sm(l.DP) * (la_cuda_fwd_wg_smem(l.DP, 4, 1) + 1024) <=
                                 la_cuda_smem_per_sm()
                             ? 4
                             : 2;
        if (t->k.dtype == LA_DTYPE_BF16) return la_cuda_fwd_wg_bf16(&p, &l, stream, msg);
        return la_cuda_fwd_wg_f16(&p, &l, stream, msg);
    }
#endif
    /* The rows kernel: four stages (loads three chunks ahead; an SM must
     * keep ~32 GB/s in flight) where they fit, else two. */
    l.rows_stages = !use_rows(pl, eslice) ? 0 : la_cuda_fwd_rows_smem(4) + 1024 <= la_cuda_smem_per_sm() ? 4 : 2;
    if (l.rows_stages && p.vec_ok && !LA_SUM_MODE(p.accum, LA_SUM_O)) l.ws = use_ws();
    /* Double-buffer the tiles when the planned blocks per SM still fit that way. */
    const int64_t blocks = (int64_t)sp.total * p.H * (p.ept / eslice); /* either pass's grid */
    l.stages = fwd_stages(l.DP, eslice, elem_of(pl), 0, blocks);
    l.state_stages = fwd_stages(l.DP, eslice, elem_of(pl), 1, blocks);
    return fwd_launch(t->k.dtype, &p, &l, stream, msg);
}

static la_status_t run_backward(const la_plan_t *pl, char *ws, cudaStream_t stream, const sums_t *sums, char *msg) {
    int sms = device_sms();
    seg_plan_t sp = plan_segments(pl, sms); /* one segment per sequence */
    ws_layout_t w = layout_ws(pl, &sp, choose_eslice(pl, sms));
    if (pl->check_values) {
        la_status_t st = la_cuda_check_decays(pl, (int *)(ws + w.flag), stream, msg);
        if (st) return st;
    }
    const la_tensors_t *t = &pl->t;
    la_bwd_params_t b;
    memset(&b, 0, sizeof b);
    la_status_t st = fill_common(pl, &sp, ws, &w, stream, &b.f, msg);
    if (st) return st;
    b.f.accum = sums->accum;
    b.sum_dq = sums->dq;
    b.sum_dk = sums->dk;
    b.sum_dv = sums->dv;
    b.d_o = tok_of(&t->d_o); b.dq = tok_of(&t->dq); b.dk = tok_of(&t->dk); b.dv = tok_of(&t->dv);
    if (pl->op == LA_OP_STATE_BACKWARD) { /* q, d_o and dq are not part of this operation */
        b.d_o.ptr = NULL;
        b.dq.ptr = NULL;
        b.f.q.ptr = NULL;
    }
    b.dsN = st_of(&t->d_final_state);
    if (!pl->has_dfinal) b.dsN.ptr = NULL;
    b.ds0 = st_of(&t->d_initial_state);
    if (!pl->want_dinitial) b.ds0.ptr = NULL;
    b.f.vec_ok = (!b.f.q.ptr || tok_vec_ok(&t->q)) && tok_vec_ok(&t->k) && tok_vec_ok(&t->v) &&
                 (!b.d_o.ptr || tok_vec_ok(&t->d_o));
    b.gvec_ok = (!b.dq.ptr || tok_vec_ok(&t->dq)) && tok_vec_ok(&t->dk) && tok_vec_ok(&t->dv);
    int eslice = choose_eslice(pl, sms);
    b.f.ept = round_up_slice(b.f.E, eslice);
    /* Events of the side stream's fork and join (NULL: one stream). */
    cudaEvent_t fork = NULL, join = NULL;
    if (sp.multi) {
        /* Incoming states of every segment: the forward's state pass and
         * fold, on the side stream where one can be had. */
        cudaStream_t fs = stream, side = side_stream();
        if (side && cudaEventCreateWithFlags(&fork, cudaEventDisableTiming) == cudaSuccess &&
            cudaEventCreateWithFlags(&join, cudaEventDisableTiming) == cudaSuccess &&
            cudaEventRecord(fork, stream) == cudaSuccess && cudaStreamWaitEvent(side, fork, 0) == cudaSuccess)
            fs = side;
        else {
            if (fork) cudaEventDestroy(fork);
            if (join) cudaEventDestroy(join);
            fork = join = NULL;
        }
        b.f.seg_state = (float *)(ws + w.seg_state);
        b.f.seg_logdecay = (float *)(ws + w.seg_logdecay);
        b.seg_dstate = (float *)(ws + w.seg_dstate);
        la_fwd_launch_t l;
        l.DP = pad_dim(b.f.D);
        l.eslice = eslice;
        l.stages = 1;
        /* It shares the GPU with the reverse state pass: no SM is its own. */
        l.state_stages = fwd_stages(l.DP, eslice, elem_of(pl), 1, INT64_MAX);
        l.total_segs = sp.total;
        l.num_seqs = (int)pl->num_seqs;
        l.state_pass = 1;
        l.main_pass = 0;
        l.rows_stages = 0;
        l.ws = 0;
        l.state_wg = use_state_wg(pl, eslice, tok_vec_ok(&t->k) && tok_vec_ok(&t->v));
        l.rows = pl->packed ? 1 : pl->p.batch;
        l.row_tokens = tokens_per_row(pl);
        la_fwd_params_t fp = b.f;
        fp.sN.ptr = NULL; /* the backward writes no final state */
        fp.accum = 0;
        st = fwd_launch(t->k.dtype, &fp, &l, fs, msg);
        if (!st && join && cudaEventRecord(join, side) != cudaSuccess) {
            snprintf(msg, LA_MSG_LEN, "recording the side stream's event failed");
            st = LA_STATUS_EXECUTION_FAILED;
        }
        if (st) {
            if (fork) { cudaEventDestroy(fork); cudaEventDestroy(join); }
            return st;
        }
    }
    if (pl->want_dld) {
        b.want_dld = 1;
        b.dld_planes = dld_planes(pl);
        b.d_ld = (float *)t->d_ld.data;
        b.dld_sb = t->d_ld.stride[0]; b.dld_sh = t->d_ld.stride[1]; b.dld_st = t->d_ld.stride[2];
        b.dld_tok = (float *)(ws + w.dld_tok);
        b.dld_chunk = (float *)(ws + w.dld_chunk);
        b.dld_z0 = (float *)(ws + w.dld_z0);
        b.dld_part = (double *)(ws + w.dld_part);
        b.ntot = tokens_per_row(pl);
        b.tc = total_chunks(pl);
        b.nch_seq = (int)((pl->p.seqlen + LA_CUDA_CHUNK - 1) / LA_CUDA_CHUNK);
    }
    const la_dtype_t dt = t->k.dtype; /* q is absent from the state-only backward */
    const int DP = pad_dim(b.f.D), EP = pad_dim(b.f.E);
    la_bwd_wg_t wg;
    wg.use = use_bwd_wg(pl, b.f.vec_ok, b.gvec_ok) && !b.f.accum;
    wg.rows = pl->packed ? 1 : pl->p.batch;
    wg.row_tokens = tokens_per_row(pl);
    st = dt == LA_DTYPE_BF16  ? la_cuda_bwd_bf16(&b, DP, EP, sp.total, stream, join, &wg, msg)
         : dt == LA_DTYPE_F16 ? la_cuda_bwd_f16(&b, DP, EP, sp.total, stream, join, &wg, msg)
                              : la_cuda_bwd_f32(&b, DP, EP, sp.total, stream, join, &wg, msg);
    /* Enqueued work keeps what it needs of an event; destroying it now is safe. */
    if (fork) { cudaEventDestroy(fork); cudaEventDestroy(join); }
    return st;
}

/* The chunk kernels on each head-dim tile in turn (one tile when the dims
 * fit a block), in a fixed order: deterministic sums. */
static la_status_t run_blocked(const la_plan_t *pl, char *ws, cudaStream_t stream, char *msg) {
    tiles_t tl = plan_tiles(pl);
    sum_layout_t w = layout_sums(pl, tl, sub_workspace(pl, tl, device_sms()));
    for (int64_t d0 = 0; d0 < pl->p.dim_qk; d0 += tl.d)
        for (int64_t e0 = 0; e0 < pl->p.dim_v; e0 += tl.e) {
            la_plan_t sub = sub_plan(pl, tl, d0, e0);
            sums_t m = sub_sums(pl, tl, &w, ws, d0, e0);
            la_status_t st = is_bwd(pl) ? run_backward(&sub, ws, stream, &m, msg) : run_forward(&sub, ws, stream, &m, msg);
            if (st) return st;
        }
    return LA_STATUS_SUCCESS;
}

static la_status_t cuda_run(const la_plan_t *pl, void *ws, size_t ws_bytes, int num_threads, void *stream_ptr,
                            char *msg) {
    (void)ws_bytes;
    (void)num_threads;
    cudaStream_t stream = (cudaStream_t)stream_ptr;
    switch (pl->op) {
    case LA_OP_FORWARD: case LA_OP_STATE_FORWARD:
    case LA_OP_BACKWARD: case LA_OP_STATE_BACKWARD: return run_blocked(pl, (char *)ws, stream, msg);
    case LA_OP_DECODE: return la_cuda_decode(pl, (int *)ws, stream, msg);
    default:
        snprintf(msg, LA_MSG_LEN, "operation %d is not supported by the CUDA backend", (int)pl->op);
        return LA_STATUS_NOT_SUPPORTED;
    }
}

static int cuda_available(void) {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

static void *cuda_ws_alloc(size_t bytes) {
    void *p = NULL;
    return cudaMalloc(&p, bytes ? bytes : 1) == cudaSuccess ? p : NULL;
}

static void cuda_ws_free(void *p) { cudaFree(p); }

static const la_backend_ops_t la_cuda_backend = {
    "cuda", cuda_support, cuda_workspace_size, cuda_run, cuda_available, cuda_ws_alloc, cuda_ws_free, 0,
};

extern "C" const la_backend_ops_t *const la_cuda_backend_ptr = &la_cuda_backend;
