"""The HTTP service against an attacker and an unlucky operator: task management, hosts, keys, decoding cost."""

from __future__ import annotations

import gc
import io
import os
import struct
import threading
import time
import weakref
import zlib

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi import HTTPException  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from test_multitask import build_artifacts, make_images, save_tiny_task  # noqa: E402

from vptune.errors import ConfigError  # noqa: E402
from vptune.serve.app import create_app  # noqa: E402
from vptune.serve.config import ServeConfig, read_key  # noqa: E402
from vptune.serve.decode import decode_image  # noqa: E402
from vptune.tasks.multitask import MultiTaskModel  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

ADMIN_KEY, API_KEY = "admin-key-0123456789", "api-key-0123456789abc"
ADMIN = {"x-admin-key": ADMIN_KEY}
HOSTS = ("testserver",)


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def claimed_size_png(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width`` x ``height`` (a decompression bomb's shape)."""
    data = bytearray(png(Image.new("L", (1, 1))))
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    base = tmp_path_factory.mktemp("served")
    build_artifacts(base / "root", ["deep", "shallow", "prefix", "added"])
    save_tiny_task(base / "root" / "five", {"name": "vpt-deep", "prompt_length": 2}, 5, seed=9)
    build_artifacts(base / "outside", ["linear"])
    (base / "root" / "link").symlink_to(base / "outside" / "linear")
    return base


def app_for(root, **settings):
    bank = MultiTaskModel.from_dirs({"deep": root / "root" / "deep"})
    return TestClient(create_app(bank, trusted_hosts=HOSTS, **settings))


def admin_app(root, **settings):
    return app_for(root, admin_key=ADMIN_KEY, task_root=root / "root", **settings)


def test_task_management_is_off_by_default(root):
    with app_for(root) as c:
        assert c.post("/v1/tasks", json={"name": "s", "path": "shallow"}).status_code == 405
        assert c.delete("/v1/tasks/deep").status_code == 404 and "deep" in c.app.state.bank.entries
        assert c.get("/v1/tasks").status_code == 200


def test_task_management_needs_its_own_key(root):
    with admin_app(root, api_key=API_KEY) as c:
        both = {**ADMIN, "x-api-key": API_KEY}
        r = c.post("/v1/tasks", json={"name": "s", "path": "shallow"}, headers={"x-api-key": API_KEY})
        assert r.status_code == 401 and "x-admin-key" in r.json()["detail"]
        assert c.post("/v1/tasks", json={"name": "s", "path": "shallow"}, headers=both).status_code == 201
    with pytest.raises(ConfigError, match="must differ"):
        ServeConfig(api_key=ADMIN_KEY, admin_key=ADMIN_KEY, task_root=root)
    with pytest.raises(ConfigError, match="--task-root"):
        ServeConfig(admin_key=ADMIN_KEY)


@pytest.mark.parametrize("path", ["/etc", "../outside/linear", "link", ".", "deep/../../outside/linear", "nope/.."])
def test_only_folders_under_the_task_root(root, path):
    with admin_app(root) as c:
        r = c.post("/v1/tasks", json={"name": "x", "path": path}, headers=ADMIN)
        assert r.status_code == 403 and r.json()["detail"].startswith("field 'path': give a task folder inside")
        assert str(root) not in r.text


def test_names_are_matched_in_full(root):
    with admin_app(root) as c:
        r = c.post("/v1/tasks", json={"name": "s\n", "path": "shallow"}, headers=ADMIN)
        assert r.status_code == 422 and "field 'name'" in r.json()["detail"]


def test_caps_on_tasks_and_backbone_copies_and_freeing_on_delete(root):
    with admin_app(root, max_tasks=3, max_isolated=1) as c:
        assert c.post("/v1/tasks", json={"name": "prefix", "path": "prefix"}, headers=ADMIN).status_code == 201
        r = c.post("/v1/tasks", json={"name": "added", "path": "added"}, headers=ADMIN)
        assert r.status_code == 409 and "private backbone copy" in r.json()["detail"]
        bank = c.app.state.bank
        assert "added" not in bank.entries and [t["mode"] for t in bank.tasks] == ["batched", "isolated"]
        assert c.post("/v1/tasks", json={"name": "s", "path": "shallow"}, headers=ADMIN).status_code == 201
        r = c.post("/v1/tasks", json={"name": "f", "path": "five"}, headers=ADMIN)
        assert r.status_code == 409 and "3 tasks are loaded" in r.json()["detail"]
        copy = weakref.ref(bank.task_modules["prefix"])
        assert c.delete("/v1/tasks/prefix", headers=ADMIN).status_code == 200
        gc.collect()
        assert copy() is None  # the private backbone copy is gone, not kept alive by a reference
        assert c.post("/v1/tasks", json={"name": "added", "path": "added"}, headers=ADMIN).status_code == 201


def test_a_task_replaced_while_a_request_waits_is_never_answered_by_the_new_one(root):
    """3-class 'x' swapped for a 5-class 'x' while the request is queued: a clear 404, not a 500 or a wrong label."""
    with admin_app(root, max_wait_ms=1500, max_batch=64) as c:
        assert c.post("/v1/tasks", json={"name": "x", "path": "deep"}, headers=ADMIN).status_code == 201
        image = png(make_images(1)[0])
        answers = {}

        def ask(k):
            answers[k] = c.post("/v1/predict", files={"file": ("a.png", image)}, data={"task": "x", "top_k": k})

        threads = [threading.Thread(target=ask, args=(k,)) for k in (1, 5)]
        for t in threads:
            t.start()
        time.sleep(0.5)  # both requests are queued, waiting for the batch deadline
        assert c.delete("/v1/tasks/x", headers=ADMIN).status_code == 200
        assert c.post("/v1/tasks", json={"name": "x", "path": "five"}, headers=ADMIN).status_code == 201
        for t in threads:
            t.join()
        for r in answers.values():
            assert r.status_code == 404 and "removed or replaced while the request waited" in r.json()["detail"]
        r = c.post("/v1/predict", files={"file": ("a.png", image)}, data={"task": "x", "top_k": 5})
        assert r.status_code == 200 and len(r.json()["predictions"]) == 5


def test_untrusted_host_header_is_refused(root):
    with app_for(root) as c:
        assert c.get("/v1/tasks", headers={"host": "evil.example"}).status_code == 400
        assert c.get("/v1/tasks").status_code == 200


def test_binding_beyond_loopback_needs_a_key():
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        ServeConfig().check_bind(host)
    with pytest.raises(ConfigError, match="refusing to listen on '0.0.0.0' without an API key"):
        ServeConfig().check_bind("0.0.0.0")
    for host in ("0.0.0.0", "10.1.2.3"):
        with pytest.raises(ConfigError, match="--trusted-host NAME"):
            ServeConfig(api_key=API_KEY).check_bind(host)
    ServeConfig(api_key=API_KEY, trusted_hosts=("127.0.0.1", "gpu-box.lan")).check_bind("0.0.0.0")
    ServeConfig(api_key=API_KEY, trusted_hosts=("10.1.2.3",)).check_bind("10.1.2.3")


def test_keys_come_from_a_private_file_or_the_environment(tmp_path, monkeypatch):
    key = tmp_path / "key"
    key.write_text(API_KEY + "\n")
    os.chmod(key, 0o644)
    with pytest.raises(ConfigError, match="readable by other users: chmod 600"):
        read_key(key, "VPTUNE_TEST_KEY")
    os.chmod(key, 0o600)
    assert read_key(key, "VPTUNE_TEST_KEY").get_secret_value() == API_KEY
    monkeypatch.setenv("VPTUNE_TEST_KEY", "from-env-0123456789")
    assert read_key(None, "VPTUNE_TEST_KEY").get_secret_value() == "from-env-0123456789"
    monkeypatch.delenv("VPTUNE_TEST_KEY")
    assert read_key(None, "VPTUNE_TEST_KEY") is None
    with pytest.raises(ConfigError, match="shorter than 16"):
        ServeConfig(api_key="short")


def test_docs_are_off_by_default_and_behind_the_key(root):
    with app_for(root, api_key=API_KEY) as c:
        assert c.get("/docs").status_code == 404 and c.get("/openapi.json").status_code == 404
    with app_for(root, api_key=API_KEY, docs=True) as c:
        assert c.get("/docs").status_code == 401 and c.get("/openapi.json").status_code == 401
        assert c.get("/openapi.json", headers={"x-api-key": API_KEY}).json()["info"]["title"] == "vptune serve"


def test_internal_errors_do_not_echo_exception_text(root, monkeypatch):
    bank = MultiTaskModel.from_dirs({"deep": root / "root" / "deep"})
    with TestClient(create_app(bank, trusted_hosts=HOSTS), raise_server_exceptions=False) as c:

        def broken(*args, **kwargs):
            raise RuntimeError("secret detail /srv/internal/path")

        monkeypatch.setattr(c.app.state.bank, "forward", broken)
        r = c.post("/v1/predict", files={"file": ("a.png", png(make_images(1)[0]))}, data={"task": "deep"})
        assert r.status_code == 500 and "secret" not in r.text and "reference" in r.json()["detail"]


def eps() -> bytes:
    return b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"


@pytest.mark.parametrize(
    "content,status,words",
    [
        (eps(), 415, "accepted format (PNG, JPEG, WEBP)"),
        (claimed_size_png(3000, 2000), 413, "3000x2000 pixels exceed the limit of 4096"),
        (claimed_size_png(20_000, 10_000), 413, "image too large"),
        (b"", 415, "not an image"),
    ],
)
def test_decoding_refuses_before_running_a_decoder(root, content, status, words):
    with app_for(root, max_pixels=4096) as c:
        r = c.post("/v1/predict", files={"file": ("x", content)}, data={"task": "deep"})
        assert r.status_code == status and words in r.json()["detail"]


def test_pixels_per_request_and_formats_are_configurable(root):
    im = png(Image.new("RGB", (40, 40)))
    with app_for(root, max_request_pixels=3 * 1600) as c:
        files = [("file", (f"{i}.png", im)) for i in range(4)]
        r = c.post("/v1/predict", files=files, data={"task": "deep"})
        assert r.status_code == 413 and "pixels in all" in r.json()["detail"]
        assert c.post("/v1/predict", files=files[:3], data={"task": "deep"}).status_code == 200
    with app_for(root, formats=("JPEG",)) as c:
        assert c.post("/v1/predict", files={"file": ("a.png", im)}, data={"task": "deep"}).status_code == 415


def test_large_jpeg_is_decoded_at_a_reduced_scale():
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1024, 2048, 3), dtype=np.uint8)).save(buf, "JPEG")
    small = decode_image(buf.getvalue(), "big.jpg", ("JPEG",), 10**8, target=(32, 32))
    assert small.size == (256, 128)  # 1/8 scale: still >= twice the model's input
    assert decode_image(buf.getvalue(), "big.jpg", ("JPEG",), 10**8).size == (2048, 1024)
    with pytest.raises(HTTPException) as err:
        decode_image(buf.getvalue(), "big.jpg", ("PNG",), 10**8)
    assert err.value.status_code == 415


@pytest.mark.parametrize("name", ["deep\n", "a b", "", "-x", "x" * 65])
def test_bank_task_names_are_matched_in_full(root, name):
    from vptune.errors import ArtifactError

    with pytest.raises(ArtifactError, match="is invalid"):
        MultiTaskModel().add_task(name, root / "root" / "deep")


@pytest.mark.parametrize(
    "argv,words",
    [
        (["--api-key", "x" * 20], "--api-key is not accepted"),
        (["--host", "0.0.0.0"], "refusing to listen on '0.0.0.0' without an API key"),
        (["--admin-key-file", "/nonexistent/key"], "key file '/nonexistent/key' cannot be read"),
        (["--max-pixels", "0"], "field 'max_pixels'"),
    ],
)
def test_cli_serve_refuses_unsafe_settings_before_loading(argv, words, capsys, monkeypatch):
    from vptune.cli import main

    monkeypatch.delenv("VPTUNE_API_KEY", raising=False)
    assert main(["serve", "--task", "a=/nonexistent", *argv]) == 2
    assert words in capsys.readouterr().err
