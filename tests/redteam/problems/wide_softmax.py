"""Softmax over 8192 columns: every output is below 1e-2, so zeros pass a 1e-2 tolerance."""
import torch
import torch.nn as nn

batch_size = 32
dim = 8192


class Model(nn.Module):
    def forward(self, x):
        return torch.softmax(x, dim=1)


def get_inputs():
    return [torch.randn(batch_size, dim)]


def get_init_inputs():
    return []
