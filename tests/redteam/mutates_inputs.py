# Exploit: works in place on its input, so a reference run afterwards sees other data.
import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        return x.relu_()
