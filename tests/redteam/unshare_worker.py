# Exploit: a busy worker started with the `unshare` program in PID and user namespaces of
# its own does work between the timed calls, out of the sight of a judge that counts the
# processes of the runner's namespace.
import subprocess

import torch.nn as nn

worker = subprocess.Popen(
    ["unshare", "--user", "--pid", "--fork", "--kill-child", "sh", "-c",
     "while :; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 0.01; done"],
    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
try:  # a worker that could not start says so at once
    _, err = worker.communicate(timeout=0.5)
    raise OSError(f"unshare: {err.decode().strip()}")
except subprocess.TimeoutExpired:
    pass


class ModelNew(nn.Module):
    def forward(self, x):
        return x.relu()
