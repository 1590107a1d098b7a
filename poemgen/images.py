"""Safe image loading: the first stage of the pipeline.

One job: take whatever the user handed us (a path, bytes, a file object or a PIL image) and
return a fully decoded 8-bit RGB image the later stages can rely on, with EXIF orientation
applied and every colour mode, bit depth and transparency normalised. Everything a user can get
wrong (missing file, not an image, truncated download, a gigantic image) becomes an
`ImageLoadError` whose message is one line naming the input and saying what to do.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps

from poemgen.errors import PoemgenError

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, Image.Image]

_READABLE = "JPEG, PNG, WebP, GIF, BMP, TIFF …"
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "PA"}


class ImageLoadError(PoemgenError):
    """An input image that cannot be used; the message is always a single line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.splitlines()))


class ImageTooLargeError(ImageLoadError):
    """An image with more pixels than allowed (a server answers 413 rather than 415)."""


def describe_source(source: object) -> str:
    """The short name of `source` used in messages."""
    if isinstance(source, Image.Image):
        return "<PIL image>"
    if isinstance(source, (str, os.PathLike)):
        return os.fsdecode(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if hasattr(source, "read"):
        name = getattr(source, "name", None)
        return name if isinstance(name, str) else "<file>"
    return f"<{type(source).__name__}>"


def load_image(source: ImageSource, *, max_pixels: int = 89_478_485,
               name: str | None = None) -> Image.Image:
    """Load `source` as a new, fully decoded 8-bit RGB image.

    Animated images give their first frame; a PIL image passed in is converted from its current
    frame and never modified. Images with more than `max_pixels` pixels are refused before their
    pixel data is decoded. Pillow's own decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`) is
    also enforced, so the effective limit is the smaller of the two. Messages name the input
    by `name` when given (bytes read from a file or an upload), else as `describe_source` does.
    """
    name = name or describe_source(source)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            if isinstance(source, Image.Image):
                image = source
            else:
                image = Image.open(io.BytesIO(read_bytes(source, name)))
            if image.width == 0 or image.height == 0:
                raise ImageLoadError(f"{name}: has no pixels ({image.width}×{image.height}); "
                                     "give a photo")
            if image.width * image.height > max_pixels:
                raise ImageTooLargeError(
                    f"{name}: is {image.width}×{image.height} pixels, more than the limit of "
                    f"{max_pixels:,}; downscale it or raise max_pixels"
                )
            image.load()
            image = ImageOps.exif_transpose(image)
        except Image.UnidentifiedImageError:
            raise ImageLoadError(
                f"{name}: is not an image Pillow can read ({_READABLE}); "
                "convert it to one of these formats"
            ) from None
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
            raise ImageTooLargeError(
                f"{name}: is too large to decode safely ({error}); downscale it first"
            ) from None
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise ImageLoadError(
                f"{name}: is truncated or corrupt ({error}); re-export or re-download it"
            ) from None
    return _to_rgb(image, name)


def read_bytes(source: object, name: str) -> bytes:
    """The raw bytes of a path, bytes-like or file-object source."""
    if isinstance(source, (str, os.PathLike)):
        if os.path.isdir(source):
            raise ImageLoadError(f"{name}: is a directory, not an image; pass an image file")
        try:
            with open(source, "rb") as file:
                data = file.read()
        except FileNotFoundError:
            raise ImageLoadError(f"{name}: no such file; check the path") from None
        except PermissionError:
            raise ImageLoadError(
                f"{name}: cannot be read (permission denied); fix its permissions"
            ) from None
        except OSError as error:
            raise ImageLoadError(
                f"{name}: cannot be read ({error.strerror}); check the file"
            ) from None
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read()
        if isinstance(data, str):
            raise ImageLoadError(f"{name}: is open in text mode; open it with mode 'rb'")
    else:
        raise TypeError(f"cannot load an image from {type(source).__name__}")
    if not data:
        raise ImageLoadError(f"{name}: is empty; pass a non-empty image file")
    return data


def _to_rgb(image: Image.Image, name: str) -> Image.Image:
    """`image` as 8-bit RGB; it is already a private copy (from `exif_transpose`)."""
    if image.mode.startswith("I;16"):
        # 16-bit has a fixed range: map 0..65535 linearly onto 0..255 (65535 → 255, 32768 → 128).
        pixels = np.asarray(image).astype(np.float64) / 257.0
        return _grey_array_to_rgb(pixels)
    if image.mode in ("I", "F"):
        # 32-bit int and float have no fixed range. Values already within 0..255 are kept as
        # they are; otherwise the range spanning both 0..255 and the image's actual minimum and
        # maximum is stretched onto 0..255, so nothing clips and dark stays darker than bright.
        pixels = np.asarray(image).astype(np.float64)
        pixels[~np.isfinite(pixels)] = 0.0
        low, high = min(pixels.min(), 0.0), max(pixels.max(), 255.0)
        return _grey_array_to_rgb((pixels - low) * (255.0 / (high - low)))
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    try:
        return image if image.mode == "RGB" else image.convert("RGB")
    except ValueError:
        raise ImageLoadError(
            f"{name}: uses the {image.mode} colour mode, which cannot be converted to RGB; "
            "save it as an ordinary RGB image"
        ) from None


def _grey_array_to_rgb(pixels: np.ndarray) -> Image.Image:
    """An RGB image from a 2-D array of grey levels already scaled to 0..255."""
    grey = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")
