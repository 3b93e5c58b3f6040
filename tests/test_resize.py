"""Pre-processing: the torch resize is bit-exact with cv2; the batched (threaded) resize equals the single one."""
import cv2
import numpy as np
import pytest
import torch

from conftest import make_obs
from vpt_agent import frames as frames_mod
from vpt_agent.errors import VPTError
from vpt_agent.frames import ObservationError, preprocess_batch, preprocess_pov
from vpt_agent.resize import resize_linear_u8

IN_SIZES = [(360, 640), (720, 1280), (64, 100), (256, 256), (128, 129), (1, 1), (2, 3), (500, 37), (97, 1000)]
OUT_SIZES = [(128, 128), (64, 96), (37, 53), (200, 300)]


@pytest.mark.parametrize("in_hw", IN_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_torch_resize_is_bit_exact_with_cv2(in_hw):
    rng = np.random.default_rng(in_hw[0] * 7919 + in_hw[1])
    imgs = rng.integers(0, 256, (2, *in_hw, 3), dtype=np.uint8)
    for h, w in OUT_SIZES:
        got = resize_linear_u8(torch.from_numpy(imgs), (h, w)).numpy()
        for i in range(len(imgs)):
            want = cv2.resize(imgs[i], (w, h), interpolation=cv2.INTER_LINEAR)
            assert np.array_equal(got[i], want), f"{in_hw} -> {(h, w)}: {(got[i] != want).sum()} pixels differ"


def test_torch_resize_differs_from_float_bilinear():
    """The fixed-point arithmetic matters: a float bilinear resize is not what the models were trained on."""
    img = make_obs(0, 0)
    exact = resize_linear_u8(torch.from_numpy(img)[None], (128, 128))[0].permute(2, 0, 1).float()
    fl = torch.nn.functional.interpolate(torch.from_numpy(img).permute(2, 0, 1)[None].float(), (128, 128),
                                         mode="bilinear", align_corners=False)[0].round()
    assert (exact != fl).float().mean() > 0.01


def test_torch_resize_rejects_other_dtypes_and_keeps_matching_sizes():
    with pytest.raises(ValueError, match="uint8"):
        resize_linear_u8(torch.zeros(1, 4, 4, 3), (2, 2))
    x = torch.zeros(2, 128, 128, 3, dtype=torch.uint8)
    assert resize_linear_u8(x, (128, 128)) is x


@pytest.mark.parametrize("batch", [1, frames_mod.PARALLEL_MIN_BATCH + 3])
def test_batch_preprocessing_equals_single(batch):
    shapes = [(360, 640, 3), (128, 128, 3), (64, 100, 3)]
    rng = np.random.default_rng(batch)
    obs = [{"pov": rng.integers(0, 256, shapes[i % 3], dtype=np.uint8)} for i in range(batch)]
    out = np.full((batch, 128, 128, 3), 7, dtype=np.uint8)
    got = preprocess_batch(obs, (128, 128), out=out)
    assert got is out
    for i in range(batch):
        assert np.array_equal(got[i], preprocess_pov(obs[i], (128, 128))), i


@pytest.mark.parametrize("resize_one", [False, True])
def test_large_batches_copy_in_this_thread_and_resize_in_the_pool(resize_one, monkeypatch):
    """Frames already at the model's size are copied in the calling thread; a batch with one frame to resize goes
    to the pool. Every frame lands in its slot, whatever the mapping or array type (an OrderedDict, an ndarray
    subclass, a non-contiguous view)."""
    import collections

    batch = 300
    rng = np.random.default_rng(batch)
    base = rng.integers(0, 256, (batch, 128, 256, 3), dtype=np.uint8)
    povs = [base[i, :, ::2] if i % 7 == 0 else np.ascontiguousarray(base[i, :, :128]) for i in range(batch)]
    povs[3] = povs[3].view(type("Frame", (np.ndarray,), {}))  # a subclass: not the fast path, still accepted
    if resize_one:
        povs[5] = rng.integers(0, 256, (64, 100, 3), dtype=np.uint8)
    obs = [collections.OrderedDict(pov=p) if i % 5 == 0 else {"pov": p} for i, p in enumerate(povs)]
    pools = []
    real_pool = frames_mod._thread_pool
    monkeypatch.setattr(frames_mod, "_thread_pool", lambda: pools.append(1) or real_pool())
    got = preprocess_batch(obs, (128, 128))
    for i in range(batch):
        assert np.array_equal(got[i], preprocess_pov(obs[i], (128, 128))), i
    assert len(pools) == int(resize_one)


def test_batch_preprocessing_validates_everything_before_writing():
    out = np.zeros((9, 128, 128, 3), dtype=np.uint8)
    obs = [{"pov": make_obs(0, 0)}] * 8 + [{"pov": np.zeros((10, 10), dtype=np.uint8)}]
    with pytest.raises(ObservationError, match=r"\(H, W, 3\)") as err:
        preprocess_batch(obs, (128, 128), out=out)
    assert isinstance(err.value, VPTError) and isinstance(err.value, ValueError)
    assert not out.any()
    with pytest.raises(ValueError, match="out must be"):
        preprocess_batch(obs[:2], (128, 128), out=np.zeros((3, 128, 128, 3), dtype=np.uint8))


def test_batch_preprocessing_is_check_then_resize():
    """What the agent calls: check_batch validates every observation (returning the very pov arrays), resize_batch
    writes them; together they are preprocess_batch. A bad observation fails in check_batch, a wrong out in
    resize_batch, each with its one-line error."""
    from vpt_agent.frames import check_batch, resize_batch

    obs = [{"pov": make_obs(1, t)} for t in range(3)] + [{"pov": np.zeros((128, 128, 3), np.uint8)}]
    povs = check_batch(obs)
    assert all(p is o["pov"] for p, o in zip(povs, obs))
    assert np.array_equal(resize_batch(povs, (128, 128)), preprocess_batch(obs, (128, 128)))
    with pytest.raises(ObservationError, match="dtype float16"):
        check_batch(obs + [{"pov": np.zeros((4, 4, 3), np.float16)}], allow_float=True)
    with pytest.raises(ObservationError, match="out must be a C-contiguous uint8 array of shape"):
        resize_batch(povs, (128, 128), out=np.zeros((4, 128, 128, 3), np.float32))
