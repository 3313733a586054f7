"""The binding itself: the eager path (one C call per op call, handles per
thread / device / stream, workspace reuse), errors Python must catch before
the library (meta and wrong-device tensors, N = 0, float offsets, a missing
v), value-check modes, torch.compile with dynamic shapes, the decay slopes,
`python -m lightning_attn --plan`; on CUDA: graph capture and replay, calls
that never synchronise, deferred value errors, device cu_seqlens."""

import math
import os
import subprocess
import sys
import threading

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: the PyTorch binding tests are skipped")

import lightning_attn as la  # noqa: E402
from lightning_attn import _clib as C  # noqa: E402
from lightning_attn import _runner as R  # noqa: E402
from lightning_attn import lightning_attn_decode, lightning_attn_func, lightning_attn_state  # noqa: E402

CUDA = torch.cuda.is_available() and la.backend_available(la.BACKEND_CUDA)
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a GPU and the library's CUDA backend")


def qkv(B=2, H=3, N=40, D=16, E=8, device="cpu", dtype=torch.float32, grad=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = [(torch.randn(B, H, N, X, generator=g) / X ** 0.5).to(dtype).to(device) for X in (D, D, E)]
    return [x.requires_grad_() for x in xs] if grad else xs


def slopes(H, device="cpu"):
    return la.build_slope_tensor(H).to(device)


# ---- the eager path --------------------------------------------------------------------------

def test_eager_matches_the_custom_ops():
    """The eager path (autograd.Function over la_execute) and the custom ops
    (what torch.compile traces) give identical numbers: one runner."""
    q, k, v = qkv(grad=True)
    s = slopes(3)
    s0 = torch.randn(2, 3, 16, 8, requires_grad=True)
    o, sN = lightning_attn_func(q, k, v, s, initial_state=s0, output_final_state=True, scale=0.5)
    w = torch.randn(o.shape)
    g = torch.autograd.grad((o * w).sum() + sN.sum(), (q, k, v, s0))
    ops = torch.ops.lightning_attn
    o2, sN2 = ops.fwd(q, k, v, -s, None, None, s0, None, 0.5, "bhnd", True)
    g2 = torch.autograd.grad((o2 * w).sum() + sN2.sum(), (q, k, v, s0))
    assert torch.equal(o, o2) and torch.equal(sN, sN2)
    for a, b in zip(g, g2):
        assert torch.equal(a, b)


def test_one_handle_per_thread_and_the_struct_is_cleared_between_ops():
    """A backward on a handle leaves its output slots filled; the forward
    after it must not see them (the library would report an overlap or
    plan for tensors that are gone).  Threads get handles of their own."""
    q, k, v = qkv(grad=True)
    s = slopes(3)
    o = lightning_attn_func(q, k, v, s)
    o.sum().backward()
    with torch.no_grad():
        o2 = lightning_attn_func(q, k, v, s)
    assert torch.equal(o, o2)
    mine = R._cpu_handle()
    theirs, errors = [], []

    def work():
        try:
            with torch.no_grad():
                theirs.append((R._cpu_handle(), lightning_attn_func(q, k, v, s)))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert not errors, errors
    assert theirs[0][0] is not mine and torch.equal(theirs[0][1], o2)


def test_workspace_is_cached_and_grown():
    h = R._cpu_handle()
    with torch.no_grad():
        lightning_attn_func(*qkv(N=30), slopes(3))
        small = h.wsn
        ptr = h.wsp
        lightning_attn_func(*qkv(N=30), slopes(3))
        assert h.wsp == ptr, "the same problem must reuse the cached workspace"
        big = qkv(B=4, H=8, N=700, D=64, E=64)
        o = lightning_attn_func(*big, slopes(8))
        assert h.wsn >= small and h.wsn >= R.last_workspace_bytes[C.OP_FORWARD]
    ref = lightning_attn_func(*[x.double() for x in big], slopes(8))
    assert torch.allclose(o.double(), ref, rtol=1e-4, atol=1e-4)


def test_rate_cache_follows_in_place_changes():
    """ld = -s is cached for a rate that needs no gradient; changing s in
    place (its version counter moves) must be seen."""
    q, k, v = qkv()
    s = slopes(3)
    with torch.no_grad():
        a = lightning_attn_func(q, k, v, s)
        s.mul_(4)
        b = lightning_attn_func(q, k, v, s)
        c = lightning_attn_func(q, k, v, ld=-s)
    assert not torch.equal(a, b) and torch.equal(b, c)


def test_max_seqlen_and_int32_offsets():
    q, k, v = qkv(B=1, N=50)
    s = slopes(3)
    cu64 = torch.tensor([0, 20, 20, 50])
    ref = lightning_attn_func(q, k, v, s, cu_seqlens=cu64)
    assert torch.equal(ref, lightning_attn_func(q, k, v, s, cu_seqlens=cu64.int(), max_seqlen=30))
    assert torch.equal(ref, lightning_attn_func(q, k, v, s, cu_seqlens=cu64[::1].clone()))
    sN = lightning_attn_state(k, v, s, cu_seqlens=cu64, max_seqlen=30)
    assert sN.shape == (3, 3, 16, 8)


# ---- errors -----------------------------------------------------------------------------------

def test_small_errors_are_specific():
    q, k, v = qkv()
    s = slopes(3)
    with pytest.raises(ValueError, match="v is required"):
        lightning_attn_state(k, None, s)
    with pytest.raises(ValueError, match="v is required"):
        lightning_attn_func(q, k, None, s)
    q0, k0, v0 = qkv(N=0)
    with pytest.raises(la.LightningAttnValueError, match="sequence length is 0"):
        lightning_attn_func(q0, k0, v0, s)
    with pytest.raises(la.LightningAttnValueError, match="sequence length is 0"):
        lightning_attn_state(k0, v0, s)
    q1, k1, v1 = qkv(B=1)
    with pytest.raises(TypeError, match="cu_seqlens must be an int64"):
        lightning_attn_func(q1, k1, v1, s, cu_seqlens=torch.tensor([0.0, 10.0, 40.0]))
    with pytest.raises(ValueError, match="cu_seqlens must be 1-d"):
        lightning_attn_func(q1, k1, v1, s, cu_seqlens=torch.tensor([0]))
    with pytest.raises(ValueError, match="batch = 1"):
        lightning_attn_func(q, k, v, s, cu_seqlens=torch.tensor([0, 10, 40]))
    with pytest.raises(la.LightningAttnValueError, match="BAD_SEQLENS"):
        lightning_attn_func(q1, k1, v1, s, cu_seqlens=torch.tensor([0, 30, 20, 40]))
    with pytest.raises(ValueError, match="set_value_checks takes"):
        la.set_value_checks("sometimes")
    with pytest.raises(ValueError, match="layout"):
        lightning_attn_func(q, k, v, s, layout="nhd")


@pytest.mark.parametrize("where", ["q", "k", "v", "s", "initial_state", "all"])
def test_meta_tensors_are_refused(where):
    """A meta tensor has no data: today's library would see a NULL pointer
    (a meta decay would read as "no decay")."""
    q, k, v = qkv()
    x = {"q": q, "k": k, "v": v, "s": slopes(3), "initial_state": torch.zeros(2, 3, 16, 8)}
    if where == "all":
        x = {n: t.to("meta") for n, t in x.items()}
    else:
        x[where] = x[where].to("meta")
    with pytest.raises(ValueError, match="meta"):
        lightning_attn_func(x["q"], x["k"], x["v"], x["s"], initial_state=x["initial_state"])


@needs_cuda
@pytest.mark.parametrize("where", ["k", "v", "s", "initial_state", "cu_seqlens"])
def test_wrong_device_is_refused(where):
    q, k, v = qkv(B=1, device="cuda")
    x = {"k": k, "v": v, "s": slopes(3, "cuda"), "initial_state": torch.zeros(3, 3, 16, 8, device="cuda")}
    cu = torch.tensor([0, 10, 20, 40], device="cuda")
    if where == "cu_seqlens":
        if torch.cuda.device_count() < 2:
            pytest.skip("a second GPU is needed for offsets on another GPU (host offsets are allowed)")
        cu = cu.to("cuda:1")
    else:
        x[where] = x[where].cpu()
    with pytest.raises(ValueError, match="device|GPU"):
        lightning_attn_func(q, x["k"], x["v"], x["s"], initial_state=x["initial_state"], cu_seqlens=cu)


# ---- torch.compile ------------------------------------------------------------------------------

def test_compile_dynamic_one_graph_for_twelve_lengths():
    """dynamic=True, fullgraph=True: 12 sequence lengths and 3 batch sizes,
    forward and backward, one compile (before, every length specialised
    and the recompile limit ended it)."""
    from torch._dynamo.testing import CompileCounterWithBackend
    torch._dynamo.reset()
    s = slopes(2)

    def f(q, k, v, s, s0):
        o, sN = lightning_attn_func(q, k, v, s, initial_state=s0, output_final_state=True)
        return o.square().mean() + sN.square().mean() + lightning_attn_state(k, v, s).mean()

    cnt = CompileCounterWithBackend("aot_eager")
    cf = torch.compile(f, fullgraph=True, dynamic=True, backend=cnt)
    # Sizes all distinct at the first call: duck sizing would otherwise tie equal sizes together.
    lengths = [5, 17, 33, 64, 65, 100, 127, 128, 200, 257, 300, 512]
    compiles = None
    for i, N in enumerate(lengths):
        B = 3 + i % 3
        q, k, v = qkv(B=B, H=2, N=N, D=16, E=8, grad=True, seed=i)
        s0 = torch.randn(B, 2, 16, 8, requires_grad=True)
        loss = cf(q, k, v, s, s0)
        g = torch.autograd.grad(loss, (q, k, v, s0))
        loss_e = f(q, k, v, s, s0)
        g_e = torch.autograd.grad(loss_e, (q, k, v, s0))
        assert torch.allclose(loss, loss_e, rtol=1e-5, atol=1e-6)
        for a, b in zip(g, g_e):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
        if compiles is None:
            compiles = cnt.frame_count
        assert cnt.frame_count == compiles, "recompiled at N = %d (B = %d)" % (N, B)


def test_compile_decode_and_packed():
    torch._dynamo.reset()
    s = slopes(3)

    def step(q, k, v, state, s):
        return lightning_attn_decode(q, k, v, state, s)

    def packed(q, k, v, s, cu):
        return lightning_attn_func(q, k, v, s, cu_seqlens=cu).sum()

    cstep = torch.compile(step, fullgraph=True, backend="aot_eager")
    cpacked = torch.compile(packed, fullgraph=True, dynamic=True, backend="aot_eager")
    q, k, v = qkv(B=2, N=1)
    st1, st2 = torch.zeros(2, 3, 16, 8), torch.zeros(2, 3, 16, 8)
    assert torch.allclose(cstep(q, k, v, st1, s), step(q, k, v, st2, s))
    assert torch.equal(st1, st2)
    for N in (30, 47, 90):
        q, k, v = qkv(B=1, N=N)
        cu = torch.tensor([0, 7, N])
        assert torch.allclose(cpacked(q, k, v, s, cu), packed(q, k, v, s, cu), rtol=1e-5)


# ---- slopes ---------------------------------------------------------------------------------------

HEADS = [1, 2, 3, 5, 6, 8, 12, 16, 20, 24, 32, 40, 48, 64, 96]


def alibi_closed_form(n):
    """The original get_slopes written out: p = 2^floor(log2 n) slopes
    2^(-8 (h + 1) / p), then every other slope of 2p heads, 2^(-8 (2i + 1) / (2p))."""
    p = 2 ** int(math.floor(math.log2(n)))
    return [2.0 ** (-8.0 * (h + 1) / p) for h in range(p)] + \
        [2.0 ** (-8.0 * (2 * i + 1) / (2 * p)) for i in range(n - p)]


@pytest.mark.parametrize("H", HEADS)
def test_slopes_match_the_original_formula(H):
    want = alibi_closed_form(H)
    got = la.alibi_slopes(H)
    assert len(got) == H
    for a, b in zip(got, want):
        assert abs(a - b) <= 1e-12 * b
    t = la.build_slope_tensor(H)
    assert t.shape == (H, 1, 1) and t.dtype == torch.float32
    assert torch.equal(t.flatten(), torch.tensor(want, dtype=torch.float32))


@pytest.mark.parametrize("H", HEADS)
@pytest.mark.parametrize("L", [2, 3, 4, 24, 80])
def test_slopes_by_layer_match_minimax(H, L):
    """MiniMax-Text-01 / TransNormerLLM: slope x (1 - l / (L - 1) + 1e-5),
    l the decoder layer's index among all L layers."""
    for layer in sorted({0, 1, L // 2, L - 2, L - 1}):
        f = 1.0 - layer / (L - 1) + 1e-5
        want = torch.tensor([x * f for x in alibi_closed_form(H)], dtype=torch.float32)
        got = la.build_slope_tensor(H, layer_idx=layer, num_layers=L).flatten()
        assert torch.allclose(got, want, rtol=1e-6, atol=0), (H, L, layer)
    # the 3-layer middle layer: half the rates
    if L == 3:
        assert abs(la.layer_factor(1, 3) - 0.50001) < 1e-12


def test_slopes_single_layer_and_errors():
    assert la.layer_factor(0, 1) == 1.0 + 1e-5
    with pytest.raises(ValueError):
        la.build_slope_tensor(4, layer_idx=1)
    with pytest.raises(ValueError):
        la.build_slope_tensor(4, layer_idx=3, num_layers=3)
    with pytest.raises(ValueError):
        la.alibi_slopes(0)


# ---- python -m lightning_attn --plan ---------------------------------------------------------------

def _cli(*args):
    env = dict(os.environ)
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(la.__file__)))
    env["PYTHONPATH"] = pkg + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "lightning_attn"] + list(args), capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_plan_and_summary():
    r = _cli()
    assert r.returncode == 0 and "CPU backend" in r.stdout, r.stderr
    r = _cli("--plan", "--op", "forward", "-B", "1", "-H", "2", "-N", "256", "-D", "64", "-E", "64", "--dtype",
             "f32", "--decay", "scalar_head", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip(), "no plan printed"
    for op in ("backward", "decode", "state_forward", "state_backward"):
        r = _cli("--plan", "--op", op, "-B", "2", "-H", "2", "-N", "64", "-D", "32", "--device", "cpu")
        assert r.returncode == 0 and r.stdout.strip(), (op, r.stderr)


# ---- CUDA: graphs, syncs, deferred errors, device offsets -------------------------------------------

def _graph(fn, warmup=2):
    """Capture fn on a side stream after warm-up calls on the same stream (so
    the handle of that stream exists before the capture: making one
    allocates); return (graph, outputs)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=s):
        out = fn()
    return g, out


@needs_cuda
def test_cuda_graph_forward_backward_decode_and_packed():
    B, H, N, D = 2, 4, 300, 64
    q, k, v = qkv(B, H, N, D, D, "cuda", torch.bfloat16, seed=1)
    s = slopes(H, "cuda")
    d_o = torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16)
    sq, sk, sv = (x.clone().requires_grad_() for x in (q, k, v))

    def fwd_bwd():
        for x in (sq, sk, sv):
            x.grad = None
        o = lightning_attn_func(sq, sk, sv, s)
        o.backward(d_o)
        return o, sq.grad, sk.grad, sv.grad

    g, out = _graph(fwd_bwd)
    for trial in range(2):
        new = qkv(B, H, N, D, D, "cuda", torch.bfloat16, seed=10 + trial)
        with torch.no_grad():
            for x, y in zip((sq, sk, sv), new):
                x.copy_(y)
        g.replay()
        ref = [t.detach() for t in fwd_bwd()]
        for a, b in zip(out, ref):
            assert torch.equal(a, b)

    # decode: the state a static tensor updated in place by each replay
    state = torch.zeros(B, H, D, D, device="cuda")
    q1, k1, v1 = (x[:, :, :1].contiguous() for x in (q, k, v))
    with torch.no_grad():
        g, o1 = _graph(lambda: lightning_attn_decode(q1, k1, v1, state, s))
        state.zero_()
        st_ref = torch.zeros_like(state)
        for t in range(5):
            for x, src in zip((q1, k1, v1), (q, k, v)):
                x.copy_(src[:, :, t:t + 1])
            g.replay()
            o_ref = lightning_attn_decode(q1, k1, v1, st_ref, s)
            assert torch.equal(o1, o_ref) and torch.equal(state, st_ref)

    # packed with device offsets: new offsets each replay, no sync
    q, k, v = qkv(1, H, N, D, D, "cuda", torch.bfloat16, seed=2)
    cu = torch.tensor([0, 100, 100, 300], device="cuda")
    with torch.no_grad():
        g, (o, sN) = _graph(lambda: lightning_attn_func(q, k, v, s, cu_seqlens=cu, output_final_state=True,
                                                         max_seqlen=300))
        for offs in ([0, 10, 200, 300], [0, 300, 300, 300]):
            cu.copy_(torch.tensor(offs))
            g.replay()
            o_ref, sN_ref = lightning_attn_func(q, k, v, s, cu_seqlens=torch.tensor(offs), output_final_state=True)
            assert torch.equal(o, o_ref) and torch.equal(sN, sN_ref)


@needs_cuda
def test_cuda_sync_debug_mode_catches_a_sync():
    """The no-sync tests rely on this: a .item() raises under "error"."""
    x = torch.ones(3, device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        with pytest.raises(RuntimeError):
            x.sum().item()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@needs_cuda
def test_cuda_calls_never_synchronise():
    B, H, N, D = 1, 4, 256, 64
    q, k, v = qkv(B, H, N, D, D, "cuda", torch.bfloat16, grad=True)
    s = slopes(H, "cuda")
    ld_tok = -torch.rand(B, H, N, device="cuda") * 0.1
    cu = torch.tensor([0, 50, 256], device="cuda")
    state = torch.zeros(B, H, D, D, device="cuda")
    # first calls outside: handle creation and workspace growth may allocate
    for _ in range(2):
        lightning_attn_func(q, k, v, s).float().sum().backward()
        lightning_attn_func(q, k, v, ld=ld_tok, cu_seqlens=cu, output_final_state=True)[0].float().sum().backward()
        lightning_attn_decode(q[:, :, 0].detach(), k[:, :, 0].detach(), v[:, :, 0].detach(), state, s)
        lightning_attn_state(k, v, s).sum().backward()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            lightning_attn_func(q, k, v, s).float().sum().backward()
            o, sN = lightning_attn_func(q, k, v, ld=ld_tok, cu_seqlens=cu, output_final_state=True)
            (o.float().sum() + sN.sum()).backward()
            lightning_attn_decode(q[:, :, 0].detach(), k[:, :, 0].detach(), v[:, :, 0].detach(), state, s)
            lightning_attn_state(k, v, s).sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()


@needs_cuda
def test_cuda_deferred_bad_decay_is_reported_later():
    q, k, v = qkv(1, 2, 64, 32, 32, "cuda")
    bad = torch.tensor([-0.1, 0.3], device="cuda")  # positive: out of range
    good = -slopes(2, "cuda")
    la.set_value_checks("deferred")
    # by check_errors
    lightning_attn_func(q, k, v, ld=bad)
    with pytest.raises(la.LightningAttnValueError, match="BAD_DECAY"):
        la.check_errors()
    la.check_errors()  # reported once
    lightning_attn_func(q, k, v, ld=good)
    # by the next call on the same thread and stream
    lightning_attn_func(q, k, v, ld=bad)
    torch.cuda.synchronize()
    with pytest.raises(la.LightningAttnValueError, match="BAD_DECAY"):
        lightning_attn_func(q, k, v, ld=good)
    la.check_errors("cuda")
    # sync mode: the call itself raises
    la.set_value_checks("sync")
    try:
        with pytest.raises(la.LightningAttnValueError, match="BAD_DECAY"):
            lightning_attn_func(q, k, v, ld=bad)
    finally:
        la.set_value_checks(True)
    la.check_errors(torch.device("cuda"))


@needs_cuda
def test_cuda_device_offsets_equal_host_offsets():
    H, N, D = 3, 500, 64
    q, k, v = qkv(1, H, N, D, D, "cuda", torch.bfloat16, grad=True, seed=4)
    ld = -torch.rand(1, H, N, device="cuda") * 0.2
    s0 = torch.randn(4, H, D, D, device="cuda", requires_grad=True)
    offs = [0, 1, 200, 200, 500]
    res = []
    for cu, hint in ((torch.tensor(offs), None), (torch.tensor(offs, device="cuda"), None),
                     (torch.tensor(offs, device="cuda"), 299), (torch.tensor(offs, dtype=torch.int32,
                                                                             device="cuda"), None)):
        for t in (q, k, v, s0):
            t.grad = None
        o, sN = lightning_attn_func(q, k, v, ld=ld, initial_state=s0, output_final_state=True, cu_seqlens=cu,
                                    max_seqlen=hint)
        (o.float().square().sum() + sN.sum()).backward()
        res.append([o, sN] + [t.grad.clone() for t in (q, k, v, s0)])
    for other in res[1:]:
        for a, b in zip(res[0], other):
            assert torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-3)


@needs_cuda
def test_cuda_one_handle_per_stream():
    q, k, v = qkv(1, 2, 64, 32, 32, "cuda")
    s = slopes(2, "cuda")
    o = lightning_attn_func(q, k, v, s)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        o2 = lightning_attn_func(q, k, v, s)
    side.synchronize()
    assert torch.equal(o, o2)
    assert len(R.thread_handles(torch.device("cuda"))) >= 2
