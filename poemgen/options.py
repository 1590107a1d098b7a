"""Every knob of writing a poem, in one frozen dataclass shared by the CLI, the library and the
HTTP API (as whisper's `DecodingOptions` is), so a new option is documented once."""

from __future__ import annotations

import re
from dataclasses import dataclass

from poemgen.errors import PoemgenError
from poemgen.prompt import Form


class OptionsError(PoemgenError, ValueError):
    """An option value that cannot be used."""


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
        for name, value in (("hint", self.hint), ("imitate", self.imitate)):
            if not _CHINESE_WORDS.match(value):
                raise OptionsError(f"{name} must be Chinese characters (words separated by "
                                   f"spaces), got {value!r}")

    @property
    def form(self) -> Form:
        return Form(self.lines, self.chars)
