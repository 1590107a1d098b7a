"""THU-CCPC (the Chinese Classical Poetry Corpus) as poemgen training data: quatrains with keywords.

Three source splits (train/valid/test), one JSON object a line with `content` (lines joined by
`|`) and space-separated `keywords`. Read by data/prepare.py, which owns the output schema.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from poemgen.errors import PoemgenError

NAME = "ccpc"
URL = "https://raw.githubusercontent.com/THUNLP-AIPoet/Datasets/master/CCPC/ccpc_{split}_v1.0.json"
PAGE = "https://github.com/THUNLP-AIPoet/Datasets/tree/master/CCPC"
LICENCE = "academic use (THUNLP-AIPoet/Datasets)"
SPLITS = ("train", "valid", "test")
PRIORITY = ("test", "valid", "train")  # a poem in several splits stays only in the first of these
LINES, CHARS = 4, (5, 7)  # quatrains (绝句) of five or seven characters a line
# CJK unified ideographs only: the main block, extension A, extensions B-F (up to the
# compatibility supplement at U+2F800) and G-H. Not □, punctuation, letters or compatibility forms.
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\U00020000-\U0002f7ff\U00030000-\U000323af]+")
REASONS = ("not JSON", "missing field", "not 4 lines", "bad line", "uneven lines", "no keywords",
           "duplicate", "in test", "in valid", "excluded")


def source_name(split: str) -> str:
    return f"ccpc_{split}_v1.0.json"


def find_sources(args, out: Path, download) -> dict[str, Path]:
    """The source file of each split needed: {'valid': Path, 'test': Path[, 'train': Path]}."""
    needed = SPLITS if args.train_split == "train" else ("valid", "test")
    if args.source is None:
        raw = out / "raw"
        try:
            raw.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PoemgenError(f"cannot create {raw}: {e.strerror or e}") from None
        for split in needed:
            if not (raw / source_name(split)).exists():
                download(URL.format(split=split), raw / source_name(split))
        return {split: raw / source_name(split) for split in needed}

    if not args.source.is_dir():
        problem = "is not a folder" if args.source.exists() else "does not exist"
        raise PoemgenError(f"source folder {args.source} {problem}; pass a folder holding the "
                           f"{source_name('{train,valid,test}')} files, or leave out --source "
                           "to download them")
    paths = {split: args.source / source_name(split) for split in needed}
    if "train" in paths and not paths["train"].exists():
        raise PoemgenError(f"{args.source} has no {source_name('train')}; pass --train-split valid "
                           "to train on the validation split (e.g. with ../shared/data/ccpc)")
    for split in ("valid", "test"):
        if not paths[split].exists():
            raise PoemgenError(f"{args.source} has no {source_name(split)}, needed for the {split} "
                               f"split; download it from {PAGE}")
    return paths


def is_han(text: str) -> bool:
    return HAN.fullmatch(text) is not None


def parse(raw: bytes) -> tuple[dict | None, str]:
    """One source line -> (output record, "") or (None, reason it is skipped)."""
    try:
        record = json.loads(raw.decode("utf-8").lstrip("\ufeff"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, "not JSON"
    if not isinstance(record, dict) or not all(isinstance(record.get(k), str)
                                               for k in ("content", "keywords")):
        return None, "missing field"
    lines = [line.strip() for line in record["content"].strip().split("|")]
    if len(lines) != LINES:
        return None, "not 4 lines"
    if not all(len(line) in CHARS and is_han(line) for line in lines):
        return None, "bad line"
    if len({len(line) for line in lines}) != 1:
        return None, "uneven lines"
    keywords = [word for word in record["keywords"].split() if is_han(word)]
    if not keywords:
        return None, "no keywords"
    text = {k: record[k].strip() if isinstance(record.get(k), str) else ""
            for k in ("title", "author", "dynasty")}
    return {"lines": lines, "keywords": keywords, **text}, ""


def read_split(path: Path, earlier: dict[str, set]) -> tuple[list[dict], Counter]:
    """Good records of one source file, in order, without in-split duplicates and without poems
    already kept by an earlier-priority split (`earlier`: split -> set of line tuples)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PoemgenError(f"cannot read {path}: {e.strerror or e}") from None
    kept, skipped, seen = [], Counter(), set()
    for raw in data.splitlines():
        if not raw.strip():
            continue
        record, reason = parse(raw)
        if record is not None:
            poem = tuple(record["lines"])
            if poem in seen:
                reason = "duplicate"
            else:
                seen.add(poem)
                reason = next((f"in {other}" for other, poems in earlier.items()
                               if poem in poems), "")
        if reason:
            skipped[reason] += 1
        else:
            kept.append(record)
    return kept, skipped
