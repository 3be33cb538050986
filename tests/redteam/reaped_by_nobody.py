# Exploit: work between the timed calls in short-lived grandchildren that leave the runner's
# session (setsid, then a second fork) and exit unreaped: with SIGCHLD ignored the kernel
# reaps them, and their CPU time is added to no process's counters in /proc.
import os
import signal
import threading
import time

import torch.nn as nn

signal.signal(signal.SIGCHLD, signal.SIG_IGN)
BUSY = "(i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done) &"


def spawn_forever() -> None:
    while True:
        os.posix_spawn("/bin/sh", ["sh", "-c", BUSY], {"PATH": "/usr/bin:/bin"}, setsid=True)
        time.sleep(0.02)


threading.Thread(target=spawn_forever, daemon=True).start()


class ModelNew(nn.Module):
    def forward(self, x):
        return x.relu()
