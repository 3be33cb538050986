# Honest plain-PyTorch candidate for tasks/kernelbench/level1/2_ReLU.py (ReLU via torch.clamp_min).
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp_min(x, 0.0)
