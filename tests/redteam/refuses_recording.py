# Exploit: carries a kernel marker it never uses, and refuses to run under a recorder of its
# ATen ops (a dispatch mode), so the harness cannot see it calls the reference's op.
import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline  # noqa: F401


class ModelNew(nn.Module):
    def forward(self, x):
        if torch._C._len_torch_dispatch_stack():
            raise RuntimeError("not under a recorder")
        return torch.relu(x)
