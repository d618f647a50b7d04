"""Reference tests for mdnkit._special: the incomplete beta and the Student-t cdf against SciPy.

Every expected value is computed in float64 by SciPy (or a closed form where SciPy is itself
inaccurate, named where it is used). The tolerances are what the code achieves with a margin of
about 2-3x; measured maxima are in the comments next to them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

import mdnkit._special as special
from mdnkit._special import betainc, student_t_cdf, student_t_sf

F64 = torch.float64
NAN, INF = float("nan"), float("inf")

# SciPy's own betainc (Boost) goes wrong near underflow: 0.48 relative at I = 5.5e-286 for
# (a, b, x) = (1000, 22.17, 0.475), where mpmath agrees with us to 1e-12. Below this floor the
# comparison is absolute.
FLOOR = 1e-250
BETAINC_RTOL = 2e-12  # measured 8.3e-13 (a = 1000, b = 22, x = 0.035)
T_RTOL = 1e-12  # measured 3.9e-13 for df <= 1e4

SHAPES = np.logspace(np.log10(0.05), 3, 25)
X_GRID = np.concatenate([
    [0.0, 1e-300, 1e-200, 1e-100, 1e-30, 1e-15, 1e-8],
    np.linspace(0.0, 1.0, 201)[1:-1],
    1.0 - np.logspace(-15, -1, 15),  # down to 1 - 1e-15
    [1.0],
])
DFS = [0.5, 1.0, 2.0, 2.5, 3.0, 5.0, 10.0, 30.0, 100.0, 1e4, INF]
T_MAGNITUDES = np.concatenate([[0.0, 1e-8], np.logspace(-8, 6, 141), [1e6, INF]])
T_GRID = np.unique(np.concatenate([-T_MAGNITUDES, T_MAGNITUDES]))


def _relative_error(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.abs(got - ref) / np.where(ref >= FLOOR, ref, 1.0)


def _assert_close(got: np.ndarray, ref: np.ndarray, rtol: float) -> None:
    """Relative error below ``rtol`` where ``ref >= FLOOR``, absolute below ``FLOOR`` elsewhere."""
    assert not np.isnan(got).any()
    above = ref >= FLOOR
    rel = _relative_error(got, ref)[above]
    assert rel.max() < rtol, f"max relative error {rel.max():.2e} at ref {ref[above][rel.argmax()]}"
    assert np.abs(got - ref)[~above].max(initial=0.0) < FLOOR


def _t_reference(t: np.ndarray, df: np.ndarray, upper: bool = False) -> np.ndarray:
    """SciPy's t cdf (or sf), but the exact Cauchy cdf at ``df = 1``: SciPy's ``stdtr(1, t)``
    is 3e-9 off near ``t = 0`` (0.49999999526 at ``t = -1e-8``, truth 0.49999999682)."""
    ref = scipy.stats.t.sf(t, df) if upper else scipy.stats.t.cdf(t, df)
    s = -t if upper else t
    with np.errstate(divide="ignore"):  # atan2 takes the infinities and zero in its stride
        cauchy = np.where(s < 0, np.arctan2(1.0, -s) / np.pi, 1.0 - np.arctan2(1.0, s) / np.pi)
    return np.where(df == 1.0, cauchy, ref)


def test_betainc_matches_scipy_on_a_grid():
    a, b, x = np.meshgrid(SHAPES, SHAPES, X_GRID, indexing="ij")
    got = betainc(torch.tensor(a), torch.tensor(b), torch.tensor(x)).numpy()
    _assert_close(got, scipy.special.betainc(a, b, x), BETAINC_RTOL)


def test_betainc_endpoints_are_exact():
    a, b = torch.meshgrid(torch.tensor(SHAPES), torch.tensor(SHAPES), indexing="ij")
    assert (betainc(a, b, torch.zeros((), dtype=F64)) == 0).all()
    assert (betainc(a, b, torch.ones((), dtype=F64)) == 1).all()


def test_betainc_near_underflow_matches_mpmath_where_scipy_does_not():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    for a, b, x in [(1000.0, 22.169591661216124, 0.475), (280.92209464299, 36.840314986404, 0.07)]:
        ref = float(mpmath.betainc(a, b, 0, x, regularized=True))
        got = betainc(*(torch.tensor(v, dtype=F64) for v in (a, b, x)))
        assert got.item() == pytest.approx(ref, rel=BETAINC_RTOL)
        assert abs(scipy.special.betainc(a, b, x) / ref - 1) > 1e-3  # why this test uses mpmath


@pytest.mark.parametrize("function, upper", [(student_t_cdf, False), (student_t_sf, True)])
def test_student_t_matches_scipy_on_a_grid(function, upper):
    t, df = np.meshgrid(T_GRID, DFS, indexing="ij")
    got = function(torch.tensor(t), torch.tensor(df)).numpy()
    _assert_close(got, _t_reference(t, df, upper), T_RTOL)


def test_student_t_large_df_degrades_as_documented():
    """The continued fraction cancels for x near 1: 4.9e-11 measured at df = 1e6."""
    t, df = np.meshgrid(T_GRID, [1e5, 1e6], indexing="ij")
    got = student_t_cdf(torch.tensor(t), torch.tensor(df)).numpy()
    _assert_close(got, scipy.stats.t.cdf(t, df), 1e-10)


def test_student_t_lower_tail_is_relative_beyond_float_range_of_t_squared():
    # t² overflows here; F(t) = atan(1/|t|)/π = 1/(π|t|) for df = 1 (SciPy returns 0).
    t = torch.tensor([-1e100, -1e200, -1e300], dtype=F64)
    got = student_t_cdf(t, torch.tensor(1.0, dtype=F64))
    # exp of a log near -460: 3.7e-14 measured
    torch.testing.assert_close(got, 1.0 / (math.pi * t.abs()), rtol=1e-13, atol=0.0)


def test_student_t_values_at_zero_and_infinity():
    df = torch.tensor(DFS, dtype=F64)
    assert (student_t_cdf(torch.zeros((), dtype=F64), df) == 0.5).all()
    assert (student_t_cdf(torch.tensor(-INF, dtype=F64), df) == 0).all()
    assert (student_t_cdf(torch.tensor(INF, dtype=F64), df) == 1).all()
    assert (student_t_sf(torch.tensor(INF, dtype=F64), df) == 0).all()


def test_student_t_tails_are_symmetric():
    t, df = (torch.tensor(v) for v in np.meshgrid(T_GRID, DFS, indexing="ij"))
    torch.testing.assert_close(student_t_cdf(t, df), student_t_sf(-t, df), rtol=0.0, atol=0.0)
    torch.testing.assert_close(student_t_cdf(t, df) + student_t_cdf(-t, df),
                               torch.ones_like(t), rtol=0.0, atol=3e-16)


def test_infinite_df_is_the_normal_in_both_tails():
    t = torch.linspace(-37.0, 37.0, 149, dtype=F64)
    got = student_t_cdf(t, torch.tensor(INF, dtype=F64)).numpy()
    _assert_close(got, scipy.stats.norm.cdf(t.numpy()), 1e-12)  # 1.8e-13 measured, at t = -37


def test_broadcasting_matches_one_at_a_time():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(3, 1, generator=gen, dtype=F64) * 20 + 0.05
    b = torch.rand(1, 4, generator=gen, dtype=F64) * 20 + 0.05
    x = torch.rand(5, 1, 1, generator=gen, dtype=F64)
    batched = betainc(a, b, x)
    assert batched.shape == (5, 3, 4)
    one_at_a_time = torch.stack([
        betainc(*(v.reshape(()) for v in (a[j], b[0, k], x[i])))
        for i in range(5) for j in range(3) for k in range(4)
    ]).reshape(5, 3, 4)
    torch.testing.assert_close(batched, one_at_a_time, rtol=0.0, atol=0.0)

    t = torch.randn(2, 7, 1, generator=gen, dtype=F64) * 3
    df = torch.tensor([0.5, 3.0, 30.0, INF], dtype=F64)
    cdf = student_t_cdf(t, df)  # [2, 7, 4]
    assert cdf.shape == (2, 7, 4)
    for k in range(4):
        torch.testing.assert_close(cdf[..., k], student_t_cdf(t[..., 0], df[k]), rtol=0.0, atol=0.0)


def test_dtype_follows_the_inputs():
    t32, df32 = torch.tensor([-3.0, 0.5, 40.0]), torch.tensor([2.5, 2.5, 1.0])
    assert student_t_cdf(t32, df32).dtype == torch.float32
    assert student_t_sf(t32, df32).dtype == torch.float32
    assert betainc(df32, df32, torch.tensor([0.1, 0.5, 0.9])).dtype == torch.float32
    # float32 out is the float64 result rounded: the work is done in float64.
    torch.testing.assert_close(student_t_cdf(t32, df32),
                               student_t_cdf(t32.double(), df32.double()).float(), rtol=0, atol=0)
    assert student_t_cdf(t32, df32.double()).dtype == F64
    integers = student_t_cdf(torch.tensor([-1, 0, 1]), torch.tensor(3))
    assert integers.dtype == torch.get_default_dtype()


def test_nan_and_invalid_arguments_give_nan_only_there():
    a = torch.tensor([NAN, 2.0, 2.0, 0.0, -1.0, INF, 2.0, 2.0, 2.0], dtype=F64)
    b = torch.tensor([3.0, NAN, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0], dtype=F64)
    x = torch.tensor([0.5, 0.5, NAN, 0.5, 0.5, 0.5, -0.1, 1.1, 0.5], dtype=F64)
    value = betainc(a, b, x)
    assert value[:-1].isnan().all()
    assert value[-1].item() == pytest.approx(0.6875, rel=1e-15)

    t = torch.tensor([NAN, 1.0, 1.0, 1.0, 1.0, 1.0], dtype=F64)
    df = torch.tensor([3.0, NAN, 0.0, -2.0, -INF, 3.0], dtype=F64)
    cdf = student_t_cdf(t, df)
    assert cdf[:-1].isnan().all()
    assert cdf[-1].item() == pytest.approx(scipy.stats.t.cdf(1.0, 3.0), rel=T_RTOL)


def test_unconverged_continued_fraction_gives_nan(monkeypatch):
    # a = b = 1000 near x = 1/2 needs ~54 terms; with 2 it must say it does not know.
    monkeypatch.setattr(special, "_MAX_ITER", 2)
    value = betainc(torch.tensor([1000.0, 1.0], dtype=F64), torch.tensor(1000.0, dtype=F64),
                    torch.tensor([0.5, 0.0], dtype=F64))
    assert value[0].isnan() and value[1] == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    t, df = (torch.tensor(v) for v in np.meshgrid(T_GRID, DFS, indexing="ij"))
    got = student_t_cdf(t.cuda(), df.cuda())
    assert got.is_cuda
    torch.testing.assert_close(got.cpu(), student_t_cdf(t, df), rtol=1e-14, atol=0.0)
