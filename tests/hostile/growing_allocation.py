# Hostile: allocates 256 MB blocks until something stops it.
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        hoard = []
        while True:
            hoard.append(torch.ones(64 * 2**20))
