import contextlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys

import pytest

from conftest import make_photo
from poemgen import prompt
from poemgen.cli import main
from poemgen.models import DEFAULT_CLIP, DEFAULT_POET, SHIPPED_POET

HAN_LINE = r"[\u4e00-\u9fff]{%d}[，。]"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def poem_rows(out, chars=5):
    return [row for row in out.splitlines() if re.fullmatch(HAN_LINE % chars, row)]


def test_prints_keywords_and_a_quatrain(tiny, photo, capsys):
    code, out, err = run(capsys, photo, "--clip", tiny.clip, "--poet", tiny.poet, "--topk", 5)
    assert code == 0, err
    assert out.startswith(f"{photo}\n关键词  ")
    assert len(re.findall(r"[\u4e00-\u9fff]+ \d\.\d{3}", out.splitlines()[1])) == 5
    rows = poem_rows(out)
    assert len(rows) == 4 and [r[-1] for r in rows] == ["，", "。", "，", "。"]


def test_json_lines_one_object_per_image(tiny, tmp_path, capsys):
    photos = [make_photo(tmp_path / f"{i}.jpg", (40 * i, 100, 100)) for i in range(3)]
    code, out, err = run(capsys, *photos, "--clip", tiny.clip, "--poet", tiny.poet, "--json",
                         "--lines", 8, "--chars", 7, "--topk", 3)
    assert code == 0, err
    objects = [json.loads(line) for line in out.splitlines()]
    assert [o["image"] for o in objects] == [str(p) for p in photos]
    for o in objects:
        assert set(o) >= {"image", "keywords", "lines", "poem", "score", "notes"}
        assert len(o["keywords"]) == 3 and set(o["keywords"][0]) == {"word", "score"}
        assert len(o["lines"]) == 8 and all(len(line) == 7 for line in o["lines"])
        assert o["poem"] == prompt.format_poem(o["lines"])


def test_seed_makes_runs_reproducible(tiny, photo, capsys):
    argv = [photo, "--clip", tiny.clip, "--poet", tiny.poet, "--seed", 11, "--json"]
    assert run(capsys, *argv)[1] == run(capsys, *argv)[1]


def test_line_candidates_from_the_command_line(tiny, capsys):
    argv = ["--keywords", "明月,孤舟", "--poet", tiny.poet, "--seed", 3, "--json"]
    searched = run(capsys, *argv, "--line-candidates", 4)
    assert searched[0] == 0 and searched[1] != run(capsys, *argv)[1]
    with pytest.raises(SystemExit) as usage:
        main([str(a) for a in argv] + ["--line-candidates", "0"])
    assert usage.value.code == 2 and "--line-candidates" in capsys.readouterr().err


def test_a_seeded_photo_gets_its_poem_whatever_else_is_in_the_run(tiny, photo, tmp_path, capsys):
    other = make_photo(tmp_path / "other.png", (200, 60, 20))
    models = ["--clip", tiny.clip, "--poet", tiny.poet, "--seed", 11, "--json"]
    alone = json.loads(run(capsys, photo, *models)[1])
    together = [json.loads(line) for line in run(capsys, other, photo, *models)[1].splitlines()]
    assert together[1]["lines"] == alone["lines"]


@pytest.mark.parametrize("seed", ["-1", str(2**64)])
def test_a_seed_out_of_range_is_one_line(photo, capsys, seed):
    code, _, err = run(capsys, "--keywords", "明月", "--seed", seed)
    assert code == 2 and "seed must be a whole number from 0 to 2**64-1" in err
    assert err.count("\n") == 1


def test_one_bad_image_does_not_stop_the_others(tiny, tmp_path, capsys):
    good = [make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "b.png")]
    code, out, err = run(capsys, good[0], tmp_path / "missing.jpg", good[1], "--clip", tiny.clip,
                         "--poet", tiny.poet, "--json")
    assert code == 1
    assert [json.loads(line)["image"] for line in out.splitlines()] == [str(p) for p in good]
    assert err.strip().count("\n") == 0 and "missing.jpg" in err and "no such file" in err


def bad_images(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("this is text, not a picture")
    data = make_photo(tmp_path / "whole.png", size=(300, 300)).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "folder.jpg").mkdir()
    return {"empty.jpg": "is empty", "notes.jpg": "not an image", "cut.png": "truncated",
            "folder.jpg": "no images found", "missing.jpg": "no such file"}


@pytest.mark.parametrize("name", ["empty.jpg", "notes.jpg", "cut.png", "folder.jpg", "missing.jpg"])
def test_each_bad_image_gets_one_line(tiny, tmp_path, capsys, name):
    reason = bad_images(tmp_path)[name]
    code, out, err = run(capsys, tmp_path / name, "--clip", tiny.clip, "--keywords-only")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert name in err and reason in err


def test_default_poet_offline_falls_back_to_the_shipped_poet(tiny, photo, capsys):
    """HF_HUB_OFFLINE is set and the public poet is not cached: the poet shipped in the
    package writes, and one stderr line says so and how to get the public one."""
    code, out, err = run(capsys, photo, "--clip", tiny.clip, "--json", "--seed", 1)
    assert code == 0, err
    assert len(err.strip().splitlines()) == 1
    assert DEFAULT_POET in err and f"--poet {SHIPPED_POET}" in err and "hf download" in err
    result = json.loads(out)
    assert len(result["keywords"]) == 5 and len(result["lines"]) == 4


def test_the_shipped_poet_by_name_needs_no_network(capsys):
    code, out, err = run(capsys, "--keywords", "明月,孤舟,寒梅", "--poet", SHIPPED_POET,
                         "--form", "qijue", "--seed", 1)
    assert code == 0 and err == ""
    assert len(poem_rows(out, chars=7)) == 4


def test_a_named_public_poet_that_is_missing_is_an_error(capsys):
    code, out, err = run(capsys, "--keywords", "明月", "--poet", DEFAULT_POET)
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert "not in the local Hugging Face cache" in err


def test_default_poet_from_the_cache_writes_with_the_title_format(tiny, photo, capsys, hub_cache):
    """The public poet, found in the local cache with HF_HUB_OFFLINE=1 and no metadata file:
    the registry gives its format, and the poem is written line by line."""
    hub_cache(DEFAULT_POET, tiny.poet, skip=(prompt.METADATA_FILE,))
    code, out, err = run(capsys, photo, "--clip", tiny.clip, "--json", "--chars", 7,
                         "--imitate", "李白", "--seed", 1)
    assert code == 0, err
    lines = json.loads(out)["lines"]
    assert len(lines) == 4 and all(re.fullmatch(r"[\u4e00-\u9fff]{7}", line) for line in lines)


def test_title_format_for_a_folder_without_metadata(tiny, tmp_path, photo, capsys):
    folder = shutil.copytree(tiny.poet, tmp_path / "plain-t5")
    (folder / prompt.METADATA_FILE).unlink()
    code, out, err = run(capsys, photo, "--clip", tiny.clip, "--poet", folder,
                         "--poet-format", "title", "--json", "--lines", 8)
    assert code == 0, err
    result = json.loads(out)
    assert len(result["lines"]) == 8 and all(len(line) == 5 for line in result["lines"])
    assert result["poem"] == prompt.format_poem(result["lines"])


def test_folder_without_metadata_lists_the_formats(tiny, tmp_path, photo, capsys):
    folder = shutil.copytree(tiny.poet, tmp_path / "plain-t5")
    (folder / prompt.METADATA_FILE).unlink()
    code, out, err = run(capsys, photo, "--clip", tiny.clip, "--poet", folder)
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert "prompt format is unknown" in err and "--poet-format lines|title" in err


def test_imitate_needs_a_title_poet(tiny, photo, capsys):
    code, out, err = run(capsys, photo, "--clip", tiny.clip, "--poet", tiny.poet,
                         "--imitate", "李白")
    assert code == 1 and "cannot imitate" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("bad", [["--hint", "moon"], ["--imitate", "Li Bai"]])
def test_hint_and_imitate_must_be_chinese(photo, capsys, bad):
    code, out, err = run(capsys, photo, *bad)
    assert code == 2 and err.startswith("poemgen: error: ") and len(err.strip().splitlines()) == 1


def test_hint_steers_the_lines_poet(tiny, photo, capsys):
    code, out, err = run(capsys, photo, "--clip", tiny.clip, "--poet", tiny.poet, "--hint", "思乡",
                         "--json")
    assert code == 0, err
    assert len(json.loads(out)["lines"]) == 4


def test_models_lists_the_known_models_and_what_is_cached(tiny, capsys, hub_cache):
    hub_cache(DEFAULT_CLIP, tiny.clip)
    code, out, err = run(capsys, "models", "--json")
    assert code == 0, err
    rows = {row["id"]: row for row in map(json.loads, out.splitlines())}
    assert rows[DEFAULT_CLIP]["available"] and rows[DEFAULT_CLIP]["in_use"]
    assert rows[DEFAULT_POET]["prompt_format"] == "title"
    assert not rows[DEFAULT_POET]["available"] and not rows[DEFAULT_POET]["in_use"]  # offline
    assert rows[SHIPPED_POET]["available"] and rows[SHIPPED_POET]["in_use"]
    assert rows[SHIPPED_POET]["prompt_format"] == "poem"
    assert rows["OFA-Sys/chinese-clip-vit-large-patch14"]["size"] == "1.63 GB"

    code, out, err = run(capsys, "models")
    assert code == 0 and DEFAULT_CLIP in out and DEFAULT_POET in out


def test_models_shows_your_own_poet_in_use(tiny, capsys, isolated_home):
    shutil.copytree(tiny.poet, isolated_home / "poet")
    code, out, err = run(capsys, "models", "--json")
    rows = {row["id"]: row for row in map(json.loads, out.splitlines())}
    own = rows[str(isolated_home / "poet")]
    assert own["available"] and own["in_use"] and own["prompt_format"] == "lines"
    assert not rows[DEFAULT_POET]["in_use"]


def test_clip_dtype_bfloat16_from_the_command_line(tiny, photo, capsys):
    code = main([str(photo), "--clip", tiny.clip, "--keywords-only", "--clip-dtype", "bfloat16",
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert len(json.loads(out)["keywords"]) == 5


def test_keywords_only_never_loads_the_poet(tiny, photo, capsys):
    code, out, err = run(capsys, photo, "--clip", tiny.clip, "--poet", "./no/such/poet",
                         "--keywords-only", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert len(result["keywords"]) == 5 and result["lines"] == []


def test_poet_from_environment(tiny, photo, capsys, monkeypatch):
    monkeypatch.setenv("POEMGEN_POET", tiny.poet)
    code, out, err = run(capsys, photo, "--clip", tiny.clip)
    assert code == 0, err
    assert len(poem_rows(out)) == 4


def broken_models(tiny, tmp_path):
    (tmp_path / "empty").mkdir()
    no_metadata = shutil.copytree(tiny.poet, tmp_path / "no-metadata")
    (no_metadata / prompt.METADATA_FILE).unlink()
    (tmp_path / "file.bin").write_bytes(b"x")
    return {
        "clip-missing": (["--clip", str(tmp_path / "nope")], "CLIP model", "no such folder"),
        "clip-empty": (["--clip", str(tmp_path / "empty")], "CLIP model", "no model weights"),
        "clip-not-cached": (["--clip", "OFA-Sys/not-a-cached-model"], "CLIP model",
                            "not in the local Hugging Face cache and HF_HUB_OFFLINE is set"),
        "clip-is-file": (["--clip", str(tmp_path / "file.bin")], "CLIP model", "is a file"),
        "poet-missing": (["--poet", "./nope"], "poet", "no such folder"),
        "poet-no-metadata": (["--poet", str(no_metadata)], "poet", "prompt format is unknown"),
        "poet-not-cached": (["--poet", "someone/not-a-cached-poet"], "poet",
                            "not in the local Hugging Face cache and HF_HUB_OFFLINE is set"),
    }


@pytest.mark.parametrize("case", ["clip-missing", "clip-empty", "clip-not-cached", "clip-is-file",
                                  "poet-missing", "poet-no-metadata", "poet-not-cached"])
def test_model_errors_are_one_clear_line(tiny, photo, tmp_path, capsys, case):
    args, role, reason = broken_models(tiny, tmp_path)[case]
    defaults = {"--clip": tiny.clip, "--poet": tiny.poet}
    defaults[args[0]] = args[1]
    code, out, err = run(capsys, photo, *[x for kv in defaults.items() for x in kv])
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"poemgen: error: {role} '{args[1]}'") and reason in err


def test_malformed_vocabulary_names_file_and_line(tiny, photo, tmp_path, capsys):
    vocab = tmp_path / "mine.txt"
    vocab.write_text("明月\t天象\n孤舟 建筑器物\n", encoding="utf-8")
    code, out, err = run(capsys, photo, "--clip", tiny.clip, "--keywords-only", "--vocab", vocab)
    assert code == 1 and f"{vocab}:2:" in err and len(err.strip().splitlines()) == 1


def test_a_vocabulary_is_read_up_to_its_limit(tiny, photo, capsys, monkeypatch):
    """--vocab /dev/zero was read until memory ran out (the limit made small here)."""
    from poemgen import keywords

    monkeypatch.setattr(keywords, "MAX_VOCABULARY_BYTES", 2**20)
    code, out, err = run(capsys, photo, "--clip", tiny.clip, "--keywords-only", "--vocab",
                         "/dev/zero")
    assert code == 1 and out == "" and err == (
        "poemgen: error: vocabulary '/dev/zero': larger than 1 MiB; pass a vocabulary file of "
        "WORD<TAB>CATEGORY lines\n")


def test_own_vocabulary_is_used(tiny, photo, tmp_path, capsys):
    vocab = tmp_path / "mine.txt"
    vocab.write_text("明月\t天象\n孤舟\t建筑器物\n寒梅\t草木\n", encoding="utf-8")
    code, out, err = run(capsys, photo, "--clip", tiny.clip, "--keywords-only", "--json",
                         "--vocab", vocab, "--topk", 10)
    assert code == 0, err
    assert sorted(k["word"] for k in json.loads(out)["keywords"]) == ["孤舟", "寒梅", "明月"]


@pytest.mark.parametrize("bad", [["--temperature", "-1"], ["--top-p", "2"],
                                 ["--temperature", "1e-40"], ["--temperature", "inf"],
                                 ["--temperature", "nan"], ["--top-p", "nan"]])
def test_bad_sampling_options_are_one_line(photo, capsys, bad):
    code, out, err = run(capsys, photo, *bad)
    assert code == 2 and err.startswith("poemgen: error: ") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("lines, message", [
    (["2=疑是地上霜", "²=床前明月光"], "--line ²=床前明月光: write it as N=TEXT"),  # isdigit, not int
    (["99999999999=床前明月光"], "a poem has at most 8 lines; give N from 1 to 8"),  # was 4.7 GB+
    (["9" * 5000 + "=床前明月光"], "a poem has at most 8 lines"),  # more digits than int() takes
    (["1=床前明月光", "1=疑是地上霜"], "line 1 is already given as 床前明月光"),
])
def test_bad_given_lines_are_usage_errors(capsys, lines, message):
    code, out, err = run(capsys, "--keywords", "明月", *[f"--line={x}" for x in lines])
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err


def test_the_smallest_temperature_writes(tiny, capsys):
    code, out, err = run(capsys, "--keywords", "明月", "--poet", tiny.poet, "--temperature", "1e-3")
    assert code == 0 and len(poem_rows(out)) == 4


@pytest.mark.parametrize("device", ["nonsense", "meta"])
def test_bad_device_is_one_line(tiny, photo, capsys, device):
    code, out, err = run(capsys, photo, "--clip", tiny.clip, "--keywords-only", "--device", device)
    assert code == 1 and f"device '{device}'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [["--topk", "0", "x.jpg"], ["--lines", "6", "x.jpg"], []])
def test_bad_arguments_exit_with_usage(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "usage: poemgen" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("poemgen 0.")


def test_categories_choose_where_keywords_come_from(tiny, photo, capsys):
    from poemgen.keywords import Vocabulary

    category = dict(zip(Vocabulary.default().words, Vocabulary.default().categories))
    code, out, err = run(capsys, photo, "--clip", tiny.clip, "--keywords-only", "--json",
                         "--categories", "山水,草木", "--topk", 4, "--per-category", 2)
    assert code == 0, err
    words = [k["word"] for k in json.loads(out)["keywords"]]
    assert len(words) == 4 and {category[w] for w in words} == {"山水", "草木"}

    code, out, err = run(capsys, photo, "--clip", tiny.clip, "--keywords-only",
                         "--categories", "海洋")
    assert code == 1 and out == "" and "unknown category 海洋" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, message", [
    (["--port", "70000"], "must be a port from 1 to 65535, got 70000"),
    (["--port", "-1"], "must be a port from 1 to 65535, got -1"),
    (["--max-upload-mb", "nan"], "must be a number of MiB from 0.001 to 1048576, got nan"),
    (["--max-upload-mb", "inf"], "must be a number of MiB from 0.001 to 1048576, got inf"),
    (["--max-upload-mb", "0"], "must be a number of MiB"),
    (["--rate", "nan"], "must be requests per minute from 0 (no limit) to 1000000, got nan"),
    (["--rate", "-5"], "must be requests per minute"),
])
def test_serve_refuses_bad_limits_as_usage_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as usage:
        main(["serve", *argv])
    err = capsys.readouterr().err
    assert usage.value.code == 2 and message in err and "Traceback" not in err


# --- a full disk: one line and a non-zero exit, never a traceback --------------------------------

@contextlib.contextmanager
def full_stdout(monkeypatch):
    """Standard output on a device that is always full, as `> /dev/full` makes it (set in the
    test itself: pytest sets its own capture again when a test starts)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    with open("/dev/full", "wb") as device:
        monkeypatch.setattr("sys.stdout", io.TextIOWrapper(device, encoding="utf-8"))
        yield


def test_check_into_a_full_disk_is_one_line(monkeypatch, capsys):
    with full_stdout(monkeypatch):
        assert main(["check", DENG_GUAN_QUE_LOU]) == 1
    assert capsys.readouterr().err == ("poemgen: error: cannot write to standard output (No "
                                       "space left on device); free some space or send the "
                                       "output elsewhere\n")


def test_poems_into_a_full_disk_are_one_line(tiny, monkeypatch, capsys):
    with full_stdout(monkeypatch):
        assert main(["--keywords", "明月", "--poet", tiny.poet, "--json"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write to standard output (No space left" in err


@pytest.mark.parametrize("out", ["/dev/full", "-"])
def test_out_into_a_full_disk_is_one_line(tiny, photo, monkeypatch, capsys, out):
    with full_stdout(monkeypatch):
        assert main([str(photo), "--clip", tiny.clip, "--keywords-only", "--out", out]) == 1
    err = capsys.readouterr().err
    where = "- (standard output)" if out == "-" else out
    assert f"poemgen: error: --out {where} cannot be written (No space left on device)" in err
    assert "Traceback" not in err


# --- poemgen check as a filter --------------------------------------------------------------------

# 登鹳雀楼 with 九 for 一: 一 is 平 by its citation tone, so 更上一层楼 ends 三平尾 under 新韵
DENG_GUAN_QUE_LOU = "白日依山尽，黄河入海流。欲穷千里目，更上九层楼。"
REPEATING = "白日依山尽，黄河入海流。欲穷千里日，更上九层楼。"


def test_check_reports_repeats_and_fails_them_only_when_asked(capsys):
    assert main(["check", REPEATING]) == 0
    out = capsys.readouterr().out
    assert "\nok\n" in out and "note: line 3 欲穷千里日 repeats 日" in out
    assert main(["check", REPEATING, "--no-repeats"]) == 1
    assert "not ok: line 3 欲穷千里日 repeats 日" in capsys.readouterr().out


def test_check_names_the_variant_a_line_uses(capsys):
    assert main(["check", "向晚意不适，驱车登古原。夕阳无限好，只是近黄昏。", "--tones", "strict",
                 "--json"]) == 1  # 夕 breaks strict; the first couplet is 拗 and rescued
    result = json.loads(capsys.readouterr().out)
    assert [line["variant"] for line in result["lines"]][:2] == ["出句拗", "对句救"]


def test_check_of_a_poem_that_is_not_utf8_is_one_line(capsys):
    poem = os.fsdecode("白日依山尽，黄河入海流。".encode("gbk"))  # as argv holds GBK bytes
    assert main(["check", poem]) == 1
    assert capsys.readouterr().err == ("poemgen: error: the poem holds bytes that are not UTF-8 "
                                       "(a command-line argument in another encoding?); give it "
                                       "as UTF-8 text\n")


def test_check_reads_a_file_of_poems(tmp_path, capsys):
    poems = tmp_path / "poems.txt"
    poems.write_text(f"{DENG_GUAN_QUE_LOU}\n\n白日依山尽，\n黄河入海天。\n欲穷千里目，\n更上九层楼。\n",
                     encoding="utf-8")
    assert main(["check", str(poems), "--json"]) == 1  # the second does not rhyme
    reports = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["ok"] for r in reports] == [True, False]
    assert [line["text"] for line in reports[1]["lines"]][1] == "黄河入海天"


def stdin_of(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_check_reads_standard_input(monkeypatch, capsys):
    stdin_of(monkeypatch, f"{DENG_GUAN_QUE_LOU}\n\n{DENG_GUAN_QUE_LOU}\n".encode())
    assert main(["check", "-"]) == 0
    assert capsys.readouterr().out.count("\nok\n") == 2


@pytest.mark.parametrize("data", [bytes(random.Random(0).randrange(256) for _ in range(3000)),
                                  "床前明月光，疑是地上霜。".encode("gbk")], ids=["binary", "gbk"])
def test_check_of_standard_input_that_is_not_utf8_is_one_line(monkeypatch, capsys, data):
    stdin_of(monkeypatch, data)
    assert main(["check", "-"]) == 1
    err = capsys.readouterr().err
    assert err == "poemgen: error: cannot read standard input (it is not UTF-8 text); give " \
                  "UTF-8 text of poems separated by blank lines\n"


def test_check_reads_no_more_than_its_limit(monkeypatch, capsys, tmp_path):
    """/dev/zero on standard input was read until memory ran out; a file as large fails too."""
    from poemgen import cli

    monkeypatch.setattr(cli, "MAX_CHECK_BYTES", 2**20)
    with open("/dev/zero", "rb") as zeros:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(zeros))
        assert main(["check", "-"]) == 1
    big = tmp_path / "poems.txt"
    big.write_text(f"{DENG_GUAN_QUE_LOU}\n\n" * 15000, encoding="utf-8")
    assert main(["check", str(big)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"poemgen: error: {where} is larger than 1 MiB; check the poems a part at a time"
        for where in ("standard input", big)]


@pytest.mark.parametrize("content, message", [(b"\xff\xfe\x00bad", "cannot read"),
                                              (b"\n \n", "has no poem")])
def test_check_of_an_unusable_file_is_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "poems.txt"
    path.write_bytes(content)
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("poemgen: error: ") and message in err and err.count("\n") == 1


def test_check_into_a_closed_pipe_exits_quietly(tmp_path):
    poems = tmp_path / "poems.txt"
    poems.write_text("\n\n".join([DENG_GUAN_QUE_LOU] * 2000), encoding="utf-8")
    process = subprocess.Popen([sys.executable, "-m", "poemgen", "check", str(poems)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.read(10)
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) != 0 and err == ""


def test_without_network_or_cache_the_missing_models_are_one_line_at_once(photo, tmp_path):
    """Before any heavy import: every missing model named, no retries (the Hub's endpoint here
    refuses connections), no traceback. (Its time, ~0.3-0.5 s, is a measurement, not a test.)"""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "http://127.0.0.1:9",
           "POEMGEN_HOME": str(tmp_path / "home")}
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("POEMGEN_CLIP", None)
    env.pop("POEMGEN_POET", None)
    done = subprocess.run([sys.executable, "-m", "poemgen", str(photo), "--poet", "someone/poet"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert DEFAULT_CLIP in done.stderr and "someone/poet" in done.stderr
    assert "cannot be reached" in done.stderr
