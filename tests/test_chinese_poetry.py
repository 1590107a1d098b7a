"""data/prepare.py --corpus chinese-poetry on small made-up traditional-character files:
conversion to standard simplified characters (variants too), forms, damaged lines,
de-duplication, keywords from poemgen's vocabulary, held-out splits, --exclude, errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from poemgen.variants import standardize

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "chinese-poetry"

spec = importlib.util.spec_from_file_location("prepare_cp", ROOT / "data" / "prepare.py")
prepare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(prepare)
chinese_poetry = prepare.chinese_poetry

# traditional text as the corpus has it; `standardize` gives the simplified lines
WUJUE = ["牀前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"]
QIJUE = ["朝辭白帝彩雲間，千里江陵一日還。", "兩岸猿聲啼不住，輕舟已過萬重山。"]
WULV = ["國破山河在，城春草木深。", "感時花濺淚，恨別鳥驚心。", "烽火連三月，家書抵萬金。",
        "白頭搔更短，渾欲不勝簪。"]
QILV = ["風急天高猨嘯哀，渚清沙白鳥飛迴。", "無邊落木蕭蕭下，不盡長江滾滾來。",
        "萬里悲秋常作客，百年多病獨登臺。", "艱難苦恨繁霜鬢，潦倒新停濁酒杯。"]
VARIANT = ["疎影橫斜水清淺，暗香浮動月黃昏。", "霜禽欲下先偷眼，粉蝶如知合斷魂。"]


def item(paragraphs, title="詩", author="某"):
    return {"author": author, "title": title, "paragraphs": paragraphs, "id": "x"}


def write_corpus(folder: Path, tang: list, song: list | None = None) -> Path:
    folder = folder / "全唐诗"
    folder.mkdir(parents=True)
    (folder / "poet.tang.0.json").write_text(json.dumps(tang, ensure_ascii=False), "utf-8")
    (folder / "poet.song.0.json").write_text(json.dumps(song or [], ensure_ascii=False), "utf-8")
    (folder / "authors.tang.json").write_text("[]", "utf-8")  # not a poem file: ignored
    return folder


def run(*argv) -> int:
    return prepare.main(["--corpus", "chinese-poetry", *map(str, argv)])


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def all_poems(out: Path) -> list[dict]:
    return [r for split in ("train", "valid", "test") for r in read(out / f"{split}.jsonl")]


def test_conversion_forms_damage_and_duplicates(tmp_path, capsys):
    tang = [item(WUJUE, "靜夜思", "李白"), item(QIJUE), item(WULV), item(QILV), item(VARIANT),
            item(["一二三四五，六七八九十。"]),                      # 2 lines: not regulated
            item(["明月照高樓，清風入畫堂。", "孤舟寒江雪，白水繞東城外。"]),  # uneven
            item(["明月照高樓，清風入畫堂。", "孤舟□江雪，白水繞東城。"]),     # damaged
            item(["明月照高樓，清風入畫堂。", "孤舟ab江雪，白水繞東城。"]),     # 7 characters
            {"title": "無詩"}]                                            # no paragraphs
    song = [item(WUJUE, "重出"), item([standardize(p) for p in QIJUE], "简体重出")]
    source = write_corpus(tmp_path, tang, song)
    out = tmp_path / "out"
    assert run("--source", source, "--out", out, "--holdout", 1) == 0
    poems = all_poems(out)
    texts = {"".join(p["lines"]) for p in poems}
    assert len(poems) == 5
    assert "床前明月光疑是地上霜举头望明月低头思故乡" in texts       # t2s
    assert any(p["lines"][0] == "风急天高猿啸哀" for p in poems)    # 猨 → 猿: a variant
    assert any(p["lines"][0] == "疏影横斜水清浅" for p in poems)    # 疎 → 疏
    assert {(len(p["lines"]), len(p["lines"][0])) for p in poems} == {(4, 5), (4, 7), (8, 5),
                                                                       (8, 7)}
    li_bai = next(p for p in poems if p["title"] == "静夜思")
    assert li_bai["author"] == "李白" and li_bai["dynasty"] == "唐"
    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    assert manifest["skipped"] == {"all": {"not regulated": 3, "bad line": 1, "missing field": 1,
                                           "duplicate": 2}}
    assert manifest["licence"].startswith("MIT")
    assert manifest["counts"] == {"train": 3, "valid": 1, "test": 1}
    assert "duplicate 2" in capsys.readouterr().out


def test_keywords_are_vocabulary_words_longest_first_at_most_k(tmp_path):
    from poemgen.keywords import Vocabulary

    words = set(Vocabulary.default().words)
    source = write_corpus(tmp_path, [item(WUJUE), item(QILV), item(["甲乙丙丁戊，己庚辛壬癸。",
                                                                      "子丑寅卯辰，巳午未申酉。"])])
    out = tmp_path / "out"
    assert run("--source", source, "--out", out, "--holdout", 1) == 0
    poems = {p["lines"][0]: p for p in all_poems(out)}
    moon = poems["床前明月光"]["keywords"]
    assert "明月" in moon and "月" not in moon  # the longest word at a position wins
    for poem in poems.values():
        text = "".join(poem["lines"])
        assert len(poem["keywords"]) <= chinese_poetry.KEYWORDS
        assert all(w in words and w in text for w in poem["keywords"])
    assert poems["甲乙丙丁戊"]["keywords"] == []  # none found: an empty list, the poem kept

    found = chinese_poetry.find_keywords("".join(standardize(p) for p in QILV), words, 8)
    assert len(found) == chinese_poetry.KEYWORDS  # more were present: K drawn, always the same
    assert found == chinese_poetry.find_keywords("".join(standardize(p) for p in QILV), words, 8)


def test_holdout_is_seeded_and_disjoint(tmp_path):
    many = [item([f"{a}山明月照，{b}水白云深。", "孤舟寒江雪，落日照高楼。"])
            for a in "东南西北中" for b in "春夏秋冬"]
    source = write_corpus(tmp_path, many)
    for seed, out in ((0, tmp_path / "a"), (0, tmp_path / "b"), (1, tmp_path / "c")):
        assert run("--source", source, "--out", out, "--holdout", 3, "--seed", seed) == 0
    split = {name: [tuple(p["lines"]) for p in read(tmp_path / "a" / f"{name}.jsonl")]
             for name in ("train", "valid", "test")}
    assert [len(split[n]) for n in ("train", "valid", "test")] == [14, 3, 3]
    assert len(set(sum(split.values(), []))) == 20
    assert read(tmp_path / "a" / "test.jsonl") == read(tmp_path / "b" / "test.jsonl")
    assert read(tmp_path / "a" / "test.jsonl") != read(tmp_path / "c" / "test.jsonl")


def test_exclude_keeps_ccpc_poems_out_of_train(tmp_path, capsys):
    source = write_corpus(tmp_path, [item(WUJUE), item(QIJUE), item(WULV), item(QILV)])
    ccpc = tmp_path / "ccpc_test_v1.0.json"  # CCPC's own shape, simplified, and one line changed
    lines = [standardize(p).strip("。") for p in QIJUE]
    content = "|".join(x for line in lines for x in line.split("，"))
    ccpc.write_text(json.dumps({"content": content.replace("千里", "万里"), "keywords": "江"},
                               ensure_ascii=False) + "\n", "utf-8")
    out = tmp_path / "out"
    assert run("--source", source, "--out", out, "--holdout", 1, "--exclude", ccpc) == 0
    train = [p["lines"][0] for p in read(out / "train.jsonl")]
    assert "朝辞白帝彩云间" not in train
    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    assert manifest["skipped"]["all"].get("excluded", 0) + len(train) + 2 == 4
    assert ccpc.name in manifest["options"]["exclude"]


def test_rerun_is_up_to_date(tmp_path, capsys):
    source = write_corpus(tmp_path, [item(WUJUE), item(QIJUE), item(WULV)])
    out = tmp_path / "out"
    assert run("--source", source, "--out", out, "--holdout", 1) == 0
    before = (out / "train.jsonl").read_bytes()
    capsys.readouterr()
    assert run("--source", source, "--out", out, "--holdout", 1) == 0
    assert "up to date" in capsys.readouterr().out
    assert (out / "train.jsonl").read_bytes() == before


@pytest.mark.parametrize("problem", ["missing", "empty", "exclude", "holdout"])
def test_errors_are_one_line(tmp_path, capsys, problem):
    source = write_corpus(tmp_path, [item(WUJUE), item(QIJUE), item(WULV)])
    argv = ["--source", source, "--out", tmp_path / "out", "--holdout", 1]
    if problem == "missing":
        argv[1] = tmp_path / "nowhere"
    elif problem == "empty":
        argv[1] = tmp_path / "out"
        argv[1].mkdir()
    elif problem == "exclude":
        (tmp_path / "x.txt").write_text("not json\n")
        argv += ["--exclude", tmp_path / "x.txt"]
    else:
        argv[-1] = 2
    assert run(*argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("prepare: error: ")


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/chinese-poetry is absent")
def test_real_files_convert(tmp_path):
    folder = tmp_path / "全唐诗"
    folder.mkdir()
    for name in ("poet.tang.0.json", "poet.song.0.json"):
        (folder / name).symlink_to(SHARED / "全唐诗" / name)
    assert run("--source", folder, "--out", tmp_path / "out", "--holdout", 50) == 0
    poems = all_poems(tmp_path / "out")
    assert len(poems) > 500
    assert all(standardize(line) == line for p in poems for line in p["lines"])
    assert sum(bool(p["keywords"]) for p in poems) / len(poems) > 0.9
