"""Soak test of ``vptune serve`` under load, bad input and task churn (loopback only, bounded).

    .venv/bin/python benchmarks/serve_soak.py --clients 8 --seconds 60

The server runs in its own process (so its memory is measured alone) on 127.0.0.1 with an API key, an admin key
and a task root. ``--clients`` clients loop until the deadline, each request picked at random from:

- a valid image (PNG, JPEG, WebP and odd modes: 16-bit, CMYK, LA, palette+transparency) for a stable task; every
  answer is checked against that task's own ``Predictor`` (labels and scores);
- every file of a bad-input corpus generated here (truncated, empty, text, EPS, GIF, decompression bombs,
  huge dimensions, oversized bytes), and bad requests (unknown task, missing field, wrong key, foreign Host,
  too many files);
- task churn: one client removes and re-adds a task named ``swap`` alternating a 3-class and a 5-class folder,
  and adds/removes an isolated (vpt-prefix, private backbone copy) task; other clients predict on ``swap`` and the
  answer must match the version whose class count it has.

Prints requests served, 4xx by cause, 5xx (must be 0), wrong answers (must be 0), p50/p99 latency of the valid
predictions and the server's peak RSS against its RSS after start-up. Exit status 1 when a 5xx or a wrong answer
was seen.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing as mp
import os
import random
import socket
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
from PIL import Image

MODEL = "vptune_micro_vit"
API_KEY, ADMIN_KEY = "soak-api-key-0123456789", "soak-admin-key-0123456789"
STABLE = {
    "deep2": ({"name": "vpt-deep", "prompt_length": 2}, 3),
    "shallow5": ({"name": "vpt-shallow", "prompt_length": 5}, 4),
    "linear": ({"name": "linear"}, 6),
}
CHURN = {
    "swap3": ({"name": "vpt-deep", "prompt_length": 3}, 3),
    "swap5": ({"name": "vpt-shallow", "prompt_length": 4}, 5),
    "prefix": ({"name": "vpt-prefix", "prompt_length": 3}, 4),
}
LIMITS = {"max_image_bytes": 2 * 1024 * 1024, "max_pixels": 16_000_000, "max_files": 8, "max_isolated": 1}


def save_tasks(root: Path) -> None:
    """Every task folder on the seeded random micro ViT, with random trained tensors."""
    from vptune.backbones import create_vit, describe, weights_hash
    from vptune.methods import build_method
    from vptune.model import AdaptedModel
    from vptune.tasks import save_task

    vit = create_vit(MODEL, pretrained=False).eval()
    info, digest = describe(MODEL, vit), weights_hash(vit)
    pre = {"input_size": [32, 32], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear", "augment": "none"}
    src = {"pretrained": False, "weights": None, "img_size": None}
    for i, (name, (method, k)) in enumerate({**STABLE, **CHURN}.items()):
        torch.manual_seed(i)
        backbone = create_vit(MODEL, pretrained=False)
        model = AdaptedModel(backbone, info, build_method(method, info), k, backbone_hash=digest)
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(torch.randn_like(p) * 0.1)
        save_task(
            root / name, model, classes=[f"{name}-c{j}" for j in range(k)], preprocessing=pre, backbone_source=src
        )


def run_server(root: str, port_queue: Any, threads: int) -> None:
    """The server process: bank of the STABLE tasks, task management under ``root``."""
    import uvicorn

    from vptune.serve.app import create_app
    from vptune.tasks.multitask import MultiTaskModel

    torch.set_num_threads(threads)
    bank = MultiTaskModel.from_dirs({n: Path(root) / n for n in STABLE})
    app = create_app(bank, api_key=API_KEY, admin_key=ADMIN_KEY, task_root=root, **LIMITS)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # loopback only, a free port chosen by the OS
    port_queue.put(sock.getsockname()[1])
    uvicorn.Server(uvicorn.Config(app, log_level="error", access_log=False)).run(sockets=[sock])


def encode(image: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def claimed_size_png(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims another size (CRC fixed): a decompression bomb's shape."""
    import struct
    import zlib

    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    ihdr = bytearray(data[12:29])
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29], data[29:33] = ihdr, struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def valid_corpus() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = [Image.fromarray(rng.integers(0, 255, (40 + 8 * i, 48, 3), dtype=np.uint8)) for i in range(4)]
    gray16 = Image.fromarray((rng.integers(0, 65535, (36, 36))).astype(np.uint16))
    pal = rgb[0].convert("P")
    pal.info["transparency"] = 0
    return {
        "rgb0.png": encode(rgb[0], "PNG"),
        "rgb1.jpg": encode(rgb[1], "JPEG", quality=90),
        "rgb2.webp": encode(rgb[2], "WEBP"),
        "rgb3.png": encode(rgb[3], "PNG"),
        "gray16.png": encode(gray16, "PNG"),
        "cmyk.jpg": encode(rgb[0].convert("CMYK"), "JPEG"),
        "la.png": encode(rgb[1].convert("LA"), "PNG"),
        "pal_t.png": encode(pal, "PNG", transparency=0),
        "big.jpg": encode(Image.fromarray(rng.integers(0, 255, (1500, 2000, 3), dtype=np.uint8)), "JPEG"),
    }


def bad_corpus() -> dict[str, tuple[bytes, int]]:
    """file name -> (bytes, expected status)."""
    good = encode(Image.new("RGB", (40, 40), (10, 200, 30)), "PNG")
    noise = np.random.default_rng(1).integers(0, 255, (1100, 1100, 3), dtype=np.uint8)
    gif = encode(Image.new("P", (20, 20)), "GIF")
    return {
        "truncated.png": (good[: len(good) // 2], 400),
        "empty.png": (b"", 415),
        "text.txt": (b"just some text, not an image\n" * 10, 415),
        "doc.eps": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", 415),
        "anim.gif": (gif, 415),
        "bomb200mp.png": (claimed_size_png(20_000, 10_000), 413),
        "wide20mp.png": (claimed_size_png(20_000, 1_000), 413),
        "huge_dims.png": (encode(Image.new("L", (17_000, 1_000)), "PNG"), 413),
        "too_many_bytes.png": (encode(Image.fromarray(noise), "PNG"), 413),
        "junk_header.png": (b"\x89PNG\r\n\x1a\n" + os.urandom(200), 415),
    }


def references(root: Path, images: dict[str, bytes]) -> dict[tuple[str, str], list[tuple[str, float]]]:
    """Top-3 (label, score) of every (task, valid image) from the task's own Predictor."""
    from vptune.data.images import to_rgb
    from vptune.predict import Predictor
    from vptune.serve.decode import decode_image

    out = {}
    for name in [*STABLE, "swap3", "swap5", "prefix"]:
        predictor = Predictor.from_dir(root / name, device="cpu")
        for file, data in images.items():
            image = decode_image(data, file, ("PNG", "JPEG", "WEBP"), 16_000_000, target=(32, 32))
            top = predictor.predict([to_rgb(image)], top_k=3)[0]
            out[(name, file)] = [(p["label"], p["score"]) for p in top]
    return out


class Tally:
    def __init__(self) -> None:
        self.status: Counter[str] = Counter()
        self.causes: Counter[str] = Counter()
        self.wrong: list[str] = []
        self.latencies: list[float] = []
        self.requests = 0

    def record(self, kind: str, r: httpx.Response, expected: int | None = None) -> None:
        self.requests += 1
        self.status[str(r.status_code)] += 1
        if 400 <= r.status_code < 500:
            self.causes[f"{r.status_code} {kind}"] += 1
        if expected is not None and r.status_code != expected:
            self.wrong.append(f"{kind}: status {r.status_code}, expected {expected}: {r.text[:120]}")


def matches(body: dict[str, Any], ref: list[tuple[str, float]]) -> bool:
    got = [(p["label"], p["score"]) for p in body["predictions"]]
    return [g[0] for g in got] == [r[0] for r in ref] and all(abs(g[1] - r[1]) < 1e-3 for g, r in zip(got, ref))


async def client(i: int, url: str, deadline: float, refs: dict, valid: dict, bad: dict, tally: Tally) -> None:
    rng = random.Random(i)
    headers = {"x-api-key": API_KEY}
    bad_files = list(bad)
    async with httpx.AsyncClient(base_url=url, timeout=60.0, headers=headers) as http:
        step = 0
        while time.perf_counter() < deadline:
            step += 1
            if i == 0:  # the churn client
                await churn(http, step, tally)
                continue
            roll = rng.random()
            if roll < 0.55:
                task, file = rng.choice(list(STABLE)), rng.choice(list(valid))
                start = time.perf_counter()
                r = await http.post("/v1/predict", files={"file": (file, valid[file])}, data={"task": task, "top_k": 3})
                tally.record("valid", r, 200)
                if r.status_code == 200:
                    tally.latencies.append(time.perf_counter() - start)
                    if not matches(r.json(), refs[(task, file)]):
                        tally.wrong.append(f"{task}/{file}: {r.json()['predictions'][:1]} vs {refs[(task, file)][:1]}")
            elif roll < 0.7:
                file = rng.choice(list(valid))
                r = await http.post(
                    "/v1/predict", files={"file": (file, valid[file])}, data={"task": "swap", "top_k": 5}
                )
                tally.record("swap", r)
                if r.status_code == 200:
                    body = r.json()
                    version = "swap3" if len(body["predictions"]) == 3 else "swap5"
                    if not matches({"predictions": body["predictions"][:3]}, refs[(version, file)]):
                        tally.wrong.append(f"swap/{file}: answered by neither version")
                elif r.status_code != 404:
                    tally.wrong.append(f"swap: status {r.status_code}: {r.text[:120]}")
            elif roll < 0.9:
                file = bad_files[step % len(bad_files)]
                data, expected = bad[file]
                r = await http.post("/v1/predict", files={"file": (file, data)}, data={"task": "deep2"})
                tally.record(f"bad file ({file})", r, expected)
            else:
                await bad_request(http, rng, valid, tally)


async def bad_request(http: httpx.AsyncClient, rng: random.Random, valid: dict, tally: Tally) -> None:
    image = valid["rgb0.png"]
    kind = rng.choice(["unknown task", "missing field", "wrong key", "foreign host", "too many files", "top_k"])
    if kind == "unknown task":
        r = await http.post("/v1/predict", files={"file": ("a.png", image)}, data={"task": "nope"})
        expected = 404
    elif kind == "missing field":
        r = await http.post("/v1/predict", files={"file": ("a.png", image)})
        expected = 422
    elif kind == "wrong key":
        r = await http.get("/v1/tasks", headers={"x-api-key": "wrong-key-0123456789"})
        expected = 401
    elif kind == "foreign host":
        r = await http.get("/v1/tasks", headers={"host": "rebind.attacker.example"})
        expected = 400
    elif kind == "too many files":
        r = await http.post("/v1/predict", files=[("file", ("a.png", image))] * 9, data={"task": "deep2"})
        expected = 413
    else:
        r = await http.post("/v1/predict", files={"file": ("a.png", image)}, data={"task": "deep2", "top_k": 0})
        expected = 422
    tally.record(kind, r, expected)


async def churn(http: httpx.AsyncClient, step: int, tally: Tally) -> None:
    admin = {"x-admin-key": ADMIN_KEY}
    version = "swap3" if step % 2 else "swap5"
    r = await http.delete("/v1/tasks/swap", headers=admin)
    tally.record("remove swap", r)
    r = await http.post("/v1/tasks", json={"name": "swap", "path": version}, headers=admin)
    tally.record("add swap", r, 201)
    if step % 5 == 0:
        r = await http.post("/v1/tasks", json={"name": "prefix", "path": "prefix"}, headers=admin)
        tally.record("add isolated", r, 201)
        r = await http.post("/v1/tasks", json={"name": "prefix2", "path": "prefix"}, headers=admin)
        tally.record("isolated over the cap", r, 409)
        r = await http.delete("/v1/tasks/prefix", headers=admin)
        tally.record("remove isolated", r, 200)
    r = await http.post("/v1/tasks", json={"name": "x", "path": "../etc"}, headers=admin)
    tally.record("path outside root", r, 403)
    await asyncio.sleep(0.2)


def rss_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (1..64), client 0 churns tasks")
    parser.add_argument("--seconds", type=float, default=60.0, help="duration (at most 600)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the server")
    parser.add_argument("--json", help="also write the report to this file")
    args = parser.parse_args()
    if not (2 <= args.clients <= 64 and 0 < args.seconds <= 600):
        parser.error("use 2..64 clients and at most 600 seconds")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        save_tasks(root)
        valid, bad = valid_corpus(), bad_corpus()
        refs = references(root, valid)
        ctx = mp.get_context("spawn")
        ports = ctx.Queue()
        server = ctx.Process(target=run_server, args=(str(root), ports, args.threads), daemon=True)
        server.start()
        try:
            port = ports.get(timeout=900)  # start-up is slow on a saturated machine
            url = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            start_rss = rss_kib(server.pid)["VmRSS"]
            tally = Tally()

            async def drive() -> None:
                deadline = time.perf_counter() + args.seconds
                await asyncio.gather(*(client(i, url, deadline, refs, valid, bad, tally) for i in range(args.clients)))

            began = time.perf_counter()
            asyncio.run(drive())
            elapsed = time.perf_counter() - began
            end = rss_kib(server.pid)
        finally:
            server.terminate()
            server.join(timeout=10)
    lat = sorted(tally.latencies)
    five_xx = sum(n for s, n in tally.status.items() if s.startswith("5"))
    report = {
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "requests": tally.requests,
        "status": dict(sorted(tally.status.items())),
        "4xx_by_cause": dict(sorted(tally.causes.items())),
        "5xx": five_xx,
        "wrong_answers": len(tally.wrong),
        "wrong_examples": tally.wrong[:5],
        "valid_latency_ms_p50": round(1000 * float(np.percentile(lat, 50)), 1) if lat else None,
        "valid_latency_ms_p99": round(1000 * float(np.percentile(lat, 99)), 1) if lat else None,
        "server_rss_mib_start": round(start_rss / 1024, 1),
        "server_rss_mib_end": round(end["VmRSS"] / 1024, 1),
        "server_rss_mib_peak": round(end["VmHWM"] / 1024, 1),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if five_xx or tally.wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
