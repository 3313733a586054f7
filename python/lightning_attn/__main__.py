"""python -m lightning_attn: what the installed build holds and what runs here."""

from . import _clib as C


def main():
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


if __name__ == "__main__":
    main()
