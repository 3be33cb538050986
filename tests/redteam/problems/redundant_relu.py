"""A deliberately wasteful reference: the same ReLU 60 times (an honest 10x+ speedup exists)."""
import torch
import torch.nn as nn

batch_size = 16
dim = 65536


class Model(nn.Module):
    def forward(self, x):
        out = x
        for _ in range(60):
            out = torch.relu(x)
        return out


def get_inputs():
    return [torch.randn(batch_size, dim)]


def get_init_inputs():
    return []
