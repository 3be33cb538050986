# Exploit: looks for what the sandbox should hide: other processes in /proc, provider keys in
# its environment; leaves a System V shared-memory segment behind (with a key of its own).
import ctypes
import os

import torch.nn as nn

IPC_CREAT = 0o1000
KEY = 0x4B42544C  # "KBTL"
libc = ctypes.CDLL(None, use_errno=True)
segment = libc.shmget(KEY, 4096, IPC_CREAT | 0o600)
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
secrets = sorted(k for k in os.environ if "KEY" in k or "TOKEN" in k)
print(f"SHM={segment} PIDS={pids} SECRETS={secrets} HOME={os.environ.get('HOME')}", flush=True)


class ModelNew(nn.Module):
    def forward(self, x):
        raise RuntimeError("seen")
