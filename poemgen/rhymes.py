"""Rhyme systems: each character's tones (平/仄) and rhyme groups under 中华新韵 (`xinyun`, modern
readings: pypinyin's, with only the readings in common use of polyphonic characters, from
`readings.tsv`; needs no data) or 平水韵 (`pingshui`, the THU-CRRD tables, read from a folder by
path). A polyphonic character counts as any of its readings that the system keeps; characters a
system does not know are read through their standard forms (`poemgen.variants`). Pure Python."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, NamedTuple

from poemgen.errors import PoemgenError
from poemgen.models import poemgen_home

PING, ZE = "平", "仄"
EITHER, UNKNOWN = "*", "?"  # marks in a line's tone string: polyphonic with both tones, no data
RHYME_SYSTEMS = ("xinyun", "pingshui")
CRRD_ENV = "POEMGEN_CRRD"
CRRD_FILES = ("pingshui.txt", "pingsheng.txt", "zesheng.txt")

_HOW_TO_GET_CRRD = f"pass --crrd DIR, set ${CRRD_ENV}, or run `python data/prepare.py --only-crrd`"


class ProsodyError(PoemgenError):
    """A rhyme system that cannot be loaded, or an unknown system or tone mode."""


def is_hanzi(char: str) -> bool:
    """Whether `char` is a Chinese character: CJK unified ideographs (main block, extensions
    A-G), compatibility ideographs, and 〇."""
    code = ord(char)
    return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x20000 <= code <= 0x3134F
            or 0xF900 <= code <= 0xFAFF or code == 0x3007)


# --- rhyme systems -------------------------------------------------------------------------------

class Reading(NamedTuple):
    """What a rhyme system knows about one character (empty sets: it knows nothing)."""

    tones: frozenset[str]
    groups: frozenset[str]
    modern: bool = False  # the tones are the modern reading's: the 平水韵 tables lack it


@dataclass(frozen=True)
class RhymeSystem:
    """Tones and rhyme groups of characters under one system (中华新韵 or 平水韵)."""

    name: str                          # "xinyun" or "pingshui"
    title: str                         # its Chinese name, for messages
    group_names: tuple[str, ...]       # every rhyme group, in the system's traditional order
    reading: Callable[[str], Reading] = field(repr=False, compare=False)

    def tones(self, char: str) -> frozenset[str]:
        """{平}, {仄}, both (a polyphonic character counts as either), or empty if unknown."""
        return self.reading(char).tones

    def groups(self, char: str) -> frozenset[str]:
        """The rhyme groups of all of the character's readings; empty if unknown."""
        return self.reading(char).groups

    def order(self, groups) -> list[str]:
        """Groups in the system's order (not code-point order, which scrambles 一, 二, 十 …)."""
        return sorted(groups, key=self.group_names.index)


# 中华新韵 (2005): 14 groups of pinyin finals, as pypinyin spells them in strict mode
# (v for ü, uei/iou/uen for ui/iu/un). The apical -i after zh ch sh r z c s is 十三支.
XINYUN_GROUPS = ("一麻", "二波", "三皆", "四开", "五微", "六豪", "七尤", "八寒", "九文", "十唐",
                 "十一庚", "十二齐", "十三支", "十四姑")
_XINYUN_FINALS = {
    "一麻": "a ia ua", "二波": "o e uo io", "三皆": "ie ve ê", "四开": "ai uai", "五微": "ei uei",
    "六豪": "ao iao", "七尤": "ou iou", "八寒": "an ian uan van", "九文": "en in uen vn",
    "十唐": "ang iang uang", "十一庚": "eng ing ong iong ueng", "十二齐": "i v er", "十四姑": "u"}
_FINAL_GROUP = {final: group for group, finals in _XINYUN_FINALS.items()
                for final in finals.split()}
_APICAL_INITIALS = frozenset("zh ch sh r z c s".split())


@functools.lru_cache(maxsize=1)
def common_readings() -> dict[str, tuple[str, ...]]:
    """The readings in common use of each polyphonic character (`readings.tsv`, built by
    data/readings.py): 不 is bù, not also fǒu; 长 is both zhǎng and cháng."""
    from importlib import resources

    text = resources.files("poemgen").joinpath("readings.tsv").read_text(encoding="utf-8")
    rows = (line.split("\t") for line in text.splitlines() if line and not line.startswith("#"))
    return {char: tuple(readings.split()) for char, readings in rows}


@functools.lru_cache(maxsize=None)
def _xinyun_reading(char: str) -> Reading:
    # pypinyin's dictionaries take ~0.1 s to import; only pay that when a poem is checked.
    from pypinyin import Style, pinyin
    from pypinyin.style import convert

    readings = common_readings().get(char)
    if readings is None:  # one reading, or a character pypinyin does not know
        found = pinyin(char, style=Style.TONE, heteronym=True, errors="ignore")
        readings = found[0] if found else ()
    tones, groups, neutral = set(), set(), False
    for reading in readings:
        number = convert(reading, Style.TONE3, strict=True)[-1:]
        if number in ("1", "2"):
            tones.add(PING)
        elif number in ("3", "4"):
            tones.add(ZE)
        else:
            neutral = True
        initial = convert(reading, Style.INITIALS, strict=True)
        final = convert(reading, Style.FINALS, strict=True)
        if final == "i" and initial in _APICAL_INITIALS:
            groups.add("十三支")
        elif final in _FINAL_GROUP:
            groups.add(_FINAL_GROUP[final])
    if neutral and not tones:  # 的 (de, dí, dì) keeps its full tones; a purely neutral syllable is 仄
        tones.add(ZE)
    return Reading(frozenset(tones), frozenset(groups))


# 平水韵: pingshui.txt numbers its 30 level-tone classes 1-30 in the traditional order, 上平 then
# 下平. Checked against the data: class k starts with the name character of the k-th rhyme (1 东,
# 2 冬 … 30 咸; only class 28 starts with 潭, a member of 覃), and the characters of
# pingsheng.txt's line k fall mostly in class k (line 1: 78 of those pingshui.txt lists are in
# class 1, at most 6 in any other), so line k of pingsheng.txt is class k too; tests/test_prosody.py
# repeats these checks. zesheng.txt's 75 lines have no names (上声 1-29, 去声 30-59, 入声 60-75
# with 叶 and 洽 merged), so its groups are called 仄1 … 仄75.
_LEVEL_NAMES = ("一东 二冬 三江 四支 五微 六鱼 七虞 八齐 九佳 十灰 十一真 十二文 十三元 十四寒 "
                "十五删").split()
_LOWER_NAMES = ("一先 二萧 三肴 四豪 五歌 六麻 七阳 八庚 九青 十蒸 十一尤 十二侵 十三覃 十四盐 "
                "十五咸").split()
PINGSHUI_LEVEL_GROUPS = tuple([f"上平{n}" for n in _LEVEL_NAMES] + [f"下平{n}" for n in _LOWER_NAMES])


# A 两读 must be a real classical double reading. CRRD lists 2,263 characters in both a level
# and an oblique group; couyun's hanzi_class.py (MIT; an independent 平水韵 table of 36,890
# characters) confirms 2,226 of them. The 37 it reads with one tone only are slips of CRRD's
# (花 filed under a 上声 group, 清 under a 去声 one …), and are read with that one tone.
_NOT_TWO_READINGS = {PING: "㠶䀋䜛䭾亁寧扠淸清癥花莵觕飇𤕭𦕒",
                     ZE: "㢧㦨㯇㴩㸄䥖䨅䱆刱剙劃據樣瀋種籲醼骯𠊧𢜫𥫱"}


def _read_crrd(folder: Path) -> RhymeSystem:
    """The 平水韵 system from a folder in THU-CRRD's layout; ProsodyError when it is not."""
    if not all((folder / name).is_file() for name in CRRD_FILES):
        raise ProsodyError(f"平水韵 tables not found: {_HOW_TO_GET_CRRD} (looked in {folder})")

    def malformed(why: str) -> ProsodyError:
        return ProsodyError(f"平水韵 tables in {folder} are malformed ({why}): {_HOW_TO_GET_CRRD}")

    texts = {}
    for name in CRRD_FILES:
        try:
            texts[name] = (folder / name).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as error:
            raise ProsodyError(f"平水韵 tables in {folder} cannot be read ({name}: "
                               f"{type(error).__name__}): {_HOW_TO_GET_CRRD}") from None

    level: dict[str, set[str]] = {}
    for number, line in enumerate(texts["pingshui.txt"].splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].isdigit() or not 1 <= int(parts[1]) <= 30:
            raise malformed(f"pingshui.txt line {number} is not `CHAR CLASS` with CLASS 1-30")
        level.setdefault(parts[0], set()).add(PINGSHUI_LEVEL_GROUPS[int(parts[1]) - 1])
    pingsheng = texts["pingsheng.txt"].rstrip().splitlines()
    if len(pingsheng) != len(PINGSHUI_LEVEL_GROUPS):
        raise malformed(f"pingsheng.txt has {len(pingsheng)} lines, not 30")
    in_pingsheng = {char for line in pingsheng for char in line}
    pingshui_only = level.keys() - in_pingsheng
    for group, line in zip(PINGSHUI_LEVEL_GROUPS, pingsheng):
        for char in line:
            if is_hanzi(char):  # the real files carry a stray Ｑ and a few U+FFFD: skip them
                level.setdefault(char, set()).add(group)
    zesheng = texts["zesheng.txt"].rstrip().splitlines()
    if not zesheng:
        raise malformed("zesheng.txt is empty")
    oblique: dict[str, set[str]] = {}
    for number, line in enumerate(zesheng, 1):
        for char in line:
            if is_hanzi(char):
                oblique.setdefault(char, set()).add(f"{ZE}{number}")

    # Two slips in the real tables. pingshui.txt files a few oblique characters under level
    # classes (大 in 一东, 本 in 二冬, 哺 in 七虞 …); each of them is missing from the much fuller
    # pingsheng.txt and present in zesheng.txt, so such an entry is dropped. And 一, the most
    # common character of all, is in no table: it is 入声四质, like 七.
    for char in pingshui_only & oblique.keys():
        del level[char]
    if "一" not in level and "一" not in oblique and "七" in oblique:
        oblique["一"] = set(oblique["七"])
    for char in _NOT_TWO_READINGS[PING]:
        oblique.pop(char, None)
    for char in _NOT_TWO_READINGS[ZE]:
        level.pop(char, None)

    table = {}
    for char in level.keys() | oblique.keys():
        tones = ({PING} if char in level else set()) | ({ZE} if char in oblique else set())
        table[char] = Reading(frozenset(tones),
                              frozenset(level.get(char, set()) | oblique.get(char, set())))
    names = PINGSHUI_LEVEL_GROUPS + tuple(f"{ZE}{n}" for n in range(1, len(zesheng) + 1))

    def reading(char: str) -> Reading:
        # A rare character the tables lack (逈, 𫄨 …) takes the tones of its modern reading,
        # marked as such, rather than failing every position it stands in; it rhymes with nothing.
        found = table.get(char)
        if found is None:
            return Reading(_xinyun_reading(char).tones, frozenset(), modern=True)
        return found
    return RhymeSystem("pingshui", "平水韵", names, reading)


def crrd_folder(crrd: str | os.PathLike | None = None) -> Path:
    """Where the 平水韵 tables are: `crrd`, then $POEMGEN_CRRD, then $POEMGEN_HOME/data/crrd."""
    folder = crrd or os.environ.get(CRRD_ENV) or poemgen_home() / "data" / "crrd"
    return Path(folder).expanduser().resolve()


_SYSTEMS: dict[tuple[str, str | None], RhymeSystem] = {}


def load_system(name: str, crrd: str | os.PathLike | None = None) -> RhymeSystem:
    """The rhyme system called `name` ("xinyun" or "pingshui"), loaded once per folder."""
    if name not in RHYME_SYSTEMS:
        raise ProsodyError(f"unknown rhyme system '{name}' (known: {', '.join(RHYME_SYSTEMS)})")
    folder = crrd_folder(crrd) if name == "pingshui" else None
    key = (name, None if folder is None else str(folder))
    if key not in _SYSTEMS:
        system = (_read_crrd(folder) if folder is not None else
                  RhymeSystem("xinyun", "中华新韵", XINYUN_GROUPS, _xinyun_reading))
        _SYSTEMS[key] = replace(system, reading=_with_standard_forms(system.reading))
    return _SYSTEMS[key]


def _with_standard_forms(reading: Callable[[str], Reading]) -> Callable[[str], Reading]:
    """`reading`, which reads a character it does not know as its standard form (疎 as 疏, 劒
    as 剑: `poemgen.variants.standardize`). Known characters are read as they are, so a
    simplified text is never re-converted one character at a time (乾坤 would lose its 乾)."""
    @functools.lru_cache(maxsize=None)
    def read(char: str) -> Reading:
        found = reading(char)
        if found.groups or (found.tones and not found.modern):
            return found
        from poemgen.variants import standardize

        standard = standardize(char)
        if len(standard) == 1 and standard != char:
            other = reading(standard)
            if other.groups or (other.tones and not other.modern):
                return other
        return found
    return read
