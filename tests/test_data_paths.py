"""List files (VTAB-1k lists, FGVC JSON) can not point outside their data set folder; `data check` flags it."""

from __future__ import annotations

import json

import pytest
from test_vtab_fgvc import make_fgvc_tree, make_vtab_tree

from vptune.data import load_data
from vptune.data.check import check_suite
from vptune.data.paths import outside_reason
from vptune.errors import DataError

ESCAPES = ["../../secret.png", "/etc/passwd", "images/../../x.png", "C:\\Windows\\x.png", "\\\\host\\share\\x.png"]


@pytest.mark.parametrize("rel", ESCAPES)
def test_escaping_paths_are_recognised(rel):
    assert outside_reason(rel) is not None


@pytest.mark.parametrize("rel", ["images/a.png", "a..b.png", "x/..hidden/y.png", "./images/a.png"])
def test_plain_relative_paths_pass(rel):
    assert outside_reason(rel) is None


@pytest.mark.parametrize("rel", ESCAPES[:3])
def test_vtab_list_escape_is_refused_and_flagged(tmp_path, rel):
    folder = make_vtab_tree(tmp_path, "eurosat", 10)
    (folder / "val200.txt").write_text(f"images/val200/0.png 1\n{rel} 2\n")
    with pytest.raises(DataError, match=r"val200.txt, line 2: path .* (absolute|leaves the data set folder)"):
        load_data(f"vtab1k:{folder}")
    eurosat = check_suite("vtab1k", tmp_path, tasks=["eurosat"])["tasks"][0]
    assert any("val200.txt, line 2: path" in p["message"] for p in eurosat["problems"])


@pytest.mark.parametrize("rel", ESCAPES[:3])
def test_fgvc_entry_escape_is_refused_and_flagged(tmp_path, rel):
    folder = make_fgvc_tree(tmp_path, "OxfordFlower", ".")
    entries = json.loads((folder / "test.json").read_text())
    (folder / "test.json").write_text(json.dumps({**entries, rel: 3}))
    with pytest.raises(DataError, match=r"test.json, entry .*: path .* (absolute|leaves the data set folder)"):
        load_data(f"fgvc:{folder}")
    flowers = check_suite("fgvc", tmp_path, tasks=["flowers"])["tasks"][0]
    assert flowers["status"] == "error" and any("test.json, entry" in p["message"] for p in flowers["problems"])
