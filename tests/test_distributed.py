"""Multi-process training: 2 CPU processes (gloo, torchrun) match one process with the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import make_image_folder
from safetensors.torch import load_file

from vptune.config import build_config
from vptune.engine.distributed import DistContext, ShardedBatchSampler, per_rank_batch
from vptune.engine.trainer import fit
from vptune.errors import ConfigError

WORKER = """
import json, sys
from vptune.cli import main
from vptune.config import build_config
from vptune.engine.trainer import fit

spec = json.loads(sys.argv[1])
assert main(["train", *spec["cli"]]) == 0  # the unchanged CLI, straight through


def crash(epoch, record):
    if epoch == 0:
        raise KeyboardInterrupt


cfg = build_config(flags=spec["resume_flags"])
try:
    fit(cfg, on_epoch_end=crash)
except KeyboardInterrupt:
    pass
fit(cfg)  # resumes from the checkpoint rank 0 wrote
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sharded_batches_are_the_single_process_batches():
    from vptune.data import make_loader

    n, batch, seed = 13, 4, 7
    items = [(torch.zeros(1), i) for i in range(n)]  # label = index
    single = make_loader(items, batch, shuffle=True)  # the one-process training loader
    single.generator.manual_seed(seed + 2)  # epoch 2
    expected = [labels.tolist() for _, labels in single]
    ranks = []
    for rank in range(2):
        sampler = ShardedBatchSampler(n, batch, DistContext(2, rank, rank), seed)
        sampler.set_epoch(2)
        ranks.append(list(sampler))
    assert len(ranks[0]) == len(ranks[1]) == len(expected) == 4
    for b, want in enumerate(expected):
        got = ranks[0][b] + ranks[1][b]
        assert sorted(got) == sorted(want) and set(ranks[0][b]).isdisjoint(ranks[1][b])
    assert ranks[1][-1] == []  # the last global batch holds one image: rank 1's share is empty, not padded


def test_global_batch_must_split_over_ranks():
    assert per_rank_batch(8, DistContext(4, 0, 0)) == 2
    with pytest.raises(ConfigError, match="train.batch_size"):
        per_rank_batch(10, DistContext(4, 0, 0))


def test_two_cpu_processes_match_one_process(tmp_path):
    data = make_image_folder(tmp_path / "data", n_train=5, n_val=2, n_test=3)
    for extra in sorted((data / "train" / "dog").iterdir())[:2]:
        extra.unlink()  # 13 train images, global batch 4: the last batch has one image (rank 1 gets none)
    flags = {
        "model.name": "vptune_micro_vit",
        "model.pretrained": False,
        "data.spec": f"folder:{data}",
        "method.name": "vpt-deep",
        "method.prompt_length": 2,
        "method.dropout": 0.0,
        "train.epochs": 2,
        "train.batch_size": 4,
        "train.device": "cpu",
        "train.progress": False,
        "optim.lr": 0.05,
    }
    cli = ["--model", "vptune_micro_vit", "--no-pretrained", "--data", f"folder:{data}", "--method", "vpt-deep"]
    cli += ["--prompt-length", "2", "--epochs", "2", "--batch-size", "4", "--lr", "0.05", "--device", "cpu"]
    cli += ["--set", "method.dropout=0.0", "--no-progress", "--out", str(tmp_path / "ddp")]
    spec = {"cli": cli, "resume_flags": {**flags, "out": str(tmp_path / "ddp_resumed")}}
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    cmd += ["--master_port", str(free_port()), str(script), json.dumps(spec)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]

    single = fit(build_config(flags={**flags, "out": str(tmp_path / "single")}))
    want = {k: v.detach() for k, v in single.model.trainable_state_dict().items()}
    for run in ("ddp", "ddp_resumed"):
        got = load_file(str(tmp_path / run / "task.safetensors"))
        assert set(got) == set(want)
        for name, tensor in want.items():
            torch.testing.assert_close(got[name], tensor, rtol=0, atol=1e-5, msg=f"{run}: {name}")

    out = tmp_path / "ddp"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl", "task.json", "task.safetensors"]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x.get("epoch", x.get("split")) for x in lines] == [1, 2, "test"]  # one writer, no duplicates
    assert lines[0]["train"]["n"] == 13 and lines[1]["val"]["n"] == 6 and lines[-1]["n"] == 9
    meta = json.loads((out / "task.json").read_text())["metrics"]
    assert meta["test_n"] == 9 and meta["test_top1"] == pytest.approx(single.metrics["test_top1"])
    assert meta["val_top1"] == pytest.approx(single.metrics["val_top1"])
    assert proc.stderr.count("vptune: vpt-deep on") == 3, proc.stderr  # 3 runs started, printed by rank 0 only
    assert proc.stderr.count("epoch 2/2:") == 2 and "resuming" in proc.stderr


def test_unused_trainable_parameters_are_found_without_side_effects(images):
    from conftest import tiny_model

    from vptune.engine.distributed import SINGLE, init_distributed, unused_trainable_parameters

    model = tiny_model({"name": "vpt-deep", "prompt_length": 2})
    assert unused_trainable_parameters(model, images) == []
    model.spare = torch.nn.Parameter(torch.zeros(3))  # trainable but never used in forward
    state = torch.get_rng_state()
    assert unused_trainable_parameters(model, images) == ["spare"]
    assert torch.equal(torch.get_rng_state(), state) and all(p.grad is None for p in model.parameters())
    assert init_distributed("cpu") == (SINGLE, torch.device("cpu"))  # no WORLD_SIZE: one process
