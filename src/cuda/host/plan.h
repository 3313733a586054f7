/* plan.h - the CUDA backend's plan of one call: every choice of what runs,
 * made once (plan.cu) from the problem, the tensors' dtypes, strides and
 * alignment, the device's limits and the handle's policy.  The workspace
 * size is read from it and the runner (backend.cu) executes it; no launcher
 * decides anything again.  docs/CUDA.md lists the variants and the rules. */
#ifndef LA_CUDA_PLAN_H
#define LA_CUDA_PLAN_H

#include "internal.h"
#include "limits.h"
#include "kernel_params.h"

/* The kernel variants.  Each is one row of the variant table in plan.cu
 * (predicate, shared memory, why it exists). */
typedef enum la_cuda_kernel {
    LA_K_NONE = 0,
    LA_K_FWD_GENERAL,    /* mma.sync chunk kernel, any D <= 256 (as tiles), any dtype */
    LA_K_FWD_ROWS,       /* rows kernel, D, E <= 64, bf16/f16: P in registers */
    LA_K_FWD_WARP_ROLES, /* warp-role kernel, D, E <= 64, bf16/f16, 151 KB per block */
    LA_K_FWD_WGMMA,      /* Hopper warpgroup forward (opt-in) */
    LA_K_STATE_MMA,      /* mma.sync state pass */
    LA_K_STATE_WGMMA,    /* Hopper TMA + wgmma state pass, D in (64, 128], bf16/f16 */
    LA_K_BWD_MMA,        /* mma.sync backward, D, E <= 128 per tile */
    LA_K_BWD_WGMMA,      /* Hopper backward, D = E = 64, bf16/f16, no decay gradient */
    LA_K_DECODE,         /* one block per (sequence, head) */
    LA_K_VEC_FWD,        /* vector decays: forward and state-only pass, chunks of 16, fp32 products */
    LA_K_VEC_BWD,        /* vector decays: backward as runs of the same kernel (vec_bwd.h) */
    LA_K_COUNT
} la_cuda_kernel_t;

const char *la_cuda_kernel_name(la_cuda_kernel_t k);

/* How sequences are cut into segments. */
typedef struct la_seg_plan {
    int64_t seg_len;
    int n_seg;  /* non-packed: segments per sequence */
    int total;  /* all segments (device offsets: a bound; blocks past the real count exit) */
    int multi;  /* joined by a state pass and fold */
    int prefix; /* ... joined by each block walking from its sequence's start instead */
} la_seg_plan_t;

/* Workspace layout (bytes, each part 256-aligned):
 *   [cu_seqlens int64 x (S+1)] [seg_off int x (S+1)] [chunk_off int x (S+1)]
 *   [seg_state f32 x total*H*DP*EPT] [seg_logdecay f32 x total*H] [seg_dstate, as seg_state]
 *   decay gradient: [dld_tok f32 x B*H*ntot] [dld_chunk f32 x 4*H*tc] [dld_z0 f32 x S*H]
 *   [dld_part f64 x S*H] */
typedef struct la_ws_layout {
    size_t cu, seg_off, chunk_off, seg_state, seg_logdecay, seg_dstate;
    size_t dld_tok, dld_chunk, dld_z0, dld_part;
    size_t vec_state;        /* vector kinds' backward: S_N f32 [S,H,D,E] (kernels/vector/vec_bwd.h) */
    size_t vec_seg_state, vec_seg_tot; /* vector kinds' sequence split: f32 [S*nseg,H,D,E], [S*nseg,H,D+E] */
    size_t vec_seg_sum;      /* and the backward's running sums: f64 [S*nseg,H,max(D,E)] */
    size_t total;
} la_ws_layout_t;

/* The plan of one head-dim tile's sub-problem. */
typedef struct la_tile_plan {
    int D, E, DP, EP;
    int eslice, ept;       /* value columns per block; E rounded up to whole slices */
    la_seg_plan_t seg;
    la_ws_layout_t ws;
    int64_t tc;            /* chunks over all sequences (a bound with device offsets) */
    int vec_ok, gvec_ok;   /* 16-byte vector access to the token tensors / gradients */
    la_cuda_kernel_t main, state; /* forward: output pass and state pass (NONE: not run) */
    int stages, state_stages, rows_stages;
    la_cuda_kernel_t bwd;  /* backward main pass */
    int bwd_stages, dld_planes;
    int side_state_stages; /* the backward's forward state pass, beside the reverse one */
    int vec_mma_smem;      /* vector kinds: shared memory the tensor-core recurrence may take (0: none) */
    int vec_sms;           /* vector kinds: the device's SMs, for the recurrence's block width */
    int vec_warp_roles;    /* vector kinds: the warp-role recurrence where it applies (policy) */
} la_tile_plan_t;

typedef struct la_sum_layout {
    int64_t rows, pe, pd;
    size_t o_dv, dq, dk, total;
} la_sum_layout_t;

typedef struct la_cuda_plan {
    la_cuda_limits_t lim;
    int td, te;                /* head-dim tile (rows of D, columns of E) */
    int nd, ne;                /* tiles along D and E */
    la_tile_plan_t tile[2][2]; /* [last D tile][last E tile] (equal to [0][0] where the dims divide) */
    la_sum_layout_t sums;
    /* A served forward (a state pool and/or checkpoints) runs as the dense
     * forward; a pool's states pass through two [S, H, D, E] f32 states in
     * the workspace at pool_states (pool_io.h); the packed offsets' device
     * copy (padding outputs, checkpoints) sits at served_cu and served_tabs. */
    int served, pooled;
    size_t pool_states, served_cu, served_tabs;
    size_t workspace;
} la_cuda_plan_t;

la_status_t la_cuda_make_plan(const la_plan_t *pl, int num_threads, void *bplan, char *msg);
size_t la_cuda_plan_workspace(const la_plan_t *pl, const void *bplan);
void la_cuda_describe(const la_plan_t *pl, const void *bplan, char *buf, size_t len);

/* The tile plan of head-dim tile (i, j). */
static inline const la_tile_plan_t *la_cuda_tile(const la_cuda_plan_t *c, int64_t i, int64_t j) {
    return &c->tile[i == c->nd - 1 && c->nd > 1][j == c->ne - 1 && c->ne > 1];
}

/* The sub-problem on rows [d0, d0 + dn) of D and columns [e0, e0 + en) of E:
 * the same operation on views of the plan's tensors. */
la_plan_t la_cuda_sub_plan(const la_plan_t *pl, int td, int te, int64_t d0, int64_t e0);

/* The dense forward a served one runs as: no checkpoints, and for a pool
 * initial and final states at states and states + S H D E floats (f32,
 * contiguous) instead of it. */
la_plan_t la_cuda_served_as_dense(const la_plan_t *pl, float *states);

/* Tokens per (batch row, head) row of the token tensors. */
static inline int64_t la_cuda_row_tokens(const la_plan_t *pl) { return pl->p.seqlen; }

#endif
