"""Conv2d, GroupNorm, Tanh, then global mean over spatial dims."""
import torch
import torch.nn as nn

batch_size = 8
in_channels = 8
out_channels = 32
height = 32
width = 32
kernel_size = 3
num_groups = 8


class Model(nn.Module):
    """Computes mean_{h,w}(tanh(group_norm(conv2d(x))))."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_groups: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size)
        self.group_norm = nn.GroupNorm(num_groups, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = self.group_norm(x)
        x = torch.tanh(x)
        return x.mean(dim=(2, 3))


def get_inputs():
    x = torch.randn(batch_size, in_channels, height, width)
    return [x]


def get_init_inputs():
    return [in_channels, out_channels, kernel_size, num_groups]
