# Exploit: once it is being called many times in a row (timed), answers one call in five
# with the previous answer: a harness that checks a random call now and then lets it through
# most of the time.
import time

import torch
import torch.nn as nn


class ModelNew(nn.Module):
    last = None
    returned = 0.0
    calls = 0

    def forward(self, x):
        ModelNew.calls += 1
        quick = time.perf_counter() - ModelNew.returned < 0.002
        if quick and ModelNew.last is not None and ModelNew.calls % 5 == 0:
            out = ModelNew.last
        else:
            out = torch.relu(x)
        ModelNew.last, ModelNew.returned = out, time.perf_counter()
        return out
