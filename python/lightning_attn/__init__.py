"""lightning_attn: Lightning Attention (causal linear attention with decay)
on C and CUDA kernels, with PyTorch autograd ops.

    from lightning_attn import lightning_attn_func, build_slope_tensor
    s = build_slope_tensor(H).to(q.device)        # ALiBi decay rates [H, 1, 1]
    o = lightning_attn_func(q, k, v, s)           # q, k [B, H, N, D]; v [B, H, N, E]

Without torch, lightning_attn.cpu runs the library on numpy arrays.
`python -m lightning_attn` prints the build and the backends usable here.
"""

from ._clib import (BACKEND_CPU, BACKEND_CUDA, LightningAttnError, LightningAttnMemoryError,
                    LightningAttnNotSupported, LightningAttnRuntimeError, LightningAttnValueError,
                    backend_available, build_info)
from .slopes import alibi_slopes, build_slope_tensor, layer_factor

__version__ = build_info().get("version", "unknown")

try:
    import torch as _torch  # noqa: F401
except ImportError:  # the numpy interface (lightning_attn.cpu) still works
    _torch = None

if _torch is not None:
    from .ops import (check_errors, lightning_attn_decode, lightning_attn_func, lightning_attn_prefill,
                      lightning_attn_state, set_value_checks)

__all__ = ["lightning_attn_func", "lightning_attn_decode", "lightning_attn_prefill", "lightning_attn_state",
           "build_slope_tensor", "alibi_slopes", "layer_factor", "set_value_checks", "check_errors",
           "backend_available", "build_info",
           "LightningAttnError", "LightningAttnValueError", "LightningAttnNotSupported", "LightningAttnMemoryError",
           "LightningAttnRuntimeError", "BACKEND_CPU", "BACKEND_CUDA"]
