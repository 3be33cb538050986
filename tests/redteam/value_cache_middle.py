# Exploit: like value_cache, but keyed on a few values of the batch's middle sample, so a
# probe that happens to replace that very sample sees a correct, fresh answer.
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()
        self.cache = {}

    def forward(self, x):
        key = tuple(x[x.shape[0] // 2].reshape(-1)[:8].tolist())
        if key not in self.cache:
            self.cache[key] = torch.relu(x)
        return self.cache[key]
