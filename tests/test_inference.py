"""The in-place ring-buffer engine (vpt_agent.inference) equals the eager ``VPTPolicy.forward`` path."""
import numpy as np
import pytest
import torch

from conftest import SMALL_MODEL, SMALL_WEIGHTS, make_obs
from test_golden_configs import _build, _compare, _config_names, _frame, _golden, _net_kwargs
from vpt_agent import VPTAgent
from vpt_agent.errors import VPTError
from vpt_agent.inference import StepEngine, cast_for_inference, supports


def _frames(agent, seeds, t):
    return agent._frames([{"pov": make_obs(s, t)} for s in seeds])


def test_engine_equals_eager_forward_over_a_wrapped_memory():
    """3 envs restarting at different steps, 3x the memory length: same log-probs, values and argmax."""
    agent = VPTAgent.from_files(SMALL_MODEL, SMALL_WEIGHTS, device="cpu")
    policy = agent.policy
    L = policy.cfg.maxlen
    starts = {0: {0, 5}, 1: {0, L + 3}, 2: {0, 2 * L + 1}}
    engine = StepEngine(policy, 3)
    with torch.inference_mode():
        state = policy.initial_state(3)
        for t in range(3 * L + 2):
            frames = _frames(agent, (30, 31, 32), t)
            first = torch.tensor([t in starts[i] for i in range(3)])
            want = policy(frames[:, None], first[:, None], state)
            state = want.state
            got = engine(frames, first)
            for k in ("camera", "buttons"):
                np.testing.assert_allclose(got.logp[k].numpy(), want.logp[k][:, 0].numpy(), atol=2e-5, err_msg=f"t={t}")
                assert got.logp[k].argmax(-1).tolist() == want.logp[k][:, 0].argmax(-1).tolist(), t
            np.testing.assert_allclose(got.value.numpy(), want.value[:, 0].numpy(), atol=2e-5)
    assert int(engine.pos) == (3 * L + 2) % L  # the write index wrapped around the ring


@pytest.mark.parametrize("name", [n for n in _config_names()
                                  if str(_golden(n)["mode"]) == "single"
                                  and _net_kwargs(_golden(n))["attention_mask_style"] == "clipped_causal"
                                  and _net_kwargs(_golden(n))["recurrence_type"] == "transformer"])
def test_engine_matches_official_golden_configs(name):
    """The engine on the official outputs of the extra configs (reset steps: first=True on the old memory)."""
    g = _golden(name)
    policy = _build(g)
    img_shape, obs_seed, resets = _net_kwargs(g)["img_shape"], int(g["obs_seed"]), set(g["reset_at"].tolist())
    engine = StepEngine(policy, 1)
    logp, values = {"camera": [], "buttons": []}, []
    with torch.inference_mode():
        for t in range(int(g["steps"])):
            out = engine(torch.from_numpy(_frame(obs_seed, t, img_shape))[None], torch.tensor([t in resets]))
            for k in logp:
                logp[k].append(out.logp[k][0].double().numpy())
            values.append(float(out.value[0]))
    _compare(name, g, {k: np.stack(v) for k, v in logp.items()}, np.array(values))


def test_mask_none_config_uses_the_eager_path():
    name = next(n for n in _config_names() if _net_kwargs(_golden(n))["attention_mask_style"] == "none")
    policy = _build(_golden(name))
    assert not supports(policy)
    with pytest.raises(NotImplementedError):
        StepEngine(policy, 1)
    agent = VPTAgent(policy, device="cpu")
    h, w = policy.cfg.img_shape[:2]
    agent.get_action({"pov": make_obs(1, 0)})
    assert agent._engine is None and agent._state is not None and agent._state[0].keys.shape[0] == 1


def test_engine_rejects_a_wrong_batch():
    agent = VPTAgent.from_files(SMALL_MODEL, SMALL_WEIGHTS, device="cpu")
    engine = StepEngine(agent.policy, 2)
    with pytest.raises(VPTError, match="steps 2 envs"):
        engine(_frames(agent, (1,), 0), torch.tensor([True]))
    with pytest.raises(ValueError, match="cuda_graph"):
        StepEngine(agent.policy, 1, cuda_graph=True)
    with pytest.raises(ValueError, match="cuda_graph"):
        VPTAgent.from_files(SMALL_MODEL, SMALL_WEIGHTS, device="cpu", cuda_graph=True)


def test_bf16_weights_are_converted_once_and_value_head_stays_fp32():
    agent = VPTAgent.from_files(SMALL_MODEL, SMALL_WEIGHTS, device="cpu", dtype="bfloat16")
    p = agent.policy
    assert p.net.recurrent_layer.blocks[0].r.orc_block.q_layer.weight.dtype == torch.bfloat16
    assert p.pi_head["buttons"].linear_layer.weight.dtype == torch.bfloat16
    assert p.value_head.linear.weight.dtype == torch.float32
    assert p.value_head.normalizer.debiasing_term.dtype == torch.float32
    st = agent.act([{"pov": make_obs(0, 0)}], [True])
    assert st.logp_buttons.dtype == np.float32 and np.isfinite(st.value).all()
    # the eager path runs on the bf16 weights as well (and reloading keeps them bf16)
    with torch.inference_mode():
        out = p(_frames(agent, (0,), 0)[:, None], torch.tensor([[True]]), p.initial_state(1))
    assert out.logp["buttons"].dtype == torch.float32
    agent.load_weights(SMALL_WEIGHTS)
    assert p.net.final_ln.weight.dtype == torch.bfloat16


def test_cast_for_inference_keeps_float32_a_no_op():
    agent = VPTAgent.from_files(SMALL_MODEL, SMALL_WEIGHTS, device="cpu")
    before = {k: v.clone() for k, v in agent.policy.state_dict().items()}
    cast_for_inference(agent.policy, torch.float32)
    after = agent.policy.state_dict()
    assert all(torch.equal(before[k], after[k]) and after[k].dtype == before[k].dtype for k in before)


@pytest.mark.parametrize("groups,affine", [(1, True), (2, True), (4, False)])
def test_channels_last_group_norm_equals_torch(groups, affine):
    """The CUDA layout-keeping GroupNorm (run here on CPU): equal to F.group_norm, and the layout is kept."""
    from torch.nn import functional as F

    from vpt_agent.layers import group_norm_channels_last

    torch.manual_seed(groups)
    x = (torch.randn(3, 8, 9, 13).relu() * 3 + 1).to(memory_format=torch.channels_last)
    w, b = (torch.randn(8), torch.randn(8)) if affine else (None, None)
    want = F.group_norm(x, groups, w, b, 1e-5)
    got = group_norm_channels_last(x, groups, w, b, 1e-5)
    assert got.is_contiguous(memory_format=torch.channels_last) and not got.is_contiguous()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # bf16: float32 statistics; as close to the float32 result as torch's own bf16 kernel
    xb = x.bfloat16()
    wb, bb = (w.bfloat16(), b.bfloat16()) if affine else (None, None)
    ours = (group_norm_channels_last(xb, groups, wb, bb, 1e-5).float() - want).abs().max()
    torchs = (F.group_norm(xb, groups, wb, bb, 1e-5).float() - want).abs().max()
    assert ours <= 2 * torchs + 1e-2


@pytest.mark.parametrize("channels,bias", [(3, True), (4, False), (1, True)])
def test_first_conv_as_matmul_equals_conv2d(channels, bias):
    """The CUDA path of the encoder's first convolution (run here on CPU): equal to F.conv2d, channels-last out,
    also with a channels-last weight (as the agent stores it); bf16 as close as torch's own bf16 conv."""
    from torch.nn import functional as F

    from vpt_agent.layers import conv3x3_as_matmul

    torch.manual_seed(channels)
    x = torch.rand(2, 11, 7, channels).permute(0, 3, 1, 2)  # frames arrive NHWC: a channels-last view
    w = torch.randn(16, channels, 3, 3).to(memory_format=torch.channels_last)
    b = torch.randn(16) if bias else None
    want = F.conv2d(x, w, b, padding=1)
    got = conv3x3_as_matmul(x, w, b)
    assert got.shape == want.shape and got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    xb, wb, bb = x.bfloat16(), w.bfloat16(), None if b is None else b.bfloat16()
    ours = (conv3x3_as_matmul(xb, wb, bb).float() - want).abs().max()
    torchs = (F.conv2d(xb, wb, bb, padding=1).float() - want).abs().max()
    assert ours <= 2 * torchs + 1e-2


def test_cpu_encoder_chunks_equal_one_call(monkeypatch):
    """On a CPU the image encoder runs in chunks of CPU_ENCODE_CHUNK frames; the features equal one big call."""
    from vpt_agent import policy as policy_module

    agent = VPTAgent.from_files(SMALL_MODEL, SMALL_WEIGHTS, device="cpu")
    frames = _frames(agent, range(9), 0)
    with torch.inference_mode():
        chunked = agent.policy.net.encode(frames)
        monkeypatch.setattr(policy_module, "CPU_ENCODE_CHUNK", 64)
        whole = agent.policy.net.encode(frames)
    assert policy_module.CPU_ENCODE_CHUNK == 64 and chunked.shape == whole.shape == (9, agent.config.hidsize)
    # oneDNN picks its conv algorithm by batch size: float32 summation order differs (~2e-5 on these weights)
    torch.testing.assert_close(chunked, whole, rtol=1e-4, atol=1e-4)


def test_channels_last_group_norm_gradients_equal_torch():
    """Training on CUDA runs channels-last too, so the layout-keeping GroupNorm must also differentiate right."""
    from torch.nn import functional as F

    from vpt_agent.layers import group_norm_channels_last

    torch.manual_seed(7)
    x = (torch.randn(2, 6, 5, 7) + 1).to(memory_format=torch.channels_last)
    w, b = torch.randn(6), torch.randn(6)
    upstream = torch.randn(2, 6, 5, 7)
    grads = []
    for fn in (F.group_norm, group_norm_channels_last):
        leaves = [t.clone().requires_grad_() for t in (x, w, b)]
        (fn(leaves[0], 2, leaves[1], leaves[2], 1e-5) * upstream).sum().backward()
        grads.append([leaf.grad for leaf in leaves])
    for want, got in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("first_conv_norm", [False, True])
def test_stack_pools_before_its_relu_bit_for_bit(dtype, first_conv_norm):
    """DownStack runs the max-pool before the first conv's ReLU (on the 4x smaller tensor): outputs and gradients
    are exactly those of the official order, conv -> ReLU -> pool, for odd sizes (padded windows) too."""
    from torch.nn import functional as F

    from vpt_agent.impala import DownStack

    torch.manual_seed(3)
    stack = DownStack(5, 8, 1, norm_groups=1, first_conv_norm=first_conv_norm, post_pool_groups=1).to(dtype)
    x = torch.randn(3, 5, 9, 7, dtype=dtype).to(memory_format=torch.channels_last)

    def official_order(x):
        y = F.max_pool2d(stack.firstconv(x), kernel_size=3, stride=2, padding=1)
        y = stack.n(y)
        for block in stack.blocks:
            y = block(y)
        return y

    outs, grads = [], []
    for fn in (stack, official_order):
        leaf = x.clone().requires_grad_()
        out = fn(leaf)
        out.float().square().sum().backward()
        outs.append(out.detach())
        grads.append(leaf.grad)
    assert torch.equal(outs[0], outs[1]) and torch.equal(grads[0], grads[1])
    assert (outs[0] != 0).any()
