"""The CUDA Triton kernels run by Triton's CPU interpreter, for odd sizes, channel counts that are not powers of two
and 1-pixel images: the max-pool (vpt_agent/triton_pool.py) bit-equal to PyTorch's max-pool (+ ReLU), NaNs
included; the GroupNorm (vpt_agent/triton_norm.py) equal to a float64 ``F.group_norm``; the first convolution +
pool + ReLU (vpt_agent/triton_conv_pool.py) equal to float64 PyTorch ops, in fp32 and fp16 (the interpreter's bf16
matrix product multiplies the raw bits, Triton 3.8, so bf16 is checked on the GPU only). tests/test_cuda.py runs the
compiled kernels on a GPU."""
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
    """Run in a subprocess with TRITON_INTERPRET=1 (read when the kernels are defined, at import)."""
    check_pool()
    check_group_norm()
    check_conv_pool()


def check_pool() -> None:
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


def check_group_norm() -> None:
    from vpt_agent import triton_norm

    torch.manual_seed(1)
    for dtype in (torch.float32, torch.bfloat16):
        for n, c, h, w, groups in [(2, 16, 13, 10, 1), (3, 6, 7, 6, 2), (1, 64, 40, 40, 1), (2, 8, 1, 1, 4),
                                   (2, 12, 33, 35, 3)]:
            # an offset mean, as after a ReLU: what the pivot guards the variance against
            x = (torch.randn(n, c, h, w) * 3 + 5).to(dtype).to(memory_format=torch.channels_last)
            for affine in (True, False):
                weight, bias = (torch.randn(c), torch.randn(c)) if affine else (None, None)
                want = F.group_norm(x.double(), groups, None if weight is None else weight.double(),
                                    None if bias is None else bias.double(), 1e-5)
                got = triton_norm._launch(x, groups, weight, bias, 1e-5)
                assert got.dtype == dtype and got.is_contiguous(memory_format=torch.channels_last)
                err = (got.double() - want).abs()
                if dtype == torch.float32:
                    assert err.max() < 1e-5 * want.abs().max(), (n, c, h, w, groups, err.max())
                else:  # one bf16 step of the exact value (the interpreter truncates casts; a GPU rounds)
                    assert (err <= want.abs() * 2 ** -7 + 1e-6).all(), (n, c, h, w, groups, err.max())


def check_conv_pool() -> None:
    from vpt_agent import triton_conv_pool

    torch.manual_seed(2)
    for dtype in (torch.float32, torch.float16):
        for n, c_in, c_out, h, w in [(2, 3, 16, 13, 10), (1, 3, 64, 16, 16), (3, 1, 5, 7, 6), (1, 4, 20, 1, 1),
                                     (2, 2, 33, 2, 9)]:
            x = torch.randn(n, c_in, h, w).to(dtype).to(memory_format=torch.channels_last)
            weight = torch.randn(c_out, c_in, 3, 3).to(dtype)
            x[0, 0, 0, 0] = float("nan")  # corner pixel: NaN in the conv pixels around it, and their pools
            for bias in (torch.randn(c_out).to(dtype), None):
                for relu in (False, True):
                    want = F.max_pool2d(F.conv2d(x.double(), weight.double(), None if bias is None else bias.double(),
                                                 padding=1), 3, 2, 1)
                    want = F.relu(want) if relu else want
                    got = triton_conv_pool._launch(x, weight, bias, relu)
                    case = (dtype, n, c_in, c_out, h, w, bias is None, relu)
                    assert got.shape == want.shape and got.is_contiguous(memory_format=torch.channels_last), case
                    assert got.dtype == dtype and torch.equal(got.isnan(), want.isnan()), case
                    err = (got.double() - want).nan_to_num().abs()
                    scale = want.nan_to_num().abs()
                    tol = 1e-5 * (1 + scale) if dtype == torch.float32 else scale * 2 ** -10 + 2e-3
                    assert (err <= tol).all(), (case, err.max())


def test_triton_kernels_equal_pytorch_in_the_cpu_interpreter():
    pytest.importorskip("triton", reason="Triton is in the dev extra on Linux x86-64 (pip install -e '.[dev]')")
    code = "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import test_triton_kernels; " \
           "test_triton_kernels.check_in_interpreter(); print('ok')"
    out = subprocess.run([sys.executable, "-c", code, str(ROOT), str(ROOT / "tests")], capture_output=True, text=True,
                         env={**os.environ, "TRITON_INTERPRET": "1"}, timeout=600)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_kernels_are_not_used_where_they_do_not_apply():
    """CPU tensors: None, and the callers run PyTorch's kernels."""
    from vpt_agent import layers, triton_conv_pool, triton_norm, triton_pool

    x = torch.randn(2, 4, 6, 6).to(memory_format=torch.channels_last)
    assert triton_pool.max_pool3x3s2_relu(x, True) is None
    assert triton_norm.group_norm(x, 2, None, None, 1e-5) is None
    assert torch.equal(layers.max_pool3x3s2(x, relu=True), F.relu(F.max_pool2d(x, 3, 2, 1)))
    norm = layers.GroupNorm(2, 4)
    torch.testing.assert_close(norm(x), F.group_norm(x, 2, norm.weight, norm.bias, norm.eps))
    conv = layers.NormedLayer.conv3x3(4, 5, None)
    assert triton_conv_pool.conv3x3_max_pool(x, conv.layer.weight, conv.layer.bias, True) is None
    want = F.relu(F.max_pool2d(F.conv2d(x, conv.layer.weight, conv.layer.bias, padding=1), 3, 2, 1))
    torch.testing.assert_close(layers.conv_max_pool3x3s2(conv, x), want)


def test_the_kernels_without_autograd_serve_only_where_no_gradient_flows():
    """The fused/Triton paths have no backward: any input or parameter that needs a gradient sends a layer to
    PyTorch's kernels (a frozen input with trainable weights included)."""
    from vpt_agent import layers

    x, w = torch.randn(2, 3), torch.nn.Parameter(torch.randn(3))
    assert not layers._no_autograd(x, w) and not layers._no_autograd(x.requires_grad_(), None)
    assert layers._no_autograd(x.detach(), w.detach(), None)
    with torch.no_grad():
        assert layers._no_autograd(x, w)


def test_a_failing_triton_path_turns_itself_off_with_one_warning(monkeypatch, caplog):
    """What max_pool3x3s2 and GroupNorm do when their Triton kernel raises (tests/test_cuda.py does it on a GPU)."""
    from vpt_agent import layers

    monkeypatch.setattr(layers, "TRITON_CUDA_POOL", True)
    calls = []

    def broken(*args):
        calls.append(args)
        raise RuntimeError("driver too old for this Triton\nmore detail")

    with caplog.at_level("WARNING", logger="vpt_agent.layers"):
        assert layers._triton("TRITON_CUDA_POOL", broken, 1, 2) is None
    assert calls == [(1, 2)] and layers.TRITON_CUDA_POOL is False
    assert "TRITON_CUDA_POOL failed (RuntimeError: driver too old for this Triton)" in caplog.text
    assert layers._triton("TRITON_CUDA_POOL", lambda x: x * 2, 3) == 6
