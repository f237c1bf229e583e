"""Reading images of any mode and size as RGB, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode (L, LA, P, RGBA, CMYK, I;16, I, F, ...) to 8-bit RGB."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        image = Image.fromarray(scaled.astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def load_image(source: str | Path | np.ndarray) -> Image.Image:
    """Load a file path or an (H, W, 3) uint8 array as an RGB PIL image.

    Raises:
        DataError: The file is missing, truncated or not an image (the message names it).
    """
    if isinstance(source, np.ndarray):
        return Image.fromarray(source)
    try:
        with Image.open(source) as img:
            img.load()
            return to_rgb(img)
    except FileNotFoundError:
        raise DataError(f"image file '{source}' does not exist") from None
    except Image.DecompressionBombError as err:
        raise DataError(
            f"image '{source}' is too large to decode ({err}); shrink or remove it, or pass --skip-bad-images"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as err:
        raise DataError(
            f"cannot read image '{source}' ({err}); fix or remove the file, or pass --skip-bad-images to skip it"
        ) from None
