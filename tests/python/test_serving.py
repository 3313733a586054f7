"""Serving through the PyTorch ops: lightning_attn_prefill and
lightning_attn_decode with a state pool, against the fp64 reference.

Every case draws random inputs and a random pool, assigns the sequences to
random slots (padding, fresh sequences, separate write slots), runs the call
and checks o (padding rows exactly zero), every written slot against the
reference state, and every other slot bit-unchanged.  Then: prefill and
decode steps continuing from the pool equal one forward; value-major and
bf16 pools; multi-token decode and a commit of the accepted tokens equal
one-token steps bit for bit; checkpoints; bad slots raise LA_STATUS_BAD_SLOT
having written nothing; the handle's struct carries no pool or checkpoint
interval into the next call; torch.compile and CUDA-graph replay of a pooled
decode step.  CUDA cases run where a GPU is present and skip what the
backend declines (LightningAttnNotSupported)."""

import ctypes
import functools
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: the serving op tests are skipped")

import lightning_attn as la  # noqa: E402
from lightning_attn import _runner as R  # noqa: E402
from lightning_attn import lightning_attn_decode, lightning_attn_func, lightning_attn_prefill  # noqa: E402
from checks import assert_close  # noqa: E402
from reference import reference  # noqa: E402

CUDA = torch.cuda.is_available() and la.backend_available(la.BACKEND_CUDA)
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a GPU and the library's CUDA backend")


def _devices():
    want = os.environ.get("LA_PY_DEVICES")
    devs = want.split(",") if want else ["cpu"] + (["cuda"] if CUDA else [])
    return [d for d in devs if d == "cpu" or CUDA]


DEVICES = _devices()
TOL = 1e-4          # relative L2 of f32 results against fp64
BF16_UNIT = 2.0 ** -8  # a bf16 rounding is at most half of this, relative


def served(fn):
    """Skip a CUDA case the backend declines (a 2xx), rather than fail it:
    the CUDA backend takes the serving calls over as it gains them."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except la.LightningAttnNotSupported as e:
            if kwargs.get("device", "cpu") == "cpu":
                raise
            pytest.skip("the CUDA backend declines this call: %s" % e)
    return run


def _np(t):
    return None if t is None else t.detach().double().cpu().numpy()


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def tokens(B, H, N, D, E, layout, device, seed, dtype=torch.float32):
    """q, k, v of random values (never zeros), [B, H, N, *] or [B, N, H, *]."""
    g = _gen(seed)
    shp = (lambda X: (B, H, N, X)) if layout == "bhnd" else (lambda X: (B, N, H, X))
    return [(torch.randn(shp(X), generator=g) / X ** 0.5).to(dtype).to(device) for X in (D, D, E)]


def decays(kind, B, H, N, D, E, layout, device, seed):
    """(the op's decay kwargs, the reference's): per head, per token, or per
    key and value channel; random rates, never zero."""
    g = _gen(seed + 1000)
    u = lambda *s: torch.empty(s).uniform_(0.02, 0.4, generator=g)
    tok = (B, H, N) if layout == "bhnd" else (B, N, H)
    if kind == "s":
        op = {"s": u(H, 1, 1)}
    elif kind == "token":
        op = {"ld": -u(*tok)}
    else:
        op = {"ldk": -u(*tok, D), "ldv": -u(*tok, E) / 4}
    op = {n: t.to(device) for n, t in op.items()}
    ref = {n: _np(t) for n, t in op.items()}
    if "s" in ref:
        ref["ld"] = -ref.pop("s")
    return op, ref


def random_pool(num_slots, H, D, E, device, seed, dtype=torch.float32):
    g = _gen(seed + 2000)
    return torch.randn(num_slots, H, D, E, generator=g).to(dtype).to(device)


def assignment(S, num_slots, seed, pad=(), fresh=(), moved=(), dropped=()):
    """Slots of S sequences drawn from a random permutation of the pool:
    read slots, write slots (moved sequences write a slot nobody reads,
    dropped ones write none) and has_initial_state (fresh ones start from
    zeros).  Padding sequences get -1."""
    perm = torch.randperm(num_slots, generator=_gen(seed + 3000)).tolist()
    read = perm[:S]
    spare = perm[S:]
    write = list(read)
    for i in moved:
        write[i] = spare.pop()
    for i in dropped:
        write[i] = -1
    for i in pad:
        read[i] = write[i] = -1
    init = [0 if i in fresh else 1 for i in range(S)]
    return read, write, init


def ref_step(q, k, v, refdec, pool64, read, write, init, scale, layout, cu=None):
    """The fp64 reference of a pooled call: o (padding zero) and the pool
    after it (numpy, float64)."""
    S = len(read)
    H, D, E = pool64.shape[1:]
    s0 = np.zeros((S, H, D, E))
    for i in range(S):
        if read[i] >= 0 and init[i]:
            s0[i] = pool64[read[i]]
    r = reference(_np(q), _np(k), _np(v), **refdec, scale=scale, initial_state=s0, layout=layout,
                  cu_seqlens=cu)
    o = r["o"]
    new = pool64.copy()
    for i in range(S):
        if read[i] < 0:
            if cu is None:
                o[i] = 0
            else:
                span = slice(cu[i], cu[i + 1])
                if layout == "bhnd":
                    o[:, :, span] = 0
                else:
                    o[:, span] = 0
        elif write[i] >= 0:
            new[write[i]] = r["final_state"][i]
    return o, new


def idx(values, dtype, device):
    return torch.tensor(values, dtype=dtype, device=device)


def check_pool(pool, before, want64, written, tol, what):
    """Written slots against the reference, every other slot bit-unchanged."""
    got = pool.detach().float().cpu()
    for slot in range(pool.shape[0]):
        if slot in written:
            assert_close(got[slot].double().numpy(), want64[slot], tol, "%s: slot %d" % (what, slot))
        else:
            assert torch.equal(got[slot], before[slot].float().cpu()), "%s: slot %d changed" % (what, slot)


def check_padding(o, pad, layout, cu=None):
    for i in pad:
        if cu is None:
            rows = o[i]
        else:
            span = slice(cu[i], cu[i + 1])
            rows = o[:, :, span] if layout == "bhnd" else o[:, span]
        assert torch.count_nonzero(rows) == 0, "padding sequence %d: o is not zero" % i


# ---- prefill -----------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["bhnd", "bnhd"])
@pytest.mark.parametrize("kind", ["s", "token", "vector"])
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@served
def test_prefill_batch_by_slot(device, layout, kind, index_dtype):
    B, H, N, D, E, slots_n = 5, 2, 70, 16, 8, 11
    seed = len(layout) + 7 * len(kind) + (index_dtype == torch.int64)
    q, k, v = tokens(B, H, N, D, E, layout, device, seed)
    dec, refdec = decays(kind, B, H, N, D, E, layout, device, seed)
    pool = random_pool(slots_n, H, D, E, device, seed)
    before = pool.clone()
    read, write, init = assignment(B, slots_n, seed, pad=(1,), fresh=(3,), moved=(0,), dropped=(4,))
    o = lightning_attn_prefill(q, k, v, **dec, scale=0.75, pool=pool, slots=idx(read, index_dtype, device),
                               write_slots=idx(write, index_dtype, device),
                               has_initial_state=idx(init, torch.bool, device), layout=layout)
    o_ref, want = ref_step(q, k, v, refdec, _np(before), read, write, init, 0.75, layout)
    assert_close(_np(o), o_ref, TOL, "o")
    check_padding(o, (1,), layout)
    check_pool(pool, before, want, {w for w in write if w >= 0}, TOL, "pool")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["bhnd", "bnhd"])
@served
def test_prefill_packed_by_slot_and_the_state_only_pass(device, layout):
    H, D, E, slots_n = 3, 16, 16, 9
    cu = [0, 37, 37, 101, 102, 190]
    N, S = cu[-1], len(cu) - 1
    q, k, v = tokens(1, H, N, D, E, layout, device, 21)
    dec, refdec = decays("token", 1, H, N, D, E, layout, device, 21)
    pool = random_pool(slots_n, H, D, E, device, 21)
    before = pool.clone()
    read, write, init = assignment(S, slots_n, 21, pad=(3,), fresh=(0,), moved=(2,))
    args = dict(slots=idx(read, torch.int64, device), write_slots=idx(write, torch.int64, device),
                has_initial_state=idx(init, torch.uint8, device), cu_seqlens=torch.tensor(cu, device=device),
                layout=layout)
    o = lightning_attn_prefill(q, k, v, **dec, scale=0.5, pool=pool, **args)
    o_ref, want = ref_step(q, k, v, refdec, _np(before), read, write, init, 0.5, layout, cu=cu)
    assert_close(_np(o), o_ref, TOL, "o")
    check_padding(o, (3,), layout, cu)
    written = {w for w in write if w >= 0}
    check_pool(pool, before, want, written, TOL, "pool")
    # The state-only pass (q = None) writes the same states and returns no o.
    pool2 = before.clone()
    assert lightning_attn_prefill(None, k, v, **dec, pool=pool2, **args) is None
    check_pool(pool2, before, want, written, TOL, "state-only pool")


# ---- decode --------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["bhnd", "bnhd"])
@pytest.mark.parametrize("T", [1, 3])
@pytest.mark.parametrize("kind", ["s", "token", "vector"])
@served
def test_decode_by_slot(device, layout, T, kind):
    B, H, D, E, slots_n = 6, 2, 32, 16, 13
    seed = 40 + T + len(layout) + len(kind)
    q, k, v = tokens(B, H, T, D, E, layout, device, seed)
    dec, refdec = decays(kind, B, H, T, D, E, layout, device, seed)
    pool = random_pool(slots_n, H, D, E, device, seed)
    before = pool.clone()
    read, write, init = assignment(B, slots_n, seed, pad=(2, 5), fresh=(1,), moved=(3,), dropped=(4,))
    o = lightning_attn_decode(q, k, v, pool, **dec, scale=0.9, layout=layout, slots=idx(read, torch.int32, device),
                              write_slots=idx(write, torch.int32, device),
                              has_initial_state=idx(init, torch.bool, device))
    o_ref, want = ref_step(q, k, v, refdec, _np(before), read, write, init, 0.9, layout)
    assert o.shape == v.shape
    assert_close(_np(o), o_ref, TOL, "o")
    check_padding(o, (2, 5), layout)
    check_pool(pool, before, want, {w for w in write if w >= 0}, TOL, "pool")


@pytest.mark.parametrize("device", DEVICES)
@served
def test_decode_single_token_squeezed_with_token_decays(device):
    """[B, H, *] tokens with their per-token decays [B, H] / [B, H, D] /
    [B, H, E]: the token dimension is put back, o squeezed."""
    B, H, D, E, slots_n = 3, 2, 16, 16, 5
    q, k, v = tokens(B, H, 1, D, E, "bhnd", device, 60)
    dec, refdec = decays("vector", B, H, 1, D, E, "bhnd", device, 60)
    pool = random_pool(slots_n, H, D, E, device, 60)
    before = pool.clone()
    slots = idx([4, 0, 2], torch.int64, device)
    o = lightning_attn_decode(q[:, :, 0], k[:, :, 0], v[:, :, 0], pool, ldk=dec["ldk"][:, :, 0],
                              ldv=dec["ldv"][:, :, 0], slots=slots)
    o_ref, want = ref_step(q, k, v, refdec, _np(before), [4, 0, 2], [4, 0, 2], [1, 1, 1], 1.0, "bhnd")
    assert o.shape == (B, H, E)
    assert_close(_np(o), o_ref[:, :, 0], TOL, "o")
    check_pool(pool, before, want, {4, 0, 2}, TOL, "pool")
    # a scalar per token [B, H]
    ld = -torch.rand(B, H, generator=_gen(61)).to(device) * 0.3
    pool = before.clone()
    o = lightning_attn_decode(q[:, :, 0], k[:, :, 0], v[:, :, 0], pool, ld=ld, slots=slots)
    o_ref, want = ref_step(q, k, v, {"ld": _np(ld)[:, :, None]}, _np(before), [4, 0, 2], [4, 0, 2], [1, 1, 1], 1.0,
                           "bhnd")
    assert_close(_np(o), o_ref[:, :, 0], TOL, "o, scalar per token")
    check_pool(pool, before, want, {4, 0, 2}, TOL, "pool, scalar per token")


@pytest.mark.parametrize("device", DEVICES)
def test_dense_decode_of_several_tokens(device):
    """Without slots: the dense float32 state, now of T >= 1 tokens."""
    B, H, T, D, E = 2, 3, 5, 16, 8
    q, k, v = tokens(B, H, T, D, E, "bnhd", device, 70)
    dec, refdec = decays("token", B, H, T, D, E, "bnhd", device, 70)
    s0 = random_pool(B, H, D, E, device, 70)
    state = s0.clone()
    o = lightning_attn_decode(q, k, v, state, **dec, scale=0.6, layout="bnhd")
    r = reference(_np(q), _np(k), _np(v), **refdec, scale=0.6, initial_state=_np(s0), layout="bnhd")
    assert_close(_np(o), r["o"], TOL, "o")
    assert_close(_np(state), r["final_state"], TOL, "state")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["bhnd", "bnhd"])
@served
def test_prefill_then_decode_steps_equal_one_forward(device, layout):
    """A served sequence: prefill of the prompt into fresh slots, then
    one-token and three-token decode steps from the pool, each writing the
    state to another slot of a random permutation: the outputs and the
    last state are those of one forward over the whole sequence."""
    B, H, D, E, slots_n, P = 3, 2, 16, 16, 12, 67
    steps = [1, 1, 3, 1, 3]
    N = P + sum(steps)
    q, k, v = tokens(B, H, N, D, E, layout, device, 80)
    dec, refdec = decays("token", B, H, N, D, E, layout, device, 80)
    cut = (lambda x, a, b: x[:, :, a:b]) if layout == "bhnd" else (lambda x, a, b: x[:, a:b])
    pool = random_pool(slots_n, H, D, E, device, 80)  # garbage in the slots: the prefill must not read it
    perm = torch.randperm(slots_n, generator=_gen(80)).tolist()
    cur = perm[:B]
    o = lightning_attn_prefill(cut(q, 0, P), cut(k, 0, P), cut(v, 0, P), ld=cut(dec["ld"], 0, P), pool=pool,
                               slots=idx(cur, torch.int64, device), has_initial_state=idx([0] * B, torch.bool,
                                                                                        device), layout=layout)
    outs = [o]
    t = P
    for i, T in enumerate(steps):
        nxt = perm[B + (i % 2) * B: 2 * B + (i % 2) * B]
        outs.append(lightning_attn_decode(cut(q, t, t + T), cut(k, t, t + T), cut(v, t, t + T), pool,
                                          ld=cut(dec["ld"], t, t + T), layout=layout,
                                          slots=idx(cur, torch.int64, device),
                                          write_slots=idx(nxt, torch.int64, device)))
        cur, t = nxt, t + T
    o = torch.cat(outs, dim=2 if layout == "bhnd" else 1)
    r = reference(_np(q), _np(k), _np(v), **refdec, layout=layout)
    assert_close(_np(o), r["o"], TOL, "o over prefill and decode steps")
    assert_close(_np(pool[cur]), r["final_state"], TOL, "the last state")


# ---- pool storage --------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@served
def test_value_major_pool(device):
    """A pool stored [slots, H, E, D] passed as .transpose(-1, -2): the same
    numbers as the [slots, H, D, E] pool (bit for bit on the CPU), the
    storage written in its own layout."""
    B, H, T, D, E, slots_n = 4, 2, 2, 32, 16, 7
    q, k, v = tokens(B, H, T, D, E, "bhnd", device, 90)
    dec, _ = decays("s", B, H, T, D, E, "bhnd", device, 90)
    dense = random_pool(slots_n, H, D, E, device, 90)
    storage = dense.transpose(-1, -2).contiguous()  # [slots, H, E, D]
    read = idx([5, -1, 0, 3], torch.int32, device)
    write = idx([6, -1, 1, 3], torch.int32, device)
    o1 = lightning_attn_decode(q, k, v, dense, **dec, slots=read, write_slots=write)
    o2 = lightning_attn_decode(q, k, v, storage.transpose(-1, -2), **dec, slots=read, write_slots=write)
    exact = device == "cpu"
    for a, b, what in ((o1, o2, "o"), (dense, storage.transpose(-1, -2), "pool")):
        if exact:
            assert torch.equal(a, b), what
        else:
            assert_close(_np(b), _np(a), TOL, what)
    # and a prefill into it
    q, k, v = tokens(B, H, 100, D, E, "bhnd", device, 91)
    o1 = lightning_attn_prefill(q, k, v, **dec, pool=dense, slots=read)
    o2 = lightning_attn_prefill(q, k, v, **dec, pool=storage.transpose(-1, -2), slots=read)
    assert_close(_np(o2), _np(o1), 0 if exact else TOL, "prefill o")
    assert_close(_np(storage.transpose(-1, -2)), _np(dense), 0 if exact else TOL, "prefill pool")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", ["decode", "prefill"])
@served
def test_bf16_pool(device, op):
    """A bf16 pool: read as bf16 values, computed in fp32, the result
    stored with one bf16 rounding (elementwise within one bf16 unit of the
    reference), o unrounded (fp32 accuracy).  On the CPU the stored states
    are the f32 pool's results rounded to bf16, bit for bit."""
    B, H, D, E, slots_n = 4, 2, 32, 32, 9
    N = 3 if op == "decode" else 150
    q, k, v = tokens(B, H, N, D, E, "bhnd", device, 100)
    dec, refdec = decays("vector", B, H, N, D, E, "bhnd", device, 100)
    pool = random_pool(slots_n, H, D, E, device, 100, dtype=torch.bfloat16)
    before = pool.clone()
    f32 = pool.float()
    read, write, init = assignment(B, slots_n, 100, pad=(2,), fresh=(3,), moved=(1,))
    args = dict(slots=idx(read, torch.int64, device), write_slots=idx(write, torch.int64, device),
                has_initial_state=idx(init, torch.bool, device))
    if op == "decode":
        o = lightning_attn_decode(q, k, v, pool, **dec, **args)
        o32 = lightning_attn_decode(q, k, v, f32, **dec, **args)
    else:
        o = lightning_attn_prefill(q, k, v, **dec, pool=pool, **args)
        o32 = lightning_attn_prefill(q, k, v, **dec, pool=f32, **args)
    o_ref, want = ref_step(q, k, v, refdec, _np(before), read, write, init, 1.0, "bhnd")
    assert_close(_np(o), o_ref, TOL, "o")
    written = {w for w in write if w >= 0}
    for slot in range(slots_n):
        got = _np(pool[slot])
        if slot in written:
            err = np.abs(got - want[slot])
            bound = BF16_UNIT * np.abs(want[slot]) + 1e-5 * np.abs(want[slot]).max()
            assert np.all(err <= bound), "slot %d: %.3g over one bf16 unit" % (slot, (err - bound).max())
        else:
            assert torch.equal(pool[slot], before[slot]), "slot %d changed" % slot
    if device == "cpu":
        assert torch.equal(o, o32)
        assert torch.equal(pool, f32.to(torch.bfloat16))


# ---- speculative decoding -------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("pool_dtype", [torch.float32, torch.bfloat16])
@served
def test_draft_tokens_then_commit_equal_one_token_steps(device, pool_dtype):
    """Speculative decoding: T draft tokens keep the state after each token
    in token_slots; the next call passes num_accepted = n and starts from
    the state after the n-th accepted token.  Against n one-token steps
    from the same start: outputs and states equal, bit for bit with an f32
    pool on the CPU (within one bf16 rounding of a state otherwise)."""
    B, H, T, D, E = 4, 2, 4, 16, 16
    slots_n = B + 2 * B * T + 1
    perm = torch.randperm(slots_n, generator=_gen(110)).tolist()
    home = perm[:B]
    table = [perm[B + i * T: B + (i + 1) * T] for i in range(B)]          # [B, T] token slots
    pool = random_pool(slots_n, H, D, E, device, 110, dtype=pool_dtype)
    start = pool.clone()
    q, k, v = tokens(B, H, 2 * T, D, E, "bhnd", device, 110)
    dec, _ = decays("token", B, H, 2 * T, D, E, "bhnd", device, 110)
    ld = dec["ld"]
    token_slots = idx(table, torch.int32, device)
    slots = idx(home, torch.int32, device)
    o1 = lightning_attn_decode(q[:, :, :T], k[:, :, :T], v[:, :, :T], pool, ld=ld[:, :, :T], slots=slots,
                               token_slots=token_slots)
    # The home slots are read, not written (the states went to the token slots).
    assert torch.equal(pool[home], start[home])
    accepted = [1, T, 2, 0]  # 0: every draft rejected, start again from the home slot
    n_acc = idx(accepted, torch.int32, device)
    o2 = lightning_attn_decode(q[:, :, T:], k[:, :, T:], v[:, :, T:], pool, ld=ld[:, :, T:], slots=slots,
                               token_slots=token_slots, num_accepted=n_acc)
    # The same by one-token steps: the accepted drafts, then the new tokens.
    exact = device == "cpu" and pool_dtype == torch.float32
    for i in range(B):
        one = start[home[i]:home[i] + 1].clone()
        z = idx([0], torch.int32, device)
        steps = list(range(accepted[i])) + list(range(T, 2 * T))
        o_steps, states = [], []
        for t in steps:
            o_steps.append(lightning_attn_decode(q[i:i + 1, :, t:t + 1], k[i:i + 1, :, t:t + 1],
                                                 v[i:i + 1, :, t:t + 1], one, ld=ld[i:i + 1, :, t:t + 1],
                                                 slots=z))
            states.append(one[0].clone())
        want_o = torch.cat(o_steps, dim=2)
        got_o = torch.cat([o1[i:i + 1, :, :accepted[i]], o2[i:i + 1]], dim=2)
        # the states after the new tokens, in the token slots
        got_states = [pool[s] for s in table[i]]
        if exact:
            assert torch.equal(got_o, want_o), "sequence %d: o" % i
            for t in range(T):
                assert torch.equal(got_states[t], states[accepted[i] + t]), "sequence %d token %d" % (i, t)
        else:
            assert_close(_np(got_o), _np(want_o), 1e-2 if pool_dtype == torch.bfloat16 else TOL, "o %d" % i)
            for t in range(T):
                assert_close(_np(got_states[t]), _np(states[accepted[i] + t]),
                             2e-2 if pool_dtype == torch.bfloat16 else TOL, "sequence %d token %d" % (i, t))


# ---- checkpoints ---------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("ckpt_dtype", [torch.float32, torch.bfloat16])
@served
def test_checkpoints_equal_the_states_at_every_interval(device, packed, ckpt_dtype):
    H, D, E, c, slots_n = 2, 16, 8, 64, 8
    if packed:
        cu = [0, 130, 130, 330, 393]
        B, N = 1, cu[-1]
        seqs = [(0, cu[i], cu[i + 1]) for i in range(len(cu) - 1)]
        rows = N // c
    else:
        cu, B, N = None, 3, 200
        seqs = [(b, 0, N) for b in range(B)]
        rows = B * (N // c)
    S = len(seqs)
    q, k, v = tokens(B, H, N, D, E, "bhnd", device, 120 + packed)
    dec, refdec = decays("token", B, H, N, D, E, "bhnd", device, 120 + packed)
    pool = random_pool(slots_n, H, D, E, device, 120)
    before = pool.clone()
    read, write, init = assignment(S, slots_n, 120, fresh=(1,))
    sentinel = 4096.0  # exact in bf16
    ckpt = torch.full((rows, H, D, E), sentinel, dtype=ckpt_dtype, device=device)
    o, got = lightning_attn_prefill(q, k, v, **dec, pool=pool, slots=idx(read, torch.int64, device),
                                    has_initial_state=idx(init, torch.bool, device), checkpoint_interval=c,
                                    checkpoints=ckpt, cu_seqlens=None if cu is None else torch.tensor(cu))
    assert got is ckpt
    tol = 1e-2 if ckpt_dtype == torch.bfloat16 else TOL
    row = 0
    qn, kn, vn = _np(q), _np(k), _np(v)
    for i, (b, t0, t1) in enumerate(seqs):
        s0 = _np(before[read[i]])[None] if init[i] else None
        for m in range(1, (t1 - t0) // c + 1):
            sl = (slice(b, b + 1), slice(None), slice(t0, t0 + m * c))
            r = reference(qn[sl], kn[sl], vn[sl], ld=refdec["ld"][sl], initial_state=s0)
            assert_close(_np(ckpt[row]), r["final_state"][0], tol, "sequence %d, checkpoint %d" % (i, m))
            row += 1
    assert row < rows or not packed  # the packed case leaves rows past the last checkpoint
    assert torch.all(ckpt[row:] == sentinel), "rows past the last checkpoint were written"
    o_ref, want = ref_step(q, k, v, refdec, _np(before), read, write, init, 1.0, "bhnd", cu=cu)
    assert_close(_np(o), o_ref, TOL, "o")
    check_pool(pool, before, want, set(write), TOL, "pool")
    # None allocates float32 rows; the state-only pass fills the same rows.
    pool2 = before.clone()
    o2, ck2 = lightning_attn_prefill(None, k, v, **dec, pool=pool2, slots=idx(read, torch.int64, device),
                                     has_initial_state=idx(init, torch.bool, device), checkpoint_interval=c,
                                     cu_seqlens=None if cu is None else torch.tensor(cu))
    assert o2 is None and ck2.dtype == torch.float32 and ck2.shape == ckpt.shape
    assert_close(_np(ck2[:row]), _np(ckpt[:row]), tol, "state-only checkpoints")


@pytest.mark.parametrize("device", DEVICES)
@served
def test_checkpoints_of_prompts_shorter_than_the_interval(device):
    """No row to write: an empty checkpoints tensor (torch gives it no
    address), the prefill itself as without checkpoints."""
    B, H, N, D, E, slots_n = 2, 2, 40, 16, 8, 4
    q, k, v = tokens(B, H, N, D, E, "bhnd", device, 125)
    dec, refdec = decays("s", B, H, N, D, E, "bhnd", device, 125)
    pool = random_pool(slots_n, H, D, E, device, 125)
    before = pool.clone()
    o, ck = lightning_attn_prefill(q, k, v, **dec, pool=pool, slots=idx([3, 0], torch.int32, device),
                                   checkpoint_interval=64)
    assert ck.shape == (0, H, D, E)
    o_ref, want = ref_step(q, k, v, refdec, _np(before), [3, 0], [3, 0], [1, 1], 1.0, "bhnd")
    assert_close(_np(o), o_ref, TOL, "o")
    check_pool(pool, before, want, {3, 0}, TOL, "pool")


# ---- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@served
def test_bad_slots_raise_and_write_nothing(device):
    B, H, T, D, E, slots_n = 3, 2, 2, 16, 8, 6
    q, k, v = tokens(B, H, T, D, E, "bhnd", device, 130)
    s = la.build_slope_tensor(H).to(device)
    pool = random_pool(slots_n, H, D, E, device, 130)
    before = pool.clone()
    ckpt = torch.full((B * 1, H, D, E), 7.0, device=device)
    i32 = lambda x: idx(x, torch.int32, device)
    cases = [
        ("read slot out of range", dict(slots=i32([0, 6, 2]))),
        ("write slot out of range", dict(slots=i32([0, 1, 2]), write_slots=i32([0, 1, 99]))),
        ("a slot written twice", dict(slots=i32([0, 1, 2]), write_slots=i32([3, 3, 4]))),
        ("a slot read by one and written by another", dict(slots=i32([0, 1, 2]), write_slots=i32([1, 5, 4]))),
        ("two sequences on one slot", dict(slots=i32([2, 1, 2]))),
        ("num_accepted > T", dict(slots=i32([0, 1, 2]), token_slots=i32([[3, 4], [5, -1], [-1, -1]]),
                                  num_accepted=i32([0, 3, 0]))),
        ("a token slot written twice", dict(slots=i32([0, 1, 2]), token_slots=i32([[3, 4], [4, -1], [-1, 5]]))),
    ]
    if device == "cuda":
        la.set_value_checks("sync")  # device slots are checked like decays: sync mode raises in the call
    try:
        for what, kw in cases:
            with pytest.raises(la.LightningAttnValueError) as e:
                lightning_attn_decode(q, k, v, pool, s, **kw)
            assert e.value.status == 110 and e.value.status_name == "LA_STATUS_BAD_SLOT", (what, e.value)
            assert torch.equal(pool, before), "%s: the pool was written" % what
        qp, kp, vp = tokens(B, H, 64, D, E, "bhnd", device, 131)
        # with checkpoints where the backend writes them (the CPU), to see that they are not written either
        ck = dict(checkpoint_interval=64, checkpoints=ckpt) if device == "cpu" else {}
        for what, kw in cases[:5]:
            with pytest.raises(la.LightningAttnValueError) as e:
                lightning_attn_prefill(qp, kp, vp, s, pool=pool, **ck, **kw)
            assert e.value.status_name == "LA_STATUS_BAD_SLOT", (what, e.value)
            assert torch.equal(pool, before) and torch.all(ckpt == 7.0), "%s: written" % what
    finally:
        la.set_value_checks(True)
    # and a good call after them works
    lightning_attn_decode(q, k, v, pool, s, slots=i32([0, 1, 2]))
    assert not torch.equal(pool[:3], before[:3]) and torch.equal(pool[3:], before[3:])


def test_python_checks_what_the_library_cannot_see():
    B, H, D, E = 2, 2, 16, 8
    q, k, v = tokens(B, H, 1, D, E, "bhnd", "cpu", 140)
    pool = random_pool(4, H, D, E, "cpu", 140)
    slots = idx([0, 1], torch.int32, "cpu")
    dec = lambda **kw: lightning_attn_decode(q, k, v, pool, **kw)
    with pytest.raises(TypeError, match="int32 or int64"):
        dec(slots=torch.tensor([0.0, 1.0]))
    with pytest.raises(la.LightningAttnValueError, match="slots has shape \\[3\\], expected \\[2\\]"):
        dec(slots=idx([0, 1, 2], torch.int32, "cpu"))
    with pytest.raises(ValueError, match="contiguous"):
        dec(slots=idx([0, 9, 1, 9], torch.int64, "cpu")[::2])
    with pytest.raises(la.LightningAttnValueError, match="token_slots has shape"):
        dec(slots=slots, token_slots=idx([2, 3], torch.int32, "cpu"))
    with pytest.raises(ValueError, match="write_slots or token_slots"):
        dec(slots=slots, write_slots=slots, token_slots=idx([[2], [3]], torch.int32, "cpu"))
    with pytest.raises(ValueError, match="num_accepted needs token_slots"):
        dec(slots=slots, num_accepted=idx([1, 1], torch.int32, "cpu"))
    with pytest.raises(TypeError, match="bool or uint8"):
        dec(slots=slots, has_initial_state=idx([1, 0], torch.int32, "cpu"))
    with pytest.raises(ValueError, match="pass slots"):
        lightning_attn_decode(q, k, v, pool[:2], write_slots=slots)
    with pytest.raises(TypeError, match="float32 or bfloat16"):
        lightning_attn_decode(q, k, v, pool.double(), slots=slots)
    with pytest.raises(la.LightningAttnValueError, match="pool has shape"):
        lightning_attn_decode(q, k, v, pool[:, :, :8], slots=slots)
    with pytest.raises(la.LightningAttnValueError, match="checkpoints has shape"):
        lightning_attn_prefill(*tokens(B, H, 128, D, E, "bhnd", "cpu", 141), pool=pool, slots=slots,
                               checkpoint_interval=64, checkpoints=torch.empty(2, H, D, E))
    with pytest.raises(la.LightningAttnValueError, match="checkpoint_interval"):
        lightning_attn_prefill(*tokens(B, H, 128, D, E, "bhnd", "cpu", 141), pool=pool, slots=slots,
                               checkpoint_interval=48)
    with pytest.raises(la.LightningAttnError, match="UNSUPPORTED_DTYPE|float16"):
        lightning_attn_decode(q, k, v, pool.half(), slots=slots)
    # Index tensors of different dtypes are widened to int64, not refused.
    p1, p2 = pool.clone(), pool.clone()
    o1 = lightning_attn_decode(q, k, v, p1, slots=slots, write_slots=idx([2, 3], torch.int64, "cpu"))
    o2 = lightning_attn_decode(q, k, v, p2, slots=slots.long(), write_slots=idx([2, 3], torch.int64, "cpu"))
    assert torch.equal(o1, o2) and torch.equal(p1, p2)
    # A slot that int32 would wrap onto a valid one is still refused (widened, not narrowed).
    with pytest.raises(la.LightningAttnValueError, match="BAD_SLOT"):
        lightning_attn_decode(q, k, v, pool, slots=slots, write_slots=idx([2, 2 ** 32 + 3], torch.int64, "cpu"))


# ---- the handle's struct between calls ------------------------------------------------------

def test_no_pool_or_checkpoint_interval_survives_into_the_next_call():
    """Each handle keeps one la_tensors_t and one la_problem_t, filled in
    place: a pooled call followed by plain calls on the same thread must
    leave no pool pointer, index pointer or checkpoint interval behind (the
    library would refuse the plain call, or read and write the old pool)."""
    B, H, N, D, E = 2, 2, 64, 16, 8
    q, k, v = tokens(B, H, N, D, E, "bhnd", "cpu", 150)
    s = la.build_slope_tensor(H)
    pool = random_pool(5, H, D, E, "cpu", 150)
    slots = idx([3, 1], torch.int64, "cpu")
    lightning_attn_prefill(q, k, v, s, pool=pool, slots=slots, write_slots=idx([0, 2], torch.int64, "cpu"),
                           has_initial_state=idx([1, 0], torch.bool, "cpu"), checkpoint_interval=64)
    after_prefill = pool.clone()
    h = R._cpu_handle()
    # plain calls: dense decode, forward with states, state-only pass
    state = random_pool(B, H, D, E, "cpu", 151)
    s_before = state.clone()
    o = lightning_attn_decode(q[:, :, :1], k[:, :, :1], v[:, :, :1], state, s)
    r = reference(_np(q[:, :, :1]), _np(k[:, :, :1]), _np(v[:, :, :1]), ld=-_np(s), initial_state=_np(s_before))
    assert_close(_np(o), r["o"], TOL, "dense decode after a pooled prefill")
    assert_close(_np(state), r["final_state"], TOL, "dense state")
    assert _pool_bytes(h) == bytes(len(R._ZERO_POOL)), "the pool struct was not cleared"
    assert h.prob.checkpoint_interval == 0
    o, sN = lightning_attn_func(q, k, v, s, initial_state=s_before, output_final_state=True)
    r = reference(_np(q), _np(k), _np(v), ld=-_np(s), initial_state=_np(s_before))
    assert_close(_np(o), r["o"], TOL, "forward after")
    la.lightning_attn_state(k, v, s)
    # a pooled decode (with token slots), then a plain forward and a plain decode
    lightning_attn_decode(q[:, :, :2], k[:, :, :2], v[:, :, :2], pool, s, slots=idx([0, 2], torch.int64, "cpu"),
                          token_slots=idx([[3, 4], [1, -1]], torch.int64, "cpu"),
                          num_accepted=idx([0, 0], torch.int64, "cpu"))
    after_decode = pool.clone()
    assert not torch.equal(after_decode, after_prefill)
    del pool  # a stale pointer into freed memory would go unnoticed without the checks below
    lightning_attn_func(q, k, v, s)
    state = s_before.clone()
    lightning_attn_decode(q[:, :, :1], k[:, :, :1], v[:, :, :1], state, s)
    assert_close(_np(state), r_first_state(q, k, v, s, s_before), TOL, "dense decode after a pooled decode")
    assert _pool_bytes(h) == bytes(len(R._ZERO_POOL))
    # and the old pool's memory, kept alive here, untouched by the plain calls
    pool = after_decode.clone()
    lightning_attn_prefill(q, k, v, s, pool=pool, slots=slots)
    kept = pool.clone()
    lightning_attn_func(q, k, v, s, initial_state=s_before)
    lightning_attn_decode(q[:, :, :1], k[:, :, :1], v[:, :, :1], s_before.clone(), s)
    assert torch.equal(pool, kept)


def _pool_bytes(h):
    return ctypes.string_at(ctypes.addressof(h.tens) + R._POOL, len(R._ZERO_POOL))


def r_first_state(q, k, v, s, s0):
    return reference(_np(q[:, :, :1]), _np(k[:, :, :1]), _np(v[:, :, :1]), ld=-_np(s),
                     initial_state=_np(s0))["final_state"]


# ---- torch.compile ------------------------------------------------------------------------------

def test_opcheck_serving_ops():
    """Schemas (the pool and the checkpoints declared mutated), fake
    implementations and the dispatcher registration of the serving ops."""
    B, H, T, D, E = 2, 2, 3, 16, 8
    q, k, v = tokens(B, H, T, D, E, "bhnd", "cpu", 160)
    ld = -torch.rand(B, H, T, generator=_gen(160)) * 0.3
    pool = random_pool(6, H, D, E, "cpu", 160)
    ops = torch.ops.lightning_attn
    torch.library.opcheck(ops.decode_pool.default, (q, k, v, pool, idx([4, 1], torch.int32, "cpu"), None, None,
                                                    idx([[0, 2, 3], [5, -1, -1]], torch.int32, "cpu"), None, ld,
                                                    None, None, 0.5, "bhnd"))
    qp, kp, vp = tokens(1, H, 150, D, E, "bhnd", "cpu", 161)
    ckpt = torch.empty(2, H, D, E)
    torch.library.opcheck(ops.prefill_pool.default, (qp, kp, vp, pool, idx([1, 3], torch.int64, "cpu"),
                                                     idx([0, 2], torch.int64, "cpu"), None, ld[:1, :, :1].reshape(H),
                                                     None, None, torch.tensor([0, 70, 150]), 1.0, "bhnd", 0, 64,
                                                     ckpt))
    torch.library.opcheck(ops.prefill_pool.default, (None, kp, vp, pool, idx([1, 3], torch.int64, "cpu"),
                                                     None, None, None, None, None, torch.tensor([0, 70, 150]), 1.0,
                                                     "bhnd", 0, 0, None))


def _inductor_works():
    try:
        f = torch.compile(lambda x: x * 2 + 1, backend="inductor", fullgraph=True)
        return bool(torch.equal(f(torch.ones(3)), torch.full((3,), 3.0)))
    except Exception:
        return False


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_a_pooled_decode_step(backend):
    """A model's decode step (projections, the pooled decode, a norm)
    compiled with fullgraph=True: one graph, the eager numbers, the pool
    written in place through the compiled graph."""
    if backend == "inductor" and not _inductor_works():
        pytest.skip("inductor does not compile on this machine (no working C++ toolchain for torch)")
    torch._dynamo.reset()
    B, H, D, E, slots_n = 3, 2, 16, 16, 8
    w = torch.randn(H * D, H * D, generator=_gen(170)) / (H * D) ** 0.5
    s = la.build_slope_tensor(H)

    def step(x, pool, slots, fresh):
        q = (x @ w).view(B, H, D)
        o = lightning_attn_decode(torch.nn.functional.silu(q), x.view(B, H, D), x.view(B, H, E), pool, s,
                                  slots=slots, has_initial_state=fresh)
        return torch.nn.functional.rms_norm(o, (E,)) * 2

    compiled = torch.compile(step, fullgraph=True, backend=backend)
    pool_c = random_pool(slots_n, H, D, E, "cpu", 171)
    pool_e = pool_c.clone()
    for i in range(3):
        x = torch.randn(B, H * D, generator=_gen(172 + i))
        slots = idx(torch.randperm(slots_n, generator=_gen(180 + i))[:B].tolist(), torch.int32, "cpu")
        slots[1] = -1  # padding
        fresh = idx([i != 0, 1, 1], torch.bool, "cpu")
        a = compiled(x, pool_c, slots, fresh)
        b = step(x, pool_e, slots, fresh)
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
        assert torch.equal(pool_c, pool_e), "step %d: the compiled graph's pool differs" % i


def test_compile_a_pooled_prefill_with_checkpoints():
    torch._dynamo.reset()
    H, D, E = 2, 16, 16
    s = la.build_slope_tensor(H)

    def prefill(q, k, v, pool, slots, cu, ckpt):
        o, c = lightning_attn_prefill(q, k, v, s, pool=pool, slots=slots, cu_seqlens=cu, checkpoint_interval=64,
                                      checkpoints=ckpt)
        return o.sum(dim=-1), c.sum()

    compiled = torch.compile(prefill, fullgraph=True, backend="aot_eager")
    q, k, v = tokens(1, H, 200, D, E, "bhnd", "cpu", 190)
    cu = torch.tensor([0, 64, 200])
    pool_c, ck_c = random_pool(4, H, D, E, "cpu", 190), torch.zeros(3, H, D, E)
    pool_e, ck_e = pool_c.clone(), ck_c.clone()
    slots = idx([2, 0], torch.int64, "cpu")
    a = compiled(q, k, v, pool_c, slots, cu, ck_c)
    b = prefill(q, k, v, pool_e, slots, cu, ck_e)
    assert torch.allclose(a[0], b[0]) and torch.allclose(a[1], b[1])
    assert torch.equal(pool_c, pool_e) and torch.equal(ck_c, ck_e) and torch.count_nonzero(ck_c[2]) > 0


# ---- CUDA graphs -------------------------------------------------------------------------------

@needs_cuda
@pytest.mark.parametrize("pool_dtype", [torch.float32, torch.bfloat16])
def test_cuda_graph_pooled_decode_with_changing_slots(pool_dtype):
    """One captured decode step over a fixed batch, replayed with new
    tokens, new slots (padding included) and fresh flags each time: equal
    to the eager call on a copy of the pool, and nothing synchronises."""
    B, H, D, E, slots_n = 8, 4, 64, 64, 24
    s = la.build_slope_tensor(H).to(device)
    pool = random_pool(slots_n, H, D, E, device, 200, dtype=pool_dtype)
    q, k, v = (torch.empty(B, H, D, device=device, dtype=torch.bfloat16) for _ in range(3))
    slots = torch.zeros(B, dtype=torch.int32, device=device)
    fresh = torch.ones(B, dtype=torch.bool, device=device)

    def fill(i):
        g = _gen(210 + i)
        for x in (q, k, v):
            x.copy_(torch.randn(x.shape, generator=g) / D ** 0.5)
        sl = torch.randperm(slots_n, generator=g)[:B]
        sl[torch.randperm(B, generator=g)[:2]] = -1
        slots.copy_(sl)
        fresh.copy_(torch.rand(B, generator=g) > 0.3)

    def step():
        return lightning_attn_decode(q, k, v, pool, s, slots=slots, has_initial_state=fresh)

    fill(0)
    try:
        step()
    except la.LightningAttnNotSupported as e:
        pytest.skip("the CUDA backend declines a pooled decode: %s" % e)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=side):
        o = step()
    for i in range(1, 5):
        fill(i)
        mirror = pool.clone()
        torch.cuda.set_sync_debug_mode("error")
        try:
            graph.replay()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        o_ref = lightning_attn_decode(q, k, v, mirror, s, slots=slots, has_initial_state=fresh)
        assert torch.equal(o, o_ref), "replay %d: o" % i
        assert torch.equal(pool, mirror), "replay %d: pool" % i
        assert torch.count_nonzero(o[slots < 0]) == 0
    la.check_errors()
