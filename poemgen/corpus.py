"""Poem files as `poemgen eval` reads and writes them: `poemgen --json` output,
`data/prepare.py` output and the CCPC source files (see `poemgen/evaluate.py`'s docstring for
the shapes), the gold test file of a data folder, and the poems a poet wrote for it."""

from __future__ import annotations

import itertools
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from poemgen.errors import PoemgenError

GOLD_FILES = ("test.jsonl", "ccpc_test_v1.0.json")
# What one file of poems may hold, so that a device or an endless pipe cannot fill the memory
MAX_FILE_BYTES = 256 * 2**20  # CCPC's and chinese-poetry's training splits are 20-60 MB
MAX_LINE_BYTES = 2**20        # one poem's JSON object


class EvalError(PoemgenError):
    """An input that cannot be evaluated: a missing or malformed file, no poems."""


@dataclass
class Sample:
    """One poem and the keywords it was (or is to be) written from."""

    lines: list[str]
    keywords: list[str]


# --- reading poems --------------------------------------------------------------------------

def parse_record(record, where: str) -> Sample:
    """A poem from one JSON object of any accepted shape; `where` names it in errors."""
    from poemgen.prosody import split_lines

    if not isinstance(record, dict):
        raise EvalError(f"{where}: not a JSON object")
    if isinstance(record.get("lines"), list) and all(isinstance(x, str) for x in record["lines"]):
        text = "\n".join(record["lines"])
    elif isinstance(record.get("content"), str):  # CCPC: lines joined by |
        text = record["content"]
    elif isinstance(record.get("poem"), str):
        text = record["poem"]
    else:
        raise EvalError(f'{where}: no poem (expected "lines": [...], "content" or "poem")')
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # JSON may escape a lone surrogate, "\udcff", which is no text
        raise EvalError(f"{where}: the poem holds a lone surrogate escape (\\udc..), not "
                        "text") from None
    return Sample(split_lines(text), parse_keywords(record.get("keywords"), where))


def parse_keywords(value, where: str) -> list[str]:
    """Keywords as `poemgen --json` gives them ([{"word", "score"}]), as data/prepare.py does
    (["明月", ...]) or as CCPC does ("明月 孤舟"); duplicates dropped, order kept."""
    if value is None:
        return []
    if isinstance(value, str):
        words = value.replace(",", " ").replace("，", " ").replace("、", " ").split()
    elif isinstance(value, list):
        words = []
        for item in value:
            word = item.get("word") if isinstance(item, dict) else item
            if not isinstance(word, str):
                raise EvalError(f'{where}: a keyword is neither a string nor {{"word": ...}}')
            words.append(word.strip())
    else:
        raise EvalError(f"{where}: keywords must be a list or a string")
    return list(dict.fromkeys(w for w in words if w))


def iter_poems(path: str | os.PathLike) -> Iterator[Sample]:
    """The poems of a file, one JSON object a line; EvalError names the line that fails."""
    path = Path(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise EvalError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise EvalError(f"{path}: is a folder; give a file of poems, one JSON object a line") \
            from None
    except OSError as e:
        raise EvalError(f"{path}: cannot be read ({e.strerror or e})") from None
    with f:
        read = 0
        for number, raw in enumerate(iter(lambda: f.readline(MAX_LINE_BYTES + 1), b""), 1):
            read += len(raw)
            if len(raw) > MAX_LINE_BYTES:
                raise EvalError(f"{path} line {number}: longer than {MAX_LINE_BYTES // 2**20} "
                                "MiB; give one poem a line")
            if read > MAX_FILE_BYTES:
                raise EvalError(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB; give a part "
                                "of it (or --limit N, which reads the first N poems only)")
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise EvalError(f"{path} line {number}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise EvalError(f"{path} line {number}: not JSON ({e.msg})") from None
            except RecursionError:
                raise EvalError(f"{path} line {number}: JSON nested too deeply; give one poem "
                                "a line") from None
            yield parse_record(record, f"{path} line {number}")


def read_poems(path: str | os.PathLike, limit: int | None = None) -> list[Sample]:
    """The first `limit` poems of a file (all by default); a file without any is an error."""
    poems = list(itertools.islice(iter_poems(path), limit))
    if not poems:
        raise EvalError(f"{path}: no poems in the file")
    return poems


def gold_file(data: str | os.PathLike) -> Path:
    """The gold poems under --data: a file, or DIR/test.jsonl, or DIR/ccpc_test_v1.0.json."""
    path = Path(data).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for name in GOLD_FILES:
            if (path / name).is_file():
                return path / name
        raise EvalError(f"--data {data}: neither {' nor '.join(GOLD_FILES)} is in the folder; "
                        "run `python data/prepare.py` or pass the CCPC folder")
    raise EvalError(f"--data {data}: no such folder; run `python data/prepare.py` or pass the "
                    "folder it wrote")


def valid_shape(lines: list[str]) -> bool:
    """4 or 8 lines, all of 5 or all of 7 Chinese characters."""
    from poemgen.prosody import is_hanzi

    return (len(lines) in (4, 8) and len({len(line) for line in lines}) == 1
            and len(lines[0]) in (5, 7) and all(is_hanzi(c) for line in lines for c in line))


def training_lines(path: str | None) -> set[str] | None:
    """Every line of the training corpus (any accepted poem file), for the copy rate."""
    return {line for poem in iter_poems(path) for line in poem.lines} if path else None


def save_poems(path: str, verses: list, gold: list[Sample]) -> None:
    """The poems written, as `poemgen --json` prints them (`poemgen eval FILE` reads them)."""
    from poemgen.prompt import format_poem

    try:
        with open(path, "w", encoding="utf-8") as f:
            for verse, poem in zip(verses, gold):
                record = {"image": None,
                          "keywords": [{"word": w, "score": None} for w in poem.keywords],
                          "lines": verse.lines, "poem": format_poem(verse.lines), "score": {},
                          "notes": verse.notes, "reference": poem.lines}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    except OSError as e:
        raise EvalError(f"--save {path}: cannot be written ({e.strerror or e})") from None


class Progress:
    """`done/total` on stderr when it is a terminal; silent otherwise."""

    def __init__(self, total: int, what: str):
        self.total, self.count, self.what = total, 0, what
        self.shown = sys.stderr.isatty()

    def __call__(self, n: int) -> None:
        self.count += n
        if self.shown:
            print(f"\rpoemgen eval: {self.what}: {self.count}/{self.total}", end="",
                  file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.shown and self.count:
            print(file=sys.stderr)
