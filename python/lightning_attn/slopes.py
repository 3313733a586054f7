"""ALiBi-style decay rates per head, as the Lightning Attention models use them.

The rate s of head h gives the log decay ld = -s: the state decays by
exp(-s) per token.  Slopes follow ALiBi (Press et al.), as the original
Lightning Attention / TransNormerLLM `_build_slope_tensor` computes them:
for a power of two n heads, s_h = 2^(-8 (h + 1) / n); otherwise the
p = 2^floor(log2 n) slopes of p heads followed by every other slope of 2p
heads (2^(-8 (2i + 1) / (2p)), i = 0, 1, ...) until n are taken.

By depth (TransNormerLLM, MiniMax-Text-01): layer l of L scales every slope
by 1 - l / (L - 1) + 1e-5, where l counts every decoder layer of the model
(softmax-attention layers included, as MiniMax-Text-01 interleaves them) and
L is the model's number of decoder layers.  The first layer decays fastest;
the last keeps 1e-5 of its rates (almost no decay).

Ports differ: the Hugging Face transformers MiniMax port computes
2^(-8 (h + 1) / n) for every n (not only powers of two: other slopes for
non-power-of-two head counts) and divides by L - 1 + 1e-5, which moves the
factor by at most 1e-5 / (L - 1): negligible except at the last layer,
whose own factor is 1e-5 (there it is 1 / (L - 1) of it, 1.3% at 80 layers).
"""

import math


def alibi_slopes(num_heads):
    """The ALiBi slopes of num_heads heads, a list of floats (no torch
    needed): the original get_slopes recursion (see the module docstring)."""
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
    """The depth factor of TransNormerLLM / MiniMax-Text-01:
    1 - layer_idx / (num_layers - 1) + 1e-5, so the first layer decays
    fastest and the last barely at all (layer_idx counts every decoder
    layer, 0-based; num_layers is the model's decoder-layer count).  A
    single-layer model gets 1 + 1e-5 (the formula's limit; the original
    code divides by zero there)."""
    if not 0 <= layer_idx < num_layers:
        raise ValueError("layer_idx must be in [0, %d), got %d" % (num_layers, layer_idx))
    if num_layers == 1:
        return 1.0 + 1e-5
    return 1.0 - layer_idx / (num_layers - 1) + 1e-5


def build_slope_tensor(num_heads, layer_idx=None, num_layers=None, device=None):
    """The decay rates s as a float32 torch tensor [H, 1, 1], the shape and
    values the original `_build_slope_tensor` returns; pass it as
    lightning_attn_func's s (the op uses ld = -s).  With layer_idx and
    num_layers, the depth-scaled rates of TransNormerLLM / MiniMax-Text-01:
    alibi_slopes(H) x layer_factor(layer_idx, num_layers).  Register it as a
    buffer and pass the same tensor on every call: its log decay is then
    cached (lightning_attn_func)."""
    import torch

    slopes = alibi_slopes(num_heads)
    if (layer_idx is None) != (num_layers is None):
        raise ValueError("give both layer_idx and num_layers, or neither")
    if layer_idx is not None:
        f = layer_factor(layer_idx, num_layers)
        slopes = [x * f for x in slopes]
    return torch.tensor(slopes, dtype=torch.float32, device=device).reshape(num_heads, 1, 1)
