"""The CUDA max-pool kernel (vpt_agent/triton_pool.py) run by Triton's CPU interpreter: bit-equal to PyTorch's
max-pool (+ ReLU), NaNs included, for odd sizes, channel counts that are not powers of two and 1-pixel images.
tests/test_cuda.py runs the compiled kernel on a GPU."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
SHAPES = [(1, 16, 13, 10), (3, 5, 7, 6), (2, 64, 16, 16), (1, 3, 1, 1), (2, 8, 2, 9)]


def check_in_interpreter() -> None:
    """Run in a subprocess with TRITON_INTERPRET=1 (read when the kernel is defined, at import)."""
    from vpt_agent import triton_pool

    torch.manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for shape in SHAPES:
            x = torch.randn(*shape, dtype=dtype).to(memory_format=torch.channels_last)
            x[0, 0, 0, 0] = float("nan")
            for relu in (False, True):
                want = F.max_pool2d(x, 3, 2, 1)
                want = F.relu(want) if relu else want
                got = triton_pool._launch(x, relu)
                assert got.shape == want.shape and got.is_contiguous(memory_format=torch.channels_last), shape
                assert torch.equal(got.isnan(), want.isnan()), (dtype, shape, relu)
                assert torch.equal(got.nan_to_num(), want.nan_to_num()), (dtype, shape, relu)


def test_triton_pool_kernel_equals_pytorch_in_the_cpu_interpreter():
    pytest.importorskip("triton", reason="Triton is in the dev extra on Linux x86-64 (pip install -e '.[dev]')")
    code = "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import test_triton_pool; " \
           "test_triton_pool.check_in_interpreter(); print('ok')"
    out = subprocess.run([sys.executable, "-c", code, str(ROOT), str(ROOT / "tests")], capture_output=True, text=True,
                         env={**os.environ, "TRITON_INTERPRET": "1"}, timeout=600)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_kernel_is_not_used_where_it_does_not_apply():
    """CPU tensors, other layouts and dtypes: None, and the caller runs PyTorch's kernels."""
    from vpt_agent import layers, triton_pool

    x = torch.randn(2, 4, 6, 6)
    assert triton_pool.max_pool3x3s2_relu(x, True) is None
    assert torch.equal(layers.max_pool3x3s2(x, relu=True), F.relu(F.max_pool2d(x, 3, 2, 1)))
