/*
 * test_limits.c - the API at the edges of its arithmetic and its rules:
 * sizes whose products wrap, strides that reach past the address space,
 * strides of extent-1 dimensions (ignored, whatever their value), empty
 * tensors, the thread-count range, decode's problem checks in every entry
 * point, and which calls clear the handle's message.
 *
 * Each check states what the library must do; the comments say what went
 * wrong when it did not.  Build with -fsanitize=address,undefined and
 * -fno-sanitize-recover (CI does) so that a wrapped product is an error even
 * where the wrong value happens to be harmless.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lightning_attn.h"
#include "testutil.h"

static int g_pass, g_fail;

static void check(int ok, const char *what) {
    if (ok) {
        g_pass++;
    } else {
        g_fail++;
        printf("FAIL: %s\n", what);
    }
}

static void check_status(la_handle_t *h, la_status_t got, la_status_t want, const char *what) {
    char line[640];
    snprintf(line, sizeof line, "%s: got %s, want %s (%s)", what, la_status_string(got), la_status_string(want),
             la_last_error(h));
    check(got == want, line);
    if (got != LA_STATUS_SUCCESS && got != LA_STATUS_HANDLE_BUSY) {
        snprintf(line, sizeof line, "%s: a failed call leaves a message", what);
        check(la_last_error(h)[0] != '\0', line);
    }
}

/* Random floats, never zero, so a skipped write or a wrong view shows. */
static float *random_floats(tu_rng_t *r, size_t n) {
    float *x = (float *)malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = (float)(0.1 + tu_uniform(r));
    return x;
}

static float *poisoned_floats(size_t n) {
    float *x = (float *)malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = NAN;
    return x;
}

/* ---- 1. sizes whose products wrap ------------------------------------------ */

/* A backward with B = 2^60, H = 2, N = 0 names no token at all, so its
 * tensors fit in a few bytes; its per-(sequence, head) scratch (B*H doubles
 * on the CPU) does not.  The byte count used to wrap to a small workspace
 * that the call then overran. */
static void test_huge_batch_backward(la_handle_t *h) {
    const int64_t B = (int64_t)1 << 60, H = 2;
    la_problem_t p = tu_problem(B, H, 0, 1, 1, LA_DECAY_SCALAR_HEAD);
    float tok[4] = {1, 2, 3, 4}, ld[2] = {-0.5f, -0.25f}, d_ld[2] = {7, 7};
    la_tensors_t t;
    la_tensors_init(&t);
    la_tensor_t *toks[7] = {&t.q, &t.k, &t.v, &t.d_o, &t.dq, &t.dk, &t.dv};
    for (int i = 0; i < 7; i++) la_tensor_contiguous(toks[i], tok, LA_DTYPE_F32, B, H, 0, 1);
    la_tensor_contiguous(&t.ld, ld, LA_DTYPE_F32, 1, H, 1, 1);
    la_tensor_contiguous(&t.d_ld, d_ld, LA_DTYPE_F32, 1, H, 1, 1);
    check_status(h, la_backward(h, &p, &t), LA_STATUS_BAD_SHAPE, "backward B = 2^60, H = 2, N = 0");
    check(d_ld[0] == 7 && d_ld[1] == 7, "a refused backward leaves d_ld unwritten");
    size_t bytes = 1;
    check_status(h, la_workspace_size(h, LA_OP_BACKWARD, &p, &bytes), LA_STATUS_BAD_SHAPE,
                 "workspace size of B = 2^60, H = 2");
    check(bytes == 1, "a refused size query leaves *bytes alone");
}

/* Host-memory value checks of an empty per-token decay (N = 0) with 2^40
 * (sequence, head) pairs: nothing to read, so nothing to loop over (the
 * check used to walk every pair). */
static void test_empty_decay_values(la_handle_t *h) {
    const int64_t B = (int64_t)1 << 20, H = (int64_t)1 << 20;
    la_problem_t p = tu_problem(B, H, 0, 1, 1, LA_DECAY_SCALAR_TOKEN);
    float x[1] = {1}, y[1] = {0};
    la_tensors_t t;
    la_tensors_init(&t);
    la_tensor_contiguous(&t.q, x, LA_DTYPE_F32, B, H, 0, 1);
    t.k = t.v = t.q;
    la_tensor_contiguous(&t.ld, x, LA_DTYPE_F32, B, H, 0, 1);
    la_tensor_contiguous(&t.o, y, LA_DTYPE_F32, B, H, 0, 1);
    size_t bytes = 0;
    check_status(h, la_workspace_size_for(h, LA_OP_FORWARD, &p, &t, &bytes), LA_STATUS_SUCCESS,
                 "size of an N = 0 forward with 2^40 (sequence, head) pairs");
}

/* la_workspace_size must grow with the batch until the problem is refused:
 * it used to wrap and report small sizes for huge B. */
static void test_workspace_monotone(la_handle_t *h) {
    for (int op = LA_OP_FORWARD; op <= LA_OP_STATE_BACKWARD; op++) {
        la_problem_t p = tu_problem(1, 3, op == LA_OP_DECODE ? 1 : 100, 16, 8, LA_DECAY_SCALAR_HEAD);
        size_t prev = 0;
        int refused = 0;
        for (int k = 0; k < 63; k++) {
            p.batch = (int64_t)1 << k;
            size_t bytes = 0;
            la_status_t st = la_workspace_size(h, (la_op_t)op, &p, &bytes);
            if (st == LA_STATUS_BAD_SHAPE) {
                refused = 1;
                continue;
            }
            char what[128];
            snprintf(what, sizeof what, "op %d, B = 2^%d: accepted after a smaller batch was refused", op, k);
            check(!refused, what);
            snprintf(what, sizeof what, "op %d, B = 2^%d: workspace %zu < %zu of the batch before", op, k, bytes, prev);
            check(st == LA_STATUS_SUCCESS && bytes >= prev, what);
            prev = bytes;
        }
        check(refused, "the largest batches are refused as BAD_SHAPE");
    }
}

/* seqlen near INT64_MAX: its chunk count used to wrap inside the size query. */
static void test_huge_seqlen(la_handle_t *h) {
    for (int op = LA_OP_FORWARD; op <= LA_OP_STATE_BACKWARD; op++) {
        if (op == LA_OP_DECODE) continue;
        for (int kind = LA_DECAY_NONE; kind <= LA_DECAY_VECTOR_KV; kind++) {
            la_problem_t p = tu_problem(1, 1, INT64_MAX - 3, 1, 1, (la_decay_t)kind);
            size_t bytes = 0;
            check_status(h, la_workspace_size(h, (la_op_t)op, &p, &bytes), LA_STATUS_BAD_SHAPE,
                         "workspace size at seqlen INT64_MAX - 3");
        }
    }
}

/* ---- 2. the thread count ------------------------------------------------------ */

static void test_num_threads(la_handle_t *h) {
    const int bad[4] = {-1, LA_MAX_THREADS + 1, 100000, INT_MAX};
    for (int i = 0; i < 4; i++) {
        char what[96];
        snprintf(what, sizeof what, "la_set_num_threads(%d)", bad[i]);
        check_status(h, la_set_num_threads(h, bad[i]), LA_STATUS_BAD_PARAM, what);
    }
    /* The largest accepted count runs a small decode on as many threads as it
     * has items (it used to start them all and overflow libgomp's stack). */
    check_status(h, la_set_num_threads(h, LA_MAX_THREADS), LA_STATUS_SUCCESS, "la_set_num_threads(LA_MAX_THREADS)");
    tu_rng_t r;
    tu_rng_seed(&r, 11);
    const int B = 2, H = 3, D = 5, E = 4;
    float *q = random_floats(&r, B * H * D), *k = random_floats(&r, B * H * D), *v = random_floats(&r, B * H * E);
    float *s = random_floats(&r, B * H * D * E), *o = poisoned_floats(B * H * E), ld[3] = {-0.1f, -0.5f, -2.0f};
    la_problem_t p = tu_problem(B, H, 1, D, E, LA_DECAY_SCALAR_HEAD);
    la_tensors_t t;
    la_tensors_init(&t);
    la_tensor_contiguous(&t.q, q, LA_DTYPE_F32, B, H, 1, D);
    la_tensor_contiguous(&t.k, k, LA_DTYPE_F32, B, H, 1, D);
    la_tensor_contiguous(&t.v, v, LA_DTYPE_F32, B, H, 1, E);
    la_tensor_contiguous(&t.o, o, LA_DTYPE_F32, B, H, 1, E);
    la_tensor_contiguous(&t.ld, ld, LA_DTYPE_F32, 1, H, 1, 1);
    la_tensor_contiguous(&t.initial_state, s, LA_DTYPE_F32, B, H, D, E);
    t.final_state = t.initial_state;
    check_status(h, la_decode(h, &p, &t), LA_STATUS_SUCCESS, "decode with LA_MAX_THREADS threads");
    int finite = 1;
    for (int i = 0; i < B * H * E; i++) finite &= isfinite(o[i]) != 0;
    check(finite, "decode with LA_MAX_THREADS threads writes every output");
    check_status(h, la_set_num_threads(h, 0), LA_STATUS_SUCCESS, "la_set_num_threads(0)");
    free(q);
    free(k);
    free(v);
    free(s);
    free(o);
}

/* ---- 4. strides ------------------------------------------------------------------ */

/* A packed batch with N = 1 whose token stride (a dimension of extent 1,
 * ignored by the header's rule) is huge: the second sequence starts at token
 * 1, and 1 * stride used to overflow.  The result must equal the same call
 * with ordinary strides. */
static void test_packed_n1_garbage_stride(la_handle_t *h) {
    const int H = 2, D = 3, E = 2;
    const int64_t cus[2][3] = {{0, 0, 1}, {0, 1, 1}};
    tu_rng_t r;
    tu_rng_seed(&r, 12);
    float *q = random_floats(&r, H * D), *k = random_floats(&r, H * D), *v = random_floats(&r, H * E);
    float ld[2] = {-0.3f, -1.5f};
    for (int c = 0; c < 2; c++) {
        float *o[2], *sN[2];
        for (int pass = 0; pass < 2; pass++) {
            la_problem_t p = tu_problem(1, H, 1, D, E, LA_DECAY_SCALAR_HEAD);
            p.cu_seqlens = cus[c];
            p.num_seqs = 2;
            o[pass] = poisoned_floats(H * E);
            sN[pass] = poisoned_floats(2 * H * D * E);
            la_tensors_t t;
            la_tensors_init(&t);
            la_tensor_contiguous(&t.q, q, LA_DTYPE_F32, 1, H, 1, D);
            la_tensor_contiguous(&t.k, k, LA_DTYPE_F32, 1, H, 1, D);
            la_tensor_contiguous(&t.v, v, LA_DTYPE_F32, 1, H, 1, E);
            la_tensor_contiguous(&t.o, o[pass], LA_DTYPE_F32, 1, H, 1, E);
            la_tensor_contiguous(&t.ld, ld, LA_DTYPE_F32, 1, H, 1, 1);
            la_tensor_contiguous(&t.final_state, sN[pass], LA_DTYPE_F32, 2, H, D, E);
            if (pass == 1) {
                la_tensor_t *all[4] = {&t.q, &t.k, &t.v, &t.o};
                for (int i = 0; i < 4; i++) {
                    all[i]->stride[0] = INT64_MAX / 3; /* batch: extent 1 */
                    all[i]->stride[2] = INT64_MAX / 2; /* tokens: extent 1 */
                }
                t.ld.stride[0] = t.ld.stride[2] = t.ld.stride[3] = -77;
            }
            check_status(h, la_forward(h, &p, &t), LA_STATUS_SUCCESS,
                         pass ? "packed N = 1, huge extent-1 strides" : "packed N = 1, ordinary strides");
        }
        check(memcmp(o[0], o[1], H * E * sizeof(float)) == 0, "extent-1 strides change nothing in o");
        check(memcmp(sN[0], sN[1], 2 * H * D * E * sizeof(float)) == 0,
              "extent-1 strides change nothing in the final states");
        for (int pass = 0; pass < 2; pass++) {
            free(o[pass]);
            free(sN[pass]);
        }
    }
    free(q);
    free(k);
    free(v);
}

/* Strides whose extents pass 2^62 bytes or wrap: BAD_STRIDE, not accepted. */
static void test_absurd_strides(la_handle_t *h) {
    const int B = 2, H = 2, N = 5, D = 3, E = 3;
    tu_rng_t r;
    tu_rng_seed(&r, 13);
    float *q = random_floats(&r, B * H * N * D), *k = random_floats(&r, B * H * N * D);
    float *v = random_floats(&r, B * H * N * E), *o = poisoned_floats(B * H * N * E);
    const int64_t huge[3] = {(int64_t)1 << 61, (int64_t)1 << 62, INT64_MAX};
    for (int dim = 0; dim < 4; dim++)
        for (int i = 0; i < 3; i++)
            for (int which = 0; which < 2; which++) {
                la_problem_t p = tu_problem(B, H, N, D, E, LA_DECAY_NONE);
                la_tensors_t t;
                la_tensors_init(&t);
                la_tensor_contiguous(&t.q, q, LA_DTYPE_F32, B, H, N, D);
                la_tensor_contiguous(&t.k, k, LA_DTYPE_F32, B, H, N, D);
                la_tensor_contiguous(&t.v, v, LA_DTYPE_F32, B, H, N, E);
                la_tensor_contiguous(&t.o, o, LA_DTYPE_F32, B, H, N, E);
                (which ? &t.o : &t.q)->stride[dim] = huge[i];
                char what[96];
                snprintf(what, sizeof what, "%s stride[%d] = %lld", which ? "o" : "q", dim, (long long)huge[i]);
                check_status(h, la_forward(h, &p, &t), LA_STATUS_BAD_STRIDE, what);
            }
    int untouched = 1;
    for (int i = 0; i < B * H * N * E; i++) untouched &= isnan(o[i]) != 0;
    check(untouched, "refused calls leave o unwritten");
    free(q);
    free(k);
    free(v);
    free(o);
}

/* la_tensor_contiguous of a shape past 2^63 elements: no signed overflow,
 * strides that saturate instead of wrapping negative, and a call that is
 * refused. */
static void test_contiguous_huge(la_handle_t *h) {
    la_tensor_t t;
    const int64_t d = (int64_t)1 << 22; /* 2^88 elements in all */
    float x[4] = {1, 2, 3, 4};
    la_tensor_contiguous(&t, x, LA_DTYPE_F32, d, d, d, d);
    check(t.stride[3] == 1 && t.stride[2] == d && t.stride[1] == d * d && t.stride[0] == INT64_MAX,
          "la_tensor_contiguous saturates a stride past INT64_MAX");
    la_tensor_contiguous(&t, x, LA_DTYPE_F32, 2, -3, 4, 5);
    check(t.stride[0] >= 0 && t.stride[1] >= 0, "la_tensor_contiguous with a negative extent gives no negative stride");
    la_problem_t p = tu_problem(d, d, d, 256, 256, LA_DECAY_NONE);
    la_tensors_t ts;
    la_tensors_init(&ts);
    la_tensor_contiguous(&ts.q, x, LA_DTYPE_F32, d, d, d, 256);
    ts.k = ts.q;
    la_tensor_contiguous(&ts.v, x, LA_DTYPE_F32, d, d, d, 256);
    la_tensor_contiguous(&ts.o, x + 2, LA_DTYPE_F32, d, d, d, 256);
    check_status(h, la_forward(h, &p, &ts), LA_STATUS_BAD_SHAPE, "forward of 2^66 tokens");
}

/* ---- 5. statuses ------------------------------------------------------------------- */

/* Empty tensors (N = 0) made by la_tensor_contiguous have zero strides above
 * the token dim; they used to be refused as self-overlapping outputs. */
static void test_empty_contiguous(la_handle_t *h) {
    const int B = 2, H = 3, D = 4, E = 2;
    tu_rng_t r;
    tu_rng_seed(&r, 14);
    float tok[1] = {0.5f}, ld[3] = {-0.1f, -0.2f, -0.3f};
    float *s0 = random_floats(&r, B * H * D * E), *sN = poisoned_floats(B * H * D * E);
    la_problem_t p = tu_problem(B, H, 0, D, E, LA_DECAY_SCALAR_HEAD);
    la_tensors_t t;
    la_tensors_init(&t);
    la_tensor_contiguous(&t.q, tok, LA_DTYPE_F32, B, H, 0, D);
    la_tensor_contiguous(&t.k, tok, LA_DTYPE_F32, B, H, 0, D);
    la_tensor_contiguous(&t.v, tok, LA_DTYPE_F32, B, H, 0, E);
    float out[1] = {0};
    la_tensor_contiguous(&t.o, out, LA_DTYPE_F32, B, H, 0, E);
    la_tensor_contiguous(&t.ld, ld, LA_DTYPE_F32, 1, H, 1, 1);
    la_tensor_contiguous(&t.initial_state, s0, LA_DTYPE_F32, B, H, D, E);
    la_tensor_contiguous(&t.final_state, sN, LA_DTYPE_F32, B, H, D, E);
    check_status(h, la_forward(h, &p, &t), LA_STATUS_SUCCESS, "forward N = 0, B = 2, H = 3 (contiguous)");
    check(memcmp(s0, sN, B * H * D * E * sizeof(float)) == 0, "N = 0: the final state is the initial state");
    free(s0);
    free(sN);
}

/* Decode in place with initial and final state views that differ only in
 * the stride of an extent-1 dim: the same tensor, so not an overlap. */
static void test_decode_in_place_extent1(la_handle_t *h) {
    const int H = 2, D = 3, E = 4;
    tu_rng_t r;
    tu_rng_seed(&r, 15);
    float *q = random_floats(&r, H * D), *k = random_floats(&r, H * D), *v = random_floats(&r, H * E);
    float *s = random_floats(&r, H * D * E), *s_copy = (float *)malloc(H * D * E * sizeof(float));
    memcpy(s_copy, s, H * D * E * sizeof(float));
    float *o = poisoned_floats(H * E), *o2 = poisoned_floats(H * E), *sN2 = poisoned_floats(H * D * E);
    la_problem_t p = tu_problem(1, H, 1, D, E, LA_DECAY_NONE);
    la_tensors_t t;
    la_tensors_init(&t);
    la_tensor_contiguous(&t.q, q, LA_DTYPE_F32, 1, H, 1, D);
    la_tensor_contiguous(&t.k, k, LA_DTYPE_F32, 1, H, 1, D);
    la_tensor_contiguous(&t.v, v, LA_DTYPE_F32, 1, H, 1, E);
    la_tensor_contiguous(&t.o, o2, LA_DTYPE_F32, 1, H, 1, E);
    la_tensor_contiguous(&t.initial_state, s_copy, LA_DTYPE_F32, 1, H, D, E);
    la_tensor_contiguous(&t.final_state, sN2, LA_DTYPE_F32, 1, H, D, E);
    check_status(h, la_decode(h, &p, &t), LA_STATUS_SUCCESS, "decode out of place");
    la_tensor_contiguous(&t.o, o, LA_DTYPE_F32, 1, H, 1, E);
    la_tensor_contiguous(&t.initial_state, s, LA_DTYPE_F32, 1, H, D, E);
    t.final_state = t.initial_state;
    t.final_state.stride[0] = 12345; /* batch: extent 1 */
    check_status(h, la_decode(h, &p, &t), LA_STATUS_SUCCESS, "decode in place, extent-1 strides differ");
    check(memcmp(o, o2, H * E * sizeof(float)) == 0 && memcmp(s, sN2, H * D * E * sizeof(float)) == 0,
          "decode in place equals decode out of place");
    free(q);
    free(k);
    free(v);
    free(s);
    free(s_copy);
    free(o);
    free(o2);
    free(sN2);
}

/* The size query checks a decode problem as la_decode does. */
static void test_decode_size_query(la_handle_t *h) {
    la_problem_t p = tu_problem(1, 2, 0, 8, 8, LA_DECAY_NONE);
    size_t bytes = 0;
    check_status(h, la_workspace_size(h, LA_OP_DECODE, &p, &bytes), LA_STATUS_BAD_SHAPE, "decode size, seqlen 0");
    p.seqlen = 3;
    check_status(h, la_workspace_size(h, LA_OP_DECODE, &p, &bytes), LA_STATUS_SUCCESS, "decode size, 3 tokens");
    const int64_t cu[2] = {0, 1};
    p.seqlen = 1;
    p.cu_seqlens = cu;
    p.num_seqs = 1;
    check_status(h, la_workspace_size(h, LA_OP_DECODE, &p, &bytes), LA_STATUS_BAD_SEQLENS, "decode size, cu_seqlens");
    p.cu_seqlens = NULL;
    p.num_seqs = 0;
    check_status(h, la_workspace_size(h, LA_OP_DECODE, &p, &bytes), LA_STATUS_SUCCESS, "decode size, valid");
}

/* One rule for the message: every call on a handle clears it when it starts,
 * so after a successful call la_last_error is "" whichever call it was. */
static void test_message_rule(la_handle_t *h) {
    la_problem_t p = tu_problem(1, 1, 4, 2, 2, LA_DECAY_NONE);
    la_tensors_t t;
    la_tensors_init(&t);
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, o[8];
    la_tensor_contiguous(&t.q, x, LA_DTYPE_F32, 1, 1, 4, 2);
    t.k = t.v = t.q;
    la_tensor_contiguous(&t.o, o, LA_DTYPE_F32, 1, 1, 4, 2);
    size_t bytes = 0;
    for (int i = 0; i < 6; i++) {
        la_problem_t bad = p;
        bad.seqlen = -1;
        check_status(h, la_forward(h, &bad, &t), LA_STATUS_BAD_SHAPE, "seqlen -1 (to leave a message)");
        la_status_t st = LA_STATUS_SUCCESS;
        const char *name = "";
        switch (i) {
        case 0:
            st = la_supports(h, LA_OP_FORWARD, &p, &t);
            name = "la_supports";
            break;
        case 1:
            st = la_workspace_size(h, LA_OP_FORWARD, &p, &bytes);
            name = "la_workspace_size";
            break;
        case 2:
            st = la_workspace_size_for(h, LA_OP_FORWARD, &p, &t, &bytes);
            name = "la_workspace_size_for";
            break;
        case 3:
            st = la_set_stream(h, NULL);
            name = "la_set_stream";
            break;
        case 4:
            st = la_set_num_threads(h, 0);
            name = "la_set_num_threads";
            break;
        default:
            st = la_forward(h, &p, &t);
            name = "la_forward";
            break;
        }
        char what[96];
        snprintf(what, sizeof what, "a successful %s clears la_last_error", name);
        check(st == LA_STATUS_SUCCESS && la_last_error(h)[0] == '\0', what);
    }
}

int main(void) {
    la_handle_t *h = NULL;
    if (la_create(&h, LA_BACKEND_CPU) != LA_STATUS_SUCCESS) {
        printf("FAIL: la_create\n");
        return 1;
    }
    test_huge_batch_backward(h);
    test_workspace_monotone(h);
    test_huge_seqlen(h);
    test_empty_decay_values(h);
    test_num_threads(h);
    test_packed_n1_garbage_stride(h);
    test_absurd_strides(h);
    test_contiguous_huge(h);
    test_empty_contiguous(h);
    test_decode_in_place_extent1(h);
    test_decode_size_query(h);
    test_message_rule(h);
    la_destroy(h);
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
