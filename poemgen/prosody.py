"""The rules of classical verse (格律): the forms, the tone templates and their accepted variants,
and the checker that scores any poem (the poet's or a person's) against them. The rhyme systems
(中华新韵 `xinyun`, 平水韵 `pingshui`) are `poemgen.rhymes`'s; the generation masks read the same
templates and variants, so what the poet writes and what the checker accepts agree. Pure Python:
nothing here imports torch or transformers.

    >>> check("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。").rhyme_ok
    True
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

from poemgen.prompt import Form
from poemgen.rhymes import (EITHER, PING, RHYME_SYSTEMS, UNKNOWN, ZE, ProsodyError, RhymeSystem,
                            is_hanzi, load_system)

FORMS: dict[str, Form] = {"wujue": Form(4, 5), "qijue": Form(4, 7), "wulv": Form(8, 5),
                          "qilv": Form(8, 7)}
TONE_MODES = ("loose", "strict", "none")


# --- tone templates (格律) -------------------------------------------------------------------------

@dataclass(frozen=True)
class Template:
    """One standard tone pattern of a form."""

    name: str                  # e.g. 平起首句入韵
    lines: tuple[str, ...]     # each line's expected tones, a string of 平/仄
    rhymes: tuple[int, ...]    # 0-based indices of the lines that must rhyme


# The four five-character line types. Read in the order A B C D, each line is the 对 (opposite)
# of the one before within a couplet and 粘 (shares its second tone) with it across couplets, so
# a poem is a run through this cycle; 首句入韵 turns the first line into the rhyming type with the
# same opening (A → D, C → B).
_CYCLE = ("仄仄平平仄", "平平仄仄平", "平平平仄仄", "仄仄仄平平")
_RHYMING_FIRST = {"仄仄平平仄": "仄仄仄平平", "平平平仄仄": "平平仄仄平"}


def _seven(line: str) -> str:
    """A seven-character line: two characters of the opposite tone in front of a five."""
    return (PING * 2 if line[0] == ZE else ZE * 2) + line


@functools.lru_cache(maxsize=None)
def templates(form: Form) -> tuple[Template, ...]:
    """The four standard templates of `form`: 平起/仄起, first line rhyming or not."""
    result = []
    for start in (2, 0):  # five-character 平起 starts the cycle at C, 仄起 at A
        for rhymes_first in (True, False):
            lines = [_CYCLE[(start + i) % 4] for i in range(form.lines)]
            if rhymes_first:
                lines[0] = _RHYMING_FIRST[lines[0]]
            if form.chars == 7:
                lines = [_seven(line) for line in lines]
            # named by the first line's second character, as is customary for both lengths
            name = f"{lines[0][1]}起首句{'入韵' if rhymes_first else '不入韵'}"
            rhymes = ((0,) if rhymes_first else ()) + tuple(range(1, form.lines, 2))
            result.append(Template(name, tuple(lines), rhymes))
    return tuple(sorted(result, key=lambda t: (t.name[0] != PING, "不" in t.name)))


def _check_tone_mode(tones: str) -> None:
    if tones not in TONE_MODES:
        raise ProsodyError(f"unknown tone mode '{tones}' (known: {', '.join(TONE_MODES)})")


def free_positions(chars: int, tones: str) -> frozenset[int]:
    """0-based positions whose tone is not checked: 一三五不论 for "loose", none for "strict",
    all for "none"."""
    _check_tone_mode(tones)
    if tones == "none":
        return frozenset(range(chars))
    return frozenset(range(0, chars - 2, 2)) if tones == "loose" else frozenset()


# --- accepted variants (拗句) ----------------------------------------------------------------------

@dataclass(frozen=True)
class LineVariant:
    """An accepted departure from one of the four five-character line types. A seven-character
    line takes it with its type's two leading characters in front (positions shift by 2)."""

    name: str
    line_type: str                  # the five-character type it stands in for
    tones: str                      # its five-character tones
    fixed: frozenset[int] = frozenset()  # positions 一三五不论 does not free in it
    needs_rescue: bool = False      # a 拗 出句: its 对句 must be one that `rescues`
    rescues: bool = False           # a 对句 whose third character (五言) is 平
    only_as_rescue: bool = False    # accepted only after a 拗 出句


# The accepted variants, after 王力《汉语诗律学》(1958) §8 (特定的平仄格式) and §9 (拗救), as
# summarised in his 《诗词格律》 ch. 2 §4. Every rule of the checker and of the generation masks
# that goes beyond the four templates is in this table and in `LOOSE_FIXED`.
VARIANTS: tuple[LineVariant, ...] = (
    # 平平平仄仄 written 平平仄平仄 (杜甫 千载琵琶作胡语): fully accepted, no rescue needed.
    # 王力 wants its first character (七言: third) 平; strict asks that, while loose frees it
    # as it frees every first character, as the masters did (王维 送君尽惆怅).
    LineVariant("特拗", "平平平仄仄", "平平仄平仄", frozenset({2})),
    # 出句 拗 at the fourth character (第三字 also 仄 or not), rescued by making the 对句's third
    # character 平 (对句相救).
    LineVariant("出句拗", "仄仄平平仄", "仄仄平仄仄", needs_rescue=True),
    LineVariant("出句拗", "仄仄平平仄", "仄仄仄仄仄", needs_rescue=True),
    LineVariant("对句救", "平平仄仄平", "平平平仄平", frozenset({2}), rescues=True,
                only_as_rescue=True),
    # 孤平拗救: a 仄 first character of 平平仄仄平 is rescued by a 平 third (仄平平仄平).
    LineVariant("孤平拗救", "平平仄仄平", "仄平平仄平", frozenset({2}), rescues=True),
)
# What 一三五不论 never frees (王力《诗词格律》ch. 2 §4): 平平仄仄平's first character, since
# 仄平仄仄平 has one 平 besides its rhyme (孤平; only the rescue above may make it 仄), and
# 仄仄仄平平's third, since 仄仄平平平 ends in three 平 (三平尾, the mark of 古体). 七言: +2.
LOOSE_FIXED = {"平平仄仄平": (frozenset({0}), "孤平"), "仄仄仄平平": (frozenset({2}), "三平尾")}


class LineOption(NamedTuple):
    """One way of writing a template line under a tone mode."""

    variant: str        # "" for the template's own line, else the variant's name
    tones: str          # per position 平, 仄, or * (not checked under the mode)
    fixed: frozenset[int]  # positions the mode would free but this option does not
    needs_rescue: bool = False
    rescues: bool = False
    only_as_rescue: bool = False

    def errors(self, tones: list[frozenset[str]]) -> list[int]:
        """Positions whose character's `tones` do not include the option's tone."""
        return [j for j, (found, tone) in enumerate(zip(tones, self.tones))
                if tone != EITHER and tone not in found]


def couplet_ok(first: LineOption, second: LineOption) -> bool:
    """Whether a 出句 written as `first` may be followed by a 对句 written as `second`."""
    return (second.rescues or not first.needs_rescue) and \
        (first.needs_rescue or not second.only_as_rescue)


@functools.lru_cache(maxsize=None)
def line_options(line: str, tones: str) -> tuple[LineOption, ...]:
    """The ways a template line (five or seven characters of 平/仄) may be written under a tone
    mode: the line itself with the mode's free positions, then its accepted variants."""
    _check_tone_mode(tones)
    if tones == "none":
        return (LineOption("", EITHER * len(line), frozenset()),)
    shift = len(line) - 5
    free = free_positions(len(line), tones)
    prefix, five = line[:shift], line[shift:]

    def option(name: str, pattern: str, fixed: frozenset[int], **flags) -> LineOption:
        fixed = frozenset(p + shift for p in fixed)
        marks = "".join(EITHER if j in free - fixed else tone for j, tone in enumerate(pattern))
        return LineOption(name, marks, fixed & free, **flags)

    options = [option("", line, LOOSE_FIXED.get(five, (frozenset(), ""))[0] if tones == "loose"
                      else frozenset())]
    for v in VARIANTS:
        if v.line_type == five:
            found = option(v.name, prefix + v.tones, v.fixed, needs_rescue=v.needs_rescue,
                           rescues=v.rescues, only_as_rescue=v.only_as_rescue)
            if all(found[1:] != known[1:] for known in options):  # loose merges some
                options.append(found)
    return tuple(options)


# --- the checker ---------------------------------------------------------------------------------

_SEPARATORS = re.compile(r"[，。！？；、,.!?;|\s]+")


def split_lines(text: str) -> list[str]:
    """A poem's lines: split on punctuation, newlines, `|` and whitespace."""
    return [line for line in _SEPARATORS.split(text) if line]


@dataclass
class LineReport:
    """What the checker found in one line."""

    text: str
    chars: int
    tones: str                   # per character: 平, 仄, * (either), ? (unknown)
    template: str                # the best template's pattern for this line ("" without a form)
    tone_errors: list[int]       # 0-based positions whose character cannot have (or is not
                                 # known to have) the template's tone; free positions excepted
    rhyme_char: str | None       # the last character, for lines that must rhyme
    rhyme_groups: list[str]      # its rhyme groups
    repeats: list[str]           # characters already used earlier in the poem or the line
    variant: str = ""            # the accepted variant the line is written in (特拗 …), if any


@dataclass
class CheckResult:
    """The verdict on a poem; `to_dict()` is ready for JSON."""

    ok: bool                     # a valid form that rhymes and keeps its tones (and, when
                                 # asked with no_repeats, repeats nothing)
    form: str | None             # e.g. 五言绝句; None when the shape is not a 绝句 or 律诗
    rhyme_system: str            # xinyun, pingshui or none
    template: str | None         # the best-fitting template's name
    rhyme_ok: bool               # False when the form is invalid (nothing could be checked)
    tones_ok: bool
    repeats_ok: bool
    rhyme_group: list[str]       # the group(s) all rhyming lines share
    lines: list[LineReport]
    reasons: list[str]           # one human-readable line per failure
    notes: list[str] = field(default_factory=list)  # what is worth knowing but breaks no rule

    def to_dict(self) -> dict:
        return asdict(self)


def _mark(tones: frozenset[str]) -> str:
    return EITHER if len(tones) == 2 else next(iter(tones), UNKNOWN)


def _repeats(lines: list[str], allow_reduplication: bool) -> list[list[str]]:
    """Per line, the characters used before; 萋萋-style doubling is no repeat when allowed."""
    seen: set[str] = set()
    result = []
    for line in lines:
        repeated: list[str] = []
        for j, char in enumerate(line):
            doubled = (allow_reduplication and j > 0 and line[j - 1] == char
                       and (j < 2 or line[j - 2] != char))
            if char in seen and not doubled and char not in repeated:
                repeated.append(char)
            seen.add(char)
        result.append(repeated)
    return result


def _shape_problems(lines: list[str]) -> list[str]:
    if not lines:
        return ["form: no text"]
    problems = []
    if len(lines) not in (4, 8):
        problems.append(f"form: {len(lines)} lines (a 绝句 has 4, a 律诗 8)")
    lengths = {len(line) for line in lines}
    if len(lengths) > 1 or lengths.pop() not in (5, 7):
        problems.append(f"form: lines of {', '.join(str(len(line)) for line in lines)} characters "
                        "(all 5 or all 7)")
    for i, line in enumerate(lines):
        others = "".join(dict.fromkeys(c for c in line if not is_hanzi(c)))
        if others:
            problems.append(f"form: line {i + 1} {line} has characters that are not Chinese: "
                            f"{others}")
    return problems


class _Fit(NamedTuple):
    template: Template
    options: list[LineOption]    # per line, how it is written (the template's line or a variant)
    errors: list[list[int]]      # per line, the enforced tone errors
    shared: frozenset[str]       # groups shared by the rhyming lines' last characters
    key: tuple


def _best_options(template: Template, tones: list[list[frozenset[str]]], mode: str
                  ) -> tuple[list[LineOption], list[list[int]]]:
    """Per couplet, the pair of line options with the fewest tone errors (then the fewest
    variants) that may follow each other."""
    options, errors = [], []
    for i in range(0, len(tones), 2):
        pairs = []
        for first in line_options(template.lines[i], mode):
            if first.only_as_rescue:  # a 出句 has no 拗 line before it to rescue
                continue
            wrong_first = first.errors(tones[i])
            for second in line_options(template.lines[i + 1], mode):
                if couplet_ok(first, second):
                    wrong_second = second.errors(tones[i + 1])
                    pairs.append((len(wrong_first) + len(wrong_second),
                                  bool(first.variant) + bool(second.variant),
                                  first, second, wrong_first, wrong_second))
        _, _, first, second, wrong_first, wrong_second = min(pairs, key=lambda p: p[:2])
        options += [first, second]
        errors += [wrong_first, wrong_second]
    return options, errors


def _fit(template: Template, index: int, lines: list[str], tones: list[list[frozenset[str]]],
         system: RhymeSystem, mode: str, rhyme: bool) -> _Fit:
    """How well a poem fits a template, given each character's `tones`."""
    options, errors = _best_options(template, tones, mode)
    loose = free_positions(len(lines[0]), "loose")
    loose_errors = sum(tone not in found and j not in loose
                       for line, pattern in zip(tones, template.lines)
                       for j, (found, tone) in enumerate(zip(line, pattern)))
    shared = frozenset.intersection(*(system.groups(lines[i][-1]) for i in template.rhymes))
    # Rhymes first, so that whether a poem rhymes never depends on the tone mode: a template
    # whose rhymes hold; then the fewest enforced tone errors; then the more rhyming lines (the
    # first line 入韵 when it does rhyme and the tones do not say otherwise); then the tones under
    # 一三五不论, so that 平起/仄起 is told apart even when tones are not enforced. A poem that
    # both rhymes and keeps its tones under some template is `ok` whichever comes first; the
    # order only decides what a failing poem is blamed for. Tones first would blame 鹿柴 (空山不见人,
    # 仄 rhymes 响 上) for not rhyming, because its first line has the tones of a rhyming one.
    if not rhyme:
        rhyme_fails, more_rhymes = 0, 0
    elif shared:
        rhyme_fails, more_rhymes = 0, -len(template.rhymes)
    else:
        rhyme_fails, more_rhymes = 1, len(template.rhymes)  # blame as few lines as it can
    variants = sum(bool(option.variant) for option in options)
    key = (rhyme_fails, sum(map(len, errors)), more_rhymes, loose_errors, variants, index)
    return _Fit(template, options, errors, shared, key)


def _tone_reason(i: int, line: str, option: LineOption, errors: list[int], template: str,
                 line_type: str) -> str:
    fault = LOOSE_FIXED.get(line_type[-5:], (frozenset(), ""))[1]
    wrong = ", ".join(f"{line[j]} (char {j + 1}) should be {option.tones[j]}"
                      + (f" ({fault})" if j in option.fixed and not option.variant else "")
                      for j in errors)
    return f"line {i + 1} {line}: {wrong} ({template}{', ' + option.variant if option.variant else ''})"


def check(text: str, rhyme: str = "xinyun", tones: str = "loose",
          crrd: str | os.PathLike | None = None, allow_reduplication: bool = True,
          no_repeats: bool = False) -> CheckResult:
    """Check a poem's form, rhyme, tones and repeated characters.

    `rhyme` is "xinyun", "pingshui" (tables from `crrd`, see `load_system`) or "none" (no rhyme
    rule; tones then come from 中华新韵). `tones` is "loose" (一三五不论, no 孤平 or 三平尾), "strict"
    or "none"; both accept the variants of `VARIANTS` and say which line uses one. Repeated
    characters are reported, and fail the poem only with `no_repeats` (the masters repeat:
    萧萧, 滚滚). A character the system does not know is read as its standard form (疎 as 疏).
    A poem of the wrong shape is a failed result, not an exception; an unknown system or mode,
    or missing 平水韵 tables, raise ProsodyError.
    """
    if not isinstance(text, str):
        raise ProsodyError(f"check needs the poem as text (a str), got {type(text).__name__}")
    try:
        text.encode("utf-8")  # lone surrogates: undecodable bytes of an argument or file name
    except UnicodeEncodeError:
        raise ProsodyError("the poem holds bytes that are not UTF-8 (a command-line argument "
                           "in another encoding?); give it as UTF-8 text") from None
    _check_tone_mode(tones)
    if rhyme != "none" and rhyme not in RHYME_SYSTEMS:
        raise ProsodyError(f"unknown rhyme system '{rhyme}' "
                           f"(known: {', '.join(RHYME_SYSTEMS)}, none)")
    system = load_system("xinyun" if rhyme == "none" else rhyme, crrd)
    lines = split_lines(text)
    readings = [[system.reading(char) for char in line] for line in lines]
    marks = ["".join(_mark(r.tones) for r in line) for line in readings]
    # a character no table knows is not held against the poem; one only the modern reading
    # knows is read so; both are said
    char_tones = [[r.tones or frozenset((PING, ZE)) for r in line] for line in readings]
    hanzi = [(c, r) for line, found in zip(lines, readings) for c, r in zip(line, found)
             if is_hanzi(c)]
    unknown = "".join(dict.fromkeys(c for c, r in hanzi if not r.tones))
    modern = "".join(dict.fromkeys(c for c, r in hanzi if r.modern and r.tones))
    repeats = _repeats(lines, allow_reduplication)
    repeat_reasons = [f"line {i + 1} {line} repeats {''.join(chars)}"
                      for i, (line, chars) in enumerate(zip(lines, repeats)) if chars]
    failing_repeats = repeat_reasons if no_repeats else []
    notes = ([] if no_repeats else repeat_reasons) + \
        ([f"{system.title} tables lack {modern}: tones of the modern reading"] if modern else []) + \
        ([f"tone of {unknown} unknown: not checked"] if unknown else [])

    problems = _shape_problems(lines)
    if problems:
        reports = [LineReport(line, len(line), mark, "", [], None, [], chars)
                   for line, mark, chars in zip(lines, marks, repeats)]
        return CheckResult(ok=False, form=None, rhyme_system=rhyme, template=None, rhyme_ok=False,
                           tones_ok=False, repeats_ok=not repeat_reasons, rhyme_group=[],
                           lines=reports, reasons=problems + failing_repeats, notes=notes)

    form = Form(len(lines), len(lines[0]))
    best = min((_fit(t, i, lines, char_tones, system, tones, rhyme != "none")
                for i, t in enumerate(templates(form))), key=lambda fit: fit.key)
    template = best.template

    reports, reasons = [], []
    for i, (line, mark, option, errors, chars) in enumerate(
            zip(lines, marks, best.options, best.errors, repeats)):
        rhymes = i in template.rhymes
        groups = system.order(system.groups(lines[i][-1])) if rhymes and rhyme != "none" else []
        reports.append(LineReport(line, len(line), mark, template.lines[i], errors,
                                  line[-1] if rhymes else None, groups, chars, option.variant))
        if errors:
            reasons.append(_tone_reason(i, line, option, errors, template.name,
                                        template.lines[i]))

    rhyme_ok = rhyme == "none" or bool(best.shared)
    if not rhyme_ok:
        ends = " ".join(lines[i][-1] for i in template.rhymes)
        lacking = [lines[i][-1] for i in template.rhymes if not system.groups(lines[i][-1])]
        reasons.append(f"rhyme: {ends} share no {system.title} group"
                       + (f" ({' '.join(lacking)} not in its tables)" if lacking else ""))
    tones_ok = not any(best.errors)
    reasons += failing_repeats
    return CheckResult(
        ok=rhyme_ok and tones_ok and not failing_repeats, form=form.name, rhyme_system=rhyme,
        template=template.name, rhyme_ok=rhyme_ok, tones_ok=tones_ok,
        repeats_ok=not repeat_reasons,
        rhyme_group=system.order(best.shared) if rhyme != "none" else [], lines=reports,
        reasons=reasons, notes=notes)
