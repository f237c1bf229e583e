"""Image inputs of ``vptune predict``: files, folders (searched recursively) and glob patterns, predicted in batches."""

from __future__ import annotations

import csv
import glob
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .data.images import IMAGE_SUFFIXES, load_image
from .errors import DataError


def expand_images(inputs: Sequence[str]) -> list[str]:
    """Files as given; folders -> their image files (recursive, sorted); patterns with ``*?[`` -> their matches.

    Raises:
        DataError: An input that is neither an existing file, a folder with images, nor a pattern that matches.
    """
    out: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"folder '{item}' holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            out += found
        elif any(c in item for c in "*?[") and not path.exists():
            found = sorted(p for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not found:
                raise DataError(f"pattern '{item}' matches no files")
            out += found
        else:
            out.append(item)  # a missing file is reported by load_image with its name
    return list(dict.fromkeys(out))


def predict_files(
    predictor: Any, paths: Sequence[str], *, top_k: int, batch_size: int = 64, skip_bad_images: bool = False
) -> Iterator[dict[str, Any]]:
    """Yield ``{"image", "predictions"}`` per readable image, or ``{"image", "error"}`` for a skipped one.

    Raises:
        DataError: An unreadable image when ``skip_bad_images`` is false (the message names it).
    """
    for start in range(0, len(paths), batch_size):
        loaded, bad = [], []
        for path in paths[start : start + batch_size]:
            try:
                loaded.append((path, load_image(path)))
            except DataError as err:
                if not skip_bad_images:
                    raise
                bad.append({"image": path, "error": str(err)})
        preds = predictor.predict([im for _, im in loaded], top_k=top_k) if loaded else []
        yield from ({"image": path, "predictions": p} for (path, _), p in zip(loaded, preds))
        yield from bad


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    """One row per image: ``image, label_1, score_1, ..., label_k, score_k`` (skipped images: ``error``)."""
    from .engine.io import atomic_write

    k = max((len(r.get("predictions", [])) for r in rows), default=0)
    header = ["image"] + [f"{name}_{i}" for i in range(1, k + 1) for name in ("label", "score")] + ["error"]

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            for r in rows:
                cells = [c for p in r.get("predictions", []) for c in (p["label"], f"{p['score']:.6f}")]
                w.writerow([r["image"], *cells, *[""] * (2 * k - len(cells)), r.get("error", "")])

    atomic_write(Path(path), write)
