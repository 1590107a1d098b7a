"""Hostile input, generated: the API, the library and `poemgen check` never fail in a way a user
cannot read. Every API answer is JSON, a 4xx for bad input and never a 500; the library
writes a poem or raises PoemgenError; `check` exits 0, 1 or 2; a damaged image file (headers,
chunks, EXIF) is a photo or one ImageLoadError, never another exception. Seeded
(derandomized) so that CI is deterministic; the examples are few, because the valid ones
write poems."""

from __future__ import annotations

import io
import json
import struct
import zlib

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from poemgen.cli import main
from poemgen.errors import PoemgenError
from poemgen.images import ImageLoadError, load_image
from poemgen.options import FLAGS
from poemgen.pipeline import load
from poemgen.serve import Limits, create_app

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
NAMES = st.sampled_from(list(FLAGS) + ["keywords", "colour", "", "seed "])
WORDS = st.sampled_from(["明月", "孤舟", "春江花月", "moon", "", "风", "龘", "明月,孤舟"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), WORDS,
                    st.sampled_from(["qijue", "wulv", "pingshui", "strict", "none", "0", "0.5"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=4), inner, max_size=2), max_leaves=6)


@pytest.fixture(scope="module")
def client(tiny):
    pipeline = load(tiny.clip, tiny.poet, "cpu")
    with TestClient(create_app(pipeline, Limits(requests_per_minute=0, max_candidates=4))) as c:
        yield c


def assert_answer(response) -> None:
    assert response.status_code == 200 or 400 <= response.status_code < 500, response.text
    body = response.json()
    assert ("error" in body and "\n" not in body["error"]) if response.status_code != 200 \
        else "lines" in body


@SETTINGS
@given(fields=st.dictionaries(NAMES, VALUES, max_size=5), nested=st.integers(0, 3000))
def test_any_json_body_is_answered_in_json(client, fields, nested):
    body = json.dumps(fields, allow_nan=True)
    if nested > 2000:  # now and then, deep nesting inside an option
        body = json.dumps({"keywords": "@"}).replace('"@"', "[" * nested + "]" * nested)
    assert_answer(client.post("/v1/poems", content=body.encode(),
                              headers={"content-type": "application/json"}))
    assert client.get("/healthz").status_code == 200


@SETTINGS
@given(fields=st.dictionaries(NAMES, st.text(max_size=10) | WORDS, max_size=5),
       image=st.sampled_from([None, b"", b"not an image", "png"]))
def test_any_form_is_answered_in_json(client, fields, image):
    files = None
    if image == "png":
        buffer = io.BytesIO()
        Image.new("RGB", (8, 6), (200, 30, 30)).save(buffer, "PNG")
        files = {"image": ("p.png", buffer.getvalue(), "image/png")}
    elif image is not None:
        files = {"image": ("x.jpg", image, "image/jpeg")}
    data = {k: v for k, v in fields.items() if k}
    assert_answer(client.post("/v1/poems", data=data, files=files))


@SETTINGS
@given(overrides=st.dictionaries(st.sampled_from(list(FLAGS) + ["no_repeat", "colour"]),
                                 SCALARS, max_size=4),
       keywords=st.lists(WORDS, min_size=1, max_size=3) | st.sampled_from(["明月", None]))
def test_the_library_writes_or_raises_poemgen_error(client, overrides, keywords):
    pipeline = client.app.state.batcher.pipeline
    try:
        poem = pipeline.write(keywords=keywords, **overrides)
    except PoemgenError as error:
        assert "\n" not in str(error)
    else:
        assert poem.lines


@SETTINGS
@given(text=st.text(max_size=60) | st.lists(WORDS, max_size=8).map("，".join),
       args=st.lists(st.sampled_from(["--rhyme", "pingshui", "none", "--tones", "strict",
                                      "--json", "--no-repeats", "--crrd", "/nowhere"]),
                     max_size=3))
def test_check_exits_0_1_or_2(text, args, capsys):
    try:
        code = main(["check", text, *args])
    except SystemExit as exit:  # argparse: a usage error
        code = exit.code
    out, err = capsys.readouterr()
    assert code in (0, 1, 2) and "Traceback" not in out + err


# Damaged images


def encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def seed_images() -> dict[str, bytes]:
    """Small valid files of every kind the loader meets, EXIF included, to be damaged."""
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = Image.linear_gradient("L").resize((24, 16)).convert("RGB")
    palette = photo.convert("P", palette=Image.ADAPTIVE, colors=8)
    frames = [photo, photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    return {
        "png": encoded(photo, "PNG", exif=exif),
        "png-palette": encoded(palette, "PNG", transparency=0),
        "png-16": encoded(Image.new("I;16", (24, 16), 40000), "PNG"),
        "png-la": encoded(photo.convert("LA"), "PNG"),
        "jpeg": encoded(photo, "JPEG", exif=exif),
        "jpeg-progressive": encoded(photo, "JPEG", progressive=True),
        "webp": encoded(photo, "WEBP", exif=exif),
        "gif": encoded(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "bmp": encoded(photo, "BMP"),
        "tiff": encoded(photo, "TIFF", exif=exif),
    }


SEEDS = seed_images()


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, at = [], 8
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        chunks.append((kind, data[at + 8:at + 8 + length]))
        at += 12 + length
    return chunks


def png_from(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """A PNG of these chunks with correct CRCs, so that damage reaches the parsers."""
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(body)) + kind + body
        + struct.pack(">I", zlib.crc32(kind + body)) for kind, body in chunks)


@st.composite
def damaged_images(draw) -> bytes:
    kind = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[kind])
    how = draw(st.sampled_from(["bytes", "header", "cut", "splice", "chunk", "exif"]))
    if how == "bytes":  # a few bytes anywhere
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif how == "header":  # the first bytes, where sizes, modes and offsets live
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, min(len(data), 64) - 1))] = draw(st.integers(0, 255))
    elif how == "cut":
        data = data[:draw(st.integers(1, len(data) - 1))]
    elif how == "splice":  # some bytes repeated or lost somewhere in the middle
        start = draw(st.integers(0, len(data) - 1))
        end = draw(st.integers(start, min(len(data), start + 64)))
        data[start:start] = data[start:end] if draw(st.booleans()) else b""
        data[end:end] = draw(st.binary(max_size=16))
    elif how == "chunk" and kind.startswith("png"):  # one chunk's data, with a valid CRC
        chunks = png_chunks(bytes(data))
        index = draw(st.integers(0, len(chunks) - 1))
        body = bytearray(chunks[index][1])
        for _ in range(draw(st.integers(1, 4))):
            if body:
                body[draw(st.integers(0, len(body) - 1))] = draw(st.integers(0, 255))
        if draw(st.booleans()):
            body = body[:draw(st.integers(0, len(body)))]
        chunks[index] = (chunks[index][0], bytes(body))
        data = bytearray(png_from(chunks))
    else:  # an EXIF block damaged after its "Exif" mark, in a photo that is otherwise whole
        exif = bytearray(Image.open(io.BytesIO(SEEDS["jpeg"])).info["exif"])
        places = st.sampled_from(range(6, len(exif) + 1))  # every place equally likely
        for _ in range(draw(st.integers(0, 4))):
            exif[draw(places) - 1] = draw(st.integers(0, 255))
        exif = exif[:draw(places)]
        fmt = draw(st.sampled_from(["PNG", "WEBP", "JPEG"]))
        data = bytearray(encoded(Image.new("RGB", (12, 8), (0, 128, 0)), fmt, exif=bytes(exif)))
    return bytes(data)


def assert_photo_or_load_error(data: bytes) -> None:
    try:
        image = load_image(data, name="fuzzed.png", min_side=8, max_pixels=1_000_000)
    except ImageLoadError as error:
        message = str(error)
        assert message.startswith("fuzzed.png: ") and "\n" not in message and "\r" not in message
    else:
        assert image.mode == "RGB" and image.width > 0 and image.height > 0


IMAGE_SETTINGS = settings(SETTINGS, max_examples=300)


@IMAGE_SETTINGS
@given(data=damaged_images())
def test_a_damaged_image_is_a_photo_or_one_image_error(data):
    assert_photo_or_load_error(data)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "JPEG"])
def test_every_cut_and_overwritten_byte_of_an_exif_block(fmt):
    """Exhaustively: the EXIF block of a whole photo cut at every byte, or with any one byte
    set to 0x00, 0x7f or 0xff, is a photo or one ImageLoadError."""
    exif = Image.open(io.BytesIO(SEEDS["jpeg"])).info["exif"]
    damaged = [exif[:cut] for cut in range(6, len(exif))]
    damaged += [exif[:at] + bytes([value]) + exif[at + 1:]
                for at in range(6, len(exif)) for value in (0x00, 0x7F, 0xFF)]
    for block in damaged:
        assert_photo_or_load_error(encoded(Image.new("RGB", (12, 8)), fmt, exif=block))


def test_a_photo_with_a_damaged_exif_block_gets_its_poem(client, tiny, tmp_path, capsys):
    """The EXIF block found by fuzzing (cut inside its TIFF header; Pillow raises struct.error
    reading it) is ignored: the API answers 200, not 500, and the CLI prints no traceback."""
    data = encoded(Image.new("RGB", (40, 20), (0, 128, 0)), "PNG", exif=b"Exif\0\0MM\0*\0\0")
    response = client.post("/v1/poems", files={"image": ("damaged.png", data, "image/png")})
    assert response.status_code == 200 and response.json()["lines"], response.text
    path = tmp_path / "damaged.png"
    path.write_bytes(data)
    code = main([str(path), "--clip", tiny.clip, "--keywords-only"])
    out, err = capsys.readouterr()
    assert code == 0 and out and err == ""


def test_the_damaged_seeds_are_whole_before_damage():
    for data in SEEDS.values():
        assert load_image(data).mode == "RGB"


@SETTINGS
@given(data=damaged_images())
def test_a_damaged_upload_is_answered_200_or_415(client, data):
    response = client.post("/v1/poems", files={"image": ("fuzzed.png", data, "image/png")},
                           data={"candidates": "1"})
    assert response.status_code in (200, 413, 415), response.text
    assert_answer(response)


@settings(SETTINGS, max_examples=10)
@given(data=damaged_images())
def test_the_cli_reports_a_damaged_image_in_one_line(tiny, tmp_path_factory, capsys, data):
    path = tmp_path_factory.mktemp("fuzz") / "fuzzed.png"
    path.write_bytes(data)
    code = main([str(path), "--clip", tiny.clip, "--keywords-only"])
    out, err = capsys.readouterr()
    assert code in (0, 1) and "Traceback" not in out + err
    assert len(err.strip().splitlines()) == (code == 1)
