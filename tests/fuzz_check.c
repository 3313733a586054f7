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
 * One call in four goes through la_execute with caller memory of exactly
 * la_workspace_size_for's figure (which *needed must repeat); now and then
 * la_describe must agree with la_supports, and la_check_errors find nothing.
 * Now and then the outputs go to the fp64 reference, and a call with garbage
 * strides on dims of extent <= 1 is repeated with ordinary strides (and one
 * with a max_seqlen hint without it): the header says those strides and the
 * hint change nothing, so the bytes must be identical.
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
    if (tu_below(r, 3) == 0) {
        /* The mode stays with the handle until set again. */
        int mode = (int)tu_below(r, 3);
        expect_success(x, h, fz_set_check_values(h, mode), "la_set_check_values");
        x->check_mode = mode;
    }
    if (tu_below(r, 4) == 0) {
        /* The CPU ignores the stream, whatever it points at; a GPU gets the default stream. */
        void *s = device || tu_below(r, 2) ? NULL : (void *)(uintptr_t)0x51ea4000u;
        expect_success(x, h, fz_set_stream(h, s), "la_set_stream");
    }
    if (tu_below(r, 6) == 0) {
        /* A valid policy, read back as it was set. */
        la_policy_t q, back;
        fz_random_policy(&q, r, device);
        expect_success(x, h, fz_set_policy(h, &q), "la_set_policy");
        memset(&back, 0xA5, sizeof back);
        la_status_t st = fz_get_policy(h, &back);
        expect_success(x, h, st, "la_get_policy");
        if (st == LA_STATUS_SUCCESS && !fz_policy_equal(&q, &back))
            fz_fail(x, "policy-round-trip",
                    "la_get_policy returned tile_cap %d smem_kb %d switches %d %d %d %d %d %d %d %d dld_planes %d, "
                    "la_set_policy was given tile_cap %d smem_kb %d switches %d %d %d %d %d %d %d %d dld_planes %d",
                    back.tile_cap, back.smem_kb, (int)back.fwd_wgmma, (int)back.fwd_rows, (int)back.fwd_warp_roles,
                    (int)back.state_wgmma, (int)back.bwd_wgmma, (int)back.vec_kernels, (int)back.vec_split,
                    (int)back.vec_warp_roles, back.dld_planes, q.tile_cap, q.smem_kb, (int)q.fwd_wgmma, (int)q.fwd_rows,
                    (int)q.fwd_warp_roles, (int)q.state_wgmma, (int)q.bwd_wgmma, (int)q.vec_kernels, (int)q.vec_split,
                    (int)q.vec_warp_roles, q.dld_planes);
    }
}

/* ---- policies ------------------------------------------------------------------------------ */

void fz_random_policy(la_policy_t *q, tu_rng_t *r, int device) {
    static const int caps[] = {0, 64, 128};
    fz_policy_init(q);
    q->tile_cap = caps[tu_below(r, 3)];
    /* Host: any size (the CPU plans without it).  Device: the device's, or
     * 99 KB (a consumer Blackwell's block), both plans a GPU makes. */
    const uint64_t u = tu_below(r, 4), kb = 1 + tu_below(r, 4096);
    if (u == 1) q->smem_kb = 99;
    else if (u >= 2 && !device) q->smem_kb = (int)kb;
    else q->smem_kb = 0;
    la_switch_t *sw[8] = {&q->fwd_wgmma, &q->fwd_rows,    &q->fwd_warp_roles, &q->state_wgmma,
                          &q->bwd_wgmma, &q->vec_kernels, &q->vec_split,      &q->vec_warp_roles};
    for (int i = 0; i < 8; i++) *sw[i] = (la_switch_t)tu_below(r, 3);
    q->dld_planes = tu_below(r, 2) ? 0 : 2;
}

int fz_policy_equal(const la_policy_t *a, const la_policy_t *b) {
    return a->struct_size == b->struct_size && a->tile_cap == b->tile_cap && a->smem_kb == b->smem_kb &&
           a->fwd_wgmma == b->fwd_wgmma && a->fwd_rows == b->fwd_rows && a->fwd_warp_roles == b->fwd_warp_roles &&
           a->state_wgmma == b->state_wgmma && a->bwd_wgmma == b->bwd_wgmma && a->dld_planes == b->dld_planes &&
           a->vec_kernels == b->vec_kernels && a->vec_split == b->vec_split && a->vec_warp_roles == b->vec_warp_roles;
}

/* ---- la_describe ----------------------------------------------------------------------------- */

#define DESCRIBE_FILL 0xA5

void fz_check_describe(fz_ctx_t *x, la_handle_t *h, const fz_call_t *c, const la_tensors_t *t, la_status_t want,
                       tu_rng_t *r) {
    static const size_t lens[] = {1, 1, 2, 3, 8, 17, 40, 100, 256, 1024};
    const size_t len = lens[tu_below(r, sizeof lens / sizeof lens[0])];
    char *buf = malloc(len); /* exactly len bytes: a write past them is AddressSanitizer's */
    if (!buf) exit(2);
    memset(buf, DESCRIBE_FILL, len);
    la_status_t st = fz_describe(h, c->op, &c->p, t, buf, len);
    fz_check_message(x, h, st, "la_describe");
    if (st != want)
        fz_fail(x, "describe-disagrees", "la_describe(%s, len %zu) returned %s (%s), la_supports %s", fz_op_name(c->op),
                len, sname(st), fz_last_error(h), sname(want));
    if (st == LA_STATUS_SUCCESS) {
        const char *nul = memchr(buf, 0, len);
        if (!nul)
            fz_fail(x, "describe-unterminated", "la_describe(%s, len %zu): no NUL within len", fz_op_name(c->op), len);
        else if (len > 1 && nul == buf)
            fz_fail(x, "describe-empty", "la_describe(%s, len %zu) succeeded with an empty text", fz_op_name(c->op),
                    len);
        else if (memchr(buf, '\n', (size_t)(nul - buf)))
            fz_fail(x, "describe-lines", "la_describe(%s) wrote more than one line: \"%s\"", fz_op_name(c->op), buf);
    } else {
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)buf[i] != DESCRIBE_FILL) {
                fz_fail(x, "wrote-on-failure", "la_describe(%s) failed (%s) but wrote byte %zu of buf",
                        fz_op_name(c->op), sname(st), i);
                break;
            }
    }
    free(buf);
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

/* Calls whose workspace figure passes this run through the handle's own. */
#define MAX_CALLER_WS ((size_t)1 << 30)

/* la_execute with caller memory of exactly the call's figure (host: a malloc
 * of exactly that many bytes, so AddressSanitizer sees an access past it;
 * NULL when the call needs none); *needed must be that figure.  The memory
 * is freed once the outputs are back (a device call may still run). */
static la_status_t execute_exact(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, const la_tensors_t *t, la_status_t wf,
                                 size_t exact, void **ws) {
    size_t bytes = 0;
    *ws = NULL;
    if (wf == LA_STATUS_SUCCESS && exact > 0) {
        *ws = alloc_workspace(c->device, exact);
        bytes = exact;
    }
    size_t needed = (size_t)0x5eed5eed;
    la_status_t st = fz_execute(h, c->op, &c->p, t, *ws, bytes, &needed);
    if (st == LA_STATUS_SUCCESS && wf == LA_STATUS_SUCCESS && needed != exact)
        fz_fail(x, "execute-needed", "la_execute(%s) succeeded with *needed = %zu, la_workspace_size_for said %zu",
                fz_op_name(c->op), needed, exact);
    return st;
}

/* Poison the outputs, snapshot everything, run (the operation's own entry
 * point, or la_execute), bring the bytes back. */
static la_status_t run_once(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, const la_tensors_t *t, int via_exec,
                            la_status_t wf, size_t exact) {
    for (int id = 0; id < FZ_NT; id++) {
        const fz_tensor_t *ft = &c->t[id];
        if (ft->src == FZ_IN_BUF && fz_is_output(fz_role(c->op, c->p.decay, id)) && !(id == FZ_SN && c->inplace))
            fz_poison_elements(c, ft);
    }
    fz_snapshot(c);
    fz_upload(c);
    void *ws = NULL;
    la_status_t st = via_exec ? execute_exact(x, h, c, t, wf, exact, &ws) : fz_run_op(h, c->op, &c->p, t);
    fz_download(c);
    if (ws) free_workspace(c->device, ws);
    char what[64];
    snprintf(what, sizeof what, "%s%s%s", via_exec ? "la_execute(" : "", fz_op_name(c->op), via_exec ? ")" : "");
    fz_check_message(x, h, st, what);
    return st;
}

/* The same call again from the same inputs (outputs poisoned), with other
 * strides on the extent-1 dims or another max_seqlen hint: the header says
 * neither matters, so the bytes must be identical. */
static void check_rerun_same(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, const la_problem_t *p, const la_tensors_t *t,
                             const char *cls, const char *how) {
    unsigned char **first = malloc((size_t)c->nbuf * sizeof *first);
    for (int i = 0; i < c->nbuf; i++) {
        first[i] = malloc(c->buf[i].bytes ? c->buf[i].bytes : 1);
        memcpy(first[i], c->buf[i].host, c->buf[i].bytes);
        memcpy(c->buf[i].host, c->buf[i].snap, c->buf[i].bytes); /* inputs as they were, outputs poisoned */
    }
    fz_upload(c);
    la_status_t st = fz_run_op(h, c->op, p, t);
    fz_download(c);
    if (st != LA_STATUS_SUCCESS) {
        fz_fail(x, cls, "%s: %s the call returns %s (%s), as given SUCCESS", fz_op_name(c->op), how, sname(st),
                fz_last_error(h));
    } else {
        for (int i = 0; i < c->nbuf; i++)
            if (memcmp(first[i], c->buf[i].host, c->buf[i].bytes) != 0) {
                fz_fail(x, cls, "%s: %s differs from the call as given (the header says it must not)",
                        fz_op_name(c->op), buf_owner(c, i));
                break;
            }
    }
    for (int i = 0; i < c->nbuf; i++) free(first[i]);
    free(first);
}

/* After la_execute with its own memory, the handle's caller workspace (one
 * byte short of the call's figure) must still be the handle's: the ordinary
 * call is refused with WORKSPACE_TOO_SMALL and writes nothing.  Host only. */
static void check_handle_workspace_kept(fz_ctx_t *x, la_handle_t *h, fz_call_t *c, const la_tensors_t *t,
                                        size_t short_bytes) {
    unsigned char **img = malloc((size_t)c->nbuf * sizeof *img);
    for (int i = 0; i < c->nbuf; i++) {
        img[i] = malloc(c->buf[i].bytes ? c->buf[i].bytes : 1);
        memcpy(img[i], c->buf[i].host, c->buf[i].bytes);
    }
    la_status_t st = fz_run_op(h, c->op, &c->p, t);
    fz_check_message(x, h, st, fz_op_name(c->op));
    if (st != LA_STATUS_WORKSPACE_TOO_SMALL)
        fz_fail(x, "execute-changed-workspace",
                "after la_execute(%s) with workspace of its own, %s on the handle's caller workspace of %zu bytes "
                "(one short) returned %s, want LA_STATUS_WORKSPACE_TOO_SMALL",
                fz_op_name(c->op), fz_op_name(c->op), short_bytes, sname(st));
    for (int i = 0; i < c->nbuf; i++) {
        if (memcmp(img[i], c->buf[i].host, c->buf[i].bytes) != 0) {
            if (st != LA_STATUS_SUCCESS)
                fz_fail(x, "wrote-on-failure", "%s failed (%s) but changed %s", fz_op_name(c->op), sname(st),
                        buf_owner(c, i));
            memcpy(c->buf[i].host, img[i], c->buf[i].bytes);
        }
        free(img[i]);
    }
    free(img);
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

    /* The plan's text, now and then (it validates like the call). */
    if (tu_below(r, 4) == 0) {
        fz_maybe_dirty(x, h, r);
        fz_check_describe(x, h, c, &t, sup, r);
    }

    /* The call: one in four through la_execute with caller memory of exactly
     * its figure, the others through the operation's own entry point.  The
     * workspace of those: the handle's own, or the caller's of exactly this
     * call's figure (or the bound).  Drawn whatever the route, so that a
     * replay of one iteration draws as the full run did. */
    const int via_exec = tu_below(r, 4) == 0 && !(wf == LA_STATUS_SUCCESS && exact > MAX_CALLER_WS);
    void *ws = NULL, *short_ws = NULL;
    size_t short_bytes = 0;
    uint64_t mode = tu_below(r, 10);
    /* Host memory: at any address (the library aligns inside), ending
     * exactly where the allocation ends. */
    size_t skew = c->device || tu_below(r, 3) ? 0 : 1 + (size_t)tu_below(r, 63);
    if (!via_exec && mode >= 5 && wb == LA_STATUS_SUCCESS && wf == LA_STATUS_SUCCESS) {
        size_t bytes = mode < 8 ? exact : bound;
        if (bytes <= MAX_CALLER_WS) {
            ws = alloc_workspace(c->device, bytes + skew);
            expect_success(x, h, fz_set_workspace(h, (char *)ws + skew, bytes), "la_set_workspace");
        }
    }
    if (via_exec && mode >= 7 && !c->device && wf == LA_STATUS_SUCCESS && exact > 1) {
        /* la_execute neither uses nor changes the handle's workspace setting:
         * give the handle a caller workspace one byte short. */
        short_bytes = exact - 1;
        short_ws = malloc(short_bytes);
        expect_success(x, h, fz_set_workspace(h, short_ws, short_bytes), "la_set_workspace");
    }

    la_status_t st = run_once(x, h, c, &t, via_exec, wf, exact);
    /* Drawn whatever the mode, so that a replay of one iteration draws as the full run did. */
    const int sampled = tu_below(r, (uint64_t)x->o->ref_every) == 0;
    const int want_ref = sampled || x->o->one || c->inplace;
    const int hint_rerun = tu_below(r, 2) == 0, check_errors = tu_below(r, 4) == 0;
    if (st != sup)
        fz_fail(x, "supports-disagrees", "%s%s returned %s (%s) but la_supports said %s", via_exec ? "la_execute " : "",
                op, sname(st), fz_last_error(h), sname(sup));
    if (st == LA_STATUS_SUCCESS) {
        x->valid_calls++;
        if (check_written(x, c) && want_ref) {
            x->ref_compared++;
            fz_compare_reference(x, c, fz_handle_backend(h));
        }
    } else {
        fz_check_known(x, st, op);
        int changed = fz_first_changed(c);
        if (changed >= 0)
            fz_fail(x, "wrote-on-failure", "%s failed (%s) but changed %s", op, sname(st), buf_owner(c, changed));
        if (fz_status_category(st) != 200)
            fz_fail(x, "valid-rejected", "%s rejected a valid call: %s: %s", op, sname(st), fz_last_error(h));
    }
    if (short_ws) {
        if (st == LA_STATUS_SUCCESS) check_handle_workspace_kept(x, h, c, &t, short_bytes);
        expect_success(x, h, fz_set_workspace(h, NULL, 0), "la_set_workspace(NULL)");
        free(short_ws);
    }
    if (st == LA_STATUS_SUCCESS && c->odd_strides) {
        la_tensors_t nat = fz_call_tensors(c, 1);
        check_rerun_same(x, h, c, &c->p, &nat, "odd-strides-differ",
                         "with ordinary strides on the dims of extent <= 1");
    }
    /* A true max_seqlen hint changes no result (device offsets may plan
     * other segments with it, so only host offsets and unpacked calls). */
    if (st == LA_STATUS_SUCCESS && hint_rerun && c->p.max_seqlen > 0 && !c->p.cu_seqlens_on_device) {
        la_problem_t p0 = c->p;
        p0.max_seqlen = 0;
        char how[80];
        snprintf(how, sizeof how, "with max_seqlen 0 instead of the hint %lld", (long long)c->p.max_seqlen);
        check_rerun_same(x, h, c, &p0, &t, "hint-changes-results", how);
    }
    /* Valid inputs: no deferred value-check error is pending (and the CPU never has one). */
    if (check_errors) {
        la_status_t se = fz_check_errors(h);
        fz_check_message(x, h, se, "la_check_errors");
        if (se != LA_STATUS_SUCCESS)
            fz_fail(x, "check-errors", "la_check_errors after valid calls returned %s: %s", sname(se),
                    fz_last_error(h));
    }
    if (ws) {
        expect_success(x, h, fz_set_workspace(h, NULL, 0), "la_set_workspace(NULL)");
        free_workspace(c->device, ws);
    }
    return st;
}
