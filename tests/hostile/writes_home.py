# Hostile: writes a file into the user's home directory (found from the password database,
# not from HOME, which points into the candidate's scratch).
import os
import pwd
from pathlib import Path

import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        home = Path(pwd.getpwuid(os.getuid()).pw_dir)
        (home / "kbtool-hostile-was-here.txt").write_text("pwned")
        return x.relu()
