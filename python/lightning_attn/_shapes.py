"""Shapes and layouts to the C library's logical dimensions, for any array
type (numpy or torch): sizes, the decay kind implied by which decay tensors
are given, and the four element strides of each tensor.

The C library checks every shape, stride and pointer again and reports what
is wrong; the checks here only exist where Python has to interpret a shape
(which dims are which, which decay kind) before it can describe it at all.
"""

from . import _clib as C

LAYOUTS = ("bhnd", "bnhd")


def check_layout(layout):
    if layout not in LAYOUTS:
        raise ValueError("layout must be 'bhnd' ([B, H, N, D]) or 'bnhd' ([B, N, H, D]), got %r" % (layout,))


def dims(q_shape, v_shape, layout):
    """(B, H, N, D, E) of q [B,H,N,D] / v [B,H,N,E] (or [B,N,H,*] for bnhd)."""
    check_layout(layout)
    if len(q_shape) != 4 or len(v_shape) != 4:
        raise ValueError("q, k, v must be 4-d (%s), got q %s, v %s" % ("[B, H, N, D]" if layout == "bhnd" else
                                                                     "[B, N, H, D]", tuple(q_shape), tuple(v_shape)))
    if layout == "bhnd":
        B, H, N, D = q_shape
    else:
        B, N, H, D = q_shape
    return int(B), int(H), int(N), int(D), int(v_shape[3])


def token_strides(strides, layout):
    """Logical [B, H, N, X] strides of a 4-d token tensor."""
    s = tuple(int(x) for x in strides)
    return s if layout == "bhnd" else (s[0], s[2], s[1], s[3])


def decay_kind(ld_shape, have_ldk, have_ldv, B, H, N, layout):
    """The la_decay_t implied by the decay tensors given: ld (a scalar log
    decay, per head [H] or per token [B, H, N] / [B, N, H]), ldk (per token and
    key channel), ldv (per token and value channel)."""
    if have_ldk or have_ldv:
        if ld_shape is not None:
            raise ValueError("give a scalar decay (s / ld) or vector decays (ldk / ldv), not both")
        return C.DECAY_VECTOR_KV if have_ldv else C.DECAY_VECTOR_K
    if ld_shape is None:
        return C.DECAY_NONE
    if len(ld_shape) == 3 and tuple(int(x) for x in ld_shape) == token_shape(B, H, N, layout):
        return C.DECAY_SCALAR_TOKEN
    numel = 1
    for x in ld_shape:
        numel *= int(x)
    if numel == H:
        return C.DECAY_SCALAR_HEAD
    raise ValueError("a scalar log decay must have H = %d elements (per head, e.g. [H] or [H, 1, 1]) or shape %s "
                     "(per token), got %s" % (H, list(token_shape(B, H, N, layout)), list(ld_shape)))


def token_shape(B, H, N, layout):
    return (B, H, N) if layout == "bhnd" else (B, N, H)


def ld_strides(kind, shape, strides, layout):
    """Logical strides of a scalar log decay: per head [1, H, 1, 1] (the
    tensor seen flat), per token [B, H, N, 1]."""
    if kind == C.DECAY_SCALAR_HEAD:
        # The one dim of extent H (or the last, for H = 1) carries the stride.
        sh = int(strides[-1]) if len(strides) else 1
        for x, s in zip(shape, strides):
            if int(x) != 1:
                sh = int(s)
        return (0, sh, 0, 0)
    s = tuple(int(x) for x in strides)
    return (s[0], s[1], s[2], 0) if layout == "bhnd" else (s[0], s[2], s[1], 0)


def check_cu_seqlens(cu, B, N):
    """Host offsets as a list of ints; the library validates their values."""
    cu = [int(x) for x in cu]
    if B != 1:
        raise ValueError("packed sequences (cu_seqlens) need batch = 1, got %d" % B)
    if len(cu) < 2:
        raise ValueError("cu_seqlens needs at least 2 offsets, got %d" % len(cu))
    return cu


_TOKEN = ("q", "k", "v", "o", "d_o", "dq", "dk", "dv")
_STATE = ("initial_state", "final_state", "d_final_state", "d_initial_state")


def describe(info, layout, scale, cu_seqlens=None, **arrays):
    """The (la_problem_t, la_tensors_t, decay kind) of a call.

    info(x) -> (data_ptr, dtype_code, shape, element_strides) for one array;
    arrays: the call's tensors by la_tensors_t field name (None = absent),
    plus ldk (the per-channel key decay, passed in the C field ld).  Sizes
    come from q (k where there is no q) and v."""
    got = {name: (info(x) if x is not None else None) for name, x in arrays.items()}
    ref = got.get("q") or got["k"]
    B, H, N, D, E = dims(ref[2], got["v"][2], layout)
    ld, ldk, ldv = got.get("ld"), got.get("ldk"), got.get("ldv")
    kind = decay_kind(ld[2] if ld else None, ldk is not None, ldv is not None, B, H, N, layout)
    if kind == C.DECAY_VECTOR_KV and ldk is None:
        raise ValueError("a value-side decay (ldv) needs the key-side one too (ldk; zeros for none)")
    S = len(cu_seqlens) - 1 if cu_seqlens is not None else B
    tok = lambda X: (B, H, N, X) if layout == "bhnd" else (B, N, H, X)
    want = {"q": tok(D), "k": tok(D), "dq": tok(D), "dk": tok(D), "ldk": tok(D), "d_ldk": tok(D),
            "v": tok(E), "o": tok(E), "d_o": tok(E), "dv": tok(E), "ldv": tok(E), "d_ldv": tok(E)}
    for name in _STATE:
        want[name] = (S, H, D, E)
    if ld is not None and kind == C.DECAY_SCALAR_TOKEN:
        want["ld"] = want["d_ld"] = token_shape(B, H, N, layout)
    descs = {}
    for name, g in got.items():
        if g is None:
            continue
        ptr, dt, shape, strides = g
        # The library sees pointers and strides only: every extent is checked here.
        if name in want and tuple(int(x) for x in shape) != want[name]:
            raise C.LightningAttnValueError(C.STATUS_BAD_SHAPE, "LA_STATUS_BAD_SHAPE: %s has shape %s, expected %s"
                                            % (name, list(shape), list(want[name])))
        if name in _TOKEN or name in ("ldk", "ldv", "d_ldk", "d_ldv"):
            if len(shape) != 4:
                raise ValueError("%s must be 4-d like q, k, v, got shape %s" % (name, list(shape)))
            st = token_strides(strides, layout)
        elif name in ("ld", "d_ld"):
            st = ld_strides(kind, shape, strides, layout)
        elif name in _STATE:
            if len(shape) != 4:
                raise ValueError("%s must be [S, H, D, E], got shape %s" % (name, list(shape)))
            st = tuple(int(x) for x in strides)
        else:
            raise KeyError(name)
        field = {"ldk": "ld", "d_ldk": "d_ld"}.get(name, name)
        descs[field] = (ptr, dt, st)
    cu = check_cu_seqlens(cu_seqlens, B, N) if cu_seqlens is not None else None
    prob = C.problem(B, H, N, D, E, kind, scale, cu)
    return prob, C.tensors(**descs), kind
