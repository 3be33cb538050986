"""2D max pooling with a square window, stride and padding."""
import torch
import torch.nn as nn

batch_size = 16
channels = 32
height = 64
width = 64
kernel_size = 3
stride = 2
padding = 1


class Model(nn.Module):
    """Applies nn.MaxPool2d."""

    def __init__(self, kernel_size: int, stride: int, padding: int):
        super().__init__()
        self.maxpool = nn.MaxPool2d(kernel_size=kernel_size, stride=stride, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(x)


def get_inputs():
    x = torch.randn(batch_size, channels, height, width)
    return [x]


def get_init_inputs():
    return [kernel_size, stride, padding]
