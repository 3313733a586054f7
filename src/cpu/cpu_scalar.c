/*
 * cpu_scalar.c - chunked CPU kernels of the scalar decay family
 * (LA_DECAY_NONE, LA_DECAY_SCALAR_HEAD, LA_DECAY_SCALAR_TOKEN).
 *
 * One call handles one (sequence, head).  The sequence is cut into chunks of
 * CH tokens (the last one may be ragged) and each chunk is done with a few
 * dense fp32 products (docs/MATH.md), with G_i the chunk-local inclusive
 * cumulative log decay: G does not increase, so every exponent below is <= 0
 * and nothing overflows (tiny decays only underflow to 0):
 *
 *   A  = (Q K^T) . Gamma,  Gamma_ij = exp(G_i - G_j) [i >= j]
 *   O  = A V + diag(exp(G_i)) Q S
 *   S' = exp(G_{n-1}) S + (diag(exp(G_{n-1} - G_j)) K)^T V
 *
 * Q carries the scale (q^ = scale q, applied on load; dq = scale dq^ on
 * store).  The backward walks the chunks last to first with
 *
 *   dA  = (dO V^T) . Gamma
 *   dQ  = dA K + diag(exp(G_i)) dO S^T
 *   dK  = dA^T Q + diag(exp(G_{n-1} - G_j)) V dS'^T
 *   dV  = A^T dO + diag(exp(G_{n-1} - G_j)) K dS'
 *   dS  = exp(G_{n-1}) dS' + (diag(exp(G_i)) Q)^T dO
 *
 * keeping S and dS transposed (so dO S^T and V dS'^T are plain products),
 * and the decay gradient in a cancellation-free chunk-local form (see
 * dgrad_t).  It needs every chunk's incoming state and recomputes them
 * forward before the walk (never by inverting a decay, which would divide by
 * numbers that underflow): all of them when they fit in STATE_CAP bytes,
 * otherwise one checkpoint every seg = ceil(sqrt(chunks)) chunks, each
 * segment recomputed from its checkpoint when the walk reaches it.
 *
 * Products with a causal (lower-triangular) chunk matrix are split into row
 * blocks of TB so the zero upper triangle is mostly skipped.
 *
 * Buffers: every tile is dense fp32 with its width padded to a multiple of
 * 16 (Dp, Ep) and zero padding, so the gemm may run over whole vectors; state
 * buffers keep their padding rows zero for the same reason.  All scratch
 * lives in the caller's workspace: about 4 CH Dp + 3 CH Ep + 3 CH^2 + 2 Dp Ep
 * floats, plus the backward's state slots, min(chunks, STATE_CAP / state) or
 * about 2 sqrt(chunks) of Dp Ep floats each (ws_carve, state_slots).  Nothing
 * is allocated, printed or kept between calls; every sum runs in a fixed
 * order, so results are bit-reproducible.
 */
#include "cpu_kernels.h"
#include "gemm.h"
#include "tile_io.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#ifndef LA_SCALAR_CHUNK
#define LA_SCALAR_CHUNK 64 /* overridable for experiments (dev/) */
#endif
#define CH LA_SCALAR_CHUNK           /* tokens per chunk (a multiple of 16) */
#define TB 16                        /* row block of the triangular products */
#define STATE_CAP ((size_t)32 << 20) /* bytes of stored states before checkpointing */

/* The element-wise loops below are compiled for AVX-512 and AVX2 as well as
 * the baseline, picked at load time (the library is built without -march). */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__GLIBC__) && !defined(LA_CPU_NO_IFUNC) /* ifunc needed */
#define SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SIMD_CLONES
#endif

/* Subnormal floats cost x86 a microcode assist per operation (measured: the
 * whole kernel 25x slower when exp(k ld) reaches the subnormal range, e.g.
 * SCALAR_HEAD ld = -1.5), and they are below anything fp32 results can
 * resolve here.  So the kernels run with flush-to-zero and
 * denormals-are-zero set for the calling thread, restoring its MXCSR on
 * return.  (AArch64 handles subnormals at full speed; nothing to do.) */
typedef struct fp_mode {
    unsigned saved;
} fp_mode_t;

static fp_mode_t fp_enter(void) {
    fp_mode_t m = {0};
#if defined(__x86_64__)
    m.saved = _mm_getcsr();
    _mm_setcsr(m.saved | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
#endif
    return m;
}

static void fp_leave(fp_mode_t m) {
#if defined(__x86_64__)
    _mm_setcsr(m.saved);
#else
    (void)m;
#endif
}

static int pad16(int x) { return (x + 15) / 16 * 16; }
static int imin(int a, int b) { return a < b ? a : b; }

/* ---- workspace ------------------------------------------------------------- */

/* The per-thread workspace, carved into 64-byte aligned pieces (the base is
 * 64-byte aligned and every piece is rounded up to 64 bytes).  The forward
 * uses the pieces up to `s`; `o` holds dO in the backward. */
typedef struct ws_layout {
    float *q, *k, *v, *o;      /* [CH, Dp] / [CH, Ep] tiles of the chunk */
    float *a, *da, *gam;       /* [CH, CH]: A, dA, Gamma */
    float *qf, *kf, *pw, *col; /* [CH + 16]: exp(G_i), exp(G_{n-1} - G_j),
                                    * exp(k ld) table (SCALAR_HEAD), one column */
    double *g;                 /* [CH]: G_i (SCALAR_TOKEN), then dg_r */
    double *gy, *gx, *gf;      /* [CH]: decay-gradient terms (dgrad_t) */
    float *s;                  /* [Dp, Ep] running state (forward) */
    float *dq, *dk, *dv;       /* backward tiles */
    float *ds;                 /* [Ep, Dp] dS^T, the state gradient (transposed) */
    float *states;             /* state slots of the backward */
} ws_layout_t;

static size_t state_floats(int D, int E) { return (size_t)pad16(D) * (size_t)pad16(E); }

/* Carves the buffers from base (NULL: just count); returns the bytes used
 * before the state slots. */
static size_t ws_carve(int D, int E, void *base, ws_layout_t *w) {
    size_t Dp = (size_t)pad16(D), Ep = (size_t)pad16(E), off = 0;
    char *b = (char *)base;
#define TAKE(field, type, count)                                \
    do {                                                        \
        w->field = base ? (type *)(void *)(b + off) : NULL;     \
        off += ((size_t)(count) * sizeof(type) + 63) / 64 * 64; \
    } while (0)
    TAKE(q, float, CH *Dp);
    TAKE(k, float, CH *Dp);
    TAKE(v, float, CH *Ep);
    TAKE(o, float, CH *Ep);
    TAKE(a, float, CH *CH);
    TAKE(da, float, CH *CH);
    TAKE(gam, float, CH *CH);
    TAKE(qf, float, CH + 16);
    TAKE(kf, float, CH + 16);
    TAKE(pw, float, CH + 16);
    TAKE(col, float, CH + 16);
    TAKE(g, double, CH);
    TAKE(gy, double, CH);
    TAKE(gx, double, CH);
    TAKE(gf, double, CH);
    TAKE(s, float, Dp *Ep);
    TAKE(dq, float, CH *Dp);
    TAKE(dk, float, CH *Dp);
    TAKE(dv, float, CH *Ep);
    TAKE(ds, float, Ep *Dp);
#undef TAKE
    w->states = base ? (float *)(void *)(b + off) : NULL;
    return off;
}

static int64_t n_chunks(int64_t len) { return (len + CH - 1) / CH; }

/* Most states stored whole: past this many chunks the backward checkpoints. */
static int64_t max_full_slots(int D, int E) { return (int64_t)(STATE_CAP / (state_floats(D, E) * sizeof(float))); }

/* Checkpoint interval for nc chunks: 0 = store every chunk's state, else
 * seg = ceil(sqrt(nc)). */
static int64_t ckpt_seg(int64_t nc, int D, int E) {
    if (nc <= max_full_slots(D, E)) return 0;
    int64_t seg = (int64_t)sqrt((double)nc);
    while (seg * seg < nc) seg++;
    while (seg > 1 && (seg - 1) * (seg - 1) >= nc) seg--;
    return seg;
}

/* State slots the backward of nc chunks uses: the nc incoming states, or
 * ceil(nc / seg) checkpoints plus the seg incoming states of one segment. */
static int64_t state_slots(int64_t nc, int D, int E) {
    int64_t seg = ckpt_seg(nc, D, E);
    if (seg == 0) return nc;
    return (nc + seg - 1) / seg + seg;
}

size_t cpu_scalar_workspace(int D, int E, int64_t max_len) {
    ws_layout_t w;
    size_t fixed = ws_carve(D, E, NULL, &w);
    /* Every sequence of at most max_len tokens must fit.  The slot count
     * grows with the chunk count except where checkpointing starts (it drops
     * from max_full_slots to about 2 sqrt(nc)), and ceil(nc / seg) + seg is
     * non-decreasing, so the largest is one of these two.  The full slots
     * are reserved as the whole STATE_CAP bytes: floor(STATE_CAP / slot)
     * slots would shrink as a slot grows, and the workspace must grow with
     * D and E (a workspace sized for a problem serves every smaller one). */
    int64_t nc = n_chunks(max_len), full = max_full_slots(D, E);
    int64_t slots = nc <= full ? nc : state_slots(nc, D, E);
    if (slots < 1) slots = 1;
    size_t states = (size_t)slots * state_floats(D, E) * sizeof(float);
    if (nc > full && states < STATE_CAP) states = STATE_CAP;
    return fixed + states;
}

/* ---- small helpers ----------------------------------------------------------- */

/* x[r, :] *= f[r] for r < rows (width floats per row). */
SIMD_CLONES static void scale_rows(float *x, int ld, int rows, int width, const float *f) {
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * ld;
        float fr = f[r];
        for (int c = 0; c < width; c++) row[c] *= fr;
    }
}

SIMD_CLONES static void scale_all(float *x, size_t count, float f) {
    for (size_t i = 0; i < count; i++) x[i] *= f;
}

/* dst = f src (one pass instead of a copy and a scale). */
SIMD_CLONES static void scale_copy(float *restrict dst, const float *restrict src, size_t count, float f) {
    for (size_t i = 0; i < count; i++) dst[i] = f * src[i];
}

/* Loads the chunk's q as q^ = scale q (padding columns zero). */
static void load_q(const cpu_seq_t *s, int64_t t0, int n, float *dst) {
    int Dp = pad16(s->D);
    cpu_load_tile(&s->q, t0, n, s->D, dst, Dp);
    if (s->scale != 1.0f) scale_all(dst, (size_t)n * Dp, s->scale);
}

/* Dense state buffer [Dp, Ep] from an optional strided state (absent = 0);
 * rows D..Dp-1 are zeroed for the whole-vector products. */
static void load_state_padded(const cpu_state_view_t *sv, int D, int E, float *dst) {
    int Dp = pad16(D), Ep = pad16(E);
    cpu_load_state(sv, D, E, dst, Ep);
    memset(dst + (size_t)D * Ep, 0, (size_t)(Dp - D) * Ep * sizeof(float));
}

/* ---- decay factors of one chunk ------------------------------------------------- */

/* Gamma for the kinds whose Gamma is the same in every chunk (NONE,
 * SCALAR_HEAD): Gamma_ij = exp((i - j) ld) = pw[i - j]. */
static void gamma_from_table(const float *pw, float *gam) {
    for (int i = 0; i < CH; i++)
        for (int j = 0; j <= i; j++) gam[i * CH + j] = pw[i - j];
}

/* pw[k] = exp(k ld) for k = 0..CH (rounded once from double). */
static void power_table(const cpu_seq_t *s, float *pw) {
    double ld = s->kind == LA_DECAY_SCALAR_HEAD ? (double)s->ld_head : 0.0;
    for (int k = 0; k <= CH; k++) pw[k] = (float)exp((double)k * ld);
}

/* exp(x) for x <= 0 in plain float arithmetic, so a loop over it
 * vectorises (libm's expf is a call per element): Cody-Waite reduction
 * x = n ln2 + r, |r| <= ln2 / 2, and the Cephes polynomial (relative error
 * about 1e-7); results below the smallest normal float flush to 0. */
static inline float exp_nonpos(float x) {
    float xc = x < -88.0f ? -88.0f : x;
    float n = (xc * 1.44269504f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = xc - n * 0.693359375f - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23; /* 2^n; n >= -127 */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < -87.3f ? 0.0f : p * scale;
}

/* Gamma_ij = exp(G_i - G_j) for j <= i < n (SCALAR_TOKEN). */
SIMD_CLONES static void gamma_from_cumsum(const double *G, int n, float *gam) {
    for (int i = 0; i < n; i++) {
        float *row = gam + i * CH;
        for (int j = 0; j <= i; j++) row[j] = exp_nonpos((float)(G[i] - G[j]));
    }
}

/* Fills qf[i] = exp(G_i), kf[j] = exp(G_{n-1} - G_j) for the chunk of n tokens
 * at t0, and Gamma when want_gamma and the kind is SCALAR_TOKEN (the other
 * kinds' Gamma is built once per call).  Returns exp(G_{n-1}).  G is summed
 * in double, so the differences G_i - G_j (<= 0, as G does not increase) keep
 * their accuracy even when G itself is large. */
static float chunk_decay(const cpu_seq_t *s, const ws_layout_t *w, int64_t t0, int n, int want_gamma) {
    if (s->kind != LA_DECAY_SCALAR_TOKEN) {
        for (int i = 0; i < n; i++) {
            w->qf[i] = w->pw[i + 1];
            w->kf[i] = w->pw[n - 1 - i];
        }
        return w->pw[n];
    }
    double *G = w->g;
    cpu_load_col(&s->ld, t0, n, w->col);
    double acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += (double)w->col[i];
        G[i] = acc;
    }
    for (int i = 0; i < n; i++) {
        w->qf[i] = (float)exp(G[i]);
        w->kf[i] = (float)exp(G[n - 1] - G[i]);
    }
    if (want_gamma) gamma_from_cumsum(G, n, w->gam);
    return (float)exp(G[n - 1]);
}

/* A[i, j] *= Gamma_ij for j <= i; 0 above the diagonal (rows and columns < n). */
SIMD_CLONES static void apply_gamma(float *A, const float *gam, int n) {
    for (int i = 0; i < n; i++) {
        float *row = A + i * CH;
        const float *g = gam + i * CH;
        for (int j = 0; j <= i; j++) row[j] *= g[j];
        for (int j = i + 1; j < n; j++) row[j] = 0.0f;
    }
}

/* ---- triangular products ----------------------------------------------------------- */

/* A[i, j] = x_i . y_j for j below the end of i's row block (the rest of the
 * lower triangle and a little of the upper; apply_gamma clears the upper). */
static void tri_xyt(int n, int K, const float *X, int ldx, const float *Y, int ldy, float *A) {
    for (int r0 = 0; r0 < n; r0 += TB) {
        int rows = imin(TB, n - r0);
        cpu_gemm_nt(rows, r0 + rows, K, X + (size_t)r0 * ldx, ldx, Y, ldy, A + r0 * CH, CH, 0);
    }
}

/* Out[i, :] += sum_{j <= i} A[i, j] Y[j, :]  (A lower triangular). */
static void tri_ay(int n, int N, const float *A, const float *Y, int ldy, float *Out, int ldo) {
    for (int r0 = 0; r0 < n; r0 += TB) {
        int rows = imin(TB, n - r0);
        cpu_gemm_nn(rows, N, r0 + rows, A + r0 * CH, CH, Y, ldy, Out + (size_t)r0 * ldo, ldo, 1);
    }
}

/* Out[j, :] += sum_{i >= j} A[i, j] Y[i, :]  (A^T Y with A lower triangular). */
static void tri_aty(int n, int N, const float *A, const float *Y, int ldy, float *Out, int ldo) {
    for (int r0 = 0; r0 < n; r0 += TB) {
        int rows = imin(TB, n - r0);
        cpu_gemm_tn(rows, N, n - r0, A + r0 * CH + r0, CH, Y + (size_t)r0 * ldy, ldy, Out + (size_t)r0 * ldo, ldo, 1);
    }
}

/* ---- state recurrence ---------------------------------------------------------------- */

/* The forward's state step, in place: S = sf S + (diag(kf) K)^T V over the
 * chunk's n tokens (K is scaled in place). */
static void state_step(const cpu_seq_t *s, const ws_layout_t *w, int n, float sf, float *S) {
    int D = s->D, Dp = pad16(D), Ep = pad16(s->E);
    if (sf != 1.0f) scale_all(S, (size_t)D * Ep, sf);
    scale_rows(w->k, Dp, n, Dp, w->kf);
    cpu_gemm_tn(D, Ep, n, w->k, Dp, w->v, Ep, S, Ep, 1);
}

/* The backward stores its states transposed, S^T [Ep, Dp] (rows E..Ep-1
 * zero): its one use of S is dQ^inter = dO S^T, a plain nn product with S^T
 * at hand, where S itself would need a transpose in every chunk. */
static void load_state_t(const cpu_state_view_t *sv, int D, int E, float *dst) {
    int Dp = pad16(D), Ep = pad16(E);
    cpu_state_view_t t = {sv->ptr, sv->se, sv->sd}; /* [E, D] view of the same state */
    cpu_load_state(&t, E, D, dst, Dp);
    memset(dst + (size_t)E * Dp, 0, (size_t)(Ep - E) * Dp * sizeof(float));
}

/* Loads k, v of a chunk and advances a transposed state through it:
 * S^T_out = sf S^T_in + V^T diag(kf) K.  ST_in == ST_out is allowed. */
static void state_chunk_t(const cpu_seq_t *s, const ws_layout_t *w, int64_t t0, int n, const float *ST_in,
                          float *ST_out) {
    int D = s->D, E = s->E, Dp = pad16(D), Ep = pad16(E);
    float sf = chunk_decay(s, w, t0, n, 0);
    cpu_load_tile(&s->k, t0, n, D, w->k, Dp);
    cpu_load_tile(&s->v, t0, n, E, w->v, Ep);
    if (ST_out != ST_in) scale_copy(ST_out, ST_in, (size_t)Ep * Dp, sf);
    else if (sf != 1.0f) scale_all(ST_out, (size_t)E * Dp, sf);
    scale_rows(w->k, Dp, n, Dp, w->kf);
    cpu_gemm_tn(E, Dp, n, w->v, Ep, w->k, Dp, ST_out, Dp, 1);
}

/* ---- forward ----------------------------------------------------------------------------- */

/* One chunk: o (when wanted) from the incoming state S, then S advanced in place. */
static void forward_chunk(const cpu_seq_t *s, const ws_layout_t *w, int64_t t0, int n) {
    int D = s->D, E = s->E, Dp = pad16(D), Ep = pad16(E);
    float sf = chunk_decay(s, w, t0, n, s->o.ptr != NULL);
    cpu_load_tile(&s->k, t0, n, D, w->k, Dp);
    cpu_load_tile(&s->v, t0, n, E, w->v, Ep);
    if (s->o.ptr) {
        load_q(s, t0, n, w->q);
        tri_xyt(n, D, w->q, Dp, w->k, Dp, w->a);
        apply_gamma(w->a, w->gam, n);
        scale_rows(w->q, Dp, n, Dp, w->qf);
        cpu_gemm_nn(n, Ep, D, w->q, Dp, w->s, Ep, w->o, Ep, 0);
        tri_ay(n, Ep, w->a, w->v, Ep, w->o, Ep);
        cpu_store_tile(&s->o, t0, n, E, w->o, Ep);
    }
    state_step(s, w, n, sf, w->s);
}

void cpu_scalar_forward(const cpu_seq_t *s, void *ws) {
    fp_mode_t fp = fp_enter();
    ws_layout_t w;
    ws_carve(s->D, s->E, ws, &w);
    load_state_padded(&s->s0, s->D, s->E, w.s);
    power_table(s, w.pw);
    if (s->kind != LA_DECAY_SCALAR_TOKEN) gamma_from_table(w.pw, w.gam);
    for (int64_t t0 = 0; t0 < s->len; t0 += CH) forward_chunk(s, &w, t0, (int)(s->len - t0 < CH ? s->len - t0 : CH));
    if (s->sN.ptr) cpu_store_state(&s->sN, s->D, s->E, w.s, pad16(s->E));
    fp_leave(fp);
}

/* ---- backward ------------------------------------------------------------------------------ */

/* x . y in double: eight partial sums in a fixed order (so it vectorises
 * without reassociation and stays reproducible), then combined. */
SIMD_CLONES static double dot_d(const float *x, const float *y, size_t n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += (double)x[i + j] * (double)y[i + j];
    for (; i < n; i++) acc[i % 8] += (double)x[i] * (double)y[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* Row dot products out[t] = x_t . y_t over the first `width` columns. */
static void row_dots(const float *x, const float *y, int ld, int rows, int width, double *out) {
    for (int t = 0; t < rows; t++) out[t] = dot_d(x + (size_t)t * ld, y + (size_t)t * ld, (size_t)width);
}

/* The decay gradient of one chunk.  A log decay g_r multiplies exactly the
 * pairs (t, m) with m < r <= t, so, with every term a genuine contribution
 * (no difference of large sums, hence no cancellation even at strong decay):
 *
 *   dg_r =  sum_{t >= r} q^_t . dq^inter_t          pairs from earlier chunks to t
 *         + sum_{i >= r > j} A_ij P_ij              pairs inside the chunk, P = dO V^T
 *         + exp(G_{n-1}) <S, dS'>                   earlier chunks to later chunks
 *         + sum_{m < r} k_m . dk^inter_m            the chunk's keys to later chunks
 *
 * (dq^inter = diag(exp(G_i)) dO S^T and dk^inter = diag(exp(G_{n-1} - G_j)) V dS'^T
 * are the state parts of dq^ and dk).  This rearranges docs/MATH.md's
 * sum_{t >= r} (q_t . dq_t - k_t . dk_t) + <S', dS'>, whose diagonal (i = j)
 * and state terms cancel in pairs.  Buffers: dg->y, dg->x hold the two row
 * dot products, dg->f the pair sums; all in double. */
typedef struct dgrad {
    double *y, *x, *f; /* [CH] each */
    double carried;    /* exp(G_{n-1}) <S, dS'> */
} dgrad_t;

/* f[r] = sum_{i >= r} sum_{j < r} A_ij P_ij over the strict lower triangle. */
static void pair_sums(const float *A, const float *P, int n, double *f) {
    for (int r = 0; r < n; r++) f[r] = 0.0;
    for (int i = 1; i < n; i++) {
        double pre = 0.0; /* sum_{j < r} A_ij P_ij */
        for (int r = 1; r <= i; r++) {
            pre += (double)A[i * CH + r - 1] * (double)P[i * CH + r - 1];
            f[r] += pre;
        }
    }
}

/* Combines the terms: SCALAR_TOKEN stores dg_r, SCALAR_HEAD adds sum_r dg_r. */
static void decay_grad_finish(const cpu_seq_t *s, const ws_layout_t *w, const dgrad_t *dg, int64_t t0, int n,
                              double *head_acc) {
    double *dgr = w->g; /* G is no longer needed */
    double suffix = 0.0, prefix = 0.0;
    for (int r = n - 1; r >= 0; r--) {
        suffix += dg->y[r];
        dgr[r] = suffix + dg->f[r] + dg->carried;
    }
    for (int r = 0; r < n; r++) {
        dgr[r] += prefix;
        prefix += dg->x[r];
    }
    if (s->kind == LA_DECAY_SCALAR_HEAD) {
        double sum = 0.0;
        for (int r = 0; r < n; r++) sum += dgr[r];
        *head_acc += sum;
        return;
    }
    for (int r = 0; r < n; r++) w->col[r] = (float)dgr[r];
    cpu_store_col(&s->d_ld, t0, n, w->col);
}

/* One chunk of the backward.  The backward works on transposed states (see
 * load_state_t): ST_in is S^T of the chunk's incoming state, and w->ds holds
 * dS'^T (the gradient of the outgoing state) on entry and dS^T (of the
 * incoming state) on return.  want_dg: compute the decay gradient (into d_ld
 * or *head_acc). */
static void backward_chunk(const cpu_seq_t *s, const ws_layout_t *w, int64_t t0, int n, const float *ST_in, int want_dg,
                           double *head_acc) {
    int D = s->D, E = s->E, Dp = pad16(D), Ep = pad16(E);
    int has_do = s->d_o.ptr != NULL;
    dgrad_t dg = {w->gy, w->gx, w->gf, 0.0};
    float sf = chunk_decay(s, w, t0, n, has_do);
    cpu_load_tile(&s->k, t0, n, D, w->k, Dp);
    cpu_load_tile(&s->v, t0, n, E, w->v, Ep);
    if (want_dg) {
        dg.carried = (double)sf * dot_d(ST_in, w->ds, (size_t)E * Dp);
        for (int r = 0; r < n; r++) dg.y[r] = dg.f[r] = 0.0;
    }

    /* State path: dK = diag(kf) V dS'^T, dV = diag(kf) K dS'. */
    cpu_gemm_nn(n, Dp, E, w->v, Ep, w->ds, Dp, w->dk, Dp, 0);
    cpu_gemm_nt(n, Ep, D, w->k, Dp, w->ds, Dp, w->dv, Ep, 0);
    scale_rows(w->dk, Dp, n, Dp, w->kf);
    scale_rows(w->dv, Ep, n, Ep, w->kf);
    if (want_dg) row_dots(w->k, w->dk, Dp, n, D, dg.x);

    if (has_do) {
        load_q(s, t0, n, w->q);
        cpu_load_tile(&s->d_o, t0, n, E, w->o, Ep);
        tri_xyt(n, D, w->q, Dp, w->k, Dp, w->a);
        apply_gamma(w->a, w->gam, n);
        tri_xyt(n, E, w->o, Ep, w->v, Ep, w->da); /* P = dO V^T */
        if (want_dg) pair_sums(w->a, w->da, n, dg.f);
        apply_gamma(w->da, w->gam, n); /* dA = P . Gamma */
        /* dQ = diag(qf) dO S^T + dA K */
        cpu_gemm_nn(n, Dp, E, w->o, Ep, ST_in, Dp, w->dq, Dp, 0);
        scale_rows(w->dq, Dp, n, Dp, w->qf);
        if (want_dg) row_dots(w->q, w->dq, Dp, n, D, dg.y);
        tri_ay(n, Dp, w->da, w->k, Dp, w->dq, Dp);
        /* dK += dA^T Q,  dV += A^T dO */
        tri_aty(n, Dp, w->da, w->q, Dp, w->dk, Dp);
        tri_aty(n, Ep, w->a, w->o, Ep, w->dv, Ep);
    }
    if (want_dg) decay_grad_finish(s, w, &dg, t0, n, head_acc);

    if (s->dk.ptr) cpu_store_tile(&s->dk, t0, n, D, w->dk, Dp);
    if (s->dv.ptr) cpu_store_tile(&s->dv, t0, n, E, w->dv, Ep);
    if (has_do && s->dq.ptr) {
        if (s->scale != 1.0f) scale_all(w->dq, (size_t)n * Dp, s->scale);
        cpu_store_tile(&s->dq, t0, n, D, w->dq, Dp);
    }

    /* dS^T = sf dS'^T + dO^T diag(qf) Q */
    if (sf != 1.0f) scale_all(w->ds, (size_t)E * Dp, sf);
    if (has_do) {
        scale_rows(w->q, Dp, n, Dp, w->qf);
        cpu_gemm_tn(E, Dp, n, w->o, Ep, w->q, Dp, w->ds, Dp, 1);
    }
}

/* Where the backward finds the state entering each chunk: either all of them
 * (slot c), or checkpoints (slot k holds chunk k*seg's incoming state,
 * k < nck) followed by seg slots holding the current segment's states. */
typedef struct state_store {
    float *slots;
    size_t stride; /* floats per slot */
    int64_t nc, seg, nck;
    int64_t loaded; /* segment now in the segment slots, -1 = none */
} state_store_t;

static float *slot(const state_store_t *st, int64_t i) { return st->slots + (size_t)i * st->stride; }

static int chunk_len(const cpu_seq_t *s, int64_t c) {
    int64_t left = s->len - c * CH;
    return (int)(left < CH ? left : CH);
}

/* The forward sweep over states before the walk (the last chunk's outgoing
 * state is never needed). */
static void store_states(const cpu_seq_t *s, const ws_layout_t *w, state_store_t *st) {
    if (st->seg == 0) {
        load_state_t(&s->s0, s->D, s->E, slot(st, 0));
        for (int64_t c = 0; c + 1 < st->nc; c++)
            state_chunk_t(s, w, c * CH, chunk_len(s, c), slot(st, c), slot(st, c + 1));
        return;
    }
    float *run = slot(st, st->nck); /* first segment slot as the running state */
    load_state_t(&s->s0, s->D, s->E, run);
    for (int64_t c = 0; c < st->nc; c++) {
        if (c % st->seg == 0) memcpy(slot(st, c / st->seg), run, st->stride * sizeof(float));
        if (c + 1 < st->nc) state_chunk_t(s, w, c * CH, chunk_len(s, c), run, run);
    }
    st->loaded = -1;
}

/* The state entering chunk c. */
static const float *chunk_state(const cpu_seq_t *s, const ws_layout_t *w, state_store_t *st, int64_t c) {
    if (st->seg == 0) return slot(st, c);
    int64_t k = c / st->seg, first = k * st->seg;
    if (st->loaded != k) {
        /* Recompute the segment's incoming states from its checkpoint. */
        int64_t last = first + st->seg < st->nc ? first + st->seg : st->nc;
        memcpy(slot(st, st->nck), slot(st, k), st->stride * sizeof(float));
        for (int64_t j = first; j + 1 < last; j++)
            state_chunk_t(s, w, j * CH, chunk_len(s, j), slot(st, st->nck + j - first),
                          slot(st, st->nck + j - first + 1));
        st->loaded = k;
    }
    return slot(st, st->nck + c - first);
}

void cpu_scalar_backward(const cpu_seq_t *s, void *ws) {
    fp_mode_t fp = fp_enter();
    ws_layout_t w;
    ws_carve(s->D, s->E, ws, &w);
    int D = s->D, E = s->E;
    double dld_head = 0.0;
    int want_dg = s->kind == LA_DECAY_SCALAR_TOKEN ? s->d_ld.ptr != NULL
                                                   : s->kind == LA_DECAY_SCALAR_HEAD && s->d_ld_head != NULL;
    load_state_t(&s->dsN, D, E, w.ds);
    power_table(s, w.pw);
    if (s->kind != LA_DECAY_SCALAR_TOKEN) gamma_from_table(w.pw, w.gam);

    state_store_t st;
    st.slots = w.states;
    st.stride = state_floats(D, E);
    st.nc = n_chunks(s->len);
    st.seg = ckpt_seg(st.nc, D, E);
    st.nck = st.seg ? (st.nc + st.seg - 1) / st.seg : 0;
    st.loaded = -1;
    if (st.nc > 0) store_states(s, &w, &st);

    for (int64_t c = st.nc - 1; c >= 0; c--) {
        const float *ST_in = chunk_state(s, &w, &st, c);
        backward_chunk(s, &w, c * CH, chunk_len(s, c), ST_in, want_dg, &dld_head);
    }
    if (s->ds0.ptr) {
        cpu_state_view_t t = {s->ds0.ptr, s->ds0.se, s->ds0.sd}; /* store dS^T as dS */
        cpu_store_state(&t, E, D, w.ds, pad16(D));
    }
    if (s->kind == LA_DECAY_SCALAR_HEAD && s->d_ld_head) *s->d_ld_head = dld_head;
    fp_leave(fp);
}
