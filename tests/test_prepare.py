"""data/prepare.py: CCPC checks, cross-split dedup, the holdout, errors and idempotence, and
the 平水韵 tables of THU-CRRD (copied, downloaded, checked).

Every test builds a tiny fake CCPC or CRRD folder in tmp_path from made-up lines; only the last
two read the real (academic-use) data, from ../shared/data/{ccpc,crrd} by path, and skip when it
is absent. CRRD "downloads" always come from a fake file:// folder, never from the network.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_CCPC = Path(__file__).resolve().parents[2] / "shared" / "data" / "ccpc"
SHARED_CRRD = Path(__file__).resolve().parents[2] / "shared" / "data" / "crrd"

spec = importlib.util.spec_from_file_location("prepare", ROOT / "data" / "prepare.py")
prepare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(prepare)

DIGITS = "零一二三四五六七八九"
TAILS5 = ("明月", "照高楼上客", "清风入画堂", "孤舟寒江雪")
TAILS7 = ("春风明月", "青山横北郭白水", "孤舟独钓寒江雪", "落花流水照高楼")


def poem(i: int, chars: int = 5) -> list[str]:
    """Made-up quatrain number i (0-999): its first line spells i, so every number differs."""
    tails = TAILS5 if chars == 5 else TAILS7
    head = DIGITS[i // 100] + DIGITS[i // 10 % 10] + DIGITS[i % 10]
    return [head + tails[0]] + list(tails[1:])


def record(i: int, chars: int = 5, **fields) -> dict:
    base = {"dynasty": "Tang", "author": f"作者{DIGITS[i % 10]}", "content": "|".join(poem(i, chars)),
            "title": f"无题 其{DIGITS[i % 10]}", "keywords": "明月 高楼"}
    return {**base, **fields}


def write_source(folder: Path, **splits) -> Path:
    """splits: name -> list of records (dicts) or raw lines (str/bytes), written one a line."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, items in splits.items():
        lines = [item if isinstance(item, bytes) else
                 (item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)).encode()
                 for item in items]
        (folder / f"ccpc_{split}_v1.0.json").write_bytes(b"\n".join(lines) + b"\n")
    return folder


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def lines_of(path: Path) -> list[tuple[str, ...]]:
    return [tuple(r["lines"]) for r in read_jsonl(path)]


def run(*argv) -> int:
    return prepare.main([str(a) for a in argv])


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("prepare: error: "), err
    return err


CRRD_NAMES = ("pingshui.txt", "pingsheng.txt", "zesheng.txt")


def write_crrd(folder: Path) -> Path:
    """Made-up 平水韵 tables in THU-CRRD's layout (CRLF line ends like the real files):
    pingshui.txt `CHAR CLASS` lines, pingsheng.txt 30 lines of level characters (one per class),
    zesheng.txt lines of oblique characters (one per group)."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = {"pingshui.txt": ["东 1", "同 1", "冬 2", "江 3"],
              "pingsheng.txt": ["东同", "冬", "江"] + ["天"] * 27,
              "zesheng.txt": ["董动", "肿", "讲", "七质"]}
    for name, lines in tables.items():
        (folder / name).write_bytes("\r\n".join(lines).encode() + b"\r\n")
    return folder


@pytest.fixture(autouse=True)
def crrd_remote(tmp_path, monkeypatch) -> Path:
    """Every run that fetches CRRD (any run without --source) gets it from a fake local folder."""
    remote = write_crrd(tmp_path / "crrd-remote")
    monkeypatch.setattr(prepare, "CRRD_URL", remote.as_uri() + "/{name}")
    monkeypatch.delenv("POEMGEN_CRRD", raising=False)
    return remote


# --- a clean run ---

def test_clean_run_writes_splits_and_manifest(tmp_path, capsys):
    src = write_source(tmp_path / "src", train=[record(i) for i in range(5)],
                       valid=[record(i, 7) for i in range(10, 13)],
                       test=[record(i) for i in (20, 21)])
    out = tmp_path / "out"
    assert run("--source", src, "--out", out) == 0

    train = read_jsonl(out / "train.jsonl")
    assert train[0] == {"lines": poem(0), "keywords": ["明月", "高楼"], "title": "无题 其零",
                        "author": "作者零", "dynasty": "Tang"}
    assert [r["lines"] for r in train] == [poem(i) for i in range(5)]  # source order
    assert lines_of(out / "valid.jsonl") == [tuple(poem(i, 7)) for i in range(10, 13)]
    assert lines_of(out / "test.jsonl") == [tuple(poem(i)) for i in (20, 21)]
    assert "明月" in (out / "train.jsonl").read_text(encoding="utf-8")  # ensure_ascii=False

    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["format_version"] == prepare.FORMAT_VERSION
    assert manifest["options"] == {"source": str(src.resolve()), "train_split": "train",
                                   "holdout": 500, "seed": 0}
    for split in ("train", "valid", "test"):
        path = src / f"ccpc_{split}_v1.0.json"
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert manifest["sources"][split] == {"file": path.name, "sha256": digest}
    assert manifest["counts"] == {"train": 5, "valid": 3, "test": 2}
    assert manifest["skipped"] == {"train": {}, "valid": {}, "test": {}}
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "test.jsonl", "train.jsonl",
                                                     "valid.jsonl"]  # no temporary files left

    report = capsys.readouterr().out
    assert "5 kept" in report and str(out) in report and "skipped: none" in report


def test_default_out_is_under_poemgen_home(tmp_path, isolated_home):
    src = write_source(tmp_path / "src", valid=[record(i) for i in range(3)], test=[record(9)])
    assert run("--source", src, "--train-split", "valid", "--holdout", "1") == 0
    assert (isolated_home / "data" / "ccpc" / "manifest.json").is_file()


# --- bad records ---

BAD = [
    ("{not json", "not JSON"),
    (b"\xff\xfe{}", "not JSON"),
    (record(1, keywords=None), "missing field"),
    ({"content": "|".join(poem(2))}, "missing field"),
    (record(3, content=poem(3)), "missing field"),
    ("[1, 2]", "missing field"),
    (record(4, content="|".join(poem(4)[:3])), "not 4 lines"),
    (record(5, content="|".join(poem(5) + ["照高楼上客"])), "not 4 lines"),
    (record(6, content="明月照高楼|清风入画|孤舟寒江雪|白水绕东城"), "bad line"),
    (record(7, content="明月照高楼|清风入画堂|孤舟□江雪|白水绕东城"), "bad line"),
    (record(8, content="明月照高楼|清风入画堂|孤舟ab雪|白水绕东城"), "bad line"),
    (record(9, content="明月照高楼上客|清风入画堂春色|孤舟寒江雪|白水绕东城"), "uneven lines"),
    (record(10, keywords=""), "no keywords"),
    (record(11, keywords="moon 123 明月2"), "no keywords"),
    (record(0, title="另一首"), "duplicate"),
]


@pytest.mark.parametrize("bad, reason", BAD, ids=[f"{r}-{i}" for i, (_, r) in enumerate(BAD)])
def test_each_bad_record_is_skipped_and_counted(tmp_path, capsys, bad, reason):
    src = write_source(tmp_path / "src", train=[record(0), bad, record(99)],
                       valid=[record(50)], test=[record(60)])
    out = tmp_path / "out"
    assert run("--source", src, "--out", out) == 0
    assert lines_of(out / "train.jsonl") == [tuple(poem(0)), tuple(poem(99))]
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["skipped"]["train"] == {reason: 1}
    assert manifest["counts"]["train"] == 2
    assert f"{reason} 1" in capsys.readouterr().out


def test_all_reasons_counted_together_and_keywords_cleaned(tmp_path):
    spaced = " " + " | ".join(poem(201)) + " "  # spaces around lines are tolerated
    good = [record(200, keywords="明月 moon 高楼"), record(201, content=spaced)]
    src = write_source(tmp_path / "src", train=[record(0)] + [bad for bad, _ in BAD] + good + [""],
                       valid=[record(50)], test=[record(60)])
    out = tmp_path / "out"
    assert run("--source", src, "--out", out) == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    expected = {}
    for _, reason in BAD:
        expected[reason] = expected.get(reason, 0) + 1
    assert manifest["skipped"]["train"] == expected  # the blank line is not a record
    train = read_jsonl(out / "train.jsonl")
    assert [r["lines"] for r in train] == [poem(0), poem(200), poem(201)]
    assert train[1]["keywords"] == ["明月", "高楼"]  # a keyword that is not Chinese is dropped


# --- duplicates across splits ---

def test_test_poems_leave_valid_and_train_and_valid_poems_leave_train(tmp_path):
    a, b = record(1), record(2)
    src = write_source(tmp_path / "src",
                       train=[record(10), {**a, "title": "别题"}, b, record(11)],
                       valid=[a, record(20), b],
                       test=[record(30), a])
    out = tmp_path / "out"
    assert run("--source", src, "--out", out) == 0
    assert lines_of(out / "test.jsonl") == [tuple(poem(30)), tuple(poem(1))]
    assert lines_of(out / "valid.jsonl") == [tuple(poem(20)), tuple(poem(2))]
    assert lines_of(out / "train.jsonl") == [tuple(poem(10)), tuple(poem(11))]
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["skipped"] == {"train": {"in test": 1, "in valid": 1},
                                   "valid": {"in test": 1}, "test": {}}


# --- training on the validation split ---

def test_train_split_valid_holds_out_a_seeded_disjoint_slice(tmp_path, capsys):
    valid = [record(i) for i in range(40)]
    src = write_source(tmp_path / "src", valid=valid + [record(3)], test=[record(5), record(90)])
    out = tmp_path / "out"
    assert run("--source", src, "--train-split", "valid", "--holdout", "10", "--out", out) == 0

    train, held, test = (lines_of(out / f"{s}.jsonl") for s in ("train", "valid", "test"))
    usable = [tuple(poem(i)) for i in range(40) if i != 5]  # poem 5 is in test, poem 3 twice
    assert len(held) == 10 and len(train) == len(usable) - 10
    assert test == [tuple(poem(5)), tuple(poem(90))]
    assert not set(train) & set(held) and not (set(train) | set(held)) & set(test)
    assert sorted(train + held) == sorted(usable)
    assert train == [p for p in usable if p in set(train)]  # both keep source order
    assert held == [p for p in usable if p in set(held)]

    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert set(manifest["sources"]) == {"valid", "test"}
    assert manifest["counts"] == {"train": 29, "valid": 10, "test": 2}
    assert manifest["skipped"] == {"valid": {"duplicate": 1, "in test": 1}, "test": {}}
    assert manifest["options"]["train_split"] == "valid"

    again = tmp_path / "again"  # same seed, same slice; another seed, another slice
    assert run("--source", src, "--train-split", "valid", "--holdout", "10", "--out", again) == 0
    assert lines_of(again / "valid.jsonl") == held
    other = tmp_path / "other"
    assert run("--source", src, "--train-split", "valid", "--holdout", "10", "--seed", "1",
               "--out", other) == 0
    assert lines_of(other / "valid.jsonl") != held


def test_holdout_larger_than_valid_is_an_error(tmp_path, capsys):
    src = write_source(tmp_path / "src", valid=[record(i) for i in range(3)], test=[record(9)])
    assert run("--source", src, "--train-split", "valid", "--out", tmp_path / "out") == 1
    assert "--holdout 500" in error_line(capsys)


# --- errors: one line, exit 1 ---

def test_missing_train_split_says_to_use_train_split_valid(tmp_path, capsys):
    src = write_source(tmp_path / "src", valid=[record(1)], test=[record(2)])
    assert run("--source", src, "--out", tmp_path / "out") == 1
    err = error_line(capsys)
    assert "ccpc_train_v1.0.json" in err and "--train-split valid" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("missing", ["valid", "test"])
def test_missing_valid_or_test_split(tmp_path, capsys, missing):
    splits = {"valid": [record(1)], "test": [record(2)]}
    del splits[missing]
    src = write_source(tmp_path / "src", **splits)
    assert run("--source", src, "--train-split", "valid", "--out", tmp_path / "out") == 1
    assert f"ccpc_{missing}_v1.0.json" in error_line(capsys)


def test_missing_source_folder(tmp_path, capsys):
    assert run("--source", tmp_path / "nowhere", "--out", tmp_path / "out") == 1
    err = error_line(capsys)
    assert "nowhere" in err and "does not exist" in err


def test_unreadable_source_file(tmp_path, capsys):
    src = write_source(tmp_path / "src", test=[record(2)])
    (src / "ccpc_valid_v1.0.json").mkdir()  # exists, cannot be read as a file
    assert run("--source", src, "--train-split", "valid", "--out", tmp_path / "out") == 1
    assert "cannot read" in error_line(capsys)


# --- idempotence and safe writes ---

def test_rerun_is_up_to_date_and_force_rewrites(tmp_path, capsys):
    src = write_source(tmp_path / "src", valid=[record(i) for i in range(6)], test=[record(9)])
    out = tmp_path / "out"
    argv = ["--source", src, "--train-split", "valid", "--holdout", "2", "--out", out]
    assert run(*argv) == 0
    files = [out / n for n in ("train.jsonl", "valid.jsonl", "test.jsonl", "manifest.json")]
    for f in files:
        os.utime(f, ns=(10**18, 10**18))  # an old, exact timestamp any rewrite would change
    capsys.readouterr()

    assert run(*argv) == 0
    assert "up to date" in capsys.readouterr().out
    assert all(f.stat().st_mtime_ns == 10**18 for f in files)

    assert run(*argv, "--force") == 0
    assert "up to date" not in capsys.readouterr().out
    assert all(f.stat().st_mtime_ns != 10**18 for f in files)


@pytest.mark.parametrize("change", ["seed", "source file", "output deleted"])
def test_changed_inputs_rewrite(tmp_path, capsys, change):
    src = write_source(tmp_path / "src", valid=[record(i) for i in range(6)], test=[record(9)])
    out = tmp_path / "out"
    argv = ["--source", src, "--train-split", "valid", "--holdout", "2", "--out", out]
    assert run(*argv) == 0
    if change == "seed":
        argv += ["--seed", "7"]
    elif change == "source file":
        write_source(src, test=[record(9), record(8)])
    else:
        (out / "valid.jsonl").unlink()
    capsys.readouterr()
    assert run(*argv) == 0
    assert "up to date" not in capsys.readouterr().out
    assert (out / "valid.jsonl").is_file()


def test_a_failed_rewrite_leaves_no_manifest(tmp_path, monkeypatch):
    src = write_source(tmp_path / "src", valid=[record(i) for i in range(6)], test=[record(9)])
    out = tmp_path / "out"
    argv = ["--source", src, "--train-split", "valid", "--holdout", "2", "--out", out]
    assert run(*argv) == 0
    calls = []

    def killed(records):  # the run dies after writing train.jsonl
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)

    monkeypatch.setattr(prepare, "jsonl", killed)
    with pytest.raises(KeyboardInterrupt):
        run(*argv, "--seed", "3")
    assert not (out / "manifest.json").exists()  # so the next run redoes everything


# --- download ---

def test_download_into_out_raw(tmp_path, monkeypatch, capsys):
    remote = write_source(tmp_path / "remote", train=[record(i) for i in range(3)],
                          valid=[record(10)], test=[record(20)])
    monkeypatch.setattr(prepare.ccpc, "URL", remote.as_uri() + "/ccpc_{split}_v1.0.json")
    out = tmp_path / "out"
    assert run("--out", out) == 0
    raw = sorted(p.name for p in (out / "raw").iterdir())
    assert raw == ["ccpc_test_v1.0.json", "ccpc_train_v1.0.json", "ccpc_valid_v1.0.json"]
    assert "downloading ccpc_train_v1.0.json" in capsys.readouterr().err
    assert json.loads((out / "manifest.json").read_text())["counts"] == {"train": 3, "valid": 1,
                                                                         "test": 1}
    for f in remote.iterdir():  # files already in OUT/raw are not fetched again
        f.unlink()
    assert run("--out", out) == 0
    assert "up to date" in capsys.readouterr().out


def test_download_failure_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(prepare.ccpc, "URL", (tmp_path / "absent").as_uri() + "/ccpc_{split}_v1.0.json")
    assert run("--out", tmp_path / "out") == 1
    err = error_line(capsys)
    assert err.startswith("prepare: error: could not download") and "--source" in err
    assert not list((tmp_path / "out" / "raw").iterdir())  # no .part left behind


def test_standard_library_only():
    script = str(ROOT / "data" / "prepare.py")
    code = ("import importlib.util, sys; "
            f"s = importlib.util.spec_from_file_location('prepare', {script!r}); "
            "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); "
            "print([n for n in ('torch', 'transformers', 'datasets', 'numpy', 'pypinyin') "
            "if n in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


# --- the 平水韵 tables (THU-CRRD) ---

def test_crrd_source_copies_the_tables_only(tmp_path, isolated_home, capsys):
    src = write_crrd(tmp_path / "src")
    out = tmp_path / "crrd"
    assert run("--only-crrd", "--crrd-source", src, "--crrd-out", out) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(CRRD_NAMES)  # no .part left
    for name in CRRD_NAMES:
        assert (out / name).read_bytes() == (src / name).read_bytes()  # byte for byte, CRLF kept
    report = capsys.readouterr().out
    assert str(out) in report and "copied" in report and "pingsheng.txt" in report
    assert "--crrd" in report  # not the default folder: says how to point poemgen at it
    assert not (isolated_home / "data" / "ccpc").exists()  # --only-crrd: CCPC untouched


def test_crrd_default_out_is_where_rhymes_looks(tmp_path, isolated_home, capsys):
    from poemgen import rhymes

    assert rhymes.CRRD_FILES == CRRD_NAMES == prepare.CRRD_FILES
    assert run("--only-crrd", "--crrd-source", write_crrd(tmp_path / "src")) == 0
    assert (isolated_home / "data" / "crrd" / "pingshui.txt").is_file()
    assert "not the default folder" not in capsys.readouterr().out
    system = rhymes.load_system("pingshui")  # no --crrd, no $POEMGEN_CRRD: the default folder
    assert system.tones("东") == {"平"} and system.tones("董") == {"仄"}


def test_crrd_rerun_skips_present_files_and_recopies_changed_ones(tmp_path, capsys):
    src = write_crrd(tmp_path / "src")
    out = tmp_path / "crrd"
    argv = ["--only-crrd", "--crrd-source", src, "--crrd-out", out]
    assert run(*argv) == 0
    files = [out / name for name in CRRD_NAMES]
    for f in files:
        os.utime(f, ns=(10**18, 10**18))
    capsys.readouterr()

    assert run(*argv) == 0
    assert capsys.readouterr().out.count("already there") == 3
    assert all(f.stat().st_mtime_ns == 10**18 for f in files)

    (src / "zesheng.txt").write_bytes("董动\r\n".encode())  # a changed source is copied
    assert run(*argv) == 0
    assert (out / "zesheng.txt").read_bytes() == "董动\r\n".encode()
    assert [f.stat().st_mtime_ns == 10**18 for f in files] == [True, True, False]

    assert run(*argv, "--force") == 0  # --force copies everything again
    assert all(f.stat().st_mtime_ns != 10**18 for f in files)


def test_crrd_download_then_rerun_skips_present_files(tmp_path, crrd_remote, capsys):
    out = tmp_path / "crrd"
    assert run("--only-crrd", "--crrd", "--crrd-out", out) == 0
    for name in CRRD_NAMES:
        assert (out / name).read_bytes() == (crrd_remote / name).read_bytes()
    assert sorted(p.name for p in out.iterdir()) == sorted(CRRD_NAMES)
    captured = capsys.readouterr()
    assert "downloading pingshui.txt" in captured.err and "downloaded" in captured.out

    for f in crrd_remote.iterdir():  # files already there are not fetched again
        f.unlink()
    assert run("--only-crrd", "--crrd-out", out) == 0  # --only-crrd alone downloads too
    captured = capsys.readouterr()
    assert captured.out.count("already there") == 3 and "downloading" not in captured.err

    assert run("--only-crrd", "--crrd-out", out, "--force") == 1  # --force fetches again: gone
    err = error_line(capsys)
    assert err.startswith("prepare: error: could not download") and "--crrd-source" in err
    assert "CRRD" in err and "ccpc" not in err.lower()
    assert not list(out.glob("*.part"))


def test_crrd_download_failure_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(prepare, "CRRD_URL", (tmp_path / "absent").as_uri() + "/{name}")
    out = tmp_path / "crrd"
    assert run("--only-crrd", "--crrd", "--crrd-out", out) == 1
    err = error_line(capsys)
    assert "pingshui.txt" in err and "--crrd-source DIR" in err
    assert not list(out.iterdir())  # no .part left behind


def test_no_source_prepares_ccpc_and_crrd(tmp_path, monkeypatch, isolated_home, capsys):
    remote = write_source(tmp_path / "remote", train=[record(i) for i in range(3)],
                          valid=[record(10)], test=[record(20)])
    monkeypatch.setattr(prepare.ccpc, "URL", remote.as_uri() + "/ccpc_{split}_v1.0.json")
    assert run() == 0  # the newcomer's command
    assert (isolated_home / "data" / "ccpc" / "manifest.json").is_file()
    tables = isolated_home / "data" / "crrd"
    assert sorted(p.name for p in tables.iterdir()) == sorted(CRRD_NAMES)
    report = capsys.readouterr().out
    assert "output" in report and "平水韵" in report

    assert run() == 0  # both up to date
    report = capsys.readouterr().out
    assert "up to date" in report and report.count("already there") == 3


def test_source_leaves_crrd_alone_unless_asked(tmp_path, isolated_home, capsys):
    src = write_source(tmp_path / "src", valid=[record(i) for i in range(3)], test=[record(9)])
    argv = ["--source", src, "--train-split", "valid", "--holdout", "1"]
    assert run(*argv) == 0
    assert not (isolated_home / "data" / "crrd").exists()
    assert "平水韵" not in capsys.readouterr().out

    out = tmp_path / "crrd"
    assert run(*argv, "--crrd-source", write_crrd(tmp_path / "tables"), "--crrd-out", out) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(CRRD_NAMES)
    assert run(*argv, "--crrd") == 0  # downloads into the default folder
    assert (isolated_home / "data" / "crrd" / "zesheng.txt").is_file()


def test_missing_crrd_source_folder(tmp_path, capsys):
    assert run("--only-crrd", "--crrd-source", tmp_path / "nowhere",
               "--crrd-out", tmp_path / "out") == 1
    err = error_line(capsys)
    assert "nowhere" in err and "does not exist" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("missing", CRRD_NAMES)
def test_missing_crrd_source_file(tmp_path, capsys, missing):
    src = write_crrd(tmp_path / "src")
    (src / missing).unlink()
    assert run("--only-crrd", "--crrd-source", src, "--crrd-out", tmp_path / "out") == 1
    err = error_line(capsys)
    assert str(src) in err and missing in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, problem", [(b"\xff\xfe\x00bad", "not UTF-8"),
                                              (b" \r\n\r\n", "empty")])
def test_unreadable_or_empty_crrd_file(tmp_path, capsys, content, problem):
    src = write_crrd(tmp_path / "src")
    (src / "pingsheng.txt").write_bytes(content)
    assert run("--only-crrd", "--crrd-source", src, "--crrd-out", tmp_path / "out") == 1
    err = error_line(capsys)
    assert "pingsheng.txt" in err and problem in err


@pytest.mark.parametrize("argv", [["--only-crrd", "--source", "x"],
                                  ["--only-crrd", "--out", "x"],
                                  ["--crrd", "--crrd-source", "x"],
                                  ["--source", "x", "--crrd-out", "y"]])
def test_conflicting_crrd_options_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(*argv)
    assert exit_info.value.code == 2
    assert "prepare: error: " in capsys.readouterr().err


# --- the real data (../shared/data: CCPC valid and test only, and CRRD) ---

@pytest.mark.skipif(not SHARED_CRRD.is_dir(),
                    reason=f"real CRRD tables not found at {SHARED_CRRD} "
                           "(academic-use data, never in the repository)")
def test_real_crrd_is_loadable_by_rhymes(tmp_path, capsys):
    from poemgen import rhymes

    out = tmp_path / "crrd"
    assert run("--only-crrd", "--crrd-source", SHARED_CRRD, "--crrd-out", out) == 0
    assert "2191 lines" in capsys.readouterr().out  # CRLF, a stray Ｑ and U+FFFD are fine
    system = rhymes.load_system("pingshui", crrd=out)
    assert system.tones("东") == {"平"} and "上平一东" in system.groups("东")
    assert system.tones("一") == {"仄"}

@pytest.mark.skipif(not SHARED_CCPC.is_dir(),
                    reason=f"real CCPC data not found at {SHARED_CCPC} "
                           "(academic-use data, never in the repository)")
def test_real_ccpc_valid_and_test(tmp_path):
    out = tmp_path / "ccpc"
    assert run("--source", SHARED_CCPC, "--train-split", "valid", "--out", out) == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    counts, skipped = manifest["counts"], manifest["skipped"]
    assert counts["valid"] == 500
    assert counts["train"] + counts["valid"] == 7979 - sum(skipped["valid"].values())
    assert counts["train"] > 7000
    assert 9000 < counts["test"] == 9976 - sum(skipped["test"].values())
    splits = {s: lines_of(out / f"{s}.jsonl") for s in ("train", "valid", "test")}
    assert all(len(set(poems)) == len(poems) for poems in splits.values())
    assert not set(splits["train"]) & set(splits["valid"])
    assert not (set(splits["train"]) | set(splits["valid"])) & set(splits["test"])
    first = read_jsonl(out / "train.jsonl")[0]
    assert len(first["lines"]) == 4 and len(set(map(len, first["lines"]))) == 1
    assert 1 <= len(first["keywords"]) <= 4
