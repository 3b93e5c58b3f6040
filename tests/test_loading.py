"""Weight and config loading: RL files, mismatch diagnosis, refusal of code-running pickles, corrupt files."""
import pickle
from collections import OrderedDict

import pytest
import torch

from conftest import SMALL_MODEL, SMALL_WEIGHTS
from vpt_agent import ModelFileError, VPTAgent, WeightsFileError, WeightsMismatchError, load_model_config
from vpt_agent.loading import read_state_dict


@pytest.fixture(scope="module")
def sd():
    return torch.load(SMALL_WEIGHTS, weights_only=True)


@pytest.fixture
def agent():
    return VPTAgent.from_config(SMALL_MODEL, device="cpu", seed=0)


def _save(tmp_path, sd, name="w.weights"):
    path = tmp_path / name
    torch.save(OrderedDict(sd), path)
    return path


def test_rl_file_loads_with_5_unexpected(agent, sd, caplog):
    with caplog.at_level("INFO", logger="vpt_agent.loading"):
        report = agent.load_weights(SMALL_WEIGHTS)
    assert report.missing_keys == []
    assert sorted(report.unexpected_keys) == sorted(k for k in sd if k.startswith("aux_value_head."))
    assert len(report.unexpected_keys) == 5
    assert "aux_value_head" in caplog.text
    for k, v in agent.policy.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_stripped_net_prefix_is_diagnosed(agent, sd, tmp_path):
    stripped = {k[4:] if k.startswith("net.") else k: v for k, v in sd.items()}
    before = {k: v.clone() for k, v in agent.policy.state_dict().items()}
    with pytest.raises(WeightsMismatchError, match=r"lack the 'net\.' prefix") as e:
        agent.load_weights(_save(tmp_path, stripped))
    n_net = sum(k.startswith("net.") for k in sd)
    assert f"{n_net} missing" in str(e.value) and f"{n_net + 5} unexpected" in str(e.value)
    # nothing was loaded: the policy is untouched
    for k, v in agent.policy.state_dict().items():
        assert torch.equal(v, before[k])


def test_added_and_module_prefixes_are_diagnosed(agent, sd, tmp_path):
    with pytest.raises(WeightsMismatchError, match=r"extra 'net\.' prefix"):
        agent.load_weights(_save(tmp_path, {"net." + k: v for k, v in sd.items()}))
    with pytest.raises(WeightsMismatchError, match=r"'module\.' prefix"):
        agent.load_weights(_save(tmp_path, {"module." + k: v for k, v in sd.items()}))


def test_wrong_model_size_lists_shapes(agent, sd, tmp_path):
    bigger = dict(sd)
    bigger["net.final_ln.weight"] = torch.ones(256)
    with pytest.raises(WeightsMismatchError, match=r"net\.final_ln\.weight: \(128,\) vs \(256,\)") as e:
        agent.load_weights(_save(tmp_path, bigger))
    assert "hidsize 256" in str(e.value)


def test_not_a_vpt_checkpoint(agent, tmp_path):
    with pytest.raises(WeightsMismatchError, match="not look like a VPT checkpoint"):
        agent.load_weights(_save(tmp_path, {"conv.weight": torch.zeros(3), "fc.bias": torch.zeros(2)}))


def test_missing_keys_raise_unless_allowed(agent, sd, tmp_path):
    partial = {k: v for k, v in sd.items() if not k.startswith("pi_head.")}
    path = _save(tmp_path, partial)
    with pytest.raises(WeightsMismatchError, match="4 missing"):
        agent.load_weights(path)
    report = agent.load_weights(path, allow_missing=True)
    assert sorted(report.missing_keys) == sorted(k for k in sd if k.startswith("pi_head."))


class _RunsCode:
    """A pickle payload that would create a file if it were ever unpickled with the full pickle module."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_code_running_weights_are_refused(agent, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.weights"
    torch.save({"net.final_ln.weight": _RunsCode(marker)}, path)
    with pytest.raises(WeightsFileError, match="refusing to load .*evil.weights"):
        agent.load_weights(path)
    assert not marker.exists()


def test_code_running_model_file_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.model"
    path.write_bytes(pickle.dumps({"model": {"args": {"net": {"args": _RunsCode(marker)}}}}))
    with pytest.raises(ModelFileError, match="refusing to load .*evil.model"):
        load_model_config(path)
    assert not marker.exists()


def test_truncated_and_garbage_files_name_the_file(tmp_path):
    data = SMALL_WEIGHTS.read_bytes()
    trunc = tmp_path / "trunc.weights"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsFileError, match="trunc.weights"):
        read_state_dict(trunc)
    with pytest.raises(WeightsFileError, match="not found"):
        read_state_dict(tmp_path / "nope.weights")
    model = tmp_path / "trunc.model"
    model.write_bytes(SMALL_MODEL.read_bytes()[:100])
    with pytest.raises(ModelFileError, match="trunc.model"):
        load_model_config(model)
    bad = tmp_path / "bad.model"
    bad.write_bytes(pickle.dumps({"model": {}}))
    with pytest.raises(ModelFileError, match="not a VPT .model"):
        load_model_config(bad)
    not_sd = tmp_path / "list.weights"
    torch.save([torch.zeros(1)], not_sd)
    with pytest.raises(WeightsFileError, match="not a state dict"):
        read_state_dict(not_sd)


def test_safetensors_gives_identical_weights(agent, sd, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "small.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    report = agent.load_weights(path)
    assert report.missing_keys == [] and len(report.unexpected_keys) == 5
    for k, v in agent.policy.state_dict().items():
        assert torch.equal(v, sd[k])


def test_model_config_parsed_from_plain_pickle():
    cfg = load_model_config(SMALL_MODEL)
    assert cfg.hidsize == 128 and cfg.attention_heads == 8 and cfg.maxlen == 8 and cfg.temperature == 2.0
