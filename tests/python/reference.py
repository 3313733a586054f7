"""An exact fp64 reference in numpy for the Python tests: the recurrence
token by token, and its adjoint for every gradient.  Independent of the C
library (it shares no code with src/reference), slow, for small shapes.

    S_t = diag(exp(gk_t)) S_{t-1} diag(exp(gv_t)) + k_t^T v_t,   o_t = scale q_t S_t
"""

import numpy as np


def _one(q, k, v, gk, gv, s0, do, dsN, scale):
    """One (sequence, head): q, k [N, D], v [N, E], gk [N, D] / gv [N, E] or
    None, s0 [D, E] or None; do [N, E], dsN [D, E] or None."""
    N, D = q.shape
    E = v.shape[1]
    S = np.zeros((D, E)) if s0 is None else s0.copy()
    prev, post = [], []
    o = np.zeros((N, E))
    for t in range(N):
        a = np.exp(gk[t]) if gk is not None else np.ones(D)
        b = np.exp(gv[t]) if gv is not None else np.ones(E)
        prev.append(S)
        S = a[:, None] * S * b[None, :] + np.outer(k[t], v[t])
        post.append(S)
        o[t] = scale * q[t] @ S
    r = {"o": o, "sN": S}
    if do is None:
        return r
    G_next = np.zeros((D, E)) if dsN is None else dsN.copy()
    dq, dk, dv = np.zeros((N, D)), np.zeros((N, D)), np.zeros((N, E))
    dgk, dgv = np.zeros((N, D)), np.zeros((N, E))
    for t in reversed(range(N)):
        a = np.exp(gk[t]) if gk is not None else np.ones(D)
        b = np.exp(gv[t]) if gv is not None else np.ones(E)
        G = G_next + scale * np.outer(q[t], do[t])      # dL/dS_t
        dq[t] = scale * post[t] @ do[t]
        dk[t] = G @ v[t]
        dv[t] = k[t] @ G
        decayed = G * (a[:, None] * prev[t] * b[None, :])  # d/d(log a), d/d(log b) of the decay term
        dgk[t] = decayed.sum(axis=1)
        dgv[t] = decayed.sum(axis=0)
        G_next = a[:, None] * G * b[None, :]
    r.update(dq=dq, dk=dk, dv=dv, dgk=dgk, dgv=dgv, ds0=G_next)
    return r


def _bhnd(x, layout):
    return None if x is None else (x if layout == "bhnd" else np.swapaxes(x, 1, 2))


def reference(q, k, v, *, ld=None, ldk=None, ldv=None, scale=1.0, initial_state=None, cu_seqlens=None,
              layout="bhnd", d_o=None, d_final_state=None):
    """Forward (o, final_state) and, with d_o, every gradient, in float64,
    shapes as lightning_attn_func takes them (ld per head [H] or [H, 1, 1],
    or per token [B, H, N] / [B, N, H])."""
    f = lambda x: None if x is None else np.asarray(x, dtype=np.float64)
    q, k, v, do = (_bhnd(f(x), layout) for x in (q, k, v, d_o))
    ldk, ldv = _bhnd(f(ldk), layout), _bhnd(f(ldv), layout)
    ld, s0, dsN = f(ld), f(initial_state), f(d_final_state)
    B, H, N, D = q.shape
    E = v.shape[3]
    per_token = ld is not None and ld.ndim == 3 and ld.shape == ((B, H, N) if layout == "bhnd" else (B, N, H))
    if ld is not None:
        ldt = (ld if layout == "bhnd" else np.swapaxes(ld, 1, 2)) if per_token else \
            np.broadcast_to(ld.reshape(1, H, 1), (B, H, N))
        gk = np.broadcast_to(ldt[..., None], (B, H, N, D))
    else:
        gk = ldk
    gv = ldv
    seqs = [(b, 0, N) for b in range(B)] if cu_seqlens is None else \
        [(0, int(cu_seqlens[i]), int(cu_seqlens[i + 1])) for i in range(len(cu_seqlens) - 1)]
    S_n = len(seqs)
    o = np.zeros((B, H, N, E))
    sN = np.zeros((S_n, H, D, E))
    g = {n: np.zeros(x.shape) for n, x in (("dq", q), ("dk", k), ("dv", v))}
    dgk, dgv = np.zeros((B, H, N, D)), np.zeros((B, H, N, E))
    ds0 = np.zeros((S_n, H, D, E))
    for i, (b, t0, t1) in enumerate(seqs):
        for h in range(H):
            sl = (b, h, slice(t0, t1))
            r = _one(q[sl], k[sl], v[sl], None if gk is None else gk[sl], None if gv is None else gv[sl],
                     None if s0 is None else s0[i, h], None if do is None else do[sl],
                     None if dsN is None else dsN[i, h], scale)
            o[sl] = r["o"]
            sN[i, h] = r["sN"]
            if do is not None:
                g["dq"][sl], g["dk"][sl], g["dv"][sl] = r["dq"], r["dk"], r["dv"]
                dgk[sl], dgv[sl] = r["dgk"], r["dgv"]
                ds0[i, h] = r["ds0"]
    back = lambda x: x if layout == "bhnd" else np.swapaxes(x, 1, 2)
    out = {"o": back(o), "final_state": sN}
    if do is None:
        return out
    out.update({n: back(x) for n, x in g.items()})
    out["d_initial_state"] = ds0
    if ld is not None:
        dtok = dgk.sum(axis=3)  # a scalar decay drives every key channel
        out["d_ld"] = back(dtok) if per_token else dtok.sum(axis=(0, 2)).reshape(ld.shape)
    if ldk is not None:
        out["d_ldk"] = back(dgk)
    if ldv is not None:
        out["d_ldv"] = back(dgv)
    return out
