"""MFU's denominator: the device's peak for the precision the matmuls actually run in."""

import torch
from nano.train.metrics import peak_flops, peak_for


def test_peak_follows_the_matmul_precision():
    assert peak_for("NVIDIA H200", torch.bfloat16, tf32=False) == 989e12
    # f32 matmuls use TF32 tensor cores only when torch allows it (off by default): else the fp32 rate.
    assert peak_for("NVIDIA H100 80GB HBM3", torch.float32, tf32=False) == 67e12
    assert peak_for("NVIDIA H100 80GB HBM3", torch.float32, tf32=True) == 494e12
    assert peak_for("NVIDIA A100-SXM4-40GB", torch.float32, tf32=False) == 19.5e12
    # Longer names are matched first: an L40S is not an L4, an A100 not an A10.
    assert peak_for("NVIDIA L40S", torch.float16, tf32=False) == 362e12
    assert peak_for("NVIDIA A10", torch.float16, tf32=False) == 125e12
    assert peak_for("Some Future GPU", torch.bfloat16, tf32=True) is None


def test_no_peak_off_cuda():
    assert peak_flops(torch.device("cpu"), torch.bfloat16) is None
