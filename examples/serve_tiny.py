"""Serve a small lightning-attention language model with continuous
batching: per-layer state pools, packed prefills into free slots, and one
decode step over every live request at a time; then check every greedy
generation against the same model run one request at a time.

    python examples/serve_tiny.py                    # CUDA if present, else CPU
    python examples/serve_tiny.py --device cpu --small

The model (random weights, seeded) follows the lightning-attention layer of
MiniMax-Text-01 (Hugging Face transformers' MiniMax port): one projection
to q, k, v with SiLU, ALiBi decay rates per head scaled by depth
(build_slope_tensor with layer_idx), an RMS norm over the heads' output and
a sigmoid output gate; pre-norm residual blocks with an MLP.

A lightning layer's memory of a request is one state [H, D, E] per layer,
whatever its length, so the engine keeps a pool of states per layer,
one slot per live request:
  * requests arrive over time with different prompt lengths and numbers of
    new tokens;
  * arrived requests take free slots and are prefilled together as one
    packed batch (cu_seqlens) by lightning_attn_prefill, which writes each
    prompt's final state into its slot; has_initial_state = 0 starts them
    from zeros, so a slot freed by a finished request needs no clearing;
  * every step decodes one token of every live request through
    lightning_attn_decode with slots.  On CUDA the decode batch has a fixed
    size, padded with slot -1 (padding reads and writes no state), so one
    CUDA graph, captured once, replays every step with new slot values;
    the tokens stay on the GPU (a table of each slot's last token), and
    nothing waits for the GPU until the end.  On the CPU the step runs
    eagerly over the live requests.
Greedy sampling.  It prints tokens per second and the mean time of a decode
step, then checks that each request's generation equals the model's greedy
generation for that request alone, recomputing the whole sequence with
lightning_attn_func for every new token, and exits non-zero on a mismatch.
"""

import argparse
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import lightning_attn as la
from lightning_attn import build_slope_tensor, lightning_attn_decode, lightning_attn_func, lightning_attn_prefill


# ---- the model -----------------------------------------------------------------------------------

class LightningLayer(nn.Module):
    """MiniMax's lightning attention: q, k, v = SiLU(x W), o = RMSNorm(attn)
    * sigmoid(x W_gate), then the output projection.  Three ways to run the
    attention, all on the same weights: over whole sequences (the
    reference), a packed prefill into pool slots, one decode token a
    sequence from and into pool slots."""

    def __init__(self, dim, heads, layer_idx, num_layers):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.gate = nn.Linear(dim, dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.norm = nn.RMSNorm(dim)
        self.register_buffer("s", build_slope_tensor(heads, layer_idx=layer_idx, num_layers=num_layers))

    def _qkv(self, x):
        """[..., dim] -> q, k, v [..., H, D]."""
        return F.silu(self.qkv(x)).unflatten(-1, (3, self.heads, self.head_dim)).unbind(-3)

    def _finish(self, o, x):
        return self.out(self.norm(o.flatten(-2)) * torch.sigmoid(self.gate(x)))

    def forward(self, x):
        """x [1, N, dim]: one whole sequence."""
        q, k, v = self._qkv(x)
        return self._finish(lightning_attn_func(q, k, v, self.s, layout="bnhd"), x)

    def prefill(self, x, pool, slots, fresh, cu, max_seqlen):
        """x [N, dim]: the packed prompts; their final states go to pool[slots]."""
        q, k, v = (t.unsqueeze(0) for t in self._qkv(x))
        o = lightning_attn_prefill(q, k, v, self.s, pool=pool, slots=slots, has_initial_state=fresh, cu_seqlens=cu,
                                   max_seqlen=max_seqlen, layout="bnhd")
        return self._finish(o[0], x)

    def decode(self, x, pool, slots):
        """x [B, dim]: one token of each request, its state in pool[slots]."""
        q, k, v = self._qkv(x)
        return self._finish(lightning_attn_decode(q, k, v, pool, self.s, slots=slots), x)


class Block(nn.Module):
    def __init__(self, dim, heads, layer_idx, num_layers):
        super().__init__()
        self.n1, self.n2 = nn.RMSNorm(dim), nn.RMSNorm(dim)
        self.attn = LightningLayer(dim, heads, layer_idx, num_layers)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x, attend):
        """attend: how the attention runs on the normed input (whole, prefill or decode)."""
        x = x + attend(self.n1(x))
        return x + self.mlp(self.n2(x))


class TinyLM(nn.Module):
    def __init__(self, vocab, dim, heads, layers):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, i, layers) for i in range(layers))
        self.norm = nn.RMSNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        nn.init.normal_(self.head.weight, std=dim ** -0.5)  # logits of unit scale: greedy choices are clear

    def forward(self, tokens):
        """tokens [N] of one request -> logits [N, vocab]."""
        x = self.emb(tokens)[None]
        for b in self.blocks:
            x = b(x, b.attn)
        return self.head(self.norm(x))[0]

    def prefill(self, tokens, pools, slots, fresh, cu, last, max_seqlen):
        """tokens [N]: packed prompts -> logits [S, vocab] of each prompt's last token."""
        x = self.emb(tokens)
        for b, pool in zip(self.blocks, pools):
            x = b(x, lambda h: b.attn.prefill(h, pool, slots, fresh, cu, max_seqlen))
        return self.head(self.norm(x[last]))

    def decode(self, tokens, pools, slots):
        """tokens [B]: one token of each request -> logits [B, vocab]."""
        x = self.emb(tokens)
        for b, pool in zip(self.blocks, pools):
            x = b(x, lambda h: b.attn.decode(h, pool, slots))
        return self.head(self.norm(x))


# ---- the engine ----------------------------------------------------------------------------------

class Request:
    def __init__(self, rid, arrival, prompt, max_new):
        self.rid, self.arrival, self.prompt, self.max_new = rid, arrival, prompt, max_new
        self.slot, self.made = -1, 0  # tokens generated so far (their values stay on the device)


class Engine:
    """Per-layer state pools of num_slots states, a free list, and a table
    of each slot's last token on the device (one extra entry takes the
    padding rows' writes), so that decode steps need no token from the host.
    The host decides who runs (counts and slots only) and logs which slot
    each step's tokens belong to; the tokens are read back once, at the end."""

    def __init__(self, model, num_slots, device, graph):
        self.model, self.device, self.num_slots = model, device, num_slots
        blk = model.blocks[0].attn
        self.pools = [torch.zeros(num_slots, blk.heads, blk.head_dim, blk.head_dim, device=device)
                      for _ in model.blocks]
        self.free = list(range(num_slots))
        self.last = torch.zeros(num_slots + 1, dtype=torch.long, device=device)
        self.log = []  # (request ids, their tokens: a device tensor)
        self.graph = None
        if graph:
            self._capture()

    def _to_device(self, values, dtype):
        t = torch.tensor(values, dtype=dtype)
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)  # no wait for the GPU
        return t

    def prefill(self, reqs):
        """Prefill the requests' prompts as one packed batch into free slots;
        their first new token goes to the token table and the log."""
        for r in reqs:
            r.slot = self.free.pop()
        lens = [len(r.prompt) for r in reqs]
        cu = [0]
        for n in lens:
            cu.append(cu[-1] + n)
        tokens = self._to_device([t for r in reqs for t in r.prompt], torch.long)
        slots = self._to_device([r.slot for r in reqs], torch.int32)
        fresh = torch.zeros(len(reqs), dtype=torch.bool, device=self.device)  # start from zeros
        last_pos = self._to_device([c - 1 for c in cu[1:]], torch.long)
        logits = self.model.prefill(tokens, self.pools, slots, fresh, self._to_device(cu, torch.long), last_pos,
                                    max(lens))
        first = logits.argmax(-1)
        self.last.index_copy_(0, slots.long(), first)
        self.log.append(([r.rid for r in reqs], first))
        for r in reqs:
            r.made = 1

    def _step(self, slots):
        """One decode token of every row: the input is the slot's last token;
        the output replaces it (padding rows write the extra entry)."""
        rows = torch.where(slots >= 0, slots.long(), self.num_slots)
        nxt = self.model.decode(self.last[rows], self.pools, slots).argmax(-1)
        self.last.index_copy_(0, rows, nxt)  # padding rows all write the spare entry, which nobody reads
        return nxt

    def _capture(self):
        """One CUDA graph of a decode step over num_slots rows, captured
        with every row padding (nothing in the pools is touched); replays
        read new slot values from the static slots tensor."""
        self.slots = torch.full((self.num_slots,), -1, dtype=torch.int32, device=self.device)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up on the capture stream: its library handle exists before capture
            for _ in range(2):
                self._step(self.slots)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, stream=side):
            self.out = self._step(self.slots)

    def decode(self, live):
        slots = [r.slot for r in live]
        if self.graph is not None:
            self.slots.copy_(self._to_device(slots + [-1] * (self.num_slots - len(slots)), torch.int32),
                             non_blocking=True)
            self.graph.replay()
            toks = self.out[:len(live)].clone()
        else:
            toks = self._step(torch.tensor(slots, dtype=torch.int32))
        self.log.append(([r.rid for r in live], toks))
        for r in live:
            r.made += 1

    def release(self, r):
        self.free.append(r.slot)
        r.slot = -1


def serve(model, requests, num_slots, device, graph):
    """Run the requests to completion; return (generations by request id,
    generated tokens, seconds, decode step times)."""
    eng = Engine(model, num_slots, device, graph)
    pending = sorted(requests, key=lambda r: r.arrival)
    live, done = [], []
    step_times = []
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    step = 0
    while pending or live:
        new = []
        while pending and pending[0].arrival <= step and len(eng.free) > len(new):
            new.append(pending.pop(0))
        if new:
            eng.prefill(new)
            live += new
        for r in [r for r in live if r.made == r.max_new]:  # a single new token: done at the prefill
            live.remove(r)
            eng.release(r)
            done.append(r)
        if live:
            if cuda:
                ev = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                ev[0].record()
            else:
                ts = time.perf_counter()
            eng.decode(live)
            if cuda:
                ev[1].record()
                step_times.append(ev)
            else:
                step_times.append(time.perf_counter() - ts)
            for r in [r for r in live if r.made == r.max_new]:
                live.remove(r)
                eng.release(r)
                done.append(r)
        step += 1
    # The one read of the generated tokens, after everything ran.
    ids = [i for ids, _ in eng.log for i in ids]
    toks = torch.cat([t for _, t in eng.log]).tolist()
    seconds = time.perf_counter() - t0
    if cuda:
        step_times = [a.elapsed_time(b) / 1e3 for a, b in step_times]
    gens = {r.rid: [] for r in requests}
    for i, t in zip(ids, toks):
        gens[i].append(t)
    return gens, len(toks), seconds, step_times


# ---- the check -------------------------------------------------------------------------------

@torch.no_grad()
def generate_alone(model, prompt, max_new, device):
    """Greedy generation of one request with the whole sequence recomputed
    through lightning_attn_func for every new token; also the margin by
    which each choice won (for telling a near-tie from a real mismatch)."""
    seq = torch.tensor(prompt, dtype=torch.long, device=device)
    out, margins = [], []
    for _ in range(max_new):
        logits = model(seq)[-1]
        top = logits.topk(2)
        out.append(int(top.indices[0]))
        margins.append((logits - logits[top.indices[0]]).abs())
        seq = torch.cat([seq, top.indices[:1]])
    return out, margins


def check(model, requests, gens, device, tie):
    bad = 0
    for r in requests:
        want, margins = generate_alone(model, r.prompt, r.max_new, device)
        got = gens[r.rid]
        if got == want:
            continue
        j = next(i for i in range(min(len(got), len(want))) if got[i] != want[i]) if len(got) == len(want) else None
        if j is not None and float(margins[j][got[j]]) <= tie:
            print("request %d: token %d is a near-tie (logits within %.1e), served %d, alone %d: accepted"
                  % (r.rid, j, tie, got[j], want[j]))
            continue
        bad += 1
        print("MISMATCH request %d (prompt %d tokens): served %s, alone %s" % (r.rid, len(r.prompt), got, want))
    return bad


# ---- main ----------------------------------------------------------------------------------------

def make_requests(n, vocab, prompt_range, new_range, seed):
    g = torch.Generator().manual_seed(seed)
    rnd = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=g))
    reqs, t = [], 0
    for i in range(n):
        t += rnd(0, 2)  # a few arrive together, then a pause
        prompt = torch.randint(vocab, (rnd(*prompt_range),), generator=g).tolist()
        reqs.append(Request(i, t, prompt, rnd(*new_range)))
    return reqs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cuda_ok = torch.cuda.is_available() and la.backend_available(la.BACKEND_CUDA)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if cuda_ok else "cpu")
    ap.add_argument("--requests", type=int, default=None, help="number of requests (32; 8 with --small)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--small", action="store_true", help="a quick configuration (2 layers, short requests)")
    ap.add_argument("--no-graph", action="store_true", help="CUDA: decode eagerly instead of replaying a graph")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.small:
        layers, slots, prompts, news, n = 2, 4, (3, 40), (1, 12), 8
    else:
        layers, slots, prompts, news, n = 4, 16, (8, 300), (8, 64), 32
    n = args.requests or n
    vocab, dim, heads = 512, 256, 4  # D = E = 64
    torch.manual_seed(args.seed)
    model = TinyLM(vocab, dim, heads, layers).to(device).eval()
    requests = make_requests(n, vocab, prompts, news, args.seed)
    graph = device.type == "cuda" and not args.no_graph
    print("device %s, %d layers, d_model %d, %d heads of 64, vocab %d; %d requests (prompts %d-%d tokens, %d-%d new), "
          "%d state slots a layer, decode %s" % (device, layers, dim, heads, vocab, n, prompts[0], prompts[1],
                                                 news[0], news[1], slots,
                                                 "by one CUDA graph of %d rows" % slots if graph else "eagerly"))
    with torch.no_grad():
        gens, made, seconds, steps = serve(model, requests, slots, device, graph)
    print("served %d requests: %d tokens in %.3f s, %.0f tokens/s; %d decode steps, %.3f ms a step on average"
          % (n, made, seconds, made / seconds, len(steps), 1e3 * sum(steps) / max(len(steps), 1)))
    bad = check(model, requests, gens, device, tie=1e-4 if device.type == "cpu" else 1e-3)
    if bad:
        print("FAILED: %d of %d requests differ from their generation alone" % (bad, n))
        sys.exit(1)
    print("check passed: every request's greedy generation equals its generation alone (%d requests)" % n)


if __name__ == "__main__":
    main()
