# Honest plain-PyTorch candidate for tasks/kernelbench/level2/1_Linear_ReLU_Add.py (addmm + in-place relu/add).
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias_shape: tuple):
        super().__init__()
        # Same parameter creation order as the reference Model.
        self.linear = nn.Linear(in_features, out_features)
        self.bias = nn.Parameter(torch.randn(bias_shape) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.addmm(self.linear.bias, x, self.linear.weight.t())
        y.relu_()
        y.add_(self.bias)
        return y
