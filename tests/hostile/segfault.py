# Hostile: dereferences a null pointer in forward (the process dies of SIGSEGV).
import ctypes

import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        ctypes.string_at(0)
        return x
