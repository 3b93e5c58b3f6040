"""Model zoo tests. All network traffic goes to a local http.server on 127.0.0.1."""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import torch

from vpt_agent import download, zoo
from vpt_agent.config import VPT_SIZES

MODEL = "foundation-model-2x"
MODEL_FILE = "2x.model"
WEIGHTS_FILE = "foundation-model-2x.weights"
REPO_ROOT = Path(__file__).resolve().parents[1]


def _weights_bytes(seed: int = 0, n: int = 75_000) -> bytes:
    """A small valid torch zip (what a real .weights file is), ~300 KB."""
    buf = io.BytesIO()
    torch.save({"w": torch.randn(n, generator=torch.Generator().manual_seed(seed))}, buf)
    return buf.getvalue()


def _model_bytes(hidsize: int = 64) -> bytes:
    """A small plain-data .model pickle with the official structure."""
    return pickle.dumps({"model": {"args": {"net": {"args": {"hidsize": hidsize}}, "pi_head_opts": {}}}})


class FileServer:
    """Serves in-memory files under /models/ with Range/If-Range support and configurable misbehaviour."""

    def __init__(self, files: Dict[str, bytes]) -> None:
        self.files = dict(files)
        self.requests: List[dict] = []
        self.drop_after: Optional[int] = None  # bytes of body to send before closing the connection
        self.drops_left = 0  # how many responses get dropped
        self.extra_length = 0  # announce this many bytes more than the body has
        self.ignore_range = False
        self.send_etag = True
        self.headers: Dict[str, str] = {}  # extra response headers (Content-Encoding, Content-Type, ...)
        self.body_override: Optional[bytes] = None  # sent instead of the file (with a matching Content-Length)
        self.length_override: Dict[str, int] = {}  # file -> Content-Length to announce (and bytes to send, if fewer)
        self.drip_s: Optional[float] = None  # sleep between 1-byte writes
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                server._serve(self)

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models"

    @staticmethod
    def etag(data: bytes) -> str:
        return '"' + hashlib.sha256(data).hexdigest()[:16] + '"'

    def _serve(self, h: http.server.BaseHTTPRequestHandler) -> None:
        self.requests.append({"path": h.path, "range": h.headers.get("Range"), "if_range": h.headers.get("If-Range"),
                              "auth": h.headers.get("Authorization"), "encoding": h.headers.get("Accept-Encoding")})
        name = h.path.split("?", 1)[0].rsplit("/", 1)[-1]
        if not h.path.startswith("/models/") or name not in self.files:
            h.send_error(404)
            return
        data = self.files[name] if self.body_override is None else self.body_override
        start = 0
        rng = h.headers.get("Range")
        if_range = h.headers.get("If-Range")
        range_ok = rng and not self.ignore_range and (if_range is None or if_range == self.etag(data))
        if range_ok:
            start = int(rng.split("=", 1)[1].split("-", 1)[0])
            if start >= len(data):
                h.send_error(416)
                return
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data) + self.extra_length}")
        else:
            h.send_response(200)
        body = data[start:]
        length = self.length_override.get(name, len(body) + self.extra_length)
        h.send_header("Content-Length", str(length))
        h.send_header("Accept-Ranges", "bytes")
        if self.send_etag:
            h.send_header("ETag", self.etag(data))
        for key, value in self.headers.items():
            h.send_header(key, value)
        h.end_headers()
        body = body[:length]
        if self.drops_left > 0 and self.drop_after is not None and len(body) > self.drop_after:
            self.drops_left -= 1
            h.wfile.write(body[: self.drop_after])
            h.wfile.flush()
            h.close_connection = True
            return
        try:
            if self.drip_s is not None:
                for i in range(len(body)):
                    h.wfile.write(body[i:i + 1])
                    h.wfile.flush()
                    time.sleep(self.drip_s)
            else:
                h.wfile.write(body)
        except OSError:
            pass
        if self.extra_length:
            h.close_connection = True

    def count(self, name: str) -> int:
        return sum(1 for r in self.requests if r["path"].split("?")[0].endswith("/" + name))

    def close(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def files() -> Dict[str, bytes]:
    return {MODEL_FILE: _model_bytes(), WEIGHTS_FILE: _weights_bytes()}


@pytest.fixture
def server(files, monkeypatch, tmp_path):
    srv = FileServer(files)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv(zoo.ENV_BASE_URL, srv.url)
    monkeypatch.setenv(zoo.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv(zoo.ENV_OFFLINE, raising=False)
    monkeypatch.setattr(download, "RETRY_BACKOFF_S", 0.0)
    monkeypatch.setattr(download, "TIMEOUT_S", 10.0)
    zoo._VERIFIED.clear()
    yield srv
    srv.close()


def cache_dir() -> Path:
    return Path(os.environ[zoo.ENV_CACHE])


# ---------------------------------------------------------------------------------------------------- registry


def test_registry_lists_the_nine_official_models():
    policies = [m for m in zoo.list_models() if m.kind == "policy" and not m.bundled]
    assert [m.name for m in policies] == [
        "foundation-model-1x", "foundation-model-2x", "foundation-model-3x", "bc-house-3x",
        "bc-early-game-2x", "bc-early-game-3x", "rl-from-foundation-2x", "rl-from-house-2x",
        "rl-from-early-game-2x",
    ]
    for m in policies:
        assert m.name.endswith(m.size) and m.size in VPT_SIZES
        assert m.weights_file == f"{m.name}.weights"
        assert m.weights_url == f"{zoo.OFFICIAL_BASE_URL}/{m.name}.weights"
        assert m.model_url == zoo.config_url(m.size)
        assert m.trained_on


def test_registry_configs_and_the_2x_model_file_name():
    assert zoo.CONFIG_FILES == {"1x": "foundation-model-1x.model", "2x": "2x.model", "3x": "foundation-model-3x.model"}
    assert set(zoo.CONFIG_FILES) == set(VPT_SIZES)  # one size table: vpt_agent.config.VPT_SIZES
    assert zoo.get_model("rl-from-early-game-2x").model_url == (
        "https://openaipublic.blob.core.windows.net/minecraft-rl/models/2x.model")
    assert zoo.get_model("bc-house-3x").model_file == "foundation-model-3x.model"
    assert zoo.get_model("Foundation-Model-1X ").name == "foundation-model-1x"
    assert not hasattr(zoo, "fetch_config")  # dead code removed


def test_idm_entry_uses_the_official_idm_folder(monkeypatch):
    idm = zoo.get_model("4x-idm")
    assert (idm.kind, idm.model_file, idm.weights_file) == ("idm", "4x_idm.model", "4x_idm.weights")
    # the official README links the IDM under minecraft-rl/idm/, not minecraft-rl/models/
    assert idm.weights_url == "https://openaipublic.blob.core.windows.net/minecraft-rl/idm/4x_idm.weights"
    monkeypatch.delenv(zoo.ENV_BASE_URL, raising=False)
    assert zoo.file_url("4x_idm.model") == "https://openaipublic.blob.core.windows.net/minecraft-rl/idm/4x_idm.model"
    monkeypatch.setenv(zoo.ENV_BASE_URL, "http://mirror.example/vpt")
    assert zoo.file_url("4x_idm.model") == "http://mirror.example/vpt/4x_idm.model"  # mirrors are flat


def test_unknown_name_lists_valid_names(server, tmp_path):
    with pytest.raises(zoo.UnknownModelError) as info:
        zoo.fetch("foundation-model-9x")
    assert "foundation-model-9x" in str(info.value)
    assert all(name in str(info.value) for name in zoo.model_names())
    assert isinstance(info.value, ValueError)
    assert server.requests == []


def test_base_url_override_and_local_directory(monkeypatch, tmp_path):
    monkeypatch.delenv(zoo.ENV_BASE_URL, raising=False)
    assert zoo.file_url("2x.model") == f"{zoo.OFFICIAL_BASE_URL}/2x.model"
    monkeypatch.setenv(zoo.ENV_BASE_URL, "http://mirror.example/vpt/")
    assert zoo.file_url("2x.model") == "http://mirror.example/vpt/2x.model"
    monkeypatch.setenv(zoo.ENV_BASE_URL, str(tmp_path))
    assert zoo.file_url("2x.model") == tmp_path.resolve().as_uri() + "/2x.model"
    monkeypatch.setenv(zoo.ENV_BASE_URL, "https://mirror.example/vpt/?sv=2024&sig=abc%2F")  # a signed-URL mirror
    assert zoo.file_url("2x.model") == "https://mirror.example/vpt/2x.model?sv=2024&sig=abc%2F"


# ---------------------------------------------------------------------------------------------------- downloads


def test_download_writes_files_and_manifest(server, files):
    model_path, weights_path = zoo.fetch(MODEL, progress=False)
    assert model_path == cache_dir() / MODEL_FILE and weights_path == cache_dir() / WEIGHTS_FILE
    assert model_path.read_bytes() == files[MODEL_FILE]
    assert weights_path.read_bytes() == files[WEIGHTS_FILE]
    assert not list(cache_dir().glob("*.part"))
    manifest = json.loads((cache_dir() / zoo.MANIFEST_NAME).read_text())["files"]
    assert manifest[WEIGHTS_FILE]["sha256"] == hashlib.sha256(files[WEIGHTS_FILE]).hexdigest()
    assert manifest[WEIGHTS_FILE]["size"] == len(files[WEIGHTS_FILE])
    assert manifest[WEIGHTS_FILE]["url"] == f"{server.url}/{WEIGHTS_FILE}"


def test_cache_hit_makes_no_request(server):
    first = zoo.fetch(MODEL, progress=False)
    n = len(server.requests)
    zoo._VERIFIED.clear()  # force the full checksum path too
    assert zoo.fetch(MODEL, progress=False) == first
    assert len(server.requests) == n == 2


def test_shared_config_downloaded_once(server, files):
    server.files["rl-from-foundation-2x.weights"] = other = _weights_bytes(seed=2, n=100)
    zoo.fetch(MODEL, progress=False)
    model_path, weights_path = zoo.fetch("rl-from-foundation-2x", progress=False)
    assert server.count(MODEL_FILE) == 1
    assert weights_path.read_bytes() == other


def test_resume_after_dropped_connection(server, files):
    server.drop_after, server.drops_left = 100_000, 1
    _, weights_path = zoo.fetch(MODEL, progress=False)
    assert weights_path.read_bytes() == files[WEIGHTS_FILE]
    ranges = [r["range"] for r in server.requests if r["path"].endswith(WEIGHTS_FILE)]
    assert ranges == [None, "bytes=100000-"]


def test_partial_file_kept_and_resumed_by_next_call(server, files, monkeypatch):
    monkeypatch.setattr(download, "MAX_ATTEMPTS", 1)
    server.drop_after, server.drops_left = 120_000, 1
    with pytest.raises(zoo.ZooError, match="resume"):
        zoo.fetch(MODEL, progress=False)
    part = cache_dir() / f"{WEIGHTS_FILE}.part"
    assert part.stat().st_size == 120_000
    assert not (cache_dir() / WEIGHTS_FILE).exists()
    _, weights_path = zoo.fetch(MODEL, progress=False)
    assert weights_path.read_bytes() == files[WEIGHTS_FILE]
    assert server.requests[-1]["range"] == "bytes=120000-"
    assert not part.exists()


def test_server_ignoring_range_restarts_cleanly(server, files):
    server.drop_after, server.drops_left, server.ignore_range = 50_000, 1, True
    _, weights_path = zoo.fetch(MODEL, progress=False)
    assert weights_path.read_bytes() == files[WEIGHTS_FILE]


def test_size_mismatch_with_announced_length(server, monkeypatch):
    server.extra_length = 10  # the server announces 10 bytes more than it sends
    monkeypatch.setattr(download, "MAX_ATTEMPTS", 1)
    n = len(server.files[MODEL_FILE])
    with pytest.raises(zoo.ZooError, match=rf"{n:,} of {n + 10:,} bytes"):
        zoo.fetch(MODEL, progress=False)
    monkeypatch.setattr(download, "MAX_ATTEMPTS", 3)  # resuming cannot fix it: the file never completes
    with pytest.raises(zoo.ZooError, match=MODEL_FILE):
        zoo.fetch(MODEL, progress=False)
    assert not (cache_dir() / MODEL_FILE).exists()
    assert zoo.read_manifest(cache_dir()) == {}


def test_http_error_is_one_clear_line(server):
    del server.files[WEIGHTS_FILE]
    with pytest.raises(zoo.ZooError) as info:
        zoo.fetch(MODEL, progress=False)
    assert "HTTP 404" in str(info.value) and WEIGHTS_FILE in str(info.value)
    assert "\n" not in str(info.value)


def test_unreachable_server_is_a_zoo_error(server, monkeypatch):
    port = server.httpd.server_address[1]
    server.close()
    monkeypatch.setenv(zoo.ENV_BASE_URL, f"http://127.0.0.1:{port}/models")
    with pytest.raises(zoo.ZooError, match="cannot reach"):
        zoo.fetch(MODEL, progress=False)


def test_download_from_local_directory(server, files, monkeypatch, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name, data in files.items():
        (mirror / name).write_bytes(data)
    monkeypatch.setenv(zoo.ENV_BASE_URL, str(mirror))
    _, weights_path = zoo.fetch(MODEL, progress=False)
    assert weights_path.read_bytes() == files[WEIGHTS_FILE]
    assert server.requests == []


# ---------------------------------------------------------------------------------------------------- verification


def test_checksum_mismatch_detected(server):
    _, weights_path = zoo.fetch(MODEL, progress=False)
    data = bytearray(weights_path.read_bytes())
    data[1234] ^= 0xFF
    weights_path.write_bytes(bytes(data))
    with pytest.raises(zoo.ChecksumMismatchError) as info:
        zoo.fetch(MODEL, progress=False)
    message = str(info.value)
    assert "checksum mismatch" in message and str(weights_path) in message and "delete" in message


def test_size_mismatch_of_cached_file_detected(server):
    _, weights_path = zoo.fetch(MODEL, progress=False)
    weights_path.write_bytes(weights_path.read_bytes()[:-1])
    with pytest.raises(zoo.ChecksumMismatchError, match="size mismatch"):
        zoo.fetch(MODEL, progress=False)


def test_force_redownloads_a_corrupt_file(server, files):
    _, weights_path = zoo.fetch(MODEL, progress=False)
    weights_path.write_bytes(b"garbage")
    _, weights_path = zoo.fetch(MODEL, progress=False, force=True)
    assert weights_path.read_bytes() == files[WEIGHTS_FILE]
    assert server.count(WEIGHTS_FILE) == 2


def test_file_without_manifest_entry_is_recorded_then_verified(server, files):
    cache = cache_dir()
    cache.mkdir(parents=True)
    for name, data in files.items():
        (cache / name).write_bytes(data)
    zoo.fetch(MODEL, progress=False)
    assert server.requests == []
    assert set(zoo.read_manifest(cache)) == {MODEL_FILE, WEIGHTS_FILE}
    (cache / MODEL_FILE).write_bytes(b"x" * len(files[MODEL_FILE]))
    with pytest.raises(zoo.ChecksumMismatchError):
        zoo.fetch(MODEL, progress=False)


# ---------------------------------------------------------------------------------------------------- offline


def test_offline_hit_uses_cache_only(server, files, monkeypatch):
    zoo.fetch(MODEL, progress=False)
    n = len(server.requests)
    monkeypatch.setenv(zoo.ENV_OFFLINE, "1")
    _, weights_path = zoo.fetch(MODEL, progress=False)
    assert weights_path.read_bytes() == files[WEIGHTS_FILE]
    assert len(server.requests) == n


def test_offline_miss_is_a_clear_error(server, monkeypatch):
    monkeypatch.setenv(zoo.ENV_OFFLINE, "1")
    with pytest.raises(zoo.ZooError, match="offline") as info:
        zoo.fetch(MODEL, progress=False)
    assert MODEL_FILE in str(info.value)
    assert server.requests == []


# ---------------------------------------------------------------------------------------------------- CLI


def test_cli_list(capsys, tmp_path):
    assert zoo.main(["list", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for m in zoo.list_models():
        assert m.name in out and m.trained_on in out
    assert "size" in out and "trained on" in out


def test_cli_cache_and_usage_errors_are_one_line(capsys, tmp_path, monkeypatch):
    def read_only(args):
        raise PermissionError(13, "Permission denied", str(tmp_path / "c" / "x.lock"))

    monkeypatch.setattr(zoo, "_cmd_download", read_only)
    assert zoo.main(["download", "foundation-model-1x", "--cache-dir", str(tmp_path / "c")]) == 1
    assert capsys.readouterr().err == f"error: cannot use the model cache: Permission denied: {tmp_path}/c/x.lock\n"
    for argv in ([], ["download"], ["nonsense"]):
        with pytest.raises(SystemExit) as exit_info:
            zoo.main(argv)
        assert exit_info.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [["vpt_agent.zoo", "download"], ["vpt_agent.download"]])
def test_cli_download_in_a_subprocess(server, files, command):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    cmd = [sys.executable, "-m", *command, MODEL, "--no-progress"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert str(cache_dir() / WEIGHTS_FILE) in done.stdout
    assert (cache_dir() / WEIGHTS_FILE).read_bytes() == files[WEIGHTS_FILE]


def test_cli_errors_are_one_line(server, capsys):
    assert zoo.main(["download", "no-such-model"]) == 2  # bad input
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model 'no-such-model'") and err.strip().count("\n") == 0

    assert "bc-early-game-2x.weights" not in server.files
    assert zoo.main(["download", "bc-early-game-2x", "--no-progress"]) == 1
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "HTTP 404" in error_lines[0]
    assert "Traceback" not in err


def test_cli_download_all_verifies_cached_copies(server, files, capsys, assets):
    downloadable = [m for m in zoo.list_models() if not m.bundled]
    for i, m in enumerate(downloadable):
        server.files.setdefault(m.model_file, files[MODEL_FILE])
        server.files.setdefault(m.weights_file, _weights_bytes(seed=i, n=100))
    assert zoo.main(["download", "all", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == len(zoo.list_models())
    n = len(server.requests)
    configs = {m.model_file for m in downloadable}
    assert len(configs) == 4 and n == len(configs) + len(downloadable)  # each config once, each weights file once
    assert zoo.main(["download", "all", "--no-progress"]) == 0
    assert len(server.requests) == n


def test_from_pretrained_uses_the_zoo(server, monkeypatch):
    from conftest import SMALL_MODEL, SMALL_WEIGHTS
    from vpt_agent import VPTAgent

    server.files["foundation-model-1x.model"] = SMALL_MODEL.read_bytes()
    server.files["foundation-model-1x.weights"] = SMALL_WEIGHTS.read_bytes()
    agent = VPTAgent.from_pretrained("foundation-model-1x", device="cpu", seed=0)
    expected = VPTAgent.from_files(SMALL_MODEL, SMALL_WEIGHTS, device="cpu", seed=0)
    for a, b in zip(agent.policy.state_dict().values(), expected.policy.state_dict().values()):
        assert torch.equal(a, b)
    monkeypatch.setenv(zoo.ENV_OFFLINE, "1")
    VPTAgent.from_pretrained("foundation-model-1x", device="cpu")
    assert server.count("foundation-model-1x.weights") == 1


# ---------------------------------------------------------------------------------------------------- bundled models


@pytest.fixture
def assets(tmp_path, monkeypatch):
    """A stand-in for the package's assets/ folder with the bundled demo model's two files."""
    folder = tmp_path / "assets"
    folder.mkdir()
    (folder / "voxel-treechop-demo.model").write_bytes(_model_bytes())
    (folder / "voxel-treechop-demo.weights").write_bytes(_weights_bytes(n=10))
    monkeypatch.setattr(zoo, "ASSETS_DIR", folder)
    return folder


def test_bundled_model_needs_no_download(server, assets, capsys):
    model_path, weights_path = zoo.fetch("voxel-treechop-demo")
    assert (model_path, weights_path) == (assets / "voxel-treechop-demo.model", assets / "voxel-treechop-demo.weights")
    assert server.requests == [] and not cache_dir().exists()
    assert zoo.main(["list"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("voxel-treechop-demo"))
    assert line.split()[-1] == "bundled"


def test_missing_bundled_file_is_a_clear_error(server, assets):
    (assets / "voxel-treechop-demo.weights").unlink()
    with pytest.raises(zoo.ZooError, match="bundled file .* is missing"):
        zoo.fetch("voxel-treechop-demo")


def test_package_data_declares_the_assets():
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(REPO_ROOT / "setup.cfg")
    assert "assets/*" in cfg["options.package_data"]["vpt_agent"]
    assert "filelock" in cfg["options"]["install_requires"]
    assert zoo.ASSETS_DIR == Path(zoo.__file__).resolve().parent / "assets"


def test_kind_filter_refuses_the_other_kind(server):
    with pytest.raises(zoo.UnknownModelError, match="4x-idm is an inverse dynamics model, not a policy") as info:
        zoo.fetch("4x-idm", kind="policy")
    assert "foundation-model-1x" in str(info.value) and "4x-idm," not in str(info.value)
    assert zoo.get_model("4x-idm", kind="idm").kind == "idm"
    assert server.requests == []


def test_idm_files_are_fetched_like_the_others(server, files):
    server.files["4x_idm.model"] = _model_bytes(4096)
    server.files["4x_idm.weights"] = _weights_bytes(seed=4, n=10)
    model_path, weights_path = zoo.fetch("4x-idm", progress=False)
    assert (model_path.name, weights_path.name) == ("4x_idm.model", "4x_idm.weights")
    assert weights_path.read_bytes() == server.files["4x_idm.weights"]


# ---------------------------------------------------------------------------------------------------- hostile servers


def _assert_nothing_recorded(name: str = WEIGHTS_FILE) -> None:
    assert not (cache_dir() / name).exists()
    assert name not in zoo.read_manifest(cache_dir())


def test_html_error_page_with_status_200_is_refused(server):
    server.body_override = b"<!DOCTYPE html><html><body>Service unavailable</body></html>"
    with pytest.raises(zoo.ZooError, match="HTML") as info:
        zoo.fetch(MODEL, progress=False)
    assert "\n" not in str(info.value)
    _assert_nothing_recorded(MODEL_FILE)
    server.body_override = None
    server.headers["Content-Type"] = "text/html; charset=utf-8"  # the real bytes, but labelled as a page
    with pytest.raises(zoo.ZooError, match="HTML page"):
        zoo.fetch(MODEL, progress=False)
    _assert_nothing_recorded(MODEL_FILE)


def test_short_content_length_is_caught_by_the_content_check(server, files):
    server.length_override[WEIGHTS_FILE] = len(files[WEIGHTS_FILE]) // 2  # announces and sends only half
    with pytest.raises(zoo.ZooError, match=r"not a valid weights file.*nothing was recorded"):
        zoo.fetch(MODEL, progress=False)
    _assert_nothing_recorded()
    assert not list(cache_dir().glob("*.part"))


def test_content_encoded_body_is_refused(server):
    server.headers["Content-Encoding"] = "gzip"
    with pytest.raises(zoo.ZooError, match="gzip-encoded"):
        zoo.fetch(MODEL, progress=False)
    _assert_nothing_recorded(MODEL_FILE)
    assert all(r["encoding"] == "identity" for r in server.requests)


def test_oversized_bodies_are_refused(server, files):
    server.files[MODEL_FILE] = files[MODEL_FILE] + b"\0" * (2 << 20)  # a 2 MB "config": over the 1 MiB limit
    with pytest.raises(zoo.ZooError, match="announces .* more than the 1,048,576-byte limit"):
        zoo.fetch(MODEL, progress=False)
    server.length_override[MODEL_FILE] = 100  # now it announces 100 bytes and sends them, then the content check fails
    with pytest.raises(zoo.ZooError, match="not a valid model file"):
        zoo.fetch(MODEL, progress=False)
    _assert_nothing_recorded(MODEL_FILE)


def test_body_longer_than_announced_is_refused(server, files):
    server.length_override[MODEL_FILE] = len(files[MODEL_FILE]) + 5000
    server.extra_length = 0
    server.files[MODEL_FILE] = files[MODEL_FILE] + b"x" * 10_000
    with pytest.raises(zoo.ZooError, match="not a valid model file"):  # 5000 trailing bytes after the pickle
        zoo.fetch(MODEL, progress=False)
    _assert_nothing_recorded(MODEL_FILE)


def test_pinned_size_and_hash_are_enforced(server, files, monkeypatch):
    monkeypatch.setitem(zoo.PINNED, WEIGHTS_FILE, (len(files[WEIGHTS_FILE]) + 1, None))
    with pytest.raises(zoo.ZooError, match="known to be"):
        zoo.fetch(MODEL, progress=False)
    _assert_nothing_recorded()
    monkeypatch.setitem(zoo.PINNED, WEIGHTS_FILE, (len(files[WEIGHTS_FILE]), "0" * 64))
    with pytest.raises(zoo.ZooError, match="known to have"):
        zoo.fetch(MODEL, progress=False)
    _assert_nothing_recorded()
    monkeypatch.setitem(zoo.PINNED, WEIGHTS_FILE, (len(files[WEIGHTS_FILE]),
                                                   hashlib.sha256(files[WEIGHTS_FILE]).hexdigest()))
    assert zoo.fetch(MODEL, progress=False)[1].read_bytes() == files[WEIGHTS_FILE]


def test_resume_of_a_file_that_changed_on_the_server_starts_over(server, files, monkeypatch):
    monkeypatch.setattr(download, "MAX_ATTEMPTS", 1)
    server.drop_after, server.drops_left = 120_000, 1
    with pytest.raises(zoo.ZooError):
        zoo.fetch(MODEL, progress=False)
    new = _weights_bytes(seed=1)
    server.files[WEIGHTS_FILE] = new  # the file changed: its ETag no longer matches the If-Range
    _, weights_path = zoo.fetch(MODEL, progress=False)
    assert weights_path.read_bytes() == new  # not old head + new tail
    last = [r for r in server.requests if r["path"].endswith(WEIGHTS_FILE)][-1]
    assert last["range"] == "bytes=120000-" and last["if_range"] == FileServer.etag(files[WEIGHTS_FILE])


def test_stale_part_without_a_resume_record_is_discarded(server, files):
    cache = cache_dir()
    cache.mkdir(parents=True)
    (cache / f"{WEIGHTS_FILE}.part").write_bytes(b"stale bytes from somewhere else")
    _, weights_path = zoo.fetch(MODEL, progress=False)
    assert weights_path.read_bytes() == files[WEIGHTS_FILE]
    assert [r["range"] for r in server.requests if r["path"].endswith(WEIGHTS_FILE)] == [None]


def test_server_without_validators_is_not_resumed(server, files, monkeypatch):
    server.send_etag = False  # neither ETag nor Last-Modified: a resumed tail could come from another version
    server.drop_after, server.drops_left = 100_000, 1
    _, weights_path = zoo.fetch(MODEL, progress=False)
    assert weights_path.read_bytes() == files[WEIGHTS_FILE]
    assert [r["range"] for r in server.requests if r["path"].endswith(WEIGHTS_FILE)] == [None, None]


def test_symlink_planted_at_the_part_file_is_not_followed(server, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    cache = cache_dir()
    cache.mkdir(parents=True)
    (cache / f"{WEIGHTS_FILE}.part").symlink_to(victim)
    with pytest.raises(zoo.ZooError, match="symlink"):
        zoo.fetch(MODEL, progress=False)
    assert victim.read_text() == "precious"


def test_cache_directory_is_private(server):
    zoo.fetch(MODEL, progress=False)
    assert (cache_dir().stat().st_mode & 0o777) == 0o700


def test_deadline_per_file(server, files, monkeypatch):
    monkeypatch.setattr(download, "DEADLINE_S", 0.5)
    server.drip_s = 0.01  # a server that trickles one byte every 10 ms never trips a socket timeout
    start = time.monotonic()
    with pytest.raises(zoo.ZooError, match="deadline"):
        zoo.fetch(MODEL, progress=False)
    assert time.monotonic() - start < 5
    assert (cache_dir() / f"{MODEL_FILE}.part").is_file()  # kept for the next run


def test_signed_mirror_url_and_credentials_are_never_echoed(server, monkeypatch):
    host = server.url.split("//", 1)[1]
    monkeypatch.setenv(zoo.ENV_BASE_URL, f"http://alice:s3cret@{host}?sig=TOPSECRET&sv=1")
    model_path, _ = zoo.fetch(MODEL, progress=False)
    req = server.requests[0]
    assert req["path"] == f"/models/{MODEL_FILE}?sig=TOPSECRET&sv=1"  # the file name goes into the path
    assert req["auth"] == "Basic YWxpY2U6czNjcmV0"  # alice:s3cret, sent as a header
    manifest = json.dumps(zoo.read_manifest(cache_dir()))
    assert "TOPSECRET" not in manifest and "s3cret" not in manifest
    server.files.pop("bc-early-game-2x.weights", None)
    with pytest.raises(zoo.ZooError, match="HTTP 404") as info:
        zoo.fetch("bc-early-game-2x", progress=False)
    assert "TOPSECRET" not in str(info.value) and "s3cret" not in str(info.value) and "alice" not in str(info.value)


def test_redact_hides_credentials_and_queries():
    assert download.redact("https://u:p@host:8443/a/b.weights?sig=x") == "https://host:8443/a/b.weights?<redacted>"
    assert download.redact("http://[::1]:9000/m/2x.model") == "http://[::1]:9000/m/2x.model"
    assert download.redact("file:///srv/vpt/2x.model") == "file:///srv/vpt/2x.model"


@pytest.mark.parametrize("name", ["../x", "../../etc/passwd", "/etc/passwd", "sub/2x.model", "", "unknown.weights"])
def test_fetch_file_refuses_names_outside_the_catalogue(server, name, tmp_path):
    with pytest.raises(zoo.UnknownModelError, match="not a zoo file name"):
        zoo.fetch_file(name, tmp_path / "c")
    assert server.requests == [] and not (tmp_path / "c").exists()


def test_garbage_in_the_cache_is_not_recorded_and_gets_a_force_hint(server, files):
    cache = cache_dir()
    cache.mkdir(parents=True)
    (cache / MODEL_FILE).write_bytes(files[MODEL_FILE])
    (cache / WEIGHTS_FILE).write_bytes(b"<html>not weights</html>")
    with pytest.raises(zoo.ChecksumMismatchError, match=r"not a valid weights file.*--force"):
        zoo.fetch(MODEL, progress=False)
    assert WEIGHTS_FILE not in zoo.read_manifest(cache)
    # a manifest entry recorded by an older version for the same garbage does not make it valid
    zoo._update_manifest(cache, WEIGHTS_FILE, zoo._manifest_entry(24, "old", zoo.sha256_file(cache / WEIGHTS_FILE)))
    zoo._VERIFIED.clear()
    with pytest.raises(zoo.ChecksumMismatchError, match="--force"):
        zoo.fetch(MODEL, progress=False)
    assert zoo.fetch(MODEL, progress=False, force=True)[1].read_bytes() == files[WEIGHTS_FILE]


def test_non_regular_cached_file_is_refused(server, files):
    cache = cache_dir()
    cache.mkdir(parents=True)
    (cache / MODEL_FILE).write_bytes(files[MODEL_FILE])
    (cache / WEIGHTS_FILE).symlink_to("/dev/zero")
    with pytest.raises(zoo.ChecksumMismatchError, match="not a regular file"):
        zoo.fetch(MODEL, progress=False)


def test_concurrent_fetches_download_once(server, files):
    server.drip_s = None
    results, errors = [], []

    def worker():
        try:
            results.append(zoo.fetch(MODEL, progress=False))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(set(results)) == 1
    assert server.count(WEIGHTS_FILE) == 1 and server.count(MODEL_FILE) == 1
