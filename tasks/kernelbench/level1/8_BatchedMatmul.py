"""Batched matrix multiplication of 3D tensors (bmm)."""
import torch
import torch.nn as nn

batch_size = 32
m = 128
k = 256
n = 128


class Model(nn.Module):
    """Performs batched matrix multiplication C[b] = A[b] @ B[b]."""

    def __init__(self):
        super().__init__()

    def forward(self, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        return torch.bmm(A, B)


def get_inputs():
    A = torch.randn(batch_size, m, k)
    B = torch.randn(batch_size, k, n)
    return [A, B]


def get_init_inputs():
    return []
