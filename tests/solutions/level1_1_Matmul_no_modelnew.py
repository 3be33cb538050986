# Broken candidate for tasks/kernelbench/level1/1_Matmul.py: defines no ModelNew class.
import torch
import torch.nn as nn


class SomethingElse(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        return torch.matmul(A, B)
