"""Layer normalization with learnable affine weights over the trailing dims."""
import torch
import torch.nn as nn

batch_size = 16
features = 64
dim1 = 32
dim2 = 32


class Model(nn.Module):
    """Applies nn.LayerNorm over the last three dimensions."""

    def __init__(self, normalized_shape: tuple):
        super().__init__()
        self.ln = nn.LayerNorm(normalized_shape=normalized_shape)
        # Non-trivial affine parameters so the weights actually matter.
        with torch.no_grad():
            self.ln.weight.copy_(1.0 + 0.1 * torch.randn(normalized_shape))
            self.ln.bias.copy_(0.1 * torch.randn(normalized_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x)


def get_inputs():
    x = torch.randn(batch_size, features, dim1, dim2)
    return [x]


def get_init_inputs():
    return [(features, dim1, dim2)]
