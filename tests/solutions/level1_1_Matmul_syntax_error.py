# Broken candidate for tasks/kernelbench/level1/1_Matmul.py: contains a Python syntax error.
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor
        return torch.matmul(A, B)
