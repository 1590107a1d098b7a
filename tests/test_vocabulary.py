"""The committed imagery vocabulary (keywords/vocabulary.txt): valid, simplified, balanced, and
exactly what keywords/build.py builds from keywords/curated, rules.tsv and counts.tsv."""

import importlib.util
import json
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from poemgen.keywords import Vocabulary

ROOT = Path(__file__).resolve().parent.parent
KEYWORDS = ROOT / "keywords"
CATEGORIES = ("天象", "时令", "山水", "草木", "禽兽虫鱼", "建筑器物", "人物", "色彩光影", "情思")

# Traditional-only characters (their simplified forms differ) from every category's domain;
# none may appear in the vocabulary. Kept independent of build.py's own list.
TRADITIONAL = ("雲風霧陽陰夢憶離歸鄉愛憐淚聲鐘樓臺橋門廟簾燈燭劍詩書畫筆紙樹葉蘭萬蓮楊蘆葦"
               "鶴鷺鷗鶯鴻鵲鴉鷹鵑鴛鴦鳥雞驢龍魚蟬螢蟲蠶嶺島嶼灣濤澗淺滿漁槳雙獨遠邊關塵煙"
               "紅綠藍黃銀鐵錦絲輕暉曉歲節燦殘盡飛靜涼園楓棲氣漢灑溫瓊禪籬紗絕綿繞羅蒼蔭"
               "蕩輝轉遊釣閑閒隱靈韻響頂飄騎驚驛髮鬢鬥鱗鳴鳳")


def load_build():
    spec = importlib.util.spec_from_file_location("keywords_build", KEYWORDS / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def build():
    return load_build()


@pytest.fixture(scope="module")
def vocabulary():
    return Vocabulary.default()


def test_size_and_uniqueness(vocabulary):
    assert 1000 <= len(vocabulary.words) <= 3000
    assert len(set(vocabulary.words)) == len(vocabulary.words)


def test_only_chinese_characters(vocabulary):
    bad = [w for w in vocabulary.words if not re.fullmatch(r"[\u4e00-\u9fff]{1,8}", w)]
    assert not bad


def test_every_category_present_and_nothing_else(vocabulary):
    sizes = Counter(vocabulary.categories)
    assert set(sizes) == set(CATEGORIES)
    assert all(sizes[c] > 0 for c in CATEGORIES)


def test_simplified_characters_only(vocabulary):
    text = "".join(vocabulary.words)
    found = sorted({c for c in text if c in TRADITIONAL})
    assert not found, f"traditional characters in the vocabulary: {''.join(found)}"


def test_packaged_vocabulary_is_the_committed_file(vocabulary):
    committed = Vocabulary.from_file(KEYWORDS / "vocabulary.txt")
    assert committed == vocabulary


def test_build_reproduces_the_committed_vocabulary(build, tmp_path, capsys):
    output = tmp_path / "vocabulary.txt"
    assert build.main(["--output", str(output)]) == 0
    assert output.read_bytes() == (KEYWORDS / "vocabulary.txt").read_bytes(), (
        "keywords/vocabulary.txt is not the build's output: run `python keywords/build.py`")


def test_curated_lists_are_balanced_and_all_included(build, vocabulary):
    curated = build.read_curated()
    assert 900 <= sum(len(words) for words in curated.values()) <= 1300
    assert all(len(curated[c]) >= 40 for c in CATEGORIES)
    assert 60 <= len(curated["情思"]) <= 100
    category = dict(zip(vocabulary.words, vocabulary.categories))
    for name, words in curated.items():
        assert all(category.get(w) == name for w in words), name


def test_starter_words_kept_in_their_categories(build):
    starter = {"明月": "天象", "重阳": "时令", "青山": "山水", "寒梅": "草木", "归雁": "禽兽虫鱼",
               "孤舟": "建筑器物", "渔翁": "人物", "夕照": "色彩光影", "乡愁": "情思"}
    curated = build.read_curated()
    assert all(word in curated[name] for word, name in starter.items())


def test_counts_file_names_its_splits(build):
    header = [line for line in (KEYWORDS / "counts.tsv").read_text("utf-8").splitlines()
              if line.startswith("#")]
    assert any("ccpc_valid_v1.0.json" in line and "ccpc_test_v1.0.json" in line
               for line in header)
    assert any("--count" in line for line in header)
    counts = build.read_counts()
    assert counts["明月"] > 0 and all(2 <= len(w) <= 4 for w in counts)


def test_rules_head_character_stoplist_and_cap(build):
    rules = build.Rules(min_count=3, per_category=2,
                        keys={"月": "天象", "色": "色彩光影", "山": "山水", "愁": "情思"},
                        stop_words={"江山"}, stop_chars=set("不"))
    assert rules.category("秋月") == "天象"
    assert rules.category("月色") == "色彩光影"  # the last character decides
    assert rules.category("春愁") == "情思"
    assert rules.category("山中") is None  # no key at the end: left out
    curated = {c: [] for c in CATEGORIES}
    curated["山水"] = ["青山"]
    counts = Counter({"青山": 50, "远山": 9, "群山": 9, "孤山": 4, "空山": 2, "江山": 40,
                      "不山": 30, "山山": 30, "明月": 5, "山中": 20})
    chosen = build.select(curated, rules, counts)
    # 远山/群山 tie on count: code point order; 孤山 is past the cap of 2; 空山 below min_count;
    # 江山 stoplisted, 不山 holds a stop character, 山山 is one character repeated.
    assert chosen["山水"] == [("青山", True), ("群山", False), ("远山", False)]
    assert chosen["天象"] == [("明月", False)]
    assert chosen["情思"] == []


def test_curated_word_in_two_categories_is_an_error(build, tmp_path):
    for name in CATEGORIES:
        (tmp_path / f"{name}.txt").write_text("# comment\n\n明月  # a reason\n"
                                              if name in ("天象", "色彩光影") else "",
                                              encoding="utf-8")
    with pytest.raises(SystemExit, match="明月"):
        build.read_curated(tmp_path)


def test_traditional_curated_word_is_an_error(build, tmp_path):
    path = tmp_path / "天象.txt"
    path.write_text("明月\n雲海\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="traditional"):
        build.read_list(path)


def write_fake_ccpc(folder: Path) -> None:
    """Two tiny made-up splits in CCPC's format (invented lines, not corpus text)."""
    def poem(content, keywords):
        return json.dumps({"dynasty": "Test", "author": "无名", "title": "测试",
                           "content": content, "keywords": keywords}, ensure_ascii=False)
    folder.mkdir()
    (folder / "ccpc_train_v1.0.json").write_text(
        poem("青山对明月|春风吹落花", "青山 明月 爱") + "\n"
        + poem("寒梅映白雪|青山对明月", "寒梅 白雪") + "\n\n", encoding="utf-8")
    (folder / "ccpc_valid_v1.0.json").write_text(
        poem("春风吹落花|寒梅映白雪", "春风 落花 moon") + "\n", encoding="utf-8")
    (folder / "notes.json").write_text("not a split\n", encoding="utf-8")


def test_count_corpus_counts_keywords_and_jieba_segments(build, tmp_path):
    pytest.importorskip("jieba", reason="counting CCPC needs jieba (pip install -e .[vocab])")
    write_fake_ccpc(tmp_path / "ccpc")
    counts, splits = build.count_corpus(tmp_path / "ccpc")
    assert splits == ["ccpc_train_v1.0.json", "ccpc_valid_v1.0.json"]
    words = ("青山", "明月", "春风", "落花", "寒梅", "白雪")
    # One keyword each ('爱' is one character and 'moon' is not Chinese: not counted); each
    # line appears twice, and jieba cuts 青山|对|明月, 春风|吹|落花, 寒梅|映|白雪.
    assert counts == Counter({**{(w, "keyword"): 1 for w in words},
                              **{(w, "jieba"): 2 for w in words}})

    out = tmp_path / "counts.tsv"
    assert build.write_counts(counts, splits, out, keep=2) == 6  # keyword rows seen once dropped
    text = out.read_text("utf-8")
    assert "# Splits counted: ccpc_train_v1.0.json, ccpc_valid_v1.0.json" in text
    assert "明月\t2\tjieba" in text.splitlines()
    assert build.read_counts(out) == Counter({w: 2 for w in words})
    assert build.write_counts(counts, splits, out, keep=1) == 12
    assert build.read_counts(out) == Counter({w: 3 for w in words})  # sources summed


def test_count_corpus_without_splits_is_a_clear_error(build, tmp_path):
    pytest.importorskip("jieba", reason="counting CCPC needs jieba (pip install -e .[vocab])")
    with pytest.raises(SystemExit, match="no ccpc_"):
        build.count_corpus(tmp_path)


def test_readme_count_table_matches_the_vocabulary(build, vocabulary):
    rows = {}
    for line in (KEYWORDS / "README.md").read_text("utf-8").splitlines():
        cells = [cell.strip().strip("*") for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] in (*CATEGORIES, "total"):
            rows[cells[0]] = tuple(int(n) for n in cells[2:])
    sizes = Counter(vocabulary.categories)
    curated = build.read_curated()
    expected = {c: (sizes[c], len(curated[c]), sizes[c] - len(curated[c])) for c in CATEGORIES}
    n_curated = sum(len(words) for words in curated.values())
    expected["total"] = (len(vocabulary.words), n_curated, len(vocabulary.words) - n_curated)
    assert rows == expected, "update the table in keywords/README.md"


def test_every_word_is_known_to_the_poets_tokenizer(build, tiny, capsys):
    """The check users run against their poet (e.g. Mengzi-T5's spiece.model), here on the
    tests' tiny poet, whose tokenizer was trained on this vocabulary."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny.poet)
    assert build.unknown_to(tokenizer, ["明月", "龘"]) == ["龘"]
    assert build.main(["--check-tokenizer", tiny.poet]) == 0
    assert "unknown" not in capsys.readouterr().out
