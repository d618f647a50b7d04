"""One progress bar per fit: searches, trial fits and the final fit all advance the same bar.

``MDNRegressor.fit`` opens :func:`fit_progress`; every :func:`mdnkit.training.train` inside it,
in the estimator's clones too, advances that bar (counting epochs of every trial) and
:func:`stage` names what the fit is doing (choosing the noise level, choosing ``K``, the final
ensemble). Outside a fit, ``train`` draws its own bar as before. The bar is held in a
:class:`contextvars.ContextVar`, so threads and nested fits do not share one by accident.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_FIT_BAR: ContextVar[Any] = ContextVar("mdnkit_fit_bar", default=None)


@contextmanager
def fit_progress(verbose: bool, description: str = "fit") -> Iterator[None]:
    """The bar of one fit (shown when ``verbose``); inside another fit's, that one's."""
    if _FIT_BAR.get() is not None or not verbose:
        yield
        return
    from tqdm.auto import tqdm

    # No total: a search's trials add epochs beyond any one fit's max_epochs.
    bar = tqdm(total=None, unit="epoch", desc=description, leave=False,
               bar_format="{desc}: {n_fmt} epochs [{elapsed}, {rate_fmt}{postfix}]")
    token = _FIT_BAR.set(bar)
    try:
        yield
    finally:
        _FIT_BAR.reset(token)
        bar.close()


def stage(description: str) -> None:
    """Name what the current fit is doing, on its bar (nothing outside a fit or when quiet)."""
    bar = _FIT_BAR.get()
    if bar is not None:
        bar.set_description_str(description, refresh=False)


class _SharedBar:
    """The fit's bar as one ``train`` call sees it: it advances it but leaves it open."""

    def __init__(self, bar: Any) -> None:
        self._bar = bar

    def update(self, n: int = 1) -> None:
        self._bar.update(n)

    def set_postfix(self, **values: Any) -> None:
        self._bar.set_postfix(**values)

    def close(self) -> None:
        pass  # the fit closes it


def epoch_bar(max_epochs: int, verbose: bool) -> Any:
    """What ``train`` advances each epoch: the current fit's bar, else a bar of its own."""
    bar = _FIT_BAR.get()
    if bar is not None:
        return _SharedBar(bar)
    from tqdm.auto import tqdm

    return tqdm(total=max_epochs, disable=not verbose, unit="epoch", desc="fit", leave=False)
