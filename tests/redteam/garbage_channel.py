# Exploit: sends a malformed message on its channel from forward, then goes on working; says
# where its scratch is, so a test can see it was removed.
import os
import socket
import stat

import torch.nn as nn

print("SCRATCH=" + os.getcwd(), flush=True)


class ModelNew(nn.Module):
    def forward(self, x):
        for fd in range(3, 256):
            try:
                if stat.S_ISSOCK(os.fstat(fd).st_mode):
                    socket.socket(fileno=os.dup(fd)).send(b"\xff\x00{not json")
            except OSError:
                pass
        if os.fork() == 0:  # and leaves a worker behind
            os.setsid()
            while True:
                pass
        return x.relu()
