"""What a process's first fit and predictions import: nothing torch loads only for compiling.

``torch.optim.Optimizer`` imports ``torch._dynamo`` on first use (1.3-2 s) and
``torch.broadcast_shapes`` imports sympy (0.7 s); mdnkit avoids both (``mdnkit._adamw``,
``mdnkit._univariate.broadcast_shapes``). A fresh interpreter, as a user's script or the CLI is.
"""

import subprocess
import sys

import numpy as np
import pytest
import torch

from mdnkit._univariate import broadcast_shapes

CODE = """
import sys, numpy as np
from mdnkit import MDNRegressor
rng = np.random.default_rng(0)
X = rng.normal(size=(60, 2)); y = X[:, 0] + 0.1 * rng.normal(size=60)
model = MDNRegressor(max_epochs=3, random_state=0).fit(X, y)
model.predict(X); model.score(X, y); model.predict_quantiles(X, [0.1, 0.5, 0.9]); model.sample(X, 5)
import torch; model.predict_dist(X).cdf(torch.zeros(60, 1, dtype=torch.float64))
print(sorted(name for name in ("torch._dynamo", "sympy") if name in sys.modules))
"""


def test_a_fit_and_its_predictions_import_neither_dynamo_nor_sympy():
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("shapes", [
    [(3, 1), (1, 4)], [(5,), (2, 1, 5)], [(), (2, 3)], [(1,), ()], [(0, 1), (1, 3)], [(2, 0), (1,)], [(4, 1, 2), (3, 1), (2,)],
])
def test_broadcast_shapes_matches_numpy_and_torch(shapes):
    expected = np.broadcast_shapes(*shapes)
    assert broadcast_shapes(*shapes) == torch.Size(expected) == torch.broadcast_shapes(*shapes)


@pytest.mark.parametrize("shapes", [[(3,), (4,)], [(2, 3), (3, 2)], [(0,), (2,)]])
def test_broadcast_shapes_refuses_what_numpy_refuses(shapes):
    with pytest.raises(ValueError):
        np.broadcast_shapes(*shapes)
    with pytest.raises(RuntimeError, match="do not broadcast"):
        broadcast_shapes(*shapes)
