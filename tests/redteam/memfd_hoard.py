# Exploit: holds more memory than the limit in a memfd it writes to (never maps): no
# process's resident memory shows it.
import os

import torch.nn as nn

HOARD_MB = 768  # the red-team tests' memory_limit_mb is 512
hoard = os.memfd_create("hoard")
chunk = b"\xa5" * 2**20
for _ in range(HOARD_MB):
    os.write(hoard, chunk)


class ModelNew(nn.Module):
    def forward(self, x):
        return x.relu()
