"""Attention scores: softmax(Q @ K^T * scale) over the key dimension."""
import torch
import torch.nn as nn

batch_size = 8
num_heads = 8
seq_len = 128
head_dim = 64


class Model(nn.Module):
    """Computes softmax((Q @ K^T) * head_dim**-0.5, dim=-1)."""

    def __init__(self, head_dim: int):
        super().__init__()
        self.scale = head_dim ** -0.5

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scale
        return torch.softmax(scores, dim=-1)


def get_inputs():
    q = torch.randn(batch_size, num_heads, seq_len, head_dim)
    k = torch.randn(batch_size, num_heads, seq_len, head_dim)
    return [q, k]


def get_init_inputs():
    return [head_dim]
