"""The code's shape, checked: one block loop, declared capabilities, docs that name real modules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "vptune"
# the backbone interface (backbones/) and the one forward path (model.py) are the only places that know blocks
BLOCK_OWNERS = {SRC / "model.py"}


def sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "backbones" not in p.relative_to(SRC).parts)


def test_only_the_backbone_interface_touches_blocks():
    pattern = re.compile(r"\.blocks\b")  # backbone.blocks, vit.blocks, model.backbone.blocks[i], ...
    offenders = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sources()
        if path not in BLOCK_OWNERS
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, "iterate blocks through vptune.backbones.Backbone:\n" + "\n".join(offenders)


def test_no_module_checks_which_hooks_a_class_overrides():
    # e.g. `type(method).after_pool is not Method.after_pool` or getattr(type(m), hook) is getattr(Method, hook)
    pattern = re.compile(r"type\([^)]*\)\.\w+\s+is\s+(not\s+)?\w+\.\w+|getattr\(type\(")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sources()
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, "declare capabilities as Method class attributes instead:\n" + "\n".join(offenders)


def tree_paths(text: str) -> set[str]:
    """Paths named in the doc's first code block: a tree under ``src/vptune/`` (two spaces per level)."""
    block = text.split("```")[1].splitlines()
    found, parents = set(), ["src/vptune"]
    for line in block[2:]:  # block[0] is the fence line, block[1] the root
        indent = len(line) - len(line.lstrip())
        if not line.strip() or indent > 8:  # blank or a description's continuation line
            continue
        level = indent // 2
        names = [n.strip() for n in re.split(r"\s{2,}", line.strip())[0].split(",")]
        for name in names:
            assert re.fullmatch(r"[\w.]+/?", name), f"not a path in the tree: {name!r}"
            found.add("/".join([*parents[:level], name.rstrip("/")]))
        if names[-1].endswith("/"):
            parents = [*parents[:level], names[-1].rstrip("/")]
    return found


def documented_paths() -> list[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    paths = set(re.findall(r"\b((?:src/vptune|tests|docs|benchmarks)/[\w/.-]*\w)", text))
    return sorted(paths | tree_paths(text))


@pytest.mark.parametrize("path", documented_paths())
def test_every_module_the_architecture_doc_names_exists(path):
    assert (ROOT / path).exists(), f"docs/architecture.md names {path}, which does not exist"
