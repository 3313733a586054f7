"""ALiBi-style decay rates per head, as the Lightning Attention models use them.

The rate s of head h gives the log decay ld = -s: the state decays by
exp(-s) per token.  Slopes follow ALiBi (Press et al.): for a power of two
n heads, s_h = 2^(-8 (h + 1) / n); otherwise the n' = 2^floor(log2 n) slopes
followed by every other slope of 2 n' heads, until n are taken.
"""

import math


def alibi_slopes(num_heads):
    """The ALiBi slopes of num_heads heads, a list of floats (no torch needed)."""
    if num_heads < 1:
        raise ValueError("num_heads must be >= 1, got %d" % num_heads)

    def power_of_2(n):
        start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))
        return [start * start ** i for i in range(n)]

    if math.log2(num_heads).is_integer():
        return power_of_2(num_heads)
    p = 2 ** math.floor(math.log2(num_heads))
    return power_of_2(p) + alibi_slopes(2 * p)[0::2][: num_heads - p]


def layer_factor(layer_idx, num_layers):
    """TransNormerLLM / MiniMax scale slopes by depth: 1 - layer / (layers - 1)
    + 1e-5, so the first layer decays fastest and the last barely at all."""
    if not 0 <= layer_idx < num_layers:
        raise ValueError("layer_idx must be in [0, %d), got %d" % (num_layers, layer_idx))
    if num_layers == 1:
        return 1.0 + 1e-5
    return 1.0 - layer_idx / (num_layers - 1) + 1e-5


def build_slope_tensor(num_heads, layer_idx=None, num_layers=None, device=None):
    """The decay rates s as a float32 torch tensor [H, 1, 1], the shape the
    original `_build_slope_tensor` returns; pass it as lightning_attn_func's s.
    With layer_idx and num_layers, the layer-dependent rates of
    TransNormerLLM / MiniMax (slope x (1 - layer / (layers - 1) + 1e-5))."""
    import torch

    slopes = alibi_slopes(num_heads)
    if (layer_idx is None) != (num_layers is None):
        raise ValueError("give both layer_idx and num_layers, or neither")
    if layer_idx is not None:
        f = layer_factor(layer_idx, num_layers)
        slopes = [x * f for x in slopes]
    return torch.tensor(slopes, dtype=torch.float32, device=device).reshape(num_heads, 1, 1)
