"""Shared test set-up."""

import torch
from threadpoolctl import threadpool_limits

# `make test` runs two pytest workers on two cores; one torch thread each avoids the ~10x
# slow-down of tiny models when workers' thread pools compete for the same cores. The same holds
# for NumPy's BLAS (scikit-learn's mixtures and k-means were ~30x slower with two threads).
torch.set_num_threads(1)
threadpool_limits(1)
