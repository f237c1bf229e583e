"""Configuration: YAML + flags + --set precedence, validation messages that name the field."""

from __future__ import annotations

import pytest

from vptune.config import build_config
from vptune.errors import ConfigError


def test_precedence_yaml_then_flags_then_set(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("method: {name: vpt-deep, prompt_length: 7}\ntrain: {epochs: 4, batch_size: 16}\n")
    cfg = build_config(cfg_file, {"train.epochs": 9}, ["train.batch_size=3", "optim.lr=0.25"])
    assert cfg.method.prompt_length == 7 and cfg.train.epochs == 9
    assert cfg.train.batch_size == 3 and cfg.optim.lr == 0.25


def test_method_as_plain_string_in_yaml(tmp_path):
    (tmp_path / "c.yaml").write_text("method: linear\n")
    assert build_config(tmp_path / "c.yaml").method.name == "linear"


@pytest.mark.parametrize(
    ("flags", "overrides", "message"),
    [
        ({"method.name": "linear", "method.prompt_length": 5}, [], "method.prompt_length: not an option"),
        ({"method.name": "nope"}, [], "unknown method 'nope'"),
        ({}, ["train.epochs=0"], "train.epochs"),
        ({}, ["train.nope=1"], "train.nope: not an option"),
        ({}, ["optim.optimizer=adam"], "optim.optimizer"),
        ({"method.name": "vpt-deep", "method.prompt_length": -1}, [], "method.prompt_length"),
        ({"method.name": "vpt-deep", "method.output": "mean"}, [], "method.output"),
        ({}, ["novalue"], "expected key=value"),
        ({}, ["train.epochs.x=1"], "train.epochs"),
        ({"train.epochs": 3}, ["train.epochs.x=1"], "is a value, not a section"),
    ],
)
def test_invalid_values_name_the_field(flags, overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_config(flags={"data.spec": "folder:x", **flags}, overrides=overrides)


@pytest.mark.parametrize("text", ["- a\n- b\n", "model: [unclosed\n"])
def test_bad_yaml_names_the_file(tmp_path, text):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ConfigError, match="bad.yaml"):
        build_config(tmp_path / "bad.yaml")
