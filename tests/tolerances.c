/* tolerances.c - the tolerance table (tolerances.h). */
#include "tolerances.h"

/*
 * Token tensors (o, dq, dk, dv) are stored in the I/O dtype: their error is
 * dominated by the final rounding (bf16: u = 2^-8, rel L2 of the rounding
 * alone ~1.3e-3 and worst element <= 3.9e-3 of its own magnitude; f16: u =
 * 2^-11) plus the fp32 accumulation.  States and log-decay gradients are
 * f32 whatever the I/O dtype, and the reference is fed the rounded inputs,
 * so they are held to fp32-level tolerances for every dtype.
 *   rel  = bound on ||x - ref||_2 / ||ref||_2
 *   elem = bound on max|x - ref| / max|ref|   (catches one bad row that the
 *          L2 norm of a long tensor would dilute)
 * Measured on the CPU backend (quick and full tiers, seeds as shipped), the
 * worst errors were: f32 o 2.7e-6, final state 3.3e-6, dq/dk/dv 2.7e-6,
 * d_initial_state 3.3e-6, d_ld 7e-6 (all at N = 32768, the long cases; at
 * N <= 4096 they stay below ~1e-6); f16 rel 2.6e-4, worst element 4e-4 of
 * max (rounding bound 4.9e-4); bf16 rel 2.4e-3, worst element 3.6e-3
 * (rounding bound 3.9e-3).  The bounds below leave a margin of 3-5x at the
 * longest N for f32 and sit at ~2.5x the rounding bound for f16/bf16.
 * Gradients get a looser f32 bound than outputs: they sum over the whole
 * remaining sequence (reverse direction) and, for the decay, combine
 * products that partly cancel (see test_backend's refout_t for the decay's scale).
 * test_backend's library-vs-library equivalences use twice the bound (both sides carry an
 * error). */

#define DECAY_F32 5e-5, 2e-4
#define STATES_F32 1.5e-5, 5e-5, 2e-5, 1e-4
static const tolset_t TOL_F32 = {1e-5, 5e-5, 2e-5, 1e-4, DECAY_F32, STATES_F32};
static const tolset_t TOL_F16 = {1e-3, 1e-3, 1e-3, 1e-3, DECAY_F32, STATES_F32};
static const tolset_t TOL_BF16 = {1e-2, 1e-2, 1e-2, 1e-2, DECAY_F32, STATES_F32};

/* Tensor-core backends round the intra-chunk matrices (A, dA) and the state
 * copy that multiply q or dO to the input dtype (as FlashAttention rounds P),
 * so their half-precision token outputs may carry one more rounding of that
 * dtype: they get 2u more (u = 2^-11 for f16, 2^-8 for bf16).  States keep
 * their fp32 bounds (the state updates split their operands hi/lo), except
 * f16's (below).  The decay gradient's terms there are row dots against those
 * rounded state copies, each summed over up to 64 tokens of a chunk with the
 * same rounding, so it gets 4u (rel) and 8u (worst element) of its scale;
 * measured on the H200 (quick tier): worst 1.5u (bf16), 2.6u (f16).
 * f16 states: the relative L2 bound is 2^-12, not fp32's.  A term's lo part
 * (x - hi, ~2^-11 x) falls into f16's subnormal range for |x| below ~2^-3,
 * where its spacing is 2^-24 absolute, so terms between 2^-14 and 2^-3 keep
 * 11 to 22 bits, down to f16's own precision where every factor of a chunk
 * is small (sharp decay); bf16's lo part has the fp32 exponent range and
 * keeps fp32 bounds.  Measured on the H200: worst 8.5e-5 (d_initial_state,
 * D = 256, SCALAR_HEAD sharp, full tier), 2.1e-5 (SCALAR_TOKEN, quick). */
/* clang-format off */
static const tolset_t TOL_F16_TC = {1e-3 + 2 * 4.8828125e-4, 1e-3 + 2 * 4.8828125e-4, 1e-3 + 2 * 4.8828125e-4,
                                    1e-3 + 2 * 4.8828125e-4, 4 * 4.8828125e-4, 8 * 4.8828125e-4,
                                    2.44140625e-4, 5e-5, 2.44140625e-4, 1e-4};
static const tolset_t TOL_BF16_TC = {1e-2 + 2 * 3.90625e-3, 1e-2 + 2 * 3.90625e-3, 1e-2 + 2 * 3.90625e-3,
                                     1e-2 + 2 * 3.90625e-3, 4 * 3.90625e-3, 8 * 3.90625e-3, STATES_F32};

/* f32 on tensor cores: every operand split into bf16 hi + lo (16 of fp32's
 * 24 mantissa bits) and three mmas per product (the lo x lo term, ~2^-16 of
 * it, dropped).  Measured on the H200 (quick and full tiers, and the quick
 * tier on 64-wide head-dim tiles), worst rel L2 / worst element: o 1.1e-5 /
 * 1.8e-5, dq dk dv 3.3e-5 / 3.0e-5 (dk summed over E tiles), d_ld 2.1e-5 /
 * 2.1e-5, final state 9.4e-6 / 4.0e-5, d_initial_state 1.8e-5 / 2.9e-5: up
 * to ~2x the CPU's f32 bounds.  These leave 2.4x to 3.4x over them.
 * d_ld (DECAY_F32: 5e-5 of sqrt(ref^2 + scale^2), refout_t's terms' scale)
 * is one number per head that partly cancels, so relative to itself its
 * error is the terms' times scale / |d_ld|: at dld_alibi_f32_d256_h1 the
 * scale is 6.3x |d_ld|, and 5e-5 of the scale is 3.2e-4 of d_ld.  Where the
 * GPU's blocks hold them (H100, H200, B200) the decay gradient's products run
 * on three operand planes (docs/CUDA-BACKWARD.md), ~1e-7 of the scale in a
 * CPU emulation of the kernel's rounding (two planes: ~3e-6); the bound
 * stays the two planes' (the A100, and the states that enter segments). */
static const tolset_t TOL_F32_TC = {3e-5, 5e-5, 8e-5, 1e-4, DECAY_F32, 3e-5, 1e-4, 5e-5, 1e-4};
/* clang-format on */

const tolset_t *tu_tolerances(la_dtype_t dt, la_backend_t backend) {
    const int tc = backend != LA_BACKEND_CPU;
    if (dt == LA_DTYPE_F16) return tc ? &TOL_F16_TC : &TOL_F16;
    if (dt == LA_DTYPE_BF16) return tc ? &TOL_BF16_TC : &TOL_BF16;
    return tc ? &TOL_F32_TC : &TOL_F32;
}
