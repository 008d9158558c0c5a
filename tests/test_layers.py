"""Tests of assignment_lib.layers.bilinear_kernel: a transposed convolution initialised with it
upsamples by bilinear interpolation (Long et al. 2015, Sec. 3.3)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from assignment_lib.layers import bilinear_kernel


def ramp(channels: int, h: int, w: int) -> torch.Tensor:
    """(1, C, H, W) with channel c = a_c * row + b_c * col + c (a different plane per channel)."""
    rows = torch.arange(h, dtype=torch.float64).view(h, 1)
    cols = torch.arange(w, dtype=torch.float64).view(1, w)
    planes = [(1.5 + c) * rows - (0.5 + 2 * c) * cols + c for c in range(channels)]
    return torch.stack(planes)[None]


def upsample(x: torch.Tensor, stride: int, kernel_size: int, padding: int) -> torch.Tensor:
    c = x.shape[1]
    conv = nn.ConvTranspose2d(c, c, kernel_size, stride=stride, padding=padding, bias=False)
    with torch.no_grad():
        conv.weight.copy_(bilinear_kernel(c, c, kernel_size))
        return conv.double()(x)


@pytest.mark.parametrize("in_ch,out_ch,k", [(1, 1, 4), (3, 3, 16), (3, 5, 4), (12, 12, 64), (2, 1, 3)])
def test_shape_dtype_and_off_diagonal_zero(in_ch, out_ch, k):
    w = bilinear_kernel(in_ch, out_ch, k)
    assert w.shape == (in_ch, out_ch, k, k) and w.dtype == torch.float32
    for i in range(in_ch):
        for j in range(out_ch):
            if i != j:
                assert torch.count_nonzero(w[i, j]) == 0, (i, j)
            else:
                torch.testing.assert_close(w[i, j], w[0, 0])
    assert w[0, 0].min() > 0 and w[0, 0].max() <= 1
    torch.testing.assert_close(w[0, 0], w[0, 0].T)  # same filter along rows and columns


@pytest.mark.parametrize("stride", [2, 4, 8, 32])
def test_transposed_conv_equals_bilinear_interpolation_in_the_interior(stride):
    # kernel 2s, padding s/2: output size = s * input size, and the sampling grid is that of
    # F.interpolate(..., align_corners=False); on a linear ramp they agree away from the border.
    x = ramp(3, 6, 5)
    y = upsample(x, stride, 2 * stride, stride // 2)
    ref = F.interpolate(x, scale_factor=stride, mode="bilinear", align_corners=False)
    assert y.shape == ref.shape == (1, 3, 6 * stride, 5 * stride)
    inner = (slice(None), slice(None), slice(stride, -stride), slice(stride, -stride))
    torch.testing.assert_close(y[inner], ref[inner], rtol=0, atol=1e-9)


@pytest.mark.parametrize("stride,k", [(2, 3), (3, 6), (3, 5), (4, 8)])
def test_interior_stays_linear_with_slope_divided_by_stride(stride, k):
    x = ramp(2, 7, 7)
    y = upsample(x, stride, k, 0)[0]
    inner = y[:, k:-k, k:-k]
    for c in range(2):
        d_row = inner[c, 1:, :] - inner[c, :-1, :]
        d_col = inner[c, :, 1:] - inner[c, :, :-1]
        torch.testing.assert_close(d_row, torch.full_like(d_row, (1.5 + c) / stride),
                                       rtol=0, atol=1e-6)  # float32 kernel
        torch.testing.assert_close(d_col, torch.full_like(d_col, -(0.5 + 2 * c) / stride),
                                       rtol=0, atol=1e-6)


def test_channels_do_not_mix():
    x = torch.zeros(1, 3, 4, 4, dtype=torch.float64)
    x[0, 1] = 1.0
    y = upsample(x, 2, 4, 1)
    assert torch.count_nonzero(y[0, 0]) == 0 and torch.count_nonzero(y[0, 2]) == 0
    torch.testing.assert_close(y[0, 1, 2:-2, 2:-2], torch.ones(4, 4, dtype=torch.float64))


@pytest.mark.parametrize("args", [(0, 1, 4), (1, -1, 4), (1, 1, 0), (1, 1, 2.5), ("3", 3, 4)])
def test_bad_sizes_raise(args):
    with pytest.raises(ValueError, match="must be a positive int"):
        bilinear_kernel(*args)
