# INCORRECT candidate for tasks/kernelbench/level1/1_Matmul.py: computes A @ B.T instead of A @ B.
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        return torch.matmul(A, B.t())
