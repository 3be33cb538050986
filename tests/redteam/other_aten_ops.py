# Exploit: carries a kernel marker it never uses, and computes the reference's result from
# other ATen ops than the reference's (so the reference's op names are not among its own).
import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline  # noqa: F401


class ModelNew(nn.Module):
    def forward(self, x):
        return torch.where(x > 0, x, torch.zeros((), dtype=x.dtype))
