"""Safe image loading: the first stage of the pipeline.

One job: take whatever the user handed us (a path, bytes, a file object or a PIL image) and
return a fully decoded 8-bit RGB image the later stages can rely on, with EXIF orientation
applied and every colour mode, bit depth and transparency normalised. Everything a user can get
wrong (missing file, not an image, truncated download, a gigantic image) becomes an
`ImageLoadError` whose message is one line naming the input and saying what to do.

Photos far larger than CLIP's input are decoded reduced (`min_side`): JPEGs at 1/2, 1/4 or 1/8
scale by the decoder itself, others box-averaged right after decoding, so no full-size copy
outlives the decoder. A `DecodeBudget` bounds the pixels decoding at once across threads.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import BinaryIO, Callable, Iterator, TypeVar, Union

import numpy as np
from PIL import Image, ImageOps

from poemgen.errors import PoemgenError

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, Image.Image]

_READABLE = "JPEG, PNG, WebP, GIF, BMP, TIFF …"
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "PA"}
# Modes whose values can be box-averaged (palette indices and 1-bit and 16-bit modes cannot).
_REDUCIBLE_MODES = {"L", "LA", "La", "RGB", "RGBA", "RGBa", "I", "F", "CMYK", "YCbCr"}
# A reduced photo keeps its shorter side at least this many times CLIP's input side, so the
# image processor's own resampling still does the last, antialiased step.
REDUCE_MARGIN = 2
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit


class ImageLoadError(PoemgenError):
    """An input image that cannot be used; the message is always a single line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.splitlines()))


class ImageTooLargeError(ImageLoadError):
    """An image with more pixels than allowed (a server answers 413 rather than 415)."""


class ImageBusyError(ImageLoadError):
    """Other images hold the decoding budget; the same image may succeed shortly (a server
    answers 503 with Retry-After)."""


class DecodeBudget:
    """At most `pixels` pixels decoding at once across threads.

    Decoding is the moment a photo takes its full size in memory, whatever its file size (a
    128 KB PNG of 6300×6300 decodes to 119 MB), so a server shares one budget among its
    requests: an image waits up to `wait_s` for room, then is turned away with
    `ImageBusyError`. An image larger than the whole budget decodes alone.
    """

    def __init__(self, pixels: int, wait_s: float = 1.0):
        if pixels <= 0:
            raise ValueError(f"a decode budget needs a positive pixel count, got {pixels}")
        self.pixels = pixels
        self.wait_s = wait_s
        self._in_use = 0
        self._changed = threading.Condition()

    @property
    def in_use(self) -> int:
        return self._in_use

    @contextmanager
    def reserve(self, pixels: int, name: str) -> Iterator[None]:
        pixels = min(pixels, self.pixels)
        with self._changed:
            if not self._changed.wait_for(lambda: self._in_use + pixels <= self.pixels,
                                          self.wait_s):
                raise ImageBusyError(f"{name}: other large photos are being decoded; "
                                     "try again in a few seconds")
            self._in_use += pixels
        try:
            yield
        finally:
            with self._changed:
                self._in_use -= pixels
                self._changed.notify_all()


_In, _Out = TypeVar("_In"), TypeVar("_Out")


def in_threads(work: Callable[[_In], _Out], items: list[_In]) -> list[_Out]:
    """`work` on every item, in worker threads (Pillow's decoding and resizing release the
    GIL, so a batch's photos are handled side by side); results in order, and the first item
    that fails raises, as one at a time would."""
    if len(items) < 2:
        return [work(item) for item in items]
    with ThreadPoolExecutor(min(len(items), os.cpu_count() or 1)) as pool:
        return list(pool.map(work, items))


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


def load_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               name: str | None = None, min_side: int | None = None,
               budget: DecodeBudget | None = None) -> Image.Image:
    """Load `source` as a new, fully decoded 8-bit RGB image.

    Animated images give their first frame; a PIL image passed in is converted from its current
    frame and never modified. Images with more than `max_pixels` pixels are refused before their
    pixel data is decoded. Pillow's own decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`) is
    also enforced, so the effective limit is the smaller of the two. Messages name the input
    by `name` when given (bytes read from a file or an upload), else as `describe_source` does.

    With `min_side` (CLIP's input side), an image whose shorter side is at least `REDUCE_MARGIN`
    times larger comes back reduced by a whole factor that keeps it so. With `budget`, decoding
    waits for room in it (`ImageBusyError` when none comes).
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
            factor = _reduction(image, min_side)
            if factor > 1 and image is not source:
                image.draft(None, (image.width // factor, image.height // factor))
            with budget.reserve(image.width * image.height, name) if budget else nullcontext():
                image.load()
                image = _to_rgb(ImageOps.exif_transpose(_reduced(image, min_side)), name)
                return _reduced(image, min_side)
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


def _reduction(image: Image.Image, min_side: int | None) -> int:
    """The whole factor `image` can shrink by and keep REDUCE_MARGIN × `min_side` pixels."""
    if not min_side:
        return 1
    return max(1, min(image.size) // (REDUCE_MARGIN * min_side))


def _reduced(image: Image.Image, min_side: int | None) -> Image.Image:
    """`image` box-averaged down by `_reduction`, where its mode allows; else as it is."""
    factor = _reduction(image, min_side)
    if factor == 1 or image.mode not in _REDUCIBLE_MODES:
        return image
    return image.reduce(factor)


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
