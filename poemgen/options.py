"""Every knob of writing a poem, in one frozen dataclass shared by the CLI, the library and the
HTTP API (as whisper's `DecodingOptions` is), so a new option is documented once."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, fields, replace

from poemgen.errors import PoemgenError
from poemgen.prompt import Form
from poemgen.variants import standardize


class OptionsError(PoemgenError, ValueError):
    """An option value that cannot be used."""


@dataclass(frozen=True)
class Rules:
    """The prosody a poem must keep (the CLI's --rhyme, --tones, --acrostic …)."""

    rhyme: str = "xinyun"       # xinyun | pingshui | none
    tones: str = "loose"        # strict | loose (一三五不论) | none
    no_repeat: bool = True      # no character twice in a poem …
    reduplication: bool = False # … except doubled characters such as 萋萋, when allowed
    acrostic: str = ""          # 藏头: the first character of each line
    rhyme_group: str = ""       # the rhyme group to use; empty: the first rhyming line's


@dataclass(frozen=True)
class Selection:
    """How keywords are chosen from the scores (see `KeywordScorer.keywords_for`)."""

    categories: tuple[str, ...] = ()  # only these categories; empty: all
    per_category: int = 2             # at most this many keywords from one category
    diversity: float = 0.3            # weight against near-synonyms (0: highest scores only)
    emotions: bool = False            # offer 情思 words even when unlikely


RHYMES = ("xinyun", "pingshui", "none")
FORM_NAMES = {"wujue": (4, 5), "qijue": (4, 7), "wulv": (8, 5), "qilv": (8, 7)}  # (lines, chars)
TONES = ("strict", "loose", "none")
MAX_CANDIDATES = 64
MAX_POLISH = 8  # a round per line of a 律诗 at most
# Below this the tempered scores overflow float32 (logits / 1e-40 is inf, and then NaN); above
# it, sampling is already as good as uniform over what the rules allow.
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-3, 1e3
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # the Chinese characters options accept
_CHINESE_WORDS = re.compile(f"^[{_HAN} ]*$")
_HAN_LINE = re.compile(f"^[{_HAN}]+$")
_WORD_SEPARATORS = re.compile(r"[,，、\s]+")


def positive_int(text: str) -> int:
    """An argparse type: a count of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def shown(value, limit: int = 40) -> str:
    """A value a person gave, as an error message quotes it: a string as it is, anything else
    as Python writes it, cut to `limit` characters (a 3 MB line is not echoed back) and with
    what cannot be printed (a lone surrogate, a line break) escaped, so the message stays one
    printable line that any encoding can carry."""
    try:
        text = value if isinstance(value, str) else repr(value)
    except ValueError:  # an int of more than 4,300 digits
        text = f"a {type(value).__name__} too large to show"
    if len(text) > limit:
        text = text[:limit] + "…"
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def split_words(text: str, what: str = "keywords", most: int | None = None) -> list[str]:
    """Chinese words from a list typed by a person: 明月,孤舟 / 明月，孤舟 / 明月、孤舟, in
    standard characters (明月,孤舟 for 明月,孤舟 typed in traditional or variant forms). More
    than `most` words are refused before any is looked at."""
    words = [word for word in _WORD_SEPARATORS.split(text or "") if word]
    if most is not None and len(words) > most:
        raise OptionsError(f"{what}: at most {most} words, got {len(words):,}")
    wrong = [word for word in words if not _CHINESE_WORDS.match(word)]
    if wrong:
        raise OptionsError(f"{what} must be Chinese words such as 明月,孤舟; "
                           f"got '{shown(wrong[0])}'")
    return [standardize(word) for word in words]


# The options as the CLI's flags and the HTTP API's fields name them (see `from_flags`)
FLAGS = ("form", "lines", "chars", "allow_repeats", "categories", "topk", "seed", "temperature",
         "top_p", "hint", "imitate", "rhyme", "tones", "rhyme_group", "acrostic", "reduplication",
         "candidates", "line_candidates", "polish", "per_category", "diversity", "emotions", "given")


def from_flags(form: str | None, lines: int | None, chars: int | None, allow_repeats: bool,
               categories: str | list[str] | tuple[str, ...], given=(), **fields
               ) -> "PoemOptions":
    """`PoemOptions` from the options as a person gives them (`FLAGS`): a form name or sizes,
    `allow_repeats`, categories typed as a list (山水,草木) or given as one, and given lines
    typed as a poem (see `parse_given`). Without a form or sizes, `PoemOptions` takes them
    from the given lines."""
    lines, chars = form_size(form, lines, chars)
    if isinstance(categories, str):
        categories = split_words(categories, "categories")
    return PoemOptions(lines=lines, chars=chars, no_repeat=not allow_repeats,
                       categories=tuple(categories), given=parse_given(given), **fields)


_LINE_BREAKS = re.compile(r"[,，、。.！!？?；;\n]")
_TO_WRITE = {"", "_", "＿", "*"}


def parse_given(given) -> tuple[str | None, ...]:
    """Given lines as a person types them, `床前明月光，，，低头思故乡` (an empty entry, _ or *
    is a line to write; a pasted poem's punctuation separates lines), or as a list (None or ""
    to write); lines to write at the end are dropped."""
    if given is None:
        return ()
    if isinstance(given, str):
        given = _LINE_BREAKS.split(given) if given.strip() else []
    if not isinstance(given, (list, tuple)) or not all(g is None or isinstance(g, str)
                                                       for g in given):
        raise OptionsError(f"given must be lines such as ['床前明月光', None] or "
                           f"'床前明月光，，'; got {shown(given)}")
    lines = [None if line is None or line.strip() in _TO_WRITE else line.strip()
             for line in given]
    while lines and lines[-1] is None:
        lines.pop()
    return tuple(lines)


MAX_LINES = max(lines for lines, _ in FORM_NAMES.values())
_LINE_NUMBER = re.compile(r"\s*0*([1-9][0-9]*)\s*")  # ASCII: isdigit() takes ², int() does not


def given_from(begin: str | None, pinned: list[str] | None) -> tuple[str | None, ...]:
    """Given lines from the CLI's `--begin "TEXT，TEXT"` (the first lines) and `--line N=TEXT`
    (line N, from 1 to MAX_LINES)."""
    lines = list(parse_given(begin or ""))
    for item in pinned or []:
        number, sep, text = item.partition("=")
        digits = _LINE_NUMBER.fullmatch(number)
        if not sep or not digits or not text.strip():
            raise OptionsError(f"--line {item}: write it as N=TEXT, e.g. --line 2=疑是地上霜")
        if len(digits[1]) > len(str(MAX_LINES)) or int(digits[1]) > MAX_LINES:
            raise OptionsError(f"--line {item}: a poem has at most {MAX_LINES} lines; give N "
                               f"from 1 to {MAX_LINES}")
        n, text = int(digits[1]), text.strip()
        lines.extend([None] * (n - len(lines)))
        if lines[n - 1] not in (None, text):
            raise OptionsError(f"--line {item}: line {n} is already given as {lines[n - 1]}")
        lines[n - 1] = text
    return tuple(lines)


def form_size(form: str | None, lines: int | None, chars: int | None
              ) -> tuple[int | None, int | None]:
    """(lines, chars) from a form name (wujue …) or explicit sizes, which must then agree;
    None where neither says (`PoemOptions` then takes it from the given lines)."""
    if not form:
        return lines or None, chars or None
    if form not in FORM_NAMES:
        raise OptionsError(f"unknown form '{shown(form)}'; choose one of "
                           f"{', '.join(FORM_NAMES)}")
    size = FORM_NAMES[form]
    if (lines or size[0], chars or size[1]) != size:
        raise OptionsError(f"form {form} is {size[0]} lines of {size[1]} characters; drop the "
                           "lines/chars or make them agree")
    return size


_FIELD_TYPES = {"int": int, "int | None": int, "float": (int, float), "str": str, "bool": bool,
                "tuple[str, ...]": tuple, "tuple[str | None, ...]": tuple}
_TYPE_NAMES = {int: "a whole number", (int, float): "a number", str: "a string",
               bool: "True or False", tuple: "a list"}


def with_overrides(options: "PoemOptions | None", **overrides) -> "PoemOptions":
    """`options` (default: `PoemOptions()`) with fields replaced, by their own names or by the
    CLI's (`form="qijue"`, `allow_repeats=True`); None stands for "as `options` has it" (the
    default); an unknown name is an OptionsError. A size that `options` left to the given lines
    still follows them (new given lines included)."""
    unknown = sorted(set(overrides) - {f.name for f in fields(PoemOptions)}
                     - {"form", "allow_repeats"})
    if unknown:
        raise OptionsError(f"unknown option '{shown(unknown[0])}'; options are "
                           f"{', '.join(f.name for f in fields(PoemOptions))}, form, allow_repeats")
    options = options or PoemOptions()
    overrides = {name: value for name, value in overrides.items() if value is not None}
    for name, asked in zip(("lines", "chars"), options._asked_size):
        if not asked:
            overrides.setdefault(name, None)
    if "allow_repeats" in overrides:
        overrides["no_repeat"] = not overrides.pop("allow_repeats")
    if "form" in overrides:
        overrides["lines"], overrides["chars"] = form_size(
            overrides.pop("form"), overrides.get("lines"), overrides.get("chars"))
    return replace(options, **overrides)


def check_keywords(words) -> list[str]:
    """Keywords given to the library or the API: Chinese words, as `split_words` makes them."""
    if isinstance(words, str) or not all(isinstance(w, str) for w in words):
        raise OptionsError(f"keywords must be a list of Chinese words such as ['明月', '孤舟'], "
                           f"got {shown(words)}")
    return split_words("，".join(w.strip() for w in words))


@dataclass(frozen=True)
class PoemOptions:
    topk: int = 5              # keywords per image given to the poet
    lines: int | None = None   # 4 (绝句) or 8 (律诗); None: 8 if more than 4 lines are given
    chars: int | None = None   # characters per line, 5 or 7; None: the given lines', else 5
    temperature: float = 0.9   # sampling temperature; 0 decodes greedily (chosen by blind reading)
    top_p: float = 0.9         # nucleus sampling: keep the smallest token set with this much mass
    seed: int | None = None    # 0 … 2**64-1: a poem depends only on it, its keywords and options
    hint: str = ""             # words to steer the poem: first keyword, or start of the title
    imitate: str = ""          # a poet to imitate (e.g. 李白); title-format poets only
    rhyme: str = "xinyun"      # rhyme system: xinyun (新韵), pingshui (平水韵) or none
    tones: str = "loose"       # tone template: strict, loose (一三五不论) or none
    rhyme_group: str = ""      # force this rhyme group (a name from the rhyme system)
    acrostic: str = ""         # 藏头诗: the first character of each line
    no_repeat: bool = True     # never use a character twice in a poem
    reduplication: bool = False  # but allow doubled characters such as 萋萋
    candidates: int = 1        # poems to write per image; the best by `poemgen.rerank` is kept
    line_candidates: int = 16  # lines sampled for each line; the poet's likeliest is kept
    #                            (greedy decoding, temperature 0, writes one)
    polish: int = 0            # rounds of rewriting the least likely line (kept if better)
    categories: tuple[str, ...] = ()  # keyword categories to choose from; empty: all
    per_category: int = 2      # at most this many keywords from one category
    diversity: float = 0.3     # keyword choice: weight against near-synonyms (0 to 1)
    emotions: bool = False     # offer 情思 keywords even when CLIP finds them unlikely
    given: tuple[str | None, ...] = ()  # lines kept as they are (None: written); fewer than
    #                                     the form's lines: the first lines, continued (续写)

    def __post_init__(self):
        self._check_types()
        self._size_from_given()
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)
                                      or not 0 <= self.seed <= 2**64 - 1):
            raise OptionsError(f"seed must be a whole number from 0 to 2**64-1, "
                               f"got {shown(self.seed)}")
        if self.topk < 1:
            raise OptionsError(f"topk must be at least 1, got {self.topk}")
        if self.lines not in (4, 8) or self.chars not in (5, 7):
            raise OptionsError(f"a poem has 4 or 8 lines of 5 or 7 characters, "
                               f"got {self.lines} lines of {self.chars}")
        if not (self.temperature == 0 or MIN_TEMPERATURE <= self.temperature <= MAX_TEMPERATURE):
            raise OptionsError(f"temperature must be 0 (greedy) or from {MIN_TEMPERATURE} to "
                               f"{MAX_TEMPERATURE:g}, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise OptionsError(f"top_p must be in (0, 1], got {self.top_p}")
        for name, value in (("hint", self.hint), ("imitate", self.imitate),
                            ("acrostic", self.acrostic)):
            if not _CHINESE_WORDS.match(value):
                raise OptionsError(f"{name} must be Chinese characters (words separated by "
                                   f"spaces), got '{shown(value)}'")
            if value:  # the poet knows the standard forms only: 風 and 劒 are 风 and 剑 to it
                object.__setattr__(self, name, standardize(value))
        if self.rhyme not in RHYMES:
            raise OptionsError(f"rhyme must be one of {', '.join(RHYMES)}, "
                               f"got '{shown(self.rhyme)}'")
        if self.tones not in TONES:
            raise OptionsError(f"tones must be one of {', '.join(TONES)}, "
                               f"got '{shown(self.tones)}'")
        if self.rhyme_group and self.rhyme == "none":
            raise OptionsError(f"rhyme group '{shown(self.rhyme_group)}' needs a rhyme system, "
                               "but rhyme is none; choose rhyme xinyun or pingshui, or drop "
                               "the rhyme group")
        if self.acrostic and len(self.acrostic) != self.lines:
            raise OptionsError(f"the acrostic {shown(self.acrostic)} has {len(self.acrostic):,} "
                               f"characters but the poem has {self.lines} lines; give one per "
                               "line")
        if not 1 <= self.candidates <= MAX_CANDIDATES:
            raise OptionsError(f"candidates must be 1 to {MAX_CANDIDATES}, got {self.candidates}")
        if not 1 <= self.line_candidates <= MAX_CANDIDATES:
            raise OptionsError(f"line_candidates must be 1 to {MAX_CANDIDATES}, "
                               f"got {self.line_candidates}")
        if not 0 <= self.polish <= MAX_POLISH:
            raise OptionsError(f"polish must be 0 to {MAX_POLISH} rounds, got {self.polish}")
        if self.per_category < 1 or not 0 <= self.diversity <= 1:
            raise OptionsError("per_category must be at least 1 and diversity in [0, 1]")
        if self.candidates > 1 and self.temperature == 0:
            raise OptionsError("several candidates need sampling: set temperature above 0")
        self._check_given()

    def _check_given(self) -> None:
        """Given lines: at most one per line of the form, each of the form's length in Chinese
        characters, kept in their standard forms (as the poet knows them)."""
        if len(self.given) > self.lines:
            raise OptionsError(f"line {len(self.given)} is given, but the poem has {self.lines} "
                               "lines; give lines within the form, or choose a longer one")
        for i, line in enumerate(self.given):
            if line is None:
                continue
            if not isinstance(line, str) or not _HAN_LINE.match(line):
                quoted = f"'{shown(line)}'" if isinstance(line, str) else shown(line)
                raise OptionsError(f"given line {i + 1} {quoted}: must be Chinese characters "
                                   "only, with no punctuation")
            if len(line) != self.chars:
                raise OptionsError(f"given line {i + 1} {shown(line)}: has {len(line):,} "
                                   "characters, but "
                                   f"a {self.form.short_name} line has {self.chars}; "
                                   f"give {self.chars}")
        object.__setattr__(self, "given", tuple(None if line is None else standardize(line)
                                                for line in self.given))

    def given_line(self, index: int) -> str | None:
        """Line `index` as given, or None when the poet writes it."""
        return self.given[index] if index < len(self.given) else None

    def _size_from_given(self) -> None:
        """Sizes not asked for, from the given lines: 七言 for lines of 7, 律诗 for more than
        4 lines, else 五言绝句. The one place the CLI, the HTTP API and the library infer them;
        `with_overrides` keeps them following the given lines (see `_asked_size`)."""
        object.__setattr__(self, "_asked_size", (self.lines is not None, self.chars is not None))
        if self.chars is None:
            first = next((len(line) for line in self.given if isinstance(line, str) and line),
                         None)
            object.__setattr__(self, "chars", first if first in (5, 7) else 5)
        if self.lines is None:
            object.__setattr__(self, "lines", 8 if len(self.given) > 4 else 4)

    def _check_types(self) -> None:
        """Each field of the type it is declared with, as the CLI's parser would make it; a
        string of categories is split as the CLI splits it."""
        if isinstance(self.categories, str):
            object.__setattr__(self, "categories", tuple(split_words(self.categories,
                                                                     "categories")))
        elif isinstance(self.categories, list):
            object.__setattr__(self, "categories", tuple(self.categories))
        if isinstance(self.given, (str, list)):
            object.__setattr__(self, "given", parse_given(self.given))
        for f in fields(self):
            if f.name == "seed":  # checked with its range below
                continue
            if f.name in ("lines", "chars") and getattr(self, f.name) is None:
                continue  # taken from the given lines next
            value = getattr(self, f.name)
            kind = _FIELD_TYPES[f.type]
            ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
            if f.name == "categories":
                ok = ok and all(isinstance(c, str) for c in value)
            if not ok:
                raise OptionsError(f"{f.name} must be {_TYPE_NAMES[kind]}, got {shown(value)}")

    @property
    def form(self) -> Form:
        return Form(self.lines, self.chars)

    @property
    def selection(self) -> Selection:
        return Selection(categories=tuple(self.categories), per_category=self.per_category,
                         diversity=self.diversity, emotions=self.emotions)

    @property
    def rules(self) -> Rules:
        return Rules(rhyme=self.rhyme, tones=self.tones, no_repeat=self.no_repeat,
                     reduplication=self.reduplication, acrostic=self.acrostic,
                     rhyme_group=self.rhyme_group)
