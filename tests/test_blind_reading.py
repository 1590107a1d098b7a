"""bench/blind_reading.py: the blind reading's files, and the scoring of a reader's ratings."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import build_tiny_poet
from poemgen.keywords import Vocabulary

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))  # the script imports bench/common.py
spec = importlib.util.spec_from_file_location("blind_reading", ROOT / "bench" / "blind_reading.py")
blind = importlib.util.module_from_spec(spec)
spec.loader.exec_module(blind)


def rating(pid: str, f: int, c: int, m: int, p: int, human: float) -> dict:
    return {"id": pid, "fluency": f, "coherence": c, "meaning": m, "poeticness": p, "human": human}


# Two keyword lists, three sources; b is listed before a, so it is the first machine source
KEY = {"sources": {"human": {"options": None}, "b": {"options": {}, "cpu_s_per_poem": 0.25},
                   "a": {"options": {"top_p": 0.8}, "cpu_s_per_poem": 0.5}},
       "poems": {pid: {"source": source, "index": index, "keywords": ["明月"], "lines": ["一"]}
                 for pid, source, index in [("h0", "human", 0), ("h1", "human", 1),
                                            ("a0", "a", 0), ("a1", "a", 1),
                                            ("b0", "b", 0), ("b1", "b", 1)]}}
RATINGS = [rating("h0", 5, 5, 5, 5, 0.9), rating("h1", 4, 4, 4, 4, 0.4),
           rating("a0", 3, 3, 3, 3, 0.6), rating("a1", 2, 3, 3, 4, 0.5),
           rating("b0", 2, 2, 2, 2, 0.2), rating("b1", 3, 3, 3, 3, 0.1)]


def write_files(tmp_path: Path, ratings: list) -> tuple[str, str]:
    key, rated = tmp_path / "key.json", tmp_path / "ratings.jsonl"
    key.write_text(json.dumps(KEY, ensure_ascii=False), encoding="utf-8")
    rated.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                             for r in ratings), encoding="utf-8")
    return str(key), str(rated)


def test_score_prints_a_row_per_source_and_paired_wins(tmp_path, capsys):
    key, ratings = write_files(tmp_path, RATINGS)
    assert blind.main(["score", key, ratings]) == 0
    assert capsys.readouterr().out == (
        "| source | poems | fluency | coherence | meaning | poeticness | mean | judged human "
        "| CPU s/poem |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
        "| human | 2 | 4.50 | 4.50 | 4.50 | 4.50 | 4.50 | 1 / 2 | — |\n"
        "| a | 2 | 2.50 | 3.00 | 3.00 | 3.50 | 3.00 | 2 / 2 | 0.500 |\n"
        "| b | 2 | 2.50 | 2.50 | 2.50 | 2.50 | 2.50 | 0 / 2 | 0.250 |\n"
        "\n"
        "| A | B | keyword lists | A better | B better | ties | mean difference (A − B) "
        "| sign test p |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- |\n"
        "| a | b | 2 | 1 | 0 | 1 | +0.50 | 1.000 |\n")


def test_score_pairs_and_json(tmp_path, capsys):
    key, ratings = write_files(tmp_path, RATINGS)
    assert blind.main(["score", key, ratings, "--pair", "a", "human", "--pair", "b", "a",
                       "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [row["source"] for row in result["sources"]] == ["human", "a", "b"]
    assert result["sources"][1] == {"source": "a", "poems": 2, "fluency": 2.5, "coherence": 3,
                                    "meaning": 3, "poeticness": 3.5, "mean": 3.0,
                                    "judged_human": 2, "cpu_s_per_poem": 0.5}
    assert result["pairs"] == [
        {"a": "a", "b": "human", "lists": 2, "a_better": 0, "b_better": 2, "ties": 0,
         "mean_difference": -1.5, "sign_test_p": 0.5},
        {"a": "b", "b": "a", "lists": 2, "a_better": 0, "b_better": 1, "ties": 1,
         "mean_difference": -0.5, "sign_test_p": 1.0}]


def test_a_lone_machine_source_is_compared_with_the_human_poems():
    assert blind.default_pairs({"sources": {"human": {}, "t07": {}}}) == [("t07", "human")]
    assert blind.default_pairs({"sources": {"human": {}, "x": {}, "y": {}, "z": {}}}) == [
        ("y", "x"), ("z", "x")]


@pytest.mark.parametrize("ratings, named", [
    (RATINGS[:-1], "not rated (1 ids): b1"),
    (RATINGS[:-1] + [rating("b1", 6, 3, 3, 3, 0.1)], "id b1: fluency 6 is not a whole number 1-5"),
    (RATINGS[:-1] + [rating("b1", 3, 3, 3, 3, 1.5)], "id b1: human 1.5 is not a probability"),
    (RATINGS + [rating("zz", 3, 3, 3, 3, 0.1)], "unknown id zz"),
    (RATINGS + [RATINGS[0]], "id h0 rated twice"),
    (RATINGS + ["this is not json"], "line 7 is not a JSON object with an id"),
])
def test_score_refuses_ratings_that_do_not_match_the_key(tmp_path, capsys, ratings, named):
    key, rated = write_files(tmp_path, ratings)
    assert blind.main(["score", key, rated]) == 1
    err = capsys.readouterr().err
    assert err.startswith("blind_reading: error: ") and err.count("\n") == 1
    assert named in err


def test_score_as_a_command_exits_1_with_one_line(tmp_path):
    key, rated = write_files(tmp_path, RATINGS[1:] + [rating("h0", 5, 5, 0, 5, 0.9)])
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "blind_reading.py"), "score",
                           key, rated], capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"blind_reading: error: {rated}: id h0: meaning 0 is not a whole number 1-5"]


def test_sources_parse_their_options():
    assert blind.parse_source("human") == ("human", None)
    assert blind.parse_source("default=") == ("default", {})
    assert blind.parse_source("t07=temperature=0.7,candidates=16,no_repeat=false,rhyme=none") == (
        "t07", {"temperature": 0.7, "candidates": 16, "no_repeat": False, "rhyme": "none"})


# --- make, with the tests' tiny random poet ---------------------------------------------------

@pytest.fixture(scope="module")
def poet(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("blind") / "poet"
    build_tiny_poet(folder, Vocabulary.default())
    return str(folder)


def write_data(folder: Path) -> Path:
    """A test.jsonl whose first poem has no keywords (make skips it), then a 五绝, a 七绝, a 五律."""
    words = Vocabulary.default().words
    poems = [{"lines": ["白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"], "keywords": []},
             {"lines": ["白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"],
              "keywords": words[:2]},
             {"lines": ["朝辞白帝彩云间", "千里江陵一日还", "两岸猿声啼不住", "轻舟已过万重山"],
              "keywords": words[2:5]},
             {"lines": ["春眠不觉晓", "处处闻啼鸟", "夜来风雨声", "花落知多少"] * 2,
              "keywords": words[5:6]}]
    (folder / "test.jsonl").write_text(
        "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in poems), encoding="utf-8")
    return folder


def make(data: Path, out: Path, poet: str) -> Path:
    assert blind.main(["make", "--data", str(data), "--limit", "3", "--seed", "3",
                       "--source", "human", "--source", "zqx=temperature=0.7,top_p=0.8",
                       "--source", "wvy=", "--out", str(out), "--poet", poet,
                       "--batch", "2"]) == 0
    return out


@pytest.fixture(scope="module")
def made(tmp_path_factory, poet) -> tuple[Path, Path]:
    """A blind reading made twice over, with the same seed."""
    data = write_data(tmp_path_factory.mktemp("data"))
    return data, make(data, tmp_path_factory.mktemp("one"), poet), make(
        data, tmp_path_factory.mktemp("two"), poet)


def test_make_writes_a_blind_reading_and_its_key(made):
    data, out, _ = made
    key = json.loads((out / "key.json").read_text(encoding="utf-8"))
    text = (out / "blind.md").read_text(encoding="utf-8")
    tests = [json.loads(line) for line in (data / "test.jsonl").read_text().splitlines()][1:]
    assert len(key["poems"]) == 9 and list(key["sources"]) == ["human", "zqx", "wvy"]
    assert key["sources"]["zqx"]["options"] == {"temperature": 0.7, "top_p": 0.8}
    assert key["sources"]["zqx"]["cpu_s_per_poem"] > 0
    assert "cpu_s_per_poem" not in key["sources"]["human"]
    for poem in key["poems"].values():
        test = tests[poem["index"]]
        assert poem["keywords"] == test["keywords"] and poem["row"] == poem["index"] + 1
        assert [len(line) for line in poem["lines"]] == [len(line) for line in test["lines"]]
        assert (poem["lines"] == test["lines"]) == (poem["source"] == "human")
    # the reader's part holds ids and poems only: no source, no keywords, no options
    protocol, poems = text.split("## The poems\n\n")
    assert blind.PROTOCOL in protocol and "zqx" not in text and "wvy" not in text
    assert "temperature" not in text and "0.7" not in text
    blocks = poems.split("\n\n### ")
    assert [b.split("\n")[0].removeprefix("### ") for b in blocks] == list(key["poems"])
    for block in blocks:
        pid, body = block.removeprefix("### ").strip().split("\n\n")
        assert re.fullmatch("[0-9a-f]{4}", pid)
        assert body == blind.poem_block(pid, key["poems"][pid]["lines"]).split("\n\n")[1].strip()
        assert re.fullmatch(r"(\w+，\w+。(  \n)?)+", body)
    for poem in key["poems"].values():  # (a single keyword may be in the poem's own lines)
        assert "、".join(poem["keywords"]) not in text or len(poem["keywords"]) == 1
        assert json.dumps(poem["keywords"], ensure_ascii=False) not in text


def test_make_is_deterministic_for_a_seed(made):
    _, one, two = made
    assert (one / "blind.md").read_text() == (two / "blind.md").read_text()
    poems = [json.loads((out / "key.json").read_text())["poems"] for out in (one, two)]
    assert poems[0] == poems[1]


def test_a_source_may_name_its_own_poet(made, poet, tmp_path, capsys):
    """`poet=FOLDER` in a source's options writes that source with another poet: the same
    weights in another folder write the same poems; a folder with no poet is that error."""
    data, one, _ = made
    other = tmp_path / "other"
    shutil.copytree(poet, other)
    assert blind.main(["make", "--data", str(data), "--limit", "3", "--seed", "3",
                       "--source", f"wvy=poet={other}", "--out", str(tmp_path / "b"),
                       "--poet", str(tmp_path / "nowhere"), "--batch", "2"]) == 0
    key = json.loads((tmp_path / "b" / "key.json").read_text(encoding="utf-8"))
    assert key["sources"]["wvy"]["options"] == {"poet": str(other)}
    first = json.loads((one / "key.json").read_text(encoding="utf-8"))
    assert sorted((p["index"], p["lines"]) for p in key["poems"].values()) == sorted(
        (p["index"], p["lines"]) for p in first["poems"].values() if p["source"] == "wvy")
    assert blind.main(["make", "--data", str(data), "--limit", "3", "--source",
                       f"x=poet={tmp_path / 'nowhere'}", "--out", str(tmp_path / "c"),
                       "--poet", poet]) == 1
    assert "nowhere" in capsys.readouterr().err


def test_ids_look_random_and_follow_the_seed():
    ids = blind.blind_ids(300, 3)
    assert len(set(ids)) == 300 and all(re.fullmatch("[0-9a-f]{4}", i) for i in ids)
    assert ids == blind.blind_ids(300, 3) and ids != blind.blind_ids(300, 4)
    assert len(set(blind.blind_ids(5000, 0))) == 5000


@pytest.mark.parametrize("source, named", [
    ("t07=bogus=1", "unknown option 'bogus'"),
    ("t07=seed=1", "seed is set by make"),
    ("t07=temperature", "'temperature' is not key=value"),
    ("human=", "give human or NAME=OPTIONS")])
def test_make_refuses_a_bad_source_before_loading_the_poet(tmp_path, capsys, source, named):
    assert blind.main(["make", "--data", str(write_data(tmp_path)), "--source", source,
                       "--out", str(tmp_path / "out"), "--poet", "no/such-poet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"blind_reading: error: --source {source}: ") and named in err
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_protocol_prints_the_instructions(capsys):
    assert blind.main(["protocol"]) == 0
    out = capsys.readouterr().out
    assert out == blind.PROTOCOL
    for word in ("通顺", "连贯", "意义", "诗意", '"human"', "1:", "3:", "5:"):
        assert word in out
