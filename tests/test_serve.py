"""The HTTP service: every endpoint, every kind of bad input, the API key and micro-batching."""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from test_multitask import build_artifacts, make_images, reference  # noqa: E402

from vptune.serve.app import create_app  # noqa: E402
from vptune.serve.batcher import MicroBatcher, QueueFullError  # noqa: E402
from vptune.tasks.multitask import MultiTaskModel  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

LIMITS = {"max_image_bytes": 20_000, "max_pixels": 64 * 64, "max_body_bytes": 100_000, "trusted_hosts": ("testserver",)}
ADMIN = {"x-admin-key": "admin-key-0123456789"}
KEY = "api-key-0123456789abc"


def png(image: Image.Image | np.ndarray) -> bytes:
    buf = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return build_artifacts(tmp_path_factory.mktemp("tasks"), ["deep", "shallow", "linear", "lora"])


@pytest.fixture(scope="module")
def client(artifacts):
    bank = MultiTaskModel.from_dirs({"deep": artifacts["deep"], "shallow": artifacts["shallow"]})
    admin = {"admin_key": ADMIN["x-admin-key"], "task_root": artifacts["deep"].parent}
    with TestClient(create_app(bank, max_batch=8, max_wait_ms=30, **LIMITS, **admin)) as c:
        yield c


@pytest.fixture(scope="module")
def images():
    return make_images(6, seed=3)


def test_health_and_tasks(client):
    assert client.get("/health").json() == {"status": "ok", "tasks": 2, "backbone": "vptune_micro_vit", "queued": 0}
    tasks = client.get("/v1/tasks").json()["tasks"]
    assert [(t["name"], t["num_classes"], t["method"], t["prompt_tokens"], t["mode"]) for t in tasks] == [
        ("deep", 3, "vpt-deep", 2, "batched"),
        ("shallow", 4, "vpt-shallow", 5, "batched"),
    ]


def test_predict_equals_the_task_predictor(client, artifacts, images):
    r = client.post("/v1/predict", files={"file": ("a.png", png(images[0]))}, data={"task": "shallow", "top_k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = reference(artifacts["shallow"]).predict([images[0]], top_k=2)[0]
    assert body["task"] == "shallow" and [p["label"] for p in body["predictions"]] == [p["label"] for p in expected]
    assert body["predictions"][0]["score"] == pytest.approx(expected[0]["score"], abs=1e-4)
    files = [("file", (f"{i}.png", png(im))) for i, im in enumerate(images[:3])]
    many = client.post("/v1/predict", files=files, data={"task": "deep"}).json()
    assert [m["file"] for m in many] == ["0.png", "1.png", "2.png"] and len(many[0]["predictions"]) == 3


def test_batch_mixes_tasks(client, images):
    files = [("file", (f"{i}.png", png(im))) for i, im in enumerate(images[:3])]
    for tasks in ({"tasks": "deep,shallow, deep"}, {"tasks": ["deep", "shallow,deep"]}):
        out = client.post("/v1/predict/batch", files=files, data=tasks).json()
        assert [(o["task"], len(o["predictions"])) for o in out] == [("deep", 3), ("shallow", 4), ("deep", 3)]
    r = client.post("/v1/predict/batch", files=files, data={"tasks": "deep"})
    assert r.status_code == 422 and r.json()["detail"] == "field 'tasks': 1 task names for 3 files; give one per file"


def test_add_and_remove_tasks(client, artifacts, images):
    r = client.post("/v1/tasks", json={"name": "lin", "path": "linear"}, headers=ADMIN)
    assert r.status_code == 201 and r.json()["num_classes"] == 5
    assert client.post("/v1/tasks", json={"name": "lin", "path": "linear"}, headers=ADMIN).status_code == 409
    r = client.post("/v1/tasks", json={"name": "x", "path": "nonexistent"}, headers=ADMIN)
    assert r.status_code == 400 and "is not a task folder" in r.json()["detail"]
    assert client.post("/v1/tasks", json={"name": "x"}, headers=ADMIN).json()["detail"] == "missing field 'path'"
    r = client.post("/v1/predict", files={"file": ("a.png", png(images[0]))}, data={"task": "lin"})
    assert len(r.json()["predictions"]) == 5
    assert client.delete("/v1/tasks/lin", headers=ADMIN).json() == {"removed": "lin"}
    r = client.delete("/v1/tasks/lin", headers=ADMIN)
    assert r.status_code == 404 and r.json()["detail"].startswith("unknown task 'lin'")


def expect(r, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    assert all(w in r.json()["detail"] for w in words), r.json()


def test_bad_input_gets_clear_4xx_and_server_keeps_serving(client, images):
    good = png(images[0])
    noise = np.random.default_rng(0).integers(0, 255, (100, 100, 3), dtype=np.uint8)

    def post(content: bytes, name: str = "x.png", **data):
        return client.post("/v1/predict", files={"file": (name, content)}, data={"task": "deep", **data})

    expect(client.post("/v1/predict", files={"file": ("a.png", good)}, data={"task": "nope"}), 404, "'nope'", "deep")
    expect(post(b"hello, not an image", "note.txt"), 415, "'note.txt'", "not an image of an accepted format")
    expect(post(good[: len(good) // 2], "cut.png"), 400, "'cut.png'", "truncated")
    expect(post(png(noise), "big.png"), 413, "'big.png'", "bytes exceed the limit of 20000")
    expect(post(png(np.zeros((100, 100, 3), np.uint8)), "wide.png"), 413, "'wide.png'", "100x100 pixels")
    expect(post(good, top_k=0), 422, "field 'top_k'")
    expect(client.post("/v1/predict", files={"file": ("a.png", good)}), 422, "missing field 'task'")
    expect(client.post("/v1/predict", data={"task": "deep"}), 422, "missing field 'file'")
    expect(client.post("/v1/predict", data={"task": "deep", "file": "text"}), 422, "field 'file'")
    big = {"file": ("a.png", b"0" * 150_000)}
    expect(client.post("/v1/predict", files=big, data={"task": "deep"}), 413, "exceeds the limit of 100000")
    multipart = {"content-type": "multipart/form-data; boundary=b"}  # streamed: no Content-Length, counted on arrival
    chunked = client.post("/v1/predict", content=iter([b"--b\r\n", *[b"x" * 60_000] * 3]), headers=multipart)
    expect(chunked, 413, "of more than 100000 bytes exceeds the limit")
    assert post(good).status_code == 200 and client.get("/health").status_code == 200


def test_api_key(artifacts, images):
    bank = MultiTaskModel.from_dirs({"deep": artifacts["deep"]})
    with TestClient(create_app(bank, api_key=KEY, trusted_hosts=("testserver",))) as c:
        assert c.get("/health").status_code == 200
        expect(c.get("/v1/tasks"), 401, "x-api-key")
        expect(c.get("/v1/tasks", headers={"x-api-key": "wrong"}), 401, "API key")
        assert c.get("/v1/tasks", headers={"x-api-key": KEY}).status_code == 200
        files = {"file": ("a.png", png(images[0]))}
        assert c.post("/v1/predict", files=files, data={"task": "deep"}).status_code == 401
        r = c.post("/v1/predict", files=files, data={"task": "deep"}, headers={"x-api-key": KEY})
        assert r.status_code == 200


def test_concurrent_requests_are_micro_batched(client, images):
    bank, batcher = client.app.state.bank, client.app.state.batcher
    jobs = [(im, task) for im in images for task in ("deep", "shallow")]  # 12 requests
    expected = bank.predict([im for im, _ in jobs], [t for _, t in jobs], top_k=3)
    before = dict(batcher.stats)

    def one(job):
        im, task = job
        return client.post("/v1/predict", files={"file": ("a.png", png(im))}, data={"task": task, "top_k": 3}).json()

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(one, jobs))
    for got, want, (_, task) in zip(results, expected, jobs):
        assert got["task"] == task and [p["label"] for p in got["predictions"]] == [p["label"] for p in want]
        assert got["predictions"][0]["score"] == pytest.approx(want[0]["score"], abs=1e-4)
    batches = batcher.stats["batches"] - before["batches"]
    assert batcher.stats["items"] - before["items"] == 12 and batches < 12 and batcher.stats["largest_batch"] > 1


def test_cli_serve_checks_task_specs(capsys):
    from vptune.cli import build_parser, main

    args = build_parser().parse_args(["serve", "--task", "a=runs/a"])
    assert (args.host, args.port, args.max_batch, args.api_key_file) == ("127.0.0.1", 8000, None, None)
    assert main(["serve", "--task", "no-equals-sign"]) == 2
    assert "use NAME=DIR" in capsys.readouterr().err


def test_batcher_flushes_full_batches_and_fails_items_alone():
    sizes = []

    def run(images, tasks):
        sizes.append(len(images))
        return [ValueError(f"bad item {t}") if t == "bad" else img * 2 for img, t in zip(images, tasks)]

    async def go():
        batcher = MicroBatcher(run, max_batch=3, max_wait_ms=5000, max_queue=4)
        one = torch.ones(2)
        good = batcher.submit([one], ["a"])
        mixed = batcher.submit([one, one], ["bad", "a"])  # fills the batch: runs at once, not after 5 s
        done = await asyncio.wait_for(asyncio.gather(good, mixed, return_exceptions=True), 3)
        assert torch.equal(done[0][0], one * 2) and "bad item" in str(done[1])
        with pytest.raises(QueueFullError, match="server busy"):
            await batcher.submit([one] * 5, ["a"] * 5)
        await batcher.stop()
        batcher.close()

    asyncio.run(go())
    assert sizes == [3]
