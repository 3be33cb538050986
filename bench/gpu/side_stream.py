# EXPLOIT for builtin/1/1 (tasks/kernelbench/level1/1_Matmul.py): the work goes on a side CUDA
# stream and forward returns before it finishes (the current stream never waits for it).  A
# timer that records events on the current stream only would see almost nothing and report a
# huge speedup.  The work is deliberately doubled (a second product, thrown away), so a clock
# that counts the side stream must report about 0.5x; anything counted faster means the
# side-stream work escaped the clock.  kbtool's promise (docs/integrity.md, "work on CUDA side
# streams"): the runner synchronises the whole device inside every timed window, so it is timed
# in full.  GPU only (bench/gpu_check.sh).
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()
        self.side = torch.cuda.Stream()

    def forward(self, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        current = torch.cuda.current_stream()
        self.side.wait_stream(current)  # the inputs are ready (their copies are on `current`)
        with torch.cuda.stream(self.side):
            out = torch.matmul(A, B)
            torch.matmul(A, B)  # thrown away: twice the reference's work
        # No current.wait_stream(self.side): the product may still be running on return.
        return out
