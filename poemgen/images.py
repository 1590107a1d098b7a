"""Safe image loading: the first stage of the pipeline.

One job: take whatever the user handed us (a path, bytes, a file object or a PIL image) and
return a fully decoded 8-bit RGB image the later stages can rely on, with EXIF orientation
applied and every colour mode, bit depth and transparency normalised. Everything a user can get
wrong (missing file, not an image, truncated download, a gigantic image) becomes an
`ImageLoadError` whose message is one line naming the input and saying what to do.

For CLIP (`min_side`), a photo is decoded no larger than CLIP needs: JPEGs at 1/2, 1/4 or 1/8
scale by the decoder itself, others converted and box-averaged a strip of rows at a time, so no
full-size converted copy ever exists (a palette, transparent or 16-bit photo costs its decoded
bytes and a strip, not a full-size RGBA or float copy). An image more than `MAX_ASPECT` times
longer than wide is refused, and one more than `CROP_ASPECT` times keeps its middle, so CLIP's
resize never makes a huge image from a thin one. A `DecodeBudget` bounds the memory decoding
at once across threads, counted in bytes by colour mode.
"""

from __future__ import annotations

import io
import math
import os
import struct
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import BinaryIO, Callable, Iterator, TypeVar, Union

import numpy as np
from PIL import ExifTags, Image

from poemgen.errors import PoemgenError

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, Image.Image]

_READABLE = "JPEG, PNG, WebP, GIF, BMP, TIFF …"
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "PA"}
# Modes whose grey range is the whole image's (see `_to_rgb`), so they are reduced before they
# are converted rather than converted a strip at a time.
_RANGED_MODES = {"I", "F"}
# A reduced photo keeps its shorter side at least this many times CLIP's input side, so the
# image processor's own resampling still does the last, antialiased step.
REDUCE_MARGIN = 2
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit
# Longer side over shorter side. Beyond MAX_ASPECT an image is a line or a strip, not a photo
# (CLIP's processor would resize a 5000×1 one to 1,120,000×224); up to it, a photo for CLIP
# keeps its middle CROP_ASPECT:1, as wide as a wide-angle shot (CLIP sees a square anyway).
MAX_ASPECT = 20
CROP_ASPECT = 3
# Pixels converted to RGB at once; each costs at most STRIP_BYTES_PER_PIXEL in temporaries
# (16-bit grey through numpy, palette with transparency through RGBA and a white backdrop).
STRIP_PIXELS = 1 << 16
STRIP_BYTES_PER_PIXEL = 32
RGB_PIXEL_BYTES = 4  # Pillow keeps an RGB pixel in 4 bytes
# EXIF orientation → the transposition that shows the photo upright (EXIF 2.32, tag 0x0112).
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
            6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


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
    """At most the memory of decoding `pixels` RGB pixels at once across threads, in bytes.

    Decoding is the moment a photo takes its full size in memory, whatever its file size (a
    128 KB PNG of 6300×6300 decodes to 151 MiB), so a server shares one budget among its
    requests: an image reserves what its decode allocates (`decode_bytes`: a palette pixel
    costs a quarter of an RGB one, a 43-byte GIF with a 6300×6300 screen as much as its
    screen), waits up to `wait_s` for room, then is turned away with `ImageBusyError`. An
    image larger than the whole budget decodes alone.
    """

    def __init__(self, pixels: int, wait_s: float = 1.0):
        if pixels <= 0:
            raise ValueError(f"a decode budget needs a positive pixel count, got {pixels}")
        self.bytes = pixels * RGB_PIXEL_BYTES
        self.wait_s = wait_s
        self._in_use = 0
        self._changed = threading.Condition()

    @property
    def in_use(self) -> int:
        """Bytes reserved now."""
        return self._in_use

    @contextmanager
    def reserve(self, size: int, name: str) -> Iterator[None]:
        """Hold `size` bytes of the budget while the block runs."""
        size = min(size, self.bytes)
        with self._changed:
            if not self._changed.wait_for(lambda: self._in_use + size <= self.bytes,
                                          self.wait_s):
                raise ImageBusyError(f"{name}: other large photos are being decoded; "
                                     "try again in a few seconds")
            self._in_use += size
        try:
            yield
        finally:
            with self._changed:
                self._in_use -= size
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
    frame and never modified. Images with more than `max_pixels` pixels, or more than
    `MAX_ASPECT` times longer than wide, are refused before their pixel data is decoded.
    Pillow's own decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`) is also enforced, so the
    effective limit is the smaller of the two. Messages name the input by `name` when given
    (bytes read from a file or an upload), else as `describe_source` does. An EXIF block too
    damaged to read leaves the photo as it is stored (unrotated), as image viewers do.

    With `min_side` (CLIP's input side), the photo keeps its middle `CROP_ASPECT`:1, and one
    whose shorter side is at least `REDUCE_MARGIN` times larger comes back reduced by a whole
    factor that keeps it so. With `budget`, decoding waits for room in it for the bytes it
    allocates (`ImageBusyError` when none comes).
    """
    name = name or describe_source(source)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        warnings.simplefilter("ignore", UserWarning)  # Pillow skipping damaged metadata
        try:
            if isinstance(source, Image.Image):
                image = source
            else:
                image = Image.open(io.BytesIO(read_bytes(source, name)))
            _check_shape(image, name, max_pixels)
            factor = _reduction(image, min_side)
            if factor > 1 and image is not source:
                image.draft(None, (image.width // factor, image.height // factor))
            with budget.reserve(decode_bytes(image, min_side), name) if budget else nullcontext():
                image.load()
                upright = _upright(image)
                image = _rgb_reduced(image, _crop_box(image, min_side), _reduction(image, min_side),
                                     name)
                return image.transpose(upright) if upright is not None else image
        except Image.UnidentifiedImageError:
            raise ImageLoadError(
                f"{name}: is not an image Pillow can read ({_READABLE}); "
                "convert it to one of these formats"
            ) from None
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
            raise ImageTooLargeError(
                f"{name}: is too large to decode safely ({error}); downscale it first"
            ) from None
        except (OSError, SyntaxError, ValueError, EOFError, struct.error) as error:
            raise ImageLoadError(
                f"{name}: is truncated or corrupt ({error}); re-export or re-download it"
            ) from None


def _check_shape(image: Image.Image, name: str, max_pixels: int) -> None:
    """Refuse, before decoding, an image with no pixels, too many, or the shape of a line."""
    width, height = image.size
    if width == 0 or height == 0:
        raise ImageLoadError(f"{name}: has no pixels ({width}×{height}); give a photo")
    if width * height > max_pixels:
        raise ImageTooLargeError(f"{name}: is {width}×{height} pixels, more than the limit of "
                                 f"{max_pixels:,}; downscale it or raise max_pixels")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageLoadError(f"{name}: is {width}×{height} pixels, a strip rather than a photo "
                             f"(one side more than {MAX_ASPECT} times the other); crop it")


def decode_bytes(image: Image.Image, min_side: int | None = None) -> int:
    """The bytes `load_image` allocates to decode `image` (opened, not yet loaded): the
    decoder's full-size image in its own mode, the reduced RGB result and one strip's
    conversion."""
    width, height = image.size
    left, top, right, bottom = _crop_box(image, min_side)
    kept = (right - left) * (bottom - top)
    factor = _reduction(image, min_side)
    if image.mode in _RANGED_MODES:  # reduced whole, then converted through numpy
        working = math.ceil(kept / factor ** 2) * STRIP_BYTES_PER_PIXEL
    else:
        working = min(kept, STRIP_PIXELS) * STRIP_BYTES_PER_PIXEL
    result = math.ceil((right - left) / factor) * math.ceil((bottom - top) / factor)
    return width * height * _pixel_bytes(image.mode) + working + result * RGB_PIXEL_BYTES


def _pixel_bytes(mode: str) -> int:
    """The bytes Pillow keeps a pixel of `mode` in (its Storage.c: 1 for 1-bit, grey and
    palette, 2 for 16-bit, 4 for everything else, RGB included)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def _crop_box(image: Image.Image, min_side: int | None) -> tuple[int, int, int, int]:
    """The part of `image` CLIP is shown: with `min_side`, the middle `CROP_ASPECT`:1 of an
    image longer than that (symmetric, so the same whichever way EXIF turns it)."""
    width, height = image.size
    if not min_side:
        return 0, 0, width, height
    keep_width = min(width, CROP_ASPECT * height)
    keep_height = min(height, CROP_ASPECT * width)
    left, top = (width - keep_width) // 2, (height - keep_height) // 2
    return left, top, left + keep_width, top + keep_height


def _reduction(image: Image.Image, min_side: int | None) -> int:
    """The whole factor `image` can shrink by and keep REDUCE_MARGIN × `min_side` pixels."""
    if not min_side:
        return 1
    return max(1, min(image.size) // (REDUCE_MARGIN * min_side))


def _upright(image: Image.Image) -> Image.Transpose | None:
    """The transposition `image`'s EXIF orientation asks for; None when upright, or when the
    EXIF block is too damaged to read (it is metadata: the pixels are still a photo)."""
    try:
        return _UPRIGHT.get(image.getexif().get(ExifTags.Base.Orientation))
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, KeyError, IndexError,
            TypeError):
        return None


def _rgb_reduced(image: Image.Image, box: tuple[int, int, int, int], factor: int,
                 name: str) -> Image.Image:
    """The `box` of `image` as a new RGB image reduced by `factor`, converted a strip of rows
    at a time so that no full-size RGBA, RGB or numpy copy is made."""
    if image.mode in _RANGED_MODES:
        return _to_rgb(image.reduce(factor, box), name)
    left, top, right, bottom = box
    width = right - left
    rows = max(1, STRIP_PIXELS // width // factor) * factor
    result = Image.new("RGB", (math.ceil(width / factor), math.ceil((bottom - top) / factor)))
    for strip_top in range(top, bottom, rows):
        strip = image.crop((left, strip_top, right, min(bottom, strip_top + rows)))
        rgb = _to_rgb(strip, name)
        result.paste(rgb.reduce(factor) if factor > 1 else rgb, (0, (strip_top - top) // factor))
    return result


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
    """`image` as 8-bit RGB; it is already a private copy (a strip or a reduction)."""
    if image.mode.startswith("I;16"):
        # 16-bit has a fixed range: map 0..65535 linearly onto 0..255, rounding to the nearest
        # (65535 → 255, 32768 → 128; no value lies halfway, as 257 is odd), in integers.
        return _grey_to_rgb((np.asarray(image).astype(np.uint32) + 128) // 257)
    if image.mode in _RANGED_MODES:
        # 32-bit int and float have no fixed range. Values already within 0..255 are kept as
        # they are; otherwise the range spanning both 0..255 and the image's actual minimum and
        # maximum is stretched onto 0..255, so nothing clips and dark stays darker than bright.
        pixels = np.asarray(image).astype(np.float64)
        pixels[~np.isfinite(pixels)] = 0.0
        low, high = min(pixels.min(), 0.0), max(pixels.max(), 255.0)
        return _grey_to_rgb(np.clip(np.rint((pixels - low) * (255.0 / (high - low))), 0, 255))
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


def _grey_to_rgb(grey: np.ndarray) -> Image.Image:
    """An RGB image from a 2-D array of whole grey levels within 0..255."""
    return Image.fromarray(grey.astype(np.uint8)).convert("RGB")
