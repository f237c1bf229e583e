"""``vptune tune``: a 2x2 grid on the micro ViT, resumable, writing best.json for other tools."""

from __future__ import annotations

import json

import optuna
import pytest

import vptune.engine.trainer as trainer
from vptune.cli import main
from vptune.tune import best_overrides, load_best, study_name_for


def tune_args(data_dir, out, *extra):
    return [
        "tune",
        "--model",
        "vptune_micro_vit",
        "--no-pretrained",
        "--data",
        f"folder:{data_dir}",
        "--method",
        "linear",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--grid",
        "small",
        "--no-progress",
        "--out",
        str(out),
        *extra,
    ]


def study_trials(out):
    storage = f"sqlite:///{(out / 'study.db').resolve()}"
    study = optuna.load_study(study_name=study_name_for("data", "linear"), storage=storage)
    return study.get_trials(deepcopy=False)


def test_grid_search_resumes_without_rerunning_and_writes_best(image_folder, tmp_path, monkeypatch, capsys):
    out = tmp_path / "tune"
    real_fit = trainer.fit
    calls, interrupt = [], [True]

    def interrupted_second_trial(cfg, **kwargs):
        calls.append((cfg.optim.lr, cfg.optim.weight_decay))
        if len(calls) == 2 and interrupt[0]:
            raise KeyboardInterrupt
        return real_fit(cfg, **kwargs)

    monkeypatch.setattr(trainer, "fit", interrupted_second_trial)
    assert main(tune_args(image_folder, out)) == 130  # interrupted: one trial complete, one failed
    states = sorted(t.state.name for t in study_trials(out))
    assert states == ["COMPLETE", "FAIL"]

    calls.clear()
    interrupt[0] = False
    assert main(tune_args(image_folder, out)) == 0  # resumes: the failed point again, then the other two
    assert len(calls) == 3 and len(set(calls)) == 3
    complete = [t for t in study_trials(out) if t.state.name == "COMPLETE"]
    points = {(t.params["lr"], t.params["weight_decay"]) for t in complete}
    assert len(complete) == 4 and points == {(lr, wd) for lr in (10.0, 1.0) for wd in (0.001, 0.0)}

    calls.clear()
    assert main(tune_args(image_folder, out)) == 0  # nothing left: no trial reruns
    assert calls == [] and len(study_trials(out)) == 5

    best = load_best(out)
    assert best["task"] == "data" and best["method"] == "linear" and best["trials"] == 4
    assert set(best["optim"]) == {"optimizer", "lr", "weight_decay", "scale_lr"} and best["optim"]["scale_lr"]
    assert (best["optim"]["lr"], best["optim"]["weight_decay"]) in points
    assert best["val_top1"] == max(t.value for t in complete) and best["method_options"]["output"] == "auto"
    assert f"optim.lr={json.dumps(best['optim']['lr'])}" in best_overrides(best)
    trial_dirs = sorted(p.name for p in (out / "trials").iterdir())
    assert len(trial_dirs) == 4 and all((out / "trials" / d / "task.json").is_file() for d in trial_dirs)
    assert "test_top1" not in json.loads((out / "trials" / trial_dirs[0] / "task.json").read_text())["metrics"]


def test_pruning_reports_every_epoch(image_folder, tmp_path):
    out = tmp_path / "prune"
    args = tune_args(image_folder, out, "--prune", "--lrs", "10", "--wds", "0,0.001", "--json")
    args[args.index("--epochs") + 1] = "2"
    assert main(args) == 0
    trials = study_trials(out)
    assert len(trials) == 2
    assert all(sorted(t.intermediate_values) == [0, 1] or t.state.name == "PRUNED" for t in trials)


def test_other_settings_need_another_study(image_folder, tmp_path):
    out = tmp_path / "t"
    assert main(tune_args(image_folder, out, "--lrs", "1", "--wds", "0")) == 0
    assert main(tune_args(image_folder, out, "--lrs", "1", "--wds", "0", "--set", "train.seed=3")) == 2


@pytest.mark.parametrize("grid,opt,n", [("paper", "sgd", 40), ("paper", "adamw", 16)])
def test_paper_grids(grid, opt, n):
    from vptune.config import build_config
    from vptune.tune import TuneOptions, grid_points, search_space

    cfg = build_config(flags={"optim.optimizer": opt, "method.name": "vpt-deep"})
    space = search_space(cfg, TuneOptions(grid=grid, prompt_lengths=[1, 5]))
    assert len(grid_points(space)) == 2 * n and space["weight_decay"] == [0.01, 0.001, 1e-4, 0.0]


def _study_with(points):
    """An in-memory study holding complete trials ``(params, value)``."""
    study = optuna.create_study(direction="maximize")
    for params, value in points:
        dists = {k: optuna.distributions.CategoricalDistribution([v]) for k, v in params.items()}
        study.add_trial(optuna.create_trial(params=params, distributions=dists, value=value))
    return study


TUNE_TIE_CASES = [
    # tune and bench share one rule: smaller lr, then larger weight decay, then shorter prompt
    ([({"lr": 10.0, "weight_decay": 0.0}, 0.5), ({"lr": 1.0, "weight_decay": 0.0}, 0.5)], {"lr": 1.0}),
    ([({"lr": 1.0, "weight_decay": 0.0}, 0.5), ({"lr": 1.0, "weight_decay": 0.01}, 0.5)], {"weight_decay": 0.01}),
    (
        [
            ({"lr": 1.0, "weight_decay": 0.0, "prompt_length": 50}, 0.5),
            ({"lr": 1.0, "weight_decay": 0.0, "prompt_length": 5}, 0.5),
        ],  # fmt: skip
        {"prompt_length": 5},
    ),
    ([({"lr": 1.0, "weight_decay": 0.0}, 0.4), ({"lr": 10.0, "weight_decay": 0.0}, 0.6)], {"lr": 10.0}),
]


@pytest.mark.parametrize(("points", "expected"), TUNE_TIE_CASES)
def test_tune_ties_follow_the_bench_rule(points, expected):
    from vptune.tune import best_trial

    for order in (points, points[::-1]):
        best = best_trial(_study_with(order), {k: [] for k in order[0][0]})
        assert {k: best.params[k] for k in expected} == expected


def test_tune_searches_any_method_option_and_keeps_the_lr_rule(tmp_path):
    from vptune.config import build_config
    from vptune.errors import ConfigError
    from vptune.tune import TuneOptions, search_space, trial_config

    cfg = build_config(flags={"method": {"name": "adapter"}, "optim.optimizer": "adamw", "data.spec": "offline:digits"})
    space = search_space(cfg, TuneOptions(options={"reduction": [8, 64]}))
    assert space["reduction"] == [8, 64] and space["lr"] == [0.001, 5e-4, 1e-4, 0.005]
    run = trial_config(cfg, {"lr": 0.001, "weight_decay": 0.0, "reduction": 64}, tmp_path, False)
    assert run.method.reduction == 64 and run.optim.scale_lr is True and run.data.test_split is None
    with pytest.raises(ConfigError, match="no option 'rank'"):
        search_space(cfg, TuneOptions(options={"rank": [4]}))
