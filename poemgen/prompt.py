"""The poet's prompt format: the one place that says what the T5 model reads and writes.

Training (`train/t5.py`) and inference (`poemgen.poet`) both build their text here, so the two
cannot drift apart. A poem of n lines is written as n calls: line i is generated from the form,
the keywords and lines 1..i-1, and the target is line i's characters alone.

Mengzi's sentencepiece vocabulary NFKC-normalises full-width `，：？` to ASCII and turns newlines
into spaces, so the model's text uses only characters that survive unchanged (Chinese
characters, `。` and spaces); full-width punctuation is restored when a poem is shown.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

FORMAT_NAME = "poemgen-lines"
FORMAT_VERSION = 1
METADATA_FILE = "poemgen.json"

_NUMERALS = "零一二三四五六七八九十"
_FORM_NAMES = {(4, 5): "五言绝句", (4, 7): "七言绝句", (8, 5): "五言律诗", (8, 7): "七言律诗"}


@dataclass(frozen=True)
class Form:
    """The shape of a poem: how many lines, how many characters a line."""

    lines: int = 4
    chars: int = 5

    def __post_init__(self):
        if (self.lines, self.chars) not in _FORM_NAMES:
            raise ValueError(f"unsupported form: {self.lines} lines of {self.chars} characters "
                             "(use 4 or 8 lines of 5 or 7 characters)")

    @property
    def name(self) -> str:
        return _FORM_NAMES[(self.lines, self.chars)]


def line_prompt(form: Form, keywords: list[str], previous: list[str]) -> str:
    """The encoder input for the next line of a poem.

    >>> line_prompt(Form(4, 5), ["明月", "孤舟"], ["床前明月光"])
    '五言绝句 第二句。关键词 明月 孤舟。上文 床前明月光。'
    """
    position = _NUMERALS[len(previous) + 1]
    context = " ".join(previous) if previous else "无"
    return f"{form.name} 第{position}句。关键词 {' '.join(keywords)}。上文 {context}。"


def line_target(line: str) -> str:
    """The decoder target for one line: its characters, no punctuation."""
    return line


def format_poem(lines: list[str]) -> str:
    """Lines as a reader sees them: one per row, full-width `，` after odd lines and `。` after even."""
    return "\n".join(line + ("，" if i % 2 == 0 else "。") for i, line in enumerate(lines))


# --- checkpoint metadata: a poet folder says which prompt format it was trained on ----------------

def write_metadata(folder: str | os.PathLike, **extra) -> None:
    """Record the prompt format in a fine-tuned poet's folder (called by train/t5.py)."""
    metadata = {"prompt_format": FORMAT_NAME, "format_version": FORMAT_VERSION, **extra}
    with open(os.path.join(folder, METADATA_FILE), "w", encoding="utf-8") as f:
        json.dump(metadata, f, ensure_ascii=False, indent=2)
        f.write("\n")


def read_metadata(folder: str | os.PathLike) -> dict | None:
    """The folder's metadata, or None when it has none."""
    path = os.path.join(folder, METADATA_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)
