"""Tests for poemgen.images; every test image is generated on the fly."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from poemgen.errors import PoemgenError
from poemgen.images import ImageLoadError, describe_source, load_image


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
