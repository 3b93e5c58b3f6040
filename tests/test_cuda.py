"""CUDA: graph == eager on the golden data (TF32 off), batched == single, GPU resize == cv2. Skipped without a GPU."""
import contextlib

import cv2
import numpy as np
import pytest
import torch

from conftest import SMALL_MODEL, SMALL_WEIGHTS, make_obs
from test_agent import assert_batched_equals_single_agents
from test_golden import GOLDEN_SEED, RESET_AT
from vpt_agent import VPTAgent
from vpt_agent.resize import resize_linear_u8

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none)")


@contextlib.contextmanager
def no_tf32():
    """TF32 convolutions/matmuls round inputs to 10 mantissa bits; parity checks need true fp32."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _agent(**kw):
    return VPTAgent.from_files(SMALL_MODEL, SMALL_WEIGHTS, device="cuda", **kw)


def _golden_rollout(agent, n):
    steps = []
    for t in range(n):
        if t in RESET_AT:
            agent.reset()
        steps.append(agent.act([{"pov": make_obs(GOLDEN_SEED, t)}], [t == 0 or t in RESET_AT], deterministic=True))
    return steps


def test_graph_is_the_default_on_cuda_and_can_be_turned_off():
    assert _agent().cuda_graph and not _agent(cuda_graph=False).cuda_graph


@pytest.mark.parametrize("cuda_graph", [True, False], ids=["graph", "eager"])
def test_golden_parity_on_cuda(golden, cuda_graph):
    """The golden rollout with the CUDA kernels as shipped (Triton first conv + pool and GroupNorm included)."""
    with no_tf32():
        steps = _golden_rollout(_agent(cuda_graph=cuda_graph), len(golden["vpred"]))
    assert layers_flags("TRITON_CUDA_CONV_POOL", "TRITON_CUDA_GROUP_NORM", "TRITON_CUDA_POOL") == (True,) * 3  # ran
    for t, st in enumerate(steps):
        np.testing.assert_allclose(st.logp_buttons[0], golden["logits_buttons"][t], atol=1e-4, err_msg=f"step {t}")
        np.testing.assert_allclose(st.logp_camera[0], golden["logits_camera"][t], atol=1e-4, err_msg=f"step {t}")
        assert abs(st.value[0] - golden["vpred"][t]) < 1e-4, t
        assert (st.buttons[0], st.camera[0]) == (golden["joint_buttons"][t], golden["joint_camera"][t]), t


def test_graph_equals_eager_on_cuda(golden):
    with no_tf32():
        graph = _golden_rollout(_agent(cuda_graph=True), len(golden["vpred"]))
        eager = _golden_rollout(_agent(cuda_graph=False), len(golden["vpred"]))
    for t, (g, e) in enumerate(zip(graph, eager)):
        assert (g.buttons[0], g.camera[0]) == (e.buttons[0], e.camera[0]), t
        np.testing.assert_allclose(g.logp_buttons, e.logp_buttons, atol=1e-4, err_msg=f"step {t}")


def test_graph_sampling_is_seeded_like_eager():
    a, b = _agent(seed=3, cuda_graph=True), _agent(seed=3, cuda_graph=False)
    with no_tf32():
        for t in range(12):
            obs = {"pov": make_obs(4, t)}
            sa, sb = a.act([obs], [t == 0]), b.act([obs], [t == 0])
            assert (sa.buttons[0], sa.camera[0]) == (sb.buttons[0], sb.camera[0]), t


def test_batched_graph_equals_single_graph_agents():
    with no_tf32():
        assert_batched_equals_single_agents(_agent, check_value=False)


def test_bf16_on_cuda_mostly_agrees_with_fp32():
    """At least 80% of 200 deterministic steps of the tiny golden model pick the same joint action in bf16 as in
    fp32 (measured on an H200: 176/200 with the matrix-product first conv, 182/200 with cuDNN's; over 30 steps the
    same rollouts gave 23 and 25, so 30 steps were too few to judge)."""
    f32, bf16 = _agent(), _agent(dtype="bfloat16")
    agree = 0
    for t in range(200):
        a = f32.act([{"pov": make_obs(7, t)}], [t == 0], deterministic=True)
        b = bf16.act([{"pov": make_obs(7, t)}], [t == 0], deterministic=True)
        agree += int(a.buttons[0] == b.buttons[0] and a.camera[0] == b.camera[0])
    assert agree >= 160, f"bf16 and fp32 agree on {agree}/200 steps"


def test_gpu_resize_is_bit_exact_with_cv2():
    rng = np.random.default_rng(0)
    for hw in [(360, 640), (720, 1280), (64, 100)]:
        imgs = rng.integers(0, 256, (4, *hw, 3), dtype=np.uint8)
        got = resize_linear_u8(torch.from_numpy(imgs).cuda(), (128, 128)).cpu().numpy()
        for i in range(4):
            assert np.array_equal(got[i], cv2.resize(imgs[i], (128, 128), interpolation=cv2.INTER_LINEAR)), hw


@pytest.mark.parametrize("groups", [1, 2])
def test_channels_last_group_norm_path_on_cuda(groups):
    """On CUDA a channels-last input takes the layout-keeping path (output stays channels-last), equal to torch's."""
    from torch.nn import functional as F

    from vpt_agent.layers import GroupNorm

    torch.manual_seed(groups)
    norm = GroupNorm(groups, 64).cuda()
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = (torch.randn(4, 64, 16, 16, device="cuda").relu() + 0.5).to(memory_format=torch.channels_last)
    with torch.no_grad():
        y = norm(x)
        want = F.group_norm(x.contiguous(), groups, norm.weight, norm.bias, norm.eps)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-5)


@contextlib.contextmanager
def cnn_flags(**flags):
    """Set vpt_agent.layers' CUDA kernel switches for a block, restoring them after."""
    from vpt_agent import layers

    saved = {name: getattr(layers, name) for name in flags}
    for name, value in flags.items():
        setattr(layers, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(layers, name, value)


ALL_CUDA_PATHS_OFF = dict(FEW_CHANNEL_CONV_AS_MATMUL=False, TRITON_CUDA_POOL=False, FUSED_CUDA_CONV_RELU=False,
                          TRITON_CUDA_CONV_POOL=False, TRITON_CUDA_GROUP_NORM=False)


def test_first_conv_matmul_path_on_cuda():
    """The bf16/fp16 CUDA path of the encoder's 3-channel first convolution (one matrix product): channels-last
    out, as close to F.conv2d as cuDNN's own bf16 kernel; fp32 keeps cuDNN's kernel."""
    from torch.nn import functional as F

    from vpt_agent import layers

    with no_tf32(), torch.inference_mode():
        conv = layers.Conv2d(3, 32, 3, padding=1).cuda().to(memory_format=torch.channels_last)
        x = torch.rand(4, 20, 24, 3, device="cuda").permute(0, 3, 1, 2)
        want = F.conv2d(x, conv.weight, conv.bias, padding=1)
        torch.testing.assert_close(layers.conv3x3_as_matmul(x, conv.weight, conv.bias), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(conv(x), want, rtol=1e-5, atol=1e-5)
        conv = conv.bfloat16()
        xb = x.bfloat16()
        with cnn_flags(FEW_CHANNEL_CONV_AS_MATMUL=True):
            ours = conv(xb)
        with cnn_flags(FEW_CHANNEL_CONV_AS_MATMUL=False):
            cudnn = conv(xb)
        assert ours.is_contiguous(memory_format=torch.channels_last)
        assert (ours.float() - want).abs().max() <= 2 * (cudnn.float() - want).abs().max() + 1e-2
        assert not torch.equal(ours, cudnn)  # the product path did run


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_pool_and_fused_conv_relu_on_cuda(dtype):
    """The Triton max-pool (+ ReLU) equals PyTorch's pool then ReLU bit for bit, for B=1 and B=3 and odd sizes,
    channels-last kept; cuDNN's fused convolution + ReLU equals the convolution then ReLU (TF32 off), channels-last
    kept; with autograd on, both take PyTorch's own kernels."""
    from torch.nn import functional as F

    from vpt_agent import layers

    with no_tf32(), torch.inference_mode():
        for batch in (1, 3):
            x = torch.randn(batch, 16, 13, 10, device="cuda", dtype=dtype).to(memory_format=torch.channels_last)
            for relu in (False, True):
                want = F.max_pool2d(x, 3, 2, 1)
                want = F.relu(want) if relu else want
                got = layers.max_pool3x3s2(x, relu=relu)
                assert torch.equal(got, want) and got.is_contiguous(memory_format=torch.channels_last), (batch, relu)
        assert layers.TRITON_CUDA_POOL  # it ran, and did not fall back
        nan = x.clone()
        nan[0, 3, 4, 5] = float("nan")
        assert torch.equal(layers.max_pool3x3s2(nan).isnan(), F.max_pool2d(nan, 3, 2, 1).isnan())
        conv = layers.Conv2d(16, 24, 3, padding=1, bias=False).cuda().to(dtype, memory_format=torch.channels_last)
        fused = conv(x, relu=True)
        with cnn_flags(FUSED_CUDA_CONV_RELU=False):
            plain = conv(x, relu=True)
        assert fused.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(fused, plain, rtol=1e-5 if dtype == torch.float32 else 1e-2, atol=1e-5)
    conv = layers.Conv2d(16, 24, 3, padding=1, bias=False).cuda().to(dtype, memory_format=torch.channels_last)
    leaf = x.detach().clone().requires_grad_()  # outside inference mode: a tensor autograd may save
    layers.max_pool3x3s2(conv(leaf, relu=True), relu=True).float().sum().backward()
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0


@pytest.mark.parametrize("triton", [False, True], ids=["default", "triton-conv-pool-and-gn"])
def test_encoder_with_this_rounds_cuda_paths_equals_pytorchs_kernels(triton):
    """The whole encoder of the golden model with the CUDA paths on (matrix-product first conv in bf16, Triton
    pool + ReLU, fused conv + ReLU; and the Triton first conv + pool and GroupNorm) equals the one with PyTorch's
    kernels only."""
    with no_tf32(), torch.inference_mode():
        for dtype in ("float32", "bfloat16"):
            agent = _agent(dtype=dtype)
            frames = agent._frames([{"pov": make_obs(90 + i, 0)} for i in range(3)]).cuda()
            with cnn_flags(TRITON_CUDA_CONV_POOL=triton, TRITON_CUDA_GROUP_NORM=triton):
                fast = agent.policy.net.encode(frames).float()
                assert layers_flags("TRITON_CUDA_CONV_POOL", "TRITON_CUDA_GROUP_NORM") == (triton, triton)
            with cnn_flags(**ALL_CUDA_PATHS_OFF):
                plain = agent.policy.net.encode(frames).float()
            diff = (fast - plain).abs()
            if dtype == "float32":
                assert diff.max() < 1e-5, diff.max()
            else:  # bf16: another rounding of the first conv's sums, carried through the CNN (2.2% measured)
                assert diff.mean() < 0.05 * plain.abs().mean() and diff.max() < 0.25, (diff.mean(), diff.max())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_group_norm_on_cuda(dtype):
    """The Triton GroupNorm (``layers.TRITON_CUDA_GROUP_NORM``) against a float64 reference:
    fp32 to 1e-5, bf16 no further off than PyTorch's own bf16 group_norm (+ half a bf16 step), channels-last out."""
    from torch.nn import functional as F

    from vpt_agent import triton_norm

    torch.manual_seed(2)
    with torch.inference_mode():
        for n, c, h, w, groups in [(1, 64, 64, 64, 1), (3, 12, 33, 35, 3), (2, 8, 1, 1, 4)]:
            x = (torch.randn(n, c, h, w, device="cuda") * 3 + 5).to(dtype).to(memory_format=torch.channels_last)
            weight, bias = torch.randn(c, device="cuda"), torch.randn(c, device="cuda")
            want = F.group_norm(x.double(), groups, weight.double(), bias.double(), 1e-5)
            got = triton_norm.group_norm(x, groups, weight, bias, 1e-5)
            assert got.is_contiguous(memory_format=torch.channels_last) and got.dtype == dtype
            err = (got.double() - want).abs().max()
            if dtype == torch.float32:
                assert err < 1e-5 * want.abs().max(), err
            else:
                torchs = (F.group_norm(x, groups, weight.to(dtype), bias.to(dtype), 1e-5).double() - want).abs().max()
                assert err <= torchs + want.abs().max() * 2 ** -9, (err, torchs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_conv_pool_on_cuda(dtype):
    """The first stack's convolution + bias + max-pool + ReLU as one Triton kernel (``layers.TRITON_CUDA_CONV_POOL``)
    against float64 PyTorch ops: fp32 (TF32 off) to 1e-5, bf16 no further off than the unfused bf16 path (+ half a
    bf16 step); channels-last out; with autograd on, the unfused path runs."""
    from torch.nn import functional as F

    from vpt_agent import layers

    torch.manual_seed(3)
    for batch, c_out, h, w in [(1, 64, 128, 128), (3, 24, 13, 10), (2, 16, 1, 1)]:
        layer = layers.NormedLayer.conv3x3(3, c_out, None).cuda().to(dtype, memory_format=torch.channels_last)
        with torch.no_grad():
            layer.layer.bias.normal_()
        x = torch.rand(batch, h, w, 3, device="cuda").to(dtype).permute(0, 3, 1, 2)  # channels-last frames
        conv = layer.layer
        want = F.relu(F.max_pool2d(F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1), 3, 2, 1))
        with no_tf32(), torch.inference_mode():
            with cnn_flags(TRITON_CUDA_CONV_POOL=True):
                got = layers.conv_max_pool3x3s2(layer, x)
                assert layers.TRITON_CUDA_CONV_POOL  # it ran, and did not fall back
            with cnn_flags(TRITON_CUDA_CONV_POOL=False):
                unfused = layers.conv_max_pool3x3s2(layer, x)
        assert got.is_contiguous(memory_format=torch.channels_last) and got.dtype == dtype and got.shape == want.shape
        err = (got.double() - want).abs().max()
        if dtype == torch.float32:
            assert err < 1e-5 * (1 + want.abs().max()), err
        else:
            assert err <= (unfused.double() - want).abs().max() + want.abs().max() * 2 ** -9, err
    with cnn_flags(TRITON_CUDA_CONV_POOL=True):
        assert layers.conv_max_pool3x3s2(layer.float(), x.float()).requires_grad  # autograd: PyTorch's kernels


def layers_flags(*names):
    from vpt_agent import layers

    return tuple(getattr(layers, name) for name in names)


def test_trainable_layers_after_a_frozen_one_get_gradients_on_cuda():
    """A frozen first stack feeds the second stack an input that needs no gradient; its GroupNorm and fused
    convolutions still have trainable parameters, so they must take PyTorch's kernels (no backward otherwise)."""
    agent = _agent()
    net = agent.policy.net
    frozen, trained = net.img_process.cnn.stacks[0], net.img_process.cnn.stacks[1]
    frozen.requires_grad_(False)
    frames = agent._frames([{"pov": make_obs(7, 0)}]).cuda()
    net.encode(frames).float().sum().backward()
    grads = [p.grad for p in trained.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_triton_pool_falls_back_to_pytorch_with_a_warning(monkeypatch, caplog):
    from torch.nn import functional as F

    from vpt_agent import layers, triton_pool

    def broken(x, relu):
        raise RuntimeError("no triton here")

    monkeypatch.setattr(triton_pool, "max_pool3x3s2_relu", broken)
    monkeypatch.setattr(layers, "TRITON_CUDA_POOL", True)
    x = torch.randn(2, 4, 6, 6, device="cuda")
    with torch.inference_mode(), caplog.at_level("WARNING", logger="vpt_agent.layers"):
        got = layers.max_pool3x3s2(x, relu=True)
    assert torch.equal(got, F.relu(F.max_pool2d(x, 3, 2, 1))) and not layers.TRITON_CUDA_POOL
    assert "no triton here" in caplog.text


def test_triton_conv_pool_falls_back_to_pytorch_with_a_warning(monkeypatch, caplog):
    from vpt_agent import layers, triton_conv_pool

    def broken(*args):
        raise RuntimeError("no triton here")

    monkeypatch.setattr(triton_conv_pool, "conv3x3_max_pool", broken)
    monkeypatch.setattr(layers, "TRITON_CUDA_CONV_POOL", True)
    layer = layers.NormedLayer.conv3x3(3, 8, None).cuda()
    x = torch.rand(2, 3, 9, 7, device="cuda")
    with torch.inference_mode(), caplog.at_level("WARNING", logger="vpt_agent.layers"):
        got = layers.conv_max_pool3x3s2(layer, x)
        want = layers.max_pool3x3s2(layer(x, relu=False), relu=True)
    assert torch.equal(got, want) and not layers.TRITON_CUDA_CONV_POOL
    assert "no triton here" in caplog.text


def test_overlapping_steps_of_two_agents_equal_sequential_steps():
    """The evaluator's pipelined groups: two agents' steps queued on their own streams before either is read
    back give the actions that one step after the other gives."""
    with no_tf32():
        queued, plain = [_agent(seed=1), _agent(seed=2)], [_agent(seed=1), _agent(seed=2)]
        for t in range(12):
            obs = [[{"pov": make_obs(50, t)}, {"pov": make_obs(51, t)}], [{"pov": make_obs(52, t)}]]
            first = [[t == 0] * 2, [t == 0]]
            pending = [agent.submit(o, f, deterministic=t % 2 == 0) for agent, o, f in zip(queued, obs, first)]
            got = [p.joint() for p in reversed(pending)][::-1]
            for (buttons, camera), agent, o, f in zip(got, plain, obs, first):
                want = agent.act(o, f, deterministic=t % 2 == 0)
                assert np.array_equal(buttons, want.buttons) and np.array_equal(camera, want.camera), t


def test_engines_capture_on_their_own_streams_and_overlap_with_a_shared_network():
    """The evaluator's groups: agents sharing one network, each graph captured on its own stream (a shared
    capture stream would give all graphs one cuBLAS workspace), steps overlapping, same actions as one agent."""
    with no_tf32():
        first = _agent(seed=3)
        second = VPTAgent(first.policy, device="cuda", seed=3)
        alone = _agent(seed=3)
        for t in range(6):
            obs = [{"pov": make_obs(60 + i, t)} for i in range(3)]
            pending = [agent.submit(obs, [t == 0] * 3, deterministic=True) for agent in (first, second)]
            got = [p.joint() for p in pending]
            want = alone.act(obs, [t == 0] * 3, deterministic=True)
            for buttons, camera in got:
                assert np.array_equal(buttons, want.buttons) and np.array_equal(camera, want.camera), t
    streams = {agent._engine._capture_stream.cuda_stream for agent in (first, second, alone)}
    assert len(streams) == 3


def test_siblings_queue_on_one_stream_and_equal_separate_agents():
    """The evaluator's pipelined groups: ``sibling`` agents share the network and the CUDA stream; steps submitted
    back to back (the second before the first is read) give what independent agents give."""
    with no_tf32():
        first = _agent(seed=3)
        second = first.sibling(seed=3)
        assert second._stream is first._stream and second.policy is first.policy
        alone = _agent(seed=3)
        for t in range(6):
            obs = [{"pov": make_obs(70 + i, t)} for i in range(2)]
            pending = [agent.submit(obs, [t == 0] * 2, deterministic=True) for agent in (first, second)]
            want = alone.act(obs, [t == 0] * 2, deterministic=True)
            for p in reversed(pending):  # read in the other order: neither waits on the host for the other
                buttons, camera = p.joint()
                assert np.array_equal(buttons, want.buttons) and np.array_equal(camera, want.camera), t
