"""`poemgen serve` as a user runs it: a real server process, raw sockets and headless Chromium.

Chromium is Debian's (`/usr/bin/chromium`, installed by .ci/run), driven by Playwright with
its `executable_path`; nothing is downloaded. Without Chromium the browser tests are skipped,
except where POEMGEN_REQUIRE_BROWSER=1 (CI) makes that a failure. Set POEMGEN_SCREENSHOTS to a
folder to keep the screenshots (the README's comes from here), and POEMGEN_SCREENSHOT_POET=mini
to take them with the shipped poet instead of the tiny random one.
"""

import base64
import contextlib
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw

from poemgen.cli import main

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LINE = re.compile(r"^[\u4e00-\u9fff]{7}[，。]$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def landscape(path: Path) -> Path:
    """A made-up photo: sky, a sun, mountains and a lake."""
    image = Image.new("RGB", (640, 420), (120, 170, 220))
    draw = ImageDraw.Draw(image)
    for y in range(260):
        draw.line([(0, y), (640, y)], fill=(110 + y // 4, 150 + y // 5, 215))
    draw.ellipse((470, 60, 540, 130), fill=(250, 210, 120))
    draw.polygon([(0, 300), (160, 150), (300, 280), (420, 170), (640, 300)], fill=(70, 100, 90))
    draw.rectangle((0, 300, 640, 420), fill=(60, 110, 150))
    image.save(path)
    return path


@pytest.fixture(scope="module")
def server(tiny, tmp_path_factory):
    yield from served(tiny, tmp_path_factory)


@pytest.fixture(scope="module")
def keyed_server(tiny, tmp_path_factory):
    yield from served(tiny, tmp_path_factory, "--api-key", "s3cret")


def served(tiny, tmp_path_factory, *extra):
    """`poemgen serve` on a free port, as a user starts it; yields its URL."""
    with running(tiny, tmp_path_factory, *extra) as (url, _):
        yield url


@contextlib.contextmanager
def running(tiny, tmp_path_factory, *extra, prelude: str = ""):
    """`poemgen serve` on a free port, after running `prelude` in its process if given;
    gives its URL and process (whose stdout is the server's log, read once it has ended)."""
    port = free_port()
    home = tmp_path_factory.mktemp("serve-home")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "POEMGEN_HOME": str(home)}
    env.pop("POEMGEN_API_KEY", None)
    start = ([sys.executable, "-c", prelude + "\nimport sys\nfrom poemgen.cli import main\n"
              "sys.exit(main(sys.argv[1:]))"] if prelude else [sys.executable, "-m", "poemgen"])
    process = subprocess.Popen(
        [*start, "serve", "--clip", tiny.clip,
         "--poet", os.environ.get("POEMGEN_SCREENSHOT_POET") or tiny.poet,
         "--port", str(port), "--max-upload-mb", "1", "--rate", "0", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"poemgen serve exited: {process.stdout.read()[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("poemgen serve did not answer /healthz within 90 s")
    try:
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_served_api_keeps_its_contract(server, tmp_path):
    assert httpx.get(server + "/healthz").json()["status"] == "ok"
    photo = landscape(tmp_path / "lake.png").read_bytes()
    poem = httpx.post(server + "/v1/poems", files={"image": ("lake.png", photo, "image/png")},
                      data={"form": "qijue"}, timeout=60)
    assert poem.status_code == 200 and len(poem.json()["lines"]) == 4
    words = httpx.post(server + "/v1/poems", data={"keywords": "明月,孤舟"}, timeout=60)
    assert words.status_code == 200 and words.json()["keywords"][0]["word"] == "明月"
    big = httpx.post(server + "/v1/poems", files={"image": ("big.jpg", b"0" * (2 * 2**20))},
                     timeout=60)
    assert big.status_code == 413 and "error" in big.json()
    text = httpx.post(server + "/v1/poems", files={"image": ("a.jpg", b"not a photo")},
                      timeout=60)
    assert text.status_code == 415 and "not an image" in text.json()["error"]


def test_a_slow_upload_does_not_hold_up_other_clients(server):
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as slow:
        slow.sendall(b"POST /v1/poems HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data;"
                     b" boundary=b\r\nContent-Length: 500000\r\n\r\n--b\r\n")
        started = time.monotonic()
        response = httpx.post(server + "/v1/poems", json={"keywords": "青山"}, timeout=30)
        assert response.status_code == 200 and time.monotonic() - started < 20


@pytest.fixture(scope="module", params=[(), ("--forwarded-allow-ips", "127.0.0.1")],
                ids=["direct", "behind-a-proxy"])
def limited_server(request, tiny, tmp_path_factory):
    """A server allowing a burst of 2 requests a client (then one a minute); with the
    parameter, behind a proxy at 127.0.0.1 that names the client in X-Forwarded-For."""
    with running(tiny, tmp_path_factory, "--rate", "1", "--burst", "2", *request.param) as (
            url, _):
        yield url, bool(request.param)


def test_the_rate_limit_counts_forwarded_clients_only_behind_a_trusted_proxy(limited_server):
    url, behind_proxy = limited_server

    def codes(*clients):
        return [httpx.post(url + "/v1/poems", json={"keywords": "明月"}, timeout=60,
                           headers={"X-Forwarded-For": client}).status_code
                for client in clients]

    if behind_proxy:  # each client named by the proxy has its own bucket
        assert codes("10.0.0.1", "10.0.0.2", "10.0.0.3") == [200, 200, 200]
        assert codes("10.0.0.1", "10.0.0.1") == [200, 429]
    else:  # a client cannot name itself anew with each request
        assert codes("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4") == [200, 200, 429, 429]


FAIL_ON_故障 = """
import poemgen.pipeline

write_batch = poemgen.pipeline.Pipeline.write_batch

def failing(self, images=None, options=None, *, keywords=None, **overrides):
    if keywords == [["故障"]]:
        raise RuntimeError("injected failure")
    return write_batch(self, images, options, keywords=keywords, **overrides)

poemgen.pipeline.Pipeline.write_batch = failing
"""


def test_a_failed_request_leaves_its_traceback_in_the_servers_log(tiny, tmp_path_factory):
    with running(tiny, tmp_path_factory, prelude=FAIL_ON_故障) as (url, process):
        failed = httpx.post(url + "/v1/poems", json={"keywords": "故障"}, timeout=60)
        assert failed.status_code == 500 and "injected failure" in failed.json()["error"]
        assert httpx.post(url + "/v1/poems", json={"keywords": "明月"},
                          timeout=60).status_code == 200
    log = process.stdout.read()
    assert "POST /v1/poems failed" in log and "Traceback (most recent call last)" in log
    assert "RuntimeError: injected failure" in log


@pytest.mark.parametrize("key", ["密钥", "ｓ３ｃｒｅｔ"])
def test_a_key_no_browser_can_send_is_refused_at_start_up(tiny, capsys, monkeypatch, key):
    def load(*args, **kwargs):
        raise AssertionError("the models were loaded before the key was checked")

    monkeypatch.setattr("poemgen.pipeline.load", load)
    code = main(["serve", "--clip", tiny.clip, "--poet", tiny.poet, "--port", str(free_port()),
                 "--api-key", key])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "visible ASCII" in err


def test_the_port_in_use_is_one_line(tiny, capsys):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code = main(["serve", "--clip", tiny.clip, "--poet", tiny.poet, "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and f"127.0.0.1:{port}" in err and "--port" in err


def test_serve_without_the_web_extra_says_how_to_install_it(tiny, capsys, monkeypatch):
    import poemgen

    monkeypatch.delitem(sys.modules, "poemgen.serve", raising=False)
    monkeypatch.delattr(poemgen, "serve", raising=False)
    monkeypatch.setitem(sys.modules, "fastapi", None)
    code = main(["serve", "--clip", tiny.clip, "--poet", tiny.poet, "--port", str(free_port())])
    err = capsys.readouterr().err
    assert code == 1 and "poemgen[web]" in err and "fastapi" in err


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("POEMGEN_REQUIRE_BROWSER") == "1":
            pytest.fail(f"no Chromium at {CHROMIUM}; install Debian's chromium package")
        pytest.skip("Chromium is not installed (apt install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"])
        yield browser
        browser.close()


def screenshots(tmp_path) -> Path:
    folder = os.environ.get("POEMGEN_SCREENSHOTS")
    return Path(folder) if folder else tmp_path


@pytest.mark.parametrize("viewport", [{"width": 1100, "height": 760},
                                      {"width": 390, "height": 844}], ids=["desktop", "phone"])
def test_the_page_writes_a_poem_about_a_dropped_photo(server, browser, tmp_path, viewport):
    context = browser.new_context(viewport=viewport, accept_downloads=True,
                                  permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server + "/")
    page.set_input_files("#photo", str(landscape(tmp_path / "lake.png")))
    assert page.locator("#preview").evaluate("img => img.complete && img.naturalWidth") == 640
    page.select_option("#form", "qijue")
    page.fill("#seed", "3")
    page.click("#write")
    page.wait_for_selector("#poem .line", timeout=60_000)
    lines = page.locator("#poem .line").all_inner_texts()
    assert len(lines) == 4 and all(LINE.match(line) for line in lines), lines
    bars = page.locator("#keywords-out .kw")
    assert bars.count() == 5
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    name = "page" if viewport["width"] > 600 else "page-phone"
    page.screenshot(path=str(screenshots(tmp_path) / f"{name}.png"), full_page=True)

    page.click("#copy")
    page.wait_for_function("document.querySelector('#status').textContent === '已复制'")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert re.sub(r"[，。\s]", "", copied) == "".join(line[:7] for line in lines)

    page.click("#layout")  # vertical → horizontal, and the card follows the layout
    assert "vertical" not in page.locator("#poem").get_attribute("class")
    with page.expect_download() as download:
        page.click("#download")
    card = Image.open(io.BytesIO(Path(download.value.path()).read_bytes()))
    assert card.format == "PNG" and card.width == 1080 and card.height > 1000
    card.save(screenshots(tmp_path) / f"{name}-card.png")
    assert errors == []
    context.close()


def test_the_page_shows_the_servers_error(server, browser):
    page = browser.new_page()
    page.goto(server + "/")
    page.set_input_files("#photo", files=[{"name": "notes.jpg", "mimeType": "image/jpeg",
                                           "buffer": b"this is not a photo"}])
    page.click("#write")
    page.wait_for_selector("#error", state="visible", timeout=30_000)
    assert "not an image" in page.inner_text("#error")
    page.close()


def test_a_photo_dropped_on_the_page_is_used(server, browser, tmp_path):
    page = browser.new_page()
    page.goto(server + "/")
    data = base64.b64encode(landscape(tmp_path / "drop.png").read_bytes()).decode()
    transfer = page.evaluate_handle("""data => {
        const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "drop.png", {type: "image/png"}));
        return transfer;
    }""", data)
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    page.wait_for_function("document.querySelector('#preview').naturalWidth === 640")
    page.click("#write")
    page.wait_for_selector("#poem .line", timeout=60_000)
    assert page.locator("#poem .line").count() == 4
    assert float(page.locator("#keywords-out .num").first.inner_text()) > 0  # CLIP's scores
    page.close()


def test_the_page_writes_from_keywords_without_a_photo(server, browser):
    page = browser.new_page()
    page.goto(server + "/")
    page.fill("#keywords", "明月，孤舟")
    page.click("#write")
    page.wait_for_selector("#poem .line", timeout=60_000)
    assert page.locator("#poem .line").count() == 4
    assert page.locator("#keywords-out .kw").all_inner_texts()[0].split() == ["明月", "给定"]
    page.close()


def test_a_keyed_server_wants_its_key_and_the_page_asks_once(keyed_server, browser):
    poem = {"keywords": "明月"}
    refused = httpx.post(keyed_server + "/v1/poems", json=poem, timeout=60)
    assert refused.status_code == 401 and "API key" in refused.json()["error"]
    wrong = httpx.post(keyed_server + "/v1/poems", json=poem, headers={"X-API-Key": "nope"})
    assert wrong.status_code == 401
    for header in ({"Authorization": "Bearer s3cret"}, {"X-API-Key": "s3cret"}):
        assert httpx.post(keyed_server + "/v1/poems", json=poem, headers=header,
                          timeout=60).status_code == 200
    assert httpx.get(keyed_server + "/healthz").json()["api_key_required"] is True
    assert httpx.get(keyed_server + "/").status_code == 200

    page = browser.new_page()
    asked = []

    def answer(dialog):
        asked.append(dialog.message)
        dialog.accept("s3cret")

    page.on("dialog", answer)
    page.goto(keyed_server + "/")
    for _ in range(2):  # the second poem uses the kept key: no second question
        page.fill("#keywords", "明月，孤舟")
        page.click("#write")
        page.wait_for_function("document.querySelectorAll('#poem .line').length == 4",
                               timeout=60_000)
        page.evaluate("document.getElementById('poem').innerHTML = ''")
    assert len(asked) == 1 and "API" in asked[0]
    page.close()


def test_the_page_refuses_keys_it_cannot_send_and_asks_again_after_a_401(keyed_server,
                                                                          browser):
    """密钥 and ｓ３ｃｒｅｔ cannot go in a header: the prompt refuses them and asks again; a
    key the server refuses (a wrong one, or one an older page kept) is asked for again."""
    page = browser.new_page()
    asked, answers, errors = [], [], []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def answer(dialog):
        asked.append(dialog.message)
        dialog.accept(answers.pop(0))

    def write_poem():
        page.evaluate("document.getElementById('poem').innerHTML = ''")
        page.fill("#keywords", "明月，孤舟")
        page.click("#write")
        page.wait_for_function("document.querySelectorAll('#poem .line').length == 4",
                               timeout=30_000)

    page.on("dialog", answer)
    page.goto(keyed_server + "/")
    answers[:] = ["密钥", "ｓ３ｃｒｅｔ", "s3cret"]
    write_poem()
    assert len(asked) == 3 and "英文字母" in asked[1] and "英文字母" in asked[2]
    for kept in ("nope", "密钥"):  # a wrong key, and one an older page kept
        page.evaluate("key => localStorage.setItem('poemgen-api-key', key)", kept)
        page.reload()
        asked.clear()
        answers[:] = ["s3cret"]
        write_poem()
        assert len(asked) == 1 and "API" in asked[0]
    assert page.evaluate("localStorage.getItem('poemgen-api-key')") == "s3cret"
    assert errors == [] and page.inner_text("#error") == ""
    page.close()


def test_the_page_locks_lines_and_rewrites_the_others(server, browser):
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server + "/")
    page.select_option("#form", "wulv")
    page.fill("#keywords", "明月，孤舟")
    page.fill("#seed", "5")
    page.click("#write")
    page.wait_for_function("document.querySelectorAll('#poem .line').length == 8", timeout=60_000)
    before = page.locator("#poem .line").all_inner_texts()
    for i in (0, 3, 5):
        page.locator("#poem .line").nth(i).click()
    page.locator("#poem .line").nth(5).press("Enter")  # the keyboard unlocks it again
    assert page.locator("#poem .line.locked").count() == 2
    page.evaluate("$('status').textContent = ''")
    with page.expect_request(lambda r: r.url.endswith("/v1/poems")) as sent:
        page.click("#rewrite")
    body = sent.value.post_data
    assert f"{before[0][:5]}，，，{before[3][:5]}" in body and "wulv" in body
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('用时')",
                           timeout=60_000)
    after = page.locator("#poem .line").all_inner_texts()
    assert len(after) == 8 and after[0] == before[0] and after[3] == before[3]
    assert [page.locator("#poem .line").nth(i).get_attribute("aria-pressed") for i in (0, 3, 5)] \
        == ["true", "true", "false"]
    assert page.locator("#keywords-out .kw").count() == 2
    assert errors == []
    page.close()
