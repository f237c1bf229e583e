"""``vptune demo``: adapt the bundled, fractal-pretrained micro ViT to offline tasks with four methods.

Everything is offline and CPU-sized. Each (task, method) run is a normal ``vptune train`` run in
``OUT/TASK/METHOD`` (so it is resumable and re-running skips finished runs); the report compares test
accuracy, trainable parameters and artifact bytes, then predicts a few test images from a saved artifact.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .config import build_config
from .engine.io import atomic_write, write_json
from .reporting import grouped_bar_plot, markdown_table

DEMO_TASKS = ("digits", "dsprites_location")
# Per-method settings for the micro ViT, picked by a small lr sweep on offline:digits train800 -> val200
# (5 epochs; see docs/demo.md). vpt-deep reuses vpt-shallow's learning rate.
DEMO_METHODS: dict[str, dict[str, Any]] = {
    "linear": {"method.name": "linear", "optim.optimizer": "sgd", "optim.lr": 0.1, "optim.weight_decay": 0.0},
    "full": {"method.name": "full", "optim.optimizer": "adamw", "optim.lr": 1e-3, "optim.weight_decay": 0.05},
    "vpt-shallow": {
        "method.name": "vpt-shallow",
        "method.prompt_length": 10,
        "optim.optimizer": "sgd",
        "optim.lr": 0.25,
        "optim.weight_decay": 0.0,
    },
    "vpt-deep": {
        "method.name": "vpt-deep",
        "method.prompt_length": 10,
        "optim.optimizer": "sgd",
        "optim.lr": 0.25,
        "optim.weight_decay": 0.0,
    },
}
COLUMNS = [
    ("method", "method"),
    ("test_top1", "test top-1"),
    ("trainable_params", "trainable params"),
    ("trainable_percent_txt", "% of backbone"),
    ("artifact_kb", "artifact KB"),
    ("train_s", "train s"),
]


def demo_config(task: str, method: str, out: Path, epochs: int, progress: bool, model: str, weights: str | None):
    flags = {
        "model.name": model,
        "model.weights": weights,
        "data.spec": f"offline:{task}",
        "data.train_split": "train800val200",
        "method.head_init": "small",
        "train.epochs": epochs,
        "train.batch_size": 64,
        "data.val_split": None,  # trains on train800val200: no held-out split to score each epoch
        "optim.warmup_epochs": 1.0,
        "optim.scale_lr": False,  # DEMO_METHODS' learning rates are the step sizes themselves
        "train.progress": progress,
        "out": str(out / task / method),
        **DEMO_METHODS[method],
    }
    return build_config(flags=flags)


def run_demo(
    out: str | Path = "runs/demo",
    *,
    tasks: tuple[str, ...] = DEMO_TASKS,
    methods: tuple[str, ...] = tuple(DEMO_METHODS),
    epochs: int = 6,
    progress: bool = True,
    model: str = "vptune_micro_vit",
    weights: str | None = None,
) -> dict[str, Any]:
    """Train every (task, method) pair, write ``report.md``, ``report.json`` and ``report.png`` into ``out``."""
    from .engine.trainer import fit
    from .tasks import read_task

    out = Path(out)
    rows: list[dict[str, Any]] = []
    for t_i, task in enumerate(tasks):
        for m_i, method in enumerate(methods):
            cfg = demo_config(task, method, out, epochs, progress, model, weights)
            run_dir = Path(cfg.out)
            print(f"[{t_i * len(methods) + m_i + 1}/{len(tasks) * len(methods)}] {task} / {method}", file=sys.stderr)
            if not (run_dir / "task.json").is_file():  # finished runs are skipped on re-run
                fit(cfg)
            summary = read_task(run_dir).summary()
            rows.append(
                {
                    "task": task,
                    "method": method,
                    "test_top1": summary["metrics"].get("test_top1"),
                    "trainable_params": summary["trainable_params"],
                    "backbone_params": summary["backbone_params"],
                    "trainable_percent": summary["trainable_percent"],
                    "artifact_bytes": summary["artifact_bytes"],
                    "train_seconds": summary["metrics"].get("train_seconds"),
                    "epochs": epochs,
                }
            )
    report = {"model": model, "epochs": epochs, "rows": rows, "predictions": predict_samples(out, tasks[0], methods)}
    write_json(out / "report.json", report)
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text(render_report(report)))
    grouped_bar_plot(
        out / "report.png",
        list(tasks),
        {m: [r["test_top1"] for r in rows if r["method"] == m] for m in methods},
        ylabel="test top-1",
        title=f"vptune demo: {model} (fractal-pretrained), {epochs} epochs per run",
    )
    return report


def predict_samples(out: Path, task: str, methods: tuple[str, ...], n: int = 4) -> list[dict[str, Any]]:
    """Predict a few test images of ``task`` from the saved artifact of the last method (round trip)."""
    from PIL import Image

    from .data.offline import get_offline_task, load_offline_task
    from .predict import Predictor

    method = methods[-1]
    images, labels = load_offline_task(task)["test"]
    classes = get_offline_task(task).classes
    sample_dir = out / "samples"
    sample_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = sample_dir / f"{task}_{i}.png"
        Image.fromarray(images[i]).save(path)
        paths.append(path)
    predictor = Predictor.from_dir(out / task / method, device="cpu")
    preds = predictor.predict(paths, top_k=1)
    return [
        {
            "image": str(p),
            "truth": classes[int(y)],
            "predicted": pr[0]["label"],
            "score": pr[0]["score"],
            "artifact": str(out / task / method),
        }
        for p, y, pr in zip(paths, labels[:n], preds)
    ]


def render_report(report: dict[str, Any]) -> str:
    """The demo report as Markdown: one table per task, then the prediction round trip."""
    lines = [f"# vptune demo ({report['model']}, {report['epochs']} epochs per run, CPU)", ""]
    for task in dict.fromkeys(r["task"] for r in report["rows"]):
        rows = []
        for r in report["rows"]:
            if r["task"] == task:
                rows.append(
                    {
                        **r,
                        "trainable_percent_txt": f"{r['trainable_percent']:.2f}%",
                        "artifact_kb": f"{r['artifact_bytes'] / 1024:.1f}",
                        "train_s": f"{r['train_seconds'] or 0.0:.1f}",
                    }
                )
        lines += [f"## offline:{task}", "", markdown_table(rows, COLUMNS), ""]
    lines += ["## Round trip: predictions from a saved artifact", ""]
    lines += [
        f"- `{p['image']}`: predicted **{p['predicted']}** ({p['score']:.2f}), truth {p['truth']}"
        for p in report["predictions"]
    ]
    return "\n".join(lines) + "\n"
