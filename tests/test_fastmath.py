"""Accuracy of the branch-free sincos/exp/log/cbrt in qupaint/fastmath.h against numpy.

The CPU kernels' phases, attenuations and CIELAB cube roots all go through these
functions, so their error budget is checked here directly (through the `_C._fastmath`
test hook) rather than only through the kernels' end-to-end tolerances.
"""

import numpy as np
import pytest

from qupaint import _backend

_C = _backend._compiled()
pytestmark = pytest.mark.skipif(_C is None, reason="the C++ extension is not built")

CIS, EXP, LOG, CBRT = 0, 1, 2, 3


def _eval(fn, x):
    x = np.ascontiguousarray(x)
    out = np.empty((x.size, 2) if fn == CIS else x.size, dtype=x.dtype)
    _C._fastmath(str(x.dtype), fn, x.ctypes.data, x.size, out.ctypes.data)
    return out


@pytest.mark.parametrize("dtype,atol", [(np.float64, 2e-15), (np.float32, 2e-6)])
def test_cis_matches_numpy(dtype, atol):
    rng = np.random.default_rng(0)
    # quadrant edges (multiples of pi/2 and pi), small and large phases, both signs
    edges = np.arange(-64, 65) * (np.pi / 2)
    x = np.concatenate(
        [rng.uniform(-10, 10, 20000), rng.uniform(-1e4, 1e4, 20000), edges, edges + 1e-3, [0.0]]
    ).astype(dtype)
    got = _eval(CIS, x)
    xd = x.astype(np.float64)  # compare at the rounded input, so only the function's error counts
    # the float32 error scales with |x| through the argument reduction (x ulp ~ 1e-3 at 1e4
    # does not count: xd is that same float); allow the relative reduction error as well
    tol = atol * (1 + np.abs(xd) * (1e-3 if dtype == np.float32 else 1e-4))
    assert np.all(np.abs(got[:, 0] - np.cos(xd)) <= tol)
    assert np.all(np.abs(got[:, 1] - np.sin(xd)) <= tol)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 4e-15), (np.float32, 4e-7)])
def test_exp_matches_numpy(dtype, rtol):
    rng = np.random.default_rng(1)
    lo = -80.0 if dtype == np.float32 else -700.0
    x = np.concatenate([rng.uniform(lo, -lo, 20000), rng.uniform(-1, 1, 5000), [0.0]]).astype(dtype)
    got = _eval(EXP, x).astype(np.float64)
    want = np.exp(x.astype(np.float64))
    assert np.all(np.abs(got - want) <= rtol * want)
    # below the normal range the result is flushed to zero, never NaN or garbage
    tiny = _eval(EXP, np.array([-1e4, -800.0, -104.0], dtype=dtype))
    assert np.all(tiny >= 0) and np.all(tiny < 1e-30)


@pytest.mark.parametrize("dtype,atol", [(np.float64, 2e-15), (np.float32, 3e-7)])
def test_log_and_cbrt_match_numpy(dtype, atol):
    rng = np.random.default_rng(2)
    x = np.concatenate([10.0 ** rng.uniform(-30, 30, 20000), [1.0, 2.0, 0.5, np.sqrt(2)]])
    x = x.astype(dtype)
    xd = x.astype(np.float64)
    lg = _eval(LOG, x).astype(np.float64)
    assert np.all(np.abs(lg - np.log(xd)) <= atol * np.maximum(1, np.abs(np.log(xd))))
    # cbrt = exp(log(x) / 3): the absolute error of log carries into a relative error that
    # grows with |log x| (float32: 2.6e-6 at 1e30, 1.9e-7 on CIELAB's 0.008..2)
    rel = np.abs(_eval(CBRT, x).astype(np.float64) - np.cbrt(xd)) / np.cbrt(xd)
    assert np.all(rel <= atol * (1 + np.abs(np.log(xd))))
    lab = (xd > 0.008) & (xd < 2)
    assert np.all(rel[lab] <= atol)
