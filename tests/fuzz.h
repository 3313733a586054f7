/*
 * fuzz.h - the pieces of test_fuzz, a seeded random fuzzer of every public
 * entry point of lightning-attn.
 *
 *   fuzz_api.c    counting wrappers around every public function (the
 *                 summary's calls by entry point and by status);
 *   fuzz_gen.c    a random VALID call: operation, problem, tensors in random
 *                 layouts, each in its own buffer of exactly the bytes its
 *                 view spans (so AddressSanitizer sees any access outside);
 *   fuzz_check.c  running a call (its own entry point, or la_execute with
 *                 caller memory of exactly its figure) and holding it to the
 *                 contract (poisoned outputs written and finite, inputs and
 *                 gaps untouched, la_supports / la_describe / workspace
 *                 queries agreeing, messages); settings and policies;
 *   fuzz_mutate.c one deliberate mistake in a valid call, with the status
 *                 every entry point must answer it with;
 *   fuzz_ref.c    outputs against the fp64 reference;
 *   fuzz_misc.c   the entry points without tensors (helpers, handles,
 *                 settings, workspace queries of large problems) and
 *                 concurrent calls on one handle (and on two);
 *   test_fuzz.c   command line, iterations, failures, summary.
 *
 * Every iteration draws from its own RNG, seeded from the base seed and its
 * index, so one iteration replays alone (test_fuzz --seed S --one I).
 */
#ifndef LA_FUZZ_H
#define LA_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "lightning_attn.h"
#include "testutil.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The header's size rules: no tensor a problem implies past 2^62 bytes, no
 * more than 2^48 (token, head) and 2^40 (sequence, head) pairs. */
#define FZ_MAX_BYTES ((int64_t)1 << 62)
#define FZ_MAX_TOKEN_HEADS ((uint64_t)1 << 48)
#define FZ_MAX_SEQ_HEADS ((uint64_t)1 << 40)

/* ---- tensor fields, in the order of la_tensors_t ---------------------------------- */

enum {
    FZ_Q,
    FZ_K,
    FZ_V,
    FZ_LD,
    FZ_LDV,
    FZ_S0,
    FZ_O,
    FZ_SN,
    FZ_DO,
    FZ_DSN,
    FZ_DQ,
    FZ_DK,
    FZ_DV,
    FZ_DLD,
    FZ_DLDV,
    FZ_DS0,
    FZ_NT
};

typedef enum fz_role { FZ_UNUSED = 0, FZ_IN_REQ, FZ_IN_OPT, FZ_OUT_REQ, FZ_OUT_OPT } fz_role_t;

extern const char *const fz_tensor_names[FZ_NT];
const char *fz_op_name(la_op_t op);
/* Does the operation read or write this field at all (whatever the decay)? */
int fz_op_uses(la_op_t op, int id);
/* The field's role in the operation once the decay kind is applied. */
fz_role_t fz_role(la_op_t op, la_decay_t kind, int id);
int fz_is_output(fz_role_t r);
int fz_is_state(int id);
int fz_is_decay(int id);
la_tensor_t *fz_field(la_tensors_t *t, int id);
/* Logical extents of a field (S = sequences: B, or num_seqs when packed). */
void fz_logical_dims(const la_problem_t *p, int64_t S, int id, int64_t dims[4]);

/* ---- counting wrappers (fuzz_api.c) -------------------------------------------------- */

typedef enum fz_entry {
    FZ_E_STATUS_STRING,
    FZ_E_STATUS_CATEGORY,
    FZ_E_DTYPE_SIZE,
    FZ_E_PROBLEM_INIT,
    FZ_E_TENSORS_INIT,
    FZ_E_TENSOR_CONTIGUOUS,
    FZ_E_BACKEND_AVAILABLE,
    FZ_E_CREATE,
    FZ_E_DESTROY,
    FZ_E_HANDLE_BACKEND,
    FZ_E_LAST_ERROR,
    FZ_E_SET_NUM_THREADS,
    FZ_E_SET_STREAM,
    FZ_E_SET_WORKSPACE,
    FZ_E_SET_CHECK_VALUES,
    FZ_E_CHECK_ERRORS,
    FZ_E_POLICY_INIT,
    FZ_E_SET_POLICY,
    FZ_E_GET_POLICY,
    FZ_E_WORKSPACE_SIZE,
    FZ_E_WORKSPACE_SIZE_FOR,
    FZ_E_SUPPORTS,
    FZ_E_DESCRIBE,
    FZ_E_FORWARD,
    FZ_E_BACKWARD,
    FZ_E_DECODE,
    FZ_E_STATE_FORWARD,
    FZ_E_STATE_BACKWARD,
    FZ_E_EXECUTE,
    FZ_E_COUNT
} fz_entry_t;

const char *fz_status_string(la_status_t s);
int fz_status_category(la_status_t s);
size_t fz_dtype_size(la_dtype_t d);
void fz_problem_init(la_problem_t *p);
void fz_tensors_init(la_tensors_t *t);
void fz_tensor_contiguous(la_tensor_t *t, void *data, la_dtype_t dtype, int64_t d0, int64_t d1, int64_t d2, int64_t d3);
int fz_backend_available(la_backend_t b);
la_status_t fz_create(la_handle_t **h, la_backend_t b);
la_status_t fz_destroy(la_handle_t *h);
la_backend_t fz_handle_backend(const la_handle_t *h);
const char *fz_last_error(const la_handle_t *h);
la_status_t fz_set_num_threads(la_handle_t *h, int n);
la_status_t fz_set_stream(la_handle_t *h, void *stream);
la_status_t fz_set_workspace(la_handle_t *h, void *ws, size_t bytes);
la_status_t fz_set_check_values(la_handle_t *h, int mode);
la_status_t fz_check_errors(la_handle_t *h);
void fz_policy_init(la_policy_t *q);
la_status_t fz_set_policy(la_handle_t *h, const la_policy_t *q);
la_status_t fz_get_policy(la_handle_t *h, la_policy_t *q);
la_status_t fz_workspace_size(la_handle_t *h, la_op_t op, const la_problem_t *p, size_t *bytes);
la_status_t fz_workspace_size_for(la_handle_t *h, la_op_t op, const la_problem_t *p, const la_tensors_t *t,
                                  size_t *bytes);
la_status_t fz_supports(la_handle_t *h, la_op_t op, const la_problem_t *p, const la_tensors_t *t);
la_status_t fz_describe(la_handle_t *h, la_op_t op, const la_problem_t *p, const la_tensors_t *t, char *buf,
                        size_t len);
la_status_t fz_execute(la_handle_t *h, la_op_t op, const la_problem_t *p, const la_tensors_t *t, void *ws, size_t bytes,
                       size_t *needed);
/* la_forward, la_backward, ... by operation (an unknown op is the caller's bug). */
la_status_t fz_run_op(la_handle_t *h, la_op_t op, const la_problem_t *p, const la_tensors_t *t);

/* Is this one of the header's statuses?  Its name ("LA_STATUS_BAD_SHAPE"), or NULL. */
const char *fz_status_name(la_status_t s);
long long fz_calls_total(void);
void fz_print_call_counts(void);

/* ---- the run's settings and one iteration's context ---------------------------------- */

typedef struct fz_opts {
    uint64_t base_seed;
    long long calls;
    la_backend_t backend;
    int device; /* tensors in device memory (CUDA) */
    int valid_only;
    int ref_every;
    int verbose;
    int keep_going;
    int one; /* replaying one iteration: compare every valid call */
} fz_opts_t;

typedef struct fz_ctx {
    const fz_opts_t *o;
    uint64_t index, seed;
    int failures;   /* failed checks in this iteration */
    int check_mode; /* the handle's la_set_check_values mode (la_check_mode_t) */
    long long valid_calls, ref_compared;
} fz_ctx_t;

/* Report one failed check: "FAIL iteration I [class]: ..." (the caller prints
 * the replay command).  Always returns 0 so that `return fz_fail(...)` reads
 * naturally in a check. */
int fz_fail(fz_ctx_t *x, const char *cls, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- calls and their buffers (fuzz_gen.c) --------------------------------------------- */

#define FZ_MAX_BUFS 40
#define FZ_MAX_SEQS 6

/* One allocation of exactly `bytes` bytes (malloc; and on the device). */
typedef struct fz_buf {
    unsigned char *host;
    void *dev;
    size_t bytes;
    unsigned char *snap; /* contents before the call */
} fz_buf_t;

typedef enum fz_src { FZ_ABSENT = 0, FZ_IN_BUF, FZ_GARBAGE } fz_src_t;

typedef struct fz_tensor {
    fz_src_t src; /* FZ_GARBAGE: a field the operation ignores, pointing nowhere */
    int buf;
    size_t byte_off; /* where logical element 0 lies in its buffer */
    la_dtype_t dtype;
    int64_t dim[4];
    int64_t stride[4]; /* as passed: dims of extent <= 1 may carry garbage */
    int64_t nat[4];    /* the same layout with ordinary strides everywhere */
} fz_tensor_t;

typedef struct fz_call {
    la_op_t op;
    la_problem_t p;
    int64_t *cu;  /* packed: exactly num_seqs + 1 offsets (malloc), else NULL; always the host copy */
    void *cu_dev; /* the offsets in device memory when p.cu_seqlens points there (CUDA) */
    int64_t S;
    fz_tensor_t t[FZ_NT];
    fz_buf_t buf[FZ_MAX_BUFS];
    int nbuf;
    int device;      /* buffers mirrored on the device; calls get device pointers */
    int inplace;     /* decode updating initial_state's memory */
    int odd_strides; /* some dim of extent <= 1 carries a garbage stride */
} fz_call_t;

/* A valid call of a random operation (tiny sizes, random layouts, inputs filled). */
void fz_gen_valid(fz_call_t *c, tu_rng_t *r, int device);
/* A valid forward or backward that runs for a while (host memory). */
void fz_gen_long(fz_call_t *c, tu_rng_t *r);
void fz_call_free(fz_call_t *c);
/* The tensors to pass: device pointers when c->device; natural: the garbage
 * strides of extent <= 1 dims replaced by ordinary ones. */
la_tensors_t fz_call_tensors(const fz_call_t *c, int natural);
void *fz_tensor_ptr(const fz_call_t *c, const fz_tensor_t *t);
/* A new buffer of exactly `bytes` bytes filled with the gap pattern; its index. */
int fz_add_buf(fz_call_t *c, size_t bytes);
/* Give t (dims, dtype, strides set) a buffer of exactly its span. */
void fz_place(fz_call_t *c, fz_tensor_t *t);
/* Element range of a view: 0 when empty, else lo..hi offsets (dims <= 1 skipped). */
int fz_span(const int64_t dim[4], const int64_t st[4], int64_t *lo, int64_t *hi);
int64_t fz_numel(const fz_tensor_t *t);
/* Byte offset, inside its buffer, of the logical element (i0, i1, i2, i3). */
size_t fz_elem_at(const fz_tensor_t *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3);
double fz_load(la_dtype_t dtype, const unsigned char *p);
void fz_store(la_dtype_t dtype, unsigned char *p, double x);
/* Copy t's logical elements into the view u (both placed). */
void fz_copy_elements(fz_call_t *c, const fz_tensor_t *from, const fz_tensor_t *to);
void fz_poison_elements(fz_call_t *c, const fz_tensor_t *t);
int fz_is_poison(la_dtype_t dtype, const unsigned char *p);
size_t fz_esize(la_dtype_t dtype);

/* Device mirror (no-ops for host calls). */
void fz_upload(fz_call_t *c);
void fz_download(fz_call_t *c);
void fz_snapshot(fz_call_t *c);
/* Index of the first buffer whose bytes differ from the snapshot, or -1. */
int fz_first_changed(const fz_call_t *c);

/* Device memory (CUDA runs): NULL ops on the host. */
void *fz_dev_alloc(size_t bytes);
void fz_dev_free(void *p);

/* ---- checks (fuzz_check.c) ----------------------------------------------------------- */

/* Dirty the handle's message with a call that must fail (or leave it), so the
 * next call's "message cleared at entry" is tested. */
void fz_maybe_dirty(fz_ctx_t *x, la_handle_t *h, tu_rng_t *r);
/* After a call on h: success leaves "", failure a message. */
int fz_check_message(fz_ctx_t *x, la_handle_t *h, la_status_t st, const char *what);
/* A failed call must name a known status (and a handle call leave a message). */
int fz_check_known(fz_ctx_t *x, la_status_t st, const char *what);
/* The whole valid-call protocol; returns the call's status. */
la_status_t fz_exercise_valid(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r);
/* Settings of a fresh handle for a call (threads, value checks, stream, policy). */
void fz_random_settings(fz_ctx_t *x, la_handle_t *h, tu_rng_t *r, int device);
/* A random valid policy (on a device only those a GPU plans with: no tiny smem_kb). */
void fz_random_policy(la_policy_t *q, tu_rng_t *r, int device);
int fz_policy_equal(const la_policy_t *a, const la_policy_t *b);
/* la_describe of a call into an exact-size buffer of a random small length:
 * the status la_supports gave, a NUL within len, text when len > 1, and on
 * failure nothing written. */
void fz_check_describe(fz_ctx_t *x, la_handle_t *h, const fz_call_t *c, const la_tensors_t *t, la_status_t want,
                       tu_rng_t *r);

/* ---- mutations (fuzz_mutate.c) ------------------------------------------------------- */

/* Apply one random mistake to a copy of c's call and check every entry point
 * answers it as it must; c is left as it was.  Returns 1 if one was applied. */
int fz_exercise_mutation(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r);

/* ---- the reference (fuzz_ref.c) ------------------------------------------------------ */

/* Every output of a successful call against the fp64 reference computed from
 * the snapshot (the inputs as they were before the call). */
int fz_compare_reference(fz_ctx_t *x, const fz_call_t *c, la_backend_t backend);

/* ---- iterations without a generated call (fuzz_misc.c) --------------------------------- */

void fz_iter_helpers(fz_ctx_t *x, tu_rng_t *r);
void fz_iter_sizes(fz_ctx_t *x, tu_rng_t *r);
void fz_iter_busy(fz_ctx_t *x, tu_rng_t *r);

/* Is the problem within the header's size rules?  FZ_ADDR_NO: too many
 * pairs, or some tensor past 2^62 bytes even at its smallest element size
 * (must be refused with BAD_SHAPE); FZ_ADDR_YES: within every rule at any
 * element size (must be accepted); FZ_ADDR_MAYBE: it depends on the dtype. */
enum { FZ_ADDR_YES, FZ_ADDR_MAYBE, FZ_ADDR_NO };
int fz_addressable(const la_problem_t *p);

#ifdef __cplusplus
}
#endif

#endif
