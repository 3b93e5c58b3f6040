"""Conversion of .weights (torch pickle) to .safetensors: same tensors, same agent outputs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SMALL_MODEL, SMALL_WEIGHTS, make_obs
from safetensors import safe_open
from safetensors.torch import load_file

from vpt_agent import VPTAgent
from vpt_agent.convert import ConversionError, convert, main

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def converted(tmp_path) -> Path:
    return convert(SMALL_WEIGHTS, tmp_path / "small.safetensors", model_in=SMALL_MODEL)


def test_round_trip_has_identical_tensors(converted):
    original = torch.load(SMALL_WEIGHTS, map_location="cpu", weights_only=True)
    loaded = load_file(str(converted))
    assert set(loaded) == set(original)
    for name, tensor in original.items():
        assert loaded[name].dtype == tensor.dtype, name
        assert loaded[name].shape == tensor.shape, name
        assert torch.equal(loaded[name], tensor), name
    assert loaded["value_head.normalizer.debiasing_term"].dim() == 0


def test_config_copied_next_to_output(converted):
    assert converted.with_suffix(".model").read_bytes() == SMALL_MODEL.read_bytes()
    with safe_open(str(converted), framework="pt") as f:
        assert f.metadata()["source"] == SMALL_WEIGHTS.name


def test_config_defaults_to_input_stem(tmp_path):
    weights = tmp_path / "in.weights"
    weights.write_bytes(SMALL_WEIGHTS.read_bytes())
    (tmp_path / "in.model").write_bytes(SMALL_MODEL.read_bytes())
    out = convert(weights, tmp_path / "out" / "out.safetensors")
    assert (tmp_path / "out" / "out.model").read_bytes() == SMALL_MODEL.read_bytes()
    assert set(load_file(str(out))) == set(torch.load(weights, weights_only=True))


def test_non_contiguous_and_shared_tensors(tmp_path):
    base = torch.arange(12.0).reshape(3, 4)
    state = {"t": base.t(), "a": base, "view": base[1], "scalar": torch.tensor(2.5)}
    path = tmp_path / "odd.weights"
    torch.save(state, path)
    loaded = load_file(str(convert(path, tmp_path / "odd.safetensors")))
    for name, tensor in state.items():
        assert torch.equal(loaded[name], tensor), name


def test_converted_and_original_give_identical_agent_outputs(converted):
    agents = [VPTAgent.from_files(SMALL_MODEL, w, device="cpu", seed=3) for w in (SMALL_WEIGHTS, converted)]
    for a, b in zip(agents[0].policy.state_dict().values(), agents[1].policy.state_dict().values()):
        assert torch.equal(a, b)
    for t in range(4):
        obs = {"pov": make_obs(7, t)}
        steps = [agent.act([obs], [t == 0]) for agent in agents]
        np.testing.assert_array_equal(steps[0].logp_buttons, steps[1].logp_buttons)
        np.testing.assert_array_equal(steps[0].logp_camera, steps[1].logp_camera)
        np.testing.assert_array_equal(steps[0].value, steps[1].value)
        assert steps[0].actions[0].keys() == steps[1].actions[0].keys()
        for key, value in steps[0].actions[0].items():
            np.testing.assert_array_equal(value, steps[1].actions[0][key])


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(ConversionError, match="not found"):
        convert(tmp_path / "nope.weights", tmp_path / "out.safetensors")


def test_not_a_state_dict_is_a_clear_error(tmp_path):
    for payload in ([torch.zeros(2)], {"a": 1}, {}):
        path = tmp_path / "bad.weights"
        torch.save(payload, path)
        with pytest.raises(ConversionError, match="state dict"):
            convert(path, tmp_path / "out.safetensors")
    (tmp_path / "junk.weights").write_bytes(b"not a torch file")
    with pytest.raises(ConversionError, match="junk.weights"):
        convert(tmp_path / "junk.weights", tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_bad_config_and_output_name(tmp_path):
    with pytest.raises(ConversionError, match="model config not found"):
        convert(SMALL_WEIGHTS, tmp_path / "o.safetensors", model_in=tmp_path / "missing.model")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"garbage")
    with pytest.raises(ConversionError, match="not a valid .model"):
        convert(SMALL_WEIGHTS, tmp_path / "o.safetensors", model_in=bad)
    with pytest.raises(ConversionError, match=".safetensors"):
        convert(SMALL_WEIGHTS, tmp_path / "o.pt")


def test_an_existing_other_config_beside_the_output_is_not_replaced(tmp_path, capsys):
    out = tmp_path / "small.safetensors"
    (tmp_path / "small.model").write_bytes(b"the config of other weights")
    with pytest.raises(ConversionError, match="small.model exists and differs"):
        convert(SMALL_WEIGHTS, out, model_in=SMALL_MODEL)
    assert (tmp_path / "small.model").read_bytes() == b"the config of other weights" and not out.exists()
    (tmp_path / "small.model").write_bytes(SMALL_MODEL.read_bytes())  # the same config: nothing to lose
    assert convert(SMALL_WEIGHTS, out, model_in=SMALL_MODEL) == out
    with pytest.raises(SystemExit) as exit_info:
        main(["--bogus", str(SMALL_WEIGHTS), str(out)])
    assert exit_info.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli.safetensors"
    done = subprocess.run([sys.executable, "-m", "vpt_agent.convert", str(SMALL_WEIGHTS), str(out),
                           "--model", str(SMALL_MODEL)], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert out.is_file() and out.with_suffix(".model").is_file()
    assert main([str(tmp_path / "missing.weights"), str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: weights file not found") and err.count("\n") == 1


@pytest.mark.parametrize("kind", ["sparse", "meta", "quantized"])
def test_unusable_tensors_are_one_line_errors(tmp_path, kind):
    bad = {"sparse": torch.zeros(2, 3).to_sparse(), "meta": torch.empty(2, 3, device="meta"),
           "quantized": torch.quantize_per_tensor(torch.ones(2, 3), 0.1, 0, torch.qint8)}[kind]
    path = tmp_path / "odd.weights"
    torch.save({"ok": torch.zeros(2), "bad.weight": bad}, path)
    with pytest.raises(ConversionError, match=r"bad\.weight") as info:
        convert(path, tmp_path / "out.safetensors")
    assert "\n" not in str(info.value) and kind.split("_")[0] in str(info.value)
    assert list(tmp_path.iterdir()) == [path]  # nothing written


def test_directory_output_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "out.safetensors"
    out.mkdir()
    with pytest.raises(ConversionError, match="is a directory"):
        convert(SMALL_WEIGHTS, out, model_in=SMALL_MODEL)
    (tmp_path / "o.safetensors").write_bytes(b"")
    (tmp_path / "o.model").mkdir()  # the config copy's target
    assert main([str(SMALL_WEIGHTS), str(tmp_path / "o.safetensors"), "--model", str(SMALL_MODEL)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: output") and "is a directory" in err and err.count("\n") == 1


def test_unwritable_output_leaves_no_temp_file(tmp_path):
    parent = tmp_path / "file"
    parent.write_text("x")  # a file where a directory is needed
    with pytest.raises(ConversionError, match="cannot write"):
        convert(SMALL_WEIGHTS, parent / "out.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_idm_config_is_copied(tmp_path):
    """convert only checks a config's structure, so an IDM .model (not a policy config) is accepted."""
    import pickle

    idm = tmp_path / "4x_idm.model"
    idm.write_bytes(pickle.dumps({"model": {"args": {"net": {"args": {"img_shape": [128, 128, 128]}}}}}))
    out = convert(SMALL_WEIGHTS, tmp_path / "4x_idm.safetensors", model_in=idm)
    assert out.with_suffix(".model").read_bytes() == idm.read_bytes()
