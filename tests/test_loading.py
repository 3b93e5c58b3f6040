"""Weight and config loading: RL files, mismatch diagnosis, refusal of code-running pickles, corrupt files."""
import json
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


# ------------------------------------------------------------------------------------------- hostile files (issue 11)
import os  # noqa: E402
import struct  # noqa: E402
import threading  # noqa: E402
import zipfile  # noqa: E402

from vpt_agent import file_checks  # noqa: E402


def _params(agent):
    return {k: v.clone() for k, v in agent.policy.state_dict().items()}


def _assert_untouched(agent, before):
    after = agent.policy.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(after[k], v), f"{k} changed"


def _with_deadline(fn, seconds=20.0):
    """Run ``fn`` in a thread; fail (instead of hanging the suite) if it does not finish in time."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised below
            box["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s (hung)"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def test_memo_index_bomb_is_refused_before_unpickling(tmp_path):
    # LONG_BINPUT with a huge index: the C unpickler would size its memo array by it (4.3 GB for 704 bytes).
    body = pickle.dumps({"model": {"args": {}}}, protocol=2)[2:]
    path = tmp_path / "bomb.model"
    path.write_bytes(b"\x80\x02N" + b"r" + struct.pack("<I", 0x0FFFFFFF) + b"0" + body)
    with pytest.raises(ModelFileError, match=r"^refusing to load .*bomb.model: its pickle stores memo slot 268435455"):
        load_model_config(path)


@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "huge", "directory"])
def test_model_file_must_be_a_small_regular_file(tmp_path, kind):
    path = tmp_path / "x.model"
    if kind == "dev_zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "huge":
        with open(path, "wb") as f:
            f.truncate(3 << 30)  # sparse: 3 GB that take no disk space
    else:
        path.mkdir()
    expected = {"dev_zero": "character device", "fifo": "FIFO", "huge": "limit", "directory": "directory"}[kind]
    with pytest.raises(ModelFileError, match=expected):
        _with_deadline(lambda: load_model_config(path), 10)


@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "huge"])
def test_weights_file_must_be_a_bounded_regular_file(tmp_path, kind):
    path = tmp_path / "x.weights"
    if kind == "dev_zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        with open(path, "wb") as f:
            f.truncate(file_checks.MAX_WEIGHTS_BYTES + 1)
    with pytest.raises(WeightsFileError, match={"dev_zero": "character device", "fifo": "FIFO", "huge": "limit"}[kind]):
        _with_deadline(lambda: read_state_dict(path), 10)


def _html():
    return b"<!DOCTYPE html><html><body>404 Not Found</body></html>"


@pytest.mark.parametrize("content, expected", [
    (bytes(range(256)) * 4, "not a pickle"),
    (_html(), "HTML page"),
    (None, "zip archive"),  # a .weights file given as the config
    (b"", "empty file"),
])
def test_model_file_diagnoses(tmp_path, content, expected):
    path = tmp_path / "x.model"
    path.write_bytes(SMALL_WEIGHTS.read_bytes() if content is None else content)
    with pytest.raises(ModelFileError, match=expected) as e:
        load_model_config(path)
    assert "could run code" not in str(e.value) and "\n" not in str(e.value)


def test_plain_pickle_that_is_not_a_config(tmp_path):
    path = tmp_path / "a.model"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelFileError, match=r"not a VPT .model config.*'a'") as e:
        load_model_config(path)
    assert "could run code" not in str(e.value)


def test_truncated_and_trailing_model_files(tmp_path):
    data = SMALL_MODEL.read_bytes()
    path = tmp_path / "t.model"
    path.write_bytes(data[:-1])
    with pytest.raises(ModelFileError, match="truncated"):
        load_model_config(path)
    path.write_bytes(data + b"extra")
    with pytest.raises(ModelFileError, match="unexpected bytes after the end"):
        load_model_config(path)


@pytest.mark.parametrize("content, expected", [
    (_html(), "HTML page"),
    (bytes(range(256)) * 4, "unrecognised content"),
    (None, r"pickle of plain data \(a .model config\?\)"),  # a .model file given as the weights
])
def test_weights_file_diagnoses(tmp_path, content, expected):
    path = tmp_path / "x.weights"
    path.write_bytes(SMALL_MODEL.read_bytes() if content is None else content)
    with pytest.raises(WeightsFileError, match=expected) as e:
        read_state_dict(path)
    assert "could run code" not in str(e.value)


def test_torch_advice_to_disable_weights_only_is_not_passed_on(agent, tmp_path):
    path = tmp_path / "evil.weights"
    torch.save({"net.final_ln.weight": _RunsCode(tmp_path / "pwned")}, path)
    with pytest.raises(WeightsFileError) as e:
        agent.load_weights(path)
    message = str(e.value)
    assert "weights_only" not in message and "trust" not in message and "\n" not in message
    assert "open" in message  # the refused global is named


def _rezip(src, dst, compress_type):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compress_type) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename), compress_type=compress_type)


def test_compressed_zip_member_is_refused_before_reading(tmp_path):
    path = tmp_path / "deflated.weights"
    _rezip(SMALL_WEIGHTS, path, zipfile.ZIP_DEFLATED)
    with pytest.raises(WeightsFileError, match="compressed"):
        read_state_dict(path)
    stored = tmp_path / "stored.weights"
    _rezip(SMALL_WEIGHTS, stored, zipfile.ZIP_STORED)  # the same archive, stored: loads
    assert read_state_dict(stored).keys() == read_state_dict(SMALL_WEIGHTS).keys()


def test_zip_member_sizes_must_fit_the_file(tmp_path):
    data = bytearray(SMALL_WEIGHTS.read_bytes())
    # Central directory entry of the first member: set its sizes to 2 GB (a stored member "expanding").
    cd = data.rfind(b"PK\x01\x02", 0, data.rfind(b"PK\x05\x06"))
    first = data.find(b"PK\x01\x02")
    assert 0 <= first <= cd
    data[first + 20:first + 28] = struct.pack("<II", 0x7FFFFFFF, 0x7FFFFFFF)
    path = tmp_path / "absurd.weights"
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsFileError, match="does not fit"):
        read_state_dict(path)


def test_zip_member_count_and_pickle_size_are_capped(monkeypatch):
    monkeypatch.setattr(file_checks, "MAX_TENSORS", 50)  # small.weights has 113 members
    with pytest.raises(WeightsFileError, match="113 zip members, more than the limit of 66"):
        read_state_dict(SMALL_WEIGHTS)
    monkeypatch.setattr(file_checks, "MAX_TENSORS", 10_000)
    monkeypatch.setattr(file_checks, "MAX_WEIGHTS_PICKLE_BYTES", 1000)  # its data.pkl is 13 KB
    with pytest.raises(WeightsFileError, match="data.pkl is 13,327 bytes, more than the 1,000-byte limit"):
        read_state_dict(SMALL_WEIGHTS)


def test_truncated_zip_has_no_end_record(tmp_path):
    path = tmp_path / "cut.weights"
    path.write_bytes(SMALL_WEIGHTS.read_bytes()[:-200])
    with pytest.raises(WeightsFileError, match="no end record"):
        read_state_dict(path)


def _safetensors_bytes(header: dict, data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def test_safetensors_header_limits(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", file_checks.MAX_SAFETENSORS_HEADER_BYTES + 1) + b"{" + b" " * 100)
    with pytest.raises(WeightsFileError, match="header is .* more than"):
        read_state_dict(path)
    many = {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(file_checks.MAX_TENSORS + 1)}
    path.write_bytes(_safetensors_bytes(many))
    with pytest.raises(WeightsFileError, match="more than the limit"):
        read_state_dict(path)
    path.write_bytes(_safetensors_bytes({"a": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 16]}},
                                        b"\0" * 16))
    with pytest.raises(WeightsFileError, match="does not match"):
        read_state_dict(path)
    path.write_bytes(_safetensors_bytes({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8))
    with pytest.raises(WeightsFileError, match="outside the file"):
        read_state_dict(path)


@pytest.mark.parametrize("kind", ["sparse", "meta", "quantized"])
def test_unusable_tensor_leaves_the_policy_untouched(agent, sd, tmp_path, kind):
    key = "net.final_ln.weight"
    like = sd[key]
    bad = {"sparse": like.to_sparse(), "meta": torch.empty_like(like, device="meta"),
           "quantized": torch.quantize_per_tensor(like, 0.1, 0, torch.qint8)}[kind]
    before = _params(agent)
    with pytest.raises(WeightsFileError, match=key):
        agent.load_weights(_save(tmp_path, dict(sd, **{key: bad})))
    _assert_untouched(agent, before)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.uint8, torch.complex64])
def test_non_floating_tensors_are_refused(agent, sd, tmp_path, dtype):
    key = "pi_head.buttons.linear_layer.weight"
    before = _params(agent)
    with pytest.raises(WeightsFileError, match=r"not floating point.*" + key.replace(".", r"\.")):
        agent.load_weights(_save(tmp_path, dict(sd, **{key: sd[key].to(dtype)})))
    _assert_untouched(agent, before)


def test_nan_and_inf_weights_are_refused_naming_the_keys(agent, sd, tmp_path):
    bad = dict(sd)
    bad["net.lastlayer.layer.weight"] = sd["net.lastlayer.layer.weight"].clone()
    bad["net.lastlayer.layer.weight"][0, 0] = float("nan")
    bad["value_head.linear.bias"] = torch.full_like(sd["value_head.linear.bias"], float("inf"))
    before = _params(agent)
    with pytest.raises(WeightsFileError, match="NaN or Inf") as e:
        agent.load_weights(_save(tmp_path, bad))
    assert "net.lastlayer.layer.weight" in str(e.value) and "value_head.linear.bias" in str(e.value)
    _assert_untouched(agent, before)


def test_nan_in_an_ignored_key_is_harmless(agent, sd, tmp_path):
    aux = next(k for k in sd if k.startswith("aux_value_head.") and sd[k].is_floating_point())
    report = agent.load_weights(_save(tmp_path, dict(sd, **{aux: torch.full_like(sd[aux], float("nan"))})))
    assert aux in report.unexpected_keys


def test_half_precision_weights_are_cast(agent, sd, tmp_path):
    report = agent.load_weights(_save(tmp_path, {k: v.to(torch.float16) for k, v in sd.items()}))
    assert report.missing_keys == []
    for k, v in agent.policy.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, sd[k].to(torch.float16).float()), k


@pytest.mark.parametrize("prefix", ["model.", "_orig_mod.", "state_dict.", "agent.policy.", "module.", "policy."])
def test_prefixed_keys_get_a_strip_hint(agent, sd, tmp_path, prefix):
    before = _params(agent)
    with pytest.raises(WeightsMismatchError, match=r"extra '" + prefix.replace(".", r"\.") + r"' prefix.*strip"):
        agent.load_weights(_save(tmp_path, {prefix + k: v for k, v in sd.items()}))
    _assert_untouched(agent, before)


@pytest.mark.parametrize("nesting", [("state_dict",), ("model",), ("policy",), ("model", "state_dict")])
def test_nested_checkpoint_dict_gets_an_unwrap_hint(agent, sd, tmp_path, nesting):
    ckpt = dict(sd)
    for key in reversed(nesting):
        ckpt = {key: ckpt, "epoch": 3}
    path = tmp_path / "ckpt.pt"
    torch.save(ckpt, path)
    where = "".join(f"[{k!r}]" for k in nesting)
    with pytest.raises(WeightsFileError, match="unwrap") as e:
        agent.load_weights(path)
    assert where in str(e.value)


def test_weights_format_is_recognised_from_content(agent, sd, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "really_safetensors.weights"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    assert agent.load_weights(path).missing_keys == []
