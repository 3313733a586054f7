"""lightning-attn benchmark: the tables (speed and memory, forward and
backward) for every variant of the library next to softmax attention
(PyTorch's scaled_dot_product_attention), with floors, JSON and plots.

    python bench/bench.py                 # GPU if present, else CPU; all configurations
    python bench/bench.py --quick         # about a minute
    python bench/bench.py -B 2 -H 8 -N 1024,4096 -D 64 --dtype f16
    python bench/bench.py --plot-from build/bench/results.json

Every column of a table comes from this one process: the library through its
Python package, SDPA through torch.  Times: median of --reps runs after
warm-up, CUDA events, the L2 cache flushed (a 256 MiB write) before each run,
with the host kept ahead of the GPU (a spin of about 1 ms is queued before the
start event) so that a call's host time never idles the GPU inside the timed
span: every column times its GPU work, as in a training step where the host
runs ahead (bench/host_overhead.py measures the host time per call);
the backward is timed on its own, from a saved forward (autograd.grad with
retain_graph).  Where fla (flash-linear-attention) is importable on the GPU,
its chunk_gla and chunk_simple_gla are baseline columns (FLA_GLA next to the
vector decays, FLA_SIMPLE_GLA next to LASD; --no-fla leaves them out).  Memory: the call's inputs plus the peak PyTorch's allocator holds above
them during the call (the library takes its workspace from it), next
to the library's own account (tensors plus la_workspace_size); the
benchmark's own buffers (the L2 flush) are left out.  Floors: the
bytes that must move over the copy bandwidth, and the FLOPs over the matrix
rate, both measured at start-up on this device; x_floor = time / floor.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

import lightning_attn as la
from lightning_attn import _clib as C

VARIANTS = ["LAND", "LASD", "LASD_PL", "LASD3", "LASD_R", "LAVD_K", "LAVD_KV", "STATE", "STATE_VK", "STATE_VKV"]
# The state-only pass: per-head decay, per-key-channel decay (GLA-style), per key and value channel.
STATES = ("STATE", "STATE_VK", "STATE_VKV")
# Baselines from fla (flash-linear-attention) when it is importable on the GPU: name -> its op.
FLA = {}
DT = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}
CHUNK = 64  # the kernels' chunk length, for the FLOP count of the intra-chunk products


def log(msg):
    sys.stderr.write("\r\033[K" + msg)
    sys.stderr.flush()


# ---- timing and memory ---------------------------------------------------------------

class Timer:
    def __init__(self, device, reps, warmup):
        self.device, self.reps, self.warmup = device, reps, warmup
        self.flush = torch.empty(256 << 20, dtype=torch.uint8, device=device) if device.type == "cuda" else None
        self.spin = self._spin_cycles() if device.type == "cuda" else 0

    @staticmethod
    def _spin_cycles(ms=1.0):
        """GPU clock cycles of torch.cuda._sleep that take about ms."""
        n = 1 << 20
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for _ in range(2):  # the first is a warm-up
            a.record()
            torch.cuda._sleep(n)
            b.record()
            b.synchronize()
        return int(n * ms / max(a.elapsed_time(b), 1e-3))

    def __call__(self, fn):
        for _ in range(self.warmup):
            fn()
        ts = []
        for _ in range(self.reps):
            if self.flush is not None:
                self.flush.zero_()
                torch.cuda._sleep(self.spin)
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                b.synchronize()
                ts.append(a.elapsed_time(b))
            else:
                t0 = time.perf_counter()
                fn()
                ts.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(ts)


def peak_mib(device, fn, input_bytes):
    """MiB of the call's inputs plus the most the allocator holds above what
    was allocated before fn (outputs, saved tensors, gradients, workspace):
    the benchmark's own buffers (the L2 flush, other variants' inputs) do not
    count."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before + input_bytes) / 2 ** 20


def measure_ceilings(device, dtype):
    """Copy bandwidth (bytes/s) and matrix rate (FLOP/s) on this device."""
    t = Timer(device, 10, 3)
    n = (1 << 30) if device.type == "cuda" else (256 << 20)
    x = torch.empty(n, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    bw = 2 * n / (t(lambda: y.copy_(x)) * 1e-3)
    m = 8192 if device.type == "cuda" else 1024
    mdt = dtype if device.type == "cuda" else torch.float32
    a = torch.randn(m, m, device=device, dtype=mdt)
    rate = 2 * m ** 3 / (t(lambda: a @ a) * 1e-3)
    return bw, rate


# ---- the work of one row -----------------------------------------------------------------

def floors(variant, B, H, N, D, E, elem):
    """Bytes that must move and FLOPs, forward and backward."""
    tok = B * H * N
    qkvo = tok * (2 * D + 2 * E) * elem
    dec = {"LASD3": tok * 4, "LAVD_K": tok * D * 4, "LAVD_KV": tok * (D + E) * 4, "STATE_VK": tok * D * 4,
           "STATE_VKV": tok * (D + E) * 4}.get(variant, 0)
    flops = tok * (4 * D * E + CHUNK * (D + E))
    st = B * H * D * E * 4
    if variant in STATES:
        return tok * (D + E) * elem + dec + st, tok * (D + E) * elem * 2 + 2 * dec + st, tok * 2 * D * E, tok * 4 * D * E
    if variant == "LASD_R":  # every step reads and writes the fp32 state
        return qkvo + dec + 2 * st * N, None, tok * 4 * D * E, None
    # backward: q, k, v, dO read, dq, dk, dv written (+ decays and their gradients)
    bwd = tok * (3 * D + 3 * E + D) * elem + 2 * dec
    return qkvo + dec, bwd, flops, 2 * flops


class Row:
    """Inputs of one (configuration, N) and the call of each variant."""

    def __init__(self, B, H, N, D, E, dtype, device, seed=0):
        g = torch.Generator(device=device).manual_seed(seed)
        r = lambda *s, dt=dtype: torch.randn(*s, generator=g, device=device, dtype=dt)
        self.B, self.H, self.N, self.D, self.E, self.device = B, H, N, D, E, device
        self.q, self.k = r(B, H, N, D) / D ** 0.5, r(B, H, N, D) / D ** 0.5
        self.v = r(B, H, N, E)
        self.do = r(B, H, N, E)
        self.s = la.build_slope_tensor(H, device=device)
        u = lambda *s: -torch.rand(*s, generator=g, device=device) * 0.1 - 1e-3
        self.ld_tok = u(B, H, N)
        self.ldk, self.ldv = u(B, H, N, D), u(B, H, N, E)
        self.dstate = r(B, H, D, E, dt=torch.float32)
        self._fla = None

    def fla_inputs(self):
        """The same inputs in fla's layout [B, N, H, *], made once (not timed)."""
        if self._fla is None:
            t = lambda x: x.transpose(1, 2).contiguous()
            self._fla = {"q": t(self.q), "k": t(self.k), "v": t(self.v), "do": t(self.do), "g": t(self.ldk),
                         "g_gamma": -self.s.float().reshape(-1)}
        return self._fla

    def leaves(self, variant):
        if variant in FLA:  # chunk_gla's gate takes a gradient, as in GLA training; simple GLA's fixed rate none
            f = self.fla_inputs()
            x = [f[n].detach().requires_grad_() for n in ("q", "k", "v")]
            return x, ({"g": f["g"].detach().requires_grad_()} if variant == "FLA_GLA" else {"g_gamma": f["g_gamma"]})
        x = [t.detach().requires_grad_() for t in (self.q, self.k, self.v)]
        dec = {"LASD": {"s": self.s}, "LASD_PL": {"s": self.s.clone().requires_grad_()},
               "LASD3": {"ld": self.ld_tok}, "LAVD_K": {"ldk": self.ldk},
               "LAVD_KV": {"ldk": self.ldk, "ldv": self.ldv}, "STATE": {"s": self.s},
               "STATE_VK": {"ldk": self.ldk}, "STATE_VKV": {"ldk": self.ldk, "ldv": self.ldv}}.get(variant, {})
        return x, dec

    def forward(self, variant, x, dec):
        q, k, v = x
        if variant in FLA:
            return FLA[variant](q, k, v, scale=1.0, **dec)[0]
        if variant in STATES:
            return la.lightning_attn_state(k, v, **dec)
        if variant == "SDPA":
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return la.lightning_attn_func(q, k, v, **dec)

    def decode_loop(self):
        state = torch.zeros(self.B, self.H, self.D, self.E, device=self.device)
        for t in range(self.N):
            la.lightning_attn_decode(self.q[:, :, t], self.k[:, :, t], self.v[:, :, t], state, self.s)

    def decode_graph_loop(self):
        """The decode step captured once in a CUDA graph (static q, k, v and
        state, as a serving loop holds them) and replayed N times."""
        q1, k1, v1 = (x[:, :, :1].clone() for x in (self.q, self.k, self.v))
        state = torch.zeros(self.B, self.H, self.D, self.E, device=self.device)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.no_grad():
            with torch.cuda.stream(side):  # the capture stream's handle is made before the capture
                la.lightning_attn_decode(q1, k1, v1, state, self.s)
            torch.cuda.synchronize()
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, stream=side):
                la.lightning_attn_decode(q1, k1, v1, state, self.s)

        def loop():
            for _ in range(self.N):
                g.replay()
        return loop

    def grad_of(self, variant, out, x, dec):
        inputs = list(x) + [t for t in dec.values() if t.requires_grad]
        if variant in STATES:  # no q
            inputs = inputs[1:]
        g = self.dstate if variant in STATES else self.fla_inputs()["do"] if variant in FLA else self.do
        return lambda: torch.autograd.grad(out, inputs, g, retain_graph=True)


def sdpa_backends(device):
    """SDPA columns: (name, context manager factory) for the backends present."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    if device.type != "cuda":
        return [("SDPA", lambda: sdpa_kernel([SDPBackend.MATH, SDPBackend.FLASH_ATTENTION,
                                             SDPBackend.EFFICIENT_ATTENTION]))]
    cols = [("SDPA_flash", lambda: sdpa_kernel(SDPBackend.FLASH_ATTENTION))]
    if hasattr(SDPBackend, "CUDNN_ATTENTION"):
        cols.append(("SDPA_cudnn", lambda: sdpa_kernel(SDPBackend.CUDNN_ATTENTION)))
    return cols


def load_fla(device, variants):
    """fla's ops as baseline columns, when fla is importable on the GPU:
    chunk_gla next to the vector decays, chunk_simple_gla (a fixed rate per
    head) next to LASD.  Returns fla's version, or None."""
    if device.type != "cuda":
        return None
    try:
        import fla
        from fla.ops.gla import chunk_gla
        from fla.ops.simple_gla import chunk_simple_gla
    except Exception as e:  # not installed, or no triton for this GPU
        log("fla baseline columns skipped: %s" % str(e).splitlines()[0][:120])
        return None
    if "LASD" in variants:
        FLA["FLA_SIMPLE_GLA"] = chunk_simple_gla
    if "LAVD_K" in variants or "LAVD_KV" in variants:
        FLA["FLA_GLA"] = chunk_gla
    return getattr(fla, "__version__", "unknown")


def run_row(row, variants, sdpa_cols, timer, args, ceil):
    """{column: {fwd_ms, bwd_ms, mem_fwd_mib, mem_bwd_mib, ...}} for one row."""
    out = {}
    elem = row.q.element_size()
    bw, rate = ceil
    for name in variants + list(FLA) + [c[0] for c in sdpa_cols]:
        log("%s %s" % (args.tag, name))
        res = {}
        try:
            if name == "LASD_R":
                if row.N > args.decode_max_n:
                    continue
                with torch.no_grad():
                    res["fwd_ms"] = timer(row.decode_loop)
                # Per decode step: eager (what a Python loop pays per token) and replayed from a CUDA graph.
                res["step_us"] = res["fwd_ms"] * 1e3 / row.N
                if row.device.type == "cuda":
                    res["step_graph_us"] = timer(row.decode_graph_loop()) * 1e3 / row.N
            elif name.startswith("SDPA"):
                ctx = dict(sdpa_cols)[name]
                with ctx():
                    res.update(time_fwd_bwd(row, "SDPA", timer))
            else:
                res.update(time_fwd_bwd(row, name, timer))
        except Exception as e:  # a column the backend or the baseline cannot run is reported, not fatal
            declined = isinstance(e, la.LightningAttnNotSupported) or (isinstance(e, RuntimeError) and (
                "No available kernel" in str(e) or "not supported" in str(e).lower()))
            if declined or name in FLA:
                out[name] = {"error": (str(e).splitlines() or [type(e).__name__])[0][:200]}
                continue
            raise
        if name in VARIANTS:
            bf, bb, ff, fb = floors(name, row.B, row.H, row.N, row.D, row.E, elem)
            res["floor_fwd_ms"] = max(bf / bw, ff / rate) * 1e3
            res["floor_bwd_ms"] = max(bb / bw, fb / rate) * 1e3 if bb else None
            res["x_floor_fwd"] = res["fwd_ms"] / res["floor_fwd_ms"] if res.get("fwd_ms") else None
            if res.get("bwd_ms") and res["floor_bwd_ms"]:
                res["x_floor_bwd"] = res["bwd_ms"] / res["floor_bwd_ms"]
        out[name] = res
    return out


def account_mib(row, variant):
    """The library's own account of a call's memory: its tensors plus the
    workspace the op took for that call (la_workspace_size_for), forward and
    forward + backward.  Each op's workspace lives only during its call, so
    forward + backward peaks in one of two phases: the forward (inputs, the
    incoming gradient, the output, the forward's workspace) or the backward
    (the same, the gradients of q, k, v, the backward's workspace; the decay
    tensors here take no gradient but LASD_PL's slopes, a few bytes)."""
    from lightning_attn import ops
    B, H, N, D, E = row.B, row.H, row.N, row.D, row.E
    elem = row.q.element_size()
    tok = B * H * N
    dec = {"LASD3": tok * 4, "LAVD_K": tok * D * 4, "LAVD_KV": tok * (D + E) * 4,
           "STATE_VK": tok * D * 4, "STATE_VKV": tok * (D + E) * 4}.get(variant, 0)  # decay tensors
    ws = ops.last_workspace_bytes()
    if variant in STATES:  # inputs k, v (+ decays); output and incoming gradient: one state each
        ins, out, wf, wb = tok * (D + E) * elem + dec, B * H * D * E * 4, ws[C.OP_STATE_FORWARD], ws[C.OP_STATE_BACKWARD]
    else:  # inputs q, k, v (+ decays); output o and incoming gradient dO
        ins, out, wf, wb = tok * (2 * D + E) * elem + dec, tok * E * elem, ws[C.OP_FORWARD], ws[C.OP_BACKWARD]
    return (ins + out + wf) / 2 ** 20, max(ins + 2 * out + wf, 2 * ins - dec + 2 * out + wb) / 2 ** 20


def time_fwd_bwd(row, variant, timer):
    dev = row.device
    x, dec = row.leaves(variant)
    res = {}
    with torch.no_grad():
        res["fwd_ms"] = timer(lambda: row.forward(variant, x, dec))
    nbytes = sum(t.numel() * t.element_size() for t in list(x) + list(dec.values()))
    if variant in STATES:
        nbytes -= x[0].numel() * x[0].element_size()  # no q
    res["mem_fwd_mib"] = peak_mib(dev, lambda: row.forward(variant, x, dec), nbytes)
    o = row.forward(variant, x, dec)
    bwd = row.grad_of(variant, o, x, dec)
    try:
        res["bwd_ms"] = timer(bwd)
    except la.LightningAttnNotSupported as e:  # a forward this backend runs without its backward
        res["bwd_error"] = str(e).splitlines()[0][:200]
        return res
    del o
    if dev.type == "cuda":
        torch.cuda.empty_cache()

    def fwd_bwd():
        y = row.forward(variant, x, dec)
        row.grad_of(variant, y, x, dec)()

    g = row.dstate if variant in STATES else row.do
    res["mem_bwd_mib"] = peak_mib(dev, fwd_bwd, nbytes + g.numel() * g.element_size())
    if variant in VARIANTS and dev.type == "cuda":
        res["mem_account_fwd_mib"], res["mem_account_bwd_mib"] = account_mib(row, variant)
    return res


# ---- configurations --------------------------------------------------------------------

def configurations(args, device):
    if args.N:
        ns = [int(n) for n in args.N.split(",")]
        return [(args.B or 4, args.H or 32, args.D or 128, args.E or args.D or 128, ns)]
    if device.type == "cuda":
        full = [(4, 32, 128, 128, [256, 512, 1024, 2048, 4096, 8192, 16384, 32768]),
                (1, 16, 128, 128, [256, 512, 1024, 2048, 4096, 8192, 16384, 32768]),
                (4, 32, 64, 64, [1024, 2048, 4096, 8192])]
        if args.quick:
            full = [(4, 32, 128, 128, [1024, 4096, 8192]), (1, 16, 128, 128, [1024, 8192, 32768]),
                    (4, 32, 64, 64, [2048, 8192])]
        return full
    if args.quick:
        return [(1, 8, 64, 64, [256, 1024])]
    return [(1, 8, 64, 64, [256, 512, 1024, 2048, 4096]), (1, 8, 128, 128, [1024, 4096])]


def meta(device, args, ceil):
    info = la.build_info()
    m = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "library": info,
         "torch": torch.__version__, "python": sys.version.split()[0], "device": str(device),
         "dtype": args.dtype, "reps": args.reps, "warmup": args.warmup,
         "copy_bandwidth_GBps": ceil[0] / 1e9, "matrix_TFLOPs": ceil[1] / 1e12}
    try:
        m["commit"] = os.environ.get("LA_COMMIT") or subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                     cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or info["commit"]
    except OSError:
        m["commit"] = info.get("commit")
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        m.update(gpu=p.name, sms=p.multi_processor_count, cuda=torch.version.cuda,
                 gpu_memory_mib=p.total_memory / 2 ** 20)
        try:
            m["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                         capture_output=True, text=True).stdout.split("\n")[0].strip()
        except OSError:
            m["driver"] = "unknown"
    else:
        m.update(cpu=os.cpu_count(), threads=torch.get_num_threads())
    return m


# ---- tables and plots ------------------------------------------------------------------

def table(title, ns, cols, cell):
    """The tables' format: a title line, then rows `index n value...`."""
    head = "%10s" % "n" + "".join("%14s" % c for c in cols)
    lines = [title + ":", "   " + head]
    for i, n in enumerate(ns):
        vals = []
        for c in cols:
            v = cell(n, c)
            vals.append("%14s" % ("-" if v is None else ("%.6f" % v if abs(v) < 1e4 else "%.1f" % v)))
        lines.append("%-3d%10.1f" % (i, n) + "".join(vals))
    return "\n".join(lines) + "\n"


def print_tables(results, file=sys.stdout):
    m = results["meta"]
    for cfg in results["configs"]:
        B, H, D, E = cfg["B"], cfg["H"], cfg["D"], cfg["E"]
        ns = [r["n"] for r in cfg["rows"]]
        cols = [c for c in cfg["columns"] if any(c in r["cols"] and "error" not in r["cols"][c] for r in cfg["rows"])]
        byn = {r["n"]: r["cols"] for r in cfg["rows"]}
        tag = "batch%d-head%d-dim%d%s-%s" % (B, H, D, "" if D == E else "-vdim%d" % E, m["dtype"])
        get = lambda key: (lambda n, c: byn[n].get(c, {}).get(key))
        for kind, key in (("speed", "fwd_ms"), ("speed", "bwd_ms"), ("memory", "mem_fwd_mib"),
                          ("memory", "mem_bwd_mib"), ("memory-account", "mem_account_fwd_mib"),
                          ("memory-account", "mem_account_bwd_mib"), ("xfloor", "x_floor_fwd"),
                          ("xfloor", "x_floor_bwd")):
            use = [c for c in cols if any(byn[n].get(c, {}).get(key) is not None for n in ns)]
            if not use:
                continue
            d = "fwd" if "fwd" in key else "bwd"
            print(table("lasd-%s-%s-%s" % (kind, d, tag), ns, use, get(key)), file=file)
        # The state-only pass on its own (per-head and per-key-channel decay).
        states = [c for c in cols if c in STATES]
        for kind, key in (("speed", "fwd_ms"), ("memory", "mem_fwd_mib")):
            use = [c for c in states if any(byn[n].get(c, {}).get(key) is not None for n in ns)]
            if use:
                print(table("state-%s-fwd-%s" % (kind, tag), ns, use, get(key)), file=file)
        steps = [(k, t) for k, t in (("step_us", "eager"), ("step_graph_us", "cuda-graph"))
                 if any(byn[n].get("LASD_R", {}).get(k) is not None for n in ns)]
        if steps:
            # The decode loop per step, in microseconds: eager calls, and the step replayed from a CUDA graph.
            dn = [n for n in ns if any(byn[n].get("LASD_R", {}).get(k) is not None for k, _ in steps)]
            print(table("lasd-decode-step-us-%s" % tag, dn, [t for _, t in steps],
                        lambda n, c: byn[n].get("LASD_R", {}).get(dict((t, k) for k, t in steps)[c])), file=file)
        skipped = {c: r["cols"][c]["error"] for r in cfg["rows"] for c in r["cols"] if "error" in r["cols"][c]}
        for c, e in sorted(skipped.items()):
            print("%s: not run (%s)" % (c, e), file=file)
        no_bwd = {c: r["cols"][c]["bwd_error"] for r in cfg["rows"] for c in r["cols"] if "bwd_error" in r["cols"][c]}
        for c, e in sorted(no_bwd.items()):
            print("%s: backward not run (%s)" % (c, e), file=file)


def plot(results, outdir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plots skipped: matplotlib is not installed (pip install matplotlib, then "
              "python bench/bench.py --plot-from %s)" % os.path.join(outdir, "results.json"))
        return []
    m = results["meta"]
    where = m.get("gpu") or "CPU (%s threads)" % m.get("threads")
    files = []
    for cfg in results["configs"]:
        ns = [r["n"] for r in cfg["rows"]]
        name = "b%dh%dd%de%d-%s" % (cfg["B"], cfg["H"], cfg["D"], cfg["E"], m["dtype"])
        title = "B%d H%d D%d E%d %s, %s" % (cfg["B"], cfg["H"], cfg["D"], cfg["E"], m["dtype"], where)
        fig, axes = plt.subplots(1, 4, figsize=(22, 5))
        panels = [("fwd_ms", "forward time (ms)"), ("bwd_ms", "backward time (ms)"),
                  ("mem_bwd_mib", "peak memory, forward + backward (MiB)"), ("speedup", "speed-up over SDPA, fwd + bwd")]
        sdpa = next((c for c in cfg["columns"] if c.startswith("SDPA")), None)
        for ax, (key, label) in zip(axes, panels):
            for c in cfg["columns"]:
                xs, ys = [], []
                for r in cfg["rows"]:
                    v = r["cols"].get(c, {})
                    if key == "speedup":
                        s = r["cols"].get(sdpa, {}) if sdpa else {}
                        if c.startswith("SDPA") or not all(v.get(k) and s.get(k) for k in ("fwd_ms", "bwd_ms")):
                            continue
                        y = (s["fwd_ms"] + s["bwd_ms"]) / (v["fwd_ms"] + v["bwd_ms"])
                    else:
                        y = v.get(key)
                    if y:
                        xs.append(r["n"])
                        ys.append(y)
                if xs:
                    ax.plot(xs, ys, marker="o", linestyle="--" if c.startswith("SDPA") else "-", label=c)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("sequence length N (tokens)")
            ax.set_ylabel(label)
            ax.set_xticks(ns)
            ax.set_xticklabels([str(n) for n in ns], rotation=45)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle("lightning-attn vs SDPA: %s" % title)
        fig.tight_layout()
        path = os.path.join(outdir, "bench-%s.png" % name)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path)
    return files


# ---- main ---------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when a GPU is present)")
    ap.add_argument("--dtype", default=None, choices=list(DT), help="default bf16 on GPU, f32 on CPU")
    ap.add_argument("--quick", action="store_true", help="fewer sizes and runs: about a minute")
    ap.add_argument("-B", type=int)
    ap.add_argument("-H", type=int)
    ap.add_argument("-N", help="comma-separated sequence lengths (one configuration from -B -H -D -E)")
    ap.add_argument("-D", type=int)
    ap.add_argument("-E", type=int)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--no-sdpa", action="store_true")
    ap.add_argument("--no-fla", action="store_true", help="leave out fla's baseline columns even where it is importable")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--decode-max-n", type=int, default=None, help="LASD_R (a decode loop) up to this N")
    ap.add_argument("--no-serving", action="store_true", help="leave out the serving tables (bench/serving.py)")
    ap.add_argument("--out", default="build/bench", help="folder for results.json and the plots")
    ap.add_argument("--plot-from", help="print the tables and plot a results.json, run nothing")
    args = ap.parse_args()

    if args.plot_from:
        with open(args.plot_from) as f:
            results = json.load(f)
        print_tables(results)
        if results.get("serving"):
            import serving
            serving.print_tables(results["serving"])
        for p in plot(results, os.path.dirname(os.path.abspath(args.plot_from))):
            print("plot:", p)
        return

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not la.backend_available(la.BACKEND_CUDA):
        sys.exit("the library was built without its CUDA backend (%s); run with --device cpu"
                 % (la.build_info().get("cuda_note") or "no nvcc at build time"))
    args.dtype = args.dtype or ("bf16" if device.type == "cuda" else "f32")
    args.reps = args.reps or (5 if args.quick else 10)
    args.decode_max_n = args.decode_max_n or (1024 if device.type == "cuda" else 512)
    # Value checks stay as users run them: deferred (a small kernel on the stream, nothing waits).
    dtype = DT[args.dtype]
    variants = [v for v in args.variants.split(",") if v]
    sdpa_cols = [] if args.no_sdpa else sdpa_backends(device)
    fla_version = None if args.no_fla else load_fla(device, variants)
    t_start = time.time()
    log("measuring the copy bandwidth and the matrix rate")
    ceil = measure_ceilings(device, dtype)
    results = {"meta": meta(device, args, ceil), "configs": []}
    results["meta"]["fla"] = fla_version
    timer = Timer(device, args.reps, args.warmup)
    for (B, H, D, E, ns) in configurations(args, device):
        cfg = {"B": B, "H": H, "D": D, "E": E, "columns": variants + list(FLA) + [c[0] for c in sdpa_cols],
               "rows": []}
        results["configs"].append(cfg)
        for n in ns:
            args.tag = "[%5.0f s] B%d H%d D%d E%d N%d" % (time.time() - t_start, B, H, D, E, n)
            row = Row(B, H, n, D, E, dtype, device)
            cfg["rows"].append({"n": n, "cols": run_row(row, variants, sdpa_cols, timer, args, ceil)})
            del row
            if device.type == "cuda":
                torch.cuda.empty_cache()
    log("")
    sys.stderr.write("\r\033[Kdone in %.0f s\n" % (time.time() - t_start))
    m = results["meta"]
    print("lightning-attn benchmark on %s, %s, commit %s, %s; copy bandwidth %.0f GB/s, matrix rate %.1f TFLOP/s "
          "(measured now); median of %d runs, ms; memory: MiB of the inputs plus the peak PyTorch's allocator holds "
          "above them during the call (memory-account: the library's own count, tensors + la_workspace_size); "
          "xfloor: time / max(bytes / bandwidth, FLOPs / rate)%s%s\n"
          % (m.get("gpu") or "CPU", m["dtype"], m["commit"], m["date"], m["copy_bandwidth_GBps"],
             m["matrix_TFLOPs"], args.reps, "" if device.type == "cuda" else
             " (on a CPU small sizes sit in cache, so xfloor can fall below 1)",
             "; fla %s (FLA_* columns: its chunk_gla / chunk_simple_gla, layout [B, N, H, D], scale 1)" % m["fla"]
             if m.get("fla") else ""))
    print_tables(results)
    if not args.no_serving:  # decode from dense states and pools, mixed batches (bench/serving.py)
        import serving
        log("serving tables")
        results["serving"] = serving.run(device, dtype, m["copy_bandwidth_GBps"], args.reps * 2)
        sys.stderr.write("\r\033[K")
        serving.print_tables(results["serving"])
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "results.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    print("results:", path)
    for p in plot(results, args.out):
        print("plot:", p)


if __name__ == "__main__":
    main()
