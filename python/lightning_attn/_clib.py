"""The C library through ctypes: loading, the structs of lightning_attn.h,
status codes turned into exceptions, and one call that runs an operation.

Everything here is array-agnostic: tensors arrive as (data pointer, dtype
code, four element strides) descriptors, so the numpy helpers and the torch
op share it.  Nothing about tiles, chunks or dispatch lives in Python; the
library decides and reports.
"""

import ctypes
import importlib.util
import json
import os
import threading

# ---- enums, pinned by lightning_attn.h ----------------------------------------

DTYPE_F32, DTYPE_F16, DTYPE_BF16 = 0, 1, 2
DECAY_NONE, DECAY_SCALAR_HEAD, DECAY_SCALAR_TOKEN, DECAY_VECTOR_K, DECAY_VECTOR_KV = 0, 1, 2, 3, 4
BACKEND_CPU, BACKEND_CUDA = 0, 1
STATUS_BAD_PARAM, STATUS_BAD_SHAPE = 100, 102
STATUS_WORKSPACE_TOO_SMALL = 301
STATUS_BAD_SLOT = 110
INDEX_I32, INDEX_I64 = 0, 1
CHECK_OFF, CHECK_DEFERRED, CHECK_SYNC = 0, 1, 2
OP_FORWARD, OP_BACKWARD, OP_DECODE, OP_STATE_FORWARD, OP_STATE_BACKWARD = 0, 1, 2, 3, 4

# Field order of la_tensors_t after struct_size.
TENSOR_FIELDS = ("q", "k", "v", "ld", "ldv", "initial_state", "o", "final_state", "d_o", "d_final_state",
                 "dq", "dk", "dv", "d_ld", "d_ldv", "d_initial_state")


class _Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("dtype", ctypes.c_int), ("stride", ctypes.c_int64 * 4)]


class _Problem(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("batch", ctypes.c_int64), ("heads", ctypes.c_int64),
                ("seqlen", ctypes.c_int64), ("dim_qk", ctypes.c_int64), ("dim_v", ctypes.c_int64),
                ("decay", ctypes.c_int), ("scale", ctypes.c_float),
                ("cu_seqlens", ctypes.POINTER(ctypes.c_int64)), ("num_seqs", ctypes.c_int64),
                ("cu_seqlens_on_device", ctypes.c_int), ("max_seqlen", ctypes.c_int64),
                ("checkpoint_interval", ctypes.c_int64)]


class _Pool(ctypes.Structure):
    """la_state_pool_t: states by slot (index arrays are data pointers)."""
    _fields_ = [("states", _Tensor), ("num_slots", ctypes.c_int64), ("index_dtype", ctypes.c_int),
                ("read_slot", ctypes.c_void_p), ("write_slot", ctypes.c_void_p),
                ("has_initial_state", ctypes.c_void_p), ("token_slot", ctypes.c_void_p),
                ("num_accepted", ctypes.c_void_p)]


class _Tensors(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t)] + [(n, _Tensor) for n in TENSOR_FIELDS] + \
        [("pool", _Pool), ("checkpoints", _Tensor)]


# ---- errors -------------------------------------------------------------------

class LightningAttnError(Exception):
    """A call into the C library failed.  .status is the la_status_t code,
    .status_name its name (e.g. "LA_STATUS_BAD_SHAPE"); the message is the
    library's own ("LA_STATUS_BAD_SHAPE: ...: q: head dim 300 > 256")."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.status_name = message.split(":", 1)[0]


class LightningAttnValueError(LightningAttnError, ValueError):
    """1xx: an argument is wrong (shape, stride, pointer, decay, cu_seqlens, scale)."""


class LightningAttnNotSupported(LightningAttnError, NotImplementedError):
    """2xx: valid, but this backend or build does not do it."""


class LightningAttnMemoryError(LightningAttnError, MemoryError):
    """3xx: an allocation or the workspace failed."""


class LightningAttnRuntimeError(LightningAttnError, RuntimeError):
    """4xx: the backend failed while running (e.g. a CUDA error)."""


_CATEGORY = {100: LightningAttnValueError, 200: LightningAttnNotSupported, 300: LightningAttnMemoryError,
             400: LightningAttnRuntimeError}

# ---- loading --------------------------------------------------------------------

_LIB_NAME = "liblightning_attn.so"


def _candidates():
    env = os.environ.get("LIGHTNING_ATTN_LIB")
    if env:
        yield env
        return
    here = os.path.dirname(os.path.abspath(__file__))
    yield os.path.join(here, _LIB_NAME)
    # Editable installs (pip install -e .) keep the Python files in the source
    # tree and the built library in site-packages: every place the package
    # is found.
    spec = importlib.util.find_spec(__package__)
    for d in (spec.submodule_search_locations or []) if spec else []:
        yield os.path.join(d, _LIB_NAME)


def _load():
    tried = []
    for path in _candidates():
        if os.path.exists(path):
            lib = ctypes.CDLL(path)
            return lib, path
        tried.append(path)
    raise ImportError("lightning_attn: the C library was not found (looked at %s); install the package with "
                      "`pip install .` from the repository, or point LIGHTNING_ATTN_LIB at liblightning_attn.so"
                      % ", ".join(tried))


lib, lib_path = _load()

_P = ctypes.c_void_p
for _name, _res, _args in [
    ("la_status_string", ctypes.c_char_p, [ctypes.c_int]),
    ("la_status_category", ctypes.c_int, [ctypes.c_int]),
    ("la_backend_available", ctypes.c_int, [ctypes.c_int]),
    ("la_create", ctypes.c_int, [ctypes.POINTER(_P), ctypes.c_int]),
    ("la_destroy", ctypes.c_int, [_P]),
    ("la_last_error", ctypes.c_char_p, [_P]),
    ("la_set_num_threads", ctypes.c_int, [_P, ctypes.c_int]),
    ("la_set_stream", ctypes.c_int, [_P, _P]),
    ("la_set_workspace", ctypes.c_int, [_P, _P, ctypes.c_size_t]),
    ("la_set_check_values", ctypes.c_int, [_P, ctypes.c_int]),
    ("la_workspace_size", ctypes.c_int, [_P, ctypes.c_int, ctypes.POINTER(_Problem), ctypes.POINTER(ctypes.c_size_t)]),
    ("la_workspace_size_for", ctypes.c_int,
     [_P, ctypes.c_int, ctypes.POINTER(_Problem), ctypes.POINTER(_Tensors), ctypes.POINTER(ctypes.c_size_t)]),
    ("la_supports", ctypes.c_int, [_P, ctypes.c_int, ctypes.POINTER(_Problem), ctypes.POINTER(_Tensors)]),
    ("la_forward", ctypes.c_int, [_P, ctypes.POINTER(_Problem), ctypes.POINTER(_Tensors)]),
    ("la_backward", ctypes.c_int, [_P, ctypes.POINTER(_Problem), ctypes.POINTER(_Tensors)]),
    ("la_decode", ctypes.c_int, [_P, ctypes.POINTER(_Problem), ctypes.POINTER(_Tensors)]),
    ("la_state_forward", ctypes.c_int, [_P, ctypes.POINTER(_Problem), ctypes.POINTER(_Tensors)]),
    ("la_state_backward", ctypes.c_int, [_P, ctypes.POINTER(_Problem), ctypes.POINTER(_Tensors)]),
    # The hot path passes struct addresses as plain ints (precomputed once per
    # handle), so these take void pointers rather than typed ones.
    ("la_execute", ctypes.c_int, [_P, ctypes.c_int, _P, _P, _P, ctypes.c_size_t, _P]),
    ("la_check_errors", ctypes.c_int, [_P]),
    ("la_describe", ctypes.c_int, [_P, ctypes.c_int, _P, _P, ctypes.c_char_p, ctypes.c_size_t]),
    ("la_policy_init", None, [_P]),
    ("la_set_policy", ctypes.c_int, [_P, _P]),
    ("la_get_policy", ctypes.c_int, [_P, _P]),
]:
    _f = getattr(lib, _name, None)
    if _f is None:
        # A library older than this package's header: the calls that need
        # the symbol say so (see _missing) instead of the import failing.
        continue
    _f.restype = _res
    _f.argtypes = _args


def has(name):
    """Does the loaded library export this function?"""
    return getattr(lib, name, None) is not None


def _missing(name):
    raise LightningAttnNotSupported(200, "LA_STATUS_NOT_SUPPORTED: the library at %s has no %s (it is older than "
                                         "this package: rebuild or reinstall it)" % (lib_path, name))

_OP_FN = {OP_FORWARD: lib.la_forward, OP_BACKWARD: lib.la_backward, OP_DECODE: lib.la_decode,
          OP_STATE_FORWARD: lib.la_state_forward, OP_STATE_BACKWARD: lib.la_state_backward}


def build_info():
    """What the installed build holds: version, commit, whether the CUDA
    backend was compiled and for which architectures (a dict)."""
    path = os.path.join(os.path.dirname(lib_path), "build_info.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"version": "unknown", "commit": "unknown", "cpu": True, "cuda": None}


def backend_available(backend):
    """Is the backend compiled in and usable here (for CUDA: a GPU present)?"""
    return bool(lib.la_backend_available(backend))


# ---- handles --------------------------------------------------------------------

# One handle per thread, backend and device: a handle keeps the last error
# message and its settings, so threads never share one.
_local = threading.local()


def _fail(status, handle=None, detail=""):
    text = lib.la_status_string(status).decode()
    detail = lib.la_last_error(handle).decode() if handle else detail
    message = text + (": " + detail if detail else "")
    cls = _CATEGORY.get(lib.la_status_category(status), LightningAttnError)
    raise cls(status, message)


def handle(backend, device=0):
    """This thread's handle for (backend, device), created on first use."""
    cache = getattr(_local, "handles", None)
    if cache is None:
        cache = _local.handles = {}
    key = (backend, device)
    h = cache.get(key)
    if h is None:
        hp = _P()
        st = lib.la_create(ctypes.byref(hp), backend)
        if st != 0:
            info = build_info()
            # Say why, where the build has no CUDA backend (e.g. built on a machine without a GPU).
            why = ("this build has no CUDA backend (%s)" % (info.get("cuda_note") or "no nvcc at build time")
                   if backend == BACKEND_CUDA and info.get("cuda") is False else "")
            _fail(st, detail=why)
        h = cache[key] = hp.value
    return h


# ---- calls ----------------------------------------------------------------------

def problem(batch, heads, seqlen, dim_qk, dim_v, decay, scale, cu_seqlens=None):
    """A la_problem_t.  cu_seqlens: a sequence of ints (host), or None.  The
    returned struct keeps its offsets array alive."""
    p = _Problem()
    p.struct_size = ctypes.sizeof(_Problem)
    p.batch, p.heads, p.seqlen, p.dim_qk, p.dim_v = batch, heads, seqlen, dim_qk, dim_v
    p.decay = decay
    p.scale = scale
    if cu_seqlens is not None:
        arr = (ctypes.c_int64 * len(cu_seqlens))(*[int(x) for x in cu_seqlens])
        p._cu_keep = arr
        p.cu_seqlens = arr
        p.num_seqs = len(cu_seqlens) - 1
    return p


def tensors(**descs):
    """A la_tensors_t from descriptors name=(data_ptr, dtype_code, (s0, s1, s2, s3))."""
    t = _Tensors()
    t.struct_size = ctypes.sizeof(_Tensors)
    for name, d in descs.items():
        if d is None:
            continue
        ptr, dtype, strides = d
        field = getattr(t, name)
        field.data = ptr
        field.dtype = dtype
        for i in range(4):
            field.stride[i] = int(strides[i])
    return t


def _ok(st, h):
    if st != 0:
        _fail(st, h)


def workspace_size(h, op, prob):
    """la_workspace_size: the bound over every dtype and choice of outputs."""
    n = ctypes.c_size_t(0)
    _ok(lib.la_workspace_size(h, op, ctypes.byref(prob), ctypes.byref(n)), h)
    return n.value


def workspace_size_for(h, op, prob, tens):
    """The workspace this very call needs (dtypes and optional outputs known)."""
    n = ctypes.c_size_t(0)
    _ok(lib.la_workspace_size_for(h, op, ctypes.byref(prob), ctypes.byref(tens), ctypes.byref(n)), h)
    return n.value


def run(h, op, prob, tens):
    """Run op on handle h; raise the library's error on failure."""
    _ok(_OP_FN[op](h, ctypes.byref(prob), ctypes.byref(tens)), h)


def set_stream(h, stream_ptr):
    _ok(lib.la_set_stream(h, stream_ptr), h)


def set_workspace(h, ptr, nbytes):
    _ok(lib.la_set_workspace(h, ptr, nbytes), h)


def set_num_threads(h, n):
    _ok(lib.la_set_num_threads(h, n), h)


def set_check_values(h, mode):
    """mode: CHECK_OFF, CHECK_DEFERRED or CHECK_SYNC (a bool: deferred or off)."""
    _ok(lib.la_set_check_values(h, int(mode)), h)


def check_errors(h):
    """la_check_errors: raise the error a deferred value check recorded."""
    if not has("la_check_errors"):
        _missing("la_check_errors")
    _ok(lib.la_check_errors(h), h)


def describe(h, op, prob, tens):
    """la_describe: one line saying what the backend runs for this call."""
    if not has("la_describe"):
        _missing("la_describe")
    buf = ctypes.create_string_buffer(4096)
    _ok(lib.la_describe(h, op, ctypes.byref(prob), ctypes.byref(tens), buf, len(buf)), h)
    return buf.value.decode()


class Policy(ctypes.Structure):
    """la_policy_t: which kernel variants the CUDA backend may pick (tests, A/B runs)."""
    _fields_ = [("struct_size", ctypes.c_size_t), ("tile_cap", ctypes.c_int), ("smem_kb", ctypes.c_int),
                ("fwd_wgmma", ctypes.c_int), ("fwd_rows", ctypes.c_int), ("fwd_warp_roles", ctypes.c_int),
                ("state_wgmma", ctypes.c_int), ("bwd_wgmma", ctypes.c_int), ("dld_planes", ctypes.c_int),
                ("vec_kernels", ctypes.c_int), ("vec_split", ctypes.c_int),
                ("vec_warp_roles", ctypes.c_int)]


def policy_defaults():
    if not has("la_policy_init"):
        _missing("la_policy_init")
    p = Policy()
    lib.la_policy_init(ctypes.byref(p))
    return p


def get_policy(h):
    p = policy_defaults()
    _ok(lib.la_get_policy(h, ctypes.byref(p)), h)
    return p


def set_policy(h, policy):
    _ok(lib.la_set_policy(h, ctypes.byref(policy)), h)
