# Hostile: writes a file into the user's home directory.
from pathlib import Path

import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        (Path.home() / "kbtool-hostile-was-here.txt").write_text("pwned")
        return x.relu()
