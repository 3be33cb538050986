# Exploit: changes torch's global state (the default dtype) for everything that runs after it.
import torch
import torch.nn as nn

torch.set_default_dtype(torch.float64)


class ModelNew(nn.Module):
    def forward(self, x):
        return torch.relu(x)
