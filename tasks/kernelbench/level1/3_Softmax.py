"""Row-wise softmax over the last dimension."""
import torch
import torch.nn as nn

batch_size = 1024
dim = 256


class Model(nn.Module):
    """Applies softmax along dim=1 of a (batch_size, dim) tensor."""

    def __init__(self):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=1)


def get_inputs():
    x = torch.randn(batch_size, dim)
    return [x]


def get_init_inputs():
    return []
