"""The poets' prompt formats: the one place that says what a T5 poet reads and writes.

Training (`train/t5.py`) and inference (`poemgen.poet`) both build their text here, so the two
cannot drift apart. Every format is used line by line: for line i the encoder reads
`encoder_text(...)`, the decoder starts from `decoder_prefix(...)` (the text it has already
"written"), and the generated continuation is line i's characters.

- `lines` (ours, trained by train/t5.py on CCPC): the encoder reads the form, the keywords and
  lines 1..i-1; the decoder starts empty and writes line i alone.
- `poem` (poemgen's own poets trained from scratch by train/t5.py): the encoder reads the form
  and the keywords; the decoder writes the whole poem with `，` and `。`, so lines 1..i-1,
  punctuated, are its prefix when line i is written.
- `title` (the public `hululuzhu/chinese-poem-t5-mengzi-finetune`): trained to write a whole poem
  from `作诗：{title}` (title at most 12 characters), or `作诗：{title}</s>模仿：{author}` (author
  at most 4 characters) to imitate a poet, as confirmed in the author's inference and training
  notebooks. Its target is the poem text with `，` and `。`; so the keywords (and the hint) form
  the title, and lines 1..i-1 with their punctuation become the decoder's prefix.

Mengzi's sentencepiece vocabulary NFKC-normalises full-width `，：？` to ASCII and turns newlines
into spaces. That is harmless where training and inference pass the same text through the same
tokenizer, but poemgen's own format uses only characters that survive unchanged (Chinese
characters, `。` and spaces), and full-width punctuation is restored when a poem is shown.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

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

    @property
    def short_name(self) -> str:
        """五绝, 七律 …: the name as people say it."""
        return self.name[0] + self.name[2]


def punctuate(lines: list[str]) -> list[str]:
    """Lines with full-width `，` after odd lines and `。` after even ones."""
    return [line + ("，" if i % 2 == 0 else "。") for i, line in enumerate(lines)]


def format_poem(lines: list[str]) -> str:
    """A poem as a reader sees it: one punctuated line per row."""
    return "\n".join(punctuate(lines))


@dataclass(frozen=True)
class LinesFormat:
    """poemgen's own line-by-line format (see the module docstring)."""

    name: str = "lines"
    version: int = 1
    supports_imitate: bool = False

    def encoder_text(self, form: Form, keywords: list[str], previous: list[str],
                     hint: str = "", imitate: str = "") -> str:
        """
        >>> LinesFormat().encoder_text(Form(4, 5), ["明月", "孤舟"], ["床前明月光"])
        '五言绝句 第二句。关键词 明月 孤舟。上文 床前明月光。'
        """
        words = " ".join(([hint] if hint else []) + keywords)
        context = " ".join(previous) if previous else "无"
        return f"{form.name} 第{_NUMERALS[len(previous) + 1]}句。关键词 {words}。上文 {context}。"

    def decoder_prefix(self, previous: list[str]) -> str:
        return ""

    def target(self, line: str) -> str:
        """The decoder target when training on one line: its characters, no punctuation."""
        return line


@dataclass(frozen=True)
class TitleFormat:
    """The title-to-poem format of `hululuzhu/chinese-poem-t5-mengzi-finetune`."""

    name: str = "title"
    version: int = 1
    supports_imitate: bool = True
    max_title_chars: int = 12
    max_author_chars: int = 4

    def title(self, keywords: list[str], hint: str = "") -> str:
        """The hint and then whole keywords, as many as fit in the title."""
        title = "".join(hint.split())[: self.max_title_chars]
        for word in keywords:
            if len(title) + len(word) <= self.max_title_chars:
                title += word
        return title

    def encoder_text(self, form: Form, keywords: list[str], previous: list[str],
                     hint: str = "", imitate: str = "") -> str:
        """
        >>> TitleFormat().encoder_text(Form(4, 5), ["明月", "孤舟"], [], imitate="李白")
        '作诗：明月孤舟</s>模仿：李白'
        """
        text = f"作诗：{self.title(keywords, hint)}"
        if imitate:
            text += f"</s>模仿：{imitate[: self.max_author_chars]}"
        return text

    def decoder_prefix(self, previous: list[str]) -> str:
        return "".join(punctuate(previous))


@dataclass(frozen=True)
class PoemFormat:
    """poemgen's whole-poem format, for poets trained from scratch (the shipped poet): the
    encoder reads the form and the keywords, the decoder writes the whole punctuated poem. One
    training example is a whole poem, about 3-4 times cheaper per poem than `lines`; poemgen
    still writes line by line, through the decoder prefix, as with `title`."""

    name: str = "poem"
    version: int = 1
    supports_imitate: bool = False

    def encoder_text(self, form: Form, keywords: list[str], previous: list[str],
                     hint: str = "", imitate: str = "") -> str:
        """
        >>> PoemFormat().encoder_text(Form(4, 7), ["明月", "孤舟"], ["床前明月光"])
        '七言绝句。关键词 明月 孤舟。'
        """
        words = " ".join(([hint] if hint else []) + keywords) or "无"
        return f"{form.name}。关键词 {words}。"

    def decoder_prefix(self, previous: list[str]) -> str:
        return "".join(punctuate(previous))

    def target(self, lines: list[str]) -> str:
        """The decoder target when training on a whole poem: its lines, punctuated."""
        return "".join(punctuate(lines))


FORMATS = {f.name: f for f in (LinesFormat(), TitleFormat(), PoemFormat())}
LINES = FORMATS["lines"]
POEM = FORMATS["poem"]


def get_format(name: str):
    """The prompt format called `name`; a KeyError's message lists the known ones."""
    if name not in FORMATS:
        raise KeyError(f"unknown prompt format '{name}' (known: {', '.join(FORMATS)})")
    return FORMATS[name]


# --- checkpoint metadata: a poet folder says which prompt format it was trained on ----------------

def write_metadata(folder: str | os.PathLike, prompt_format=LINES, **extra) -> None:
    """Record the prompt format in a fine-tuned poet's folder (called by train/t5.py)."""
    metadata = {"prompt_format": prompt_format.name, "format_version": prompt_format.version,
                **extra}
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
