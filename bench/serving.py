"""The serving tables, through the PyTorch ops (what an engine calls):

  serving-decode-us   one decode call (T new tokens a sequence) from dense
                      fp32 states, an fp32 pool and a bf16 pool by slot; on
                      the GPU the call is captured once in a CUDA graph and
                      replayed (as an engine runs it), on the CPU it runs
                      eagerly; us per call, the floor (each state read and
                      written once, q/k/v/o once, at the measured copy
                      bandwidth) and the time over it
  serving-mixed-ms    decodes and prefills of new requests in one packed
                      lightning_attn_prefill call, against the same work as
                      a decode call and a prefill call

Run by bench/bench.py after its own tables (--no-serving leaves them out),
or alone: python bench/serving.py [--device cpu|cuda].
"""

import argparse
import time

import torch

import lightning_attn as la


def _per_call_us(fn, device, reps):
    """Median of reps timings of fn() (warm), in microseconds."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b) * 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e6)
    times.sort()
    return times[len(times) // 2]


def _graphed(fn, device):
    """fn captured once in a CUDA graph (after a warm-up on the capture
    stream, which makes the thread's handle for it), replayed per call."""
    if device.type != "cuda":
        return fn
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=side):
        fn()
    return g.replay


def decode_rows(device, dtype, bandwidth_gbps, reps):
    """[(label, us, floor_us)] for each decode configuration."""
    gpu = device.type == "cuda"
    shapes = [(64, 32, 128), (1, 32, 128)] if gpu else [(8, 4, 64), (1, 4, 64)]
    rows = []
    gen = torch.Generator(device=device).manual_seed(0)
    for B, H, D in shapes:
        s = la.build_slope_tensor(H, device=device)
        for T in (1, 4):
            q, k, v = (torch.randn(B, H, T, D, generator=gen, device=device, dtype=dtype) * 0.1 for _ in range(3))
            for kind in ("dense", "f32 pool", "bf16 pool"):
                if kind == "dense":
                    state = torch.randn(B, H, D, D, generator=gen, device=device) * 0.1
                    fn = lambda: la.lightning_attn_decode(q, k, v, state, s)  # noqa: E731
                    sbytes = 4
                else:
                    pdt = torch.float32 if kind == "f32 pool" else torch.bfloat16
                    pool = (torch.randn(2 * B, H, D, D, generator=gen, device=device) * 0.1).to(pdt)
                    slots = torch.randperm(2 * B, generator=gen, device=device)[:B].to(torch.int32)
                    fn = lambda: la.lightning_attn_decode(q, k, v, pool, s, slots=slots)  # noqa: E731
                    sbytes = pool.element_size()
                try:
                    us = _per_call_us(_graphed(fn, device), device, reps)
                except la.LightningAttnNotSupported as e:
                    print("serving: %s B%d T%d not run (%s)" % (kind, B, T, e))
                    continue
                moved = 2 * B * H * D * D * sbytes + 4 * B * H * T * D * q.element_size()
                rows.append(("B%d H%d D%d T%d %s" % (B, H, D, T, kind), us, moved / (bandwidth_gbps * 1e3)))
    return rows


def mixed_rows(device, dtype, reps):
    """[(label, ms)]: decodes and prefills in one call, and apart."""
    gpu = device.type == "cuda"
    H, D = (32, 128) if gpu else (4, 64)
    n_dec, n_pre, L = (64, 4, 2048) if gpu else (8, 2, 256)
    gen = torch.Generator(device=device).manual_seed(1)
    s = la.build_slope_tensor(H, device=device)
    total = n_dec + n_pre * L
    q, k, v = (torch.randn(1, H, total, D, generator=gen, device=device, dtype=dtype) * 0.1 for _ in range(3))
    pool = torch.randn(n_dec + n_pre, H, D, D, generator=gen, device=device) * 0.1
    lens = [1] * n_dec + [L] * n_pre
    cu = torch.tensor([0] + lens, device=device, dtype=torch.int64).cumsum(0)
    slots = torch.arange(n_dec + n_pre, device=device, dtype=torch.int32)
    fresh = torch.tensor([1] * n_dec + [0] * n_pre, device=device, dtype=torch.uint8)

    def together():
        la.lightning_attn_prefill(q, k, v, s, pool=pool, slots=slots, has_initial_state=fresh, cu_seqlens=cu,
                                  max_seqlen=L)

    qd, kd, vd = (x[0, :, :n_dec].transpose(0, 1).unsqueeze(2).contiguous() for x in (q, k, v))  # [n_dec, H, 1, D]
    cu_p = torch.tensor([0] + [L] * n_pre, device=device, dtype=torch.int64).cumsum(0)
    qp, kp, vp = (x[:, :, n_dec:].contiguous() for x in (q, k, v))
    slots_d, slots_p = slots[:n_dec].contiguous(), slots[n_dec:].contiguous()
    fresh_p = fresh[n_dec:].contiguous()

    def apart():
        la.lightning_attn_decode(qd, kd, vd, pool, s, slots=slots_d)
        la.lightning_attn_prefill(qp, kp, vp, s, pool=pool, slots=slots_p, has_initial_state=fresh_p, cu_seqlens=cu_p,
                                  max_seqlen=L)

    out = []
    for label, fn in (("%d decodes + %d prefills of %d, one call" % (n_dec, n_pre, L), together),
                      ("the same as a decode call and a prefill call", apart)):
        try:
            out.append((label, _per_call_us(fn, device, reps) / 1e3))
        except la.LightningAttnNotSupported as e:
            print("serving: %s not run (%s)" % (label, e))
    return out


def print_tables(res, file=None):
    print("serving-decode-us (one decode call through lightning_attn_decode%s; floor: states read and written once, "
          "q/k/v/o once, at %.0f GB/s)" % (", CUDA-graph replay" if res["gpu"] else ", eager", res["bandwidth_GBps"]),
          file=file)
    print("%-40s %10s %10s %8s" % ("case", "us", "floor_us", "xfloor"), file=file)
    for label, us, floor in res["decode"]:
        print("%-40s %10.1f %10.1f %8.2f" % (label, us, floor, us / floor), file=file)
    print("serving-mixed-ms (lightning_attn_prefill with a pool; fp32 states)", file=file)
    for label, ms in res["mixed"]:
        print("%-50s %10.3f" % (label, ms), file=file)


def run(device, dtype, bandwidth_gbps, reps=20):
    with torch.no_grad():
        return {"gpu": device.type == "cuda", "bandwidth_GBps": bandwidth_gbps,
                "decode": decode_rows(device, dtype, bandwidth_gbps, reps), "mixed": mixed_rows(device, dtype, reps)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"))
    ap.add_argument("--bandwidth", type=float, default=None,
                    help="GB/s for the floors (default: measured with a device copy)")
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    bw = args.bandwidth
    if bw is None:
        x = torch.empty(1 << 28 if device.type == "cuda" else 1 << 24, dtype=torch.uint8, device=device)
        y = torch.empty_like(x)
        us = _per_call_us(lambda: y.copy_(x), device, 10)
        bw = 2 * x.numel() / (us * 1e3)
    print_tables(run(device, dtype, bw, args.reps))


if __name__ == "__main__":
    main()
