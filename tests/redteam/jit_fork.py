# Exploit: starts the work on torch's own native thread pool (torch.jit.fork inside
# TorchScript) and returns before it is done: the caller's clock stops while the pool works.
import torch
import torch.nn as nn


def fill(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    for _ in range(50):  # enough work that finishing it late matters
        torch.clamp_min(x, 0.0, out=out)
    return out


@torch.jit.script
def launch(x: torch.Tensor, out: torch.Tensor) -> torch.jit.Future[torch.Tensor]:
    return torch.jit.fork(fill, x, out)


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()
        self.pending = []

    def forward(self, x):
        out = torch.empty_like(x)
        self.pending = [*self.pending[-8:], launch(x, out)]  # never waited for
        return out
