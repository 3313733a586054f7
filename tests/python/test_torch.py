"""The PyTorch op against the fp64 reference: forward and every gradient
(q, k, v, learnable s / ld / vector decays, initial state, final state),
both layouts, varlen, bf16/f16/f32, gradcheck, decode, the state-only op,
opcheck (schemas, fake implementations, autograd registration),
torch.compile(fullgraph=True), autocast, errors.  On CPU always; on CUDA
when a GPU is present (LA_PY_DEVICES=cpu,cuda selects)."""

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: the PyTorch op tests are skipped")

import lightning_attn as la  # noqa: E402
from lightning_attn import lightning_attn_func, lightning_attn_decode, lightning_attn_state  # noqa: E402
from checks import assert_close  # noqa: E402
from reference import reference  # noqa: E402


def _devices():
    want = os.environ.get("LA_PY_DEVICES")
    devs = want.split(",") if want else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return [d for d in devs if d == "cpu" or torch.cuda.is_available()]


DEVICES = _devices()
# Relative L2 tolerances: fp32 runs on the CPU in fp32 and on the GPU's
# tensor cores as split bf16 operands (docs/CUDA-BACKWARD.md); bf16/f16
# inputs round every operand.
TOL = {torch.float32: 1e-4, torch.float16: 4e-3, torch.bfloat16: 1.5e-2}


def _np(t):
    return None if t is None else t.detach().double().cpu().numpy()


def make(B, H, N, D, E, kind, layout, dtype, device, seed=0, state=True):
    g = torch.Generator().manual_seed(seed)
    shp = (lambda X: (B, H, N, X)) if layout == "bhnd" else (lambda X: (B, N, H, X))
    x = {n: (torch.randn(shp(X), generator=g) / X ** 0.5).to(dtype).to(device).requires_grad_()
         for n, X in (("q", D), ("k", D), ("v", E))}
    dec = {}
    u = lambda *s: torch.empty(s).uniform_(0.01, 0.5, generator=g)
    if kind == "s":
        dec["s"] = u(H, 1, 1)
    elif kind == "token":
        dec["ld"] = -u(*((B, H, N) if layout == "bhnd" else (B, N, H)))
    elif kind == "vector_kv":
        dec["ldk"], dec["ldv"] = -u(*shp(D)), -u(*shp(E))
    dec = {n: t.to(device).requires_grad_() for n, t in dec.items()}
    s0 = torch.randn((B, H, D, E), generator=g).to(device).requires_grad_() if state else None
    return x, dec, s0


def _ref_decays(dec):
    r = {n: _np(t) for n, t in dec.items()}
    if "s" in r:
        r["ld"] = -r.pop("s")
    return r


def _check_all(x, dec, s0, layout, dtype, device, cu=None, scale=0.5):
    o, sN = lightning_attn_func(x["q"], x["k"], x["v"], **dec, scale=scale, initial_state=s0,
                                output_final_state=True, cu_seqlens=cu, layout=layout)
    assert o.dtype == dtype and o.device.type == device and sN.dtype == torch.float32
    g = torch.Generator().manual_seed(1)
    w_o = torch.randn(o.shape, generator=g).to(device)
    w_s = torch.randn(sN.shape, generator=g).to(device)
    ((o.float() * w_o).sum() + (sN * w_s).sum()).backward()
    ref = reference(_np(x["q"]), _np(x["k"]), _np(x["v"]), **_ref_decays(dec), scale=scale,
                    initial_state=_np(s0), layout=layout, d_o=_np(w_o), d_final_state=_np(w_s),
                    cu_seqlens=None if cu is None else cu.tolist())
    tol = TOL[dtype]
    assert_close(_np(o), ref["o"], tol, "o")
    assert_close(_np(sN), ref["final_state"], tol, "final_state")
    for n in ("q", "k", "v"):
        assert_close(_np(x[n].grad), ref["d" + n], 2 * tol, "d" + n)
    if s0 is not None:
        assert_close(_np(s0.grad), ref["d_initial_state"], 2 * tol, "d_initial_state")
    for n, t in dec.items():
        want = -ref["d_ld"].reshape(t.shape) if n == "s" else ref["d_" + n]
        assert_close(_np(t.grad), want, 2 * tol, "d_" + n)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["bhnd", "bnhd"])
@pytest.mark.parametrize("kind", ["none", "s", "token", "vector_kv"])
def test_forward_and_all_gradients(device, layout, kind):
    x, dec, s0 = make(2, 3, 77, 32, 16, kind, layout, torch.float32, device, seed=len(layout) + 7 * len(kind))
    _check_all(x, dec, s0, layout, torch.float32, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kv", [False, True])
def test_vector_forward(device, dtype, kv):
    """Vector decays without autograd: o, the final state and the
    state-only op against the reference, both layouts, f32 and bf16."""
    for layout in ("bhnd", "bnhd"):
        x, dec, s0 = make(2, 3, 77, 40, 24, "vector_kv", layout, dtype, device, seed=5 + kv + len(layout))
        if not kv:
            del dec["ldv"]
        with torch.no_grad():
            o, sN = lightning_attn_func(x["q"], x["k"], x["v"], **dec, scale=0.5, initial_state=s0,
                                        output_final_state=True, layout=layout)
            st = lightning_attn_state(x["k"], x["v"], **dec, initial_state=s0, layout=layout)
        ref = reference(_np(x["q"]), _np(x["k"]), _np(x["v"]), **_ref_decays(dec), scale=0.5,
                        initial_state=_np(s0), layout=layout)
        assert_close(_np(o), ref["o"], TOL[dtype], "o")
        assert_close(_np(sN), ref["final_state"], TOL[dtype], "final_state")
        assert_close(_np(st), ref["final_state"], TOL[dtype], "state-only final_state")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision(device, dtype):
    x, dec, s0 = make(2, 2, 130, 64, 64, "s", "bhnd", dtype, device, seed=11)
    _check_all(x, dec, s0, "bhnd", dtype, device)


@pytest.mark.parametrize("device", DEVICES)
def test_varlen(device):
    cu = torch.tensor([0, 3, 70, 70, 140], dtype=torch.int64, device=device)
    x, dec, _ = make(1, 2, 140, 16, 32, "token", "bnhd", torch.float32, device, seed=5)
    s0 = torch.randn(4, 2, 16, 32, device=device).requires_grad_()
    _check_all(x, dec, s0, "bnhd", torch.float32, device, cu=cu)


@pytest.mark.parametrize("device", DEVICES)
def test_original_call_and_slopes(device):
    """The original call: lightning_attn_func(q, k, v, s) with _build_slope_tensor's [H, 1, 1] rates."""
    x, _, _ = make(2, 4, 100, 64, 64, "none", "bhnd", torch.float32, device, seed=2)
    s = la.build_slope_tensor(4).to(device)
    assert s.shape == (4, 1, 1) and torch.allclose(s.flatten().cpu(), torch.tensor([0.25, 0.0625, 0.015625,
                                                                                      0.00390625]))
    o = lightning_attn_func(x["q"], x["k"], x["v"], s, variant="chunk_loop")
    ref = reference(_np(x["q"]), _np(x["k"]), _np(x["v"]), ld=-_np(s))
    assert_close(_np(o), ref["o"], TOL[torch.float32], "o")
    sl = la.build_slope_tensor(4, layer_idx=1, num_layers=3)
    assert torch.allclose(sl, la.build_slope_tensor(4) * (0.5 + 1e-5))


def test_gradcheck_float64():
    """float64 inputs run in fp32 (the library's highest input precision), so
    finite differences use eps = 1e-3 and tolerances at fp32's level; a
    wrong gradient formula is off by O(1)."""
    x, dec, s0 = make(1, 2, 9, 4, 3, "token", "bhnd", torch.float64, "cpu", seed=3)
    dec = {"ld": dec["ld"].detach().double().requires_grad_()}
    s0 = s0.detach().double().requires_grad_()

    def f(q, k, v, ld, s0):
        o, sN = lightning_attn_func(q, k, v, ld=ld, initial_state=s0, output_final_state=True, scale=0.8)
        return o, sN

    torch.autograd.gradcheck(f, (x["q"], x["k"], x["v"], dec["ld"], s0), eps=1e-3, atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("device", DEVICES)
def test_decode_and_state_ops(device):
    x, dec, s0 = make(2, 2, 20, 16, 8, "s", "bnhd", torch.float32, device, seed=9)
    with torch.no_grad():
        o, sN = lightning_attn_func(x["q"], x["k"], x["v"], **dec, initial_state=s0, output_final_state=True,
                                    scale=0.7, layout="bnhd")
        state = s0.detach().clone()
        for t in range(20):
            ot = lightning_attn_decode(x["q"][:, t], x["k"][:, t], x["v"][:, t], state, **dec, scale=0.7,
                                       layout="bnhd")
            assert_close(_np(ot), _np(o[:, t]), 1e-4, "decode step %d" % t)
        assert_close(_np(state), _np(sN), 1e-4, "decode state")
    sN2 = lightning_attn_state(x["k"], x["v"], **dec, initial_state=s0, layout="bnhd")
    assert_close(_np(sN2), _np(sN), 1e-4, "state op")
    w = torch.randn(sN2.shape, device=device)
    (sN2 * w).sum().backward()
    zero = np.zeros(x["q"].shape[:3] + (8,))
    ref = reference(_np(x["q"]), _np(x["k"]), _np(x["v"]), ld=-_np(dec["s"]), initial_state=_np(s0),
                    layout="bnhd", d_o=zero, d_final_state=_np(w))
    for n in ("k", "v"):
        assert_close(_np(x[n].grad), ref["d" + n], 2e-4, "state op d" + n)
    assert_close(_np(dec["s"].grad), -ref["d_ld"].reshape(dec["s"].shape), 2e-4, "state op ds")
    assert_close(_np(s0.grad), ref["d_initial_state"], 2e-4, "state op d_initial_state")


def test_opcheck():
    """Schemas, fake (meta) implementations and autograd registration of every op."""
    x, dec, s0 = make(1, 2, 33, 16, 16, "token", "bhnd", torch.float32, "cpu", seed=4)
    q, k, v = (x[n] for n in ("q", "k", "v"))
    ld = dec["ld"]
    ops = torch.ops.lightning_attn
    torch.library.opcheck(ops.fwd.default, (q, k, v, ld, None, None, s0, None, 0.5, "bhnd", True))
    d_o = torch.randn(1, 2, 33, 16)
    # The backward op has no backward of its own (no double backward): checked on plain tensors.
    qd, kd, vd, ldd, s0d = (t.detach() for t in (q, k, v, ld, s0))
    torch.library.opcheck(ops.bwd.default, (qd, kd, vd, ldd, None, None, s0d, None, d_o, None, 0.5, "bhnd", True,
                                            True))
    torch.library.opcheck(ops.state_fwd.default, (k, v, ld, None, None, s0, None, "bhnd"))
    state = torch.randn(1, 2, 16, 16)
    q1, k1, v1 = (t[:, :, :1].detach() for t in (q, k, v))
    torch.library.opcheck(ops.decode.default, (q1, k1, v1, state, ld[:, :, :1].detach(), None, None, 1.0, "bhnd"))


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_fullgraph(device):
    """A model step using the op traces into one graph (no graph break) and
    gives the eager results.  CPU uses the aot_eager backend (no C++ build
    in the test); CUDA compiles with inductor."""
    x, dec, s0 = make(2, 2, 64, 32, 32, "s", "bhnd", torch.float32, device, seed=8)
    w = torch.randn(32, 32, device=device)

    def step(q, k, v, s, s0):
        o, sN = lightning_attn_func(q @ w, k, v, s, initial_state=s0, output_final_state=True)
        return (o.square().mean() + sN.square().mean())

    backend = "inductor" if device == "cuda" else "aot_eager"
    compiled = torch.compile(step, fullgraph=True, backend=backend)
    args = (x["q"], x["k"], x["v"], dec["s"], s0)
    loss = compiled(*args)
    grads = torch.autograd.grad(loss, args)
    loss_e = step(*args)
    grads_e = torch.autograd.grad(loss_e, args)
    assert torch.allclose(loss, loss_e, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, grads_e):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_autocast(device):
    x, dec, _ = make(1, 2, 40, 32, 32, "s", "bhnd", torch.float32, device, seed=12)
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        o = lightning_attn_func(x["q"], x["k"], x["v"], **dec)
    assert o.dtype == torch.bfloat16
    o.float().sum().backward()
    assert x["q"].grad.dtype == torch.float32 and torch.isfinite(x["q"].grad).all()
    ref = reference(_np(x["q"]), _np(x["k"]), _np(x["v"]), ld=-_np(dec["s"]))
    assert_close(_np(o), ref["o"], TOL[torch.bfloat16], "o under autocast")


@pytest.mark.parametrize("device", DEVICES)
def test_errors(device):
    x, _, _ = make(1, 2, 8, 16, 16, "none", "bhnd", torch.float32, device)
    q, k, v = (x[n].detach() for n in ("q", "k", "v"))
    bad = torch.tensor([-0.1, 0.2], device=device)
    if device == "cuda":
        # Device values are checked without waiting: the error comes from check_errors (or the next call).
        lightning_attn_func(q, k, v, ld=bad)
        with pytest.raises(la.LightningAttnValueError, match="LA_STATUS_BAD_DECAY.*ld\\[0,1,0,0\\] = 0.2"):
            la.check_errors()
    else:
        with pytest.raises(la.LightningAttnValueError, match="LA_STATUS_BAD_DECAY"):
            lightning_attn_func(q, k, v, ld=bad)
    with pytest.raises(ValueError, match="s .* or ld"):
        lightning_attn_func(q, k, v, torch.ones(2, device=device), ld=-torch.ones(2, device=device))
    with pytest.raises(la.LightningAttnValueError, match="BAD_SHAPE"):
        lightning_attn_func(q, k, v[:, :1])
    with pytest.raises(ValueError, match="variant"):
        lightning_attn_func(q, k, v, variant="magic")
    with pytest.raises(la.LightningAttnError, match="300"):
        big = torch.randn(1, 2, 8, 300, device=device)
        lightning_attn_func(big, big, v)
    if device == "cuda":
        with pytest.raises(ValueError, match="one device"):
            lightning_attn_func(q, k.cpu(), v)


@pytest.mark.skipif("cuda" not in DEVICES, reason="no GPU")
@pytest.mark.parametrize("B,H,N,D", [(4, 32, 8192, 64), (1, 16, 32768, 128), (2, 8, 3000, 256)])
def test_cuda_large_shapes_against_the_cpu_backend(B, H, N, D):
    """Shapes where the GPU plan cuts sequences into segments or head dims into
    tiles (workspace from PyTorch's allocator, sized by la_workspace_size),
    against the CPU backend on the same bf16 inputs."""
    g = torch.Generator().manual_seed(B * N + D)
    q, k, v = ((torch.randn(B, H, N, D, generator=g) / D ** 0.5).bfloat16().requires_grad_() for _ in range(3))
    s = la.build_slope_tensor(H).requires_grad_()
    s0 = torch.randn(B, H, D, D, generator=g).requires_grad_()
    w = torch.randn(B, H, N, D, generator=g)
    res = {}
    for dev in ("cpu", "cuda"):
        xs = [t.detach().to(dev).requires_grad_() for t in (q, k, v, s, s0)]
        o, sN = lightning_attn_func(*xs[:4], initial_state=xs[4], output_final_state=True)
        ((o.float() * w.to(dev)).sum() + sN.sum()).backward()
        res[dev] = [_np(o), _np(sN)] + [_np(t.grad) for t in xs]
    names = ["o", "final_state", "dq", "dk", "dv", "ds", "d_initial_state"]
    for name, a, b in zip(names, res["cuda"], res["cpu"]):
        if name != "ds":
            assert_close(a, b, 1e-2, name)
    # The decay gradient sums terms that cancel (by orders of magnitude at long
    # N with weak decay), so, as in the C case table (tests/test_backend.c,
    # TOL_BF16_TC), it is held to its terms' scale: sum |q . dq| + |k . dk| per
    # head, within 8 bf16 units (the GPU rounds the state copies it dots with).
    q64, k64 = (t.detach().double() for t in (q, k))
    dq64, dk64 = (torch.from_numpy(res["cpu"][i]) for i in (2, 3))
    scale = ((q64 * dq64).abs() + (k64 * dk64).abs()).sum(dim=(0, 2, 3)).numpy()
    err = np.abs(res["cuda"][5] - res["cpu"][5]).reshape(-1) / scale
    print("B%d H%d N%d D%d: ds error %.2e of its terms' scale" % (B, H, N, D, err.max()))
    assert np.all(np.isfinite(res["cuda"][5])) and err.max() <= 8 * 2.0 ** -8, \
        "ds: worst error %.3g of its terms' scale (head %d)" % (err.max(), err.argmax())


@pytest.mark.skipif("cuda" not in DEVICES, reason="no GPU")
def test_cuda_backward_is_deterministic_and_uses_the_current_stream():
    x, dec, s0 = make(2, 4, 1000, 64, 64, "s", "bhnd", torch.bfloat16, "cuda", seed=13)
    stream = torch.cuda.Stream()
    runs = []
    for _ in range(2):
        for t in list(x.values()) + list(dec.values()) + [s0]:
            t.grad = None
        with torch.cuda.stream(stream):
            o, sN = lightning_attn_func(x["q"], x["k"], x["v"], **dec, initial_state=s0, output_final_state=True)
            (o.float().square().sum() + sN.sum()).backward()
        stream.synchronize()
        runs.append([t.grad.clone() for t in list(x.values()) + list(dec.values()) + [s0]])
    for a, b in zip(*runs):
        assert torch.equal(a, b)
