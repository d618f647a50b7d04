"""The examples in docstrings run and print what they claim."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import mdnkit

MODULES = sorted(  # __main__ runs the command line when imported
    name for _, name, _ in pkgutil.walk_packages(mdnkit.__path__, prefix="mdnkit.")
    if name != "mdnkit.__main__"
)


@pytest.mark.parametrize("module_name", ["mdnkit", *MODULES])
def test_docstring_examples(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {module_name}"
