"""Batch runs over folders: `poemgen DIR --out poems.jsonl`, resumable after a kill."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from conftest import make_photo
from poemgen.batch import find_images
from poemgen.cli import main


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def photo_folder(root, count):
    """`count` distinct photos in a folder with a subfolder, plus files that are not photos."""
    (root / "sub").mkdir(parents=True)
    paths = []
    for i in range(count):
        folder = root / "sub" if i % 3 == 2 else root
        paths.append(make_photo(folder / f"p{i:02d}.jpg", colour=(i * 9 % 256, 80, 200 - i)))
    (root / "notes.txt").write_text("not a photo")
    (root / ".hidden.jpg").write_text("editor leftovers")
    return paths


def test_folders_are_searched_recursively_and_patterns_expanded(tmp_path):
    paths = photo_folder(tmp_path / "photos", 5)
    found = find_images([str(tmp_path / "photos")])
    assert sorted(found) == sorted(str(p) for p in paths)
    assert found == find_images([str(tmp_path / "photos"), str(paths[0])])  # each image once
    pattern = find_images([str(tmp_path / "photos" / "**" / "*.jpg")])
    assert sorted(pattern) == sorted(found)
    assert find_images([str(tmp_path / "photos" / "notes.txt")]) == \
        [str(tmp_path / "photos" / "notes.txt")]  # named directly: kept, fails at loading


def test_a_pattern_matching_nothing_is_one_line(tiny, tmp_path, capsys):
    code, out, err = run(capsys, tmp_path / "*.jpg", "--clip", tiny.clip, "--keywords-only")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "no images match" in err and "*.jpg" in err


@pytest.mark.parametrize("out,message", [(".", "is a folder"),
                                         ("missing/poems.jsonl", "does not exist")])
def test_bad_output_paths_are_one_line(tiny, tmp_path, capsys, photo, out, message):
    code, _, err = run(capsys, photo, "--out", tmp_path / out, "--clip", tiny.clip,
                       "--poet", tiny.poet)
    assert code == 1 and err.count("\n") == 1 and message in err


def test_an_unwritable_output_fails_before_any_work(tiny, tmp_path, capsys, photo, monkeypatch):
    from poemgen.keywords import KeywordScorer

    def never(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(KeywordScorer, "load", never)
    code, out, err = run(capsys, photo, "--out", "/proc/poems.jsonl", "--clip", tiny.clip,
                         "--keywords-only")
    assert code == 1 and err.count("\n") == 1 and "cannot be written" in err
    assert out == "" and not os.path.exists("/proc/poems.jsonl")


@pytest.mark.parametrize("device", ["/dev/null", "/dev/zero"])
def test_out_to_a_device_writes_and_never_reads_it(tiny, capsys, photo, device):
    code, _, err = run(capsys, photo, "--out", device, "--clip", tiny.clip, "--keywords-only")
    assert code == 0, err


def test_out_dash_writes_json_lines_to_standard_output(tiny, tmp_path, capsys):
    paths = photo_folder(tmp_path / "photos", 3)
    code, out, err = run(capsys, tmp_path / "photos", "--out", "-", "--clip", tiny.clip,
                         "--poet", tiny.poet, "--seed", 1)
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert sorted(line["image"] for line in lines) == sorted(str(p) for p in paths)
    assert all(len(line["lines"]) == 4 for line in lines)


def test_out_needs_images(tiny, tmp_path, capsys):
    code, _, err = run(capsys, "--keywords", "明月", "--out", tmp_path / "p.jsonl",
                       "--poet", tiny.poet)
    assert code == 1 and "--out needs images" in err


def test_out_writes_one_line_per_image_and_a_rerun_skips_them(tiny, tmp_path, capsys):
    paths = photo_folder(tmp_path / "photos", 5)
    out = tmp_path / "poems.jsonl"
    args = (tmp_path / "photos", "--out", out, "--clip", tiny.clip, "--poet", tiny.poet,
            "--batch-size", "2", "--seed", "1")
    code, stdout, err = run(capsys, *args)
    assert code == 0 and stdout == ""
    first = records(out)
    assert sorted(r["image"] for r in first) == sorted(str(p) for p in paths)
    for record in first:
        assert len(record["lines"]) == 4 and len(record["sha256"]) == 64
        assert record["keywords"] and record["poem"]
    assert "0 of 5 images already" in err and "poems" in err  # the progress bar's label

    code, _, err = run(capsys, *args)
    assert code == 0 and records(out) == first and "5 of 5 images already" in err

    make_photo(paths[1], colour=(250, 250, 0))  # changed content: a new image at that path
    code, _, err = run(capsys, *args)
    assert code == 0 and "4 of 5 images already" in err
    changed = [r for r in records(out) if r["image"] == str(paths[1])]
    assert len(changed) == 2 and changed[0]["sha256"] != changed[1]["sha256"]


def test_bad_images_become_error_lines_and_are_not_retried(tiny, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    good = make_photo(folder / "good.jpg")
    (folder / "broken.jpg").write_text("not a picture")
    out = tmp_path / "poems.jsonl"
    args = (folder, "--out", out, "--clip", tiny.clip, "--poet", tiny.poet)
    code, _, err = run(capsys, *args)
    assert code == 1
    by_image = {r["image"]: r for r in records(out)}
    assert by_image[str(good)]["lines"]
    assert "not an image" in by_image[str(folder / "broken.jpg")]["error"]
    assert "broken.jpg" in err and "Traceback" not in err
    code, _, err = run(capsys, *args)
    assert code == 0 and len(records(out)) == 2 and "2 of 2 images already" in err


def test_a_line_cut_short_is_dropped_and_its_image_written_again(tiny, tmp_path, capsys):
    paths = photo_folder(tmp_path / "photos", 3)
    out = tmp_path / "poems.jsonl"
    args = (tmp_path / "photos", "--out", out, "--clip", tiny.clip, "--poet", tiny.poet)
    assert run(capsys, *args)[0] == 0
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:2]) + lines[2][:40])  # killed while writing the third line
    code, _, err = run(capsys, *args)
    assert code == 0 and "dropped 1 incomplete line" in err
    assert Counter(r["image"] for r in records(out)) == Counter(str(p) for p in paths)


@pytest.mark.parametrize("content", [
    b"My notes\nDay 1\n",                                   # a user's text file
    b"My notes",                                              # one line, no line break
    b'{"id": 1, "text": "x"}\n{"other": "tool"}\n',         # another tool's JSON lines
    b'{"image": "a.jpg", "caption": "x"}\n',                 # … even with an image field
    b'{"id": 1}\n{"image": "p.jpg", "keyw',                  # ending like a cut-short line
    b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8,             # a photo given as --out
], ids=["text", "text-no-newline", "jsonl", "jsonl-image", "jsonl-cut", "binary"])
def test_an_out_file_that_is_not_poemgen_output_is_refused_and_kept(tiny, tmp_path, capsys,
                                                                     photo, content):
    out = tmp_path / "notes.txt"
    out.write_bytes(content)
    code, stdout, err = run(capsys, photo, "--out", out, "--clip", tiny.clip, "--keywords-only")
    assert code == 1 and stdout == "" and err.count("\n") == 1
    assert "is not the output of a `poemgen --out` run" in err and "nothing in it was" in err
    assert out.read_bytes() == content


def test_only_the_lines_a_kill_cut_short_are_dropped(tiny, tmp_path, capsys):
    """A process of a multi-process run that died mid-line leaves a cut line inside the file
    (the next line starts on a line of its own); it goes with the cut last line, and the
    whole records stay, as they were."""
    paths = photo_folder(tmp_path / "photos", 3)
    out = tmp_path / "poems.jsonl"
    args = (tmp_path / "photos", "--out", out, "--clip", tiny.clip, "--keywords-only")
    assert run(capsys, *args)[0] == 0
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(lines[0][:5] + "\n" + lines[0] + lines[1] + lines[2][:30])
    code, _, err = run(capsys, *args)
    assert code == 0 and "dropped 2 incomplete line(s)" in err
    assert out.read_text().splitlines(keepends=True)[:2] == lines[:2]
    assert Counter(r["image"] for r in records(out)) == Counter(str(p) for p in paths)


def test_a_name_that_is_not_utf8_is_written_losslessly_and_resumed(tiny, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    good = make_photo(folder / "good.jpg")
    odd = os.fsdecode(os.fsencode(folder) + b"/z\xe9.jpg")  # Latin-1 é: not UTF-8
    make_photo(odd, colour=(200, 10, 10))
    out = tmp_path / "poems.jsonl"
    args = (folder, "--out", out, "--clip", tiny.clip, "--keywords-only")
    code, _, err = run(capsys, *args)
    assert code == 0, err
    text = out.read_bytes().decode("utf-8")  # the file stays UTF-8 …
    assert "z\\udce9.jpg" in text  # … with the byte as its surrogate escape
    assert sorted(r["image"] for r in records(out)) == sorted([str(good), odd])
    code, _, err = run(capsys, *args)
    assert code == 0 and "2 of 2 images already" in err

    code, stdout, err = run(capsys, odd, "--clip", tiny.clip, "--keywords-only", "--json")
    assert code == 0 and json.loads(stdout)["image"] == odd
    code, stdout, err = run(capsys, odd, "--clip", tiny.clip, "--keywords-only")
    assert code == 0 and stdout.startswith(f"{folder}/z\\udce9.jpg\n关键词")


def test_what_is_not_a_regular_file_is_an_error_line_and_never_read(tiny, tmp_path, capsys):
    """A FIFO named like a photo used to be opened and waited on forever; a device read to its
    end (/dev/zero: until memory ran out). Each is now one error line, unread, and the photo
    beside them gets its poem; so does a resumed run, which skips them."""
    folder = tmp_path / "photos"
    folder.mkdir()
    good = make_photo(folder / "good.jpg")
    fifo = folder / "f.jpg"
    os.mkfifo(fifo)
    (folder / "null.jpg").symlink_to("/dev/null")
    with open(folder / "huge.tif", "wb") as huge:  # sparse: no disk, no time
        huge.truncate(513 * 2**20)
    # Were the FIFO opened, this writer would end the wait (an empty read) rather than hang.
    writer = threading.Thread(target=lambda: open(fifo, "wb").close(), daemon=True)
    writer.start()
    try:
        out = tmp_path / "poems.jsonl"
        args = (folder, "--out", out, "--clip", tiny.clip, "--keywords-only")
        code, _, err = run(capsys, *args)
        assert code == 1 and "Traceback" not in err
        by_image = {r["image"]: r for r in records(out)}
        assert by_image[str(good)]["keywords"]
        for name in ("f.jpg", "null.jpg"):
            assert "is not a regular file" in by_image[str(folder / name)]["error"]
        assert "is larger than 512 MiB" in by_image[str(folder / "huge.tif")]["error"]
        assert err.count("poemgen: error:") == 3
        code, _, err = run(capsys, *args)
        assert code == 0 and "4 of 4 images already" in err
    finally:
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # lets the writer go
        writer.join()


def cli(*args):
    return [sys.executable, "-m", "poemgen", *map(str, args)]


def quiet_env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}


@pytest.mark.slow
def test_a_killed_run_resumes_with_each_image_exactly_once(tiny, tmp_path):
    paths = photo_folder(tmp_path / "photos", 24)
    out = tmp_path / "poems.jsonl"
    command = cli(tmp_path / "photos", "--out", out, "--clip", tiny.clip, "--poet", tiny.poet,
                  "--batch-size", "1", "--form", "qilv", "--candidates", "2",
                  "--line-candidates", "1")  # quick photos, so a loaded machine reaches 3 lines
    process = subprocess.Popen(command, env=quiet_env(), stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = len(records(out))
    assert 3 <= before < len(paths), "the run was not killed part-way; the test proves nothing"

    resumed = subprocess.run(command, env=quiet_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{before} of {len(paths)} images already" in resumed.stderr
    assert Counter(r["image"] for r in records(out)) == Counter(str(p) for p in paths)


@pytest.mark.slow
def test_accelerate_launch_splits_images_between_processes(tiny, tmp_path):
    """`--multi_gpu` is accelerate's torchrun launcher; without GPUs the processes use gloo."""
    paths = photo_folder(tmp_path / "photos", 7)
    out = tmp_path / "poems.jsonl"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
               "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "poemgen", str(tmp_path / "photos"), "--out", str(out), "--clip", tiny.clip,
               "--poet", tiny.poet, "--batch-size", "2"]
    done = subprocess.run(command, env=quiet_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    written = records(out)
    assert Counter(r["image"] for r in written) == Counter(str(p) for p in paths)
    assert all(len(r["lines"]) == 4 for r in written)
    shares = sorted(done.stderr.count(f"process {i} of 2 writes") for i in (1, 2))
    assert shares == [1, 1] and "writes 4 images" in done.stderr and "writes 3 images" in done.stderr


def test_a_failing_batch_is_retried_smaller_and_only_the_failing_photo_is_an_error(
        tiny, tmp_path, capsys, monkeypatch):
    """Injected: the models fail on any batch holding one particular (red) photo, as an
    out-of-memory error or a model bug would."""
    from poemgen.keywords import KeywordScorer

    paths = photo_folder(tmp_path / "photos", 5)
    poisoned = make_photo(tmp_path / "photos" / "red.jpg", colour=(255, 0, 0))
    real = KeywordScorer.embed_images

    def embed(self, images):
        if any(max(abs(a - b) for a, b in zip(image.getpixel((0, 0)), (255, 0, 0))) < 8
               for image in images):
            raise RuntimeError("CUDA out of memory (injected)")
        return real(self, images)

    monkeypatch.setattr(KeywordScorer, "embed_images", embed)
    out = tmp_path / "poems.jsonl"
    code, _, err = run(capsys, tmp_path / "photos", "--out", out, "--clip", tiny.clip,
                       "--poet", tiny.poet, "--batch-size", 4)
    assert code == 1
    lines = {line["image"]: line for line in records(out)}
    assert sorted(lines) == sorted(str(p) for p in paths + [poisoned])
    assert "the models failed on this photo (RuntimeError: CUDA out of memory (injected))" in \
        lines[str(poisoned)]["error"]
    assert all("lines" in lines[str(p)] for p in paths)
    assert err.count("poemgen: error:") == 1 and "Traceback" not in err


def test_a_photo_whose_decoding_raises_anything_is_one_error_line(tiny, tmp_path, capsys,
                                                                   monkeypatch):
    """Injected: the decoder fails on one photo with an exception poemgen does not expect (as
    Pillow's EXIF parsing once raised struct.error); the batch goes on without it."""
    import struct

    from poemgen.pipeline import Pipeline

    paths = photo_folder(tmp_path / "photos", 4)
    real = Pipeline.load_photo

    def load_photo(self, image, *, name=None, **kwargs):
        if name == str(paths[1]):
            struct.unpack(">I", b"\x00")  # raises struct.error
        return real(self, image, name=name, **kwargs)

    monkeypatch.setattr(Pipeline, "load_photo", load_photo)
    out = tmp_path / "poems.jsonl"
    code, _, err = run(capsys, tmp_path / "photos", "--out", out, "--clip", tiny.clip,
                       "--poet", tiny.poet, "--batch-size", 4)
    assert code == 1 and "Traceback" not in err
    lines = {line["image"]: line for line in records(out)}
    assert lines[str(paths[1])]["error"] == (
        f"{paths[1]}: could not be decoded (struct.error: unpack requires a buffer of 4 bytes); "
        "re-export it (and report the error to poemgen)")
    assert all("lines" in lines[str(p)] for p in paths if p != paths[1])
    assert err.count("poemgen: error:") == 1

    code, stdout, err = run(capsys, *paths, "--clip", tiny.clip, "--poet", tiny.poet, "--json")
    assert code == 1 and err.count("\n") == 1 and "struct.error" in err
    assert [json.loads(line)["image"] for line in stdout.splitlines()] == \
        [str(p) for p in paths if p != paths[1]]
