"""One progress bar per fit: searches and trial fits advance the fit's bar, and name their stage."""

from __future__ import annotations

import numpy as np
import pytest
import tqdm.auto

from mdnkit import MDNRegressor
from mdnkit.training import TrainingConfig, train

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture
def bars(monkeypatch):
    """Every tqdm bar made (enabled or not), with the epochs and descriptions it was given."""
    made = []

    class Recording(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.epochs, self.descriptions, self.shown = 0, [kwargs.get("desc")], not self.disable
            made.append(self)

        def update(self, n=1):
            self.epochs += n
            return super().update(n)

        def set_description_str(self, desc=None, refresh=True):
            self.descriptions.append(desc)
            return super().set_description_str(desc, refresh)

    monkeypatch.setattr(tqdm.auto, "tqdm", Recording)
    return made


def _data():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (120, 1))
    return X, X[:, 0] + 0.1 * rng.normal(size=120)


def test_a_searching_ensemble_fit_draws_one_bar_for_every_epoch_it_trains(bars):
    X, y = _data()
    model = MDNRegressor(n_components="auto", n_estimators=2, input_noise="auto", hidden_sizes=(4,), max_epochs=4,
                         verbose=True, random_state=0).fit(X, y)
    assert len(bars) == 1 and bars[0].shown
    (bar,) = bars
    # The noise probe, every rung of the K search and the final ensemble: more epochs than the kept fit's.
    assert bar.epochs > model.n_iter_
    said = " | ".join(d for d in bar.descriptions if d)
    for words in ("input noise: 3 levels in one pass, keeping the best", "choosing n_components: K=",
                  "fitting 2 members with K="):
        assert words in said


def test_a_noise_mixture_fit_says_what_it_keeps(bars):
    X, y = _data()
    MDNRegressor(n_components=2, hidden_sizes=(4,), max_epochs=3, verbose=True, random_state=0).fit(X, y)
    (bar,) = bars
    assert "input noise: 3 levels x 2 networks in one pass, keeping all, weighted" in " | ".join(d for d in bar.descriptions if d)


def test_a_quiet_fit_draws_no_visible_bar(bars):
    X, y = _data()
    MDNRegressor(n_components=2, hidden_sizes=(4,), max_epochs=3, random_state=0).fit(X, y)
    assert not any(bar.shown for bar in bars)


def test_train_outside_a_fit_draws_its_own_bar(bars):
    import torch

    from mdnkit.heads import MDN

    module = MDN(1, 1, n_components=2, hidden_sizes=(4,))
    x, y = torch.randn(40, 1), torch.randn(40, 1)
    train(module, x, y, config=TrainingConfig(max_epochs=3, verbose=True))
    assert len(bars) == 1 and bars[0].epochs == 3 and bars[0].shown
