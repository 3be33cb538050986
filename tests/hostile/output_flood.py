# Hostile: prints without bound, then fails.
import sys

import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        line = "spam " * 200 + "\n"
        for _ in range(200_000):  # ~200 MB unless the harness caps it
            sys.stdout.write(line)
        raise RuntimeError("flooded")
