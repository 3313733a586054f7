"""The torch side of every C call: torch tensors described into the library's
structs and run with one call of la_execute.

Both ways into the library run through here: the eager functions (through
autograd.Function, or directly when nothing needs a gradient) and the
torch.library custom ops that torch.compile traces.  The cost that matters is
host time per call, so:

  * one handle per (thread, device, stream), made on first use, in a
    threading.local: a handle belongs to one thread (lightning_attn.h,
    Threads), and keying by the raw stream means the stream, the value-check
    mode and the CPU thread count are set when the handle is made or the
    setting changes, not on every call;
  * each handle owns one la_problem_t and one la_tensors_t, filled in place
    with struct.pack_into (one pack per tensor), and only the tensors the
    previous call had but this one lacks are cleared;
  * each handle caches its workspace as a torch tensor, grown when
    la_execute answers WORKSPACE_TOO_SMALL (then the call is retried once);
    it lives on the handle's stream, so the caching allocator's stream
    ordering makes the reuse safe.  While a CUDA graph is being captured the
    workspace comes fresh from torch for that call instead, so the graph's
    memory pool owns it and no later eager call can write into memory a
    replay reads;
  * nothing waits for the GPU: device cu_seqlens are passed as device
    pointers, and value checks are deferred (see set_value_checks).

The library validates every pointer, stride and value; what Python checks
are the extents (the library sees pointers and strides only), devices and
dtypes, which only Python can see.
"""

import ctypes
import struct
import threading
import weakref

import torch

from . import _clib as C

lib = C.lib
_TDT = {torch.float32: C.DTYPE_F32, torch.float16: C.DTYPE_F16, torch.bfloat16: C.DTYPE_BF16}
_F32 = torch.float32
_U8 = torch.uint8

# la_problem_t from batch (offset 8) to checkpoint_interval, packed whole by
# every call (so no call inherits the previous one's interval); la_tensor_t
# (48 bytes); la_state_pool_t (104 bytes: states, num_slots, index_dtype and
# the five index pointers), packed whole, or zeroed whole when a call has no
# pool: a stale slot pointer would make the library refuse the call ("given
# without pool.states") or, worse, read freed memory.
_pack_problem = struct.Struct("<5qifQqi4xqq").pack_into
_pack_tensor = struct.Struct("<Qi4x4q").pack_into
_pack_null = struct.Struct("<Q").pack_into
_POOL_STRUCT = struct.Struct("<Qi4x4qqi4x5Q")
_pack_pool = _POOL_STRUCT.pack_into
_ZERO_POOL = bytes(_POOL_STRUCT.size)
assert C._Problem.checkpoint_interval.offset == 8 + struct.calcsize("<5qifQqi4xq")
assert _POOL_STRUCT.size == ctypes.sizeof(C._Pool)
_SLOT = {name: C._Tensors.__dict__[name].offset for name in C.TENSOR_FIELDS + ("checkpoints",)}
_Q, _K, _V, _LD, _LDV, _S0, _O, _SN, _DO, _DSN, _DQ, _DK, _DV, _DLD, _DLDV, _DS0, _CKPT = (
    _SLOT[n] for n in C.TENSOR_FIELDS + ("checkpoints",))
_POOL = C._Tensors.pool.offset
_BIT = {off: 1 << i for i, off in enumerate(_SLOT.values())}
_SLOTS = list(_SLOT.values())
(_B_Q, _B_K, _B_V, _B_LD, _B_LDV, _B_S0, _B_O, _B_SN, _B_DO, _B_DSN, _B_DQ, _B_DK, _B_DV, _B_DLD, _B_DLDV, _B_DS0,
 _B_CKPT, _B_POOL) = (1 << i for i in range(18))

_HAS_EXECUTE = C.has("la_execute")
_execute = lib.la_execute if _HAS_EXECUTE else None
_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)
_capturing = getattr(torch._C, "_cuda_isCurrentStreamCapturing", None)
_get_device = getattr(torch._C, "_cuda_getDevice", None)

# ---- settings shared by every handle ---------------------------------------------------

_settings = {"check": C.CHECK_DEFERRED}
_MODES = {True: C.CHECK_DEFERRED, False: C.CHECK_OFF, "deferred": C.CHECK_DEFERRED, "sync": C.CHECK_SYNC,
          "off": C.CHECK_OFF}


def set_value_checks(mode):
    """How the library checks values in device memory (log decays in range
    and not NaN, device cu_seqlens), for every handle of every thread:

      True or "deferred" (the default): a small kernel checks the values on
        the call's stream and nothing waits for it, so calls stay
        asynchronous and CUDA-graph capturable.  A bad value is reported by
        the next call on the same thread, device and stream, or by
        lightning_attn.check_errors(); the outputs of the call that had it
        are unspecified (but nothing is read or written out of bounds).
      "sync": every call waits for its check and raises itself, having
        written nothing (one stream synchronisation per call; not
        capturable).
      False or "off": no checks; bad values give unspecified results.

    Shapes, strides, pointers and tensors in host memory are always checked
    before anything runs."""
    key = mode if isinstance(mode, (bool, str)) else None
    if key not in _MODES:
        raise ValueError("set_value_checks takes True, False, 'deferred', 'sync' or 'off', got %r" % (mode,))
    _settings["check"] = _MODES[key]


# ---- handles -----------------------------------------------------------------------------

_local = threading.local()


class _Handle:
    """A library handle with its structs, workspace and applied settings."""

    __slots__ = ("h", "index", "device", "prob", "tens", "pa", "ta", "needed", "na", "ws", "wsp", "wsn", "mask",
                 "check", "threads", "__weakref__")

    def __init__(self, backend, index, stream):
        hp = ctypes.c_void_p()
        st = lib.la_create(ctypes.byref(hp), backend)
        if st != 0:
            info = C.build_info()
            # Say why, where the build has no CUDA backend (e.g. built on a machine without a GPU).
            why = ("this build has no CUDA backend (%s)" % (info.get("cuda_note") or "no nvcc at build time")
                   if backend == C.BACKEND_CUDA and info.get("cuda") is False else "")
            C._fail(st, detail=why)
        self.h = hp.value
        self.index = index
        self.device = torch.device("cuda", index) if index >= 0 else torch.device("cpu")
        self.prob = C._Problem()
        self.prob.struct_size = ctypes.sizeof(C._Problem)
        self.tens = C._Tensors()
        self.tens.struct_size = ctypes.sizeof(C._Tensors)
        self.needed = ctypes.c_size_t(0)
        self.pa, self.ta, self.na = (ctypes.addressof(x) for x in (self.prob, self.tens, self.needed))
        self.ws, self.wsp, self.wsn = None, 0, 0
        self.mask = 0
        self.check = C.CHECK_DEFERRED  # la_create's default
        self.threads = 0               # likewise
        if backend == C.BACKEND_CUDA:
            self._ok(lib.la_set_stream(self.h, stream))

    def _ok(self, st):
        if st != 0:
            C._fail(st, self.h)

    def apply_settings(self):
        mode = _settings["check"]
        if mode != self.check:
            self._ok(lib.la_set_check_values(self.h, mode))
            self.check = mode

    def set_threads(self, n):
        self._ok(lib.la_set_num_threads(self.h, n))
        self.threads = n

    def __del__(self):
        # Only at thread exit or interpreter shutdown; the library may be gone by then.
        try:
            lib.la_destroy(self.h)
        except Exception:
            pass


def _cuda_handle(index):
    stream = _raw_stream(index)
    try:
        d = _local.cuda
    except AttributeError:
        d = _local.cuda = {}
    h = d.get((index, stream))
    if h is None:
        try:
            with torch.cuda.device(index):
                h = _Handle(C.BACKEND_CUDA, index, stream)
        except C.LightningAttnError as e:
            if not _capturing():
                raise
            # Making a handle allocates pinned and device memory, which a
            # capture in torch's default ("global") mode refuses.
            raise RuntimeError("lightning_attn: the first call on this stream came inside a CUDA graph capture, "
                               "where its handle could not be made (%s); make one call on the capture stream "
                               "before capturing (warm up under torch.cuda.stream(s), then "
                               "torch.cuda.graph(g, stream=s))" % e) from e
        d[(index, stream)] = h
    return h


def _cpu_handle():
    try:
        return _local.cpu
    except AttributeError:
        h = _local.cpu = _Handle(C.BACKEND_CPU, -1, None)
        return h


def thread_handles(device):
    """This thread's handles on a device (every stream), for check_errors."""
    if device.type == "cpu":
        h = getattr(_local, "cpu", None)
        return [h] if h is not None else []
    index = device.index if device.index is not None else torch.cuda.current_device()
    return [h for (i, _), h in getattr(_local, "cuda", {}).items() if i == index]


def check_errors(device=None):
    """Raise the error a deferred value check recorded on this thread's
    handles of the device (every stream), waiting for their streams; return
    None when there is none.  device: a torch.device, "cuda", "cuda:1", an
    index, or None for the current CUDA device (the CPU when there is no
    GPU; the CPU backend never defers an error)."""
    if device is None:
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    elif isinstance(device, int):
        device = torch.device("cuda", device)
    else:
        device = torch.device(device)
    for h in thread_handles(device):
        C.check_errors(h.h)


def handle_for(t):
    """The handle the library runs t's device on (the CUDA one on the current stream)."""
    return _cuda_handle(t.get_device()) if t.is_cuda else _cpu_handle()


# ---- running -------------------------------------------------------------------------------

def _call(h, op, ws, wsn):
    if _execute is None:
        C._missing("la_execute")
    return _execute(h.h, op, h.pa, h.ta, ws, wsn, h.na)


# Workspace bytes of the latest call of each operation (memory accounting in bench/bench.py).
last_workspace_bytes = {}


# While set (describe()), calls append la_describe's line here instead of running.
_plan_sink = None


def _run(h, op, mask):
    """Run op on the structs of h; mask: the tensor slots this call filled."""
    if mask != h.mask:
        stale = h.mask & ~mask
        if stale:
            tb = h.tens
            for off in _SLOTS:
                if stale & _BIT[off]:
                    _pack_null(tb, off, 0)
            if stale & _B_POOL:
                ctypes.memmove(h.ta + _POOL, _ZERO_POOL, len(_ZERO_POOL))
        h.mask = mask
    if h.check != _settings["check"]:
        h.apply_settings()
    if _plan_sink is not None:
        _plan_sink.append(C.describe(h.h, op, h.prob, h.tens))
        return
    if h.index >= 0:
        if _capturing():
            return _run_captured(h, op)
        if _get_device() != h.index:
            with torch.cuda.device(h.index):
                return _run_checked(h, op)
    else:
        n = torch.get_num_threads()
        if n != h.threads:
            h.set_threads(n)
    st = _call(h, op, h.wsp, h.wsn)
    if st:
        _retry(h, op, st)
    last_workspace_bytes[op] = h.needed.value


def _run_checked(h, op):
    st = _call(h, op, h.wsp, h.wsn)
    if st:
        _retry(h, op, st)
    last_workspace_bytes[op] = h.needed.value


def _retry(h, op, st):
    if st == C.STATUS_WORKSPACE_TOO_SMALL:
        n = h.needed.value
        # Grown by at least half, so a slowly rising size does not reallocate each call.
        n = max(n, h.wsn + h.wsn // 2)
        h.ws = None  # back to the allocator before the larger one is taken
        h.ws = torch.empty(n, dtype=_U8, device=h.device)
        h.wsp, h.wsn = h.ws.data_ptr(), n
        st = _call(h, op, h.wsp, h.wsn)
    if st:
        C._fail(st, h.h)


def _run_captured(h, op):
    # The graph must own its workspace: a fresh tensor from torch, sized by
    # the last need seen (one crossing when that fits).
    n = h.needed.value
    ws = torch.empty(n, dtype=_U8, device=h.device) if n else None
    st = _call(h, op, ws.data_ptr() if n else None, n)
    if st == C.STATUS_WORKSPACE_TOO_SMALL:
        n = h.needed.value
        ws = torch.empty(n, dtype=_U8, device=h.device)
        st = _call(h, op, ws.data_ptr(), n)
    if st:
        C._fail(st, h.h)
    last_workspace_bytes[op] = h.needed.value
    # ws is freed into the graph's private pool here, after being recorded in it.


# ---- describing tensors -------------------------------------------------------------------

def _dtype(t, name):
    dt = _TDT.get(t.dtype)
    if dt is None:
        raise TypeError("%s has dtype %s: the library takes float32, float16 and bfloat16" % (name, t.dtype))
    return dt


def _bad_shape(name, got, want):
    return C.LightningAttnValueError(C.STATUS_BAD_SHAPE, "LA_STATUS_BAD_SHAPE: %s has shape %s, expected %s"
                                     % (name, list(got), list(want)))


def _device_error(name, t, ref):
    if t.is_meta:
        why = "meta tensors have no data to compute on"
    else:
        why = "every tensor must be on one device"
    return ValueError("%s is on %s, %s is on %s: %s" % (name, t.device, "q/k", ref.device, why))


def _on(t, index):
    return t.is_cpu if index < 0 else (t.is_cuda and t.get_device() == index)


def _handle_of(ref):
    """The handle for ref's device, refusing devices the library has no backend for."""
    if ref.is_cuda:
        return _cuda_handle(ref.get_device())
    if ref.is_cpu:
        return _cpu_handle()
    if ref.is_meta:
        raise ValueError("the tensors are on the meta device, which holds no data: lightning_attn computes on "
                         "CPU and CUDA tensors (under torch.compile the op has a fake implementation instead)")
    raise NotImplementedError("lightning_attn runs on CPU and CUDA tensors, not %s" % ref.device.type)


def _token(tb, off, t, bhnd, name):
    s = t.stride()
    dt = _TDT.get(t.dtype)
    if dt is None:
        _dtype(t, name)
    if bhnd:
        _pack_tensor(tb, off, t.data_ptr(), dt, s[0], s[1], s[2], s[3])
    else:
        _pack_tensor(tb, off, t.data_ptr(), dt, s[0], s[2], s[1], s[3])


def _state(tb, off, t, name):
    s = t.stride()
    dt = _TDT.get(t.dtype)
    if dt is None:
        _dtype(t, name)
    _pack_tensor(tb, off, t.data_ptr(), dt, s[0], s[1], s[2], s[3])


def _scalar(tb, off, t, kind, bhnd, name):
    """A scalar log decay: per head (seen flat as [1, H, 1, 1]) or per token [B, H, N, 1]."""
    dt = _TDT.get(t.dtype)
    if dt is None:
        _dtype(t, name)
    if kind == C.DECAY_SCALAR_HEAD:
        if t.is_contiguous():
            sh = 1
        else:
            # The one dim of extent H (or none, for H = 1) carries the stride.
            sh = 0
            for x, y in zip(t.shape, t.stride()):
                if x != 1:
                    sh = y
        _pack_tensor(tb, off, t.data_ptr(), dt, 0, sh, 0, 0)
        return
    s = t.stride()
    if bhnd:
        _pack_tensor(tb, off, t.data_ptr(), dt, s[0], s[1], s[2], 0)
    else:
        _pack_tensor(tb, off, t.data_ptr(), dt, s[0], s[2], s[1], 0)


def cu_seqlens_for(cu, index):
    """Packed offsets as the library reads them: int64, contiguous, in device
    memory next to CUDA tensors (passed as a device pointer, nothing waits)
    or in host memory (a CPU tensor, also accepted next to CUDA tensors).
    int32 offsets are converted; anything else is refused."""
    if not isinstance(cu, torch.Tensor):
        cu = torch.tensor(cu, dtype=torch.int64)
    if cu.dtype != torch.int64:
        if cu.dtype != torch.int32:
            raise TypeError("cu_seqlens must be an int64 tensor of offsets (int32 is converted), got %s" % cu.dtype)
        cu = cu.long()
    if cu.dim() != 1 or cu.shape[0] < 2:
        raise ValueError("cu_seqlens must be 1-d with num_seqs + 1 >= 2 offsets, got shape %s" % list(cu.shape))
    if cu.is_cuda:
        if index < 0:
            cu = cu.cpu()  # the CPU backend reads host memory
        elif cu.get_device() != index:
            raise ValueError("cu_seqlens is on %s, q/k is on cuda:%d: pass it on the same GPU or on the CPU"
                             % (cu.device, index))
    elif not cu.is_cpu:
        raise ValueError("cu_seqlens is on %s: pass it on the CPU or on the GPU of q/k" % cu.device)
    if cu.stride(0) != 1:
        cu = cu.contiguous()
    return cu


def _inputs(h, ref, q, k, v, ld, ldk, ldv, s0, cu, max_seqlen, scale, bhnd, interval=0):
    """Check and describe what every operation reads (q when given, k, v,
    decays, initial state, packing) into h's structs.  Returns
    (mask, S, H, D, E, kind, cu) with cu the offsets tensor passed (kept
    alive by the caller until the call returns)."""
    if v is None or k is None:
        raise ValueError("%s is required (got None)" % ("v" if v is None else "k"))
    rs, vs = ref.shape, v.shape
    if len(rs) != 4 or len(vs) != 4:
        raise ValueError("q, k, v must be 4-d (%s), got %s %s, v %s" % (
            "[B, H, N, D]" if bhnd else "[B, N, H, D]", "q" if ref is q else "k", list(rs), list(vs)))
    r0, r1, r2, D = rs
    v0, v1, v2, E = vs
    if bhnd:
        B, H, N = r0, r1, r2
    else:
        B, N, H = r0, r1, r2
    if v0 != r0 or v1 != r1 or v2 != r2:
        raise _bad_shape("v", vs, (r0, r1, r2, E))
    if N == 0:
        raise C.LightningAttnValueError(C.STATUS_BAD_SHAPE, "LA_STATUS_BAD_SHAPE: the sequence length is 0 (%s has "
                                        "shape %s): there is nothing to attend over" % ("q" if ref is q else "k",
                                                                                        list(rs)))
    if B == 0 or H == 0 or D == 0 or E == 0:
        raise C.LightningAttnValueError(C.STATUS_BAD_SHAPE, "LA_STATUS_BAD_SHAPE: empty tensors (%s %s, v %s): "
                                        "batch, heads and head dims must be at least 1"
                                        % ("q" if ref is q else "k", list(rs), list(vs)))
    index = h.index
    tb = h.tens
    mask = _B_K | _B_V
    if q is not None:
        _token(tb, _Q, q, bhnd, "q")
        mask |= _B_Q
        if k.shape != rs:
            raise _bad_shape("k", k.shape, rs)
    if not _on(k, index):
        raise _device_error("k", k, ref)
    if not _on(v, index):
        raise _device_error("v", v, ref)
    _token(tb, _K, k, bhnd, "k")
    _token(tb, _V, v, bhnd, "v")
    kind = C.DECAY_NONE
    if ldk is not None or ldv is not None:
        if ld is not None:
            raise ValueError("give a scalar decay (s / ld) or vector decays (ldk / ldv), not both")
        if ldk is None:
            raise ValueError("a value-side decay (ldv) needs the key-side one too (ldk; zeros for none)")
        if ldk.shape != rs:
            raise _bad_shape("ldk", ldk.shape, rs)
        if not _on(ldk, index):
            raise _device_error("ldk", ldk, ref)
        _token(tb, _LD, ldk, bhnd, "ldk")
        mask |= _B_LD
        kind = C.DECAY_VECTOR_K
        if ldv is not None:
            if ldv.shape != vs:
                raise _bad_shape("ldv", ldv.shape, vs)
            if not _on(ldv, index):
                raise _device_error("ldv", ldv, ref)
            _token(tb, _LDV, ldv, bhnd, "ldv")
            mask |= _B_LDV
            kind = C.DECAY_VECTOR_KV
    elif ld is not None:
        if not _on(ld, index):
            raise _device_error("ld", ld, ref)
        ls = ld.shape
        if len(ls) == 3 and ls[0] == r0 and ls[1] == r1 and ls[2] == r2:
            kind = C.DECAY_SCALAR_TOKEN
        elif ld.numel() == H:
            kind = C.DECAY_SCALAR_HEAD
        else:
            raise ValueError("a scalar log decay must have H = %d elements (per head, e.g. [H] or [H, 1, 1]) or "
                             "shape %s (per token), got %s" % (H, [r0, r1, r2], list(ls)))
        _scalar(tb, _LD, ld, kind, bhnd, "ld")
        mask |= _B_LD
    if cu is None:
        S, cu_ptr, ns, on_dev = B, 0, 0, 0
    else:
        if B != 1:
            raise ValueError("packed sequences (cu_seqlens) need batch = 1, got %d" % B)
        cu = cu_seqlens_for(cu, index)
        ns = S = cu.shape[0] - 1
        cu_ptr, on_dev = cu.data_ptr(), 1 if cu.is_cuda else 0
    if s0 is not None:
        if s0.shape != (S, H, D, E):
            raise _bad_shape("initial_state", s0.shape, (S, H, D, E))
        if not _on(s0, index):
            raise _device_error("initial_state", s0, ref)
        _state(tb, _S0, s0, "initial_state")
        mask |= _B_S0
    _pack_problem(h.prob, 8, B, H, N, D, E, kind, scale, cu_ptr, ns, on_dev, max_seqlen or 0, interval)
    return mask, S, H, D, E, kind, cu


def _grad_of(x, want):
    return torch.empty_like(x, dtype=_F32) if (want and x is not None) else None


# ---- operations ------------------------------------------------------------------------------
# Outputs are None where absent.  bhnd: layout == "bhnd".

def forward(q, k, v, ld, ldk, ldv, s0, cu, scale, bhnd, want_final, max_seqlen=0):
    """o (and the final state when want_final, else None)."""
    h = _handle_of(q)
    mask, S, H, D, E, _, cu = _inputs(h, q, q, k, v, ld, ldk, ldv, s0, cu, max_seqlen, scale, bhnd)
    tb = h.tens
    o = torch.empty_like(v)  # q's dtype (the caller cast both), v's shape; cheaper than new_empty
    _token(tb, _O, o, bhnd, "o")
    sN = None
    if want_final:
        sN = q.new_empty((S, H, D, E), dtype=_F32)
        _state(tb, _SN, sN, "final_state")
        mask |= _B_SN
    _run(h, C.OP_FORWARD, mask | _B_O)
    return o, sN


def backward(q, k, v, ld, ldk, ldv, s0, cu, d_o, d_final, scale, bhnd, want_dld, want_ds0, max_seqlen=0):
    """(dq, dk, dv, d_ld, d_ldk, d_ldv, d_initial_state)."""
    h = _handle_of(q)
    mask, S, H, D, E, kind, cu = _inputs(h, q, q, k, v, ld, ldk, ldv, s0, cu, max_seqlen, scale, bhnd)
    tb = h.tens
    if d_o.shape != v.shape:
        raise _bad_shape("d_o", d_o.shape, v.shape)
    if not _on(d_o, h.index):
        raise _device_error("d_o", d_o, q)
    _token(tb, _DO, d_o, bhnd, "d_o")
    mask |= _B_DO | _B_DQ | _B_DK | _B_DV
    if d_final is not None:
        if d_final.shape != (S, H, D, E):
            raise _bad_shape("d_final_state", d_final.shape, (S, H, D, E))
        if not _on(d_final, h.index):
            raise _device_error("d_final_state", d_final, q)
        _state(tb, _DSN, d_final, "d_final_state")
        mask |= _B_DSN
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    _token(tb, _DQ, dq, bhnd, "dq")
    _token(tb, _DK, dk, bhnd, "dk")
    _token(tb, _DV, dv, bhnd, "dv")
    dld, dldk, dldv, ds0, mask = _decay_grads(tb, ld, ldk, ldv, want_dld, want_ds0, kind, bhnd, S, H, D, E, q, mask)
    _run(h, C.OP_BACKWARD, mask)
    return dq, dk, dv, dld, dldk, dldv, ds0


def _decay_grads(tb, ld, ldk, ldv, want_dld, want_ds0, kind, bhnd, S, H, D, E, ref, mask):
    dld, dldk, dldv, ds0 = _grad_of(ld, want_dld), _grad_of(ldk, want_dld), _grad_of(ldv, want_dld), None
    if dld is not None:
        _scalar(tb, _DLD, dld, kind, bhnd, "d_ld")
        mask |= _B_DLD
    if dldk is not None:
        _token(tb, _DLD, dldk, bhnd, "d_ldk")
        mask |= _B_DLD
    if dldv is not None:
        _token(tb, _DLDV, dldv, bhnd, "d_ldv")
        mask |= _B_DLDV
    if want_ds0:
        ds0 = ref.new_empty((S, H, D, E), dtype=_F32)
        _state(tb, _DS0, ds0, "d_initial_state")
        mask |= _B_DS0
    return dld, dldk, dldv, ds0, mask


def state_forward(k, v, ld, ldk, ldv, s0, cu, bhnd, max_seqlen=0):
    """The final state alone."""
    h = _handle_of(k)
    mask, S, H, D, E, _, cu = _inputs(h, k, None, k, v, ld, ldk, ldv, s0, cu, max_seqlen, 1.0, bhnd)
    sN = k.new_empty((S, H, D, E), dtype=_F32)
    _state(h.tens, _SN, sN, "final_state")
    _run(h, C.OP_STATE_FORWARD, mask | _B_SN)
    return sN


def state_backward(k, v, ld, ldk, ldv, s0, cu, d_final, bhnd, want_dld, want_ds0, max_seqlen=0):
    """(dk, dv, d_ld, d_ldk, d_ldv, d_initial_state)."""
    h = _handle_of(k)
    mask, S, H, D, E, kind, cu = _inputs(h, k, None, k, v, ld, ldk, ldv, s0, cu, max_seqlen, 1.0, bhnd)
    tb = h.tens
    if d_final.shape != (S, H, D, E):
        raise _bad_shape("d_final_state", d_final.shape, (S, H, D, E))
    if not _on(d_final, h.index):
        raise _device_error("d_final_state", d_final, k)
    _state(tb, _DSN, d_final, "d_final_state")
    dk, dv = torch.empty_like(k), torch.empty_like(v)
    _token(tb, _DK, dk, bhnd, "dk")
    _token(tb, _DV, dv, bhnd, "dv")
    mask |= _B_DSN | _B_DK | _B_DV
    dld, dldk, dldv, ds0, mask = _decay_grads(tb, ld, ldk, ldv, want_dld, want_ds0, kind, bhnd, S, H, D, E, k, mask)
    _run(h, C.OP_STATE_BACKWARD, mask)
    return dk, dv, dld, dldk, dldv, ds0


def decode(q, k, v, state, ld, ldk, ldv, scale, bhnd):
    """One token per sequence; state updated in place; returns o."""
    h = _handle_of(q)
    mask, S, H, D, E, _, _ = _inputs(h, q, q, k, v, ld, ldk, ldv, None, None, 0, scale, bhnd)
    tb = h.tens
    if state.shape != (S, H, D, E):
        raise _bad_shape("state", state.shape, (S, H, D, E))
    if not _on(state, h.index):
        raise _device_error("state", state, q)
    _state(tb, _S0, state, "state")
    _state(tb, _SN, state, "state")
    o = torch.empty_like(v)  # q's dtype (the caller cast both), v's shape; cheaper than new_empty
    _token(tb, _O, o, bhnd, "o")
    _run(h, C.OP_DECODE, mask | _B_S0 | _B_SN | _B_O)
    return o


# ---- serving: state pools -------------------------------------------------------------------

_IDX = {torch.int32: C.INDEX_I32, torch.int64: C.INDEX_I64}
_I64 = torch.int64
_FLAGS = (torch.bool, torch.uint8)


def _index(x, name, shape, ref, index, flags=False):
    """Check an index tensor the library reads through a bare pointer: it
    cannot see its extent, device or layout, so they are checked here.
    Contiguity is required rather than made: a copy would be a new tensor
    each call, where a CUDA graph or a serving loop expects its own static
    index tensors to be the ones read."""
    if not isinstance(x, torch.Tensor):
        raise TypeError("%s must be a tensor, got %s" % (name, type(x).__name__))
    if flags:
        if x.dtype not in _FLAGS:
            raise TypeError("%s must be a bool or uint8 tensor (0 = start from zeros), got %s" % (name, x.dtype))
    elif x.dtype not in _IDX:
        raise TypeError("%s must be an int32 or int64 tensor of slot indices, got %s" % (name, x.dtype))
    if tuple(x.shape) != shape:
        raise _bad_shape(name, x.shape, shape)
    if not _on(x, index):
        where = "the CPU" if index < 0 else "cuda:%d (the library reads it on the device)" % index
        raise ValueError("%s is on %s, q/k is on %s: slot indices must be on %s" % (name, x.device, ref.device,
                                                                                     where))
    if not x.is_contiguous():
        raise ValueError("%s must be contiguous (row-major %s), got strides %s" % (name, list(shape),
                                                                                   list(x.stride())))


def _pool(h, ref, pool, slots, write_slots, has_init, token_slots, num_accepted, S, H, D, E, T):
    """Check and describe the state pool and its index arrays into h's
    la_state_pool_t (one pack of the whole struct, so no field of an earlier
    call survives).  The index tensors of a call share one dtype; when they
    differ they are all widened to int64 (lossless: narrowing could wrap an
    out-of-range slot onto a valid one, which the library could then not
    refuse).  Returns the index tensors passed, to be kept alive until the
    call returns."""
    index = h.index
    ps = pool.shape
    if len(ps) != 4 or ps[1] != H or ps[2] != D or ps[3] != E:
        raise _bad_shape("pool", ps, ("num_slots", H, D, E))
    if not _on(pool, index):
        raise _device_error("pool", pool, ref)
    pdt = _TDT.get(pool.dtype)
    if pdt is None:
        raise TypeError("the state pool must be float32 or bfloat16, got %s" % pool.dtype)
    _index(slots, "slots", (S,), ref, index)
    dt = slots.dtype
    mixed = False
    if write_slots is not None:
        _index(write_slots, "write_slots", (S,), ref, index)
        mixed = write_slots.dtype != dt
    if has_init is not None:
        _index(has_init, "has_initial_state", (S,), ref, index, flags=True)
    if token_slots is not None:
        _index(token_slots, "token_slots", (S, T), ref, index)
        mixed = mixed or token_slots.dtype != dt
    if num_accepted is not None:
        if token_slots is None:
            raise ValueError("num_accepted needs token_slots (it counts the draft tokens kept there)")
        _index(num_accepted, "num_accepted", (S,), ref, index)
        mixed = mixed or num_accepted.dtype != dt
    if mixed:
        dt = _I64
        slots, write_slots, token_slots, num_accepted = (
            None if x is None else x.to(_I64) for x in (slots, write_slots, token_slots, num_accepted))
    st = pool.stride()
    _pack_pool(h.tens, _POOL, pool.data_ptr(), pdt, st[0], st[1], st[2], st[3], ps[0], _IDX[dt], slots.data_ptr(),
               0 if write_slots is None else write_slots.data_ptr(), 0 if has_init is None else has_init.data_ptr(),
               0 if token_slots is None else token_slots.data_ptr(),
               0 if num_accepted is None else num_accepted.data_ptr())
    return slots, write_slots, token_slots, num_accepted


def decode_pool(q, k, v, pool, slots, write_slots, has_init, token_slots, num_accepted, ld, ldk, ldv, scale, bhnd):
    """T >= 1 tokens a sequence from and into a state pool, by slot; returns o."""
    h = _handle_of(q)
    mask, S, H, D, E, _, _ = _inputs(h, q, q, k, v, ld, ldk, ldv, None, None, 0, scale, bhnd)
    keep = _pool(h, q, pool, slots, write_slots, has_init, token_slots, num_accepted, S, H, D, E,
                 q.shape[2] if bhnd else q.shape[1])
    o = torch.empty_like(v)  # q's dtype (the caller cast both), v's shape
    _token(h.tens, _O, o, bhnd, "o")
    _run(h, C.OP_DECODE, mask | _B_O | _B_POOL)
    del keep
    return o


def checkpoint_rows(ref, cu, interval, bhnd):
    """Rows of the checkpoints tensor: B * (N // interval), or N // interval
    when packed (enough for any offsets)."""
    N = ref.shape[2] if bhnd else ref.shape[1]
    return (N // interval) * (1 if cu is not None else ref.shape[0])


def prefill_pool(q, k, v, pool, slots, write_slots, has_init, ld, ldk, ldv, cu, max_seqlen, scale, bhnd, interval,
                 checkpoints):
    """The forward (q given) or the state-only pass (q None) from and into a
    state pool, packed or not, with checkpoints every interval tokens when
    interval > 0; returns o (None without q)."""
    ref = q if q is not None else k
    h = _handle_of(ref)
    mask, S, H, D, E, _, cu = _inputs(h, ref, q, k, v, ld, ldk, ldv, None, cu, max_seqlen, scale, bhnd, interval)
    keep = _pool(h, ref, pool, slots, write_slots, has_init, None, None, S, H, D, E, 0)
    mask |= _B_POOL
    tb = h.tens
    if checkpoints is not None:
        if interval > 0:
            want = (checkpoint_rows(ref, cu, interval, bhnd), H, D, E)
            if checkpoints.shape != want:
                raise _bad_shape("checkpoints", checkpoints.shape, want)
        if not _on(checkpoints, h.index):
            raise _device_error("checkpoints", checkpoints, ref)
        _state(tb, _CKPT, checkpoints, "checkpoints")
        # No row to write (every sequence shorter than the interval): torch gives
        # the empty tensor no address, which the library takes as absent, as it
        # allows when no row is due.
        mask |= _B_CKPT
    o = None
    if q is not None:
        o = torch.empty_like(v)
        _token(tb, _O, o, bhnd, "o")
        mask |= _B_O
    _run(h, C.OP_FORWARD if q is not None else C.OP_STATE_FORWARD, mask)
    del keep
    return o


def describe(fn, *args):
    """la_describe's line for the call fn(*args) would make (fn: one of the
    operations above), instead of running it."""
    global _plan_sink
    _plan_sink = []
    try:
        fn(*args)
        return _plan_sink[0]
    finally:
        _plan_sink = None


def grads_dense(t):
    """Expanded gradients (stride 0, as from .sum()) made real."""
    if t is not None and 0 in t.stride():
        return t.contiguous()
    return t


# ---- log decays from rates -------------------------------------------------------------------

_neg_cache = {}


def log_decay_of_rate(s):
    """ld = -s as float32.  A rate that needs no gradient (a model's slope
    buffer, passed on every call) has its log decay cached, keyed by the
    tensor and its version counter (an in-place change makes a new one), so
    an eager call costs no extra kernel.  Not while a CUDA graph is being
    captured: the graph then reads s itself through its own negation."""
    if s.requires_grad and torch.is_grad_enabled():
        return (-s).float()
    if s.is_cuda and _capturing():
        return (-s).float()
    key = id(s)
    e = _neg_cache.get(key)
    if e is not None and e[0]() is s and e[1] == s._version:
        return e[2]
    ld = (-s.detach()).float()
    _neg_cache[key] = (weakref.ref(s, lambda _, key=key: _neg_cache.pop(key, None)), s._version, ld)
    return ld
