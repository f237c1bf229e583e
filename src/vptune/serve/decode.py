"""Decoding uploads with bounded cost: allowed formats only, pixels checked from the header before decoding,
JPEG decoded at a reduced scale when far larger than the model needs, and concurrent decodes bounded.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from fastapi import HTTPException
from PIL import Image, UnidentifiedImageError

from ..data.images import to_rgb


@dataclass(frozen=True)
class Header:
    """What the image's header says, read without decoding pixels."""

    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _open(data: bytes, filename: str, formats: tuple[str, ...]) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=list(formats))
    except UnidentifiedImageError:
        raise HTTPException(
            415, f"file '{filename}' is not an image of an accepted format ({', '.join(formats)})"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise HTTPException(413, f"file '{filename}': image too large ({err})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise HTTPException(400, f"file '{filename}' is truncated or damaged ({type(err).__name__})") from None


def read_header(data: bytes, filename: str, formats: tuple[str, ...], max_pixels: int) -> Header:
    """Format and size from the header only; 413 over ``max_pixels``, 415 for other formats, 400 if damaged."""
    with _open(data, filename, formats) as img:
        header = Header(str(img.format), *img.size)
    if header.pixels > max_pixels:
        raise HTTPException(
            413, f"file '{filename}': {header.width}x{header.height} pixels exceed the limit of {max_pixels}"
        )
    return header


def decode_image(
    data: bytes, filename: str, formats: tuple[str, ...], max_pixels: int, target: tuple[int, int] | None = None
) -> Image.Image:
    """Decode an upload to RGB.

    Args:
        data: The file's bytes.
        filename: Named in errors.
        formats: Pillow formats accepted (others: 415 before any decoder runs).
        max_pixels: Largest width x height decoded (413 beyond, from the header).
        target: The model's input (height, width): JPEGs are decoded at the smallest scale >= twice it.
    """
    read_header(data, filename, formats, max_pixels)
    img = _open(data, filename, formats)
    try:
        if target is not None and img.format == "JPEG":
            img.draft("RGB", (2 * target[1], 2 * target[0]))  # DCT scaling: 1/2, 1/4 or 1/8 of the pixels
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
        return to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise HTTPException(413, f"file '{filename}': image too large ({err})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise HTTPException(400, f"file '{filename}' is truncated or damaged ({type(err).__name__})") from None
    finally:
        img.close()
