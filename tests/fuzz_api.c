/*
 * fuzz_api.c - every public function behind a wrapper that counts the call
 * by entry point and by returned status (for the summary), plus the tables
 * of which operation uses which tensor, written here from the header (not
 * taken from the library, whose own table is one of the things under test).
 */
#include "fuzz.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* ---- tensor roles, from the header's description of each operation ------------------ */

const char *const fz_tensor_names[FZ_NT] = {
    "q",  "k",  "v",  "ld",   "ldv",   "initial_state",  "o", "final_state", "d_o", "d_final_state",
    "dq", "dk", "dv", "d_ld", "d_ldv", "d_initial_state"};

/* clang-format off */
static const unsigned char op_roles[5][FZ_NT] = {
    /*                        q          k          v          ld         ldv        s0         o           sN          d_o        dsN        dq          dk          dv          d_ld        d_ldv       ds0 */
    [LA_OP_FORWARD] =        {FZ_IN_REQ, FZ_IN_REQ, FZ_IN_REQ, FZ_IN_REQ, FZ_IN_REQ, FZ_IN_OPT, FZ_OUT_REQ, FZ_OUT_OPT, 0,         0,         0,          0,          0,          0,          0,          0},
    [LA_OP_BACKWARD] =       {FZ_IN_REQ, FZ_IN_REQ, FZ_IN_REQ, FZ_IN_REQ, FZ_IN_REQ, FZ_IN_OPT, 0,          0,          FZ_IN_REQ, FZ_IN_OPT, FZ_OUT_REQ, FZ_OUT_REQ, FZ_OUT_REQ, FZ_OUT_OPT, FZ_OUT_OPT, FZ_OUT_OPT},
    [LA_OP_DECODE] =         {FZ_IN_REQ, FZ_IN_REQ, FZ_IN_REQ, FZ_IN_REQ, FZ_IN_REQ, FZ_IN_REQ, FZ_OUT_REQ, FZ_OUT_REQ, 0,         0,         0,          0,          0,          0,          0,          0},
    [LA_OP_STATE_FORWARD] =  {0,         FZ_IN_REQ, FZ_IN_REQ, FZ_IN_REQ, FZ_IN_REQ, FZ_IN_OPT, 0,          FZ_OUT_REQ, 0,         0,         0,          0,          0,          0,          0,          0},
    [LA_OP_STATE_BACKWARD] = {0,         FZ_IN_REQ, FZ_IN_REQ, FZ_IN_REQ, FZ_IN_REQ, FZ_IN_OPT, 0,          0,          0,         FZ_IN_REQ, 0,          FZ_OUT_REQ, FZ_OUT_REQ, FZ_OUT_OPT, FZ_OUT_OPT, FZ_OUT_OPT},
};
/* clang-format on */

const char *fz_op_name(la_op_t op) {
    switch (op) {
    case LA_OP_FORWARD: return "forward";
    case LA_OP_BACKWARD: return "backward";
    case LA_OP_DECODE: return "decode";
    case LA_OP_STATE_FORWARD: return "state_forward";
    case LA_OP_STATE_BACKWARD: return "state_backward";
    default: return "unknown-op";
    }
}

int fz_op_uses(la_op_t op, int id) { return op_roles[op][id] != FZ_UNUSED; }

/* ld / d_ld belong to every decayed kind, ldv / d_ldv to VECTOR_KV only. */
static int decay_uses(la_decay_t kind, int id) {
    if (id == FZ_LD || id == FZ_DLD) return kind != LA_DECAY_NONE;
    if (id == FZ_LDV || id == FZ_DLDV) return kind == LA_DECAY_VECTOR_KV;
    return 1;
}

fz_role_t fz_role(la_op_t op, la_decay_t kind, int id) {
    return decay_uses(kind, id) ? (fz_role_t)op_roles[op][id] : FZ_UNUSED;
}

int fz_is_output(fz_role_t r) { return r == FZ_OUT_REQ || r == FZ_OUT_OPT; }
int fz_is_state(int id) { return id == FZ_S0 || id == FZ_SN || id == FZ_DSN || id == FZ_DS0; }
int fz_is_decay(int id) { return id == FZ_LD || id == FZ_LDV || id == FZ_DLD || id == FZ_DLDV; }

la_tensor_t *fz_field(la_tensors_t *t, int id) {
    la_tensor_t *all[FZ_NT] = {&t->q,     &t->k,
                               &t->v,     &t->ld,
                               &t->ldv,   &t->initial_state,
                               &t->o,     &t->final_state,
                               &t->d_o,   &t->d_final_state,
                               &t->dq,    &t->dk,
                               &t->dv,    &t->d_ld,
                               &t->d_ldv, &t->d_initial_state};
    return all[id];
}

void fz_logical_dims(const la_problem_t *p, int64_t S, int id, int64_t d[4]) {
    const int64_t B = p->batch, H = p->heads, N = p->seqlen, D = p->dim_qk, E = p->dim_v;
    int64_t v[4] = {B, H, N, D};
    switch (id) {
    case FZ_V:
    case FZ_O:
    case FZ_DO:
    case FZ_DV:
    case FZ_LDV:
    case FZ_DLDV: v[3] = E; break;
    case FZ_LD:
    case FZ_DLD:
        if (p->decay == LA_DECAY_SCALAR_HEAD) {
            v[0] = 1;
            v[2] = 1;
            v[3] = 1;
        } else if (p->decay == LA_DECAY_SCALAR_TOKEN) v[3] = 1;
        break;
    case FZ_S0:
    case FZ_SN:
    case FZ_DSN:
    case FZ_DS0:
        v[0] = S;
        v[2] = D;
        v[3] = E;
        break;
    default: break;
    }
    memcpy(d, v, sizeof v);
}

/* ---- statuses ---------------------------------------------------------------------- */

/* Slots of the count table: the known statuses, "other", and "no status". */
#define SLOT_OTHER TU_NUM_STATUSES
#define SLOT_NONE (TU_NUM_STATUSES + 1)
#define NSLOTS (TU_NUM_STATUSES + 2)

const char *fz_status_name(la_status_t s) {
    for (int i = 0; i < TU_NUM_STATUSES; i++)
        if (tu_statuses[i].status == s) return tu_statuses[i].name;
    return NULL;
}

static int slot_of(la_status_t s) {
    for (int i = 0; i < TU_NUM_STATUSES; i++)
        if (tu_statuses[i].status == s) return i;
    return SLOT_OTHER;
}

/* Atomic: the busy-handle iteration counts from two threads. */
static atomic_llong g_count[FZ_E_COUNT][NSLOTS];

static const char *const entry_names[] = {
    "la_status_string",     "la_status_category", "la_dtype_size",
    "la_problem_init",      "la_tensors_init",    "la_tensor_contiguous",
    "la_backend_available", "la_create",          "la_destroy",
    "la_handle_backend",    "la_last_error",      "la_set_num_threads",
    "la_set_stream",        "la_set_workspace",   "la_set_check_values",
    "la_check_errors",      "la_policy_init",     "la_set_policy",
    "la_get_policy",        "la_workspace_size",  "la_workspace_size_for",
    "la_supports",          "la_describe",        "la_forward",
    "la_backward",          "la_decode",          "la_state_forward",
    "la_state_backward",    "la_execute",
};
_Static_assert(sizeof entry_names / sizeof entry_names[0] == FZ_E_COUNT, "one name per fz_entry_t");

static void count_none(fz_entry_t e) { atomic_fetch_add(&g_count[e][SLOT_NONE], 1); }
static la_status_t counted(fz_entry_t e, la_status_t st) {
    atomic_fetch_add(&g_count[e][slot_of(st)], 1);
    return st;
}

long long fz_calls_total(void) {
    long long n = 0;
    for (int e = 0; e < FZ_E_COUNT; e++)
        for (int s = 0; s < NSLOTS; s++) n += atomic_load(&g_count[e][s]);
    return n;
}

void fz_print_call_counts(void) {
    printf("calls by entry point (and by status):\n");
    for (int e = 0; e < FZ_E_COUNT; e++) {
        long long total = 0;
        for (int s = 0; s < NSLOTS; s++) total += atomic_load(&g_count[e][s]);
        printf("  %-22s %9lld", entry_names[e], total);
        const char *sep = "  (";
        for (int s = 0; s < NSLOTS; s++) {
            long long n = atomic_load(&g_count[e][s]);
            if (!n || s == SLOT_NONE) continue;
            const char *name = s == SLOT_OTHER ? "other" : tu_statuses[s].name + strlen("LA_STATUS_");
            printf("%s%s %lld", sep, name, n);
            sep = ", ";
        }
        printf("%s\n", sep[0] == ',' ? ")" : "");
    }
}

/* ---- the wrappers ------------------------------------------------------------------ */

const char *fz_status_string(la_status_t s) {
    count_none(FZ_E_STATUS_STRING);
    return la_status_string(s);
}
int fz_status_category(la_status_t s) {
    count_none(FZ_E_STATUS_CATEGORY);
    return la_status_category(s);
}
size_t fz_dtype_size(la_dtype_t d) {
    count_none(FZ_E_DTYPE_SIZE);
    return la_dtype_size(d);
}
void fz_problem_init(la_problem_t *p) {
    count_none(FZ_E_PROBLEM_INIT);
    la_problem_init(p);
}
void fz_tensors_init(la_tensors_t *t) {
    count_none(FZ_E_TENSORS_INIT);
    la_tensors_init(t);
}

void fz_tensor_contiguous(la_tensor_t *t, void *data, la_dtype_t dtype, int64_t d0, int64_t d1, int64_t d2,
                          int64_t d3) {
    count_none(FZ_E_TENSOR_CONTIGUOUS);
    la_tensor_contiguous(t, data, dtype, d0, d1, d2, d3);
}

int fz_backend_available(la_backend_t b) {
    count_none(FZ_E_BACKEND_AVAILABLE);
    return la_backend_available(b);
}
la_status_t fz_create(la_handle_t **h, la_backend_t b) { return counted(FZ_E_CREATE, la_create(h, b)); }
la_status_t fz_destroy(la_handle_t *h) { return counted(FZ_E_DESTROY, la_destroy(h)); }
la_backend_t fz_handle_backend(const la_handle_t *h) {
    count_none(FZ_E_HANDLE_BACKEND);
    return la_handle_backend(h);
}
const char *fz_last_error(const la_handle_t *h) {
    count_none(FZ_E_LAST_ERROR);
    return la_last_error(h);
}

la_status_t fz_set_num_threads(la_handle_t *h, int n) {
    return counted(FZ_E_SET_NUM_THREADS, la_set_num_threads(h, n));
}
la_status_t fz_set_stream(la_handle_t *h, void *stream) { return counted(FZ_E_SET_STREAM, la_set_stream(h, stream)); }
la_status_t fz_set_workspace(la_handle_t *h, void *ws, size_t bytes) {
    return counted(FZ_E_SET_WORKSPACE, la_set_workspace(h, ws, bytes));
}
la_status_t fz_set_check_values(la_handle_t *h, int mode) {
    return counted(FZ_E_SET_CHECK_VALUES, la_set_check_values(h, mode));
}
la_status_t fz_check_errors(la_handle_t *h) { return counted(FZ_E_CHECK_ERRORS, la_check_errors(h)); }
void fz_policy_init(la_policy_t *q) {
    count_none(FZ_E_POLICY_INIT);
    la_policy_init(q);
}
la_status_t fz_set_policy(la_handle_t *h, const la_policy_t *q) {
    return counted(FZ_E_SET_POLICY, la_set_policy(h, q));
}
la_status_t fz_get_policy(la_handle_t *h, la_policy_t *q) { return counted(FZ_E_GET_POLICY, la_get_policy(h, q)); }
la_status_t fz_workspace_size(la_handle_t *h, la_op_t op, const la_problem_t *p, size_t *bytes) {
    return counted(FZ_E_WORKSPACE_SIZE, la_workspace_size(h, op, p, bytes));
}
la_status_t fz_workspace_size_for(la_handle_t *h, la_op_t op, const la_problem_t *p, const la_tensors_t *t,
                                  size_t *bytes) {
    return counted(FZ_E_WORKSPACE_SIZE_FOR, la_workspace_size_for(h, op, p, t, bytes));
}
la_status_t fz_supports(la_handle_t *h, la_op_t op, const la_problem_t *p, const la_tensors_t *t) {
    return counted(FZ_E_SUPPORTS, la_supports(h, op, p, t));
}
la_status_t fz_describe(la_handle_t *h, la_op_t op, const la_problem_t *p, const la_tensors_t *t, char *buf,
                        size_t len) {
    return counted(FZ_E_DESCRIBE, la_describe(h, op, p, t, buf, len));
}
la_status_t fz_execute(la_handle_t *h, la_op_t op, const la_problem_t *p, const la_tensors_t *t, void *ws, size_t bytes,
                       size_t *needed) {
    return counted(FZ_E_EXECUTE, la_execute(h, op, p, t, ws, bytes, needed));
}

la_status_t fz_run_op(la_handle_t *h, la_op_t op, const la_problem_t *p, const la_tensors_t *t) {
    switch (op) {
    case LA_OP_FORWARD: return counted(FZ_E_FORWARD, la_forward(h, p, t));
    case LA_OP_BACKWARD: return counted(FZ_E_BACKWARD, la_backward(h, p, t));
    case LA_OP_DECODE: return counted(FZ_E_DECODE, la_decode(h, p, t));
    case LA_OP_STATE_FORWARD: return counted(FZ_E_STATE_FORWARD, la_state_forward(h, p, t));
    default: return counted(FZ_E_STATE_BACKWARD, la_state_backward(h, p, t));
    }
}
