# Exploit: returns uninitialised memory, hoping it still holds the reference's output.
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        return torch.empty_like(x)
