# Honest: the reference's ReLU through torch.compile inside ModelNew (its compile workers
# stay alive, idle, after the first call: not a lingering-thread exploit).
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()
        self.fn = torch.compile(torch.relu)

    def forward(self, x):
        return self.fn(x)
