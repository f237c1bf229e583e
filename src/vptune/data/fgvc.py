"""``fgvc:ROOT/NAME``: the five FGVC data sets of VPT from ``train.json``/``val.json``/``test.json``.

Each JSON file is an object ``{relative_image_path: class_id}`` (the VPT release's format). Class ids may be
sparse (NABirds): as in the official code, the sorted distinct ids of ``train.json`` map to labels 0..C-1,
and ``val``/``test`` ids must be among them. Splits: ``train``, ``val``, ``test`` and ``trainval``
(train + val, for the final runs of the paper's protocol).

| name | data set | classes | folder names tried under ROOT | image roots tried (relative to the folder) |
|---|---|---|---|---|
| cub200 | CUB-200-2011 | 200 | cub200, CUB_200_2011, cub | images/, CUB_200_2011/images/, . |
| nabirds | NABirds | 555 | nabirds, NABirds | images/, nabirds/images/, . |
| flowers | Oxford Flowers | 102 | flowers, OxfordFlower, oxford_flowers, flowers102 | ., jpg/ |
| stanford_dogs | Stanford Dogs | 120 | stanford_dogs, StanfordDogs, Stanford-dogs, dogs | Images/, images/, . |
| stanford_cars | Stanford Cars | 196 | stanford_cars, StanfordCars, Stanford-cars, cars | ., car_ims/ |

The image root is the first candidate under which the first entry of ``train.json`` exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from .paths import outside_reason
from .sources import Sample, TaskData, register_source
from .vtab import read_class_names, resolve_task_dir

FGVC_SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class FgvcDataset:
    """One FGVC data set: canonical name, display title, class count, folder aliases, image-root candidates."""

    name: str
    title: str
    num_classes: int
    aliases: tuple[str, ...]
    image_roots: tuple[str, ...]


FGVC_DATASETS: tuple[FgvcDataset, ...] = (
    FgvcDataset("cub200", "CUB-200-2011", 200, ("CUB_200_2011", "cub"), ("images", "CUB_200_2011/images", ".")),
    FgvcDataset("nabirds", "NABirds", 555, ("NABirds",), ("images", "nabirds/images", ".")),
    FgvcDataset("flowers", "Oxford Flowers", 102, ("OxfordFlower", "oxford_flowers", "flowers102"), (".", "jpg")),
    FgvcDataset(
        "stanford_dogs", "Stanford Dogs", 120, ("StanfordDogs", "Stanford-dogs", "dogs"), ("Images", "images", ".")
    ),
    FgvcDataset("stanford_cars", "Stanford Cars", 196, ("StanfordCars", "Stanford-cars", "cars"), (".", "car_ims")),
)


def find_fgvc_dataset(name: str) -> FgvcDataset | None:
    """The data set for a canonical name or folder alias (case-insensitive), or None."""
    key = name.strip().lower().replace("-", "_")
    for ds in FGVC_DATASETS:
        if key in {n.lower().replace("-", "_") for n in (ds.name, *ds.aliases)}:
            return ds
    return None


def read_split_json(path: Path) -> dict[str, int]:
    """``{relative_path: class_id}`` with integer ids.

    Raises:
        DataError: Missing file, invalid JSON, not an object, or a non-integer class id (names file and key).
    """
    if not path.is_file():
        raise DataError(f"split file '{path}' is missing (expected {', '.join(s + '.json' for s in FGVC_SPLITS)})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"'{path}' is not valid JSON: {err}") from None
    if not isinstance(data, dict) or not data:
        raise DataError(f"'{path}' must be a non-empty JSON object {{relative_image_path: class_id}}")
    out: dict[str, int] = {}
    for rel, cid in data.items():
        if isinstance(cid, bool) or not (isinstance(cid, int) or (isinstance(cid, str) and cid.lstrip("-").isdigit())):
            raise DataError(f"{path}, entry '{rel}': class id {cid!r} is not an integer")
        reason = outside_reason(str(rel))
        if reason:
            raise DataError(f"{path}, entry '{rel}': {reason}")
        out[str(rel)] = int(cid)
    return out


def label_map(train: dict[str, int], num_classes: int, path: Path) -> dict[int, int]:
    """Sorted distinct train ids -> 0..C-1; more ids than the canonical count is an error."""
    ids = sorted(set(train.values()))
    if len(ids) > num_classes:
        raise DataError(f"'{path}' has {len(ids)} distinct class ids but this data set has {num_classes} classes")
    return {cid: i for i, cid in enumerate(ids)}


def find_image_root(folder: Path, ds: FgvcDataset, first: str) -> Path:
    """The first image-root candidate under which ``first`` exists."""
    for cand in ds.image_roots:
        if (folder / cand / first).is_file():
            return (folder / cand).resolve() if cand != "." else folder
    tried = ", ".join(str(folder / c / first) for c in ds.image_roots)
    raise DataError(f"image '{first}' (first entry of {folder / 'train.json'}) not found; tried {tried}")


def dataset_layout(arg: str) -> tuple[Path, FgvcDataset]:
    """Resolve ``ROOT/NAME`` into (data set folder, data set)."""
    given = Path(arg).expanduser()
    ds = find_fgvc_dataset(given.name)
    if ds is None:
        known = ", ".join(d.name for d in FGVC_DATASETS)
        raise DataError(f"'{given.name}' is not an FGVC data set; use one of {known} (or a folder alias)")
    folder = resolve_task_dir(given.parent, given.name, (ds.name, *ds.aliases))
    if folder is None:
        raise DataError(f"FGVC folder '{given}' does not exist (also tried {', '.join(ds.aliases)} under it)")
    return folder, ds


@register_source("fgvc")
def load_fgvc(arg: str, options: dict[str, Any]) -> TaskData:
    """Load ``ROOT/NAME`` (see the module table); every listed image must exist."""
    folder, ds = dataset_layout(arg)
    raw = {split: read_split_json(folder / f"{split}.json") for split in FGVC_SPLITS}
    mapping = label_map(raw["train"], ds.num_classes, folder / "train.json")
    image_root = find_image_root(folder, ds, next(iter(raw["train"])))
    splits: dict[str, list[Sample]] = {}
    for split, entries in raw.items():
        samples: list[Sample] = []
        for rel, cid in entries.items():
            if cid not in mapping:
                raise DataError(f"{folder / (split + '.json')}, entry '{rel}': class id {cid} does not occur in train")
            path = image_root / rel
            if not path.is_file():
                raise DataError(f"{folder / (split + '.json')}, entry '{rel}': image '{path}' does not exist")
            samples.append((str(path), mapping[cid]))
        splits[split] = samples
    splits["trainval"] = splits["train"] + splits["val"]
    classes = read_class_names(folder, len(mapping)) or [str(cid) for cid in mapping]
    return TaskData(name=ds.name, classes=classes, splits=splits)  # type: ignore[arg-type]
