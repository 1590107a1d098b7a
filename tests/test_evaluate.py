"""`poemgen eval`: the metrics on hand-made poems with known answers, the three input shapes,
the command line, and a tiny random poet on a made-up gold set (BLEU-2 line by line)."""

import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from poemgen import evaluate
from poemgen.cli import main
from poemgen.evaluate import Sample, keywords_found, read_poems, score
from poemgen.metrics import (bleu, copy_rate, distinct, line_logprob, repeated_line_share,
                             rhyme_logprob, self_bleu)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CRRD = SHARED / "crrd"
CCPC_TEST = SHARED / "ccpc" / "ccpc_test_v1.0.json"

DENG = ["白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"]       # 登鹳雀楼
JING = ["床前明月光", "疑是地上霜", "举头望明月", "低头思故乡"]       # 静夜思: repeats 明 月 头
JIANG = ["千山鸟飞绝", "万径人踪灭", "孤舟蓑笠翁", "独钓寒江雪"]      # 江雪: 仄韵
# Made-up gold poems for the poet (not from any corpus): three 五绝 and one 七绝.
MADE_UP = [
    {"lines": ["青山流水远", "明月照孤舟", "夜静闻钟鼓", "风来入小楼"], "keywords": ["明月", "孤舟"]},
    {"lines": ["春风吹柳岸", "细雨落花香", "燕子归来晚", "斜阳照草堂"], "keywords": ["春风", "燕子"]},
    {"lines": ["江南烟雨多", "野渡系渔蓑", "白鹭飞何处", "芦花满旧河"], "keywords": ["江南", "白鹭"]},
    {"lines": ["寒梅数点映窗前", "独坐书斋夜未眠", "遥想故人千里外", "一轮皓月照山川"],
     "keywords": ["寒梅", "故人", "皓月"]},
]


def run(capsys, *argv):
    code = main(["eval", *map(str, argv)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def row(poems, **kwargs):
    return score("test", [Sample(lines, keywords) for lines, keywords in poems],
                 pingshui=False, **{"cut": None, **kwargs})


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                    encoding="utf-8")
    return path


# --- metrics ---------------------------------------------------------------------------------

def test_a_classic_keeps_format_and_xinyun_rhyme():
    result = row([(DENG, [])])
    assert result["poems"] == 1
    assert result["format"] == 100 and result["rhyme_xinyun"] == 100 and result["repeats"] == 0
    assert result["rhyme_pingshui"] is None and result["bleu_2"] is None
    assert result["keyword_coverage"] is None  # no keywords (and no jieba here)


def test_shares_are_over_all_poems():
    # 江雪 rhymes on oblique tones: its rhyme passes, no standard (level-rhyme) template fits
    result = row([(DENG, []), (JING, []), (JIANG, []), (["白日依山尽", "黄河入海流"], [])])
    assert result["format"] == 75           # the two-line poem is no 绝句
    assert result["repeats"] == 25          # 静夜思 repeats 明, 月, 头
    assert result["rhyme_xinyun"] == 75     # the short poem cannot rhyme


@pytest.mark.parametrize("lines, ok", [
    (DENG, True), (DENG * 2, True), (MADE_UP[3]["lines"], True),
    ([line + "楼" for line in DENG], False), (DENG[:3], False), (DENG[:3] + ["更上一层"], False),
    (["白日依山a"] + DENG[1:], False),
    ([line[:4] for line in DENG], False), (DENG + DENG[:2], False)])
def test_format_is_four_or_eight_equal_lines_of_five_or_seven_hanzi(lines, ok):
    assert evaluate.valid_shape(lines) is ok
    assert row([(lines, [])])["format"] == (100 if ok else 0)


def test_reduplication_is_not_a_repeat():
    doubled = ["萋萋芳草绿", "白日照山头", "江水流千里", "春风入小楼"]
    spaced = ["芳草萋芳绿", "白日照山头", "江水流千里", "春风入小楼"]
    assert row([(doubled, [])])["repeats"] == 0
    assert row([(spaced, [])])["repeats"] == 100


def test_distinct_n_by_hand():
    poems = [["春风春", "雨风"], ["春风"]]
    # characters 春风春雨风春风: 7, of which 3 distinct
    assert distinct(poems, 1) == pytest.approx(3 / 7)
    # pairs within lines 春风 风春 | 雨风 | 春风: 4, of which 3 distinct (春雨 spans two lines)
    assert distinct(poems, 2) == pytest.approx(3 / 4)
    assert distinct([], 1) is None
    result = row([(lines, []) for lines in poems])
    assert result["distinct_1"] == pytest.approx(100 * 3 / 7)
    assert result["distinct_2"] == pytest.approx(75)


def test_bleu_2():
    assert bleu(DENG, DENG) == pytest.approx(100)
    assert bleu(["白日依山尽"], ["黄河入海流"]) == 0
    assert bleu(["白日依山尽"], ["尽山依日白"]) == 0  # every character, no bigram: no smoothing
    # p1 = 4/5, p2 = 3/4
    assert bleu(["白日依山尽"], ["白日依山远"]) == pytest.approx(100 * math.sqrt(4 / 5 * 3 / 4))
    # corpus-level: matches and counts are summed over lines before dividing
    p1, p2 = (5 + 0) / 10, (4 + 0) / 8
    assert bleu(["白日依山尽", "黄河入海流"], ["白日依山尽", "欲穷千里目"]) == \
        pytest.approx(100 * math.sqrt(p1 * p2))
    # brevity penalty: 2 characters against 4
    assert bleu(["白日"], ["白日依山"]) == pytest.approx(100 * math.exp(1 - 4 / 2))
    # repeated n-grams are clipped by their count in the reference
    assert bleu(["月月月"], ["月光月"]) == pytest.approx(100 * math.sqrt(2 / 3 * 0 / 2)) == 0


def test_distinct_4_within_lines():
    # 4-grams within lines: 白日依山 日依山尽 | 白日依山 白日依海: 4, of which 3 distinct
    assert distinct([["白日依山尽"], ["白日依山", "白日依海"]], 4) == pytest.approx(3 / 4)
    assert row([(DENG, []), (JING, [])])["distinct_4"] == 100  # all 16 differ


def test_self_bleu_4_by_hand():
    assert self_bleu([DENG]) is None
    assert self_bleu([DENG, DENG]) == pytest.approx(1)  # each is the other's copy
    # nothing shared: every precision is the smoothed 0.1 over its n-gram count
    a, b = ["白日依山尽"], ["黄河入海流"]
    expected = math.exp(sum(math.log(0.1 / (5 - n + 1)) for n in range(1, 5)) / 4)
    assert self_bleu([a, b]) == pytest.approx(expected)
    # one character shared, unigram 1/5; the rest smoothed
    c = ["白云生处远"]
    partial = math.exp((math.log(1 / 5) + sum(math.log(0.1 / (5 - n + 1)) for n in (2, 3, 4))) / 4)
    assert self_bleu([a, c]) == pytest.approx(partial)
    # a poem's best match counts: with a copy present, both copies score 1
    assert self_bleu([DENG, DENG, JIANG]) > 2 / 3
    assert row([(DENG, []), (DENG, [])])["self_bleu_4"] == pytest.approx(100)


def test_copy_rate_and_repeated_lines():
    training = {"白日依山尽", "床前明月光", "一二三四"}
    assert copy_rate([DENG, JING], training) == pytest.approx(2 / 8)
    assert copy_rate([["一二三四"]], training) is None  # lines under five characters do not count
    assert repeated_line_share([DENG, ["白日依山尽", "白日依山尽"]]) == 0.5


def test_eval_train_file_adds_the_copy_rate(tmp_path, capsys):
    train = write_jsonl(tmp_path / "train.jsonl", [{"lines": DENG, "keywords": []}])
    poems = write_jsonl(tmp_path / "poems.jsonl", [{"lines": DENG}, {"lines": JING}])
    code, out, err = run(capsys, poems, "--train", train, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["copied_lines"] == 50 and result["repeated_line"] == 0
    code, out, err = run(capsys, poems, "--json")
    assert json.loads(out)["copied_lines"] is None


def test_keyword_found_as_a_word_or_a_single_character():
    fake_cut = {"床前明月光": ["床前", "明月", "光"], "低头思故乡": ["低头", "思", "故乡"]}.get
    lines = ["床前明月光", "低头思故乡"]
    assert keywords_found(lines, ["明月", "故乡", "光", "头", "月光", "孤舟"], fake_cut) == 4


def test_keyword_coverage_with_jieba():
    pytest.importorskip("jieba")
    # jieba cuts 床前 明月光 | 疑是 地上 霜 | 举头 望明月 | 低头 思 故乡: 明月 is never a word
    # of its own; 故乡 is; 霜 and 地 are single characters in the text; 孤舟 is absent.
    result = row([(JING, ["明月", "故乡", "霜", "地", "孤舟"])], cut="jieba")
    assert result["keyword_coverage"] == pytest.approx(60)
    # summed over poems: 2 of 3 here, 3 of 5 above
    both = row([(JING, ["明月", "故乡", "霜", "地", "孤舟"]), (DENG, ["黄河", "白日", "孤舟"])],
               cut="jieba")
    assert both["keyword_coverage"] == pytest.approx(100 * 5 / 8)


@pytest.mark.skipif(not CRRD.is_dir(), reason=f"CRRD tables not found at {CRRD}")
def test_pingshui_columns_with_the_tables():
    result = score("test", [Sample(DENG, [])], crrd=CRRD, cut=None)
    assert result["rhyme_pingshui"] == 100 and result["tones_pingshui"] == 100


# --- reading ---------------------------------------------------------------------------------

def test_reads_all_three_shapes(tmp_path):
    cli = write_jsonl(tmp_path / "cli.jsonl", [
        {"image": "a.jpg", "keywords": [{"word": "明月", "score": 0.2}, {"word": "孤舟", "score": 0.1}],
         "lines": JING, "poem": "床前明月光，\n…", "score": {}, "notes": []}])
    prepared = write_jsonl(tmp_path / "prepared.jsonl", [
        {"lines": JING, "keywords": ["明月", "孤舟"], "title": "t", "author": "a", "dynasty": "Tang"}])
    ccpc = write_jsonl(tmp_path / "ccpc.json", [
        {"dynasty": "Tang", "author": "a", "content": "|".join(JING), "title": "t",
         "keywords": "明月 孤舟"}])
    text = write_jsonl(tmp_path / "text.jsonl", [
        {"poem": "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。", "keywords": "明月,孤舟"}])
    for path in (cli, prepared, ccpc, text):
        assert read_poems(path) == [Sample(JING, ["明月", "孤舟"])], path


def test_blank_lines_limit_and_keywordless_records(tmp_path):
    path = tmp_path / "poems.jsonl"
    path.write_text("\n".join(json.dumps({"lines": lines}, ensure_ascii=False)
                              for lines in (DENG, JING, JIANG)) + "\n\n", encoding="utf-8")
    assert [p.lines for p in read_poems(path)] == [DENG, JING, JIANG]
    assert read_poems(path, limit=2) == [Sample(DENG, []), Sample(JING, [])]


# --- the command line ------------------------------------------------------------------------

def test_eval_prints_a_markdown_table(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("POEMGEN_CRRD", raising=False)  # no tables: 平水韵 columns left empty
    a = write_jsonl(tmp_path / "a.jsonl", [{"lines": DENG, "keywords": ["黄河"]},
                                           {"lines": JING, "keywords": ["故乡"]}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"lines": JIANG, "keywords": ["孤舟"]}])
    code, out, err = run(capsys, a, b)
    assert code == 0, err
    header, rule, *rows = out.splitlines()
    assert header == "| " + " | ".join(evaluate.COLUMNS) + " |"
    assert rule.startswith("| --- | ---: |")
    assert len(rows) == 2
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[:4] == [str(a), "2", "100.0", "100.0"]
    assert cells[5] == cells[6] == cells[-1] == "—"   # no 平水韵 tables; no BLEU for files
    assert cells[7] == "50.0"                          # 静夜思 repeats
    assert "平水韵" in err and err.count("\n") == 1       # one note


def test_eval_json_one_object_per_row(tmp_path, capsys):
    a = write_jsonl(tmp_path / "a.jsonl", [{"lines": DENG, "keywords": ["黄河"]}])
    code, out, err = run(capsys, a, a, "--json")
    assert code == 0, err
    objects = [json.loads(line) for line in out.splitlines()]
    assert len(objects) == 2 and list(objects[0]) == list(evaluate.KEYS)
    assert objects[0]["source"] == str(a) and objects[0]["poems"] == 1
    assert objects[0]["format"] == 100 and objects[0]["bleu_2"] is None


def test_python_dash_m_entry_point(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"lines": DENG}])
    done = subprocess.run([sys.executable, "-m", "poemgen", "eval", str(a), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["format"] == 100


@pytest.mark.parametrize("content, expected", [
    (None, "no such file"),
    ('{"lines": ["白日依山尽"]}\n\n{"lines": [\n', "line 3: not JSON"),
    ('{"title": "无诗"}\n', 'line 1: no poem'),
    ('[1, 2]\n', "line 1: not a JSON object"),
    ('{"lines": ["白日依山尽"], "keywords": [3]}\n', "line 1: a keyword"),
    ("\n\n", "no poems"),
])
def test_bad_files_are_one_line_errors(tmp_path, capsys, content, expected):
    path = tmp_path / "poems.jsonl"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    code, out, err = run(capsys, path)
    assert code == 1 and out == ""
    assert err.startswith("poemgen: error: ") and err.count("\n") == 1
    assert str(path) in err and expected in err


def test_not_utf8_is_one_line(tmp_path, capsys):
    path = tmp_path / "poems.jsonl"
    path.write_bytes(json.dumps({"lines": DENG}).encode() + b"\n\xff\xfe\n")
    code, _, err = run(capsys, path)
    assert code == 1 and "line 2: not UTF-8" in err and err.count("\n") == 1


def test_a_lone_surrogate_in_a_poem_is_one_line_naming_it(tmp_path, capsys):
    path = tmp_path / "poems.jsonl"
    path.write_text('{"lines": ["\\udcff白日依山尽"]}\n')
    code, out, err = run(capsys, path)
    assert code == 1 and out == "" and err == (
        f"poemgen: error: {path} line 1: the poem holds a lone surrogate escape (\\udc..), "
        "not text\n")


def test_json_nested_too_deeply_is_one_line(tmp_path, capsys):
    path = tmp_path / "poems.jsonl"
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    code, out, err = run(capsys, path)
    assert code == 1 and out == ""
    assert err == f"poemgen: error: {path} line 1: JSON nested too deeply; give one poem a line\n"


def test_reads_are_bounded(tmp_path, capsys, monkeypatch):
    """/dev/zero (one endless line) was read until memory ran out, and so would an endless
    stream of lines; both limits are checked here made small."""
    from poemgen import corpus

    monkeypatch.setattr(corpus, "MAX_LINE_BYTES", 2**20)
    code, _, err = run(capsys, "/dev/zero")
    assert code == 1 and err == ("poemgen: error: /dev/zero line 1: longer than 1 MiB; give one "
                                 "poem a line\n")
    monkeypatch.setattr(corpus, "MAX_FILE_BYTES", 2**20)
    path = write_jsonl(tmp_path / "many.jsonl", [{"lines": DENG}] * 20_000)
    code, _, err = run(capsys, path)
    assert code == 1 and err.count("\n") == 1 and f"{path}: larger than 1 MiB" in err
    code, out, err = run(capsys, path, "--limit", 10, "--json")  # the first poems still count
    assert code == 0 and json.loads(out)["poems"] == 10


def test_an_explicit_crrd_that_is_missing_is_an_error(tmp_path, capsys):
    a = write_jsonl(tmp_path / "a.jsonl", [{"lines": DENG}])
    code, _, err = run(capsys, a, "--crrd", tmp_path / "nowhere")
    assert code == 1 and "平水韵 tables not found" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv", [[], ["x.jsonl", "--poet", "p"], ["x.jsonl", "--data", "d"]])
def test_usage_errors_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", *argv])
    assert exit_info.value.code == 2
    assert "usage: poemgen eval" in capsys.readouterr().err


# --- a poet on gold prompts ------------------------------------------------------------------

@pytest.fixture
def gold(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    write_jsonl(folder / "test.jsonl", MADE_UP)
    return folder


def test_poet_row_with_bleu(tiny, gold, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("POEMGEN_CRRD", raising=False)
    crrd = ["--crrd", CRRD] if CRRD.is_dir() else []
    saved = tmp_path / "written.jsonl"
    code, out, err = run(capsys, "--poet", tiny.poet, "--data", gold, "--json", "--save", saved,
                         *crrd)
    assert code == 0, err
    result = json.loads(out)
    assert result["source"] == tiny.poet and result["poems"] == 4
    assert isinstance(result["bleu_2"], float) and 0 <= result["bleu_2"] <= 100
    # the poet writes by construction in the gold form, with no repeated character
    assert result["format"] == 100 and result["repeats"] == 0
    written = [json.loads(line) for line in saved.read_text(encoding="utf-8").splitlines()]
    assert [len(w["lines"]) for w in written] == [4, 4, 4, 4]
    assert [len(w["lines"][0]) for w in written] == [5, 5, 5, 7]
    assert [w["reference"] for w in written] == [p["lines"] for p in MADE_UP]
    # the saved poems read back as poems: the same scores, but no BLEU
    code, again, err = run(capsys, saved, "--json", *crrd)
    assert code == 0, err
    again = json.loads(again)
    poet_only = ("bleu_2",) + evaluate.LOGPROB_KEYS
    assert all(again[k] is None for k in poet_only)  # only a poet gives these
    assert all(result[k] < 0 for k in evaluate.LOGPROB_KEYS)  # log-probabilities, all given
    assert {k: v for k, v in again.items() if k not in ("source",) + poet_only} == \
        {k: v for k, v in result.items() if k not in ("source",) + poet_only}


def test_poet_row_table_without_crrd(tiny, gold, capsys, monkeypatch):
    monkeypatch.delenv("POEMGEN_CRRD", raising=False)
    code, out, err = run(capsys, "--poet", tiny.poet, "--data", gold, "--limit", 2)
    assert code == 0, err
    cells = [c.strip() for c in out.splitlines()[2].strip("|").split("|")]
    bleu_2 = cells[evaluate.COLUMNS.index("BLEU-2")]
    assert cells[1] == "2" and cells[5] == "—" and 0 <= float(bleu_2) <= 100


def test_rhyme_and_line_logprob_by_hand():
    # per poem, line, token: the rhyme characters are the last of lines 2, 4 (6, 8)
    scores = [[[-1.0, -2.0], [-3.0, -4.0], [-1.0], [-6.0]],
              [[-9.0], [-2.0, -5.0], [-9.0], [-3.0], [-9.0], [-1.0], [-9.0], [-7.0]]]
    assert rhyme_logprob(scores) == pytest.approx((-4 - 6 - 5 - 3 - 1 - 7) / 6)
    assert line_logprob(scores) == pytest.approx(
        (-1 - 2 - 3 - 4 - 1 - 6 - 9 - 2 - 5 - 9 - 3 - 9 - 1 - 9 - 7) / 15)
    assert rhyme_logprob([[[-1.0], []]]) is None  # an empty line has no rhyme character
    assert rhyme_logprob([[[-1.0]]]) is None and line_logprob([]) is None


def test_poet_rhyme_logprob_is_score_lines_of_the_even_lines(tiny, gold, tmp_path, capsys):
    from poemgen.poet import Poet

    saved = tmp_path / "written.jsonl"
    code, out, err = run(capsys, "--poet", tiny.poet, "--data", gold, "--json", "--save", saved,
                         "--batch-size", 3)
    assert code == 0, err
    result = json.loads(out)
    poet = Poet.load(tiny.poet)
    written = [json.loads(line)["lines"] for line in saved.read_text(encoding="utf-8").splitlines()]
    keywords = [p["keywords"] for p in MADE_UP]
    for poems, key in ((written, "rhyme_logprob"), ([p["lines"] for p in MADE_UP],
                                                    "rhyme_logprob_human")):
        scores = poet.score_lines(keywords, poems)
        # by hand: the last token of lines 2 and 4 of each of the four quatrains
        rhymes = [scores[p][i][-1] for p in range(4) for i in (1, 3)]
        assert result[key] == pytest.approx(sum(rhymes) / 8, abs=1e-4)
        if key == "rhyme_logprob_human":
            every = [v for poem in scores for line in poem for v in line]
            assert result["logprob_human"] == pytest.approx(sum(every) / len(every), abs=1e-4)


def test_poet_columns_in_the_table(tiny, gold, capsys):
    code, out, err = run(capsys, "--poet", tiny.poet, "--data", gold, "--limit", 2)
    assert code == 0, err
    header, _, line = out.splitlines()
    names = [c.strip() for c in header.strip("|").split("|")]
    cells = dict(zip(names, (c.strip() for c in line.strip("|").split("|"))))
    for name in ("log-prob/token", "log-prob/token (human)", "rhyme log-prob",
                 "rhyme log-prob (human)"):
        assert name in evaluate.COLUMNS
        assert float(cells[name]) < 0 and len(cells[name].split(".")[1]) == 2, name


def test_eval_options_are_the_library_defaults_unless_given(monkeypatch):
    from poemgen import options as options_module
    from poemgen.options import PoemOptions

    parse = evaluate.build_parser().parse_args
    assert evaluate.options_from(parse(["--poet", "p"])) == PoemOptions()
    given = parse(["--poet", "p", "--temperature", "0.7", "--top-p", "0.8", "--line-candidates",
                   "4", "--rhyme", "none", "--tones", "none", "--allow-repeats"])
    assert evaluate.options_from(given) == PoemOptions(
        temperature=0.7, top_p=0.8, line_candidates=4, rhyme="none", tones="none",
        no_repeat=False)
    # new defaults of the library are eval's defaults, with nothing copied
    @dataclass(frozen=True)
    class Changed(PoemOptions):  # the library's options with other defaults
        temperature: "float" = 0.5
        line_candidates: "int" = 8

    monkeypatch.setattr(options_module, "PoemOptions", Changed)
    options = evaluate.options_from(parse(["--poet", "p", "--line-candidates", "2"]))
    assert (options.temperature, options.line_candidates) == (0.5, 2)


def test_eval_with_line_candidates(tiny, gold, capsys):
    # BLEU-2's greedy lines write one candidate a line
    code, out, err = run(capsys, "--poet", tiny.poet, "--data", gold, "--limit", 2, "--json",
                         "--line-candidates", 3, "--temperature", 0.7)
    assert code == 0, err
    assert json.loads(out)["poems"] == 2
    code, out, err = run(capsys, "--poet", tiny.poet, "--data", gold, "--limit", 2, "--json",
                         "--line-candidates", 3, "--temperature", 0)  # greedy: one a line
    assert code == 0, err


@pytest.mark.parametrize("flag", [["--temperature", "0.7"], ["--line-candidates", "2"],
                                  ["--rhyme", "none"], ["--allow-repeats"]])
def test_sampling_and_rules_apply_with_a_poet_only(tmp_path, capsys, flag):
    a = write_jsonl(tmp_path / "a.jsonl", [{"lines": DENG}])
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(a), *flag])
    assert exit_info.value.code == 2
    assert f"{flag[0]} applies with --poet only" in capsys.readouterr().err


def test_of_several_candidates_eval_keeps_poemgens_choice():
    from poemgen.poet import Verse

    # rerank: mean log-prob per token + share of the keywords' characters used
    dull = Verse(lines=["白日依山尽"], logprob=-10.0, tokens=5)       # -2 + 0
    apt = Verse(lines=["黄河入海流"], logprob=-12.5, tokens=5)        # -2.5 + 1
    assert evaluate.best_verse([dull, apt], ["黄河"]) is apt
    assert evaluate.best_verse([dull, apt], []) is dull
    assert evaluate.best_verse([dull, dull], []) is dull


def test_next_lines_follow_the_gold_context(tiny):
    from poemgen.options import PoemOptions
    from poemgen.poet import Poet

    poet = Poet.load(tiny.poet)
    gold = [Sample(p["lines"], p["keywords"]) for p in MADE_UP]
    lines = evaluate.write_next_lines(poet, gold, PoemOptions(), batch_size=2)
    assert [[len(line) for line in poem] for poem in lines] == \
        [[len(line) for line in poem.lines] for poem in gold]
    assert lines == evaluate.write_next_lines(poet, gold, PoemOptions())  # greedy: deterministic


def test_gold_from_a_ccpc_folder_and_bad_poets(tiny, tmp_path, capsys):
    folder = tmp_path / "ccpc"
    folder.mkdir()
    write_jsonl(folder / "ccpc_test_v1.0.json",
                [{"content": "|".join(p["lines"]), "keywords": " ".join(p["keywords"])}
                 for p in MADE_UP] + [{"content": "白日|黄河", "keywords": "黄河"}])
    assert evaluate.gold_file(folder) == folder / "ccpc_test_v1.0.json"
    code, out, err = run(capsys, "--poet", tiny.poet, "--data", folder, "--limit", 1, "--json")
    assert code == 0, err
    assert json.loads(out)["poems"] == 1
    code, out, err = run(capsys, "--poet", tmp_path / "no-poet", "--data", folder)
    assert code == 1 and "no-poet" in err and err.count("\n") == 1
    code, out, err = run(capsys, "--poet", tiny.poet, "--data", tmp_path / "empty")
    assert code == 1 and "--data" in err and err.count("\n") == 1


@pytest.mark.skipif(not CCPC_TEST.is_file(), reason=f"CCPC test split not found at {CCPC_TEST}")
def test_real_poems_as_the_human_reference(capsys):
    code, out, err = run(capsys, CCPC_TEST, "--limit", 200, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["poems"] == 200 and result["format"] > 95 and result["rhyme_xinyun"] > 70
