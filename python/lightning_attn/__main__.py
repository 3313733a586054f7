"""python -m lightning_attn: what the installed build holds and what runs here.

    python -m lightning_attn                      # build, backends, torch
    python -m lightning_attn --plan --op forward -B 4 -H 32 -N 8192 -D 128 -E 128 --dtype bf16 \\
        --decay scalar_head --device cuda         # what the library runs for that call (la_describe)

--plan allocates the call's tensors on the device (the library checks real
pointers) and prints the backend's plan for them: kernels, tiles, segments,
workspace.  Nothing is computed.
"""

import argparse
import sys

from . import _clib as C

OPS = ("forward", "backward", "decode", "state_forward", "state_backward")
DECAYS = ("none", "scalar_head", "scalar_token", "vector_k", "vector_kv")


def summary():
    info = C.build_info()
    print("lightning_attn %s (commit %s), library %s" % (info.get("version"), info.get("commit"), C.lib_path))
    print("  CPU backend:  built, usable: %s" % ("yes" if C.backend_available(C.BACKEND_CPU) else "no"))
    if info.get("cuda"):
        print("  CUDA backend: built (nvcc %s, architectures %s), usable here: %s"
              % (info.get("nvcc"), info.get("cuda_architectures"),
                 "yes" if C.backend_available(C.BACKEND_CUDA) else "no (no GPU)"))
    else:
        print("  CUDA backend: not built (%s)" % (info.get("cuda_note") or "no nvcc at build time"))
    try:
        import torch
        print("  torch %s: lightning_attn_func available" % torch.__version__)
    except ImportError:
        print("  torch not installed: lightning_attn.cpu (numpy) only")


def plan(a):
    import torch
    from . import _runner as R

    dev = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dt = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[a.dtype]
    B, H, N, D = a.B, a.H, a.N, a.D
    E = a.E or D
    if a.op == "decode":
        N = 1
    bhnd = a.layout == "bhnd"
    tok = (lambda X: (B, H, N, X)) if bhnd else (lambda X: (B, N, H, X))
    z = lambda shape, dtype=dt: torch.zeros(shape, dtype=dtype, device=dev)
    q, k, v = z(tok(D)), z(tok(D)), z(tok(E))
    ld = ldk = ldv = None
    if a.decay == "scalar_head":
        ld = z((H,), torch.float32) - 0.1
    elif a.decay == "scalar_token":
        ld = z(tok(1)[:3], torch.float32) - 0.1
    elif a.decay in ("vector_k", "vector_kv"):
        ldk = z(tok(D), torch.float32) - 0.1
        ldv = z(tok(E), torch.float32) - 0.1 if a.decay == "vector_kv" else None
    cu = None
    S = B
    if a.cu_seqlens:
        cu = torch.tensor([int(x) for x in a.cu_seqlens.split(",")], dtype=torch.int64)
        cu = cu.to(dev) if a.device_offsets else cu
        S = cu.shape[0] - 1
    s0 = z((S, H, D, E), torch.float32) if (a.initial_state or a.op == "decode") else None
    want = not a.no_decay_grad
    if a.op == "forward":
        line = R.describe(R.forward, q, k, v, ld, ldk, ldv, s0, cu, 1.0, bhnd, a.final_state, a.max_seqlen)
    elif a.op == "backward":
        d_final = z((S, H, D, E), torch.float32) if a.final_state else None
        line = R.describe(R.backward, q, k, v, ld, ldk, ldv, s0, cu, z(tok(E)), d_final, 1.0, bhnd, want,
                          s0 is not None, a.max_seqlen)
    elif a.op == "decode":
        line = R.describe(R.decode, q, k, v, s0, ld, ldk, ldv, 1.0, bhnd)
    elif a.op == "state_forward":
        line = R.describe(R.state_forward, k, v, ld, ldk, ldv, s0, cu, bhnd, a.max_seqlen)
    else:
        line = R.describe(R.state_backward, k, v, ld, ldk, ldv, s0, cu, z((S, H, D, E), torch.float32), bhnd,
                          want, s0 is not None, a.max_seqlen)
    print(line)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m lightning_attn", description=__doc__.split("\n\n")[0])
    ap.add_argument("--plan", action="store_true", help="print what the library runs for one call (la_describe)")
    ap.add_argument("--op", choices=OPS, default="forward")
    ap.add_argument("-B", type=int, default=1)
    ap.add_argument("-H", type=int, default=8)
    ap.add_argument("-N", type=int, default=1024, help="tokens per sequence (total tokens with --cu-seqlens)")
    ap.add_argument("-D", type=int, default=64)
    ap.add_argument("-E", type=int, default=None, help="value head dim (default D)")
    ap.add_argument("--dtype", choices=("f32", "f16", "bf16"), default="bf16")
    ap.add_argument("--decay", choices=DECAYS, default="scalar_head")
    ap.add_argument("--layout", choices=("bhnd", "bnhd"), default="bhnd")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when a GPU is present)")
    ap.add_argument("--cu-seqlens", default=None, help="packed offsets, e.g. 0,100,1024 (with -B 1)")
    ap.add_argument("--device-offsets", action="store_true", help="pass --cu-seqlens in device memory")
    ap.add_argument("--max-seqlen", type=int, default=0, help="the hint for device offsets")
    ap.add_argument("--initial-state", action="store_true")
    ap.add_argument("--final-state", action="store_true")
    ap.add_argument("--no-decay-grad", action="store_true", help="backward without the decay gradient")
    a = ap.parse_args(argv)
    if not a.plan:
        summary()
        return 0
    try:
        plan(a)
    except (C.LightningAttnError, ValueError, TypeError) as e:
        print("lightning_attn --plan: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
