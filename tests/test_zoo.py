"""Model zoo tests. All network traffic goes to a local http.server on 127.0.0.1."""
from __future__ import annotations

import hashlib
import http.server
import random
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import torch

from vpt_agent import zoo

MODEL = "foundation-model-2x"
MODEL_FILE = "2x.model"
WEIGHTS_FILE = "foundation-model-2x.weights"
REPO_ROOT = Path(__file__).resolve().parents[1]


class FileServer:
    """Serves in-memory files under /models/ with Range support; can drop connections mid-body."""

    def __init__(self, files: Dict[str, bytes]) -> None:
        self.files = dict(files)
        self.requests: List[dict] = []
        self.drop_after: Optional[int] = None  # bytes of body to send before closing the connection
        self.drops_left = 0  # how many responses get dropped
        self.extra_length = 0  # announce this many bytes more than the body has
        self.ignore_range = False
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                server._serve(self)

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models"

    def _serve(self, h: http.server.BaseHTTPRequestHandler) -> None:
        self.requests.append({"path": h.path, "range": h.headers.get("Range")})
        name = h.path.rsplit("/", 1)[-1]
        if not h.path.startswith("/models/") or name not in self.files:
            h.send_error(404)
            return
        data = self.files[name]
        start = 0
        rng = h.headers.get("Range")
        if rng and not self.ignore_range:
            start = int(rng.split("=", 1)[1].split("-", 1)[0])
            if start >= len(data):
                h.send_error(416)
                return
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data) + self.extra_length}")
        else:
            h.send_response(200)
        body = data[start:]
        h.send_header("Content-Length", str(len(body) + self.extra_length))
        h.send_header("Accept-Ranges", "bytes")
        h.end_headers()
        if self.drops_left > 0 and self.drop_after is not None and len(body) > self.drop_after:
            self.drops_left -= 1
            h.wfile.write(body[: self.drop_after])
            h.wfile.flush()
            h.close_connection = True
            return
        h.wfile.write(body)
        if self.extra_length:
            h.close_connection = True

    def count(self, name: str) -> int:
        return sum(1 for r in self.requests if r["path"].endswith("/" + name))

    def close(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def files() -> Dict[str, bytes]:
    rng = random.Random(0)
    return {
        MODEL_FILE: b"fake model config " + bytes(rng.getrandbits(8) for _ in range(1000)),
        WEIGHTS_FILE: bytes(rng.getrandbits(8) for _ in range(300_000)),
    }


@pytest.fixture
def server(files, monkeypatch, tmp_path):
    srv = FileServer(files)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv(zoo.ENV_BASE_URL, srv.url)
    monkeypatch.setenv(zoo.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv(zoo.ENV_OFFLINE, raising=False)
    monkeypatch.setattr(zoo, "RETRY_BACKOFF_S", 0.0)
    monkeypatch.setattr(zoo, "TIMEOUT_S", 10.0)
    zoo._VERIFIED.clear()
    yield srv
    srv.close()


def cache_dir() -> Path:
    return Path(os.environ[zoo.ENV_CACHE])


# ---------------------------------------------------------------------------------------------------- registry


def test_registry_lists_the_nine_official_models():
    names = zoo.model_names()
    assert names == [
        "foundation-model-1x", "foundation-model-2x", "foundation-model-3x", "bc-house-3x",
        "bc-early-game-2x", "bc-early-game-3x", "rl-from-foundation-2x", "rl-from-house-2x",
        "rl-from-early-game-2x",
    ]
    for m in zoo.list_models():
        assert m.name.endswith(m.size)
        assert m.weights_file == f"{m.name}.weights"
        assert m.weights_url == f"{zoo.OFFICIAL_BASE_URL}/{m.name}.weights"
        assert m.model_url == zoo.config_url(m.size)
        assert m.trained_on


def test_registry_configs_and_the_2x_model_file_name():
    assert zoo.CONFIG_FILES == {"1x": "foundation-model-1x.model", "2x": "2x.model", "3x": "foundation-model-3x.model"}
    assert zoo.get_model("rl-from-early-game-2x").model_url == (
        "https://openaipublic.blob.core.windows.net/minecraft-rl/models/2x.model")
    assert zoo.get_model("bc-house-3x").model_file == "foundation-model-3x.model"
    assert zoo.get_model("Foundation-Model-1X ").name == "foundation-model-1x"


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
    server.files["rl-from-foundation-2x.weights"] = b"other weights"
    zoo.fetch(MODEL, progress=False)
    model_path, weights_path = zoo.fetch("rl-from-foundation-2x", progress=False)
    assert server.count(MODEL_FILE) == 1
    assert weights_path.read_bytes() == b"other weights"


def test_resume_after_dropped_connection(server, files):
    server.drop_after, server.drops_left = 100_000, 1
    _, weights_path = zoo.fetch(MODEL, progress=False)
    assert weights_path.read_bytes() == files[WEIGHTS_FILE]
    ranges = [r["range"] for r in server.requests if r["path"].endswith(WEIGHTS_FILE)]
    assert ranges == [None, "bytes=100000-"]


def test_partial_file_kept_and_resumed_by_next_call(server, files, monkeypatch):
    monkeypatch.setattr(zoo, "MAX_ATTEMPTS", 1)
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
    monkeypatch.setattr(zoo, "MAX_ATTEMPTS", 1)
    with pytest.raises(zoo.ZooError, match=r"1018 of 1028 bytes"):
        zoo.fetch(MODEL, progress=False)
    monkeypatch.setattr(zoo, "MAX_ATTEMPTS", 3)  # resuming cannot fix it: the file never completes
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


def test_cli_download_in_a_subprocess(server, files):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    cmd = [sys.executable, "-m", "vpt_agent.zoo", "download", MODEL, "--no-progress"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert str(cache_dir() / WEIGHTS_FILE) in done.stdout
    assert (cache_dir() / WEIGHTS_FILE).read_bytes() == files[WEIGHTS_FILE]


def test_cli_errors_are_one_line(server, capsys):
    assert zoo.main(["download", "no-such-model"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model 'no-such-model'") and err.strip().count("\n") == 0

    assert "bc-early-game-2x.weights" not in server.files
    assert zoo.main(["download", "bc-early-game-2x", "--no-progress"]) == 1
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "HTTP 404" in error_lines[0]
    assert "Traceback" not in err


def test_cli_download_all_verifies_cached_copies(server, files, capsys):
    for m in zoo.list_models():
        server.files.setdefault(m.model_file, files[MODEL_FILE])
        server.files.setdefault(m.weights_file, m.name.encode())
    assert zoo.main(["download", "all", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == len(zoo.list_models())
    n = len(server.requests)
    assert n == 3 + len(zoo.list_models())  # each config once, each weights file once
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
