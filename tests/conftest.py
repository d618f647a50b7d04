"""Shared test set-up."""

import torch

# `make test` runs two pytest workers on two cores; one torch thread each avoids the ~10x
# slow-down of tiny models when workers' thread pools compete for the same cores.
torch.set_num_threads(1)
