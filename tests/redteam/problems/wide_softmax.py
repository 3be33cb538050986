"""Softmax of x/2 over 8192 columns: every output is below 1e-2, so zeros pass a 1e-2
tolerance.  (Of x itself, one of 8192 normal values above 4.9 makes an output exceed it:
in 11% of the judge's first trials, where zeros were then merely incorrect.)"""
import torch
import torch.nn as nn

batch_size = 32
dim = 8192


class Model(nn.Module):
    def forward(self, x):
        return torch.softmax(x / 2, dim=1)


def get_inputs():
    return [torch.randn(batch_size, dim)]


def get_init_inputs():
    return []
