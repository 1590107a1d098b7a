"""Hostile input, generated: the API, the library and `poemgen check` never fail in a way a user
cannot read. Every API answer is JSON, a 4xx for bad input and never a 500; the library
writes a poem or raises PoemgenError; `check` exits 0, 1 or 2. Seeded (derandomized) so that
CI is deterministic; the examples are few, because the valid ones write poems."""

from __future__ import annotations

import io
import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from poemgen.cli import main
from poemgen.errors import PoemgenError
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
