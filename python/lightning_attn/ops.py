"""The PyTorch ops: torch.library custom ops over the C library, their fake
(meta) implementations for torch.compile, autograd through the library's
backward kernels, and the public functions.

Custom ops (namespace lightning_attn):
    fwd        q, k, v, decays, initial state -> o, final state
    bwd        ... , dO, d final state        -> dq, dk, dv, decay grads, d initial state
    state_fwd  k, v, decays, initial state    -> final state
    state_bwd  ... , d final state            -> dk, dv, decay grads, d initial state
    decode     one token, the state updated in place -> o
Absent outputs are empty tensors (custom ops return tensors, not None).
"""

from typing import Optional, Tuple

import torch
from torch import Tensor

from . import _clib as C
from . import _shapes

_TDT = {torch.float32: C.DTYPE_F32, torch.float16: C.DTYPE_F16, torch.bfloat16: C.DTYPE_BF16}
_check_values = True


def set_value_checks(enable):
    """Check decay values on the GPU (in range, not NaN) on every call: on by
    default; each check is a small kernel and a stream synchronisation,
    which CUDA graph capture (torch.compile mode="reduce-overhead") does not
    allow.  Off, an out-of-range decay gives unspecified (in-bounds) results.
    Shapes, strides and CPU tensors are always checked."""
    global _check_values
    _check_values = bool(enable)


def _info(t):
    if t.dtype not in _TDT:
        raise TypeError("dtype %s is not supported by the library (float32, float16, bfloat16)" % t.dtype)
    return t.data_ptr(), _TDT[t.dtype], tuple(t.shape), tuple(t.stride())


# Workspace bytes of the latest CUDA call of each operation (la_workspace_size_for),
# for memory accounting (bench/bench.py).
last_workspace_bytes = {}


def _run(op, device, prob, tens):
    """Run op on the backend of device: the CUDA backend on the current
    stream with a workspace from PyTorch's allocator, or the CPU backend
    with PyTorch's thread count."""
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        if idx != torch.cuda.current_device():
            with torch.cuda.device(idx):
                return _run(op, torch.device("cuda", idx), prob, tens)
        h = C.handle(C.BACKEND_CUDA, idx)
        C.set_stream(h, torch.cuda.current_stream(idx).cuda_stream)
        C.set_check_values(h, _check_values)
        n = C.workspace_size_for(h, op, prob, tens)
        last_workspace_bytes[op] = n
        ws = torch.empty(n, dtype=torch.uint8, device=device) if n else None
        C.set_workspace(h, ws.data_ptr() if ws is not None else None, n)
        C.run(h, op, prob, tens)
        # The workspace goes back to the caching allocator, which reuses it
        # on this stream only after the work queued here.
    elif device.type == "cpu":
        h = C.handle(C.BACKEND_CPU)
        C.set_num_threads(h, torch.get_num_threads())
        C.run(h, op, prob, tens)
    else:
        raise NotImplementedError("lightning_attn runs on CPU and CUDA tensors, not %s" % device.type)


def _same_device(device, **tensors):
    for name, t in tensors.items():
        if t is not None and t.device != device:
            raise ValueError("%s is on %s, q/k is on %s: every tensor must be on one device" % (name, t.device, device))


def _cu_list(cu):
    return None if cu is None else cu.tolist()


def _empty(like):
    return like.new_empty(0, dtype=torch.float32)


def _num_states(B, cu):
    return cu.shape[0] - 1 if cu is not None else B


def _grad_like(x, want):
    return torch.empty_like(x, dtype=torch.float32) if (want and x is not None) else None


def _dense(t):
    """Expanded gradients (stride 0, as from .sum()) made real."""
    if t is not None and any(s == 0 and n > 1 for s, n in zip(t.stride(), t.shape)):
        return t.contiguous()
    return t


# ---- forward ---------------------------------------------------------------------

@torch.library.custom_op("lightning_attn::fwd", mutates_args=())
def _fwd(q: Tensor, k: Tensor, v: Tensor, ld: Optional[Tensor], ldk: Optional[Tensor], ldv: Optional[Tensor],
         initial_state: Optional[Tensor], cu_seqlens: Optional[Tensor], scale: float, layout: str,
         want_final: bool) -> Tuple[Tensor, Tensor]:
    B, H, N, D, E = _shapes.dims(q.shape, v.shape, layout)
    _same_device(q.device, k=k, v=v, ld=ld, ldk=ldk, ldv=ldv, initial_state=initial_state)
    o = q.new_empty(q.shape[:3] + (E,))
    sN = q.new_empty((_num_states(B, cu_seqlens), H, D, E), dtype=torch.float32) if want_final else _empty(q)
    prob, tens, _ = _shapes.describe(_info, layout, scale, _cu_list(cu_seqlens), q=q, k=k, v=v, o=o, ld=ld, ldk=ldk,
                                     ldv=ldv, initial_state=initial_state, final_state=sN if want_final else None)
    _run(C.OP_FORWARD, q.device, prob, tens)
    return o, sN


@_fwd.register_fake
def _(q, k, v, ld, ldk, ldv, initial_state, cu_seqlens, scale, layout, want_final):
    B, H, N, D, E = _shapes.dims(q.shape, v.shape, layout)
    o = q.new_empty(q.shape[:3] + (E,))
    sN = q.new_empty((_num_states(B, cu_seqlens), H, D, E), dtype=torch.float32) if want_final else _empty(q)
    return o, sN


@torch.library.custom_op("lightning_attn::bwd", mutates_args=())
def _bwd(q: Tensor, k: Tensor, v: Tensor, ld: Optional[Tensor], ldk: Optional[Tensor], ldv: Optional[Tensor],
         initial_state: Optional[Tensor], cu_seqlens: Optional[Tensor], d_o: Tensor, d_final: Optional[Tensor],
         scale: float, layout: str, want_dld: bool, want_ds0: bool
         ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    B, H, N, D, E = _shapes.dims(q.shape, v.shape, layout)
    _same_device(q.device, k=k, v=v, ld=ld, ldk=ldk, ldv=ldv, initial_state=initial_state, d_o=d_o, d_final=d_final)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    g = [_grad_like(x, want_dld) for x in (ld, ldk, ldv)]
    ds0 = q.new_empty((_num_states(B, cu_seqlens), H, D, E), dtype=torch.float32) if want_ds0 else None
    prob, tens, _ = _shapes.describe(_info, layout, scale, _cu_list(cu_seqlens), q=q, k=k, v=v, ld=ld, ldk=ldk,
                                     ldv=ldv, initial_state=initial_state, d_o=d_o, d_final_state=d_final, dq=dq,
                                     dk=dk, dv=dv, d_ld=g[0], d_ldk=g[1], d_ldv=g[2], d_initial_state=ds0)
    _run(C.OP_BACKWARD, q.device, prob, tens)
    return (dq, dk, dv) + tuple(x if x is not None else _empty(q) for x in g + [ds0])


@_bwd.register_fake
def _(q, k, v, ld, ldk, ldv, initial_state, cu_seqlens, d_o, d_final, scale, layout, want_dld, want_ds0):
    B, H, N, D, E = _shapes.dims(q.shape, v.shape, layout)
    g = [_grad_like(x, want_dld) for x in (ld, ldk, ldv)]
    ds0 = q.new_empty((_num_states(B, cu_seqlens), H, D, E), dtype=torch.float32) if want_ds0 else None
    return (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)) + tuple(
        x if x is not None else _empty(q) for x in g + [ds0])


def _fwd_setup(ctx, inputs, output):
    q, k, v, ld, ldk, ldv, s0, cu, scale, layout, want_final = inputs
    ctx.save_for_backward(q, k, v, ld, ldk, ldv, s0, cu)
    ctx.scale, ctx.layout, ctx.want_final = scale, layout, want_final


def _fwd_backward(ctx, d_o, d_final):
    q, k, v, ld, ldk, ldv, s0, cu = ctx.saved_tensors
    need = ctx.needs_input_grad
    if d_o is None:
        d_o = torch.zeros(q.shape[:3] + (v.shape[3],), dtype=q.dtype, device=q.device)
    d_o = _dense(d_o.to(q.dtype))
    d_final = _dense(d_final) if ctx.want_final and d_final is not None else None
    want_dld = any(need[3:6])
    dq, dk, dv, dld, dldk, dldv, ds0 = _bwd(q, k, v, ld, ldk, ldv, s0, cu, d_o, d_final, ctx.scale, ctx.layout,
                                            want_dld, bool(need[6]))
    return (dq, dk, dv, dld if need[3] else None, dldk if need[4] else None, dldv if need[5] else None,
            ds0 if need[6] else None, None, None, None, None)


_fwd.register_autograd(_fwd_backward, setup_context=_fwd_setup)


# ---- state-only pass ---------------------------------------------------------------

@torch.library.custom_op("lightning_attn::state_fwd", mutates_args=())
def _state_fwd(k: Tensor, v: Tensor, ld: Optional[Tensor], ldk: Optional[Tensor], ldv: Optional[Tensor],
               initial_state: Optional[Tensor], cu_seqlens: Optional[Tensor], layout: str) -> Tensor:
    B, H, N, D, E = _shapes.dims(k.shape, v.shape, layout)
    _same_device(k.device, v=v, ld=ld, ldk=ldk, ldv=ldv, initial_state=initial_state)
    sN = k.new_empty((_num_states(B, cu_seqlens), H, D, E), dtype=torch.float32)
    prob, tens, _ = _shapes.describe(_info, layout, 1.0, _cu_list(cu_seqlens), k=k, v=v, ld=ld, ldk=ldk, ldv=ldv,
                                     initial_state=initial_state, final_state=sN)
    _run(C.OP_STATE_FORWARD, k.device, prob, tens)
    return sN


@_state_fwd.register_fake
def _(k, v, ld, ldk, ldv, initial_state, cu_seqlens, layout):
    B, H, N, D, E = _shapes.dims(k.shape, v.shape, layout)
    return k.new_empty((_num_states(B, cu_seqlens), H, D, E), dtype=torch.float32)


@torch.library.custom_op("lightning_attn::state_bwd", mutates_args=())
def _state_bwd(k: Tensor, v: Tensor, ld: Optional[Tensor], ldk: Optional[Tensor], ldv: Optional[Tensor],
               initial_state: Optional[Tensor], cu_seqlens: Optional[Tensor], d_final: Tensor, layout: str,
               want_dld: bool, want_ds0: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    B, H, N, D, E = _shapes.dims(k.shape, v.shape, layout)
    _same_device(k.device, v=v, ld=ld, ldk=ldk, ldv=ldv, initial_state=initial_state, d_final=d_final)
    dk, dv = torch.empty_like(k), torch.empty_like(v)
    g = [_grad_like(x, want_dld) for x in (ld, ldk, ldv)]
    ds0 = k.new_empty((_num_states(B, cu_seqlens), H, D, E), dtype=torch.float32) if want_ds0 else None
    prob, tens, _ = _shapes.describe(_info, layout, 1.0, _cu_list(cu_seqlens), k=k, v=v, ld=ld, ldk=ldk, ldv=ldv,
                                     initial_state=initial_state, d_final_state=d_final, dk=dk, dv=dv, d_ld=g[0],
                                     d_ldk=g[1], d_ldv=g[2], d_initial_state=ds0)
    _run(C.OP_STATE_BACKWARD, k.device, prob, tens)
    return (dk, dv) + tuple(x if x is not None else _empty(k) for x in g + [ds0])


@_state_bwd.register_fake
def _(k, v, ld, ldk, ldv, initial_state, cu_seqlens, d_final, layout, want_dld, want_ds0):
    B, H, N, D, E = _shapes.dims(k.shape, v.shape, layout)
    g = [_grad_like(x, want_dld) for x in (ld, ldk, ldv)]
    ds0 = k.new_empty((_num_states(B, cu_seqlens), H, D, E), dtype=torch.float32) if want_ds0 else None
    return (torch.empty_like(k), torch.empty_like(v)) + tuple(x if x is not None else _empty(k) for x in g + [ds0])


def _state_setup(ctx, inputs, output):
    k, v, ld, ldk, ldv, s0, cu, layout = inputs
    ctx.save_for_backward(k, v, ld, ldk, ldv, s0, cu)
    ctx.layout = layout


def _state_backward(ctx, d_final):
    k, v, ld, ldk, ldv, s0, cu = ctx.saved_tensors
    need = ctx.needs_input_grad
    dk, dv, dld, dldk, dldv, ds0 = _state_bwd(k, v, ld, ldk, ldv, s0, cu, _dense(d_final), ctx.layout,
                                              any(need[2:5]), bool(need[5]))
    return (dk, dv, dld if need[2] else None, dldk if need[3] else None, dldv if need[4] else None,
            ds0 if need[5] else None, None, None)


_state_fwd.register_autograd(_state_backward, setup_context=_state_setup)


# ---- decode ------------------------------------------------------------------------

@torch.library.custom_op("lightning_attn::decode", mutates_args=("state",))
def _decode(q: Tensor, k: Tensor, v: Tensor, state: Tensor, ld: Optional[Tensor], ldk: Optional[Tensor],
            ldv: Optional[Tensor], scale: float, layout: str) -> Tensor:
    B, H, N, D, E = _shapes.dims(q.shape, v.shape, layout)
    _same_device(q.device, k=k, v=v, state=state, ld=ld, ldk=ldk, ldv=ldv)
    o = q.new_empty(q.shape[:3] + (E,))
    prob, tens, _ = _shapes.describe(_info, layout, scale, None, q=q, k=k, v=v, o=o, ld=ld, ldk=ldk, ldv=ldv,
                                     initial_state=state, final_state=state)
    _run(C.OP_DECODE, q.device, prob, tens)
    return o


@_decode.register_fake
def _(q, k, v, state, ld, ldk, ldv, scale, layout):
    return q.new_empty(q.shape[:3] + (v.shape[3],))


# ---- public functions ----------------------------------------------------------------

_VARIANTS = (None, "chunk_loop", "parallel", "chunk", "auto")


def _compute_dtype(device, *xs):
    """The dtype q, k, v run in: autocast's when it is on for this device,
    else their common dtype; float64 runs in float32 (the library's highest
    input precision) and is cast back."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    dt = xs[0].dtype
    for x in xs[1:]:
        dt = torch.promote_types(dt, x.dtype)
    if dt not in _TDT:
        if dt == torch.float64:
            return torch.float32
        raise TypeError("q, k, v must be floating point (float32, float16, bfloat16; float64 runs in float32), got %s"
                        % dt)
    return dt


def _decays(s, ld, ldk, ldv):
    """ld = -s; decays as float32 (autograd runs through both)."""
    if s is not None and ld is not None:
        raise ValueError("give s (the decay rate, ld = -s) or ld (the log decay), not both")
    if s is not None:
        ld = -s
    f = lambda x: None if x is None else x.float()
    return f(ld), f(ldk), f(ldv)


def _vector_pair(ldk, ldv, k):
    """Value-side decay alone: the key side is zeros (no decay)."""
    if ldv is not None and ldk is None:
        ldk = torch.zeros(k.shape, dtype=torch.float32, device=k.device)
    return ldk, ldv


def lightning_attn_func(q, k, v, s=None, *, ld=None, ldk=None, ldv=None, scale=1.0, initial_state=None,
                        output_final_state=False, cu_seqlens=None, layout="bhnd", variant=None):
    """Causal linear attention with decay, forward and backward on the
    library's kernels:

        S_t = diag(a_t) S_{t-1} diag(b_t) + k_t^T v_t,   o_t = scale q_t S_t

    q, k: [B, H, N, D]; v: [B, H, N, E] (layout="bhnd"), or [B, N, H, *]
    (layout="bnhd"); bfloat16, float16 or float32 (float64 runs in float32;
    under autocast, autocast's dtype).  Packed variable-length batches:
    B = 1 and cu_seqlens, int64 offsets [num_seqs + 1] (any device; read on
    the host).

    Decay, at most one kind (log decays are <= 0: a = exp(ld)):
      s       decay rate per head, [H] or [H, 1, 1] (the ALiBi slope,
              ld = -s; build_slope_tensor makes it); per token [B, H, N]
      ld      the log decay itself, same shapes as s
      ldk     per token and key channel, [B, H, N, D] (GLA-style)
      ldv     per token and value channel, [B, H, N, E] (with or without ldk)
    Gradients reach every decay tensor that requires grad (learnable decay).

    initial_state: float32 [B (or num_seqs), H, D, E], differentiable.
    output_final_state: also return the final state (float32, same shape;
    gradients flowing into it reach q, k, v, the decays and initial_state).
    variant: accepted for drop-in use of the original call ("chunk_loop",
    "parallel"); the library picks its kernels itself.
    Returns o (dtype of the computation, float64 if q was), or (o, final_state).
    """
    if variant not in _VARIANTS:
        raise ValueError("variant must be one of %s, got %r" % (", ".join(str(x) for x in _VARIANTS[1:]), variant))
    _shapes.check_layout(layout)
    dt = _compute_dtype(q.device, q, k, v)
    out_dt = torch.float64 if q.dtype == torch.float64 and not torch.is_autocast_enabled(q.device.type) else dt
    ld, ldk, ldv = _decays(s, ld, ldk, ldv)
    ldk, ldv = _vector_pair(ldk, ldv, k)
    s0 = initial_state.float() if initial_state is not None else None
    o, sN = _fwd(q.to(dt), k.to(dt), v.to(dt), ld, ldk, ldv, s0, cu_seqlens, float(scale), layout,
                 bool(output_final_state))
    o = o.to(out_dt)
    return (o, sN) if output_final_state else o


def lightning_attn_state(k, v, s=None, *, ld=None, ldk=None, ldv=None, initial_state=None, cu_seqlens=None,
                         layout="bhnd"):
    """The final state alone (float32 [B or num_seqs, H, D, E]) without o:
    the state-only pass, e.g. to prefill a decode cache.  Differentiable in
    k, v, the decays and initial_state."""
    _shapes.check_layout(layout)
    dt = _compute_dtype(k.device, k, v)
    ld, ldk, ldv = _decays(s, ld, ldk, ldv)
    ldk, ldv = _vector_pair(ldk, ldv, k)
    s0 = initial_state.float() if initial_state is not None else None
    return _state_fwd(k.to(dt), v.to(dt), ld, ldk, ldv, s0, cu_seqlens, layout)


def lightning_attn_decode(q, k, v, state, s=None, *, ld=None, ldk=None, ldv=None, scale=1.0, layout="bhnd"):
    """One decode step: q, k, v of one token per sequence ([B, H, 1, *] or
    [B, 1, H, *] by layout, or [B, H, *]); state float32 [B, H, D, E] is
    updated in place (S <- decayed S + k^T v); returns o shaped like v.
    Inference only (no autograd)."""
    _shapes.check_layout(layout)
    squeeze = q.dim() == 3
    if squeeze:
        q, k, v = (x.unsqueeze(2 if layout == "bhnd" else 1) for x in (q, k, v))
    if state.dtype != torch.float32:
        raise TypeError("the decode state must be float32 (it is updated in place), got %s" % state.dtype)
    dt = _compute_dtype(q.device, q, k, v)
    ld, ldk, ldv = _decays(s, ld, ldk, ldv)
    if ld is not None and ld.dim() == 2:  # per token [B, H] of a single step
        ld = ld.unsqueeze(2 if layout == "bhnd" else 1)
    ldk, ldv = _vector_pair(ldk, ldv, k)
    o = _decode(q.to(dt), k.to(dt), v.to(dt), state, ld, ldk, ldv, float(scale), layout)
    return o.squeeze(2 if layout == "bhnd" else 1) if squeeze else o
