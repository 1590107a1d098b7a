"""Every knob of writing a poem, in one frozen dataclass shared by the CLI, the library and the
HTTP API (as whisper's `DecodingOptions` is), so a new option is documented once."""

from __future__ import annotations

import re
from dataclasses import dataclass

from poemgen.errors import PoemgenError
from poemgen.prompt import Form


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


RHYMES = ("xinyun", "pingshui", "none")
TONES = ("strict", "loose", "none")
MAX_CANDIDATES = 64
_CHINESE_WORDS = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff ]*$")


@dataclass(frozen=True)
class PoemOptions:
    topk: int = 5              # keywords per image given to the poet
    lines: int = 4             # 4 (绝句) or 8 (律诗)
    chars: int = 5             # characters per line: 5 or 7
    temperature: float = 0.9   # sampling temperature; 0 decodes greedily
    top_p: float = 0.9         # nucleus sampling: keep the smallest token set with this much mass
    seed: int | None = None    # seeds torch's generator for reproducible poems
    hint: str = ""             # words to steer the poem: first keyword, or start of the title
    imitate: str = ""          # a poet to imitate (e.g. 李白); title-format poets only
    rhyme: str = "xinyun"      # rhyme system: xinyun (新韵), pingshui (平水韵) or none
    tones: str = "loose"       # tone template: strict, loose (一三五不论) or none
    rhyme_group: str = ""      # force this rhyme group (a name from the rhyme system)
    acrostic: str = ""         # 藏头诗: the first character of each line
    no_repeat: bool = True     # never use a character twice in a poem
    reduplication: bool = False  # but allow doubled characters such as 萋萋
    candidates: int = 1        # poems to write per image; the best by `poemgen.rerank` is kept

    def __post_init__(self):
        if self.topk < 1:
            raise OptionsError(f"topk must be at least 1, got {self.topk}")
        if self.lines not in (4, 8) or self.chars not in (5, 7):
            raise OptionsError(f"a poem has 4 or 8 lines of 5 or 7 characters, "
                               f"got {self.lines} lines of {self.chars}")
        if self.temperature < 0:
            raise OptionsError(f"temperature must be at least 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise OptionsError(f"top_p must be in (0, 1], got {self.top_p}")
        for name, value in (("hint", self.hint), ("imitate", self.imitate),
                            ("acrostic", self.acrostic)):
            if not _CHINESE_WORDS.match(value):
                raise OptionsError(f"{name} must be Chinese characters (words separated by "
                                   f"spaces), got {value!r}")
        if self.rhyme not in RHYMES:
            raise OptionsError(f"rhyme must be one of {', '.join(RHYMES)}, got {self.rhyme!r}")
        if self.tones not in TONES:
            raise OptionsError(f"tones must be one of {', '.join(TONES)}, got {self.tones!r}")
        if self.acrostic and len(self.acrostic) != self.lines:
            raise OptionsError(f"the acrostic {self.acrostic} has {len(self.acrostic)} characters "
                               f"but the poem has {self.lines} lines; give one per line")
        if not 1 <= self.candidates <= MAX_CANDIDATES:
            raise OptionsError(f"candidates must be 1 to {MAX_CANDIDATES}, got {self.candidates}")
        if self.candidates > 1 and self.temperature == 0:
            raise OptionsError("several candidates need sampling: set temperature above 0")

    @property
    def form(self) -> Form:
        return Form(self.lines, self.chars)

    @property
    def rules(self) -> Rules:
        return Rules(rhyme=self.rhyme, tones=self.tones, no_repeat=self.no_repeat,
                     reduplication=self.reduplication, acrostic=self.acrostic,
                     rhyme_group=self.rhyme_group)
