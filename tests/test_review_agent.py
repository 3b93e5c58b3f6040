"""VPTAgent as a drop-in for the official ``MineRLAgent``, on the observations a real MineRL 1.0 env returns and on
other general inputs (tests/data/golden_agent_review.npz, made by running the official agent with
tests/data/make_golden_agent_review.py)."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, SMALL_MODEL, SMALL_WEIGHTS
from vpt_agent import VPTAgent
from vpt_agent.action_mapping import MINERL_ACTION_KEYS, NEVER_PRESSED

FAKE_DIR = Path(__file__).parent / "fake_minerl"


def _generator():
    spec = importlib.util.spec_from_file_location("make_golden_agent_review", DATA / "make_golden_agent_review.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()


@pytest.fixture(scope="module")
def review():
    g = dict(np.load(DATA / "golden_agent_review.npz"))
    g["button_names"] = g["button_names"].tolist()
    return g


@pytest.fixture(scope="module")
def observations():
    return [GEN.observation(t) for t in range(GEN.STEPS)]


def _rollout(agent, observations, deterministic):
    actions = []
    for t, obs in enumerate(observations):
        if t == GEN.RESET_AT:
            agent.reset()
        actions.append(agent.get_action(obs, deterministic=deterministic))
    return actions


def _assert_same_actions(ours, review, mode):
    names = review["button_names"]
    for t, action in enumerate(ours):
        assert [action[k] for k in names] == review[f"{mode}_buttons"][t].tolist(), t
        assert all(action[k] == 0 for k in NEVER_PRESSED), t
        np.testing.assert_allclose(action["camera"], review[f"{mode}_camera"][t], rtol=1e-6, atol=1e-6,
                                   err_msg=f"step {t}")


def test_the_observations_cover_what_the_review_needs(observations, review):
    """MineRL's flipped read-only view with all its keys, other sizes, strided and float povs, varied actions."""
    first = observations[0]
    assert first["pov"].strides[0] < 0 and not first["pov"].flags.writeable and "life_stats" in first
    kinds = {(o["pov"].dtype.name, o["pov"].flags.c_contiguous, o["pov"].shape[:2] == (360, 640))
             for o in observations}
    assert {("uint8", False, True), ("uint8", True, False), ("float32", True, True), ("float64", True, False)} <= kinds
    assert min(o["pov"].size for o in observations) == 3  # a one-pixel frame
    assert len(set(review["det_joint"][:, 0].tolist())) >= 5
    assert (review["det_joint"][:, 1] != 60).sum() > 10


def test_argmax_rollout_equals_the_official_agent(observations, review):
    """240 steps (the 8-frame memory wraps 30 times), reset() at step 130: every action dict equal."""
    agent = VPTAgent.from_files(SMALL_MODEL, SMALL_WEIGHTS, device="cpu")
    _assert_same_actions(_rollout(agent, observations, deterministic=True), review, "det")


def test_sampled_rollout_equals_the_official_agent(observations, review):
    """``VPTAgent(seed=s)`` samples what ``MineRLAgent.get_action`` samples after ``torch.manual_seed(s)``
    (called once the official agent is built), across a reset()."""
    agent = VPTAgent.from_files(SMALL_MODEL, SMALL_WEIGHTS, device="cpu", seed=int(review["seed"]))
    _assert_same_actions(_rollout(agent, observations, deterministic=False), review, "sto")
    assert len({tuple(r) for r in review["sto_buttons"].tolist()}) > len(set(review["det_joint"][:, 0].tolist()))


def _official_action(review, mode, t):
    """The official dict as ``get_action`` returns it: 20 buttons of shape (1,) int64, camera (1, 2) float64."""
    action = {k: np.array([v]) for k, v in zip(review["button_names"], review[f"{mode}_buttons"][t].tolist())}
    action["camera"] = review[f"{mode}_camera"][t][None]
    return action


def test_official_action_dicts_are_accepted_by_our_adapter(review):
    """Batch dims squeezed, the three keys the official dict lacks released, the camera kept (as float32)."""
    from vpt_envs.actions import fill_action

    for t in range(0, GEN.STEPS, 7):
        filled = fill_action(_official_action(review, "sto", t), strict=True)
        assert sorted(filled) == sorted(MINERL_ACTION_KEYS)
        assert [filled[k] for k in review["button_names"]] == review["sto_buttons"][t].tolist()
        assert all(filled[k] == 0 for k in NEVER_PRESSED)
        np.testing.assert_array_equal(filled["camera"], review["sto_camera"][t].astype(np.float32))


@pytest.fixture
def minerl_wire(monkeypatch):
    """MineRL's action formatting and the Java side's parse, as tests/fake_minerl emulates them."""
    for name in [n for n in sys.modules if n == "minerl" or n.startswith("minerl.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(FAKE_DIR))
    from minerl.env import _singleagent

    def send(action):
        command = "\n".join(f"{key} {_singleagent._to_hero(value)}" for key, value in action.items())
        return _singleagent._java_parse(command)

    yield send
    for name in [n for n in sys.modules if n == "minerl" or n.startswith("minerl.")]:
        del sys.modules[name]


def test_our_and_the_official_actions_mean_the_same_to_minerl(observations, review, minerl_wire):
    """Sent to MineRL as they are: Java parses both (integer buttons) into the same keys and camera."""
    agent = VPTAgent.from_files(SMALL_MODEL, SMALL_WEIGHTS, device="cpu")
    for t, action in enumerate(_rollout(agent, observations[:60], deterministic=True)):
        ours, official = minerl_wire(action), minerl_wire(_official_action(review, "det", t))
        assert sorted(ours) == sorted(MINERL_ACTION_KEYS)
        assert {k: ours[k] for k in official if k != "camera"} == {k: v for k, v in official.items() if k != "camera"}
        np.testing.assert_allclose(ours["camera"], official["camera"], rtol=1e-6, atol=1e-6)


def test_every_public_name_resolves():
    """``from vpt_agent import X`` works for every name the package exports (preprocess_pov was missing)."""
    import vpt_agent

    for name in vpt_agent.__all__:
        assert getattr(vpt_agent, name) is not None, name
    from vpt_agent import preprocess_pov

    assert preprocess_pov({"pov": np.zeros((4, 6, 3), np.uint8)}, (2, 3)).shape == (2, 3, 3)


@pytest.mark.parametrize("pov, match", [
    (np.zeros((8, 8, 3), np.float16), "float16"),
    (np.zeros((8, 8, 3), np.int32), "int32"),
    (np.zeros((8, 8, 3), bool), "bool"),
    (np.full((8, 8, 3), np.inf, np.float32), "finite"),
    (np.full((8, 8, 3), np.nan, np.float64), "finite"),
])
def test_povs_the_official_agent_cannot_use_either_are_refused_clearly(pov, match):
    """cv2.resize refuses float16, int32 and bool (the official agent crashes in it); NaN/inf give NaN logits."""
    agent = VPTAgent.from_files(SMALL_MODEL, SMALL_WEIGHTS, device="cpu")
    with pytest.raises(ValueError, match=match):
        agent.get_action({"pov": pov})


def test_a_batch_mixing_float_and_uint8_povs_resizes_each_in_its_own_dtype():
    """uint8 frames keep cv2's fixed-point resize; the batch becomes float32; the uint8-only callers (IDM,
    recordings) still refuse float povs."""
    from vpt_agent.frames import ObservationError, preprocess_batch, preprocess_pov

    rng = np.random.default_rng(3)
    u8 = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    f64 = u8.astype(np.float64) + 0.25
    batch = preprocess_batch([{"pov": u8}, {"pov": f64}], (16, 24), allow_float=True)
    assert batch.dtype == np.float32
    np.testing.assert_array_equal(batch[0], preprocess_pov({"pov": u8}, (16, 24)))
    import cv2

    resized = cv2.resize(f64, (24, 16), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(batch[1], resized.astype(np.float32))
    assert not np.array_equal(batch[1] - 0.25, batch[0])  # float resizing rounds differently: why it is kept
    with pytest.raises(ObservationError, match="uint8"):
        preprocess_pov({"pov": f64}, (16, 24))
    with pytest.raises(ObservationError, match="float32"):
        preprocess_batch([{"pov": f64}], (16, 24), out=np.zeros((1, 16, 24, 3), np.uint8), allow_float=True)
