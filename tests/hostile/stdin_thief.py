# Hostile: reads the evaluator's stdin and writes junk to every inherited descriptor.
import contextlib
import os
import sys

import torch.nn as nn

with contextlib.suppress(Exception):
    sys.stdin.read(1)
for fd in range(3, 64):
    with contextlib.suppress(OSError):
        os.write(fd, b"\x00junk\n" * 100)


class ModelNew(nn.Module):
    def forward(self, x):
        return x.relu()
