"""The PyTorch ops over the C library: the public functions, their eager
path (autograd.Function over one C call per op call, see _runner), and the
torch.library custom ops with fake (meta) implementations that torch.compile
traces instead.

Custom ops (namespace lightning_attn), used under torch.compile only:
    fwd        q, k, v, decays, initial state -> o, final state
    bwd        ... , dO, d final state        -> dq, dk, dv, decay grads, d initial state
    state_fwd  k, v, decays, initial state    -> final state
    state_bwd  ... , d final state            -> dk, dv, decay grads, d initial state
    decode     T tokens, the dense state updated in place -> o
    decode_pool   T tokens from and into a state pool by slot (the pool mutated) -> o
    prefill_pool  the forward or state-only pass from and into a state pool, with
                  checkpoints (pool and checkpoints mutated) -> o
Absent outputs are empty tensors (custom ops return tensors, not None).
Eager calls skip the dispatcher: a custom op call costs tens of microseconds
of host time per call (schema parsing, dispatch keys, autograd wrapping),
more than the rest of a small call together (docs/BINDING.md).
"""

from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import _runner as R
from ._runner import check_errors, set_value_checks  # noqa: F401  (public through the package)

_TDT = R._TDT
_is_compiling = torch.compiler.is_compiling


def last_workspace_bytes():
    """Workspace bytes of the latest call of each operation (bench/bench.py's memory account)."""
    return R.last_workspace_bytes


def _empty(like):
    return like.new_empty(0, dtype=torch.float32)


def _states_shape(q, v, cu, layout):
    """[S, H, D, E] from the shapes alone, with no int() of a size, so that
    torch.compile keeps sizes symbolic (dynamic shapes)."""
    if layout == "bhnd":
        S, H = q.shape[0], q.shape[1]
    else:
        S, H = q.shape[0], q.shape[2]
    if cu is not None:
        S = cu.shape[0] - 1
    return (S, H, q.shape[3], v.shape[3])


def _none_to_empty(xs, like):
    return tuple(x if x is not None else _empty(like) for x in xs)


# ---- custom ops (torch.compile) ---------------------------------------------------------

@torch.library.custom_op("lightning_attn::fwd", mutates_args=())
def _fwd(q: Tensor, k: Tensor, v: Tensor, ld: Optional[Tensor], ldk: Optional[Tensor], ldv: Optional[Tensor],
         initial_state: Optional[Tensor], cu_seqlens: Optional[Tensor], scale: float, layout: str,
         want_final: bool, max_seqlen: int = 0) -> Tuple[Tensor, Tensor]:
    o, sN = R.forward(q, k, v, ld, ldk, ldv, initial_state, cu_seqlens, scale, layout == "bhnd", want_final,
                      max_seqlen)
    return o, sN if sN is not None else _empty(q)


@_fwd.register_fake
def _(q, k, v, ld, ldk, ldv, initial_state, cu_seqlens, scale, layout, want_final, max_seqlen=0):
    o = q.new_empty(q.shape[:3] + (v.shape[3],))
    sN = q.new_empty(_states_shape(q, v, cu_seqlens, layout), dtype=torch.float32) if want_final else _empty(q)
    return o, sN


@torch.library.custom_op("lightning_attn::bwd", mutates_args=())
def _bwd(q: Tensor, k: Tensor, v: Tensor, ld: Optional[Tensor], ldk: Optional[Tensor], ldv: Optional[Tensor],
         initial_state: Optional[Tensor], cu_seqlens: Optional[Tensor], d_o: Tensor, d_final: Optional[Tensor],
         scale: float, layout: str, want_dld: bool, want_ds0: bool, max_seqlen: int = 0
         ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    g = R.backward(q, k, v, ld, ldk, ldv, initial_state, cu_seqlens, d_o, d_final, scale, layout == "bhnd",
                   want_dld, want_ds0, max_seqlen)
    return g[:3] + _none_to_empty(g[3:], q)


@_bwd.register_fake
def _(q, k, v, ld, ldk, ldv, initial_state, cu_seqlens, d_o, d_final, scale, layout, want_dld, want_ds0,
      max_seqlen=0):
    g = [R._grad_of(x, want_dld) for x in (ld, ldk, ldv)]
    ds0 = q.new_empty(_states_shape(q, v, cu_seqlens, layout), dtype=torch.float32) if want_ds0 else None
    return (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)) + _none_to_empty(g + [ds0], q)


def _fwd_setup(ctx, inputs, output):
    q, k, v, ld, ldk, ldv, s0, cu, scale, layout, want_final, max_seqlen = inputs
    ctx.save_for_backward(q, k, v, ld, ldk, ldv, s0, cu)
    ctx.scale, ctx.layout, ctx.want_final, ctx.max_seqlen = scale, layout, want_final, max_seqlen


def _fwd_backward(ctx, d_o, d_final):
    q, k, v, ld, ldk, ldv, s0, cu = ctx.saved_tensors
    need = ctx.needs_input_grad
    if d_o is None:
        d_o = torch.zeros(q.shape[:3] + (v.shape[3],), dtype=q.dtype, device=q.device)
    d_o = R.grads_dense(d_o.to(q.dtype))
    d_final = R.grads_dense(d_final) if ctx.want_final and d_final is not None else None
    want_dld = any(need[3:6])
    dq, dk, dv, dld, dldk, dldv, ds0 = _bwd(q, k, v, ld, ldk, ldv, s0, cu, d_o, d_final, ctx.scale, ctx.layout,
                                            want_dld, bool(need[6]), ctx.max_seqlen)
    return (dq, dk, dv, dld if need[3] else None, dldk if need[4] else None, dldv if need[5] else None,
            ds0 if need[6] else None, None, None, None, None, None)


_fwd.register_autograd(_fwd_backward, setup_context=_fwd_setup)


@torch.library.custom_op("lightning_attn::state_fwd", mutates_args=())
def _state_fwd(k: Tensor, v: Tensor, ld: Optional[Tensor], ldk: Optional[Tensor], ldv: Optional[Tensor],
               initial_state: Optional[Tensor], cu_seqlens: Optional[Tensor], layout: str,
               max_seqlen: int = 0) -> Tensor:
    return R.state_forward(k, v, ld, ldk, ldv, initial_state, cu_seqlens, layout == "bhnd", max_seqlen)


@_state_fwd.register_fake
def _(k, v, ld, ldk, ldv, initial_state, cu_seqlens, layout, max_seqlen=0):
    return k.new_empty(_states_shape(k, v, cu_seqlens, layout), dtype=torch.float32)


@torch.library.custom_op("lightning_attn::state_bwd", mutates_args=())
def _state_bwd(k: Tensor, v: Tensor, ld: Optional[Tensor], ldk: Optional[Tensor], ldv: Optional[Tensor],
               initial_state: Optional[Tensor], cu_seqlens: Optional[Tensor], d_final: Tensor, layout: str,
               want_dld: bool, want_ds0: bool, max_seqlen: int = 0) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor,
                                                                          Tensor]:
    g = R.state_backward(k, v, ld, ldk, ldv, initial_state, cu_seqlens, d_final, layout == "bhnd", want_dld,
                         want_ds0, max_seqlen)
    return g[:2] + _none_to_empty(g[2:], k)


@_state_bwd.register_fake
def _(k, v, ld, ldk, ldv, initial_state, cu_seqlens, d_final, layout, want_dld, want_ds0, max_seqlen=0):
    g = [R._grad_of(x, want_dld) for x in (ld, ldk, ldv)]
    ds0 = k.new_empty(_states_shape(k, v, cu_seqlens, layout), dtype=torch.float32) if want_ds0 else None
    return (torch.empty_like(k), torch.empty_like(v)) + _none_to_empty(g + [ds0], k)


def _state_setup(ctx, inputs, output):
    k, v, ld, ldk, ldv, s0, cu, layout, max_seqlen = inputs
    ctx.save_for_backward(k, v, ld, ldk, ldv, s0, cu)
    ctx.layout, ctx.max_seqlen = layout, max_seqlen


def _state_backward(ctx, d_final):
    k, v, ld, ldk, ldv, s0, cu = ctx.saved_tensors
    need = ctx.needs_input_grad
    dk, dv, dld, dldk, dldv, ds0 = _state_bwd(k, v, ld, ldk, ldv, s0, cu, R.grads_dense(d_final), ctx.layout,
                                              any(need[2:5]), bool(need[5]), ctx.max_seqlen)
    return (dk, dv, dld if need[2] else None, dldk if need[3] else None, dldv if need[4] else None,
            ds0 if need[5] else None, None, None, None)


_state_fwd.register_autograd(_state_backward, setup_context=_state_setup)


@torch.library.custom_op("lightning_attn::decode", mutates_args=("state",))
def _decode(q: Tensor, k: Tensor, v: Tensor, state: Tensor, ld: Optional[Tensor], ldk: Optional[Tensor],
            ldv: Optional[Tensor], scale: float, layout: str) -> Tensor:
    return R.decode(q, k, v, state, ld, ldk, ldv, scale, layout == "bhnd")


@_decode.register_fake
def _(q, k, v, state, ld, ldk, ldv, scale, layout):
    return q.new_empty(q.shape[:3] + (v.shape[3],))


@torch.library.custom_op("lightning_attn::decode_pool", mutates_args=("pool",))
def _decode_pool(q: Tensor, k: Tensor, v: Tensor, pool: Tensor, slots: Tensor, write_slots: Optional[Tensor],
                 has_initial_state: Optional[Tensor], token_slots: Optional[Tensor], num_accepted: Optional[Tensor],
                 ld: Optional[Tensor], ldk: Optional[Tensor], ldv: Optional[Tensor], scale: float,
                 layout: str) -> Tensor:
    return R.decode_pool(q, k, v, pool, slots, write_slots, has_initial_state, token_slots, num_accepted, ld, ldk,
                         ldv, scale, layout == "bhnd")


@_decode_pool.register_fake
def _(q, k, v, pool, slots, write_slots, has_initial_state, token_slots, num_accepted, ld, ldk, ldv, scale, layout):
    return q.new_empty(q.shape[:3] + (v.shape[3],))


@torch.library.custom_op("lightning_attn::prefill_pool", mutates_args=("pool", "checkpoints"))
def _prefill_pool(q: Optional[Tensor], k: Tensor, v: Tensor, pool: Tensor, slots: Tensor,
                  write_slots: Optional[Tensor], has_initial_state: Optional[Tensor], ld: Optional[Tensor],
                  ldk: Optional[Tensor], ldv: Optional[Tensor], cu_seqlens: Optional[Tensor], scale: float,
                  layout: str, max_seqlen: int, checkpoint_interval: int, checkpoints: Optional[Tensor]) -> Tensor:
    o = R.prefill_pool(q, k, v, pool, slots, write_slots, has_initial_state, ld, ldk, ldv, cu_seqlens, max_seqlen,
                       scale, layout == "bhnd", checkpoint_interval, checkpoints)
    return o if o is not None else _empty(k)


@_prefill_pool.register_fake
def _(q, k, v, pool, slots, write_slots, has_initial_state, ld, ldk, ldv, cu_seqlens, scale, layout, max_seqlen,
      checkpoint_interval, checkpoints):
    return q.new_empty(q.shape[:3] + (v.shape[3],)) if q is not None else _empty(k)


# ---- eager autograd ---------------------------------------------------------------------
# The same C calls as the custom ops, without the dispatcher.

def _attn_backward(ctx, d_o, d_final=None):
    q, k, v, ld, ldk, ldv, s0, cu = ctx.saved_tensors
    need = ctx.needs_input_grad
    if d_o is None:
        d_o = q.new_zeros(v.shape)
    elif d_o.dtype != q.dtype:
        d_o = d_o.to(q.dtype)
    dq, dk, dv, dld, dldk, dldv, ds0 = R.backward(
        q, k, v, ld, ldk, ldv, s0, cu, R.grads_dense(d_o), R.grads_dense(d_final), ctx.scale, ctx.bhnd,
        need[3] or need[4] or need[5], need[6], ctx.max_seqlen)
    return dq, dk, dv, dld, dldk, dldv, ds0, None, None, None, None, None


def _state_backward(ctx, d_final):
    k, v, ld, ldk, ldv, s0, cu = ctx.saved_tensors
    need = ctx.needs_input_grad
    dk, dv, dld, dldk, dldv, ds0 = R.state_backward(k, v, ld, ldk, ldv, s0, cu, R.grads_dense(d_final), ctx.bhnd,
                                                    need[2] or need[3] or need[4], need[5], ctx.max_seqlen)
    return dk, dv, dld, dldk, dldv, ds0, None, None, None


# The library's backward is not itself differentiable.  Under create_graph
# (grad mode on in backward) the once_differentiable wrapper makes a second
# derivative through it an error; without it (the usual case) its cost is
# skipped: the backward's outputs are plain tensors then anyway.
_attn_backward_once = once_differentiable(_attn_backward)
_state_backward_once = once_differentiable(_state_backward)


class _Attn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, ld, ldk, ldv, s0, cu, scale, bhnd, want_final, max_seqlen):
        o, sN = R.forward(q, k, v, ld, ldk, ldv, s0, cu, scale, bhnd, want_final, max_seqlen)
        ctx.save_for_backward(q, k, v, ld, ldk, ldv, s0, cu)
        ctx.scale, ctx.bhnd, ctx.max_seqlen = scale, bhnd, max_seqlen
        ctx.set_materialize_grads(False)
        return (o, sN) if want_final else o

    @staticmethod
    def backward(ctx, d_o, d_final=None):
        if torch.is_grad_enabled():
            return _attn_backward_once(ctx, d_o, d_final)
        return _attn_backward(ctx, d_o, d_final)


class _State(torch.autograd.Function):
    @staticmethod
    def forward(ctx, k, v, ld, ldk, ldv, s0, cu, bhnd, max_seqlen):
        sN = R.state_forward(k, v, ld, ldk, ldv, s0, cu, bhnd, max_seqlen)
        ctx.save_for_backward(k, v, ld, ldk, ldv, s0, cu)
        ctx.bhnd, ctx.max_seqlen = bhnd, max_seqlen
        return sN

    @staticmethod
    def backward(ctx, d_final):
        if torch.is_grad_enabled():
            return _state_backward_once(ctx, d_final)
        return _state_backward(ctx, d_final)


def _needs_grad(a, b, c, d, e, f, g):
    if not torch.is_grad_enabled():
        return False
    return (a is not None and a.requires_grad) or b.requires_grad or c.requires_grad or \
        (d is not None and d.requires_grad) or (e is not None and e.requires_grad) or \
        (f is not None and f.requires_grad) or (g is not None and g.requires_grad)


# ---- public functions ----------------------------------------------------------------

_VARIANTS = (None, "chunk_loop", "parallel", "chunk", "auto")
_LAYOUTS = ("bhnd", "bnhd")


def _check_layout(layout):
    if layout != "bhnd" and layout != "bnhd":
        raise ValueError("layout must be 'bhnd' ([B, H, N, D]) or 'bnhd' ([B, N, H, D]), got %r" % (layout,))


def _compute_dtype(q, k, v):
    """The dtype q, k, v run in: autocast's when it is on for their device,
    else their common dtype; float64 runs in float32 (the library's highest
    input precision) and is cast back."""
    if k is None or v is None:
        raise ValueError("%s is required (got None)" % ("v" if v is None else "k"))
    dev = "cuda" if q.is_cuda else "cpu"
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    dt = q.dtype
    if k.dtype == dt and v.dtype == dt and dt in _TDT:
        return dt
    dt = torch.promote_types(torch.promote_types(dt, k.dtype), v.dtype)
    if dt not in _TDT:
        if dt == torch.float64:
            return torch.float32
        raise TypeError("q, k, v must be floating point (float32, float16, bfloat16; float64 runs in float32), got %s"
                        % dt)
    return dt


def _decays(s, ld, ldk, ldv, k):
    """Log decays as float32: ld = -s; a value-side decay alone gets a
    key side of zeros (no decay)."""
    if s is not None:
        if ld is not None:
            raise ValueError("give s (the decay rate, ld = -s) or ld (the log decay), not both")
        ld = R.log_decay_of_rate(s) if not _is_compiling() else (-s).float()
    elif ld is not None and ld.dtype != torch.float32:
        ld = ld.float()
    if ldk is not None and ldk.dtype != torch.float32:
        ldk = ldk.float()
    if ldv is not None:
        if ldv.dtype != torch.float32:
            ldv = ldv.float()
        if ldk is None:
            ldk = torch.zeros(k.shape, dtype=torch.float32, device=k.device)
    return ld, ldk, ldv


def _cast(x, dt):
    return x if x.dtype == dt else x.to(dt)


def lightning_attn_func(q, k, v, s=None, *, ld=None, ldk=None, ldv=None, scale=1.0, initial_state=None,
                        output_final_state=False, cu_seqlens=None, max_seqlen=None, layout="bhnd", variant=None):
    """Causal linear attention with decay, forward and backward on the
    library's kernels:

        S_t = diag(a_t) S_{t-1} diag(b_t) + k_t^T v_t,   o_t = scale q_t S_t

    q, k: [B, H, N, D]; v: [B, H, N, E] (layout="bhnd"), or [B, N, H, *]
    (layout="bnhd"); bfloat16, float16 or float32 (float64 runs in float32;
    under autocast, autocast's dtype).

    Packed variable-length batches: B = 1 and cu_seqlens, int64 offsets
    [num_seqs + 1] (int32 is converted).  On the GPU of q they are read
    there and nothing waits for the GPU; offsets on the CPU are read on the
    host.  max_seqlen (optional): the longest sequence, a hint that lets the
    GPU plan as it would with host offsets.

    Decay, at most one kind (log decays are <= 0: a = exp(ld)):
      s       decay rate per head, [H] or [H, 1, 1] (the ALiBi slope,
              ld = -s; build_slope_tensor makes it); per token [B, H, N]
      ld      the log decay itself, same shapes as s
      ldk     per token and key channel, [B, H, N, D] (GLA-style)
      ldv     per token and value channel, [B, H, N, E] (with or without ldk)
    Gradients reach every decay tensor that requires grad (learnable decay).
    Decay values on the GPU are checked without waiting (set_value_checks):
    a bad one is raised by the next call or by check_errors().

    initial_state: float32 [B (or num_seqs), H, D, E], differentiable.
    output_final_state: also return the final state (float32, same shape;
    gradients flowing into it reach q, k, v, the decays and initial_state).
    variant: accepted for drop-in use of the original call ("chunk_loop",
    "parallel"); the library picks its kernels itself.
    Returns o (dtype of the computation, float64 if q was), or (o, final_state).

    Eager calls make one call into the C library (two with a backward);
    under torch.compile the op is the custom op lightning_attn::fwd, traced
    with dynamic shapes and CUDA-graph capturable.
    """
    if variant is not None and variant not in _VARIANTS:
        raise ValueError("variant must be one of %s, got %r" % (", ".join(str(x) for x in _VARIANTS[1:]), variant))
    _check_layout(layout)
    dt = _compute_dtype(q, k, v)
    ld, ldk, ldv = _decays(s, ld, ldk, ldv, k)
    s0 = initial_state if initial_state is None or initial_state.dtype == torch.float32 else initial_state.float()
    qc, kc, vc = _cast(q, dt), _cast(k, dt), _cast(v, dt)
    want_final = bool(output_final_state)
    if _is_compiling():
        o, sN = _fwd(qc, kc, vc, ld, ldk, ldv, s0, cu_seqlens, float(scale), layout, want_final, max_seqlen or 0)
    elif _needs_grad(qc, kc, vc, ld, ldk, ldv, s0):
        r = _Attn.apply(qc, kc, vc, ld, ldk, ldv, s0, cu_seqlens, float(scale), layout == "bhnd", want_final,
                        max_seqlen or 0)
        o, sN = r if want_final else (r, None)
    else:
        o, sN = R.forward(qc, kc, vc, ld, ldk, ldv, s0, cu_seqlens, float(scale), layout == "bhnd", want_final,
                          max_seqlen or 0)
    if q.dtype == torch.float64 and dt == torch.float32:
        o = o.to(torch.float64)
    return (o, sN) if want_final else o


def lightning_attn_state(k, v, s=None, *, ld=None, ldk=None, ldv=None, initial_state=None, cu_seqlens=None,
                         max_seqlen=None, layout="bhnd"):
    """The final state alone (float32 [B or num_seqs, H, D, E]) without o:
    the state-only pass, e.g. to prefill a decode cache.  Arguments as in
    lightning_attn_func.  Differentiable in k, v, the decays and
    initial_state."""
    _check_layout(layout)
    if v is None:
        raise ValueError("v is required (got None): lightning_attn_state(k, v, s, ...)")
    dt = _compute_dtype(k, k, v)
    ld, ldk, ldv = _decays(s, ld, ldk, ldv, k)
    s0 = initial_state if initial_state is None or initial_state.dtype == torch.float32 else initial_state.float()
    kc, vc = _cast(k, dt), _cast(v, dt)
    if _is_compiling():
        return _state_fwd(kc, vc, ld, ldk, ldv, s0, cu_seqlens, layout, max_seqlen or 0)
    if _needs_grad(None, kc, vc, ld, ldk, ldv, s0):
        return _State.apply(kc, vc, ld, ldk, ldv, s0, cu_seqlens, layout == "bhnd", max_seqlen or 0)
    return R.state_forward(kc, vc, ld, ldk, ldv, s0, cu_seqlens, layout == "bhnd", max_seqlen or 0)


def _token_decays(ld, ldk, ldv, dim):
    """Decays of a squeezed single-token call ([B, H] / [B, H, D]) with the
    token dimension put back."""
    if ld is not None and ld.dim() == 2:  # per token [B, H] of a single step
        ld = ld.unsqueeze(dim)
    if ldk is not None and ldk.dim() == 3:
        ldk = ldk.unsqueeze(dim)
    if ldv is not None and ldv.dim() == 3:
        ldv = ldv.unsqueeze(dim)
    return ld, ldk, ldv


def lightning_attn_decode(q, k, v, state, s=None, *, ld=None, ldk=None, ldv=None, scale=1.0, layout="bhnd",
                          slots=None, write_slots=None, has_initial_state=None, token_slots=None, num_accepted=None):
    """Decode: T >= 1 new tokens per sequence, stepped by the recurrence
    token by token, the states read and written in place.  Returns o shaped
    like v.  Inference only: nothing here records autograd history.

    q, k, v: [B, H, T, *] (layout="bhnd") or [B, T, H, *] ("bnhd"), or
    [B, H, *] for one token (o is squeezed back).  Decays as in
    lightning_attn_func, per-token ones over the T tokens ([B, H, T] for a
    scalar per token; [B, H] and [B, H, D] for a squeezed single token).

    Without slots: state is the dense float32 [B, H, D, E], updated in place
    to the state after the T tokens.

    With slots (a serving engine's state pool): state is a pool [num_slots,
    H, D, E], float32 or bfloat16 (stored rounded, computed in fp32), with
    any strides (a value-major [num_slots, H, E, D] pool passed as
    pool.transpose(-1, -2)).  Index tensors live on q's device, contiguous:
      slots [B]           int32 or int64: sequence i starts from
                          state[slots[i]]; a negative slot is padding (o is
                          zeros, nothing is read or written)
      write_slots [B]     optional: where the final state goes (default: the
                          read slot); negative: not kept
      has_initial_state [B]  optional bool/uint8: 0 starts from zeros (a
                          fresh sequence; its slot is not read)
      token_slots [B, T]  optional (speculative decoding): the state after
                          token t goes to state[token_slots[i, t]] (negative:
                          not kept); write_slots must then be None, and the
                          read slot is not written
      num_accepted [B]    optional, with token_slots: n > 0 starts sequence i
                          from state[token_slots[i, n - 1]] (the state after
                          its last accepted draft token of the previous call,
                          which passed the same token_slots) instead of
                          slots[i]; 0 starts from slots[i]
    Index tensors of different integer dtypes are all widened to int64.  The
    library checks the slot values (range; no slot written twice; no slot
    read by one sequence and written by another): a bad one raises
    LightningAttnValueError with status LA_STATUS_BAD_SLOT and nothing
    written (on the GPU they are checked like decays, see
    set_value_checks).

    One call into the C library; nothing waits for the GPU and nothing reads
    the index tensors on the host, so a step is capturable in a CUDA graph
    with static index tensors whose values change between replays."""
    _check_layout(layout)
    squeeze = q.dim() == 3
    tdim = 2 if layout == "bhnd" else 1
    if squeeze:
        q, k, v = (x.unsqueeze(tdim) for x in (q, k, v))
    if slots is None:
        if write_slots is not None or has_initial_state is not None or token_slots is not None or \
                num_accepted is not None:
            raise ValueError("write_slots, has_initial_state, token_slots and num_accepted index a state pool: "
                             "pass slots too (and the pool as state)")
        if state.dtype != torch.float32:
            raise TypeError("the decode state must be float32 (it is updated in place), got %s; a bfloat16 state "
                            "is stored in a pool (pass slots)" % state.dtype)
    elif token_slots is not None and write_slots is not None:
        raise ValueError("give write_slots or token_slots, not both: with token_slots the states go to the token "
                         "slots")
    dt = _compute_dtype(q, k, v)
    ld, ldk, ldv = _decays(s, ld, ldk, ldv, k)
    if squeeze:
        ld, ldk, ldv = _token_decays(ld, ldk, ldv, tdim)
    qc, kc, vc = _cast(q, dt), _cast(k, dt), _cast(v, dt)
    if slots is None:
        if _is_compiling():
            o = _decode(qc, kc, vc, state, ld, ldk, ldv, float(scale), layout)
        else:
            o = R.decode(qc, kc, vc, state, ld, ldk, ldv, float(scale), layout == "bhnd")
    elif _is_compiling():
        o = _decode_pool(qc, kc, vc, state, slots, write_slots, has_initial_state, token_slots, num_accepted, ld,
                         ldk, ldv, float(scale), layout)
    else:
        o = R.decode_pool(qc, kc, vc, state, slots, write_slots, has_initial_state, token_slots, num_accepted, ld,
                          ldk, ldv, float(scale), layout == "bhnd")
    return o.squeeze(tdim) if squeeze else o


def lightning_attn_prefill(q, k, v, s=None, *, ld=None, ldk=None, ldv=None, scale=1.0, pool, slots,
                           write_slots=None, has_initial_state=None, cu_seqlens=None, max_seqlen=None,
                           layout="bhnd", checkpoint_interval=0, checkpoints=None):
    """Prefill from and into a state pool: the forward of lightning_attn_func
    (packed or not) whose initial states are read from pool[slots[i]] and
    whose final states are written to pool[write_slots[i]] (default: the
    read slot), in place.  Inference only: no autograd (the pool is
    mutated in place, which a backward could not replay).

    q, k, v, decays, scale, cu_seqlens, max_seqlen, layout: as in
    lightning_attn_func (one sequence per batch row, or B = 1 and
    cu_seqlens; S = B or num_seqs sequences).  q = None runs the state-only
    pass (no o is computed or returned): filling the pool for a prompt whose
    outputs are not needed.

    pool [num_slots, H, D, E]: float32 or bfloat16, any strides.  slots [S],
    write_slots [S], has_initial_state [S]: as in lightning_attn_decode
    (negative slot = padding: o zeros, nothing read or written; a negative
    write slot keeps o but writes no state; has_initial_state 0 starts a
    fresh sequence from zeros without reading its slot, so a freed slot
    needs no clearing).

    checkpoint_interval c > 0 (a multiple of 64): also write each sequence's
    state after every c of its tokens (c, 2c, ... up to its length) to
    checkpoints, [rows, H, D, E] float32 or bfloat16 with rows = B * (N // c),
    or N // c when packed (sequence i's first row is the sum of
    len_j // c over j < i; rows past the last checkpoint are untouched).
    A caller's tensor is written in place; None allocates a float32 one.
    These are the states a prefix cache keeps: a later request sharing the
    first m * c tokens starts from row m - 1 (copy it into a slot).

    Returns o (None when q is None), or (o, checkpoints) when
    checkpoint_interval > 0.  One call into the C library, capturable in a
    CUDA graph like lightning_attn_decode."""
    _check_layout(layout)
    interval = int(checkpoint_interval)
    ref = q if q is not None else k
    if k is None or v is None:
        raise ValueError("%s is required (got None)" % ("v" if v is None else "k"))
    dt = _compute_dtype(ref, k, v)
    ld, ldk, ldv = _decays(s, ld, ldk, ldv, k)
    qc = _cast(q, dt) if q is not None else None
    kc, vc = _cast(k, dt), _cast(v, dt)
    if interval > 0 and checkpoints is None:
        rows = R.checkpoint_rows(ref, cu_seqlens, interval, layout == "bhnd")
        H = ref.shape[1] if layout == "bhnd" else ref.shape[2]
        checkpoints = ref.new_empty((rows, H, ref.shape[3], v.shape[3]), dtype=torch.float32)
    if _is_compiling():
        o = _prefill_pool(qc, kc, vc, pool, slots, write_slots, has_initial_state, ld, ldk, ldv, cu_seqlens,
                          float(scale), layout, max_seqlen or 0, interval, checkpoints)
        if q is None:
            o = None
    else:
        o = R.prefill_pool(qc, kc, vc, pool, slots, write_slots, has_initial_state, ld, ldk, ldv, cu_seqlens,
                           max_seqlen or 0, float(scale), layout == "bhnd", interval, checkpoints)
    if o is not None and q.dtype == torch.float64 and dt == torch.float32:
        o = o.to(torch.float64)
    return (o, checkpoints) if interval > 0 else o
