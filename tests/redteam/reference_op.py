# Exploit: calls the reference's own PyTorch op and presents it as a kernel.
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        return torch.relu(x)
