"""Defaults a newcomer meets: per-method optimiser defaults, the unset marker, help texts, `python -m vptune`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from vptune.cli import build_parser, main
from vptune.config import OPTIMIZER_DEFAULTS, UNSET, build_config
from vptune.methods import METHODS, Method


@pytest.mark.parametrize("name", sorted(METHODS))
def test_no_optimiser_settings_take_the_methods_defaults(name):
    cfg = build_config(flags={"method.name": name, "optim.lr": UNSET})
    d = METHODS[name].default_optim
    assert (cfg.optim.optimizer, cfg.optim.lr, cfg.optim.weight_decay) == (d["optimizer"], d["lr"], d["weight_decay"])
    assert cfg.optim.scale_lr  # the decided rule: base lrs, x batch/256, for every optimiser


def test_every_method_declares_complete_defaults():
    for cls in METHODS.values():
        assert set(cls.default_optim) == {"optimizer", "lr", "weight_decay"}, cls.name
    assert Method.default_optim["optimizer"] in OPTIMIZER_DEFAULTS


@pytest.mark.parametrize(
    ("flags", "yaml", "expected"),
    [
        # the user's keys win; the rest come from the method's default
        ({"method.name": "full", "optim.lr": 0.01}, "", ("adamw", 0.01, METHODS["full"].default_optim["weight_decay"])),
        (
            {"method.name": "linear"},
            "optim: {weight_decay: 0.3}\n",
            ("sgd", METHODS["linear"].default_optim["lr"], 0.3),
        ),
        # another optimiser than the method's: that optimiser's generic lr / weight decay
        (
            {"method.name": "full", "optim.optimizer": "sgd"},
            "",
            ("sgd", OPTIMIZER_DEFAULTS["sgd"]["lr"], OPTIMIZER_DEFAULTS["sgd"]["weight_decay"]),
        ),
        # the default method (vpt-deep) when none is named
        ({}, "", tuple(METHODS["vpt-deep"].default_optim[k] for k in ("optimizer", "lr", "weight_decay"))),
    ],
)
def test_optim_keys_fill_per_key(flags, yaml, expected, tmp_path):
    path = None
    if yaml:
        path = tmp_path / "c.yaml"
        path.write_text(yaml)
    cfg = build_config(path, flags)
    assert (cfg.optim.optimizer, cfg.optim.lr, cfg.optim.weight_decay) == expected


def test_unset_is_skipped_and_none_is_a_value():
    cfg = build_config(flags={"data.val_split": None, "data.test_split": UNSET, "train.epochs": UNSET})
    assert cfg.data.val_split is None and cfg.data.test_split == "test" and cfg.train.epochs == 10


def test_methods_prints_each_default(capsys):
    assert main(["methods"]) == 0
    text = capsys.readouterr().out
    assert text.count("default optimiser:") == len(METHODS)
    assert main(["methods", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"]: r["default_optim"] for r in rows} == {n: c.default_optim for n, c in METHODS.items()}


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from ((f"{name} {n}", s) for n, s in _subparsers(sub))


def test_every_flag_of_every_command_has_help():
    missing = [
        f"{name} {action.option_strings or action.dest}"
        for name, sub in _subparsers(build_parser())
        for action in sub._actions
        if not isinstance(action, argparse._SubParsersAction) and not (action.help or "").strip()
    ]
    assert missing == []


def test_train_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for part in ("(default: vpt-deep)", "(default: 10)", "(default: 32)", "(default: vit_base_patch16_224.orig_in21k)"):
        assert part in text
    assert "lr x batch/256" in text and "(default: the method's, see `vptune methods`)" in text


def test_python_dash_m_vptune():
    res = subprocess.run([sys.executable, "-m", "vptune", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.startswith("vptune ")


def test_broken_pipe_exits_quietly():
    proc = subprocess.Popen([sys.executable, "-m", "vptune", "methods"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the command writes, as with `vptune methods | head -0`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""
