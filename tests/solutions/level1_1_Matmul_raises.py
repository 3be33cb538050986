# Broken candidate for tasks/kernelbench/level1/1_Matmul.py: forward raises RuntimeError("boom").
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")
