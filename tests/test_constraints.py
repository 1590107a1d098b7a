"""Form by construction: whatever the (random) weights, the poems keep the requested rules."""

import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poemgen import prosody, rhymes
from poemgen.cli import main
from poemgen.constraints import VerseProcessor
from poemgen.masks import VersePlan
from poemgen.verse_state import initial_state, update_state
from poemgen.errors import PoemgenError
from poemgen.options import PoemOptions
from poemgen.poet import Poet

CRRD = Path(__file__).resolve().parents[2] / "shared" / "data" / "crrd"
needs_crrd = pytest.mark.skipif(not CRRD.is_dir(), reason=f"平水韵 tables not found at {CRRD}")
KEYWORDS = [["明月", "孤舟"], ["青山", "白云"], ["落日"]]
FORMS = sorted(prosody.FORMS)


@pytest.fixture(scope="module")
def poet(tiny):
    return Poet.load(tiny.poet, "cpu", crrd=CRRD if CRRD.is_dir() else None)


def acrostic_pool(poet) -> str:
    """Characters the tiny poet has as tokens of their own."""
    table = poet.table
    return "".join(table.alphabet[int(i)] for i in table.first[table.single].unique()
                   if int(i) < len(table.alphabet))


def written(poet, options):
    return [candidates[0] for candidates in poet.write(KEYWORDS, options)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), form=st.sampled_from(FORMS),
       rhyme=st.sampled_from(["xinyun", "pingshui"] if CRRD.is_dir() else ["xinyun"]),
       tones=st.sampled_from(["strict", "loose", "none"]),
       temperature=st.sampled_from([0.0, 1.0, 3.0]), acrostic=st.booleans(), data=st.data())
def test_every_poem_passes_the_checker(poet, seed, form, rhyme, tones, temperature, acrostic,
                                       data):
    shape = prosody.FORMS[form]
    heads = ""
    if acrostic and tones != "strict":  # a strict template fixes the first tones: see below
        heads = "".join(data.draw(st.lists(st.sampled_from(acrostic_pool(poet)), min_size=shape.lines,
                                           max_size=shape.lines, unique=True)))
    options = PoemOptions(lines=shape.lines, chars=shape.chars, rhyme=rhyme, tones=tones,
                          temperature=temperature, top_p=1.0, seed=seed, acrostic=heads)
    for verse in written(poet, options):
        result = prosody.check("，".join(verse.lines), rhyme=rhyme, tones=tones, crrd=CRRD,
                               no_repeats=True)
        assert result.ok, (verse.lines, result.reasons, verse.notes)
        assert not verse.notes
        if heads:
            assert "".join(line[0] for line in verse.lines) == heads


@pytest.mark.parametrize("form", FORMS)
def test_a_forced_rhyme_group_is_kept(poet, form):
    shape = prosody.FORMS[form]
    options = PoemOptions(lines=shape.lines, chars=shape.chars, rhyme_group="十唐", seed=1)
    for verse in written(poet, options):
        result = prosody.check("，".join(verse.lines))
        assert result.ok and "十唐" in result.rhyme_group, (verse.lines, result.reasons)


def test_an_impossible_acrostic_degrades_as_documented(poet):
    """An acrostic whose first tones no strict template allows: the acrostic and the lengths
    are kept, the tone rule is relaxed where it must be, and the poem says so."""
    system, form = rhymes.load_system("xinyun"), prosody.FORMS["wujue"]

    def impossible(heads):
        return not any(all(t.lines[i][0] in system.tones(c) for i, c in enumerate(heads))
                       for t in prosody.templates(form))

    pool = [c for c in acrostic_pool(poet) if len(system.tones(c)) == 1]
    heads = next(a + b + c + d for a in pool[:12] for b in pool[:12] for c in pool[:12]
                 for d in pool[:12] if len({a, b, c, d}) == 4 and impossible(a + b + c + d))
    for verse in written(poet, PoemOptions(acrostic=heads, tones="strict", seed=3)):
        assert "".join(line[0] for line in verse.lines) == heads
        assert all(len(line) == 5 for line in verse.lines)
        assert verse.notes and all("tones rule was relaxed" in note for note in verse.notes)


def test_no_repeated_characters_unless_allowed(poet):
    for verse in written(poet, PoemOptions(lines=8, chars=7, seed=5, temperature=2.0)):
        text = "".join(verse.lines)
        assert len(set(text)) == len(text)


def test_reduplication_allows_a_doubled_character_once(poet):
    table = poet.table
    options = PoemOptions(reduplication=True, rhyme="none", tones="none")
    plan = VersePlan(options.form, options.rules, table, None)
    char = next(c for c in "山江月花" if c in table.index)
    token = next(i for i in range(len(table.chars)) if table.chars[i] == 1
                 and not table.leading[i] and table.alphabet[int(table.first[i])] == char)
    processor = VerseProcessor(plan, 0, [initial_state(plan)], poet.tokenizer.eos_token_id)
    once = torch.isfinite(processor(torch.tensor([[0, token]]), torch.zeros(1, len(table.chars))))
    twice = torch.isfinite(processor(torch.tensor([[0, token, token]]),
                                     torch.zeros(1, len(table.chars))))
    assert once[0, token] and not twice[0, token]


def test_the_masks_allow_the_accepted_variants_and_ask_for_the_rescue(poet):
    """Strict tones: a 出句 with a 仄 fourth character (出句拗) makes the 对句's third character
    平 (对句救); a 平平平仄仄 line may be written 平平仄平仄 (特拗), and then must be."""
    options = PoemOptions(tones="strict", rhyme="none", no_repeat=False)
    plan = poet.plan(options)
    table, system = poet.table, rhymes.load_system("xinyun")
    level, oblique = ([token for token in range(len(table.chars)) if table.chars[token] == 1
                       and not table.leading[token]
                       and system.tones(table.alphabet[int(table.first[token])]) == {tone}]
                      for tone in (rhymes.PING, rhymes.ZE))
    spell = {rhymes.PING: level[0], rhymes.ZE: oblique[0]}

    def allowed(line: int, state, tones: str) -> torch.Tensor:
        """Which tokens may come after a line begun with `tones`."""
        processor = VerseProcessor(plan, line, [state], poet.tokenizer.eos_token_id)
        ids = torch.tensor([[0] + [spell[t] for t in tones]])
        return torch.isfinite(processor(ids, torch.zeros(1, len(table.chars))))[0]

    def after(*lines: str):
        state = initial_state(plan)
        for i, tones in enumerate(lines):
            update_state(plan, state, i, table.text([spell[t] for t in tones]))
        return state

    regular, ao = after("仄仄平平仄"), after("仄仄平仄仄")
    assert allowed(1, regular, "平平")[oblique].any()  # 平平仄仄平
    assert not allowed(1, ao, "平平")[oblique].any() and allowed(1, ao, "平平")[level].all()
    couplet = after("仄仄平平仄", "平平仄仄平")
    assert allowed(2, couplet, "平平")[oblique].any()  # 特拗 may start …
    assert not allowed(2, couplet, "平平仄")[oblique].any()  # … and then goes on as 特拗


@pytest.mark.parametrize("options, message", [
    (PoemOptions(rhyme_group="不存在"), "is not a xinyun group"),
    (PoemOptions(acrostic="龘龘龘龘"), "not in poet"),
])
def test_impossible_requests_are_clear_errors(poet, options, message):
    with pytest.raises(PoemgenError, match=message):
        poet.write(KEYWORDS, options)


def test_missing_pingshui_tables_name_the_three_ways(tiny, tmp_path, monkeypatch):
    monkeypatch.delenv("POEMGEN_CRRD", raising=False)
    poet = Poet.load(tiny.poet, "cpu", crrd=tmp_path / "nowhere")
    with pytest.raises(PoemgenError, match=r"--crrd DIR.*POEMGEN_CRRD.*prepare.py --only-crrd"):
        poet.write(KEYWORDS, PoemOptions(rhyme="pingshui"))


def test_candidates_are_ranked_and_all_reported(tiny, photo, capsys):
    code = main([str(photo), "--clip", tiny.clip, "--poet", tiny.poet, "--candidates", "4",
                 "--seed", "0", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    result = json.loads(out)
    totals = [c["score"]["total"] for c in result["candidates"]]
    assert len(totals) == 4 and totals == sorted(totals, reverse=True)
    assert result["lines"] == result["candidates"][0]["lines"]
    assert result["score"] == result["candidates"][0]["score"]
    assert all(c["score"]["clip"] != 0 for c in result["candidates"])  # poem vs. image
    parts = result["score"]
    assert parts["total"] == pytest.approx(parts["logprob"] + parts["coverage"]
                                           + 10 * parts["clip"], abs=1e-3)


def test_keywords_alone_need_no_image_and_no_clip(tiny, capsys):
    code = main(["--keywords", "明月,孤舟", "--clip", "/no/such/clip", "--poet", tiny.poet,
                 "--json", "--acrostic", "春江花月"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["image"] is None
    assert [k["word"] for k in result["keywords"]] == ["明月", "孤舟"]
    assert "".join(line[0] for line in result["lines"]) == "春江花月"


@needs_crrd
def test_done_when_qijue_pingshui_strict_with_candidates_passes_check(tiny, photo, capsys):
    code = main([str(photo), "--clip", tiny.clip, "--poet", tiny.poet, "--form", "qijue",
                 "--rhyme", "pingshui", "--tones", "strict", "--candidates", "8",
                 "--crrd", str(CRRD), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    poem = json.loads(out)["poem"]
    assert main(["check", poem, "--rhyme", "pingshui", "--tones", "strict", "--crrd",
                 str(CRRD)]) == 0


def test_check_command_exit_codes(capsys):
    assert main(["check", "白日依山尽，黄河入海流。欲穷千里目，更上九层楼。"]) == 0  # 一层: 三平尾 in 新韵
    capsys.readouterr()
    assert main(["check", "白日依山尽，黄河入海流。欲穷千里目，更上一层天。", "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is False and result["rhyme_ok"] is False and "tones_ok" in result
    assert len(result["lines"]) == 4
    with pytest.raises(SystemExit) as usage:
        main(["check"])
    assert usage.value.code == 2


def test_form_and_lines_must_agree(capsys):
    assert main(["--keywords", "明月", "--form", "qijue", "--chars", "5"]) == 2  # an option error, as argparse exits
    assert "form qijue is 4 lines of 7 characters" in capsys.readouterr().err
