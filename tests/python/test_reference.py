"""The numpy reference's gradients against central finite differences: the
adjoint the Python tests trust must itself be right."""

import numpy as np
import pytest

from reference import reference


def _loss(args, w_o, w_s, **kw):
    r = reference(*args, **kw)
    return float((r["o"] * w_o).sum() + (r["final_state"] * w_s).sum())


@pytest.mark.parametrize("kind", ["head", "token", "vector_kv"])
def test_reference_gradients_match_finite_differences(kind):
    rng = np.random.default_rng(7)
    B, H, N, D, E = 1, 2, 5, 3, 2
    q, k, v = rng.standard_normal((B, H, N, D)), rng.standard_normal((B, H, N, D)), rng.standard_normal((B, H, N, E))
    kw = {"initial_state": rng.standard_normal((B, H, D, E)), "scale": 0.7}
    if kind == "head":
        kw["ld"] = -rng.uniform(0.1, 1.0, H)
    elif kind == "token":
        kw["ld"] = -rng.uniform(0.1, 1.0, (B, H, N))
    else:
        kw["ldk"] = -rng.uniform(0.1, 1.0, (B, H, N, D))
        kw["ldv"] = -rng.uniform(0.1, 1.0, (B, H, N, E))
    w_o, w_s = rng.standard_normal((B, H, N, E)), rng.standard_normal((B, H, D, E))
    r = reference(q, k, v, d_o=w_o, d_final_state=w_s, **kw)
    grads = {"q": r["dq"], "k": r["dk"], "v": r["dv"], "initial_state": r["d_initial_state"]}
    for name in ("ld", "ldk", "ldv"):
        if name in kw:
            grads[name] = r["d_" + name]
    eps = 1e-6
    for name, g in grads.items():
        base = {"q": q, "k": k, "v": v, **kw}
        x = base[name]
        num = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            for sign in (1, -1):
                xp = x.copy()
                xp[idx] += sign * eps
                args = dict(base, **{name: xp})
                num[idx] += sign * _loss((args.pop("q"), args.pop("k"), args.pop("v")), w_o, w_s, **args)
        num /= 2 * eps
        np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-6, err_msg=name)
