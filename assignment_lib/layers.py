"""Layers the FCN exercises build on: the bilinear upsampling kernel.

Source: Long, Shelhamer and Darrell, "Fully Convolutional Networks for Semantic Segmentation",
CVPR 2015, Sec. 3.3 (upsampling is backwards strided convolution, initialised to bilinear
interpolation); the same kernel as ``get_upsampling_weight`` in wkentaro/pytorch-fcn.
"""

from __future__ import annotations

import torch


def bilinear_kernel(in_channels: int, out_channels: int, kernel_size: int) -> torch.Tensor:
    """Weights that make ``nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride)``
    perform bilinear interpolation, channel by channel.

    Args:
        in_channels: input channels of the transposed convolution.
        out_channels: output channels; channel ``i`` interpolates input channel ``i`` (for
            ``i < min(in_channels, out_channels)``), all other weights are zero.
        kernel_size: side of the square kernel, usually ``2 * stride``.

    Returns:
        float32 tensor of shape ``(in_channels, out_channels, kernel_size, kernel_size)``, the
        layout of ``ConvTranspose2d.weight``. Values lie in (0, 1].

    Raises:
        ValueError: if a size is not a positive integer.
    """
    for name, v in (("in_channels", in_channels), ("out_channels", out_channels),
                    ("kernel_size", kernel_size)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float64)
    filt1d = 1 - (og - center).abs() / factor
    filt = (filt1d[:, None] * filt1d[None, :]).to(torch.float32)
    weight = torch.zeros(in_channels, out_channels, kernel_size, kernel_size)
    idx = torch.arange(min(in_channels, out_channels))
    weight[idx, idx] = filt
    return weight
