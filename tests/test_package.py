"""The package's public names: listed in ``__all__``, loaded on first use (PEP 562)."""

from __future__ import annotations

import pytest

import mdnkit


def test_every_public_name_resolves_and_is_listed():
    assert set(mdnkit.__all__) <= set(dir(mdnkit))
    for name in mdnkit.__all__:
        assert getattr(mdnkit, name) is not None, name
    from mdnkit import MDNRegressor
    from mdnkit.estimator import MDNRegressor as defined

    assert MDNRegressor is defined and mdnkit.load.__module__ == "mdnkit.loading"


def test_star_import_gives_exactly_all():
    namespace: dict = {}
    exec("from mdnkit import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(mdnkit.__all__)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match=r"module 'mdnkit' has no attribute 'MDNRegresor'"):
        mdnkit.MDNRegresor
    assert not hasattr(mdnkit, "MDNRegresor")
