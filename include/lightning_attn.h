/*
 * lightning_attn.h - the one public header of lightning-attn.
 *
 * Lightning Attention is causal linear attention with decay.  For every
 * sequence and head the library keeps a state S (D x E, always fp32):
 *
 *     S_t = diag(a_t) . S_{t-1} . diag(b_t) + k_t^T v_t        (t = 0 .. N-1)
 *     o_t = scale . q_t S_t
 *
 * with S_{-1} = the initial state (zero when none is given).  The state is
 * INCLUSIVE: after token t it equals the recurrence's S_t, so a forward pass
 * over [0, N), a forward over [0, m) followed by one over [m, N) with the
 * state carried, N decode steps and the state-only pass all agree.  The final
 * state is S_{N-1}.
 *
 * Decay is given as a LOG decay (ld <= 0, a = exp(ld)).  The decay kinds:
 *
 *     LA_DECAY_NONE          a = b = 1                          (LAND)
 *     LA_DECAY_SCALAR_HEAD   a_t = exp(ld[h]),     ld: [H]       (LASD; ALiBi slope s = -ld)
 *     LA_DECAY_SCALAR_TOKEN  a_t = exp(ld[b,h,t]), ld: [B,H,N]   (LASD3, data dependent)
 *     LA_DECAY_VECTOR_K      a_t = exp(ldk[b,h,t,:]) on the key dim   (LAVD_K / GLA)
 *     LA_DECAY_VECTOR_KV     as VECTOR_K, and b_t = exp(ldv[b,h,t,:]) on the value dim
 *
 * For the scalar kinds b = 1.  Log decays must lie in [-1e6, 0]; anything
 * else (positive, NaN, -inf, below -1e6) is rejected with LA_STATUS_BAD_DECAY.
 * exp(ld) is already exactly 0 in fp32 below about -104, so -1e6 is a full
 * reset of the state; -inf is refused because chunk sums of it would give
 * -inf - -inf = NaN.  Every exponent the kernels evaluate is <= 0, so nothing
 * overflows; strong decays only underflow to 0.
 *
 * Numerics: q, k, v, o and their gradients may be f32, f16 or bf16; they are
 * converted to fp32 on load.  All products accumulate in fp32 and the state
 * is fp32 everywhere (inputs, outputs, in between).  Log decays and their
 * gradients are f32.  scale defaults to 1.0: nothing is scaled behind your
 * back (some libraries scale q by D^-0.5 by default; this one does not).
 *
 * Tensors.  Every tensor is a la_tensor_t: a data pointer, a dtype and four
 * int64 ELEMENT strides over the tensor's four logical dimensions, so the
 * [B,H,N,D] and [B,N,H,D] layouts both work without copies.  The logical
 * shapes (strides of dimensions of extent 1, and every stride of an empty
 * tensor, are ignored):
 *
 *     q, k, dq, dk       [B, H, N, D]
 *     v, o, dv, d_o      [B, H, N, E]
 *     ld, d_ld           SCALAR_HEAD [1, H, 1, 1]; SCALAR_TOKEN [B, H, N, 1];
 *                        VECTOR_K/KV [B, H, N, D]                   (f32)
 *     ldv, d_ldv         VECTOR_KV   [B, H, N, E]                   (f32)
 *     states             [S, H, D, E] with S = B, or num_seqs for packed
 *                        batches (initial_state, final_state and their
 *                        gradients; f32)
 *
 * Packed variable-length batches: set problem.cu_seqlens to num_seqs + 1
 * int64 offsets (0 = cu[0] <= cu[1] <= ... = N) with batch = 1; each
 * sequence runs independently with its own initial/final state.  Empty
 * sequences are allowed: their final state equals their initial state.
 * The offsets may be a HOST array (validated on the host before anything
 * runs; the CUDA backend stages them through the handle's pinned buffer, so
 * the call does not wait for the GPU) or, on the CUDA backend, a DEVICE
 * array (problem.cu_seqlens_on_device = 1): then nothing is copied or
 * awaited, the kernels read the offsets on the device, and the offsets are
 * checked there like device log decays (see la_set_check_values): invalid
 * offsets are reported late and the call's outputs are unspecified, but no
 * kernel reads or writes outside the tensors.  problem.max_seqlen, when
 * known, lets the plan size its segments as for host offsets; 0 plans for
 * the worst case (a single sequence of N tokens).
 *
 * Outputs must occupy address ranges that intersect no other tensor's range
 * (inputs may alias each other freely); two outputs interleaved in one buffer
 * are rejected with LA_STATUS_OVERLAP even when they share no element.  The
 * one exception is decode's in-place state (see la_decode).
 *
 * Every call validates all arguments before anything is written.  A failed
 * call writes nothing, returns a specific status, and leaves a message such as
 * "head dim 300 > 256" readable through la_last_error(handle).  The library
 * never exits, aborts or prints.
 *
 * Every call on a handle (all but la_last_error and la_handle_backend)
 * clears the handle's message when it starts; a failed call leaves its own.
 *
 * Threads.  A handle belongs to one thread at a time (as a cuDNN handle
 * does): give each thread its own handle; different handles never share
 * state and may run concurrently.  Calls on one handle from several threads
 * must be serialised by the caller.  A call that arrives while another call
 * is running on the same handle is refused with LA_STATUS_HANDLE_BUSY and
 * does nothing: it writes no tensor, no handle setting and not the message
 * (la_last_error still belongs to the running call).  Read la_last_error on
 * the thread that made the failed call, before its next call.  Destroy a
 * handle only when no other thread can still use it.  The functions that take
 * no handle (la_status_string, la_problem_init, ...) are thread-safe.
 *
 * Memory.  The handle owns a workspace that it allocates on first use and
 * grows when a larger problem needs it (la_workspace_size reports the bytes;
 * la_set_workspace supplies caller memory instead; nothing else is allocated
 * by a call).  The CPU backend runs on a pool of OpenMP threads
 * (la_set_num_threads).
 *
 * Sizes.  Every tensor a problem implies (q and k [B,H,N,D], v [B,H,N,E],
 * decays, states [S,H,D,E]) must be addressable: a problem whose tensors
 * would pass 2^62 bytes, or that has more than 2^48 (token, head) or 2^40
 * (sequence, head) pairs, is rejected with LA_STATUS_BAD_SHAPE, and a tensor
 * whose strides reach past 2^62 bytes with LA_STATUS_BAD_STRIDE, so no size
 * computation can wrap.
 *
 * Serving.  A serving engine keeps one state per request in a preallocated
 * pool and runs prefill and decode over whichever requests are live.  Give
 * tensors.pool (la_forward, packed or not; la_state_forward; la_decode) in
 * place of initial_state and final_state, which must then be absent:
 *   - sequence i reads its initial state from states[read_slot[i]] unless
 *     has_initial_state[i] == 0 (then zeros, the slot unread), and writes its
 *     final state to states[write_slot[i]] (write_slot NULL: the read slot;
 *     prefill into a fresh slot, or a prefix-cache hit, reads one slot and
 *     writes another);
 *   - read_slot[i] < 0 marks padding: sequence i reads and writes nothing
 *     and its o is zeros; write_slot[i] < 0 keeps o but writes no state;
 *   - a bf16 pool is stored in bf16 and computed in fp32 (docs/SERVING.md
 *     gives the error it adds per step and over 1e5 steps);
 *   - speculative decoding: la_decode with T draft tokens and token_slot
 *     [S, T] writes the state after token t of sequence i to
 *     states[token_slot[i*T + t]] (write_slot must then be NULL); the next
 *     step passes num_accepted[i] = the accepted length and starts sequence i
 *     from the state after its last accepted token, so nothing is recomputed.
 *     num_accepted indexes THIS call's token_slot with THIS call's T: pass
 *     the same table and T as the step that wrote the drafts (a table of
 *     slots each sequence owns), or move the accepted state to read_slot
 *     yourself before changing them;
 * A pool is used whenever pool.states.data is set: a binding that reuses
 * one la_tensors_t across calls must clear the whole pool struct (or call
 * la_tensors_init) before a call without one.
 * Slots are distinct: no slot is written twice in one call, and no sequence
 * reads a slot that another sequence of the call writes.  Slot values are
 * data: the CPU backend checks them before anything is written
 * (LA_STATUS_BAD_SLOT, naming the sequence and the slot); on the GPU they
 * are checked like device log decays (see la_set_check_values), and a kernel
 * never touches a slot outside [0, num_slots).  The pool is an output, so it
 * may not overlap another tensor.
 *
 * Checkpoints (prefix caching): with problem.checkpoint_interval = c (a
 * multiple of 64), la_forward and la_state_forward also write the state of
 * each sequence after every c of its tokens (after c, 2c, ... <= its length
 * tokens) to tensors.checkpoints, f32 or bf16 [C, H, D, E]: sequence i's
 * first checkpoint is row sum over j < i of floor(len_j / c).  C is
 * B * floor(N / c) for a batch and floor(N / c) for a packed batch (enough
 * rows for any offsets; checkpoints may be NULL when C is 0); rows past the
 * last checkpoint are left untouched, and a padding sequence's rows are
 * zeros, like its o.
 *
 * Minimal use (forward, bf16, [B,H,N,D] contiguous):
 *
 *     la_handle_t *h;  la_create(&h, LA_BACKEND_CPU);
 *     la_problem_t p;  la_problem_init(&p);
 *     p.batch = B; p.heads = H; p.seqlen = N; p.dim_qk = D; p.dim_v = E;
 *     p.decay = LA_DECAY_SCALAR_HEAD;
 *     la_tensors_t t;  la_tensors_init(&t);
 *     la_tensor_contiguous(&t.q, q, LA_DTYPE_BF16, B, H, N, D);
 *     la_tensor_contiguous(&t.k, k, LA_DTYPE_BF16, B, H, N, D);
 *     la_tensor_contiguous(&t.v, v, LA_DTYPE_BF16, B, H, N, E);
 *     la_tensor_contiguous(&t.o, o, LA_DTYPE_BF16, B, H, N, E);
 *     la_tensor_contiguous(&t.ld, ld, LA_DTYPE_F32, 1, H, 1, 1);
 *     if (la_forward(h, &p, &t) != LA_STATUS_SUCCESS)
 *         fprintf(stderr, "%s\n", la_last_error(h));
 *     la_destroy(h);
 */
#ifndef LIGHTNING_ATTN_H
#define LIGHTNING_ATTN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LA_VERSION_MAJOR 0
#define LA_VERSION_MINOR 2
#define LA_VERSION_PATCH 0

/* Largest supported D and E. */
#define LA_MAX_HEAD_DIM 256
/* Most CPU threads la_set_num_threads accepts. */
#define LA_MAX_THREADS 1024

/* Status codes, grouped by category (the hundreds digit).  Values are pinned. */
typedef enum la_status {
    LA_STATUS_SUCCESS = 0,

    /* 1xx: a parameter is wrong; nothing was written. */
    LA_STATUS_BAD_PARAM = 100,    /* any other bad argument */
    LA_STATUS_NULL_POINTER = 101, /* a required pointer is NULL */
    LA_STATUS_BAD_SHAPE = 102,    /* sizes inconsistent, zero or negative */
    LA_STATUS_BAD_STRIDE = 103,   /* negative strides, or an output that overlaps itself */
    LA_STATUS_BAD_DECAY = 104,    /* a log decay outside [-1e6, 0], or NaN */
    LA_STATUS_BAD_SEQLENS = 105,  /* cu_seqlens not starting at 0, decreasing, or not ending at N */
    LA_STATUS_OVERLAP = 106,      /* an output's address range meets another tensor's */
    LA_STATUS_BAD_VERSION = 107,  /* struct_size of a struct is not one this library knows */
    LA_STATUS_BAD_SCALE = 108,    /* scale is NaN or infinite */
    LA_STATUS_HANDLE_BUSY = 109,  /* another call is running on this handle (see Threads) */
    LA_STATUS_BAD_SLOT = 110,     /* a state-pool slot out of range, or two sequences on one slot (see Serving) */

    /* 2xx: valid, but this build or backend does not do it. */
    LA_STATUS_NOT_SUPPORTED = 200,
    LA_STATUS_UNSUPPORTED_DTYPE = 201,
    LA_STATUS_UNSUPPORTED_HEAD_DIM = 202,
    LA_STATUS_UNSUPPORTED_DECAY = 203,
    LA_STATUS_BACKEND_UNAVAILABLE = 204,

    /* 3xx: memory. */
    LA_STATUS_ALLOC_FAILED = 300,
    LA_STATUS_WORKSPACE_TOO_SMALL = 301,

    /* 4xx: the backend failed while running (e.g. a CUDA error). */
    LA_STATUS_EXECUTION_FAILED = 400,
    LA_STATUS_INTERNAL_ERROR = 401
} la_status_t;

typedef enum la_dtype { LA_DTYPE_F32 = 0, LA_DTYPE_F16 = 1, LA_DTYPE_BF16 = 2 } la_dtype_t;

typedef enum la_decay {
    LA_DECAY_NONE = 0,
    LA_DECAY_SCALAR_HEAD = 1,
    LA_DECAY_SCALAR_TOKEN = 2,
    LA_DECAY_VECTOR_K = 3,
    LA_DECAY_VECTOR_KV = 4
} la_decay_t;

typedef enum la_backend { LA_BACKEND_CPU = 0, LA_BACKEND_CUDA = 1 } la_backend_t;

typedef enum la_op {
    LA_OP_FORWARD = 0,
    LA_OP_BACKWARD = 1,
    LA_OP_DECODE = 2,
    LA_OP_STATE_FORWARD = 3,
    LA_OP_STATE_BACKWARD = 4
} la_op_t;

/* A strided view of a tensor.  data == NULL means "absent" (optional tensors). */
typedef struct la_tensor {
    void *data;
    la_dtype_t dtype;
    int64_t stride[4]; /* element strides of the 4 logical dims (see above) */
} la_tensor_t;

/* The problem: sizes, decay kind, scale, packing.  Initialise with
 * la_problem_init (it sets struct_size, scale = 1 and everything else 0). */
typedef struct la_problem {
    size_t struct_size;
    int64_t batch;  /* B (1 when cu_seqlens is given) */
    int64_t heads;  /* H */
    int64_t seqlen; /* N: tokens per sequence, or total tokens when packed */
    int64_t dim_qk; /* D, 1..256 */
    int64_t dim_v;  /* E, 1..256 */
    la_decay_t decay;
    float scale;                 /* o = scale . q S; default 1.0 */
    const int64_t *cu_seqlens;   /* num_seqs + 1 offsets (host array unless cu_seqlens_on_device), or NULL */
    int64_t num_seqs;            /* number of packed sequences (with cu_seqlens) */
    int cu_seqlens_on_device;    /* 1: cu_seqlens is in DEVICE memory (CUDA backend; see Packed batches) */
    int64_t max_seqlen;          /* optional, device cu_seqlens: the longest sequence (0 = unknown) */
    int64_t checkpoint_interval; /* forward / state forward: emit the state every this many tokens of each
                                    sequence into tensors.checkpoints (0 = none; else a multiple of 64) */
} la_problem_t;

/* Slot indices of a state pool: int32 or int64 (a serving engine's own). */
typedef enum la_index_dtype { LA_INDEX_I32 = 0, LA_INDEX_I64 = 1 } la_index_dtype_t;

/* A pool of recurrent states that a serving engine keeps, one slot per
 * request, and that calls read and write by slot index (see Serving).  The
 * index arrays live where the tensors do (device memory for CUDA). */
typedef struct la_state_pool {
    la_tensor_t states; /* [num_slots, H, D, E], f32 or bf16, any strides ([slots, H, E, D]
                           storage: stride[2] = 1, stride[3] = D); absent (data NULL) = no pool */
    int64_t num_slots;
    la_index_dtype_t index_dtype;
    const void *read_slot;            /* [S]: sequence i starts from states[read_slot[i]]; < 0 = padding */
    const void *write_slot;           /* [S] or NULL (= read_slot): where its final state goes; < 0 = nowhere */
    const uint8_t *has_initial_state; /* [S] or NULL (all 1): 0 = start from zeros (the slot is not read) */
    const void *token_slot;           /* decode only, [S, T] row-major or NULL: the state after token t of
                                         sequence i goes to states[token_slot[i*T + t]] (< 0: not kept) */
    const void *num_accepted;         /* decode only, with token_slot, [S] or NULL: n > 0 = sequence i starts
                                         from states[token_slot[i*T + n - 1]] instead of read_slot's */
} la_state_pool_t;

/* All tensors any operation reads or writes.  Each operation documents which
 * fields it uses; the others are ignored.  Initialise with la_tensors_init. */
typedef struct la_tensors {
    size_t struct_size;
    /* inputs */
    la_tensor_t q, k, v;
    la_tensor_t ld;            /* log decay (kind-dependent shape), f32 */
    la_tensor_t ldv;           /* VECTOR_KV: value-side log decay, f32 */
    la_tensor_t initial_state; /* optional, f32 [S,H,D,E]; absent = zeros */
    /* forward outputs */
    la_tensor_t o;
    la_tensor_t final_state; /* optional (required by decode and state-forward) */
    /* backward inputs */
    la_tensor_t d_o;
    la_tensor_t d_final_state; /* optional: gradient arriving at the final state */
    /* backward outputs */
    la_tensor_t dq, dk, dv;
    la_tensor_t d_ld;            /* optional: present = learnable decay */
    la_tensor_t d_ldv;           /* optional (VECTOR_KV) */
    la_tensor_t d_initial_state; /* optional */
    /* serving: forward, state forward and decode (see Serving) */
    la_state_pool_t pool;    /* states by slot, in place of initial_state / final_state */
    la_tensor_t checkpoints; /* with problem.checkpoint_interval: f32 or bf16 [C, H, D, E] */
} la_tensors_t;

/* ---- status and messages ------------------------------------------------ */

/* A fixed string naming the status ("LA_STATUS_BAD_SHAPE: ..."). */
const char *la_status_string(la_status_t status);
/* The category of a status: 0, 100, 200, 300 or 400. */
int la_status_category(la_status_t status);

/* ---- handle ------------------------------------------------------------- */

typedef struct la_handle la_handle_t;

/* Is this backend compiled in and usable on this machine (a GPU present)? */
int la_backend_available(la_backend_t backend);

la_status_t la_create(la_handle_t **handle, la_backend_t backend);
la_status_t la_destroy(la_handle_t *handle);
la_backend_t la_handle_backend(const la_handle_t *handle);

/* The detailed message of the last failed call on this handle ("" if none). */
const char *la_last_error(const la_handle_t *handle);

/* CPU: threads to use, 0 (all cores, the default) to LA_MAX_THREADS; a
 * call never starts more threads than it has (sequence, head) items. */
la_status_t la_set_num_threads(la_handle_t *handle, int num_threads);
/* CUDA: the cudaStream_t to launch on (NULL = default stream). */
la_status_t la_set_stream(la_handle_t *handle, void *stream);
/* Use caller memory (host memory for CPU, device memory for CUDA) as the
 * workspace instead of the handle's own; NULL hands ownership back. */
la_status_t la_set_workspace(la_handle_t *handle, void *workspace, size_t bytes);

/* Value checks of inputs in DEVICE memory (log decays in range, not NaN;
 * device cu_seqlens).  Host memory is always checked before anything runs,
 * as are shapes, strides and pointers.  Modes:
 *   LA_CHECK_VALUES_DEFERRED (1, the default): a small kernel checks the
 *     values on the call's stream and records the first bad one in the
 *     handle; nothing waits for it, so calls stay asynchronous and CUDA-graph
 *     capturable.  The error is reported by the handle's next call (which
 *     then returns the error and does nothing else) or by la_check_errors.
 *     The outputs of the call that had the bad values are unspecified (but
 *     no kernel reads or writes outside the tensors).
 *   LA_CHECK_VALUES_SYNC (2): the call waits for the check and returns the
 *     error itself, having written nothing (one stream synchronisation per
 *     call; not capturable).
 *   LA_CHECK_VALUES_OFF (0): no checks; invalid values give unspecified (but
 *     in-bounds) results. */
typedef enum la_check_mode {
    LA_CHECK_VALUES_OFF = 0,
    LA_CHECK_VALUES_DEFERRED = 1,
    LA_CHECK_VALUES_SYNC = 2
} la_check_mode_t;
la_status_t la_set_check_values(la_handle_t *handle, int mode);
/* Wait for the handle's stream and return the error a deferred value check
 * recorded since the last report (LA_STATUS_BAD_DECAY or BAD_SEQLENS, with
 * the offending element in the message), clearing it; LA_STATUS_SUCCESS if
 * none.  On the CPU backend there is never one. */
la_status_t la_check_errors(la_handle_t *handle);

/* ---- policy: which kernel variants the CUDA backend may pick ------------- */

/* Every switch defaults to automatic: the backend picks per problem and
 * device (docs/CUDA.md lists the variants and the rules).  The other values
 * exist for A/B measurements and tests: they force a path off (or the opt-in
 * Hopper forward on), or make a large GPU plan as a smaller one.  A handle's
 * policy starts from la_policy_init's defaults, overridden by the
 * environment variables named below, read once, in la_create. */
typedef enum la_switch { LA_SWITCH_AUTO = 0, LA_SWITCH_OFF = 1, LA_SWITCH_ON = 2 } la_switch_t;
typedef struct la_policy {
    size_t struct_size;
    int tile_cap;               /* largest head-dim tile: 0 (the device's), 64, 128   LA_CUDA_TILE_CAP */
    int smem_kb;                /* plan for at most this many KB per block: 0..2^20   LA_CUDA_SMEM_KB */
    la_switch_t fwd_wgmma;      /* Hopper wgmma forward (AUTO = off: not yet faster) LA_CUDA_WGMMA=1 */
    la_switch_t fwd_rows;       /* rows forward kernel, D, E <= 64                    LA_CUDA_ROWS=0 */
    la_switch_t fwd_warp_roles; /* warp-role forward kernel, D, E <= 64               LA_CUDA_WS=0 */
    la_switch_t state_wgmma;    /* Hopper state pass, D in (64, 128]                  LA_CUDA_STATE_WG=0 */
    la_switch_t bwd_wgmma;      /* Hopper backward, D = E = 64                        LA_CUDA_BWD_WG=0 */
    int dld_planes;             /* f32 decay-gradient planes: 0 (3 where they fit), 2 LA_CUDA_DLD_PLANES */
    la_switch_t vec_kernels;    /* vector decays (AUTO = on; OFF: UNSUPPORTED_DECAY)   LA_CUDA_VEC=0 */
    la_switch_t vec_split;      /* vector decays: passes split along the sequence where the
                                   grid falls short of the GPU (AUTO = on)          LA_CUDA_VEC_SPLIT=0 */
    la_switch_t vec_warp_roles; /* vector decays: the warp-role recurrence where it applies
                                   (AUTO = off: not yet measured)                   LA_CUDA_VEC_WS=1 */
} la_policy_t;
void la_policy_init(la_policy_t *policy);
/* Validated (BAD_PARAM for a value outside the ranges above); applies to
 * the handle's later calls. */
la_status_t la_set_policy(la_handle_t *handle, const la_policy_t *policy);
la_status_t la_get_policy(la_handle_t *handle, la_policy_t *policy);

/* Bytes of workspace the operation needs for this problem: the most over
 * every input dtype and every choice of optional outputs (a backward with or
 * without the decay gradient), since the problem names neither; a caller
 * workspace of this size serves any such call. */
la_status_t la_workspace_size(la_handle_t *handle, la_op_t op, const la_problem_t *problem, size_t *bytes);

/* Bytes of workspace this very call needs (the tensors give the dtypes and
 * the optional outputs): often far less than la_workspace_size's bound,
 * e.g. a bf16 forward need not cover f32's summed head-dim tiles.  Validates
 * like the call itself (same statuses and messages). */
la_status_t la_workspace_size_for(la_handle_t *handle, la_op_t op, const la_problem_t *problem,
                                  const la_tensors_t *tensors, size_t *bytes);

/* LA_STATUS_SUCCESS if the handle's backend runs this operation on this
 * problem (dtypes from the tensors), otherwise the NOT_SUPPORTED status that
 * the call itself would return, with its message. */
la_status_t la_supports(la_handle_t *handle, la_op_t op, const la_problem_t *problem, const la_tensors_t *tensors);

/* What the backend runs for this call, as one line of text (kernels, tiles,
 * segments, stages, workspace): the handle's plan, written to buf (at most
 * len bytes, NUL-terminated).  Validates like the call itself. */
la_status_t la_describe(la_handle_t *handle, la_op_t op, const la_problem_t *problem, const la_tensors_t *tensors,
                        char *buf, size_t len);

/* ---- helpers to fill the structs ----------------------------------------- */

void la_problem_init(la_problem_t *problem);
void la_tensors_init(la_tensors_t *tensors);
/* A contiguous row-major tensor of logical shape [d0, d1, d2, d3]. */
void la_tensor_contiguous(la_tensor_t *t, void *data, la_dtype_t dtype, int64_t d0, int64_t d1, int64_t d2, int64_t d3);
/* Bytes of one element of the dtype (0 for an unknown dtype). */
size_t la_dtype_size(la_dtype_t dtype);

/* ---- operations ----------------------------------------------------------- */

/* Forward.  Reads q, k, v, ld/ldv (by kind), initial_state (optional).
 * Writes o, and final_state when given. */
la_status_t la_forward(la_handle_t *handle, const la_problem_t *problem, const la_tensors_t *tensors);

/* Backward.  Reads q, k, v, ld/ldv, initial_state (optional), d_o and
 * d_final_state (optional).  Writes dq, dk, dv; d_ld / d_ldv when given
 * (learnable decay; for SCALAR_HEAD d_ld [H] is summed over the batch in a
 * fixed order, so it is deterministic); d_initial_state when given. */
la_status_t la_backward(la_handle_t *handle, const la_problem_t *problem, const la_tensors_t *tensors);

/* Decode: N = T >= 1 new tokens for each of B sequences (no cu_seqlens),
 * stepped by the recurrence, token by token.  Reads q, k, v [B,H,T,*],
 * ld/ldv, initial_state; writes o [B,H,T,E] and final_state (the state after
 * the T tokens).  Without a pool both states are required, and they may be
 * the same buffer with the same strides: the state is then updated in place.
 * With a pool, token_slot keeps the state after every token (speculative
 * decoding; see Serving). */
la_status_t la_decode(la_handle_t *handle, const la_problem_t *problem, const la_tensors_t *tensors);

/* Any operation in one call, with caller workspace for this call only:
 * [workspace, workspace + workspace_bytes) (device memory for CUDA; the
 * handle's own workspace setting is neither used nor changed).  When it is
 * too small the call returns LA_STATUS_WORKSPACE_TOO_SMALL, writes nothing,
 * and sets *needed (when not NULL) to the bytes this call needs; on success
 * *needed is set too.  The handle caches its plans by problem (sizes, decay,
 * dtypes, strides, which tensors are present): a repeated call with new
 * pointers costs the pointer checks and the launches. */
la_status_t la_execute(la_handle_t *handle, la_op_t op, const la_problem_t *problem, const la_tensors_t *tensors,
                       void *workspace, size_t workspace_bytes, size_t *needed);

/* State-only forward: the final state without o.  Reads k, v, ld/ldv,
 * initial_state (optional); writes final_state (required). */
la_status_t la_state_forward(la_handle_t *handle, const la_problem_t *problem, const la_tensors_t *tensors);

/* Backward of the state-only pass.  Reads k, v, ld/ldv, initial_state
 * (optional), d_final_state (required); writes dk, dv, and d_ld, d_ldv,
 * d_initial_state when given. */
la_status_t la_state_backward(la_handle_t *handle, const la_problem_t *problem, const la_tensors_t *tensors);

#ifdef __cplusplus
}
#endif

#endif /* LIGHTNING_ATTN_H */
