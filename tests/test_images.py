"""Tests for poemgen.images; every test image is generated on the fly."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from poemgen.errors import PoemgenError
from poemgen.images import (MAX_ASPECT, DecodeBudget, ImageBusyError, ImageLoadError,
                            describe_source, load_image)
from poemgen.pipeline import load


def save(image: Image.Image, path: Path, **params: object) -> Path:
    image.save(path, **params)
    return path


def encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def noise(size: tuple[int, int] = (64, 48)) -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def pixel(image: Image.Image, xy: tuple[int, int] = (0, 0)) -> tuple[int, int, int]:
    assert image.mode == "RGB"
    return image.getpixel(xy)


def assert_fails(source: object, fragment: str, name: str, **kwargs: object) -> ImageLoadError:
    with pytest.raises(ImageLoadError) as caught:
        load_image(source, **kwargs)
    message = str(caught.value)
    assert isinstance(caught.value, PoemgenError)
    assert message.startswith(name)
    assert fragment in message
    assert "\n" not in message and "\r" not in message
    return caught.value


# Accepted sources


@pytest.fixture
def red_png(tmp_path: Path) -> Path:
    return save(Image.new("RGB", (8, 6), (255, 0, 0)), tmp_path / "red.png")


def test_str_path(red_png: Path) -> None:
    image = load_image(str(red_png))
    assert image.size == (8, 6) and pixel(image) == (255, 0, 0)


def test_pathlib_path(red_png: Path) -> None:
    assert pixel(load_image(red_png)) == (255, 0, 0)


def test_bytes_bytearray_memoryview(red_png: Path) -> None:
    data = red_png.read_bytes()
    for source in (data, bytearray(data), memoryview(data)):
        assert pixel(load_image(source)) == (255, 0, 0)


def test_file_objects(red_png: Path) -> None:
    with open(red_png, "rb") as file:
        assert pixel(load_image(file)) == (255, 0, 0)
    assert pixel(load_image(io.BytesIO(red_png.read_bytes()))) == (255, 0, 0)


def test_pil_image_is_converted_and_not_modified() -> None:
    original = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    before = original.tobytes()
    image = load_image(original)
    assert pixel(image) == (255, 255, 255)
    assert image is not original
    assert original.mode == "RGBA" and original.tobytes() == before


def test_rgb_pil_image_is_copied() -> None:
    original = Image.new("RGB", (4, 4), (1, 2, 3))
    image = load_image(original)
    assert image is not original
    image.putpixel((0, 0), (9, 9, 9))
    assert original.getpixel((0, 0)) == (1, 2, 3)


def test_describe_source(red_png: Path) -> None:
    assert describe_source(str(red_png)) == str(red_png)
    assert describe_source(red_png) == str(red_png)
    assert describe_source(b"x") == "<bytes>"
    assert describe_source(io.BytesIO()) == "<file>"
    assert describe_source(Image.new("RGB", (1, 1))) == "<PIL image>"
    with open(red_png, "rb") as file:
        assert describe_source(file) == str(red_png)


def test_unsupported_type_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        load_image(42)  # type: ignore[arg-type]


# Conversions


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save(Image.new("RGB", (40, 20), (0, 128, 0)), tmp_path / "rotated.jpg", exif=exif)
    assert Image.open(path).size == (40, 20)
    assert load_image(path).size == (20, 40)


def test_animated_gif_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (10, 10), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    path = save(frames[0], tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert Image.open(path).n_frames == 2
    image = load_image(path)
    assert image.size == (10, 10) and pixel(image) == (255, 0, 0)


def test_grayscale_and_bilevel(tmp_path: Path) -> None:
    assert pixel(load_image(save(Image.new("L", (4, 4), 100), tmp_path / "g.png"))) == (
        100,
        100,
        100,
    )
    assert pixel(load_image(Image.new("1", (4, 4), 1))) == (255, 255, 255)


def test_palette(tmp_path: Path) -> None:
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    assert pixel(load_image(save(image, tmp_path / "p.png"))) == (10, 200, 30)


def test_palette_with_transparency_becomes_white(tmp_path: Path) -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    image.putpixel((1, 1), 1)
    path = save(image, tmp_path / "pt.png", transparency=0)
    result = load_image(path)
    assert pixel(result, (0, 0)) == (255, 255, 255)
    assert pixel(result, (1, 1)) == (10, 200, 30)


def test_rgba_is_composited_onto_white(tmp_path: Path) -> None:
    image = Image.new("RGBA", (3, 1), (0, 0, 0, 0))
    image.putpixel((1, 0), (255, 0, 0, 255))
    image.putpixel((2, 0), (0, 0, 0, 128))
    result = load_image(save(image, tmp_path / "rgba.png"))
    assert pixel(result, (0, 0)) == (255, 255, 255)
    assert pixel(result, (1, 0)) == (255, 0, 0)
    assert all(abs(channel - 127) <= 1 for channel in pixel(result, (2, 0)))


def test_la_is_composited_onto_white(tmp_path: Path) -> None:
    image = Image.new("LA", (2, 1), (0, 0))
    image.putpixel((1, 0), (50, 255))
    result = load_image(save(image, tmp_path / "la.png"))
    assert pixel(result, (0, 0)) == (255, 255, 255)
    assert pixel(result, (1, 0)) == (50, 50, 50)


def test_cmyk(tmp_path: Path) -> None:
    path = save(Image.new("CMYK", (4, 4), (0, 255, 255, 0)), tmp_path / "cmyk.tiff")
    assert pixel(load_image(path)) == (255, 0, 0)


@pytest.mark.parametrize("mode", ["YCbCr", "LAB", "HSV"])
def test_other_colour_modes(mode: str) -> None:
    image = load_image(Image.new(mode, (2, 2)))
    assert image.mode == "RGB" and image.size == (2, 2)


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (32768, 128), (65535, 255)])
def test_16_bit_png_is_scaled_not_clipped(tmp_path: Path, value: int, expected: int) -> None:
    path = save(Image.new("I;16", (4, 4), value), tmp_path / "deep.png")
    assert Image.open(path).mode.startswith("I")
    assert pixel(load_image(path)) == (expected,) * 3


def test_16_bit_big_endian() -> None:
    image = Image.new("I;16B", (2, 2), 32768)
    assert pixel(load_image(image)) == (128, 128, 128)


def test_float_mode_within_byte_range_is_kept() -> None:
    assert pixel(load_image(Image.new("F", (2, 2), 100.4))) == (100, 100, 100)


@pytest.mark.parametrize("mode", ["F", "I"])
def test_wide_range_is_scaled_by_actual_range(mode: str) -> None:
    image = Image.new(mode, (2, 1), 0)
    image.putpixel((1, 0), 1000)
    result = load_image(image)
    assert pixel(result, (0, 0)) == (0, 0, 0)
    assert pixel(result, (1, 0)) == (255, 255, 255)


# Errors


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.jpg"
    assert_fails(path, "no such file", str(path))
    assert_fails(str(path), "no such file", str(path))


def test_directory(tmp_path: Path) -> None:
    assert_fails(tmp_path, "is a directory, not an image", str(tmp_path))


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert_fails(path, "is empty", str(path))
    with open(path, "rb") as file:
        assert_fails(file, "is empty", str(path))


def test_empty_bytes() -> None:
    assert_fails(b"", "is empty", "<bytes>")


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("床前明月光\n疑是地上霜\n", encoding="utf-8")
    error = assert_fails(path, "is not an image Pillow can read (JPEG, PNG", str(path))
    assert "notes.txt" in str(error)


def test_text_mode_file_object(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello", encoding="utf-8")
    with open(path, encoding="utf-8") as file:
        assert_fails(file, "'rb'", str(path))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image(tmp_path: Path, fmt: str) -> None:
    data = encoded(noise(), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    assert_fails(path, "truncated or corrupt", str(path))
    assert_fails(data[: len(data) // 2], "truncated or corrupt", "<bytes>")


def test_decompression_bomb_is_refused_by_max_pixels(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (20, 20)), tmp_path / "bomb.png")
    assert_fails(path, "max_pixels", str(path), max_pixels=100)
    assert_fails(Image.new("RGB", (20, 20)), "max_pixels", "<PIL image>", max_pixels=100)
    assert load_image(path, max_pixels=400).size == (20, 20)


def test_max_pixels_is_checked_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save(Image.new("RGB", (20, 20)), tmp_path / "bomb.png")

    def refuse_to_decode(self: Image.Image) -> None:
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(Image.Image, "load", refuse_to_decode)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", refuse_to_decode)
    assert_fails(path, "max_pixels", str(path), max_pixels=100)


@pytest.mark.parametrize("side", [12, 20])
def test_pillow_bomb_warning_and_error_become_load_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, side: int
) -> None:
    path = save(Image.new("RGB", (side, side)), tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    assert_fails(path, "too large", str(path))


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read any file"
)
def test_unreadable_file(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (4, 4)), tmp_path / "secret.png")
    path.chmod(0)
    try:
        assert_fails(path, "permission denied", str(path))
    finally:
        path.chmod(0o644)


def test_message_is_one_line_even_for_odd_names(tmp_path: Path) -> None:
    path = tmp_path / "two\nlines.jpg"
    path.write_bytes(b"not an image")
    with pytest.raises(ImageLoadError) as caught:
        load_image(path)
    assert "\n" not in str(caught.value) and "lines.jpg" in str(caught.value)


# Large photos are decoded no larger than CLIP needs (`min_side`), within a shared budget


def decoded_sizes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The size of every image the decoders fill from then on."""
    sizes: list[tuple[int, int]] = []
    original = __import__("PIL.ImageFile", fromlist=["ImageFile"]).ImageFile.load

    def recording_load(self):  # type: ignore[no-untyped-def]
        sizes.append(self.size)
        return original(self)

    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", recording_load)
    return sizes


def test_a_large_jpeg_is_decoded_at_a_reduced_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encoded(Image.new("RGB", (3584, 2688), (200, 30, 60)), "JPEG", quality=95)
    sizes = decoded_sizes(monkeypatch)
    image = load_image(data, min_side=224)
    assert set(sizes) == {(896, 672)}  # the decoder's 1/4 scale: never the full 9.6 MP
    assert image.size == (896, 672)
    assert all(abs(a - b) <= 3 for a, b in zip(pixel(image, (448, 336)), (200, 30, 60)))


@pytest.mark.parametrize("mode,colour", [("RGB", (200, 30, 60)), ("RGBA", (200, 30, 60, 255)),
                                         ("L", 90), ("P", None), ("I;16", 25700)])
def test_a_large_png_comes_back_reduced_in_every_mode(mode: str, colour: object) -> None:
    image = Image.new(mode, (3584, 2688), colour) if colour is not None else \
        Image.new("RGB", (3584, 2688), (200, 30, 60)).convert("P", palette=Image.ADAPTIVE)
    result = load_image(encoded(image, "PNG"), min_side=224)
    assert result.size == (598, 448)  # reduced by 6: the shorter side stays ≥ 2 × 224
    assert result.mode == "RGB"
    expected = {"L": (90,) * 3, "I;16": (100,) * 3}.get(mode, (200, 30, 60))
    assert pixel(result, (300, 200)) == expected


def test_reduction_keeps_the_exif_orientation_and_spares_small_photos() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    tall = load_image(encoded(Image.new("RGB", (1800, 900), (10, 20, 30)), "JPEG", exif=exif),
                      min_side=224)
    assert tall.size == (450, 900)
    assert load_image(encoded(noise((800, 600)), "PNG"), min_side=224).size == (800, 600)
    assert load_image(encoded(noise((1000, 900)), "PNG")).size == (1000, 900)


def test_a_pil_image_passed_in_is_reduced_without_being_touched() -> None:
    original = Image.new("RGB", (2000, 1000), (1, 2, 3))
    assert load_image(original, min_side=100).size == (400, 200)
    assert original.size == (2000, 1000) and original.getpixel((0, 0)) == (1, 2, 3)


def test_the_decode_budget_turns_away_what_does_not_fit() -> None:
    budget = DecodeBudget(pixels=100, wait_s=0.05)  # what decoding 100 RGB pixels takes
    data = encoded(Image.new("RGB", (40, 40)), "PNG")
    with budget.reserve(budget.bytes - 100, "other"):
        with pytest.raises(ImageBusyError) as caught:
            load_image(data, name="up.png", budget=budget)
        assert str(caught.value).startswith("up.png: ") and "try again" in str(caught.value)
    assert budget.in_use == 0
    assert load_image(data, budget=budget).size == (40, 40)  # larger than the budget: alone
    assert budget.in_use == 0


def test_the_decode_budget_counts_bytes_by_colour_mode() -> None:
    """A palette or grey pixel decodes into 1 byte, an RGB one into 4: with 16 MB free, a
    12-megapixel grey or palette PNG decodes, an RGB one of the same size waits."""
    budget = DecodeBudget(pixels=5_000_000, wait_s=0.05)  # 20 MB
    size = (4000, 3000)
    palette = Image.new("RGB", size, (200, 30, 60)).convert("P", palette=Image.ADAPTIVE)
    with budget.reserve(4_000_000, "other"):
        for image in (Image.new("L", size, 90), palette):
            assert load_image(encoded(image, "PNG"), budget=budget, min_side=224).size == (667, 500)
        with pytest.raises(ImageBusyError):
            load_image(encoded(Image.new("RGB", size), "PNG"), budget=budget, min_side=224)


def gif_with_a_big_screen(side: int) -> bytes:
    """A 43-byte GIF: a `side`×`side` logical screen holding one transparent 1×1 frame."""
    return (b"GIF89a" + struct.pack("<HHBBB", side, side, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
            + b"!\xf9\x04\x01\0\0\0\0" + b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
            + b"\x02\x02\x44\x01\x00;")


def large_in_mode(kind: str) -> bytes:
    size = (3584, 2688)
    if kind == "GIF screen":
        return gif_with_a_big_screen(2688)
    if kind == "I;16":
        return encoded(Image.new("I;16", size, 25700), "PNG")
    if kind.startswith("P"):
        palette = Image.new("RGB", size, (200, 30, 60)).convert("P", palette=Image.ADAPTIVE)
        return encoded(palette, "PNG", **({"transparency": 0} if kind == "P, transparent" else {}))
    return encoded(Image.new(kind, size), "PNG")


@pytest.mark.parametrize("kind", ["P", "P, transparent", "GIF screen", "I;16", "RGBA", "LA",
                                  "1", "RGB"])
def test_no_full_size_converted_copy_is_made(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """Palette, transparent and 16-bit photos are converted a strip at a time, not turned
    into a full-size RGBA, float or RGB copy before they are reduced."""
    data = large_in_mode(kind)
    full = Image.open(io.BytesIO(data)).size
    converted: list[tuple[int, int]] = []
    convert = Image.Image.convert

    def recording_convert(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        converted.append(self.size)
        return convert(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "convert", recording_convert)
    image = load_image(data, min_side=224)
    assert image.mode == "RGB" and min(image.size) == 448
    assert max((w * h for w, h in converted), default=0) <= full[0] * full[1] // 8


def test_a_gif_screen_larger_than_its_frame_is_white_where_transparent() -> None:
    image = load_image(gif_with_a_big_screen(1000), min_side=224)
    assert image.size == (500, 500) and pixel(image, (250, 250)) == (255, 255, 255)


def test_a_waiting_decode_starts_when_room_is_freed() -> None:
    import threading

    budget = DecodeBudget(pixels=100, wait_s=10)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with budget.reserve(budget.bytes, "first"):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(10)
    threading.Timer(0.1, release.set).start()
    assert load_image(encoded(Image.new("RGB", (8, 8)), "PNG"), budget=budget).size == (8, 8)
    thread.join()
    assert budget.in_use == 0


# Thin images: refused, or cropped to what CLIP looks at


@pytest.mark.parametrize("size", [(5000, 1), (1, 5000), (20000, 2), (21 * 30, 30)])
def test_a_strip_is_refused_before_it_is_decoded(monkeypatch: pytest.MonkeyPatch,
                                                 size: tuple[int, int]) -> None:
    data = encoded(Image.new("RGB", size, (10, 20, 30)), "PNG")
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", lambda self: pytest.fail("decoded"))
    error = assert_fails(data, "a strip rather than a photo", "<bytes>")
    assert f"{size[0]}×{size[1]}" in str(error) and f"{MAX_ASPECT} times" in str(error)


def test_a_wide_panorama_keeps_its_middle_for_clip() -> None:
    """CLIP looks at a square: a 10:1 panorama gives it its middle 3:1 (red, with the blue
    ends cut away), and only a photo for CLIP (`min_side`) is cropped."""
    panorama = Image.new("RGB", (2000, 200), (0, 0, 255))
    panorama.paste((255, 0, 0), (700, 0, 1300, 200))
    data = encoded(panorama, "PNG")
    middle = load_image(data, min_side=100)
    assert middle.size == (600, 200)
    assert {pixel(middle, (x, 100)) for x in (0, 300, 599)} == {(255, 0, 0)}
    tall = load_image(encoded(panorama.transpose(Image.Transpose.ROTATE_90), "PNG"), min_side=100)
    assert tall.size == (200, 600)
    assert load_image(data).size == (2000, 200)


def test_the_library_refuses_a_strip_and_bounds_a_panorama(tiny) -> None:
    """`poemgen.load(...)`: a 208-byte 20000×2 PNG is one clear error rather than a
    1,120,000×224 resize; a panorama reaches CLIP's processor at most 3:1."""
    pipeline = load(tiny.clip, need_poet=False, device="cpu")
    with pytest.raises(ImageLoadError, match="strip rather than a photo"):
        pipeline.keywords(encoded(Image.new("RGB", (20000, 2)), "PNG"))
    wide = pipeline.load_photo(encoded(noise((1900, 100)), "PNG"))
    assert wide.size == (300, 100)
    assert len(pipeline.keywords(wide, topk=3)) == 3


# Damaged EXIF: the orientation is ignored and the photo goes on

# An EXIF block cut off after its TIFF header: reading it raises struct.error in Pillow.
DAMAGED_EXIF = b"Exif\x00\x00MM\x00*\x00\x00"


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "JPEG"])
@pytest.mark.parametrize("exif", [DAMAGED_EXIF, b"Exif\x00\x00XX",
                                  b"MM\x00*\x00\x00\x00\x08\x00\x05"])
def test_a_damaged_exif_block_is_ignored(fmt: str, exif: bytes) -> None:
    data = encoded(Image.new("RGB", (40, 20), (0, 128, 0)), fmt, exif=exif)
    image = load_image(data, name="damaged")
    assert image.size == (40, 20) and image.mode == "RGB"
