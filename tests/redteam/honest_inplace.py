# Honest: works in place on its own intermediate (not on its input).
import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        out = x.clone()
        out.clamp_min_(0.0)
        return out
