"""poemgen.prosody: tones, rhyme groups, tone templates and the checker.

The 平水韵 tables (THU-CRRD) and the CCPC test split are third-party data read from ../shared when
present; the tests that need them are skipped, saying why, when they are absent. Everything
else runs on 中华新韵 (pypinyin) and on small hand-made tables in CRRD's layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from poemgen import prosody, rhymes
from poemgen.errors import PoemgenError
from poemgen.prompt import Form
from poemgen.prosody import FORMS, check, free_positions, split_lines, templates
from poemgen.rhymes import PING, PINGSHUI_LEVEL_GROUPS, ZE, ProsodyError, load_system

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # only the property test needs it
    st = None

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CRRD = DATA / "crrd"
CCPC_TEST = DATA / "ccpc" / "ccpc_test_v1.0.json"

needs_crrd = pytest.mark.skipif(
    not all((CRRD / name).is_file() for name in rhymes.CRRD_FILES),
    reason=f"THU-CRRD 平水韵 tables not found at {CRRD} (shared read-only data)")
needs_ccpc = pytest.mark.skipif(not CCPC_TEST.is_file(),
                                reason=f"CCPC test split not found at {CCPC_TEST} (shared data)")


def pingshui():
    return load_system("pingshui", CRRD)


@needs_crrd
def test_pingshui_two_readings_are_real_ones():
    """CRRD's 两读 that an independent 平水韵 table does not confirm are slips: 花 and 清 are 平
    only; 看 and 思 are read both ways in classical verse."""
    system = pingshui()
    assert system.tones("花") == {PING} and system.groups("花") == {"下平六麻"}
    assert system.tones("清") == {PING}
    assert system.tones("看") == {PING, ZE} and system.tones("思") == {PING, ZE}


# --- 中华新韵 ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("char, group", [
    ("花", "一麻"), ("多", "二波"), ("歌", "二波"), ("月", "三皆"), ("来", "四开"), ("回", "五微"),
    ("高", "六豪"), ("楼", "七尤"), ("山", "八寒"), ("人", "九文"), ("光", "十唐"), ("风", "十一庚"),
    ("东", "十一庚"), ("西", "十二齐"), ("鱼", "十二齐"), ("儿", "十二齐"), ("诗", "十三支"),
    ("子", "十三支"), ("无", "十四姑")])
def test_xinyun_groups(char, group):
    assert group in load_system("xinyun").groups(char)


def test_xinyun_reads_characters_as_they_are_said_today():
    """Only the readings in common use (readings.tsv): a rhyme or a tone that holds through a
    dictionary's rare reading does not hold for a reader."""
    xinyun = load_system("xinyun")
    assert xinyun.tones("不") == {ZE} and xinyun.groups("不") == {"十四姑"}  # bù, not fǒu
    assert xinyun.tones("年") == {PING}  # nián, not nìng
    assert xinyun.groups("休") == {"七尤"} and xinyun.groups("台") == {"四开"}  # not xù, yí, sì
    assert xinyun.tones("看") == {ZE}  # kàn; kān (看守) is too rare
    assert xinyun.tones("一") == {PING}  # yī: citation tones, as 中华新韵 counts them
    assert xinyun.groups("还") == {"四开", "八寒"}  # hái, and huán of 归还, 还乡
    assert xinyun.tones("为") == {PING, ZE} and xinyun.tones("重") == {PING, ZE}  # both in use
    assert not xinyun.groups("衣") & xinyun.groups("飞")  # yī and fēi do not rhyme


@pytest.mark.slow
def test_the_readings_table_is_what_its_builder_makes(tmp_path):
    """readings.tsv is generated, never edited: rebuilt from the installed pypinyin and jieba,
    it comes out the same."""
    import subprocess
    import sys
    from importlib import resources

    out = tmp_path / "readings.tsv"
    subprocess.run([sys.executable, str(ROOT / "data" / "readings.py"), "--out", str(out)],
                   check=True, capture_output=True)
    shipped = resources.files("poemgen").joinpath("readings.tsv").read_text(encoding="utf-8")
    assert out.read_text(encoding="utf-8") == shipped


def test_xinyun_tones_and_polyphony():
    xinyun = load_system("xinyun")
    assert xinyun.name == "xinyun" and len(xinyun.group_names) == 14
    assert xinyun.tones("花") == {PING} and xinyun.groups("花") == {"一麻"}
    assert xinyun.tones("人") == {PING} and xinyun.tones("月") == {ZE} and xinyun.tones("雪") == {ZE}
    assert xinyun.groups("诗") == {"十三支"} and xinyun.groups("西") == {"十二齐"}  # apical -i apart
    assert xinyun.tones("长") == {PING, ZE}  # cháng and zhǎng, both in common use
    assert xinyun.tones("行") == {PING}  # xíng and háng are in use; héng xìng hàng are not
    assert xinyun.groups("行") == {"十唐", "十一庚"}
    assert xinyun.tones("的") == {ZE}  # de (neutral) is the reading in use: counts as 仄
    assert xinyun.tones("咗") == {ZE}  # a character read only in the neutral tone counts as 仄
    assert xinyun.tones("a") == frozenset() and xinyun.groups("。") == frozenset()
    assert load_system("xinyun") is xinyun


# --- 平水韵 -----------------------------------------------------------------------------------------

@needs_crrd
def test_pingshui_groups_and_tones():
    system = pingshui()
    assert system.name == "pingshui"
    assert system.group_names[:30] == PINGSHUI_LEVEL_GROUPS
    assert system.group_names[30:] == tuple(f"仄{n}" for n in range(1, 76))
    assert system.groups("东") == {"上平一东"} and system.tones("东") == {PING}
    assert system.groups("流") == {"下平十一尤"} and system.groups("楼") == {"下平十一尤"}
    assert system.groups("天") == {"下平一先"} and system.groups("船") == {"下平一先"}
    assert system.tones("月") == {ZE} and system.tones("白") == {ZE}  # 入声 is 仄
    assert system.groups("晓") == {"仄17"} and system.groups("鸟") == {"仄17"}  # 上声十七筱
    for char in "看思听":  # 平 and 仄 readings: count as either, in both kinds of group
        assert system.tones(char) == {PING, ZE}
        assert any(g.startswith(ZE) for g in system.groups(char))
        assert any(not g.startswith(ZE) for g in system.groups(char))
    assert system.tones("A") == frozenset() and system.groups("A") == frozenset()
    assert load_system("pingshui", str(CRRD)) is system  # cached per folder


@needs_crrd
def test_pingshui_class_names_match_the_data():
    """The names given to pingshui.txt's classes 1-30 are the traditional ones, in order."""
    system = pingshui()
    first = {}
    for line in (CRRD / "pingshui.txt").read_text(encoding="utf-8").splitlines():
        char, number = line.split()
        first.setdefault(int(number), char)
    for number, name in enumerate(PINGSHUI_LEVEL_GROUPS, 1):
        assert name in system.groups(name[-1]), name  # 东 is in 上平一东, 冬 in 上平二冬 …
        if number != 28:  # class 28 (覃) starts with 潭
            assert first[number] == name[-1]
    lines = (CRRD / "pingsheng.txt").read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):  # pingsheng.txt line k is class k
        assert PINGSHUI_LEVEL_GROUPS[number - 1] in system.groups(line[0])


@needs_crrd
def test_pingshui_data_slips_are_mended():
    system = pingshui()
    assert system.tones("一") == {ZE} and system.groups("一") == system.groups("七")  # 入声四质
    assert system.tones("大") == {ZE} and system.tones("本") == {ZE}  # misfiled under 一东, 二冬


def write_tables(folder: Path, pingshui_txt: str = "东 1\n风 1\n人 11\n",
                 level_lines: int = 30) -> Path:
    """Small hand-made tables in CRRD's layout (not the real data)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pingshui.txt").write_text(pingshui_txt, encoding="utf-8")
    names = [name[-1] for name in PINGSHUI_LEVEL_GROUPS][:level_lines]
    names[0] += "东风中"
    (folder / "pingsheng.txt").write_text("\r\n".join(names) + "\r\n", encoding="utf-8")
    (folder / "zesheng.txt").write_text("董动\n晓鸟少\n", encoding="utf-8")
    return folder


def test_pingshui_from_a_folder_argument(tmp_path):
    system = load_system("pingshui", write_tables(tmp_path / "crrd"))
    assert system.groups("风") == {"上平一东"} and system.tones("风") == {PING}
    assert system.groups("人") == {"上平十一真"} and system.groups("真") == {"上平十一真"}
    assert system.groups("动") == {"仄1"} and system.tones("少") == {ZE}
    assert system.group_names[30:] == ("仄1", "仄2")


def test_pingshui_folder_from_environment_then_home(tmp_path, monkeypatch, isolated_home):
    monkeypatch.setenv(rhymes.CRRD_ENV, str(write_tables(tmp_path / "env")))
    assert load_system("pingshui").groups("风") == {"上平一东"}
    monkeypatch.delenv(rhymes.CRRD_ENV)
    with pytest.raises(ProsodyError, match="looked in"):
        load_system("pingshui")
    write_tables(isolated_home / "data" / "crrd", pingshui_txt="风 2\n")
    assert load_system("pingshui").groups("风") == {"上平一东", "上平二冬"}


def test_pingshui_missing_tables_say_how_to_get_them(tmp_path):
    with pytest.raises(ProsodyError) as error:
        load_system("pingshui", tmp_path / "nowhere")
    message = str(error.value)
    assert isinstance(error.value, PoemgenError) and "\n" not in message
    for hint in ("--crrd DIR", "$POEMGEN_CRRD", "python data/prepare.py --only-crrd", "nowhere"):
        assert hint in message


@pytest.mark.parametrize("pingshui_txt, level_lines, why", [
    ("东 1\n风\n", 30, "pingshui.txt line 2"),
    ("东 31\n", 30, "pingshui.txt line 1"),
    ("东 一\n", 30, "pingshui.txt line 1"),
    ("东 1\n", 29, "29 lines"),
])
def test_pingshui_malformed_tables(tmp_path, pingshui_txt, level_lines, why):
    folder = write_tables(tmp_path / "crrd", pingshui_txt, level_lines)
    with pytest.raises(ProsodyError, match="malformed") as error:
        load_system("pingshui", folder)
    assert why in str(error.value) and "--crrd DIR" in str(error.value)


def test_pingshui_unreadable_tables(tmp_path):
    folder = write_tables(tmp_path / "crrd")
    (folder / "zesheng.txt").write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(ProsodyError, match="cannot be read"):
        load_system("pingshui", folder)


def test_unknown_systems_and_modes():
    with pytest.raises(ProsodyError, match="xinyun, pingshui"):
        load_system("guangyun")
    with pytest.raises(ProsodyError, match="xinyun, pingshui"):
        check("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", rhyme="cilin")
    with pytest.raises(ProsodyError, match="loose, strict, none"):
        check("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", tones="lenient")


# --- templates -----------------------------------------------------------------------------------

def test_forms():
    assert FORMS == {"wujue": Form(4, 5), "qijue": Form(4, 7), "wulv": Form(8, 5),
                     "qilv": Form(8, 7)}
    assert FORMS["qilv"].name == "七言律诗"


@pytest.mark.parametrize("form", list(FORMS.values()), ids=list(FORMS))
def test_templates_shape_and_rules(form):
    found = templates(form)
    assert len(found) == 4 and len({t.name for t in found}) == 4
    names = {t.name for t in found}
    assert names == {f"{a}起首句{b}" for a in "平仄" for b in ("入韵", "不入韵")}
    for template in found:
        assert len(template.lines) == form.lines
        assert all(len(line) == form.chars and set(line) <= {PING, ZE} for line in template.lines)
        assert template.name[0] == template.lines[0][1]  # 平起/仄起: the second character
        assert template.rhymes == ((0,) if "不" not in template.name else ()) + tuple(
            range(1, form.lines, 2))
        for i, line in enumerate(template.lines):
            assert line[-1] == (PING if i in template.rhymes else ZE)  # 平 rhymes
            for k in range(3, form.chars, 2):  # 二四六分明: the even positions alternate
                assert line[k] != line[k - 2]
            if i % 2 == 1:  # 对: within a couplet the second characters differ
                assert line[1] != template.lines[i - 1][1]
            elif i > 0:  # 粘: a couplet's first line keeps the tone of the line before
                assert line[1] == template.lines[i - 1][1]


def test_template_examples():
    by_name = {t.name: t.lines for t in templates(FORMS["wujue"])}
    assert by_name["仄起首句不入韵"] == ("仄仄平平仄", "平平仄仄平", "平平平仄仄", "仄仄仄平平")
    assert by_name["平起首句入韵"] == ("平平仄仄平", "仄仄仄平平", "仄仄平平仄", "平平仄仄平")
    by_name = {t.name: t.lines for t in templates(FORMS["qijue"])}
    assert by_name["平起首句入韵"] == ("平平仄仄仄平平", "仄仄平平仄仄平", "仄仄平平平仄仄",
                                     "平平仄仄仄平平")
    lv = {t.name: t.lines for t in templates(FORMS["wulv"])}
    assert lv["仄起首句不入韵"] == ("仄仄平平仄", "平平仄仄平", "平平平仄仄", "仄仄仄平平") * 2
    assert lv["仄起首句入韵"][4:] == lv["仄起首句不入韵"][4:]  # only the first line changes
    # two characters in front of each five-character line; the name flips with the 2nd char
    sevens = {t.name: tuple(line[2:] for line in t.lines) for t in templates(FORMS["qilv"])}
    assert sevens["平起首句不入韵"] == lv["仄起首句不入韵"]
    assert sevens["仄起首句入韵"] == lv["平起首句入韵"]


def test_free_positions():
    assert free_positions(5, "loose") == {0, 2} and free_positions(7, "loose") == {0, 2, 4}
    assert free_positions(5, "strict") == frozenset() == free_positions(7, "strict")
    assert free_positions(7, "none") == set(range(7))


# --- the checker ---------------------------------------------------------------------------------

DENG_GUAN_QUE_LOU = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"

# Public-domain poems typed by hand, with what the 平水韵 tables and loose tones say about them:
# (form, rhyme group under 平水韵 or None when it fails, tones pass under "loose", repeated chars).
FAMOUS = {
    "王之涣 登鹳雀楼": (DENG_GUAN_QUE_LOU, "五言绝句", "下平十一尤", True, ""),
    # 仄 rhymes 晓 鸟 少 (上声十七筱): it rhymes, but no 平-rhymed template fits its tones
    "孟浩然 春晓": ("春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。", "五言绝句", "仄17", False, ""),
    "王维 鹿柴": ("空山不见人，但闻人语响。返景入深林，复照青苔上。", "五言绝句", "仄22", False, "人"),
    "柳宗元 江雪": ("千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。", "五言绝句", "仄68", False, ""),
    "李白 静夜思": ("床前明月光，疑是地上霜。举头望明月，低头思故乡。", "五言绝句", "下平七阳", False,
                 "明月头"),
    "杜甫 绝句": ("两个黄鹂鸣翠柳，一行白鹭上青天。窗含西岭千秋雪，门泊东吴万里船。", "七言绝句",
                "下平一先", True, ""),
    "王昌龄 出塞": ("秦时明月汉时关，万里长征人未还。但使龙城飞将在，不教胡马度阴山。", "七言绝句",
                  "上平十五删", True, "时"),
    "李白 早发白帝城": ("朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。", "七言绝句",
                     "上平十五删", True, ""),
    # 衰 rhymes with 回 and 来 as cuī (十灰), but CRRD lists it under 四支 only
    "贺知章 回乡偶书": ("少小离家老大回，乡音无改鬓毛衰。儿童相见不相识，笑问客从何处来。", "七言绝句",
                     None, True, "相"),
    "王维 山居秋暝": ("空山新雨后，天气晚来秋。明月松间照，清泉石上流。竹喧归浣女，莲动下渔舟。"
                   "随意春芳歇，王孙自可留。", "五言律诗", "下平十一尤", True, ""),
    "杜甫 春望": ("国破山河在，城春草木深。感时花溅泪，恨别鸟惊心。烽火连三月，家书抵万金。"
                "白头搔更短，浑欲不胜簪。", "五言律诗", "下平十二侵", True, ""),
}


@needs_crrd
@pytest.mark.parametrize("title", list(FAMOUS))
def test_famous_poems_under_pingshui(title):
    text, form, group, tones_pass, repeats = FAMOUS[title]
    result = check(text, rhyme="pingshui", tones="loose", crrd=CRRD)
    assert result.form == form and result.rhyme_system == "pingshui"
    assert result.rhyme_ok == (group is not None)
    if group:
        assert group in result.rhyme_group
    assert result.tones_ok == tones_pass
    assert "".join(c for line in result.lines for c in line.repeats) == repeats
    assert result.ok == (group is not None and tones_pass)  # repeats are a note …
    assert check(text, rhyme="pingshui", tones="loose", crrd=CRRD, no_repeats=True).ok == (
        group is not None and tones_pass and not repeats)  # … and a failure when asked
    assert not check(text, rhyme="pingshui", tones="strict", crrd=CRRD).tones_ok  # none is perfect
    assert check(text, rhyme="pingshui", tones="none", crrd=CRRD).tones_ok


def test_famous_poems_under_xinyun():
    result = check(DENG_GUAN_QUE_LOU)
    assert result.rhyme_ok and result.rhyme_system == "xinyun" and result.rhyme_group == ["七尤"]
    assert result.template == "仄起首句不入韵"
    assert [line.rhyme_char for line in result.lines] == [None, "流", None, "楼"]
    # 一 is yī (平) by its citation tone, as 中华新韵 counts it: 更上一层楼 ends 三平尾 today
    assert not result.tones_ok and result.reasons == [
        "line 4 更上一层楼: 一 (char 3) should be 仄 (三平尾) (仄起首句不入韵)"]
    # 簪 is zān today: 春望 rhymes in 平水韵 but not in 中华新韵
    assert not check(FAMOUS["杜甫 春望"][0]).rhyme_ok
    assert check(FAMOUS["贺知章 回乡偶书"][0]).rhyme_group == ["四开"]  # 衰 shuāi, 来 lái


def test_line_reports():
    result = check(DENG_GUAN_QUE_LOU)
    line = result.lines[1]
    assert (line.text, line.chars, line.tones, line.template) == ("黄河入海流", 5, "平平仄仄平",
                                                                  "平平仄仄平")
    assert line.rhyme_char == "流" and line.rhyme_groups == ["七尤"] and line.tone_errors == []
    assert set(result.lines[3].tones) <= {PING, ZE, "*"}
    strict = check(DENG_GUAN_QUE_LOU, tones="strict")
    assert strict.lines[2].tone_errors == [0]  # 欲 where 平平平仄仄 wants 平
    assert any("欲 (char 1) should be 平" in reason for reason in strict.reasons)


def test_first_line_rhymes_only_when_it_does():
    zao_fa = FAMOUS["李白 早发白帝城"][0]
    for tones in ("loose", "none"):
        result = check(zao_fa, tones=tones)
        assert result.template.endswith("首句入韵") and result.lines[0].rhyme_char == "间"
    assert check(DENG_GUAN_QUE_LOU, tones="none").lines[0].rhyme_char is None


def test_broken_poems_fail_with_reasons():
    short = check("白日依山尽，黄河入海流。欲穷千里目。")
    assert not short.ok and short.form is None and "3 lines" in short.reasons[0]
    assert [line.chars for line in short.lines] == [5, 5, 5]
    uneven = check("白日依山尽，黄河入海流水。欲穷千里目，更上九层楼。")
    assert not uneven.ok and any("5, 6, 5, 5" in reason for reason in uneven.reasons)
    latin = check("白日依山A，黄河入海流。欲穷千里目，更上九层楼。")
    assert not latin.ok and any("not Chinese: A" in reason for reason in latin.reasons)
    assert not check("").ok and check("").reasons == ["form: no text"]

    flat = check("白日依山尽，黄河入海流。欲穷千里目，更上九层台。")  # 台 does not rhyme with 流
    assert not flat.ok and not flat.rhyme_ok and flat.tones_ok and flat.rhyme_group == []
    assert [r for r in flat.reasons if r.startswith("rhyme:")] == [
        "rhyme: 流 台 share no 中华新韵 group"]

    repeated = check("白日依山尽，黄河入海流。欲穷千里日，更上九层楼。", no_repeats=True)
    assert repeated.rhyme_ok and repeated.tones_ok and not repeated.repeats_ok and not repeated.ok
    assert repeated.lines[2].repeats == ["日"]
    assert repeated.reasons == ["line 3 欲穷千里日 repeats 日"]
    noted = check("白日依山尽，黄河入海流。欲穷千里日，更上九层楼。")
    assert noted.ok and not noted.repeats_ok and noted.reasons == []
    assert noted.notes == ["line 3 欲穷千里日 repeats 日"]


def test_reduplication():
    poem = "萋萋芳草绿，漠漠远山青。白鸟飞云外，孤舟过洞庭。"
    assert check(poem).repeats_ok
    loose = check(poem, allow_reduplication=False)
    assert [line.repeats for line in loose.lines][:2] == [["萋"], ["漠"]]
    again = check("萋萋芳草绿，漠漠远山青。白鸟飞萋外，孤舟过洞庭。")
    assert again.lines[2].repeats == ["萋"]


# --- accepted variants (拗句) and variant characters ---------------------------------------------

def written(*patterns: str) -> str:
    """A poem with these tones under 中华新韵: 山 for 平, 月 for 仄, and the 平 rhymes 天 年 前 边
    at the end of lines 2, 4, 6, 8 (and of line 1 when it ends on 平)."""
    rhymes = iter("天年前边边")
    lines = []
    for i, pattern in enumerate(patterns):
        body = pattern.replace(PING, "山").replace(ZE, "月")
        if pattern[-1] == PING and (i % 2 == 1 or i == 0):
            body = body[:-1] + next(rhymes)
        lines.append(body)
    return "，".join(lines) + "。"


A, B, C, D = "仄仄平平仄", "平平仄仄平", "平平平仄仄", "仄仄仄平平"  # 仄起首句不入韵 is A B C D


@pytest.mark.parametrize("tones", ["loose", "strict"])
def test_a_fourth_character_rescued_in_the_next_line(tones):
    for ao in ("仄仄平仄仄", "仄仄仄仄仄"):  # 出句拗, with the third character 仄 or not
        result = check(written(ao, "平平平仄平", C, D), tones=tones)
        assert result.tones_ok, result.reasons
        assert [line.variant for line in result.lines] == ["出句拗", "对句救", "", ""]
        assert not check(written(ao, B, C, D), tones=tones).tones_ok  # not rescued
    lone_rescue = check(written(A, "平平平仄平", C, D), tones=tones)  # nothing to rescue
    assert lone_rescue.tones_ok == (tones == "loose")  # 一三五不论 frees it under loose


def test_te_ao_is_accepted_and_named():
    poem = written(A, B, "平平仄平仄", D)
    for tones in ("loose", "strict"):
        result = check(poem, tones=tones)
        assert result.tones_ok and result.lines[2].variant == "特拗", result.reasons
    assert check(written(A, B, "仄平仄平仄", D), tones="loose").tones_ok
    assert not check(written(A, B, "仄平仄平仄", D), tones="strict").tones_ok
    assert not check(written(A, B, "平平平平仄", D), tones="loose").tones_ok
    seven = check(written("平平" + A, "仄仄" + B, "仄仄平平仄平仄", "平平" + D), tones="strict")
    assert seven.tones_ok and seven.lines[2].variant == "特拗"
    assert check("群山万壑赴荆门，生长明妃尚有村。一去紫台连朔漠，独留青冢向黄昏。画图省识春风面，"
                 "环珮空归月夜魂。千载琵琶作胡语，分明怨恨曲中论。", tones="strict").lines[6].variant \
        == "特拗"


@pytest.mark.parametrize("chars", [5, 7])
def test_gu_ping_fails_loose_and_its_rescue_passes_strict(chars):
    def line(five: str, template_five: str) -> str:  # a 七言 puts two opposite tones in front
        return ("" if chars == 5 else PING * 2 if template_five[0] == ZE else ZE * 2) + five
    poem = [line(A, A), line("仄平仄仄平", B), line(C, C), line(D, D)]  # 孤平 in line 2
    result = check(written(*poem), tones="loose")
    assert not result.tones_ok and "孤平" in result.reasons[0]
    rescued = [line(A, A), line("仄平平仄平", B), line(C, C), line(D, D)]
    for tones in ("loose", "strict"):
        result = check(written(*rescued), tones=tones)
        assert result.tones_ok and result.lines[1].variant == "孤平拗救", result.reasons


@pytest.mark.parametrize("chars", [5, 7])
def test_three_level_tones_at_the_end_fail_loose_as_the_mark_of_guti(chars):
    """三平尾: 一三五不论 does not free the third character of 仄仄仄平平 (七言: the fifth)."""
    def line(five: str, template_five: str) -> str:
        return ("" if chars == 5 else PING * 2 if template_five[0] == ZE else ZE * 2) + five
    poem = [line(A, A), line(B, B), line(C, C), line("仄仄平平平", D)]  # 三平尾 in line 4
    result = check(written(*poem), tones="loose")
    assert not result.tones_ok and "三平尾" in result.reasons[0]
    allowed = [line(A, A), line(B, B), line(C, C), line("平仄仄平平", D)]  # the first is free
    assert check(written(*allowed), tones="loose").tones_ok


def test_the_variants_open_no_holes():
    """In every template and every accepted way of writing its lines, a flipped second
    character (which no variant touches) fails the poem."""
    for form in FORMS.values():
        for template in templates(form):
            for i, tones in enumerate(template.lines):
                for option in prosody.line_options(tones, "strict"):
                    if option.only_as_rescue or option.needs_rescue:
                        continue
                    lines = list(template.lines)
                    lines[i] = option.tones
                    assert check(written(*lines), tones="strict").tones_ok, (template, lines)
                    flipped = list(lines)
                    flipped[i] = lines[i][0] + (ZE if lines[i][1] == PING else PING) + lines[i][2:]
                    for mode in ("loose", "strict"):
                        assert not check(written(*flipped), tones=mode).tones_ok, flipped


def test_variant_characters_read_as_their_standard_form():
    lin_bu = "{}影横斜水清浅，暗香浮动月黄昏。霜禽欲下先偷眼，粉蝶如知合断魂。"
    variant, standard = check(lin_bu.format("疎")), check(lin_bu.format("疏"))
    assert variant.lines[0].text == "疎影横斜水清浅"  # shown as typed
    assert variant.lines[0].tones == standard.lines[0].tones and "?" not in variant.lines[0].tones
    assert variant.ok == standard.ok


def test_what_a_person_types_is_read_in_standard_characters():
    from poemgen.options import PoemOptions, split_words

    options = PoemOptions(acrostic="春風劒月", hint="疎影")
    assert (options.acrostic, options.hint) == ("春风剑月", "疏影")
    assert split_words("明月，孤舟、劒") == ["明月", "孤舟", "剑"]


def test_a_character_no_table_knows_is_noted_not_failed():
    result = check("白日依山𣃁，黄河入海流。欲穷千里目，更上一层楼。")
    assert result.lines[0].tones[-1] == "?" and result.lines[0].tone_errors == []
    assert result.notes == ["tone of 𣃁 unknown: not checked"]


@needs_crrd
def test_pingshui_reads_a_character_its_tables_lack_in_the_modern_tone():
    result = check("白日依山逈，黄河入海流。欲穷千里目，更上一层楼。", rhyme="pingshui", crrd=CRRD)
    assert result.ok and result.lines[0].tones[-1] == ZE
    assert result.notes == ["平水韵 tables lack 逈: tones of the modern reading"]


def test_without_rhyme_or_tones():
    lu_zhai = FAMOUS["王维 鹿柴"][0]
    result = check(lu_zhai, rhyme="none")
    assert result.rhyme_ok and result.rhyme_group == [] and result.rhyme_system == "none"
    assert not result.tones_ok
    free = check(lu_zhai, rhyme="none", tones="none")
    assert free.rhyme_ok and free.tones_ok and not free.repeats_ok  # 人 twice
    assert all(line.tone_errors == [] for line in free.lines)


def test_split_lines_and_to_dict():
    assert split_lines("白日依山尽|黄河入海流\n欲穷千里目 更上一层楼!") == [
        "白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"]
    for text in (DENG_GUAN_QUE_LOU, "白日依山尽"):
        data = check(text).to_dict()
        assert {"ok", "rhyme_ok", "tones_ok", "repeats_ok", "lines", "reasons"} <= data.keys()
        assert json.loads(json.dumps(data, ensure_ascii=False)) == data
        assert isinstance(data["lines"][0], dict) and "tone_errors" in data["lines"][0]


# --- THU-CCPC: how real quatrains fare -----------------------------------------------------------

@pytest.fixture(scope="module")
def ccpc_poems() -> list[list[str]]:
    with CCPC_TEST.open(encoding="utf-8") as f:
        return [json.loads(line)["content"].split("|") for line in f if line.strip()]


@needs_ccpc
@needs_crrd
def test_ccpc_quatrains_rhyme_and_tones(ccpc_poems):
    """Measured on the 9,976 quatrains of ccpc_test_v1.0.json (45 hold a □ for a lost character):

    | system   | lines 2 and 4 share a group | rhyme_ok | tones_ok (loose) |
    | pingshui | 92.9 %                      | 92.6 %   | 68.4 %           |
    | xinyun   | 83.4 %                      | 83.0 %   | 21.9 %           |

    (tones_ok was 69.3 and 47.5 % before 三平尾 failed under loose; 新韵 was 86.2 / 85.8 /
    43.2 % while a character counted as any reading a dictionary lists, rare ones too, before
    readings.tsv.) The floors sit 2-3 points below. 平水韵 is the system these poems were written in, so it
    must beat 中华新韵 (modern readings split old rhymes, and 入声 characters read 平 today break
    the tones); that neither reaches 100 % is real: 古绝, 仄 rhymes, 邻韵 and gaps in the tables.
    """
    n = len(ccpc_poems)
    figures = {}
    for name in ("pingshui", "xinyun"):
        system = load_system(name, CRRD)
        even = sum(bool(system.groups(p[1][-1]) & system.groups(p[3][-1])) for p in ccpc_poems)
        results = [check("|".join(p), rhyme=name, tones="loose", crrd=CRRD) for p in ccpc_poems]
        figures[name] = (even / n, sum(r.rhyme_ok for r in results) / n,
                         sum(r.tones_ok for r in results) / n)
        print(f"CCPC test, {name}: lines 2 and 4 rhyme {figures[name][0]:.1%}, "
              f"rhyme_ok {figures[name][1]:.1%}, tones_ok (loose) {figures[name][2]:.1%} of {n}")
    assert n == 9976
    assert figures["pingshui"][0] >= 0.90 and figures["pingshui"][1] >= 0.90
    assert figures["xinyun"][0] >= 0.81 and figures["xinyun"][1] >= 0.81
    assert figures["pingshui"][2] >= 0.66 and figures["xinyun"][2] >= 0.20
    assert figures["pingshui"][0] > figures["xinyun"][0] + 0.03
    assert figures["pingshui"][2] > figures["xinyun"][2] + 0.1


# --- property: any text of a valid shape is checked without raising ------------------------------

if st is not None:
    RHYMES = ["xinyun", "none"] + (["pingshui"] if (CRRD / "pingshui.txt").is_file() else [])

    @st.composite
    def poems(draw) -> str:
        form = draw(st.sampled_from(list(FORMS.values())))
        common = st.sampled_from("白日依山尽黄河入海流欲穷千里目更上一层楼春风花月夜江南")
        char = st.one_of(common, st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
                         st.characters(min_codepoint=0x20000, max_codepoint=0x2A6DF))
        lines = [draw(st.text(char, min_size=form.chars, max_size=form.chars))
                 for _ in range(form.lines)]
        separators = st.sampled_from(["，", "。", "|", "\n", " ", "！", "?", "；\n"])
        return "".join(line + draw(separators) for line in lines)

    @settings(max_examples=200, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(text=poems(), rhyme=st.sampled_from(RHYMES), tones=st.sampled_from(prosody.TONE_MODES),
           reduplication=st.booleans(), no_repeats=st.booleans())
    def test_check_never_raises(text, rhyme, tones, reduplication, no_repeats):
        result = check(text, rhyme=rhyme, tones=tones, crrd=CRRD,
                       allow_reduplication=reduplication, no_repeats=no_repeats)
        lines = split_lines(text)
        assert result.form == Form(len(lines), len(lines[0])).name
        assert [line.text for line in result.lines] == lines
        assert all(len(line.tones) == line.chars == len(line.text) for line in result.lines)
        assert result.ok == (result.rhyme_ok and result.tones_ok
                             and (result.repeats_ok or not no_repeats))
        assert result.ok == (not result.reasons)
        assert (not result.repeats_ok and not no_repeats) == any("repeats" in note
                                                                 for note in result.notes)
        json.dumps(result.to_dict(), ensure_ascii=False)
else:
    @pytest.mark.skip(reason="hypothesis is not installed (pip install hypothesis)")
    def test_check_never_raises():
        pass
