# Hostile: ends the evaluating process from inside forward.
import os

import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        os._exit(0)
