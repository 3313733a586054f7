"""The package on numpy arrays (lightning_attn.cpu, the CPU backend) against
the fp64 reference: every op, decay kind, both layouts, strided views,
varlen, states; errors carry the library's status and message."""

import numpy as np
import pytest

import lightning_attn as la
from lightning_attn import cpu
from checks import assert_close
from reference import reference

TOL = {np.float32: 2e-5, np.float16: 5e-3}
KINDS = ["none", "head", "token", "vector_k", "vector_kv"]


def make(rng, B, H, N, D, E, kind, layout, dtype=np.float32, state=True):
    shp = (lambda X: (B, H, N, X)) if layout == "bhnd" else (lambda X: (B, N, H, X))
    x = {n: (rng.standard_normal(shp(X)) / np.sqrt(X)).astype(dtype) for n, X in (("q", D), ("k", D), ("v", E))}
    dec = {}
    if kind == "head":
        dec["ld"] = -rng.uniform(0.01, 0.5, H).astype(np.float32)
    elif kind == "token":
        dec["ld"] = -rng.uniform(0.01, 0.5, (B, H, N) if layout == "bhnd" else (B, N, H)).astype(np.float32)
    elif kind in ("vector_k", "vector_kv"):
        dec["ldk"] = -rng.uniform(0.01, 0.5, shp(D)).astype(np.float32)
        if kind == "vector_kv":
            dec["ldv"] = -rng.uniform(0.01, 0.5, shp(E)).astype(np.float32)
    s0 = rng.standard_normal((B, H, D, E)).astype(np.float32) if state else None
    return x, dec, s0


@pytest.mark.parametrize("layout", ["bhnd", "bnhd"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("N", [1, 63, 130])
def test_forward_backward(kind, layout, N):
    rng = np.random.default_rng(N * 10 + KINDS.index(kind))
    B, H, D, E = 2, 3, 16, 24
    x, dec, s0 = make(rng, B, H, N, D, E, kind, layout)
    o, sN = cpu.forward(x["q"], x["k"], x["v"], **dec, scale=0.5, initial_state=s0, output_final_state=True,
                        layout=layout)
    d_o = rng.standard_normal(o.shape).astype(np.float32)
    dsN = rng.standard_normal(sN.shape).astype(np.float32)
    ref = reference(x["q"], x["k"], x["v"], **dec, scale=0.5, initial_state=s0, layout=layout, d_o=d_o,
                    d_final_state=dsN)
    assert_close(o, ref["o"], TOL[np.float32], "o")
    assert_close(sN, ref["final_state"], TOL[np.float32], "final_state")
    g = cpu.backward(x["q"], x["k"], x["v"], d_o, **dec, scale=0.5, initial_state=s0, d_final_state=dsN,
                     want_d_ld=True, want_d_initial_state=True, layout=layout)
    for name in ["dq", "dk", "dv", "d_initial_state"] + ["d_" + n for n in dec]:
        assert_close(g[name], ref[name], 5e-5, name)


def test_strided_views_and_f16():
    """q, k, v as non-contiguous views (a [B, N, H, D] buffer seen as bhnd)."""
    rng = np.random.default_rng(3)
    B, H, N, D, E = 2, 4, 70, 32, 8
    x, dec, s0 = make(rng, B, H, N, D, E, "head", "bnhd", dtype=np.float16, state=False)
    q, k, v = (np.swapaxes(x[n], 1, 2) for n in ("q", "k", "v"))
    assert not q.flags.c_contiguous
    o = cpu.forward(q, k, v, **dec)
    assert o.dtype == np.float16
    assert_close(o, reference(q, k, v, **dec)["o"], TOL[np.float16], "o (f16, strided)")


def test_varlen_matches_separate_sequences():
    rng = np.random.default_rng(4)
    H, D, E = 2, 16, 16
    cu = [0, 5, 70, 70, 131]
    x, dec, _ = make(rng, 1, H, cu[-1], D, E, "token", "bhnd")
    s0 = rng.standard_normal((len(cu) - 1, H, D, E)).astype(np.float32)
    o, sN = cpu.forward(x["q"], x["k"], x["v"], **dec, initial_state=s0, output_final_state=True, cu_seqlens=cu)
    ref = reference(x["q"], x["k"], x["v"], **dec, initial_state=s0, cu_seqlens=cu)
    assert_close(o, ref["o"], TOL[np.float32], "o (varlen)")
    assert_close(sN, ref["final_state"], TOL[np.float32], "final_state (varlen)")
    np.testing.assert_array_equal(sN[2], s0[2])  # the empty sequence keeps its state


def test_state_forward_and_decode_agree_with_forward():
    rng = np.random.default_rng(5)
    B, H, N, D, E = 2, 2, 9, 8, 12
    x, dec, s0 = make(rng, B, H, N, D, E, "head", "bhnd")
    o, sN = cpu.forward(x["q"], x["k"], x["v"], **dec, initial_state=s0, output_final_state=True, scale=0.3)
    assert_close(cpu.state_forward(x["k"], x["v"], **dec, initial_state=s0), sN, 1e-6, "state_forward")
    state = s0.copy()
    for t in range(N):
        sl = slice(t, t + 1)
        ot = cpu.decode(x["q"][:, :, sl], x["k"][:, :, sl], x["v"][:, :, sl], state, **dec, scale=0.3)
        assert_close(ot, o[:, :, sl], 1e-5, "decode step %d" % t)
    assert_close(state, sN, 1e-5, "decode state")


def test_errors_carry_the_library_message_and_write_nothing():
    rng = np.random.default_rng(6)
    x, dec, s0 = make(rng, 1, 2, 1, 8, 8, "head", "bhnd")
    bad = {"ld": np.array([-0.1, 0.5], np.float32)}  # a positive log decay
    state = s0.copy()
    with pytest.raises(la.LightningAttnValueError) as e:
        cpu.decode(x["q"], x["k"], x["v"], state, **bad)
    assert "LA_STATUS_BAD_DECAY" in str(e.value) and e.value.status == 104
    np.testing.assert_array_equal(state, s0)  # nothing written
    big = rng.standard_normal((1, 2, 4, 300)).astype(np.float32)
    with pytest.raises(la.LightningAttnError) as e:
        cpu.forward(big, big, x["v"][:, :, :1].repeat(4, axis=2))
    assert "300" in str(e.value)
    with pytest.raises(TypeError):
        cpu.forward(x["q"].astype(np.float64), x["k"], x["v"])
    with pytest.raises(la.LightningAttnValueError) as e:
        cpu.forward(x["q"], x["k"], x["v"][:, :1])  # H mismatch
    assert e.value.status_name == "LA_STATUS_BAD_SHAPE"
    with pytest.raises(ValueError):
        cpu.forward(x["q"], x["k"], x["v"], layout="nhbd")


def test_build_info_and_slopes():
    info = la.build_info()
    assert info["cpu"] is True and "commit" in info
    assert la.backend_available(la.BACKEND_CPU)
    s8 = la.alibi_slopes(8)
    assert s8 == pytest.approx([2.0 ** -(i + 1) for i in range(8)], rel=1e-12)
    s12 = la.alibi_slopes(12)  # 8 power-of-two slopes, then every other one of 16
    assert s12[:8] == s8 and s12[8:] == pytest.approx([2.0 ** -(0.5 + i) for i in range(4)], rel=1e-12)
    assert la.layer_factor(0, 4) == pytest.approx(1 + 1e-5) and la.layer_factor(3, 4) == pytest.approx(1e-5)


def test_policy_struct_matches_the_library():
    """The binding's la_policy_t has the library's size and field order: la_policy_init writes its
    own size into a buffer larger than either, and a policy set through the binding comes back."""
    import ctypes
    from lightning_attn import _clib as C

    buf = (ctypes.c_char * 1024)()
    C.lib.la_policy_init(ctypes.cast(buf, ctypes.c_void_p))
    assert ctypes.c_size_t.from_buffer(buf).value == ctypes.sizeof(C.Policy)
    h = C.handle(C.BACKEND_CPU)
    p = C.policy_defaults()
    assert p.vec_kernels == 0 and p.vec_split == 0 and p.vec_warp_roles == 0
    p.vec_split, p.tile_cap = 1, 64
    C.set_policy(h, p)
    back = C.get_policy(h)
    assert (back.vec_split, back.tile_cap, back.vec_kernels) == (1, 64, 0)
    p.vec_split = 5
    with pytest.raises(la.LightningAttnError, match="vec_split"):
        C.set_policy(h, p)
    C.set_policy(h, C.policy_defaults())


def test_problem_and_tensors_structs_match_the_library():
    """la_problem_t and la_tensors_t of the binding have the library's sizes (the library refuses
    any other struct_size): its initialisers write their own size into a buffer larger than either."""
    import ctypes
    from lightning_attn import _clib as C

    for init, ours in (("la_problem_init", C._Problem), ("la_tensors_init", C._Tensors)):
        buf = (ctypes.c_char * 4096)()
        getattr(C.lib, init).argtypes = [ctypes.c_void_p]
        getattr(C.lib, init)(ctypes.cast(buf, ctypes.c_void_p))
        assert ctypes.c_size_t.from_buffer(buf).value == ctypes.sizeof(ours), init
    assert C._Tensors.pool.offset + ctypes.sizeof(C._Pool) == C._Tensors.checkpoints.offset
