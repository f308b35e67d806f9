"""Test settings: torch on one thread. The tests' tensors are small, and on a shared 2-core machine torch's
thread pool makes each operation wait on the other core (a softmax on 48 values: 2 ms against 0.1 ms)."""

import torch

torch.set_num_threads(1)
