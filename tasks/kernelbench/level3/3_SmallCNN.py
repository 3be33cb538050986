"""Small LeNet-style CNN: two conv/ReLU/max-pool stages followed by two linear layers."""
import torch
import torch.nn as nn
import torch.nn.functional as F

batch_size = 16
in_channels = 3
image_size = 32
num_classes = 10


class Model(nn.Module):
    """conv(3->16) -> relu -> pool -> conv(16->32) -> relu -> pool -> fc -> relu -> fc."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        flat = 32 * (image_size // 4) * (image_size // 4)
        self.fc1 = nn.Linear(flat, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = F.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        return self.fc2(x)


def get_inputs():
    x = torch.randn(batch_size, in_channels, image_size, image_size)
    return [x]


def get_init_inputs():
    return [in_channels, image_size, num_classes]
