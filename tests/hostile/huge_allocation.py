# Hostile: asks for 4 TB at once.
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        return torch.ones(2**40, dtype=torch.float32) + x.sum()
