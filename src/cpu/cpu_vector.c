/*
 * cpu_vector.c - chunked CPU kernels of the vector decay family, one
 * (sequence, head) per call (see cpu_kernels.h):
 *
 *   LA_DECAY_VECTOR_K    S_t = diag(exp(gk_t)) S_{t-1} + k_t^T v_t          (GLA)
 *   LA_DECAY_VECTOR_KV   S_t = diag(exp(gk_t)) S_{t-1} diag(exp(gv_t)) + k_t^T v_t
 *   o_t = scale q_t S_t;  gk_t: s->ld [len, D], gv_t: s->ldv [len, E], all <= 0.
 *
 * Chunks of VC = 64 tokens cut into sub-chunks of VSB = 16 (docs/MATH.md);
 * 16 measured faster than 8 or 32 (diagonal-block work against anchoring).
 *
 * Decay factors.  Never a difference of long prefix sums and never a
 * division.  For each sub-chunk I (tokens s_I .. e_I) and each side (key
 * channels d, value channels e) the chunk preparation keeps
 *
 *   exp(g_r)                                     one token's decay
 *   exp(L_i), L_i = sum_{r = s_I .. i} g_r       decay from the anchor a_I = s_I - 1 to i
 *   exp(R_j), R_j = sum_{r = j+1 .. e_J} g_r     decay from j to the end of its sub-chunk
 *   T_M = sum_{r in sub-chunk M} g_r             a whole sub-chunk (log domain)
 *
 * (exp(L), exp(R) as running products of exp(g_r)).  Every factor the math
 * needs is a product of these and of exp(a sum of T's):
 *
 *   exp(G_i - G_a_I)        = exp(L_i)                                   query side
 *   exp(G_a_I - G_j), j<s_I = exp(R_j) exp(sum_{J<M<I} T_M)              key side
 *   exp(G_i)  (chunk head)  = exp(L_i) exp(sum_{M<I} T_M)                inter-chunk output
 *   exp(G_L - G_j)          = exp(R_j) exp(sum_{M>J} T_M)                state update
 *   exp(G_L)                = exp(sum_M T_M)                             state decay
 *
 * with G the chunk-local inclusive cumulative log decay and L the chunk's
 * last row.  Every exponent is a sum of log decays, so it is <= 0 for any
 * valid input (gates of -30 per token, -1e30 or -inf included) and carries no
 * cancellation: values only underflow, never overflow, and no inf - inf or
 * 0 * inf can appear.  exp_le0 returns 0 below e^-86.
 *
 * Off-diagonal sub-chunk blocks (query sub-chunk I > key sub-chunk J) are
 * plain products of anchored operands, A_IJ = (q_I . exp(L)) (k_J . exp(G_a -
 * G_j))^T, done by cpu_gemm_*, as are the inter-chunk terms.  Diagonal blocks
 * (16 x 16) use exact per-(i, j, channel) factors F_ij = prod_{r=j+1..i}
 * exp(g_r) (see diag_forward).  With value-side decay the diagonal output
 * sum_j A_ij v_j . Fv_ij uses exact per-(i, j, e) factors too, rather than a
 * short in-sub-chunk recurrence: the factors cost O(VSB (D + E)) per token,
 * a recurrence O(D E) per token (a state decay, an outer product and a q.S
 * product per token, i.e. as much again as the whole chunked algorithm), and
 * a factor's error does not compound through a carried state.
 *
 * Backward: walks chunks last to first with the incoming state of every chunk
 * recomputed by a forward state pass (all states stored when they fit in
 * VSTORE_ALL_BYTES, else checkpoints every ~sqrt(#chunks) chunks and one
 * segment recomputed at a time; decays are never inverted).  Off-diagonal dk,
 * dv use the key sub-chunk's end as anchor (q_I . exp(G_i - G_e_J)), dq the
 * query sub-chunk's anchor, so again every exponent is <= 0.  Decay gradients
 * are the chunk-local ones of docs/MATH.md, rearranged so that nothing
 * cancels even at strong decay (decay_grad), summed in double per chunk.
 *
 * Buffers: dense fp32 row-major tiles carved from the caller's workspace
 * (64-byte aligned), widths padded to Dp, Ep = multiples of LA_CPU_NPAD with
 * zero padding (tile_io zero-fills; padded log decays are 0, so padded
 * factors are 1 times zero data).  Deterministic: fixed loop orders, no
 * threads inside a call, identical results from every clone (LA_CLONES).
 * No allocation, no globals, no output besides the views of the cpu_seq_t;
 * the thread's MXCSR is changed during a call and restored (fp_enter).
 */
#include <stdint.h>
#include <string.h>

#include "cpu_kernels.h"
#include "gemm.h"
#include "tile_io.h"

#if defined(__x86_64__) || defined(__SSE2__)
#include <xmmintrin.h>
#define LA_HAVE_MXCSR 1
#endif

#define VC 64  /* chunk length */
#define VSB 16 /* sub-chunk length */
/* Per thread: the backward stores every chunk's state up to this many bytes,
 * else checkpoints (overridable at build time so tests can force checkpoints). */
#ifndef LA_VECTOR_STORE_ALL_BYTES
#define LA_VECTOR_STORE_ALL_BYTES ((size_t)32 << 20)
#endif
#define VSTORE_ALL_BYTES ((size_t)(LA_VECTOR_STORE_ALL_BYTES))

/* ---- small vector helpers --------------------------------------------------- */

/* exp(x) for x <= 0: Cephes expf reduction and polynomial (max error 1.4 ulp
 * over [-86, 0], measured).  |x| > 86 (so -inf too) gives exactly 0, which
 * keeps the 2^n scale a normal float and no denormal is ever produced.  The
 * clamp is done on the bits, not with a float compare: with GCC's default
 * -ftrapping-math a compare is a possible trap and blocks vectorisation of
 * every loop calling this. */
static inline float exp_le0(float x) {
    uint32_t ux;
    memcpy(&ux, &x, sizeof ux);
    const uint32_t clamp = 0u - (uint32_t)((ux & 0x7fffffffu) > 0x42ac0000u); /* |x| > 86 */
    const uint32_t uc = (ux & ~clamp) | (0xc2ac0000u & clamp);                /* -> -86 */
    float xc;
    memcpy(&xc, &uc, sizeof xc);
    float nf = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = xc - nf * 0.693359375f;
    r = r + nf * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const uint32_t bits = ((uint32_t)((int32_t)nf + 127) << 23) & ~clamp; /* nf in [-124, 0] */
    float two_n;
    memcpy(&two_n, &bits, sizeof two_n);
    return p * two_n;
}

static void exp_inplace(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = exp_le0(x[i]);
}

/* y = a . b (element-wise), n elements */
static void vmul(float *restrict y, const float *restrict a, const float *restrict b, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] * b[i];
}

/* y = a . b */
static void vmul_inplace(float *restrict y, const float *restrict b, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] *= b[i];
}

/* y += a . b */
static void vfma(float *restrict y, const float *restrict a, const float *restrict b, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a[i] * b[i];
}

/* y += s a */
static void vaxpy(float *restrict y, float s, const float *restrict a, int n) {
    for (int i = 0; i < n; i++) y[i] += s * a[i];
}

/* y += s a . b */
static void vaxpy2(float *restrict y, float s, const float *restrict a, const float *restrict b, int n) {
    for (int i = 0; i < n; i++) y[i] += s * (a[i] * b[i]);
}

/* rows x w tile: y[r][c] = a[r][c] . f[c] (f one vector for all rows) */
static void mul_rows_vec(float *restrict y, const float *restrict a, const float *restrict f, int rows, int w) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < w; c++) y[(int64_t)r * w + c] = a[(int64_t)r * w + c] * f[c];
}

/* Dot products over padded widths (n a multiple of 16): 16 partial sums, so
 * the loop vectorises without reassociation flags and the order is fixed. */
static float dot2(const float *restrict a, const float *restrict b, int n) {
    float acc[16] = {0};
    for (int i = 0; i < n; i += 16)
        for (int l = 0; l < 16; l++) acc[l] += a[i + l] * b[i + l];
    float s = 0.0f;
    for (int l = 0; l < 16; l++) s += acc[l];
    return s;
}

static float dot3(const float *restrict a, const float *restrict b, const float *restrict c, int n) {
    float acc[16] = {0};
    for (int i = 0; i < n; i += 16)
        for (int l = 0; l < 16; l++) acc[l] += a[i + l] * (b[i + l] * c[i + l]);
    float s = 0.0f;
    for (int l = 0; l < 16; l++) s += acc[l];
    return s;
}

/* Strong decays on both sides make state entries and products fall below
 * 2^-126 all the time (exp(Gk_L) exp(Gv_L) is ~1e-44 for two mild gates of
 * -0.8 over a 64-token chunk), and denormal operands cost x86 ~100 cycles
 * each: the VECTOR_KV kernels ran 5x slower on them.  So the kernels run
 * with flush-to-zero and denormals-are-zero set in this thread's MXCSR and
 * restore the caller's value before returning (nothing global; the absolute
 * error is < 1.2e-38 per operation). */
static unsigned int fp_enter(void) {
#ifdef LA_HAVE_MXCSR
    unsigned int old = _mm_getcsr();
    _mm_setcsr(old | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
    return old;
#else
    return 0;
#endif
}

static void fp_leave(unsigned int old) {
#ifdef LA_HAVE_MXCSR
    _mm_setcsr(old);
#else
    (void)old;
#endif
}

/* The element-wise parts (decay factors, diagonal blocks) are compiled for
 * AVX-512 and AVX2 as well as the baseline and picked at load time (GCC
 * target_clones, ELF ifunc).  Results are identical across the clones: ISO C
 * mode does not contract a * b + c into FMAs, and the dot products keep 16
 * fixed partial sums whatever the vector width. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__ELF__) && !defined(LA_CPU_NO_IFUNC)
#define LA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define LA_CLONES
#endif

static int pad16(int x) { return (x + LA_CPU_NPAD - 1) / LA_CPU_NPAD * LA_CPU_NPAD; }

/* ---- workspace ---------------------------------------------------------------- */

/* One decay side of a chunk: keys (width Dp) or values (width Ep). */
typedef struct vside {
    int w;      /* padded width */
    float *g;   /* [VC][w] the chunk's log decays (0 in the padding) */
    float *el;  /* [VC][w] exp(L_i) */
    float *er;  /* [VC][w] exp(R_j) */
    float *t;   /* [VC/VSB][w] T_M (log) */
    float *fac; /* [w] exp of a sum of T's (scratch) */
    float *eg;  /* [VC][w] exp(g_r): one token's decay */
    float *f;   /* [w] running factor F_ij on diagonal blocks (scratch) */
    float *xf;  /* [w] an operand times F_ij (scratch) */
} vside_t;

typedef struct vctx {
    const cpu_seq_t *s;
    int D, E, Dp, Ep, has_v;
    int64_t t0;  /* first token of the current chunk */
    int n, nsub; /* its tokens and sub-chunks */
    vside_t ks, vs;
    float *q, *k, *v, *dO;   /* chunk tiles; q carries scale */
    float *qt;               /* q_i . exp(L_i): queries relative to their anchor */
    float *kloc, *vloc;      /* k_j . exp(R_j), v_j . exp(Rv_j) */
    float *egk, *egv;        /* exp(G_i) */
    float *qe, *dOe, *dOt;   /* q . exp(G), dO . exp(Gv), dO . exp(Lv) */
    float *ekl, *evl;        /* exp(G_L - G_j) */
    float *kl, *vl;          /* k . ekl, v . evl: the state-update operands */
    float *kt, *vt;          /* keys / values relative to a query anchor (rows < s_I) */
    float *qh, *dOh;         /* queries / dO relative to a key anchor (rows > e_J) */
    float *A, *dA;           /* [VC][VC] off-diagonal sub-chunk blocks of A and dA */
    float *o, *dq, *dk, *dv; /* chunk results, fp32; in the backward o, dq, dk, dv
                                * first hold everything but the self terms (see decay_grad) */
    float *dkx, *dvx;        /* dk, dv through the outgoing state (later chunks) */
    float *self_a, *self_da; /* [VC] A_ii = q_i . k_i and dA_ii = dO_i . v_i */
    float *tmp;              /* [VC][max(Dp, Ep)] */
    double *acc;             /* [max(Dp, Ep)] decay-gradient running sums */
    double *psi_k, *psi_v;   /* [Dp], [Ep] incoming-state terms of the decay gradients */
    double *suf;             /* [VC][max(Dp, Ep)] decay-gradient suffix sums */
    float *S, *dS;           /* [Dp][Ep] running state, state gradient */
    float *states;           /* state slots for the backward */
} vctx_t;

static float *take(char *base, size_t *off, size_t nfloats) {
    size_t at = *off;
    *off += (nfloats * sizeof(float) + 63) & ~(size_t)63;
    return base ? (float *)(void *)(base + at) : NULL;
}

static void carve_side(vside_t *sd, char *base, size_t *off, int w) {
    sd->w = w;
    sd->g = take(base, off, (size_t)VC * w);
    sd->el = take(base, off, (size_t)VC * w);
    sd->er = take(base, off, (size_t)VC * w);
    sd->t = take(base, off, (size_t)(VC / VSB) * w);
    sd->fac = take(base, off, (size_t)w);
    sd->eg = take(base, off, (size_t)VC * w);
    sd->f = take(base, off, (size_t)w);
    sd->xf = take(base, off, (size_t)w);
}

/* Lays the buffers out over base (or only measures when base is NULL); the
 * state slots come last so a kernel needing fewer slots fits the same ws. */
static size_t carve(vctx_t *c, char *base, int Dp, int Ep, int64_t nslots) {
    size_t off = 0, cd = (size_t)VC * Dp, ce = (size_t)VC * Ep;
    size_t wm = (size_t)(Dp > Ep ? Dp : Ep);
    carve_side(&c->ks, base, &off, Dp);
    carve_side(&c->vs, base, &off, Ep);
    c->q = take(base, &off, cd);
    c->k = take(base, &off, cd);
    c->v = take(base, &off, ce);
    c->dO = take(base, &off, ce);
    c->qt = take(base, &off, cd);
    c->kloc = take(base, &off, cd);
    c->vloc = take(base, &off, ce);
    c->egk = take(base, &off, cd);
    c->egv = take(base, &off, ce);
    c->qe = take(base, &off, cd);
    c->dOe = take(base, &off, ce);
    c->dOt = take(base, &off, ce);
    c->ekl = take(base, &off, cd);
    c->evl = take(base, &off, ce);
    c->kl = take(base, &off, cd);
    c->vl = take(base, &off, ce);
    c->kt = take(base, &off, cd);
    c->vt = take(base, &off, ce);
    c->qh = take(base, &off, cd);
    c->dOh = take(base, &off, ce);
    c->A = take(base, &off, (size_t)VC * VC);
    c->dA = take(base, &off, (size_t)VC * VC);
    c->o = take(base, &off, ce);
    c->dq = take(base, &off, cd);
    c->dk = take(base, &off, cd);
    c->dv = take(base, &off, ce);
    c->dkx = take(base, &off, cd);
    c->dvx = take(base, &off, ce);
    c->self_a = take(base, &off, VC);
    c->self_da = take(base, &off, VC);
    c->tmp = take(base, &off, (size_t)VC * wm);
    c->acc = (double *)(void *)take(base, &off, 2 * wm);
    c->psi_k = (double *)(void *)take(base, &off, 2 * (size_t)Dp);
    c->psi_v = (double *)(void *)take(base, &off, 2 * (size_t)Ep);
    c->suf = (double *)(void *)take(base, &off, 2 * (size_t)VC * wm);
    c->S = take(base, &off, (size_t)Dp * Ep);
    c->dS = take(base, &off, (size_t)Dp * Ep);
    c->states = take(base, &off, (size_t)nslots * Dp * Ep);
    return off;
}

/* ---- backward state plan -------------------------------------------------------- */

typedef struct vplan {
    int64_t nch;    /* chunks */
    int store_all;  /* every chunk's incoming state kept (a single segment) */
    int64_t seg;    /* chunks per segment */
    int64_t ncheck; /* checkpoints (0 when store_all) */
} vplan_t;

static int64_t ceil_sqrt(int64_t x) {
    int64_t r = 0;
    while (r * r < x) r++;
    return r;
}

static int64_t slots_cap(int Dp, int Ep) {
    int64_t cap = (int64_t)(VSTORE_ALL_BYTES / ((size_t)Dp * Ep * sizeof(float)));
    return cap < 2 ? 2 : cap;
}

static vplan_t make_plan(int64_t len, int Dp, int Ep) {
    vplan_t p;
    p.nch = (len + VC - 1) / VC;
    p.store_all = p.nch <= slots_cap(Dp, Ep);
    if (p.store_all) {
        p.seg = p.nch;
        p.ncheck = 0;
    } else {
        p.seg = ceil_sqrt(p.nch);
        p.ncheck = (p.nch + p.seg - 1) / p.seg;
    }
    return p;
}

/* Slots the plan uses: the incoming states of one segment's chunks plus the
 * checkpoints (one per segment; none when everything is stored). */
static int64_t plan_slots(const vplan_t *p) { return p->seg + p->ncheck; }

/* ---- chunk preparation -------------------------------------------------------- */

/* Loads the chunk's log decays of one side and builds exp(g), exp(L), exp(R)
 * and T (see the top of the file).  exp(L) and exp(R) are running products of
 * the per-token factors exp(g_r) <= 1 within the sub-chunk (at most 16
 * roundings, like the diagonal factors; one exp per element instead of
 * three); T is summed in the log domain because its sums span sub-chunks. */
LA_CLONES
static void prep_side(vside_t *sd, const cpu_view_t *view, int width, int64_t t0, int n) {
    const int w = sd->w;
    cpu_load_tile(view, t0, n, width, sd->g, w);
    for (int64_t i = 0; i < (int64_t)n * w; i++) sd->eg[i] = exp_le0(sd->g[i]);
    for (int s0 = 0, I = 0; s0 < n; s0 += VSB, I++) {
        const int e = (s0 + VSB < n ? s0 + VSB : n) - 1;
        float *t = sd->t + (int64_t)I * w;
        memcpy(t, sd->g + (int64_t)s0 * w, (size_t)w * sizeof(float));
        memcpy(sd->el + (int64_t)s0 * w, sd->eg + (int64_t)s0 * w, (size_t)w * sizeof(float));
        for (int i = s0 + 1; i <= e; i++) {
            vaxpy(t, 1.0f, sd->g + (int64_t)i * w, w);
            vmul(sd->el + (int64_t)i * w, sd->el + (int64_t)(i - 1) * w, sd->eg + (int64_t)i * w, w);
        }
        float *last = sd->er + (int64_t)e * w;
        for (int c = 0; c < w; c++) last[c] = 1.0f;
        for (int j = e - 1; j >= s0; j--)
            vmul(sd->er + (int64_t)j * w, sd->er + (int64_t)(j + 1) * w, sd->eg + (int64_t)(j + 1) * w, w);
    }
}

/* out = exp(sum_{from <= M < to} T_M): a sum of sub-chunk totals (<= 0). */
LA_CLONES
static void tsum_exp(const vside_t *sd, int from, int to, float *out) {
    const int w = sd->w;
    for (int c = 0; c < w; c++) out[c] = 0.0f;
    for (int M = from; M < to; M++) {
        const float *t = sd->t + (int64_t)M * w;
        for (int c = 0; c < w; c++) out[c] += t[c];
    }
    exp_inplace(out, w);
}

static int sub_rows(const vctx_t *c, int I) {
    int r = c->n - I * VSB;
    return r < VSB ? r : VSB;
}

/* Loads k, v (and q, scaled, when want_q) and the decays of chunk [t0, t0+n). */
LA_CLONES
static void chunk_load(vctx_t *c, int64_t t0, int n, int want_q) {
    const cpu_seq_t *s = c->s;
    c->t0 = t0;
    c->n = n;
    c->nsub = (n + VSB - 1) / VSB;
    cpu_load_tile(&s->k, t0, n, c->D, c->k, c->Dp);
    cpu_load_tile(&s->v, t0, n, c->E, c->v, c->Ep);
    prep_side(&c->ks, &s->ld, c->D, t0, n);
    vmul(c->kloc, c->k, c->ks.er, (int64_t)n * c->Dp);
    if (c->has_v) {
        prep_side(&c->vs, &s->ldv, c->E, t0, n);
        vmul(c->vloc, c->v, c->vs.er, (int64_t)n * c->Ep);
    }
    if (want_q) {
        cpu_load_tile(&s->q, t0, n, c->D, c->q, c->Dp);
        for (int64_t i = 0; i < (int64_t)n * c->Dp; i++) c->q[i] *= s->scale;
        vmul(c->qt, c->q, c->ks.el, (int64_t)n * c->Dp);
    }
}

/* eg_i = exp(G_i) = exp(L_i) exp(sum_{M<I} T_M), per sub-chunk I. */
LA_CLONES
static void head_factors(vside_t *sd, int nsub, int n, float *eg) {
    const int w = sd->w;
    for (int I = 0; I < nsub; I++) {
        int r0 = I * VSB, rows = (n - r0 < VSB ? n - r0 : VSB);
        tsum_exp(sd, 0, I, sd->fac);
        mul_rows_vec(eg + (int64_t)r0 * w, sd->el + (int64_t)r0 * w, sd->fac, rows, w);
    }
}

/* el_j = exp(G_L - G_j) = exp(R_j) exp(sum_{M>J} T_M), per sub-chunk J. */
LA_CLONES
static void tail_factors(vside_t *sd, int nsub, int n, float *el) {
    const int w = sd->w;
    for (int J = 0; J < nsub; J++) {
        int r0 = J * VSB, rows = (n - r0 < VSB ? n - r0 : VSB);
        tsum_exp(sd, J + 1, nsub, sd->fac);
        mul_rows_vec(el + (int64_t)r0 * w, sd->er + (int64_t)r0 * w, sd->fac, rows, w);
    }
}

/* kl = k . exp(G_L - G_j), vl likewise (vl = v without value decay). */
LA_CLONES
static void state_operands(vctx_t *c) {
    const int64_t n = c->n;
    tail_factors(&c->ks, c->nsub, c->n, c->ekl);
    vmul(c->kl, c->k, c->ekl, n * c->Dp);
    if (c->has_v) {
        tail_factors(&c->vs, c->nsub, c->n, c->evl);
        vmul(c->vl, c->v, c->evl, n * c->Ep);
    }
}

static const float *vl_op(const vctx_t *c) { return c->has_v ? c->vl : c->v; }

/* M[d][e] *= a[d] b[e] with a = exp(Gk_L) and b = exp(Gv_L) (b = 1 without
 * value decay): the decay of a state over the whole chunk. */
LA_CLONES
static void decay_state(vctx_t *c, float *M) {
    const int Dp = c->Dp, Ep = c->Ep;
    tsum_exp(&c->ks, 0, c->nsub, c->ks.fac);
    if (c->has_v) tsum_exp(&c->vs, 0, c->nsub, c->vs.fac);
    const float *restrict a = c->ks.fac, *restrict b = c->vs.fac;
    for (int d = 0; d < Dp; d++) {
        float *restrict row = M + (int64_t)d * Ep;
        const float ad = a[d];
        if (c->has_v) {
            for (int e = 0; e < Ep; e++) row[e] = (row[e] * ad) * b[e];
        } else {
            for (int e = 0; e < Ep; e++) row[e] *= ad;
        }
    }
}

/* S <- exp(Gk_L) S exp(Gv_L) + kl^T vl  (needs state_operands). */
static void state_update(vctx_t *c, float *S) {
    decay_state(c, S);
    cpu_gemm_tn(c->Dp, c->Ep, c->n, c->kl, c->Dp, vl_op(c), c->Ep, S, c->Ep, 1);
}

/* rows [0, s_I) of dst = loc . exp(sum_{J<M<I} T_M) for their sub-chunk J:
 * operand j relative to the query anchor a_I = s_I - 1 (exponent G_a - G_j <= 0). */
LA_CLONES
static void to_query_anchor(vside_t *sd, const float *loc, int I, float *dst) {
    const int w = sd->w;
    for (int J = 0; J < I; J++) {
        tsum_exp(sd, J + 1, I, sd->fac);
        mul_rows_vec(dst + (int64_t)J * VSB * w, loc + (int64_t)J * VSB * w, sd->fac, VSB, w);
    }
}

/* rows [s_{J+1}, n) of dst = src . exp(sum_{J<M<I} T_M) for their sub-chunk I:
 * src relative to I's anchor (qt, dOt) re-anchored at e_J (exponent G_i - G_e_J <= 0). */
LA_CLONES
static void to_key_anchor(vside_t *sd, const float *src, int J, int nsub, int n, float *dst) {
    const int w = sd->w;
    for (int I = J + 1; I < nsub; I++) {
        int r0 = I * VSB, rows = (n - r0 < VSB ? n - r0 : VSB);
        tsum_exp(sd, J + 1, I, sd->fac);
        mul_rows_vec(dst + (int64_t)r0 * w, src + (int64_t)r0 * w, sd->fac, rows, w);
    }
}

/* ---- forward ------------------------------------------------------------------ */

/* o = (q . exp(Gk)) S . exp(Gv): the incoming state's share of the outputs. */
LA_CLONES
static void output_inter(vctx_t *c, const float *S) {
    const int64_t n = c->n;
    head_factors(&c->ks, c->nsub, c->n, c->egk);
    vmul(c->qe, c->q, c->egk, n * c->Dp);
    cpu_gemm_nn(c->n, c->Ep, c->Dp, c->qe, c->Dp, S, c->Ep, c->o, c->Ep, 0);
    if (c->has_v) {
        head_factors(&c->vs, c->nsub, c->n, c->egv);
        vmul_inplace(c->o, c->egv, n * c->Ep);
    }
}

/* Off-diagonal block row I of A (A[I, <I] = qt_I kt^T) and, when want_o, its
 * share of o: o_I += exp(Lv_I) . (A[I, <I] vt). */
static void offdiag_query_row(vctx_t *c, int I, int want_o) {
    const int Dp = c->Dp, Ep = c->Ep, sI = I * VSB, m = sub_rows(c, I);
    float *Arow = c->A + (int64_t)sI * VC;
    to_query_anchor(&c->ks, c->kloc, I, c->kt);
    cpu_gemm_nt(m, sI, Dp, c->qt + (int64_t)sI * Dp, Dp, c->kt, Dp, Arow, VC, 0);
    if (!want_o) return;
    if (c->has_v) {
        cpu_gemm_nn(m, Ep, sI, Arow, VC, c->vt, Ep, c->tmp, Ep, 0);
        vfma(c->o + (int64_t)sI * Ep, c->tmp, c->vs.el + (int64_t)sI * Ep, (int64_t)m * Ep);
    } else {
        cpu_gemm_nn(m, Ep, sI, Arow, VC, c->v, Ep, c->o + (int64_t)sI * Ep, Ep, 1);
    }
}

/* Diagonal blocks, pairs s_I <= j <= i of one sub-chunk.  The factors are
 * exact products of the pair's own per-token decays,
 *
 *     F_ij = exp(sum_{r=j+1..i} g_r) = F_i,j+1 . exp(g_{j+1}),   F_ii = 1,
 *
 * run from j = i downwards: at most 15 roundings (relative error <= 15 * 2^-24,
 * the same order as exp of the fp32 sum, whose rounding grows with |sum|), no
 * anchor and no division, so nothing can overflow; tiny products flush to 0.
 * A product per (pair, channel) instead of an exp keeps the diagonal blocks
 * (the only part not done by cpu_gemm_*) cheap.  With value-side decay the
 * output needs per-(i, j, e) factors Fv as well, done the same way (see the
 * top of the file for why not a short recurrence). */
LA_CLONES
static void diag_forward(vctx_t *c) {
    const int Dp = c->Dp, Ep = c->Ep;
    vside_t *ks = &c->ks, *vs = &c->vs;
    for (int i = 0; i < c->n; i++) {
        const int s0 = i / VSB * VSB;
        const float *qi = c->q + (int64_t)i * Dp;
        float *oi = c->o + (int64_t)i * Ep;
        /* the self pair j = i: every factor is exactly 1 */
        vaxpy(oi, dot2(qi, c->k + (int64_t)i * Dp, Dp), c->v + (int64_t)i * Ep, Ep);
        if (i == s0) continue;
        memcpy(ks->f, ks->eg + (int64_t)i * Dp, (size_t)Dp * sizeof(float));
        if (c->has_v) memcpy(vs->f, vs->eg + (int64_t)i * Ep, (size_t)Ep * sizeof(float));
        for (int j = i - 1; j >= s0; j--) {
            const float *kj = c->k + (int64_t)j * Dp, *vj = c->v + (int64_t)j * Ep;
            const float a = dot3(qi, kj, ks->f, Dp);
            if (c->has_v) {
                vaxpy2(oi, a, vj, vs->f, Ep);
                if (j > s0) vmul_inplace(vs->f, vs->eg + (int64_t)j * Ep, Ep);
            } else {
                vaxpy(oi, a, vj, Ep);
            }
            if (j > s0) vmul_inplace(ks->f, ks->eg + (int64_t)j * Dp, Dp);
        }
    }
}

/* The whole fp32 output of the loaded chunk into c->o (needs q and S). */
static void chunk_output(vctx_t *c, const float *S) {
    output_inter(c, S);
    if (c->has_v) {
        for (int I = 1; I < c->nsub; I++) {
            to_query_anchor(&c->vs, c->vloc, I, c->vt);
            offdiag_query_row(c, I, 1);
        }
    } else {
        for (int I = 1; I < c->nsub; I++) offdiag_query_row(c, I, 1);
    }
    diag_forward(c);
}

/* Fills a dense [Dp][Ep] state from an optional view (absent = 0). */
static void load_state_padded(const cpu_state_view_t *sv, int D, int E, int Dp, int Ep, float *dst) {
    cpu_load_state(sv, D, E, dst, Ep);
    memset(dst + (int64_t)D * Ep, 0, (size_t)(Dp - D) * Ep * sizeof(float));
}

static void setup(vctx_t *c, const cpu_seq_t *s, void *ws, int64_t nslots) {
    c->s = s;
    c->D = s->D;
    c->E = s->E;
    c->Dp = pad16(s->D);
    c->Ep = pad16(s->E);
    c->has_v = s->kind == LA_DECAY_VECTOR_KV;
    carve(c, (char *)ws, c->Dp, c->Ep, nslots);
}

size_t cpu_vector_workspace(int D, int E, int64_t max_len) {
    const int Dp = pad16(D), Ep = pad16(E);
    vplan_t p = make_plan(max_len, Dp, Ep);
    /* A shorter sequence may store all its states where the longest one
     * checkpoints: reserve the larger of the two. */
    int64_t slots = plan_slots(&p);
    if (!p.store_all) {
        int64_t all = slots_cap(Dp, Ep), bound = 2 * ceil_sqrt(p.nch);
        slots = all > bound ? all : bound;
    }
    vctx_t c;
    size_t bytes = carve(&c, NULL, Dp, Ep, slots);
    /* The stored states (carved last) get the whole VSTORE_ALL_BYTES, not
     * floor(VSTORE_ALL_BYTES / slot) slots, which would shrink as a slot
     * grows: the workspace must grow with D and E. */
    if (!p.store_all) {
        size_t whole = carve(&c, NULL, Dp, Ep, 0) + VSTORE_ALL_BYTES;
        if (whole > bytes) bytes = whole;
    }
    return bytes;
}

static void vector_forward(const cpu_seq_t *s, void *ws) {
    vctx_t c;
    setup(&c, s, ws, 0);
    const int has_o = s->o.ptr != NULL;
    load_state_padded(&s->s0, c.D, c.E, c.Dp, c.Ep, c.S);
    for (int64_t t0 = 0; t0 < s->len; t0 += VC) {
        const int n = (int)(s->len - t0 < VC ? s->len - t0 : VC);
        chunk_load(&c, t0, n, has_o);
        if (has_o) {
            chunk_output(&c, c.S);
            cpu_store_tile(&s->o, t0, n, c.E, c.o, c.Ep);
        }
        if (t0 + VC < s->len || s->sN.ptr) { /* the last update only feeds sN */
            state_operands(&c);
            state_update(&c, c.S);
        }
    }
    if (s->sN.ptr) cpu_store_state(&s->sN, c.D, c.E, c.S, c.Ep);
}

void cpu_vector_forward(const cpu_seq_t *s, void *ws) {
    unsigned int fp = fp_enter();
    vector_forward(s, ws);
    fp_leave(fp);
}

/* ---- backward ----------------------------------------------------------------- */

/* dkx, dvx: dk, dv through the outgoing state's gradient dS' (later chunks):
 *   dkx_j = exp(Gk_L - Gk_j) . (vl_j dS'^T),  dvx_j = exp(Gv_L - Gv_j) . (kl_j dS'). */
LA_CLONES
static void grad_state_side(vctx_t *c, const float *dS) {
    const int64_t n = c->n;
    cpu_gemm_nt(c->n, c->Dp, c->Ep, vl_op(c), c->Ep, dS, c->Ep, c->dkx, c->Dp, 0);
    vmul_inplace(c->dkx, c->ekl, n * c->Dp);
    cpu_gemm_nn(c->n, c->Ep, c->Dp, c->kl, c->Dp, dS, c->Ep, c->dvx, c->Ep, 0);
    if (c->has_v) vmul_inplace(c->dvx, c->evl, n * c->Ep);
}

/* dq from the incoming state: dq_i = exp(Gk_i) . (dOe_i S^T), dOe = dO . exp(Gv);
 * and, when want_o, the inter part of o (same factors). */
LA_CLONES
static void grad_query_inter(vctx_t *c, const float *S, int want_o) {
    const int64_t n = c->n;
    const float *dOe = c->dO;
    if (want_o) {
        output_inter(c, S); /* also fills egk, qe, egv */
    } else {
        head_factors(&c->ks, c->nsub, c->n, c->egk);
        vmul(c->qe, c->q, c->egk, n * c->Dp);
        if (c->has_v) head_factors(&c->vs, c->nsub, c->n, c->egv);
    }
    if (c->has_v) {
        vmul(c->dOe, c->dO, c->egv, n * c->Ep);
        vmul(c->dOt, c->dO, c->vs.el, n * c->Ep);
        dOe = c->dOe;
    }
    cpu_gemm_nt(c->n, c->Dp, c->Ep, dOe, c->Ep, S, c->Ep, c->dq, c->Dp, 0);
    vmul_inplace(c->dq, c->egk, n * c->Dp);
}

/* Query-anchored pass over off-diagonal blocks: A[I,<I], dA[I,<I] and
 * dq_I += exp(Lk_I) . (dA[I,<I] kt), plus o when want_o. */
static void grad_query_offdiag(vctx_t *c, int want_o) {
    const int Dp = c->Dp, Ep = c->Ep;
    for (int I = 1; I < c->nsub; I++) {
        const int sI = I * VSB, m = sub_rows(c, I);
        const float *vt = c->v, *dOi = c->dO + (int64_t)sI * Ep;
        if (c->has_v) {
            to_query_anchor(&c->vs, c->vloc, I, c->vt);
            vt = c->vt;
            dOi = c->dOt + (int64_t)sI * Ep;
        }
        offdiag_query_row(c, I, want_o); /* builds kt, A[I, <I] */
        float *dArow = c->dA + (int64_t)sI * VC;
        cpu_gemm_nt(m, sI, Ep, dOi, Ep, vt, Ep, dArow, VC, 0);
        cpu_gemm_nn(m, Dp, sI, dArow, VC, c->kt, Dp, c->tmp, Dp, 0);
        vfma(c->dq + (int64_t)sI * Dp, c->tmp, c->ks.el + (int64_t)sI * Dp, (int64_t)m * Dp);
    }
}

/* Key-anchored pass: for key sub-chunk J and all query rows i > e_J,
 * dk_J += exp(Rk_J) . (dA[>J, J]^T qh),  dv_J += exp(Rv_J) . (A[>J, J]^T dOh). */
static void grad_key_offdiag(vctx_t *c) {
    const int Dp = c->Dp, Ep = c->Ep, n = c->n;
    for (int J = 0; J + 1 < c->nsub; J++) {
        const int sJ = J * VSB, r0 = sJ + VSB, rows = n - r0;
        to_key_anchor(&c->ks, c->qt, J, c->nsub, n, c->qh);
        cpu_gemm_tn(VSB, Dp, rows, c->dA + (int64_t)r0 * VC + sJ, VC, c->qh + (int64_t)r0 * Dp, Dp, c->tmp, Dp, 0);
        vfma(c->dk + (int64_t)sJ * Dp, c->tmp, c->ks.er + (int64_t)sJ * Dp, (int64_t)VSB * Dp);
        if (c->has_v) {
            to_key_anchor(&c->vs, c->dOt, J, c->nsub, n, c->dOh);
            cpu_gemm_tn(VSB, Ep, rows, c->A + (int64_t)r0 * VC + sJ, VC, c->dOh + (int64_t)r0 * Ep, Ep, c->tmp, Ep, 0);
            vfma(c->dv + (int64_t)sJ * Ep, c->tmp, c->vs.er + (int64_t)sJ * Ep, (int64_t)VSB * Ep);
        } else {
            cpu_gemm_tn(VSB, Ep, rows, c->A + (int64_t)r0 * VC + sJ, VC, c->dO + (int64_t)r0 * Ep, Ep,
                        c->dv + (int64_t)sJ * Ep, Ep, 1);
        }
    }
}

/* Diagonal blocks with the factors of diag_forward: per pair j < i
 *   A_ij = q_i . (k_j Fk),  dA_ij = dO_i . (v_j Fv),
 *   dq_i += dA_ij k_j Fk,  dk_j += dA_ij q_i Fk,  dv_j += A_ij dO_i Fv,
 *   o_i += A_ij v_j Fv (when want_o).
 * The self pairs j = i (all factors exactly 1) are only recorded in self_a,
 * self_da and added after the decay gradients (see decay_grad). */
LA_CLONES
static void grad_diag(vctx_t *c, int want_o) {
    const int Dp = c->Dp, Ep = c->Ep;
    vside_t *ks = &c->ks, *vs = &c->vs;
    for (int i = 0; i < c->n; i++) {
        const int s0 = i / VSB * VSB;
        const float *qi = c->q + (int64_t)i * Dp, *dOi = c->dO + (int64_t)i * Ep;
        float *dqi = c->dq + (int64_t)i * Dp, *oi = c->o + (int64_t)i * Ep;
        c->self_a[i] = dot2(qi, c->k + (int64_t)i * Dp, Dp);
        c->self_da[i] = dot2(dOi, c->v + (int64_t)i * Ep, Ep);
        if (i == s0) continue;
        memcpy(ks->f, ks->eg + (int64_t)i * Dp, (size_t)Dp * sizeof(float));
        if (c->has_v) memcpy(vs->f, vs->eg + (int64_t)i * Ep, (size_t)Ep * sizeof(float));
        for (int j = i - 1; j >= s0; j--) {
            const float *kj = c->k + (int64_t)j * Dp, *vj = c->v + (int64_t)j * Ep;
            float *dkj = c->dk + (int64_t)j * Dp, *dvj = c->dv + (int64_t)j * Ep;
            vmul(ks->xf, kj, ks->f, Dp);
            const float a = dot2(qi, ks->xf, Dp);
            float da;
            if (c->has_v) {
                vmul(vs->xf, vj, vs->f, Ep);
                da = dot2(dOi, vs->xf, Ep);
                vaxpy2(dvj, a, dOi, vs->f, Ep);
                if (want_o) vaxpy(oi, a, vs->xf, Ep);
                if (j > s0) vmul_inplace(vs->f, vs->eg + (int64_t)j * Ep, Ep);
            } else {
                da = dot2(dOi, vj, Ep);
                vaxpy(dvj, a, dOi, Ep);
            }
            vaxpy(dqi, da, ks->xf, Dp);
            vaxpy2(dkj, da, qi, ks->f, Dp);
            if (j > s0) vmul_inplace(ks->f, ks->eg + (int64_t)j * Dp, Dp);
        }
    }
}

/* psi_k[d] = sum_e D[d,e] dS'[d,e], psi_v[e] = sum_d D[d,e] dS'[d,e] with
 * D = exp(Gk_L) S exp(Gv_L), the incoming state's part of the outgoing state.
 * fp32 sums (fixed order, like a gemm's), factors pulled out of the sums. */
LA_CLONES
static void state_psi(vctx_t *c, const float *S, const float *dS) {
    const int Dp = c->Dp, Ep = c->Ep;
    float *restrict col = c->tmp;
    tsum_exp(&c->ks, 0, c->nsub, c->ks.fac);
    if (c->has_v) {
        tsum_exp(&c->vs, 0, c->nsub, c->vs.fac);
    } else {
        for (int e = 0; e < Ep; e++) c->vs.fac[e] = 1.0f;
    }
    const float *restrict a = c->ks.fac, *restrict b = c->vs.fac;
    for (int e = 0; e < Ep; e++) col[e] = 0.0f;
    for (int d = 0; d < Dp; d++) {
        const float *restrict sr = S + (int64_t)d * Ep, *restrict dr = dS + (int64_t)d * Ep;
        c->psi_k[d] = (double)a[d] * dot3(sr, dr, b, Ep);
        for (int e = 0; e < Ep; e++) col[e] += (a[d] * sr[e]) * dr[e];
    }
    for (int e = 0; e < Ep; e++) c->psi_v[e] = (double)col[e] * b[e];
}

/* Decay gradient of one side, chunk-local (docs/MATH.md), for token r:
 *
 *   dg_r = sum_{t >= r} (x_t . dx_t - y_t . dy_t) + psi + sum_{m < r} y_m . dz_m
 *
 * key side:   x = q, dx = dq, y = k, dy = dk (within the chunk), dz = dkx
 * value side: x = o, dx = dO, y = v, dy = dv (within the chunk), dz = dvx
 *
 * MATH.md's form adds <S', dS'> and subtracts sum_{m >= r} y_m . dz_m; since
 * <S', dS'> = psi + sum_m y_m . dz_m, this is the same sum without the
 * cancellation.  And dq, dk, dv, o here still lack their self terms (pair
 * t = m), which cancel exactly between x.dx and y.dy: left in, they are O(1)
 * terms whose difference is the gradient, which for strong decay is tiny
 * (e.g. ~exp(-20)), so fp32 rounding of the O(1) terms would swamp it.
 * Without them every term carries its own decay factor and the result is
 * accurate relative to its own size.  Sums in double; x, dx may be NULL. */
LA_CLONES
static void decay_grad(vctx_t *c, const cpu_view_t *out, int width, int w, const double *psi, const float *x,
                       const float *dx, const float *y, const float *dy, const float *dz) {
    double *acc = c->acc, *suf = c->suf;
    for (int i = 0; i < w; i++) acc[i] = 0.0;
    for (int t = c->n - 1; t >= 0; t--) {
        const int64_t r = (int64_t)t * w;
        for (int i = 0; i < w; i++) {
            double term = -(double)y[r + i] * dy[r + i];
            if (x) term += (double)x[r + i] * dx[r + i];
            acc[i] += term;
            suf[r + i] = acc[i];
        }
    }
    for (int i = 0; i < w; i++) acc[i] = psi[i];
    for (int t = 0; t < c->n; t++) {
        const int64_t r = (int64_t)t * w;
        float *o = c->tmp + r;
        for (int i = 0; i < w; i++) {
            o[i] = (float)(suf[r + i] + acc[i]);
            acc[i] += (double)y[r + i] * dz[r + i];
        }
    }
    cpu_store_tile(out, c->t0, c->n, width, c->tmp, w);
}

/* Adds the self terms and the state-side parts: dq_i += dA_ii k_i,
 * dk_i += dA_ii q_i + dkx_i, dv_i += A_ii dO_i + dvx_i. */
LA_CLONES
static void finish_grads(vctx_t *c, int has_do) {
    const int Dp = c->Dp, Ep = c->Ep;
    for (int i = 0; i < c->n; i++) {
        float *dqi = c->dq + (int64_t)i * Dp, *dki = c->dk + (int64_t)i * Dp;
        float *dvi = c->dv + (int64_t)i * Ep;
        if (has_do) {
            vaxpy(dqi, c->self_da[i], c->k + (int64_t)i * Dp, Dp);
            vaxpy(dki, c->self_da[i], c->q + (int64_t)i * Dp, Dp);
            vaxpy(dvi, c->self_a[i], c->dO + (int64_t)i * Ep, Ep);
        }
        vaxpy(dki, 1.0f, c->dkx + (int64_t)i * Dp, Dp);
        vaxpy(dvi, 1.0f, c->dvx + (int64_t)i * Ep, Ep);
    }
}

/* Backward of the loaded chunk.  S: its incoming state; dS: in = gradient of
 * its outgoing state, out = gradient of S. */
static void chunk_backward(vctx_t *c, const float *S, float *dS) {
    const cpu_seq_t *s = c->s;
    const int has_do = s->d_o.ptr != NULL;
    const int want_o = has_do && c->has_v && s->d_ldv.ptr != NULL;
    const int64_t n = c->n;
    state_operands(c);
    grad_state_side(c, dS);
    memset(c->dk, 0, (size_t)(n * c->Dp) * sizeof(float));
    memset(c->dv, 0, (size_t)(n * c->Ep) * sizeof(float));
    if (has_do) {
        cpu_load_tile(&s->d_o, c->t0, c->n, c->E, c->dO, c->Ep);
        grad_query_inter(c, S, want_o);
        grad_query_offdiag(c, want_o);
        grad_key_offdiag(c);
        grad_diag(c, want_o);
    }
    if (s->d_ld.ptr || (s->d_ldv.ptr && c->has_v)) {
        state_psi(c, S, dS);
        if (s->d_ld.ptr)
            decay_grad(c, &s->d_ld, c->D, c->Dp, c->psi_k, has_do ? c->q : NULL, c->dq, c->k, c->dk, c->dkx);
        if (s->d_ldv.ptr && c->has_v)
            decay_grad(c, &s->d_ldv, c->E, c->Ep, c->psi_v, want_o ? c->o : NULL, c->dO, c->v, c->dv, c->dvx);
    }
    finish_grads(c, has_do);
    /* dS <- exp(Gk_L) dS' exp(Gv_L) + (q . exp(Gk))^T (dO . exp(Gv)) */
    decay_state(c, dS);
    if (has_do) cpu_gemm_tn(c->Dp, c->Ep, c->n, c->qe, c->Dp, c->has_v ? c->dOe : c->dO, c->Ep, dS, c->Ep, 1);
    if (has_do && s->dq.ptr) {
        for (int64_t i = 0; i < n * c->Dp; i++) c->dq[i] *= s->scale;
        cpu_store_tile(&s->dq, c->t0, c->n, c->D, c->dq, c->Dp);
    }
    cpu_store_tile(&s->dk, c->t0, c->n, c->D, c->dk, c->Dp);
    cpu_store_tile(&s->dv, c->t0, c->n, c->E, c->dv, c->Ep);
}

static int chunk_len(const cpu_seq_t *s, int64_t ch) {
    int64_t r = s->len - ch * VC;
    return (int)(r < VC ? r : VC);
}

/* dst = state after chunk ch, from src = state before it (dst may be src). */
static void advance_state(vctx_t *c, int64_t ch, const float *src, float *dst) {
    if (dst != src) memcpy(dst, src, (size_t)c->Dp * c->Ep * sizeof(float));
    chunk_load(c, ch * VC, chunk_len(c->s, ch), 0);
    state_operands(c);
    state_update(c, dst);
}

static void vector_backward(const cpu_seq_t *s, void *ws) {
    const int Dp = pad16(s->D), Ep = pad16(s->E);
    const vplan_t p = make_plan(s->len, Dp, Ep);
    const size_t sb = (size_t)Dp * Ep;
    vctx_t c;
    setup(&c, s, ws, plan_slots(&p));
    /* slots: the incoming states of the current segment's chunks, then the
     * checkpoints (the state entering each segment) */
    float *seg = c.states, *ck = c.states + p.seg * sb;
    const int has_do = s->d_o.ptr != NULL;
    const int64_t nseg = p.store_all ? (p.nch > 0) : p.ncheck;

    load_state_padded(&s->dsN, c.D, c.E, Dp, Ep, c.dS);
    load_state_padded(&s->s0, c.D, c.E, Dp, Ep, c.S);
    if (p.store_all) {
        if (p.nch > 0) memcpy(seg, c.S, sb * sizeof(float));
    } else { /* first pass: only the checkpoints are kept */
        const int64_t last_ck = (p.ncheck - 1) * p.seg;
        for (int64_t ch = 0; ch <= last_ck; ch++) {
            if (ch % p.seg == 0) memcpy(ck + ch / p.seg * sb, c.S, sb * sizeof(float));
            if (ch < last_ck) advance_state(&c, ch, c.S, c.S);
        }
    }
    for (int64_t m = nseg - 1; m >= 0; m--) {
        const int64_t first = m * p.seg;
        const int64_t cnt = (p.nch - first < p.seg ? p.nch - first : p.seg);
        if (!p.store_all) memcpy(seg, ck + m * sb, sb * sizeof(float));
        for (int64_t i = 1; i < cnt; i++) advance_state(&c, first + i - 1, seg + (i - 1) * sb, seg + i * sb);
        for (int64_t i = cnt - 1; i >= 0; i--) {
            chunk_load(&c, (first + i) * VC, chunk_len(s, first + i), has_do);
            chunk_backward(&c, seg + i * sb, c.dS);
        }
    }
    if (s->ds0.ptr) cpu_store_state(&s->ds0, c.D, c.E, c.dS, Ep);
}

void cpu_vector_backward(const cpu_seq_t *s, void *ws) {
    unsigned int fp = fp_enter();
    vector_backward(s, ws);
    fp_leave(fp);
}
