"""Host time per call of the PyTorch op next to SDPA, in one process.

    python bench/host_overhead.py                      # GPU if present: B1 H4 N64 D64 bf16
    python bench/host_overhead.py --device cpu         # f32 on the CPU
    python bench/host_overhead.py -B 1 -H 4 -N 64 -D 64 --dtype bf16 --calls 200

Small problems are the ones where host time decides: the GPU finishes each
kernel before the host has made the next call.  Each row makes --calls
calls back to back and reports, per call, the median over --reps runs of

  host   the time until the last call returned (what the Python thread
         spends: argument handling, allocation, the C call, its launches);
  wall   the time until the device finished as well (equal to host on the
         CPU, where calls are synchronous).

Rows: the public functions as users call them (forward without autograd,
the backward alone, forward + backward through the autograd engine, a
decode step, the state-only pass), the C call alone
(la_execute on structs already filled: the library's own host cost, kernel
launches included), and torch's scaled_dot_product_attention (causal) on the
same shapes.  On the CPU the C call alone also holds the kernels' run time,
so binding cost = forward - C call.
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import lightning_attn as la
from lightning_attn import _clib as C
from lightning_attn import _runner as R

DT = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}


def measure(fn, device, calls, reps, warmup=20):
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    host, wall = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        t1 = time.perf_counter()
        sync()
        t2 = time.perf_counter()
        host.append((t1 - t0) / calls * 1e6)
        wall.append((t2 - t0) / calls * 1e6)
    return statistics.median(host), statistics.median(wall)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when a GPU is present)")
    ap.add_argument("--dtype", choices=list(DT), default=None, help="default bf16 on GPU, f32 on CPU")
    ap.add_argument("-B", type=int, default=1)
    ap.add_argument("-H", type=int, default=4)
    ap.add_argument("-N", type=int, default=64)
    ap.add_argument("-D", type=int, default=64)
    ap.add_argument("--calls", type=int, default=200, help="calls made back to back per run")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    a = ap.parse_args()
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = DT[a.dtype or ("bf16" if device.type == "cuda" else "f32")]
    if a.threads:
        torch.set_num_threads(a.threads)
    B, H, N, D = a.B, a.H, a.N, a.D
    g = torch.Generator(device=device).manual_seed(0)
    q, k, v = (torch.randn(B, H, N, D, generator=g, device=device, dtype=dtype) / D ** 0.5 for _ in range(3))
    s = la.build_slope_tensor(H, device=device)
    qg, kg, vg = (x.clone().requires_grad_() for x in (q, k, v))
    d_o = torch.randn(B, H, N, D, generator=g, device=device, dtype=dtype)
    state = torch.zeros(B, H, D, D, device=device)
    q1, k1, v1 = (x[:, :, 0] for x in (q, k, v))

    def fwd():
        with torch.no_grad():
            la.lightning_attn_func(q, k, v, s)

    def fwd_bwd():
        la.lightning_attn_func(qg, kg, vg, s).backward(d_o)

    def decode():
        la.lightning_attn_decode(q1, k1, v1, state, s)

    def state_only():
        with torch.no_grad():
            la.lightning_attn_state(k, v, s)

    def sdpa():
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def sdpa_bwd():
        F.scaled_dot_product_attention(qg, kg, vg, is_causal=True).backward(d_o)

    # A backward alone: the op's autograd node called directly, as the
    # autograd engine calls it (grad mode off), on an output made once.  The
    # engine's own cost per backward pass (thread hand-off, graph walk,
    # gradient accumulation) is the same for every op and shows in the
    # forward+backward rows.
    def node_call(out):
        node = out.grad_fn
        call = node if callable(node) else node.apply  # C++ nodes are callable, Python ones have apply

        def run():
            with torch.no_grad():
                call(d_o)
        run.out = out  # the output keeps its graph's saved tensors
        return run

    bwd_node = node_call(la.lightning_attn_func(qg, kg, vg, s))
    sdpa_node = node_call(F.scaled_dot_product_attention(qg, kg, vg, is_causal=True))

    # The C call alone: the structs of this thread's handle filled by one
    # forward (its outputs kept alive while the row runs), run again.  Made
    # when its row runs, since every other row refills the same structs.
    def c_only_row():
        with torch.no_grad():
            keep = R.forward(q, k, v, R.log_decay_of_rate(s), None, None, None, None, 1.0, True, False)
        h = R.handle_for(q)

        def c_only():
            R._call(h, C.OP_FORWARD, h.wsp, h.wsn)
        c_only.keep = keep
        return c_only

    rows = [("lightning_attn_func forward", fwd), ("C la_execute forward alone", c_only_row),
            ("SDPA forward", sdpa), ("lightning_attn_func backward (node alone)", bwd_node),
            ("SDPA backward (node alone)", sdpa_node), ("lightning_attn_func forward+backward", fwd_bwd),
            ("SDPA forward+backward", sdpa_bwd), ("lightning_attn_decode step", decode),
            ("lightning_attn_state", state_only)]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        "CPU, %d threads" % torch.get_num_threads()
    print("host time per call, B%d H%d N%d D%d %s on %s (torch %s); %d calls back to back, median of %d runs"
          % (B, H, N, D, str(dtype).replace("torch.", ""), where, torch.__version__, a.calls, a.reps))
    print("%-40s %12s %12s" % ("", "host us", "wall us"))
    for name, fn in rows:
        if fn is c_only_row:
            fn = c_only_row()
        try:
            hst, wall = measure(fn, device, a.calls, a.reps)
        except (la.LightningAttnNotSupported, RuntimeError) as e:
            print("%-40s %s" % (name, str(e).splitlines()[0][:60]))
            continue
        print("%-40s %12.1f %12.1f" % (name, hst, wall))
        if device.type == "cuda":
            torch.cuda.synchronize()


if __name__ == "__main__":
    main()
