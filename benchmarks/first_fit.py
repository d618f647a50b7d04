"""A process's first fit with mdnkit's AdamW holder against ``torch.optim.AdamW``, whose first
use imports ``torch._dynamo``; each fit in a fresh interpreter, the two alternating, medians of
``--repeats``, one thread. It also times the whole ``mdnkit fit`` command on a small CSV.

    python benchmarks/first_fit.py --datasets yacht bostonHousing --repeats 3
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from uci import DEFAULT_ROOT  # noqa: E402

# The child: one default fit on split 0 of a UCI set ("sine": 300 rows of a noisy sine, two
# features), timed from just before MDNRegressor(...).fit to its end, so the imports of torch,
# NumPy and mdnkit themselves are outside the time in both modes.
CHILD = """
import sys, time, warnings
import numpy as np, torch
torch.set_num_threads(1)
sys.path.insert(0, {here!r})
from mdnkit import MDNRegressor
import mdnkit.training as training
if {torch_optim}:  # the optimiser mdnkit used until 2026-12-07
    training._make_optimizer = lambda config, parameters: torch.optim.AdamW(
        parameters, lr=config.learning_rate, weight_decay=config.weight_decay, fused=True)
if {name!r} == "sine":
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2)); y = np.sin(2 * X[:, 0]) + 0.3 * rng.normal(size=300)
else:
    from uci import load_dataset
    X, y, _, _ = load_dataset({root!r}, {name!r}, 1).split(0)
start = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    MDNRegressor(random_state=0, device="cpu").fit(X, y)
print(time.perf_counter() - start, "torch._dynamo" in sys.modules)
"""


def first_fit(name: str, root: Path, torch_optim: bool) -> tuple[float, bool]:
    """Seconds of the first fit in a fresh interpreter, and whether it imported torch._dynamo."""
    code = CHILD.format(here=str(Path(__file__).resolve().parent), root=str(root), name=name, torch_optim=torch_optim)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, dynamo = result.stdout.split()[-2:]
    return float(seconds), dynamo == "True"


def command_seconds(workdir: Path) -> float:
    """Wall seconds of ``mdnkit fit`` on an 800-row, 4-feature CSV, start-up and saving included."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(800, 4))
    y = X[:, 0] + np.sin(X[:, 1]) + rng.choice([0.2, 0.5], size=800) * rng.normal(size=800)
    csv = workdir / "data.csv"
    np.savetxt(csv, np.column_stack([X, y]), delimiter=",", header="a,b,c,d,y", comments="")
    model = workdir / "m.mdn"
    model.unlink(missing_ok=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mdnkit", "fit", str(csv), "--target", "y", "-o", str(model), "--quiet"],
                   check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--datasets", nargs="+", default=["sine", "yacht", "bostonHousing"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print("| data set | torch.optim.AdamW s | mdnkit AdamW s | ratio | torch._dynamo imported (torch / mdnkit) |")
    print("|---|---:|---:|---:|---|")
    for name in args.datasets:
        seconds: dict[bool, list[float]] = {True: [], False: []}
        imported: dict[bool, bool] = {}
        for _ in range(args.repeats):
            for torch_optim in (True, False):  # alternating: both see the same machine
                elapsed, imported[torch_optim] = first_fit(name, args.root, torch_optim)
                seconds[torch_optim].append(elapsed)
        before, after = np.median(seconds[True]), np.median(seconds[False])
        print(f"| {name} | {before:.2f} | {after:.2f} | {after / before:.2f} | {imported[True]} / {imported[False]} |",
              flush=True)
    with tempfile.TemporaryDirectory() as workdir:
        runs = [command_seconds(Path(workdir)) for _ in range(args.repeats)]
    print(f"\n`mdnkit fit` on 800 rows x 4 features, whole command: median {np.median(runs):.2f} s "
          f"of {args.repeats} ({', '.join(f'{s:.2f}' for s in runs)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
