"""The library on numpy arrays (CPU backend), no torch needed.

    from lightning_attn import cpu
    o, sN = cpu.forward(q, k, v, ld=ld, output_final_state=True)
    g = cpu.backward(q, k, v, d_o, ld=ld, want_d_ld=True)   # dict: dq, dk, dv, d_ld

Arrays are float32 or float16 (numpy has no bfloat16), any strides; log
decays and states float32.  Shapes and decay kinds as in
lightning_attn_func: q, k [B, H, N, D], v [B, H, N, E] (layout="bhnd") or
[B, N, H, *] (layout="bnhd"); ld per head [H] or per token [B, H, N];
ldk / ldv per token and channel; states [S, H, D, E].
"""

import numpy as np

from . import _clib as C
from . import _shapes

_DT = {np.dtype(np.float32): C.DTYPE_F32, np.dtype(np.float16): C.DTYPE_F16}


def _info(a):
    if not isinstance(a, np.ndarray):
        raise TypeError("expected a numpy array, got %s" % type(a).__name__)
    if a.dtype not in _DT:
        raise TypeError("dtype %s is not supported: use float32 or float16" % a.dtype)
    if any(s % a.itemsize for s in a.strides):
        raise ValueError("strides %s are not a multiple of the element size" % (a.strides,))
    return a.ctypes.data, _DT[a.dtype], a.shape, tuple(s // a.itemsize for s in a.strides)


def _f32(x):
    return None if x is None else np.asarray(x, dtype=np.float32)


def _handle(num_threads):
    h = C.handle(C.BACKEND_CPU)
    C.set_num_threads(h, num_threads)
    return h


def _dims(q, v, layout):
    return _shapes.dims(q.shape, v.shape, layout)


def _num_states(B, cu_seqlens):
    return len(cu_seqlens) - 1 if cu_seqlens is not None else B


def forward(q, k, v, *, ld=None, ldk=None, ldv=None, scale=1.0, initial_state=None, output_final_state=False,
            cu_seqlens=None, layout="bhnd", num_threads=0):
    """o (and the final state when output_final_state)."""
    B, H, N, D, E = _dims(q, v, layout)
    o = np.empty(q.shape[:3] + (E,), dtype=q.dtype)
    sN = np.empty((_num_states(B, cu_seqlens), H, D, E), np.float32) if output_final_state else None
    prob, tens, _ = _shapes.describe(_info, layout, scale, cu_seqlens, q=q, k=k, v=v, o=o, ld=_f32(ld),
                                     ldk=_f32(ldk), ldv=_f32(ldv), initial_state=_f32(initial_state), final_state=sN)
    C.run(_handle(num_threads), C.OP_FORWARD, prob, tens)
    return (o, sN) if output_final_state else o


def backward(q, k, v, d_o, *, ld=None, ldk=None, ldv=None, scale=1.0, initial_state=None, d_final_state=None,
             want_d_ld=False, want_d_initial_state=False, cu_seqlens=None, layout="bhnd", num_threads=0):
    """Gradients {dq, dk, dv} plus d_ld (or d_ldk, d_ldv for vector decays)
    when want_d_ld, d_initial_state when want_d_initial_state."""
    B, H, N, D, E = _dims(q, v, layout)
    out = {"dq": np.empty_like(q), "dk": np.empty_like(k), "dv": np.empty_like(v)}
    ld, ldk, ldv = _f32(ld), _f32(ldk), _f32(ldv)
    if want_d_ld:
        if ld is not None:
            out["d_ld"] = np.empty(ld.shape, np.float32)
        if ldk is not None:
            out["d_ldk"] = np.empty(ldk.shape, np.float32)
        if ldv is not None:
            out["d_ldv"] = np.empty(ldv.shape, np.float32)
    if want_d_initial_state:
        out["d_initial_state"] = np.empty((_num_states(B, cu_seqlens), H, D, E), np.float32)
    prob, tens, _ = _shapes.describe(_info, layout, scale, cu_seqlens, q=q, k=k, v=v, d_o=d_o, ld=ld, ldk=ldk,
                                     ldv=ldv, initial_state=_f32(initial_state), d_final_state=_f32(d_final_state),
                                     **out)
    C.run(_handle(num_threads), C.OP_BACKWARD, prob, tens)
    return out


def state_forward(k, v, *, ld=None, ldk=None, ldv=None, initial_state=None, cu_seqlens=None, layout="bhnd",
                  num_threads=0):
    """The final state alone, [S, H, D, E] float32."""
    B, H, N, D, E = _dims(k, v, layout)
    sN = np.empty((_num_states(B, cu_seqlens), H, D, E), np.float32)
    prob, tens, _ = _shapes.describe(_info, layout, 1.0, cu_seqlens, k=k, v=v, ld=_f32(ld), ldk=_f32(ldk),
                                     ldv=_f32(ldv), initial_state=_f32(initial_state), final_state=sN)
    C.run(_handle(num_threads), C.OP_STATE_FORWARD, prob, tens)
    return sN


def decode(q, k, v, state, *, ld=None, ldk=None, ldv=None, scale=1.0, layout="bhnd", num_threads=0):
    """One token per sequence (q, k, v with N = 1); state [B, H, D, E]
    float32 is updated in place; returns o."""
    B, H, N, D, E = _dims(q, v, layout)
    if state.dtype != np.float32:
        raise TypeError("the state must be float32 (it is updated in place), got %s" % state.dtype)
    o = np.empty(q.shape[:3] + (E,), dtype=q.dtype)
    prob, tens, _ = _shapes.describe(_info, layout, scale, None, q=q, k=k, v=v, o=o, ld=_f32(ld), ldk=_f32(ldk),
                                     ldv=_f32(ldv), initial_state=state, final_state=state)
    C.run(_handle(num_threads), C.OP_DECODE, prob, tens)
    return o
