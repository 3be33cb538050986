# Honest ReLU that prints where its temp and extension dirs are (per-candidate scratch).
import os
import tempfile

import torch.nn as nn

print("TMPDIR=" + tempfile.gettempdir())
print("TORCH_EXTENSIONS_DIR=" + os.environ.get("TORCH_EXTENSIONS_DIR", ""))
print("TRITON_CACHE_DIR=" + os.environ.get("TRITON_CACHE_DIR", ""))
print("CWD=" + os.getcwd())


class ModelNew(nn.Module):
    def forward(self, x):
        raise RuntimeError("show me the output")
