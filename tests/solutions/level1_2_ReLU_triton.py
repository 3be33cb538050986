# Honest Triton candidate for builtin/1/2 (tasks/kernelbench/level1/2_ReLU.py), in the tests
# and in bench/gpu_check.sh.  On a GPU it compiles for the device; on a CPU kbtool runs it on
# Triton's interpreter (TRITON_INTERPRET=1).
import os

import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def relu_kernel(x_ptr, out_ptr, n_elements, BLOCK_SIZE: tl.constexpr):
    pid = tl.program_id(axis=0)
    offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < n_elements
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0)
    tl.store(out_ptr + offsets, tl.where(x < 0, 0.0, x), mask=mask)  # NaN stays NaN


def triton_relu(x: torch.Tensor) -> torch.Tensor:
    x = x.contiguous()
    out = torch.empty_like(x)
    n = x.numel()
    # Large blocks keep the interpreter fast (few programs); 4096 with 8 warps suits a GPU.
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    block = 65536 if interpreted else 4096
    grid = (triton.cdiv(n, block),)
    if interpreted:
        relu_kernel[grid](x, out, n, BLOCK_SIZE=block)
    else:
        relu_kernel[grid](x, out, n, BLOCK_SIZE=block, num_warps=8)
    return out


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return triton_relu(x)
