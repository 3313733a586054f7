/*
 * fuzz_check.c - one valid call held to the contract.
 *
 * Before the call: la_supports must predict its status; la_workspace_size
 * (the bound over every call the problem allows) must cover
 * la_workspace_size_for (this call's figure), and a caller workspace of
 * exactly that figure must be enough.  Outputs are poisoned with NaN bit
 * patterns and every buffer is snapshotted.  After it:
 *   success  every logical element of every output written and finite, no
 *            other byte of any buffer changed (inputs, gaps), message "";
 *   failure  only a 2xx status that la_supports announced, no byte changed,
 *            a message.
 * Now and then the outputs go to the fp64 reference, and a call with garbage
 * strides on dims of extent <= 1 is repeated with ordinary strides: the
 * header says those strides are ignored, so the bytes must be identical.
 */
#include "fuzz.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- statuses and messages -------------------------------------------------------------- */

static const char *sname(la_status_t st) {
    const char *n = fz_status_name(st);
    return n ? n : "(unknown status)";
}

int fz_check_known(fz_ctx_t *x, la_status_t st, const char *what) {
    const char *s = fz_status_string(st);
    if (!s || !fz_status_name(st) || strncmp(s, "LA_STATUS_UNKNOWN", 17) == 0)
        return fz_fail(x, "status-unknown", "%s returned %d, not a status of the header (la_status_string: %s)", what,
                       (int)st, s ? s : "NULL");
    return 1;
}

int fz_check_message(fz_ctx_t *x, la_handle_t *h, la_status_t st, const char *what) {
    const char *m = fz_last_error(h);
    if (!m) return fz_fail(x, "message-null", "%s: la_last_error returned NULL", what);
    if (st == LA_STATUS_SUCCESS && m[0])
        return fz_fail(x, "message-stale",
                       "%s succeeded but la_last_error still says \"%s\" (every call clears it at entry)", what, m);
    if (st != LA_STATUS_SUCCESS && !m[0])
        return fz_fail(x, "message-empty", "%s failed with %s but la_last_error is empty", what, sname(st));
    return 1;
}

/* A failed call first, now and then, so that the next call must clear its message. */
void fz_maybe_dirty(fz_ctx_t *x, la_handle_t *h, tu_rng_t *r) {
    if (tu_below(r, 3)) return;
    la_status_t st, want;
    const char *what;
    switch (tu_below(r, 3)) {
    case 0:
        what = "la_set_num_threads(negative)";
        want = LA_STATUS_BAD_PARAM;
        st = fz_set_num_threads(h, -1 - (int)tu_below(r, 100));
        break;
    case 1:
        what = "la_forward(problem NULL)";
        want = LA_STATUS_NULL_POINTER;
        st = fz_run_op(h, LA_OP_FORWARD, NULL, NULL);
        break;
    default: {
        la_problem_t p;
        size_t bytes = 0;
        fz_problem_init(&p); /* batch 0: a bad shape */
        what = "la_workspace_size(batch 0)";
        want = LA_STATUS_BAD_SHAPE;
        st = fz_workspace_size(h, LA_OP_FORWARD, &p, &bytes);
        break;
    }
    }
    if (st != want) fz_fail(x, "wrong-status", "%s returned %s, want %s", what, sname(st), sname(want));
    else fz_check_message(x, h, st, what);
}

static void expect_success(fz_ctx_t *x, la_handle_t *h, la_status_t st, const char *what) {
    if (st != LA_STATUS_SUCCESS)
        fz_fail(x, "setting-rejected", "%s returned %s: %s", what, sname(st), fz_last_error(h));
    else fz_check_message(x, h, st, what);
}

void fz_random_settings(fz_ctx_t *x, la_handle_t *h, tu_rng_t *r, int device) {
    static const int threads[] = {1, 1, 1, 0, 2, 3};
    if (tu_below(r, 4)) {
        /* Now and then far more threads than (sequence, head) items: a call
         * never starts more threads than items (the header). */
        int n = tu_below(r, 20) ? threads[tu_below(r, 6)]
              : tu_below(r, 2)  ? LA_MAX_THREADS
                                : 4 + (int)tu_below(r, LA_MAX_THREADS - 3);
        expect_success(x, h, fz_set_num_threads(h, n), "la_set_num_threads");
    }
    x->checks_off = 0;
    if (tu_below(r, 3) == 0) {
        int on = (int)tu_below(r, 2);
        expect_success(x, h, fz_set_check_values(h, on), "la_set_check_values");
        x->checks_off = !on;
    }
    if (tu_below(r, 4) == 0) {
        /* The CPU ignores the stream, whatever it points at; a GPU gets the default stream. */
        void *s = device || tu_below(r, 2) ? NULL : (void *)(uintptr_t)0x51ea4000u;
        expect_success(x, h, fz_set_stream(h, s), "la_set_stream");
    }
}

/* ---- the outputs of a successful call ------------------------------------------------------ */

/* The tensor of the call that lives in buffer b (one the operation uses, first). */
static const char *buf_owner(const fz_call_t *c, int b) {
    for (int pass = 0; pass < 2; pass++)
        for (int id = 0; id < FZ_NT; id++)
            if (c->t[id].src == FZ_IN_BUF && c->t[id].buf == b && (pass || fz_role(c->op, c->p.decay, id) != FZ_UNUSED))
                return fz_tensor_names[id];
    return "(a mutation's buffer)";
}

/* Every element of every output written (no poison left) and finite; every
 * other byte of every buffer as it was. */
static int check_written(fz_ctx_t *x, const fz_call_t *c) {
    int ok = 1;
    unsigned char **expect = calloc((size_t)c->nbuf, sizeof *expect);
    for (int id = 0; id < FZ_NT && ok; id++) {
        const fz_tensor_t *t = &c->t[id];
        if (t->src != FZ_IN_BUF || !fz_is_output(fz_role(c->op, c->p.decay, id))) continue;
        const fz_buf_t *b = &c->buf[t->buf];
        if (!expect[t->buf]) {
            expect[t->buf] = malloc(b->bytes ? b->bytes : 1);
            memcpy(expect[t->buf], b->snap, b->bytes);
        }
        size_t es = fz_esize(t->dtype);
        const int inplace = id == FZ_SN && c->inplace; /* its elements held the input state */
        for (int64_t i0 = 0; i0 < t->dim[0] && ok; i0++)
            for (int64_t i1 = 0; i1 < t->dim[1] && ok; i1++)
                for (int64_t i2 = 0; i2 < t->dim[2] && ok; i2++)
                    for (int64_t i3 = 0; i3 < t->dim[3] && ok; i3++) {
                        size_t at = fz_elem_at(t, i0, i1, i2, i3);
                        if (!inplace && fz_is_poison(t->dtype, b->host + at))
                            ok = fz_fail(x, "output-not-written", "%s: %s[%lld,%lld,%lld,%lld] still holds the poison",
                                         fz_op_name(c->op), fz_tensor_names[id], (long long)i0, (long long)i1,
                                         (long long)i2, (long long)i3);
                        else if (!isfinite(fz_load(t->dtype, b->host + at)))
                            ok = fz_fail(x, "output-not-finite", "%s: %s[%lld,%lld,%lld,%lld] = %g", fz_op_name(c->op),
                                         fz_tensor_names[id], (long long)i0, (long long)i1, (long long)i2,
                                         (long long)i3, fz_load(t->dtype, b->host + at));
                        memcpy(expect[t->buf] + at, b->host + at, es);
                    }
    }
    for (int i = 0; i < c->nbuf && ok; i++) {
        const fz_buf_t *b = &c->buf[i];
        const unsigned char *want = expect[i] ? expect[i] : b->snap;
        if (memcmp(want, b->host, b->bytes) == 0) continue;
        size_t at = 0;
        while (want[at] == b->host[at]) at++;
        ok = fz_fail(x, expect[i] ? "gap-written" : "input-modified",
                     "%s: byte %zu of %s's buffer (%zu bytes) changed from 0x%02x to 0x%02x%s", fz_op_name(c->op), at,
                     buf_owner(c, i), b->bytes, want[at], b->host[at],
                     expect[i] ? " (not a logical element of any output)" : "");
    }
    for (int i = 0; i < c->nbuf; i++) free(expect[i]);
    free(expect);
    return ok;
}

/* Poison the outputs, snapshot everything, run, bring the bytes back. */
static la_status_t run_once(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, const la_tensors_t *t) {
    for (int id = 0; id < FZ_NT; id++) {
        const fz_tensor_t *ft = &c->t[id];
        if (ft->src == FZ_IN_BUF && fz_is_output(fz_role(c->op, c->p.decay, id)) && !(id == FZ_SN && c->inplace))
            fz_poison_elements(c, ft);
    }
    fz_snapshot(c);
    fz_upload(c);
    la_status_t st = fz_run_op(h, c->op, &c->p, t);
    fz_download(c);
    fz_check_message(x, h, st, fz_op_name(c->op));
    return st;
}

/* Garbage strides on dims of extent <= 1 against ordinary ones: identical bytes. */
static void check_natural_strides(fz_ctx_t *x, la_handle_t *h, fz_call_t *c) {
    unsigned char **first = malloc((size_t)c->nbuf * sizeof *first);
    for (int i = 0; i < c->nbuf; i++) {
        first[i] = malloc(c->buf[i].bytes ? c->buf[i].bytes : 1);
        memcpy(first[i], c->buf[i].host, c->buf[i].bytes);
        memcpy(c->buf[i].host, c->buf[i].snap, c->buf[i].bytes); /* inputs as they were, outputs poisoned */
    }
    la_tensors_t nat = fz_call_tensors(c, 1);
    fz_upload(c);
    la_status_t st = fz_run_op(h, c->op, &c->p, &nat);
    fz_download(c);
    if (st != LA_STATUS_SUCCESS) {
        fz_fail(x, "odd-strides-differ",
                "%s: with ordinary strides on the extent-1 dims the call returns %s (%s), "
                "with garbage ones SUCCESS",
                fz_op_name(c->op), sname(st), fz_last_error(h));
    } else {
        for (int i = 0; i < c->nbuf; i++)
            if (memcmp(first[i], c->buf[i].host, c->buf[i].bytes) != 0) {
                fz_fail(x, "odd-strides-differ",
                        "%s: %s differs between garbage and ordinary strides on dims of "
                        "extent <= 1 (the header says they are ignored)",
                        fz_op_name(c->op), buf_owner(c, i));
                break;
            }
    }
    for (int i = 0; i < c->nbuf; i++) free(first[i]);
    free(first);
}

/* ---- caller workspace ------------------------------------------------------------------- */

static void *alloc_workspace(int device, size_t bytes) {
    if (device) return fz_dev_alloc(bytes);
    void *p = malloc(bytes);
    return p ? p : malloc(1);
}

static void free_workspace(int device, void *p) {
    if (device) fz_dev_free(p);
    else free(p);
}

/* ---- the protocol -------------------------------------------------------------------------- */

la_status_t fz_exercise_valid(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, tu_rng_t *r) {
    const char *op = fz_op_name(c->op);
    la_tensors_t t = fz_call_tensors(c, 0);

    fz_maybe_dirty(x, h, r);
    la_status_t sup = fz_supports(h, c->op, &c->p, &t);
    fz_check_message(x, h, sup, "la_supports");
    if (sup != LA_STATUS_SUCCESS && fz_status_category(sup) != 200)
        fz_fail(x, "valid-rejected", "la_supports(%s) rejected a valid call: %s: %s", op, sname(sup), fz_last_error(h));

    fz_maybe_dirty(x, h, r);
    size_t bound = 0, exact = 0;
    la_status_t wb = fz_workspace_size(h, c->op, &c->p, &bound);
    fz_check_message(x, h, wb, "la_workspace_size");
    if (wb != LA_STATUS_SUCCESS)
        fz_fail(x, "valid-rejected", "la_workspace_size(%s) rejected a valid problem: %s: %s", op, sname(wb),
                fz_last_error(h));
    la_status_t wf = fz_workspace_size_for(h, c->op, &c->p, &t, &exact);
    fz_check_message(x, h, wf, "la_workspace_size_for");
    if (wf != sup)
        fz_fail(x, "query-disagrees", "la_workspace_size_for(%s) returned %s, la_supports %s", op, sname(wf),
                sname(sup));
    if (wb == LA_STATUS_SUCCESS && wf == LA_STATUS_SUCCESS && exact > bound)
        fz_fail(x, "workspace-bound", "la_workspace_size_for(%s) = %zu bytes > la_workspace_size = %zu", op, exact,
                bound);

    /* The workspace: the handle's own, or the caller's of exactly this call's figure (or the bound). */
    void *ws = NULL;
    uint64_t mode = tu_below(r, 10);
    if (mode >= 5 && wb == LA_STATUS_SUCCESS && wf == LA_STATUS_SUCCESS) {
        size_t bytes = mode < 8 ? exact : bound;
        /* Host memory: at any address (the library aligns inside), ending
         * exactly where the allocation ends. */
        size_t skew = c->device || tu_below(r, 3) ? 0 : 1 + (size_t)tu_below(r, 63);
        if (bytes <= ((size_t)1 << 30)) {
            ws = alloc_workspace(c->device, bytes + skew);
            expect_success(x, h, fz_set_workspace(h, (char *)ws + skew, bytes), "la_set_workspace");
        }
    }

    la_status_t st = run_once(x, h, c, &t);
    /* Drawn whatever the mode, so that a replay of one iteration draws as the full run did. */
    const int sampled = tu_below(r, (uint64_t)x->o->ref_every) == 0;
    const int want_ref = sampled || x->o->one || c->inplace;
    if (st != sup)
        fz_fail(x, "supports-disagrees", "%s returned %s (%s) but la_supports said %s", op, sname(st), fz_last_error(h),
                sname(sup));
    if (st == LA_STATUS_SUCCESS) {
        x->valid_calls++;
        if (check_written(x, c) && want_ref) {
            x->ref_compared++;
            fz_compare_reference(x, c, fz_handle_backend(h));
        }
        if (c->odd_strides) check_natural_strides(x, h, c);
    } else {
        fz_check_known(x, st, op);
        int changed = fz_first_changed(c);
        if (changed >= 0)
            fz_fail(x, "wrote-on-failure", "%s failed (%s) but changed %s", op, sname(st), buf_owner(c, changed));
        if (fz_status_category(st) != 200)
            fz_fail(x, "valid-rejected", "%s rejected a valid call: %s: %s", op, sname(st), fz_last_error(h));
    }
    if (ws) {
        expect_success(x, h, fz_set_workspace(h, NULL, 0), "la_set_workspace(NULL)");
        free_workspace(c->device, ws);
    }
    return st;
}
