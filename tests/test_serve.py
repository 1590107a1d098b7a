"""The HTTP API, in process: success paths, every limit, concurrent requests."""

import asyncio
import io
import json
import os
import re
import threading

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from poemgen import PoemgenError, serve
from poemgen.pipeline import load
from poemgen.serve import Limits, RateLimiter, create_app

HAN = re.compile(r"^[\u4e00-\u9fff]+$")


@pytest.fixture(scope="module")
def pipeline(tiny):
    """On the CPU; POEMGEN_TEST_DEVICE=cuda runs the server's models on a GPU."""
    return load(tiny.clip, tiny.poet, os.environ.get("POEMGEN_TEST_DEVICE", "cpu"))


def client_for(pipeline, **limits):
    return TestClient(create_app(pipeline, Limits(**{"requests_per_minute": 0, **limits})))


@pytest.fixture
def client(pipeline):
    with client_for(pipeline) as client:
        yield client


def jpeg(colour=(40, 120, 200), size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


def test_healthz_and_page_and_openapi(client):
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    page = client.get("/")
    assert page.status_code == 200 and "看图写诗" in page.text and 'id="photo"' in page.text
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/poems"]["post"]["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"]["properties"]["image"]["format"] == "binary"
    assert "acrostic" in body["application/json"]["schema"]["properties"]


def test_a_photo_upload_gets_the_cli_json(client):
    response = client.post("/v1/poems", files={"image": ("lake.jpg", jpeg(), "image/jpeg")},
                           data={"form": "qijue", "topk": "3", "candidates": "2", "seed": "4"})
    assert response.status_code == 200, response.text
    poem = response.json()
    assert poem["image"] == "lake.jpg" and len(poem["keywords"]) == 3
    assert all(k["score"] > 0 for k in poem["keywords"])
    assert len(poem["lines"]) == 4 and all(len(line) == 7 and HAN.match(line)
                                           for line in poem["lines"])
    assert len(poem["candidates"]) == 2 and set(poem["score"]) >= {"total", "clip"}


def test_keywords_as_json_match_the_library_with_the_same_seed(client, pipeline):
    options = {"keywords": "明月,孤舟", "form": "wulv", "acrostic": "春江花月夜色山水", "seed": 7,
               "rhyme": "xinyun", "tones": "strict"}
    response = client.post("/v1/poems", json=options)
    assert response.status_code == 200, response.text
    expected = pipeline.write(keywords=["明月", "孤舟"], lines=8, chars=5, seed=7,
                              acrostic="春江花月夜色山水", tones="strict")
    assert response.json() == json.loads(json.dumps(expected.to_dict(), ensure_ascii=False))
    assert [line[0] for line in response.json()["lines"]] == list("春江花月夜色山水")


def test_line_candidates_in_the_api_write_the_librarys_poem(client, pipeline):
    response = client.post("/v1/poems", json={"keywords": "明月,孤舟", "seed": 2,
                                              "line_candidates": 4})
    assert response.status_code == 200, response.text
    expected = pipeline.write(keywords=["明月", "孤舟"], seed=2, line_candidates=4)
    assert response.json()["lines"] == expected.lines
    assert expected.lines != pipeline.write(keywords=["明月", "孤舟"], seed=2).lines


@pytest.mark.parametrize("request_kwargs,status,words", [
    (dict(files={"image": ("big.jpg", b"\xff" * (2 * 2**20 + 1), "image/jpeg")}), 413, "larger"),
    (dict(files={"image": ("notes.jpg", b"just text", "image/jpeg")}), 415, "not an image"),
    (dict(files={"image": ("huge.png", None, "image/png")}), 413, "pixels"),
    (dict(data={"keywords": "明月", "candidates": "9"}), 422, "candidates"),
    (dict(data={"keywords": "明月", "line_candidates": "17"}), 422, "line_candidates"),
    (dict(data={"keywords": "明月", "polish": "9"}), 422, "polish"),
    (dict(data={"keywords": "明月", "form": "sonnet"}), 422, "form"),
    (dict(data={"keywords": "明月", "acrostic": "春江"}), 422, "acrostic"),
    (dict(data={"keywords": "明月", "colour": "red"}), 422, "colour"),
    (dict(data={"keywords": "moon"}), 422, "Chinese"),
    (dict(data={"keywords": "明月", "rhyme_group": "九霄"}), 422, "rhyme group"),
    (dict(data={"form": "wujue"}), 422, "image"),
    (dict(data={"keywords": "明月", "seed": str(2**64)}), 422, "seed"),
    (dict(data={"keywords": "明月", "seed": "-1"}), 422, "seed"),
    (dict(data={"keywords": "明月", "temperature": "1e-38"}), 422, "temperature"),
    (dict(content='{"keywords": "明月", "seed": 18446744073709551616}'.encode(),
          headers={"content-type": "application/json"}), 422, "seed"),
    (dict(content=b"[1, 2]", headers={"content-type": "application/json"}), 422, "object"),
    (dict(content=b"hello", headers={"content-type": "text/plain"}), 415, "multipart"),
    (dict(content='{"keywords": "明月", "rhyme_group": "\\ud800"}'.encode(),
          headers={"content-type": "application/json"}), 422, "rhyme group '\\ud800'"),
    (dict(json={"keywords": "明月", "rhyme_group": "十唐", "rhyme": "none", "tones": "none"}),
     422, "rhyme group '十唐' needs a rhyme system"),
    (dict(data={"keywords": "明月", "rhyme_group": "十唐", "rhyme": "none"}), 422, "rhyme is none"),
    (dict(json={"keywords": "明月", "given": "明" * 20_000}), 422, "has 20,000 characters"),
    (dict(json={"keywords": "明月", "hint": "x" * 60_000}), 422, "hint"),
    (dict(json={"keywords": "明月", "x" * 60_000: 1}), 422, "xxx"),
    (dict(json={"keywords": "明月，" * 20}), 422, "at most 16 words, got 20"),
    (dict(json={"keywords": "明月，" * 2**20}), 413, "larger than 64 KB"),
    (dict(data={"categories": "山水，" * 2**20}), 413, "larger than 64 KB"),
    (dict(files={"image": ("a.jpg", b"x", "image/jpeg")}, data={"keywords": "明月，" * 2**16}),
     413, "fields beside the photo are larger than 64 KB"),
    (dict(files={"image": ("a.jpg", b"x", "image/jpeg")},
          data={"hint": "x" * 40_000, "imitate": "x" * 40_000}),
     413, "fields beside the photo are larger than 64 KB"),
])
def test_every_limit_is_a_json_4xx(pipeline, request_kwargs, status, words):
    if "files" in request_kwargs and request_kwargs["files"]["image"][1] is None:
        buffer = io.BytesIO()
        Image.new("RGB", (3000, 2000)).save(buffer, "PNG")  # 6 MP, small as a file
        request_kwargs = dict(files={"image": ("huge.png", buffer.getvalue(), "image/png")})
    with client_for(pipeline, max_upload_bytes=2 * 2**20, max_pixels=5_000_000,
                    max_candidates=8) as client:
        response = client.post("/v1/poems", **request_kwargs)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert words in error and "\n" not in error
        assert len(response.content) < 2000  # a huge input is not echoed back
        assert client.get("/healthz").status_code == 200  # the server is still fine


def test_options_are_checked_off_the_event_loop(pipeline, monkeypatch):
    """/healthz is answered while another request's options are still being checked."""
    events, release = [], threading.Event()
    check = serve.PoemRequest.options

    def slow_check(self):
        events.append("checking")
        release.wait(30)
        events.append("checked")
        return check(self)

    monkeypatch.setattr(serve.PoemRequest, "options", slow_check)
    app = create_app(pipeline, Limits(requests_per_minute=0))

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            poem = asyncio.create_task(client.post("/v1/poems", json={"keywords": "明月"}))
            while not events:
                await asyncio.sleep(0.01)
            health = await client.get("/healthz")
            events.append("healthz")
            release.set()
            return await poem, health

    poem, health = asyncio.run(main())
    assert poem.status_code == health.status_code == 200
    assert events == ["checking", "healthz", "checked"]


def test_every_option_works_as_a_form_field(client):
    """Each option of the API, sent as multipart text, as curl -F sends it."""
    fields = {"form": "qilv", "lines": "8", "chars": "7", "rhyme": "xinyun",
              "rhyme_group": "十唐", "tones": "strict", "acrostic": "春江花月夜色山水",
              "allow_repeats": "true", "reduplication": "true", "topk": "3", "candidates": "2",
              "line_candidates": "2", "polish": "1", "hint": "思乡", "seed": "3",
              "temperature": "0.9", "top_p": "0.8", "categories": "天象,山水",
              "per_category": "1", "diversity": "0.5", "emotions": "true",
              "given": "春风明月照孤舟"}
    assert set(fields) | {"keywords", "imitate"} == set(serve.PoemRequest.model_fields)
    response = client.post("/v1/poems", files={"image": ("lake.jpg", jpeg(), "image/jpeg")},
                           data=fields)
    assert response.status_code == 200, response.text
    poem = response.json()
    assert len(poem["lines"]) == 8 and {len(line) for line in poem["lines"]} == {7}
    assert len(poem["keywords"]) == 2 and len(poem["candidates"]) == 2  # a category each
    assert poem["lines"][0] == "春风明月照孤舟"
    for size in ({"lines": "8"}, {"chars": "7"}):
        sized = client.post("/v1/poems", data={"keywords": "明月", **size})
        assert sized.status_code == 200, sized.text
        assert len(sized.json()["lines"]) == int(size.get("lines", 4))
        assert len(sized.json()["lines"][0]) == int(size.get("chars", 5))


def test_a_declared_oversize_body_is_refused_before_it_is_read(client):
    response = client.post("/v1/poems", content=b"x" * 10,
                           headers={"content-type": "multipart/form-data; boundary=x",
                                    "content-length": str(50 * 2**20)})
    assert response.status_code == 413 and "larger than" in response.json()["error"]


def test_an_upload_slower_than_the_read_timeout_is_408(pipeline):
    app = create_app(pipeline, Limits(requests_per_minute=0, read_timeout_s=0.3))

    async def trickle():
        yield b"--b\r\n"
        await asyncio.sleep(5)
        yield b"--b--\r\n"

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/v1/poems", content=trickle(),
                                     headers={"content-type": "multipart/form-data; boundary=b"})

    response = asyncio.run(main())
    assert response.status_code == 408 and "longer than 0.3 s" in response.json()["error"]


def test_a_client_over_its_rate_gets_429_with_retry_after(pipeline):
    with client_for(pipeline, requests_per_minute=6, burst=2) as client:
        codes = [client.post("/v1/poems", json={"keywords": "明月"}).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        refused = client.post("/v1/poems", json={"keywords": "明月"})
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert "too many requests" in refused.json()["error"]


def test_rate_limiter_refills_and_forgets_idle_clients():
    limiter = RateLimiter(per_minute=60, burst=2, max_clients=2)
    assert [limiter.retry_after("a", now=0.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]
    assert limiter.retry_after("a", now=1.5) == 0.0  # one token back after a second
    limiter.retry_after("b", now=1.5)
    limiter.retry_after("c", now=100.0)  # a and b have refilled: forgotten, memory stays bounded
    assert set(limiter.buckets) == {"c"}


def test_a_full_queue_is_503(pipeline):
    app = create_app(pipeline, Limits(requests_per_minute=0, max_queue=0))
    with TestClient(app) as client:
        response = client.post("/v1/poems", json={"keywords": "明月"})
        assert response.status_code == 503 and "busy" in response.json()["error"]
        assert "retry-after" in response.headers
        assert client.get("/healthz").json()["requests"] == 0  # refused, not counted


def test_given_lines_come_as_a_json_list_or_as_form_text(client, pipeline):
    expected = pipeline.write(keywords=["明月"], given=[None, "青山白云飞"], seed=2).lines
    as_json = client.post("/v1/poems", json={"keywords": "明月", "given": [None, "青山白云飞"],
                                             "seed": 2})
    as_form = client.post("/v1/poems", data={"keywords": "明月", "given": "，青山白云飞，，",
                                             "seed": "2"})
    assert as_json.status_code == as_form.status_code == 200, as_json.text
    assert as_json.json()["lines"] == as_form.json()["lines"] == expected
    assert expected[1] == "青山白云飞"
    bad = client.post("/v1/poems", json={"keywords": "明月", "given": ["青山白云"]})
    assert bad.status_code == 422 and "given line 1 青山白云: has 4" in bad.json()["error"]


def test_uploads_beyond_the_decoding_budget_get_503_and_a_large_photo_still_works(pipeline):
    app = create_app(pipeline, Limits(requests_per_minute=0, decode_wait_s=0.05))
    big = io.BytesIO()
    Image.new("RGB", (4000, 3000), (90, 140, 60)).save(big, "PNG")  # 12 MP in 40 KB
    upload = {"files": {"image": ("big.png", big.getvalue(), "image/png")}, "data": {"seed": "1"}}
    with TestClient(app) as client:
        with app.state.decoding.reserve(app.state.decoding.bytes, "another upload"):
            busy = client.post("/v1/poems", **upload)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert busy.json()["error"].startswith("big.png: ") and "try again" in busy.json()["error"]
        answer = client.post("/v1/poems", **upload)
        assert answer.status_code == 200, answer.text
        assert client.get("/healthz").json()["limits"]["decoding_pixels"] == 80_000_000
    assert app.state.decoding.in_use == 0


def test_a_key_that_not_every_client_can_send_is_refused_at_start_up(pipeline):
    for key in ("密钥", "ｓ３ｃｒｅｔ", "two words"):
        with pytest.raises(PoemgenError, match="visible ASCII"):
            create_app(pipeline, api_key=key)


def test_a_failure_in_the_models_is_a_json_500_and_the_server_goes_on(pipeline, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")

    app = create_app(pipeline, Limits(requests_per_minute=0))
    with TestClient(app, raise_server_exceptions=False) as client:
        monkeypatch.setattr(pipeline, "write_batch", out_of_memory)
        failed = client.post("/v1/poems", json={"keywords": "明月"})
        assert failed.status_code == 500
        assert failed.json()["error"].startswith("the server failed (RuntimeError: CUDA out of")
        monkeypatch.undo()
        assert client.post("/v1/poems", json={"keywords": "明月"}).status_code == 200


def test_concurrent_requests_are_batched_and_never_mixed_up(pipeline):
    """Twenty requests at once with different forms, acrostics and keywords: each answer keeps
    its own request's form, acrostic and keywords, and the worker wrote them in batches."""
    app = create_app(pipeline, Limits(requests_per_minute=0, batch_wait_s=0.05))
    acrostics = ["春江花月", "山高水长", "风花雪夜", "云日天地"]
    words = ["明月", "孤舟", "寒梅", "青山", "白云"]

    def request(i):
        fields = {"keywords": words[i % 5], "form": ["wujue", "qijue"][i % 2],
                  "acrostic": acrostics[i % 4]}
        if i % 3 == 0:
            return fields, {"files": {"image": (f"p{i}.jpg", jpeg((i * 12, 90, 40)), "image/jpeg")},
                            "data": fields}
        return fields, {"json": fields}

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            requests = [request(i) for i in range(20)]
            responses = await asyncio.gather(*(client.post("/v1/poems", **kwargs)
                                               for _, kwargs in requests))
            health = (await client.get("/healthz")).json()
        return requests, responses, health

    requests, responses, health = asyncio.run(main())
    for (fields, _), response in zip(requests, responses):
        assert response.status_code == 200, response.text
        poem = response.json()
        assert [k["word"] for k in poem["keywords"]] == [fields["keywords"]]
        assert [line[0] for line in poem["lines"]] == list(fields["acrostic"])
        assert {len(line) for line in poem["lines"]} == {5 if fields["form"] == "wujue" else 7}
    assert health["requests"] == 20 and health["batches"] < 20 and health["largest_batch"] > 1


def test_requests_with_different_seeds_share_a_batch_and_keep_their_poems(pipeline):
    """Eight requests at once, each with its own seed (one with none): fewer batches than
    requests, and each seeded answer is the poem the library writes alone with that seed."""
    app = create_app(pipeline, Limits(requests_per_minute=0, batch_wait_s=0.05))
    words = ["明月", "孤舟", "寒梅", "青山"]
    seeds = [0, 1, 2, 3, 2**64 - 1, 12345, 7, None]

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            responses = await asyncio.gather(*(
                client.post("/v1/poems", json={"keywords": words[i % 4], "seed": seed,
                                               "candidates": 2})
                for i, seed in enumerate(seeds)))
            return responses, (await client.get("/healthz")).json()

    responses, health = asyncio.run(main())
    assert health["requests"] == len(seeds) and health["batches"] < len(seeds)
    for i, (seed, response) in enumerate(zip(seeds, responses)):
        assert response.status_code == 200, response.text
        if seed is not None:
            alone = pipeline.write(keywords=[words[i % 4]], seed=seed, candidates=2)
            assert response.json()["lines"] == alone.lines


def test_given_lines_set_the_form_as_in_the_library(client, pipeline):
    """Without a form, seven-character given lines make a 七言 poem, and the API writes the
    library's poem."""
    given = [None, "江上明月照孤舟"]
    response = client.post("/v1/poems", json={"keywords": "明月", "given": given, "seed": 4})
    assert response.status_code == 200, response.text
    assert response.json()["lines"] == pipeline.write(keywords=["明月"], given=given,
                                                      seed=4).lines
    assert response.json()["lines"][1] == "江上明月照孤舟"


@pytest.mark.parametrize("body", ["[" * 5000 + "]" * 5000,
                                  '{"keywords": ' + "[" * 5000 + "]" * 5000 + "}"])
def test_deeply_nested_json_is_a_422(client, body):
    response = client.post("/v1/poems", content=body.encode(),
                           headers={"content-type": "application/json"})
    assert response.status_code == 422 and "nested too deeply" in response.json()["error"]


def test_a_failure_in_the_models_is_a_json_500_and_the_next_request_works(pipeline, monkeypatch):
    real = pipeline.write_from_keywords
    calls = []

    def fail_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("out of memory (injected)")
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "write_from_keywords", fail_once)
    with client_for(pipeline) as client:
        failed = client.post("/v1/poems", json={"keywords": "明月"})
        assert failed.status_code == 500 and "injected" in failed.json()["error"]
        assert client.post("/v1/poems", json={"keywords": "明月"}).status_code == 200
