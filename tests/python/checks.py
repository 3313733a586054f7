"""Comparison helpers: NaN/Inf first, then relative L2 error against the
fp64 reference, with the worst element named on failure."""

import numpy as np


def rel_err(got, want):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, "shape %s, want %s" % (got.shape, want.shape)
    assert np.all(np.isfinite(got)), "non-finite values at %s" % (np.argwhere(~np.isfinite(got))[:5].tolist(),)
    den = np.linalg.norm(want)
    return np.linalg.norm(got - want) / (den if den > 0 else 1.0)


def assert_close(got, want, tol, what):
    e = rel_err(got, want)
    if not e <= tol:
        got = np.asarray(got, dtype=np.float64)
        i = np.unravel_index(np.argmax(np.abs(got - want)), want.shape)
        raise AssertionError("%s: relative L2 error %.3g > %.3g; worst at %s: got %.6g, want %.6g"
                             % (what, e, tol, i, got[i], want[i]))
    return e
