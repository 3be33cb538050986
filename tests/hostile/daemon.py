# Hostile: leaves a detached process behind (new session) that outlives the evaluation.
import os
import time

import torch.nn as nn

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(3600)
    os._exit(0)


class ModelNew(nn.Module):
    def forward(self, x):
        return x.relu()
