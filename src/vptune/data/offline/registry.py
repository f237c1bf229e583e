"""Registry of the offline, fully deterministic VTAB-1k-style task suite.

Every task is generated on the fly from a seed (no downloads): ``load_offline_task(name, seed)`` returns the
VTAB-1k splits ``train800``, ``val200``, ``train800val200`` and ``test`` as read-only numpy arrays.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vptune.data.offline import cells, clevr, digits, dsprites, landcover, textures
from vptune.data.offline.export import write_vtab_layout

IMAGE_SIZE = 32
N_TRAIN = 800
N_VAL = 200
SPLITS: tuple[str, ...] = ("train800", "val200", "train800val200", "test")
GenerateFn = Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class OfflineTask:
    """One offline image-classification task.

    Attributes:
        name: Registry name, e.g. ``"dsprites_location"``.
        group: VTAB-1k group: ``"natural"``, ``"specialized"`` or ``"structured"``.
        classes: Human-readable class names; index = label.
        image_size: Side length of the square RGB images.
        source: One line on where the data comes from.
        description: What varies and how the label is derived.
        max_test: Size of the test split.
        generate: ``generate(n, rng) -> (images uint8 (n, S, S, 3), labels int64 (n,))``; deterministic
            given the generator state.
    """

    name: str
    group: str
    classes: tuple[str, ...]
    image_size: int
    source: str
    description: str
    max_test: int
    generate: GenerateFn

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)


_TASKS: tuple[OfflineTask, ...] = (
    OfflineTask(
        name="digits",
        group="natural",
        classes=digits.CLASSES,
        image_size=IMAGE_SIZE,
        source="scikit-learn UCI handwritten digits (sklearn.datasets.load_digits, 1797 8x8 images)",
        description="Real handwritten digits upscaled bilinearly to 32x32 with a random ink and background "
        "colour; the label is the digit. Splits are disjoint slices of one seeded permutation.",
        max_test=digits.POOL_SIZE - N_TRAIN - N_VAL,  # 797: the source allows no more
        generate=digits.generate,
    ),
    OfflineTask(
        name="textures",
        group="natural",
        classes=textures.CLASSES,
        image_size=IMAGE_SIZE,
        source="procedural, after the Describable Textures Dataset (Cimpoi et al. 2014)",
        description="Two-colour texture patterns with random colours, orientation, frequency, phase, "
        "illumination and noise; the label is the pattern type.",
        max_test=1000,
        generate=textures.generate,
    ),
    OfflineTask(
        name="cells",
        group="specialized",
        classes=cells.CLASSES,
        image_size=IMAGE_SIZE,
        source="procedural, after PatchCamelyon (Veeling et al. 2018)",
        description="Synthetic H&E patches with stain, exposure and blur drawn from the same distributions for "
        "both labels; label 1 when the central group of nuclei is a disordered clump of irregular, vesicular "
        "nuclei rather than a regular ring.",
        max_test=1000,
        generate=cells.generate,
    ),
    OfflineTask(
        name="landcover",
        group="specialized",
        classes=landcover.CLASSES,
        image_size=IMAGE_SIZE,
        source="procedural, after EuroSAT (Helber et al. 2019)",
        description="Synthetic aerial patches whose colours come from one palette shared by all classes, with "
        "strong colour jitter, haze and noise; the label is the spatial structure (land-cover type).",
        max_test=1000,
        generate=landcover.generate,
    ),
    OfflineTask(
        name="dsprites_location",
        group="structured",
        classes=dsprites.LOCATION_CLASSES,
        image_size=IMAGE_SIZE,
        source="procedural, after dSprites (Matthey et al. 2017)",
        description="White square / ellipse / heart on black with uniformly sampled scale, orientation and "
        "position; the label is the x position (32 values) binned into 16 classes as in VTAB.",
        max_test=1000,
        generate=dsprites.generate_location,
    ),
    OfflineTask(
        name="dsprites_orientation",
        group="structured",
        classes=dsprites.ORIENTATION_CLASSES,
        image_size=IMAGE_SIZE,
        source="procedural, after dSprites (Matthey et al. 2017)",
        description="White square / ellipse / heart on black with uniformly sampled scale, orientation and "
        "position; the label is the orientation (40 values) binned into 16 classes as in VTAB.",
        max_test=1000,
        generate=dsprites.generate_orientation,
    ),
    OfflineTask(
        name="clevr_count",
        group="structured",
        classes=clevr.CLASSES,
        image_size=IMAGE_SIZE,
        source="procedural, after CLEVR (Johnson et al. 2017)",
        description="3-10 shaded spheres, cubes and cylinders of random CLEVR colours and materials on a "
        "grey floor with mild perspective and occlusion; the label is the object count minus 3.",
        max_test=1000,
        generate=clevr.generate,
    ),
)
_BY_NAME: dict[str, OfflineTask] = {t.name: t for t in _TASKS}


def list_offline_tasks() -> list[OfflineTask]:
    """All offline tasks, natural first, then specialized, then structured."""
    return list(_TASKS)


def get_offline_task(name: str) -> OfflineTask:
    """Looks up a task by name.

    Raises:
        ValueError: If the name is unknown; the message lists the known names.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown offline task {name!r}; known tasks: {', '.join(_BY_NAME)}") from None


def task_rng(name: str, seed: int) -> np.random.Generator:
    """The task's random generator: seeded from (crc32 of the name, seed), stable on every machine."""
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return np.random.default_rng([zlib.crc32(name.encode("utf-8")), seed])


@functools.lru_cache(maxsize=16)
def _load(name: str, seed: int) -> tuple[tuple[str, tuple[np.ndarray, np.ndarray]], ...]:
    task = get_offline_task(name)
    total = N_TRAIN + N_VAL + task.max_test
    images, labels = task.generate(total, task_rng(name, seed))
    s = task.image_size
    if images.shape != (total, s, s, 3) or images.dtype != np.uint8:
        raise RuntimeError(f"{name}: generator returned images {images.shape} {images.dtype}")
    if labels.shape != (total,) or labels.dtype != np.int64:
        raise RuntimeError(f"{name}: generator returned labels {labels.shape} {labels.dtype}")
    cuts = {
        "train800": slice(0, N_TRAIN),
        "val200": slice(N_TRAIN, N_TRAIN + N_VAL),
        "train800val200": slice(0, N_TRAIN + N_VAL),
        "test": slice(N_TRAIN + N_VAL, total),
    }
    out = []
    for split in SPLITS:
        x, y = images[cuts[split]].copy(), labels[cuts[split]].copy()
        x.setflags(write=False)
        y.setflags(write=False)
        out.append((split, (x, y)))
    return tuple(out)


def load_offline_task(name: str, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Generates (or returns the cached) VTAB-1k-style splits of a task.

    One call to the task generator produces ``800 + 200 + max_test`` images from a generator seeded with
    ``(crc32(name), seed)``; ``train800`` is the first 800, ``val200`` the next 200, ``train800val200`` the
    first 1000 and ``test`` the rest. Results are cached in-process (``functools.lru_cache``, 16 entries);
    every call returns a fresh dict over the same read-only arrays.

    Args:
        name: Task name, see :func:`list_offline_tasks`.
        seed: Non-negative data seed.

    Returns:
        ``{split: (images uint8 (n, S, S, 3), labels int64 (n,))}`` for the four splits.

    Raises:
        ValueError: Unknown task name or negative seed.
    """
    return dict(_load(name, int(seed)))


def export_vtab_layout(name: str, root: str | Path, seed: int = 0) -> Path:
    """Writes a task as PNG files plus VTAB-1k list files under ``ROOT/NAME`` (atomically).

    See :func:`vptune.data.offline.export.write_vtab_layout` for the layout.

    Returns:
        The task folder.

    Raises:
        FileExistsError: If the folder exists already (remove it or choose another root).
        ValueError: Unknown task name.
    """
    task = get_offline_task(name)
    return write_vtab_layout(name, task.classes, load_offline_task(name, seed), root)
