"""Train a small language model with Lightning Attention, then the same
model with softmax attention (PyTorch's scaled_dot_product_attention), on a
synthetic task; print the loss as it falls and tokens per second.

    python examples/train_tiny.py                   # CUDA if present, else CPU
    python examples/train_tiny.py --device cpu --steps 200

The task: sequences whose first half is drawn from a sparse random Markov
chain (each token has 4 likely successors) and whose second half repeats the
first.  The Markov part is learnable from the previous token alone; the
repeated half needs attention to look back half a sequence.  Loss starts at
ln(vocab) and falls as both are learned.

The attention layer follows TransNormerLLM / MiniMax: SiLU on q and k, ALiBi
decay rates per head scaled by depth (build_slope_tensor with layer_idx),
an RMS norm on the output and a sigmoid output gate.
"""

import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from lightning_attn import build_slope_tensor, lightning_attn_func


class Attention(nn.Module):
    def __init__(self, dim, heads, layer_idx, num_layers, kind):
        super().__init__()
        self.heads, self.head_dim, self.kind = heads, dim // heads, kind
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.gate = nn.Linear(dim, dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.norm = nn.RMSNorm(self.head_dim)
        self.register_buffer("s", build_slope_tensor(heads, layer_idx=layer_idx, num_layers=num_layers))

    def forward(self, x):
        B, N, _ = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, self.head_dim).unbind(2)  # [B, N, H, d] each
        if self.kind == "lightning":
            o = lightning_attn_func(F.silu(q), F.silu(k), v, self.s, layout="bnhd")  # [B, N, H, d]
            o = self.norm(o).reshape(B, N, -1)
        else:
            o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                               is_causal=True)
            o = o.transpose(1, 2).reshape(B, N, -1)
        return self.out(o * torch.sigmoid(self.gate(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, layer_idx, num_layers, kind):
        super().__init__()
        self.n1, self.n2 = nn.RMSNorm(dim), nn.RMSNorm(dim)
        self.attn = Attention(dim, heads, layer_idx, num_layers, kind)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.n1(x))
        return x + self.mlp(self.n2(x))


class TinyLM(nn.Module):
    def __init__(self, vocab, dim, heads, layers, kind):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, i, layers, kind) for i in range(layers))
        self.norm = nn.RMSNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens):
        x = self.emb(tokens)
        for b in self.blocks:
            x = b(x)
        return self.head(self.norm(x))


def make_task(vocab, seed):
    g = torch.Generator().manual_seed(seed)
    succ = torch.stack([torch.randperm(vocab, generator=g)[:4] for _ in range(vocab)])  # 4 successors each
    return succ


def batch(succ, B, N, g):
    vocab = succ.shape[0]
    half = N // 2
    t = torch.empty(B, half, dtype=torch.long)
    t[:, 0] = torch.randint(vocab, (B,), generator=g)
    for i in range(1, half):
        t[:, i] = succ[t[:, i - 1], torch.randint(4, (B,), generator=g)]
    return torch.cat([t, t], dim=1)


def train(kind, args, device, dtype):
    torch.manual_seed(args.seed)
    model = TinyLM(args.vocab, args.dim, args.heads, args.layers, kind).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    succ = make_task(args.vocab, args.seed)
    g = torch.Generator().manual_seed(args.seed + 1)
    data = [batch(succ, args.batch, args.seqlen, g) for _ in range(16)]  # a small pool, reused
    losses, tokens, t_train = [], 0, 0.0
    for step in range(1, args.steps + 1):
        x = data[step % len(data)].to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32):
            logits = model(x[:, :-1])
            loss = F.cross_entropy(logits.float().reshape(-1, args.vocab), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step > 5:  # leave out warm-up (allocator, kernels' first launch)
            t_train += time.perf_counter() - t0
            tokens += x[:, :-1].numel()
        losses.append(loss.item())
        if step == 1 or step % args.log_every == 0 or step == args.steps:
            rate = "%8.0f tokens/s" % (tokens / t_train) if t_train else ""
            print("%-9s step %4d  loss %.3f  %s" % (kind, step, loss.item(), rate), flush=True)
    return losses, (tokens / t_train if t_train else float("nan"))  # nan: every step was warm-up


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="autocast dtype: bf16 (CUDA default) or f32 (CPU default)")
    ap.add_argument("--attn", default="both", choices=["both", "lightning", "sdpa"])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seqlen", type=int, default=257)
    ap.add_argument("--vocab", type=int, default=64)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=50)
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "f32": torch.float32, None: None}[args.dtype]
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    print("device %s, autocast %s, batch %d x %d tokens, vocab %d, ln(vocab) = %.3f"
          % (device, dtype, args.batch, args.seqlen - 1, args.vocab, math.log(args.vocab)))
    kinds = ["lightning", "sdpa"] if args.attn == "both" else [args.attn]
    results = {k: train(k, args, device, dtype) for k in kinds}
    print("\n%-10s %10s %10s %12s" % ("attention", "first", "last 20", "tokens/s"))
    for k, (losses, rate) in results.items():
        print("%-10s %10.3f %10.3f %12.0f" % (k, losses[0], sum(losses[-20:]) / len(losses[-20:]), rate))
    for k, (losses, _) in results.items():
        if not sum(losses[-20:]) / 20 < 0.75 * losses[0]:
            raise SystemExit("%s: the loss did not fall (%.3f -> %.3f)" % (k, losses[0], sum(losses[-20:]) / 20))


if __name__ == "__main__":
    main()
