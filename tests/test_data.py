"""Data sources on tiny generated trees: folder, csv, image modes, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_image_folder
from PIL import Image

from vptune.data import ImageDataset, build_transform, load_data, make_loader
from vptune.data.images import load_image
from vptune.errors import ConfigError, DataError

PRE = {"input_size": [32, 32], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear", "augment": "none"}


def test_folder_source_reads_splits_and_classes(image_folder):
    data = load_data(f"folder:{image_folder}")
    assert data.classes == ["cat", "dog", "fox"]
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 18, "val": 6, "test": 9}
    assert {label for _, label in data.splits["test"]} == {0, 1, 2}


def test_folder_without_val_carves_a_seeded_split(tmp_path):
    root = make_image_folder(tmp_path / "d", n_val=0, n_train=10)
    a = load_data(f"folder:{root}", val_fraction=0.2, seed=3)
    b = load_data(f"folder:{root}", val_fraction=0.2, seed=3)
    assert len(a.splits["val"]) == 6 and len(a.splits["train"]) == 24
    assert a.splits["val"] == b.splits["val"]
    assert not set(a.splits["val"]) & set(a.splits["train"])


def test_csv_source_with_and_without_split_column(tmp_path, image_folder):
    files = sorted((image_folder / "train").rglob("*.png"))
    rows = [
        f"{f.relative_to(image_folder)},{f.parent.name},{'test' if i % 3 == 0 else 'train'}"
        for i, f in enumerate(files)
    ]
    (image_folder / "with_split.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    data = load_data(f"csv:{image_folder / 'with_split.csv'}")
    assert data.classes == ["cat", "dog", "fox"] and len(data.splits["test"]) == 6 and "val" in data.splits
    (image_folder / "plain.csv").write_text("\n".join(r.rsplit(",", 1)[0] for r in rows))
    assert "test" not in load_data(f"csv:{image_folder / 'plain.csv'}").splits


def test_csv_numeric_labels_sort_numerically(tmp_path, image_folder):
    f = next((image_folder / "train").rglob("*.png")).relative_to(image_folder)
    (image_folder / "n.csv").write_text("\n".join(f"{f},{label}" for label in (10, 2, 1, 2, 10, 1)))
    assert load_data(f"csv:{image_folder / 'n.csv'}").classes == ["1", "2", "10"]


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "1"])
def test_any_image_mode_becomes_rgb(tmp_path, mode):
    arr = (np.arange(24 * 30).reshape(24, 30) % 251).astype(np.uint8)
    img = Image.fromarray(arr).convert(mode) if mode not in ("I;16",) else Image.fromarray(arr.astype(np.uint16) * 200)
    ext = "tiff" if mode in ("I;16", "I", "F", "CMYK") else "png"
    path = tmp_path / f"img.{ext}"
    img.save(path)
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (30, 24)
    assert build_transform(PRE, train=False)(out).shape == (3, 32, 32)


@pytest.mark.parametrize(
    ("setup", "spec", "message"),
    [
        (lambda r: None, "folder:{r}/missing", "does not exist"),
        (lambda r: (r / "x").mkdir(), "folder:{r}/x", "no train/ subfolder"),
        (lambda r: (r / "y" / "train").mkdir(parents=True), "folder:{r}/y", "no class folders"),
        (lambda r: (r / "z" / "train" / "a").mkdir(parents=True), "folder:{r}/z", "holds no images"),
        (lambda r: (r / "e.csv").write_text(""), "csv:{r}/e.csv", "has no rows"),
        (lambda r: (r / "b.csv").write_text("a.png,1,2,3\n"), "csv:{r}/b.csv", "row 1"),
        (lambda r: (r / "s.csv").write_text("a.png,1,holdout\n"), "csv:{r}/s.csv", "split 'holdout'"),
    ],
)
def test_bad_sources_give_clear_errors(tmp_path, setup, spec, message):
    setup(tmp_path)
    with pytest.raises(DataError, match=message):
        load_data(spec.format(r=tmp_path))


def test_unknown_label_folder_in_test_split(tmp_path):
    root = make_image_folder(tmp_path / "d")
    (root / "test" / "wolf").mkdir()
    with pytest.raises(DataError, match="class 'wolf' is not in train"):
        load_data(f"folder:{root}")


@pytest.mark.parametrize("spec", ["nocolon", "ftp:/x"])
def test_bad_spec_prefix(spec):
    with pytest.raises(ConfigError, match="data.spec"):
        load_data(spec)


def test_corrupt_image_is_named_or_skipped(tmp_path, image_folder):
    bad = image_folder / "train" / "cat" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    samples = load_data(f"folder:{image_folder}").splits["train"]
    samples = [s for s in samples if s[0] == str(bad)] + [s for s in samples if s[0] != str(bad)][:3]
    with pytest.raises(DataError, match="broken.png.*--skip-bad-images"):
        ImageDataset(samples, build_transform(PRE, train=False))[0]
    loader = make_loader(ImageDataset(samples, build_transform(PRE, train=False), skip_bad=True), 4, shuffle=False)
    batch = next(iter(loader))
    assert batch.skipped == 1 and batch[0].shape == (3, 3, 32, 32)


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels."""
    import io
    import struct
    import zlib

    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = bytearray(data[12:29])
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29], data[29:33] = ihdr, struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def test_decompression_bomb_is_named_and_skipped(image_folder):
    bomb = image_folder / "train" / "cat" / "bomb.png"
    bomb.write_bytes(bomb_png(20_000, 10_000))  # 200 megapixels declared in a 70-byte file
    samples = [(str(bomb), 0)] + load_data(f"folder:{image_folder}").splits["train"][:3]
    with pytest.raises(DataError, match="bomb.png' is too large to decode.*--skip-bad-images"):
        ImageDataset(samples, build_transform(PRE, train=False))[0]
    loader = make_loader(ImageDataset(samples, build_transform(PRE, train=False), skip_bad=True), 4, shuffle=False)
    assert next(iter(loader)).skipped == 1


@pytest.mark.parametrize("row", ["../outside.png,a", "/etc/passwd,a", "sub/../../x.png,a", "C:\\x.png,a", "~/x.png,a"])
def test_csv_paths_must_stay_inside_the_folder(image_folder, row):
    (image_folder / "evil.csv").write_text(f"train/cat/0.png,a\n{row}\n")
    with pytest.raises(DataError, match=r"evil.csv, row 2: path .* (absolute|leaves the data set folder)"):
        load_data(f"csv:{image_folder / 'evil.csv'}")
