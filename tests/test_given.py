"""Given lines (lock and rewrite, 续写): kept exactly, the written lines fit them, the rules hold."""

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poemgen import prosody, rhymes
from poemgen.cli import main
from poemgen.errors import PoemgenError
from poemgen.options import OptionsError, PoemOptions, from_flags, given_from, parse_given
from poemgen.poet import Poet

CRRD = Path(__file__).resolve().parents[2] / "shared" / "data" / "crrd"
KEYWORDS = [["明月", "孤舟"], ["青山", "白云"]]
FORMS = sorted(prosody.FORMS)


@pytest.fixture(scope="module")
def poet(tiny):
    return Poet.load(tiny.poet, "cpu", crrd=CRRD if CRRD.is_dir() else None)


def first_poems(poet, options):
    return [candidates[0] for candidates in poet.write(KEYWORDS, options)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), form=st.sampled_from(FORMS),
       rhyme=st.sampled_from(["xinyun", "pingshui"] if CRRD.is_dir() else ["xinyun"]),
       tones=st.sampled_from(["strict", "loose", "none"]), data=st.data())
def test_rewritten_poems_keep_the_given_lines_and_pass_the_checker(poet, seed, form, rhyme, tones,
                                                                  data):
    """Lock any lines of a poem that keeps the rules (any pattern, or the first lines for a
    continuation) and write the others with another seed: the given lines stay, and the whole
    poem still passes `poemgen check` with nothing relaxed."""
    shape = prosody.FORMS[form]
    options = PoemOptions(lines=shape.lines, chars=shape.chars, rhyme=rhyme, tones=tones,
                          seed=seed)
    if data.draw(st.booleans(), "continuation"):
        kept = data.draw(st.integers(1, shape.lines - 1), "first lines")
        locks = [i < kept for i in range(shape.lines)]
    else:
        locks = data.draw(st.lists(st.booleans(), min_size=shape.lines, max_size=shape.lines),
                          "locks")
    for verse in poet.write([KEYWORDS[1]], options)[0]:
        assert not verse.notes
        lines = tuple(line if lock else None for line, lock in zip(verse.lines, locks))
        rewrite = PoemOptions(lines=shape.lines, chars=shape.chars, rhyme=rhyme, tones=tones,
                              seed=seed + 1, given=lines)
        new = poet.write([KEYWORDS[0]], rewrite)[0][0]
        assert all(a == b for a, b in zip(new.lines, lines) if b), (new.lines, lines)
        result = prosody.check("，".join(new.lines), rhyme=rhyme, tones=tones, crrd=CRRD,
                               no_repeats=True)
        assert result.ok, (verse.lines, locks, new.lines, result.reasons, new.notes)
        assert not new.notes


def test_given_lines_are_not_written_and_cost_nothing(poet):
    free = first_poems(poet, PoemOptions(seed=3))[0]
    kept = poet.write([KEYWORDS[0]], PoemOptions(seed=3, given=tuple(free.lines[:3])))[0][0]
    assert kept.lines[:3] == free.lines[:3]
    assert 0 < kept.tokens < free.tokens  # only the last line's tokens are the poet's


def test_an_off_template_given_line_is_kept_and_noted(poet):
    system = rhymes.load_system("xinyun")
    ze = [c for c in poet.table.index if system.tones(c) == {rhymes.ZE}]
    line = "".join(ze[:5])  # 仄仄仄仄仄 fits no template
    verse = poet.write([KEYWORDS[0]], PoemOptions(given=(None, line), seed=1))[0][0]
    assert verse.lines[1] == line and len(verse.lines) == 4
    assert any("line 2 (given" in note and "fits no tone template" in note for note in verse.notes)


@pytest.mark.parametrize("options, message", [
    (dict(given=("床前明月光", "疑是地上")), "given line 2 疑是地上: has 4 characters, but a 五绝 line has 5"),
    (dict(given=("床前明月光.",)), "given line 1 '床前明月光.': must be Chinese characters"),
    (dict(lines=4, given=("床前明月光",) * 5), "line 5 is given, but the poem has 4 lines"),
    (dict(given=("床前明月光",) * 9), "line 9 is given, but the poem has 8 lines"),
    (dict(given=(None, 5)), "given line 2 5: must be Chinese"),
    (dict(given=5), "given must be a list"),
])
def test_bad_given_lines_are_one_line_errors(options, message):
    with pytest.raises(OptionsError) as caught:
        PoemOptions(**options)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_given_lines_the_poet_cannot_read_are_named(poet):
    with pytest.raises(PoemgenError, match="given line 1 龘龘龘龘龘: poet .* does not know 龘"):
        poet.write([KEYWORDS[0]], PoemOptions(given=("龘龘龘龘龘",)))


def test_given_lines_as_people_type_them():
    assert parse_given("床前明月光，，，低头思故乡") == ("床前明月光", None, None, "低头思故乡")
    assert parse_given("床前明月光，疑是地上霜。举头望明月，低头思故乡。") == (
        "床前明月光", "疑是地上霜", "举头望明月", "低头思故乡")
    assert parse_given(["", "疑是地上霜", None, None]) == (None, "疑是地上霜")
    assert given_from("床前明月光", ["4=低头思故乡"]) == ("床前明月光", None, None, "低头思故乡")
    assert PoemOptions(given=["牀前明月光"]).given == ("床前明月光",)  # standard forms
    assert PoemOptions(given="床前明月光，").given == ("床前明月光",)
    with pytest.raises(OptionsError, match="--line 2: write it as N=TEXT"):
        given_from("", ["2"])
    with pytest.raises(OptionsError, match="line 1 is already given as 床前明月光"):
        given_from("床前明月光", ["1=举头望明月"])


def test_given_lines_set_the_form_when_none_is_asked_for():
    flags = dict(form=None, lines=None, chars=None, allow_repeats=False, categories="")
    assert from_flags(**flags, given="朝辞白帝彩云间").chars == 7
    assert from_flags(**flags, given="一，二，三，四，五".replace("一", "白日依山尽")
                      .replace("二", "黄河入海流").replace("三", "欲穷千里目")
                      .replace("四", "更上一层楼").replace("五", "白日依山尽")).lines == 8
    assert from_flags(**{**flags, "form": "wujue"}, given="").chars == 5


def test_cli_begin_continues_the_first_line(tiny, capsys):
    code = main(["--keywords", "明月,孤舟", "--poet", tiny.poet, "--begin", "明月照孤舟",
                 "--line", "4=青山白云飞", "--seed", "1", "--json", "--tones", "none",
                 "--rhyme", "none", "--allow-repeats"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = json.loads(out)["lines"]
    assert len(lines) == 4 and lines[0] == "明月照孤舟" and lines[3] == "青山白云飞"


@pytest.mark.parametrize("argv, message", [
    (["--line", "x=明月照孤舟"], "--line x=明月照孤舟: write it as N=TEXT"),
    (["--begin", "明月照孤"], "given line 1 明月照孤: has 4 characters"),
    (["--line", "9=明月照孤舟"], "--line 9=明月照孤舟: a poem has at most 8 lines"),
])
def test_cli_bad_given_lines_are_one_line(tiny, capsys, argv, message):
    code = main(["--keywords", "明月", "--poet", tiny.poet, *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
